/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Shared by manager.c (lifecycle, boards, rules, reload) and manager-job.c
 * (jobs, workers, timers, hooks): one object in two files.
 */

#include "hook.h"
#include "job-queue.h"
#include "log.h"
#include "manager.h"
#include "monitor.h"
#include "store.h"
#include "worker.h"

#define MANAGER_STORE_PROGRESS_USEC (1000u * 1000u)      /* progress written to the store */
#define MANAGER_AUTO_RETRY_USEC     (5u * 1000u * 1000u) /* auto-flash again after a refusal */

typedef struct HookRun {
    Manager *manager;
    Hook *hook;
    uint64_t job_id;
    char path[DEVICE_PATH_MAX];
    struct HookRun *next;
} HookRun;

typedef struct Subscriber {
    ManagerEventFn fn;
    void *userdata;
} Subscriber;

struct Manager {
    sd_event *event;
    char *config_path;
    bool config_optional;
    char *override_socket, *override_state_dir;
    unsigned override_workers;
    WorkerRunFn worker_run; /* NULL: the USB implementation */
    bool no_udev;

    Config *config;
    ImageCache *images;
    DeviceTable *devices;
    JobQueue *jobs;         /* live */
    JobQueue *history;      /* finished, at most MANAGER_HISTORY_MAX */
    Store *store;           /* jobs.db on its own thread: every job, from queued to its end */
    bool store_open;        /* it has opened once: ids can be handed out */
    bool started;           /* workers, monitor and coldplug are up (after the store answered) */
    json_object *preloaded; /* the newest jobs of earlier runs, newest last (for `jobs`) */
    char boot_id[40];
    struct Inserting *inserting; /* jobs whose rows are being committed: no id yet */
    size_t n_inserting;
    sd_event_source *auto_retry; /* auto-flash again after the store refused a job */
    Monitor *monitor;
    WorkerPool *pool;
    sd_event_source *pool_source;
    sd_event_source *stop_timer;
    HookRun *hooks;

    uint64_t next_job_id;
    bool paused;
    bool stopping;
    unsigned n_succeeded, n_failed, n_cancelled;
    Subscriber subscribers[MANAGER_SUBSCRIBERS_MAX];
    size_t n_subscribers;
    char *status; /* the last STATUS= sent */
};

void manager_emit(Manager *m, ManagerEvent ev, const Device *d, const Job *j);
void manager_update_status(Manager *m);
/* Within the window after our reset, where leaving and returning is the same plug. */
bool manager_device_expects_replug(const Device *d);
/* d is away and expected back within replug-timeout-ms: until then it is the same plug. */
void manager_device_linger(Manager *m, Device *d);

/* manager-job.c */
typedef struct JobSpec {
    const char *path;
    const char *source;
    CachedImage *image;
    const char *image_name;
    bool auto_flash;
    unsigned retries;
    unsigned timeout_s;
    AfterAction after;
    char *const *hook_argv;
    unsigned hook_timeout_s;
} JobSpec;

/* Called once the jobs are committed (ids set) or refused (r < 0, message); m is NULL
 * when the manager was freed meanwhile (r is then -ECANCELED). */
typedef void (*ManagerQueuedFn)(Manager *m, void *userdata, int r, const char *message,
                                Job *const *jobs, size_t n);

/*
 * Record n jobs (one spec each) in the store, then queue them: a job is a row
 * before it has an id. The auto-flash job of a plug (spec->auto_flash, n == 1)
 * records the plug with it. -ENOSPC when the job table cannot take them.
 */
int manager_queue_jobs(Manager *m, const JobSpec *specs, size_t n, ManagerQueuedFn fn,
                       void *userdata);
/* The newest version of j's row to the store. */
void manager_store_job(Manager *m, const Job *j);
/* The plug record of d (its auto-flash job's), when there is one. */
void manager_store_plug(Manager *m, const Device *d, uint64_t left_usec);
void manager_free_inserting(Manager *m);
void manager_pump(Manager *m);
int manager_on_pool(sd_event_source *s, int fd, uint32_t revents, void *userdata);
/* The board of a job waiting for its replug is back. */
void manager_job_board_returned(Manager *m, Job *j);
/* The board of a job left for good. */
void manager_job_board_left(Manager *m, Job *j);
/* j ends in state (final) for err (and the engine's report, may be NULL): logged, announced,
 * stored, its after= action started, retired once its worker is done. */
void manager_job_end(Manager *m, Job *j, JobState state, const ErrInfo *err,
                     const DfuReport *report);
void manager_job_finish(Manager *m, Job *j, JobState state, EspdfuErr code, const char *fmt, ...)
        __attribute__((format(printf, 5, 6)));
/* What a plug shows once its last job (NULL: none known) is over. */
DevicePlug manager_plug_after(const Job *j);
/* Every live job ends as state (cancelled, interrupted) for why. */
void manager_end_all(Manager *m, JobState state, const char *why);
void manager_auto_flash_all(Manager *m);
void manager_free_hooks(Manager *m);
