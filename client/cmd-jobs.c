/* SPDX-License-Identifier: MIT */
/*
 * espdfuctl jobs, job ID, cancel ID: the job table, one job in full, and
 * cancelling one.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "conn.h"
#include "format.h"
#include "station.h"
#include "util.h"

static int parse_id(const char *command, const char *s, uint64_t *ret)
{
    char *end = NULL;
    unsigned long long v;

    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || !end || *end || end == s || *s == '-' || v >= WIRE_MAX_ID_INT)
        return ctl_usage(command, "'%s' is not a job id", s);
    *ret = v;
    return -1;
}

static void job_row(Table *t, json_object *j)
{
    char id[24], progress[16] = "-", result[STATION_TEXT_MAX];
    json_object *p = jget(j, "progress");

    snprintf(id, sizeof(id), "%lld", (long long)jint(j, "id"));
    if (p)
        snprintf(progress, sizeof(progress), "%lld%%", (long long)jint(p, "percent"));
    table_add(t, (const char *const[]){id, jstr(j, "path"), jstr(j, "chip"), jstr(j, "state"),
                                       progress, jstr(jget(j, "image"), "name"),
                                       station_job_result(j, result, sizeof(result))});
}

static int print_jobs(json_object *r)
{
    static const char *const header[] = {"ID",       "PATH",  "CHIP",        "STATE",
                                         "PROGRESS", "IMAGE", "RESULT/ERROR"};
    _cleanup_(table_freep) Table *t = NULL;
    json_object *jobs = jget(r, "jobs");
    size_t n = jobs ? json_object_array_length(jobs) : 0;

    if (n == 0) {
        printf("No jobs.\n");
        return CTL_EXIT_OK;
    }
    if (table_new(header, ELEMENTSOF(header), &t) < 0)
        return CTL_EXIT_FAILURE;
    for (size_t i = 0; i < n; i++)
        job_row(t, json_object_array_get_idx(jobs, i));
    table_print(t, stdout);
    return CTL_EXIT_OK;
}

static void jobs_help(void)
{
    printf("Usage: espdfuctl jobs [--state S] [--path P] [--limit N] [--json]\n\n"
           "Flash jobs in id order: id, port, chip, state, progress, image, and the\n"
           "result or the error.\n\n"
           "  --state S       a job state (queued, downloading, succeeded, failed,\n"
           "                  cancelled, ...), or active (not finished), or finished\n"
           "  --path P        jobs of one port\n"
           "  --limit N       the newest N\n" CTL_COMMON_HELP);
}

static int limit_param(json_object *params, const char *s)
{
    char *end = NULL;
    long long v;

    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || *end || end == s || v < 1)
        return ctl_usage("jobs", "--limit: '%s' is not a whole number from 1", s);
    json_object_object_add(params, "limit", json_object_new_int64(v));
    return -1;
}

int cmd_jobs(int argc, char *argv[])
{
    static const struct option options[] = {
            CTL_COMMON_OPTIONS,
            {"state", required_argument, NULL, 's'},
            {"path", required_argument, NULL, 'p'},
            {"limit", required_argument, NULL, 'n'},
            {},
    };
    _cleanup_(json_object_putp) json_object *params = json_object_new_object();
    bool json = false;
    int c, r;

    while ((c = getopt_long(argc, argv, ":h", options, NULL)) >= 0)
        switch (c) {
        case 'h':
            jobs_help();
            return CTL_EXIT_OK;
        case 'j':
            json = true;
            break;
        case CTL_OPT_SOCKET:
            ctl_set_socket(optarg);
            break;
        case 's':
            json_object_object_add(params, "state", json_object_new_string(optarg));
            break;
        case 'p':
            json_object_object_add(params, "path", json_object_new_string(optarg));
            break;
        case 'n':
            r = limit_param(params, optarg);
            if (r >= 0)
                return r;
            break;
        default:
            return ctl_bad_option("jobs", c, argv);
        }
    if (optind != argc)
        return ctl_usage("jobs", "no arguments expected");
    return ctl_request(WIRE_METHOD_JOBS, params, json, print_jobs);
}

static void print_history(json_object *history)
{
    size_t n = history ? json_object_array_length(history) : 0;

    if (n == 0)
        return;
    printf("History:\n");
    for (size_t i = 0; i < n; i++) {
        json_object *h = json_object_array_get_idx(history, i);
        char at[FMT_SIZE_MAX], state[64], reason[FMT_SAFE_MAX];

        printf("  %s  %-18s  %s\n", fmt_time(jnum(h, "at"), at, sizeof(at)),
               fmt_safe(jstr(h, "state") ?: "?", state, sizeof(state)),
               fmt_safe(jstr(h, "reason"), reason, sizeof(reason)));
    }
}

/* "usb-timeout: GETSTATUS timed out ... (phase download, block 412, offset 0x6700)" */
static void print_error_detail(json_object *e)
{
    long long block = jint(e, "block"), offset = jint(e, "offset");
    char message[FMT_SAFE_MAX], code[64], phase[64], status[64];

    printf("%s [%s]\n", fmt_safe(jstr(e, "message") ?: "?", message, sizeof(message)),
           fmt_safe(jstr(e, "code") ?: "?", code, sizeof(code)));
    printf("            phase %s", fmt_safe(jstr(e, "phase") ?: "-", phase, sizeof(phase)));
    if (block >= 0)
        printf(", block %lld", block);
    if (offset >= 0)
        printf(", offset 0x%llx", offset);
    if (jstr(e, "dfu_status"))
        printf(", DFU status %s", fmt_safe(jstr(e, "dfu_status"), status, sizeof(status)));
    printf("\n");
}

static void print_error(json_object *e)
{
    if (!e)
        return;
    printf("     Error: ");
    print_error_detail(e);
}

/* Each try: when, how far, and how it ended. */
static void print_attempts(json_object *attempts)
{
    size_t n = attempts ? json_object_array_length(attempts) : 0;

    if (n < 2 && !(n == 1 && jget(json_object_array_get_idx(attempts, 0), "error")))
        return; /* one clean try says nothing the rest does not */
    printf("Attempts:\n");
    for (size_t i = 0; i < n; i++) {
        json_object *a = json_object_array_get_idx(attempts, i);
        char at[FMT_SIZE_MAX], bytes[FMT_SIZE_MAX];

        printf("  %lld  %s  %s sent  ", (long long)jint(a, "n"),
               fmt_time(jnum(a, "started"), at, sizeof(at)),
               fmt_bytes((uint64_t)jnum(a, "bytes"), bytes, sizeof(bytes)));
        if (jget(a, "error"))
            print_error_detail(jget(a, "error"));
        else
            printf("%s\n", jnum(a, "finished") > 0 ? "ok" : "running");
    }
}

static void print_times(json_object *j)
{
    char t[FMT_SIZE_MAX], d[FMT_SIZE_MAX];
    double started = jnum(j, "started"), finished = jnum(j, "finished");

    printf("   Created: %s\n", fmt_time(jnum(j, "created"), t, sizeof(t)));
    printf("   Started: %s\n", fmt_time(started, t, sizeof(t)));
    printf("  Finished: %s", fmt_time(finished, t, sizeof(t)));
    if (started > 0 && finished >= started)
        printf(" (took %s)", fmt_duration(finished - started, d, sizeof(d)));
    printf("\n");
}

static int print_job(json_object *r)
{
    json_object *j = jget(r, "job"), *img = jget(j, "image"), *p = jget(j, "progress");
    char b[FMT_SIZE_MAX], tot[FMT_SIZE_MAX], rate[FMT_SIZE_MAX];
    char path[128], chip[64], source[FMT_SAFE_MAX], state[64], name[FMT_SAFE_MAX], sha[128];

    printf("Job %lld on %s (%s), %s\n", (long long)jint(j, "id"),
           fmt_safe(jstr(j, "path") ?: "?", path, sizeof(path)),
           fmt_safe(jstr(j, "chip") ?: "?", chip, sizeof(chip)),
           fmt_safe(jstr(j, "source") ?: "?", source, sizeof(source)));
    printf("     State: %s\n", fmt_safe(jstr(j, "state") ?: "?", state, sizeof(state)));
    printf("     Image: %s, %lld bytes\n", fmt_safe(jstr(img, "name") ?: "-", name, sizeof(name)),
           (long long)jint(img, "size"));
    printf("    SHA256: %s\n", fmt_safe(jstr(img, "sha256") ?: "-", sha, sizeof(sha)));
    printf("  Progress: %s of %s (%lld%%), %s\n", fmt_bytes((uint64_t)jnum(p, "bytes"), b, 32),
           fmt_bytes((uint64_t)jnum(p, "total"), tot, 32), (long long)jint(p, "percent"),
           fmt_rate(jnum(p, "rate"), rate, sizeof(rate)));
    print_times(j);
    printf("   Retries: %lld of %lld, timeout %llds\n", (long long)jint(j, "retries"),
           (long long)jint(j, "max_retries"), (long long)jint(j, "timeout_s"));
    print_error(jget(j, "error"));
    print_attempts(jget(j, "attempts"));
    print_history(jget(j, "history"));
    return CTL_EXIT_OK;
}

static int id_command(const char *name, WireMethod method, int argc, char *argv[],
                      const char *usage, int (*print)(json_object *))
{
    _cleanup_(json_object_putp) json_object *params = json_object_new_object();
    bool json = false;
    uint64_t id = 0;
    int r;

    r = ctl_common_args(name, argc, argv, usage, &json);
    if (r >= 0)
        return r;
    if (argc - optind != 1)
        return ctl_usage(name, argc == optind ? "no job ID given" : "exactly one job ID, please");
    r = parse_id(name, argv[optind], &id);
    if (r >= 0)
        return r;
    json_object_object_add(params, "id", json_object_new_int64((int64_t)id));
    return ctl_request(method, params, json, print);
}

int cmd_job(int argc, char *argv[])
{
    return id_command("job", WIRE_METHOD_JOB, argc, argv,
                      "Usage: espdfuctl job ID [--json]\n\n"
                      "One job in full: port, chip, image, progress, times, retries, the\n"
                      "error with where it happened, and every state change with its time\n"
                      "and reason. Exit 5 when there is no such job.\n",
                      print_job);
}

static int print_cancelled(json_object *r)
{
    json_object *j = jget(r, "job");
    char path[128], state[64];

    printf("Job %lld on %s: %s\n", (long long)jint(j, "id"),
           fmt_safe(jstr(j, "path") ?: "?", path, sizeof(path)),
           fmt_safe(jstr(j, "state") ?: "?", state, sizeof(state)));
    return CTL_EXIT_OK;
}

int cmd_cancel(int argc, char *argv[])
{
    return id_command("cancel", WIRE_METHOD_CANCEL, argc, argv,
                      "Usage: espdfuctl cancel ID [--json]\n\n"
                      "Cancel a queued or running job; a board being written is left in\n"
                      "dfuIDLE. Needs root or espdfud's group. Exit 5 when there is no such\n"
                      "job.\n",
                      print_cancelled);
}
