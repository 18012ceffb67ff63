/* SPDX-License-Identifier: MIT */
/*
 * The planner at its edges: the next slot, a deferral kept or dropped, the
 * first plan of an environment, catch-up on and off after downtime, the
 * clock jumping past several slots, the latest of many missed slots (a
 * per-second schedule down for days), min_interval across a DST change, the
 * deferral rule, and when the slot timer wakes for the check ahead.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "macro.h"
#include "plan.h"
#include "tz.h"

static int64_t T(const char *s) {
        int64_t t;
        assert_int_equal(tz_parse_iso8601(s, &t), 0);
        return t;
}

/* A config of one environment with SCHEDULE and the extra settings EXTRA. */
static Config *config(const char *schedule, const char *extra) {
        char *text;
        Config *c = NULL;
        Diags d = {};

        setenv("TEST_PLAN_SECRET", "s", 1);
        assert_true(asprintf(&text,
                             "zuora:\n  base_url: https://z.example\n  client_id: c\n  client_secret_env: TEST_PLAN_SECRET\n"
                             "environments:\n  - name: e\n    id: e1\n    schedule: \"%s\"\n%s",
                             schedule, extra ? extra : "") > 0);
        if (config_load_string("test.yaml", text, strlen(text), T("2026-01-01T00:00:00Z"), &c, &d) < 0) {
                diags_print(&d, stderr);
                fail();
        }
        diags_clear(&d);
        free(text);
        return c;
}

static void test_next_and_first(void **state) {
        Config *c = config("0 3 * * *", NULL);
        const EnvConfig *ec = &c->envs[0];
        int64_t now = T("2026-12-07T12:00:00Z");
        Plan p;

        /* Never planned: starts at its next slot, and SINCE is now. */
        p = plan_next(ec, &(PlanState) { PLAN_UNSET, PLAN_UNSET, PLAN_UNSET }, now, false);
        assert_int_equal(p.action, PLAN_WAIT);
        assert_int_equal(p.slot, T("2026-12-08T03:00:00Z"));
        assert_true(p.set_since);
        assert_false(p.deferred);

        /* A slot at exactly NOW has come: it is missed, not waited for. */
        p = plan_next(ec, &(PlanState) { T("2026-12-01T00:00:00Z"), T("2026-12-07T03:00:00Z"), PLAN_UNSET },
                      T("2026-12-08T03:00:00Z"), false);
        assert_int_equal(p.action, PLAN_FIRE);
        assert_int_equal(p.slot, T("2026-12-08T03:00:00Z"));
        assert_false(p.set_since);
        config_free(c);
}

static void test_missed(void **state) {
        Config *on = config("0 3 * * *", NULL), *off = config("0 3 * * *", "    catch_up: false\n");
        PlanState st = { T("2026-11-01T00:00:00Z"), T("2026-12-01T03:00:00Z"), PLAN_UNSET };
        int64_t now = T("2026-12-07T12:00:00Z");
        Plan p;

        /* Down for a week: the latest missed slot fires, once. */
        p = plan_next(&on->envs[0], &st, now, false);
        assert_int_equal(p.action, PLAN_FIRE);
        assert_int_equal(p.slot, T("2026-12-07T03:00:00Z"));
        assert_false(p.clock_jumped);
        /* Without catch_up it is skipped (and recorded by the caller). */
        p = plan_next(&off->envs[0], &st, now, false);
        assert_int_equal(p.action, PLAN_SKIP);
        assert_int_equal(p.slot, T("2026-12-07T03:00:00Z"));
        st.last_slot = p.slot;
        p = plan_next(&off->envs[0], &st, now, false);
        assert_int_equal(p.action, PLAN_WAIT);
        assert_int_equal(p.slot, T("2026-12-08T03:00:00Z"));
        /* The clock jumped past slots while running: they fire, catch_up or not. */
        st.last_slot = T("2026-12-05T03:00:00Z");
        p = plan_next(&off->envs[0], &st, now, true);
        assert_int_equal(p.action, PLAN_FIRE);
        assert_int_equal(p.slot, T("2026-12-07T03:00:00Z"));
        assert_true(p.clock_jumped);
        /* Slots before SINCE are not missed ones. */
        st = (PlanState) { T("2026-12-07T04:00:00Z"), PLAN_UNSET, PLAN_UNSET };
        p = plan_next(&on->envs[0], &st, now, false);
        assert_int_equal(p.action, PLAN_WAIT);
        config_free(on);
        config_free(off);
}

static void test_latest_of_many(void **state) {
        Config *c = config("* * * * * *", NULL);
        int64_t after = T("2026-12-01T00:00:00Z"), now = T("2026-12-07T12:34:56Z");

        /* A slot every second, down for six days: found without walking them all. */
        assert_int_equal(plan_latest_slot(&c->envs[0], after, now), now);
        assert_int_equal(plan_latest_slot(&c->envs[0], now, now), PLAN_UNSET);
        assert_int_equal(plan_latest_slot(&c->envs[0], now - 1, now), now);
        config_free(c);

        c = config("0 0 1 1 *", NULL); /* once a year, the last one five years back */
        assert_int_equal(plan_latest_slot(&c->envs[0], T("2020-06-01T00:00:00Z"), now), T("2026-01-01T00:00:00Z"));
        assert_int_equal(plan_latest_slot(&c->envs[0], T("2026-01-01T00:00:00Z"), now), PLAN_UNSET);
        config_free(c);
}

static void test_deferral_kept_or_dropped(void **state) {
        Config *c = config("0 3 * * *", NULL);
        const EnvConfig *ec = &c->envs[0];
        PlanState st = { T("2026-11-01T00:00:00Z"), T("2026-12-07T03:00:00Z"), T("2026-12-07T20:00:00Z") };
        Plan p;

        /* Zuora's time comes before the next slot: wait for it. */
        p = plan_next(ec, &st, T("2026-12-07T12:00:00Z"), false);
        assert_int_equal(p.action, PLAN_WAIT);
        assert_int_equal(p.slot, T("2026-12-07T20:00:00Z"));
        assert_true(p.deferred);
        /* The next slot comes first (or at the same time): the deferral goes. */
        st.deferred_until = T("2026-12-08T03:00:00Z");
        p = plan_next(ec, &st, T("2026-12-07T12:00:00Z"), false);
        assert_true(p.drop_deferral);
        assert_int_equal(p.action, PLAN_WAIT);
        assert_int_equal(p.slot, T("2026-12-08T03:00:00Z"));
        assert_false(p.deferred);
        config_free(c);
}

static void test_defer_rule(void **state) {
        Config *defer = config("0 3 * * *", NULL), *skip = config("0 3 * * *", "    when_ineligible: skip\n");
        int64_t slot = T("2026-12-07T03:00:00Z"), now = slot;

        assert_true(plan_is_ineligible(slot + 1, slot, now));
        assert_false(plan_is_ineligible(slot, slot, now));         /* allowed at the slot itself */
        assert_false(plan_is_ineligible(PLAN_UNSET, slot, now));   /* never refreshed: allowed */
        assert_false(plan_is_ineligible(slot + 10, slot, now + 10)); /* passed by now */

        assert_int_equal(plan_defer_until(&defer->envs[0], slot, slot + 3600, now), slot + 3600);
        /* A day later is the next slot itself: it comes first. */
        assert_int_equal(plan_defer_until(&defer->envs[0], slot, slot + 86400, now), PLAN_UNSET);
        assert_int_equal(plan_defer_until(&defer->envs[0], slot, slot + 86399, now), slot + 86399);
        assert_int_equal(plan_defer_until(&defer->envs[0], slot, now, now), PLAN_UNSET);
        assert_int_equal(plan_defer_until(&defer->envs[0], slot, PLAN_UNSET, now), PLAN_UNSET);
        assert_int_equal(plan_defer_until(&skip->envs[0], slot, slot + 3600, now), PLAN_UNSET);
        config_free(defer);
        config_free(skip);
}

static void test_min_interval(void **state) {
        Config *c = config("0 3 1 * *", "    timezone: Europe/Berlin\n    min_interval: 28d\n");
        const EnvConfig *ec = &c->envs[0];

        assert_false(plan_too_soon(ec, PLAN_UNSET, T("2027-03-01T02:00:00Z")));
        /* 1 March to 1 April in Berlin: 31 days of wall clock, 23 hours of
         * them shortened by the change to summer time: still 31 days. */
        assert_false(plan_too_soon(ec, T("2027-03-01T02:00:00Z"), T("2027-04-01T01:00:00Z")));
        /* 27 days and 23 hours of wall clock: too soon. */
        assert_true(plan_too_soon(ec, T("2027-03-01T02:00:00Z"), T("2027-03-29T00:00:00Z")));
        /* Exactly 28 days: not too soon. */
        assert_false(plan_too_soon(ec, T("2027-02-01T02:00:00Z"), T("2027-03-01T02:00:00Z")));
        /* A slot before the last one (the clock went back): too soon. */
        assert_true(plan_too_soon(ec, T("2027-03-01T02:00:00Z"), T("2027-02-01T02:00:00Z")));
        config_free(c);

        c = config("0 3 1 * *", NULL); /* no min_interval */
        assert_false(plan_too_soon(&c->envs[0], T("2027-03-01T02:00:00Z"), T("2027-03-01T02:00:01Z")));
        config_free(c);
}

static void test_times(void **state) {
        Config *c = config("0 3 * * *", "    submit_ahead: 10m\n");
        const EnvConfig *ec = &c->envs[0];
        int64_t slot = T("2026-12-07T03:00:00Z");
        uint64_t fire = plan_fire_usec(ec, slot, false), s = USEC_PER_SEC;

        assert_int_equal(fire, (uint64_t) (slot - 600) * s);
        assert_int_equal(plan_fire_usec(ec, slot, /* deferred= */ true), (uint64_t) slot * s);
        /* A second ahead; halfway when nearer; not at all when too near, deferred or passed. */
        assert_int_equal(plan_wake_usec(fire, fire - 60 * s, false), fire - s);
        assert_int_equal(plan_wake_usec(fire, fire - s, false), fire - s / 2);
        assert_int_equal(plan_wake_usec(fire, fire - 20 * USEC_PER_MSEC, false), fire - 10 * USEC_PER_MSEC);
        assert_int_equal(plan_wake_usec(fire, fire - 19 * USEC_PER_MSEC, false), fire);
        assert_int_equal(plan_wake_usec(fire, fire - 60 * s, /* deferred= */ true), fire);
        assert_int_equal(plan_wake_usec(fire, fire + s, false), fire);
        config_free(c);
}

static ZuoraJob job(const char *id, int64_t created) {
        return (ZuoraJob) { .id = (char *) id, .create_time = created, .progress = -1 };
}

static void test_covering_job(void **state) {
        Config *c = config("0 3 * * *", NULL), *ahead = config("0 3 * * *", "    submit_ahead: 10m\n");
        int64_t slot = T("2026-12-08T03:00:00Z");
        const int64_t none[] = { PLAN_UNSET };
        ZuoraJob jobs[] = {
                job("too-old", slot - PLAN_CLOCK_SKEW_SEC - 1),
                job("edge", slot - PLAN_CLOCK_SKEW_SEC),
                job("no-time", ZUORA_TIME_UNSET),
        };

        /* At the skew allowance's edge: covered; a second before: not. */
        assert_string_equal(plan_covering_job(&c->envs[0], slot, none, 1, NULL, jobs, 3)->id, "edge");
        assert_null(plan_covering_job(&c->envs[0], slot, none, 1, NULL, jobs, 1));
        /* The newest wins; the last job (by id) never covers a new slot. */
        ZuoraJob two[] = { job("a", slot + 5), job("b", slot + 9), job("c", slot + 7) };
        assert_string_equal(plan_covering_job(&c->envs[0], slot, none, 1, NULL, two, 3)->id, "b");
        assert_string_equal(plan_covering_job(&c->envs[0], slot, none, 1, "b", two, 3)->id, "c");
        /* The allowance stops after an earlier slot that came less than it before. */
        const int64_t earlier[] = { slot - 60, PLAN_UNSET, slot + 3600 /* later: ignored */ };
        ZuoraJob near[] = { job("prev", slot - 60), job("after-prev", slot - 59) };
        assert_string_equal(plan_covering_job(&c->envs[0], slot, earlier, 3, NULL, near, 2)->id, "after-prev");
        assert_null(plan_covering_job(&c->envs[0], slot, earlier, 3, NULL, near, 1));
        /* submit_ahead: a job created that long before the slot is its own. */
        ZuoraJob early[] = { job("early", slot - 600 - PLAN_CLOCK_SKEW_SEC) };
        assert_non_null(plan_covering_job(&ahead->envs[0], slot, none, 1, NULL, early, 1));
        assert_null(plan_covering_job(&c->envs[0], slot, none, 1, NULL, early, 1));
        assert_null(plan_covering_job(&c->envs[0], slot, none, 1, NULL, NULL, 0));
        config_free(c);
        config_free(ahead);
}

static void test_backoff(void **state) {
        uint64_t s = USEC_PER_SEC;

        /* Full jitter up to 5 s * 2^attempt, at most 10 minutes. */
        assert_int_equal(plan_backoff_usec(0, UINT64_MAX), UINT64_MAX % (5 * s + 1));
        assert_int_equal(plan_backoff_usec(0, 5 * s), 5 * s);
        assert_int_equal(plan_backoff_usec(0, 5 * s + 1), 0);
        assert_int_equal(plan_backoff_usec(3, 40 * s), 40 * s);
        assert_int_equal(plan_backoff_usec(7, 600 * s), 600 * s);
        assert_int_equal(plan_backoff_usec(7, 601 * s), 601 * s % (600 * s + 1));
        assert_int_equal(plan_backoff_usec(1000, 600 * s), 600 * s);
        for (unsigned a = 0; a < 40; a++)
                for (uint64_t r = 0; r < 2000; r += 97)
                        assert_true(plan_backoff_usec(a, r * 1000003) <= 600 * s);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_next_and_first),
                cmocka_unit_test(test_missed),
                cmocka_unit_test(test_latest_of_many),
                cmocka_unit_test(test_deferral_kept_or_dropped),
                cmocka_unit_test(test_defer_rule),
                cmocka_unit_test(test_min_interval),
                cmocka_unit_test(test_times),
                cmocka_unit_test(test_covering_job),
                cmocka_unit_test(test_backoff),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
