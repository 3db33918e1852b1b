/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The dfu.bin image that ESP-IDF's `idf.py dfu` (tools/mkdfu.py) writes:
 * a CPIO newc archive padded to 10240 bytes, a 16-byte DFU suffix, and its CRC.
 * Layout and sources: docs/image-format.md.
 *
 * Pure module: bytes in, a description or a one-line error out. No fds, no
 * globals, no printing. The daemon and espdfuctl both link it.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "errcode.h"
#include "util.h"

#define ESP_USB_VID             0x303au
#define IMAGE_SUFFIX_SIZE       16u
#define IMAGE_CPIO_BLOCK        10240u
#define IMAGE_MAX_SIZE          (256u * 1024u * 1024u) /* twice the largest flash */
#define IMAGE_MAX_ENTRIES       65536u
#define IMAGE_NAME_MAX          63u /* dfuinfo0.dat name field is 64 bytes with NUL */
#define IMAGE_DEFAULT_PART_SIZE (512u * 1024u)

/* The archive's fixed names and sizes, as mkdfu.py writes them. */
#define IMAGE_CPIO_MAGIC          "070701"
#define IMAGE_CPIO_HEADER_SIZE    110u
#define IMAGE_CPIO_MODE_FILE      0100644u
#define IMAGE_CPIO_TRAILER        "TRAILER!!!"
#define IMAGE_DFUINFO_NAME        "dfuinfo0.dat"
#define IMAGE_DFUINFO_RECORD_SIZE 88u
#define IMAGE_FLASH_PARAMS_NAME   "flash_params.dat"
#define IMAGE_FLASH_PARAMS_SIZE   32u
#define IMAGE_DEFAULT_FLASH_SIZE  (2u * 1024u * 1024u) /* mkdfu's --flash-size default */

/* dfuinfo0.dat record flags (mkdfu.py). */
#define IMAGE_FLAG_PARAM      (1u << 2)
#define IMAGE_FLAG_NOERASE    (1u << 3)
#define IMAGE_FLAG_IGNORE_MD5 (1u << 4)

typedef enum Chip {
    CHIP_UNKNOWN,
    CHIP_ESP32S2,  /* PID 0x0002 */
    CHIP_ESP32S3,  /* PID 0x0009 */
    CHIP_ESP32P4,  /* PID 0x0012 */
    CHIP_ESP32S31, /* PID 0x0020 */
    _CHIP_MAX,
} Chip;

const char *chip_to_string(Chip c);   /* "esp32s2"; "unknown" for CHIP_UNKNOWN */
Chip chip_from_string(const char *s); /* _CHIP_MAX when not a chip name */
Chip chip_from_pid(uint16_t pid);     /* CHIP_UNKNOWN for any other PID */
uint16_t chip_to_pid(Chip c);         /* 0 for CHIP_UNKNOWN */

/* flash_params.dat: eight little-endian u32 (esptool's flash parameters). */
typedef struct FlashParams {
    uint32_t ishspi, legacy, device_id, chip_size, block_size, sector_size, page_size, status_mask;
} FlashParams;

typedef struct ImageEntry {
    char name[IMAGE_NAME_MAX + 1];
    uint32_t address;     /* flash address */
    uint32_t flags;       /* IMAGE_FLAG_* */
    uint32_t size;        /* unpadded data size */
    size_t header_offset; /* file offset of this entry's CPIO header */
    size_t data_offset;   /* file offset of its data */
    uint8_t md5[16];      /* from its dfuinfo0.dat record */
    bool md5_checked;     /* false when IGNORE_MD5 is set */
} ImageEntry;

/* A parsed, fully validated image. Owns a copy of the file's bytes. */
typedef struct Image {
    uint8_t *data;
    size_t size;         /* the whole file */
    size_t payload_size; /* what a DFU download sends: size - IMAGE_SUFFIX_SIZE */
    uint16_t vid, pid, bcd_device;
    Chip chip; /* from pid; CHIP_UNKNOWN is reported, not guessed */
    FlashParams flash;
    uint8_t sha256[32]; /* of the whole file */
    size_t n_entries;   /* one per dfuinfo0.dat record, archive order */
    ImageEntry *entries;
} Image;

/*
 * Parse and validate a complete dfu.bin. On failure returns a negative errno,
 * fills *err with a stable code and a message that names the byte offset or
 * entry, and leaves *ret untouched. Never reads outside data[0..size).
 */
int image_parse(const uint8_t *data, size_t size, Image **ret, ErrInfo *err);

/*
 * Validate only the CPIO archive a board receives (the payload, suffix already
 * stripped): structure, dfuinfo0.dat, every entry's MD5. What the ROM checks.
 */
int image_check_archive(const uint8_t *archive, size_t size, ErrInfo *err);

/* Read a regular file from fd (bounded by IMAGE_MAX_SIZE), then image_parse(). */
int image_load_fd(int fd, Image **ret, ErrInfo *err);
/* Validate size bytes of *buf as an image; on success the image takes *buf (set NULL). */
int image_load_buffer(uint8_t **buf, size_t size, Image **ret, ErrInfo *err);

Image *image_free(Image *img); /* NULL-safe, returns NULL */
DEFINE_TRIVIAL_CLEANUP_FUNC(Image *, image_free);

/*
 * Read a whole regular file from fd, from offset 0 whatever the fd's position,
 * retrying on EINTR. At most max_size bytes (ERR_IMAGE_TOO_LARGE beyond);
 * non-regular files are ERR_IMAGE_NOT_REGULAR. A zero-byte file is not an
 * error here. *ret is malloc'd (never NULL on success). max_size < SIZE_MAX.
 */
int image_read_fd(int fd, size_t max_size, uint8_t **ret, size_t *ret_size, ErrInfo *err);
/* The same into *buf (NULL at first), which the caller frees whatever the outcome: for a
 * reader that may be cancelled at its pread (pthread_cancel) without leaking. */
int image_read_fd_into(int fd, size_t max_size, uint8_t **buf, size_t *ret_size, ErrInfo *err);

/* The DFU suffix CRC: ~crc32 (zlib) of the bytes, as dfu-util and mkdfu compute it. */
uint32_t image_dfu_crc(const uint8_t *data, size_t size);

/* DFU suffix rule (dfu-util): 0xffff in the image matches any board. */
bool image_matches_device(const Image *img, uint16_t vid, uint16_t pid);

/* "4MB" -> 4194304; the sizes mkdfu/esptool know (1MB..128MB). -EINVAL otherwise. */
int image_flash_size_from_string(const char *s, uint32_t *ret);
const char *image_flash_size_to_string(uint32_t bytes); /* "4MB"; NULL if not one of those */

/* "param", "noerase", "ignore-md5" for one IMAGE_FLAG_* bit; NULL for any other value. */
const char *image_flag_to_string(uint32_t flag);
/* "param,noerase,ignore-md5", "-" for none, unknown bits as hex ("param,0x1"). */
const char *image_flags_format(uint32_t flags, char *buf, size_t size);

/*
 * Numbers as mkdfu.py reads them, so a command line that works with mkdfu works
 * with us. image_parse_number() is Python's int(s, 0): "0x1000", "4096", "0o10",
 * "0b1", no sign, no leading zeros on decimals. image_parse_pid() is int(s, 16):
 * "2", "0x0002". Both -EINVAL for anything else, -ERANGE when it does not fit.
 */
int image_parse_number(const char *s, uint32_t *ret);
/* Digits only, in base 2..16, no prefix or sign, at most UINT32_MAX. */
int image_parse_digits(const char *s, unsigned base, uint32_t *ret);
int image_parse_pid(const char *s, uint16_t *ret);

/* One input of `pack`: a file's basename, its bytes, its flash address. */
typedef struct PackFile {
    uint32_t address;
    const char
            *name; /* basename only; at most IMAGE_NAME_MAX bytes once chunk suffixes are added */
    const uint8_t *data;
    size_t size;
} PackFile;

typedef struct PackOptions {
    uint16_t pid;
    uint32_t flash_size; /* bytes; mkdfu's default is 2MB */
    uint32_t part_size;  /* chunk size; IMAGE_DEFAULT_PART_SIZE by default */
} PackOptions;

void pack_options_init(PackOptions *o);

/*
 * Build a dfu.bin byte-identical to `mkdfu.py write` for the same inputs:
 * sorted by address, a duplicate address keeps the last file given, files split
 * into part_size chunks (name, name.1, name.2, ...), flash_params.dat first.
 * Refuses what mkdfu would refuse or silently mangle. The result is malloc'd.
 */
int image_pack(const PackFile *files, size_t n_files, const PackOptions *o, uint8_t **ret,
               size_t *ret_size, ErrInfo *err);
