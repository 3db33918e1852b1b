/* SPDX-License-Identifier: MIT */
#include "job-queue.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* An array in id order: a station has tens of live jobs, so linear scans are cheap
 * and the order is free. */
struct JobQueue {
    Job **jobs;
    size_t n, allocated;
};

int job_queue_new(JobQueue **ret)
{
    JobQueue *q = calloc(1, sizeof(*q));

    if (!q)
        return -ENOMEM;
    *ret = q;
    return 0;
}

JobQueue *job_queue_free(JobQueue *q)
{
    if (!q)
        return NULL;
    for (size_t i = 0; i < q->n; i++)
        job_free(q->jobs[i]);
    free(q->jobs);
    free(q);
    return NULL;
}

/* Index of the first job with an id >= id. */
static size_t lower_bound(const JobQueue *q, uint64_t id)
{
    size_t lo = 0, hi = q->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (q->jobs[mid]->id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int job_queue_push(JobQueue *q, Job *j)
{
    size_t at = lower_bound(q, j->id);

    if (q->n >= JOB_QUEUE_MAX)
        return -ENOSPC;
    if (at < q->n && q->jobs[at]->id == j->id)
        return -EEXIST;
    if (q->n == q->allocated) {
        size_t a = q->allocated ? q->allocated * 2 : 16;
        Job **jobs = realloc(q->jobs, a * sizeof(*jobs));

        if (!jobs)
            return -ENOMEM;
        q->jobs = jobs;
        q->allocated = a;
    }
    /* Usually at the end: new jobs have the largest ids. */
    memmove(q->jobs + at + 1, q->jobs + at, (q->n - at) * sizeof(*q->jobs));
    q->jobs[at] = j;
    q->n++;
    return 0;
}

void job_queue_remove(JobQueue *q, Job *j)
{
    for (size_t i = 0; i < q->n; i++)
        if (q->jobs[i] == j) {
            memmove(q->jobs + i, q->jobs + i + 1, (q->n - i - 1) * sizeof(*q->jobs));
            q->n--;
            return;
        }
}

Job *job_queue_find(JobQueue *q, uint64_t id)
{
    size_t at = lower_bound(q, id);

    return at < q->n && q->jobs[at]->id == id ? q->jobs[at] : NULL;
}

size_t job_queue_count(const JobQueue *q)
{
    return q->n;
}

Job *job_queue_next(JobQueue *q, const Job *prev)
{
    if (!prev)
        return q->n ? q->jobs[0] : NULL;
    for (size_t i = 0; i + 1 < q->n; i++)
        if (q->jobs[i] == prev)
            return q->jobs[i + 1];
    return NULL;
}

Job *job_queue_head(JobQueue *q, const char *path)
{
    for (size_t i = 0; i < q->n; i++)
        if (strcmp(q->jobs[i]->path, path) == 0)
            return q->jobs[i];
    return NULL;
}

size_t job_queue_count_path(JobQueue *q, const char *path)
{
    size_t n = 0;

    for (size_t i = 0; i < q->n; i++)
        if (strcmp(q->jobs[i]->path, path) == 0)
            n++;
    return n;
}

Job *job_queue_next_startable(JobQueue *q, bool (*can_start)(void *userdata, Job *j),
                              void *userdata)
{
    for (size_t i = 0; i < q->n; i++) {
        Job *j = q->jobs[i];

        if (j->state != JOB_QUEUED && j->state != JOB_WAITING_FOR_BOARD)
            continue;
        if (job_queue_head(q, j->path) != j)
            continue;
        if (can_start(userdata, j))
            return j;
    }
    return NULL;
}
