/* SPDX-License-Identifier: MIT */
/*
 * The wire codec (protocol/wire*.c): framing, strict request parsing with every
 * limit hit on purpose on both sides, UTF-8 edge cases, and round trips of the
 * lines both sides build. Links only espdfu-core.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon-test.h"
#include "wire.h"

/* ---- helpers ---- */

static int parse(const char *line, WireRequest *r, WireFailure *f)
{
    return wire_request_parse(line, strlen(line), r, f);
}

/* A request that must be refused with `code` and a message containing `needle`. */
static bool refused(const char *line, WireError code, const char *needle)
{
    WireRequest r;
    WireFailure f;

    if (parse(line, &r, &f) >= 0) {
        fprintf(stderr, "    accepted: %.200s\n", line);
        wire_request_done(&r);
        return false;
    }
    if (f.code != code || (needle && !strstr(f.message, needle))) {
        fprintf(stderr, "    %.120s -> %s \"%s\", want %s \"%s\"\n", line,
                wire_error_to_string(f.code), f.message, wire_error_to_string(code),
                needle ? needle : "");
        return false;
    }
    return true;
}

static bool accepted(const char *line, WireMethod m)
{
    WireRequest r;
    WireFailure f;
    bool ok;

    if (parse(line, &r, &f) < 0) {
        fprintf(stderr, "    refused: %.200s: %s\n", line, f.message);
        return false;
    }
    ok = r.method == m;
    wire_request_done(&r);
    return ok;
}

/* "{"id":1,"method":"flash","params":{"paths":[ N paths ]}}" */
static char *flash_with_paths(size_t n, const char *path)
{
    size_t size = 64 + n * (strlen(path) + 3);
    char *s = malloc(size), *p = s;

    p += sprintf(p, "{\"id\":1,\"method\":\"flash\",\"params\":{\"paths\":[");
    for (size_t i = 0; i < n; i++)
        p += sprintf(p, "%s\"%s\"", i ? "," : "", path);
    sprintf(p, "]}}");
    return s;
}

/* ---- tables ---- */

static void test_enums(T *t)
{
    for (WireMethod m = 0; m < _WIRE_METHOD_MAX; m++)
        CHECK(wire_method_from_string(wire_method_to_string(m)) == m);
    for (WireError e = 0; e < _WIRE_ERROR_MAX; e++)
        CHECK(wire_error_from_string(wire_error_to_string(e)) == e);
    for (WireEvent e = 0; e < _WIRE_EVENT_MAX; e++)
        CHECK(wire_event_from_string(wire_event_to_string(e)) == e);
    CHECK(wire_method_from_string("Status") == _WIRE_METHOD_MAX);
    CHECK(wire_method_from_string(NULL) == _WIRE_METHOD_MAX);
    CHECK(wire_method_to_string(_WIRE_METHOD_MAX) == NULL);
    CHECK(wire_error_to_string(_WIRE_ERROR_MAX) == NULL);
    CHECK(wire_event_to_string(_WIRE_EVENT_MAX) == NULL);
    CHECK(wire_error_from_string("Internal") == _WIRE_ERROR_MAX);
    CHECK(wire_event_from_string(NULL) == _WIRE_EVENT_MAX);
    CHECK(!wire_method_is_changing(_WIRE_METHOD_MAX));
    CHECK_STREQ(wire_error_to_string(WIRE_ERROR_TOO_MANY_CONNECTIONS), "too-many-connections");
    CHECK_STREQ(wire_event_to_string(WIRE_EVENT_JOB_PROGRESS), "job.progress");
    CHECK(wire_method_is_changing(WIRE_METHOD_FLASH));
    CHECK(wire_method_is_changing(WIRE_METHOD_RELOAD));
    CHECK(!wire_method_is_changing(WIRE_METHOD_SUBSCRIBE));
    CHECK(!wire_method_is_changing(WIRE_METHOD_HELLO));
    CHECK(wire_job_state_is_valid("waiting-for-replug"));
    CHECK(!wire_job_state_is_valid("active"));
}

static void test_utf8(T *t)
{
    static const struct {
        const char *s;
        bool ok;
    } cases[] = {
            {"", true},
            {"plain ascii", true},
            {"\xc2\xa9", true},          /* U+00A9 */
            {"\xe2\x82\xac", true},      /* U+20AC */
            {"\xf0\x9f\x98\x80", true},  /* U+1F600 */
            {"\xf4\x8f\xbf\xbf", true},  /* U+10FFFF, the last */
            {"\xed\x9f\xbf", true},      /* U+D7FF, below the surrogates */
            {"\xee\x80\x80", true},      /* U+E000, above them */
            {"\xc0\x80", false},         /* overlong NUL */
            {"\xc1\xbf", false},         /* overlong */
            {"\xe0\x80\xaf", false},     /* overlong '/' */
            {"\xf0\x8f\xbf\xbf", false}, /* overlong U+FFFF */
            {"\xed\xa0\x80", false},     /* U+D800 */
            {"\xed\xbf\xbf", false},     /* U+DFFF */
            {"\xf4\x90\x80\x80", false}, /* U+110000 */
            {"\xf5\x80\x80\x80", false}, /* lead beyond F4 */
            {"\xff", false},
            {"\x80", false},         /* lone continuation */
            {"\xc2", false},         /* truncated */
            {"\xe2\x82", false},     /* truncated */
            {"\xf0\x9f\x98", false}, /* truncated */
            {"\xe2\x28\xa1", false}, /* bad continuation */
            {"a\xc2\xa9z\xf0\x9f\x98\x80", true},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (wire_utf8_is_valid(cases[i].s, strlen(cases[i].s)) != cases[i].ok)
            fprintf(stderr, "    case %zu\n", i);
        CHECK(wire_utf8_is_valid(cases[i].s, strlen(cases[i].s)) == cases[i].ok);
    }
}

/* ---- framing ---- */

static void test_framer_lines(T *t)
{
    WireFramer f;
    char *line;
    size_t len;

    wire_framer_init(&f, WIRE_MAX_LINE);
    CHECK(wire_framer_next(&f, &line, &len) == 0);
    CHECK(wire_framer_feed(&f, "ab", 2) == 0);
    CHECK(wire_framer_next(&f, &line, &len) == 0);
    CHECK(wire_framer_pending(&f) == 2);
    CHECK(wire_framer_feed(&f, "c\n\nde\nf", 7) == 0);
    CHECK(wire_framer_next(&f, &line, &len) == 1);
    CHECK(len == 3 && strcmp(line, "abc") == 0);
    CHECK(wire_framer_next(&f, &line, &len) == 1);
    CHECK(len == 0);
    CHECK(wire_framer_next(&f, &line, &len) == 1);
    CHECK_STREQ(line, "de");
    CHECK(wire_framer_next(&f, &line, &len) == 0);
    CHECK(wire_framer_pending(&f) == 1);
    CHECK(wire_framer_feed(&f, "\n", 1) == 0);
    CHECK(wire_framer_next(&f, &line, &len) == 1);
    CHECK_STREQ(line, "f");
    wire_framer_done(&f);
}

/* 16384 bytes and its newline are one line; 16385 bytes is too large. */
static void test_framer_limit(T *t)
{
    char *big = malloc(WIRE_MAX_LINE + 2);
    WireFramer f;
    char *line;
    size_t len;

    CHECK(big);
    memset(big, 'x', WIRE_MAX_LINE + 1);
    big[WIRE_MAX_LINE] = '\n';
    wire_framer_init(&f, WIRE_MAX_LINE);
    CHECK(wire_framer_feed(&f, big, WIRE_MAX_LINE + 1) == 0);
    CHECK(wire_framer_next(&f, &line, &len) == 1);
    CHECK(len == WIRE_MAX_LINE);
    /* Again, byte by byte over the limit: the error comes as soon as it is certain. */
    big[WIRE_MAX_LINE] = 'x';
    CHECK(wire_framer_feed(&f, big, WIRE_MAX_LINE) == 0);
    CHECK(wire_framer_next(&f, &line, &len) == 0);
    CHECK(wire_framer_feed(&f, "x", 1) == 0);
    CHECK(wire_framer_next(&f, &line, &len) == -EMSGSIZE);
    CHECK(wire_framer_feed(&f, "x", 1) == -EMSGSIZE);
    wire_framer_done(&f);

    /* The space API stops at the limit: a reader can never overfill it. */
    wire_framer_init(&f, 8);
    {
        char *space;
        size_t size;

        CHECK(wire_framer_space(&f, &space, &size) == 0);
        CHECK(size == 9);
        memset(space, 'y', size);
        wire_framer_advance(&f, size);
        CHECK(wire_framer_space(&f, &space, &size) == -EMSGSIZE);
        CHECK(wire_framer_next(&f, &line, &len) == -EMSGSIZE);
    }
    wire_framer_done(&f);
    free(big);
}

/* ---- requests: the valid forms ---- */

static void test_request_valid(T *t)
{
    WireRequest r;
    WireFailure f;

    CHECK(parse("{\"id\":1,\"method\":\"status\"}", &r, &f) == 0);
    CHECK(r.method == WIRE_METHOD_STATUS && r.id.type == WIRE_ID_INT && r.id.num == 1);
    wire_request_done(&r);
    CHECK(parse("  {\"method\":\"devices\",\"id\":\"x-1\",\"params\":{}}\r ", &r, &f) == 0);
    CHECK(r.method == WIRE_METHOD_DEVICES && r.id.type == WIRE_ID_STRING);
    CHECK_STREQ(r.id.str, "x-1");
    wire_request_done(&r);
    CHECK(parse("{\"id\":0,\"method\":\"hello\",\"params\":{\"version\":2,\"client\":\"t\"}}", &r,
                &f) == 0);
    CHECK(r.hello.has_version && r.hello.version == 2);
    CHECK_STREQ(r.hello.client, "t");
    wire_request_done(&r);
    CHECK(parse("{\"id\":2,\"method\":\"jobs\",\"params\":{\"state\":\"active\",\"path\":\"1-3.2\","
                "\"limit\":5}}",
                &r, &f) == 0);
    CHECK(r.jobs.filter == WIRE_JOBS_ACTIVE && r.jobs.limit == 5);
    CHECK_STREQ(r.jobs.path, "1-3.2");
    wire_request_done(&r);
    CHECK(parse("{\"id\":2,\"method\":\"jobs\",\"params\":{\"state\":\"failed\"}}", &r, &f) == 0);
    CHECK(r.jobs.filter == WIRE_JOBS_STATE);
    CHECK_STREQ(r.jobs.state, "failed");
    wire_request_done(&r);
    CHECK(parse("{\"id\":3,\"method\":\"job\",\"params\":{\"id\":12}}", &r, &f) == 0);
    CHECK(r.method == WIRE_METHOD_JOB && r.job.id == 12);
    wire_request_done(&r);
    CHECK(parse("{\"id\":3,\"method\":\"cancel\",\"params\":{\"id\":7}}", &r, &f) == 0);
    CHECK(r.method == WIRE_METHOD_CANCEL && r.job.id == 7);
    wire_request_done(&r);
    CHECK(parse("{\"id\":4,\"method\":\"flash\",\"params\":{\"paths\":[\"1-1\",\"1-2.3\"],"
                "\"chip\":\"esp32s3\",\"name\":\"fw.bin\",\"retries\":0,\"timeout\":30}}",
                &r, &f) == 0);
    CHECK(r.flash.n_paths == 2 && !r.flash.all && r.flash.chip == CHIP_ESP32S3);
    CHECK_STREQ(r.flash.paths[1], "1-2.3");
    CHECK_STREQ(r.flash.name, "fw.bin");
    CHECK(r.flash.retries == 0 && r.flash.timeout_s == 30);
    wire_request_done(&r);
    CHECK(parse("{\"id\":5,\"method\":\"flash\",\"params\":{\"all\":true}}", &r, &f) == 0);
    CHECK(r.flash.all && !r.flash.paths && r.flash.retries == -1 && r.flash.timeout_s == 0);
    CHECK(r.flash.chip == CHIP_UNKNOWN && !r.flash.name);
    wire_request_done(&r);
    /* Empty paths parse: "selected no port" is the server's no-target. */
    CHECK(parse("{\"id\":5,\"method\":\"flash\",\"params\":{\"paths\":[]}}", &r, &f) == 0);
    CHECK(r.flash.paths && r.flash.n_paths == 0);
    wire_request_done(&r);
    CHECK(accepted("{\"id\":6,\"method\":\"subscribe\"}", WIRE_METHOD_SUBSCRIBE));
    CHECK(accepted("{\"id\":6,\"method\":\"pause\"}", WIRE_METHOD_PAUSE));
    CHECK(accepted("{\"id\":6,\"method\":\"resume\"}", WIRE_METHOD_RESUME));
    CHECK(accepted("{\"id\":6,\"method\":\"reload\",\"params\":{}}", WIRE_METHOD_RELOAD));
}

/* ---- requests: the envelope refused ---- */

static void test_request_envelope(T *t)
{
    WireRequest r;
    WireFailure f;

    CHECK(refused("", WIRE_ERROR_BAD_REQUEST, "not JSON"));
    CHECK(refused("garbage", WIRE_ERROR_BAD_REQUEST, "not JSON"));
    CHECK(refused("{\"id\":1,\"method\":\"status\"", WIRE_ERROR_BAD_REQUEST, "not JSON"));
    CHECK(refused("{\"id\":1,\"method\":\"status\"} x", WIRE_ERROR_BAD_REQUEST, "not JSON"));
    CHECK(refused("{\"id\":1,\"method\":\"status\"}{}", WIRE_ERROR_BAD_REQUEST, "not JSON"));
    CHECK(refused("[1,2]", WIRE_ERROR_BAD_REQUEST, "not a JSON object"));
    CHECK(refused("42", WIRE_ERROR_BAD_REQUEST, "not a JSON object"));
    CHECK(refused("{'id':1}", WIRE_ERROR_BAD_REQUEST, "not JSON"));
    CHECK(refused("{\"id\":1,\"method\":\"status\",}", WIRE_ERROR_BAD_REQUEST, "not JSON"));
    CHECK(refused("{\"method\":\"status\"}", WIRE_ERROR_BAD_REQUEST, "id: missing"));
    CHECK(refused("{\"id\":1}", WIRE_ERROR_BAD_REQUEST, "method: missing"));
    CHECK(refused("{\"id\":1,\"method\":7}", WIRE_ERROR_BAD_REQUEST, "method: expected a string"));
    CHECK(refused("{\"id\":1,\"method\":\"status\",\"x\":1}", WIRE_ERROR_BAD_REQUEST,
                  "x: unknown key"));
    CHECK(refused("{\"id\":1,\"method\":\"status\",\"params\":[]}", WIRE_ERROR_BAD_REQUEST,
                  "params: expected an object"));
    CHECK(refused("{\"id\":1,\"method\":\"status\",\"params\":null}", WIRE_ERROR_BAD_REQUEST,
                  "params: expected an object"));
    CHECK(refused("{\"id\":1,\"method\":\"status\",\"params\":{\"x\":1}}", WIRE_ERROR_BAD_REQUEST,
                  "params.x: unknown key"));
    /* The id travels back with every refusal once it could be read. */
    CHECK(parse("{\"id\":9,\"method\":\"frobnicate\"}", &r, &f) == -EINVAL);
    CHECK(f.code == WIRE_ERROR_UNKNOWN_METHOD && f.id.type == WIRE_ID_INT && f.id.num == 9);
    CHECK(strstr(f.message, "frobnicate"));
    CHECK(parse("{\"id\":\"s\",\"method\":\"status\",\"z\":0}", &r, &f) == -EINVAL);
    CHECK(f.id.type == WIRE_ID_STRING && strcmp(f.id.str, "s") == 0);
    CHECK(parse("{\"id\":[],\"method\":\"status\"}", &r, &f) == -EINVAL);
    CHECK(f.id.type == WIRE_ID_NULL);
    /* Too deep to be a request. */
    CHECK(refused(
            "{\"id\":1,\"method\":\"status\",\"params\":{\"x\":[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]"
            "]]]]]]]]]}}",
            WIRE_ERROR_BAD_REQUEST, "not JSON"));
}

static void test_request_ids(T *t)
{
    char line[256], id[80];
    WireRequest r;
    WireFailure f;

    memset(id, 'i', 64);
    id[64] = '\0';
    snprintf(line, sizeof(line), "{\"id\":\"%s\",\"method\":\"status\"}", id);
    CHECK(parse(line, &r, &f) == 0 && strlen(r.id.str) == 64);
    wire_request_done(&r);
    snprintf(line, sizeof(line), "{\"id\":\"%si\",\"method\":\"status\"}", id);
    CHECK(refused(line, WIRE_ERROR_BAD_REQUEST, "id: longer than 64"));
    CHECK(parse("{\"id\":9007199254740991,\"method\":\"status\"}", &r, &f) == 0);
    CHECK(r.id.num == 9007199254740991ull);
    wire_request_done(&r);
    CHECK(refused("{\"id\":9007199254740992,\"method\":\"status\"}", WIRE_ERROR_BAD_REQUEST,
                  "id: 9007199254740992 out of range"));
    CHECK(refused("{\"id\":18446744073709551615,\"method\":\"status\"}", WIRE_ERROR_BAD_REQUEST,
                  "out of range"));
    CHECK(refused("{\"id\":-1,\"method\":\"status\"}", WIRE_ERROR_BAD_REQUEST, "out of range"));
    CHECK(refused("{\"id\":1.0,\"method\":\"status\"}", WIRE_ERROR_BAD_REQUEST,
                  "id: expected an integer or a string"));
    CHECK(refused("{\"id\":null,\"method\":\"status\"}", WIRE_ERROR_BAD_REQUEST, "id:"));
    CHECK(refused("{\"id\":true,\"method\":\"status\"}", WIRE_ERROR_BAD_REQUEST, "id:"));
    CHECK(refused("{\"id\":\"\",\"method\":\"status\"}", WIRE_ERROR_BAD_REQUEST, "id: empty"));
    CHECK(refused("{\"id\":\"a\\u0000b\",\"method\":\"status\"}", WIRE_ERROR_BAD_REQUEST, "NUL"));
    /* Control characters in what a client names: refused, they would reach logs and screens. */
    CHECK(refused("{\"id\":1,\"method\":\"flash\",\"params\":{\"name\":\"a\\njob 41: flashed\"}}",
                  WIRE_ERROR_BAD_REQUEST, "params.name: contains a control character (byte 1)"));
    CHECK(refused("{\"id\":1,\"method\":\"flash\",\"params\":{\"name\":\"\\u001b[2J\"}}",
                  WIRE_ERROR_BAD_REQUEST, "params.name: contains a control character"));
    CHECK(refused("{\"id\":1,\"method\":\"hello\",\"params\":{\"client\":\"x\\u007f\"}}",
                  WIRE_ERROR_BAD_REQUEST, "params.client: contains a control character"));
    CHECK(refused("{\"id\":1,\"method\":\"hello\",\"params\":{\"client\":\"x\\u009b\"}}",
                  WIRE_ERROR_BAD_REQUEST, "params.client: contains a control character"));
    CHECK(parse("{\"id\":1,\"method\":\"hello\",\"params\":{\"client\":\"caf\u00e9 \u2713\"}}", &r,
                &f) == 0);
    wire_request_done(&r);
}

/* ---- requests: params refused, each limit on both sides ---- */

static void test_request_params(T *t)
{
    CHECK(refused("{\"id\":1,\"method\":\"job\"}", WIRE_ERROR_BAD_REQUEST, "params.id: missing"));
    CHECK(refused("{\"id\":1,\"method\":\"job\",\"params\":{}}", WIRE_ERROR_BAD_REQUEST,
                  "params.id: missing"));
    CHECK(refused("{\"id\":1,\"method\":\"cancel\",\"params\":{\"id\":\"3\"}}",
                  WIRE_ERROR_BAD_REQUEST, "params.id: expected an integer, got string"));
    CHECK(refused("{\"id\":1,\"method\":\"job\",\"params\":{\"id\":1,\"x\":2}}",
                  WIRE_ERROR_BAD_REQUEST, "params.x: unknown key"));
    CHECK(refused("{\"id\":1,\"method\":\"hello\",\"params\":{\"version\":1}}",
                  WIRE_ERROR_BAD_REQUEST, "speaks 2"));
    CHECK(refused("{\"id\":1,\"method\":\"hello\",\"params\":{\"client\":5}}",
                  WIRE_ERROR_BAD_REQUEST, "params.client: expected a string"));
    CHECK(refused("{\"id\":1,\"method\":\"jobs\",\"params\":{\"state\":\"running\"}}",
                  WIRE_ERROR_BAD_REQUEST, "params.state"));
    CHECK(refused("{\"id\":1,\"method\":\"jobs\",\"params\":{\"limit\":0}}", WIRE_ERROR_BAD_REQUEST,
                  "params.limit: 0 out of range"));
    CHECK(refused("{\"id\":1,\"method\":\"jobs\",\"params\":{\"path\":\"../etc\"}}",
                  WIRE_ERROR_BAD_REQUEST, "params.path: not a USB port path"));
    CHECK(refused("{\"id\":1,\"method\":\"flash\",\"params\":{\"paths\":[\"1-1\"],\"all\":true}}",
                  WIRE_ERROR_BAD_REQUEST, "exclude"));
    CHECK(refused("{\"id\":1,\"method\":\"flash\",\"params\":{\"paths\":[\"1-1\",\"1-2\",7]}}",
                  WIRE_ERROR_BAD_REQUEST, "params.paths[2]: expected a string"));
    CHECK(refused("{\"id\":1,\"method\":\"flash\",\"params\":{\"paths\":\"1-1\"}}",
                  WIRE_ERROR_BAD_REQUEST, "params.paths: expected an array"));
    CHECK(refused("{\"id\":1,\"method\":\"flash\",\"params\":{\"all\":1}}", WIRE_ERROR_BAD_REQUEST,
                  "params.all: expected a boolean"));
    CHECK(refused("{\"id\":1,\"method\":\"flash\",\"params\":{\"all\":true,\"chip\":\"esp8266\"}}",
                  WIRE_ERROR_BAD_REQUEST, "params.chip"));
    CHECK(refused("{\"id\":1,\"method\":\"flash\",\"params\":{\"all\":true,\"chip\":\"unknown\"}}",
                  WIRE_ERROR_BAD_REQUEST, "params.chip"));
    CHECK(accepted("{\"id\":1,\"method\":\"flash\",\"params\":{\"all\":true,\"retries\":10}}",
                   WIRE_METHOD_FLASH));
    CHECK(refused("{\"id\":1,\"method\":\"flash\",\"params\":{\"all\":true,\"retries\":11}}",
                  WIRE_ERROR_BAD_REQUEST, "params.retries: 11 out of range [0, 10]"));
    CHECK(refused("{\"id\":1,\"method\":\"flash\",\"params\":{\"all\":true,\"timeout\":0}}",
                  WIRE_ERROR_BAD_REQUEST, "params.timeout"));
    CHECK(refused("{\"id\":1,\"method\":\"flash\",\"params\":{\"all\":true,\"timeout\":1.5}}",
                  WIRE_ERROR_BAD_REQUEST, "params.timeout: expected an integer"));
    CHECK(refused("{\"id\":1,\"method\":\"flash\",\"params\":{\"all\":true,\"name\":\"\"}}",
                  WIRE_ERROR_BAD_REQUEST, "params.name: empty"));
    CHECK(refused("{\"id\":1,\"method\":\"flash\",\"params\":{\"all\":true,\"name\":\"\\ud800\"}}",
                  WIRE_ERROR_BAD_REQUEST, "lone surrogate"));
    CHECK(refused(
            "{\"id\":1,\"method\":\"flash\",\"params\":{\"all\":true,\"name\":\"\\ud800\\u0041\"}}",
            WIRE_ERROR_BAD_REQUEST, "lone surrogate"));
    CHECK(accepted(
            "{\"id\":1,\"method\":\"flash\",\"params\":{\"all\":true,\"name\":\"\\\\ud800\"}}",
            WIRE_METHOD_FLASH));
}

static void test_request_paths_limits(T *t)
{
    char *s;
    char path[80];
    WireRequest r;
    WireFailure f;

    s = flash_with_paths(WIRE_MAX_PATHS, "1-1");
    CHECK(parse(s, &r, &f) == 0 && r.flash.n_paths == WIRE_MAX_PATHS);
    wire_request_done(&r);
    free(s);
    s = flash_with_paths(WIRE_MAX_PATHS + 1, "1-1");
    CHECK(refused(s, WIRE_ERROR_BAD_REQUEST, "params.paths: more than 256"));
    free(s);
    /* A port path of 63 bytes is the longest the device table holds. */
    memset(path, '1', WIRE_MAX_PATH);
    path[WIRE_MAX_PATH] = '\0';
    s = flash_with_paths(1, path);
    CHECK(parse(s, &r, &f) == 0 && strlen(r.flash.paths[0]) == WIRE_MAX_PATH);
    wire_request_done(&r);
    free(s);
    strcat(path, "1");
    s = flash_with_paths(1, path);
    CHECK(refused(s, WIRE_ERROR_BAD_REQUEST, "params.paths[0]: longer than 63"));
    free(s);
    s = flash_with_paths(1, "/dev/sda");
    CHECK(refused(s, WIRE_ERROR_BAD_REQUEST, "params.paths[0]: not a USB port path"));
    free(s);
}

/* Invalid UTF-8 on the raw line: json-c alone would let it through. */
static void test_request_utf8(T *t)
{
    WireRequest r;
    WireFailure f;

    CHECK(refused("{\"id\":\"\xc0\xaf\",\"method\":\"status\"}", WIRE_ERROR_BAD_REQUEST,
                  "invalid UTF-8"));
    CHECK(refused("{\"id\":1,\"method\":\"status\"}\xff", WIRE_ERROR_BAD_REQUEST, "invalid UTF-8"));
    CHECK(refused("{\"id\":\"\xed\xa0\x80\",\"method\":\"status\"}", WIRE_ERROR_BAD_REQUEST,
                  "invalid UTF-8"));
    CHECK(refused("{\"id\":\"\\udc00\",\"method\":\"status\"}", WIRE_ERROR_BAD_REQUEST,
                  "invalid UTF-8"));
    CHECK(parse("{\"id\":\"\xf0\x9f\x98\x80 \\u00e9\",\"method\":\"status\"}", &r, &f) == 0);
    CHECK_STREQ(r.id.str, "\xf0\x9f\x98\x80 \xc3\xa9");
    wire_request_done(&r);
    /* A surrogate pair escape is one valid code point. */
    CHECK(parse("{\"id\":\"\\ud83d\\ude00\",\"method\":\"status\"}", &r, &f) == 0);
    CHECK_STREQ(r.id.str, "\xf0\x9f\x98\x80");
    wire_request_done(&r);
    /* A raw NUL byte inside the line. */
    CHECK(wire_request_parse("{\"id\":1,\0\"method\":\"status\"}", 27, &r, &f) == -EINVAL);
    CHECK(f.code == WIRE_ERROR_BAD_REQUEST);
}

/* A line of exactly 16384 bytes is parsed; one more byte is too-large. */
static void test_request_line_limit(T *t)
{
    const char *head = "{\"id\":1,\"method\":\"status\"}";
    char *s = malloc(WIRE_MAX_LINE + 2);
    WireRequest r;
    WireFailure f;

    CHECK(s);
    memset(s, ' ', WIRE_MAX_LINE + 1);
    memcpy(s, head, strlen(head));
    CHECK(wire_request_parse(s, WIRE_MAX_LINE, &r, &f) == 0);
    wire_request_done(&r);
    CHECK(wire_request_parse(s, WIRE_MAX_LINE + 1, &r, &f) == -EINVAL);
    CHECK(f.code == WIRE_ERROR_TOO_LARGE);
    free(s);
}

/* ---- lines built and read back ---- */

static void test_round_trip_request(T *t)
{
    json_object *params = json_object_new_object(), *paths = json_object_new_array();
    WireId id = {.type = WIRE_ID_STRING};
    char *line = NULL;
    WireRequest r;
    WireFailure f;

    strcpy(id.str, "req-\"7\"");
    json_object_array_add(paths, json_object_new_string("1-3.2"));
    json_object_object_add(params, "paths", paths);
    json_object_object_add(params, "name", json_object_new_string("a/b \xc3\xa9.bin"));
    CHECK(wire_build_request(&id, WIRE_METHOD_FLASH, params, &line) == 0);
    json_object_put(params);
    CHECK(strchr(line, '\n') == line + strlen(line) - 1);
    CHECK(wire_request_parse(line, strlen(line) - 1, &r, &f) == 0);
    CHECK(r.method == WIRE_METHOD_FLASH && wire_id_equal(&r.id, &id));
    CHECK_STREQ(r.flash.paths[0], "1-3.2");
    CHECK_STREQ(r.flash.name, "a/b \xc3\xa9.bin");
    wire_request_done(&r);
    free(line);
    /* Empty params are left out. */
    id = wire_id_int(3);
    CHECK(wire_build_request(&id, WIRE_METHOD_STATUS, NULL, &line) == 0);
    CHECK_STREQ(line, "{\"id\":3,\"method\":\"status\"}\n");
    free(line);
    CHECK(wire_build_request(&(WireId){.type = WIRE_ID_NULL}, WIRE_METHOD_STATUS, NULL, &line) ==
          -EINVAL);
}

static void test_round_trip_reply(T *t)
{
    json_object *result = json_object_new_object();
    WireId id = wire_id_int(9007199254740991ull);
    WireMessage m;
    char *line = NULL;

    json_object_object_add(result, "paused", json_object_new_boolean(true));
    CHECK(wire_build_reply(&id, result, &line) == 0);
    json_object_put(result);
    CHECK(wire_message_parse(line, strlen(line) - 1, &m) == 0);
    CHECK(m.type == WIRE_MESSAGE_REPLY && wire_id_equal(&m.id, &id));
    CHECK(json_object_get_boolean(json_object_object_get(m.result, "paused")));
    wire_message_done(&m);
    free(line);

    id = (WireId){.type = WIRE_ID_NULL};
    CHECK(wire_build_error(&id, WIRE_ERROR_IMAGE_INVALID, "CRC mismatch at 0x2810", "crc-mismatch",
                           &line) == 0);
    CHECK(strncmp(line, "{\"id\":null,\"error\":{", 20) == 0);
    CHECK(wire_message_parse(line, strlen(line) - 1, &m) == 0);
    CHECK(m.type == WIRE_MESSAGE_ERROR && m.id.type == WIRE_ID_NULL);
    CHECK(m.error == WIRE_ERROR_IMAGE_INVALID);
    CHECK_STREQ(m.error_message, "CRC mismatch at 0x2810");
    CHECK_STREQ(m.error_detail, "crc-mismatch");
    wire_message_done(&m);
    free(line);
    CHECK(wire_build_error(&id, _WIRE_ERROR_MAX, "x", NULL, &line) == -EINVAL);
}

static void test_round_trip_event(T *t)
{
    json_object *data = json_object_new_object();
    WireMessage m;
    char *line = NULL;
    const char *future;

    json_object_object_add(data, "path", json_object_new_string("1-1"));
    CHECK(wire_build_event(WIRE_EVENT_DEVICE_REMOVED, data, &line) == 0);
    json_object_put(data);
    CHECK_STREQ(line, "{\"event\":\"device.removed\",\"data\":{\"path\":\"1-1\"}}\n");
    CHECK(wire_message_parse(line, strlen(line) - 1, &m) == 0);
    CHECK(m.type == WIRE_MESSAGE_EVENT && m.event == WIRE_EVENT_DEVICE_REMOVED);
    CHECK_STREQ(json_object_get_string(json_object_object_get(m.data, "path")), "1-1");
    wire_message_done(&m);
    free(line);
    /* Clients ignore what they do not know: a future event, code or field still parses. */
    future = "{\"event\":\"board.sneezed\",\"data\":{},\"extra\":1}";
    CHECK(wire_message_parse(future, strlen(future), &m) == 0);
    CHECK(m.event == _WIRE_EVENT_MAX);
    CHECK_STREQ(m.event_name, "board.sneezed");
    wire_message_done(&m);
    future = "{\"id\":2,\"error\":{\"code\":\"too-hot\",\"message\":\"m\",\"x\":1}}";
    CHECK(wire_message_parse(future, strlen(future), &m) == 0);
    CHECK(m.type == WIRE_MESSAGE_ERROR && m.error == _WIRE_ERROR_MAX);
    CHECK_STREQ(m.error_code, "too-hot");
    wire_message_done(&m);
    CHECK(wire_message_parse("{\"id\":1}", 8, &m) == -EBADMSG);
    CHECK(wire_message_parse("{\"id\":1,\"result\":3}", 19, &m) == -EBADMSG);
    CHECK(wire_message_parse("{\"event\":\"x\"}", 13, &m) == -EBADMSG);
    CHECK(wire_message_parse("nope", 4, &m) == -EBADMSG);
}

static void test_request_history(T *t)
{
    WireRequest r;
    WireFailure f;

    CHECK(parse("{\"id\":1,\"method\":\"history\"}", &r, &f) == 0);
    CHECK(r.method == WIRE_METHOD_HISTORY && !wire_method_is_changing(r.method));
    CHECK(!r.history.path && !r.history.result && r.history.since == 0);
    CHECK(r.history.limit == WIRE_HISTORY_LIMIT_DEFAULT);
    wire_request_done(&r);
    CHECK(parse("{\"id\":1,\"method\":\"history\",\"params\":{\"path\":\"1-3.2\","
                "\"result\":\"failed\",\"since\":1700000000,\"limit\":1000}}",
                &r, &f) == 0);
    CHECK_STREQ(r.history.path, "1-3.2");
    CHECK_STREQ(r.history.result, "failed");
    CHECK(r.history.since == 1700000000 && r.history.limit == 1000);
    wire_request_done(&r);
    CHECK(refused("{\"id\":1,\"method\":\"history\",\"params\":{\"limit\":0}}",
                  WIRE_ERROR_BAD_REQUEST, "params.limit: 0 out of range"));
    CHECK(refused("{\"id\":1,\"method\":\"history\",\"params\":{\"limit\":1001}}",
                  WIRE_ERROR_BAD_REQUEST, "params.limit: 1001 out of range"));
    CHECK(refused("{\"id\":1,\"method\":\"history\",\"params\":{\"result\":\"queued\"}}",
                  WIRE_ERROR_BAD_REQUEST, "params.result"));
    CHECK(refused("{\"id\":1,\"method\":\"history\",\"params\":{\"since\":-1}}",
                  WIRE_ERROR_BAD_REQUEST, "params.since"));
    CHECK(refused("{\"id\":1,\"method\":\"history\",\"params\":{\"since\":\"today\"}}",
                  WIRE_ERROR_BAD_REQUEST, "params.since: expected an integer"));
    CHECK(refused("{\"id\":1,\"method\":\"history\",\"params\":{\"path\":\"../x\"}}",
                  WIRE_ERROR_BAD_REQUEST, "params.path: not a USB port path"));
    CHECK(refused("{\"id\":1,\"method\":\"history\",\"params\":{\"state\":\"failed\"}}",
                  WIRE_ERROR_BAD_REQUEST, "params.state: unknown key"));
}

#define SHA_A "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static void test_request_history_cursors(T *t)
{
    WireRequest r;
    WireFailure f;

    CHECK(parse("{\"id\":1,\"method\":\"history\"}", &r, &f) == 0);
    CHECK(r.history.before == 0 && r.history.after == 0 && !r.history.sha256);
    wire_request_done(&r);
    CHECK(parse("{\"id\":1,\"method\":\"history\",\"params\":{\"before\":42,"
                "\"sha256\":\"" SHA_A "\",\"result\":\"interrupted\"}}",
                &r, &f) == 0);
    CHECK(r.history.before == 42 && r.history.after == 0);
    CHECK_STREQ(r.history.sha256, SHA_A);
    CHECK_STREQ(r.history.result, "interrupted");
    wire_request_done(&r);
    CHECK(parse("{\"id\":1,\"method\":\"history\",\"params\":{\"after\":0,"
                "\"result\":\"expired\",\"limit\":1}}",
                &r, &f) == 0);
    CHECK(r.history.after == 0 && r.history.before == 0 && r.history.limit == 1);
    CHECK_STREQ(r.history.result, "expired");
    wire_request_done(&r);
    CHECK(parse("{\"id\":1,\"method\":\"history\",\"params\":{\"after\":9007199254740991}}", &r,
                &f) == 0);
    CHECK(r.history.after == 9007199254740991ull);
    wire_request_done(&r);

    /* Both cursors: two directions at once. */
    CHECK(refused("{\"id\":1,\"method\":\"history\",\"params\":{\"before\":5,\"after\":1}}",
                  WIRE_ERROR_BAD_REQUEST, "params.before and params.after exclude each other"));
    /* Ranges and types. */
    CHECK(refused("{\"id\":1,\"method\":\"history\",\"params\":{\"before\":0}}",
                  WIRE_ERROR_BAD_REQUEST, "params.before: 0 out of range"));
    CHECK(refused("{\"id\":1,\"method\":\"history\",\"params\":{\"after\":-1}}",
                  WIRE_ERROR_BAD_REQUEST, "params.after: -1 out of range"));
    CHECK(refused("{\"id\":1,\"method\":\"history\",\"params\":{\"before\":\"7\"}}",
                  WIRE_ERROR_BAD_REQUEST, "params.before: expected an integer"));
    CHECK(refused("{\"id\":1,\"method\":\"history\",\"params\":{\"after\":1.5}}",
                  WIRE_ERROR_BAD_REQUEST, "params.after: expected an integer"));
    CHECK(refused("{\"id\":1,\"method\":\"history\",\"params\":{\"after\":9007199254740992}}",
                  WIRE_ERROR_BAD_REQUEST, "params.after"));
    CHECK(refused("{\"id\":1,\"method\":\"history\",\"params\":{\"sha256\":42}}",
                  WIRE_ERROR_BAD_REQUEST, "params.sha256: expected a string"));
    /* sha256: exactly 64 lowercase hex digits. */
    CHECK(refused("{\"id\":1,\"method\":\"history\",\"params\":{\"sha256\":\"0123abcd\"}}",
                  WIRE_ERROR_BAD_REQUEST, "params.sha256: not 64 lowercase hex digits"));
    CHECK(refused("{\"id\":1,\"method\":\"history\",\"params\":{\"sha256\":"
                  "\"0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef\"}}",
                  WIRE_ERROR_BAD_REQUEST, "params.sha256: not 64 lowercase hex digits"));
    CHECK(refused("{\"id\":1,\"method\":\"history\",\"params\":{\"sha256\":"
                  "\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdeg\"}}",
                  WIRE_ERROR_BAD_REQUEST, "params.sha256: not 64 lowercase hex digits"));
    CHECK(refused("{\"id\":1,\"method\":\"history\",\"params\":{\"sha256\":\"" SHA_A "0\"}}",
                  WIRE_ERROR_BAD_REQUEST, "params.sha256: longer than 64 bytes"));
    CHECK(refused("{\"id\":1,\"method\":\"history\",\"params\":{\"sha256\":\"\"}}",
                  WIRE_ERROR_BAD_REQUEST, "params.sha256: empty string"));
    /* Only final states; live ones can never be in the history. */
    CHECK(refused("{\"id\":1,\"method\":\"history\",\"params\":{\"result\":\"downloading\"}}",
                  WIRE_ERROR_BAD_REQUEST, "\"interrupted\" or \"expired\""));
    CHECK(refused("{\"id\":1,\"method\":\"history\",\"params\":{\"result\":\"Failed\"}}",
                  WIRE_ERROR_BAD_REQUEST, "params.result"));
    CHECK(refused("{\"id\":1,\"method\":\"history\",\"params\":{\"result\":true}}",
                  WIRE_ERROR_BAD_REQUEST, "params.result: expected a string"));
    /* A refusal after a string was copied frees it (run under ASan). */
    CHECK(refused("{\"id\":1,\"method\":\"history\",\"params\":{\"path\":\"1-1\",\"sha256\":"
                  "\"" SHA_A "\",\"before\":2,\"after\":1}}",
                  WIRE_ERROR_BAD_REQUEST, "exclude each other"));
}

int main(void)
{
    RUN(test_enums);
    RUN(test_utf8);
    RUN(test_framer_lines);
    RUN(test_framer_limit);
    RUN(test_request_valid);
    RUN(test_request_envelope);
    RUN(test_request_ids);
    RUN(test_request_params);
    RUN(test_request_paths_limits);
    RUN(test_request_utf8);
    RUN(test_request_line_limit);
    RUN(test_request_history);
    RUN(test_request_history_cursors);
    RUN(test_round_trip_request);
    RUN(test_round_trip_reply);
    RUN(test_round_trip_event);
    return test_summary();
}
