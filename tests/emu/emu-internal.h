/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Shared between the emulator's files; not part of the API.
 *
 *   emu.c          the Emu object, boards, hubs, plug/unplug, sysfs records
 *   emu-desc.c     USB descriptors of boards and hubs
 *   emu-usbdevfs.c usbdevfs ioctls and control requests (umockdev's worker thread)
 *   emu-uevent.c   our own uevent sender (umockdev's aborts when a listener lags)
 *   emu-spawn.c    children: environment, capture, waiting
 *   emu-config.c   names, board specs, the JSON report
 *
 * Locking: one mutex per Emu (Emu.lock) guards every board and device field
 * that the worker thread touches. The main thread owns the testbed; the worker
 * thread asks it for changes with emu_main_call() (a GSource on the main
 * context), never calling umockdev's testbed functions itself.
 */

#include <glib.h>
#include <linux/ioctl.h>
#include <linux/usbdevice_fs.h>
#include <umockdev.h>

#include "emu.h"

#define EMU_LOG_PREFIX "espdfu-emu: "
#define emu_log(...)   g_printerr(EMU_LOG_PREFIX __VA_ARGS__)

#define EMU_MAX_INTERFACES 3u
#define EMU_DESC_MAX       256u
#define EMU_BUS_MAX        64u

/* ---- descriptors (emu-desc.c) ---- */

typedef struct EmuInterfaceDesc {
    uint8_t number, class_, subclass, protocol, n_endpoints;
    uint8_t endpoints[3]; /* bEndpointAddress of each */
    const char *driver;   /* bound kernel driver, NULL for none */
} EmuInterfaceDesc;

typedef struct EmuDesc {
    uint8_t device[18];
    uint8_t config[EMU_DESC_MAX];
    size_t config_len;
    const char *manufacturer, *product, *serial; /* string indexes 1, 2, 3 */
    unsigned speed_mbps;                         /* sysfs "speed" */
    unsigned maxchild;                           /* hub ports, 0 for a board */
    uint8_t n_interfaces;
    EmuInterfaceDesc ifs[EMU_MAX_INTERFACES];
    int dfu_interface; /* its bInterfaceNumber, -1 for a hub */
    int cdc_interface; /* CDC comm interface, -1 when none */
} EmuDesc;

void emu_desc_board(EmuDesc *d, EmuChip chip, EmuMode mode, const EmuBoardConfig *c);
void emu_desc_hub(EmuDesc *d, bool root, unsigned bus);
/* The sysfs "descriptors" file: device descriptor then the config. */
size_t emu_desc_blob(const EmuDesc *d, uint8_t *buf, size_t size);
/* GET_DESCRIPTOR(STRING, index): writes at most size bytes; -1 if no such string. */
int emu_desc_string(const EmuDesc *d, uint8_t index, uint8_t *buf, size_t size);
const char *emu_chip_product(EmuChip c);

/* ---- uevents (emu-uevent.c) ---- */

typedef struct EmuUevents EmuUevents;

EmuUevents *emu_uevents_new(const char *root_dir, GMainContext *ctx);
EmuUevents *emu_uevents_free(EmuUevents *u);
/* props: "KEY=value" strings, the device's uevent properties. */
void emu_uevents_send(EmuUevents *u, const char *action, const char *devpath, const char *subsystem,
                      const char *devtype, const GPtrArray *props);
/* Sockets bound by processes' uevent monitors; pid > 0 counts only that process's. */
unsigned emu_uevents_listeners(EmuUevents *u, pid_t pid);
unsigned emu_uevents_dropped(EmuUevents *u);

/* ---- the emulator's state (emu.c) ---- */

/* A sysfs device this emulator created: for uevents and removal. */
typedef struct EmuNode {
    char *syspath; /* "/sys/devices/usb1/1-1" */
    char *devpath; /* "/devices/usb1/1-1" (the uevent DEVPATH) */
    const char *devtype;
    GPtrArray *props; /* "KEY=value" */
} EmuNode;

typedef struct EmuClient EmuClient;
typedef struct EmuDevice EmuDevice;

struct EmuBoard {
    Emu *emu;
    char path[EMU_PATH_MAX];
    unsigned bus;
    EmuBoardConfig cfg;
    EmuMode mode;          /* of the current or last enumeration */
    DfuModel *model;       /* created at the first DFU-mode plug, kept for the board's life */
    bool model_unplugged;  /* the model said UNPLUG: it answers nothing ever again */
    unsigned generations;  /* models retired after an UNPLUG (see model_enter_dfu) */
    DfuModelStats past;    /* their statistics, summed */
    GBytes *past_received; /* the last completed download of a retired model */
    EmuDevice *dev;        /* current enumeration, NULL when unplugged */
    unsigned devnum;       /* of the current or last enumeration */
    bool leaving;          /* a detach or fault unplug is scheduled */
    unsigned enumerations, control_transfers, ioctls, opens, resets, detaches, unplugs;
    GSource *timer; /* pending detach/unplug/replug (main context) */
};

/* One enumeration: a devnum, a node, an ioctl handler. Kept until emu_free(). */
struct EmuDevice {
    EmuBoard *board;
    unsigned devnum;
    EmuMode mode;
    bool gone;
    char *devnode;       /* "/dev/bus/usb/001/005" */
    EmuNode *node;       /* the usb_device */
    GPtrArray *if_nodes; /* EmuNode*: its interfaces */
    EmuDesc desc;
    uint8_t configuration; /* bConfigurationValue, 0 = unconfigured */
    EmuClient *claimed[EMU_MAX_INTERFACES];
    bool driver_detached[EMU_MAX_INTERFACES];
    uint8_t line_coding[7];    /* CDC-ACM GET/SET_LINE_CODING */
    int64_t ep0_busy_until_us; /* control requests complete in order */
    GList *clients;            /* EmuClient*, open fds */
    UMockdevIoctlBase *handler;
};

struct Emu {
    GMutex lock;
    UMockdevTestbed *testbed;
    char *root_dir;
    GMainContext *main_ctx;
    GMainContext *worker_ctx; /* umockdev's, learnt at the first ioctl */
    EmuUevents *uevents;
    GPtrArray *boards;    /* EmuBoard* */
    GPtrArray *hubs;      /* EmuNode*: root and external hubs */
    GPtrArray *hub_paths; /* char*: "1-3", "usb1" for the root hubs */
    GPtrArray *devices;   /* EmuDevice*, every enumeration */
    bool bus_used[EMU_BUS_MAX + 1][128];
    unsigned bus_last[EMU_BUS_MAX + 1];
    uint64_t control_total;
    bool closing;
};

/* Schedule fn(data) on the main context after delay_ms (thread-safe). */
GSource *emu_main_call(Emu *e, uint32_t delay_ms, GSourceFunc fn, void *data);

/* Called by emu-usbdevfs.c with the lock held, from the worker thread. */
void emu_board_schedule_detach(EmuBoard *b); /* run-time DFU_DETACH */
void emu_board_schedule_vanish(EmuBoard *b); /* the model said UNPLUG */
/* Mark a device gone (in-flight URBs complete -ESHUTDOWN). Lock held. */
void emu_device_mark_gone(EmuDevice *d);

/* ---- usbdevfs (emu-usbdevfs.c, emu-ioctl.c, emu-control.c); lock held ---- */

/* A control request and what the board made of it. */
typedef struct EmuCtrl {
    uint8_t type, request;
    uint16_t value, index, length;
    uint8_t *data; /* length bytes: the OUT payload, or where IN data goes */
    int status;    /* 0, -EPIPE (STALL), -ESHUTDOWN (the board vanished) */
    uint16_t actual;
    uint32_t delay_ms;
    bool hang, vanish;
} EmuCtrl;

void emu_control(EmuDevice *d, EmuCtrl *x);
/* When it completes: ep0 answers in order; INT64_MAX for a hang. */
int64_t emu_control_ready_time(EmuDevice *d, const EmuCtrl *x);
void emu_count_control(EmuDevice *d);
void emu_device_set_configuration(EmuDevice *d, uint8_t value);
int emu_device_interface(const EmuDevice *d, unsigned ifno); /* index into desc.ifs, or -1 */
bool emu_device_endpoint(const EmuDevice *d, unsigned ep);

/* The result of one ioctl; deferred: someone completes it later. */
typedef struct EmuReply {
    long ret;
    int err;
    bool deferred;
} EmuReply;

static inline void emu_reply_fail(EmuReply *r, int err)
{
    r->ret = -1;
    r->err = err;
}

/* devio.c claimintf(): 0, or -ENOENT/-EBUSY. */
int emu_claim(EmuDevice *d, EmuClient *c, unsigned ifno);
/* Every ioctl but the URB ones; false for one we do not know. */
bool emu_ioctl_other(EmuDevice *d, EmuClient *c, UMockdevIoctlClient *client, unsigned long request,
                     EmuReply *r);

UMockdevIoctlBase *emu_usbdevfs_handler_new(EmuDevice *d);
void emu_usbdevfs_device_gone(EmuDevice *d); /* lock held */
void emu_usbdevfs_device_free(EmuDevice *d); /* drops clients' URBs; at emu_free() */

/* ---- misc (emu-config.c) ---- */

uint64_t emu_now_ms(void);
bool emu_path_valid(const char *path, unsigned *bus, unsigned *depth);
