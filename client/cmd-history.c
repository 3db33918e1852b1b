/* SPDX-License-Identifier: MIT */
/*
 * espdfuctl history: finished jobs from espdfud's job store,
 * <state-dir>/jobs.db, which outlives restarts (docs/protocol.md, "history").
 * Asked through the daemon, or read from the database file itself: with
 * --state-dir, or when espdfud is not reachable.
 *
 * table and json show one page. csv and jsonl without --limit are exports:
 * every matching record, oldest first, a page of WIRE_MAX_HISTORY_LIMIT at a
 * time through the `after` cursor, each page printed as it arrives, so a
 * history of any length exports in bounded memory.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "commands.h"
#include "conn.h"
#include "format.h"
#include "store-db.h"
#include "util.h"

/* espdfud's default state directory (CONFIG_DEFAULT_STATE_DIR in daemon/config.h). */
#ifndef CTL_DEFAULT_STATE_DIR
#define CTL_DEFAULT_STATE_DIR "/var/lib/espdfud"
#endif

#define SHA_PREFIX  12 /* enough to tell images apart on a station */
#define EXPORT_PAGE WIRE_MAX_HISTORY_LIMIT

typedef enum HistoryFormat {
    FORMAT_TABLE,
    FORMAT_JSON,
    FORMAT_JSONL,
    FORMAT_CSV,
    _FORMAT_MAX,
} HistoryFormat;

static const char *const format_names[_FORMAT_MAX] = {
        [FORMAT_TABLE] = "table",
        [FORMAT_JSON] = "json",
        [FORMAT_JSONL] = "jsonl",
        [FORMAT_CSV] = "csv",
};

typedef struct HistoryArgs {
    const char *path, *result, *state_dir;
    char sha256[WIRE_SHA256_HEX + 1]; /* "" when not given */
    int64_t since;                    /* 0 when not given */
    uint64_t before, after;
    bool has_after; /* --after 0 is "from the first" */
    unsigned limit; /* 0 when not given */
    HistoryFormat format;
    bool format_given, json;
} HistoryArgs;

/* Where records come from: espdfud, or its database read directly. */
typedef struct Source {
    CtlConn *conn;
    StoreDb *db;
    unsigned warnings; /* damaged rows skipped, as the store reported them */
} Source;

/* ---- the records ---- */

static const char *str_or_empty(const char *s)
{
    return s ? s : "";
}

/* A JSON integer as text; "" when absent or not an integer. */
static const char *int_text(json_object *o, const char *key, char *buf, size_t size)
{
    json_object *v = jget(o, key);

    if (!v || !json_object_is_type(v, json_type_int))
        return "";
    snprintf(buf, size, "%lld", (long long)json_object_get_int64(v));
    return buf;
}

/*
 * A Job time (Unix seconds with microseconds, "1796403792.123456") in
 * microseconds, exactly: from the number's text, as json-c keeps it, not
 * through a double. 0 when absent.
 */
static uint64_t time_usec(json_object *o, const char *key)
{
    json_object *v = jget(o, key);
    const char *s, *dot;
    uint64_t usec = 0, scale = 100000;
    char *end = NULL;
    unsigned long long secs;

    if (!v || !(json_object_is_type(v, json_type_double) || json_object_is_type(v, json_type_int)))
        return 0;
    s = json_object_get_string(v);
    errno = 0;
    secs = strtoull(s, &end, 10);
    dot = end;
    if (!errno && end != s && isdigit((unsigned char)*s) && (*dot == '\0' || *dot == '.')) {
        if (*dot == '.')
            for (const char *p = dot + 1; isdigit((unsigned char)*p) && scale > 0; p++) {
                usec += (uint64_t)(*p - '0') * scale;
                scale /= 10;
            }
        if (secs <= UINT64_MAX / 1000000u)
            return (uint64_t)secs * 1000000u + usec;
    }
    /* An exponent or a sign: the double is all there is. */
    return json_object_get_double(v) > 0 ? (uint64_t)(json_object_get_double(v) * 1e6 + 0.5) : 0;
}

static const char *const csv_header[] = {
        "id",           "path",       "source",     "chip",          "result",      "image_name",
        "image_sha256", "image_size", "created",    "started",       "finished",    "duration_s",
        "bytes",        "retries",    "error_code", "error_message", "error_phase", "error_block",
        "error_offset",
};

static void csv_print_header(FILE *f)
{
    for (size_t i = 0; i < ELEMENTSOF(csv_header); i++) {
        if (i)
            fputc(',', f);
        csv_field(f, csv_header[i]);
    }
    fputs("\r\n", f);
}

static const char *duration_text(uint64_t started, uint64_t finished, char *buf, size_t size)
{
    uint64_t d;

    if (!started || !finished)
        return "";
    /* Milliseconds, rounded; a clock stepped back shows as negative, not as garbage. */
    d = ((finished >= started ? finished - started : started - finished) + 500) / 1000;
    snprintf(buf, size, "%s%llu.%03llu", finished >= started ? "" : "-",
             (unsigned long long)(d / 1000), (unsigned long long)(d % 1000));
    return buf;
}

static void csv_print_row(FILE *f, json_object *j)
{
    json_object *image = jget(j, "image"), *error = jget(j, "error");
    uint64_t created = time_usec(j, "created"), started = time_usec(j, "started"),
             finished = time_usec(j, "finished");
    char id[24], size[24], bytes[24], retries[24], block[24], offset[24], duration[32];
    char t_created[FMT_ISO_MAX], t_started[FMT_ISO_MAX], t_finished[FMT_ISO_MAX];
    const char *fields[] = {
            int_text(j, "id", id, sizeof(id)),
            jstr(j, "path"),
            jstr(j, "source"),
            jstr(j, "chip"),
            jstr(j, "state"),
            jstr(image, "name"),
            jstr(image, "sha256"),
            int_text(image, "size", size, sizeof(size)),
            fmt_iso_utc(created, t_created, sizeof(t_created)),
            fmt_iso_utc(started, t_started, sizeof(t_started)),
            fmt_iso_utc(finished, t_finished, sizeof(t_finished)),
            duration_text(started, finished, duration, sizeof(duration)),
            int_text(jget(j, "progress"), "bytes", bytes, sizeof(bytes)),
            int_text(j, "retries", retries, sizeof(retries)),
            jstr(error, "code"),
            jstr(error, "message"),
            jstr(error, "phase"),
            int_text(error, "block", block, sizeof(block)),
            int_text(error, "offset", offset, sizeof(offset)),
    };

    _Static_assert(ELEMENTSOF(fields) == ELEMENTSOF(csv_header), "a CSV column without a header");
    for (size_t i = 0; i < ELEMENTSOF(fields); i++) {
        if (i)
            fputc(',', f);
        csv_field(f, str_or_empty(fields[i]));
    }
    fputs("\r\n", f);
}

/* One record of an export. */
static void print_record(HistoryFormat format, json_object *j)
{
    if (format == FORMAT_CSV)
        csv_print_row(stdout, j);
    else {
        fputs(json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN |
                                                        JSON_C_TO_STRING_NOSLASHESCAPE),
              stdout);
        fputc('\n', stdout);
    }
}

static void history_row(Table *t, json_object *j)
{
    char id[24], finished[FMT_SIZE_MAX], sha[SHA_PREFIX + 1] = "-";
    const char *sha256 = jstr(jget(j, "image"), "sha256");

    snprintf(id, sizeof(id), "%lld", (long long)jint(j, "id"));
    if (sha256)
        snprintf(sha, sizeof(sha), "%s", sha256);
    /* table_add() escapes control characters: these strings come from outside. */
    table_add(t, (const char *const[]){id, jstr(j, "path"), jstr(j, "chip"), jstr(j, "state"),
                                       fmt_time(jnum(j, "finished"), finished, sizeof(finished)),
                                       sha, jstr(jget(j, "error"), "message")});
}

static int print_table(json_object *records)
{
    static const char *const header[] = {"ID",       "PATH",  "CHIP", "RESULT",
                                         "FINISHED", "IMAGE", "ERROR"};
    _cleanup_(table_freep) Table *t = NULL;
    size_t n = json_object_array_length(records);

    if (n == 0) {
        printf("No finished jobs recorded.\n");
        return CTL_EXIT_OK;
    }
    if (table_new(header, ELEMENTSOF(header), &t) < 0)
        return CTL_EXIT_FAILURE;
    for (size_t i = 0; i < n; i++)
        history_row(t, json_object_array_get_idx(records, i));
    table_print(t, stdout);
    return CTL_EXIT_OK;
}

/* ---- the source: espdfud or the database ---- */

static void store_warn(void *userdata, const char *message)
{
    Source *s = userdata;

    s->warnings++;
    fprintf(stderr, "espdfuctl: %s\n", message);
}

static int open_store(Source *s, const char *dir, char *err, size_t err_size)
{
    int r;

    err[0] = '\0';
    r = store_db_open_readonly(dir, store_warn, s, &s->db, err, err_size);
    if (r < 0 && !err[0])
        snprintf(err, err_size, "%s/%s: %s", dir, STORE_DB_FILE, strerror(-r));
    return r;
}

/*
 * --state-dir: the database only. Otherwise espdfud, and when it cannot be
 * reached, its database in the default place. Returns 0 or -CtlExit, printed.
 */
static int source_open(Source *s, const HistoryArgs *a)
{
    char why[CTL_WHY_MAX], err[STORE_DB_ERR_MAX];
    int r;

    if (a->state_dir) {
        if (open_store(s, a->state_dir, err, sizeof(err)) < 0) {
            fprintf(stderr, "espdfuctl: %s\n", err);
            return -CTL_EXIT_FAILURE;
        }
        return 0;
    }
    r = ctl_connect_quiet(&s->conn, why, sizeof(why));
    if (r == 0)
        return 0;
    if (r != -CTL_EXIT_UNREACHABLE) {
        fprintf(stderr, "espdfuctl: %s\n", why);
        return r;
    }
    /* One line when the file answers; both reasons when it does not either. */
    fprintf(stderr, "espdfuctl: espdfud is not reachable; reading %s/%s\n", CTL_DEFAULT_STATE_DIR,
            STORE_DB_FILE);
    if (open_store(s, CTL_DEFAULT_STATE_DIR, err, sizeof(err)) < 0) {
        fprintf(stderr, "espdfuctl: %s\nespdfuctl: %s\n", why, err);
        return -CTL_EXIT_UNREACHABLE;
    }
    return 0;
}

static void source_close(Source *s)
{
    s->conn = ctl_conn_free(s->conn);
    if (s->db)
        s->db = store_db_close(s->db);
}

/* One page of a query: which side of which cursor, how many. */
typedef struct PageQuery {
    uint64_t before, after;
    bool ascending; /* with `after` (0 included): oldest first */
    unsigned limit;
} PageQuery;

static int daemon_page(Source *s, const HistoryArgs *a, const PageQuery *p,
                       json_object **ret_records, uint64_t *ret_next)
{
    _cleanup_(json_object_putp) json_object *params = json_object_new_object();
    json_object *records;
    WireMessage m;
    int64_t next;
    int r;

    if (!params)
        return -CTL_EXIT_FAILURE;
    if (a->path)
        json_object_object_add(params, "path", json_object_new_string(a->path));
    if (a->result)
        json_object_object_add(params, "result", json_object_new_string(a->result));
    if (a->sha256[0])
        json_object_object_add(params, "sha256", json_object_new_string(a->sha256));
    if (a->since > 0)
        json_object_object_add(params, "since", json_object_new_int64(a->since));
    if (p->before)
        json_object_object_add(params, "before", json_object_new_int64((int64_t)p->before));
    if (p->ascending)
        json_object_object_add(params, "after", json_object_new_int64((int64_t)p->after));
    json_object_object_add(params, "limit", json_object_new_int64(p->limit));

    r = ctl_call(s->conn, WIRE_METHOD_HISTORY, params, -1, &m);
    if (r < 0)
        return r;
    records = jget(m.result, "records");
    if (!records || !json_object_is_type(records, json_type_array)) {
        wire_message_done(&m);
        fprintf(stderr, "espdfuctl: espdfud's history reply has no records\n");
        return -CTL_EXIT_FAILURE;
    }
    next = jint(m.result, "next");
    *ret_records = json_object_get(records); /* outlives the message */
    *ret_next = next > 0 ? (uint64_t)next : 0;
    wire_message_done(&m);
    return 0;
}

static int collect(void *userdata, json_object *job)
{
    return json_object_array_add(userdata, json_object_get(job)) < 0 ? -ENOMEM : 0;
}

static int store_page(Source *s, const HistoryArgs *a, const PageQuery *p,
                      json_object **ret_records, uint64_t *ret_next)
{
    _cleanup_(json_object_putp) json_object *got = json_object_new_array();
    _cleanup_(json_object_putp) json_object *records = NULL;
    const StoreQuery q = {
            .path = a->path,
            .result = a->result,
            .sha256 = a->sha256[0] ? a->sha256 : NULL,
            .since = a->since,
            .before = p->before,
            .after = p->after,
            .ascending = p->ascending,
            .limit = p->limit,
    };
    char err[STORE_DB_ERR_MAX] = "";
    unsigned warned = s->warnings;
    uint64_t last = 0;
    size_t n;
    int r;

    if (!got)
        return -CTL_EXIT_FAILURE;
    r = store_db_query(s->db, &q, collect, got, &last, err, sizeof(err));
    if (r < 0) {
        fprintf(stderr, "espdfuctl: %s\n", err[0] ? err : strerror(-r));
        return -CTL_EXIT_FAILURE;
    }
    n = json_object_array_length(got);
    /* The daemon's order: ids ascending within a page, whichever way it was read. */
    if (p->ascending)
        records = TAKE_PTR(got);
    else {
        records = json_object_new_array_ext((int)n);
        if (!records)
            return -CTL_EXIT_FAILURE;
        for (size_t i = n; i > 0; i--)
            json_object_array_add(records, json_object_get(json_object_array_get_idx(got, i - 1)));
    }
    /* A full page (damaged rows count: they were read) may have more behind it. */
    *ret_next = n + (s->warnings - warned) >= p->limit ? last : 0;
    *ret_records = TAKE_PTR(records);
    return 0;
}

/* One page, ids ascending; *ret_next the cursor to go on with, 0 when this was the last. */
static int source_page(Source *s, const HistoryArgs *a, const PageQuery *p,
                       json_object **ret_records, uint64_t *ret_next)
{
    return s->conn ? daemon_page(s, a, p, ret_records, ret_next)
                   : store_page(s, a, p, ret_records, ret_next);
}

/* ---- the two ways to print ---- */

static int check_output(void)
{
    if (fflush(stdout) == EOF || ferror(stdout)) {
        fprintf(stderr, "espdfuctl: cannot write the output: %s\n", strerror(errno));
        return CTL_EXIT_FAILURE;
    }
    return CTL_EXIT_OK;
}

/* table, json, and csv/jsonl with --limit: one page, the newest (or those after --after). */
static int print_page(Source *s, const HistoryArgs *a)
{
    const PageQuery p = {
            .before = a->before,
            .after = a->after,
            .ascending = a->has_after,
            .limit = a->limit ?: WIRE_HISTORY_LIMIT_DEFAULT,
    };
    _cleanup_(json_object_putp) json_object *records = NULL, *o = NULL;
    uint64_t next = 0;
    size_t n;
    int r;

    r = source_page(s, a, &p, &records, &next);
    if (r < 0)
        return -r;
    n = json_object_array_length(records);
    switch (a->format) {
    case FORMAT_TABLE:
        r = print_table(records);
        break;
    case FORMAT_JSON:
        o = json_object_new_object();
        if (!o)
            return CTL_EXIT_FAILURE;
        json_object_object_add(o, "records", json_object_get(records));
        json_object_object_add(o, "next", next ? json_object_new_int64((int64_t)next) : NULL);
        ctl_print_json(o, false);
        r = CTL_EXIT_OK;
        break;
    case FORMAT_CSV:
        csv_print_header(stdout);
        for (size_t i = 0; i < n; i++)
            print_record(a->format, json_object_array_get_idx(records, i));
        r = CTL_EXIT_OK;
        break;
    case FORMAT_JSONL:
        for (size_t i = 0; i < n; i++)
            print_record(a->format, json_object_array_get_idx(records, i));
        r = CTL_EXIT_OK;
        break;
    case _FORMAT_MAX:
        return CTL_EXIT_FAILURE;
    }
    return r == CTL_EXIT_OK ? check_output() : r;
}

/* csv/jsonl without --limit: everything that matches, oldest first, a page at a time. */
static int export_all(Source *s, const HistoryArgs *a)
{
    PageQuery p = {.after = a->after, .ascending = true, .limit = EXPORT_PAGE};

    if (a->format == FORMAT_CSV)
        csv_print_header(stdout);
    for (;;) {
        _cleanup_(json_object_putp) json_object *records = NULL;
        uint64_t next = 0;
        size_t n;
        int r;

        /* No page reaches past --before: the rest would be thrown away. */
        if (a->before) {
            if (p.after + 1 >= a->before)
                return CTL_EXIT_OK;
            if (a->before - 1 - p.after < p.limit)
                p.limit = (unsigned)(a->before - 1 - p.after);
        }
        r = source_page(s, a, &p, &records, &next);
        if (r < 0)
            return -r;
        n = json_object_array_length(records);
        for (size_t i = 0; i < n; i++) {
            json_object *j = json_object_array_get_idx(records, i);

            /* --before bounds an export from above: the cursor runs upwards. */
            if (a->before && (uint64_t)jint(j, "id") >= a->before) {
                next = 0;
                break;
            }
            print_record(a->format, j);
        }
        r = check_output();
        if (r != CTL_EXIT_OK || next == 0)
            return r;
        if (next <= p.after) {
            fprintf(stderr, "espdfuctl: the history cursor did not advance past %llu\n",
                    (unsigned long long)p.after);
            return CTL_EXIT_FAILURE;
        }
        p.after = next;
    }
}

/* ---- options ---- */

static void history_help(void)
{
    printf("Usage: espdfuctl history [--path P] [--result R] [--since TIME] [--image SHA256]\n"
           "                         [--limit N] [--before ID | --after ID]\n"
           "                         [--format table|json|jsonl|csv] [--state-dir DIR]\n\n"
           "Finished jobs as espdfud recorded them in its state directory, across\n"
           "restarts, newest last: id, port, chip, result, when it finished, the\n"
           "image's sha256 prefix and the error.\n\n"
           "  --path P        jobs of one port\n"
           "  --result R      succeeded, failed, cancelled, interrupted or expired\n"
           "  --since TIME    finished at or after TIME: Unix seconds; local time as\n"
           "                  YYYY-MM-DD[ HH:MM[:SS]]; today; yesterday; or a time ago\n"
           "                  as -N followed by s, m, h, d or w (-30m, -2h, -7d)\n"
           "  --image SHA256  jobs that wrote this image (64 hex digits)\n"
           "  --limit N       the newest N, 1 to 1000 (default 100; csv and jsonl:\n"
           "                  every match when not given)\n"
           "  --before ID     only jobs with an id below ID (the `next` of a json page)\n"
           "  --after ID      only jobs with an id above ID, oldest first\n"
           "  --format F      table (default), json ({\"records\":[...],\"next\":ID}),\n"
           "                  jsonl (one job per line) or csv (RFC 4180, UTC times);\n"
           "                  jsonl and csv stream every match, oldest first\n"
           "  --state-dir DIR\n"
           "                  read DIR/" STORE_DB_FILE " directly, without espdfud; without\n"
           "                  it, an espdfud that is not reachable means reading\n"
           "                  " CTL_DEFAULT_STATE_DIR "/" STORE_DB_FILE "\n" CTL_COMMON_HELP);
}

/* "-2h": that long before now. Units s, m, h, d, w. */
static int parse_ago(const char *s, time_t now, int64_t *ret)
{
    static const struct {
        char unit;
        int64_t seconds;
    } units[] = {{'s', 1}, {'m', 60}, {'h', 3600}, {'d', 86400}, {'w', 7 * 86400}};
    char *end = NULL;
    long long v;

    if (s[0] != '-' || !isdigit((unsigned char)s[1]))
        return -EINVAL;
    errno = 0;
    v = strtoll(s + 1, &end, 10);
    if (errno || !end[0] || end[1])
        return -EINVAL;
    for (size_t i = 0; i < ELEMENTSOF(units); i++)
        if (*end == units[i].unit) {
            if (v > (int64_t)now / units[i].seconds)
                return -ERANGE; /* before 1970 */
            *ret = (int64_t)now - v * units[i].seconds;
            return 0;
        }
    return -EINVAL;
}

/* Local midnight, days_back days before today's. */
static int local_midnight(time_t now, int days_back, int64_t *ret)
{
    struct tm tm;
    time_t t;

    if (!localtime_r(&now, &tm))
        return -EINVAL;
    tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
    tm.tm_mday -= days_back; /* mktime() normalises the month */
    tm.tm_isdst = -1;
    t = mktime(&tm);
    if (t == (time_t)-1 || t < 0)
        return -EINVAL;
    *ret = (int64_t)t;
    return 0;
}

/* Unix seconds, local "YYYY-MM-DD[ HH:MM[:SS]]", today, yesterday, or -N{s,m,h,d,w}. */
static int parse_since(const char *s, time_t now, int64_t *ret)
{
    static const char *const formats[] = {"%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"};
    char *end = NULL;
    long long v;

    if (strcmp(s, "today") == 0)
        return local_midnight(now, 0, ret);
    if (strcmp(s, "yesterday") == 0)
        return local_midnight(now, 1, ret);
    if (s[0] == '-')
        return parse_ago(s, now, ret);
    errno = 0;
    v = strtoll(s, &end, 10);
    if (!errno && end != s && *end == '\0' && v >= 0) {
        *ret = v;
        return 0;
    }
    for (size_t i = 0; i < ELEMENTSOF(formats); i++) {
        struct tm tm = {};
        const char *rest = strptime(s, formats[i], &tm);
        time_t t;

        if (!rest || *rest)
            continue;
        tm.tm_isdst = -1; /* whatever daylight saving time said on that day */
        t = mktime(&tm);
        if (t == (time_t)-1 || t < 0)
            return -EINVAL;
        *ret = (int64_t)t;
        return 0;
    }
    return -EINVAL;
}

static int number_arg(const char *key, const char *s, long long min, long long max, uint64_t *ret)
{
    char *end = NULL;
    long long v;

    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || *end || end == s || v < min || v > max)
        return ctl_usage("history", "--%s: '%s' is not a whole number from %lld to %lld", key, s,
                         min, max);
    *ret = (uint64_t)v;
    return -1;
}

static int result_arg(HistoryArgs *a, const char *s)
{
    if (wire_job_state_is_final(s)) {
        a->result = s; /* argv outlives the command */
        return -1;
    }
    return ctl_usage("history",
                     "--result: '%s' is not succeeded, failed, cancelled, interrupted or expired",
                     s);
}

static int format_arg(HistoryArgs *a, const char *s)
{
    for (HistoryFormat f = 0; f < _FORMAT_MAX; f++)
        if (strcmp(s, format_names[f]) == 0) {
            a->format = f;
            a->format_given = true;
            return -1;
        }
    return ctl_usage("history", "--format: '%s' is not table, json, jsonl or csv", s);
}

static int image_arg(HistoryArgs *a, const char *s)
{
    if (strlen(s) != WIRE_SHA256_HEX || strspn(s, "0123456789abcdefABCDEF") != WIRE_SHA256_HEX)
        return ctl_usage("history", "--image: '%s' is not a SHA-256 (64 hex digits)", s);
    for (size_t i = 0; i <= WIRE_SHA256_HEX; i++)
        a->sha256[i] = (char)tolower((unsigned char)s[i]);
    return -1;
}

enum {
    OPT_BEFORE = CTL_OPT_SOCKET + 1,
    OPT_AFTER,
    OPT_STATE_DIR,
};

static int history_option(HistoryArgs *a, int c, char *argv[])
{
    uint64_t v = 0;
    int r;

    switch (c) {
    case 'j':
        a->json = true;
        return -1;
    case CTL_OPT_SOCKET:
        ctl_set_socket(optarg);
        return -1;
    case 'p':
        a->path = optarg;
        return -1;
    case 'r':
        return result_arg(a, optarg);
    case 's':
        if (parse_since(optarg, time(NULL), &a->since) < 0)
            return ctl_usage("history",
                             "--since: '%s' is not Unix seconds, YYYY-MM-DD[ HH:MM[:SS]], today, "
                             "yesterday or -N followed by s, m, h, d or w",
                             optarg);
        return -1;
    case 'i':
        return image_arg(a, optarg);
    case 'f':
        return format_arg(a, optarg);
    case 'n':
        r = number_arg("limit", optarg, 1, WIRE_MAX_HISTORY_LIMIT, &v);
        a->limit = (unsigned)v;
        return r;
    case OPT_BEFORE:
        return number_arg("before", optarg, 1, (long long)WIRE_MAX_ID_INT - 1, &a->before);
    case OPT_AFTER:
        a->has_after = true;
        return number_arg("after", optarg, 0, (long long)WIRE_MAX_ID_INT - 1, &a->after);
    case OPT_STATE_DIR:
        a->state_dir = optarg;
        return -1;
    }
    return ctl_bad_option("history", c, argv);
}

/* What the options say together. -1 to go on, else the exit code. */
static int check_args(HistoryArgs *a)
{
    if (a->json) {
        if (a->format_given && a->format != FORMAT_JSON)
            return ctl_usage("history", "--json and --format %s exclude each other",
                             format_names[a->format]);
        a->format = FORMAT_JSON;
    }
    if (a->before && a->has_after)
        return ctl_usage("history", "--before and --after exclude each other");
    if (a->state_dir && !a->state_dir[0])
        return ctl_usage("history", "--state-dir: an empty directory name");
    return -1;
}

int cmd_history(int argc, char *argv[])
{
    static const struct option options[] = {
            CTL_COMMON_OPTIONS,
            {"path", required_argument, NULL, 'p'},
            {"result", required_argument, NULL, 'r'},
            {"since", required_argument, NULL, 's'},
            {"image", required_argument, NULL, 'i'},
            {"limit", required_argument, NULL, 'n'},
            {"format", required_argument, NULL, 'f'},
            {"before", required_argument, NULL, OPT_BEFORE},
            {"after", required_argument, NULL, OPT_AFTER},
            {"state-dir", required_argument, NULL, OPT_STATE_DIR},
            {},
    };
    HistoryArgs a = {};
    Source s = {};
    int c, r;

    while ((c = getopt_long(argc, argv, ":h", options, NULL)) >= 0) {
        if (c == 'h') {
            history_help();
            return CTL_EXIT_OK;
        }
        r = history_option(&a, c, argv);
        if (r >= 0)
            return r;
    }
    if (optind != argc)
        return ctl_usage("history", "no arguments expected");
    r = check_args(&a);
    if (r >= 0)
        return r;
    r = source_open(&s, &a);
    if (r < 0)
        return -r;
    if ((a.format == FORMAT_CSV || a.format == FORMAT_JSONL) && !a.limit)
        r = export_all(&s, &a);
    else
        r = print_page(&s, &a);
    source_close(&s);
    return r;
}
