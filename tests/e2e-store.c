/* SPDX-License-Identifier: MIT */
/*
 * The crash-safe job store (<state-dir>/jobs.db) end to end: the real espdfud
 * with real SQLite under emulated boards (tests/emu/), killed, restarted,
 * starved of disk, given a damaged or an old-format history. Each case is one
 * CTest test: e2e-store CASE.
 *
 * What is asserted is what a client sees: job objects and `status` over the
 * control socket (one connection per request, read while the emulator's loop
 * runs), what each board received, and `espdfuctl history --state-dir` once
 * the daemon is stopped. Waits poll the socket or the boards with a bound.
 */
#include <fcntl.h>
#include <glib.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "e2e-daemon-harness.h"

#define ID_FLOOR_UNIX 1700000000LL /* ids after a store that could not be salvaged */
#define FILL_CHUNK    4096u

static void json_put(json_object **o)
{
    if (*o)
        json_object_put(*o);
}

typedef json_object *JsonRef;
#define auto_json __attribute__((cleanup(json_put))) JsonRef

/* ---- the control socket ---- */

typedef struct Reply {
    int fd;
    GString *in;
    bool closed;
} Reply;

/* One recv() per turn of the emulator's loop: true once a whole line (or EOF) is in. */
static bool reply_line(void *data)
{
    Reply *r = data;
    char buf[16384];
    ssize_t n = recv(r->fd, buf, sizeof(buf), MSG_DONTWAIT);

    if (n > 0)
        g_string_append_len(r->in, buf, n);
    else if (n == 0 || (errno != EAGAIN && errno != EINTR))
        r->closed = true;
    return r->closed || strchr(r->in->str, '\n');
}

static void attach_fd(struct msghdr *mh, char *control, size_t size, int fd)
{
    struct cmsghdr *h;

    mh->msg_control = control;
    mh->msg_controllen = size;
    h = CMSG_FIRSTHDR(mh);
    h->cmsg_level = SOL_SOCKET;
    h->cmsg_type = SCM_RIGHTS;
    h->cmsg_len = CMSG_LEN(sizeof(fd));
    memcpy(CMSG_DATA(h), &fd, sizeof(fd));
}

/*
 * One request on a connection of its own, with image attached when >= 0: the
 * whole reply object (json_put it), or NULL when the daemon is not there or
 * did not answer within 20 s. The emulator's loop runs meanwhile.
 */
static json_object *request(Ctx *c, const char *method, const char *params, int image)
{
    g_autofree char *sock = g_build_filename(c->dir, "espdfud.sock", NULL);
    g_autofree char *line = g_strdup_printf("{\"id\":1,\"method\":\"%s\"%s%s}\n", method,
                                            params ? ",\"params\":" : "", params ? params : "");
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct iovec iov = {.iov_base = line, .iov_len = strlen(line)};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    _Alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {0};
    Reply r = {.in = g_string_new(NULL)};
    json_object *reply = NULL;

    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
    r.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (image >= 0)
        attach_fd(&mh, control, sizeof(control), image);
    if (r.fd >= 0 && connect(r.fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        sendmsg(r.fd, &mh, MSG_NOSIGNAL) == (ssize_t)iov.iov_len &&
        wait_until(c, reply_line, &r, 20000) && !r.closed)
        reply = json_tokener_parse(r.in->str);
    if (r.fd >= 0)
        close(r.fd);
    g_string_free(r.in, TRUE);
    return reply;
}

/* The value at a dotted path ("result.job.attempts.0.error"); NULL when absent or null. */
static json_object *at(json_object *o, const char *dotted)
{
    g_auto(GStrv) keys = g_strsplit(dotted, ".", -1);

    for (size_t i = 0; o && keys[i]; i++) {
        json_object *next = NULL;

        if (json_object_is_type(o, json_type_array))
            next = json_object_array_get_idx(o, (size_t)g_ascii_strtoull(keys[i], NULL, 10));
        else
            json_object_object_get_ex(o, keys[i], &next);
        o = next;
    }
    return o;
}

/* Whether the key exists and holds JSON null (absent is not null). */
static bool is_null(json_object *o, const char *dotted)
{
    g_autofree char *parent = g_strdup(dotted);
    char *dot = strrchr(parent, '.');
    const char *key = dotted;
    json_object *p = o, *v = NULL;

    if (dot) {
        *dot = '\0';
        key = dot + 1;
        p = at(o, parent);
    }
    return p && json_object_object_get_ex(p, key, &v) && !v;
}

static const char *str_at(json_object *o, const char *dotted)
{
    json_object *v = at(o, dotted);

    return v && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "";
}

static int64_t int_at(json_object *o, const char *dotted)
{
    json_object *v = at(o, dotted);

    return v ? json_object_get_int64(v) : -1;
}

static size_t len_at(json_object *o, const char *dotted)
{
    json_object *v = at(o, dotted);

    return v && json_object_is_type(v, json_type_array) ? json_object_array_length(v) : 0;
}

/* A request that must succeed: its reply (json_put it), or NULL, reported. */
static json_object *call(Ctx *c, const char *method, const char *params)
{
    json_object *reply = request(c, method, params, -1);

    if (!reply)
        fprintf(stderr, "%s %s: no reply\n", method, params ? params : "");
    else if (!at(reply, "result")) {
        fprintf(stderr, "%s %s: %s\n", method, params ? params : "",
                json_object_to_json_string(reply));
        json_put(&reply);
    }
    return reply;
}

/* `flash` of the fixture with these params: the first job id, or -1 (reported). */
static int64_t flash(Ctx *c, const char *params)
{
    int fd = open(FIXTURE, O_RDONLY | O_CLOEXEC);
    auto_json reply = request(c, "flash", params, fd);
    int64_t id = int_at(reply, "result.jobs.0");

    if (fd >= 0)
        close(fd);
    if (id < 0)
        fprintf(stderr, "flash %s: %s\n", params,
                reply ? json_object_to_json_string(reply) : "no reply");
    return id;
}

static json_object *job(Ctx *c, int64_t id)
{
    g_autofree char *params = g_strdup_printf("{\"id\":%" PRId64 "}", id);

    return call(c, "job", params);
}

static bool is_final(const char *state)
{
    static const char *const finals[] = {"succeeded", "failed", "cancelled", "interrupted",
                                         "expired"};

    for (size_t i = 0; i < G_N_ELEMENTS(finals); i++)
        if (strcmp(state, finals[i]) == 0)
            return true;
    return false;
}

/*
 * Poll `job id` until it is final (or in state, when state is not final):
 * the last reply (json_put it), whatever its state, NULL when nothing answered.
 */
static json_object *wait_job(Ctx *c, int64_t id, const char *state, int timeout_ms)
{
    int64_t end = g_get_monotonic_time() + (int64_t)timeout_ms * 1000;
    json_object *reply = NULL;

    for (;;) {
        const char *s;

        json_put(&reply);
        reply = job(c, id);
        s = str_at(reply, "result.job.state");
        if (strcmp(s, state) == 0 || is_final(s) || g_get_monotonic_time() > end)
            break;
        pause_ms(c, 100);
    }
    fprintf(stderr, "job %" PRId64 ": %s\n", id, str_at(reply, "result.job.state"));
    return reply;
}

/* Poll `status` until pred(result, data), for timeout_ms: the last result's reply. */
static json_object *wait_status(Ctx *c, bool (*pred)(json_object *result, void *data), void *data,
                                int timeout_ms)
{
    int64_t end = g_get_monotonic_time() + (int64_t)timeout_ms * 1000;
    json_object *reply = NULL;

    for (;;) {
        json_put(&reply);
        reply = request(c, "status", NULL, -1);
        if ((reply && pred(at(reply, "result"), data)) || g_get_monotonic_time() > end)
            return reply;
        pause_ms(c, 100);
    }
}

static bool store_is_open(json_object *result, void *data)
{
    return json_object_get_boolean(at(result, "store_open"));
}

/* espdfud started, answering, its job store open. */
static bool start(Ctx *c)
{
    auto_json reply = NULL;

    if (!daemon_start(c))
        return false;
    reply = wait_status(c, store_is_open, NULL, 20000);
    if (!store_is_open(at(reply, "result"), NULL))
        fprintf(stderr, "the job store did not open: %s\n",
                reply ? json_object_to_json_string(reply) : "no status reply");
    return store_is_open(at(reply, "result"), NULL);
}

/* SIGKILL, as a crash or an OOM kill would: the exit status (137), or -1. */
static int daemon_kill(Ctx *c)
{
    int status = -1;

    kill(c->pid, SIGKILL);
    if (emu_wait_child(c->e, c->daemon, 10000, &status, NULL) < 0)
        status = -1;
    c->daemon = NULL;
    return status;
}

static char *state_file(Ctx *c, const char *name)
{
    return g_build_filename(c->dir, "state", name, NULL);
}

static void make_state_dir(Ctx *c)
{
    g_autofree char *dir = state_file(c, NULL);

    if (mkdir(dir, 0700) < 0) {
        fprintf(stderr, "FAIL: cannot create %s\n", dir);
        exit(1);
    }
}

typedef struct Requests {
    EmuBoard *b;
    unsigned n;
} Requests;

static bool requests_over(void *data)
{
    Requests *w = data;
    EmuBoardInfo i = info_of(w->b);

    return i.has_model && i.dfu.requests > w->n;
}

/* The board has answered more than n DFU requests of its download. */
static bool wait_requests(Ctx *c, EmuBoard *b, unsigned n, int timeout_ms)
{
    Requests w = {b, n};

    return wait_until(c, requests_over, &w, timeout_ms);
}

static bool commits_over(json_object *result, void *data)
{
    return int_at(result, "store_commits") > *(int64_t *)data;
}

/* The newest job on path ("result.jobs" of `jobs`), as a new object (json_put it). */
static json_object *newest_job(Ctx *c, const char *path)
{
    g_autofree char *params = g_strdup_printf("{\"path\":\"%s\"}", path);
    auto_json reply = call(c, "jobs", params);
    size_t n = len_at(reply, "result.jobs");

    return n ? json_object_get(json_object_array_get_idx(at(reply, "result.jobs"), n - 1)) : NULL;
}

/* Poll until the newest job on path has an id above after and is final: it, or NULL. */
static json_object *wait_next_job(Ctx *c, const char *path, int64_t after, int timeout_ms)
{
    int64_t end = g_get_monotonic_time() + (int64_t)timeout_ms * 1000;

    while (g_get_monotonic_time() < end) {
        json_object *j = newest_job(c, path);

        if (j && int_at(j, "id") > after && is_final(str_at(j, "state")))
            return j;
        json_put(&j);
        pause_ms(c, 100);
    }
    return NULL;
}

/* A final job that must have succeeded, with "error": null. */
static bool succeeded(json_object *j)
{
    return j && strcmp(str_at(j, "state"), "succeeded") == 0 && is_null(j, "error");
}

/* `history` with params: the ids of its records in order, "5,6,9". */
static char *history_ids(Ctx *c, const char *params)
{
    auto_json reply = call(c, "history", params);
    GString *ids = g_string_new(NULL);

    for (size_t i = 0; i < len_at(reply, "result.records"); i++) {
        g_autofree char *key = g_strdup_printf("result.records.%zu.id", i);

        g_string_append_printf(ids, "%s%" PRId64, i ? "," : "", int_at(reply, key));
    }
    return g_string_free(ids, FALSE);
}

/* Poll `history` (params) until its ids are want: the ids last seen. */
static char *wait_history(Ctx *c, const char *params, const char *want, int timeout_ms)
{
    int64_t end = g_get_monotonic_time() + (int64_t)timeout_ms * 1000;
    char *ids;

    for (;;) {
        ids = history_ids(c, params);
        if (strcmp(ids, want) == 0 || g_get_monotonic_time() > end)
            return ids;
        g_free(ids);
        pause_ms(c, 100);
    }
}

/* ---- cases ---- */

/*
 * SIGKILL in the middle of an auto-flash: after the restart job 1 is
 * interrupted where it was, and the board (still plugged, never given its
 * image) is flashed again by a new job.
 */
static void case_kill_download(void)
{
    auto_json j1 = NULL, j2 = NULL, reply = NULL;
    g_autofree char *interrupted = NULL;
    int64_t commits;
    EmuBoard *b;
    Ctx c;

    ctx_init(&c);
    write_config(&c, "workers = 4", "");
    require(start(&c), "espdfud did not start");
    b = plug(&c, "1-1", "esp32s2:dfu,poll=50"); /* 160 blocks of 50 ms: ~8 s */
    require(wait_requests(&c, b, 60, 30000), "the download did not start");
    /* A commit while it downloads: the store has a position to recover. */
    reply = call(&c, "status", NULL);
    commits = int_at(reply, "result.store_commits");
    json_put(&reply);
    reply = wait_status(&c, commits_over, &commits, 5000);
    require(commits_over(at(reply, "result"), &commits), "no commit during the download");
    require(info_of(b).dfu.downloads_ok == 0, "the download was over before the kill");
    check(daemon_kill(&c) == 128 + SIGKILL, "espdfud did not die of SIGKILL");

    require(start(&c), "espdfud did not start again");
    j1 = job(&c, 1);
    require(j1, "job 1 does not answer after the restart");
    check(strcmp(str_at(j1, "result.job.state"), "interrupted") == 0, "job 1 is %s",
          str_at(j1, "result.job.state"));
    check(strcmp(str_at(j1, "result.job.error.code"), "interrupted") == 0, "error.code %s",
          str_at(j1, "result.job.error.code"));
    check(strstr(str_at(j1, "result.job.error.message"), "the daemon stopped at ") &&
                  strstr(str_at(j1, "result.job.error.message"), "during download at "),
          "error.message: %s", str_at(j1, "result.job.error.message"));
    check(int_at(j1, "result.job.progress.bytes") > 0, "progress.bytes %" PRId64,
          int_at(j1, "result.job.progress.bytes"));
    check(int_at(j1, "result.job.progress.total") == (int64_t)(c.len - SUFFIX),
          "progress.total %" PRId64, int_at(j1, "result.job.progress.total"));
    check(int_at(j1, "result.job.error.block") > 0, "error.block %" PRId64,
          int_at(j1, "result.job.error.block"));
    check(int_at(j1, "result.job.error.offset") == int_at(j1, "result.job.error.block") * 64,
          "error.offset %" PRId64, int_at(j1, "result.job.error.offset"));

    j2 = wait_next_job(&c, "1-1", 1, 60000);
    require(j2, "the board was not flashed again after the restart");
    check(int_at(j2, "id") > 1, "the new job has id %" PRId64, int_at(j2, "id"));
    check(succeeded(j2), "job %" PRId64 " is %s", int_at(j2, "id"), str_at(j2, "state"));
    check(received_image(&c, b), "the board did not end byte-exact");
    check(info_of(b).dfu.downloads_ok == 1, "downloads_ok %u", info_of(b).dfu.downloads_ok);
    interrupted = wait_history(&c, "{\"result\":\"interrupted\"}", "1", 5000);
    check(strcmp(interrupted, "1") == 0, "history of interrupted jobs: [%s]", interrupted);
    check(daemon_stop(&c, 10000, NULL) == 0, "espdfud did not exit 0");
out:
    ctx_done(&c);
}

/* SIGKILL while a manual job waits for a board on an empty port. */
static void case_kill_waiting(void)
{
    auto_json j1 = NULL;
    g_autofree char *interrupted = NULL;
    int64_t id, next;
    Ctx c;

    ctx_init(&c);
    write_config(&c, "workers = 4", "path = 9-8");
    require(start(&c), "espdfud did not start");
    id = flash(&c, "{\"paths\":[\"9-9\"]}");
    require(id > 0, "flash to an empty port failed");
    j1 = job(&c, id);
    check(strcmp(str_at(j1, "result.job.state"), "waiting-for-board") == 0, "job is %s",
          str_at(j1, "result.job.state"));
    json_put(&j1);
    check(daemon_kill(&c) == 128 + SIGKILL, "espdfud did not die of SIGKILL");

    require(start(&c), "espdfud did not start again");
    j1 = job(&c, id);
    require(j1, "job %" PRId64 " does not answer after the restart", id);
    check(strcmp(str_at(j1, "result.job.state"), "interrupted") == 0, "job is %s",
          str_at(j1, "result.job.state"));
    check(strcmp(str_at(j1, "result.job.error.code"), "interrupted") == 0, "error.code %s",
          str_at(j1, "result.job.error.code"));
    check(strstr(str_at(j1, "result.job.error.message"), "while the job waited for a board"),
          "error.message: %s", str_at(j1, "result.job.error.message"));
    next = flash(&c, "{\"paths\":[\"9-9\"]}");
    check(next > id, "the next job has id %" PRId64 ", after %" PRId64, next, id);
    interrupted = history_ids(&c, "{\"result\":\"interrupted\"}");
    check(id == 1 && strcmp(interrupted, "1") == 0,
          "history of interrupted jobs: [%s], job %" PRId64, interrupted, id);
    check(daemon_stop(&c, 10000, NULL) == 0, "espdfud did not exit 0");
out:
    ctx_done(&c);
}

/* Poll `devices` (once at least) until path shows state, "(absent)" for none. */
static bool wait_device_state(Ctx *c, const char *path, const char *state, int timeout_ms)
{
    int64_t end = g_get_monotonic_time() + (int64_t)timeout_ms * 1000;
    g_autofree char *last = NULL;

    for (;;) {
        auto_json reply = call(c, "devices", NULL);

        g_free(last);
        last = g_strdup("(absent)");
        for (size_t i = 0; i < len_at(reply, "result.devices"); i++) {
            json_object *d = json_object_array_get_idx(at(reply, "result.devices"), i);

            if (strcmp(str_at(d, "path"), path) == 0) {
                g_free(last);
                last = g_strdup(str_at(d, "state"));
            }
        }
        if (strcmp(last, state) == 0)
            return true;
        if (g_get_monotonic_time() > end)
            break;
        pause_ms(c, 100);
    }
    fprintf(stderr, "device %s is %s, not %s\n", path, last, state);
    return false;
}

/* After a restart: 1-1 shows flashed-needs-reset, and the only job on it is job 1. */
static void check_not_flashed_again(Ctx *c, EmuBoard *b)
{
    auto_json newest = NULL;

    check(wait_device_state(c, "1-1", "flashed-needs-reset", 10000),
          "1-1 is not flashed-needs-reset after the restart");
    /* A second round trip: a job the rule queued at the arrival would show by now. */
    check(wait_device_state(c, "1-1", "flashed-needs-reset", 0), "1-1 changed its state");
    newest = newest_job(c, "1-1");
    check(int_at(newest, "id") == 1, "the newest job on 1-1 is %" PRId64, int_at(newest, "id"));
    check(info_of(b).dfu.attempts == 1, "the board was flashed again: attempts %u",
          info_of(b).dfu.attempts);
}

static bool board_gone(void *data)
{
    return !info_of(data).plugged;
}

/* A board flashed by a rule and left plugged is not flashed again after a restart. */
static void case_once_per_plug_restart(void)
{
    auto_json j = NULL;
    EmuBoard *b;
    Ctx c;

    ctx_init(&c);
    write_config(&c, "workers = 4", "");
    require(start(&c), "espdfud did not start");
    b = plug(&c, "1-1", "esp32s2:dfu");
    j = wait_job(&c, 1, "succeeded", 30000);
    require(succeeded(at(j, "result.job")), "job 1 did not succeed");
    json_put(&j);
    require(wait_device_state(&c, "1-1", "flashed-needs-reset", 5000), "not flashed-needs-reset");

    check(daemon_stop(&c, 10000, NULL) == 0, "espdfud did not exit 0");
    require(start(&c), "espdfud did not start again after SIGTERM");
    check_not_flashed_again(&c, b);

    check(daemon_kill(&c) == 128 + SIGKILL, "espdfud did not die of SIGKILL");
    require(start(&c), "espdfud did not start again after SIGKILL");
    check_not_flashed_again(&c, b);

    /* Unplug and replug: a new plug, flashed. */
    require(emu_board_unplug(b) == 0, "unplug");
    require(wait_until(&c, board_gone, b, 5000), "the board did not leave");
    require(wait_device_state(&c, "1-1", "(absent)", 5000), "the daemon did not see it leave");
    require(emu_board_replug(b, EMU_MODE_DFU) == 0, "replug");
    j = wait_next_job(&c, "1-1", 1, 30000);
    require(j, "no new job after the replug");
    check(succeeded(j), "job %" PRId64 " is %s", int_at(j, "id"), str_at(j, "state"));
    check(received_image(&c, b), "not byte-exact after the replug");
    check(info_of(b).dfu.downloads_ok == 2, "downloads_ok %u, want 2", info_of(b).dfu.downloads_ok);
    check(daemon_stop(&c, 10000, NULL) == 0, "espdfud did not exit 0");
out:
    ctx_done(&c);
}

/* A job for an empty port expires after wait-timeout-s. */
static void case_wait_expires(void)
{
    g_autofree char *expired = NULL;
    auto_json j = NULL;
    int64_t id, t0;
    double s;
    Ctx c;

    ctx_init(&c);
    write_config(&c, "workers = 4\nwait-timeout-s = 2", "path = 9-8");
    require(start(&c), "espdfud did not start");
    t0 = g_get_monotonic_time();
    id = flash(&c, "{\"paths\":[\"9-9\"]}");
    require(id > 0, "flash to an empty port failed");
    j = wait_job(&c, id, "expired", 15000);
    s = (double)(g_get_monotonic_time() - t0) / 1e6;
    fprintf(stderr, "flash to expired: %.2f s\n", s);
    check(strcmp(str_at(j, "result.job.state"), "expired") == 0, "job is %s",
          str_at(j, "result.job.state"));
    check(strcmp(str_at(j, "result.job.error.code"), "wait-timeout") == 0, "error.code %s",
          str_at(j, "result.job.error.code"));
    check(s >= 1.9 && s < 10, "expired after %.2f s, wait-timeout-s is 2", s);
    expired = wait_history(&c, "{\"result\":\"expired\"}", "1", 5000);
    check(strcmp(expired, "1") == 0, "history of expired jobs: [%s]", expired);
    check(daemon_stop(&c, 10000, NULL) == 0, "espdfud did not exit 0");
out:
    ctx_done(&c);
}

/* A transient fault on the first attempt, retries=1: succeeded, two attempts kept. */
static void case_retry_succeeds(void)
{
    g_autofree char *ids = NULL;
    auto_json j = NULL, h = NULL;
    EmuBoard *b;
    int64_t id;
    Ctx c;

    ctx_init(&c);
    write_config(&c, "workers = 4", "path = 9-8");
    require(start(&c), "espdfud did not start");
    b = plug(&c, "1-1", "esp32s2:dfu,error-at=20,status=errWRITE,fault-attempts=1");
    id = flash(&c, "{\"paths\":[\"1-1\"],\"retries\":1}");
    require(id > 0, "flash failed");
    j = wait_job(&c, id, "succeeded", 60000);
    check(succeeded(at(j, "result.job")), "job is %s, error %s", str_at(j, "result.job.state"),
          json_object_to_json_string(at(j, "result.job.error")));
    check(int_at(j, "result.job.retries") == 1, "retries %" PRId64,
          int_at(j, "result.job.retries"));
    require(len_at(j, "result.job.attempts") == 2, "%zu attempts",
            len_at(j, "result.job.attempts"));
    check(int_at(j, "result.job.attempts.0.n") == 1 && int_at(j, "result.job.attempts.1.n") == 2,
          "attempts not numbered 1, 2");
    check(at(j, "result.job.attempts.0.error"), "the first attempt has no error");
    check(strcmp(str_at(j, "result.job.attempts.0.error.dfu_status"), "errWRITE") == 0,
          "the first attempt's dfu_status is '%s'",
          str_at(j, "result.job.attempts.0.error.dfu_status"));
    check(is_null(j, "result.job.attempts.1.error"), "the second attempt has an error");
    check(int_at(j, "result.job.attempts.1.bytes") == (int64_t)(c.len - SUFFIX),
          "the second attempt sent %" PRId64, int_at(j, "result.job.attempts.1.bytes"));
    check(received_image(&c, b), "not byte-exact");
    check(info_of(b).dfu.attempts == 2, "the board saw %u attempts", info_of(b).dfu.attempts);
    /* The store has the same: read back through history. */
    ids = wait_history(&c, "{\"result\":\"succeeded\"}", "1", 5000);
    require(strcmp(ids, "1") == 0, "history of succeeded jobs: [%s]", ids);
    h = call(&c, "history", "{\"result\":\"succeeded\"}");
    check(len_at(h, "result.records.0.attempts") == 2 && is_null(h, "result.records.0.error") &&
                  at(h, "result.records.0.attempts.0.error") &&
                  is_null(h, "result.records.0.attempts.1.error"),
          "the stored record differs: %s", json_object_to_json_string(at(h, "result.records.0")));
    check(daemon_stop(&c, 10000, NULL) == 0, "espdfud did not exit 0");
out:
    ctx_done(&c);
}

/* Fill the file system holding dir to the last page: two files, the second to be sure. */
static bool fill_disk(const char *dir)
{
    static const char zeros[FILL_CHUNK];
    bool full = true;

    for (int f = 0; f < 2; f++) {
        g_autofree char *name = g_strdup_printf("%s/filler%d", dir, f);
        int fd = open(name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        size_t chunk = FILL_CHUNK;
        ssize_t n;

        if (fd < 0)
            return false;
        while (chunk) {
            n = write(fd, zeros, chunk);
            if (n < 0 && errno != ENOSPC) {
                full = false;
                break;
            }
            if (n <= 0)
                chunk /= 2; /* down to single bytes in the last page */
        }
        fsync(fd);
        close(fd);
    }
    return full;
}

typedef struct Starved {
    bool pending, error;
} Starved;

/*
 * The state dir on a 4 MiB tmpfs (a mount namespace of this test's own):
 * the disk fills mid-download, the job's final row cannot be written, it
 * waits in memory (status shows it), and is written once space is back.
 */
static void case_disk_full(void)
{
    g_autofree char *state = NULL, *filler0 = NULL, *filler1 = NULL, *ids = NULL;
    auto_json reply = NULL, j = NULL;
    bool mounted = false;
    Starved seen = {};
    EmuBoard *b;
    Ctx c;

    if (geteuid() != 0) {
        fprintf(stderr, "SKIP: disk-full mounts a tmpfs: needs root\n");
        exit(77);
    }
    if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
        fprintf(stderr, "SKIP: no mount namespace of our own: %s\n", g_strerror(errno));
        exit(77);
    }
    ctx_init(&c);
    make_state_dir(&c);
    state = state_file(&c, NULL);
    filler0 = state_file(&c, "filler0");
    filler1 = state_file(&c, "filler1");
    require(mount("e2e-store", state, "tmpfs", MS_NOSUID | MS_NODEV, "size=4m,mode=0700") == 0,
            "cannot mount a tmpfs on %s: %s", state, g_strerror(errno));
    mounted = true;
    write_config(&c, "workers = 4", "");
    require(start(&c), "espdfud did not start");
    b = plug(&c, "1-1", "esp32s2:dfu,poll=50"); /* ~8 s */
    require(wait_requests(&c, b, 20, 30000), "the download did not start");
    require(fill_disk(state), "cannot fill %s", state);
    require(info_of(b).dfu.downloads_ok == 0, "the download ended before the disk was full");

    /* Until the job is over in memory: status must show the rows waiting. */
    for (int64_t end = g_get_monotonic_time() + 60 * G_USEC_PER_SEC;
         g_get_monotonic_time() < end;) {
        json_put(&reply);
        reply = call(&c, "status", NULL);
        seen.pending |= int_at(reply, "result.history_pending") > 0;
        seen.error |= at(reply, "result.history_error") != NULL;
        json_put(&j);
        j = job(&c, 1);
        if (is_final(str_at(j, "result.job.state")) && seen.pending && seen.error)
            break;
        pause_ms(&c, 100);
    }
    fprintf(stderr, "disk full: %s\n", json_object_to_json_string(at(reply, "result")));
    check(seen.error, "history_error never set while the disk was full");
    check(seen.pending, "history_pending never above 0 while the disk was full");
    check(strstr(str_at(reply, "result.history_error"), "jobs.db"),
          "history_error does not name jobs.db: '%s'", str_at(reply, "result.history_error"));
    require(succeeded(at(j, "result.job")), "job 1 is %s", str_at(j, "result.job.state"));
    check(received_image(&c, b), "not byte-exact");
    /* The final row is still pending, so not in the history yet. */
    json_put(&reply);
    reply = call(&c, "status", NULL);
    check(int_at(reply, "result.history_pending") > 0, "nothing pending although the disk is full");
    g_free(ids);
    ids = history_ids(&c, "{\"result\":\"succeeded\"}");
    check(strcmp(ids, "") == 0, "a pending row is in the history: [%s]", ids);

    /* Space again: written at the next retry (every 2 s). */
    unlink(filler0);
    unlink(filler1);
    g_free(ids);
    ids = wait_history(&c, "{\"result\":\"succeeded\"}", "1", 15000);
    check(strcmp(ids, "1") == 0, "job 1 did not reach the history: [%s]", ids);
    json_put(&reply);
    reply = call(&c, "status", NULL);
    check(int_at(reply, "result.history_pending") == 0, "history_pending %" PRId64,
          int_at(reply, "result.history_pending"));
    check(is_null(reply, "result.history_error"), "history_error still '%s'",
          str_at(reply, "result.history_error"));
    check(int_at(reply, "result.history_dropped") == 0, "history_dropped %" PRId64,
          int_at(reply, "result.history_dropped"));
    check(daemon_stop(&c, 10000, NULL) == 0, "espdfud did not exit 0");
    /* Nothing lost: the store alone, after the restart, has job 1 as it ended. */
    require(start(&c), "espdfud did not start again");
    json_put(&j);
    j = job(&c, 1);
    check(succeeded(at(j, "result.job")), "job 1 is %s after the restart",
          str_at(j, "result.job.state"));
    check(int_at(j, "result.job.progress.bytes") == (int64_t)(c.len - SUFFIX),
          "progress.bytes %" PRId64, int_at(j, "result.job.progress.bytes"));
    check(daemon_stop(&c, 10000, NULL) == 0, "espdfud did not exit 0");
out:
    if (c.daemon)
        daemon_kill(&c);
    if (mounted && umount2(state, MNT_DETACH) < 0)
        fprintf(stderr, "cannot unmount %s: %s\n", state, g_strerror(errno));
    ctx_done(&c);
}

/* The state dir has a file named jobs.db ending in a "broken-" suffix: its name or NULL. */
static char *broken_db(Ctx *c)
{
    g_autofree char *dir = state_file(c, NULL);
    GDir *d = g_dir_open(dir, 0, NULL);
    const char *name;
    char *found = NULL;

    while (d && !found && (name = g_dir_read_name(d)))
        if (g_str_has_prefix(name, "jobs.db.broken-") && !g_str_has_suffix(name, "-wal") &&
            !g_str_has_suffix(name, "-shm"))
            found = g_strdup(name);
    if (d)
        g_dir_close(d);
    return found;
}

/* Garbage in jobs.db: moved aside, a new store, ids above the Unix time. */
static void case_corrupt_db(void)
{
    g_autofree char *db = NULL, *aside = NULL, *garbage = NULL;
    auto_json status = NULL, j = NULL;
    EmuBoard *b;
    int64_t id;
    Ctx c;

    ctx_init(&c);
    make_state_dir(&c);
    db = state_file(&c, "jobs.db");
    garbage = g_strnfill(65536, 'x');
    for (size_t i = 0; i < 65536; i += 97)
        garbage[i] = (char)(i * 31);
    require(g_file_set_contents(db, garbage, 65536, NULL), "cannot write %s", db);
    write_config(&c, "workers = 4", "path = 9-8");
    require(start(&c), "espdfud did not start on a corrupt jobs.db");
    aside = broken_db(&c);
    check(aside, "no jobs.db.broken-* in the state dir");
    if (aside) {
        g_autofree char *path = state_file(&c, aside);
        g_autofree char *text = NULL;
        gsize n = 0;

        check(g_file_get_contents(path, &text, &n, NULL) && n == 65536 &&
                      memcmp(text, garbage, n) == 0,
              "%s is not the old file", aside);
    }
    status = call(&c, "status", NULL);
    require(status, "status does not answer");
    check(is_null(status, "result.history_error"), "history_error '%s'",
          str_at(status, "result.history_error"));
    b = plug(&c, "1-1", "esp32s2:dfu");
    id = flash(&c, "{\"paths\":[\"1-1\"]}");
    check(id > ID_FLOOR_UNIX, "the first id after the damage is %" PRId64, id);
    j = wait_job(&c, id, "succeeded", 30000);
    check(succeeded(at(j, "result.job")), "job is %s", str_at(j, "result.job.state"));
    check(received_image(&c, b), "not byte-exact");
    check(daemon_stop(&c, 10000, NULL) == 0, "espdfud did not exit 0");
out:
    ctx_done(&c);
}

static char *legacy_record(int64_t id, const char *path, const char *state, double t)
{
    return g_strdup_printf(
            "{\"id\":%" PRId64 ",\"path\":\"%s\",\"source\":\"manual\",\"chip\":\"esp32s3\","
            "\"state\":\"%s\",\"image\":{\"name\":\"dfu.bin\",\"sha256\":\"%064d\",\"size\":1},"
            "\"progress\":{\"bytes\":1,\"total\":1,\"percent\":100,\"rate\":1},"
            "\"created\":%.1f,\"started\":%.1f,\"finished\":%.1f,\"history\":[],\"retries\":0,"
            "\"max_retries\":1,\"timeout_s\":600,\"error\":null}\n",
            id, path, state, (int)id, t, t + 1, t + 2);
}

/* history.jsonl of the previous version: imported once, ids go on above it. */
static void case_import_jsonl(void)
{
    g_autofree char *legacy = NULL, *imported = NULL, *ids = NULL, *want = NULL;
    g_autofree char *r5 = legacy_record(5, "1-1", "succeeded", 1700000000.5);
    g_autofree char *r6 = legacy_record(6, "1-2", "succeeded", 1700000100.5);
    g_autofree char *r9 = legacy_record(9, "1-1", "succeeded", 1700000200.5);
    g_autofree char *text = g_strconcat(r5, r6, "{\"id\":7,\"path\":\"1-1\",\"sta\n", r9, NULL);
    auto_json j6 = NULL, j = NULL;
    EmuBoard *b;
    int64_t id;
    Ctx c;

    ctx_init(&c);
    make_state_dir(&c);
    legacy = state_file(&c, "history.jsonl");
    imported = state_file(&c, "history.jsonl.imported");
    require(g_file_set_contents(legacy, text, -1, NULL), "cannot write %s", legacy);
    write_config(&c, "workers = 4", "path = 9-8");
    require(start(&c), "espdfud did not start");
    j6 = job(&c, 6);
    require(j6, "job 6 does not answer");
    check(int_at(j6, "result.job.id") == 6 && strcmp(str_at(j6, "result.job.path"), "1-2") == 0 &&
                  succeeded(at(j6, "result.job")),
          "job 6: %s", json_object_to_json_string(at(j6, "result.job")));
    ids = history_ids(&c, NULL);
    check(strcmp(ids, "5,6,9") == 0, "history: [%s], want [5,6,9]", ids);
    check(g_file_test(imported, G_FILE_TEST_EXISTS), "no history.jsonl.imported");
    check(!g_file_test(legacy, G_FILE_TEST_EXISTS), "history.jsonl is still there");

    b = plug(&c, "1-1", "esp32s2:dfu");
    id = flash(&c, "{\"paths\":[\"1-1\"]}");
    check(id > 9, "the first new id is %" PRId64, id);
    j = wait_job(&c, id, "succeeded", 30000);
    check(succeeded(at(j, "result.job")), "job is %s", str_at(j, "result.job.state"));
    check(received_image(&c, b), "not byte-exact");
    g_free(ids);
    want = g_strdup_printf("5,6,9,%" PRId64, id);
    ids = wait_history(&c, NULL, want, 5000);
    check(strcmp(ids, want) == 0, "history: [%s], want [%s]", ids, want);
    check(daemon_stop(&c, 10000, NULL) == 0, "espdfud did not exit 0");

    /* Once: a restart does not import it again. */
    require(start(&c), "espdfud did not start again");
    g_free(ids);
    ids = history_ids(&c, NULL);
    check(strcmp(ids, want) == 0, "history after a restart: [%s], want [%s]", ids, want);
    check(daemon_stop(&c, 10000, NULL) == 0, "espdfud did not exit 0");
out:
    ctx_done(&c);
}

/* argv run to its end with ESPDFU_SOCKET pointing nowhere: exit status, stdout (g_free). */
static int run_sync(char **argv, char **out)
{
    g_auto(GStrv) env = g_environ_setenv(g_get_environ(), "ESPDFU_SOCKET", "/nonexistent", TRUE);
    g_autoptr(GError) error = NULL;
    g_autofree char *err = NULL;
    int status = -1;

    *out = NULL;
    if (!g_spawn_sync(NULL, argv, env, G_SPAWN_SEARCH_PATH, NULL, NULL, out, &err, &status,
                      &error)) {
        fprintf(stderr, "cannot run %s: %s\n", argv[0], error->message);
        *out = g_strdup("");
        return -1;
    }
    fprintf(stderr, "$ %s %s ...: %d\n%s%s", argv[0], argv[1], status, *out, err);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static int history_offline(Ctx *c, const char *format, char **out)
{
    g_autofree char *state = state_file(c, NULL);
    char *argv[] = {ESPDFUCTL, "history", "--state-dir", state, "--format", (char *)format, NULL};

    return run_sync(argv, out);
}

/* One line per row, by id: "ID RESULT ERROR_CODE COMMA-IN-MESSAGE", after "header ok". */
static const char csv_reader[] =
        "import csv, sys\n"
        "want = ('id,path,source,chip,result,image_name,image_sha256,image_size,created,started,'\n"
        "        'finished,duration_s,bytes,retries,error_code,error_message,error_phase,'\n"
        "        'error_block,error_offset').split(',')\n"
        "with open(sys.argv[1], newline='') as f:\n"
        "    rows = list(csv.reader(f, strict=True))\n"
        "print('header ok' if rows[0] == want else 'header %r' % rows[0])\n"
        "for r in sorted(rows[1:], key=lambda r: int(r[0])):\n"
        "    d = dict(zip(rows[0], r))\n"
        "    print(len(r), d['id'], d['result'], d['error_code'] or '-', ',' in "
        "d['error_message'])\n";

/* Three finished jobs, the daemon stopped: history from jobs.db alone, as CSV, JSONL, a table. */
static void case_offline_csv(void)
{
    g_autofree char *csv = NULL, *jsonl = NULL, *table = NULL, *rows = NULL, *want = NULL;
    g_autofree char *csv_path = NULL, *ids = NULL;
    g_auto(GStrv) lines = NULL;
    auto_json j = NULL;
    int64_t ok, bad, gone;
    size_t n_lines = 0;
    Ctx c;

    ctx_init(&c);
    write_config(&c, "workers = 4\nwait-timeout-s = 1", "path = 9-8");
    require(start(&c), "espdfud did not start");
    plug(&c, "1-1", "esp32s2:dfu");
    plug(&c, "1-2", "esp32s2:dfu,error-at=5,status=errWRITE");
    ok = flash(&c, "{\"paths\":[\"1-1\"]}");
    j = wait_job(&c, ok, "succeeded", 30000);
    check(succeeded(at(j, "result.job")), "job %" PRId64 " is %s", ok,
          str_at(j, "result.job.state"));
    json_put(&j);
    bad = flash(&c, "{\"paths\":[\"1-2\"],\"retries\":0}");
    j = wait_job(&c, bad, "failed", 30000);
    check(strcmp(str_at(j, "result.job.state"), "failed") == 0, "job %" PRId64 " is %s", bad,
          str_at(j, "result.job.state"));
    json_put(&j);
    gone = flash(&c, "{\"paths\":[\"9-9\"]}");
    j = wait_job(&c, gone, "expired", 15000);
    check(strcmp(str_at(j, "result.job.state"), "expired") == 0, "job %" PRId64 " is %s", gone,
          str_at(j, "result.job.state"));
    require(ok == 1 && bad == 2 && gone == 3, "ids %" PRId64 ", %" PRId64 ", %" PRId64, ok, bad,
            gone);
    ids = wait_history(&c, NULL, "1,2,3", 5000);
    check(strcmp(ids, "1,2,3") == 0, "history: [%s]", ids);
    check(daemon_stop(&c, 10000, NULL) == 0, "espdfud did not exit 0");

    /* Offline. CSV, read back by Python's csv module. */
    require(history_offline(&c, "csv", &csv) == 0, "history --format csv failed");
    csv_path = g_build_filename(c.dir, "history.csv", NULL);
    require(g_file_set_contents(csv_path, csv, -1, NULL), "cannot write %s", csv_path);
    require(run_sync((char *[]){"python3", "-c", (char *)csv_reader, csv_path, NULL}, &rows) == 0,
            "python3 could not read the CSV");
    want = g_strdup("header ok\n19 1 succeeded - False\n19 2 failed dfu-status True\n"
                    "19 3 expired wait-timeout False\n");
    check(strcmp(rows, want) == 0, "the CSV read back:\n%swant:\n%s", rows, want);

    require(history_offline(&c, "jsonl", &jsonl) == 0, "history --format jsonl failed");
    lines = g_strsplit(jsonl, "\n", -1);
    for (size_t i = 0; lines[i]; i++) {
        auto_json o = NULL;

        if (!lines[i][0])
            continue;
        o = json_tokener_parse(lines[i]);
        check(o && int_at(o, "id") == (int64_t)n_lines + 1, "line %zu: %s", i, lines[i]);
        n_lines++;
    }
    check(n_lines == 3 && g_str_has_suffix(jsonl, "}\n"), "%zu JSON lines, want 3", n_lines);

    require(history_offline(&c, "table", &table) == 0, "history --format table failed");
    check(strstr(table, "RESULT") && strstr(table, "succeeded") && strstr(table, "failed") &&
                  strstr(table, "expired"),
          "the table lacks a header or a result");
out:
    ctx_done(&c);
}

static const E2eCase cases[] = {
        {"kill-download", case_kill_download},
        {"kill-waiting", case_kill_waiting},
        {"once-per-plug-restart", case_once_per_plug_restart},
        {"wait-expires", case_wait_expires},
        {"retry-succeeds", case_retry_succeeds},
        {"disk-full", case_disk_full},
        {"corrupt-db", case_corrupt_db},
        {"import-jsonl", case_import_jsonl},
        {"offline-csv", case_offline_csv},
};

int main(int argc, char **argv)
{
    return e2e_main(argc, argv, cases, G_N_ELEMENTS(cases));
}
