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
#include <grp.h>
#include <sys/wait.h>

#include "e2e-server-harness.h"

static EmuBoardInfo info_of(EmuBoard *b)
{
    return e2e_info(b);
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
