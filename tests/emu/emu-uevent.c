/* SPDX-License-Identifier: MIT */
/*
 * Our own uevent sender, instead of umockdev_testbed_uevent().
 *
 * Why: umockdev 0.17's sender abort()s the whole testbed process when a
 * listener's socket is full (10 unread datagrams, a run-time board's detach
 * and replug is about that many), it needs the testbed process itself under
 * libumockdev-preload (it looks the device up through libudev), and
 * remove_device() sends no "remove". Here a full socket gets a per-listener
 * queue that a timer drains in order; a listener that never reads loses the
 * oldest events past EMU_UEVENT_QUEUE_MAX, with a warning.
 *
 * The wire format is what libudev's monitor expects from udevd (systemd
 * src/libsystemd/sd-device/device-monitor.c): a "libudev" header with the
 * MurmurHash2 of subsystem and devtype, which the listener's BPF filter
 * checks, then NUL-separated KEY=value properties. The client side of
 * umockdev's preload turns our AF_UNIX datagram into a netlink one.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <glob.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "emu-internal.h"

#define EMU_UEVENT_QUEUE_MAX 4096u
#define EMU_UEVENT_RETRY_MS  2u
#define EMU_UEVENT_BUF_MAX   8192u

struct EmuUevents {
    char *glob; /* "$root/event[0-9]*" */
    GMainContext *ctx;
    GHashTable *pending; /* socket path -> GQueue of GBytes */
    GSource *retry;
    uint64_t seqnum;
    unsigned dropped;
};

/* MurmurHash2 by Austin Appleby (public domain), seed 0, as udev uses it. */
static uint32_t murmur2(const char *s)
{
    const uint32_t m = 0x5bd1e995;
    size_t len = strlen(s);
    uint32_t h = (uint32_t)len;
    const uint8_t *p = (const uint8_t *)s;

    for (; len >= 4; len -= 4, p += 4) {
        uint32_t k;

        memcpy(&k, p, 4);
        k *= m;
        k ^= k >> 24;
        k *= m;
        h = (h * m) ^ k;
    }
    switch (len) {
    case 3:
        h ^= (uint32_t)p[2] << 16;
        /* fall through */
    case 2:
        h ^= (uint32_t)p[1] << 8;
        /* fall through */
    case 1:
        h ^= p[0];
        h *= m;
    }
    h ^= h >> 13;
    h *= m;
    h ^= h >> 15;
    return h;
}

/* libudev's struct udev_monitor_netlink_header, all fields 32-bit. */
typedef struct MonitorHeader {
    char prefix[8];
    uint32_t magic, header_size, properties_off, properties_len;
    uint32_t filter_subsystem_hash, filter_devtype_hash, filter_tag_bloom_hi, filter_tag_bloom_lo;
} MonitorHeader;

static GBytes *build_message(EmuUevents *u, const char *action, const char *devpath,
                             const char *subsystem, const char *devtype, const GPtrArray *props)
{
    GByteArray *b = g_byte_array_sized_new(1024);
    MonitorHeader h = {.prefix = "libudev",
                       .magic = htonl(0xfeedcafe),
                       .header_size = sizeof(MonitorHeader),
                       .properties_off = sizeof(MonitorHeader),
                       .filter_subsystem_hash = htonl(murmur2(subsystem)),
                       .filter_devtype_hash = devtype ? htonl(murmur2(devtype)) : 0};
    g_autofree char *seq = g_strdup_printf("SEQNUM=%" G_GUINT64_FORMAT, ++u->seqnum);
    const char *fixed[4];
    g_autofree char *a = g_strconcat("ACTION=", action, NULL);
    g_autofree char *p = g_strconcat("DEVPATH=", devpath, NULL);
    g_autofree char *s = g_strconcat("SUBSYSTEM=", subsystem, NULL);

    fixed[0] = a;
    fixed[1] = p;
    fixed[2] = s;
    fixed[3] = seq;
    g_byte_array_append(b, (const uint8_t *)&h, sizeof(h));
    for (size_t i = 0; i < G_N_ELEMENTS(fixed); i++)
        g_byte_array_append(b, (const uint8_t *)fixed[i], strlen(fixed[i]) + 1);
    for (unsigned i = 0; props && i < props->len; i++) {
        const char *kv = g_ptr_array_index(props, i);

        if (g_str_has_prefix(kv, "SUBSYSTEM=")) /* already first, as the kernel has it */
            continue;
        g_byte_array_append(b, (const uint8_t *)kv, strlen(kv) + 1);
    }
    ((MonitorHeader *)b->data)->properties_len = b->len - sizeof(MonitorHeader);
    g_assert(b->len <= EMU_UEVENT_BUF_MAX);
    return g_byte_array_free_to_bytes(b);
}

/* 1 sent, 0 would block, -1 listener gone (its socket file is removed). */
static int send_one(const char *path, GBytes *msg)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    gsize len;
    const void *data = g_bytes_get_data(msg, &len);

    ssize_t n;
    int fd, saved;

    if (strlen(path) >= sizeof(sa.sun_path))
        return -1;
    strcpy(sa.sun_path, path);
    /*
     * A fresh socket per datagram: queued datagrams are charged to the
     * sending socket, so one shared socket would stall every listener once a
     * few of them stop reading.
     */
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return 0;
    n = sendto(fd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL, (struct sockaddr *)&sa, sizeof(sa));
    saved = errno;
    close(fd);
    if (n >= 0)
        return 1;
    if (saved == EAGAIN || saved == EWOULDBLOCK || saved == ENOBUFS)
        return 0;
    if (saved == ECONNREFUSED)
        unlink(path); /* the process closed its monitor or exited */
    return -1;
}

static gboolean retry_cb(void *data);

static void arm_retry(EmuUevents *u)
{
    if (u->retry)
        return;
    u->retry = g_timeout_source_new(EMU_UEVENT_RETRY_MS);
    g_source_set_callback(u->retry, retry_cb, u, NULL);
    g_source_attach(u->retry, u->ctx);
}

static void enqueue(EmuUevents *u, const char *path, GBytes *msg)
{
    GQueue *q = g_hash_table_lookup(u->pending, path);

    if (!q) {
        q = g_queue_new();
        g_hash_table_insert(u->pending, g_strdup(path), q);
    }
    if (g_queue_get_length(q) >= EMU_UEVENT_QUEUE_MAX) {
        if (u->dropped++ == 0)
            emu_log("uevent listener %s does not read its events; dropping the oldest\n", path);
        g_bytes_unref(g_queue_pop_head(q));
    }
    g_queue_push_tail(q, g_bytes_ref(msg));
    arm_retry(u);
}

/* Drain one listener's queue in order; TRUE when it is empty or gone. */
static gboolean drain(EmuUevents *u, const char *path, GQueue *q)
{
    while (!g_queue_is_empty(q)) {
        int r = send_one(path, g_queue_peek_head(q));

        if (r == 0)
            return FALSE;
        if (r < 0) {
            g_queue_clear_full(q, (GDestroyNotify)g_bytes_unref);
            return TRUE;
        }
        g_bytes_unref(g_queue_pop_head(q));
    }
    return TRUE;
}

static gboolean retry_cb(void *data)
{
    EmuUevents *u = data;
    GHashTableIter it;
    void *key, *value;

    g_hash_table_iter_init(&it, u->pending);
    while (g_hash_table_iter_next(&it, &key, &value))
        if (drain(u, key, value))
            g_hash_table_iter_remove(&it);
    if (g_hash_table_size(u->pending) > 0)
        return G_SOURCE_CONTINUE;
    g_source_unref(u->retry);
    u->retry = NULL;
    return G_SOURCE_REMOVE;
}

static void queue_free(void *q)
{
    g_queue_free_full(q, (GDestroyNotify)g_bytes_unref);
}

EmuUevents *emu_uevents_new(const char *root_dir, GMainContext *ctx)
{
    EmuUevents *u = g_new0(EmuUevents, 1);

    u->glob = g_build_filename(root_dir, "event[0-9]*", NULL);
    u->ctx = g_main_context_ref(ctx);
    u->pending = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, queue_free);
    return u;
}

EmuUevents *emu_uevents_free(EmuUevents *u)
{
    if (!u)
        return NULL;
    if (u->retry) {
        g_source_destroy(u->retry);
        g_source_unref(u->retry);
    }
    g_hash_table_destroy(u->pending);
    g_main_context_unref(u->ctx);
    g_free(u->glob);
    g_free(u);
    return NULL;
}

void emu_uevents_send(EmuUevents *u, const char *action, const char *devpath, const char *subsystem,
                      const char *devtype, const GPtrArray *props)
{
    g_autoptr(GBytes) msg = build_message(u, action, devpath, subsystem, devtype, props);
    glob_t gl;

    if (glob(u->glob, GLOB_NOSORT, NULL, &gl) != 0)
        return; /* nobody listens */
    for (size_t i = 0; i < gl.gl_pathc; i++) {
        const char *path = gl.gl_pathv[i];
        GQueue *q = g_hash_table_lookup(u->pending, path);

        /* Behind earlier events that are still queued: keep the order. */
        if ((q && !g_queue_is_empty(q)) || send_one(path, msg) == 0)
            enqueue(u, path, msg);
    }
    globfree(&gl);
}

unsigned emu_uevents_listeners(EmuUevents *u, pid_t pid)
{
    g_autofree char *suffix = pid > 0 ? g_strdup_printf("-%d", (int)pid) : NULL;
    unsigned n = 0;
    glob_t gl;

    if (glob(u->glob, GLOB_NOSORT, NULL, &gl) != 0)
        return 0;
    for (size_t i = 0; i < gl.gl_pathc; i++)
        if (!suffix || g_str_has_suffix(gl.gl_pathv[i], suffix))
            n++;
    globfree(&gl);
    return n;
}

unsigned emu_uevents_dropped(EmuUevents *u)
{
    return u->dropped;
}
