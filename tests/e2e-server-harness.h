/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The raw-protocol harness of the control-socket tests (e2e-server.c,
 * e2e-hostile.c): a Ctx is one test bed (the umockdev emulator, a temp
 * directory, espdfud's configuration and log), daemon_start()/daemon_stop()
 * run the real espdfud in it, and a Conn is one client connection spoken to in
 * JSON lines (call(), ok_call(), conn_line()). Static functions, like
 * e2e-check.h: both programs use every one (-Wunused-function holds here too).
 *
 * The socket lives in a 0755 directory with group= set to a group the
 * unprivileged peers (nobody, or any uid without it) are not in.
 */

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <grp.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "e2e-check.h"
#include "emu.h"
#include "wire.h"

#define FIXTURE     FIXTURES_DIR "/mkdfu/1/dfu.bin" /* esp32s2 */
#define SUFFIX      16u
#define GROUP       "plugdev" /* exists on Debian; nobody is not a member */
#define NOBODY_UID  65534u
#define NOGROUP_GID 65534u

typedef struct Ctx {
    Emu *e;
    char *dir;
    char *conf;
    char *log;
    char *sock;
    EmuChild *daemon;
    pid_t pid;
    uint8_t *file;
    size_t len;
    gid_t group_gid;
} Ctx;

/* One connection: a socket and the bytes read but not yet taken as lines. */
typedef struct Conn {
    int fd;
    GString *in;
    bool eof;
    uint64_t next_id;
} Conn;

/* ---- the test bed ---- */

static void die(const char *what)
{
    fprintf(stderr, "FAIL: %s\n", what);
    exit(1);
}

static void ctx_init(Ctx *c)
{
    struct group *g = getgrnam(GROUP);
    gsize n = 0;

    *c = (Ctx){};
    if (!g)
        die("group " GROUP " does not exist");
    c->group_gid = g->gr_gid;
    if (emu_new(&c->e) < 0)
        die("cannot create the umockdev testbed");
    c->dir = g_dir_make_tmp("e2e-server-XXXXXX", NULL);
    if (!c->dir || chmod(c->dir, 0755) < 0)
        die("cannot make the test directory");
    c->conf = g_build_filename(c->dir, "espdfud.conf", NULL);
    c->log = g_build_filename(c->dir, "espdfud.log", NULL);
    c->sock = g_build_filename(c->dir, "run", "espdfud.sock", NULL);
    if (!g_file_get_contents(FIXTURE, (char **)&c->file, &n, NULL) || n <= SUFFIX)
        die("cannot read " FIXTURE);
    c->len = n;
}

static void ctx_done(Ctx *c)
{
    e2e_teardown(c->e, c->daemon, c->pid, c->log, c->dir, 8000);
    g_free(c->dir);
    g_free(c->conf);
    g_free(c->log);
    g_free(c->sock);
    g_free(c->file);
}

static EmuBoard *plug(Ctx *c, const char *path, const char *spec)
{
    return e2e_plug(c->e, path, spec);
}

static void write_config(Ctx *c, const char *extra)
{
    g_autofree char *text = g_strdup_printf(
            "[daemon]\nsocket = %s\nstate-dir = %s/state\ngroup = " GROUP "\nworkers = 8\n%s\n",
            c->sock, c->dir, extra ? extra : "");

    if (!g_file_set_contents(c->conf, text, -1, NULL))
        die("cannot write the configuration");
}

static bool wait_until(Ctx *c, bool (*done)(void *data), void *data, int timeout_ms)
{
    return emu_iterate_until(c->e, done, data, timeout_ms);
}

static void pause_ms(Ctx *c, int ms)
{
    wait_until(c, NULL, NULL, ms);
}

static bool socket_exists(void *data)
{
    Ctx *c = data;
    struct stat st;

    return stat(c->sock, &st) == 0 && S_ISSOCK(st.st_mode);
}

static bool daemon_start(Ctx *c)
{
    char *argv[] = {"/bin/sh",
                    "-c",
                    "exec setpriv --pdeathsig KILL -- \"$0\" \"$@\" 2>>\"$ESPDFU_TEST_LOG\"",
                    ESPDFUD,
                    "--config",
                    c->conf,
                    "--log-level",
                    "debug",
                    NULL};
    g_autofree char *logenv = g_strdup_printf("ESPDFU_TEST_LOG=%s", c->log);
    char *env[] = {logenv, NULL};

    if (emu_spawn(c->e, argv, env, false, &c->daemon) < 0)
        return false;
    c->pid = emu_child_pid(c->daemon);
    if (emu_wait_listener(c->e, c->pid, 20000) < 0)
        return false;
    return wait_until(c, socket_exists, c, 5000);
}

static int daemon_stop(Ctx *c)
{
    int status = -1, r;

    kill(c->pid, SIGTERM);
    r = emu_wait_child(c->e, c->daemon, 10000, &status, NULL);
    c->daemon = NULL;
    return r < 0 ? -1 : status;
}

static unsigned log_count(Ctx *c, const char *needle)
{
    g_autofree char *log = NULL;
    unsigned n = 0;

    if (!g_file_get_contents(c->log, &log, NULL, NULL))
        return 0;
    for (const char *p = log; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

static bool received_image(Ctx *c, EmuBoard *b)
{
    return e2e_received(b, c->file, c->len);
}

static unsigned daemon_fds(Ctx *c)
{
    g_autofree char *dir = g_strdup_printf("/proc/%d/fd", (int)c->pid);
    GDir *d = g_dir_open(dir, 0, NULL);
    unsigned n = 0;

    while (d && g_dir_read_name(d))
        n++;
    if (d)
        g_dir_close(d);
    return n;
}

/* ---- raw protocol ---- */

static int connect_to(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

static bool conn_open(Ctx *c, Conn *k)
{
    *k = (Conn){.fd = connect_to(c->sock), .in = g_string_new(NULL), .next_id = 1};
    return k->fd >= 0;
}

static void conn_close(Conn *k)
{
    if (k->fd >= 0)
        close(k->fd);
    if (k->in)
        g_string_free(k->in, TRUE);
    *k = (Conn){.fd = -1};
}

/* Bytes (and optionally one fd) in one sendmsg. */
static bool conn_send(Conn *k, const char *data, size_t n, int fd)
{
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } control = {};
    struct iovec iov = {.iov_base = (void *)data, .iov_len = n};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};

    if (fd >= 0) {
        struct cmsghdr *cm;

        mh.msg_control = &control;
        mh.msg_controllen = sizeof(control.buf);
        cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &fd, sizeof(int));
    }
    return sendmsg(k->fd, &mh, MSG_NOSIGNAL) == (ssize_t)n;
}

/* Read what is there without blocking; true when a line or EOF is available. */
static bool conn_poll(void *data)
{
    Conn *k = data;
    char buf[65536];
    ssize_t n;

    while (!memchr(k->in->str, '\n', k->in->len) && !k->eof) {
        n = recv(k->fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return false;
        if (n <= 0) {
            k->eof = true;
            break;
        }
        g_string_append_len(k->in, buf, n);
    }
    return true;
}

/* The next line (g_free it) or NULL on EOF or timeout; iterates the emulator meanwhile. */
static char *conn_line(Ctx *c, Conn *k, int timeout_ms)
{
    char *nl, *line;

    if (!wait_until(c, conn_poll, k, timeout_ms))
        return NULL;
    nl = memchr(k->in->str, '\n', k->in->len);
    if (!nl)
        return NULL;
    line = g_strndup(k->in->str, (gsize)(nl - k->in->str));
    g_string_erase(k->in, 0, nl - k->in->str + 1);
    return line;
}

/* The next reply or error (events skipped), parsed; false on EOF/timeout. */
static bool conn_reply(Ctx *c, Conn *k, WireMessage *m)
{
    for (;;) {
        g_autofree char *line = conn_line(c, k, 20000);

        if (!line || wire_message_parse(line, strlen(line), m) < 0)
            return false;
        if (m->type != WIRE_MESSAGE_EVENT)
            return true;
        wire_message_done(m);
    }
}

/* Send `method` with params JSON text (or NULL) and fd; get its reply. */
static bool call(Ctx *c, Conn *k, const char *method, const char *params, int fd, WireMessage *m)
{
    g_autofree char *line = g_strdup_printf(
            "{\"id\":%" G_GUINT64_FORMAT ",\"method\":\"%s\"%s%s%s}\n", k->next_id++, method,
            params ? ",\"params\":" : "", params ? params : "", "");

    return conn_send(k, line, strlen(line), fd) && conn_reply(c, k, m);
}

static const char *error_code(const WireMessage *m)
{
    return m->type == WIRE_MESSAGE_ERROR ? m->error_code : "(none)";
}

static json_object *get(json_object *o, const char *path)
{
    g_auto(GStrv) keys = g_strsplit(path, ".", -1);

    for (size_t i = 0; keys[i] && o; i++)
        if (!json_object_object_get_ex(o, keys[i], &o))
            return NULL;
    return o;
}

static int64_t get_int(json_object *o, const char *path)
{
    return json_object_get_int64(get(o, path));
}

static const char *get_str(json_object *o, const char *path)
{
    json_object *v = get(o, path);

    return v ? json_object_get_string(v) : "";
}

/* A successful call: result, or NULL (reported). */
static bool ok_call(Ctx *c, Conn *k, const char *method, const char *params, int fd, WireMessage *m)
{
    if (!call(c, k, method, params, fd, m)) {
        check(false, "%s: no reply", method);
        return false;
    }
    if (m->type != WIRE_MESSAGE_REPLY) {
        check(false, "%s: %s: %s", method, error_code(m), m->error_message);
        wire_message_done(m);
        return false;
    }
    return true;
}

static int open_fixture(void)
{
    return open(FIXTURE, O_RDONLY | O_CLOEXEC);
}

/* Poll `job` until it is final; its state, or "" on timeout. */
static char *wait_job_final(Ctx *c, Conn *k, int64_t id, int timeout_ms)
{
    g_autofree char *params = g_strdup_printf("{\"id\":%" G_GINT64_FORMAT "}", id);

    for (int waited = 0; waited < timeout_ms; waited += 100) {
        WireMessage m;
        char *state;

        if (!ok_call(c, k, "job", params, -1, &m))
            return g_strdup("");
        state = g_strdup(get_str(m.result, "job.state"));
        wire_message_done(&m);
        if (!strcmp(state, "succeeded") || !strcmp(state, "failed") || !strcmp(state, "cancelled"))
            return state;
        g_free(state);
        pause_ms(c, 100);
    }
    return g_strdup("");
}
