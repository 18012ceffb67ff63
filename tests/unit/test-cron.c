/* SPDX-License-Identifier: MIT */
/*
 * The schedule engine against hand-checked cases (grammar, DST gaps and
 * overlaps, month ends, leap days) and against an independent brute-force
 * oracle: random expressions whose field sets the test itself knows, matched
 * naively day by day and minute by minute, with wall-clock times taken from
 * the C library's localtime_r() rather than from our tz reader. The seed is
 * printed; set REFRESHD_TEST_SEED to replay a run.
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
#include <time.h>

#include "civil.h"
#include "cron.h"
#include "tz.h"

static int64_t iso(const char *s) {
        int64_t t;
        assert_int_equal(tz_parse_iso8601(s, &t), 0);
        return t;
}

static Tz *zone(const char *name) {
        Tz *tz = NULL;
        assert_int_equal(tz_load(name, &tz), 0);
        return tz;
}

/* Asserts the next N fires of EXPR in ZONE after FROM, as local RFC 3339 times. */
static void expect_fires(const char *expr, const char *zone_name, const char *from, const char *const *want) {
        CronSpec *s = NULL;
        CronError err = {};
        Tz *tz = zone_name ? zone(zone_name) : NULL;
        int64_t t = iso(from);

        if (cron_parse(expr, &s, &err) < 0)
                fail_msg("'%s' does not parse: %s", expr, err.message);
        for (size_t i = 0; want[i]; i++) {
                char buf[TZ_ISO_MAX];
                assert_int_equal(cron_next(s, tz, t, &t), 0);
                assert_int_equal(tz_format_local(tz, t, buf, sizeof(buf)), 0);
                if (strcmp(buf, want[i]) != 0)
                        fail_msg("'%s' in %s after %s, fire #%zu: got %s, want %s", expr, tz_name(tz), from, i + 1, buf,
                                 want[i]);
        }
        cron_spec_free(s);
        tz_unref(tz);
}

#define FIRES(expr, zone, from, ...) expect_fires(expr, zone, from, (const char *const[]) { __VA_ARGS__, NULL })

static void expect_error(const char *expr, size_t offset, const char *needle) {
        CronSpec *s = NULL;
        CronError err = {};

        if (cron_parse(expr, &s, &err) != -EINVAL)
                fail_msg("'%s' parsed, but should not", expr);
        assert_null(s);
        if (!strstr(err.message, needle))
                fail_msg("'%s': message '%s' lacks '%s'", expr, err.message, needle);
        if (err.offset != offset)
                fail_msg("'%s': error at offset %zu, want %zu (%s)", expr, err.offset, offset, err.message);
}

static void test_basic_fields(void **state) {
        FIRES("0 3 * * *", NULL, "2026-11-29T00:00:00Z", "2026-11-29T03:00:00+00:00", "2026-11-30T03:00:00+00:00");
        FIRES("*/15 9-17 * * MON-FRI", NULL, "2026-11-27T17:45:00Z", /* a Friday */
              "2026-11-30T09:00:00+00:00", "2026-11-30T09:15:00+00:00");
        FIRES("5,10-12 * * * *", NULL, "2026-01-01T00:00:00Z", "2026-01-01T00:05:00+00:00",
              "2026-01-01T00:10:00+00:00", "2026-01-01T00:11:00+00:00", "2026-01-01T00:12:00+00:00",
              "2026-01-01T01:05:00+00:00");
        FIRES("50/5 * * * *", NULL, "2026-01-01T00:00:00Z", "2026-01-01T00:50:00+00:00", "2026-01-01T00:55:00+00:00",
              "2026-01-01T01:50:00+00:00");
        FIRES("0 0 1-10/3 * *", NULL, "2026-01-01T00:00:00Z", "2026-01-04T00:00:00+00:00", "2026-01-07T00:00:00+00:00",
              "2026-01-10T00:00:00+00:00", "2026-02-01T00:00:00+00:00");
        FIRES("0 12 * jan,Jul *", NULL, "2026-02-01T00:00:00Z", "2026-07-01T12:00:00+00:00");
        /* Strictly after: a slot exactly at FROM is not returned. */
        FIRES("0 3 * * *", NULL, "2026-11-29T03:00:00Z", "2026-11-30T03:00:00+00:00");
}

static void test_seconds_field(void **state) {
        FIRES("*/20 * * * * *", NULL, "2026-01-01T00:00:00Z", "2026-01-01T00:00:20+00:00", "2026-01-01T00:00:40+00:00",
              "2026-01-01T00:01:00+00:00");
        FIRES("30 0 3 * * *", NULL, "2026-01-01T00:00:00Z", "2026-01-01T03:00:30+00:00");
}

static void test_day_of_week(void **state) {
        /* 0 and 7 are both Sunday; names are case-insensitive. */
        FIRES("0 0 * * 7", NULL, "2026-11-25T00:00:00Z", "2026-11-29T00:00:00+00:00");
        FIRES("0 0 * * 0", NULL, "2026-11-25T00:00:00Z", "2026-11-29T00:00:00+00:00");
        FIRES("0 0 * * sun", NULL, "2026-11-25T00:00:00Z", "2026-11-29T00:00:00+00:00");
        FIRES("0 0 * * 5-7", NULL, "2026-11-25T00:00:00Z", "2026-11-27T00:00:00+00:00", "2026-11-28T00:00:00+00:00",
              "2026-11-29T00:00:00+00:00", "2026-12-04T00:00:00+00:00");
}

/* The forms other projects' test suites use (croniter, cron-parser,
 * cronie): a day-of-week step runs to 7, "7/n" is Sunday, and a range may
 * end in Sunday ("X-SUN", "X-7", "X-0" as cronie reads it). */
static void test_day_of_week_peer_forms(void **state) {
        /* 2026-11-28 is a Saturday. */
        FIRES("0 0 * * 1/2", NULL, "2026-11-28T00:00:00Z", "2026-11-29T00:00:00+00:00", "2026-11-30T00:00:00+00:00",
              "2026-12-02T00:00:00+00:00", "2026-12-04T00:00:00+00:00", "2026-12-06T00:00:00+00:00");
        FIRES("0 0 * * 1-7/2", NULL, "2026-11-28T00:00:00Z", "2026-11-29T00:00:00+00:00", "2026-11-30T00:00:00+00:00",
              "2026-12-02T00:00:00+00:00");
        FIRES("0 0 * * 6/1", NULL, "2026-11-25T00:00:00Z", "2026-11-28T00:00:00+00:00", "2026-11-29T00:00:00+00:00",
              "2026-12-05T00:00:00+00:00");
        FIRES("0 0 * * 7/2", NULL, "2026-11-25T00:00:00Z", "2026-11-29T00:00:00+00:00", "2026-12-06T00:00:00+00:00");
        FIRES("0 0 * * 7/1", NULL, "2026-11-25T00:00:00Z", "2026-11-29T00:00:00+00:00", "2026-12-06T00:00:00+00:00");
        FIRES("* * * * 7/2", NULL, "2026-11-28T23:58:00Z", "2026-11-29T00:00:00+00:00", "2026-11-29T00:01:00+00:00");
        FIRES("0 0 * * MON-SUN", NULL, "2026-11-28T00:00:00Z", "2026-11-29T00:00:00+00:00", "2026-11-30T00:00:00+00:00");
        FIRES("0 0 * * thu-sun", NULL, "2026-11-25T00:00:00Z", "2026-11-26T00:00:00+00:00", "2026-11-27T00:00:00+00:00",
              "2026-11-28T00:00:00+00:00", "2026-11-29T00:00:00+00:00", "2026-12-03T00:00:00+00:00");
        FIRES("0 0 * * 4-0", NULL, "2026-11-29T00:00:00Z", "2026-12-03T00:00:00+00:00");
        FIRES("0 0 * * Fri-7", NULL, "2026-11-29T00:00:00Z", "2026-12-04T00:00:00+00:00");
        FIRES("0 0 * * sat-sun/1", NULL, "2026-11-23T00:00:00Z", "2026-11-28T00:00:00+00:00", "2026-11-29T00:00:00+00:00");
        /* Still backwards: a range that wraps through the week is two. */
        expect_error("0 0 * * FRI-MON", 8, "goes backwards");
        expect_error("0 0 * * 0-8", 10, "day-of-week value 8");
}

/* Asserts that EXPR parses with a warning at OFFSET that says NEEDLE (and no other). */
static void expect_warning(const char *expr, size_t offset, const char *needle) {
        CronSpec *s = NULL;
        CronWarnings w = {};

        if (cron_parse_warn(expr, &s, NULL, &w) < 0)
                fail_msg("'%s' does not parse", expr);
        cron_spec_free(s);
        if (w.n != 1)
                fail_msg("'%s': %zu warnings, want 1", expr, w.n);
        if (!strstr(w.items[0].message, needle))
                fail_msg("'%s': warning '%s' lacks '%s'", expr, w.items[0].message, needle);
        if (w.items[0].offset != offset)
                fail_msg("'%s': warning at offset %zu, want %zu", expr, w.items[0].offset, offset);
}

static void expect_no_warning(const char *expr) {
        CronSpec *s = NULL;
        CronWarnings w = {};

        assert_int_equal(cron_parse_warn(expr, &s, NULL, &w), 0);
        cron_spec_free(s);
        if (w.n != 0)
                fail_msg("'%s': unexpected warning '%s'", expr, w.items[0].message);
}

/* What parses but may not mean what its writer meant: warnings, as cronie gives. */
static void test_warnings(void **state) {
        expect_warning("*/60 * * * *", 0, "step 60 in '*/60' is larger than the minute range 0-59 it steps through: "
                                          "it means minute 0 only");
        expect_warning("1/60 * * * *", 0, "it means minute 1 only");
        expect_warning("0 */24 * * *", 2, "it means hour 0 only");
        expect_warning("0 0 * * */7", 8, "it means day-of-week SUN only");
        expect_warning("0 0 */25 * *", 4, "'*/25' means days 1 and 26 of each month: the step starts again with each "
                                          "month, it is not every 25 days");
        expect_warning("0,0 * * * *", 2, "'0' in minute repeats a value listed before it");
        expect_warning("0 0 * * 0,7", 10, "'7' in day-of-week repeats a value listed before it (0 and 7 are both "
                                          "Sunday)");
        expect_warning("0 0 * * MON-FRI,3", 16, "repeats a value");
        expect_no_warning("0 3 * * *");
        expect_no_warning("*/30 * * * *");
        expect_no_warning("*/15 9-17 * * MON-FRI");
        expect_no_warning("0 0 1,15 * *");
        expect_no_warning("0 0 */10 * *");
        expect_no_warning("0 0 * * 1/2");
        expect_no_warning("0 0 * * 1-3,2-5"); /* overlapping, but each adds a day */
        expect_no_warning("@daily");
        /* Warnings are not errors: the schedule fires as written. */
        FIRES("*/60 * * * *", NULL, "2026-01-01T00:00:00Z", "2026-01-01T01:00:00+00:00");
}

static void test_nth_and_last(void **state) {
        FIRES("0 3 * * SUN#1", NULL, "2026-11-29T00:00:00Z", "2026-12-06T03:00:00+00:00", "2027-01-03T03:00:00+00:00",
              "2027-02-07T03:00:00+00:00");
        FIRES("0 3 * * FRI#5", NULL, "2026-01-01T00:00:00Z", "2026-01-30T03:00:00+00:00", "2026-05-29T03:00:00+00:00");
        FIRES("0 3 * * 5L", NULL, "2026-01-01T00:00:00Z", "2026-01-30T03:00:00+00:00", "2026-02-27T03:00:00+00:00");
        FIRES("0 3 * * FRIL", NULL, "2026-01-01T00:00:00Z", "2026-01-30T03:00:00+00:00");
        FIRES("0 0 L * *", NULL, "2026-01-01T00:00:00Z", "2026-01-31T00:00:00+00:00", "2026-02-28T00:00:00+00:00",
              "2026-03-31T00:00:00+00:00", "2026-04-30T00:00:00+00:00");
        FIRES("0 0 L 2 *", NULL, "2027-03-01T00:00:00Z", "2028-02-29T00:00:00+00:00", "2029-02-28T00:00:00+00:00");
        FIRES("0 0 15,L * *", NULL, "2026-02-01T00:00:00Z", "2026-02-15T00:00:00+00:00", "2026-02-28T00:00:00+00:00");
}

static void test_leap_day(void **state) {
        FIRES("30 2 29 2 *", NULL, "2026-01-01T00:00:00Z", "2028-02-29T02:30:00+00:00", "2032-02-29T02:30:00+00:00");
        /* 2100 is not a leap year: the next after 2096 is 2104. */
        FIRES("0 0 29 2 *", NULL, "2096-03-01T00:00:00Z", "2104-02-29T00:00:00+00:00");
        /* AND semantics ("*" day-of-month... here "*" + "/" in day-of-week): Feb 29 on a Sunday. */
        FIRES("0 0 29 2 */7", NULL, "2026-01-01T00:00:00Z", "2032-02-29T00:00:00+00:00", "2060-02-29T00:00:00+00:00");
        FIRES("0 0 31 * *", NULL, "2026-02-01T00:00:00Z", "2026-03-31T00:00:00+00:00", "2026-05-31T00:00:00+00:00");
}

static void test_or_rule(void **state) {
        /* Both restricted: days 1-7 OR Sundays (Vixie cron). */
        FIRES("0 2 1-7 * SUN", NULL, "2026-11-28T00:00:00Z", "2026-11-29T02:00:00+00:00", "2026-12-01T02:00:00+00:00");
        /* Day-of-week starting with '*': AND. */
        FIRES("0 2 1-7 * */7", NULL, "2026-11-28T00:00:00Z", "2026-12-06T02:00:00+00:00");
        /* Day-of-month starting with '*': AND. */
        FIRES("0 2 */2 * MON", NULL, "2026-11-28T00:00:00Z", "2026-12-07T02:00:00+00:00");
        CronSpec *s = NULL;
        assert_int_equal(cron_parse("0 2 1-7 * SUN", &s, NULL), 0);
        assert_true(cron_days_either(s));
        cron_spec_free(s);
        assert_int_equal(cron_parse("0 2 * * SUN#1", &s, NULL), 0);
        assert_false(cron_days_either(s));
        cron_spec_free(s);
}

static void test_macros(void **state) {
        FIRES("@yearly", NULL, "2026-05-01T00:00:00Z", "2027-01-01T00:00:00+00:00");
        FIRES("@annually", NULL, "2026-05-01T00:00:00Z", "2027-01-01T00:00:00+00:00");
        FIRES("@monthly", NULL, "2026-05-01T00:00:00Z", "2026-06-01T00:00:00+00:00");
        FIRES("@weekly", NULL, "2026-11-25T00:00:00Z", "2026-11-29T00:00:00+00:00");
        FIRES("@daily", NULL, "2026-11-25T10:00:00Z", "2026-11-26T00:00:00+00:00");
        FIRES("@midnight", NULL, "2026-11-25T10:00:00Z", "2026-11-26T00:00:00+00:00");
        FIRES("@HOURLY", NULL, "2026-11-25T10:30:00Z", "2026-11-25T11:00:00+00:00");
        expect_error("@reboot", 0, "unknown macro");
        expect_error("@daily 5", 7, "after @daily");
}

static void test_dst_new_york(void **state) {
        /* 2027-03-14: 02:00 EST jumps to 03:00 EDT. 02:30 does not exist and
         * fires at 03:00 EDT, the first instant after the gap. */
        FIRES("30 2 * * *", "America/New_York", "2027-03-13T00:00:00Z", "2027-03-13T02:30:00-05:00",
              "2027-03-14T03:00:00-04:00", "2027-03-15T02:30:00-04:00");
        /* Several slots in the gap collapse into one fire. */
        FIRES("*/20 2 * * *", "America/New_York", "2027-03-14T06:00:00Z", "2027-03-14T03:00:00-04:00",
              "2027-03-15T02:00:00-04:00");
        /* 2027-11-07: 02:00 EDT falls back to 01:00 EST. 01:30 happens twice
         * and fires once, at its first occurrence (EDT). */
        FIRES("30 1 * * *", "America/New_York", "2027-11-06T12:00:00Z", "2027-11-07T01:30:00-04:00",
              "2027-11-08T01:30:00-05:00");
        /* Every 15 minutes through the repeated hour: no slot twice. */
        FIRES("*/15 * * * *", "America/New_York", "2027-11-07T05:30:00Z", "2027-11-07T01:45:00-04:00",
              "2027-11-07T02:00:00-05:00", "2027-11-07T02:15:00-05:00");
        /* Starting inside the second pass of the repeated hour. */
        FIRES("*/30 * * * *", "America/New_York", "2027-11-07T06:10:00Z", "2027-11-07T02:00:00-05:00");
}

static void test_dst_berlin(void **state) {
        /* 2027-03-28: 02:00 CET jumps to 03:00 CEST. */
        FIRES("0 2 * * *", "Europe/Berlin", "2027-03-27T12:00:00Z", "2027-03-28T03:00:00+02:00",
              "2027-03-29T02:00:00+02:00");
        FIRES("30 2 * * SUN", "Europe/Berlin", "2027-03-27T12:00:00Z", "2027-03-28T03:00:00+02:00",
              "2027-04-04T02:30:00+02:00");
        /* 2027-10-31: 03:00 CEST falls back to 02:00 CET. */
        FIRES("30 2 * * *", "Europe/Berlin", "2027-10-30T12:00:00Z", "2027-10-31T02:30:00+02:00",
              "2027-11-01T02:30:00+01:00");
        FIRES("0 3 * * SUN#1", "Europe/Berlin", "2026-11-29T00:00:00Z", "2026-12-06T03:00:00+01:00",
              "2027-01-03T03:00:00+01:00");
        /* Far beyond the explicit transitions of the tz file: the rule goes on. */
        FIRES("0 2 * * *", "Europe/Berlin", "2099-03-28T12:00:00Z", "2099-03-29T03:00:00+02:00");
}

static void test_southern_and_odd_zones(void **state) {
        /* Lord Howe moves by 30 minutes: 02:00 -> 02:30 on 2027-10-03. */
        FIRES("15 2 * * *", "Australia/Lord_Howe", "2027-10-02T00:00:00Z", "2027-10-03T02:30:00+11:00",
              "2027-10-04T02:15:00+11:00");
        FIRES("0 12 * * *", "Asia/Kolkata", "2026-01-01T00:00:00Z", "2026-01-01T12:00:00+05:30");
}

static void test_errors(void **state) {
        expect_error("", 0, "expected 5 fields");
        expect_error("* * * *", 0, "expected 5 fields");
        expect_error("* * * * * * *", 0, "more than 6");
        expect_error("61 * * * *", 0, "minute value 61 out of range 0-59");
        expect_error("0 24 * * *", 2, "hour value 24");
        expect_error("0 0 0 * *", 4, "day-of-month value 0");
        expect_error("0 0 * 13 *", 6, "month value 13");
        expect_error("0 0 * * 8", 8, "day-of-week value 8");
        expect_error("0 3 * * SUN#6", 8, "week number 1-5");
        expect_error("0 3 * * SUN#", 8, "week number 1-5");
        expect_error("0 3 * * FOO", 8, "'FOO' is not a day-of-week");
        expect_error("0 3 * FOO *", 6, "'FOO' is not a month");
        expect_error("*/0 * * * *", 2, "step must be at least 1");
        expect_error("*/ * * * *", 2, "expected a step");
        expect_error("5-2 * * * *", 0, "goes backwards");
        expect_error("1,,2 * * * *", 2, "empty element");
        expect_error("1x * * * *", 1, "unexpected 'x'");
        expect_error("0 0 L-1 * *", 4, "is not a day-of-month");
        expect_error("0 0 30 FEB *", 0, "can never fire");
        expect_error("0 0 31 4,6,9,11 *", 0, "can never fire");
        expect_error("0 0 31 2 *", 0, "can never fire");
        expect_error("0 0 30 2 */2", 0, "can never fire");
        FIRES("0 0 * 2 SUN#5", NULL, "2026-01-01T00:00:00Z", "2032-02-29T00:00:00+00:00");
        expect_error("0 0 * * ?", 8, "not a day-of-week");
        expect_error("0 0 3 99999 *", 6, "too large");
}

static void test_min_interval(void **state) {
        CronSpec *s = NULL;
        Tz *berlin = zone("Europe/Berlin");
        int64_t a, b, from = iso("2026-11-29T00:00:00Z"), four_years = 1461 * SEC_PER_DAY;

        /* First Sundays of March and April 2027 are 28 days apart on the wall
         * clock, though only 27d23h in real time. */
        assert_int_equal(cron_parse("0 3 * * SUN#1", &s, NULL), 0);
        assert_int_equal(cron_find_close_fires(s, berlin, from, four_years, 28 * SEC_PER_DAY, &a, &b), 0);
        /* ...but some first Sundays are 35 days apart, none closer than 28. */
        assert_int_equal(cron_find_close_fires(s, berlin, from, four_years, 29 * SEC_PER_DAY, &a, &b), 1);
        assert_true(b - a < 29 * SEC_PER_DAY);
        cron_spec_free(s);

        assert_int_equal(cron_parse("0 3 * * SUN", &s, NULL), 0);
        assert_int_equal(cron_find_close_fires(s, berlin, from, four_years, 28 * SEC_PER_DAY, &a, &b), 1);
        assert_int_equal(a, iso("2026-11-29T03:00:00+01:00"));
        assert_int_equal(b, iso("2026-12-06T03:00:00+01:00"));
        cron_spec_free(s);

        /* Within a day. */
        assert_int_equal(cron_parse("0 3,4 * * *", &s, NULL), 0);
        assert_int_equal(cron_find_close_fires(s, NULL, from, four_years, 2 * 3600, &a, &b), 1);
        assert_int_equal(b - a, 3600);
        assert_int_equal(cron_find_close_fires(s, NULL, from, four_years, 3600, &a, &b), 0);
        cron_spec_free(s);

        /* Around midnight: 23:30 and 00:30 are an hour apart. */
        assert_int_equal(cron_parse("30 0,23 * * *", &s, NULL), 0);
        assert_int_equal(cron_find_close_fires(s, NULL, from, four_years, 2 * 3600, &a, &b), 1);
        assert_int_equal(b - a, 3600);
        cron_spec_free(s);

        /* Feb 29 fires four years apart. */
        assert_int_equal(cron_parse("0 0 29 2 *", &s, NULL), 0);
        assert_int_equal(cron_find_close_fires(s, NULL, from, four_years * 3, 366 * SEC_PER_DAY, &a, &b), 0);
        cron_spec_free(s);
        tz_unref(berlin);
}

/* ---- the oracle ---- */

typedef struct Sets {
        bool sec[60], min[60], hour[24], dom[32], month[13], dow[8]; /* dow[7]: Sunday too */
        bool dom_last, dom_star, dow_star;
        bool nth[7][6], dow_last[7];
        bool six;
} Sets;

typedef struct Rng {
        uint64_t s;
} Rng;

static uint32_t rng_next(Rng *r) {
        r->s = r->s * 6364136223846793005ULL + 1442695040888963407ULL;
        return (uint32_t) (r->s >> 33);
}

static int rng_range(Rng *r, int lo, int hi) {
        return lo + (int) (rng_next(r) % (uint32_t) (hi - lo + 1));
}

/* Appends one random field to BUF and marks its values in SET[lo..hi]. */
static void random_field(Rng *r, char *buf, bool *set, int lo, int hi, bool *star) {
        int kind = rng_range(r, 0, 9);
        char *p = buf + strlen(buf);

        *star = false;
        if (kind <= 2) {
                sprintf(p, "*");
                *star = true;
                for (int v = lo; v <= hi; v++)
                        set[v] = true;
        } else if (kind == 3) {
                int step = rng_range(r, 2, (hi - lo) / 2 + 2);
                sprintf(p, "*/%d", step);
                *star = true;
                for (int v = lo; v <= hi; v += step)
                        set[v] = true;
        } else if (kind <= 5) {
                int n = rng_range(r, 1, 3);
                for (int i = 0; i < n; i++) {
                        int v = rng_range(r, lo, hi);
                        sprintf(p + strlen(p), "%s%d", i ? "," : "", v);
                        set[v] = true;
                }
        } else if (kind <= 7) {
                int a = rng_range(r, lo, hi), b = rng_range(r, a, hi);
                sprintf(p, "%d-%d", a, b);
                for (int v = a; v <= b; v++)
                        set[v] = true;
        } else if (kind == 8) {
                int a = rng_range(r, lo, hi), b = rng_range(r, a, hi), step = rng_range(r, 1, 5);
                sprintf(p, "%d-%d/%d", a, b, step);
                for (int v = a; v <= b; v += step)
                        set[v] = true;
        } else {
                int a = rng_range(r, lo, hi), step = rng_range(r, 1, 7);
                sprintf(p, "%d/%d", a, step);
                for (int v = a; v <= hi; v += step)
                        set[v] = true;
        }
}

static void random_expression(Rng *r, char *buf, Sets *s) {
        bool dummy;

        memset(s, 0, sizeof(*s));
        buf[0] = 0;
        s->six = rng_range(r, 0, 3) == 0;
        if (s->six) {
                random_field(r, buf, s->sec, 0, 59, &dummy);
                strcat(buf, " ");
        } else
                s->sec[0] = true;
        random_field(r, buf, s->min, 0, 59, &dummy);
        strcat(buf, " ");
        random_field(r, buf, s->hour, 0, 23, &dummy);
        strcat(buf, " ");
        if (rng_range(r, 0, 7) == 0) {
                strcat(buf, "L");
                s->dom_last = true;
        } else
                random_field(r, buf, s->dom, 1, 31, &s->dom_star);
        strcat(buf, " ");
        random_field(r, buf, s->month, 1, 12, &dummy);
        strcat(buf, " ");
        int k = rng_range(r, 0, 7);
        if (k == 0) {
                int d = rng_range(r, 0, 6), n = rng_range(r, 1, 5);
                sprintf(buf + strlen(buf), "%d#%d", d, n);
                s->nth[d][n] = true;
        } else if (k == 1) {
                int d = rng_range(r, 0, 6);
                sprintf(buf + strlen(buf), "%dL", d);
                s->dow_last[d] = true;
        } else if (k == 2) {
                /* A range by name that may end in Sunday, in any case. */
                static const char *const names[] = { "sun", "MON", "Tue", "wed", "THU", "fri", "Sat" };
                int a = rng_range(r, 0, 6), b = rng_range(r, a, a == 0 ? 6 : 7); /* "sun-sun" is Sunday alone */
                sprintf(buf + strlen(buf), "%s-%s", names[a], names[b % 7]);
                for (int v = a; v <= b; v++)
                        s->dow[v] = true;
        } else
                random_field(r, buf, s->dow, 0, 7, &s->dow_star);
}

static bool oracle_day_matches(const Sets *s, int64_t days) {
        int64_t y;
        int m, d;

        civil_from_days(days, &y, &m, &d);
        if (!s->month[m])
                return false;
        int nd = days_in_month(y, m), wd = weekday_from_days(days);
        bool dom = s->dom[d] || (s->dom_last && d == nd);
        bool dow = s->dow[wd] || (wd == 0 && s->dow[7]) || s->nth[wd][(d - 1) / 7 + 1] ||
                (s->dow_last[wd] && d + 7 > nd);
        /* A field written "*..." is unrestricted: then both must match. */
        if (s->dom_star || s->dow_star)
                return dom && dow;
        return dom || dow;
}

/* Wall-clock time of instant T in the zone set in $TZ, from the C library. */
static int64_t libc_wall(int64_t t) {
        time_t tt = (time_t) t;
        struct tm tm;
        localtime_r(&tt, &tm);
        return t + tm.tm_gmtoff;
}

/* The first instant whose wall-clock time is at or past W: where refreshd's
 * DST rule says slot W fires. Offsets change only on whole minutes, so within
 * one minute the wall clock runs straight. */
static int64_t libc_fire(int64_t w) {
        /* No instant before W minus the largest nearby offset shows W. */
        int64_t off = libc_wall(w - SEC_PER_DAY) - (w - SEC_PER_DAY);
        if (libc_wall(w) - w > off)
                off = libc_wall(w) - w;
        if (libc_wall(w + SEC_PER_DAY) - (w + SEC_PER_DAY) > off)
                off = libc_wall(w + SEC_PER_DAY) - (w + SEC_PER_DAY);

        for (int64_t t = floor_div(w - off - 3600, 60) * 60;; t += 60) {
                int64_t here = libc_wall(t) - t;
                if (w - here < t + 60)
                        return w - here > t ? w - here : t;
        }
}

/* Brute force: walk the wall-clock days, and within a matching day every
 * time of day, and return the first fire after AFTER. */
static int64_t oracle_next(const Sets *s, int64_t after) {
        int64_t start = libc_wall(after) - 27 * 3600;
        int64_t day = floor_div(start, SEC_PER_DAY);

        for (int64_t n = 0; n < 366 * 60; n++, day++) {
                if (!oracle_day_matches(s, day))
                        continue;
                for (int h = 0; h < 24; h++) {
                        if (!s->hour[h])
                                continue;
                        for (int m = 0; m < 60; m++) {
                                if (!s->min[m])
                                        continue;
                                for (int sec = 0; sec < 60; sec++) {
                                        if (!s->sec[sec])
                                                continue;
                                        int64_t w = day * SEC_PER_DAY + h * 3600 + m * 60 + sec;
                                        if (w <= start)
                                                continue;
                                        int64_t f = libc_fire(w);
                                        if (f > after)
                                                return f;
                                }
                        }
                }
        }
        return -1;
}

static void oracle_run(const char *zone_name, unsigned count, uint64_t seed) {
        Tz *tz = strcmp(zone_name, "UTC") == 0 ? NULL : zone(zone_name);
        Rng r = { seed };
        unsigned compared = 0;

        setenv("TZ", zone_name, 1);
        tzset();
        for (unsigned i = 0; i < count; i++) {
                char expr[256];
                Sets sets;
                CronSpec *s = NULL;
                CronError err;
                int64_t after, got, want;

                random_expression(&r, expr, &sets);
                if (cron_parse(expr, &s, &err) < 0) {
                        assert_true(strstr(err.message, "never fire") != NULL);
                        continue;
                }
                /* Random instants from 1995 to 2035; half of them in the weeks
                 * around the DST changes of either hemisphere. */
                after = iso("1995-01-01T00:00:00Z") + (int64_t) (rng_next(&r) % (40u * 365)) * SEC_PER_DAY +
                        rng_range(&r, 0, 86399);
                if (rng_range(&r, 0, 1)) {
                        static const int months[] = { 3, 4, 9, 10, 11 };
                        CivilTime c;
                        civil_from_seconds(after, &c);
                        c.month = months[rng_range(&r, 0, 4)];
                        c.day = rng_range(&r, 1, 28);
                        c.hour = rng_range(&r, 0, 4);
                        after = seconds_from_civil(&c);
                }
                for (int k = 0; k < 4; k++) {
                        want = oracle_next(&sets, after);
                        if (cron_next(s, tz, after, &got) < 0)
                                got = -1;
                        if (got != want)
                                fail_msg("seed %llu, '%s' in %s after %lld: got %lld, want %lld",
                                         (unsigned long long) seed, expr, zone_name, (long long) after,
                                         (long long) got, (long long) want);
                        compared++;
                        if (want < 0)
                                break;
                        after = want;
                }
                cron_spec_free(s);
        }
        print_message("oracle %s: %u answers compared, seed %llu\n", zone_name, compared, (unsigned long long) seed);
        unsetenv("TZ");
        tzset();
        tz_unref(tz);
}

static uint64_t test_seed(void) {
        const char *s = getenv("REFRESHD_TEST_SEED");
        return s ? strtoull(s, NULL, 0) : (uint64_t) time(NULL);
}

/* cron_find_close_fires() across days against a walk over every fire with
 * cron_next_wall(): random day and month fields, one or two fires a day, and
 * a min_interval that only pairs of fires on different days can break. */
static void test_oracle_close_fires(void **state) {
        uint64_t seed = test_seed() + 4;
        Rng r = { seed };
        Tz *berlin = zone("Europe/Berlin");
        unsigned compared = 0, found = 0;

        for (unsigned i = 0; i < 3000; i++) {
                char rand_expr[256], expr[320], hours[8], *f[6];
                Sets sets;
                CronSpec *s = NULL;
                const Tz *tz = rng_range(&r, 0, 1) ? berlin : NULL;
                int n = 0, h1 = rng_range(&r, 0, 23), h2 = rng_range(&r, 0, 1) ? rng_range(&r, h1, 23) : h1;
                int64_t a = 0, b = 0, from, from_wall, until, horizon = 1461 * SEC_PER_DAY, min_gap, w, next;
                int got, want = 0;

                random_expression(&r, rand_expr, &sets);
                for (char *t = strtok(rand_expr, " "); t && n < 6; t = strtok(NULL, " "))
                        f[n++] = t;
                if (h2 != h1)
                        snprintf(hours, sizeof(hours), "%d,%d", h1, h2);
                else
                        snprintf(hours, sizeof(hours), "%d", h1);
                snprintf(expr, sizeof(expr), "%d %d %s %s %s %s", rng_range(&r, 0, 59), rng_range(&r, 0, 59),
                         hours, f[n - 3], f[n - 2], f[n - 1]);
                if (cron_parse(expr, &s, NULL) < 0)
                        continue;
                /* Within a day the fires are (h2 - h1) hours apart; across days at least 24 - (h2 - h1). */
                int64_t lo = SEC_PER_DAY - (h2 - h1) * 3600 + 1;
                int64_t hi = h2 != h1 ? (h2 - h1) * 3600 : 366 * SEC_PER_DAY;
                if (lo > hi) {
                        cron_spec_free(s);
                        continue;
                }
                min_gap = lo + (int64_t) (rng_next(&r) % (uint32_t) (hi - lo + 1));
                /* Half of them whole days, as people write them. */
                if (rng_range(&r, 0, 1) && (min_gap / SEC_PER_DAY + 1) * SEC_PER_DAY < hi)
                        min_gap = (min_gap / SEC_PER_DAY + 1) * SEC_PER_DAY;
                from = iso("2000-01-01T00:00:00Z") + (int64_t) (rng_next(&r) % (30u * 365)) * SEC_PER_DAY +
                        rng_range(&r, 0, 86399);

                from_wall = from + tz_offset(tz, from, NULL);
                until = from_wall + horizon;
                if (cron_next_wall(s, from_wall, &w) == 0 && w <= until)
                        for (;;) {
                                if (cron_next_wall(s, w, &next) < 0 || next > until)
                                        break;
                                if (next - w < min_gap) {
                                        want = 1;
                                        break;
                                }
                                w = next;
                        }
                got = cron_find_close_fires(s, tz, from, horizon, min_gap, &a, &b);
                int64_t want_a = want ? tz_wall_to_instant(tz, w) : 0;
                int64_t want_b = want ? tz_wall_to_instant(tz, next) : 0;
                if (got != want || (want && (a != want_a || b != want_b)))
                        fail_msg("seed %llu, '%s' from %lld, min_gap %lld: got %d (%lld, %lld), "
                                 "want %d (%lld, %lld)",
                                 (unsigned long long) seed, expr, (long long) from, (long long) min_gap, got,
                                 (long long) a, (long long) b, want, (long long) want_a, (long long) want_b);
                compared++;
                found += want;
                cron_spec_free(s);
        }
        print_message("close fires: %u answers compared (%u found), seed %llu\n", compared, found,
                      (unsigned long long) seed);
        tz_unref(berlin);
}

static void test_oracle_utc(void **state) {
        oracle_run("UTC", 400, test_seed());
}

static void test_oracle_new_york(void **state) {
        oracle_run("America/New_York", 250, test_seed() + 1);
}

static void test_oracle_berlin(void **state) {
        oracle_run("Europe/Berlin", 250, test_seed() + 2);
}

static void test_oracle_lord_howe(void **state) {
        oracle_run("Australia/Lord_Howe", 150, test_seed() + 3);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_basic_fields),
                cmocka_unit_test(test_seconds_field),
                cmocka_unit_test(test_day_of_week),
                cmocka_unit_test(test_day_of_week_peer_forms),
                cmocka_unit_test(test_warnings),
                cmocka_unit_test(test_nth_and_last),
                cmocka_unit_test(test_leap_day),
                cmocka_unit_test(test_or_rule),
                cmocka_unit_test(test_macros),
                cmocka_unit_test(test_dst_new_york),
                cmocka_unit_test(test_dst_berlin),
                cmocka_unit_test(test_southern_and_odd_zones),
                cmocka_unit_test(test_errors),
                cmocka_unit_test(test_min_interval),
                cmocka_unit_test(test_oracle_close_fires),
                cmocka_unit_test(test_oracle_utc),
                cmocka_unit_test(test_oracle_new_york),
                cmocka_unit_test(test_oracle_berlin),
                cmocka_unit_test(test_oracle_lord_howe),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
