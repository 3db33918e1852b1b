/* SPDX-License-Identifier: MIT */
/*
 * libespdfu-emu-shim.so: preloaded BEFORE libumockdev-preload.so.0 into every
 * program the emulator runs.
 *
 * umockdev 0.17 binds each process's emulated uevent socket to
 * $UMOCKDEV_DIR/event<fd>, unlinking whatever is there first. Two processes
 * whose monitors got the same fd number steal each other's socket, and one of
 * them stops seeing hotplug events ("Lost device after RESET?" in dfu-util).
 * We wrap bind(): under a lock file shared by all processes, let umockdev bind
 * event<fd>, then rename it to event<fd>-<pid>, which is unique and still
 * matches the event[0-9]* pattern the senders look for. A renamed socket stays
 * reachable under its new name (the inode is what connect() finds).
 *
 * Built without sanitizers: it is loaded into programs that are not.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int bind(int fd, const struct sockaddr *addr, socklen_t len);

typedef int (*bind_fn)(int, const struct sockaddr *, socklen_t);

/* Is path "<dir>/event<digits>"? */
static int is_event_socket(const char *path, const char *dir)
{
    size_t n = strlen(dir);
    const char *p;

    if (strncmp(path, dir, n) != 0 || strncmp(path + n, "/event", 6) != 0)
        return 0;
    p = path + n + 6;
    if (!*p)
        return 0;
    for (; *p; p++)
        if (*p < '0' || *p > '9')
            return 0;
    return 1;
}

static int lock_dir(const char *dir)
{
    char path[sizeof(((struct sockaddr_un *)0)->sun_path) + 64];
    int fd;

    snprintf(path, sizeof(path), "%s/.espdfu-emu-bind.lock", dir);
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd >= 0 && flock(fd, LOCK_EX) < 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

int bind(int fd, const struct sockaddr *addr, socklen_t len)
{
    static bind_fn next;
    const char *dir = getenv("UMOCKDEV_DIR");
    struct sockaddr_un sa;
    socklen_t salen = sizeof(sa);
    char unique[sizeof(sa.sun_path)];
    int domain = 0, lock, r, saved;
    socklen_t dlen = sizeof(domain);

    if (!next)
        next = (bind_fn)dlsym(RTLD_NEXT, "bind");
    if (!next) {
        errno = ENOSYS;
        return -1;
    }
    /* Only a uevent monitor that umockdev turned into an AF_UNIX socket. */
    if (!dir || !addr || addr->sa_family != AF_NETLINK ||
        getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &dlen) < 0 || domain != AF_UNIX)
        return next(fd, addr, len);

    lock = lock_dir(dir);
    r = next(fd, addr, len);
    saved = errno;
    if (r == 0 && getsockname(fd, (struct sockaddr *)&sa, &salen) == 0 &&
        salen > offsetof(struct sockaddr_un, sun_path) && is_event_socket(sa.sun_path, dir) &&
        snprintf(unique, sizeof(unique), "%s-%d", sa.sun_path, (int)getpid()) < (int)sizeof(unique))
        (void)rename(sa.sun_path, unique);
    if (lock >= 0)
        close(lock);
    errno = saved;
    return r;
}
