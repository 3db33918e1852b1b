/* SPDX-License-Identifier: MIT */
/*
 * espdfuctl: the command-line client. This file is only the dispatcher: global
 * options, the command table, the overview with the exit codes, and the one
 * place that formats failures. Commands live in cmd-<group>.c.
 */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "conn.h"
#include "util.h"

#define PROGRAM "espdfuctl"

/* The build passes the project version; a stray compile still says something. */
#ifndef ESPDFU_VERSION
#define ESPDFU_VERSION "(unknown version)"
#endif

static const CtlCommand commands[] = {
        {
                .name = "inspect",
                .synopsis = "FILE [--json]",
                .summary = "Validate a dfu.bin and show what it holds",
                .run = cmd_inspect,
        },
        {
                .name = "pack",
                .synopsis = "-o OUT [--chip CHIP|--pid HEX] [ADDR FILE]...",
                .summary = "Build a dfu.bin byte-identical to ESP-IDF's mkdfu.py",
                .run = cmd_pack,
        },
        {
                .name = "status",
                .synopsis = "[--json]",
                .summary = "Boards, flashing, queued, results, paused, version",
                .needs_daemon = true,
                .run = cmd_status,
        },
        {
                .name = "devices",
                .synopsis = "[--json]",
                .summary = "The boards espdfud sees, one per port",
                .needs_daemon = true,
                .run = cmd_devices,
        },
        {
                .name = "jobs",
                .synopsis = "[--state S] [--path P] [--limit N] [--json]",
                .summary = "Flash jobs, newest last",
                .needs_daemon = true,
                .run = cmd_jobs,
        },
        {
                .name = "job",
                .synopsis = "ID [--json]",
                .summary = "One job in full: state history, progress, error",
                .needs_daemon = true,
                .run = cmd_job,
        },
        {
                .name = "history",
                .synopsis =
                        "[--path P] [--result R] [--since TIME] [--format F] [--state-dir DIR] ...",
                .summary = "Finished jobs as recorded on disk, across restarts; csv/jsonl export",
                .needs_daemon = true,
                .run = cmd_history,
        },
        {
                .name = "flash",
                .synopsis = "IMAGE [--path P]... [--all] [--chip C] [--wait] [--json] ...",
                .summary = "Queue jobs that write IMAGE (opened by you) to boards",
                .needs_daemon = true,
                .run = cmd_flash,
        },
        {
                .name = "cancel",
                .synopsis = "ID [--json]",
                .summary = "Cancel a queued or running job",
                .needs_daemon = true,
                .run = cmd_cancel,
        },
        {
                .name = "watch",
                .synopsis = "[--once] [--json]",
                .summary = "The station screen: every port, live",
                .needs_daemon = true,
                .run = cmd_watch,
        },
        {
                .name = "pause",
                .synopsis = "[--json]",
                .summary = "Stop flashing arriving boards by the rules",
                .needs_daemon = true,
                .run = cmd_pause,
        },
        {
                .name = "resume",
                .synopsis = "[--json]",
                .summary = "Flash arriving boards by the rules again",
                .needs_daemon = true,
                .run = cmd_resume,
        },
        {
                .name = "reload",
                .synopsis = "[--json]",
                .summary = "Re-read espdfud's configuration",
                .needs_daemon = true,
                .run = cmd_reload,
        },
};

const char *ctl_exit_describe(CtlExit e)
{
    switch (e) {
    case CTL_EXIT_OK:
        return "success (inspect: the image is valid)";
    case CTL_EXIT_FAILURE:
        return "failure: invalid image, refused input, I/O error";
    case CTL_EXIT_USAGE:
        return "usage error: unknown command or option, malformed argument";
    case CTL_EXIT_UNREACHABLE:
        return "espdfud is not reachable (daemon commands; history: nor its database)";
    case CTL_EXIT_PERMISSION:
        return "permission denied by espdfud";
    case CTL_EXIT_NOT_FOUND:
        return "no such device or job";
    case CTL_EXIT_JOB_FAILED:
        return "the flash job failed";
    case _CTL_EXIT_MAX:
        break;
    }
    return NULL;
}

int ctl_error(int exit_code, const char *context, const ErrInfo *e)
{
    fprintf(stderr, PROGRAM ": %s: %s [%s]\n", context, e->message,
            espdfu_err_to_string(e->code) ?: "?");
    return exit_code;
}

int ctl_usage(const char *command, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, PROGRAM "%s%s: ", command ? " " : "", command ?: "");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry '" PROGRAM "%s%s --help'.\n", command ? " " : "", command ?: "");
    return CTL_EXIT_USAGE;
}

int ctl_bad_option(const char *command, int c, char *const argv[])
{
    if (c == ':')
        return ctl_usage(command, "option '%s' needs an argument", argv[optind - 1]);
    if (optopt)
        return ctl_usage(command, "unknown option '-%c'", optopt);
    return ctl_usage(command, "unknown option '%s'", argv[optind - 1]);
}

int ctl_common_args(const char *command, int argc, char *argv[], const char *usage, bool *json)
{
    static const struct option options[] = {
            CTL_COMMON_OPTIONS,
            {},
    };
    int c;

    while ((c = getopt_long(argc, argv, ":h", options, NULL)) >= 0)
        switch (c) {
        case 'h':
            printf("%s\n" CTL_COMMON_HELP, usage);
            return CTL_EXIT_OK;
        case 'j':
            *json = true;
            break;
        case CTL_OPT_SOCKET:
            ctl_set_socket(optarg);
            break;
        default:
            return ctl_bad_option(command, c, argv);
        }
    return -1;
}

static void list_commands(bool needs_daemon, const char *title)
{
    bool any = false;

    for (size_t i = 0; i < ELEMENTSOF(commands); i++) {
        if (commands[i].needs_daemon != needs_daemon)
            continue;
        if (!any)
            printf("\n%s:\n", title);
        any = true;
        printf("  %-8s %s\n  %-8s   %s\n", commands[i].name, commands[i].synopsis, "",
               commands[i].summary);
    }
}

static void help(void)
{
    printf("Usage: " PROGRAM " [--help] [--version] [--socket PATH] COMMAND [ARGS]...\n\n"
           "Flash ESP32-S2/S3/P4 boards over USB DFU through espdfud, and work with the\n"
           "dfu.bin images ESP-IDF's `idf.py dfu` makes.\n\n"
           "  --socket PATH  espdfud's control socket (also $ESPDFU_SOCKET;\n"
           "                 default " CTL_DEFAULT_SOCKET ")\n");
    list_commands(true, "Commands that talk to espdfud");
    list_commands(false, "Commands that need no daemon");
    printf("\nRun '" PROGRAM " COMMAND --help' (or '" PROGRAM " help COMMAND') for its options.\n\n"
           "Exit status:\n");
    for (CtlExit e = 0; e < _CTL_EXIT_MAX; e++)
        printf("  %d  %s\n", (int)e, ctl_exit_describe(e));
}

static const CtlCommand *find_command(const char *name)
{
    for (size_t i = 0; i < ELEMENTSOF(commands); i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

static int run_command(const CtlCommand *cmd, int argc, char *argv[])
{
    /* A fresh getopt for the command: optind 0 makes glibc reinitialise. */
    optind = 0;
    opterr = 0;
    return cmd->run(argc, argv);
}

/* `espdfuctl help [COMMAND]` is `espdfuctl COMMAND --help`. */
static int help_command(int argc, char *argv[])
{
    const CtlCommand *cmd;
    char *args[] = {NULL, (char *)"--help", NULL};

    if (argc < 2) {
        help();
        return CTL_EXIT_OK;
    }
    cmd = find_command(argv[1]);
    if (!cmd)
        return ctl_usage(NULL, "unknown command '%s'", argv[1]);
    args[0] = (char *)cmd->name;
    return run_command(cmd, 2, args);
}

int main(int argc, char *argv[])
{
    static const struct option options[] = {
            {"help", no_argument, NULL, 'h'},
            {"version", no_argument, NULL, 'V'},
            {"socket", required_argument, NULL, CTL_OPT_SOCKET},
            {},
    };
    const CtlCommand *cmd;
    int c;

    /* '+': stop at the command name; what follows belongs to the command. */
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+:hV", options, NULL)) >= 0)
        switch (c) {
        case 'h':
            help();
            return CTL_EXIT_OK;
        case 'V':
            printf(PROGRAM " %s\n", ESPDFU_VERSION);
            return CTL_EXIT_OK;
        case CTL_OPT_SOCKET:
            ctl_set_socket(optarg);
            break;
        default:
            return ctl_bad_option(NULL, c, argv);
        }
    if (optind >= argc)
        return ctl_usage(NULL, "no command given");
    if (strcmp(argv[optind], "help") == 0)
        return help_command(argc - optind, argv + optind);
    cmd = find_command(argv[optind]);
    if (!cmd)
        return ctl_usage(NULL, "unknown command '%s'", argv[optind]);
    return run_command(cmd, argc - optind, argv + optind);
}
