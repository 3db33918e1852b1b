/* SPDX-License-Identifier: MIT */
#include "errcode.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

/*
 * One row per code, indexed by it: the wire name (protocol: never change one), the
 * errno class err_set() returns negated, and whether another attempt on the same
 * plug may help (job_error_is_transient()): the USB link or the board's flash
 * hiccupped. A board that left, a wrong image, a missing DFU interface, a cancel
 * or a timeout of our own are not transient.
 */
static const struct {
    const char *name;
    int errno_class;
    bool transient;
} errors[] = {
        [ERR_OK] = {"ok", 0, false},

        [ERR_IMAGE_IO] = {"image-io", EIO, false},
        [ERR_IMAGE_NOT_REGULAR] = {"image-not-regular", EISDIR, false},
        [ERR_IMAGE_EMPTY] = {"image-empty", EINVAL, false},
        [ERR_IMAGE_TOO_LARGE] = {"image-too-large", EFBIG, false},
        [ERR_IMAGE_TRUNCATED] = {"image-truncated", EINVAL, false},

        [ERR_SUFFIX_LENGTH] = {"suffix-length", EINVAL, false},
        [ERR_SUFFIX_SIGNATURE] = {"suffix-signature", EINVAL, false},
        [ERR_SUFFIX_VERSION] = {"suffix-version", EINVAL, false},
        [ERR_SUFFIX_VENDOR] = {"suffix-vendor", EINVAL, false},
        [ERR_CRC_MISMATCH] = {"crc-mismatch", EINVAL, false},

        [ERR_CPIO_MAGIC] = {"cpio-magic", EINVAL, false},
        [ERR_CPIO_HEX] = {"cpio-hex", EINVAL, false},
        [ERR_CPIO_NAMESIZE] = {"cpio-namesize", EINVAL, false},
        [ERR_CPIO_FILESIZE] = {"cpio-filesize", EINVAL, false},
        [ERR_CPIO_NAME] = {"cpio-name", EINVAL, false},
        [ERR_CPIO_MODE] = {"cpio-mode", EINVAL, false},
        [ERR_CPIO_ALIGNMENT] = {"cpio-alignment", EINVAL, false},
        [ERR_CPIO_TRAILER] = {"cpio-trailer", EINVAL, false},
        [ERR_ARCHIVE_PADDING] = {"archive-padding", EINVAL, false},
        [ERR_CPIO_DUPLICATE] = {"cpio-duplicate", EINVAL, false},

        [ERR_DFUINFO_MISSING] = {"dfuinfo-missing", EINVAL, false},
        [ERR_DFUINFO_SIZE] = {"dfuinfo-size", EINVAL, false},
        [ERR_DFUINFO_COUNT] = {"dfuinfo-count", EINVAL, false},
        [ERR_DFUINFO_NAME] = {"dfuinfo-name", EINVAL, false},
        [ERR_MD5_MISMATCH] = {"md5-mismatch", EINVAL, false},
        [ERR_FLASH_PARAMS] = {"flash-params", EINVAL, false},
        [ERR_ENTRY_OVERLAP] = {"entry-overlap", EINVAL, false},
        [ERR_ENTRY_RANGE] = {"entry-range", EINVAL, false},

        [ERR_PACK_INPUT] = {"pack-input", EIO, false},
        [ERR_PACK_NAME] = {"pack-name", EINVAL, false},
        [ERR_PACK_FLASH_SIZE] = {"pack-flash-size", EINVAL, false},
        [ERR_PACK_CHIP] = {"pack-chip", EINVAL, false},
        [ERR_PACK_ARGS] = {"pack-args", EINVAL, false},

        [ERR_WRONG_CHIP] = {"wrong-chip", EMEDIUMTYPE, false},
        [ERR_USB_OPEN] = {"usb-open", EACCES, false},
        [ERR_USB_NO_DFU] = {"usb-no-dfu", ENOTSUP, false},
        [ERR_USB_CLAIM] = {"usb-claim", EACCES, true},
        [ERR_USB_TRANSFER] = {"usb-transfer", EIO, true},
        [ERR_USB_TIMEOUT] = {"usb-timeout", ETIMEDOUT, true},
        [ERR_USB_STALL] = {"usb-stall", EPIPE, true},
        [ERR_DISCONNECTED] = {"disconnected", ENODEV, false},
        [ERR_DFU_STATUS] = {"dfu-status", EIO, true},
        [ERR_DFU_STATE] = {"dfu-state", EIO, true},
        [ERR_DNBUSY_TIMEOUT] = {"dnbusy-timeout", ETIMEDOUT, true},
        [ERR_MANIFEST_TIMEOUT] = {"manifest-timeout", ETIMEDOUT, true},
        [ERR_DETACH] = {"detach", EIO, false},
        [ERR_REPLUG_TIMEOUT] = {"replug-timeout", ETIMEDOUT, false},
        [ERR_CANCELLED] = {"cancelled", ECANCELED, false},
        [ERR_JOB_TIMEOUT] = {"job-timeout", ETIMEDOUT, false},
        [ERR_NO_BOARD] = {"no-board", ENXIO, false},
        [ERR_INTERRUPTED] = {"interrupted", EINTR, false},
        [ERR_WAIT_TIMEOUT] = {"wait-timeout", ETIMEDOUT, false},
};

/* A code appended to the enum without a row fails here; a row left out in the middle
 * fails test-image's walk over every code. */
_Static_assert(ELEMENTSOF(errors) == _ERR_MAX, "errors[] needs one row per EspdfuErr");

static bool err_valid(EspdfuErr e)
{
    return (unsigned)e < ELEMENTSOF(errors);
}

const char *espdfu_err_to_string(EspdfuErr e)
{
    return err_valid(e) ? errors[e].name : NULL;
}

EspdfuErr espdfu_err_from_string(const char *s)
{
    if (!s)
        return _ERR_MAX;
    for (size_t e = 0; e < ELEMENTSOF(errors); e++)
        if (errors[e].name && strcmp(errors[e].name, s) == 0)
            return (EspdfuErr)e;
    return _ERR_MAX;
}

int espdfu_err_errno(EspdfuErr e)
{
    /* Out of range is a caller's bug; EINVAL keeps err_set() returning a failure. */
    return err_valid(e) ? errors[e].errno_class : EINVAL;
}

bool espdfu_err_is_transient(EspdfuErr e)
{
    return err_valid(e) && errors[e].transient;
}

int err_setv(ErrInfo *e, EspdfuErr code, const char *fmt, va_list ap)
{
    if (e) {
        e->code = code;
        vsnprintf(e->message, sizeof(e->message), fmt, ap);
    }
    return -espdfu_err_errno(code);
}

int err_set(ErrInfo *e, EspdfuErr code, const char *fmt, ...)
{
    va_list ap;
    int r;

    va_start(ap, fmt);
    r = err_setv(e, code, fmt, ap);
    va_end(ap);
    return r;
}
