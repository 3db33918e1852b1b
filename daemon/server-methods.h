/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The control protocol's methods (docs/protocol.md, "Methods"): one handler
 * each, behind the transport's method table (server.h). A handler asks the
 * manager (or the store, or an image loader thread) and returns its one
 * answer, or keeps the call and answers it later. The methods never see a
 * connection: only a ServerCall.
 */

#include <systemd/sd-event.h>

#include "image-loader.h"
#include "manager.h"
#include "server.h"

typedef struct Methods {
    Manager *manager;
    ImageLoader *images;   /* client images are read and checked on its threads */
    uint64_t started_usec; /* CLOCK_MONOTONIC, for uptime */
    ServerMethods table;
} Methods;

int methods_new(sd_event *e, Manager *m, Methods **ret);
/* After the server: a call still under way is answered to nobody, then freed. */
Methods *methods_free(Methods *x);

/* server-flash.c */
int method_flash(void *userdata, ServerCall *call, WireRequest *req, int fd, ServerReply *reply);

static inline void methods_freep(Methods **x)
{
    if (*x)
        *x = methods_free(*x);
}
