/* SPDX-License-Identifier: MIT */
/*
 * daemon/devices.c: the mode read from the sysfs `descriptors` blob (what the
 * ROM shows in run-time and in DFU mode), and the device table.
 */
#include <errno.h>
#include <string.h>

#include "daemon-test.h"
#include "devices.h"
#include "util.h"

static const uint8_t device_desc[] = {18,   1, 0x00, 0x02, 0xef, 0x02, 0x01, 64, 0x3a,
                                      0x30, 2, 0x00, 0x23, 0x07, 1,    2,    3,  1};

/* The ROM's first presentation: CDC-ACM on interfaces 0-1, DFU run-time on 2. */
static const uint8_t runtime_config[] = {
        9, 2,    79,   0,    3,    1,    0, 0x80, 50,   /* configuration */
        8, 0x0b, 0,    2,    2,    2,    0, 0,          /* IAD */
        9, 4,    0,    0,    1,    2,    2, 0,    0,    /* CDC control */
        5, 0x24, 0,    0x10, 1,                         /* CS header */
        7, 5,    0x81, 3,    64,   0,    1,             /* endpoint */
        9, 4,    1,    0,    2,    0x0a, 0, 0,    0,    /* CDC data */
        7, 5,    0x02, 2,    64,   0,    0,             /* endpoint */
        7, 5,    0x82, 2,    64,   0,    0,             /* endpoint */
        9, 4,    2,    0,    0,    0xfe, 1, 1,    0,    /* DFU run-time */
        9, 0x21, 0x0d, 0xe8, 0x03, 0x40, 0, 0x10, 0x01, /* DFU functional */
};

/* After the detach: one interface, DFU mode (protocol 2). */
static const uint8_t dfu_config[] = {
        9, 2,    27,   0,    1,    1,    0, 0x80, 50,   /* configuration */
        9, 4,    0,    0,    0,    0xfe, 1, 2,    0,    /* DFU mode */
        9, 0x21, 0x0d, 0xe8, 0x03, 0x40, 0, 0x10, 0x01, /* DFU functional */
};

static const uint8_t cdc_only_config[] = {
        9, 2, 18, 0, 1, 1, 0, 0x80, 50, /* configuration */
        9, 4, 0,  0, 1, 2, 2, 0,    0,  /* CDC control */
};

static size_t blob(uint8_t *out, const uint8_t *a, size_t na, const uint8_t *b, size_t nb)
{
    memcpy(out, device_desc, sizeof(device_desc));
    memcpy(out + sizeof(device_desc), a, na);
    if (b)
        memcpy(out + sizeof(device_desc) + na, b, nb);
    return sizeof(device_desc) + na + nb;
}

static void test_mode_from_descriptors(T *t)
{
    uint8_t buf[512];
    size_t n;

    n = blob(buf, runtime_config, sizeof(runtime_config), NULL, 0);
    CHECK(device_mode_from_descriptors(buf, n) == DEVICE_MODE_RUNTIME);
    n = blob(buf, dfu_config, sizeof(dfu_config), NULL, 0);
    CHECK(device_mode_from_descriptors(buf, n) == DEVICE_MODE_DFU);
    n = blob(buf, cdc_only_config, sizeof(cdc_only_config), NULL, 0);
    CHECK(device_mode_from_descriptors(buf, n) == DEVICE_MODE_NONE);
    /* Two configurations: DFU mode anywhere wins. */
    n = blob(buf, runtime_config, sizeof(runtime_config), dfu_config, sizeof(dfu_config));
    CHECK(device_mode_from_descriptors(buf, n) == DEVICE_MODE_DFU);
    /* Only a device descriptor: no interface at all. */
    CHECK(device_mode_from_descriptors(device_desc, sizeof(device_desc)) == DEVICE_MODE_NONE);
}

static void test_mode_from_bad_descriptors(T *t)
{
    uint8_t buf[512];
    size_t n;

    CHECK(device_mode_from_descriptors(NULL, 0) == DEVICE_MODE_UNKNOWN);
    CHECK(device_mode_from_descriptors(device_desc, 17) == DEVICE_MODE_UNKNOWN);
    memcpy(buf, device_desc, sizeof(device_desc));
    buf[1] = 2; /* not a device descriptor */
    CHECK(device_mode_from_descriptors(buf, sizeof(device_desc)) == DEVICE_MODE_UNKNOWN);
    /* A zero bLength before any DFU interface: cannot tell. */
    n = blob(buf, cdc_only_config, sizeof(cdc_only_config), NULL, 0);
    buf[18 + 9] = 0;
    CHECK(device_mode_from_descriptors(buf, n) == DEVICE_MODE_UNKNOWN);
    /* A descriptor running past the end, after the DFU interface was seen. */
    n = blob(buf, dfu_config, sizeof(dfu_config), NULL, 0);
    buf[n - 9] = 40;
    CHECK(device_mode_from_descriptors(buf, n) == DEVICE_MODE_DFU);
    /* Cut in the middle of the run-time interface descriptor. */
    n = blob(buf, runtime_config, sizeof(runtime_config), NULL, 0);
    CHECK(device_mode_from_descriptors(buf, n - 14) == DEVICE_MODE_UNKNOWN);
}

static void test_strings(T *t)
{
    for (int m = 0; m < _DEVICE_MODE_MAX; m++)
        CHECK(device_mode_from_string(device_mode_to_string((DeviceMode)m)) == (DeviceMode)m);
    for (int p = 0; p < _DEVICE_PLUG_MAX; p++)
        CHECK(device_plug_from_string(device_plug_to_string((DevicePlug)p)) == (DevicePlug)p);
    CHECK_STREQ(device_plug_to_string(DEVICE_PLUG_FLASHED), "flashed-needs-reset");
    CHECK(device_mode_from_string("DFU") == _DEVICE_MODE_MAX);
}

static DeviceInfo info(const char *path)
{
    DeviceInfo i = {.vid = 0x303a, .pid = 2, .chip = CHIP_ESP32S2, .mode = DEVICE_MODE_DFU};

    snprintf(i.path, sizeof(i.path), "%s", path);
    return i;
}

static void test_table(T *t)
{
    _cleanup_(device_table_freep) DeviceTable *tab = NULL;
    static const char *const in[] = {"2-1", "1-10", "1-2.3", "1-2", "1-9"};
    static const char *const order[] = {"1-2", "1-2.3", "1-9", "1-10", "2-1"};
    DeviceInfo i;
    Device *d;
    size_t k = 0;

    CHECK(device_table_new(&tab) == 0);
    for (size_t n = 0; n < ELEMENTSOF(in); n++) {
        i = info(in[n]);
        CHECK(device_table_add(tab, &i, &d) == 0);
        CHECK(d->present && strcmp(d->info.path, in[n]) == 0);
    }
    i = info("1-2");
    CHECK(device_table_add(tab, &i, &d) == -EEXIST);
    /* Ports in the order a person reads them. */
    for (d = device_table_next(tab, NULL); d; d = device_table_next(tab, d))
        CHECK_STREQ(d->info.path, order[k++]);
    CHECK(k == ELEMENTSOF(order) && device_table_count(tab) == k);
    CHECK((d = device_table_get(tab, "1-9")));
    device_table_remove(tab, d);
    CHECK(device_table_get(tab, "1-9") == NULL && device_table_count(tab) == k - 1);
    CHECK(device_table_get(tab, "1-2.3"));
}

static void test_table_bounded(T *t)
{
    _cleanup_(device_table_freep) DeviceTable *tab = NULL;
    DeviceInfo i;
    Device *d;

    CHECK(device_table_new(&tab) == 0);
    for (unsigned n = 0; n < DEVICES_MAX; n++) {
        char p[32];

        snprintf(p, sizeof(p), "%u-%u", n / 100 + 1, n % 100 + 1);
        i = info(p);
        CHECK(device_table_add(tab, &i, &d) == 0);
    }
    i = info("99-1");
    CHECK(device_table_add(tab, &i, &d) == -ENOSPC);
}

int main(void)
{
    RUN(test_mode_from_descriptors);
    RUN(test_mode_from_bad_descriptors);
    RUN(test_strings);
    RUN(test_table);
    RUN(test_table_bounded);
    return test_summary();
}
