/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The manager: the daemon's single source of truth, main thread only.
 *
 * It owns the device table (boards by port path), the live jobs (a FIFO per
 * port, any number of ports in parallel), the finished jobs kept for
 * queries, the image cache, the configuration and its auto-flash rules, the
 * worker pool and the udev monitor. Everything that happens arrives as a loop
 * callback (uevent, worker result, timer, child exit, signal) and leaves as a
 * state change, a worker request, a log line and an event for subscribers.
 *
 * The functions below are what the control socket calls; none of them blocks.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "devices.h"
#include "image-cache.h"
#include "job.h"

#define MANAGER_SUBSCRIBERS_MAX   64u
#define MANAGER_HISTORY_MAX       256u /* finished jobs kept in memory */
#define MANAGER_FLASH_PATHS_MAX   256u
#define MANAGER_STOP_TIMEOUT_USEC (5u * 1000000u) /* workers get this long at SIGTERM */
#define MANAGER_RETRY_DELAY_USEC  (500u * 1000u)

typedef struct Manager Manager;

typedef enum ManagerEvent {
    MANAGER_EVENT_DEVICE_ADDED,
    MANAGER_EVENT_DEVICE_REMOVED, /* the Device is still valid during the callback */
    MANAGER_EVENT_DEVICE_CHANGED,
    MANAGER_EVENT_JOB_QUEUED,
    MANAGER_EVENT_JOB_STARTED,
    MANAGER_EVENT_JOB_CHANGED,  /* any state change */
    MANAGER_EVENT_JOB_PROGRESS, /* at most ~10 per second per job */
    MANAGER_EVENT_JOB_FINISHED,
    _MANAGER_EVENT_MAX,
} ManagerEvent;

const char *manager_event_to_string(ManagerEvent e); /* "device.added", "job.progress", ... */

/* d is set for device events, j for job events (and d too when the board is known). */
typedef void (*ManagerEventFn)(void *userdata, ManagerEvent event, const Device *d, const Job *j);

typedef struct ManagerOptions {
    const char *config_path; /* re-read on reload; NULL: built-in defaults only */
    bool config_optional;    /* a missing file means defaults (the default path) */
    ConfigOverrides overrides;
} ManagerOptions;

typedef struct ManagerStats {
    size_t boards;                         /* present */
    size_t jobs_live;                      /* queued or running */
    size_t jobs_active;                    /* detaching .. manifesting */
    unsigned succeeded, failed, cancelled; /* since start */
    size_t history_pending;                /* finished jobs not yet in history.jsonl */
    uint64_t history_dropped;              /* of those, dropped (pending queue full) */
    int history_error;                     /* the failing write's -errno, 0 when fine */
} ManagerStats;

/* Takes config and cache (also on failure). */
int manager_new(sd_event *e, const ManagerOptions *o, Config *config, ImageCache *cache,
                Manager **ret);
/* The history store (ids continue after its largest), workers, the udev
 * monitor, coldplug, then READY=1. */
int manager_start(Manager *m);
/*
 * SIGTERM: no new jobs, every live job cancelled (running ones see their cancel
 * flag between blocks), and the loop exits once the workers have answered or
 * after MANAGER_STOP_TIMEOUT_USEC.
 */
void manager_shutdown(Manager *m);
/* Join the workers after the loop ended. -ETIMEDOUT: some are still busy, and the
 * manager must then not be freed (they use its jobs' memory). */
int manager_stop_workers(Manager *m, uint64_t timeout_usec);
Manager *manager_free(Manager *m);

/* ---- the control-socket API ---- */

/* Put a client's image into the cache (takes *img) and get a reference. */
int manager_add_image(Manager *m, Image **img, CachedImage **ret);

typedef struct ManagerFlashOptions {
    const char *source; /* recorded as the job's source; NULL = "manual" */
    int retries;        /* < 0: the configured retries= */
    unsigned timeout_s; /* 0: the configured job-timeout-s= */
    AfterAction after;
    char *const *hook_argv; /* with AFTER_HOOK */
    unsigned hook_timeout_s;
} ManagerFlashOptions;

/*
 * One job per path, queued behind whatever runs there; a path without a board
 * waits for one (no timeout until it starts). ret_ids (n_paths entries, may be
 * NULL) receives the job ids. All or nothing: -EINVAL for a bad path, -ENOSPC
 * when the queue is full, -ESHUTDOWN while stopping.
 */
int manager_flash(Manager *m, const char *const *paths, size_t n_paths, CachedImage *image,
                  const char *image_name, const ManagerFlashOptions *o, uint64_t *ret_ids);

/* Cancel a job in any state that is not final: -ENOENT unknown, -EALREADY finished. */
int manager_cancel(Manager *m, uint64_t id);

/* Auto-flash on/off at run time (the config's auto-flash= must also be yes). */
void manager_pause(Manager *m);
void manager_resume(Manager *m);
bool manager_is_paused(const Manager *m);

/*
 * Re-read the configuration. Parsed completely first: an invalid file is
 * refused (errors filled, -EINVAL) and the running configuration stays.
 * Running jobs are untouched either way.
 */
int manager_reload(Manager *m, ConfigErrors *errors);

const Config *manager_get_config(const Manager *m);
const Device *manager_get_device(Manager *m, const char *path);
/* Boards in port order: first with NULL. */
const Device *manager_next_device(Manager *m, const Device *prev);
/* A live or finished job. */
const Job *manager_get_job(Manager *m, uint64_t id);
/* Every job known, live and finished, in id order: first with NULL. */
const Job *manager_next_job(Manager *m, const Job *prev);
void manager_get_stats(const Manager *m, ManagerStats *ret);
/* The durable history (store.h); NULL before manager_start(). */
struct Store *manager_get_store(Manager *m);

int manager_subscribe(Manager *m, ManagerEventFn fn, void *userdata);
void manager_unsubscribe(Manager *m, ManagerEventFn fn, void *userdata);

static inline void manager_freep(Manager **m)
{
    if (*m)
        *m = manager_free(*m);
}
