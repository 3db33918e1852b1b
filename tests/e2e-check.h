/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * What the end-to-end tests share (e2e-daemon.c, e2e-server.c, e2e-client.c):
 * check() reports file:line and the expression and counts a failure; require()
 * also ends the case at its "out:" label; remove_tree() cleans a case's temp
 * directory; e2e_main() runs the case named on the command line. Each e2e test
 * is its own binary, so the counter is one per program.
 */

#include <glib.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "emu.h"

static int failures;

static bool check_at(bool ok, const char *expr, const char *file, int line, const char *fmt, ...)
        __attribute__((format(printf, 5, 6)));

static bool check_at(bool ok, const char *expr, const char *file, int line, const char *fmt, ...)
{
    va_list ap;

    if (ok)
        return true;
    fprintf(stderr, "FAIL %s:%d: %s: ", file, line, expr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    failures++;
    return false;
}

/* Each condition is evaluated once: some start daemons or plug boards. */
#define check(cond, ...) check_at(!!(cond), #cond, __FILE__, __LINE__, __VA_ARGS__)

/* Stop the case: the rest would only add noise. */
#define require(cond, ...)             \
    do {                               \
        if (!check(cond, __VA_ARGS__)) \
            goto out;                  \
    } while (0)

/* Remove dir and everything below it; a symlink is removed, never followed. */
static void remove_tree(const char *dir)
{
    GDir *d = g_dir_open(dir, 0, NULL);
    const char *name;

    while (d && (name = g_dir_read_name(d))) {
        g_autofree char *p = g_build_filename(dir, name, NULL);

        if (g_file_test(p, G_FILE_TEST_IS_DIR) && !g_file_test(p, G_FILE_TEST_IS_SYMLINK))
            remove_tree(p);
        else
            unlink(p);
    }
    if (d)
        g_dir_close(d);
    rmdir(dir);
}

/*
 * The end of a case's bed: espdfud killed and reaped, the testbed freed, the
 * daemon's log shown when the case failed (its last `tail` bytes; 0: all of
 * it), the case's directory removed unless E2E_KEEP=1 keeps it for a look.
 */
static inline void e2e_teardown(Emu *e, EmuChild *daemon, pid_t pid, const char *log,
                                const char *dir, size_t tail)
{
    if (daemon) {
        kill(pid, SIGKILL);
        emu_wait_child(e, daemon, 5000, &(int){0}, NULL);
    }
    emu_free(e);
    if (failures) {
        g_autofree char *text = NULL;

        if (g_file_get_contents(log, &text, NULL, NULL))
            fprintf(stderr, "---- espdfud's log%s:\n%s---- end of log\n",
                    tail && strlen(text) > tail ? " (tail)" : "",
                    tail && strlen(text) > tail ? text + strlen(text) - tail : text);
    }
    if (!getenv("E2E_KEEP"))
        remove_tree(dir);
}

/* ---- the emulated boards every e2e harness plugs ---- */

#define E2E_SUFFIX 16u /* a dfu.bin's DFU suffix: what a board does not receive */

/* A board plugged into the testbed; the case ends (exit 1) saying why when it cannot be. */
static inline EmuBoard *e2e_plug(Emu *e, const char *path, const char *spec)
{
    EmuBoardConfig cfg;
    EmuBoard *b = NULL;
    g_autofree char *err = NULL;
    int r;

    if (emu_board_config_parse(spec, &cfg, &err) < 0) {
        fprintf(stderr, "FAIL: board spec %s: %s\n", spec, err ? err : "");
        exit(1);
    }
    r = emu_add_board(e, path, &cfg, &b);
    if (r < 0) {
        fprintf(stderr, "FAIL: cannot plug %s %s: %s\n", path, spec, g_strerror(-r));
        exit(1);
    }
    return b;
}

/* The board received the image (file, len bytes) minus its suffix, byte for byte. */
static inline bool e2e_received(EmuBoard *b, const uint8_t *file, size_t len)
{
    g_autofree uint8_t *got = NULL;
    size_t n = 0;

    emu_board_received(b, &got, &n);
    return len > E2E_SUFFIX && n == len - E2E_SUFFIX && memcmp(got, file, n) == 0;
}

static inline EmuBoardInfo e2e_info(EmuBoard *b)
{
    EmuBoardInfo i;

    emu_board_info(b, &i);
    return i;
}

typedef struct E2eCase {
    const char *name;
    void (*fn)(void);
} E2eCase;

/* `PROGRAM CASE`: 0 passed, 1 failed, 2 usage or unknown case. */
static int e2e_main(int argc, char **argv, const E2eCase *cases, size_t n_cases)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CASE\n", argv[0]);
        return 2;
    }
    /* The testbed's owner must not run under the umockdev preload (emu.h). */
    if (emu_reexec_without_preload(argv) < 0)
        return 1;
    for (size_t i = 0; i < n_cases; i++)
        if (strcmp(argv[1], cases[i].name) == 0) {
            cases[i].fn();
            fprintf(stderr, "%s: %s\n", argv[1], failures ? "FAILED" : "passed");
            return failures ? 1 : 0;
        }
    fprintf(stderr, "unknown case %s\n", argv[1]);
    return 2;
}
