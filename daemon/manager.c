/* SPDX-License-Identifier: MIT */
/*
 * The manager's lifecycle, its boards and its rules. Jobs, workers, timers and
 * hooks are in manager-job.c.
 */
#include <errno.h>
#include <inttypes.h>
#include <libudev.h>
#include <stdlib.h>
#include <string.h>
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
        s.history_pending = store_pending(m->store);
        s.history_dropped = store_dropped(m->store);
        s.history_error = store_error(m->store);
    }
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

/* Before anything can queue a job: ids continue after the largest ever recorded. */
static int manager_open_store(Manager *m)
{
    int r;

    r = store_new(m->event, m->config->state_dir,
                  (uint64_t)m->config->history_max_mb * 1024u * 1024u, &m->store);
    if (r < 0)
        return log_errno(LOG_ERR, r, "cannot open the job history in %s", m->config->state_dir);
    if (store_max_id(m->store) >= m->next_job_id)
        m->next_job_id = store_max_id(m->store) + 1;
    log_debug("history: %zu records preloaded, next job id %" PRIu64,
              json_object_array_length(store_preloaded(m->store)), m->next_job_id);
    return 0;
}

int manager_start(Manager *m)
{
    int r;

    r = manager_open_store(m);
    if (r < 0)
        return r;

    r = worker_pool_new(m->config->workers, NULL, &m->pool);
    if (r < 0)
        return log_errno(LOG_ERR, r, "cannot start %u workers", m->config->workers);
    r = sd_event_add_io(m->event, &m->pool_source, worker_pool_fd(m->pool), EPOLLIN,
                        manager_on_pool, m);
    if (r < 0)
        return log_errno(LOG_ERR, r, "cannot watch the worker pool");
    (void)sd_event_source_set_description(m->pool_source, "worker-results");
    /* Listening before enumerating: a board plugged in between is not missed. */
    r = monitor_new(m->event, on_uevent, m, &m->monitor);
    if (r < 0)
        return log_errno(LOG_ERR, r, "cannot listen to udev");
    r = monitor_enumerate(m->monitor);
    if (r < 0)
        return log_errno(LOG_ERR, r, "cannot enumerate USB devices");
    log_info("ready: %u workers, %zu rule%s, auto-flash %s, %zu board%s present",
             m->config->workers, m->config->n_rules, m->config->n_rules == 1 ? "" : "s",
             m->config->auto_flash ? "on" : "off (config)", device_table_count(m->devices),
             device_table_count(m->devices) == 1 ? "" : "s");
    (void)sd_notify(false, "READY=1");
    manager_update_status(m);
    return 0;
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
    manager_cancel_all(m, "espdfud is stopping");
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
    monitor_free(m->monitor);
    sd_event_source_disable_unref(m->stop_timer);
    job_queue_free(m->jobs);
    job_queue_free(m->history);
    store_free(m->store);
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

/* Once per plug: a rule queues at most one job for a board between arrival and departure. */
static void manager_auto_flash(Manager *m, Device *d)
{
    const Rule *rule;
    JobSpec spec;
    int r;

    if (!m->config->auto_flash || m->paused || m->stopping || d->auto_consumed || !d->present)
        return;
    if (d->info.mode == DEVICE_MODE_NONE || job_queue_head(m->jobs, d->info.path))
        return;
    rule = config_find_rule(m->config, d->info.pid, d->info.path, rule_mode_of(d->info.mode));
    if (!rule) {
        log_debug("[%s] no rule matches this %s board in %s mode", d->info.path,
                  chip_to_string(d->info.chip), device_mode_to_string(d->info.mode));
        return;
    }
    d->auto_consumed = true;
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
    r = manager_queue_job(m, &spec, NULL);
    if (r < 0)
        log_errno(LOG_ERR, r, "[%s] cannot queue a job for rule '%s'", d->info.path, rule->name);
}

static void manager_auto_flash_all(Manager *m)
{
    for (Device *d = device_table_next(m->devices, NULL); d; d = device_table_next(m->devices, d))
        manager_auto_flash(m, d);
}

static void device_forget(Manager *m, Device *d)
{
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
        if (sd_event_add_time_relative(m->event, &d->linger, CLOCK_MONOTONIC,
                                       (uint64_t)m->config->replug_timeout_ms * USEC_PER_MSEC, 0,
                                       on_linger_timeout, m) < 0)
            device_forget(m, d);
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
    if (j) {
        d->plug = DEVICE_PLUG_BUSY;
        log_debug("[%s] board back in %s mode", info->path, device_mode_to_string(info->mode));
        manager_job_board_returned(m, j);
    } else {
        /* Back after our reset, still a DFU board: the same plug, not flashed again. */
        d->replug_deadline_usec = 0;
        log_info("[%s] board came back after the reset in %s mode; same plug, not flashed again",
                 info->path, device_mode_to_string(info->mode));
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

static void on_uevent(void *userdata, MonitorAction action, struct udev_device *ud)
{
    Manager *m = userdata;
    const char *path;
    DeviceInfo info;
    int r;

    if (action == MONITOR_LOST) {
        manager_rescan(m);
        manager_pump(m);
        manager_update_status(m);
        return;
    }
    path = udev_device_get_sysname(ud);
    if (!path)
        return;
    if (action == MONITOR_REMOVE)
        board_left(m, path);
    else {
        r = device_info_from_udev(ud, accept_pid, m, &info);
        if (r == -ENODEV)
            /* Not one of ours (any more): on a port we track, the board became
             * something else, e.g. the application after a reset. */
            board_left(m, path);
        else if (r < 0)
            log_errno(LOG_WARNING, r, "[%s] cannot read this board's attributes", path);
        else
            board_arrived(m, &info);
    }
    manager_pump(m);
    manager_update_status(m);
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
    if (m->store)
        store_set_max_bytes(m->store, (uint64_t)m->config->history_max_mb * 1024u * 1024u);
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
    return m->store;
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
