/* SPDX-License-Identifier: MIT */
/*
 * The engine through the real libusb and libudev: the real espdfu-flash
 * binary (dfu/flash-tool.c) against emulated boards (tests/emu/).
 *
 *   test-usb-flash CASE      one CTest test per case, see main()
 *
 * Each case checks what an observer outside the program sees: the bytes the
 * board received, its statistics, the exit status and the error line.
 */
#include <errno.h>
#include <glib.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "emu.h"
#include "image.h"

static int failures;

#define CHECK(cond, ...)                                                             \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                            \
            fputc('\n', stderr);                                                     \
            failures++;                                                              \
        }                                                                            \
    } while (0)

typedef struct Run {
    int status;
    char *output;
} Run;

static char tmpdir[] = "/tmp/test-usb-flash.XXXXXX";

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/*
 * A dfu.bin for chip with one application of size bytes at 0x10000, split
 * in part_size chunks (each its own erase on the board). Returns its path.
 */
static char *make_image(const char *name, Chip chip, size_t size, uint32_t part_size)
{
    uint8_t *app = g_malloc(size), *out = NULL;
    PackOptions o;
    PackFile f = {.address = 0x10000, .name = "app.bin", .data = app, .size = size};
    ErrInfo err = {};
    size_t out_size = 0;
    char *path = g_strdup_printf("%s/%s", tmpdir, name);

    for (size_t i = 0; i < size; i++)
        app[i] = (uint8_t)(i * 131u + i / 251u);
    pack_options_init(&o);
    o.pid = chip_to_pid(chip);
    o.flash_size = 4u << 20;
    o.part_size = part_size;
    if (image_pack(&f, 1, &o, &out, &out_size, &err) < 0 ||
        !g_file_set_contents(path, (const char *)out, (gssize)out_size, NULL)) {
        fprintf(stderr, "cannot make %s: %s\n", path, err.message);
        exit(2);
    }
    free(out);
    g_free(app);
    return path;
}

static EmuBoard *plug(Emu *e, const char *path, const char *spec)
{
    EmuBoardConfig c;
    EmuBoard *b = NULL;
    char *err = NULL;

    if (emu_board_config_parse(spec, &c, &err) < 0 || emu_add_board(e, path, &c, &b) < 0) {
        fprintf(stderr, "cannot plug %s %s: %s\n", path, spec, err ? err : "emu_add_board");
        exit(2);
    }
    return b;
}

static EmuChild *spawn_flash(Emu *e, const char *path, const char *image, const char *extra)
{
    char *argv[] = {(char *)ESPDFU_FLASH, "--quiet", "--path", (char *)path,
                    (char *)image,        NULL,      NULL,     NULL};
    EmuChild *c = NULL;

    if (extra) {
        /* "--transfer-timeout=1500" style: one argument, before the image. */
        argv[4] = (char *)extra;
        argv[5] = (char *)image;
    }
    if (emu_spawn(e, argv, NULL, true, &c) < 0) {
        fprintf(stderr, "cannot start %s\n", ESPDFU_FLASH);
        exit(2);
    }
    return c;
}

static Run finish(Emu *e, EmuChild *c, int timeout_ms)
{
    Run r = {.status = -1};
    int k = emu_wait_child(e, c, timeout_ms, &r.status, &r.output);

    CHECK(k == 0, "child did not exit within %d ms (hang)", timeout_ms);
    if (!r.output)
        r.output = g_strdup("");
    return r;
}

static Run flash(Emu *e, const char *path, const char *image, const char *extra)
{
    return finish(e, spawn_flash(e, path, image, extra), 120000);
}

/* The board holds exactly the image minus its 16-byte DFU suffix. */
static bool received_exact(EmuBoard *b, const char *image)
{
    gchar *want = NULL;
    gsize want_len = 0;
    uint8_t *got = NULL;
    size_t got_len = 0;
    bool ok;

    if (!g_file_get_contents(image, &want, &want_len, NULL) || want_len < IMAGE_SUFFIX_SIZE)
        return false;
    ok = emu_board_received(b, &got, &got_len) == 0 && got_len == want_len - IMAGE_SUFFIX_SIZE &&
         memcmp(got, want, got_len) == 0;
    g_free(got);
    g_free(want);
    return ok;
}

static EmuBoardInfo info(EmuBoard *b)
{
    EmuBoardInfo i;

    emu_board_info(b, &i);
    return i;
}

static void run_free(Run *r)
{
    g_free(r->output);
}

/* ---- cases ---- */

static void case_dfu_mode(Emu *e)
{
    const char *golden = FIXTURES_DIR "/mkdfu/1/dfu.bin";
    char *img = make_image("s3.bin", CHIP_ESP32S3, 40000, 16384);
    EmuBoard *a = plug(e, "1-1", "esp32s2:dfu");
    EmuBoard *b = plug(e, "1-3.2", "esp32s3:dfu");
    Run r = flash(e, "1-1", golden, NULL);

    CHECK(r.status == 0, "exit %d: %s", r.status, r.output);
    CHECK(received_exact(a, golden), "golden vector not received byte-exact");
    CHECK(info(a).dfu.validated, "board did not validate the MD5s");
    CHECK(info(a).dfu.early_polls == 0, "%u polls sooner than bwPollTimeout",
          info(a).dfu.early_polls);
    run_free(&r);

    /* A second board behind a hub, a multi-entry image: only that board is touched. */
    r = flash(e, "1-3.2", img, NULL);
    CHECK(r.status == 0, "exit %d: %s", r.status, r.output);
    CHECK(received_exact(b, img), "1-3.2 did not receive the image byte-exact");
    CHECK(info(b).dfu.erases == 3, "%u erases, want 3 (one per chunk)", info(b).dfu.erases);
    CHECK(info(a).dfu.attempts == 1, "1-1 was touched again");
    run_free(&r);
    g_free(img);
}

static void case_runtime(Emu *e)
{
    char *img = make_image("s2.bin", CHIP_ESP32S2, 5000, IMAGE_DEFAULT_PART_SIZE);
    EmuBoard *b = plug(e, "1-2", "esp32s2:runtime");
    unsigned devnum = info(b).devnum;
    Run r = flash(e, "1-2", img, NULL);
    EmuBoardInfo i = info(b);

    CHECK(r.status == 0, "exit %d: %s", r.status, r.output);
    CHECK(strstr(r.output, "run-time mode: detaching"), "no detach reported: %s", r.output);
    CHECK(i.detaches == 1, "%u DFU_DETACH requests", i.detaches);
    CHECK(i.enumerations == 2, "%u enumerations, want 2 (run-time, then DFU)", i.enumerations);
    CHECK(i.mode == EMU_MODE_DFU && i.devnum != devnum, "not back in DFU mode with a new devnum");
    CHECK(received_exact(b, img), "not received byte-exact after the detach");
    run_free(&r);
    g_free(img);
}

/*
 * The ROM blocks GETSTATUS while it erases an entry's region. 8 s is over
 * dfu-util's fixed 5 s timeout (esp-idf #6999) and under our 30 s default.
 */
static void case_erase_stall(Emu *e)
{
    char *img = make_image("stall.bin", CHIP_ESP32S2, 3000, IMAGE_DEFAULT_PART_SIZE);
    EmuBoard *theirs = plug(e, "1-1", "esp32s2:dfu,erase=8000");
    EmuBoard *ours = plug(e, "1-2", "esp32s2:dfu,erase=8000");
    char *dfu_util[] = {(char *)DFU_UTIL, "-d", "303a:0002", "-p", "1-1", "-D", img, NULL};
    Run d = {.status = -1}, r;

    CHECK(emu_run(e, dfu_util, 60000, &d.status, &d.output) == 0, "dfu-util hung");
    CHECK(d.status != 0, "dfu-util survived the 8 s erase stall");
    CHECK(info(theirs).dfu.downloads_ok == 0, "dfu-util's board completed a download");
    run_free(&d);

    r = flash(e, "1-2", img, NULL);
    CHECK(r.status == 0, "espdfu-flash failed on the 8 s erase stall: %s", r.output);
    CHECK(received_exact(ours, img), "not received byte-exact");
    CHECK(info(ours).dfu.erases == 1, "%u erases", info(ours).dfu.erases);
    run_free(&r);
    g_free(img);
}

typedef struct Fault {
    const char *spec, *extra, *code, *text;
} Fault;

static void case_faults(Emu *e)
{
    static const Fault faults[] = {
            {"esp32s2:dfu,error-at=5,status=errWRITE", NULL, "[dfu-status]",
             "errWRITE (dfuERROR) during download at 3% (block 5, offset 0x140)"},
            {"esp32s2:dfu,error-at=9,status=errVERIFY", NULL, "[dfu-status]", "errVERIFY"},
            {"esp32s2:dfu,stall-at=7", NULL, "[usb-stall]", "LIBUSB_ERROR_PIPE"},
            {"esp32s2:dfu,hang-at=3", "--transfer-timeout=1500", "[usb-timeout]",
             "GETSTATUS timed out after 1500 ms during download at 1% (block 3"},
    };
    const char *golden = FIXTURES_DIR "/mkdfu/1/dfu.bin";

    for (size_t i = 0; i < G_N_ELEMENTS(faults); i++) {
        const Fault *f = &faults[i];
        char path[16];
        EmuBoard *b;
        Run r;

        snprintf(path, sizeof(path), "1-%zu", i + 1);
        b = plug(e, path, f->spec);
        r = flash(e, path, golden, f->extra);
        CHECK(r.status == 1, "%s: exit %d", f->spec, r.status);
        CHECK(strstr(r.output, f->code), "%s: no %s in: %s", f->spec, f->code, r.output);
        CHECK(!f->text || strstr(r.output, f->text), "%s: no \"%s\" in: %s", f->spec, f->text,
              r.output);
        CHECK(info(b).dfu.downloads_ok == 0, "%s: download completed anyway", f->spec);
        run_free(&r);
    }
}

/* A fault on the first attempt only: the next run recovers the board (CLRSTATUS). */
static void case_retry(Emu *e)
{
    const char *golden = FIXTURES_DIR "/mkdfu/1/dfu.bin";
    EmuBoard *b = plug(e, "1-1", "esp32s2:dfu,error-at=3,status=errWRITE,fault-attempts=1");
    Run r = flash(e, "1-1", golden, NULL);

    CHECK(r.status == 1 && strstr(r.output, "[dfu-status]"), "first attempt: %d %s", r.status,
          r.output);
    run_free(&r);
    r = flash(e, "1-1", golden, NULL);
    CHECK(r.status == 0, "second attempt: exit %d: %s", r.status, r.output);
    CHECK(info(b).dfu.clrstatus == 1, "%u CLRSTATUS, want 1 (board left in dfuERROR)",
          info(b).dfu.clrstatus);
    CHECK(received_exact(b, golden), "not received byte-exact on the retry");
    run_free(&r);
}

typedef struct Progress {
    EmuBoard *b;
    unsigned requests;
} Progress;

static bool reached(void *data)
{
    Progress *p = data;

    return info(p->b).dfu.requests >= p->requests;
}

/* Start a download of a large image and wait until it is well under way. */
static EmuChild *start_long_flash(Emu *e, EmuBoard *b, const char *path, char **img)
{
    Progress p = {.b = b, .requests = 200};
    EmuChild *c;

    *img = make_image("long.bin", CHIP_ESP32S2, 256 * 1024, IMAGE_DEFAULT_PART_SIZE);
    c = spawn_flash(e, path, *img, NULL);
    CHECK(emu_iterate_until(e, reached, &p, 30000), "download never got under way");
    return c;
}

static void case_unplug(Emu *e)
{
    EmuBoard *b = plug(e, "1-1", "esp32s2:dfu");
    char *img = NULL;
    EmuChild *c = start_long_flash(e, b, "1-1", &img);
    uint64_t t0 = now_ms(), dt;
    Run r;

    CHECK(emu_board_unplug(b) == 0, "unplug failed");
    r = finish(e, c, 10000);
    dt = now_ms() - t0;
    CHECK(r.status == 1, "exit %d", r.status);
    CHECK(strstr(r.output, "[disconnected]") && strstr(r.output, "board disconnected"),
          "no disconnect reported: %s", r.output);
    CHECK(strstr(r.output, "% (block "), "no percent and block in: %s", r.output);
    /* A requirement of the issue, not a performance figure: "within one second". */
    CHECK(dt < 1000, "reported %llu ms after the unplug", (unsigned long long)dt);
    run_free(&r);
    g_free(img);
}

static void case_cancel(Emu *e)
{
    EmuBoard *b = plug(e, "1-1", "esp32s2:dfu");
    char *img = NULL;
    EmuChild *c = start_long_flash(e, b, "1-1", &img);
    Run r;

    kill(emu_child_pid(c), SIGINT);
    r = finish(e, c, 10000);
    CHECK(r.status == 1, "exit %d", r.status);
    CHECK(strstr(r.output, "[cancelled]") && strstr(r.output, "cancelled during download at"),
          "no cancel reported: %s", r.output);
    CHECK(info(b).dfu.aborts == 1, "%u ABORTs sent, want 1", info(b).dfu.aborts);
    CHECK(info(b).dfu.state == 2, "board left in state %u, want dfuIDLE", info(b).dfu.state);
    run_free(&r);
    g_free(img);
}

static void case_wrong_chip(Emu *e)
{
    const char *golden = FIXTURES_DIR "/mkdfu/1/dfu.bin"; /* PID 0x0002, esp32s2 */
    EmuBoard *b = plug(e, "1-1", "esp32s3:dfu");
    Run r = flash(e, "1-1", golden, NULL);
    EmuBoardInfo i = info(b);

    CHECK(r.status == 1, "exit %d", r.status);
    CHECK(strstr(r.output, "[wrong-chip]") && strstr(r.output, "esp32s3"), "%s", r.output);
    CHECK(i.control_transfers == 0 && i.opens == 0, "board touched: %u transfers, %u opens",
          i.control_transfers, i.opens);
    run_free(&r);

    r = flash(e, "1-7", golden, NULL);
    CHECK(r.status == 5 && strstr(r.output, "[no-board]"), "empty port: exit %d %s", r.status,
          r.output);
    run_free(&r);
}

static void case_broken_image(Emu *e)
{
    char *img = make_image("broken.bin", CHIP_ESP32S2, 3000, IMAGE_DEFAULT_PART_SIZE);
    EmuBoard *b = plug(e, "1-1", "esp32s2:dfu");
    gchar *data = NULL;
    gsize len = 0;
    Run r;

    g_file_get_contents(img, &data, &len, NULL);
    data[len / 2] ^= 0x55;
    g_file_set_contents(img, data, (gssize)len, NULL);
    r = flash(e, "1-1", img, NULL);
    CHECK(r.status == 1 && strstr(r.output, "[crc-mismatch]"), "exit %d %s", r.status, r.output);
    CHECK(info(b).control_transfers == 0, "board touched for an invalid image");
    run_free(&r);
    g_free(data);
    g_free(img);
}

static void remove_tmpdir(void)
{
    GDir *d = g_dir_open(tmpdir, 0, NULL);
    const char *name;

    while (d && (name = g_dir_read_name(d))) {
        char *p = g_build_filename(tmpdir, name, NULL);
        unlink(p);
        g_free(p);
    }
    if (d)
        g_dir_close(d);
    rmdir(tmpdir);
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        void (*run)(Emu *e);
    } cases[] = {
            {"dfu-mode", case_dfu_mode},
            {"runtime", case_runtime},
            {"erase-stall", case_erase_stall},
            {"faults", case_faults},
            {"retry", case_retry},
            {"unplug", case_unplug},
            {"cancel", case_cancel},
            {"wrong-chip", case_wrong_chip},
            {"broken-image", case_broken_image},
    };
    void (*run)(Emu * e) = NULL;
    Emu *e = NULL;

    for (size_t i = 0; argc == 2 && i < G_N_ELEMENTS(cases); i++)
        if (strcmp(cases[i].name, argv[1]) == 0)
            run = cases[i].run;
    if (!run) {
        fprintf(stderr, "usage: %s CASE (a case name from main())\n", argv[0]);
        return 2;
    }
    if (emu_reexec_without_preload(argv) < 0 || !mkdtemp(tmpdir) || emu_new(&e) < 0) {
        fprintf(stderr, "cannot set up the emulator\n");
        return 2;
    }
    run(e);
    emu_free(e);
    remove_tmpdir();
    printf("%s: %d passed, %d failed\n", argv[1], failures ? 0 : 1, failures ? 1 : 0);
    return failures ? 1 : 0;
}
