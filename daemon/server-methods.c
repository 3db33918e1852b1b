/* SPDX-License-Identifier: MIT */
/*
 * One small handler per method (docs/protocol.md, "Methods"), in the table
 * the transport is given (server.h). The request is already parsed, checked
 * and allowed; a handler only asks the manager, the store or a loader and
 * returns its answer, or keeps the call and answers it later.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "job-json.h"
#include "log.h"
#include "server-json.h"
#include "server-methods.h"
#include "store.h"
#include "timeutil.h"
#include "util.h"

#ifndef ESPDFUD_VERSION
#define ESPDFUD_VERSION "0.1.0"
#endif

/* json-c's add takes the value even on failure: one call, one reference. */
static bool put(json_object *o, const char *key, json_object *v)
{
    return o && json_object_object_add(o, key, v) == 0;
}

static json_object *one(const char *key, json_object *v)
{
    json_object *o = json_object_new_object();

    if (!put(o, key, v))
        return json_object_put(o), NULL;
    return o;
}

/* The answer is result (taken); -ENOMEM when building it failed. */
static int answer(ServerReply *reply, json_object *result)
{
    reply->result = result;
    return result ? 0 : -ENOMEM;
}

/* ---- reading methods ---- */

static int on_hello(void *userdata, ServerCall *call, WireRequest *req, int fd, ServerReply *reply)
{
    json_object *o = json_object_new_object(), *methods = json_object_new_array();

    for (WireMethod m = 0; m < _WIRE_METHOD_MAX && methods; m++)
        json_object_array_add(methods, json_object_new_string(wire_method_to_string(m)));
    put(o, "protocol", json_object_new_int(WIRE_PROTOCOL_VERSION));
    put(o, "server", json_object_new_string("espdfud " ESPDFUD_VERSION));
    if (!put(o, "methods", methods))
        o = (json_object_put(o), NULL);
    if (req->hello.client)
        log_debug("client %" PRIu64 " is %s", server_call_peer(call)->serial, req->hello.client);
    return answer(reply, o);
}

static int on_status(void *userdata, ServerCall *call, WireRequest *req, int fd, ServerReply *reply)
{
    Methods *x = userdata;
    Manager *m = x->manager;
    json_object *o = json_object_new_object();
    ManagerStats st;

    manager_get_stats(m, &st);
    put(o, "protocol", json_object_new_int(WIRE_PROTOCOL_VERSION));
    put(o, "version", json_object_new_string(ESPDFUD_VERSION));
    put(o, "devices", json_object_new_int64((int64_t)st.boards));
    put(o, "flashing", json_object_new_int64((int64_t)st.jobs_active));
    put(o, "queued", json_object_new_int64((int64_t)(st.jobs_live - st.jobs_active)));
    put(o, "succeeded", json_object_new_int64(st.succeeded));
    put(o, "failed", json_object_new_int64(st.failed));
    put(o, "cancelled", json_object_new_int64(st.cancelled));
    put(o, "paused", json_object_new_boolean(manager_is_paused(m)));
    /* Non-zero while job records cannot reach jobs.db (a full disk, an I/O error). */
    put(o, "history_pending", json_object_new_int64((int64_t)st.history_pending));
    put(o, "history_dropped", json_object_new_int64((int64_t)st.history_dropped));
    put(o, "history_error",
        st.history_error
                ? json_object_new_string(st.history_error_message[0] ? st.history_error_message
                                                                     : strerror(-st.history_error))
                : NULL);
    put(o, "store_open", json_object_new_boolean(st.store_open));
    put(o, "store_commits", json_object_new_int64((int64_t)st.store_commits));
    put(o, "recording", json_object_new_int64((int64_t)st.jobs_recording));
    put(o, "workers", json_object_new_int64(manager_get_config(m)->workers));
    put(o, "uptime",
        json_object_new_int64(
                (int64_t)((now_usec(CLOCK_MONOTONIC) - x->started_usec) / USEC_PER_SEC)));
    return answer(reply, o);
}

static int on_devices(void *userdata, ServerCall *call, WireRequest *req, int fd,
                      ServerReply *reply)
{
    Manager *m = ((Methods *)userdata)->manager;
    json_object *list = json_object_new_array();

    for (const Device *d = manager_next_device(m, NULL); d && list; d = manager_next_device(m, d))
        if (json_object_array_add(list, device_to_json(m, d)) < 0)
            list = (json_object_put(list), NULL);
    return answer(reply, list ? one("devices", list) : NULL);
}

static bool job_matches(const Job *j, const WireRequest *req)
{
    if (req->jobs.path && strcmp(j->path, req->jobs.path) != 0)
        return false;
    switch (req->jobs.filter) {
    case WIRE_JOBS_ALL:
        return true;
    case WIRE_JOBS_STATE:
        return strcmp(job_state_to_string(j->state), req->jobs.state) == 0;
    case WIRE_JOBS_ACTIVE:
        return !job_state_is_final(j->state);
    case WIRE_JOBS_FINISHED:
        return job_state_is_final(j->state);
    }
    return false;
}

/* A record from before the restart: always final. */
static bool record_matches(json_object *o, const WireRequest *req)
{
    json_object *path = NULL, *state = NULL;

    /* The store validated it; still, nothing here is dereferenced blindly. */
    if (!json_object_object_get_ex(o, "path", &path) || !json_object_get_string(path) ||
        !json_object_object_get_ex(o, "state", &state) || !json_object_get_string(state))
        return false;
    if (req->jobs.path && strcmp(json_object_get_string(path), req->jobs.path) != 0)
        return false;
    switch (req->jobs.filter) {
    case WIRE_JOBS_ALL:
    case WIRE_JOBS_FINISHED:
        return true;
    case WIRE_JOBS_STATE:
        return strcmp(json_object_get_string(state), req->jobs.state) == 0;
    case WIRE_JOBS_ACTIVE:
        return false;
    }
    return false;
}

static int on_jobs(void *userdata, ServerCall *call, WireRequest *req, int fd, ServerReply *reply)
{
    Manager *m = ((Methods *)userdata)->manager;
    json_object *list = json_object_new_array(), *pre = manager_get_preloaded(m);
    size_t n = 0, skip = 0, n_pre = pre ? json_object_array_length(pre) : 0;

    /* "in id order, newest limit": count first, then skip the oldest. */
    for (size_t i = 0; i < n_pre; i++)
        n += record_matches(json_object_array_get_idx(pre, i), req);
    for (const Job *j = manager_next_job(m, NULL); j; j = manager_next_job(m, j))
        n += job_matches(j, req);
    if (req->jobs.limit && n > req->jobs.limit)
        skip = n - (size_t)req->jobs.limit;
    for (size_t i = 0; i < n_pre && list; i++) {
        json_object *o = json_object_array_get_idx(pre, i);

        if (!record_matches(o, req) || (skip && skip--))
            continue;
        if (json_object_array_add(list, json_object_get(o)) < 0)
            list = (json_object_put(list), NULL);
    }
    for (const Job *j = manager_next_job(m, NULL); j && list; j = manager_next_job(m, j)) {
        if (!job_matches(j, req) || (skip && skip--))
            continue;
        if (json_object_array_add(list, job_to_json(j)) < 0)
            list = (json_object_put(list), NULL);
    }
    return answer(reply, list ? one("jobs", list) : NULL);
}

/* The store's answer to `job` for a job no longer in memory. */
static void on_job_found(void *userdata, int r, const char *message, json_object *records,
                         uint64_t last)
{
    ServerCall *call = userdata;
    ServerReply reply = {};

    if (r == -ENOENT)
        r = server_reply_error(&reply, WIRE_ERROR_NOT_FOUND, NULL, "%s", message);
    else if (r < 0) {
        log_error("client %" PRIu64 ": reading the job store failed: %s",
                  server_call_peer(call)->serial, message);
        r = server_reply_error(&reply, WIRE_ERROR_INTERNAL, NULL,
                               "reading the job store failed: %s", message);
    } else
        r = answer(&reply, one("job", json_object_get(json_object_array_get_idx(records, 0))));
    json_object_put(records);
    server_call_reply(call, r, &reply);
}

/* Asking the store: later, or an error now (no store, a full queue). */
static int store_asked(int r, ServerReply *reply)
{
    if (r == -ENODEV)
        return server_reply_error(reply, WIRE_ERROR_INTERNAL, NULL, "the job store is not open");
    if (r == -EAGAIN)
        return server_reply_error(reply, WIRE_ERROR_INTERNAL, NULL,
                                  "the job store is busy: %u requests wait; try again",
                                  STORE_OPS_MAX);
    return r < 0 ? r : SERVER_REPLY_LATER;
}

static int on_job(void *userdata, ServerCall *call, WireRequest *req, int fd, ServerReply *reply)
{
    Methods *x = userdata;
    const Job *j = manager_get_job(x->manager, req->job.id);

    Store *st = manager_get_store(x->manager);

    if (j)
        return answer(reply, one("job", job_to_json(j)));
    /* Finished before the last restart, or pushed out of memory: the store has it. */
    return store_asked(st ? store_get(st, req->job.id, on_job_found, call) : -ENODEV, reply);
}

/* The store's page of history, as text: the loop only copies it into the reply. */
static void on_history_page(void *userdata, int r, const char *message, char *page)
{
    ServerCall *call = userdata;
    ServerReply reply = {.result_text = page};

    if (r < 0) {
        log_error("client %" PRIu64 ": reading the job store failed: %s",
                  server_call_peer(call)->serial, message);
        r = server_reply_error(&reply, WIRE_ERROR_INTERNAL, NULL,
                               "reading the job store failed: %s", message);
    }
    server_call_reply(call, r, &reply);
}

static int on_history(void *userdata, ServerCall *call, WireRequest *req, int fd,
                      ServerReply *reply)
{
    Store *st = manager_get_store(((Methods *)userdata)->manager);
    const StoreQuery q = {
            .path = req->history.path,
            .result = req->history.result,
            .sha256 = req->history.sha256,
            .since = req->history.since,
            .before = req->history.before,
            .after = req->history.after,
            .ascending = req->history.ascending,
            .limit = req->history.limit,
    };

    /* Built and cut to WIRE_MAX_PAGE_BYTES on the store's thread. */
    return store_asked(
            st ? store_page(st, &q, WIRE_MAX_PAGE_BYTES, on_history_page, call) : -ENODEV, reply);
}

static int on_subscribe(void *userdata, ServerCall *call, WireRequest *req, int fd,
                        ServerReply *reply)
{
    int r = server_call_subscribe(call);

    if (r < 0)
        return r;
    return answer(reply, one("subscribed", json_object_new_boolean(true)));
}

/* ---- changing methods ---- */

static int on_cancel(void *userdata, ServerCall *call, WireRequest *req, int fd, ServerReply *reply)
{
    Manager *m = ((Methods *)userdata)->manager;
    const ServerPeer *p = server_call_peer(call);
    int r = manager_cancel(m, req->job.id);

    if (r == -ENOENT)
        return server_reply_error(reply, WIRE_ERROR_NOT_FOUND, NULL, "no job %" PRIu64,
                                  req->job.id);
    if (r < 0 && r != -EALREADY)
        return r;
    /* An already finished job is answered as it stands: cancel is idempotent. */
    log_info("job %" PRIu64 ": cancel requested by uid %u (pid %d)", req->job.id, (unsigned)p->uid,
             (int)p->pid);
    return answer(reply, one("job", job_to_json(manager_get_job(m, req->job.id))));
}

static int on_pause(void *userdata, ServerCall *call, WireRequest *req, int fd, ServerReply *reply)
{
    manager_pause(((Methods *)userdata)->manager);
    return answer(reply, one("paused", json_object_new_boolean(true)));
}

static int on_resume(void *userdata, ServerCall *call, WireRequest *req, int fd, ServerReply *reply)
{
    manager_resume(((Methods *)userdata)->manager);
    return answer(reply, one("paused", json_object_new_boolean(false)));
}

static int on_reload(void *userdata, ServerCall *call, WireRequest *req, int fd, ServerReply *reply)
{
    const ServerPeer *p = server_call_peer(call);
    ConfigErrors errors = {};
    int r;

    log_info("reload requested by uid %u (pid %d)", (unsigned)p->uid, (int)p->pid);
    r = manager_reload(((Methods *)userdata)->manager, &errors);
    if (r == -EINVAL || (r < 0 && errors.n > 0))
        r = server_reply_error(reply, WIRE_ERROR_CONFIG_INVALID, NULL, "%s",
                               errors.n > 0 ? errors.lines[0] : "the configuration is invalid");
    else if (r < 0)
        r = server_reply_error(reply, WIRE_ERROR_CONFIG_INVALID, NULL,
                               "cannot read the configuration: %s", strerror(-r));
    else
        r = answer(reply, one("reloaded", json_object_new_boolean(true)));
    config_errors_clear(&errors);
    return r;
}

/* ---- the table ---- */

int methods_new(sd_event *e, Manager *m, Methods **ret)
{
    Methods *x = calloc(1, sizeof(*x));
    int r;

    if (!x)
        return -ENOMEM;
    *x = (Methods){
            .manager = m,
            .started_usec = now_usec(CLOCK_MONOTONIC),
            .table = {.handlers =
                              {
                                      [WIRE_METHOD_HELLO] = on_hello,
                                      [WIRE_METHOD_STATUS] = on_status,
                                      [WIRE_METHOD_DEVICES] = on_devices,
                                      [WIRE_METHOD_JOBS] = on_jobs,
                                      [WIRE_METHOD_JOB] = on_job,
                                      [WIRE_METHOD_SUBSCRIBE] = on_subscribe,
                                      [WIRE_METHOD_FLASH] = method_flash,
                                      [WIRE_METHOD_CANCEL] = on_cancel,
                                      [WIRE_METHOD_PAUSE] = on_pause,
                                      [WIRE_METHOD_RESUME] = on_resume,
                                      [WIRE_METHOD_RELOAD] = on_reload,
                                      [WIRE_METHOD_HISTORY] = on_history,
                              }},
    };
    x->table.userdata = x;
    for (WireMethod i = 0; i < _WIRE_METHOD_MAX; i++)
        assert(x->table.handlers[i]); /* every method has its handler */
    r = image_loader_new(e, &x->images);
    if (r < 0) {
        free(x);
        return r;
    }
    *ret = x;
    return 0;
}

Methods *methods_free(Methods *x)
{
    if (!x)
        return NULL;
    image_loader_free(x->images);
    free(x);
    return NULL;
}
