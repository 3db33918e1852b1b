/* SPDX-License-Identifier: MIT */
#include "errcode.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

const char *espdfu_err_to_string(EspdfuErr e)
{
    /* A switch with no default: the compiler flags a code without a name. */
    switch (e) {
    case ERR_OK:
        return "ok";
    case ERR_IMAGE_IO:
        return "image-io";
    case ERR_IMAGE_NOT_REGULAR:
        return "image-not-regular";
    case ERR_IMAGE_EMPTY:
        return "image-empty";
    case ERR_IMAGE_TOO_LARGE:
        return "image-too-large";
    case ERR_IMAGE_TRUNCATED:
        return "image-truncated";
    case ERR_SUFFIX_LENGTH:
        return "suffix-length";
    case ERR_SUFFIX_SIGNATURE:
        return "suffix-signature";
    case ERR_SUFFIX_VERSION:
        return "suffix-version";
    case ERR_SUFFIX_VENDOR:
        return "suffix-vendor";
    case ERR_CRC_MISMATCH:
        return "crc-mismatch";
    case ERR_CPIO_MAGIC:
        return "cpio-magic";
    case ERR_CPIO_HEX:
        return "cpio-hex";
    case ERR_CPIO_NAMESIZE:
        return "cpio-namesize";
    case ERR_CPIO_FILESIZE:
        return "cpio-filesize";
    case ERR_CPIO_NAME:
        return "cpio-name";
    case ERR_CPIO_MODE:
        return "cpio-mode";
    case ERR_CPIO_ALIGNMENT:
        return "cpio-alignment";
    case ERR_CPIO_TRAILER:
        return "cpio-trailer";
    case ERR_ARCHIVE_PADDING:
        return "archive-padding";
    case ERR_CPIO_DUPLICATE:
        return "cpio-duplicate";
    case ERR_DFUINFO_MISSING:
        return "dfuinfo-missing";
    case ERR_DFUINFO_SIZE:
        return "dfuinfo-size";
    case ERR_DFUINFO_COUNT:
        return "dfuinfo-count";
    case ERR_DFUINFO_NAME:
        return "dfuinfo-name";
    case ERR_MD5_MISMATCH:
        return "md5-mismatch";
    case ERR_FLASH_PARAMS:
        return "flash-params";
    case ERR_ENTRY_OVERLAP:
        return "entry-overlap";
    case ERR_ENTRY_RANGE:
        return "entry-range";
    case ERR_PACK_INPUT:
        return "pack-input";
    case ERR_PACK_NAME:
        return "pack-name";
    case ERR_PACK_FLASH_SIZE:
        return "pack-flash-size";
    case ERR_PACK_CHIP:
        return "pack-chip";
    case ERR_PACK_ARGS:
        return "pack-args";
    case ERR_WRONG_CHIP:
        return "wrong-chip";
    case ERR_USB_OPEN:
        return "usb-open";
    case ERR_USB_NO_DFU:
        return "usb-no-dfu";
    case ERR_USB_CLAIM:
        return "usb-claim";
    case ERR_USB_TRANSFER:
        return "usb-transfer";
    case ERR_USB_TIMEOUT:
        return "usb-timeout";
    case ERR_USB_STALL:
        return "usb-stall";
    case ERR_DISCONNECTED:
        return "disconnected";
    case ERR_DFU_STATUS:
        return "dfu-status";
    case ERR_DFU_STATE:
        return "dfu-state";
    case ERR_DNBUSY_TIMEOUT:
        return "dnbusy-timeout";
    case ERR_MANIFEST_TIMEOUT:
        return "manifest-timeout";
    case ERR_DETACH:
        return "detach";
    case ERR_REPLUG_TIMEOUT:
        return "replug-timeout";
    case ERR_CANCELLED:
        return "cancelled";
    case ERR_NO_BOARD:
        return "no-board";
    case ERR_JOB_TIMEOUT:
        return "job-timeout";
    case ERR_INTERRUPTED:
        return "interrupted";
    case ERR_WAIT_TIMEOUT:
        return "wait-timeout";
    case _ERR_MAX:
        break;
    }
    return NULL;
}

EspdfuErr espdfu_err_from_string(const char *s)
{
    if (!s)
        return _ERR_MAX;
    for (int e = 0; e < _ERR_MAX; e++)
        if (strcmp(espdfu_err_to_string((EspdfuErr)e), s) == 0)
            return (EspdfuErr)e;
    return _ERR_MAX;
}

int espdfu_err_errno(EspdfuErr e)
{
    switch (e) {
    case ERR_OK:
        return 0;
    case ERR_IMAGE_IO:
    case ERR_PACK_INPUT:
        return EIO;
    case ERR_IMAGE_NOT_REGULAR:
        return EISDIR;
    case ERR_IMAGE_TOO_LARGE:
        return EFBIG;
    case ERR_WRONG_CHIP:
        return EMEDIUMTYPE;
    case ERR_USB_OPEN:
    case ERR_USB_CLAIM:
        return EACCES;
    case ERR_USB_NO_DFU:
        return ENOTSUP;
    case ERR_USB_TRANSFER:
    case ERR_DFU_STATUS:
    case ERR_DFU_STATE:
    case ERR_DETACH:
        return EIO;
    case ERR_USB_STALL:
        return EPIPE;
    case ERR_USB_TIMEOUT:
    case ERR_DNBUSY_TIMEOUT:
    case ERR_MANIFEST_TIMEOUT:
    case ERR_REPLUG_TIMEOUT:
    case ERR_JOB_TIMEOUT:
    case ERR_WAIT_TIMEOUT:
        return ETIMEDOUT;
    case ERR_DISCONNECTED:
        return ENODEV;
    case ERR_CANCELLED:
        return ECANCELED;
    case ERR_INTERRUPTED:
        return EINTR;
    case ERR_NO_BOARD:
        return ENXIO;
    case ERR_IMAGE_EMPTY:
    case ERR_IMAGE_TRUNCATED:
    case ERR_SUFFIX_LENGTH:
    case ERR_SUFFIX_SIGNATURE:
    case ERR_SUFFIX_VERSION:
    case ERR_SUFFIX_VENDOR:
    case ERR_CRC_MISMATCH:
    case ERR_CPIO_MAGIC:
    case ERR_CPIO_HEX:
    case ERR_CPIO_NAMESIZE:
    case ERR_CPIO_FILESIZE:
    case ERR_CPIO_NAME:
    case ERR_CPIO_MODE:
    case ERR_CPIO_ALIGNMENT:
    case ERR_CPIO_TRAILER:
    case ERR_ARCHIVE_PADDING:
    case ERR_CPIO_DUPLICATE:
    case ERR_DFUINFO_MISSING:
    case ERR_DFUINFO_SIZE:
    case ERR_DFUINFO_COUNT:
    case ERR_DFUINFO_NAME:
    case ERR_MD5_MISMATCH:
    case ERR_FLASH_PARAMS:
    case ERR_ENTRY_OVERLAP:
    case ERR_ENTRY_RANGE:
    case ERR_PACK_NAME:
    case ERR_PACK_FLASH_SIZE:
    case ERR_PACK_CHIP:
    case ERR_PACK_ARGS:
        return EINVAL;
    case _ERR_MAX:
        break;
    }
    return EINVAL;
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
