/* SPDX-License-Identifier: MIT */
/*
 * dfu.bin parsing and validation (format and sources: docs/image-format.md).
 *
 * Every size in the file is untrusted and may be anything up to 0xffffffff, so
 * bounds are always written as "size > bytes_left", never "offset + size > end",
 * which could wrap. An offset is only used after it has been checked against the
 * bytes that are really there.
 */
#include "image.h"

#include <errno.h>
#include <inttypes.h>
#include <nettle/md5.h>
#include <nettle/sha2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#define PRINTABLE_MAX 40u
#define PRINTABLE_BUF (PRINTABLE_MAX + 4u)

enum {
    F_INO,
    F_MODE,
    F_UID,
    F_GID,
    F_NLINK,
    F_MTIME,
    F_FILESIZE,
    F_DEVMAJOR,
    F_DEVMINOR,
    F_RDEVMAJOR,
    F_RDEVMINOR,
    F_NAMESIZE,
    F_CHECK,
    _F_MAX,
};

static const char *const cpio_field_name[_F_MAX] = {
        [F_INO] = "ino",
        [F_MODE] = "mode",
        [F_UID] = "uid",
        [F_GID] = "gid",
        [F_NLINK] = "nlink",
        [F_MTIME] = "mtime",
        [F_FILESIZE] = "filesize",
        [F_DEVMAJOR] = "devmajor",
        [F_DEVMINOR] = "devminor",
        [F_RDEVMAJOR] = "rdevmajor",
        [F_RDEVMINOR] = "rdevminor",
        [F_NAMESIZE] = "namesize",
        [F_CHECK] = "check",
};

/* ---- byte helpers ---- */

static uint16_t le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static size_t align4(size_t x)
{
    return (x + 3) & ~(size_t)3;
}

static bool is_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

static void hex_string(const uint8_t *p, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", p[i]);
}

/* Untrusted bytes for a message: at most PRINTABLE_MAX, '?' for anything unprintable. */
static const char *printable(const void *p, size_t n, char buf[static PRINTABLE_BUF])
{
    const uint8_t *s = p;
    size_t i;

    for (i = 0; i < n && i < PRINTABLE_MAX; i++)
        buf[i] = s[i] >= 0x20 && s[i] < 0x7f ? (char)s[i] : '?';
    buf[i] = 0;
    if (i < n)
        strcat(buf, "...");
    return buf;
}

static int err_oom(ErrInfo *err)
{
    err_set(err, ERR_IMAGE_IO, "out of memory");
    return -ENOMEM;
}

/* ---- the CPIO walk ---- */

typedef struct CpioEntry {
    size_t header_offset;
    size_t data_offset;
    uint32_t size;
    const char *name; /* NUL-terminated inside the archive, checked */
} CpioEntry;

typedef struct Walk {
    const uint8_t *data;
    size_t size;
    /* false while diagnosing a file without a suffix: running out of bytes then
     * means the file was cut, not that a header lies. */
    bool complete;
    CpioEntry *entries; /* every entry before the trailer, archive order */
    size_t n_entries, n_allocated;
    size_t end; /* just past the trailer and its padding */
} Walk;

static void walk_done(Walk *w)
{
    free(w->entries);
}

static const char *walk_noun(const Walk *w)
{
    return w->complete ? "archive" : "file";
}

static EspdfuErr walk_overrun(const Walk *w, EspdfuErr code)
{
    return w->complete ? code : ERR_IMAGE_TRUNCATED;
}

static int parse_hex8(const uint8_t *p, uint32_t *ret)
{
    char s[9];

    memcpy(s, p, 8);
    s[8] = 0;
    return image_parse_digits(s, 16, ret);
}

static int cpio_read_header(const Walk *w, size_t off, uint32_t f[_F_MAX], ErrInfo *err)
{
    const uint8_t *h = w->data + off;
    size_t left = w->size - off;
    char buf[PRINTABLE_BUF];

    /* A complete archive that ends, or turns to zeros, here lost its trailer. */
    if (w->complete && left == 0)
        return err_set(err, ERR_CPIO_TRAILER,
                       "no TRAILER!!! entry: the archive ends at offset 0x%zx", off);
    if (w->complete && (left < IMAGE_CPIO_HEADER_SIZE || memcmp(h, IMAGE_CPIO_MAGIC, 6) != 0) &&
        is_zero(h, left))
        return err_set(err, ERR_CPIO_TRAILER, "no TRAILER!!! entry: only zeros from offset 0x%zx",
                       off);
    if (left < IMAGE_CPIO_HEADER_SIZE)
        return err_set(
                err, ERR_IMAGE_TRUNCATED,
                "CPIO header at offset 0x%zx: only %zu of 110 bytes before the end of the %s", off,
                left, walk_noun(w));
    if (memcmp(h, IMAGE_CPIO_MAGIC, 6) != 0)
        return err_set(err, ERR_CPIO_MAGIC,
                       "CPIO header at offset 0x%zx: magic is \"%s\", not \"070701\"", off,
                       printable(h, 6, buf));
    for (unsigned i = 0; i < _F_MAX; i++) {
        const uint8_t *p = h + 6 + 8 * i;

        if (parse_hex8(p, &f[i]) < 0)
            return err_set(err, ERR_CPIO_HEX,
                           "CPIO header at offset 0x%zx: field \"%s\" is not hex (\"%s\")", off,
                           cpio_field_name[i], printable(p, 8, buf));
    }
    return 0;
}

static int cpio_read_name(const Walk *w, size_t off, uint32_t namesize, const char **ret,
                          ErrInfo *err)
{
    size_t name_off = off + IMAGE_CPIO_HEADER_SIZE, name_end, pad_end;
    const char *name = (const char *)w->data + name_off;
    char buf[PRINTABLE_BUF];

    if (namesize == 0)
        return err_set(err, ERR_CPIO_NAMESIZE, "CPIO header at offset 0x%zx: namesize is 0", off);
    if (namesize > w->size - name_off)
        return err_set(err, walk_overrun(w, ERR_CPIO_NAMESIZE),
                       "CPIO header at offset 0x%zx: name (namesize 0x%x) runs past the end of "
                       "the %s",
                       off, namesize, walk_noun(w));
    /* namesize counts the NUL; a NUL earlier would hide bytes from the name. */
    if (name[namesize - 1] != 0 || memchr(name, 0, namesize - 1))
        return err_set(err, ERR_CPIO_NAME,
                       "CPIO header at offset 0x%zx: name \"%s\" does not end in a NUL at "
                       "namesize 0x%x",
                       off, printable(name, namesize - 1, buf), namesize);
    if (namesize == 1)
        return err_set(err, ERR_CPIO_NAME, "CPIO header at offset 0x%zx: empty name", off);
    name_end = name_off + namesize;
    pad_end = align4(name_end);
    if (pad_end > w->size)
        return err_set(err, ERR_IMAGE_TRUNCATED,
                       "CPIO header at offset 0x%zx: padding after name \"%s\" runs past the end "
                       "of the %s",
                       off, printable(name, namesize - 1, buf), walk_noun(w));
    if (!is_zero(w->data + name_end, pad_end - name_end))
        return err_set(err, ERR_CPIO_ALIGNMENT,
                       "CPIO header at offset 0x%zx: padding after name \"%s\" is not zero", off,
                       printable(name, namesize - 1, buf));
    *ret = name;
    return 0;
}

/* mkdfu.py writes mode 0100644 nlink 0 for files and mode 0 nlink 1 for the trailer. */
static int cpio_check_mode(size_t off, const char *name, const uint32_t f[_F_MAX], bool trailer,
                           ErrInfo *err)
{
    uint32_t mode = trailer ? 0 : IMAGE_CPIO_MODE_FILE, nlink = trailer ? 1 : 0;
    char buf[PRINTABLE_BUF];

    if (f[F_MODE] == mode && f[F_NLINK] == nlink)
        return 0;
    return err_set(err, ERR_CPIO_MODE,
                   "entry \"%s\" at offset 0x%zx: mode 0%o nlink %u, mkdfu writes mode 0%o "
                   "nlink %u",
                   printable(name, strlen(name), buf), off, f[F_MODE], f[F_NLINK], mode, nlink);
}

/* A plain basename the ROM and dfuinfo0.dat (64-byte name field) can both hold. */
static int cpio_check_name(size_t off, const char *name, ErrInfo *err)
{
    size_t len = strlen(name);
    char buf[PRINTABLE_BUF];

    if (len > IMAGE_NAME_MAX)
        return err_set(err, ERR_CPIO_NAME,
                       "entry \"%s\" at offset 0x%zx: name is %zu bytes, longer than %u",
                       printable(name, len, buf), off, len, IMAGE_NAME_MAX);
    if (strchr(name, '/') || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return err_set(err, ERR_CPIO_NAME, "entry \"%s\" at offset 0x%zx: not a plain file name",
                       printable(name, len, buf), off);
    /* Names end up on terminals and in logs: no control characters. */
    for (const char *p = name; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return err_set(err, ERR_CPIO_NAME,
                           "entry \"%s\" at offset 0x%zx: name has a control character",
                           printable(name, len, buf), off);
    return 0;
}

static int cpio_check_data(const Walk *w, size_t off, const char *name, size_t data_off,
                           uint32_t filesize, size_t *next, ErrInfo *err)
{
    size_t data_end, pad_end;
    char buf[PRINTABLE_BUF];

    printable(name, strlen(name), buf);
    if (filesize > w->size - data_off)
        return err_set(err, walk_overrun(w, ERR_CPIO_FILESIZE),
                       "entry \"%s\" at offset 0x%zx: data (filesize 0x%x) runs past the end of "
                       "the %s at 0x%zx",
                       buf, off, filesize, walk_noun(w), w->size);
    data_end = data_off + filesize;
    pad_end = align4(data_end);
    if (pad_end > w->size)
        return err_set(err, ERR_IMAGE_TRUNCATED,
                       "entry \"%s\" at offset 0x%zx: padding after the data runs past the end "
                       "of the %s",
                       buf, off, walk_noun(w));
    if (!is_zero(w->data + data_end, pad_end - data_end))
        return err_set(err, ERR_CPIO_ALIGNMENT,
                       "entry \"%s\" at offset 0x%zx: padding after the data is not zero", buf,
                       off);
    *next = pad_end;
    return 0;
}

static int cpio_next(const Walk *w, size_t off, CpioEntry *ret, bool *ret_trailer, size_t *next,
                     ErrInfo *err)
{
    uint32_t f[_F_MAX] = {};
    const char *name = NULL;
    bool trailer;
    size_t data_off;
    int r;

    r = cpio_read_header(w, off, f, err);
    if (r < 0)
        return r;
    r = cpio_read_name(w, off, f[F_NAMESIZE], &name, err);
    if (r < 0)
        return r;
    trailer = strcmp(name, IMAGE_CPIO_TRAILER) == 0;
    r = cpio_check_mode(off, name, f, trailer, err);
    if (r < 0)
        return r;
    if (trailer && f[F_FILESIZE] != 0)
        return err_set(err, ERR_CPIO_FILESIZE,
                       "entry \"TRAILER!!!\" at offset 0x%zx: filesize is 0x%x, not 0", off,
                       f[F_FILESIZE]);
    if (!trailer) {
        r = cpio_check_name(off, name, err);
        if (r < 0)
            return r;
    }
    data_off = align4(off + IMAGE_CPIO_HEADER_SIZE + f[F_NAMESIZE]);
    r = cpio_check_data(w, off, name, data_off, f[F_FILESIZE], next, err);
    if (r < 0)
        return r;
    *ret = (CpioEntry){
            .header_offset = off, .data_offset = data_off, .size = f[F_FILESIZE], .name = name};
    *ret_trailer = trailer;
    return 0;
}

static int walk_add(Walk *w, const CpioEntry *e, ErrInfo *err)
{
    /* dfuinfo0.dat plus IMAGE_MAX_ENTRIES indexed entries. */
    if (w->n_entries > IMAGE_MAX_ENTRIES)
        return err_set(err, ERR_IMAGE_TOO_LARGE,
                       "CPIO header at offset 0x%zx: more than %u entries", e->header_offset,
                       IMAGE_MAX_ENTRIES + 1);
    if (w->n_entries == w->n_allocated) {
        size_t n = w->n_allocated ? w->n_allocated * 2 : 16;
        CpioEntry *p;

        p = reallocarray(w->entries, n, sizeof(*p));
        if (!p)
            return err_oom(err);
        w->entries = p;
        w->n_allocated = n;
    }
    w->entries[w->n_entries++] = *e;
    return 0;
}

static int walk_archive(Walk *w, ErrInfo *err)
{
    size_t off = 0;

    /* Ends: each step consumes at least one 110-byte header. */
    for (;;) {
        CpioEntry e = {};
        bool trailer = false;
        size_t next = 0;
        int r;

        r = cpio_next(w, off, &e, &trailer, &next, err);
        if (r < 0)
            return r;
        if (trailer) {
            w->end = next;
            return 0;
        }
        r = walk_add(w, &e, err);
        if (r < 0)
            return r;
        off = next;
    }
}

/* mkdfu pads the archive with zeros to a multiple of 10240 (the cpio block). */
static int check_padding(const Walk *w, ErrInfo *err)
{
    if (w->size % IMAGE_CPIO_BLOCK != 0)
        return err_set(err, ERR_ARCHIVE_PADDING,
                       "the archive is 0x%zx bytes, not a multiple of %u (ends at offset 0x%zx)",
                       w->size, IMAGE_CPIO_BLOCK, w->size);
    for (size_t i = w->end; i < w->size; i++)
        if (w->data[i])
            return err_set(err, ERR_ARCHIVE_PADDING,
                           "non-zero byte at offset 0x%zx after the TRAILER!!! entry", i);
    return 0;
}

/* ---- dfuinfo0.dat and the entries it indexes ---- */

static int dfuinfo_check(const Walk *w, size_t *ret_records, ErrInfo *err)
{
    const CpioEntry *d = &w->entries[0];
    char buf[PRINTABLE_BUF];
    size_t records;

    if (w->n_entries == 0)
        return err_set(err, ERR_DFUINFO_MISSING,
                       "the archive holds no entries, not even dfuinfo0.dat");
    if (strcmp(d->name, IMAGE_DFUINFO_NAME) != 0)
        return err_set(err, ERR_DFUINFO_MISSING,
                       "the first entry (offset 0x0) is \"%s\", not dfuinfo0.dat",
                       printable(d->name, strlen(d->name), buf));
    if (d->size % IMAGE_DFUINFO_RECORD_SIZE != 0)
        return err_set(err, ERR_DFUINFO_SIZE,
                       "entry \"dfuinfo0.dat\" at offset 0x0: %u bytes, not a multiple of the "
                       "88-byte record",
                       d->size);
    records = d->size / IMAGE_DFUINFO_RECORD_SIZE;
    if (records != w->n_entries - 1)
        return err_set(err, ERR_DFUINFO_COUNT,
                       "entry \"dfuinfo0.dat\" at offset 0x0: %zu records, but %zu entries follow "
                       "it",
                       records, w->n_entries - 1);
    *ret_records = records;
    return 0;
}

/* Record i: {u32 address; u32 flags; char name[64]; u8 md5[16]}, little-endian. */
static int record_load(const uint8_t *rec, size_t i, const CpioEntry *ce, ImageEntry *ie,
                       ErrInfo *err)
{
    const char *name = (const char *)rec + 8;
    size_t len = strnlen(name, 64);
    char buf[PRINTABLE_BUF], buf2[PRINTABLE_BUF];

    if (len == 64)
        return err_set(err, ERR_DFUINFO_NAME,
                       "dfuinfo0.dat record %zu (offset 0x%zx): name is not NUL-terminated", i,
                       ce->header_offset);
    if (strcmp(name, ce->name) != 0)
        return err_set(err, ERR_DFUINFO_NAME,
                       "dfuinfo0.dat record %zu names \"%s\", but the entry at offset 0x%zx is "
                       "\"%s\"",
                       i, printable(name, len, buf), ce->header_offset,
                       printable(ce->name, strlen(ce->name), buf2));
    *ie = (ImageEntry){
            .address = le32(rec),
            .flags = le32(rec + 4),
            .size = ce->size,
            .header_offset = ce->header_offset,
            .data_offset = ce->data_offset,
    };
    ie->md5_checked = !(ie->flags & IMAGE_FLAG_IGNORE_MD5);
    memcpy(ie->name, name, len + 1);
    memcpy(ie->md5, rec + 72, 16);
    return 0;
}

static int compare_cpio_name(const void *a, const void *b)
{
    const CpioEntry *const *x = a, *const *y = b;

    return strcmp((*x)->name, (*y)->name);
}

static int check_duplicates(const Walk *w, ErrInfo *err)
{
    _cleanup_free_ const CpioEntry **v = NULL;
    char buf[PRINTABLE_BUF];

    v = calloc(w->n_entries, sizeof(*v));
    if (!v)
        return err_oom(err);
    for (size_t i = 0; i < w->n_entries; i++)
        v[i] = &w->entries[i];
    qsort(v, w->n_entries, sizeof(*v), compare_cpio_name);
    for (size_t i = 1; i < w->n_entries; i++)
        if (strcmp(v[i - 1]->name, v[i]->name) == 0) {
            size_t a = v[i - 1]->header_offset, b = v[i]->header_offset;

            return err_set(err, ERR_CPIO_DUPLICATE,
                           "entries at offsets 0x%zx and 0x%zx are both named \"%s\"",
                           a < b ? a : b, a < b ? b : a,
                           printable(v[i]->name, strlen(v[i]->name), buf));
        }
    return 0;
}

static int check_md5(const uint8_t *data, const ImageEntry *e, ErrInfo *err)
{
    struct md5_ctx ctx;
    uint8_t md5[MD5_DIGEST_SIZE];
    char want[33], got[33];

    if (!e->md5_checked)
        return 0;
    md5_init(&ctx);
    md5_update(&ctx, e->size, data + e->data_offset);
    md5_digest(&ctx, sizeof(md5), md5);
    if (memcmp(md5, e->md5, sizeof(md5)) == 0)
        return 0;
    hex_string(e->md5, 16, want);
    hex_string(md5, 16, got);
    return err_set(err, ERR_MD5_MISMATCH,
                   "entry \"%s\" at offset 0x%zx: md5 mismatch (dfuinfo0.dat has %s, the data "
                   "%s)",
                   e->name, e->header_offset, want, got);
}

/* mkdfu writes flash_params.dat as the first record; the ROM sets up the flash from it. */
static int flash_params_load(const uint8_t *data, const ImageEntry *entries, size_t n,
                             FlashParams *fp, ErrInfo *err)
{
    const ImageEntry *e = &entries[0];
    const uint8_t *p;

    if (n == 0 || strcmp(e->name, IMAGE_FLASH_PARAMS_NAME) != 0)
        return err_set(err, ERR_FLASH_PARAMS,
                       "the first dfuinfo0.dat record is %s%s%s, not flash_params.dat (made by "
                       "an old mkdfu.py?)",
                       n ? "\"" : "", n ? e->name : "missing", n ? "\"" : "");
    if (!(e->flags & IMAGE_FLAG_PARAM))
        return err_set(err, ERR_FLASH_PARAMS,
                       "entry \"%s\" at offset 0x%zx: flags 0x%x lack PARAM (0x%x)", e->name,
                       e->header_offset, e->flags, IMAGE_FLAG_PARAM);
    if (e->size != IMAGE_FLASH_PARAMS_SIZE)
        return err_set(err, ERR_FLASH_PARAMS, "entry \"%s\" at offset 0x%zx: %u bytes, not %u",
                       e->name, e->header_offset, e->size, IMAGE_FLASH_PARAMS_SIZE);
    p = data + e->data_offset;
    *fp = (FlashParams){
            .ishspi = le32(p),
            .legacy = le32(p + 4),
            .device_id = le32(p + 8),
            .chip_size = le32(p + 12),
            .block_size = le32(p + 16),
            .sector_size = le32(p + 20),
            .page_size = le32(p + 24),
            .status_mask = le32(p + 28),
    };
    if (!image_flash_size_to_string(fp->chip_size))
        return err_set(err, ERR_FLASH_PARAMS,
                       "entry \"%s\" at offset 0x%zx: chip_size 0x%x is not a flash size mkdfu "
                       "writes (1MB to 128MB)",
                       e->name, e->header_offset, fp->chip_size);
    return 0;
}

static int compare_flash_range(const void *a, const void *b)
{
    const ImageEntry *const *x = a, *const *y = b;

    if ((*x)->address != (*y)->address)
        return (*x)->address < (*y)->address ? -1 : 1;
    return (*x)->size < (*y)->size ? -1 : (*x)->size > (*y)->size;
}

/*
 * PARAM entries (flash_params.dat, at address 0) are not flash content: mkdfu
 * puts a real file at 0 beside it, so they take no part here. Empty entries
 * cover no bytes.
 */
static int check_flash_layout(const ImageEntry *entries, size_t n, uint32_t flash_size,
                              ErrInfo *err)
{
    _cleanup_free_ const ImageEntry **v = calloc(n ? n : 1, sizeof(*v));
    size_t m = 0;

    if (!v)
        return err_oom(err);
    for (size_t i = 0; i < n; i++) {
        const ImageEntry *e = &entries[i];

        if ((e->flags & IMAGE_FLAG_PARAM) || e->size == 0)
            continue;
        if ((uint64_t)e->address + e->size > flash_size)
            return err_set(err, ERR_ENTRY_RANGE,
                           "entry \"%s\" at offset 0x%zx: flash 0x%x..0x%" PRIx64
                           " ends past the %s flash",
                           e->name, e->header_offset, e->address, (uint64_t)e->address + e->size,
                           image_flash_size_to_string(flash_size));
        v[m++] = e;
    }
    qsort(v, m, sizeof(*v), compare_flash_range);
    for (size_t i = 1; i < m; i++) {
        const ImageEntry *a = v[i - 1], *b = v[i];

        if ((uint64_t)a->address + a->size > b->address)
            return err_set(err, ERR_ENTRY_OVERLAP,
                           "entries \"%s\" (flash 0x%x..0x%" PRIx64
                           ") and \"%s\" at offset 0x%zx (flash 0x%x..0x%" PRIx64 ") overlap",
                           a->name, a->address, (uint64_t)a->address + a->size, b->name,
                           b->header_offset, b->address, (uint64_t)b->address + b->size);
    }
    return 0;
}

static int index_build(const Walk *w, ImageEntry **ret, size_t *ret_n, FlashParams *ret_fp,
                       ErrInfo *err)
{
    _cleanup_free_ ImageEntry *entries = NULL;
    const uint8_t *records;
    FlashParams fp = {};
    size_t n = 0;
    int r;

    r = dfuinfo_check(w, &n, err);
    if (r < 0)
        return r;
    entries = calloc(n ? n : 1, sizeof(*entries));
    if (!entries)
        return err_oom(err);
    records = w->data + w->entries[0].data_offset;
    for (size_t i = 0; i < n; i++) {
        r = record_load(records + i * IMAGE_DFUINFO_RECORD_SIZE, i, &w->entries[i + 1], &entries[i],
                        err);
        if (r < 0)
            return r;
    }
    r = check_duplicates(w, err);
    if (r < 0)
        return r;
    for (size_t i = 0; i < n; i++) {
        r = check_md5(w->data, &entries[i], err);
        if (r < 0)
            return r;
    }
    r = flash_params_load(w->data, entries, n, &fp, err);
    if (r < 0)
        return r;
    r = check_flash_layout(entries, n, fp.chip_size, err);
    if (r < 0)
        return r;
    *ret = TAKE_PTR(entries);
    *ret_n = n;
    *ret_fp = fp;
    return 0;
}

static int archive_validate(const uint8_t *data, size_t size, ImageEntry **ret, size_t *ret_n,
                            FlashParams *ret_fp, ErrInfo *err)
{
    _cleanup_(walk_done) Walk w = {.data = data, .size = size, .complete = true};
    int r;

    if (size == 0)
        return err_set(err, ERR_IMAGE_EMPTY, "no CPIO archive: zero bytes");
    if (size > IMAGE_MAX_SIZE)
        return err_set(err, ERR_IMAGE_TOO_LARGE, "the archive is %zu bytes, more than %u", size,
                       IMAGE_MAX_SIZE);
    r = walk_archive(&w, err);
    if (r < 0)
        return r;
    r = check_padding(&w, err);
    if (r < 0)
        return r;
    return index_build(&w, ret, ret_n, ret_fp, err);
}

int image_check_archive(const uint8_t *archive, size_t size, ErrInfo *err)
{
    _cleanup_free_ ImageEntry *entries = NULL;
    FlashParams fp;
    size_t n = 0;

    return archive_validate(archive, size, &entries, &n, &fp, err);
}

/* ---- the DFU suffix and the whole file ---- */

/*
 * No "UFD" where the suffix belongs. A cut-off copy is the usual reason at a
 * station, so walk the archive as far as the bytes go to tell "truncated" from
 * "not a dfu.bin at all".
 */
static int diagnose_no_suffix(const uint8_t *data, size_t size, ErrInfo *err)
{
    _cleanup_(walk_done) Walk w = {.data = data, .size = size, .complete = false};
    size_t sig = size - IMAGE_SUFFIX_SIZE + 8, end;
    char buf[PRINTABLE_BUF];
    ErrInfo walk_err = {};
    int r;

    r = walk_archive(&w, &walk_err);
    if (r < 0 && walk_err.code == ERR_IMAGE_TRUNCATED) {
        if (err)
            *err = walk_err;
        return r;
    }
    if (r >= 0) {
        end = (w.end + IMAGE_CPIO_BLOCK - 1) / IMAGE_CPIO_BLOCK * IMAGE_CPIO_BLOCK;
        if (size < end + IMAGE_SUFFIX_SIZE &&
            is_zero(data + w.end, (size < end ? size : end) - w.end))
            return err_set(err, ERR_IMAGE_TRUNCATED,
                           "the file ends at offset 0x%zx, before the end of its DFU suffix at "
                           "0x%zx",
                           size, end + IMAGE_SUFFIX_SIZE);
    }
    return err_set(err, ERR_SUFFIX_SIGNATURE,
                   "no DFU suffix: the bytes at offset 0x%zx are \"%s\", not \"UFD\"", sig,
                   printable(data + sig, 3, buf));
}

/* Suffix <H H H H 3s B> = bcdDevice, idProduct, idVendor, bcdDFU, "UFD", bLength; then dwCRC. */
static int suffix_check(const uint8_t *data, size_t size, Image *img, ErrInfo *err)
{
    size_t off = size - IMAGE_SUFFIX_SIZE;
    const uint8_t *s = data + off;
    uint32_t crc, want;
    uint16_t vid;

    if (memcmp(s + 8, "UFD", 3) != 0)
        return diagnose_no_suffix(data, size, err);
    if (s[11] != IMAGE_SUFFIX_SIZE)
        return err_set(err, ERR_SUFFIX_LENGTH, "DFU suffix at offset 0x%zx: bLength is %u, not 16",
                       off, s[11]);
    if (le16(s + 6) != 0x0100)
        return err_set(err, ERR_SUFFIX_VERSION,
                       "DFU suffix at offset 0x%zx: bcdDFU is 0x%04x, not 0x0100", off,
                       le16(s + 6));
    vid = le16(s + 4);
    if (vid != ESP_USB_VID && vid != 0xffff)
        return err_set(err, ERR_SUFFIX_VENDOR,
                       "DFU suffix at offset 0x%zx: idVendor is 0x%04x, neither 0x303a nor 0xffff",
                       off, vid);
    crc = le32(s + 12);
    want = image_dfu_crc(data, size - 4);
    if (crc != want)
        return err_set(err, ERR_CRC_MISMATCH,
                       "DFU suffix at offset 0x%zx: dwCRC is 0x%08x, the file's bytes give 0x%08x",
                       off + 12, crc, want);
    img->bcd_device = le16(s);
    img->pid = le16(s + 2);
    img->vid = vid;
    return 0;
}

static int image_validate(const uint8_t *data, size_t size, Image *img, ErrInfo *err)
{
    struct sha256_ctx ctx;
    int r;

    if (size == 0)
        return err_set(err, ERR_IMAGE_EMPTY, "the file is empty");
    if (size > IMAGE_MAX_SIZE)
        return err_set(err, ERR_IMAGE_TOO_LARGE, "the file is %zu bytes, more than %u", size,
                       IMAGE_MAX_SIZE);
    if (size < IMAGE_SUFFIX_SIZE)
        return err_set(err, ERR_IMAGE_TRUNCATED,
                       "the file is %zu bytes, shorter than the 16-byte DFU suffix", size);
    r = suffix_check(data, size, img, err);
    if (r < 0)
        return r;
    r = archive_validate(data, size - IMAGE_SUFFIX_SIZE, &img->entries, &img->n_entries,
                         &img->flash, err);
    if (r < 0)
        return r;
    img->size = size;
    img->payload_size = size - IMAGE_SUFFIX_SIZE;
    img->chip = chip_from_pid(img->pid);
    sha256_init(&ctx);
    sha256_update(&ctx, size, data);
    sha256_digest(&ctx, sizeof(img->sha256), img->sha256);
    return 0;
}

int image_parse(const uint8_t *data, size_t size, Image **ret, ErrInfo *err)
{
    _cleanup_(image_freep) Image *img = NULL;
    int r;

    img = calloc(1, sizeof(*img));
    if (!img)
        return err_oom(err);
    r = image_validate(data, size, img, err);
    if (r < 0)
        return r;
    img->data = malloc(size);
    if (!img->data)
        return err_oom(err);
    memcpy(img->data, data, size);
    *ret = TAKE_PTR(img);
    return 0;
}

Image *image_free(Image *img)
{
    if (!img)
        return NULL;
    free(img->entries);
    free(img->data);
    free(img);
    return NULL;
}

bool image_matches_device(const Image *img, uint16_t vid, uint16_t pid)
{
    return (img->vid == 0xffff || img->vid == vid) && (img->pid == 0xffff || img->pid == pid);
}

/* ---- reading a file ---- */

static const char *file_type(mode_t m)
{
    if (S_ISDIR(m))
        return "a directory";
    if (S_ISCHR(m))
        return "a character device";
    if (S_ISBLK(m))
        return "a block device";
    if (S_ISFIFO(m))
        return "a pipe";
    if (S_ISSOCK(m))
        return "a socket";
    return "not a regular file";
}

/* Grow buf for the next read; one byte past max_size is how "too large" is noticed. */
static int read_grow(uint8_t **buf, size_t *allocated, size_t max_size, ErrInfo *err)
{
    size_t n = *allocated > (max_size + 1) / 2 ? max_size + 1 : *allocated * 2;
    uint8_t *p;

    if (*allocated > max_size)
        return err_set(err, ERR_IMAGE_TOO_LARGE, "more than the limit of %zu bytes", max_size);
    p = realloc(*buf, n);
    if (!p)
        return err_oom(err);
    *buf = p;
    *allocated = n;
    return 0;
}

int image_read_fd(int fd, size_t max_size, uint8_t **ret, size_t *ret_size, ErrInfo *err)
{
    _cleanup_free_ uint8_t *buf = NULL;
    size_t n = 0;
    int r;

    r = image_read_fd_into(fd, max_size, &buf, &n, err);
    if (r < 0)
        return r;
    *ret = TAKE_PTR(buf);
    *ret_size = n;
    return 0;
}

int image_read_fd_into(int fd, size_t max_size, uint8_t **bufp, size_t *ret_size, ErrInfo *err)
{
    uint8_t *buf = NULL;
    size_t n = 0, allocated;
    struct stat st;
    int r;

    if (fstat(fd, &st) < 0) {
        r = -errno;
        err_set(err, ERR_IMAGE_IO, "cannot stat: %s", strerror(-r));
        return r;
    }
    if (!S_ISREG(st.st_mode))
        return err_set(err, ERR_IMAGE_NOT_REGULAR, "not a regular file but %s",
                       file_type(st.st_mode));
    if ((uint64_t)st.st_size > max_size)
        return err_set(err, ERR_IMAGE_TOO_LARGE, "%jd bytes, more than the limit of %zu",
                       (intmax_t)st.st_size, max_size);
    /* st_size is only a hint (files change under us, /proc says 0): read to EOF. */
    allocated = (size_t)st.st_size < 4096 ? 4096 : (size_t)st.st_size + 1;
    allocated = allocated > max_size + 1 ? max_size + 1 : allocated;
    /* Every allocation lands in *bufp at once: a thread cancelled in pread leaves
     * nothing its owner cannot free. */
    buf = *bufp = malloc(allocated);
    if (!buf)
        return err_oom(err);
    for (;;) {
        ssize_t k;

        if (n == allocated && (r = read_grow(bufp, &allocated, max_size, err)) < 0)
            return r;
        buf = *bufp;
        /* pread from 0: the result does not depend on the fd's offset. */
        k = pread(fd, buf + n, allocated - n, (off_t)n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            r = -errno;
            err_set(err, ERR_IMAGE_IO, "read failed at offset 0x%zx: %s", n, strerror(-r));
            return r;
        }
        if (k == 0)
            break;
        n += (size_t)k;
    }
    *ret_size = n;
    return 0;
}

int image_load_buffer(uint8_t **buf, size_t size, Image **ret, ErrInfo *err)
{
    _cleanup_(image_freep) Image *img = calloc(1, sizeof(*img));
    int r;

    if (!img)
        return err_oom(err);
    r = image_validate(*buf, size, img, err);
    if (r < 0)
        return r;
    img->data = TAKE_PTR(*buf);
    *ret = TAKE_PTR(img);
    return 0;
}

int image_load_fd(int fd, Image **ret, ErrInfo *err)
{
    _cleanup_free_ uint8_t *buf = NULL;
    size_t size = 0;
    int r;

    r = image_read_fd(fd, IMAGE_MAX_SIZE, &buf, &size, err);
    if (r < 0)
        return r;
    return image_load_buffer(&buf, size, ret, err);
}
