/* SPDX-License-Identifier: MIT */
/*
 * Manager events to subscribers: each event is serialised once and queued for
 * every subscribed client; job.progress is thinned to WIRE_PROGRESS_PER_SECOND
 * per job here, whatever rate the workers report at.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "server-internal.h"
#include "timeutil.h"
#include "util.h"

/* At most WIRE_PROGRESS_PER_SECOND job.progress per job, whatever the manager sends. */
static bool progress_due(Server *s, uint64_t job_id)
{
    uint64_t now = now_usec(CLOCK_MONOTONIC);
    ProgressSlot *slot = NULL, *oldest = &s->progress[0];

    for (size_t i = 0; i < SERVER_PROGRESS_SLOTS && !slot; i++) {
        if (s->progress[i].job_id == job_id)
            slot = &s->progress[i];
        else if (s->progress[i].last_usec < oldest->last_usec)
            oldest = &s->progress[i];
    }
    if (!slot) {
        slot = oldest; /* jobs that finished long ago are the oldest */
        *slot = (ProgressSlot){.job_id = job_id};
    } else if (now - slot->last_usec < USEC_PER_SEC / WIRE_PROGRESS_PER_SECOND) {
        return false;
    }
    slot->last_usec = now;
    return true;
}

static WireEvent wire_event_of(ManagerEvent ev)
{
    switch (ev) {
    case MANAGER_EVENT_DEVICE_ADDED:
        return WIRE_EVENT_DEVICE_ADDED;
    case MANAGER_EVENT_DEVICE_REMOVED:
        return WIRE_EVENT_DEVICE_REMOVED;
    case MANAGER_EVENT_DEVICE_CHANGED:
        return WIRE_EVENT_DEVICE_CHANGED;
    case MANAGER_EVENT_JOB_QUEUED:
        return WIRE_EVENT_JOB_QUEUED;
    case MANAGER_EVENT_JOB_STARTED:
        return WIRE_EVENT_JOB_STARTED;
    case MANAGER_EVENT_JOB_CHANGED:
        return WIRE_EVENT_JOB_CHANGED;
    case MANAGER_EVENT_JOB_PROGRESS:
        return WIRE_EVENT_JOB_PROGRESS;
    case MANAGER_EVENT_JOB_FINISHED:
        return WIRE_EVENT_JOB_FINISHED;
    case _MANAGER_EVENT_MAX:
        break;
    }
    return _WIRE_EVENT_MAX;
}

static json_object *event_data(Server *s, ManagerEvent ev, const Device *d, const Job *j)
{
    json_object *o;

    switch (ev) {
    case MANAGER_EVENT_DEVICE_REMOVED:
        o = json_object_new_object();
        if (o && json_object_object_add(o, "path", json_object_new_string(d->info.path)) < 0)
            o = (json_object_put(o), NULL);
        return o;
    case MANAGER_EVENT_DEVICE_ADDED:
    case MANAGER_EVENT_DEVICE_CHANGED:
        return device_to_json(s->manager, d);
    case MANAGER_EVENT_JOB_PROGRESS:
        return job_progress_to_json(j);
    case MANAGER_EVENT_JOB_QUEUED:
    case MANAGER_EVENT_JOB_STARTED:
    case MANAGER_EVENT_JOB_CHANGED:
    case MANAGER_EVENT_JOB_FINISHED:
    case _MANAGER_EVENT_MAX:
        break;
    }
    return j ? job_to_json(j) : NULL;
}

/* Serialised once, queued for every subscriber. */
void server_on_manager_event(void *userdata, ManagerEvent ev, const Device *d, const Job *j)
{
    Server *s = userdata;
    _cleanup_free_ char *line = NULL;
    json_object *data;
    size_t len;

    if (ev == MANAGER_EVENT_JOB_PROGRESS && !progress_due(s, j->id))
        return;
    data = event_data(s, ev, d, j);
    if (!data || wire_build_event(wire_event_of(ev), data, &line) < 0) {
        json_object_put(data);
        log_error("cannot serialise a %s event", manager_event_to_string(ev));
        return;
    }
    json_object_put(data);
    len = strlen(line);
    for (Client *c = s->clients; c; c = c->next)
        if (c->subscribed)
            client_send(c, line, len);
}

int server_subscribe(Server *s, Client *c)
{
    int r;

    if (c->subscribed)
        return 0;
    if (!s->manager_subscribed) {
        r = manager_subscribe(s->manager, server_on_manager_event, s);
        if (r < 0)
            return r;
        s->manager_subscribed = true;
    }
    c->subscribed = true;
    s->n_subscribers++;
    return 0;
}
