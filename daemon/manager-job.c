/* SPDX-License-Identifier: MIT */
/*
 * The manager's jobs: queueing, starting on a free worker, the detach and
 * replug wait, worker results and progress, retries, timeouts, cancel, and
 * the after= action once a job is over.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "job-json.h"
#include "manager-internal.h"
#include "timeutil.h"
#include "util.h"

static LogJobFields job_fields(const Job *j, const char *message_id)
{
    return (LogJobFields){
            .message_id = message_id,
            .job = j->id,
            .path = j->path,
            .chip = j->chip != CHIP_UNKNOWN ? chip_to_string(j->chip) : NULL,
            .image_sha256 = j->image->sha256_hex,
            .result = job_state_is_final(j->state) ? job_state_to_string(j->state) : NULL,
    };
}

static void job_state(Manager *m, Job *j, JobState to, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

/* Every transition goes through here: recorded, logged at debug, announced. */
static void job_state(Manager *m, Job *j, JobState to, const char *fmt, ...)
{
    char reason[JOB_REASON_MAX];
    LogJobFields f = job_fields(j, NULL);
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    if (job_set_state(j, to, now_usec(CLOCK_REALTIME), "%s", reason) < 0) {
        log_job(LOG_ERR, &f, "internal error: no transition from %s to %s",
                job_state_to_string(j->state), job_state_to_string(to));
        return;
    }
    /* The end of a job has its own line, with its result and error code. */
    if (!job_state_is_final(to))
        log_job(LOG_DEBUG, &f, "%s: %s", job_state_to_string(to), reason);
    manager_store_job(m, j);
    manager_emit(m, MANAGER_EVENT_JOB_CHANGED, device_table_get(m->devices, j->path), j);
}

/* ---- the store: every job a row from the moment it is queued ---- */

void manager_store_job(Manager *m, const Job *j)
{
    json_object *o;
    int r;

    if (!m->store || !j->id)
        return;
    o = job_to_json(j);
    if (!o) {
        log_error("job %" PRIu64 ": out of memory, its state is not written to the store", j->id);
        return;
    }
    r = store_put_job(m->store,
                      &(StoreJobRow){
                              .id = j->id,
                              .path = j->path,
                              .state = job_state_to_string(j->state),
                              .sha256 = j->image->sha256_hex,
                              .created_usec = j->created_usec,
                              .finished_usec = j->finished_usec,
                              .json = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN),
                      });
    if (r == -ENOMEM)
        log_error("job %" PRIu64 ": out of memory, its state is not written to the store", j->id);
    json_object_put(o);
}

void manager_store_plug(Manager *m, const Device *d, uint64_t left_usec)
{
    StorePlug p = {
            .id = d->plug_id,
            .busnum = d->info.busnum,
            .devnum = d->info.devnum,
            .arrived_usec = d->arrived_realtime_usec,
            .left_usec = left_usec,
            .job = d->plug_id,
    };

    if (!m->store || !d->plug_id)
        return;
    snprintf(p.boot_id, sizeof(p.boot_id), "%s", m->boot_id);
    snprintf(p.path, sizeof(p.path), "%s", d->info.path);
    snprintf(p.outcome, sizeof(p.outcome), "%s", d->plug_outcome);
    if (store_put_plug(m->store, &p) < 0)
        log_error("[%s] the plug record of job %" PRIu64 " cannot be queued for the store",
                  d->info.path, d->plug_id);
}

typedef struct Inserting {
    Manager *manager;
    Job **jobs;
    size_t n;
    ManagerQueuedFn fn;
    void *userdata;
    unsigned busnum, devnum; /* the plug an auto-flash job belongs to */
    struct Inserting *next;
} Inserting;

static void inserting_drop_jobs(Inserting *ins)
{
    for (size_t i = 0; i < ins->n; i++)
        job_free(ins->jobs[i]);
    ins->jobs = (free(ins->jobs), NULL);
    ins->n = 0;
}

static void inserting_free(Inserting *ins)
{
    inserting_drop_jobs(ins);
    free(ins);
}

static void inserting_unlink(Manager *m, Inserting *ins)
{
    for (Inserting **p = &m->inserting; *p; p = &(*p)->next)
        if (*p == ins) {
            *p = ins->next;
            m->n_inserting -= ins->n;
            return;
        }
}

void manager_free_inserting(Manager *m)
{
    while (m->inserting) {
        Inserting *ins = m->inserting;

        inserting_unlink(m, ins);
        /* The store still answers later: with nothing to point to. */
        inserting_drop_jobs(ins);
        ins->manager = NULL;
    }
}

static int on_wait_timeout(sd_event_source *s, uint64_t usec, void *userdata);
static int job_timer(Manager *m, sd_event_source **s, uint64_t usec,
                     sd_event_time_handler_t handler);

/* A job for an empty port waits at most wait-timeout-s for a board. */
static void job_arm_wait(Manager *m, Job *j)
{
    LogJobFields f = job_fields(j, NULL);

    if (m->config->wait_timeout_s &&
        job_timer(m, &j->wait_timer, (uint64_t)m->config->wait_timeout_s * USEC_PER_SEC,
                  on_wait_timeout) < 0)
        log_job(LOG_WARNING, &f, "cannot arm the wait timer: the job waits without a limit");
}

/* A committed job joins its port's queue. */
static void job_accepted(Manager *m, Job *j, const Inserting *ins)
{
    Device *d = device_table_get(m->devices, j->path);
    LogJobFields f = job_fields(j, NULL);

    if (job_queue_push(m->jobs, j) < 0) { /* capacity was reserved: cannot happen */
        log_job(LOG_ERR, &f, "internal error: no room in the job table");
        job_free(j);
        return;
    }
    log_job(LOG_INFO, &f, "queued by %s%s: %s (%zu bytes, sha256 %.16s)",
            j->auto_flash ? "rule " : "", j->source, j->image_name, j->image->image->payload_size,
            j->image->sha256_hex);
    manager_emit(m, MANAGER_EVENT_JOB_QUEUED, d, j);
    if (j->auto_flash) {
        if (!d || !d->present || d->info.busnum != ins->busnum || d->info.devnum != ins->devnum) {
            /* The plug it was for ended while the row was written. */
            manager_job_finish(m, j, JOB_FAILED, ERR_DISCONNECTED,
                               "board disconnected before the job could start");
            return;
        }
        d->plug_id = j->id;
        d->plug_outcome[0] = '\0';
        d->note[0] = '\0';
    } else if (j->state == JOB_WAITING_FOR_BOARD)
        job_arm_wait(m, j);
}

static void on_inserted(void *userdata, int r, const char *message, const uint64_t *ids, size_t n)
{
    Inserting *ins = userdata;
    Manager *m = ins->manager;

    if (!m) { /* the manager is gone: its callers still learn it, to free what they hold */
        if (ins->fn)
            ins->fn(NULL, ins->userdata, -ECANCELED, "espdfud is stopping", NULL, 0);
        free(ins->jobs);
        free(ins);
        return;
    }
    inserting_unlink(m, ins);
    if (r < 0) {
        log_error("cannot record %zu job%s: %s", ins->n, ins->n == 1 ? "" : "s", message);
        if (ins->fn)
            ins->fn(m, ins->userdata, r, message, NULL, 0);
        inserting_free(ins);
        manager_update_status(m);
        return;
    }
    for (size_t i = 0; i < ins->n && i < n; i++)
        ins->jobs[i]->id = ids[i];
    if (ins->fn)
        ins->fn(m, ins->userdata, 0, NULL, ins->jobs, ins->n);
    for (size_t i = 0; i < ins->n; i++)
        job_accepted(m, TAKE_PTR(ins->jobs[i]), ins);
    inserting_free(ins);
    manager_pump(m);
    manager_update_status(m);
}

static int job_from_spec(Manager *m, const JobSpec *spec, Job **ret)
{
    _cleanup_(job_freep) Job *j = NULL;
    Device *d = device_table_get(m->devices, spec->path);
    uint64_t now = now_usec(CLOCK_REALTIME);
    int r;

    r = job_new(0, spec->path, spec->source, spec->image, spec->image_name, now, &j);
    if (r < 0)
        return r;
    j->auto_flash = spec->auto_flash;
    j->retries_allowed = spec->retries;
    j->timeout_s = spec->timeout_s;
    r = job_set_after(j, spec->after, spec->hook_argv, spec->hook_timeout_s);
    if (r < 0)
        return r;
    /* Known before the row is written, so queueing costs exactly one commit. */
    if (!d || !d->present)
        (void)job_set_state(j, JOB_WAITING_FOR_BOARD, now, "no board on %s", j->path);
    *ret = TAKE_PTR(j);
    return 0;
}

int manager_queue_jobs(Manager *m, const JobSpec *specs, size_t n, ManagerQueuedFn fn,
                       void *userdata)
{
    _cleanup_free_ StoreJobRow *rows = NULL;
    json_object **docs = NULL;
    Inserting *ins;
    Device *d;
    int r = 0;

    if (!m->store)
        return -ENODEV;
    if (job_queue_count(m->jobs) + m->n_inserting + n > JOB_QUEUE_MAX)
        return -ENOSPC;
    ins = calloc(1, sizeof(*ins));
    rows = calloc(n, sizeof(*rows));
    docs = calloc(n, sizeof(*docs));
    if (!ins || !rows || !docs || !(ins->jobs = calloc(n, sizeof(*ins->jobs)))) {
        free(ins);
        free(docs);
        return -ENOMEM;
    }
    *ins = (Inserting){.manager = m, .jobs = ins->jobs, .fn = fn, .userdata = userdata};
    for (size_t i = 0; i < n && r >= 0; i++) {
        r = job_from_spec(m, &specs[i], &ins->jobs[i]);
        if (r < 0)
            break;
        ins->n++;
        docs[i] = job_to_json(ins->jobs[i]);
        if (!docs[i]) {
            r = -ENOMEM;
            break;
        }
        rows[i] = (StoreJobRow){
                .path = ins->jobs[i]->path,
                .state = job_state_to_string(ins->jobs[i]->state),
                .sha256 = ins->jobs[i]->image->sha256_hex,
                .created_usec = ins->jobs[i]->created_usec,
                .json = json_object_to_json_string_ext(docs[i], JSON_C_TO_STRING_PLAIN),
        };
    }
    d = n == 1 && specs[0].auto_flash ? device_table_get(m->devices, specs[0].path) : NULL;
    if (r >= 0 && d) {
        StorePlug plug = {
                .busnum = d->info.busnum,
                .devnum = d->info.devnum,
                .arrived_usec = d->arrived_realtime_usec,
        };

        snprintf(plug.boot_id, sizeof(plug.boot_id), "%s", m->boot_id);
        snprintf(plug.path, sizeof(plug.path), "%s", d->info.path);
        ins->busnum = d->info.busnum;
        ins->devnum = d->info.devnum;
        r = store_insert_jobs(m->store, rows, n, &plug, on_inserted, ins);
    } else if (r >= 0)
        r = store_insert_jobs(m->store, rows, n, NULL, on_inserted, ins);
    for (size_t i = 0; i < n; i++)
        json_object_put(docs[i]);
    free(docs);
    if (r < 0) {
        inserting_free(ins);
        return r == -EAGAIN ? -ENOSPC : r;
    }
    ins->next = m->inserting;
    m->inserting = ins;
    m->n_inserting += n;
    return 0;
}

/* A finished job whose worker has answered leaves the live queue for the history. */
static void job_retire(Manager *m, Job *j)
{
    if (!job_state_is_final(j->state) || j->worker_active)
        return;
    job_queue_remove(m->jobs, j);
    while (job_queue_count(m->history) >= MANAGER_HISTORY_MAX) {
        Job *oldest = job_queue_next(m->history, NULL);

        job_queue_remove(m->history, oldest);
        job_free(oldest);
    }
    if (job_queue_push(m->history, j) < 0)
        job_free(j);
    /* A slot is free: a board the full table kept waiting gets its job now. */
    manager_auto_flash_all(m);
}

/* ---- talking to workers ---- */

static void job_dispatch(Manager *m, Job *j, WorkerAction action)
{
    Device *d = device_table_get(m->devices, j->path);
    WorkerRequest req = {
            .job_id = j->id,
            .action = action,
            .image = j->image->image,
            .cancel = &j->cancel,
    };
    int r;

    dfu_config_init(&req.dfu);
    req.dfu.transfer_timeout_ms = m->config->transfer_timeout_ms;
    snprintf(req.path, sizeof(req.path), "%s", j->path);
    if (action == WORKER_DOWNLOAD) {
        req.reset_first = j->reset_next;
        j->reset_next = false;
    }
    if (!d || !d->present) {
        r = -ENODEV;
    } else {
        snprintf(req.devnode, sizeof(req.devnode), "%s", d->info.devnode);
        r = worker_pool_submit(m->pool, &req);
    }
    if (r < 0) {
        if (!job_state_is_final(j->state))
            manager_job_finish(m, j, JOB_FAILED, r == -ENODEV ? ERR_DISCONNECTED : ERR_USB_OPEN,
                               "cannot %s the board: %s", worker_action_to_string(action),
                               strerror(-r));
        return;
    }
    j->worker_active = true;
}

static void job_start_download(Manager *m, Job *j, const char *why)
{
    if (j->state != JOB_DOWNLOADING) {
        job_begin_download(j, now_usec(CLOCK_MONOTONIC));
        job_state(m, j, JOB_DOWNLOADING, "%s", why);
    }
    job_dispatch(m, j, WORKER_DOWNLOAD);
}

static int on_job_timeout(sd_event_source *s, uint64_t usec, void *userdata)
{
    Manager *m = userdata;
    char where[128];

    for (Job *j = job_queue_next(m->jobs, NULL); j; j = job_queue_next(m->jobs, j))
        if (j->timeout_timer == s) {
            job_describe_position(j, where, sizeof(where));
            manager_job_finish(m, j, JOB_FAILED, ERR_JOB_TIMEOUT, "job timed out after %u s, %s",
                               j->timeout_s, where);
            break;
        }
    manager_pump(m);
    manager_update_status(m);
    return 0;
}

static int job_timer(Manager *m, sd_event_source **s, uint64_t usec,
                     sd_event_time_handler_t handler)
{
    *s = sd_event_source_disable_unref(*s);
    return sd_event_add_time_relative(m->event, s, CLOCK_MONOTONIC, usec, 0, handler, m);
}

static void job_start(Manager *m, Job *j)
{
    Device *d = device_table_get(m->devices, j->path);
    const Image *img = j->image->image;
    bool first = j->started_usec == 0;
    LogJobFields f;

    /* Refused before the board is touched: a wrong image sends no control transfer. */
    if (!image_matches_device(img, d->info.vid, d->info.pid))
        return manager_job_finish(m, j, JOB_FAILED, ERR_WRONG_CHIP,
                                  "image is for %04x:%04x (%s) but the board is %04x:%04x (%s)",
                                  img->vid, img->pid, chip_to_string(img->chip), d->info.vid,
                                  d->info.pid, chip_to_string(d->info.chip));
    j->chip = d->info.chip;
    j->pid = d->info.pid;
    j->wait_timer = sd_event_source_disable_unref(j->wait_timer);
    job_begin_attempt(j, now_usec(CLOCK_REALTIME));
    d->plug = DEVICE_PLUG_BUSY;
    d->last_job = j->id;
    if (first) {
        if (job_timer(m, &j->timeout_timer, (uint64_t)j->timeout_s * USEC_PER_SEC, on_job_timeout) <
            0)
            return manager_job_finish(m, j, JOB_FAILED, ERR_USB_OPEN, "cannot arm the job timer");
        f = job_fields(j, LOG_MESSAGE_JOB_STARTED);
        log_job(LOG_INFO, &f, "started: %s board in %s mode, %zu bytes to write",
                chip_to_string(j->chip), device_mode_to_string(d->info.mode), img->payload_size);
        manager_emit(m, MANAGER_EVENT_JOB_STARTED, d, j);
    }
    if (d->info.mode == DEVICE_MODE_DFU)
        return job_start_download(m, j, "board in DFU mode");
    /* Run-time or unknown: the detach request finds out and says when it was DFU already. */
    job_state(m, j, JOB_DETACHING, "board in %s mode: detaching",
              device_mode_to_string(d->info.mode));
    job_dispatch(m, j, WORKER_DETACH);
}

static bool can_start(void *userdata, Job *j)
{
    Manager *m = userdata;
    Device *d = device_table_get(m->devices, j->path);

    return !j->retry_timer && d && d->present &&
           worker_pool_outstanding(m->pool) < worker_pool_size(m->pool);
}

void manager_pump(Manager *m)
{
    Job *j;

    if (m->stopping || !m->pool)
        return;
    while ((j = job_queue_next_startable(m->jobs, can_start, m)))
        job_start(m, j);
    /* What the jobs left waiting are waiting for, in their state. */
    for (j = job_queue_next(m->jobs, NULL); j; j = job_queue_next(m->jobs, j)) {
        Device *d = device_table_get(m->devices, j->path);
        bool board = d && d->present;

        if (j->retry_timer || job_queue_head(m->jobs, j->path) != j)
            continue;
        if (j->state == JOB_QUEUED && !board) {
            job_state(m, j, JOB_WAITING_FOR_BOARD, "no board on %s", j->path);
            job_arm_wait(m, j);
        } else if (j->state == JOB_WAITING_FOR_BOARD && board) {
            j->wait_timer = sd_event_source_disable_unref(j->wait_timer);
            job_state(m, j, JOB_QUEUED, "board arrived; waiting for a free worker");
        }
    }
}

/* Nobody plugged a board into the port of a waiting job in time. */
static int on_wait_timeout(sd_event_source *s, uint64_t usec, void *userdata)
{
    Manager *m = userdata;

    for (Job *j = job_queue_next(m->jobs, NULL); j; j = job_queue_next(m->jobs, j))
        if (j->wait_timer == s) {
            manager_job_finish(m, j, JOB_EXPIRED, ERR_WAIT_TIMEOUT,
                               "no board on %s within %u s (wait-timeout-s)", j->path,
                               m->config->wait_timeout_s);
            break;
        }
    manager_pump(m);
    manager_update_status(m);
    return 0;
}

/* ---- results ---- */

static int on_retry(sd_event_source *s, uint64_t usec, void *userdata)
{
    Manager *m = userdata;

    for (Job *j = job_queue_next(m->jobs, NULL); j; j = job_queue_next(m->jobs, j))
        if (j->retry_timer == s) {
            j->retry_timer = sd_event_source_disable_unref(j->retry_timer);
            break;
        }
    manager_pump(m);
    manager_update_status(m);
    return 0;
}

/* A failed attempt: try again on the same plug when the error is transient. */
static void job_attempt_failed(Manager *m, Job *j, const ErrInfo *err, const DfuReport *report)
{
    LogJobFields f = job_fields(j, NULL);

    if (j->board_left && err->code != ERR_DISCONNECTED) {
        /* Whatever the transfer said, the board is gone: where it was comes from the engine. */
        ErrInfo e = {.code = ERR_DISCONNECTED};

        if (report)
            snprintf(e.message, sizeof(e.message),
                     "board disconnected during %s at block %" PRIu32 " (offset 0x%" PRIx64 ")",
                     dfu_phase_to_string(report->phase), report->block, (uint64_t)report->offset);
        else
            snprintf(e.message, sizeof(e.message), "board disconnected: %.200s", err->message);
        job_end_attempt(j, now_usec(CLOCK_REALTIME), &e, report);
        return manager_job_end(m, j, JOB_FAILED, &e, report);
    }
    job_end_attempt(j, now_usec(CLOCK_REALTIME), err, report);
    if (!job_error_is_transient(err->code) || j->retries_done >= j->retries_allowed || m->stopping)
        return manager_job_end(m, j, JOB_FAILED, err, report);
    j->retries_done++;
    /* A transfer that hung or a state nobody knows: only a USB reset brings the board back
     * (ABORT/CLRSTATUS in prepare cover the rest, as dfu-util does). */
    j->reset_next = err->code == ERR_USB_TIMEOUT || err->code == ERR_DFU_STATE ||
                    err->code == ERR_USB_TRANSFER || err->code == ERR_DNBUSY_TIMEOUT ||
                    err->code == ERR_MANIFEST_TIMEOUT;
    log_job(LOG_WARNING, &f, "attempt %u failed: %s [%s]; retrying (%u of %u)", j->retries_done,
            err->message, espdfu_err_to_string(err->code), j->retries_done, j->retries_allowed);
    job_state(m, j, JOB_QUEUED, "retry %u of %u after: %s", j->retries_done, j->retries_allowed,
              err->message);
    if (job_timer(m, &j->retry_timer, MANAGER_RETRY_DELAY_USEC, on_retry) < 0)
        manager_job_end(m, j, JOB_FAILED, err, report);
}

static int on_replug_timeout(sd_event_source *s, uint64_t usec, void *userdata)
{
    Manager *m = userdata;

    for (Job *j = job_queue_next(m->jobs, NULL); j; j = job_queue_next(m->jobs, j))
        if (j->replug_timer == s) {
            manager_job_finish(m, j, JOB_FAILED, ERR_REPLUG_TIMEOUT,
                               "board on %s did not come back in DFU mode within %u ms after "
                               "the detach",
                               j->path, m->config->replug_timeout_ms);
            break;
        }
    manager_pump(m);
    manager_update_status(m);
    return 0;
}

static void on_detach_result(Manager *m, Job *j, const WorkerResult *res)
{
    Device *d = device_table_get(m->devices, j->path);

    if (res->r < 0)
        return job_attempt_failed(m, j, &res->err, NULL);
    if (res->already_dfu)
        return job_start_download(m, j, "board was in DFU mode already");
    if (j->replugged && d && d->present)
        return job_start_download(m, j, "board re-enumerated in DFU mode");
    job_state(m, j, JOB_WAITING_FOR_REPLUG, "detached; waiting up to %u ms for the board",
              m->config->replug_timeout_ms);
    if (job_timer(m, &j->replug_timer, (uint64_t)m->config->replug_timeout_ms * USEC_PER_MSEC,
                  on_replug_timeout) < 0)
        manager_job_finish(m, j, JOB_FAILED, ERR_REPLUG_TIMEOUT, "cannot arm the replug timer");
}

static void on_download_result(Manager *m, Job *j, const WorkerResult *res)
{
    uint64_t ms = res->elapsed_usec / USEC_PER_MSEC;

    if (res->r < 0)
        return job_attempt_failed(m, j, &res->err, res->has_report ? &res->report : NULL);
    j->bytes_sent = j->bytes_total;
    j->percent = 100;
    j->download_duration_usec = res->elapsed_usec;
    j->rate = res->elapsed_usec ? j->bytes_total * USEC_PER_SEC / res->elapsed_usec : 0;
    job_end_attempt(j, now_usec(CLOCK_REALTIME), NULL, NULL);
    manager_job_finish(m, j, JOB_SUCCEEDED, ERR_OK,
                       "flashed %" PRIu64 " bytes in %" PRIu64 ".%01" PRIu64 " s (%.1f KiB/s)",
                       j->bytes_total, ms / 1000, (ms % 1000) / 100, (double)j->rate / 1024.0);
}

static void on_result(void *userdata, const WorkerResult *res)
{
    Manager *m = userdata;
    Job *j = job_queue_find(m->jobs, res->job_id);
    LogJobFields f;

    if (!j)
        return;
    j->worker_active = false;
    if (res->action == WORKER_RESET) {
        f = job_fields(j, NULL);
        if (res->r < 0)
            log_job(LOG_WARNING, &f, "after=reset: %s", res->err.message);
        else
            log_job(LOG_INFO, &f, "after=reset: board reset");
    }
    if (job_state_is_final(j->state))
        return job_retire(m, j); /* cancelled, timed out or disconnected meanwhile */
    switch (res->action) {
    case WORKER_DETACH:
        return on_detach_result(m, j, res);
    case WORKER_DOWNLOAD:
        return on_download_result(m, j, res);
    case WORKER_RESET:
    case _WORKER_ACTION_MAX:
        break;
    }
}

static void on_progress(void *userdata, const WorkerProgress *pr)
{
    Manager *m = userdata;
    Job *j = job_queue_find(m->jobs, pr->job_id);

    if (!j || (j->state != JOB_DOWNLOADING && j->state != JOB_MANIFESTING))
        return;
    job_set_progress(j, pr->sent, pr->total, pr->block, now_usec(CLOCK_MONOTONIC));
    if (pr->total && pr->sent == pr->total && j->state == JOB_DOWNLOADING)
        job_state(m, j, JOB_MANIFESTING, "all %" PRIu64 " bytes sent", pr->total);
    /* Where it is, for the recovery after a crash: once a second is enough. */
    if (now_usec(CLOCK_MONOTONIC) >= j->stored_usec + MANAGER_STORE_PROGRESS_USEC) {
        j->stored_usec = now_usec(CLOCK_MONOTONIC);
        manager_store_job(m, j);
    }
    manager_emit(m, MANAGER_EVENT_JOB_PROGRESS, device_table_get(m->devices, j->path), j);
}

int manager_on_pool(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
    Manager *m = userdata;

    worker_pool_drain(m->pool, on_progress, on_result, m);
    if (m->stopping && worker_pool_outstanding(m->pool) == 0)
        return sd_event_exit(m->event, 0);
    manager_pump(m);
    manager_update_status(m);
    return 0;
}

/* ---- boards coming and going ---- */

void manager_job_board_returned(Manager *m, Job *j)
{
    if (j->state == JOB_DETACHING) {
        /* The detach answer is still on its way; it will start the download. */
        j->replugged = true;
        return;
    }
    if (j->state == JOB_WAITING_FOR_REPLUG) {
        j->replug_timer = sd_event_source_disable_unref(j->replug_timer);
        job_start_download(m, j, "board re-enumerated in DFU mode");
    }
}

void manager_job_board_left(Manager *m, Job *j)
{
    char where[128];

    if (job_state_is_final(j->state))
        return;
    /* A manual job that has not started waits for the next board on its port; an
     * automatic one belonged to this plug. */
    if (!j->auto_flash && !j->started_usec && !j->retry_timer)
        return;
    /* Its worker is at the board: its own error (ENODEV at the exact block) comes at once
     * and says more than the throttled progress here could. */
    if (j->worker_active && (j->state == JOB_DOWNLOADING || j->state == JOB_MANIFESTING)) {
        j->board_left = true;
        return;
    }
    job_describe_position(j, where, sizeof(where));
    manager_job_finish(m, j, JOB_FAILED, ERR_DISCONNECTED, "board disconnected %s", where);
}

/* ---- the end of a job ---- */

static void on_hook_done(void *userdata, Hook *h, int status)
{
    HookRun *run = userdata;
    Manager *m = run->manager;
    LogJobFields f = {.job = run->job_id, .path = run->path};

    if (hook_timed_out(h))
        log_job(LOG_WARNING, &f, "after=hook: killed after its timeout");
    else if (status < 0)
        log_job(LOG_WARNING, &f, "after=hook: ended by signal %d", -status);
    else
        log_job(status ? LOG_WARNING : LOG_INFO, &f, "after=hook: exited with status %d", status);
    for (HookRun **p = &m->hooks; *p; p = &(*p)->next)
        if (*p == run) {
            *p = run->next;
            break;
        }
    hook_free(run->hook);
    free(run);
}

static void job_run_hook(Manager *m, Job *j)
{
    char env[6][160];
    char *envp[7];
    LogJobFields f = job_fields(j, NULL);
    HookRun *run;
    int r;

    snprintf(env[0], sizeof(env[0]), "ESPDFU_PATH=%s", j->path);
    snprintf(env[1], sizeof(env[1]), "ESPDFU_JOB=%" PRIu64, j->id);
    snprintf(env[2], sizeof(env[2]), "ESPDFU_RESULT=%s", job_state_to_string(j->state));
    snprintf(env[3], sizeof(env[3]), "ESPDFU_CHIP=%s", chip_to_string(j->chip));
    snprintf(env[4], sizeof(env[4]), "ESPDFU_IMAGE_SHA256=%s", j->image->sha256_hex);
    snprintf(env[5], sizeof(env[5]), "ESPDFU_ERROR=%s", espdfu_err_to_string(j->error.code));
    for (size_t i = 0; i < 6; i++)
        envp[i] = env[i];
    envp[6] = NULL;
    run = calloc(1, sizeof(*run));
    if (!run)
        return;
    *run = (HookRun){.manager = m, .job_id = j->id};
    snprintf(run->path, sizeof(run->path), "%s", j->path);
    r = hook_spawn(m->event, j->hook_argv, envp, j->hook_timeout_s, on_hook_done, run, &run->hook);
    if (r < 0) {
        log_job(LOG_WARNING, &f, "after=hook: cannot run %s: %s", j->hook_argv[0], strerror(-r));
        free(run);
        return;
    }
    log_job(LOG_DEBUG, &f, "after=hook: %s started (pid %d)", j->hook_argv[0],
            (int)hook_pid(run->hook));
    run->next = m->hooks;
    m->hooks = run;
}

void manager_free_hooks(Manager *m)
{
    while (m->hooks) {
        HookRun *run = m->hooks;

        m->hooks = run->next;
        hook_free(run->hook);
        free(run);
    }
}

static void job_after(Manager *m, Job *j, Device *d)
{
    if (m->stopping)
        return;
    if (j->after == AFTER_RESET && j->state == JOB_SUCCEEDED && d && d->present) {
        /* The board will leave and maybe come back: that is still this plug. */
        d->replug_deadline_usec =
                now_usec(CLOCK_MONOTONIC) + (uint64_t)m->config->replug_timeout_ms * USEC_PER_MSEC;
        job_dispatch(m, j, WORKER_RESET);
    } else if (j->after == AFTER_HOOK && j->hook_argv && j->state != JOB_CANCELLED) {
        job_run_hook(m, j);
    }
}

DevicePlug manager_plug_after(const Job *j)
{
    if (!j)
        return DEVICE_PLUG_IDLE;
    return j->state == JOB_SUCCEEDED ? DEVICE_PLUG_FLASHED
           : j->state == JOB_FAILED  ? DEVICE_PLUG_FAILED
                                     : DEVICE_PLUG_IDLE;
}

static void device_after_job(Manager *m, Job *j, Device *d)
{
    if (!d || d->last_job != j->id)
        return;
    if (!d->present && !manager_device_expects_replug(d) && j->error.code != ERR_REPLUG_TIMEOUT &&
        !m->stopping) {
        /* Its job ended (cancelled, timed out) while it re-enumerates after the detach:
         * back within the replug timeout, it is still this plug, not flashed again. */
        manager_device_linger(m, d);
        return;
    }
    if (!d->present && !manager_device_expects_replug(d)) {
        /* It left during the detach and never came back. */
        manager_store_plug(m, d, now_usec(CLOCK_REALTIME));
        log_info("[%s] board left", d->info.path);
        manager_emit(m, MANAGER_EVENT_DEVICE_REMOVED, d, NULL);
        device_table_remove(m->devices, d);
        return;
    }
    d->plug = manager_plug_after(j);
    manager_emit(m, MANAGER_EVENT_DEVICE_CHANGED, d, NULL);
}

void manager_job_end(Manager *m, Job *j, JobState state, const ErrInfo *err,
                     const DfuReport *report)
{
    Device *d = device_table_get(m->devices, j->path);
    const char *message = err ? err->message : "";
    LogJobFields f;

    /* The attempt under way ends here; the job's error is the root cause of all of them. */
    job_end_attempt(j, now_usec(CLOCK_REALTIME), state == JOB_SUCCEEDED ? NULL : err,
                    state == JOB_SUCCEEDED ? NULL : report);
    if (state == JOB_SUCCEEDED)
        job_clear_error(j);
    else
        job_set_final_error(j, err, report);
    j->timeout_timer = sd_event_source_disable_unref(j->timeout_timer);
    j->replug_timer = sd_event_source_disable_unref(j->replug_timer);
    j->retry_timer = sd_event_source_disable_unref(j->retry_timer);
    j->wait_timer = sd_event_source_disable_unref(j->wait_timer);
    /* The worker, if any, stops between blocks; its answer is then only bookkeeping. */
    if (j->worker_active)
        atomic_store(&j->cancel, true);
    job_state(m, j, state, "%s", message);
    m->n_succeeded += state == JOB_SUCCEEDED;
    m->n_failed += state == JOB_FAILED;
    m->n_cancelled += state == JOB_CANCELLED;

    f = job_fields(j, LOG_MESSAGE_JOB_FINISHED);
    if (state == JOB_SUCCEEDED)
        log_job(LOG_INFO, &f, "%s", message);
    else
        log_job(state == JOB_FAILED ? LOG_ERR : LOG_NOTICE, &f, "%s: %s [%s]",
                job_state_to_string(state), j->error.message, espdfu_err_to_string(j->error.code));
    manager_emit(m, MANAGER_EVENT_JOB_FINISHED, d, j);
    if (d && j->auto_flash && d->plug_id == j->id) {
        snprintf(d->plug_outcome, sizeof(d->plug_outcome), "%s", job_state_to_string(state));
        manager_store_plug(m, d, 0);
    }
    device_after_job(m, j, d);
    job_after(m, j, device_table_get(m->devices, j->path));
    job_retire(m, j);
}

void manager_job_finish(Manager *m, Job *j, JobState state, EspdfuErr code, const char *fmt, ...)
{
    ErrInfo e = {.code = code};
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(e.message, sizeof(e.message), fmt, ap);
    va_end(ap);
    manager_job_end(m, j, state, &e, NULL);
}

void manager_end_all(Manager *m, JobState state, const char *why)
{
    Job *j = job_queue_next(m->jobs, NULL);

    while (j) {
        /* Finishing may retire j from the queue: find the next one first. */
        Job *next = job_queue_next(m->jobs, j);
        char where[128];

        if (!job_state_is_final(j->state)) {
            job_describe_position(j, where, sizeof(where));
            manager_job_finish(m, j, state,
                               state == JOB_INTERRUPTED ? ERR_INTERRUPTED : ERR_CANCELLED, "%s %s",
                               why, where);
        }
        j = next;
    }
}

/* ---- the control-socket API ---- */

int manager_cancel(Manager *m, uint64_t id)
{
    Job *j = job_queue_find(m->jobs, id);
    char where[128];

    if (!j)
        return job_queue_find(m->history, id) ? -EALREADY : -ENOENT;
    if (job_state_is_final(j->state))
        return -EALREADY;
    job_describe_position(j, where, sizeof(where));
    manager_job_finish(m, j, JOB_CANCELLED, ERR_CANCELLED, "cancelled by request %s", where);
    manager_pump(m);
    manager_update_status(m);
    return 0;
}

int manager_add_image(Manager *m, Image **img, CachedImage **ret)
{
    return image_cache_add(m->images, img, ret);
}

static bool valid_port_path(const char *p)
{
    size_t n = strlen(p);

    /* sysfs names of USB devices: "1-2", "1-2.3.4"; nothing that could be a file name. */
    return n > 0 && n < DEVICE_PATH_MAX && strspn(p, "0123456789-.") == n;
}

typedef struct FlashCall {
    ManagerFlashDone done;
    void *userdata;
} FlashCall;

static void on_flash_queued(Manager *m, void *userdata, int r, const char *message,
                            Job *const *jobs, size_t n)
{
    FlashCall *call = userdata;
    _cleanup_free_ uint64_t *ids = r >= 0 ? calloc(n ? n : 1, sizeof(*ids)) : NULL;

    for (size_t i = 0; ids && i < n; i++)
        ids[i] = jobs[i]->id;
    if (r >= 0 && !ids) {
        r = -ENOMEM;
        message = "out of memory";
    }
    call->done(call->userdata, r, message, ids, n);
    free(call);
}

int manager_flash(Manager *m, const char *const *paths, size_t n_paths, CachedImage *image,
                  const char *image_name, const ManagerFlashOptions *o, ManagerFlashDone done,
                  void *userdata)
{
    _cleanup_free_ JobSpec *specs = NULL;
    FlashCall *call;
    int r;

    if (m->stopping)
        return -ESHUTDOWN;
    if (n_paths == 0 || n_paths > MANAGER_FLASH_PATHS_MAX || !image || !image_name || !done)
        return -EINVAL;
    for (size_t i = 0; i < n_paths; i++)
        if (!valid_port_path(paths[i]))
            return -EINVAL;
    /* Before the store has opened, the insert simply waits behind the opening. */
    if (!m->store)
        return -EIO;
    specs = calloc(n_paths, sizeof(*specs));
    call = calloc(1, sizeof(*call));
    if (!specs || !call) {
        free(call);
        return -ENOMEM;
    }
    *call = (FlashCall){.done = done, .userdata = userdata};
    for (size_t i = 0; i < n_paths; i++)
        specs[i] = (JobSpec){
                .path = paths[i],
                .source = o && o->source ? o->source : "manual",
                .image = image,
                .image_name = image_name,
                .retries = o && o->retries >= 0 ? (unsigned)o->retries : m->config->retries,
                .timeout_s = o && o->timeout_s ? o->timeout_s : m->config->job_timeout_s,
                .after = o ? o->after : AFTER_NONE,
                .hook_argv = o ? o->hook_argv : NULL,
                .hook_timeout_s = o && o->hook_timeout_s ? o->hook_timeout_s : 30,
        };
    r = manager_queue_jobs(m, specs, n_paths, on_flash_queued, call);
    if (r < 0)
        free(call);
    return r;
}
