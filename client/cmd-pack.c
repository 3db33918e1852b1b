/* SPDX-License-Identifier: MIT */
/*
 * espdfuctl pack: build a dfu.bin byte-identical to ESP-IDF's
 * `mkdfu.py write` (the packing itself is image-pack.c), from ADDR FILE pairs
 * and/or the flasher_args.json that `idf.py build` leaves in build/.
 *
 * Command-line values that do not parse are usage errors (exit 2); problems
 * with the inputs (files, flasher_args.json, overlaps) are failures (exit 1).
 * The output is written to a temporary file beside OUT and renamed over it,
 * so a failure never leaves half an image behind.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "commands.h"
#include "image.h"
#include "util.h"

#define FLASHER_ARGS_MAX (16u * 1024u * 1024u)

typedef struct PackInput {
    char *path; /* as given, or joined to flasher_args.json's directory */
    uint32_t address;
    uint8_t *data;
    size_t size;
} PackInput;

typedef struct PackArgs {
    const char *output, *chip, *pid, *flash_size, *part_size, *flasher_args;
    char *json_chip, *json_flash_size; /* from flasher_args.json */
    PackInput *inputs;
    size_t n_inputs;
} PackArgs;

static void pack_args_done(PackArgs *a)
{
    for (size_t i = 0; i < a->n_inputs; i++) {
        free(a->inputs[i].path);
        free(a->inputs[i].data);
    }
    free(a->inputs);
    free(a->json_chip);
    free(a->json_flash_size);
}

static void json_object_putp(json_object **o)
{
    json_object_put(*o);
}

static void help(void)
{
    printf("Usage: espdfuctl pack -o OUT [--chip CHIP | --pid HEX] [--flash-size SIZE]\n"
           "                      [--part-size N] [--flasher-args JSON] [ADDR FILE]...\n\n"
           "Build a dfu.bin byte-identical to ESP-IDF's `mkdfu.py write` (what `idf.py dfu`\n"
           "runs): files sorted by address, the last file given for an address wins, each\n"
           "split into part-size chunks (app.bin, app.bin.1, ...), flash_params.dat first.\n\n"
           "  -o, --output OUT        the image to write (atomically: temp file + rename)\n"
           "      --chip CHIP         esp32s2, esp32s3, esp32p4 or esp32s31\n"
           "      --pid HEX           the USB PID instead of --chip (2, 0x0009, ...)\n"
           "      --flash-size SIZE   1MB 2MB 4MB 8MB 16MB 32MB 64MB 128MB (default 2MB)\n"
           "      --part-size N       chunk size (default $ESP_DFU_PART_SIZE, else 524288)\n"
           "      --flasher-args JSON build/flasher_args.json: its flash_files (relative to\n"
           "                          the JSON's directory), chip and flash_size; options on\n"
           "                          the command line override them\n"
           "  -h, --help              this text\n\n"
           "ADDR is a number as mkdfu reads it: 0x1000, 4096, 0o10000.\n\n"
           "Refused (exit 1): a missing, unreadable or empty file, a name (with its chunk\n"
           "suffix) longer than 63 bytes, two entries with one name, files that overlap or\n"
           "end past the flash size. Exit 2 for a malformed option or value.\n");
}

static int add_input(PackArgs *a, uint32_t address, const char *path)
{
    PackInput *p = reallocarray(a->inputs, a->n_inputs + 1, sizeof(*p));

    if (!p)
        return -ENOMEM;
    a->inputs = p;
    p[a->n_inputs] = (PackInput){.path = strdup(path), .address = address};
    if (!p[a->n_inputs].path)
        return -ENOMEM;
    a->n_inputs++;
    return 0;
}

static int parse_options(int argc, char *argv[], PackArgs *a)
{
    static const struct option options[] = {
            {"help", no_argument, NULL, 'h'},
            {"output", required_argument, NULL, 'o'},
            {"chip", required_argument, NULL, 'c'},
            {"pid", required_argument, NULL, 'p'},
            {"flash-size", required_argument, NULL, 'f'},
            {"part-size", required_argument, NULL, 's'},
            {"flasher-args", required_argument, NULL, 'j'},
            {},
    };
    int c;

    while ((c = getopt_long(argc, argv, ":ho:", options, NULL)) >= 0)
        switch (c) {
        case 'h':
            help();
            return 1;
        case 'o':
            a->output = optarg;
            break;
        case 'c':
            a->chip = optarg;
            break;
        case 'p':
            a->pid = optarg;
            break;
        case 'f':
            a->flash_size = optarg;
            break;
        case 's':
            a->part_size = optarg;
            break;
        case 'j':
            a->flasher_args = optarg;
            break;
        default:
            return -ctl_bad_option("pack", c, argv);
        }
    if (!a->output)
        return -ctl_usage("pack", "no output: give -o OUT");
    if (a->chip && a->pid)
        return -ctl_usage("pack", "give --chip or --pid, not both");
    return 0;
}

/* ADDR FILE pairs, as mkdfu takes them. */
static int parse_pairs(int argc, char *argv[], PackArgs *a)
{
    ErrInfo e = {};

    if ((argc - optind) % 2 != 0)
        return ctl_usage("pack", "'%s' has no FILE: give ADDR FILE pairs", argv[argc - 1]);
    for (int i = optind; i < argc; i += 2) {
        uint32_t address;

        if (image_parse_number(argv[i], &address) < 0) {
            err_set(&e, ERR_PACK_ARGS, "address \"%s\" is not a number that fits 32 bits", argv[i]);
            return ctl_error(CTL_EXIT_USAGE, "pack", &e);
        }
        if (add_input(a, address, argv[i + 1]) < 0)
            return ctl_error(CTL_EXIT_FAILURE, "pack",
                             &(ErrInfo){.code = ERR_PACK_ARGS, .message = "out of memory"});
    }
    return 0;
}

static const char *json_string_at(json_object *root, const char *section, const char *key,
                                  bool *wrong_type)
{
    json_object *s, *v;

    *wrong_type = false;
    if (!json_object_object_get_ex(root, section, &s))
        return NULL;
    if (!json_object_is_type(s, json_type_object) || !json_object_object_get_ex(s, key, &v) ||
        !json_object_is_type(v, json_type_string)) {
        *wrong_type = !json_object_is_type(s, json_type_object) ||
                      json_object_object_get_ex(s, key, NULL);
        return NULL;
    }
    return json_object_get_string(v);
}

/* Paths in flash_files are relative to the JSON file's directory (mkdfu's rule). */
static char *join_path(const char *json_path, const char *path)
{
    const char *slash = strrchr(json_path, '/');
    char *r;

    if (path[0] == '/' || !slash)
        return strdup(path);
    if (asprintf(&r, "%.*s/%s", (int)(slash - json_path), json_path, path) < 0)
        return NULL;
    return r;
}

static int read_json(const char *path, json_object **ret, ErrInfo *err)
{
    _cleanup_free_ uint8_t *buf = NULL;
    _cleanup_close_ int fd = -1;
    enum json_tokener_error jerr;
    const char *why;
    json_tokener *tok;
    json_object *o;
    ErrInfo e = {};
    size_t size = 0, end;

    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return err_set(err, ERR_PACK_ARGS, "%s: cannot open: %s", path, strerror(errno));
    if (image_read_fd(fd, FLASHER_ARGS_MAX, &buf, &size, &e) < 0)
        return err_set(err, ERR_PACK_ARGS, "%s: %s", path, e.message);
    tok = json_tokener_new();
    if (!tok)
        return err_set(err, ERR_PACK_ARGS, "out of memory");
    o = json_tokener_parse_ex(tok, (const char *)buf, (int)size);
    jerr = json_tokener_get_error(tok);
    end = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    /* The whole file is one object: nothing but white space after it. */
    while (o && end < size && memchr(" \t\r\n", buf[end], 4))
        end++;
    why = jerr == json_tokener_continue               ? "unexpected end of file"
          : jerr != json_tokener_success              ? json_tokener_error_desc(jerr)
          : !json_object_is_type(o, json_type_object) ? "the top level is not an object"
          : end < size                                ? "text after the object"
                                                      : NULL;
    if (why) {
        json_object_put(o);
        return err_set(err, ERR_PACK_ARGS, "%s: not valid flasher_args.json (%s, byte %zu)", path,
                       why, end);
    }
    *ret = o;
    return 0;
}

static int load_flash_files(const char *path, json_object *root, PackArgs *a, ErrInfo *err)
{
    json_object *files;

    if (!json_object_object_get_ex(root, "flash_files", &files) ||
        !json_object_is_type(files, json_type_object))
        return err_set(err, ERR_PACK_ARGS, "%s: no \"flash_files\" object", path);
    json_object_object_foreach(files, key, value)
    {
        _cleanup_free_ char *file = NULL;
        uint32_t address;

        if (image_parse_number(key, &address) < 0)
            return err_set(err, ERR_PACK_ARGS,
                           "%s: flash_files: address \"%s\" is not a number that fits 32 bits",
                           path, key);
        if (!json_object_is_type(value, json_type_string))
            return err_set(err, ERR_PACK_ARGS, "%s: flash_files: \"%s\" is not a file name", path,
                           key);
        file = join_path(path, json_object_get_string(value));
        if (!file || add_input(a, address, file) < 0)
            return err_set(err, ERR_PACK_ARGS, "out of memory");
    }
    return 0;
}

static int load_flasher_args(PackArgs *a, ErrInfo *err)
{
    _cleanup_(json_object_putp) json_object *root = NULL;
    const char *path = a->flasher_args, *chip, *size;
    bool wrong;
    int r;

    r = read_json(path, &root, err);
    if (r < 0)
        return r;
    r = load_flash_files(path, root, a, err);
    if (r < 0)
        return r;
    chip = json_string_at(root, "extra_esptool_args", "chip", &wrong);
    if (wrong)
        return err_set(err, ERR_PACK_ARGS, "%s: extra_esptool_args.chip is not a string", path);
    size = json_string_at(root, "flash_settings", "flash_size", &wrong);
    if (wrong)
        return err_set(err, ERR_PACK_ARGS, "%s: flash_settings.flash_size is not a string", path);
    a->json_chip = chip ? strdup(chip) : NULL;
    a->json_flash_size = size ? strdup(size) : NULL;
    if ((chip && !a->json_chip) || (size && !a->json_flash_size))
        return err_set(err, ERR_PACK_ARGS, "out of memory");
    return 0;
}

static int resolve_pid(const PackArgs *a, uint16_t *ret)
{
    ErrInfo e = {};
    Chip chip;

    if (a->pid) {
        if (image_parse_pid(a->pid, ret) < 0 || chip_from_pid(*ret) == CHIP_UNKNOWN) {
            err_set(&e, ERR_PACK_CHIP,
                    "--pid \"%s\" is not the PID of a chip with USB DFU (2, 9, 0x12, 0x20)",
                    a->pid);
            return ctl_error(CTL_EXIT_USAGE, "pack", &e);
        }
        return 0;
    }
    if (!a->chip && !a->json_chip)
        return ctl_usage("pack", "which chip? give --chip, --pid or --flasher-args");
    chip = chip_from_string(a->chip ?: a->json_chip);
    if (chip == _CHIP_MAX && a->chip) {
        err_set(&e, ERR_PACK_CHIP,
                "--chip \"%s\" is not a chip with USB DFU (esp32s2 esp32s3 esp32p4 esp32s31)",
                a->chip);
        return ctl_error(CTL_EXIT_USAGE, "pack", &e);
    }
    if (chip == _CHIP_MAX) {
        err_set(&e, ERR_PACK_CHIP,
                "%s: extra_esptool_args.chip \"%s\" is not a chip with USB DFU (esp32s2 "
                "esp32s3 esp32p4 esp32s31)",
                a->flasher_args, a->json_chip);
        return ctl_error(CTL_EXIT_FAILURE, "pack", &e);
    }
    *ret = chip_to_pid(chip);
    return 0;
}

static int resolve_flash_size(const PackArgs *a, uint32_t *ret)
{
    const char *s = a->flash_size ?: a->json_flash_size;
    ErrInfo e = {};

    if (!s)
        return 0; /* keep mkdfu's default, 2MB */
    if (image_flash_size_from_string(s, ret) == 0)
        return 0;
    err_set(&e, ERR_PACK_FLASH_SIZE,
            "%s%s \"%s\" is not a flash size mkdfu knows (1MB 2MB 4MB 8MB 16MB 32MB 64MB "
            "128MB)%s",
            a->flash_size ? "--flash-size" : a->flasher_args,
            a->flash_size ? "" : ": flash_settings.flash_size", s,
            a->flash_size ? "" : "; give --flash-size");
    return ctl_error(a->flash_size ? CTL_EXIT_USAGE : CTL_EXIT_FAILURE, "pack", &e);
}

/* --part-size, else $ESP_DFU_PART_SIZE (mkdfu's own fallback), else 512 KiB. */
static int resolve_part_size(const PackArgs *a, uint32_t *ret)
{
    const char *env = getenv("ESP_DFU_PART_SIZE");
    const char *s = a->part_size ?: (env && *env ? env : NULL);
    ErrInfo e = {};

    if (!s)
        return 0;
    if (image_parse_number(s, ret) == 0 && *ret > 0)
        return 0;
    err_set(&e, ERR_PACK_ARGS, "%s \"%s\" is not a positive number that fits 32 bits",
            a->part_size ? "--part-size" : "ESP_DFU_PART_SIZE", s);
    return ctl_error(CTL_EXIT_USAGE, "pack", &e);
}

static int resolve_options(const PackArgs *a, PackOptions *o)
{
    int r;

    pack_options_init(o);
    r = resolve_pid(a, &o->pid);
    if (r != 0)
        return r;
    r = resolve_flash_size(a, &o->flash_size);
    if (r != 0)
        return r;
    return resolve_part_size(a, &o->part_size);
}

static int read_input(PackInput *in, ErrInfo *err)
{
    _cleanup_close_ int fd = -1;
    ErrInfo e = {};

    fd = open(in->path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return err_set(err, ERR_PACK_INPUT, "\"%s\": %s", in->path, strerror(errno));
    if (image_read_fd(fd, IMAGE_MAX_SIZE, &in->data, &in->size, &e) < 0)
        return err_set(err, ERR_PACK_INPUT, "\"%s\": %s", in->path, e.message);
    return 0;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t k = write(fd, p, n);

        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return -errno;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static int write_temp(int fd, const uint8_t *data, size_t size)
{
    mode_t mask = umask(0);
    int r;

    /* mkstemp makes 0600; give the image what a plain open() would (mkdfu does that). */
    umask(mask);
    if (fchmod(fd, 0666 & ~mask) < 0)
        return -errno;
    r = write_all(fd, data, size);
    if (r < 0)
        return r;
    if (fsync(fd) < 0)
        return -errno;
    return 0;
}

/* Temp file beside OUT, then rename: OUT is either the old file or the whole new one. */
static int write_atomic(const char *path, const uint8_t *data, size_t size, ErrInfo *err)
{
    const char *slash = strrchr(path, '/');
    _cleanup_free_ char *tmp = NULL;
    _cleanup_close_ int fd = -1;
    int r;

    if (asprintf(&tmp, "%.*s.%s.XXXXXX", slash ? (int)(slash - path + 1) : 0, path,
                 slash ? slash + 1 : path) < 0) {
        tmp = NULL;
        return err_set(err, ERR_IMAGE_IO, "out of memory");
    }
    fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return err_set(err, ERR_IMAGE_IO, "cannot create a temporary file beside it: %s",
                       strerror(errno));
    r = write_temp(fd, data, size);
    if (r == 0 && close(TAKE_FD(fd)) < 0)
        r = -errno;
    if (r == 0 && rename(tmp, path) < 0)
        r = -errno;
    if (r < 0) {
        unlink(tmp);
        return err_set(err, ERR_IMAGE_IO, "cannot write: %s", strerror(-r));
    }
    return 0;
}

static int pack_and_write(const PackArgs *a, const PackOptions *o)
{
    _cleanup_(image_freep) Image *img = NULL;
    _cleanup_free_ PackFile *files = calloc(a->n_inputs, sizeof(*files));
    _cleanup_free_ uint8_t *out = NULL;
    char sha[65];
    ErrInfo e = {};
    size_t size = 0;

    if (!files)
        return ctl_error(CTL_EXIT_FAILURE, "pack",
                         &(ErrInfo){.code = ERR_PACK_ARGS, .message = "out of memory"});
    for (size_t i = 0; i < a->n_inputs; i++) {
        const char *slash = strrchr(a->inputs[i].path, '/');

        /* mkdfu stores os.path.basename(path). */
        files[i] = (PackFile){.address = a->inputs[i].address,
                              .name = slash ? slash + 1 : a->inputs[i].path,
                              .data = a->inputs[i].data,
                              .size = a->inputs[i].size};
    }
    if (image_pack(files, a->n_inputs, o, &out, &size, &e) < 0)
        return ctl_error(CTL_EXIT_FAILURE, "pack", &e);
    /* Belt and braces: what we write must pass our own inspect. */
    if (image_parse(out, size, &img, &e) < 0) {
        fprintf(stderr, "espdfuctl: pack: internal error: the packed image does not validate\n");
        return ctl_error(CTL_EXIT_FAILURE, "pack", &e);
    }
    if (o->part_size % 4096 != 0)
        fprintf(stderr,
                "espdfuctl: pack: warning: part size %u is not a multiple of 4096; the "
                "ROM may misbehave (mkdfu warns too)\n",
                o->part_size);
    if (write_atomic(a->output, out, size, &e) < 0)
        return ctl_error(CTL_EXIT_FAILURE, a->output, &e);
    for (size_t i = 0; i < 32; i++)
        sprintf(sha + 2 * i, "%02x", img->sha256[i]);
    printf("%s: %zu bytes, %s, %s flash, %zu entries, sha256 %s\n", a->output, size,
           chip_to_string(img->chip), image_flash_size_to_string(o->flash_size), img->n_entries,
           sha);
    return CTL_EXIT_OK;
}

int cmd_pack(int argc, char *argv[])
{
    _cleanup_(pack_args_done) PackArgs a = {};
    PackOptions o;
    ErrInfo e = {};
    int r;

    r = parse_options(argc, argv, &a);
    if (r != 0)
        return r > 0 ? CTL_EXIT_OK : -r;
    r = parse_pairs(argc, argv, &a);
    if (r != 0)
        return r;
    /* After the pairs: mkdfu adds the JSON's files last, so they win a shared address. */
    if (a.flasher_args && load_flasher_args(&a, &e) < 0)
        return ctl_error(CTL_EXIT_FAILURE, "pack", &e);
    r = resolve_options(&a, &o);
    if (r != 0)
        return r;
    if (a.n_inputs == 0)
        return ctl_usage("pack", "nothing to pack: give ADDR FILE pairs or --flasher-args");
    for (size_t i = 0; i < a.n_inputs; i++)
        if (read_input(&a.inputs[i], &e) < 0)
            return ctl_error(CTL_EXIT_FAILURE, "pack", &e);
    return pack_and_write(&a, &o);
}
