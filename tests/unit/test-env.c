/* SPDX-License-Identifier: MIT */
/*
 * One environment's lifecycle, driven through a fake host: a clock the test
 * sets, timers the test fires, and a Zuora client whose requests are kept
 * for the test to look at and answer. Each transition is a row: from a
 * state, an event (a timer, an answer) leads to a state, the requests made,
 * and what is written to the state; the log lines are read from the console
 * the report module writes to.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "env.h"
#include "macro.h"
#include "report.h"
#include "tz.h"
#include "zuora.h"

#define BASE "http://127.0.0.1:9"
#define ENV_ID "env-1"
#define SEC USEC_PER_SEC

static int64_t T(const char *s) {
        int64_t t;
        assert_int_equal(tz_parse_iso8601(s, &t), 0);
        return t;
}

/* ---- the fake host ---- */

/* A request the environment made. */
struct ClientCall {
        HttpMethod method;
        char *url, *body, *key, *track;
        ClientDoneFunc done;
        void *userdata;
        bool open;      /* not answered or cancelled yet */
        bool cancelled;
        int64_t sent_usec; /* the fake's CLOCK_REALTIME when it was made (and answered) */
};

typedef struct Fake {
        EnvHost host;
        uint64_t realtime, boottime; /* µs */
        bool slot_armed, wait_armed;
        uint64_t slot_at, wait_at;
        struct ClientCall *calls[64];
        size_t n_calls;
        unsigned saves, status_changes;
        int checking;
        ZuoraClock zclock; /* what the host measured of Zuora's clock */
        unsigned observed; /* createTimes the environment gave it */
        int fail_calls;    /* < 0: the next call() fails with it */
        Config *config;
        Env *env;
        char *log;
        size_t log_size;
        FILE *log_file;
} Fake;

static Fake *fake_of(EnvHost *h) {
        return container_of(h, Fake, host);
}

static uint64_t fake_now(EnvHost *h, clockid_t clock) {
        Fake *f = fake_of(h);
        return clock == CLOCK_REALTIME ? f->realtime : f->boottime;
}

static int fake_timer_arm(EnvHost *h, EnvTimer t, Env *e, TimerQueueIndex *index, uint64_t usec) {
        Fake *f = fake_of(h);

        *index = (TimerQueueIndex) t;
        if (t == ENV_TIMER_SLOT) {
                f->slot_armed = true;
                f->slot_at = usec;
        } else {
                f->wait_armed = true;
                f->wait_at = usec;
        }
        return 0;
}

static void fake_timer_disarm(EnvHost *h, EnvTimer t, TimerQueueIndex *index) {
        Fake *f = fake_of(h);

        *index = TIMERQ_NONE;
        if (t == ENV_TIMER_SLOT)
                f->slot_armed = false;
        else
                f->wait_armed = false;
}

static char *strdup_or_null(const char *s) {
        return s ? strdup(s) : NULL;
}

static int fake_call(EnvHost *h, const ClientRequest *req, ClientDoneFunc done, void *userdata, ClientCall **ret) {
        Fake *f = fake_of(h);
        struct ClientCall *c = calloc(1, sizeof(*c));

        if (strncmp(req->url, BASE, strlen(BASE)) != 0) {
                free(c);
                return -EPERM; /* as the client: never off base_url */
        }
        if (f->fail_calls < 0) {
                int r = f->fail_calls;
                f->fail_calls = 0;
                free(c);
                return r;
        }
        assert_true(f->n_calls < ELEMENTSOF(f->calls));
        *c = (struct ClientCall) { .method = req->method, .url = strdup(req->url), .body = strdup_or_null(req->body),
                                   .key = strdup_or_null(req->idempotency_key), .track = strdup_or_null(req->track_id),
                                   .done = done, .userdata = userdata, .open = true,
                                   .sent_usec = (int64_t) f->realtime };
        f->calls[f->n_calls++] = c;
        *ret = c;
        return 0;
}

static void fake_cancel(EnvHost *h, ClientCall *c) {
        if (c && c->open) {
                c->open = false;
                c->cancelled = true;
        }
}

static char *fake_url(EnvHost *h, ZuoraEndpoint endpoint, const char *env_id, const char *job_id) {
        return zuora_url(BASE, endpoint, env_id, job_id);
}

static int fake_resolve(EnvHost *h, const char *location, char **ret_url) {
        if (location[0] == '/')
                return asprintf(ret_url, "%s%s", BASE, location) < 0 ? -ENOMEM : 0;
        *ret_url = strdup(location);
        return strncmp(location, BASE, strlen(BASE)) == 0 ? 0 : -EPERM;
}

/* As measured a moment ago: the real host measures it with every answer,
 * while the fake's time jumps by hours. */
static const ZuoraClock *fake_zuora_clock(EnvHost *h) {
        Fake *f = fake_of(h);

        f->zclock.at_usec = (int64_t) f->realtime;
        return &f->zclock;
}

static void fake_observe_clock(EnvHost *h, int64_t stamp_sec, int64_t sent_usec, int64_t received_usec) {
        fake_of(h)->observed++;
        (void) zclock_observe(&fake_of(h)->zclock, stamp_sec, sent_usec, received_usec);
}

static void fake_save_later(EnvHost *h) {
        fake_of(h)->saves++;
}

static void fake_checks_changed(EnvHost *h, bool checking) {
        fake_of(h)->checking += checking ? 1 : -1;
        assert_true(fake_of(h)->checking >= 0);
}

static void fake_status_changed(EnvHost *h) {
        fake_of(h)->status_changes++;
}

static const EnvHostOps fake_ops = {
        .now = fake_now,
        .timer_arm = fake_timer_arm,
        .timer_disarm = fake_timer_disarm,
        .call = fake_call,
        .cancel = fake_cancel,
        .url = fake_url,
        .resolve = fake_resolve,
        .zuora_clock = fake_zuora_clock,
        .observe_clock = fake_observe_clock,
        .save_later = fake_save_later,
        .checks_changed = fake_checks_changed,
        .status_changed = fake_status_changed,
};

/* An environment "uat" on schedule 0 3 * * * (UTC), with the settings EXTRA,
 * at NOW; its state empty, or what SETUP puts there. */
static void fake_init(Fake *f, const char *extra, const char *now) {
        char *text;
        Diags d = {};

        *f = (Fake) { .host = { .ops = &fake_ops, .state = state_new() } };
        f->realtime = (uint64_t) T(now) * SEC;
        f->boottime = 1000 * SEC;
        /* Zuora's clock measured to agree with ours, to half a second. */
        zclock_restore(&f->zclock, 0, SEC / 2, (int64_t) f->realtime);
        f->log_file = open_memstream(&f->log, &f->log_size);
        report_init(LOG_TARGET_CONSOLE, f->log_file);
        setenv("TEST_ENV_SECRET", "s", 1);
        assert_true(asprintf(&text,
                             "zuora:\n  base_url: " BASE "\n  client_id: c\n  client_secret_env: TEST_ENV_SECRET\n"
                             "environments:\n  - name: uat\n    id: " ENV_ID "\n    schedule: \"0 3 * * *\"\n"
                             "    poll_interval: 10s\n%s",
                             extra ? extra : "") > 0);
        if (config_load_string("test.yaml", text, strlen(text), T("2026-01-01T00:00:00Z"), &f->config, &d) < 0) {
                diags_print(&d, stderr);
                fail();
        }
        diags_clear(&d);
        free(text);
        assert_int_equal(env_new(&f->host, f->config, &f->config->envs[0], &f->env), 0);
}

static void fake_done(Fake *f) {
        env_free(f->env);
        for (size_t i = 0; i < f->n_calls; i++) {
                free(f->calls[i]->url);
                free(f->calls[i]->body);
                free(f->calls[i]->key);
                free(f->calls[i]->track);
                free(f->calls[i]);
        }
        config_free(f->config);
        state_free(f->host.state);
        report_init(LOG_TARGET_CONSOLE, NULL);
        fclose(f->log_file);
        free(f->log);
}

static StateEnv *st(Fake *f) {
        StateEnv *e = state_find(f->host.state, "uat");
        assert_non_null(e);
        return e;
}

/* ---- driving it ---- */

static void set_time(Fake *f, const char *now) {
        uint64_t t = (uint64_t) T(now) * SEC;

        f->boottime += t > f->realtime ? t - f->realtime : 0;
        f->realtime = t;
}

/* The slot timer comes (the clock moves to when it was armed for). */
static void fire_slot(Fake *f) {
        assert_true(f->slot_armed);
        if (f->slot_at > f->realtime) {
                f->boottime += f->slot_at - f->realtime;
                f->realtime = f->slot_at;
        }
        f->slot_armed = false;
        env_on_slot(f->env);
}

/* The wait timer comes. */
static void fire_wait(Fake *f) {
        assert_true(f->wait_armed);
        if (f->wait_at > f->boottime) {
                f->realtime += f->wait_at - f->boottime;
                f->boottime = f->wait_at;
        }
        f->wait_armed = false;
        env_on_wait(f->env);
}

static const char *path_of(const struct ClientCall *c) {
        return c->url + strlen(BASE);
}

/* How many requests are open. */
static size_t n_open(const Fake *f) {
        size_t n = 0;
        for (size_t i = 0; i < f->n_calls; i++)
                n += f->calls[i]->open;
        return n;
}

/* The open request of METHOD to PATH; fails when there is none. */
static struct ClientCall *open_call(Fake *f, HttpMethod method, const char *path) {
        for (size_t i = 0; i < f->n_calls; i++)
                if (f->calls[i]->open && f->calls[i]->method == method && strcmp(path_of(f->calls[i]), path) == 0)
                        return f->calls[i];
        fail_msg("no open %s %s", http_method_to_string(method), path);
        return NULL;
}

static bool has_open(Fake *f, HttpMethod method, const char *path) {
        for (size_t i = 0; i < f->n_calls; i++)
                if (f->calls[i]->open && f->calls[i]->method == method && strcmp(path_of(f->calls[i]), path) == 0)
                        return true;
        return false;
}

/* How many requests of METHOD to PATH were made in all. */
static unsigned n_made(const Fake *f, HttpMethod method, const char *path) {
        unsigned n = 0;
        for (size_t i = 0; i < f->n_calls; i++)
                n += f->calls[i]->method == method && strcmp(path_of(f->calls[i]), path) == 0;
        return n;
}

typedef struct Answer {
        long status;
        const char *body;
        const char *location;
        const char *retry_after;
        int error; /* a transport error instead of an answer */
} Answer;

/* Answers C as the client would: the verdict, Zuora's reason text. */
static void answer(struct ClientCall *c, Answer a) {
        const char *body = a.body ?: "";
        HttpResponse resp = {
                .error = a.error,
                .maybe_sent = true,
                .error_text = a.error ? strerror(-a.error) : "",
                .status = a.status,
                .body = body,
                .body_size = strlen(body),
                .location = a.location,
                .retry_after = a.retry_after,
        };
        ZuoraVerdict v = zuora_classify(resp.status, resp.error, body, resp.body_size, true);
        ClientResult r = {
                .verdict = v,
                .response = &resp,
                .track_id = c->track ?: "refreshd-test",
                .zuora_text = a.error ? strdup(resp.error_text) : v != ZUORA_VERDICT_OK ? zuora_error_text(body, resp.body_size) : NULL,
                .sent_usec = c->sent_usec,
                .received_usec = c->sent_usec,
        };

        assert_true(c->open);
        c->open = false;
        c->done(&r, c->userdata);
        free(r.zuora_text);
}

/* The log so far contains TEXT. */
static bool logged(Fake *f, const char *text) {
        fflush(f->log_file);
        return f->log && strstr(f->log, text);
}

#define assert_logged(f, text)                                                                                \
        do {                                                                                                  \
                if (!logged(f, text))                                                                         \
                        fail_msg("not logged: '%s'; the log:\n%s", text, (f)->log ?: "");                     \
        } while (0)

#define JOBS "/test-environments/" ENV_ID "/jobs"
#define ENVIRONMENT "/test-environments/" ENV_ID
#define SLOT "2026-12-08T03:00:00Z"

static const char *env_body(const char *next) {
        static char buf[200];
        snprintf(buf, sizeof(buf), "{\"lastRefreshTime\": null, \"nextRefreshTime\": %s%s%s}", next ? "\"" : "",
                 next ?: "null", next ? "\"" : "");
        return buf;
}

static const char *job_body(const char *id, const char *status, int progress) {
        static char buf[300];
        snprintf(buf, sizeof(buf), "{\"id\": \"%s\", \"status\": \"%s\", \"progressPercentage\": %d}", id, status,
                 progress);
        return buf;
}

/* A list of one job, ID created at CREATED, with STATUS, ended at ENDED (NULL: not). */
static const char *list_job(const char *id, const char *status, const char *created, const char *ended) {
        static char buf[400];
        snprintf(buf, sizeof(buf),
                 "{\"result\": [{\"id\": \"%s\", \"status\": \"%s\", \"createTime\": \"%s\", \"jobEndTime\": %s%s%s}]}",
                 id, status, created, ended ? "\"" : "", ended ?: "null", ended ? "\"" : "");
        return buf;
}

/* A list of one job, ID created at CREATED, still running. */
static const char *list_body(const char *id, const char *created) {
        return list_job(id, "IN_PROGRESS", created, NULL);
}

/* The poll of job J1 comes, and is answered A. */
static void poll_job(Fake *f, Answer a) {
        fire_wait(f);
        answer(open_call(f, HTTP_METHOD_GET, JOBS "/j1"), a);
}

/* Started at noon the day before SLOT: IDLE, the slot timer armed a second ahead of it. */
static void to_idle(Fake *f, const char *extra) {
        fake_init(f, extra, "2026-12-07T12:00:00Z");
        assert_int_equal(env_start(f->env), 0);
        assert_int_equal(f->env->state, ENV_IDLE);
}

/* At the slot itself, with no check ahead: CHECKING, the check and the list out. */
static void to_checking(Fake *f, const char *extra) {
        to_idle(f, extra);
        set_time(f, SLOT);
        f->slot_at = f->realtime;
        fire_slot(f);
        assert_int_equal(f->env->state, ENV_CHECKING);
}

/* Checked, listed, the intent on disk: the POST is out. */
static struct ClientCall *to_submitting(Fake *f, const char *extra) {
        to_checking(f, extra);
        answer(open_call(f, HTTP_METHOD_GET, ENVIRONMENT), (Answer) { 200, env_body(NULL) });
        answer(open_call(f, HTTP_METHOD_GET, JOBS), (Answer) { 200, "[]" });
        env_on_intent_saved(f->env);
        assert_int_equal(f->env->state, ENV_SUBMITTING);
        return open_call(f, HTTP_METHOD_POST, JOBS);
}

/* Submitted and answered with job J1: TRACKING. */
static void to_tracking(Fake *f, const char *extra) {
        answer(to_submitting(f, extra), (Answer) { 201, job_body("j1", "QUEUED", 0), "/test-environments/" ENV_ID "/jobs/j1" });
        assert_int_equal(f->env->state, ENV_TRACKING);
}

/* ---- IDLE: planning and the check ahead ---- */

static void test_start_plans_next_slot(void **state) {
        Fake f;

        to_idle(&f, NULL);
        assert_true(f.slot_armed);
        assert_int_equal(f.slot_at, (uint64_t) (T(SLOT) - 1) * SEC); /* a second ahead, for the check */
        assert_int_equal(st(&f)->since, T("2026-12-07T12:00:00Z"));
        assert_int_equal(n_open(&f), 0);
        assert_true(f.saves > 0);
        fake_done(&f);
}

static void test_check_ahead(void **state) {
        Fake f;

        to_idle(&f, NULL);
        fire_slot(&f); /* a second ahead */
        assert_int_equal(f.env->state, ENV_IDLE);
        assert_non_null(open_call(&f, HTTP_METHOD_GET, ENVIRONMENT));
        assert_false(has_open(&f, HTTP_METHOD_GET, JOBS));
        assert_int_equal(f.slot_at, (uint64_t) T(SLOT) * SEC);
        answer(open_call(&f, HTTP_METHOD_GET, ENVIRONMENT), (Answer) { 200, env_body("2026-12-01T00:00:00Z") });
        assert_true(f.env->checked_ahead);
        assert_int_equal(st(&f)->zuora_next_refresh, T("2026-12-01T00:00:00Z"));
        /* At the slot: the list check and the intent, no second eligibility check. */
        fire_slot(&f);
        assert_int_equal(f.env->state, ENV_CHECKING);
        assert_int_equal(n_made(&f, HTTP_METHOD_GET, ENVIRONMENT), 1);
        assert_non_null(open_call(&f, HTTP_METHOD_GET, JOBS));
        assert_int_equal(st(&f)->intent_slot, T(SLOT));
        assert_non_null(st(&f)->intent_track_id);
        assert_int_equal(f.checking, 1);
        assert_logged(&f, "slot 2026-12-08T03:00:00+00:00 is due");
        fake_done(&f);
}

static void test_check_ahead_still_out_at_slot(void **state) {
        Fake f;

        to_idle(&f, NULL);
        fire_slot(&f);
        fire_slot(&f); /* the check has no answer yet */
        assert_int_equal(f.env->state, ENV_CHECKING);
        assert_int_equal(n_made(&f, HTTP_METHOD_GET, ENVIRONMENT), 1);
        answer(open_call(&f, HTTP_METHOD_GET, JOBS), (Answer) { 200, "[]" });
        env_on_intent_saved(f.env);
        assert_false(has_open(&f, HTTP_METHOD_POST, JOBS)); /* the POST waits for its answer */
        answer(open_call(&f, HTTP_METHOD_GET, ENVIRONMENT), (Answer) { 200, env_body(NULL) });
        assert_non_null(open_call(&f, HTTP_METHOD_POST, JOBS));
        fake_done(&f);
}

static void test_check_ahead_failed_is_made_again(void **state) {
        Fake f;

        to_idle(&f, NULL);
        fire_slot(&f);
        answer(open_call(&f, HTTP_METHOD_GET, ENVIRONMENT), (Answer) { 503, "busy" });
        assert_false(f.env->checked_ahead);
        fire_slot(&f);
        assert_int_equal(n_made(&f, HTTP_METHOD_GET, ENVIRONMENT), 2);
        assert_non_null(open_call(&f, HTTP_METHOD_GET, ENVIRONMENT));
        fake_done(&f);
}

static void test_check_ahead_ineligible_said_at_slot(void **state) {
        Fake f;

        to_idle(&f, "    when_ineligible: skip\n");
        fire_slot(&f);
        answer(open_call(&f, HTTP_METHOD_GET, ENVIRONMENT), (Answer) { 200, env_body("2026-12-08T05:00:00Z") });
        assert_false(logged(&f, "Zuora allows")); /* not before the slot */
        fire_slot(&f);
        assert_logged(&f, "Zuora allows the next refresh from 2026-12-08T05:00:00+00:00; slot "
                          "2026-12-08T03:00:00+00:00 is skipped (when_ineligible: skip)");
        assert_int_equal(f.env->state, ENV_IDLE);
        assert_int_equal(n_made(&f, HTTP_METHOD_GET, JOBS), 0);
        assert_int_equal(st(&f)->deferred_until, STATE_TIME_UNSET);
        assert_int_equal(st(&f)->intent_slot, STATE_TIME_UNSET);
        assert_int_equal(f.slot_at, (uint64_t) (T("2026-12-09T03:00:00Z") - 1) * SEC);
        fake_done(&f);
}

static void test_reload_drops_check_ahead(void **state) {
        Fake f;

        to_idle(&f, NULL);
        fire_slot(&f);
        struct ClientCall *check = open_call(&f, HTTP_METHOD_GET, ENVIRONMENT);
        env_reconfigure(f.env, f.config, &f.config->envs[0]);
        assert_true(check->cancelled);
        assert_true(f.slot_armed);
        /* Re-planned half a second ahead now: nearer than a second. */
        assert_int_equal(f.slot_at, (uint64_t) T(SLOT) * SEC - SEC / 2);
        fake_done(&f);
}

/* ---- CHECKING: the eligibility check, the list check, the intent ---- */

static void test_checking_ineligible_defers(void **state) {
        Fake f;

        to_checking(&f, NULL);
        struct ClientCall *list = open_call(&f, HTTP_METHOD_GET, JOBS);
        answer(open_call(&f, HTTP_METHOD_GET, ENVIRONMENT), (Answer) { 200, env_body("2026-12-08T09:00:00Z") });
        assert_int_equal(f.env->state, ENV_IDLE);
        assert_true(list->cancelled);
        assert_int_equal(f.checking, 0);
        /* Zuora's 09:00:00 (to 09:00:00.999) through its clock, measured to
         * half a second: surely allowed at 09:00:02 of ours. */
        assert_int_equal(st(&f)->deferred_until, T("2026-12-08T09:00:02Z"));
        assert_logged(&f, "is deferred to then");
        /* The timer waits for that time itself, with no check ahead. */
        assert_true(f.env->deferred);
        assert_int_equal(f.slot_at, (uint64_t) T("2026-12-08T09:00:02Z") * SEC);
        /* Then: the list check alone (asking again could defer forever). */
        fire_slot(&f);
        assert_int_equal(f.env->state, ENV_LISTING);
        assert_int_equal(n_made(&f, HTTP_METHOD_GET, ENVIRONMENT), 1);
        assert_int_equal(st(&f)->deferred_until, STATE_TIME_UNSET);
        answer(open_call(&f, HTTP_METHOD_GET, JOBS), (Answer) { 200, "[]" });
        assert_int_equal(f.env->state, ENV_INTENT);
        assert_int_equal(st(&f)->intent_slot, T("2026-12-08T09:00:02Z"));
        env_on_intent_saved(f.env);
        assert_non_null(open_call(&f, HTTP_METHOD_POST, JOBS));
        fake_done(&f);
}

static void test_checking_ineligible_next_slot_first(void **state) {
        Fake f;

        to_checking(&f, NULL);
        /* Allowed only after the next slot: skipped, not deferred. */
        answer(open_call(&f, HTTP_METHOD_GET, ENVIRONMENT), (Answer) { 200, env_body("2026-12-09T04:00:00Z") });
        assert_int_equal(f.env->state, ENV_IDLE);
        assert_int_equal(st(&f)->deferred_until, STATE_TIME_UNSET);
        assert_logged(&f, "is skipped (the next slot comes first)");
        fake_done(&f);
}

static void test_checking_check_fails_post_decides(void **state) {
        Fake f;

        to_checking(&f, NULL);
        answer(open_call(&f, HTTP_METHOD_GET, ENVIRONMENT), (Answer) { .error = -ECONNRESET });
        answer(open_call(&f, HTTP_METHOD_GET, JOBS), (Answer) { 200, "[]" });
        assert_false(has_open(&f, HTTP_METHOD_POST, JOBS)); /* the intent is not on disk yet */
        env_on_intent_saved(f.env);
        struct ClientCall *post = open_call(&f, HTTP_METHOD_POST, JOBS);
        assert_string_equal(post->track, st(&f)->intent_track_id);
        assert_string_equal(post->key, "refreshd-" ENV_ID "-20261208T030000Z");
        assert_string_equal(post->body, "{\"jobType\":\"REFRESH\"}");
        assert_int_equal(f.checking, 0);
        fake_done(&f);
}

static void test_checking_list_adopts(void **state) {
        Fake f;

        to_checking(&f, NULL);
        struct ClientCall *check = open_call(&f, HTTP_METHOD_GET, ENVIRONMENT);
        /* Created at the slot less the skew allowance: this slot's refresh. */
        answer(open_call(&f, HTTP_METHOD_GET, JOBS), (Answer) { 200, list_body("byhand", "2026-12-08T02:56:00Z") });
        assert_int_equal(f.env->state, ENV_TRACKING);
        assert_true(check->cancelled);
        assert_string_equal(st(&f)->job->id, "byhand");
        assert_string_equal(st(&f)->job->polling_url, BASE JOBS "/byhand");
        assert_int_equal(st(&f)->job->slot, T(SLOT));
        assert_int_equal(st(&f)->intent_slot, STATE_TIME_UNSET);
        assert_int_equal(st(&f)->last_submitted, STATE_TIME_UNSET); /* adopted, not submitted */
        assert_logged(&f, "job byhand (IN_PROGRESS) already refreshes slot");
        assert_int_equal(n_made(&f, HTTP_METHOD_POST, JOBS), 0);
        assert_true(f.wait_armed);
        fake_done(&f);
}

static void test_checking_list_older_job_not_adopted(void **state) {
        Fake f;

        to_checking(&f, NULL);
        answer(open_call(&f, HTTP_METHOD_GET, ENVIRONMENT), (Answer) { 200, env_body(NULL) });
        /* Created more than 5 minutes before the slot (and the clock's
         * half second), and done: another slot's. */
        answer(open_call(&f, HTTP_METHOD_GET, JOBS),
               (Answer) { 200, list_job("old", "COMPLETED", "2026-12-08T02:54:50Z", "2026-12-08T02:58:00Z") });
        env_on_intent_saved(f.env);
        assert_non_null(open_call(&f, HTTP_METHOD_POST, JOBS));
        fake_done(&f);
}

/* What ended before the slot: COMPLETED is the slot's refresh (done by hand
 * just before it); FAILED or CANCELED refreshed nothing, and the slot is POSTed. */
static void test_checking_list_ended_jobs(void **state) {
        static const struct {
                const char *status, *created, *ended;
                bool adopted;
        } rows[] = {
                { "CANCELED", "2026-12-08T02:56:40Z", "2026-12-08T02:58:00Z", false },
                { "FAILED", "2026-12-08T02:56:40Z", "2026-12-08T02:59:58Z", false },
                { "COMPLETED", "2026-12-08T02:56:40Z", "2026-12-08T02:58:00Z", true },
                { "CANCELED", "2026-12-08T02:56:40Z", "2026-12-08T03:00:02Z", true }, /* ran at the slot */
        };

        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                Fake f;

                to_checking(&f, NULL);
                answer(open_call(&f, HTTP_METHOD_GET, ENVIRONMENT), (Answer) { 200, env_body(NULL) });
                answer(open_call(&f, HTTP_METHOD_GET, JOBS),
                       (Answer) { 200, list_job("byhand", rows[i].status, rows[i].created, rows[i].ended) });
                if (rows[i].adopted) {
                        assert_int_equal(f.env->state, ENV_TRACKING);
                        assert_string_equal(st(&f)->job->id, "byhand");
                } else {
                        env_on_intent_saved(f.env);
                        assert_non_null(open_call(&f, HTTP_METHOD_POST, JOBS));
                }
                fake_done(&f);
        }
}

/* A refresh runs at Zuora that is not this slot's (started long before it):
 * the slot is skipped as an overlap, naming that job; nothing is POSTed. */
static void test_checking_list_running_elsewhere_skips(void **state) {
        Fake f;

        to_checking(&f, NULL);
        /* Zuora shows no nextRefreshTime while a job runs (lastRefreshTime known). */
        answer(open_call(&f, HTTP_METHOD_GET, ENVIRONMENT),
               (Answer) { 200, "{\"lastRefreshTime\": \"2026-11-01T00:00:00Z\", \"nextRefreshTime\": null}" });
        answer(open_call(&f, HTTP_METHOD_GET, JOBS), (Answer) { 200, list_body("foreign", "2026-12-08T01:00:00Z") });
        assert_int_equal(f.env->state, ENV_IDLE);
        assert_logged(&f, "slot 2026-12-08T03:00:00+00:00 skipped: job foreign is already running at Zuora, not "
                          "started for this slot (Zuora shows no nextRefreshTime, as it does while a refresh runs)");
        assert_int_equal(n_made(&f, HTTP_METHOD_POST, JOBS), 0);
        assert_int_equal(st(&f)->last_slot, T(SLOT));
        assert_int_equal(st(&f)->intent_slot, STATE_TIME_UNSET);
        assert_null(st(&f)->job);
        assert_true(f.slot_armed);
        fake_done(&f);

        /* Never refreshed (both empty) and nothing running: it fires. */
        to_checking(&f, NULL);
        answer(open_call(&f, HTTP_METHOD_GET, ENVIRONMENT), (Answer) { 200, env_body(NULL) });
        answer(open_call(&f, HTTP_METHOD_GET, JOBS), (Answer) { 200, "{\"result\": []}" });
        env_on_intent_saved(f.env);
        assert_non_null(open_call(&f, HTTP_METHOD_POST, JOBS));
        fake_done(&f);
}

/* Zuora's clock 5 minutes behind ours, then 2 minutes ahead, as measured:
 * the job created for this slot is adopted (its createTime read through the
 * offset), one of an earlier slot is not. */
static void test_checking_list_skewed_clock(void **state) {
        static const struct {
                int64_t offset;
                const char *created;
                bool adopted;
        } rows[] = {
                { -300, "2026-12-08T02:55:00Z", true },  /* our 03:00:00 */
                { -300, "2026-12-08T02:49:00Z", false }, /* our 02:54:00, and done */
                { 120, "2026-12-08T03:02:00Z", true },   /* our 03:00:00 */
                { 120, "2026-12-08T02:56:00Z", false },  /* our 02:54:00, and done */
        };

        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                Fake f;

                to_checking(&f, NULL);
                zclock_restore(&f.zclock, rows[i].offset * (int64_t) SEC, SEC / 2, (int64_t) f.realtime);
                answer(open_call(&f, HTTP_METHOD_GET, ENVIRONMENT), (Answer) { 200, env_body(NULL) });
                answer(open_call(&f, HTTP_METHOD_GET, JOBS),
                       (Answer) { 200, list_job("j", "COMPLETED", rows[i].created, rows[i].created) });
                if (rows[i].adopted)
                        assert_int_equal(f.env->state, ENV_TRACKING);
                else {
                        env_on_intent_saved(f.env);
                        assert_non_null(open_call(&f, HTTP_METHOD_POST, JOBS));
                }
                fake_done(&f);
        }
}

static void test_checking_list_fails_post_anyway(void **state) {
        Fake f;

        to_checking(&f, NULL);
        answer(open_call(&f, HTTP_METHOD_GET, ENVIRONMENT), (Answer) { 200, env_body(NULL) });
        answer(open_call(&f, HTTP_METHOD_GET, JOBS), (Answer) { 500, "oops" });
        env_on_intent_saved(f.env);
        assert_non_null(open_call(&f, HTTP_METHOD_POST, JOBS));
        fake_done(&f);
}

/* ---- SUBMITTING: each verdict of the POST ---- */

static void test_post_2xx_tracks(void **state) {
        Fake f;

        to_tracking(&f, NULL);
        assert_string_equal(st(&f)->job->id, "j1");
        assert_string_equal(st(&f)->job->status, "QUEUED");
        assert_int_equal(st(&f)->last_submitted, T(SLOT));
        assert_int_equal(st(&f)->last_slot, T(SLOT));
        assert_int_equal(st(&f)->intent_slot, STATE_TIME_UNSET);
        assert_true(f.wait_armed);
        assert_int_equal(f.wait_at, f.boottime + 10 * SEC);
        assert_true(f.slot_armed); /* the next slot is watched while the job runs */
        assert_logged(&f, "refresh for slot 2026-12-08T03:00:00+00:00 submitted: job j1 (QUEUED)");
        fake_done(&f);
}

static void test_post_foreign_location(void **state) {
        Fake f;

        answer(to_submitting(&f, NULL), (Answer) { 201, job_body("j1", "QUEUED", 0), "https://evil.example/jobs/j1" });
        assert_int_equal(f.env->state, ENV_TRACKING);
        assert_string_equal(st(&f)->job->polling_url, BASE JOBS "/j1");
        assert_logged(&f, "points away from base_url");
        fake_done(&f);
}

/* A 2xx whose job cannot be read, or a redirect: Zuora may have accepted
 * the refresh. The list adopts its job, or the refresh fails; the POST is
 * never sent again, even when the list cannot be read for a while. */
static void test_post_unreadable_2xx_lists(void **state) {
        static const Answer unreadable[] = {
                { 200, "{\"id\": \"../x\"}" },
                { 201, "{\"id\": \"{aaaa}\"}" },
                { 302, "", "/elsewhere" },
                { 307, "", "/elsewhere" },
        };

        for (size_t i = 0; i < ELEMENTSOF(unreadable); i++) {
                Fake f;

                answer(to_submitting(&f, NULL), unreadable[i]);
                assert_int_equal(f.env->state, ENV_LISTING);
                assert_logged(&f, "Zuora may have accepted the refresh, so it is not submitted again");
                answer(open_call(&f, HTTP_METHOD_GET, JOBS), (Answer) { 200, "{\"result\": []}" });
                assert_int_equal(f.env->state, ENV_IDLE);
                assert_string_equal(st(&f)->last_job->status, "SUBMIT_FAILED");
                assert_non_null(strstr(st(&f)->last_job->message, "not submitted again"));
                assert_int_equal(n_made(&f, HTTP_METHOD_POST, JOBS), 1);
                fake_done(&f);
        }

        Fake f;
        /* The list cannot even be asked for: asked for again after a backoff, never a POST. */
        struct ClientCall *post = to_submitting(&f, NULL);
        f.fail_calls = -ENOMEM;
        answer(post, unreadable[0]);
        assert_int_equal(f.env->state, ENV_BACKOFF);
        fire_wait(&f);
        assert_int_equal(f.env->state, ENV_LISTING);
        /* The list fails: asked for again after a backoff, never a POST. */
        answer(open_call(&f, HTTP_METHOD_GET, JOBS), (Answer) { 503, "busy" });
        assert_int_equal(f.env->state, ENV_BACKOFF);
        fire_wait(&f);
        assert_int_equal(f.env->state, ENV_LISTING);
        answer(open_call(&f, HTTP_METHOD_GET, JOBS), (Answer) { 200, "not json" });
        assert_int_equal(f.env->state, ENV_BACKOFF);
        fire_wait(&f);
        answer(open_call(&f, HTTP_METHOD_GET, JOBS), (Answer) { 200, list_body("made", SLOT) });
        assert_int_equal(f.env->state, ENV_TRACKING);
        assert_string_equal(st(&f)->job->id, "made");
        assert_int_equal(n_made(&f, HTTP_METHOD_POST, JOBS), 1);
        fake_done(&f);
}

/* The createTime of the job a POST made tells the host Zuora's clock. */
static void test_post_observes_clock(void **state) {
        Fake f;

        answer(to_submitting(&f, NULL),
               (Answer) { 201, "{\"id\": \"j1\", \"status\": \"QUEUED\", \"createTime\": \"2026-12-08T02:55:00Z\"}" });
        assert_int_equal(f.env->state, ENV_TRACKING);
        assert_int_equal(f.observed, 1);
        int64_t offset, uncertainty;
        zclock_estimate(&f.zclock, (int64_t) f.realtime, &offset, &uncertainty);
        /* The fake's half second around 0 and the stamp 5 minutes behind disagree: a clock step. */
        assert_true(offset <= -299 * (int64_t) SEC && offset >= -300 * (int64_t) SEC);
        fake_done(&f);
}

typedef struct FailRow {
        Answer answer;
        const char *logged;      /* in the log */
        const char *last_status; /* the last job's status */
        const char *message;     /* in its message */
} FailRow;

static void test_post_failures(void **state) {
        static const FailRow rows[] = {
                { { 400, "{\"reasons\": [{\"message\": \"xyzzy jobType is not valid\"}]}" }, "failed: Zuora answered 400: "
                  "xyzzy", "SUBMIT_FAILED", "xyzzy jobType is not valid" },
                { { 401, "{}" }, "check client_id/client_secret", "SUBMIT_FAILED", "check client_id/client_secret" },
                { { 403, "{\"message\": \"no\"}" }, "Refresh Central Sandbox", "SUBMIT_FAILED", "Refresh Central Sandbox" },
                { { 404, "{}" }, "Zuora answered 404", "SUBMIT_FAILED", "Zuora answered 404" },
        };

        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                Fake f;

                answer(to_submitting(&f, NULL), rows[i].answer);
                assert_int_equal(f.env->state, ENV_IDLE);
                assert_logged(&f, rows[i].logged);
                assert_non_null(st(&f)->last_job);
                assert_null(st(&f)->last_job->id);
                assert_string_equal(st(&f)->last_job->status, rows[i].last_status);
                assert_non_null(strstr(st(&f)->last_job->message, rows[i].message));
                assert_int_equal(st(&f)->last_job->slot, T(SLOT));
                assert_int_equal(st(&f)->intent_slot, STATE_TIME_UNSET);
                assert_int_equal(n_open(&f), 0);
                assert_false(f.wait_armed);
                assert_true(f.slot_armed);
                fake_done(&f);
        }
}

static void test_post_period_rejection(void **state) {
        Fake f;
        const char *period = "{\"reasons\": [{\"message\": \"Only one refresh can be performed during a set period\"}]}";

        to_checking(&f, NULL);
        /* Zuora's nextRefreshTime, known from the check, is when it is deferred to. */
        answer(open_call(&f, HTTP_METHOD_GET, ENVIRONMENT), (Answer) { 200, env_body("2026-12-08T02:00:00Z") });
        answer(open_call(&f, HTTP_METHOD_GET, JOBS), (Answer) { 200, "[]" });
        env_on_intent_saved(f.env);
        st(&f)->zuora_next_refresh = T("2026-12-08T10:00:00Z"); /* as if it changed since */
        answer(open_call(&f, HTTP_METHOD_POST, JOBS), (Answer) { 403, period });
        assert_int_equal(f.env->state, ENV_IDLE);
        assert_logged(&f, "rejected: Zuora refused it: Only one refresh can be performed during a set period; the next "
                          "refresh is allowed from 2026-12-08T10:00:00+00:00");
        assert_int_equal(st(&f)->deferred_until, T("2026-12-08T10:00:02Z")); /* read through Zuora's clock */
        assert_null(st(&f)->last_job); /* rejected, not failed */
        assert_int_equal(n_made(&f, HTTP_METHOD_POST, JOBS), 1);
        fake_done(&f);
}

static void test_post_409_lists(void **state) {
        Fake f;

        /* A job already runs, and it is this slot's: adopted. */
        answer(to_submitting(&f, NULL), (Answer) { 409, "{\"message\": \"a job is running\"}" });
        assert_int_equal(f.env->state, ENV_LISTING);
        answer(open_call(&f, HTTP_METHOD_GET, JOBS), (Answer) { 200, list_body("j0", SLOT) });
        assert_int_equal(f.env->state, ENV_TRACKING);
        assert_string_equal(st(&f)->job->id, "j0");
        fake_done(&f);

        /* None of this slot's: the refresh fails with the 409's words. */
        answer(to_submitting(&f, NULL), (Answer) { 409, "{\"message\": \"a job is running\"}" });
        answer(open_call(&f, HTTP_METHOD_GET, JOBS), (Answer) { 200, "[]" });
        assert_int_equal(f.env->state, ENV_IDLE);
        assert_string_equal(st(&f)->last_job->message, "Zuora answered 409: a job is running");
        assert_int_equal(n_made(&f, HTTP_METHOD_POST, JOBS), 1);
        fake_done(&f);
}

static void test_post_429_waits_as_asked(void **state) {
        Fake f;

        answer(to_submitting(&f, NULL), (Answer) { 429, "{}", .retry_after = "7" });
        assert_int_equal(f.env->state, ENV_BACKOFF);
        assert_int_equal(f.wait_at, f.boottime + 7 * SEC);
        assert_logged(&f, "Zuora asks to slow down (429); retrying in 7.0s (attempt 2)");
        fake_done(&f);
}

/* 5xx and no answer: backoff, then the list check, a new intent, and the POST again. */
static void test_post_unknown_outcome_retries(void **state) {
        static const Answer unknown[] = { { 503, "busy" }, { .error = -ETIMEDOUT } };

        for (size_t i = 0; i < ELEMENTSOF(unknown); i++) {
                Fake f;
                struct ClientCall *first = to_submitting(&f, NULL);
                char *track = strdup(first->track);

                answer(first, unknown[i]);
                assert_int_equal(f.env->state, ENV_BACKOFF);
                assert_true(f.wait_armed);
                assert_true(f.wait_at <= f.boottime + 5 * SEC);
                assert_int_equal(st(&f)->intent_slot, T(SLOT)); /* still in the state */
                fire_wait(&f);
                assert_int_equal(f.env->state, ENV_LISTING);
                answer(open_call(&f, HTTP_METHOD_GET, JOBS), (Answer) { 200, "[]" });
                assert_int_equal(f.env->state, ENV_INTENT);
                assert_false(has_open(&f, HTTP_METHOD_POST, JOBS));
                env_on_intent_saved(f.env);
                struct ClientCall *again = open_call(&f, HTTP_METHOD_POST, JOBS);
                assert_string_equal(again->key, first->key);
                assert_string_not_equal(again->track, track);
                free(track);
                fake_done(&f);
        }
}

static void test_post_retry_found_job(void **state) {
        Fake f;

        answer(to_submitting(&f, NULL), (Answer) { .error = -ECONNRESET });
        fire_wait(&f);
        /* The POST did create it: the list check finds it, nothing is sent again. */
        answer(open_call(&f, HTTP_METHOD_GET, JOBS), (Answer) { 200, list_body("made", SLOT) });
        assert_int_equal(f.env->state, ENV_TRACKING);
        assert_int_equal(n_made(&f, HTTP_METHOD_POST, JOBS), 1);
        fake_done(&f);
}

static void test_retry_for_runs_out(void **state) {
        Fake f;

        answer(to_submitting(&f, "    retry_for: 0s\n"), (Answer) { 502, "bad gateway" });
        assert_int_equal(f.env->state, ENV_IDLE);
        assert_logged(&f, "Zuora answered 502: bad gateway (gave up after retrying for 0s)");
        assert_string_equal(st(&f)->last_job->status, "SUBMIT_FAILED");
        fake_done(&f);

        /* Zuora asks for longer than retry_for leaves: not retried, and said so. */
        answer(to_submitting(&f, "    retry_for: 1m\n"), (Answer) { 429, "{}", .retry_after = "3600" });
        assert_int_equal(f.env->state, ENV_IDLE);
        assert_logged(&f, "Zuora asks to slow down (429), and asks to wait 1h: longer than retry_for 1m leaves; not "
                          "retried");
        assert_false(logged(&f, "gave up after retrying"));
        fake_done(&f);
}

/* ---- the slot comes while busy ---- */

static void test_overlap_skipped(void **state) {
        Fake f;

        to_tracking(&f, NULL);
        size_t n = f.n_calls;
        set_time(&f, "2026-12-09T03:00:00Z");
        f.slot_at = f.realtime;
        fire_slot(&f);
        assert_logged(&f, "slot 2026-12-09T03:00:00+00:00 skipped: job j1 is still running");
        assert_int_equal(f.n_calls, n);
        assert_int_equal(st(&f)->last_slot, T("2026-12-09T03:00:00Z"));
        assert_int_equal(f.env->state, ENV_TRACKING);
        fake_done(&f);
}

static void test_slot_while_submitting_skipped(void **state) {
        Fake f;

        answer(to_submitting(&f, NULL), (Answer) { 503, "busy" });
        /* While a slot is submitted, its retries cover the schedule: no slot
         * timer runs. Should one come (armed before), it is skipped. */
        assert_false(f.slot_armed);
        set_time(&f, "2026-12-09T03:00:00Z");
        f.env->next_slot = T("2026-12-09T03:00:00Z");
        f.slot_armed = true;
        f.slot_at = f.realtime;
        fire_slot(&f);
        assert_logged(&f, "slot 2026-12-09T03:00:00+00:00 skipped: the refresh for slot 2026-12-08T03:00:00+00:00 is "
                          "still being submitted");
        assert_int_equal(f.env->state, ENV_BACKOFF);
        assert_int_equal(f.env->slot, T(SLOT));
        fake_done(&f);
}

static void test_min_interval_skipped(void **state) {
        Fake f;

        /* Every day with min_interval 2d is refused by the config check:
         * set it on the config as loaded. */
        fake_init(&f, NULL, "2026-12-07T12:00:00Z");
        f.config->envs[0].min_interval = 2 * 86400 * SEC;
        st(&f)->last_submitted = T("2026-12-07T03:00:00Z");
        st(&f)->last_slot = T("2026-12-07T03:00:00Z");
        st(&f)->since = T("2026-12-01T00:00:00Z");
        assert_int_equal(env_start(f.env), 0);
        set_time(&f, SLOT);
        f.slot_at = f.realtime;
        fire_slot(&f);
        assert_logged(&f, "skipped: the last refresh submitted was for the slot 2026-12-07T03:00:00+00:00, less than "
                          "min_interval 2d before");
        assert_int_equal(f.n_calls, 0);
        assert_int_equal(f.env->state, ENV_IDLE);
        assert_int_equal(f.slot_at, (uint64_t) (T("2026-12-09T03:00:00Z") - 1) * SEC);
        fake_done(&f);
}

/* ---- TRACKING: polls to the job's end ---- */

static void test_poll_to_completion(void **state) {
        Fake f;

        to_tracking(&f, NULL);
        poll_job(&f, (Answer) { 200, job_body("j1", "IN_PROGRESS", 45) });
        assert_logged(&f, "job j1 is IN_PROGRESS");
        assert_string_equal(st(&f)->job->status, "IN_PROGRESS");
        assert_int_equal(st(&f)->job->progress, 45);
        poll_job(&f, (Answer) { 200, job_body("j1", "IN_PROGRESS", 80) });
        assert_logged(&f, "job j1 at 80%");
        char *status = env_status_text(f.env);
        assert_string_equal(status, "uat IN_PROGRESS 80%");
        free(status);
        poll_job(&f, (Answer) { 200, job_body("j1", "COMPLETED", 100) });
        assert_logged(&f, "job j1 completed: the sandbox is refreshed");
        assert_int_equal(f.env->state, ENV_IDLE);
        assert_null(st(&f)->job);
        assert_string_equal(st(&f)->last_job->id, "j1");
        assert_string_equal(st(&f)->last_job->status, "COMPLETED");
        assert_null(st(&f)->last_job->message);
        assert_int_equal(st(&f)->last_job->slot, T(SLOT));
        assert_false(f.wait_armed);
        assert_true(f.slot_armed);
        assert_null(env_status_text(f.env));
        fake_done(&f);
}

static void test_poll_endings(void **state) {
        static const struct {
                Answer answer;
                const char *logged, *status, *message;
        } rows[] = {
                { { 200, "{\"id\": \"j1\", \"status\": \"FAILED\"}" }, "job j1 ended: FAILED", "FAILED", "ended: FAILED" },
                { { 200, "{\"id\": \"j1\", \"status\": \"CANCELED\"}" }, "job j1 ended: CANCELED", "CANCELED",
                  "ended: CANCELED" },
                { { 404, "{}" }, "job j1 is gone: Zuora answers 404", "LOST", "is gone" },
                { { 200, "{\"id\": \"j1\", \"jobEndTime\": \"2026-12-08T04:00:00Z\"}" }, "job j1 ended: ENDED", "ENDED",
                  "ended: ENDED" },
        };

        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                Fake f;

                to_tracking(&f, NULL);
                poll_job(&f, rows[i].answer);
                assert_logged(&f, rows[i].logged);
                assert_int_equal(f.env->state, ENV_IDLE);
                assert_string_equal(st(&f)->last_job->status, rows[i].status);
                assert_non_null(strstr(st(&f)->last_job->message, rows[i].message));
                fake_done(&f);
        }
}

static void test_poll_failures_go_on(void **state) {
        Fake f;

        to_tracking(&f, NULL);
        for (int k = 0; k < 3; k++) {
                poll_job(&f, (Answer) { 500, "down" });
                assert_int_equal(f.env->state, ENV_TRACKING);
                assert_true(f.wait_armed);
        }
        /* Warned once per streak. */
        const char *first = strstr(f.log, "polling job j1 failed");
        assert_non_null(first);
        assert_null(strstr(first + 1, "polling job j1 failed"));
        poll_job(&f, (Answer) { 200, job_body("j1", "WEIRD", 5) });
        assert_logged(&f, "has a status refreshd does not know, 'WEIRD'");
        fake_done(&f);
}

/* ---- restarts, reloads, the clock ---- */

typedef enum Left {
        LEFT_INTENT, /* killed between the intent and the POST's answer */
        LEFT_JOB,    /* killed while job j1 ran */
} Left;

/* Restarted at NOW after SLOT fired, with what the last run LEFT in the state. */
static void restart(Fake *f, const char *now, Left left) {
        fake_init(f, NULL, now);
        st(f)->since = T("2026-12-01T00:00:00Z");
        st(f)->last_slot = T(SLOT);
        if (left == LEFT_INTENT)
                assert_int_equal(state_env_set_intent(st(f), T(SLOT), "refreshd-old", T(SLOT)), 0);
        else
                assert_int_equal(
                        state_env_follow(st(f), "j1", BASE JOBS "/j1", "IN_PROGRESS", 50, T(SLOT), T(SLOT)), 0);
        assert_int_equal(env_start(f->env), 0);
}

static void test_restart_with_intent_reconciles(void **state) {
        Fake f;

        /* Killed between the intent and the POST's answer: the list decides. */
        restart(&f, "2026-12-08T03:00:05Z", LEFT_INTENT);
        assert_int_equal(f.env->state, ENV_LISTING);
        answer(open_call(&f, HTTP_METHOD_GET, JOBS), (Answer) { 200, list_body("sent", "2026-12-08T03:00:01Z") });
        assert_int_equal(f.env->state, ENV_TRACKING);
        assert_string_equal(st(&f)->job->id, "sent");
        assert_int_equal(n_made(&f, HTTP_METHOD_POST, JOBS), 0);
        fake_done(&f);

        /* ... or nothing was sent: submitted now, with a new intent first. */
        restart(&f, "2026-12-08T03:00:05Z", LEFT_INTENT);
        answer(open_call(&f, HTTP_METHOD_GET, JOBS), (Answer) { 200, "[]" });
        assert_int_equal(f.env->state, ENV_INTENT);
        env_on_intent_saved(f.env);
        assert_non_null(open_call(&f, HTTP_METHOD_POST, JOBS));
        fake_done(&f);
}

static void test_restart_with_job_polls_first(void **state) {
        Fake f;

        restart(&f, "2026-12-09T03:30:00Z", LEFT_JOB);
        assert_int_equal(f.env->state, ENV_TRACKING);
        assert_false(f.slot_armed); /* planned after the first poll */
        /* It ended meanwhile: the slot missed since then is caught up. */
        answer(open_call(&f, HTTP_METHOD_GET, JOBS "/j1"), (Answer) { 200, job_body("j1", "COMPLETED", 100) });
        assert_logged(&f, "catching up the slot 2026-12-09T03:00:00+00:00 missed while refreshd was not running");
        assert_int_equal(f.env->state, ENV_CHECKING);
        fake_done(&f);
}

static void test_restart_with_running_job_skips_missed(void **state) {
        Fake f;

        restart(&f, "2026-12-09T03:30:00Z", LEFT_JOB);
        /* Still running: the slot missed meanwhile came while it ran. */
        answer(open_call(&f, HTTP_METHOD_GET, JOBS "/j1"), (Answer) { 200, job_body("j1", "IN_PROGRESS", 60) });
        assert_logged(&f, "slot 2026-12-09T03:00:00+00:00 skipped: job j1 is still running");
        assert_int_equal(f.env->state, ENV_TRACKING);
        assert_true(f.slot_armed);
        assert_int_equal(f.slot_at, (uint64_t) (T("2026-12-10T03:00:00Z") - 1) * SEC);
        fake_done(&f);
}

static void test_catch_up_off_skips(void **state) {
        Fake f;

        fake_init(&f, "    catch_up: false\n", "2026-12-09T12:00:00Z");
        st(&f)->since = T("2026-12-01T00:00:00Z");
        st(&f)->last_slot = T("2026-12-06T03:00:00Z");
        assert_int_equal(env_start(f.env), 0);
        assert_logged(&f, "slot 2026-12-09T03:00:00+00:00 skipped: missed while refreshd was not running, and catch_up "
                          "is off");
        assert_int_equal(st(&f)->last_slot, T("2026-12-09T03:00:00Z"));
        assert_int_equal(f.env->state, ENV_IDLE);
        assert_int_equal(f.n_calls, 0);
        assert_int_equal(f.slot_at, (uint64_t) (T("2026-12-10T03:00:00Z") - 1) * SEC);
        fake_done(&f);
}

static void test_clock_jump_fires_once(void **state) {
        Fake f;

        to_idle(&f, "    catch_up: false\n");
        /* The clock is set two days ahead: the latest slot fires, once, whatever catch_up says. */
        set_time(&f, "2026-12-09T12:00:00Z");
        env_replan(f.env);
        assert_logged(&f, "the clock jumped past the slot 2026-12-09T03:00:00+00:00");
        assert_int_equal(f.env->state, ENV_CHECKING);
        assert_int_equal(f.env->slot, T("2026-12-09T03:00:00Z"));
        fake_done(&f);
}

static void test_clock_back_never_fires_twice(void **state) {
        Fake f;

        to_tracking(&f, NULL);
        poll_job(&f, (Answer) { 200, job_body("j1", "COMPLETED", 100) });
        /* The clock goes back an hour before the slot that fired. */
        set_time(&f, "2026-12-08T02:00:00Z");
        env_replan(f.env);
        assert_int_equal(f.env->state, ENV_IDLE);
        assert_int_equal(f.slot_at, (uint64_t) (T("2026-12-09T03:00:00Z") - 1) * SEC);
        fake_done(&f);
}

static void test_reload_new_schedule(void **state) {
        Fake f;
        Config *c = NULL;
        Diags d = {};
        const char *text = "zuora:\n  base_url: " BASE "\n  client_id: c\n  client_secret_env: TEST_ENV_SECRET\n"
                           "environments:\n  - name: uat\n    id: " ENV_ID "\n    schedule: \"30 4 * * *\"\n";

        to_idle(&f, NULL);
        assert_int_equal(config_load_string("t.yaml", text, strlen(text), 0, &c, &d), 0);
        diags_clear(&d);
        env_reconfigure(f.env, c, &c->envs[0]);
        assert_int_equal(f.slot_at, (uint64_t) (T("2026-12-08T04:30:00Z") - 1) * SEC);
        config_free(c); /* the environment holds its own reference */
        fake_done(&f);
}

/* A reload a moment after a slot came, before its timer ran: the slot
 * fires; it was not missed while refreshd was not running. */
static void test_reload_at_the_slot_fires_it(void **state) {
        Fake f;
        Config *c = NULL;
        Diags d = {};
        const char *text = "zuora:\n  base_url: " BASE "\n  client_id: c\n  client_secret_env: TEST_ENV_SECRET\n"
                           "environments:\n  - name: uat\n    id: " ENV_ID "\n    schedule: \"0 3 * * *\"\n"
                           "    catch_up: false\n";

        to_idle(&f, "    catch_up: false\n");
        set_time(&f, "2026-12-08T03:00:00Z");
        f.realtime += 3 * USEC_PER_MSEC;
        assert_int_equal(config_load_string("t.yaml", text, strlen(text), 0, &c, &d), 0);
        diags_clear(&d);
        env_reconfigure(f.env, c, &c->envs[0]);
        assert_false(logged(&f, "skipped"));
        assert_int_equal(f.env->state, ENV_CHECKING);
        assert_int_equal(f.env->slot, T(SLOT));
        config_free(c);
        fake_done(&f);
}

static void test_removed_follows_job_then_finishes(void **state) {
        Fake f;

        to_tracking(&f, NULL);
        assert_false(env_remove(f.env));
        assert_false(f.slot_armed);
        assert_false(env_is_finished(f.env));
        poll_job(&f, (Answer) { 200, job_body("j1", "COMPLETED", 100) });
        assert_true(env_is_finished(f.env));
        assert_false(f.slot_armed);
        fake_done(&f);

        to_idle(&f, NULL);
        assert_true(env_remove(f.env));
        assert_true(env_is_finished(f.env));
        fake_done(&f);
}

static void test_submit_ahead(void **state) {
        Fake f;

        to_idle(&f, "    submit_ahead: 10m\n");
        assert_int_equal(f.slot_at, (uint64_t) (T(SLOT) - 600 - 1) * SEC);
        fire_slot(&f);
        fire_slot(&f);
        answer(open_call(&f, HTTP_METHOD_GET, ENVIRONMENT), (Answer) { 200, env_body(NULL) });
        answer(open_call(&f, HTTP_METHOD_GET, JOBS), (Answer) { 200, "[]" });
        env_on_intent_saved(f.env);
        struct ClientCall *post = open_call(&f, HTTP_METHOD_POST, JOBS);
        assert_string_equal(post->body, "{\"jobType\":\"REFRESH\",\"scheduledRefreshTime\":\"" SLOT "\"}");
        fake_done(&f);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_start_plans_next_slot),
                cmocka_unit_test(test_check_ahead),
                cmocka_unit_test(test_check_ahead_still_out_at_slot),
                cmocka_unit_test(test_check_ahead_failed_is_made_again),
                cmocka_unit_test(test_check_ahead_ineligible_said_at_slot),
                cmocka_unit_test(test_reload_drops_check_ahead),
                cmocka_unit_test(test_checking_ineligible_defers),
                cmocka_unit_test(test_checking_ineligible_next_slot_first),
                cmocka_unit_test(test_checking_check_fails_post_decides),
                cmocka_unit_test(test_checking_list_adopts),
                cmocka_unit_test(test_checking_list_older_job_not_adopted),
                cmocka_unit_test(test_checking_list_ended_jobs),
                cmocka_unit_test(test_checking_list_running_elsewhere_skips),
                cmocka_unit_test(test_checking_list_skewed_clock),
                cmocka_unit_test(test_checking_list_fails_post_anyway),
                cmocka_unit_test(test_post_2xx_tracks),
                cmocka_unit_test(test_post_foreign_location),
                cmocka_unit_test(test_post_unreadable_2xx_lists),
                cmocka_unit_test(test_post_observes_clock),
                cmocka_unit_test(test_post_failures),
                cmocka_unit_test(test_post_period_rejection),
                cmocka_unit_test(test_post_409_lists),
                cmocka_unit_test(test_post_429_waits_as_asked),
                cmocka_unit_test(test_post_unknown_outcome_retries),
                cmocka_unit_test(test_post_retry_found_job),
                cmocka_unit_test(test_retry_for_runs_out),
                cmocka_unit_test(test_overlap_skipped),
                cmocka_unit_test(test_slot_while_submitting_skipped),
                cmocka_unit_test(test_min_interval_skipped),
                cmocka_unit_test(test_poll_to_completion),
                cmocka_unit_test(test_poll_endings),
                cmocka_unit_test(test_poll_failures_go_on),
                cmocka_unit_test(test_restart_with_intent_reconciles),
                cmocka_unit_test(test_restart_with_job_polls_first),
                cmocka_unit_test(test_restart_with_running_job_skips_missed),
                cmocka_unit_test(test_catch_up_off_skips),
                cmocka_unit_test(test_clock_jump_fires_once),
                cmocka_unit_test(test_clock_back_never_fires_twice),
                cmocka_unit_test(test_reload_new_schedule),
                cmocka_unit_test(test_reload_at_the_slot_fires_it),
                cmocka_unit_test(test_removed_follows_job_then_finishes),
                cmocka_unit_test(test_submit_ahead),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
