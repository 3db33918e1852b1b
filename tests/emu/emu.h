/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Emulated Espressif boards for USB tests without hardware.
 *
 * An Emu owns a umockdev testbed (a private sysfs and /dev under
 * $UMOCKDEV_DIR). Boards plugged into it look like real ESP32-S2/S3/P4 ROMs to
 * any unmodified program that uses libusb-1.0 and libudev and runs with
 * LD_PRELOAD=libumockdev-preload.so.0 and that UMOCKDEV_DIR (emu_spawn() sets
 * both). Their usbdevfs ioctls are answered here: standard requests from our
 * descriptors, DFU class requests by the board model (dfu-model.h).
 *
 * Threads: every emu_* function is called from the thread that called
 * emu_new() (the "main" thread), whose GMainContext must be iterated
 * (emu_run(), emu_wait_child(), emu_iterate()) for timed events to happen:
 * delayed re-enumeration, timed unplugs, uevents. usbdevfs ioctls are
 * answered on umockdev's worker thread. Board queries are thread-safe.
 *
 * Errors are negative errno values; nothing here prints except the
 * emulator's own diagnostics on stderr (prefixed "espdfu-emu:").
 * Details and pitfalls: docs/emulator.md.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "dfu-model.h"

#define EMU_VID        0x303au
#define EMU_BCD_DEVICE 0x0723u
#define EMU_PATH_MAX   32u /* "1-1.2.3.4.5.6.7" fits */
#define EMU_MAX_BOARDS 64u
#define EMU_MAX_DEPTH  7u /* hub tiers below the root hub, as in USB 2.0 */

typedef enum EmuChip {
    EMU_CHIP_ESP32S2,  /* PID 0x0002 */
    EMU_CHIP_ESP32S3,  /* PID 0x0009 */
    EMU_CHIP_ESP32P4,  /* PID 0x0012 */
    EMU_CHIP_ESP32S31, /* PID 0x0020 */
    _EMU_CHIP_MAX,
} EmuChip;

const char *emu_chip_to_string(EmuChip c);   /* "esp32s3"; NULL when out of range */
EmuChip emu_chip_from_string(const char *s); /* _EMU_CHIP_MAX when unknown */
uint16_t emu_chip_pid(EmuChip c);            /* 0 when out of range */

/* The ROM's two USB presentations (docs/emulator.md, "Descriptors"). */
typedef enum EmuMode {
    EMU_MODE_RUNTIME, /* CDC-ACM on interfaces 0-1, DFU run-time on 2 */
    EMU_MODE_DFU,     /* DFU mode: one DFU interface 0 */
    _EMU_MODE_MAX,
} EmuMode;

const char *emu_mode_to_string(EmuMode m);   /* "runtime", "dfu" */
EmuMode emu_mode_from_string(const char *s); /* _EMU_MODE_MAX when unknown */

/* "errWRITE" <-> 0x03, DFU 1.1 table 6.2; -1 / NULL when unknown. */
int emu_dfu_status_from_string(const char *s);
const char *emu_dfu_status_to_string(uint8_t status);

#define EMU_DFU_ATTR_CAN_DNLOAD        0x01u
#define EMU_DFU_ATTR_CAN_UPLOAD        0x02u
#define EMU_DFU_ATTR_MANIFEST_TOLERANT 0x04u
#define EMU_DFU_ATTR_WILL_DETACH       0x08u

typedef struct EmuBoardConfig {
    EmuChip chip;
    EmuMode mode;               /* presentation at the first plug */
    DfuModelConfig model;       /* DFU-mode behaviour: wTransferSize, timing, faults */
    uint8_t dfu_attributes;     /* bmAttributes of the DFU-mode functional descriptor */
    uint8_t runtime_attributes; /* ... of the run-time one (WILL_DETACH set: the ROM re-enumerates)
                                 */
    uint16_t detach_timeout_ms; /* wDetachTimeOut, both descriptors */
    uint32_t detach_delay_ms;   /* run-time: DFU_DETACH -> the board leaves */
    uint32_t reenum_delay_ms;   /* gone -> back in DFU mode (detach, replug-after) */
    int64_t unplug_after_ms;    /* -1: never; else unplug this long after each plug */
    int64_t replug_after_ms;    /* -1: never; else come back (DFU mode) after an unplug that
                                   the board did itself (unplug-at fault, unplug-after) */
} EmuBoardConfig;

/* ROM-like defaults: dfu_model_config_init(), attributes 0x0D / 0x09, detach 300 ms. */
void emu_board_config_init(EmuBoardConfig *c, EmuChip chip, EmuMode mode);

/*
 * Parse "esp32s3:dfu[,key=value...]" (the CLI's --board after "PATH:"), on top
 * of emu_board_config_init(). Keys: transfer, poll, erase, max-payload,
 * error-at, status, stall-at, hang-at, unplug-at, busy-at, fault-attempts,
 * manifest-polls, wait-reset, attrs, rt-attrs, detach-timeout, detach-delay,
 * reenum-delay, unplug-after, replug-after (docs/emulator.md). On error
 * returns -EINVAL and, if err is not NULL, a message (g_free it).
 */
int emu_board_config_parse(const char *spec, EmuBoardConfig *ret, char **err);

typedef struct Emu Emu;
typedef struct EmuBoard EmuBoard;

/*
 * Create the testbed (sets UMOCKDEV_DIR in this process's environment, as
 * umockdev does). The process must not itself run under
 * libumockdev-preload: -EBUSY then (see emu_reexec_without_preload()).
 */
int emu_new(Emu **ret);
Emu *emu_free(Emu *e); /* NULL-safe; unplugs everything, removes the testbed */

const char *emu_root_dir(const Emu *e); /* the testbed's $UMOCKDEV_DIR */

/*
 * If LD_PRELOAD holds libumockdev-preload, re-exec argv[0] (via
 * /proc/self/exe) without it. Returns only when nothing had to be done
 * (0) or the exec failed (negative errno).
 */
int emu_reexec_without_preload(char **argv);

/*
 * Plug a board on a port path ("1-1", "1-3.2": bus-port[.port...]), creating
 * parent hubs as needed. It enumerates at once with a fresh devnum; add-uevents
 * go to every listener. -EEXIST if the path (or a hub on it) is taken.
 */
int emu_add_board(Emu *e, const char *path, const EmuBoardConfig *c, EmuBoard **ret);
EmuBoard *emu_find_board(Emu *e, const char *path);
/* The root hub and the hubs above path, now (emu_add_board() adds them as needed). */
int emu_add_hubs(Emu *e, const char *path);
size_t emu_n_boards(const Emu *e);
EmuBoard *emu_board_by_index(Emu *e, size_t i);

/*
 * Unplug: in-flight URBs complete with -ESHUTDOWN, later ioctls fail ENODEV,
 * remove-uevents are sent, the sysfs tree and the node disappear. -EALREADY
 * if not plugged.
 */
int emu_board_unplug(EmuBoard *b);
/* Plug again on the same path, new devnum, in the given mode. -EBUSY if plugged. */
int emu_board_replug(EmuBoard *b, EmuMode mode);

typedef struct EmuBoardInfo {
    char path[EMU_PATH_MAX];
    EmuChip chip;
    EmuMode mode; /* current presentation, or the last one when unplugged */
    bool plugged;
    unsigned busnum, devnum;    /* devnum of the current (or last) enumeration */
    unsigned enumerations;      /* plugs so far, including re-enumerations */
    unsigned control_transfers; /* control requests that reached the board (docs) */
    unsigned ioctls;            /* usbdevfs ioctls, every kind */
    unsigned opens;             /* device node opens */
    unsigned resets;            /* USBDEVFS_RESET */
    unsigned detaches;          /* DFU_DETACH received in run-time mode */
    unsigned unplugs;
    bool has_model;    /* false until the board first showed up in DFU mode */
    DfuModelStats dfu; /* zeroed when !has_model */
} EmuBoardInfo;

void emu_board_info(EmuBoard *b, EmuBoardInfo *ret);

/* A copy of what the model received in its last completed download (g_free it). */
int emu_board_received(EmuBoard *b, uint8_t **ret, size_t *ret_len);

/* The report of every board as one JSON array (g_free it). */
char *emu_report_json(Emu *e);

/*
 * Children. emu_spawn() starts argv with the testbed's environment:
 * UMOCKDEV_DIR, LD_PRELOAD=libumockdev-preload.so.0 plus our shim (so that
 * several processes can listen to uevents at once), ASAN_OPTIONS with
 * verify_asan_link_order=0 added, and the extra "NAME=value" strings in env.
 * When capture is true, stdout and stderr are collected (see emu_wait_child)
 * and echoed to our stderr; otherwise the child shares ours.
 */
typedef struct EmuChild EmuChild;

/* That environment, for programs started some other way (g_strfreev it). */
char **emu_child_env(Emu *e, char *const extra[]);

int emu_spawn(Emu *e, char *const argv[], char *const env[], bool capture, EmuChild **ret);
pid_t emu_child_pid(const EmuChild *c);

/*
 * Iterate the main loop until the child exits or timeout_ms passes (then it is
 * killed with SIGKILL and -ETIMEDOUT returned). *ret_status is a shell-style
 * status: the exit code, or 128 + signal. *ret_output (may be NULL) receives
 * the captured output (g_free it). Frees the child.
 */
int emu_wait_child(Emu *e, EmuChild *c, int timeout_ms, int *ret_status, char **ret_output);

/* emu_spawn() + emu_wait_child(). */
int emu_run(Emu *e, char *const argv[], int timeout_ms, int *ret_status, char **ret_output);

/* Iterate the main loop for ms milliseconds. */
void emu_iterate(Emu *e, int ms);

/* Iterate until done(data) or timeout_ms; returns done's last value. */
bool emu_iterate_until(Emu *e, bool (*done)(void *data), void *data, int timeout_ms);

/*
 * Wait until a process has bound a uevent listener in the testbed (pid 0: any
 * process). Needs the shim for a specific pid. -ETIMEDOUT otherwise.
 */
int emu_wait_listener(Emu *e, pid_t pid, int timeout_ms);
unsigned emu_listeners(Emu *e, pid_t pid); /* how many are bound now */

/* Totals across boards, for capacity measurements. */
uint64_t emu_control_transfers(Emu *e);
