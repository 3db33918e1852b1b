/* SPDX-License-Identifier: MIT */
/*
 * espdfud: flashes Espressif ESP32-S2/S3/P4 boards over USB DFU, many in
 * parallel, driven by hotplug and auto-flash rules.
 *
 * main() parses options, loads the configuration, blocks the signals it
 * handles (before any thread exists, so every thread inherits the mask),
 * and runs one sd-event loop until SIGTERM. Everything else is the manager.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "log.h"
#include "manager.h"
#include "server-methods.h"
#include "server.h"
#include "timeutil.h"
#include "usb.h"
#include "util.h"

#ifndef ESPDFUD_VERSION
#define ESPDFUD_VERSION "0"
#endif

enum {
    EXIT_CONFIG = 1, /* an invalid configuration, or the daemon could not start */
    EXIT_USAGE = 2,
};

typedef struct Options {
    const char *config_path;
    bool config_explicit;
    ConfigOverrides overrides;
    int log_level;
    bool check_config;
    const char *check_path;
} Options;

/* Kept reachable when busy workers outlive main(): they still use it. */
static Manager *abandoned_manager;

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: espdfud [OPTIONS]\n"
            "Flash Espressif ESP32-S2/S3/P4 boards over USB DFU, many in parallel.\n\n"
            "  -c, --config FILE        configuration (default " CONFIG_DEFAULT_PATH ")\n"
            "      --socket PATH        control socket (default " CONFIG_DEFAULT_SOCKET ")\n"
            "      --state-dir DIR      state directory (default " CONFIG_DEFAULT_STATE_DIR ")\n"
            "      --log-level LEVEL    err, warning, info (default) or debug\n"
            "      --workers N          flashing threads, 1-%u (default %u)\n"
            "  -f, --foreground         accepted for compatibility; espdfud never forks\n"
            "      --check-config[=FILE] validate the configuration and exit\n"
            "  -h, --help               this text\n"
            "      --version            the version\n\n"
            "Signals: SIGHUP reloads the configuration, SIGTERM stops.\n",
            CONFIG_WORKERS_MAX, CONFIG_WORKERS_DEFAULT);
}

static int parse_args(int argc, char **argv, Options *o)
{
    enum { ARG_SOCKET = 0x100, ARG_STATE_DIR, ARG_LOG_LEVEL, ARG_WORKERS, ARG_CHECK, ARG_VERSION };
    static const struct option longopts[] = {
            {"config", required_argument, NULL, 'c'},
            {"socket", required_argument, NULL, ARG_SOCKET},
            {"state-dir", required_argument, NULL, ARG_STATE_DIR},
            {"log-level", required_argument, NULL, ARG_LOG_LEVEL},
            {"workers", required_argument, NULL, ARG_WORKERS},
            {"foreground", no_argument, NULL, 'f'},
            {"check-config", optional_argument, NULL, ARG_CHECK},
            {"help", no_argument, NULL, 'h'},
            {"version", no_argument, NULL, ARG_VERSION},
            {},
    };
    int c;

    while ((c = getopt_long(argc, argv, "c:fh", longopts, NULL)) >= 0) {
        switch (c) {
        case 'c':
            o->config_path = optarg;
            o->config_explicit = true;
            break;
        case ARG_SOCKET:
            o->overrides.socket_path = optarg;
            break;
        case ARG_STATE_DIR:
            o->overrides.state_dir = optarg;
            break;
        case ARG_LOG_LEVEL:
            o->log_level = log_level_from_string(optarg);
            if (o->log_level < 0)
                return -EINVAL;
            break;
        case ARG_WORKERS:
            if (config_parse_uint(optarg, 1, CONFIG_WORKERS_MAX, &o->overrides.workers) < 0)
                return -EINVAL;
            break;
        case 'f':
            break;
        case ARG_CHECK:
            o->check_config = true;
            o->check_path = optarg;
            break;
        case 'h':
            usage(stdout);
            exit(EXIT_SUCCESS);
        case ARG_VERSION:
            printf("espdfud %s\n", ESPDFUD_VERSION);
            exit(EXIT_SUCCESS);
        default:
            return -EINVAL;
        }
    }
    /* "--check-config FILE" as well as "--check-config=FILE". */
    if (o->check_config && !o->check_path && optind == argc - 1)
        o->check_path = argv[optind++];
    return optind == argc ? 0 : -EINVAL;
}

/* Bare "FILE:LINE: KEY: REASON" lines for --check-config, log lines otherwise. */
static void print_errors(const ConfigErrors *errors, bool bare)
{
    for (size_t i = 0; i < errors->n; i++)
        if (bare)
            fprintf(stderr, "%s\n", errors->lines[i]);
        else
            log_error("%s", errors->lines[i]);
    if (errors->dropped)
        fprintf(stderr, "%s... and %zu more error%s\n",
                bare ? "" : "espdfud: error: ", errors->dropped, errors->dropped == 1 ? "" : "s");
}

/* The configuration as the options name it; a missing default file means defaults. */
static int load_config(const char *path, bool optional, bool bare, const ConfigOverrides *overrides,
                       ImageCache *cache, Config **ret)
{
    _cleanup_(config_freep) Config *c = NULL;
    ConfigErrors errors = {};
    int r;

    r = config_parse_file(path, cache, &c, &errors);
    if (r == -ENOENT && optional) {
        log_debug("%s not found: built-in defaults, no rules", path);
        r = config_new_default(&c);
    } else if (r < 0) {
        print_errors(&errors, bare);
    }
    config_errors_clear(&errors);
    if (r >= 0)
        r = config_apply_overrides(c, overrides);
    if (r < 0)
        return r;
    *ret = TAKE_PTR(c);
    return 0;
}

static int run_check_config(const Options *o)
{
    const char *path = o->check_path ? o->check_path : o->config_path;
    bool optional = !o->check_path && !o->config_explicit;
    _cleanup_(image_cache_freep) ImageCache *cache = NULL;
    _cleanup_(config_freep) Config *c = NULL;

    log_force_stderr();
    if (image_cache_new(&cache) < 0)
        return EXIT_CONFIG;
    if (load_config(path, optional, true, &o->overrides, cache, &c) < 0)
        return EXIT_CONFIG;
    printf("%s: OK: %zu rule%s, %zu image%s, %u workers, auto-flash %s%s\n", path, c->n_rules,
           c->n_rules == 1 ? "" : "s", image_cache_count(cache),
           image_cache_count(cache) == 1 ? "" : "s", c->workers, c->auto_flash ? "on" : "off",
           c->path ? "" : " (file not found: built-in defaults)");
    return EXIT_SUCCESS;
}

static int on_terminate(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
    Manager *m = userdata;

    log_info("SIG%s received: stopping", sigabbrev_np((int)si->ssi_signo));
    manager_shutdown(m);
    return 0;
}

static int on_reload(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
    Manager *m = userdata;
    ConfigErrors errors = {};
    int r;

    log_info("SIGHUP received: reloading the configuration");
    r = manager_reload(m, &errors);
    if (r < 0) {
        print_errors(&errors, false);
        log_errno(LOG_ERR, r, "reload refused; the running configuration stays");
    }
    config_errors_clear(&errors);
    return 0;
}

static int add_signals(sd_event *e, Manager *m)
{
    int r;

    r = sd_event_add_signal(e, NULL, SIGTERM, on_terminate, m);
    if (r >= 0)
        r = sd_event_add_signal(e, NULL, SIGINT, on_terminate, m);
    if (r >= 0)
        r = sd_event_add_signal(e, NULL, SIGHUP, on_reload, m);
    return r;
}

static int run(const Options *o, Config *config, ImageCache *cache)
{
    ManagerOptions mo = {
            .config_path = o->config_path,
            .config_optional = !o->config_explicit,
            .overrides = o->overrides,
    };
    sd_event *e = NULL;
    Manager *m = NULL;
    Server *server = NULL;
    Methods *methods = NULL;
    int r;

    r = sd_event_default(&e);
    if (r < 0) {
        config_free(config);
        image_cache_free(cache);
        return log_errno(LOG_ERR, r, "cannot create the event loop");
    }
    /* Pings WATCHDOG=1 at half of WatchdogSec=, only when systemd asks for it. */
    (void)sd_event_set_watchdog(e, true);
    r = manager_new(e, &mo, config, cache, &m);
    if (r >= 0)
        r = add_signals(e, m);
    /* The socket first: manager_start() sends READY=1, and a client that starts
     * after READY must find it listening. */
    if (r >= 0)
        r = methods_new(e, m, &methods);
    if (r >= 0)
        r = server_new(e, m, &methods->table, &server);
    if (r >= 0)
        r = manager_start(m);
    if (r >= 0)
        r = sd_event_loop(e);
    /* Clients go before the manager: the server is subscribed to it. */
    server = server_free(server);
    /* Calls still under way (an image being read) are answered to nobody. */
    methods = methods_free(methods);
    /* Every job's last state reaches jobs.db before anything else can hang. */
    if (m)
        manager_close_store(m, MANAGER_STORE_CLOSE_USEC);
    if (m && manager_stop_workers(m, USEC_PER_SEC) < 0) {
        log_warning("workers still busy at exit; leaving them to the process exit");
        abandoned_manager = m;
        m = NULL;
    }
    manager_free(m);
    sd_event_unref(e);
    return r;
}

int main(int argc, char **argv)
{
    Options o = {.config_path = CONFIG_DEFAULT_PATH, .log_level = LOG_INFO};
    _cleanup_(image_cache_freep) ImageCache *cache = NULL;
    Config *config = NULL;
    sigset_t mask;
    int r;

    log_open();
    if (parse_args(argc, argv, &o) < 0) {
        usage(stderr);
        return EXIT_USAGE;
    }
    log_set_max_level(o.log_level);
    if (o.check_config)
        return run_check_config(&o);

    if (image_cache_new(&cache) < 0)
        return EXIT_CONFIG;
    if (load_config(o.config_path, !o.config_explicit, false, &o.overrides, cache, &config) < 0)
        return EXIT_CONFIG;

    /* Before any thread: workers, libusb and hooks all inherit this mask. */
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    sigaddset(&mask, SIGCHLD);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);

    r = usb_global_init(log_usb);
    if (r < 0) {
        config_free(config);
        return log_errno(LOG_ERR, r, "cannot initialise libusb"), EXIT_CONFIG;
    }
    r = run(&o, config, TAKE_PTR(cache));
    if (r < 0)
        return EXIT_CONFIG;
    log_info("stopped");
    return EXIT_SUCCESS;
}
