/* SPDX-License-Identifier: MIT */
/*
 * The DFU engine against the ROM model, over an in-memory transport on a
 * virtual clock: a "board" answers each control transfer at once or after the
 * delay the model asks for, and sleep_ms() only moves the clock.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "dfu.h"
#include "emu/dfu-model.h"
#include "image.h"
#include "util.h"

#define FIXTURE FIXTURES_DIR "/mkdfu/1/dfu.bin"
#define TS      64 /* the ROM's wTransferSize */

DEFINE_TRIVIAL_CLEANUP_FUNC(DfuModel *, dfu_model_free)

/* ---- a tiny harness ---- */

typedef struct T {
    const char *name;
    bool failed;
    ErrInfo err; /* the engine's last error, printed on failure */
} T;

static unsigned n_passed, n_failed;

static void check_failed(T *t, const char *file, int line, const char *what)
{
    fprintf(stderr, "%s:%d: %s: check failed: %s\n", file, line, t->name, what);
    if (t->err.message[0])
        fprintf(stderr, "    last error: [%s] %s\n", espdfu_err_to_string(t->err.code),
                t->err.message);
    t->failed = true;
}

#define CHECK(cond)                                     \
    do {                                                \
        if (!(cond)) {                                  \
            check_failed(t, __FILE__, __LINE__, #cond); \
            return;                                     \
        }                                               \
    } while (0)

#define CHECK_CONTAINS(s, sub) CHECK(strstr((s), (sub)) != NULL)

static void run(const char *name, void (*fn)(T *t))
{
    T t = {.name = name};

    fn(&t);
    if (t.failed) {
        n_failed++;
        fprintf(stderr, "FAIL %s\n", name);
    } else {
        n_passed++;
        printf("ok   %s\n", name);
    }
}

/* ---- payloads ---- */

static void fill(uint8_t *p, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (uint8_t)(seed >> 16);
    }
}

/* The golden image: its payload (file minus the suffix), malloc'd. */
static uint8_t *load_fixture(size_t *ret)
{
    _cleanup_close_ int fd = open(FIXTURE, O_RDONLY | O_CLOEXEC);
    _cleanup_free_ uint8_t *buf = NULL;
    struct stat st;

    if (fd < 0 || fstat(fd, &st) < 0 || st.st_size <= (off_t)IMAGE_SUFFIX_SIZE)
        return NULL;
    buf = malloc((size_t)st.st_size);
    if (!buf || read(fd, buf, (size_t)st.st_size) != st.st_size)
        return NULL;
    *ret = (size_t)st.st_size - IMAGE_SUFFIX_SIZE;
    return TAKE_PTR(buf);
}

/* A bootloader, a partition table and an app of app_size bytes, packed as mkdfu would. */
static uint8_t *make_image(size_t app_size, size_t *ret)
{
    _cleanup_free_ uint8_t *boot = malloc(4000), *table = malloc(3072), *app = malloc(app_size);
    PackOptions o;
    uint8_t *img = NULL;
    size_t size;
    ErrInfo err;

    if (!boot || !table || !app)
        return NULL;
    fill(boot, 4000, 1);
    fill(table, 3072, 2);
    fill(app, app_size, 3);
    PackFile files[] = {
            {.address = 0x1000, .name = "bootloader.bin", .data = boot, .size = 4000},
            {.address = 0x8000, .name = "partition-table.bin", .data = table, .size = 3072},
            {.address = 0x10000, .name = "app.bin", .data = app, .size = app_size},
    };
    pack_options_init(&o);
    o.pid = 0x0002;
    if (image_pack(files, ELEMENTSOF(files), &o, &img, &size, &err) < 0) {
        fprintf(stderr, "image_pack: %s\n", err.message);
        return NULL;
    }
    *ret = size - IMAGE_SUFFIX_SIZE;
    return img;
}

/* ---- the in-memory board ---- */

typedef struct Bench {
    DfuModel *model;
    uint64_t now; /* the virtual clock */
    DfuTransport tr;
    DfuSession s;
    DfuReport rep;
    atomic_bool cancel;
    /* what the board side does besides the model */
    bool unplugged;
    bool unplug_after_zlp;    /* gone once the zero-length DNLOAD is through */
    int inject_req;           /* -1: none; this request fails with inject_err ... */
    int inject_err;           /* ... */
    unsigned inject_skip;     /* ... after this many of them went through */
    unsigned short_status_at; /* the Nth GETSTATUS (from 1) answers short_len bytes */
    uint16_t short_len;
    unsigned force_from;      /* GETSTATUS answers force_from.. (from 1) ... */
    unsigned force_count;     /* ... force_from + force_count - 1 say ... */
    int force_state;          /* ... this bState (-1: unchanged) */
    int force_status;         /* ... and this bStatus (-1: unchanged) */
    unsigned corrupt_block;   /* DNLOAD number corrupt_block (from 1) gets a wrong wValue */
    unsigned short_dnload_at; /* DNLOAD number (from 1) reports one byte less */
    int reset_result;
    bool libusb_names;
    uint64_t cancel_at; /* the cancel flag goes up when the clock passes this (0: never) */
    uint64_t cancel_after_bytes;
    /* what happened */
    unsigned getstatus, dnloads, resets, sleeps, progress_calls;
    unsigned value0, value_ffff; /* DNLOADs with data and wValue 0 / 0xffff */
    uint16_t detach_value;
    uint64_t progress_sent, progress_total;
    bool progress_ok;
} Bench;

static bool inject(Bench *b, uint8_t req, int *ret)
{
    if (b->inject_req != req)
        return false;
    if (b->inject_skip > 0) {
        b->inject_skip--;
        return false;
    }
    *ret = b->inject_err;
    return true;
}

static void rewrite_status(Bench *b, uint8_t *data, int *len)
{
    b->getstatus++;
    if (b->getstatus >= b->force_from && b->getstatus - b->force_from < b->force_count &&
        *len >= 6) {
        if (b->force_state >= 0)
            data[4] = (uint8_t)b->force_state;
        if (b->force_status >= 0)
            data[0] = (uint8_t)b->force_status;
    }
    if (b->short_status_at && b->getstatus == b->short_status_at)
        *len = b->short_len;
}

static void note_dnload(Bench *b, uint16_t *value, uint16_t length)
{
    b->dnloads++;
    if (length == 0)
        return;
    if (*value == 0)
        b->value0++;
    if (*value == 0xffff)
        b->value_ffff++;
    if (b->corrupt_block && b->dnloads == b->corrupt_block)
        *value ^= 0x5a;
}

static int bench_control(void *userdata, uint8_t type, uint8_t req, uint16_t value, uint16_t index,
                         uint8_t *data, uint16_t length, unsigned timeout_ms)
{
    Bench *b = userdata;
    uint16_t len = 0;
    uint32_t delay = 0;
    int r;

    if (index != b->s.interface)
        return -EINVAL;
    if (b->unplugged)
        return -ENODEV;
    if (inject(b, req, &r))
        return r;
    if (req == DFU_REQ_DETACH)
        b->detach_value = value;
    if (req == DFU_REQ_DNLOAD)
        note_dnload(b, &value, length);
    switch (dfu_model_control(b->model, b->now, type, req, value, data, length, &len, &delay)) {
    case DFU_MODEL_REPLY:
        if (delay > timeout_ms) {
            b->now += timeout_ms;
            return -ETIMEDOUT;
        }
        b->now += delay;
        break;
    case DFU_MODEL_STALL:
        return -EPIPE;
    case DFU_MODEL_HANG:
        b->now += timeout_ms;
        return -ETIMEDOUT;
    case DFU_MODEL_UNPLUG:
        return -ENODEV;
    }
    r = len;
    if (req == DFU_REQ_GETSTATUS)
        rewrite_status(b, data, &r);
    if (req == DFU_REQ_DNLOAD && b->short_dnload_at && b->dnloads == b->short_dnload_at)
        r--;
    if (req == DFU_REQ_DNLOAD && length == 0 && b->unplug_after_zlp)
        b->unplugged = true;
    return r;
}

static int bench_reset(void *userdata)
{
    Bench *b = userdata;

    b->resets++;
    dfu_model_reset(b->model);
    return b->reset_result;
}

static void bench_sleep(void *userdata, uint32_t ms)
{
    Bench *b = userdata;

    b->sleeps++;
    b->now += ms;
    if (b->cancel_at && b->now >= b->cancel_at)
        atomic_store(&b->cancel, true);
}

static uint64_t bench_now(void *userdata)
{
    return ((Bench *)userdata)->now;
}

static const char *bench_error_name(void *userdata, int err)
{
    Bench *b = userdata;

    if (!b->libusb_names)
        return NULL;
    switch (err) {
    case -ENODEV:
        return "LIBUSB_ERROR_NO_DEVICE";
    case -EPIPE:
        return "LIBUSB_ERROR_PIPE";
    case -ETIMEDOUT:
        return "LIBUSB_ERROR_TIMEOUT";
    }
    return "LIBUSB_ERROR_IO";
}

static void bench_progress(void *userdata, uint64_t sent, uint64_t total)
{
    Bench *b = userdata;

    b->progress_calls++;
    if (sent <= b->progress_sent || sent > total)
        b->progress_ok = false;
    b->progress_sent = sent;
    b->progress_total = total;
    if (b->cancel_after_bytes && sent >= b->cancel_after_bytes)
        atomic_store(&b->cancel, true);
}

/* Rewrite GETSTATUS answers, starting skip answers from now. */
static void force(Bench *b, unsigned skip, unsigned count, int state, int status)
{
    b->force_from = b->getstatus + 1 + skip;
    b->force_count = count;
    b->force_state = state;
    b->force_status = status;
}

static bool bench_init(Bench *b, const DfuModelConfig *c)
{
    *b = (Bench){
            .model = dfu_model_new(c),
            .now = 1000000, /* not 0, so a deadline of 0 would show */
            .inject_req = -1,
            .force_state = -1,
            .force_status = -1,
            .progress_ok = true,
    };
    b->tr = (DfuTransport){
            .userdata = b,
            .control = bench_control,
            .reset = bench_reset,
            .sleep_ms = bench_sleep,
            .now_ms = bench_now,
            .error_name = bench_error_name,
    };
    b->s = (DfuSession){
            .transport = &b->tr,
            .interface = 0,
            .functional = {.attributes = DFU_ATTR_CAN_DNLOAD | DFU_ATTR_MANIFEST_TOLERANT |
                                         DFU_ATTR_WILL_DETACH,
                           .detach_timeout_ms = 1000,
                           .transfer_size = c ? c->transfer_size : TS,
                           .dfu_version = 0x0110},
            .progress = bench_progress,
            .progress_userdata = b,
            .cancel = &b->cancel,
    };
    dfu_config_init(&b->s.config);
    atomic_init(&b->cancel, false);
    return b->model != NULL;
}

static void bench_done(Bench *b)
{
    b->model = dfu_model_free(b->model);
}

static int download(T *t, Bench *b, const uint8_t *p, size_t n)
{
    t->err = (ErrInfo){0};
    return dfu_download(&b->s, p, n, &b->rep, &t->err);
}

static DfuModelStats stats(const Bench *b)
{
    DfuModelStats st;

    dfu_model_stats(b->model, &st);
    return st;
}

static bool received_is(const Bench *b, const uint8_t *p, size_t n)
{
    size_t len;
    const uint8_t *got = dfu_model_received(b->model, &len);

    return len == n && got && memcmp(got, p, n) == 0;
}

static DfuModelConfig rom(void)
{
    DfuModelConfig c;

    dfu_model_config_init(&c);
    return c;
}

/* ---- strings and descriptors ---- */

static void test_strings(T *t)
{
    static const char *const states[] = {
            "appIDLE",          "appDETACH",   "dfuIDLE",
            "dfuDNLOAD-SYNC",   "dfuDNBUSY",   "dfuDNLOAD-IDLE",
            "dfuMANIFEST-SYNC", "dfuMANIFEST", "dfuMANIFEST-WAIT-RESET",
            "dfuUPLOAD-IDLE",   "dfuERROR",
    };
    static const char *const statuses[] = {
            "OK",      "errTARGET", "errFILE",    "errWRITE",      "errERASE",    "errCHECK_ERASED",
            "errPROG", "errVERIFY", "errADDRESS", "errNOTDONE",    "errFIRMWARE", "errVENDOR",
            "errUSBR", "errPOR",    "errUNKNOWN", "errSTALLEDPKT",
    };
    static const char *const phases[] = {"detach", "prepare", "download", "manifest"};

    CHECK(ELEMENTSOF(states) == _DFU_STATE_MAX);
    CHECK(ELEMENTSOF(statuses) == _DFU_STATUS_MAX);
    CHECK(ELEMENTSOF(phases) == _DFU_PHASE_MAX);
    for (int i = 0; i < _DFU_STATE_MAX; i++)
        CHECK(strcmp(dfu_state_to_string((DfuState)i), states[i]) == 0);
    for (int i = 0; i < _DFU_STATUS_MAX; i++)
        CHECK(strcmp(dfu_status_to_string((DfuStatus)i), statuses[i]) == 0);
    for (int i = 0; i < _DFU_PHASE_MAX; i++)
        CHECK(strcmp(dfu_phase_to_string((DfuPhase)i), phases[i]) == 0);
    CHECK(dfu_state_to_string(_DFU_STATE_MAX) == NULL);
    CHECK(dfu_state_to_string((DfuState)200) == NULL);
    CHECK(dfu_status_to_string(_DFU_STATUS_MAX) == NULL);
    CHECK(dfu_phase_to_string(_DFU_PHASE_MAX) == NULL);
}

static void test_config_defaults(T *t)
{
    DfuConfig c;

    dfu_config_init(&c);
    CHECK(c.transfer_timeout_ms == 30000);
    CHECK(c.dnbusy_timeout_ms == 120000);
    CHECK(c.manifest_max_polls == 200);
}

static void test_parse_functional(T *t)
{
    /* An interface descriptor, then the DFU functional descriptor (DFU 1.1 4.1.3). */
    static const uint8_t good[] = {0x09, 0x04, 0x00, 0x00, 0x00, 0xfe, 0x01, 0x02, 0x00,
                                   0x09, 0x21, 0x0d, 0xe8, 0x03, 0x40, 0x00, 0x10, 0x01};
    static const uint8_t dfu10[] = {0x07, 0x21, 0x0b, 0xff, 0x00, 0x00, 0x04};
    static const uint8_t truncated[] = {0x09, 0x21, 0x0d, 0xe8, 0x03, 0x40, 0x00};
    static const uint8_t too_short[] = {0x05, 0x21, 0x0d, 0xe8, 0x03};
    static const uint8_t zero[] = {0x00, 0x21, 0x0d, 0xe8, 0x03, 0x40, 0x00, 0x10, 0x01};
    static const uint8_t trailing[] = {0x09, 0x04, 0x00, 0x00, 0x00, 0xfe, 0x01, 0x02, 0x00, 0x09};
    static const uint8_t other[] = {0x09, 0x04, 0x00, 0x00, 0x00, 0xfe, 0x01, 0x02, 0x00};
    const DfuFunctional sentinel = {.attributes = 0xaa, .transfer_size = 0x5555};
    DfuFunctional f;

    CHECK(dfu_parse_functional(good, sizeof(good), &f) == 0);
    CHECK(f.attributes == 0x0d && f.detach_timeout_ms == 1000 && f.transfer_size == 64);
    CHECK(f.dfu_version == 0x0110);
    CHECK(dfu_parse_functional(dfu10, sizeof(dfu10), &f) == 0);
    CHECK(f.attributes == 0x0b && f.detach_timeout_ms == 255 && f.transfer_size == 1024);
    CHECK(f.dfu_version == 0x0100);
    f = sentinel;
    CHECK(dfu_parse_functional(truncated, sizeof(truncated), &f) == -EINVAL);
    CHECK(dfu_parse_functional(too_short, sizeof(too_short), &f) == -EINVAL);
    CHECK(dfu_parse_functional(zero, sizeof(zero), &f) == -EINVAL);
    CHECK(dfu_parse_functional(trailing, sizeof(trailing), &f) == -EINVAL);
    CHECK(dfu_parse_functional(other, sizeof(other), &f) == -ENOENT);
    CHECK(dfu_parse_functional(good, 0, &f) == -ENOENT);
    CHECK(dfu_parse_functional(NULL, 0, &f) == -ENOENT);
    CHECK(f.attributes == 0xaa && f.transfer_size == 0x5555); /* untouched on failure */
}

/* Random bytes: never a read out of bounds (ASan), always one of three answers. */
static void test_parse_functional_garbage(T *t)
{
    uint8_t buf[48];
    uint32_t seed = 7;

    for (int i = 0; i < 200000; i++) {
        size_t len;
        _cleanup_free_ uint8_t *copy = NULL;
        DfuFunctional f;
        int r;

        fill(buf, sizeof(buf), seed++);
        len = buf[0] % (sizeof(buf) + 1);
        if (i % 3 == 0 && len > 1)
            buf[1] = DFU_DESC_FUNCTIONAL; /* make the interesting case common */
        copy = malloc(len ? len : 1);     /* exact size, so ASan sees an overread */
        CHECK(copy);
        memcpy(copy, buf, len);
        r = dfu_parse_functional(copy, len, &f);
        CHECK(r == 0 || r == -EINVAL || r == -ENOENT);
    }
}

/* ---- the model on its own: every state transition ---- */

typedef struct Raw {
    DfuModelAction action;
    uint16_t len;
    uint32_t delay;
    uint8_t buf[64];
} Raw;

static Raw raw(DfuModel *m, uint64_t now, uint8_t req, uint16_t value, const void *data,
               uint16_t length)
{
    bool in = req == DFU_REQ_UPLOAD || req == DFU_REQ_GETSTATUS || req == DFU_REQ_GETSTATE;
    Raw r = {0};

    if (data && length <= sizeof(r.buf))
        memcpy(r.buf, data, length);
    r.action = dfu_model_control(m, now, in ? DFU_RT_IN : DFU_RT_OUT, req, value,
                                 length ? r.buf : NULL, length, &r.len, &r.delay);
    return r;
}

static uint8_t model_state(const DfuModel *m)
{
    DfuModelStats st;

    dfu_model_stats(m, &st);
    return st.state;
}

static uint8_t model_status(const DfuModel *m)
{
    DfuModelStats st;

    dfu_model_stats(m, &st);
    return st.status;
}

static void test_model_idle_and_error(T *t)
{
    DfuModelConfig c = rom();
    _cleanup_(dfu_model_freep) DfuModel *m = dfu_model_new(&c);
    uint8_t big[65] = {0};
    Raw r;

    CHECK(m);
    r = raw(m, 0, DFU_REQ_GETSTATE, 0, NULL, 1);
    CHECK(r.action == DFU_MODEL_REPLY && r.len == 1 && r.buf[0] == DFU_STATE_DFU_IDLE);
    r = raw(m, 0, DFU_REQ_GETSTATUS, 0, NULL, 6);
    CHECK(r.action == DFU_MODEL_REPLY && r.len == 6);
    CHECK(r.buf[0] == 0 && r.buf[1] == 0 && r.buf[4] == DFU_STATE_DFU_IDLE && r.buf[5] == 0);
    r = raw(m, 0, DFU_REQ_GETSTATUS, 0, NULL, 3); /* the host asked fewer bytes */
    CHECK(r.action == DFU_MODEL_REPLY && r.len == 3);
    CHECK(raw(m, 0, DFU_REQ_ABORT, 0, NULL, 0).action == DFU_MODEL_REPLY);
    CHECK(model_state(m) == DFU_STATE_DFU_IDLE);

    /* Requests dfuIDLE does not take: STALL, dfuERROR, errSTALLEDPKT (A.2.3). */
    static const uint8_t refused[] = {DFU_REQ_CLRSTATUS, DFU_REQ_DETACH, DFU_REQ_UPLOAD,
                                      DFU_REQ_DNLOAD /* zero length */, 7 /* unknown */};
    for (size_t i = 0; i < ELEMENTSOF(refused); i++) {
        CHECK(raw(m, 0, refused[i], 0, NULL, 0).action == DFU_MODEL_STALL);
        CHECK(model_state(m) == DFU_STATE_ERROR);
        CHECK(model_status(m) == DFU_STATUS_ERR_STALLEDPKT);
        r = raw(m, 0, DFU_REQ_GETSTATUS, 0, NULL, 6);
        CHECK(r.buf[0] == DFU_STATUS_ERR_STALLEDPKT && r.buf[4] == DFU_STATE_ERROR);
        /* dfuERROR refuses ABORT too and stays (A.2.11), CLRSTATUS leaves it. */
        CHECK(raw(m, 0, DFU_REQ_ABORT, 0, NULL, 0).action == DFU_MODEL_STALL);
        CHECK(model_state(m) == DFU_STATE_ERROR);
        CHECK(raw(m, 0, DFU_REQ_CLRSTATUS, 0, NULL, 0).action == DFU_MODEL_REPLY);
        CHECK(model_state(m) == DFU_STATE_DFU_IDLE && model_status(m) == DFU_STATUS_OK);
    }
    /* A block larger than wTransferSize, and a request in the wrong direction. */
    CHECK(dfu_model_control(m, 0, DFU_RT_OUT, DFU_REQ_DNLOAD, 0, big, sizeof(big), &r.len,
                            &r.delay) == DFU_MODEL_STALL);
    CHECK(model_state(m) == DFU_STATE_ERROR);
    CHECK(raw(m, 0, DFU_REQ_CLRSTATUS, 0, NULL, 0).action == DFU_MODEL_REPLY);
    CHECK(dfu_model_control(m, 0, DFU_RT_OUT, DFU_REQ_GETSTATUS, 0, big, 6, &r.len, &r.delay) ==
          DFU_MODEL_STALL);
    CHECK(model_state(m) == DFU_STATE_ERROR);

    DfuModelStats st;
    dfu_model_stats(m, &st);
    CHECK(st.attempts == 0 && st.detaches == 1 && st.clrstatus == 7 && st.aborts == 6);
}

static void test_model_download_states(T *t)
{
    DfuModelConfig c = rom();
    _cleanup_(dfu_model_freep) DfuModel *m = NULL;
    uint8_t block[TS] = {0};
    DfuModelStats st;
    Raw r;

    c.poll_timeout_ms = 0x012345; /* all three bytes of bwPollTimeout differ */
    m = dfu_model_new(&c);
    CHECK(m);
    CHECK(raw(m, 100, DFU_REQ_DNLOAD, 0, block, TS).action == DFU_MODEL_REPLY);
    CHECK(model_state(m) == DFU_STATE_DNLOAD_SYNC);
    r = raw(m, 100, DFU_REQ_GETSTATE, 0, NULL, 1);
    CHECK(r.buf[0] == DFU_STATE_DNLOAD_SYNC);
    r = raw(m, 100, DFU_REQ_GETSTATUS, 0, NULL, 6);
    CHECK(r.len == 6 && r.buf[0] == 0 && r.buf[1] == 0x45 && r.buf[2] == 0x23 && r.buf[3] == 0x01 &&
          r.buf[4] == DFU_STATE_DNBUSY && r.buf[5] == 0);
    /* Early: still busy, the time left reported, counted. */
    r = raw(m, 100 + 0x012345 - 5, DFU_REQ_GETSTATUS, 0, NULL, 6);
    CHECK(r.buf[4] == DFU_STATE_DNBUSY && r.buf[1] == 5 && r.buf[2] == 0 && r.buf[3] == 0);
    dfu_model_stats(m, &st);
    CHECK(st.early_polls == 1);
    /* After the deadline the board is back in dfuDNLOAD-SYNC (A.2.5) ... */
    r = raw(m, 100 + 0x012345 + 10, DFU_REQ_GETSTATE, 0, NULL, 1);
    CHECK(r.buf[0] == DFU_STATE_DNLOAD_SYNC);
    /* ... and the next GETSTATUS finds the block done; it came 10 ms late. */
    r = raw(m, 100 + 0x012345 + 10, DFU_REQ_GETSTATUS, 0, NULL, 6);
    CHECK(r.buf[4] == DFU_STATE_DNLOAD_IDLE && r.buf[1] == 0);
    dfu_model_stats(m, &st);
    CHECK(st.max_poll_late_ms == 10 && st.early_polls == 1);
    CHECK(st.asked_ms == 0x012345 + 5);
    /* dfuDNLOAD-IDLE: ABORT ends the attempt (A.2.6). */
    CHECK(raw(m, 0, DFU_REQ_ABORT, 0, NULL, 0).action == DFU_MODEL_REPLY);
    CHECK(model_state(m) == DFU_STATE_DFU_IDLE);
    /* Busy refuses anything but GETSTATUS. */
    CHECK(raw(m, 0, DFU_REQ_DNLOAD, 0, block, TS).action == DFU_MODEL_REPLY);
    CHECK(raw(m, 0, DFU_REQ_GETSTATUS, 0, NULL, 6).buf[4] == DFU_STATE_DNBUSY);
    CHECK(raw(m, 1, DFU_REQ_GETSTATE, 0, NULL, 1).action == DFU_MODEL_STALL);
    CHECK(model_state(m) == DFU_STATE_ERROR);
    CHECK(raw(m, 1, DFU_REQ_CLRSTATUS, 0, NULL, 0).action == DFU_MODEL_REPLY);
    /* dfuDNLOAD-SYNC refuses anything but GETSTATUS/GETSTATE. */
    CHECK(raw(m, 0, DFU_REQ_DNLOAD, 0, block, TS).action == DFU_MODEL_REPLY);
    CHECK(raw(m, 0, DFU_REQ_ABORT, 0, NULL, 0).action == DFU_MODEL_STALL);
    CHECK(model_state(m) == DFU_STATE_ERROR);
    dfu_model_stats(m, &st);
    CHECK(st.attempts == 3);
}

static void test_model_block_numbers(T *t)
{
    DfuModelConfig c = rom();
    _cleanup_(dfu_model_freep) DfuModel *m = NULL;
    uint8_t block[TS] = {0};
    Raw r;

    c.poll_timeout_ms = 0;
    m = dfu_model_new(&c);
    CHECK(m);
    CHECK(raw(m, 0, DFU_REQ_DNLOAD, 0, block, TS).action == DFU_MODEL_REPLY);
    CHECK(raw(m, 0, DFU_REQ_GETSTATUS, 0, NULL, 6).buf[4] == DFU_STATE_DNLOAD_IDLE);
    /* Block 1 sent as 5: accepted on the bus, refused by the GETSTATUS after it. */
    CHECK(raw(m, 0, DFU_REQ_DNLOAD, 5, block, TS).action == DFU_MODEL_REPLY);
    r = raw(m, 0, DFU_REQ_GETSTATUS, 0, NULL, 6);
    CHECK(r.buf[0] == DFU_STATUS_ERR_ADDRESS && r.buf[4] == DFU_STATE_ERROR);
    /* An attempt that does not start at block 0. */
    CHECK(raw(m, 0, DFU_REQ_CLRSTATUS, 0, NULL, 0).action == DFU_MODEL_REPLY);
    CHECK(raw(m, 0, DFU_REQ_DNLOAD, 1, block, TS).action == DFU_MODEL_REPLY);
    CHECK(raw(m, 0, DFU_REQ_GETSTATUS, 0, NULL, 6).buf[0] == DFU_STATUS_ERR_ADDRESS);
}

static void test_model_max_payload(T *t)
{
    DfuModelConfig c = rom();
    _cleanup_(dfu_model_freep) DfuModel *m = NULL;
    uint8_t block[TS] = {0};

    c.poll_timeout_ms = 0;
    c.max_payload = 100;
    m = dfu_model_new(&c);
    CHECK(m);
    CHECK(raw(m, 0, DFU_REQ_DNLOAD, 0, block, TS).action == DFU_MODEL_REPLY);
    CHECK(raw(m, 0, DFU_REQ_GETSTATUS, 0, NULL, 6).buf[4] == DFU_STATE_DNLOAD_IDLE);
    CHECK(raw(m, 0, DFU_REQ_DNLOAD, 1, block, TS).action == DFU_MODEL_REPLY);
    CHECK(raw(m, 0, DFU_REQ_GETSTATUS, 0, NULL, 6).buf[0] == DFU_STATUS_ERR_ADDRESS);
}

static void test_model_faults(T *t)
{
    DfuModelConfig c = rom();
    _cleanup_(dfu_model_freep) DfuModel *m = NULL;
    uint8_t block[TS] = {0};
    Raw r;

    c.poll_timeout_ms = 0;
    c.faults.error_at_block = 0;
    c.faults.error_status = 0; /* no status given: errUNKNOWN */
    c.faults.hang_at_block = 1;
    c.faults.fault_attempts = 2;
    m = dfu_model_new(&c);
    CHECK(m);
    for (int attempt = 1; attempt <= 3; attempt++) {
        CHECK(raw(m, 0, DFU_REQ_DNLOAD, 0, block, TS).action == DFU_MODEL_REPLY);
        r = raw(m, 0, DFU_REQ_GETSTATUS, 0, NULL, 6);
        if (attempt <= 2) {
            CHECK(r.buf[0] == DFU_STATUS_ERR_UNKNOWN && r.buf[4] == DFU_STATE_ERROR);
            CHECK(raw(m, 0, DFU_REQ_CLRSTATUS, 0, NULL, 0).action == DFU_MODEL_REPLY);
        } else {
            CHECK(r.buf[0] == DFU_STATUS_OK && r.buf[4] == DFU_STATE_DNLOAD_IDLE);
        }
    }
    /* The third attempt is past fault_attempts: block 1 does not hang. */
    CHECK(raw(m, 0, DFU_REQ_DNLOAD, 1, block, TS).action == DFU_MODEL_REPLY);
    CHECK(raw(m, 0, DFU_REQ_GETSTATUS, 0, NULL, 6).action == DFU_MODEL_REPLY);

    /* A hang wedges the board until a reset. */
    m = dfu_model_free(m);
    c.faults.error_at_block = -1;
    c.faults.fault_attempts = 0;
    m = dfu_model_new(&c);
    CHECK(m);
    CHECK(raw(m, 0, DFU_REQ_DNLOAD, 0, block, TS).action == DFU_MODEL_REPLY);
    CHECK(raw(m, 0, DFU_REQ_GETSTATUS, 0, NULL, 6).action == DFU_MODEL_REPLY);
    CHECK(raw(m, 0, DFU_REQ_DNLOAD, 1, block, TS).action == DFU_MODEL_REPLY);
    CHECK(raw(m, 0, DFU_REQ_GETSTATUS, 0, NULL, 6).action == DFU_MODEL_HANG);
    CHECK(raw(m, 0, DFU_REQ_GETSTATE, 0, NULL, 1).action == DFU_MODEL_HANG);
    dfu_model_reset(m);
    r = raw(m, 0, DFU_REQ_GETSTATUS, 0, NULL, 6);
    CHECK(r.action == DFU_MODEL_REPLY && r.buf[4] == DFU_STATE_DFU_IDLE);

    /* An unplug is for good, reset or not. */
    m = dfu_model_free(m);
    c.faults.hang_at_block = -1;
    c.faults.unplug_at_block = 0;
    m = dfu_model_new(&c);
    CHECK(m);
    CHECK(raw(m, 0, DFU_REQ_DNLOAD, 0, block, TS).action == DFU_MODEL_UNPLUG);
    CHECK(raw(m, 0, DFU_REQ_GETSTATUS, 0, NULL, 6).action == DFU_MODEL_UNPLUG);
    dfu_model_reset(m);
    CHECK(raw(m, 0, DFU_REQ_GETSTATE, 0, NULL, 1).action == DFU_MODEL_UNPLUG);
}

static void test_model_runtime(T *t)
{
    DfuModelConfig c = rom();
    _cleanup_(dfu_model_freep) DfuModel *m = NULL;
    DfuModelStats st;
    Raw r;

    c.runtime = true;
    m = dfu_model_new(&c);
    CHECK(m);
    r = raw(m, 0, DFU_REQ_GETSTATUS, 0, NULL, 6);
    CHECK(r.action == DFU_MODEL_REPLY && r.buf[4] == DFU_STATE_APP_IDLE);
    CHECK(raw(m, 0, DFU_REQ_CLRSTATUS, 0, NULL, 0).action == DFU_MODEL_STALL);
    CHECK(model_state(m) == DFU_STATE_APP_IDLE);
    dfu_model_reset(m); /* no DETACH before it: the application stays */
    CHECK(model_state(m) == DFU_STATE_APP_IDLE);
    CHECK(raw(m, 0, DFU_REQ_DETACH, 1000, NULL, 0).action == DFU_MODEL_STALL);
    CHECK(model_state(m) == DFU_STATE_APP_DETACH);
    CHECK(raw(m, 0, DFU_REQ_GETSTATE, 0, NULL, 1).buf[0] == DFU_STATE_APP_DETACH);
    CHECK(raw(m, 0, DFU_REQ_ABORT, 0, NULL, 0).action == DFU_MODEL_STALL);
    CHECK(model_state(m) == DFU_STATE_APP_IDLE); /* A.2.2 */
    CHECK(raw(m, 0, DFU_REQ_DETACH, 1000, NULL, 0).action == DFU_MODEL_STALL);
    dfu_model_reset(m);
    CHECK(model_state(m) == DFU_STATE_DFU_IDLE);
    /* DETACH on the DFU-mode interface: stalled, dfuERROR. */
    CHECK(raw(m, 0, DFU_REQ_DETACH, 1000, NULL, 0).action == DFU_MODEL_STALL);
    CHECK(model_state(m) == DFU_STATE_ERROR);
    dfu_model_stats(m, &st);
    CHECK(st.detaches == 3 && st.resets == 2);
}

/* Garbage through the CPIO walk: no erase, no crash, errVERIFY at the end. */
static void test_model_garbage(T *t)
{
    DfuModelConfig c = rom();
    _cleanup_(dfu_model_freep) DfuModel *m = NULL;
    /* A well-formed newc header whose namesize (0x7fffffff) no image has. */
    static const char header[] = "070701"
                                 "00000000000081a4000000000000000000000000000000000000000a"
                                 "00000000000000000000000000000000"
                                 "7fffffff00000000";
    uint8_t block[TS];
    DfuModelStats st;
    uint16_t num = 0;
    Raw r;

    c.poll_timeout_ms = 0;
    m = dfu_model_new(&c);
    CHECK(m && sizeof(header) - 1 == 110);
    CHECK(raw(m, 0, DFU_REQ_DNLOAD, num++, header, TS).action == DFU_MODEL_REPLY);
    CHECK(raw(m, 0, DFU_REQ_GETSTATUS, 0, NULL, 6).buf[4] == DFU_STATE_DNLOAD_IDLE);
    CHECK(raw(m, 0, DFU_REQ_DNLOAD, num++, header + TS, 110 - TS).action == DFU_MODEL_REPLY);
    CHECK(raw(m, 0, DFU_REQ_GETSTATUS, 0, NULL, 6).buf[4] == DFU_STATE_DNLOAD_IDLE);
    for (uint16_t i = 0; i < 200; i++) {
        fill(block, sizeof(block), i);
        CHECK(raw(m, 0, DFU_REQ_DNLOAD, num++, block, (uint16_t)(1 + i % TS)).action ==
              DFU_MODEL_REPLY);
        r = raw(m, 0, DFU_REQ_GETSTATUS, 0, NULL, 6);
        CHECK(r.delay == 0 && r.buf[4] == DFU_STATE_DNLOAD_IDLE);
    }
    CHECK(raw(m, 0, DFU_REQ_DNLOAD, num, NULL, 0).action == DFU_MODEL_REPLY);
    r = raw(m, 0, DFU_REQ_GETSTATUS, 0, NULL, 6);
    CHECK(r.buf[0] == DFU_STATUS_ERR_VERIFY && r.buf[4] == DFU_STATE_ERROR);
    dfu_model_stats(m, &st);
    CHECK(st.erases == 0 && !st.validated && st.downloads_ok == 0);

    /* Random bytes from the first byte on. */
    m = dfu_model_free(m);
    m = dfu_model_new(&c);
    CHECK(m);
    for (uint16_t i = 0; i < 300; i++) {
        fill(block, sizeof(block), 1000u + i);
        if (i % 7 == 0)
            memcpy(block, "070701", 6);
        CHECK(raw(m, 0, DFU_REQ_DNLOAD, i, block, (uint16_t)(1 + (i * 13) % TS)).action ==
              DFU_MODEL_REPLY);
        CHECK(raw(m, 0, DFU_REQ_GETSTATUS, 0, NULL, 6).delay == 0);
    }
    dfu_model_stats(m, &st);
    CHECK(st.erases == 0);
}

static void test_model_wait_reset_state(T *t)
{
    DfuModelConfig c = rom();
    _cleanup_(dfu_model_freep) DfuModel *m = NULL;
    _cleanup_free_ uint8_t *p = NULL;
    size_t n = 0;
    Raw r;

    c.poll_timeout_ms = 0;
    c.manifest_wait_reset = true;
    p = load_fixture(&n);
    m = dfu_model_new(&c);
    CHECK(p && m);
    for (size_t off = 0; off < n; off += TS) {
        CHECK(raw(m, 0, DFU_REQ_DNLOAD, (uint16_t)(off / TS), p + off, TS).action ==
              DFU_MODEL_REPLY);
        CHECK(raw(m, 0, DFU_REQ_GETSTATUS, 0, NULL, 6).buf[4] == DFU_STATE_DNLOAD_IDLE);
    }
    CHECK(raw(m, 0, DFU_REQ_DNLOAD, 0, NULL, 0).action == DFU_MODEL_REPLY);
    CHECK(model_state(m) == DFU_STATE_MANIFEST_SYNC);
    CHECK(raw(m, 0, DFU_REQ_GETSTATE, 0, NULL, 1).buf[0] == DFU_STATE_MANIFEST_SYNC);
    r = raw(m, 0, DFU_REQ_GETSTATUS, 0, NULL, 6);
    CHECK(r.buf[0] == DFU_STATUS_OK && r.buf[4] == DFU_STATE_MANIFEST_WAIT_RESET);
    /* Waiting for a reset: nothing else moves it. */
    CHECK(raw(m, 0, DFU_REQ_CLRSTATUS, 0, NULL, 0).action == DFU_MODEL_STALL);
    CHECK(model_state(m) == DFU_STATE_MANIFEST_WAIT_RESET);
    dfu_model_reset(m);
    CHECK(model_state(m) == DFU_STATE_DFU_IDLE);
}

/* ---- the engine against the model ---- */

static void test_happy_fixture(T *t)
{
    _cleanup_(bench_done) Bench b = {0};
    _cleanup_free_ uint8_t *p = NULL;
    DfuModelConfig c = rom();
    DfuModelStats st;
    size_t n = 0;

    CHECK(bench_init(&b, &c));
    p = load_fixture(&n);
    CHECK(p && n == 10240);
    b.s.cancel = NULL; /* whole sleeps, no slices */
    CHECK(download(t, &b, p, n) == 0);
    CHECK(received_is(&b, p, n));
    st = stats(&b);
    CHECK(st.downloads_ok == 1 && st.validated && st.attempts == 1);
    CHECK(st.state == DFU_STATE_DFU_IDLE && st.status == DFU_STATUS_OK);
    CHECK(st.erases == 3); /* 1.bin, 2.bin, 3.bin; not flash_params.dat */
    CHECK(st.early_polls == 0 && st.max_poll_late_ms == 0);
    CHECK(st.clrstatus == 0 && st.aborts == 0);
    CHECK(b.rep.blocks_sent == n / TS && b.rep.busy_polls == n / TS);
    CHECK(b.progress_calls == n / TS && b.progress_ok);
    CHECK(b.progress_sent == n && b.progress_total == n);
    CHECK(b.rep.phase == DFU_PHASE_MANIFEST && b.rep.transport_error == 0);
}

/* bwPollTimeout honoured exactly: no early poll, no late one, no time beyond what was asked. */
static void test_poll_timeout_exact(T *t)
{
    _cleanup_(bench_done) Bench b = {0};
    _cleanup_free_ uint8_t *p = NULL;
    DfuModelConfig c = rom();
    DfuModelStats st;
    uint64_t start;
    size_t n = 0;

    c.poll_timeout_ms = 237; /* over two 100 ms sleep slices */
    c.erase_ms = 40;
    c.manifest_polls = 3;
    CHECK(bench_init(&b, &c));
    p = make_image(100000, &n);
    CHECK(p);
    start = b.now;
    CHECK(download(t, &b, p, n) == 0);
    CHECK(received_is(&b, p, n));
    st = stats(&b);
    CHECK(st.early_polls == 0 && st.max_poll_late_ms == 0);
    CHECK(b.now - start == st.asked_ms);
    /* flash_params.dat, bootloader, table, app: three erases. */
    CHECK(st.erases == 3);
    CHECK(st.asked_ms == (uint64_t)(n / TS + (n % TS != 0)) * 237 + 3 * 40 + 3 * 237);
    CHECK(st.downloads_ok == 1);
}

/* wBlockNum wraps from 0xffff to 0: more than 65536 blocks. */
static void test_block_wrap(T *t)
{
    _cleanup_(bench_done) Bench b = {0};
    _cleanup_free_ uint8_t *p = NULL;
    DfuModelConfig c = rom();
    DfuModelStats st;
    size_t n = 0;

    c.transfer_size = 16;
    c.poll_timeout_ms = 0;
    CHECK(bench_init(&b, &c));
    p = make_image(1100000, &n);
    CHECK(p && n / 16 > 65536);
    CHECK(download(t, &b, p, n) == 0);
    CHECK(b.value0 == 2 && b.value_ffff == 1); /* block 0, then block 65536 */
    CHECK(received_is(&b, p, n));
    st = stats(&b);
    CHECK(st.downloads_ok == 1 && st.validated);
    CHECK(st.erases == 5); /* app.bin is three 512 KiB parts */
    CHECK(b.rep.blocks_sent == (n + 15) / 16);
}

/* The ROM's 8 s erase: fine with our 30 s default, fatal with dfu-util's 5 s. */
static void test_erase_stall(T *t)
{
    _cleanup_(bench_done) Bench b = {0};
    _cleanup_free_ uint8_t *p = NULL, *img = NULL;
    DfuModelConfig c = rom();
    Image *image = NULL;
    ErrInfo e;
    size_t n = 0, first;

    c.erase_ms = 8000;
    CHECK(bench_init(&b, &c));
    p = load_fixture(&n);
    CHECK(p);
    CHECK(download(t, &b, p, n) == 0);
    CHECK(stats(&b).downloads_ok == 1);
    bench_done(&b);

    /* Which block holds 1.bin's first byte: the one dfu-util times out on. */
    img = malloc(n + IMAGE_SUFFIX_SIZE);
    CHECK(img);
    {
        _cleanup_close_ int fd = open(FIXTURE, O_RDONLY | O_CLOEXEC);
        CHECK(fd >= 0 && read(fd, img, n + IMAGE_SUFFIX_SIZE) == (ssize_t)(n + 16));
    }
    CHECK(image_parse(img, n + IMAGE_SUFFIX_SIZE, &image, &e) == 0);
    first = image->entries[1].data_offset;
    CHECK(strcmp(image->entries[1].name, "1.bin") == 0);
    image = image_free(image);

    CHECK(bench_init(&b, &c));
    b.s.config.transfer_timeout_ms = 5000;
    CHECK(download(t, &b, p, n) == -ETIMEDOUT);
    CHECK(t->err.code == ERR_USB_TIMEOUT);
    CHECK(b.rep.block == first / TS && b.rep.offset == first / TS * TS);
    CHECK(b.rep.phase == DFU_PHASE_DOWNLOAD && b.rep.transport_error == -ETIMEDOUT);
    CHECK_CONTAINS(t->err.message, "GETSTATUS timed out after 5000 ms during download");
    CHECK_CONTAINS(t->err.message, ": ETIMEDOUT"); /* no transport names: errno's */
}

static void test_dnbusy_timeout(T *t)
{
    _cleanup_(bench_done) Bench b = {0};
    _cleanup_free_ uint8_t *p = NULL;
    DfuModelConfig c = rom();
    size_t n = 0;

    c.poll_timeout_ms = 1000;
    c.faults.busy_at_block = 5;
    CHECK(bench_init(&b, &c));
    b.s.config.dnbusy_timeout_ms = 10000;
    p = load_fixture(&n);
    CHECK(p);
    CHECK(download(t, &b, p, n) == -ETIMEDOUT);
    CHECK(t->err.code == ERR_DNBUSY_TIMEOUT);
    CHECK(b.rep.block == 5 && b.rep.blocks_sent == 5);
    CHECK(b.rep.busy_polls == 5 + 11); /* one per block before; 0, 1000, ... 10000 ms */
    CHECK(b.rep.dfu_state == DFU_STATE_DNBUSY);
    CHECK_CONTAINS(t->err.message, "still busy after 10000 ms");
    CHECK_CONTAINS(t->err.message, "block 5,");
}

static void test_error_status(T *t)
{
    _cleanup_(bench_done) Bench b = {0};
    _cleanup_free_ uint8_t *p = NULL;
    DfuModelConfig c = rom();
    size_t n = 0;

    c.faults.error_at_block = 7;
    c.faults.error_status = DFU_STATUS_ERR_WRITE;
    CHECK(bench_init(&b, &c));
    p = load_fixture(&n);
    CHECK(p);
    CHECK(download(t, &b, p, n) == -EIO);
    CHECK(t->err.code == ERR_DFU_STATUS);
    CHECK(b.rep.block == 7 && b.rep.offset == 7 * TS && b.rep.phase == DFU_PHASE_DOWNLOAD);
    CHECK(b.rep.dfu_status == DFU_STATUS_ERR_WRITE && b.rep.dfu_state == DFU_STATE_ERROR);
    CHECK(b.rep.transport_error == 0);
    CHECK(strcmp(t->err.message, "board reported errWRITE (dfuERROR) during download at 4% "
                                 "(block 7, offset 0x1c0)") == 0);
}

static void test_stall_block(T *t)
{
    _cleanup_(bench_done) Bench b = {0};
    _cleanup_free_ uint8_t *p = NULL;
    DfuModelConfig c = rom();
    size_t n = 0;

    c.faults.stall_at_block = 4;
    CHECK(bench_init(&b, &c));
    b.libusb_names = true;
    p = load_fixture(&n);
    CHECK(p);
    CHECK(download(t, &b, p, n) == -EPIPE);
    CHECK(t->err.code == ERR_USB_STALL);
    CHECK(b.rep.block == 4 && b.rep.transport_error == -EPIPE);
    CHECK(b.rep.dfu_status == DFU_STATUS_ERR_STALLEDPKT);
    CHECK_CONTAINS(t->err.message, "board stalled DNLOAD (LIBUSB_ERROR_PIPE)");
    CHECK_CONTAINS(t->err.message, "errSTALLEDPKT (dfuERROR)");
    CHECK_CONTAINS(t->err.message, "block 4,");
    CHECK(stats(&b).state == DFU_STATE_ERROR);
}

/* A block sent with a wrong number; a stall the board does not explain. */
static void test_wrong_block_and_stall(T *t)
{
    _cleanup_(bench_done) Bench b = {0};
    _cleanup_free_ uint8_t *p = NULL;
    DfuModelConfig c = rom();
    size_t n = 0;

    c.poll_timeout_ms = 0;
    CHECK(bench_init(&b, &c));
    p = load_fixture(&n);
    CHECK(p);
    /* The board takes block 9 with a wrong number and refuses it: errADDRESS. */
    b.corrupt_block = 10;
    CHECK(download(t, &b, p, n) == -EIO);
    CHECK(t->err.code == ERR_DFU_STATUS && b.rep.block == 9);
    CHECK_CONTAINS(t->err.message, "errADDRESS");
    bench_done(&b);

    /* A STALL while the board says all is well. */
    CHECK(bench_init(&b, &c));
    b.inject_req = DFU_REQ_DNLOAD;
    b.inject_err = -EPIPE;
    b.inject_skip = 3;
    CHECK(download(t, &b, p, n) == -EPIPE);
    CHECK(t->err.code == ERR_USB_STALL && b.rep.block == 3);
    CHECK(b.rep.dfu_status == DFU_STATUS_OK && b.rep.transport_error == -EPIPE);
    CHECK_CONTAINS(t->err.message, "board stalled DNLOAD during download");
    CHECK_CONTAINS(t->err.message, ": EPIPE");
}

static void test_hang(T *t)
{
    _cleanup_(bench_done) Bench b = {0};
    _cleanup_free_ uint8_t *p = NULL;
    DfuModelConfig c = rom();
    uint64_t start;
    size_t n = 0;

    c.faults.hang_at_block = 3;
    c.faults.fault_attempts = 1;
    CHECK(bench_init(&b, &c));
    p = load_fixture(&n);
    CHECK(p);
    start = b.now;
    CHECK(download(t, &b, p, n) == -ETIMEDOUT);
    CHECK(t->err.code == ERR_USB_TIMEOUT && b.rep.block == 3);
    CHECK(b.now - start >= 30000);
    CHECK_CONTAINS(t->err.message, "GETSTATUS timed out after 30000 ms");
    /* Wedged: the next job fails in prepare, a reset brings it back. */
    CHECK(download(t, &b, p, n) == -ETIMEDOUT);
    CHECK(b.rep.phase == DFU_PHASE_PREPARE);
    CHECK_CONTAINS(t->err.message, "during prepare");
    dfu_model_reset(b.model);
    CHECK(download(t, &b, p, n) == 0);
    CHECK(received_is(&b, p, n));
}

static void test_unplug(T *t)
{
    _cleanup_(bench_done) Bench b = {0};
    _cleanup_free_ uint8_t *p = NULL;
    DfuModelConfig c = rom();
    size_t n = 0;

    c.faults.unplug_at_block = 60; /* offset 3840 of 10240: 37% */
    CHECK(bench_init(&b, &c));
    p = load_fixture(&n);
    CHECK(p);
    CHECK(download(t, &b, p, n) == -ENODEV);
    CHECK(t->err.code == ERR_DISCONNECTED);
    CHECK(b.rep.block == 60 && b.rep.offset == 0xf00 && b.rep.blocks_sent == 60);
    CHECK(b.rep.transport_error == -ENODEV);
    CHECK(strcmp(t->err.message, "board disconnected on DNLOAD during download at 37% "
                                 "(block 60, offset 0xf00): ENODEV") == 0);
    b.libusb_names = true;
    CHECK(download(t, &b, p, n) == -ENODEV);
    CHECK(strcmp(t->err.message,
                 "board disconnected on GETSTATUS during prepare: LIBUSB_ERROR_NO_DEVICE") == 0);
}

/* A fault in the first attempt only: the next dfu_download() recovers the board. */
static void test_retry_after_fault(T *t)
{
    _cleanup_(bench_done) Bench b = {0};
    _cleanup_free_ uint8_t *p = NULL;
    DfuModelConfig c = rom();
    DfuModelStats st;
    size_t n = 0;

    p = load_fixture(&n);
    CHECK(p);
    c.faults.error_at_block = 2;
    c.faults.fault_attempts = 1;
    CHECK(bench_init(&b, &c));
    CHECK(download(t, &b, p, n) < 0 && t->err.code == ERR_DFU_STATUS);
    CHECK(download(t, &b, p, n) == 0);
    st = stats(&b);
    CHECK(st.attempts == 2 && st.downloads_ok == 1 && st.clrstatus == 1);
    CHECK(received_is(&b, p, n));
    bench_done(&b);

    c.faults.error_at_block = -1;
    c.faults.stall_at_block = 100;
    CHECK(bench_init(&b, &c));
    CHECK(download(t, &b, p, n) < 0 && t->err.code == ERR_USB_STALL);
    CHECK(download(t, &b, p, n) == 0);
    CHECK(stats(&b).clrstatus == 1 && received_is(&b, p, n));
}

static void test_prepare_from_error(T *t)
{
    _cleanup_(bench_done) Bench b = {0};
    _cleanup_free_ uint8_t *p = NULL;
    DfuModelConfig c = rom();
    uint16_t len;
    uint32_t delay;
    size_t n = 0;

    CHECK(bench_init(&b, &c));
    p = load_fixture(&n);
    CHECK(p);
    CHECK(dfu_model_control(b.model, b.now, DFU_RT_IN, DFU_REQ_UPLOAD, 0, NULL, 0, &len, &delay) ==
          DFU_MODEL_STALL);
    CHECK(stats(&b).state == DFU_STATE_ERROR);
    CHECK(download(t, &b, p, n) == 0);
    CHECK(stats(&b).clrstatus == 1 && stats(&b).aborts == 0);
    CHECK(received_is(&b, p, n));
}

static void test_prepare_from_dnload_idle(T *t)
{
    _cleanup_(bench_done) Bench b = {0};
    _cleanup_free_ uint8_t *p = NULL;
    DfuModelConfig c = rom();
    uint8_t buf[6];
    uint16_t len;
    uint32_t delay;
    size_t n = 0;

    CHECK(bench_init(&b, &c));
    p = load_fixture(&n);
    CHECK(p);
    /* Someone else's download, left half done. */
    CHECK(dfu_model_control(b.model, b.now, DFU_RT_OUT, DFU_REQ_DNLOAD, 0, p + 64, TS, &len,
                            &delay) == DFU_MODEL_REPLY);
    dfu_model_control(b.model, b.now, DFU_RT_IN, DFU_REQ_GETSTATUS, 0, buf, 6, &len, &delay);
    b.now += c.poll_timeout_ms;
    dfu_model_control(b.model, b.now, DFU_RT_IN, DFU_REQ_GETSTATUS, 0, buf, 6, &len, &delay);
    CHECK(stats(&b).state == DFU_STATE_DNLOAD_IDLE);
    CHECK(download(t, &b, p, n) == 0);
    CHECK(stats(&b).aborts == 1 && stats(&b).clrstatus == 0 && stats(&b).attempts == 2);
    CHECK(received_is(&b, p, n));
}

static void test_prepare_from_upload_idle(T *t)
{
    _cleanup_(bench_done) Bench b = {0};
    _cleanup_free_ uint8_t *p = NULL;
    DfuModelConfig c = rom();
    size_t n = 0;

    CHECK(bench_init(&b, &c));
    p = load_fixture(&n);
    CHECK(p);
    force(&b, 0, 1, DFU_STATE_UPLOAD_IDLE, -1);
    CHECK(download(t, &b, p, n) == 0);
    CHECK(stats(&b).aborts == 1);

    /* ABORT that does not bring the board to dfuIDLE. */
    force(&b, 0, 2, DFU_STATE_UPLOAD_IDLE, -1);
    CHECK(download(t, &b, p, n) == -EIO);
    CHECK(t->err.code == ERR_DFU_STATE && b.rep.phase == DFU_PHASE_PREPARE);
    CHECK(strcmp(t->err.message, "board is in dfuUPLOAD-IDLE, expected dfuIDLE, during prepare") ==
          0);
}

static void test_prepare_impossible_state(T *t)
{
    _cleanup_(bench_done) Bench b = {0};
    _cleanup_free_ uint8_t *p = NULL;
    DfuModelConfig c = rom();
    size_t n = 0;

    CHECK(bench_init(&b, &c));
    p = load_fixture(&n);
    CHECK(p);
    force(&b, 0, 1, DFU_STATE_APP_IDLE, -1);
    CHECK(download(t, &b, p, n) == -EIO);
    CHECK(t->err.code == ERR_DFU_STATE && b.rep.dfu_state == DFU_STATE_APP_IDLE);
    CHECK_CONTAINS(t->err.message, "board is in appIDLE");
    force(&b, 0, 1, 42, -1);
    CHECK(download(t, &b, p, n) == -EIO);
    CHECK_CONTAINS(t->err.message, "board is in state 42");
    force(&b, 0, 1, DFU_STATE_MANIFEST_WAIT_RESET, -1);
    CHECK(download(t, &b, p, n) == -EIO);
    CHECK_CONTAINS(t->err.message, "dfuMANIFEST-WAIT-RESET");
    CHECK(stats(&b).aborts == 0 && stats(&b).clrstatus == 0 && stats(&b).attempts == 0);
    /* The CLRSTATUS itself refused. */
    force(&b, 0, 1, DFU_STATE_ERROR, -1);
    b.inject_req = DFU_REQ_CLRSTATUS;
    b.inject_err = -EPIPE;
    CHECK(download(t, &b, p, n) == -EPIPE);
    CHECK(t->err.code == ERR_USB_STALL);
    CHECK_CONTAINS(t->err.message, "board stalled CLRSTATUS during prepare");
}

/* Answers a download should not get: an unknown bStatus, states out of sequence. */
static void test_unexpected_answers(T *t)
{
    _cleanup_(bench_done) Bench b = {0};
    _cleanup_free_ uint8_t *p = NULL;
    DfuModelConfig c = rom();
    size_t n = 0;

    CHECK(bench_init(&b, &c));
    p = load_fixture(&n);
    CHECK(p);
    force(&b, 1, 1, -1, 0x42); /* block 0's first GETSTATUS */
    CHECK(download(t, &b, p, n) == -EIO);
    CHECK(t->err.code == ERR_DFU_STATUS && b.rep.dfu_status == 0x42);
    CHECK(strcmp(t->err.message, "board reported status 0x42 (dfuDNBUSY) during download at 0% "
                                 "(block 0, offset 0x0)") == 0);
    bench_done(&b);

    CHECK(bench_init(&b, &c));
    force(&b, 1, 1, DFU_STATE_MANIFEST, -1);
    CHECK(download(t, &b, p, n) == -EIO);
    CHECK(t->err.code == ERR_DFU_STATE);
    CHECK_CONTAINS(t->err.message, "board is in dfuMANIFEST, expected dfuDNBUSY or "
                                   "dfuDNLOAD-IDLE, during download at 0% (block 0,");
    bench_done(&b);

    /* dfuDNLOAD-IDLE in answer to the zero-length DNLOAD. */
    CHECK(bench_init(&b, &c));
    force(&b, 1 + 2 * (unsigned)(n / TS), 1, DFU_STATE_DNLOAD_IDLE, -1);
    CHECK(download(t, &b, p, n) == -EIO);
    CHECK(t->err.code == ERR_DFU_STATE && b.rep.phase == DFU_PHASE_MANIFEST);
    CHECK_CONTAINS(t->err.message, "board is in dfuDNLOAD-IDLE, expected dfuMANIFEST or dfuIDLE");
    bench_done(&b);

    /* A busy board that says dfuDNLOAD-SYNC is polled like dfuDNBUSY. */
    CHECK(bench_init(&b, &c));
    force(&b, 1, 1, DFU_STATE_DNLOAD_SYNC, -1);
    CHECK(download(t, &b, p, n) == 0);
    CHECK(received_is(&b, p, n) && stats(&b).early_polls == 0);
}

static void test_short_status(T *t)
{
    _cleanup_(bench_done) Bench b = {0};
    _cleanup_free_ uint8_t *p = NULL;
    DfuModelConfig c = rom();
    size_t n = 0;

    CHECK(bench_init(&b, &c));
    p = load_fixture(&n);
    CHECK(p);
    b.short_status_at = 4; /* prepare, block 0 busy, block 0 idle, block 1 busy */
    b.short_len = 3;
    CHECK(download(t, &b, p, n) == -EIO);
    CHECK(t->err.code == ERR_USB_TRANSFER && b.rep.block == 1);
    CHECK(b.rep.transport_error == -EPROTO);
    CHECK(strcmp(t->err.message, "short GETSTATUS reply (3 of 6 bytes) during download at 0% "
                                 "(block 1, offset 0x40)") == 0);
    bench_done(&b);

    CHECK(bench_init(&b, &c));
    b.short_status_at = 1;
    b.short_len = 0;
    CHECK(download(t, &b, p, n) == -EIO);
    CHECK_CONTAINS(t->err.message, "short GETSTATUS reply (0 of 6 bytes) during prepare");
}

static void test_transport_errors(T *t)
{
    _cleanup_(bench_done) Bench b = {0};
    _cleanup_free_ uint8_t *p = NULL;
    DfuModelConfig c = rom();
    size_t n = 0;

    CHECK(bench_init(&b, &c));
    p = load_fixture(&n);
    CHECK(p);
    b.inject_req = DFU_REQ_DNLOAD;
    b.inject_err = -EIO;
    b.inject_skip = 80;
    CHECK(download(t, &b, p, n) == -EIO);
    CHECK(t->err.code == ERR_USB_TRANSFER && b.rep.transport_error == -EIO);
    CHECK(strcmp(t->err.message,
                 "DNLOAD failed during download at 50% (block 80, offset 0x1400): EIO") == 0);
    b.libusb_names = true;
    b.inject_skip = 0;
    b.inject_err = -EOVERFLOW;
    CHECK(download(t, &b, p, n) == -EIO);
    CHECK_CONTAINS(t->err.message, "DNLOAD failed during download at 0% (block 0, offset 0x0): "
                                   "LIBUSB_ERROR_IO");
    bench_done(&b);

    /* The board takes fewer bytes than sent. */
    CHECK(bench_init(&b, &c));
    b.short_dnload_at = 3;
    CHECK(download(t, &b, p, n) == -EIO);
    CHECK(t->err.code == ERR_USB_TRANSFER && b.rep.block == 2);
    CHECK_CONTAINS(t->err.message, "board took 63 of 64 bytes of DNLOAD");
}

static void test_invalid_image(T *t)
{
    _cleanup_(bench_done) Bench b = {0};
    _cleanup_free_ uint8_t *p = NULL;
    DfuModelConfig c = rom();
    DfuModelStats st;
    size_t n = 0;

    CHECK(bench_init(&b, &c));
    p = load_fixture(&n);
    CHECK(p);
    p[n - 10240 + 0x400] ^= 0x01; /* somewhere in 1.bin's data: its MD5 breaks */
    CHECK(download(t, &b, p, n) == -EIO);
    CHECK(t->err.code == ERR_DFU_STATUS && b.rep.phase == DFU_PHASE_MANIFEST);
    CHECK(b.rep.dfu_status == DFU_STATUS_ERR_VERIFY && b.rep.block == n / TS);
    CHECK(strcmp(t->err.message, "board reported errVERIFY (dfuERROR) during manifest at 100% "
                                 "(block 160, offset 0x2800)") == 0);
    st = stats(&b);
    CHECK(!st.validated && st.downloads_ok == 0 && st.state == DFU_STATE_ERROR);
    CHECK(received_is(&b, p, n)); /* sent right, the image itself is bad */
}

static void test_manifest_polls(T *t)
{
    _cleanup_(bench_done) Bench b = {0};
    _cleanup_free_ uint8_t *p = NULL;
    DfuModelConfig c = rom();
    DfuModelStats st;
    uint64_t start;
    size_t n = 0;

    c.poll_timeout_ms = 0;
    c.manifest_polls = 4;
    CHECK(bench_init(&b, &c));
    p = load_fixture(&n);
    CHECK(p);
    start = b.now;
    CHECK(download(t, &b, p, n) == 0);
    /* A board that asks 0 ms while manifesting gets the 100 ms floor. */
    CHECK(b.now - start == 3 * c.erase_ms + 4 * 100);
    st = stats(&b);
    CHECK(st.downloads_ok == 1 && st.state == DFU_STATE_DFU_IDLE);
}

static void test_manifest_timeout(T *t)
{
    _cleanup_(bench_done) Bench b = {0};
    _cleanup_free_ uint8_t *p = NULL;
    DfuModelConfig c = rom();
    size_t n = 0;
    unsigned before;

    c.manifest_polls = DFU_MODEL_FOREVER;
    c.poll_timeout_ms = 50;
    CHECK(bench_init(&b, &c));
    b.s.config.manifest_max_polls = 10;
    p = load_fixture(&n);
    CHECK(p);
    before = 1 + 2 * (unsigned)(n / TS);
    CHECK(download(t, &b, p, n) == -ETIMEDOUT);
    CHECK(t->err.code == ERR_MANIFEST_TIMEOUT && b.rep.phase == DFU_PHASE_MANIFEST);
    CHECK(b.getstatus - before == 10);
    CHECK(b.rep.dfu_state == DFU_STATE_MANIFEST);
    CHECK_CONTAINS(t->err.message, "still manifesting after 10 status polls during manifest");
    CHECK(stats(&b).early_polls == 0 && stats(&b).max_poll_late_ms == 0);
}

static void test_manifest_wait_reset(T *t)
{
    _cleanup_(bench_done) Bench b = {0};
    _cleanup_free_ uint8_t *p = NULL;
    DfuModelConfig c = rom();
    size_t n = 0;

    c.manifest_wait_reset = true;
    c.manifest_polls = 2;
    p = load_fixture(&n);
    CHECK(p);
    CHECK(bench_init(&b, &c));
    b.s.functional.attributes = DFU_ATTR_CAN_DNLOAD; /* not manifestation tolerant */
    CHECK(download(t, &b, p, n) == 0);
    CHECK(b.resets == 1 && stats(&b).resets == 1 && stats(&b).downloads_ok == 1);
    CHECK(stats(&b).state == DFU_STATE_DFU_IDLE);
    /* The reset makes the board leave: that is success too. */
    b.reset_result = -ENODEV;
    CHECK(download(t, &b, p, n) == 0);
    CHECK(b.resets == 2);
    /* No way to reset: done, the board waits for a replug. */
    b.tr.reset = NULL;
    CHECK(download(t, &b, p, n) == 0);
    CHECK(stats(&b).state == DFU_STATE_MANIFEST_WAIT_RESET);
    /* A reset that fails otherwise is an error. */
    dfu_model_reset(b.model);
    b.tr.reset = bench_reset;
    b.reset_result = -EIO;
    CHECK(download(t, &b, p, n) == -EIO);
    CHECK(t->err.code == ERR_USB_TRANSFER);
    CHECK_CONTAINS(t->err.message, "USB reset in dfuMANIFEST-WAIT-RESET failed during manifest");
}

/* The board vanishes once the zero-length DNLOAD is through. */
static void test_vanish_after_zlp(T *t)
{
    _cleanup_(bench_done) Bench b = {0};
    _cleanup_free_ uint8_t *p = NULL;
    DfuModelConfig c = rom();
    size_t n = 0;

    p = load_fixture(&n);
    CHECK(p);
    CHECK(bench_init(&b, &c));
    b.unplug_after_zlp = true;
    b.s.functional.attributes = DFU_ATTR_CAN_DNLOAD; /* DFU 1.1 section 7 allows it */
    CHECK(download(t, &b, p, n) == 0);
    bench_done(&b);

    CHECK(bench_init(&b, &c));
    b.unplug_after_zlp = true; /* a tolerant board must answer */
    CHECK(download(t, &b, p, n) == -ENODEV);
    CHECK(t->err.code == ERR_DISCONNECTED && b.rep.phase == DFU_PHASE_MANIFEST);
    CHECK(strcmp(t->err.message, "board disconnected on GETSTATUS during manifest at 100% "
                                 "(block 160, offset 0x2800): ENODEV") == 0);
    bench_done(&b);

    /* Gone before the zero-length DNLOAD went through: never a success. */
    CHECK(bench_init(&b, &c));
    b.s.functional.attributes = DFU_ATTR_CAN_DNLOAD;
    b.inject_req = DFU_REQ_DNLOAD;
    b.inject_err = -ENODEV;
    b.inject_skip = (unsigned)(n / TS);
    CHECK(download(t, &b, p, n) == -ENODEV);
    CHECK(b.rep.phase == DFU_PHASE_MANIFEST);
}

static void test_cancel_between_blocks(T *t)
{
    _cleanup_(bench_done) Bench b = {0};
    _cleanup_free_ uint8_t *p = NULL;
    DfuModelConfig c = rom();
    DfuModelStats st;
    size_t n = 0;

    CHECK(bench_init(&b, &c));
    p = load_fixture(&n);
    CHECK(p);
    b.cancel_after_bytes = 11 * TS;
    CHECK(download(t, &b, p, n) == -ECANCELED);
    CHECK(t->err.code == ERR_CANCELLED && b.rep.block == 11 && b.rep.blocks_sent == 11);
    CHECK(strcmp(t->err.message, "cancelled during download at 6% (block 11, offset 0x2c0)") == 0);
    st = stats(&b);
    CHECK(st.aborts == 1 && st.state == DFU_STATE_DFU_IDLE && st.downloads_ok == 0);
    /* The board is ready for the next job. */
    b.cancel_after_bytes = 0;
    atomic_store(&b.cancel, false);
    CHECK(download(t, &b, p, n) == 0);
    CHECK(received_is(&b, p, n) && stats(&b).clrstatus == 0);
}

/* A cancel while the board asks for 8 s is seen within one 100 ms slice. */
static void test_cancel_during_wait(T *t)
{
    _cleanup_(bench_done) Bench b = {0};
    _cleanup_free_ uint8_t *p = NULL;
    DfuModelConfig c = rom();
    size_t n = 0;

    c.poll_timeout_ms = 8000;
    c.erase_ms = 0;
    CHECK(bench_init(&b, &c));
    p = load_fixture(&n);
    CHECK(p);
    b.cancel_at = b.now + 8000 * 2 + 250; /* in the wait for block 2 */
    CHECK(download(t, &b, p, n) == -ECANCELED);
    CHECK(t->err.code == ERR_CANCELLED && b.rep.block == 2);
    CHECK(b.now >= b.cancel_at && b.now - b.cancel_at <= 100);
    CHECK(stats(&b).aborts == 1);
    /* ABORT while busy is refused (DFU 1.1 A.2.5); CLRSTATUS brings the board back. */
    CHECK(stats(&b).clrstatus == 1 && stats(&b).state == DFU_STATE_DFU_IDLE);
    b.cancel_at = 0;
    atomic_store(&b.cancel, false);
    CHECK(download(t, &b, p, n) == 0);
    CHECK(stats(&b).clrstatus == 1 && received_is(&b, p, n));
}

static void test_cancel_before_start(T *t)
{
    _cleanup_(bench_done) Bench b = {0};
    _cleanup_free_ uint8_t *p = NULL;
    DfuModelConfig c = rom();
    size_t n = 0;

    CHECK(bench_init(&b, &c));
    p = load_fixture(&n);
    CHECK(p);
    atomic_store(&b.cancel, true);
    CHECK(download(t, &b, p, n) == -ECANCELED);
    CHECK(b.rep.block == 0 && b.rep.blocks_sent == 0 && stats(&b).attempts == 0);
    CHECK_CONTAINS(t->err.message, "cancelled during download at 0% (block 0, offset 0x0)");
}

static void test_arguments(T *t)
{
    _cleanup_(bench_done) Bench b = {0};
    DfuModelConfig c = rom();
    uint8_t byte = 0;

    CHECK(bench_init(&b, &c));
    CHECK(download(t, &b, &byte, 0) == -EINVAL && t->err.code == ERR_IMAGE_EMPTY);
    b.s.functional.transfer_size = 0;
    CHECK(download(t, &b, &byte, 1) == -ENOTSUP && t->err.code == ERR_USB_NO_DFU);
    CHECK(dfu_download(NULL, &byte, 1, NULL, NULL) == -EINVAL);
    b.tr.sleep_ms = NULL;
    CHECK(dfu_download(&b.s, &byte, 1, NULL, NULL) == -EINVAL);
    CHECK(dfu_detach(&b.s, NULL) == -EINVAL);
    CHECK(stats(&b).requests == 0);
}

static void test_detach(T *t)
{
    _cleanup_(bench_done) Bench b = {0};
    DfuModelConfig c = rom();
    ErrInfo e = {0};

    c.runtime = true;
    /* bitWillDetach: the ROM stalls DETACH and re-enumerates by itself. */
    CHECK(bench_init(&b, &c));
    b.s.functional.detach_timeout_ms = 2500;
    CHECK(dfu_detach(&b.s, &e) == 1);
    CHECK(b.detach_value == 2500 && b.resets == 0);
    CHECK(stats(&b).detaches == 1 && stats(&b).state == DFU_STATE_APP_DETACH);
    bench_done(&b);

    /* No bitWillDetach: the host resets, and the board comes back in DFU mode. */
    CHECK(bench_init(&b, &c));
    b.s.functional.attributes = DFU_ATTR_CAN_DNLOAD;
    b.s.functional.detach_timeout_ms = 0;
    CHECK(dfu_detach(&b.s, &e) == 0);
    CHECK(b.detach_value == 1000 && b.resets == 1 && stats(&b).state == DFU_STATE_DFU_IDLE);
    b.reset_result = -ENODEV; /* gone during the reset: fine */
    CHECK(dfu_detach(&b.s, &e) == 0);
    b.tr.reset = NULL; /* cannot reset: the caller must */
    CHECK(dfu_detach(&b.s, &e) == 0);
    b.tr.reset = bench_reset;
    b.reset_result = -EIO;
    CHECK(dfu_detach(&b.s, &e) == -EIO && e.code == ERR_DETACH);
    CHECK(strcmp(e.message, "USB reset after DETACH failed: EIO") == 0);
    b.reset_result = 0;

    /* Errors the ROM gives are fine; a board already gone re-enumerates by itself. */
    static const int fine[] = {-EPIPE, -EIO, -EPROTO};
    b.inject_req = DFU_REQ_DETACH;
    for (size_t i = 0; i < ELEMENTSOF(fine); i++) {
        b.inject_err = fine[i];
        CHECK(dfu_detach(&b.s, &e) == 0);
    }
    b.inject_err = -ENODEV;
    CHECK(dfu_detach(&b.s, &e) == 1);
    b.inject_err = -ETIMEDOUT;
    b.libusb_names = true;
    CHECK(dfu_detach(&b.s, &e) == -EIO && e.code == ERR_DETACH);
    CHECK(strcmp(e.message, "DETACH failed: LIBUSB_ERROR_TIMEOUT") == 0);
}

/* The whole way through: run-time board, DETACH, reset, download. */
static void test_detach_then_download(T *t)
{
    _cleanup_(bench_done) Bench b = {0};
    _cleanup_free_ uint8_t *p = NULL;
    DfuModelConfig c = rom();
    ErrInfo e = {0};
    size_t n = 0;

    c.runtime = true;
    CHECK(bench_init(&b, &c));
    p = load_fixture(&n);
    CHECK(p);
    CHECK(download(t, &b, p, n) == -EIO); /* still the application */
    CHECK(t->err.code == ERR_DFU_STATE);
    CHECK_CONTAINS(t->err.message, "board is in appIDLE");
    CHECK(dfu_detach(&b.s, &e) == 1);
    dfu_model_reset(b.model); /* the re-enumeration */
    CHECK(download(t, &b, p, n) == 0);
    CHECK(received_is(&b, p, n) && stats(&b).downloads_ok == 1);
}

int main(void)
{
    static const struct {
        const char *name;
        void (*fn)(T *t);
    } tests[] = {
#define TEST(f) {#f, f}
            TEST(test_strings),
            TEST(test_config_defaults),
            TEST(test_parse_functional),
            TEST(test_parse_functional_garbage),
            TEST(test_model_idle_and_error),
            TEST(test_model_download_states),
            TEST(test_model_block_numbers),
            TEST(test_model_max_payload),
            TEST(test_model_faults),
            TEST(test_model_runtime),
            TEST(test_model_garbage),
            TEST(test_model_wait_reset_state),
            TEST(test_happy_fixture),
            TEST(test_poll_timeout_exact),
            TEST(test_block_wrap),
            TEST(test_erase_stall),
            TEST(test_dnbusy_timeout),
            TEST(test_error_status),
            TEST(test_stall_block),
            TEST(test_wrong_block_and_stall),
            TEST(test_hang),
            TEST(test_unplug),
            TEST(test_retry_after_fault),
            TEST(test_prepare_from_error),
            TEST(test_prepare_from_dnload_idle),
            TEST(test_prepare_from_upload_idle),
            TEST(test_prepare_impossible_state),
            TEST(test_unexpected_answers),
            TEST(test_short_status),
            TEST(test_transport_errors),
            TEST(test_invalid_image),
            TEST(test_manifest_polls),
            TEST(test_manifest_timeout),
            TEST(test_manifest_wait_reset),
            TEST(test_vanish_after_zlp),
            TEST(test_cancel_between_blocks),
            TEST(test_cancel_during_wait),
            TEST(test_cancel_before_start),
            TEST(test_arguments),
            TEST(test_detach),
            TEST(test_detach_then_download),
#undef TEST
    };

    for (size_t i = 0; i < ELEMENTSOF(tests); i++)
        run(tests[i].name, tests[i].fn);
    printf("%u passed, %u failed\n", n_passed, n_failed);
    return n_failed ? 1 : 0;
}
