/* SPDX-License-Identifier: MIT */
/*
 * espdfu-store-fill DIR [JOBS] [PER_TRANSACTION]: make DIR/jobs.db hold JOBS
 * finished jobs (default 1,000,000), written through the store's own API
 * (store_db_open, store_db_insert_job) in transactions of PER_TRANSACTION
 * rows (default 100,000), for bench/store-history.sh.
 *
 * The rows look like a year on a real station: 32 ports 1-1.1 .. 1-4.8, five
 * images, auto-flash rules and some manual jobs, ~85% succeeded, ~9% failed,
 * ~4% cancelled, ~2% interrupted, created evenly over the last 365 days
 * (ids in time order, as the daemon makes them), each document shaped like
 * job_to_json()'s (transitions, one or two attempts, an error when it
 * failed), about 1 KB. Deterministic: the same arguments give the same rows.
 *
 * Prints one line: "jobs N seconds S bytes B" (B: jobs.db plus its WAL).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "store-db.h"
#include "timeutil.h"

#define N_PORTS  32u
#define N_IMAGES 5u
#define YEAR_S   (365u * 24u * 3600u)

typedef struct Image {
    const char *name, *chip;
    char sha[65];
    unsigned size;
} Image;

static Image images[N_IMAGES] = {
        {"line-a-v1.4.2.bin", "esp32s2", "", 1054736},
        {"line-a-v1.5.0.bin", "esp32s2", "", 1071120},
        {"line-b-v3.0.1.bin", "esp32s3", "", 1478672},
        {"line-b-v3.1.0.bin", "esp32s3", "", 1495056},
        {"factory-test.bin", "esp32s2", "", 262160},
};

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint64_t rnd(void) /* xorshift64*: fast and deterministic */
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1du;
}

static unsigned below(unsigned n)
{
    return (unsigned)(rnd() % n);
}

/* Seconds with microseconds, as wire_json_time() writes them. */
static const char *t(char *buf, uint64_t usec)
{
    snprintf(buf, 32, "%" PRIu64 ".%06" PRIu64, usec / 1000000u, usec % 1000000u);
    return buf;
}

/* One job document, like job_to_json() makes for a finished job. */
static int make_doc(char *doc, size_t size, uint64_t id, const char *path, const Image *img,
                    const char *source, const char *state, uint64_t created, uint64_t *ret_finished)
{
    char c[32], s1[32], s2[32], s3[32], s4[32], f[32], err[400], hist[1100], att[700];
    uint64_t detach = created + 150000u + below(400000u);
    uint64_t replug = detach + 20000u + below(80000u);
    uint64_t dl = replug + 600000u + below(900000u);
    unsigned total = img->size - 16u, blocks = (total + 63u) / 64u;
    uint64_t dl_usec = (uint64_t)blocks * (1800u + below(300u));
    uint64_t manifest = dl + dl_usec, finished = manifest + 300000u + below(500000u);
    unsigned bytes = total, block = blocks, percent = 100, retries = 0;
    int n;

    err[0] = '\0';
    if (strcmp(state, "succeeded") == 0) {
        snprintf(hist, sizeof(hist),
                 "{\"state\":\"queued\",\"at\":%s,\"reason\":\"%s\"},"
                 "{\"state\":\"detaching\",\"at\":%s,\"reason\":\"run-time board on %s: "
                 "DFU_DETACH\"},"
                 "{\"state\":\"waiting-for-replug\",\"at\":%s,\"reason\":\"detached; waiting for "
                 "the DFU-mode board\"},"
                 "{\"state\":\"downloading\",\"at\":%s,\"reason\":\"board in DFU mode (devnum "
                 "%u)\"},"
                 "{\"state\":\"manifesting\",\"at\":%s,\"reason\":\"%u bytes sent in %u blocks\"},"
                 "{\"state\":\"succeeded\",\"at\":%s,\"reason\":\"manifestation complete\"}",
                 t(c, created), strcmp(source, "manual") ? "board plugged" : "flash requested",
                 t(s1, detach), path, t(s2, replug), t(s3, dl), 10u + below(100u), t(s4, manifest),
                 total, blocks, t(f, finished));
        snprintf(att, sizeof(att),
                 "{\"n\":1,\"started\":%s,\"finished\":%s,\"bytes\":%u,\"error\":null}", s1, f,
                 total);
    } else {
        /* failed, cancelled or interrupted somewhere in the download */
        bool failed = strcmp(state, "failed") == 0;
        const char *code = failed ? (below(3) == 0 ? "usb-transfer" : "disconnected")
                           : strcmp(state, "cancelled") == 0 ? "cancelled"
                                                             : "interrupted";
        const char *why = failed ? "board disconnected during download"
                          : strcmp(state, "cancelled") == 0
                                  ? "cancelled by uid 1000 during download"
                                  : "the daemon stopped during download";

        percent = 1u + below(98u);
        block = blocks * percent / 100u;
        bytes = block * 64u;
        finished = dl + (uint64_t)block * 1900u;
        retries = failed ? 1u : 0u;
        snprintf(err, sizeof(err),
                 "{\"code\":\"%s\",\"message\":\"%s at %u%% (block %u, offset 0x%x)\","
                 "\"phase\":\"download\",\"block\":%u,\"offset\":%u,\"dfu_status\":%s}",
                 code, why, percent, block, bytes, block, bytes,
                 failed && strcmp(code, "usb-transfer") == 0 ? "\"errWRITE\"" : "null");
        snprintf(hist, sizeof(hist),
                 "{\"state\":\"queued\",\"at\":%s,\"reason\":\"%s\"},"
                 "{\"state\":\"detaching\",\"at\":%s,\"reason\":\"run-time board on %s: "
                 "DFU_DETACH\"},"
                 "{\"state\":\"waiting-for-replug\",\"at\":%s,\"reason\":\"detached; waiting for "
                 "the DFU-mode board\"},"
                 "{\"state\":\"downloading\",\"at\":%s,\"reason\":\"board in DFU mode (devnum "
                 "%u)\"},"
                 "{\"state\":\"%s\",\"at\":%s,\"reason\":\"%s at %u%%\"}",
                 t(c, created), strcmp(source, "manual") ? "board plugged" : "flash requested",
                 t(s1, detach), path, t(s2, replug), t(s3, dl), 10u + below(100u), state,
                 t(f, finished), why, percent);
        snprintf(att, sizeof(att),
                 "{\"n\":1,\"started\":%s,\"finished\":%s,\"bytes\":%u,\"error\":%s}", s1, f, bytes,
                 err);
    }
    n = snprintf(doc, size,
                 "{\"id\":%" PRIu64 ",\"path\":\"%s\",\"source\":\"%s\",\"chip\":\"%s\","
                 "\"state\":\"%s\",\"image\":{\"name\":\"%s\",\"sha256\":\"%s\",\"size\":%u},"
                 "\"progress\":{\"bytes\":%u,\"total\":%u,\"percent\":%u,\"rate\":%u,\"block\":%u},"
                 "\"created\":%s,\"started\":%s,\"finished\":%s,\"history\":[%s],\"retries\":%u,"
                 "\"max_retries\":1,\"timeout_s\":600,\"attempts\":[%s],\"error\":%s}",
                 id, path, source, img->chip, state, img->name, img->sha, img->size, bytes, total,
                 percent, 33000u + below(2000u), block, c, s1, f, hist, retries, att,
                 err[0] ? err : "null");
    *ret_finished = finished;
    return n > 0 && (size_t)n < size ? 0 : -ENOBUFS;
}

static void on_warning(void *userdata, const char *message)
{
    fprintf(stderr, "espdfu-store-fill: %s\n", message);
}

static uint64_t file_size(const char *dir, const char *suffix)
{
    char p[4200];
    struct stat st;

    snprintf(p, sizeof(p), "%s/%s%s", dir, STORE_DB_FILE, suffix);
    return stat(p, &st) == 0 ? (uint64_t)st.st_size : 0;
}

int main(int argc, char **argv)
{
    static const char *const sources[] = {"factory", "manual"};
    const char *dir;
    unsigned long jobs, per_tx;
    char paths[N_PORTS][16], doc[4096], err[STORE_DB_ERR_MAX];
    uint64_t start_real, start_mono, t0, id, sum_len = 0;
    StoreDbOpenInfo info;
    StoreDb *db = NULL;
    int r;

    if (argc < 2 || argc > 4) {
        fprintf(stderr, "usage: espdfu-store-fill DIR [JOBS] [PER_TRANSACTION]\n");
        return 2;
    }
    dir = argv[1];
    jobs = argc > 2 ? strtoul(argv[2], NULL, 10) : 1000000ul;
    per_tx = argc > 3 ? strtoul(argv[3], NULL, 10) : 100000ul;
    if (jobs == 0 || per_tx == 0) {
        fprintf(stderr, "espdfu-store-fill: JOBS and PER_TRANSACTION must be > 0\n");
        return 2;
    }
    for (unsigned i = 0; i < N_PORTS; i++)
        snprintf(paths[i], sizeof(paths[i]), "1-%u.%u", 1u + i / 8u, 1u + i % 8u);
    for (unsigned i = 0; i < N_IMAGES; i++)
        for (unsigned k = 0; k < 64; k++)
            images[i].sha[k] = "0123456789abcdef"[rnd() & 15u];

    t0 = now_usec(CLOCK_MONOTONIC);
    r = store_db_open(dir, on_warning, NULL, &db, &info, err, sizeof(err));
    if (r < 0) {
        fprintf(stderr, "espdfu-store-fill: %s\n", err);
        return 1;
    }
    if (!info.created) {
        fprintf(stderr, "espdfu-store-fill: %s/%s exists; give an empty directory\n", dir,
                STORE_DB_FILE);
        store_db_close(db);
        return 1;
    }
    /* A year back from an hour ago, evenly, with jitter under one spacing. */
    start_real = now_usec(CLOCK_REALTIME) - (uint64_t)(YEAR_S + 3600u) * 1000000u;
    start_mono = (uint64_t)YEAR_S * 1000000u / jobs;
    for (unsigned long i = 0; i < jobs && r >= 0; i++) {
        unsigned p = below(100);
        const char *state = p < 85   ? "succeeded"
                            : p < 94 ? "failed"
                            : p < 98 ? "cancelled"
                                     : "interrupted";
        /* Older images early in the year, newer ones later, the test image throughout. */
        unsigned era = (unsigned)(i * 2u / jobs), im = below(10) == 0 ? 4u : era * 2u + below(2);
        const char *source = im == 4u         ? sources[below(2)]
                             : below(10) == 0 ? "manual"
                             : im < 2u        ? "line-a"
                                              : "line-b";
        uint64_t created = start_real + i * start_mono + rnd() % (start_mono ? start_mono : 1u);
        uint64_t finished = 0;
        const char *path = paths[below(N_PORTS)];

        if (i % per_tx == 0)
            r = store_db_begin(db, err, sizeof(err));
        if (r >= 0)
            r = make_doc(doc, sizeof(doc), i + 1, path, &images[im], source, state, created,
                         &finished);
        if (r >= 0) {
            sum_len += strlen(doc);
            r = store_db_insert_job(db,
                                    &(StoreJobRow){
                                            .path = path,
                                            .state = state,
                                            .sha256 = images[im].sha,
                                            .created_usec = created,
                                            .finished_usec = finished,
                                            .json = doc,
                                    },
                                    &id, err, sizeof(err));
        }
        if (r >= 0 && (i % per_tx == per_tx - 1 || i == jobs - 1))
            r = store_db_commit(db, err, sizeof(err));
    }
    if (r < 0) {
        if (r == -ENOBUFS)
            snprintf(err, sizeof(err), "a job document did not fit %zu bytes", sizeof(doc));
        fprintf(stderr, "espdfu-store-fill: %s\n", err);
        store_db_rollback(db);
        store_db_close(db);
        return 1;
    }
    store_db_close(db); /* checkpoints the WAL into the file */
    printf("jobs %lu seconds %.3f bytes %" PRIu64 " doc_bytes_mean %" PRIu64 "\n", jobs,
           (double)(now_usec(CLOCK_MONOTONIC) - t0) / 1e6,
           file_size(dir, "") + file_size(dir, "-wal"), sum_len / jobs);
    /* The images, for the bench's sha256 filter: "sha256 NAME HEX". */
    for (unsigned i = 0; i < N_IMAGES; i++)
        printf("sha256 %s %s\n", images[i].name, images[i].sha);
    return 0;
}
