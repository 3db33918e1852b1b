/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The durable job history: <state-dir>/history.jsonl, one line per finished
 * job (succeeded, failed, cancelled), each the protocol's Job object
 * (job-json.h). Append-only, one write() per complete line then fdatasync, so
 * a crash leaves at most one truncated last line, which readers skip. Past
 * max_bytes the file becomes history.jsonl.1 (replacing an older one).
 *
 * A record that cannot be written (a full disk) waits in a bounded pending
 * queue and is retried with every later record and on a timer that runs only
 * while something waits. Reading goes backwards from the end in chunks, so
 * memory stays bounded whatever the file's size.
 *
 * Main thread only: the manager calls it from the loop.
 */

#include <json-c/json.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#define STORE_FILE         "history.jsonl"
#define STORE_PENDING_MAX  4096u
#define STORE_RETRY_USEC   (10u * 1000000u)
#define STORE_LINE_MAX     (256u * 1024u) /* a longer line is corrupt */
#define STORE_SCAN_RECORDS 4096u          /* read at start for the largest id */
#define STORE_PRELOAD_MAX  256u           /* the newest records kept for `jobs`/`job ID` */

typedef struct Store Store;

typedef struct StoreQuery {
    const char *path;   /* NULL: any port */
    const char *result; /* NULL: any final state */
    int64_t since;      /* Unix seconds: finished at or after; 0: any */
    unsigned limit;     /* > 0 */
} StoreQuery;

/*
 * Create dir (0750) if missing and read the newest records: the largest job id
 * and the preload list. e may be NULL (no retry timer: tests call store_flush).
 * max_bytes: rotate past this. Corrupt lines are skipped with a warning.
 */
int store_new(sd_event *e, const char *dir, uint64_t max_bytes, Store **ret);
Store *store_free(Store *s);
void store_set_max_bytes(Store *s, uint64_t max_bytes);

/* The largest job id read at start or appended since; 0 for none. */
uint64_t store_max_id(const Store *s);

/*
 * Queue one record (borrowed) and write everything pending, in order. 0: all
 * written; else the negative errno of the write that failed, the records stay
 * pending (logged once per outage). -ENOMEM.
 */
int store_append(Store *s, json_object *record);
/* Write what is pending now: what the timer does. */
int store_flush(Store *s);
size_t store_pending(const Store *s);
uint64_t store_dropped(const Store *s); /* oldest pending records dropped, in this outage */
int store_error(const Store *s);        /* the failing write's -errno, 0 when writing works */

/* Matching records, newest last, as a JSON array. */
int store_query(Store *s, const StoreQuery *q, json_object **ret);
/* A record by job id: the preloaded ones first, then the files. -ENOENT. */
int store_find(Store *s, uint64_t id, json_object **ret);
/* The preloaded records (newest last; ids below every job of this run). Borrowed. */
json_object *store_preloaded(const Store *s);

static inline void store_freep(Store **s)
{
    if (*s)
        *s = store_free(*s);
}
