/* SPDX-License-Identifier: MIT */
/*
 * The control socket end to end: the real espdfud under emulated boards
 * (tests/emu/), spoken to in raw protocol lines from this program. Each case is
 * one CTest test: e2e-server CASE.
 *
 * The socket lives in a 0755 directory with group= set to a group the
 * unprivileged peers (nobody) are not in, so the permission cases can switch
 * identity in a forked child and connect.
 */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <grp.h>
#include <json-c/json.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
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
    if (c->daemon) {
        kill(c->pid, SIGKILL);
        emu_wait_child(c->e, c->daemon, 5000, &(int){0}, NULL);
    }
    emu_free(c->e);
    if (failures) {
        g_autofree char *log = NULL;

        if (g_file_get_contents(c->log, &log, NULL, NULL))
            fprintf(stderr, "---- espdfud's log (tail):\n%s---- end of log\n",
                    strlen(log) > 8000 ? log + strlen(log) - 8000 : log);
    }
    if (!getenv("E2E_KEEP"))
        remove_tree(c->dir);
    g_free(c->dir);
    g_free(c->conf);
    g_free(c->log);
    g_free(c->sock);
    g_free(c->file);
}

static EmuBoard *plug(Ctx *c, const char *path, const char *spec)
{
    EmuBoardConfig cfg;
    EmuBoard *b = NULL;
    g_autofree char *err = NULL;

    if (emu_board_config_parse(spec, &cfg, &err) < 0 || emu_add_board(c->e, path, &cfg, &b) < 0)
        die("cannot plug a board");
    return b;
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
    g_autofree uint8_t *got = NULL;
    size_t n = 0;

    emu_board_received(b, &got, &n);
    return n == c->len - SUFFIX && memcmp(got, c->file, n) == 0;
}

static EmuBoardInfo info_of(EmuBoard *b)
{
    EmuBoardInfo i;

    emu_board_info(b, &i);
    return i;
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

/* The fixture with one byte flipped inside the archive: the CRC no longer matches. */
static int open_broken(Ctx *c)
{
    g_autofree char *p = g_build_filename(c->dir, "broken.bin", NULL);
    g_autofree uint8_t *copy = g_memdup2(c->file, c->len);
    int fd;

    copy[200] ^= 0x01;
    if (!g_file_set_contents(p, (char *)copy, (gssize)c->len, NULL))
        return -1;
    fd = open(p, O_RDONLY | O_CLOEXEC);
    return fd;
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

/* ---- cases ---- */

/* Every reading method, pause/resume/reload, and the not-found answers. */
static void case_methods(void)
{
    Conn k = {.fd = -1};
    WireMessage m;
    struct stat st;
    Ctx c;

    ctx_init(&c);
    write_config(&c, NULL);
    plug(&c, "1-1", "esp32s3:dfu");
    require(daemon_start(&c), "espdfud did not start");
    require(stat(c.sock, &st) == 0, "no socket");
    check((st.st_mode & 0777) == 0660, "socket mode %o", st.st_mode & 0777);
    check(st.st_gid == c.group_gid, "socket group %u", (unsigned)st.st_gid);
    require(conn_open(&c, &k), "cannot connect");

    require(ok_call(&c, &k, "hello", "{\"version\":2,\"client\":\"e2e\"}", -1, &m), "hello");
    check(get_int(m.result, "protocol") == 2, "protocol");
    check(json_object_array_length(get(m.result, "methods")) == 12, "methods");
    wire_message_done(&m);
    require(ok_call(&c, &k, "status", NULL, -1, &m), "status");
    check(get_int(m.result, "devices") == 1, "devices %" G_GINT64_FORMAT,
          get_int(m.result, "devices"));
    check(get_int(m.result, "workers") == 8, "workers");
    check(!json_object_get_boolean(get(m.result, "paused")), "paused");
    wire_message_done(&m);
    require(ok_call(&c, &k, "devices", NULL, -1, &m), "devices");
    {
        json_object *d = json_object_array_get_idx(get(m.result, "devices"), 0);

        check(!strcmp(get_str(d, "path"), "1-1"), "path %s", get_str(d, "path"));
        check(!strcmp(get_str(d, "chip"), "esp32s3"), "chip");
        check(!strcmp(get_str(d, "mode"), "dfu"), "mode");
        check(!strcmp(get_str(d, "state"), "idle"), "state");
        check(get_int(d, "vid") == 0x303a && get_int(d, "pid") == 9, "vid/pid");
        check(get(d, "arrived") && json_object_get_double(get(d, "arrived")) > 1e9, "arrived");
    }
    wire_message_done(&m);
    require(ok_call(&c, &k, "jobs", "{\"state\":\"active\",\"limit\":3}", -1, &m), "jobs");
    check(json_object_array_length(get(m.result, "jobs")) == 0, "no jobs yet");
    wire_message_done(&m);
    require(call(&c, &k, "job", "{\"id\":42}", -1, &m), "job");
    check(!strcmp(error_code(&m), "not-found"), "job 42: %s", error_code(&m));
    wire_message_done(&m);
    require(call(&c, &k, "cancel", "{\"id\":42}", -1, &m), "cancel");
    check(!strcmp(error_code(&m), "not-found"), "cancel 42: %s", error_code(&m));
    wire_message_done(&m);
    require(ok_call(&c, &k, "pause", NULL, -1, &m), "pause");
    check(json_object_get_boolean(get(m.result, "paused")), "paused");
    wire_message_done(&m);
    require(ok_call(&c, &k, "status", NULL, -1, &m), "status");
    check(json_object_get_boolean(get(m.result, "paused")), "status says paused");
    wire_message_done(&m);
    require(ok_call(&c, &k, "resume", NULL, -1, &m), "resume");
    check(!json_object_get_boolean(get(m.result, "paused")), "resumed");
    wire_message_done(&m);
    require(ok_call(&c, &k, "reload", NULL, -1, &m), "reload");
    check(json_object_get_boolean(get(m.result, "reloaded")), "reloaded");
    wire_message_done(&m);
    write_config(&c, "workers = lots");
    require(call(&c, &k, "reload", NULL, -1, &m), "reload");
    check(!strcmp(error_code(&m), "config-invalid"), "bad reload: %s", error_code(&m));
    check(m.error_message && strstr(m.error_message, "workers"), "message %s", m.error_message);
    wire_message_done(&m);
    require(ok_call(&c, &k, "subscribe", NULL, -1, &m), "subscribe");
    check(json_object_get_boolean(get(m.result, "subscribed")), "subscribed");
    wire_message_done(&m);
    require(call(&c, &k, "frobnicate", NULL, -1, &m), "unknown");
    check(!strcmp(error_code(&m), "unknown-method"), "%s", error_code(&m));
    wire_message_done(&m);
    conn_close(&k);
    check(daemon_stop(&c) == 0, "espdfud did not exit 0");
out:
    conn_close(&k);
    ctx_done(&c);
}

/* flash with an fd: byte-exact, with events; no fd, a broken image, a wrong chip: refused. */
static void case_flash(void)
{
    Conn k = {.fd = -1}, sub = {.fd = -1};
    g_autofree char *params = NULL;
    EmuBoard *s2, *s3;
    unsigned transfers;
    WireMessage m;
    int64_t id;
    int fd = -1;
    Ctx c;

    ctx_init(&c);
    write_config(&c, NULL);
    s2 = plug(&c, "1-1", "esp32s2:dfu");
    s3 = plug(&c, "1-2", "esp32s3:dfu");
    require(daemon_start(&c), "espdfud did not start");
    require(conn_open(&c, &k) && conn_open(&c, &sub), "cannot connect");
    require(ok_call(&c, &sub, "subscribe", NULL, -1, &m), "subscribe");
    wire_message_done(&m);

    require(call(&c, &k, "flash", "{\"paths\":[\"1-1\"]}", -1, &m), "flash without fd");
    check(!strcmp(error_code(&m), "no-image"), "%s", error_code(&m));
    wire_message_done(&m);

    fd = open_broken(&c);
    require(fd >= 0, "broken image");
    require(call(&c, &k, "flash", "{\"paths\":[\"1-1\"]}", fd, &m), "flash broken");
    check(!strcmp(error_code(&m), "image-invalid"), "%s", error_code(&m));
    check(m.error_detail && !strcmp(m.error_detail, "crc-mismatch"), "detail %s",
          m.error_detail ? m.error_detail : "(none)");
    wire_message_done(&m);
    close(fd);

    transfers = info_of(s3).control_transfers;
    fd = open_fixture();
    require(call(&c, &k, "flash", "{\"paths\":[\"1-2\"]}", fd, &m), "flash wrong chip");
    check(!strcmp(error_code(&m), "wrong-chip"), "%s", error_code(&m));
    wire_message_done(&m);
    close(fd);
    fd = open_fixture();
    require(call(&c, &k, "flash", "{\"all\":true,\"chip\":\"esp32s3\"}", fd, &m), "chip=");
    check(!strcmp(error_code(&m), "wrong-chip"), "chip=esp32s3: %s", error_code(&m));
    wire_message_done(&m);
    close(fd);
    require(ok_call(&c, &k, "jobs", NULL, -1, &m), "jobs");
    check(json_object_array_length(get(m.result, "jobs")) == 0, "a refused flash queued a job");
    wire_message_done(&m);

    fd = open_fixture();
    require(ok_call(&c, &k, "flash", "{\"all\":true,\"name\":\"fw.bin\"}", fd, &m), "flash all");
    close(fd);
    fd = -1;
    check(json_object_array_length(get(m.result, "jobs")) == 1, "all: one esp32s2 board");
    id = json_object_get_int64(json_object_array_get_idx(get(m.result, "jobs"), 0));
    check(!strcmp(get_str(m.result, "image.chip"), "esp32s2"), "image.chip");
    check(get_int(m.result, "image.size") == (int64_t)c.len, "image.size");
    wire_message_done(&m);
    {
        g_autofree char *state = wait_job_final(&c, &k, id, 30000);

        check(!strcmp(state, "succeeded"), "job %" G_GINT64_FORMAT ": %s", id, state);
    }
    check(received_image(&c, s2), "1-1 did not receive the image byte-exact");
    check(info_of(s3).control_transfers == transfers, "the esp32s3 board was touched");
    /* The subscriber saw the job go by, ending in job.finished. */
    {
        bool queued = false, finished = false;
        char *line;

        while (!finished && (line = conn_line(&c, &sub, 5000))) {
            queued |= strstr(line, "\"event\":\"job.queued\"") != NULL;
            finished |= strstr(line, "\"event\":\"job.finished\"") != NULL &&
                        strstr(line, "\"state\":\"succeeded\"") != NULL;
            g_free(line);
        }
        check(queued && finished, "events: queued %d finished %d", queued, finished);
    }
    params = g_strdup_printf("{\"id\":%" G_GINT64_FORMAT "}", id);
    require(ok_call(&c, &k, "job", params, -1, &m), "job");
    check(!strcmp(get_str(m.result, "job.image.name"), "fw.bin"), "name");
    check(get_int(m.result, "job.progress.percent") == 100, "percent");
    check(json_object_array_length(get(m.result, "job.history")) >= 3, "history");
    wire_message_done(&m);
    require(ok_call(&c, &k, "jobs", "{\"state\":\"succeeded\",\"path\":\"1-1\"}", -1, &m), "jobs");
    check(json_object_array_length(get(m.result, "jobs")) == 1, "jobs filter");
    wire_message_done(&m);
out:
    if (fd >= 0)
        close(fd);
    conn_close(&k);
    conn_close(&sub);
    ctx_done(&c);
}

/* A running job cancelled over the socket ends cancelled. */
static void case_cancel(void)
{
    g_autofree char *params = NULL;
    Conn k = {.fd = -1};
    WireMessage m;
    int64_t id;
    int fd;
    Ctx c;

    ctx_init(&c);
    write_config(&c, NULL);
    /* 160 blocks of 64 bytes, 20 ms each: about 3 s of downloading. */
    plug(&c, "1-1", "esp32s2:dfu,transfer=64,poll=20");
    require(daemon_start(&c), "espdfud did not start");
    require(conn_open(&c, &k), "cannot connect");
    fd = open_fixture();
    require(ok_call(&c, &k, "flash", "{\"paths\":[\"1-1\"]}", fd, &m), "flash");
    close(fd);
    id = json_object_get_int64(json_object_array_get_idx(get(m.result, "jobs"), 0));
    wire_message_done(&m);
    for (int i = 0; i < 100; i++) {
        g_autofree char *p = g_strdup_printf("{\"id\":%" G_GINT64_FORMAT "}", id);
        bool downloading;

        require(ok_call(&c, &k, "job", p, -1, &m), "job");
        downloading = !strcmp(get_str(m.result, "job.state"), "downloading") &&
                      get_int(m.result, "job.progress.bytes") > 0;
        wire_message_done(&m);
        if (downloading)
            break;
        pause_ms(&c, 50);
    }
    params = g_strdup_printf("{\"id\":%" G_GINT64_FORMAT "}", id);
    require(ok_call(&c, &k, "cancel", params, -1, &m), "cancel");
    wire_message_done(&m);
    {
        g_autofree char *state = wait_job_final(&c, &k, id, 20000);

        check(!strcmp(state, "cancelled"), "job %" G_GINT64_FORMAT ": %s", id, state);
    }
    require(ok_call(&c, &k, "status", NULL, -1, &m), "status");
    check(get_int(m.result, "cancelled") == 1, "cancelled count");
    wire_message_done(&m);
out:
    conn_close(&k);
    ctx_done(&c);
}

/* The child's side of a permission case: 0 when every expectation held. */
static int as_peer(Ctx *c, bool in_group)
{
    gid_t groups[1] = {c->group_gid};
    Conn k;
    WireMessage m;
    int fd, bad = 0;

    if (setgroups(in_group ? 1 : 0, groups) < 0 || setgid(NOGROUP_GID) < 0 ||
        setuid(NOBODY_UID) < 0)
        return 10;
    if (!conn_open(c, &k))
        return 11;
    /* Reading methods are open to anyone who can connect. */
    for (const char *const *meth = (const char *const[]){"status", "devices", "jobs", NULL}; *meth;
         meth++) {
        if (!call(c, &k, *meth, NULL, -1, &m) || m.type != WIRE_MESSAGE_REPLY)
            bad |= 1;
        wire_message_done(&m);
    }
    fd = open(FIXTURE, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || !call(c, &k, "flash", "{\"paths\":[\"1-1\"]}", fd, &m))
        return 12;
    if (in_group && m.type != WIRE_MESSAGE_REPLY)
        bad |= 2;
    if (!in_group && (m.type != WIRE_MESSAGE_ERROR || strcmp(m.error_code, "permission-denied") ||
                      !strstr(m.error_message, "\"" GROUP "\"")))
        bad |= 4;
    wire_message_done(&m);
    if (!in_group && (!call(c, &k, "pause", NULL, -1, &m) || m.type != WIRE_MESSAGE_ERROR))
        bad |= 8;
    return bad;
}

static int run_peer(Ctx *c, bool in_group)
{
    pid_t pid = fork();
    int status = -1;

    if (pid == 0)
        _exit(as_peer(c, in_group));
    for (int i = 0; i < 300 && waitpid(pid, &status, WNOHANG) == 0; i++)
        pause_ms(c, 100);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void case_permission(void)
{
    EmuBoard *b;
    int r;
    Ctx c;

    ctx_init(&c);
    write_config(&c, NULL);
    b = plug(&c, "1-1", "esp32s2:dfu");
    require(daemon_start(&c), "espdfud did not start");
    /* Group members connect through the 0660 socket; nobody else could. */
    r = run_peer(&c, true);
    check(r == 0, "peer in group " GROUP ": %d", r);
    require(chmod(c.sock, 0666) == 0, "chmod");
    r = run_peer(&c, false);
    check(r == 0, "peer outside " GROUP ": %d", r);
    check(log_count(&c, "flash refused: not root, not in group " GROUP) == 1, "log line");
    for (int i = 0; i < 200 && !received_image(&c, b); i++)
        pause_ms(&c, 100);
    check(received_image(&c, b), "the group member's flash did not land");
out:
    ctx_done(&c);
}

/* Connect, send a status, read the answer: "ok", "refused" (too-many-connections), or "?". */
static const char *probe(Ctx *c, Conn *k)
{
    WireMessage m;
    const char *what = "?";

    if (!call(c, k, "status", NULL, -1, &m))
        return what;
    if (m.type == WIRE_MESSAGE_REPLY)
        what = "ok";
    else if (m.error == WIRE_ERROR_TOO_MANY_CONNECTIONS)
        what = "refused";
    wire_message_done(&m);
    return what;
}

/* 200 clients at once: 16 per uid get in, the rest are refused; a flash goes on. */
static void case_many(void)
{
    enum { N = 200 };
    Conn k = {.fd = -1}, many[N];
    unsigned ok = 0, refused = 0, other = 0;
    WireMessage m;
    EmuBoard *b;
    int64_t id;
    int fd;
    Ctx c;

    for (size_t i = 0; i < N; i++)
        many[i] = (Conn){.fd = -1};
    ctx_init(&c);
    write_config(&c, NULL);
    b = plug(&c, "1-1", "esp32s2:dfu,transfer=256,poll=10");
    require(daemon_start(&c), "espdfud did not start");
    require(conn_open(&c, &k), "cannot connect");
    fd = open_fixture();
    require(ok_call(&c, &k, "flash", "{\"paths\":[\"1-1\"]}", fd, &m), "flash");
    close(fd);
    id = json_object_get_int64(json_object_array_get_idx(get(m.result, "jobs"), 0));
    wire_message_done(&m);
    for (size_t i = 0; i < N; i++)
        check(conn_open(&c, &many[i]), "connect %zu", i);
    /* A too-many-connections line arrives unasked; a request from an accepted one is answered. */
    for (size_t i = 0; i < N; i++) {
        g_autofree char *line = conn_line(&c, &many[i], 200);

        if (line && strstr(line, "\"too-many-connections\"")) {
            refused++;
            continue;
        }
        if (!strcmp(probe(&c, &many[i]), "ok"))
            ok++;
        else
            other++;
    }
    /* The test's own control connection is the 16th of uid 0. */
    check(ok == 15 && refused == N - 15 && other == 0, "ok %u refused %u other %u", ok, refused,
          other);
    for (size_t i = 0; i < N; i++)
        conn_close(&many[i]);
    require(ok_call(&c, &k, "status", NULL, -1, &m), "status after the storm");
    wire_message_done(&m);
    {
        g_autofree char *state = wait_job_final(&c, &k, id, 30000);

        check(!strcmp(state, "succeeded"), "job: %s", state);
    }
    check(received_image(&c, b), "not byte-exact");
    /* The slots are free again. */
    {
        Conn again;

        require(conn_open(&c, &again), "connect again");
        check(!strcmp(probe(&c, &again), "ok"), "a new client after the storm");
        conn_close(&again);
    }
out:
    for (size_t i = 0; i < N; i++)
        conn_close(&many[i]);
    conn_close(&k);
    ctx_done(&c);
}

/* Flash onto n empty ports "3-1".."3-n": events and jobs that wait. */
static bool flash_empty_ports(Ctx *c, Conn *k, unsigned first, unsigned n, int64_t *ids)
{
    GString *p = g_string_new("{\"paths\":[");
    WireMessage m;
    bool ok;
    int fd = open_fixture();

    for (unsigned i = 0; i < n; i++)
        g_string_append_printf(p, "%s\"3-%u\"", i ? "," : "", first + i);
    g_string_append(p, "]}");
    ok = ok_call(c, k, "flash", p->str, fd, &m);
    close(fd);
    g_string_free(p, TRUE);
    if (!ok)
        return false;
    for (unsigned i = 0; i < n; i++)
        ids[i] = json_object_get_int64(json_object_array_get_idx(get(m.result, "jobs"), i));
    wire_message_done(&m);
    return true;
}

/* A subscriber that never reads is dropped; a concurrent flash is not slowed. */
static void case_slow_subscriber(void)
{
    enum { PORTS = 768 };
    Conn k = {.fd = -1}, sub = {.fd = -1};
    g_autofree int64_t *ids = g_new0(int64_t, PORTS);
    WireMessage m;
    EmuBoard *b;
    int64_t id;
    char *line, *last = NULL;
    int fd;
    Ctx c;

    ctx_init(&c);
    write_config(&c, NULL);
    /* About 3 s of downloading: the flood below happens while it runs. */
    b = plug(&c, "1-1", "esp32s2:dfu,transfer=64,poll=20");
    require(daemon_start(&c), "espdfud did not start");
    require(conn_open(&c, &k) && conn_open(&c, &sub), "cannot connect");
    require(ok_call(&c, &sub, "subscribe", NULL, -1, &m), "subscribe");
    wire_message_done(&m);
    fd = open_fixture();
    require(ok_call(&c, &k, "flash", "{\"paths\":[\"1-1\"]}", fd, &m), "flash");
    close(fd);
    id = json_object_get_int64(json_object_array_get_idx(get(m.result, "jobs"), 0));
    wire_message_done(&m);
    /* Thousands of events (~1 KiB each) while the subscriber reads nothing. */
    for (unsigned i = 0; i < PORTS; i += 256)
        require(flash_empty_ports(&c, &k, i + 1, 256, ids + i), "flash empty ports");
    for (unsigned i = 0; i < PORTS && !log_count(&c, "more than 1 MiB of output queued"); i++) {
        g_autofree char *p = g_strdup_printf("{\"id\":%" G_GINT64_FORMAT "}", ids[i]);

        require(ok_call(&c, &k, "cancel", p, -1, &m), "cancel");
        wire_message_done(&m);
    }
    check(log_count(&c, "more than 1 MiB of output queued") == 1, "no drop logged");
    /* Now read it all: a whole number of lines, the last one `dropped`, then EOF. */
    while ((line = conn_line(&c, &sub, 10000))) {
        g_free(last);
        last = line;
    }
    check(sub.eof, "the subscriber was not disconnected");
    check(sub.in->len == 0, "a partial line before EOF (%zu bytes)", sub.in->len);
    check(last && strstr(last, "\"event\":\"dropped\""), "last line: %.200s",
          last ? last : "(none)");
    {
        g_autofree char *state = wait_job_final(&c, &k, id, 30000);

        check(!strcmp(state, "succeeded"), "job: %s", state);
    }
    check(received_image(&c, b), "not byte-exact");
    require(ok_call(&c, &k, "status", NULL, -1, &m), "status");
    wire_message_done(&m);
out:
    g_free(last);
    conn_close(&k);
    conn_close(&sub);
    ctx_done(&c);
}

/* Garbage of every kind; the daemon keeps answering and leaks no fd. */
static void case_garbage(void)
{
    Conn k = {.fd = -1}, t = {.fd = -1};
    g_autofree char *big = g_malloc(20001);
    char *line = NULL;
    unsigned fds;
    WireMessage m;
    int fd;
    Ctx c;

    ctx_init(&c);
    write_config(&c, NULL);
    require(daemon_start(&c), "espdfud did not start");
    require(conn_open(&c, &k), "cannot connect");
    require(ok_call(&c, &k, "status", NULL, -1, &m), "status");
    wire_message_done(&m);

    /* Not JSON, not an object, invalid UTF-8: bad-request, id null, connection open. */
    static const char *const junk[] = {"garbage\n", "[1,2,3]\n", "{\"id\":\"\xc3\x28\"}\n",
                                       "{\"id\":1,\"method\":\"status\",\"x\":1}\n", "\n"};
    for (size_t i = 0; i < G_N_ELEMENTS(junk); i++)
        require(conn_send(&k, junk[i], strlen(junk[i]), -1), "send");
    for (size_t i = 0; i < G_N_ELEMENTS(junk) - 1; i++) {
        require(conn_reply(&c, &k, &m), "reply to junk %zu", i);
        check(!strcmp(error_code(&m), "bad-request"), "junk %zu: %s", i, error_code(&m));
        check(i == 3 ? m.id.type == WIRE_ID_INT : m.id.type == WIRE_ID_NULL, "junk %zu id", i);
        wire_message_done(&m);
    }
    require(ok_call(&c, &k, "status", NULL, -1, &m), "status after junk");
    wire_message_done(&m);

    /* A 20000-byte line: too-large, then the connection closes. */
    require(conn_open(&c, &t), "connect");
    memset(big, 'x', 20000);
    big[19999] = '\n';
    require(conn_send(&t, big, 20000, -1), "send the big line");
    line = conn_line(&c, &t, 5000);
    check(line && strstr(line, "\"too-large\"") && strstr(line, "\"id\":null"), "got %s",
          line ? line : "(nothing)");
    g_free(line);
    line = conn_line(&c, &t, 5000);
    check(!line && t.eof, "still open after too-large");
    g_free(line);
    conn_close(&t);

    /* An fd with a non-flash request is closed, the request answered. */
    /* Counted only now: sd-event made its timerfd for the close above. */
    pause_ms(&c, 200);
    fds = daemon_fds(&c);
    fd = open_fixture();
    require(ok_call(&c, &k, "status", NULL, fd, &m), "status with an fd");
    close(fd);
    wire_message_done(&m);
    check(daemon_fds(&c) == fds, "daemon fds %u -> %u", fds, daemon_fds(&c));

    /* Half a request, then close. */
    require(conn_open(&c, &t), "connect");
    require(conn_send(&t, "{\"id\":1,\"meth", 13, -1), "send half");
    conn_close(&t);
    /* Half a request with an fd, then close: the fd must not stay behind. */
    require(conn_open(&c, &t), "connect");
    fd = open_fixture();
    require(conn_send(&t, "{\"id\":1,\"method\":\"flash\"", 25, fd), "send half with fd");
    close(fd);
    conn_close(&t);
    pause_ms(&c, 300);
    require(ok_call(&c, &k, "status", NULL, -1, &m), "status at the end");
    wire_message_done(&m);
    check(daemon_fds(&c) == fds, "daemon fds %u -> %u", fds, daemon_fds(&c));
    check(daemon_stop(&c) == 0, "espdfud did not exit 0");
out:
    conn_close(&k);
    conn_close(&t);
    ctx_done(&c);
}

static const E2eCase cases[] = {
        {"methods", case_methods}, {"flash", case_flash},
        {"cancel", case_cancel},   {"permission", case_permission},
        {"many", case_many},       {"slow-subscriber", case_slow_subscriber},
        {"garbage", case_garbage},
};

int main(int argc, char **argv)
{
    return e2e_main(argc, argv, cases, G_N_ELEMENTS(cases));
}
