/* SPDX-License-Identifier: MIT */
/*
 * The emulated boards held to an outside implementation: the real dfu-util
 * (Debian 0.11, with the real libusb and libudev) lists, detaches and flashes
 * them. Each case is one CTest test: test-emu-dfu-util CASE.
 */
#include <errno.h>
#include <glib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "emu.h"

#define FIXTURE FIXTURES_DIR "/mkdfu/1/dfu.bin"
#define RUN_MS  60000
#define SUFFIX  16u

static int failures;

#define check(cond, ...)                                                    \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                   \
            fputc('\n', stderr);                                            \
            failures++;                                                     \
        }                                                                   \
    } while (0)

/* Stop the case: the rest would only add noise. */
#define require(cond, ...)        \
    do {                          \
        check(cond, __VA_ARGS__); \
        if (!(cond))              \
            return;               \
    } while (0)

static Emu *emu_or_die(void)
{
    Emu *e = NULL;
    int r = emu_new(&e);

    if (r < 0) {
        fprintf(stderr, "FAIL: cannot create the umockdev testbed: %s\n", g_strerror(-r));
        exit(1);
    }
    return e;
}

static EmuBoard *plug(Emu *e, const char *path, const char *spec)
{
    EmuBoardConfig c;
    EmuBoard *b = NULL;
    g_autofree char *err = NULL;
    int r;

    if (emu_board_config_parse(spec, &c, &err) < 0) {
        fprintf(stderr, "FAIL: board spec %s: %s\n", spec, err);
        exit(1);
    }
    r = emu_add_board(e, path, &c, &b);
    if (r < 0) {
        fprintf(stderr, "FAIL: cannot plug %s: %s\n", path, g_strerror(-r));
        exit(1);
    }
    return b;
}

/* Run dfu-util with args; its exit status, its output in *out. */
static int dfu_util(Emu *e, char **out, ...)
{
    GPtrArray *argv = g_ptr_array_new();
    const char *a;
    int status = -1, r;
    va_list ap;

    g_ptr_array_add(argv, (char *)DFU_UTIL);
    va_start(ap, out);
    while ((a = va_arg(ap, const char *)))
        g_ptr_array_add(argv, (char *)a);
    va_end(ap);
    g_ptr_array_add(argv, NULL);
    fprintf(stderr, "---- running dfu-util");
    for (unsigned i = 1; argv->pdata[i]; i++)
        fprintf(stderr, " %s", (char *)argv->pdata[i]);
    fprintf(stderr, "\n");
    r = emu_run(e, (char **)argv->pdata, RUN_MS, &status, out);
    g_ptr_array_free(argv, TRUE);
    if (r < 0)
        fprintf(stderr, "dfu-util: %s\n", g_strerror(-r));
    fprintf(stderr, "---- dfu-util exited with %d\n", status);
    return r < 0 ? -1 : status;
}

static bool received_is(EmuBoard *b, const uint8_t *data, size_t len)
{
    g_autofree uint8_t *got = NULL;
    size_t n;

    emu_board_received(b, &got, &n);
    return n == len && memcmp(got, data, len) == 0;
}

static size_t received_len(EmuBoard *b)
{
    g_autofree uint8_t *got = NULL;
    size_t n;

    emu_board_received(b, &got, &n);
    return n;
}

static uint8_t *read_fixture(size_t *len)
{
    char *data = NULL;
    gsize n = 0;

    if (!g_file_get_contents(FIXTURE, &data, &n, NULL) || n <= SUFFIX) {
        fprintf(stderr, "FAIL: cannot read %s\n", FIXTURE);
        exit(1);
    }
    *len = n;
    return (uint8_t *)data;
}

static bool contains(const char *haystack, const char *needle)
{
    bool ok = haystack && strstr(haystack, needle);

    if (!ok)
        fprintf(stderr, "output lacks \"%s\"\n", needle);
    return ok;
}

/* 1. dfu-util -l sees the DFU-mode board on its path, VID:PID, transfer size 64. */
static void case_list(void)
{
    Emu *e = emu_or_die();
    EmuBoard *b = plug(e, "1-1", "esp32s3:dfu");
    g_autofree char *out = NULL;
    g_autofree char *up = NULL;
    g_autofree char *line = NULL;
    g_autofree char *name = g_strdup_printf("espdfu-emu-upload-%d.bin", (int)getpid());
    g_autofree char *upload = g_build_filename(g_get_tmp_dir(), name, NULL);
    EmuBoardInfo i;

    emu_board_info(b, &i);
    line = g_strdup_printf("Found DFU: [303a:0009] ver=0723, devnum=%u, cfg=1, intf=0, "
                           "path=\"1-1\", alt=0, name=\"UNKNOWN\", serial=\"0\"",
                           i.devnum);
    check(dfu_util(e, &out, "-l", NULL) == 0, "dfu-util -l failed");
    check(contains(out, line), "the board is not listed as expected");
    /* dfu-util -l does not print wTransferSize; an upload attempt does, then fails:
     * whether the ROM uploads is unknown, the model STALLs UPLOAD. */
    check(dfu_util(e, &up, "-d", "303a:0009", "-p", "1-1", "-U", upload, NULL) != 0,
          "an upload succeeded");
    check(contains(up, "Device returned transfer size 64"), "no transfer size 64");
    unlink(upload);
    check(strstr(out, "Found Runtime") == NULL, "a DFU-mode board listed as run-time");
    emu_free(e);
}

/* 2. dfu-util -D flashes fixture 1; the board got the file minus its suffix, validated. */
static void case_flash(void)
{
    Emu *e = emu_or_die();
    EmuBoard *b = plug(e, "1-1", "esp32s2:dfu");
    g_autofree char *out = NULL;
    g_autofree uint8_t *file = NULL;
    size_t len;
    EmuBoardInfo i;
    int64_t t0 = g_get_monotonic_time();
    uint64_t c0 = emu_control_transfers(e);

    file = read_fixture(&len);
    check(dfu_util(e, &out, "-d", "303a:0002", "-p", "1-1", "-D", FIXTURE, NULL) == 0,
          "dfu-util -D failed");
    fprintf(stderr, "flash of %zu bytes: %.2f s, %" G_GUINT64_FORMAT " control transfers\n", len,
            (double)(g_get_monotonic_time() - t0) / 1e6, emu_control_transfers(e) - c0);
    emu_board_info(b, &i);
    check(contains(out, "Device returned transfer size 64"), "transfer size");
    check(received_is(b, file, len - SUFFIX), "received %zu bytes, want the %zu of the file",
          received_len(b), len - SUFFIX);
    check(i.dfu.validated, "the board did not validate the image");
    check(i.dfu.downloads_ok == 1, "downloads_ok %u", i.dfu.downloads_ok);
    check(i.dfu.attempts == 1, "attempts %u", i.dfu.attempts);
    check(i.dfu.early_polls == 0, "dfu-util polled early %u times", i.dfu.early_polls);
    emu_free(e);
}

/* 3. An 8 s erase: dfu-util's fixed 5 s control timeout expires on GETSTATUS. */
static void case_erase_timeout(void)
{
    Emu *e = emu_or_die();
    EmuBoard *b = plug(e, "1-1", "esp32s2:dfu,erase=8000");
    g_autofree char *out = NULL;
    EmuBoardInfo i;
    int64_t t0 = g_get_monotonic_time();
    int st = dfu_util(e, &out, "-d", "303a:0002", "-p", "1-1", "-D", FIXTURE, NULL);
    double took = (double)(g_get_monotonic_time() - t0) / 1e6;

    emu_board_info(b, &i);
    check(st > 0, "dfu-util succeeded (%d) through an 8 s erase", st);
    check(took >= 4.5 && took < 30, "dfu-util gave up after %.1f s, want its 5 s timeout", took);
    check(i.dfu.downloads_ok == 0, "the board completed a download");
    check(received_len(b) == 0, "the board holds a completed download");
    check(i.dfu.erases >= 1, "no erase happened");
    emu_free(e);
}

static bool board_back_in_dfu(void *data)
{
    EmuBoardInfo i;

    emu_board_info(data, &i);
    return i.plugged && i.mode == EMU_MODE_DFU;
}

/* 4a. A run-time board: listed as run-time; dfu-util -e makes it come back in DFU mode. */
static void case_runtime_detach(void)
{
    Emu *e = emu_or_die();
    EmuBoard *b = plug(e, "1-1", "esp32s2:runtime");
    g_autofree char *out = NULL;
    g_autofree char *out2 = NULL;
    g_autofree char *line = NULL;
    g_autofree char *line2 = NULL;
    EmuBoardInfo before, after;

    emu_board_info(b, &before);
    line = g_strdup_printf("Found Runtime: [303a:0002] ver=0723, devnum=%u, cfg=1, intf=2, "
                           "path=\"1-1\", alt=0, name=\"UNKNOWN\", serial=\"0\"",
                           before.devnum);
    check(dfu_util(e, &out, "-l", NULL) == 0, "dfu-util -l");
    check(contains(out, line), "not listed as run-time");
    g_clear_pointer(&out, g_free);
    check(dfu_util(e, &out, "-e", "-d", "303a:0002", "-p", "1-1", NULL) == 0, "dfu-util -e");
    check(contains(out, "error detaching"), "the ROM answers DETACH with an error");
    require(emu_iterate_until(e, board_back_in_dfu, b, 5000), "the board did not come back");
    emu_board_info(b, &after);
    check(after.enumerations == 2, "enumerations %u", after.enumerations);
    check(after.detaches == 1, "detaches %u", after.detaches);
    check(after.devnum != before.devnum, "same devnum %u after re-enumeration", after.devnum);
    check(g_str_equal(after.path, "1-1"), "path %s", after.path);
    line2 = g_strdup_printf("Found DFU: [303a:0002] ver=0723, devnum=%u, cfg=1, intf=0, "
                            "path=\"1-1\", alt=0, name=\"UNKNOWN\", serial=\"0\"",
                            after.devnum);
    check(dfu_util(e, &out2, "-l", NULL) == 0, "dfu-util -l after detach");
    check(contains(out2, line2), "not listed in DFU mode with the new devnum");
    emu_free(e);
}

/*
 * 4b. The whole ROM session through dfu-util: detach on the run-time board,
 * its 5 s wait, the re-enumerated board found again by hotplug, the download.
 */
static void case_runtime_flash(void)
{
    Emu *e = emu_or_die();
    EmuBoard *b = plug(e, "1-4", "esp32s2:runtime");
    g_autofree char *out = NULL;
    g_autofree uint8_t *file = NULL;
    size_t len;
    EmuBoardInfo i;

    file = read_fixture(&len);
    check(dfu_util(e, &out, "-d", "303a:0002", "-p", "1-4", "-D", FIXTURE, NULL) == 0,
          "dfu-util -D on a run-time board");
    emu_board_info(b, &i);
    check(i.mode == EMU_MODE_DFU && i.enumerations == 2, "mode %d enumerations %u", i.mode,
          i.enumerations);
    check(received_is(b, file, len - SUFFIX), "received %zu bytes", received_len(b));
    check(i.dfu.validated && i.dfu.downloads_ok == 1, "validated %d downloads_ok %u",
          i.dfu.validated, i.dfu.downloads_ok);
    emu_free(e);
}

/* 5. Three boards at once, one behind a hub: distinct paths; a flash lands on one only. */
static void case_several_boards(void)
{
    static const char *const paths[] = {"1-1", "1-2", "1-3.2"};
    Emu *e = emu_or_die();
    EmuBoard *b[3];
    g_autofree char *out = NULL;
    g_autofree char *out2 = NULL;
    g_autofree uint8_t *file = NULL;
    size_t len;

    b[0] = plug(e, paths[0], "esp32s2:dfu");
    b[1] = plug(e, paths[1], "esp32s3:dfu");
    b[2] = plug(e, paths[2], "esp32p4:runtime");
    file = read_fixture(&len);
    check(dfu_util(e, &out, "-l", NULL) == 0, "dfu-util -l");
    for (int k = 0; k < 3; k++) {
        EmuBoardInfo i;
        g_autofree char *line = NULL;

        emu_board_info(b[k], &i);
        line = g_strdup_printf("[303a:%04x] ver=0723, devnum=%u, cfg=1, intf=%d, path=\"%s\"",
                               emu_chip_pid(i.chip), i.devnum, k == 2 ? 2 : 0, paths[k]);
        check(contains(out, line), "board %s", paths[k]);
    }
    check(dfu_util(e, &out2, "-d", "303a:0002", "-p", "1-1", "-D", FIXTURE, NULL) == 0,
          "dfu-util -D -p 1-1 with three boards");
    check(received_is(b[0], file, len - SUFFIX), "1-1 did not get the image");
    check(received_len(b[1]) == 0 && received_len(b[2]) == 0, "another board got data");
    emu_free(e);
}

/* 6. Faults: an unplug mid-download and a STALL end dfu-util promptly, with an error. */
static void case_faults(void)
{
    Emu *e = emu_or_die();
    EmuBoard *gone = plug(e, "1-1", "esp32s2:dfu,unplug-at=20");
    EmuBoard *stall = plug(e, "1-2", "esp32s2:dfu,stall-at=3");
    EmuBoard *err = plug(e, "1-3", "esp32s2:dfu,error-at=5,status=errWRITE");
    g_autofree char *o1 = NULL, *o2 = NULL, *o3 = NULL;
    EmuBoardInfo i;
    int64_t t0 = g_get_monotonic_time();

    check(dfu_util(e, &o1, "-d", "303a:0002", "-p", "1-1", "-D", FIXTURE, NULL) > 0,
          "dfu-util survived an unplug");
    check(g_get_monotonic_time() - t0 < 4000000, "an unplug took dfu-util %.1f s to notice",
          (double)(g_get_monotonic_time() - t0) / 1e6);
    emu_board_info(gone, &i);
    check(!i.plugged && i.unplugs == 1, "plugged %d unplugs %u", i.plugged, i.unplugs);
    check(dfu_util(e, &o2, "-d", "303a:0002", "-p", "1-2", "-D", FIXTURE, NULL) > 0,
          "dfu-util survived a STALL");
    emu_board_info(stall, &i);
    check(i.dfu.stalls >= 1 && i.dfu.downloads_ok == 0, "stalls %u", i.dfu.stalls);
    check(dfu_util(e, &o3, "-d", "303a:0002", "-p", "1-3", "-D", FIXTURE, NULL) > 0,
          "dfu-util survived errWRITE");
    check(contains(o3, "rror"), "no error reported");
    emu_board_info(err, &i);
    check(i.dfu.downloads_ok == 0 && i.dfu.status == 0x03, "status %u", i.dfu.status);
    emu_free(e);
}

/* A dfu.bin of n payload bytes with a valid DFU suffix (not a valid CPIO archive). */
static char *make_image(size_t n, uint16_t pid)
{
    g_autofree char *name = g_strdup_printf("espdfu-emu-bench-%d.bin", (int)getpid());
    g_autofree char *path = g_build_filename(g_get_tmp_dir(), name, NULL);
    uint8_t *buf = g_malloc(n + SUFFIX);
    uint32_t crc;

    for (size_t k = 0; k < n; k++)
        buf[k] = (uint8_t)(k * 7 + 3);
    uint8_t suffix[12] = {0xff, 0xff, pid & 0xff, pid >> 8, 0x3a, 0x30,
                          0x00, 0x01, 'U',        'F',      'D',  16};
    memcpy(buf + n, suffix, sizeof(suffix));
    crc = (uint32_t)crc32(0, buf, (uInt)(n + 12)) ^ 0xffffffffu; /* DFU 1.1 B.1: no final XOR */
    for (int k = 0; k < 4; k++)
        buf[n + 12 + k] = (uint8_t)(crc >> (8 * k));
    g_file_set_contents(path, (char *)buf, (gssize)(n + SUFFIX), NULL);
    g_free(buf);
    return g_steal_pointer(&path);
}

/* Timings for docs/emulator.md: not a CTest test. */
static void case_bench(void)
{
    Emu *e = emu_or_die();
    EmuBoard *b = plug(e, "1-1", "esp32s2:dfu,poll=0");
    g_autofree char *img = make_image(1024 * 1024, 0x0002);
    g_autofree char *out = NULL;
    int64_t t0 = g_get_monotonic_time();
    uint64_t c0 = emu_control_transfers(e);
    double s;

    check(dfu_util(e, &out, "-d", "303a:0002", "-p", "1-1", "-D", img, NULL) == 0, "bench");
    s = (double)(g_get_monotonic_time() - t0) / 1e6;
    fprintf(stderr,
            "1 MiB, 64-byte blocks: %.2f s, %" G_GUINT64_FORMAT " control transfers, "
            "%.0f transfers/s, %zu bytes received\n",
            s, emu_control_transfers(e) - c0, (double)(emu_control_transfers(e) - c0) / s,
            received_len(b));
    unlink(img);
    emu_free(e);
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        void (*fn)(void);
    } cases[] = {
            {"list", case_list},
            {"flash", case_flash},
            {"erase-timeout", case_erase_timeout},
            {"runtime-detach", case_runtime_detach},
            {"runtime-flash", case_runtime_flash},
            {"several-boards", case_several_boards},
            {"faults", case_faults},
            {"bench", case_bench},
    };

    if (access(DFU_UTIL, X_OK) != 0 && !g_find_program_in_path(DFU_UTIL)) {
        fprintf(stderr, "FAIL: dfu-util not found (%s); install Debian's dfu-util\n", DFU_UTIL);
        return 1;
    }
    if (argc != 2)
        goto usage;
    for (size_t k = 0; k < G_N_ELEMENTS(cases); k++) {
        if (!g_str_equal(argv[1], cases[k].name))
            continue;
        cases[k].fn();
        fprintf(stderr, "%s: %s\n", argv[1], failures ? "FAILED" : "ok");
        return failures ? 1 : 0;
    }
usage:
    fprintf(stderr, "usage: test-emu-dfu-util list|flash|erase-timeout|runtime-detach|"
                    "runtime-flash|several-boards|faults|bench\n");
    return 2;
}
