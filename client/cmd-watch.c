/* SPDX-License-Identifier: MIT */
/*
 * espdfuctl watch: the station screen. It subscribes first and only then asks
 * for the devices and jobs, so nothing that happens in between is missed
 * (events read meanwhile are applied after the snapshot; at worst a row shows
 * an older progress until the next event).
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "conn.h"
#include "station.h"
#include "util.h"

/* Enough for the last result of every port of a big station. */
#define WATCH_JOBS_LIMIT 4096
/* A terminal is redrawn at most this often; events in between are batched. */
#define REDRAW_MS 100

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    stop = 1;
}

static void help(void)
{
    printf("Usage: espdfuctl watch [--once] [--json]\n\n"
           "The station screen: one row per port with its chip, state, progress bar,\n"
           "rate, ETA and last result, redrawn as espdfud reports events, coloured by\n"
           "state on a terminal (not with NO_COLOR or TERM=dumb). When stdout is not a\n"
           "terminal, one line per event instead. Ctrl-C ends it (exit 0).\n\n"
           "  --once          print the screen once and exit\n"
           "  --json          every event as it comes, one JSON object per line;\n"
           "                  with --once, {\"devices\":[...],\"jobs\":[...]}\n" CTL_COMMON_HELP);
}

static int call_result(CtlConn *c, WireMethod method, json_object *params, json_object **ret)
{
    WireMessage m;
    int r = ctl_call(c, method, params, -1, &m);

    if (r < 0)
        return r;
    *ret = json_object_get(m.result);
    wire_message_done(&m);
    return 0;
}

/* Devices, then every recent job in id order: each port keeps its newest. */
static int snapshot(CtlConn *c, Station *s, json_object **ret_devices, json_object **ret_jobs)
{
    _cleanup_(json_object_putp) json_object *params = json_object_new_object();
    json_object *d = NULL, *j = NULL, *a;
    int r;

    json_object_object_add(params, "limit", json_object_new_int64(WATCH_JOBS_LIMIT));
    r = call_result(c, WIRE_METHOD_DEVICES, NULL, &d);
    if (r >= 0)
        r = call_result(c, WIRE_METHOD_JOBS, params, &j);
    if (r < 0) {
        json_object_put(d);
        return r;
    }
    a = jget(d, "devices");
    for (size_t i = 0; a && i < json_object_array_length(a); i++)
        station_device(s, json_object_array_get_idx(a, i));
    a = jget(j, "jobs");
    for (size_t i = 0; a && i < json_object_array_length(a); i++)
        station_job(s, json_object_array_get_idx(a, i));
    *ret_devices = d;
    *ret_jobs = j;
    return 0;
}

static int print_once(CtlConn *c, bool json)
{
    json_object *d = NULL, *j = NULL;
    Station s;
    int r;

    station_init(&s);
    r = snapshot(c, &s, &d, &j);
    if (r >= 0 && json) {
        _cleanup_(json_object_putp) json_object *o = json_object_new_object();

        json_object_object_add(o, "devices", json_object_get(jget(d, "devices")));
        json_object_object_add(o, "jobs", json_object_get(jget(j, "jobs")));
        ctl_print_json(o, false);
    } else if (r >= 0)
        station_render(&s, stdout, station_use_colour());
    json_object_put(d);
    json_object_put(j);
    station_done(&s);
    return r < 0 ? -r : CTL_EXIT_OK;
}

static void draw_screen(const Station *s)
{
    /* Home and clear, then the rows: a full redraw keeps resizes simple. */
    fputs("\033[H\033[2J", stdout);
    printf("espdfud on %s — Ctrl-C to quit\n\n", ctl_socket());
    station_render(s, stdout, station_use_colour());
    fflush(stdout);
}

/* One event: a line (pipe, --json) or a change to the screen. */
static int handle_event(Station *s, const WireMessage *m, bool json, bool live)
{
    char line[STATION_TEXT_MAX];

    if (json)
        ctl_print_json(m->root, true);
    else if (live)
        station_event(s, m);
    else if (station_event_line(m, line, sizeof(line))) {
        printf("%s\n", line);
        fflush(stdout);
    }
    if (m->event == WIRE_EVENT_DROPPED) {
        fprintf(stderr, "espdfuctl: espdfud dropped this client: %s\n",
                jstr(m->data, "reason") ?: "?");
        return -CTL_EXIT_FAILURE;
    }
    return 0;
}

static int event_loop(CtlConn *c, Station *s, bool json, bool live)
{
    bool dirty = live;

    while (!stop) {
        WireMessage m;
        int r;

        if (dirty) {
            draw_screen(s);
            dirty = false;
        }
        /* A bounded wait: a signal that lands just before poll() still ends us. */
        r = ctl_next_event(c, 1000, &m);
        if (r > 0)
            continue; /* a signal or a quiet second: the loop condition decides */
        if (r < 0)
            return -r;
        r = handle_event(s, &m, json, live);
        wire_message_done(&m);
        if (r < 0)
            return -r;
        /* Batch what else arrives within REDRAW_MS into one drawing. */
        while (live && !stop && (r = ctl_next_event(c, REDRAW_MS, &m)) == 0) {
            handle_event(s, &m, json, live);
            wire_message_done(&m);
        }
        dirty = live;
    }
    return CTL_EXIT_OK;
}

static int watch(bool json)
{
    _cleanup_(ctl_conn_freep) CtlConn *c = NULL;
    json_object *d = NULL, *j = NULL;
    bool live = !json && isatty(STDOUT_FILENO);
    Station s;
    WireMessage m;
    int r;

    r = ctl_connect(&c);
    if (r < 0)
        return -r;
    r = ctl_call(c, WIRE_METHOD_SUBSCRIBE, NULL, -1, &m);
    if (r < 0)
        return -r;
    wire_message_done(&m);
    station_init(&s);
    /* --json streams the raw events only; the screen needs the present state. */
    if (live)
        r = snapshot(c, &s, &d, &j);
    json_object_put(d);
    json_object_put(j);
    if (r >= 0) {
        if (live)
            fputs("\033[?25l", stdout); /* hide the cursor while redrawing */
        r = event_loop(c, &s, json, live);
        if (live)
            fputs("\033[?25h", stdout);
    } else
        r = -r;
    station_done(&s);
    return r;
}

int cmd_watch(int argc, char *argv[])
{
    static const struct option options[] = {
            CTL_COMMON_OPTIONS,
            {"once", no_argument, NULL, '1'},
            {},
    };
    struct sigaction sa = {.sa_handler = on_signal};
    bool json = false, once = false;
    int c;

    while ((c = getopt_long(argc, argv, ":h", options, NULL)) >= 0)
        switch (c) {
        case 'h':
            help();
            return CTL_EXIT_OK;
        case 'j':
            json = true;
            break;
        case '1':
            once = true;
            break;
        case CTL_OPT_SOCKET:
            ctl_set_socket(optarg);
            break;
        default:
            return ctl_bad_option("watch", c, argv);
        }
    if (optind != argc)
        return ctl_usage("watch", "no arguments expected");
    if (once) {
        _cleanup_(ctl_conn_freep) CtlConn *conn = NULL;
        int r = ctl_connect(&conn);

        return r < 0 ? -r : print_once(conn, json);
    }
    /* No SA_RESTART: poll() returns EINTR and the loop ends cleanly, exit 0. */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    return watch(json);
}
