/* SPDX-License-Identifier: MIT */
/*
 * Programs under test: started with the testbed's environment, waited for
 * while our main context runs (the boards' timers and uevents need it).
 */
#include <errno.h>
#include <glib-unix.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "emu-internal.h"

#define UMOCKDEV_PRELOAD "libumockdev-preload.so.0"

struct EmuChild {
    GPid pid;
    bool exited;
    int status; /* shell-style */
    int out_fd; /* read end of the capture pipe, -1 when done */
    GString *output;
    GSource *watch, *out_source;
};

/* The shim that gives each process's uevent socket a unique name (emu-shim.c). */
static const char *shim_path(void)
{
    const char *s = g_getenv("ESPDFU_EMU_SHIM");

    if (s)
        return *s ? s : NULL;
#ifdef ESPDFU_EMU_SHIM_PATH
    if (g_file_test(ESPDFU_EMU_SHIM_PATH, G_FILE_TEST_EXISTS))
        return ESPDFU_EMU_SHIM_PATH;
#endif
    return NULL;
}

/* LD_PRELOAD minus the umockdev preload and our shim. */
static char *preload_rest(void)
{
    const char *cur = g_getenv("LD_PRELOAD");
    g_auto(GStrv) parts = g_strsplit_set(cur ? cur : "", ": ", -1);
    GString *s = g_string_new(NULL);

    for (size_t i = 0; parts[i]; i++) {
        if (!*parts[i] || strstr(parts[i], "libumockdev-preload") ||
            strstr(parts[i], "espdfu-emu-shim"))
            continue;
        if (s->len)
            g_string_append_c(s, ':');
        g_string_append(s, parts[i]);
    }
    return g_string_free(s, FALSE);
}

char **emu_child_env(Emu *e, char *const extra[])
{
    char **env = g_get_environ();
    g_autofree char *rest = preload_rest();
    const char *shim = shim_path();
    const char *asan = g_environ_getenv(env, "ASAN_OPTIONS");
    g_autofree char *preload = NULL;
    g_autofree char *asan_opts = NULL;

    /* The shim comes first: it wraps umockdev's bind(). */
    preload = g_strdup_printf("%s%s%s%s%s", shim ? shim : "", shim ? ":" : "", UMOCKDEV_PRELOAD,
                              *rest ? ":" : "", rest);
    env = g_environ_setenv(env, "LD_PRELOAD", preload, TRUE);
    env = g_environ_setenv(env, "UMOCKDEV_DIR", e->root_dir, TRUE);
    /* An ASan program under another preload refuses to start without this. */
    if (!asan || !strstr(asan, "verify_asan_link_order")) {
        asan_opts = asan && *asan ? g_strconcat(asan, ":verify_asan_link_order=0", NULL)
                                  : g_strdup("verify_asan_link_order=0");
        env = g_environ_setenv(env, "ASAN_OPTIONS", asan_opts, TRUE);
    }
    for (size_t i = 0; extra && extra[i]; i++) {
        g_auto(GStrv) kv = g_strsplit(extra[i], "=", 2);

        if (kv[0] && kv[1])
            env = g_environ_setenv(env, kv[0], kv[1], TRUE);
    }
    return env;
}

static void on_child_exit(GPid pid, int wait_status, void *data)
{
    EmuChild *c = data;

    c->exited = true;
    if (WIFEXITED(wait_status))
        c->status = WEXITSTATUS(wait_status);
    else if (WIFSIGNALED(wait_status))
        c->status = 128 + WTERMSIG(wait_status);
    else
        c->status = 255;
    g_spawn_close_pid(pid);
}

static gboolean on_output(int fd, GIOCondition cond, void *data)
{
    EmuChild *c = data;
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof(buf));

    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return G_SOURCE_CONTINUE;
    if (n <= 0) {
        close(c->out_fd);
        c->out_fd = -1;
        g_source_unref(c->out_source);
        c->out_source = NULL;
        return G_SOURCE_REMOVE;
    }
    g_string_append_len(c->output, buf, n);
    if (write(STDERR_FILENO, buf, (size_t)n) < 0) /* echoed, for ctest's log */
        return G_SOURCE_CONTINUE;
    return G_SOURCE_CONTINUE;
}

int emu_spawn(Emu *e, char *const argv[], char *const env[], bool capture, EmuChild **ret)
{
    g_auto(GStrv) envp = emu_child_env(e, env);
    g_autoptr(GError) err = NULL;
    EmuChild *c = g_new0(EmuChild, 1);
    int pipefd[2] = {-1, -1};

    c->out_fd = -1;
    if (capture && !g_unix_open_pipe(pipefd, FD_CLOEXEC, NULL)) {
        g_free(c);
        return -errno;
    }
    if (!g_spawn_async_with_pipes_and_fds(
                NULL, (const char *const *)argv, (const char *const *)envp,
                G_SPAWN_SEARCH_PATH | G_SPAWN_DO_NOT_REAP_CHILD, NULL, NULL, -1, pipefd[1],
                pipefd[1], NULL, NULL, 0, &c->pid, NULL, NULL, NULL, &err)) {
        emu_log("cannot run %s: %s\n", argv[0], err->message);
        if (capture) {
            close(pipefd[0]);
            close(pipefd[1]);
        }
        g_free(c);
        return -ENOENT;
    }
    if (capture) {
        close(pipefd[1]);
        c->out_fd = pipefd[0];
        c->output = g_string_new(NULL);
        c->out_source = g_unix_fd_source_new(c->out_fd, G_IO_IN | G_IO_HUP | G_IO_ERR);
        g_source_set_callback(c->out_source, G_SOURCE_FUNC(on_output), c, NULL);
        g_source_attach(c->out_source, e->main_ctx);
    }
    c->watch = g_child_watch_source_new(c->pid);
    g_source_set_callback(c->watch, G_SOURCE_FUNC(on_child_exit), c, NULL);
    g_source_attach(c->watch, e->main_ctx);
    *ret = c;
    return 0;
}

pid_t emu_child_pid(const EmuChild *c)
{
    return c->pid;
}

static void child_free(EmuChild *c)
{
    if (c->watch) {
        g_source_destroy(c->watch);
        g_source_unref(c->watch);
    }
    if (c->out_source) {
        g_source_destroy(c->out_source);
        g_source_unref(c->out_source);
    }
    if (c->out_fd >= 0)
        close(c->out_fd);
    if (c->output)
        g_string_free(c->output, TRUE);
    g_free(c);
}

static gboolean set_flag(void *data)
{
    *(bool *)data = true;
    return G_SOURCE_REMOVE;
}

/* A one-shot timer on the main context that sets *flag. */
static GSource *deadline(Emu *e, int ms, bool *flag)
{
    GSource *s = g_timeout_source_new((guint)MAX(ms, 0));

    g_source_set_callback(s, set_flag, flag, NULL);
    g_source_attach(s, e->main_ctx);
    return s;
}

static void source_drop(GSource *s)
{
    g_source_destroy(s);
    g_source_unref(s);
}

int emu_wait_child(Emu *e, EmuChild *c, int timeout_ms, int *ret_status, char **ret_output)
{
    bool expired = false, drained = false;
    GSource *t = timeout_ms >= 0 ? deadline(e, timeout_ms, &expired) : NULL;
    GSource *grace = NULL;
    int r = 0;

    while (!c->exited || (c->out_fd >= 0 && !drained)) {
        if (expired && !c->exited) {
            emu_log("pid %d still running after %d ms, killing it\n", (int)c->pid, timeout_ms);
            kill(c->pid, SIGKILL);
            expired = false;
            r = -ETIMEDOUT;
        }
        /* A background grandchild may hold the output pipe: read for 1 s more at most. */
        if (c->exited && !grace)
            grace = deadline(e, 1000, &drained);
        g_main_context_iteration(e->main_ctx, TRUE);
    }
    if (grace)
        source_drop(grace);
    if (t)
        source_drop(t);
    if (ret_status)
        *ret_status = c->status;
    if (ret_output)
        *ret_output = c->output ? g_strdup(c->output->str) : g_strdup("");
    child_free(c);
    return r;
}

int emu_run(Emu *e, char *const argv[], int timeout_ms, int *ret_status, char **ret_output)
{
    EmuChild *c;
    int r = emu_spawn(e, argv, NULL, ret_output != NULL, &c);

    if (r < 0)
        return r;
    return emu_wait_child(e, c, timeout_ms, ret_status, ret_output);
}

bool emu_iterate_until(Emu *e, bool (*done)(void *data), void *data, int timeout_ms)
{
    bool expired = false;
    GSource *t = deadline(e, timeout_ms, &expired);
    bool ok;

    while (!(ok = done ? done(data) : false) && !expired) {
        /* Conditions are polled: wake at least every 10 ms. */
        bool tick = false;
        GSource *p = deadline(e, 10, &tick);

        while (!tick && !expired)
            g_main_context_iteration(e->main_ctx, TRUE);
        source_drop(p);
    }
    source_drop(t);
    return ok;
}

void emu_iterate(Emu *e, int ms)
{
    emu_iterate_until(e, NULL, NULL, ms);
}

typedef struct ListenerWait {
    Emu *e;
    pid_t pid;
} ListenerWait;

static bool has_listener(void *data)
{
    ListenerWait *w = data;

    return emu_uevents_listeners(w->e->uevents, w->pid) > 0;
}

int emu_wait_listener(Emu *e, pid_t pid, int timeout_ms)
{
    ListenerWait w = {.e = e, .pid = pid};

    return emu_iterate_until(e, has_listener, &w, timeout_ms) ? 0 : -ETIMEDOUT;
}

unsigned emu_listeners(Emu *e, pid_t pid)
{
    return emu_uevents_listeners(e->uevents, pid);
}

int emu_reexec_without_preload(char **argv)
{
    const char *cur = g_getenv("LD_PRELOAD");
    g_autofree char *rest = NULL;

    if (!cur || !strstr(cur, "libumockdev-preload"))
        return 0;
    rest = preload_rest();
    if (*rest)
        g_setenv("LD_PRELOAD", rest, TRUE);
    else
        g_unsetenv("LD_PRELOAD");
    execv("/proc/self/exe", argv);
    return -errno;
}
