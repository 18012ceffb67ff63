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

/* Whether Zuora's nextRefreshTime ALLOWED_FROM forbids SLOT at NOW. */
bool plan_is_ineligible(int64_t allowed_from, int64_t slot, int64_t now);

/* When a SLOT that Zuora allows only from ALLOWED_FROM fires instead: at
 * ALLOWED_FROM with when_ineligible defer, unless the next slot comes first
 * or ALLOWED_FROM has passed at NOW; PLAN_UNSET when it is skipped. */
int64_t plan_defer_until(const EnvConfig *ec, int64_t slot, int64_t allowed_from, int64_t now);

/* How far back from a slot a job may have been created and still be its
 * refresh: our clock and Zuora's may disagree by this much. */
#define PLAN_CLOCK_SKEW_SEC 300

/* The job of JOBS (N of them) that already refreshes SLOT, whoever started
 * it: the newest created at or after SLOT (less submit_ahead, less
 * PLAN_CLOCK_SKEW_SEC), but never one of an earlier slot: the allowance
 * does not reach back to a slot of EARLIER (N_EARLIER times, PLAN_UNSET
 * ignored), and PREVIOUS_ID (the last job's id, may be NULL) is never the
 * one. NULL when none covers it. */
const ZuoraJob *plan_covering_job(
        const EnvConfig *ec,
        int64_t slot,
        const int64_t *earlier,
        size_t n_earlier,
        const char *previous_id,
        const ZuoraJob *jobs,
        size_t n);

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
