/* SPDX-License-Identifier: MIT */
/*
 * The job store on the real SQLite, each test in its own temporary directory:
 * store-db.c (opening, ids, queries and cursors, damaged rows, the recovery
 * of live jobs, files moved aside, the import of history.jsonl, read-only
 * readers, plugs) and store.c (its thread answering an sd-event loop,
 * coalesced writes, the flush at store_free, retrying a write that failed).
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <systemd/sd-event.h>
#include <time.h>
#include <unistd.h>

#include "daemon-test.h"
#include "log.h"
#include "store-db.h"
#include "store.h"
#include "timeutil.h"
#include "util.h"

#define SHA_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define SHA_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

/* A list of ids: IDS(a, b, c) expands to the array and its length. */
#define IDS(...) \
    (const uint64_t[]){__VA_ARGS__}, sizeof((const uint64_t[]){__VA_ARGS__}) / sizeof(uint64_t)

/* ---- a temporary directory per test, removed however the test ends ---- */

typedef struct TmpDir {
    char path[64];
} TmpDir;

static TmpDir tmpdir_make(void)
{
    TmpDir d;

    snprintf(d.path, sizeof(d.path), "/tmp/test-store-XXXXXX");
    if (!mkdtemp(d.path))
        abort();
    return d;
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void tmpdir_remove(TmpDir *d)
{
    (void)chmod(d->path, 0700);
    if (nftw(d->path, remove_one, 16, FTW_DEPTH | FTW_PHYS) < 0)
        fprintf(stderr, "cannot remove %s: %m\n", d->path);
}

static void path_in(const TmpDir *d, const char *name, char *buf, size_t size)
{
    snprintf(buf, size, "%s/%s", d->path, name);
}

static bool file_exists(const char *path)
{
    return access(path, F_OK) == 0;
}

static bool exists_in(const TmpDir *d, const char *name)
{
    char p[256];

    path_in(d, name, p, sizeof(p));
    return file_exists(p);
}

static int write_file(const TmpDir *d, const char *name, const void *data, size_t size)
{
    char p[256];
    FILE *f;
    bool ok;

    path_in(d, name, p, sizeof(p));
    f = fopen(p, "we");
    if (!f)
        return -errno;
    ok = fwrite(data, 1, size, f) == size;
    return fclose(f) == 0 && ok ? 0 : -EIO;
}

static ssize_t read_back(const char *path, void *buf, size_t size)
{
    FILE *f = fopen(path, "re");
    size_t n;

    if (!f)
        return -errno;
    n = fread(buf, 1, size, f);
    fclose(f);
    return (ssize_t)n;
}

/* ---- a raw SQLite connection beside the store's ---- */

static sqlite3 *raw_open(const TmpDir *d, const char *name, int flags)
{
    char p[256];
    sqlite3 *db = NULL;

    path_in(d, name, p, sizeof(p));
    if (sqlite3_open_v2(p, &db, flags, NULL) != SQLITE_OK) {
        fprintf(stderr, "    sqlite3_open_v2(%s): %s\n", p, db ? sqlite3_errmsg(db) : "?");
        sqlite3_close_v2(db);
        return NULL;
    }
    return db;
}

static void raw_closep(sqlite3 **db)
{
    if (*db)
        sqlite3_close_v2(*db);
    *db = NULL;
}

static int raw_exec(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);

    if (rc != SQLITE_OK)
        fprintf(stderr, "    %s: %s\n", sql, msg ? msg : sqlite3_errstr(rc));
    sqlite3_free(msg);
    return rc;
}

/* The first column of the first row as an integer; -1 on any failure. */
static int64_t raw_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    int64_t v = -1;

    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static const char *raw_text(sqlite3 *db, const char *sql, char *buf, size_t size)
{
    sqlite3_stmt *st = NULL;
    const char *r = NULL;

    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW &&
        sqlite3_column_text(st, 0)) {
        snprintf(buf, size, "%s", (const char *)sqlite3_column_text(st, 0));
        r = buf;
    }
    sqlite3_finalize(st);
    return r;
}

/* ---- job documents and rows ---- */

/* The protocol's Job object, as far as store_job_json_valid() looks. */
static json_object *job_object(const char *path, const char *state, const char *sha, double created,
                               double finished)
{
    json_object *o = json_object_new_object(), *image = json_object_new_object(),
                *progress = json_object_new_object();

    json_object_object_add(image, "name", json_object_new_string("dfu.bin"));
    json_object_object_add(image, "sha256", json_object_new_string(sha));
    json_object_object_add(image, "size", json_object_new_int(1));
    json_object_object_add(progress, "bytes", json_object_new_int(0));
    json_object_object_add(progress, "total", json_object_new_int(1));
    json_object_object_add(progress, "percent", json_object_new_int(0));
    json_object_object_add(o, "path", json_object_new_string(path));
    json_object_object_add(o, "source", json_object_new_string("manual"));
    json_object_object_add(o, "chip", json_object_new_string("esp32s3"));
    json_object_object_add(o, "state", json_object_new_string(state));
    json_object_object_add(o, "image", image);
    json_object_object_add(o, "progress", progress);
    json_object_object_add(o, "created", json_object_new_double(created));
    json_object_object_add(o, "started", NULL);
    json_object_object_add(o, "finished", finished > 0 ? json_object_new_double(finished) : NULL);
    json_object_object_add(o, "history", json_object_new_array());
    json_object_object_add(o, "retries", json_object_new_int(0));
    json_object_object_add(o, "max_retries", json_object_new_int(1));
    json_object_object_add(o, "timeout_s", json_object_new_int(600));
    json_object_object_add(o, "error", NULL);
    return o;
}

static bool is_final(const char *state)
{
    static const char *const final[] = {"succeeded", "failed", "cancelled", "interrupted",
                                        "expired"};

    for (size_t i = 0; i < ELEMENTSOF(final); i++)
        if (strcmp(state, final[i]) == 0)
            return true;
    return false;
}

/* A row for doc; its text stays valid while doc lives. Live when finished_sec is 0. */
static StoreJobRow row_of(uint64_t id, json_object *doc, const char *path, const char *state,
                          const char *sha, int64_t finished_sec)
{
    return (StoreJobRow){
            .id = id,
            .path = path,
            .state = state,
            .sha256 = sha,
            .created_usec = finished_sec > 10 ? (uint64_t)(finished_sec - 10) * USEC_PER_SEC : 1,
            .finished_usec = finished_sec > 0 ? (uint64_t)finished_sec * USEC_PER_SEC : 0,
            .json = json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PLAIN),
    };
}

/* Insert one job; a final state needs finished_sec > 0. */
static int add_job_doc(StoreDb *db, json_object *doc, const char *path, const char *state,
                       const char *sha, int64_t finished_sec, uint64_t *ret_id)
{
    StoreJobRow row = row_of(0, doc, path, state, sha, finished_sec);
    char err[STORE_DB_ERR_MAX];
    int r = store_db_insert_job(db, &row, ret_id, err, sizeof(err));

    if (r < 0)
        fprintf(stderr, "    insert: %s\n", err);
    return r;
}

static int add_job(StoreDb *db, const char *path, const char *state, const char *sha,
                   int64_t finished_sec, uint64_t *ret_id)
{
    json_object *doc = job_object(path, state, sha, finished_sec > 10 ? finished_sec - 10 : 1,
                                  is_final(state) ? (double)finished_sec : 0);
    int r = add_job_doc(db, doc, path, state, sha, finished_sec, ret_id);

    json_object_put(doc);
    return r;
}

static int update_job(StoreDb *db, uint64_t id, const char *path, const char *state,
                      int64_t finished_sec, char *err, size_t err_size)
{
    json_object *doc = job_object(path, state, SHA_A, 1, is_final(state) ? finished_sec : 0);
    StoreJobRow row = row_of(id, doc, path, state, SHA_A, finished_sec);
    int r = store_db_update_job(db, &row, err, err_size);

    json_object_put(doc);
    return r;
}

static json_object *member(json_object *o, const char *key)
{
    json_object *v = NULL;

    return o && json_object_object_get_ex(o, key, &v) ? v : NULL;
}

static const char *str_member(json_object *o, const char *key)
{
    json_object *v = member(o, key);

    return json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

static int64_t int_member(json_object *o, const char *key)
{
    json_object *v = member(o, key);

    return v ? json_object_get_int64(v) : -1;
}

/* ---- collecting what the store hands back ---- */

typedef struct Ids {
    uint64_t v[64];
    size_t n;
    int stop_after; /* > 0: the callback stops the query after this many */
} Ids;

static int collect_id(void *userdata, json_object *job)
{
    Ids *ids = userdata;

    if (ids->n >= ELEMENTSOF(ids->v))
        return -E2BIG;
    ids->v[ids->n++] = (uint64_t)int_member(job, "id");
    if (ids->stop_after > 0 && ids->n >= (size_t)ids->stop_after)
        return -ECANCELED;
    return 0;
}

static int query_ids(StoreDb *db, const StoreQuery *q, Ids *ids, uint64_t *ret_last)
{
    char err[STORE_DB_ERR_MAX] = "";

    ids->n = 0;
    return store_db_query(db, q, collect_id, ids, ret_last, err, sizeof(err));
}

static bool ids_eq(const Ids *got, const uint64_t *want, size_t n)
{
    bool same = got->n == n && memcmp(got->v, want, n * sizeof(*want)) == 0;

    if (!same) {
        fprintf(stderr, "    got ids:");
        for (size_t i = 0; i < got->n; i++)
            fprintf(stderr, " %" PRIu64, got->v[i]);
        fprintf(stderr, "; want:");
        for (size_t i = 0; i < n; i++)
            fprintf(stderr, " %" PRIu64, want[i]);
        fprintf(stderr, "\n");
    }
    return same;
}

typedef struct Warnings {
    char text[4096];
    unsigned n;
} Warnings;

static void collect_warning(void *userdata, const char *message)
{
    Warnings *w = userdata;
    size_t len = strlen(w->text);

    snprintf(w->text + len, sizeof(w->text) - len, "%s\n", message);
    w->n++;
}

/* ---- store-db: opening, ids, updates ---- */

static void test_db_open_ids(T *t)
{
    _cleanup_(tmpdir_remove) TmpDir d = tmpdir_make();
    _cleanup_(store_db_closep) StoreDb *db = NULL;
    _cleanup_(raw_closep) sqlite3 *raw = NULL;
    StoreDbOpenInfo info;
    char err[STORE_DB_ERR_MAX] = "", mode[16];
    uint64_t ids[5], id, id2, max = 0, commits;
    json_object *job = NULL;
    unsigned n = 0;
    int r;

    CHECK(store_db_open(d.path, NULL, NULL, &db, &info, err, sizeof(err)) == 0);
    CHECK(info.created && !info.moved_aside && !info.imported_legacy && info.id_floor == 0);
    CHECK(exists_in(&d, STORE_DB_FILE) && exists_in(&d, STORE_DB_FILE "-wal"));
    /* What a second, read-only connection sees of the file. */
    raw = raw_open(&d, STORE_DB_FILE, SQLITE_OPEN_READONLY);
    CHECK(raw);
    CHECK_STREQ(raw_text(raw, "PRAGMA journal_mode", mode, sizeof(mode)), "wal");
    CHECK(raw_int(raw, "PRAGMA application_id") == STORE_DB_APPLICATION_ID);
    CHECK(raw_int(raw, "PRAGMA user_version") == STORE_DB_SCHEMA_VERSION);

    commits = store_db_commits(db);
    CHECK(store_db_begin(db, err, sizeof(err)) == 0);
    for (size_t i = 0; i < ELEMENTSOF(ids); i++) {
        CHECK(add_job(db, "1-1", "succeeded", SHA_A, 1000 + (int64_t)i, &ids[i]) == 0);
        CHECK(ids[i] > 0 && (i == 0 || ids[i] > ids[i - 1]));
    }
    CHECK(raw_int(raw, "SELECT count(*) FROM jobs") == 0); /* not committed yet */
    CHECK(store_db_commit(db, err, sizeof(err)) == 0);
    CHECK(store_db_commits(db) == commits + 1);
    CHECK(raw_int(raw, "SELECT count(*) FROM jobs") == 5);

    /* Prune to the newest two, then everything: ids are never handed out again. */
    CHECK(store_db_prune(db, 2, 100, &n, err, sizeof(err)) == 0 && n == 3);
    CHECK(store_db_get(db, ids[2], &job, err, sizeof(err)) == -ENOENT);
    CHECK(store_db_get(db, ids[3], &job, err, sizeof(err)) == 0);
    json_object_put(job);
    job = NULL;
    CHECK(store_db_prune(db, 0, 100, &n, err, sizeof(err)) == 0 && n == 2);
    CHECK(raw_int(raw, "SELECT count(*) FROM jobs") == 0);
    CHECK(store_db_max_id(db, &max, err, sizeof(err)) == 0 && max == ids[4]);
    CHECK(add_job(db, "1-2", "queued", SHA_A, 0, &id) == 0); /* autocommit */
    CHECK(id > ids[4]);

    /* Update and get. */
    CHECK(update_job(db, id, "1-2", "failed", 2000, err, sizeof(err)) == 0);
    CHECK(store_db_get(db, id, &job, err, sizeof(err)) == 0);
    CHECK(int_member(job, "id") == (int64_t)id);
    r = strcmp(str_member(job, "state") ?: "", "failed") == 0 &&
        strcmp(str_member(job, "path") ?: "", "1-2") == 0;
    json_object_put(job);
    job = NULL;
    CHECK(r);
    CHECK(raw_int(raw, "SELECT final FROM jobs ORDER BY id DESC LIMIT 1") == 1);
    err[0] = '\0';
    CHECK(update_job(db, id + 100, "1-2", "failed", 2000, err, sizeof(err)) == -ENOENT);
    CHECK(err[0]);
    CHECK(update_job(db, id, "1-2", "no-such-state", 2000, err, sizeof(err)) == -EINVAL);
    err[0] = '\0';
    CHECK(store_db_get(db, id + 100, &job, err, sizeof(err)) == -ENOENT && !job);
    CHECK(err[0]);

    /* Reopened: the same file, the ids go on. */
    db = store_db_close(db);
    CHECK(store_db_open(d.path, NULL, NULL, &db, &info, err, sizeof(err)) == 0);
    CHECK(!info.created && !info.moved_aside);
    CHECK(add_job(db, "1-1", "succeeded", SHA_A, 3000, &id2) == 0 && id2 == id + 1);
}

/* ---- store-db: queries ---- */

static void test_db_query_filters(T *t)
{
    _cleanup_(tmpdir_remove) TmpDir d = tmpdir_make();
    _cleanup_(store_db_closep) StoreDb *db = NULL;
    StoreDbOpenInfo info;
    char err[STORE_DB_ERR_MAX] = "";
    uint64_t id[7], last = 0;
    Ids got = {};

    CHECK(store_db_open(d.path, NULL, NULL, &db, &info, err, sizeof(err)) == 0);
    CHECK(add_job(db, "1-1", "succeeded", SHA_A, 1000, &id[1]) == 0);
    CHECK(add_job(db, "1-2", "failed", SHA_A, 2000, &id[2]) == 0);
    CHECK(add_job(db, "1-1", "failed", SHA_B, 3000, &id[3]) == 0);
    CHECK(add_job(db, "1-2", "succeeded", SHA_B, 4000, &id[4]) == 0);
    CHECK(add_job(db, "1-1", "succeeded", SHA_A, 5000, &id[5]) == 0);
    CHECK(add_job(db, "1-1", "downloading", SHA_A, 0, &id[6]) == 0);

    CHECK(query_ids(db, &(StoreQuery){.limit = 100}, &got, &last) == 0);
    CHECK(ids_eq(&got, IDS(id[5], id[4], id[3], id[2], id[1])) && last == id[1]);
    CHECK(query_ids(db, &(StoreQuery){.path = "1-1", .limit = 100}, &got, NULL) == 0);
    CHECK(ids_eq(&got, IDS(id[5], id[3], id[1])));
    CHECK(query_ids(db, &(StoreQuery){.result = "failed", .limit = 100}, &got, NULL) == 0);
    CHECK(ids_eq(&got, IDS(id[3], id[2])));
    CHECK(query_ids(db, &(StoreQuery){.sha256 = SHA_B, .limit = 100}, &got, NULL) == 0);
    CHECK(ids_eq(&got, IDS(id[4], id[3])));
    CHECK(query_ids(db, &(StoreQuery){.since = 3000, .limit = 100}, &got, NULL) == 0);
    CHECK(ids_eq(&got, IDS(id[5], id[4], id[3])));
    CHECK(query_ids(db, &(StoreQuery){.path = "1-1", .result = "succeeded", .limit = 100}, &got,
                    NULL) == 0);
    CHECK(ids_eq(&got, IDS(id[5], id[1])));
    CHECK(query_ids(db, &(StoreQuery){.limit = 2}, &got, &last) == 0);
    CHECK(ids_eq(&got, IDS(id[5], id[4])) && last == id[4]);
    CHECK(query_ids(db, &(StoreQuery){.include_live = true, .limit = 100}, &got, NULL) == 0);
    CHECK(ids_eq(&got, IDS(id[6], id[5], id[4], id[3], id[2], id[1])));
    CHECK(query_ids(db,
                    &(StoreQuery){
                            .path = "1-1", .include_live = true, .ascending = true, .limit = 100},
                    &got, NULL) == 0);
    CHECK(ids_eq(&got, IDS(id[1], id[3], id[5], id[6])));
    CHECK(query_ids(db, &(StoreQuery){.path = "9-9", .limit = 100}, &got, &last) == 0);
    CHECK(got.n == 0 && last == 0);

    /* The callback stops a query with its own value. */
    got.stop_after = 2;
    CHECK(query_ids(db, &(StoreQuery){.limit = 100}, &got, NULL) == -ECANCELED && got.n == 2);
    got.stop_after = 0;

    /* Queries that make no sense. */
    CHECK(query_ids(db, &(StoreQuery){.limit = 0}, &got, NULL) == -EINVAL);
    CHECK(query_ids(db, &(StoreQuery){.result = "queued", .limit = 10}, &got, NULL) == -EINVAL);
    CHECK(query_ids(db, &(StoreQuery){.before = 5, .after = 1, .limit = 10}, &got, NULL) ==
          -EINVAL);
}

/*
 * since across days: ids do not follow finish times (a long job finishes after later
 * ones), and the per-day lower bound on ids must still find every match, exactly.
 */
static void test_db_query_since_days(T *t)
{
    _cleanup_(tmpdir_remove) TmpDir d = tmpdir_make();
    _cleanup_(store_db_closep) StoreDb *db = NULL;
    const int64_t day = 86400, now = 1796400000; /* 2026-12-04 */
    StoreDbOpenInfo info;
    char err[STORE_DB_ERR_MAX] = "";
    uint64_t id[6];
    Ids got = {};

    CHECK(store_db_open(d.path, NULL, NULL, &db, &info, err, sizeof(err)) == 0);
    CHECK(add_job(db, "1-1", "succeeded", SHA_A, now - 5 * day, &id[0]) == 0);
    CHECK(add_job(db, "1-1", "failed", SHA_A, now, &id[1]) == 0); /* the long one */
    CHECK(add_job(db, "1-2", "succeeded", SHA_B, now - 3 * day, &id[2]) == 0);
    CHECK(add_job(db, "1-1", "succeeded", SHA_A, now - day, &id[3]) == 0);
    CHECK(add_job(db, "1-2", "interrupted", SHA_B, now - 2 * day - 60, &id[4]) == 0);
    CHECK(add_job(db, "1-1", "succeeded", SHA_B, now - 60, &id[5]) == 0);

    CHECK(query_ids(db, &(StoreQuery){.since = now - 2 * day - 120, .limit = 100}, &got, NULL) ==
          0);
    CHECK(ids_eq(&got, IDS(id[5], id[4], id[3], id[1])));
    CHECK(query_ids(db, &(StoreQuery){.since = now - 4 * day, .path = "1-2", .limit = 100}, &got,
                    NULL) == 0);
    CHECK(ids_eq(&got, IDS(id[4], id[2])));
    CHECK(query_ids(db, &(StoreQuery){.since = now - 30, .limit = 100}, &got, NULL) == 0);
    CHECK(ids_eq(&got, IDS(id[1])));
    CHECK(query_ids(db, &(StoreQuery){.since = now + day, .limit = 100}, &got, NULL) == 0);
    CHECK(got.n == 0);
    CHECK(query_ids(db, &(StoreQuery){.since = now - 10 * day, .ascending = true, .limit = 100},
                    &got, NULL) == 0);
    CHECK(ids_eq(&got, IDS(id[0], id[1], id[2], id[3], id[4], id[5])));
    /* The bound is kept per UTC day, in days since the epoch. */
    {
        _cleanup_(raw_closep) sqlite3 *raw = raw_open(&d, STORE_DB_FILE, SQLITE_OPEN_READONLY);
        char sql[128];

        CHECK(raw);
        CHECK(raw_int(raw, "SELECT count(*) FROM finished_days") == 5);
        snprintf(sql, sizeof(sql), "SELECT min_id FROM finished_days WHERE day = %lld",
                 (long long)(now / day));
        CHECK(raw_int(raw, sql) == (int64_t)id[1]);
    }
}

/* Pages of `limit` rows, following the cursor until an empty page. */
static int page_through(StoreDb *db, StoreQuery q, bool forward, Ids *all, unsigned *ret_pages)
{
    Ids page = {};
    uint64_t last = 0;
    int r;

    all->n = 0;
    *ret_pages = 0;
    for (unsigned i = 0; i < 100; i++) {
        r = query_ids(db, &q, &page, &last);
        if (r < 0)
            return r;
        if (page.n == 0)
            return 0;
        if (page.n > q.limit || all->n + page.n > ELEMENTSOF(all->v))
            return -E2BIG;
        memcpy(all->v + all->n, page.v, page.n * sizeof(page.v[0]));
        all->n += page.n;
        ++*ret_pages;
        if (forward)
            q.after = last;
        else
            q.before = last;
    }
    return -ELOOP;
}

static void test_db_query_paging(T *t)
{
    _cleanup_(tmpdir_remove) TmpDir d = tmpdir_make();
    _cleanup_(store_db_closep) StoreDb *db = NULL;
    StoreDbOpenInfo info;
    char err[STORE_DB_ERR_MAX] = "";
    uint64_t id[25], live, want[25];
    Ids all = {};
    unsigned pages = 0;

    CHECK(store_db_open(d.path, NULL, NULL, &db, &info, err, sizeof(err)) == 0);
    CHECK(store_db_begin(db, err, sizeof(err)) == 0);
    for (size_t i = 0; i < ELEMENTSOF(id); i++)
        CHECK(add_job(db, i % 2 ? "1-2" : "1-1", "succeeded", SHA_A, 1000 + (int64_t)i, &id[i]) ==
              0);
    CHECK(add_job(db, "1-1", "queued", SHA_A, 0, &live) == 0);
    CHECK(store_db_commit(db, err, sizeof(err)) == 0);

    /* Newest first with `before`: every row once, in order. */
    CHECK(page_through(db, (StoreQuery){.limit = 7}, false, &all, &pages) == 0);
    for (size_t i = 0; i < ELEMENTSOF(id); i++)
        want[i] = id[ELEMENTSOF(id) - 1 - i];
    CHECK(ids_eq(&all, want, ELEMENTSOF(id)) && pages == 4);

    /* Oldest first with `after`. */
    CHECK(page_through(db, (StoreQuery){.limit = 7, .ascending = true}, true, &all, &pages) == 0);
    CHECK(ids_eq(&all, id, ELEMENTSOF(id)) && pages == 4);

    /* A filter and the live job, pages of 3. */
    CHECK(page_through(db, (StoreQuery){.path = "1-1", .include_live = true, .limit = 3}, false,
                       &all, &pages) == 0);
    CHECK(all.n == 14 && all.v[0] == live && pages == 5);
    for (size_t i = 1; i < all.n; i++)
        CHECK(all.v[i] == id[24 - 2 * (i - 1)]);
}

static void test_db_damaged_rows(T *t)
{
    _cleanup_(tmpdir_remove) TmpDir d = tmpdir_make();
    _cleanup_(store_db_closep) StoreDb *db = NULL;
    _cleanup_(raw_closep) sqlite3 *raw = NULL;
    StoreDbOpenInfo info;
    Warnings w = {};
    char err[STORE_DB_ERR_MAX] = "", sql[512], want[64];
    uint64_t id[4];
    json_object *job = NULL, *no_path;
    Ids got = {};

    CHECK(store_db_open(d.path, collect_warning, &w, &db, &info, err, sizeof(err)) == 0);
    for (size_t i = 0; i < ELEMENTSOF(id); i++)
        CHECK(add_job(db, "1-1", "succeeded", SHA_A, 1000 + (int64_t)i, &id[i]) == 0);

    raw = raw_open(&d, STORE_DB_FILE, SQLITE_OPEN_READWRITE);
    CHECK(raw);
    snprintf(sql, sizeof(sql), "UPDATE jobs SET job = '{not json' WHERE id = %" PRIu64, id[1]);
    CHECK(raw_exec(raw, sql) == SQLITE_OK);
    no_path = job_object("1-1", "succeeded", SHA_A, 1, 2);
    json_object_object_del(no_path, "path");
    snprintf(sql, sizeof(sql), "UPDATE jobs SET job = '%s' WHERE id = %" PRIu64,
             json_object_to_json_string_ext(no_path, JSON_C_TO_STRING_PLAIN), id[2]);
    json_object_put(no_path);
    CHECK(raw_exec(raw, sql) == SQLITE_OK);

    CHECK(w.n == 0);
    CHECK(query_ids(db, &(StoreQuery){.limit = 100}, &got, NULL) == 0);
    CHECK(ids_eq(&got, IDS(id[3], id[0])));
    CHECK(w.n == 2);
    snprintf(want, sizeof(want), "job %" PRIu64 ":", id[1]);
    CHECK(strstr(w.text, want) && strstr(w.text, "not JSON"));
    snprintf(want, sizeof(want), "job %" PRIu64 ":", id[2]);
    CHECK(strstr(w.text, want) && strstr(w.text, "\"path\""));
    CHECK(strstr(w.text, STORE_DB_FILE));

    CHECK(store_db_get(db, id[1], &job, err, sizeof(err)) == -EBADMSG && !job);
    CHECK(store_db_get(db, id[2], &job, err, sizeof(err)) == -EBADMSG && !job);
    CHECK(store_db_get(db, id[3], &job, err, sizeof(err)) == 0);
    json_object_put(job);
}

/* ---- store-db: recovering what a previous run left live ---- */

typedef struct Recovered {
    uint64_t ids[8];
    size_t n;
    bool all_interrupted;
} Recovered;

static int on_recovered(void *userdata, json_object *job)
{
    Recovered *r = userdata;

    if (r->n >= ELEMENTSOF(r->ids))
        return -E2BIG;
    r->ids[r->n++] = (uint64_t)int_member(job, "id");
    r->all_interrupted &= strcmp(str_member(job, "state") ?: "", "interrupted") == 0;
    return 0;
}

static json_object *downloading_job(void)
{
    json_object *doc = job_object("1-3", "downloading", SHA_A, 100, 0), *progress, *t, *attempt,
                *history = member(doc, "history"), *attempts = json_object_new_array();

    progress = json_object_new_object();
    json_object_object_add(progress, "bytes", json_object_new_int(26368));
    json_object_object_add(progress, "total", json_object_new_int(100000));
    json_object_object_add(progress, "percent", json_object_new_int(26));
    json_object_object_add(progress, "block", json_object_new_int(412));
    json_object_object_add(doc, "progress", progress);
    json_object_object_add(doc, "started", json_object_new_double(101));
    t = json_object_new_object();
    json_object_object_add(t, "state", json_object_new_string("downloading"));
    json_object_object_add(t, "at", json_object_new_double(101));
    json_object_object_add(t, "reason", json_object_new_string("board found"));
    json_object_array_add(history, t);
    attempt = json_object_new_object();
    json_object_object_add(attempt, "started", json_object_new_double(101));
    json_object_object_add(attempt, "finished", NULL);
    json_object_array_add(attempts, attempt);
    json_object_object_add(doc, "attempts", attempts);
    return doc;
}

static void test_db_recover(T *t)
{
    _cleanup_(tmpdir_remove) TmpDir d = tmpdir_make();
    _cleanup_(store_db_closep) StoreDb *db = NULL;
    _cleanup_(raw_closep) sqlite3 *raw = NULL;
    StoreDbOpenInfo info;
    Warnings w = {};
    Recovered rec = {.all_interrupted = true};
    char err[STORE_DB_ERR_MAX] = "", sql[256], want[64];
    uint64_t done, dl, wait, broken, now = now_usec(CLOCK_REALTIME);
    json_object *doc, *job = NULL, *e, *h, *a;
    const char *msg;
    unsigned n = 99;
    Ids got = {};
    int r;

    CHECK(store_db_open(d.path, collect_warning, &w, &db, &info, err, sizeof(err)) == 0);
    CHECK(add_job(db, "1-1", "succeeded", SHA_A, 50, &done) == 0);
    doc = downloading_job();
    r = add_job_doc(db, doc, "1-3", "downloading", SHA_A, 0, &dl);
    json_object_put(doc);
    CHECK(r == 0);
    CHECK(add_job(db, "1-4", "waiting-for-board", SHA_A, 0, &wait) == 0);
    CHECK(add_job(db, "1-5", "queued", SHA_A, 0, &broken) == 0);
    raw = raw_open(&d, STORE_DB_FILE, SQLITE_OPEN_READWRITE);
    CHECK(raw);
    snprintf(sql, sizeof(sql), "UPDATE jobs SET job = '[' WHERE id = %" PRIu64, broken);
    CHECK(raw_exec(raw, sql) == SQLITE_OK);

    CHECK(store_db_begin(db, err, sizeof(err)) == 0);
    CHECK(store_db_recover(db, now, on_recovered, &rec, &n, err, sizeof(err)) == 0);
    CHECK(store_db_commit(db, err, sizeof(err)) == 0);
    /* Three were live; the damaged one is ended by its columns, unseen. */
    CHECK(n == 3 && rec.n == 2 && rec.ids[0] == dl && rec.ids[1] == wait && rec.all_interrupted);
    snprintf(want, sizeof(want), "job %" PRIu64 ":", broken);
    CHECK(strstr(w.text, want));
    snprintf(sql, sizeof(sql),
             "SELECT final FROM jobs WHERE id = %" PRIu64 " AND state = 'interrupted'", broken);
    CHECK(raw_int(raw, sql) == 1);

    /* The download: where it was, in its error, history and last attempt. */
    CHECK(store_db_get(db, dl, &job, err, sizeof(err)) == 0);
    e = member(job, "error");
    h = member(job, "history");
    a = json_object_array_get_idx(member(job, "attempts"), 0);
    msg = str_member(e, "message");
    n = (strcmp(str_member(job, "state") ?: "", "interrupted") == 0) +
        (member(job, "finished") && json_object_get_double(member(job, "finished")) > 0) +
        (strcmp(str_member(e, "code") ?: "", "interrupted") == 0) +
        (msg && strstr(msg, "the daemon stopped at") && strstr(msg, "block 412")) +
        (int_member(e, "block") == 412) + (int_member(member(job, "progress"), "block") == 412) +
        (json_object_array_length(h) == 2) +
        (strcmp(str_member(json_object_array_get_idx(h, 1), "state") ?: "", "interrupted") == 0) +
        (member(a, "finished") != NULL) +
        (strcmp(str_member(member(a, "error"), "code") ?: "", "interrupted") == 0);
    if (n != 10)
        fprintf(stderr, "    recovered: %s\n", json_object_to_json_string(job));
    json_object_put(job);
    job = NULL;
    CHECK(n == 10);

    /* The wait. */
    CHECK(store_db_get(db, wait, &job, err, sizeof(err)) == 0);
    e = member(job, "error");
    h = member(job, "history");
    msg = str_member(e, "message");
    n = (strcmp(str_member(job, "state") ?: "", "interrupted") == 0) +
        (strcmp(str_member(e, "code") ?: "", "interrupted") == 0) +
        (msg && strstr(msg, "the daemon stopped at") && strstr(msg, "waited for a board")) +
        (json_object_array_length(h) == 1) +
        (strcmp(str_member(json_object_array_get_idx(h, 0), "state") ?: "", "interrupted") == 0);
    if (n != 5)
        fprintf(stderr, "    recovered: %s\n", json_object_to_json_string(job));
    json_object_put(job);
    CHECK(n == 5);

    /* Final now: a plain query sees them; nothing is left to recover. */
    CHECK(query_ids(db, &(StoreQuery){.limit = 100}, &got, NULL) == 0);
    CHECK(ids_eq(&got, IDS(wait, dl, done)));
    rec.n = 0;
    CHECK(store_db_recover(db, now, on_recovered, &rec, &n, err, sizeof(err)) == 0);
    CHECK(n == 0 && rec.n == 0);
}

/* ---- store-db: files that are not a usable store ---- */

static void test_db_corrupt_file(T *t)
{
    _cleanup_(tmpdir_remove) TmpDir d = tmpdir_make();
    _cleanup_(store_db_closep) StoreDb *db = NULL;
    StoreDbOpenInfo info;
    char err[STORE_DB_ERR_MAX] = "", garbage[8192], back[8192 + 1], prefix[128];
    uint64_t before = (uint64_t)time(NULL), id;

    for (size_t i = 0; i < sizeof(garbage); i++)
        garbage[i] = (char)(i * 7 + 3);
    CHECK(write_file(&d, STORE_DB_FILE, garbage, sizeof(garbage)) == 0);
    CHECK(store_db_open(d.path, NULL, NULL, &db, &info, err, sizeof(err)) == 0);
    CHECK(info.moved_aside && info.created && info.aside_reason[0]);
    path_in(&d, STORE_DB_FILE ".broken-", prefix, sizeof(prefix));
    CHECK(strncmp(info.aside_path, prefix, strlen(prefix)) == 0);
    CHECK(strtoull(info.aside_path + strlen(prefix), NULL, 10) >= before); /* named by the time */
    /* The damaged file is kept as it was, beside the new one. */
    CHECK(read_back(info.aside_path, back, sizeof(back)) == sizeof(garbage));
    CHECK(memcmp(back, garbage, sizeof(garbage)) == 0);
    /* Nothing salvaged: ids start above the time in seconds. */
    CHECK(info.id_floor >= before && info.id_floor <= (uint64_t)time(NULL));
    CHECK(add_job(db, "1-1", "succeeded", SHA_A, 1000, &id) == 0 && id > info.id_floor);
    db = store_db_close(db);

    /* Reopened: the new store is fine and stays. */
    CHECK(store_db_open(d.path, NULL, NULL, &db, &info, err, sizeof(err)) == 0);
    CHECK(!info.moved_aside && !info.created);
}

static void test_db_foreign_file(T *t)
{
    _cleanup_(tmpdir_remove) TmpDir d = tmpdir_make();
    _cleanup_(store_db_closep) StoreDb *db = NULL;
    _cleanup_(raw_closep) sqlite3 *raw = NULL;
    StoreDbOpenInfo info;
    char err[STORE_DB_ERR_MAX] = "", path[256];
    uint64_t before = (uint64_t)time(NULL), id;

    /* An empty file is a new store, not a foreign one. */
    CHECK(write_file(&d, STORE_DB_FILE, "", 0) == 0);
    CHECK(store_db_open(d.path, NULL, NULL, &db, &info, err, sizeof(err)) == 0);
    CHECK(info.created && !info.moved_aside);
    db = store_db_close(db);
    path_in(&d, STORE_DB_FILE, path, sizeof(path));
    CHECK(unlink(path) == 0);

    raw = raw_open(&d, STORE_DB_FILE, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    CHECK(raw);
    CHECK(raw_exec(raw, "CREATE TABLE other(x INTEGER); INSERT INTO other VALUES(42);") ==
          SQLITE_OK);
    raw_closep(&raw);

    CHECK(store_db_open(d.path, NULL, NULL, &db, &info, err, sizeof(err)) == 0);
    CHECK(info.moved_aside && info.created && strstr(info.aside_reason, "application_id"));
    CHECK(info.id_floor >= before);
    CHECK(add_job(db, "1-1", "succeeded", SHA_A, 1000, &id) == 0 && id > info.id_floor);
    /* The foreign file is kept as it was. */
    CHECK(sqlite3_open_v2(info.aside_path, &raw, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
    CHECK(raw_int(raw, "SELECT x FROM other") == 42);
}

static void test_db_newer_schema(T *t)
{
    _cleanup_(tmpdir_remove) TmpDir d = tmpdir_make();
    _cleanup_(store_db_closep) StoreDb *db = NULL;
    _cleanup_(raw_closep) sqlite3 *raw = NULL;
    StoreDbOpenInfo info;
    json_object *doc = job_object("1-1", "succeeded", SHA_A, 1, 2), *job = NULL;
    StoreJobRow row = row_of(5000000000u, doc, "1-1", "succeeded", SHA_A, 1000);
    char err[STORE_DB_ERR_MAX] = "", sql[64];
    uint64_t id = 0;
    int r;

    CHECK(store_db_open(d.path, NULL, NULL, &db, &info, err, sizeof(err)) == 0);
    r = store_db_insert_job(db, &row, &id, err, sizeof(err));
    json_object_put(doc);
    CHECK(r == 0 && id == 5000000000u);
    db = store_db_close(db);

    raw = raw_open(&d, STORE_DB_FILE, SQLITE_OPEN_READWRITE);
    CHECK(raw);
    snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", STORE_DB_SCHEMA_VERSION + 1);
    CHECK(raw_exec(raw, sql) == SQLITE_OK);
    raw_closep(&raw);

    CHECK(store_db_open(d.path, NULL, NULL, &db, &info, err, sizeof(err)) == 0);
    CHECK(info.moved_aside && info.created && strstr(info.aside_reason, "schema version"));
    CHECK(info.id_floor == 5000000000u);
    CHECK(store_db_get(db, 5000000000u, &job, err, sizeof(err)) == -ENOENT);
    CHECK(add_job(db, "1-1", "succeeded", SHA_A, 1000, &id) == 0 && id == 5000000001u);
}

/* ---- store-db: the one-time import of history.jsonl ---- */

static char *legacy_line(int64_t id, const char *path, const char *state, double finished)
{
    json_object *o = job_object(path, state, SHA_A, 1.5, finished);
    char *line;

    json_object_object_add(o, "id", json_object_new_int64(id));
    json_object_object_add(o, "started", json_object_new_double(2.5));
    if (strcmp(state, "failed") == 0) {
        json_object *e = json_object_new_object();

        json_object_object_add(e, "code", json_object_new_string("dfu-error"));
        json_object_object_add(e, "message", json_object_new_string("the board said no"));
        json_object_object_add(o, "error", e);
    }
    if (asprintf(&line, "%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN)) < 0)
        line = NULL;
    json_object_put(o);
    return line;
}

static int write_legacy(const TmpDir *d, const char *name, char **lines, size_t n)
{
    char buf[16384] = "";
    size_t len = 0;

    for (size_t i = 0; i < n; i++) {
        if (!lines[i])
            return -ENOMEM;
        len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s", lines[i]);
        free(lines[i]);
        lines[i] = NULL;
    }
    return write_file(d, name, buf, len);
}

static void test_db_import(T *t)
{
    _cleanup_(tmpdir_remove) TmpDir d = tmpdir_make();
    _cleanup_(store_db_closep) StoreDb *db = NULL;
    StoreDbOpenInfo info;
    Warnings w = {};
    char err[STORE_DB_ERR_MAX] = "", from[256], to[256];
    char *old[] = {legacy_line(3, "1-1", "succeeded", 100.5),
                   legacy_line(5, "1-2", "failed", 200.5)};
    char *cur[] = {legacy_line(7, "1-1", "succeeded", 3.5), strdup("{\"id\": 8, \"path\n"),
                   strdup("\n"), legacy_line(9, "1-2", "cancelled", 400.5),
                   legacy_line(11, "1-1", "downloading", 0)};
    json_object *job = NULL;
    uint64_t id = 0;
    Ids got = {};
    int r;

    CHECK(write_legacy(&d, STORE_DB_LEGACY_FILE ".1", old, ELEMENTSOF(old)) == 0);
    CHECK(write_legacy(&d, STORE_DB_LEGACY_FILE, cur, ELEMENTSOF(cur)) == 0);

    CHECK(store_db_open(d.path, collect_warning, &w, &db, &info, err, sizeof(err)) == 0);
    /* The broken line and the live job (a legacy file has only finished ones) are skipped. */
    CHECK(info.imported_legacy && info.imported == 4 && info.import_skipped == 2);
    CHECK(strstr(w.text, STORE_DB_LEGACY_FILE ":2: corrupt record skipped"));
    CHECK(!exists_in(&d, STORE_DB_LEGACY_FILE) && !exists_in(&d, STORE_DB_LEGACY_FILE ".1"));
    CHECK(exists_in(&d, STORE_DB_LEGACY_FILE ".imported") &&
          exists_in(&d, STORE_DB_LEGACY_FILE ".1.imported"));

    /* The ids are kept, and the columns come from the documents. */
    CHECK(store_db_get(db, 7, &job, err, sizeof(err)) == 0);
    r = strcmp(str_member(job, "path") ?: "", "1-1") == 0 &&
        strcmp(str_member(job, "state") ?: "", "succeeded") == 0 &&
        json_object_get_double(member(job, "created")) == 1.5 &&
        strcmp(str_member(member(job, "image"), "sha256") ?: "", SHA_A) == 0;
    json_object_put(job);
    job = NULL;
    CHECK(r);
    CHECK(store_db_get(db, 11, &job, err, sizeof(err)) == -ENOENT);
    CHECK(query_ids(db, &(StoreQuery){.ascending = true, .limit = 100}, &got, NULL) == 0);
    CHECK(ids_eq(&got, IDS(3, 5, 7, 9)));
    CHECK(query_ids(db, &(StoreQuery){.since = 150, .limit = 100}, &got, NULL) == 0);
    CHECK(ids_eq(&got, IDS(9, 5)));
    CHECK(query_ids(db, &(StoreQuery){.path = "1-2", .result = "failed", .limit = 100}, &got,
                    NULL) == 0);
    CHECK(ids_eq(&got, IDS(5)));
    CHECK(add_job(db, "1-1", "queued", SHA_A, 0, &id) == 0 && id > 9);
    db = store_db_close(db);

    /* Opened again: nothing more to import. */
    CHECK(store_db_open(d.path, NULL, NULL, &db, &info, err, sizeof(err)) == 0);
    CHECK(!info.imported_legacy && info.imported == 0 && info.import_skipped == 0);
    db = store_db_close(db);

    /* A file that came back (a rename that failed): its records are there already. */
    path_in(&d, STORE_DB_LEGACY_FILE ".imported", from, sizeof(from));
    path_in(&d, STORE_DB_LEGACY_FILE, to, sizeof(to));
    CHECK(rename(from, to) == 0);
    CHECK(store_db_open(d.path, NULL, NULL, &db, &info, err, sizeof(err)) == 0);
    CHECK(info.imported_legacy && info.imported == 0 && info.import_skipped == 4);
    CHECK(query_ids(db, &(StoreQuery){.ascending = true, .limit = 100}, &got, NULL) == 0);
    CHECK(ids_eq(&got, IDS(3, 5, 7, 9)));
}

/* ---- store-db: readers ---- */

static void test_db_readonly(T *t)
{
    _cleanup_(tmpdir_remove) TmpDir d = tmpdir_make();
    _cleanup_(store_db_closep) StoreDb *db = NULL;
    _cleanup_(store_db_closep) StoreDb *ro = NULL;
    StoreDbOpenInfo info;
    char err[STORE_DB_ERR_MAX] = "", path[256];
    uint64_t id[3], extra, last = 0;
    Ids got = {}, want = {};

    CHECK(store_db_open_readonly(d.path, NULL, NULL, &ro, err, sizeof(err)) == -ENOENT && !ro);
    CHECK(strstr(err, STORE_DB_FILE));

    CHECK(store_db_open(d.path, NULL, NULL, &db, &info, err, sizeof(err)) == 0);
    for (size_t i = 0; i < ELEMENTSOF(id); i++)
        CHECK(add_job(db, "1-1", "succeeded", SHA_A, 1000 + (int64_t)i, &id[i]) == 0);
    CHECK(add_job(db, "1-2", "downloading", SHA_A, 0, &extra) == 0);

    /* Beside the running writer. */
    CHECK(store_db_open_readonly(d.path, NULL, NULL, &ro, err, sizeof(err)) == 0);
    CHECK(query_ids(db, &(StoreQuery){.include_live = true, .limit = 100}, &want, NULL) == 0);
    CHECK(query_ids(ro, &(StoreQuery){.include_live = true, .limit = 100}, &got, &last) == 0);
    CHECK(ids_eq(&got, want.v, want.n) && want.n == 4);
    CHECK(add_job(db, "1-1", "failed", SHA_A, 2000, &extra) == 0);
    CHECK(query_ids(ro, &(StoreQuery){.limit = 1}, &got, NULL) == 0);
    CHECK(ids_eq(&got, IDS(extra)));
    CHECK(store_db_insert_job(
                  ro,
                  &(StoreJobRow){.path = "1-1", .state = "failed", .sha256 = SHA_A, .json = "{}"},
                  &extra, err, sizeof(err)) < 0);
    ro = store_db_close(ro);

    /* The writer gone. */
    CHECK(query_ids(db, &(StoreQuery){.include_live = true, .limit = 100}, &want, NULL) == 0);
    db = store_db_close(db);
    CHECK(store_db_open_readonly(d.path, NULL, NULL, &ro, err, sizeof(err)) == 0);
    CHECK(query_ids(ro, &(StoreQuery){.include_live = true, .limit = 100}, &got, NULL) == 0);
    CHECK(ids_eq(&got, want.v, want.n));
    ro = store_db_close(ro);

    /* ... and no write access to the directory (root has it anyway). */
    if (geteuid() != 0) {
        CHECK(chmod(d.path, 0555) == 0);
        CHECK(store_db_open_readonly(d.path, NULL, NULL, &ro, err, sizeof(err)) == 0);
        CHECK(query_ids(ro, &(StoreQuery){.include_live = true, .limit = 100}, &got, NULL) == 0);
        CHECK(ids_eq(&got, want.v, want.n));
        ro = store_db_close(ro);
        CHECK(chmod(d.path, 0700) == 0);
    } else
        printf("     (running as root: the read-only directory is not checked)\n");

    /* Not a store. */
    CHECK(write_file(&d, STORE_DB_FILE, "not a database, not at all, no no no no no no no", 48) ==
          0);
    path_in(&d, STORE_DB_FILE "-wal", path, sizeof(path));
    CHECK(unlink(path) == 0 || errno == ENOENT);
    CHECK(store_db_open_readonly(d.path, NULL, NULL, &ro, err, sizeof(err)) == -EBADMSG && !ro);
    CHECK(write_file(&d, STORE_DB_FILE, "", 0) == 0);
    CHECK(store_db_open_readonly(d.path, NULL, NULL, &ro, err, sizeof(err)) == -EBADMSG && !ro);
}

/* ---- store-db: plugs ---- */

typedef struct Plugs {
    StorePlug p[8];
    size_t n;
} Plugs;

static int collect_plug(void *userdata, const StorePlug *p)
{
    Plugs *plugs = userdata;

    if (plugs->n >= ELEMENTSOF(plugs->p))
        return -E2BIG;
    plugs->p[plugs->n++] = *p;
    return 0;
}

static StorePlug plug_of(uint64_t id, const char *boot, const char *path, unsigned dev)
{
    StorePlug p = {.id = id, .busnum = 1, .devnum = dev, .arrived_usec = 1000000u};

    snprintf(p.boot_id, sizeof(p.boot_id), "%s", boot);
    snprintf(p.path, sizeof(p.path), "%s", path);
    return p;
}

static void test_db_plugs(T *t)
{
    _cleanup_(tmpdir_remove) TmpDir d = tmpdir_make();
    _cleanup_(store_db_closep) StoreDb *db = NULL;
    StoreDbOpenInfo info;
    char err[STORE_DB_ERR_MAX] = "";
    StorePlug gone = plug_of(0, "boot-a", "1-1", 5), here = plug_of(0, "boot-a", "1-2", 6),
              other = plug_of(0, "boot-b", "1-1", 7), job = plug_of(77, "boot-a", "1-4", 9);
    Plugs got = {};

    CHECK(store_db_open(d.path, NULL, NULL, &db, &info, err, sizeof(err)) == 0);
    CHECK(store_db_put_plug(db, &gone, err, sizeof(err)) == 0 && gone.id > 0);
    CHECK(store_db_put_plug(db, &here, err, sizeof(err)) == 0 && here.id > gone.id);
    CHECK(store_db_put_plug(db, &other, err, sizeof(err)) == 0 && other.id > here.id);
    /* The auto-flash job's plug is known by the job's id from the start. */
    CHECK(store_db_put_plug(db, &job, err, sizeof(err)) == 0 && job.id == 77);

    /* Updates: one left, one re-enumerated and its job ended. */
    gone.left_usec = 2000000u;
    gone.job = 12;
    snprintf(gone.outcome, sizeof(gone.outcome), "succeeded");
    CHECK(store_db_put_plug(db, &gone, err, sizeof(err)) == 0);
    here.devnum = 16;
    here.job = 13;
    snprintf(here.outcome, sizeof(here.outcome), "failed");
    CHECK(store_db_put_plug(db, &here, err, sizeof(err)) == 0);
    job.job = 77;
    CHECK(store_db_put_plug(db, &job, err, sizeof(err)) == 0 && job.id == 77);

    CHECK(store_db_open_plugs(db, "boot-a", collect_plug, &got, err, sizeof(err)) == 0);
    CHECK(got.n == 2);
    CHECK(got.p[0].id == here.id && strcmp(got.p[0].path, "1-2") == 0);
    CHECK(got.p[0].busnum == 1 && got.p[0].devnum == 16 && got.p[0].job == 13);
    CHECK(strcmp(got.p[0].outcome, "failed") == 0 && strcmp(got.p[0].boot_id, "boot-a") == 0);
    CHECK(got.p[0].arrived_usec == 1000000u && got.p[0].left_usec == 0);
    CHECK(got.p[1].id == 77 && got.p[1].job == 77 && got.p[1].devnum == 9 && !got.p[1].outcome[0]);
    got.n = 0;
    CHECK(store_db_open_plugs(db, "boot-b", collect_plug, &got, err, sizeof(err)) == 0);
    CHECK(got.n == 1 && got.p[0].id == other.id && got.p[0].job == 0);
    got.n = 0;
    CHECK(store_db_open_plugs(db, "boot-c", collect_plug, &got, err, sizeof(err)) == 0);
    CHECK(got.n == 0);
}

/* ---- store.c: the thread and the loop ---- */

static void store_freep(Store **s)
{
    if (*s)
        *s = store_free(*s, 10 * USEC_PER_SEC);
}

/* Run the loop until done(userdata) or the deadline (CLOCK_MONOTONIC) passes. */
static bool run_until(sd_event *e, bool (*done)(void *userdata), void *userdata, uint64_t deadline)
{
    while (!done(userdata)) {
        if (now_usec(CLOCK_MONOTONIC) >= deadline || sd_event_run(e, 100 * USEC_PER_MSEC) < 0)
            return false;
    }
    return true;
}

static uint64_t seconds_from_now(unsigned s)
{
    return now_usec(CLOCK_MONOTONIC) + s * USEC_PER_SEC;
}

typedef struct Ready {
    unsigned calls;
    int r;
    char message[STORE_DB_ERR_MAX];
    bool created;
    unsigned recovered;
    size_t n_preloaded;
    uint64_t last_preloaded;
    Plugs plugs;
} Ready;

static void on_ready(void *userdata, const StoreReady *ready)
{
    Ready *w = userdata;
    size_t n = ready->preloaded ? json_object_array_length(ready->preloaded) : 0;

    w->calls++;
    w->r = ready->r;
    snprintf(w->message, sizeof(w->message), "%s", ready->message ? ready->message : "");
    w->created = ready->info && ready->info->created;
    w->recovered = ready->recovered;
    w->n_preloaded = n;
    w->last_preloaded =
            n ? (uint64_t)int_member(json_object_array_get_idx(ready->preloaded, n - 1), "id") : 0;
    w->plugs.n = 0;
    for (size_t i = 0; i < ready->n_plugs; i++)
        (void)collect_plug(&w->plugs, &ready->plugs[i]);
}

static bool ready_called(void *userdata)
{
    return ((Ready *)userdata)->calls > 0;
}

/* One answer to an insert or a query. */
typedef struct Answer {
    bool done;
    int r;
    char message[STORE_DB_ERR_MAX];
    uint64_t ids[8];
    size_t n;
    json_object *records;
    uint64_t last;
} Answer;

static void answer_reset(Answer *a)
{
    json_object_put(a->records);
    *a = (Answer){};
}

static void on_inserted(void *userdata, int r, const char *message, const uint64_t *ids, size_t n)
{
    Answer *a = userdata;

    a->done = true;
    a->r = r;
    snprintf(a->message, sizeof(a->message), "%s", message ? message : "");
    a->n = 0;
    for (size_t i = 0; r >= 0 && i < n && i < ELEMENTSOF(a->ids); i++)
        a->ids[a->n++] = ids[i];
}

static void on_records(void *userdata, int r, const char *message, json_object *records,
                       uint64_t last)
{
    Answer *a = userdata;

    a->done = true;
    a->r = r;
    snprintf(a->message, sizeof(a->message), "%s", message ? message : "");
    json_object_put(a->records);
    a->records = records;
    a->last = last;
}

static bool answered(void *userdata)
{
    return ((Answer *)userdata)->done;
}

/* The state of job id as the store's thread reads it; NULL when that fails. */
static const char *state_via_store(sd_event *e, Store *s, uint64_t id, Answer *a, uint64_t deadline)
{
    answer_reset(a);
    if (store_get(s, id, on_records, a) < 0 || !run_until(e, answered, a, deadline) || a->r < 0 ||
        json_object_array_length(a->records) != 1)
        return NULL;
    return str_member(json_object_array_get_idx(a->records, 0), "state");
}

static int put_job(Store *s, uint64_t id, const char *path, const char *state, int64_t finished)
{
    json_object *doc = job_object(path, state, SHA_A, 1, is_final(state) ? finished : 0);
    StoreJobRow row = row_of(id, doc, path, state, SHA_A, finished);
    int r = store_put_job(s, &row);

    json_object_put(doc);
    return r;
}

static void test_store_thread(T *t)
{
    _cleanup_(tmpdir_remove) TmpDir d = tmpdir_make();
    _cleanup_(sd_event_unrefp) sd_event *e = NULL;
    _cleanup_(store_freep) Store *s = NULL;
    _cleanup_(store_db_closep) StoreDb *db = NULL;
    _cleanup_(answer_reset) Answer a = {};
    uint64_t deadline = seconds_from_now(20), ids[3];
    StorePlug plug = plug_of(0, "boot-a", "1-1", 5);
    json_object *docs[3];
    StoreJobRow rows[3];
    Ready ready = {};
    StoreStats stats;
    StoreDbOpenInfo info;
    Plugs plugs = {};
    char err[STORE_DB_ERR_MAX] = "";
    json_object *job = NULL;
    uint64_t commits;
    int r;

    CHECK(sd_event_new(&e) >= 0);
    CHECK(store_new(e,
                    &(StoreOptions){.dir = d.path,
                                    .boot_id = "boot-a",
                                    .ready = on_ready,
                                    .userdata = &ready},
                    &s) == 0);
    CHECK(run_until(e, ready_called, &ready, deadline));
    CHECK(ready.calls == 1 && ready.r == 0 && ready.created && ready.recovered == 0);
    CHECK(ready.n_preloaded == 0 && ready.plugs.n == 0);
    store_get_stats(s, &stats);
    CHECK(stats.open && stats.pending == 0 && stats.error == 0);

    /* Three new jobs in one insert, the first the plug's auto-flash job. */
    for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
        docs[i] = job_object(i == 1 ? "1-2" : "1-1", "queued", SHA_A, 1, 0);
        rows[i] = row_of(0, docs[i], i == 1 ? "1-2" : "1-1", "queued", SHA_A, 0);
    }
    r = store_insert_jobs(s, rows, ELEMENTSOF(rows), &plug, on_inserted, &a);
    for (size_t i = 0; i < ELEMENTSOF(docs); i++)
        json_object_put(docs[i]);
    CHECK(r == 0);
    CHECK(run_until(e, answered, &a, deadline));
    CHECK(a.r == 0 && a.n == 3 && a.ids[0] > 0 && a.ids[1] > a.ids[0] && a.ids[2] > a.ids[1]);
    memcpy(ids, a.ids, sizeof(ids));
    store_get_stats(s, &stats);
    commits = stats.commits;
    CHECK(commits > 0);

    answer_reset(&a);
    CHECK(store_query(s, &(StoreQuery){.include_live = true, .limit = 10}, on_records, &a) == 0);
    CHECK(run_until(e, answered, &a, deadline));
    CHECK(a.r == 0 && json_object_array_length(a.records) == 3 && a.last == ids[0]);
    for (size_t i = 0; i < 3; i++)
        CHECK(int_member(json_object_array_get_idx(a.records, i), "id") == (int64_t)ids[2 - i]);

    /* Two versions of one job: the last one is what is read back. */
    CHECK(put_job(s, ids[0], "1-1", "downloading", 0) == 0);
    CHECK(put_job(s, ids[0], "1-1", "succeeded", 2000) == 0);
    CHECK(put_job(s, 0, "1-1", "succeeded", 2000) == -EINVAL);
    CHECK_STREQ(state_via_store(e, s, ids[0], &a, deadline), "succeeded");
    store_get_stats(s, &stats);
    CHECK(stats.commits > commits && stats.pending == 0 && stats.error == 0);

    /* A query that filters, through the thread. */
    answer_reset(&a);
    CHECK(store_query(s, &(StoreQuery){.result = "succeeded", .limit = 10}, on_records, &a) == 0);
    CHECK(run_until(e, answered, &a, deadline));
    CHECK(a.r == 0 && json_object_array_length(a.records) == 1);
    answer_reset(&a);
    CHECK(store_get(s, ids[2] + 10, on_records, &a) == 0);
    CHECK(run_until(e, answered, &a, deadline));
    CHECK(a.r == -ENOENT && !a.records);

    /* Written just before store_free: flushed by it. */
    CHECK(put_job(s, ids[1], "1-2", "failed", 3000) == 0);
    s = store_free(s, 10 * USEC_PER_SEC);
    CHECK(store_db_open(d.path, NULL, NULL, &db, &info, err, sizeof(err)) == 0);
    CHECK(store_db_get(db, ids[1], &job, err, sizeof(err)) == 0);
    r = strcmp(str_member(job, "state") ?: "", "failed") == 0;
    json_object_put(job);
    CHECK(r);
    /* The plug was written with the jobs, under the first job's id. */
    CHECK(store_db_open_plugs(db, "boot-a", collect_plug, &plugs, err, sizeof(err)) == 0);
    CHECK(plugs.n == 1 && plugs.p[0].id == ids[0] && plugs.p[0].job == ids[0]);
    db = store_db_close(db);

    /* Started again: the queued job is interrupted; the newest jobs and the plug come back. */
    ready = (Ready){};
    CHECK(store_new(e,
                    &(StoreOptions){.dir = d.path,
                                    .boot_id = "boot-a",
                                    .ready = on_ready,
                                    .userdata = &ready},
                    &s) == 0);
    CHECK(run_until(e, ready_called, &ready, deadline));
    CHECK(ready.r == 0 && !ready.created && ready.recovered == 1);
    CHECK(ready.n_preloaded == 3 && ready.last_preloaded == ids[2]);
    CHECK(ready.plugs.n == 1 && ready.plugs.p[0].id == ids[0]);
    store_get_stats(s, &stats);
    CHECK(stats.interrupted == 1);
    CHECK_STREQ(state_via_store(e, s, ids[2], &a, deadline), "interrupted");
}

static void test_store_open_fails(T *t)
{
    _cleanup_(tmpdir_remove) TmpDir d = tmpdir_make();
    _cleanup_(sd_event_unrefp) sd_event *e = NULL;
    _cleanup_(store_freep) Store *s = NULL;
    _cleanup_(answer_reset) Answer a = {};
    uint64_t deadline = seconds_from_now(15);
    char missing[128];
    json_object *doc = job_object("1-1", "queued", SHA_A, 1, 0);
    StoreJobRow row = row_of(0, doc, "1-1", "queued", SHA_A, 0);
    Ready ready = {};
    StoreStats stats;
    int r;

    path_in(&d, "state", missing, sizeof(missing));
    CHECK(sd_event_new(&e) >= 0);
    CHECK(store_new(e, &(StoreOptions){.dir = missing, .ready = on_ready, .userdata = &ready},
                    &s) == 0);
    CHECK(run_until(e, ready_called, &ready, deadline));
    CHECK(ready.calls == 1 && ready.r < 0 && strstr(ready.message, missing));
    store_get_stats(s, &stats);
    CHECK(!stats.open && stats.error < 0);

    /* Inserts are refused while it is not open. */
    r = store_insert_jobs(s, &row, 1, NULL, on_inserted, &a);
    json_object_put(doc);
    CHECK(r == 0);
    CHECK(run_until(e, answered, &a, deadline));
    CHECK(a.r < 0 && strstr(a.message, "not open"));

    /* It keeps trying: the directory appears, the store opens. */
    CHECK(mkdir(missing, 0700) == 0);
    ready.calls = 0;
    CHECK(run_until(e, ready_called, &ready, deadline));
    CHECK(ready.r == 0 && ready.created);
    store_get_stats(s, &stats);
    CHECK(stats.open && stats.error == 0);
}

typedef struct StatsWait {
    Store *store;
    bool want_error; /* true: until a write failed with a row kept; false: until all written */
} StatsWait;

static bool stats_reached(void *userdata)
{
    StatsWait *w = userdata;
    StoreStats st;

    store_get_stats(w->store, &st);
    return w->want_error ? st.error < 0 && st.pending > 0 : st.error == 0 && st.pending == 0;
}

static void test_store_retry(T *t)
{
    _cleanup_(tmpdir_remove) TmpDir d = tmpdir_make();
    _cleanup_(sd_event_unrefp) sd_event *e = NULL;
    _cleanup_(store_freep) Store *s = NULL;
    _cleanup_(answer_reset) Answer a = {};
    _cleanup_(raw_closep) sqlite3 *locker = NULL;
    uint64_t deadline = seconds_from_now(15), id;
    json_object *doc = job_object("1-1", "queued", SHA_A, 1, 0);
    StoreJobRow row = row_of(0, doc, "1-1", "queued", SHA_A, 0);
    StatsWait w;
    Ready ready = {};
    StoreStats stats;
    int r;

    CHECK(sd_event_new(&e) >= 0);
    CHECK(store_new(e, &(StoreOptions){.dir = d.path, .ready = on_ready, .userdata = &ready}, &s) ==
          0);
    CHECK(run_until(e, ready_called, &ready, deadline) && ready.r == 0);
    r = store_insert_jobs(s, &row, 1, NULL, on_inserted, &a);
    json_object_put(doc);
    CHECK(r == 0);
    CHECK(run_until(e, answered, &a, deadline) && a.r == 0 && a.n == 1);
    id = a.ids[0];

    /* A stray process holds the write lock: the write fails, the row waits. */
    locker = raw_open(&d, STORE_DB_FILE, SQLITE_OPEN_READWRITE);
    CHECK(locker);
    CHECK(raw_exec(locker, "BEGIN EXCLUSIVE") == SQLITE_OK);
    CHECK(put_job(s, id, "1-1", "downloading", 0) == 0);
    w = (StatsWait){.store = s, .want_error = true};
    CHECK(run_until(e, stats_reached, &w, deadline));
    store_get_stats(s, &stats);
    CHECK(stats.pending == 1 && stats.error == -EBUSY && stats.open);
    CHECK(strstr(stats.error_message, STORE_DB_FILE));
    /* A newer version of the same job replaces the waiting one. */
    CHECK(put_job(s, id, "1-1", "succeeded", 2000) == 0);
    store_get_stats(s, &stats);
    CHECK(stats.pending == 1);

    /* The lock goes: a retry writes it. */
    CHECK(raw_exec(locker, "COMMIT") == SQLITE_OK);
    raw_closep(&locker);
    w.want_error = false;
    CHECK(run_until(e, stats_reached, &w, deadline));
    store_get_stats(s, &stats);
    CHECK(stats.pending == 0 && stats.error == 0 && !stats.error_message[0]);
    CHECK_STREQ(state_via_store(e, s, id, &a, deadline), "succeeded");
}

int main(void)
{
    log_force_stderr();
    RUN(test_db_open_ids);
    RUN(test_db_query_filters);
    RUN(test_db_query_since_days);
    RUN(test_db_query_paging);
    RUN(test_db_damaged_rows);
    RUN(test_db_recover);
    RUN(test_db_corrupt_file);
    RUN(test_db_foreign_file);
    RUN(test_db_newer_schema);
    RUN(test_db_import);
    RUN(test_db_readonly);
    RUN(test_db_plugs);
    RUN(test_store_thread);
    RUN(test_store_open_fails);
    RUN(test_store_retry);
    return test_summary();
}
