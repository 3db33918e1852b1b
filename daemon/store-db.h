/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The job store's database: <state-dir>/jobs.db, SQLite in WAL mode. This
 * module is the only code that speaks SQL. It is synchronous and has no
 * threads, no loop and no globals: the daemon runs it on the store's own
 * thread (store.h), and espdfuctl opens the file read-only for offline
 * `history` (client/cmd-history.c).
 *
 * The schema lives in one place (store-db.c, `schema_v1`), versioned with
 * PRAGMA user_version and marked with PRAGMA application_id, so a file that
 * is not ours is never mistaken for one. A job is one row from the moment it
 * is queued; its id comes from `INTEGER PRIMARY KEY AUTOINCREMENT`, which
 * never hands out an id twice, even after rows are deleted.
 *
 * Every row read back is validated before anyone sees it: a damaged row is
 * skipped and reported through the warning callback with its id.
 *
 * Failures are negative errno plus a one-line message in the caller's buffer
 * that names the file and what SQLite said.
 */

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STORE_DB_FILE           "jobs.db"
#define STORE_DB_SCHEMA_VERSION 1
#define STORE_DB_APPLICATION_ID 0x45535044      /* "ESPD" */
#define STORE_DB_LEGACY_FILE    "history.jsonl" /* imported once, then renamed .imported */
#define STORE_DB_ERR_MAX        512u
#define STORE_DB_JSON_MAX       (256u * 1024u) /* a longer job document is damaged */

typedef struct StoreDb StoreDb;

/* What the store says about itself when it cannot name a job: for log lines. */
typedef void (*StoreDbWarnFn)(void *userdata, const char *message);

typedef struct StoreDbOpenInfo {
    bool created;            /* a new database was made */
    bool moved_aside;        /* the old file was damaged or foreign: renamed to aside_path */
    char aside_path[4096];   /* where it went */
    char aside_reason[256];  /* why */
    uint64_t id_floor;       /* after moving aside: ids start above this */
    unsigned imported;       /* records imported from history.jsonl */
    unsigned import_skipped; /* corrupt lines skipped while importing */
    bool imported_legacy;    /* history.jsonl was found and renamed */
} StoreDbOpenInfo;

/*
 * Open (and create, migrate, check) dir/jobs.db for writing: the daemon's one
 * owner. A file that SQLite cannot read, whose application_id is not ours or
 * whose schema version is newer than this build knows is renamed jobs.db.broken-<unix-time> (with
 * its -wal/-shm) and a new one is created; info says so. No quick_check at open (it reads the whole
 * file: seconds for a million jobs); damage found later is per row (skipped, warned). Then
 * history.jsonl (and .1) is imported once. warn may be NULL.
 */
int store_db_open(const char *dir, StoreDbWarnFn warn, void *userdata, StoreDb **ret,
                  StoreDbOpenInfo *info, char *err, size_t err_size);

/*
 * Open dir/jobs.db read-only, for a reader while the daemon runs or is
 * stopped (falls back to SQLite's immutable mode where the WAL index cannot
 * be created, e.g. no write access to the directory). -ENOENT when there is
 * no database.
 */
int store_db_open_readonly(const char *dir, StoreDbWarnFn warn, void *userdata, StoreDb **ret,
                           char *err, size_t err_size);

StoreDb *store_db_close(StoreDb *db);

/* Transactions: the store thread wraps each batch of writes in one. */
int store_db_begin(StoreDb *db, char *err, size_t err_size);
int store_db_commit(StoreDb *db, char *err, size_t err_size);
void store_db_rollback(StoreDb *db);
uint64_t store_db_commits(const StoreDb *db); /* successful commits since open */

/* One job row. json is the protocol's Job object as text; its "id" is ignored
 * (the column is the truth and is put back on reading). */
typedef struct StoreJobRow {
    uint64_t id; /* 0 on insert */
    const char *path;
    const char *state;                    /* job_state_to_string() */
    const char *sha256;                   /* image SHA-256, hex */
    const char *mac;                      /* the board's identity once known; NULL */
    uint64_t created_usec, finished_usec; /* CLOCK_REALTIME; finished 0 while live */
    const char *json;
} StoreJobRow;

/* A new row; *ret_id its id (committed only with the transaction). */
int store_db_insert_job(StoreDb *db, const StoreJobRow *row, uint64_t *ret_id, char *err,
                        size_t err_size);
/* Replace row->id's columns and document. -ENOENT if there is no such row. */
int store_db_update_job(StoreDb *db, const StoreJobRow *row, char *err, size_t err_size);

/*
 * A plug: one board's stay on one port, from arrival to departure, across
 * daemon restarts. It is known by the boot, the port path, and the bus and
 * device number the kernel gave this enumeration (a detach or our reset
 * re-enumerates within the same plug: store_db_put_plug updates them).
 */
typedef struct StorePlug {
    uint64_t id;      /* 0 on insert */
    char boot_id[40]; /* /proc/sys/kernel/random/boot_id */
    char path[64];
    unsigned busnum, devnum;
    uint64_t arrived_usec;
    uint64_t left_usec; /* 0 while present */
    uint64_t job;       /* the auto-flash job of this plug, 0 none */
    char outcome[24];   /* that job's state when it ended, "" while it runs */
} StorePlug;

int store_db_put_plug(StoreDb *db, StorePlug *plug, char *err, size_t err_size); /* sets plug->id */
/* Plugs of this boot that have not left; fn is called for each. */
int store_db_open_plugs(StoreDb *db, const char *boot_id,
                        int (*fn)(void *userdata, const StorePlug *p), void *userdata, char *err,
                        size_t err_size);

/*
 * Every job the previous run left live (queued, waiting, running) becomes
 * `interrupted`: its last known progress stays, a transition and an error
 * (code "interrupted") say when the daemon stopped and where the job was.
 * fn (may be NULL) sees each recovered Job object. The caller's transaction.
 */
int store_db_recover(StoreDb *db, uint64_t now_usec, int (*fn)(void *userdata, json_object *job),
                     void *userdata, unsigned *ret_n, char *err, size_t err_size);

/* ---- reading ---- */

typedef struct StoreQuery {
    const char *path;   /* NULL: any port */
    const char *result; /* a final state name; NULL: any final state */
    const char *sha256; /* NULL: any image */
    const char *mac;    /* NULL: any board */
    int64_t since;      /* Unix seconds: finished at or after; 0: any */
    uint64_t before;    /* cursor: only ids below this (newest first); 0: none */
    uint64_t after;     /* cursor: only ids above this (oldest first); 0: none */
    bool ascending;     /* oldest first (exports); default newest first */
    bool include_live;  /* also jobs not finished yet */
    unsigned limit;     /* > 0 */
} StoreQuery;

/*
 * Rows that match, each as a validated Job object (borrowed by fn for the
 * call; json_object_get() to keep it). fn returning < 0 stops with that
 * value. *ret_last: the id of the last row passed to fn (the next cursor), 0
 * when none. Every query is served by an index: none scans the whole table.
 */
int store_db_query(StoreDb *db, const StoreQuery *q, int (*fn)(void *userdata, json_object *job),
                   void *userdata, uint64_t *ret_last, char *err, size_t err_size);

/* One job by id: -ENOENT, or -EBADMSG for a damaged row. */
int store_db_get(StoreDb *db, uint64_t id, json_object **ret, char *err, size_t err_size);

/* The largest id ever handed out (sqlite_sequence), 0 for none. */
int store_db_max_id(StoreDb *db, uint64_t *ret, char *err, size_t err_size);

/* Delete the oldest finished jobs beyond keep (ids stay unused). */
int store_db_prune(StoreDb *db, uint64_t keep, unsigned max_rows, unsigned *ret_n, char *err,
                   size_t err_size);

/*
 * A Job object read back, checked: an object with an integer id, strings path
 * and state (a known state name), image.sha256, and the types the protocol
 * gives the rest. false with a reason when not.
 */
bool store_job_json_valid(json_object *job, char *why, size_t why_size);

static inline void store_db_closep(StoreDb **db)
{
    if (*db)
        *db = store_db_close(*db);
}
