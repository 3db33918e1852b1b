/* SPDX-License-Identifier: MIT */
/*
 * daemon/worker.c: the pool's queueing, results through the eventfd, progress
 * coalescing, the outstanding bound and shutdown, with a fake run function in
 * place of the USB one. The test waits the way the main loop does, on the
 * pool's eventfd, and busy requests block on a gate the test opens: no sleeps,
 * and every wait is bounded.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "daemon-test.h"
#include "timeutil.h"
#include "worker.h"

/* Every wait in this file ends on an event or after this long, then fails. */
#define WAIT_TIMEOUT_MS 10000

/*
 * What busy (WORKER_DETACH) requests block on. The test opens the gate or sets a
 * request's cancel flag under the lock and broadcasts, so a worker never misses it
 * and nothing polls; a busy request counts itself in started, so the test knows
 * when one is running instead of sleeping and hoping.
 */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    bool open;
    unsigned started;
} gate = {.lock = PTHREAD_MUTEX_INITIALIZER, .changed = PTHREAD_COND_INITIALIZER};

static void gate_reset(void)
{
    pthread_mutex_lock(&gate.lock);
    gate.open = false;
    gate.started = 0;
    pthread_mutex_unlock(&gate.lock);
}

static void gate_open(void)
{
    pthread_mutex_lock(&gate.lock);
    gate.open = true;
    pthread_cond_broadcast(&gate.changed);
    pthread_mutex_unlock(&gate.lock);
}

static void gate_cancel(atomic_bool *cancel)
{
    pthread_mutex_lock(&gate.lock);
    atomic_store(cancel, true);
    pthread_cond_broadcast(&gate.changed);
    pthread_mutex_unlock(&gate.lock);
}

/* Until n busy requests have started; false after WAIT_TIMEOUT_MS. */
static bool gate_wait_started(unsigned n)
{
    struct timespec deadline;
    bool ok;

    /* The static condition variable waits on CLOCK_REALTIME. */
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += WAIT_TIMEOUT_MS / 1000;
    pthread_mutex_lock(&gate.lock);
    while (gate.started < n)
        if (pthread_cond_timedwait(&gate.changed, &gate.lock, &deadline) == ETIMEDOUT)
            break;
    ok = gate.started >= n;
    pthread_mutex_unlock(&gate.lock);
    return ok;
}

static void fake_run(Worker *w, const WorkerRequest *req, WorkerResult *res)
{
    bool cancelled;

    switch (req->action) {
    case WORKER_DOWNLOAD:
        /* A fast download: a progress post per block, as the engine would. */
        for (uint64_t b = 1; b <= 5000; b++)
            worker_post_progress(w, req->job_id, b * 64, 5000 * 64, (uint32_t)b, b == 5000);
        res->r = 0;
        return;
    case WORKER_DETACH:
        /* A long one: until the test opens the gate or sets the cancel flag. */
        pthread_mutex_lock(&gate.lock);
        gate.started++;
        pthread_cond_broadcast(&gate.changed);
        while (!gate.open && !(req->cancel && atomic_load(req->cancel)))
            pthread_cond_wait(&gate.changed, &gate.lock);
        cancelled = req->cancel && atomic_load(req->cancel);
        pthread_mutex_unlock(&gate.lock);
        if (cancelled)
            res->r = err_set(&res->err, ERR_CANCELLED, "cancelled");
        return;
    case WORKER_RESET:
        res->r = err_set(&res->err, ERR_USB_TRANSFER, "reset of %s failed", req->path);
        return;
    case _WORKER_ACTION_MAX:
        break;
    }
}

typedef struct Seen {
    unsigned results, progress;
    uint64_t last_sent[64];
    uint64_t job_of_last_result;
    int last_r;
} Seen;

static void on_progress(void *userdata, const WorkerProgress *pr)
{
    Seen *s = userdata;

    s->progress++;
    if (pr->job_id < 64)
        s->last_sent[pr->job_id] = pr->sent;
}

static void on_result(void *userdata, const WorkerResult *res)
{
    Seen *s = userdata;

    s->results++;
    s->job_of_last_result = res->job_id;
    s->last_r = res->r;
}

/* Whether the pool's eventfd is readable within timeout_ms (0: right now). */
static bool pool_readable(WorkerPool *p, int timeout_ms)
{
    struct pollfd pfd = {.fd = worker_pool_fd(p), .events = POLLIN};

    return poll(&pfd, 1, timeout_ms) > 0 && (pfd.revents & POLLIN);
}

/* Wait on the eventfd the way the loop does, and drain, until want results arrived. */
static bool collect(WorkerPool *p, Seen *s, unsigned want)
{
    uint64_t deadline = now_usec(CLOCK_MONOTONIC) + WAIT_TIMEOUT_MS * USEC_PER_MSEC;

    while (s->results < want) {
        uint64_t now = now_usec(CLOCK_MONOTONIC);

        /* Nothing signalled before the deadline: the results are not coming. */
        if (now >= deadline || !pool_readable(p, (int)((deadline - now) / USEC_PER_MSEC) + 1))
            return false;
        worker_pool_drain(p, on_progress, on_result, s);
    }
    return true;
}

static void test_results_and_progress(T *t)
{
    WorkerPool *p = NULL;
    Seen s = {};

    CHECK(worker_pool_new(4, fake_run, &p) == 0);
    CHECK(worker_pool_size(p) == 4);
    for (uint64_t id = 1; id <= 8; id++) {
        WorkerRequest req = {.job_id = id, .action = WORKER_DOWNLOAD};

        CHECK(worker_pool_submit(p, &req) == 0);
    }
    CHECK(collect(p, &s, 8));
    CHECK(worker_pool_outstanding(p) == 0);
    /* 40000 progress posts became a handful. */
    CHECK(s.progress >= 1 && s.progress < 100);
    CHECK(worker_pool_shutdown(p, USEC_PER_SEC) == 0);
}

static void test_last_progress_kept(T *t)
{
    WorkerPool *p = NULL;
    WorkerRequest req = {.job_id = 5, .action = WORKER_DOWNLOAD};
    Seen s = {};

    CHECK(worker_pool_new(1, fake_run, &p) == 0);
    CHECK(worker_pool_submit(p, &req) == 0);
    CHECK(collect(p, &s, 1));
    /* Coalesced, but the forced last post is what the loop sees, before the result. */
    CHECK(s.last_sent[5] == 5000 * 64);
    CHECK(worker_pool_shutdown(p, USEC_PER_SEC) == 0);
}

static void test_error_result(T *t)
{
    WorkerPool *p = NULL;
    WorkerRequest req = {.job_id = 3, .action = WORKER_RESET};
    Seen s = {};

    snprintf(req.path, sizeof(req.path), "1-4");
    CHECK(worker_pool_new(1, fake_run, &p) == 0);
    CHECK(worker_pool_submit(p, &req) == 0);
    CHECK(collect(p, &s, 1));
    CHECK(s.job_of_last_result == 3 && s.last_r == -EIO);
    CHECK(worker_pool_shutdown(p, USEC_PER_SEC) == 0);
}

static void test_cancel_flag(T *t)
{
    WorkerPool *p = NULL;
    atomic_bool cancel = false;
    WorkerRequest req = {.job_id = 9, .action = WORKER_DETACH, .cancel = &cancel};
    Seen s = {};

    gate_reset();
    CHECK(worker_pool_new(2, fake_run, &p) == 0);
    CHECK(worker_pool_submit(p, &req) == 0);
    CHECK(gate_wait_started(1));
    /* Running and not cancelled: nothing is signalled, and a drain finds no result. */
    CHECK(!pool_readable(p, 0));
    worker_pool_drain(p, on_progress, on_result, &s);
    CHECK(s.results == 0 && s.progress == 0);
    CHECK(worker_pool_outstanding(p) == 1);
    /* The flag, not the gate, ends it. */
    gate_cancel(&cancel);
    CHECK(collect(p, &s, 1));
    CHECK(s.job_of_last_result == 9 && s.last_r == -ECANCELED);
    CHECK(worker_pool_outstanding(p) == 0);
    CHECK(worker_pool_shutdown(p, USEC_PER_SEC) == 0);
}

static void test_outstanding_bound(T *t)
{
    WorkerPool *p = NULL;
    WorkerRequest req = {.job_id = 1, .action = WORKER_DETACH};
    Seen s = {};

    gate_reset();
    CHECK(worker_pool_new(1, fake_run, &p) == 0);
    /* One running, the rest queued behind it: the bound counts both. */
    CHECK(worker_pool_submit(p, &req) == 0);
    CHECK(gate_wait_started(1));
    for (unsigned i = 1; i < WORKER_QUEUE_MAX; i++) {
        req.job_id = i + 1;
        CHECK(worker_pool_submit(p, &req) == 0);
    }
    CHECK(worker_pool_submit(p, &req) == -EAGAIN);
    CHECK(worker_pool_outstanding(p) == WORKER_QUEUE_MAX);
    gate_open();
    CHECK(collect(p, &s, WORKER_QUEUE_MAX));
    CHECK(s.results == WORKER_QUEUE_MAX && s.last_r == 0);
    CHECK(worker_pool_outstanding(p) == 0);
    CHECK(worker_pool_shutdown(p, USEC_PER_SEC) == 0);
}

static void test_shutdown_busy(T *t)
{
    WorkerPool *p = NULL;
    WorkerRequest req = {.job_id = 1, .action = WORKER_DETACH};
    uint64_t start;

    gate_reset();
    CHECK(worker_pool_new(2, fake_run, &p) == 0);
    CHECK(worker_pool_submit(p, &req) == 0);
    CHECK(gate_wait_started(1));
    /* A busy thread: the shutdown gives up after its timeout, not later. */
    start = now_usec(CLOCK_MONOTONIC);
    CHECK(worker_pool_shutdown(p, 100000) == -ETIMEDOUT);
    CHECK(now_usec(CLOCK_MONOTONIC) - start < 2 * USEC_PER_SEC);
    CHECK(worker_pool_submit(p, &req) == -ESHUTDOWN);
    /* Once it finishes, a second call joins everything. */
    gate_open();
    CHECK(worker_pool_shutdown(p, WAIT_TIMEOUT_MS * USEC_PER_MSEC) == 0);
}

static void test_action_strings(T *t)
{
    CHECK_STREQ(worker_action_to_string(WORKER_DETACH), "detach");
    CHECK_STREQ(worker_action_to_string(WORKER_DOWNLOAD), "download");
    CHECK_STREQ(worker_action_to_string(WORKER_RESET), "reset");
    CHECK(worker_action_to_string(_WORKER_ACTION_MAX) == NULL);
}

static void test_bad_size(T *t)
{
    WorkerPool *p = NULL;

    CHECK(worker_pool_new(0, fake_run, &p) == -EINVAL);
    CHECK(worker_pool_new(WORKER_POOL_MAX + 1, fake_run, &p) == -EINVAL);
    CHECK(p == NULL);
}

int main(void)
{
    RUN(test_results_and_progress);
    RUN(test_last_progress_kept);
    RUN(test_error_result);
    RUN(test_cancel_flag);
    RUN(test_outstanding_bound);
    RUN(test_shutdown_busy);
    RUN(test_bad_size);
    RUN(test_action_strings);
    return test_summary();
}
