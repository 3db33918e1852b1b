/* SPDX-License-Identifier: MIT */
/*
 * espdfuctl inspect FILE [--json]: validate a dfu.bin completely (image.c) and
 * show what a board would get. Exit 0 only for a valid image.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "image.h"
#include "util.h"

static void json_object_putp(json_object **o)
{
    json_object_put(*o);
}

static void help(void)
{
    printf("Usage: espdfuctl inspect [--json] FILE\n\n"
           "Validate a dfu.bin completely (DFU suffix and CRC, CPIO archive, dfuinfo0.dat,\n"
           "every entry's MD5, flash_params.dat, flash layout) and show its chip, USB\n"
           "VID:PID, flash size, payload size, sha256 and entries.\n\n"
           "  --json      one JSON document on stdout, also for an invalid image\n"
           "  -h, --help  this text\n\n"
           "Exit status: 0 valid image, 1 invalid or unreadable (the reason and its\n"
           "stable code on stderr: 'espdfuctl: FILE: message [code]'), 2 usage error.\n");
}

static const char *hex(const uint8_t *p, size_t n, char *buf)
{
    for (size_t i = 0; i < n; i++)
        sprintf(buf + 2 * i, "%02x", p[i]);
    buf[2 * n] = 0;
    return buf;
}

/* Never guess a chip from an unknown PID: say what the suffix holds. */
static const char *chip_name(const Image *img, char *buf, size_t size)
{
    if (img->chip == CHIP_UNKNOWN)
        snprintf(buf, size, "unknown (PID 0x%04x)", img->pid);
    else
        snprintf(buf, size, "%s", chip_to_string(img->chip));
    return buf;
}

static int print_text(const char *path, const Image *img)
{
    char chip[32], sha[65], flags[64];
    int w = 4;

    for (size_t i = 0; i < img->n_entries; i++)
        if ((int)strlen(img->entries[i].name) > w)
            w = (int)strlen(img->entries[i].name);
    printf("file:        %s\n"
           "chip:        %s\n"
           "usb id:      %04x:%04x%s\n"
           "flash size:  %s (%u bytes)\n"
           "payload:     %zu bytes (file %zu bytes, minus the 16-byte DFU suffix)\n"
           "sha256:      %s\n"
           "entries:     %zu\n\n",
           path, chip_name(img, chip, sizeof(chip)), img->vid, img->pid,
           img->vid == 0xffff ? " (any vendor)" : "",
           image_flash_size_to_string(img->flash.chip_size), img->flash.chip_size,
           img->payload_size, img->size, hex(img->sha256, 32, sha), img->n_entries);
    printf("  %-*s  %-10s  %10s  %-24s  %s\n", w, "NAME", "ADDRESS", "SIZE", "FLAGS", "MD5");
    for (size_t i = 0; i < img->n_entries; i++) {
        const ImageEntry *e = &img->entries[i];

        printf("  %-*s  0x%08x  %10u  %-24s  %s\n", w, e->name, e->address, e->size,
               image_flags_format(e->flags, flags, sizeof(flags)),
               e->md5_checked ? "ok" : "ignored");
    }
    return CTL_EXIT_OK;
}

static json_object *json_flags(uint32_t flags)
{
    json_object *a = json_object_new_array();
    char buf[16];

    for (uint32_t bit = 1; bit; bit <<= 1) {
        const char *name = image_flag_to_string(bit);

        if (!(flags & bit))
            continue;
        if (!name) {
            snprintf(buf, sizeof(buf), "0x%x", bit);
            name = buf;
        }
        json_object_array_add(a, json_object_new_string(name));
    }
    return a;
}

static json_object *json_entry(const ImageEntry *e)
{
    json_object *o = json_object_new_object();
    char md5[33];

    json_object_object_add(o, "name", json_object_new_string(e->name));
    json_object_object_add(o, "address", json_object_new_int64(e->address));
    json_object_object_add(o, "size", json_object_new_int64(e->size));
    json_object_object_add(o, "flags", json_flags(e->flags));
    json_object_object_add(o, "flags_value", json_object_new_int64(e->flags));
    json_object_object_add(o, "md5", json_object_new_string(hex(e->md5, 16, md5)));
    json_object_object_add(o, "md5_status",
                           json_object_new_string(e->md5_checked ? "ok" : "ignored"));
    json_object_object_add(o, "header_offset", json_object_new_int64((int64_t)e->header_offset));
    json_object_object_add(o, "data_offset", json_object_new_int64((int64_t)e->data_offset));
    return o;
}

static json_object *json_flash_params(const FlashParams *f)
{
    json_object *o = json_object_new_object();

    json_object_object_add(o, "ishspi", json_object_new_int64(f->ishspi));
    json_object_object_add(o, "legacy", json_object_new_int64(f->legacy));
    json_object_object_add(o, "device_id", json_object_new_int64(f->device_id));
    json_object_object_add(o, "chip_size", json_object_new_int64(f->chip_size));
    json_object_object_add(o, "block_size", json_object_new_int64(f->block_size));
    json_object_object_add(o, "sector_size", json_object_new_int64(f->sector_size));
    json_object_object_add(o, "page_size", json_object_new_int64(f->page_size));
    json_object_object_add(o, "status_mask", json_object_new_int64(f->status_mask));
    return o;
}

static void json_print(json_object *o)
{
    puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
                                                   JSON_C_TO_STRING_NOSLASHESCAPE));
}

static int print_json(const char *path, const Image *img)
{
    _cleanup_(json_object_putp) json_object *o = json_object_new_object();
    json_object *entries = json_object_new_array();
    char sha[65], usb[10];

    snprintf(usb, sizeof(usb), "%04x:%04x", img->vid, img->pid);
    json_object_object_add(o, "file", json_object_new_string(path));
    json_object_object_add(o, "valid", json_object_new_boolean(1));
    json_object_object_add(o, "chip", json_object_new_string(chip_to_string(img->chip)));
    json_object_object_add(o, "vid", json_object_new_int64(img->vid));
    json_object_object_add(o, "pid", json_object_new_int64(img->pid));
    json_object_object_add(o, "usb_id", json_object_new_string(usb));
    json_object_object_add(o, "bcd_device", json_object_new_int64(img->bcd_device));
    json_object_object_add(o, "flash_size", json_object_new_int64(img->flash.chip_size));
    json_object_object_add(
            o, "flash_size_name",
            json_object_new_string(image_flash_size_to_string(img->flash.chip_size)));
    json_object_object_add(o, "size", json_object_new_int64((int64_t)img->size));
    json_object_object_add(o, "payload_size", json_object_new_int64((int64_t)img->payload_size));
    json_object_object_add(o, "sha256", json_object_new_string(hex(img->sha256, 32, sha)));
    json_object_object_add(o, "flash_params", json_flash_params(&img->flash));
    for (size_t i = 0; i < img->n_entries; i++)
        json_object_array_add(entries, json_entry(&img->entries[i]));
    json_object_object_add(o, "entries", entries);
    json_print(o);
    return CTL_EXIT_OK;
}

static int report_invalid(const char *path, const ErrInfo *e, bool json)
{
    if (json) {
        _cleanup_(json_object_putp) json_object *o = json_object_new_object();
        json_object *error = json_object_new_object();

        json_object_object_add(error, "code",
                               json_object_new_string(espdfu_err_to_string(e->code)));
        json_object_object_add(error, "message", json_object_new_string(e->message));
        json_object_object_add(o, "file", json_object_new_string(path));
        json_object_object_add(o, "valid", json_object_new_boolean(0));
        json_object_object_add(o, "error", error);
        json_print(o);
    }
    return ctl_error(CTL_EXIT_FAILURE, path, e);
}

int cmd_inspect(int argc, char *argv[])
{
    static const struct option options[] = {
            {"help", no_argument, NULL, 'h'},
            {"json", no_argument, NULL, 'j'},
            {},
    };
    _cleanup_(image_freep) Image *img = NULL;
    _cleanup_close_ int fd = -1;
    bool json = false;
    const char *path;
    ErrInfo e = {};
    int c;

    while ((c = getopt_long(argc, argv, ":h", options, NULL)) >= 0)
        switch (c) {
        case 'h':
            help();
            return CTL_EXIT_OK;
        case 'j':
            json = true;
            break;
        default:
            return ctl_bad_option("inspect", c, argv);
        }
    if (argc - optind != 1)
        return ctl_usage("inspect", argc == optind ? "no FILE given" : "exactly one FILE, please");
    path = argv[optind];
    /* O_NONBLOCK: a FIFO must not hang us before fstat() refuses it. */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        err_set(&e, ERR_IMAGE_IO, "cannot open: %s", strerror(errno));
        return report_invalid(path, &e, json);
    }
    if (image_load_fd(fd, &img, &e) < 0)
        return report_invalid(path, &e, json);
    return json ? print_json(path, img) : print_text(path, img);
}
