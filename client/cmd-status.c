/* SPDX-License-Identifier: MIT */
/*
 * espdfuctl status, devices, pause, resume, reload: one request each, the
 * result printed for people (or as JSON with --json).
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "commands.h"
#include "conn.h"
#include "format.h"
#include "util.h"

static double now_unix(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Laid out like `systemctl status`: a headline, then aligned fields. */
static int print_status(json_object *r)
{
    char up[FMT_SIZE_MAX];
    bool paused = json_object_get_boolean(jget(r, "paused"));

    printf("● espdfud %s - %s\n", jstr(r, "version") ?: "?",
           paused ? "auto-flash paused" : "running");
    printf("      Socket: %s\n", ctl_socket());
    printf("      Uptime: %s\n", fmt_duration(jnum(r, "uptime"), up, sizeof(up)));
    printf("      Boards: %lld\n", (long long)jint(r, "devices"));
    printf("    Flashing: %lld\n", (long long)jint(r, "flashing"));
    printf("      Queued: %lld\n", (long long)jint(r, "queued"));
    printf("          OK: %lld\n", (long long)jint(r, "succeeded"));
    printf("      Failed: %lld\n", (long long)jint(r, "failed"));
    printf("   Cancelled: %lld\n", (long long)jint(r, "cancelled"));
    /* Only when it matters: job records not on disk yet (a full disk), or no store at all. */
    if (jget(r, "store_open") && !json_object_get_boolean(jget(r, "store_open")))
        printf("   Job store: NOT OPEN, no job is accepted: %s\n",
               jstr(r, "history_error") ?: "opening");
    else if (jint(r, "history_pending") > 0 || jstr(r, "history_error"))
        printf("   Job store: %lld records not written yet: %s\n",
               (long long)jint(r, "history_pending"), jstr(r, "history_error") ?: "?");
    if (jint(r, "history_dropped") > 0)
        printf("   Job store: %lld records LOST (more waited than memory holds)\n",
               (long long)jint(r, "history_dropped"));
    printf("  Auto-flash: %s\n", paused ? "paused (espdfuctl resume)" : "on");
    printf("     Workers: %lld\n", (long long)jint(r, "workers"));
    printf("    Protocol: %lld\n", (long long)jint(r, "protocol"));
    return CTL_EXIT_OK;
}

int cmd_status(int argc, char *argv[])
{
    bool json = false;
    int r;

    r = ctl_common_args("status", argc, argv,
                        "Usage: espdfuctl status [--json]\n\n"
                        "What espdfud is doing: boards present, jobs flashing and queued,\n"
                        "results so far, whether auto-flash is paused, its version.\n",
                        &json);
    if (r >= 0)
        return r;
    if (optind != argc)
        return ctl_usage("status", "no arguments expected");
    return ctl_request(WIRE_METHOD_STATUS, NULL, json, print_status);
}

static void device_row(Table *t, json_object *d, double now)
{
    char busdev[16], since[FMT_SIZE_MAX], job[24] = "-";
    int64_t id = jint(d, "job");

    snprintf(busdev, sizeof(busdev), "%03lld:%03lld", (long long)jint(d, "busnum"),
             (long long)jint(d, "devnum"));
    if (id >= 0)
        snprintf(job, sizeof(job), "%lld", (long long)id);
    table_add(t, (const char *const[]){
                         jstr(d, "path"), jstr(d, "chip"), jstr(d, "mode"), jstr(d, "state"),
                         busdev, fmt_since(now, jnum(d, "arrived"), since, sizeof(since)), job});
}

static int print_devices(json_object *r)
{
    static const char *const header[] = {"PATH",    "CHIP",  "MODE", "STATE",
                                         "BUS:DEV", "SINCE", "JOB"};
    _cleanup_(table_freep) Table *t = NULL;
    json_object *devices = jget(r, "devices");
    size_t n = devices ? json_object_array_length(devices) : 0;
    double now = now_unix();

    if (table_new(header, ELEMENTSOF(header), &t) < 0)
        return CTL_EXIT_FAILURE;
    for (size_t i = 0; i < n; i++)
        device_row(t, json_object_array_get_idx(devices, i), now);
    if (n == 0) {
        printf("No boards.\n");
        return CTL_EXIT_OK;
    }
    table_print(t, stdout);
    return CTL_EXIT_OK;
}

int cmd_devices(int argc, char *argv[])
{
    bool json = false;
    int r;

    r = ctl_common_args("devices", argc, argv,
                        "Usage: espdfuctl devices [--json]\n\n"
                        "The boards espdfud sees, in port order: port path, chip, USB mode\n"
                        "(dfu, runtime), state, bus:device number, how long ago it arrived,\n"
                        "and the job it is in.\n",
                        &json);
    if (r >= 0)
        return r;
    if (optind != argc)
        return ctl_usage("devices", "no arguments expected");
    return ctl_request(WIRE_METHOD_DEVICES, NULL, json, print_devices);
}

static int print_paused(json_object *r)
{
    printf(json_object_get_boolean(jget(r, "paused"))
                   ? "Auto-flash paused; jobs already queued still run.\n"
                   : "Auto-flash resumed.\n");
    return CTL_EXIT_OK;
}

static int print_reloaded(json_object *r)
{
    printf("Configuration reloaded.\n");
    return CTL_EXIT_OK;
}

static int simple_command(const char *name, WireMethod method, int argc, char *argv[],
                          const char *usage, int (*print)(json_object *))
{
    bool json = false;
    int r;

    r = ctl_common_args(name, argc, argv, usage, &json);
    if (r >= 0)
        return r;
    if (optind != argc)
        return ctl_usage(name, "no arguments expected");
    return ctl_request(method, NULL, json, print);
}

int cmd_pause(int argc, char *argv[])
{
    return simple_command("pause", WIRE_METHOD_PAUSE, argc, argv,
                          "Usage: espdfuctl pause [--json]\n\n"
                          "Stop queuing jobs for arriving boards by the rules. Jobs already\n"
                          "queued still run; `espdfuctl flash` still works. Not saved across\n"
                          "restarts. Needs root or espdfud's group.\n",
                          print_paused);
}

int cmd_resume(int argc, char *argv[])
{
    return simple_command("resume", WIRE_METHOD_RESUME, argc, argv,
                          "Usage: espdfuctl resume [--json]\n\n"
                          "Flash arriving boards by the rules again. Needs root or espdfud's\n"
                          "group.\n",
                          print_paused);
}

int cmd_reload(int argc, char *argv[])
{
    return simple_command("reload", WIRE_METHOD_RELOAD, argc, argv,
                          "Usage: espdfuctl reload [--json]\n\n"
                          "Re-read espdfud's configuration file, as SIGHUP does. An invalid\n"
                          "file is refused with its first error and the running configuration\n"
                          "stays (exit 1). Needs root or espdfud's group.\n",
                          print_reloaded);
}
