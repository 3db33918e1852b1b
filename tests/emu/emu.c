/* SPDX-License-Identifier: MIT */
/*
 * The Emu object: a umockdev testbed, the boards on their port paths, the hubs
 * above them, and plugging: sysfs records, device nodes, ioctl handlers,
 * uevents. Runs on the main thread; the worker thread only asks for changes
 * through emu_main_call().
 *
 * Sysfs follows what Linux shows for a full-speed device (drivers/usb/core/
 * sysfs.c, usb.c): /sys/devices/usbB/B-P[.P...], attributes with trailing
 * newlines, the "descriptors" blob, interfaces as B-P:1.N children, DEVNAME
 * bus/usb/BBB/DDD with char major 189, minor (bus-1)*128 + devnum-1.
 */
#include <errno.h>
#include <string.h>

#include "emu-internal.h"

typedef enum BoardAction {
    ACT_NONE,
    ACT_DETACH_LEAVE, /* run-time DFU_DETACH: leave now, come back in DFU mode */
    ACT_VANISH,       /* the model said UNPLUG: finish the removal */
    ACT_UNPLUG_TIMED, /* unplug-after */
    ACT_REPLUG,       /* come back in DFU mode */
} BoardAction;

typedef struct BoardTimer {
    EmuBoard *board;
    BoardAction action;
} BoardTimer;

static void device_unplug(EmuBoard *b);
static int device_plug(EmuBoard *b, EmuMode mode);

/* ---- sysfs nodes ---- */

static EmuNode *node_new(const char *rel, const char *devtype)
{
    EmuNode *n = g_new0(EmuNode, 1);

    n->devpath = g_strconcat("/devices/", rel, NULL);
    n->syspath = g_strconcat("/sys", n->devpath, NULL);
    n->devtype = devtype;
    n->props = g_ptr_array_new_with_free_func(g_free);
    return n;
}

static void node_free(void *p)
{
    EmuNode *n = p;

    if (!n)
        return;
    g_free(n->devpath);
    g_free(n->syspath);
    g_ptr_array_unref(n->props);
    g_free(n);
}

G_GNUC_PRINTF(2, 3) static void prop(EmuNode *n, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    g_ptr_array_add(n->props, g_strdup_vprintf(fmt, ap));
    va_end(ap);
}

static void append_hex(GString *s, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        g_string_append_printf(s, "%02X", p[i]); /* umockdev's N: wants uppercase */
}

/* A umockdev-record paragraph; attrs are "name", "value" pairs, values end in "\n". */
static void record(GString *s, const EmuNode *n, const char *const *attrs, const uint8_t *blob,
                   size_t blob_len, const char *devnode_rel)
{
    g_string_append_printf(s, "P: %s\n", n->devpath);
    if (devnode_rel) {
        g_string_append_printf(s, "N: %s=", devnode_rel);
        append_hex(s, blob, blob_len);
        g_string_append_c(s, '\n');
    }
    g_string_append(s, "E: SUBSYSTEM=usb\n");
    for (unsigned i = 0; i < n->props->len; i++) {
        const char *kv = g_ptr_array_index(n->props, i);

        /* umockdev takes DEVNAME with /dev/, to link the node to its major:minor */
        if (g_str_has_prefix(kv, "DEVNAME="))
            g_string_append_printf(s, "E: DEVNAME=/dev/%s\n", kv + strlen("DEVNAME="));
        else
            g_string_append_printf(s, "E: %s\n", kv);
    }
    for (size_t i = 0; attrs[i]; i += 2) {
        g_autofree char *v = g_strescape(attrs[i + 1], NULL); /* "\n" -> "\\n" */

        g_string_append_printf(s, "A: %s=%s\n", attrs[i], v);
    }
    if (blob) {
        g_string_append(s, "H: descriptors=");
        append_hex(s, blob, blob_len);
        g_string_append_c(s, '\n');
    }
    g_string_append_c(s, '\n');
}

/* "usb1/1-3/1-3.2" for "1-3.2"; "usb1" for the root hub (path NULL). */
static char *rel_path(unsigned bus, const char *path)
{
    GString *s = g_string_new(NULL);
    const char *p;

    g_string_append_printf(s, "usb%u", bus);
    if (!path)
        return g_string_free(s, FALSE);
    for (p = strchr(path, '-'); p; p = strchr(p + 1, '.')) {
        size_t len = strcspn(p + 1, ".");

        g_string_append_printf(s, "/%.*s", (int)(p + 1 + len - path), path);
    }
    return g_string_free(s, FALSE);
}

typedef struct UsbDeviceRecord {
    const EmuDesc *desc;
    unsigned bus, devnum;
    const char *path; /* NULL: root hub */
} UsbDeviceRecord;

static void usb_device_props(EmuNode *n, const UsbDeviceRecord *r)
{
    const uint8_t *dd = r->desc->device;
    unsigned vid = dd[8] | dd[9] << 8, pid = dd[10] | dd[11] << 8, bcd = dd[12] | dd[13] << 8;
    GString *ifs = g_string_new(":");

    prop(n, "MAJOR=189");
    prop(n, "MINOR=%u", (r->bus - 1) * 128 + r->devnum - 1);
    prop(n, "DEVNAME=bus/usb/%03u/%03u", r->bus, r->devnum);
    prop(n, "DEVTYPE=usb_device");
    prop(n, "DRIVER=usb");
    prop(n, "PRODUCT=%x/%x/%x", vid, pid, bcd);
    prop(n, "TYPE=%u/%u/%u", dd[4], dd[5], dd[6]);
    prop(n, "BUSNUM=%03u", r->bus);
    prop(n, "DEVNUM=%03u", r->devnum);
    /* What udev's usb_id builtin adds; programs match on these. */
    prop(n, "ID_VENDOR=%s", r->desc->manufacturer);
    prop(n, "ID_VENDOR_ID=%04x", vid);
    prop(n, "ID_MODEL=%s", r->desc->product);
    prop(n, "ID_MODEL_ID=%04x", pid);
    prop(n, "ID_REVISION=%04x", bcd);
    if (r->desc->serial) {
        prop(n, "ID_SERIAL=%s_%s_%s", r->desc->manufacturer, r->desc->product, r->desc->serial);
        prop(n, "ID_SERIAL_SHORT=%s", r->desc->serial);
    }
    prop(n, "ID_BUS=usb");
    for (unsigned i = 0; i < r->desc->n_interfaces; i++)
        g_string_append_printf(ifs, "%02x%02x%02x:", r->desc->ifs[i].class_,
                               r->desc->ifs[i].subclass, r->desc->ifs[i].protocol);
    prop(n, "ID_USB_INTERFACES=%s", ifs->str);
    g_string_free(ifs, TRUE);
}

G_GNUC_PRINTF(3, 4) static void attr(GPtrArray *a, const char *name, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    g_ptr_array_add(a, g_strdup(name));
    g_ptr_array_add(a, g_strdup_vprintf(fmt, ap));
    va_end(ap);
}

static void usb_device_record(GString *s, EmuNode *n, const UsbDeviceRecord *r)
{
    const EmuDesc *d = r->desc;
    const uint8_t *dd = d->device;
    g_autoptr(GPtrArray) a = g_ptr_array_new_with_free_func(g_free);
    uint8_t blob[sizeof(d->device) + sizeof(d->config)];
    size_t len = emu_desc_blob(d, blob, sizeof(blob));
    g_autofree char *node = g_strdup_printf("bus/usb/%03u/%03u", r->bus, r->devnum);

    attr(a, "idVendor", "%02x%02x\n", dd[9], dd[8]);
    attr(a, "idProduct", "%02x%02x\n", dd[11], dd[10]);
    attr(a, "bcdDevice", "%02x%02x\n", dd[13], dd[12]);
    attr(a, "bDeviceClass", "%02x\n", dd[4]);
    attr(a, "bDeviceSubClass", "%02x\n", dd[5]);
    attr(a, "bDeviceProtocol", "%02x\n", dd[6]);
    attr(a, "bMaxPacketSize0", "%u\n", dd[7]);
    attr(a, "bNumConfigurations", "%u\n", dd[17]);
    attr(a, "bConfigurationValue", "%u\n", d->config[5]);
    attr(a, "bNumInterfaces", "%2u\n", d->config[4]);
    attr(a, "bmAttributes", "%02x\n", d->config[7]);
    attr(a, "bMaxPower", "%umA\n", d->config[8] * 2u);
    attr(a, "busnum", "%u\n", r->bus);
    attr(a, "devnum", "%u\n", r->devnum);
    attr(a, "devpath", "%s\n", r->path ? strchr(r->path, '-') + 1 : "0");
    attr(a, "dev", "189:%u\n", (r->bus - 1) * 128 + r->devnum - 1);
    attr(a, "speed", "%u\n", d->speed_mbps);
    attr(a, "version", " 2.00\n");
    attr(a, "maxchild", "%u\n", d->maxchild);
    attr(a, "manufacturer", "%s\n", d->manufacturer);
    attr(a, "product", "%s\n", d->product);
    if (d->serial)
        attr(a, "serial", "%s\n", d->serial);
    attr(a, "authorized", "1\n");
    attr(a, "avoid_reset_quirk", "0\n");
    attr(a, "quirks", "0x0\n");
    attr(a, "removable", "%s\n", r->path ? "removable" : "unknown");
    attr(a, "configuration", "\n");
    attr(a, "urbnum", "0\n");
    g_ptr_array_add(a, NULL);
    usb_device_props(n, r);
    record(s, n, (const char *const *)a->pdata, blob, len, node);
}

static void interface_record(GString *s, EmuNode *n, const UsbDeviceRecord *r,
                             const EmuInterfaceDesc *i)
{
    const uint8_t *dd = r->desc->device;
    g_autoptr(GPtrArray) a = g_ptr_array_new_with_free_func(g_free);
    g_autofree char *modalias = g_strdup_printf(
            "usb:v%02X%02Xp%02X%02Xd%02X%02Xdc%02Xdsc%02Xdp%02Xic%02Xisc%02Xip%02Xin%02X", dd[9],
            dd[8], dd[11], dd[10], dd[13], dd[12], dd[4], dd[5], dd[6], i->class_, i->subclass,
            i->protocol, i->number);

    attr(a, "bInterfaceNumber", "%02x\n", i->number);
    attr(a, "bAlternateSetting", "%2u\n", 0u);
    attr(a, "bNumEndpoints", "%02x\n", i->n_endpoints);
    attr(a, "bInterfaceClass", "%02x\n", i->class_);
    attr(a, "bInterfaceSubClass", "%02x\n", i->subclass);
    attr(a, "bInterfaceProtocol", "%02x\n", i->protocol);
    attr(a, "authorized", "1\n");
    attr(a, "supports_autosuspend", "1\n");
    attr(a, "modalias", "%s\n", modalias);
    g_ptr_array_add(a, NULL);
    prop(n, "DEVTYPE=usb_interface");
    if (i->driver)
        prop(n, "DRIVER=%s", i->driver);
    prop(n, "PRODUCT=%x/%x/%x", dd[8] | dd[9] << 8, dd[10] | dd[11] << 8, dd[12] | dd[13] << 8);
    prop(n, "TYPE=%u/%u/%u", dd[4], dd[5], dd[6]);
    prop(n, "INTERFACE=%u/%u/%u", i->class_, i->subclass, i->protocol);
    prop(n, "MODALIAS=%s", modalias);
    record(s, n, (const char *const *)a->pdata, NULL, 0, NULL);
}

/* Sysfs for one usb_device and its interfaces; *ret_ifs gets the interface nodes. */
static int add_usb_device(Emu *e, const UsbDeviceRecord *r, EmuNode **ret_dev, GPtrArray **ret_ifs)
{
    g_autofree char *rel = rel_path(r->bus, r->path);
    const char *sysname = r->path ? r->path : rel;
    GString *s = g_string_new(NULL);
    EmuNode *dev = node_new(rel, "usb_device");
    GPtrArray *ifs = g_ptr_array_new_with_free_func(node_free);
    g_autoptr(GError) err = NULL;

    usb_device_record(s, dev, r);
    for (unsigned i = 0; i < r->desc->n_interfaces; i++) {
        g_autofree char *irel = g_strdup_printf("%s/%s:1.%u", rel, sysname, r->desc->ifs[i].number);
        EmuNode *n = node_new(irel, "usb_interface");

        interface_record(s, n, r, &r->desc->ifs[i]);
        g_ptr_array_add(ifs, n);
    }
    if (!umockdev_testbed_add_from_string(e->testbed, s->str, &err)) {
        emu_log("cannot add %s to the testbed: %s\n", sysname, err->message);
        g_string_free(s, TRUE);
        node_free(dev);
        g_ptr_array_unref(ifs);
        return -EIO;
    }
    g_string_free(s, TRUE);
    *ret_dev = dev;
    *ret_ifs = ifs;
    return 0;
}

static void send_add(Emu *e, EmuNode *dev, GPtrArray *ifs)
{
    emu_uevents_send(e->uevents, "add", dev->devpath, "usb", dev->devtype, dev->props);
    for (unsigned i = 0; i < ifs->len; i++) {
        EmuNode *n = g_ptr_array_index(ifs, i);

        emu_uevents_send(e->uevents, "add", n->devpath, "usb", n->devtype, n->props);
    }
}

/* ---- devnums and hubs ---- */

/* drivers/usb/core/hub.c choose_devnum(): round robin from the last one, 1 is the root hub. */
static unsigned devnum_alloc(Emu *e, unsigned bus)
{
    unsigned n = e->bus_last[bus];

    for (unsigned i = 0; i < 127; i++) {
        n = n >= 127 ? 2 : n + 1;
        if (!e->bus_used[bus][n]) {
            e->bus_used[bus][n] = true;
            e->bus_last[bus] = n;
            return n;
        }
    }
    return 0;
}

static bool hub_exists(Emu *e, const char *name)
{
    for (unsigned i = 0; i < e->hub_paths->len; i++)
        if (g_str_equal(g_ptr_array_index(e->hub_paths, i), name))
            return true;
    return false;
}

static int add_hub(Emu *e, unsigned bus, const char *path)
{
    g_autofree char *name = path ? g_strdup(path) : g_strdup_printf("usb%u", bus);
    EmuDesc desc;
    UsbDeviceRecord r = {.desc = &desc, .bus = bus, .path = path};
    EmuNode *dev = NULL;
    GPtrArray *ifs = NULL;
    int err;

    if (hub_exists(e, name))
        return 0;
    emu_desc_hub(&desc, path == NULL, bus);
    r.devnum = path ? devnum_alloc(e, bus) : 1;
    if (!path)
        e->bus_used[bus][1] = true;
    if (r.devnum == 0)
        return -ENOSPC;
    err = add_usb_device(e, &r, &dev, &ifs);
    if (err < 0)
        return err;
    send_add(e, dev, ifs);
    g_ptr_array_add(e->hubs, dev);
    g_ptr_array_extend_and_steal(e->hubs, ifs);
    g_ptr_array_add(e->hub_paths, g_steal_pointer(&name));
    return 0;
}

/* The root hub and every hub on the way to path ("1-3" for "1-3.2"). */
static int add_hubs_for(Emu *e, unsigned bus, const char *path)
{
    int err = add_hub(e, bus, NULL);

    for (const char *p = strchr(path, '.'); err == 0 && p; p = strchr(p + 1, '.')) {
        g_autofree char *hub = g_strndup(path, (size_t)(p - path));

        if (emu_find_board(e, hub))
            return -EEXIST;
        err = add_hub(e, bus, hub);
    }
    return err;
}

/* ---- boards: plug, unplug, timers ---- */

GSource *emu_main_call(Emu *e, uint32_t delay_ms, GSourceFunc fn, void *data)
{
    GSource *s = delay_ms ? g_timeout_source_new(delay_ms) : g_idle_source_new();

    g_source_set_callback(s, fn, data, g_free);
    g_source_attach(s, e->main_ctx);
    return s;
}

static gboolean board_timer_cb(void *data);

/* Replace the board's pending timer. Lock held. */
static void board_schedule_locked(EmuBoard *b, BoardAction action, uint32_t delay_ms)
{
    BoardTimer *t = g_new0(BoardTimer, 1);

    if (b->timer) {
        g_source_destroy(b->timer);
        g_source_unref(b->timer);
    }
    t->board = b;
    t->action = action;
    b->timer = emu_main_call(b->emu, delay_ms, board_timer_cb, t);
}

static void board_schedule(EmuBoard *b, BoardAction action, uint32_t delay_ms)
{
    g_mutex_lock(&b->emu->lock);
    board_schedule_locked(b, action, delay_ms);
    g_mutex_unlock(&b->emu->lock);
}

static void board_cancel(EmuBoard *b)
{
    g_mutex_lock(&b->emu->lock);
    if (b->timer) {
        g_source_destroy(b->timer);
        g_source_unref(b->timer);
        b->timer = NULL;
    }
    b->leaving = false;
    g_mutex_unlock(&b->emu->lock);
}

static gboolean board_timer_cb(void *data)
{
    BoardTimer *t = data;
    EmuBoard *b = t->board;
    Emu *e = b->emu;

    /* The worker may have replaced the timer since this one was dispatched. */
    g_mutex_lock(&e->lock);
    if (b->timer == g_main_current_source()) {
        g_source_unref(b->timer);
        b->timer = NULL;
    }
    g_mutex_unlock(&e->lock);
    switch (t->action) {
    case ACT_DETACH_LEAVE:
        device_unplug(b);
        board_schedule(b, ACT_REPLUG, b->cfg.reenum_delay_ms);
        break;
    case ACT_VANISH:
    case ACT_UNPLUG_TIMED:
        device_unplug(b);
        if (b->cfg.replug_after_ms >= 0)
            board_schedule(b, ACT_REPLUG, (uint32_t)b->cfg.replug_after_ms);
        break;
    case ACT_REPLUG:
        if (device_plug(b, EMU_MODE_DFU) < 0)
            emu_log("%s: could not come back in DFU mode\n", b->path);
        break;
    case ACT_NONE:
        break;
    }
    return G_SOURCE_REMOVE;
}

void emu_board_schedule_detach(EmuBoard *b)
{
    if (b->leaving)
        return;
    b->leaving = true;
    board_schedule_locked(b, ACT_DETACH_LEAVE, b->cfg.detach_delay_ms);
}

void emu_board_schedule_vanish(EmuBoard *b)
{
    if (b->dev)
        emu_device_mark_gone(b->dev);
    b->leaving = true;
    board_schedule_locked(b, ACT_VANISH, 0);
}

void emu_device_mark_gone(EmuDevice *d)
{
    if (d->gone)
        return;
    d->gone = true;
    emu_usbdevfs_device_gone(d);
}

static void add_stats(DfuModelStats *sum, const DfuModelStats *s)
{
    sum->requests += s->requests;
    sum->attempts += s->attempts;
    sum->downloads_ok += s->downloads_ok;
    sum->early_polls += s->early_polls;
    sum->max_poll_late_ms = MAX(sum->max_poll_late_ms, s->max_poll_late_ms);
    sum->aborts += s->aborts;
    sum->clrstatus += s->clrstatus;
    sum->detaches += s->detaches;
    sum->resets += s->resets;
    sum->erases += s->erases;
    sum->stalls += s->stalls;
    sum->asked_ms += s->asked_ms;
}

/*
 * The board shows up in DFU mode: the ROM starts afresh (dfu_model_reset()).
 * A model that said UNPLUG stays unplugged for good, so after such a fault the
 * board gets a new model: its statistics add to the old ones, and the fault
 * attempts already spent are not spent again.
 */
static void model_enter_dfu(EmuBoard *b)
{
    DfuModelConfig c = b->cfg.model;
    DfuModelStats st;
    size_t len;
    const uint8_t *p;

    if (b->model && !b->model_unplugged) {
        dfu_model_reset(b->model);
        return;
    }
    if (b->model) {
        dfu_model_stats(b->model, &st);
        add_stats(&b->past, &st);
        p = dfu_model_received(b->model, &len);
        if (len) {
            g_clear_pointer(&b->past_received, g_bytes_unref);
            b->past_received = g_bytes_new(p, len);
            b->past.validated = st.validated;
        }
        b->model = dfu_model_free(b->model);
        b->model_unplugged = false;
        b->generations++;
    }
    if (c.faults.fault_attempts > 0 && b->past.attempts >= c.faults.fault_attempts) {
        c.faults.error_at_block = c.faults.stall_at_block = c.faults.hang_at_block = -1;
        c.faults.unplug_at_block = c.faults.busy_at_block = -1;
    } else if (c.faults.fault_attempts > 0) {
        c.faults.fault_attempts -= b->past.attempts;
    }
    b->model = dfu_model_new(&c);
    g_assert(b->model); /* calloc() of a few hundred bytes */
}

static int device_plug(EmuBoard *b, EmuMode mode)
{
    Emu *e = b->emu;
    EmuDevice *d = g_new0(EmuDevice, 1);
    UsbDeviceRecord r = {.desc = &d->desc, .bus = b->bus, .path = b->path};
    static const uint8_t line_coding[7] = {0x00, 0xc2, 0x01, 0x00, 0, 0, 8}; /* 115200 8N1 */
    g_autoptr(GError) gerr = NULL;
    int err;

    d->board = b;
    d->mode = mode;
    d->configuration = 1;
    memcpy(d->line_coding, line_coding, sizeof(line_coding));
    emu_desc_board(&d->desc, b->cfg.chip, mode, &b->cfg);
    d->devnum = r.devnum = devnum_alloc(e, b->bus);
    if (d->devnum == 0) {
        g_free(d);
        return -ENOSPC;
    }
    d->devnode = g_strdup_printf("/dev/bus/usb/%03u/%03u", b->bus, d->devnum);
    if (mode == EMU_MODE_DFU) {
        g_mutex_lock(&e->lock); /* emu_board_info() may be reading it */
        model_enter_dfu(b);
        g_mutex_unlock(&e->lock);
    }
    /* The handler first: a listener may open the node as soon as it sees it. */
    d->handler = emu_usbdevfs_handler_new(d);
    if (!umockdev_testbed_attach_ioctl(e->testbed, d->devnode, d->handler, &gerr)) {
        emu_log("%s: attach_ioctl failed: %s\n", b->path, gerr->message);
        err = -EIO;
        goto err_free;
    }
    err = add_usb_device(e, &r, &d->node, &d->if_nodes);
    if (err < 0)
        goto err_detach;
    g_mutex_lock(&e->lock);
    g_ptr_array_add(e->devices, d);
    b->dev = d;
    b->mode = mode;
    b->devnum = d->devnum;
    b->leaving = false;
    b->enumerations++;
    g_mutex_unlock(&e->lock);
    send_add(e, d->node, d->if_nodes);
    if (b->cfg.unplug_after_ms >= 0)
        board_schedule(b, ACT_UNPLUG_TIMED, (uint32_t)b->cfg.unplug_after_ms);
    return 0;

err_detach:
    (void)umockdev_testbed_detach_ioctl(e->testbed, d->devnode, NULL);
err_free:
    e->bus_used[b->bus][d->devnum] = false;
    emu_usbdevfs_device_free(d);
    g_free(d->devnode);
    g_free(d);
    return err;
}

static void device_unplug(EmuBoard *b)
{
    Emu *e = b->emu;
    EmuDevice *d;

    g_mutex_lock(&e->lock);
    d = b->dev;
    if (d) {
        emu_device_mark_gone(d);
        b->dev = NULL;
        b->unplugs++;
    }
    g_mutex_unlock(&e->lock);
    if (!d)
        return;
    /* The kernel removes the interfaces first, then the device. */
    for (unsigned i = d->if_nodes->len; i-- > 0;) {
        EmuNode *n = g_ptr_array_index(d->if_nodes, i);

        emu_uevents_send(e->uevents, "remove", n->devpath, "usb", n->devtype, n->props);
        umockdev_testbed_remove_device(e->testbed, n->syspath);
    }
    emu_uevents_send(e->uevents, "remove", d->node->devpath, "usb", d->node->devtype,
                     d->node->props);
    umockdev_testbed_remove_device(e->testbed, d->node->syspath);
    (void)umockdev_testbed_detach_ioctl(e->testbed, d->devnode, NULL);
    e->bus_used[b->bus][d->devnum] = false;
}

static void device_free(void *p)
{
    EmuDevice *d = p;

    emu_usbdevfs_device_free(d);
    node_free(d->node);
    if (d->if_nodes)
        g_ptr_array_unref(d->if_nodes);
    g_free(d->devnode);
    g_free(d);
}

static void board_free(void *p)
{
    EmuBoard *b = p;

    board_cancel(b);
    dfu_model_free(b->model);
    g_clear_pointer(&b->past_received, g_bytes_unref);
    g_free(b);
}

/* ---- API ---- */

static bool preload_active(void)
{
    const char *p = g_getenv("LD_PRELOAD");

    return p && strstr(p, "libumockdev-preload");
}

int emu_new(Emu **ret)
{
    Emu *e;

    /* Under the preload umockdev would send its own uevents (and abort() on a lagging
     * listener) and redirect our /sys: see emu_reexec_without_preload(). */
    if (preload_active())
        return -EBUSY;
    e = g_new0(Emu, 1);
    g_mutex_init(&e->lock);
    e->testbed = umockdev_testbed_new();
    e->root_dir = umockdev_testbed_get_root_dir(e->testbed);
    e->main_ctx = g_main_context_ref_thread_default();
    e->uevents = emu_uevents_new(e->root_dir, e->main_ctx);
    e->boards = g_ptr_array_new_with_free_func(board_free);
    e->hubs = g_ptr_array_new_with_free_func(node_free);
    e->hub_paths = g_ptr_array_new_with_free_func(g_free);
    e->devices = g_ptr_array_new_with_free_func(device_free);
    *ret = e;
    return 0;
}

Emu *emu_free(Emu *e)
{
    if (!e)
        return NULL;
    for (unsigned i = 0; i < e->boards->len; i++) {
        EmuBoard *b = g_ptr_array_index(e->boards, i);

        board_cancel(b);
        device_unplug(b);
    }
    g_mutex_lock(&e->lock);
    e->closing = true;
    for (unsigned i = 0; i < e->devices->len; i++)
        emu_usbdevfs_device_free(g_ptr_array_index(e->devices, i));
    g_mutex_unlock(&e->lock);
    g_object_unref(e->testbed); /* removes the directory tree */
    g_ptr_array_unref(e->devices);
    g_ptr_array_unref(e->boards);
    g_ptr_array_unref(e->hubs);
    g_ptr_array_unref(e->hub_paths);
    emu_uevents_free(e->uevents);
    if (e->worker_ctx)
        g_main_context_unref(e->worker_ctx);
    g_main_context_unref(e->main_ctx);
    g_free(e->root_dir);
    g_mutex_clear(&e->lock);
    g_free(e);
    return NULL;
}

const char *emu_root_dir(const Emu *e)
{
    return e->root_dir;
}

int emu_add_board(Emu *e, const char *path, const EmuBoardConfig *c, EmuBoard **ret)
{
    unsigned bus, depth;
    EmuBoard *b;
    int err;

    if (!emu_path_valid(path, &bus, &depth) || bus > EMU_BUS_MAX || c->chip >= _EMU_CHIP_MAX ||
        c->mode >= _EMU_MODE_MAX)
        return -EINVAL;
    if (emu_find_board(e, path) || hub_exists(e, path))
        return -EEXIST;
    if (e->boards->len >= EMU_MAX_BOARDS)
        return -ENOSPC;
    /* A board on 1-3 blocks a hub there, and the other way round. */
    for (unsigned i = 0; i < e->boards->len; i++) {
        const char *other = ((EmuBoard *)g_ptr_array_index(e->boards, i))->path;
        size_t n = strlen(other);

        if (strncmp(other, path, n) == 0 && path[n] == '.')
            return -EEXIST;
    }
    err = add_hubs_for(e, bus, path);
    if (err < 0)
        return err;
    b = g_new0(EmuBoard, 1);
    b->emu = e;
    g_strlcpy(b->path, path, sizeof(b->path));
    b->bus = bus;
    b->cfg = *c;
    g_ptr_array_add(e->boards, b);
    err = device_plug(b, c->mode);
    if (err < 0) {
        g_ptr_array_remove(e->boards, b);
        return err;
    }
    if (ret)
        *ret = b;
    return 0;
}

int emu_add_hubs(Emu *e, const char *path)
{
    unsigned bus, depth;

    if (!emu_path_valid(path, &bus, &depth))
        return -EINVAL;
    return add_hubs_for(e, bus, path);
}

EmuBoard *emu_find_board(Emu *e, const char *path)
{
    for (unsigned i = 0; i < e->boards->len; i++) {
        EmuBoard *b = g_ptr_array_index(e->boards, i);

        if (g_str_equal(b->path, path))
            return b;
    }
    return NULL;
}

size_t emu_n_boards(const Emu *e)
{
    return e->boards->len;
}

EmuBoard *emu_board_by_index(Emu *e, size_t i)
{
    return i < e->boards->len ? g_ptr_array_index(e->boards, i) : NULL;
}

int emu_board_unplug(EmuBoard *b)
{
    if (!b->dev)
        return -EALREADY;
    board_cancel(b);
    device_unplug(b);
    return 0;
}

int emu_board_replug(EmuBoard *b, EmuMode mode)
{
    if (b->dev)
        return -EBUSY;
    if (mode >= _EMU_MODE_MAX)
        return -EINVAL;
    board_cancel(b);
    return device_plug(b, mode);
}

void emu_board_info(EmuBoard *b, EmuBoardInfo *ret)
{
    Emu *e = b->emu;

    g_mutex_lock(&e->lock);
    *ret = (EmuBoardInfo){.chip = b->cfg.chip,
                          .mode = b->mode,
                          .plugged = b->dev != NULL,
                          .busnum = b->bus,
                          .devnum = b->devnum,
                          .enumerations = b->enumerations,
                          .control_transfers = b->control_transfers,
                          .ioctls = b->ioctls,
                          .opens = b->opens,
                          .resets = b->resets,
                          .detaches = b->detaches,
                          .unplugs = b->unplugs,
                          .has_model = b->model != NULL};
    g_strlcpy(ret->path, b->path, sizeof(ret->path));
    if (b->model) {
        DfuModelStats now;
        size_t len;

        dfu_model_stats(b->model, &now);
        (void)dfu_model_received(b->model, &len);
        ret->dfu = b->past;
        add_stats(&ret->dfu, &now);
        ret->dfu.state = now.state;
        ret->dfu.status = now.status;
        /* "validated" is about the last completed download, which may be an old model's. */
        ret->dfu.validated = len > 0 ? now.validated : b->past.validated;
    }
    g_mutex_unlock(&e->lock);
}

int emu_board_received(EmuBoard *b, uint8_t **ret, size_t *ret_len)
{
    Emu *e = b->emu;
    const uint8_t *p = NULL;
    size_t len = 0;

    g_mutex_lock(&e->lock);
    if (b->model)
        p = dfu_model_received(b->model, &len);
    if (len == 0 && b->past_received)
        p = g_bytes_get_data(b->past_received, &len);
    *ret = g_malloc(MAX(len, 1));
    if (len)
        memcpy(*ret, p, len);
    *ret_len = len;
    g_mutex_unlock(&e->lock);
    return 0;
}

uint64_t emu_control_transfers(Emu *e)
{
    uint64_t n;

    g_mutex_lock(&e->lock);
    n = e->control_total;
    g_mutex_unlock(&e->lock);
    return n;
}
