/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Shared by server.c (sockets, connections, I/O), server-methods.c (one
 * handler per method) and server-json.c (Device and Job as JSON).
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "job-json.h"
#include "server-json.h"
#include "server.h"
#include "wire.h"

#define SERVER_LINGER_USEC (5u * 1000000u) /* a closing client gets this long to read */
/* Stop reading requests while this much output waits: pipelining cannot grow it. */
#define SERVER_READ_PAUSE_BYTES (WIRE_MAX_OUTPUT / 2) /* WIRE_MAX_PAGE_BYTES counts on it */
#define SERVER_PROGRESS_SLOTS   256u /* jobs downloading at once: at most the workers */
#define SERVER_GROUPS_MAX       1024u

typedef struct Client Client;

struct Client {
    Server *server;
    int fd;
    sd_event_source *io, *linger;
    uint64_t serial; /* for log lines: "client 12" */
    pid_t pid;
    uid_t uid;
    gid_t gid;
    gid_t *groups;
    size_t n_groups;

    WireFramer framer;
    uint64_t newlines_received; /* newlines read from the socket so far */
    uint64_t lines_taken;       /* lines taken out of the framer so far */
    int pending_fd;             /* SCM_RIGHTS fd waiting for its line, or -1 */
    uint64_t pending_fd_line;   /* the line it arrived with */

    char *out; /* output queue: out[out_start..out_len) still to write */
    size_t out_start, out_len, out_size;
    bool at_line_start; /* the last byte written ended a line */

    struct ServerCall *call;    /* a request answered later: nothing more is read until then */
    bool eof;                   /* the client sent all it will; close once answered */
    bool privileged;            /* root or the daemon's group: may change things, reserved slots */
    bool ready;                 /* may have a complete line: served at its next turn */
    sd_event_source *deadline;  /* the line or idle timeout, armed only when one applies */
    uint64_t line_started_usec; /* CLOCK_MONOTONIC: bytes of an unfinished line came; 0 none */
    uint64_t active_usec;       /* CLOCK_MONOTONIC: the last byte read or answer sent */

    bool subscribed;
    bool closing; /* write what is queued, then close; read nothing more */
    bool dead;    /* to be freed by the reaper */
    Client *prev, *next;
};

/* Per-peer warnings: one line per uid per interval, then a count of what was held back. */
#define SERVER_PEER_LOG_SLOTS    64u
#define SERVER_PEER_LOG_INTERVAL (10u * 1000000u)

typedef struct PeerLog {
    uid_t uid;
    bool used;
    uint64_t last_usec;
    unsigned suppressed;
} PeerLog;

typedef struct ProgressSlot {
    uint64_t job_id;
    uint64_t last_usec; /* CLOCK_MONOTONIC of the last job.progress sent */
} ProgressSlot;

struct Server {
    sd_event *event;
    Manager *manager;
    int listen_fd;
    bool activated;   /* the socket came from systemd: never unlink it */
    char *bound_path; /* the path we bound and will unlink */
    sd_event_source *listen_source, *reaper;
    sd_event_source *turns; /* serves one line of each ready client per dispatch */
    PeerLog peer_logs[SERVER_PEER_LOG_SLOTS];
    char *group;       /* group= */
    bool group_exists; /* else only root may change things */
    gid_t group_gid;
    Client *clients;
    size_t n_clients; /* in the list, dead ones included until reaped */
    size_t n_live;    /* not dead: what the connection limits count */
    uint64_t next_serial;
    size_t n_subscribers;
    bool manager_subscribed;
    ProgressSlot progress[SERVER_PROGRESS_SLOTS];
    const ServerMethods *methods; /* the handlers: the transport knows no method */
};

/* server.c */
/* A warning about a peer, at most one per uid per SERVER_PEER_LOG_INTERVAL. */
void peer_log(Client *c, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Queue a complete line (ending in \n) for c. Over the limit: c is dropped. */
void client_send(Client *c, const char *line, size_t len);
/* Write what is queued, then close (after at most SERVER_LINGER_USEC). */
void client_close_after_flush(Client *c);
void client_send_error(Client *c, const WireId *id, WireError code, const char *detail,
                       const char *fmt, ...) __attribute__((format(printf, 5, 6)));
void client_send_result(Client *c, const WireId *id, json_object *result);     /* takes result */
void client_send_result_text(Client *c, const WireId *id, const char *result); /* JSON text */

/*
 * A request under way (server.h): the client reads no further request until
 * it is answered, so replies stay in request order and one client holds at
 * most one call.
 */
struct ServerCall {
    Client *client; /* NULL once the client is gone */
    ServerPeer peer;
    WireId id;
    WireMethod method;
};

/* server-events.c */
int server_subscribe(Server *s, Client *c);
void server_on_manager_event(void *userdata, ManagerEvent ev, const Device *d, const Job *j);
