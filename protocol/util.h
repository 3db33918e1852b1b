/* SPDX-License-Identifier: MIT */
#pragma once

/* Small helpers in the systemd style: cleanup attributes and ownership moves. */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define _cleanup_(f)     __attribute__((cleanup(f)))
#define _cleanup_free_   _cleanup_(freep)
#define _cleanup_close_  _cleanup_(closep)
#define _cleanup_fclose_ _cleanup_(fclosep)

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

/* The index of s in names[0..n) (NULL rows never match), or n when it is not there. */
static inline size_t string_table_find(const char *const *names, size_t n, const char *s)
{
    if (!s)
        return n;
    for (size_t i = 0; i < n; i++)
        if (names[i] && strcmp(names[i], s) == 0)
            return i;
    return n;
}

/*
 * One table per enum: `static const char *const name##_table[] = { [VALUE] = "value", ... };`
 * then one of these defines the _to_string (NULL out of range) and _from_string (max when
 * unknown) pair. The size check catches a table that ends early or runs long; the unit
 * tests' round trips catch a hole in the middle.
 */
#define DEFINE_STRING_TABLE_TO_STRING(name, type, max)                                       \
    _Static_assert(ELEMENTSOF(name##_table) == (size_t)(max), #name "_table: one row each"); \
    const char *name##_to_string(type i)                                                     \
    {                                                                                        \
        return (size_t)i < ELEMENTSOF(name##_table) ? name##_table[i] : NULL;                \
    }

#define DEFINE_STRING_TABLE_LOOKUP(name, type, max)                                \
    DEFINE_STRING_TABLE_TO_STRING(name, type, max)                                 \
    type name##_from_string(const char *s)                                         \
    {                                                                              \
        return (type)string_table_find(name##_table, ELEMENTSOF(name##_table), s); \
    }

/* Hand ownership out of a cleanup-managed local: `*ret = TAKE_PTR(p);`. */
#define TAKE_PTR(p)             \
    ({                          \
        __typeof__(p) _p = (p); \
        (p) = NULL;             \
        _p;                     \
    })
#define TAKE_FD(fd)     \
    ({                  \
        int _fd = (fd); \
        (fd) = -1;      \
        _fd;            \
    })

static inline void freep(void *p)
{
    free(*(void **)p);
}

static inline void closep(int *fd)
{
    if (*fd >= 0) {
        int saved = errno;
        close(*fd);
        errno = saved;
    }
}

/* A NULL-terminated array of malloc'd strings, and the array itself. NULL-safe. */
static inline void strv_free(char **v)
{
    if (!v)
        return;
    for (char **a = v; *a; a++)
        free(*a);
    free(v);
}

static inline void fclosep(FILE **f)
{
    if (*f)
        fclose(*f);
}

#define DEFINE_TRIVIAL_CLEANUP_FUNC(type, func) \
    static inline void func##p(type *p)         \
    {                                           \
        if (*p)                                 \
            *p = func(*p);                      \
    }
