/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * USB DFU 1.1 host logic (download only), written for Espressif's ROM but
 * following the spec. Pure: it talks to a board only through DfuTransport, so
 * it runs over libusb in the daemon (usb.c) and over an in-memory device model
 * in tests/test-dfu.c. No globals, no fds, no threads, no printing.
 *
 * Section numbers refer to "Universal Serial Bus Device Class Specification for
 * Device Firmware Upgrade", version 1.1.
 */

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "errcode.h"

/* Class requests, DFU 1.1 table 3.2. */
enum {
    DFU_REQ_DETACH = 0,
    DFU_REQ_DNLOAD = 1,
    DFU_REQ_UPLOAD = 2,
    DFU_REQ_GETSTATUS = 3,
    DFU_REQ_CLRSTATUS = 4,
    DFU_REQ_GETSTATE = 5,
    DFU_REQ_ABORT = 6,
};

/* bmRequestType for class requests to an interface (DFU 1.1 section 3). */
#define DFU_RT_OUT 0x21
#define DFU_RT_IN  0xa1

/* bState, DFU 1.1 section 6.1.2. */
typedef enum DfuState {
    DFU_STATE_APP_IDLE = 0,
    DFU_STATE_APP_DETACH = 1,
    DFU_STATE_DFU_IDLE = 2,
    DFU_STATE_DNLOAD_SYNC = 3,
    DFU_STATE_DNBUSY = 4,
    DFU_STATE_DNLOAD_IDLE = 5,
    DFU_STATE_MANIFEST_SYNC = 6,
    DFU_STATE_MANIFEST = 7,
    DFU_STATE_MANIFEST_WAIT_RESET = 8,
    DFU_STATE_UPLOAD_IDLE = 9,
    DFU_STATE_ERROR = 10,
    _DFU_STATE_MAX,
} DfuState;

/* bStatus, DFU 1.1 section 6.1.2. */
typedef enum DfuStatus {
    DFU_STATUS_OK = 0x00,
    DFU_STATUS_ERR_TARGET = 0x01,
    DFU_STATUS_ERR_FILE = 0x02,
    DFU_STATUS_ERR_WRITE = 0x03,
    DFU_STATUS_ERR_ERASE = 0x04,
    DFU_STATUS_ERR_CHECK_ERASED = 0x05,
    DFU_STATUS_ERR_PROG = 0x06,
    DFU_STATUS_ERR_VERIFY = 0x07,
    DFU_STATUS_ERR_ADDRESS = 0x08,
    DFU_STATUS_ERR_NOTDONE = 0x09,
    DFU_STATUS_ERR_FIRMWARE = 0x0a,
    DFU_STATUS_ERR_VENDOR = 0x0b,
    DFU_STATUS_ERR_USBR = 0x0c,
    DFU_STATUS_ERR_POR = 0x0d,
    DFU_STATUS_ERR_UNKNOWN = 0x0e,
    DFU_STATUS_ERR_STALLEDPKT = 0x0f,
    _DFU_STATUS_MAX,
} DfuStatus;

const char *dfu_state_to_string(DfuState s); /* "dfuIDLE", "dfuDNBUSY", ...; NULL if out of range */
const char *dfu_status_to_string(DfuStatus s); /* "OK", "errTARGET", ... "errSTALLEDPKT" */

/* DFU functional descriptor, DFU 1.1 section 4.1.3 (type 0x21, 9 bytes). */
#define DFU_DESC_FUNCTIONAL        0x21
#define DFU_ATTR_CAN_DNLOAD        0x01
#define DFU_ATTR_CAN_UPLOAD        0x02
#define DFU_ATTR_MANIFEST_TOLERANT 0x04
#define DFU_ATTR_WILL_DETACH       0x08

typedef struct DfuFunctional {
    uint8_t attributes;
    uint16_t detach_timeout_ms;
    uint16_t transfer_size;
    uint16_t dfu_version; /* BCD; 0x0110 for DFU 1.1 */
} DfuFunctional;

/*
 * Find the DFU functional descriptor in an interface's extra descriptor bytes
 * (what libusb gives as altsetting->extra). Returns 0, or -ENOENT/-EINVAL.
 */
int dfu_parse_functional(const uint8_t *extra, size_t len, DfuFunctional *ret);

/* The 6-byte GETSTATUS answer, DFU 1.1 section 6.1.2. */
typedef struct DfuStatusReply {
    uint8_t status;        /* DfuStatus */
    uint32_t poll_timeout; /* bwPollTimeout, ms, 24 bits */
    uint8_t state;         /* DfuState */
    uint8_t string_index;
} DfuStatusReply;

/*
 * What the engine needs of a board. Negative errno from control():
 * -ETIMEDOUT timed out, -EPIPE stalled, -ENODEV board gone, anything else an
 * I/O error; error_name() turns one into the transport's own name for it
 * ("LIBUSB_ERROR_PIPE"), so messages say what the USB stack said.
 */
typedef struct DfuTransport {
    void *userdata;
    /* One control transfer on endpoint 0. Returns bytes transferred or -errno. */
    int (*control)(void *userdata, uint8_t request_type, uint8_t request, uint16_t value,
                   uint16_t index, uint8_t *data, uint16_t length, unsigned timeout_ms);
    /* USB port reset. May be NULL when the transport cannot. */
    int (*reset)(void *userdata);
    /* Sleep exactly ms milliseconds; a model advances virtual time instead. */
    void (*sleep_ms)(void *userdata, uint32_t ms);
    /* Monotonic milliseconds, for bounding waits. */
    uint64_t (*now_ms)(void *userdata);
    /* Optional: a name for a negative errno control() returned. */
    const char *(*error_name)(void *userdata, int err);
} DfuTransport;

typedef struct DfuConfig {
    unsigned transfer_timeout_ms; /* per control transfer; default 30000 (dfu-util: 5000) */
    unsigned dnbusy_timeout_ms;   /* one block may stay busy this long; default 120000 */
    unsigned manifest_max_polls;  /* default 200 */
} DfuConfig;

void dfu_config_init(DfuConfig *c);

typedef enum DfuPhase {
    DFU_PHASE_DETACH,
    DFU_PHASE_PREPARE, /* bringing the board to dfuIDLE */
    DFU_PHASE_DOWNLOAD,
    DFU_PHASE_MANIFEST,
    _DFU_PHASE_MAX,
} DfuPhase;

const char *dfu_phase_to_string(DfuPhase p); /* "detach", "prepare", "download", "manifest" */

/* Called after every block; must be cheap. */
typedef void (*DfuProgressFn)(void *userdata, uint64_t sent, uint64_t total);

typedef struct DfuSession {
    const DfuTransport *transport;
    uint16_t interface; /* wIndex of every class request */
    DfuFunctional functional;
    DfuConfig config;
    DfuProgressFn progress; /* may be NULL */
    void *progress_userdata;
    const atomic_bool *cancel; /* checked between blocks and during long waits; may be NULL */
} DfuSession;

/*
 * Where a failure happened, for job records; filled by dfu_download() on error
 * (and on success, where it counts what was done).
 */
typedef struct DfuReport {
    DfuPhase phase;
    uint32_t block;      /* block number counted from 0, not wrapped */
    uint64_t offset;     /* payload offset of that block */
    int dfu_status;      /* last bStatus seen, -1 if none */
    int dfu_state;       /* last bState seen, -1 if none */
    int transport_error; /* last negative errno from the transport, 0 if none */
    unsigned blocks_sent;
    unsigned busy_polls;
} DfuReport;

/*
 * Run-time interface: send DFU_DETACH (wValue = wDetachTimeOut, 1000 when 0).
 * The ROM answers with an error and re-enumerates anyway; that is expected, not
 * a failure: a STALL, an I/O error or ENODEV are all fine, a timeout is not.
 * Returns 1 when the board re-enumerates by itself (bitWillDetach, or it already
 * left during DETACH), 0 when the caller must reset it (done here when
 * transport->reset is set; a reset that ends in ENODEV is fine), or -errno.
 */
int dfu_detach(const DfuSession *s, ErrInfo *err);

/*
 * DFU-mode interface: bring the board to dfuIDLE, download payload in
 * transfer_size blocks with GETSTATUS polling, the zero-length DNLOAD, then
 * manifestation. 0 on success; on failure -errno with *err naming the phase,
 * block, offset and the DFU status or transport error, and *report filled.
 *
 * Waits: exactly the bwPollTimeout each GETSTATUS answer asks for (1 ms when a
 * busy board asks 0; 100 ms while manifesting), one block's busy time bounded
 * by dnbusy_timeout_ms, manifestation by manifest_max_polls GETSTATUS.
 * Cancel is checked between blocks and every 100 ms of a wait; ABORT is then
 * sent, best effort. Once the zero-length DNLOAD is sent it is not honoured.
 * Success at the end: dfuIDLE (the ESP ROM); dfuMANIFEST-WAIT-RESET, after a
 * reset when the transport can; or a board without bitManifestationTolerant
 * that vanishes (ENODEV) after the zero-length DNLOAD (DFU 1.1 section 7). A
 * tolerant board that vanishes there fails with ERR_DISCONNECTED.
 */
int dfu_download(const DfuSession *s, const uint8_t *payload, size_t size, DfuReport *report,
                 ErrInfo *err);
