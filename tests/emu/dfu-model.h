/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * A model of the ESP32-S2/S3 ROM's DFU-mode interface: the DFU 1.1 state
 * machine, the ROM's timing (bwPollTimeout per block, a long erase stall when
 * the first byte of a flashed entry arrives), faults on demand, and a record of
 * exactly what the host sent.
 *
 * Pure and transport-free: tests/test-dfu.c drives it through an in-memory
 * DfuTransport on a virtual clock; tests/emu/ (umockdev) answers real usbdevfs
 * control URBs with it. Same model, so the engine's unit tests and the real
 * libusb tests agree on what a board does; the emulator is held to dfu-util.
 *
 * dfu-model.c includes dfu.h (daemon/) for the DFU enums and image.h
 * (protocol/) for image_check_archive(): link espdfud-lib, or espdfu-core plus
 * daemon/ on the include path.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Faults on demand. Block numbers count DNLOAD blocks from 0 in one attempt. */
typedef struct DfuModelFaults {
    int error_at_block;      /* -1: none. GETSTATUS after this block reports error_status */
    uint8_t error_status;    /* a DfuStatus, e.g. 0x03 errWRITE */
    int stall_at_block;      /* -1: none. STALL this block's DNLOAD (dfuERROR, errSTALLEDPKT) */
    int hang_at_block;       /* -1: none. GETSTATUS after this block never completes */
    int unplug_at_block;     /* -1: none. The board vanishes when this block arrives */
    unsigned fault_attempts; /* faults fire only in the first K attempts; 0 = every attempt */
    int busy_at_block;       /* -1: none. After this block the board stays dfuDNBUSY for good */
} DfuModelFaults;

/* manifest_polls value: manifestation never completes. */
#define DFU_MODEL_FOREVER UINT32_MAX

typedef struct DfuModelConfig {
    uint16_t transfer_size;   /* wTransferSize; the ROM reports 64 */
    uint32_t poll_timeout_ms; /* bwPollTimeout reported while a block is busy */
    uint32_t erase_ms;        /* GETSTATUS delay when a block holds an entry's first data byte */
    size_t max_payload;       /* largest download accepted (errADDRESS beyond); 0 = 256 MiB */
    DfuModelFaults faults;
    /* Additions; dfu_model_config_init() sets the ROM's behaviour. */
    uint32_t manifest_polls;  /* GETSTATUS answers saying dfuMANIFEST; 0 = the ROM (straight to
                                 dfuIDLE), DFU_MODEL_FOREVER = never done */
    bool manifest_wait_reset; /* end in dfuMANIFEST-WAIT-RESET (not manifestation tolerant) */
    bool runtime;             /* start as the run-time interface (appIDLE): DETACH is answered
                                 with a STALL, as the ROM does; dfu_model_reset() then enters
                                 DFU mode */
} DfuModelConfig;

void dfu_model_config_init(DfuModelConfig *c); /* ROM-like defaults, no faults */

typedef struct DfuModel DfuModel;

DfuModel *dfu_model_new(const DfuModelConfig *c);
DfuModel *dfu_model_free(DfuModel *m);

/* What a transport must do with one request after the model handled it. */
typedef enum DfuModelAction {
    DFU_MODEL_REPLY,  /* complete it with the returned length, after delay_ms */
    DFU_MODEL_STALL,  /* complete it with a STALL (EPIPE) */
    DFU_MODEL_HANG,   /* never complete it (the host's timeout fires) */
    DFU_MODEL_UNPLUG, /* the board is gone: this and every later request fails ENODEV */
} DfuModelAction;

/*
 * Handle one class request to the DFU interface, arriving at now_ms on the
 * caller's clock. For IN requests data receives up to length bytes; the number
 * written is stored in *reply_len. *delay_ms says how long the board takes to
 * answer (the erase stall). For OUT requests data holds what the host sent and
 * *reply_len is set to length when the request completes.
 */
DfuModelAction dfu_model_control(DfuModel *m, uint64_t now_ms, uint8_t request_type,
                                 uint8_t request, uint16_t value, uint8_t *data, uint16_t length,
                                 uint16_t *reply_len, uint32_t *delay_ms);

/* What the host sent in the last completed download (after the zero-length DNLOAD). */
const uint8_t *dfu_model_received(const DfuModel *m, size_t *len);

/*
 * A USB port reset (or the re-enumeration after DETACH): the board comes back
 * in DFU mode, dfuIDLE, a hung board is unwedged, the current attempt is lost.
 * A run-time board that was not detached stays in appIDLE. An unplugged board
 * stays unplugged.
 */
void dfu_model_reset(DfuModel *m);

/* Statistics a test checks. */
typedef struct DfuModelStats {
    unsigned requests;         /* every control request seen */
    unsigned attempts;         /* downloads started (block 0 from dfuIDLE) */
    unsigned downloads_ok;     /* downloads that manifested and validated */
    unsigned early_polls;      /* GETSTATUS sooner than the bwPollTimeout last reported */
    uint64_t max_poll_late_ms; /* largest delay past a bwPollTimeout before the next GETSTATUS */
    unsigned aborts, clrstatus, detaches;
    uint8_t state, status; /* current bState, bStatus */
    bool validated;        /* the last download was a valid image with matching MD5s */
    /* Additions. */
    unsigned resets;   /* dfu_model_reset() calls */
    unsigned erases;   /* entries whose first data byte triggered an erase */
    unsigned stalls;   /* requests answered with a STALL */
    uint64_t asked_ms; /* sum of every reply delay and every bwPollTimeout reported:
                          what a host that waits exactly as asked spends waiting */
} DfuModelStats;

void dfu_model_stats(const DfuModel *m, DfuModelStats *ret);
