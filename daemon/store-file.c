/* SPDX-License-Identifier: MIT */
/*
 * The local store: state.json (state.c) and its intent log (intentlog.c)
 * in one directory, which one daemon at a time has: it holds an exclusive
 * flock() on the directory (released only when the process ends or frees
 * the store), and DIR/lock names its PID, for the message the next one gets.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <syslog.h>
#include <unistd.h>

#include "fileio.h"
#include "intentlog.h"
#include "macro.h"
#include "report.h"
#include "store.h"

typedef struct FileStore {
        Store store;
        char *dir;
        int intent_fd; /* the intent log, or -EBADF: intents go in state.json */
        int lock_fd;   /* DIR itself, locked */
} FileStore;

#define LOCK_FILE_NAME "lock"

/* The PID the lock file in DIRFD names, or 0. */
static long lock_holder(int dirfd) {
        _cleanup_(closep) int fd =
                openat(dirfd, LOCK_FILE_NAME, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        char buf[24];
        ssize_t n;

        if (fd < 0)
                return 0;
        n = pread(fd, buf, sizeof(buf) - 1, 0);
        if (n <= 0)
                return 0;
        buf[n] = 0;
        return strtol(buf, NULL, 10);
}

/* Writes this process's PID in DIRFD's lock file, for the message another
 * one gets; a read-only directory keeps the lock without it. */
static void lock_write_pid(int dirfd) {
        _cleanup_(closep) int fd = -EBADF;
        char pid[24];
        int n = snprintf(pid, sizeof(pid), "%ld\n", (long) getpid());

        fd = open_regular(dirfd, LOCK_FILE_NAME, O_WRONLY | O_CREAT | O_NOFOLLOW, 0644, NULL);
        if (fd >= 0 && ftruncate(fd, 0) >= 0)
                (void) pwrite_all(fd, pid, (size_t) n, 0);
}

/* Takes the directory DIR for this process: an exclusive flock() on the
 * directory itself (it needs no write access, and goes with the process
 * however it ends), or says who has it. */
static int lock_dir(const char *dir, int *ret_fd) {
        _cleanup_(closep) int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        int r;

        if (fd < 0) {
                r = -errno;
                report_log(LOG_ERR, "cannot open the state directory %s: %s", dir, strerror(-r));
                return r;
        }
        if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
                long holder = lock_holder(fd);

                r = -errno;
                if (r != -EWOULDBLOCK) {
                        report_log(LOG_ERR, "cannot lock the state directory %s: %s", dir, strerror(-r));
                        return r;
                }
                if (holder > 0)
                        report_log(
                                LOG_ERR,
                                "the state directory %s is in use by another refreshd (PID %ld): one daemon "
                                "per "
                                "state directory",
                                dir,
                                holder);
                else
                        report_log(
                                LOG_ERR,
                                "the state directory %s is in use by another refreshd: one daemon per state "
                                "directory",
                                dir);
                return -EBUSY;
        }
        lock_write_pid(fd);
        *ret_fd = TAKE_FD(fd);
        return 0;
}

static FileStore *file_store(Store *s) {
        return (FileStore *) s;
}

static int file_load(Store *s, State **ret, char **reterr_message) {
        return state_load(file_store(s)->dir, ret, reterr_message);
}

static int file_save(Store *s, State *state) {
        return state_save(file_store(s)->dir, state);
}

static int file_record_intents(Store *s, State *state, StateEnv *const *envs, size_t n) {
        FileStore *f = file_store(s);

        if (f->intent_fd < 0)
                return -EBADF;
        return state_log_intents(state, f->intent_fd, envs, n);
}

static int file_discard(Store *s, int64_t now, char **ret_where) {
        return state_move_aside(file_store(s)->dir, now, ret_where);
}

static Store *file_free(Store *s) {
        FileStore *f = file_store(s);

        if (f->intent_fd >= 0)
                (void) close(f->intent_fd);
        if (f->lock_fd >= 0)
                (void) close(f->lock_fd); /* the lock goes with it (the PID file stays: it names no one) */
        free(f->dir);
        free(s->description);
        free(f);
        return NULL;
}

static const StoreOps file_ops = {
        .load = file_load,
        .save = file_save,
        .record_intents = file_record_intents,
        .discard = file_discard,
        .free = file_free,
};

int store_file_new(const char *dir, Store **ret) {
        FileStore *f = calloc(1, sizeof(FileStore));
        int r;

        if (!f)
                return -ENOMEM;
        *f = (FileStore) {
                .store.ops = &file_ops, .intent_fd = -EBADF, .lock_fd = -EBADF, .dir = strdup(dir)
        };
        if (!f->dir || asprintf(&f->store.description, "%s/%s", dir, STATE_FILE_NAME) < 0) {
                f->store.description = NULL;
                file_free(&f->store);
                return -ENOMEM;
        }
        r = lock_dir(dir, &f->lock_fd);
        if (r < 0) {
                file_free(&f->store);
                return r;
        }
        r = intent_log_open(dir, &f->intent_fd);
        if (r < 0)
                report_log(
                        LOG_WARNING,
                        "cannot open %s/%s: %s; intents go to %s alone, which is slower",
                        dir,
                        INTENT_LOG_FILE_NAME,
                        fileio_error(r),
                        STATE_FILE_NAME);
        *ret = &f->store;
        return 0;
}
