/* SPDX-License-Identifier: MIT */
#include "dfu-model.h"

#include <stdlib.h>
#include <string.h>

#include "dfu.h"   /* DfuState, DfuStatus, request numbers */
#include "image.h" /* image_check_archive(): the MD5 check the ROM makes */

/*
 * The ESP ROM's DFU-mode interface as a DFU 1.1 state machine (Appendix A.2),
 * with the ROM's timing and faults on demand. Where the spec and the ROM's
 * unknowns leave a choice, the comment at that place says which one this is.
 */

#define MODEL_MAX_PAYLOAD (256u * 1024u * 1024u)
#define CPIO_HEADER_SIZE  110u
#define CPIO_NAME_MAX     4096u /* anything longer is garbage, not an ESP image */
#define DFUINFO_RECORD    88u   /* u32 address, u32 flags, char name[64], u8 md5[16] */
#define POLL_TIMEOUT_MAX  0xffffffu

/*
 * Where the CPIO newc walk stands in the bytes received so far: the ROM erases
 * an entry's flash region when the entry's first data byte arrives.
 */
typedef struct CpioWalk {
    uint64_t next;     /* offset of the next header */
    unsigned entries;  /* entries whose data start has been passed */
    bool stopped;      /* trailer or garbage: nothing more to find */
    bool have_info;    /* dfuinfo0.dat seen as the first entry */
    uint64_t info_off; /* its data */
    uint32_t info_size;
} CpioWalk;

struct DfuModel {
    DfuModelConfig c;
    DfuModelStats st;
    DfuState state;
    DfuStatus status;
    bool unplugged;
    bool hung;         /* a hang fault fired: every request hangs until a reset */
    bool hang_pending; /* the next GETSTATUS hangs */
    bool stuck;        /* busy_at_block fired: dfuDNBUSY for good */
    bool block_done;   /* the busy time of the last block has passed */
    bool armed;        /* faults fire in this attempt */
    bool deadline_set; /* a bwPollTimeout was reported and not yet polled for */
    uint64_t deadline; /* when the reported bwPollTimeout runs out */
    DfuStatus pending; /* what the next GETSTATUS in dfuDNLOAD-SYNC reports */
    uint32_t pending_delay;
    uint32_t block; /* next block of this attempt, counted from 0, unwrapped */
    uint32_t manifest_count;
    uint8_t *buf; /* this attempt's bytes */
    size_t len, cap;
    uint8_t *last; /* the last completed download */
    size_t last_len;
    CpioWalk walk;
};

/* One request, as dfu_model_control() got it. */
typedef struct Req {
    uint64_t now;
    uint8_t request;
    uint16_t value;
    uint8_t *data;
    uint16_t length;
    uint16_t *reply_len;
    uint32_t *delay_ms;
} Req;

void dfu_model_config_init(DfuModelConfig *c)
{
    /*
     * The ROM reports wTransferSize 64 (esp32.com users' dfu-util logs). Its
     * bwPollTimeout and erase speed are unknown: 5 ms per block, and 200 ms for
     * an entry's erase (a few 64 KiB blocks); tests set their own.
     */
    *c = (DfuModelConfig){
            .transfer_size = 64,
            .poll_timeout_ms = 5,
            .erase_ms = 200,
            .max_payload = 0,
            .faults =
                    {
                            .error_at_block = -1,
                            .error_status = DFU_STATUS_ERR_WRITE,
                            .stall_at_block = -1,
                            .hang_at_block = -1,
                            .unplug_at_block = -1,
                            .fault_attempts = 0,
                            .busy_at_block = -1,
                    },
            .manifest_polls = 0,
            .manifest_wait_reset = false,
            .runtime = false,
    };
}

DfuModel *dfu_model_new(const DfuModelConfig *c)
{
    DfuModel *m = calloc(1, sizeof(*m));

    if (!m)
        return NULL;
    if (c)
        m->c = *c;
    else
        dfu_model_config_init(&m->c);
    if (m->c.max_payload == 0 || m->c.max_payload > MODEL_MAX_PAYLOAD)
        m->c.max_payload = MODEL_MAX_PAYLOAD;
    m->state = m->c.runtime ? DFU_STATE_APP_IDLE : DFU_STATE_DFU_IDLE;
    m->status = DFU_STATUS_OK;
    return m;
}

DfuModel *dfu_model_free(DfuModel *m)
{
    if (m) {
        free(m->buf);
        free(m->last);
        free(m);
    }
    return NULL;
}

const uint8_t *dfu_model_received(const DfuModel *m, size_t *len)
{
    *len = m->last_len;
    return m->last;
}

void dfu_model_stats(const DfuModel *m, DfuModelStats *ret)
{
    *ret = m->st;
    ret->state = (uint8_t)m->state;
    ret->status = (uint8_t)m->status;
}

/* ---- the current attempt ---- */

static void drop_attempt(DfuModel *m)
{
    m->len = 0;
    m->walk = (CpioWalk){0};
    m->block = 0;
    m->pending = DFU_STATUS_OK;
    m->pending_delay = 0;
    m->hang_pending = m->stuck = m->block_done = false;
    m->deadline_set = false;
}

/* An attempt is a download starting: DNLOAD with data from dfuIDLE. */
static void start_attempt(DfuModel *m)
{
    drop_attempt(m);
    m->st.attempts++;
    m->armed = m->c.faults.fault_attempts == 0 || m->st.attempts <= m->c.faults.fault_attempts;
}

static bool fires(const DfuModel *m, int at_block)
{
    return m->armed && at_block >= 0 && (uint32_t)at_block == m->block;
}

void dfu_model_reset(DfuModel *m)
{
    if (!m || m->unplugged)
        return;
    m->st.resets++;
    m->hung = false;
    drop_attempt(m);
    m->status = DFU_STATUS_OK;
    /* DFU 1.1 A.2.1: a USB reset in appIDLE (no DETACH) keeps the application. */
    if (m->state != DFU_STATE_APP_IDLE)
        m->state = DFU_STATE_DFU_IDLE;
}

static bool append(DfuModel *m, const uint8_t *data, size_t n)
{
    if (n > m->c.max_payload - m->len)
        return false;
    if (m->len + n > m->cap) {
        size_t cap = m->cap ? m->cap : 4096;
        uint8_t *p;

        while (cap < m->len + n)
            cap *= 2;
        if (cap > m->c.max_payload)
            cap = m->c.max_payload;
        p = realloc(m->buf, cap);
        if (!p)
            return false;
        m->buf = p;
        m->cap = cap;
    }
    memcpy(m->buf + m->len, data, n);
    m->len += n;
    return true;
}

/* ---- CPIO walk: which entries' first data bytes arrived ---- */

static uint32_t le32(const uint8_t *p)
{
    return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int hex_digit(uint8_t ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

static bool hex8(const uint8_t *p, uint32_t *ret)
{
    uint32_t v = 0;

    for (int i = 0; i < 8; i++) {
        int d = hex_digit(p[i]);

        if (d < 0)
            return false;
        v = v << 4 | (uint32_t)d;
    }
    *ret = v;
    return true;
}

static uint64_t align4(uint64_t v)
{
    return (v + 3) & ~(uint64_t)3;
}

/*
 * Does the ROM erase for this entry? Only for entries dfuinfo0.dat lists as
 * flash content: flash_params.dat (address 0, flags 0x1c) is PARAM|NOERASE.
 */
static bool entry_erases(const DfuModel *m, const char *name)
{
    const CpioWalk *w = &m->walk;

    if (!w->have_info || w->info_off + w->info_size > m->len)
        return false;
    for (uint32_t i = 0; i + DFUINFO_RECORD <= w->info_size; i += DFUINFO_RECORD) {
        const uint8_t *rec = m->buf + w->info_off + i;
        uint32_t flags = le32(rec + 4);

        if (strnlen((const char *)rec + 8, 64) < 64 && strcmp((const char *)rec + 8, name) == 0)
            return !(flags & (IMAGE_FLAG_PARAM | IMAGE_FLAG_NOERASE));
    }
    return false;
}

/*
 * Parse the header at w->next once it and its name have arrived (newc: "070701",
 * 13 fields of 8 hex digits; filesize at 54, namesize at 94). 1: *name, *data and
 * *size describe the entry; 0: wait for more bytes; -1: garbage or trailer, stop.
 */
static int cpio_header(const DfuModel *m, const char **name, uint64_t *data, uint32_t *size)
{
    uint64_t h = m->walk.next;
    uint32_t namesize;
    const uint8_t *p;

    if (h > m->len || m->len - h < CPIO_HEADER_SIZE)
        return 0;
    p = m->buf + h;
    if (memcmp(p, "070701", 6) != 0 || !hex8(p + 54, size) || !hex8(p + 94, &namesize))
        return -1;
    if (namesize == 0 || namesize > CPIO_NAME_MAX)
        return -1;
    if (m->len - h - CPIO_HEADER_SIZE < namesize)
        return 0;
    if (p[CPIO_HEADER_SIZE + namesize - 1] != 0)
        return -1;
    *name = (const char *)p + CPIO_HEADER_SIZE;
    if (strcmp(*name, "TRAILER!!!") == 0)
        return -1;
    *data = align4(h + CPIO_HEADER_SIZE + namesize);
    return 1;
}

/* Called after each block is appended: how many erases its bytes start. */
static unsigned cpio_walk(DfuModel *m)
{
    CpioWalk *w = &m->walk;
    unsigned erases = 0;

    while (!w->stopped) {
        const char *name;
        uint64_t data;
        uint32_t size;
        int r = cpio_header(m, &name, &data, &size);

        if (r < 0)
            w->stopped = true;
        if (r <= 0)
            break;
        if (size > 0 && data >= m->len)
            break; /* the first data byte comes in a later block */
        if (w->entries == 0 && strcmp(name, "dfuinfo0.dat") == 0) {
            w->have_info = true;
            w->info_off = data;
            w->info_size = size;
        } else if (size > 0 && entry_erases(m, name)) {
            erases++;
        }
        w->entries++;
        w->next = align4(data + size);
    }
    return erases;
}

/* ---- replies ---- */

/* A STALL. In DFU mode a request the state does not allow also means dfuERROR
 * with errSTALLEDPKT (DFU 1.1 A.2); dfuERROR itself keeps its status. */
static DfuModelAction stall(DfuModel *m)
{
    m->st.stalls++;
    switch (m->state) {
    case DFU_STATE_APP_IDLE:
    case DFU_STATE_MANIFEST_WAIT_RESET: /* waits for a reset, answers nothing else */
        break;
    case DFU_STATE_APP_DETACH:
        m->state = DFU_STATE_APP_IDLE; /* A.2.2 */
        break;
    case DFU_STATE_ERROR:
        break;
    case DFU_STATE_DFU_IDLE:
    case DFU_STATE_DNLOAD_SYNC:
    case DFU_STATE_DNBUSY:
    case DFU_STATE_DNLOAD_IDLE:
    case DFU_STATE_MANIFEST_SYNC:
    case DFU_STATE_MANIFEST:
    case DFU_STATE_UPLOAD_IDLE:
    case _DFU_STATE_MAX:
        m->state = DFU_STATE_ERROR;
        m->status = DFU_STATUS_ERR_STALLEDPKT;
        break;
    }
    return DFU_MODEL_STALL;
}

static DfuModelAction done(const Req *q)
{
    *q->reply_len = q->length;
    return DFU_MODEL_REPLY;
}

/* GETSTATUS, DFU 1.1 section 6.1.2: bStatus, bwPollTimeout (24-bit LE), bState, iString. */
static DfuModelAction reply_status(DfuModel *m, const Req *q, uint32_t poll)
{
    uint8_t r[6];
    uint16_t n = q->length < sizeof(r) ? q->length : sizeof(r);

    if (poll > POLL_TIMEOUT_MAX)
        poll = POLL_TIMEOUT_MAX;
    r[0] = (uint8_t)m->status;
    r[1] = (uint8_t)(poll & 0xff);
    r[2] = (uint8_t)((poll >> 8) & 0xff);
    r[3] = (uint8_t)((poll >> 16) & 0xff);
    r[4] = (uint8_t)m->state;
    r[5] = 0;
    if (q->data)
        memcpy(q->data, r, n);
    else
        n = 0;
    *q->reply_len = n;
    m->st.asked_ms += poll;
    return DFU_MODEL_REPLY;
}

static DfuModelAction reply_state(DfuModel *m, const Req *q)
{
    *q->reply_len = 0;
    if (q->length >= 1 && q->data) {
        q->data[0] = (uint8_t)m->state;
        *q->reply_len = 1;
    }
    return DFU_MODEL_REPLY;
}

/* Enter a waiting state and report bwPollTimeout; the deadline counts from the reply. */
static DfuModelAction go_busy(DfuModel *m, const Req *q, DfuState state, uint32_t delay)
{
    uint32_t poll =
            m->c.poll_timeout_ms > POLL_TIMEOUT_MAX ? POLL_TIMEOUT_MAX : m->c.poll_timeout_ms;

    m->state = state;
    m->deadline = q->now + delay + poll;
    m->deadline_set = true;
    return reply_status(m, q, poll);
}

/* ---- download ---- */

/* Store one block; what went wrong is reported by the GETSTATUS that follows. */
static DfuModelAction take_block(DfuModel *m, const Req *q)
{
    const DfuModelFaults *f = &m->c.faults;

    if (fires(m, f->unplug_at_block)) {
        m->unplugged = true;
        return DFU_MODEL_UNPLUG;
    }
    if (fires(m, f->stall_at_block))
        return stall(m);
    m->pending = DFU_STATUS_OK;
    m->pending_delay = 0;
    /*
     * A wrong wBlockNum (not the count from 0, wrapping after 0xffff) or a
     * download past max_payload: the data stage completes, the block is
     * dropped and the next GETSTATUS reports errADDRESS (dfuERROR), the way a
     * firmware that checks blocks after the USB stack took them answers.
     */
    if (q->value != (uint16_t)(m->block & 0xffff) || !append(m, q->data, q->length)) {
        m->pending = DFU_STATUS_ERR_ADDRESS;
    } else {
        unsigned erases = cpio_walk(m);

        m->st.erases += erases;
        m->pending_delay = erases * m->c.erase_ms;
    }
    if (fires(m, f->error_at_block))
        m->pending = f->error_status ? (DfuStatus)f->error_status : DFU_STATUS_ERR_UNKNOWN;
    m->hang_pending = fires(m, f->hang_at_block);
    m->stuck = fires(m, f->busy_at_block);
    m->block_done = false;
    m->block++;
    m->state = DFU_STATE_DNLOAD_SYNC;
    return done(q);
}

/* The zero-length DNLOAD: check what arrived as the ROM does (the MD5s). */
static DfuModelAction end_download(DfuModel *m, const Req *q)
{
    ErrInfo err;

    free(m->last);
    m->last = m->buf;
    m->last_len = m->len;
    m->buf = NULL;
    m->cap = 0;
    drop_attempt(m);
    m->st.validated = image_check_archive(m->last, m->last_len, &err) >= 0;
    if (m->st.validated) {
        m->state = DFU_STATE_MANIFEST_SYNC;
        m->manifest_count = 0;
    } else {
        m->state = DFU_STATE_ERROR;
        m->status = DFU_STATUS_ERR_VERIFY;
    }
    return done(q);
}

static DfuModelAction on_dnload(DfuModel *m, const Req *q, bool first)
{
    if (q->length == 0)
        return first ? stall(m) : end_download(m, q); /* A.2.3: no zero-length in dfuIDLE */
    if (q->length > m->c.transfer_size || !q->data)
        return stall(m);
    if (first)
        start_attempt(m);
    return take_block(m, q);
}

/* GETSTATUS in dfuDNLOAD-SYNC (A.2.4): the block is done, busy, or failed. */
static DfuModelAction dnload_sync_status(DfuModel *m, const Req *q)
{
    uint32_t delay = m->pending_delay;

    if (m->hang_pending) {
        m->hung = true;
        return DFU_MODEL_HANG;
    }
    if (m->pending != DFU_STATUS_OK) {
        m->state = DFU_STATE_ERROR;
        m->status = m->pending;
        return reply_status(m, q, 0);
    }
    /* The erase: the ROM answers this GETSTATUS only when it is done. */
    m->pending_delay = 0;
    *q->delay_ms = delay;
    if (m->stuck || (!m->block_done && m->c.poll_timeout_ms > 0))
        return go_busy(m, q, DFU_STATE_DNBUSY, delay);
    m->state = DFU_STATE_DNLOAD_IDLE;
    return reply_status(m, q, 0);
}

/* GETSTATUS in dfuMANIFEST-SYNC (A.2.7): still manifesting, or done. */
static DfuModelAction manifest_sync_status(DfuModel *m, const Req *q)
{
    if (m->c.manifest_polls == DFU_MODEL_FOREVER || m->manifest_count < m->c.manifest_polls) {
        m->manifest_count++;
        return go_busy(m, q, DFU_STATE_MANIFEST, 0);
    }
    m->st.downloads_ok++;
    /* The ESP ROM is back in dfuIDLE; a non-tolerant device waits for a reset. */
    m->state = m->c.manifest_wait_reset ? DFU_STATE_MANIFEST_WAIT_RESET : DFU_STATE_DFU_IDLE;
    return reply_status(m, q, 0);
}

/* ---- per state ---- */

static DfuModelAction on_runtime(DfuModel *m, const Req *q)
{
    switch (q->request) {
    case DFU_REQ_DETACH:
        if (m->state != DFU_STATE_APP_IDLE)
            return stall(m);
        /* The ROM answers DETACH with an error and re-enumerates in DFU mode. */
        m->state = DFU_STATE_APP_DETACH;
        m->st.stalls++;
        return DFU_MODEL_STALL;
    case DFU_REQ_GETSTATUS: /* optional in run-time mode (A.2.1); answered */
        return reply_status(m, q, 0);
    case DFU_REQ_GETSTATE:
        return reply_state(m, q);
    }
    return stall(m);
}

static DfuModelAction on_idle(DfuModel *m, const Req *q)
{
    switch (q->request) {
    case DFU_REQ_DNLOAD:
        return on_dnload(m, q, true);
    case DFU_REQ_ABORT:
        return done(q);
    case DFU_REQ_GETSTATUS:
        return reply_status(m, q, 0);
    case DFU_REQ_GETSTATE:
        return reply_state(m, q);
    }
    /* UPLOAD too: whether the ROM uploads is unknown, and we never do. */
    return stall(m);
}

static DfuModelAction on_dnload_sync(DfuModel *m, const Req *q)
{
    switch (q->request) {
    case DFU_REQ_GETSTATUS:
        return dnload_sync_status(m, q);
    case DFU_REQ_GETSTATE:
        return reply_state(m, q);
    }
    return stall(m);
}

/*
 * dfuDNBUSY or dfuMANIFEST before the bwPollTimeout ran out. DFU 1.1 A.2.5
 * would stall any request here; an early GETSTATUS is answered instead (still
 * busy, with the time left) and counted, so a test can show the host never is.
 */
static DfuModelAction on_waiting(DfuModel *m, const Req *q)
{
    if (q->request == DFU_REQ_GETSTATUS)
        return reply_status(m, q, (uint32_t)(m->deadline - q->now));
    return stall(m);
}

static DfuModelAction on_dnload_idle(DfuModel *m, const Req *q)
{
    switch (q->request) {
    case DFU_REQ_DNLOAD:
        return on_dnload(m, q, false);
    case DFU_REQ_ABORT:
        drop_attempt(m);
        m->state = DFU_STATE_DFU_IDLE;
        return done(q);
    case DFU_REQ_GETSTATUS:
        return reply_status(m, q, 0);
    case DFU_REQ_GETSTATE:
        return reply_state(m, q);
    }
    return stall(m);
}

static DfuModelAction on_manifest_sync(DfuModel *m, const Req *q)
{
    switch (q->request) {
    case DFU_REQ_GETSTATUS:
        return manifest_sync_status(m, q);
    case DFU_REQ_GETSTATE:
        return reply_state(m, q);
    }
    return stall(m);
}

/* dfuMANIFEST-WAIT-RESET and dfuUPLOAD-IDLE (never entered: UPLOAD stalls). */
static DfuModelAction on_other(DfuModel *m, const Req *q)
{
    switch (q->request) {
    case DFU_REQ_ABORT:
        if (m->state != DFU_STATE_UPLOAD_IDLE)
            break;
        m->state = DFU_STATE_DFU_IDLE;
        return done(q);
    case DFU_REQ_GETSTATUS:
        return reply_status(m, q, 0);
    case DFU_REQ_GETSTATE:
        return reply_state(m, q);
    }
    return stall(m);
}

static DfuModelAction on_error(DfuModel *m, const Req *q)
{
    switch (q->request) {
    case DFU_REQ_CLRSTATUS: /* A.2.11 */
        drop_attempt(m);
        m->state = DFU_STATE_DFU_IDLE;
        m->status = DFU_STATUS_OK;
        return done(q);
    case DFU_REQ_GETSTATUS:
        return reply_status(m, q, 0);
    case DFU_REQ_GETSTATE:
        return reply_state(m, q);
    }
    return stall(m);
}

static DfuModelAction dispatch(DfuModel *m, const Req *q)
{
    switch (m->state) {
    case DFU_STATE_APP_IDLE:
    case DFU_STATE_APP_DETACH:
        return on_runtime(m, q);
    case DFU_STATE_DFU_IDLE:
        return on_idle(m, q);
    case DFU_STATE_DNLOAD_SYNC:
        return on_dnload_sync(m, q);
    case DFU_STATE_DNBUSY:
    case DFU_STATE_MANIFEST:
        return on_waiting(m, q);
    case DFU_STATE_DNLOAD_IDLE:
        return on_dnload_idle(m, q);
    case DFU_STATE_MANIFEST_SYNC:
        return on_manifest_sync(m, q);
    case DFU_STATE_MANIFEST_WAIT_RESET:
    case DFU_STATE_UPLOAD_IDLE:
        return on_other(m, q);
    case DFU_STATE_ERROR:
        return on_error(m, q);
    case _DFU_STATE_MAX:
        break;
    }
    return stall(m);
}

/* DFU 1.1 A.2.5/A.2.8: when bwPollTimeout runs out, the device is back in the
 * SYNC state, where the next GETSTATUS tells how it went. */
static void settle(DfuModel *m, uint64_t now)
{
    if (now < m->deadline)
        return;
    if (m->state == DFU_STATE_DNBUSY) {
        m->state = DFU_STATE_DNLOAD_SYNC;
        m->block_done = !m->stuck;
    } else if (m->state == DFU_STATE_MANIFEST) {
        m->state = DFU_STATE_MANIFEST_SYNC;
    }
}

/* How punctual the host's GETSTATUS is against the last bwPollTimeout. */
static void account_poll(DfuModel *m, uint64_t now)
{
    if (!m->deadline_set)
        return;
    if (now < m->deadline) {
        m->st.early_polls++;
        return;
    }
    if (now - m->deadline > m->st.max_poll_late_ms)
        m->st.max_poll_late_ms = now - m->deadline;
    m->deadline_set = false;
}

static void count_request(DfuModel *m, uint8_t request)
{
    m->st.requests++;
    if (request == DFU_REQ_ABORT)
        m->st.aborts++;
    else if (request == DFU_REQ_CLRSTATUS)
        m->st.clrstatus++;
    else if (request == DFU_REQ_DETACH)
        m->st.detaches++;
}

/* bmRequestType must match the request's direction (DFU 1.1 table 3.2). */
static bool direction_ok(uint8_t request_type, uint8_t request)
{
    switch (request) {
    case DFU_REQ_UPLOAD:
    case DFU_REQ_GETSTATUS:
    case DFU_REQ_GETSTATE:
        return request_type == DFU_RT_IN;
    case DFU_REQ_DETACH:
    case DFU_REQ_DNLOAD:
    case DFU_REQ_CLRSTATUS:
    case DFU_REQ_ABORT:
        return request_type == DFU_RT_OUT;
    }
    return false;
}

DfuModelAction dfu_model_control(DfuModel *m, uint64_t now_ms, uint8_t request_type,
                                 uint8_t request, uint16_t value, uint8_t *data, uint16_t length,
                                 uint16_t *reply_len, uint32_t *delay_ms)
{
    Req q = {
            .now = now_ms,
            .request = request,
            .value = value,
            .data = data,
            .length = length,
            .reply_len = reply_len,
            .delay_ms = delay_ms,
    };
    DfuModelAction a;

    *reply_len = 0;
    *delay_ms = 0;
    count_request(m, request);
    if (m->unplugged)
        return DFU_MODEL_UNPLUG;
    if (m->hung)
        return DFU_MODEL_HANG;
    settle(m, now_ms);
    if (!direction_ok(request_type, request))
        return stall(m);
    if (request == DFU_REQ_GETSTATUS)
        account_poll(m, now_ms);
    a = dispatch(m, &q);
    if (a == DFU_MODEL_REPLY)
        m->st.asked_ms += *delay_ms;
    return a;
}
