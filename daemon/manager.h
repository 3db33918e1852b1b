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
#include "worker.h"

#define MANAGER_SUBSCRIBERS_MAX   64u
#define MANAGER_HISTORY_MAX       256u /* finished jobs kept in memory */
#define MANAGER_FLASH_PATHS_MAX   256u
#define MANAGER_STOP_TIMEOUT_USEC (5u * 1000000u) /* workers get this long at SIGTERM */
#define MANAGER_RETRY_DELAY_USEC  (500u * 1000u)
#define MANAGER_STORE_CLOSE_USEC  (3u * 1000000u) /* the store's last writes at exit */

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
    /*
     * The seams, as BlueZ's mgmt_new(fd) takes its transport: zero means the real
     * thing, so tests/test-manager.c drives the core on a real loop with fakes.
     */
    WorkerRunFn worker_run; /* one request on a worker thread; NULL: the USB implementation */
    bool no_udev; /* no udev monitor and no coldplug: boards come from manager_device_event() */
} ManagerOptions;

typedef struct ManagerStats {
    size_t boards;                         /* present */
    size_t jobs_live;                      /* queued or running */
    size_t jobs_active;                    /* detaching .. manifesting */
    unsigned succeeded, failed, cancelled; /* since start */
    size_t history_pending;                /* job records not yet written to the store */
    uint64_t history_dropped;              /* records dropped (pending set full) */
    int history_error;                     /* the failing write's -errno, 0 when fine */
    char history_error_message[512];       /* what failed, naming the file */
    bool store_open;
    uint64_t store_commits; /* since start */
    size_t jobs_recording;  /* accepted, their rows being committed */
} ManagerStats;

/* Takes config and cache (also on failure). */
int manager_new(sd_event *e, const ManagerOptions *o, Config *config, ImageCache *cache,
                Manager **ret);
/* The store's thread (it opens jobs.db, recovers what the last run left live),
 * then, once it has answered, the workers, the udev monitor, coldplug and
 * READY=1. */
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

/* What happened to a board: the udev monitor's uevents, or whatever replaced it (no_udev). */
typedef enum ManagerDeviceEvent {
    MANAGER_DEVICE_ADDED,   /* add or bind, or found at coldplug */
    MANAGER_DEVICE_CHANGED, /* change: handled as added (a known enumeration is updated) */
    MANAGER_DEVICE_REMOVED, /* only info->path is read */
    MANAGER_DEVICE_LOST,    /* events were lost: rescan through the udev monitor; info NULL */
    _MANAGER_DEVICE_EVENT_MAX,
} ManagerDeviceEvent;

/*
 * The one way boards come and go. Added or changed with a VID:PID the
 * configuration does not accept is a removal of that port (the board became
 * something else, e.g. the application after a reset). Without a udev monitor
 * (no_udev), MANAGER_DEVICE_LOST is ignored: the caller knows what is there.
 */
void manager_device_event(Manager *m, ManagerDeviceEvent ev, const DeviceInfo *info);

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

/* The jobs of a flash are in the store (ids) or were refused (r < 0, message). */
typedef void (*ManagerFlashDone)(void *userdata, int r, const char *message, const uint64_t *ids,
                                 size_t n);

/*
 * One job per path, queued behind whatever runs there; a path without a board
 * waits for one (up to wait-timeout-s). Every job is a row in the store before
 * its id is known: done is called once they are committed (or the store
 * refused them), never before this returns. All or nothing: -EINVAL for a bad
 * path, -ENOSPC when the job table is full, -ESHUTDOWN while stopping, -EIO
 * while the store is not open; done is then not called.
 */
int manager_flash(Manager *m, const char *const *paths, size_t n_paths, CachedImage *image,
                  const char *image_name, const ManagerFlashOptions *o, ManagerFlashDone done,
                  void *userdata);

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
/* The job store (store.h); NULL before manager_start(). */
struct Store *manager_get_store(Manager *m);
/* The newest jobs of earlier runs (borrowed array, newest last), NULL before the store opened. */
struct json_object *manager_get_preloaded(Manager *m);
/* Write what waits and stop the store's thread, waiting at most timeout_usec. */
void manager_close_store(Manager *m, uint64_t timeout_usec);

int manager_subscribe(Manager *m, ManagerEventFn fn, void *userdata);
void manager_unsubscribe(Manager *m, ManagerEventFn fn, void *userdata);

static inline void manager_freep(Manager **m)
{
    if (*m)
        *m = manager_free(*m);
}
