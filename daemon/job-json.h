/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Job as the protocol's Job object (docs/protocol.md, "Objects"). The control
 * socket and the history store (store.c) both use it, so a history record is
 * exactly what `job ID` answered. Builders return NULL only when memory runs out.
 */

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

#include "job.h"

/* Collects failures so a builder checks once at the end instead of at every key. */
typedef struct JsonObj {
    json_object *o;
    bool failed;
} JsonObj;

JsonObj json_obj_new(void);
/* Takes v; a NULL v is JSON null when null_ok, else a failure. */
void json_obj_add(JsonObj *b, const char *key, json_object *v, bool null_ok);
void json_obj_add_str(JsonObj *b, const char *key, const char *s); /* NULL: null */
void json_obj_add_int(JsonObj *b, const char *key, int64_t n);
void json_obj_add_time(JsonObj *b, const char *key, uint64_t realtime_usec); /* 0: null */
/* The object, or NULL (and everything freed) if any add failed. */
json_object *json_obj_end(JsonObj *b);

/* An array's elements in the opposite order, in place (newest first into newest last). */
void json_array_reverse(json_object *a);
json_object *job_to_json(const Job *j);
json_object *job_progress_to_json(const Job *j);
