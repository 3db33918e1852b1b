/* SPDX-License-Identifier: MIT */
/*
 * espdfu-flash: flash one board directly with the espdfud engine, no daemon.
 *
 * The same path the daemon's workers take (udev lookup by port path, the
 * libusb transport, detach and replug for a run-time board, the DFU engine),
 * in one process: for bring-up, for bench/ against dfu-util, and for the
 * engine's end-to-end tests under the emulated boards.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <libudev.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "devices.h"
#include "dfu.h"
#include "image.h"
#include "usb.h"
#include "util.h"

enum {
    EXIT_OK = 0,
    EXIT_FAILED = 1, /* the download failed, or the image is invalid */
    EXIT_USAGE = 2,
    EXIT_NOT_FOUND = 5, /* no such board */
};

typedef struct Options {
    const char *path; /* USB port path, "1-2.3" */
    const char *image;
    unsigned replug_timeout_ms;
    DfuConfig dfu;
    bool quiet;
} Options;

typedef DeviceInfo Target;

static atomic_bool cancel_requested;

static void on_signal(int sig)
{
    atomic_store(&cancel_requested, true);
}

static void log_line(int priority, const char *message)
{
    if (priority <= LOG_WARNING)
        fprintf(stderr, "espdfu-flash: %s\n", message);
}

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static bool accept_esp_dfu_pid(void *userdata, uint16_t pid)
{
    return chip_from_pid(pid) != CHIP_UNKNOWN;
}

/* Fill t from a usb_device if it is an Espressif DFU-capable board. */
static bool target_from_udev(struct udev_device *d, Target *t)
{
    return device_info_from_udev(d, accept_esp_dfu_pid, NULL, t) >= 0;
}

/* Find the board on path, or the only Espressif board when path is NULL. */
static int find_target(struct udev *udev, const char *path, Target *ret)
{
    struct udev_enumerate *e = udev_enumerate_new(udev);
    struct udev_list_entry *entry;
    int found = 0;

    if (!e)
        return -ENOMEM;
    udev_enumerate_add_match_subsystem(e, "usb");
    udev_enumerate_add_match_property(e, "DEVTYPE", "usb_device");
    if (path)
        udev_enumerate_add_match_sysname(e, path);
    udev_enumerate_scan_devices(e);
    udev_list_entry_foreach (entry, udev_enumerate_get_list_entry(e)) {
        struct udev_device *d = udev_device_new_from_syspath(udev, udev_list_entry_get_name(entry));
        Target t;

        if (d && target_from_udev(d, &t)) {
            if (found++ == 0)
                *ret = t;
        }
        udev_device_unref(d);
    }
    udev_enumerate_unref(e);
    if (found > 1) {
        fprintf(stderr,
                "espdfu-flash: %d Espressif boards found; every board reports serial \"0\", so "
                "choose one with --path\n",
                found);
        return -EEXIST;
    }
    return found ? 0 : -ENOENT;
}

/* After a detach: wait for a DFU-mode board to appear again on the same path. */
static int wait_replug(struct udev_monitor *mon, const char *path, unsigned timeout_ms, Target *ret)
{
    uint64_t deadline = now_ms() + timeout_ms;
    bool left = false;

    for (;;) {
        struct pollfd p = {.fd = udev_monitor_get_fd(mon), .events = POLLIN};
        uint64_t now = now_ms();
        struct udev_device *d;
        int r;

        if (atomic_load(&cancel_requested))
            return -ECANCELED;
        if (now >= deadline)
            return -ETIMEDOUT;
        r = poll(&p, 1, (int)(deadline - now > 100 ? 100 : deadline - now));
        if (r <= 0)
            continue;
        d = udev_monitor_receive_device(mon);
        if (!d)
            continue;
        if (strcmp(udev_device_get_sysname(d), path) == 0) {
            const char *action = udev_device_get_action(d);
            Target t;

            if (action && strcmp(action, "remove") == 0)
                left = true;
            else if (action && strcmp(action, "add") == 0 && target_from_udev(d, &t)) {
                *ret = t;
                udev_device_unref(d);
                return left ? 0 : 1;
            }
        }
        udev_device_unref(d);
    }
}

static void progress(void *userdata, uint64_t sent, uint64_t total)
{
    static unsigned last_pct = 101;
    const Options *o = userdata;
    unsigned pct = total ? (unsigned)(sent * 100 / total) : 100;

    if (o->quiet || pct == last_pct)
        return;
    last_pct = pct;
    if (isatty(STDERR_FILENO))
        fprintf(stderr, "\rdownloading %3u%% (%" PRIu64 "/%" PRIu64 " bytes)", pct, sent, total);
    else if (pct % 10 == 0)
        fprintf(stderr, "downloading %u%% (%" PRIu64 "/%" PRIu64 " bytes)\n", pct, sent, total);
}

static int detach(const Target *t, const Options *o, ErrInfo *err)
{
    UsbBoard *b = NULL;
    DfuSession s;
    int r;

    r = usb_board_open(t->devnode, &b, err);
    if (r < 0)
        return r;
    if (usb_board_mode(b) == USB_DFU_MODE) {
        usb_board_close(b);
        return 0;
    }
    fprintf(stderr, "espdfu-flash: %s is in run-time mode: detaching\n", t->path);
    usb_board_session(b, &o->dfu, &s);
    r = dfu_detach(&s, err);
    usb_board_close(b);
    return r < 0 ? r : 1;
}

static int download(const Target *t, const Image *img, const Options *o, ErrInfo *err)
{
    UsbBoard *b = NULL;
    DfuSession s;
    DfuReport report;
    int r;

    r = usb_board_open(t->devnode, &b, err);
    if (r < 0)
        return r;
    if (usb_board_mode(b) != USB_DFU_MODE) {
        usb_board_close(b);
        return err_set(err, ERR_DFU_STATE, "%s is still in run-time mode after the detach",
                       t->path);
    }
    usb_board_session(b, &o->dfu, &s);
    s.progress = progress;
    s.progress_userdata = (void *)o;
    s.cancel = &cancel_requested;
    r = dfu_download(&s, img->data, img->payload_size, &report, err);
    usb_board_close(b);
    if (!o->quiet && isatty(STDERR_FILENO))
        fputc('\n', stderr);
    return r;
}

/* Resolve the board, detach it when needed, download. */
static int flash(struct udev *udev, const Image *img, const Options *o, ErrInfo *err)
{
    struct udev_monitor *mon = NULL;
    Target t;
    int r;

    r = find_target(udev, o->path, &t);
    if (r == -ENOENT) {
        err_set(err, ERR_NO_BOARD, "no Espressif DFU board %s%s", o->path ? "on port " : "found",
                o->path ? o->path : "");
        return -ENXIO; /* "no such board", told apart from a board lost mid-download */
    }
    if (r < 0)
        return err_set(err, ERR_USB_OPEN, "cannot choose a board");
    /* Refuse before touching the board: no control transfer for a wrong image. */
    if (!image_matches_device(img, t.vid, t.pid))
        return err_set(err, ERR_WRONG_CHIP,
                       "image is for %04x:%04x (%s) but the board on %s is %04x:%04x (%s)",
                       img->vid, img->pid, chip_to_string(img->chip), t.path, t.vid, t.pid,
                       chip_to_string(chip_from_pid(t.pid)));

    /* The monitor listens before the detach, so the replug cannot be missed. */
    mon = udev_monitor_new_from_netlink(udev, "udev");
    if (!mon || udev_monitor_filter_add_match_subsystem_devtype(mon, "usb", "usb_device") < 0 ||
        udev_monitor_enable_receiving(mon) < 0) {
        udev_monitor_unref(mon);
        return err_set(err, ERR_USB_OPEN, "cannot listen to udev");
    }
    r = detach(&t, o, err);
    if (r > 0) {
        r = wait_replug(mon, t.path, o->replug_timeout_ms, &t);
        if (r == -ETIMEDOUT)
            r = err_set(err, ERR_REPLUG_TIMEOUT,
                        "board on %s did not come back in DFU mode within %u ms after detach",
                        t.path, o->replug_timeout_ms);
        else if (r == -ECANCELED)
            r = err_set(err, ERR_CANCELLED, "cancelled while waiting for %s to re-enumerate",
                        t.path);
    }
    /* Closed before the download: nobody reads it any more, and unread uevents pile up. */
    udev_monitor_unref(mon);
    if (r < 0)
        return r;
    return download(&t, img, o, err);
}

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: espdfu-flash [OPTIONS] IMAGE\n"
            "Flash one Espressif board in ROM download mode with a dfu.bin, directly (no "
            "daemon).\n\n"
            "  -p, --path PATH            USB port path (\"1-2.3\"); needed with several boards\n"
            "      --replug-timeout MS    wait for a detached board to return (default 10000)\n"
            "      --transfer-timeout MS  per control transfer (default 30000)\n"
            "  -q, --quiet                no progress\n"
            "  -h, --help                 this text\n\n"
            "Exit status: 0 flashed, 1 failed (the error says where), 2 usage, 5 no board.\n");
}

static int parse_ms(const char *s, unsigned *ret)
{
    char *end;
    unsigned long v;

    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno || end == s || *end || v == 0 || v > 3600000)
        return -EINVAL;
    *ret = (unsigned)v;
    return 0;
}

static int parse_args(int argc, char **argv, Options *o)
{
    static const struct option longopts[] = {
            {"path", required_argument, NULL, 'p'},
            {"replug-timeout", required_argument, NULL, 'R'},
            {"transfer-timeout", required_argument, NULL, 'T'},
            {"quiet", no_argument, NULL, 'q'},
            {"help", no_argument, NULL, 'h'},
            {},
    };
    int c;

    while ((c = getopt_long(argc, argv, "p:qh", longopts, NULL)) >= 0) {
        switch (c) {
        case 'p':
            o->path = optarg;
            break;
        case 'R':
            if (parse_ms(optarg, &o->replug_timeout_ms) < 0)
                return -EINVAL;
            break;
        case 'T':
            if (parse_ms(optarg, &o->dfu.transfer_timeout_ms) < 0)
                return -EINVAL;
            break;
        case 'q':
            o->quiet = true;
            break;
        case 'h':
            usage(stdout);
            exit(EXIT_OK);
        default:
            return -EINVAL;
        }
    }
    if (optind != argc - 1)
        return -EINVAL;
    o->image = argv[optind];
    return 0;
}

static int load_image(const char *path, Image **ret)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    ErrInfo err = {};
    int r;

    if (fd < 0) {
        fprintf(stderr, "espdfu-flash: %s: %s\n", path, strerror(errno));
        return -errno;
    }
    r = image_load_fd(fd, ret, &err);
    if (r < 0)
        fprintf(stderr, "espdfu-flash: %s: %s [%s]\n", path, err.message,
                espdfu_err_to_string(err.code));
    return r;
}

int main(int argc, char **argv)
{
    Options o = {.replug_timeout_ms = 10000};
    struct sigaction sa = {.sa_handler = on_signal};
    struct udev *udev;
    Image *img = NULL;
    ErrInfo err = {};
    uint64_t start;
    int r;

    dfu_config_init(&o.dfu);
    if (parse_args(argc, argv, &o) < 0) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (load_image(o.image, &img) < 0)
        return EXIT_FAILED;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    usb_global_init(log_line);
    udev = udev_new();

    start = now_ms();
    r = flash(udev, img, &o, &err);
    if (r < 0) {
        fprintf(stderr, "espdfu-flash: %s [%s]\n", err.message, espdfu_err_to_string(err.code));
    } else {
        uint64_t ms = now_ms() - start;

        printf("flashed %zu bytes in %" PRIu64 ".%03" PRIu64 " s (%.1f KiB/s)\n", img->payload_size,
               ms / 1000, ms % 1000,
               ms ? (double)img->payload_size / 1024.0 / ((double)ms / 1000.0) : 0.0);
    }
    udev_unref(udev);
    image_free(img);
    if (r < 0)
        return r == -ENXIO ? EXIT_NOT_FOUND : EXIT_FAILED;
    return EXIT_OK;
}
