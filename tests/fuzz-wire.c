/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the wire codec: the bytes go through the framer in
 * uneven pieces (the first byte picks the piece size), each line through the
 * strict request parser and the lenient client-side reader. A parsed request
 * is rebuilt as a reply to its id, and must read back with the same id.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void one_line(const char *line, size_t len)
{
    WireRequest req;
    WireFailure f;
    WireMessage m;
    char *out = NULL;

    if (wire_request_parse(line, len, &req, &f) == 0) {
        if (wire_build_reply(&req.id, NULL, &out) == 0) {
            if (wire_message_parse(out, strlen(out) - 1, &m) != 0 || !wire_id_equal(&m.id, &req.id))
                abort();
            wire_message_done(&m);
            free(out);
        }
        wire_request_done(&req);
    } else {
        if (f.code >= _WIRE_ERROR_MAX || !memchr(f.message, '\0', sizeof(f.message)))
            abort();
        /* Every refusal must be expressible as an error line. */
        if (wire_build_error(&f.id, f.code, f.message, NULL, &out) != 0)
            abort();
        free(out);
    }
    if (wire_message_parse(line, len, &m) == 0)
        wire_message_done(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    WireFramer fr;
    size_t piece;

    if (size == 0)
        return 0;
    piece = (size_t)data[0] % 64 + 1;
    data++;
    size--;
    /* A small limit so the fuzzer reaches the too-large path often. */
    wire_framer_init(&fr, 2048);
    while (size > 0) {
        size_t n = size < piece ? size : piece;
        char *line;
        size_t len;
        int r;

        if (wire_framer_feed(&fr, data, n) < 0)
            break;
        data += n;
        size -= n;
        while ((r = wire_framer_next(&fr, &line, &len)) > 0)
            one_line(line, len);
        if (r < 0)
            break;
    }
    wire_framer_done(&fr);
    return 0;
}
