/* SPDX-License-Identifier: MIT */
/*
 * Zuora's clock as measured: what one stamp bounds (whole seconds, between
 * a request and its answer), how stamps narrow the estimate, a clock that
 * was set starting it again, the doubt growing with age, an unmeasured
 * clock's five minutes, and a Zuora time read as an interval of ours.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "zclock.h"

#define S 1000000LL
#define MS 1000LL

static void estimate(const ZuoraClock *c, int64_t now, int64_t *offset, int64_t *uncertainty) {
        zclock_estimate(c, now, offset, uncertainty);
}

static void test_unmeasured(void **state) {
        int64_t o, u, lo, hi;

        estimate(NULL, 1000 * S, &o, &u);
        assert_int_equal(o, 0);
        assert_int_equal(u, ZCLOCK_UNMEASURED_USEC);
        ZuoraClock c = {};
        zclock_to_ours(&c, 5000, 1000 * S, &lo, &hi);
        assert_int_equal(lo, 5000 - 300);
        assert_int_equal(hi, 5000 + 1 + 300);
}

static void test_one_stamp(void **state) {
        ZuoraClock c = {};
        int64_t o, u, lo, hi;

        /* Sent at 1000.2, answered at 1000.4; Zuora wrote 1300 (it read 1300.0 to 1300.999...). */
        assert_false(zclock_observe(&c, 1300, 1000 * S + 200 * MS, 1000 * S + 400 * MS));
        assert_true(c.measured);
        assert_int_equal(c.lo_usec, 299 * S + 600 * MS);
        assert_int_equal(c.hi_usec, 300 * S + 800 * MS);
        estimate(&c, 1000 * S + 400 * MS, &o, &u);
        assert_int_equal(o, 300 * S + 200 * MS);
        assert_int_equal(u, 600 * MS);
        /* Zuora's 1600 (to 1600.999...) is our 1299.2 to 1301.4, rounded outwards. */
        zclock_to_ours(&c, 1600, 1000 * S + 400 * MS, &lo, &hi);
        assert_int_equal(lo, 1299);
        assert_int_equal(hi, 1302);
}

static void test_stamps_narrow(void **state) {
        ZuoraClock c = {};

        (void) zclock_observe(&c, 1300, 1000 * S + 200 * MS, 1000 * S + 400 * MS); /* [299.6, 300.8] */
        assert_false(zclock_observe(&c, 1301, 1000 * S + 900 * MS, 1001 * S));   /* [300.0, 301.1] */
        assert_int_equal(c.lo_usec, 300 * S);
        assert_int_equal(c.hi_usec, 300 * S + 800 * MS + 60); /* and 0.6 s of drift at 100 ppm */
        /* Behind ours: Zuora wrote 700 while ours went from 1000.0 to 1000.1. */
        ZuoraClock b = {};
        (void) zclock_observe(&b, 700, 1000 * S, 1000 * S + 100 * MS);
        assert_int_equal(b.lo_usec, -300 * S - 100 * MS);
        assert_int_equal(b.hi_usec, -299 * S);
}

static void test_step_starts_again(void **state) {
        ZuoraClock c = {};
        int64_t o, u;

        (void) zclock_observe(&c, 1300, 1000 * S, 1000 * S + 100 * MS);
        /* Zuora's clock was set back an hour: what was known is void. */
        assert_true(zclock_observe(&c, 1300 - 3600 + 10, 1010 * S, 1010 * S + 100 * MS));
        estimate(&c, 1010 * S + 100 * MS, &o, &u);
        assert_true(o > -3300 * S - 2 * S && o < -3300 * S + 2 * S);
        assert_true(u <= 600 * MS);
        /* Our own clock went back between the request and its answer: no bound. */
        ZuoraClock before = c;
        assert_false(zclock_observe(&c, 5, 2000 * S, 1999 * S));
        assert_int_equal(c.lo_usec, before.lo_usec);
        assert_int_equal(c.hi_usec, before.hi_usec);
        assert_int_equal(c.at_usec, before.at_usec);
}

static void test_doubt_grows_with_age(void **state) {
        ZuoraClock c = {};
        int64_t o, u, o2, u2;

        (void) zclock_observe(&c, 1300, 1000 * S, 1000 * S);
        estimate(&c, 1000 * S, &o, &u);
        estimate(&c, 1000 * S + 86400 * S, &o2, &u2);
        assert_int_equal(o2, o);
        /* 100 ppm of a day: 8.64 s. */
        assert_int_equal(u2 - u, 8 * S + 640 * MS);
        /* A stamp a day later is read against the widened bounds: no step. */
        assert_false(zclock_observe(&c, 1300 + 86400 + 5, 1000 * S + 86400 * S, 1000 * S + 86400 * S));
}

static void test_restore(void **state) {
        ZuoraClock c;
        int64_t o, u;

        zclock_restore(&c, -300 * S, 500 * MS, 1000 * S);
        estimate(&c, 1000 * S, &o, &u);
        assert_int_equal(o, -300 * S);
        assert_int_equal(u, 500 * MS);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_unmeasured),       cmocka_unit_test(test_one_stamp),
                cmocka_unit_test(test_stamps_narrow),    cmocka_unit_test(test_step_starts_again),
                cmocka_unit_test(test_doubt_grows_with_age), cmocka_unit_test(test_restore),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
