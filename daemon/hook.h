/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * A rule's after=hook program: spawned with posix_spawn(3), no shell, stdin
 * from /dev/null, stdout and stderr shared with the daemon (the journal), a
 * clean signal mask, the daemon's environment plus the ESPDFU_* variables.
 * Watched with sd_event_add_child(); killed with SIGKILL when it outlives its
 * timeout. Main thread only.
 */

#include <stdbool.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

typedef struct Hook Hook;

/* status: the exit code (>= 0), or minus the signal that ended it. */
typedef void (*HookDoneFn)(void *userdata, Hook *h, int status);

/* env: extra "NAME=value" strings, NULL-terminated; they replace inherited ones. */
int hook_spawn(sd_event *e, char *const *argv, char *const *env, unsigned timeout_s,
               HookDoneFn done, void *userdata, Hook **ret);
/* Stops watching; a hook still running is left to finish on its own. */
Hook *hook_free(Hook *h);

pid_t hook_pid(const Hook *h);
bool hook_timed_out(const Hook *h);
