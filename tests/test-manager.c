/* SPDX-License-Identifier: MIT */
/*
 * daemon/manager*.c: the core on a real sd-event loop, with its real store in a
 * temporary state directory, and fakes at its two seams (ManagerOptions): a
 * WorkerRunFn that answers as each test scripts it, and device events sent with
 * manager_device_event() in place of udev. Everything is asserted on the jobs and
 * devices the manager shows (manager_get_job(), manager_get_device()), never on
 * log text.
 *
 * No sleeps: the test runs the loop until a condition holds, and a held request
 * tells the test it is running through a condition variable; every wait is
 * bounded and fails the test at its end.
 */
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "daemon-test.h"
#include "job-json.h"
#include "log.h"
#include "manager.h"
#include "store-db.h"
#include "timeutil.h"
#include "util.h"

#define S2_IMAGE  FIXTURES_DIR "/mkdfu/1/dfu.bin"
#define PID_S2    0x0002u
#define PID_S3    0x0009u
#define WAIT_USEC (10u * USEC_PER_SEC) /* every wait ends on its event or fails after this */

/* ---- the fake worker ---- */

/* How the fake answers one request of an action; requests without a step succeed. */
typedef struct FakeStep {
    WorkerAction action;
    bool hold;      /* block until fake_release() or the job's cancel flag */
    EspdfuErr code; /* ERR_OK: success */
    uint32_t block; /* a failed download: the report's block */
    bool used;
} FakeStep;

#define FAKE_STEPS_MAX 8u
#define FAKE_CALLS_MAX 16u

static struct {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    FakeStep steps[FAKE_STEPS_MAX];
    size_t n_steps;
    WorkerRequest calls[FAKE_CALLS_MAX]; /* what the manager asked, in order */
    size_t n_calls;
    unsigned holding;  /* held requests that have started */
    unsigned releases; /* tokens fake_release() handed out, one per held request */
    bool open;         /* teardown: nothing is held any more */
} fake = {.lock = PTHREAD_MUTEX_INITIALIZER, .changed = PTHREAD_COND_INITIALIZER};

static void fake_reset(void)
{
    pthread_mutex_lock(&fake.lock);
    fake.n_steps = fake.n_calls = 0;
    fake.holding = fake.releases = 0;
    fake.open = false;
    pthread_mutex_unlock(&fake.lock);
}

static void fake_script(WorkerAction action, bool hold, EspdfuErr code, uint32_t block)
{
    pthread_mutex_lock(&fake.lock);
    if (fake.n_steps < FAKE_STEPS_MAX)
        fake.steps[fake.n_steps++] =
                (FakeStep){.action = action, .hold = hold, .code = code, .block = block};
    pthread_mutex_unlock(&fake.lock);
}

static void fake_release(void)
{
    pthread_mutex_lock(&fake.lock);
    fake.releases++;
    pthread_cond_broadcast(&fake.changed);
    pthread_mutex_unlock(&fake.lock);
}

static void fake_open_all(void)
{
    pthread_mutex_lock(&fake.lock);
    fake.open = true;
    pthread_cond_broadcast(&fake.changed);
    pthread_mutex_unlock(&fake.lock);
}

/* Until n held requests have started; false after WAIT_USEC. */
static bool fake_wait_holding(unsigned n)
{
    struct timespec deadline;
    bool ok;

    clock_gettime(CLOCK_REALTIME, &deadline); /* the static condition's clock */
    deadline.tv_sec += WAIT_USEC / USEC_PER_SEC;
    pthread_mutex_lock(&fake.lock);
    while (fake.holding < n)
        if (pthread_cond_timedwait(&fake.changed, &fake.lock, &deadline) == ETIMEDOUT)
            break;
    ok = fake.holding >= n;
    pthread_mutex_unlock(&fake.lock);
    return ok;
}

static size_t fake_calls(WorkerRequest *ret, size_t max)
{
    size_t n;

    pthread_mutex_lock(&fake.lock);
    n = fake.n_calls;
    if (ret)
        memcpy(ret, fake.calls, (n < max ? n : max) * sizeof(*ret));
    pthread_mutex_unlock(&fake.lock);
    return n;
}

/*
 * Held: until released, or until the cancel flag is up, which the manager sets
 * without telling anyone; the engine checks it between blocks, so does this, on a
 * short period. Called and returns with the lock held. true: cancelled.
 */
static bool fake_hold(const WorkerRequest *req)
{
    fake.holding++;
    pthread_cond_broadcast(&fake.changed);
    for (;;) {
        struct timespec t;

        if (fake.releases > 0) {
            fake.releases--;
            return false;
        }
        if (fake.open || (req->cancel && atomic_load(req->cancel)))
            return true;
        clock_gettime(CLOCK_REALTIME, &t);
        t.tv_nsec += 10 * 1000 * 1000;
        if (t.tv_nsec >= 1000 * 1000 * 1000) {
            t.tv_sec++;
            t.tv_nsec -= 1000 * 1000 * 1000;
        }
        (void)pthread_cond_timedwait(&fake.changed, &fake.lock, &t);
    }
}

static void fake_run(Worker *w, const WorkerRequest *req, WorkerResult *res)
{
    FakeStep step = {.action = req->action, .code = ERR_OK};
    bool cancelled = false;
    uint64_t total = req->image ? req->image->payload_size : 0;

    pthread_mutex_lock(&fake.lock);
    if (fake.n_calls < FAKE_CALLS_MAX)
        fake.calls[fake.n_calls++] = *req;
    for (size_t i = 0; i < fake.n_steps; i++)
        if (!fake.steps[i].used && fake.steps[i].action == req->action) {
            fake.steps[i].used = true;
            step = fake.steps[i];
            break;
        }
    if (step.hold)
        cancelled = fake_hold(req);
    pthread_mutex_unlock(&fake.lock);

    res->elapsed_usec = 1000;
    if (cancelled) {
        res->r = err_set(&res->err, ERR_CANCELLED, "cancelled");
        return;
    }
    if (step.code != ERR_OK) {
        res->r = err_set(&res->err, step.code, "fake %s failed at block %" PRIu32,
                         worker_action_to_string(req->action), step.block);
        if (req->action == WORKER_DOWNLOAD) {
            res->has_report = true;
            res->report = (DfuReport){.phase = DFU_PHASE_DOWNLOAD,
                                      .block = step.block,
                                      .offset = (uint64_t)step.block * 64,
                                      .dfu_status = -1,
                                      .dfu_state = -1,
                                      .blocks_sent = step.block};
        }
        return;
    }
    if (req->action == WORKER_DOWNLOAD)
        worker_post_progress(w, req->job_id, total, total, (uint32_t)(total / 64), true);
    res->r = 0;
}

/* ---- a manager on a loop ---- */

typedef struct FlashAnswer {
    bool done;
    int r;
    uint64_t ids[4];
    size_t n;
} FlashAnswer;

typedef struct Ctx {
    char dir[64];
    char state[96];
    char conf[96];
    sd_event *e;
    Config *config; /* until manager_new() takes it */
    ImageCache *cache;
    Manager *m;
    FlashAnswer flash; /* here, not on a test's stack: the store may answer at teardown */
} Ctx;

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    return remove(path);
}

static void ctx_done(Ctx *c)
{
    /* Held requests end, then every worker is joined before the jobs go. */
    fake_open_all();
    if (c->m && manager_stop_workers(c->m, WAIT_USEC) < 0)
        fprintf(stderr, "workers still busy at the end of a test\n");
    else
        c->m = manager_free(c->m);
    config_free(c->config);
    image_cache_free(c->cache);
    c->e = sd_event_unref(c->e);
    if (c->dir[0])
        (void)nftw(c->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/*
 * The configuration: two workers, one rule for every esp32s2 board on a "1-*"
 * port in any mode, and the test's own [daemon] keys.
 */
static int ctx_config_rule(Ctx *c, const char *daemon_keys, const char *rule_keys)
{
    ConfigErrors errors = {};
    FILE *f;
    int r;

    fake_reset();
    snprintf(c->dir, sizeof(c->dir), "/tmp/test-manager.XXXXXX");
    if (!mkdtemp(c->dir)) {
        c->dir[0] = '\0';
        return -errno;
    }
    snprintf(c->state, sizeof(c->state), "%s/state", c->dir);
    snprintf(c->conf, sizeof(c->conf), "%s/espdfud.conf", c->dir);
    f = fopen(c->conf, "we");
    if (!f)
        return -errno;
    fprintf(f,
            "[daemon]\n"
            "state-dir = %s\n"
            "workers = 2\n"
            "%s"
            "[rule s2]\n"
            "chip = esp32s2\n"
            "path = 1-*\n"
            "image = %s\n"
            "%s",
            c->state, daemon_keys, S2_IMAGE, rule_keys);
    if (fclose(f) != 0)
        return -EIO;
    r = image_cache_new(&c->cache);
    if (r < 0)
        return r;
    r = config_parse_file(c->conf, c->cache, &c->config, &errors);
    for (size_t i = 0; i < errors.n; i++)
        fprintf(stderr, "%s\n", errors.lines[i]);
    config_errors_clear(&errors);
    return r;
}

static int ctx_config(Ctx *c, const char *daemon_keys)
{
    return ctx_config_rule(c, daemon_keys, "");
}

/* The manager, started, once its store has answered (the rules apply from then on). */
static int ctx_run(Ctx *c)
{
    ManagerOptions o = {
            .config_path = c->conf,
            .worker_run = fake_run,
            .no_udev = true,
    };
    uint64_t deadline = now_usec(CLOCK_MONOTONIC) + WAIT_USEC;
    int r;

    r = sd_event_new(&c->e);
    if (r < 0)
        return r;
    r = manager_new(c->e, &o, TAKE_PTR(c->config), TAKE_PTR(c->cache), &c->m);
    if (r < 0)
        return r;
    r = manager_start(c->m);
    if (r < 0)
        return r;
    while (!manager_get_preloaded(c->m) && now_usec(CLOCK_MONOTONIC) < deadline)
        (void)sd_event_run(c->e, 100 * USEC_PER_MSEC);
    return manager_get_preloaded(c->m) ? 0 : -ETIMEDOUT;
}

static int ctx_start(Ctx *c, const char *daemon_keys)
{
    int r = ctx_config(c, daemon_keys);

    return r < 0 ? r : ctx_run(c);
}

/* Run the loop until cond holds; its value at the end (false: WAIT_USEC passed). */
#define LOOP_UNTIL(c, cond)                                         \
    ({                                                              \
        uint64_t _deadline = now_usec(CLOCK_MONOTONIC) + WAIT_USEC; \
        while (!(cond) && now_usec(CLOCK_MONOTONIC) < _deadline)    \
            (void)sd_event_run((c)->e, 100 * USEC_PER_MSEC);        \
        (bool)(cond);                                               \
    })

static DeviceInfo board(const char *path, uint16_t pid, DeviceMode mode, unsigned devnum)
{
    DeviceInfo i = {
            .vid = ESP_USB_VID,
            .pid = pid,
            .busnum = 1,
            .devnum = devnum,
            .chip = chip_from_pid(pid),
            .mode = mode,
    };

    snprintf(i.path, sizeof(i.path), "%s", path);
    /* Never opened: the fake worker only records it. */
    snprintf(i.devnode, sizeof(i.devnode), "/dev/bus/usb/001/%03u", devnum);
    snprintf(i.serial, sizeof(i.serial), "0");
    return i;
}

/* The same board enumerated again (a new plug, or back after a detach): a new device number
 * and devnode. */
static void renumber(DeviceInfo *info, unsigned devnum)
{
    info->devnum = devnum;
    snprintf(info->devnode, sizeof(info->devnode), "/dev/bus/usb/001/%03u", devnum);
}

static void plug_in(Ctx *c, const DeviceInfo *info)
{
    manager_device_event(c->m, MANAGER_DEVICE_ADDED, info);
}

static void unplug(Ctx *c, const char *path)
{
    DeviceInfo info = {};

    snprintf(info.path, sizeof(info.path), "%s", path);
    manager_device_event(c->m, MANAGER_DEVICE_REMOVED, &info);
}

/* The nth job (from 0) on path, live or finished, in id order. */
static const Job *job_on(Ctx *c, const char *path, unsigned nth)
{
    for (const Job *j = manager_next_job(c->m, NULL); j; j = manager_next_job(c->m, j))
        if (strcmp(j->path, path) == 0 && nth-- == 0)
            return j;
    return NULL;
}

static unsigned jobs_on(Ctx *c, const char *path)
{
    unsigned n = 0;

    for (const Job *j = manager_next_job(c->m, NULL); j; j = manager_next_job(c->m, j))
        n += strcmp(j->path, path) == 0;
    return n;
}

static bool job_in_state(Ctx *c, const char *path, unsigned nth, JobState s)
{
    const Job *j = job_on(c, path, nth);

    return j && j->state == s;
}

/* Final, and its worker has answered: nothing more will happen to it. */
static bool job_done(Ctx *c, const char *path, unsigned nth)
{
    const Job *j = job_on(c, path, nth);

    return j && job_state_is_final(j->state) && !j->worker_active;
}

/* Nothing queued nor being recorded: a board that got no job got none at all. */
static bool manager_idle(Ctx *c)
{
    ManagerStats s;

    manager_get_stats(c->m, &s);
    return s.jobs_live == 0 && s.jobs_recording == 0;
}

static void on_flash_done(void *userdata, int r, const char *message, const uint64_t *ids, size_t n)
{
    FlashAnswer *a = userdata;

    a->done = true;
    a->r = r;
    a->n = n < 4 ? n : 4;
    for (size_t i = 0; i < a->n; i++)
        a->ids[i] = ids[i];
}

/* A manual flash of the rule's image to path; the job's id once the store has it, 0 if not. */
static uint64_t flash(Ctx *c, const char *path)
{
    const char *paths[] = {path};
    const Config *config = manager_get_config(c->m);

    c->flash = (FlashAnswer){};
    if (manager_flash(c->m, paths, 1, config->rules[0].image, "dfu.bin", NULL, on_flash_done,
                      &c->flash) < 0)
        return 0;
    if (!LOOP_UNTIL(c, c->flash.done) || c->flash.r < 0 || c->flash.n != 1)
        return 0;
    return c->flash.ids[0];
}

/* ---- the tests ---- */

static void test_auto_flash_once_per_plug(T *t)
{
    _cleanup_(ctx_done) Ctx c = {};
    DeviceInfo info = board("1-1", PID_S2, DEVICE_MODE_DFU, 5);
    WorkerRequest calls[FAKE_CALLS_MAX];
    const Device *d;
    const Job *j;

    CHECK(ctx_start(&c, "retries = 0\n") == 0);
    plug_in(&c, &info);
    CHECK(LOOP_UNTIL(&c, job_done(&c, "1-1", 0)));
    j = job_on(&c, "1-1", 0);
    CHECK(j->state == JOB_SUCCEEDED && j->error.code == ERR_OK && !j->has_report);
    CHECK(j->auto_flash && j->n_attempts == 1);
    CHECK_STREQ(j->source, "s2");
    CHECK(j->chip == CHIP_ESP32S2 && j->bytes_sent == j->bytes_total);
    d = manager_get_device(c.m, "1-1");
    CHECK(d && d->present && d->plug == DEVICE_PLUG_FLASHED && d->last_job == j->id);
    CHECK(d->plug_id == j->id);
    CHECK(fake_calls(calls, FAKE_CALLS_MAX) == 1);
    CHECK(calls[0].action == WORKER_DOWNLOAD && calls[0].job_id == j->id && !calls[0].reset_first);
    CHECK_STREQ(calls[0].devnode, "/dev/bus/usb/001/005");

    /* A "change" of the same enumeration is the same plug: not flashed again. */
    info.bcd_device = 0x0100;
    manager_device_event(c.m, MANAGER_DEVICE_CHANGED, &info);
    CHECK(manager_idle(&c) && jobs_on(&c, "1-1") == 1);
    d = manager_get_device(c.m, "1-1");
    CHECK(d && d->plug == DEVICE_PLUG_FLASHED && d->info.bcd_device == 0x0100);

    /* Unplugged and plugged in again: a new plug, flashed again. */
    unplug(&c, "1-1");
    CHECK(manager_get_device(c.m, "1-1") == NULL);
    renumber(&info, 6);
    plug_in(&c, &info);
    CHECK(LOOP_UNTIL(&c, job_done(&c, "1-1", 1)));
    CHECK(job_on(&c, "1-1", 1)->state == JOB_SUCCEEDED);
    CHECK(job_on(&c, "1-1", 1)->id > job_on(&c, "1-1", 0)->id);
    d = manager_get_device(c.m, "1-1");
    CHECK(d && d->plug == DEVICE_PLUG_FLASHED && d->last_job == job_on(&c, "1-1", 1)->id);
    CHECK(fake_calls(calls, FAKE_CALLS_MAX) == 2);
    CHECK_STREQ(calls[1].devnode, "/dev/bus/usb/001/006");
}

static void test_runtime_detach_replug(T *t)
{
    _cleanup_(ctx_done) Ctx c = {};
    DeviceInfo info = board("1-2", PID_S2, DEVICE_MODE_RUNTIME, 7);
    WorkerRequest calls[FAKE_CALLS_MAX];
    const Device *d;
    const Job *j;

    CHECK(ctx_start(&c, "") == 0);
    plug_in(&c, &info);
    CHECK(LOOP_UNTIL(&c, job_in_state(&c, "1-2", 0, JOB_WAITING_FOR_REPLUG)));
    /* The ROM leaves and comes back on the same port in DFU mode: the same plug and job. */
    unplug(&c, "1-2");
    d = manager_get_device(c.m, "1-2");
    CHECK(d && !d->present && d->plug == DEVICE_PLUG_REPLUGGING);
    CHECK(job_in_state(&c, "1-2", 0, JOB_WAITING_FOR_REPLUG));
    info.mode = DEVICE_MODE_DFU;
    renumber(&info, 8);
    plug_in(&c, &info);
    CHECK(LOOP_UNTIL(&c, job_done(&c, "1-2", 0)));
    j = job_on(&c, "1-2", 0);
    CHECK(j->state == JOB_SUCCEEDED && j->error.code == ERR_OK);
    CHECK(jobs_on(&c, "1-2") == 1);
    CHECK(j->n_transitions >= 4);
    CHECK(j->transitions[1].state == JOB_DETACHING);
    CHECK(j->transitions[2].state == JOB_WAITING_FOR_REPLUG);
    CHECK(j->transitions[3].state == JOB_DOWNLOADING);
    CHECK(fake_calls(calls, FAKE_CALLS_MAX) == 2);
    CHECK(calls[0].action == WORKER_DETACH);
    CHECK_STREQ(calls[0].devnode, "/dev/bus/usb/001/007");
    /* The download goes to the board's new enumeration. */
    CHECK(calls[1].action == WORKER_DOWNLOAD);
    CHECK_STREQ(calls[1].devnode, "/dev/bus/usb/001/008");
    d = manager_get_device(c.m, "1-2");
    CHECK(d && d->present && d->plug == DEVICE_PLUG_FLASHED && d->info.devnum == 8);
}

/* The board is back before the detach answer: the answer starts the download. */
static void test_runtime_replug_before_detach_answer(T *t)
{
    _cleanup_(ctx_done) Ctx c = {};
    DeviceInfo info = board("1-2", PID_S2, DEVICE_MODE_RUNTIME, 7);
    WorkerRequest calls[FAKE_CALLS_MAX];

    CHECK(ctx_start(&c, "") == 0);
    fake_script(WORKER_DETACH, true, ERR_OK, 0);
    plug_in(&c, &info);
    CHECK(LOOP_UNTIL(&c, job_in_state(&c, "1-2", 0, JOB_DETACHING)));
    CHECK(fake_wait_holding(1));
    unplug(&c, "1-2");
    info.mode = DEVICE_MODE_DFU;
    renumber(&info, 8);
    plug_in(&c, &info);
    CHECK(job_in_state(&c, "1-2", 0, JOB_DETACHING));
    fake_release();
    CHECK(LOOP_UNTIL(&c, job_done(&c, "1-2", 0)));
    CHECK(job_on(&c, "1-2", 0)->state == JOB_SUCCEEDED);
    CHECK(fake_calls(calls, FAKE_CALLS_MAX) == 2);
    CHECK_STREQ(calls[1].devnode, "/dev/bus/usb/001/008");
}

static void test_runtime_replug_timeout(T *t)
{
    _cleanup_(ctx_done) Ctx c = {};
    DeviceInfo info = board("1-2", PID_S2, DEVICE_MODE_RUNTIME, 7);
    const Job *j;

    CHECK(ctx_start(&c, "replug-timeout-ms = 100\n") == 0);
    plug_in(&c, &info);
    CHECK(LOOP_UNTIL(&c, job_in_state(&c, "1-2", 0, JOB_WAITING_FOR_REPLUG)));
    unplug(&c, "1-2");
    /* It never comes back. */
    CHECK(LOOP_UNTIL(&c, job_done(&c, "1-2", 0)));
    j = job_on(&c, "1-2", 0);
    CHECK(j->state == JOB_FAILED && j->error.code == ERR_REPLUG_TIMEOUT);
    /* That plug is over. */
    CHECK(manager_get_device(c.m, "1-2") == NULL);
    CHECK(fake_calls(NULL, 0) == 1);
}

/* Cancelled while the detached board is away: when it comes back, it is the same plug. */
static void test_cancel_during_replug(T *t)
{
    _cleanup_(ctx_done) Ctx c = {};
    DeviceInfo info = board("1-2", PID_S2, DEVICE_MODE_RUNTIME, 7);
    const Device *d;

    CHECK(ctx_start(&c, "") == 0);
    plug_in(&c, &info);
    CHECK(LOOP_UNTIL(&c, job_in_state(&c, "1-2", 0, JOB_WAITING_FOR_REPLUG)));
    unplug(&c, "1-2");
    CHECK(manager_cancel(c.m, job_on(&c, "1-2", 0)->id) == 0);
    CHECK(job_in_state(&c, "1-2", 0, JOB_CANCELLED));
    info.mode = DEVICE_MODE_DFU;
    renumber(&info, 8);
    plug_in(&c, &info);
    d = manager_get_device(c.m, "1-2");
    CHECK(d && d->present && d->plug == DEVICE_PLUG_IDLE && d->info.devnum == 8);
    CHECK(manager_idle(&c) && jobs_on(&c, "1-2") == 1);
}

/* ... and when it does not come back within the replug timeout, that plug is over. */
static void test_cancel_during_replug_gone(T *t)
{
    _cleanup_(ctx_done) Ctx c = {};
    DeviceInfo info = board("1-2", PID_S2, DEVICE_MODE_RUNTIME, 7);

    CHECK(ctx_start(&c, "replug-timeout-ms = 100\n") == 0);
    fake_script(WORKER_DETACH, true, ERR_OK, 0);
    plug_in(&c, &info);
    CHECK(LOOP_UNTIL(&c, job_in_state(&c, "1-2", 0, JOB_DETACHING)));
    CHECK(fake_wait_holding(1));
    unplug(&c, "1-2");
    CHECK(manager_cancel(c.m, job_on(&c, "1-2", 0)->id) == 0);
    CHECK(LOOP_UNTIL(&c, job_done(&c, "1-2", 0)));
    CHECK(job_on(&c, "1-2", 0)->state == JOB_CANCELLED);
    CHECK(LOOP_UNTIL(&c, manager_get_device(c.m, "1-2") == NULL));
}

/* after=reset: the board leaves and comes back on its own; the same plug, not flashed again. */
static void test_after_reset_same_plug(T *t)
{
    _cleanup_(ctx_done) Ctx c = {};
    DeviceInfo info = board("1-1", PID_S2, DEVICE_MODE_DFU, 5);
    WorkerRequest calls[FAKE_CALLS_MAX];
    const Device *d;

    CHECK(ctx_config_rule(&c, "", "after = reset\n") == 0);
    CHECK(ctx_run(&c) == 0);
    plug_in(&c, &info);
    CHECK(LOOP_UNTIL(&c, job_done(&c, "1-1", 0)));
    CHECK(job_on(&c, "1-1", 0)->state == JOB_SUCCEEDED);
    CHECK(fake_calls(calls, FAKE_CALLS_MAX) == 2);
    CHECK(calls[1].action == WORKER_RESET);
    unplug(&c, "1-1");
    d = manager_get_device(c.m, "1-1");
    CHECK(d && !d->present && d->plug == DEVICE_PLUG_REPLUGGING);
    renumber(&info, 6);
    plug_in(&c, &info);
    d = manager_get_device(c.m, "1-1");
    CHECK(d && d->present && d->info.devnum == 6);
    CHECK(manager_idle(&c) && jobs_on(&c, "1-1") == 1);
    CHECK(d->plug == DEVICE_PLUG_FLASHED);
}

/* The board leaves while its auto-flash job is being recorded: that job fails, and the
 * next plug gets its own. */
static void test_plug_ends_while_recording(T *t)
{
    _cleanup_(ctx_done) Ctx c = {};
    DeviceInfo info = board("1-1", PID_S2, DEVICE_MODE_DFU, 5);

    CHECK(ctx_start(&c, "") == 0);
    plug_in(&c, &info);
    CHECK(!manager_idle(&c) && jobs_on(&c, "1-1") == 0);
    unplug(&c, "1-1");
    renumber(&info, 6);
    plug_in(&c, &info);
    CHECK(LOOP_UNTIL(&c, job_done(&c, "1-1", 0) && job_done(&c, "1-1", 1)));
    CHECK(job_on(&c, "1-1", 0)->state == JOB_FAILED);
    CHECK(job_on(&c, "1-1", 0)->error.code == ERR_DISCONNECTED);
    CHECK(job_on(&c, "1-1", 1)->state == JOB_SUCCEEDED);
    CHECK(fake_calls(NULL, 0) == 1);
    CHECK(manager_get_device(c.m, "1-1")->plug == DEVICE_PLUG_FLASHED);
}

static void test_retry_after_transient_error(T *t)
{
    _cleanup_(ctx_done) Ctx c = {};
    DeviceInfo info = board("1-3", PID_S2, DEVICE_MODE_DFU, 9);
    WorkerRequest calls[FAKE_CALLS_MAX];
    const Job *j;

    CHECK(ctx_start(&c, "retries = 1\n") == 0);
    fake_script(WORKER_DOWNLOAD, false, ERR_USB_TIMEOUT, 7);
    plug_in(&c, &info);
    CHECK(LOOP_UNTIL(&c, job_done(&c, "1-3", 0)));
    j = job_on(&c, "1-3", 0);
    CHECK(j->state == JOB_SUCCEEDED);
    /* Succeeded: no error, but both attempts are kept, the first with where it failed. */
    CHECK(j->error.code == ERR_OK && !j->has_report);
    CHECK(j->n_attempts == 2 && j->retries_done == 1);
    CHECK(j->attempts[0].error.code == ERR_USB_TIMEOUT);
    CHECK(j->attempts[0].has_report && j->attempts[0].report.block == 7);
    CHECK(j->attempts[1].error.code == ERR_OK);
    /* A hung transfer: the retry starts with a USB reset. */
    CHECK(fake_calls(calls, FAKE_CALLS_MAX) == 2);
    CHECK(calls[0].action == WORKER_DOWNLOAD && !calls[0].reset_first);
    CHECK(calls[1].action == WORKER_DOWNLOAD && calls[1].reset_first);
    CHECK(manager_get_device(c.m, "1-3")->plug == DEVICE_PLUG_FLASHED);
}

static void test_retries_exhausted(T *t)
{
    _cleanup_(ctx_done) Ctx c = {};
    DeviceInfo info = board("1-3", PID_S2, DEVICE_MODE_DFU, 9);
    const Job *j;

    CHECK(ctx_start(&c, "retries = 1\n") == 0);
    fake_script(WORKER_DOWNLOAD, false, ERR_USB_TIMEOUT, 7);
    fake_script(WORKER_DOWNLOAD, false, ERR_USB_TIMEOUT, 3);
    plug_in(&c, &info);
    CHECK(LOOP_UNTIL(&c, job_done(&c, "1-3", 0)));
    j = job_on(&c, "1-3", 0);
    CHECK(j->state == JOB_FAILED && j->error.code == ERR_USB_TIMEOUT);
    CHECK(j->n_attempts == 2 && j->retries_done == 1);
    CHECK(fake_calls(NULL, 0) == 2);
    CHECK(manager_get_device(c.m, "1-3")->plug == DEVICE_PLUG_FAILED);
}

/* The board leaves while its worker downloads; the worker's error says where. */
static void lost_mid_download(T *t, EspdfuErr worker_error)
{
    _cleanup_(ctx_done) Ctx c = {};
    DeviceInfo info = board("1-4", PID_S2, DEVICE_MODE_DFU, 10);
    const Job *j;

    CHECK(ctx_start(&c, "retries = 1\n") == 0);
    fake_script(WORKER_DOWNLOAD, true, worker_error, 12);
    plug_in(&c, &info);
    CHECK(LOOP_UNTIL(&c, job_in_state(&c, "1-4", 0, JOB_DOWNLOADING)));
    CHECK(fake_wait_holding(1));
    unplug(&c, "1-4");
    CHECK(manager_get_device(c.m, "1-4") == NULL);
    /* Not ended yet: the worker is at the board and knows more. */
    CHECK(job_in_state(&c, "1-4", 0, JOB_DOWNLOADING));
    fake_release();
    CHECK(LOOP_UNTIL(&c, job_done(&c, "1-4", 0)));
    j = job_on(&c, "1-4", 0);
    CHECK(j->state == JOB_FAILED && j->error.code == ERR_DISCONNECTED);
    CHECK(j->has_report && j->report.block == 12);
    /* A board that left is not retried, whatever the transfer said. */
    CHECK(j->n_attempts == 1 && j->retries_done == 0);
    CHECK(fake_calls(NULL, 0) == 1);
}

static void test_lost_mid_download(T *t)
{
    lost_mid_download(t, ERR_DISCONNECTED); /* what the engine says for ENODEV */
}

static void test_lost_mid_download_transfer_error(T *t)
{
    lost_mid_download(t, ERR_USB_TRANSFER); /* transient, but the board is gone */
}

static void test_cancel_running(T *t)
{
    _cleanup_(ctx_done) Ctx c = {};
    DeviceInfo info = board("1-5", PID_S2, DEVICE_MODE_DFU, 11);
    const Job *j;
    uint64_t id;

    CHECK(ctx_start(&c, "") == 0);
    fake_script(WORKER_DOWNLOAD, true, ERR_OK, 0);
    plug_in(&c, &info);
    CHECK(LOOP_UNTIL(&c, job_in_state(&c, "1-5", 0, JOB_DOWNLOADING)));
    CHECK(fake_wait_holding(1));
    id = job_on(&c, "1-5", 0)->id;
    CHECK(manager_cancel(c.m, id) == 0);
    /* Cancelled at once; the worker sees the flag and answers later. */
    j = manager_get_job(c.m, id);
    CHECK(j && j->state == JOB_CANCELLED && j->error.code == ERR_CANCELLED);
    CHECK(manager_cancel(c.m, id) == -EALREADY);
    CHECK(manager_cancel(c.m, id + 100) == -ENOENT);
    CHECK(LOOP_UNTIL(&c, job_done(&c, "1-5", 0)));
    CHECK(manager_get_job(c.m, id)->state == JOB_CANCELLED);
    CHECK(manager_get_device(c.m, "1-5")->plug == DEVICE_PLUG_IDLE);
    /* The plug was used: no second job. */
    CHECK(manager_idle(&c) && jobs_on(&c, "1-5") == 1);
}

static void test_cancel_waiting(T *t)
{
    _cleanup_(ctx_done) Ctx c = {};
    const Job *j;
    uint64_t id;

    CHECK(ctx_start(&c, "") == 0);
    id = flash(&c, "9-9");
    CHECK(id > 0);
    j = manager_get_job(c.m, id);
    CHECK(j && j->state == JOB_WAITING_FOR_BOARD && !j->auto_flash);
    CHECK(manager_cancel(c.m, id) == 0);
    j = manager_get_job(c.m, id);
    CHECK(j && j->state == JOB_CANCELLED && j->error.code == ERR_CANCELLED);
    CHECK(manager_idle(&c));
    CHECK(fake_calls(NULL, 0) == 0);
}

/* A manual job on an empty port starts when a board arrives there. */
static void test_manual_waits_for_board(T *t)
{
    _cleanup_(ctx_done) Ctx c = {};
    DeviceInfo info = board("2-1", PID_S2, DEVICE_MODE_DFU, 12);
    const Job *j;
    uint64_t id;

    CHECK(ctx_start(&c, "") == 0);
    id = flash(&c, "2-1");
    CHECK(id > 0);
    CHECK(manager_get_job(c.m, id)->state == JOB_WAITING_FOR_BOARD);
    plug_in(&c, &info);
    CHECK(LOOP_UNTIL(&c, job_done(&c, "2-1", 0)));
    j = manager_get_job(c.m, id);
    CHECK(j->state == JOB_SUCCEEDED && !j->auto_flash);
    CHECK_STREQ(j->source, "manual");
    /* No rule for port 2-1: that was the only job. */
    CHECK(manager_idle(&c) && jobs_on(&c, "2-1") == 1);
}

static void test_wait_expires(T *t)
{
    _cleanup_(ctx_done) Ctx c = {};
    const Job *j;
    uint64_t id;

    CHECK(ctx_start(&c, "wait-timeout-s = 1\n") == 0);
    id = flash(&c, "9-9");
    CHECK(id > 0);
    CHECK(LOOP_UNTIL(&c, job_done(&c, "9-9", 0)));
    j = manager_get_job(c.m, id);
    CHECK(j->state == JOB_EXPIRED && j->error.code == ERR_WAIT_TIMEOUT);
    CHECK(fake_calls(NULL, 0) == 0);
}

/* The image is checked against the board before anything is sent to it. */
static void test_wrong_chip(T *t)
{
    _cleanup_(ctx_done) Ctx c = {};
    DeviceInfo info = board("2-2", PID_S3, DEVICE_MODE_DFU, 13);
    const Job *j;
    uint64_t id;

    CHECK(ctx_start(&c, "") == 0);
    plug_in(&c, &info);
    CHECK(manager_idle(&c)); /* the s2 rule does not match an esp32s3 */
    id = flash(&c, "2-2");
    CHECK(id > 0);
    CHECK(LOOP_UNTIL(&c, job_done(&c, "2-2", 0)));
    j = manager_get_job(c.m, id);
    CHECK(j->state == JOB_FAILED && j->error.code == ERR_WRONG_CHIP);
    CHECK(fake_calls(NULL, 0) == 0);
}

static void test_pause_resume(T *t)
{
    _cleanup_(ctx_done) Ctx c = {};
    DeviceInfo info = board("1-6", PID_S2, DEVICE_MODE_DFU, 14);

    CHECK(ctx_start(&c, "") == 0);
    manager_pause(c.m);
    CHECK(manager_is_paused(c.m));
    plug_in(&c, &info);
    CHECK(manager_get_device(c.m, "1-6") != NULL);
    CHECK(manager_idle(&c) && jobs_on(&c, "1-6") == 0);
    manager_resume(c.m);
    CHECK(!manager_is_paused(c.m));
    CHECK(!manager_idle(&c));
    CHECK(LOOP_UNTIL(&c, job_done(&c, "1-6", 0)));
    CHECK(job_on(&c, "1-6", 0)->state == JOB_SUCCEEDED);
    CHECK(manager_get_device(c.m, "1-6")->plug == DEVICE_PLUG_FLASHED);
}

static void test_job_timeout(T *t)
{
    _cleanup_(ctx_done) Ctx c = {};
    DeviceInfo info = board("1-7", PID_S2, DEVICE_MODE_DFU, 15);
    const Job *j;

    CHECK(ctx_start(&c, "job-timeout-s = 1\nretries = 1\n") == 0);
    fake_script(WORKER_DOWNLOAD, true, ERR_OK, 0); /* until the cancel flag */
    plug_in(&c, &info);
    CHECK(LOOP_UNTIL(&c, job_done(&c, "1-7", 0)));
    j = job_on(&c, "1-7", 0);
    CHECK(j->state == JOB_FAILED && j->error.code == ERR_JOB_TIMEOUT);
    CHECK(j->n_attempts == 1 && j->retries_done == 0);
    CHECK(fake_calls(NULL, 0) == 1);
}

/* SIGTERM: a running job ends interrupted and the loop exits once its worker answered. */
static void test_shutdown(T *t)
{
    _cleanup_(ctx_done) Ctx c = {};
    DeviceInfo info = board("1-8", PID_S2, DEVICE_MODE_DFU, 16);
    const Job *j;

    CHECK(ctx_start(&c, "") == 0);
    fake_script(WORKER_DOWNLOAD, true, ERR_OK, 0);
    plug_in(&c, &info);
    CHECK(LOOP_UNTIL(&c, job_in_state(&c, "1-8", 0, JOB_DOWNLOADING)));
    CHECK(fake_wait_holding(1));
    manager_shutdown(c.m);
    j = job_on(&c, "1-8", 0);
    CHECK(j->state == JOB_INTERRUPTED && j->error.code == ERR_INTERRUPTED);
    CHECK(manager_flash(c.m, (const char *const[]){"9-9"}, 1,
                        manager_get_config(c.m)->rules[0].image, "dfu.bin", NULL, on_flash_done,
                        &c.flash) == -ESHUTDOWN);
    CHECK(LOOP_UNTIL(&c, sd_event_get_state(c.e) == SD_EVENT_FINISHED));
    CHECK(!job_on(&c, "1-8", 0)->worker_active);
}

/* A row the last run left live, found at start: interrupted; new ids go above it. */
static void test_recovery_at_start(T *t)
{
    _cleanup_(ctx_done) Ctx c = {};
    _cleanup_(store_db_closep) StoreDb *db = NULL;
    _cleanup_(job_freep) Job *old = NULL;
    StoreDbOpenInfo info = {};
    json_object *doc, *preloaded, *rec = NULL, *state;
    char err[STORE_DB_ERR_MAX];
    uint64_t old_id = 0, id;
    uint64_t now = now_usec(CLOCK_REALTIME);

    CHECK(ctx_config(&c, "") == 0);
    CHECK(mkdir(c.state, 0750) == 0);
    CHECK(store_db_open(c.state, NULL, NULL, &db, &info, err, sizeof(err)) == 0);
    CHECK(job_new(0, "1-9", "s2", c.config->rules[0].image, "dfu.bin", now, &old) == 0);
    CHECK(job_set_state(old, JOB_DOWNLOADING, now, "board in DFU mode") == 0);
    doc = job_to_json(old);
    CHECK(doc);
    CHECK(store_db_begin(db, err, sizeof(err)) == 0);
    CHECK(store_db_insert_job(
                  db,
                  &(StoreJobRow){
                          .path = "1-9",
                          .state = "downloading",
                          .sha256 = old->image->sha256_hex,
                          .created_usec = now,
                          .json = json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PLAIN),
                  },
                  &old_id, err, sizeof(err)) == 0);
    json_object_put(doc);
    CHECK(store_db_commit(db, err, sizeof(err)) == 0);
    db = store_db_close(db);
    CHECK(old_id > 0);

    CHECK(ctx_run(&c) == 0);
    /* Not a live job of this run: among the newest jobs of earlier runs, interrupted. */
    CHECK(manager_get_job(c.m, old_id) == NULL);
    preloaded = manager_get_preloaded(c.m);
    for (size_t i = 0; i < json_object_array_length(preloaded); i++) {
        json_object *o = json_object_array_get_idx(preloaded, i), *id_o;

        if (json_object_object_get_ex(o, "id", &id_o) &&
            (uint64_t)json_object_get_int64(id_o) == old_id)
            rec = o;
    }
    CHECK(rec);
    CHECK(json_object_object_get_ex(rec, "state", &state));
    CHECK_STREQ(json_object_get_string(state), "interrupted");
    id = flash(&c, "9-9");
    CHECK(id > old_id);
}

int main(void)
{
    log_force_stderr();
    RUN(test_auto_flash_once_per_plug);
    RUN(test_runtime_detach_replug);
    RUN(test_runtime_replug_before_detach_answer);
    RUN(test_runtime_replug_timeout);
    RUN(test_cancel_during_replug);
    RUN(test_cancel_during_replug_gone);
    RUN(test_plug_ends_while_recording);
    RUN(test_after_reset_same_plug);
    RUN(test_retry_after_transient_error);
    RUN(test_retries_exhausted);
    RUN(test_lost_mid_download);
    RUN(test_lost_mid_download_transfer_error);
    RUN(test_cancel_running);
    RUN(test_cancel_waiting);
    RUN(test_manual_waits_for_board);
    RUN(test_wait_expires);
    RUN(test_wrong_chip);
    RUN(test_pause_resume);
    RUN(test_job_timeout);
    RUN(test_shutdown);
    RUN(test_recovery_at_start);
    return test_summary();
}
