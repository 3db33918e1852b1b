/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The control socket (docs/protocol.md): the listening socket, its clients, and
 * the methods they call on the manager. Main thread only; every fd is
 * non-blocking and watched by the one sd-event loop. Nothing runs while no
 * client talks: no timers, no polling.
 */

#include <systemd/sd-event.h>

#include "manager.h"

typedef struct Server Server;

/*
 * Take the socket systemd passed (exactly one AF_UNIX stream socket), or bind
 * config->socket_path: parent directory created 0755, a stale socket replaced
 * only when nothing answers on it, mode 0660, group config->group when that
 * group exists. Logs what went wrong; negative errno.
 */
int server_new(sd_event *e, Manager *m, Server **ret);
/* Closes every client and the listening socket; unlinks the path it bound. */
Server *server_free(Server *s);

static inline void server_freep(Server **s)
{
    if (*s)
        *s = server_free(*s);
}
