/* SPDX-License-Identifier: MIT */
/*
 * Proleptic Gregorian calendar arithmetic on day numbers (days since
 * 1970-01-01), after Howard Hinnant's "chrono-Compatible Low-Level Date
 * Algorithms". Pure and branch-light: the schedule engine calls these in its
 * hot path.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#define SEC_PER_DAY INT64_C(86400)

static inline int64_t floor_div(int64_t a, int64_t b) {
        int64_t q = a / b;
        return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

static inline int64_t floor_mod(int64_t a, int64_t b) {
        return a - floor_div(a, b) * b;
}

static inline bool is_leap_year(int64_t y) {
        return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static inline int days_in_month(int64_t y, int m) {
        static const int8_t dim[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
        return m == 2 && is_leap_year(y) ? 29 : dim[m - 1];
}

/* Day number of y-m-d (m 1..12, d 1..31). */
static inline int64_t days_from_civil(int64_t y, int m, int d) {
        y -= m <= 2;
        int64_t era = floor_div(y, 400);
        int64_t yoe = y - era * 400;
        int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
        int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        return era * 146097 + doe - 719468;
}

static inline void civil_from_days(int64_t z, int64_t *ret_y, int *ret_m, int *ret_d) {
        z += 719468;
        int64_t era = floor_div(z, 146097);
        int64_t doe = z - era * 146097;
        int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
        int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        int64_t mp = (5 * doy + 2) / 153;
        int d = (int) (doy - (153 * mp + 2) / 5 + 1);
        int m = (int) (mp < 10 ? mp + 3 : mp - 9);
        *ret_y = yoe + era * 400 + (m <= 2);
        *ret_m = m;
        *ret_d = d;
}

/* 0 = Sunday ... 6 = Saturday; day 0 (1970-01-01) was a Thursday. */
static inline int weekday_from_days(int64_t z) {
        return (int) floor_mod(z + 4, 7);
}

/* Broken-down wall-clock time, from seconds counted as if the zone were UTC. */
typedef struct CivilTime {
        int64_t year;
        int month, day, hour, minute, second;
} CivilTime;

static inline void civil_from_seconds(int64_t s, CivilTime *ret) {
        int64_t days = floor_div(s, SEC_PER_DAY);
        int64_t sod = s - days * SEC_PER_DAY;
        civil_from_days(days, &ret->year, &ret->month, &ret->day);
        ret->hour = (int) (sod / 3600);
        ret->minute = (int) (sod / 60 % 60);
        ret->second = (int) (sod % 60);
}

static inline int64_t seconds_from_civil(const CivilTime *c) {
        return days_from_civil(c->year, c->month, c->day) * SEC_PER_DAY + c->hour * 3600 + c->minute * 60 +
               c->second;
}
