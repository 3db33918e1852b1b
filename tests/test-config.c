/* SPDX-License-Identifier: MIT */
/*
 * daemon/config.c: every key, every default, and every error message with its
 * FILE:LINE: KEY: prefix. Rule images are real files: the golden esp32s2
 * image, a copy with one byte flipped, and a copy re-labelled for PID 0x1001.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "daemon-test.h"
#include "image-cache.h"
#include "util.h"

#define S2_IMAGE FIXTURES_DIR "/mkdfu/1/dfu.bin"

static char dir[64];
static char conf_path[128];
static char broken_path[128];
static char pid1001_path[128];

static int read_file(const char *path, uint8_t **ret, size_t *ret_size)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    uint8_t *buf;

    if (fd < 0 || fstat(fd, &st) < 0)
        return -errno;
    buf = malloc((size_t)st.st_size);
    if (!buf)
        return -ENOMEM;
    if (read(fd, buf, (size_t)st.st_size) != st.st_size) {
        free(buf);
        return -EIO;
    }
    *ret = buf;
    *ret_size = (size_t)st.st_size;
    return 0;
}

static int write_file(const char *path, const void *data, size_t size)
{
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

    if (fd < 0 || write(fd, data, size) != (ssize_t)size)
        return -EIO;
    return 0;
}

/* The fixture twice: a byte flipped (CRC mismatch), and relabelled as 303a:1001. */
static int make_images(void)
{
    _cleanup_free_ uint8_t *data = NULL;
    size_t size = 0;
    uint32_t crc;
    int r;

    r = read_file(S2_IMAGE, &data, &size);
    if (r < 0)
        return r;
    snprintf(broken_path, sizeof(broken_path), "%s/broken.bin", dir);
    snprintf(pid1001_path, sizeof(pid1001_path), "%s/pid1001.bin", dir);
    data[200] ^= 0xff;
    if (write_file(broken_path, data, size) < 0)
        return -EIO;
    data[200] ^= 0xff;
    /* Suffix: bcdDevice, idProduct, idVendor (LE), ..., then dwCRC over all before it. */
    data[size - 14] = 0x01;
    data[size - 13] = 0x10;
    crc = image_dfu_crc(data, size - 4);
    for (int i = 0; i < 4; i++)
        data[size - 4 + i] = (uint8_t)(crc >> (8 * i));
    return write_file(pid1001_path, data, size);
}

/* text with @S2@, @BROKEN@, @PID1001@ and @DIR@ replaced. */
static char *expand(const char *text)
{
    static const struct {
        const char *key;
        const char *value;
    } subst[] = {
            {"@S2@", S2_IMAGE},
            {"@BROKEN@", broken_path},
            {"@PID1001@", pid1001_path},
            {"@DIR@", dir},
    };
    char *out = malloc(strlen(text) * 4 + 4096);
    char *o = out;

    while (*text) {
        bool done = false;

        for (size_t i = 0; i < ELEMENTSOF(subst) && !done; i++)
            if (strncmp(text, subst[i].key, strlen(subst[i].key)) == 0) {
                o = stpcpy(o, subst[i].value);
                text += strlen(subst[i].key);
                done = true;
            }
        if (!done)
            *o++ = *text++;
    }
    *o = '\0';
    return out;
}

static int parse(const char *text, ImageCache *cache, Config **ret, ConfigErrors *errors)
{
    _cleanup_free_ char *body = expand(text);

    if (write_file(conf_path, body, strlen(body)) < 0)
        return -EIO;
    return config_parse_file(conf_path, cache, ret, errors);
}

static bool has_error(const ConfigErrors *e, const char *want)
{
    for (size_t i = 0; i < e->n; i++)
        if (strncmp(e->lines[i], conf_path, strlen(conf_path)) == 0 &&
            strstr(e->lines[i] + strlen(conf_path), want))
            return true;
    return false;
}

/* ---- tests ---- */

static void test_defaults(T *t)
{
    _cleanup_(image_cache_freep) ImageCache *cache = NULL;
    _cleanup_(config_freep) Config *c = NULL;
    ConfigErrors e = {};

    CHECK(image_cache_new(&cache) == 0);
    CHECK(parse("; nothing but a comment\n# and another\n\n", cache, &c, &e) == 0);
    CHECK(e.n == 0);
    CHECK_STREQ(c->socket_path, CONFIG_DEFAULT_SOCKET);
    CHECK_STREQ(c->state_dir, CONFIG_DEFAULT_STATE_DIR);
    CHECK_STREQ(c->group, "espdfu");
    CHECK(c->workers == 32);
    CHECK(c->transfer_timeout_ms == 30000);
    CHECK(c->replug_timeout_ms == 10000);
    CHECK(c->job_timeout_s == 600);
    CHECK(c->retries == 1);
    CHECK(c->history_max_mb == 64);
    CHECK(c->auto_flash);
    CHECK(c->n_rules == 0 && c->n_extra_pids == 0);
}

static void test_every_key(T *t)
{
    _cleanup_(image_cache_freep) ImageCache *cache = NULL;
    _cleanup_(config_freep) Config *c = NULL;
    ConfigErrors e = {};
    const Rule *r;

    CHECK(image_cache_new(&cache) == 0);
    CHECK(parse("[daemon]\n"
                "socket = /run/x/x.sock\n"
                "state-dir = /var/lib/x\n"
                "workers = 64\n"
                "transfer-timeout-ms = 5000\n"
                "replug-timeout-ms = 2000\n"
                "job-timeout-s = 120\n"
                "retries = 3 ; inline comment\n"
                "history-max-mb = 4096\n"
                "extra-pids = 0x1001, 1002 0x0002\n"
                "group = factory\n"
                "auto-flash = no\n"
                "\n"
                "[rule s2-line-a]\n"
                "chip = esp32s2\n"
                "path = 1-1.*\n"
                "mode = dfu\n"
                "image = @S2@\n"
                "after = hook\n"
                "hook = /usr/bin/logger -t espdfu flashed\n"
                "hook-timeout-s = 5\n"
                "[rule other]\n"
                "pid = 0x0002\n"
                "image = @S2@\n"
                "after = reset\n",
                cache, &c, &e) == 0);
    CHECK(e.n == 0);
    CHECK_STREQ(c->socket_path, "/run/x/x.sock");
    CHECK_STREQ(c->state_dir, "/var/lib/x");
    CHECK(c->workers == 64 && c->transfer_timeout_ms == 5000 && c->replug_timeout_ms == 2000);
    CHECK(c->job_timeout_s == 120 && c->retries == 3 && !c->auto_flash);
    CHECK(c->history_max_mb == 4096);
    /* 0x0002 is a chip PID already: not repeated among the extras. */
    CHECK(c->n_extra_pids == 2 && c->extra_pids[0] == 0x1001 && c->extra_pids[1] == 0x1002);
    CHECK_STREQ(c->group, "factory");
    CHECK(c->n_rules == 2);
    r = &c->rules[0];
    CHECK_STREQ(r->name, "s2-line-a");
    CHECK(r->line == 14 && r->pid == 0x0002 && r->mode == RULE_MODE_DFU);
    CHECK_STREQ(r->path_pattern, "1-1.*");
    CHECK_STREQ(r->image_path, S2_IMAGE);
    CHECK(r->image && r->image->image->pid == 0x0002);
    CHECK(r->after == AFTER_HOOK && r->hook_timeout_s == 5);
    CHECK_STREQ(r->hook_argv[0], "/usr/bin/logger");
    CHECK_STREQ(r->hook_argv[3], "flashed");
    CHECK(r->hook_argv[4] == NULL);
    CHECK(c->rules[1].after == AFTER_RESET && c->rules[1].mode == RULE_MODE_ANY);
    CHECK_STREQ(c->rules[1].path_pattern, "*");
    /* One image file used by two rules is one cached copy. */
    CHECK(image_cache_count(cache) == 1);
    CHECK(c->rules[0].image == c->rules[1].image && c->rules[0].image->n_ref == 2);
}

static void test_errors(T *t)
{
    static const struct {
        const char *text;
        const char *want;
    } cases[] = {
            {"[daemon]\nworkers = 0\n", ":2: workers: '0' is not a whole number from 1 to 256"},
            {"[daemon]\nworkers = 257\n", ":2: workers: '257' is not a whole number from 1 to 256"},
            {"[daemon]\nworkers = many\n", ":2: workers: 'many' is not a whole number"},
            {"[daemon]\nworkers = -1\n", ":2: workers: '-1' is not a whole number"},
            {"[daemon]\nsocket = run/x.sock\n",
             ":2: socket: 'run/x.sock' is not an absolute path shorter than 108 bytes"},
            {"[daemon]\nstate-dir = var\n", ":2: state-dir: 'var' is not an absolute path"},
            {"[daemon]\ntransfer-timeout-ms = 50\n",
             ":2: transfer-timeout-ms: '50' is not a whole number from 100 to 600000"},
            {"[daemon]\nreplug-timeout-ms = 700000\n",
             ":2: replug-timeout-ms: '700000' is not a whole number from 100 to 600000"},
            {"[daemon]\njob-timeout-s = 0\n",
             ":2: job-timeout-s: '0' is not a whole number from 1 to 86400"},
            {"[daemon]\nretries = 11\n", ":2: retries: '11' is not a whole number from 0 to 10"},
            {"[daemon]\nhistory-max-mb = 0\n",
             ":2: history-max-mb: '0' is not a whole number from 1 to 4096"},
            {"[daemon]\nhistory-max-mb = 4097\n",
             ":2: history-max-mb: '4097' is not a whole number from 1 to 4096"},
            {"[daemon]\nextra-pids = 0x1001 zz\n",
             ":2: extra-pids: 'zz' is not a USB product id (hex, 1-ffff)"},
            {"[daemon]\nextra-pids = 0x10000\n",
             ":2: extra-pids: '0x10000' is not a USB product id"},
            {"[daemon]\nextra-pids = 1001 1002 1003 1004 1005 1006 1007 1008 1009 100a 100b "
             "100c 100d 100e 100f 1010 1011\n",
             ":2: extra-pids: more than 16 product ids"},
            {"[daemon]\ngroup = 9lives\n", ":2: group: '9lives' is not a valid group name"},
            {"[daemon]\nauto-flash = maybe\n", ":2: auto-flash: 'maybe' is not yes or no"},
            {"workers = 4\n", ":1: workers: key outside a section ([daemon] or [rule NAME])"},
            {"[daemon]\nfoo = 1\n", ":2: foo: unknown key"},
            {"[daemon]\nchip = esp32s2\n", ":2: chip: belongs in a [rule NAME] section"},
            {"[rule a]\nimage = @S2@\nworkers = 2\n", ":3: workers: belongs in [daemon]"},
            {"[daemon]\nworkers = 2\nworkers = 3\n", ":3: workers: given twice (first on line 2)"},
            {"[daemon]\nworkers = 2\n  retries = 3\n",
             ":3: line: indented line would continue the previous value; remove the indentation"},
            {"[daemon]\njunk\n", ":2: line: expected KEY = VALUE or [SECTION]"},
            {"[daemon\nworkers = 2\n", ":1: line: section header without ']'"},
            {"[bogus]\nx = 1\n", ":1: [bogus]: unknown section (expected [daemon] or [rule NAME])"},
            {"[rule]\n", ":1: [rule]: a rule needs a name: [rule NAME]"},
            {"[rule a/b]\n",
             ":1: [rule a/b]: rule name must be 1-40 letters, digits, '_', '.' or '-'"},
            {"[rule a]\nimage = @S2@\n[rule a]\nimage = @S2@\n",
             ":3: [rule a]: rule 'a' already defined on line 1"},
            {"[daemon]\n[daemon]\n", ":2: [daemon]: section already given on line 1"},
            {"[rule a]\nchip = esp8266\nimage = @S2@\n",
             ":2: chip: unknown chip 'esp8266' (esp32s2, esp32s3, esp32p4 or esp32s31)"},
            {"[rule a]\npid = 2\nchip = esp32s2\nimage = @S2@\n",
             ":3: chip: give chip= or pid=, not both (pid= on line 2)"},
            {"[rule a]\nchip = esp32s2\npid = 2\nimage = @S2@\n",
             ":3: pid: give chip= or pid=, not both (chip= on line 2)"},
            {"[rule a]\npid = xyz\nimage = @S2@\n",
             ":2: pid: 'xyz' is not a USB product id (hex, 1-ffff)"},
            {"[rule a]\npath = 1 2\nimage = @S2@\n",
             ":2: path: '1 2' is not a port path pattern (1-63 characters, no spaces or '/')"},
            {"[rule a]\npath = ../x\nimage = @S2@\n", ":2: path: '../x' is not a port path"},
            {"[rule a]\nmode = boot\nimage = @S2@\n",
             ":2: mode: 'boot' is not any, runtime or dfu"},
            {"[rule a]\nimage = rel.bin\n",
             ":2: image: rule 'a': 'rel.bin' is not an absolute path"},
            {"[rule a]\nimage = @DIR@/missing.bin\n",
             ":2: image: rule 'a': @DIR@/missing.bin: No such file or directory"},
            {"[rule a]\nimage = @DIR@\n", ":2: image: rule 'a': @DIR@: "},
            {"[rule a]\nimage = @BROKEN@\n", ":2: image: rule 'a': @BROKEN@: "},
            {"[rule a]\nimage = @BROKEN@\n", "[crc-mismatch]"},
            {"[rule a]\nchip = esp32s3\nimage = @S2@\n",
             ":2: chip: rule 'a': image @S2@ is for 303a:0002 (esp32s2), not esp32s3 (pid 0x0009)"},
            {"[rule a]\npid = 0x1001\nimage = @S2@\n",
             ":2: pid: rule 'a': image @S2@ is for 303a:0002 (esp32s2), not unknown (pid 0x1001)"},
            {"[rule a]\nimage = @PID1001@\n",
             ":2: pid: rule 'a': product id 0x1001 is not a DFU board espdfud accepts; add it to "
             "extra-pids= in [daemon]"},
            {"[rule a]\nimage = @S2@\nafter = reboot\n",
             ":3: after: 'reboot' is not none, reset or hook"},
            {"[rule a]\nimage = @S2@\nafter = hook\nhook = bin/x\n",
             ":4: hook: the program must be an absolute path (no shell is used)"},
            {"[rule a]\nimage = @S2@\nafter = hook\nhook = /x 1 2 3 4 5 6 7 8 9 10 11 12 13 14 "
             "15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32\n",
             ":4: hook: more than 32 words"},
            {"[rule a]\nimage = @S2@\nafter = hook\n",
             ":3: after: rule 'a': after=hook needs hook="},
            {"[rule a]\nimage = @S2@\nhook = /bin/true\n",
             ":3: hook: rule 'a': hook= is only run with after=hook"},
            {"[rule a]\nimage = @S2@\nhook-timeout-s = 0\n",
             ":3: hook-timeout-s: '0' is not a whole number from 1 to 3600"},
            {"[rule a]\nmode = dfu\n", ":1: [rule a]: no image= given"},
            {"[rule a]\n", ":1: [rule a]: no image= given"},
    };

    for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
        _cleanup_(image_cache_freep) ImageCache *cache = NULL;
        _cleanup_free_ char *want = expand(cases[i].want);
        Config *c = NULL;
        ConfigErrors e = {};
        int r;

        CHECK(image_cache_new(&cache) == 0);
        r = parse(cases[i].text, cache, &c, &e);
        if (r != -EINVAL || !has_error(&e, want)) {
            fprintf(stderr, "    case %zu: r=%d, want \"%s\"; got:\n", i, r, want);
            for (size_t k = 0; k < e.n; k++)
                fprintf(stderr, "      %s\n", e.lines[k]);
        }
        CHECK(r == -EINVAL);
        CHECK(c == NULL);
        CHECK(has_error(&e, want));
        config_errors_clear(&e);
    }
}

static void test_long_line(T *t)
{
    _cleanup_(image_cache_freep) ImageCache *cache = NULL;
    char text[512] = "[daemon]\nstate-dir = /";
    Config *c = NULL;
    ConfigErrors e = {};

    memset(text + strlen(text), 'a', 300);
    strcat(text, "\nworkers = 0\n");
    CHECK(image_cache_new(&cache) == 0);
    CHECK(parse(text, cache, &c, &e) == -EINVAL);
    CHECK(has_error(&e, ":2: line: longer than"));
    /* The tail of the long line is not taken for a line of its own. */
    CHECK(has_error(&e, ":3: workers: '0'"));
    CHECK(e.n == 2);
    config_errors_clear(&e);
}

static void test_all_errors_collected(T *t)
{
    _cleanup_(image_cache_freep) ImageCache *cache = NULL;
    char text[8192] = "[daemon]\n";
    Config *c = NULL;
    ConfigErrors e = {};

    for (int i = 0; i < 100; i++)
        strcat(text, "bogus = 1\n");
    CHECK(image_cache_new(&cache) == 0);
    CHECK(parse(text, cache, &c, &e) == -EINVAL);
    CHECK(e.n == CONFIG_ERRORS_MAX);
    CHECK(e.dropped == 100 - CONFIG_ERRORS_MAX);
    CHECK(has_error(&e, ":2: bogus: unknown key"));
    config_errors_clear(&e);
}

static void test_extra_pid_after_rule(T *t)
{
    _cleanup_(image_cache_freep) ImageCache *cache = NULL;
    _cleanup_(config_freep) Config *c = NULL;
    ConfigErrors e = {};

    /* extra-pids= may come after the rule that needs it: checked once the file is read. */
    CHECK(image_cache_new(&cache) == 0);
    CHECK(parse("[rule a]\nimage = @PID1001@\n[daemon]\nextra-pids = 1001\n", cache, &c, &e) == 0);
    CHECK(c->rules[0].pid == 0x1001);
    CHECK(config_accepts_board(c, 0x303a, 0x1001));
    CHECK(!config_accepts_board(c, 0x303a, 0x1003));
    CHECK(!config_accepts_board(c, 0x1234, 0x0002));
}

static void test_missing_file(T *t)
{
    _cleanup_(image_cache_freep) ImageCache *cache = NULL;
    Config *c = NULL;
    ConfigErrors e = {};
    char path[128];

    snprintf(path, sizeof(path), "%s/nope.conf", dir);
    CHECK(image_cache_new(&cache) == 0);
    CHECK(config_parse_file(path, cache, &c, &e) == -ENOENT);
    CHECK(c == NULL && e.n == 1 && strstr(e.lines[0], "nope.conf: No such file"));
    config_errors_clear(&e);
    CHECK(config_parse_file(dir, cache, &c, &e) == -EISDIR);
    CHECK(c == NULL && e.n == 1 && strstr(e.lines[0], ": Is a directory"));
    config_errors_clear(&e);
}

static void test_find_rule(T *t)
{
    _cleanup_(image_cache_freep) ImageCache *cache = NULL;
    _cleanup_(config_freep) Config *c = NULL;
    ConfigErrors e = {};
    const Rule *r;

    CHECK(image_cache_new(&cache) == 0);
    CHECK(parse("[rule dfu-only]\npath = 1-1\nmode = dfu\nimage = @S2@\n"
                "[rule hub2]\npath = 1-2.*\nimage = @S2@\n"
                "[rule s3]\nchip = esp32s3\nimage = @PID1001@\n"
                "[daemon]\nextra-pids = 1001\n",
                cache, &c, &e) == -EINVAL);
    /* The image for 1001 does not fit esp32s3: fix the rule, then match. */
    config_errors_clear(&e);
    CHECK(parse("[rule dfu-only]\npath = 1-1\nmode = dfu\nimage = @S2@\n"
                "[rule hub2]\npath = 1-2.*\nimage = @S2@\n"
                "[rule any-1001]\npid = 1001\nimage = @PID1001@\n"
                "[daemon]\nextra-pids = 1001\n",
                cache, &c, &e) == 0);
    CHECK(config_find_rule(c, 0x0002, "1-1", RULE_MODE_RUNTIME) == NULL);
    CHECK(config_find_rule(c, 0x0002, "1-1", RULE_MODE_ANY) == NULL);
    r = config_find_rule(c, 0x0002, "1-1", RULE_MODE_DFU);
    CHECK(r && strcmp(r->name, "dfu-only") == 0);
    r = config_find_rule(c, 0x0002, "1-2.4", RULE_MODE_RUNTIME);
    CHECK(r && strcmp(r->name, "hub2") == 0);
    CHECK(config_find_rule(c, 0x0002, "1-2", RULE_MODE_DFU) == NULL);
    CHECK(config_find_rule(c, 0x0009, "1-2.4", RULE_MODE_DFU) == NULL);
    r = config_find_rule(c, 0x1001, "3-7", RULE_MODE_ANY);
    CHECK(r && strcmp(r->name, "any-1001") == 0);
}

static void test_overrides(T *t)
{
    _cleanup_(config_freep) Config *c = NULL;
    ConfigOverrides o = {.socket_path = "/tmp/s.sock", .workers = 3};

    CHECK(config_new_default(&c) == 0);
    CHECK(config_apply_overrides(c, &o) == 0);
    CHECK_STREQ(c->socket_path, "/tmp/s.sock");
    CHECK_STREQ(c->state_dir, CONFIG_DEFAULT_STATE_DIR);
    CHECK(c->workers == 3);
}

static void test_strings(T *t)
{
    for (int m = 0; m < _RULE_MODE_MAX; m++)
        CHECK(rule_mode_from_string(rule_mode_to_string((RuleMode)m)) == (RuleMode)m);
    for (int a = 0; a < _AFTER_MAX; a++)
        CHECK(after_action_from_string(after_action_to_string((AfterAction)a)) == (AfterAction)a);
    CHECK(rule_mode_from_string("DFU") == _RULE_MODE_MAX);
    CHECK(after_action_from_string(NULL) == _AFTER_MAX);
}

int main(void)
{
    snprintf(dir, sizeof(dir), "/tmp/test-config.XXXXXX");
    if (!mkdtemp(dir))
        return 1;
    snprintf(conf_path, sizeof(conf_path), "%s/espdfud.conf", dir);
    if (make_images() < 0) {
        fprintf(stderr, "cannot prepare images in %s\n", dir);
        return 1;
    }
    RUN(test_defaults);
    RUN(test_every_key);
    RUN(test_errors);
    RUN(test_long_line);
    RUN(test_all_errors_collected);
    RUN(test_extra_pid_after_rule);
    RUN(test_missing_file);
    RUN(test_find_rule);
    RUN(test_overrides);
    RUN(test_strings);
    unlink(conf_path);
    unlink(broken_path);
    unlink(pid1001_path);
    rmdir(dir);
    return test_summary();
}
