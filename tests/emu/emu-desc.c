/* SPDX-License-Identifier: MIT */
/*
 * USB descriptors of the emulated boards and hubs.
 *
 * What the ROM really reports is only partly known (docs/emulator.md,
 * "Descriptors"): VID 0x303a, the PIDs, bcdDevice 0x0723, serial "0", the
 * run-time layout (CDC-ACM + DFU run-time on interface 2), DFU mode on
 * interface 0 with wTransferSize 64. Everything else here is a plausible
 * choice for a full-speed composite device, documented as such.
 */
#include <string.h>

#include "emu-internal.h"

#define USB_DT_DEVICE         0x01
#define USB_DT_CONFIG         0x02
#define USB_DT_INTERFACE      0x04
#define USB_DT_ENDPOINT       0x05
#define USB_DT_IAD            0x0b
#define USB_DT_CS_INTERFACE   0x24
#define USB_DT_DFU_FUNCTIONAL 0x21

typedef struct Writer {
    uint8_t *buf;
    size_t size, len;
} Writer;

static void put(Writer *w, const uint8_t *bytes, size_t n)
{
    g_assert(w->len + n <= w->size);
    memcpy(w->buf + w->len, bytes, n);
    w->len += n;
}

static void put_device(uint8_t dev[18], uint8_t cls, uint8_t sub, uint8_t proto, uint16_t vid,
                       uint16_t pid, uint16_t bcd)
{
    const uint8_t d[18] = {
            18,         USB_DT_DEVICE, 0x00,       0x02, /* bcdUSB 2.00 */
            cls,        sub,           proto,      64,   /* bMaxPacketSize0 */
            vid & 0xff, vid >> 8,      pid & 0xff, pid >> 8, bcd & 0xff, bcd >> 8, 1, 2, 3, 1};
    memcpy(dev, d, sizeof(d));
}

static void put_interface(Writer *w, uint8_t number, uint8_t n_eps, uint8_t cls, uint8_t sub,
                          uint8_t proto)
{
    const uint8_t d[9] = {9, USB_DT_INTERFACE, number, 0, n_eps, cls, sub, proto, 0};
    put(w, d, sizeof(d));
}

static void put_endpoint(Writer *w, uint8_t addr, uint8_t attrs, uint16_t max_packet,
                         uint8_t interval)
{
    const uint8_t d[7] = {7,       USB_DT_ENDPOINT, addr, attrs, max_packet & 0xff, max_packet >> 8,
                          interval};
    put(w, d, sizeof(d));
}

/* DFU 1.1 section 4.1.3, table 4.2: the DFU functional descriptor. */
static void put_dfu_functional(Writer *w, uint8_t attrs, uint16_t detach_ms, uint16_t xfer)
{
    const uint8_t d[9] = {9,
                          USB_DT_DFU_FUNCTIONAL,
                          attrs,
                          detach_ms & 0xff,
                          detach_ms >> 8,
                          xfer & 0xff,
                          xfer >> 8,
                          0x10,
                          0x01}; /* bcdDFUVersion 1.1 */
    put(w, d, sizeof(d));
}

static void finish_config(Writer *w, uint8_t n_interfaces, uint8_t attrs, uint8_t max_power)
{
    uint8_t *c = w->buf;

    c[0] = 9;
    c[1] = USB_DT_CONFIG;
    c[2] = w->len & 0xff;
    c[3] = w->len >> 8;
    c[4] = n_interfaces;
    c[5] = 1; /* bConfigurationValue */
    c[6] = 0;
    c[7] = attrs;
    c[8] = max_power;
}

static void add_if(EmuDesc *d, uint8_t number, uint8_t cls, uint8_t sub, uint8_t proto,
                   const uint8_t *eps, uint8_t n_eps, const char *driver)
{
    EmuInterfaceDesc *i = &d->ifs[d->n_interfaces++];

    *i = (EmuInterfaceDesc){.number = number,
                            .class_ = cls,
                            .subclass = sub,
                            .protocol = proto,
                            .n_endpoints = n_eps,
                            .driver = driver};
    if (n_eps)
        memcpy(i->endpoints, eps, n_eps);
}

const char *emu_chip_product(EmuChip c)
{
    static const char *const names[_EMU_CHIP_MAX] = {
            [EMU_CHIP_ESP32S2] = "ESP32-S2",
            [EMU_CHIP_ESP32S3] = "ESP32-S3",
            [EMU_CHIP_ESP32P4] = "ESP32-P4",
            [EMU_CHIP_ESP32S31] = "ESP32-S31",
    };
    return c < _EMU_CHIP_MAX ? names[c] : "ESP32";
}

/* Run-time: an IAD-grouped CDC-ACM function on 0-1, DFU run-time on 2 (notes 2). */
static void board_runtime(EmuDesc *d, Writer *w, const EmuBoardConfig *c)
{
    static const uint8_t iad[8] = {8, USB_DT_IAD, 0, 2, 0x02, 0x02, 0x00, 0};
    static const uint8_t cdc_header[5] = {5, USB_DT_CS_INTERFACE, 0x00, 0x10, 0x01};
    static const uint8_t cdc_call[5] = {5, USB_DT_CS_INTERFACE, 0x01, 0x00, 0x01};
    static const uint8_t cdc_acm[4] = {4, USB_DT_CS_INTERFACE, 0x02, 0x02};
    static const uint8_t cdc_union[5] = {5, USB_DT_CS_INTERFACE, 0x06, 0x00, 0x01};
    static const uint8_t comm_eps[1] = {0x82}, data_eps[2] = {0x01, 0x81};

    put(w, iad, sizeof(iad));
    put_interface(w, 0, 1, 0x02, 0x02, 0x00);
    put(w, cdc_header, sizeof(cdc_header));
    put(w, cdc_call, sizeof(cdc_call));
    put(w, cdc_acm, sizeof(cdc_acm));
    put(w, cdc_union, sizeof(cdc_union));
    put_endpoint(w, 0x82, 0x03, 64, 1);
    put_interface(w, 1, 2, 0x0a, 0x00, 0x00);
    put_endpoint(w, 0x01, 0x02, 64, 0);
    put_endpoint(w, 0x81, 0x02, 64, 0);
    put_interface(w, 2, 0, 0xfe, 0x01, 0x01);
    put_dfu_functional(w, c->runtime_attributes, c->detach_timeout_ms, c->model.transfer_size);
    finish_config(w, 3, 0x80, 50);

    add_if(d, 0, 0x02, 0x02, 0x00, comm_eps, 1, "cdc_acm");
    add_if(d, 1, 0x0a, 0x00, 0x00, data_eps, 2, "cdc_acm");
    add_if(d, 2, 0xfe, 0x01, 0x01, NULL, 0, NULL);
    d->dfu_interface = 2;
    d->cdc_interface = 0;
}

/* DFU mode: one interface, no endpoints but ep0 (DFU 1.1 section 4.2). */
static void board_dfu(EmuDesc *d, Writer *w, const EmuBoardConfig *c)
{
    put_interface(w, 0, 0, 0xfe, 0x01, 0x02);
    put_dfu_functional(w, c->dfu_attributes, c->detach_timeout_ms, c->model.transfer_size);
    finish_config(w, 1, 0x80, 50);
    add_if(d, 0, 0xfe, 0x01, 0x02, NULL, 0, NULL);
    d->dfu_interface = 0;
    d->cdc_interface = -1;
}

void emu_desc_board(EmuDesc *d, EmuChip chip, EmuMode mode, const EmuBoardConfig *c)
{
    Writer w = {.buf = d->config, .size = sizeof(d->config), .len = 9};

    *d = (EmuDesc){.manufacturer = "Espressif",
                   .product = emu_chip_product(chip),
                   .serial = "0",
                   .speed_mbps = 12};
    if (mode == EMU_MODE_RUNTIME) {
        put_device(d->device, 0xef, 0x02, 0x01, EMU_VID, emu_chip_pid(chip), EMU_BCD_DEVICE);
        board_runtime(d, &w, c);
    } else {
        put_device(d->device, 0x00, 0x00, 0x00, EMU_VID, emu_chip_pid(chip), EMU_BCD_DEVICE);
        board_dfu(d, &w, c);
    }
    d->config_len = w.len;
}

/* A Linux root hub (1d6b:0002) or a plain USB 2.0 hub (05e3:0608). */
void emu_desc_hub(EmuDesc *d, bool root, unsigned bus)
{
    static const uint8_t hub_eps[1] = {0x81};
    Writer w = {.buf = d->config, .size = sizeof(d->config), .len = 9};

    *d = (EmuDesc){.manufacturer = root ? "Linux espdfu-emu" : "GenesysLogic",
                   .product = root ? "espdfu-emu root hub" : "USB2.0 Hub",
                   .serial = root ? "espdfu-emu" : NULL,
                   .speed_mbps = 480,
                   .maxchild = root ? 15 : 7,
                   .dfu_interface = -1,
                   .cdc_interface = -1};
    if (root)
        put_device(d->device, 0x09, 0x00, 0x00, 0x1d6b, 0x0002, 0x0601);
    else
        put_device(d->device, 0x09, 0x00, 0x01, 0x05e3, 0x0608, 0x6060);
    if (!d->serial)
        d->device[16] = 0; /* iSerialNumber */
    put_interface(&w, 0, 1, 0x09, 0x00, 0x00);
    put_endpoint(&w, 0x81, 0x03, 4, 12);
    finish_config(&w, 1, 0xe0, 0);
    add_if(d, 0, 0x09, 0x00, 0x00, hub_eps, 1, "hub");
    d->config_len = w.len;
    (void)bus;
}

size_t emu_desc_blob(const EmuDesc *d, uint8_t *buf, size_t size)
{
    g_assert(size >= sizeof(d->device) + d->config_len);
    memcpy(buf, d->device, sizeof(d->device));
    memcpy(buf + sizeof(d->device), d->config, d->config_len);
    return sizeof(d->device) + d->config_len;
}

/* USB 2.0 section 9.6.7: UTF-16LE, index 0 is the LANGID list. */
int emu_desc_string(const EmuDesc *d, uint8_t index, uint8_t *buf, size_t size)
{
    uint8_t tmp[2 + 2 * 126];
    const char *s;
    size_t n = 0;

    if (index == 0) {
        tmp[0] = 4;
        tmp[1] = 0x03;
        tmp[2] = 0x09; /* en-US */
        tmp[3] = 0x04;
        n = 4;
    } else {
        s = index == 1 ? d->manufacturer : index == 2 ? d->product : index == 3 ? d->serial : NULL;
        if (!s)
            return -1;
        n = 2;
        for (; *s && n + 2 <= sizeof(tmp); s++) {
            tmp[n++] = (uint8_t)*s;
            tmp[n++] = 0;
        }
        tmp[0] = (uint8_t)n;
        tmp[1] = 0x03;
    }
    n = MIN(n, size);
    memcpy(buf, tmp, n);
    return (int)n;
}
