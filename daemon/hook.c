/* SPDX-License-Identifier: MIT */
#include "hook.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "macro.h"

typedef struct HookStream {
        HookRun *run;
        sd_event_source *source;
        int fd;
        bool stderr;
        size_t n;
        char buf[HOOK_LINE_MAX + 1];
} HookStream;

struct HookRun {
        HookSpec spec;
        pid_t pid;
        sd_event_source *child, *timer;
        HookStream out, err;
        uint64_t started;
        bool timed_out, killed;
};

static uint64_t now_monotonic(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000;
}

/* ---- output ---- */

static void stream_emit(HookStream *s) {
        s->buf[s->n] = 0;
        s->run->spec.line(s->run->spec.userdata, s->stderr, s->buf);
        s->n = 0;
}

static void stream_close(HookStream *s) {
        if (s->n > 0)
                stream_emit(s);
        s->source = sd_event_source_disable_unref(s->source);
        if (s->fd >= 0)
                (void) close(s->fd);
        s->fd = -EBADF;
}

/* Reads what is there, line by line. Returns false at the end (or an error). */
static bool stream_read(HookStream *s) {
        char chunk[4096];

        if (s->fd < 0)
                return false; /* closed already */
        for (;;) {
                ssize_t n = read(s->fd, chunk, sizeof(chunk));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        return true;
                if (n <= 0)
                        return false;
                for (ssize_t i = 0; i < n; i++) {
                        if (chunk[i] == '\n') {
                                stream_emit(s);
                                continue;
                        }
                        s->buf[s->n++] = chunk[i] ? chunk[i] : ' ';
                        if (s->n == HOOK_LINE_MAX)
                                stream_emit(s);
                }
        }
}

static int on_stream(sd_event_source *source, int fd, uint32_t revents, void *userdata) {
        HookStream *s = userdata;

        if (!stream_read(s))
                stream_close(s);
        return 0;
}

/* ---- the end ---- */

static void run_kill(HookRun *r, int sig) {
        if (r->pid > 0)
                (void) kill(-r->pid, sig); /* its group: what it started too */
}

static int on_timeout(sd_event_source *source, uint64_t usec, void *userdata) {
        HookRun *r = userdata;

        if (!r->timed_out) {
                r->timed_out = true;
                run_kill(r, SIGTERM);
                (void) sd_event_source_set_time_relative(source, HOOK_KILL_AFTER);
                (void) sd_event_source_set_enabled(source, SD_EVENT_ONESHOT);
        } else {
                r->killed = true;
                run_kill(r, SIGKILL);
        }
        return 0;
}

static int on_child(sd_event_source *source, const siginfo_t *si, void *userdata) {
        HookRun *r = userdata;
        HookResult res = {
                .exit_status = si->si_code == CLD_EXITED ? si->si_status : -1,
                .signal = si->si_code == CLD_EXITED ? 0 : si->si_status,
                .timed_out = r->timed_out,
                .duration_usec = now_monotonic() - r->started,
        };

        /* Whatever is still in the pipes, then nothing more: a process it
         * left behind cannot hold the hook open. */
        run_kill(r, SIGKILL);
        r->pid = 0;
        (void) stream_read(&r->out);
        (void) stream_read(&r->err);
        stream_close(&r->out);
        stream_close(&r->err);
        r->spec.done(r, &res, r->spec.userdata);
        hook_run_free(r);
        return 0;
}

/* ---- the start ---- */

/* posix_spawn(): glibc's shares the daemon's memory until the exec (no
 * page tables copied, unlike fork(): a hundred hooks start in a few
 * milliseconds), and reports an exec that failed as an error here. The
 * child gets /dev/null, the two pipes and nothing else, a process group of
 * its own, no blocked signal, and SIGPIPE back to its default. */
static int spawn(const HookSpec *spec, int out, int err, pid_t *ret) {
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t attr;
        sigset_t none, dfl;
        int r;

        sigemptyset(&none);
        sigemptyset(&dfl);
        sigaddset(&dfl, SIGPIPE);
        if ((r = posix_spawn_file_actions_init(&fa)) != 0)
                return -r;
        if ((r = posix_spawnattr_init(&attr)) != 0) {
                posix_spawn_file_actions_destroy(&fa);
                return -r;
        }
        r = posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
        if (r == 0)
                r = posix_spawn_file_actions_adddup2(&fa, out, STDOUT_FILENO);
        if (r == 0)
                r = posix_spawn_file_actions_adddup2(&fa, err, STDERR_FILENO);
        if (r == 0)
                r = posix_spawn_file_actions_addclosefrom_np(&fa, 3);
        if (r == 0)
                r = posix_spawnattr_setflags(
                        &attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
        if (r == 0)
                r = posix_spawnattr_setpgroup(&attr, 0);
        if (r == 0)
                r = posix_spawnattr_setsigmask(&attr, &none);
        if (r == 0)
                r = posix_spawnattr_setsigdefault(&attr, &dfl);
        if (r == 0)
                r = posix_spawn(
                        ret,
                        spec->argv[0],
                        &fa,
                        &attr,
                        (char *const *) spec->argv,
                        (char *const *) spec->envp);
        posix_spawnattr_destroy(&attr);
        posix_spawn_file_actions_destroy(&fa);
        return -r;
}

static int stream_open(sd_event *event, HookRun *r, HookStream *s, int fd, bool stderr) {
        *s = (HookStream) { .run = r, .fd = fd, .stderr = stderr };
        return sd_event_add_io(event, &s->source, fd, EPOLLIN, on_stream, s);
}

int hook_run_start(sd_event *event, const HookSpec *spec, HookRun **ret) {
        _cleanup_(closep) int out_r = -EBADF, out_w = -EBADF, err_r = -EBADF, err_w = -EBADF;
        int out[2], err[2];
        sigset_t chld;
        int r;

        /* sd-event sees a child's end only with SIGCHLD blocked. */
        sigemptyset(&chld);
        sigaddset(&chld, SIGCHLD);
        if (sigprocmask(SIG_BLOCK, &chld, NULL) < 0)
                return -errno;
        if (pipe2(out, O_CLOEXEC) < 0)
                return -errno;
        out_r = out[0], out_w = out[1];
        if (pipe2(err, O_CLOEXEC) < 0)
                return -errno;
        err_r = err[0], err_w = err[1];
        if (fcntl(out_r, F_SETFL, O_NONBLOCK) < 0 || fcntl(err_r, F_SETFL, O_NONBLOCK) < 0)
                return -errno;

        HookRun *run = calloc(1, sizeof(HookRun));
        if (!run)
                return -ENOMEM;
        run->spec = *spec;
        run->out.fd = run->err.fd = -EBADF;
        run->started = now_monotonic();
        r = spawn(spec, out_w, err_w, &run->pid);
        if (r < 0) {
                run->pid = 0;
                free(run);
                return r;
        }

        r = stream_open(event, run, &run->out, TAKE_FD(out_r), false);
        if (r >= 0)
                r = stream_open(event, run, &run->err, TAKE_FD(err_r), true);
        if (r >= 0)
                r = sd_event_add_child(event, &run->child, run->pid, WEXITED, on_child, run);
        if (r >= 0)
                /* From the start itself, not from the loop's idea of now. */
                r = sd_event_add_time(
                        event,
                        &run->timer,
                        CLOCK_MONOTONIC,
                        run->started + spec->timeout,
                        0,
                        on_timeout,
                        run);
        if (r < 0) {
                run_kill(run, SIGKILL);
                (void) waitpid(run->pid, NULL, 0);
                run->pid = 0;
                hook_run_free(run);
                return r;
        }
        if (ret)
                *ret = run;
        return 0;
}

HookRun *hook_run_free(HookRun *run) {
        if (!run)
                return NULL;
        run_kill(run, SIGTERM);
        run->child = sd_event_source_disable_unref(run->child);
        run->timer = sd_event_source_disable_unref(run->timer);
        run->out.n = run->err.n = 0; /* no callback from here */
        stream_close(&run->out);
        stream_close(&run->err);
        free(run);
        return NULL;
}
