/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The control socket (docs/protocol.md): the transport. It owns the listening
 * socket and its clients (credentials, limits, timeouts, framing, output
 * queues, event fan-out) and knows no method: a request, parsed and allowed,
 * goes to the handler the method table names, and the transport sends the
 * one reply the handler gives, now or later (sd-varlink's shape). Main thread
 * only; every fd is non-blocking and watched by the one sd-event loop.
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

#include "manager.h"
#include "wire.h"

typedef struct Server Server;

/* A request under way: what a handler may know of its client, and how it answers. */
typedef struct ServerCall ServerCall;

typedef struct ServerPeer {
    uint64_t serial; /* "client 12" in log lines */
    pid_t pid;
    uid_t uid;
    gid_t gid;
} ServerPeer;

/* What a handler answers: a result (taken), or an error. */
typedef struct ServerReply {
    json_object *result;
    char *result_text; /* or the result as JSON text already (taken): sent as it is */
    WireError error;
    char detail[64]; /* "" for none */
    char message[512];
} ServerReply;

#define SERVER_REPLY_ERROR 1 /* the reply is reply->error and reply->message */
#define SERVER_REPLY_LATER 2 /* the handler keeps the call and answers with server_call_reply() */

/*
 * A handler: 0 (reply->result is the answer), SERVER_REPLY_ERROR, SERVER_REPLY_LATER,
 * or -errno (the transport logs it once and answers `internal`). fd (or -1) is
 * taken; req may be moved out of (wire_request_move) by a handler that answers later.
 */
typedef int (*ServerHandler)(void *userdata, ServerCall *call, WireRequest *req, int fd,
                             ServerReply *reply);

typedef struct ServerMethods {
    ServerHandler handlers[_WIRE_METHOD_MAX]; /* every method has one */
    void *userdata;
} ServerMethods;

/*
 * Take the socket systemd passed (exactly one AF_UNIX stream socket), or bind
 * config->socket_path: parent directory created 0755, a stale socket replaced
 * only when nothing answers on it, mode 0660, group config->group when that
 * group exists. Logs what went wrong; negative errno. methods is borrowed.
 */
int server_new(sd_event *e, Manager *m, const ServerMethods *methods, Server **ret);
/* Closes every client and the listening socket; unlinks the path it bound. A call still
 * under way finds no client when it answers. */
Server *server_free(Server *s);
/* Serve a connected socket (taken) as if accepted: tests hand in one end of a socketpair. */
int server_adopt(Server *s, int fd);

/* ---- for handlers ---- */

const ServerPeer *server_call_peer(const ServerCall *call);
/* Its client is still connected (an answer later may find nobody). */
bool server_call_connected(const ServerCall *call);
/* The client wants events from now on. */
int server_call_subscribe(ServerCall *call);
/* A line about this peer in the log, at most one per uid per 10 s. */
void server_call_log(ServerCall *call, int level, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
/*
 * The answer to a call a handler kept (SERVER_REPLY_LATER): r as a handler's
 * return value. The call is freed and the client's next requests go on.
 */
void server_call_reply(ServerCall *call, int r, ServerReply *reply);

/* Fill reply with an error; returns SERVER_REPLY_ERROR. detail may be NULL. */
int server_reply_error(ServerReply *reply, WireError code, const char *detail, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

static inline void server_freep(Server **s)
{
    if (*s)
        *s = server_free(*s);
}
