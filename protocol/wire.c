/* SPDX-License-Identifier: MIT */
/*
 * The wire codec's tables, framing, UTF-8 check and line builders. Request
 * parsing is in wire-request.c, reading server lines in wire-message.c.
 */
#include "wire.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* One row per method: its name, and whether only root or the daemon's group may call it. */
static const struct {
    const char *name;
    bool changing;
} wire_methods[] = {
        [WIRE_METHOD_HELLO] = {"hello", false},     [WIRE_METHOD_STATUS] = {"status", false},
        [WIRE_METHOD_DEVICES] = {"devices", false}, [WIRE_METHOD_JOBS] = {"jobs", false},
        [WIRE_METHOD_JOB] = {"job", false},         [WIRE_METHOD_SUBSCRIBE] = {"subscribe", false},
        [WIRE_METHOD_FLASH] = {"flash", true},      [WIRE_METHOD_CANCEL] = {"cancel", true},
        [WIRE_METHOD_PAUSE] = {"pause", true},      [WIRE_METHOD_RESUME] = {"resume", true},
        [WIRE_METHOD_RELOAD] = {"reload", true},    [WIRE_METHOD_HISTORY] = {"history", false},
};

_Static_assert(ELEMENTSOF(wire_methods) == _WIRE_METHOD_MAX,
               "wire_methods[] needs one row per WireMethod");

const char *wire_method_to_string(WireMethod m)
{
    return (unsigned)m < ELEMENTSOF(wire_methods) ? wire_methods[m].name : NULL;
}

WireMethod wire_method_from_string(const char *s)
{
    for (size_t m = 0; s && m < ELEMENTSOF(wire_methods); m++)
        if (wire_methods[m].name && strcmp(wire_methods[m].name, s) == 0)
            return (WireMethod)m;
    return _WIRE_METHOD_MAX;
}

bool wire_method_is_changing(WireMethod m)
{
    return (unsigned)m < ELEMENTSOF(wire_methods) && wire_methods[m].changing;
}

/* The stable error codes of docs/protocol.md. */
static const char *const wire_error_table[] = {
        [WIRE_ERROR_BAD_REQUEST] = "bad-request",
        [WIRE_ERROR_TOO_LARGE] = "too-large",
        [WIRE_ERROR_UNKNOWN_METHOD] = "unknown-method",
        [WIRE_ERROR_PERMISSION_DENIED] = "permission-denied",
        [WIRE_ERROR_NOT_FOUND] = "not-found",
        [WIRE_ERROR_NO_IMAGE] = "no-image",
        [WIRE_ERROR_IMAGE_INVALID] = "image-invalid",
        [WIRE_ERROR_WRONG_CHIP] = "wrong-chip",
        [WIRE_ERROR_NO_TARGET] = "no-target",
        [WIRE_ERROR_QUEUE_FULL] = "queue-full",
        [WIRE_ERROR_CONFIG_INVALID] = "config-invalid",
        [WIRE_ERROR_SHUTTING_DOWN] = "shutting-down",
        [WIRE_ERROR_TOO_MANY_CONNECTIONS] = "too-many-connections",
        [WIRE_ERROR_INTERNAL] = "internal",
        [WIRE_ERROR_TIMEOUT] = "timeout",
};
DEFINE_STRING_TABLE_LOOKUP(wire_error, WireError, _WIRE_ERROR_MAX)

static const char *const wire_event_table[] = {
        [WIRE_EVENT_DEVICE_ADDED] = "device.added",
        [WIRE_EVENT_DEVICE_REMOVED] = "device.removed",
        [WIRE_EVENT_DEVICE_CHANGED] = "device.changed",
        [WIRE_EVENT_JOB_QUEUED] = "job.queued",
        [WIRE_EVENT_JOB_STARTED] = "job.started",
        [WIRE_EVENT_JOB_CHANGED] = "job.changed",
        [WIRE_EVENT_JOB_PROGRESS] = "job.progress",
        [WIRE_EVENT_JOB_FINISHED] = "job.finished",
        [WIRE_EVENT_DROPPED] = "dropped",
};
DEFINE_STRING_TABLE_LOOKUP(wire_event, WireEvent, _WIRE_EVENT_MAX)

/* The Job states of docs/protocol.md; the daemon maps them with job_state_from_string(). */
static const struct {
    const char *name;
    bool final;
} job_states[] = {
        {"queued", false},      {"waiting-for-board", false},
        {"detaching", false},   {"waiting-for-replug", false},
        {"downloading", false}, {"manifesting", false},
        {"succeeded", true},    {"failed", true},
        {"cancelled", true},    {"interrupted", true},
        {"expired", true},
};

static int job_state_index(const char *s)
{
    for (size_t i = 0; s && i < ELEMENTSOF(job_states); i++)
        if (strcmp(s, job_states[i].name) == 0)
            return (int)i;
    return -1;
}

json_object *wire_json_time(uint64_t realtime_usec)
{
    char buf[32];

    if (realtime_usec == 0)
        return NULL;
    snprintf(buf, sizeof(buf), "%" PRIu64 ".%06" PRIu64, realtime_usec / 1000000u,
             realtime_usec % 1000000u);
    return json_object_new_double_s((double)realtime_usec / 1e6, buf);
}

bool wire_job_state_is_valid(const char *s)
{
    return job_state_index(s) >= 0;
}

bool wire_job_state_is_final(const char *s)
{
    int i = job_state_index(s);

    return i >= 0 && job_states[i].final;
}

/* The length of the sequence starting at s[0] if it is valid, else 0. RFC 3629 table 4. */
static size_t utf8_sequence(const unsigned char *s, size_t left)
{
    unsigned char c = s[0];
    unsigned char lo = 0x80, hi = 0xbf;
    size_t n;

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2;
    else if (c >= 0xe0 && c <= 0xef)
        n = 3;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 4;
    else
        return 0; /* continuation byte, overlong lead 0xc0/0xc1, or above U+10FFFF */
    if (c == 0xe0)
        lo = 0xa0; /* overlong */
    else if (c == 0xed)
        hi = 0x9f; /* surrogates */
    else if (c == 0xf0)
        lo = 0x90; /* overlong */
    else if (c == 0xf4)
        hi = 0x8f; /* above U+10FFFF */
    if (left < n || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    return n;
}

bool wire_utf8_is_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;

    for (size_t i = 0; i < len;) {
        size_t n = utf8_sequence(p + i, len - i);

        if (n == 0)
            return false;
        i += n;
    }
    return true;
}

/* ---- framing ---- */

void wire_framer_init(WireFramer *f, size_t max_line)
{
    *f = (WireFramer){.max_line = max_line};
}

void wire_framer_done(WireFramer *f)
{
    free(f->buf);
    *f = (WireFramer){.max_line = f->max_line};
}

/* Move the pending bytes to the front, so the space behind them is whole. */
static void framer_compact(WireFramer *f)
{
    if (f->start == 0)
        return;
    memmove(f->buf, f->buf + f->start, f->len - f->start);
    f->len -= f->start;
    f->scanned -= f->start;
    f->start = 0;
}

int wire_framer_space(WireFramer *f, char **ret, size_t *ret_size)
{
    size_t limit = f->max_line + 1; /* the longest line and its newline */

    framer_compact(f);
    if (f->len >= limit)
        return -EMSGSIZE;
    if (f->len == f->size) {
        size_t size = f->size ? f->size * 2 : 4096;
        char *b;

        if (size > limit)
            size = limit;
        b = realloc(f->buf, size + 1); /* + 1: room for the NUL next() writes */
        if (!b)
            return -ENOMEM;
        f->buf = b;
        f->size = size;
    }
    *ret = f->buf + f->len;
    *ret_size = f->size - f->len;
    return 0;
}

void wire_framer_advance(WireFramer *f, size_t n)
{
    f->len += n;
}

int wire_framer_feed(WireFramer *f, const void *data, size_t n)
{
    const char *p = data;

    while (n > 0) {
        char *space;
        size_t size;
        int r;

        r = wire_framer_space(f, &space, &size);
        if (r < 0)
            return r;
        if (size > n)
            size = n;
        memcpy(space, p, size);
        wire_framer_advance(f, size);
        p += size;
        n -= size;
    }
    return 0;
}

int wire_framer_next(WireFramer *f, char **ret_line, size_t *ret_len)
{
    char *nl;

    if (f->scanned < f->start)
        f->scanned = f->start;
    nl = f->len > f->scanned ? memchr(f->buf + f->scanned, '\n', f->len - f->scanned) : NULL;
    if (!nl) {
        f->scanned = f->len;
        /* The line already holds more than max_line bytes and no newline. */
        if (f->len - f->start > f->max_line)
            return -EMSGSIZE;
        if (f->start == f->len)
            f->start = f->len = f->scanned = 0; /* all consumed: start over cheaply */
        return 0;
    }
    *nl = '\0';
    *ret_line = f->buf + f->start;
    *ret_len = (size_t)(nl - (f->buf + f->start));
    f->start = f->scanned = (size_t)(nl - f->buf) + 1;
    if (*ret_len > f->max_line)
        return -EMSGSIZE;
    return 1;
}

size_t wire_framer_pending(const WireFramer *f)
{
    return f->len - f->start;
}

/* ---- ids and builders ---- */

bool wire_id_equal(const WireId *a, const WireId *b)
{
    if (a->type != b->type)
        return false;
    switch (a->type) {
    case WIRE_ID_NULL:
        return true;
    case WIRE_ID_INT:
        return a->num == b->num;
    case WIRE_ID_STRING:
        return strcmp(a->str, b->str) == 0;
    }
    return false;
}

static json_object *id_to_json(const WireId *id)
{
    switch (id ? id->type : WIRE_ID_NULL) {
    case WIRE_ID_NULL:
        return NULL;
    case WIRE_ID_INT:
        return json_object_new_int64((int64_t)id->num);
    case WIRE_ID_STRING:
        return json_object_new_string(id->str);
    }
    return NULL;
}

/* Add val under key, taking it; a NULL val means JSON null unless it was an allocation failure. */
static int add(json_object *o, const char *key, json_object *val, bool may_be_null)
{
    if (!val && !may_be_null)
        return -ENOMEM;
    if (json_object_object_add(o, key, val) < 0) {
        json_object_put(val);
        return -ENOMEM;
    }
    return 0;
}

/* Serialise o as one line with its newline; o keeps its reference. */
static int to_line(json_object *o, char **ret)
{
    const char *s;
    size_t n;
    char *line;

    s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    if (!s)
        return -ENOMEM;
    n = strlen(s);
    line = malloc(n + 2);
    if (!line)
        return -ENOMEM;
    memcpy(line, s, n);
    line[n] = '\n';
    line[n + 1] = '\0';
    *ret = line;
    return 0;
}

/* A borrowed object, or a fresh {} for NULL: a new reference either way. */
static json_object *object_or_empty(json_object *o)
{
    return o ? json_object_get(o) : json_object_new_object();
}

static int add_id(json_object *o, const WireId *id)
{
    json_object *v = id_to_json(id);

    return add(o, "id", v, !id || id->type == WIRE_ID_NULL);
}

int wire_build_reply(const WireId *id, json_object *result, char **ret)
{
    json_object *o = json_object_new_object();
    int r;

    if (!o)
        return -ENOMEM;
    r = add_id(o, id);
    if (r >= 0)
        r = add(o, "result", object_or_empty(result), false);
    if (r >= 0)
        r = to_line(o, ret);
    json_object_put(o);
    return r;
}

int wire_build_reply_text(const WireId *id, const char *result, char **ret)
{
    json_object *v = id_to_json(id);
    const char *idtext = v ? json_object_to_json_string_ext(
                                     v, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)
                           : "null";
    int r = asprintf(ret, "{\"id\":%s,\"result\":%s}\n", idtext, result);

    json_object_put(v);
    return r < 0 ? -ENOMEM : 0;
}

static json_object *error_object(WireError code, const char *message, const char *detail)
{
    json_object *e = json_object_new_object();
    const char *name = wire_error_to_string(code);
    int r;

    if (!e || !name)
        return json_object_put(e), NULL;
    r = add(e, "code", json_object_new_string(name), false);
    if (r >= 0)
        r = add(e, "message", json_object_new_string(message ? message : name), false);
    if (r >= 0 && detail)
        r = add(e, "detail", json_object_new_string(detail), false);
    if (r < 0)
        return json_object_put(e), NULL;
    return e;
}

int wire_build_error(const WireId *id, WireError code, const char *message, const char *detail,
                     char **ret)
{
    json_object *o = json_object_new_object();
    int r;

    if (!o)
        return -ENOMEM;
    if (!wire_error_to_string(code))
        return json_object_put(o), -EINVAL;
    r = add_id(o, id);
    if (r >= 0)
        r = add(o, "error", error_object(code, message, detail), false);
    if (r >= 0)
        r = to_line(o, ret);
    json_object_put(o);
    return r;
}

int wire_build_event(WireEvent event, json_object *data, char **ret)
{
    const char *name = wire_event_to_string(event);
    json_object *o;
    int r;

    if (!name)
        return -EINVAL;
    o = json_object_new_object();
    if (!o)
        return -ENOMEM;
    r = add(o, "event", json_object_new_string(name), false);
    if (r >= 0)
        r = add(o, "data", object_or_empty(data), false);
    if (r >= 0)
        r = to_line(o, ret);
    json_object_put(o);
    return r;
}

int wire_build_request(const WireId *id, WireMethod method, json_object *params, char **ret)
{
    const char *name = wire_method_to_string(method);
    json_object *o;
    int r;

    if (!name || !id || id->type == WIRE_ID_NULL)
        return -EINVAL;
    o = json_object_new_object();
    if (!o)
        return -ENOMEM;
    r = add_id(o, id);
    if (r >= 0)
        r = add(o, "method", json_object_new_string(name), false);
    if (r >= 0 && params && json_object_object_length(params) > 0)
        r = add(o, "params", json_object_get(params), false);
    if (r >= 0)
        r = to_line(o, ret);
    json_object_put(o);
    return r;
}
