/* SPDX-License-Identifier: MIT */
/*
 * Build a dfu.bin byte for byte as ESP-IDF's tools/mkdfu.py `write` does:
 *
 *   dfuinfo0.dat | flash_params.dat | chunks of each file, by address | TRAILER!!!
 *   | zeros to a multiple of 10240 | DFU suffix | CRC
 *
 * Every CPIO header has ino, uid, gid, mtime, dev*, rdev* and check 0 (mkdfu
 * writes no inode numbers or times, which is what makes its output
 * reproducible), mode 0100644 nlink 0 for files, mode 0 nlink 1 for the trailer.
 *
 * Where mkdfu would write something the ROM or our own parser cannot take
 * (a truncated name in dfuinfo0.dat, two entries with one name, overlapping
 * flash ranges, an empty file silently left out), we refuse instead.
 */
#include "image.h"

#include <errno.h>
#include <inttypes.h>
#include <nettle/md5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One CPIO entry that dfuinfo0.dat indexes: a file's chunk or flash_params.dat. */
typedef struct Chunk {
    char name[IMAGE_NAME_MAX + 1];
    uint32_t address;
    uint32_t flags;
    const uint8_t *data;
    uint32_t size;
} Chunk;

typedef struct FileOrder {
    uint32_t address;
    size_t index; /* into the caller's files[] */
} FileOrder;

void pack_options_init(PackOptions *o)
{
    *o = (PackOptions){
            .pid = 0,
            .flash_size = IMAGE_DEFAULT_FLASH_SIZE,
            .part_size = IMAGE_DEFAULT_PART_SIZE,
    };
}

static size_t align4(size_t x)
{
    return (x + 3) & ~(size_t)3;
}

static void put_le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (unsigned i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static size_t n_digits(size_t v)
{
    size_t n = 1;

    for (; v >= 10; v /= 10)
        n++;
    return n;
}

static int check_options(const PackOptions *o, ErrInfo *err)
{
    if (chip_from_pid(o->pid) == CHIP_UNKNOWN)
        return err_set(err, ERR_PACK_CHIP,
                       "PID 0x%04x is not a chip with USB DFU (esp32s2 0x0002, esp32s3 0x0009, "
                       "esp32p4 0x0012, esp32s31 0x0020)",
                       o->pid);
    if (!image_flash_size_to_string(o->flash_size))
        return err_set(err, ERR_PACK_FLASH_SIZE,
                       "flash size %" PRIu32 " bytes is not one mkdfu knows (1MB 2MB 4MB 8MB 16MB "
                       "32MB 64MB 128MB)",
                       o->flash_size);
    /* mkdfu's f.read(0) yields no chunk, so every file would silently vanish. */
    if (o->part_size == 0)
        return err_set(err, ERR_PACK_ARGS, "part size 0: every file would be left out");
    return 0;
}

static int compare_order(const void *a, const void *b)
{
    const FileOrder *x = a, *y = b;

    if (x->address != y->address)
        return x->address < y->address ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* mkdfu: dict(files) keeps the last file given for an address, then sorts by address. */
static int order_files(size_t n_files, const PackFile *files, FileOrder **ret, size_t *ret_n,
                       ErrInfo *err)
{
    _cleanup_free_ FileOrder *v = NULL;
    size_t m = 0;

    if (n_files > IMAGE_MAX_ENTRIES)
        return err_set(err, ERR_PACK_ARGS, "%zu files, more than %u", n_files, IMAGE_MAX_ENTRIES);
    v = calloc(n_files ? n_files : 1, sizeof(*v));
    if (!v) {
        err_set(err, ERR_PACK_ARGS, "out of memory");
        return -ENOMEM;
    }
    for (size_t i = 0; i < n_files; i++)
        v[i] = (FileOrder){.address = files[i].address, .index = i};
    qsort(v, n_files, sizeof(*v), compare_order);
    for (size_t i = 0; i < n_files; i++)
        if (i + 1 == n_files || v[i + 1].address != v[i].address)
            v[m++] = v[i];
    *ret = TAKE_PTR(v);
    *ret_n = m;
    return 0;
}

static int check_name(const PackFile *f, size_t n_chunks, ErrInfo *err)
{
    size_t len, longest;

    if (!f->name || !*f->name)
        return err_set(err, ERR_PACK_NAME, "the file at 0x%" PRIx32 " has an empty name",
                       f->address);
    if (strchr(f->name, '/'))
        return err_set(err, ERR_PACK_NAME, "\"%s\" is a path, not a file name", f->name);
    if (strcmp(f->name, IMAGE_DFUINFO_NAME) == 0 || strcmp(f->name, IMAGE_FLASH_PARAMS_NAME) == 0 ||
        strcmp(f->name, IMAGE_CPIO_TRAILER) == 0)
        return err_set(err, ERR_PACK_NAME, "\"%s\": mkdfu uses that name for its own entry",
                       f->name);
    for (const char *p = f->name; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return err_set(err, ERR_PACK_NAME, "\"%s\": the name has a control character", f->name);
    /* The last chunk's name is the longest: "app.bin.12". dfuinfo0.dat holds 63 + NUL,
     * and mkdfu would silently cut a longer one. */
    len = strlen(f->name);
    longest = len + (n_chunks > 1 ? 1 + n_digits(n_chunks - 1) : 0);
    if (longest > IMAGE_NAME_MAX)
        return err_set(err, ERR_PACK_NAME,
                       "\"%.*s%s\": %s %zu bytes, longer than the %u dfuinfo0.dat can hold",
                       len > 48 ? 48 : (int)len, f->name, len > 48 ? "..." : "",
                       n_chunks > 1 ? "its last chunk's name would be" : "the name is", longest,
                       IMAGE_NAME_MAX);
    return 0;
}

static int check_file(const PackFile *f, const PackFile *next, const PackOptions *o,
                      size_t *n_chunks, ErrInfo *err)
{
    uint64_t end = (uint64_t)f->address + f->size;
    int r;

    /* mkdfu reads no chunk from an empty file and leaves it out without a word. */
    if (f->size == 0)
        return err_set(err, ERR_PACK_INPUT, "\"%s\" (at 0x%" PRIx32 ") is empty", f->name,
                       f->address);
    if (end > o->flash_size)
        return err_set(err, ERR_ENTRY_RANGE,
                       "\"%s\" at 0x%" PRIx32 " (%zu bytes) ends at 0x%" PRIx64
                       ", past the end of the %s flash",
                       f->name, f->address, f->size, end,
                       image_flash_size_to_string(o->flash_size));
    if (next && end > next->address)
        return err_set(err, ERR_ENTRY_OVERLAP,
                       "\"%s\" at 0x%" PRIx32 "..0x%" PRIx64 " overlaps \"%s\" at 0x%" PRIx32,
                       f->name, f->address, end, next->name, next->address);
    *n_chunks = (size_t)(((uint64_t)f->size + o->part_size - 1) / o->part_size);
    r = check_name(f, *n_chunks, err);
    if (r < 0)
        return r;
    return 0;
}

static int check_files(const PackFile *files, const FileOrder *order, size_t n,
                       const PackOptions *o, size_t *ret_chunks, ErrInfo *err)
{
    size_t total = 1; /* flash_params.dat */

    for (size_t i = 0; i < n; i++) {
        const PackFile *f = &files[order[i].index];
        const PackFile *next = i + 1 < n ? &files[order[i + 1].index] : NULL;
        size_t k = 0;
        int r;

        r = check_file(f, next, o, &k, err);
        if (r < 0)
            return r;
        total += k;
        if (total > IMAGE_MAX_ENTRIES)
            return err_set(err, ERR_PACK_ARGS,
                           "more than %u entries with part size %" PRIu32 " (give a larger one)",
                           IMAGE_MAX_ENTRIES, o->part_size);
    }
    *ret_chunks = total;
    return 0;
}

/* esptool's flash_set_parameters(): the ROM's "flashchip" structure. */
static void flash_params_encode(uint32_t flash_size, uint8_t p[static IMAGE_FLASH_PARAMS_SIZE])
{
    const uint32_t v[8] = {0, 0, 0, flash_size, 64 * 1024, 4 * 1024, 256, 0xffff};

    for (unsigned i = 0; i < 8; i++)
        put_le32(p + 4 * i, v[i]);
}

static void plan_chunks(const PackFile *files, const FileOrder *order, size_t n, uint32_t part,
                        const uint8_t *params, Chunk *c)
{
    size_t k = 0;

    c[k++] = (Chunk){
            .name = IMAGE_FLASH_PARAMS_NAME,
            .address = 0,
            .flags = IMAGE_FLAG_PARAM | IMAGE_FLAG_NOERASE | IMAGE_FLAG_IGNORE_MD5,
            .data = params,
            .size = IMAGE_FLASH_PARAMS_SIZE,
    };
    for (size_t i = 0; i < n; i++) {
        const PackFile *f = &files[order[i].index];

        /* mkdfu: "app.bin", "app.bin.1", ..., each at the previous one's end. */
        for (uint64_t off = 0, j = 0; off < f->size; off += part, j++) {
            Chunk *ch = &c[k++];
            uint64_t left = f->size - off;

            if (j == 0)
                snprintf(ch->name, sizeof(ch->name), "%s", f->name);
            else
                snprintf(ch->name, sizeof(ch->name), "%s.%" PRIu64, f->name, j);
            ch->address = f->address + (uint32_t)off;
            ch->data = f->data + off;
            ch->size = (uint32_t)(left < part ? left : part);
        }
    }
}

static int compare_chunk_name(const void *a, const void *b)
{
    const Chunk *const *x = a, *const *y = b;

    return strcmp((*x)->name, (*y)->name);
}

/* "app.bin" split into "app.bin.1" collides with a file named "app.bin.1";
 * two files from different directories can share a basename. */
static int check_chunk_names(const Chunk *c, size_t n, ErrInfo *err)
{
    _cleanup_free_ const Chunk **v = calloc(n, sizeof(*v));

    if (!v) {
        err_set(err, ERR_PACK_ARGS, "out of memory");
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        v[i] = &c[i];
    qsort(v, n, sizeof(*v), compare_chunk_name);
    for (size_t i = 1; i < n; i++)
        if (strcmp(v[i - 1]->name, v[i]->name) == 0)
            return err_set(err, ERR_PACK_NAME,
                           "two entries would be named \"%s\" (at 0x%" PRIx32 " and 0x%" PRIx32 ")",
                           v[i]->name, v[i - 1]->address, v[i]->address);
    return 0;
}

static size_t entry_size(size_t name_len, size_t data_size)
{
    return align4(IMAGE_CPIO_HEADER_SIZE + name_len + 1) + align4(data_size);
}

/* The caller zeroed p, so all padding is already there. */
static size_t put_cpio(uint8_t *p, const char *name, const uint8_t *data, size_t size, bool trailer)
{
    size_t namesize = strlen(name) + 1;
    char h[IMAGE_CPIO_HEADER_SIZE + 1];

    /* Both fit 8 hex digits: sizes are bounded by IMAGE_MAX_SIZE, names by IMAGE_NAME_MAX. */
    snprintf(h, sizeof(h), "%s%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
             IMAGE_CPIO_MAGIC, 0u, trailer ? 0u : IMAGE_CPIO_MODE_FILE, 0u, 0u, trailer ? 1u : 0u,
             0u, (uint32_t)size, 0u, 0u, 0u, 0u, (uint32_t)namesize, 0u);
    memcpy(p, h, IMAGE_CPIO_HEADER_SIZE);
    memcpy(p + IMAGE_CPIO_HEADER_SIZE, name, namesize);
    if (size > 0)
        memcpy(p + align4(IMAGE_CPIO_HEADER_SIZE + namesize), data, size);
    return entry_size(namesize - 1, size);
}

static void put_record(uint8_t *p, const Chunk *c)
{
    struct md5_ctx ctx;

    put_le32(p, c->address);
    put_le32(p + 4, c->flags);
    memcpy(p + 8, c->name, strlen(c->name)); /* zero-padded to 64 by calloc */
    md5_init(&ctx);
    md5_update(&ctx, c->size, c->data);
    md5_digest(&ctx, MD5_DIGEST_SIZE, p + 72);
}

/* <H H H H 3s B>: bcdDevice 0xffff, idProduct, idVendor, bcdDFU 1.0, "UFD", bLength 16; dwCRC. */
static void put_suffix(uint8_t *out, size_t archive_size, uint16_t pid)
{
    uint8_t *p = out + archive_size;

    put_le16(p, 0xffff);
    put_le16(p + 2, pid);
    put_le16(p + 4, ESP_USB_VID);
    put_le16(p + 6, 0x0100);
    memcpy(p + 8, "UFD", 3);
    p[11] = IMAGE_SUFFIX_SIZE;
    put_le32(p + 12, image_dfu_crc(out, archive_size + 12));
}

static int emit(const Chunk *c, size_t n, uint16_t pid, uint8_t **ret, size_t *ret_size,
                ErrInfo *err)
{
    _cleanup_free_ uint8_t *records = NULL, *out = NULL;
    size_t size, off;

    size = entry_size(strlen(IMAGE_DFUINFO_NAME), n * IMAGE_DFUINFO_RECORD_SIZE) +
           entry_size(strlen(IMAGE_CPIO_TRAILER), 0);
    for (size_t i = 0; i < n; i++)
        size += entry_size(strlen(c[i].name), c[i].size);
    size = (size + IMAGE_CPIO_BLOCK - 1) / IMAGE_CPIO_BLOCK * IMAGE_CPIO_BLOCK;
    if (size > IMAGE_MAX_SIZE - IMAGE_SUFFIX_SIZE)
        return err_set(err, ERR_PACK_ARGS, "the image would be %zu bytes, more than %u", size,
                       IMAGE_MAX_SIZE);
    records = calloc(n, IMAGE_DFUINFO_RECORD_SIZE);
    out = calloc(1, size + IMAGE_SUFFIX_SIZE);
    if (!records || !out) {
        err_set(err, ERR_PACK_ARGS, "out of memory");
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        put_record(records + i * IMAGE_DFUINFO_RECORD_SIZE, &c[i]);
    off = put_cpio(out, IMAGE_DFUINFO_NAME, records, n * IMAGE_DFUINFO_RECORD_SIZE, false);
    for (size_t i = 0; i < n; i++)
        off += put_cpio(out + off, c[i].name, c[i].data, c[i].size, false);
    put_cpio(out + off, IMAGE_CPIO_TRAILER, NULL, 0, true);
    put_suffix(out, size, pid);
    *ret = TAKE_PTR(out);
    *ret_size = size + IMAGE_SUFFIX_SIZE;
    return 0;
}

int image_pack(const PackFile *files, size_t n_files, const PackOptions *o, uint8_t **ret,
               size_t *ret_size, ErrInfo *err)
{
    _cleanup_free_ FileOrder *order = NULL;
    _cleanup_free_ Chunk *chunks = NULL;
    uint8_t params[IMAGE_FLASH_PARAMS_SIZE];
    size_t n_order = 0, n_chunks = 0;
    int r;

    r = check_options(o, err);
    if (r < 0)
        return r;
    r = order_files(n_files, files, &order, &n_order, err);
    if (r < 0)
        return r;
    r = check_files(files, order, n_order, o, &n_chunks, err);
    if (r < 0)
        return r;
    chunks = calloc(n_chunks, sizeof(*chunks));
    if (!chunks) {
        err_set(err, ERR_PACK_ARGS, "out of memory");
        return -ENOMEM;
    }
    flash_params_encode(o->flash_size, params);
    plan_chunks(files, order, n_order, o->part_size, params, chunks);
    r = check_chunk_names(chunks, n_chunks, err);
    if (r < 0)
        return r;
    return emit(chunks, n_chunks, o->pid, ret, ret_size, err);
}
