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
 */
#pragma once

#include <stdint.h>

#include "config.h"
#include "manager.h"

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

/* 120 bytes, a malloc chunk of 128: one per environment, so every field
 * counts (10,000 environments). */
struct Env {
        Manager *manager;
        const char *name;       /* EC's: the same in every config it comes from */
        Config *config;         /* a reference: the config this environment came from */
        const EnvConfig *ec;    /* inside CONFIG */
        uint32_t state_index;   /* where its StateEnv was last found */
        EnvState state;
        unsigned waiting;       /* CHECKING: WAIT_* still to come before the POST */
        unsigned attempt;       /* of the current submission */
        bool removed;           /* gone from the config: follow the job, then go */
        bool deferred;          /* firing at Zuora's nextRefreshTime */
        bool reauthenticated;
        bool conflict;          /* the POST got a 409: list, adopt or fail */
        bool plan_after_poll;   /* restarted with a job: plan slots after its first poll */
        bool poll_failing;      /* a poll error was logged for this streak */
        bool unknown_status_warned;
        bool checked_ahead;     /* IDLE: Zuora's eligibility read ahead of the slot, in the state */

        int64_t next_slot;      /* what the slot timer is armed for, or STATE_TIME_UNSET */
        int64_t slot;           /* the slot being worked on */
        int64_t prev_slot;      /* the slot handled before it, or STATE_TIME_UNSET */
        TimerQueueIndex slot_entry;     /* in the manager's slot queue (CLOCK_REALTIME) */
        TimerQueueIndex wait_entry;     /* in the manager's wait queue (CLOCK_BOOTTIME): polls, backoff */
        ClientCall *call;               /* IDLE: the eligibility check ahead of the slot, if out */
        ClientCall *list_call;          /* CHECKING: the list check beside the eligibility check */
        uint64_t first_attempt;         /* CLOCK_BOOTTIME µs */
        char *last_error;
};

int env_new(Manager *m, Config *c, const EnvConfig *ec, Env **ret);
Env *env_free(Env *e);

/* Starts the environment: resumes a job in flight or an unfinished slot,
 * catches up a missed slot, or arms the timer for the next one. */
int env_start(Env *e);

/* The timer queues' callbacks: a slot came; a poll or a retry is due. */
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

const char *env_state_to_string(EnvState s);
