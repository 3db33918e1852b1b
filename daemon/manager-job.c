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
    manager_emit(m, MANAGER_EVENT_JOB_CHANGED, device_table_get(m->devices, j->path), j);
}

int manager_queue_job(Manager *m, const JobSpec *spec, Job **ret)
{
    _cleanup_(job_freep) Job *j = NULL;
    LogJobFields f;
    Job *q;
    int r;

    r = job_new(m->next_job_id, spec->path, spec->source, spec->image, spec->image_name,
                now_usec(CLOCK_REALTIME), &j);
    if (r < 0)
        return r;
    j->auto_flash = spec->auto_flash;
    j->retries_allowed = spec->retries;
    j->timeout_s = spec->timeout_s;
    r = job_set_after(j, spec->after, spec->hook_argv, spec->hook_timeout_s);
    if (r < 0)
        return r;
    r = job_queue_push(m->jobs, j);
    if (r < 0)
        return r;
    m->next_job_id++;
    q = TAKE_PTR(j);
    f = job_fields(q, NULL);
    log_job(LOG_INFO, &f, "queued by %s%s: %s (%zu bytes, sha256 %.16s)",
            spec->auto_flash ? "rule " : "", spec->source, spec->image_name,
            spec->image->image->payload_size, spec->image->sha256_hex);
    manager_emit(m, MANAGER_EVENT_JOB_QUEUED, device_table_get(m->devices, q->path), q);
    if (ret)
        *ret = q;
    return 0;
}

/* Written once the job is final and its worker is done: nothing changes it after. */
static void job_record(Manager *m, const Job *j)
{
    json_object *o;

    if (!m->store)
        return;
    o = job_to_json(j);
    /* A write failure keeps the record pending and is logged by the store. */
    if (!o || store_append(m->store, o) == -ENOMEM)
        log_error("job %" PRIu64 ": out of memory, not written to the history", j->id);
    json_object_put(o);
}

/* A finished job whose worker has answered leaves the live queue for the history. */
static void job_retire(Manager *m, Job *j)
{
    if (!job_state_is_final(j->state) || j->worker_active)
        return;
    job_record(m, j);
    job_queue_remove(m->jobs, j);
    while (job_queue_count(m->history) >= MANAGER_HISTORY_MAX) {
        Job *oldest = job_queue_next(m->history, NULL);

        job_queue_remove(m->history, oldest);
        job_free(oldest);
    }
    if (job_queue_push(m->history, j) < 0)
        job_free(j);
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
        if (j->state == JOB_QUEUED && !board)
            job_state(m, j, JOB_WAITING_FOR_BOARD, "no board on %s", j->path);
        else if (j->state == JOB_WAITING_FOR_BOARD && board)
            job_state(m, j, JOB_QUEUED, "board arrived; waiting for a free worker");
    }
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

    job_set_error(j, err, report);
    if (!job_error_is_transient(err->code) || j->retries_done >= j->retries_allowed || m->stopping)
        return manager_job_finish(m, j, JOB_FAILED, err->code, "%s", err->message);
    j->retries_done++;
    log_job(LOG_WARNING, &f, "attempt %u failed: %s [%s]; retrying (%u of %u)", j->retries_done,
            err->message, espdfu_err_to_string(err->code), j->retries_done, j->retries_allowed);
    job_state(m, j, JOB_QUEUED, "retry %u of %u after: %s", j->retries_done, j->retries_allowed,
              err->message);
    if (job_timer(m, &j->retry_timer, MANAGER_RETRY_DELAY_USEC, on_retry) < 0)
        manager_job_finish(m, j, JOB_FAILED, err->code, "%s", err->message);
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

static void device_after_job(Manager *m, Job *j, Device *d)
{
    if (!d || d->last_job != j->id)
        return;
    if (!d->present && !manager_device_expects_replug(d)) {
        /* It left during the detach and never came back. */
        log_info("[%s] board left", d->info.path);
        manager_emit(m, MANAGER_EVENT_DEVICE_REMOVED, d, NULL);
        device_table_remove(m->devices, d);
        return;
    }
    d->plug = j->state == JOB_SUCCEEDED ? DEVICE_PLUG_FLASHED
              : j->state == JOB_FAILED  ? DEVICE_PLUG_FAILED
                                        : DEVICE_PLUG_IDLE;
    manager_emit(m, MANAGER_EVENT_DEVICE_CHANGED, d, NULL);
}

void manager_job_finish(Manager *m, Job *j, JobState state, EspdfuErr code, const char *fmt, ...)
{
    Device *d = device_table_get(m->devices, j->path);
    char message[sizeof(j->error.message)];
    LogJobFields f;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    /* A worker's error came with its DfuReport; any other reason replaces both. */
    if (state != JOB_SUCCEEDED &&
        (j->error.code != code || strcmp(j->error.message, message) != 0)) {
        ErrInfo e = {.code = code};

        snprintf(e.message, sizeof(e.message), "%s", message);
        job_set_error(j, &e, NULL);
    }
    j->timeout_timer = sd_event_source_disable_unref(j->timeout_timer);
    j->replug_timer = sd_event_source_disable_unref(j->replug_timer);
    j->retry_timer = sd_event_source_disable_unref(j->retry_timer);
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
                job_state_to_string(state), message, espdfu_err_to_string(code));
    manager_emit(m, MANAGER_EVENT_JOB_FINISHED, d, j);
    device_after_job(m, j, d);
    job_after(m, j, device_table_get(m->devices, j->path));
    job_retire(m, j);
}

void manager_cancel_all(Manager *m, const char *why)
{
    Job *j = job_queue_next(m->jobs, NULL);

    while (j) {
        /* Finishing may retire j from the queue: find the next one first. */
        Job *next = job_queue_next(m->jobs, j);
        char where[128];

        if (!job_state_is_final(j->state)) {
            job_describe_position(j, where, sizeof(where));
            manager_job_finish(m, j, JOB_CANCELLED, ERR_CANCELLED, "%s (%s)", why, where);
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

int manager_flash(Manager *m, const char *const *paths, size_t n_paths, CachedImage *image,
                  const char *image_name, const ManagerFlashOptions *o, uint64_t *ret_ids)
{
    int r;

    if (m->stopping)
        return -ESHUTDOWN;
    if (n_paths == 0 || n_paths > MANAGER_FLASH_PATHS_MAX || !image || !image_name)
        return -EINVAL;
    for (size_t i = 0; i < n_paths; i++)
        if (!valid_port_path(paths[i]))
            return -EINVAL;
    if (job_queue_count(m->jobs) + n_paths > JOB_QUEUE_MAX)
        return -ENOSPC;
    for (size_t i = 0; i < n_paths; i++) {
        JobSpec spec = {
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
        Job *j = NULL;

        r = manager_queue_job(m, &spec, &j);
        if (r < 0)
            return r; /* only -ENOMEM gets here: capacity was checked above */
        if (ret_ids)
            ret_ids[i] = j->id;
    }
    manager_pump(m);
    manager_update_status(m);
    return 0;
}
