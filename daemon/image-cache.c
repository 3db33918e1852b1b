/* SPDX-License-Identifier: MIT */
#include "image-cache.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct ImageCache {
    CachedImage *head;
    size_t count;
    uint64_t bytes;
};

void sha256_to_hex(const uint8_t sha256[32], char out[65])
{
    static const char hex[] = "0123456789abcdef";

    for (size_t i = 0; i < 32; i++) {
        out[2 * i] = hex[sha256[i] >> 4];
        out[2 * i + 1] = hex[sha256[i] & 0xf];
    }
    out[64] = '\0';
}

int image_cache_new(ImageCache **ret)
{
    ImageCache *c = calloc(1, sizeof(*c));

    if (!c)
        return -ENOMEM;
    *ret = c;
    return 0;
}

ImageCache *image_cache_free(ImageCache *c)
{
    if (!c)
        return NULL;
    /* Whoever still holds a reference keeps the image; it just leaves no trace here. */
    for (CachedImage *i = c->head, *next; i; i = next) {
        next = i->next;
        i->cache = NULL;
        i->prev = i->next = NULL;
    }
    free(c);
    return NULL;
}

CachedImage *image_cache_find(ImageCache *c, const uint8_t sha256[32])
{
    for (CachedImage *i = c->head; i; i = i->next)
        if (memcmp(i->image->sha256, sha256, 32) == 0)
            return i;
    return NULL;
}

int image_cache_add(ImageCache *c, Image **img, CachedImage **ret)
{
    CachedImage *i = image_cache_find(c, (*img)->sha256);

    if (i) {
        *img = image_free(*img);
        *ret = cached_image_ref(i);
        return 0;
    }
    i = calloc(1, sizeof(*i));
    if (!i) {
        *img = image_free(*img);
        return -ENOMEM;
    }
    i->n_ref = 1;
    i->image = *img;
    *img = NULL;
    sha256_to_hex(i->image->sha256, i->sha256_hex);
    i->cache = c;
    i->next = c->head;
    if (c->head)
        c->head->prev = i;
    c->head = i;
    c->count++;
    c->bytes += i->image->size;
    *ret = i;
    return 0;
}

size_t image_cache_count(const ImageCache *c)
{
    return c->count;
}

uint64_t image_cache_bytes(const ImageCache *c)
{
    return c->bytes;
}

CachedImage *cached_image_ref(CachedImage *i)
{
    if (i)
        i->n_ref++;
    return i;
}

static void cached_image_unlink(CachedImage *i)
{
    ImageCache *c = i->cache;

    if (!c)
        return;
    if (i->prev)
        i->prev->next = i->next;
    else
        c->head = i->next;
    if (i->next)
        i->next->prev = i->prev;
    c->count--;
    c->bytes -= i->image->size;
}

CachedImage *cached_image_unref(CachedImage *i)
{
    if (!i || --i->n_ref > 0)
        return NULL;
    cached_image_unlink(i);
    image_free(i->image);
    free(i);
    return NULL;
}
