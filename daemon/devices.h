/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The table of Espressif DFU boards present, keyed by USB port path (the
 * sysfs name, "1-2.3"): every ROM reports serial "0", so the port is the only
 * identity a board has. Main thread only.
 *
 * A board's mode (run-time or DFU) is read without opening it, from the
 * binary sysfs attribute `descriptors` (the device descriptor followed by the
 * raw configuration descriptors, as the kernel caches them).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "image.h"

struct udev_device;
typedef struct sd_event_source sd_event_source;

#define DEVICES_MAX     1024u
#define DEVICE_PATH_MAX 64u

typedef enum DeviceMode {
    DEVICE_MODE_UNKNOWN, /* descriptors unreadable */
    DEVICE_MODE_NONE,    /* no DFU interface at all */
    DEVICE_MODE_RUNTIME, /* DFU run-time interface: needs a DETACH first */
    DEVICE_MODE_DFU,     /* DFU mode: ready to download */
    _DEVICE_MODE_MAX,
} DeviceMode;

const char *device_mode_to_string(DeviceMode m); /* "unknown", "none", "runtime", "dfu" */
DeviceMode device_mode_from_string(const char *s);

/* Where a plug is in its life; "flashed" means flashed, needs reset: the ROM stays in
 * download mode after a download. */
typedef enum DevicePlug {
    DEVICE_PLUG_IDLE,
    DEVICE_PLUG_BUSY,       /* a job runs on it */
    DEVICE_PLUG_FLASHED,    /* succeeded; the board needs a reset to run it */
    DEVICE_PLUG_FAILED,     /* its last job failed */
    DEVICE_PLUG_REPLUGGING, /* gone for a moment: detaching or resetting */
    _DEVICE_PLUG_MAX,
} DevicePlug;

const char *device_plug_to_string(DevicePlug p); /* "idle", "busy", "flashed-needs-reset", ... */
DevicePlug device_plug_from_string(const char *s);

/* What udev and sysfs say about one board. */
typedef struct DeviceInfo {
    char path[DEVICE_PATH_MAX];
    char devnode[256];
    char serial[64];
    uint16_t vid, pid, bcd_device;
    unsigned busnum, devnum;
    Chip chip;
    DeviceMode mode;
} DeviceInfo;

typedef struct Device {
    DeviceInfo info;
    uint64_t arrived_realtime_usec; /* for display */
    uint64_t arrived_monotonic_usec;
    DevicePlug plug;
    bool present;       /* false while it re-enumerates (REPLUGGING) */
    bool auto_consumed; /* a rule already queued a job for this plug: once per plug */
    bool unconfirmed;   /* during a rescan: not seen by the enumeration yet */
    /* We reset it: until this CLOCK_MONOTONIC time a leave-and-return is the same plug. */
    uint64_t replug_deadline_usec;
    uint64_t last_job;       /* the last job that ran on this plug, 0 if none */
    uint64_t plug_id;        /* its record in the job store: the auto-flash job's id, 0 none */
    char plug_outcome[24];   /* that job's final state, "" while it runs */
    char note[160];          /* why a board that should be flashed is not (yet), "" none */
    sd_event_source *linger; /* while absent after a reset: how long the plug is kept */
    struct Device *next;
} Device;

/* The DFU mode found in a `descriptors` blob: DFU mode wins over run-time. */
DeviceMode device_mode_from_descriptors(const uint8_t *buf, size_t len);

/*
 * Fill *ret from a udev usb_device. -ENODEV when it is not a board we accept
 * (accept(pid) says which PIDs of VID 0x303a are ours).
 */
int device_info_from_udev(struct udev_device *d, bool (*accept)(void *userdata, uint16_t pid),
                          void *userdata, DeviceInfo *ret);

typedef struct DeviceTable DeviceTable;

int device_table_new(DeviceTable **ret);
DeviceTable *device_table_free(DeviceTable *t);

Device *device_table_get(DeviceTable *t, const char *path);
/* A new entry for info->path, which must not be in the table; -ENOSPC over DEVICES_MAX. */
int device_table_add(DeviceTable *t, const DeviceInfo *info, Device **ret);
void device_table_remove(DeviceTable *t, Device *d); /* frees d */
size_t device_table_count(const DeviceTable *t);
/* Iteration in port-path order: first with NULL, NULL at the end. */
Device *device_table_next(DeviceTable *t, const Device *prev);

static inline void device_table_freep(DeviceTable **t)
{
    if (*t)
        *t = device_table_free(*t);
}
