/* SPDX-License-Identifier: MIT */
/*
 * espdfuctl history: finished jobs from espdfud's history.jsonl, which
 * outlives restarts (docs/protocol.md, "history").
 */
#define _XOPEN_SOURCE 700
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "commands.h"
#include "conn.h"
#include "format.h"
#include "util.h"

#define SHA_PREFIX 12 /* enough to tell images apart on a station */

static void history_row(Table *t, json_object *j)
{
    char id[24], finished[FMT_SIZE_MAX], sha[SHA_PREFIX + 1] = "-";
    const char *sha256 = jstr(jget(j, "image"), "sha256");

    snprintf(id, sizeof(id), "%lld", (long long)jint(j, "id"));
    if (sha256)
        snprintf(sha, sizeof(sha), "%s", sha256);
    table_add(t, (const char *const[]){id, jstr(j, "path"), jstr(j, "chip"), jstr(j, "state"),
                                       fmt_time(jnum(j, "finished"), finished, sizeof(finished)),
                                       sha, jstr(jget(j, "error"), "message")});
}

static int print_records(json_object *r)
{
    static const char *const header[] = {"ID",       "PATH",  "CHIP", "RESULT",
                                         "FINISHED", "IMAGE", "ERROR"};
    _cleanup_(table_freep) Table *t = NULL;
    json_object *records = jget(r, "records");
    size_t n = records ? json_object_array_length(records) : 0;

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

static void history_help(void)
{
    printf("Usage: espdfuctl history [--path P] [--result R] [--since TIME] [--limit N]\n"
           "                         [--json]\n\n"
           "Finished jobs as espdfud recorded them in its state directory, across\n"
           "restarts, newest last: id, port, chip, result, when it finished, the\n"
           "image's sha256 prefix and the error.\n\n"
           "  --path P        jobs of one port\n"
           "  --result R      succeeded, failed or cancelled\n"
           "  --since TIME    finished at or after TIME: Unix seconds, or local time\n"
           "                  as YYYY-MM-DD[ HH:MM[:SS]]\n"
           "  --limit N       the newest N, 1 to 1000 (default 100)\n" CTL_COMMON_HELP);
}

/* Unix seconds, or local "YYYY-MM-DD[ HH:MM[:SS]]". */
static int parse_since(const char *s, int64_t *ret)
{
    static const char *const formats[] = {"%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"};
    char *end = NULL;
    long long v;

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

static int number_param(json_object *params, const char *key, const char *s, long long max)
{
    char *end = NULL;
    long long v;

    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || *end || end == s || v < 1 || v > max)
        return ctl_usage("history", "--%s: '%s' is not a whole number from 1 to %lld", key, s, max);
    json_object_object_add(params, key, json_object_new_int64(v));
    return -1;
}

static int history_option(json_object *params, int c, char *argv[], bool *json)
{
    int64_t since;

    switch (c) {
    case 'j':
        *json = true;
        return -1;
    case CTL_OPT_SOCKET:
        ctl_set_socket(optarg);
        return -1;
    case 'p':
        json_object_object_add(params, "path", json_object_new_string(optarg));
        return -1;
    case 'r':
        json_object_object_add(params, "result", json_object_new_string(optarg));
        return -1;
    case 's':
        if (parse_since(optarg, &since) < 0)
            return ctl_usage("history",
                             "--since: '%s' is neither Unix seconds nor YYYY-MM-DD[ HH:MM[:SS]]",
                             optarg);
        json_object_object_add(params, "since", json_object_new_int64(since));
        return -1;
    case 'n':
        return number_param(params, "limit", optarg, WIRE_MAX_HISTORY_LIMIT);
    }
    return ctl_bad_option("history", c, argv);
}

int cmd_history(int argc, char *argv[])
{
    static const struct option options[] = {
            CTL_COMMON_OPTIONS,
            {"path", required_argument, NULL, 'p'},
            {"result", required_argument, NULL, 'r'},
            {"since", required_argument, NULL, 's'},
            {"limit", required_argument, NULL, 'n'},
            {},
    };
    _cleanup_(json_object_putp) json_object *params = json_object_new_object();
    bool json = false;
    int c, r;

    while ((c = getopt_long(argc, argv, ":h", options, NULL)) >= 0) {
        if (c == 'h') {
            history_help();
            return CTL_EXIT_OK;
        }
        r = history_option(params, c, argv, &json);
        if (r >= 0)
            return r;
    }
    if (optind != argc)
        return ctl_usage("history", "no arguments expected");
    return ctl_request(WIRE_METHOD_HISTORY, params, json, print_records);
}
