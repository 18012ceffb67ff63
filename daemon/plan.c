/* SPDX-License-Identifier: MIT */
#include <string.h>

#include "macro.h"
#include "plan.h"

#define BACKOFF_START_USEC (5 * USEC_PER_SEC)
#define BACKOFF_CAP_USEC (600 * USEC_PER_SEC)

int64_t plan_latest_slot(const EnvConfig *ec, int64_t after, int64_t now) {
        /* Widening windows back from NOW, so that a long downtime with a
         * per-second schedule costs little. */
        static const int64_t windows[] = { 60, 86400, 32 * 86400, 400 * 86400, 3000 * 86400 };
        int64_t t, found = PLAN_UNSET;

        for (size_t i = 0; i <= ELEMENTSOF(windows); i++) {
                int64_t from = i < ELEMENTSOF(windows) ? now - windows[i] : after;
                if (from < after)
                        from = after;
                for (t = from; cron_next(ec->cron, ec->tz, t, &t) >= 0 && t <= now;)
                        found = t;
                if (found != PLAN_UNSET || from == after)
                        return found;
        }
        return found;
}

Plan plan_next(const EnvConfig *ec, const PlanState *st, int64_t now, bool clock_jumped) {
        Plan p = { .action = PLAN_NONE, .slot = PLAN_UNSET };
        int64_t next, after, since = st->since, latest;

        if (st->deferred_until != PLAN_UNSET) {
                /* defer: fire once when Zuora allows it, unless the next slot comes first. */
                if (cron_next(ec->cron, ec->tz, st->last_slot, &next) < 0 || next > st->deferred_until)
                        return (Plan) { .action = PLAN_WAIT, .slot = st->deferred_until, .deferred = true };
                p.drop_deferral = true;
        }
        if (since == PLAN_UNSET) {
                since = now;
                p.set_since = true;
        }
        after = st->last_slot != PLAN_UNSET ? st->last_slot : since;
        if (cron_next(ec->cron, ec->tz, after, &next) < 0)
                return p; /* never again before the year 10000 */
        if (next > now) {
                p.action = PLAN_WAIT;
                p.slot = next;
                return p;
        }

        /* Slots were missed while the daemon was down (or the clock jumped). */
        latest = plan_latest_slot(ec, after, now);
        p.slot = latest != PLAN_UNSET ? latest : next;
        p.action = clock_jumped || ec->catch_up ? PLAN_FIRE : PLAN_SKIP;
        p.clock_jumped = clock_jumped;
        return p;
}

bool plan_too_soon(const EnvConfig *ec, int64_t last_submitted, int64_t slot) {
        int64_t gap;

        if (ec->min_interval == 0 || last_submitted == PLAN_UNSET)
                return false;
        gap = (slot + tz_offset(ec->tz, slot, NULL)) -
              (last_submitted + tz_offset(ec->tz, last_submitted, NULL));
        return gap < 0 || (uint64_t) gap * USEC_PER_SEC < ec->min_interval;
}

bool plan_is_ineligible(int64_t allowed_from, int64_t slot, int64_t now) {
        return allowed_from != PLAN_UNSET && allowed_from > slot && allowed_from > now;
}

int64_t plan_defer_until(const EnvConfig *ec, int64_t slot, int64_t allowed_from, int64_t now) {
        int64_t next;

        if (ec->when_ineligible != WHEN_INELIGIBLE_DEFER || allowed_from == PLAN_UNSET ||
            allowed_from <= now)
                return PLAN_UNSET;
        if (cron_next(ec->cron, ec->tz, slot, &next) >= 0 && next <= allowed_from)
                return PLAN_UNSET; /* the next slot comes first */
        return allowed_from;
}

uint64_t plan_fire_usec(const EnvConfig *ec, int64_t slot, bool deferred) {
        int64_t at = deferred ? slot : slot - (int64_t) (ec->submit_ahead / USEC_PER_SEC);
        return (uint64_t) at * USEC_PER_SEC;
}

uint64_t plan_wake_usec(uint64_t fire_usec, uint64_t now_usec, bool deferred) {
        uint64_t lead = 0;

        if (!deferred && fire_usec > now_usec)
                lead = (fire_usec - now_usec) / 2 < PLAN_CHECK_AHEAD_USEC ? (fire_usec - now_usec) / 2
                                                                          : PLAN_CHECK_AHEAD_USEC;
        return lead >= PLAN_CHECK_AHEAD_MIN_USEC ? fire_usec - lead : fire_usec;
}

const ZuoraJob *plan_covering_job(
        const EnvConfig *ec,
        int64_t slot,
        const int64_t *earlier,
        size_t n_earlier,
        const char *previous_id,
        const ZuoraJob *jobs,
        size_t n) {
        int64_t ahead = (int64_t) (ec->submit_ahead / USEC_PER_SEC);
        int64_t since = slot - ahead - PLAN_CLOCK_SKEW_SEC;
        const ZuoraJob *found = NULL;

        /* The skew allowance must not reach back to an earlier slot (the
         * previous one, or after a restart the last one known to have had a
         * job): no job of an earlier slot covers this one. */
        for (size_t i = 0; i < n_earlier; i++)
                if (earlier[i] != PLAN_UNSET && earlier[i] < slot && earlier[i] - ahead + 1 > since)
                        since = earlier[i] - ahead + 1;
        for (size_t i = 0; i < n; i++)
                if (jobs[i].create_time != ZUORA_TIME_UNSET && jobs[i].create_time >= since &&
                    !(previous_id && strcmp(jobs[i].id, previous_id) == 0) &&
                    (!found || jobs[i].create_time > found->create_time))
                        found = &jobs[i];
        return found;
}

uint64_t plan_backoff_usec(unsigned attempt, uint64_t random) {
        uint64_t ceiling = BACKOFF_START_USEC << (attempt < 10 ? attempt : 10);

        if (ceiling > BACKOFF_CAP_USEC)
                ceiling = BACKOFF_CAP_USEC;
        return random % (ceiling + 1);
}
