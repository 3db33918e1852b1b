/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The small harness the daemon's unit tests share: named test functions,
 * CHECK() that reports file:line and stops the test, a summary at the end.
 */

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

typedef struct T {
    const char *name;
    bool failed;
} T;

static unsigned n_passed, n_failed;

static inline void check_failed(T *t, const char *file, int line, const char *what)
{
    fprintf(stderr, "%s:%d: %s: check failed: %s\n", file, line, t->name, what);
    t->failed = true;
}

#define CHECK(cond)                                     \
    do {                                                \
        if (!(cond)) {                                  \
            check_failed(t, __FILE__, __LINE__, #cond); \
            return;                                     \
        }                                               \
    } while (0)

#define CHECK_STREQ(a, b)                                                        \
    do {                                                                         \
        const char *_a = (a), *_b = (b);                                         \
        if (!_a || !_b || strcmp(_a, _b) != 0) {                                 \
            fprintf(stderr, "    got \"%s\", want \"%s\"\n", _a ? _a : "(null)", \
                    _b ? _b : "(null)");                                         \
            check_failed(t, __FILE__, __LINE__, #a " == " #b);                   \
            return;                                                              \
        }                                                                        \
    } while (0)

static inline void run_test(const char *name, void (*fn)(T *t))
{
    T t = {.name = name};

    fn(&t);
    if (t.failed) {
        n_failed++;
        fprintf(stderr, "FAIL %s\n", name);
    } else {
        n_passed++;
        printf("ok   %s\n", name);
    }
}

#define RUN(fn) run_test(#fn, fn)

static inline int test_summary(void)
{
    printf("%u passed, %u failed\n", n_passed, n_failed);
    return n_failed ? 1 : 0;
}
