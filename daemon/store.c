/* SPDX-License-Identifier: MIT */
/*
 * history.jsonl: appending with a pending queue for a full disk, rotating, and
 * reading backwards in chunks. See store.h.
 */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define TAIL_CHUNK (64u * 1024u)

static inline void json_object_putp(json_object **o)
{
    json_object_put(*o);
}

struct Store {
    sd_event *event;
    sd_event_source *retry_timer;
    char *path, *path_old; /* history.jsonl, history.jsonl.1 */
    uint64_t max_bytes;
    int fd; /* -1 until the first write, and after a failed one: reopen picks up a fixed path */
    uint64_t max_id;
    json_object *preloaded;

    char *pending[STORE_PENDING_MAX]; /* a ring of complete lines, "...\n" */
    size_t pending_first, n_pending;
    uint64_t dropped;
    int error; /* of the outage in progress, 0 when none */
};

static void pending_pop(Store *s)
{
    s->pending[s->pending_first] = (free(s->pending[s->pending_first]), NULL);
    s->pending_first = (s->pending_first + 1) % STORE_PENDING_MAX;
    s->n_pending--;
}

/* ---- reading backwards ---- */

typedef struct TailReader {
    int fd;
    off_t pos; /* the file offset of buf[0] */
    size_t len;
    char buf[STORE_LINE_MAX + TAIL_CHUNK + 1];
} TailReader;

/* Bring in the chunk before the window. */
static int tail_read_more(TailReader *t)
{
    size_t n = t->pos < (off_t)TAIL_CHUNK ? (size_t)t->pos : TAIL_CHUNK;
    size_t done = 0;

    memmove(t->buf + n, t->buf, t->len);
    while (done < n) {
        ssize_t k = pread(t->fd, t->buf + done, n - done, t->pos - (off_t)n + (off_t)done);

        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return k < 0 ? -errno : -EIO; /* the file shrank under us */
        done += (size_t)k;
    }
    t->pos -= (off_t)n;
    t->len += n;
    return 0;
}

/*
 * The line before the last one returned, NUL-terminated in t->buf, and the
 * file offset it starts at. 1: a line; 0: the start of the file. An over-long
 * line comes out in pieces, none of which parses.
 */
static int tail_prev(TailReader *t, char **ret, off_t *ret_off)
{
    for (;;) {
        char *nl = memrchr(t->buf, '\n', t->len);
        size_t start;
        int r;

        if (!nl && t->pos > 0 && t->len <= STORE_LINE_MAX) {
            r = tail_read_more(t);
            if (r < 0)
                return r;
            continue;
        }
        start = nl ? (size_t)(nl - t->buf) + 1 : 0;
        if (start == t->len) { /* an empty line, or nothing left */
            if (!nl)
                return 0;
            t->len = start - 1;
            continue;
        }
        t->buf[t->len] = '\0';
        *ret = t->buf + start;
        *ret_off = t->pos + (off_t)start;
        t->len = nl ? start - 1 : 0;
        return 1;
    }
}

/* 1-based line number of the line at off: only computed for a warning. */
static unsigned line_number(int fd, off_t off)
{
    char buf[TAIL_CHUNK];
    unsigned n = 1;

    for (off_t at = 0; at < off;) {
        size_t want = off - at < (off_t)sizeof(buf) ? (size_t)(off - at) : sizeof(buf);
        ssize_t k = pread(fd, buf, want, at);

        if (k <= 0)
            break;
        for (ssize_t i = 0; i < k; i++)
            n += buf[i] == '\n';
        at += k;
    }
    return n;
}

/* A record is a JSON object with an integer id; anything else is corrupt. */
static json_object *parse_record(const char *line)
{
    json_object *o = json_tokener_parse(line), *id;

    if (!o || !json_object_is_type(o, json_type_object) ||
        !json_object_object_get_ex(o, "id", &id) || !json_object_is_type(id, json_type_int) ||
        json_object_get_int64(id) <= 0) {
        json_object_put(o);
        return NULL;
    }
    return o;
}

/* Return > 0 to stop. The record is borrowed. */
typedef int (*RecordFn)(void *userdata, json_object *record);

static int each_in_file(const char *path, bool warn, RecordFn fn, void *userdata)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    _cleanup_free_ TailReader *t = NULL;
    struct stat st;
    char *line;
    off_t off;
    int r;

    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;
    if (fstat(fd, &st) < 0)
        return -errno;
    if (!S_ISREG(st.st_mode))
        return 0; /* /dev/full in the tests: nothing to read */
    t = malloc(sizeof(*t));
    if (!t)
        return -ENOMEM;
    *t = (TailReader){.fd = fd, .pos = st.st_size};
    while ((r = tail_prev(t, &line, &off)) > 0) {
        json_object *o = parse_record(line);

        if (!o) {
            /* A crash mid-write leaves a truncated last line: skip it, never stop. */
            log_message(warn ? LOG_WARNING : LOG_DEBUG, "history: %s:%u: skipping a corrupt record",
                        path, line_number(fd, off));
            continue;
        }
        r = fn(userdata, o);
        json_object_put(o);
        if (r != 0)
            return r;
    }
    return r;
}

/* Newest first: history.jsonl from its end, then history.jsonl.1. */
static int store_each(Store *s, bool warn, RecordFn fn, void *userdata)
{
    int r = each_in_file(s->path, warn, fn, userdata);

    if (r == 0)
        r = each_in_file(s->path_old, warn, fn, userdata);
    return r < 0 ? r : 0;
}

static int64_t record_int(json_object *o, const char *key)
{
    json_object *v;

    return json_object_object_get_ex(o, key, &v) ? json_object_get_int64(v) : 0;
}

static const char *record_str(json_object *o, const char *key)
{
    json_object *v;

    return json_object_object_get_ex(o, key, &v) ? json_object_get_string(v) : NULL;
}

/* ---- the start: the largest id and the preload ---- */

typedef struct Scan {
    Store *store;
    unsigned seen;
    json_object *newest_first;
} Scan;

static int scan_one(void *userdata, json_object *o)
{
    Scan *sc = userdata;
    uint64_t id = (uint64_t)record_int(o, "id");

    /* Records are in the order jobs finished, not their ids: look well past the last. */
    if (id > sc->store->max_id)
        sc->store->max_id = id;
    if (json_object_array_length(sc->newest_first) < STORE_PRELOAD_MAX &&
        json_object_array_add(sc->newest_first, json_object_get(o)) < 0) {
        json_object_put(o);
        return -ENOMEM;
    }
    return ++sc->seen >= STORE_SCAN_RECORDS;
}

static int store_load(Store *s)
{
    _cleanup_(json_object_putp) json_object *newest_first = json_object_new_array();
    Scan sc = {.store = s, .newest_first = newest_first};
    size_t n;
    int r;

    s->preloaded = json_object_new_array();
    if (!newest_first || !s->preloaded)
        return -ENOMEM;
    r = store_each(s, true, scan_one, &sc);
    if (r < 0)
        return r;
    n = json_object_array_length(newest_first);
    for (size_t i = n; i > 0; i--)
        if (json_object_array_add(s->preloaded, json_object_get(json_object_array_get_idx(
                                                        newest_first, i - 1))) < 0)
            return -ENOMEM;
    return 0;
}

int store_new(sd_event *e, const char *dir, uint64_t max_bytes, Store **ret)
{
    _cleanup_(store_freep) Store *s = calloc(1, sizeof(*s));
    int r;

    if (!s)
        return -ENOMEM;
    s->fd = -1;
    s->max_bytes = max_bytes;
    s->event = e ? sd_event_ref(e) : NULL;
    if (asprintf(&s->path, "%s/" STORE_FILE, dir) < 0 ||
        asprintf(&s->path_old, "%s/" STORE_FILE ".1", dir) < 0)
        return -ENOMEM;
    if (mkdir(dir, 0750) < 0 && errno != EEXIST)
        return -errno;
    r = store_load(s);
    if (r < 0)
        return r;
    *ret = TAKE_PTR(s);
    return 0;
}

Store *store_free(Store *s)
{
    if (!s)
        return NULL;
    if (s->n_pending > 0)
        log_error("history: %zu record%s could not be written to %s and are lost", s->n_pending,
                  s->n_pending == 1 ? "" : "s", s->path);
    for (size_t i = 0; i < s->n_pending; i++)
        free(s->pending[(s->pending_first + i) % STORE_PENDING_MAX]);
    sd_event_source_disable_unref(s->retry_timer);
    sd_event_unref(s->event);
    json_object_put(s->preloaded);
    closep(&s->fd);
    free(s->path);
    free(s->path_old);
    free(s);
    return NULL;
}

void store_set_max_bytes(Store *s, uint64_t max_bytes)
{
    s->max_bytes = max_bytes;
}

uint64_t store_max_id(const Store *s)
{
    return s->max_id;
}

size_t store_pending(const Store *s)
{
    return s->n_pending;
}

uint64_t store_dropped(const Store *s)
{
    return s->dropped;
}

int store_error(const Store *s)
{
    return s->error;
}

json_object *store_preloaded(const Store *s)
{
    return s->preloaded;
}

/* ---- writing ---- */

/*
 * A crash mid-write can leave the last line without its newline: end it first,
 * or the next record would be glued to it and lost with it.
 */
static int store_end_last_line(int fd)
{
    struct stat st;
    char c;

    if (fstat(fd, &st) < 0)
        return -errno;
    if (!S_ISREG(st.st_mode) || st.st_size == 0)
        return 0;
    if (pread(fd, &c, 1, st.st_size - 1) != 1)
        return 0; /* O_WRONLY on an odd file: the reader copes either way */
    if (c != '\n' && write(fd, "\n", 1) != 1)
        return -errno;
    return 0;
}

static void store_close_file(Store *s)
{
    closep(&s->fd);
    s->fd = -1;
}

static int store_open_file(Store *s)
{
    int r;

    if (s->fd >= 0)
        return 0;
    s->fd = open(s->path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
    if (s->fd < 0)
        return -errno;
    r = store_end_last_line(s->fd);
    if (r < 0)
        store_close_file(s);
    return r;
}

/* Past max_bytes the file becomes .1; a new one starts with the next line. */
static int store_rotate_if_full(Store *s, size_t len, off_t *ret_size)
{
    struct stat st;

    if (fstat(s->fd, &st) < 0)
        return -errno;
    *ret_size = st.st_size;
    if (!S_ISREG(st.st_mode) || st.st_size == 0 || (uint64_t)st.st_size + len <= s->max_bytes)
        return 0;
    if (rename(s->path, s->path_old) < 0)
        return -errno;
    log_info("history: %s reached %" PRIu64 " bytes, renamed to %s", s->path, (uint64_t)st.st_size,
             s->path_old);
    store_close_file(s);
    *ret_size = 0;
    return store_open_file(s);
}

/* One write() per complete line: readers never see half a record from us. */
static int store_write_line(Store *s, const char *line)
{
    size_t len = strlen(line);
    off_t size = 0;
    ssize_t n;
    int r;

    r = store_open_file(s);
    if (r >= 0)
        r = store_rotate_if_full(s, len, &size);
    if (r < 0)
        goto fail;
    n = write(s->fd, line, len);
    if (n == (ssize_t)len) {
        if (fdatasync(s->fd) < 0 && errno != EINVAL)
            log_errno(LOG_WARNING, -errno, "history: cannot sync %s", s->path);
        return 0;
    }
    r = n < 0 ? -errno : -ENOSPC;
    /* A partial line would glue itself to the next record: cut it off again. */
    if (n > 0)
        (void)ftruncate(s->fd, size);
fail:
    store_close_file(s); /* reopen next time: the path may have been fixed */
    return r;
}

static int on_retry(sd_event_source *es, uint64_t usec, void *userdata)
{
    Store *s = userdata;

    s->retry_timer = sd_event_source_disable_unref(s->retry_timer);
    (void)store_flush(s);
    return 0;
}

/* Armed only while records wait: an idle store costs nothing. */
static void store_arm_retry(Store *s)
{
    int r;

    if (!s->event || s->retry_timer)
        return;
    r = sd_event_add_time_relative(s->event, &s->retry_timer, CLOCK_MONOTONIC, STORE_RETRY_USEC, 0,
                                   on_retry, s);
    if (r < 0)
        log_errno(LOG_ERR, r, "history: cannot arm the retry timer");
}

static void store_failed(Store *s, int r)
{
    if (s->error == 0)
        log_error("history: cannot write %s: %s; %zu record%s pending", s->path, strerror(-r),
                  s->n_pending, s->n_pending == 1 ? "" : "s");
    s->error = r;
    store_arm_retry(s);
}

static void store_recovered(Store *s, size_t written)
{
    if (s->error == 0)
        return;
    log_notice("history: %s is writable again; %zu pending record%s written, %" PRIu64 " dropped",
               s->path, written, written == 1 ? "" : "s", s->dropped);
    s->error = 0;
    s->dropped = 0;
    s->retry_timer = sd_event_source_disable_unref(s->retry_timer);
}

int store_flush(Store *s)
{
    size_t written = 0;

    while (s->n_pending > 0) {
        int r = store_write_line(s, s->pending[s->pending_first]);

        if (r < 0) {
            store_failed(s, r);
            return r;
        }
        pending_pop(s);
        written++;
    }
    store_recovered(s, written);
    return 0;
}

/* Full: the oldest record goes, loudly; the newest say more about the station now. */
static void store_drop_oldest(Store *s)
{
    pending_pop(s);
    s->dropped++;
    if (s->dropped == 1 || s->dropped % 1000 == 0)
        log_error("history: %u records pending for %s, dropped the oldest; %" PRIu64
                  " dropped so far",
                  STORE_PENDING_MAX, s->path, s->dropped);
}

int store_append(Store *s, json_object *record)
{
    const char *json = json_object_to_json_string_ext(record, JSON_C_TO_STRING_PLAIN);
    uint64_t id = (uint64_t)record_int(record, "id");
    char *line;

    if (!json || asprintf(&line, "%s\n", json) < 0)
        return -ENOMEM;
    if (id > s->max_id)
        s->max_id = id;
    if (s->n_pending == STORE_PENDING_MAX)
        store_drop_oldest(s);
    s->pending[(s->pending_first + s->n_pending) % STORE_PENDING_MAX] = line;
    s->n_pending++;
    return store_flush(s);
}

/* ---- queries ---- */

typedef struct Query {
    const StoreQuery *q;
    json_object *newest_first;
} Query;

static int query_one(void *userdata, json_object *o)
{
    Query *qu = userdata;
    const StoreQuery *q = qu->q;
    const char *path = record_str(o, "path"), *state = record_str(o, "state");
    json_object *finished;

    /* Records are in the order jobs finished: once older than since, so is the rest. */
    if (q->since > 0 && json_object_object_get_ex(o, "finished", &finished) &&
        floor(json_object_get_double(finished)) < (double)q->since)
        return 1;
    if ((q->path && (!path || strcmp(path, q->path) != 0)) ||
        (q->result && (!state || strcmp(state, q->result) != 0)))
        return 0;
    if (json_object_array_add(qu->newest_first, json_object_get(o)) < 0) {
        json_object_put(o);
        return -ENOMEM;
    }
    return json_object_array_length(qu->newest_first) >= q->limit;
}

int store_query(Store *s, const StoreQuery *q, json_object **ret)
{
    _cleanup_(json_object_putp) json_object *newest_first = json_object_new_array();
    _cleanup_(json_object_putp) json_object *list = json_object_new_array();
    Query qu = {.q = q, .newest_first = newest_first};
    size_t n;
    int r;

    if (!newest_first || !list)
        return -ENOMEM;
    r = store_each(s, false, query_one, &qu);
    if (r < 0)
        return r;
    n = json_object_array_length(newest_first);
    for (size_t i = n; i > 0; i--)
        if (json_object_array_add(
                    list, json_object_get(json_object_array_get_idx(newest_first, i - 1))) < 0)
            return -ENOMEM;
    *ret = TAKE_PTR(list);
    return 0;
}

typedef struct Find {
    uint64_t id;
    json_object *found;
} Find;

static int find_one(void *userdata, json_object *o)
{
    Find *f = userdata;

    if ((uint64_t)record_int(o, "id") != f->id)
        return 0;
    f->found = json_object_get(o);
    return 1;
}

int store_find(Store *s, uint64_t id, json_object **ret)
{
    size_t n = json_object_array_length(s->preloaded);
    Find f = {.id = id};
    int r;

    if (id > s->max_id)
        return -ENOENT; /* never written: no need to read the files */
    for (size_t i = 0; i < n; i++) {
        json_object *o = json_object_array_get_idx(s->preloaded, i);

        if ((uint64_t)record_int(o, "id") == id) {
            *ret = json_object_get(o);
            return 0;
        }
    }
    r = store_each(s, false, find_one, &f);
    if (r < 0)
        return r;
    if (!f.found)
        return -ENOENT;
    *ret = f.found;
    return 0;
}
