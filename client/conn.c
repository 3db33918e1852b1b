/* SPDX-License-Identifier: MIT */
/*
 * espdfuctl's control-socket transport (conn.h). The socket is non-blocking and
 * every wait is a poll() with a deadline, so a stuck daemon costs at most
 * CTL_REPLY_TIMEOUT_MS, never a hang.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

#include "commands.h"
#include "conn.h"
#include "util.h"

struct CtlConn {
    int fd;
    WireFramer framer;
    uint64_t next_id;
    WireMessage *queue; /* events read while a reply was awaited, in order */
    size_t queue_head, queue_len, queue_size;
};

static const char *socket_override;
static const char *image_path; /* names an image-invalid reply */

void ctl_set_image_path(const char *path)
{
    image_path = path;
}

void ctl_set_socket(const char *path)
{
    socket_override = path;
}

const char *ctl_socket(void)
{
    const char *env = getenv("ESPDFU_SOCKET");

    if (socket_override)
        return socket_override;
    return env && *env ? env : CTL_DEFAULT_SOCKET;
}

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int remaining_ms(int64_t deadline)
{
    int64_t left;

    if (deadline < 0)
        return -1;
    left = deadline - now_ms();
    return left < 0 ? 0 : left > 60000 ? 60000 : (int)left;
}

static int unreachable(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int unreachable(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "espdfuctl: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return -CTL_EXIT_UNREACHABLE;
}

static int connect_failed(const char *path, int err, char *why, size_t why_size)
{
    /* The socket is 0660 root:espdfu: EACCES means "not in the group", not "not running". */
    if (err == EACCES || err == EPERM) {
        snprintf(why, why_size,
                 "cannot connect to %s: %s — the socket is for root and the espdfud group", path,
                 strerror(err));
        return -CTL_EXIT_PERMISSION;
    }
    snprintf(why, why_size,
             "cannot connect to %s: %s — is espdfud running? (systemctl status espdfud)", path,
             strerror(err));
    return -CTL_EXIT_UNREACHABLE;
}

/* A non-blocking connect, completed within the reply timeout. */
static int connect_socket(const char *path, int *ret, char *why, size_t why_size)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    _cleanup_close_ int fd = -1;
    struct pollfd p;
    int err = 0;

    if (strlen(path) >= sizeof(sa.sun_path))
        return connect_failed(path, ENAMETOOLONG, why, why_size);
    memcpy(sa.sun_path, path, strlen(path));
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return connect_failed(path, errno, why, why_size);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        if (errno != EINPROGRESS && errno != EAGAIN)
            return connect_failed(path, errno, why, why_size);
        p = (struct pollfd){.fd = fd, .events = POLLOUT};
        if (poll(&p, 1, CTL_REPLY_TIMEOUT_MS) <= 0)
            return connect_failed(path, ETIMEDOUT, why, why_size);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &(socklen_t){sizeof(err)}) < 0 || err)
            return connect_failed(path, err ?: errno, why, why_size);
    }
    *ret = TAKE_FD(fd);
    return 0;
}

int ctl_connect_quiet(CtlConn **ret, char *why, size_t why_size)
{
    CtlConn *c;
    int fd = -1, r;

    r = connect_socket(ctl_socket(), &fd, why, why_size);
    if (r < 0)
        return r;
    c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        snprintf(why, why_size, "out of memory");
        return -CTL_EXIT_FAILURE;
    }
    c->fd = fd;
    c->next_id = 1;
    wire_framer_init(&c->framer, WIRE_MAX_REPLY_LINE);
    *ret = c;
    return 0;
}

int ctl_connect(CtlConn **ret)
{
    char why[CTL_WHY_MAX];
    int r = ctl_connect_quiet(ret, why, sizeof(why));

    if (r < 0)
        fprintf(stderr, "espdfuctl: %s\n", why);
    return r;
}

CtlConn *ctl_conn_free(CtlConn *c)
{
    if (!c)
        return NULL;
    for (size_t i = 0; i < c->queue_len; i++)
        wire_message_done(&c->queue[(c->queue_head + i) % c->queue_size]);
    free(c->queue);
    wire_framer_done(&c->framer);
    if (c->fd >= 0)
        close(c->fd);
    free(c);
    return NULL;
}

int ctl_conn_fd(const CtlConn *c)
{
    return c->fd;
}

/* The fd rides on the first sendmsg() that carries any byte of the line. */
static int send_line(CtlConn *c, const char *line, int fd, int64_t deadline)
{
    size_t len = strlen(line), done = 0;
    char control[CMSG_SPACE(sizeof(int))] = {};

    while (done < len) {
        struct iovec iov = {.iov_base = (char *)line + done, .iov_len = len - done};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
        struct pollfd p = {.fd = c->fd, .events = POLLOUT};
        ssize_t n;

        if (fd >= 0 && done == 0) {
            struct cmsghdr *cm;

            mh.msg_control = control;
            mh.msg_controllen = sizeof(control);
            cm = CMSG_FIRSTHDR(&mh);
            cm->cmsg_level = SOL_SOCKET;
            cm->cmsg_type = SCM_RIGHTS;
            cm->cmsg_len = CMSG_LEN(sizeof(int));
            memcpy(CMSG_DATA(cm), &fd, sizeof(int));
        }
        n = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
        if (n > 0) {
            done += (size_t)n;
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EINTR)
            return unreachable("cannot send to espdfud: %s", strerror(errno));
        if (poll(&p, 1, remaining_ms(deadline)) == 0)
            return unreachable("%s", "espdfud did not take the request in time");
    }
    return 0;
}

/*
 * One line from the socket into *ret. 0, 1 on timeout or signal,
 * -CTL_EXIT_UNREACHABLE when the daemon closed or broke the connection.
 */
static int read_message(CtlConn *c, int64_t deadline, WireMessage *ret)
{
    for (;;) {
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        char *line, *space;
        size_t len, size;
        ssize_t n;
        int r;

        r = wire_framer_next(&c->framer, &line, &len);
        if (r < 0)
            return unreachable("%s", "espdfud sent a line longer than the protocol allows");
        if (r > 0) {
            if (len == 0)
                continue;
            if (wire_message_parse(line, len, ret) < 0)
                return unreachable("%s", "espdfud sent a line that is not a protocol message");
            return 0;
        }
        r = poll(&p, 1, remaining_ms(deadline));
        if (r < 0 && errno == EINTR)
            return 1;
        if (r == 0)
            return 1;
        if (wire_framer_space(&c->framer, &space, &size) < 0)
            return unreachable("%s", "espdfud's reply is too large");
        n = read(c->fd, space, size);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (n <= 0)
            return unreachable("espdfud closed the connection%s", n < 0 ? " with an error" : "");
        wire_framer_advance(&c->framer, (size_t)n);
    }
}

static int queue_event(CtlConn *c, WireMessage *m)
{
    if (c->queue_len == c->queue_size) {
        size_t n = c->queue_size ? c->queue_size * 2 : 64;
        WireMessage *q;

        if (n > CTL_MAX_QUEUED_EVENTS)
            return unreachable("%s", "too many events while waiting for a reply");
        q = calloc(n, sizeof(*q));
        if (!q)
            return unreachable("%s", "out of memory");
        for (size_t i = 0; i < c->queue_len; i++)
            q[i] = c->queue[(c->queue_head + i) % c->queue_size];
        free(c->queue);
        c->queue = q;
        c->queue_head = 0;
        c->queue_size = n;
    }
    c->queue[(c->queue_head + c->queue_len++) % c->queue_size] = *m;
    return 0;
}

/* Errors a daemon sends with id null (too many connections) end the wait too. */
static bool answers(const WireMessage *m, const WireId *id)
{
    if (m->type == WIRE_MESSAGE_EVENT)
        return false;
    return m->id.type == WIRE_ID_NULL || wire_id_equal(&m->id, id);
}

static int await_reply(CtlConn *c, const WireId *id, int64_t deadline, WireMessage *ret)
{
    for (;;) {
        WireMessage m;
        int r = read_message(c, deadline, &m);

        if (r > 0)
            return unreachable("%s", "no reply from espdfud in time");
        if (r < 0)
            return r;
        if (answers(&m, id)) {
            *ret = m;
            return 0;
        }
        if (m.type != WIRE_MESSAGE_EVENT) {
            wire_message_done(&m); /* a reply to nothing we asked: ignore */
            continue;
        }
        r = queue_event(c, &m);
        if (r < 0) {
            wire_message_done(&m);
            return r;
        }
    }
}

int ctl_call(CtlConn *c, WireMethod method, json_object *params, int fd, WireMessage *ret)
{
    int64_t deadline = now_ms() + CTL_REPLY_TIMEOUT_MS;
    WireId id = wire_id_int(c->next_id++);
    _cleanup_free_ char *line = NULL;
    WireMessage m;
    int r;

    if (wire_build_request(&id, method, params, &line) < 0) {
        fprintf(stderr, "espdfuctl: cannot build the request: out of memory\n");
        return -CTL_EXIT_FAILURE;
    }
    r = send_line(c, line, fd, deadline);
    if (r < 0)
        return r;
    r = await_reply(c, &id, deadline, &m);
    if (r < 0)
        return r;
    if (m.type == WIRE_MESSAGE_ERROR) {
        r = ctl_print_error(&m, wire_method_to_string(method));
        wire_message_done(&m);
        return -r;
    }
    *ret = m;
    return 0;
}

int ctl_next_event(CtlConn *c, int timeout_ms, WireMessage *ret)
{
    int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;

    if (c->queue_len > 0) {
        *ret = c->queue[c->queue_head];
        c->queue_head = (c->queue_head + 1) % c->queue_size;
        c->queue_len--;
        return 0;
    }
    for (;;) {
        WireMessage m;
        int r = read_message(c, deadline, &m);

        if (r != 0)
            return r;
        if (m.type == WIRE_MESSAGE_EVENT) {
            *ret = m;
            return 0;
        }
        wire_message_done(&m);
    }
}

int ctl_print_error(const WireMessage *m, const char *what)
{
    const char *msg = m->error_message ?: "(no message)";

    switch (m->error) {
    case WIRE_ERROR_PERMISSION_DENIED:
        fprintf(stderr, "espdfuctl: %s\n", msg);
        return CTL_EXIT_PERMISSION;
    case WIRE_ERROR_NOT_FOUND:
        fprintf(stderr, "espdfuctl: %s\n", msg);
        return CTL_EXIT_NOT_FOUND;
    case WIRE_ERROR_IMAGE_INVALID:
        fprintf(stderr, "espdfuctl: %s: %s [%s]\n", image_path ?: "image", msg,
                m->error_detail ?: "image-invalid");
        return CTL_EXIT_FAILURE;
    case WIRE_ERROR_TOO_MANY_CONNECTIONS:
    case WIRE_ERROR_SHUTTING_DOWN:
        fprintf(stderr, "espdfuctl: %s [%s]\n", msg, m->error_code);
        return CTL_EXIT_UNREACHABLE;
    default:
        fprintf(stderr, "espdfuctl: %s: %s [%s]\n", what, msg, m->error_code ?: "?");
        return CTL_EXIT_FAILURE;
    }
}

void ctl_print_json(json_object *o, bool stream)
{
    int flags = JSON_C_TO_STRING_NOSLASHESCAPE;

    if (!stream)
        flags |= JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED;
    puts(json_object_to_json_string_ext(o, flags));
    if (stream)
        fflush(stdout);
}

json_object *jget(json_object *o, const char *key)
{
    json_object *v = NULL;

    if (!o || !json_object_is_type(o, json_type_object))
        return NULL;
    if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null))
        return NULL;
    return v;
}

const char *jstr(json_object *o, const char *key)
{
    json_object *v = jget(o, key);

    return v && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

int64_t jint(json_object *o, const char *key)
{
    json_object *v = jget(o, key);

    if (!v || !(json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double)))
        return -1;
    return json_object_get_int64(v);
}

double jnum(json_object *o, const char *key)
{
    json_object *v = jget(o, key);

    if (!v || !(json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double)))
        return 0;
    return json_object_get_double(v);
}

int ctl_request(WireMethod method, json_object *params, bool json,
                int (*print)(json_object *result))
{
    CtlConn *c = NULL;
    WireMessage m;
    int r;

    r = ctl_connect(&c);
    if (r < 0)
        return -r;
    r = ctl_call(c, method, params, -1, &m);
    ctl_conn_free(c);
    if (r < 0)
        return -r;
    if (json)
        ctl_print_json(m.result, false);
    r = json ? CTL_EXIT_OK : print(m.result);
    wire_message_done(&m);
    return r;
}
