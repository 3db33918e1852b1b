/* SPDX-License-Identifier: MIT */
#include "dfu.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

/*
 * The host side of a DFU 1.1 download, after dfu-util 0.11 (src/dfu_load.c) for
 * the request sequence and fwupd (plugins/dfu) for bounded waits and error text.
 * Everything goes through DfuTransport; time only through sleep_ms()/now_ms().
 */

#define DFU_STATUS_SIZE 6
#define SLEEP_SLICE_MS  100 /* a cancel is seen within one slice */
/*
 * A board that stays busy but asks for bwPollTimeout 0 is polled again after
 * 1 ms rather than in a hot loop (which on a virtual clock would never end).
 * Manifestation is slower, so a zero there means 100 ms; dfu-util sleeps a
 * flat 1 s, fwupd bwPollTimeout + 1 s. With manifest_max_polls = 200 that
 * still bounds a silent board at 20 s.
 */
#define BUSY_POLL_FLOOR_MS     1
#define MANIFEST_POLL_FLOOR_MS 100
#define DETACH_TIMEOUT_MS      1000 /* wValue when wDetachTimeOut is 0, as dfu-util */

#define MIN(a, b) ((a) < (b) ? (a) : (b))

/* bState names as DFU 1.1 section 6.1.2 spells them. */
static const char *const dfu_state_table[] = {
        [DFU_STATE_APP_IDLE] = "appIDLE",
        [DFU_STATE_APP_DETACH] = "appDETACH",
        [DFU_STATE_DFU_IDLE] = "dfuIDLE",
        [DFU_STATE_DNLOAD_SYNC] = "dfuDNLOAD-SYNC",
        [DFU_STATE_DNBUSY] = "dfuDNBUSY",
        [DFU_STATE_DNLOAD_IDLE] = "dfuDNLOAD-IDLE",
        [DFU_STATE_MANIFEST_SYNC] = "dfuMANIFEST-SYNC",
        [DFU_STATE_MANIFEST] = "dfuMANIFEST",
        [DFU_STATE_MANIFEST_WAIT_RESET] = "dfuMANIFEST-WAIT-RESET",
        [DFU_STATE_UPLOAD_IDLE] = "dfuUPLOAD-IDLE",
        [DFU_STATE_ERROR] = "dfuERROR",
};
DEFINE_STRING_TABLE_TO_STRING(dfu_state, DfuState, _DFU_STATE_MAX)

/* bStatus names, DFU 1.1 section 6.1.2. */
static const char *const dfu_status_table[] = {
        [DFU_STATUS_OK] = "OK",
        [DFU_STATUS_ERR_TARGET] = "errTARGET",
        [DFU_STATUS_ERR_FILE] = "errFILE",
        [DFU_STATUS_ERR_WRITE] = "errWRITE",
        [DFU_STATUS_ERR_ERASE] = "errERASE",
        [DFU_STATUS_ERR_CHECK_ERASED] = "errCHECK_ERASED",
        [DFU_STATUS_ERR_PROG] = "errPROG",
        [DFU_STATUS_ERR_VERIFY] = "errVERIFY",
        [DFU_STATUS_ERR_ADDRESS] = "errADDRESS",
        [DFU_STATUS_ERR_NOTDONE] = "errNOTDONE",
        [DFU_STATUS_ERR_FIRMWARE] = "errFIRMWARE",
        [DFU_STATUS_ERR_VENDOR] = "errVENDOR",
        [DFU_STATUS_ERR_USBR] = "errUSBR",
        [DFU_STATUS_ERR_POR] = "errPOR",
        [DFU_STATUS_ERR_UNKNOWN] = "errUNKNOWN",
        [DFU_STATUS_ERR_STALLEDPKT] = "errSTALLEDPKT",
};
DEFINE_STRING_TABLE_TO_STRING(dfu_status, DfuStatus, _DFU_STATUS_MAX)

static const char *const dfu_phase_table[] = {
        [DFU_PHASE_DETACH] = "detach",
        [DFU_PHASE_PREPARE] = "prepare",
        [DFU_PHASE_DOWNLOAD] = "download",
        [DFU_PHASE_MANIFEST] = "manifest",
};
DEFINE_STRING_TABLE_TO_STRING(dfu_phase, DfuPhase, _DFU_PHASE_MAX)

void dfu_config_init(DfuConfig *c)
{
    *c = (DfuConfig){
            /* The ROM erases an entry's whole region when its first byte arrives
             * and answers nothing meanwhile: dfu-util's 5 s is what fails. */
            .transfer_timeout_ms = 30000,
            .dnbusy_timeout_ms = 120000, /* fwupd */
            .manifest_max_polls = 200,   /* fwupd */
    };
}

static uint16_t le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

int dfu_parse_functional(const uint8_t *extra, size_t len, DfuFunctional *ret)
{
    size_t i = 0;

    if (!extra && len > 0)
        return -EINVAL;
    /* A chain of descriptors: bLength, bDescriptorType, ... (USB 2.0 9.5). */
    while (i < len) {
        size_t left = len - i;
        uint8_t blen = extra[i];

        if (left < 2 || blen < 2 || blen > left)
            return -EINVAL; /* truncated, or a zero length that would never advance */
        if (extra[i + 1] == DFU_DESC_FUNCTIONAL) {
            /* DFU 1.0 devices send 7 bytes, without bcdDFUVersion. */
            if (blen < 7)
                return -EINVAL;
            *ret = (DfuFunctional){
                    .attributes = extra[i + 2],
                    .detach_timeout_ms = le16(extra + i + 3),
                    .transfer_size = le16(extra + i + 5),
                    .dfu_version = blen >= 9 ? le16(extra + i + 7) : 0x0100,
            };
            return 0;
        }
        i += blen;
    }
    return -ENOENT;
}

/* ---- one download ---- */

typedef struct Dl {
    const DfuSession *s;
    const DfuTransport *t;
    DfuReport *rep;
    ErrInfo *err;
    uint64_t total;  /* payload bytes */
    int short_reply; /* bytes of a short GETSTATUS answer, -1 when none */
} Dl;

static const char *request_name(uint8_t req)
{
    static const char *const names[] = {
            [DFU_REQ_DETACH] = "DETACH",       [DFU_REQ_DNLOAD] = "DNLOAD",
            [DFU_REQ_UPLOAD] = "UPLOAD",       [DFU_REQ_GETSTATUS] = "GETSTATUS",
            [DFU_REQ_CLRSTATUS] = "CLRSTATUS", [DFU_REQ_GETSTATE] = "GETSTATE",
            [DFU_REQ_ABORT] = "ABORT",
    };
    return req < sizeof(names) / sizeof(names[0]) ? names[req] : "request";
}

static const char *error_name(const DfuTransport *t, int r, char *buf, size_t n)
{
    const char *name = NULL;

    if (t->error_name)
        name = t->error_name(t->userdata, r);
    if (!name)
        name = strerrorname_np(-r);
    if (name)
        return name;
    snprintf(buf, n, "errno %d", -r);
    return buf;
}

static const char *state_name(int state, char *buf, size_t n)
{
    const char *name = dfu_state_to_string((DfuState)state);

    if (name)
        return name;
    snprintf(buf, n, "state %d", state);
    return buf;
}

static const char *status_name(int status, char *buf, size_t n)
{
    const char *name = dfu_status_to_string((DfuStatus)status);

    if (name)
        return name;
    snprintf(buf, n, "status 0x%02x", (unsigned)status);
    return buf;
}

/* "during download at 37% (block 412, offset 0x6700)" */
static const char *where(const Dl *d, char *buf, size_t n)
{
    const DfuReport *r = d->rep;
    uint64_t pct = d->total ? r->offset * 100 / d->total : 0;

    if (r->phase == DFU_PHASE_DETACH || r->phase == DFU_PHASE_PREPARE)
        snprintf(buf, n, "during %s", dfu_phase_to_string(r->phase));
    else
        snprintf(buf, n, "during %s at %" PRIu64 "%% (block %" PRIu32 ", offset 0x%" PRIx64 ")",
                 dfu_phase_to_string(r->phase), pct, r->block, r->offset);
    return buf;
}

/* A request failed in the transport (or answered short): name it, map it. */
static int fail_request(Dl *d, uint8_t req, int r)
{
    char w[96], e[24];
    const char *rq = request_name(req), *en;

    if (d->short_reply >= 0)
        return err_set(d->err, ERR_USB_TRANSFER, "short %s reply (%d of %d bytes) %s", rq,
                       d->short_reply, DFU_STATUS_SIZE, where(d, w, sizeof(w)));
    en = error_name(d->t, r, e, sizeof(e));
    switch (r) {
    case -ENODEV:
        return err_set(d->err, ERR_DISCONNECTED, "board disconnected on %s %s: %s", rq,
                       where(d, w, sizeof(w)), en);
    case -ETIMEDOUT:
        return err_set(d->err, ERR_USB_TIMEOUT, "%s timed out after %u ms %s: %s", rq,
                       d->s->config.transfer_timeout_ms, where(d, w, sizeof(w)), en);
    case -EPIPE:
        return err_set(d->err, ERR_USB_STALL, "board stalled %s %s: %s", rq, where(d, w, sizeof(w)),
                       en);
    default:
        return err_set(d->err, ERR_USB_TRANSFER, "%s failed %s: %s", rq, where(d, w, sizeof(w)),
                       en);
    }
}

static int fail_status(Dl *d, const DfuStatusReply *st)
{
    char w[96], a[24], b[24];

    return err_set(d->err, ERR_DFU_STATUS, "board reported %s (%s) %s",
                   status_name(st->status, a, sizeof(a)), state_name(st->state, b, sizeof(b)),
                   where(d, w, sizeof(w)));
}

static int fail_state(Dl *d, const DfuStatusReply *st, const char *expected)
{
    char w[96], a[24];

    return err_set(d->err, ERR_DFU_STATE, "board is in %s, expected %s, %s",
                   state_name(st->state, a, sizeof(a)), expected, where(d, w, sizeof(w)));
}

static bool cancelled(const Dl *d)
{
    return d->s->cancel && atomic_load(d->s->cancel);
}

/*
 * Leave the board in dfuIDLE where possible, so the next job starts clean.
 * ABORT is refused while the board is busy (DFU 1.1 A.2.5: a STALL, and
 * dfuERROR); a CLRSTATUS then brings it back. Best effort: a board that is
 * gone or wedged keeps its state, and the next job's prepare step deals with it.
 */
static int fail_cancelled(Dl *d)
{
    const DfuTransport *t = d->t;
    unsigned timeout = d->s->config.transfer_timeout_ms;
    uint8_t st[DFU_STATUS_SIZE];
    char w[96];

    (void)t->control(t->userdata, DFU_RT_OUT, DFU_REQ_ABORT, 0, d->s->interface, NULL, 0, timeout);
    if (t->control(t->userdata, DFU_RT_IN, DFU_REQ_GETSTATUS, 0, d->s->interface, st, sizeof(st),
                   timeout) == DFU_STATUS_SIZE &&
        st[4] == DFU_STATE_ERROR)
        (void)t->control(t->userdata, DFU_RT_OUT, DFU_REQ_CLRSTATUS, 0, d->s->interface, NULL, 0,
                         timeout);
    return err_set(d->err, ERR_CANCELLED, "cancelled %s", where(d, w, sizeof(w)));
}

static int control(Dl *d, uint8_t type, uint8_t req, uint16_t value, uint8_t *data, uint16_t length)
{
    int r = d->t->control(d->t->userdata, type, req, value, d->s->interface, data, length,
                          d->s->config.transfer_timeout_ms);

    if (r < 0)
        d->rep->transport_error = r;
    return r;
}

/* GETSTATUS, DFU 1.1 section 6.1.2. 0, or -errno with nothing reported yet. */
static int get_status_raw(Dl *d, DfuStatusReply *ret)
{
    uint8_t buf[DFU_STATUS_SIZE] = {0};
    int r = control(d, DFU_RT_IN, DFU_REQ_GETSTATUS, 0, buf, sizeof(buf));

    if (r < 0)
        return r;
    if (r < DFU_STATUS_SIZE) {
        d->short_reply = r;
        d->rep->transport_error = -EPROTO;
        return -EPROTO;
    }
    *ret = (DfuStatusReply){
            .status = buf[0],
            .poll_timeout = buf[1] | (uint32_t)buf[2] << 8 | (uint32_t)buf[3] << 16,
            .state = buf[4],
            .string_index = buf[5],
    };
    d->rep->dfu_status = ret->status;
    d->rep->dfu_state = ret->state;
    return 0;
}

static int get_status(Dl *d, DfuStatusReply *ret)
{
    int r = get_status_raw(d, ret);

    return r < 0 ? fail_request(d, DFU_REQ_GETSTATUS, r) : 0;
}

/*
 * Sleep what the board asked, exactly. With a cancel flag, in slices, so a
 * cancel during a long erase wait is seen within SLEEP_SLICE_MS.
 */
static int sleep_asked(Dl *d, uint32_t ms)
{
    if (!d->s->cancel) {
        if (ms > 0)
            d->t->sleep_ms(d->t->userdata, ms);
        return 0;
    }
    while (ms > 0) {
        uint32_t slice = MIN(ms, (uint32_t)SLEEP_SLICE_MS);

        if (cancelled(d))
            return -ECANCELED;
        d->t->sleep_ms(d->t->userdata, slice);
        ms -= slice;
    }
    return cancelled(d) ? -ECANCELED : 0;
}

/*
 * A STALL on DNLOAD: ask the board why while it is still there (fwupd does
 * the same). A reason other than errSTALLEDPKT is the better error code.
 */
static int fail_stalled_dnload(Dl *d, int r)
{
    char w[96], a[24], b[24], e[24];
    DfuStatusReply st;

    if (get_status_raw(d, &st) < 0 || st.status == DFU_STATUS_OK) {
        d->short_reply = -1;
        d->rep->transport_error = r;
        return fail_request(d, DFU_REQ_DNLOAD, r);
    }
    d->rep->transport_error = r;
    return err_set(d->err, st.status == DFU_STATUS_ERR_STALLEDPKT ? ERR_USB_STALL : ERR_DFU_STATUS,
                   "board stalled DNLOAD (%s) and reported %s (%s) %s",
                   error_name(d->t, r, e, sizeof(e)), status_name(st.status, a, sizeof(a)),
                   state_name(st.state, b, sizeof(b)), where(d, w, sizeof(w)));
}

/* ---- prepare: bring the board to dfuIDLE, as dfu-util does ---- */

/* The request that leaves this state for dfuIDLE; 0 when idle, -1 when none does. */
static int recovery_request(uint8_t state)
{
    switch ((DfuState)state) {
    case DFU_STATE_DFU_IDLE:
        return 0;
    case DFU_STATE_ERROR:
        return DFU_REQ_CLRSTATUS;
    case DFU_STATE_DNLOAD_IDLE:
    case DFU_STATE_UPLOAD_IDLE:
        return DFU_REQ_ABORT;
    case DFU_STATE_APP_IDLE:
    case DFU_STATE_APP_DETACH:
    case DFU_STATE_DNLOAD_SYNC:
    case DFU_STATE_DNBUSY:
    case DFU_STATE_MANIFEST_SYNC:
    case DFU_STATE_MANIFEST:
    case DFU_STATE_MANIFEST_WAIT_RESET:
    case _DFU_STATE_MAX:
        break;
    }
    return -1;
}

static int prepare(Dl *d)
{
    DfuStatusReply st;
    int req, r;

    d->rep->phase = DFU_PHASE_PREPARE;
    r = get_status(d, &st);
    if (r < 0)
        return r;
    req = recovery_request(st.state);
    if (req == 0)
        return 0;
    if (req < 0)
        return fail_state(d, &st, "dfuIDLE, dfuERROR, dfuDNLOAD-IDLE or dfuUPLOAD-IDLE");
    r = control(d, DFU_RT_OUT, (uint8_t)req, 0, NULL, 0);
    if (r < 0)
        return fail_request(d, (uint8_t)req, r);
    /* dfu-util trusts the request; one more GETSTATUS makes sure. */
    r = get_status(d, &st);
    if (r < 0)
        return r;
    if (st.state != DFU_STATE_DFU_IDLE)
        return fail_state(d, &st, "dfuIDLE");
    return 0;
}

/* ---- download ---- */

/*
 * After a DNLOAD, poll GETSTATUS until dfuDNLOAD-IDLE, sleeping exactly the
 * bwPollTimeout each answer asks for (DFU 1.1 section 6.1.2), with the whole
 * busy time of one block bounded by dnbusy_timeout_ms.
 */
static int wait_dnload_idle(Dl *d)
{
    uint64_t start = d->t->now_ms(d->t->userdata);

    for (;;) {
        DfuStatusReply st;
        uint64_t busy;
        int r = get_status(d, &st);

        if (r < 0)
            return r;
        if (st.status != DFU_STATUS_OK || st.state == DFU_STATE_ERROR)
            return fail_status(d, &st);
        if (st.state == DFU_STATE_DNLOAD_IDLE)
            return 0;
        if (st.state != DFU_STATE_DNBUSY && st.state != DFU_STATE_DNLOAD_SYNC)
            return fail_state(d, &st, "dfuDNBUSY or dfuDNLOAD-IDLE");
        d->rep->busy_polls++;
        busy = d->t->now_ms(d->t->userdata) - start;
        if (busy + st.poll_timeout > d->s->config.dnbusy_timeout_ms) {
            char w[96];
            return err_set(d->err, ERR_DNBUSY_TIMEOUT,
                           "board still busy after %" PRIu64 " ms (asks %" PRIu32
                           " ms more, limit %u ms) %s",
                           busy, st.poll_timeout, d->s->config.dnbusy_timeout_ms,
                           where(d, w, sizeof(w)));
        }
        r = sleep_asked(d, st.poll_timeout > 0 ? st.poll_timeout : BUSY_POLL_FLOOR_MS);
        if (r < 0)
            return fail_cancelled(d);
    }
}

static int send_block(Dl *d, const uint8_t *data, uint16_t n)
{
    /* wBlockNum counts from 0 and wraps at 0xffff (DFU 1.1 section 6.1.1). */
    uint16_t num = (uint16_t)(d->rep->block & 0xffff);
    /* An OUT transfer only reads data; the transport's signature is shared with IN. */
    int r = control(d, DFU_RT_OUT, DFU_REQ_DNLOAD, num, (uint8_t *)data, n);

    if (r == -EPIPE)
        return fail_stalled_dnload(d, r);
    if (r < 0)
        return fail_request(d, DFU_REQ_DNLOAD, r);
    if (r != n) {
        char w[96];
        return err_set(d->err, ERR_USB_TRANSFER, "board took %d of %u bytes of DNLOAD %s", r, n,
                       where(d, w, sizeof(w)));
    }
    return wait_dnload_idle(d);
}

static int download_blocks(Dl *d, const uint8_t *payload, size_t size)
{
    uint16_t ts = d->s->functional.transfer_size;

    d->rep->phase = DFU_PHASE_DOWNLOAD;
    while (d->rep->offset < size) {
        uint16_t n = (uint16_t)MIN((uint64_t)ts, size - d->rep->offset);
        int r;

        if (cancelled(d))
            return fail_cancelled(d);
        r = send_block(d, payload + d->rep->offset, n);
        if (r < 0)
            return r;
        d->rep->blocks_sent++;
        d->rep->block++;
        d->rep->offset += n;
        if (d->s->progress)
            d->s->progress(d->s->progress_userdata, d->rep->offset, size);
    }
    return 0;
}

/* ---- manifest ---- */

static int reset_after_manifest(Dl *d)
{
    char w[96], e[24];
    int r;

    if (!d->t->reset)
        return 0;
    r = d->t->reset(d->t->userdata);
    if (r >= 0 || r == -ENODEV) /* gone to re-enumerate: what a reset is for */
        return 0;
    d->rep->transport_error = r;
    return err_set(d->err, ERR_USB_TRANSFER, "USB reset in dfuMANIFEST-WAIT-RESET failed %s: %s",
                   where(d, w, sizeof(w)), error_name(d->t, r, e, sizeof(e)));
}

/* One manifest GETSTATUS answer: 0 done, 1 poll again, or -errno. */
static int manifest_step(Dl *d, const DfuStatusReply *st, unsigned polls)
{
    unsigned max = d->s->config.manifest_max_polls ? d->s->config.manifest_max_polls : 1;

    if (st->status != DFU_STATUS_OK)
        return fail_status(d, st);
    switch ((DfuState)st->state) {
    case DFU_STATE_DFU_IDLE: /* the ESP ROM: manifestation tolerant, back to dfuIDLE */
        return 0;
    case DFU_STATE_MANIFEST_WAIT_RESET:
        return reset_after_manifest(d);
    case DFU_STATE_MANIFEST_SYNC:
    case DFU_STATE_MANIFEST:
        if (polls >= max) {
            char w[96];
            return err_set(d->err, ERR_MANIFEST_TIMEOUT,
                           "board still manifesting after %u status polls %s", polls,
                           where(d, w, sizeof(w)));
        }
        d->t->sleep_ms(d->t->userdata,
                       st->poll_timeout > 0 ? st->poll_timeout : MANIFEST_POLL_FLOOR_MS);
        return 1;
    case DFU_STATE_APP_IDLE:
    case DFU_STATE_APP_DETACH:
    case DFU_STATE_DNLOAD_SYNC:
    case DFU_STATE_DNBUSY:
    case DFU_STATE_DNLOAD_IDLE:
    case DFU_STATE_UPLOAD_IDLE:
    case DFU_STATE_ERROR:
    case _DFU_STATE_MAX:
        break;
    }
    return fail_state(d, st, "dfuMANIFEST or dfuIDLE");
}

/*
 * The zero-length DNLOAD ends the download (DFU 1.1 section 6.1.1), then
 * GETSTATUS drives manifestation. Not cancellable: the image is committed.
 *
 * A board that vanishes (ENODEV) after the zero-length DNLOAD went through
 * counts as success only when it is not manifestation tolerant: DFU 1.1
 * section 7 lets such a device stop answering once it manifests, and fwupd
 * stops polling it there too. A tolerant board (the ESP ROM answers dfuIDLE)
 * that vanishes has not confirmed its image: ERR_DISCONNECTED.
 */
static int manifest(Dl *d)
{
    bool tolerant = d->s->functional.attributes & DFU_ATTR_MANIFEST_TOLERANT;
    uint16_t num = (uint16_t)(d->rep->block & 0xffff);
    int r;

    d->rep->phase = DFU_PHASE_MANIFEST;
    r = control(d, DFU_RT_OUT, DFU_REQ_DNLOAD, num, NULL, 0);
    if (r == -EPIPE)
        return fail_stalled_dnload(d, r);
    if (r < 0)
        return fail_request(d, DFU_REQ_DNLOAD, r);
    for (unsigned polls = 1;; polls++) {
        DfuStatusReply st;

        r = get_status_raw(d, &st);
        if (r == -ENODEV && !tolerant)
            return 0;
        if (r < 0)
            return fail_request(d, DFU_REQ_GETSTATUS, r);
        r = manifest_step(d, &st, polls);
        if (r <= 0)
            return r;
    }
}

static bool transport_usable(const DfuTransport *t)
{
    return t && t->control && t->sleep_ms && t->now_ms;
}

int dfu_download(const DfuSession *s, const uint8_t *payload, size_t size, DfuReport *report,
                 ErrInfo *err)
{
    DfuReport local;
    Dl d;
    int r;

    if (!s || !transport_usable(s->transport) || (!payload && size > 0))
        return -EINVAL;
    d = (Dl){
            .s = s,
            .t = s->transport,
            .rep = report ? report : &local,
            .err = err,
            .total = size,
            .short_reply = -1,
    };
    *d.rep = (DfuReport){.phase = DFU_PHASE_PREPARE, .dfu_status = -1, .dfu_state = -1};
    if (size == 0)
        return err_set(err, ERR_IMAGE_EMPTY, "nothing to download");
    if (s->functional.transfer_size == 0)
        return err_set(err, ERR_USB_NO_DFU, "DFU functional descriptor has wTransferSize 0");
    r = prepare(&d);
    if (r < 0)
        return r;
    r = download_blocks(&d, payload, size);
    if (r < 0)
        return r;
    return manifest(&d);
}

/* ---- detach ---- */

/* The ROM answers DETACH with a STALL or an I/O error and re-enumerates anyway. */
static bool detach_error_expected(int r)
{
    return r == -EPIPE || r == -EIO || r == -EPROTO || r == -ENODEV;
}

int dfu_detach(const DfuSession *s, ErrInfo *err)
{
    DfuReport rep = {.phase = DFU_PHASE_DETACH, .dfu_status = -1, .dfu_state = -1};
    Dl d = {.s = s, .rep = &rep, .err = err, .short_reply = -1};
    uint16_t timeout;
    char e[24];
    int r;

    if (!s || !transport_usable(s->transport))
        return -EINVAL;
    d.t = s->transport;
    timeout = s->functional.detach_timeout_ms ? s->functional.detach_timeout_ms : DETACH_TIMEOUT_MS;
    r = control(&d, DFU_RT_OUT, DFU_REQ_DETACH, timeout, NULL, 0);
    if (r < 0 && !detach_error_expected(r))
        return err_set(err, ERR_DETACH, "DETACH failed: %s", error_name(d.t, r, e, sizeof(e)));
    /* bitWillDetach, or already gone: the board re-enumerates by itself. */
    if ((s->functional.attributes & DFU_ATTR_WILL_DETACH) || r == -ENODEV)
        return 1;
    if (!d.t->reset)
        return 0;
    r = d.t->reset(d.t->userdata);
    if (r < 0 && r != -ENODEV)
        return err_set(err, ERR_DETACH, "USB reset after DETACH failed: %s",
                       error_name(d.t, r, e, sizeof(e)));
    return 0;
}
