/* SPDX-License-Identifier: MIT */
/*
 * The usbdevfs ioctls that are not about URBs: interfaces and their claims,
 * kernel drivers, configuration, capabilities, connection info, reset
 * (drivers/usb/core/devio.c). Lock held, on umockdev's worker thread.
 */
#include <errno.h>
#include <linux/usb/ch9.h>
#include <stdlib.h>
#include <string.h>

#include "emu-internal.h"

int emu_device_interface(const EmuDevice *d, unsigned ifno)
{
    for (unsigned i = 0; i < d->desc.n_interfaces; i++)
        if (d->desc.ifs[i].number == ifno)
            return (int)i;
    return -1;
}

bool emu_device_endpoint(const EmuDevice *d, unsigned ep)
{
    for (unsigned i = 0; i < d->desc.n_interfaces; i++)
        for (unsigned k = 0; k < d->desc.ifs[i].n_endpoints; k++)
            if (d->desc.ifs[i].endpoints[k] == ep)
                return true;
    return false;
}

static bool kernel_driver_bound(const EmuDevice *d, int i)
{
    return d->desc.ifs[i].driver && !d->driver_detached[i];
}

/* devio.c claimintf(): 0, or -ENOENT/-EBUSY. Requests to an interface claim it too. */
int emu_claim(EmuDevice *d, EmuClient *c, unsigned ifno)
{
    int i = emu_device_interface(d, ifno);

    if (i < 0)
        return -ENOENT;
    if (d->claimed[i] == c)
        return 0;
    if (d->claimed[i] || kernel_driver_bound(d, i))
        return -EBUSY;
    d->claimed[i] = c;
    return 0;
}

static unsigned read_uint_arg(UMockdevIoctlClient *client, bool *ok)
{
    g_autoptr(UMockdevIoctlData) v = umockdev_ioctl_data_resolve(
            umockdev_ioctl_client_get_arg(client), 0, sizeof(unsigned int), NULL);

    *ok = v != NULL;
    return v ? *(unsigned int *)v->data : 0;
}

static void ioctl_claim(EmuDevice *d, EmuClient *c, unsigned ifno, EmuReply *r)
{
    int err = emu_claim(d, c, ifno);

    if (err < 0)
        emu_reply_fail(r, -err);
}

static void ioctl_release(EmuDevice *d, EmuClient *c, unsigned ifno, EmuReply *r)
{
    int i = emu_device_interface(d, ifno);

    if (i < 0 || d->claimed[i] != c) {
        emu_reply_fail(r, EINVAL);
        return;
    }
    d->claimed[i] = NULL;
}

static void ioctl_setinterface(EmuDevice *d, EmuClient *c, UMockdevIoctlClient *client, EmuReply *r)
{
    g_autoptr(UMockdevIoctlData) v = umockdev_ioctl_data_resolve(
            umockdev_ioctl_client_get_arg(client), 0, sizeof(struct usbdevfs_setinterface), NULL);
    struct usbdevfs_setinterface *s = v ? (struct usbdevfs_setinterface *)v->data : NULL;
    int err;

    if (!s) {
        emu_reply_fail(r, EFAULT);
        return;
    }
    err = emu_claim(d, c, s->interface);
    if (err < 0) {
        emu_reply_fail(r, -err);
        return;
    }
    emu_count_control(d); /* the kernel sends SET_INTERFACE */
    if (s->altsetting != 0)
        emu_reply_fail(r, EINVAL);
}

static void ioctl_setconfiguration(EmuDevice *d, EmuClient *c, UMockdevIoctlClient *client,
                                   EmuReply *r)
{
    bool ok;
    int value = (int)read_uint_arg(client, &ok);

    if (!ok) {
        emu_reply_fail(r, EFAULT);
        return;
    }
    for (unsigned i = 0; i < d->desc.n_interfaces; i++)
        if (d->claimed[i] && d->claimed[i] != c) {
            emu_reply_fail(r, EBUSY);
            return;
        }
    if (value != -1 && value != 0 && value != 1) {
        emu_reply_fail(r, EINVAL);
        return;
    }
    emu_count_control(d);
    emu_device_set_configuration(d, value == 1 ? 1 : 0);
}

static void ioctl_getdriver(EmuDevice *d, UMockdevIoctlClient *client, EmuReply *r)
{
    g_autoptr(UMockdevIoctlData) v = umockdev_ioctl_data_resolve(
            umockdev_ioctl_client_get_arg(client), 0, sizeof(struct usbdevfs_getdriver), NULL);
    struct usbdevfs_getdriver *g = v ? (struct usbdevfs_getdriver *)v->data : NULL;
    int i;

    if (!g) {
        emu_reply_fail(r, EFAULT);
        return;
    }
    i = emu_device_interface(d, g->interface);
    if (i >= 0 && d->claimed[i])
        g_strlcpy(g->driver, "usbfs", sizeof(g->driver));
    else if (i >= 0 && kernel_driver_bound(d, i))
        g_strlcpy(g->driver, d->desc.ifs[i].driver, sizeof(g->driver));
    else
        emu_reply_fail(r, ENODATA);
}

/* USBDEVFS_IOCTL: DISCONNECT / CONNECT the kernel driver of one interface. */
static void ioctl_ioctl(EmuDevice *d, UMockdevIoctlClient *client, EmuReply *r)
{
    g_autoptr(UMockdevIoctlData) v = umockdev_ioctl_data_resolve(
            umockdev_ioctl_client_get_arg(client), 0, sizeof(struct usbdevfs_ioctl), NULL);
    struct usbdevfs_ioctl *io = v ? (struct usbdevfs_ioctl *)v->data : NULL;
    int i;

    if (!io) {
        emu_reply_fail(r, EFAULT);
        return;
    }
    i = emu_device_interface(d, (unsigned)io->ifno);
    if (i < 0) {
        emu_reply_fail(r, EINVAL);
    } else if ((unsigned)io->ioctl_code == USBDEVFS_DISCONNECT) {
        if (kernel_driver_bound(d, i))
            d->driver_detached[i] = true;
        else
            emu_reply_fail(r, ENODATA);
    } else if ((unsigned)io->ioctl_code == USBDEVFS_CONNECT) {
        d->driver_detached[i] = false;
    } else {
        emu_log("%s: USBDEVFS_IOCTL code 0x%x unsupported\n", d->board->path,
                (unsigned)io->ioctl_code);
        emu_reply_fail(r, ENOTTY);
    }
}

static void ioctl_disconnect_claim(EmuDevice *d, EmuClient *c, UMockdevIoctlClient *client,
                                   EmuReply *r)
{
    g_autoptr(UMockdevIoctlData) v =
            umockdev_ioctl_data_resolve(umockdev_ioctl_client_get_arg(client), 0,
                                        sizeof(struct usbdevfs_disconnect_claim), NULL);
    struct usbdevfs_disconnect_claim *dc = v ? (struct usbdevfs_disconnect_claim *)v->data : NULL;
    int i;

    if (!dc) {
        emu_reply_fail(r, EFAULT);
        return;
    }
    i = emu_device_interface(d, dc->interface);
    if (i < 0) {
        emu_reply_fail(r, EINVAL);
        return;
    }
    if (kernel_driver_bound(d, i))
        d->driver_detached[i] = true;
    ioctl_claim(d, c, dc->interface, r);
}

static void ioctl_capabilities(UMockdevIoctlClient *client, EmuReply *r)
{
    g_autoptr(UMockdevIoctlData) v = umockdev_ioctl_data_resolve(
            umockdev_ioctl_client_get_arg(client), 0, sizeof(uint32_t), NULL);

    if (!v) {
        emu_reply_fail(r, EFAULT);
        return;
    }
    /* No MMAP, no scatter-gather: what a plain EHCI-attached usbfs offers. */
    *(uint32_t *)v->data = USBDEVFS_CAP_ZERO_PACKET | USBDEVFS_CAP_BULK_CONTINUATION |
                           USBDEVFS_CAP_NO_PACKET_SIZE_LIM | USBDEVFS_CAP_REAP_AFTER_DISCONNECT |
                           USBDEVFS_CAP_CONNINFO_EX;
}

static void ioctl_connectinfo(EmuDevice *d, UMockdevIoctlClient *client, EmuReply *r)
{
    g_autoptr(UMockdevIoctlData) v = umockdev_ioctl_data_resolve(
            umockdev_ioctl_client_get_arg(client), 0, sizeof(struct usbdevfs_connectinfo), NULL);

    if (!v) {
        emu_reply_fail(r, EFAULT);
        return;
    }
    ((struct usbdevfs_connectinfo *)v->data)->devnum = d->devnum;
    ((struct usbdevfs_connectinfo *)v->data)->slow = 0;
}

/* USBDEVFS_CONNINFO_EX(len): a sized ioctl, filled up to what the caller asked for. */
static void ioctl_conninfo_ex(EmuDevice *d, UMockdevIoctlClient *client, size_t len, EmuReply *r)
{
    struct usbdevfs_conninfo_ex ci = {.size = sizeof(ci),
                                      .busnum = d->board->bus,
                                      .devnum = d->devnum,
                                      .speed = USB_SPEED_FULL};
    g_autoptr(UMockdevIoctlData) v = umockdev_ioctl_data_resolve(
            umockdev_ioctl_client_get_arg(client), 0, MAX(len, 1), NULL);
    const char *p = d->board->path;

    if (!v) {
        emu_reply_fail(r, EFAULT);
        return;
    }
    for (p = strchr(p, '-'); p && ci.num_ports < sizeof(ci.ports); p = strchr(p + 1, '.'))
        ci.ports[ci.num_ports++] = (uint8_t)atoi(p + 1);
    memcpy(v->data, &ci, MIN(len, sizeof(ci)));
}

static bool is_sized(unsigned long request, unsigned long base)
{
    return _IOC_TYPE(request) == _IOC_TYPE(base) && _IOC_NR(request) == _IOC_NR(base) &&
           _IOC_DIR(request) == _IOC_DIR(base);
}

/* Everything but URBs; false for an ioctl we do not know. */
bool emu_ioctl_other(EmuDevice *d, EmuClient *c, UMockdevIoctlClient *client, unsigned long request,
                     EmuReply *r)
{
    bool ok = true;
    unsigned v;

    switch (request) {
    case USBDEVFS_GET_CAPABILITIES:
        ioctl_capabilities(client, r);
        return true;
    case USBDEVFS_CONNECTINFO:
        ioctl_connectinfo(d, client, r);
        return true;
    case USBDEVFS_GET_SPEED:
        r->ret = USB_SPEED_FULL;
        return true;
    case USBDEVFS_CLAIMINTERFACE:
    case USBDEVFS_RELEASEINTERFACE:
        v = read_uint_arg(client, &ok);
        if (!ok)
            emu_reply_fail(r, EFAULT);
        else if (request == USBDEVFS_CLAIMINTERFACE)
            ioctl_claim(d, c, v, r);
        else
            ioctl_release(d, c, v, r);
        return true;
    case USBDEVFS_SETINTERFACE:
        ioctl_setinterface(d, c, client, r);
        return true;
    case USBDEVFS_SETCONFIGURATION:
        ioctl_setconfiguration(d, c, client, r);
        return true;
    case USBDEVFS_GETDRIVER:
        ioctl_getdriver(d, client, r);
        return true;
    case USBDEVFS_IOCTL:
        ioctl_ioctl(d, client, r);
        return true;
    case USBDEVFS_DISCONNECT_CLAIM:
        ioctl_disconnect_claim(d, c, client, r);
        return true;
    case USBDEVFS_RESET:
        /* The port reset: the ROM stays in DFU mode, back in dfuIDLE (DFU 1.1 A.2). */
        d->board->resets++;
        if (d->mode == EMU_MODE_DFU && d->board->model && !d->board->model_unplugged)
            dfu_model_reset(d->board->model);
        return true;
    case USBDEVFS_CLEAR_HALT:
    case USBDEVFS_RESETEP:
        v = read_uint_arg(client, &ok);
        if (!ok)
            emu_reply_fail(r, EFAULT);
        else if ((v & 0x7f) != 0 && !emu_device_endpoint(d, v))
            emu_reply_fail(r, ENOENT);
        else if (request == USBDEVFS_CLEAR_HALT)
            emu_count_control(d);
        return true;
    case USBDEVFS_DISCSIGNAL:
    case USBDEVFS_DROP_PRIVILEGES:
    case USBDEVFS_FORBID_SUSPEND:
    case USBDEVFS_ALLOW_SUSPEND:
    case USBDEVFS_WAIT_FOR_RESUME:
        return true;
    case USBDEVFS_ALLOC_STREAMS:
    case USBDEVFS_FREE_STREAMS:
        emu_reply_fail(r, EINVAL);
        return true;
    case USBDEVFS_CLAIM_PORT:
    case USBDEVFS_RELEASE_PORT:
    case USBDEVFS_HUB_PORTINFO:
        emu_reply_fail(r, ENOTTY); /* not a hub */
        return true;
    default:
        break;
    }
    if (is_sized(request, USBDEVFS_CONNINFO_EX(0))) {
        ioctl_conninfo_ex(d, client, _IOC_SIZE(request), r);
        return true;
    }
    return false;
}
