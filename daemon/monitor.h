/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The udev monitor for usb/usb_device, in the main loop.
 *
 * Order matters (libusb's linux_udev.c does the same): the monitor receives
 * before the coldplug enumeration runs, so a board plugged in between is seen
 * at least once (twice is harmless: the manager treats an "add" for a known
 * device as a change). The fd is always read, even when nobody wants the
 * events: umockdev aborts when about ten uevents pile up unread.
 */

#include <systemd/sd-event.h>

struct udev_device;

typedef enum MonitorAction {
    MONITOR_ADD, /* add, bind, change, and every device found at coldplug */
    MONITOR_REMOVE,
    /* Events were lost (the netlink receive buffer overflowed; the device is NULL):
     * the handler must rescan, since adds and removes may both be missing. */
    MONITOR_LOST,
} MonitorAction;

typedef void (*MonitorHandler)(void *userdata, MonitorAction action, struct udev_device *d);

typedef struct Monitor Monitor;

/* Listening from here on; events go to handler from the loop. */
int monitor_new(sd_event *e, MonitorHandler handler, void *userdata, Monitor **ret);
/* Coldplug: handler(MONITOR_ADD) for every usb_device present now. */
int monitor_enumerate(Monitor *m);
Monitor *monitor_free(Monitor *m);

static inline void monitor_freep(Monitor **m)
{
    if (*m)
        *m = monitor_free(*m);
}
