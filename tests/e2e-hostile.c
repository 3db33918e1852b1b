/* SPDX-License-Identifier: MIT */
/*
 * Hostile clients against the real espdfud: whatever they do (half lines from
 * many uids, lines trickled across writes, a configuration image that is a
 * FIFO, flash images whose read blocks, control characters, thousands of
 * pipelined requests), the daemon's loop never stalls: another client's
 * `status` is answered within 1 s throughout. Each case is one CTest test:
 * e2e-hostile CASE. Cases that need root exit 77 without it.
 *
 * A read that blocks: /proc/kmsg opened without O_NONBLOCK is a regular file
 * whose read waits for the next kernel message (root only: CAP_SYSLOG).
 */
#include <grp.h>
#include <poll.h>
#include <sys/wait.h>

#include "e2e-server-harness.h"

#define BLOCKING_FILE "/proc/kmsg"
#define HALF_LINE     "{\"id\":1,\"meth"
#define PROBE_MAX_MS  1000 /* a status round trip while under attack */

/* The slowest status round trip of this case, and how many were made. */
static int64_t slowest_ms = -1;
static unsigned probes;

static int64_t ms_since(int64_t t0)
{
    return (g_get_monotonic_time() - t0) / 1000;
}

/* One status round trip on k: answered, and within PROBE_MAX_MS. */
static bool responsive(Ctx *c, Conn *k)
{
    int64_t t0 = g_get_monotonic_time(), ms;
    WireMessage m;

    if (!ok_call(c, k, "status", NULL, -1, &m))
        return false;
    wire_message_done(&m);
    ms = ms_since(t0);
    probes++;
    if (ms > slowest_ms)
        slowest_ms = ms;
    return check(ms < PROBE_MAX_MS, "status took %" G_GINT64_FORMAT " ms", ms);
}

/* wait_until(), probing the daemon through `probe` every 200 ms meanwhile. */
static bool wait_probing(Ctx *c, Conn *probe, bool (*done)(void *data), void *data, int timeout_ms)
{
    int64_t t0 = g_get_monotonic_time();

    while (!wait_until(c, done, data, 200)) {
        if (ms_since(t0) >= timeout_ms)
            return false;
        responsive(c, probe);
    }
    return true;
}

static void report_probes(void)
{
    fprintf(stderr, "status probes: %u, slowest %" G_GINT64_FORMAT " ms\n", probes, slowest_ms);
}

/* ctx_init(), then espdfud started with `extra` in [daemon]; ctx_done() it either way. */
static bool bed_start(Ctx *c, const char *extra)
{
    ctx_init(c);
    write_config(c, extra);
    return daemon_start(c);
}

/* Read everything there is without blocking; true at EOF. */
static bool conn_drain(Conn *k)
{
    char buf[65536];
    ssize_t n;

    while (!k->eof) {
        n = recv(k->fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            break;
        if (n <= 0)
            k->eof = true;
        else
            g_string_append_len(k->in, buf, n);
    }
    return k->eof;
}

static unsigned count_lines(const GString *s)
{
    unsigned n = 0;

    for (gsize i = 0; i < s->len; i++)
        n += s->str[i] == '\n';
    return n;
}

static void need_root(const char *why)
{
    if (geteuid() != 0) {
        fprintf(stderr, "SKIP: needs root (%s)\n", why);
        exit(77);
    }
}

/* The blocking file, opened blocking; the case fails when it is not a regular file. */
static int open_blocking(void)
{
    struct stat st;
    int fd = open(BLOCKING_FILE, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        check(false, BLOCKING_FILE ": %s", strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        check(false, BLOCKING_FILE " is not a regular file on this kernel");
        close(fd);
        return -1;
    }
    return fd;
}

/* The reply to a flash of the blocking file: image-invalid, image-io, "did not deliver". */
static bool did_not_deliver(const WireMessage *m)
{
    return m->type == WIRE_MESSAGE_ERROR && !strcmp(m->error_code, "image-invalid") &&
           m->error_detail && !strcmp(m->error_detail, "image-io") && m->error_message &&
           strstr(m->error_message, "did not deliver");
}

/* ---- half-lines: connections from many uids that never finish a line ---- */

enum { UIDS = 4, PER_UID = 16, HALF_N = UIDS * PER_UID };

#define FIRST_UID 61001u

/* The child: PER_UID connections as uid, half a line on each, all passed back over sp. */
static int half_lines_peer(Ctx *c, uid_t uid, int sp)
{
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * PER_UID)];
    } control = {};
    struct iovec iov = {.iov_base = "x", .iov_len = 1};
    struct msghdr mh = {.msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = &control,
                        .msg_controllen = sizeof(control.buf)};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    int fds[PER_UID];

    if (setgroups(0, NULL) < 0 || setresgid(NOGROUP_GID, NOGROUP_GID, NOGROUP_GID) < 0 ||
        setresuid(uid, uid, uid) < 0)
        return 10;
    for (size_t i = 0; i < PER_UID; i++) {
        fds[i] = connect_to(c->sock);
        if (fds[i] < 0)
            return 11;
        /* A refused one may be closed already: its error is not ours to see here. */
        (void)send(fds[i], HALF_LINE, strlen(HALF_LINE), MSG_NOSIGNAL);
    }
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(fds));
    memcpy(CMSG_DATA(cm), fds, sizeof(fds));
    return sendmsg(sp, &mh, MSG_NOSIGNAL) == 1 ? 0 : 12;
}

typedef struct FdsFromChild {
    int sp;
    int fds[PER_UID];
    size_t n;
    bool failed;
} FdsFromChild;

static bool receive_fds(void *data)
{
    FdsFromChild *r = data;
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * PER_UID)];
    } control;
    char byte;
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    struct msghdr mh = {.msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = &control,
                        .msg_controllen = sizeof(control.buf)};
    ssize_t n = recvmsg(r->sp, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return false;
    if (n == 1)
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
            if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
                r->n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                memcpy(r->fds, CMSG_DATA(cm), r->n * sizeof(int));
            }
    r->failed = r->n != PER_UID;
    return true;
}

/* PER_UID half-line connections made as uid, appended to conns; false on failure. */
static bool half_lines_as(Ctx *c, uid_t uid, Conn *conns)
{
    FdsFromChild r = {.sp = -1};
    int sp[2], status = -1;
    pid_t pid;

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0)
        return false;
    pid = fork();
    if (pid == 0)
        _exit(half_lines_peer(c, uid, sp[1]));
    close(sp[1]);
    r.sp = sp[0];
    if (pid < 0 || !wait_until(c, receive_fds, &r, 10000))
        r.failed = true;
    close(sp[0]);
    if (pid > 0)
        waitpid(pid, &status, 0);
    for (size_t i = 0; i < r.n; i++)
        conns[i] = (Conn){.fd = r.fds[i], .in = g_string_new(NULL), .next_id = 1};
    return !r.failed && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

typedef struct HalfLines {
    Conn conns[HALF_N];
    int64_t closed_at[HALF_N]; /* monotonic µs of the EOF, 0 while open */
} HalfLines;

static bool all_closed(void *data)
{
    HalfLines *h = data;
    bool all = true;

    for (size_t i = 0; i < HALF_N; i++) {
        if (!h->closed_at[i] && conn_drain(&h->conns[i]))
            h->closed_at[i] = g_get_monotonic_time();
        all &= h->closed_at[i] != 0;
    }
    return all;
}

/*
 * 64 connections from 4 other uids, each with half a line: 48 are accepted
 * (the last 16 slots are kept for root and the group), the rest refused; root
 * still gets in and is served; the 48 get `timeout` and EOF after 5 s.
 */
static void case_half_lines(void)
{
    HalfLines *h = g_new0(HalfLines, 1);
    Conn idle = {.fd = -1}, op = {.fd = -1};
    unsigned refused = 0, timed_out = 0, other = 0, fds_before;
    int64_t sent_lo = 0, sent_hi = 0, first_ms = G_MAXINT64, last_ms = 0;
    WireMessage m;
    Ctx c;

    need_root("switching to other uids");
    for (size_t i = 0; i < HALF_N; i++)
        h->conns[i] = (Conn){.fd = -1};
    require(bed_start(&c, NULL), "espdfud did not start");
    /* The test's group does not hold the other uids: let them connect. */
    require(chmod(c.sock, 0666) == 0, "chmod");
    /* Root, connected and silent throughout: not closed by the line timeout. */
    require(conn_open(&c, &idle), "cannot connect");
    require(conn_open(&c, &op) && responsive(&c, &op), "status before");
    fds_before = daemon_fds(&c);

    sent_lo = g_get_monotonic_time();
    for (unsigned u = 0; u < UIDS; u++)
        require(half_lines_as(&c, FIRST_UID + u, h->conns + u * PER_UID), "uid %u's connections",
                FIRST_UID + u);
    sent_hi = g_get_monotonic_time();
    fprintf(stderr, "%u connections made in %" G_GINT64_FORMAT " ms\n", HALF_N,
            (sent_hi - sent_lo) / 1000);

    /* Operators get in and are served while the 48 hang. */
    conn_close(&op);
    require(conn_open(&c, &op), "root cannot connect");
    check(responsive(&c, &op), "root's status");
    require(ok_call(&c, &op, "pause", NULL, -1, &m), "root's pause");
    check(json_object_get_boolean(get(m.result, "paused")), "paused");
    wire_message_done(&m);
    require(ok_call(&c, &op, "resume", NULL, -1, &m), "root's resume");
    wire_message_done(&m);

    check(wait_probing(&c, &op, all_closed, h, 10000), "not every half-line connection was closed");
    for (size_t i = 0; i < HALF_N; i++) {
        const char *text = h->conns[i].in->str;
        int64_t after_lo = (h->closed_at[i] - sent_lo) / 1000;
        int64_t after_hi = (h->closed_at[i] - sent_hi) / 1000;

        if (strstr(text, "\"too-many-connections\"")) {
            refused++;
            continue;
        }
        if (!strstr(text, "\"code\":\"timeout\"") || !strstr(text, "\"id\":null")) {
            check(false, "connection %zu got: %.200s", i, text);
            other++;
            continue;
        }
        timed_out++;
        first_ms = MIN(first_ms, after_hi);
        last_ms = MAX(last_ms, after_lo);
        check(count_lines(h->conns[i].in) == 1, "connection %zu: more than the timeout line", i);
        /* 5 s from its first byte (sent within [sent_lo, sent_hi]), give or take the loop. */
        check(after_lo >= 4900 && after_hi <= 7500,
              "connection %zu closed %" G_GINT64_FORMAT "..%" G_GINT64_FORMAT " ms after its line",
              i, after_hi, after_lo);
    }
    fprintf(stderr, "timeouts %" G_GINT64_FORMAT "..%" G_GINT64_FORMAT " ms after the half lines\n",
            first_ms, last_ms);
    check(refused == HALF_N - 48 && timed_out == 48 && other == 0,
          "refused %u timed out %u other %u", refused, timed_out, other);

    /* The silent root connection is still open (its idle timeout is 60 s) and served. */
    check(!conn_drain(&idle) && idle.in->len == 0, "the idle connection got %.200s", idle.in->str);
    check(responsive(&c, &idle), "the idle connection's status");
    /* One warning per uid per 10 s: refusals and timeouts of 4 uids are at most 4 lines. */
    {
        unsigned refusals = log_count(&c, "connection refused: too many connections");
        unsigned timeouts = log_count(&c, "half a line and nothing more");

        check(refusals >= 1 && timeouts >= 1 && refusals + timeouts <= UIDS,
              "peer warnings: %u refusals, %u timeouts logged", refusals, timeouts);
    }
    for (size_t i = 0; i < HALF_N; i++)
        conn_close(&h->conns[i]);
    for (int i = 0; i < 50 && daemon_fds(&c) != fds_before; i++)
        pause_ms(&c, 100);
    check(daemon_fds(&c) == fds_before, "daemon fds %u -> %u", fds_before, daemon_fds(&c));
    check(daemon_stop(&c) == 0, "espdfud did not exit 0");
out:
    report_probes();
    for (size_t i = 0; i < HALF_N; i++)
        conn_close(&h->conns[i]);
    g_free(h);
    conn_close(&idle);
    conn_close(&op);
    ctx_done(&c);
}

/* ---- trickle: each line finished within 1 s, but each write ends inside the next ---- */

/*
 * For 7 s the connection always holds half a line, never the same one: that
 * is a busy client, not one leaving a line unfinished for 5 s.
 */
static void case_trickle(void)
{
    static const char first[] = "{\"id\":1,\"method\":\"status\"}\n{\"id\":2,\"meth";
    Conn k = {.fd = -1}, probe = {.fd = -1};
    Ctx c;

    require(bed_start(&c, NULL), "espdfud did not start");
    require(conn_open(&c, &k) && conn_open(&c, &probe), "cannot connect");
    require(conn_send(&k, first, strlen(first), -1), "send");
    for (unsigned id = 1; id <= 8; id++) {
        g_autofree char *line = conn_line(&c, &k, 2000);
        g_autofree char *want = g_strdup_printf("{\"id\":%u,\"result\":", id);
        g_autofree char *next = g_strdup_printf("od\":\"status\"}\n{\"id\":%u,\"meth", id + 2);

        require(line && g_str_has_prefix(line, want), "request %u: %s", id,
                line ? line : "(no reply)");
        pause_ms(&c, 500);
        responsive(&c, &probe);
        pause_ms(&c, 500);
        require(conn_send(&k, next, strlen(next), -1), "send");
    }
    check(daemon_stop(&c) == 0, "espdfud did not exit 0");
out:
    report_probes();
    conn_close(&k);
    conn_close(&probe);
    ctx_done(&c);
}

/* ---- fifo-reload: a rule's image becomes a FIFO, then SIGHUP and reload ---- */

/* The 1-based line of the configuration that starts with `prefix`, or 0. */
static unsigned config_line(Ctx *c, const char *prefix)
{
    g_autofree char *text = NULL;
    g_auto(GStrv) lines = NULL;

    if (!g_file_get_contents(c->conf, &text, NULL, NULL))
        return 0;
    lines = g_strsplit(text, "\n", -1);
    for (unsigned i = 0; lines[i]; i++)
        if (g_str_has_prefix(lines[i], prefix))
            return i + 1;
    return 0;
}

static bool reload_refused_logged(void *data)
{
    return log_count(data, "reload refused") > 0;
}

static bool board_flashed(void *data)
{
    void **cb = data;

    return received_image(cb[0], cb[1]);
}

static void case_fifo_reload(void)
{
    g_autofree char *fifo = NULL, *good = NULL, *bad = NULL, *where = NULL, *state = NULL;
    Conn k = {.fd = -1};
    json_object *job;
    int64_t t0, ms, id;
    WireMessage m;
    EmuBoard *b;
    Ctx c;

    ctx_init(&c);
    fifo = g_build_filename(c.dir, "image.fifo", NULL);
    good = g_strdup_printf("\n[rule s2]\nimage = %s\n", FIXTURE);
    bad = g_strdup_printf("\n[rule s2]\nimage = %s\n", fifo);
    require(mkfifo(fifo, 0644) == 0, "mkfifo");
    write_config(&c, good);
    require(daemon_start(&c), "espdfud did not start");
    require(conn_open(&c, &k) && responsive(&c, &k), "status");

    write_config(&c, bad);
    where = g_strdup_printf("%s:%u: image: rule 's2': %s: not a regular file", c.conf,
                            config_line(&c, "image = "), fifo);
    require(kill(c.pid, SIGHUP) == 0, "SIGHUP");
    check(responsive(&c, &k), "status after SIGHUP");
    check(wait_probing(&c, &k, reload_refused_logged, &c, 5000), "no \"reload refused\" logged");
    check(log_count(&c, where) == 1, "no log line \"%s\"", where);

    t0 = g_get_monotonic_time();
    require(call(&c, &k, "reload", NULL, -1, &m), "reload");
    ms = ms_since(t0);
    check(ms < PROBE_MAX_MS, "reload took %" G_GINT64_FORMAT " ms", ms);
    check(!strcmp(error_code(&m), "config-invalid"), "reload: %s", error_code(&m));
    check(m.error_message && strstr(m.error_message, where), "reload's message: %s",
          m.error_message ? m.error_message : "(none)");
    wire_message_done(&m);
    check(responsive(&c, &k), "status after reload");

    /* The old configuration stays: its rule flashes a board plugged now. */
    b = plug(&c, "1-1", "esp32s2:dfu");
    check(wait_probing(&c, &k, board_flashed, (void *[]){&c, b}, 30000),
          "the old rule did not flash the new board");
    require(ok_call(&c, &k, "jobs", NULL, -1, &m), "jobs");
    job = json_object_array_get_idx(get(m.result, "jobs"), 0);
    id = get_int(job, "id");
    /* docs/protocol.md says "rule:s2"; espdfud says the rule's bare name: either is the rule. */
    check(!strcmp(get_str(job, "source"), "s2") || !strcmp(get_str(job, "source"), "rule:s2"),
          "jobs: %s", json_object_to_json_string(m.result));
    wire_message_done(&m);
    state = wait_job_final(&c, &k, id, 30000);
    check(!strcmp(state, "succeeded"), "job %" G_GINT64_FORMAT ": %s", id, state);
    check(daemon_stop(&c) == 0, "espdfud did not exit 0");
out:
    report_probes();
    conn_close(&k);
    ctx_done(&c);
}

/* ---- blocking-image: a flash whose file never delivers ---- */

static void case_blocking_image(void)
{
    Conn a = {.fd = -1}, b = {.fd = -1};
    const char *flash = "{\"id\":1,\"method\":\"flash\",\"params\":{\"paths\":[\"1-1\"]}}\n";
    int64_t t0, ms;
    WireMessage m;
    int fd, status;
    Ctx c;

    need_root("reading " BLOCKING_FILE);
    require(bed_start(&c, "image-timeout-s = 2"), "espdfud did not start");
    require(conn_open(&c, &a) && conn_open(&c, &b), "cannot connect");
    fd = open_blocking();
    require(fd >= 0, "no blocking file");
    t0 = g_get_monotonic_time();
    require(conn_send(&a, flash, strlen(flash), fd), "send the flash");
    close(fd);
    /* The loop goes on while the loader thread waits for the file. */
    check(wait_probing(&c, &b, conn_poll, &a, 8000), "no answer to the flash");
    require(conn_reply(&c, &a, &m), "the flash's reply");
    ms = ms_since(t0);
    check(did_not_deliver(&m), "flash: %s: %s (%s)", error_code(&m),
          m.error_message ? m.error_message : "", m.error_detail ? m.error_detail : "no detail");
    check(ms >= 1500 && ms < 5000, "answered after %" G_GINT64_FORMAT " ms", ms);
    fprintf(stderr, "flash of " BLOCKING_FILE " refused after %" G_GINT64_FORMAT " ms\n", ms);
    wire_message_done(&m);
    check(responsive(&c, &b), "status after the refusal");

    /* The loader thread was cancelled in its read at the deadline: SIGTERM is quick. */
    t0 = g_get_monotonic_time();
    status = daemon_stop(&c);
    ms = ms_since(t0);
    check(status == 0, "espdfud exited with status %d", status);
    check(ms < 6000, "espdfud took %" G_GINT64_FORMAT " ms to stop", ms);
    fprintf(stderr, "espdfud stopped in %" G_GINT64_FORMAT " ms\n", ms);
    check(log_count(&c, "still being read at exit") == 0, "a loader thread outlived its deadline");
out:
    report_probes();
    conn_close(&a);
    conn_close(&b);
    ctx_done(&c);
}

/* ---- control-chars: strings that would forge log lines or drive terminals ---- */

#define EVIL_NAME            \
    "x\njob 41: flashed\x1b" \
    "[2J\xc2\x9b"            \
    "31m.bin"

static void case_control_chars(void)
{
    /* The params as JSON text: the control characters are escaped, as JSON needs. */
    static const struct {
        const char *method, *params, *key;
    } bad[] = {
            {"flash", "{\"paths\":[\"1-1\"],\"name\":\"a\\njob 41: flashed\"}", "params.name"},
            {"hello", "{\"client\":\"\\u001b[2J\"}", "params.client"},
            {"flash", "{\"paths\":[\"1-1\"],\"name\":\"del\\u007f\"}", "params.name"},
            {"hello", "{\"client\":\"c1\\u009b31m\"}", "params.client"},
            {"flash", "{\"paths\":[\"1-1\\u001b]0;x\\u0007\"]}", "params.paths[0]"},
    };
    g_autofree char *log = NULL;
    Conn k = {.fd = -1};
    WireMessage m;
    gsize len = 0;
    Ctx c;

    require(bed_start(&c, NULL), "espdfud did not start");
    require(conn_open(&c, &k), "cannot connect");
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        int fd = strcmp(bad[i].method, "flash") ? -1 : open_fixture();

        require(call(&c, &k, bad[i].method, bad[i].params, fd, &m), "%s", bad[i].params);
        if (fd >= 0)
            close(fd);
        check(!strcmp(error_code(&m), "bad-request"), "%s: %s", bad[i].params, error_code(&m));
        check(m.error_message && g_str_has_prefix(m.error_message, bad[i].key), "%s: message %s",
              bad[i].params, m.error_message ? m.error_message : "(none)");
        wire_message_done(&m);
        check(responsive(&c, &k), "status");
    }
    require(ok_call(&c, &k, "jobs", NULL, -1, &m), "jobs");
    check(json_object_array_length(get(m.result, "jobs")) == 0, "a job was queued");
    wire_message_done(&m);
    /* The file's own name is the image's default name, and it reaches the log. */
    {
        g_autofree char *evil = g_build_filename(c.dir, EVIL_NAME, NULL);
        int fd;

        require(g_file_set_contents(evil, (char *)c.file, (gssize)c.len, NULL), "write");
        fd = open(evil, O_RDONLY | O_CLOEXEC);
        require(fd >= 0, "open");
        require(ok_call(&c, &k, "flash", "{\"paths\":[\"3-1\"]}", fd, &m), "flash the file");
        close(fd);
        wire_message_done(&m);
        require(ok_call(&c, &k, "jobs", NULL, -1, &m), "jobs");
        check(!strcmp(get_str(json_object_array_get_idx(get(m.result, "jobs"), 0), "image.name"),
                      EVIL_NAME),
              "jobs: %s", json_object_to_json_string(m.result));
        wire_message_done(&m);
    }
    check(daemon_stop(&c) == 0, "espdfud did not exit 0");
    require(g_file_get_contents(c.log, &log, &len, NULL), "no log");
    check(!memchr(log, 0x1b, len), "a raw ESC in the log");
    check(!memchr(log, 0x7f, len), "a raw DEL in the log");
    check(!g_str_has_prefix(log, "job 41") && !strstr(log, "\njob 41"), "a forged log line");
out:
    report_probes();
    conn_close(&k);
    ctx_done(&c);
}

/* ---- pipelining-fair: one client's 2000 requests do not delay another's one ---- */

static void case_pipelining_fair(void)
{
    enum { N = 2000 };
    GString *burst = g_string_new(NULL);
    Conn a = {.fd = -1}, b = {.fd = -1};
    unsigned a_before, bad_ids = 0;
    g_autofree char *line = NULL;
    struct pollfd pfd;
    int64_t t0, ms;
    Ctx c;

    require(bed_start(&c, NULL), "espdfud did not start");
    require(conn_open(&c, &a) && conn_open(&c, &b), "cannot connect");
    require(responsive(&c, &a) && responsive(&c, &b), "status");
    for (unsigned i = 1; i <= N; i++)
        g_string_append_printf(burst, "{\"id\":%u,\"method\":\"jobs\"}\n", 100 + i);
    require(conn_send(&a, burst->str, burst->len, -1), "send the burst");
    t0 = g_get_monotonic_time();
    require(conn_send(&b, "{\"id\":1,\"method\":\"status\"}\n", 27, -1), "send status");
    /* Waited for on the socket itself, not the emulator's 10 ms tick: the burst runs on. */
    pfd = (struct pollfd){.fd = b.fd, .events = POLLIN};
    require(poll(&pfd, 1, PROBE_MAX_MS) == 1, "no answer to status within 1 s");
    line = conn_line(&c, &b, PROBE_MAX_MS);
    ms = ms_since(t0);
    conn_drain(&a);
    a_before = count_lines(a.in);
    check(line && g_str_has_prefix(line, "{\"id\":1,\"result\":"), "status: %s",
          line ? line : "(nothing)");
    check(ms < PROBE_MAX_MS, "status took %" G_GINT64_FORMAT " ms", ms);
    check(a_before < N, "all %u pipelined replies came before the other client's one", N);
    fprintf(stderr,
            "status answered in %" G_GINT64_FORMAT " ms, after %u of %u pipelined replies\n", ms,
            a_before, N);
    /* Then every pipelined request is answered, in order. */
    for (unsigned i = 1; i <= N; i++) {
        g_autofree char *r = conn_line(&c, &a, 20000);
        g_autofree char *want = g_strdup_printf("{\"id\":%u,\"result\":{\"jobs\":[]}}", 100 + i);

        require(r, "reply %u of %u missing", i, N);
        bad_ids += strcmp(r, want) != 0;
    }
    check(bad_ids == 0, "%u replies out of order or wrong", bad_ids);
    check(responsive(&c, &b), "status after the burst");
    check(daemon_stop(&c) == 0, "espdfud did not exit 0");
out:
    report_probes();
    g_string_free(burst, TRUE);
    conn_close(&a);
    conn_close(&b);
    ctx_done(&c);
}

/* ---- many-images: more blocking images than the loader takes at once ---- */

typedef struct Answers {
    Conn *conns;
    int64_t *at; /* monotonic µs of each one's first answer, 0 before */
    size_t n;
} Answers;

static bool all_answered(void *data)
{
    Answers *a = data;
    bool all = true;

    for (size_t i = 0; i < a->n; i++) {
        if (!a->at[i] && conn_poll(&a->conns[i]))
            a->at[i] = g_get_monotonic_time();
        all &= a->at[i] != 0;
    }
    return all;
}

static void case_many_images(void)
{
    enum { N = 5 };
    const char *flash = "{\"id\":1,\"method\":\"flash\",\"params\":{\"paths\":[\"1-1\"]}}\n";
    Conn k[N], probe = {.fd = -1};
    unsigned busy = 0, timed_out = 0;
    int64_t sent[N], at[N] = {}, t0, ms;
    WireMessage m;
    Ctx c;

    need_root("reading " BLOCKING_FILE);
    for (size_t i = 0; i < N; i++)
        k[i] = (Conn){.fd = -1};
    require(bed_start(&c, "image-timeout-s = 2"), "espdfud did not start");
    require(conn_open(&c, &probe), "cannot connect");
    for (size_t i = 0; i < N; i++)
        require(conn_open(&c, &k[i]), "cannot connect");
    for (size_t i = 0; i < N; i++) {
        int fd = open_blocking();

        require(fd >= 0, "no blocking file");
        sent[i] = g_get_monotonic_time();
        require(conn_send(&k[i], flash, strlen(flash), fd), "send flash %zu", i);
        close(fd);
    }
    check(wait_probing(&c, &probe, all_answered, &(Answers){k, at, N}, 8000),
          "not every flash was answered");
    for (size_t i = 0; i < N; i++) {
        if (!conn_reply(&c, &k[i], &m)) {
            check(false, "flash %zu: no reply", i);
            continue;
        }
        ms = (at[i] - sent[i]) / 1000;
        if (m.type == WIRE_MESSAGE_ERROR && !strcmp(m.error_code, "internal") &&
            strstr(m.error_message, "try again")) {
            busy++;
            check(ms < PROBE_MAX_MS, "flash %zu: \"try again\" after %" G_GINT64_FORMAT " ms", i,
                  ms);
        } else if (did_not_deliver(&m)) {
            timed_out++;
            check(ms >= 1500 && ms < 5000, "flash %zu: refused after %" G_GINT64_FORMAT " ms", i,
                  ms);
        } else
            check(false, "flash %zu: %s: %s", i, error_code(&m), m.error_message);
        fprintf(stderr, "flash %zu: %s after %" G_GINT64_FORMAT " ms\n", i, error_code(&m), ms);
        wire_message_done(&m);
    }
    check(busy == 1 && timed_out == N - 1, "%u \"try again\", %u \"did not deliver\"", busy,
          timed_out);
    check(responsive(&c, &probe), "status afterwards");
    /* Cancelled in their reads at the deadline, the 4 threads gave their slots back. */
    {
        int fd = open_fixture();

        require(call(&c, &probe, "flash", "{\"paths\":[\"1-1\"]}", fd, &m), "flash the fixture");
        close(fd);
        check(m.type == WIRE_MESSAGE_REPLY, "a good image afterwards: %s %s", error_code(&m),
              m.error_message ? m.error_message : "");
        wire_message_done(&m);
    }
    t0 = g_get_monotonic_time();
    check(daemon_stop(&c) == 0, "espdfud did not exit 0");
    ms = ms_since(t0);
    check(ms < 6000, "espdfud took %" G_GINT64_FORMAT " ms to stop", ms);
out:
    report_probes();
    for (size_t i = 0; i < N; i++)
        conn_close(&k[i]);
    conn_close(&probe);
    ctx_done(&c);
}

/* ---- retries and lost boards, with another client served meanwhile ---- */

/* Job 1, the case's only job, once it is final (NULL after 60 s); *m owns it. Another
 * client's status is probed all the while. */
static json_object *final_job(Ctx *c, Conn *k, WireMessage *m)
{
    Conn probe = {.fd = -1};
    json_object *job = NULL;

    if (!conn_open(c, &probe))
        return NULL;
    for (int waited = 0; waited < 60000 && !job; waited += 200) {
        const char *state;

        if (call(c, k, "job", "{\"id\":1}", -1, m) && m->type == WIRE_MESSAGE_REPLY) {
            state = get_str(m->result, "job.state");
            if (state && (!strcmp(state, "succeeded") || !strcmp(state, "failed")))
                job = get(m->result, "job");
        }
        if (!job) {
            wire_message_done(m);
            *m = (WireMessage){};
            responsive(c, &probe);
            pause_ms(c, 200);
        }
    }
    conn_close(&probe);
    return job;
}

/* The board stops answering after block 10 once: the retry resets it and flashes it whole. */
static void case_hang_retry(void)
{
    Conn k = {.fd = -1};
    json_object *job, *attempts;
    WireMessage m = {};
    EmuBoardInfo info;
    EmuBoard *b;
    Ctx c;

    require(bed_start(&c, "transfer-timeout-ms = 1000\nretries = 1\n[rule s2]\nimage = " FIXTURE),
            "espdfud did not start");
    require(conn_open(&c, &k) && responsive(&c, &k), "status");
    b = plug(&c, "1-1", "esp32s2:dfu,hang-at=10,fault-attempts=1");
    check(wait_probing(&c, &k, board_flashed, (void *[]){&c, b}, 60000),
          "the retry did not flash the board byte-exact");
    job = final_job(&c, &k, &m);
    require(job, "no final job");
    check(!strcmp(get_str(job, "state"), "succeeded"), "job: %s", get_str(job, "state"));
    check(!get(job, "error"), "a job that succeeded carries an error");
    attempts = get(job, "attempts");
    check(attempts && json_object_array_length(attempts) == 2, "attempts: %s",
          json_object_to_json_string(attempts));
    check(get(json_object_array_get_idx(attempts, 0), "error") &&
                  !get(json_object_array_get_idx(attempts, 1), "error"),
          "the first attempt's error, the second's none: %s", json_object_to_json_string(attempts));
    emu_board_info(b, &info);
    check(info.resets >= 1, "no USB reset before the retry");
    check(responsive(&c, &k), "status at the end");
out:
    wire_message_done(&m);
    report_probes();
    conn_close(&k);
    ctx_done(&c);
}

/* The board vanishes when block 80 arrives: the job's error names block 80, exactly. */
static void case_unplug_block(void)
{
    Conn k = {.fd = -1};
    json_object *job, *error;
    WireMessage m = {};
    Ctx c;

    require(bed_start(&c, "[rule s2]\nimage = " FIXTURE), "espdfud did not start");
    require(conn_open(&c, &k) && responsive(&c, &k), "status");
    plug(&c, "1-1", "esp32s2:dfu,poll=5,unplug-at=80");
    job = final_job(&c, &k, &m);
    require(job, "no final job");
    error = get(job, "error");
    check(!strcmp(get_str(job, "state"), "failed"), "job: %s", get_str(job, "state"));
    check(error && !strcmp(get_str(error, "code"), "disconnected"), "error: %s",
          json_object_to_json_string(error));
    check(get_int(error, "block") == 80, "error block %" PRId64 ", want 80: %s",
          get_int(error, "block"), json_object_to_json_string(error));
    check(get_str(error, "phase") && !strcmp(get_str(error, "phase"), "download"), "phase: %s",
          json_object_to_json_string(error));
    check(get_int(error, "offset") == 80 * 64, "offset: %s", json_object_to_json_string(error));
    check(responsive(&c, &k), "status at the end");
out:
    wire_message_done(&m);
    report_probes();
    conn_close(&k);
    ctx_done(&c);
}

static const E2eCase cases[] = {
        {"half-lines", case_half_lines},
        {"fifo-reload", case_fifo_reload},
        {"trickle", case_trickle},
        {"blocking-image", case_blocking_image},
        {"control-chars", case_control_chars},
        {"pipelining-fair", case_pipelining_fair},
        {"many-images", case_many_images},
        {"hang-retry", case_hang_retry},
        {"unplug-block", case_unplug_block},
};

int main(int argc, char **argv)
{
    return e2e_main(argc, argv, cases, G_N_ELEMENTS(cases));
}
