/* SPDX-License-Identifier: MIT */
/*
 * One program run on the event loop, as a hook is run: spawned
 * (posix_spawn, no shell), stdin /dev/null, only the environment it is given, none of the
 * daemon's file descriptors, in a process group of its own. Its stdout and
 * stderr come back line by line; its end (exit status or signal) as one
 * callback, from a child source, so the loop never waits for it. Past its
 * timeout it gets SIGTERM, and SIGKILL HOOK_KILL_AFTER later. Knows nothing
 * of events or of what the program is for.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#define HOOK_KILL_AFTER (10 * 1000000ULL) /* µs from SIGTERM to SIGKILL */
#define HOOK_LINE_MAX 4096                /* longer lines come in pieces */

typedef struct HookRun HookRun;

typedef struct HookResult {
        int exit_status; /* when it exited: 0..255; -1 when a signal ended it */
        int signal;      /* the signal that ended it, or 0 */
        bool timed_out;  /* it was still running at its timeout */
        uint64_t duration_usec;
} HookResult;

/* A line the program wrote (without its newline) on stdout or, with
 * STDERR, on stderr. */
typedef void (*HookLineFunc)(void *userdata, bool stderr, const char *line);

/* The program ended; RUN is freed when this returns. */
typedef void (*HookDoneFunc)(HookRun *run, const HookResult *result, void *userdata);

typedef struct HookSpec {
        const char *const *argv; /* argv[0] the absolute path executed */
        const char *const *envp; /* its whole environment */
        uint64_t timeout;        /* µs */
        HookLineFunc line;
        HookDoneFunc done;
        void *userdata;
} HookSpec;

/* Starts the program; a negative errno when it cannot be executed
 * (-ENOENT, -EACCES, ...). */
int hook_run_start(sd_event *event, const HookSpec *spec, HookRun **ret);

/* Stops following the program without a callback, and sends its process
 * group SIGTERM if it still runs. */
HookRun *hook_run_free(HookRun *run);
