/* SPDX-License-Identifier: MIT */
/*
 * daemon/worker.c: the pool's queueing, results through the eventfd, progress
 * coalescing, the outstanding bound and shutdown, with a fake run function in
 * place of the USB one.
 */
#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <unistd.h>

#include "daemon-test.h"
#include "timeutil.h"
#include "worker.h"

static atomic_bool release; /* busy requests wait for this */

static void fake_run(Worker *w, const WorkerRequest *req, WorkerResult *res)
{
    switch (req->action) {
    case WORKER_DOWNLOAD:
        /* A fast download: a progress post per block, as the engine would. */
        for (uint64_t b = 1; b <= 5000; b++)
            worker_post_progress(w, req->job_id, b * 64, 5000 * 64, (uint32_t)b, b == 5000);
        res->r = 0;
        return;
    case WORKER_DETACH:
        /* A long one: until the test lets go, or the cancel flag is set. */
        while (!atomic_load(&release) && !(req->cancel && atomic_load(req->cancel)))
            usleep(1000);
        if (req->cancel && atomic_load(req->cancel))
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

/* Wait on the eventfd the way the loop does, and drain, until want results arrived. */
static bool collect(WorkerPool *p, Seen *s, unsigned want)
{
    uint64_t deadline = now_usec(CLOCK_MONOTONIC) + 10 * USEC_PER_SEC;

    while (s->results < want) {
        struct pollfd pfd = {.fd = worker_pool_fd(p), .events = POLLIN};

        if (now_usec(CLOCK_MONOTONIC) > deadline)
            return false;
        if (poll(&pfd, 1, 100) > 0)
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

    atomic_store(&release, false);
    CHECK(worker_pool_new(2, fake_run, &p) == 0);
    CHECK(worker_pool_submit(p, &req) == 0);
    usleep(20000);
    CHECK(s.results == 0);
    atomic_store(&cancel, true);
    CHECK(collect(p, &s, 1));
    CHECK(s.last_r == -ECANCELED);
    CHECK(worker_pool_shutdown(p, USEC_PER_SEC) == 0);
}

static void test_outstanding_bound(T *t)
{
    WorkerPool *p = NULL;
    WorkerRequest req = {.action = WORKER_DETACH};
    Seen s = {};

    atomic_store(&release, false);
    CHECK(worker_pool_new(1, fake_run, &p) == 0);
    for (unsigned i = 0; i < WORKER_QUEUE_MAX; i++) {
        req.job_id = i + 1;
        CHECK(worker_pool_submit(p, &req) == 0);
    }
    CHECK(worker_pool_submit(p, &req) == -EAGAIN);
    CHECK(worker_pool_outstanding(p) == WORKER_QUEUE_MAX);
    atomic_store(&release, true);
    CHECK(collect(p, &s, WORKER_QUEUE_MAX));
    CHECK(worker_pool_outstanding(p) == 0);
    CHECK(worker_pool_shutdown(p, USEC_PER_SEC) == 0);
}

static void test_shutdown_busy(T *t)
{
    WorkerPool *p = NULL;
    WorkerRequest req = {.job_id = 1, .action = WORKER_DETACH};
    uint64_t start;

    atomic_store(&release, false);
    CHECK(worker_pool_new(2, fake_run, &p) == 0);
    CHECK(worker_pool_submit(p, &req) == 0);
    usleep(20000);
    /* A busy thread: the shutdown gives up after its timeout, not later. */
    start = now_usec(CLOCK_MONOTONIC);
    CHECK(worker_pool_shutdown(p, 100000) == -ETIMEDOUT);
    CHECK(now_usec(CLOCK_MONOTONIC) - start < 2 * USEC_PER_SEC);
    CHECK(worker_pool_submit(p, &req) == -ESHUTDOWN);
    /* Once it finishes, a second call joins everything. */
    atomic_store(&release, true);
    CHECK(worker_pool_shutdown(p, 5 * USEC_PER_SEC) == 0);
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
    printf("strings: %s %s %s\n", worker_action_to_string(WORKER_DETACH),
           worker_action_to_string(WORKER_DOWNLOAD), worker_action_to_string(WORKER_RESET));
    return test_summary();
}
