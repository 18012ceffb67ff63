/* SPDX-License-Identifier: MIT */
/*
 * state.json, read and written. The file looks like this (every time an
 * RFC 3339 UTC string, written "2026-12-06T02:00:00Z"; null and an absent
 * key both mean "unset"):
 *
 *   {"version": 1, "intent_log": {"id": "<16 hex digits>", "seq": N},
 *    "environments": {"uat": {
 *       "id": "…", "since": T, "last_slot": T, "last_submitted": T,
 *       "intent": {"slot": T!, "track_id": "…", "sent_at": T} | null,
 *       "deferred_until": T, "zuora_last_refresh": T, "zuora_next_refresh": T,
 *       "job": {"id": "…"!, "polling_url": "…"!, "status": "…", "progress": 45,
 *               "submitted_at": T!, "slot": T} | null,
 *       "last_job": {"id": "…", "status": "…", "message": "…", "ended_at": T!,
 *                    "slot": T} | null}}}
 *
 * Keys marked ! must be present and not null. Environments keep the order
 * of State.envs. The loader ignores keys it does not know, at any level, and
 * refuses everything else that is not as above with -EBADMSG and a message
 * naming the place ("environments.uat.last_slot: not a time", "line 3,
 * column 7: not JSON: premature EOF"): the file is written only by us,
 * through an atomic rename, so a file that does not fit is damaged or not
 * ours, and the caller moves it aside and starts clean rather than act on a
 * guess. Times are accepted in any form tz_parse_iso8601() reads and are
 * written back in the canonical one; duplicate keys are refused (RFC 8259
 * leaves their meaning open), and so are strings that are not UTF-8 once
 * their escapes are decoded (a lone "\udc00"; yajl only checks the raw
 * bytes' shape). Comments are tolerated.
 * state_format() checks the same invariants, so it never writes a file that
 * state_parse() refuses, and a file it wrote reads back to the same text.
 *
 * Both directions walk one table of fields (env_fields and the tables it
 * points to): a field added later is one line there. The reader is json.c's
 * tree with the top level's "environments" streamed: each environment
 * becomes an entry as soon as its value is read, and its part of the tree
 * is dropped (a tree of the whole file takes four to five times its size:
 * 25 MB at 10,000 environments with 1,000 jobs in flight). Problems are
 * reported in the order a reader of the whole file finds them: the syntax,
 * then the top level, the names, and only then the first environment that
 * does not fit.
 */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"
#include "intentlog.h"
#include "json.h"
#include "macro.h"
#include "state.h"
#include "tz.h"
#include "utf8.h"

#define STATE_VERSION 1
#define STATE_DEPTH_MAX 64 /* ours is 4 deep; the rest is room for unknown keys */
#define STATE_TEMP_NAME "." STATE_FILE_NAME ".XXXXXX"
#define STATE_ASIDE_MAX 1000

DEFINE_TRIVIAL_CLEANUP_FUNC(State *, state_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(StateJob *, state_job_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(StateLastJob *, state_last_job_free);

static void unlink_and_freep(char **p) {
        if (*p) {
                (void) unlink(*p);
                free(*p);
        }
}

static bool streq_ptr(const char *a, const char *b) {
        if (!a || !b)
                return a == b;
        return strcmp(a, b) == 0;
}

/* ---- objects ---- */

State *state_new(void) {
        return calloc(1, sizeof(State));
}

StateJob *state_job_free(StateJob *j) {
        if (!j)
                return NULL;
        free(j->id);
        free(j->polling_url);
        free(j->status);
        free(j);
        return NULL;
}

StateLastJob *state_last_job_free(StateLastJob *j) {
        if (!j)
                return NULL;
        free(j->id);
        free(j->status);
        free(j->message);
        free(j);
        return NULL;
}

static char *message_dup(const char *m);

static void state_env_init(StateEnv *e) {
        *e = (StateEnv) {
                .since = STATE_TIME_UNSET,
                .last_slot = STATE_TIME_UNSET,
                .last_submitted = STATE_TIME_UNSET,
                .intent_slot = STATE_TIME_UNSET,
                .intent_sent_at = STATE_TIME_UNSET,
                .deferred_until = STATE_TIME_UNSET,
                .zuora_last_refresh = STATE_TIME_UNSET,
                .zuora_next_refresh = STATE_TIME_UNSET,
        };
}

static StateLastEvent *state_last_event_free(StateLastEvent *le) {
        if (le) {
                free(le->event);
                free(le->id);
                free(le->error);
                free(le);
        }
        return NULL;
}

static StatePause *state_pause_free(StatePause *p) {
        if (p) {
                free(p->reason);
                free(p->by);
                free(p);
        }
        return NULL;
}

static void skip_done(StateSkip *k) {
        free(k->environment);
        free(k->reason);
        free(k->by);
}

static void state_env_done(StateEnv *e) {
        free(e->name); /* and the id, which is in the same block */
        free(e->intent_track_id);
        state_job_free(e->job);
        state_last_job_free(e->last_job);
        state_last_event_free(e->last_event);
        state_pause_free(e->pause);
}

static void recipient_done(StateRecipient *r) {
        free(r->environment);
        free(r->id);
        free(r->address);
}

static void outbox_entry_done(StateOutboxEntry *o) {
        event_done(&o->event);
        o->pending = strv_free(o->pending);
}

State *state_free(State *s) {
        if (!s)
                return NULL;
        for (size_t i = 0; i < s->n_envs; i++)
                state_env_done(&s->envs[i]);
        free(s->envs);
        for (size_t i = 0; i < s->n_outbox; i++)
                outbox_entry_done(&s->outbox[i]);
        free(s->outbox);
        for (size_t i = 0; i < s->n_recipients; i++)
                recipient_done(&s->recipients[i]);
        free(s->recipients);
        for (size_t i = 0; i < s->n_skips; i++)
                skip_done(&s->skips[i]);
        free(s->skips);
        free(s->index);
        free(s);
        return NULL;
}

/* ---- the outbox ---- */

int state_outbox_add(State *s, const Event *ev, char **pending) {
        StateOutboxEntry o = { .pending = pending };

        if (GROW(s->outbox, s->outbox_allocated, s->n_outbox, 8) < 0 || event_copy(&o.event, ev) < 0) {
                strv_free(pending);
                return -ENOMEM;
        }
        s->outbox[s->n_outbox++] = o;
        return 0;
}

bool state_outbox_done(State *s, size_t i, const char *key) {
        StateOutboxEntry *o = &s->outbox[i];
        size_t n = 0, k = 0;

        for (; o->pending[n]; n++)
                if (strcmp(o->pending[n], key) == 0)
                        free(o->pending[n]);
                else
                        o->pending[k++] = o->pending[n];
        o->pending[k] = NULL;
        if (k > 0)
                return false;
        outbox_entry_done(o);
        memmove(o, o + 1, (s->n_outbox - i - 1) * sizeof(*o));
        s->n_outbox--;
        return true;
}

int state_recipient_add(State *s, const char *environment, const char *id, const char *address) {
        StateRecipient r = { strdup(environment), strdup(id), strdup(address) };

        if (!r.environment || !r.id || !r.address ||
            GROW(s->recipients, s->recipients_allocated, s->n_recipients, 8) < 0) {
                recipient_done(&r);
                return -ENOMEM;
        }
        s->recipients[s->n_recipients++] = r;
        return 0;
}

void state_recipient_remove(State *s, const char *environment, const char *id) {
        for (size_t i = 0; i < s->n_recipients; i++) {
                StateRecipient *r = &s->recipients[i];
                if (strcmp(r->environment, environment) != 0 || strcmp(r->id, id) != 0)
                        continue;
                recipient_done(r); /* ENVIRONMENT and ID may be gone from here on */
                memmove(r, r + 1, (s->n_recipients - i - 1) * sizeof(*r));
                s->n_recipients--;
                return;
        }
}

/* ---- pauses and skips ---- */

static void state_pause_init(void *p);

/* *P becomes a copy of S (NULL stays NULL). */
static int replace_string(char **p, const char *s) {
        char *c = NULL;

        if (s && !(c = strdup(s)))
                return -ENOMEM;
        free(*p);
        *p = c;
        return 0;
}

int state_env_pause(StateEnv *e, int64_t at, int64_t until, const char *reason, const char *by) {
        StatePause *p = e->pause;

        if (!p) {
                p = malloc(sizeof(*p));
                if (!p)
                        return -ENOMEM;
                state_pause_init(p);
                p->at = at;
        }
        if (replace_string(&p->reason, reason) < 0 || replace_string(&p->by, by) < 0) {
                if (p != e->pause)
                        state_pause_free(p);
                return -ENOMEM;
        }
        p->until = until;
        e->pause = p;
        return 0;
}

bool state_env_resume(StateEnv *e) {
        bool was = e->pause;

        e->pause = state_pause_free(e->pause);
        return was;
}

int state_skip_add(
        State *s, const char *environment, int64_t slot, int64_t at, const char *reason, const char *by) {
        StateSkip k = { .slot = slot, .at = at };

        if (state_skip_find(s, environment, slot))
                return -EEXIST;
        if (!(k.environment = strdup(environment)) || replace_string(&k.reason, reason) < 0 ||
            replace_string(&k.by, by) < 0 || GROW(s->skips, s->skips_allocated, s->n_skips, 8) < 0) {
                skip_done(&k);
                return -ENOMEM;
        }
        s->skips[s->n_skips++] = k;
        return 0;
}

const StateSkip *state_skip_find(const State *s, const char *environment, int64_t slot) {
        const StateSkip *found = NULL;

        for (size_t i = 0; i < s->n_skips; i++) {
                const StateSkip *k = &s->skips[i];
                if (strcmp(k->environment, environment) != 0)
                        continue;
                if (k->slot == slot)
                        return k;
                if (slot == STATE_TIME_UNSET && (!found || k->slot < found->slot))
                        found = k;
        }
        return found;
}

/* Takes out ENVIRONMENT's skips that MATCH (with SLOT); how many. */
static size_t skips_remove(
        State *s, const char *environment, int64_t slot, bool (*match)(int64_t, int64_t)) {
        size_t k = 0, n = s->n_skips;

        for (size_t i = 0; i < n; i++)
                if (strcmp(s->skips[i].environment, environment) == 0 && match(s->skips[i].slot, slot))
                        skip_done(&s->skips[i]);
                else
                        s->skips[k++] = s->skips[i];
        s->n_skips = k;
        return n - k;
}

static bool slot_equal(int64_t a, int64_t b) {
        return a == b;
}

static bool slot_at_or_before(int64_t a, int64_t b) {
        return a <= b;
}

bool state_skip_remove(State *s, const char *environment, int64_t slot) {
        return skips_remove(s, environment, slot, slot_equal) > 0;
}

void state_skips_drop_past(State *s, const char *environment, int64_t slot) {
        (void) skips_remove(s, environment, slot, slot_at_or_before);
}

ssize_t state_outbox_find(const State *s, const char *id) {
        for (size_t i = 0; i < s->n_outbox; i++)
                if (strcmp(s->outbox[i].event.id, id) == 0)
                        return (ssize_t) i;
        return -ENOENT;
}

static StateLastEvent *last_event_get(StateEnv *e) {
        if (!e->last_event && (e->last_event = calloc(1, sizeof(StateLastEvent))))
                e->last_event->at = e->last_event->error_at = STATE_TIME_UNSET;
        return e->last_event;
}

int state_env_set_last_event(StateEnv *e, const Event *ev, int64_t at) {
        StateLastEvent *le = last_event_get(e);
        char *kind, *id;

        if (!le || !(kind = strdup(event_kind_to_string(ev->kind))))
                return -ENOMEM;
        if (!(id = strdup(ev->id))) {
                free(kind);
                return -ENOMEM;
        }
        free(le->event);
        free(le->id);
        le->event = kind;
        le->id = id;
        le->at = at;
        return 0;
}

int state_env_set_delivery_error(StateEnv *e, const char *error, int64_t at) {
        StateLastEvent *le = last_event_get(e);
        char *m;

        if (!le || !(m = message_dup(error)))
                return -ENOMEM;
        free(le->error);
        le->error = m;
        le->error_at = at;
        return 0;
}

/* ---- an entry's records ---- */

int state_env_set_intent(StateEnv *e, int64_t slot, const char *track_id, int64_t sent_at) {
        char *t = track_id ? strdup(track_id) : NULL;

        if (track_id && !t)
                return -ENOMEM;
        free(e->intent_track_id);
        e->intent_track_id = t;
        e->intent_slot = slot;
        e->intent_sent_at = sent_at;
        return 0;
}

void state_env_clear_intent(StateEnv *e) {
        e->intent_slot = STATE_TIME_UNSET;
        e->intent_track_id = mfree(e->intent_track_id);
        e->intent_sent_at = STATE_TIME_UNSET;
}

int state_env_follow(
        StateEnv *e,
        const char *id,
        const char *polling_url,
        const char *status,
        int progress,
        int64_t submitted_at,
        int64_t slot) {
        _cleanup_(state_job_freep) StateJob *j = calloc(1, sizeof(StateJob));

        if (!j || !(j->id = strdup(id)) || !(j->polling_url = strdup(polling_url)) ||
            (status && !(j->status = strdup(status))))
                return -ENOMEM;
        j->progress = progress;
        j->submitted_at = submitted_at;
        j->slot = slot;
        state_job_free(e->job);
        e->job = TAKE_PTR(j);
        return 0;
}

bool state_job_set_status(StateJob *j, const char *status) {
        char *s;

        if (!status || (j->status && strcmp(j->status, status) == 0))
                return false;
        s = strdup(status);
        if (!s)
                return false; /* the old one stays: the next poll tries again */
        free(j->status);
        j->status = s;
        return true;
}

/* MESSAGE, cut at STATE_MESSAGE_MAX bytes (on a character's boundary, with
 * "…" after): the journal keeps Zuora's whole reason, and state.json stays
 * bounded however long the reasons are. */
static char *message_dup(const char *m) {
        size_t n = strlen(m), cut = 0, len;
        char *s;

        if (n <= STATE_MESSAGE_MAX)
                return strdup(m);
        for (size_t i = 0; i < STATE_MESSAGE_MAX - 3; i += len) {
                len = utf8_char_len(m + i, n - i) ?: 1;
                if (i + len > STATE_MESSAGE_MAX - 3)
                        break;
                cut = i + len;
        }
        s = malloc(cut + 4);
        if (!s)
                return NULL;
        memcpy(s, m, cut);
        memcpy(s + cut, "\xE2\x80\xA6", 4); /* U+2026 and the NUL */
        return s;
}

/* Makes the last job ID, STATUS, MESSAGE, ENDED_AT, SLOT. */
static int state_env_set_last_job(
        StateEnv *e,
        const char *id,
        const char *status,
        const char *message,
        int64_t ended_at,
        int64_t slot) {
        _cleanup_(state_last_job_freep) StateLastJob *lj = calloc(1, sizeof(StateLastJob));

        if (!lj || (id && !(lj->id = strdup(id))) || !(lj->status = strdup(status)) ||
            (message && !(lj->message = message_dup(message))))
                return -ENOMEM;
        lj->ended_at = ended_at;
        lj->slot = slot;
        state_last_job_free(e->last_job);
        e->last_job = TAKE_PTR(lj);
        return 0;
}

int state_env_end_job(StateEnv *e, const char *status, const char *message, int64_t ended_at) {
        int r;

        assert(e->job);
        r = state_env_set_last_job(e, e->job->id, status, message, ended_at, e->job->slot);
        e->job = state_job_free(e->job);
        return r;
}

int state_env_end_without_job(
        StateEnv *e, const char *status, const char *message, int64_t ended_at, int64_t slot) {
        return state_env_set_last_job(e, NULL, status, message, ended_at, slot);
}

/* ---- the index by name ---- */

/* FNV-1a: names are short and chosen by operators, not by an attacker. */
static size_t name_hash(const char *name) {
        uint64_t h = UINT64_C(14695981039346656037);

        for (const unsigned char *p = (const unsigned char *) name; *p; p++)
                h = (h ^ *p) * UINT64_C(1099511628211);
        return (size_t) h;
}

static void index_drop(State *s) {
        s->index = mfree(s->index);
        s->index_size = s->n_indexed = 0;
}

/* Adds envs[I] unless an earlier entry has its name: the first one wins, as
 * a linear search would find it. */
static void index_add(State *s, size_t i) {
        const char *name = s->envs[i].name;

        if (!name)
                return;
        for (size_t h = name_hash(name) & (s->index_size - 1);; h = (h + 1) & (s->index_size - 1)) {
                size_t k = s->index[h];
                if (k == 0) {
                        s->index[h] = (uint32_t) (i + 1);
                        return;
                }
                if (streq_ptr(s->envs[k - 1].name, name))
                        return;
        }
}

/* Brings the index up to N_ENVS entries, at most half full. */
static int index_update(State *s) {
        if (s->n_indexed == s->n_envs && s->index)
                return 0;
        if (s->n_envs >= UINT32_MAX / 2)
                return -E2BIG; /* the entries are 32 bits */
        if (!s->index || s->n_envs * 2 > s->index_size) {
                size_t size = 64;
                while (size < s->n_envs * 2)
                        size *= 2;
                uint32_t *n = calloc(size, sizeof(uint32_t));
                if (!n)
                        return -ENOMEM;
                free(s->index);
                s->index = n;
                s->index_size = size;
                s->n_indexed = 0;
        }
        for (; s->n_indexed < s->n_envs; s->n_indexed++)
                index_add(s, s->n_indexed);
        return 0;
}

static StateEnv *state_find_linear(State *s, const char *name) {
        for (size_t i = 0; i < s->n_envs; i++)
                if (streq_ptr(s->envs[i].name, name))
                        return &s->envs[i];
        return NULL;
}

StateEnv *state_find(State *s, const char *name) {
        if (!s || !name)
                return NULL;
        if (index_update(s) < 0)
                return state_find_linear(s, name); /* out of memory (or entries): slow, still right */
        for (size_t h = name_hash(name) & (s->index_size - 1);; h = (h + 1) & (s->index_size - 1)) {
                size_t k = s->index[h];
                if (k == 0)
                        return NULL;
                if (streq_ptr(s->envs[k - 1].name, name))
                        return &s->envs[k - 1];
        }
}

/* NAME and ID (may be NULL) in one block, "name\0id\0": one allocation an
 * entry instead of two, which at 10,000 entries is 320 KB of malloc's
 * headers and rounding. *RET_NAME owns it; *RET_ID points into it. */
static int name_id_dup(const char *name, const char *id, char **ret_name, char **ret_id) {
        size_t nl = strlen(name) + 1, il = id ? strlen(id) + 1 : 0;
        char *b = malloc(nl + il);

        if (!b)
                return -ENOMEM;
        memcpy(b, name, nl);
        if (id)
                memcpy(b + nl, id, il);
        *ret_name = b;
        *ret_id = id ? b + nl : NULL;
        return 0;
}

int state_get(State *s, const char *name, const char *id, StateEnv **ret) {
        _cleanup_free_ char *n = NULL;
        char *i = NULL;
        StateEnv *e;

        assert(s);
        assert(name);

        e = state_find(s, name);
        if (e && streq_ptr(e->id, id)) {
                if (ret)
                        *ret = e;
                return 0;
        }

        if (name_id_dup(name, id, &n, &i) < 0)
                return -ENOMEM;

        if (e)
                /* Same name, other Test Environment: nothing we knew applies to it. */
                state_env_done(e);
        else {
                if (GROW(s->envs, s->n_allocated, s->n_envs, 16) < 0)
                        return -ENOMEM;
                e = &s->envs[s->n_envs++];
        }
        state_env_init(e);
        e->name = TAKE_PTR(n);
        e->id = i;
        if (ret)
                *ret = e;
        return 0;
}

void state_prune(State *s, bool (*keep)(const char *name, void *userdata), void *userdata) {
        size_t k = 0;

        if (!s)
                return;
        /* Skips of environments gone from the config go with them. */
        for (size_t i = 0; i < s->n_skips; i++)
                if (keep(s->skips[i].environment, userdata))
                        s->skips[k++] = s->skips[i];
                else
                        skip_done(&s->skips[i]);
        s->n_skips = k;
        k = 0;
        for (size_t i = 0; i < s->n_envs; i++) {
                StateEnv *e = &s->envs[i];

                /* A job in flight is still ours to follow, and a slot being
                 * submitted still ours to settle. */
                if (!e->job && e->intent_slot == STATE_TIME_UNSET && !keep(e->name, userdata)) {
                        state_env_done(e);
                        continue;
                }
                if (k != i)
                        s->envs[k] = *e;
                k++;
        }
        if (k == s->n_envs)
                return;
        s->n_envs = k;
        index_drop(s); /* entries moved */
}

/* ---- the fields ---- */

/* What state.json holds, one line a field: the reader and the writer both
 * walk these tables, in this order (the order the file is written in). */
typedef enum FieldKind {
        FIELD_STRING,   /* char *, or NULL */
        FIELD_ENV_ID,   /* StateEnv.id: in the block of its name */
        FIELD_TIME,     /* int64_t, STATE_TIME_UNSET: null */
        FIELD_PROGRESS, /* int, negative: null */
        FIELD_OBJECT,   /* a pointer to a struct of its own, or NULL */
        FIELD_INLINE,   /* an object whose fields live in the parent's struct */
} FieldKind;

typedef struct FieldSet FieldSet;

typedef struct Field {
        const char *key;
        FieldKind kind;
        bool required;       /* present and not null */
        size_t offset;       /* in the struct */
        const FieldSet *set; /* OBJECT and INLINE: their fields */
        bool omitted_unset;  /* OBJECT: not written when NULL (added after 0.1.0, whose files stay as they
                                were) */
} Field;

struct FieldSet {
        const Field *fields;
        size_t n;
        size_t size;           /* OBJECT: the struct to allocate ... */
        void (*init)(void *p); /* ... with everything unset ... */
        void (*free)(void *p); /* ... and to free */
        size_t present;        /* INLINE: the offset of the time field that is unset when it is absent */
};

#define FIELDS(f) f, ELEMENTSOF(f)

static void state_job_init(void *p) {
        *(StateJob *) p =
                (StateJob) { .progress = -1, .submitted_at = STATE_TIME_UNSET, .slot = STATE_TIME_UNSET };
}

static void state_job_free_void(void *p) {
        state_job_free(p);
}

static void state_last_job_init(void *p) {
        *(StateLastJob *) p = (StateLastJob) { .ended_at = STATE_TIME_UNSET, .slot = STATE_TIME_UNSET };
}

static void state_last_job_free_void(void *p) {
        state_last_job_free(p);
}

static const Field intent_fields[] = {
        { "slot", FIELD_TIME, true, offsetof(StateEnv, intent_slot) },
        { "track_id", FIELD_STRING, false, offsetof(StateEnv, intent_track_id) },
        { "sent_at", FIELD_TIME, false, offsetof(StateEnv, intent_sent_at) },
};

static const FieldSet intent_set = { FIELDS(intent_fields), .present = offsetof(StateEnv, intent_slot) };

static const Field job_fields[] = {
        { "id", FIELD_STRING, true, offsetof(StateJob, id) },
        { "polling_url", FIELD_STRING, true, offsetof(StateJob, polling_url) },
        { "status", FIELD_STRING, false, offsetof(StateJob, status) },
        { "progress", FIELD_PROGRESS, false, offsetof(StateJob, progress) },
        { "submitted_at", FIELD_TIME, true, offsetof(StateJob, submitted_at) },
        { "slot", FIELD_TIME, false, offsetof(StateJob, slot) },
};

static const FieldSet job_set = {
        FIELDS(job_fields),
        sizeof(StateJob),
        state_job_init,
        state_job_free_void,
};

static const Field last_job_fields[] = {
        /* No id when the submission itself failed ("SUBMIT_FAILED"). */
        { "id", FIELD_STRING, false, offsetof(StateLastJob, id) },
        { "status", FIELD_STRING, false, offsetof(StateLastJob, status) },
        { "message", FIELD_STRING, false, offsetof(StateLastJob, message) },
        { "ended_at", FIELD_TIME, true, offsetof(StateLastJob, ended_at) },
        { "slot", FIELD_TIME, false, offsetof(StateLastJob, slot) },
};

static const FieldSet last_job_set = {
        FIELDS(last_job_fields),
        sizeof(StateLastJob),
        state_last_job_init,
        state_last_job_free_void,
};

static void state_last_event_init(void *p) {
        *(StateLastEvent *) p = (StateLastEvent) { .at = STATE_TIME_UNSET, .error_at = STATE_TIME_UNSET };
}

static void state_last_event_free_void(void *p) {
        state_last_event_free(p);
}

static const Field last_event_fields[] = {
        { "event", FIELD_STRING, false, offsetof(StateLastEvent, event) },
        { "id", FIELD_STRING, false, offsetof(StateLastEvent, id) },
        { "at", FIELD_TIME, false, offsetof(StateLastEvent, at) },
        { "error", FIELD_STRING, false, offsetof(StateLastEvent, error) },
        { "error_at", FIELD_TIME, false, offsetof(StateLastEvent, error_at) },
};

static const FieldSet last_event_set = {
        FIELDS(last_event_fields),
        sizeof(StateLastEvent),
        state_last_event_init,
        state_last_event_free_void,
};

static void state_pause_init(void *p) {
        *(StatePause *) p =
                (StatePause) { .at = STATE_TIME_UNSET, .until = STATE_TIME_UNSET, .held = STATE_TIME_UNSET };
}

static void state_pause_free_void(void *p) {
        state_pause_free(p);
}

static const Field pause_fields[] = {
        { "at", FIELD_TIME, true, offsetof(StatePause, at) },
        { "until", FIELD_TIME, false, offsetof(StatePause, until) },
        { "reason", FIELD_STRING, false, offsetof(StatePause, reason) },
        { "by", FIELD_STRING, false, offsetof(StatePause, by) },
        { "held", FIELD_TIME, false, offsetof(StatePause, held) },
};

static const FieldSet pause_set = {
        FIELDS(pause_fields),
        sizeof(StatePause),
        state_pause_init,
        state_pause_free_void,
};

/* An entry of the top-level "skips" array. */
static const Field skip_fields[] = {
        { "environment", FIELD_STRING, true, offsetof(StateSkip, environment) },
        { "slot", FIELD_TIME, true, offsetof(StateSkip, slot) },
        { "at", FIELD_TIME, false, offsetof(StateSkip, at) },
        { "reason", FIELD_STRING, false, offsetof(StateSkip, reason) },
        { "by", FIELD_STRING, false, offsetof(StateSkip, by) },
};

static const FieldSet skip_set = { FIELDS(skip_fields) };

static const Field env_fields[] = {
        { "id", FIELD_ENV_ID, false, offsetof(StateEnv, id) },
        { "since", FIELD_TIME, false, offsetof(StateEnv, since) },
        { "last_slot", FIELD_TIME, false, offsetof(StateEnv, last_slot) },
        { "last_submitted", FIELD_TIME, false, offsetof(StateEnv, last_submitted) },
        { "intent", FIELD_INLINE, false, 0, &intent_set },
        { "deferred_until", FIELD_TIME, false, offsetof(StateEnv, deferred_until) },
        { "zuora_last_refresh", FIELD_TIME, false, offsetof(StateEnv, zuora_last_refresh) },
        { "zuora_next_refresh", FIELD_TIME, false, offsetof(StateEnv, zuora_next_refresh) },
        { "job", FIELD_OBJECT, false, offsetof(StateEnv, job), &job_set },
        { "last_job", FIELD_OBJECT, false, offsetof(StateEnv, last_job), &last_job_set },
        { "last_event", FIELD_OBJECT, false, offsetof(StateEnv, last_event), &last_event_set, true },
        { "pause", FIELD_OBJECT, false, offsetof(StateEnv, pause), &pause_set, true },
};

static const FieldSet env_set = { FIELDS(env_fields) };

#define FIELD_AT(p, f, type) ((type *) ((uint8_t *) (p) + (f)->offset))

/* What tz_format_utc() can write: years 0000 to 9999. */
#define STATE_TIME_MIN INT64_C(-62167219200)
#define STATE_TIME_MAX INT64_C(253402300799)

static bool time_is_writable(int64_t t) {
        return t == STATE_TIME_UNSET || (t >= STATE_TIME_MIN && t <= STATE_TIME_MAX);
}

/* Whether P's fields of SET can be written so that the reader takes them
 * back: required ones there, times within years 0000 to 9999. */
static bool fields_writable(const FieldSet *set, const void *p) {
        for (size_t i = 0; i < set->n; i++) {
                const Field *f = &set->fields[i];

                switch (f->kind) {
                case FIELD_STRING:
                        if (f->required && !*FIELD_AT(p, f, char *const))
                                return false;
                        break;
                case FIELD_ENV_ID:
                case FIELD_PROGRESS:
                        break;
                case FIELD_TIME: {
                        int64_t t = *FIELD_AT(p, f, const int64_t);
                        if ((f->required && t == STATE_TIME_UNSET) || !time_is_writable(t))
                                return false;
                        break;
                }
                case FIELD_OBJECT: {
                        const void *o = *FIELD_AT(p, f, void *const);
                        if (o && !fields_writable(f->set, o))
                                return false;
                        break;
                }
                case FIELD_INLINE:
                        if (*(const int64_t *) ((const uint8_t *) p + f->set->present) != STATE_TIME_UNSET &&
                            !fields_writable(f->set, p))
                                return false;
                        break;
                }
        }
        return true;
}

/* ---- reading ---- */

/* Refuses the file, saying why in *RETERR_MESSAGE. */
_printf_(2, 3) static int bad(char **reterr_message, const char *fmt, ...) {
        va_list ap;
        char *m;
        int r;

        if (!reterr_message)
                return -EBADMSG;
        va_start(ap, fmt);
        r = vasprintf(&m, fmt, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        *reterr_message = m;
        return -EBADMSG;
}

/* "environments.uat" + "job" → "environments.uat.job"; the top level has the empty prefix. */
#define PATH_FMT "%s%s%s"
#define PATH(prefix, key) (prefix), (*(prefix) ? "." : ""), (key)

/* The value of KEY in object OBJ, or NULL when it is absent or null. Keys
 * are compared as C strings, as state.json's keys are kept: "a\u0000b" is
 * "a". A key given twice is refused (RFC 8259 leaves its meaning open). */
static int object_get(
        const JsonNode *obj,
        const char *prefix,
        const char *key,
        const JsonNode **ret,
        char **reterr_message) {
        const JsonNode *found = NULL;

        for (const JsonNode *c = obj->first; c; c = c->next) {
                if (strcmp(c->key, key) != 0)
                        continue;
                if (found)
                        return bad(reterr_message, PATH_FMT ": duplicate key", PATH(prefix, key));
                found = c;
        }
        *ret = found && found->type != JSON_NULL ? found : NULL;
        return 0;
}

/* A string as state.json keeps it: up to its first NUL, and UTF-8. */
static int read_string(
        const JsonNode *v, const char *prefix, const char *key, char **ret, char **reterr_message) {
        char *s;

        if (v->type != JSON_STRING)
                return bad(reterr_message, PATH_FMT ": not a string", PATH(prefix, key));
        if (!utf8_is_valid(v->text))
                return bad(reterr_message, PATH_FMT ": not UTF-8", PATH(prefix, key));
        s = strdup(v->text);
        if (!s)
                return -ENOMEM;
        free(*ret);
        *ret = s;
        return 0;
}

static int read_time(
        const JsonNode *v, const char *prefix, const char *key, int64_t *ret, char **reterr_message) {
        char buf[TZ_ISO_MAX];
        int64_t t;

        /* Only times we can write back: "0000-01-01T00:00:00+01:00" reads, but is in year -1. */
        if (v->type != JSON_STRING || strlen(v->text) != v->text_len || tz_parse_iso8601(v->text, &t) < 0 ||
            tz_format_utc(t, buf, sizeof(buf)) < 0)
                return bad(reterr_message, PATH_FMT ": not a time", PATH(prefix, key));
        *ret = t;
        return 0;
}

static int read_progress(
        const JsonNode *v, const char *prefix, const char *key, int *ret, char **reterr_message) {
        int64_t i;

        if (json_integer(v, &i) < 0 || i < 0 || i > INT_MAX)
                return bad(reterr_message, PATH_FMT ": not a non-negative integer", PATH(prefix, key));
        *ret = (int) i;
        return 0;
}

static int fields_read(
        const FieldSet *set, const JsonNode *obj, const char *prefix, void *p, char **reterr_message);

/* An object of its own at *SLOT, from V. */
static int read_object(
        const FieldSet *set, const JsonNode *v, const char *path, void **slot, char **reterr_message) {
        void *o = malloc(set->size);
        int r;

        if (!o)
                return -ENOMEM;
        set->init(o);
        r = fields_read(set, v, path, o, reterr_message);
        if (r < 0) {
                set->free(o);
                return r;
        }
        set->free(*slot);
        *slot = o;
        return 0;
}

/* The value V (not null) of field F of P; PREFIX names P in messages. */
static int field_read(
        const Field *f, const JsonNode *v, const char *prefix, void *p, char **reterr_message) {
        _cleanup_free_ char *path = NULL;

        switch (f->kind) {
        case FIELD_STRING:
        case FIELD_ENV_ID:
                return read_string(v, prefix, f->key, FIELD_AT(p, f, char *), reterr_message);
        case FIELD_TIME:
                return read_time(v, prefix, f->key, FIELD_AT(p, f, int64_t), reterr_message);
        case FIELD_PROGRESS:
                return read_progress(v, prefix, f->key, FIELD_AT(p, f, int), reterr_message);
        case FIELD_OBJECT:
        case FIELD_INLINE:
                if (v->type != JSON_OBJECT)
                        return bad(reterr_message, PATH_FMT ": not an object", PATH(prefix, f->key));
                if (asprintf(&path, PATH_FMT, PATH(prefix, f->key)) < 0)
                        return -ENOMEM;
                if (f->kind == FIELD_INLINE)
                        return fields_read(f->set, v, path, p, reterr_message);
                return read_object(f->set, v, path, FIELD_AT(p, f, void *), reterr_message);
        }
        return -EINVAL;
}

/* Reads the fields of SET from object OBJ into P; unknown keys are ignored. */
static int fields_read(
        const FieldSet *set, const JsonNode *obj, const char *prefix, void *p, char **reterr_message) {
        for (size_t i = 0; i < set->n; i++) {
                const Field *f = &set->fields[i];
                const JsonNode *v;
                int r;

                r = object_get(obj, prefix, f->key, &v, reterr_message);
                if (r < 0)
                        return r;
                if (!v) {
                        if (f->required)
                                return bad(reterr_message, PATH_FMT ": missing", PATH(prefix, f->key));
                        continue;
                }
                r = field_read(f, v, prefix, p, reterr_message);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Whether NAME can go into a message as it is: UTF-8 without control characters. */
static bool name_is_printable(const char *name) {
        for (const char *p = name; *p; p++)
                if ((unsigned char) *p < 0x20 || *p == 0x7f)
                        return false;
        return utf8_is_valid(name);
}

/* "environments.uat", or "environments.#3" for the third name when it would garble a log line. */
static int env_path(const char *name, size_t i, char **ret) {
        if ((name_is_printable(name) ? asprintf(ret, "environments.%s", name)
                                     : asprintf(ret, "environments.#%zu", i + 1)) < 0)
                return -ENOMEM;
        return 0;
}

/* The environments as they stream by: each read into an entry at once. The
 * first problem is kept and reported only after the top level's and the
 * names' checks, which come first (the order a reader of the whole file
 * would find them in). */
typedef struct EnvReader {
        State *state;
        char *message; /* the first environment's problem, or NULL */
        int r;         /* and its error */
} EnvReader;

static int env_read(const JsonNode *member, StateEnv *e, size_t i, char **reterr_message) {
        _cleanup_free_ char *path = NULL, *id = NULL;
        int r;

        /* The name first, so that every entry has one for the names' check. */
        r = name_id_dup(member->key, NULL, &e->name, &e->id);
        if (r < 0)
                return r;
        r = env_path(e->name, i, &path);
        if (r < 0)
                return r;
        if (member->type != JSON_OBJECT)
                return bad(reterr_message, "%s: not an object", path);
        r = fields_read(&env_set, member, path, e, reterr_message);
        /* The id was read into a string of its own: into the name's block with it. */
        id = TAKE_PTR(e->id);
        if (r < 0 || !id)
                return r;
        free(e->name);
        e->name = NULL;
        return name_id_dup(member->key, id, &e->name, &e->id);
}

static int env_reader_on_member(const JsonNode *member, void *userdata) {
        EnvReader *x = userdata;
        State *s = x->state;
        StateEnv *e;
        char *m = NULL;
        int r;

        if (GROW(s->envs, s->n_allocated, s->n_envs, 64) < 0)
                return -ENOMEM;
        e = &s->envs[s->n_envs++];
        state_env_init(e); /* counted first, so that state_free() frees what is half read */
        r = env_read(member, e, s->n_envs - 1, x->r < 0 ? NULL : &m);
        if (r == -ENOMEM)
                return r;
        if (r < 0 && x->r >= 0) {
                x->r = r;
                x->message = m;
        }
        return 0;
}

static int strcmp_ptr(const void *a, const void *b) {
        return strcmp(*(const char *const *) a, *(const char *const *) b);
}

/* Names must be UTF-8 and unique, compared as the C strings they are kept as: "a\u0000b" is "a". */
static int check_names(const State *s, char **reterr_message) {
        _cleanup_free_ const char **names = NULL;
        _cleanup_free_ char *p = NULL;
        size_t n = s->n_envs, bad_index = n;
        const char *what = NULL;
        int r;

        for (size_t i = 0; i < n && !what; i++)
                if (!utf8_is_valid(s->envs[i].name)) {
                        bad_index = i;
                        what = "name not UTF-8";
                }
        if (!what && n > 1) {
                names = reallocarray(NULL, n, sizeof(char *));
                if (!names)
                        return -ENOMEM;
                for (size_t i = 0; i < n; i++)
                        names[i] = s->envs[i].name;
                qsort(names, n, sizeof(char *), strcmp_ptr);
                for (size_t i = 1; i < n && !what; i++)
                        if (strcmp(names[i - 1], names[i]) == 0) {
                                /* The same pointers: find where it was, to name it. */
                                bad_index = 0;
                                while (s->envs[bad_index].name != names[i])
                                        bad_index++;
                                what = "duplicate key";
                        }
        }
        if (!what)
                return 0;
        r = env_path(s->envs[bad_index].name, bad_index, &p);
        if (r < 0)
                return r;
        return bad(reterr_message, "%s: %s", p, what);
}

/* "intent_log": {"id": "<16 lowercase hex digits, not all 0>", "seq": N}, or absent (none yet). */
static int parse_intent_log(const JsonNode *root, State *s, char **reterr_message) {
        const JsonNode *log, *id, *seq;
        int64_t n;
        char *end;
        int r;

        r = object_get(root, "", "intent_log", &log, reterr_message);
        if (r < 0 || !log)
                return r;
        if (log->type != JSON_OBJECT)
                return bad(reterr_message, "intent_log: not an object");
        r = object_get(log, "intent_log", "id", &id, reterr_message);
        if (r < 0)
                return r;
        if (!id || id->type != JSON_STRING || strlen(id->text) != 16 ||
            strspn(id->text, "0123456789abcdef") != 16 || (s->log_id = strtoull(id->text, &end, 16)) == 0)
                return bad(reterr_message, "intent_log.id: not 16 hexadecimal digits");
        r = object_get(log, "intent_log", "seq", &seq, reterr_message);
        if (r < 0)
                return r;
        if (!seq || json_integer(seq, &n) < 0 || n < 0)
                return bad(reterr_message, "intent_log.seq: not a number of records");
        s->log_seq = s->log_saved_seq = (uint64_t) n;
        return 0;
}

/* "zuora_clock": {"offset_us": N, "uncertainty_us": N >= 0, "at": T}, or absent. */
static int parse_zuora_clock(const JsonNode *root, State *s, char **reterr_message) {
        const JsonNode *c, *offset, *uncertainty, *at;
        int64_t o, u, t;
        int r;

        r = object_get(root, "", "zuora_clock", &c, reterr_message);
        if (r < 0 || !c)
                return r;
        if (c->type != JSON_OBJECT)
                return bad(reterr_message, "zuora_clock: not an object");
        if ((r = object_get(c, "zuora_clock", "offset_us", &offset, reterr_message)) < 0 ||
            (r = object_get(c, "zuora_clock", "uncertainty_us", &uncertainty, reterr_message)) < 0 ||
            (r = object_get(c, "zuora_clock", "at", &at, reterr_message)) < 0)
                return r;
        if (!offset || json_integer(offset, &o) < 0)
                return bad(reterr_message, "zuora_clock.offset_us: not a number of microseconds");
        if (!uncertainty || json_integer(uncertainty, &u) < 0 || u < 0)
                return bad(reterr_message, "zuora_clock.uncertainty_us: not a number of microseconds");
        if (!at || read_time(at, "zuora_clock", "at", &t, reterr_message) < 0)
                return bad(reterr_message, "zuora_clock.at: not a time");
        zclock_restore(&s->zclock, o, u, t * (int64_t) 1000000);
        return 0;
}

static int parse_version(const JsonNode *root, char **reterr_message) {
        const JsonNode *v;
        int64_t version;
        int r;

        r = object_get(root, "", "version", &v, reterr_message);
        if (r < 0)
                return r;
        if (!v)
                return bad(reterr_message, "version: missing");
        if (v->type != JSON_NUMBER)
                return bad(reterr_message, "version: not a number");
        if (json_integer(v, &version) < 0 || version != STATE_VERSION)
                return bad(reterr_message, "unsupported state version %s", v->text);
        return 0;
}

static int parse_outbox_entry(const JsonNode *item, size_t i, State *s, char **reterr_message) {
        const JsonNode *pending = json_get(item, "pending");
        const char *what;
        size_t n = 0;
        int r;

        if (item->type != JSON_OBJECT)
                return bad(reterr_message, "outbox[%zu]: not an object", i);
        if (!pending || pending->type != JSON_ARRAY)
                return bad(reterr_message, "outbox[%zu].pending: not an array", i);
        for (const JsonNode *p = pending->first; p; p = p->next, n++)
                if (!json_text(p, false))
                        return bad(reterr_message, "outbox[%zu].pending[%zu]: not a string", i, n);
        _cleanup_(strv_freep) char **keys = calloc(n + 1, sizeof(char *));
        if (!keys)
                return -ENOMEM;
        n = 0;
        for (const JsonNode *p = pending->first; p; p = p->next)
                if (!(keys[n++] = strdup(p->text)))
                        return -ENOMEM;
        if (n == 0)
                return 0; /* nothing left to do */
        Event ev;
        r = event_read(json_get(item, "event"), &ev, &what);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return bad(reterr_message, "outbox[%zu].event: %s is not valid", i, what);
        r = state_outbox_add(s, &ev, TAKE_PTR(keys));
        event_done(&ev);
        return r;
}

/* "outbox": [{"event": {...}, "pending": ["hook:…", …]}, …], or absent. */
static int parse_outbox(const JsonNode *root, State *s, char **reterr_message) {
        const JsonNode *o;
        size_t i = 0;
        int r;

        r = object_get(root, "", "outbox", &o, reterr_message);
        if (r < 0 || !o)
                return r;
        if (o->type != JSON_ARRAY)
                return bad(reterr_message, "outbox: not an array");
        for (const JsonNode *item = o->first; item; item = item->next, i++) {
                r = parse_outbox_entry(item, i, s, reterr_message);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* "recipients": [{"environment", "id", "address"}, …], or absent. */
static int parse_recipients(const JsonNode *root, State *s, char **reterr_message) {
        const JsonNode *l;
        size_t i = 0;
        int r;

        r = object_get(root, "", "recipients", &l, reterr_message);
        if (r < 0 || !l)
                return r;
        if (l->type != JSON_ARRAY)
                return bad(reterr_message, "recipients: not an array");
        for (const JsonNode *item = l->first; item; item = item->next, i++) {
                const char *env = json_text(json_get(item, "environment"), false);
                const char *id = json_text(json_get(item, "id"), false);
                const char *address = json_text(json_get(item, "address"), false);
                if (!env || !id || !address)
                        return bad(
                                reterr_message,
                                "recipients[%zu]: not {\"environment\", \"id\", \"address\"}",
                                i);
                r = state_recipient_add(s, env, id, address);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* "skips": [{"environment", "slot", "at", "reason", "by"}, …], or absent. */
static int parse_skips(const JsonNode *root, State *s, char **reterr_message) {
        const JsonNode *l;
        size_t i = 0;
        int r;

        r = object_get(root, "", "skips", &l, reterr_message);
        if (r < 0 || !l)
                return r;
        if (l->type != JSON_ARRAY)
                return bad(reterr_message, "skips: not an array");
        for (const JsonNode *item = l->first; item; item = item->next, i++) {
                StateSkip k = { .slot = STATE_TIME_UNSET, .at = STATE_TIME_UNSET };
                char prefix[32];

                snprintf(prefix, sizeof(prefix), "skips[%zu]", i);
                if (item->type != JSON_OBJECT)
                        return bad(reterr_message, "%s: not an object", prefix);
                r = fields_read(&skip_set, item, prefix, &k, reterr_message);
                if (r >= 0)
                        r = state_skip_add(s, k.environment, k.slot, k.at, k.reason, k.by);
                skip_done(&k);
                if (r == -EEXIST)
                        return bad(reterr_message, "%s: a second skip of the same slot", prefix);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* The checks of the top level, in the order they are reported. */
static int parse_root(const JsonNode *root, State *s, char **reterr_message) {
        const JsonNode *envs;
        int r;

        if (root->type != JSON_OBJECT)
                return bad(reterr_message, "top level: not an object");
        r = parse_version(root, reterr_message);
        if (r < 0)
                return r;
        r = object_get(root, "", "environments", &envs, reterr_message);
        if (r < 0)
                return r;
        if (!envs)
                return bad(reterr_message, "environments: missing");
        if (envs->type != JSON_OBJECT)
                return bad(reterr_message, "environments: not an object");
        r = check_names(s, reterr_message);
        if (r < 0)
                return r;
        r = parse_intent_log(root, s, reterr_message);
        if (r < 0)
                return r;
        r = parse_zuora_clock(root, s, reterr_message);
        if (r < 0)
                return r;
        r = parse_outbox(root, s, reterr_message);
        if (r < 0)
                return r;
        r = parse_recipients(root, s, reterr_message);
        if (r < 0)
                return r;
        return parse_skips(root, s, reterr_message);
}

int state_parse(const char *text, size_t size, State **ret, char **reterr_message) {
        _cleanup_(json_doc_done) JsonDoc doc = {};
        _cleanup_(state_freep) State *s = NULL;
        EnvReader x = {};
        JsonError e;
        int r;

        assert(text || size == 0);
        assert(ret);

        if (size > STATE_SIZE_MAX)
                return -EFBIG;
        s = state_new();
        if (!s)
                return -ENOMEM;
        x.state = s;
        /* The one "environments" (the first, if there are several: then the
         * top level's check refuses the file) streams by, an entry at a time. */
        JsonOptions o = {
                .max_depth = STATE_DEPTH_MAX,
                .deep_is_error = true,
                .comments = true,
                .stream_key = "environments",
                .stream = env_reader_on_member,
                .userdata = &x,
        };
        r = json_parse(text, size, &o, &doc, &e);
        if (r == -EBADMSG)
                r = bad(reterr_message, "line %u, column %u: not JSON: %s", e.line, e.column, e.message);
        if (r >= 0)
                r = parse_root(doc.root, s, reterr_message);
        if (r >= 0 && x.r < 0) {
                r = x.r;
                if (reterr_message)
                        *reterr_message = TAKE_PTR(x.message);
        }
        free(x.message);
        if (r < 0)
                return r;
        /* Give back the room the array grew by. */
        if (s->n_envs > 0 && s->n_envs < s->n_allocated) {
                StateEnv *n = reallocarray(s->envs, s->n_envs, sizeof(StateEnv));
                if (n) {
                        s->envs = n;
                        s->n_allocated = s->n_envs;
                }
        }
        *ret = TAKE_PTR(s);
        return 0;
}

/* ---- writing ---- */

static void put_utc_time(JsonWriter *w, int64_t t) {
        char buf[TZ_ISO_MAX];

        if (t == STATE_TIME_UNSET)
                json_put_null(w);
        else if (tz_format_utc(t, buf, sizeof(buf)) < 0)
                json_writer_fail(w, -EINVAL); /* outside years 0…9999 */
        else
                json_put_string(w, buf);
}

/* How times are written: UTC in state.json, or as the caller wants. */
typedef struct TimeWriter {
        StateTimeWriter put;
        void *userdata;
} TimeWriter;

static void fields_write(JsonWriter *w, const FieldSet *set, const void *p, const TimeWriter *tw);

static void field_write(JsonWriter *w, const Field *f, const void *p, const TimeWriter *tw) {
        switch (f->kind) {
        case FIELD_STRING:
        case FIELD_ENV_ID:
                json_put_string_or_null(w, *FIELD_AT(p, f, char *const));
                break;
        case FIELD_TIME:
                if (tw)
                        tw->put(w, *FIELD_AT(p, f, const int64_t), tw->userdata);
                else
                        put_utc_time(w, *FIELD_AT(p, f, const int64_t));
                break;
        case FIELD_PROGRESS: {
                int progress = *FIELD_AT(p, f, const int);
                if (progress < 0)
                        json_put_null(w);
                else
                        json_put_int(w, progress);
                break;
        }
        case FIELD_OBJECT: {
                const void *o = *FIELD_AT(p, f, void *const);
                if (o)
                        fields_write(w, f->set, o, tw);
                else
                        json_put_null(w);
                break;
        }
        case FIELD_INLINE:
                if (*(const int64_t *) ((const uint8_t *) p + f->set->present) != STATE_TIME_UNSET)
                        fields_write(w, f->set, p, tw);
                else
                        json_put_null(w);
                break;
        }
}

/* P's fields of SET as an object; every one is written, unset ones as
 * null (or, when OMITTED_UNSET, not at all). */
static void fields_write(JsonWriter *w, const FieldSet *set, const void *p, const TimeWriter *tw) {
        json_put_open(w);
        for (size_t i = 0; i < set->n; i++) {
                const Field *f = &set->fields[i];
                if (f->omitted_unset && f->kind == FIELD_OBJECT && !*FIELD_AT(p, f, void *const))
                        continue;
                json_put_string(w, f->key);
                field_write(w, &set->fields[i], p, tw);
        }
        json_put_close(w);
}

static void write_record(
        JsonWriter *w, const FieldSet *set, const void *p, StateTimeWriter put_time, void *userdata) {
        if (p)
                fields_write(w, set, p, put_time ? &(TimeWriter) { put_time, userdata } : NULL);
        else
                json_put_null(w);
}

void state_write_job(JsonWriter *w, const StateJob *j, StateTimeWriter put_time, void *userdata) {
        write_record(w, &job_set, j, put_time, userdata);
}

void state_write_last_job(JsonWriter *w, const StateLastJob *lj, StateTimeWriter put_time, void *userdata) {
        write_record(w, &last_job_set, lj, put_time, userdata);
}

/* What state_parse() requires of an entry. */
static bool env_is_writable(const StateEnv *e) {
        return e->name && fields_writable(&env_set, e);
}

/* Whether state_generate() will succeed, found without generating. */
static bool state_is_writable(const State *s) {
        for (size_t i = 0; i < s->n_envs; i++)
                if (!env_is_writable(&s->envs[i]))
                        return false;
        return true;
}

static int state_generate(const State *s, JsonWriter *w) {
        json_put_open(w);
        json_put_string(w, "version");
        json_put_int(w, STATE_VERSION);
        if (s->log_id != 0) {
                char id[17];
                snprintf(id, sizeof(id), "%016" PRIx64, s->log_id);
                json_put_string(w, "intent_log");
                json_put_open(w);
                json_put_string(w, "id");
                json_put_string(w, id);
                json_put_string(w, "seq");
                json_put_int(w, (long long) s->log_seq);
                json_put_close(w);
        }
        if (s->zclock.measured) {
                /* The bounds as they are (no drift added), so that a file read
                 * and written again is the same text. */
                int64_t uncertainty = (s->zclock.hi_usec - s->zclock.lo_usec) / 2;
                int64_t offset = s->zclock.lo_usec + uncertainty;
                json_put_string(w, "zuora_clock");
                json_put_open(w);
                json_put_string(w, "offset_us");
                json_put_int(w, offset);
                json_put_string(w, "uncertainty_us");
                json_put_int(w, uncertainty);
                json_put_string(w, "at");
                put_utc_time(w, s->zclock.at_usec / 1000000);
                json_put_close(w);
        }
        if (s->n_outbox > 0) {
                json_put_string(w, "outbox");
                json_put_array_open(w);
                for (size_t i = 0; i < s->n_outbox; i++) {
                        json_put_open(w);
                        json_put_string(w, "event");
                        event_write(w, &s->outbox[i].event);
                        json_put_string(w, "pending");
                        json_put_array_open(w);
                        for (char **k = s->outbox[i].pending; *k; k++)
                                json_put_string(w, *k);
                        json_put_array_close(w);
                        json_put_close(w);
                }
                json_put_array_close(w);
        }
        if (s->n_recipients > 0) {
                json_put_string(w, "recipients");
                json_put_array_open(w);
                for (size_t i = 0; i < s->n_recipients; i++) {
                        json_put_open(w);
                        json_put_string(w, "environment");
                        json_put_string(w, s->recipients[i].environment);
                        json_put_string(w, "id");
                        json_put_string(w, s->recipients[i].id);
                        json_put_string(w, "address");
                        json_put_string(w, s->recipients[i].address);
                        json_put_close(w);
                }
                json_put_array_close(w);
        }
        if (s->n_skips > 0) {
                json_put_string(w, "skips");
                json_put_array_open(w);
                for (size_t i = 0; i < s->n_skips; i++)
                        fields_write(w, &skip_set, &s->skips[i], NULL);
                json_put_array_close(w);
        }
        json_put_string(w, "environments");
        json_put_open(w);
        for (size_t i = 0; i < s->n_envs; i++) {
                if (!env_is_writable(&s->envs[i])) {
                        json_writer_fail(w, -EINVAL);
                        break;
                }
                json_put_string(w, s->envs[i].name);
                fields_write(w, &env_set, &s->envs[i], NULL);
        }
        json_put_close(w);
        json_put_close(w);
        return json_writer_error(w);
}

int state_format(const State *s, char **ret, size_t *ret_size) {
        _cleanup_(json_writer_done) JsonWriter w = {};
        const char *buf;
        size_t len;
        char *text;
        int r;

        assert(s);
        assert(ret);

        /* Indented, for the operator who reads it. */
        r = json_writer_init(&w, /* beautify= */ true, NULL, NULL);
        if (r < 0)
                return r;
        r = state_generate(s, &w);
        if (r >= 0)
                r = json_writer_text(&w, &buf, &len);
        if (r < 0)
                return r;
        text = strndup(buf, len); /* strings are escaped, so there is no NUL inside */
        if (!text)
                return -ENOMEM;
        *ret = text;
        if (ret_size)
                *ret_size = len;
        return 0;
}

/* ---- files ---- */

/* A process killed in the middle of state_save() leaves its temp file;
 * the next start removes it (best effort: a read-only directory keeps it). */
static void remove_stale_temp_files(const char *dir) {
        _cleanup_free_ char *prefix =
                strndup(STATE_TEMP_NAME, strlen(STATE_TEMP_NAME) - 6); /* less XXXXXX */
        DIR *d;

        if (!prefix || !(d = opendir(dir)))
                return;
        for (struct dirent *de; (de = readdir(d));)
                if (strncmp(de->d_name, prefix, strlen(prefix)) == 0 &&
                    strlen(de->d_name) == strlen(STATE_TEMP_NAME))
                        (void) unlinkat(dirfd(d), de->d_name, 0);
        closedir(d);
}

/* A record of the intent log newer than state.json: the intent, and what
 * firing its slot did to the entry (env_fire()). */
static int apply_intent(const IntentRecord *r, void *userdata) {
        State *s = userdata;
        StateEnv *e;
        char *track = NULL;
        int k;

        /* Written by us, with a checksum; still, nothing goes in that state_save() would refuse. */
        if (!name_is_printable(r->name) || !utf8_is_valid(r->name) || !utf8_is_valid(r->id) ||
            (r->track_id && !utf8_is_valid(r->track_id)) || !time_is_writable(r->slot) ||
            r->slot == STATE_TIME_UNSET || !time_is_writable(r->sent_at))
                return 0;
        if (r->track_id && !(track = strdup(r->track_id)))
                return -ENOMEM;
        k = state_get(s, r->name, r->id, &e);
        if (k < 0) {
                free(track);
                return k;
        }
        free(e->intent_track_id);
        e->intent_track_id = track;
        e->intent_slot = r->slot;
        e->intent_sent_at = r->sent_at;
        if (e->last_slot == STATE_TIME_UNSET || e->last_slot < r->slot)
                e->last_slot = r->slot;
        if (e->since == STATE_TIME_UNSET)
                e->since = r->slot;
        e->deferred_until = STATE_TIME_UNSET;
        if (r->seq > s->log_seq)
                s->log_seq = r->seq;
        return 0;
}

int state_load(const char *dir, State **ret, char **reterr_message) {
        _cleanup_(state_freep) State *s = NULL;
        _cleanup_free_ char *path = NULL, *text = NULL;
        _cleanup_(closep) int fd = -EBADF;
        size_t size = 0;
        int r;

        assert(dir);
        assert(ret);

        if (asprintf(&path, "%s/%s", dir, STATE_FILE_NAME) < 0)
                return -ENOMEM;
        remove_stale_temp_files(dir);
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
                if (errno != ENOENT)
                        return -errno;
                s = state_new(); /* first start */
                if (!s)
                        return -ENOMEM;
                *ret = TAKE_PTR(s);
                return 0;
        }
        r = read_all(fd, STATE_SIZE_MAX, &text, &size);
        if (r < 0)
                return r;
        r = state_parse(text, size, &s, reterr_message);
        if (r < 0)
                return r;
        if (s->log_id != 0) {
                s->log_saved = true;
                r = intent_log_replay(dir, s->log_id, s->log_saved_seq, apply_intent, s);
                if (r < 0) {
                        /* Intents may be in it: acting without them could submit a slot twice. */
                        if (reterr_message && r != -ENOMEM &&
                            asprintf(
                                    reterr_message,
                                    "%s/%s: %s",
                                    dir,
                                    INTENT_LOG_FILE_NAME,
                                    fileio_error(r)) < 0)
                                *reterr_message = NULL;
                        return r;
                }
        }
        *ret = TAKE_PTR(s);
        return 0;
}

/* The text goes to the file through a small buffer as it is generated: holding all of it (and yajl's
 * buffer, which doubles as it grows) took 7 MB at every save of 10,000 environments. */
typedef struct FileSink {
        int fd;
        int r;
        size_t total; /* written so far: never more than the reader takes */
        size_t n;
        char buf[64 * 1024];
} FileSink;

static void file_sink_flush(FileSink *f) {
        if (f->r >= 0 && f->n > 0)
                f->r = write_all(f->fd, f->buf, f->n);
        f->n = 0;
}

static void file_sink_on_print(void *userdata, const char *str, size_t len) {
        FileSink *f = userdata;

        f->total += len;
        if (f->total > STATE_SIZE_MAX && f->r >= 0)
                f->r = -EFBIG;
        while (len > 0 && f->r >= 0) {
                size_t k = sizeof(f->buf) - f->n < len ? sizeof(f->buf) - f->n : len;

                memcpy(f->buf + f->n, str, k);
                f->n += k;
                str += k;
                len -= k;
                if (f->n == sizeof(f->buf))
                        file_sink_flush(f);
        }
}

static int state_write(int fd, const State *s) {
        _cleanup_(json_writer_done) JsonWriter w = {};
        _cleanup_free_ FileSink *f = malloc(sizeof(FileSink));
        int r;

        if (!f)
                return -ENOMEM;
        *f = (FileSink) { .fd = fd };
        r = json_writer_init(&w, /* beautify= */ true, file_sink_on_print, f);
        if (r < 0)
                return r;
        r = state_generate(s, &w);
        if (r < 0)
                return r;
        file_sink_flush(f);
        return f->r;
}

int state_save(const char *dir, State *s) {
        /* Declared before the fd, so that on the way out the fd is closed first, then the file unlinked. */
        _cleanup_(unlink_and_freep) char *tmp = NULL;
        _cleanup_free_ char *path = NULL;
        _cleanup_(closep) int dfd = -EBADF, fd = -EBADF;
        int r;

        assert(dir);
        assert(s);

        /* An invalid state is refused before any file is touched. */
        if (!state_is_writable(s))
                return -EINVAL;
        while (s->log_id == 0)
                if (getrandom(&s->log_id, sizeof(s->log_id), 0) != sizeof(s->log_id))
                        return -errno;
        if (asprintf(&path, "%s/%s", dir, STATE_FILE_NAME) < 0)
                return -ENOMEM;

        dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return -errno;

        /* mkostemp() opens with O_RDWR|O_CREAT|O_EXCL, mode 0600. */
        if (asprintf(&tmp, "%s/%s", dir, STATE_TEMP_NAME) < 0) {
                tmp = NULL; /* asprintf() leaves it undefined; nothing to unlink yet */
                return -ENOMEM;
        }
        fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0) {
                r = -errno;
                free(TAKE_PTR(tmp)); /* nothing was created */
                return r;
        }

        r = state_write(fd, s);
        if (r < 0)
                return r;
        if (fsync(fd) < 0)
                return -errno;
        /* close() is where NFS and quota report a failed write. */
        r = close(fd);
        fd = -EBADF;
        if (r < 0)
                return -errno;

        if (rename(tmp, path) < 0)
                return -errno;
        free(TAKE_PTR(tmp)); /* it is state.json now: nothing to unlink */

        /* Make the rename itself durable. If this fails, the new file is already in place and the old one
         * gone; the error still tells the caller that a crash now might bring the old one back. */
        if (fsync(dfd) < 0)
                return -errno;
        s->log_saved_seq = s->log_seq;
        s->log_saved = true;
        return 0;
}

int state_log_intents(State *s, int fd, StateEnv *const *envs, size_t n) {
        uint64_t first = s->log_seq + 1;
        int r = 0;

        assert(s);
        assert(envs || n == 0);
        if (!s->log_saved || fd < 0)
                return -EAGAIN;
        if (s->log_seq + n > s->log_saved_seq + INTENT_LOG_RECORDS)
                return -ENOSPC;
        s->log_seq += n;
        for (size_t i = 0; i < n && r >= 0; i++) {
                const StateEnv *e = envs[i];
                r = intent_log_put(
                        fd,
                        &(IntentRecord) {
                                .log_id = s->log_id,
                                .seq = first + i,
                                .slot = e->intent_slot,
                                .sent_at = e->intent_sent_at,
                                .name = e->name,
                                .id = e->id,
                                .track_id = e->intent_track_id,
                        });
        }
        return r < 0 ? r : intent_log_sync(fd);
}

/* Like rename(), but never replaces TO: -EEXIST instead. */
static int rename_noreplace(const char *from, const char *to) {
        if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) >= 0)
                return 0;
        if (errno != EINVAL && errno != ENOSYS)
                return -errno;

        /* The file system cannot do it atomically. Only the holder of the state lock moves the file, so
         * looking first is good enough. */
        if (access(to, F_OK) >= 0)
                return -EEXIST;
        if (errno != ENOENT)
                return -errno;
        return rename(from, to) < 0 ? -errno : 0;
}

int state_move_aside(const char *dir, int64_t now, char **ret_path) {
        _cleanup_free_ char *from = NULL;
        char iso[TZ_ISO_MAX], stamp[TZ_ISO_MAX];
        size_t k = 0;
        int r;

        assert(dir);

        /* "2026-12-06T02:00:00Z" → "20261206T020000Z" */
        r = tz_format_utc(now, iso, sizeof(iso));
        if (r < 0)
                return r;
        for (const char *p = iso; *p; p++)
                if (*p != '-' && *p != ':')
                        stamp[k++] = *p;
        stamp[k] = 0;

        if (asprintf(&from, "%s/%s", dir, STATE_FILE_NAME) < 0)
                return -ENOMEM;
        for (unsigned i = 0; i < STATE_ASIDE_MAX; i++) {
                _cleanup_free_ char *to = NULL;

                if ((i == 0 ? asprintf(&to, "%s.corrupt-%s", from, stamp)
                            : asprintf(&to, "%s.corrupt-%s-%u", from, stamp, i)) < 0) {
                        to = NULL;
                        return -ENOMEM;
                }
                r = rename_noreplace(from, to);
                if (r == -EEXIST)
                        continue;
                if (r < 0)
                        return r;
                if (ret_path)
                        *ret_path = TAKE_PTR(to);
                return 0;
        }
        return -EEXIST;
}
