/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <ini.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util.h"

static const char *const rule_mode_table[] = {
        [RULE_MODE_ANY] = "any",
        [RULE_MODE_RUNTIME] = "runtime",
        [RULE_MODE_DFU] = "dfu",
};
DEFINE_STRING_TABLE_LOOKUP(rule_mode, RuleMode, _RULE_MODE_MAX)

static const char *const after_action_table[] = {
        [AFTER_NONE] = "none",
        [AFTER_RESET] = "reset",
        [AFTER_HOOK] = "hook",
};
DEFINE_STRING_TABLE_LOOKUP(after_action, AfterAction, _AFTER_MAX)

/* ---- error list ---- */

void config_errors_clear(ConfigErrors *e)
{
    for (size_t i = 0; i < e->n; i++)
        free(e->lines[i]);
    free(e->lines);
    *e = (ConfigErrors){};
}

int config_errors_add(ConfigErrors *e, const char *fmt, ...)
{
    char **lines;
    char *line;
    va_list ap;
    int r;

    if (e->n >= CONFIG_ERRORS_MAX) {
        e->dropped++;
        return 0;
    }
    va_start(ap, fmt);
    r = vasprintf(&line, fmt, ap);
    va_end(ap);
    if (r < 0)
        return -ENOMEM;
    lines = realloc(e->lines, (e->n + 1) * sizeof(*lines));
    if (!lines) {
        free(line);
        return -ENOMEM;
    }
    lines[e->n++] = line;
    e->lines = lines;
    return 0;
}

/* ---- the Config object ---- */

static void rule_done(Rule *r)
{
    free(r->name);
    free(r->path_pattern);
    free(r->image_path);
    cached_image_unref(r->image);
    strv_free(r->hook_argv);
}

Config *config_free(Config *c)
{
    if (!c)
        return NULL;
    for (size_t i = 0; i < c->n_rules; i++)
        rule_done(&c->rules[i]);
    free(c->rules);
    free(c->path);
    free(c->socket_path);
    free(c->state_dir);
    free(c->group);
    free(c);
    return NULL;
}

int config_new_default(Config **ret)
{
    _cleanup_(config_freep) Config *c = calloc(1, sizeof(*c));

    if (!c)
        return -ENOMEM;
    c->socket_path = strdup(CONFIG_DEFAULT_SOCKET);
    c->state_dir = strdup(CONFIG_DEFAULT_STATE_DIR);
    c->group = strdup(CONFIG_DEFAULT_GROUP);
    if (!c->socket_path || !c->state_dir || !c->group)
        return -ENOMEM;
    c->workers = CONFIG_WORKERS_DEFAULT;
    c->transfer_timeout_ms = 30000;
    c->replug_timeout_ms = 10000;
    c->job_timeout_s = 600;
    c->retries = 1;
    c->history_max_mb = CONFIG_HISTORY_MAX_MB_DEFAULT;
    c->history_max_jobs = CONFIG_HISTORY_MAX_JOBS_DEFAULT;
    c->wait_timeout_s = CONFIG_WAIT_TIMEOUT_DEFAULT;
    c->image_timeout_s = 10;
    c->auto_flash = true;
    *ret = TAKE_PTR(c);
    return 0;
}

static int replace_string(char **dst, const char *src)
{
    char *s = strdup(src);

    if (!s)
        return -ENOMEM;
    free(*dst);
    *dst = s;
    return 0;
}

int config_apply_overrides(Config *c, const ConfigOverrides *o)
{
    int r;

    if (o->socket_path && (r = replace_string(&c->socket_path, o->socket_path)) < 0)
        return r;
    if (o->state_dir && (r = replace_string(&c->state_dir, o->state_dir)) < 0)
        return r;
    if (o->workers)
        c->workers = o->workers;
    return 0;
}

bool config_accepts_board(const Config *c, uint16_t vid, uint16_t pid)
{
    if (vid != ESP_USB_VID)
        return false;
    if (chip_from_pid(pid) != CHIP_UNKNOWN)
        return true;
    for (size_t i = 0; i < c->n_extra_pids; i++)
        if (c->extra_pids[i] == pid)
            return true;
    return false;
}

const Rule *config_find_rule(const Config *c, uint16_t pid, const char *path, RuleMode board_mode)
{
    for (size_t i = 0; i < c->n_rules; i++) {
        const Rule *r = &c->rules[i];

        if (r->pid && r->pid != pid)
            continue;
        if (r->mode != RULE_MODE_ANY && r->mode != board_mode)
            continue;
        if (fnmatch(r->path_pattern, path, 0) != 0)
            continue;
        return r;
    }
    return NULL;
}

/* ---- parsing ---- */

typedef enum Section {
    SECTION_NONE, /* before the first header */
    SECTION_DAEMON,
    SECTION_RULE,
    SECTION_IGNORED, /* unknown or broken header: already reported, keys skipped */
} Section;

typedef enum Key {
    KEY_SOCKET,
    KEY_STATE_DIR,
    KEY_WORKERS,
    KEY_TRANSFER_TIMEOUT,
    KEY_REPLUG_TIMEOUT,
    KEY_JOB_TIMEOUT,
    KEY_RETRIES,
    KEY_HISTORY_MAX_MB,
    KEY_HISTORY_MAX_JOBS,
    KEY_WAIT_TIMEOUT,
    KEY_IMAGE_TIMEOUT,
    KEY_EXTRA_PIDS,
    KEY_GROUP,
    KEY_AUTO_FLASH,
    KEY_CHIP,
    KEY_PID,
    KEY_PATH,
    KEY_MODE,
    KEY_IMAGE,
    KEY_AFTER,
    KEY_HOOK,
    KEY_HOOK_TIMEOUT,
    _KEY_MAX,
} Key;

/* Lines of the keys of one rule, for the checks made once the whole file is read. */
typedef struct RuleLines {
    unsigned key[_KEY_MAX];
} RuleLines;

typedef struct Parser {
    const char *file;
    FILE *f;
    unsigned line;      /* the line inih is handling */
    int max_line;       /* inih's line buffer */
    bool line_start;    /* the next fgets() chunk starts a new line */
    unsigned skip_line; /* a line the reader already refused; its keys are not handled */
    bool syntax_reported;
    bool failed;
    bool oom;
    Config *config;
    ImageCache *cache;
    ConfigErrors *errors;
    Section section;
    unsigned daemon_line;
    unsigned seen[_KEY_MAX]; /* line of each key in the current section, 0 = not yet */
    RuleLines *rule_lines;   /* parallel to config->rules */
} Parser;

static void parser_error(Parser *p, unsigned line, const char *key, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

static void parser_error(Parser *p, unsigned line, const char *key, const char *fmt, ...)
{
    char reason[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    p->failed = true;
    if (config_errors_add(p->errors, "%s:%u: %s: %s", p->file, line, key, reason) < 0)
        p->oom = true;
}

static Rule *parser_rule(Parser *p)
{
    return p->section == SECTION_RULE ? &p->config->rules[p->config->n_rules - 1] : NULL;
}

static bool valid_rule_name(const char *s)
{
    if (!*s || strlen(s) > CONFIG_RULE_NAME_MAX)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("_.-", *s))
            return false;
    return true;
}

static void section_rule(Parser *p, const char *name, const char *header)
{
    Config *c = p->config;
    Rule *rules;
    RuleLines *lines;

    if (!valid_rule_name(name))
        return parser_error(p, p->line, header,
                            "rule name must be 1-%u letters, digits, '_', '.' or '-'",
                            CONFIG_RULE_NAME_MAX);
    for (size_t i = 0; i < c->n_rules; i++)
        if (strcmp(c->rules[i].name, name) == 0)
            return parser_error(p, p->line, header, "rule '%s' already defined on line %u", name,
                                c->rules[i].line);
    if (c->n_rules >= CONFIG_RULES_MAX)
        return parser_error(p, p->line, header, "more than %u rules", CONFIG_RULES_MAX);
    rules = realloc(c->rules, (c->n_rules + 1) * sizeof(*rules));
    if (rules)
        c->rules = rules;
    lines = realloc(p->rule_lines, (c->n_rules + 1) * sizeof(*lines));
    if (lines)
        p->rule_lines = lines;
    if (!rules || !lines) {
        p->oom = true;
        return;
    }
    rules[c->n_rules] = (Rule){
            .name = strdup(name),
            .line = p->line,
            .path_pattern = strdup("*"),
            .mode = RULE_MODE_ANY,
            .after = AFTER_NONE,
            .hook_timeout_s = 30,
    };
    lines[c->n_rules] = (RuleLines){};
    c->n_rules++;
    if (!rules[c->n_rules - 1].name || !rules[c->n_rules - 1].path_pattern)
        p->oom = true;
    p->section = SECTION_RULE;
}

/* A "[...]" line, seen by the reader so empty sections and line numbers are known. */
static void parser_section(Parser *p, const char *start)
{
    char header[256];
    const char *end = strchr(start, ']');
    size_t len;

    memset(p->seen, 0, sizeof(p->seen));
    p->section = SECTION_IGNORED;
    if (!end) {
        p->syntax_reported = true;
        return parser_error(p, p->line, "line", "section header without ']'");
    }
    len = (size_t)(end - start - 1);
    snprintf(header, sizeof(header), "[%.*s]", (int)(len < 200 ? len : 200), start + 1);
    if (strcmp(header, "[daemon]") == 0) {
        if (p->daemon_line)
            return parser_error(p, p->line, header, "section already given on line %u",
                                p->daemon_line);
        p->daemon_line = p->line;
        p->section = SECTION_DAEMON;
    } else if (strncmp(header, "[rule", 5) == 0 && (header[5] == ' ' || header[5] == '\t')) {
        char name[256];

        snprintf(name, sizeof(name), "%.*s", (int)(len - 5), start + 6);
        section_rule(p, name + strspn(name, " \t"), header);
    } else if (strcmp(header, "[rule]") == 0) {
        parser_error(p, p->line, header, "a rule needs a name: [rule NAME]");
    } else {
        parser_error(p, p->line, header, "unknown section (expected [daemon] or [rule NAME])");
    }
}

/*
 * Classify one raw line the way inih will: this is where line numbers come
 * from (Debian's libinih passes none to the handler), and where what inih
 * would silently accept but we refuse is caught.
 */
static void parser_classify(Parser *p, const char *raw, bool complete)
{
    const char *s = raw + strspn(raw, " \t\r\n");

    if (!complete) {
        p->skip_line = p->line;
        return parser_error(p, p->line, "line", "longer than %d characters", p->max_line - 2);
    }
    if (*s == '\0' || *s == ';' || *s == '#')
        return;
    if (*s == '[')
        return parser_section(p, s);
    if (s != raw && p->section != SECTION_NONE && p->section != SECTION_IGNORED) {
        /* inih would take an indented line as the continuation of the last value. */
        for (int k = 0; k < _KEY_MAX; k++)
            if (p->seen[k]) {
                p->skip_line = p->line;
                return parser_error(p, p->line, "line",
                                    "indented line would continue the previous value; "
                                    "remove the indentation");
            }
    }
    if (!strpbrk(s, "=:")) {
        p->syntax_reported = true;
        parser_error(p, p->line, "line", "expected KEY = VALUE or [SECTION]");
    }
}

static char *parser_read(char *str, int num, void *stream)
{
    Parser *p = stream;
    bool complete, new_line = p->line_start;
    size_t len;

    p->max_line = num;
    if (!fgets(str, num, p->f))
        return NULL;
    len = strlen(str);
    complete = (len > 0 && str[len - 1] == '\n') || feof(p->f);
    p->line_start = complete;
    if (!new_line) {
        /* The tail of a line that was too long: already reported. */
        str[0] = '\0';
        return str;
    }
    p->line++;
    parser_classify(p, str, complete);
    if (!complete)
        str[0] = '\0';
    return str;
}

/* ---- values ---- */

int config_parse_uint(const char *v, unsigned min, unsigned max, unsigned *ret)
{
    char *end;
    unsigned long x;

    if (!isdigit((unsigned char)*v))
        return -EINVAL;
    errno = 0;
    x = strtoul(v, &end, 10);
    if (errno || *end || x < min || x > max)
        return -ERANGE;
    *ret = (unsigned)x;
    return 0;
}

static int parse_hex16(const char *v, uint16_t *ret)
{
    char *end;
    unsigned long x;

    if (strncmp(v, "0x", 2) == 0 || strncmp(v, "0X", 2) == 0)
        v += 2;
    if (!isxdigit((unsigned char)*v))
        return -EINVAL;
    errno = 0;
    x = strtoul(v, &end, 16);
    if (errno || *end || x == 0 || x > 0xffff)
        return -EINVAL;
    *ret = (uint16_t)x;
    return 0;
}

static int parse_bool(const char *v, bool *ret)
{
    static const char *const yes[] = {"yes", "true", "on", "1"};
    static const char *const no[] = {"no", "false", "off", "0"};

    for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
        if (strcmp(v, yes[i]) == 0)
            return *ret = true, 0;
        if (strcmp(v, no[i]) == 0)
            return *ret = false, 0;
    }
    return -EINVAL;
}

static bool absolute_path(const char *v)
{
    return v[0] == '/' && strlen(v) < 4096;
}

/* ---- keys ---- */

static void key_string(Parser *p, char **dst, const char *v)
{
    if (replace_string(dst, v) < 0)
        p->oom = true;
}

static void key_socket(Parser *p, const char *key, const char *v)
{
    /* sun_path holds 108 bytes with the NUL. */
    if (!absolute_path(v) || strlen(v) >= 108)
        return parser_error(p, p->line, key, "'%s' is not an absolute path shorter than 108 bytes",
                            v);
    key_string(p, &p->config->socket_path, v);
}

static void key_state_dir(Parser *p, const char *key, const char *v)
{
    if (!absolute_path(v))
        return parser_error(p, p->line, key, "'%s' is not an absolute path", v);
    key_string(p, &p->config->state_dir, v);
}

static void key_number(Parser *p, const char *key, const char *v, unsigned min, unsigned max,
                       unsigned *dst)
{
    if (config_parse_uint(v, min, max, dst) < 0)
        parser_error(p, p->line, key, "'%s' is not a whole number from %u to %u", v, min, max);
}

static void key_workers(Parser *p, const char *key, const char *v)
{
    key_number(p, key, v, 1, CONFIG_WORKERS_MAX, &p->config->workers);
}

static void key_transfer_timeout(Parser *p, const char *key, const char *v)
{
    key_number(p, key, v, 100, 600000, &p->config->transfer_timeout_ms);
}

static void key_replug_timeout(Parser *p, const char *key, const char *v)
{
    key_number(p, key, v, 100, 600000, &p->config->replug_timeout_ms);
}

static void key_job_timeout(Parser *p, const char *key, const char *v)
{
    key_number(p, key, v, 1, 86400, &p->config->job_timeout_s);
}

static void key_retries(Parser *p, const char *key, const char *v)
{
    key_number(p, key, v, 0, CONFIG_RETRIES_MAX, &p->config->retries);
}

static void key_history_max_mb(Parser *p, const char *key, const char *v)
{
    key_number(p, key, v, 1, CONFIG_HISTORY_MAX_MB_MAX, &p->config->history_max_mb);
}

static void key_history_max_jobs(Parser *p, const char *key, const char *v)
{
    key_number(p, key, v, 0, CONFIG_HISTORY_MAX_JOBS_MAX, &p->config->history_max_jobs);
}

static void key_image_timeout(Parser *p, const char *key, const char *v)
{
    key_number(p, key, v, 1, 3600, &p->config->image_timeout_s);
}

static void key_wait_timeout(Parser *p, const char *key, const char *v)
{
    key_number(p, key, v, 1, CONFIG_WAIT_TIMEOUT_MAX, &p->config->wait_timeout_s);
}

static void key_extra_pids(Parser *p, const char *key, const char *v)
{
    _cleanup_free_ char *copy = strdup(v);
    char *save = NULL;
    Config *c = p->config;

    if (!copy) {
        p->oom = true;
        return;
    }
    for (char *w = strtok_r(copy, " \t,", &save); w; w = strtok_r(NULL, " \t,", &save)) {
        uint16_t pid;

        if (parse_hex16(w, &pid) < 0)
            return parser_error(p, p->line, key, "'%s' is not a USB product id (hex, 1-ffff)", w);
        if (config_accepts_board(c, ESP_USB_VID, pid))
            continue;
        if (c->n_extra_pids >= CONFIG_EXTRA_PIDS_MAX)
            return parser_error(p, p->line, key, "more than %u product ids", CONFIG_EXTRA_PIDS_MAX);
        c->extra_pids[c->n_extra_pids++] = pid;
    }
}

static void key_group(Parser *p, const char *key, const char *v)
{
    size_t n = strlen(v);

    /* The shadow-utils rule for portable names. */
    if (n == 0 || n > 32 || strspn(v, "abcdefghijklmnopqrstuvwxyz0123456789_-") != n ||
        v[0] == '-' || isdigit((unsigned char)v[0]))
        return parser_error(p, p->line, key, "'%s' is not a valid group name", v);
    key_string(p, &p->config->group, v);
}

static void key_auto_flash(Parser *p, const char *key, const char *v)
{
    if (parse_bool(v, &p->config->auto_flash) < 0)
        parser_error(p, p->line, key, "'%s' is not yes or no", v);
}

static void key_chip(Parser *p, const char *key, const char *v)
{
    Chip chip = chip_from_string(v);

    if (chip == CHIP_UNKNOWN || chip == _CHIP_MAX)
        return parser_error(p, p->line, key,
                            "unknown chip '%s' (esp32s2, esp32s3, esp32p4 or esp32s31)", v);
    if (p->seen[KEY_PID])
        return parser_error(p, p->line, key, "give chip= or pid=, not both (pid= on line %u)",
                            p->seen[KEY_PID]);
    parser_rule(p)->pid = chip_to_pid(chip);
}

static void key_pid(Parser *p, const char *key, const char *v)
{
    uint16_t pid;

    if (parse_hex16(v, &pid) < 0)
        return parser_error(p, p->line, key, "'%s' is not a USB product id (hex, 1-ffff)", v);
    if (p->seen[KEY_CHIP])
        return parser_error(p, p->line, key, "give chip= or pid=, not both (chip= on line %u)",
                            p->seen[KEY_CHIP]);
    parser_rule(p)->pid = pid;
}

static void key_path(Parser *p, const char *key, const char *v)
{
    size_t n = strlen(v);

    /* A pattern on sysfs names like "1-2.3": no whitespace, no slashes. */
    if (n == 0 || n > CONFIG_PATH_PATTERN_MAX || strpbrk(v, " \t/"))
        return parser_error(p, p->line, key,
                            "'%s' is not a port path pattern (1-%u characters, no spaces or '/')",
                            v, CONFIG_PATH_PATTERN_MAX);
    key_string(p, &parser_rule(p)->path_pattern, v);
}

static void key_mode(Parser *p, const char *key, const char *v)
{
    RuleMode m = rule_mode_from_string(v);

    if (m == _RULE_MODE_MAX)
        return parser_error(p, p->line, key, "'%s' is not any, runtime or dfu", v);
    parser_rule(p)->mode = m;
}

static void key_image(Parser *p, const char *key, const char *v)
{
    Rule *rule = parser_rule(p);
    _cleanup_close_ int fd = -1;
    Image *img = NULL;
    ErrInfo err = {};
    int r;

    if (!absolute_path(v))
        return parser_error(p, p->line, key, "rule '%s': '%s' is not an absolute path", rule->name,
                            v);
    key_string(p, &rule->image_path, v);
    /* Non-blocking: a FIFO (or a device) must be refused, not waited on for a writer. */
    fd = open(v, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return parser_error(p, p->line, key, "rule '%s': %s: %s", rule->name, v, strerror(errno));
    r = image_load_fd(fd, &img, &err);
    if (r < 0)
        return parser_error(p, p->line, key, "rule '%s': %s: %s [%s]", rule->name, v,
                            err.code ? err.message : strerror(-r),
                            espdfu_err_to_string(err.code ? err.code : ERR_IMAGE_IO));
    if (image_cache_add(p->cache, &img, &rule->image) < 0)
        p->oom = true;
}

static void key_after(Parser *p, const char *key, const char *v)
{
    AfterAction a = after_action_from_string(v);

    if (a == _AFTER_MAX)
        return parser_error(p, p->line, key, "'%s' is not none, reset or hook", v);
    parser_rule(p)->after = a;
}

/* No shell: words split on blanks, argv[0] an absolute path. */
static void key_hook(Parser *p, const char *key, const char *v)
{
    Rule *rule = parser_rule(p);
    _cleanup_free_ char *copy = strdup(v);
    char **argv = calloc(CONFIG_HOOK_ARGS_MAX + 1, sizeof(char *));
    char *save = NULL;
    size_t n = 0;

    if (!copy || !argv) {
        free(argv);
        p->oom = true;
        return;
    }
    rule->hook_argv = argv; /* freed with the rule, whatever happens below */
    for (char *w = strtok_r(copy, " \t", &save); w; w = strtok_r(NULL, " \t", &save)) {
        if (n >= CONFIG_HOOK_ARGS_MAX)
            return parser_error(p, p->line, key, "more than %u words", CONFIG_HOOK_ARGS_MAX);
        argv[n] = strdup(w);
        if (!argv[n++]) {
            p->oom = true;
            return;
        }
    }
    if (n == 0 || argv[0][0] != '/')
        parser_error(p, p->line, key, "the program must be an absolute path (no shell is used)");
}

static void key_hook_timeout(Parser *p, const char *key, const char *v)
{
    key_number(p, key, v, 1, 3600, &parser_rule(p)->hook_timeout_s);
}

typedef void (*KeyParser)(Parser *p, const char *key, const char *value);

static const struct {
    const char *name;
    Section section;
    KeyParser parse;
} keys[_KEY_MAX] = {
        [KEY_SOCKET] = {"socket", SECTION_DAEMON, key_socket},
        [KEY_STATE_DIR] = {"state-dir", SECTION_DAEMON, key_state_dir},
        [KEY_WORKERS] = {"workers", SECTION_DAEMON, key_workers},
        [KEY_TRANSFER_TIMEOUT] = {"transfer-timeout-ms", SECTION_DAEMON, key_transfer_timeout},
        [KEY_REPLUG_TIMEOUT] = {"replug-timeout-ms", SECTION_DAEMON, key_replug_timeout},
        [KEY_JOB_TIMEOUT] = {"job-timeout-s", SECTION_DAEMON, key_job_timeout},
        [KEY_RETRIES] = {"retries", SECTION_DAEMON, key_retries},
        [KEY_HISTORY_MAX_MB] = {"history-max-mb", SECTION_DAEMON, key_history_max_mb},
        [KEY_HISTORY_MAX_JOBS] = {"history-max-jobs", SECTION_DAEMON, key_history_max_jobs},
        [KEY_WAIT_TIMEOUT] = {"wait-timeout-s", SECTION_DAEMON, key_wait_timeout},
        [KEY_IMAGE_TIMEOUT] = {"image-timeout-s", SECTION_DAEMON, key_image_timeout},
        [KEY_EXTRA_PIDS] = {"extra-pids", SECTION_DAEMON, key_extra_pids},
        [KEY_GROUP] = {"group", SECTION_DAEMON, key_group},
        [KEY_AUTO_FLASH] = {"auto-flash", SECTION_DAEMON, key_auto_flash},
        [KEY_CHIP] = {"chip", SECTION_RULE, key_chip},
        [KEY_PID] = {"pid", SECTION_RULE, key_pid},
        [KEY_PATH] = {"path", SECTION_RULE, key_path},
        [KEY_MODE] = {"mode", SECTION_RULE, key_mode},
        [KEY_IMAGE] = {"image", SECTION_RULE, key_image},
        [KEY_AFTER] = {"after", SECTION_RULE, key_after},
        [KEY_HOOK] = {"hook", SECTION_RULE, key_hook},
        [KEY_HOOK_TIMEOUT] = {"hook-timeout-s", SECTION_RULE, key_hook_timeout},
};

static int parser_handle(void *user, const char *section, const char *name, const char *value)
{
    Parser *p = user;
    int other = -1;

    /* Always 1: every error is recorded here, and inih's own result then means
     * a syntax error only. */
    if (p->oom || p->line == p->skip_line || p->section == SECTION_IGNORED)
        return 1;
    if (p->section == SECTION_NONE) {
        parser_error(p, p->line, name, "key outside a section ([daemon] or [rule NAME])");
        return 1;
    }
    for (int k = 0; k < _KEY_MAX; k++) {
        if (strcmp(keys[k].name, name) != 0)
            continue;
        if (keys[k].section != p->section) {
            other = k;
            continue;
        }
        if (p->seen[k]) {
            parser_error(p, p->line, name, "given twice (first on line %u)", p->seen[k]);
            return 1;
        }
        p->seen[k] = p->line;
        if (p->section == SECTION_RULE)
            p->rule_lines[p->config->n_rules - 1].key[k] = p->line;
        keys[k].parse(p, name, value);
        return 1;
    }
    if (other >= 0)
        parser_error(p, p->line, name, "belongs in %s",
                     keys[other].section == SECTION_DAEMON ? "[daemon]" : "a [rule NAME] section");
    else
        parser_error(p, p->line, name, "unknown key");
    return 1;
}

/* Checks that need the whole file: extra-pids= may come after the rules using them. */
static void parser_finish_rule(Parser *p, Rule *r, const RuleLines *l)
{
    const Image *img = r->image ? r->image->image : NULL;
    unsigned chip_line = l->key[KEY_CHIP] ? l->key[KEY_CHIP] : l->key[KEY_PID];
    const char *chip_key = l->key[KEY_CHIP] ? "chip" : "pid";
    char header[64];

    snprintf(header, sizeof(header), "[rule %s]", r->name);
    if (!l->key[KEY_IMAGE])
        parser_error(p, r->line, header, "no image= given");
    if (img && chip_line && !image_matches_device(img, ESP_USB_VID, r->pid))
        parser_error(p, chip_line, chip_key,
                     "rule '%s': image %s is for %04x:%04x (%s), not %s (pid 0x%04x)", r->name,
                     r->image_path, img->vid, img->pid, chip_to_string(img->chip),
                     chip_to_string(chip_from_pid(r->pid)), r->pid);
    if (img && !chip_line)
        r->pid = img->pid == 0xffff ? 0 : img->pid;
    if (r->pid && !config_accepts_board(p->config, ESP_USB_VID, r->pid))
        parser_error(p, chip_line ? chip_line : l->key[KEY_IMAGE], chip_key,
                     "rule '%s': product id 0x%04x is not a DFU board espdfud accepts; add it "
                     "to extra-pids= in [daemon]",
                     r->name, r->pid);
    if (r->after == AFTER_HOOK && !r->hook_argv)
        parser_error(p, l->key[KEY_AFTER], "after", "rule '%s': after=hook needs hook=", r->name);
    if (r->after != AFTER_HOOK && r->hook_argv)
        parser_error(p, l->key[KEY_HOOK], "hook", "rule '%s': hook= is only run with after=hook",
                     r->name);
}

/* A regular file only: a directory would otherwise fail later as a vague read error. */
static int open_config(const char *path, FILE **ret)
{
    /* Non-blocking: opening a FIFO must not wait for a writer. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    FILE *f = fd >= 0 ? fdopen(fd, "re") : NULL;
    struct stat st;
    int r = 0;

    if (!f) {
        r = -errno;
        if (fd >= 0)
            close(fd);
        return r;
    }
    if (fstat(fileno(f), &st) < 0)
        r = -errno;
    else if (!S_ISREG(st.st_mode))
        r = S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
    if (r < 0) {
        fclose(f);
        return r;
    }
    *ret = f;
    return 0;
}

int config_parse_file(const char *path, ImageCache *cache, Config **ret, ConfigErrors *errors)
{
    _cleanup_(config_freep) Config *c = NULL;
    _cleanup_fclose_ FILE *f = NULL;
    Parser p;
    int r;

    r = config_new_default(&c);
    if (r < 0)
        return r;
    c->path = strdup(path);
    if (!c->path)
        return -ENOMEM;
    r = open_config(path, &f);
    if (r == -EINVAL) {
        config_errors_add(errors, "%s: not a regular file (a FIFO, a device or a socket)", path);
        return r;
    }
    if (r < 0) {
        config_errors_add(errors, "%s: %s", path, strerror(-r));
        return r;
    }
    p = (Parser){.file = path,
                 .f = f,
                 .line_start = true,
                 .config = c,
                 .cache = cache,
                 .errors = errors};
    r = ini_parse_stream(parser_read, &p, parser_handle, &p);
    if (r == -2)
        p.oom = true;
    else if (r > 0 && !p.syntax_reported)
        parser_error(&p, (unsigned)r, "line", "syntax error");
    if (ferror(f))
        parser_error(&p, p.line, "file", "read error");
    for (size_t i = 0; i < c->n_rules && !p.oom; i++)
        parser_finish_rule(&p, &c->rules[i], &p.rule_lines[i]);
    free(p.rule_lines);
    if (p.oom)
        return -ENOMEM;
    if (p.failed)
        return -EINVAL;
    *ret = TAKE_PTR(c);
    return 0;
}
