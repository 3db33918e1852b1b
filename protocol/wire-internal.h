/* SPDX-License-Identifier: MIT */
#pragma once

/* Shared between wire*.c only. */

#include <json-c/json.h>
#include <stddef.h>

/*
 * One line as one JSON object: valid UTF-8 checked on the raw bytes first
 * (json-c passes invalid UTF-8 through), strict JSON, at most max_depth levels,
 * nothing but whitespace after the object. -EINVAL with a one-line reason in
 * msg; -ENOMEM.
 */
int wire_json_parse_line(const char *line, size_t len, int max_depth, json_object **ret, char *msg,
                         size_t msg_size);
