/* SPDX-License-Identifier: MIT */
/*
 * When an environment fires: the next slot, the latest of several missed,
 * catch-up, the min_interval gap, the deferral of a slot Zuora does not
 * allow yet, and when the slot timer wakes for the eligibility check ahead
 * of it. Pure, like cron.c: times in, times out; no clock, no I/O, no
 * logging. Times are seconds since the epoch, PLAN_UNSET when there is none.
 */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "zclock.h"
#include "zuora.h"

#define PLAN_UNSET INT64_MIN

/* The eligibility check leaves this long before a slot fires, or halfway
 * there when the slot is nearer; less than the minimum is not worth it. */
#define PLAN_CHECK_AHEAD_USEC (1000 * 1000)
#define PLAN_CHECK_AHEAD_MIN_USEC (10 * 1000)

/* What an environment's state says about its slots. */
typedef struct PlanState {
        int64_t since;          /* when it was first planned, or PLAN_UNSET: never */
        int64_t last_slot;      /* the latest slot fired (or skipped by rule) */
        int64_t deferred_until; /* a slot deferred to Zuora's time */
} PlanState;

typedef enum PlanAction {
        PLAN_NONE, /* no slot ever again (before the year 10000) */
        PLAN_WAIT, /* arm the slot timer for SLOT */
        PLAN_FIRE, /* fire SLOT now (DUE says why) */
        PLAN_SKIP, /* SLOT was missed and is not caught up: record it as the last, and plan again */
        _PLAN_ACTION_MAX,
        _PLAN_ACTION_INVALID = -EINVAL,
} PlanAction;

typedef struct Plan {
        PlanAction action;
        int64_t slot;
        bool deferred;      /* WAIT: for Zuora's time, not a slot of the schedule */
        bool clock_jumped;  /* FIRE: the clock jumped past it (else caught up after downtime) */
        bool drop_deferral; /* the deferral is moot: the next slot comes first */
        bool set_since;     /* never planned before: SINCE becomes NOW */
} Plan;

/* The next thing to do for environment EC in state ST at NOW. Slots missed
 * while refreshd was not running fire (once, for the latest) only with
 * catch_up; slots the wall clock jumped over while it ran (CLOCK_JUMPED: a
 * step forwards, a suspend) fire once, for the latest, whatever catch_up
 * says. A slot before SINCE is not a missed one: an environment never run
 * before starts at its next slot. */
Plan plan_next(const EnvConfig *ec, const PlanState *st, int64_t now, bool clock_jumped);

/* The latest slot of EC after AFTER and at or before NOW, or PLAN_UNSET. */
int64_t plan_latest_slot(const EnvConfig *ec, int64_t after, int64_t now);

/* Whether SLOT comes sooner than min_interval after LAST_SUBMITTED (the
 * slot of the latest submission), measured between the slots on the local
 * wall clock: a DST change between them neither shortens nor lengthens it. */
bool plan_too_soon(const EnvConfig *ec, int64_t last_submitted, int64_t slot);

/* Whether Zuora's nextRefreshTime ALLOWED_FROM (by Zuora's CLOCK) forbids
 * SLOT at NOW_USEC: only when it surely comes after both. */
bool plan_is_ineligible(const ZuoraClock *clock, int64_t allowed_from, int64_t slot, int64_t now_usec);

/* When a SLOT that Zuora allows only from ALLOWED_FROM (by Zuora's CLOCK)
 * fires instead: when Zuora surely allows it, with when_ineligible defer,
 * unless the next slot comes first or that time has passed at NOW_USEC;
 * PLAN_UNSET when it is skipped. */
int64_t plan_defer_until(
        const EnvConfig *ec, const ZuoraClock *clock, int64_t slot, int64_t allowed_from, int64_t now_usec);

/* What Zuora's clock may be off by beyond what was measured of it. */
#define PLAN_CLOCK_MARGIN_SEC 2

/* A refresh started by hand this long before a slot (by our clock) is the
 * slot's refresh, if it did not end FAILED or CANCELED before the slot. */
#define PLAN_JUST_BEFORE_SEC 300

/* What the list check knows besides the list: the slot's times and the jobs
 * refreshd already knows, which never cover a new slot. */
typedef struct PlanSlot {
        int64_t slot;
        const int64_t *earlier;       /* slots handled before it (PLAN_UNSET ignored) ... */
        size_t n_earlier;             /* ... and how many */
        const char *const *known_ids; /* jobs of earlier slots, by id ... */
        size_t n_known_ids;           /* ... and how many (NULL entries ignored) */
        const ZuoraClock *clock;      /* Zuora's clock, as measured */
        int64_t now_usec;             /* CLOCK_REALTIME */
} PlanSlot;

/* The job of JOBS (N of them) that already refreshes S->slot, whoever
 * started it, or NULL: the newest that may have been created no sooner than
 * PLAN_JUST_BEFORE_SEC before the slot (less submit_ahead; Zuora's
 * createTime as our clock may have read it, PLAN_CLOCK_MARGIN_SEC added),
 * but
 *  - never one created before an earlier slot came (S->earlier), nor a job
 *    refreshd already knows (S->known_ids);
 *  - and never one that ended FAILED or CANCELED (or ended otherwise without
 *    COMPLETED) before the slot: a job covers a slot only if it still ran at
 *    the slot, ended after it, or COMPLETED.
 * Zuora's times are compared with ours through S->clock. */
const ZuoraJob *plan_covering_job(const EnvConfig *ec, const PlanSlot *s, const ZuoraJob *jobs, size_t n);

/* The newest job of JOBS that has not ended (a refresh under way at Zuora),
 * or NULL. */
const ZuoraJob *plan_running_job(const ZuoraJob *jobs, size_t n);

/* How many slots ahead the next fire is looked for among skipped ones. */
#define PLAN_SKIP_LOOKAHEAD 10000

/* The first slot of EC after AFTER that fires: not SKIPPED (may be NULL)
 * and not held by a pause that ends at PAUSED_UNTIL (PLAN_UNSET: no pause;
 * INT64_MAX: one until resumed). PLAN_UNSET when none does. */
int64_t plan_next_fire(
        const EnvConfig *ec,
        int64_t after,
        int64_t paused_until,
        bool (*skipped)(int64_t slot, void *userdata),
        void *userdata);

/* The delay before retry ATTEMPT (from 0), full jitter: uniform in
 * [0, min(10 min, 5 s * 2^ATTEMPT)], drawn from RANDOM. */
uint64_t plan_backoff_usec(unsigned attempt, uint64_t random);

/* When (µs) the slot timer fires for SLOT: submit_ahead before it, or, for
 * a DEFERRED one, at Zuora's time itself. */
uint64_t plan_fire_usec(const EnvConfig *ec, int64_t slot, bool deferred);

/* When (µs) to wake for a fire at FIRE_USEC, NOW_USEC being now: ahead of
 * it for the eligibility check, unless DEFERRED (Zuora already said when)
 * or too near. */
uint64_t plan_wake_usec(uint64_t fire_usec, uint64_t now_usec, bool deferred);
