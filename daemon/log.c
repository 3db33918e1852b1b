/* SPDX-License-Identifier: MIT */
#include "log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <systemd/sd-journal.h>
#include <unistd.h>

#define LOG_LINE_MAX 1024

/* Set once by log_open() before threads exist; read by every thread afterwards. */
static bool use_journal;
static atomic_int max_level = LOG_INFO;

static const char *const level_names[] = {
        [LOG_ERR] = "err",   [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice",
        [LOG_INFO] = "info", [LOG_DEBUG] = "debug",
};

int log_level_from_string(const char *s)
{
    if (!s)
        return -EINVAL;
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++)
        if (level_names[i] && strcmp(level_names[i], s) == 0)
            return (int)i;
    if (strcmp(s, "error") == 0)
        return LOG_ERR;
    return -EINVAL;
}

const char *log_level_to_string(int level)
{
    if (level < 0 || (size_t)level >= sizeof(level_names) / sizeof(level_names[0]))
        return NULL;
    return level_names[level];
}

/* systemd sets JOURNAL_STREAM=dev:ino for the stream it connected; if stderr
 * is still that stream, structured entries are worth sending. */
static bool stderr_is_journal(void)
{
    const char *e = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;

    if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
        return false;
    if (fstat(STDERR_FILENO, &st) < 0)
        return false;
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void log_open(void)
{
    use_journal = stderr_is_journal();
}

void log_force_stderr(void)
{
    use_journal = false;
}

void log_set_max_level(int level)
{
    atomic_store(&max_level, level);
}

int log_get_max_level(void)
{
    return atomic_load(&max_level);
}

static const char *level_prefix(int level)
{
    if (level <= LOG_ERR)
        return "error: ";
    if (level == LOG_WARNING)
        return "warning: ";
    return "";
}

/* One write() per line, so lines from several threads never interleave. */
static void write_stderr(int level, const char *prefix, const char *message)
{
    char line[LOG_LINE_MAX + 64];
    int n;

    n = snprintf(line, sizeof(line), "espdfud: %s%s%s\n", level_prefix(level), prefix, message);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof(line)) {
        n = (int)sizeof(line) - 1;
        line[n - 1] = '\n';
    }
    (void)!write(STDERR_FILENO, line, (size_t)n);
}

#define JOURNAL_FIELDS_MAX 9

typedef struct JournalEntry {
    char buf[JOURNAL_FIELDS_MAX][LOG_LINE_MAX + 32];
    struct iovec iov[JOURNAL_FIELDS_MAX];
    int n;
} JournalEntry;

static void journal_add(JournalEntry *j, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

static void journal_add(JournalEntry *j, const char *fmt, ...)
{
    va_list ap;
    int l;

    if (j->n >= JOURNAL_FIELDS_MAX)
        return;
    va_start(ap, fmt);
    l = vsnprintf(j->buf[j->n], sizeof(j->buf[j->n]), fmt, ap);
    va_end(ap);
    if (l < 0)
        return;
    if ((size_t)l >= sizeof(j->buf[j->n]))
        l = (int)sizeof(j->buf[j->n]) - 1;
    j->iov[j->n] = (struct iovec){.iov_base = j->buf[j->n], .iov_len = (size_t)l};
    j->n++;
}

static void send_journal(int level, const LogJobFields *f, const char *message)
{
    JournalEntry j = {.n = 0};

    journal_add(&j, "MESSAGE=%s", message);
    journal_add(&j, "PRIORITY=%d", level);
    journal_add(&j, "SYSLOG_IDENTIFIER=espdfud");
    if (f && f->message_id)
        journal_add(&j, "MESSAGE_ID=%s", f->message_id);
    if (f && f->job)
        journal_add(&j, "ESPDFU_JOB=%" PRIu64, f->job);
    if (f && f->path)
        journal_add(&j, "ESPDFU_PATH=%s", f->path);
    if (f && f->chip)
        journal_add(&j, "ESPDFU_CHIP=%s", f->chip);
    if (f && f->image_sha256)
        journal_add(&j, "ESPDFU_IMAGE_SHA256=%s", f->image_sha256);
    if (f && f->result)
        journal_add(&j, "ESPDFU_RESULT=%s", f->result);
    (void)sd_journal_sendv(j.iov, j.n);
}

/*
 * Every control character of a message escaped, C0 and DEL as \xNN, C1 (UTF-8) as
 * \u00NN: whatever a client, a
 * file name or a board put in it, a log line stays one line and sends no escape
 * sequence to the terminal of whoever reads the log.
 */
static void escape_controls(const char *in, char *out, size_t size)
{
    size_t o = 0;

    for (; *in && o + 5 < size; in++) {
        unsigned char ch = (unsigned char)*in;

        if (ch < 0x20 || ch == 0x7f)
            o += (size_t)snprintf(out + o, size - o, "\\x%02x", ch);
        else if (ch == 0xc2 && (unsigned char)in[1] >= 0x80 && (unsigned char)in[1] <= 0x9f) {
            if (o + 7 >= size)
                break;
            o += (size_t)snprintf(out + o, size - o, "\\u%04x", (unsigned char)*++in);
        } else
            out[o++] = (char)ch;
    }
    out[o] = '\0';
}

static void log_emit(int level, const LogJobFields *f, const char *prefix, const char *raw)
{
    char message[LOG_LINE_MAX];

    escape_controls(raw, message, sizeof(message));
    if (use_journal) {
        char with_prefix[LOG_LINE_MAX + 64];

        snprintf(with_prefix, sizeof(with_prefix), "%s%s", prefix, message);
        send_journal(level, f, with_prefix);
    } else {
        write_stderr(level, prefix, message);
    }
}

void log_message(int level, const char *fmt, ...)
{
    char message[LOG_LINE_MAX];
    va_list ap;

    if (level > log_get_max_level())
        return;
    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    log_emit(level, NULL, "", message);
}

int log_errno(int level, int err, const char *fmt, ...)
{
    char message[LOG_LINE_MAX];
    va_list ap;
    size_t n;

    err = err < 0 ? -err : err;
    if (level > log_get_max_level())
        return -err;
    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    n = strlen(message);
    snprintf(message + n, sizeof(message) - n, ": %s", strerror(err));
    log_emit(level, NULL, "", message);
    return -err;
}

void log_job(int level, const LogJobFields *f, const char *fmt, ...)
{
    char message[LOG_LINE_MAX];
    char prefix[128];
    va_list ap;

    if (level > log_get_max_level())
        return;
    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    snprintf(prefix, sizeof(prefix), "[%s] job %" PRIu64 ": ", f->path ? f->path : "-", f->job);
    log_emit(level, f, prefix, message);
}

void log_usb(int level, const char *message)
{
    if (level > log_get_max_level())
        return;
    log_emit(level, NULL, "", message);
}
