/* SPDX-License-Identifier: MIT */
/*
 * A thread per client image, answered through an eventfd, abandoned at its
 * deadline. See image-loader.h.
 */
#include "image-loader.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "log.h"
#include "timeutil.h"
#include "util.h"

typedef struct ImageLoad {
    ImageLoader *loader;
    pthread_t thread;
    int fd;
    uint8_t *buf; /* what was read so far: freed by whoever frees the load, even after a cancel */
    uint64_t timeout_usec;
    /* Written by the thread before it sets done, under the loader's lock. */
    int r;
    Image *img;
    ErrInfo err;
    bool done;
    bool orphaned;  /* the loader is gone: the thread frees this itself */
    bool abandoned; /* answered already: its deadline passed, or the loader is going */
    sd_event_source *timer;
    ImageLoadFn fn;
    void *userdata;
    struct ImageLoad *next;
} ImageLoad;

struct ImageLoader {
    sd_event *event;
    int efd;
    sd_event_source *source;
    pthread_mutex_t lock;
    ImageLoad *loads;
    unsigned n; /* threads alive, abandoned ones too */
};

/* Loaders freed while a thread was stuck: kept reachable, the exit ends them. */
static ImageLoader *orphaned_loaders[8];

static void load_free(ImageLoad *ld)
{
    sd_event_source_disable_unref(ld->timer);
    image_free(ld->img);
    free(ld->buf);
    free(ld);
}

/* The thread's last word, whether it finished or was cancelled in its read. */
static void load_finish(ImageLoad *ld, int r, Image *img, const ErrInfo *err)
{
    ImageLoader *l = ld->loader;

    close(ld->fd);
    ld->fd = -1;
    pthread_mutex_lock(&l->lock);
    if (ld->orphaned) {
        l->n--;
        pthread_mutex_unlock(&l->lock);
        image_free(img);
        load_free(ld);
        return;
    }
    ld->r = r;
    ld->img = img;
    ld->err = *err;
    ld->done = true;
    pthread_mutex_unlock(&l->lock);
    (void)eventfd_write(l->efd, 1);
}

static void on_thread_cancelled(void *userdata)
{
    ErrInfo err = {.code = ERR_IMAGE_IO};

    snprintf(err.message, sizeof(err.message), "the read was abandoned");
    load_finish(userdata, -ECANCELED, NULL, &err);
}

static void *load_thread(void *userdata)
{
    ImageLoad *ld = userdata;
    Image *img = NULL;
    ErrInfo err = {};
    size_t size = 0;
    int r, old;

    /* Cancelled at its deadline, in pread: what it read is in ld->buf, freed by the loop. */
    pthread_cleanup_push(on_thread_cancelled, ld);
    r = image_read_fd_into(ld->fd, IMAGE_MAX_SIZE, &ld->buf, &size, &err);
    pthread_cleanup_pop(0);
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old);
    if (r >= 0)
        r = image_load_buffer(&ld->buf, size, &img, &err);
    load_finish(ld, r, img, &err);
    return NULL;
}

/* Finished loads: joined, answered unless abandoned, freed. */
static int on_done(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
    ImageLoader *l = userdata;
    ImageLoad *finished = NULL;
    eventfd_t v;

    (void)eventfd_read(fd, &v);
    pthread_mutex_lock(&l->lock);
    for (ImageLoad **p = &l->loads; *p;) {
        ImageLoad *ld = *p;

        if (!ld->done) {
            p = &ld->next;
            continue;
        }
        *p = ld->next;
        ld->next = finished;
        finished = ld;
        l->n--;
    }
    pthread_mutex_unlock(&l->lock);
    while (finished) {
        ImageLoad *ld = finished;

        finished = ld->next;
        pthread_join(ld->thread, NULL);
        if (!ld->abandoned)
            ld->fn(ld->userdata, ld->r, &ld->img, &ld->err);
        load_free(ld);
    }
    return 0;
}

static int on_deadline(sd_event_source *s, uint64_t usec, void *userdata)
{
    ImageLoad *ld = userdata;
    ErrInfo err = {.code = ERR_IMAGE_IO};

    /* The thread is cancelled at its read (a read that never returns in the kernel keeps
     * its slot until it does); its answer, if it still comes, is thrown away. */
    ld->abandoned = true;
    pthread_cancel(ld->thread);
    snprintf(err.message, sizeof(err.message),
             "the file did not deliver within %" PRIu64 " s (image-timeout-s); refused",
             ld->timeout_usec / USEC_PER_SEC);
    ld->fn(ld->userdata, -ETIMEDOUT, NULL, &err);
    return 0;
}

int image_loader_new(sd_event *e, ImageLoader **ret)
{
    ImageLoader *l = calloc(1, sizeof(*l));
    int r;

    if (!l)
        return -ENOMEM;
    pthread_mutex_init(&l->lock, NULL);
    l->event = sd_event_ref(e);
    l->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (l->efd < 0) {
        r = -errno;
        image_loader_free(l);
        return r;
    }
    r = sd_event_add_io(e, &l->source, l->efd, EPOLLIN, on_done, l);
    if (r < 0) {
        image_loader_free(l);
        return r;
    }
    (void)sd_event_source_set_description(l->source, "image-loader");
    *ret = l;
    return 0;
}

ImageLoader *image_loader_free(ImageLoader *l)
{
    unsigned stuck = 0;

    if (!l)
        return NULL;
    l->source = sd_event_source_disable_unref(l->source);
    /* Whoever waits for an answer gets one, so it can free what it holds. */
    for (ImageLoad *ld = l->loads; ld; ld = ld->next)
        if (!ld->abandoned) {
            ErrInfo err = {.code = ERR_IMAGE_IO};

            snprintf(err.message, sizeof(err.message), "espdfud is stopping");
            ld->abandoned = true;
            ld->fn(ld->userdata, -ECANCELED, NULL, &err);
        }
    pthread_mutex_lock(&l->lock);
    for (ImageLoad *ld = l->loads, *next; ld; ld = next) {
        next = ld->next;
        if (ld->done) {
            pthread_join(ld->thread, NULL);
            load_free(ld);
            continue;
        }
        /* Still reading: the thread frees it when (if ever) the read returns. */
        ld->orphaned = true;
        ld->timer = sd_event_source_disable_unref(ld->timer);
        pthread_cancel(ld->thread);
        pthread_detach(ld->thread);
        stuck++;
    }
    l->loads = NULL;
    pthread_mutex_unlock(&l->lock);
    sd_event_unref(TAKE_PTR(l->event));
    if (stuck) {
        for (size_t i = 0; i < ELEMENTSOF(orphaned_loaders); i++)
            if (!orphaned_loaders[i]) {
                orphaned_loaders[i] = l;
                break;
            }
        log_warning("%u image%s still being read at exit; left to the process exit", stuck,
                    stuck == 1 ? "" : "s");
        return NULL;
    }
    if (l->efd >= 0)
        close(l->efd);
    pthread_mutex_destroy(&l->lock);
    free(l);
    return NULL;
}

int image_loader_load(ImageLoader *l, int fd, uint64_t timeout_usec, ImageLoadFn fn, void *userdata)
{
    _cleanup_close_ int owned = fd;
    ImageLoad *ld;
    pthread_attr_t attr;
    sigset_t all, old;
    int r;

    if (l->n >= IMAGE_LOADER_MAX)
        return -EBUSY;
    ld = calloc(1, sizeof(*ld));
    if (!ld)
        return -ENOMEM;
    *ld = (ImageLoad){
            .loader = l, .fd = -1, .timeout_usec = timeout_usec, .fn = fn, .userdata = userdata};
    r = sd_event_add_time_relative(l->event, &ld->timer, CLOCK_MONOTONIC, timeout_usec, 0,
                                   on_deadline, ld);
    if (r < 0) {
        load_free(ld);
        return r;
    }
    ld->fd = TAKE_FD(owned);
    /* Like the workers: no signal is ever delivered to it. */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    pthread_attr_init(&attr);
    pthread_mutex_lock(&l->lock);
    r = -pthread_create(&ld->thread, &attr, load_thread, ld);
    if (r >= 0) {
        ld->next = l->loads;
        l->loads = ld;
        l->n++;
    }
    pthread_mutex_unlock(&l->lock);
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r < 0) {
        close(ld->fd);
        load_free(ld);
        return r;
    }
    return 0;
}
