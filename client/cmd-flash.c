/* SPDX-License-Identifier: MIT */
/*
 * espdfuctl flash IMAGE: the image is opened here, as the user, and its fd is
 * passed to espdfud with SCM_RIGHTS in the request itself; the daemon never
 * opens a client's path, so nobody flashes what they could not read.
 *
 * With --wait the connection subscribes *before* it flashes, so no event of
 * the new jobs can be missed, then follows them until every one is over.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commands.h"
#include "conn.h"
#include "station.h"
#include "util.h"

typedef struct FlashArgs {
    const char *image;
    json_object *params;
    json_object *paths;
    bool wait, json;
} FlashArgs;

typedef struct Follow {
    int64_t *ids; /* the jobs we queued */
    size_t n_ids;
    size_t finished, failed;
    bool live; /* a terminal: redraw bars instead of printing lines */
    int drawn; /* lines of the last live drawing */
    Station station;
} Follow;

static void help(void)
{
    printf("Usage: espdfuctl flash IMAGE [--path P]... [--all] [--chip C] [--name N]\n"
           "                       [--retries N] [--timeout S] [--wait] [--json]\n\n"
           "Queue one job per target that writes IMAGE (a dfu.bin). IMAGE is opened by\n"
           "espdfuctl as you and handed to espdfud as an open file, so you can flash\n"
           "only what you can read. espdfud validates it completely and checks every\n"
           "target's chip before it queues anything.\n\n"
           "  --path P        a port path (1-3.2); repeat for several. An empty port is\n"
           "                  fine: the job waits for the next board plugged there\n"
           "  --all           every present board of the image's chip (or --chip's)\n"
           "  --chip C        esp32s2, esp32s3, esp32p4, esp32s31\n"
           "  --name N        the image's display name (default: IMAGE's file name)\n"
           "  --retries N     further attempts after a transient failure, 0-10\n"
           "  --timeout S     the whole job's limit in seconds\n"
           "  --wait          follow the jobs to their end: progress bars on a\n"
           "                  terminal, one line per event otherwise; exit 6 if any\n"
           "                  failed or was cancelled\n" CTL_COMMON_HELP
           "\nWithout --wait, prints the queued job ids. Needs root or espdfud's group.\n");
}

static int int_option(const char *name, const char *s, long long min, long long max, long long *ret)
{
    char *end = NULL;
    long long v;

    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || *end || end == s || v < min || v > max)
        return ctl_usage("flash", "--%s: '%s' is not a whole number from %lld to %lld", name, s,
                         min, max);
    *ret = v;
    return -1;
}

static int parse_option(FlashArgs *a, int c, char *argv[])
{
    long long v = 0;
    int r = -1;

    switch (c) {
    case 'j':
        a->json = true;
        break;
    case 'w':
        a->wait = true;
        break;
    case CTL_OPT_SOCKET:
        ctl_set_socket(optarg);
        break;
    case 'p':
        json_object_array_add(a->paths, json_object_new_string(optarg));
        break;
    case 'a':
        json_object_object_add(a->params, "all", json_object_new_boolean(1));
        break;
    case 'c':
        json_object_object_add(a->params, "chip", json_object_new_string(optarg));
        break;
    case 'n':
        json_object_object_add(a->params, "name", json_object_new_string(optarg));
        break;
    case 'r':
        r = int_option("retries", optarg, 0, WIRE_MAX_RETRIES, &v);
        if (r < 0)
            json_object_object_add(a->params, "retries", json_object_new_int64(v));
        break;
    case 't':
        r = int_option("timeout", optarg, 1, WIRE_MAX_TIMEOUT_S, &v);
        if (r < 0)
            json_object_object_add(a->params, "timeout", json_object_new_int64(v));
        break;
    default:
        return ctl_bad_option("flash", c, argv);
    }
    return r;
}

static int parse_args(FlashArgs *a, int argc, char *argv[])
{
    static const struct option options[] = {
            CTL_COMMON_OPTIONS,
            {"path", required_argument, NULL, 'p'},
            {"all", no_argument, NULL, 'a'},
            {"chip", required_argument, NULL, 'c'},
            {"name", required_argument, NULL, 'n'},
            {"wait", no_argument, NULL, 'w'},
            {"retries", required_argument, NULL, 'r'},
            {"timeout", required_argument, NULL, 't'},
            {},
    };
    int c, r;

    while ((c = getopt_long(argc, argv, ":hp:a", options, NULL)) >= 0) {
        if (c == 'h') {
            help();
            return CTL_EXIT_OK;
        }
        r = parse_option(a, c, argv);
        if (r >= 0)
            return r;
    }
    if (argc - optind != 1)
        return ctl_usage("flash", argc == optind ? "no IMAGE given" : "exactly one IMAGE, please");
    if (json_object_array_length(a->paths) > 0 && jget(a->params, "all"))
        return ctl_usage("flash", "--path and --all exclude each other");
    if (json_object_array_length(a->paths) > WIRE_MAX_PATHS)
        return ctl_usage("flash", "at most %u --path", WIRE_MAX_PATHS);
    a->image = argv[optind];
    return -1;
}

/* Opened as the user, before anything is sent: an unreadable image stays local. */
static int open_image(const char *path, int *ret)
{
    struct stat st;
    int fd;

    /* O_NONBLOCK: a FIFO must not hang us before fstat() refuses it. */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        fprintf(stderr, "espdfuctl: %s: cannot open: %s\n", path, strerror(errno));
        return -CTL_EXIT_FAILURE;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        fprintf(stderr, "espdfuctl: %s: not a regular file\n", path);
        close(fd);
        return -CTL_EXIT_FAILURE;
    }
    *ret = fd;
    return 0;
}

static int print_queued(json_object *result)
{
    json_object *jobs = jget(result, "jobs"), *img = jget(result, "image");
    size_t n = jobs ? json_object_array_length(jobs) : 0;

    for (size_t i = 0; i < n; i++)
        printf("job %lld queued\n",
               (long long)json_object_get_int64(json_object_array_get_idx(jobs, i)));
    fprintf(stderr, "image %s, %lld bytes, sha256 %s\n", jstr(img, "chip") ?: "?",
            (long long)jint(img, "size"), jstr(img, "sha256") ?: "?");
    return CTL_EXIT_OK;
}

static bool ours(const Follow *f, int64_t id)
{
    for (size_t i = 0; i < f->n_ids; i++)
        if (f->ids[i] == id)
            return true;
    return false;
}

/* Move back over the last drawing and draw the rows again. */
static void redraw(Follow *f)
{
    char *text = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&text, &len);

    if (!m)
        return;
    station_render(&f->station, m, station_use_colour());
    fclose(m);
    if (f->drawn > 0)
        printf("\033[%dA\033[J", f->drawn);
    fputs(text, stdout);
    fflush(stdout);
    f->drawn = 0;
    for (const char *p = text; *p; p++)
        f->drawn += *p == '\n';
    free(text);
}

static void job_finished(Follow *f, json_object *job)
{
    char r[STATION_TEXT_MAX];

    f->finished++;
    if (strcmp(jstr(job, "state") ?: "", "succeeded") == 0)
        return;
    f->failed++;
    fprintf(stderr, "espdfuctl: job %lld [%s] %s\n", (long long)jint(job, "id"),
            jstr(job, "path") ?: "?", station_job_result(job, r, sizeof(r)));
}

static void show_event(Follow *f, const WireMessage *m, bool json)
{
    char line[STATION_TEXT_MAX];

    if (json) {
        ctl_print_json(m->root, true);
        return;
    }
    if (f->live) {
        station_event(&f->station, m);
        redraw(f);
        return;
    }
    if (station_event_line(m, line, sizeof(line))) {
        printf("%s\n", line);
        fflush(stdout);
    }
}

static int follow(CtlConn *c, Follow *f, bool json)
{
    while (f->finished < f->n_ids) {
        WireMessage m;
        int r = ctl_next_event(c, -1, &m);

        if (r < 0)
            return -r;
        if (r > 0)
            continue;
        if (m.event == WIRE_EVENT_DROPPED) {
            fprintf(stderr, "espdfuctl: espdfud dropped this client: %s\n",
                    jstr(m.data, "reason") ?: "?");
            wire_message_done(&m);
            return CTL_EXIT_FAILURE;
        }
        if (m.event >= WIRE_EVENT_JOB_QUEUED && m.event <= WIRE_EVENT_JOB_FINISHED &&
            ours(f, jint(m.data, "id"))) {
            show_event(f, &m, json);
            if (m.event == WIRE_EVENT_JOB_FINISHED)
                job_finished(f, m.data);
        }
        wire_message_done(&m);
    }
    return f->failed ? CTL_EXIT_JOB_FAILED : CTL_EXIT_OK;
}

static int wait_jobs(CtlConn *c, json_object *result, bool json)
{
    json_object *jobs = jget(result, "jobs");
    Follow f = {.live = !json && isatty(STDOUT_FILENO)};
    int r;

    f.n_ids = jobs ? json_object_array_length(jobs) : 0;
    f.ids = calloc(f.n_ids ?: 1, sizeof(*f.ids));
    if (!f.ids)
        return CTL_EXIT_FAILURE;
    for (size_t i = 0; i < f.n_ids; i++)
        f.ids[i] = json_object_get_int64(json_object_array_get_idx(jobs, i));
    station_init(&f.station);
    r = follow(c, &f, json);
    station_done(&f.station);
    free(f.ids);
    return r;
}

static int flash(const FlashArgs *a, int image_fd)
{
    _cleanup_(ctl_conn_freep) CtlConn *c = NULL;
    WireMessage m;
    int r;

    r = ctl_connect(&c);
    if (r < 0)
        return -r;
    if (a->wait) {
        r = ctl_call(c, WIRE_METHOD_SUBSCRIBE, NULL, -1, &m);
        if (r < 0)
            return -r;
        wire_message_done(&m);
    }
    r = ctl_call(c, WIRE_METHOD_FLASH, a->params, image_fd, &m);
    if (r < 0)
        return -r;
    if (a->json)
        ctl_print_json(m.result, a->wait);
    else
        print_queued(m.result);
    r = a->wait ? wait_jobs(c, m.result, a->json) : CTL_EXIT_OK;
    wire_message_done(&m);
    return r;
}

int cmd_flash(int argc, char *argv[])
{
    _cleanup_(json_object_putp) json_object *params = json_object_new_object();
    _cleanup_close_ int fd = -1;
    FlashArgs a = {.params = params, .paths = json_object_new_array()};
    _cleanup_free_ char *base = NULL;
    int r;

    json_object_object_add(params, "paths", a.paths);
    r = parse_args(&a, argc, argv);
    if (r >= 0)
        return r;
    if (json_object_array_length(a.paths) == 0)
        json_object_object_del(params, "paths");
    ctl_set_image_path(a.image);
    r = open_image(a.image, &fd);
    if (r < 0)
        return -r;
    if (!jget(params, "name")) {
        base = strdup(a.image);
        if (base)
            json_object_object_add(params, "name", json_object_new_string(basename(base)));
    }
    return flash(&a, fd);
}
