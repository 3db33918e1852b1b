/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The control protocol's wire codec (docs/protocol.md): one JSON object per
 * line. Shared by espdfud (server side) and espdfuctl (client side).
 *
 * Pure module: bytes in, C structs or malloc'd lines out. No fds, no globals,
 * no printing. Failures are negative errno; request parsing also fills a
 * WireFailure with the protocol error code and a one-line message that names
 * the offending key ("params.paths[2]: expected a string").
 *
 * Layers, each its own function:
 *   framing   WireFramer: bytes in, complete lines out, bounded
 *   parsing   wire_request_parse(): a line -> WireRequest, strict, by field table
 *   building  wire_build_reply/error/event/request(): -> "...\n"
 *   reading   wire_message_parse(): a server line -> reply, error or event (lenient:
 *             clients ignore fields they do not know)
 */

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "image.h"

#define WIRE_PROTOCOL_VERSION 2
/* A request line, the newline not counted; longer is too-large + close. */
#define WIRE_MAX_LINE 16384u
/* What one client may have queued for output; also bounds a server line. */
#define WIRE_MAX_OUTPUT (1024u * 1024u)
/* Server lines (a long `jobs` reply) may exceed WIRE_MAX_LINE, never this. */
#define WIRE_MAX_REPLY_LINE          WIRE_MAX_OUTPUT
#define WIRE_MAX_ID_STRING           64u          /* bytes of a string id */
#define WIRE_MAX_ID_INT              (1ull << 53) /* integer ids are 0 <= id < this */
#define WIRE_MAX_PATHS               256u         /* paths in one flash */
#define WIRE_MAX_PATH                63u          /* bytes of a port path (DEVICE_PATH_MAX - 1) */
#define WIRE_MAX_NAME                255u         /* bytes of an image name or client name */
#define WIRE_MAX_RETRIES             10
#define WIRE_MAX_TIMEOUT_S           (7u * 24u * 3600u) /* a week: larger is surely a mistake */
#define WIRE_MAX_DEPTH               16                 /* JSON nesting accepted in a request */
#define WIRE_MAX_CONNECTIONS         64u
#define WIRE_MAX_CONNECTIONS_PER_UID 16u
/* Of WIRE_MAX_CONNECTIONS, this many only root and the daemon's group may take. */
#define WIRE_RESERVED_CONNECTIONS 16u
#define WIRE_LINE_TIMEOUT_S       5u    /* a line started and not finished */
#define WIRE_IDLE_TIMEOUT_S       60u   /* nothing asked, nothing awaited, not subscribed */
#define WIRE_MAX_FDS              1u    /* per request; only flash takes one */
#define WIRE_PROGRESS_PER_SECOND  4u    /* job.progress events per job per subscriber */
#define WIRE_MAX_HISTORY_LIMIT    1000u /* records in one `history` reply */
/* A `history` page is cut (and `next` set) past this: with the half of WIRE_MAX_OUTPUT at
 * which the server stops reading a client's requests, it stays under WIRE_MAX_OUTPUT, so a
 * client pipelining history requests is never dropped for its own answers. */
#define WIRE_MAX_PAGE_BYTES        (WIRE_MAX_OUTPUT / 2 - 64u * 1024u)
#define WIRE_HISTORY_LIMIT_DEFAULT 100u
#define WIRE_SHA256_HEX            64u /* a SHA-256 in lowercase hex */

typedef enum WireMethod {
    WIRE_METHOD_HELLO,
    WIRE_METHOD_STATUS,
    WIRE_METHOD_DEVICES,
    WIRE_METHOD_JOBS,
    WIRE_METHOD_JOB,
    WIRE_METHOD_SUBSCRIBE,
    WIRE_METHOD_FLASH,
    WIRE_METHOD_CANCEL,
    WIRE_METHOD_PAUSE,
    WIRE_METHOD_RESUME,
    WIRE_METHOD_RELOAD,
    WIRE_METHOD_HISTORY,
    _WIRE_METHOD_MAX,
} WireMethod;

const char *wire_method_to_string(WireMethod m);   /* "hello", ...; NULL out of range */
WireMethod wire_method_from_string(const char *s); /* _WIRE_METHOD_MAX when unknown */
/* flash, cancel, pause, resume, reload: root or the daemon's group only. */
bool wire_method_is_changing(WireMethod m);

/* The stable error codes of docs/protocol.md: only append. */
typedef enum WireError {
    WIRE_ERROR_BAD_REQUEST,
    WIRE_ERROR_TOO_LARGE,
    WIRE_ERROR_UNKNOWN_METHOD,
    WIRE_ERROR_PERMISSION_DENIED,
    WIRE_ERROR_NOT_FOUND,
    WIRE_ERROR_NO_IMAGE,
    WIRE_ERROR_IMAGE_INVALID,
    WIRE_ERROR_WRONG_CHIP,
    WIRE_ERROR_NO_TARGET,
    WIRE_ERROR_QUEUE_FULL,
    WIRE_ERROR_CONFIG_INVALID,
    WIRE_ERROR_SHUTTING_DOWN,
    WIRE_ERROR_TOO_MANY_CONNECTIONS,
    WIRE_ERROR_INTERNAL,
    WIRE_ERROR_TIMEOUT, /* half a line and nothing more, or idle: the connection is closed */
    _WIRE_ERROR_MAX,
} WireError;

const char *wire_error_to_string(WireError e);   /* "bad-request", ...; NULL out of range */
WireError wire_error_from_string(const char *s); /* _WIRE_ERROR_MAX when unknown */

typedef enum WireEvent {
    WIRE_EVENT_DEVICE_ADDED,
    WIRE_EVENT_DEVICE_REMOVED,
    WIRE_EVENT_DEVICE_CHANGED,
    WIRE_EVENT_JOB_QUEUED,
    WIRE_EVENT_JOB_STARTED,
    WIRE_EVENT_JOB_CHANGED,
    WIRE_EVENT_JOB_PROGRESS,
    WIRE_EVENT_JOB_FINISHED,
    WIRE_EVENT_DROPPED,
    _WIRE_EVENT_MAX,
} WireEvent;

const char *wire_event_to_string(WireEvent e);   /* "device.added", ...; NULL out of range */
WireEvent wire_event_from_string(const char *s); /* _WIRE_EVENT_MAX when unknown */

/* The job states a `jobs` filter may name, besides "active" and "finished". */
bool wire_job_state_is_valid(const char *s);
/* A time as the protocol writes it: Unix seconds with all six digits of microseconds, as a
 * JSON number ("%.6f"; json-c's default shows 17 digits). NULL (JSON null) for 0. */
json_object *wire_json_time(uint64_t realtime_usec);
/* succeeded, failed, cancelled, interrupted, expired: the results a history holds. */
bool wire_job_state_is_final(const char *s);

/* Strict UTF-8 (RFC 3629): no overlongs, no surrogates, nothing above U+10FFFF. */
bool wire_utf8_is_valid(const char *s, size_t len);

/* ---- framing ---- */

/*
 * A bounded line buffer. Read into wire_framer_space(), commit with
 * wire_framer_advance(), then take lines with wire_framer_next() until it
 * returns 0. The buffer grows on demand up to max_line + 1 bytes, so an idle
 * connection costs little.
 */
typedef struct WireFramer {
    char *buf;
    size_t size;     /* allocated */
    size_t start;    /* first byte not yet returned as a line */
    size_t len;      /* bytes held */
    size_t scanned;  /* buf[start..scanned) holds no newline */
    size_t max_line; /* without the newline */
} WireFramer;

void wire_framer_init(WireFramer *f, size_t max_line);
void wire_framer_done(WireFramer *f);
/* Where to put up to *ret_size more bytes. -ENOMEM; -EMSGSIZE when full without a line. */
int wire_framer_space(WireFramer *f, char **ret, size_t *ret_size);
void wire_framer_advance(WireFramer *f, size_t n);
/* Copy bytes in (a convenience over space + advance): -EMSGSIZE if they do not fit. */
int wire_framer_feed(WireFramer *f, const void *data, size_t n);
/*
 * The next complete line, without its newline, NUL-terminated in place and valid
 * until the next call on f. 1: a line; 0: need more bytes; -EMSGSIZE: the
 * pending line is already longer than max_line (a framing error: close).
 */
int wire_framer_next(WireFramer *f, char **ret_line, size_t *ret_len);
/* Bytes held that are not yet a complete line. */
size_t wire_framer_pending(const WireFramer *f);

/* ---- ids ---- */

typedef enum WireIdType {
    WIRE_ID_NULL, /* could not be read: errors carry "id":null */
    WIRE_ID_INT,
    WIRE_ID_STRING,
} WireIdType;

typedef struct WireId {
    WireIdType type;
    uint64_t num;
    char str[WIRE_MAX_ID_STRING + 1];
} WireId;

static inline WireId wire_id_int(uint64_t n)
{
    return (WireId){.type = WIRE_ID_INT, .num = n};
}
bool wire_id_equal(const WireId *a, const WireId *b);

/* ---- requests (server side) ---- */

typedef enum WireJobsFilter {
    WIRE_JOBS_ALL, /* no state given */
    WIRE_JOBS_STATE,
    WIRE_JOBS_ACTIVE,   /* not finished */
    WIRE_JOBS_FINISHED, /* succeeded, failed or cancelled */
} WireJobsFilter;

typedef struct WireRequest {
    WireId id;
    WireMethod method;
    union {
        struct {
            bool has_version;
            int64_t version;
            char *client; /* NULL when absent */
        } hello;
        struct {
            WireJobsFilter filter;
            char *state;    /* with WIRE_JOBS_STATE: a valid job state name */
            char *path;     /* NULL: every port */
            uint64_t limit; /* 0: no limit */
        } jobs;
        struct {
            uint64_t id;
        } job; /* job and cancel */
        struct {
            char *path;      /* NULL: every port */
            char *result;    /* NULL, or a final state: "succeeded", "failed", "cancelled",
                                "interrupted", "expired" */
            char *sha256;    /* NULL, or the image's SHA-256: 64 lowercase hex digits */
            int64_t since;   /* Unix seconds; 0: from the beginning */
            uint64_t before; /* cursor: only ids below this, newest page; 0: none */
            uint64_t after;  /* cursor: only ids above this, oldest first; 0: none */
            bool ascending;  /* `after` was given (even 0): oldest first */
            unsigned limit;  /* 1..WIRE_MAX_HISTORY_LIMIT */
        } history;
        struct {
            char **paths; /* n_paths strings; NULL when `paths` was absent */
            size_t n_paths;
            bool all;
            Chip chip;          /* CHIP_UNKNOWN when absent */
            char *name;         /* NULL when absent */
            int retries;        /* -1 when absent */
            unsigned timeout_s; /* 0 when absent */
        } flash;
    };
} WireRequest;

/* Why a request was refused: the code, the id if it could be read, one line. */
typedef struct WireFailure {
    WireError code;
    WireId id;
    char message[256];
} WireFailure;

/*
 * Parse one request line (without its newline). Strict: invalid UTF-8, not one
 * JSON object, an unknown key at the top or in params, a wrong type, a missing
 * mandatory field or a bad value is -EINVAL with failure->code bad-request; an
 * unknown method is -EINVAL with unknown-method. failure->id holds the id
 * whenever it could be read. On success *ret is filled (free with
 * wire_request_done()); on failure *ret is untouched. -ENOMEM.
 */
int wire_request_parse(const char *line, size_t len, WireRequest *ret, WireFailure *failure);
void wire_request_done(WireRequest *r);
/* Hand what src owns to dst (a request answered later); src is left empty. */
void wire_request_move(WireRequest *dst, WireRequest *src);

/* ---- building lines (both sides); each returns a malloc'd "...\n" ---- */

/* {"id":ID,"result":RESULT}. result is borrowed (NULL: {}). */
int wire_build_reply(const WireId *id, json_object *result, char **ret);
/* The same with RESULT already JSON text (one object or array, no newline), e.g. a
 * history page the store thread built; it is trusted to be valid JSON. */
int wire_build_reply_text(const WireId *id, const char *result, char **ret);
/* {"id":ID,"error":{"code":..,"message":..[,"detail":..]}}. detail may be NULL. */
int wire_build_error(const WireId *id, WireError code, const char *message, const char *detail,
                     char **ret);
/* {"event":NAME,"data":DATA}. data is borrowed (NULL: {}). */
int wire_build_event(WireEvent event, json_object *data, char **ret);
/* {"id":ID,"method":NAME[,"params":PARAMS]}. params borrowed; NULL or {} leaves it out. */
int wire_build_request(const WireId *id, WireMethod method, json_object *params, char **ret);

/* ---- reading server lines (client side) ---- */

typedef enum WireMessageType {
    WIRE_MESSAGE_REPLY,
    WIRE_MESSAGE_ERROR,
    WIRE_MESSAGE_EVENT,
} WireMessageType;

typedef struct WireMessage {
    WireMessageType type;
    WireId id;           /* reply and error */
    json_object *result; /* reply: borrowed from root */
    WireError error;     /* error: _WIRE_ERROR_MAX for a code this client does not know */
    const char *error_code, *error_message, *error_detail; /* borrowed; detail may be NULL */
    WireEvent event;        /* event: _WIRE_EVENT_MAX when unknown (ignore it) */
    const char *event_name; /* borrowed */
    json_object *data;      /* event: borrowed */
    json_object *root;      /* owns everything above */
} WireMessage;

/*
 * Parse one line from the server (without its newline; at most
 * WIRE_MAX_REPLY_LINE). Unknown extra keys are ignored, as the protocol asks of
 * clients. -EBADMSG when it is not a reply, an error or an event; -ENOMEM.
 */
int wire_message_parse(const char *line, size_t len, WireMessage *ret);
void wire_message_done(WireMessage *m);
