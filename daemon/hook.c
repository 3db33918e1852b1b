/* SPDX-License-Identifier: MIT */
#include "hook.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "timeutil.h"
#include "util.h"

extern char **environ;

struct Hook {
    pid_t pid;
    bool timed_out;
    sd_event_source *child;
    sd_event_source *timer;
    HookDoneFn done;
    void *userdata;
};

static int on_child(sd_event_source *s, const siginfo_t *si, void *userdata)
{
    Hook *h = userdata;
    int status = si->si_code == CLD_EXITED ? si->si_status : -si->si_status;

    h->timer = sd_event_source_disable_unref(h->timer);
    h->done(h->userdata, h, status);
    return 0;
}

static int on_timeout(sd_event_source *s, uint64_t usec, void *userdata)
{
    Hook *h = userdata;

    h->timed_out = true;
    /* Through the child source: it uses the pidfd, so a recycled pid is never hit. */
    (void)sd_event_source_send_child_signal(h->child, SIGKILL, NULL, 0);
    return 0;
}

static bool env_replaced(const char *entry, char *const *env)
{
    for (char *const *e = env; *e; e++) {
        const char *eq = strchr(*e, '=');
        size_t n = eq ? (size_t)(eq - *e) + 1 : strlen(*e);

        if (strncmp(entry, *e, n) == 0)
            return true;
    }
    return false;
}

/* environ minus what env overrides, plus env; the strings are borrowed. */
static char **build_env(char *const *env)
{
    size_t n = 0, k = 0, extra = 0;
    char **v;

    while (environ[n])
        n++;
    while (env[extra])
        extra++;
    v = calloc(n + extra + 1, sizeof(char *));
    if (!v)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (!env_replaced(environ[i], env))
            v[k++] = environ[i];
    for (size_t i = 0; i < extra; i++)
        v[k++] = env[i];
    return v;
}

static int spawn(char *const *argv, char *const *env, pid_t *ret)
{
    _cleanup_free_ char **envp = build_env(env);
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t none, all;
    int r;

    if (!envp)
        return -ENOMEM;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    /* The daemon blocks SIGTERM, SIGCHLD...: a hook must start with a clean slate. */
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    r = -posix_spawn(ret, argv[0], &fa, &attr, argv, envp);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
    return r;
}

int hook_spawn(sd_event *e, char *const *argv, char *const *env, unsigned timeout_s,
               HookDoneFn done, void *userdata, Hook **ret)
{
    Hook *h;
    int r;

    h = calloc(1, sizeof(*h));
    if (!h)
        return -ENOMEM;
    h->done = done;
    h->userdata = userdata;
    r = spawn(argv, env, &h->pid);
    if (r < 0) {
        free(h);
        return r;
    }
    r = sd_event_add_child(e, &h->child, h->pid, WEXITED, on_child, h);
    if (r >= 0)
        r = sd_event_add_time_relative(e, &h->timer, CLOCK_MONOTONIC,
                                       (uint64_t)timeout_s * USEC_PER_SEC, 0, on_timeout, h);
    if (r < 0) {
        /* Not watched means not bounded: do not leave it running. */
        kill(h->pid, SIGKILL);
        if (!h->child)
            (void)waitpid(h->pid, NULL, 0);
        hook_free(h);
        return r;
    }
    *ret = h;
    return 0;
}

Hook *hook_free(Hook *h)
{
    if (!h)
        return NULL;
    sd_event_source_disable_unref(h->timer);
    sd_event_source_disable_unref(h->child);
    free(h);
    return NULL;
}

pid_t hook_pid(const Hook *h)
{
    return h->pid;
}

bool hook_timed_out(const Hook *h)
{
    return h->timed_out;
}
