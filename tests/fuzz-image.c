/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the dfu.bin parser: any bytes, no crash, no
 * out-of-bounds read, no leak, and a consistent answer.
 *
 * image_parse() stops at the CRC for most mutations, so the same bytes also go
 * to image_check_archive() with the 16-byte suffix cut off, as a board would
 * receive them: that is where the CPIO and dfuinfo0.dat code gets explored.
 */
#include <stdlib.h>
#include <string.h>

#include "image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A failure must name a code and say something; a success must be self-consistent. */
static void check_result(int r, const ErrInfo *e)
{
    if (r < 0 && (e->code == ERR_OK || e->code >= _ERR_MAX || e->message[0] == 0))
        abort();
    if (r > 0)
        abort();
}

static void check_image(const Image *img, const uint8_t *data, size_t size)
{
    if (img->size != size || memcmp(img->data, data, size) != 0 ||
        img->payload_size + IMAGE_SUFFIX_SIZE != size || img->n_entries == 0)
        abort();
    for (size_t i = 0; i < img->n_entries; i++) {
        const ImageEntry *x = &img->entries[i];

        if (x->data_offset > img->payload_size || x->size > img->payload_size - x->data_offset)
            abort();
    }
    /* A valid image's archive is valid on its own too. */
    if (image_check_archive(data, img->payload_size, NULL) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Image *img = NULL;
    ErrInfo e = {};
    int r;

    r = image_parse(data, size, &img, &e);
    check_result(r, &e);
    if (r == 0)
        check_image(img, data, size);
    else if (img)
        abort(); /* *ret must be untouched on failure */
    image_free(img);

    e = (ErrInfo){};
    r = image_check_archive(data, size >= IMAGE_SUFFIX_SIZE ? size - IMAGE_SUFFIX_SIZE : size, &e);
    check_result(r, &e);
    return 0;
}
