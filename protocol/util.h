/* SPDX-License-Identifier: MIT */
#pragma once

/* Small helpers in the systemd style: cleanup attributes and ownership moves. */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define _cleanup_(f)     __attribute__((cleanup(f)))
#define _cleanup_free_   _cleanup_(freep)
#define _cleanup_close_  _cleanup_(closep)
#define _cleanup_fclose_ _cleanup_(fclosep)

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

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
