/* SPDX-License-Identifier: MIT */
/*
 * Steering an environment: pauses and skips, as `refreshd pause`, `resume`,
 * `skip` and `unskip` ask. They live in the state (they survive restarts
 * and reloads); env.c honours them when a slot comes (env_steered_away()).
 */
#include <string.h>

#include "cron.h"
#include "env-internal.h"
#include "macro.h"
#include "plan.h"

int env_pause(Env *e, int64_t until, const char *reason, const char *by) {
        StateEnv *st = env_st(e);
        ReportFields f = env_fields(e, REPORT_UNSET);
        int r;

        r = state_env_pause(st, env_now(e), until, reason, by);
        if (r < 0)
                return r;
        f.caller = by;
        f.reason = reason;
        report_paused(e->ec, &f, until != STATE_TIME_UNSET ? until : REPORT_UNSET);
        env_save_later(e);
        e->host->ops->status_changed(e->host);
        return 0;
}

bool env_resume(Env *e, bool catch_up, const char *by) {
        StateEnv *st = env_st(e);
        ReportFields f = env_fields(e, REPORT_UNSET);
        int64_t held;

        if (!st->pause)
                return false;
        held = st->pause->held;
        state_env_resume(st);
        env_save_later(e);
        e->host->ops->status_changed(e->host);
        f.caller = by;
        catch_up = catch_up && held != STATE_TIME_UNSET && e->state == ENV_IDLE && !e->removed &&
                   e->ec->enabled && !st->job;
        if (catch_up)
                f.slot = held;
        report_resumed(e->ec, &f, /* expired= */ !by);
        if (catch_up)
                env_begin(e, held, REPORT_DUE_RESUMED);
        return true;
}

int64_t env_pause_until(const Env *e) {
        const StateEnv *st = env_st(e);
        return st && st->pause ? st->pause->until : STATE_TIME_UNSET;
}

/* The first slot after AFTER, or STATE_TIME_UNSET. */
static int64_t next_slot(const Env *e, int64_t after) {
        int64_t next;
        return cron_next(e->ec->cron, e->ec->tz, after, &next) < 0 ? STATE_TIME_UNSET : next;
}

/* The slots still to come start after this: now, or the last fired. */
static int64_t env_horizon(const Env *e) {
        const StateEnv *st = env_st(e);
        int64_t now = env_now(e);
        return st->last_slot != STATE_TIME_UNSET && st->last_slot > now ? st->last_slot : now;
}

/* Whether SLOT is one of the schedule's still to come. */
static bool env_is_coming_slot(const Env *e, int64_t slot) {
        return slot > env_horizon(e) && next_slot(e, slot - 1) == slot;
}

int env_skip_slot(Env *e, int64_t slot, const char *reason, const char *by, int64_t *ret_slot) {
        State *s = e->host->state;
        ReportFields f;
        int r;

        if (slot == STATE_TIME_UNSET) {
                slot = next_slot(e, env_horizon(e));
                for (unsigned i = 0; slot != STATE_TIME_UNSET && state_skip_find(s, e->name, slot); i++)
                        slot = i < PLAN_SKIP_LOOKAHEAD ? next_slot(e, slot) : STATE_TIME_UNSET;
                if (slot == STATE_TIME_UNSET)
                        return -ENOENT;
        } else if (!env_is_coming_slot(e, slot))
                return -EINVAL;

        r = state_skip_add(s, e->name, slot, env_now(e), reason, by);
        if (r == -EEXIST) {
                *ret_slot = slot;
                return 1; /* already */
        }
        if (r < 0)
                return r;
        f = env_fields(e, slot);
        f.caller = by;
        f.reason = reason;
        report_skip_changed(e->ec, &f, /* added= */ true);
        env_save_later(e);
        e->host->ops->status_changed(e->host);
        *ret_slot = slot;
        return 0;
}

int env_unskip_slot(Env *e, int64_t slot, const char *by, int64_t *ret_slot) {
        State *s = e->host->state;
        const StateSkip *k = state_skip_find(s, e->name, slot);
        ReportFields f;

        if (!k)
                return -ENOENT;
        slot = k->slot;
        state_skip_remove(s, e->name, slot);
        f = env_fields(e, slot);
        f.caller = by;
        report_skip_changed(e->ec, &f, /* added= */ false);
        env_save_later(e);
        e->host->ops->status_changed(e->host);
        *ret_slot = slot;
        return 0;
}

static bool env_is_skipped(int64_t slot, void *userdata) {
        const Env *e = userdata;
        return state_skip_find(e->host->state, e->name, slot);
}

int64_t env_next_fire(const Env *e) {
        const StateEnv *st = env_st(e);

        if (!st || e->removed || !e->ec->enabled)
                return STATE_TIME_UNSET;
        if (e->deferred && e->next_slot != STATE_TIME_UNSET && !st->pause)
                return e->next_slot; /* Zuora's time, no slot of the schedule */
        return plan_next_fire(
                e->ec,
                env_horizon(e),
                !st->pause                             ? PLAN_UNSET
                : st->pause->until == STATE_TIME_UNSET ? INT64_MAX
                                                       : st->pause->until,
                env_is_skipped,
                (void *) e);
}
