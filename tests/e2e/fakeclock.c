/* SPDX-License-Identifier: MIT */
/*
 * fakeclock.so: an LD_PRELOAD shim that lets tests step the wall clock and
 * the boot clock of one process, the way settimeofday() and a suspend do
 * for the whole machine, without touching the machine's clock.
 *
 *   FAKECLOCK_REALTIME=SECONDS   the process's CLOCK_REALTIME at start
 *                                (epoch seconds, may have a fraction)
 *   FAKECLOCK_CTL=PATH           a FIFO; each line "step REAL_S BOOT_S"
 *                                moves CLOCK_REALTIME by REAL_S and
 *                                CLOCK_BOOTTIME by BOOT_S seconds
 *                                (a suspend moves both; settimeofday()
 *                                only the first)
 *
 * What the kernel does on a clock change, the shim does for the process's
 * timerfds: absolute CLOCK_REALTIME (or CLOCK_BOOTTIME) timers are armed
 * again against the new clock (so a step forwards expires them at once),
 * and a timer armed with TFD_TIMER_CANCEL_ON_SET becomes readable and its
 * next read() fails with ECANCELED. CLOCK_MONOTONIC is never moved.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define NSEC_PER_SEC INT64_C(1000000000)
#define MAX_FDS 4096

typedef struct Timer {
        bool tracked;   /* a timerfd on CLOCK_REALTIME or CLOCK_BOOTTIME */
        clockid_t clock;
        int flags;      /* of the last timerfd_settime() */
        struct itimerspec value; /* as the process asked, on its clock */
        bool cancelled; /* the next read() fails with ECANCELED */
} Timer;

static int (*real_clock_gettime)(clockid_t, struct timespec *);
static int (*real_timerfd_create)(int, int);
static int (*real_timerfd_settime)(int, int, const struct itimerspec *, struct itimerspec *);
static ssize_t (*real_read)(int, void *, size_t);
static int (*real_close)(int);

static _Atomic int64_t realtime_offset; /* ns added to the real clock */
static _Atomic int64_t boottime_offset;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static Timer timers[MAX_FDS];

static int64_t ts_to_ns(const struct timespec *ts) {
        return (int64_t) ts->tv_sec * NSEC_PER_SEC + ts->tv_nsec;
}

static struct timespec ns_to_ts(int64_t ns) {
        return (struct timespec) { .tv_sec = ns / NSEC_PER_SEC, .tv_nsec = ns % NSEC_PER_SEC };
}

static int64_t offset_of(clockid_t c) {
        switch (c) {
        case CLOCK_REALTIME:
        case CLOCK_REALTIME_COARSE:
                return atomic_load(&realtime_offset);
        case CLOCK_BOOTTIME:
                return atomic_load(&boottime_offset);
        default:
                return 0;
        }
}

static void resolve(void) {
        if (real_clock_gettime)
                return;
        real_clock_gettime = dlsym(RTLD_NEXT, "clock_gettime");
        real_timerfd_create = dlsym(RTLD_NEXT, "timerfd_create");
        real_timerfd_settime = dlsym(RTLD_NEXT, "timerfd_settime");
        real_read = dlsym(RTLD_NEXT, "read");
        real_close = dlsym(RTLD_NEXT, "close");
}

/* ---- clocks ---- */

int clock_gettime(clockid_t c, struct timespec *ts) {
        int64_t off;

        resolve();
        if (real_clock_gettime(c, ts) < 0)
                return -1;
        off = offset_of(c);
        if (off != 0)
                *ts = ns_to_ts(ts_to_ns(ts) + off);
        return 0;
}

int gettimeofday(struct timeval *restrict tv, void *restrict tz) {
        struct timespec ts;

        (void) tz;
        if (clock_gettime(CLOCK_REALTIME, &ts) < 0)
                return -1;
        tv->tv_sec = ts.tv_sec;
        tv->tv_usec = ts.tv_nsec / 1000;
        return 0;
}

time_t time(time_t *t) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_REALTIME, &ts);
        if (t)
                *t = ts.tv_sec;
        return ts.tv_sec;
}

/* ---- timerfds ---- */

static bool fd_ok(int fd) {
        return fd >= 0 && fd < MAX_FDS;
}

/* Arms FD on the real clock for what the process asked on its clock.
 * Called with the lock held. */
static int arm_locked(int fd, const Timer *t, struct itimerspec *old) {
        struct itimerspec its = t->value;
        int flags = t->flags;

        /* A time too far for nanoseconds (systemd's "end of time") stays as it is. */
        if ((flags & TFD_TIMER_ABSTIME) && (its.it_value.tv_sec != 0 || its.it_value.tv_nsec != 0) &&
            its.it_value.tv_sec < INT64_MAX / NSEC_PER_SEC - 1) {
                int64_t real = ts_to_ns(&its.it_value) - offset_of(t->clock);
                its.it_value = ns_to_ts(real > 0 ? real : 1);
        }
        return real_timerfd_settime(fd, flags, &its, old);
}

int timerfd_create(int c, int flags) {
        int fd;

        resolve();
        fd = real_timerfd_create(c, flags);
        if (fd >= 0 && fd_ok(fd) && (c == CLOCK_REALTIME || c == CLOCK_BOOTTIME)) {
                pthread_mutex_lock(&lock);
                timers[fd] = (Timer) { .tracked = true, .clock = c };
                pthread_mutex_unlock(&lock);
        }
        return fd;
}

int timerfd_settime(int fd, int flags, const struct itimerspec *new, struct itimerspec *old) {
        int r;

        resolve();
        if (!fd_ok(fd))
                return real_timerfd_settime(fd, flags, new, old);
        pthread_mutex_lock(&lock);
        if (!timers[fd].tracked) {
                pthread_mutex_unlock(&lock);
                return real_timerfd_settime(fd, flags, new, old);
        }
        timers[fd].flags = flags;
        timers[fd].value = *new;
        timers[fd].cancelled = false;
        r = arm_locked(fd, &timers[fd], old);
        pthread_mutex_unlock(&lock);
        return r;
}

ssize_t read(int fd, void *buf, size_t n) {
        resolve();
        if (fd_ok(fd)) {
                pthread_mutex_lock(&lock);
                if (timers[fd].tracked && timers[fd].cancelled) {
                        uint64_t ticks;
                        timers[fd].cancelled = false;
                        (void) real_read(fd, &ticks, sizeof(ticks)); /* drain the wake-up */
                        pthread_mutex_unlock(&lock);
                        errno = ECANCELED;
                        return -1;
                }
                pthread_mutex_unlock(&lock);
        }
        return real_read(fd, buf, n);
}

int close(int fd) {
        resolve();
        if (fd_ok(fd)) {
                pthread_mutex_lock(&lock);
                timers[fd] = (Timer) { 0 };
                pthread_mutex_unlock(&lock);
        }
        return real_close(fd);
}

/* ---- steps ---- */

/* What the kernel's clock_was_set() does to timerfds. */
static void step(int64_t real_ns, int64_t boot_ns) {
        static const struct itimerspec soon = { .it_value.tv_nsec = 1 };

        pthread_mutex_lock(&lock);
        atomic_fetch_add(&realtime_offset, real_ns);
        atomic_fetch_add(&boottime_offset, boot_ns);
        for (int fd = 0; fd < MAX_FDS; fd++) {
                Timer *t = &timers[fd];
                bool armed = t->value.it_value.tv_sec != 0 || t->value.it_value.tv_nsec != 0;

                if (!t->tracked || !armed)
                        continue;
                if (t->clock == CLOCK_REALTIME && (t->flags & TFD_TIMER_CANCEL_ON_SET) && real_ns != 0) {
                        t->cancelled = true;
                        (void) real_timerfd_settime(fd, 0, &soon, NULL);
                } else if (t->flags & TFD_TIMER_ABSTIME)
                        (void) arm_locked(fd, t, NULL);
        }
        pthread_mutex_unlock(&lock);
}

static void *control(void *arg) {
        FILE *f = arg;
        char line[256];

        while (fgets(line, sizeof(line), f)) {
                double real_s, boot_s;
                if (sscanf(line, "step %lf %lf", &real_s, &boot_s) == 2)
                        step((int64_t) (real_s * 1e9), (int64_t) (boot_s * 1e9));
                else
                        fprintf(stderr, "fakeclock: cannot parse %s", line);
        }
        return NULL;
}

__attribute__((constructor)) static void fakeclock_init(void) {
        const char *start = getenv("FAKECLOCK_REALTIME"), *ctl = getenv("FAKECLOCK_CTL");
        pthread_t thread;
        FILE *f;
        int fd;

        resolve();
        if (start) {
                struct timespec now;
                real_clock_gettime(CLOCK_REALTIME, &now);
                atomic_store(&realtime_offset, (int64_t) (strtod(start, NULL) * 1e9) - ts_to_ns(&now));
        }
        if (!ctl)
                return;
        /* Opened here, before main(): a test may write a step as soon as the
         * process runs, even if it stops it at once. O_RDWR: the FIFO never
         * reports end of file when a writer closes. */
        fd = open(ctl, O_RDWR | O_CLOEXEC);
        if (fd < 0 || !(f = fdopen(fd, "r"))) {
                fprintf(stderr, "fakeclock: cannot open %s: %m\n", ctl);
                abort();
        }
        if (pthread_create(&thread, NULL, control, f) != 0)
                abort();
        pthread_detach(thread);
}
