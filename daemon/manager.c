/* SPDX-License-Identifier: MIT */
/*
 * The manager's lifecycle, its boards and its rules. Jobs, workers, timers and
 * hooks are in manager-job.c.
 */
#include <errno.h>
#include <inttypes.h>
#include <libudev.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>

#include "manager-internal.h"
#include "timeutil.h"
#include "util.h"

const char *manager_event_to_string(ManagerEvent e)
{
    switch (e) {
    case MANAGER_EVENT_DEVICE_ADDED:
        return "device.added";
    case MANAGER_EVENT_DEVICE_REMOVED:
        return "device.removed";
    case MANAGER_EVENT_DEVICE_CHANGED:
        return "device.changed";
    case MANAGER_EVENT_JOB_QUEUED:
        return "job.queued";
    case MANAGER_EVENT_JOB_STARTED:
        return "job.started";
    case MANAGER_EVENT_JOB_CHANGED:
        return "job.changed";
    case MANAGER_EVENT_JOB_PROGRESS:
        return "job.progress";
    case MANAGER_EVENT_JOB_FINISHED:
        return "job.finished";
    case _MANAGER_EVENT_MAX:
        break;
    }
    return NULL;
}

void manager_emit(Manager *m, ManagerEvent ev, const Device *d, const Job *j)
{
    for (size_t i = 0; i < m->n_subscribers; i++)
        m->subscribers[i].fn(m->subscribers[i].userdata, ev, d, j);
}

int manager_subscribe(Manager *m, ManagerEventFn fn, void *userdata)
{
    if (m->n_subscribers >= MANAGER_SUBSCRIBERS_MAX)
        return -ENOSPC;
    m->subscribers[m->n_subscribers++] = (Subscriber){.fn = fn, .userdata = userdata};
    return 0;
}

void manager_unsubscribe(Manager *m, ManagerEventFn fn, void *userdata)
{
    for (size_t i = 0; i < m->n_subscribers; i++)
        if (m->subscribers[i].fn == fn && m->subscribers[i].userdata == userdata) {
            memmove(m->subscribers + i, m->subscribers + i + 1,
                    (m->n_subscribers - i - 1) * sizeof(*m->subscribers));
            m->n_subscribers--;
            return;
        }
}

void manager_get_stats(const Manager *m, ManagerStats *ret)
{
    ManagerStats s = {
            .succeeded = m->n_succeeded, .failed = m->n_failed, .cancelled = m->n_cancelled};

    if (m->store) {
        StoreStats st;

        store_get_stats(m->store, &st);
        s.history_pending = st.pending;
        s.history_dropped = st.dropped;
        s.history_error = st.error;
        snprintf(s.history_error_message, sizeof(s.history_error_message), "%s", st.error_message);
        s.store_open = st.open;
        s.store_commits = st.commits;
    }
    s.jobs_recording = m->n_inserting;
    for (Device *d = device_table_next(m->devices, NULL); d; d = device_table_next(m->devices, d))
        if (d->present)
            s.boards++;
    for (Job *j = job_queue_next(m->jobs, NULL); j; j = job_queue_next(m->jobs, j)) {
        if (job_state_is_final(j->state))
            continue;
        s.jobs_live++;
        if (job_state_is_active(j->state))
            s.jobs_active++;
    }
    *ret = s;
}

/* STATUS= is what `systemctl status` shows a person; sent only when it changes. */
void manager_update_status(Manager *m)
{
    ManagerStats s;
    char *status;

    manager_get_stats(m, &s);
    if (asprintf(&status, "%s%zu board%s, %zu flashing, %zu queued, %u ok, %u failed%s",
                 m->stopping ? "Stopping: " : "", s.boards, s.boards == 1 ? "" : "s", s.jobs_active,
                 s.jobs_live - s.jobs_active, s.succeeded, s.failed,
                 m->paused ? ", auto-flash paused" : "") < 0)
        return;
    if (m->status && strcmp(m->status, status) == 0) {
        free(status);
        return;
    }
    (void)sd_notifyf(false, "STATUS=%s", status);
    free(m->status);
    m->status = status;
}

/* ---- lifecycle ---- */

static int strdup_or_null(const char *s, char **ret)
{
    *ret = NULL;
    if (s && !(*ret = strdup(s)))
        return -ENOMEM;
    return 0;
}

int manager_new(sd_event *e, const ManagerOptions *o, Config *config, ImageCache *cache,
                Manager **ret)
{
    _cleanup_(manager_freep) Manager *m = calloc(1, sizeof(*m));

    if (!m) {
        config_free(config);
        image_cache_free(cache);
        return -ENOMEM;
    }
    m->config = config;
    m->images = cache;
    m->event = sd_event_ref(e);
    m->next_job_id = 1;
    m->config_optional = o->config_optional;
    m->override_workers = o->overrides.workers;
    m->worker_run = o->worker_run;
    m->no_udev = o->no_udev;
    if (strdup_or_null(o->config_path, &m->config_path) < 0 ||
        strdup_or_null(o->overrides.socket_path, &m->override_socket) < 0 ||
        strdup_or_null(o->overrides.state_dir, &m->override_state_dir) < 0)
        return -ENOMEM;
    if (device_table_new(&m->devices) < 0 || job_queue_new(&m->jobs) < 0 ||
        job_queue_new(&m->history) < 0)
        return -ENOMEM;
    *ret = TAKE_PTR(m);
    return 0;
}

static void on_uevent(void *userdata, MonitorAction action, struct udev_device *d);
static void manager_resume_plugs(Manager *m, const StorePlug *plugs, size_t n);

/* /proc/sys/kernel/random/boot_id: bus and device numbers mean something within one boot. */
static void read_boot_id(char *buf, size_t size)
{
    _cleanup_fclose_ FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");

    if (!f || !fgets(buf, (int)size, f))
        snprintf(buf, size, "unknown");
    buf[strcspn(buf, "\n")] = '\0';
}

/* Workers, udev, coldplug: boards are seen at once; jobs wait for the store. */
static int manager_start_boards(Manager *m)
{
    int r;

    r = worker_pool_new(m->config->workers, m->worker_run, &m->pool);
    if (r < 0)
        return log_errno(LOG_ERR, r, "cannot start %u workers", m->config->workers);
    r = sd_event_add_io(m->event, &m->pool_source, worker_pool_fd(m->pool), EPOLLIN,
                        manager_on_pool, m);
    if (r < 0)
        return log_errno(LOG_ERR, r, "cannot watch the worker pool");
    (void)sd_event_source_set_description(m->pool_source, "worker-results");
    if (m->no_udev)
        return 0; /* boards come through manager_device_event() */
    /* Listening before enumerating: a board plugged in between is not missed. */
    r = monitor_new(m->event, on_uevent, m, &m->monitor);
    if (r < 0)
        return log_errno(LOG_ERR, r, "cannot listen to udev");
    r = monitor_enumerate(m->monitor);
    if (r < 0)
        return log_errno(LOG_ERR, r, "cannot enumerate USB devices");
    return 0;
}

static void log_store_opened(Manager *m, const StoreReady *ready)
{
    const StoreDbOpenInfo *i = ready->info;

    if (i->moved_aside)
        log_error("job store %s/%s was unusable (%s): moved aside to %s; a new one starts, "
                  "its job ids above %" PRIu64,
                  m->config->state_dir, STORE_DB_FILE, i->aside_reason, i->aside_path, i->id_floor);
    if (i->imported_legacy)
        log_notice("imported %u job%s from %s/%s (%u corrupt line%s skipped); the file is "
                   "renamed .imported",
                   i->imported, i->imported == 1 ? "" : "s", m->config->state_dir,
                   STORE_DB_LEGACY_FILE, i->import_skipped, i->import_skipped == 1 ? "" : "s");
    if (ready->recovered)
        log_warning("%u job%s of the previous run ended as interrupted", ready->recovered,
                    ready->recovered == 1 ? "" : "s");
    log_info("job store %s/%s %s", m->config->state_dir, STORE_DB_FILE,
             i->created ? "created" : "opened");
}

static void on_store_ready(void *userdata, const StoreReady *ready)
{
    Manager *m = userdata;

    if (ready->r < 0) {
        log_error("the job store cannot be opened: %s; no job is accepted until it can be "
                  "(retrying)",
                  ready->message);
    } else {
        log_store_opened(m, ready);
        m->store_open = true;
        json_object_put(m->preloaded);
        m->preloaded = json_object_get(ready->preloaded);
        /* Boards present meanwhile learn their plugs, then get their jobs. */
        manager_resume_plugs(m, ready->plugs, ready->n_plugs);
    }
    if (!m->started) {
        m->started = true;
        log_info("ready: %u workers, %zu rule%s, auto-flash %s, %zu board%s present",
                 m->config->workers, m->config->n_rules, m->config->n_rules == 1 ? "" : "s",
                 m->config->auto_flash ? "on" : "off (config)", device_table_count(m->devices),
                 device_table_count(m->devices) == 1 ? "" : "s");
        (void)sd_notify(false, "READY=1");
    }
    manager_auto_flash_all(m);
    manager_pump(m);
    manager_update_status(m);
}

int manager_start(Manager *m)
{
    StoreOptions o = {
            .dir = m->config->state_dir,
            .boot_id = m->boot_id,
            .keep_jobs = m->config->history_max_jobs,
            .ready = on_store_ready,
            .userdata = m,
    };
    int r;

    read_boot_id(m->boot_id, sizeof(m->boot_id));
    /* Before the loop runs: without it ids could not be kept, so it is fatal. */
    if (mkdir(m->config->state_dir, 0750) < 0 && errno != EEXIST)
        return log_errno(LOG_ERR, -errno, "cannot create the state directory %s",
                         m->config->state_dir);
    r = store_new(m->event, &o, &m->store);
    if (r < 0)
        return log_errno(LOG_ERR, r, "cannot start the job store's thread");
    return manager_start_boards(m);
}

static int on_stop_timeout(sd_event_source *s, uint64_t usec, void *userdata)
{
    Manager *m = userdata;

    log_warning("%u worker request%s still running after %" PRIu64 " s; exiting anyway",
                worker_pool_outstanding(m->pool), worker_pool_outstanding(m->pool) == 1 ? "" : "s",
                (uint64_t)MANAGER_STOP_TIMEOUT_USEC / USEC_PER_SEC);
    return sd_event_exit(m->event, 0);
}

void manager_shutdown(Manager *m)
{
    int r;

    if (m->stopping)
        return;
    (void)sd_notify(false, "STOPPING=1");
    /* First, so nothing cancelled below starts a retry, a reset or a hook. */
    m->stopping = true;
    manager_end_all(m, JOB_INTERRUPTED, "espdfud was stopped");
    manager_update_status(m);
    if (!m->pool || worker_pool_outstanding(m->pool) == 0) {
        (void)sd_event_exit(m->event, 0);
        return;
    }
    log_info("stopping: waiting up to %" PRIu64 " s for %u worker request%s to end",
             (uint64_t)MANAGER_STOP_TIMEOUT_USEC / USEC_PER_SEC, worker_pool_outstanding(m->pool),
             worker_pool_outstanding(m->pool) == 1 ? "" : "s");
    r = sd_event_add_time_relative(m->event, &m->stop_timer, CLOCK_MONOTONIC,
                                   MANAGER_STOP_TIMEOUT_USEC, 0, on_stop_timeout, m);
    if (r < 0)
        (void)sd_event_exit(m->event, 0);
}

int manager_stop_workers(Manager *m, uint64_t timeout_usec)
{
    int r;

    if (!m->pool)
        return 0;
    m->pool_source = sd_event_source_disable_unref(m->pool_source);
    r = worker_pool_shutdown(m->pool, timeout_usec);
    if (r < 0)
        return r;
    m->pool = NULL;
    return 0;
}

Manager *manager_free(Manager *m)
{
    if (!m)
        return NULL;
    /* Workers first: they point into jobs and images. */
    if (manager_stop_workers(m, 0) < 0)
        return NULL; /* still busy: leave everything to the process exit */
    manager_free_hooks(m);
    manager_close_store(m, MANAGER_STORE_CLOSE_USEC);
    monitor_free(m->monitor);
    sd_event_source_disable_unref(m->stop_timer);
    job_queue_free(m->jobs);
    job_queue_free(m->history);
    json_object_put(m->preloaded);
    sd_event_source_disable_unref(m->auto_retry);
    device_table_free(m->devices);
    config_free(m->config);
    image_cache_free(m->images);
    sd_event_unref(m->event);
    free(m->status);
    free(m->config_path);
    free(m->override_socket);
    free(m->override_state_dir);
    free(m);
    return NULL;
}

/* ---- boards ---- */

static bool accept_pid(void *userdata, uint16_t pid)
{
    Manager *m = userdata;

    return config_accepts_board(m->config, ESP_USB_VID, pid);
}

static RuleMode rule_mode_of(DeviceMode mode)
{
    switch (mode) {
    case DEVICE_MODE_RUNTIME:
        return RULE_MODE_RUNTIME;
    case DEVICE_MODE_DFU:
        return RULE_MODE_DFU;
    case DEVICE_MODE_UNKNOWN:
    case DEVICE_MODE_NONE:
    case _DEVICE_MODE_MAX:
        break;
    }
    return RULE_MODE_ANY;
}

static int on_auto_retry(sd_event_source *s, uint64_t usec, void *userdata)
{
    Manager *m = userdata;

    m->auto_retry = sd_event_source_disable_unref(m->auto_retry);
    manager_auto_flash_all(m);
    manager_update_status(m);
    return 0;
}

/* Why a board that a rule wants is not flashed: on the board, for everyone to see. */
static void device_note(Manager *m, Device *d, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void device_note(Manager *m, Device *d, const char *fmt, ...)
{
    char note[sizeof(d->note)];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(note, sizeof(note), fmt, ap);
    va_end(ap);
    if (strcmp(note, d->note) != 0) {
        snprintf(d->note, sizeof(d->note), "%s", note);
        log_warning("[%s] %s", d->info.path, note);
        manager_emit(m, MANAGER_EVENT_DEVICE_CHANGED, d, NULL);
    }
    /* Tried again when a slot frees (job_retire) and, for the store, on a timer. */
    if (!m->auto_retry)
        (void)sd_event_add_time_relative(m->event, &m->auto_retry, CLOCK_MONOTONIC,
                                         MANAGER_AUTO_RETRY_USEC, 0, on_auto_retry, m);
}

/* The store could not record an auto-flash job: the plug is not used up. */
static void on_auto_queued(Manager *m, void *userdata, int r, const char *message, Job *const *jobs,
                           size_t n)
{
    _cleanup_free_ char *path = userdata;
    Device *d = m ? device_table_get(m->devices, path) : NULL;

    if (r >= 0 || !d)
        return;
    d->auto_consumed = false;
    device_note(m, d, "not flashed yet: the job store refused the job: %s", message);
}

/* Once per plug: a rule queues at most one job for a board between arrival and departure. */
static void manager_auto_flash(Manager *m, Device *d)
{
    _cleanup_free_ char *path = NULL;
    const Rule *rule;
    JobSpec spec;
    int r;

    if (!m->config->auto_flash || m->paused || m->stopping || d->auto_consumed || !d->present)
        return;
    /* Until the store has answered, a plug's earlier record may still say "flashed". */
    if (d->info.mode == DEVICE_MODE_NONE || job_queue_head(m->jobs, d->info.path) || !m->started)
        return;
    rule = config_find_rule(m->config, d->info.pid, d->info.path, rule_mode_of(d->info.mode));
    if (!rule) {
        log_debug("[%s] no rule matches this %s board in %s mode", d->info.path,
                  chip_to_string(d->info.chip), device_mode_to_string(d->info.mode));
        return;
    }
    spec = (JobSpec){
            .path = d->info.path,
            .source = rule->name,
            .image = rule->image,
            .image_name = rule->image_path,
            .auto_flash = true,
            .retries = m->config->retries,
            .timeout_s = m->config->job_timeout_s,
            .after = rule->after,
            .hook_argv = rule->hook_argv,
            .hook_timeout_s = rule->hook_timeout_s,
    };
    if (!m->store_open)
        return device_note(m, d, "not flashed yet: the job store is not open");
    path = strdup(d->info.path);
    if (!path)
        return device_note(m, d, "not flashed yet: out of memory");
    r = manager_queue_jobs(m, &spec, 1, on_auto_queued, path);
    if (r >= 0)
        path = NULL; /* the callback's now */
    if (r == -ENOSPC)
        return device_note(m, d, "not flashed yet: the job table is full (%u jobs)", JOB_QUEUE_MAX);
    if (r < 0) {
        log_errno(LOG_ERR, r, "[%s] cannot queue a job for rule '%s'", d->info.path, rule->name);
        return device_note(m, d, "not flashed yet: cannot queue a job: %s", strerror(-r));
    }
    d->auto_consumed = true;
}

void manager_auto_flash_all(Manager *m)
{
    for (Device *d = device_table_next(m->devices, NULL); d; d = device_table_next(m->devices, d))
        manager_auto_flash(m, d);
}

static void device_forget(Manager *m, Device *d)
{
    manager_store_plug(m, d, now_usec(CLOCK_REALTIME));
    log_info("[%s] board left", d->info.path);
    manager_emit(m, MANAGER_EVENT_DEVICE_REMOVED, d, NULL);
    device_table_remove(m->devices, d);
}

bool manager_device_expects_replug(const Device *d)
{
    return d->replug_deadline_usec > now_usec(CLOCK_MONOTONIC);
}

/* A board we reset did not come back within the replug timeout: that plug is over. */
static int on_linger_timeout(sd_event_source *s, uint64_t usec, void *userdata)
{
    Manager *m = userdata;

    for (Device *d = device_table_next(m->devices, NULL); d; d = device_table_next(m->devices, d))
        if (d->linger == s) {
            device_forget(m, d);
            break;
        }
    manager_update_status(m);
    return 0;
}

void manager_device_linger(Manager *m, Device *d)
{
    uint64_t usec = (uint64_t)m->config->replug_timeout_ms * USEC_PER_MSEC;

    if (!manager_device_expects_replug(d))
        d->replug_deadline_usec = now_usec(CLOCK_MONOTONIC) + usec;
    d->linger = sd_event_source_disable_unref(d->linger);
    if (sd_event_add_time_relative(m->event, &d->linger, CLOCK_MONOTONIC, usec, 0,
                                   on_linger_timeout, m) < 0)
        device_forget(m, d);
}

/* A job whose detach is under way owns the leave-and-return of its board. */
static Job *job_replugging(Manager *m, const char *path)
{
    Job *j = job_queue_head(m->jobs, path);

    if (j && (j->state == JOB_DETACHING || j->state == JOB_WAITING_FOR_REPLUG))
        return j;
    return NULL;
}

static void board_gone_for_now(Manager *m, Device *d)
{
    d->present = false;
    d->plug = DEVICE_PLUG_REPLUGGING;
    log_debug("[%s] board re-enumerating", d->info.path);
    manager_emit(m, MANAGER_EVENT_DEVICE_CHANGED, d, NULL);
}

static void board_left(Manager *m, const char *path)
{
    Device *d = device_table_get(m->devices, path);
    Job *j, *next;

    if (!d || !d->present)
        return;
    if (job_replugging(m, path))
        return board_gone_for_now(m, d);
    if (manager_device_expects_replug(d)) {
        board_gone_for_now(m, d);
        manager_device_linger(m, d);
        return;
    }
    /* The plug is over: its jobs learn it before the board leaves the table. */
    for (j = job_queue_next(m->jobs, NULL); j; j = next) {
        next = job_queue_next(m->jobs, j);
        if (strcmp(j->path, path) == 0)
            manager_job_board_left(m, j);
    }
    device_forget(m, d);
}

static void board_returned(Manager *m, Device *d, const DeviceInfo *info)
{
    Job *j = job_replugging(m, d->info.path);

    d->info = *info;
    d->present = true;
    d->linger = sd_event_source_disable_unref(d->linger);
    /* The same plug, a new enumeration: what a restart will find it by. */
    manager_store_plug(m, d, 0);
    if (j) {
        d->plug = DEVICE_PLUG_BUSY;
        log_debug("[%s] board back in %s mode", info->path, device_mode_to_string(info->mode));
        manager_job_board_returned(m, j);
    } else {
        /* Back after our reset (or a detach whose job ended meanwhile): the same plug, not
         * flashed again, and what its last job left it as, not "replugging" any more. */
        d->replug_deadline_usec = 0;
        d->plug = manager_plug_after(manager_get_job(m, d->last_job));
        log_info("[%s] board came back in %s mode; same plug, not flashed again", info->path,
                 device_mode_to_string(info->mode));
    }
    manager_emit(m, MANAGER_EVENT_DEVICE_CHANGED, d, NULL);
}

static void board_arrived(Manager *m, const DeviceInfo *info)
{
    Device *d = device_table_get(m->devices, info->path);
    int r;

    if (d)
        d->unconfirmed = false;
    if (d && d->present) {
        if (d->info.busnum == info->busnum && d->info.devnum == info->devnum) {
            /* bind/change of the same enumeration */
            if (memcmp(&d->info, info, sizeof(*info)) != 0) {
                d->info = *info;
                manager_emit(m, MANAGER_EVENT_DEVICE_CHANGED, d, NULL);
            }
            return;
        }
        /* A new enumeration whose "remove" we never saw. */
        if (job_replugging(m, info->path))
            board_gone_for_now(m, d);
        else {
            board_left(m, info->path);
            d = NULL;
        }
    }
    if (d)
        return board_returned(m, d, info);

    r = device_table_add(m->devices, info, &d);
    if (r < 0) {
        log_errno(LOG_ERR, r, "[%s] cannot track this board", info->path);
        return;
    }
    d->arrived_realtime_usec = now_usec(CLOCK_REALTIME);
    d->arrived_monotonic_usec = now_usec(CLOCK_MONOTONIC);
    log_info("[%s] %s board arrived (%04x:%04x, %s mode, %s)", info->path,
             chip_to_string(info->chip), info->vid, info->pid, device_mode_to_string(info->mode),
             info->devnode);
    manager_emit(m, MANAGER_EVENT_DEVICE_ADDED, d, NULL);
    manager_auto_flash(m, d);
}

/*
 * A board found at start that an earlier run already flashed in this plug
 * (same boot, port, bus and device number): it is not flashed again. A plug
 * whose job was interrupted is flashed: it never got its whole image.
 */
static void match_plug(Device *d, StorePlug *plugs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        StorePlug *p = &plugs[i];

        if (!p->id || strcmp(p->path, d->info.path) != 0 || p->busnum != d->info.busnum ||
            p->devnum != d->info.devnum)
            continue;
        if (p->outcome[0] && strcmp(p->outcome, "interrupted") != 0 && !d->auto_consumed) {
            d->auto_consumed = true;
            d->plug_id = p->id;
            d->last_job = p->id;
            snprintf(d->plug_outcome, sizeof(d->plug_outcome), "%s", p->outcome);
            d->plug = strcmp(p->outcome, "succeeded") == 0 ? DEVICE_PLUG_FLASHED
                      : strcmp(p->outcome, "failed") == 0  ? DEVICE_PLUG_FAILED
                                                           : DEVICE_PLUG_IDLE;
            log_info("[%s] job %" PRIu64 " ended %s on this plug before the restart; not "
                     "flashed again",
                     d->info.path, p->id, p->outcome);
            p->id = 0; /* still present: its record stays open */
            continue;
        }
        /* Interrupted: this plug's record ends; a new job makes a new one. */
        snprintf(p->outcome, sizeof(p->outcome), "interrupted");
    }
}

/*
 * This boot's open plugs from earlier runs, once the store has opened: each
 * board present takes its own, and the plugs whose board is not here any more
 * are over.
 */
static void manager_resume_plugs(Manager *m, const StorePlug *plugs, size_t n)
{
    _cleanup_free_ StorePlug *left = n ? calloc(n, sizeof(*left)) : NULL;
    uint64_t now = now_usec(CLOCK_REALTIME);

    if (n && !left) {
        log_error("out of memory: %zu plugs of the last run are not resumed", n);
        return;
    }
    if (n)
        memcpy(left, plugs, n * sizeof(*left));
    for (Device *d = device_table_next(m->devices, NULL); d; d = device_table_next(m->devices, d))
        match_plug(d, left, n);
    for (size_t i = 0; i < n; i++) {
        StorePlug *p = &left[i];

        if (!p->id)
            continue;
        p->left_usec = now;
        if (!p->outcome[0])
            snprintf(p->outcome, sizeof(p->outcome), "interrupted");
        if (store_put_plug(m->store, p) < 0)
            log_error("the plug record of job %" PRIu64 " cannot be closed", p->id);
    }
}

/*
 * uevents were lost: enumerate again (arrivals and changes come through
 * on_uevent as at coldplug), then every present board the enumeration did not
 * see has left without its "remove".
 */
static void manager_rescan(Manager *m)
{
    _cleanup_free_ char(*gone)[DEVICE_PATH_MAX] = NULL;
    size_t n = 0;
    Device *d;
    int r;

    if (!m->monitor) {
        log_warning("device events were lost, and without a udev monitor nothing can rescan");
        return;
    }
    log_warning("udev events were lost (receive buffer overflow): rescanning the USB devices");
    for (d = device_table_next(m->devices, NULL); d; d = device_table_next(m->devices, d))
        d->unconfirmed = d->present;
    r = monitor_enumerate(m->monitor);
    if (r < 0) {
        log_errno(LOG_ERR, r, "cannot rescan the USB devices");
        return;
    }
    gone = calloc(device_table_count(m->devices) + 1, sizeof(*gone));
    if (!gone) {
        log_error("cannot rescan the USB devices: out of memory");
        return;
    }
    for (d = device_table_next(m->devices, NULL); d; d = device_table_next(m->devices, d))
        if (d->unconfirmed)
            snprintf(gone[n++], DEVICE_PATH_MAX, "%s", d->info.path);
    for (size_t i = 0; i < n; i++)
        board_left(m, gone[i]);
}

void manager_device_event(Manager *m, ManagerDeviceEvent ev, const DeviceInfo *info)
{
    switch (ev) {
    case MANAGER_DEVICE_ADDED:
    case MANAGER_DEVICE_CHANGED:
        /* Not one of ours (any more): on a port we track, the board became something
         * else, e.g. the application after a reset. */
        if (!config_accepts_board(m->config, info->vid, info->pid))
            board_left(m, info->path);
        else
            board_arrived(m, info);
        break;
    case MANAGER_DEVICE_REMOVED:
        board_left(m, info->path);
        break;
    case MANAGER_DEVICE_LOST:
        manager_rescan(m);
        break;
    case _MANAGER_DEVICE_EVENT_MAX:
        return;
    }
    manager_pump(m);
    manager_update_status(m);
}

static void on_uevent(void *userdata, MonitorAction action, struct udev_device *ud)
{
    Manager *m = userdata;
    DeviceInfo info = {};
    const char *path;
    int r;

    if (action == MONITOR_LOST)
        return manager_device_event(m, MANAGER_DEVICE_LOST, NULL);
    path = udev_device_get_sysname(ud);
    if (!path || strlen(path) >= sizeof(info.path))
        return;
    if (action == MONITOR_REMOVE) {
        snprintf(info.path, sizeof(info.path), "%s", path);
        return manager_device_event(m, MANAGER_DEVICE_REMOVED, &info);
    }
    r = device_info_from_udev(ud, accept_pid, m, &info);
    if (r == -ENODEV) {
        /* Not one of ours (any more): the same as its removal. */
        snprintf(info.path, sizeof(info.path), "%s", path);
        return manager_device_event(m, MANAGER_DEVICE_REMOVED, &info);
    }
    if (r < 0) {
        log_errno(LOG_WARNING, r, "[%s] cannot read this board's attributes", path);
        return;
    }
    manager_device_event(m, MANAGER_DEVICE_ADDED, &info);
}

/* ---- configuration ---- */

static int manager_load_config(Manager *m, Config **ret, ConfigErrors *errors)
{
    ConfigOverrides o = {.socket_path = m->override_socket,
                         .state_dir = m->override_state_dir,
                         .workers = m->override_workers};
    _cleanup_(config_freep) Config *c = NULL;
    int r;

    r = m->config_path ? config_parse_file(m->config_path, m->images, &c, errors) : -ENOENT;
    if (r == -ENOENT && (!m->config_path || m->config_optional)) {
        config_errors_clear(errors);
        r = config_new_default(&c);
    }
    if (r < 0)
        return r;
    r = config_apply_overrides(c, &o);
    if (r < 0)
        return r;
    *ret = TAKE_PTR(c);
    return 0;
}

int manager_reload(Manager *m, ConfigErrors *errors)
{
    _cleanup_(config_freep) Config *c = NULL;
    int r;

    (void)sd_notifyf(false, "RELOADING=1\nMONOTONIC_USEC=%" PRIu64, now_usec(CLOCK_MONOTONIC));
    r = manager_load_config(m, &c, errors);
    if (r < 0) {
        (void)sd_notify(false, "READY=1");
        return r;
    }
    if (m->pool && c->workers != worker_pool_size(m->pool)) {
        log_notice("workers=%u takes effect at the next start; %u workers keep running", c->workers,
                   worker_pool_size(m->pool));
        c->workers = worker_pool_size(m->pool);
    }
    if (strcmp(c->socket_path, m->config->socket_path) != 0 ||
        strcmp(c->group, m->config->group) != 0)
        log_notice("socket= and group= take effect at the next start");
    /* Jobs hold their own image references and hook copies: the old rules can go. */
    if (strcmp(c->state_dir, m->config->state_dir) != 0)
        log_notice("state-dir= takes effect at the next start");
    config_free(m->config);
    m->config = TAKE_PTR(c);
    log_info("configuration reloaded from %s: %zu rule%s, auto-flash %s",
             m->config->path ? m->config->path : "built-in defaults", m->config->n_rules,
             m->config->n_rules == 1 ? "" : "s", m->config->auto_flash ? "on" : "off");
    manager_auto_flash_all(m);
    manager_pump(m);
    (void)sd_notify(false, "READY=1");
    manager_update_status(m);
    return 0;
}

const Config *manager_get_config(const Manager *m)
{
    return m->config;
}

void manager_pause(Manager *m)
{
    if (m->paused)
        return;
    m->paused = true;
    log_info("auto-flash paused");
    manager_update_status(m);
}

void manager_resume(Manager *m)
{
    if (!m->paused)
        return;
    m->paused = false;
    log_info("auto-flash resumed");
    /* Boards that arrived meanwhile get their job now: their plug was never used. */
    manager_auto_flash_all(m);
    manager_pump(m);
    manager_update_status(m);
}

bool manager_is_paused(const Manager *m)
{
    return m->paused;
}

/* ---- queries ---- */

const Device *manager_get_device(Manager *m, const char *path)
{
    return device_table_get(m->devices, path);
}

const Device *manager_next_device(Manager *m, const Device *prev)
{
    return device_table_next(m->devices, prev);
}

const Job *manager_get_job(Manager *m, uint64_t id)
{
    Job *j = job_queue_find(m->jobs, id);

    return j ? j : job_queue_find(m->history, id);
}

Store *manager_get_store(Manager *m)
{
    /* Also before it has opened: what is asked waits behind the opening. */
    return m->store;
}

json_object *manager_get_preloaded(Manager *m)
{
    return m->preloaded;
}

void manager_close_store(Manager *m, uint64_t timeout_usec)
{
    manager_free_inserting(m);
    m->store = store_free(m->store, timeout_usec);
    m->store_open = false;
}

/* The job with the smallest id above `after` in q. */
static Job *first_after(JobQueue *q, uint64_t after)
{
    for (Job *j = job_queue_next(q, NULL); j; j = job_queue_next(q, j))
        if (j->id > after)
            return j;
    return NULL;
}

const Job *manager_next_job(Manager *m, const Job *prev)
{
    uint64_t after = prev ? prev->id : 0;
    Job *a = first_after(m->jobs, after), *b = first_after(m->history, after);

    if (!a || !b)
        return a ? a : b;
    return a->id < b->id ? a : b;
}
