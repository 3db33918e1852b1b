/* SPDX-License-Identifier: MIT */
#include "job.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-event.h>

#include "util.h"

/* One row per state, indexed by it: the wire name, and the two classes the manager asks about. */
static const struct {
    const char *name;
    bool final;  /* nothing happens to the job any more */
    bool active; /* the job owns its board */
} job_states[] = {
        [JOB_QUEUED] = {"queued", false, false},
        [JOB_WAITING_FOR_BOARD] = {"waiting-for-board", false, false},
        [JOB_DETACHING] = {"detaching", false, true},
        [JOB_WAITING_FOR_REPLUG] = {"waiting-for-replug", false, true},
        [JOB_DOWNLOADING] = {"downloading", false, true},
        [JOB_MANIFESTING] = {"manifesting", false, true},
        [JOB_SUCCEEDED] = {"succeeded", true, false},
        [JOB_FAILED] = {"failed", true, false},
        [JOB_CANCELLED] = {"cancelled", true, false},
        [JOB_INTERRUPTED] = {"interrupted", true, false},
        [JOB_EXPIRED] = {"expired", true, false},
};

_Static_assert(ELEMENTSOF(job_states) == _JOB_STATE_MAX, "job_states[] needs one row per JobState");

static bool job_state_valid(JobState s)
{
    return (unsigned)s < ELEMENTSOF(job_states);
}

const char *job_state_to_string(JobState s)
{
    return job_state_valid(s) ? job_states[s].name : NULL;
}

JobState job_state_from_string(const char *s)
{
    for (size_t i = 0; s && i < ELEMENTSOF(job_states); i++)
        if (job_states[i].name && strcmp(job_states[i].name, s) == 0)
            return (JobState)i;
    return _JOB_STATE_MAX;
}

bool job_state_is_final(JobState s)
{
    return job_state_valid(s) && job_states[s].final;
}

bool job_state_is_active(JobState s)
{
    return job_state_valid(s) && job_states[s].active;
}

bool job_state_transition_allowed(JobState from, JobState to)
{
    /* Failing, cancelling and a daemon stop are possible from every state that is not final. */
    if (to == JOB_FAILED || to == JOB_CANCELLED || to == JOB_INTERRUPTED)
        return !job_state_is_final(from);
    /* Only a job that never got its board can expire waiting for it. */
    if (to == JOB_EXPIRED)
        return from == JOB_QUEUED || from == JOB_WAITING_FOR_BOARD;
    switch (from) {
    case JOB_QUEUED:
        return to == JOB_WAITING_FOR_BOARD || to == JOB_DETACHING || to == JOB_DOWNLOADING;
    case JOB_WAITING_FOR_BOARD:
        /* back to queued: the board is there, a worker is not yet */
        return to == JOB_QUEUED || to == JOB_DETACHING || to == JOB_DOWNLOADING;
    case JOB_DETACHING:
        /* straight to downloading: the board turned out to be in DFU mode already */
        return to == JOB_WAITING_FOR_REPLUG || to == JOB_DOWNLOADING || to == JOB_QUEUED;
    case JOB_WAITING_FOR_REPLUG:
        return to == JOB_DOWNLOADING || to == JOB_QUEUED;
    case JOB_DOWNLOADING:
        return to == JOB_MANIFESTING || to == JOB_SUCCEEDED || to == JOB_QUEUED;
    case JOB_MANIFESTING:
        return to == JOB_SUCCEEDED || to == JOB_QUEUED;
    case JOB_SUCCEEDED:
    case JOB_FAILED:
    case JOB_CANCELLED:
    case JOB_INTERRUPTED:
    case JOB_EXPIRED:
    case _JOB_STATE_MAX:
        break;
    }
    return false;
}

bool job_error_is_transient(EspdfuErr e)
{
    /* The retry class is a column of the error table, beside the name and errno. */
    return espdfu_err_is_transient(e);
}

bool job_error_is_consequence(const ErrInfo *e, bool has_report, const DfuReport *r)
{
    assert(e);
    if (e->code == ERR_DFU_STATE || e->code == ERR_USB_OPEN || e->code == ERR_USB_CLAIM)
        return true;
    return has_report && r && r->phase == DFU_PHASE_PREPARE && r->block == 0;
}

int job_new(uint64_t id, const char *path, const char *source, CachedImage *image,
            const char *image_name, uint64_t now_realtime_usec, Job **ret)
{
    _cleanup_(job_freep) Job *j = NULL;

    if (strlen(path) >= sizeof(j->path))
        return -ENAMETOOLONG;
    j = calloc(1, sizeof(*j));
    if (!j)
        return -ENOMEM;
    j->id = id;
    snprintf(j->path, sizeof(j->path), "%s", path);
    j->source = strdup(source);
    j->image_name = strdup(image_name);
    if (!j->source || !j->image_name)
        return -ENOMEM;
    j->image = cached_image_ref(image);
    j->bytes_total = image->image->payload_size;
    j->created_usec = now_realtime_usec;
    j->state = JOB_QUEUED;
    j->transitions[0] = (JobTransition){.state = JOB_QUEUED, .realtime_usec = now_realtime_usec};
    snprintf(j->transitions[0].reason, JOB_REASON_MAX, "queued by %s", source);
    j->n_transitions = 1;
    atomic_init(&j->cancel, false);
    *ret = TAKE_PTR(j);
    return 0;
}

Job *job_free(Job *j)
{
    if (!j)
        return NULL;
    sd_event_source_disable_unref(j->timeout_timer);
    sd_event_source_disable_unref(j->replug_timer);
    sd_event_source_disable_unref(j->retry_timer);
    sd_event_source_disable_unref(j->wait_timer);
    cached_image_unref(j->image);
    strv_free(j->hook_argv);
    free(j->source);
    free(j->image_name);
    free(j);
    return NULL;
}

int job_set_after(Job *j, AfterAction after, char *const *hook_argv, unsigned hook_timeout_s)
{
    size_t n = 0;
    char **v;

    j->after = after;
    j->hook_timeout_s = hook_timeout_s;
    if (!hook_argv)
        return 0;
    while (hook_argv[n])
        n++;
    v = calloc(n + 1, sizeof(char *));
    if (!v)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        if (!(v[i] = strdup(hook_argv[i]))) {
            strv_free(v);
            return -ENOMEM;
        }
    strv_free(j->hook_argv);
    j->hook_argv = v;
    return 0;
}

int job_set_state(Job *j, JobState to, uint64_t now_realtime_usec, const char *fmt, ...)
{
    JobTransition *t;
    va_list ap;

    if (!job_state_transition_allowed(j->state, to))
        return -EINVAL;
    /* Bounded: retries are capped, but keep the latest transition whatever happens. */
    if (j->n_transitions < JOB_TRANSITIONS_MAX)
        j->n_transitions++;
    t = &j->transitions[j->n_transitions - 1];
    t->state = to;
    t->realtime_usec = now_realtime_usec;
    va_start(ap, fmt);
    vsnprintf(t->reason, sizeof(t->reason), fmt, ap);
    va_end(ap);
    if (job_state_is_active(to) && !j->started_usec)
        j->started_usec = now_realtime_usec;
    if (job_state_is_final(to))
        j->finished_usec = now_realtime_usec;
    j->state = to;
    return 0;
}

void job_begin_download(Job *j, uint64_t now_monotonic_usec)
{
    j->bytes_sent = 0;
    j->block = 0;
    j->percent = 0;
    j->rate = 0;
    j->download_started_usec = now_monotonic_usec;
}

void job_set_progress(Job *j, uint64_t sent, uint64_t total, uint32_t block,
                      uint64_t now_monotonic_usec)
{
    uint64_t elapsed = now_monotonic_usec > j->download_started_usec
                               ? now_monotonic_usec - j->download_started_usec
                               : 0;

    j->bytes_sent = sent;
    j->bytes_total = total;
    j->block = block;
    j->percent = total ? (unsigned)(sent * 100 / total) : 0;
    j->rate = elapsed ? sent * 1000000u / elapsed : 0;
}

void job_begin_attempt(Job *j, uint64_t now_realtime_usec)
{
    /* Bounded like the transitions; the first attempt is the one a root cause needs. */
    if (j->n_attempts < JOB_ATTEMPTS_MAX)
        j->n_attempts++;
    j->attempts[j->n_attempts - 1] = (JobAttempt){.started_usec = now_realtime_usec};
    /* The progress fields describe the current attempt only. */
    j->bytes_sent = 0;
    j->block = 0;
    j->percent = 0;
    j->rate = 0;
}

void job_end_attempt(Job *j, uint64_t now_realtime_usec, const ErrInfo *err,
                     const DfuReport *report)
{
    JobAttempt *a;

    if (j->n_attempts == 0)
        return;
    a = &j->attempts[j->n_attempts - 1];
    if (a->finished_usec != 0)
        return;
    /* A clock stepped back must not make "finished" 0, which means "still runs". */
    a->finished_usec = now_realtime_usec ? now_realtime_usec : 1;
    /* Progress comes throttled; a failure's report knows exactly how far the board got. */
    a->bytes = report && report->offset > j->bytes_sent ? report->offset : j->bytes_sent;
    a->error = err && err->code != ERR_OK ? *err : (ErrInfo){.code = ERR_OK};
    a->has_report = report != NULL;
    a->report = report ? *report : (DfuReport){0};
}

void job_set_error(Job *j, const ErrInfo *err, const DfuReport *report)
{
    j->error = *err;
    j->has_report = report != NULL;
    if (report)
        j->report = *report;
}

static const JobAttempt *first_failed_attempt(const Job *j, unsigned *n_failed)
{
    const JobAttempt *first = NULL;

    *n_failed = 0;
    for (unsigned i = 0; i < j->n_attempts; i++) {
        if (j->attempts[i].error.code == ERR_OK)
            continue;
        if (!first)
            first = &j->attempts[i];
        (*n_failed)++;
    }
    return first;
}

void job_set_final_error(Job *j, const ErrInfo *err, const DfuReport *report)
{
    const JobAttempt *root, *last;
    unsigned n_failed;
    size_t len;

    assert(err);
    root = first_failed_attempt(j, &n_failed);
    last = j->n_attempts ? &j->attempts[j->n_attempts - 1] : NULL;
    /*
     * A retry that cannot even start (the board still in dfuERROR, the device not
     * open again) says little; the failure that made it retry is what to fix.
     */
    if (n_failed < 2 || !last || last->error.code == ERR_OK ||
        !job_error_is_consequence(err, report != NULL, report)) {
        job_set_error(j, err, report);
        return;
    }
    j->error = root->error;
    j->has_report = root->has_report;
    j->report = root->has_report ? root->report : (DfuReport){0};
    len = strlen(j->error.message);
    if (len + strlen(" (retry: )") + strlen(err->message) < sizeof(j->error.message))
        snprintf(j->error.message + len, sizeof(j->error.message) - len, " (retry: %s)",
                 err->message);
}

void job_clear_error(Job *j)
{
    j->error = (ErrInfo){.code = ERR_OK};
    j->has_report = false;
    j->report = (DfuReport){0};
}

void job_describe_position(const Job *j, char *buf, size_t size)
{
    switch (j->state) {
    case JOB_QUEUED:
    case JOB_WAITING_FOR_BOARD:
        snprintf(buf, size, "%s",
                 j->retries_done ? "during a retry wait" : "before the job started");
        return;
    case JOB_DETACHING:
        snprintf(buf, size, "during detach");
        return;
    case JOB_WAITING_FOR_REPLUG:
        snprintf(buf, size, "while waiting for the board to re-enumerate in DFU mode");
        return;
    case JOB_DOWNLOADING:
        snprintf(buf, size, "during download at %u%% (block %" PRIu32 ")", j->percent, j->block);
        return;
    case JOB_MANIFESTING:
        snprintf(buf, size, "during manifestation, after all %" PRIu64 " bytes", j->bytes_total);
        return;
    case JOB_SUCCEEDED:
    case JOB_FAILED:
    case JOB_CANCELLED:
    case JOB_INTERRUPTED:
    case JOB_EXPIRED:
    case _JOB_STATE_MAX:
        break;
    }
    snprintf(buf, size, "after the job ended (%s)", job_state_to_string(j->state));
}
