/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The checks the end-to-end tests share (e2e-daemon.c, e2e-server.c,
 * e2e-client.c): check() reports file:line and the expression and counts a
 * failure; require() also ends the case at its "out:" label. Each e2e test is
 * its own binary, so the counter is one per program.
 */

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>

static int failures;

static bool check_at(bool ok, const char *expr, const char *file, int line, const char *fmt, ...)
        __attribute__((format(printf, 5, 6)));

static bool check_at(bool ok, const char *expr, const char *file, int line, const char *fmt, ...)
{
    va_list ap;

    if (ok)
        return true;
    fprintf(stderr, "FAIL %s:%d: %s: ", file, line, expr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    failures++;
    return false;
}

/* Each condition is evaluated once: some start daemons or plug boards. */
#define check(cond, ...) check_at(!!(cond), #cond, __FILE__, __LINE__, __VA_ARGS__)

/* Stop the case: the rest would only add noise. */
#define require(cond, ...)             \
    do {                               \
        if (!check(cond, __VA_ARGS__)) \
            goto out;                  \
    } while (0)
