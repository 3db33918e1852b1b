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

    Config *config;
    ImageCache *images;
    DeviceTable *devices;
    JobQueue *jobs;    /* live */
    JobQueue *history; /* finished, at most MANAGER_HISTORY_MAX */
    Store *store;      /* history.jsonl: every finished job, across restarts */
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

int manager_queue_job(Manager *m, const JobSpec *spec, Job **ret);
void manager_pump(Manager *m);
int manager_on_pool(sd_event_source *s, int fd, uint32_t revents, void *userdata);
/* The board of a job waiting for its replug is back. */
void manager_job_board_returned(Manager *m, Job *j);
/* The board of a job left for good. */
void manager_job_board_left(Manager *m, Job *j);
void manager_job_finish(Manager *m, Job *j, JobState state, EspdfuErr code, const char *fmt, ...)
        __attribute__((format(printf, 5, 6)));
void manager_cancel_all(Manager *m, const char *why);
void manager_free_hooks(Manager *m);
