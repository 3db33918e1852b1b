/* SPDX-License-Identifier: MIT */
/*
 * The real espdfuctl against the real espdfud under emulated boards
 * (tests/emu/). Each case is one CTest test: e2e-client CASE.
 *
 * espdfud runs under the testbed (emu_spawn: umockdev preload). espdfuctl
 * only talks to the control socket, so it runs outside it, with stdout and
 * stderr in files, while this program keeps iterating the emulator's loop.
 * The socket lives in a 0755 directory and is made 0666 here, so that
 * espdfuctl run as nobody (setpriv) can connect and the daemon's own check
 * (group = adm, which nobody is not in) is what refuses a change.
 */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "e2e-check.h"
#include "emu.h"

#define FIXTURE FIXTURES_DIR "/mkdfu/1/dfu.bin"
#define SUFFIX  16u
#define GROUP   "adm"

typedef struct Ctx {
    Emu *e;
    char *dir, *conf, *log, *sock, *state;
    EmuChild *daemon;
    pid_t pid;
    uint8_t *file;
    size_t len;
    unsigned n_runs;
} Ctx;

/* One espdfuctl run: its exit status (shell style) and what it printed. */
typedef struct Run {
    pid_t pid;
    int status;
    char *out_path, *err_path;
    char *out, *err;
} Run;

static void ctx_init(Ctx *c)
{
    gsize n = 0;
    int r;

    *c = (Ctx){};
    r = emu_new(&c->e);
    if (r < 0) {
        fprintf(stderr, "FAIL: cannot create the umockdev testbed: %s\n", g_strerror(-r));
        exit(1);
    }
    c->dir = g_dir_make_tmp("e2e-client-XXXXXX", NULL);
    if (!c->dir || chmod(c->dir, 0755) < 0 ||
        !g_file_get_contents(FIXTURE, (char **)&c->file, &n, NULL) || n <= SUFFIX) {
        fprintf(stderr, "FAIL: cannot set up %s\n", FIXTURE);
        exit(1);
    }
    c->len = n;
    c->conf = g_build_filename(c->dir, "espdfud.conf", NULL);
    c->log = g_build_filename(c->dir, "espdfud.log", NULL);
    c->sock = g_build_filename(c->dir, "espdfud.sock", NULL);
    c->state = g_build_filename(c->dir, "state", NULL);
    mkdir(c->state, 0700);
}

static void ctx_done(Ctx *c)
{
    e2e_teardown(c->e, c->daemon, c->pid, c->log, c->dir, 0);
    g_free(c->dir);
    g_free(c->conf);
    g_free(c->log);
    g_free(c->sock);
    g_free(c->state);
    g_free(c->file);
}

static EmuBoard *plug(Ctx *c, const char *path, const char *spec)
{
    return e2e_plug(c->e, path, spec);
}

/* No rules: jobs come from espdfuctl flash only. */
static void write_config(Ctx *c, const char *daemon_keys)
{
    g_autofree char *text = g_strdup_printf("[daemon]\ngroup = " GROUP "\n%s\n", daemon_keys);

    if (!g_file_set_contents(c->conf, text, -1, NULL)) {
        fprintf(stderr, "FAIL: cannot write %s\n", c->conf);
        exit(1);
    }
}

static bool socket_ready(void *data)
{
    struct stat st;

    return stat(data, &st) == 0 && S_ISSOCK(st.st_mode);
}

static bool daemon_start(Ctx *c)
{
    char *argv[] = {"/bin/sh",
                    "-c",
                    "exec setpriv --pdeathsig KILL -- \"$0\" \"$@\" 2>>\"$ESPDFU_TEST_LOG\"",
                    ESPDFUD,
                    "--config",
                    c->conf,
                    "--socket",
                    c->sock,
                    "--state-dir",
                    c->state,
                    "--log-level",
                    "debug",
                    NULL};
    g_autofree char *logenv = g_strdup_printf("ESPDFU_TEST_LOG=%s", c->log);
    char *env[] = {logenv, NULL};
    int r;

    r = emu_spawn(c->e, argv, env, false, &c->daemon);
    if (r < 0) {
        fprintf(stderr, "cannot start espdfud: %s\n", g_strerror(-r));
        return false;
    }
    c->pid = emu_child_pid(c->daemon);
    r = emu_wait_listener(c->e, c->pid, 20000);
    if (r < 0 || !emu_iterate_until(c->e, socket_ready, c->sock, 10000)) {
        fprintf(stderr, "espdfud did not come up\n");
        return false;
    }
    /* Reachable for nobody; whether nobody may change things is the daemon's call. */
    return chmod(c->sock, 0666) == 0;
}

static int open_output(Ctx *c, const char *what, char **ret_path)
{
    *ret_path = g_strdup_printf("%s/run%u.%s", c->dir, c->n_runs, what);
    return open(*ret_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
}

/*
 * Start espdfuctl ARGS... (NULL-terminated), as nobody when asked, outside the
 * testbed; its output goes to files in the test directory.
 */
static bool ctl_start(Ctx *c, bool as_nobody, Run *run, const char *const *args)
{
    GPtrArray *argv = g_ptr_array_new();
    g_auto(GStrv) env = g_get_environ();
    g_autoptr(GError) error = NULL;
    int out, err;
    bool ok;

    *run = (Run){.status = -1};
    c->n_runs++;
    if (as_nobody)
        for (const char *const *a =
                     (const char *const[]){"setpriv", "--reuid=nobody", "--regid=nogroup",
                                           "--clear-groups", "--", NULL};
             *a; a++)
            g_ptr_array_add(argv, (char *)*a);
    g_ptr_array_add(argv, ESPDFUCTL);
    for (; *args; args++)
        g_ptr_array_add(argv, (char *)*args);
    g_ptr_array_add(argv, NULL);
    env = g_environ_setenv(env, "ESPDFU_SOCKET", c->sock, TRUE);
    env = g_environ_unsetenv(env, "LD_PRELOAD");
    out = open_output(c, "out", &run->out_path);
    err = open_output(c, "err", &run->err_path);
    ok = g_spawn_async_with_fds(NULL, (char **)argv->pdata, env,
                                G_SPAWN_DO_NOT_REAP_CHILD | G_SPAWN_SEARCH_PATH, NULL, NULL,
                                &run->pid, -1, out, err, &error);
    close(out);
    close(err);
    g_ptr_array_free(argv, TRUE);
    if (!ok)
        fprintf(stderr, "cannot run espdfuctl: %s\n", error->message);
    return ok;
}

static bool ctl_exited(void *data)
{
    Run *run = data;
    int st;

    if (waitpid(run->pid, &st, WNOHANG) != run->pid)
        return false;
    run->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return true;
}

static void ctl_read_output(Run *run)
{
    g_free(run->out);
    g_free(run->err);
    if (!g_file_get_contents(run->out_path, &run->out, NULL, NULL))
        run->out = g_strdup("");
    if (!g_file_get_contents(run->err_path, &run->err, NULL, NULL))
        run->err = g_strdup("");
}

/* Wait for a started espdfuctl (killing it after timeout_ms); its exit status. */
static int ctl_wait(Ctx *c, Run *run, int timeout_ms)
{
    if (!emu_iterate_until(c->e, ctl_exited, run, timeout_ms)) {
        kill(run->pid, SIGKILL);
        waitpid(run->pid, NULL, 0);
        run->status = -1;
        fprintf(stderr, "espdfuctl did not exit within %d ms\n", timeout_ms);
    }
    ctl_read_output(run);
    fprintf(stderr, "espdfuctl exited %d\n--- stdout:\n%s--- stderr:\n%s---\n", run->status,
            run->out, run->err);
    return run->status;
}

static void run_done(Run *run)
{
    g_free(run->out_path);
    g_free(run->err_path);
    g_free(run->out);
    g_free(run->err);
    *run = (Run){};
}

/* Run espdfuctl to its end (30 s at most); the exit status, output in *run. */
#define ctl(c, nobody, run, ...)                                               \
    (ctl_start((c), (nobody), (run), (const char *const[]){__VA_ARGS__, NULL}) \
             ? ctl_wait((c), (run), 30000)                                     \
             : -1)

static bool received_image(Ctx *c, EmuBoard *b)
{
    return e2e_received(b, c->file, c->len);
}

static EmuBoardInfo info_of(EmuBoard *b)
{
    return e2e_info(b);
}

/* The state of job id in `jobs --json`, "" when absent; g_free it. */
static char *job_state(Ctx *c, long id, size_t *ret_n_jobs)
{
    json_object *root, *jobs, *v;
    char *state = g_strdup("");
    Run run;

    if (ctl(c, false, &run, "jobs", "--json") != 0) {
        run_done(&run);
        return state;
    }
    root = json_tokener_parse(run.out);
    if (json_object_object_get_ex(root, "jobs", &jobs)) {
        if (ret_n_jobs)
            *ret_n_jobs = json_object_array_length(jobs);
        for (size_t i = 0; i < json_object_array_length(jobs); i++) {
            json_object *j = json_object_array_get_idx(jobs, i);

            if (json_object_object_get_ex(j, "id", &v) && json_object_get_int64(v) == id &&
                json_object_object_get_ex(j, "state", &v)) {
                g_free(state);
                state = g_strdup(json_object_get_string(v));
            }
        }
    }
    json_object_put(root);
    run_done(&run);
    return state;
}

static int daemon_stop(Ctx *c)
{
    int status = -1, r;

    kill(c->pid, SIGTERM);
    r = emu_wait_child(c->e, c->daemon, 10000, &status, NULL);
    c->daemon = NULL;
    return r < 0 ? -1 : status;
}

/* A string at a dotted path ("records.0.image.sha256") in a JSON text; g_free it. */
static char *json_at(const char *text, const char *dotted)
{
    json_object *root = json_tokener_parse(text), *o = root;
    g_auto(GStrv) keys = g_strsplit(dotted, ".", -1);
    char *s;

    for (char **k = keys; *k && o; k++)
        if (json_object_is_type(o, json_type_array))
            o = json_object_array_get_idx(o, strtoul(*k, NULL, 10));
        else if (!json_object_object_get_ex(o, *k, &o))
            o = NULL;
    s = g_strdup(o ? json_object_get_string(o) : "");
    json_object_put(root);
    return s;
}

/* ---- cases ---- */

/* flash --wait: byte-exact, exit 0, then status, devices, jobs and job agree. */
static void case_flash_wait(void)
{
    g_autofree char *state = NULL;
    EmuBoard *b;
    Run run = {};
    Ctx c;

    ctx_init(&c);
    write_config(&c, "workers = 4");
    require(daemon_start(&c), "espdfud did not start");
    b = plug(&c, "1-1", "esp32s2:dfu");
    check(ctl(&c, false, &run, "flash", FIXTURE, "--path", "1-1", "--wait") == 0,
          "flash --wait did not exit 0");
    check(strstr(run.out, "job 1 [1-1] ok in "), "no success line");
    check(strstr(run.out, "job 1 [1-1] downloading"), "no downloading line");
    check(received_image(&c, b), "the board did not receive the image byte-exact");
    check(info_of(b).dfu.attempts == 1, "attempts %u", info_of(b).dfu.attempts);
    run_done(&run);
    check(ctl(&c, false, &run, "status") == 0, "status failed");
    check(strstr(run.out, "OK: 1\n") && strstr(run.out, "Boards: 1\n"), "status wrong");
    run_done(&run);
    check(ctl(&c, false, &run, "devices") == 0, "devices failed");
    check(strstr(run.out, "PATH") && strstr(run.out, "1-1") && strstr(run.out, "esp32s2"),
          "devices has no 1-1 row");
    run_done(&run);
    check(ctl(&c, false, &run, "jobs") == 0, "jobs failed");
    check(strstr(run.out, "succeeded") && strstr(run.out, "dfu.bin"), "jobs has no result");
    run_done(&run);
    check(ctl(&c, false, &run, "job", "1") == 0, "job 1 failed");
    check(strstr(run.out, "History:") && strstr(run.out, "succeeded"), "job 1 has no history");
    run_done(&run);
    check(ctl(&c, false, &run, "watch", "--once") == 0, "watch --once failed");
    check(strstr(run.out, "1-1") && strstr(run.out, "ok in"), "watch --once has no result");
    run_done(&run);
    state = job_state(&c, 1, NULL);
    check(strcmp(state, "succeeded") == 0, "jobs --json says %s", state);
out:
    run_done(&run);
    ctx_done(&c);
}

/* The history outlives a restart: records, `job 1`, and ids that never repeat. */
static void case_history(void)
{
    g_autofree char *sha = NULL, *got = NULL;
    Run run = {};
    Ctx c;

    ctx_init(&c);
    write_config(&c, "workers = 4");
    require(daemon_start(&c), "espdfud did not start");
    plug(&c, "1-1", "esp32s2:dfu");
    check(ctl(&c, false, &run, "flash", FIXTURE, "--path", "1-1", "--wait") == 0,
          "flash --wait did not exit 0");
    run_done(&run);
    check(ctl(&c, false, &run, "job", "1", "--json") == 0, "job 1 failed");
    sha = json_at(run.out, "job.image.sha256");
    check(strlen(sha) == 64, "job 1 has no sha256: '%s'", sha);
    run_done(&run);
    check(daemon_stop(&c) == 0, "espdfud did not exit 0 at SIGTERM");
    require(daemon_start(&c), "espdfud did not start again");
    check(ctl(&c, false, &run, "history", "--json") == 0, "history failed");
    got = json_at(run.out, "records.0.image.sha256");
    check(strcmp(got, sha) == 0, "history sha256 '%s', want '%s'", got, sha);
    g_free(got);
    got = json_at(run.out, "records.0.path");
    check(strcmp(got, "1-1") == 0, "history path '%s'", got);
    g_free(got);
    got = json_at(run.out, "records.0.state");
    check(strcmp(got, "succeeded") == 0, "history state '%s'", got);
    g_free(got);
    got = json_at(run.out, "records.1.id");
    check(got[0] == '\0', "more than one record: job %s", got);
    run_done(&run);
    check(ctl(&c, false, &run, "history", "--result", "failed") == 0, "history --result failed");
    check(strstr(run.out, "No finished jobs recorded."), "a failed job appeared");
    run_done(&run);
    check(ctl(&c, false, &run, "history", "--since", "2000-01-01") == 0, "history --since");
    sha[12] = '\0'; /* the table shows a prefix of the sha256 */
    check(strstr(run.out, "RESULT") && strstr(run.out, "succeeded") && strstr(run.out, sha),
          "history table");
    run_done(&run);
    check(ctl(&c, false, &run, "jobs") == 0, "jobs failed");
    check(strstr(run.out, "succeeded") && strstr(run.out, "dfu.bin"), "jobs forgot job 1");
    run_done(&run);
    check(ctl(&c, false, &run, "job", "1") == 0, "job 1 failed after the restart");
    check(strstr(run.out, "Job 1 on 1-1") && strstr(run.out, "State: succeeded"), "job 1 wrong");
    run_done(&run);
    check(ctl(&c, false, &run, "flash", FIXTURE, "--path", "1-1", "--wait") == 0,
          "the second flash did not exit 0");
    check(strstr(run.out, "job 2 [1-1] ok in "), "the new job is not job 2");
    run_done(&run);
    check(ctl(&c, false, &run, "history", "--limit", "1", "--json") == 0, "history --limit");
    g_free(got);
    got = json_at(run.out, "records.0.id");
    check(strcmp(got, "2") == 0, "newest record is job %s", got);
out:
    run_done(&run);
    ctx_done(&c);
}

/* errWRITE on every attempt, no retries: exit 6 with the error text. */
static void case_flash_fail(void)
{
    Run run = {};
    Ctx c;

    ctx_init(&c);
    write_config(&c, "workers = 4");
    require(daemon_start(&c), "espdfud did not start");
    plug(&c, "1-1", "esp32s2:dfu,error-at=5,status=errWRITE");
    check(ctl(&c, false, &run, "flash", FIXTURE, "--path", "1-1", "--retries", "0", "--wait") == 6,
          "a failed job did not exit 6");
    check(strstr(run.err, "job 1 [1-1] failed: ") && strstr(run.err, "errWRITE"),
          "the error text is not printed");
    run_done(&run);
    check(ctl(&c, false, &run, "job", "1") == 0, "job 1 failed");
    check(strstr(run.out, "Error: ") && strstr(run.out, "DFU status errWRITE"),
          "job 1 does not show the error");
out:
    run_done(&run);
    ctx_done(&c);
}

static bool file_has(Ctx *c, const char *path, const char *needle)
{
    g_autofree char *text = NULL;

    return g_file_get_contents(path, &text, NULL, NULL) && strstr(text, needle);
}

typedef struct FileWait {
    Ctx *c;
    const char *path, *needle;
} FileWait;

static bool file_wait_done(void *data)
{
    FileWait *w = data;

    return file_has(w->c, w->path, w->needle);
}

static bool wait_file(Ctx *c, const char *path, const char *needle, int timeout_ms)
{
    FileWait w = {c, path, needle};

    return emu_iterate_until(c->e, file_wait_done, &w, timeout_ms);
}

/* The event names of a watch --json output, in order, one per line. */
static GString *event_names(const char *out)
{
    g_auto(GStrv) lines = g_strsplit(out, "\n", -1);
    GString *names = g_string_new(NULL);

    for (size_t i = 0; lines[i]; i++) {
        json_object *o = json_tokener_parse(lines[i]), *v, *d, *s;

        if (!o)
            continue;
        if (json_object_object_get_ex(o, "event", &v))
            g_string_append_printf(names, "%s", json_object_get_string(v));
        if (json_object_object_get_ex(o, "data", &d) && json_object_object_get_ex(d, "state", &s))
            g_string_append_printf(names, ":%s", json_object_get_string(s));
        g_string_append_c(names, '\n');
        json_object_put(o);
    }
    return names;
}

/* watch --json, started before the flash: the job's events in order. */
static void case_watch_json(void)
{
    g_autoptr(GString) names = NULL;
    const char *q, *s, *p, *f;
    Run watch = {}, run = {};
    Ctx c;

    ctx_init(&c);
    write_config(&c, "workers = 4");
    require(daemon_start(&c), "espdfud did not start");
    require(ctl_start(&c, false, &watch, (const char *const[]){"watch", "--json", NULL}),
            "watch did not start");
    /* A board plugged after watch started: its event proves the subscription. */
    plug(&c, "1-1", "esp32s2:dfu,poll=10");
    require(wait_file(&c, watch.out_path, "device.added", 10000), "watch saw no device.added");
    check(ctl(&c, false, &run, "flash", FIXTURE, "--path", "1-1") == 0, "flash failed");
    check(strstr(run.out, "job 1 queued"), "no job id printed");
    require(wait_file(&c, watch.out_path, "job.finished", 30000), "watch saw no job.finished");
    kill(watch.pid, SIGINT);
    check(ctl_wait(&c, &watch, 10000) == 0, "watch did not exit 0 on SIGINT");
    names = event_names(watch.out);
    fprintf(stderr, "events:\n%s", names->str);
    q = strstr(names->str, "job.queued:");
    s = strstr(names->str, "job.started:");
    p = strstr(names->str, "job.progress:downloading");
    f = strstr(names->str, "job.finished:succeeded");
    check(q && s && p && f && q < s && s < p && p < f, "events out of order or missing");
out:
    if (watch.pid > 0 && watch.status == -1) {
        kill(watch.pid, SIGKILL);
        waitpid(watch.pid, NULL, 0);
    }
    run_done(&watch);
    run_done(&run);
    ctx_done(&c);
}

static bool some_blocks(void *data)
{
    EmuBoardInfo i = info_of(data);

    return i.has_model && i.dfu.requests > 40;
}

/* cancel on a running job (50 ms per block: ~8 s): jobs --json then says cancelled. */
static void case_cancel(void)
{
    g_autofree char *state = NULL;
    EmuBoard *b;
    Run run = {};
    Ctx c;

    ctx_init(&c);
    write_config(&c, "workers = 4");
    require(daemon_start(&c), "espdfud did not start");
    b = plug(&c, "1-1", "esp32s2:dfu,poll=50");
    check(ctl(&c, false, &run, "flash", FIXTURE, "--path", "1-1") == 0, "flash failed");
    run_done(&run);
    require(emu_iterate_until(c.e, some_blocks, b, 20000), "the download did not start");
    check(ctl(&c, false, &run, "cancel", "1") == 0, "cancel did not exit 0");
    run_done(&run);
    for (int i = 0; i < 50; i++) {
        g_free(state);
        state = job_state(&c, 1, NULL);
        if (strcmp(state, "cancelled") == 0)
            break;
        emu_iterate(c.e, 100);
    }
    check(strcmp(state, "cancelled") == 0, "job 1 is %s", state);
    check(info_of(b).dfu.downloads_ok == 0, "the download completed anyway");
    check(ctl(&c, false, &run, "job", "1") == 0, "job 1 failed");
    check(strstr(run.out, "State: cancelled"), "job 1 does not say cancelled");
out:
    run_done(&run);
    ctx_done(&c);
}

/* A job for an empty port waits for the next board plugged there, then flashes it. */
static void case_empty_port(void)
{
    g_autofree char *state = NULL;
    EmuBoard *b;
    Run run = {};
    Ctx c;

    ctx_init(&c);
    write_config(&c, "workers = 4");
    require(daemon_start(&c), "espdfud did not start");
    check(ctl(&c, false, &run, "flash", FIXTURE, "--path", "1-5") == 0, "flash failed");
    run_done(&run);
    state = job_state(&c, 1, NULL);
    check(strcmp(state, "waiting-for-board") == 0, "job 1 is %s before the plug", state);
    b = plug(&c, "1-5", "esp32s2:runtime");
    for (int i = 0; i < 150 && strcmp(state, "succeeded") != 0; i++) {
        emu_iterate(c.e, 100);
        g_free(state);
        state = job_state(&c, 1, NULL);
    }
    check(strcmp(state, "succeeded") == 0, "job 1 is %s after the plug", state);
    check(received_image(&c, b), "the board plugged later did not receive the image");
out:
    run_done(&run);
    ctx_done(&c);
}

/*
 * Socket activation, as espdfud.socket does it: systemd-socket-activate owns
 * the listening socket and starts espdfud (passing it with LISTEN_FDS) when
 * the first client connects.
 */
static void case_socket_activation(void)
{
    char *argv[] = {"systemd-socket-activate",
                    "-l",
                    NULL, /* the socket */
                    "-E",
                    "LD_PRELOAD",
                    "-E",
                    "UMOCKDEV_DIR",
                    "-E",
                    "ASAN_OPTIONS",
                    "-E",
                    "UBSAN_OPTIONS",
                    ESPDFUD,
                    "--config",
                    NULL, /* the config */
                    "--state-dir",
                    NULL, /* the state dir */
                    NULL};
    EmuBoard *b;
    Run run = {};
    Ctx c;
    int r;

    ctx_init(&c);
    write_config(&c, "socket = /nonexistent/not-used-when-activated.sock");
    argv[2] = c.sock;
    argv[13] = c.conf;
    argv[15] = c.state;
    b = plug(&c, "1-1", "esp32s2:dfu");
    r = emu_spawn(c.e, argv, NULL, false, &c.daemon);
    require(r == 0, "cannot run systemd-socket-activate: %s", g_strerror(-r));
    c.pid = emu_child_pid(c.daemon);
    require(emu_iterate_until(c.e, socket_ready, c.sock, 10000), "no socket");
    /* The first connection starts espdfud; it answers on the socket it was given. */
    check(ctl(&c, false, &run, "devices") == 0, "devices through the activated socket failed");
    check(strstr(run.out, "1-1") && strstr(run.out, "esp32s2"), "no board 1-1 in: %s", run.out);
    run_done(&run);
    check(ctl(&c, false, &run, "flash", FIXTURE, "--path", "1-1", "--wait") == 0,
          "flash --wait through the activated socket failed");
    check(received_image(&c, b), "the board did not receive the image byte-exact");
out:
    run_done(&run);
    ctx_done(&c);
}

/* nobody: may read (devices, jobs), may not flash (exit 4, the group named). */
static void case_unprivileged(void)
{
    size_t n_jobs = 99;
    g_autofree char *state = NULL;
    EmuBoard *b;
    Run run = {};
    Ctx c;

    ctx_init(&c);
    write_config(&c, "workers = 4");
    require(daemon_start(&c), "espdfud did not start");
    b = plug(&c, "1-1", "esp32s2:dfu");
    check(ctl(&c, true, &run, "devices") == 0, "devices as nobody did not exit 0");
    check(strstr(run.out, "1-1"), "devices as nobody shows no board");
    run_done(&run);
    check(ctl(&c, true, &run, "jobs") == 0, "jobs as nobody did not exit 0");
    run_done(&run);
    check(ctl(&c, true, &run, "flash", FIXTURE, "--path", "1-1") == 4,
          "flash as nobody did not exit 4");
    check(strstr(run.err, "\"" GROUP "\""), "the refusal does not name the group");
    run_done(&run);
    check(ctl(&c, true, &run, "pause") == 4, "pause as nobody did not exit 4");
    run_done(&run);
    state = job_state(&c, 1, &n_jobs);
    check(n_jobs == 0, "%zu jobs queued", n_jobs);
    check(info_of(b).dfu.attempts == 0, "the board was flashed");
out:
    run_done(&run);
    ctx_done(&c);
}

/* An image nobody cannot read: refused locally, exit 1, nothing sent or queued. */
static void case_unreadable(void)
{
    g_autofree char *secret = NULL, *state = NULL;
    size_t n_jobs = 99;
    Run run = {};
    Ctx c;

    ctx_init(&c);
    write_config(&c, "workers = 4");
    secret = g_build_filename(c.dir, "secret.bin", NULL);
    require(g_file_set_contents(secret, (char *)c.file, (gssize)c.len, NULL) &&
                    chmod(secret, 0600) == 0,
            "cannot write %s", secret);
    require(daemon_start(&c), "espdfud did not start");
    plug(&c, "1-1", "esp32s2:dfu");
    check(ctl(&c, true, &run, "flash", secret, "--path", "1-1") == 1,
          "an unreadable image did not exit 1");
    check(strstr(run.err, "cannot open: Permission denied"), "no clear message");
    run_done(&run);
    state = job_state(&c, 1, &n_jobs);
    check(n_jobs == 0, "%zu jobs queued", n_jobs);
out:
    run_done(&run);
    ctx_done(&c);
}

/* No daemon: exit 3 with the hint. Unknown job: exit 5. Usage: exit 2. */
static void case_errors(void)
{
    Run run = {};
    Ctx c;

    ctx_init(&c);
    check(ctl(&c, false, &run, "status") == 3, "status without a daemon did not exit 3");
    check(strstr(run.err, "cannot connect to ") &&
                  strstr(run.err, "is espdfud running? (systemctl status espdfud)"),
          "no hint");
    run_done(&run);
    write_config(&c, "workers = 4");
    require(daemon_start(&c), "espdfud did not start");
    check(ctl(&c, false, &run, "job", "999") == 5, "an unknown job did not exit 5");
    run_done(&run);
    check(ctl(&c, false, &run, "cancel", "999") == 5, "cancelling an unknown job did not exit 5");
    run_done(&run);
    check(ctl(&c, false, &run, "job", "x") == 2, "a bad id did not exit 2");
    run_done(&run);
    check(ctl(&c, false, &run, "flash", FIXTURE, "--path", "1-1", "--all") == 2,
          "--path with --all did not exit 2");
    run_done(&run);
    check(ctl(&c, false, &run, "status", "--json") == 0, "status --json failed");
    check(strstr(run.out, "\"protocol\": 2"), "status --json is not the result");
    run_done(&run);
    check(ctl(&c, false, &run, "pause") == 0 && strstr(run.out, "paused"), "pause failed");
    run_done(&run);
    check(ctl(&c, false, &run, "status") == 0 && strstr(run.out, "Auto-flash: paused"),
          "status does not show paused");
    run_done(&run);
    check(ctl(&c, false, &run, "resume") == 0, "resume failed");
    run_done(&run);
    check(ctl(&c, false, &run, "reload") == 0, "reload failed");
out:
    run_done(&run);
    ctx_done(&c);
}

static const E2eCase cases[] = {
        {"flash-wait", case_flash_wait}, {"history", case_history},
        {"flash-fail", case_flash_fail}, {"watch-json", case_watch_json},
        {"cancel", case_cancel},         {"unprivileged", case_unprivileged},
        {"unreadable", case_unreadable}, {"errors", case_errors},
        {"empty-port", case_empty_port}, {"socket-activation", case_socket_activation},
};

int main(int argc, char **argv)
{
    return e2e_main(argc, argv, cases, G_N_ELEMENTS(cases));
}
