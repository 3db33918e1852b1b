/* SPDX-License-Identifier: MIT */
/*
 * Device and Job as the protocol shows them (docs/protocol.md, "Objects").
 * Builders return NULL only when memory runs out.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "server-internal.h"
#include "timeutil.h"

/* Collects failures so a builder checks once at the end instead of at every key. */
typedef struct Obj {
    json_object *o;
    bool failed;
} Obj;

static Obj obj_new(void)
{
    json_object *o = json_object_new_object();

    return (Obj){.o = o, .failed = !o};
}

static void add(Obj *b, const char *key, json_object *v, bool null_ok)
{
    if (b->failed || (!v && !null_ok) || json_object_object_add(b->o, key, v) < 0) {
        json_object_put(v);
        b->failed = true;
    }
}

static void add_str(Obj *b, const char *key, const char *s)
{
    add(b, key, s ? json_object_new_string(s) : NULL, !s);
}

static void add_int(Obj *b, const char *key, int64_t n)
{
    add(b, key, json_object_new_int64(n), false);
}

static json_object *obj_end(Obj *b)
{
    if (b->failed) {
        json_object_put(b->o);
        return NULL;
    }
    return b->o;
}

json_object *json_time(uint64_t realtime_usec)
{
    /* Seconds with microseconds; "%.6f" keeps them all (json-c's default shows 17 digits). */
    json_object *o;
    char buf[32];

    if (realtime_usec == 0)
        return NULL;
    snprintf(buf, sizeof(buf), "%" PRIu64 ".%06" PRIu64, realtime_usec / USEC_PER_SEC,
             realtime_usec % USEC_PER_SEC);
    o = json_object_new_double_s((double)realtime_usec / 1e6, buf);
    return o;
}

static void add_time(Obj *b, const char *key, uint64_t usec)
{
    json_object *v = json_time(usec);

    add(b, key, v, usec == 0);
}

json_object *device_to_json(Manager *m, const Device *d)
{
    const Job *j = d->last_job ? manager_get_job(m, d->last_job) : NULL;
    Obj b = obj_new();

    add_str(&b, "path", d->info.path);
    add_str(&b, "chip", chip_to_string(d->info.chip));
    add_int(&b, "vid", d->info.vid);
    add_int(&b, "pid", d->info.pid);
    add_str(&b, "mode", device_mode_to_string(d->info.mode));
    add_str(&b, "state", device_plug_to_string(d->plug));
    add_int(&b, "bcd_device", d->info.bcd_device);
    add_str(&b, "serial", d->info.serial);
    add_int(&b, "busnum", d->info.busnum);
    add_int(&b, "devnum", d->info.devnum);
    add_time(&b, "arrived", d->arrived_realtime_usec);
    /* The job working on the board now; a finished one is history, see `jobs`. */
    if (j && !job_state_is_final(j->state))
        add_int(&b, "job", (int64_t)j->id);
    else
        add(&b, "job", NULL, true);
    return obj_end(&b);
}

static json_object *image_json(const Job *j)
{
    Obj b = obj_new();

    add_str(&b, "name", j->image_name);
    add_str(&b, "sha256", j->image ? j->image->sha256_hex : NULL);
    add_int(&b, "size", j->image ? (int64_t)j->image->image->size : 0);
    return obj_end(&b);
}

static json_object *progress_json(const Job *j)
{
    Obj b = obj_new();

    add_int(&b, "bytes", (int64_t)j->bytes_sent);
    add_int(&b, "total", (int64_t)j->bytes_total);
    add_int(&b, "percent", j->percent);
    add_int(&b, "rate", (int64_t)j->rate);
    return obj_end(&b);
}

static json_object *history_json(const Job *j)
{
    json_object *list = json_object_new_array();

    for (unsigned i = 0; i < j->n_transitions && list; i++) {
        const JobTransition *t = &j->transitions[i];
        Obj b = obj_new();
        json_object *e;

        add_str(&b, "state", job_state_to_string(t->state));
        add_time(&b, "at", t->realtime_usec);
        add_str(&b, "reason", t->reason);
        e = obj_end(&b);
        if (!e || json_object_array_add(list, e) < 0) {
            json_object_put(e);
            json_object_put(list);
            list = NULL;
        }
    }
    return list;
}

static json_object *error_json(const Job *j)
{
    Obj b = obj_new();

    add_str(&b, "code", espdfu_err_to_string(j->error.code));
    add_str(&b, "message", j->error.message);
    if (j->has_report) {
        add_str(&b, "phase", dfu_phase_to_string(j->report.phase));
        add_int(&b, "block", j->report.block);
        add_int(&b, "offset", (int64_t)j->report.offset);
        add_str(&b, "dfu_status",
                j->report.dfu_status >= 0 ? dfu_status_to_string((DfuStatus)j->report.dfu_status)
                                          : NULL);
    } else {
        add(&b, "phase", NULL, true);
        add(&b, "block", NULL, true);
        add(&b, "offset", NULL, true);
        add(&b, "dfu_status", NULL, true);
    }
    return obj_end(&b);
}

json_object *job_to_json(const Job *j)
{
    Obj b = obj_new();

    add_int(&b, "id", (int64_t)j->id);
    add_str(&b, "path", j->path);
    add_str(&b, "source", j->source);
    add_str(&b, "chip",
            chip_to_string(j->chip != CHIP_UNKNOWN
                                   ? j->chip
                                   : (j->image ? j->image->image->chip : CHIP_UNKNOWN)));
    add_str(&b, "state", job_state_to_string(j->state));
    add(&b, "image", image_json(j), false);
    add(&b, "progress", progress_json(j), false);
    add_time(&b, "created", j->created_usec);
    add_time(&b, "started", j->started_usec);
    add_time(&b, "finished", j->finished_usec);
    add(&b, "history", history_json(j), false);
    add_int(&b, "retries", j->retries_done);
    add_int(&b, "max_retries", j->retries_allowed);
    add_int(&b, "timeout_s", j->timeout_s);
    if (j->error.code != ERR_OK)
        add(&b, "error", error_json(j), false);
    else
        add(&b, "error", NULL, true);
    return obj_end(&b);
}

json_object *job_progress_to_json(const Job *j)
{
    Obj b = obj_new();

    add_int(&b, "id", (int64_t)j->id);
    add_str(&b, "path", j->path);
    add_str(&b, "state", job_state_to_string(j->state));
    add_int(&b, "bytes", (int64_t)j->bytes_sent);
    add_int(&b, "total", (int64_t)j->bytes_total);
    add_int(&b, "percent", j->percent);
    add_int(&b, "rate", (int64_t)j->rate);
    return obj_end(&b);
}
