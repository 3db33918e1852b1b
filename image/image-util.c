/* SPDX-License-Identifier: MIT */
/*
 * The small tables and parsers around the dfu.bin format: chips and their
 * PIDs, flash sizes, dfuinfo0.dat flags, numbers as mkdfu reads them, and the
 * DFU suffix CRC. Split from image.c, which keeps the validation itself.
 */
#include "image.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
/* ---- chips, flash sizes, flags, numbers ---- */

const char *chip_to_string(Chip c)
{
    switch (c) {
    case CHIP_UNKNOWN:
        return "unknown";
    case CHIP_ESP32S2:
        return "esp32s2";
    case CHIP_ESP32S3:
        return "esp32s3";
    case CHIP_ESP32P4:
        return "esp32p4";
    case CHIP_ESP32S31:
        return "esp32s31";
    case _CHIP_MAX:
        break;
    }
    return NULL;
}

/* esp-idf tools/cmake/dfu.cmake: the only targets with ROM USB DFU. */
uint16_t chip_to_pid(Chip c)
{
    switch (c) {
    case CHIP_ESP32S2:
        return 0x0002;
    case CHIP_ESP32S3:
        return 0x0009;
    case CHIP_ESP32P4:
        return 0x0012;
    case CHIP_ESP32S31:
        return 0x0020;
    case CHIP_UNKNOWN:
    case _CHIP_MAX:
        break;
    }
    return 0;
}

Chip chip_from_string(const char *s)
{
    if (!s)
        return _CHIP_MAX;
    for (Chip c = CHIP_UNKNOWN + 1; c < _CHIP_MAX; c++)
        if (strcmp(chip_to_string(c), s) == 0)
            return c;
    return _CHIP_MAX;
}

Chip chip_from_pid(uint16_t pid)
{
    for (Chip c = CHIP_UNKNOWN + 1; c < _CHIP_MAX; c++)
        if (chip_to_pid(c) == pid)
            return c;
    return CHIP_UNKNOWN;
}

/* mkdfu.py's --flash-size choices; esptool knows no others for these chips. */
static const struct {
    const char *name;
    uint32_t bytes;
} flash_sizes[] = {
        {"1MB", 1u << 20},   {"2MB", 2u << 20},   {"4MB", 4u << 20},   {"8MB", 8u << 20},
        {"16MB", 16u << 20}, {"32MB", 32u << 20}, {"64MB", 64u << 20}, {"128MB", 128u << 20},
};

int image_flash_size_from_string(const char *s, uint32_t *ret)
{
    if (!s)
        return -EINVAL;
    for (size_t i = 0; i < ELEMENTSOF(flash_sizes); i++)
        if (strcmp(flash_sizes[i].name, s) == 0) {
            *ret = flash_sizes[i].bytes;
            return 0;
        }
    return -EINVAL;
}

const char *image_flash_size_to_string(uint32_t bytes)
{
    for (size_t i = 0; i < ELEMENTSOF(flash_sizes); i++)
        if (flash_sizes[i].bytes == bytes)
            return flash_sizes[i].name;
    return NULL;
}

const char *image_flag_to_string(uint32_t flag)
{
    switch (flag) {
    case IMAGE_FLAG_PARAM:
        return "param";
    case IMAGE_FLAG_NOERASE:
        return "noerase";
    case IMAGE_FLAG_IGNORE_MD5:
        return "ignore-md5";
    }
    return NULL;
}

const char *image_flags_format(uint32_t flags, char *buf, size_t size)
{
    static const uint32_t known[] = {IMAGE_FLAG_PARAM, IMAGE_FLAG_NOERASE, IMAGE_FLAG_IGNORE_MD5};
    size_t n = 0;

    if (size == 0)
        return buf;
    buf[0] = 0;
    if (flags == 0) {
        snprintf(buf, size, "-");
        return buf;
    }
    for (size_t i = 0; i < ELEMENTSOF(known) && n < size; i++)
        if (flags & known[i]) {
            n += snprintf(buf + n, size - n, "%s%s", n ? "," : "", image_flag_to_string(known[i]));
            flags &= ~known[i];
        }
    /* Bits the ROM may know and mkdfu never sets: shown, not dropped. */
    if (flags && n < size)
        snprintf(buf + n, size - n, "%s0x%x", n ? "," : "", flags);
    return buf;
}

static int digit_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int image_parse_digits(const char *s, unsigned base, uint32_t *ret)
{
    uint64_t v = 0;

    if (!*s)
        return -EINVAL;
    for (; *s; s++) {
        int d = digit_value(*s);

        if (d < 0 || (unsigned)d >= base)
            return -EINVAL;
        v = v * base + (unsigned)d;
        if (v > UINT32_MAX)
            return -ERANGE;
    }
    *ret = (uint32_t)v;
    return 0;
}

int image_parse_number(const char *s, uint32_t *ret)
{
    if (!s || !*s)
        return -EINVAL;
    if (s[0] == '0' && s[1] != 0 && strchr("xXoObB", s[1])) {
        unsigned base = strchr("xX", s[1]) ? 16 : strchr("oO", s[1]) ? 8 : 2;
        return image_parse_digits(s + 2, base, ret);
    }
    /* Python's int(s, 0) refuses "010" (an old octal spelling) but takes "00". */
    if (s[0] == '0' && s[strspn(s, "0")] != 0)
        return -EINVAL;
    return image_parse_digits(s, 10, ret);
}

int image_parse_pid(const char *s, uint16_t *ret)
{
    uint32_t v;
    int r;

    if (!s)
        return -EINVAL;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
        s += 2;
    r = image_parse_digits(s, 16, &v);
    if (r < 0)
        return r;
    if (v > UINT16_MAX)
        return -ERANGE;
    *ret = (uint16_t)v;
    return 0;
}

uint32_t image_dfu_crc(const uint8_t *data, size_t size)
{
    return (uint32_t)~crc32_z(crc32_z(0, NULL, 0), data, size);
}
