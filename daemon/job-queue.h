/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The live jobs, in id order, and the per-port FIFO rule: on each port the
 * oldest live job is the only one that may run; ports are independent.
 *
 * "Live" means not final, or final while a worker still holds a message for it
 * (a cancelled job's worker is still talking to the board): such a job keeps
 * its port busy until the worker answers, so the next job on that port never
 * opens a board another thread is using.
 *
 * Pure: no clock, no fds, no threads (tests/test-job.c).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "job.h"

#define JOB_QUEUE_MAX 1024u

typedef struct JobQueue JobQueue;

int job_queue_new(JobQueue **ret);
JobQueue *job_queue_free(JobQueue *q); /* frees the jobs still in it */

/* Insert a job in id order (usually at the end). Takes j on success.
 * -ENOSPC over JOB_QUEUE_MAX, -EEXIST for an id already there. */
int job_queue_push(JobQueue *q, Job *j);
/* Take j out of the queue without freeing it. */
void job_queue_remove(JobQueue *q, Job *j);
Job *job_queue_find(JobQueue *q, uint64_t id);
size_t job_queue_count(const JobQueue *q);
/* Iteration in id order: first with NULL, NULL at the end. */
Job *job_queue_next(JobQueue *q, const Job *prev);

/* The oldest live job on path: the one that runs or runs next there. */
Job *job_queue_head(JobQueue *q, const char *path);
/* Number of live jobs on path. */
size_t job_queue_count_path(JobQueue *q, const char *path);

/*
 * The next job to start: the oldest job that is at the head of its port, in
 * state queued or waiting-for-board, and that can_start() accepts (the board is
 * there, a worker is free, no retry wait). NULL when none.
 */
Job *job_queue_next_startable(JobQueue *q, bool (*can_start)(void *userdata, Job *j),
                              void *userdata);

static inline void job_queue_freep(JobQueue **q)
{
    if (*q)
        *q = job_queue_free(*q);
}
