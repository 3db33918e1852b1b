/* SPDX-License-Identifier: MIT */
/*
 * The real espdfud binary against emulated boards (tests/emu/). Each case is
 * one CTest test: e2e-daemon CASE.
 *
 * Until the control socket exists the daemon is observed from outside: what
 * each board received (byte-exact, validated, attempts), and the daemon's
 * stderr lines, which go to a file this program reads while it iterates the
 * emulator's main loop.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "e2e-daemon-harness.h"

static char *read_log(Ctx *c)
{
    char *log = NULL;

    if (!g_file_get_contents(c->log, &log, NULL, NULL))
        return g_strdup("");
    return log;
}

static unsigned log_count(Ctx *c, const char *needle)
{
    g_autofree char *log = read_log(c);
    unsigned n = 0;

    for (const char *p = log; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

typedef struct LogWait {
    Ctx *c;
    const char *needle;
    unsigned count;
} LogWait;

static bool log_has(void *data)
{
    LogWait *w = data;

    return log_count(w->c, w->needle) >= w->count;
}

/* Iterate the emulator until the log holds needle count times. */
static bool wait_log_n(Ctx *c, const char *needle, unsigned count, int timeout_ms)
{
    LogWait w = {.c = c, .needle = needle, .count = count};
    bool ok = wait_until(c, log_has, &w, timeout_ms);

    if (!ok)
        fprintf(stderr, "no %u x \"%s\" in espdfud's log after %d ms\n", count, needle, timeout_ms);
    return ok;
}

static bool wait_log(Ctx *c, const char *needle, int timeout_ms)
{
    return wait_log_n(c, needle, 1, timeout_ms);
}

typedef struct Boards {
    EmuBoard **b;
    size_t n;
    unsigned downloads; /* each board needs at least this many downloads_ok */
} Boards;

static bool boards_flashed(void *data)
{
    Boards *w = data;

    for (size_t i = 0; i < w->n; i++) {
        EmuBoardInfo info;

        emu_board_info(w->b[i], &info);
        if (!info.has_model || info.dfu.downloads_ok < w->downloads || !info.dfu.validated)
            return false;
    }
    return true;
}

static bool wait_flashed(Ctx *c, EmuBoard **b, size_t n, int timeout_ms)
{
    Boards w = {.b = b, .n = n, .downloads = 1};

    return wait_until(c, boards_flashed, &w, timeout_ms);
}

/* ---- cases ---- */

/* One board plugged while espdfud runs: flashed byte-exact, SIGTERM exits 0. */
static void case_one(void)
{
    Ctx c;
    EmuBoard *b;
    double ms;

    ctx_init(&c);
    write_config(&c, "workers = 4", "");
    require(daemon_start(&c), "espdfud did not start");
    b = plug(&c, "1-1", "esp32s2:dfu");
    require(wait_flashed(&c, &b, 1, 30000), "1-1 not flashed");
    check(received_image(&c, b), "1-1 did not receive the image byte-exact");
    check(info_of(b).dfu.attempts == 1, "attempts %u", info_of(b).dfu.attempts);
    /* The engine waits out every bwPollTimeout, also as a worker of the daemon. */
    check(info_of(b).dfu.early_polls == 0, "early polls %u", info_of(b).dfu.early_polls);
    check(info_of(b).opens == 1, "opens %u: one open per request", info_of(b).opens);
    check(wait_log(&c, "[1-1] job 1: flashed 10240 bytes in", 5000), "no success line");
    pause_ms(&c, 1500);
    check(strstr(notify_messages(&c), "READY=1\n"), "no READY=1");
    check(strstr(notify_messages(&c), "STATUS=1 board, 0 flashing, 0 queued, 1 ok, 0 failed\n"),
          "no STATUS= with the result");
    check(strstr(notify_messages(&c), "WATCHDOG=1\n"), "no WATCHDOG=1");
    check(daemon_stop(&c, 10000, &ms) == 0, "espdfud did not exit 0");
    check(strstr(notify_messages(&c), "STOPPING=1\n"), "no STOPPING=1");
out:
    ctx_done(&c);
}

static double seconds_until_flashed(Ctx *c, EmuBoard **b, size_t n)
{
    int64_t t0 = g_get_monotonic_time();

    if (!wait_flashed(c, b, n, 120000))
        return -1;
    return (double)(g_get_monotonic_time() - t0) / 1e6;
}

/*
 * One board, then eight at once, each taking ~4 s: bwPollTimeout 20 ms per
 * 64-byte block keeps the testbed's total (~1,100 control transfers/s) well
 * under its capacity (docs/emulator.md, "Measured").
 * In parallel, eight take far less than eight times one.
 */
static void case_eight(void)
{
    static const char *const paths[] = {"1-2",   "1-3",   "1-4",   "1-5.1",
                                        "1-5.2", "1-5.3", "1-5.4", "2-1"};
    const char *spec = "esp32s2:dfu,poll=20";
    EmuBoard *one, *eight[8];
    double t1, t8;
    Ctx c;

    ctx_init(&c);
    write_config(&c, "workers = 32", "");
    require(daemon_start(&c), "espdfud did not start");
    one = plug(&c, "1-1", spec);
    t1 = seconds_until_flashed(&c, &one, 1);
    require(t1 > 0, "the single board was not flashed");
    for (size_t i = 0; i < 8; i++)
        eight[i] = plug(&c, paths[i], spec);
    t8 = seconds_until_flashed(&c, eight, 8);
    require(t8 > 0, "the eight boards were not all flashed");
    fprintf(stderr, "1 board: %.2f s; 8 boards in parallel: %.2f s (%.2fx)\n", t1, t8, t8 / t1);
    check(received_image(&c, one), "1-1 not byte-exact");
    for (size_t i = 0; i < 8; i++) {
        check(received_image(&c, eight[i]), "%s not byte-exact", paths[i]);
        check(info_of(eight[i]).dfu.attempts == 1, "%s: attempts %u", paths[i],
              info_of(eight[i]).dfu.attempts);
    }
    /* Behaviour, not performance: serial would be 8x; parallel must be well under. */
    check(t8 < 4 * t1, "8 boards took %.2f s, one took %.2f s", t8, t1);
    check(daemon_stop(&c, 10000, NULL) == 0, "espdfud did not exit 0");
out:
    ctx_done(&c);
}

/* Boards present before espdfud starts (a DFU one and a run-time one) are flashed. */
static void case_coldplug(void)
{
    EmuBoard *b[2];
    Ctx c;

    ctx_init(&c);
    write_config(&c, "workers = 4", "");
    b[0] = plug(&c, "1-1", "esp32s2:dfu");
    b[1] = plug(&c, "1-2", "esp32s2:runtime");
    require(daemon_start(&c), "espdfud did not start");
    require(wait_flashed(&c, b, 2, 30000), "coldplugged boards not flashed");
    check(received_image(&c, b[0]) && received_image(&c, b[1]), "not byte-exact");
    check(wait_log(&c, "2 boards present", 1000), "the ready line does not count them");
    check(daemon_stop(&c, 10000, NULL) == 0, "espdfud did not exit 0");
out:
    ctx_done(&c);
}

/* A run-time board: detached, re-enumerated on the same path, flashed, all as job 1. */
static void case_runtime(void)
{
    EmuBoard *b;
    EmuBoardInfo i;
    Ctx c;

    ctx_init(&c);
    write_config(&c, "workers = 4", "");
    require(daemon_start(&c), "espdfud did not start");
    b = plug(&c, "1-1", "esp32s2:runtime");
    require(wait_flashed(&c, &b, 1, 30000), "the run-time board was not flashed");
    require(wait_log(&c, "job 1: flashed", 5000), "no success line for job 1");
    pause_ms(&c, 1000);
    i = info_of(b);
    check(received_image(&c, b), "not byte-exact");
    check(i.detaches == 1 && i.enumerations == 2, "detaches %u enumerations %u", i.detaches,
          i.enumerations);
    check(i.dfu.attempts == 1, "attempts %u", i.dfu.attempts);
    check(log_count(&c, "job 1: detaching") == 1, "job 1 did not detach once");
    check(log_count(&c, "job 1: waiting-for-replug") == 1, "job 1 did not wait for the replug");
    check(log_count(&c, "job 1: downloading: board re-enumerated in DFU mode") == 1,
          "job 1 did not continue after the replug");
    check(log_count(&c, "job 2") == 0, "a second job was queued for the same plug");
    check(daemon_stop(&c, 10000, NULL) == 0, "espdfud did not exit 0");
out:
    ctx_done(&c);
}

/* A flashed board left on its port is not flashed again; unplug and replug is a new plug. */
static void case_once_per_plug(void)
{
    EmuBoard *b;
    Ctx c;

    ctx_init(&c);
    write_config(&c, "workers = 4", "");
    require(daemon_start(&c), "espdfud did not start");
    b = plug(&c, "1-1", "esp32s2:dfu");
    require(wait_log(&c, "[1-1] job 1: flashed", 30000), "not flashed");
    pause_ms(&c, 3000);
    check(log_count(&c, "queued by rule") == 1, "queued again while still plugged");
    check(info_of(b).dfu.attempts == 1, "attempts %u", info_of(b).dfu.attempts);
    require(emu_board_unplug(b) == 0, "unplug");
    require(wait_log(&c, "[1-1] board left", 5000), "the unplug was not seen");
    require(emu_board_replug(b, EMU_MODE_DFU) == 0, "replug");
    require(wait_log(&c, "[1-1] job 2: flashed", 30000), "not flashed after the replug");
    check(received_image(&c, b), "not byte-exact after the replug");
    check(log_count(&c, "queued by rule") == 2, "%u jobs queued, want 2",
          log_count(&c, "queued by rule"));
    check(daemon_stop(&c, 10000, NULL) == 0, "espdfud did not exit 0");
out:
    ctx_done(&c);
}

static bool board_gone(void *data)
{
    return !info_of(data).plugged;
}

/* A board unplugged mid-download fails its job at once; the board next to it is flashed. */
static void case_unplug(void)
{
    EmuBoard *gone, *other;
    int64_t t0;
    double ms;
    Ctx c;

    ctx_init(&c);
    write_config(&c, "workers = 4", "");
    require(daemon_start(&c), "espdfud did not start");
    gone = plug(&c, "1-1", "esp32s2:dfu,poll=5,unplug-at=80");
    other = plug(&c, "1-2", "esp32s2:dfu,poll=5");
    require(wait_until(&c, board_gone, gone, 30000), "1-1 never unplugged itself");
    t0 = g_get_monotonic_time();
    require(wait_log(&c, "[1-1] job 1: failed: board disconnected", 5000),
            "no disconnect failure for 1-1");
    ms = (double)(g_get_monotonic_time() - t0) / 1000.0;
    fprintf(stderr, "unplug to failed job: %.0f ms\n", ms);
    check(ms < 1000, "the failure came %.0f ms after the unplug", ms);
    check(wait_log(&c, "during download at", 100), "the failure does not say where");
    check(wait_log(&c, "[disconnected]", 100), "the failure has no error code");
    require(wait_flashed(&c, &other, 1, 30000), "1-2 was not flashed");
    check(received_image(&c, other), "1-2 not byte-exact");
    check(log_count(&c, "retrying") == 0, "a disconnect was retried");
    check(daemon_stop(&c, 10000, NULL) == 0, "espdfud did not exit 0");
out:
    ctx_done(&c);
}

/* The board answers errWRITE on every attempt: one retry, then failed with the status. */
static void case_error_status(void)
{
    EmuBoard *b;
    Ctx c;

    ctx_init(&c);
    write_config(&c, "workers = 4\nretries = 1", "");
    require(daemon_start(&c), "espdfud did not start");
    b = plug(&c, "1-1", "esp32s2:dfu,error-at=20,status=errWRITE");
    require(wait_log(&c, "[1-1] job 1: failed: ", 30000), "the job did not fail");
    check(wait_log(&c, "retrying (1 of 1)", 100), "no retry");
    check(wait_log(&c, "errWRITE", 100), "the failure does not name the DFU status");
    check(wait_log(&c, "[dfu-status]", 100), "the failure has no error code");
    check(info_of(b).dfu.attempts == 2, "attempts %u, want 2", info_of(b).dfu.attempts);
    check(info_of(b).dfu.downloads_ok == 0, "a download succeeded");
    pause_ms(&c, 1500);
    check(info_of(b).dfu.attempts == 2, "flashed again after failing: attempts %u",
          info_of(b).dfu.attempts);
    check(daemon_stop(&c, 10000, NULL) == 0, "espdfud did not exit 0");
out:
    ctx_done(&c);
}

/* A fault on the first attempt only: the retry succeeds. */
static void case_retry(void)
{
    EmuBoard *b;
    Ctx c;

    ctx_init(&c);
    write_config(&c, "workers = 4\nretries = 2", "");
    require(daemon_start(&c), "espdfud did not start");
    b = plug(&c, "1-1", "esp32s2:dfu,error-at=20,status=errWRITE,fault-attempts=1");
    require(wait_log(&c, "[1-1] job 1: flashed", 30000), "the retry did not succeed");
    check(log_count(&c, "retrying (1 of 2)") == 1, "no retry logged");
    check(received_image(&c, b), "not byte-exact");
    check(info_of(b).dfu.attempts == 2, "attempts %u, want 2", info_of(b).dfu.attempts);
    check(daemon_stop(&c, 10000, NULL) == 0, "espdfud did not exit 0");
out:
    ctx_done(&c);
}

/* The board stops answering: the job fails at job-timeout-s, and SIGTERM still exits 0. */
static void case_job_timeout(void)
{
    EmuBoard *b;
    double ms;
    Ctx c;

    ctx_init(&c);
    write_config(&c, "workers = 4\njob-timeout-s = 2\ntransfer-timeout-ms = 4000\nretries = 0", "");
    require(daemon_start(&c), "espdfud did not start");
    b = plug(&c, "1-1", "esp32s2:dfu,hang-at=10");
    require(wait_log(&c, "[1-1] job 1: failed: job timed out after 2 s, during download at", 15000),
            "no job timeout");
    check(wait_log(&c, "[job-timeout]", 100), "no job-timeout code");
    check(info_of(b).dfu.downloads_ok == 0, "a download succeeded");
    check(daemon_stop(&c, 10000, &ms) == 0, "espdfud did not exit 0");
    check(ms < 7000, "stopping took %.0f ms", ms);
out:
    ctx_done(&c);
}

/* SIGHUP: a valid file is applied to boards plugged afterwards; an invalid one is refused. */
static void case_sighup(void)
{
    EmuBoard *b1, *b2, *b3;
    Ctx c;

    ctx_init(&c);
    write_config(&c, "workers = 4", "path = 1-9");
    require(daemon_start(&c), "espdfud did not start");
    b1 = plug(&c, "1-1", "esp32s2:dfu");
    pause_ms(&c, 1500);
    check(info_of(b1).dfu.attempts == 0, "1-1 flashed although no rule matches it");

    /* Valid: a rule for 1-2 and 1-3. */
    write_config(&c, "workers = 4", "path = 1-[23]");
    kill(c.pid, SIGHUP);
    require(wait_log(&c, "configuration reloaded from", 5000), "the reload was not applied");
    check(strstr(notify_messages(&c), "RELOADING=1\nMONOTONIC_USEC="), "no RELOADING=1");
    b2 = plug(&c, "1-2", "esp32s2:dfu");
    require(wait_flashed(&c, &b2, 1, 30000), "1-2 not flashed under the new rule");
    check(received_image(&c, b2), "1-2 not byte-exact");

    /* Invalid: refused, with its error; the running rules still flash 1-3. */
    g_file_set_contents(c.conf, "[daemon]\nworkers = 0\n[rule x]\npath = 1-1\n", -1, NULL);
    kill(c.pid, SIGHUP);
    require(wait_log(&c, "reload refused; the running configuration stays", 5000),
            "the invalid file was not refused");
    check(wait_log(&c, "workers: '0' is not a whole number", 100), "the error is not logged");
    b3 = plug(&c, "1-3", "esp32s2:dfu");
    require(wait_flashed(&c, &b3, 1, 30000), "1-3 not flashed under the kept rules");
    check(info_of(b1).dfu.attempts == 0, "1-1 was flashed");
    check(daemon_stop(&c, 10000, NULL) == 0, "espdfud did not exit 0");
out:
    ctx_done(&c);
}

static bool some_blocks(void *data)
{
    EmuBoardInfo i = info_of(data);

    return i.has_model && i.dfu.requests > 100;
}

/* SIGTERM in the middle of a download: the job is cancelled and espdfud exits 0 quickly. */
static void case_sigterm(void)
{
    EmuBoard *b;
    double ms;
    Ctx c;

    ctx_init(&c);
    write_config(&c, "workers = 4", "");
    require(daemon_start(&c), "espdfud did not start");
    b = plug(&c, "1-1", "esp32s2:dfu,poll=50");
    require(wait_until(&c, some_blocks, b, 30000), "the download did not start");
    check(daemon_stop(&c, 10000, &ms) == 0, "espdfud did not exit 0");
    fprintf(stderr, "SIGTERM to exit during a download: %.0f ms\n", ms);
    check(ms < 6000, "stopping took %.0f ms", ms);
    check(log_count(&c, "job 1: interrupted: espdfud was stopped during download at") == 1,
          "the job was not interrupted");
    check(info_of(b).dfu.downloads_ok == 0, "the download completed anyway");
    check(log_count(&c, "espdfud: stopped") == 1, "no clean stop");
out:
    ctx_done(&c);
}

/*
 * SIGTERM while a worker is stuck in a control transfer the board never
 * answers (30 s transfer timeout): espdfud still exits 0, after its 5 s grace.
 */
static void case_sigterm_hung(void)
{
    EmuBoard *b;
    double ms;
    Ctx c;

    ctx_init(&c);
    write_config(&c, "workers = 4", "");
    require(daemon_start(&c), "espdfud did not start");
    b = plug(&c, "1-1", "esp32s2:dfu,hang-at=5");
    require(wait_log(&c, "[1-1] job 1: downloading", 30000), "the download did not start");
    pause_ms(&c, 1000); /* well into the hang at block 5 */
    check(info_of(b).dfu.downloads_ok == 0, "the board was flashed");
    check(daemon_stop(&c, 15000, &ms) == 0, "espdfud did not exit 0");
    fprintf(stderr, "SIGTERM to exit with a hung transfer: %.0f ms\n", ms);
    check(ms < 8000, "stopping took %.0f ms", ms);
    check(log_count(&c, "still running after 5 s; exiting anyway") == 1, "no grace timeout");
out:
    ctx_done(&c);
}

/* after=hook: the hook runs with the job's environment. */
static void case_hook(void)
{
    g_autofree char *script = NULL, *out = NULL, *rule = NULL, *got = NULL, *want = NULL;
    EmuBoard *b;
    Ctx c;

    ctx_init(&c);
    script = g_build_filename(c.dir, "hook.sh", NULL);
    out = g_build_filename(c.dir, "hook.out", NULL);
    g_file_set_contents(script,
                        "#!/bin/sh\necho \"$ESPDFU_PATH $ESPDFU_JOB $ESPDFU_RESULT $ESPDFU_CHIP "
                        "$ESPDFU_ERROR $ESPDFU_IMAGE_SHA256\" >\"$1.tmp\"\nmv \"$1.tmp\" \"$1\"\n",
                        -1, NULL);
    chmod(script, 0755);
    /* 1-1: the hook above; 1-2: a hook that outlives its 1 s timeout. */
    rule = g_strdup_printf("path = 1-1\nafter = hook\nhook = %s %s\n"
                           "[rule slow-hook]\npath = 1-2\nimage = %s\nafter = hook\n"
                           "hook = /bin/sleep 60\nhook-timeout-s = 1",
                           script, out, FIXTURE);
    write_config(&c, "workers = 4", rule);
    require(daemon_start(&c), "espdfud did not start");
    b = plug(&c, "1-1", "esp32s2:dfu");
    require(wait_flashed(&c, &b, 1, 30000), "not flashed");
    require(wait_log(&c, "[1-1] job 1: after=hook: exited with status 0", 10000),
            "the hook did not run");
    require(g_file_get_contents(out, &got, NULL, NULL), "the hook wrote nothing");
    want = g_strdup_printf("1-1 1 succeeded esp32s2 ok ");
    check(g_str_has_prefix(got, want), "hook saw \"%s\"", got);
    check(strlen(got) == strlen(want) + 64 + 1, "no sha256 in \"%s\"", got);
    plug(&c, "1-2", "esp32s2:dfu");
    check(wait_log(&c, "[1-2] job 2: after=hook: killed after its timeout", 15000),
          "the slow hook was not killed");
    check(daemon_stop(&c, 10000, NULL) == 0, "espdfud did not exit 0");
out:
    ctx_done(&c);
}

/* after=reset: the board gets a USB reset after its success, and is not flashed again. */
static void case_reset(void)
{
    EmuBoard *b;
    Ctx c;

    ctx_init(&c);
    write_config(&c, "workers = 4", "after = reset");
    require(daemon_start(&c), "espdfud did not start");
    b = plug(&c, "1-1", "esp32s2:dfu");
    require(wait_log(&c, "[1-1] job 1: flashed", 30000), "not flashed");
    require(wait_log(&c, "[1-1] job 1: after=reset: board reset", 10000), "no reset");
    check(info_of(b).resets == 1, "resets %u", info_of(b).resets);
    pause_ms(&c, 2000);
    check(log_count(&c, "queued by rule") == 1, "flashed again after the reset");
    check(received_image(&c, b), "not byte-exact");
    check(daemon_stop(&c, 10000, NULL) == 0, "espdfud did not exit 0");
out:
    ctx_done(&c);
}

static const E2eCase cases[] = {
        {"one", case_one},
        {"eight", case_eight},
        {"coldplug", case_coldplug},
        {"runtime", case_runtime},
        {"once-per-plug", case_once_per_plug},
        {"unplug", case_unplug},
        {"error-status", case_error_status},
        {"retry", case_retry},
        {"job-timeout", case_job_timeout},
        {"sighup", case_sighup},
        {"sigterm", case_sigterm},
        {"sigterm-hung", case_sigterm_hung},
        {"hook", case_hook},
        {"reset", case_reset},
};

int main(int argc, char **argv)
{
    return e2e_main(argc, argv, cases, G_N_ELEMENTS(cases));
}
