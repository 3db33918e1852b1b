/* SPDX-License-Identifier: MIT */
/*
 * The control socket's transport: the listening socket, connections with
 * their credentials and limits, reading lines (and SCM_RIGHTS fds), bounded
 * output queues written on EPOLLOUT, and the fan-out of manager events to
 * subscribers. What a request means is server-methods.c's business.
 *
 * Clients are never freed while the manager iterates its subscribers or a
 * handler runs: they are marked dead and a defer source reaps them.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "log.h"
#include "server-internal.h"
#include "timeutil.h"
#include "util.h"

static int client_update_events(Client *c);
static void client_arm_deadline(Client *c);
static void client_schedule(Client *c);
static void dispatch(Client *c, WireRequest *req, int fd);

/* ---- the listening socket ---- */

/* systemd passed fds: exactly one, and it must be our kind of socket. */
static int listen_activated(Server *s)
{
    int n = sd_listen_fds(true);

    if (n < 0)
        return log_errno(LOG_ERR, n, "cannot read the sockets passed by systemd");
    if (n == 0)
        return 0;
    if (n > 1)
        return log_errno(LOG_ERR, -EINVAL, "systemd passed %d sockets; expected one", n);
    if (sd_is_socket_unix(SD_LISTEN_FDS_START, SOCK_STREAM, 1, NULL, 0) <= 0)
        return log_errno(LOG_ERR, -EINVAL,
                         "the socket systemd passed is not a listening AF_UNIX stream socket");
    s->listen_fd = SD_LISTEN_FDS_START;
    s->activated = true;
    if (fcntl(s->listen_fd, F_SETFL, fcntl(s->listen_fd, F_GETFL) | O_NONBLOCK) < 0)
        return log_errno(LOG_ERR, -errno, "cannot make the passed socket non-blocking");
    log_info("listening on the socket passed by systemd");
    return 1;
}

/* mkdir -p of path's parent, new directories 0755. */
static int make_parent(const char *path)
{
    _cleanup_free_ char *dir = strdup(path);

    if (!dir)
        return -ENOMEM;
    for (char *p = strchr(dir + 1, '/'); p; p = strchr(p + 1, '/')) {
        *p = '\0';
        if (mkdir(dir, 0755) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    return 0;
}

/* Another espdfud answers on path: refuse rather than steal its socket. */
static int remove_stale(const char *path, const struct sockaddr_un *sa)
{
    _cleanup_close_ int fd = -1;
    struct stat st;

    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISSOCK(st.st_mode))
        return -EEXIST; /* never unlink something that is not a socket */
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0)
        return -EADDRINUSE;
    if (errno != ECONNREFUSED)
        return -errno;
    log_notice("removing the stale socket %s", path);
    return unlink(path) < 0 ? -errno : 0;
}

/* Mode 0660, group group= when it exists: the protocol's "who may connect". */
static void set_owner(Server *s, const char *path)
{
    if (chmod(path, 0660) < 0)
        log_errno(LOG_WARNING, -errno, "cannot chmod %s", path);
    if (!s->group_exists) {
        log_warning("group \"%s\" does not exist: only root may use %s, and only root may "
                    "flash, cancel, pause, resume or reload",
                    s->group, path);
        return;
    }
    if (chown(path, (uid_t)-1, s->group_gid) < 0)
        log_errno(LOG_WARNING, -errno, "cannot give %s to group %s", path, s->group);
}

static int listen_path(Server *s, const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    _cleanup_close_ int fd = -1;
    mode_t old;
    int r;

    if (strlen(path) >= sizeof(sa.sun_path) || path[0] != '/')
        return log_errno(LOG_ERR, -EINVAL, "socket path %s: not an absolute path of < %zu bytes",
                         path, sizeof(sa.sun_path));
    memcpy(sa.sun_path, path, strlen(path));
    r = make_parent(path);
    if (r < 0)
        return log_errno(LOG_ERR, r, "cannot create the directory of %s", path);
    r = remove_stale(path, &sa);
    if (r < 0)
        return log_errno(LOG_ERR, r, "%s: %s", path,
                         r == -EADDRINUSE ? "another espdfud is listening there"
                                          : "cannot replace it");
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return log_errno(LOG_ERR, -errno, "cannot create a socket");
    old = umask(0117); /* no moment with a wider mode than 0660 */
    r = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ? -errno : 0;
    umask(old);
    if (r < 0)
        return log_errno(LOG_ERR, r, "cannot bind %s", path);
    s->bound_path = strdup(path);
    if (!s->bound_path)
        return -ENOMEM;
    set_owner(s, path);
    if (listen(fd, SOMAXCONN) < 0)
        return log_errno(LOG_ERR, -errno, "cannot listen on %s", path);
    s->listen_fd = TAKE_FD(fd);
    log_info("listening on %s", path);
    return 0;
}

static int resolve_group(Server *s, const char *name)
{
    struct group *g;

    s->group = strdup(name);
    if (!s->group)
        return -ENOMEM;
    errno = 0;
    g = getgrnam(name); /* main thread, once at start: the non-reentrant call is fine */
    if (g) {
        s->group_exists = true;
        s->group_gid = g->gr_gid;
    }
    return 0;
}

/* ---- connections ---- */

static void server_schedule_reap(Server *s)
{
    (void)sd_event_source_set_enabled(s->reaper, SD_EVENT_ONESHOT);
}

static void client_kill(Client *c)
{
    if (c->dead)
        return;
    c->dead = true;
    c->server->n_live--;
    (void)sd_event_source_set_enabled(c->io, SD_EVENT_OFF);
    server_schedule_reap(c->server);
}

static Client *client_free(Client *c)
{
    Server *s = c->server;

    if (c->prev)
        c->prev->next = c->next;
    else
        s->clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->n_clients--;
    if (!c->dead)
        s->n_live--;
    if (c->subscribed)
        s->n_subscribers--;
    if (c->call)
        c->call->client = NULL; /* its answer finds nobody */
    sd_event_source_disable_unref(c->io);
    sd_event_source_disable_unref(c->linger);
    sd_event_source_disable_unref(c->deadline);
    closep(&c->fd);
    closep(&c->pending_fd);
    wire_framer_done(&c->framer);
    free(c->groups);
    free(c->out);
    log_debug("client %" PRIu64 " (pid %d uid %u) disconnected", c->serial, (int)c->pid,
              (unsigned)c->uid);
    free(c);
    return NULL;
}

static int on_reap(sd_event_source *src, void *userdata)
{
    Server *s = userdata;

    for (Client *c = s->clients, *next; c; c = next) {
        next = c->next;
        if (c->dead)
            client_free(c);
    }
    /* Not from inside server_on_manager_event(): the manager iterates its subscribers there. */
    if (s->manager_subscribed && s->n_subscribers == 0) {
        manager_unsubscribe(s->manager, server_on_manager_event, s);
        s->manager_subscribed = false;
    }
    return 0;
}

/* SO_PEERGROUPS: the buffer size is learned from ERANGE. */
static int read_groups(int fd, gid_t **ret, size_t *ret_n)
{
    socklen_t len = 64 * sizeof(gid_t);

    for (;;) {
        _cleanup_free_ gid_t *g = malloc(len);

        if (!g)
            return -ENOMEM;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, g, &len) == 0) {
            *ret_n = len / sizeof(gid_t);
            *ret = TAKE_PTR(g);
            return 0;
        }
        if (errno != ERANGE || len > SERVER_GROUPS_MAX * sizeof(gid_t))
            return -errno;
    }
}

static int read_credentials(Client *c)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);
    int r;

    if (getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
        return -errno;
    c->pid = cred.pid;
    c->uid = cred.uid;
    c->gid = cred.gid;
    r = read_groups(c->fd, &c->groups, &c->n_groups);
    if (r == -ENOPROTOOPT) /* kernels before 4.13: the primary group only */
        r = 0;
    return r;
}

/* Root, or the daemon's group as the primary or a supplementary group. */
static bool client_may_change(const Client *c)
{
    const Server *s = c->server;

    if (c->uid == 0)
        return true;
    if (!s->group_exists)
        return false;
    if (c->gid == s->group_gid)
        return true;
    for (size_t i = 0; i < c->n_groups; i++)
        if (c->groups[i] == s->group_gid)
            return true;
    return false;
}

static size_t connections_of(Server *s, uid_t uid)
{
    size_t n = 0;

    for (Client *c = s->clients; c; c = c->next)
        if (!c->dead && c->uid == uid)
            n++;
    return n;
}

static size_t unprivileged_connections(Server *s)
{
    size_t n = 0;

    for (Client *c = s->clients; c; c = c->next)
        n += !c->dead && !c->privileged;
    return n;
}

void peer_log(Client *c, int level, const char *fmt, ...)
{
    Server *s = c->server;
    uint64_t now = now_usec(CLOCK_MONOTONIC);
    PeerLog *slot = NULL, *reuse = NULL;
    char message[512], held[96] = "";
    va_list ap;

    /* This uid's slot, else a free one, else the one quiet for longest. */
    for (size_t i = 0; i < SERVER_PEER_LOG_SLOTS && !slot; i++) {
        PeerLog *p = &s->peer_logs[i];

        if (p->used && p->uid == c->uid)
            slot = p;
        else if (!reuse || (reuse->used && (!p->used || p->last_usec < reuse->last_usec)))
            reuse = p;
    }
    if (!slot) {
        slot = reuse;
        *slot = (PeerLog){.uid = c->uid, .used = true};
    }
    if (slot->last_usec && now < slot->last_usec + SERVER_PEER_LOG_INTERVAL) {
        slot->suppressed++;
        return;
    }
    if (slot->suppressed)
        snprintf(held, sizeof(held), " (and %u more lines about uid %u in %u s, not logged)",
                 slot->suppressed, (unsigned)c->uid, SERVER_PEER_LOG_INTERVAL / 1000000u);
    slot->last_usec = now;
    slot->suppressed = 0;
    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    log_message(level, "client %" PRIu64 " (pid %d uid %u): %s%s", c->serial, (int)c->pid,
                (unsigned)c->uid, message, held);
}

/* One error line into the fresh socket's empty buffer, then close: no client object. */
static void refuse(int fd, const char *why)
{
    _cleanup_free_ char *line = NULL;
    WireId id = {.type = WIRE_ID_NULL};

    if (wire_build_error(&id, WIRE_ERROR_TOO_MANY_CONNECTIONS, why, NULL, &line) >= 0)
        (void)send(fd, line, strlen(line), MSG_DONTWAIT | MSG_NOSIGNAL);
}

static int on_client_io(sd_event_source *src, int fd, uint32_t revents, void *userdata);

static int client_new(Server *s, int fd, Client **ret)
{
    Client *c = calloc(1, sizeof(*c));
    int r;

    if (!c)
        return -ENOMEM;
    *c = (Client){.server = s, .fd = fd, .pending_fd = -1, .at_line_start = true};
    wire_framer_init(&c->framer, WIRE_MAX_LINE);
    c->serial = ++s->next_serial;
    c->next = s->clients;
    if (s->clients)
        s->clients->prev = c;
    s->clients = c;
    s->n_clients++;
    s->n_live++;
    r = read_credentials(c);
    if (r >= 0)
        r = sd_event_add_io(s->event, &c->io, fd, EPOLLIN, on_client_io, c);
    if (r < 0) {
        c->fd = -1; /* the caller still owns it */
        client_free(c);
        return r;
    }
    (void)sd_event_source_set_description(c->io, "client");
    *ret = c;
    return 0;
}

static void accept_one(Server *s, int fd)
{
    Client *c;
    size_t same_uid;
    int r;

    r = client_new(s, fd, &c);
    if (r < 0) {
        log_errno(LOG_WARNING, r, "cannot set up a new client");
        close(fd);
        return;
    }
    c->privileged = client_may_change(c);
    same_uid = connections_of(s, c->uid);
    /* Counted without the refused ones not yet reaped. The last WIRE_RESERVED_CONNECTIONS
     * slots are for root and the group: others can never lock the operators out. */
    if (s->n_live > WIRE_MAX_CONNECTIONS || same_uid > WIRE_MAX_CONNECTIONS_PER_UID ||
        (!c->privileged &&
         unprivileged_connections(s) > WIRE_MAX_CONNECTIONS - WIRE_RESERVED_CONNECTIONS)) {
        const char *why = s->n_live > WIRE_MAX_CONNECTIONS ? "too many connections: 64 are open"
                          : same_uid > WIRE_MAX_CONNECTIONS_PER_UID
                                  ? "too many connections: 16 are open for this uid"
                                  : "too many connections: the other 16 are kept for root "
                                    "and the daemon's group";

        peer_log(c, LOG_WARNING, "connection refused: %s", why);
        refuse(fd, why);
        client_kill(c);
        return;
    }
    c->active_usec = now_usec(CLOCK_MONOTONIC);
    client_arm_deadline(c);
    log_debug("client %" PRIu64 " connected: pid %d uid %u gid %u", c->serial, (int)c->pid,
              (unsigned)c->uid, (unsigned)c->gid);
}

int server_adopt(Server *s, int fd)
{
    int flags = fcntl(fd, F_GETFL);

    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
        return -errno;
    accept_one(s, fd);
    return 0;
}

static int on_listen(sd_event_source *src, int lfd, uint32_t revents, void *userdata)
{
    Server *s = userdata;

    /* A bounded batch per wakeup: a connection storm cannot starve the flashing. */
    for (unsigned i = 0; i < 32; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd < 0) {
            if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                log_errno(LOG_WARNING, -errno, "accept failed");
            return 0;
        }
        accept_one(s, fd);
    }
    return 0;
}

/* ---- output ---- */

static void client_flush(Client *c)
{
    while (c->out_start < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_start, c->out_len - c->out_start,
                         MSG_DONTWAIT | MSG_NOSIGNAL);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                client_kill(c);
            break;
        }
        c->out_start += (size_t)n;
        c->at_line_start = c->out[c->out_start - 1] == '\n';
    }
    if (c->out_start == c->out_len)
        c->out_start = c->out_len = 0;
    if (c->closing && c->out_len == 0)
        client_kill(c);
    if (!c->dead)
        (void)client_update_events(c);
}

static int queue_append(Client *c, const char *line, size_t len)
{
    if (c->out_start > 0 && c->out_len + len > c->out_size) {
        memmove(c->out, c->out + c->out_start, c->out_len - c->out_start);
        c->out_len -= c->out_start;
        c->out_start = 0;
    }
    if (c->out_len + len > c->out_size) {
        size_t size = c->out_size * 2 > c->out_len + len ? c->out_size * 2 : c->out_len + len;
        char *p = realloc(c->out, size);

        if (!p)
            return -ENOMEM;
        c->out = p;
        c->out_size = size;
    }
    memcpy(c->out + c->out_len, line, len);
    c->out_len += len;
    return 0;
}

/*
 * Over the limit: keep only the rest of a half-written line (framing stays
 * intact), add `dropped`, and close once that is out.
 */
static void client_drop(Client *c, const char *reason)
{
    _cleanup_free_ char *line = NULL;
    json_object *data = json_object_new_object();
    size_t keep = 0;

    peer_log(c, LOG_WARNING, "dropped: %s", reason);
    if (!c->at_line_start) {
        char *nl = memchr(c->out + c->out_start, '\n', c->out_len - c->out_start);

        keep = nl ? (size_t)(nl - (c->out + c->out_start)) + 1 : 0;
    }
    c->out_len = c->out_start + keep;
    if (data && json_object_object_add(data, "reason", json_object_new_string(reason)) == 0 &&
        wire_build_event(WIRE_EVENT_DROPPED, data, &line) >= 0)
        (void)queue_append(c, line, strlen(line));
    json_object_put(data);
    client_close_after_flush(c);
}

void client_send(Client *c, const char *line, size_t len)
{
    if (c->dead || c->closing)
        return;
    if (c->out_len - c->out_start + len > WIRE_MAX_OUTPUT) {
        client_drop(c, "more than 1 MiB of output queued: the client does not read");
        return;
    }
    if (queue_append(c, line, len) < 0) {
        client_drop(c, "out of memory");
        return;
    }
    client_flush(c);
}

static int on_linger(sd_event_source *src, uint64_t usec, void *userdata)
{
    Client *c = userdata;

    log_debug("client %" PRIu64 " did not read its last lines in time", c->serial);
    client_kill(c);
    return 0;
}

void client_close_after_flush(Client *c)
{
    if (c->closing || c->dead)
        return;
    c->closing = true;
    /* The only timer the server ever has, and only while a client is closing. */
    if (sd_event_add_time_relative(c->server->event, &c->linger, CLOCK_MONOTONIC,
                                   SERVER_LINGER_USEC, 0, on_linger, c) < 0) {
        client_kill(c);
        return;
    }
    client_flush(c);
}

void client_send_error(Client *c, const WireId *id, WireError code, const char *detail,
                       const char *fmt, ...)
{
    _cleanup_free_ char *line = NULL;
    char message[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    if (wire_build_error(id, code, message, detail, &line) < 0) {
        client_kill(c);
        return;
    }
    client_send(c, line, strlen(line));
}

void client_send_result(Client *c, const WireId *id, json_object *result)
{
    _cleanup_free_ char *line = NULL;
    int r = result ? wire_build_reply(id, result, &line) : -ENOMEM;

    json_object_put(result);
    if (r < 0) {
        log_errno(LOG_ERR, r, "cannot build a reply for client %" PRIu64, c->serial);
        client_send_error(c, id, WIRE_ERROR_INTERNAL, NULL, "out of memory");
        return;
    }
    if (strlen(line) > WIRE_MAX_OUTPUT) {
        client_send_error(c, id, WIRE_ERROR_INTERNAL, NULL,
                          "the reply would pass 1 MiB; ask for less (jobs: limit)");
        return;
    }
    client_send(c, line, strlen(line));
}

void client_send_result_text(Client *c, const WireId *id, const char *result)
{
    _cleanup_free_ char *line = NULL;

    if (wire_build_reply_text(id, result, &line) < 0) {
        client_send_error(c, id, WIRE_ERROR_INTERNAL, NULL, "out of memory");
        return;
    }
    if (strlen(line) > WIRE_MAX_OUTPUT) {
        client_send_error(c, id, WIRE_ERROR_INTERNAL, NULL, "the reply would pass 1 MiB");
        return;
    }
    client_send(c, line, strlen(line));
}

static int client_update_events(Client *c)
{
    uint32_t ev = 0;

    if (!c->closing && !c->call && !c->eof && c->out_len - c->out_start < SERVER_READ_PAUSE_BYTES)
        ev |= EPOLLIN;
    if (c->out_len > c->out_start)
        ev |= EPOLLOUT;
    return sd_event_source_set_io_events(c->io, ev);
}

/* ---- input ---- */

/* The fds of one recvmsg: the first is kept for the line it came with, the rest closed. */
static void take_fds(Client *c, struct msghdr *mh, const char *data, size_t n)
{
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm)) {
        size_t k;
        int *fds;

        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
            continue;
        fds = (int *)(void *)CMSG_DATA(cm);
        k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k; i++) {
            if (c->pending_fd >= 0 || n == 0) {
                close(fds[i]);
                continue;
            }
            /* "sent with (any part of) the request's line": the line holding its last byte. */
            c->pending_fd = fds[i];
            c->pending_fd_line = c->newlines_received;
            for (size_t b = 0; b + 1 < n; b++)
                c->pending_fd_line += data[b] == '\n';
        }
    }
}

/* 1: bytes read; 0: EOF; -EAGAIN; -EMSGSIZE: the line is too large; other -errno. */
static int client_read(Client *c)
{
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * 4)];
    } control;
    struct msghdr mh = {.msg_control = &control, .msg_controllen = sizeof(control)};
    struct iovec iov;
    char *space;
    size_t size;
    ssize_t n;
    int r;

    r = wire_framer_space(&c->framer, &space, &size);
    if (r < 0)
        return r;
    iov = (struct iovec){.iov_base = space, .iov_len = size};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    n = recvmsg(c->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0)
        return errno == EINTR ? -EAGAIN : -errno;
    take_fds(c, &mh, space, (size_t)n);
    if (n == 0)
        return 0;
    for (ssize_t i = 0; i < n; i++)
        c->newlines_received += space[i] == '\n';
    wire_framer_advance(&c->framer, (size_t)n);
    return 1;
}

/* The fd sent with line number `line`, or -1; stale ones are closed. */
static int fd_for_line(Client *c, uint64_t line)
{
    if (c->pending_fd < 0 || c->pending_fd_line > line)
        return -1;
    if (c->pending_fd_line < line) {
        closep(&c->pending_fd);
        c->pending_fd = -1;
        return -1;
    }
    return TAKE_FD(c->pending_fd);
}

static bool blank(const char *s, size_t n)
{
    return strspn(s, " \t\r") == n;
}

static void handle_line(Client *c, const char *line, size_t len, int fd)
{
    WireRequest req;
    WireFailure f;

    /* This line is whole: bytes after it start the next line's 5 s (client_arm_deadline). */
    c->line_started_usec = 0;
    if (blank(line, len)) {
        closep(&fd);
        return;
    }
    if (wire_request_parse(line, len, &req, &f) < 0) {
        closep(&fd);
        client_send_error(c, &f.id, f.code, NULL, "%s", f.message);
        return;
    }
    dispatch(c, &req, fd);
    wire_request_done(&req);
}

static void too_large(Client *c)
{
    WireId id = {.type = WIRE_ID_NULL};

    peer_log(c, LOG_NOTICE, "sent a line over %u bytes: closing", WIRE_MAX_LINE);
    client_send_error(c, &id, WIRE_ERROR_TOO_LARGE, NULL,
                      "a line longer than %u bytes; closing the connection", WIRE_MAX_LINE);
    client_close_after_flush(c);
}

/* Answer every complete line, in order, while the client may still be served. */
static void process_lines(Client *c)
{
    while (!c->dead && !c->closing && !c->call &&
           c->out_len - c->out_start < SERVER_READ_PAUSE_BYTES) {
        char *line;
        size_t len;
        int r = wire_framer_next(&c->framer, &line, &len);

        if (r == 0)
            break;
        if (r < 0) {
            too_large(c);
            break;
        }
        handle_line(c, line, len, fd_for_line(c, c->lines_taken++));
    }
}

/*
 * One request of c, as sd-varlink's process step does: 1 answered (or under
 * way), 0 no complete line, -EAGAIN not now (a call under way, output to drain).
 */
static int serve_one(Client *c)
{
    char *line;
    size_t len;
    int r;

    if (c->dead || c->closing || c->call || c->out_len - c->out_start >= SERVER_READ_PAUSE_BYTES)
        return -EAGAIN;
    r = wire_framer_next(&c->framer, &line, &len);
    if (r == 0)
        return 0;
    if (r < 0) {
        too_large(c);
        return -EAGAIN;
    }
    handle_line(c, line, len, fd_for_line(c, c->lines_taken++));
    return 1;
}

/* c may have lines to answer: it gets a turn with everyone else's. */
static void client_schedule(Client *c)
{
    c->ready = true;
    (void)sd_event_source_set_enabled(c->server->turns, SD_EVENT_ONESHOT);
}

/*
 * One line of each ready client per dispatch, then the loop goes round (I/O,
 * timers, workers) before the next: one client pipelining requests is
 * served one request per turn, never drained ahead of the others.
 */
static int on_turns(sd_event_source *src, uint64_t usec, void *userdata)
{
    Server *s = userdata;
    bool again = false;

    for (Client *c = s->clients; c; c = c->next) {
        int r;

        if (!c->ready || c->dead)
            continue;
        c->ready = false;
        r = serve_one(c);
        if (r > 0)
            again = c->ready = true;
        else if (r == 0 && c->eof && !c->call)
            client_close_after_flush(c); /* all answered; a half line is simply forgotten */
        if (!c->dead)
            client_arm_deadline(c);
    }
    if (again)
        (void)sd_event_source_set_enabled(s->turns, SD_EVENT_ONESHOT);
    return 0;
}

/* ---- timeouts: a line started and not finished, a connection that does nothing ---- */

static int on_deadline(sd_event_source *src, uint64_t usec, void *userdata)
{
    Client *c = userdata;
    WireId id = {.type = WIRE_ID_NULL};
    uint64_t now = now_usec(CLOCK_MONOTONIC);

    if (c->dead || c->closing)
        return 0;
    if (c->line_started_usec && now >= c->line_started_usec + WIRE_LINE_TIMEOUT_S * USEC_PER_SEC) {
        peer_log(c, LOG_NOTICE, "half a line and nothing more for %u s: closing",
                 WIRE_LINE_TIMEOUT_S);
        client_send_error(c, &id, WIRE_ERROR_TIMEOUT, NULL,
                          "an unfinished line for %u s; closing the connection",
                          WIRE_LINE_TIMEOUT_S);
        client_close_after_flush(c);
        return 0;
    }
    if (!c->call && !c->subscribed && now >= c->active_usec + WIRE_IDLE_TIMEOUT_S * USEC_PER_SEC) {
        log_debug("client %" PRIu64 " idle for %u s: closing", c->serial, WIRE_IDLE_TIMEOUT_S);
        client_send_error(c, &id, WIRE_ERROR_TIMEOUT, NULL, "idle for %u s; closing the connection",
                          WIRE_IDLE_TIMEOUT_S);
        client_close_after_flush(c);
        return 0;
    }
    client_arm_deadline(c);
    return 0;
}

/* The earliest timeout that applies to c now, or none: armed only while one does. */
static void client_arm_deadline(Client *c)
{
    uint64_t when = 0;
    int r;

    if (c->dead || c->closing)
        return;
    /* Bytes wait in the framer after every complete line was answered: a line half sent. */
    if (wire_framer_pending(&c->framer) > 0 && !c->call && !c->ready) {
        if (!c->line_started_usec)
            c->line_started_usec = now_usec(CLOCK_MONOTONIC);
        when = c->line_started_usec + WIRE_LINE_TIMEOUT_S * USEC_PER_SEC;
    } else if (wire_framer_pending(&c->framer) == 0)
        c->line_started_usec = 0;
    if (!when && !c->call && !c->subscribed)
        when = c->active_usec + WIRE_IDLE_TIMEOUT_S * USEC_PER_SEC;
    if (!when) {
        (void)sd_event_source_set_enabled(c->deadline, SD_EVENT_OFF);
        return;
    }
    if (c->deadline) {
        r = sd_event_source_set_time(c->deadline, when);
        if (r >= 0)
            r = sd_event_source_set_enabled(c->deadline, SD_EVENT_ONESHOT);
    } else
        r = sd_event_add_time(c->server->event, &c->deadline, CLOCK_MONOTONIC, when,
                              USEC_PER_SEC / 10, on_deadline, c);
    if (r < 0)
        log_errno(LOG_WARNING, r, "client %" PRIu64 ": cannot arm its timeout", c->serial);
}

static void client_on_input(Client *c)
{
    int r = client_read(c);

    if (r == -EAGAIN)
        return;
    if (r == -EMSGSIZE) {
        process_lines(c); /* what came before the long line still gets its answer */
        too_large(c);
        return;
    }
    if (r == 0) {
        /* EOF: what was asked is still answered, then the connection closes. */
        c->eof = true;
        client_schedule(c);
        return;
    }
    if (r < 0) {
        client_kill(c);
        return;
    }
    c->active_usec = now_usec(CLOCK_MONOTONIC);
    client_schedule(c);
    client_arm_deadline(c);
}

/* ---- calls: one request, one answer ---- */

static void call_send(ServerCall *call, int r, ServerReply *reply)
{
    Client *c = call->client;
    const char *method = wire_method_to_string(call->method);

    if (r < 0) {
        if (c || r != -ENOTCONN)
            log_errno(LOG_ERR, r, "client %" PRIu64 ": %s failed", call->peer.serial, method);
        json_object_put(TAKE_PTR(reply->result));
        reply->result_text = (free(reply->result_text), NULL);
        if (c)
            client_send_error(c, &call->id, WIRE_ERROR_INTERNAL, NULL, "%s failed: %s", method,
                              strerror(-r));
    } else if (r == SERVER_REPLY_ERROR) {
        json_object_put(TAKE_PTR(reply->result));
        reply->result_text = (free(reply->result_text), NULL);
        if (c)
            client_send_error(c, &call->id, reply->error, reply->detail[0] ? reply->detail : NULL,
                              "%s", reply->message);
    } else if (c && reply->result_text)
        client_send_result_text(c, &call->id, reply->result_text);
    else if (c)
        client_send_result(c, &call->id, TAKE_PTR(reply->result));
    json_object_put(TAKE_PTR(reply->result));
    reply->result_text = (free(reply->result_text), NULL);
}

/* The one answer, then the call is over: the client's next request may come. */
static void call_end(ServerCall *call, int r, ServerReply *reply)
{
    Client *c = call->client;

    call_send(call, r, reply);
    free(call);
    if (!c)
        return;
    c->call = NULL;
    c->active_usec = now_usec(CLOCK_MONOTONIC);
    /* Reading was paused while the call ran (the answer's flush saw it still there). */
    if (!c->dead)
        (void)client_update_events(c);
}

/* A parsed request: allowed?, then its handler, then its one answer (now or later). */
static void dispatch(Client *c, WireRequest *req, int fd)
{
    const char *name = wire_method_to_string(req->method);
    ServerReply reply = {};
    ServerCall *call;
    int r;

    if (fd >= 0 && req->method != WIRE_METHOD_FLASH)
        closep(&fd); /* "only flash takes one; others are closed" */
    if (wire_method_is_changing(req->method) && !c->privileged) {
        closep(&fd);
        peer_log(c, LOG_NOTICE, "%s refused: not root, not in group %s", name, c->server->group);
        client_send_error(c, &req->id, WIRE_ERROR_PERMISSION_DENIED, NULL,
                          "permission denied: \"%s\" needs root or membership of group \"%s\"",
                          name, c->server->group);
        return;
    }
    call = calloc(1, sizeof(*call));
    if (!call) {
        closep(&fd);
        client_send_error(c, &req->id, WIRE_ERROR_INTERNAL, NULL, "out of memory");
        return;
    }
    *call = (ServerCall){
            .client = c,
            .peer = {.serial = c->serial, .pid = c->pid, .uid = c->uid, .gid = c->gid},
            .id = req->id,
            .method = req->method,
    };
    c->call = call;
    r = c->server->methods->handlers[req->method](c->server->methods->userdata, call, req, fd,
                                                  &reply);
    if (r == SERVER_REPLY_LATER) {
        (void)client_update_events(c);
        return;
    }
    call_end(call, r, &reply);
}

void server_call_reply(ServerCall *call, int r, ServerReply *reply)
{
    Client *c = call->client;

    call_end(call, r, reply);
    if (c && !c->dead) {
        client_schedule(c);
        (void)client_update_events(c);
    }
}

const ServerPeer *server_call_peer(const ServerCall *call)
{
    return &call->peer;
}

bool server_call_connected(const ServerCall *call)
{
    return call->client && !call->client->dead;
}

int server_call_subscribe(ServerCall *call)
{
    return call->client ? server_subscribe(call->client->server, call->client) : -ENOTCONN;
}

void server_call_log(ServerCall *call, int level, const char *fmt, ...)
{
    char message[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    if (call->client)
        peer_log(call->client, level, "%s", message);
    else
        log_message(level, "client %" PRIu64 " (pid %d uid %u): %s", call->peer.serial,
                    (int)call->peer.pid, (unsigned)call->peer.uid, message);
}

int server_reply_error(ServerReply *reply, WireError code, const char *detail, const char *fmt, ...)
{
    va_list ap;

    reply->error = code;
    snprintf(reply->detail, sizeof(reply->detail), "%s", detail ? detail : "");
    va_start(ap, fmt);
    vsnprintf(reply->message, sizeof(reply->message), fmt, ap);
    va_end(ap);
    return SERVER_REPLY_ERROR;
}

static int on_client_io(sd_event_source *src, int fd, uint32_t revents, void *userdata)
{
    Client *c = userdata;

    if (revents & EPOLLOUT) {
        client_flush(c);
        /* Output drained below the pause mark: lines buffered meanwhile are answered now. */
        if (!c->dead)
            client_schedule(c);
    }
    if (!c->dead && !c->closing && (revents & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        client_on_input(c);
    else if (!c->dead && (revents & (EPOLLHUP | EPOLLERR)) && !(revents & EPOLLOUT)) {
        client_kill(c);
    }
    if (!c->dead)
        (void)client_update_events(c);
    return 0;
}

/* ---- the server ---- */

int server_new(sd_event *e, Manager *m, const ServerMethods *methods, Server **ret)
{
    _cleanup_(server_freep) Server *s = calloc(1, sizeof(*s));
    const Config *config = manager_get_config(m);
    int r;

    if (!s)
        return -ENOMEM;
    s->event = sd_event_ref(e);
    s->manager = m;
    s->listen_fd = -1;
    s->methods = methods;
    r = resolve_group(s, config->group);
    if (r < 0)
        return r;
    r = listen_activated(s);
    if (r == 0)
        r = listen_path(s, config->socket_path);
    if (r < 0)
        return r;
    r = sd_event_add_io(e, &s->listen_source, s->listen_fd, EPOLLIN, on_listen, s);
    if (r >= 0)
        r = sd_event_add_defer(e, &s->reaper, on_reap, s);
    if (r >= 0)
        r = sd_event_source_set_enabled(s->reaper, SD_EVENT_OFF);
    if (r >= 0)
        /* A timer already due, not a defer source: sd-event polls its fds only when nothing
         * is pending, so a defer source re-armed every turn would starve every other fd
         * (clients, workers, udev) while one client pipelines. A due timer goes through
         * the poll each turn. */
        r = sd_event_add_time(e, &s->turns, CLOCK_MONOTONIC, 1, 1, on_turns, s);
    if (r >= 0)
        r = sd_event_source_set_enabled(s->turns, SD_EVENT_OFF);
    if (r < 0)
        return log_errno(LOG_ERR, r, "cannot watch the control socket");
    (void)sd_event_source_set_description(s->listen_source, "control-socket");
    *ret = TAKE_PTR(s);
    return 0;
}

Server *server_free(Server *s)
{
    if (!s)
        return NULL;
    while (s->clients)
        client_free(s->clients);
    if (s->manager_subscribed)
        manager_unsubscribe(s->manager, server_on_manager_event, s);
    sd_event_source_disable_unref(s->listen_source);
    sd_event_source_disable_unref(s->reaper);
    sd_event_source_disable_unref(s->turns);
    closep(&s->listen_fd);
    if (s->bound_path && !s->activated)
        (void)unlink(s->bound_path);
    free(s->bound_path);
    free(s->group);
    sd_event_unref(s->event);
    free(s);
    return NULL;
}
