/* SPDX-License-Identifier: MIT */
/* espdfuctl's text formatting (client/format.c), linked alone. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

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

static void test_table_controls(T *t)
{
    static const char *const header[] = {"PATH", "ERROR"};
    Table *tb = NULL;
    char *out = NULL;
    size_t n = 0;
    FILE *f;

    /* What the daemon or its database says is shown, never acted on by the terminal. */
    CHECK(table_new(header, 2, &tb) == 0);
    CHECK(table_add(tb, (const char *const[]){"1-1\x1b[2J", "a\tb\r\nc\x7f"}) == 0);
    CHECK(table_add(tb, (const char *const[]){"\xc2\x9b"
                                              "31m",
                                              "caf\xc3\xa9 \xc2\xa0ok"}) == 0);
    f = open_memstream(&out, &n);
    CHECK(f);
    table_print(tb, f);
    fclose(f);
    table_free(tb);
    CHECK_STREQ(out, "PATH        ERROR\n"
                     "1-1\\x1b[2J  a\\x09b\\x0d\\x0ac\\x7f\n"
                     "\\u009b31m   caf\xc3\xa9 \xc2\xa0ok\n");
    free(out);
}

static void test_escape(T *t)
{
    char *s;

    CHECK((s = fmt_escape_controls("")) && strcmp(s, "") == 0);
    free(s);
    CHECK((s = fmt_escape_controls("plain text, 1-3.2")) && strcmp(s, "plain text, 1-3.2") == 0);
    free(s);
    CHECK((s = fmt_escape_controls("\x01\x1f \x20\x7e\x7f")) &&
          strcmp(s, "\\x01\\x1f \x20\x7e\\x7f") == 0);
    free(s);
    /* A lone 0xc2 at the end is not a C1 control; C2 A0 (NBSP) is printable. */
    CHECK((s = fmt_escape_controls("\xc2\x80\xc2\x9f\xc2\xa0\xc2")) &&
          strcmp(s, "\\u0080\\u009f\xc2\xa0\xc2") == 0);
    free(s);
}

static void test_iso_utc(T *t)
{
    char b[FMT_ISO_MAX];

    CHECK_STREQ(fmt_iso_utc(0, b, sizeof(b)), "");
    CHECK_STREQ(fmt_iso_utc(1796403792123456ull, b, sizeof(b)), "2026-12-04T17:03:12.123456Z");
    CHECK_STREQ(fmt_iso_utc(1000000ull, b, sizeof(b)), "1970-01-01T00:00:01.000000Z");
    CHECK_STREQ(fmt_iso_utc(7, b, sizeof(b)), "1970-01-01T00:00:00.000007Z");
}

static void test_csv_field(T *t)
{
    static const char *const fields[] = {
            "plain", "", NULL, "a,b", "say \"hi\"", "two\r\nlines", "lf\nonly", "cr\ronly", "x y",
    };
    char *out = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&out, &n);

    CHECK(f);
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        if (i)
            fputc(',', f);
        csv_field(f, fields[i]);
    }
    fclose(f);
    CHECK_STREQ(out, "plain,,,\"a,b\",\"say \"\"hi\"\"\",\"two\r\nlines\",\"lf\nonly\","
                     "\"cr\ronly\",x y");
    free(out);
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
    RUN(test_table_controls);
    RUN(test_escape);
    RUN(test_iso_utc);
    RUN(test_csv_field);
    return test_summary();
}
