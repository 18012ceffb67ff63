/* SPDX-License-Identifier: MIT */
/*
 * state.json: what refreshd must remember across restarts, per environment
 * (keyed by name): the last slot fired, the intent to submit a slot, the
 * job in flight and the last finished one. Written with yajl's generator and
 * replaced atomically (temp file, fsync, rename, fsync of the directory);
 * read tolerantly. Never logs. Never holds a secret.
 */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "event.h"
#include "zclock.h"

#define STATE_TIME_UNSET INT64_MIN
#define STATE_FILE_NAME "state.json"
/* The largest state.json read, and written: 10,000 environments with jobs in
 * flight take about 6 MB. */
#define STATE_SIZE_MAX ((size_t) 64 * 1024 * 1024)
/* A last job's message is cut at this many bytes. */
#define STATE_MESSAGE_MAX 400

/* A job being followed. */
typedef struct StateJob {
        char *id;
        char *polling_url;
        char *status;         /* last status seen; may be NULL */
        int progress;         /* -1 unknown */
        int64_t submitted_at; /* when the POST was answered, or the job adopted */
        int64_t slot;         /* the slot it refreshes, or STATE_TIME_UNSET (manual) */
} StateJob;

/* The last job that ended. */
typedef struct StateLastJob {
        char *id;
        char *status;  /* COMPLETED, FAILED, ..., or "LOST" / "SUBMIT_FAILED" */
        char *message; /* why, for failures; may be NULL */
        int64_t ended_at;
        int64_t slot;
} StateLastJob;

/* The last event whose hooks and webhooks are all done, and the last
 * failure among them. */
typedef struct StateLastEvent {
        char *event; /* "completed" */
        char *id;
        int64_t at;  /* when its last delivery ended */
        char *error; /* the last hook or webhook that failed, and how; may be NULL */
        int64_t error_at;
} StateLastEvent;

/* An event whose hooks or webhooks are not all done: they are run again
 * after a restart (hooks that had not finished, webhooks without a 2xx). */
typedef struct StateOutboxEntry {
        Event event;
        char **pending; /* "hook:KEY" / "webhook:KEY" (config.h), in order; NULL-terminated */
} StateOutboxEntry;

/* A recipient of Zuora's e-mails that refreshd added (notify_emails): the
 * only ones it ever removes. */
typedef struct StateRecipient {
        char *environment;
        char *id; /* Zuora's notification id */
        char *address;
} StateRecipient;

/* An environment paused by `refreshd pause`: it fires nothing until resumed. */
typedef struct StatePause {
        int64_t at;    /* when */
        int64_t until; /* it resumes by itself then; STATE_TIME_UNSET: when told */
        char *reason;  /* may be NULL */
        char *by;      /* who: "uid 1000 (alice)" */
        int64_t held;  /* the latest slot it kept from firing, or STATE_TIME_UNSET */
} StatePause;

/* A slot of an environment that `refreshd skip` said not to fire. */
typedef struct StateSkip {
        char *environment;
        int64_t slot;
        int64_t at;   /* when it was said */
        char *reason; /* may be NULL */
        char *by;
} StateSkip;

typedef struct StateEnv {
        char *name;             /* owns one block with the id after it */
        char *id;               /* the Test Environment ID it was for; in NAME's block, not to be freed */
        int64_t since;          /* when refreshd first planned it: slots before are not its to catch up */
        int64_t last_slot;      /* the latest slot fired (or skipped by rule) */
        int64_t last_submitted; /* the slot of the latest successful submission */
        /* Intent: the POST for this slot may have been sent (issue: exactly once). */
        int64_t intent_slot; /* STATE_TIME_UNSET: none */
        char *intent_track_id;
        int64_t intent_sent_at;
        int64_t deferred_until;     /* when_ineligible=defer: fire at this time */
        int64_t zuora_last_refresh; /* Zuora's lastRefreshTime / nextRefreshTime, when known */
        int64_t zuora_next_refresh;
        StateJob *job;              /* NULL: none in flight */
        StateLastJob *last_job;     /* NULL: none yet */
        StateLastEvent *last_event; /* NULL: none yet */
        StatePause *pause;          /* NULL: not paused */
} StateEnv;

typedef struct State {
        StateEnv *envs;
        size_t n_envs;
        /* What was measured of Zuora's clock ("zuora_clock": {"offset_us",
         * "uncertainty_us", "at"}, absent until measured). */
        ZuoraClock zclock;
        /* Events with hooks or webhooks still to run, oldest first ("outbox": [...]). */
        StateOutboxEntry *outbox;
        size_t n_outbox, outbox_allocated;
        /* The e-mail recipients refreshd added ("recipients": [...]). */
        StateRecipient *recipients;
        size_t n_recipients, recipients_allocated;
        /* The slots not to fire ("skips": [...]), in the order they were said. */
        StateSkip *skips;
        size_t n_skips, skips_allocated;
        /* The intent log: its generation (0: none yet; state_save() starts
         * one), the last record number given out, and whether a state.json
         * of this generation is on disk, covering records up to
         * LOG_SAVED_SEQ. Records past that may be written only while the
         * ring keeps every record newer than LOG_SAVED_SEQ. */
        uint64_t log_id;
        uint64_t log_seq;
        uint64_t log_saved_seq;
        bool log_saved;
        /* Private to state.c: room in ENVS, and an index by name (open
         * addressing, power-of-two size; slot value i + 1 for envs[i], 0 for
         * empty) that covers the first N_INDEXED entries. */
        size_t n_allocated;
        uint32_t *index; /* 32 bits: a state.json of 16 MiB holds far fewer */
        size_t index_size;
        size_t n_indexed;
} State;

State *state_new(void);
State *state_free(State *s);

/* Reads DIR/state.json and replays the intent log's records that are newer
 * than it (an intent whose record is newer is set, with the slot as
 * last_slot when later). A missing file gives an empty State, and the log
 * is not read: its records belong to a state.json that is gone. -EBADMSG
 * for a file that is not valid state (with a description in
 * *reterr_message, which the caller frees); other negative errno values
 * for I/O errors (with a description when the intent log is at fault). */
int state_load(const char *dir, State **ret, char **reterr_message);

/* Parses state from memory (the loader's core; tests, fuzzing). */
int state_parse(const char *text, size_t size, State **ret, char **reterr_message);

/* Serializes to a new NUL-terminated string. */
int state_format(const State *s, char **ret, size_t *ret_size);

/* Replaces DIR/state.json atomically. On failure the old file is untouched
 * and no temp file is left behind. On success it covers every intent
 * record given out so far (log_saved_seq = log_seq). */
int state_save(const char *dir, State *s);

/* Makes the intents of the N entries ENVS durable in the intent log FD
 * (from intent_log_open()), with one flush. -EAGAIN when no state.json of
 * the log's generation is on disk yet, -ENOSPC when the ring has no room
 * for N more records, -E2BIG for an entry too long for a record, or an I/O
 * error: then only a state_save() makes them durable. Record numbers are
 * used up even on failure, so the next state_save() covers whatever part
 * of them reached the file. */
int state_log_intents(State *s, int fd, StateEnv *const *envs, size_t n);

/* Renames DIR/state.json to DIR/state.json.corrupt-<NOW as YYYYmmddTHHMMSSZ>;
 * the new name in *ret_path (may be NULL). */
int state_move_aside(const char *dir, int64_t now, char **ret_path);

/* The entry of environment NAME, or NULL. A hash look-up: O(1). */
StateEnv *state_find(State *s, const char *name);

/* The entry of environment NAME, created empty (all times unset) if there
 * is none; an entry whose id differs from ID is reset first, since it was
 * another environment. */
int state_get(State *s, const char *name, const char *id, StateEnv **ret);

/* Drops the entries that have no job in flight nor an intent and whose name KEEP says
 * no to: environments gone from the config. Entries move: pointers into
 * ENVS are stale after it. */
void state_prune(State *s, bool (*keep)(const char *name, void *userdata), void *userdata);

/* Appends event EV (copied) with the deliveries PENDING (taken, also on failure). */
int state_outbox_add(State *s, const Event *ev, char **pending);

/* Drops delivery KEY of entry I; the entry goes when none is left (entries
 * after it move). Returns whether the entry went. */
bool state_outbox_done(State *s, size_t i, const char *key);

/* The entry of event ID, or -ENOENT. */
ssize_t state_outbox_find(const State *s, const char *id);

/* Records that refreshd added recipient ID (ADDRESS) to ENVIRONMENT, or
 * that it is gone (ENVIRONMENT and ID may point into that record; the
 * records after it move down one place, those before it stay). */
int state_recipient_add(State *s, const char *environment, const char *id, const char *address);
void state_recipient_remove(State *s, const char *environment, const char *id);

/* Pauses E at AT until UNTIL (STATE_TIME_UNSET: until resumed), or changes
 * an existing pause's end and reason (its AT stays). */
int state_env_pause(StateEnv *e, int64_t at, int64_t until, const char *reason, const char *by);
/* Whether E was paused; it is not after. */
bool state_env_resume(StateEnv *e);

/* Records that SLOT of ENVIRONMENT is not to fire; -EEXIST when it already is. */
int state_skip_add(
        State *s, const char *environment, int64_t slot, int64_t at, const char *reason, const char *by);
/* The skip of SLOT of ENVIRONMENT (STATE_TIME_UNSET: its earliest), or NULL. */
const StateSkip *state_skip_find(const State *s, const char *environment, int64_t slot);
/* Takes the skip of SLOT of ENVIRONMENT out; false when there was none. */
bool state_skip_remove(State *s, const char *environment, int64_t slot);
/* Takes out ENVIRONMENT's skips of slots at or before SLOT (they are past). */
void state_skips_drop_past(State *s, const char *environment, int64_t slot);

/* Records that EV's deliveries all ended (ERROR: the last failure, may be NULL) at AT. */
int state_env_set_last_event(StateEnv *e, const Event *ev, int64_t at);
int state_env_set_delivery_error(StateEnv *e, const char *error, int64_t at);

StateJob *state_job_free(StateJob *j);
StateLastJob *state_last_job_free(StateLastJob *j);

/* ---- writing records elsewhere ---- */

typedef struct JsonWriter JsonWriter;

/* Writes time T (STATE_TIME_UNSET: null) as the caller wants it. */
typedef void (*StateTimeWriter)(JsonWriter *w, int64_t t, void *userdata);

/* Writes job J, or the last job LJ, as state.json holds it (null for NULL),
 * its times through PUT_TIME (NULL: UTC, as in the file): `status --json`
 * shows the same records. */
void state_write_job(JsonWriter *w, const StateJob *j, StateTimeWriter put_time, void *userdata);
void state_write_last_job(JsonWriter *w, const StateLastJob *lj, StateTimeWriter put_time, void *userdata);

/* ---- an entry's records ---- */

/* The POST for SLOT may now be sent, with TRACK_ID (copied), from SENT_AT. */
int state_env_set_intent(StateEnv *e, int64_t slot, const char *track_id, int64_t sent_at);

/* The intent is fulfilled, or given up. */
void state_env_clear_intent(StateEnv *e);

/* Follows job ID at POLLING_URL (STATUS may be NULL, PROGRESS -1), which
 * refreshes SLOT (STATE_TIME_UNSET: none), from SUBMITTED_AT. */
int state_env_follow(
        StateEnv *e,
        const char *id,
        const char *polling_url,
        const char *status,
        int progress,
        int64_t submitted_at,
        int64_t slot);

/* The job followed took STATUS (a copy); false when it already had it. */
bool state_job_set_status(StateJob *j, const char *status);

/* The job followed ended at ENDED_AT with STATUS (and MESSAGE, may be
 * NULL): it becomes the last job, and none is followed. */
int state_env_end_job(StateEnv *e, const char *status, const char *message, int64_t ended_at);

/* The refresh for SLOT ended at ENDED_AT without a job (STATUS such as
 * "SUBMIT_FAILED", saying MESSAGE). */
int state_env_end_without_job(
        StateEnv *e, const char *status, const char *message, int64_t ended_at, int64_t slot);
