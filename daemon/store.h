/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The job store: jobs.db (store-db.h) on its own thread, so that no write,
 * fsync or query ever runs on the main loop.
 *
 * The loop hands the thread work and goes on:
 *  - inserts (a job is a row before anyone learns its id): one transaction
 *    and one commit per call, answered with the ids once committed;
 *  - job and plug updates: coalesced by id (only the newest version of a row
 *    waits), written together in one transaction per round; a failed round
 *    (a full disk, an I/O error, a lock held by a stray process) keeps them
 *    and retries every STORE_RETRY_USEC, in bounded memory;
 *  - queries: answered with the records.
 * Answers come back through an eventfd the loop watches; their callbacks run
 * on the main thread. Opening (checks, migration, the import of
 * history.jsonl, the recovery of interrupted jobs) happens on the thread
 * too, and is retried while it fails.
 */

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "store-db.h"

#define STORE_PENDING_MAX 4096u /* rows waiting to be written */
#define STORE_OPS_MAX     1024u /* inserts and queries waiting for the thread */
#define STORE_RETRY_USEC  (2u * 1000000u)
#define STORE_PRELOAD_MAX 256u /* the newest jobs handed to the manager at start */
#define STORE_PRUNE_BATCH 1000u
#define STORE_INSERT_MAX  256u /* jobs in one insert: a flash's paths */

typedef struct Store Store;

typedef struct StoreStats {
    bool open;
    size_t pending;   /* rows waiting to be written */
    uint64_t dropped; /* rows dropped since start because the pending set was full */
    int error;        /* -errno of the last failed write or open, 0 once one succeeds */
    char error_message[STORE_DB_ERR_MAX];
    uint64_t commits;     /* since start */
    uint64_t interrupted; /* jobs recovered as interrupted at the last open */
} StoreStats;

/* The store opened (r == 0), or could not (r < 0, message says why; it keeps trying). */
typedef struct StoreReady {
    int r;
    const char *message;
    const StoreDbOpenInfo *info;
    unsigned recovered;     /* live jobs of the previous run, now interrupted */
    json_object *preloaded; /* borrowed: the newest jobs, newest last */
    const StorePlug *plugs; /* open plugs of this boot */
    size_t n_plugs;
} StoreReady;

typedef void (*StoreReadyFn)(void *userdata, const StoreReady *ready);
/* ids[n] on success; r < 0 and message otherwise. */
typedef void (*StoreInsertFn)(void *userdata, int r, const char *message, const uint64_t *ids,
                              size_t n);
/* records: a JSON array (taken) in the order of the query; last: the id of the last row seen. */
typedef void (*StoreQueryFn)(void *userdata, int r, const char *message, json_object *records,
                             uint64_t last);

typedef struct StoreOptions {
    const char *dir;
    const char *boot_id;
    uint64_t keep_jobs; /* prune the oldest finished jobs beyond this; 0: keep all */
    StoreReadyFn ready;
    void *userdata;
} StoreOptions;

/* Start the thread; it opens the database and reports through o->ready. */
int store_new(sd_event *e, const StoreOptions *o, Store **ret);

/*
 * Write what is pending (one more try), stop the thread and free. Waits at
 * most timeout_usec for the thread; logs every row that could not be
 * written. Callbacks still outstanding are called with -ECANCELED.
 */
Store *store_free(Store *s, uint64_t timeout_usec);

/* n job rows (copied), plus the plug the first one is the auto-flash job of
 * (copied; its id becomes that job's id), in one transaction. */
int store_insert_jobs(Store *s, const StoreJobRow *rows, size_t n, const StorePlug *plug,
                      StoreInsertFn fn, void *userdata);
/* Write the newest version of a job's row (copied; row->id set). */
int store_put_job(Store *s, const StoreJobRow *row);
int store_put_plug(Store *s, const StorePlug *plug); /* plug->id set */

/*
 * One page of a query as JSON text, built on the store's thread so the loop only
 * copies it: {"records":[Job...], "next":ID|null}, records in id order (newest last)
 * or, ascending, oldest first. It holds at most max_bytes of records (then cut short,
 * next set); next is the cursor for the following page when the page is full.
 */
typedef void (*StorePageFn)(void *userdata, int r, const char *message, char *page /* taken */);
int store_page(Store *s, const StoreQuery *q, size_t max_bytes, StorePageFn fn, void *userdata);

/* Queries (strings copied). limit <= 1000 for one answer. */
int store_query(Store *s, const StoreQuery *q, StoreQueryFn fn, void *userdata);
int store_get(Store *s, uint64_t id, StoreQueryFn fn, void *userdata); /* records: [job] */

void store_get_stats(Store *s, StoreStats *ret);
