/* SPDX-License-Identifier: MIT */
/*
 * The flash method (docs/protocol.md, "flash"): the image arrives as an fd,
 * is validated completely and checked against every target's chip before
 * anything is queued. All or nothing.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "image-loader.h"
#include "log.h"
#include "server-internal.h"
#include "timeutil.h"
#include "util.h"

typedef struct Targets {
    const char **paths; /* borrowed from the request or the device table */
    size_t n;
} Targets;

static void targets_done(Targets *t)
{
    free(t->paths);
}

/* The chip every target must have: chip= when given (it must match the image). */
static int check_chip(Client *c, const WireRequest *req, const Image *img)
{
    Chip want = req->flash.chip;

    if (want == CHIP_UNKNOWN || img->pid == 0xffffu || want == img->chip)
        return 0;
    client_send_error(c, &req->id, WIRE_ERROR_WRONG_CHIP, NULL,
                      "the image is for %s (PID 0x%04x), not %s", chip_to_string(img->chip),
                      img->pid, chip_to_string(want));
    return -EINVAL;
}

/* Each present board on an explicit path must take the image; empty ports may wait. */
static int check_paths(Client *c, const WireRequest *req, const Image *img)
{
    Manager *m = c->server->manager;

    for (size_t i = 0; i < req->flash.n_paths; i++) {
        const Device *d = manager_get_device(m, req->flash.paths[i]);

        if (!d || image_matches_device(img, d->info.vid, d->info.pid))
            continue;
        client_send_error(c, &req->id, WIRE_ERROR_WRONG_CHIP, NULL,
                          "the image is for %s (PID 0x%04x); the board on %s is %s (PID 0x%04x)",
                          chip_to_string(img->chip), img->pid, d->info.path,
                          chip_to_string(d->info.chip), d->info.pid);
        return -EINVAL;
    }
    return 0;
}

/* all: every present board of the chip asked for (or the image's), that the image fits. */
static int select_all(Manager *m, const WireRequest *req, const Image *img, Targets *t)
{
    Chip want = req->flash.chip != CHIP_UNKNOWN ? req->flash.chip : img->chip;
    size_t n = 0;

    for (const Device *d = manager_next_device(m, NULL); d; d = manager_next_device(m, d))
        n++;
    t->paths = calloc(n + 1, sizeof(char *));
    if (!t->paths)
        return -ENOMEM;
    for (const Device *d = manager_next_device(m, NULL); d; d = manager_next_device(m, d)) {
        if (!d->present || !image_matches_device(img, d->info.vid, d->info.pid))
            continue;
        if (want != CHIP_UNKNOWN && d->info.chip != want)
            continue;
        t->paths[t->n++] = d->info.path;
    }
    return 0;
}

static int select_targets(Client *c, const WireRequest *req, const Image *img, Targets *t)
{
    int r;

    if (req->flash.all) {
        r = select_all(c->server->manager, req, img, t);
        if (r < 0)
            return r;
    } else if (req->flash.paths) {
        r = check_paths(c, req, img);
        if (r < 0)
            return r;
        t->paths = calloc(req->flash.n_paths + 1, sizeof(char *));
        if (!t->paths)
            return -ENOMEM;
        for (size_t i = 0; i < req->flash.n_paths; i++)
            t->paths[t->n++] = req->flash.paths[i];
    }
    if (t->n == 0) {
        client_send_error(c, &req->id, WIRE_ERROR_NO_TARGET, NULL, "%s",
                          req->flash.all ? "no board present takes this image"
                                         : "flash needs \"paths\" or \"all\"");
        return -EINVAL;
    }
    return 0;
}

/* The client's own name of the file, for display only: "dfu.bin". */
static void default_name(int fd, char *buf, size_t size)
{
    char proc[64], target[PATH_MAX];
    ssize_t n;
    const char *base;

    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
    n = readlink(proc, target, sizeof(target) - 1);
    if (n <= 0 || target[0] != '/') {
        snprintf(buf, size, "image");
        return;
    }
    target[n] = '\0';
    base = strrchr(target, '/') + 1;
    snprintf(buf, size, "%.255s", *base ? base : "image");
}

static json_object *flash_result(const uint64_t *ids, size_t n, const CachedImage *img)
{
    json_object *o = json_object_new_object(), *list = json_object_new_array(), *i;

    for (size_t k = 0; k < n && list; k++)
        json_object_array_add(list, json_object_new_int64((int64_t)ids[k]));
    i = json_object_new_object();
    json_object_object_add(i, "sha256", json_object_new_string(img->sha256_hex));
    json_object_object_add(i, "chip", json_object_new_string(chip_to_string(img->image->chip)));
    json_object_object_add(i, "size", json_object_new_int64((int64_t)img->image->size));
    if (json_object_object_add(o, "jobs", list) < 0 || json_object_object_add(o, "image", i) < 0)
        return json_object_put(o), NULL;
    return o;
}

static void reply_flash_error(Client *c, const WireRequest *req, int r)
{
    switch (r) {
    case -ENOSPC:
        client_send_error(c, &req->id, WIRE_ERROR_QUEUE_FULL, NULL, "the job table is full");
        break;
    case -ESHUTDOWN:
        client_send_error(c, &req->id, WIRE_ERROR_SHUTTING_DOWN, NULL, "espdfud is stopping");
        break;
    case -EINVAL:
        client_send_error(c, &req->id, WIRE_ERROR_BAD_REQUEST, NULL, "a path is not a port path");
        break;
    case -EIO:
        client_send_error(c, &req->id, WIRE_ERROR_INTERNAL, NULL,
                          "the job store is not open: no job can be recorded (see status)");
        break;
    default:
        log_errno(LOG_ERR, r, "flash for client %" PRIu64 " failed", c->serial);
        client_send_error(c, &req->id, WIRE_ERROR_INTERNAL, NULL, "flash failed: %s", strerror(-r));
    }
}

/*
 * A flash under way: its image is being read on a loader thread, then its jobs
 * are being recorded by the store. The request is kept (moved out of the line).
 */
typedef struct FlashAsk {
    ServerCall *call;
    WireRequest req;
    CachedImage *image;
    char name[256];
    uid_t uid;
    pid_t pid;
} FlashAsk;

/* The answer is out (or nobody waits for it): the client's next lines go on. */
static void flash_ask_end(FlashAsk *a)
{
    server_call_end(a->call);
    cached_image_unref(a->image);
    wire_request_done(&a->req);
    free(a);
}

/* The jobs are committed (ids) or the store refused them. */
static void on_flash_recorded(void *userdata, int r, const char *message, const uint64_t *ids,
                              size_t n)
{
    FlashAsk *a = userdata;
    Client *c = a->call->client;

    if (r >= 0)
        log_info("flash of %s (%s) on %zu port%s queued by uid %u (pid %d)", a->name,
                 a->image->sha256_hex, n, n == 1 ? "" : "s", (unsigned)a->uid, (int)a->pid);
    if (c && r >= 0)
        client_send_result(c, &a->call->id, flash_result(ids, n, a->image));
    else if (c)
        client_send_error(c, &a->call->id,
                          r == -EAGAIN || r == -ENOSPC ? WIRE_ERROR_QUEUE_FULL
                                                       : WIRE_ERROR_INTERNAL,
                          NULL, "the jobs could not be recorded, none is queued: %s", message);
    flash_ask_end(a);
}

/* Validated image and targets in hand: cache it and queue every job, or none. */
static void queue_jobs(Client *c, FlashAsk *a, Image **img, const Targets *t)
{
    Manager *m = c->server->manager;
    ManagerFlashOptions o = {
            .retries = a->req.flash.retries,
            .timeout_s = a->req.flash.timeout_s,
    };
    int r;

    r = manager_add_image(m, img, &a->image);
    /* The answer waits for the store: no id is given before its row is committed. */
    if (r >= 0)
        r = manager_flash(m, t->paths, t->n, a->image, a->name, &o, on_flash_recorded, a);
    if (r < 0) {
        reply_flash_error(c, &a->req, r);
        flash_ask_end(a);
    }
}

/* The loader thread has read and validated the image, or gave up. */
static void on_image_loaded(void *userdata, int r, Image **loaded, const ErrInfo *err)
{
    FlashAsk *a = userdata;
    Client *c = a->call->client;
    _cleanup_(image_freep) Image *img = loaded ? TAKE_PTR(*loaded) : NULL;
    _cleanup_(targets_done) Targets t = {};

    if (!c)
        return flash_ask_end(a);
    if (r == -ECANCELED) {
        client_send_error(c, &a->req.id, WIRE_ERROR_SHUTTING_DOWN, NULL, "espdfud is stopping");
        return flash_ask_end(a);
    }
    if (r < 0) {
        peer_log(c, LOG_NOTICE, "flash of %s refused: %s", a->name, err->message);
        client_send_error(c, &a->req.id, WIRE_ERROR_IMAGE_INVALID, espdfu_err_to_string(err->code),
                          "%s: %s", a->name, err->message);
        return flash_ask_end(a);
    }
    if (check_chip(c, &a->req, img) < 0)
        return flash_ask_end(a);
    r = select_targets(c, &a->req, img, &t);
    if (r == -ENOMEM)
        reply_flash_error(c, &a->req, r);
    if (r < 0)
        return flash_ask_end(a);
    queue_jobs(c, a, &img, &t);
}

void server_flash(Client *c, WireRequest *req, int fd)
{
    _cleanup_close_ int image_fd = fd;
    const Config *config = manager_get_config(c->server->manager);
    FlashAsk *a;
    int r;

    if (image_fd < 0) {
        client_send_error(c, &req->id, WIRE_ERROR_NO_IMAGE, NULL,
                          "flash needs the image as a file descriptor (SCM_RIGHTS)");
        return;
    }
    a = calloc(1, sizeof(*a));
    if (!a)
        return reply_flash_error(c, req, -ENOMEM);
    if (req->flash.name)
        snprintf(a->name, sizeof(a->name), "%s", req->flash.name);
    else
        default_name(image_fd, a->name, sizeof(a->name));
    a->uid = c->uid;
    a->pid = c->pid;
    a->call = server_call_begin(c, &req->id);
    if (!a->call) {
        free(a);
        return reply_flash_error(c, req, -ENOMEM);
    }
    wire_request_move(&a->req, req);
    /* Read and hashed on a thread: a file that blocks or a huge image never stops the loop. */
    r = image_loader_load(c->server->images, TAKE_FD(image_fd),
                          (uint64_t)config->image_timeout_s * USEC_PER_SEC, on_image_loaded, a,
                          NULL);
    if (r < 0) {
        if (r == -EBUSY)
            client_send_error(c, &a->req.id, WIRE_ERROR_INTERNAL, NULL,
                              "%u images are being read already; try again later",
                              IMAGE_LOADER_MAX);
        else
            reply_flash_error(c, &a->req, r);
        server_call_cancel(a->call);
        wire_request_done(&a->req);
        free(a);
    }
}
