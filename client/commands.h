/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * espdfuctl's commands. Each command group lives in its own cmd-<group>.c and
 * exports its entry points here; espdfuctl.c holds the table that dispatches to
 * them and prints the overview. A command gets argv with argv[0] set to its own
 * name, parses its own options (getopt_long, reset by the dispatcher), and
 * returns a CtlExit. Failures are printed only through ctl_error()/ctl_usage(),
 * so every command reports them in the same shape.
 */

#include <stdbool.h>

#include "errcode.h"

/*
 * The exit status is an interface: station scripts branch on it. Only append;
 * `espdfuctl --help` prints this list from ctl_exit_describe().
 */
typedef enum CtlExit {
    CTL_EXIT_OK = 0,
    CTL_EXIT_FAILURE = 1,     /* failed: invalid image, refused input, I/O error */
    CTL_EXIT_USAGE = 2,       /* unknown command or option, malformed argument */
    CTL_EXIT_UNREACHABLE = 3, /* espdfud's socket cannot be reached */
    CTL_EXIT_PERMISSION = 4,  /* espdfud refused the request for this user */
    CTL_EXIT_NOT_FOUND = 5,   /* no such device or job */
    CTL_EXIT_JOB_FAILED = 6,  /* the flash job ran and failed */
    _CTL_EXIT_MAX,
} CtlExit;

const char *ctl_exit_describe(CtlExit e);

typedef struct CtlCommand {
    const char *name;
    const char *synopsis; /* what follows the name in the overview */
    const char *summary;
    bool needs_daemon;
    int (*run)(int argc, char *argv[]);
} CtlCommand;

/* cmd-inspect.c */
int cmd_inspect(int argc, char *argv[]);

/* cmd-pack.c */
int cmd_pack(int argc, char *argv[]);

/* cmd-status.c: status, devices, pause, resume, reload */
int cmd_status(int argc, char *argv[]);
int cmd_devices(int argc, char *argv[]);
int cmd_pause(int argc, char *argv[]);
int cmd_resume(int argc, char *argv[]);
int cmd_reload(int argc, char *argv[]);

/* cmd-jobs.c: jobs, job, cancel */
int cmd_jobs(int argc, char *argv[]);
int cmd_job(int argc, char *argv[]);
int cmd_cancel(int argc, char *argv[]);

/* cmd-history.c */
int cmd_history(int argc, char *argv[]);

/* cmd-flash.c */
int cmd_flash(int argc, char *argv[]);

/* cmd-watch.c */
int cmd_watch(int argc, char *argv[]);

/* Options every daemon command takes, for its getopt_long table. */
#define CTL_OPT_SOCKET 0x100
#define CTL_COMMON_OPTIONS                                              \
    {"help", no_argument, NULL, 'h'}, {"json", no_argument, NULL, 'j'}, \
    {                                                                   \
        "socket", required_argument, NULL, CTL_OPT_SOCKET               \
    }
#define CTL_COMMON_HELP                                                          \
    "  --json          print the daemon's answer as JSON\n"                      \
    "  --socket PATH   espdfud's control socket (default $ESPDFU_SOCKET, else\n" \
    "                  /run/espdfud/espdfud.sock)\n"                             \
    "  -h, --help      this text\n"

/*
 * For commands with only the common options: parses them, printing help
 * (usage: the text before CTL_COMMON_HELP). Returns -1 to go on, with optind
 * at the first operand, or the exit code to return.
 */
int ctl_common_args(const char *command, int argc, char *argv[], const char *usage, bool *json);

/* espdfuctl.c */

/* "espdfuctl: CONTEXT: message [code]" on stderr; returns exit_code. */
int ctl_error(int exit_code, const char *context, const ErrInfo *e);

/* "espdfuctl COMMAND: message" and a pointer to --help on stderr; returns CTL_EXIT_USAGE. */
int ctl_usage(const char *command, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* For getopt_long's '?' and ':' (optstring starts with ':', opterr = 0). */
int ctl_bad_option(const char *command, int c, char *const argv[]);
