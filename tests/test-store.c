/* SPDX-License-Identifier: MIT */
/*
 * The history store (daemon/store.c) on real files in a temporary directory:
 * appending and reading back, ids across a reopen, corrupt lines, rotation,
 * and a full disk made with a symlink to /dev/full.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon-test.h"
#include "log.h"
#include "store.h"
#include "util.h"

static char dir[64];

static void path_in(char *buf, size_t size, const char *name)
{
    snprintf(buf, size, "%s/%s", dir, name);
}

static void fresh_dir(void)
{
    char cmd[128];

    if (dir[0]) {
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            abort();
    }
    snprintf(dir, sizeof(dir), "/tmp/test-store-XXXXXX");
    if (!mkdtemp(dir))
        abort();
}

static json_object *record(uint64_t id, const char *path, const char *state, int64_t finished)
{
    json_object *o = json_object_new_object();

    json_object_object_add(o, "id", json_object_new_int64((int64_t)id));
    json_object_object_add(o, "path", json_object_new_string(path));
    json_object_object_add(o, "state", json_object_new_string(state));
    json_object_object_add(o, "finished", json_object_new_double((double)finished + 0.25));
    return o;
}

static int append(Store *s, uint64_t id, const char *path, const char *state, int64_t finished)
{
    json_object *o = record(id, path, state, finished);
    int r = store_append(s, o);

    json_object_put(o);
    return r;
}

static uint64_t id_at(json_object *list, size_t i)
{
    json_object *id;

    if (!json_object_object_get_ex(json_object_array_get_idx(list, i), "id", &id))
        return 0;
    return (uint64_t)json_object_get_int64(id);
}

/* stderr into a file while the daemon's log lines are checked. */
static int saved_stderr = -1;
static char log_text[8192];

static void capture_begin(void)
{
    char p[128];
    int fd;

    path_in(p, sizeof(p), "log");
    fflush(stderr);
    fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    saved_stderr = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    close(fd);
}

static const char *capture_end(void)
{
    char p[128];
    FILE *f;
    size_t n;

    path_in(p, sizeof(p), "log");
    fflush(stderr);
    dup2(saved_stderr, STDERR_FILENO);
    close(saved_stderr);
    f = fopen(p, "re");
    n = f ? fread(log_text, 1, sizeof(log_text) - 1, f) : 0;
    log_text[n] = '\0';
    if (f)
        fclose(f);
    fputs(log_text, stderr);
    return log_text;
}

static void test_append_query(T *t)
{
    _cleanup_(store_freep) Store *s = NULL;
    json_object *list = NULL;
    StoreQuery q = {.limit = 100};
    struct stat st;

    fresh_dir();
    CHECK(store_new(NULL, dir, 1 << 20, &s) == 0);
    CHECK(store_max_id(s) == 0 && store_pending(s) == 0);
    CHECK(append(s, 1, "1-1", "succeeded", 1000) == 0);
    CHECK(append(s, 2, "1-2", "failed", 2000) == 0);
    CHECK(append(s, 3, "1-1", "cancelled", 3000) == 0);
    CHECK(store_max_id(s) == 3);
    CHECK(store_query(s, &q, &list) == 0);
    CHECK(json_object_array_length(list) == 3 && id_at(list, 0) == 1 && id_at(list, 2) == 3);
    list = (json_object_put(list), NULL);
    q = (StoreQuery){.path = "1-1", .limit = 100};
    CHECK(store_query(s, &q, &list) == 0);
    CHECK(json_object_array_length(list) == 2 && id_at(list, 0) == 1 && id_at(list, 1) == 3);
    list = (json_object_put(list), NULL);
    q = (StoreQuery){.result = "failed", .limit = 100};
    CHECK(store_query(s, &q, &list) == 0);
    CHECK(json_object_array_length(list) == 1 && id_at(list, 0) == 2);
    list = (json_object_put(list), NULL);
    q = (StoreQuery){.since = 2000, .limit = 100};
    CHECK(store_query(s, &q, &list) == 0);
    CHECK(json_object_array_length(list) == 2 && id_at(list, 0) == 2);
    list = (json_object_put(list), NULL);
    q = (StoreQuery){.limit = 1};
    CHECK(store_query(s, &q, &list) == 0);
    CHECK(json_object_array_length(list) == 1 && id_at(list, 0) == 3); /* the newest */
    list = (json_object_put(list), NULL);
    CHECK(stat(dir, &st) == 0 && S_ISDIR(st.st_mode));
}

static void test_ids_continue(T *t)
{
    _cleanup_(store_freep) Store *s = NULL;
    json_object *o = NULL;
    char sub[128];
    struct stat st;

    fresh_dir();
    path_in(sub, sizeof(sub), "state");
    CHECK(store_new(NULL, sub, 1 << 20, &s) == 0);
    CHECK(stat(sub, &st) == 0 && (st.st_mode & 07777) == 0750);
    /* Jobs finish out of id order: the largest id counts, not the last line. */
    CHECK(append(s, 5, "1-1", "succeeded", 1000) == 0);
    CHECK(append(s, 3, "1-2", "failed", 1001) == 0);
    s = store_free(s);
    CHECK(store_new(NULL, sub, 1 << 20, &s) == 0);
    CHECK(store_max_id(s) == 5);
    CHECK(json_object_array_length(store_preloaded(s)) == 2);
    CHECK(id_at(store_preloaded(s), 0) == 5 && id_at(store_preloaded(s), 1) == 3);
    CHECK(store_find(s, 3, &o) == 0 && o);
    json_object_put(o);
    CHECK(store_find(s, 4, &o) == -ENOENT);
    CHECK(store_find(s, 99, &o) == -ENOENT);
}

static void write_file(const char *name, const char *text)
{
    char p[128];
    FILE *f;

    path_in(p, sizeof(p), name);
    f = fopen(p, "we");
    fputs(text, f);
    fclose(f);
}

static void test_corrupt_lines(T *t)
{
    _cleanup_(store_freep) Store *s = NULL;
    json_object *list = NULL;
    StoreQuery q = {.limit = 100};
    const char *log;

    fresh_dir();
    /* A garbled middle line, and a last line cut short by a crash mid-write. */
    write_file(STORE_FILE, "{\"id\":1,\"path\":\"1-1\",\"state\":\"succeeded\"}\n"
                           "garbage}\n"
                           "{\"id\":2,\"path\":\"1-1\",\"state\":\"failed\"}\n"
                           "{\"id\":7,\"path\":\"1-");
    capture_begin();
    CHECK(store_new(NULL, dir, 1 << 20, &s) == 0);
    log = capture_end();
    CHECK(strstr(log, STORE_FILE ":2: skipping a corrupt record"));
    CHECK(strstr(log, STORE_FILE ":4: skipping a corrupt record"));
    CHECK(store_max_id(s) == 2);
    /* The next record starts on a line of its own, not glued to the broken one. */
    CHECK(append(s, 3, "1-1", "succeeded", 5) == 0);
    s = store_free(s);
    CHECK(store_new(NULL, dir, 1 << 20, &s) == 0);
    CHECK(store_max_id(s) == 3);
    CHECK(store_query(s, &q, &list) == 0);
    CHECK(json_object_array_length(list) == 3 && id_at(list, 2) == 3);
    json_object_put(list);
}

static void test_rotation(T *t)
{
    _cleanup_(store_freep) Store *s = NULL;
    json_object *list = NULL;
    StoreQuery q = {.limit = 1000};
    char p[128], old[128];
    struct stat st;
    size_t n;

    fresh_dir();
    CHECK(store_new(NULL, dir, 400, &s) == 0);
    for (uint64_t id = 1; id <= 20; id++)
        CHECK(append(s, id, "1-1", "succeeded", (int64_t)id) == 0);
    path_in(p, sizeof(p), STORE_FILE);
    path_in(old, sizeof(old), STORE_FILE ".1");
    CHECK(stat(p, &st) == 0 && st.st_size <= 400);
    CHECK(stat(old, &st) == 0 && st.st_size <= 400 && st.st_size > 0);
    /* Both files are read, newest last; the older .1 files are gone. */
    CHECK(store_query(s, &q, &list) == 0);
    n = json_object_array_length(list);
    CHECK(n > 1 && n < 20 && id_at(list, n - 1) == 20);
    for (size_t i = 1; i < n; i++)
        CHECK(id_at(list, i) == id_at(list, i - 1) + 1);
    json_object_put(list);
    s = store_free(s);
    CHECK(store_new(NULL, dir, 400, &s) == 0);
    CHECK(store_max_id(s) == 20);
}

static void point_history_at(const char *target)
{
    char p[128];

    path_in(p, sizeof(p), STORE_FILE);
    unlink(p);
    if (symlink(target, p) < 0)
        abort();
}

static void test_full_disk(T *t)
{
    _cleanup_(store_freep) Store *s = NULL;
    json_object *list = NULL;
    StoreQuery q = {.limit = 100};
    char real[128];
    const char *log;

    fresh_dir();
    point_history_at("/dev/full");
    CHECK(store_new(NULL, dir, 1 << 20, &s) == 0);
    capture_begin();
    CHECK(append(s, 1, "1-1", "succeeded", 1) == -ENOSPC);
    CHECK(append(s, 2, "1-2", "failed", 2) == -ENOSPC);
    CHECK(append(s, 3, "1-3", "succeeded", 3) == -ENOSPC);
    log = capture_end();
    /* What status reports: pending records and why. */
    CHECK(store_pending(s) == 3 && store_error(s) == -ENOSPC && store_max_id(s) == 3);
    CHECK(strstr(log, "cannot write") && strstr(log, "No space left on device; 1 record pending"));
    CHECK(!strstr(strstr(log, "cannot write") + 1, "cannot write")); /* logged once */
    path_in(real, sizeof(real), "real.jsonl");
    point_history_at(real);
    capture_begin();
    CHECK(store_flush(s) == 0);
    log = capture_end();
    CHECK(strstr(log, "writable again; 3 pending records written"));
    CHECK(store_pending(s) == 0 && store_error(s) == 0);
    CHECK(store_query(s, &q, &list) == 0);
    CHECK(json_object_array_length(list) == 3);
    CHECK(id_at(list, 0) == 1 && id_at(list, 1) == 2 && id_at(list, 2) == 3);
    json_object_put(list);
}

static void test_pending_overflow(T *t)
{
    _cleanup_(store_freep) Store *s = NULL;
    json_object *list = NULL;
    StoreQuery q = {.limit = 1};
    char real[128];
    const char *log;

    fresh_dir();
    point_history_at("/dev/full");
    CHECK(store_new(NULL, dir, 64u << 20, &s) == 0);
    capture_begin();
    for (uint64_t id = 1; id <= STORE_PENDING_MAX + 3; id++)
        (void)append(s, id, "1-1", "succeeded", (int64_t)id);
    log = capture_end();
    CHECK(store_pending(s) == STORE_PENDING_MAX && store_dropped(s) == 3);
    CHECK(strstr(log, "dropped the oldest; 1 dropped so far"));
    path_in(real, sizeof(real), "real.jsonl");
    point_history_at(real);
    capture_begin();
    CHECK(store_flush(s) == 0);
    log = capture_end();
    CHECK(strstr(log, "4096 pending records written, 3 dropped"));
    /* The oldest three went; the first record on disk is job 4. */
    CHECK(store_find(s, 3, &list) == -ENOENT);
    CHECK(store_find(s, 4, &list) == 0);
    json_object_put(list);
    list = NULL;
    CHECK(store_query(s, &q, &list) == 0);
    CHECK(id_at(list, 0) == STORE_PENDING_MAX + 3);
    json_object_put(list);
}

int main(void)
{
    char cmd[128];

    log_force_stderr();
    RUN(test_append_query);
    RUN(test_ids_continue);
    RUN(test_corrupt_lines);
    RUN(test_rotation);
    RUN(test_full_disk);
    RUN(test_pending_overflow);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        return 1;
    return test_summary();
}
