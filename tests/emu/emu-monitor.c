/* SPDX-License-Identifier: MIT */
/*
 * espdfu-emu-monitor COUNT TIMEOUT_MS: a minimal libudev hotplug listener for
 * the emulator's tests, the way libusb and espdfud listen (usb/usb_device).
 * Prints "ACTION SYSNAME DEVNUM" per event; exits 0 after COUNT events, 1 on
 * timeout. Run it under the emulator (espdfu-emu ... -- espdfu-emu-monitor).
 */
#include <libudev.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int main(int argc, char **argv)
{
    struct udev *udev;
    struct udev_monitor *mon;
    long count, deadline;
    int seen = 0;

    if (argc != 3) {
        fprintf(stderr, "usage: espdfu-emu-monitor COUNT TIMEOUT_MS\n");
        return 2;
    }
    count = atol(argv[1]);
    deadline = now_ms() + atol(argv[2]);
    udev = udev_new();
    mon = udev ? udev_monitor_new_from_netlink(udev, "udev") : NULL;
    if (!mon || udev_monitor_filter_add_match_subsystem_devtype(mon, "usb", "usb_device") < 0 ||
        udev_monitor_enable_receiving(mon) < 0) {
        fprintf(stderr, "espdfu-emu-monitor: no udev monitor\n");
        return 1;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    while (seen < count) {
        struct pollfd p = {.fd = udev_monitor_get_fd(mon), .events = POLLIN};
        long left = deadline - now_ms();
        struct udev_device *d;

        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            break;
        d = udev_monitor_receive_device(mon);
        if (!d)
            continue;
        printf("%s %s %s\n", udev_device_get_action(d), udev_device_get_sysname(d),
               udev_device_get_property_value(d, "DEVNUM") ?: "?");
        udev_device_unref(d);
        seen++;
    }
    udev_monitor_unref(mon);
    udev_unref(udev);
    return seen >= count ? 0 : 1;
}
