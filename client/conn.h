/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * espdfuctl's connection to espdfud's control socket (docs/protocol.md): the
 * transport only. Lines are built and read with protocol/wire.h; this file adds
 * the socket, the timeouts, SCM_RIGHTS, and a bounded queue of the events that
 * arrive while a reply is awaited (flash --wait subscribes before it flashes).
 *
 * Every function that fails has already printed one actionable line on stderr
 * and returns the CtlExit to leave with, negated (-CTL_EXIT_UNREACHABLE, ...),
 * so a command's failure path is `if (r < 0) return -r;`.
 */

#include <json-c/json.h>
#include <stdbool.h>

#include "wire.h"

#define CTL_DEFAULT_SOCKET    "/run/espdfud/espdfud.sock"
#define CTL_REPLY_TIMEOUT_MS  10000 /* connect, and each non-streaming request */
#define CTL_MAX_QUEUED_EVENTS 65536u

typedef struct CtlConn CtlConn;

/* --socket (global or per command) wins over $ESPDFU_SOCKET, then the default. */
void ctl_set_socket(const char *path);
const char *ctl_socket(void);

int ctl_connect(CtlConn **ret);
/*
 * The same without printing: why (at most CTL_WHY_MAX bytes are useful) says
 * what failed, for a caller that has somewhere else to go (offline `history`).
 */
#define CTL_WHY_MAX 512u /* a socket path (< 108 bytes) and a sentence */
int ctl_connect_quiet(CtlConn **ret, char *why, size_t why_size);
CtlConn *ctl_conn_free(CtlConn *c);

static inline void ctl_conn_freep(CtlConn **c)
{
    *c = ctl_conn_free(*c);
}

/*
 * Send one request (params borrowed, may be NULL) with fd attached when
 * fd >= 0, and wait up to CTL_REPLY_TIMEOUT_MS for its reply. Events read
 * meanwhile are queued for ctl_next_event(). On success *ret is the reply
 * (wire_message_done() it). A daemon error reply is printed and turned into
 * its exit code (permission-denied 4, not-found 5, ...).
 */
int ctl_call(CtlConn *c, WireMethod method, json_object *params, int fd, WireMessage *ret);

/*
 * The next event: a queued one first, then from the socket. timeout_ms < 0
 * waits for ever. 0: an event in *ret; -CTL_EXIT_UNREACHABLE when the daemon
 * went away; 1 on timeout or when interrupted by a signal (*ret untouched).
 */
int ctl_next_event(CtlConn *c, int timeout_ms, WireMessage *ret);

/* The socket, for poll() alongside a terminal or a timer. */
int ctl_conn_fd(const CtlConn *c);

/* The image an image-invalid reply is about: "espdfuctl: IMAGE: message [detail]". */
void ctl_set_image_path(const char *path);

/* Print a daemon error reply; returns the exit code it maps to. */
int ctl_print_error(const WireMessage *m, const char *what);

/* A result object for --json: pretty for one document, one line in a stream. */
void ctl_print_json(json_object *o, bool stream);

/* Lenient getters for result objects: a missing or mistyped key reads as NULL/0/-1. */
json_object *jget(json_object *o, const char *key);
const char *jstr(json_object *o, const char *key); /* NULL when absent or not a string */
int64_t jint(json_object *o, const char *key);     /* -1 when absent or not a number */
double jnum(json_object *o, const char *key);      /* 0 when absent or not a number */

/*
 * The whole life of a non-streaming command: connect, one request, and the
 * result printed as JSON or by print(). Returns the exit code.
 */
int ctl_request(WireMethod method, json_object *params, bool json,
                int (*print)(json_object *result));

static inline void json_object_putp(json_object **o)
{
    json_object_put(*o);
}
