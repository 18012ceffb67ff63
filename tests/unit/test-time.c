/* SPDX-License-Identifier: MIT */
/*
 * The tz reader (offsets, the POSIX rule in the footer, gaps and overlaps,
 * damaged files), RFC 3339 formatting and parsing, and durations.
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

#include "duration.h"
#include "tz.h"

static int64_t iso(const char *s) {
        int64_t t;
        assert_int_equal(tz_parse_iso8601(s, &t), 0);
        return t;
}

static void test_iso8601(void **state) {
        char buf[TZ_ISO_MAX];
        int64_t t;

        assert_int_equal(iso("1970-01-01T00:00:00Z"), 0);
        assert_int_equal(iso("2026-12-06T03:00:00+01:00"), iso("2026-12-06T02:00:00Z"));
        assert_int_equal(iso("2026-12-06T03:00:00-0330"), iso("2026-12-06T06:30:00Z"));
        assert_int_equal(iso("2026-12-06"), iso("2026-12-06T00:00:00Z"));
        assert_int_equal(iso("2026-12-06 03:00"), iso("2026-12-06T03:00:00Z"));
        assert_int_equal(iso("2026-12-06T03:00:00.123456Z"), iso("2026-12-06T03:00:00Z"));
        assert_int_equal(iso("1960-02-29T00:00:00Z"), -310521600);

        const char *bad[] = { "", "2026", "2026-13-01", "2026-02-29", "2026-12-06T24:00", "2026-12-06T03:00:00+",
                              "2026-12-06T03:00:00Zx", "2026-12-06T03:60", "26-12-06", "2026-12-06T03:00:00.Z" };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                if (tz_parse_iso8601(bad[i], &t) != -EINVAL)
                        fail_msg("'%s' parsed", bad[i]);

        assert_int_equal(tz_format_utc(iso("2026-12-06T03:00:00+01:00"), buf, sizeof(buf)), 0);
        assert_string_equal(buf, "2026-12-06T02:00:00Z");
        assert_int_equal(tz_format_utc(0, buf, 5), -ENOBUFS);
        assert_int_equal(tz_format_utc(iso("9999-12-31T23:59:59Z") + 1, buf, sizeof(buf)), -ERANGE);
        assert_int_equal(tz_format_utc(INT64_MIN + 1, buf, sizeof(buf)), -ERANGE);
        assert_int_equal(tz_format_utc(INT64_MAX, buf, sizeof(buf)), -ERANGE);
        assert_int_equal(tz_format_local(NULL, INT64_MIN + 1, buf, sizeof(buf)), -ERANGE);
}

static void test_zone_names(void **state) {
        Tz *tz = NULL;

        assert_true(tz_name_is_valid("Europe/Berlin"));
        assert_true(tz_name_is_valid("UTC"));
        assert_true(tz_name_is_valid("Etc/GMT+5"));
        assert_false(tz_name_is_valid(""));
        assert_false(tz_name_is_valid("/etc/passwd"));
        assert_false(tz_name_is_valid("../../etc/passwd"));
        assert_false(tz_name_is_valid("Europe/../UTC"));
        assert_false(tz_name_is_valid("Europe/"));
        assert_false(tz_name_is_valid("Europe//Berlin"));
        assert_false(tz_name_is_valid("Europe/Berlin now"));

        assert_int_equal(tz_load("../etc/passwd", &tz), -EINVAL);
        assert_int_equal(tz_load("Europe/Berln", &tz), -ENOENT);
        assert_int_equal(tz_load("Europe", &tz), -ENOENT); /* a directory */
        assert_null(tz);
        assert_string_equal(tz_name(NULL), "UTC");
}

static void test_offsets(void **state) {
        Tz *tz = NULL;
        const char *abbr;
        char buf[TZ_ISO_MAX];

        assert_int_equal(tz_load("Europe/Berlin", &tz), 0);
        assert_string_equal(tz_name(tz), "Europe/Berlin");
        assert_int_equal(tz_offset(tz, iso("2026-12-06T02:00:00Z"), &abbr), 3600);
        assert_string_equal(abbr, "CET");
        assert_int_equal(tz_offset(tz, iso("2026-07-01T00:00:00Z"), &abbr), 7200);
        assert_string_equal(abbr, "CEST");
        /* From the footer rule, far past the file's own transitions. */
        assert_int_equal(tz_offset(tz, iso("2300-07-01T00:00:00Z"), NULL), 7200);
        assert_int_equal(tz_offset(tz, iso("2300-12-01T00:00:00Z"), NULL), 3600);
        assert_int_equal(tz_format_local(tz, iso("2027-03-28T01:00:00Z"), buf, sizeof(buf)), 0);
        assert_string_equal(buf, "2027-03-28T03:00:00+02:00");

        /* The gap 02:00-03:00 on 2027-03-28 maps to the change itself. */
        assert_int_equal(tz_wall_to_instant(tz, iso("2027-03-28T02:30:00Z")), iso("2027-03-28T01:00:00Z"));
        /* The repeated 02:00-03:00 on 2027-10-31: first occurrence. */
        assert_int_equal(tz_wall_to_instant(tz, iso("2027-10-31T02:30:00Z")), iso("2027-10-31T00:30:00Z"));
        assert_int_equal(tz_wall_to_instant(tz, iso("2027-10-31T03:00:00Z")), iso("2027-10-31T02:00:00Z"));
        /* During the second pass the clock has shown 02:59:59 already. */
        assert_int_equal(tz_wall_reached(tz, iso("2027-10-31T01:30:00Z")), iso("2027-10-31T02:59:59Z"));
        assert_int_equal(tz_wall_reached(tz, iso("2027-10-31T02:30:00Z")), iso("2027-10-31T03:30:00Z"));
        tz_unref(tz);

        /* Southern hemisphere: DST spans the new year. */
        assert_int_equal(tz_load("Australia/Sydney", &tz), 0);
        assert_int_equal(tz_offset(tz, iso("2350-01-15T00:00:00Z"), NULL), 11 * 3600);
        assert_int_equal(tz_offset(tz, iso("2350-07-15T00:00:00Z"), NULL), 10 * 3600);
        tz_unref(tz);

        /* Negative DST rule times (America/Nuuk: "<-02>2<-01>,M3.5.0/-1,M10.5.0/0"). */
        assert_int_equal(tz_load("America/Nuuk", &tz), 0);
        assert_int_equal(tz_offset(tz, iso("2300-07-15T00:00:00Z"), NULL), -3600);
        assert_int_equal(tz_offset(tz, iso("2300-01-15T00:00:00Z"), NULL), -7200);
        tz_unref(tz);

        assert_int_equal(tz_load("Asia/Tokyo", &tz), 0);
        assert_int_equal(tz_offset(tz, iso("2300-07-15T00:00:00Z"), &abbr), 9 * 3600);
        assert_string_equal(abbr, "JST");
        assert_ptr_equal(tz_ref(tz), tz);
        tz_unref(tz);
        tz_unref(tz);
}

static void test_damaged_files(void **state) {
        static const char junk[] = "TZif2\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\1\0\0\0\4";
        Tz *tz = NULL;
        FILE *f = fopen("/usr/share/zoneinfo/Europe/Berlin", "re");
        char buf[8192];
        size_t n;

        assert_int_equal(tz_parse("x", "", 0, &tz), -EBADMSG);
        assert_int_equal(tz_parse("x", "TZif", 4, &tz), -EBADMSG);
        assert_int_equal(tz_parse("x", junk, sizeof(junk) - 1, &tz), -EBADMSG);

        /* Every truncation of a real file is refused, none crashes. */
        assert_non_null(f);
        n = fread(buf, 1, sizeof(buf), f);
        fclose(f);
        for (size_t len = 0; len < n; len++) {
                if (tz_parse("Europe/Berlin", buf, len, &tz) == 0)
                        fail_msg("truncated to %zu of %zu bytes, it still parsed", len, n);
        }
        assert_int_equal(tz_parse("Europe/Berlin", buf, n, &tz), 0);
        tz_unref(tz);
}

static void test_duration(void **state) {
        char buf[DURATION_MAX];
        uint64_t u;
        size_t at;

        assert_int_equal(duration_parse("90s", &u, &at), 0);
        assert_int_equal(u, 90000000);
        assert_int_equal(duration_parse("1h30m", &u, &at), 0);
        assert_int_equal(u, 5400000000);
        assert_int_equal(duration_parse("28d", &u, &at), 0);
        assert_int_equal(u, 28ULL * 86400 * 1000000);
        assert_int_equal(duration_parse("2w", &u, &at), 0);
        assert_int_equal(u, 14ULL * 86400 * 1000000);
        assert_int_equal(duration_parse("250ms", &u, &at), 0);
        assert_int_equal(u, 250000);
        assert_int_equal(duration_parse("1m1ms", &u, &at), 0);
        assert_int_equal(u, 60001000);
        assert_int_equal(duration_parse("0s", &u, &at), 0);
        assert_int_equal(u, 0);

        assert_int_equal(duration_parse("", &u, &at), -EINVAL);
        assert_int_equal(at, 0);
        assert_int_equal(duration_parse("30", &u, &at), -EINVAL);
        assert_int_equal(at, 2);
        assert_int_equal(duration_parse("30x", &u, &at), -EINVAL);
        assert_int_equal(at, 2);
        assert_int_equal(duration_parse("1h 30m", &u, &at), -EINVAL);
        assert_int_equal(at, 2);
        assert_int_equal(duration_parse("h", &u, &at), -EINVAL);
        assert_int_equal(at, 0);
        assert_int_equal(duration_parse("-5s", &u, &at), -EINVAL);
        assert_int_equal(duration_parse("99999999999999999999s", &u, &at), -ERANGE);
        assert_int_equal(duration_parse("9999999999999w", &u, &at), -ERANGE);

        assert_string_equal(duration_format(0, buf), "0s");
        assert_string_equal(duration_format(28ULL * 86400 * 1000000, buf), "28d");
        assert_string_equal(duration_format(5400000000ULL, buf), "1h30m");
        assert_string_equal(duration_format(60001000ULL, buf), "1m1ms");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_iso8601),
                cmocka_unit_test(test_zone_names),
                cmocka_unit_test(test_offsets),
                cmocka_unit_test(test_damaged_files),
                cmocka_unit_test(test_duration),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
