/* SPDX-License-Identifier: MIT */
/*
 * One environment at run time: its slot timer and the lifecycle of a
 * refresh, from the slot to the job's end:
 *
 *   IDLE (the eligibility check leaves a second ahead of the slot) ->
 *   CHECKING (already refreshed for this slot? the intent written; the
 *   eligibility check's answer, if still out: at once) -> SUBMITTING
 *   (POST) -> TRACKING (polling the job) -> IDLE, with BACKOFF between
 *   failed attempts, and LISTING -> INTENT -> SUBMITTING for a retry, a
 *   deferred slot and a slot whose submission a restart interrupted.
 *
 * Events (timers, answers) are kept apart from states: each handler looks at
 * the state it is in, and env_enter_state() changes it.
 *
 * An Env knows nothing of the Manager: it reaches the loop, the clock, the
 * Zuora client, the state and its timers through an EnvHost, which the
 * manager implements, and a unit test fakes (tests/unit/test-env.c).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "client.h"
#include "config.h"
#include "event.h"
#include "state.h"
#include "timerq.h"
#include "zuora.h"

typedef enum EnvState {
        ENV_IDLE,
        ENV_CHECKING,
        ENV_LISTING,
        ENV_INTENT,
        ENV_SUBMITTING,
        ENV_BACKOFF,
        ENV_TRACKING,
        _ENV_STATE_MAX,
        _ENV_STATE_INVALID = -EINVAL,
} EnvState;

typedef enum EnvTimer {
        ENV_TIMER_SLOT, /* CLOCK_REALTIME: env_on_slot() */
        ENV_TIMER_WAIT, /* CLOCK_BOOTTIME: env_on_wait(); polls and backoffs */
        _ENV_TIMER_MAX,
        _ENV_TIMER_INVALID = -EINVAL,
} EnvTimer;

typedef struct Env Env;
typedef struct EnvHost EnvHost;

/* What an environment needs of the world around it. */
typedef struct EnvHostOps {
        /* The time on CLOCK_REALTIME or CLOCK_BOOTTIME, µs, as of this turn of the loop. */
        uint64_t (*now)(EnvHost *h, clockid_t clock);
        /* Arms timer T of environment E for USEC on its clock (INDEX is E's
         * entry), or takes it out. */
        int (*timer_arm)(EnvHost *h, EnvTimer t, Env *e, TimerQueueIndex *index, uint64_t usec);
        void (*timer_disarm)(EnvHost *h, EnvTimer t, TimerQueueIndex *index);
        /* Zuora, as client_call(), client_cancel(), client_url() and client_resolve(). */
        int (*call)(
                EnvHost *h, const ClientRequest *req, ClientDoneFunc done, void *userdata, ClientCall **ret);
        void (*cancel)(EnvHost *h, ClientCall *call);
        char *(*url)(EnvHost *h, ZuoraEndpoint endpoint, const char *env_id, const char *job_id);
        int (*resolve)(EnvHost *h, const char *location, char **ret_url);
        /* Zuora's clock as measured, and another of its stamps (a createTime
         * made between SENT_USEC and RECEIVED_USEC of ours). */
        const ZuoraClock *(*zuora_clock)(EnvHost *h);
        void (*observe_clock)(EnvHost *h, int64_t stamp_sec, int64_t sent_usec, int64_t received_usec);
        /* An entry of the state changed: have it written at the end of this turn. */
        void (*save_later)(EnvHost *h);
        /* This environment's checks went out (CHECKING true) or ended: while
         * any are out, the state waits for their POSTs. */
        void (*checks_changed)(EnvHost *h, bool checking);
        /* What the environment would say in STATUS= may have changed. */
        void (*status_changed)(EnvHost *h);
        /* Event EV of environment EC happened (hooks and webhooks may follow
         * it); EV is the caller's: the host copies what it keeps. May be NULL. */
        void (*event)(EnvHost *h, const EnvConfig *ec, const Event *ev);
        /* A slot of EC fired (its checks go out now). May be NULL. */
        void (*slot_fired)(EnvHost *h, const EnvConfig *ec);
} EnvHostOps;

struct EnvHost {
        const EnvHostOps *ops;
        State *state; /* the entries, by name; it outlives every Env */
};

/* 120 bytes, a malloc chunk of 128: one per environment, so every field
 * counts (10,000 environments). */
struct Env {
        EnvHost *host;
        const char *name;     /* EC's: the same in every config it comes from */
        Config *config;       /* a reference: the config this environment came from */
        const EnvConfig *ec;  /* inside CONFIG */
        uint32_t state_index; /* where its StateEnv was last found */
        EnvState state;
        unsigned waiting;     /* CHECKING: WAIT_* still to come before the POST */
        unsigned attempt;     /* of the current submission */
        bool removed;         /* gone from the config: follow the job, then go */
        bool deferred;        /* firing at Zuora's nextRefreshTime */
        bool must_list;       /* the POST may have created a job it cannot name (a 409, an
                               * unreadable 2xx, a redirect): list, adopt or fail, never POST again */
        bool plan_after_poll; /* restarted with a job: plan slots after its first poll */
        bool poll_failing;    /* a poll error was logged for this streak */
        bool unknown_status_warned;
        bool checked_ahead; /* IDLE: Zuora's eligibility read ahead of the slot, in the state */

        int64_t next_slot;          /* what the slot timer is armed for, or STATE_TIME_UNSET */
        int64_t slot;               /* the slot being worked on */
        int64_t prev_slot;          /* the slot handled before it, or STATE_TIME_UNSET */
        TimerQueueIndex slot_entry; /* the slot timer's entry (CLOCK_REALTIME) */
        TimerQueueIndex wait_entry; /* the wait timer's entry (CLOCK_BOOTTIME): polls, backoff */
        ClientCall *check;          /* the eligibility check: ahead of the slot (IDLE) or at it (CHECKING) */
        ClientCall *call;           /* the state's request: the list check (CHECKING, LISTING),
                                     * the POST (SUBMITTING), the poll (TRACKING) */
        uint64_t first_attempt;     /* CLOCK_BOOTTIME µs */
        char *last_error;
};

/* A new environment for EC of config C (a reference is taken), on HOST,
 * with its entry in the host's state (created if there is none). */
int env_new(EnvHost *host, Config *c, const EnvConfig *ec, Env **ret);
Env *env_free(Env *e);

/* Starts the environment: resumes a job in flight or an unfinished slot,
 * catches up a missed slot, or arms the timer for the next one. */
int env_start(Env *e);

/* The timers' callbacks (OWNER is the Env): a slot came; a poll or a retry is due. */
void env_on_slot(void *owner);
void env_on_wait(void *owner);

/* Moves to EC of the new config C (same name): re-plans the timer. */
int env_reconfigure(Env *e, Config *c, const EnvConfig *ec);

/* The wall clock was set: plans the next slot again (a slot already fired
 * is never fired again: the state says so). */
void env_replan(Env *e);

/* Stops scheduling; a job in flight is still followed to its end. Returns
 * true when the environment can be freed now. */
bool env_remove(Env *e);

/* Whether a removed environment is done and can be freed. */
bool env_is_finished(const Env *e);

/* The entry whose intent this environment's POST waits to see on disk,
 * or NULL. */
StateEnv *env_intent_waiting(Env *e);

/* The state was written (or could not be): an intent waiting for it is on
 * disk, and its POST may leave. Does nothing for any other environment. */
void env_on_intent_saved(Env *e);

/* A short description for STATUS=: "uat IN_PROGRESS 45%". NULL when idle. */
char *env_status_text(const Env *e);

/* Whether env_status_text() has something to say: a refresh under way or
 * a job followed. */
bool env_is_busy(const Env *e);

/* ---- steering (env-steer.c); BY names the caller, REASON may be NULL ---- */

/* Pauses: no slot fires until UNTIL (STATE_TIME_UNSET: until resumed); a
 * job in flight is still followed, a submission under way goes on. */
int env_pause(Env *e, int64_t until, const char *reason, const char *by);
/* Resumes (BY NULL: its pause ended by itself); with CATCH_UP, the latest
 * slot held while paused fires now. False when it was not paused. */
bool env_resume(Env *e, bool catch_up, const char *by);
/* When its pause ends by itself, or STATE_TIME_UNSET. */
int64_t env_pause_until(const Env *e);

/* Skips SLOT (STATE_TIME_UNSET: the next slot not skipped yet), its slot in
 * *RET_SLOT: 0, or 1 when it already was. -EINVAL: SLOT is no slot of the
 * schedule still to come; -ENOENT: no slot comes. */
int env_skip_slot(Env *e, int64_t slot, const char *reason, const char *by, int64_t *ret_slot);
/* Fires SLOT again (STATE_TIME_UNSET: the earliest skipped), in *RET_SLOT;
 * -ENOENT: it is not skipped. */
int env_unskip_slot(Env *e, int64_t slot, const char *by, int64_t *ret_slot);

/* The next slot that will fire (not skipped, not paused), or STATE_TIME_UNSET. */
int64_t env_next_fire(const Env *e);

const char *env_state_to_string(EnvState s);
