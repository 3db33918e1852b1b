/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Client images are read, validated and hashed off the main loop, each on a
 * thread of its own, with a deadline.
 *
 * A client's fd may be a file whose read blocks for ever (/proc/kmsg, a
 * stalled network or FUSE file system) or a 256 MiB image that takes a second
 * to hash: neither may stop the loop. A load that has not finished by its
 * deadline is answered "did not deliver within N s" and its thread is
 * cancelled at its read; it never touches loop-owned memory. A read that
 * never returns even to a cancel (a hung kernel) keeps its slot: at most
 * IMAGE_LOADER_MAX threads exist, so a client cannot pile them up.
 */

#include <stdint.h>
#include <systemd/sd-event.h>

#include "errcode.h"
#include "image.h"

#define IMAGE_LOADER_MAX 4u

typedef struct ImageLoader ImageLoader;

/*
 * The result, on the main thread: r 0 and *img (take it: set *img NULL) or r
 * < 0 with err (image-io ... image errors, ERR_IMAGE_IO with "did not deliver"
 * for the deadline, -ECANCELED when the loader is freed first). Called exactly
 * once per load.
 */
typedef void (*ImageLoadFn)(void *userdata, int r, Image **img, const ErrInfo *err);

int image_loader_new(sd_event *e, ImageLoader **ret);
/* Loads still running are answered -ECANCELED and their threads cancelled; a thread
 * that does not end is left to the process exit. */
ImageLoader *image_loader_free(ImageLoader *l);

/*
 * Read and validate the image behind fd (taken) on a thread, by timeout_usec.
 * -EBUSY when IMAGE_LOADER_MAX threads are busy (stuck ones too); -ENOMEM.
 */
int image_loader_load(ImageLoader *l, int fd, uint64_t timeout_usec, ImageLoadFn fn,
                      void *userdata);
