/* SPDX-License-Identifier: MIT */
#include "devices.h"

#include <errno.h>
#include <fcntl.h>
#include <libudev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-event.h>

#include "util.h"

/* DFU interface class triple, DFU 1.1 sections 4.1.2 and 4.2.3. */
#define USB_DT_DEVICE          0x01
#define USB_DT_INTERFACE       0x04
#define USB_CLASS_APP_SPECIFIC 0xfe
#define USB_SUBCLASS_DFU       0x01
#define DFU_PROTOCOL_RUNTIME   0x01
#define DFU_PROTOCOL_DFU_MODE  0x02

/* Largest `descriptors` file we read: the kernel caps a configuration at 64 KiB. */
#define DESCRIPTORS_MAX (64u * 1024u)

struct DeviceTable {
    Device *head; /* sorted by path */
    size_t count;
};

static const char *const device_mode_table[] = {
        [DEVICE_MODE_UNKNOWN] = "unknown",
        [DEVICE_MODE_NONE] = "none",
        [DEVICE_MODE_RUNTIME] = "runtime",
        [DEVICE_MODE_DFU] = "dfu",
};
DEFINE_STRING_TABLE_LOOKUP(device_mode, DeviceMode, _DEVICE_MODE_MAX)

static const char *const device_plug_table[] = {
        [DEVICE_PLUG_IDLE] = "idle",
        [DEVICE_PLUG_BUSY] = "busy",
        [DEVICE_PLUG_FLASHED] = "flashed-needs-reset",
        [DEVICE_PLUG_FAILED] = "failed",
        [DEVICE_PLUG_REPLUGGING] = "replugging",
};
DEFINE_STRING_TABLE_LOOKUP(device_plug, DevicePlug, _DEVICE_PLUG_MAX)

DeviceMode device_mode_from_descriptors(const uint8_t *buf, size_t len)
{
    DeviceMode best = DEVICE_MODE_NONE;
    size_t off;

    if (len < 18 || buf[0] != 18 || buf[1] != USB_DT_DEVICE)
        return DEVICE_MODE_UNKNOWN;
    /* Every descriptor of every configuration follows, each led by bLength. */
    for (off = 18; off + 2 <= len; off += buf[off]) {
        const uint8_t *d = buf + off;

        if (d[0] < 2 || off + d[0] > len)
            return best == DEVICE_MODE_NONE ? DEVICE_MODE_UNKNOWN : best;
        if (d[1] != USB_DT_INTERFACE || d[0] < 9)
            continue;
        if (d[5] != USB_CLASS_APP_SPECIFIC || d[6] != USB_SUBCLASS_DFU)
            continue;
        if (d[7] == DFU_PROTOCOL_DFU_MODE)
            best = DEVICE_MODE_DFU;
        else if (d[7] == DFU_PROTOCOL_RUNTIME && best != DEVICE_MODE_DFU)
            best = DEVICE_MODE_RUNTIME;
    }
    return best;
}

static DeviceMode read_mode(struct udev_device *d)
{
    _cleanup_free_ char *path = NULL;
    _cleanup_free_ uint8_t *buf = NULL;
    _cleanup_close_ int fd = -1;
    size_t len = 0;

    /* A sysfs read of what the kernel cached at enumeration: no USB traffic. */
    if (asprintf(&path, "%s/descriptors", udev_device_get_syspath(d)) < 0)
        return DEVICE_MODE_UNKNOWN;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    buf = malloc(DESCRIPTORS_MAX);
    if (fd < 0 || !buf)
        return DEVICE_MODE_UNKNOWN;
    while (len < DESCRIPTORS_MAX) {
        ssize_t n = read(fd, buf + len, DESCRIPTORS_MAX - len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return DEVICE_MODE_UNKNOWN;
        if (n == 0)
            break;
        len += (size_t)n;
    }
    return device_mode_from_descriptors(buf, len);
}

static int hex_attr(struct udev_device *d, const char *name, uint16_t *ret)
{
    const char *v = udev_device_get_sysattr_value(d, name);
    char *end;
    unsigned long x;

    if (!v)
        return -ENOENT;
    errno = 0;
    x = strtoul(v, &end, 16);
    if (errno || end == v || x > 0xffff)
        return -EINVAL;
    *ret = (uint16_t)x;
    return 0;
}

static unsigned dec_attr(struct udev_device *d, const char *name)
{
    const char *v = udev_device_get_sysattr_value(d, name);

    return v ? (unsigned)strtoul(v, NULL, 10) : 0;
}

int device_info_from_udev(struct udev_device *d, bool (*accept)(void *userdata, uint16_t pid),
                          void *userdata, DeviceInfo *ret)
{
    const char *type = udev_device_get_devtype(d);
    const char *node = udev_device_get_devnode(d);
    const char *serial;
    DeviceInfo info = {};

    if (!type || strcmp(type, "usb_device") != 0 || !node)
        return -ENODEV;
    if (hex_attr(d, "idVendor", &info.vid) < 0 || hex_attr(d, "idProduct", &info.pid) < 0)
        return -ENODEV;
    if (info.vid != ESP_USB_VID || !accept(userdata, info.pid))
        return -ENODEV;
    if (snprintf(info.path, sizeof(info.path), "%s", udev_device_get_sysname(d)) >=
                (int)sizeof(info.path) ||
        snprintf(info.devnode, sizeof(info.devnode), "%s", node) >= (int)sizeof(info.devnode))
        return -ENAMETOOLONG;
    (void)hex_attr(d, "bcdDevice", &info.bcd_device);
    serial = udev_device_get_sysattr_value(d, "serial");
    snprintf(info.serial, sizeof(info.serial), "%s", serial ? serial : "");
    info.busnum = dec_attr(d, "busnum");
    info.devnum = dec_attr(d, "devnum");
    info.chip = chip_from_pid(info.pid);
    info.mode = read_mode(d);
    *ret = info;
    return 0;
}

/* ---- the table ---- */

int device_table_new(DeviceTable **ret)
{
    DeviceTable *t = calloc(1, sizeof(*t));

    if (!t)
        return -ENOMEM;
    *ret = t;
    return 0;
}

static Device *device_free(Device *d)
{
    sd_event_source_disable_unref(d->linger);
    free(d);
    return NULL;
}

DeviceTable *device_table_free(DeviceTable *t)
{
    if (!t)
        return NULL;
    for (Device *d = t->head, *next; d; d = next) {
        next = d->next;
        device_free(d);
    }
    free(t);
    return NULL;
}

Device *device_table_get(DeviceTable *t, const char *path)
{
    for (Device *d = t->head; d; d = d->next)
        if (strcmp(d->info.path, path) == 0)
            return d;
    return NULL;
}

int device_table_add(DeviceTable *t, const DeviceInfo *info, Device **ret)
{
    Device **where = &t->head;
    Device *d;

    if (device_table_get(t, info->path))
        return -EEXIST;
    if (t->count >= DEVICES_MAX)
        return -ENOSPC;
    d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    d->info = *info;
    d->present = true;
    /* strverscmp: "1-2" before "1-10", as a person reads ports. */
    while (*where && strverscmp((*where)->info.path, info->path) < 0)
        where = &(*where)->next;
    d->next = *where;
    *where = d;
    t->count++;
    *ret = d;
    return 0;
}

void device_table_remove(DeviceTable *t, Device *d)
{
    for (Device **p = &t->head; *p; p = &(*p)->next)
        if (*p == d) {
            *p = d->next;
            t->count--;
            device_free(d);
            return;
        }
}

size_t device_table_count(const DeviceTable *t)
{
    return t->count;
}

Device *device_table_next(DeviceTable *t, const Device *prev)
{
    return prev ? prev->next : t->head;
}
