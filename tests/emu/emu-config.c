/* SPDX-License-Identifier: MIT */
/* Names, board specs and the JSON report. */
#include <errno.h>
#include <json-c/json.h>
#include <string.h>

#include "emu-internal.h"

static const char *const chip_names[_EMU_CHIP_MAX] = {
        [EMU_CHIP_ESP32S2] = "esp32s2",
        [EMU_CHIP_ESP32S3] = "esp32s3",
        [EMU_CHIP_ESP32P4] = "esp32p4",
        [EMU_CHIP_ESP32S31] = "esp32s31",
};

/* esp-idf tools/cmake/dfu.cmake */
static const uint16_t chip_pids[_EMU_CHIP_MAX] = {
        [EMU_CHIP_ESP32S2] = 0x0002,
        [EMU_CHIP_ESP32S3] = 0x0009,
        [EMU_CHIP_ESP32P4] = 0x0012,
        [EMU_CHIP_ESP32S31] = 0x0020,
};

static const char *const mode_names[_EMU_MODE_MAX] = {
        [EMU_MODE_RUNTIME] = "runtime",
        [EMU_MODE_DFU] = "dfu",
};

/* DFU 1.1 section 6.1.2, table 6.2 */
static const char *const status_names[] = {
        "OK",      "errTARGET", "errFILE",    "errWRITE",      "errERASE",    "errCHECK_ERASED",
        "errPROG", "errVERIFY", "errADDRESS", "errNOTDONE",    "errFIRMWARE", "errVENDOR",
        "errUSBR", "errPOR",    "errUNKNOWN", "errSTALLEDPKT",
};

const char *emu_chip_to_string(EmuChip c)
{
    return c < _EMU_CHIP_MAX ? chip_names[c] : NULL;
}

EmuChip emu_chip_from_string(const char *s)
{
    for (EmuChip c = 0; c < _EMU_CHIP_MAX; c++)
        if (s && g_str_equal(s, chip_names[c]))
            return c;
    return _EMU_CHIP_MAX;
}

uint16_t emu_chip_pid(EmuChip c)
{
    return c < _EMU_CHIP_MAX ? chip_pids[c] : 0;
}

const char *emu_mode_to_string(EmuMode m)
{
    return m < _EMU_MODE_MAX ? mode_names[m] : NULL;
}

EmuMode emu_mode_from_string(const char *s)
{
    for (EmuMode m = 0; m < _EMU_MODE_MAX; m++)
        if (s && g_str_equal(s, mode_names[m]))
            return m;
    return _EMU_MODE_MAX;
}

int emu_dfu_status_from_string(const char *s)
{
    for (size_t i = 0; i < G_N_ELEMENTS(status_names); i++)
        if (g_str_equal(s, status_names[i]))
            return (int)i;
    return -1;
}

const char *emu_dfu_status_to_string(uint8_t status)
{
    return status < G_N_ELEMENTS(status_names) ? status_names[status] : NULL;
}

uint64_t emu_now_ms(void)
{
    return (uint64_t)g_get_monotonic_time() / 1000;
}

/* "B-P[.P...]": the Linux sysfs name of a device below root hub B. */
bool emu_path_valid(const char *path, unsigned *bus, unsigned *depth)
{
    const char *p = path;
    unsigned n = 0;
    guint64 v;
    char *end;

    if (!path || strlen(path) >= EMU_PATH_MAX || !g_ascii_isdigit(*p))
        return false;
    v = g_ascii_strtoull(p, &end, 10);
    if (v < 1 || v > EMU_BUS_MAX || *end != '-')
        return false;
    *bus = (unsigned)v;
    for (p = end; *p == '-' || *p == '.'; p = end) {
        if (!g_ascii_isdigit(p[1]))
            return false;
        v = g_ascii_strtoull(p + 1, &end, 10);
        if (v < 1 || v > 15 || ++n > EMU_MAX_DEPTH || (*p == '-' && n != 1))
            return false;
    }
    *depth = n;
    return *p == '\0';
}

void emu_board_config_init(EmuBoardConfig *c, EmuChip chip, EmuMode mode)
{
    *c = (EmuBoardConfig){
            .chip = chip,
            .mode = mode,
            /* Unknown on the ROM: download, manifestation tolerant (it is back in dfuIDLE
             * after the zero-length DNLOAD), will-detach. */
            .dfu_attributes = EMU_DFU_ATTR_CAN_DNLOAD | EMU_DFU_ATTR_MANIFEST_TOLERANT |
                              EMU_DFU_ATTR_WILL_DETACH,
            .runtime_attributes = EMU_DFU_ATTR_CAN_DNLOAD | EMU_DFU_ATTR_WILL_DETACH,
            .detach_timeout_ms = 1000,
            .detach_delay_ms = 300,
            .reenum_delay_ms = 200,
            .unplug_after_ms = -1,
            .replug_after_ms = -1,
    };
    dfu_model_config_init(&c->model);
}

static bool parse_int(const char *s, int64_t min, int64_t max, int64_t *ret)
{
    char *end;
    gint64 v;

    if (!s || !*s)
        return false;
    /* strtoll, not g_ascii_strtoll: the latter's first call sets up its C locale under a
     * g_once, which may leave errno set (EAGAIN when another thread waits on the once)
     * on success, and a valid option was then refused now and then. */
    errno = 0;
    v = strtoll(s, &end, 0);
    if (errno || end == s || *end || v < min || v > max)
        return false;
    *ret = v;
    return true;
}

/* One "key=value" of a board spec. */
static bool parse_option(EmuBoardConfig *c, const char *key, const char *val)
{
    DfuModelFaults *f = &c->model.faults;
    int64_t v;
    int st;

    if (g_str_equal(key, "status")) {
        st = emu_dfu_status_from_string(val);
        if (st < 0 && parse_int(val, 0, 255, &v))
            st = (int)v;
        if (st < 0)
            return false;
        f->error_status = (uint8_t)st;
        return true;
    }
    if (!parse_int(val, -1, INT64_MAX / 2, &v))
        return false;
#define KEY(name, field, lo, hi)  \
    if (g_str_equal(key, name)) { \
        if (v < (lo) || v > (hi)) \
            return false;         \
        field = v;                \
        return true;              \
    }
    KEY("transfer", c->model.transfer_size, 1, 0xffff);
    KEY("poll", c->model.poll_timeout_ms, 0, 0xffffff);
    KEY("erase", c->model.erase_ms, 0, 3600000);
    KEY("max-payload", c->model.max_payload, 0, 1LL << 32);
    KEY("error-at", f->error_at_block, -1, INT32_MAX);
    KEY("stall-at", f->stall_at_block, -1, INT32_MAX);
    KEY("hang-at", f->hang_at_block, -1, INT32_MAX);
    KEY("unplug-at", f->unplug_at_block, -1, INT32_MAX);
    KEY("fault-attempts", f->fault_attempts, 0, 1000000);
    KEY("busy-at", f->busy_at_block, -1, INT32_MAX);
    KEY("manifest-polls", c->model.manifest_polls, -1, UINT32_MAX); /* -1: forever */
    KEY("wait-reset", c->model.manifest_wait_reset, 0, 1);
    KEY("attrs", c->dfu_attributes, 0, 0xff);
    KEY("rt-attrs", c->runtime_attributes, 0, 0xff);
    KEY("detach-timeout", c->detach_timeout_ms, 0, 0xffff);
    KEY("detach-delay", c->detach_delay_ms, 0, 600000);
    KEY("reenum-delay", c->reenum_delay_ms, 0, 600000);
    KEY("unplug-after", c->unplug_after_ms, -1, 86400000);
    KEY("replug-after", c->replug_after_ms, -1, 86400000);
#undef KEY
    return false;
}

int emu_board_config_parse(const char *spec, EmuBoardConfig *ret, char **err)
{
    g_auto(GStrv) parts = g_strsplit(spec, ",", -1);
    g_auto(GStrv) head = g_strsplit(parts[0] ? parts[0] : "", ":", 2);
    EmuChip chip = emu_chip_from_string(head[0]);
    EmuMode mode = head[0] && head[1] ? emu_mode_from_string(head[1]) : EMU_MODE_DFU;
    EmuBoardConfig c;

    if (chip == _EMU_CHIP_MAX || mode == _EMU_MODE_MAX) {
        if (err)
            *err = g_strdup_printf("\"%s\": want CHIP[:MODE] with CHIP esp32s2|esp32s3|esp32p4|"
                                   "esp32s31 and MODE dfu|runtime",
                                   parts[0] ? parts[0] : "");
        return -EINVAL;
    }
    emu_board_config_init(&c, chip, mode);
    for (size_t i = 1; parts[i]; i++) {
        g_auto(GStrv) kv = g_strsplit(parts[i], "=", 2);

        if (!kv[0] || !kv[1] || !parse_option(&c, kv[0], kv[1])) {
            if (err)
                *err = g_strdup_printf("bad board option \"%s\"", parts[i]);
            return -EINVAL;
        }
    }
    *ret = c;
    return 0;
}

/* ---- the report ---- */

static void add_int(json_object *o, const char *k, int64_t v)
{
    json_object_object_add(o, k, json_object_new_int64(v));
}

static json_object *board_json(EmuBoard *b)
{
    json_object *o = json_object_new_object();
    EmuBoardInfo i;
    g_autofree uint8_t *data = NULL;
    g_autofree char *sha = NULL;
    size_t len;

    emu_board_info(b, &i);
    emu_board_received(b, &data, &len);
    sha = g_compute_checksum_for_data(G_CHECKSUM_SHA256, data, len);
    json_object_object_add(o, "path", json_object_new_string(i.path));
    json_object_object_add(o, "chip", json_object_new_string(emu_chip_to_string(i.chip)));
    json_object_object_add(o, "mode", json_object_new_string(emu_mode_to_string(i.mode)));
    json_object_object_add(o, "plugged", json_object_new_boolean(i.plugged));
    add_int(o, "busnum", i.busnum);
    add_int(o, "devnum", i.devnum);
    add_int(o, "enumerations", i.enumerations);
    add_int(o, "control_transfers", i.control_transfers);
    add_int(o, "ioctls", i.ioctls);
    add_int(o, "opens", i.opens);
    add_int(o, "resets", i.resets);
    add_int(o, "detaches", i.detaches);
    add_int(o, "unplugs", i.unplugs);
    add_int(o, "requests", i.dfu.requests);
    add_int(o, "attempts", i.dfu.attempts);
    add_int(o, "downloads_ok", i.dfu.downloads_ok);
    json_object_object_add(o, "validated", json_object_new_boolean(i.dfu.validated));
    add_int(o, "bytes", (int64_t)len);
    json_object_object_add(o, "sha256", json_object_new_string(sha));
    add_int(o, "early_polls", i.dfu.early_polls);
    add_int(o, "max_poll_late_ms", (int64_t)i.dfu.max_poll_late_ms);
    add_int(o, "aborts", i.dfu.aborts);
    add_int(o, "clrstatus", i.dfu.clrstatus);
    add_int(o, "dfu_resets", i.dfu.resets);
    add_int(o, "erases", i.dfu.erases);
    add_int(o, "stalls", i.dfu.stalls);
    add_int(o, "asked_ms", (int64_t)i.dfu.asked_ms);
    add_int(o, "dfu_state", i.dfu.state);
    const char *st = emu_dfu_status_to_string(i.dfu.status);
    json_object_object_add(o, "dfu_status", json_object_new_string(st ? st : "?"));
    return o;
}

char *emu_report_json(Emu *e)
{
    json_object *a = json_object_new_array();
    char *s;

    for (size_t i = 0; i < emu_n_boards(e); i++)
        json_object_array_add(a, board_json(emu_board_by_index(e, i)));
    s = g_strdup(json_object_to_json_string_ext(a, JSON_C_TO_STRING_PLAIN));
    json_object_put(a);
    return s;
}
