/* SPDX-License-Identifier: MIT */
#include "usb.h"

#include <errno.h>
#include <fcntl.h>
#include <libusb.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include "util.h"

/* DFU interface class triple, DFU 1.1 section 4.2.3 / 4.1.2. */
#define USB_CLASS_APP_SPECIFIC 0xfe
#define USB_SUBCLASS_DFU       0x01
#define DFU_PROTOCOL_RUNTIME   0x01
#define DFU_PROTOCOL_DFU_MODE  0x02

struct UsbBoard {
    libusb_context *ctx;
    libusb_device_handle *handle;
    int fd;
    int last_libusb_error;
    bool claimed;
    uint16_t vid, pid;
    uint8_t interface;
    UsbDfuMode mode;
    DfuFunctional functional;
    DfuTransport transport;
};

static UsbLogFn usb_log_fn;

int usb_errno_from_libusb(int e)
{
    switch (e) {
    case LIBUSB_SUCCESS:
        return 0;
    case LIBUSB_ERROR_TIMEOUT:
        return -ETIMEDOUT;
    case LIBUSB_ERROR_PIPE:
        return -EPIPE;
    case LIBUSB_ERROR_NO_DEVICE:
    case LIBUSB_ERROR_NOT_FOUND:
        return -ENODEV;
    case LIBUSB_ERROR_ACCESS:
        return -EACCES;
    case LIBUSB_ERROR_BUSY:
        return -EBUSY;
    case LIBUSB_ERROR_INVALID_PARAM:
        return -EINVAL;
    case LIBUSB_ERROR_OVERFLOW:
        return -EOVERFLOW;
    case LIBUSB_ERROR_INTERRUPTED:
        return -EINTR;
    case LIBUSB_ERROR_NO_MEM:
        return -ENOMEM;
    case LIBUSB_ERROR_NOT_SUPPORTED:
        return -EOPNOTSUPP;
    default:
        return -EIO;
    }
}

static void usb_log_cb(libusb_context *ctx, enum libusb_log_level level, const char *str)
{
    int prio = level == LIBUSB_LOG_LEVEL_ERROR     ? LOG_ERR
               : level == LIBUSB_LOG_LEVEL_WARNING ? LOG_WARNING
               : level == LIBUSB_LOG_LEVEL_INFO    ? LOG_INFO
                                                   : LOG_DEBUG;
    char line[512];
    size_t n;

    if (!usb_log_fn || !str)
        return;
    /* libusb ends its lines with a newline; our loggers add their own. */
    snprintf(line, sizeof(line), "libusb: %s", str);
    n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    usb_log_fn(prio, line);
}

int usb_global_init(UsbLogFn log_fn)
{
    int r;

    usb_log_fn = log_fn;
    /* Must precede libusb_init(): every context we create later inherits it. */
    r = libusb_set_option(NULL, LIBUSB_OPTION_NO_DEVICE_DISCOVERY);
    if (r < 0)
        return usb_errno_from_libusb(r);
    /* Warnings and errors only; LIBUSB_DEBUG in the environment still overrides. */
    libusb_set_option(NULL, LIBUSB_OPTION_LOG_LEVEL, LIBUSB_LOG_LEVEL_WARNING);
    libusb_set_log_cb(NULL, usb_log_cb, LIBUSB_LOG_CB_GLOBAL);
    return 0;
}

/* ---- DfuTransport over libusb ---- */

static int usb_control(void *userdata, uint8_t request_type, uint8_t request, uint16_t value,
                       uint16_t index, uint8_t *data, uint16_t length, unsigned timeout_ms)
{
    UsbBoard *b = userdata;
    int r;

    r = libusb_control_transfer(b->handle, request_type, request, value, index, data, length,
                                timeout_ms);
    if (r < 0) {
        b->last_libusb_error = r;
        return usb_errno_from_libusb(r);
    }
    return r;
}

static int usb_reset(void *userdata)
{
    UsbBoard *b = userdata;
    int r = libusb_reset_device(b->handle);

    if (r < 0) {
        b->last_libusb_error = r;
        /* NOT_FOUND: the board re-enumerated as something else, as a detach wants. */
        return usb_errno_from_libusb(r);
    }
    return 0;
}

static void usb_sleep_ms(void *userdata, uint32_t ms)
{
    struct timespec deadline;

    /* An absolute deadline, so a signal cannot stretch or shorten the wait. */
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += ms / 1000;
    deadline.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &deadline, NULL) == EINTR)
        ;
}

static uint64_t usb_now_ms(void *userdata)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static const char *usb_error_name(void *userdata, int err)
{
    UsbBoard *b = userdata;

    /* The name of what libusb actually said, when it is what produced err. */
    if (b->last_libusb_error < 0 && usb_errno_from_libusb(b->last_libusb_error) == err)
        return libusb_error_name(b->last_libusb_error);
    return strerrorname_np(-err);
}

/* ---- opening ---- */

/* Look through every interface for a DFU one; prefer DFU mode over run-time. */
static int usb_find_dfu(UsbBoard *b, ErrInfo *err)
{
    libusb_device *dev = libusb_get_device(b->handle);
    struct libusb_config_descriptor *config = NULL;
    int r;

    r = libusb_get_active_config_descriptor(dev, &config);
    if (r < 0)
        return err_set(err, ERR_USB_NO_DFU, "cannot read the active configuration: %s",
                       libusb_error_name(r));

    b->mode = USB_DFU_NONE;
    for (int i = 0; i < config->bNumInterfaces; i++) {
        const struct libusb_interface *itf = &config->interface[i];

        for (int a = 0; a < itf->num_altsetting; a++) {
            const struct libusb_interface_descriptor *alt = &itf->altsetting[a];
            UsbDfuMode mode;

            if (alt->bInterfaceClass != USB_CLASS_APP_SPECIFIC ||
                alt->bInterfaceSubClass != USB_SUBCLASS_DFU)
                continue;
            mode = alt->bInterfaceProtocol == DFU_PROTOCOL_DFU_MODE  ? USB_DFU_MODE
                   : alt->bInterfaceProtocol == DFU_PROTOCOL_RUNTIME ? USB_DFU_RUNTIME
                                                                     : USB_DFU_NONE;
            if (mode == USB_DFU_NONE || mode <= b->mode)
                continue;
            if (dfu_parse_functional(alt->extra, (size_t)alt->extra_length, &b->functional) < 0) {
                /* The spec requires it; a board without one gets dfu-util's defaults. */
                b->functional = (DfuFunctional){.attributes = DFU_ATTR_CAN_DNLOAD,
                                                .transfer_size = 64,
                                                .dfu_version = 0x0110};
            }
            b->mode = mode;
            b->interface = alt->bInterfaceNumber;
        }
    }
    libusb_free_config_descriptor(config);
    if (b->mode == USB_DFU_NONE)
        return err_set(err, ERR_USB_NO_DFU,
                       "no DFU interface (class 0xfe subclass 1) on %04x:%04x: is the board in "
                       "download mode?",
                       b->vid, b->pid);
    if (b->functional.transfer_size == 0)
        return err_set(err, ERR_USB_NO_DFU, "DFU functional descriptor has wTransferSize 0");
    return 0;
}

static int usb_claim(UsbBoard *b, ErrInfo *err)
{
    int r;

    /* The ROM's run-time presentation has cdc_acm bound beside us; not on our interface,
     * but detach whatever is bound there so a claim cannot fail for it. */
    libusb_set_auto_detach_kernel_driver(b->handle, 1);
    r = libusb_claim_interface(b->handle, b->interface);
    if (r < 0)
        return err_set(err, r == LIBUSB_ERROR_NO_DEVICE ? ERR_DISCONNECTED : ERR_USB_CLAIM,
                       "cannot claim DFU interface %u: %s", b->interface, libusb_error_name(r));
    b->claimed = true;
    return 0;
}

static int usb_open_fd(UsbBoard *b, const char *devnode, ErrInfo *err)
{
    struct libusb_device_descriptor desc;
    int r;

    b->fd = open(devnode, O_RDWR | O_CLOEXEC);
    if (b->fd < 0)
        return err_set(err, errno == ENOENT ? ERR_DISCONNECTED : ERR_USB_OPEN, "cannot open %s: %s",
                       devnode, strerror(errno));
    r = libusb_init(&b->ctx);
    if (r < 0)
        return err_set(err, ERR_USB_OPEN, "libusb_init: %s", libusb_error_name(r));
    r = libusb_wrap_sys_device(b->ctx, (intptr_t)b->fd, &b->handle);
    if (r < 0)
        return err_set(err, r == LIBUSB_ERROR_NO_DEVICE ? ERR_DISCONNECTED : ERR_USB_OPEN,
                       "cannot use %s: %s", devnode, libusb_error_name(r));
    r = libusb_get_device_descriptor(libusb_get_device(b->handle), &desc);
    if (r < 0)
        return err_set(err, ERR_USB_OPEN, "cannot read the device descriptor of %s: %s", devnode,
                       libusb_error_name(r));
    b->vid = desc.idVendor;
    b->pid = desc.idProduct;
    return 0;
}

int usb_board_open(const char *devnode, UsbBoard **ret, ErrInfo *err)
{
    UsbBoard *b;
    int r;

    b = calloc(1, sizeof(*b));
    if (!b)
        return -ENOMEM;
    b->fd = -1;
    b->transport = (DfuTransport){
            .userdata = b,
            .control = usb_control,
            .reset = usb_reset,
            .sleep_ms = usb_sleep_ms,
            .now_ms = usb_now_ms,
            .error_name = usb_error_name,
    };

    r = usb_open_fd(b, devnode, err);
    if (r >= 0)
        r = usb_find_dfu(b, err);
    if (r >= 0)
        r = usb_claim(b, err);
    if (r < 0) {
        usb_board_close(b);
        return r;
    }
    *ret = b;
    return 0;
}

UsbBoard *usb_board_close(UsbBoard *b)
{
    if (!b)
        return NULL;
    if (b->claimed)
        libusb_release_interface(b->handle, b->interface);
    if (b->handle)
        libusb_close(b->handle);
    if (b->ctx)
        libusb_exit(b->ctx);
    /* libusb_close() does not close a wrapped fd: it is ours. */
    closep(&b->fd);
    free(b);
    return NULL;
}

uint16_t usb_board_vid(const UsbBoard *b)
{
    return b->vid;
}

uint16_t usb_board_pid(const UsbBoard *b)
{
    return b->pid;
}

UsbDfuMode usb_board_mode(const UsbBoard *b)
{
    return b->mode;
}

const DfuTransport *usb_board_transport(UsbBoard *b)
{
    return &b->transport;
}

void usb_board_session(UsbBoard *b, const DfuConfig *config, DfuSession *ret)
{
    *ret = (DfuSession){
            .transport = &b->transport,
            .interface = b->interface,
            .functional = b->functional,
            .config = *config,
    };
}
