/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the dfu.bin module (image/image.c, image-pack.c): the two
 * golden images ESP-IDF's own tests keep (tests/fixtures/mkdfu), a packer
 * round trip, and one corruption per error code, each asserting the code, the
 * errno class, a message that says where, and an untouched *ret.
 *
 * Corrupt images come from two sources: the golden files with a byte changed
 * (and the CRC recomputed, so the check under test is the one that fires), and
 * a small independent writer below, for layouts mkdfu never makes.
 */
#include <errno.h>
#include <fcntl.h>
#include <nettle/md5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image.h"

static int failures;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
            failures++;                                                              \
        }                                                                            \
    } while (0)

#define CHECK_EQ(a, b)                                                                          \
    do {                                                                                        \
        long long _a = (long long)(a), _b = (long long)(b);                                     \
        if (_a != _b) {                                                                         \
            fprintf(stderr, "%s:%d: %s == %lld, expected %s == %lld\n", __FILE__, __LINE__, #a, \
                    _a, #b, _b);                                                                \
            failures++;                                                                         \
        }                                                                                       \
    } while (0)

#define GOLDEN1_SHA256 "97523b59902dbbc180e960bfb64f1e3561c8df223849891245ae696203fb6fef"
#define GOLDEN2_SHA256 "30fd6c93b9db14d4c45b7ed00db1ab93e499016e809984b9805f1b1526efe8bf"
#define BUILD_MAX      (64u * 1024u)
#define MB             (1024u * 1024u)

typedef struct Blob {
    uint8_t *data;
    size_t size;
} Blob;

static Blob read_fixture(const char *name)
{
    char path[512];
    Blob b = {};
    ErrInfo e = {};
    int fd;

    snprintf(path, sizeof(path), "%s/mkdfu/%s", FIXTURES_DIR, name);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || image_read_fd(fd, IMAGE_MAX_SIZE, &b.data, &b.size, &e) < 0) {
        fprintf(stderr, "cannot read %s: %s\n", path, fd < 0 ? strerror(errno) : e.message);
        exit(EXIT_FAILURE);
    }
    close(fd);
    return b;
}

static Blob blob_copy(const Blob *b)
{
    Blob c = {.data = malloc(b->size ? b->size : 1), .size = b->size};

    memcpy(c.data, b->data, b->size);
    return c;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (unsigned i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void fix_crc(Blob *b)
{
    put_le32(b->data + b->size - 4, image_dfu_crc(b->data, b->size - 4));
}

static void sha_hex(const uint8_t *p, char *out)
{
    for (size_t i = 0; i < 32; i++)
        sprintf(out + 2 * i, "%02x", p[i]);
}

/* image_parse must fail with this code, its errno class, a message holding
 * `where`, and leave *ret alone. */
static void expect_fail_at(const char *file, int line, const Blob *b, EspdfuErr code,
                           const char *where)
{
    Image *sentinel = (Image *)&failures, *img = sentinel;
    ErrInfo e = {};
    int r = image_parse(b->data, b->size, &img, &e);

    if (r != -espdfu_err_errno(code) || e.code != code || img != sentinel ||
        (where && !strstr(e.message, where))) {
        fprintf(stderr, "%s:%d: expected %s (\"%s\"), got r=%d %s: %s\n", file, line,
                espdfu_err_to_string(code), where ? where : "", r, espdfu_err_to_string(e.code),
                e.message);
        failures++;
        if (img != sentinel)
            image_free(img);
    }
}
#define expect_fail(b, code, where) expect_fail_at(__FILE__, __LINE__, b, code, where)

static Image *expect_ok_at(const char *file, int line, const Blob *b)
{
    Image *img = NULL;
    ErrInfo e = {};

    if (image_parse(b->data, b->size, &img, &e) < 0) {
        fprintf(stderr, "%s:%d: image_parse failed: %s [%s]\n", file, line, e.message,
                espdfu_err_to_string(e.code));
        failures++;
        return NULL;
    }
    return img;
}
#define expect_ok(b) expect_ok_at(__FILE__, __LINE__, b)

/* ---- an independent writer for layouts mkdfu never makes ---- */

typedef struct TEntry {
    const char *name;
    uint32_t address, flags;
    const void *data;
    size_t size;
} TEntry;

static uint8_t params_4mb[32], params_3mb[32];
static const uint8_t data_a[100] = {1, 2, 3}, data_b[50] = {4, 5, 6};

#define PARAMS                                      \
    {                                               \
        "flash_params.dat", 0, 0x1c, params_4mb, 32 \
    }

static size_t align4(size_t x)
{
    return (x + 3) & ~(size_t)3;
}

static void put_entry(Blob *b, const char *name, const void *data, size_t size, uint32_t mode,
                      uint32_t nlink)
{
    size_t namesize = strlen(name) + 1;
    char h[111];

    snprintf(h, sizeof(h), "070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x", 0u, mode,
             0u, 0u, nlink, 0u, (uint32_t)size, 0u, 0u, 0u, 0u, (uint32_t)namesize, 0u);
    memcpy(b->data + b->size, h, 110);
    memcpy(b->data + b->size + 110, name, namesize);
    b->size = align4(b->size + 110 + namesize);
    if (size)
        memcpy(b->data + b->size, data, size);
    b->size = align4(b->size + size);
}

static void put_file(Blob *b, const char *name, const void *data, size_t size)
{
    put_entry(b, name, data, size, 0100644, 0);
}

static void put_records(Blob *b, const TEntry *e, size_t n)
{
    uint8_t rec[16 * 88] = {};
    struct md5_ctx ctx;

    for (size_t i = 0; i < n; i++) {
        uint8_t *p = rec + 88 * i;

        put_le32(p, e[i].address);
        put_le32(p + 4, e[i].flags);
        memcpy(p + 8, e[i].name, strlen(e[i].name));
        md5_init(&ctx);
        md5_update(&ctx, e[i].size, e[i].data);
        md5_digest(&ctx, 16, p + 72);
    }
    put_file(b, "dfuinfo0.dat", rec, 88 * n);
}

static void finish(Blob *b, uint16_t vid, uint16_t pid)
{
    uint8_t *s;

    put_entry(b, "TRAILER!!!", NULL, 0, 0, 1);
    b->size = (b->size + 10239) / 10240 * 10240;
    s = b->data + b->size;
    memcpy(s,
           (uint8_t[]){0xff, 0xff, pid & 0xff, pid >> 8, vid & 0xff, vid >> 8, 0x00, 0x01, 'U', 'F',
                       'D', 16},
           12);
    b->size += 16;
    fix_crc(b);
}

static Blob blob_new(void)
{
    return (Blob){.data = calloc(1, BUILD_MAX)};
}

/* records and entries given apart, so a test can make them disagree */
static Blob build2(const TEntry *rec, size_t n_rec, const TEntry *ent, size_t n_ent)
{
    Blob b = blob_new();

    put_records(&b, rec, n_rec);
    for (size_t i = 0; i < n_ent; i++)
        put_file(&b, ent[i].name, ent[i].data, ent[i].size);
    finish(&b, ESP_USB_VID, 2);
    return b;
}

static Blob build(const TEntry *e, size_t n)
{
    return build2(e, n, e, n);
}

static void init_params(void)
{
    const uint32_t v[8] = {0, 0, 0, 4 * MB, 65536, 4096, 256, 0xffff};

    for (unsigned i = 0; i < 8; i++)
        put_le32(params_4mb + 4 * i, v[i]);
    memcpy(params_3mb, params_4mb, 32);
    put_le32(params_3mb + 12, 3 * MB);
}

/* ---- golden vectors ---- */

static void check_entry(const ImageEntry *e, const char *name, uint32_t address, uint32_t size,
                        uint32_t flags)
{
    CHECK(strcmp(e->name, name) == 0);
    CHECK_EQ(e->address, address);
    CHECK_EQ(e->size, size);
    CHECK_EQ(e->flags, flags);
    CHECK_EQ(e->md5_checked, !(flags & IMAGE_FLAG_IGNORE_MD5));
    CHECK(e->data_offset > e->header_offset && e->data_offset % 4 == 0);
}

static void check_common(const Image *img, const char *sha)
{
    char hex[65];

    CHECK_EQ(img->size, 10256);
    CHECK_EQ(img->payload_size, 10240);
    CHECK_EQ(img->vid, 0x303a);
    CHECK_EQ(img->pid, 0x0002);
    CHECK_EQ(img->bcd_device, 0xffff);
    CHECK_EQ(img->chip, CHIP_ESP32S2);
    CHECK_EQ(img->flash.ishspi, 0);
    CHECK_EQ(img->flash.legacy, 0);
    CHECK_EQ(img->flash.device_id, 0);
    CHECK_EQ(img->flash.chip_size, 4 * MB);
    CHECK_EQ(img->flash.block_size, 65536);
    CHECK_EQ(img->flash.sector_size, 4096);
    CHECK_EQ(img->flash.page_size, 256);
    CHECK_EQ(img->flash.status_mask, 0xffff);
    sha_hex(img->sha256, hex);
    CHECK(strcmp(hex, sha) == 0);
    CHECK(image_matches_device(img, 0x303a, 2));
    CHECK(!image_matches_device(img, 0x303a, 9));
    CHECK(!image_matches_device(img, 0x1234, 2));
}

static void test_golden1(void)
{
    Blob b = read_fixture("1/dfu.bin");
    Image *img = expect_ok(&b);
    ErrInfo e = {};

    if (img) {
        check_common(img, GOLDEN1_SHA256);
        CHECK_EQ(img->n_entries, 4);
        check_entry(&img->entries[0], "flash_params.dat", 0, 32, 0x1c);
        check_entry(&img->entries[1], "1.bin", 0x1000, 1024, 0);
        check_entry(&img->entries[2], "2.bin", 0x8000, 2048, 0);
        check_entry(&img->entries[3], "3.bin", 0x10000, 3072, 0);
        CHECK(memcmp(img->data, b.data, b.size) == 0);
    }
    /* What the board receives: the archive without the suffix. */
    CHECK_EQ(image_check_archive(b.data, b.size - 16, &e), 0);
    CHECK_EQ(image_check_archive(b.data, b.size, &e), -EINVAL);
    CHECK_EQ(e.code, ERR_ARCHIVE_PADDING);
    image_free(img);
    free(b.data);
}

static void test_golden2(void)
{
    Blob b = read_fixture("2/dfu.bin");
    Image *img = expect_ok(&b);

    if (img) {
        check_common(img, GOLDEN2_SHA256);
        CHECK_EQ(img->n_entries, 3);
        /* flash_params.dat (PARAM) and "bin" both at address 0: allowed. */
        check_entry(&img->entries[0], "flash_params.dat", 0, 32, 0x1c);
        check_entry(&img->entries[1], "bin", 0, 5, 0);
        check_entry(&img->entries[2], "bin.1", 5, 5, 0);
        CHECK_EQ(img->entries[0].header_offset, 0x184);
        CHECK_EQ(img->entries[0].data_offset, 0x204);
        CHECK_EQ(img->entries[1].header_offset, 0x224);
        CHECK_EQ(img->entries[1].data_offset, 0x298);
        CHECK_EQ(img->entries[2].header_offset, 0x2a0);
        CHECK_EQ(img->data[0x298], 0xce);
    }
    image_free(img);
    free(b.data);
}

static void expect_pack(const PackFile *f, size_t n, const PackOptions *o, const Blob *want)
{
    uint8_t *out = NULL;
    size_t size = 0;
    ErrInfo e = {};

    CHECK_EQ(image_pack(f, n, o, &out, &size, &e), 0);
    CHECK_EQ(size, want->size);
    CHECK(out && size == want->size && memcmp(out, want->data, size) == 0);
    free(out);
}

static void test_pack_golden(void)
{
    Blob want1 = read_fixture("1/dfu.bin"), want2 = read_fixture("2/dfu.bin");
    Blob f1 = read_fixture("1/1.bin"), f2 = read_fixture("1/2.bin"), f3 = read_fixture("1/3.bin");
    uint8_t ce[10];
    PackOptions o;

    pack_options_init(&o);
    CHECK_EQ(o.flash_size, 2 * MB);
    CHECK_EQ(o.part_size, 512 * 1024);
    o.pid = 2;
    o.flash_size = 4 * MB;
    /* mkdfu write --pid 2 --flash-size 4MB 0x1000 1.bin 0x8000 2.bin 0x10000 3.bin */
    expect_pack((PackFile[]){{0x1000, "1.bin", f1.data, f1.size},
                             {0x8000, "2.bin", f2.data, f2.size},
                             {0x10000, "3.bin", f3.data, f3.size}},
                3, &o, &want1);
    /* Order on the command line does not matter: sorted by address. */
    expect_pack((PackFile[]){{0x10000, "3.bin", f3.data, f3.size},
                             {0x1000, "1.bin", f1.data, f1.size},
                             {0x8000, "2.bin", f2.data, f2.size}},
                3, &o, &want1);
    /* A duplicate address keeps the last file given. */
    expect_pack((PackFile[]){{0x8000, "2.bin", f1.data, f1.size},
                             {0x1000, "1.bin", f1.data, f1.size},
                             {0x8000, "2.bin", f2.data, f2.size},
                             {0x10000, "3.bin", f3.data, f3.size}},
                4, &o, &want1);
    /* mkdfu write --part-size 5 --pid 2 --flash-size 4MB 0 bin, bin = b"\xce" * 10 */
    memset(ce, 0xce, sizeof(ce));
    o.part_size = 5;
    expect_pack((PackFile[]){{0, "bin", ce, sizeof(ce)}}, 1, &o, &want2);
    free(want1.data), free(want2.data), free(f1.data), free(f2.data), free(f3.data);
}

/* ---- pack: round trip and refusals ---- */

static void test_pack_roundtrip(void)
{
    static uint8_t big[100000];
    PackOptions o;
    uint8_t *out = NULL;
    Image *img = NULL;
    size_t size;
    ErrInfo e = {};

    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (uint8_t)(i * 7);
    pack_options_init(&o);
    o.pid = chip_to_pid(CHIP_ESP32S3);
    o.flash_size = 8 * MB;
    o.part_size = 4096 * 4;
    CHECK_EQ(image_pack((PackFile[]){{0x10000, "app.bin", big, sizeof(big)},
                                     {0x0, "bootloader.bin", data_a, sizeof(data_a)},
                                     {0x8000, "partition-table.bin", data_b, sizeof(data_b)},
                                     {0x10000 - 50, "tiny.bin", data_b, 1}},
                        4, &o, &out, &size, &e),
             0);
    CHECK(image_parse(out, size, &img, &e) == 0);
    if (img) {
        /* flash_params, bootloader, partition table, tiny, app in 7 chunks of 16 KiB */
        CHECK_EQ(img->n_entries, 11);
        CHECK_EQ(img->chip, CHIP_ESP32S3);
        CHECK_EQ(img->pid, 9);
        CHECK_EQ(img->flash.chip_size, 8 * MB);
        CHECK(strcmp(img->entries[1].name, "bootloader.bin") == 0);
        CHECK(strcmp(img->entries[3].name, "tiny.bin") == 0);
        CHECK_EQ(img->entries[3].address, 0x10000 - 50);
        CHECK(strcmp(img->entries[10].name, "app.bin.6") == 0);
        CHECK_EQ(img->entries[10].address, 0x10000 + 6 * 16384);
        CHECK_EQ(img->entries[10].size, sizeof(big) - 6 * 16384);
        CHECK(memcmp(img->data + img->entries[10].data_offset, big + 6 * 16384,
                     img->entries[10].size) == 0);
        CHECK_EQ(image_check_archive(img->data, img->payload_size, &e), 0);
    }
    image_free(img);
    free(out);
}

static void test_pack_chunks(void)
{
    static const uint8_t ten[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    static const char *names[] = {"f", "f.1", "f.2", "f.3"};
    PackOptions o;
    uint8_t *out = NULL;
    Image *img = NULL;
    size_t size;
    ErrInfo e = {};

    pack_options_init(&o);
    o.pid = 0x12;
    o.part_size = 3;
    CHECK_EQ(image_pack((PackFile[]){{0x2000, "f", ten, sizeof(ten)}}, 1, &o, &out, &size, &e), 0);
    CHECK(image_parse(out, size, &img, &e) == 0);
    if (img) {
        CHECK_EQ(img->chip, CHIP_ESP32P4);
        CHECK_EQ(img->flash.chip_size, 2 * MB); /* mkdfu's default */
        CHECK_EQ(img->n_entries, 5);
        for (size_t i = 0; i < 4 && i + 1 < img->n_entries; i++) {
            const ImageEntry *x = &img->entries[i + 1];

            CHECK(strcmp(x->name, names[i]) == 0);
            CHECK_EQ(x->address, 0x2000 + 3 * i);
            CHECK_EQ(x->size, i < 3 ? 3 : 1);
            CHECK(memcmp(img->data + x->data_offset, ten + 3 * i, x->size) == 0);
        }
    }
    image_free(img);
    free(out);
}

static void expect_pack_fail_at(int line, const PackFile *f, size_t n, const PackOptions *o,
                                EspdfuErr code, const char *what)
{
    uint8_t *sentinel = (uint8_t *)&failures, *out = sentinel;
    size_t size = 12345;
    ErrInfo e = {};
    int r = image_pack(f, n, o, &out, &size, &e);

    if (r != -espdfu_err_errno(code) || e.code != code || out != sentinel || size != 12345 ||
        !strstr(e.message, what)) {
        fprintf(stderr, "%s:%d: pack: expected %s (\"%s\"), got r=%d %s: %s\n", __FILE__, line,
                espdfu_err_to_string(code), what, r, espdfu_err_to_string(e.code), e.message);
        failures++;
    }
}
#define expect_pack_fail(f, o, code, what) \
    expect_pack_fail_at(__LINE__, f, ELEMENTSOF(f), o, code, what)

static void test_pack_refusals(void)
{
    static uint8_t eleven[11];
    char n63[64], n64[65], n61[62];
    PackOptions o, bad;

    memset(n63, 'x', 63), n63[63] = 0;
    memset(n64, 'x', 64), n64[64] = 0;
    memset(n61, 'x', 61), n61[61] = 0;
    pack_options_init(&o);
    o.pid = 2;
    {
        PackFile ok[] = {{0x1000, n63, data_a, 100}};
        uint8_t *out = NULL;
        size_t size;

        CHECK_EQ(image_pack(ok, 1, &o, &out, &size, NULL), 0);
        free(out);
    }
    PackFile long_name[] = {{0x1000, n64, data_a, 100}};
    expect_pack_fail(long_name, &o, ERR_PACK_NAME, "longer than the 63");
    /* 61 + ".10" for the 11th chunk = 64 bytes */
    PackFile long_chunk[] = {{0x1000, n61, eleven, sizeof(eleven)}};
    bad = o, bad.part_size = 1;
    expect_pack_fail(long_chunk, &bad, ERR_PACK_NAME, "last chunk's name would be 64");
    PackFile overlap[] = {{0x1000, "a.bin", data_a, 100}, {0x1010, "b.bin", data_b, 50}};
    expect_pack_fail(overlap, &o, ERR_ENTRY_OVERLAP, "\"a.bin\" at 0x1000..0x1064 overlaps");
    PackFile range[] = {{2 * MB - 10, "a.bin", data_a, 100}};
    expect_pack_fail(range, &o, ERR_ENTRY_RANGE, "past the end of the 2MB flash");
    PackFile high[] = {{0xfffffff0, "a.bin", data_a, 100}};
    expect_pack_fail(high, &o, ERR_ENTRY_RANGE, "0x100000054");
}

static void test_pack_refusals2(void)
{
    PackOptions o, bad;

    pack_options_init(&o);
    o.pid = 2;
    PackFile one[] = {{0x1000, "a.bin", data_a, 100}};
    bad = o, bad.flash_size = 3 * MB;
    expect_pack_fail(one, &bad, ERR_PACK_FLASH_SIZE, "3145728");
    bad = o, bad.part_size = 0;
    expect_pack_fail(one, &bad, ERR_PACK_ARGS, "part size 0");
    bad = o, bad.pid = 0x1234;
    expect_pack_fail(one, &bad, ERR_PACK_CHIP, "PID 0x1234");
    PackFile empty[] = {{0x1000, "a.bin", data_a, 0}};
    expect_pack_fail(empty, &o, ERR_PACK_INPUT, "\"a.bin\" (at 0x1000) is empty");
    PackFile path[] = {{0x1000, "build/a.bin", data_a, 100}};
    expect_pack_fail(path, &o, ERR_PACK_NAME, "is a path");
    PackFile reserved[] = {{0x1000, "dfuinfo0.dat", data_a, 100}};
    expect_pack_fail(reserved, &o, ERR_PACK_NAME, "own entry");
    PackFile dup[] = {{0x1000, "a.bin", data_a, 100}, {0x2000, "a.bin", data_b, 50}};
    expect_pack_fail(dup, &o, ERR_PACK_NAME, "two entries would be named \"a.bin\"");
    PackFile chunk_dup[] = {{0x1000, "a", data_a, 100}, {0x8000, "a.1", data_b, 50}};
    bad = o, bad.part_size = 64;
    expect_pack_fail(chunk_dup, &bad, ERR_PACK_NAME, "\"a.1\"");
    static uint8_t many[70000];
    PackFile too_many[] = {{0x1000, "a", many, sizeof(many)}};
    bad = o, bad.part_size = 1;
    expect_pack_fail(too_many, &bad, ERR_PACK_ARGS, "more than 65536 entries");
}

/* ---- corruptions of the golden image ---- */

static const ImageEntry *entry_named(const Image *img, const char *name)
{
    for (size_t i = 0; i < img->n_entries; i++)
        if (strcmp(img->entries[i].name, name) == 0)
            return &img->entries[i];
    abort();
}

static void test_truncated(const Blob *g)
{
    static const size_t cuts[] = {0x100, 0x1000, 0x2000, 10240, 10240 + 8, 10255};
    Blob b = *g;
    Blob empty = {.data = g->data, .size = 0}, tiny = {.data = g->data, .size = 10};

    expect_fail(&empty, ERR_IMAGE_EMPTY, "empty");
    expect_fail(&tiny, ERR_IMAGE_TRUNCATED, "10 bytes");
    b.size = 0x100;
    expect_fail(&b, ERR_IMAGE_TRUNCATED, "entry \"dfuinfo0.dat\" at offset 0x0: data");
    b.size = 0x1000;
    expect_fail(&b, ERR_IMAGE_TRUNCATED, "past the end of the file");
    for (size_t i = 2; i < ELEMENTSOF(cuts); i++) {
        b.size = cuts[i];
        expect_fail(&b, ERR_IMAGE_TRUNCATED, "before the end of its DFU suffix at 0x2810");
    }
}

static void test_suffix(const Blob *g)
{
    Blob b = blob_copy(g);
    uint8_t *s = b.data + b.size - 16;
    Image *img;

    s[10] = 'X';
    expect_fail(&b, ERR_SUFFIX_SIGNATURE, "offset 0x2808 are \"UFX\"");
    s[10] = 'D';
    s[11] = 15;
    fix_crc(&b);
    expect_fail(&b, ERR_SUFFIX_LENGTH, "offset 0x2800: bLength is 15");
    s[11] = 16;
    s[7] = 0x02;
    fix_crc(&b);
    expect_fail(&b, ERR_SUFFIX_VERSION, "bcdDFU is 0x0200");
    s[7] = 0x01;
    s[4] = 0x34, s[5] = 0x12;
    fix_crc(&b);
    expect_fail(&b, ERR_SUFFIX_VENDOR, "idVendor is 0x1234");
    /* 0xffff is dfu-util's "any vendor"; an unknown PID is reported, not guessed. */
    s[4] = s[5] = 0xff;
    s[2] = 0x34, s[3] = 0x12;
    fix_crc(&b);
    img = expect_ok(&b);
    if (img) {
        CHECK_EQ(img->chip, CHIP_UNKNOWN);
        CHECK(image_matches_device(img, 0x1234, 0x1234));
        CHECK(!image_matches_device(img, 0x303a, 2));
    }
    image_free(img);
    b.data[0x300] ^= 0x40;
    expect_fail(&b, ERR_CRC_MISMATCH, "offset 0x280c");
    free(b.data);
}

/* Change a golden copy, recompute the CRC, expect `code` with `where` in the message. */
static void corrupt_at(int line, const Blob *g, size_t off, const void *bytes, size_t n,
                       EspdfuErr code, const char *where)
{
    Blob b = blob_copy(g);

    memcpy(b.data + off, bytes, n);
    fix_crc(&b);
    expect_fail_at(__FILE__, line, &b, code, where);
    free(b.data);
}
#define corrupt(g, off, s, code, where) corrupt_at(__LINE__, g, off, s, strlen(s), code, where)

static void test_cpio(const Blob *g, const Image *img)
{
    const ImageEntry *e2 = entry_named(img, "2.bin"), *e3 = entry_named(img, "3.bin");
    const ImageEntry *fp = entry_named(img, "flash_params.dat");
    size_t h = e2->header_offset, trailer = e3->data_offset + e3->size;
    char where[128];

    snprintf(where, sizeof(where), "CPIO header at offset 0x%zx: magic is \"070702\"", h);
    corrupt(g, h, "070702", ERR_CPIO_MAGIC, where);
    snprintf(where, sizeof(where),
             "CPIO header at offset 0x%zx: field \"filesize\" is not hex (\"00z00800\")", h);
    corrupt(g, h + 6 + 6 * 8, "00z00800", ERR_CPIO_HEX, where);
    corrupt(g, h + 6 + 11 * 8, "ffffffff", ERR_CPIO_NAMESIZE, "namesize 0xffffffff");
    corrupt(g, h + 6 + 11 * 8, "00000000", ERR_CPIO_NAMESIZE, "namesize is 0");
    corrupt(g, h + 6 + 6 * 8, "ffffffff", ERR_CPIO_FILESIZE, "filesize 0xffffffff");
    snprintf(where, sizeof(where), "entry \"2.bin\" at offset 0x%zx: data (filesize 0x3000)", h);
    corrupt(g, h + 6 + 6 * 8, "00003000", ERR_CPIO_FILESIZE, where);
    /* namesize one short: the name no longer ends in its NUL */
    corrupt(g, h + 6 + 11 * 8, "00000005", ERR_CPIO_NAME, "does not end in a NUL");
    corrupt(g, h + 6 + 8, "000081ed", ERR_CPIO_MODE, "mode 0100755 nlink 0");
    corrupt(g, h + 6 + 4 * 8, "00000002", ERR_CPIO_MODE, "nlink 2");
    /* "flash_params.dat\0" ends 127 bytes after its header: one byte of padding */
    snprintf(where, sizeof(where),
             "CPIO header at offset 0x%zx: padding after name \"flash_params.dat\" is not zero",
             fp->header_offset);
    corrupt(g, fp->header_offset + 127, "x", ERR_CPIO_ALIGNMENT, where);
    corrupt(g, h + 6, "0000000z", ERR_CPIO_HEX, "field \"ino\"");
    /* the trailer zeroed: the walk runs into the zero padding */
    {
        uint8_t zeros[124] = {};

        snprintf(where, sizeof(where), "only zeros from offset 0x%zx", trailer);
        corrupt_at(__LINE__, g, trailer, zeros, sizeof(zeros), ERR_CPIO_TRAILER, where);
    }
    snprintf(where, sizeof(where), "non-zero byte at offset 0x%x", 0x2000);
    corrupt(g, 0x2000, "x", ERR_ARCHIVE_PADDING, where);
}

static void test_dfuinfo(const Blob *g, const Image *img)
{
    const ImageEntry *e2 = entry_named(img, "2.bin");
    size_t rec2 = 0x7c + 2 * 88; /* dfuinfo0.dat data starts at 0x7c */
    char where[160];

    snprintf(where, sizeof(where),
             "dfuinfo0.dat record 2 names \"2.bim\", but the entry at offset 0x%zx is \"2.bin\"",
             e2->header_offset);
    corrupt(g, rec2 + 8 + 4, "m", ERR_DFUINFO_NAME, where);
    snprintf(where, sizeof(where), "entry \"2.bin\" at offset 0x%zx: md5 mismatch",
             e2->header_offset);
    corrupt(g, e2->data_offset + 100, "\x55", ERR_MD5_MISMATCH, where);
    /* a 64-byte name field without its NUL */
    corrupt(g, rec2 + 8, "0123456789012345678901234567890123456789012345678901234567890123",
            ERR_DFUINFO_NAME, "dfuinfo0.dat record 2 (offset 0x");
}

/* The archive and dfuinfo0.dat disagree, or dfuinfo0.dat is malformed. */
static void test_built_index(void)
{
    const TEntry std[] = {
            PARAMS, {"a.bin", 0x1000, 0, data_a, 100}, {"b.bin", 0x2000, 0, data_b, 50}};
    Blob b;
    Image *img;

    b = build(std, 3);
    img = expect_ok(&b);
    CHECK(img && img->n_entries == 3);
    image_free(img), free(b.data);

    /* 5 data bytes, 3 of padding: the padding must be zero */
    b = build((TEntry[]){PARAMS, {"c.bin", 0x1000, 0, data_b, 5}}, 2);
    img = expect_ok(&b);
    if (img) {
        char where[96];

        snprintf(where, sizeof(where),
                 "entry \"c.bin\" at offset 0x%zx: padding after the data is not zero",
                 img->entries[1].header_offset);
        b.data[img->entries[1].data_offset + 6] = 1;
        fix_crc(&b);
        expect_fail(&b, ERR_CPIO_ALIGNMENT, where);
    }
    image_free(img), free(b.data);

    b = build2(std, 2, std, 3);
    expect_fail(&b, ERR_DFUINFO_COUNT, "2 records, but 3 entries follow it");
    free(b.data);

    b = blob_new();
    put_file(&b, "a.bin", data_a, 100);
    finish(&b, ESP_USB_VID, 2);
    expect_fail(&b, ERR_DFUINFO_MISSING, "first entry (offset 0x0) is \"a.bin\"");
    free(b.data);

    b = blob_new();
    put_file(&b, "dfuinfo0.dat", data_a, 87);
    finish(&b, ESP_USB_VID, 2);
    expect_fail(&b, ERR_DFUINFO_SIZE, "87 bytes");
    free(b.data);
}

/* Layouts with a well-formed dfuinfo0.dat that the names or the flash forbid. */
static void test_built_layout(void)
{
    Blob b;

    b = build(
            (TEntry[]){PARAMS, {"a.bin", 0x1000, 0, data_a, 100}, {"a.bin", 0x2000, 0, data_b, 50}},
            3);
    expect_fail(&b, ERR_CPIO_DUPLICATE, "both named \"a.bin\"");
    free(b.data);

    b = build((TEntry[]){{"a.bin", 0x1000, 0, data_a, 100}}, 1);
    expect_fail(&b, ERR_FLASH_PARAMS, "\"a.bin\", not flash_params.dat");
    free(b.data);

    b = build((TEntry[]){{"flash_params.dat", 0, 0x1c, params_3mb, 32}}, 1);
    expect_fail(&b, ERR_FLASH_PARAMS, "chip_size 0x300000");
    free(b.data);

    b = build((TEntry[]){{"flash_params.dat", 0, 0x18, params_4mb, 32}}, 1);
    expect_fail(&b, ERR_FLASH_PARAMS, "lack PARAM");
    free(b.data);

    b = build(
            (TEntry[]){PARAMS, {"a.bin", 0x1000, 0, data_a, 100}, {"b.bin", 0x1010, 0, data_b, 50}},
            3);
    expect_fail(&b, ERR_ENTRY_OVERLAP, "\"a.bin\" (flash 0x1000..0x1064) and \"b.bin\"");
    free(b.data);

    b = build((TEntry[]){PARAMS, {"b.bin", 4 * MB - 16, 0, data_b, 50}}, 2);
    expect_fail(&b, ERR_ENTRY_RANGE, "ends past the 4MB flash");
    free(b.data);

    b = build((TEntry[]){PARAMS, {"dir/a.bin", 0x1000, 0, data_a, 100}}, 2);
    expect_fail(&b, ERR_CPIO_NAME, "\"dir/a.bin\" at offset 0x");
    free(b.data);

    b = blob_new();
    put_records(&b, (TEntry[]){PARAMS}, 1);
    put_file(&b, "flash_params.dat", params_4mb, 32);
    put_entry(&b, "TRAILER!!!", NULL, 0, 0, 0);
    finish(&b, ESP_USB_VID, 2);
    expect_fail(&b, ERR_CPIO_MODE, "\"TRAILER!!!\"");
    free(b.data);
}

/* An entry with IGNORE_MD5 may carry any md5; one without may not. */
static void test_ignore_md5(void)
{
    const TEntry e[] = {PARAMS, {"a.bin", 0x1000, IMAGE_FLAG_IGNORE_MD5, data_a, 100}};
    Blob b = build(e, 2);
    size_t rec1_md5 = 0x7c + 88 + 72;
    Image *img;

    b.data[rec1_md5] ^= 0xff;
    fix_crc(&b);
    img = expect_ok(&b);
    CHECK(img && !img->entries[1].md5_checked);
    image_free(img);
    b.data[0x7c + 88 + 4] = 0; /* clear IGNORE_MD5 */
    fix_crc(&b);
    expect_fail(&b, ERR_MD5_MISMATCH, "entry \"a.bin\"");
    free(b.data);
}

/* ---- image_load_fd ---- */

static void test_load_fd(const Blob *g)
{
    char path[] = BUILD_DIR "/test-image-XXXXXX";
    Image *sentinel = (Image *)&failures, *img = sentinel;
    ErrInfo e = {};
    int fd, wfd;

    fd = open(BUILD_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    CHECK_EQ(image_load_fd(fd, &img, &e), -EISDIR);
    CHECK(e.code == ERR_IMAGE_NOT_REGULAR && strstr(e.message, "a directory") && img == sentinel);
    close(fd);

    fd = mkostemp(path, O_CLOEXEC);
    CHECK(fd >= 0 && write(fd, g->data, g->size) == (ssize_t)g->size);
    /* the fd's offset is at the end: image_load_fd reads from 0 anyway */
    CHECK_EQ(image_load_fd(fd, &img, &e), 0);
    CHECK(img != sentinel && img->size == g->size);
    image_free(img), img = sentinel;

    wfd = open(path, O_WRONLY | O_CLOEXEC);
    CHECK_EQ(image_load_fd(wfd, &img, &e), -EBADF);
    CHECK(e.code == ERR_IMAGE_IO && strstr(e.message, "read failed") && img == sentinel);
    close(wfd);

    CHECK_EQ(image_load_fd(-1, &img, &e), -EBADF);
    CHECK(e.code == ERR_IMAGE_IO && img == sentinel);

    CHECK_EQ(ftruncate(fd, 0), 0);
    CHECK_EQ(image_load_fd(fd, &img, &e), -EINVAL);
    CHECK(e.code == ERR_IMAGE_EMPTY && img == sentinel);

    /* sparse: costs no disk */
    CHECK_EQ(ftruncate(fd, (off_t)IMAGE_MAX_SIZE + 1), 0);
    CHECK_EQ(image_load_fd(fd, &img, &e), -EFBIG);
    CHECK(e.code == ERR_IMAGE_TOO_LARGE && img == sentinel);
    close(fd);
    unlink(path);

    /* the size is checked before any byte is read */
    Blob huge = {.data = g->data, .size = (size_t)IMAGE_MAX_SIZE + 1};
    expect_fail(&huge, ERR_IMAGE_TOO_LARGE, "more than");
}

/* ---- helpers ---- */

static void test_chips(void)
{
    for (Chip c = CHIP_ESP32S2; c < _CHIP_MAX; c++) {
        CHECK_EQ(chip_from_string(chip_to_string(c)), c);
        CHECK_EQ(chip_from_pid(chip_to_pid(c)), c);
    }
    CHECK_EQ(chip_to_pid(CHIP_ESP32S2), 0x0002);
    CHECK_EQ(chip_to_pid(CHIP_ESP32S3), 0x0009);
    CHECK_EQ(chip_to_pid(CHIP_ESP32P4), 0x0012);
    CHECK_EQ(chip_to_pid(CHIP_ESP32S31), 0x0020);
    CHECK_EQ(chip_from_pid(0x1234), CHIP_UNKNOWN);
    CHECK_EQ(chip_from_pid(0), CHIP_UNKNOWN);
    CHECK_EQ(chip_from_string("esp32"), _CHIP_MAX);
    CHECK_EQ(chip_from_string("unknown"), _CHIP_MAX);
    CHECK(strcmp(chip_to_string(CHIP_UNKNOWN), "unknown") == 0);
}

/* errcode.c's table: every code has a row, and the names stay unique and round-trip. */
static void test_error_codes(void)
{
    static const EspdfuErr transient[] = {
            ERR_USB_TRANSFER, ERR_USB_TIMEOUT, ERR_USB_STALL,      ERR_USB_CLAIM,
            ERR_DFU_STATUS,   ERR_DFU_STATE,   ERR_DNBUSY_TIMEOUT, ERR_MANIFEST_TIMEOUT,
    };
    unsigned n_transient = 0;

    for (int e = 0; e < _ERR_MAX; e++) {
        const char *name = espdfu_err_to_string((EspdfuErr)e);
        bool want_transient = false;

        CHECK(name && *name);
        if (!name)
            continue;
        for (int f = 0; f < e; f++) {
            const char *other = espdfu_err_to_string((EspdfuErr)f);

            if (other && strcmp(other, name) == 0) {
                fprintf(stderr, "error codes %d and %d are both \"%s\"\n", f, e, name);
                failures++;
            }
        }
        CHECK_EQ(espdfu_err_from_string(name), e);
        if (e == ERR_OK)
            CHECK_EQ(espdfu_err_errno((EspdfuErr)e), 0);
        else
            CHECK(espdfu_err_errno((EspdfuErr)e) > 0);
        for (size_t i = 0; i < sizeof(transient) / sizeof(transient[0]); i++)
            want_transient |= transient[i] == (EspdfuErr)e;
        CHECK_EQ(espdfu_err_is_transient((EspdfuErr)e), want_transient);
        n_transient += espdfu_err_is_transient((EspdfuErr)e);
    }
    CHECK_EQ(n_transient, sizeof(transient) / sizeof(transient[0]));
    CHECK(espdfu_err_to_string(_ERR_MAX) == NULL);
    CHECK(!espdfu_err_is_transient(_ERR_MAX));
    CHECK_EQ(espdfu_err_from_string("no-such-error"), _ERR_MAX);
    CHECK_EQ(espdfu_err_from_string(NULL), _ERR_MAX);
    /* Names and errno classes are protocol: a few pinned, first, middle and last. */
    CHECK(strcmp(espdfu_err_to_string(ERR_OK), "ok") == 0);
    CHECK(strcmp(espdfu_err_to_string(ERR_CRC_MISMATCH), "crc-mismatch") == 0);
    CHECK(strcmp(espdfu_err_to_string(ERR_USB_NO_DFU), "usb-no-dfu") == 0);
    CHECK(strcmp(espdfu_err_to_string(ERR_WAIT_TIMEOUT), "wait-timeout") == 0);
    CHECK_EQ(espdfu_err_errno(ERR_IMAGE_NOT_REGULAR), EISDIR);
    CHECK_EQ(espdfu_err_errno(ERR_WRONG_CHIP), EMEDIUMTYPE);
    CHECK_EQ(espdfu_err_errno(ERR_USB_STALL), EPIPE);
    CHECK_EQ(espdfu_err_errno(ERR_NO_BOARD), ENXIO);
    CHECK_EQ(err_set(NULL, ERR_CANCELLED, "x"), -ECANCELED);
}

static void test_numbers(void)
{
    uint32_t v = 0;
    uint16_t pid = 0;
    char buf[64];

    CHECK(image_flash_size_from_string("4MB", &v) == 0 && v == 4 * MB);
    CHECK(image_flash_size_from_string("128MB", &v) == 0 && v == 128 * MB);
    CHECK_EQ(image_flash_size_from_string("3MB", &v), -EINVAL);
    CHECK_EQ(image_flash_size_from_string("4mb", &v), -EINVAL);
    CHECK_EQ(image_flash_size_from_string("detect", &v), -EINVAL);
    CHECK(strcmp(image_flash_size_to_string(16 * MB), "16MB") == 0);
    CHECK(!image_flash_size_to_string(3 * MB));

    CHECK(image_parse_number("0x1000", &v) == 0 && v == 0x1000);
    CHECK(image_parse_number("0X10000", &v) == 0 && v == 0x10000);
    CHECK(image_parse_number("4096", &v) == 0 && v == 4096);
    CHECK(image_parse_number("0", &v) == 0 && v == 0);
    CHECK(image_parse_number("00", &v) == 0 && v == 0);
    CHECK(image_parse_number("0o17", &v) == 0 && v == 15);
    CHECK(image_parse_number("0b101", &v) == 0 && v == 5);
    CHECK(image_parse_number("0xffffffff", &v) == 0 && v == 0xffffffff);
    CHECK_EQ(image_parse_number("0x100000000", &v), -ERANGE);
    CHECK_EQ(image_parse_number("010", &v), -EINVAL);
    CHECK_EQ(image_parse_number("", &v), -EINVAL);
    CHECK_EQ(image_parse_number("0x", &v), -EINVAL);
    CHECK_EQ(image_parse_number("-1", &v), -EINVAL);
    CHECK_EQ(image_parse_number("0x1g", &v), -EINVAL);
    CHECK_EQ(image_parse_number(" 1", &v), -EINVAL);
    CHECK(image_parse_pid("2", &pid) == 0 && pid == 2);
    CHECK(image_parse_pid("0x0009", &pid) == 0 && pid == 9);
    CHECK(image_parse_pid("12", &pid) == 0 && pid == 0x12);
    CHECK_EQ(image_parse_pid("10000", &pid), -ERANGE);
    CHECK_EQ(image_parse_pid("esp", &pid), -EINVAL);

    CHECK(strcmp(image_flags_format(0x1c, buf, sizeof(buf)), "param,noerase,ignore-md5") == 0);
    CHECK(strcmp(image_flags_format(0, buf, sizeof(buf)), "-") == 0);
    CHECK(strcmp(image_flags_format(0x5, buf, sizeof(buf)), "param,0x1") == 0);
    CHECK(strcmp(image_flags_format(0x1c, buf, 6), "param") == 0);
    CHECK(!image_flag_to_string(1));
}

int main(void)
{
    Blob g = read_fixture("1/dfu.bin");
    Image *img;

    init_params();
    test_chips();
    test_error_codes();
    test_numbers();
    test_golden1();
    test_golden2();
    test_pack_golden();
    test_pack_roundtrip();
    test_pack_chunks();
    test_pack_refusals();
    test_pack_refusals2();
    img = expect_ok(&g);
    if (!img)
        return EXIT_FAILURE;
    test_truncated(&g);
    test_suffix(&g);
    test_cpio(&g, img);
    test_dfuinfo(&g, img);
    test_built_index();
    test_built_layout();
    test_ignore_md5();
    test_load_fd(&g);
    image_free(img);
    free(g.data);
    if (failures) {
        fprintf(stderr, "test-image: %d check(s) failed\n", failures);
        return EXIT_FAILURE;
    }
    printf("test-image: all checks passed\n");
    return EXIT_SUCCESS;
}
