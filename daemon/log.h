/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The daemon's logging. One line per call, to the journal with structured
 * fields when stderr is connected to it (JOURNAL_STREAM names stderr's
 * st_dev:st_ino, the way systemd tells a service so), otherwise as readable
 * lines on stderr:
 *
 *     espdfud: [1-3.2] job 7: flashed 1048576 bytes in 14.2 s
 *
 * Safe to call from any thread (libusb's log callback runs on workers): each
 * line is formatted on the stack and written with one call. Workers still
 * prefer to post messages to the main thread rather than log.
 */

#include <stdbool.h>
#include <stdint.h>
#include <syslog.h>

/* MESSAGE_ID= of the two entries a job leaves in the journal (journalctl MESSAGE_ID=...). */
#define LOG_MESSAGE_JOB_STARTED  "8b1ae51fcfc247348b6526e50443810d"
#define LOG_MESSAGE_JOB_FINISHED "be2e7694be38465eaa36027a55310311"

/* "err", "warning", "info", "debug" -> LOG_ERR...; -EINVAL for anything else. */
int log_level_from_string(const char *s);
const char *log_level_to_string(int level);

/* Decide journal or stderr, once, before any thread starts. */
void log_open(void);
/* Force stderr lines even under the journal (tests, --check-config). */
void log_force_stderr(void);
void log_set_max_level(int level);
int log_get_max_level(void);

void log_message(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Logs with strerror(-err) appended as ": ..."; returns -abs(err) so callers can
 * `return log_errno(LOG_ERR, r, "...")`. */
int log_errno(int level, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define log_error(...)   log_message(LOG_ERR, __VA_ARGS__)
#define log_warning(...) log_message(LOG_WARNING, __VA_ARGS__)
#define log_notice(...)  log_message(LOG_NOTICE, __VA_ARGS__)
#define log_info(...)    log_message(LOG_INFO, __VA_ARGS__)
#define log_debug(...)   log_message(LOG_DEBUG, __VA_ARGS__)

/* What a job's journal entry carries besides MESSAGE=. NULL/0 fields are left out. */
typedef struct LogJobFields {
    const char *message_id; /* LOG_MESSAGE_JOB_* or NULL */
    uint64_t job;
    const char *path;
    const char *chip;
    const char *image_sha256;
    const char *result;
} LogJobFields;

/* A line about one job: "[path] job N: ..." on stderr, ESPDFU_* fields in the journal. */
void log_job(int level, const LogJobFields *f, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* The usb_global_init() log function: libusb's own lines. */
void log_usb(int level, const char *message);
