/* SPDX-License-Identifier: MIT */
/*
 * Text formatting for espdfuctl (format.h). Pure: no I/O except table_print() and
 * csv_field() into the caller's FILE*.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "format.h"

struct Table {
    size_t n_columns;
    size_t n_rows; /* the header included */
    size_t allocated;
    char **cells; /* n_rows * n_columns */
};

char *fmt_bytes(uint64_t n, char *buf, size_t size)
{
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB"};
    double v = (double)n;
    size_t u = 0;

    if (n < 1024) {
        snprintf(buf, size, "%llu B", (unsigned long long)n);
        return buf;
    }
    v /= 1024.0;
    while (v >= 1024.0 && u + 1 < sizeof(units) / sizeof(units[0])) {
        v /= 1024.0;
        u++;
    }
    snprintf(buf, size, "%.1f %s", v, units[u]);
    return buf;
}

char *fmt_rate(double rate, char *buf, size_t size)
{
    char b[FMT_SIZE_MAX];

    if (!(rate > 0) || !isfinite(rate)) {
        snprintf(buf, size, "-");
        return buf;
    }
    snprintf(buf, size, "%s/s", fmt_bytes((uint64_t)llround(rate), b, sizeof(b)));
    return buf;
}

char *fmt_duration(double seconds, char *buf, size_t size)
{
    uint64_t s;

    if (!(seconds >= 0) || !isfinite(seconds)) {
        snprintf(buf, size, "-");
        return buf;
    }
    /* Tenths only where they matter: a board flashed in under 10 s. */
    if (seconds < 10) {
        snprintf(buf, size, "%.1fs", floor(seconds * 10) / 10);
        return buf;
    }
    s = (uint64_t)seconds;
    if (s < 60)
        snprintf(buf, size, "%llus", (unsigned long long)s);
    else if (s < 3600)
        snprintf(buf, size, "%llum%02llus", (unsigned long long)(s / 60),
                 (unsigned long long)(s % 60));
    else if (s < 86400)
        snprintf(buf, size, "%lluh%02llum", (unsigned long long)(s / 3600),
                 (unsigned long long)(s % 3600 / 60));
    else
        snprintf(buf, size, "%llud%02lluh", (unsigned long long)(s / 86400),
                 (unsigned long long)(s % 86400 / 3600));
    return buf;
}

char *fmt_eta(uint64_t done, uint64_t total, double rate, char *buf, size_t size)
{
    char d[FMT_SIZE_MAX];

    if (!(rate > 0) || !isfinite(rate) || total == 0 || done > total) {
        snprintf(buf, size, "ETA -");
        return buf;
    }
    snprintf(buf, size, "ETA %s", fmt_duration((double)(total - done) / rate, d, sizeof(d)));
    return buf;
}

char *fmt_bar(int percent, int width, char *buf, size_t size)
{
    int inner = width - 2, fill;

    if (size == 0)
        return buf;
    if (width < 3 || (size_t)width >= size) {
        buf[0] = '\0';
        return buf;
    }
    percent = percent < 0 ? 0 : percent > 100 ? 100 : percent;
    fill = inner * percent / 100;
    buf[0] = '[';
    memset(buf + 1, '#', (size_t)fill);
    memset(buf + 1 + fill, '.', (size_t)(inner - fill));
    buf[width - 1] = ']';
    buf[width] = '\0';
    return buf;
}

char *fmt_time(double t, char *buf, size_t size)
{
    time_t s = (time_t)t;
    struct tm tm;
    char b[24];

    if (!(t > 0) || !localtime_r(&s, &tm) || !strftime(b, sizeof(b), "%Y-%m-%d %H:%M:%S", &tm)) {
        snprintf(buf, size, "-");
        return buf;
    }
    snprintf(buf, size, "%s.%03d", b, (int)((t - (double)s) * 1000.0) % 1000);
    return buf;
}

char *fmt_since(double now, double t, char *buf, size_t size)
{
    char d[FMT_SIZE_MAX];

    if (!(t > 0)) {
        snprintf(buf, size, "-");
        return buf;
    }
    /* A clock that went back a little says "0.0s ago", not "-". */
    snprintf(buf, size, "%s ago", fmt_duration(now > t ? now - t : 0, d, sizeof(d)));
    return buf;
}

/* A C0 control, DEL, or (as UTF-8) a C1 control: what a terminal would act on. */
static size_t control_length(const unsigned char *p)
{
    if (*p < 0x20 || *p == 0x7f)
        return 1;
    if (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f)
        return 2;
    return 0;
}

char *fmt_safe(const char *s, char *buf, size_t size)
{
    char *e = s ? fmt_escape_controls(s) : NULL;

    snprintf(buf, size, "%s", e ? e : "");
    free(e);
    return buf;
}

char *fmt_escape_controls(const char *s)
{
    const unsigned char *p;
    size_t n = 0;
    char *out, *o;

    for (p = (const unsigned char *)s; *p; p++) {
        size_t k = control_length(p);

        n += k == 0 ? 1 : k == 1 ? 4 : 6; /* "\x1b", "\u009b" */
        p += k == 2;
    }
    out = malloc(n + 1);
    if (!out)
        return NULL;
    o = out;
    for (p = (const unsigned char *)s; *p; p++) {
        size_t k = control_length(p);

        if (k == 0)
            *o++ = (char)*p;
        else if (k == 1)
            o += sprintf(o, "\\x%02x", *p);
        else
            o += sprintf(o, "\\u%04x", *++p);
    }
    *o = '\0';
    return out;
}

char *fmt_iso_utc(uint64_t usec, char *buf, size_t size)
{
    time_t secs = (time_t)(usec / 1000000u);
    struct tm tm;
    char day[24];

    if (usec == 0 || !gmtime_r(&secs, &tm) ||
        strftime(day, sizeof(day), "%Y-%m-%dT%H:%M:%S", &tm) == 0) {
        snprintf(buf, size, "%s", "");
        return buf;
    }
    snprintf(buf, size, "%s.%06uZ", day, (unsigned)(usec % 1000000u));
    return buf;
}

void csv_field(FILE *f, const char *s)
{
    /* RFC 4180 section 2: quote a field that holds a comma, a quote or a line break. */
    if (!s)
        return;
    if (!s[strcspn(s, ",\"\r\n")]) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

int table_new(const char *const *header, size_t n_columns, Table **ret)
{
    Table *t;
    int r;

    if (n_columns == 0 || n_columns > TABLE_MAX_COLUMNS)
        return -EINVAL;
    t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    t->n_columns = n_columns;
    r = table_add(t, header);
    if (r < 0) {
        table_free(t);
        return r;
    }
    *ret = t;
    return 0;
}

Table *table_free(Table *t)
{
    if (!t)
        return NULL;
    for (size_t i = 0; i < t->n_rows * t->n_columns; i++)
        free(t->cells[i]);
    free(t->cells);
    free(t);
    return NULL;
}

int table_add(Table *t, const char *const *cells)
{
    char **row;

    if (t->n_rows == t->allocated) {
        size_t n = t->allocated ? t->allocated * 2 : 16;
        char **c = reallocarray(t->cells, n * t->n_columns, sizeof(char *));

        if (!c)
            return -ENOMEM;
        t->cells = c;
        t->allocated = n;
    }
    row = t->cells + t->n_rows * t->n_columns;
    for (size_t i = 0; i < t->n_columns; i++) {
        row[i] = fmt_escape_controls(cells[i] ? cells[i] : "-");
        if (!row[i]) {
            while (i > 0)
                free(row[--i]);
            return -ENOMEM;
        }
    }
    t->n_rows++;
    return 0;
}

size_t table_rows(const Table *t)
{
    return t->n_rows - 1;
}

void table_print(const Table *t, FILE *f)
{
    size_t width[TABLE_MAX_COLUMNS] = {};

    for (size_t r = 0; r < t->n_rows; r++)
        for (size_t c = 0; c < t->n_columns; c++) {
            size_t n = strlen(t->cells[r * t->n_columns + c]);

            if (n > width[c])
                width[c] = n;
        }
    for (size_t r = 0; r < t->n_rows; r++) {
        for (size_t c = 0; c < t->n_columns; c++) {
            const char *cell = t->cells[r * t->n_columns + c];

            if (c + 1 == t->n_columns)
                fprintf(f, "%s\n", cell);
            else
                fprintf(f, "%-*s  ", (int)width[c], cell);
        }
    }
}
