/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * One flash of one image onto the board on one port: its state machine, its
 * progress, its error, and everything a history record needs. The state
 * machine is pure (tests/test-job.c); the manager drives it.
 *
 *   queued ─► waiting-for-board ─► detaching ─► waiting-for-replug ─► downloading ─► manifesting ─►
 * succeeded │  ▲            │                 (run-time board only)               │  │ │
 * └────────────┴──────────── retry (transient errors) ◄──────────────┘  │
 *     └─────────────────────────────── failed / cancelled ◄────────────────────┘
 *
 * Every transition is recorded with a CLOCK_REALTIME timestamp and a reason.
 */

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "dfu.h"
#include "errcode.h"
#include "image-cache.h"

typedef struct sd_event_source sd_event_source;

#define JOB_TRANSITIONS_MAX 64u
#define JOB_REASON_MAX      160u

typedef enum JobState {
    JOB_QUEUED,
    JOB_WAITING_FOR_BOARD,
    JOB_DETACHING,
    JOB_WAITING_FOR_REPLUG,
    JOB_DOWNLOADING,
    JOB_MANIFESTING,
    JOB_SUCCEEDED,
    JOB_FAILED,
    JOB_CANCELLED,
    _JOB_STATE_MAX,
} JobState;

const char *job_state_to_string(JobState s);   /* "queued", "waiting-for-board", ... */
JobState job_state_from_string(const char *s); /* _JOB_STATE_MAX if unknown */
bool job_state_is_final(JobState s);
/* Detaching .. manifesting: the job owns its board. */
bool job_state_is_active(JobState s);
bool job_state_transition_allowed(JobState from, JobState to);

/*
 * Errors worth another attempt on the same plug: the USB link or the board's
 * flash hiccupped. A board that left, a wrong image, a missing DFU interface,
 * a cancel or a timeout are not: trying again cannot help.
 */
bool job_error_is_transient(EspdfuErr e);

typedef struct JobTransition {
    JobState state;
    uint64_t realtime_usec;
    char reason[JOB_REASON_MAX];
} JobTransition;

typedef struct Job {
    uint64_t id;
    char path[64];
    char *source;     /* rule name, or "manual" */
    char *image_name; /* what the operator called it: a file name */
    CachedImage *image;
    bool auto_flash; /* queued by a rule for one plug */

    JobState state;
    JobTransition transitions[JOB_TRANSITIONS_MAX];
    unsigned n_transitions;
    uint64_t created_usec, started_usec, finished_usec; /* CLOCK_REALTIME, 0 = not yet */

    /* The board, as it was when the job started. */
    Chip chip;
    uint16_t pid;

    /* Progress of the current download attempt. */
    uint64_t bytes_sent, bytes_total;
    uint32_t block;
    unsigned percent;
    uint64_t rate;                   /* bytes/s since the attempt started */
    uint64_t download_started_usec;  /* CLOCK_MONOTONIC */
    uint64_t download_duration_usec; /* of the successful attempt */

    /* Why it failed. */
    ErrInfo error;
    bool has_report;
    DfuReport report;

    unsigned retries_done, retries_allowed;
    unsigned timeout_s;
    AfterAction after;
    char **hook_argv; /* copied from the rule: a reload may drop the rule meanwhile */
    unsigned hook_timeout_s;

    /* Owned by the manager. */
    atomic_bool cancel; /* read by the worker between blocks; outlives every message */
    bool worker_active; /* a worker holds a message for this job */
    bool replugged;     /* the board came back while the detach result was on its way */
    sd_event_source *timeout_timer, *replug_timer, *retry_timer;
} Job;

int job_new(uint64_t id, const char *path, const char *source, CachedImage *image,
            const char *image_name, uint64_t now_realtime_usec, Job **ret);
Job *job_free(Job *j);

/* Copy a rule's after= action and hook into the job. */
int job_set_after(Job *j, AfterAction after, char *const *hook_argv, unsigned hook_timeout_s);

/*
 * Move to state `to`, recording the time and the reason. -EINVAL (and no
 * change) for a transition the state machine does not have.
 */
int job_set_state(Job *j, JobState to, uint64_t now_realtime_usec, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

/* A new download attempt starts now (CLOCK_MONOTONIC). */
void job_begin_download(Job *j, uint64_t now_monotonic_usec);
void job_set_progress(Job *j, uint64_t sent, uint64_t total, uint32_t block,
                      uint64_t now_monotonic_usec);
void job_set_error(Job *j, const ErrInfo *err, const DfuReport *report);

/* Where a job is, for failure messages: "during download at 37% (block 412)". */
void job_describe_position(const Job *j, char *buf, size_t size);

static inline void job_freep(Job **j)
{
    if (*j)
        *j = job_free(*j);
}
