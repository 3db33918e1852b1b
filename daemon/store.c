/* SPDX-License-Identifier: MIT */
/*
 * The store's thread: a queue of operations in, a queue of answers out, and
 * the rows waiting to be written, all under one mutex that is never held
 * while SQLite runs. See store.h.
 */
#include "store.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "job-json.h"
#include "log.h"
#include "timeutil.h"
#include "util.h"

typedef enum OpType {
    OP_READY,
    OP_INSERT,
    OP_QUERY,
    OP_GET,
    OP_PAGE,
} OpType;

/* A row owned by the store: its strings copied. */
typedef struct Row {
    StoreJobRow row;
    char *path, *state, *sha256, *mac, *json;
} Row;

typedef struct Op {
    OpType type;
    /* in */
    Row *rows;
    size_t n_rows;
    bool has_plug;
    StorePlug plug;
    StoreQuery query;
    char *q_path, *q_result, *q_sha256, *q_mac;
    uint64_t get_id;
    StoreInsertFn insert_fn;
    StoreQueryFn query_fn;
    StorePageFn page_fn;
    size_t max_bytes;
    void *userdata;
    /* out */
    int r;
    char message[STORE_DB_ERR_MAX];
    uint64_t *ids;
    json_object *records;
    uint64_t last;
    char *page;
    /* OP_READY */
    StoreDbOpenInfo info;
    unsigned recovered;
    StorePlug *plugs;
    size_t n_plugs;
    struct Op *next;
} Op;

typedef struct OpList {
    Op *head, *tail;
    size_t n;
} OpList;

struct Store {
    sd_event *event;
    sd_event_source *done_source;
    int efd;
    char *dir, *boot_id;
    uint64_t keep_jobs;
    StoreReadyFn ready_fn;
    void *ready_userdata;

    pthread_t thread;
    bool thread_started;
    pthread_mutex_t lock;
    pthread_cond_t wake;   /* work queued, or closing */
    pthread_cond_t exited; /* the thread is done */
    /* Under lock: */
    OpList ops, done;
    Row *dirty_jobs; /* STORE_PENDING_MAX slots; row.id 0 = free */
    StorePlug *dirty_plugs;
    size_t n_dirty_jobs, n_dirty_plugs;
    bool closing, thread_done;
    StoreStats stats;

    /* The thread's own. */
    StoreDb *db;
    uint64_t retry_at; /* CLOCK_MONOTONIC: no write round before this after a failure */
};

/* ---- rows ---- */

static void row_clear(Row *r)
{
    free(r->path);
    free(r->state);
    free(r->sha256);
    free(r->mac);
    free(r->json);
    *r = (Row){};
}

static int row_copy(Row *dst, const StoreJobRow *src)
{
    *dst = (Row){.row = *src};
    dst->path = strdup(src->path ? src->path : "");
    dst->state = strdup(src->state ? src->state : "");
    dst->sha256 = strdup(src->sha256 ? src->sha256 : "");
    dst->mac = src->mac ? strdup(src->mac) : NULL;
    dst->json = strdup(src->json ? src->json : "");
    if (!dst->path || !dst->state || !dst->sha256 || !dst->json || (src->mac && !dst->mac)) {
        row_clear(dst);
        return -ENOMEM;
    }
    dst->row.path = dst->path;
    dst->row.state = dst->state;
    dst->row.sha256 = dst->sha256;
    dst->row.mac = dst->mac;
    dst->row.json = dst->json;
    return 0;
}

/* Swap in place: the pointers inside row follow the strings. */
static void row_move(Row *dst, Row *src)
{
    *dst = *src;
    *src = (Row){};
}

static void op_free(Op *op)
{
    if (!op)
        return;
    for (size_t i = 0; i < op->n_rows; i++)
        row_clear(&op->rows[i]);
    free(op->rows);
    free(op->q_path);
    free(op->q_result);
    free(op->q_sha256);
    free(op->q_mac);
    free(op->ids);
    free(op->plugs);
    json_object_put(op->records);
    free(op->page);
    free(op);
}

static void list_push(OpList *l, Op *op)
{
    op->next = NULL;
    if (l->tail)
        l->tail->next = op;
    else
        l->head = op;
    l->tail = op;
    l->n++;
}

static OpList list_take(OpList *l)
{
    OpList r = *l;

    *l = (OpList){};
    return r;
}

/* ---- the thread ---- */

static void on_db_warning(void *userdata, const char *message)
{
    log_warning("%s", message);
}

static void post_done(Store *s, Op *op)
{
    pthread_mutex_lock(&s->lock);
    list_push(&s->done, op);
    pthread_mutex_unlock(&s->lock);
    (void)eventfd_write(s->efd, 1);
}

static void set_result(Store *s, int r, const char *message)
{
    pthread_mutex_lock(&s->lock);
    s->stats.error = r < 0 ? r : 0;
    snprintf(s->stats.error_message, sizeof(s->stats.error_message), "%s",
             r < 0 && message ? message : "");
    pthread_mutex_unlock(&s->lock);
}

static int collect_plug(void *userdata, const StorePlug *p)
{
    Op *op = userdata;
    StorePlug *n = reallocarray(op->plugs, op->n_plugs + 1, sizeof(*n));

    if (!n)
        return -ENOMEM;
    op->plugs = n;
    op->plugs[op->n_plugs++] = *p;
    return 0;
}

static int collect_record(void *userdata, json_object *job)
{
    return json_object_array_add(userdata, json_object_get(job)) < 0 ? -ENOMEM : 0;
}

/* Open, recover, read the plugs and the newest jobs: what OP_READY carries. */
static int thread_open(Store *s, Op *op)
{
    uint64_t now = now_usec(CLOCK_REALTIME);
    int r;

    r = store_db_open(s->dir, on_db_warning, s, &s->db, &op->info, op->message,
                      sizeof(op->message));
    if (r < 0)
        return r;
    r = store_db_begin(s->db, op->message, sizeof(op->message));
    if (r >= 0)
        r = store_db_recover(s->db, now, NULL, NULL, &op->recovered, op->message,
                             sizeof(op->message));
    if (r >= 0)
        r = store_db_commit(s->db, op->message, sizeof(op->message));
    if (r < 0) {
        store_db_rollback(s->db);
        goto fail;
    }
    r = store_db_open_plugs(s->db, s->boot_id, collect_plug, op, op->message, sizeof(op->message));
    if (r < 0)
        goto fail;
    op->records = json_object_new_array();
    if (!op->records) {
        r = -ENOMEM;
        goto fail;
    }
    r = store_db_query(s->db, &(StoreQuery){.limit = STORE_PRELOAD_MAX}, collect_record,
                       op->records, NULL, op->message, sizeof(op->message));
    if (r < 0)
        goto fail;
    json_array_reverse(op->records); /* newest last */
    return 0;
fail:
    s->db = store_db_close(s->db);
    return r;
}

/* Take every dirty row; the slots are free again. */
static void take_dirty(Store *s, Row **ret_jobs, size_t *ret_n_jobs, StorePlug **ret_plugs,
                       size_t *ret_n_plugs)
{
    Row *jobs = NULL;
    StorePlug *plugs = NULL;
    size_t nj = 0, np = 0;

    if (s->n_dirty_jobs && (jobs = calloc(s->n_dirty_jobs, sizeof(*jobs))))
        for (size_t i = 0; i < STORE_PENDING_MAX; i++)
            if (s->dirty_jobs[i].row.id)
                row_move(&jobs[nj++], &s->dirty_jobs[i]);
    if (s->n_dirty_plugs && (plugs = calloc(s->n_dirty_plugs, sizeof(*plugs))))
        for (size_t i = 0; i < STORE_PENDING_MAX; i++)
            if (s->dirty_plugs[i].id) {
                plugs[np++] = s->dirty_plugs[i];
                s->dirty_plugs[i].id = 0;
            }
    if (jobs)
        s->n_dirty_jobs = 0;
    if (plugs)
        s->n_dirty_plugs = 0;
    *ret_jobs = jobs;
    *ret_n_jobs = nj;
    *ret_plugs = plugs;
    *ret_n_plugs = np;
}

static Row *dirty_job_slot(Store *s, uint64_t id, bool *ret_new);
static StorePlug *dirty_plug_slot(Store *s, uint64_t id, bool *ret_new);

/* A failed round: put back what nobody replaced meanwhile. Under lock. */
static void give_back(Store *s, Row *jobs, size_t nj, StorePlug *plugs, size_t np)
{
    for (size_t i = 0; i < nj; i++) {
        bool fresh;
        Row *slot = dirty_job_slot(s, jobs[i].row.id, &fresh);

        if (slot && fresh)
            row_move(slot, &jobs[i]);
        else
            row_clear(&jobs[i]); /* a newer version waits, or no room (counted) */
    }
    for (size_t i = 0; i < np; i++) {
        bool fresh;
        StorePlug *slot = dirty_plug_slot(s, plugs[i].id, &fresh);

        if (slot && fresh)
            *slot = plugs[i];
    }
}

/* One transaction for every pending row. */
static void thread_write_dirty(Store *s)
{
    char message[STORE_DB_ERR_MAX] = "";
    Row *jobs;
    StorePlug *plugs;
    size_t nj, np;
    int r;

    pthread_mutex_lock(&s->lock);
    take_dirty(s, &jobs, &nj, &plugs, &np);
    pthread_mutex_unlock(&s->lock);
    if (nj + np == 0)
        goto out;
    r = store_db_begin(s->db, message, sizeof(message));
    for (size_t i = 0; i < nj && r >= 0; i++) {
        r = store_db_update_job(s->db, &jobs[i].row, message, sizeof(message));
        if (r == -ENOENT || r == -EINVAL) {
            /* Nothing to retry: a row that cannot be written as it is. */
            log_error("%s", message);
            r = 0;
        }
    }
    for (size_t i = 0; i < np && r >= 0; i++)
        r = store_db_put_plug(s->db, &plugs[i], message, sizeof(message));
    if (r >= 0)
        r = store_db_commit(s->db, message, sizeof(message));
    pthread_mutex_lock(&s->lock);
    if (r < 0) {
        store_db_rollback(s->db);
        give_back(s, jobs, nj, plugs, np);
        s->retry_at = now_usec(CLOCK_MONOTONIC) + STORE_RETRY_USEC;
        if (s->stats.error != r)
            log_error("cannot write %zu job record%s: %s; kept in memory, retrying every %u s", nj,
                      nj == 1 ? "" : "s", message, STORE_RETRY_USEC / 1000000u);
        s->stats.error = r;
        snprintf(s->stats.error_message, sizeof(s->stats.error_message), "%s", message);
    } else {
        if (s->stats.error)
            log_notice("job records written again (%zu waited)", nj);
        s->stats.error = 0;
        s->stats.error_message[0] = '\0';
        s->stats.commits = store_db_commits(s->db);
        s->retry_at = 0;
    }
    pthread_mutex_unlock(&s->lock);
    for (size_t i = 0; i < nj; i++)
        row_clear(&jobs[i]);
out:
    free(jobs);
    free(plugs);
}

static void thread_insert(Store *s, Op *op)
{
    int r;

    if (!s->db) {
        pthread_mutex_lock(&s->lock);
        op->r = s->stats.error ? s->stats.error : -EIO;
        snprintf(op->message, sizeof(op->message), "the job store is not open: %.400s",
                 s->stats.error_message);
        pthread_mutex_unlock(&s->lock);
        return;
    }
    op->ids = calloc(op->n_rows ? op->n_rows : 1, sizeof(*op->ids));
    if (!op->ids) {
        op->r = -ENOMEM;
        return;
    }
    r = store_db_begin(s->db, op->message, sizeof(op->message));
    for (size_t i = 0; i < op->n_rows && r >= 0; i++)
        r = store_db_insert_job(s->db, &op->rows[i].row, &op->ids[i], op->message,
                                sizeof(op->message));
    if (r >= 0 && op->has_plug) {
        /* The plug is known by its auto-flash job's id, and that job is its job. */
        op->plug.id = op->plug.job = op->ids[0];
        r = store_db_put_plug(s->db, &op->plug, op->message, sizeof(op->message));
    }
    if (r >= 0)
        r = store_db_commit(s->db, op->message, sizeof(op->message));
    if (r < 0)
        store_db_rollback(s->db);
    op->r = r;
    pthread_mutex_lock(&s->lock);
    if (r >= 0) {
        s->stats.commits = store_db_commits(s->db);
        /* The disk takes writes again; rows still waiting say otherwise themselves. */
        if (!s->n_dirty_jobs && !s->n_dirty_plugs) {
            s->stats.error = 0;
            s->stats.error_message[0] = '\0';
        }
    }
    pthread_mutex_unlock(&s->lock);
    if (r < 0)
        set_result(s, r, op->message);
}

/* The records (in query order) as a page's text: cut at max_bytes, newest last. */
static int page_text(Op *op)
{
    size_t n = json_object_array_length(op->records), k = 0, used = 0, len = 0;
    bool descending = !(op->query.ascending || op->query.after), full;
    _cleanup_free_ const char **texts = calloc(n + 1, sizeof(*texts));
    char *page, *p;

    if (!texts)
        return -ENOMEM;
    for (; k < n; k++) {
        texts[k] = json_object_to_json_string_ext(json_object_array_get_idx(op->records, k),
                                                  JSON_C_TO_STRING_PLAIN |
                                                          JSON_C_TO_STRING_NOSLASHESCAPE);
        if (!texts[k])
            return -ENOMEM;
        if (used + strlen(texts[k]) + 1 > op->max_bytes && k > 0)
            break;
        used += strlen(texts[k]) + 1;
    }
    /* Full: the next page may hold more; its cursor is the last record taken. */
    full = k > 0 && (k < n || n >= op->query.limit);
    if (k < n || !full)
        op->last = k > 0 ? (uint64_t)json_object_get_int64(json_object_object_get(
                                   json_object_array_get_idx(op->records, k - 1), "id"))
                         : 0;
    page = p = malloc(used + 64);
    if (!page)
        return -ENOMEM;
    p += sprintf(p, "{\"records\":[");
    for (size_t i = 0; i < k; i++) {
        const char *t = texts[descending ? k - 1 - i : i];

        len = strlen(t);
        if (i)
            *p++ = ',';
        memcpy(p, t, len);
        p += len;
    }
    if (full && op->last)
        sprintf(p, "],\"next\":%" PRIu64 "}", op->last);
    else
        sprintf(p, "],\"next\":null}");
    op->page = page;
    return 0;
}

static void thread_query(Store *s, Op *op)
{
    if (!s->db) {
        op->r = -EIO;
        snprintf(op->message, sizeof(op->message), "the job store is not open");
        return;
    }
    op->records = json_object_new_array();
    if (!op->records) {
        op->r = -ENOMEM;
        return;
    }
    if (op->type == OP_GET) {
        json_object *job = NULL;

        op->r = store_db_get(s->db, op->get_id, &job, op->message, sizeof(op->message));
        if (op->r >= 0)
            json_object_array_add(op->records, job);
        return;
    }
    op->r = store_db_query(s->db, &op->query, collect_record, op->records, &op->last, op->message,
                           sizeof(op->message));
    if (op->r >= 0 && op->type == OP_PAGE)
        op->r = page_text(op);
}

static void thread_prune(Store *s)
{
    char message[STORE_DB_ERR_MAX];
    unsigned n = 0;
    int r;

    if (!s->keep_jobs || !s->db)
        return;
    r = store_db_prune(s->db, s->keep_jobs, STORE_PRUNE_BATCH, &n, message, sizeof(message));
    if (r < 0)
        log_warning("%s", message);
    else if (n)
        log_debug("job store: %u old jobs pruned (history-max-jobs=%" PRIu64 ")", n, s->keep_jobs);
}

/* Try to open until it works or the store closes; each change is reported. */
static void thread_try_open(Store *s, int *last_r)
{
    Op *op = calloc(1, sizeof(*op));
    int r;

    if (!op)
        return;
    op->type = OP_READY;
    r = thread_open(s, op);
    op->r = r;
    pthread_mutex_lock(&s->lock);
    s->stats.open = r >= 0;
    s->stats.interrupted = op->recovered;
    if (s->db)
        s->stats.commits = store_db_commits(s->db);
    pthread_mutex_unlock(&s->lock);
    set_result(s, r, op->message);
    if (r < 0 && r == *last_r) {
        op_free(op); /* the same failure again: said already */
        return;
    }
    *last_r = r;
    post_done(s, op);
}

static void *store_thread(void *userdata)
{
    Store *s = userdata;
    int open_r = 1;
    unsigned rounds = 0;

    for (;;) {
        OpList ops;
        bool closing, write;
        uint64_t now;

        if (!s->db)
            thread_try_open(s, &open_r);
        pthread_mutex_lock(&s->lock);
        for (;;) {
            now = now_usec(CLOCK_MONOTONIC);
            write = (s->n_dirty_jobs || s->n_dirty_plugs) && s->db &&
                    (s->closing || now >= s->retry_at);
            if (s->closing || s->ops.n || write)
                break;
            if (!s->db || s->retry_at) {
                struct timespec ts;
                uint64_t until = s->db ? s->retry_at : now + STORE_RETRY_USEC;

                clock_gettime(CLOCK_MONOTONIC, &ts);
                until = until > now ? until - now : 0;
                ts.tv_sec += (time_t)(until / 1000000u);
                ts.tv_nsec += (long)(until % 1000000u) * 1000;
                if (ts.tv_nsec >= 1000000000L) {
                    ts.tv_sec++;
                    ts.tv_nsec -= 1000000000L;
                }
                if (pthread_cond_timedwait(&s->wake, &s->lock, &ts) == ETIMEDOUT && !s->db)
                    break;
            } else
                pthread_cond_wait(&s->wake, &s->lock);
        }
        ops = list_take(&s->ops);
        closing = s->closing;
        pthread_mutex_unlock(&s->lock);

        /* Pending rows first: a query then sees every job the loop has finished. */
        if (write)
            thread_write_dirty(s);
        while (ops.head) {
            Op *op = ops.head;

            ops.head = op->next;
            if (op->type == OP_INSERT)
                thread_insert(s, op);
            else
                thread_query(s, op);
            post_done(s, op);
        }
        if (write && ++rounds % 64 == 0)
            thread_prune(s);
        if (closing)
            break;
    }
    /* One last round for what came in while closing. */
    if (s->db)
        thread_write_dirty(s);
    pthread_mutex_lock(&s->lock);
    s->thread_done = true;
    pthread_cond_broadcast(&s->exited);
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* ---- the loop's side ---- */

static void dispatch(Store *s, Op *op)
{
    switch (op->type) {
    case OP_READY:
        if (s->ready_fn)
            s->ready_fn(s->ready_userdata, &(StoreReady){
                                                   .r = op->r,
                                                   .message = op->message,
                                                   .info = &op->info,
                                                   .recovered = op->recovered,
                                                   .preloaded = op->records,
                                                   .plugs = op->plugs,
                                                   .n_plugs = op->n_plugs,
                                           });
        break;
    case OP_INSERT:
        if (op->insert_fn)
            op->insert_fn(op->userdata, op->r, op->message, op->ids, op->n_rows);
        break;
    case OP_PAGE:
        if (op->page_fn)
            op->page_fn(op->userdata, op->r, op->message, op->r >= 0 ? TAKE_PTR(op->page) : NULL);
        break;
    case OP_QUERY:
    case OP_GET:
        if (op->query_fn) {
            json_object *records = TAKE_PTR(op->records);

            if (op->r < 0) {
                json_object_put(records);
                records = NULL;
            }
            op->query_fn(op->userdata, op->r, op->message, records, op->last);
        }
        break;
    }
}

static void drain(Store *s)
{
    OpList done;

    pthread_mutex_lock(&s->lock);
    done = list_take(&s->done);
    pthread_mutex_unlock(&s->lock);
    while (done.head) {
        Op *op = done.head;

        done.head = op->next;
        dispatch(s, op);
        op_free(op);
    }
}

static int on_done(sd_event_source *src, int fd, uint32_t revents, void *userdata)
{
    eventfd_t v;

    (void)eventfd_read(fd, &v);
    drain(userdata);
    return 0;
}

int store_new(sd_event *e, const StoreOptions *o, Store **ret)
{
    Store *s = calloc(1, sizeof(*s));
    int r;

    if (!s)
        return -ENOMEM;
    s->efd = -1;
    pthread_mutex_init(&s->lock, NULL);
    {
        pthread_condattr_t a;

        pthread_condattr_init(&a);
        pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
        pthread_cond_init(&s->wake, &a);
        pthread_cond_init(&s->exited, &a);
        pthread_condattr_destroy(&a);
    }
    s->dir = strdup(o->dir);
    s->boot_id = strdup(o->boot_id ? o->boot_id : "");
    s->dirty_jobs = calloc(STORE_PENDING_MAX, sizeof(*s->dirty_jobs));
    s->dirty_plugs = calloc(STORE_PENDING_MAX, sizeof(*s->dirty_plugs));
    s->keep_jobs = o->keep_jobs;
    s->ready_fn = o->ready;
    s->ready_userdata = o->userdata;
    s->event = sd_event_ref(e);
    if (!s->dir || !s->boot_id || !s->dirty_jobs || !s->dirty_plugs) {
        r = -ENOMEM;
        goto fail;
    }
    s->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (s->efd < 0) {
        r = -errno;
        goto fail;
    }
    r = sd_event_add_io(e, &s->done_source, s->efd, EPOLLIN, on_done, s);
    if (r < 0)
        goto fail;
    (void)sd_event_source_set_description(s->done_source, "store-answers");
    r = -pthread_create(&s->thread, NULL, store_thread, s);
    if (r < 0)
        goto fail;
    s->thread_started = true;
    *ret = s;
    return 0;
fail:
    store_free(s, 0);
    return r;
}

/* Rows that never reached the disk: said once, loudly, with their ids. */
static void report_lost(Store *s)
{
    char ids[512] = "";
    size_t n = 0, len = 0;

    for (size_t i = 0; i < STORE_PENDING_MAX; i++) {
        if (!s->dirty_jobs[i].row.id)
            continue;
        n++;
        if (len < sizeof(ids) - 32)
            len += (size_t)snprintf(ids + len, sizeof(ids) - len, "%s%" PRIu64 " (%s)",
                                    len ? ", " : "", s->dirty_jobs[i].row.id,
                                    s->dirty_jobs[i].row.state);
    }
    if (n)
        log_error("LOST: the last state of %zu job%s could not be written to %s/%s (%s): %s%s", n,
                  n == 1 ? "" : "s", s->dir, STORE_DB_FILE,
                  s->stats.error_message[0] ? s->stats.error_message : "the store did not answer",
                  ids, len >= sizeof(ids) - 32 ? ", ..." : "");
    if (s->stats.dropped)
        log_error("LOST: %" PRIu64 " job record%s were dropped earlier (more than %u waited)",
                  s->stats.dropped, s->stats.dropped == 1 ? "" : "s", STORE_PENDING_MAX);
}

Store *store_free(Store *s, uint64_t timeout_usec)
{
    bool joined = true;

    if (!s)
        return NULL;
    if (s->thread_started) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += (time_t)(timeout_usec / 1000000u);
        ts.tv_nsec += (long)(timeout_usec % 1000000u) * 1000;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&s->lock);
        s->closing = true;
        pthread_cond_signal(&s->wake);
        while (!s->thread_done)
            if (pthread_cond_timedwait(&s->exited, &s->lock, &ts) == ETIMEDOUT)
                break;
        joined = s->thread_done;
        pthread_mutex_unlock(&s->lock);
        if (!joined) {
            /* A hung disk: the thread keeps the store; the process exit ends both. */
            log_error("the job store did not finish writing within %" PRIu64 " ms",
                      timeout_usec / 1000u);
            pthread_mutex_lock(&s->lock);
            report_lost(s);
            pthread_mutex_unlock(&s->lock);
            return NULL;
        }
        pthread_join(s->thread, NULL);
    }
    report_lost(s);
    drain(s);
    /* Never taken by the thread: answered as cancelled. */
    while (s->ops.head) {
        Op *op = s->ops.head;

        s->ops.head = op->next;
        op->r = -ECANCELED;
        snprintf(op->message, sizeof(op->message), "espdfud is stopping");
        dispatch(s, op);
        op_free(op);
    }
    store_db_close(s->db);
    for (size_t i = 0; s->dirty_jobs && i < STORE_PENDING_MAX; i++)
        row_clear(&s->dirty_jobs[i]);
    free(s->dirty_jobs);
    free(s->dirty_plugs);
    sd_event_source_disable_unref(s->done_source);
    if (s->efd >= 0)
        close(s->efd);
    sd_event_unref(s->event);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->wake);
    pthread_cond_destroy(&s->exited);
    free(s->dir);
    free(s->boot_id);
    free(s);
    return NULL;
}

static int queue_op(Store *s, Op *op)
{
    pthread_mutex_lock(&s->lock);
    if (s->ops.n >= STORE_OPS_MAX || s->closing) {
        pthread_mutex_unlock(&s->lock);
        op_free(op);
        return s->closing ? -ESHUTDOWN : -EAGAIN;
    }
    list_push(&s->ops, op);
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

int store_insert_jobs(Store *s, const StoreJobRow *rows, size_t n, const StorePlug *plug,
                      StoreInsertFn fn, void *userdata)
{
    Op *op;

    if (n == 0 || n > STORE_INSERT_MAX)
        return -EINVAL;
    op = calloc(1, sizeof(*op));
    if (!op)
        return -ENOMEM;
    *op = (Op){.type = OP_INSERT, .insert_fn = fn, .userdata = userdata};
    op->rows = calloc(n, sizeof(*op->rows));
    if (!op->rows) {
        op_free(op);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        if (row_copy(&op->rows[i], &rows[i]) < 0) {
            op_free(op);
            return -ENOMEM;
        }
        op->n_rows++;
    }
    if (plug) {
        op->has_plug = true;
        op->plug = *plug;
    }
    return queue_op(s, op);
}

/* The slot for id: its pending version, or a free one. NULL when full. Under lock. */
static Row *dirty_job_slot(Store *s, uint64_t id, bool *ret_new)
{
    Row *free_slot = NULL;

    for (size_t i = 0; i < STORE_PENDING_MAX; i++) {
        if (s->dirty_jobs[i].row.id == id) {
            *ret_new = false;
            return &s->dirty_jobs[i];
        }
        if (!free_slot && !s->dirty_jobs[i].row.id)
            free_slot = &s->dirty_jobs[i];
    }
    *ret_new = true;
    if (free_slot)
        s->n_dirty_jobs++;
    else
        s->stats.dropped++;
    return free_slot;
}

static StorePlug *dirty_plug_slot(Store *s, uint64_t id, bool *ret_new)
{
    StorePlug *free_slot = NULL;

    for (size_t i = 0; i < STORE_PENDING_MAX; i++) {
        if (s->dirty_plugs[i].id == id) {
            *ret_new = false;
            return &s->dirty_plugs[i];
        }
        if (!free_slot && !s->dirty_plugs[i].id)
            free_slot = &s->dirty_plugs[i];
    }
    *ret_new = true;
    if (free_slot)
        s->n_dirty_plugs++;
    return free_slot;
}

int store_put_job(Store *s, const StoreJobRow *row)
{
    Row copy;
    Row *slot;
    bool fresh;

    if (!row->id)
        return -EINVAL;
    if (row_copy(&copy, row) < 0)
        return -ENOMEM;
    pthread_mutex_lock(&s->lock);
    slot = dirty_job_slot(s, row->id, &fresh);
    if (!slot) {
        pthread_mutex_unlock(&s->lock);
        log_error("job %" PRIu64 ": %u job records wait to be written already; this one is lost",
                  row->id, STORE_PENDING_MAX);
        row_clear(&copy);
        return -ENOBUFS;
    }
    if (!fresh)
        row_clear(slot);
    row_move(slot, &copy);
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

int store_put_plug(Store *s, const StorePlug *plug)
{
    StorePlug *slot;
    bool fresh;

    if (!plug->id)
        return -EINVAL;
    pthread_mutex_lock(&s->lock);
    slot = dirty_plug_slot(s, plug->id, &fresh);
    if (slot) {
        *slot = *plug;
        pthread_cond_signal(&s->wake);
    }
    pthread_mutex_unlock(&s->lock);
    return slot ? 0 : -ENOBUFS;
}

static int dup_or_null(const char *src, char **dst)
{
    *dst = NULL;
    return src && !(*dst = strdup(src)) ? -ENOMEM : 0;
}

/* A query op with its strings copied; NULL when out of memory. */
static Op *query_op_new(const StoreQuery *q, void *userdata)
{
    Op *op = calloc(1, sizeof(*op));

    if (!op)
        return NULL;
    *op = (Op){.type = OP_QUERY, .query = *q, .userdata = userdata};
    if (dup_or_null(q->path, &op->q_path) < 0 || dup_or_null(q->result, &op->q_result) < 0 ||
        dup_or_null(q->sha256, &op->q_sha256) < 0 || dup_or_null(q->mac, &op->q_mac) < 0) {
        op_free(op);
        return NULL;
    }
    op->query.path = op->q_path;
    op->query.result = op->q_result;
    op->query.sha256 = op->q_sha256;
    op->query.mac = op->q_mac;
    return op;
}

int store_query(Store *s, const StoreQuery *q, StoreQueryFn fn, void *userdata)
{
    Op *op = query_op_new(q, userdata);

    if (!op)
        return -ENOMEM;
    op->query_fn = fn;
    return queue_op(s, op);
}

int store_page(Store *s, const StoreQuery *q, size_t max_bytes, StorePageFn fn, void *userdata)
{
    Op *op = query_op_new(q, userdata);

    if (!op)
        return -ENOMEM;
    op->type = OP_PAGE;
    op->page_fn = fn;
    op->max_bytes = max_bytes;
    return queue_op(s, op);
}

int store_get(Store *s, uint64_t id, StoreQueryFn fn, void *userdata)
{
    Op *op = calloc(1, sizeof(*op));

    if (!op)
        return -ENOMEM;
    *op = (Op){.type = OP_GET, .get_id = id, .query_fn = fn, .userdata = userdata};
    return queue_op(s, op);
}

void store_get_stats(Store *s, StoreStats *ret)
{
    pthread_mutex_lock(&s->lock);
    *ret = s->stats;
    ret->pending = s->n_dirty_jobs;
    pthread_mutex_unlock(&s->lock);
}
