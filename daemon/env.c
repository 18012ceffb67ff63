/* SPDX-License-Identifier: MIT */
/*
 * One environment's refresh lifecycle. The rules it keeps, from the product
 * contract:
 *  - at most once per slot: before a slot's POST the environment's jobs are
 *    listed, and a job that covers the slot (plan_covering_job(), Zuora's
 *    times read through its clock as measured) is adopted instead; the same
 *    check runs before every retry of a POST whose outcome is unknown, and
 *    an answer that may have made a job it does not name is never followed
 *    by another POST;
 *  - a refresh running at Zuora that does not cover the slot skips it;
 *  - the intent to submit a slot is on disk before the POST leaves, so a
 *    crash between the two is reconciled by that list check at the next start;
 *  - a slot that comes while a job still runs, or sooner than min_interval
 *    after the last submission, is skipped and logged;
 *  - after downtime, catch_up fires once for the latest missed slot.
 * When slots come is plan.c's to say, what is said about them report.c's,
 * and how a record looks state.c's; this file decides what happens next.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <syslog.h>

#include "duration.h"
#include "env-internal.h"
#include "macro.h"
#include "plan.h"
#include "report.h"

static void env_fire(Env *e, int64_t slot);
static void env_on_checked(const ClientResult *res, void *userdata);

const char *env_state_to_string(EnvState s) {
        switch (s) {
        case ENV_IDLE:
                return "idle";
        case ENV_CHECKING:
                return "checking";
        case ENV_LISTING:
                return "listing";
        case ENV_INTENT:
                return "intent";
        case ENV_SUBMITTING:
                return "submitting";
        case ENV_BACKOFF:
                return "backoff";
        case ENV_TRACKING:
                return "tracking";
        case _ENV_STATE_MAX:
        case _ENV_STATE_INVALID:
                break;
        }
        return NULL;
}

/* ---- the host ---- */

uint64_t env_now_usec(const Env *e, clockid_t clock) {
        return e->host->ops->now(e->host, clock);
}

int64_t env_now(const Env *e) {
        return (int64_t) (env_now_usec(e, CLOCK_REALTIME) / USEC_PER_SEC);
}

void env_save_later(const Env *e) {
        e->host->ops->save_later(e->host);
}

char *env_url(const Env *e, ZuoraEndpoint endpoint, const char *job_id) {
        return e->host->ops->url(e->host, endpoint, e->ec->id, job_id);
}

int env_get(Env *e, ZuoraEndpoint endpoint, ClientDoneFunc done, ClientCall **ret) {
        _cleanup_free_ char *url = env_url(e, endpoint, NULL);

        if (!url)
                return -ENOMEM;
        return e->host->ops->call(e->host, CLIENT_GET(url), done, e, ret);
}

static void env_cancel(Env *e, ClientCall **call) {
        e->host->ops->cancel(e->host, *call);
        *call = NULL;
}

void env_cancel_calls(Env *e) {
        env_cancel(e, &e->check);
        env_cancel(e, &e->call);
        e->waiting = 0;
}

/* The environment's entry in the state: remembered by index, checked by
 * name (state_prune() moves entries). */
StateEnv *env_st(const Env *e) {
        State *s = e->host->state;
        Env *w = (Env *) e;
        StateEnv *st;

        if (w->state_index < s->n_envs && strcmp(s->envs[w->state_index].name, e->name) == 0)
                return &s->envs[w->state_index];
        st = state_find(s, e->name);
        if (st)
                w->state_index = (uint32_t) (st - s->envs);
        return st;
}

/* The fields every event of this environment carries, and the slot. */
ReportFields env_fields(const Env *e, int64_t slot) {
        ReportFields f = REPORT_FIELDS_INIT;

        f.environment = e->name;
        f.environment_id = e->ec->id;
        f.slot = slot;
        return f;
}

void env_set_error(Env *e, const char *text) {
        free(e->last_error);
        e->last_error = text ? strdup(text) : NULL;
}

void env_event(Env *e, EventKind kind, const ReportFields *f, const ZuoraJob *job, const char *message) {
        if (!e->host->ops->event)
                return;
        Event ev = {
                .kind = kind,
                .environment = (char *) e->name,
                .environment_id = (char *) e->ec->id,
                .slot = f->slot,
                .job_id = (char *) f->job_id,
                .job_status = (char *) f->job_status,
                .job_start = job ? job->job_start_time : EVENT_TIME_UNSET,
                .job_end = job ? job->job_end_time : EVENT_TIME_UNSET,
                .track_id = (char *) f->track_id,
                .message = (char *) message,
                .time = env_now(e),
                .attempt = kind == EVENT_RETRYING ? e->attempt + 1 : 0,
        };
        _Static_assert(
                REPORT_UNSET == EVENT_TIME_UNSET && ZUORA_TIME_UNSET == EVENT_TIME_UNSET, "one unset time");
        event_set_id(&ev, NULL, NULL);
        e->host->ops->event(e->host, e->ec, &ev);
}

/* ---- life ---- */

int env_new(EnvHost *host, Config *c, const EnvConfig *ec, Env **ret) {
        _cleanup_free_ Env *e = calloc(1, sizeof(Env));
        StateEnv *st;
        int r;

        if (!e)
                return -ENOMEM;
        r = state_get(host->state, ec->name, ec->id, &st);
        if (r < 0)
                return r;
        *e = (Env) {
                .host = host,
                .name = ec->name,
                .config = config_ref(c),
                .ec = ec,
                .state_index = (uint32_t) (st - host->state->envs),
                .next_slot = STATE_TIME_UNSET,
                .slot = STATE_TIME_UNSET,
                .prev_slot = STATE_TIME_UNSET,
                .slot_entry = TIMERQ_NONE,
                .wait_entry = TIMERQ_NONE,
        };
        *ret = TAKE_PTR(e);
        return 0;
}

Env *env_free(Env *e) {
        if (!e)
                return NULL;
        env_cancel_calls(e);
        if (e->state == ENV_CHECKING)
                e->host->ops->checks_changed(e->host, false);
        e->host->ops->timer_disarm(e->host, ENV_TIMER_SLOT, &e->slot_entry);
        e->host->ops->timer_disarm(e->host, ENV_TIMER_WAIT, &e->wait_entry);
        config_free(e->config);
        free(e->last_error);
        free(e);
        return NULL;
}

_Static_assert(sizeof(Env) <= 120, "an Env is 120 bytes at most (a malloc chunk of 128)");

/* ---- timers ---- */

static void env_arm_slot(Env *e, uint64_t usec) {
        int r = e->host->ops->timer_arm(e->host, ENV_TIMER_SLOT, e, &e->slot_entry, usec);
        if (r < 0)
                report_log(
                        LOG_ERR, "environment '%s': cannot arm the slot timer: %s", e->name, strerror(-r));
}

static void env_disarm_slot(Env *e) {
        e->host->ops->timer_disarm(e->host, ENV_TIMER_SLOT, &e->slot_entry);
}

void env_arm_wait(Env *e, uint64_t delay) {
        int r = e->host->ops->timer_arm(
                e->host, ENV_TIMER_WAIT, e, &e->wait_entry, env_now_usec(e, CLOCK_BOOTTIME) + delay);
        if (r < 0)
                report_log(LOG_ERR, "environment '%s': cannot arm a timer: %s", e->name, strerror(-r));
}

void env_disarm_wait(Env *e) {
        e->host->ops->timer_disarm(e->host, ENV_TIMER_WAIT, &e->wait_entry);
}

static uint64_t env_fire_usec(const Env *e) {
        return plan_fire_usec(e->ec, e->next_slot, e->deferred);
}

/* Arms the slot timer for the next fire, or first for the eligibility
 * check ahead of it. */
static void env_arm_fire(Env *e) {
        env_arm_slot(e, plan_wake_usec(env_fire_usec(e), env_now_usec(e, CLOCK_REALTIME), e->deferred));
}

/* Forgets the eligibility check made ahead of the slot, and cancels it if
 * it is still out. */
static void env_drop_check_ahead(Env *e) {
        e->checked_ahead = false;
        if (e->state == ENV_IDLE)
                env_cancel(e, &e->check);
}

/* ---- planning ---- */

static void env_plan(Env *e, bool clock_jumped) {
        StateEnv *st = env_st(e);
        Plan p;

        env_disarm_slot(e);
        e->next_slot = STATE_TIME_UNSET;
        env_drop_check_ahead(e);
        if (e->removed || !e->ec->enabled || !st)
                return;

        for (;;) {
                p = plan_next(
                        e->ec,
                        &(PlanState) { st->since, st->last_slot, st->deferred_until },
                        env_now(e),
                        clock_jumped);
                if (p.drop_deferral)
                        st->deferred_until = STATE_TIME_UNSET;
                if (p.set_since)
                        st->since = env_now(e);
                if (p.drop_deferral || p.set_since)
                        env_save_later(e);
                if (p.action != PLAN_SKIP)
                        break;
                /* Missed while refreshd was not running, and catch_up is off. */
                ReportFields f = env_fields(e, p.slot);
                ReportSkip why = { .reason = REPORT_SKIP_MISSED };
                report_slot_skipped(e->ec, &f, &why);
                env_event(e, EVENT_SKIPPED, &f, NULL, report_skip_reason(e->ec, &why, (char[300]) {}, 300));
                st->last_slot = p.slot;
                env_save_later(e);
                clock_jumped = false;
        }

        e->deferred = p.deferred;
        switch (p.action) {
        case PLAN_WAIT:
                e->next_slot = p.slot;
                env_arm_fire(e);
                break;
        case PLAN_FIRE: {
                ReportFields f = env_fields(e, p.slot);
                report_slot_due(e->ec, &f, p.clock_jumped ? REPORT_DUE_CLOCK_JUMPED : REPORT_DUE_CATCH_UP);
                env_fire(e, p.slot);
                break;
        }
        case PLAN_NONE:
        case PLAN_SKIP:
        case _PLAN_ACTION_MAX:
        case _PLAN_ACTION_INVALID:
                break;
        }
}

void env_schedule(Env *e) {
        env_plan(e, /* clock_jumped= */ false);
}

/* The end of a slot's processing, whatever the outcome. */
void env_slot_done(Env *e) {
        StateEnv *st = env_st(e);

        if (st)
                state_env_clear_intent(st);
        e->slot = STATE_TIME_UNSET;
        e->attempt = 0;
        e->must_list = false;
        env_disarm_wait(e);
        env_save_later(e);
        if (st && st->job) {
                /* Tracking goes on; the next slot is still watched, so that
                 * one coming while the job runs is skipped when it comes. */
                env_schedule(e);
                return;
        }
        env_enter_state(e, ENV_IDLE);
}

/* The refresh of the current slot failed for good. */
void env_fail(Env *e, const char *message) {
        StateEnv *st = env_st(e);
        ReportFields f = env_fields(e, e->slot);

        report_refresh_failed(e->ec, &f, message);
        env_event(e, EVENT_FAILED, &f, NULL, message);
        if (st)
                (void) state_env_end_without_job(st, "SUBMIT_FAILED", message, env_now(e), e->slot);
        env_slot_done(e);
}

/* Records the intent (slot, a new track id, time) and has it written. */
static void env_record_intent(Env *e) {
        uint8_t random[16];
        char track[ZUORA_TRACK_ID_MAX];

        if (getrandom(random, sizeof(random), 0) != sizeof(random))
                memset(random, 0, sizeof(random));
        zuora_track_id(random, track);
        (void) state_env_set_intent(env_st(e), e->slot, track, env_now(e));
        env_save_later(e);
}

/* ---- states ---- */

/* IDLE: the next slot is planned, unless the environment is going away. */
static void env_enter_idle(Env *e) {
        if (!e->removed)
                env_schedule(e);
}

/* CHECKING: the first attempt at a slot. The eligibility check (unless it
 * was made ahead of the slot), the list check and the intent's write go
 * together (the GETs leave before the save's fsync starts), and the POST
 * leaves once all are done: env_proceed(). A check that cannot be sent is
 * skipped: the POST decides. */
static void env_enter_checking(Env *e, bool checked) {
        env_record_intent(e);
        e->waiting = WAIT_LIST | WAIT_INTENT;
        if (e->check)
                e->waiting |= WAIT_CHECK; /* the check sent ahead is still out */
        else if (!checked && env_get(e, ZUORA_ENDPOINT_ENVIRONMENT, env_on_checked, &e->check) >= 0)
                e->waiting |= WAIT_CHECK;
        if (env_list_send(e) < 0)
                e->waiting &= ~WAIT_LIST;
}

/* INTENT: an attempt after the first; the intent is written before the
 * POST leaves, and env_on_intent_saved() goes on. */
static void env_enter_intent(Env *e) {
        env_record_intent(e);
}

void env_enter_state(Env *e, EnvState s) {
        if ((e->state == ENV_CHECKING) != (s == ENV_CHECKING))
                e->host->ops->checks_changed(e->host, s == ENV_CHECKING);
        e->state = s;
        e->host->ops->status_changed(e->host);

        switch (s) {
        case ENV_IDLE:
                env_enter_idle(e);
                break;
        case ENV_LISTING:
                env_enter_listing(e); /* env-list.c */
                break;
        case ENV_INTENT:
                env_enter_intent(e);
                break;
        case ENV_SUBMITTING:
                env_enter_submitting(e);
                break;
        case ENV_CHECKING: /* env_prepare() sends what it needs */
        case ENV_BACKOFF:  /* env_retry() arms the wait */
        case ENV_TRACKING: /* env_track() and env_start() poll */
        case _ENV_STATE_MAX:
        case _ENV_STATE_INVALID:
                break;
        }
}

/* ---- firing ---- */

/* Deferred by nextRefreshTime, the slot is rejected (for now); skipped by
 * when_ineligible: skip, it is skipped. */
static void env_event_ineligible(Env *e, const ReportFields *f, int64_t next, int64_t until) {
        char msg[200], at[32];

        if (tz_format_utc(next, at, sizeof(at)) < 0)
                snprintf(at, sizeof(at), "later");
        if (until != PLAN_UNSET)
                snprintf(
                        msg,
                        sizeof(msg),
                        "Zuora allows the next refresh from %s; the slot is deferred to then",
                        at);
        else
                snprintf(
                        msg,
                        sizeof(msg),
                        "Zuora allows the next refresh from %s, and when_ineligible is skip",
                        at);
        env_event(e, until != PLAN_UNSET ? EVENT_REJECTED : EVENT_SKIPPED, f, NULL, msg);
}

/* Whether Zuora's nextRefreshTime allows the slot. When it does not, says
 * so, defers or skips the slot by when_ineligible, and ends it. */
static bool env_allowed(Env *e) {
        StateEnv *st = env_st(e);
        int64_t next = st->zuora_next_refresh, until;

        const ZuoraClock *clock = e->host->ops->zuora_clock(e->host);
        int64_t now = (int64_t) env_now_usec(e, CLOCK_REALTIME);

        if (!plan_is_ineligible(clock, next, e->slot, now))
                return true;
        until = plan_defer_until(e->ec, clock, e->slot, next, now);
        ReportFields f = env_fields(e, e->slot);
        report_ineligible(e->ec, &f, next, until != PLAN_UNSET);
        env_event_ineligible(e, &f, next, until);
        if (until != PLAN_UNSET)
                st->deferred_until = until;
        env_cancel_calls(e); /* the list check */
        env_slot_done(e);
        return false;
}

/* The first attempt at the slot, with the eligibility check ahead's answer if there is one. */
static void env_prepare(Env *e) {
        bool checked = e->checked_ahead;

        e->checked_ahead = false;
        if (checked && !env_allowed(e))
                return;
        env_enter_state(e, ENV_CHECKING);
        env_enter_checking(e, checked);
}

static void env_skip(Env *e, int64_t slot, const ReportSkip *why) {
        ReportFields f = env_fields(e, slot);

        report_slot_skipped(e->ec, &f, why);
        env_event(e, EVENT_SKIPPED, &f, NULL, report_skip_reason(e->ec, why, (char[300]) {}, 300));
        env_schedule(e);
}

/* Whether SLOT, come now, is held by a pause or a skip: it is skipped then,
 * and remembered (a pause's latest) for a catch-up on resume. */
static bool env_steered_away(Env *e, int64_t slot) {
        StateEnv *st = env_st(e);
        const StateSkip *k;

        if (st->pause && st->pause->until != STATE_TIME_UNSET && env_now(e) >= st->pause->until)
                env_resume(e, /* catch_up= */ false, NULL); /* its end came, its timer not run yet */
        if (st->pause) {
                st->pause->held = slot;
                env_skip(
                        e,
                        slot,
                        &(ReportSkip) { .reason = REPORT_SKIP_PAUSED,
                                        .by = st->pause->by,
                                        .note = st->pause->reason,
                                        .until = st->pause->until != STATE_TIME_UNSET ? st->pause->until
                                                                                      : REPORT_UNSET });
                return true;
        }
        k = state_skip_find(e->host->state, e->name, slot);
        if (k) {
                ReportSkip why = { .reason = REPORT_SKIP_TOLD, .until = REPORT_UNSET };
                _cleanup_free_ char *by = k->by ? strdup(k->by) : NULL;
                _cleanup_free_ char *note = k->reason ? strdup(k->reason) : NULL;
                why.by = by;
                why.note = note;
                state_skip_remove(e->host->state, e->name, slot);
                env_skip(e, slot, &why);
                return true;
        }
        return false;
}

void env_begin(Env *e, int64_t slot, ReportDue due) {
        StateEnv *st = env_st(e);

        if (st->job) {
                env_skip(e, slot, &(ReportSkip) { .reason = REPORT_SKIP_RUNNING, .job_id = st->job->id });
                return;
        }
        if (plan_too_soon(e->ec, st->last_submitted, slot)) {
                env_skip(
                        e,
                        slot,
                        &(ReportSkip) { .reason = REPORT_SKIP_MIN_INTERVAL,
                                        .other_slot = st->last_submitted,
                                        .min_interval = e->ec->min_interval });
                return;
        }

        e->slot = slot;
        e->attempt = 0;
        e->first_attempt = env_now_usec(e, CLOCK_BOOTTIME);
        st->intent_slot = slot;
        ReportFields f = env_fields(e, slot);
        report_slot_due(e->ec, &f, due);
        if (e->deferred) {
                e->deferred = false;
                env_enter_state(e, ENV_LISTING); /* Zuora said when; asking again could defer forever */
                return;
        }
        env_prepare(e);
}

static void env_fire(Env *e, int64_t slot) {
        StateEnv *st = env_st(e);

        e->prev_slot = st->last_slot;
        st->last_slot = slot;
        st->deferred_until = STATE_TIME_UNSET;
        env_save_later(e);
        if (e->host->ops->slot_fired)
                e->host->ops->slot_fired(e->host, e->ec);
        if (env_steered_away(e, slot))
                return;
        env_begin(e, slot, REPORT_DUE_SLOT);
}

/* Shortly before the slot fires (IDLE, nothing out): at the slot only the
 * list check and the intent's write are left before the POST. Not while a
 * job runs: the slot is skipped then. */
static void env_check_ahead(Env *e) {
        StateEnv *st = env_st(e);

        e->checked_ahead = false;
        if (e->state != ENV_IDLE || e->check || !st || st->job || st->pause ||
            state_skip_find(e->host->state, e->name, e->next_slot))
                return; /* nothing to check for: the slot is skipped */
        (void) env_get(e, ZUORA_ENDPOINT_ENVIRONMENT, env_on_checked, &e->check);
}

void env_on_slot(void *owner) {
        Env *e = owner;
        StateEnv *st = env_st(e);
        int64_t slot = e->next_slot;

        if (slot == STATE_TIME_UNSET)
                return;
        if (!e->deferred) {
                uint64_t fire = env_fire_usec(e), now = env_now_usec(e, CLOCK_REALTIME);
                if (now < fire) {
                        /* Woken ahead of the slot: its eligibility check leaves now. */
                        env_check_ahead(e);
                        env_arm_slot(e, fire);
                        return;
                }
                if (now - fire > PLAN_CHECK_AHEAD_USEC)
                        env_drop_check_ahead(e); /* woken late (a suspend): its answer is old */
                /* After a suspend or a clock step forwards, several slots may be
                 * due at once: they collapse into one fire, for the latest. */
                int64_t latest = plan_latest_slot(e->ec, slot, env_now(e));
                if (latest != PLAN_UNSET)
                        slot = latest;
        }
        e->next_slot = STATE_TIME_UNSET;
        if (e->state == ENV_IDLE || e->state == ENV_TRACKING) {
                env_fire(e, slot); /* skips it if a job is in flight */
                return;
        }
        /* Still submitting an earlier slot (retrying): this one is covered by it. */
        st->last_slot = slot;
        env_save_later(e);
        env_skip(e, slot, &(ReportSkip) { .reason = REPORT_SKIP_SUBMITTING, .other_slot = e->slot });
}

/* ---- backoff ---- */

/* A backoff delay for the next attempt. */
static uint64_t backoff_delay(unsigned attempt) {
        uint64_t r = 0;

        if (getrandom(&r, sizeof(r), 0) != sizeof(r))
                r = UINT64_MAX / 2;
        return plan_backoff_usec(attempt, r);
}

/* Retries the submission after DELAY (or a backoff delay when DELAY is
 * UINT64_MAX), unless retry_for has run out. */
void env_retry(Env *e, uint64_t delay, int64_t http_status, const char *track_id, const char *why) {
        bool asked = delay != UINT64_MAX; /* Zuora said how long (Retry-After) */

        if (!asked)
                delay = backoff_delay(e->attempt);
        e->attempt++;
        if (!e->must_list)
                env_set_error(e, why); /* else it keeps why the POST is not sent again */
        if (env_now_usec(e, CLOCK_BOOTTIME) + delay > e->first_attempt + e->ec->retry_for) {
                char msg[600], wait[DURATION_MAX], retry_for[DURATION_MAX];

                duration_format(e->ec->retry_for, retry_for);
                if (asked)
                        snprintf(
                                msg,
                                sizeof(msg),
                                "%s, and asks to wait %s: longer than retry_for %s leaves; not retried",
                                why,
                                duration_format(delay / USEC_PER_SEC * USEC_PER_SEC, wait),
                                retry_for);
                else
                        snprintf(msg, sizeof(msg), "%s (gave up after retrying for %s)", why, retry_for);
                env_fail(e, msg);
                return;
        }
        ReportFields f = env_fields(e, e->slot);
        f.http_status = http_status > 0 ? http_status : REPORT_UNSET;
        f.track_id = track_id;
        f.retry_in_usec = (int64_t) delay;
        report_retrying(e->ec, &f, why, e->attempt + 1);
        env_event(e, EVENT_RETRYING, &f, NULL, why);
        env_enter_state(e, ENV_BACKOFF);
        env_arm_wait(e, delay);
}

void env_on_wait(void *owner) {
        Env *e = owner;

        switch (e->state) {
        case ENV_BACKOFF:
                /* The last POST's outcome may be unknown: list before retrying. */
                env_enter_state(e, ENV_LISTING);
                break;
        case ENV_TRACKING:
                env_poll(e);
                break;
        case ENV_IDLE:
        case ENV_CHECKING:
        case ENV_LISTING:
        case ENV_INTENT:
        case ENV_SUBMITTING:
        case _ENV_STATE_MAX:
        case _ENV_STATE_INVALID:
                break;
        }
}

/* ---- eligibility ---- */

/* Reads Zuora's answer to the eligibility check into the state (in memory:
 * the slot's own write carries it); false when there is none to read. */
static bool env_read_eligibility(Env *e, const ClientResult *res) {
        StateEnv *st = env_st(e);
        int64_t last, next;

        if (res->verdict != ZUORA_VERDICT_OK ||
            zuora_parse_environment(res->response->body, res->response->body_size, &last, &next) < 0)
                return false;
        st->zuora_last_refresh = last;
        st->zuora_next_refresh = next;
        return true;
}

/* The eligibility check's answer. At the slot (CHECKING), whatever went
 * wrong, the POST decides. Ahead of it (IDLE), it is kept for the slot,
 * unless it failed: the slot then checks again. */
static void env_on_checked(const ClientResult *res, void *userdata) {
        Env *e = userdata;

        e->check = NULL;
        if (e->state != ENV_CHECKING) {
                e->checked_ahead = env_read_eligibility(e, res);
                return;
        }
        e->waiting &= ~WAIT_CHECK;
        if (!env_read_eligibility(e, res) || env_allowed(e))
                env_proceed(e);
}

/* CHECKING: one of the three is done; the POST leaves after the last. */
void env_proceed(Env *e) {
        if (e->waiting == 0)
                env_enter_state(e, ENV_SUBMITTING);
}

StateEnv *env_intent_waiting(Env *e) {
        if (e->state == ENV_INTENT || (e->state == ENV_CHECKING && (e->waiting & WAIT_INTENT)))
                return env_st(e);
        return NULL;
}

void env_on_intent_saved(Env *e) {
        if (e->state == ENV_CHECKING && (e->waiting & WAIT_INTENT)) {
                e->waiting &= ~WAIT_INTENT;
                env_proceed(e);
        } else if (e->state == ENV_INTENT)
                env_enter_state(e, ENV_SUBMITTING);
}

/* ---- life ---- */

int env_start(Env *e) {
        StateEnv *st = env_st(e);

        if (st->job) {
                /* Resume following a job that outlived the last run; slots
                 * that came meanwhile are skipped by the overlap rule. */
                env_enter_state(e, ENV_TRACKING);
                e->plan_after_poll = true; /* the job may have ended meanwhile */
                env_poll(e);
                return 0;
        }
        if (st->intent_slot != STATE_TIME_UNSET && e->ec->enabled) {
                /* A slot was being submitted when the last run ended: the list
                 * check finds a job it may have created, or it is sent again. */
                e->slot = st->intent_slot;
                e->attempt = 0;
                e->first_attempt = env_now_usec(e, CLOCK_BOOTTIME);
                env_enter_state(e, ENV_LISTING);
                return 0;
        }
        env_enter_state(e, ENV_IDLE);
        return 0;
}

int env_reconfigure(Env *e, Config *c, const EnvConfig *ec) {
        bool due = e->next_slot != STATE_TIME_UNSET && env_now_usec(e, CLOCK_REALTIME) >= env_fire_usec(e);

        config_free(e->config);
        e->config = config_ref(c);
        e->ec = ec;
        e->name = ec->name;
        if (e->state != ENV_IDLE)
                return 0;
        /* A slot whose time came just before the reload, its timer not run
         * yet, is due, not missed while refreshd was not running. */
        if (due && ec->enabled) {
                env_disarm_slot(e);
                env_on_slot(e);
                return 0;
        }
        env_schedule(e);
        return 0;
}

void env_replan(Env *e) {
        if (e->state == ENV_IDLE || e->state == ENV_TRACKING)
                env_plan(e, /* clock_jumped= */ true);
}

bool env_remove(Env *e) {
        StateEnv *st = env_st(e);

        e->removed = true;
        env_disarm_slot(e);
        if (st && st->job)
                return false;
        env_cancel_calls(e);
        return true;
}

bool env_is_finished(const Env *e) {
        return e->removed && e->state == ENV_IDLE;
}
