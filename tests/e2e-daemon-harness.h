/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The test bed of the end-to-end tests that drive the real espdfud under
 * emulated boards and watch it from outside (e2e-daemon.c, e2e-store.c): a
 * testbed, a temp directory with the config, the log and the state dir, the
 * daemon started and stopped there, and waits that iterate the emulator.
 * Static functions, like e2e-check.h: each e2e test is its own binary.
 */

#include <errno.h>
#include <glib.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "e2e-check.h"
#include "emu.h"

#define FIXTURE FIXTURES_DIR "/mkdfu/1/dfu.bin"
#define SUFFIX  16u

typedef struct Ctx {
    Emu *e;
    char *dir;
    char *conf;
    char *log;
    EmuChild *daemon;
    pid_t pid;
    uint8_t *file; /* the fixture image */
    size_t len;
    char *notify_path; /* NOTIFY_SOCKET the daemon reports to */
    int notify_fd;
    GString *notify; /* every sd_notify datagram received, one per line */
} Ctx;

/* ---- the test bed ---- */

static void ctx_init(Ctx *c)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    gsize n = 0;
    int r;

    *c = (Ctx){};
    r = emu_new(&c->e);
    if (r < 0) {
        fprintf(stderr, "FAIL: cannot create the umockdev testbed: %s\n", g_strerror(-r));
        exit(1);
    }
    c->dir = g_dir_make_tmp("e2e-daemon-XXXXXX", NULL);
    c->conf = g_build_filename(c->dir, "espdfud.conf", NULL);
    c->log = g_build_filename(c->dir, "espdfud.log", NULL);
    if (!c->dir || !g_file_get_contents(FIXTURE, (char **)&c->file, &n, NULL) || n <= SUFFIX) {
        fprintf(stderr, "FAIL: cannot set up %s\n", FIXTURE);
        exit(1);
    }
    c->len = n;
    c->notify = g_string_new(NULL);
    c->notify_path = g_build_filename(c->dir, "notify", NULL);
    c->notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", c->notify_path);
    if (c->notify_fd < 0 || bind(c->notify_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        fprintf(stderr, "FAIL: cannot bind %s\n", c->notify_path);
        exit(1);
    }
}

/* What the daemon told "systemd" so far. */
static const char *notify_messages(Ctx *c)
{
    char buf[4096];
    ssize_t n;

    while ((n = recv(c->notify_fd, buf, sizeof(buf) - 1, 0)) > 0) {
        buf[n] = '\0';
        g_string_append_printf(c->notify, "%s\n", buf);
    }
    return c->notify->str;
}

static void ctx_done(Ctx *c)
{
    e2e_teardown(c->e, c->daemon, c->pid, c->log, c->dir, 0);
    close(c->notify_fd);
    g_string_free(c->notify, TRUE);
    g_free(c->notify_path);
    g_free(c->dir);
    g_free(c->conf);
    g_free(c->log);
    g_free(c->file);
}

static EmuBoard *plug(Ctx *c, const char *path, const char *spec)
{
    return e2e_plug(c->e, path, spec);
}

/* [daemon] settings plus one rule for every board, on the fixture image. */
static void write_config(Ctx *c, const char *daemon_keys, const char *rule_keys)
{
    /* Each daemon its own control socket: cases run in parallel. */
    g_autofree char *sock = g_build_filename(c->dir, "espdfud.sock", NULL);
    g_autofree char *text =
            g_strdup_printf("[daemon]\nsocket = %s\nstate-dir = %s/state\n%s\n[rule all]\n"
                            "image = %s\n%s\n",
                            sock, c->dir, daemon_keys, FIXTURE, rule_keys);

    if (!g_file_set_contents(c->conf, text, -1, NULL)) {
        fprintf(stderr, "FAIL: cannot write %s\n", c->conf);
        exit(1);
    }
}

/*
 * espdfud under the testbed, stderr into c->log; back once its udev monitor
 * listens. setpriv makes it die with this program, so a test killed by its
 * timeout leaves no daemon behind.
 */
static bool daemon_start(Ctx *c)
{
    char *argv[] = {"/bin/sh",
                    "-c",
                    "exec setpriv --pdeathsig KILL -- \"$0\" \"$@\" 2>>\"$ESPDFU_TEST_LOG\"",
                    ESPDFUD,
                    "--config",
                    c->conf,
                    "--log-level",
                    "debug",
                    NULL};
    g_autofree char *logenv = g_strdup_printf("ESPDFU_TEST_LOG=%s", c->log);
    g_autofree char *notifyenv = g_strdup_printf("NOTIFY_SOCKET=%s", c->notify_path);
    /* As systemd with WatchdogSec=1s: WATCHDOG=1 every half of it. */
    char *env[] = {logenv, notifyenv, "WATCHDOG_USEC=1000000", NULL};
    int r;

    r = emu_spawn(c->e, argv, env, false, &c->daemon);
    if (r < 0) {
        fprintf(stderr, "cannot start espdfud: %s\n", g_strerror(-r));
        return false;
    }
    c->pid = emu_child_pid(c->daemon);
    r = emu_wait_listener(c->e, c->pid, 20000);
    if (r < 0)
        fprintf(stderr, "espdfud's udev monitor never bound: %s\n", g_strerror(-r));
    return r >= 0;
}

/* SIGTERM; the exit status (or -1), and how long it took in *ms. */
static int daemon_stop(Ctx *c, int timeout_ms, double *ms)
{
    int64_t t0 = g_get_monotonic_time();
    int status = -1, r;

    notify_messages(c); /* room for STOPPING=1 and the last STATUS= */
    kill(c->pid, SIGTERM);
    r = emu_wait_child(c->e, c->daemon, timeout_ms, &status, NULL);
    c->daemon = NULL;
    if (ms)
        *ms = (double)(g_get_monotonic_time() - t0) / 1000.0;
    return r < 0 ? -1 : status;
}

typedef struct Until {
    Ctx *c;
    bool (*done)(void *data);
    void *data;
} Until;

static bool until_step(void *data)
{
    Until *u = data;

    /* Read on every step: the daemon's sd_notify() blocks once about ten
     * datagrams wait unread (net.unix.max_dgram_qlen), as it would with a
     * systemd that stopped reading. */
    notify_messages(u->c);
    return u->done && u->done(u->data);
}

/* Iterate the emulator until done(data), or for timeout_ms. */
static bool wait_until(Ctx *c, bool (*done)(void *data), void *data, int timeout_ms)
{
    Until u = {.c = c, .done = done, .data = data};

    return emu_iterate_until(c->e, until_step, &u, timeout_ms);
}

static void pause_ms(Ctx *c, int ms)
{
    wait_until(c, NULL, NULL, ms);
}

static bool received_image(Ctx *c, EmuBoard *b)
{
    return e2e_received(b, c->file, c->len);
}

static EmuBoardInfo info_of(EmuBoard *b)
{
    return e2e_info(b);
}
