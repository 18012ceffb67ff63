/* SPDX-License-Identifier: MIT */
/*
 * The local store: state.json (state.c) and its intent log (intentlog.c)
 * in one directory.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
} FileStore;

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
        *f = (FileStore) { .store.ops = &file_ops, .intent_fd = -EBADF, .dir = strdup(dir) };
        if (!f->dir || asprintf(&f->store.description, "%s/%s", dir, STATE_FILE_NAME) < 0) {
                f->store.description = NULL;
                file_free(&f->store);
                return -ENOMEM;
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
