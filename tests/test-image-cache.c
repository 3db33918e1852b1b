/* SPDX-License-Identifier: MIT */
/* daemon/image-cache.c: one copy per sha256, refcounted, shared by rules and jobs. */
#include <errno.h>
#include <fcntl.h>

#include "daemon-test.h"
#include "image-cache.h"
#include "util.h"

#define IMAGE_1 FIXTURES_DIR "/mkdfu/1/dfu.bin"
#define IMAGE_2 FIXTURES_DIR "/mkdfu/2/dfu.bin"

static Image *load(const char *path)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    Image *img = NULL;
    ErrInfo err;

    if (fd < 0 || image_load_fd(fd, &img, &err) < 0)
        return NULL;
    return img;
}

static void test_same_image_once(T *t)
{
    _cleanup_(image_cache_freep) ImageCache *c = NULL;
    CachedImage *a = NULL, *b = NULL, *other = NULL;
    Image *img;

    CHECK(image_cache_new(&c) == 0);
    CHECK((img = load(IMAGE_1)));
    CHECK(image_cache_add(c, &img, &a) == 0);
    CHECK(img == NULL && a->n_ref == 1);
    CHECK((img = load(IMAGE_1)));
    CHECK(image_cache_add(c, &img, &b) == 0);
    /* The second copy was freed; the first entry is shared. */
    CHECK(img == NULL && b == a && a->n_ref == 2);
    CHECK(image_cache_count(c) == 1);
    CHECK(image_cache_bytes(c) == a->image->size);
    CHECK((img = load(IMAGE_2)));
    CHECK(image_cache_add(c, &img, &other) == 0);
    CHECK(other != a && image_cache_count(c) == 2);
    CHECK(image_cache_find(c, a->image->sha256) == a);

    cached_image_unref(b);
    CHECK(a->n_ref == 1 && image_cache_count(c) == 2);
    cached_image_unref(a);
    /* The last reference gone: out of the cache. */
    CHECK(image_cache_count(c) == 1);
    CHECK(image_cache_bytes(c) == other->image->size);
    cached_image_unref(other);
    CHECK(image_cache_count(c) == 0 && image_cache_bytes(c) == 0);
}

static void test_reference_outlives_cache(T *t)
{
    ImageCache *c = NULL;
    CachedImage *a = NULL;
    Image *img;

    CHECK(image_cache_new(&c) == 0);
    CHECK((img = load(IMAGE_1)));
    CHECK(image_cache_add(c, &img, &a) == 0);
    c = image_cache_free(c);
    /* A job still holding the image keeps it, whatever happened to the cache. */
    CHECK(a->cache == NULL && a->image->payload_size > 0);
    CHECK(cached_image_ref(a) == a && a->n_ref == 2);
    cached_image_unref(a);
    cached_image_unref(a);
}

static void test_sha256_hex(T *t)
{
    uint8_t sha[32];
    char hex[65];

    for (int i = 0; i < 32; i++)
        sha[i] = (uint8_t)(i * 17);
    sha256_to_hex(sha, hex);
    CHECK(strlen(hex) == 64);
    CHECK(strncmp(hex, "00112233", 8) == 0);
    CHECK(strcmp(hex + 56, "dcedfe0f") == 0);
}

int main(void)
{
    RUN(test_same_image_once);
    RUN(test_reference_outlives_cache);
    RUN(test_sha256_hex);
    return test_summary();
}
