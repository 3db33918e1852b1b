/* SPDX-License-Identifier: MIT */
/* espdfuctl's text formatting (client/format.c), linked alone. */
#include <errno.h>
#include <stdlib.h>

#include "daemon-test.h"
#include "format.h"

static void test_bytes(T *t)
{
    char b[FMT_SIZE_MAX];

    CHECK_STREQ(fmt_bytes(0, b, sizeof(b)), "0 B");
    CHECK_STREQ(fmt_bytes(1023, b, sizeof(b)), "1023 B");
    CHECK_STREQ(fmt_bytes(10240, b, sizeof(b)), "10.0 KiB");
    CHECK_STREQ(fmt_bytes(1054736, b, sizeof(b)), "1.0 MiB");
    CHECK_STREQ(fmt_bytes(5ull << 40, b, sizeof(b)), "5.0 TiB");
    CHECK_STREQ(fmt_bytes(5ull << 50, b, sizeof(b)), "5120.0 TiB");
}

static void test_rate(T *t)
{
    char b[FMT_SIZE_MAX];

    CHECK_STREQ(fmt_rate(81920, b, sizeof(b)), "80.0 KiB/s");
    CHECK_STREQ(fmt_rate(100, b, sizeof(b)), "100 B/s");
    CHECK_STREQ(fmt_rate(0, b, sizeof(b)), "-");
    CHECK_STREQ(fmt_rate(-3, b, sizeof(b)), "-");
}

static void test_duration(T *t)
{
    char b[FMT_SIZE_MAX];

    CHECK_STREQ(fmt_duration(0, b, sizeof(b)), "0.0s");
    CHECK_STREQ(fmt_duration(0.46, b, sizeof(b)), "0.4s");
    CHECK_STREQ(fmt_duration(9.99, b, sizeof(b)), "9.9s");
    CHECK_STREQ(fmt_duration(12.7, b, sizeof(b)), "12s");
    CHECK_STREQ(fmt_duration(185, b, sizeof(b)), "3m05s");
    CHECK_STREQ(fmt_duration(7380, b, sizeof(b)), "2h03m");
    CHECK_STREQ(fmt_duration(90000, b, sizeof(b)), "1d01h");
    CHECK_STREQ(fmt_duration(-1, b, sizeof(b)), "-");
}

static void test_eta(T *t)
{
    char b[FMT_SIZE_MAX];

    CHECK_STREQ(fmt_eta(0, 1000, 100, b, sizeof(b)), "ETA 10s");
    CHECK_STREQ(fmt_eta(500, 1000, 100, b, sizeof(b)), "ETA 5.0s");
    CHECK_STREQ(fmt_eta(0, 1000, 0, b, sizeof(b)), "ETA -");
    CHECK_STREQ(fmt_eta(2000, 1000, 10, b, sizeof(b)), "ETA -");
    CHECK_STREQ(fmt_eta(0, 0, 10, b, sizeof(b)), "ETA -");
}

static void test_bar(T *t)
{
    char b[64];

    CHECK_STREQ(fmt_bar(0, 12, b, sizeof(b)), "[..........]");
    CHECK_STREQ(fmt_bar(50, 12, b, sizeof(b)), "[#####.....]");
    CHECK_STREQ(fmt_bar(100, 12, b, sizeof(b)), "[##########]");
    CHECK_STREQ(fmt_bar(250, 7, b, sizeof(b)), "[#####]");
    CHECK_STREQ(fmt_bar(-5, 4, b, sizeof(b)), "[..]");
    CHECK_STREQ(fmt_bar(50, 2, b, sizeof(b)), "");
    /* Too small a buffer: empty, never overrun. */
    CHECK_STREQ(fmt_bar(50, 12, b, 12), "");
}

static void test_since(T *t)
{
    char b[FMT_SIZE_MAX];

    CHECK_STREQ(fmt_since(1000, 995, b, sizeof(b)), "5.0s ago");
    CHECK_STREQ(fmt_since(1000, 815, b, sizeof(b)), "3m05s ago");
    CHECK_STREQ(fmt_since(1000, 1001, b, sizeof(b)), "0.0s ago");
    CHECK_STREQ(fmt_since(1000, 0, b, sizeof(b)), "-");
    CHECK_STREQ(fmt_time(0, b, sizeof(b)), "-");
    /* Local time, so only the shape: "YYYY-MM-DD HH:MM:SS.mmm". */
    CHECK(strlen(fmt_time(1795222336.963924, b, sizeof(b))) == 23);
    CHECK(b[4] == '-' && b[10] == ' ' && b[19] == '.');
    CHECK_STREQ(b + 19, ".963");
}

static void test_table(T *t)
{
    static const char *const header[] = {"PATH", "CHIP", "STATE"};
    Table *tb = NULL;
    char *out = NULL;
    size_t n = 0;
    FILE *f;

    CHECK(table_new(header, 3, &tb) == 0);
    CHECK(table_add(tb, (const char *const[]){"1-1", "esp32s2", "idle"}) == 0);
    CHECK(table_add(tb, (const char *const[]){"1-3.2", NULL, "flashed-needs-reset"}) == 0);
    CHECK(table_rows(tb) == 2);
    f = open_memstream(&out, &n);
    CHECK(f);
    table_print(tb, f);
    fclose(f);
    table_free(tb);
    CHECK_STREQ(out, "PATH   CHIP     STATE\n"
                     "1-1    esp32s2  idle\n"
                     "1-3.2  -        flashed-needs-reset\n");
    free(out);
    CHECK(table_new(header, 0, &tb) == -EINVAL);
    CHECK(table_new(header, TABLE_MAX_COLUMNS + 1, &tb) == -EINVAL);
}

int main(void)
{
    RUN(test_bytes);
    RUN(test_rate);
    RUN(test_duration);
    RUN(test_eta);
    RUN(test_bar);
    RUN(test_since);
    RUN(test_table);
    return test_summary();
}
