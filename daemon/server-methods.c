/* SPDX-License-Identifier: MIT */
/*
 * One small handler per method (docs/protocol.md, "Methods"), reached through
 * a table. The request is already parsed and checked by the wire codec; a
 * handler only asks the manager and answers.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "server-internal.h"
#include "store.h"
#include "timeutil.h"
#include "util.h"

#ifndef ESPDFUD_VERSION
#define ESPDFUD_VERSION "0.1.0"
#endif

typedef void (*Handler)(Client *c, WireRequest *req, int fd);

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

static void reply_internal(Client *c, const WireId *id, int r, const char *what)
{
    log_errno(LOG_ERR, r, "client %" PRIu64 ": %s failed", c->serial, what);
    client_send_error(c, id, WIRE_ERROR_INTERNAL, NULL, "%s failed: %s", what, strerror(-r));
}

/* ---- reading methods ---- */

static void on_hello(Client *c, WireRequest *req, int fd)
{
    json_object *o = json_object_new_object(), *methods = json_object_new_array();

    for (WireMethod m = 0; m < _WIRE_METHOD_MAX && methods; m++)
        json_object_array_add(methods, json_object_new_string(wire_method_to_string(m)));
    put(o, "protocol", json_object_new_int(WIRE_PROTOCOL_VERSION));
    put(o, "server", json_object_new_string("espdfud " ESPDFUD_VERSION));
    if (!put(o, "methods", methods))
        o = (json_object_put(o), NULL);
    if (req->hello.client)
        log_debug("client %" PRIu64 " is %s", c->serial, req->hello.client);
    client_send_result(c, &req->id, o);
}

static void on_status(Client *c, WireRequest *req, int fd)
{
    Manager *m = c->server->manager;
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
                (int64_t)((now_usec(CLOCK_MONOTONIC) - c->server->started_usec) / USEC_PER_SEC)));
    client_send_result(c, &req->id, o);
}

static void on_devices(Client *c, WireRequest *req, int fd)
{
    Manager *m = c->server->manager;
    json_object *list = json_object_new_array();

    for (const Device *d = manager_next_device(m, NULL); d && list; d = manager_next_device(m, d))
        if (json_object_array_add(list, device_to_json(m, d)) < 0)
            list = (json_object_put(list), NULL);
    client_send_result(c, &req->id, list ? one("devices", list) : NULL);
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

/* The newest jobs of earlier runs, whose ids are below every job of this run. */
static json_object *preloaded_of(Manager *m)
{
    return manager_get_preloaded(m);
}

static void on_jobs(Client *c, WireRequest *req, int fd)
{
    Manager *m = c->server->manager;
    json_object *list = json_object_new_array(), *pre = preloaded_of(m);
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
    client_send_result(c, &req->id, list ? one("jobs", list) : NULL);
}

/* What a `job` or `history` call asked the store, for its answer. */
typedef struct StoreAsk {
    WireMethod method;
    unsigned limit;
    bool ascending;
} StoreAsk;

/* Newest first (as the store reads) into newest last (as `history` answers). */
static void reverse_records(json_object *a)
{
    size_t n = json_object_array_length(a);

    for (size_t i = 0; i < n / 2; i++) {
        json_object *x = json_object_get(json_object_array_get_idx(a, i));
        json_object *y = json_object_get(json_object_array_get_idx(a, n - 1 - i));

        json_object_array_put_idx(a, i, y);
        json_object_array_put_idx(a, n - 1 - i, x);
    }
}

/* How many records, in order, fit in one reply line (WIRE_MAX_OUTPUT), with room to spare. */
static size_t fit_reply(json_object *records)
{
    size_t n = json_object_array_length(records), used = 0;

    for (size_t i = 0; i < n; i++) {
        used += strlen(json_object_to_json_string_ext(json_object_array_get_idx(records, i),
                                                      JSON_C_TO_STRING_PLAIN)) +
                1;
        if (used > WIRE_MAX_OUTPUT - 64u * 1024u)
            return i;
    }
    return n;
}

static void on_store_answer(void *userdata, int r, const char *message, json_object *records,
                            uint64_t last)
{
    ServerCall *call = userdata;
    StoreAsk *ask = call->data;
    Client *c = call->client;

    if (!c)
        goto out;
    if (r == -ENOENT && ask->method == WIRE_METHOD_JOB)
        client_send_error(c, &call->id, WIRE_ERROR_NOT_FOUND, NULL, "%s", message);
    else if (r < 0) {
        log_error("client %" PRIu64 ": reading the job store failed: %s", c->serial, message);
        client_send_error(c, &call->id, WIRE_ERROR_INTERNAL, NULL,
                          "reading the job store failed: %s", message);
    } else if (ask->method == WIRE_METHOD_JOB)
        client_send_result(c, &call->id,
                           one("job", json_object_get(json_object_array_get_idx(records, 0))));
    else {
        json_object *o = json_object_new_object();
        bool full = json_object_array_length(records) >= ask->limit;
        size_t k = fit_reply(records);

        /* Records come in query order: a page cut to fit ends where the next begins. */
        if (k < json_object_array_length(records)) {
            json_object_array_del_idx(records, k, json_object_array_length(records) - k);
            full = k > 0;
            last = k > 0 ? (uint64_t)json_object_get_int64(json_object_object_get(
                                   json_object_array_get_idx(records, k - 1), "id"))
                         : 0;
        }
        if (!ask->ascending)
            reverse_records(records);
        put(o, "records", json_object_get(records));
        put(o, "next", full && last ? json_object_new_int64((int64_t)last) : NULL);
        client_send_result(c, &call->id, o);
    }
out:
    json_object_put(records);
    free(ask);
    server_call_end(call);
}

/* Ask the store; the answer comes to on_store_answer(). */
static void ask_store(Client *c, const WireRequest *req, const StoreQuery *q, uint64_t id)
{
    Store *st = manager_get_store(c->server->manager);
    StoreAsk *ask;
    ServerCall *call;
    int r;

    if (!st) {
        client_send_error(c, &req->id, WIRE_ERROR_INTERNAL, NULL, "the job store is not open");
        return;
    }
    ask = calloc(1, sizeof(*ask));
    call = ask ? server_call_begin(c, &req->id) : NULL;
    if (!call) {
        free(ask);
        reply_internal(c, &req->id, -ENOMEM, wire_method_to_string(req->method));
        return;
    }
    *ask = (StoreAsk){.method = req->method,
                      .limit = q ? q->limit : 1,
                      .ascending = q && (q->ascending || q->after)};
    call->data = ask;
    r = q ? store_query(st, q, on_store_answer, call) : store_get(st, id, on_store_answer, call);
    if (r < 0) {
        free(ask);
        server_call_cancel(call);
        if (r == -EAGAIN)
            client_send_error(c, &req->id, WIRE_ERROR_INTERNAL, NULL,
                              "the job store is busy: %u requests wait; try again", STORE_OPS_MAX);
        else
            reply_internal(c, &req->id, r, "asking the job store");
    }
}

static void on_job(Client *c, WireRequest *req, int fd)
{
    const Job *j = manager_get_job(c->server->manager, req->job.id);

    if (j) {
        client_send_result(c, &req->id, one("job", job_to_json(j)));
        return;
    }
    /* Finished before the last restart, or pushed out of memory: the store has it. */
    ask_store(c, req, NULL, req->job.id);
}

static void on_history(Client *c, WireRequest *req, int fd)
{
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

    ask_store(c, req, &q, 0);
}

static void on_subscribe(Client *c, WireRequest *req, int fd)
{
    int r = server_subscribe(c->server, c);

    if (r < 0) {
        reply_internal(c, &req->id, r, "subscribe");
        return;
    }
    client_send_result(c, &req->id, one("subscribed", json_object_new_boolean(true)));
}

/* ---- changing methods ---- */

static void on_cancel(Client *c, WireRequest *req, int fd)
{
    Manager *m = c->server->manager;
    int r = manager_cancel(m, req->job.id);

    if (r == -ENOENT) {
        client_send_error(c, &req->id, WIRE_ERROR_NOT_FOUND, NULL, "no job %" PRIu64, req->job.id);
        return;
    }
    if (r < 0 && r != -EALREADY) {
        reply_internal(c, &req->id, r, "cancel");
        return;
    }
    /* An already finished job is answered as it stands: cancel is idempotent. */
    log_info("job %" PRIu64 ": cancel requested by uid %u (pid %d)", req->job.id, (unsigned)c->uid,
             (int)c->pid);
    client_send_result(c, &req->id, one("job", job_to_json(manager_get_job(m, req->job.id))));
}

static void on_pause(Client *c, WireRequest *req, int fd)
{
    manager_pause(c->server->manager);
    client_send_result(c, &req->id, one("paused", json_object_new_boolean(true)));
}

static void on_resume(Client *c, WireRequest *req, int fd)
{
    manager_resume(c->server->manager);
    client_send_result(c, &req->id, one("paused", json_object_new_boolean(false)));
}

static void on_reload(Client *c, WireRequest *req, int fd)
{
    ConfigErrors errors = {};
    int r;

    log_info("reload requested by uid %u (pid %d)", (unsigned)c->uid, (int)c->pid);
    r = manager_reload(c->server->manager, &errors);
    if (r == -EINVAL || (r < 0 && errors.n > 0))
        client_send_error(c, &req->id, WIRE_ERROR_CONFIG_INVALID, NULL, "%s",
                          errors.n > 0 ? errors.lines[0] : "the configuration is invalid");
    else if (r < 0)
        client_send_error(c, &req->id, WIRE_ERROR_CONFIG_INVALID, NULL,
                          "cannot read the configuration: %s", strerror(-r));
    else
        client_send_result(c, &req->id, one("reloaded", json_object_new_boolean(true)));
    config_errors_clear(&errors);
}

/* ---- dispatch ---- */

static const Handler handlers[_WIRE_METHOD_MAX] = {
        [WIRE_METHOD_HELLO] = on_hello,     [WIRE_METHOD_STATUS] = on_status,
        [WIRE_METHOD_DEVICES] = on_devices, [WIRE_METHOD_JOBS] = on_jobs,
        [WIRE_METHOD_JOB] = on_job,         [WIRE_METHOD_SUBSCRIBE] = on_subscribe,
        [WIRE_METHOD_FLASH] = server_flash, [WIRE_METHOD_CANCEL] = on_cancel,
        [WIRE_METHOD_PAUSE] = on_pause,     [WIRE_METHOD_RESUME] = on_resume,
        [WIRE_METHOD_RELOAD] = on_reload,   [WIRE_METHOD_HISTORY] = on_history,
};

void server_dispatch(Client *c, WireRequest *req, int fd)
{
    const char *name = wire_method_to_string(req->method);

    if (fd >= 0 && req->method != WIRE_METHOD_FLASH) {
        close(fd); /* "only flash takes one; others are closed" */
        fd = -1;
    }
    if (wire_method_is_changing(req->method) && !c->privileged) {
        closep(&fd);
        peer_log(c, LOG_NOTICE, "%s refused: not root, not in group %s", name, c->server->group);
        client_send_error(c, &req->id, WIRE_ERROR_PERMISSION_DENIED, NULL,
                          "permission denied: \"%s\" needs root or membership of group \"%s\"",
                          name, c->server->group);
        return;
    }
    handlers[req->method](c, req, fd);
}
