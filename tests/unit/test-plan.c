/* SPDX-License-Identifier: MIT */
/*
 * The planner at its edges: the next slot, a deferral kept or dropped, the
 * first plan of an environment, catch-up on and off after downtime, the
 * clock jumping past several slots, the latest of many missed slots (a
 * per-second schedule down for days), min_interval across a DST change, the
 * deferral rule through Zuora's clock, when the slot timer wakes for the
 * check ahead, and what covers a slot: Zuora's clock behind or ahead of
 * ours, jobs that ended before the slot, a refresh already running.
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

static bool skipped_8th(int64_t slot, void *userdata) {
        return slot == *(const int64_t *) userdata;
}

static void test_next_fire(void **state) {
        Config *c = config("0 3 * * *", NULL);
        const EnvConfig *ec = &c->envs[0];
        int64_t now = T("2026-12-07T12:00:00Z"), skip = T("2026-12-08T03:00:00Z");

        assert_int_equal(plan_next_fire(ec, now, PLAN_UNSET, NULL, NULL), T("2026-12-08T03:00:00Z"));
        /* A skipped slot: the one after. */
        assert_int_equal(plan_next_fire(ec, now, PLAN_UNSET, skipped_8th, &skip), T("2026-12-09T03:00:00Z"));
        /* Paused until a slot's own time: that slot fires; a second later: the next one. */
        assert_int_equal(plan_next_fire(ec, now, T("2026-12-10T03:00:00Z"), NULL, NULL), T("2026-12-10T03:00:00Z"));
        assert_int_equal(plan_next_fire(ec, now, T("2026-12-10T03:00:01Z"), NULL, NULL), T("2026-12-11T03:00:00Z"));
        /* Paused until resumed: nothing fires. */
        assert_int_equal(plan_next_fire(ec, now, INT64_MAX, NULL, NULL), PLAN_UNSET);
        config_free(c);
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

#define S ((int64_t) USEC_PER_SEC)

/* A clock measured at AT_USEC: Zuora's minus ours is OFFSET ± UNCERTAINTY seconds. */
static ZuoraClock clock_at(double offset, double uncertainty, int64_t at_usec) {
        ZuoraClock c;

        zclock_restore(&c, (int64_t) (offset * S), (int64_t) (uncertainty * S), at_usec);
        return c;
}

static void test_defer_rule(void **state) {
        Config *defer = config("0 3 * * *", NULL), *skip = config("0 3 * * *", "    when_ineligible: skip\n");
        const EnvConfig *d = &defer->envs[0];
        int64_t slot = T("2026-12-07T03:00:00Z"), now = slot * S;
        ZuoraClock same = clock_at(0, 0, now), behind = clock_at(-300, 0.5, now);

        /* Zuora writes whole seconds: its slot + 1 may be any instant of that second. */
        assert_true(plan_is_ineligible(&same, slot + 1, slot, now));
        assert_false(plan_is_ineligible(&same, slot, slot, now));         /* allowed at the slot itself */
        assert_false(plan_is_ineligible(&same, PLAN_UNSET, slot, now));   /* never refreshed: allowed */
        assert_false(plan_is_ineligible(&same, slot + 10, slot, now + 10 * S)); /* passed by now */
        /* Zuora 5 minutes behind: its slot - 200 s is 100 s after our slot. */
        assert_true(plan_is_ineligible(&behind, slot - 200, slot, now));
        assert_false(plan_is_ineligible(&behind, slot - 301, slot, now));
        /* Not measured: only a time surely later, by 5 minutes of doubt, forbids it. */
        assert_false(plan_is_ineligible(NULL, slot + 299, slot, now));
        assert_true(plan_is_ineligible(NULL, slot + 302, slot, now));

        /* Deferred until Zuora surely allows it: the end of its second. */
        assert_int_equal(plan_defer_until(d, &same, slot, slot + 3600, now), slot + 3601);
        assert_int_equal(plan_defer_until(d, &behind, slot, slot + 3600, now), slot + 3600 + 300 + 2);
        /* A day later is the next slot itself: it comes first. */
        assert_int_equal(plan_defer_until(d, &same, slot, slot + 86399, now), PLAN_UNSET);
        assert_int_equal(plan_defer_until(d, &same, slot, slot + 86398, now), slot + 86399);
        assert_int_equal(plan_defer_until(d, &same, slot, slot - 1, now), PLAN_UNSET); /* passed */
        assert_int_equal(plan_defer_until(d, &same, slot, PLAN_UNSET, now), PLAN_UNSET);
        assert_int_equal(plan_defer_until(&skip->envs[0], &same, slot, slot + 3600, now), PLAN_UNSET);
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
        return (ZuoraJob) { .id = (char *) id,
                            .create_time = created,
                            .update_time = ZUORA_TIME_UNSET,
                            .job_end_time = ZUORA_TIME_UNSET,
                            .progress = -1 };
}

static ZuoraJob ended(const char *id, const char *status, int64_t created, int64_t end) {
        ZuoraJob j = job(id, created);

        j.status = (char *) status;
        j.job_end_time = end;
        return j;
}

/* The list check's view of SLOT: EARLIER slots and KNOWN ids (NULL-ended), the clock C, now = the slot. */
static PlanSlot at(int64_t slot, const int64_t *earlier, size_t n_earlier, const char *const *known,
                   const ZuoraClock *c) {
        size_t n = 0;

        while (known && known[n])
                n++;
        return (PlanSlot) { .slot = slot,
                            .earlier = earlier,
                            .n_earlier = n_earlier,
                            .known_ids = known,
                            .n_known_ids = n,
                            .clock = c,
                            .now_usec = slot * S };
}

static void test_covering_job(void **state) {
        Config *c = config("0 3 * * *", NULL), *ahead = config("0 3 * * *", "    submit_ahead: 10m\n");
        const EnvConfig *e = &c->envs[0];
        int64_t slot = T("2026-12-08T03:00:00Z"), since = slot - PLAN_JUST_BEFORE_SEC - PLAN_CLOCK_MARGIN_SEC;
        const int64_t none[] = { PLAN_UNSET };
        ZuoraClock same = clock_at(0, 0, slot * S);
        PlanSlot s = at(slot, none, 1, NULL, &same);
        ZuoraJob jobs[] = {
                job("too-old", since - 2),
                job("edge", since - 1), /* may be since itself: Zuora's seconds are whole */
                job("no-time", ZUORA_TIME_UNSET),
        };

        /* At the edge of "just before": covered; a second before: not. */
        assert_string_equal(plan_covering_job(e, &s, jobs, 3)->id, "edge");
        assert_null(plan_covering_job(e, &s, jobs, 1));
        /* The newest wins; a job refreshd knows never covers a new slot. */
        ZuoraJob two[] = { job("a", slot + 5), job("b", slot + 9), job("c", slot + 7) };
        assert_string_equal(plan_covering_job(e, &s, two, 3)->id, "b");
        const char *const known_b[] = { "b", NULL };
        PlanSlot sb = at(slot, none, 1, known_b, &same);
        assert_string_equal(plan_covering_job(e, &sb, two, 3)->id, "c");
        /* Nothing created before an earlier slot came covers this one. */
        const int64_t earlier[] = { slot - 60, PLAN_UNSET, slot + 3600 /* later: ignored */ };
        PlanSlot se = at(slot, earlier, 3, NULL, &same);
        ZuoraJob near[] = { job("prev", slot - 60), job("after-prev", slot - 58) };
        assert_string_equal(plan_covering_job(e, &se, near, 2)->id, "after-prev");
        assert_null(plan_covering_job(e, &se, near, 1));
        /* submit_ahead: a job created that long before the slot is its own. */
        ZuoraJob early[] = { job("early", slot - 600 - PLAN_JUST_BEFORE_SEC) };
        assert_non_null(plan_covering_job(&ahead->envs[0], &s, early, 1));
        assert_null(plan_covering_job(e, &s, early, 1));
        assert_null(plan_covering_job(e, &s, NULL, 0));
        config_free(c);
        config_free(ahead);
}

/* Zuora's clock 5 minutes behind ours, then 2 minutes ahead: slots 5 s
 * apart, the job of the earlier slot not known by id (a kill before it was
 * recorded), and the job of this slot created a moment after it left. */
static void test_covering_job_skewed_clocks(void **state) {
        Config *c = config("*/5 * * * * *", NULL);
        const EnvConfig *e = &c->envs[0];
        int64_t slot = T("2026-12-08T03:00:05Z"), prev = slot - 5;
        const int64_t earlier[] = { prev };
        const double offsets[] = { -300, 0, 120 };

        for (size_t i = 0; i < ELEMENTSOF(offsets); i++) {
                int64_t o = (int64_t) offsets[i];
                ZuoraClock zc = clock_at(offsets[i], 0.6, slot * S);
                PlanSlot s = at(slot, earlier, 1, NULL, &zc);
                ZuoraJob jobs[] = { job("prev", prev + o), job("this", slot + o) };

                assert_string_equal(plan_covering_job(e, &s, jobs, 2)->id, "this");
                assert_null(plan_covering_job(e, &s, jobs, 1)); /* the earlier slot's is never this one's */
                /* Read with our own clock the answer is wrong both ways: */
                ZuoraClock ours = clock_at(0, 0.6, slot * S);
                PlanSlot wrong = at(slot, earlier, 1, NULL, &ours);
                if (o < 0)
                        assert_null(plan_covering_job(e, &wrong, jobs + 1, 1)); /* lost: a second POST */
                else if (o > 0)
                        assert_non_null(plan_covering_job(e, &wrong, jobs, 1)); /* the old job adopted */
        }
        config_free(c);
}

/* What ended before the slot covers it only if it COMPLETED; what ran into
 * the slot covers it however it ended. */
static void test_covering_job_ended(void **state) {
        Config *c = config("0 3 * * *", NULL);
        const EnvConfig *e = &c->envs[0];
        int64_t slot = T("2026-12-08T03:00:00Z");
        const int64_t none[] = { PLAN_UNSET };
        ZuoraClock same = clock_at(0, 0.5, slot * S), behind = clock_at(-300, 0.5, slot * S);
        PlanSlot s = at(slot, none, 1, NULL, &same);
        ZuoraJob before[] = {
                ended("canceled", "CANCELED", slot - 200, slot - 120),
                ended("failed", "FAILED", slot - 200, slot - 120),
                ended("cancelled", "CANCELLED", slot - 200, slot - 2),
                ended("completed", "COMPLETED", slot - 200, slot - 120),
        };

        assert_null(plan_covering_job(e, &s, before, 3));
        assert_string_equal(plan_covering_job(e, &s, before, 4)->id, "completed");
        /* Ended in the second of the slot, or after it: it ran at the slot. */
        ZuoraJob into[] = { ended("canceled-after", "CANCELED", slot - 200, slot + 1) };
        assert_non_null(plan_covering_job(e, &s, into, 1));
        /* No jobEndTime: updateTime says when it ended. */
        ZuoraJob upd = ended("failed-upd", "FAILED", slot - 200, ZUORA_TIME_UNSET);
        upd.update_time = slot - 100;
        assert_null(plan_covering_job(e, &s, &upd, 1));
        /* By Zuora's clock 5 minutes behind, "ended at slot - 200" is 100 s after our slot. */
        PlanSlot sb = at(slot, none, 1, NULL, &behind);
        ZuoraJob late[] = { ended("late", "FAILED", slot - 400, slot - 200) };
        assert_non_null(plan_covering_job(e, &sb, late, 1));
        assert_null(plan_covering_job(e, &s, late, 1));
        config_free(c);
}

static void test_running_job(void **state) {
        ZuoraJob jobs[] = {
                ended("done", "COMPLETED", 100, 200),
                job("old", 50),
                job("new", 300),
                ended("ended-by-time", "WEIRD", 400, 500),
        };

        assert_string_equal(plan_running_job(jobs, 4)->id, "new");
        assert_string_equal(plan_running_job(jobs, 2)->id, "old");
        assert_null(plan_running_job(jobs, 1));
        assert_null(plan_running_job(NULL, 0));
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
                cmocka_unit_test(test_next_fire),
                cmocka_unit_test(test_missed),
                cmocka_unit_test(test_latest_of_many),
                cmocka_unit_test(test_deferral_kept_or_dropped),
                cmocka_unit_test(test_defer_rule),
                cmocka_unit_test(test_min_interval),
                cmocka_unit_test(test_times),
                cmocka_unit_test(test_covering_job),
                cmocka_unit_test(test_covering_job_skewed_clocks),
                cmocka_unit_test(test_covering_job_ended),
                cmocka_unit_test(test_running_job),
                cmocka_unit_test(test_backoff),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
