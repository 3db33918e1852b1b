/* SPDX-License-Identifier: MIT */
#include "worker.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "timeutil.h"
#include "usb.h"
#include "util.h"

struct Worker {
    WorkerPool *pool;
    pthread_t thread;
    bool started;
    /* Under pool->lock: the latest progress, overwritten rather than queued. */
    WorkerProgress progress;
    bool progress_dirty;
    /* Worker thread only. */
    uint64_t last_progress_usec;
};

struct WorkerPool {
    pthread_mutex_t lock;
    pthread_cond_t wake;     /* a request is queued, or stopping */
    pthread_cond_t idle;     /* a thread finished a request or exited */
    WorkerRequest *requests; /* ring of WORKER_QUEUE_MAX */
    size_t req_head, req_n;
    WorkerResult *results; /* ring of WORKER_QUEUE_MAX: never fuller than outstanding */
    size_t res_head, res_n;
    unsigned outstanding;
    unsigned alive;
    bool stopping;
    bool signalled; /* the eventfd was written since the last drain */
    int efd;
    WorkerRunFn run;
    unsigned n;
    Worker workers[];
};

static const char *const worker_action_table[] = {
        [WORKER_DETACH] = "detach",
        [WORKER_DOWNLOAD] = "download",
        [WORKER_RESET] = "reset",
};
DEFINE_STRING_TABLE_TO_STRING(worker_action, WorkerAction, _WORKER_ACTION_MAX)

/* Called with p->lock held. One eventfd write per drain is enough to wake the loop. */
static void pool_signal(WorkerPool *p)
{
    if (p->signalled)
        return;
    p->signalled = true;
    (void)!eventfd_write(p->efd, 1);
}

void worker_post_progress(Worker *w, uint64_t job_id, uint64_t sent, uint64_t total, uint32_t block,
                          bool force)
{
    WorkerPool *p = w->pool;
    uint64_t now = now_usec(CLOCK_MONOTONIC);

    if (!force && w->last_progress_usec &&
        now - w->last_progress_usec < WORKER_PROGRESS_INTERVAL_USEC)
        return;
    w->last_progress_usec = now;
    pthread_mutex_lock(&p->lock);
    w->progress = (WorkerProgress){.job_id = job_id, .sent = sent, .total = total, .block = block};
    w->progress_dirty = true;
    pool_signal(p);
    pthread_mutex_unlock(&p->lock);
}

/* ---- the USB implementation ---- */

typedef struct ProgressContext {
    Worker *worker;
    uint64_t job_id;
    uint16_t transfer_size;
} ProgressContext;

static void on_dfu_progress(void *userdata, uint64_t sent, uint64_t total)
{
    ProgressContext *c = userdata;

    worker_post_progress(c->worker, c->job_id, sent, total,
                         (uint32_t)(sent / (c->transfer_size ? c->transfer_size : 1)),
                         sent == total);
}

static int run_detach(UsbBoard *b, const WorkerRequest *req, WorkerResult *res)
{
    DfuSession s;
    int r;

    if (usb_board_mode(b) == USB_DFU_MODE) {
        res->already_dfu = true;
        return 0;
    }
    usb_board_session(b, &req->dfu, &s);
    s.cancel = req->cancel;
    r = dfu_detach(&s, &res->err);
    return r < 0 ? r : 0;
}

static int run_download(Worker *w, UsbBoard *b, const WorkerRequest *req, WorkerResult *res)
{
    ProgressContext ctx = {.worker = w, .job_id = req->job_id};
    DfuSession s;
    int r;

    if (usb_board_mode(b) != USB_DFU_MODE)
        return err_set(&res->err, ERR_DFU_STATE,
                       "the board on %s is in run-time mode, not DFU mode", req->path);
    /* Checked again on the board itself: udev's idProduct was read before the replug. */
    if (!image_matches_device(req->image, usb_board_vid(b), usb_board_pid(b)))
        return err_set(&res->err, ERR_WRONG_CHIP,
                       "image is for %04x:%04x but the board is %04x:%04x", req->image->vid,
                       req->image->pid, usb_board_vid(b), usb_board_pid(b));
    /* A retry after a hung transfer or an unknown state: only a reset brings the board
     * back; ABORT and CLRSTATUS (prepare) cannot reach a board that answers nothing. */
    if (req->reset_first) {
        const DfuTransport *t = usb_board_transport(b);

        r = t->reset ? t->reset(t->userdata) : -EOPNOTSUPP;
        if (r < 0)
            return err_set(&res->err, r == -ENODEV ? ERR_DISCONNECTED : ERR_USB_TRANSFER,
                           "USB reset of %s before the retry failed: %s", req->path, strerror(-r));
    }
    usb_board_session(b, &req->dfu, &s);
    ctx.transfer_size = s.functional.transfer_size;
    s.progress = on_dfu_progress;
    s.progress_userdata = &ctx;
    s.cancel = req->cancel;
    worker_post_progress(w, req->job_id, 0, req->image->payload_size, 0, true);
    r = dfu_download(&s, req->image->data, req->image->payload_size, &res->report, &res->err);
    res->has_report = r < 0;
    return r;
}

static int run_reset(UsbBoard *b, const WorkerRequest *req, WorkerResult *res)
{
    const DfuTransport *t = usb_board_transport(b);
    int r;

    if (!t->reset)
        return err_set(&res->err, ERR_USB_TRANSFER, "this transport cannot reset a port");
    r = t->reset(t->userdata);
    /* -ENODEV: the board re-enumerated as something else, which a reset may well do. */
    if (r < 0 && r != -ENODEV)
        return err_set(&res->err, ERR_USB_TRANSFER, "USB reset of %s failed: %s", req->path,
                       strerror(-r));
    return 0;
}

static void worker_run_usb(Worker *w, const WorkerRequest *req, WorkerResult *res)
{
    UsbBoard *b = NULL;

    if (req->cancel && atomic_load(req->cancel)) {
        res->r = err_set(&res->err, ERR_CANCELLED, "cancelled before the board was opened");
        return;
    }
    res->r = usb_board_open(req->devnode, &b, &res->err);
    if (res->r < 0)
        return;
    res->pid = usb_board_pid(b);
    switch (req->action) {
    case WORKER_DETACH:
        res->r = run_detach(b, req, res);
        break;
    case WORKER_DOWNLOAD:
        res->r = run_download(w, b, req, res);
        break;
    case WORKER_RESET:
        res->r = run_reset(b, req, res);
        break;
    case _WORKER_ACTION_MAX:
        res->r = err_set(&res->err, ERR_USB_OPEN, "bad worker action");
        break;
    }
    /* Closed at once: no handle stays open between requests. */
    usb_board_close(b);
}

/* ---- the pool ---- */

static void *worker_main(void *arg)
{
    Worker *w = arg;
    WorkerPool *p = w->pool;

    pthread_mutex_lock(&p->lock);
    for (;;) {
        WorkerRequest req;
        WorkerResult res;
        uint64_t start;

        while (!p->stopping && p->req_n == 0)
            pthread_cond_wait(&p->wake, &p->lock);
        if (p->stopping)
            break;
        req = p->requests[p->req_head];
        p->req_head = (p->req_head + 1) % WORKER_QUEUE_MAX;
        p->req_n--;
        pthread_mutex_unlock(&p->lock);

        res = (WorkerResult){.job_id = req.job_id, .action = req.action};
        start = now_usec(CLOCK_MONOTONIC);
        w->last_progress_usec = 0;
        p->run(w, &req, &res);
        res.elapsed_usec = now_usec(CLOCK_MONOTONIC) - start;

        pthread_mutex_lock(&p->lock);
        p->results[(p->res_head + p->res_n) % WORKER_QUEUE_MAX] = res;
        p->res_n++;
        pool_signal(p);
        pthread_cond_broadcast(&p->idle);
    }
    p->alive--;
    pthread_cond_broadcast(&p->idle);
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

static void pool_free(WorkerPool *p)
{
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->idle);
    pthread_mutex_destroy(&p->lock);
    closep(&p->efd);
    free(p->requests);
    free(p->results);
    free(p);
}

static int pool_start_threads(WorkerPool *p)
{
    sigset_t all, old;
    int r = 0;

    /* Threads inherit the mask: signals stay with the main loop's signalfd. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    for (unsigned i = 0; i < p->n; i++) {
        p->workers[i].pool = p;
        r = -pthread_create(&p->workers[i].thread, NULL, worker_main, &p->workers[i]);
        if (r < 0)
            break;
        p->workers[i].started = true;
        pthread_mutex_lock(&p->lock);
        p->alive++;
        pthread_mutex_unlock(&p->lock);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return r;
}

int worker_pool_new(unsigned n, WorkerRunFn run, WorkerPool **ret)
{
    WorkerPool *p;
    int r;

    if (n == 0 || n > WORKER_POOL_MAX)
        return -EINVAL;
    p = calloc(1, sizeof(*p) + n * sizeof(Worker));
    if (!p)
        return -ENOMEM;
    p->n = n;
    p->run = run ? run : worker_run_usb;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->idle, NULL);
    p->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    p->requests = calloc(WORKER_QUEUE_MAX, sizeof(*p->requests));
    p->results = calloc(WORKER_QUEUE_MAX, sizeof(*p->results));
    if (p->efd < 0 || !p->requests || !p->results) {
        r = p->efd < 0 ? -errno : -ENOMEM;
        pool_free(p);
        return r;
    }
    r = pool_start_threads(p);
    if (r < 0) {
        (void)worker_pool_shutdown(p, 0);
        return r;
    }
    *ret = p;
    return 0;
}

int worker_pool_fd(const WorkerPool *p)
{
    return p->efd;
}

unsigned worker_pool_size(const WorkerPool *p)
{
    return p->n;
}

unsigned worker_pool_outstanding(const WorkerPool *p)
{
    /* Only the main thread changes it, so no lock is needed to read it there. */
    return p->outstanding;
}

int worker_pool_submit(WorkerPool *p, const WorkerRequest *req)
{
    int r = 0;

    pthread_mutex_lock(&p->lock);
    if (p->stopping)
        r = -ESHUTDOWN;
    else if (p->outstanding >= WORKER_QUEUE_MAX)
        r = -EAGAIN;
    else {
        p->requests[(p->req_head + p->req_n) % WORKER_QUEUE_MAX] = *req;
        p->req_n++;
        p->outstanding++;
        pthread_cond_signal(&p->wake);
    }
    pthread_mutex_unlock(&p->lock);
    return r;
}

void worker_pool_drain(WorkerPool *p, void (*on_progress)(void *userdata, const WorkerProgress *pr),
                       void (*on_result)(void *userdata, const WorkerResult *res), void *userdata)
{
    WorkerProgress progress[WORKER_POOL_MAX];
    unsigned n_progress = 0;
    eventfd_t v;

    (void)eventfd_read(p->efd, &v);
    pthread_mutex_lock(&p->lock);
    /* Cleared before looking, so anything posted from now on writes the eventfd again. */
    p->signalled = false;
    for (unsigned i = 0; i < p->n && n_progress < WORKER_POOL_MAX; i++)
        if (p->workers[i].progress_dirty) {
            progress[n_progress++] = p->workers[i].progress;
            p->workers[i].progress_dirty = false;
        }
    pthread_mutex_unlock(&p->lock);
    for (unsigned i = 0; i < n_progress; i++)
        on_progress(userdata, &progress[i]);

    for (;;) {
        WorkerResult res;

        pthread_mutex_lock(&p->lock);
        if (p->res_n == 0) {
            pthread_mutex_unlock(&p->lock);
            break;
        }
        res = p->results[p->res_head];
        p->res_head = (p->res_head + 1) % WORKER_QUEUE_MAX;
        p->res_n--;
        p->outstanding--;
        pthread_mutex_unlock(&p->lock);
        on_result(userdata, &res);
    }
}

int worker_pool_shutdown(WorkerPool *p, uint64_t timeout_usec)
{
    struct timespec deadline;
    uint64_t end = now_usec(CLOCK_REALTIME) + timeout_usec;
    bool all_exited;

    deadline = (struct timespec){.tv_sec = (time_t)(end / USEC_PER_SEC),
                                 .tv_nsec = (long)(end % USEC_PER_SEC) * 1000};
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    p->req_n = 0; /* queued requests are dropped: nobody waits for their results */
    pthread_cond_broadcast(&p->wake);
    while (p->alive > 0)
        if (pthread_cond_timedwait(&p->idle, &p->lock, &deadline) == ETIMEDOUT)
            break;
    all_exited = p->alive == 0;
    pthread_mutex_unlock(&p->lock);
    if (!all_exited)
        return -ETIMEDOUT; /* busy threads still use p: leave it to the process exit */
    for (unsigned i = 0; i < p->n; i++)
        if (p->workers[i].started)
            pthread_join(p->workers[i].thread, NULL);
    pool_free(p);
    return 0;
}
