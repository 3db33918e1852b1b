/* SPDX-License-Identifier: MIT */
/*
 * Control requests on ep0, as the board answers them: standard requests from
 * our descriptors (USB 2.0 chapter 9), DFU class requests by the model in DFU
 * mode or by the ROM's run-time behaviour (DETACH is STALLed, then the board
 * re-enumerates), CDC-ACM requests on the run-time board. Lock held.
 */
#include <errno.h>
#include <linux/usb/ch9.h>
#include <string.h>

#include "emu-internal.h"

#define REQ_TYPE(x)  ((x)&USB_TYPE_MASK)
#define REQ_RECIP(x) ((x)&USB_RECIP_MASK)

/* DFU 1.1 section 3, table 3.2; states table 6.1. */
enum { DFU_DETACH = 0, DFU_GETSTATUS = 3, DFU_GETSTATE = 5 };
enum { DFU_STATE_APP_IDLE = 0 };
/* CDC PSTN 1.2 section 6.3. */
enum {
    CDC_SET_LINE_CODING = 0x20,
    CDC_GET_LINE_CODING = 0x21,
    CDC_SET_CONTROL_LINE_STATE = 0x22,
    CDC_SEND_BREAK = 0x23
};

static void reply_bytes(EmuCtrl *x, const void *bytes, size_t n)
{
    x->actual = (uint16_t)MIN(n, x->length);
    memcpy(x->data, bytes, x->actual);
}

static void stall(EmuCtrl *x)
{
    x->status = -EPIPE;
}

static void get_descriptor(EmuDevice *d, EmuCtrl *x)
{
    uint8_t type = x->value >> 8, index = x->value & 0xff;
    uint8_t buf[256];
    int n;

    switch (type) {
    case USB_DT_DEVICE:
        reply_bytes(x, d->desc.device, sizeof(d->desc.device));
        return;
    case USB_DT_CONFIG:
        if (index != 0)
            break;
        reply_bytes(x, d->desc.config, d->desc.config_len);
        return;
    case USB_DT_STRING:
        n = emu_desc_string(&d->desc, index, buf, sizeof(buf));
        if (n < 0)
            break;
        reply_bytes(x, buf, (size_t)n);
        return;
    default:
        /* DEVICE_QUALIFIER, OTHER_SPEED, BOS: a full-speed USB 2.0 device STALLs them. */
        break;
    }
    stall(x);
}

/* GET_DESCRIPTOR(DFU FUNCTIONAL) to the interface, DFU 1.1 section 6.2.1 note. */
static void get_interface_descriptor(EmuDevice *d, EmuCtrl *x)
{
    const uint8_t *p = d->desc.config, *end = d->desc.config + d->desc.config_len;
    int cur = -1;

    if ((x->value >> 8) != 0x21 || (x->index & 0xff) != d->desc.dfu_interface) {
        stall(x);
        return;
    }
    for (; p + 2 <= end && p[0] >= 2; p += p[0]) {
        if (p[1] == USB_DT_INTERFACE)
            cur = p[2];
        else if (p[1] == 0x21 && cur == d->desc.dfu_interface) {
            reply_bytes(x, p, p[0]);
            return;
        }
    }
    stall(x);
}

void emu_device_set_configuration(EmuDevice *d, uint8_t value)
{
    g_autofree char *path = g_build_filename(d->board->emu->root_dir, d->node->syspath,
                                             "bConfigurationValue", NULL);
    g_autofree char *text = value ? g_strdup_printf("%u\n", value) : g_strdup("\n");

    d->configuration = value;
    (void)g_file_set_contents(path, text, -1, NULL); /* gone already: nothing to update */
}

static void standard_request(EmuDevice *d, EmuCtrl *x)
{
    static const uint8_t zero2[2] = {0, 0};
    uint8_t one;

    switch (x->request) {
    case USB_REQ_GET_STATUS:
        reply_bytes(x, zero2, sizeof(zero2)); /* bus powered, no remote wakeup, not halted */
        return;
    case USB_REQ_CLEAR_FEATURE:
    case USB_REQ_SET_FEATURE:
        return;
    case USB_REQ_GET_DESCRIPTOR:
        if (REQ_RECIP(x->type) == USB_RECIP_DEVICE)
            get_descriptor(d, x);
        else
            get_interface_descriptor(d, x);
        return;
    case USB_REQ_GET_CONFIGURATION:
        one = d->configuration;
        reply_bytes(x, &one, 1);
        return;
    case USB_REQ_SET_CONFIGURATION:
        if (x->value > 1)
            break;
        emu_device_set_configuration(d, (uint8_t)x->value);
        return;
    case USB_REQ_GET_INTERFACE:
        if (emu_device_interface(d, x->index & 0xff) < 0)
            break;
        one = 0;
        reply_bytes(x, &one, 1);
        return;
    case USB_REQ_SET_INTERFACE:
        if (emu_device_interface(d, x->index & 0xff) < 0 || x->value != 0)
            break;
        return;
    default:
        emu_log("%s: unexpected standard request 0x%02x/0x%02x, STALL\n", d->board->path, x->type,
                x->request);
        break;
    }
    stall(x);
}

/* The ROM's run-time DFU interface: DETACH is answered with a STALL, then it re-enumerates. */
static void runtime_dfu_request(EmuDevice *d, EmuCtrl *x)
{
    static const uint8_t status[6] = {0, 0, 0, 0, DFU_STATE_APP_IDLE, 0};
    static const uint8_t state = DFU_STATE_APP_IDLE;

    switch (x->request) {
    case DFU_DETACH:
        d->board->detaches++;
        emu_board_schedule_detach(d->board);
        stall(x);
        return;
    case DFU_GETSTATUS:
        reply_bytes(x, status, sizeof(status));
        return;
    case DFU_GETSTATE:
        reply_bytes(x, &state, 1);
        return;
    default:
        stall(x);
    }
}

static void model_request(EmuDevice *d, EmuCtrl *x)
{
    uint16_t reply_len = 0;
    uint32_t delay = 0;
    DfuModelAction a = dfu_model_control(d->board->model, emu_now_ms(), x->type, x->request,
                                         x->value, x->data, x->length, &reply_len, &delay);

    switch (a) {
    case DFU_MODEL_REPLY:
        x->actual = (x->type & USB_DIR_IN) ? MIN(reply_len, x->length) : x->length;
        x->delay_ms = delay;
        return;
    case DFU_MODEL_STALL:
        x->status = -EPIPE;
        x->delay_ms = delay;
        return;
    case DFU_MODEL_HANG:
        x->hang = true;
        return;
    case DFU_MODEL_UNPLUG:
        d->board->model_unplugged = true;
        x->status = -ESHUTDOWN;
        x->vanish = true;
        return;
    }
}

static void cdc_request(EmuDevice *d, EmuCtrl *x)
{
    switch (x->request) {
    case CDC_SET_LINE_CODING:
        if (x->length < sizeof(d->line_coding))
            break;
        memcpy(d->line_coding, x->data, sizeof(d->line_coding));
        return;
    case CDC_GET_LINE_CODING:
        reply_bytes(x, d->line_coding, sizeof(d->line_coding));
        return;
    case CDC_SET_CONTROL_LINE_STATE:
    case CDC_SEND_BREAK:
        return;
    default:
        break;
    }
    stall(x);
}

static void class_request(EmuDevice *d, EmuCtrl *x)
{
    int ifno = x->index & 0xff;

    if (REQ_RECIP(x->type) != USB_RECIP_INTERFACE) {
        stall(x);
    } else if (ifno == d->desc.dfu_interface) {
        if (d->mode == EMU_MODE_DFU)
            model_request(d, x);
        else
            runtime_dfu_request(d, x);
    } else if (ifno == d->desc.cdc_interface) {
        cdc_request(d, x);
    } else {
        stall(x);
    }
}

void emu_count_control(EmuDevice *d)
{
    d->board->control_transfers++;
    d->board->emu->control_total++;
}

/* One control request on the wire: the board's answer in x. Lock held. */
void emu_control(EmuDevice *d, EmuCtrl *x)
{
    emu_count_control(d);
    if (REQ_TYPE(x->type) == USB_TYPE_STANDARD) {
        standard_request(d, x);
    } else if (REQ_TYPE(x->type) == USB_TYPE_CLASS) {
        class_request(d, x);
    } else {
        emu_log("%s: vendor request 0x%02x/0x%02x, STALL\n", d->board->path, x->type, x->request);
        stall(x);
    }
    if (x->vanish)
        emu_board_schedule_vanish(d->board);
}

/* When a control request completes; ep0 answers in order. */
int64_t emu_control_ready_time(EmuDevice *d, const EmuCtrl *x)
{
    int64_t t;

    if (x->hang)
        return INT64_MAX;
    t = MAX(g_get_monotonic_time() + (int64_t)x->delay_ms * 1000, d->ep0_busy_until_us);
    d->ep0_busy_until_us = t;
    return t;
}
