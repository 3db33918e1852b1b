/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The libusb edge: one open board, for the length of one transfer session.
 *
 * A board is opened from the devnode udev gave us, wrapped with
 * libusb_wrap_sys_device() in a private context created with
 * LIBUSB_OPTION_NO_DEVICE_DISCOVERY (libusb starts no udev monitor or hotplug
 * thread of its own), inspected for its DFU interface, and exposed to the
 * engine as a DfuTransport. Close it as soon as the session ends: an idle open
 * handle is a cost (and under umockdev a busy loop).
 *
 * libusb error codes are turned into negative errno here and nowhere else.
 */

#include <stdbool.h>
#include <stdint.h>

#include "dfu.h"
#include "errcode.h"

typedef enum UsbDfuMode {
    USB_DFU_NONE,
    USB_DFU_RUNTIME, /* bInterfaceProtocol 1: the ROM's first presentation */
    USB_DFU_MODE,    /* bInterfaceProtocol 2: ready to download */
} UsbDfuMode;

typedef struct UsbBoard UsbBoard;

typedef void (*UsbLogFn)(int priority, const char *message); /* syslog priorities */

/*
 * Once per process, before any thread opens a board: sets the process-wide
 * NO_DEVICE_DISCOVERY default and routes libusb's own log lines to log_fn.
 */
int usb_global_init(UsbLogFn log_fn);

/* Open devnode, find the DFU interface and claim it. */
int usb_board_open(const char *devnode, UsbBoard **ret, ErrInfo *err);
UsbBoard *usb_board_close(UsbBoard *b); /* NULL-safe, returns NULL */

uint16_t usb_board_vid(const UsbBoard *b);
uint16_t usb_board_pid(const UsbBoard *b);
UsbDfuMode usb_board_mode(const UsbBoard *b);
const DfuTransport *usb_board_transport(UsbBoard *b);

/* Fill a DfuSession for this board (transport, interface, functional, config). */
void usb_board_session(UsbBoard *b, const DfuConfig *config, DfuSession *ret);

/* The one place libusb error codes become negative errno. */
int usb_errno_from_libusb(int libusb_error);
