/* SPDX-License-Identifier: MIT */
#include "monitor.h"

#include <errno.h>
#include <libudev.h>
#include <stdlib.h>
#include <string.h>

struct Monitor {
    struct udev *udev;
    struct udev_monitor *monitor;
    sd_event_source *source;
    MonitorHandler handler;
    void *userdata;
};

static void monitor_dispatch(Monitor *m, struct udev_device *d)
{
    const char *action = udev_device_get_action(d);

    if (!action)
        return;
    if (strcmp(action, "remove") == 0)
        m->handler(m->userdata, MONITOR_REMOVE, d);
    else if (strcmp(action, "add") == 0 || strcmp(action, "bind") == 0 ||
             strcmp(action, "change") == 0)
        m->handler(m->userdata, MONITOR_ADD, d);
}

static int on_monitor(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
    Monitor *m = userdata;
    struct udev_device *d;

    /* Drain: receive_device() returns NULL once nothing is queued (it polls with
     * a zero timeout), so this never blocks the loop. */
    for (;;) {
        errno = 0;
        d = udev_monitor_receive_device(m->monitor);
        if (!d)
            break;
        monitor_dispatch(m, d);
        udev_device_unref(d);
    }
    /* Without CAP_NET_ADMIN (the hardened unit) the socket buffer cannot grow past
     * net.core.rmem_max, and a burst of replugs on many ports can overflow it. The
     * kernel then drops uevents and says so once with ENOBUFS. */
    if (errno == ENOBUFS)
        m->handler(m->userdata, MONITOR_LOST, NULL);
    return 0;
}

int monitor_new(sd_event *e, MonitorHandler handler, void *userdata, Monitor **ret)
{
    Monitor *m;
    int r;

    m = calloc(1, sizeof(*m));
    if (!m)
        return -ENOMEM;
    m->handler = handler;
    m->userdata = userdata;
    m->udev = udev_new();
    if (!m->udev) {
        r = -ENOMEM;
        goto err_free;
    }
    /* "udev": events after udev rules ran, so the devnode and its permissions exist. */
    m->monitor = udev_monitor_new_from_netlink(m->udev, "udev");
    if (!m->monitor) {
        r = errno > 0 ? -errno : -EIO;
        goto err_free;
    }
    r = udev_monitor_filter_add_match_subsystem_devtype(m->monitor, "usb", "usb_device");
    if (r < 0)
        goto err_free;
    r = udev_monitor_enable_receiving(m->monitor);
    if (r < 0)
        goto err_free;
    r = sd_event_add_io(e, &m->source, udev_monitor_get_fd(m->monitor), EPOLLIN, on_monitor, m);
    if (r < 0)
        goto err_free;
    (void)sd_event_source_set_description(m->source, "udev-monitor");
    *ret = m;
    return 0;

err_free:
    monitor_free(m);
    return r;
}

int monitor_enumerate(Monitor *m)
{
    struct udev_enumerate *e = udev_enumerate_new(m->udev);
    struct udev_list_entry *entry;
    int r;

    if (!e)
        return -ENOMEM;
    r = udev_enumerate_add_match_subsystem(e, "usb");
    if (r >= 0)
        r = udev_enumerate_add_match_property(e, "DEVTYPE", "usb_device");
    if (r >= 0)
        r = udev_enumerate_scan_devices(e);
    if (r < 0) {
        udev_enumerate_unref(e);
        return r;
    }
    udev_list_entry_foreach (entry, udev_enumerate_get_list_entry(e)) {
        struct udev_device *d =
                udev_device_new_from_syspath(m->udev, udev_list_entry_get_name(entry));

        if (!d)
            continue;
        m->handler(m->userdata, MONITOR_ADD, d);
        udev_device_unref(d);
    }
    udev_enumerate_unref(e);
    return 0;
}

Monitor *monitor_free(Monitor *m)
{
    if (!m)
        return NULL;
    sd_event_source_disable_unref(m->source);
    udev_monitor_unref(m->monitor);
    udev_unref(m->udev);
    free(m);
    return NULL;
}
