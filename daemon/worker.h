/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * A bounded pool of threads that do the blocking USB work.
 *
 * The main thread submits requests; a worker opens the board's devnode, runs
 * one DFU step (detach, download or reset), closes the board again (no handle
 * stays open between requests: an idle open handle costs, and spins under
 * umockdev) and posts a result. Results and progress come back through a
 * mutex-protected queue and an eventfd the main loop watches.
 *
 * Progress is coalesced: each worker has one slot, overwritten at most every
 * WORKER_PROGRESS_INTERVAL_USEC, so the main thread sees at most ~10 updates
 * per second per job however fast blocks go, and nothing grows unbounded.
 *
 * Workers never touch loop-owned objects. What a request points to (the
 * image, the cancel flag) is owned by the job that sent it, and the manager
 * keeps that job alive until its result has been read.
 */

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "dfu.h"
#include "errcode.h"
#include "image.h"

#define WORKER_PROGRESS_INTERVAL_USEC 100000u
#define WORKER_QUEUE_MAX              1024u
#define WORKER_POOL_MAX               256u

typedef enum WorkerAction {
    WORKER_DETACH,   /* run-time board: DFU_DETACH; answers already_dfu for a DFU-mode board */
    WORKER_DOWNLOAD, /* DFU-mode board: the whole download and manifestation */
    WORKER_RESET,    /* USB port reset after a successful job */
    _WORKER_ACTION_MAX,
} WorkerAction;

const char *worker_action_to_string(WorkerAction a); /* "detach", "download", "reset" */

typedef struct WorkerRequest {
    uint64_t job_id;
    WorkerAction action;
    char devnode[256];
    char path[64];
    const Image *image; /* WORKER_DOWNLOAD; immutable while shared */
    bool reset_first;   /* WORKER_DOWNLOAD: a USB port reset before it (a retry after a hang) */
    DfuConfig dfu;
    const atomic_bool *cancel;
} WorkerRequest;

typedef struct WorkerResult {
    uint64_t job_id;
    WorkerAction action;
    int r; /* 0 or negative errno; err says why */
    ErrInfo err;
    bool has_report;
    DfuReport report;
    bool already_dfu; /* WORKER_DETACH: the board was in DFU mode, no detach needed */
    uint16_t pid;     /* of the board opened, 0 if it could not be */
    uint64_t elapsed_usec;
} WorkerResult;

typedef struct WorkerProgress {
    uint64_t job_id;
    uint64_t sent, total;
    uint32_t block;
} WorkerProgress;

typedef struct Worker Worker;
typedef struct WorkerPool WorkerPool;

/* Runs one request on a worker thread; the default talks to the board via usb.c. */
typedef void (*WorkerRunFn)(Worker *w, const WorkerRequest *req, WorkerResult *res);

/* From a WorkerRunFn: report progress (rate-limited here; force for the last block). */
void worker_post_progress(Worker *w, uint64_t job_id, uint64_t sent, uint64_t total, uint32_t block,
                          bool force);

/*
 * Start n threads (signals blocked in them). run NULL means the USB
 * implementation; tests pass their own.
 */
int worker_pool_new(unsigned n, WorkerRunFn run, WorkerPool **ret);

/* The eventfd that becomes readable when results or progress are waiting. */
int worker_pool_fd(const WorkerPool *p);

/* Queue a request; -EAGAIN when WORKER_QUEUE_MAX requests are outstanding. */
int worker_pool_submit(WorkerPool *p, const WorkerRequest *req);

/*
 * Read everything waiting: every progress slot first, then every result, so a
 * job's last progress never arrives after its result.
 */
void worker_pool_drain(WorkerPool *p, void (*on_progress)(void *userdata, const WorkerProgress *pr),
                       void (*on_result)(void *userdata, const WorkerResult *res), void *userdata);

/* Requests submitted whose result has not been drained yet. */
unsigned worker_pool_outstanding(const WorkerPool *p);
unsigned worker_pool_size(const WorkerPool *p);

/*
 * Stop: queued requests are dropped, idle threads exit, and threads still busy
 * get until timeout_usec to finish their request. 0 when every thread was
 * joined and the pool freed; -ETIMEDOUT when some are still busy, in which case
 * the pool is left allocated for them (the process is about to exit, or the
 * caller tries again later).
 */
int worker_pool_shutdown(WorkerPool *p, uint64_t timeout_usec);
