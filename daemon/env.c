/* SPDX-License-Identifier: MIT */
/*
 * One environment's refresh lifecycle. The rules it keeps, from the product
 * contract:
 *  - at most once per slot: before a slot's POST the environment's jobs are
 *    listed, and a job created at or after the slot (less submit_ahead, less
 *    5 minutes of clock skew) is adopted instead; the same check runs before
 *    every retry of a POST whose outcome is unknown;
 *  - the intent to submit a slot is on disk before the POST leaves, so a
 *    crash between the two is reconciled by that list check at the next start;
 *  - a slot that comes while a job still runs, or sooner than min_interval
 *    after the last submission, is skipped and logged;
 *  - after downtime, catch_up fires once for the latest missed slot.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <sys/random.h>
#include <systemd/sd-event.h>

#include "duration.h"
#include "env.h"
#include "macro.h"
#include "refreshd-messages.h"
#include "report.h"
#include "zuora.h"

#define CLOCK_SKEW_SEC 300
#define BACKOFF_START_USEC (5 * USEC_PER_SEC)
#define BACKOFF_CAP_USEC (600 * USEC_PER_SEC)
/* The eligibility check leaves this long before a slot fires, or halfway
 * there when the slot is nearer; less than the minimum is not worth it. */
#define CHECK_AHEAD_USEC USEC_PER_SEC
#define CHECK_AHEAD_MIN_USEC (10 * USEC_PER_MSEC)

/* What the first attempt at a slot waits for before its POST (Env.waiting). */
enum {
        WAIT_CHECK = 1 << 0,  /* the eligibility check's answer */
        WAIT_LIST = 1 << 1,   /* the list check's answer */
        WAIT_INTENT = 1 << 2, /* the intent on disk */
};

static void env_enter_state(Env *e, EnvState s);
static void env_fire(Env *e, int64_t slot);
static void env_schedule(Env *e);
static void env_prepare(Env *e);
static void env_list(Env *e);
static void env_submit(Env *e);
static void env_post(Env *e);
static void env_proceed(Env *e);
static void env_record_intent(Env *e);
static void env_on_listed(const ClientResult *res, void *userdata);
static void env_poll(Env *e);
static void env_on_checked(const ClientResult *res, void *userdata);
static void env_check_ahead(Env *e);

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

/* The environment's entry in the state: remembered by index (entries are
 * only ever appended while the daemon runs), checked by name. */
static StateEnv *env_st(const Env *e) {
        State *s = e->manager->state;
        Env *w = (Env *) e;
        StateEnv *st;

        if (w->state_index < s->n_envs && strcmp(s->envs[w->state_index].name, e->name) == 0)
                return &s->envs[w->state_index];
        st = state_find(s, e->name);
        if (st)
                w->state_index = (uint32_t) (st - s->envs);
        return st;
}

static ReportFields env_fields(const Env *e) {
        ReportFields f = REPORT_FIELDS_INIT;
        f.environment = e->name;
        f.environment_id = e->ec->id;
        return f;
}

static const char *fmt_local(const Env *e, int64_t t, char buf[static TZ_ISO_MAX]) {
        if (t == STATE_TIME_UNSET || tz_format_local(e->ec->tz, t, buf, TZ_ISO_MAX) < 0)
                snprintf(buf, TZ_ISO_MAX, "(unknown)");
        return buf;
}

static uint64_t now_boottime(const Env *e) {
        uint64_t t = 0;
        (void) sd_event_now(e->manager->event, CLOCK_BOOTTIME, &t);
        return t;
}

static uint64_t now_realtime(const Env *e) {
        uint64_t t = 0;
        (void) sd_event_now(e->manager->event, CLOCK_REALTIME, &t);
        return t;
}

static void env_cancel_call(Env *e) {
        client_cancel(e->call);
        e->call = NULL;
        client_cancel(e->list_call);
        e->list_call = NULL;
        e->waiting = 0;
}

static void env_set_error(Env *e, const char *text) {
        free(e->last_error);
        e->last_error = text ? strdup(text) : NULL;
}

int env_new(Manager *m, Config *c, const EnvConfig *ec, Env **ret) {
        Env *e = calloc(1, sizeof(Env));
        StateEnv *st;
        int r;

        if (!e)
                return -ENOMEM;
        e->manager = m;
        e->slot_entry = TIMERQ_NONE;
        e->wait_entry = TIMERQ_NONE;
        e->config = config_ref(c);
        e->ec = ec;
        e->next_slot = STATE_TIME_UNSET;
        e->slot = STATE_TIME_UNSET;
        e->prev_slot = STATE_TIME_UNSET;
        e->name = ec->name;
        r = state_get(m->state, ec->name, ec->id, &st);
        if (r < 0) {
                env_free(e);
                return r;
        }
        e->state_index = (uint32_t) (st - m->state->envs);
        *ret = e;
        return 0;
}

Env *env_free(Env *e) {
        if (!e)
                return NULL;
        env_cancel_call(e);
        if (e->state == ENV_CHECKING)
                manager_checks_changed(e->manager, false);
        timerq_disarm(e->manager->slots, &e->slot_entry);
        timerq_disarm(e->manager->waits, &e->wait_entry);
        config_free(e->config);
        free(e->last_error);
        free(e);
        return NULL;
}

_Static_assert(sizeof(Env) == 120, "an Env is 120 bytes (a malloc chunk of 128)");

/* ---- timers ---- */

static void env_arm_slot(Env *e, uint64_t usec) {
        int r = timerq_arm(e->manager->slots, &e->slot_entry, usec, e);
        if (r < 0)
                report_log(LOG_ERR, "environment '%s': cannot arm the slot timer: %s", e->name, strerror(-r));
}

/* When the slot timer fires for the slot it is armed for (µs): submit_ahead
 * before the slot, or at Zuora's time for a deferred one. */
static uint64_t env_fire_usec(const Env *e) {
        int64_t at = e->deferred ? e->next_slot : e->next_slot - (int64_t) (e->ec->submit_ahead / USEC_PER_SEC);
        return (uint64_t) at * USEC_PER_SEC;
}

/* Arms the slot timer for the next fire, or first for the eligibility
 * check ahead of it (not for a deferred slot: Zuora already said when). */
static void env_arm_fire(Env *e) {
        uint64_t fire = env_fire_usec(e), now = now_realtime(e), lead = 0;

        if (!e->deferred && fire > now)
                lead = (fire - now) / 2 < CHECK_AHEAD_USEC ? (fire - now) / 2 : CHECK_AHEAD_USEC;
        env_arm_slot(e, lead >= CHECK_AHEAD_MIN_USEC ? fire - lead : fire);
}

static void env_arm_wait(Env *e, uint64_t delay) {
        int r = timerq_arm(e->manager->waits, &e->wait_entry, now_boottime(e) + delay, e);
        if (r < 0)
                report_log(LOG_ERR, "environment '%s': cannot arm a timer: %s", e->name, strerror(-r));
}

/* Forgets the eligibility check made ahead of the slot, and cancels it if
 * it is still out (when IDLE, the only call an environment can have). */
static void env_drop_check_ahead(Env *e) {
        e->checked_ahead = false;
        if (e->state == ENV_IDLE) {
                client_cancel(e->call);
                e->call = NULL;
        }
}

/* ---- planning ---- */

/* The latest slot at or before NOW that comes after AFTER, or
 * STATE_TIME_UNSET. Looks back in widening windows, so a long downtime
 * with a per-second schedule costs little. */
static int64_t latest_slot(const Env *e, int64_t after, int64_t now) {
        static const int64_t windows[] = { 60, 86400, 32 * 86400, 400 * 86400, 3000 * 86400 };
        int64_t t, found = STATE_TIME_UNSET;

        for (size_t i = 0; i <= ELEMENTSOF(windows); i++) {
                int64_t from = i < ELEMENTSOF(windows) ? now - windows[i] : after;
                if (from < after)
                        from = after;
                for (t = from; cron_next(e->ec->cron, e->ec->tz, t, &t) >= 0 && t <= now;)
                        found = t;
                if (found != STATE_TIME_UNSET || from == after)
                        return found;
        }
        return found;
}

static void env_report_skip(Env *e, int64_t slot, const char *why) {
        ReportFields f = env_fields(e);
        char buf[TZ_ISO_MAX];

        f.slot = slot;
        report_event(REFRESHD_MESSAGE_SKIPPED, LOG_NOTICE, &f, "Environment '%s': slot %s skipped: %s", e->name,
                     fmt_local(e, slot, buf), why);
}

/* Plans the next thing to do when idle: fire a missed slot or arm the
 * timer for the next one. Slots missed while refreshd was not running fire
 * (once, for the latest) only with catch_up; slots the wall clock jumped
 * over while it ran (CLOCK_JUMPED: a step forwards, a suspend) fire once,
 * for the latest, whatever catch_up says, as the slot timer itself would
 * when it wakes up late. */
static void env_plan(Env *e, bool clock_jumped) {
        StateEnv *st = env_st(e);
        int64_t now = manager_now(e->manager), next, after;

        timerq_disarm(e->manager->slots, &e->slot_entry);
        e->next_slot = STATE_TIME_UNSET;
        env_drop_check_ahead(e);
        if (e->removed || !e->ec->enabled || !st)
                return;

        if (st->deferred_until != STATE_TIME_UNSET) {
                /* defer: fire once when Zuora allows it, unless the next slot comes first. */
                if (cron_next(e->ec->cron, e->ec->tz, st->last_slot, &next) < 0 || next > st->deferred_until) {
                        e->next_slot = st->deferred_until;
                        e->deferred = true;
                        env_arm_fire(e);
                        return;
                }
                st->deferred_until = STATE_TIME_UNSET;
                manager_save_later(e->manager);
        }
        e->deferred = false;

        /* A slot before the first time refreshd planned this environment is
         * not a missed one: an environment never run before starts at its
         * next slot. */
        if (st->since == STATE_TIME_UNSET) {
                st->since = now;
                manager_save_later(e->manager);
        }
        after = st->last_slot != STATE_TIME_UNSET ? st->last_slot : st->since;
        if (cron_next(e->ec->cron, e->ec->tz, after, &next) < 0)
                return; /* never again before the year 10000 */
        if (next > now) {
                /* submit_ahead: the POST leaves that long before the slot,
                 * asking Zuora to start at the slot (a past time fires now). */
                e->next_slot = next;
                env_arm_fire(e);
                return;
        }

        /* Slots were missed while the daemon was down (or the clock jumped). */
        int64_t latest = latest_slot(e, after, now);
        if (latest == STATE_TIME_UNSET)
                latest = next;
        if (clock_jumped || e->ec->catch_up) {
                char buf[TZ_ISO_MAX];
                ReportFields f = env_fields(e);
                f.slot = latest;
                report_event(REFRESHD_MESSAGE_SLOT_FIRED, LOG_INFO, &f, "Environment '%s': %s %s%s", e->name,
                             clock_jumped ? "the clock jumped past the slot" : "catching up the slot",
                             fmt_local(e, latest, buf), clock_jumped ? "" : " missed while refreshd was not running");
                env_fire(e, latest);
                return;
        }
        env_report_skip(e, latest, "missed while refreshd was not running, and catch_up is off");
        st->last_slot = latest;
        manager_save_later(e->manager);
        env_plan(e, false);
}

static void env_schedule(Env *e) {
        env_plan(e, false);
}

static void env_enter_state(Env *e, EnvState s) {
        if ((e->state == ENV_CHECKING) != (s == ENV_CHECKING))
                manager_checks_changed(e->manager, s == ENV_CHECKING);
        e->state = s;
        manager_update_status(e->manager);
}

/* The end of a slot's processing, whatever the outcome. */
static void env_slot_done(Env *e) {
        StateEnv *st = env_st(e);

        if (st) {
                st->intent_slot = STATE_TIME_UNSET;
                free(st->intent_track_id);
                st->intent_track_id = NULL;
                st->intent_sent_at = STATE_TIME_UNSET;
        }
        e->slot = STATE_TIME_UNSET;
        e->attempt = 0;
        e->reauthenticated = false;
        e->conflict = false;
        timerq_disarm(e->manager->waits, &e->wait_entry);
        manager_save_later(e->manager);
        if (st && st->job) {
                /* Tracking goes on; the next slot is still watched, so that
                 * one coming while the job runs is skipped when it comes. */
                env_schedule(e);
                return;
        }
        env_enter_state(e, ENV_IDLE);
        env_schedule(e);
}

/* The refresh of the current slot failed for good. */
static void env_fail(Env *e, const char *status, const char *message) {
        StateEnv *st = env_st(e);
        ReportFields f = env_fields(e);
        char buf[TZ_ISO_MAX];

        f.slot = e->slot;
        report_event(REFRESHD_MESSAGE_FAILED, LOG_ERR, &f, "Environment '%s': the refresh for slot %s failed: %s",
                     e->name, fmt_local(e, e->slot, buf), message);
        if (st) {
                StateLastJob *lj = calloc(1, sizeof(StateLastJob));
                if (lj) {
                        lj->status = strdup(status);
                        lj->message = strdup(message);
                        lj->ended_at = manager_now(e->manager);
                        lj->slot = e->slot;
                        state_last_job_free(st->last_job);
                        st->last_job = lj;
                }
        }
        env_slot_done(e);
}

/* ---- firing ---- */

static void env_fire(Env *e, int64_t slot) {
        StateEnv *st = env_st(e);
        ReportFields f = env_fields(e);
        char buf[TZ_ISO_MAX], dur[DURATION_MAX];

        e->prev_slot = st->last_slot;
        st->last_slot = slot;
        st->deferred_until = STATE_TIME_UNSET;
        manager_save_later(e->manager);

        if (st->job) {
                char why[200];
                snprintf(why, sizeof(why), "job %s is still running", st->job->id);
                env_report_skip(e, slot, why);
                env_schedule(e);
                return;
        }
        /* Measured between the slots on the local wall clock, as the config
         * check does: a DST change between them neither shortens nor
         * lengthens the gap. */
        int64_t gap = (slot + tz_offset(e->ec->tz, slot, NULL)) -
                (st->last_submitted + tz_offset(e->ec->tz, st->last_submitted, NULL));
        if (e->ec->min_interval > 0 && st->last_submitted != STATE_TIME_UNSET &&
            (gap < 0 || (uint64_t) gap * USEC_PER_SEC < e->ec->min_interval)) {
                char why[200];
                snprintf(why, sizeof(why), "the last refresh submitted was for the slot %s, less than min_interval %s before",
                         fmt_local(e, st->last_submitted, buf), duration_format(e->ec->min_interval, dur));
                env_report_skip(e, slot, why);
                env_schedule(e);
                return;
        }

        e->slot = slot;
        e->attempt = 0;
        e->first_attempt = now_boottime(e);
        e->reauthenticated = false;
        st->intent_slot = slot;
        f.slot = slot;
        report_event(REFRESHD_MESSAGE_SLOT_FIRED, LOG_INFO, &f, "Environment '%s': slot %s is due", e->name,
                     fmt_local(e, slot, buf));
        if (e->deferred) {
                e->deferred = false;
                env_list(e); /* Zuora said when; asking again could defer forever */
                return;
        }
        env_prepare(e);
}

void env_on_slot(void *owner) {
        Env *e = owner;
        StateEnv *st = env_st(e);
        int64_t slot = e->next_slot;
        char buf[TZ_ISO_MAX], why[200];

        if (slot == STATE_TIME_UNSET)
                return;
        if (!e->deferred) {
                uint64_t fire = env_fire_usec(e), now = now_realtime(e);
                if (now < fire) {
                        /* Woken ahead of the slot: its eligibility check leaves now. */
                        env_check_ahead(e);
                        env_arm_slot(e, fire);
                        return;
                }
                if (now - fire > CHECK_AHEAD_USEC)
                        env_drop_check_ahead(e); /* woken late (a suspend): its answer is old */
        }
        e->next_slot = STATE_TIME_UNSET;
        if (!e->deferred) {
                /* After a suspend or a clock step forwards, several slots may be
                 * due at once: they collapse into one fire, for the latest. */
                int64_t latest = latest_slot(e, slot, manager_now(e->manager));
                if (latest != STATE_TIME_UNSET)
                        slot = latest;
        }
        if (e->state == ENV_IDLE || e->state == ENV_TRACKING) {
                env_fire(e, slot); /* skips it if a job is in flight */
                return;
        }
        /* Still submitting an earlier slot (retrying): this one is covered by it. */
        snprintf(why, sizeof(why), "the refresh for slot %s is still being submitted", fmt_local(e, e->slot, buf));
        env_report_skip(e, slot, why);
        st->last_slot = slot;
        manager_save_later(e->manager);
        env_schedule(e);
}

/* ---- backoff ---- */

/* Full jitter: a uniform delay in [0, min(cap, start * 2^attempt)]. */
static uint64_t backoff_delay(unsigned attempt) {
        uint64_t ceiling = BACKOFF_START_USEC << (attempt < 10 ? attempt : 10), r = 0;

        if (ceiling > BACKOFF_CAP_USEC)
                ceiling = BACKOFF_CAP_USEC;
        if (getrandom(&r, sizeof(r), 0) != sizeof(r))
                return ceiling / 2;
        return r % (ceiling + 1);
}

/* Retries the submission after DELAY (or a backoff delay when DELAY is
 * UINT64_MAX), unless retry_for has run out. */
static void env_retry(Env *e, uint64_t delay, int64_t http_status, const char *track_id, const char *why) {
        ReportFields f = env_fields(e);
        char buf[TZ_ISO_MAX];

        if (delay == UINT64_MAX)
                delay = backoff_delay(e->attempt);
        e->attempt++;
        env_set_error(e, why);
        if (now_boottime(e) + delay > e->first_attempt + e->ec->retry_for) {
                char msg[600];
                snprintf(msg, sizeof(msg), "%s (gave up after retrying for %s)", why,
                         duration_format(e->ec->retry_for, (char[DURATION_MAX]) {}));
                env_fail(e, "SUBMIT_FAILED", msg);
                return;
        }
        f.slot = e->slot;
        f.http_status = http_status > 0 ? http_status : REPORT_UNSET;
        f.track_id = track_id;
        f.retry_in_usec = (int64_t) delay;
        report_event(REFRESHD_MESSAGE_RETRY, LOG_WARNING, &f,
                     "Environment '%s': slot %s: %s; retrying in %.1fs (attempt %u)", e->name,
                     fmt_local(e, e->slot, buf), why, (double) delay / USEC_PER_SEC, e->attempt + 1);
        env_enter_state(e, ENV_BACKOFF);
        env_arm_wait(e, delay);
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

/* Whether Zuora's nextRefreshTime allows the slot. When it does not, says
 * so, defers or skips the slot by when_ineligible, and ends it. */
static bool env_allowed(Env *e) {
        StateEnv *st = env_st(e);
        int64_t next = st->zuora_next_refresh, slot_next;
        char buf[TZ_ISO_MAX];

        if (next == ZUORA_TIME_UNSET || next <= e->slot || next <= manager_now(e->manager))
                return true;

        ReportFields f = env_fields(e);
        f.slot = e->slot;
        if (e->ec->when_ineligible == WHEN_INELIGIBLE_DEFER &&
            (cron_next(e->ec->cron, e->ec->tz, e->slot, &slot_next) < 0 || slot_next > next)) {
                report_event(REFRESHD_MESSAGE_INELIGIBLE, LOG_NOTICE, &f,
                             "Environment '%s': Zuora allows the next refresh from %s; slot %s is deferred to then",
                             e->name, fmt_local(e, next, buf), fmt_local(e, e->slot, (char[TZ_ISO_MAX]) {}));
                st->deferred_until = next;
        } else
                report_event(REFRESHD_MESSAGE_INELIGIBLE, LOG_NOTICE, &f,
                             "Environment '%s': Zuora allows the next refresh from %s; slot %s is skipped (%s)",
                             e->name, fmt_local(e, next, buf), fmt_local(e, e->slot, (char[TZ_ISO_MAX]) {}),
                             e->ec->when_ineligible == WHEN_INELIGIBLE_SKIP ? "when_ineligible: skip"
                                                                            : "the next slot comes first");
        env_cancel_call(e); /* the list check */
        env_slot_done(e);
        return false;
}

static void env_on_checked(const ClientResult *res, void *userdata) {
        Env *e = userdata;

        e->call = NULL;
        e->waiting &= ~WAIT_CHECK;
        /* Whatever went wrong, the POST decides. */
        if (!env_read_eligibility(e, res) || env_allowed(e))
                env_proceed(e);
}

/* The answer to the check sent ahead of the slot. The slot may have come
 * meanwhile: then it is the slot's check. Otherwise it is kept for the
 * slot, unless it failed: the slot then checks again. */
static void env_on_checked_ahead(const ClientResult *res, void *userdata) {
        Env *e = userdata;

        if (e->state == ENV_CHECKING) {
                env_on_checked(res, userdata);
                return;
        }
        e->call = NULL;
        e->checked_ahead = env_read_eligibility(e, res);
}

/* Shortly before the slot fires (IDLE, nothing out): at the slot only the
 * list check and the intent's write are left before the POST. Not while a
 * job runs: the slot is skipped then. */
static void env_check_ahead(Env *e) {
        StateEnv *st = env_st(e);
        _cleanup_free_ char *url = NULL;

        e->checked_ahead = false;
        if (e->state != ENV_IDLE || e->call || !st || st->job)
                return;
        url = client_url(e->manager->client, "/test-environments/%s", e->ec->id);
        if (url)
                (void) client_call(e->manager->client, HTTP_METHOD_GET, url, NULL, NULL, NULL, env_on_checked_ahead, e,
                                   &e->call);
}

/* The first attempt at a slot: the eligibility check (unless it was made
 * ahead of the slot), the list check and the intent's write go together
 * (the GETs leave before the save's fsync starts), and the POST leaves once
 * all are done: env_proceed(). */
static void env_prepare(Env *e) {
        Client *cl = e->manager->client;
        _cleanup_free_ char *check_url = NULL;
        _cleanup_free_ char *list_url = client_url(cl, "/test-environments/%s/jobs", e->ec->id);
        bool checked = e->checked_ahead;

        e->checked_ahead = false;
        if (checked && !env_allowed(e))
                return;
        env_record_intent(e);
        env_enter_state(e, ENV_CHECKING);
        e->waiting = WAIT_LIST | WAIT_INTENT;
        if (e->call)
                e->waiting |= WAIT_CHECK; /* the check sent ahead is still out */
        else if (!checked) {
                /* A check that cannot be sent is skipped: the POST decides. */
                check_url = client_url(cl, "/test-environments/%s", e->ec->id);
                if (check_url &&
                    client_call(cl, HTTP_METHOD_GET, check_url, NULL, NULL, NULL, env_on_checked, e, &e->call) >= 0)
                        e->waiting |= WAIT_CHECK;
        }
        if (!list_url ||
            client_call(cl, HTTP_METHOD_GET, list_url, NULL, NULL, NULL, env_on_listed, e, &e->list_call) < 0)
                e->waiting &= ~WAIT_LIST;
}

/* CHECKING: one of the three is done; the POST leaves after the last. */
static void env_proceed(Env *e) {
        if (e->waiting == 0)
                env_post(e);
}

/* ---- tracking ---- */

static void env_track(Env *e, const ZuoraJob *job, const char *polling_url, bool adopted) {
        StateEnv *st = env_st(e);
        ReportFields f = env_fields(e);
        char buf[TZ_ISO_MAX];
        StateJob *j;

        j = calloc(1, sizeof(StateJob));
        if (!j || !(j->id = strdup(job->id)) || !(j->polling_url = strdup(polling_url))) {
                state_job_free(j);
                report_log(LOG_ERR, "environment '%s': out of memory", e->name);
                return;
        }
        j->status = job->status ? strdup(job->status) : NULL;
        j->progress = job->progress;
        j->submitted_at = manager_now(e->manager);
        j->slot = e->slot;
        state_job_free(st->job);
        st->job = j;
        /* min_interval counts from the slot a refresh was submitted for. */
        if (!adopted)
                st->last_submitted = e->slot;
        e->unknown_status_warned = false;
        e->poll_failing = false;

        f.slot = e->slot;
        f.job_id = job->id;
        f.job_status = job->status;
        if (adopted)
                report_event(REFRESHD_MESSAGE_ADOPTED, LOG_INFO, &f,
                             "Environment '%s': job %s (%s) already refreshes slot %s; following it instead of "
                             "submitting",
                             e->name, job->id, job->status ? job->status : "status unknown", fmt_local(e, e->slot, buf));
        /* The slot is covered: the intent is fulfilled. */
        env_slot_done(e);
        env_enter_state(e, ENV_TRACKING);
        env_arm_wait(e, e->ec->poll_interval);
        manager_save_later(e->manager);
}

static void env_job_ended(Env *e, const char *status, const char *message, int priority) {
        StateEnv *st = env_st(e);
        ReportFields f = env_fields(e);
        StateLastJob *lj = calloc(1, sizeof(StateLastJob));

        f.job_id = st->job->id;
        f.job_status = status;
        f.slot = st->job->slot;
        report_event(strcasecmp(status, "COMPLETED") == 0                                  ? REFRESHD_MESSAGE_FINISHED
                     : strcmp(status, "LOST") == 0                                        ? REFRESHD_MESSAGE_LOST
                     : strcasecmp(status, "CANCELED") == 0 || strcasecmp(status, "CANCELLED") == 0
                                     ? REFRESHD_MESSAGE_CANCELLED
                                     : REFRESHD_MESSAGE_FAILED,
                     priority, &f, "Environment '%s': job %s %s", e->name, st->job->id, message);
        if (lj) {
                lj->id = strdup(st->job->id);
                lj->status = strdup(status);
                lj->message = strcasecmp(status, "COMPLETED") == 0 ? NULL : strdup(message);
                lj->ended_at = manager_now(e->manager);
                lj->slot = st->job->slot;
                state_last_job_free(st->last_job);
                st->last_job = lj;
        }
        st->job = state_job_free(st->job);
        timerq_disarm(e->manager->waits, &e->wait_entry);
        manager_save_later(e->manager);
        if (e->removed) {
                env_enter_state(e, ENV_IDLE);
                return; /* the manager frees it */
        }
        env_enter_state(e, ENV_IDLE);
        env_schedule(e);
}

static void env_on_polled_answer(Env *e, const ClientResult *res);

static void env_on_polled(const ClientResult *res, void *userdata) {
        Env *e = userdata;

        e->call = NULL;
        env_on_polled_answer(e, res);
        /* After a restart, slots missed meanwhile are planned once the first
         * poll told whether the job is still running (skip) or not (catch up). */
        if (e->plan_after_poll) {
                e->plan_after_poll = false;
                if (e->state == ENV_TRACKING)
                        env_schedule(e);
        }
}

static void env_on_polled_answer(Env *e, const ClientResult *res) {
        StateEnv *st = env_st(e);
        ReportFields f = env_fields(e);
        ZuoraJob job = {};

        e->call = NULL;
        f.job_id = st->job->id;
        f.slot = st->job->slot;
        f.track_id = res->track_id;
        if (res->verdict == ZUORA_VERDICT_NOT_FOUND) {
                env_job_ended(e, "LOST", "is gone: Zuora answers 404 for it; the refresh's outcome is unknown",
                              LOG_ERR);
                return;
        }
        if (res->verdict != ZUORA_VERDICT_OK ||
            zuora_parse_job(res->response->body, res->response->body_size, &job) < 0) {
                if (!e->poll_failing) {
                        f.http_status = res->response->status > 0 ? res->response->status : REPORT_UNSET;
                        report_event(REFRESHD_MESSAGE_RETRY, LOG_WARNING, &f,
                                     "Environment '%s': polling job %s failed: %s; polling goes on", e->name,
                                     st->job->id,
                                     res->zuora_text ? res->zuora_text
                                     : res->verdict == ZUORA_VERDICT_OK ? "the answer is not a job"
                                                                        : zuora_verdict_to_string(res->verdict));
                        e->poll_failing = true;
                }
                env_arm_wait(e, e->ec->poll_interval);
                return;
        }
        e->poll_failing = false;

        bool ended = zuora_job_has_ended(&job);
        bool status_changed = job.status && (!st->job->status || strcmp(job.status, st->job->status) != 0);
        bool progress_changed = job.progress >= 0 && job.progress != st->job->progress;
        if (status_changed && ended) {
                /* Reported once, as the job's end, below. */
                free(st->job->status);
                st->job->status = strdup(job.status);
        } else if (status_changed) {
                free(st->job->status);
                st->job->status = strdup(job.status);
                f.job_status = job.status;
                f.progress = job.progress >= 0 ? job.progress : REPORT_UNSET;
                report_event(REFRESHD_MESSAGE_STATUS_CHANGED, LOG_INFO, &f, "Environment '%s': job %s is %s",
                             e->name, st->job->id, job.status);
                if (!zuora_status_is_known(job.status) && !e->unknown_status_warned) {
                        report_event(REFRESHD_MESSAGE_UNKNOWN_STATUS, LOG_WARNING, &f,
                                     "Environment '%s': job %s has a status refreshd does not know, '%s'; "
                                     "polling goes on",
                                     e->name, st->job->id, job.status);
                        e->unknown_status_warned = true;
                }
                manager_save_later(e->manager);
        }
        if (progress_changed && (status_changed || ended))
                st->job->progress = job.progress; /* already in the status event */
        else if (progress_changed) {
                st->job->progress = job.progress;
                f.job_status = st->job->status;
                f.progress = job.progress;
                report_event(REFRESHD_MESSAGE_PROGRESS, LOG_INFO, &f, "Environment '%s': job %s at %d%%", e->name,
                             st->job->id, job.progress);
                manager_save_later(e->manager);
        }
        manager_update_status(e->manager);

        if (ended) {
                const char *status = job.status ? job.status : "ENDED";
                bool ok = strcasecmp(status, "COMPLETED") == 0;
                char msg[300];
                snprintf(msg, sizeof(msg), "%s: %s", ok ? "completed" : "ended", status);
                env_job_ended(e, status, ok ? "completed: the sandbox is refreshed" : msg,
                              ok ? LOG_NOTICE : LOG_ERR);
        } else
                env_arm_wait(e, e->ec->poll_interval);
        zuora_job_done(&job);
}

static void env_poll(Env *e) {
        StateEnv *st = env_st(e);
        int r;

        r = client_call(e->manager->client, HTTP_METHOD_GET, st->job->polling_url, NULL, NULL, NULL, env_on_polled,
                        e, &e->call);
        if (r == -EPERM) {
                /* A polling URL away from base_url (a state file from another
                 * config): never send the token there; use the usual address. */
                char *url = client_url(e->manager->client, "/test-environments/%s/jobs/%s", e->ec->id, st->job->id);
                if (url) {
                        report_log(LOG_WARNING, "environment '%s': job %s: polling at %s instead of %s, which is not on "
                                   "base_url", e->name, st->job->id, url, st->job->polling_url);
                        free(st->job->polling_url);
                        st->job->polling_url = url;
                        manager_save_later(e->manager);
                        r = client_call(e->manager->client, HTTP_METHOD_GET, url, NULL, NULL, NULL, env_on_polled, e,
                                        &e->call);
                }
        }
        if (r < 0) {
                report_log(LOG_ERR, "environment '%s': cannot poll job %s: %s", e->name, st->job->id, strerror(-r));
                env_arm_wait(e, e->ec->poll_interval);
        }
}

/* ---- the list check ---- */

/* No job covers the slot (or the list could not be read): on to the POST. */
static void env_listed_none(Env *e) {
        if (e->state == ENV_CHECKING)
                env_proceed(e);
        else
                env_submit(e);
}

static void env_on_listed(const ClientResult *res, void *userdata) {
        Env *e = userdata;
        StateEnv *st = env_st(e);
        ZuoraJob *jobs = NULL;
        size_t n = 0;
        int64_t ahead = (int64_t) (e->ec->submit_ahead / USEC_PER_SEC);
        int64_t since = e->slot - ahead - CLOCK_SKEW_SEC;
        const char *previous = st->last_job ? st->last_job->id : NULL;
        const int64_t earlier[] = { e->prev_slot, st->last_job ? st->last_job->slot : STATE_TIME_UNSET,
                                    st->last_submitted };
        const ZuoraJob *found = NULL;

        /* The skew allowance must not reach back to an earlier slot (the
         * previous one, or after a restart the last one known to have had a
         * job): no job of an earlier slot covers this one. */
        for (size_t i = 0; i < ELEMENTSOF(earlier); i++)
                if (earlier[i] != STATE_TIME_UNSET && earlier[i] < e->slot && earlier[i] - ahead + 1 > since)
                        since = earlier[i] - ahead + 1;

        if (e->state == ENV_CHECKING) {
                e->list_call = NULL;
                e->waiting &= ~WAIT_LIST;
        } else
                e->call = NULL;
        if (res->verdict != ZUORA_VERDICT_OK ||
            zuora_parse_job_list(res->response->body, res->response->body_size, &jobs, &n) < 0) {
                /* A refresh missed is worse than the small chance of a double. */
                env_listed_none(e);
                return;
        }
        /* The newest job created at or after the slot (less skew) covers it. */
        for (size_t i = 0; i < n; i++)
                if (jobs[i].create_time != ZUORA_TIME_UNSET && jobs[i].create_time >= since &&
                    !(previous && strcmp(jobs[i].id, previous) == 0) &&
                    (!found || jobs[i].create_time > found->create_time))
                        found = &jobs[i];
        if (!found) {
                zuora_job_list_free(jobs, n);
                if (e->conflict) {
                        /* Zuora said a job is running, and none is this slot's. */
                        env_fail(e, "SUBMIT_FAILED", e->last_error ? e->last_error : "Zuora answered 409");
                        return;
                }
                env_listed_none(e);
                return;
        }
        env_cancel_call(e); /* CHECKING: the eligibility check is moot */

        _cleanup_free_ char *url = client_url(e->manager->client, "/test-environments/%s/jobs/%s", e->ec->id,
                                              found->id);
        if (url)
                env_track(e, found, url, /* adopted= */ true);
        zuora_job_list_free(jobs, n);
}

static void env_list(Env *e) {
        _cleanup_free_ char *url = client_url(e->manager->client, "/test-environments/%s/jobs", e->ec->id);
        int r;

        env_enter_state(e, ENV_LISTING);
        r = url ? client_call(e->manager->client, HTTP_METHOD_GET, url, NULL, NULL, NULL, env_on_listed, e, &e->call)
                : -ENOMEM;
        if (r < 0)
                env_submit(e);
}

/* ---- submission ---- */

static void env_on_submitted(const ClientResult *res, void *userdata) {
        Env *e = userdata;
        StateEnv *st = env_st(e);
        const HttpResponse *resp = res->response;
        ReportFields f = env_fields(e);
        ZuoraJob job = {};
        char buf[TZ_ISO_MAX], msg[800];
        ZuoraVerdict v = res->verdict;

        e->call = NULL;
        f.slot = e->slot;
        f.track_id = res->track_id;
        f.http_status = resp->status > 0 ? resp->status : REPORT_UNSET;

        bool malformed = false;
        if (v == ZUORA_VERDICT_OK && zuora_parse_job(resp->body, resp->body_size, &job) < 0) {
                v = ZUORA_VERDICT_RETRY; /* a 2xx we cannot read: the job may exist */
                malformed = true;
        }

        switch (v) {
        case ZUORA_VERDICT_OK: {
                _cleanup_free_ char *url = NULL;
                int r = resp->location ? client_resolve(e->manager->client, resp->location, &url) : -ENOENT;
                if (r == -EPERM) {
                        report_event(REFRESHD_MESSAGE_FOREIGN_URL, LOG_WARNING, &f,
                                     "Environment '%s': Zuora's Location '%s' points away from base_url; refusing "
                                     "it and polling the job at its usual address",
                                     e->name, url);
                        url = mfree(url);
                }
                if (!url)
                        url = client_url(e->manager->client, "/test-environments/%s/jobs/%s", e->ec->id, job.id);
                f.job_id = job.id;
                f.job_status = job.status;
                report_event(REFRESHD_MESSAGE_SUBMITTED, LOG_NOTICE, &f,
                             "Environment '%s': refresh for slot %s submitted: job %s (%s)", e->name,
                             fmt_local(e, e->slot, buf), job.id, job.status ? job.status : "status unknown");
                if (url)
                        env_track(e, &job, url, /* adopted= */ false);
                break;
        }
        case ZUORA_VERDICT_PERIOD: {
                int64_t next = st->zuora_next_refresh;
                snprintf(msg, sizeof(msg), "Zuora refused it: %s", res->zuora_text ? res->zuora_text : "(no reason)");
                report_event(REFRESHD_MESSAGE_REJECTED, LOG_WARNING, &f,
                             "Environment '%s': slot %s rejected: %s%s%s", e->name, fmt_local(e, e->slot, buf), msg,
                             next != STATE_TIME_UNSET ? "; the next refresh is allowed from " : "",
                             next != STATE_TIME_UNSET ? fmt_local(e, next, (char[TZ_ISO_MAX]) {}) : "");
                int64_t slot_next;
                if (e->ec->when_ineligible == WHEN_INELIGIBLE_DEFER && next != STATE_TIME_UNSET &&
                    next > manager_now(e->manager) &&
                    (cron_next(e->ec->cron, e->ec->tz, e->slot, &slot_next) < 0 || slot_next > next))
                        st->deferred_until = next;
                env_slot_done(e);
                break;
        }
        case ZUORA_VERDICT_FORBIDDEN:
                snprintf(msg, sizeof(msg),
                         "Zuora answered 403 Forbidden (%s): the OAuth client's user needs the \"Refresh Central "
                         "Sandbox\" (or \"Refresh Developer Sandbox\") permission",
                         res->zuora_text ? res->zuora_text : "no reason given");
                report_event(REFRESHD_MESSAGE_FORBIDDEN, LOG_ERR, &f, "Environment '%s': %s", e->name, msg);
                env_fail(e, "SUBMIT_FAILED", msg);
                break;
        case ZUORA_VERDICT_REAUTH:
                snprintf(msg, sizeof(msg), "Zuora refused the credentials (401%s%s): check client_id/client_secret",
                         res->zuora_text ? ": " : "", res->zuora_text ? res->zuora_text : "");
                report_event(REFRESHD_MESSAGE_AUTH_FAILED, LOG_ERR, &f, "Environment '%s': %s", e->name, msg);
                env_fail(e, "SUBMIT_FAILED", msg);
                break;
        case ZUORA_VERDICT_FAILED:
        case ZUORA_VERDICT_NOT_FOUND:
                snprintf(msg, sizeof(msg), "Zuora answered %ld: %s", resp->status,
                         res->zuora_text ? res->zuora_text : "(no reason given)");
                if (resp->status == 409 && !e->conflict) {
                        /* A job is already running: perhaps this slot's, from
                         * a POST whose answer was lost. The list check adopts
                         * it, or the refresh fails. */
                        e->conflict = true;
                        env_set_error(e, msg);
                        env_list(e);
                        break;
                }
                env_fail(e, "SUBMIT_FAILED", msg);
                break;
        case ZUORA_VERDICT_RATE_LIMITED: {
                uint64_t delay = UINT64_MAX;
                (void) zuora_retry_after(resp->retry_after, resp->ratelimit_reset, manager_now(e->manager), &delay);
                env_retry(e, delay, resp->status, res->track_id, "Zuora asks to slow down (429)");
                break;
        }
        case ZUORA_VERDICT_RETRY:
        case _ZUORA_VERDICT_MAX:
        case _ZUORA_VERDICT_INVALID:
                if (res->token_failed)
                        snprintf(msg, sizeof(msg), "no token: %s",
                                 res->zuora_text ? res->zuora_text : "the token endpoint failed");
                else if (resp->error < 0)
                        snprintf(msg, sizeof(msg), "%s", res->zuora_text ? res->zuora_text : "transport error");
                else if (malformed)
                        snprintf(msg, sizeof(msg), "Zuora answered %ld, but %s", resp->status,
                                 resp->body_size == 0 ? "with no body"
                                                      : "the body is not a job (not JSON, cut short, or without an id)");
                else
                        snprintf(msg, sizeof(msg), "Zuora answered %ld%s%s", resp->status,
                                 res->zuora_text ? ": " : "", res->zuora_text ? res->zuora_text : "");
                env_retry(e, UINT64_MAX, resp->status, res->track_id, msg);
                break;
        }
        zuora_job_done(&job);
}

/* Records the intent (slot, a new track id, time) and has it written. */
static void env_record_intent(Env *e) {
        StateEnv *st = env_st(e);
        uint8_t random[16];
        char track[ZUORA_TRACK_ID_MAX];

        if (getrandom(random, sizeof(random), 0) != sizeof(random))
                memset(random, 0, sizeof(random));
        zuora_track_id(random, track);
        free(st->intent_track_id);
        st->intent_track_id = strdup(track);
        st->intent_slot = e->slot;
        st->intent_sent_at = manager_now(e->manager);
        manager_save_later(e->manager);
}

/* An attempt after the first: the intent is written before the POST
 * leaves; env_on_intent_saved() continues. */
static void env_submit(Env *e) {
        env_record_intent(e);
        env_enter_state(e, ENV_INTENT);
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
                env_post(e);
}

static void env_post(Env *e) {
        StateEnv *st = env_st(e);
        _cleanup_free_ char *url = client_url(e->manager->client, "/test-environments/%s/jobs", e->ec->id);
        _cleanup_free_ char *key = zuora_idempotency_key(e->ec->id, e->slot);
        _cleanup_free_ char *body = NULL;
        int r;

        body = zuora_job_request_body(e->ec->submit_ahead > 0 ? e->slot : ZUORA_TIME_UNSET);
        env_enter_state(e, ENV_SUBMITTING);
        r = url && key && body ? client_call(e->manager->client, HTTP_METHOD_POST, url, body, key,
                                             st->intent_track_id, env_on_submitted, e, &e->call)
                               : -ENOMEM;
        if (r < 0)
                env_retry(e, UINT64_MAX, REPORT_UNSET, NULL, strerror(-r));
}

void env_on_wait(void *owner) {
        Env *e = owner;

        switch (e->state) {
        case ENV_BACKOFF:
                /* The last POST's outcome may be unknown: list before retrying. */
                env_list(e);
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
                e->first_attempt = now_boottime(e);
                env_list(e);
                return 0;
        }
        env_enter_state(e, ENV_IDLE);
        env_schedule(e);
        return 0;
}

int env_reconfigure(Env *e, Config *c, const EnvConfig *ec) {
        config_free(e->config);
        e->config = config_ref(c);
        e->ec = ec;
        e->name = ec->name;
        if (e->state == ENV_IDLE)
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
        timerq_disarm(e->manager->slots, &e->slot_entry);
        if (st && st->job)
                return false;
        env_cancel_call(e);
        return true;
}

bool env_is_busy(const Env *e) {
        StateEnv *st = env_st(e);
        return e->state != ENV_IDLE || (st && st->job);
}

char *env_status_text(const Env *e) {
        StateEnv *st = env_st(e);
        char *s = NULL;

        if (st && st->job) {
                if (asprintf(&s, "%s %s", e->name, st->job->status ? st->job->status : "SUBMITTED") < 0)
                        return NULL;
                if (st->job->progress >= 0) {
                        char *t = NULL;
                        if (asprintf(&t, "%s %d%%", s, st->job->progress) >= 0) {
                                free(s);
                                s = t;
                        }
                }
                return s;
        }
        if (e->state != ENV_IDLE && asprintf(&s, "%s %s", e->name, env_state_to_string(e->state)) < 0)
                return NULL;
        return s;
}
