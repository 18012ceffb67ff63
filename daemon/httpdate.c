/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "civil.h"
#include "httpdate.h"
#include "macro.h"

#define YEAR_MIN_SECONDS INT64_C(-62167219200) /* 0000-01-01T00:00:00Z */
#define YEAR_MAX_SECONDS INT64_C(253402300799) /* 9999-12-31T23:59:59Z */

typedef struct Cursor {
        const char *p, *end;
} Cursor;

static char ascii_tolower(char c) {
        return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

static bool cursor_char(Cursor *c, char ch) {
        if (c->p >= c->end || *c->p != ch)
                return false;
        c->p++;
        return true;
}

static bool cursor_spaces(Cursor *c) {
        const char *start = c->p;

        while (c->p < c->end && *c->p == ' ')
                c->p++;
        return c->p > start;
}

static bool cursor_digits(Cursor *c, size_t min, size_t max, int *ret) {
        size_t n = 0;
        int v = 0;

        while (n < max && c->p + n < c->end && c->p[n] >= '0' && c->p[n] <= '9') {
                v = v * 10 + (c->p[n] - '0');
                n++;
        }
        if (n < min)
                return false;
        c->p += n;
        *ret = v;
        return true;
}

/* Matches a run of letters against WORDS, case-insensitively; its index in *ret. */
static bool cursor_word(Cursor *c, const char *const *words, size_t n_words, int *ret) {
        size_t n = 0;

        while (c->p + n < c->end && ascii_tolower(c->p[n]) >= 'a' && ascii_tolower(c->p[n]) <= 'z')
                n++;
        for (size_t i = 0; i < n_words; i++)
                if (strlen(words[i]) == n) {
                        size_t j = 0;
                        while (j < n && ascii_tolower(c->p[j]) == ascii_tolower(words[i][j]))
                                j++;
                        if (j == n) {
                                c->p += n;
                                *ret = (int) i;
                                return true;
                        }
                }
        return false;
}

static bool cursor_time_of_day(Cursor *c, int *h, int *m, int *s) {
        return cursor_digits(c, 2, 2, h) && cursor_char(c, ':') && cursor_digits(c, 2, 2, m) &&
               cursor_char(c, ':') && cursor_digits(c, 2, 2, s) && *h <= 23 && *m <= 59 && *s <= 60;
}

static bool cursor_gmt(Cursor *c) {
        static const char *const zones[] = { "GMT", "UTC" };
        int i;

        return cursor_word(c, zones, ELEMENTSOF(zones), &i);
}

static const char *const months[] = {
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
};

/* RFC 850's "06-Nov-94": a two-digit year more than 50 years ahead is in
 * the past century. */
static bool cursor_rfc850_date(Cursor *c, int64_t now, int *day, int *month, int *year) {
        const char *y;

        if (!cursor_digits(c, 1, 2, day) || !cursor_char(c, '-') ||
            !cursor_word(c, months, ELEMENTSOF(months), month) || !cursor_char(c, '-'))
                return false;
        y = c->p;
        if (!cursor_digits(c, 2, 4, year) || (c->p - y != 2 && c->p - y != 4))
                return false;
        if (c->p - y == 2) {
                CivilTime now_c;
                civil_from_seconds(
                        now < YEAR_MIN_SECONDS   ? YEAR_MIN_SECONDS
                        : now > YEAR_MAX_SECONDS ? YEAR_MAX_SECONDS
                                                 : now,
                        &now_c);
                int64_t y4 = floor_div(now_c.year, 100) * 100 + *year;
                if (y4 > now_c.year + 50)
                        y4 -= 100;
                if (y4 < 0 || y4 > 9999)
                        return false;
                *year = (int) y4;
        }
        return true;
}

int httpdate_parse(const char *s, size_t n, int64_t now, int64_t *ret) {
        static const char *const days[] = {
                "Sun",    "Mon",    "Tue",     "Wed",       "Thu",      "Fri",    "Sat",
                "Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday",
        };
        Cursor c = { s, s + n };
        int wday, year, month, day, h, m, sec;

        if (!cursor_word(&c, days, ELEMENTSOF(days), &wday))
                return -EINVAL;
        if (cursor_char(&c, ',')) {
                /* IMF-fixdate or RFC 850 */
                if (!cursor_spaces(&c))
                        return -EINVAL;
                Cursor probe = c;
                if (cursor_digits(&probe, 1, 2, &day) && cursor_char(&probe, '-')) {
                        if (!cursor_rfc850_date(&c, now, &day, &month, &year))
                                return -EINVAL;
                } else if (
                        !cursor_digits(&c, 1, 2, &day) || !cursor_spaces(&c) ||
                        !cursor_word(&c, months, ELEMENTSOF(months), &month) || !cursor_spaces(&c) ||
                        !cursor_digits(&c, 4, 4, &year))
                        return -EINVAL;
                if (!cursor_spaces(&c) || !cursor_time_of_day(&c, &h, &m, &sec) || !cursor_spaces(&c) ||
                    !cursor_gmt(&c))
                        return -EINVAL;
        } else if (
                !cursor_spaces(&c) || !cursor_word(&c, months, ELEMENTSOF(months), &month) ||
                !cursor_spaces(&c) || !cursor_digits(&c, 1, 2, &day) || !cursor_spaces(&c) ||
                !cursor_time_of_day(&c, &h, &m, &sec) || !cursor_spaces(&c) ||
                !cursor_digits(&c, 4, 4, &year))
                return -EINVAL; /* asctime */
        if (c.p != c.end)
                return -EINVAL;

        month++;
        if (day < 1 || day > days_in_month(year, month))
                return -EINVAL;
        if (sec == 60)
                sec = 59;
        *ret = days_from_civil(year, month, day) * SEC_PER_DAY + h * 3600 + m * 60 + sec;
        return 0;
}
