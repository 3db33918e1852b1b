/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * One flash of one image onto the board on one port: its state machine, its
 * progress, its attempts, its error, and everything a history record needs.
 * The state machine is pure (tests/test-job.c); the manager drives it.
 *
 *   queued ◄──► waiting-for-board
 *     │  ▲            │
 *     ├──┼────────────┴──► detaching ──► waiting-for-replug    (run-time board only)
 *     │  │                     │                │
 *     └──┼─────────────────────┴────────────────┴──► downloading ──► manifesting ──► succeeded
 *        │                                              │                 │
 *        └────────── retry (transient errors) ◄─────────┴─────────────────┘
 *
 *   failed, cancelled, interrupted ◄── every state that is not final
 *   expired                        ◄── queued, waiting-for-board (no board in time)
 *
 * succeeded, failed, cancelled, interrupted and expired are final. Downloading
 * may also end in succeeded directly; detaching and waiting-for-replug may also
 * go back to queued for a retry.
 * interrupted: the daemon stopped while the job was live (found again at start).
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
#define JOB_ATTEMPTS_MAX    16u /* retries are at most 10 (WIRE_MAX_RETRIES) */

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
    JOB_INTERRUPTED, /* the daemon stopped while the job was live */
    JOB_EXPIRED,     /* waited for a board longer than allowed */
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
 * a cancel or a timeout are not: trying again cannot help. The set is a column
 * of errcode.c's table (espdfu_err_is_transient()).
 */
bool job_error_is_transient(EspdfuErr e);

/*
 * Failures that follow from an earlier failed attempt rather than from their own
 * cause: the board left in a state the next attempt cannot start from
 * (ERR_DFU_STATE), cannot be opened or claimed again (ERR_USB_OPEN,
 * ERR_USB_CLAIM), or fails while being brought to dfuIDLE before block 0 was
 * sent (a report in DFU_PHASE_PREPARE at block 0).
 */
bool job_error_is_consequence(const ErrInfo *e, bool has_report, const DfuReport *r);

typedef struct JobTransition {
    JobState state;
    uint64_t realtime_usec;
    char reason[JOB_REASON_MAX];
} JobTransition;

/* One try at the board: from the start of the job or a retry to its worker's result. */
typedef struct JobAttempt {
    uint64_t started_usec, finished_usec; /* CLOCK_REALTIME; finished 0 while it runs */
    uint64_t bytes;                       /* bytes the board acknowledged in this attempt */
    ErrInfo error;                        /* code ERR_OK when it succeeded or still runs */
    bool has_report;
    DfuReport report;
} JobAttempt;

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

    /* Every attempt, oldest first; bounded: past the last slot, the last is reused. */
    JobAttempt attempts[JOB_ATTEMPTS_MAX];
    unsigned n_attempts;

    /* Why it failed: ERR_OK (and no report) for a job that succeeded or still runs. */
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
    bool reset_next;    /* the next download attempt starts with a USB reset */
    bool board_left;    /* the board left while its worker ran: the worker's error says where */
    sd_event_source *timeout_timer, *replug_timer, *retry_timer, *wait_timer;
    uint64_t stored_usec; /* CLOCK_MONOTONIC of the last progress written to the store */
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

/*
 * An attempt starts now: the job's start or a retry, before its first step on the
 * board. Resets the download progress (bytes, block, percent, rate), which is per
 * attempt. When all JOB_ATTEMPTS_MAX slots are used the last one is reused, so the
 * first attempt, usually the root cause, is always kept.
 */
void job_begin_attempt(Job *j, uint64_t now_realtime_usec);
/*
 * The running attempt ended: its time, the bytes sent so far, and err (NULL or
 * ERR_OK: it succeeded) with the engine's report (may be NULL). No-op when no
 * attempt runs.
 */
void job_end_attempt(Job *j, uint64_t now_realtime_usec, const ErrInfo *err,
                     const DfuReport *report);

/*
 * Record err and report (may be NULL) as the job's error exactly as given, with no
 * look at the attempts: for what the manager knows as it happens.
 */
void job_set_error(Job *j, const ErrInfo *err, const DfuReport *report);
/*
 * The job ends without success (failed, cancelled, interrupted, expired), for the
 * reason err: the job's error becomes the root cause. When two or more attempts
 * failed, the last one did (end it with job_end_attempt() first) and err is a
 * consequence of an earlier failure (job_error_is_consequence()), that is the
 * first failed attempt's error and report, its message followed by
 * " (retry: <err's message>)" when that fits. Otherwise err and report as given.
 */
void job_set_final_error(Job *j, const ErrInfo *err, const DfuReport *report);
/* A job that succeeded has no error: ERR_OK, an empty message, no report. */
void job_clear_error(Job *j);

/* Where a job is, for failure messages: "during download at 37% (block 412)". */
void job_describe_position(const Job *j, char *buf, size_t size);

static inline void job_freep(Job **j)
{
    if (*j)
        *j = job_free(*j);
}
