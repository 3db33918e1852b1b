/* SPDX-License-Identifier: MIT */
/*
 * usbdevfs, as the kernel's drivers/usb/core/devio.c answers it, for one
 * emulated device node. Runs on umockdev's worker thread, under Emu.lock.
 *
 * URBs: SUBMITURB resolves the client's struct usbdevfs_urb and its buffer
 * (umockdev copies client memory into ours), answers a control request at
 * once and records when the URB completes: now, after the model's delay (the
 * erase stall), or never (HANG, until DISCARDURB). REAPURB[NDELAY] hands back
 * the oldest completed URB of that open file, writing status, length and IN
 * data back. After an unplug every pending URB completes -ESHUTDOWN, completed
 * ones can still be reaped, then everything fails ENODEV
 * (USBDEVFS_CAP_REAP_AFTER_DISCONNECT), so a synchronous libusb transfer ends
 * with LIBUSB_ERROR_NO_DEVICE instead of hanging.
 */
#include <errno.h>
#include <linux/usb/ch9.h>
#include <string.h>

#include "emu-internal.h"

#define REQ_RECIP(x) ((x)&USB_RECIP_MASK)
#define WAIT_POLL_MS 1u
#define NEVER        INT64_MAX

typedef struct EmuUrb {
    UMockdevIoctlData *urb_data; /* the client's struct usbdevfs_urb (our copy) */
    UMockdevIoctlData *buf_data; /* its buffer, NULL when empty */
    int64_t ready_us;            /* completes at this monotonic time; NEVER: hangs */
    int status, actual_length;
    size_t data_offset; /* 8 for control (after the setup packet) */
    GBytes *reply;      /* IN data, written back at reap time */
} EmuUrb;

struct EmuClient {
    EmuDevice *dev;
    UMockdevIoctlClient *client; /* not referenced; the client holds us */
    GQueue urbs;                 /* EmuUrb*, in submission order */
    bool closed;
    GSource *waiter; /* a blocking REAPURB or a delayed CONTROL */
};

static void emu_urb_free(EmuUrb *u)
{
    g_clear_object(&u->urb_data);
    g_clear_object(&u->buf_data);
    g_clear_pointer(&u->reply, g_bytes_unref);
    g_free(u);
}

static Emu *dev_emu(EmuDevice *d)
{
    return d->board->emu;
}

/* ---- URBs ---- */

static void submit_control(EmuDevice *d, EmuClient *c, EmuUrb *u, EmuReply *r)
{
    uint8_t *buf = u->buf_data ? u->buf_data->data : NULL;
    struct usbdevfs_urb *urb = (struct usbdevfs_urb *)u->urb_data->data;
    EmuCtrl x = {0};
    g_autofree uint8_t *scratch = NULL;

    if (!buf || urb->buffer_length < 8) {
        emu_reply_fail(r, EINVAL);
        return;
    }
    x.type = buf[0];
    x.request = buf[1];
    x.value = buf[2] | buf[3] << 8;
    x.index = buf[4] | buf[5] << 8;
    x.length = buf[6] | buf[7] << 8;
    if (x.length > urb->buffer_length - 8) {
        emu_reply_fail(r, EINVAL);
        return;
    }
    if (REQ_RECIP(x.type) == USB_RECIP_INTERFACE && emu_device_interface(d, x.index & 0xff) >= 0 &&
        emu_claim(d, c, x.index & 0xff) < 0) {
        emu_reply_fail(r, EBUSY);
        return;
    }
    scratch = g_malloc0(MAX(x.length, 1));
    if (!(x.type & USB_DIR_IN))
        memcpy(scratch, buf + 8, x.length);
    x.data = scratch;
    emu_control(d, &x);

    u->data_offset = 8;
    u->status = x.status;
    u->actual_length = x.status == 0 ? x.actual : 0;
    if ((x.type & USB_DIR_IN) && x.status == 0 && x.actual)
        u->reply = g_bytes_new(scratch, x.actual);
    u->ready_us = x.vanish ? g_get_monotonic_time() : emu_control_ready_time(d, &x);
}

/* CDC data and notification endpoints: OUT is swallowed, IN never completes. */
static void submit_bulk(EmuDevice *d, EmuUrb *u, EmuReply *r)
{
    struct usbdevfs_urb *urb = (struct usbdevfs_urb *)u->urb_data->data;

    if (!emu_device_endpoint(d, urb->endpoint)) {
        emu_reply_fail(r, ENOENT);
        return;
    }
    u->ready_us = (urb->endpoint & USB_DIR_IN) ? NEVER : g_get_monotonic_time();
    u->actual_length = (urb->endpoint & USB_DIR_IN) ? 0 : urb->buffer_length;
}

static void ioctl_submiturb(EmuDevice *d, EmuClient *c, UMockdevIoctlClient *client, EmuReply *r)
{
    UMockdevIoctlData *arg = umockdev_ioctl_client_get_arg(client);
    EmuUrb *u = g_new0(EmuUrb, 1);
    struct usbdevfs_urb *urb;

    u->urb_data = umockdev_ioctl_data_resolve(arg, 0, sizeof(struct usbdevfs_urb), NULL);
    if (!u->urb_data) {
        emu_urb_free(u);
        emu_reply_fail(r, EFAULT);
        return;
    }
    urb = (struct usbdevfs_urb *)u->urb_data->data;
    if (urb->buffer_length < 0) {
        emu_urb_free(u);
        emu_reply_fail(r, EINVAL);
        return;
    }
    if (urb->buffer_length > 0)
        u->buf_data = umockdev_ioctl_data_resolve(u->urb_data,
                                                  G_STRUCT_OFFSET(struct usbdevfs_urb, buffer),
                                                  (size_t)urb->buffer_length, NULL);
    if (urb->type == USBDEVFS_URB_TYPE_CONTROL) {
        submit_control(d, c, u, r);
    } else if (urb->type == USBDEVFS_URB_TYPE_BULK || urb->type == USBDEVFS_URB_TYPE_INTERRUPT) {
        submit_bulk(d, u, r);
    } else {
        emu_log("%s: isochronous URB refused\n", d->board->path);
        emu_reply_fail(r, EINVAL);
    }
    if (r->ret < 0) {
        emu_urb_free(u);
        return;
    }
    g_queue_push_tail(&c->urbs, u);
}

/* The completed URB that completed first, removed from the queue; NULL if none. */
static EmuUrb *take_completed(EmuClient *c)
{
    int64_t now = g_get_monotonic_time();
    GList *best = NULL;

    for (GList *l = c->urbs.head; l; l = l->next) {
        EmuUrb *u = l->data;

        if (u->ready_us <= now && (!best || u->ready_us < ((EmuUrb *)best->data)->ready_us))
            best = l;
    }
    if (!best)
        return NULL;
    EmuUrb *u = best->data;
    g_queue_delete_link(&c->urbs, best);
    return u;
}

/* Write the URB's outcome back and point the client's `void *` at it. */
static void hand_back(EmuUrb *u, UMockdevIoctlClient *client)
{
    struct usbdevfs_urb *urb = (struct usbdevfs_urb *)u->urb_data->data;
    g_autoptr(UMockdevIoctlData) ptr = NULL;

    urb->status = u->status;
    urb->actual_length = u->actual_length;
    if (u->reply && u->buf_data) {
        gsize n;
        const void *p = g_bytes_get_data(u->reply, &n);

        n = MIN(n, (gsize)u->buf_data->data_len - u->data_offset);
        memcpy(u->buf_data->data + u->data_offset, p, n);
    }
    ptr = umockdev_ioctl_data_resolve(umockdev_ioctl_client_get_arg(client), 0, sizeof(void *),
                                      NULL);
    g_assert(ptr);
    umockdev_ioctl_data_set_ptr(ptr, 0, u->urb_data);
}

/* 1 handed one back, 0 nothing yet, -ENODEV gone and drained. */
static int try_reap(EmuDevice *d, EmuClient *c, UMockdevIoctlClient *client)
{
    EmuUrb *u = take_completed(c);

    if (u) {
        hand_back(u, client);
        emu_urb_free(u);
        return 1;
    }
    return d->gone ? -ENODEV : 0;
}

static void ioctl_discardurb(EmuClient *c, UMockdevIoctlClient *client, EmuReply *r)
{
    gulong addr = *(gulong *)umockdev_ioctl_client_get_arg(client)->data;
    int64_t now = g_get_monotonic_time();

    for (GList *l = c->urbs.head; l; l = l->next) {
        EmuUrb *u = l->data;

        if (u->urb_data->client_addr != addr)
            continue;
        if (u->ready_us <= now)
            break; /* already complete: the kernel says EINVAL too */
        u->ready_us = now;
        u->status = -ENOENT;
        u->actual_length = 0;
        g_clear_pointer(&u->reply, g_bytes_unref);
        return;
    }
    emu_reply_fail(r, EINVAL);
}

/* ---- blocking waits: REAPURB and delayed USBDEVFS_CONTROL ---- */

typedef struct Waiter {
    EmuClient *c;
    UMockdevIoctlClient *client; /* referenced */
    bool control;
    int64_t ready_us;    /* control: answer at ready_us */
    int64_t deadline_us; /* control: ETIMEDOUT then; REAPURBNDELAY: EAGAIN then; 0: none */
    EmuReply result;
    UMockdevIoctlData *ctrl_data; /* control: the resolved data buffer */
    GBytes *reply;
} Waiter;

static void waiter_free(void *p)
{
    Waiter *w = p;

    g_object_unref(w->client);
    g_clear_object(&w->ctrl_data);
    g_clear_pointer(&w->reply, g_bytes_unref);
    g_free(w);
}

/*
 * ESPDFU_EMU_REAP_WAIT_US (default 0): how long a REAPURBNDELAY that finds
 * nothing waits for an in-flight URB before EAGAIN. See ioctl_reap().
 */
static int64_t reap_wait_us(void)
{
    static gsize once;
    static int64_t us;

    if (g_once_init_enter(&once)) {
        const char *s = g_getenv("ESPDFU_EMU_REAP_WAIT_US");

        if (s && *s)
            us = CLAMP(g_ascii_strtoll(s, NULL, 10), 0, 100000);
        g_once_init_leave(&once, 1);
    }
    return us;
}

/* Polled on the worker context; TRUE while still waiting. */
static bool waiter_poll(Waiter *w, EmuReply *out)
{
    EmuDevice *d = w->c->dev;
    int64_t now = g_get_monotonic_time();
    int r;

    if (!d || w->c->closed) {
        emu_reply_fail(out, ENODEV);
        return false;
    }
    if (!w->control) {
        r = try_reap(d, w->c, w->client);
        if (r == 0 && w->deadline_us && now >= w->deadline_us) {
            emu_reply_fail(out, EAGAIN);
            return false;
        }
        if (r == 0)
            return true;
        *out = (EmuReply){.ret = r < 0 ? -1 : 0, .err = r < 0 ? ENODEV : 0};
        return false;
    }
    if (d->gone) {
        emu_reply_fail(out, ENODEV);
    } else if (now >= w->deadline_us && w->ready_us > w->deadline_us) {
        emu_reply_fail(out, ETIMEDOUT);
    } else if (now >= w->ready_us) {
        *out = w->result;
        if (w->reply && w->ctrl_data)
            memcpy(w->ctrl_data->data, g_bytes_get_data(w->reply, NULL),
                   MIN(g_bytes_get_size(w->reply), (gsize)w->ctrl_data->data_len));
    } else {
        return true;
    }
    return false;
}

static gboolean waiter_cb(void *data)
{
    Waiter *w = data;
    Emu *e;
    EmuReply out = {0};
    bool again;

    if (!w->c->dev) {
        umockdev_ioctl_client_complete(w->client, -1, ENODEV);
        return G_SOURCE_REMOVE;
    }
    e = dev_emu(w->c->dev);
    g_mutex_lock(&e->lock);
    again = waiter_poll(w, &out);
    if (!again) {
        g_source_unref(w->c->waiter);
        w->c->waiter = NULL;
    }
    g_mutex_unlock(&e->lock);
    if (again)
        return G_SOURCE_CONTINUE;
    umockdev_ioctl_client_complete(w->client, out.ret, out.err);
    return G_SOURCE_REMOVE;
}

static void wait_for(Emu *e, EmuClient *c, Waiter *w, EmuReply *r)
{
    w->c = c;
    c->waiter = g_timeout_source_new(WAIT_POLL_MS);
    g_source_set_callback(c->waiter, waiter_cb, w, waiter_free);
    g_source_attach(c->waiter, e->worker_ctx);
    r->deferred = true;
}

/* USBDEVFS_CONTROL: a synchronous control transfer (libusb uses it without sysfs). */
static void ioctl_control(EmuDevice *d, EmuClient *c, UMockdevIoctlClient *client, EmuReply *r)
{
    g_autoptr(UMockdevIoctlData) ct = umockdev_ioctl_data_resolve(
            umockdev_ioctl_client_get_arg(client), 0, sizeof(struct usbdevfs_ctrltransfer), NULL);
    struct usbdevfs_ctrltransfer *t;
    UMockdevIoctlData *data = NULL;
    g_autofree uint8_t *scratch = NULL;
    Waiter *w;
    EmuCtrl x = {0};

    if (!ct) {
        emu_reply_fail(r, EFAULT);
        return;
    }
    t = (struct usbdevfs_ctrltransfer *)ct->data;
    if (t->wLength)
        data = umockdev_ioctl_data_resolve(ct, G_STRUCT_OFFSET(struct usbdevfs_ctrltransfer, data),
                                           t->wLength, NULL);
    x = (EmuCtrl){.type = t->bRequestType,
                  .request = t->bRequest,
                  .value = t->wValue,
                  .index = t->wIndex,
                  .length = t->wLength};
    scratch = g_malloc0(MAX(x.length, 1));
    if (data && !(x.type & USB_DIR_IN))
        memcpy(scratch, data->data, x.length);
    x.data = scratch;
    emu_control(d, &x);

    w = g_new0(Waiter, 1);
    w->client = g_object_ref(client);
    w->control = true;
    w->ctrl_data = data;
    w->result = x.status ? (EmuReply){.ret = -1, .err = x.status == -EPIPE ? EPIPE : ENODEV}
                         : (EmuReply){.ret = x.actual};
    if ((x.type & USB_DIR_IN) && x.status == 0 && x.actual)
        w->reply = g_bytes_new(scratch, x.actual);
    w->ready_us = x.vanish ? 0 : emu_control_ready_time(d, &x);
    w->deadline_us = t->timeout ? g_get_monotonic_time() + (int64_t)t->timeout * 1000 : NEVER;
    wait_for(d->board->emu, c, w, r);
}

static void ioctl_reap(EmuDevice *d, EmuClient *c, UMockdevIoctlClient *client, bool block,
                       EmuReply *r)
{
    int n = try_reap(d, c, client);
    Waiter *w;

    if (n > 0)
        return;
    if (n < 0) {
        emu_reply_fail(r, ENODEV);
        return;
    }
    /*
     * Nothing completed. The node is a plain file that always polls ready, so
     * libusb asks again at once: ~10k EAGAINs a second per waiting process,
     * and that load on umockdev's one worker thread slows every other board
     * (one board waiting out a hang halves another's download speed). With a
     * reap wait the answer comes when the URB completes or the wait ends, the
     * way poll() would have slept. Off by default: a process that drives
     * several boards from one libusb context reaps every fd in turn, and each
     * waiting fd would then delay the others by up to the wait.
     */
    if (!block && (c->urbs.length == 0 || reap_wait_us() == 0)) {
        emu_reply_fail(r, EAGAIN);
        return;
    }
    w = g_new0(Waiter, 1);
    w->client = g_object_ref(client);
    if (!block)
        w->deadline_us = g_get_monotonic_time() + reap_wait_us();
    wait_for(d->board->emu, c, w, r);
}

static const char *ioctl_name(unsigned long request)
{
    switch (request) {
    case USBDEVFS_SUBMITURB:
        return "SUBMITURB";
    case USBDEVFS_REAPURB:
        return "REAPURB";
    case USBDEVFS_REAPURBNDELAY:
        return "REAPURBNDELAY";
    case USBDEVFS_DISCARDURB:
        return "DISCARDURB";
    case USBDEVFS_CONTROL:
        return "CONTROL";
    case USBDEVFS_BULK:
        return "BULK";
    default:
        return "?";
    }
}

static void dispatch(EmuDevice *d, EmuClient *c, UMockdevIoctlClient *client, unsigned long request,
                     EmuReply *r)
{
    if (request == USBDEVFS_REAPURB || request == USBDEVFS_REAPURBNDELAY) {
        ioctl_reap(d, c, client, request == USBDEVFS_REAPURB, r);
        return;
    }
    if (d->gone) {
        emu_reply_fail(r, ENODEV);
        return;
    }
    switch (request) {
    case USBDEVFS_SUBMITURB:
        ioctl_submiturb(d, c, client, r);
        return;
    case USBDEVFS_DISCARDURB:
        ioctl_discardurb(c, client, r);
        return;
    case USBDEVFS_CONTROL:
        ioctl_control(d, c, client, r);
        return;
    default:
        break;
    }
    if (emu_ioctl_other(d, c, client, request, r))
        return;
    /* Loud on purpose: an ioctl nobody expected is a gap in the emulation. */
    emu_log("%s: UNSUPPORTED usbdevfs ioctl 0x%08lx (%s, type '%c' nr %lu size %lu) -> ENOTTY\n",
            d->board->path, request, ioctl_name(request), (int)_IOC_TYPE(request),
            (unsigned long)_IOC_NR(request), (unsigned long)_IOC_SIZE(request));
    emu_reply_fail(r, ENOTTY);
}

/* ---- clients (open files) ---- */

#define CLIENT_KEY "espdfu-emu-client"

static void client_drop(EmuClient *c)
{
    EmuUrb *u;

    while ((u = g_queue_pop_head(&c->urbs)))
        emu_urb_free(u);
}

/* The file was closed: the kernel releases its interfaces and kills its URBs. Lock held. */
static void client_closed(EmuClient *c)
{
    EmuDevice *d = c->dev;

    if (c->closed || !d)
        return;
    c->closed = true;
    for (unsigned i = 0; i < EMU_MAX_INTERFACES; i++)
        if (d->claimed[i] == c)
            d->claimed[i] = NULL;
    client_drop(c);
    d->clients = g_list_remove(d->clients, c);
}

static void on_client_notify(GObject *obj, GParamSpec *pspec, void *data)
{
    EmuClient *c = data;
    Emu *e;

    if (umockdev_ioctl_client_get_connected(UMOCKDEV_IOCTL_CLIENT(obj)) || !c->dev)
        return;
    e = dev_emu(c->dev);
    g_mutex_lock(&e->lock);
    client_closed(c);
    g_mutex_unlock(&e->lock);
}

static void client_free(void *data)
{
    EmuClient *c = data;

    if (c->dev) {
        Emu *e = dev_emu(c->dev);

        g_mutex_lock(&e->lock);
        client_closed(c);
        g_mutex_unlock(&e->lock);
    }
    g_free(c);
}

static void on_client_connected(UMockdevIoctlBase *base, UMockdevIoctlClient *client, void *data)
{
    EmuDevice *d = data;
    Emu *e = d->board->emu;
    EmuClient *c = g_new0(EmuClient, 1);

    c->dev = d;
    c->client = client;
    g_queue_init(&c->urbs);
    g_mutex_lock(&e->lock);
    if (!e->worker_ctx)
        e->worker_ctx = g_main_context_ref_thread_default();
    d->clients = g_list_prepend(d->clients, c);
    d->board->opens++;
    g_mutex_unlock(&e->lock);
    g_object_set_data_full(G_OBJECT(client), CLIENT_KEY, c, client_free);
    g_signal_connect(client, "notify::connected", G_CALLBACK(on_client_notify), c);
}

static gboolean on_handle_ioctl(UMockdevIoctlBase *base, UMockdevIoctlClient *client, void *data)
{
    EmuDevice *d = data;
    Emu *e = d->board->emu;
    EmuClient *c = g_object_get_data(G_OBJECT(client), CLIENT_KEY);
    unsigned long request = umockdev_ioctl_client_get_request(client);
    EmuReply r = {0};

    g_mutex_lock(&e->lock);
    if (!c || c->closed || e->closing) {
        emu_reply_fail(&r, ENODEV);
    } else {
        d->board->ioctls++;
        dispatch(d, c, client, request, &r);
    }
    g_mutex_unlock(&e->lock);
    if (!r.deferred)
        umockdev_ioctl_client_complete(client, r.ret, r.err);
    return TRUE;
}

UMockdevIoctlBase *emu_usbdevfs_handler_new(EmuDevice *d)
{
    UMockdevIoctlBase *h = umockdev_ioctl_base_new();

    g_signal_connect(h, "handle-ioctl", G_CALLBACK(on_handle_ioctl), d);
    g_signal_connect(h, "client-connected", G_CALLBACK(on_client_connected), d);
    return h;
}

/* Unplug: pending URBs complete as the kernel kills them (-ESHUTDOWN). Lock held. */
void emu_usbdevfs_device_gone(EmuDevice *d)
{
    int64_t now = g_get_monotonic_time();

    for (GList *l = d->clients; l; l = l->next) {
        EmuClient *c = l->data;

        for (GList *k = c->urbs.head; k; k = k->next) {
            EmuUrb *u = k->data;

            if (u->ready_us <= now)
                continue; /* completed before the unplug: reaped as it was */
            u->ready_us = now;
            u->status = -ESHUTDOWN;
            u->actual_length = 0;
            g_clear_pointer(&u->reply, g_bytes_unref);
        }
    }
}

void emu_usbdevfs_device_free(EmuDevice *d)
{
    if (d->handler) {
        g_signal_handlers_disconnect_by_data(d->handler, d);
        g_clear_object(&d->handler);
    }
    for (GList *l = d->clients; l; l = l->next) {
        EmuClient *c = l->data;

        client_drop(c);
        c->closed = true;
        c->dev = NULL;
    }
    g_list_free(d->clients);
    d->clients = NULL;
}
