/* SPDX-License-Identifier: MIT */
/*
 * jobs.db: the schema, its checks and migrations, the job and plug rows, the
 * recovery of jobs a previous run left live, the one-time import of
 * history.jsonl, and the queries. See store-db.h.
 */
#include "store-db.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "timeutil.h"
#include "util.h"
#include "wire.h"

#define BUSY_TIMEOUT_MS 2000 /* a stray reader or `sqlite3` shell: wait this long, then fail */
#define LEGACY_LINE_MAX (256u * 1024u)

struct StoreDb {
    sqlite3 *db;
    char *path;
    bool readonly;
    StoreDbWarnFn warn;
    void *userdata;
    uint64_t commits;
    sqlite3_stmt *insert, *update, *day;
};

/* The schema, in one place. Version n is the state after migrations[0..n-1]. */
static const char *const migrations[] = {
        /* 1: jobs and plugs. A job's document is the protocol's Job object; the
         * columns beside it are what queries filter and sort on. */
        "CREATE TABLE jobs ("
        "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
        "  path TEXT NOT NULL,"
        "  state TEXT NOT NULL,"
        "  final INTEGER NOT NULL," /* 1 once state is final */
        "  sha256 TEXT NOT NULL,"
        "  mac TEXT,"
        "  created INTEGER NOT NULL," /* CLOCK_REALTIME microseconds */
        "  finished INTEGER,"
        "  updated INTEGER NOT NULL," /* the last write: when a live job was last seen */
        "  job TEXT NOT NULL);"
        "CREATE INDEX jobs_path ON jobs(path, id);"
        "CREATE INDEX jobs_state ON jobs(state, id);"
        "CREATE INDEX jobs_live ON jobs(id) WHERE final = 0;"
        "CREATE INDEX jobs_finished ON jobs(finished);"
        "CREATE INDEX jobs_sha256 ON jobs(sha256, id);"
        "CREATE INDEX jobs_mac ON jobs(mac, id) WHERE mac IS NOT NULL;"
        "CREATE TABLE plugs ("
        "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
        "  boot_id TEXT NOT NULL,"
        "  path TEXT NOT NULL,"
        "  busnum INTEGER NOT NULL,"
        "  devnum INTEGER NOT NULL,"
        "  arrived INTEGER NOT NULL,"
        "  left INTEGER,"
        "  job INTEGER,"
        "  outcome TEXT);"
        "CREATE INDEX plugs_open ON plugs(boot_id, path) WHERE left IS NULL;"
        /* The smallest id of the jobs finished on each UTC day: a `since` query's
         * lower bound on ids, found in at most a few hundred rows. */
        "CREATE TABLE finished_days (day INTEGER PRIMARY KEY, min_id INTEGER NOT NULL);",
};
_Static_assert(ELEMENTSOF(migrations) == STORE_DB_SCHEMA_VERSION,
               "one migration per schema version");

/* ---- errors ---- */

static int errno_of(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_FULL:
        return -ENOSPC;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return -EBUSY;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return -EBADMSG;
    case SQLITE_READONLY:
        return -EROFS;
    case SQLITE_CANTOPEN:
        return -EACCES;
    case SQLITE_NOMEM:
        return -ENOMEM;
    case SQLITE_CONSTRAINT:
        return -EEXIST;
    case SQLITE_PERM:
    case SQLITE_AUTH:
        return -EPERM;
    default:
        return -EIO;
    }
}

static int fail(StoreDb *s, int rc, const char *what, char *err, size_t err_size)
{
    const char *msg = s && s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc);

    if (err && err_size)
        snprintf(err, err_size, "%s: %s: %s", s && s->path ? s->path : STORE_DB_FILE, what, msg);
    return errno_of(rc);
}

static void warn(StoreDb *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void warn(StoreDb *s, const char *fmt, ...)
{
    char buf[512];
    va_list ap;

    if (!s->warn)
        return;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    s->warn(s->userdata, buf);
}

static int exec(StoreDb *s, const char *sql, const char *what, char *err, size_t err_size)
{
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);

    return rc == SQLITE_OK ? 0 : fail(s, rc, what, err, err_size);
}

/* One integer from a one-row statement (a PRAGMA or a SELECT). */
static int query_int(StoreDb *s, const char *sql, int64_t *ret, char *err, size_t err_size)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);

    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *ret = sqlite3_column_int64(st, 0);
            rc = SQLITE_OK;
        } else if (rc == SQLITE_DONE) {
            *ret = 0;
            rc = SQLITE_OK;
        }
    }
    sqlite3_finalize(st);
    return rc == SQLITE_OK ? 0 : fail(s, rc, sql, err, err_size);
}

/* ---- opening ---- */

static StoreDb *store_db_alloc(const char *dir, StoreDbWarnFn warn_fn, void *userdata)
{
    StoreDb *s = calloc(1, sizeof(*s));

    if (!s)
        return NULL;
    if (asprintf(&s->path, "%s/%s", dir, STORE_DB_FILE) < 0) {
        free(s);
        return NULL;
    }
    s->warn = warn_fn;
    s->userdata = userdata;
    return s;
}

StoreDb *store_db_close(StoreDb *s)
{
    if (!s)
        return NULL;
    sqlite3_finalize(s->insert);
    sqlite3_finalize(s->update);
    sqlite3_finalize(s->day);
    if (s->db)
        sqlite3_close_v2(s->db);
    free(s->path);
    free(s);
    return NULL;
}

static int sqlite_open(StoreDb *s, const char *uri, int flags, char *err, size_t err_size)
{
    int rc = sqlite3_open_v2(uri, &s->db, flags | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_URI, NULL);

    if (rc != SQLITE_OK) {
        int r = fail(s, rc, "cannot open", err, err_size);

        sqlite3_close_v2(s->db);
        s->db = NULL;
        return r;
    }
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS);
    return 0;
}

/*
 * Is this file ours and readable? 1: ours (version in *version), 0: empty (a
 * new file), -EBADMSG with the reason when it must be moved aside, other
 * negative errno for errors that moving aside cannot fix (EBUSY, EACCES, EIO).
 */
static int check_identity(StoreDb *s, int64_t *version, char *why, size_t why_size)
{
    int64_t app = 0, tables = 0;
    char err[STORE_DB_ERR_MAX];
    int r;

    r = query_int(s, "PRAGMA application_id", &app, err, sizeof(err));
    if (r >= 0)
        r = query_int(s, "PRAGMA user_version", version, err, sizeof(err));
    if (r >= 0)
        r = query_int(s, "SELECT count(*) FROM sqlite_schema", &tables, err, sizeof(err));
    if (r == -EBADMSG) {
        snprintf(why, why_size, "%s", err);
        return -EBADMSG;
    }
    if (r < 0) {
        snprintf(why, why_size, "%s", err);
        return r;
    }
    if (app == 0 && tables == 0)
        return 0;
    if (app != STORE_DB_APPLICATION_ID) {
        snprintf(why, why_size, "not an espdfud job store (application_id 0x%08" PRIx64 ")",
                 (uint64_t)(uint32_t)app);
        return -EBADMSG;
    }
    if (*version > STORE_DB_SCHEMA_VERSION || *version < 1) {
        snprintf(why, why_size, "schema version %" PRId64 ", this espdfud knows 1 to %d", *version,
                 STORE_DB_SCHEMA_VERSION);
        return -EBADMSG;
    }
    return 1;
}

/* Bring the schema from `from` to the current version, in one transaction. */
static int migrate(StoreDb *s, int64_t from, uint64_t id_floor, char *err, size_t err_size)
{
    char sql[128];
    int r;

    r = exec(s, "BEGIN IMMEDIATE", "begin the schema change", err, err_size);
    if (r < 0)
        return r;
    for (int64_t v = from; v < STORE_DB_SCHEMA_VERSION && r >= 0; v++)
        r = exec(s, migrations[v], "create the schema", err, err_size);
    if (r >= 0 && from == 0) {
        snprintf(sql, sizeof(sql), "PRAGMA application_id = %d", STORE_DB_APPLICATION_ID);
        r = exec(s, sql, "mark the file", err, err_size);
    }
    if (r >= 0 && id_floor > 0) {
        /* A moved-aside store's ids are never handed out again. */
        snprintf(sql, sizeof(sql),
                 "INSERT INTO sqlite_sequence(name, seq) VALUES('jobs', %" PRIu64 ")", id_floor);
        r = exec(s, sql, "continue the job ids", err, err_size);
    }
    if (r >= 0) {
        snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", STORE_DB_SCHEMA_VERSION);
        r = exec(s, sql, "set the schema version", err, err_size);
    }
    if (r >= 0)
        r = exec(s, "COMMIT", "commit the schema change", err, err_size);
    if (r < 0)
        store_db_rollback(s);
    return r;
}

/* The largest id a damaged file still shows, or 0 when it shows nothing. */
static uint64_t salvage_max_id(const char *path)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    uint64_t max = 0;
    char *uri = NULL;

    if (asprintf(&uri, "file:%s?mode=ro&immutable=1", path) < 0)
        return 0;
    if (sqlite3_open_v2(uri, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL) == SQLITE_OK) {
        static const char *const sql[] = {"SELECT seq FROM sqlite_sequence WHERE name = 'jobs'",
                                          "SELECT max(id) FROM jobs"};

        for (size_t i = 0; i < ELEMENTSOF(sql); i++) {
            if (sqlite3_prepare_v2(db, sql[i], -1, &st, NULL) == SQLITE_OK &&
                sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int64(st, 0) > (int64_t)max)
                max = (uint64_t)sqlite3_column_int64(st, 0);
            sqlite3_finalize(st);
            st = NULL;
        }
    }
    sqlite3_close_v2(db);
    free(uri);
    return max;
}

/*
 * Rename the file and its WAL and index out of the way. The new store's ids
 * start above the largest the old one still shows, and never below the
 * current Unix time in seconds: a store that shows nothing cannot tell how
 * many ids it gave out, and no station hands out one job per second for
 * decades.
 */
static int move_aside(StoreDb *s, const char *reason, StoreDbOpenInfo *info, char *err,
                      size_t err_size)
{
    static const char *const suffixes[] = {"", "-wal", "-shm"};
    uint64_t now = (uint64_t)time(NULL), floor_id;

    if (s->db) {
        sqlite3_close_v2(s->db);
        s->db = NULL;
    }
    floor_id = salvage_max_id(s->path);
    snprintf(info->aside_path, sizeof(info->aside_path), "%s.broken-%" PRIu64, s->path, now);
    for (size_t i = 0; i < ELEMENTSOF(suffixes); i++) {
        char from[4200], to[4200];

        snprintf(from, sizeof(from), "%s%s", s->path, suffixes[i]);
        snprintf(to, sizeof(to), "%s%s", info->aside_path, suffixes[i]);
        if (rename(from, to) < 0 && errno != ENOENT) {
            int r = -errno;

            snprintf(err, err_size, "%s: cannot move the damaged store aside to %s: %s", s->path,
                     to, strerror(errno));
            return r;
        }
    }
    info->moved_aside = true;
    snprintf(info->aside_reason, sizeof(info->aside_reason), "%s", reason);
    info->id_floor = floor_id > now ? floor_id : now;
    return 0;
}

static int set_pragmas(StoreDb *s, char *err, size_t err_size)
{
    sqlite3_stmt *st = NULL;
    bool wal = false;
    int rc, r;

    /* WAL: readers (espdfuctl offline) never block the writer; FULL: a commit
     * is on disk when it returns, so an id handed out survives a power cut. */
    rc = sqlite3_prepare_v2(s->db, "PRAGMA journal_mode = WAL", -1, &st, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const unsigned char *mode = sqlite3_column_text(st, 0);

        wal = mode && strcmp((const char *)mode, "wal") == 0;
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_OK)
        return fail(s, rc, "cannot switch to WAL mode", err, err_size);
    if (!wal) {
        snprintf(err, err_size, "%s: SQLite refused WAL mode", s->path);
        return -EIO;
    }
    r = exec(s, "PRAGMA synchronous = FULL", "set synchronous", err, err_size);
    if (r >= 0)
        /* The WAL is reused after a checkpoint, not truncated: a full disk later
         * still finds room for the next commits in it. */
        r = exec(s, "PRAGMA journal_size_limit = 67108864", "set the WAL limit", err, err_size);
    return r;
}

static int import_legacy(StoreDb *s, const char *dir, StoreDbOpenInfo *info, char *err,
                         size_t err_size);

int store_db_open(const char *dir, StoreDbWarnFn warn_fn, void *userdata, StoreDb **ret,
                  StoreDbOpenInfo *info, char *err, size_t err_size)
{
    _cleanup_(store_db_closep) StoreDb *s = store_db_alloc(dir, warn_fn, userdata);
    char why[STORE_DB_ERR_MAX];
    int64_t version = 0;
    int r;

    *info = (StoreDbOpenInfo){};
    if (!s)
        return -ENOMEM;
    for (int attempt = 0;; attempt++) {
        r = sqlite_open(s, s->path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, err, err_size);
        if (r < 0)
            return r;
        r = check_identity(s, &version, why, sizeof(why));
        if (r == -EBADMSG && attempt == 0) {
            r = move_aside(s, why, info, err, err_size);
            if (r < 0)
                return r;
            continue;
        }
        if (r < 0) {
            snprintf(err, err_size, "%s", why);
            return r;
        }
        break;
    }
    info->created = version == 0;
    r = set_pragmas(s, err, err_size);
    if (r >= 0 && version < STORE_DB_SCHEMA_VERSION)
        r = migrate(s, version, info->id_floor, err, err_size);
    if (r < 0)
        return r;
    r = import_legacy(s, dir, info, err, err_size);
    if (r < 0)
        return r;
    *ret = TAKE_PTR(s);
    return 0;
}

int store_db_open_readonly(const char *dir, StoreDbWarnFn warn_fn, void *userdata, StoreDb **ret,
                           char *err, size_t err_size)
{
    _cleanup_(store_db_closep) StoreDb *s = store_db_alloc(dir, warn_fn, userdata);
    _cleanup_free_ char *uri = NULL;
    char why[STORE_DB_ERR_MAX];
    int64_t version = 0;
    int r;

    if (!s)
        return -ENOMEM;
    if (access(s->path, F_OK) < 0) {
        r = -errno;
        snprintf(err, err_size, "%s: %s", s->path, strerror(errno));
        return r;
    }
    s->readonly = true;
    r = sqlite_open(s, s->path, SQLITE_OPEN_READONLY, err, err_size);
    if (r >= 0)
        r = check_identity(s, &version, why, sizeof(why));
    if (r < 0 && r != -EBADMSG) {
        /* No WAL index to share (a stopped daemon and no write access to the
         * directory): nobody writes, so read the file as it is. */
        if (s->db)
            sqlite3_close_v2(s->db);
        s->db = NULL;
        if (asprintf(&uri, "file:%s?mode=ro&immutable=1", s->path) < 0)
            return -ENOMEM;
        r = sqlite_open(s, uri, SQLITE_OPEN_READONLY, err, err_size);
        if (r >= 0)
            r = check_identity(s, &version, why, sizeof(why));
    }
    if (r == 0) {
        snprintf(err, err_size, "%s: an empty file, not a job store", s->path);
        return -EBADMSG;
    }
    if (r < 0) {
        if (!err[0] || r == -EBADMSG || r != -EACCES)
            snprintf(err, err_size, "%s: %s", s->path, why);
        return r;
    }
    *ret = TAKE_PTR(s);
    return 0;
}

/* ---- transactions ---- */

int store_db_begin(StoreDb *s, char *err, size_t err_size)
{
    return exec(s, "BEGIN IMMEDIATE", "cannot begin a transaction", err, err_size);
}

int store_db_commit(StoreDb *s, char *err, size_t err_size)
{
    int r = exec(s, "COMMIT", "cannot commit", err, err_size);

    if (r >= 0)
        s->commits++;
    return r;
}

void store_db_rollback(StoreDb *s)
{
    if (s && s->db && !sqlite3_get_autocommit(s->db))
        (void)sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

uint64_t store_db_commits(const StoreDb *s)
{
    return s->commits;
}

/* ---- jobs ---- */

static void bind_text_or_null(sqlite3_stmt *st, int i, const char *s)
{
    if (s)
        sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

static void bind_usec_or_null(sqlite3_stmt *st, int i, uint64_t usec)
{
    if (usec)
        sqlite3_bind_int64(st, i, (int64_t)usec);
    else
        sqlite3_bind_null(st, i);
}

/* ?1 path ?2 state ?3 final ?4 sha256 ?5 mac ?6 created ?7 finished ?8 updated ?9 job ?10 id */
static int bind_row(StoreDb *s, sqlite3_stmt *st, const StoreJobRow *row, char *err,
                    size_t err_size)
{
    if (!row->path || !row->state || !wire_job_state_is_valid(row->state) || !row->sha256 ||
        !row->json) {
        snprintf(err, err_size, "%s: job %" PRIu64 ": incomplete row refused", s->path, row->id);
        return -EINVAL;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    sqlite3_bind_text(st, 1, row->path, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, row->state, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, wire_job_state_is_final(row->state));
    sqlite3_bind_text(st, 4, row->sha256, -1, SQLITE_STATIC);
    bind_text_or_null(st, 5, row->mac);
    sqlite3_bind_int64(st, 6, (int64_t)row->created_usec);
    bind_usec_or_null(st, 7, row->finished_usec);
    sqlite3_bind_int64(st, 8, (int64_t)now_usec(CLOCK_REALTIME));
    sqlite3_bind_text(st, 9, row->json, -1, SQLITE_STATIC);
    return 0;
}

static int prepare_once(StoreDb *s, sqlite3_stmt **st, const char *sql, char *err, size_t err_size)
{
    int rc;

    if (*st)
        return 0;
    rc = sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL);
    return rc == SQLITE_OK ? 0 : fail(s, rc, "cannot prepare", err, err_size);
}

/* A job finished: its day's smallest id (the bound `since` queries rely on) covers it. */
static int note_finished(StoreDb *s, uint64_t id, uint64_t finished_usec, char *err,
                         size_t err_size)
{
    int rc;

    if (!finished_usec)
        return 0;
    if (prepare_once(s, &s->day,
                     "INSERT INTO finished_days(day, min_id) VALUES(?1, ?2) "
                     "ON CONFLICT(day) DO UPDATE SET min_id = min(min_id, excluded.min_id)",
                     err, err_size) < 0)
        return -EIO;
    sqlite3_reset(s->day);
    sqlite3_bind_int64(s->day, 1, (int64_t)(finished_usec / (86400ull * 1000000ull)));
    sqlite3_bind_int64(s->day, 2, (int64_t)id);
    rc = sqlite3_step(s->day);
    sqlite3_reset(s->day);
    return rc == SQLITE_DONE ? 0 : fail(s, rc, "cannot note a finished job", err, err_size);
}

int store_db_insert_job(StoreDb *s, const StoreJobRow *row, uint64_t *ret_id, char *err,
                        size_t err_size)
{
    int r, rc;

    r = prepare_once(s, &s->insert,
                     "INSERT INTO jobs(path, state, final, sha256, mac, created, finished, "
                     "updated, job, id) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                     err, err_size);
    if (r < 0)
        return r;
    r = bind_row(s, s->insert, row, err, err_size);
    if (r < 0)
        return r;
    if (row->id)
        sqlite3_bind_int64(s->insert, 10, (int64_t)row->id);
    else
        sqlite3_bind_null(s->insert, 10);
    rc = sqlite3_step(s->insert);
    sqlite3_reset(s->insert);
    if (rc != SQLITE_DONE)
        return fail(s, rc, "cannot insert a job", err, err_size);
    *ret_id = (uint64_t)sqlite3_last_insert_rowid(s->db);
    return note_finished(s, *ret_id, row->finished_usec, err, err_size);
}

int store_db_update_job(StoreDb *s, const StoreJobRow *row, char *err, size_t err_size)
{
    int r, rc;

    r = prepare_once(s, &s->update,
                     "UPDATE jobs SET path = ?1, state = ?2, final = ?3, sha256 = ?4, mac = ?5, "
                     "created = ?6, finished = ?7, updated = ?8, job = ?9 WHERE id = ?10",
                     err, err_size);
    if (r < 0)
        return r;
    r = bind_row(s, s->update, row, err, err_size);
    if (r < 0)
        return r;
    sqlite3_bind_int64(s->update, 10, (int64_t)row->id);
    rc = sqlite3_step(s->update);
    sqlite3_reset(s->update);
    if (rc != SQLITE_DONE)
        return fail(s, rc, "cannot update a job", err, err_size);
    if (sqlite3_changes(s->db) == 0) {
        snprintf(err, err_size, "%s: no job %" PRIu64 " to update", s->path, row->id);
        return -ENOENT;
    }
    return note_finished(s, row->id, row->finished_usec, err, err_size);
}

int store_db_max_id(StoreDb *s, uint64_t *ret, char *err, size_t err_size)
{
    int64_t v = 0;
    int r = query_int(s, "SELECT seq FROM sqlite_sequence WHERE name = 'jobs'", &v, err, err_size);

    if (r >= 0)
        *ret = v > 0 ? (uint64_t)v : 0;
    return r;
}

int store_db_prune(StoreDb *s, uint64_t keep, unsigned max_rows, unsigned *ret_n, char *err,
                   size_t err_size)
{
    sqlite3_stmt *st = NULL;
    uint64_t max = 0;
    int r, rc;

    *ret_n = 0;
    r = store_db_max_id(s, &max, err, err_size);
    if (r < 0 || max <= keep)
        return r;
    rc = sqlite3_prepare_v2(s->db,
                            "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE id <= ?1 "
                            "AND final = 1 ORDER BY id LIMIT ?2)",
                            -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, (int64_t)(max - keep));
        sqlite3_bind_int(st, 2, (int)max_rows);
        rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return fail(s, rc, "cannot prune old jobs", err, err_size);
    *ret_n = (unsigned)sqlite3_changes(s->db);
    return 0;
}

/* ---- validation ---- */

static bool has_type(json_object *o, const char *key, json_type type, bool null_ok)
{
    json_object *v = NULL;

    if (!json_object_object_get_ex(o, key, &v))
        return false;
    if (!v)
        return null_ok;
    if (type == json_type_double)
        return json_object_is_type(v, json_type_double) || json_object_is_type(v, json_type_int);
    return json_object_is_type(v, type);
}

static const char *str_of(json_object *o, const char *key)
{
    json_object *v = NULL;

    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

bool store_job_json_valid(json_object *job, char *why, size_t why_size)
{
    static const struct {
        const char *key;
        json_type type;
        bool null_ok;
    } fields[] = {
            {"id", json_type_int, false},         {"path", json_type_string, false},
            {"source", json_type_string, false},  {"state", json_type_string, false},
            {"image", json_type_object, false},   {"progress", json_type_object, false},
            {"created", json_type_double, false}, {"started", json_type_double, true},
            {"finished", json_type_double, true}, {"history", json_type_array, false},
            {"retries", json_type_int, false},    {"error", json_type_object, true},
    };
    json_object *image = NULL, *error = NULL;
    const char *sha;

    if (!json_object_is_type(job, json_type_object)) {
        snprintf(why, why_size, "not a JSON object");
        return false;
    }
    for (size_t i = 0; i < ELEMENTSOF(fields); i++)
        if (!has_type(job, fields[i].key, fields[i].type, fields[i].null_ok)) {
            snprintf(why, why_size, "\"%s\" is missing or of the wrong type", fields[i].key);
            return false;
        }
    if (!wire_job_state_is_valid(str_of(job, "state"))) {
        snprintf(why, why_size, "unknown state");
        return false;
    }
    json_object_object_get_ex(job, "image", &image);
    sha = str_of(image, "sha256");
    if (!sha || strlen(sha) != 64 || strspn(sha, "0123456789abcdef") != 64) {
        snprintf(why, why_size, "\"image.sha256\" is not a SHA-256");
        return false;
    }
    if (json_object_object_get_ex(job, "error", &error) && error &&
        (!str_of(error, "code") || !str_of(error, "message"))) {
        snprintf(why, why_size, "\"error\" lacks a code or a message");
        return false;
    }
    return true;
}

/*
 * The document of one row, checked, with the id column put in. NULL, with a
 * warning that names the id, when the row is damaged.
 */
static json_object *row_document(StoreDb *s, sqlite3_stmt *st, int id_col, int job_col)
{
    uint64_t id = (uint64_t)sqlite3_column_int64(st, id_col);
    const char *text = (const char *)sqlite3_column_text(st, job_col);
    int len = sqlite3_column_bytes(st, job_col);
    json_tokener *tok;
    json_object *o = NULL;
    char why[160];

    if (!text || len <= 0 || (size_t)len > STORE_DB_JSON_MAX) {
        warn(s, "%s: job %" PRIu64 ": damaged row skipped: no document", s->path, id);
        return NULL;
    }
    tok = json_tokener_new_ex(32);
    if (tok) {
        o = json_tokener_parse_ex(tok, text, len);
        if (json_tokener_get_error(tok) != json_tokener_success || tok->char_offset != len) {
            json_object_put(o);
            o = NULL;
        }
        json_tokener_free(tok);
    }
    if (!o) {
        warn(s, "%s: job %" PRIu64 ": damaged row skipped: its document is not JSON", s->path, id);
        return NULL;
    }
    json_object_object_add(o, "id", json_object_new_int64((int64_t)id));
    if (!store_job_json_valid(o, why, sizeof(why))) {
        warn(s, "%s: job %" PRIu64 ": damaged row skipped: %s", s->path, id, why);
        json_object_put(o);
        return NULL;
    }
    return o;
}

/* ---- reading ---- */

int store_db_get(StoreDb *s, uint64_t id, json_object **ret, char *err, size_t err_size)
{
    sqlite3_stmt *st = NULL;
    json_object *o = NULL;
    int rc, r = 0;

    rc = sqlite3_prepare_v2(s->db, "SELECT id, job FROM jobs WHERE id = ?1", -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, (int64_t)id);
        rc = sqlite3_step(st);
    }
    if (rc == SQLITE_ROW) {
        o = row_document(s, st, 0, 1);
        r = o ? 0 : -EBADMSG;
        if (!o)
            snprintf(err, err_size, "%s: job %" PRIu64 " is damaged", s->path, id);
    } else if (rc == SQLITE_DONE) {
        snprintf(err, err_size, "no job %" PRIu64, id);
        r = -ENOENT;
    } else {
        r = fail(s, rc, "cannot read a job", err, err_size);
    }
    sqlite3_finalize(st);
    if (r >= 0)
        *ret = o;
    return r;
}

int store_db_query(StoreDb *s, const StoreQuery *q, int (*fn)(void *userdata, json_object *job),
                   void *userdata, uint64_t *ret_last, char *err, size_t err_size)
{
    char sql[640];
    size_t n;
    sqlite3_stmt *st = NULL;
    uint64_t last = 0;
    int rc, r = 0, i = 1;

    if (q->limit == 0 || (q->before && q->after) ||
        (q->result && !wire_job_state_is_final(q->result))) {
        snprintf(err, err_size, "invalid query");
        return -EINVAL;
    }
    n = (size_t)snprintf(sql, sizeof(sql), "SELECT id, job FROM jobs WHERE %s",
                         q->include_live ? "1" : "final = 1");
    /* Named parameters: each filter binds its own. */
    if (q->path)
        n += (size_t)snprintf(sql + n, sizeof(sql) - n, " AND path = :path");
    if (q->result)
        n += (size_t)snprintf(sql + n, sizeof(sql) - n, " AND state = :state");
    if (q->sha256)
        n += (size_t)snprintf(sql + n, sizeof(sql) - n, " AND sha256 = :sha");
    if (q->mac)
        n += (size_t)snprintf(sql + n, sizeof(sql) - n, " AND mac = :mac");
    /*
     * since: the rows are walked by id, and ids alone cannot stop the walk at a
     * time. Every match has an id at or above the smallest id of the jobs
     * finished on since's day or later, which finished_days gives in a few
     * hundred rows at most: the walk (by id, path, image, state) stops there.
     */
    if (q->since > 0)
        n += (size_t)snprintf(sql + n, sizeof(sql) - n,
                              " AND finished >= :since AND id >= (SELECT coalesce(min(min_id), 0) "
                              "FROM finished_days WHERE day >= :since_day)");
    if (q->before)
        n += (size_t)snprintf(sql + n, sizeof(sql) - n, " AND id < :before");
    if (q->after)
        n += (size_t)snprintf(sql + n, sizeof(sql) - n, " AND id > :after");
    snprintf(sql + n, sizeof(sql) - n, " ORDER BY id %s LIMIT :limit",
             q->ascending || q->after ? "ASC" : "DESC");

    rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return fail(s, rc, "cannot prepare a query", err, err_size);
    for (i = 1; i <= sqlite3_bind_parameter_count(st); i++) {
        const char *name = sqlite3_bind_parameter_name(st, i);

        if (strcmp(name, ":path") == 0)
            sqlite3_bind_text(st, i, q->path, -1, SQLITE_STATIC);
        else if (strcmp(name, ":state") == 0)
            sqlite3_bind_text(st, i, q->result, -1, SQLITE_STATIC);
        else if (strcmp(name, ":sha") == 0)
            sqlite3_bind_text(st, i, q->sha256, -1, SQLITE_STATIC);
        else if (strcmp(name, ":mac") == 0)
            sqlite3_bind_text(st, i, q->mac, -1, SQLITE_STATIC);
        else if (strcmp(name, ":since") == 0)
            sqlite3_bind_int64(st, i, q->since * 1000000);
        else if (strcmp(name, ":since_day") == 0)
            sqlite3_bind_int64(st, i, q->since / 86400);
        else if (strcmp(name, ":before") == 0)
            sqlite3_bind_int64(st, i, (int64_t)q->before);
        else if (strcmp(name, ":after") == 0)
            sqlite3_bind_int64(st, i, (int64_t)q->after);
        else if (strcmp(name, ":limit") == 0)
            sqlite3_bind_int64(st, i, q->limit);
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        json_object *o = row_document(s, st, 0, 1);

        last = (uint64_t)sqlite3_column_int64(st, 0);
        if (!o)
            continue; /* warned */
        r = fn(userdata, o);
        json_object_put(o);
        if (r < 0)
            break;
    }
    if (r >= 0 && rc != SQLITE_DONE)
        r = fail(s, rc, "cannot read the jobs", err, err_size);
    sqlite3_finalize(st);
    if (ret_last)
        *ret_last = last;
    return r;
}

/* ---- plugs ---- */

int store_db_put_plug(StoreDb *s, StorePlug *p, char *err, size_t err_size)
{
    sqlite3_stmt *st = NULL;
    int rc;

    /* A plug is known by its auto-flash job's id from its first write (store.h:
     * store_insert_jobs), so a given id that has no row yet is inserted. */
    rc = sqlite3_prepare_v2(
            s->db,
            "INSERT INTO plugs(boot_id, path, busnum, devnum, arrived, left, job, outcome, id) "
            "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT(id) DO UPDATE SET "
            "boot_id = excluded.boot_id, path = excluded.path, busnum = excluded.busnum, "
            "devnum = excluded.devnum, arrived = excluded.arrived, left = excluded.left, "
            "job = excluded.job, outcome = excluded.outcome",
            -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, p->boot_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, p->path, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 3, (int)p->busnum);
        sqlite3_bind_int(st, 4, (int)p->devnum);
        sqlite3_bind_int64(st, 5, (int64_t)p->arrived_usec);
        bind_usec_or_null(st, 6, p->left_usec);
        if (p->job)
            sqlite3_bind_int64(st, 7, (int64_t)p->job);
        bind_text_or_null(st, 8, p->outcome[0] ? p->outcome : NULL);
        if (p->id)
            sqlite3_bind_int64(st, 9, (int64_t)p->id);
        rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return fail(s, rc, "cannot record a plug", err, err_size);
    if (!p->id)
        p->id = (uint64_t)sqlite3_last_insert_rowid(s->db);
    return 0;
}

static void copy_column(sqlite3_stmt *st, int col, char *buf, size_t size)
{
    const unsigned char *t = sqlite3_column_text(st, col);

    snprintf(buf, size, "%s", t ? (const char *)t : "");
}

int store_db_open_plugs(StoreDb *s, const char *boot_id,
                        int (*fn)(void *userdata, const StorePlug *p), void *userdata, char *err,
                        size_t err_size)
{
    sqlite3_stmt *st = NULL;
    int rc, r = 0;

    rc = sqlite3_prepare_v2(s->db,
                            "SELECT id, path, busnum, devnum, arrived, job, outcome FROM plugs "
                            "WHERE boot_id = ?1 AND left IS NULL",
                            -1, &st, NULL);
    if (rc != SQLITE_OK)
        return fail(s, rc, "cannot read the plugs", err, err_size);
    sqlite3_bind_text(st, 1, boot_id, -1, SQLITE_STATIC);
    while (r >= 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        StorePlug p = {
                .id = (uint64_t)sqlite3_column_int64(st, 0),
                .busnum = (unsigned)sqlite3_column_int(st, 2),
                .devnum = (unsigned)sqlite3_column_int(st, 3),
                .arrived_usec = (uint64_t)sqlite3_column_int64(st, 4),
                .job = (uint64_t)sqlite3_column_int64(st, 5),
        };

        snprintf(p.boot_id, sizeof(p.boot_id), "%s", boot_id);
        copy_column(st, 1, p.path, sizeof(p.path));
        copy_column(st, 6, p.outcome, sizeof(p.outcome));
        if (!p.path[0] || (p.outcome[0] && !wire_job_state_is_final(p.outcome))) {
            warn(s, "%s: plug %" PRIu64 ": damaged row skipped", s->path, p.id);
            continue;
        }
        r = fn(userdata, &p);
    }
    if (r >= 0 && rc != SQLITE_DONE && rc != SQLITE_ROW)
        r = fail(s, rc, "cannot read the plugs", err, err_size);
    sqlite3_finalize(st);
    return r;
}

/* ---- recovery ---- */

static int64_t int_of(json_object *o, const char *key)
{
    json_object *v = NULL;

    return json_object_object_get_ex(o, key, &v) && v ? json_object_get_int64(v) : 0;
}

/* "during download at 37%, block 412 (offset 0x6700)": where a live job was. */
static void describe_where(json_object *job, const char *state, char *buf, size_t size)
{
    json_object *progress = NULL;
    int64_t percent, block, bytes;

    json_object_object_get_ex(job, "progress", &progress);
    percent = int_of(progress, "percent");
    block = int_of(progress, "block");
    bytes = int_of(progress, "bytes");
    if (strcmp(state, "downloading") == 0 || strcmp(state, "manifesting") == 0)
        snprintf(buf, size, "during %s at %" PRId64 "%%, block %" PRId64 " (offset 0x%" PRIx64 ")",
                 strcmp(state, "downloading") == 0 ? "download" : "manifestation", percent, block,
                 (uint64_t)bytes);
    else if (strcmp(state, "waiting-for-board") == 0)
        snprintf(buf, size, "while the job waited for a board");
    else if (strcmp(state, "queued") == 0)
        snprintf(buf, size, "while the job was queued");
    else if (strcmp(state, "detaching") == 0)
        snprintf(buf, size, "while the board was being detached");
    else
        snprintf(buf, size, "while the board was re-enumerating after the detach");
}

static json_object *interrupted_error(const char *state, json_object *job, const char *message)
{
    json_object *e = json_object_new_object(), *progress = NULL;
    bool download = strcmp(state, "downloading") == 0 || strcmp(state, "manifesting") == 0;

    if (!e)
        return NULL;
    json_object_object_get_ex(job, "progress", &progress);
    json_object_object_add(e, "code", json_object_new_string("interrupted"));
    json_object_object_add(e, "message", json_object_new_string(message));
    json_object_object_add(e, "phase", download ? json_object_new_string("download") : NULL);
    json_object_object_add(e, "block",
                           download ? json_object_new_int64(int_of(progress, "block")) : NULL);
    json_object_object_add(e, "offset",
                           download ? json_object_new_int64(int_of(progress, "bytes")) : NULL);
    json_object_object_add(e, "dfu_status", NULL);
    return e;
}

/* Rewrite one live job's document as interrupted. */
static int interrupt_document(json_object *job, const char *state, uint64_t stopped_usec,
                              uint64_t now_usec)
{
    json_object *history = NULL, *t, *attempts = NULL, *error;
    char where[160], when[32], reason[300];
    time_t sec = (time_t)(stopped_usec / 1000000u);
    struct tm tm;

    describe_where(job, state, where, sizeof(where));
    if (!localtime_r(&sec, &tm) || !strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm))
        snprintf(when, sizeof(when), "%" PRIu64, stopped_usec / 1000000u);
    snprintf(reason, sizeof(reason), "the daemon stopped at %s %s", when, where);

    json_object_object_add(job, "state", json_object_new_string("interrupted"));
    json_object_object_add(job, "finished", wire_json_time(now_usec));
    if (json_object_object_get_ex(job, "history", &history) &&
        json_object_is_type(history, json_type_array) && (t = json_object_new_object())) {
        json_object_object_add(t, "state", json_object_new_string("interrupted"));
        json_object_object_add(t, "at", wire_json_time(now_usec));
        json_object_object_add(t, "reason", json_object_new_string(reason));
        json_object_array_add(history, t);
    }
    error = interrupted_error(state, job, reason);
    /* The attempt that was running ends here too. */
    if (json_object_object_get_ex(job, "attempts", &attempts) &&
        json_object_is_type(attempts, json_type_array) && json_object_array_length(attempts) > 0) {
        json_object *last =
                json_object_array_get_idx(attempts, json_object_array_length(attempts) - 1);
        json_object *fin = NULL;

        if (json_object_is_type(last, json_type_object) &&
            (!json_object_object_get_ex(last, "finished", &fin) || !fin)) {
            json_object_object_add(last, "finished", wire_json_time(stopped_usec));
            json_object_object_add(last, "error", error ? json_object_get(error) : NULL);
        }
    }
    json_object_object_add(job, "error", error);
    return error ? 0 : -ENOMEM;
}

/* Recover one live row: its document rewritten, or, when damaged, its columns ended. */
static int recover_one(StoreDb *s, uint64_t id, uint64_t now_usec,
                       int (*fn)(void *userdata, json_object *job), void *userdata, char *err,
                       size_t err_size)
{
    sqlite3_stmt *st = NULL;
    json_object *job = NULL;
    char state[32], path[64], sha[72], mac[32];
    uint64_t stopped, created;
    int rc, r;

    rc = sqlite3_prepare_v2(s->db,
                            "SELECT id, job, state, path, sha256, mac, created, updated FROM jobs "
                            "WHERE id = ?1",
                            -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, (int64_t)id);
        rc = sqlite3_step(st);
    }
    if (rc != SQLITE_ROW) {
        r = fail(s, rc, "cannot read an interrupted job", err, err_size);
        sqlite3_finalize(st);
        return r;
    }
    copy_column(st, 2, state, sizeof(state));
    copy_column(st, 3, path, sizeof(path));
    copy_column(st, 4, sha, sizeof(sha));
    copy_column(st, 5, mac, sizeof(mac));
    created = (uint64_t)sqlite3_column_int64(st, 6);
    stopped = (uint64_t)sqlite3_column_int64(st, 7);
    job = row_document(s, st, 0, 1);
    sqlite3_finalize(st);
    if (!job) {
        /* Damaged (warned): the columns still end it, so nothing stays live forever. */
        char sql[160];

        snprintf(sql, sizeof(sql),
                 "UPDATE jobs SET state = 'interrupted', final = 1, finished = %" PRIu64
                 " WHERE id = %" PRIu64,
                 now_usec, id);
        r = exec(s, sql, "cannot end a damaged job", err, err_size);
        return r < 0 ? r : note_finished(s, id, now_usec, err, err_size);
    }
    r = interrupt_document(job, state, stopped, now_usec);
    if (r >= 0)
        r = store_db_update_job(
                s,
                &(StoreJobRow){
                        .id = id,
                        .path = path,
                        .state = "interrupted",
                        .sha256 = sha,
                        .mac = mac[0] ? mac : NULL,
                        .created_usec = created,
                        .finished_usec = now_usec,
                        .json = json_object_to_json_string_ext(job, JSON_C_TO_STRING_PLAIN),
                },
                err, err_size);
    if (r >= 0 && fn)
        r = fn(userdata, job);
    json_object_put(job);
    return r;
}

int store_db_recover(StoreDb *s, uint64_t now_usec, int (*fn)(void *userdata, json_object *job),
                     void *userdata, unsigned *ret_n, char *err, size_t err_size)
{
    _cleanup_free_ uint64_t *ids = NULL;
    size_t n = 0, cap = 0;
    sqlite3_stmt *st = NULL;
    int rc, r = 0;

    /* The ids first: rows are not changed under a running SELECT. */
    rc = sqlite3_prepare_v2(s->db, "SELECT id FROM jobs WHERE final = 0 ORDER BY id", -1, &st,
                            NULL);
    while (rc == SQLITE_OK || rc == SQLITE_ROW) {
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW)
            break;
        if (n == cap) {
            uint64_t *p = reallocarray(ids, cap ? cap * 2 : 64, sizeof(*ids));

            if (!p) {
                sqlite3_finalize(st);
                return -ENOMEM;
            }
            ids = p;
            cap = cap ? cap * 2 : 64;
        }
        ids[n++] = (uint64_t)sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return fail(s, rc, "cannot find interrupted jobs", err, err_size);
    for (size_t i = 0; i < n && r >= 0; i++)
        r = recover_one(s, ids[i], now_usec, fn, userdata, err, err_size);
    if (ret_n)
        *ret_n = (unsigned)n;
    return r;
}

/* ---- importing history.jsonl ---- */

static uint64_t usec_of(json_object *o, const char *key)
{
    json_object *v = NULL;
    double d;

    if (!json_object_object_get_ex(o, key, &v) || !v)
        return 0;
    d = json_object_get_double(v);
    return d > 0 ? (uint64_t)(d * 1e6 + 0.5) : 0;
}

static int import_line(StoreDb *s, const char *line, size_t len, const char *file, unsigned lineno,
                       StoreDbOpenInfo *info, char *err, size_t err_size)
{
    json_object *o = json_tokener_parse(line), *image = NULL;
    char why[160];
    uint64_t id;
    int r;

    if (!o || !store_job_json_valid(o, why, sizeof(why)) || int_of(o, "id") <= 0 ||
        !wire_job_state_is_final(str_of(o, "state"))) {
        warn(s, "%s:%u: corrupt record skipped while importing", file, lineno);
        info->import_skipped++;
        json_object_put(o);
        return 0;
    }
    json_object_object_get_ex(o, "image", &image);
    r = store_db_insert_job(s,
                            &(StoreJobRow){
                                    .id = (uint64_t)int_of(o, "id"),
                                    .path = str_of(o, "path"),
                                    .state = str_of(o, "state"),
                                    .sha256 = str_of(image, "sha256"),
                                    .created_usec = usec_of(o, "created"),
                                    .finished_usec = usec_of(o, "finished"),
                                    .json = line,
                            },
                            &id, err, err_size);
    json_object_put(o);
    if (r == -EEXIST) { /* imported already, by a run that could not rename the file */
        info->import_skipped++;
        return 0;
    }
    if (r >= 0)
        info->imported++;
    return r;
}

static int import_file(StoreDb *s, const char *file, StoreDbOpenInfo *info, char *err,
                       size_t err_size)
{
    _cleanup_fclose_ FILE *f = NULL;
    _cleanup_free_ char *line = NULL;
    size_t cap = 0;
    unsigned lineno = 0;
    ssize_t n;
    int fd, r = 0;

    /* Never block on a FIFO someone put there, never follow a link. */
    fd = open(file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return errno == ENOENT ? 0
                               : (snprintf(err, err_size, "%s: %s", file, strerror(errno)), -errno);
    {
        struct stat st;

        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
            close(fd);
            warn(s, "%s: not a regular file; not imported", file);
            return 0;
        }
    }
    f = fdopen(fd, "r");
    if (!f) {
        close(fd);
        return -errno;
    }
    while (r >= 0 && (n = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        if (n == 0)
            continue;
        if ((size_t)n > LEGACY_LINE_MAX || memchr(line, '\0', (size_t)n)) {
            warn(s, "%s:%u: corrupt record skipped while importing", file, lineno);
            info->import_skipped++;
            continue;
        }
        r = import_line(s, line, (size_t)n, file, lineno, info, err, err_size);
    }
    return r;
}

/* history.jsonl.1 then history.jsonl, in one transaction; then both renamed. */
static int import_legacy(StoreDb *s, const char *dir, StoreDbOpenInfo *info, char *err,
                         size_t err_size)
{
    char files[2][4200];
    bool any = false;
    int r;

    snprintf(files[0], sizeof(files[0]), "%s/%s.1", dir, STORE_DB_LEGACY_FILE);
    snprintf(files[1], sizeof(files[1]), "%s/%s", dir, STORE_DB_LEGACY_FILE);
    for (size_t i = 0; i < 2; i++)
        any |= access(files[i], F_OK) == 0;
    if (!any)
        return 0;
    r = store_db_begin(s, err, err_size);
    for (size_t i = 0; i < 2 && r >= 0; i++)
        r = import_file(s, files[i], info, err, err_size);
    if (r >= 0)
        r = store_db_commit(s, err, err_size);
    if (r < 0) {
        store_db_rollback(s);
        return r;
    }
    for (size_t i = 0; i < 2; i++) {
        char to[sizeof(files[0]) + 16];

        snprintf(to, sizeof(to), "%.4199s.imported", files[i]);
        if (rename(files[i], to) < 0 && errno != ENOENT)
            warn(s, "%s: imported, but cannot rename it to %s: %s", files[i], to, strerror(errno));
    }
    info->imported_legacy = true;
    return 0;
}
