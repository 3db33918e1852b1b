/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * One copy in memory per distinct image, keyed by the SHA-256 of the file:
 * a rule's image and the same file sent by ten clients for ten jobs share one
 * Image. Entries are refcounted by their users (rules, jobs) and leave the
 * cache when the last reference goes.
 *
 * Main thread only. A worker gets a `const Image *` for the length of one
 * message; the job that sent the message holds a reference until the worker
 * has answered, and an Image is never modified once cached, so workers need
 * no reference counting of their own.
 */

#include <stddef.h>
#include <stdint.h>

#include "image.h"

typedef struct ImageCache ImageCache;

typedef struct CachedImage {
    unsigned n_ref;
    Image *image;
    char sha256_hex[65];
    ImageCache *cache; /* NULL once the cache is gone; the entry lives on until unref */
    struct CachedImage *prev, *next;
} CachedImage;

int image_cache_new(ImageCache **ret);
ImageCache *image_cache_free(ImageCache *c); /* NULL-safe; entries still in use survive */

/*
 * Put *img into the cache and return a new reference to the entry for its
 * sha256. Takes *img in every case (sets it to NULL): an image already cached
 * is freed and the existing entry returned.
 */
int image_cache_add(ImageCache *c, Image **img, CachedImage **ret);

/* The entry for this sha256, without taking a reference; NULL if none. */
CachedImage *image_cache_find(ImageCache *c, const uint8_t sha256[32]);

size_t image_cache_count(const ImageCache *c);
uint64_t image_cache_bytes(const ImageCache *c); /* memory held by cached images */

CachedImage *cached_image_ref(CachedImage *i);
CachedImage *cached_image_unref(CachedImage *i); /* NULL-safe, returns NULL */

/* Lowercase hex of 32 bytes into out[65]. */
void sha256_to_hex(const uint8_t sha256[32], char out[65]);

static inline void image_cache_freep(ImageCache **c)
{
    if (*c)
        *c = image_cache_free(*c);
}

static inline void cached_image_unrefp(CachedImage **i)
{
    if (*i)
        *i = cached_image_unref(*i);
}
