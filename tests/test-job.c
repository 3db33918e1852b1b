/* SPDX-License-Identifier: MIT */
/*
 * daemon/job.c and daemon/job-queue.c: the job state machine, its records,
 * and the per-port FIFO the manager starts jobs from.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

#include "daemon-test.h"
#include "image-cache.h"
#include "job-json.h"
#include "job-queue.h"
#include "job.h"
#include "util.h"

#define S2_IMAGE FIXTURES_DIR "/mkdfu/1/dfu.bin"

static ImageCache *cache;
static CachedImage *image;

static int load_image(void)
{
    _cleanup_close_ int fd = open(S2_IMAGE, O_RDONLY | O_CLOEXEC);
    Image *img = NULL;
    ErrInfo err;
    int r;

    if (fd < 0)
        return -errno;
    r = image_load_fd(fd, &img, &err);
    if (r < 0)
        return r;
    r = image_cache_new(&cache);
    if (r < 0) {
        image_free(img);
        return r;
    }
    return image_cache_add(cache, &img, &image);
}

static Job *new_job(uint64_t id, const char *path)
{
    Job *j = NULL;

    if (job_new(id, path, "test", image, "dfu.bin", 1000, &j) < 0)
        return NULL;
    return j;
}

/* ---- the state machine ---- */

static void test_state_strings(T *t)
{
    for (int s = 0; s < _JOB_STATE_MAX; s++) {
        CHECK(job_state_to_string((JobState)s));
        CHECK(job_state_from_string(job_state_to_string((JobState)s)) == (JobState)s);
    }
    CHECK_STREQ(job_state_to_string(JOB_WAITING_FOR_REPLUG), "waiting-for-replug");
    CHECK(job_state_from_string("done") == _JOB_STATE_MAX);
    CHECK(job_state_from_string(NULL) == _JOB_STATE_MAX);
}

static void test_transitions(T *t)
{
    /* The paths of the design's diagram, and nothing else. */
    static const JobState ok[][2] = {
            {JOB_QUEUED, JOB_WAITING_FOR_BOARD},
            {JOB_QUEUED, JOB_DETACHING},
            {JOB_QUEUED, JOB_DOWNLOADING},
            {JOB_WAITING_FOR_BOARD, JOB_QUEUED},
            {JOB_WAITING_FOR_BOARD, JOB_DETACHING},
            {JOB_DETACHING, JOB_WAITING_FOR_REPLUG},
            {JOB_DETACHING, JOB_DOWNLOADING},
            {JOB_WAITING_FOR_REPLUG, JOB_DOWNLOADING},
            {JOB_DOWNLOADING, JOB_MANIFESTING},
            {JOB_DOWNLOADING, JOB_SUCCEEDED},
            {JOB_MANIFESTING, JOB_SUCCEEDED},
            {JOB_DOWNLOADING, JOB_QUEUED}, /* retry */
            {JOB_MANIFESTING, JOB_QUEUED},
            {JOB_WAITING_FOR_REPLUG, JOB_FAILED},
            {JOB_QUEUED, JOB_CANCELLED},
    };
    static const JobState bad[][2] = {
            {JOB_QUEUED, JOB_SUCCEEDED},        {JOB_QUEUED, JOB_MANIFESTING},
            {JOB_DETACHING, JOB_SUCCEEDED},     {JOB_WAITING_FOR_REPLUG, JOB_DETACHING},
            {JOB_MANIFESTING, JOB_DOWNLOADING}, {JOB_SUCCEEDED, JOB_FAILED},
            {JOB_FAILED, JOB_QUEUED},           {JOB_CANCELLED, JOB_CANCELLED},
            {JOB_QUEUED, JOB_QUEUED},
    };

    for (size_t i = 0; i < ELEMENTSOF(ok); i++)
        CHECK(job_state_transition_allowed(ok[i][0], ok[i][1]));
    for (size_t i = 0; i < ELEMENTSOF(bad); i++)
        CHECK(!job_state_transition_allowed(bad[i][0], bad[i][1]));
    for (int s = 0; s < _JOB_STATE_MAX; s++) {
        bool final = job_state_is_final((JobState)s);

        CHECK(job_state_transition_allowed((JobState)s, JOB_FAILED) == !final);
        CHECK(job_state_transition_allowed((JobState)s, JOB_CANCELLED) == !final);
    }
    CHECK(job_state_is_active(JOB_DETACHING) && job_state_is_active(JOB_MANIFESTING));
    CHECK(!job_state_is_active(JOB_QUEUED) && !job_state_is_active(JOB_SUCCEEDED));
}

static void test_job_record(T *t)
{
    _cleanup_(job_freep) Job *j = new_job(7, "1-3.2");

    CHECK(j);
    CHECK(j->state == JOB_QUEUED && j->n_transitions == 1);
    CHECK(j->transitions[0].realtime_usec == 1000);
    CHECK_STREQ(j->transitions[0].reason, "queued by test");
    CHECK(j->bytes_total == image->image->payload_size);
    CHECK(image->n_ref == 2);
    CHECK(job_set_state(j, JOB_DETACHING, 2000, "board in %s mode", "runtime") == 0);
    CHECK(j->started_usec == 2000 && j->finished_usec == 0);
    CHECK(job_set_state(j, JOB_WAITING_FOR_REPLUG, 3000, "detached") == 0);
    CHECK(job_set_state(j, JOB_SUCCEEDED, 3500, "too early") == -EINVAL);
    CHECK(j->state == JOB_WAITING_FOR_REPLUG && j->n_transitions == 3);
    CHECK(job_set_state(j, JOB_DOWNLOADING, 4000, "back") == 0);
    CHECK(job_set_state(j, JOB_MANIFESTING, 5000, "sent") == 0);
    CHECK(job_set_state(j, JOB_SUCCEEDED, 6000, "flashed") == 0);
    CHECK(j->started_usec == 2000 && j->finished_usec == 6000);
    CHECK(j->n_transitions == 6);
    CHECK(j->transitions[2].state == JOB_WAITING_FOR_REPLUG);
    CHECK_STREQ(j->transitions[1].reason, "board in runtime mode");
    CHECK(job_set_state(j, JOB_FAILED, 7000, "no") == -EINVAL);
}

static void test_transitions_bounded(T *t)
{
    _cleanup_(job_freep) Job *j = new_job(1, "1-1");

    CHECK(j);
    for (int i = 0; i < 100; i++) {
        CHECK(job_set_state(j, JOB_DOWNLOADING, 10 + i, "attempt %d", i) == 0);
        CHECK(job_set_state(j, JOB_QUEUED, 10 + i, "retry %d", i) == 0);
    }
    CHECK(job_set_state(j, JOB_FAILED, 999, "gave up") == 0);
    CHECK(j->n_transitions == JOB_TRANSITIONS_MAX);
    /* The last word is always kept. */
    CHECK(j->transitions[JOB_TRANSITIONS_MAX - 1].state == JOB_FAILED);
    CHECK_STREQ(j->transitions[JOB_TRANSITIONS_MAX - 1].reason, "gave up");
}

static void test_progress(T *t)
{
    _cleanup_(job_freep) Job *j = new_job(1, "1-1");
    char where[128];

    CHECK(j);
    CHECK(job_set_state(j, JOB_DOWNLOADING, 1, "go") == 0);
    job_begin_download(j, 1000000);
    job_set_progress(j, 37000, 100000, 578, 3000000);
    CHECK(j->percent == 37 && j->block == 578);
    CHECK(j->rate == 18500); /* 37000 bytes in 2 s */
    job_describe_position(j, where, sizeof(where));
    CHECK_STREQ(where, "during download at 37% (block 578)");
    CHECK(job_set_state(j, JOB_MANIFESTING, 2, "sent") == 0);
    job_describe_position(j, where, sizeof(where));
    CHECK(strstr(where, "during manifestation"));
    job_begin_download(j, 5000000);
    CHECK(j->bytes_sent == 0 && j->percent == 0 && j->rate == 0);
    job_set_progress(j, 10, 10, 1, 5000000); /* no time elapsed: no rate, no division */
    CHECK(j->rate == 0 && j->percent == 100);
}

static void test_error_record(T *t)
{
    _cleanup_(job_freep) Job *j = new_job(1, "1-1");
    ErrInfo e = {.code = ERR_DFU_STATUS};
    DfuReport rep = {.phase = DFU_PHASE_DOWNLOAD, .block = 12, .offset = 768, .dfu_status = 3};

    CHECK(j);
    snprintf(e.message, sizeof(e.message), "block 12: errWRITE");
    job_set_error(j, &e, &rep);
    CHECK(j->has_report && j->report.block == 12 && j->report.dfu_status == 3);
    CHECK(j->error.code == ERR_DFU_STATUS);
    CHECK_STREQ(j->error.message, "block 12: errWRITE");
    job_set_error(j, &e, NULL);
    CHECK(!j->has_report);
}

static void test_transient(T *t)
{
    CHECK(job_error_is_transient(ERR_USB_TIMEOUT));
    CHECK(job_error_is_transient(ERR_USB_TRANSFER));
    CHECK(job_error_is_transient(ERR_DFU_STATUS));
    CHECK(job_error_is_transient(ERR_DNBUSY_TIMEOUT));
    CHECK(!job_error_is_transient(ERR_DISCONNECTED));
    CHECK(!job_error_is_transient(ERR_WRONG_CHIP));
    CHECK(!job_error_is_transient(ERR_CANCELLED));
    CHECK(!job_error_is_transient(ERR_JOB_TIMEOUT));
    CHECK(!job_error_is_transient(ERR_REPLUG_TIMEOUT));
    CHECK(!job_error_is_transient(ERR_USB_NO_DFU));
}

static void test_after_copy(T *t)
{
    _cleanup_(job_freep) Job *j = new_job(1, "1-1");
    char *argv[] = {"/bin/echo", "hi", NULL};

    CHECK(j);
    CHECK(job_set_after(j, AFTER_HOOK, argv, 9) == 0);
    /* A copy: the rule may be gone after a reload while the job still runs. */
    CHECK(j->hook_argv != argv && j->hook_argv[0] != argv[0]);
    CHECK_STREQ(j->hook_argv[1], "hi");
    CHECK(j->hook_argv[2] == NULL && j->hook_timeout_s == 9);
}

static void test_new_states(T *t)
{
    _cleanup_(job_freep) Job *a = new_job(1, "1-1");
    _cleanup_(job_freep) Job *b = new_job(2, "1-2");
    _cleanup_(job_freep) Job *c = new_job(3, "1-3");

    CHECK(a && b && c);
    CHECK_STREQ(job_state_to_string(JOB_INTERRUPTED), "interrupted");
    CHECK_STREQ(job_state_to_string(JOB_EXPIRED), "expired");
    CHECK(job_state_from_string("expired") == JOB_EXPIRED);
    CHECK(job_state_is_final(JOB_INTERRUPTED) && job_state_is_final(JOB_EXPIRED));
    CHECK(!job_state_is_active(JOB_INTERRUPTED) && !job_state_is_active(JOB_EXPIRED));

    /* interrupted from every live state, expired only before the board was there */
    for (int s = 0; s < _JOB_STATE_MAX; s++) {
        bool final = job_state_is_final((JobState)s);

        CHECK(job_state_transition_allowed((JobState)s, JOB_INTERRUPTED) == !final);
        CHECK(job_state_transition_allowed((JobState)s, JOB_EXPIRED) ==
              (s == JOB_QUEUED || s == JOB_WAITING_FOR_BOARD));
        CHECK(final || !job_state_transition_allowed(JOB_INTERRUPTED, (JobState)s));
        CHECK(final || !job_state_transition_allowed(JOB_EXPIRED, (JobState)s));
    }

    CHECK(job_set_state(a, JOB_DOWNLOADING, 10, "go") == 0);
    CHECK(job_set_state(a, JOB_EXPIRED, 11, "no") == -EINVAL);
    CHECK(job_set_state(a, JOB_INTERRUPTED, 12, "daemon stopped") == 0);
    CHECK(a->state == JOB_INTERRUPTED && a->finished_usec == 12);
    CHECK(job_set_state(a, JOB_FAILED, 13, "no") == -EINVAL);

    CHECK(job_set_state(b, JOB_WAITING_FOR_BOARD, 10, "no board") == 0);
    CHECK(job_set_state(b, JOB_INTERRUPTED, 11, "daemon stopped") == 0);

    CHECK(job_set_state(c, JOB_WAITING_FOR_BOARD, 10, "no board") == 0);
    CHECK(job_set_state(c, JOB_EXPIRED, 20, "no board for 10 s") == 0);
    CHECK(c->state == JOB_EXPIRED && c->finished_usec == 20);
    CHECK(job_set_state(c, JOB_INTERRUPTED, 21, "no") == -EINVAL);

    CHECK(job_set_state(a, JOB_SUCCEEDED, 30, "no") == -EINVAL);
    CHECK(!job_state_transition_allowed(JOB_SUCCEEDED, JOB_INTERRUPTED));
    CHECK(!job_state_transition_allowed(JOB_SUCCEEDED, JOB_EXPIRED));
}

static void test_new_error_codes(T *t)
{
    CHECK_STREQ(espdfu_err_to_string(ERR_INTERRUPTED), "interrupted");
    CHECK_STREQ(espdfu_err_to_string(ERR_WAIT_TIMEOUT), "wait-timeout");
    CHECK(espdfu_err_from_string("wait-timeout") == ERR_WAIT_TIMEOUT);
    CHECK(espdfu_err_errno(ERR_INTERRUPTED) == EINTR);
    CHECK(espdfu_err_errno(ERR_WAIT_TIMEOUT) == ETIMEDOUT);
    CHECK(!job_error_is_transient(ERR_INTERRUPTED));
    CHECK(!job_error_is_transient(ERR_WAIT_TIMEOUT));
    /* Appended, never reordered: the numbers are in the history file too. */
    CHECK(ERR_INTERRUPTED == ERR_NO_BOARD + 1 && ERR_WAIT_TIMEOUT == ERR_INTERRUPTED + 1);
    for (int e = 0; e < _ERR_MAX; e++) {
        CHECK(espdfu_err_to_string((EspdfuErr)e));
        CHECK(espdfu_err_from_string(espdfu_err_to_string((EspdfuErr)e)) == (EspdfuErr)e);
    }
}

static void fail_attempt(Job *j, uint64_t at, EspdfuErr code, DfuPhase phase, uint32_t block,
                         const char *msg)
{
    ErrInfo e = {.code = code};
    DfuReport rep = {
            .phase = phase, .block = block, .offset = (uint64_t)block * 64, .dfu_status = -1};

    snprintf(e.message, sizeof(e.message), "%s", msg);
    job_begin_attempt(j, at);
    job_begin_download(j, at);
    job_set_progress(j, (uint64_t)block * 64, j->bytes_total, block, at + 1);
    job_end_attempt(j, at + 2, &e, &rep);
}

static void test_attempts_recorded(T *t)
{
    _cleanup_(job_freep) Job *j = new_job(1, "1-1");

    CHECK(j);
    job_end_attempt(j, 5, NULL, NULL); /* none runs: nothing happens */
    CHECK(j->n_attempts == 0);
    fail_attempt(j, 100, ERR_USB_TIMEOUT, DFU_PHASE_DOWNLOAD, 412, "block 412: timed out");
    CHECK(j->n_attempts == 1 && j->attempts[0].finished_usec == 102);

    job_begin_attempt(j, 200);
    CHECK(j->n_attempts == 2 && j->bytes_sent == 0 && j->block == 0);
    CHECK(j->attempts[1].started_usec == 200 && j->attempts[1].finished_usec == 0);
    job_set_progress(j, j->bytes_total, j->bytes_total, 999, 300);
    job_end_attempt(j, 300, NULL, NULL);
    job_end_attempt(j, 400, &(ErrInfo){.code = ERR_USB_STALL}, NULL); /* already ended */
    job_clear_error(j);

    CHECK(j->error.code == ERR_OK && j->error.message[0] == 0 && !j->has_report);
    CHECK(j->attempts[0].error.code == ERR_USB_TIMEOUT);
    CHECK(j->attempts[0].has_report && j->attempts[0].report.block == 412);
    CHECK(j->attempts[0].bytes == 412 * 64);
    CHECK(j->attempts[1].error.code == ERR_OK && !j->attempts[1].has_report);
    CHECK(j->attempts[1].finished_usec == 300 && j->attempts[1].bytes == j->bytes_total);
}

static void test_root_cause(T *t)
{
    _cleanup_(job_freep) Job *j = new_job(1, "1-1");
    ErrInfo e = {.code = ERR_DFU_STATE};
    DfuReport rep = {.phase = DFU_PHASE_PREPARE, .block = 0, .dfu_status = -1};

    CHECK(j);
    fail_attempt(j, 100, ERR_USB_TIMEOUT, DFU_PHASE_DOWNLOAD, 412, "block 412: timed out");
    snprintf(e.message, sizeof(e.message), "board stuck in dfuERROR");
    job_begin_attempt(j, 200);
    job_end_attempt(j, 210, &e, &rep);
    CHECK(job_error_is_consequence(&e, true, &rep));

    job_set_final_error(j, &e, &rep);
    CHECK(j->error.code == ERR_USB_TIMEOUT);
    CHECK(j->has_report && j->report.phase == DFU_PHASE_DOWNLOAD && j->report.block == 412);
    CHECK_STREQ(j->error.message, "block 412: timed out (retry: board stuck in dfuERROR)");
    /* the attempts keep what each one saw */
    CHECK(j->attempts[1].error.code == ERR_DFU_STATE);
    CHECK(j->attempts[0].error.message[strlen("block 412: timed out")] == 0);
}

static void test_root_cause_not_consequence(T *t)
{
    _cleanup_(job_freep) Job *j = new_job(1, "1-1");
    ErrInfo e = {.code = ERR_DISCONNECTED};
    DfuReport rep = {.phase = DFU_PHASE_DOWNLOAD, .block = 30, .dfu_status = -1};

    CHECK(j);
    fail_attempt(j, 100, ERR_USB_TIMEOUT, DFU_PHASE_DOWNLOAD, 412, "block 412: timed out");
    snprintf(e.message, sizeof(e.message), "board disconnected");
    job_begin_attempt(j, 200);
    job_end_attempt(j, 210, &e, &rep);
    CHECK(!job_error_is_consequence(&e, true, &rep));
    job_set_final_error(j, &e, &rep);
    CHECK(j->error.code == ERR_DISCONNECTED && j->report.block == 30);
    CHECK_STREQ(j->error.message, "board disconnected");

    /* One failed attempt only: nothing to trace back to. */
    _cleanup_(job_freep) Job *k = new_job(2, "1-1");
    CHECK(k);
    fail_attempt(k, 100, ERR_USB_OPEN, DFU_PHASE_PREPARE, 0, "cannot open");
    job_set_final_error(k, &k->attempts[0].error, &k->attempts[0].report);
    CHECK(k->error.code == ERR_USB_OPEN);
    CHECK_STREQ(k->error.message, "cannot open");
}

static void test_root_cause_message_too_long(T *t)
{
    _cleanup_(job_freep) Job *j = new_job(1, "1-1");
    char long_msg[200];
    ErrInfo e = {.code = ERR_USB_CLAIM};

    CHECK(j);
    memset(long_msg, 'x', sizeof(long_msg) - 1);
    long_msg[sizeof(long_msg) - 1] = 0;
    fail_attempt(j, 100, ERR_USB_STALL, DFU_PHASE_DOWNLOAD, 7, long_msg);
    snprintf(e.message, sizeof(e.message), "%s", long_msg);
    job_begin_attempt(j, 200);
    job_end_attempt(j, 210, &e, NULL);
    job_set_final_error(j, &e, NULL);
    /* The root cause, whole, rather than a retry note cut in the middle. */
    CHECK(j->error.code == ERR_USB_STALL && j->report.block == 7);
    CHECK_STREQ(j->error.message, long_msg);
}

static void test_attempts_bounded(T *t)
{
    _cleanup_(job_freep) Job *j = new_job(1, "1-1");

    CHECK(j);
    for (unsigned i = 0; i < 20; i++)
        fail_attempt(j, 100 * (i + 1), i == 0 ? ERR_USB_TIMEOUT : ERR_DFU_STATE, DFU_PHASE_PREPARE,
                     i, "failed");
    CHECK(j->n_attempts == JOB_ATTEMPTS_MAX);
    CHECK(j->attempts[0].error.code == ERR_USB_TIMEOUT && j->attempts[0].started_usec == 100);
    /* The last slot holds the latest attempt. */
    CHECK(j->attempts[JOB_ATTEMPTS_MAX - 1].started_usec == 2000);
    CHECK(j->attempts[JOB_ATTEMPTS_MAX - 1].report.block == 19);
}

static void json_putp(json_object **o)
{
    json_object_put(*o);
}

static json_object *get(json_object *o, const char *key)
{
    json_object *v = NULL;

    json_object_object_get_ex(o, key, &v);
    return v;
}

static void test_json_attempts(T *t)
{
    _cleanup_(job_freep) Job *j = new_job(1, "1-1");
    _cleanup_(json_putp) json_object *o = NULL;
    json_object *a, *v, *err;

    CHECK(j);
    fail_attempt(j, 1000000, ERR_USB_TIMEOUT, DFU_PHASE_DOWNLOAD, 412, "block 412: timed out");
    job_begin_attempt(j, 2000000);
    job_begin_download(j, 2000000);
    job_set_progress(j, 640, j->bytes_total, 10, 2000001);
    job_end_attempt(j, 3000000, NULL, NULL);
    job_clear_error(j);

    CHECK((o = job_to_json(j)));
    CHECK(json_object_object_get_ex(o, "error", &err) && err == NULL);
    CHECK(json_object_get_int(get(get(o, "progress"), "block")) == 10);
    CHECK((a = get(o, "attempts")) && json_object_is_type(a, json_type_array));
    CHECK(json_object_array_length(a) == 2);

    v = json_object_array_get_idx(a, 0);
    CHECK(json_object_get_int(get(v, "n")) == 1);
    CHECK((err = get(v, "error")));
    CHECK_STREQ(json_object_get_string(get(err, "code")), "usb-timeout");
    CHECK_STREQ(json_object_get_string(get(err, "phase")), "download");
    CHECK(json_object_get_int(get(err, "block")) == 412);

    v = json_object_array_get_idx(a, 1);
    CHECK(json_object_get_int(get(v, "n")) == 2);
    CHECK(json_object_object_get_ex(v, "error", &err) && err == NULL);
    CHECK(json_object_get_int64(get(v, "bytes")) == 640);
    CHECK_STREQ(json_object_get_string(get(v, "started")), "2.000000");
    CHECK_STREQ(json_object_get_string(get(v, "finished")), "3.000000");
}

/* ---- the queue ---- */

static bool always(void *userdata, Job *j)
{
    return true;
}

static bool not_on_port(void *userdata, Job *j)
{
    return strcmp(j->path, userdata) != 0;
}

static void test_queue_fifo_per_port(T *t)
{
    _cleanup_(job_queue_freep) JobQueue *q = NULL;
    Job *a1, *b1, *a2, *c1;

    CHECK(job_queue_new(&q) == 0);
    CHECK((a1 = new_job(1, "1-1")) && job_queue_push(q, a1) == 0);
    CHECK((b1 = new_job(2, "1-2")) && job_queue_push(q, b1) == 0);
    CHECK((a2 = new_job(3, "1-1")) && job_queue_push(q, a2) == 0);
    CHECK((c1 = new_job(4, "1-3")) && job_queue_push(q, c1) == 0);
    CHECK(job_queue_count(q) == 4 && job_queue_count_path(q, "1-1") == 2);
    CHECK(job_queue_head(q, "1-1") == a1 && job_queue_head(q, "1-9") == NULL);

    /* Every port's first job can start, in id order; the second on 1-1 cannot. */
    CHECK(job_queue_next_startable(q, always, NULL) == a1);
    CHECK(job_set_state(a1, JOB_DOWNLOADING, 1, "go") == 0);
    CHECK(job_queue_next_startable(q, always, NULL) == b1);
    CHECK(job_set_state(b1, JOB_DETACHING, 1, "go") == 0);
    CHECK(job_queue_next_startable(q, always, NULL) == c1);
    CHECK(job_set_state(c1, JOB_DOWNLOADING, 1, "go") == 0);
    CHECK(job_queue_next_startable(q, always, NULL) == NULL);

    /* a1 finished but its worker has not answered: 1-1 stays busy. */
    CHECK(job_set_state(a1, JOB_CANCELLED, 2, "stop") == 0);
    CHECK(job_queue_next_startable(q, always, NULL) == NULL);
    job_queue_remove(q, a1);
    job_free(a1);
    CHECK(job_queue_next_startable(q, always, NULL) == a2);
    /* can_start says no (no board, no worker): nothing else is picked for that port. */
    CHECK(job_queue_next_startable(q, not_on_port, "1-1") == NULL);
}

static void test_queue_waiting_board_skipped(T *t)
{
    _cleanup_(job_queue_freep) JobQueue *q = NULL;
    Job *a, *b;

    CHECK(job_queue_new(&q) == 0);
    CHECK((a = new_job(1, "2-1")) && job_queue_push(q, a) == 0);
    CHECK((b = new_job(2, "2-2")) && job_queue_push(q, b) == 0);
    CHECK(job_set_state(a, JOB_WAITING_FOR_BOARD, 1, "no board") == 0);
    /* An older job waiting for its board does not hold up other ports. */
    CHECK(job_queue_next_startable(q, not_on_port, "2-1") == b);
    CHECK(job_queue_next_startable(q, always, NULL) == a);
}

static void test_queue_order_and_find(T *t)
{
    _cleanup_(job_queue_freep) JobQueue *q = NULL;
    uint64_t ids[] = {5, 2, 9, 7, 1};
    uint64_t last = 0;
    Job *j;

    CHECK(job_queue_new(&q) == 0);
    /* The history gets jobs in the order they finish, not the order of their ids. */
    for (size_t i = 0; i < ELEMENTSOF(ids); i++)
        CHECK((j = new_job(ids[i], "1-1")) && job_queue_push(q, j) == 0);
    CHECK((j = new_job(7, "1-1")));
    CHECK(job_queue_push(q, j) == -EEXIST);
    job_free(j);
    for (j = job_queue_next(q, NULL); j; j = job_queue_next(q, j)) {
        CHECK(j->id > last);
        last = j->id;
    }
    CHECK(last == 9);
    CHECK(job_queue_find(q, 7) && job_queue_find(q, 7)->id == 7);
    CHECK(job_queue_find(q, 1) && job_queue_find(q, 9));
    CHECK(job_queue_find(q, 3) == NULL && job_queue_find(q, 10) == NULL);
}

static void test_queue_bounded(T *t)
{
    _cleanup_(job_queue_freep) JobQueue *q = NULL;
    Job *j;

    CHECK(job_queue_new(&q) == 0);
    for (uint64_t i = 1; i <= JOB_QUEUE_MAX; i++)
        CHECK((j = new_job(i, "1-1")) && job_queue_push(q, j) == 0);
    CHECK((j = new_job(JOB_QUEUE_MAX + 1, "1-1")));
    CHECK(job_queue_push(q, j) == -ENOSPC);
    job_free(j);
    CHECK(job_queue_count(q) == JOB_QUEUE_MAX);
}

int main(void)
{
    if (load_image() < 0) {
        fprintf(stderr, "cannot load %s\n", S2_IMAGE);
        return 1;
    }
    RUN(test_state_strings);
    RUN(test_transitions);
    RUN(test_job_record);
    RUN(test_transitions_bounded);
    RUN(test_progress);
    RUN(test_error_record);
    RUN(test_transient);
    RUN(test_after_copy);
    RUN(test_new_states);
    RUN(test_new_error_codes);
    RUN(test_attempts_recorded);
    RUN(test_root_cause);
    RUN(test_root_cause_not_consequence);
    RUN(test_root_cause_message_too_long);
    RUN(test_attempts_bounded);
    RUN(test_json_attempts);
    RUN(test_queue_fifo_per_port);
    RUN(test_queue_waiting_board_skipped);
    RUN(test_queue_order_and_find);
    RUN(test_queue_bounded);
    cached_image_unref(image);
    image_cache_free(cache);
    return test_summary();
}
