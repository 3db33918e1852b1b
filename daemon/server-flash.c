/* SPDX-License-Identifier: MIT */
/*
 * The flash method (docs/protocol.md, "flash"): the image arrives as an fd,
 * is read and validated completely on a loader thread, and checked against
 * every target's chip before anything is queued; the jobs are recorded by the
 * store before the answer. All or nothing. The call is answered later.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "server-methods.h"
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
static int check_chip(const WireRequest *req, const Image *img, ServerReply *reply)
{
    Chip want = req->flash.chip;

    if (want == CHIP_UNKNOWN || img->pid == 0xffffu || want == img->chip)
        return 0;
    return server_reply_error(reply, WIRE_ERROR_WRONG_CHIP, NULL,
                              "the image is for %s (PID 0x%04x), not %s", chip_to_string(img->chip),
                              img->pid, chip_to_string(want));
}

/* Each present board on an explicit path must take the image; empty ports may wait. */
static int check_paths(Manager *m, const WireRequest *req, const Image *img, ServerReply *reply)
{
    for (size_t i = 0; i < req->flash.n_paths; i++) {
        const Device *d = manager_get_device(m, req->flash.paths[i]);

        if (!d || image_matches_device(img, d->info.vid, d->info.pid))
            continue;
        return server_reply_error(
                reply, WIRE_ERROR_WRONG_CHIP, NULL,
                "the image is for %s (PID 0x%04x); the board on %s is %s (PID 0x%04x)",
                chip_to_string(img->chip), img->pid, d->info.path, chip_to_string(d->info.chip),
                d->info.pid);
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

/* 0 and the targets, SERVER_REPLY_ERROR (the reply says why), or -ENOMEM. */
static int select_targets(Manager *m, const WireRequest *req, const Image *img, Targets *t,
                          ServerReply *reply)
{
    int r;

    if (req->flash.all) {
        r = select_all(m, req, img, t);
        if (r < 0)
            return r;
    } else if (req->flash.paths) {
        r = check_paths(m, req, img, reply);
        if (r != 0)
            return r;
        t->paths = calloc(req->flash.n_paths + 1, sizeof(char *));
        if (!t->paths)
            return -ENOMEM;
        for (size_t i = 0; i < req->flash.n_paths; i++)
            t->paths[t->n++] = req->flash.paths[i];
    }
    if (t->n == 0)
        return server_reply_error(reply, WIRE_ERROR_NO_TARGET, NULL, "%s",
                                  req->flash.all ? "no board present takes this image"
                                                 : "flash needs \"paths\" or \"all\"");
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

/* manager_flash()'s refusals as protocol errors; -errno for the rest. */
static int flash_error(int r, ServerReply *reply)
{
    switch (r) {
    case -ENOSPC:
        return server_reply_error(reply, WIRE_ERROR_QUEUE_FULL, NULL, "the job table is full");
    case -ESHUTDOWN:
        return server_reply_error(reply, WIRE_ERROR_SHUTTING_DOWN, NULL, "espdfud is stopping");
    case -EINVAL:
        return server_reply_error(reply, WIRE_ERROR_BAD_REQUEST, NULL, "a path is not a port path");
    case -EIO:
        return server_reply_error(reply, WIRE_ERROR_INTERNAL, NULL,
                                  "the job store is not open: no job can be recorded (see status)");
    default:
        return r;
    }
}

/*
 * A flash under way: its image is being read on a loader thread, then its jobs
 * are being recorded by the store. The request is kept (moved out of the line).
 */
typedef struct FlashAsk {
    Methods *methods;
    ServerCall *call;
    WireRequest req;
    CachedImage *image;
    char name[256];
} FlashAsk;

/* The one answer; the client's next lines go on. */
static void flash_answer(FlashAsk *a, int r, ServerReply *reply)
{
    server_call_reply(a->call, r, reply);
    cached_image_unref(a->image);
    wire_request_done(&a->req);
    free(a);
}

/* The jobs are committed (ids) or the store refused them. */
static void on_flash_recorded(void *userdata, int r, const char *message, const uint64_t *ids,
                              size_t n)
{
    FlashAsk *a = userdata;
    const ServerPeer *p = server_call_peer(a->call);
    ServerReply reply = {};

    if (r >= 0) {
        log_info("flash of %s (%s) on %zu port%s queued by uid %u (pid %d)", a->name,
                 a->image->sha256_hex, n, n == 1 ? "" : "s", (unsigned)p->uid, (int)p->pid);
        reply.result = flash_result(ids, n, a->image);
        r = reply.result ? 0 : -ENOMEM;
    } else
        r = server_reply_error(
                &reply, r == -EAGAIN || r == -ENOSPC ? WIRE_ERROR_QUEUE_FULL : WIRE_ERROR_INTERNAL,
                NULL, "the jobs could not be recorded, none is queued: %s", message);
    flash_answer(a, r, &reply);
}

/* The image is read and valid: check it against the targets, then queue every job, or none. */
static int flash_image(FlashAsk *a, Image **img, ServerReply *reply)
{
    Manager *m = a->methods->manager;
    _cleanup_(targets_done) Targets t = {};
    ManagerFlashOptions o = {
            .retries = a->req.flash.retries,
            .timeout_s = a->req.flash.timeout_s,
    };
    int r;

    r = check_chip(&a->req, *img, reply);
    if (r == 0)
        r = select_targets(m, &a->req, *img, &t, reply);
    if (r != 0)
        return r;
    r = manager_add_image(m, img, &a->image);
    /* The answer waits for the store: no id is given before its row is committed. */
    if (r >= 0)
        r = manager_flash(m, t.paths, t.n, a->image, a->name, &o, on_flash_recorded, a);
    return r < 0 ? flash_error(r, reply) : SERVER_REPLY_LATER;
}

/* The loader thread has read and validated the image, or gave up. */
static void on_image_loaded(void *userdata, int r, Image **loaded, const ErrInfo *err)
{
    FlashAsk *a = userdata;
    _cleanup_(image_freep) Image *img = loaded ? TAKE_PTR(*loaded) : NULL;
    ServerReply reply = {};

    if (r == -ECANCELED)
        r = server_reply_error(&reply, WIRE_ERROR_SHUTTING_DOWN, NULL, "espdfud is stopping");
    else if (r < 0) {
        server_call_log(a->call, LOG_NOTICE, "flash of %s refused: %s", a->name, err->message);
        r = server_reply_error(&reply, WIRE_ERROR_IMAGE_INVALID, espdfu_err_to_string(err->code),
                               "%s: %s", a->name, err->message);
    } else if (!server_call_connected(a->call))
        r = -ENOTCONN; /* nobody waits: nothing is queued */
    else
        r = flash_image(a, &img, &reply);
    if (r != SERVER_REPLY_LATER)
        flash_answer(a, r, &reply);
}

int method_flash(void *userdata, ServerCall *call, WireRequest *req, int fd, ServerReply *reply)
{
    _cleanup_close_ int image_fd = fd;
    Methods *x = userdata;
    const Config *config = manager_get_config(x->manager);
    FlashAsk *a;
    int r;

    if (image_fd < 0)
        return server_reply_error(reply, WIRE_ERROR_NO_IMAGE, NULL,
                                  "flash needs the image as a file descriptor (SCM_RIGHTS)");
    a = calloc(1, sizeof(*a));
    if (!a)
        return -ENOMEM;
    a->methods = x;
    a->call = call;
    if (req->flash.name)
        snprintf(a->name, sizeof(a->name), "%s", req->flash.name);
    else
        default_name(image_fd, a->name, sizeof(a->name));
    /* Read and hashed on a thread: a file that blocks or a huge image never stops the loop. */
    r = image_loader_load(x->images, TAKE_FD(image_fd),
                          (uint64_t)config->image_timeout_s * USEC_PER_SEC, on_image_loaded, a);
    if (r < 0) {
        free(a);
        if (r == -EBUSY)
            return server_reply_error(reply, WIRE_ERROR_INTERNAL, NULL,
                                      "%u images are being read already; try again later",
                                      IMAGE_LOADER_MAX);
        return r;
    }
    wire_request_move(&a->req, req);
    return SERVER_REPLY_LATER;
}
