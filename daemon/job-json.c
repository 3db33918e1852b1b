/* SPDX-License-Identifier: MIT */
/*
 * Job as the protocol shows it (docs/protocol.md, "Objects"): the control
 * socket sends it and the history store writes it, so both stay one format.
 * Builders return NULL only when memory runs out.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "job-json.h"
#include "timeutil.h"
#include "wire.h"

JsonObj json_obj_new(void)
{
    json_object *o = json_object_new_object();

    return (JsonObj){.o = o, .failed = !o};
}

void json_obj_add(JsonObj *b, const char *key, json_object *v, bool null_ok)
{
    if (b->failed || (!v && !null_ok) || json_object_object_add(b->o, key, v) < 0) {
        json_object_put(v);
        b->failed = true;
    }
}

void json_obj_add_str(JsonObj *b, const char *key, const char *s)
{
    json_obj_add(b, key, s ? json_object_new_string(s) : NULL, !s);
}

void json_obj_add_int(JsonObj *b, const char *key, int64_t n)
{
    json_obj_add(b, key, json_object_new_int64(n), false);
}

json_object *json_obj_end(JsonObj *b)
{
    if (b->failed) {
        json_object_put(b->o);
        return NULL;
    }
    return b->o;
}

void json_array_reverse(json_object *a)
{
    size_t n = json_object_array_length(a);

    for (size_t i = 0; i < n / 2; i++) {
        json_object *x = json_object_get(json_object_array_get_idx(a, i));
        json_object *y = json_object_get(json_object_array_get_idx(a, n - 1 - i));

        json_object_array_put_idx(a, i, y);
        json_object_array_put_idx(a, n - 1 - i, x);
    }
}

void json_obj_add_time(JsonObj *b, const char *key, uint64_t usec)
{
    json_object *v = wire_json_time(usec);

    json_obj_add(b, key, v, usec == 0);
}

static json_object *image_json(const Job *j)
{
    JsonObj b = json_obj_new();

    json_obj_add_str(&b, "name", j->image_name);
    json_obj_add_str(&b, "sha256", j->image ? j->image->sha256_hex : NULL);
    json_obj_add_int(&b, "size", j->image ? (int64_t)j->image->image->size : 0);
    return json_obj_end(&b);
}

static json_object *progress_json(const Job *j)
{
    JsonObj b = json_obj_new();

    json_obj_add_int(&b, "bytes", (int64_t)j->bytes_sent);
    json_obj_add_int(&b, "total", (int64_t)j->bytes_total);
    json_obj_add_int(&b, "percent", j->percent);
    json_obj_add_int(&b, "rate", (int64_t)j->rate);
    json_obj_add_int(&b, "block", j->block);
    return json_obj_end(&b);
}

static json_object *history_json(const Job *j)
{
    json_object *list = json_object_new_array();

    for (unsigned i = 0; i < j->n_transitions && list; i++) {
        const JobTransition *t = &j->transitions[i];
        JsonObj b = json_obj_new();
        json_object *e;

        json_obj_add_str(&b, "state", job_state_to_string(t->state));
        json_obj_add_time(&b, "at", t->realtime_usec);
        json_obj_add_str(&b, "reason", t->reason);
        e = json_obj_end(&b);
        if (!e || json_object_array_add(list, e) < 0) {
            json_object_put(e);
            json_object_put(list);
            list = NULL;
        }
    }
    return list;
}

/* The Job's "error" and each attempt's: an ErrInfo and, when there is one, where it happened. */
static json_object *error_json(const ErrInfo *e, bool has_report, const DfuReport *r)
{
    JsonObj b = json_obj_new();

    json_obj_add_str(&b, "code", espdfu_err_to_string(e->code));
    json_obj_add_str(&b, "message", e->message);
    if (has_report) {
        json_obj_add_str(&b, "phase", dfu_phase_to_string(r->phase));
        json_obj_add_int(&b, "block", r->block);
        json_obj_add_int(&b, "offset", (int64_t)r->offset);
        json_obj_add_str(&b, "dfu_status",
                         r->dfu_status >= 0 ? dfu_status_to_string((DfuStatus)r->dfu_status)
                                            : NULL);
    } else {
        json_obj_add(&b, "phase", NULL, true);
        json_obj_add(&b, "block", NULL, true);
        json_obj_add(&b, "offset", NULL, true);
        json_obj_add(&b, "dfu_status", NULL, true);
    }
    return json_obj_end(&b);
}

static json_object *attempts_json(const Job *j)
{
    json_object *list = json_object_new_array();

    for (unsigned i = 0; i < j->n_attempts && list; i++) {
        const JobAttempt *a = &j->attempts[i];
        JsonObj b = json_obj_new();
        json_object *e;

        json_obj_add_int(&b, "n", i + 1);
        json_obj_add_time(&b, "started", a->started_usec);
        json_obj_add_time(&b, "finished", a->finished_usec);
        json_obj_add_int(&b, "bytes", (int64_t)a->bytes);
        if (a->error.code != ERR_OK)
            json_obj_add(&b, "error", error_json(&a->error, a->has_report, &a->report), false);
        else
            json_obj_add(&b, "error", NULL, true);
        e = json_obj_end(&b);
        if (!e || json_object_array_add(list, e) < 0) {
            json_object_put(e);
            json_object_put(list);
            list = NULL;
        }
    }
    return list;
}

json_object *job_to_json(const Job *j)
{
    JsonObj b = json_obj_new();

    json_obj_add_int(&b, "id", (int64_t)j->id);
    json_obj_add_str(&b, "path", j->path);
    json_obj_add_str(&b, "source", j->source);
    json_obj_add_str(&b, "chip",
                     chip_to_string(j->chip != CHIP_UNKNOWN
                                            ? j->chip
                                            : (j->image ? j->image->image->chip : CHIP_UNKNOWN)));
    json_obj_add_str(&b, "state", job_state_to_string(j->state));
    json_obj_add(&b, "image", image_json(j), false);
    json_obj_add(&b, "progress", progress_json(j), false);
    json_obj_add_time(&b, "created", j->created_usec);
    json_obj_add_time(&b, "started", j->started_usec);
    json_obj_add_time(&b, "finished", j->finished_usec);
    json_obj_add(&b, "history", history_json(j), false);
    json_obj_add_int(&b, "retries", j->retries_done);
    json_obj_add_int(&b, "max_retries", j->retries_allowed);
    json_obj_add_int(&b, "timeout_s", j->timeout_s);
    json_obj_add(&b, "attempts", attempts_json(j), false);
    if (j->error.code != ERR_OK)
        json_obj_add(&b, "error", error_json(&j->error, j->has_report, &j->report), false);
    else
        json_obj_add(&b, "error", NULL, true);
    return json_obj_end(&b);
}

json_object *job_progress_to_json(const Job *j)
{
    JsonObj b = json_obj_new();

    json_obj_add_int(&b, "id", (int64_t)j->id);
    json_obj_add_str(&b, "path", j->path);
    json_obj_add_str(&b, "state", job_state_to_string(j->state));
    json_obj_add_int(&b, "bytes", (int64_t)j->bytes_sent);
    json_obj_add_int(&b, "total", (int64_t)j->bytes_total);
    json_obj_add_int(&b, "percent", j->percent);
    json_obj_add_int(&b, "rate", (int64_t)j->rate);
    return json_obj_end(&b);
}
