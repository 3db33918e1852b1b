/* SPDX-License-Identifier: MIT */
/*
 * Turning a line into one JSON object, and reading the server's lines on the
 * client side. Clients are lenient where the server is strict: the protocol
 * lets a server add result fields, error codes and events, and a client must
 * ignore what it does not know.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "wire-internal.h"
#include "wire.h"

static bool only_whitespace(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!strchr(" \t\r\n", s[i]) || s[i] == '\0')
            return false;
    return true;
}

static int hex4(const char *s, size_t left)
{
    unsigned v = 0;

    if (left < 4)
        return -1;
    for (size_t i = 0; i < 4; i++) {
        char c = s[i];

        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
            v |= (unsigned)((c | 0x20) - 'a' + 10);
        else
            return -1;
    }
    return (int)v;
}

/* At s (just after "\u"): a lone surrogate? Returns how many bytes a valid pair uses. */
static int surrogate_check(const char *s, size_t left)
{
    int u = hex4(s, left), lo;

    if (u < 0xd800 || u > 0xdfff)
        return 0;
    if (u >= 0xdc00)
        return -1; /* a low half without a high one */
    lo = left >= 10 && s[4] == '\\' && s[5] == 'u' ? hex4(s + 6, left - 6) : -1;
    if (lo < 0xdc00 || lo > 0xdfff)
        return -1;
    return 6; /* the "\uDCxx" that follows */
}

/*
 * What json-c 0.16 lets through even with JSON_TOKENER_STRICT: a lone
 * surrogate escape ("\ud800") silently becomes U+FFFD, and single-quoted
 * strings are accepted. Refuse both by walking the raw line once.
 */
static const char *lexical_error(const char *s, size_t n)
{
    bool in_string = false;

    for (size_t i = 0; i < n; i++) {
        if (!in_string) {
            if (s[i] == '\'')
                return "not JSON: single quotes";
            in_string = s[i] == '"';
            continue;
        }
        if (s[i] == '"') {
            in_string = false;
        } else if (s[i] == '\\' && i + 1 < n) {
            i++; /* the escaped character: "\\" and "\"" are skipped whole */
            if (s[i] == 'u') {
                int k = surrogate_check(s + i + 1, n - i - 1);

                if (k < 0)
                    return "invalid UTF-8: a lone surrogate escape";
                i += (size_t)k;
            }
        }
    }
    return NULL;
}

int wire_json_parse_line(const char *line, size_t len, int max_depth, json_object **ret, char *msg,
                         size_t msg_size)
{
    const char *lexical;
    json_tokener *tok;
    json_object *o;
    size_t used;

    if (len > INT32_MAX)
        return snprintf(msg, msg_size, "line too long"), -EINVAL;
    if (!wire_utf8_is_valid(line, len))
        return snprintf(msg, msg_size, "invalid UTF-8"), -EINVAL;
    if ((lexical = lexical_error(line, len)))
        return snprintf(msg, msg_size, "%s", lexical), -EINVAL;
    if (memchr(line, '\0', len))
        return snprintf(msg, msg_size, "a NUL byte in the line"), -EINVAL;
    tok = json_tokener_new_ex(max_depth);
    if (!tok)
        return -ENOMEM;
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    o = json_tokener_parse_ex(tok, line, (int)len);
    used = json_tokener_get_parse_end(tok);
    /* A bare number at the end of the line waits for more digits: end it. */
    if (!o && json_tokener_get_error(tok) == json_tokener_continue) {
        o = json_tokener_parse_ex(tok, " ", 1);
        used = len;
    }
    if (!o) {
        enum json_tokener_error e = json_tokener_get_error(tok);

        /* json_tokener_continue: the line ended inside the value. */
        snprintf(msg, msg_size, "not JSON: %s",
                 e == json_tokener_continue ? "unexpected end of line"
                                            : json_tokener_error_desc(e));
        json_tokener_free(tok);
        return -EINVAL;
    }
    json_tokener_free(tok);
    if (!only_whitespace(line + used, len - used)) {
        json_object_put(o);
        return snprintf(msg, msg_size, "not JSON: text after the object"), -EINVAL;
    }
    if (!json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        return snprintf(msg, msg_size, "not a JSON object"), -EINVAL;
    }
    *ret = o;
    return 0;
}

static json_object *get(json_object *o, const char *key)
{
    json_object *v = NULL;

    json_object_object_get_ex(o, key, &v);
    return v;
}

static int read_id(json_object *v, WireId *ret)
{
    if (!v) {
        *ret = (WireId){.type = WIRE_ID_NULL};
        return 0;
    }
    if (json_object_is_type(v, json_type_int) && json_object_get_int64(v) >= 0) {
        *ret = wire_id_int((uint64_t)json_object_get_int64(v));
        return 0;
    }
    if (json_object_is_type(v, json_type_string) &&
        (size_t)json_object_get_string_len(v) <= WIRE_MAX_ID_STRING) {
        *ret = (WireId){.type = WIRE_ID_STRING};
        memcpy(ret->str, json_object_get_string(v), (size_t)json_object_get_string_len(v));
        return 0;
    }
    return -EBADMSG;
}

static const char *get_string(json_object *o, const char *key)
{
    json_object *v = get(o, key);

    return json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

static int read_error(json_object *e, WireMessage *m)
{
    if (!json_object_is_type(e, json_type_object))
        return -EBADMSG;
    m->type = WIRE_MESSAGE_ERROR;
    m->error_code = get_string(e, "code");
    m->error_message = get_string(e, "message");
    m->error_detail = get_string(e, "detail");
    if (!m->error_code || !m->error_message)
        return -EBADMSG;
    m->error = wire_error_from_string(m->error_code);
    return 0;
}

static int read_message(json_object *o, WireMessage *m)
{
    json_object *v;

    if ((v = get(o, "event"))) {
        m->type = WIRE_MESSAGE_EVENT;
        m->event_name = get_string(o, "event");
        m->data = get(o, "data");
        if (!m->event_name || !json_object_is_type(m->data, json_type_object))
            return -EBADMSG;
        m->event = wire_event_from_string(m->event_name);
        return 0;
    }
    if (!json_object_object_get_ex(o, "id", &v) || read_id(v, &m->id) < 0)
        return -EBADMSG;
    if ((v = get(o, "error")))
        return read_error(v, m);
    m->type = WIRE_MESSAGE_REPLY;
    m->result = get(o, "result");
    return json_object_is_type(m->result, json_type_object) ? 0 : -EBADMSG;
}

int wire_message_parse(const char *line, size_t len, WireMessage *ret)
{
    WireMessage m = {.error = _WIRE_ERROR_MAX, .event = _WIRE_EVENT_MAX};
    char msg[128];
    int r;

    if (len > WIRE_MAX_REPLY_LINE)
        return -EBADMSG;
    r = wire_json_parse_line(line, len, 64, &m.root, msg, sizeof(msg));
    if (r < 0)
        return r == -ENOMEM ? r : -EBADMSG;
    r = read_message(m.root, &m);
    if (r < 0) {
        json_object_put(m.root);
        return r;
    }
    *ret = m;
    return 0;
}

void wire_message_done(WireMessage *m)
{
    json_object_put(m->root);
    *m = (WireMessage){.error = _WIRE_ERROR_MAX, .event = _WIRE_EVENT_MAX};
}
