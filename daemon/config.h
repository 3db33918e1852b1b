/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * espdfud.conf: an INI file parsed by libinih. Every key is documented in
 * docs/configuration.md; daemon/espdfud.conf.example is a commented copy.
 *
 * Strict: an unknown section or key, a bad value, a key given twice, or a rule
 * whose image is unreadable, broken or for another chip is an error that names
 * FILE:LINE: KEY: REASON. All errors are collected, not just the first.
 *
 * Rule images are opened and fully validated here, once, at load: the file is
 * the operator's own configuration. They go into the ImageCache passed in, so a
 * reload that keeps an image shares the copy running jobs already hold.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "image-cache.h"
#include "image.h"

#define CONFIG_DEFAULT_PATH      "/etc/espdfud/espdfud.conf"
#define CONFIG_DEFAULT_SOCKET    "/run/espdfud/espdfud.sock"
#define CONFIG_DEFAULT_STATE_DIR "/var/lib/espdfud"
#define CONFIG_DEFAULT_GROUP     "espdfu"

/* 32 by default so a 32-port station flashes every port at once. */
#define CONFIG_WORKERS_DEFAULT  32u
#define CONFIG_WORKERS_MAX      256u
#define CONFIG_RULES_MAX        256u
#define CONFIG_EXTRA_PIDS_MAX   16u
#define CONFIG_RETRIES_MAX      10u
#define CONFIG_HOOK_ARGS_MAX    32u
#define CONFIG_RULE_NAME_MAX    40u /* inih keeps 49 bytes of a section name */
#define CONFIG_PATH_PATTERN_MAX 63u
#define CONFIG_ERRORS_MAX       64u
/* history.jsonl is rotated past this; a record is ~1.5 KiB, so 64 MiB is ~40k jobs. */
#define CONFIG_HISTORY_MAX_MB_DEFAULT   64u
#define CONFIG_HISTORY_MAX_MB_MAX       4096u
#define CONFIG_WAIT_TIMEOUT_DEFAULT     300u /* s a job waits for a board on an empty port */
#define CONFIG_WAIT_TIMEOUT_MAX         (7u * 24u * 3600u)
#define CONFIG_HISTORY_MAX_JOBS_DEFAULT 2000000u
#define CONFIG_HISTORY_MAX_JOBS_MAX     1000000000u

typedef enum RuleMode {
    RULE_MODE_ANY,
    RULE_MODE_RUNTIME,
    RULE_MODE_DFU,
    _RULE_MODE_MAX,
} RuleMode;

const char *rule_mode_to_string(RuleMode m);   /* "any", "runtime", "dfu" */
RuleMode rule_mode_from_string(const char *s); /* _RULE_MODE_MAX if unknown */

/* What happens to a board after its job finished. */
typedef enum AfterAction {
    AFTER_NONE,
    AFTER_RESET, /* a USB port reset, after success only */
    AFTER_HOOK,  /* run the rule's hook, after success or failure */
    _AFTER_MAX,
} AfterAction;

const char *after_action_to_string(AfterAction a); /* "none", "reset", "hook" */
AfterAction after_action_from_string(const char *s);

typedef struct Rule {
    char *name;
    unsigned line;      /* of its [rule NAME] header */
    uint16_t pid;       /* from chip= or pid=, else the image's; 0 = any accepted board */
    char *path_pattern; /* fnmatch(3) on the port path */
    RuleMode mode;
    char *image_path;
    CachedImage *image;
    AfterAction after;
    char **hook_argv; /* NULL-terminated; NULL without hook= */
    unsigned hook_timeout_s;
} Rule;

typedef struct Config {
    char *path; /* the file it came from, NULL for built-in defaults */
    char *socket_path;
    char *state_dir;
    char *group;
    unsigned workers;
    unsigned transfer_timeout_ms;
    unsigned replug_timeout_ms;
    unsigned job_timeout_s;
    unsigned retries;
    unsigned history_max_mb;   /* obsolete since the SQLite store: accepted, ignored */
    unsigned history_max_jobs; /* finished jobs kept in jobs.db; 0: all */
    unsigned wait_timeout_s;   /* a job waiting for a board expires after this */
    unsigned image_timeout_s;  /* a client's image must be read and checked within this */
    uint16_t extra_pids[CONFIG_EXTRA_PIDS_MAX];
    size_t n_extra_pids;
    bool auto_flash;
    Rule *rules;
    size_t n_rules;
} Config;

/* Error lines, "FILE:LINE: KEY: REASON", at most CONFIG_ERRORS_MAX kept. */
typedef struct ConfigErrors {
    char **lines;
    size_t n;
    size_t dropped; /* errors beyond the maximum */
} ConfigErrors;

void config_errors_clear(ConfigErrors *e);
int config_errors_add(ConfigErrors *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Built-in defaults, no rules. */
int config_new_default(Config **ret);

/*
 * Parse and validate path. 0 and *ret on success. On failure *ret is untouched,
 * every problem found is in *errors, and the result is -EINVAL (bad content),
 * -ENOENT (no such file) or another negative errno (cannot read it).
 */
int config_parse_file(const char *path, ImageCache *cache, Config **ret, ConfigErrors *errors);

Config *config_free(Config *c);

/* Values given on the command line win over the file, also across reloads. */
typedef struct ConfigOverrides {
    const char *socket_path;
    const char *state_dir;
    unsigned workers; /* 0: not given */
} ConfigOverrides;

int config_apply_overrides(Config *c, const ConfigOverrides *o);

/* A decimal number in [min, max], nothing else (no sign, no blanks): the rule for
 * every number in the file and on the command line. -EINVAL/-ERANGE. */
int config_parse_uint(const char *s, unsigned min, unsigned max, unsigned *ret);

/* VID 0x303a and one of the four DFU PIDs or an extra-pids= entry. */
bool config_accepts_board(const Config *c, uint16_t vid, uint16_t pid);

/*
 * The first rule, in file order, that matches a board. board_mode is
 * RULE_MODE_RUNTIME or RULE_MODE_DFU when known, RULE_MODE_ANY when not (then
 * only rules with mode=any match).
 */
const Rule *config_find_rule(const Config *c, uint16_t pid, const char *path, RuleMode board_mode);

static inline void config_freep(Config **c)
{
    if (*c)
        *c = config_free(*c);
}
