/* SPDX-License-Identifier: MIT */
/*
 * The durable state behind one interface: load it (with the intents
 * recorded since it was last saved, replayed over it), save it, record
 * intents before their POSTs leave, and put an unreadable one aside. The
 * local state.json and its intent log are one implementation
 * (store_file_new()); a store shared by several machines is another.
 *
 * A store may fail a write (a full disk: the state stays in memory and the
 * next write tries again), or refuse it with -ESTALE: this instance may no
 * longer write at all (another one took over, a lease was lost), and must
 * stop acting on the state.
 */
#pragma once

#include <stdint.h>

#include "state.h"

typedef struct Store Store;

typedef struct StoreOps {
        /* Reads the state; -EBADMSG (with a description in *reterr_message)
         * for one that is not valid, other negative errno values for I/O
         * errors (with a description when there is one). */
        int (*load)(Store *s, State **ret, char **reterr_message);
        /* Writes the whole state. */
        int (*save)(Store *s, State *state);
        /* Makes the intents of the N entries ENVS durable, faster than a
         * save; -EAGAIN, -ENOSPC and the like when only a save() can. */
        int (*record_intents)(Store *s, State *state, StateEnv *const *envs, size_t n);
        /* Puts the state that load() refused aside, for a human; where it
         * went in *ret_where (may be NULL). */
        int (*discard)(Store *s, int64_t now, char **ret_where);
        Store *(*free)(Store *s);
} StoreOps;

struct Store {
        const StoreOps *ops;
        char *description; /* for messages: "/var/lib/refreshd/state.json" */
};

/* The local store: DIR/state.json and the intent log DIR/intents, for this
 * process alone while it lives: -EBUSY (reported, naming the PID that has
 * it) when another holds DIR/lock. A log that cannot be opened is warned
 * about (intents then go to state.json alone, which is slower). */
int store_file_new(const char *dir, Store **ret);

static inline int store_load(Store *s, State **ret, char **reterr_message) {
        return s->ops->load(s, ret, reterr_message);
}

static inline int store_save(Store *s, State *state) {
        return s->ops->save(s, state);
}

static inline int store_record_intents(Store *s, State *state, StateEnv *const *envs, size_t n) {
        return s->ops->record_intents(s, state, envs, n);
}

static inline int store_discard(Store *s, int64_t now, char **ret_where) {
        return s->ops->discard(s, now, ret_where);
}

static inline Store *store_free(Store *s) {
        return s ? s->ops->free(s) : NULL;
}
