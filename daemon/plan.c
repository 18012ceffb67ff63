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

bool plan_is_ineligible(const ZuoraClock *clock, int64_t allowed_from, int64_t slot, int64_t now_usec) {
        int64_t lo, hi;

        if (allowed_from == PLAN_UNSET)
                return false;
        zclock_to_ours(clock, allowed_from, now_usec, &lo, &hi);
        return lo > slot && lo > now_usec / (int64_t) USEC_PER_SEC;
}

int64_t plan_defer_until(
        const EnvConfig *ec, const ZuoraClock *clock, int64_t slot, int64_t allowed_from, int64_t now_usec) {
        int64_t lo, until, next;

        if (ec->when_ineligible != WHEN_INELIGIBLE_DEFER || allowed_from == PLAN_UNSET)
                return PLAN_UNSET;
        zclock_to_ours(clock, allowed_from, now_usec, &lo, &until);
        if (until <= now_usec / (int64_t) USEC_PER_SEC)
                return PLAN_UNSET;
        if (cron_next(ec->cron, ec->tz, slot, &next) >= 0 && next <= until)
                return PLAN_UNSET; /* the next slot comes first */
        return until;
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

static bool is_known(const PlanSlot *s, const char *id) {
        for (size_t i = 0; i < s->n_known_ids; i++)
                if (s->known_ids[i] && strcmp(s->known_ids[i], id) == 0)
                        return true;
        return false;
}

/* Whether JOB, which has ended, may have ended before FROM (our clock).
 * The doubt goes against the job: a POST after a job that failed or was
 * cancelled refreshes the sandbox once, while adopting it loses the slot. */
static bool ended_before(const PlanSlot *s, const ZuoraJob *job, int64_t from) {
        int64_t end = job->job_end_time != ZUORA_TIME_UNSET ? job->job_end_time : job->update_time, lo, hi;

        if (end == ZUORA_TIME_UNSET)
                end = job->create_time; /* it ended no sooner than it began */
        zclock_to_ours(s->clock, end, s->now_usec, &lo, &hi);
        return lo < from;
}

const ZuoraJob *plan_covering_job(const EnvConfig *ec, const PlanSlot *s, const ZuoraJob *jobs, size_t n) {
        int64_t ahead = (int64_t) (ec->submit_ahead / USEC_PER_SEC), start = s->slot - ahead;
        int64_t since = start - PLAN_JUST_BEFORE_SEC - PLAN_CLOCK_MARGIN_SEC, after = PLAN_UNSET, lo, hi;
        const ZuoraJob *found = NULL;

        /* No job of an earlier slot covers this one: a job created before an
         * earlier slot came (surely after it, by Zuora's clock as measured) is
         * that slot's, or older. */
        for (size_t i = 0; i < s->n_earlier; i++)
                if (s->earlier[i] != PLAN_UNSET && s->earlier[i] < s->slot &&
                    (after == PLAN_UNSET || s->earlier[i] - ahead > after))
                        after = s->earlier[i] - ahead;
        for (size_t i = 0; i < n; i++) {
                const ZuoraJob *j = &jobs[i];

                if (j->create_time == ZUORA_TIME_UNSET || is_known(s, j->id))
                        continue;
                zclock_to_ours(s->clock, j->create_time, s->now_usec, &lo, &hi);
                /* Created before the slot, as far as the clocks can tell
                 * (the uncertainty in the slot's favour): another slot's. */
                if (hi < since || (after != PLAN_UNSET && lo <= after))
                        continue;
                /* An end other than COMPLETED before the slot: it refreshed nothing for it. */
                if (zuora_job_has_ended(j) && zuora_status_outcome(j->status) != ZUORA_OUTCOME_COMPLETED &&
                    ended_before(s, j, start))
                        continue;
                if (!found || j->create_time > found->create_time)
                        found = j;
        }
        return found;
}

const ZuoraJob *plan_running_job(const ZuoraJob *jobs, size_t n) {
        const ZuoraJob *found = NULL;

        for (size_t i = 0; i < n; i++)
                if (!zuora_job_has_ended(&jobs[i]) && (!found || jobs[i].create_time > found->create_time))
                        found = &jobs[i];
        return found;
}

uint64_t plan_backoff_usec(unsigned attempt, uint64_t random) {
        uint64_t ceiling = BACKOFF_START_USEC << (attempt < 10 ? attempt : 10);

        if (ceiling > BACKOFF_CAP_USEC)
                ceiling = BACKOFF_CAP_USEC;
        return random % (ceiling + 1);
}

int64_t plan_next_fire(
        const EnvConfig *ec,
        int64_t after,
        int64_t paused_until,
        bool (*skipped)(int64_t slot, void *userdata),
        void *userdata) {
        int64_t slot = after;

        if (paused_until == INT64_MAX)
                return PLAN_UNSET;
        for (unsigned i = 0; i < PLAN_SKIP_LOOKAHEAD; i++) {
                if (cron_next(ec->cron, ec->tz, slot, &slot) < 0)
                        return PLAN_UNSET;
                if (paused_until != PLAN_UNSET && slot < paused_until)
                        continue;
                if (!skipped || !skipped(slot, userdata))
                        return slot;
        }
        return PLAN_UNSET;
}
