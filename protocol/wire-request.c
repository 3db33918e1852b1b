/* SPDX-License-Identifier: MIT */
/*
 * Parsing request lines, strictly. One generic pass checks every key of
 * `params` against the method's field table (name, type, mandatory, range),
 * then a small per-method function copies the checked values into the
 * WireRequest. Every refusal names the key: "params.paths[2]: expected a string".
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire-internal.h"
#include "wire.h"

typedef enum FieldType {
    FIELD_INT, /* a JSON integer in [min, max] */
    FIELD_BOOL,
    FIELD_STRING, /* UTF-8, no NUL, 1..max bytes */
    FIELD_PATH,   /* a port path: "1-3.2" */
    FIELD_PATHS,  /* an array of at most max port paths */
} FieldType;

typedef struct Field {
    const char *name;
    FieldType type;
    bool mandatory;
    int64_t min, max; /* FIELD_INT: the range; FIELD_STRING: max bytes; FIELD_PATHS: max entries */
} Field;

#define ID_MAX ((int64_t)WIRE_MAX_ID_INT - 1)

static const Field hello_fields[] = {
        {"version", FIELD_INT, false, 0, INT32_MAX},
        {"client", FIELD_STRING, false, 0, WIRE_MAX_NAME},
};
static const Field jobs_fields[] = {
        {"state", FIELD_STRING, false, 0, 32},
        {"path", FIELD_PATH, false, 0, WIRE_MAX_PATH},
        {"limit", FIELD_INT, false, 1, ID_MAX},
};
static const Field id_fields[] = {
        {"id", FIELD_INT, true, 0, ID_MAX},
};
static const Field history_fields[] = {
        {"path", FIELD_PATH, false, 0, WIRE_MAX_PATH},
        {"result", FIELD_STRING, false, 0, 32},
        {"since", FIELD_INT, false, 0, INT64_C(1) << 40},
        {"limit", FIELD_INT, false, 1, WIRE_MAX_HISTORY_LIMIT},
        {"before", FIELD_INT, false, 1, ID_MAX},
        {"after", FIELD_INT, false, 0, ID_MAX},
        {"sha256", FIELD_STRING, false, 0, WIRE_SHA256_HEX},
};
static const Field flash_fields[] = {
        {"paths", FIELD_PATHS, false, 0, WIRE_MAX_PATHS},
        {"all", FIELD_BOOL, false, 0, 0},
        {"chip", FIELD_STRING, false, 0, 32},
        {"name", FIELD_STRING, false, 0, WIRE_MAX_NAME},
        {"retries", FIELD_INT, false, 0, WIRE_MAX_RETRIES},
        {"timeout", FIELD_INT, false, 1, WIRE_MAX_TIMEOUT_S},
};

typedef struct MethodSpec {
    const Field *fields;
    size_t n_fields;
    int (*fill)(WireRequest *r, json_object *params, WireFailure *f);
} MethodSpec;

static int fail(WireFailure *f, WireError code, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static int fail(WireFailure *f, WireError code, const char *fmt, ...)
{
    va_list ap;

    f->code = code;
    va_start(ap, fmt);
    vsnprintf(f->message, sizeof(f->message), fmt, ap);
    va_end(ap);
    return -EINVAL;
}

static const char *type_name(json_object *v)
{
    return v ? json_type_to_name(json_object_get_type(v)) : "null";
}

static bool is_port_path(const char *s, size_t n)
{
    /* sysfs names of USB devices: "1-2", "1-2.3.4"; nothing that could be a file name. */
    return n > 0 && n <= WIRE_MAX_PATH && strspn(s, "0123456789-.") == n;
}

/* A string value: valid UTF-8 after unescaping (\ud800 is not), no NUL and no other control
 * character (C0, DEL, C1), at most max bytes. */
static int check_string(json_object *v, const char *key, int64_t max, WireFailure *f)
{
    const char *s;
    size_t n;

    if (!json_object_is_type(v, json_type_string))
        return fail(f, WIRE_ERROR_BAD_REQUEST, "%s: expected a string, got %s", key, type_name(v));
    s = json_object_get_string(v);
    n = (size_t)json_object_get_string_len(v);
    if (strlen(s) != n)
        return fail(f, WIRE_ERROR_BAD_REQUEST, "%s: contains a NUL character", key);
    if (!wire_utf8_is_valid(s, n))
        return fail(f, WIRE_ERROR_BAD_REQUEST, "%s: invalid UTF-8", key);
    /* What a client names ends up in logs and on terminals: no line breaks, no escapes. */
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];

        if (ch < 0x20 || ch == 0x7f ||
            (ch == 0xc2 && i + 1 < n && (unsigned char)s[i + 1] >= 0x80 &&
             (unsigned char)s[i + 1] <= 0x9f))
            return fail(f, WIRE_ERROR_BAD_REQUEST, "%s: contains a control character (byte %zu)",
                        key, i);
    }
    if (n == 0)
        return fail(f, WIRE_ERROR_BAD_REQUEST, "%s: empty string", key);
    if ((int64_t)n > max)
        return fail(f, WIRE_ERROR_BAD_REQUEST, "%s: longer than %" PRIi64 " bytes", key, max);
    return 0;
}

static int check_path(json_object *v, const char *key, WireFailure *f)
{
    int r = check_string(v, key, WIRE_MAX_PATH, f);

    if (r < 0)
        return r;
    if (!is_port_path(json_object_get_string(v), (size_t)json_object_get_string_len(v)))
        return fail(f, WIRE_ERROR_BAD_REQUEST, "%s: not a USB port path like \"1-3.2\"", key);
    return 0;
}

static int check_int(json_object *v, const char *key, int64_t min, int64_t max, WireFailure *f)
{
    int64_t n;

    /* json-c keeps integers above INT64_MAX as uint64; get_int64 clamps those to the max. */
    if (!json_object_is_type(v, json_type_int))
        return fail(f, WIRE_ERROR_BAD_REQUEST, "%s: expected an integer, got %s", key,
                    type_name(v));
    n = json_object_get_int64(v);
    if (n < min || n > max)
        return fail(f, WIRE_ERROR_BAD_REQUEST, "%s: %s out of range [%" PRIi64 ", %" PRIi64 "]",
                    key, json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN), min, max);
    return 0;
}

static int check_paths(json_object *v, const char *key, int64_t max, WireFailure *f)
{
    size_t n;

    if (!json_object_is_type(v, json_type_array))
        return fail(f, WIRE_ERROR_BAD_REQUEST, "%s: expected an array of strings, got %s", key,
                    type_name(v));
    n = json_object_array_length(v);
    if ((int64_t)n > max)
        return fail(f, WIRE_ERROR_BAD_REQUEST, "%s: more than %" PRIi64 " paths", key, max);
    for (size_t i = 0; i < n; i++) {
        char sub[96]; /* "params.paths" and an index */
        int r;

        snprintf(sub, sizeof(sub), "%.64s[%zu]", key, i);
        r = check_path(json_object_array_get_idx(v, i), sub, f);
        if (r < 0)
            return r;
    }
    return 0;
}

static int check_field(const Field *field, json_object *v, WireFailure *f)
{
    char key[64];

    snprintf(key, sizeof(key), "params.%s", field->name);
    switch (field->type) {
    case FIELD_INT:
        return check_int(v, key, field->min, field->max, f);
    case FIELD_BOOL:
        if (!json_object_is_type(v, json_type_boolean))
            return fail(f, WIRE_ERROR_BAD_REQUEST, "%s: expected a boolean, got %s", key,
                        type_name(v));
        return 0;
    case FIELD_STRING:
        return check_string(v, key, field->max, f);
    case FIELD_PATH:
        return check_path(v, key, f);
    case FIELD_PATHS:
        return check_paths(v, key, field->max, f);
    }
    return -EINVAL;
}

/* Every key known and well typed, every mandatory key present (params may be NULL). */
static int check_params(const MethodSpec *spec, json_object *params, WireFailure *f)
{
    if (params) {
        json_object_object_foreach(params, key, val)
        {
            const Field *field = NULL;
            int r;

            for (size_t i = 0; i < spec->n_fields && !field; i++)
                if (strcmp(spec->fields[i].name, key) == 0)
                    field = &spec->fields[i];
            if (!field)
                return fail(f, WIRE_ERROR_BAD_REQUEST, "params.%.64s: unknown key", key);
            r = check_field(field, val, f);
            if (r < 0)
                return r;
        }
    }
    for (size_t i = 0; i < spec->n_fields; i++)
        if (spec->fields[i].mandatory &&
            !(params && json_object_object_get_ex(params, spec->fields[i].name, NULL)))
            return fail(f, WIRE_ERROR_BAD_REQUEST, "params.%s: missing", spec->fields[i].name);
    return 0;
}

/* ---- per-method filling: the values are already checked ---- */

static json_object *get(json_object *params, const char *key)
{
    json_object *v = NULL;

    json_object_object_get_ex(params, key, &v);
    return v;
}

static int dup_string(json_object *params, const char *key, char **ret)
{
    json_object *v = get(params, key);

    *ret = NULL;
    if (!v)
        return 0;
    *ret = strdup(json_object_get_string(v));
    return *ret ? 0 : -ENOMEM;
}

static int fill_none(WireRequest *r, json_object *params, WireFailure *f)
{
    return 0;
}

static int fill_hello(WireRequest *r, json_object *params, WireFailure *f)
{
    json_object *v = get(params, "version");

    if (v) {
        r->hello.has_version = true;
        r->hello.version = json_object_get_int64(v);
        /* Protocol 1 (before the job store: no interrupted, expired or attempts) is not served. */
        if (r->hello.version < WIRE_PROTOCOL_VERSION)
            return fail(f, WIRE_ERROR_BAD_REQUEST,
                        "params.version: protocol %" PRIi64 " not spoken; this server speaks %d",
                        r->hello.version, WIRE_PROTOCOL_VERSION);
    }
    return dup_string(params, "client", &r->hello.client);
}

static int fill_jobs(WireRequest *r, json_object *params, WireFailure *f)
{
    json_object *v = get(params, "state");
    int k;

    if (v) {
        const char *s = json_object_get_string(v);

        if (strcmp(s, "active") == 0)
            r->jobs.filter = WIRE_JOBS_ACTIVE;
        else if (strcmp(s, "finished") == 0)
            r->jobs.filter = WIRE_JOBS_FINISHED;
        else if (wire_job_state_is_valid(s))
            r->jobs.filter = WIRE_JOBS_STATE;
        else
            return fail(f, WIRE_ERROR_BAD_REQUEST,
                        "params.state: \"%.32s\" is not a job state, \"active\" or \"finished\"",
                        s);
    }
    v = get(params, "limit");
    r->jobs.limit = v ? (uint64_t)json_object_get_int64(v) : 0;
    k = dup_string(params, "path", &r->jobs.path);
    if (k >= 0 && r->jobs.filter == WIRE_JOBS_STATE)
        k = dup_string(params, "state", &r->jobs.state);
    return k;
}

static int fill_id(WireRequest *r, json_object *params, WireFailure *f)
{
    r->job.id = (uint64_t)json_object_get_int64(get(params, "id"));
    return 0;
}

static bool is_sha256_hex(const char *s)
{
    return strlen(s) == WIRE_SHA256_HEX && strspn(s, "0123456789abcdef") == WIRE_SHA256_HEX;
}

static int fill_history(WireRequest *r, json_object *params, WireFailure *f)
{
    json_object *v = get(params, "result");
    int k;

    /* Only final states are recorded: anything else can never match. */
    if (v && !wire_job_state_is_final(json_object_get_string(v)))
        return fail(f, WIRE_ERROR_BAD_REQUEST,
                    "params.result: \"%.32s\" is not \"succeeded\", \"failed\", \"cancelled\", "
                    "\"interrupted\" or \"expired\"",
                    json_object_get_string(v));
    if ((v = get(params, "sha256")) && !is_sha256_hex(json_object_get_string(v)))
        return fail(f, WIRE_ERROR_BAD_REQUEST, "params.sha256: not %u lowercase hex digits",
                    WIRE_SHA256_HEX);
    /* Two cursors would mean two directions. */
    if (get(params, "before") && get(params, "after"))
        return fail(f, WIRE_ERROR_BAD_REQUEST, "params.before and params.after exclude each other");
    r->history.since = (v = get(params, "since")) ? json_object_get_int64(v) : 0;
    r->history.before = (v = get(params, "before")) ? (uint64_t)json_object_get_int64(v) : 0;
    r->history.after = (v = get(params, "after")) ? (uint64_t)json_object_get_int64(v) : 0;
    r->history.ascending = v != NULL;
    r->history.limit = (v = get(params, "limit")) ? (unsigned)json_object_get_int64(v)
                                                  : WIRE_HISTORY_LIMIT_DEFAULT;
    k = dup_string(params, "path", &r->history.path);
    if (k >= 0)
        k = dup_string(params, "result", &r->history.result);
    if (k >= 0)
        k = dup_string(params, "sha256", &r->history.sha256);
    return k;
}

static int fill_flash_paths(WireRequest *r, json_object *v)
{
    size_t n = json_object_array_length(v);

    /* calloc(0) may return NULL: one spare slot keeps "present but empty" non-NULL. */
    r->flash.paths = calloc(n + 1, sizeof(char *));
    if (!r->flash.paths)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        r->flash.paths[i] = strdup(json_object_get_string(json_object_array_get_idx(v, i)));
        if (!r->flash.paths[i])
            return -ENOMEM;
        r->flash.n_paths = i + 1;
    }
    return 0;
}

static int fill_flash(WireRequest *r, json_object *params, WireFailure *f)
{
    json_object *paths = get(params, "paths"), *v;
    int k;

    r->flash.all = (v = get(params, "all")) && json_object_get_boolean(v);
    r->flash.retries = (v = get(params, "retries")) ? (int)json_object_get_int64(v) : -1;
    r->flash.timeout_s = (v = get(params, "timeout")) ? (unsigned)json_object_get_int64(v) : 0;
    if (paths && get(params, "all"))
        return fail(f, WIRE_ERROR_BAD_REQUEST, "params.paths and params.all exclude each other");
    if ((v = get(params, "chip"))) {
        r->flash.chip = chip_from_string(json_object_get_string(v));
        if (r->flash.chip == _CHIP_MAX || r->flash.chip == CHIP_UNKNOWN)
            return fail(f, WIRE_ERROR_BAD_REQUEST, "params.chip: \"%.32s\" is not a chip",
                        json_object_get_string(v));
    }
    k = dup_string(params, "name", &r->flash.name);
    if (k >= 0 && paths)
        k = fill_flash_paths(r, paths);
    return k;
}

static const MethodSpec methods[_WIRE_METHOD_MAX] = {
        [WIRE_METHOD_HELLO] = {hello_fields, ELEMENTSOF(hello_fields), fill_hello},
        [WIRE_METHOD_STATUS] = {NULL, 0, fill_none},
        [WIRE_METHOD_DEVICES] = {NULL, 0, fill_none},
        [WIRE_METHOD_JOBS] = {jobs_fields, ELEMENTSOF(jobs_fields), fill_jobs},
        [WIRE_METHOD_JOB] = {id_fields, ELEMENTSOF(id_fields), fill_id},
        [WIRE_METHOD_SUBSCRIBE] = {NULL, 0, fill_none},
        [WIRE_METHOD_FLASH] = {flash_fields, ELEMENTSOF(flash_fields), fill_flash},
        [WIRE_METHOD_CANCEL] = {id_fields, ELEMENTSOF(id_fields), fill_id},
        [WIRE_METHOD_PAUSE] = {NULL, 0, fill_none},
        [WIRE_METHOD_RESUME] = {NULL, 0, fill_none},
        [WIRE_METHOD_RELOAD] = {NULL, 0, fill_none},
        [WIRE_METHOD_HISTORY] = {history_fields, ELEMENTSOF(history_fields), fill_history},
};

/* ---- the envelope ---- */

static int parse_id(json_object *v, WireId *ret, WireFailure *f)
{
    if (!v)
        return fail(f, WIRE_ERROR_BAD_REQUEST, "id: missing");
    if (json_object_is_type(v, json_type_string)) {
        int r = check_string(v, "id", WIRE_MAX_ID_STRING, f);

        if (r < 0)
            return r;
        *ret = (WireId){.type = WIRE_ID_STRING};
        memcpy(ret->str, json_object_get_string(v), (size_t)json_object_get_string_len(v));
        return 0;
    }
    if (json_object_is_type(v, json_type_int)) {
        int r = check_int(v, "id", 0, ID_MAX, f);

        if (r < 0)
            return r;
        *ret = wire_id_int((uint64_t)json_object_get_int64(v));
        return 0;
    }
    return fail(f, WIRE_ERROR_BAD_REQUEST, "id: expected an integer or a string, got %s",
                type_name(v));
}

static int parse_envelope(json_object *o, WireRequest *req, json_object **ret_params,
                          WireFailure *f)
{
    json_object *method = NULL, *params = NULL;
    int r;

    r = parse_id(get(o, "id"), &req->id, f);
    if (r < 0)
        return r;
    f->id = req->id; /* from here on, errors carry the id back */
    json_object_object_foreach(o, key, val)
    {
        (void)val;
        if (!strcmp(key, "id") || !strcmp(key, "method") || !strcmp(key, "params"))
            continue;
        return fail(f, WIRE_ERROR_BAD_REQUEST, "%.64s: unknown key", key);
    }
    if (!json_object_object_get_ex(o, "method", &method))
        return fail(f, WIRE_ERROR_BAD_REQUEST, "method: missing");
    r = check_string(method, "method", 64, f);
    if (r < 0)
        return r;
    req->method = wire_method_from_string(json_object_get_string(method));
    if (req->method == _WIRE_METHOD_MAX)
        return fail(f, WIRE_ERROR_UNKNOWN_METHOD, "unknown method \"%s\"",
                    json_object_get_string(method));
    if (json_object_object_get_ex(o, "params", &params) &&
        !json_object_is_type(params, json_type_object))
        return fail(f, WIRE_ERROR_BAD_REQUEST, "params: expected an object, got %s",
                    type_name(params));
    *ret_params = params;
    return 0;
}

int wire_request_parse(const char *line, size_t len, WireRequest *ret, WireFailure *failure)
{
    WireRequest req = {};
    json_object *o = NULL, *params = NULL;
    const MethodSpec *spec;
    int r;

    *failure = (WireFailure){.code = WIRE_ERROR_BAD_REQUEST};
    if (len > WIRE_MAX_LINE)
        return fail(failure, WIRE_ERROR_TOO_LARGE, "line longer than %u bytes", WIRE_MAX_LINE);
    r = wire_json_parse_line(line, len, WIRE_MAX_DEPTH, &o, failure->message,
                             sizeof(failure->message));
    if (r == -ENOMEM)
        return fail(failure, WIRE_ERROR_INTERNAL, "out of memory"), -ENOMEM;
    if (r < 0)
        return r;
    r = parse_envelope(o, &req, &params, failure);
    if (r < 0)
        goto out;
    spec = &methods[req.method];
    r = check_params(spec, params, failure);
    if (r < 0)
        goto out;
    r = spec->fill(&req, params, failure);
    if (r == -ENOMEM)
        fail(failure, WIRE_ERROR_INTERNAL, "out of memory");
out:
    json_object_put(o);
    if (r < 0) {
        wire_request_done(&req);
        return r;
    }
    *ret = req;
    return 0;
}

void wire_request_move(WireRequest *dst, WireRequest *src)
{
    *dst = *src;
    /* A method that owns nothing: done() on it frees nothing. */
    *src = (WireRequest){.id = src->id, .method = WIRE_METHOD_STATUS};
}

void wire_request_done(WireRequest *r)
{
    switch (r->method) {
    case WIRE_METHOD_HELLO:
        free(r->hello.client);
        break;
    case WIRE_METHOD_JOBS:
        free(r->jobs.state);
        free(r->jobs.path);
        break;
    case WIRE_METHOD_HISTORY:
        free(r->history.path);
        free(r->history.result);
        free(r->history.sha256);
        break;
    case WIRE_METHOD_FLASH:
        for (size_t i = 0; i < r->flash.n_paths; i++)
            free(r->flash.paths[i]);
        free(r->flash.paths);
        free(r->flash.name);
        break;
    case WIRE_METHOD_STATUS:
    case WIRE_METHOD_DEVICES:
    case WIRE_METHOD_JOB:
    case WIRE_METHOD_SUBSCRIBE:
    case WIRE_METHOD_CANCEL:
    case WIRE_METHOD_PAUSE:
    case WIRE_METHOD_RESUME:
    case WIRE_METHOD_RELOAD:
    case _WIRE_METHOD_MAX:
        break;
    }
    *r = (WireRequest){.method = _WIRE_METHOD_MAX};
}
