/* SPDX-License-Identifier: MIT */
/*
 * HTTP-dates in RFC 9110's three forms, two-digit years on both sides of the
 * 50-year line, and what is refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "httpdate.h"
#include "tz.h"

static int64_t iso(const char *s) {
        int64_t t;
        assert_int_equal(tz_parse_iso8601(s, &t), 0);
        return t;
}

static int64_t parse(const char *s, int64_t now) {
        int64_t t = 0;
        int r = httpdate_parse(s, strlen(s), now, &t);

        if (r < 0)
                fail_msg("'%s' refused: %d", s, r);
        return t;
}

static void test_forms(void **state) {
        int64_t now = iso("2026-12-07T00:00:00Z"), want = iso("1994-11-06T08:49:37Z");

        assert_int_equal(parse("Sun, 06 Nov 1994 08:49:37 GMT", now), want);
        assert_int_equal(parse("Sunday, 06-Nov-94 08:49:37 GMT", now), want);
        assert_int_equal(parse("Sun Nov  6 08:49:37 1994", now), want);
        assert_int_equal(parse("sun, 06 nov 1994 08:49:37 utc", now), want);
        assert_int_equal(parse("Mon, 29 Feb 2028 23:59:60 GMT", now), iso("2028-02-29T23:59:59Z"));
        /* A two-digit year: more than 50 years ahead is the past century. */
        assert_int_equal(parse("Friday, 01-Jan-76 00:00:00 GMT", now), iso("2076-01-01T00:00:00Z"));
        assert_int_equal(parse("Friday, 01-Jan-77 00:00:00 GMT", now), iso("1977-01-01T00:00:00Z"));
        assert_int_equal(parse("Thursday, 01-Jan-2026 00:00:00 GMT", now), iso("2026-01-01T00:00:00Z"));
}

static void test_refused(void **state) {
        static const char *const bad[] = {
                "",
                "Sun, 06 Nov 1994 08:49:37",
                "Sun, 06 Nov 1994 08:49:37 CET",
                "Sun, 06 Nov 1994 08:49:37 GMT ",
                " Sun, 06 Nov 1994 08:49:37 GMT",
                "Sun, 31 Nov 1994 08:49:37 GMT",
                "Sun, 29 Feb 1900 08:49:37 GMT",
                "Sun, 06 Nov 1994 24:00:00 GMT",
                "Sun, 06 Nov 1994 08:60:00 GMT",
                "Sun, 06 Nov 94 08:49:37 GMT",
                "Sunday, 06-Nov-994 08:49:37 GMT",
                "Sun,06 Nov 1994 08:49:37 GMT",
                "Sundae, 06 Nov 1994 08:49:37 GMT",
                "Sun, 06 November 1994 08:49:37 GMT",
                "Sun Nov  6 08:49:37 94",
                "120",
        };
        int64_t t;

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                if (httpdate_parse(bad[i], strlen(bad[i]), 0, &t) != -EINVAL)
                        fail_msg("'%s' was accepted", bad[i]);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_forms),
                cmocka_unit_test(test_refused),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
