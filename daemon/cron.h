/* SPDX-License-Identifier: MIT */
/*
 * The schedule engine: cron expressions parsed once into bit sets, and the
 * next fire time computed field by field (never minute by minute). Pure: no
 * clock reads, no I/O, no logging.
 *
 * Grammar: 5 fields "minute hour day-of-month month day-of-week", or 6 with a
 * leading "second"; "*", numbers, "a-b", "*" "/n", "a-b/n", "a/n", lists; JAN-DEC
 * and SUN-SAT; day-of-week 0-7 (0 and 7 are Sunday: "a/n" runs to 7, and a
 * range ending in Sunday, "FRI-SUN" or "5-0", is "5-7"); day-of-month "L";
 * day-of-week "D#N" and "DL"; @yearly @annually @monthly @weekly @daily
 * @midnight @hourly. When both day fields are restricted a day matches if
 * either matches (Vixie cron); a field that begins with "*" is unrestricted.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tz.h"

typedef struct CronSpec CronSpec;

/* Where in the expression a parse error is, and what it is. */
typedef struct CronError {
        size_t offset; /* byte offset of the offending field or element */
        size_t length;
        char message[160];
} CronError;

/* Parses EXPR. On failure returns -EINVAL and fills *reterr (when not NULL);
 * an expression that can never fire ("0 0 30 FEB *") is such a failure. */
int cron_parse(const char *expr, CronSpec **ret, CronError *reterr);

/* What an expression means that its writer may not have meant, at most
 * CRON_WARNINGS_MAX of them: a step larger than the range it steps through
 * ("*" "/60" in minutes), a day-of-month step that cannot repeat within a
 * month ("*" "/25"), a value listed twice ("0,0"; "0,7" in day-of-week). */
#define CRON_WARNINGS_MAX 4
typedef struct CronWarnings {
        CronError items[CRON_WARNINGS_MAX];
        size_t n;
} CronWarnings;

/* cron_parse(), and the warnings in *RETWARN (may be NULL; its n set to 0 first by the caller). */
int cron_parse_warn(const char *expr, CronSpec **ret, CronError *reterr, CronWarnings *retwarn);

CronSpec *cron_spec_free(CronSpec *s);

/* The first fire instant strictly after AFTER, with the expression evaluated
 * in zone TZ (NULL: UTC). Each local wall-clock slot fires at most once: a
 * slot inside a spring-forward gap fires at the end of the gap (several such
 * slots collapse into one fire), a slot inside a fall-back overlap at its
 * first occurrence. -ERANGE past the year 9999. */
int cron_next(const CronSpec *s, const Tz *tz, int64_t after, int64_t *ret);

/* The first matching wall-clock time strictly after AFTER_WALL (seconds
 * counted as if the zone were UTC). */
int cron_next_wall(const CronSpec *s, int64_t after_wall, int64_t *ret_wall);

/* True when both day-of-month and day-of-week are restricted, so that a day
 * matches if either matches: "0 2 1-7 * SUN" runs on days 1-7 and on every
 * Sunday. */
bool cron_days_either(const CronSpec *s);

/* Looks for two consecutive fires, in FROM..FROM+HORIZON seconds, that are
 * less than MIN_GAP seconds apart, measured in local wall-clock time. Returns
 * 1 with the two fire instants, 0 when there are none. */
int cron_find_close_fires(
        const CronSpec *s,
        const Tz *tz,
        int64_t from,
        int64_t horizon,
        int64_t min_gap,
        int64_t *ret_first,
        int64_t *ret_second);
