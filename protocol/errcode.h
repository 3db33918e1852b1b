/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Stable error codes shared by the daemon, the client and the wire protocol.
 *
 * The string names are part of the protocol and of scripts people write against
 * espdfuctl --json: never rename or reuse one, only append. Each code also has an
 * errno class, so a function can fail with `return err_set(e, CODE, ...)` and still
 * follow the negative-errno convention, and a retry class. All three live in one
 * table in errcode.c.
 */

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

typedef enum EspdfuErr {
    ERR_OK = 0,

    /* Reading an image file. */
    ERR_IMAGE_IO,          /* read failed */
    ERR_IMAGE_NOT_REGULAR, /* a directory, a device, a pipe */
    ERR_IMAGE_EMPTY,       /* zero bytes */
    ERR_IMAGE_TOO_LARGE,   /* over IMAGE_MAX_SIZE */
    ERR_IMAGE_TRUNCATED,   /* ends before a structure it announced */

    /* The DFU suffix and its CRC. */
    ERR_SUFFIX_LENGTH,    /* bLength is not 16 */
    ERR_SUFFIX_SIGNATURE, /* not "UFD" */
    ERR_SUFFIX_VERSION,   /* bcdDFU is not 0x0100 */
    ERR_SUFFIX_VENDOR,    /* idVendor is neither 0x303a nor 0xffff */
    ERR_CRC_MISMATCH,     /* dwCRC != ~crc32(everything before it) */

    /* The CPIO newc archive. */
    ERR_CPIO_MAGIC,      /* not "070701" */
    ERR_CPIO_HEX,        /* a header field is not 8 hex digits */
    ERR_CPIO_NAMESIZE,   /* 0, or name runs past the archive */
    ERR_CPIO_FILESIZE,   /* data runs past the archive */
    ERR_CPIO_NAME,       /* not NUL-terminated, empty, or not a plain basename */
    ERR_CPIO_MODE,       /* not a regular file / trailer mode */
    ERR_CPIO_ALIGNMENT,  /* padding bytes are not zero */
    ERR_CPIO_TRAILER,    /* no TRAILER!!! entry */
    ERR_ARCHIVE_PADDING, /* archive not padded with zeros to 10240 */
    ERR_CPIO_DUPLICATE,  /* an entry name appears twice */

    /* dfuinfo0.dat and the entries it indexes. */
    ERR_DFUINFO_MISSING, /* first entry is not dfuinfo0.dat */
    ERR_DFUINFO_SIZE,    /* size not a multiple of 88 */
    ERR_DFUINFO_COUNT,   /* record count != entry count */
    ERR_DFUINFO_NAME,    /* record name != entry name, or not NUL-terminated */
    ERR_MD5_MISMATCH,    /* entry data does not match its record's md5 */
    ERR_FLASH_PARAMS,    /* flash_params.dat missing or malformed */
    ERR_ENTRY_OVERLAP,   /* two entries cover the same flash bytes */
    ERR_ENTRY_RANGE,     /* an entry ends past the flash size */

    /* Packing an image (espdfuctl pack). */
    ERR_PACK_INPUT,      /* a missing or unreadable input file */
    ERR_PACK_NAME,       /* a basename longer than 63 bytes */
    ERR_PACK_FLASH_SIZE, /* a flash size mkdfu does not know */
    ERR_PACK_CHIP,       /* an unknown chip name or PID */
    ERR_PACK_ARGS,       /* bad address, part size, or flasher_args.json */

    /* The USB DFU download. */
    ERR_WRONG_CHIP,       /* image VID:PID does not match the board */
    ERR_USB_OPEN,         /* opening or wrapping the devnode failed */
    ERR_USB_NO_DFU,       /* no DFU interface or functional descriptor */
    ERR_USB_CLAIM,        /* claiming the interface failed */
    ERR_USB_TRANSFER,     /* a control transfer failed (libusb error named) */
    ERR_USB_TIMEOUT,      /* a control transfer timed out */
    ERR_USB_STALL,        /* the board stalled a request */
    ERR_DISCONNECTED,     /* the board went away */
    ERR_DFU_STATUS,       /* the board reported a bStatus other than OK */
    ERR_DFU_STATE,        /* the board is in a state we cannot continue from */
    ERR_DNBUSY_TIMEOUT,   /* the board stayed busy longer than allowed */
    ERR_MANIFEST_TIMEOUT, /* manifestation did not complete */
    ERR_DETACH,           /* run-time DETACH failed for a reason the ROM never gives */
    ERR_REPLUG_TIMEOUT,   /* the board did not come back in DFU mode */
    ERR_CANCELLED,        /* cancelled by a person or by shutdown */
    ERR_JOB_TIMEOUT,      /* a daemon job ran longer than its job-timeout-s */
    ERR_NO_BOARD,         /* no board on that port path (or none at all) */
    ERR_INTERRUPTED,      /* the daemon stopped while the job was live */
    ERR_WAIT_TIMEOUT,     /* a job waited for its board longer than wait-timeout-s */

    _ERR_MAX,
} EspdfuErr;

/* A failure: the code, and one line that says what was wrong and where. */
typedef struct ErrInfo {
    EspdfuErr code;
    char message[256];
} ErrInfo;

const char *espdfu_err_to_string(EspdfuErr e);
EspdfuErr espdfu_err_from_string(const char *s); /* _ERR_MAX when unknown */
int espdfu_err_errno(EspdfuErr e);               /* positive errno class */
/*
 * Worth another attempt on the same plug: the USB link or the board's flash
 * hiccupped. False for ERR_OK and out of range.
 */
bool espdfu_err_is_transient(EspdfuErr e);

/*
 * Fill *e (when not NULL) and return the negative errno class of the code, so
 * `return err_set(err, ERR_CRC_MISMATCH, "...")` is the whole failure path.
 */
int err_set(ErrInfo *e, EspdfuErr code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int err_setv(ErrInfo *e, EspdfuErr code, const char *fmt, va_list ap)
        __attribute__((format(printf, 3, 0)));
