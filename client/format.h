/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Pure text formatting for espdfuctl's daemon commands: sizes, rates,
 * durations, ETAs, progress bars, timestamps, column tables and CSV fields. No
 * I/O except table_print() and csv_field() into a FILE* the caller owns, no globals, so
 * tests/test-client-format.c links this file alone.
 *
 * Every fmt_* writes into a caller buffer (truncating, always terminated) and
 * returns it, so calls nest inside printf() arguments.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define FMT_SIZE_MAX 32u /* enough for any fmt_* result except bars */

/* 10240 -> "10.0 KiB", 512 -> "512 B". */
char *fmt_bytes(uint64_t n, char *buf, size_t size);

/* Bytes per second: "81.9 KiB/s"; "-" when unknown (rate <= 0). */
char *fmt_rate(double rate, char *buf, size_t size);

/* Seconds: "0.4s", "12s", "3m05s", "2h03m", "4d01h"; "-" when negative. */
char *fmt_duration(double seconds, char *buf, size_t size);

/* Remaining time at rate: "ETA 3m05s", or "ETA -" when it cannot be known. */
char *fmt_eta(uint64_t done, uint64_t total, double rate, char *buf, size_t size);

/*
 * A bar of width cells (brackets included): "[#####.....]". percent is
 * clamped to 0..100. width < 3 gives "".
 */
char *fmt_bar(int percent, int width, char *buf, size_t size);

/* Unix time as local "2025-11-20 23:52:01.123"; "-" when t <= 0. */
char *fmt_time(double t, char *buf, size_t size);

/* How long ago t was, seen at now: "5s ago", "3m05s ago"; "-" when t <= 0. */
char *fmt_since(double now, double t, char *buf, size_t size);

/* Unix microseconds as ISO 8601 UTC: "2026-12-04T17:03:12.123456Z"; "" when 0. */
#define FMT_ISO_MAX 32u
char *fmt_iso_utc(uint64_t usec, char *buf, size_t size);

/*
 * A malloc'd copy of s in which what a terminal would act on is shown
 * instead: C0 controls and DEL as "\x1b", C1 controls (UTF-8) as "\u009b".
 * NULL when out of memory. Strings from the daemon or its database are not
 * trusted to be printable.
 */
char *fmt_escape_controls(const char *s);
/* The same into buf (truncated, always terminated); "" for NULL. For printf arguments. */
char *fmt_safe(const char *s, char *buf, size_t size);
#define FMT_SAFE_MAX 1024u

/* One CSV field (RFC 4180): quoted when it holds , " CR or LF, quotes doubled. NULL: empty. */
void csv_field(FILE *f, const char *s);

/*
 * A table: a header row, then rows of cells; each column as wide as its
 * widest cell, two blanks between columns, the last column not padded.
 * Cells are copied, control characters escaped (fmt_escape_controls()), so
 * nothing in a cell reaches the terminal raw. Columns beyond the header's
 * count are dropped.
 */
#define TABLE_MAX_COLUMNS 12u

typedef struct Table Table;

int table_new(const char *const *header, size_t n_columns, Table **ret);
Table *table_free(Table *t);
/* cells[n_columns]; NULL cells print as "-". -ENOMEM on failure. */
int table_add(Table *t, const char *const *cells);
size_t table_rows(const Table *t);
void table_print(const Table *t, FILE *f);

static inline void table_freep(Table **t)
{
    if (*t)
        *t = table_free(*t);
}
