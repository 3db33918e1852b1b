/* SPDX-License-Identifier: MIT */
/*
 * espdfu-emu: emulated Espressif boards around one command.
 *
 *   espdfu-emu --board 1-1:esp32s2:dfu --expect dfu.bin -- dfu-util -D dfu.bin
 *
 * Builds a umockdev testbed, plugs the boards (before the command starts, or
 * one after another once its uevent listener is up, with --plug-interval),
 * runs the command with the testbed's environment, then reports what every
 * board received. --control opens a line-protocol socket to plug and unplug
 * boards while the command runs. docs/emulator.md has the details.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <glib-unix.h>
#include <glib/gstdio.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "emu.h"

#define EXIT_EXPECT      1 /* the command succeeded but a board did not get the image */
#define EXIT_USAGE       2
#define EXIT_TIMEOUT     124 /* as timeout(1) */
#define EXIT_SETUP       125 /* the emulator itself failed */
#define CTL_LINE_MAX     1024u
#define CTL_CLIENTS_MAX  8u
#define LISTENER_WAIT_MS 10000

#define log_err(...) fprintf(stderr, "espdfu-emu: " __VA_ARGS__)

typedef struct BoardArg {
    char path[EMU_PATH_MAX];
    EmuBoardConfig cfg;
} BoardArg;

typedef struct Options {
    GArray *boards;       /* BoardArg */
    int plug_interval_ms; /* -1: all boards before the command */
    unsigned listeners;   /* hotplug once this many uevent listeners are up */
    const char *expect, *received_dir, *report_json, *control;
    int timeout_s;
    char **command;
} Options;

typedef struct CtlClient {
    int fd;
    GSource *src;
    char buf[CTL_LINE_MAX];
    size_t len;
} CtlClient;

typedef struct App {
    Options opt;
    Emu *emu;
    EmuChild *child;
    pid_t child_pid;
    int listen_fd;
    GSource *listen_src;
    GPtrArray *clients; /* CtlClient* */
    unsigned next_plug;
    bool stop;
} App;

static void usage(FILE *f)
{
    fputs("usage: espdfu-emu [OPTIONS] [-- COMMAND [ARGS...]]\n"
          "       espdfu-emu --send SOCKET WORDS...\n"
          "  --board PATH:CHIP[:MODE][,KEY=VALUE...]  a board (repeat for more); CHIP esp32s2|\n"
          "        esp32s3|esp32p4|esp32s31, MODE dfu (default)|runtime; KEYs transfer, poll,\n"
          "        erase, max-payload, error-at, status, stall-at, hang-at, unplug-at,\n"
          "        fault-attempts, attrs, rt-attrs, detach-timeout, detach-delay, reenum-delay,\n"
          "        unplug-after, replug-after\n"
          "  --plug-interval MS     plug the boards one by one, MS apart, once COMMAND listens\n"
          "  --listeners N          ... once N uevent listeners are up (default 1)\n"
          "  --expect FILE          exit 1 unless every board received FILE minus its suffix\n"
          "  --received-dir DIR     write DIR/PATH.bin with what each board received\n"
          "  --report-json FILE     write the per-board report\n"
          "  --control SOCKET       accept plug/unplug/replug/report lines on a Unix socket\n"
          "  --timeout SEC          kill COMMAND after SEC seconds (exit 124)\n"
          "Without COMMAND the boards stay until SIGINT/SIGTERM.\n",
          f);
}

/* ---- the --send client ---- */

static int send_command(int argc, char **argv)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    g_autofree char *line = NULL;
    char reply[64 * 1024];
    size_t len = 0;
    ssize_t n;
    int fd;

    if (argc < 2 || strlen(argv[0]) >= sizeof(sa.sun_path)) {
        usage(stderr);
        return EXIT_USAGE;
    }
    strcpy(sa.sun_path, argv[0]);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        log_err("%s: %s\n", argv[0], strerror(errno));
        return EXIT_SETUP;
    }
    line = g_strjoinv(" ", argv + 1);
    if (write(fd, line, strlen(line)) < 0 || write(fd, "\n", 1) < 0) {
        log_err("%s: %s\n", argv[0], strerror(errno));
        close(fd);
        return EXIT_SETUP;
    }
    while (len < sizeof(reply) - 1 && (n = read(fd, reply + len, sizeof(reply) - 1 - len)) > 0) {
        len += (size_t)n;
        if (memchr(reply, '\n', len))
            break;
    }
    close(fd);
    reply[len] = '\0';
    fputs(reply, stdout);
    return len == 0 || g_str_has_prefix(reply, "error") ? 1 : 0;
}

/* ---- options ---- */

static int parse_board(const char *arg, BoardArg *ret)
{
    const char *colon = strchr(arg, ':');
    g_autofree char *err = NULL;

    if (!colon || (size_t)(colon - arg) >= sizeof(ret->path)) {
        log_err("--board %s: want PATH:CHIP[:MODE][,...]\n", arg);
        return -EINVAL;
    }
    memset(ret, 0, sizeof(*ret));
    memcpy(ret->path, arg, (size_t)(colon - arg));
    if (emu_board_config_parse(colon + 1, &ret->cfg, &err) < 0) {
        log_err("--board %s: %s\n", arg, err);
        return -EINVAL;
    }
    return 0;
}

static bool parse_ms(const char *s, int max, int *ret)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < 0 || v > max)
        return false;
    *ret = (int)v;
    return true;
}

static int parse_options(int argc, char **argv, Options *o)
{
    static const struct option longopts[] = {
            {"board", required_argument, NULL, 'b'},
            {"plug-interval", required_argument, NULL, 'i'},
            {"listeners", required_argument, NULL, 'l'},
            {"expect", required_argument, NULL, 'e'},
            {"received-dir", required_argument, NULL, 'r'},
            {"report-json", required_argument, NULL, 'j'},
            {"control", required_argument, NULL, 'c'},
            {"timeout", required_argument, NULL, 't'},
            {"help", no_argument, NULL, 'h'},
            {},
    };
    BoardArg b;
    int c, v;

    o->plug_interval_ms = -1;
    o->timeout_s = -1;
    o->listeners = 1;
    while ((c = getopt_long(argc, argv, "+b:i:l:e:r:j:c:t:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'b':
            if (parse_board(optarg, &b) < 0)
                return -EINVAL;
            g_array_append_val(o->boards, b);
            break;
        case 'i':
            if (!parse_ms(optarg, 3600000, &o->plug_interval_ms))
                goto bad;
            break;
        case 'l':
            if (!parse_ms(optarg, 64, &v))
                goto bad;
            o->listeners = (unsigned)v;
            break;
        case 'e':
            o->expect = optarg;
            break;
        case 'r':
            o->received_dir = optarg;
            break;
        case 'j':
            o->report_json = optarg;
            break;
        case 'c':
            o->control = optarg;
            break;
        case 't':
            if (!parse_ms(optarg, 86400, &o->timeout_s))
                goto bad;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -EINVAL;
        }
    }
    o->command = optind < argc ? argv + optind : NULL;
    return 0;
bad:
    log_err("bad value \"%s\"\n", optarg);
    return -EINVAL;
}

/* ---- the control socket: one command per line, one reply line each ---- */

static char *ctl_plug(App *a, char **w)
{
    g_autofree char *spec = NULL;
    g_autofree char *err = NULL;
    EmuBoardConfig cfg;
    EmuBoard *b;
    EmuBoardInfo info;
    int r;

    if (!w[1] || !w[2])
        return g_strdup("error usage: plug PATH CHIP[:MODE][,KEY=VALUE...]");
    /* "esp32s2 runtime,erase=10" works as well as "esp32s2:runtime,erase=10" */
    spec = g_strdup(w[2]);
    for (size_t i = 3; w[i]; i++) {
        g_autofree char *prev = spec;
        g_autofree char *head = g_strndup(w[i], strcspn(w[i], ","));
        bool mode = i == 3 && !strchr(w[2], ':') && !strchr(w[2], ',') &&
                    emu_mode_from_string(head) != _EMU_MODE_MAX;

        spec = g_strconcat(prev, mode ? ":" : ",", w[i], NULL);
    }
    if (emu_board_config_parse(spec, &cfg, &err) < 0)
        return g_strdup_printf("error %s", err);
    b = emu_find_board(a->emu, w[1]);
    r = b ? emu_board_replug(b, cfg.mode) : emu_add_board(a->emu, w[1], &cfg, &b);
    if (r < 0)
        return g_strdup_printf("error %s: %s", w[1], g_strerror(-r));
    emu_board_info(b, &info);
    return g_strdup_printf("ok devnum=%u", info.devnum);
}

static char *ctl_board(App *a, char **w)
{
    EmuBoard *b = w[1] ? emu_find_board(a->emu, w[1]) : NULL;
    EmuMode mode = EMU_MODE_DFU;
    EmuBoardInfo info;
    int r;

    if (!b)
        return g_strdup_printf("error no board %s", w[1] ? w[1] : "(none given)");
    if (g_str_equal(w[0], "unplug")) {
        r = emu_board_unplug(b);
        return r < 0 ? g_strdup_printf("error %s", g_strerror(-r)) : g_strdup("ok");
    }
    if (w[2] && (mode = emu_mode_from_string(w[2])) == _EMU_MODE_MAX)
        return g_strdup("error MODE is dfu or runtime");
    r = emu_board_replug(b, mode);
    if (r < 0)
        return g_strdup_printf("error %s", g_strerror(-r));
    emu_board_info(b, &info);
    return g_strdup_printf("ok devnum=%u", info.devnum);
}

static char *ctl_execute(App *a, const char *line)
{
    g_auto(GStrv) w = g_strsplit_set(line, " \t", -1);
    GPtrArray *words = g_ptr_array_new();
    char *reply;

    for (size_t i = 0; w[i]; i++)
        if (*w[i])
            g_ptr_array_add(words, w[i]);
    g_ptr_array_add(words, NULL);
    char **v = (char **)words->pdata;

    if (!v[0])
        reply = g_strdup("error empty command");
    else if (g_str_equal(v[0], "plug"))
        reply = ctl_plug(a, v);
    else if (g_str_equal(v[0], "unplug") || g_str_equal(v[0], "replug"))
        reply = ctl_board(a, v);
    else if (g_str_equal(v[0], "report"))
        reply = emu_report_json(a->emu);
    else if (g_str_equal(v[0], "listeners"))
        reply = g_strdup_printf("ok %u", emu_listeners(a->emu, v[1] ? atoi(v[1]) : 0));
    else
        reply = g_strdup_printf("error unknown command \"%s\" (plug, unplug, replug, report, "
                                "listeners)",
                                v[0]);
    g_ptr_array_free(words, TRUE);
    return reply;
}

static void ctl_client_free(void *p)
{
    CtlClient *c = p;

    g_source_destroy(c->src);
    g_source_unref(c->src);
    close(c->fd);
    g_free(c);
}

static gboolean ctl_client_cb(int fd, GIOCondition cond, void *data)
{
    App *a = ((void **)data)[0];
    CtlClient *c = ((void **)data)[1];
    ssize_t n = read(fd, c->buf + c->len, sizeof(c->buf) - c->len);
    char *nl;

    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return G_SOURCE_CONTINUE;
    if (n <= 0)
        goto drop;
    c->len += (size_t)n;
    while ((nl = memchr(c->buf, '\n', c->len))) {
        g_autofree char *reply = NULL;

        *nl = '\0';
        reply = ctl_execute(a, c->buf);
        /* Replies are small; a client that does not read them is dropped. */
        if (write(fd, reply, strlen(reply)) < 0 || write(fd, "\n", 1) < 0)
            goto drop;
        c->len -= (size_t)(nl + 1 - c->buf);
        memmove(c->buf, nl + 1, c->len);
    }
    if (c->len == sizeof(c->buf))
        goto drop; /* a line longer than CTL_LINE_MAX */
    return G_SOURCE_CONTINUE;
drop:
    g_ptr_array_remove(a->clients, c);
    return G_SOURCE_REMOVE;
}

static gboolean ctl_accept_cb(int fd, GIOCondition cond, void *data)
{
    App *a = data;
    int cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    CtlClient *c;
    void **pair;

    if (cfd < 0)
        return G_SOURCE_CONTINUE;
    if (a->clients->len >= CTL_CLIENTS_MAX) {
        close(cfd);
        return G_SOURCE_CONTINUE;
    }
    c = g_new0(CtlClient, 1);
    c->fd = cfd;
    pair = g_new(void *, 2);
    pair[0] = a;
    pair[1] = c;
    c->src = g_unix_fd_source_new(cfd, G_IO_IN | G_IO_HUP | G_IO_ERR);
    g_source_set_callback(c->src, G_SOURCE_FUNC(ctl_client_cb), pair, g_free);
    g_source_attach(c->src, NULL);
    g_ptr_array_add(a->clients, c);
    return G_SOURCE_CONTINUE;
}

static int ctl_open(App *a, const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};

    if (strlen(path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    strcpy(sa.sun_path, path);
    a->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (a->listen_fd < 0)
        return -errno;
    (void)unlink(path);
    if (bind(a->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(a->listen_fd, 8) < 0)
        return -errno;
    a->listen_src = g_unix_fd_source_new(a->listen_fd, G_IO_IN);
    g_source_set_callback(a->listen_src, G_SOURCE_FUNC(ctl_accept_cb), a, NULL);
    g_source_attach(a->listen_src, NULL);
    return 0;
}

/* ---- plugging ---- */

static int plug_one(App *a, const BoardArg *b)
{
    int r = emu_add_board(a->emu, b->path, &b->cfg, NULL);

    if (r < 0)
        log_err("cannot plug %s: %s\n", b->path, g_strerror(-r));
    return r;
}

static gboolean plug_next_cb(void *data)
{
    App *a = data;

    if (a->next_plug >= a->opt.boards->len)
        return G_SOURCE_REMOVE;
    (void)plug_one(a, &g_array_index(a->opt.boards, BoardArg, a->next_plug));
    a->next_plug++;
    return a->next_plug < a->opt.boards->len ? G_SOURCE_CONTINUE : G_SOURCE_REMOVE;
}

static bool enough_listeners(void *data)
{
    App *a = data;

    return emu_listeners(a->emu, 0) >= a->opt.listeners;
}

static void start_hotplug(App *a)
{
    /* Hotplug is only seen by a listener: wait for the command's uevent monitors
     * (any process: the command may be a script that starts the listener). */
    if (!emu_iterate_until(a->emu, enough_listeners, a, LISTENER_WAIT_MS))
        log_err("fewer than %u uevent listeners after %d ms; plugging anyway\n", a->opt.listeners,
                LISTENER_WAIT_MS);
    if (plug_next_cb(a))
        g_timeout_add((guint)MAX(a->opt.plug_interval_ms, 1), plug_next_cb, a);
}

/* ---- results ---- */

static int write_received(App *a)
{
    if (g_mkdir_with_parents(a->opt.received_dir, 0755) < 0) {
        log_err("%s: %s\n", a->opt.received_dir, g_strerror(errno));
        return -errno;
    }
    for (size_t i = 0; i < emu_n_boards(a->emu); i++) {
        EmuBoard *b = emu_board_by_index(a->emu, i);
        EmuBoardInfo info;
        g_autofree uint8_t *data = NULL;
        g_autofree char *name = NULL;
        g_autoptr(GError) err = NULL;
        size_t len;

        emu_board_info(b, &info);
        emu_board_received(b, &data, &len);
        name = g_strdup_printf("%s/%s.bin", a->opt.received_dir, info.path);
        if (!g_file_set_contents(name, (const char *)data, (gssize)len, &err)) {
            log_err("%s\n", err->message);
            return -EIO;
        }
    }
    return 0;
}

static void print_summary(App *a)
{
    for (size_t i = 0; i < emu_n_boards(a->emu); i++) {
        EmuBoard *b = emu_board_by_index(a->emu, i);
        g_autofree uint8_t *data = NULL;
        EmuBoardInfo x;
        size_t len;

        emu_board_info(b, &x);
        emu_board_received(b, &data, &len);
        log_err("%s %s %s%s devnum=%u enumerations=%u control=%u requests=%u attempts=%u "
                "downloads_ok=%u validated=%s bytes=%zu\n",
                x.path, emu_chip_to_string(x.chip), emu_mode_to_string(x.mode),
                x.plugged ? "" : " (unplugged)", x.devnum, x.enumerations, x.control_transfers,
                x.dfu.requests, x.dfu.attempts, x.dfu.downloads_ok,
                x.dfu.validated ? "true" : "false", len);
    }
}

/* Every board received exactly FILE minus its 16-byte DFU suffix. */
static bool check_expect(App *a)
{
    g_autofree char *file = NULL;
    g_autoptr(GError) err = NULL;
    gsize size;
    bool ok = true;

    if (!g_file_get_contents(a->opt.expect, &file, &size, &err) || size < 16) {
        log_err("--expect %s: %s\n", a->opt.expect, err ? err->message : "shorter than a suffix");
        return false;
    }
    size -= 16;
    for (size_t i = 0; i < emu_n_boards(a->emu); i++) {
        EmuBoard *b = emu_board_by_index(a->emu, i);
        g_autofree uint8_t *data = NULL;
        EmuBoardInfo x;
        size_t len, k = 0;

        emu_board_info(b, &x);
        emu_board_received(b, &data, &len);
        if (len == size && memcmp(data, file, size) == 0)
            continue;
        while (k < MIN(len, size) && data[k] == (uint8_t)file[k])
            k++;
        log_err("%s: received %zu bytes, expected %zu; they differ from byte %zu\n", x.path, len,
                (size_t)size, k);
        ok = false;
    }
    return ok;
}

static int write_report(App *a)
{
    g_autofree char *json = emu_report_json(a->emu);
    g_autofree char *text = g_strconcat(json, "\n", NULL);
    g_autoptr(GError) err = NULL;

    if (!g_file_set_contents(a->opt.report_json, text, -1, &err)) {
        log_err("%s\n", err->message);
        return -EIO;
    }
    return 0;
}

/* ---- running ---- */

static gboolean on_signal(void *data)
{
    App *a = data;

    if (a->child_pid > 0)
        kill(a->child_pid, SIGTERM); /* we finish when it does */
    else
        a->stop = true;
    return G_SOURCE_CONTINUE;
}

static int run_command(App *a)
{
    g_autofree char *ctl_env = NULL;
    char *env[2] = {NULL, NULL};
    int status = EXIT_SETUP, r;

    if (a->opt.control) {
        ctl_env = g_strdup_printf("ESPDFU_EMU_CONTROL=%s", a->opt.control);
        env[0] = ctl_env;
    }
    r = emu_spawn(a->emu, a->opt.command, env, false, &a->child);
    if (r < 0)
        return EXIT_SETUP;
    a->child_pid = emu_child_pid(a->child);
    if (a->opt.plug_interval_ms >= 0)
        start_hotplug(a);
    r = emu_wait_child(a->emu, a->child, a->opt.timeout_s >= 0 ? a->opt.timeout_s * 1000 : -1,
                       &status, NULL);
    a->child = NULL;
    a->child_pid = 0;
    return r == -ETIMEDOUT ? EXIT_TIMEOUT : status;
}

/* No command: print the environment a program needs to see the boards, wait. */
static void run_until_signal(App *a)
{
    static const char *const vars[] = {"UMOCKDEV_DIR", "LD_PRELOAD", "ASAN_OPTIONS"};
    g_auto(GStrv) env = emu_child_env(a->emu, NULL);

    for (size_t i = 0; i < G_N_ELEMENTS(vars); i++) {
        g_autofree char *q = g_shell_quote(g_environ_getenv(env, vars[i]));

        printf("export %s=%s\n", vars[i], q);
    }
    if (a->opt.control)
        printf("export ESPDFU_EMU_CONTROL=%s\n", a->opt.control);
    fflush(stdout);
    while (!a->stop)
        g_main_context_iteration(NULL, TRUE);
}

static int setup(App *a)
{
    int r = emu_new(&a->emu);

    if (r < 0) {
        log_err("cannot create the testbed: %s\n", g_strerror(-r));
        return r;
    }
    if (a->opt.control && (r = ctl_open(a, a->opt.control)) < 0) {
        log_err("--control %s: %s\n", a->opt.control, g_strerror(-r));
        return r;
    }
    if (a->opt.plug_interval_ms >= 0 && a->opt.command) {
        /* Only the boards hotplug; the hubs above them are there already. */
        for (guint i = 0; i < a->opt.boards->len; i++) {
            const BoardArg *b = &g_array_index(a->opt.boards, BoardArg, i);

            if ((r = emu_add_hubs(a->emu, b->path)) < 0) {
                log_err("cannot add the hubs above %s: %s\n", b->path, g_strerror(-r));
                return r;
            }
        }
        return 0;
    }
    for (guint i = 0; i < a->opt.boards->len; i++)
        if ((r = plug_one(a, &g_array_index(a->opt.boards, BoardArg, i))) < 0)
            return r;
    a->next_plug = a->opt.boards->len;
    return 0;
}

static void teardown(App *a)
{
    if (a->clients)
        g_ptr_array_unref(a->clients);
    if (a->listen_src) {
        g_source_destroy(a->listen_src);
        g_source_unref(a->listen_src);
    }
    if (a->listen_fd >= 0) {
        close(a->listen_fd);
        (void)unlink(a->opt.control);
    }
    a->emu = emu_free(a->emu);
    g_array_unref(a->opt.boards);
}

int main(int argc, char **argv)
{
    App a = {.listen_fd = -1};
    int status;

    if (argc > 1 && g_str_equal(argv[1], "--send"))
        return send_command(argc - 2, argv + 2);
    if (emu_reexec_without_preload(argv) < 0)
        return EXIT_SETUP;
    a.opt.boards = g_array_new(FALSE, TRUE, sizeof(BoardArg));
    a.clients = g_ptr_array_new_with_free_func(ctl_client_free);
    if (parse_options(argc, argv, &a.opt) < 0) {
        teardown(&a);
        return EXIT_USAGE;
    }
    g_unix_signal_add(SIGINT, on_signal, &a);
    g_unix_signal_add(SIGTERM, on_signal, &a);
    if (setup(&a) < 0) {
        teardown(&a);
        return EXIT_SETUP;
    }
    if (a.opt.command) {
        status = run_command(&a);
    } else {
        run_until_signal(&a);
        status = 0;
    }
    print_summary(&a);
    if (a.opt.received_dir && write_received(&a) < 0)
        status = status ? status : EXIT_SETUP;
    if (a.opt.report_json && write_report(&a) < 0)
        status = status ? status : EXIT_SETUP;
    if (a.opt.expect && !check_expect(&a) && status == 0)
        status = EXIT_EXPECT;
    teardown(&a);
    return status;
}
