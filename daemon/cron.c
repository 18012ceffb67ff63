/* SPDX-License-Identifier: MIT */
/*
 * Cron expressions as bit sets. The day fields make one 31-bit mask of
 * matching days for a month, given the weekday of its 1st and its length:
 * a rotation of the weekday bits and a few masks, whatever mix of L, # and
 * ranges the expression uses, so finding the next matching day is that and
 * a count of trailing zeros. cron_next_wall() then walks month -> day ->
 * hour -> minute -> second, jumping straight to the next set bit of each.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "civil.h"
#include "cron.h"
#include "macro.h"

/* A valid expression fires within one Gregorian cycle of any instant. */
#define CRON_SEARCH_YEARS 400
#define CRON_MAX_YEAR 9999

/* 48 bytes: a config holds one per environment. The day masks of the 28
 * kinds of month (weekday of the 1st, length) are computed when needed
 * rather than kept: a table of them took 112 bytes more. */
struct CronSpec {
        uint64_t seconds; /* bits 0..59 */
        uint64_t minutes; /* bits 0..59 */
        uint32_t hours;   /* bits 0..23 */
        uint32_t dom;     /* day-of-month, bits 1..31 */
        /* First and last fire of a day, in seconds after midnight. */
        int32_t first_tod, last_tod;
        uint16_t months;  /* bits 1..12 */
        uint8_t dow;      /* day-of-week, bits 0..6 (0 = Sunday) */
        uint8_t special;  /* the weekdays with a D#N or a DL */
        uint8_t last_dow; /* DL: bit D */
        uint8_t nth[7];   /* D#N: bit N for weekday D */
        bool dom_last;    /* day-of-month L */
        bool days_either; /* both day fields restricted: OR them */
};
_Static_assert(sizeof(CronSpec) == 48, "a CronSpec is 48 bytes");

enum {
        FIELD_SECOND,
        FIELD_MINUTE,
        FIELD_HOUR,
        FIELD_DOM,
        FIELD_MONTH,
        FIELD_DOW,
        _FIELD_MAX,
};

typedef struct FieldInfo {
        const char *name;
        int min, max;
        const char *const *names; /* names[i] is value min + i */
} FieldInfo;

static const char *const month_names[] = { "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL",
                                           "AUG", "SEP", "OCT", "NOV", "DEC", NULL };
static const char *const day_names[] = { "SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", NULL };

static const FieldInfo fields[_FIELD_MAX] = {
        [FIELD_SECOND] = { "second", 0, 59, NULL },      [FIELD_MINUTE] = { "minute", 0, 59, NULL },
        [FIELD_HOUR] = { "hour", 0, 23, NULL },          [FIELD_DOM] = { "day-of-month", 1, 31, NULL },
        [FIELD_MONTH] = { "month", 1, 12, month_names }, [FIELD_DOW] = { "day-of-week", 0, 7, day_names },
};

static const struct {
        const char *name;
        const char *expr;
} macros[] = {
        { "@yearly", "0 0 1 1 *" }, { "@annually", "0 0 1 1 *" }, { "@monthly", "0 0 1 * *" },
        { "@weekly", "0 0 * * 0" }, { "@daily", "0 0 * * *" },    { "@midnight", "0 0 * * *" },
        { "@hourly", "0 * * * *" },
};

/* What one field parsed to. */
typedef struct FieldSet {
        uint64_t bits;
        bool star;        /* the field begins with '*' */
        bool last;        /* day-of-month L */
        uint8_t nth[7];   /* day-of-week D#N: bit N for weekday D */
        uint8_t last_dow; /* day-of-week DL: bit D */
} FieldSet;

typedef struct Parser {
        const char *expr;
        CronError *err;
        CronWarnings *warnings; /* may be NULL */
        size_t shift;           /* offset of the text parsed within what the user wrote (macros) */
} Parser;

_printf_(4, 5) static int parse_error(Parser *p, const char *at, size_t len, const char *fmt, ...) {
        va_list ap;

        if (!p->err)
                return -EINVAL;
        p->err->offset = p->shift == SIZE_MAX ? 0 : (size_t) (at - p->expr) + p->shift;
        p->err->length = len;
        va_start(ap, fmt);
        vsnprintf(p->err->message, sizeof(p->err->message), fmt, ap);
        va_end(ap);
        return -EINVAL;
}

_printf_(4, 5) static void parse_warning(Parser *p, const char *at, size_t len, const char *fmt, ...) {
        CronWarnings *w = p->warnings;
        va_list ap;

        if (!w || w->n >= CRON_WARNINGS_MAX)
                return;
        w->items[w->n].offset = p->shift == SIZE_MAX ? 0 : (size_t) (at - p->expr) + p->shift;
        w->items[w->n].length = len;
        va_start(ap, fmt);
        vsnprintf(w->items[w->n].message, sizeof(w->items[w->n].message), fmt, ap);
        va_end(ap);
        w->n++;
}

static int first_bit(uint64_t v) {
        return __builtin_ctzll(v);
}

static int last_bit(uint64_t v) {
        return 63 - __builtin_clzll(v);
}

/* A number or a name of field F at *s; advances *s. */
static int parse_value(Parser *p, const FieldInfo *f, const char **s, const char *end, int *ret) {
        const char *start = *s;

        if (*s < end && **s >= '0' && **s <= '9') {
                int v = 0;
                for (; *s < end && **s >= '0' && **s <= '9'; (*s)++) {
                        v = v * 10 + (**s - '0');
                        if (v > 9999)
                                return parse_error(
                                        p, start, *s - start + 1, "number too large in %s", f->name);
                }
                if (v < f->min || v > f->max)
                        return parse_error(
                                p,
                                start,
                                *s - start,
                                "%s value %d out of range %d-%d",
                                f->name,
                                v,
                                f->min,
                                f->max);
                *ret = v;
                return 0;
        }
        if (f->names && end - *s >= 3) {
                for (int i = 0; f->names[i]; i++)
                        if (strncasecmp(*s, f->names[i], 3) == 0 &&
                            (end - *s == 3 || !isalpha((unsigned char) (*s)[3]) || (*s)[3] == 'L' ||
                             (*s)[3] == 'l')) {
                                *s += 3;
                                *ret = f->min + i;
                                return 0;
                        }
        }
        const char *e = start;
        while (e < end && !strchr(",-/#", *e))
                e++;
        if (e == start)
                return parse_error(p, start, 1, "expected a %s value", f->name);
        if (f->names)
                return parse_error(
                        p,
                        start,
                        e - start,
                        "'%.*s' is not a %s (use %d-%d or %s-%s)",
                        (int) (e - start),
                        start,
                        f->name,
                        f->min,
                        f->max,
                        f->names[0],
                        f == &fields[FIELD_DOW] ? "SAT" : "DEC");
        return parse_error(
                p,
                start,
                e - start,
                "'%.*s' is not a %s (use %d-%d)",
                (int) (e - start),
                start,
                f->name,
                f->min,
                f->max);
}

static int parse_step(Parser *p, const FieldInfo *f, const char **s, const char *end, int *ret) {
        const char *start = *s;
        int v = 0;

        if (*s >= end || **s < '0' || **s > '9')
                return parse_error(p, start, 1, "expected a step number after '/' in %s", f->name);
        for (; *s < end && **s >= '0' && **s <= '9'; (*s)++) {
                v = v * 10 + (**s - '0');
                if (v > 9999)
                        return parse_error(p, start, *s - start + 1, "step too large in %s", f->name);
        }
        if (v == 0)
                return parse_error(p, start, *s - start, "step must be at least 1 in %s", f->name);
        *ret = v;
        return 0;
}

/* The values of BITS of FIELD, "0 and 45" or "0", for a warning. */
static const char *field_values(int field, uint64_t bits, char buf[static 32]) {
        int a = first_bit(bits), b = last_bit(bits);

        if (field == FIELD_DOW)
                snprintf(buf, 32, a == b ? "%s" : "%s and %s", day_names[a], day_names[b]);
        else
                snprintf(buf, 32, a == b ? "%d" : "%d and %d", a, b);
        return buf;
}

/* Warnings for what an element means that its writer may not have meant:
 * a step too large to repeat in its range ("*" "/60": minute 0 alone), a
 * day-of-month step that cannot repeat in a month ("*" "/25": days 1 and
 * 26, the count starting again each month), and values listed already
 * ("0,0"; "0,7": both Sunday). BITS are the element's values, BEFORE those
 * of the elements before it. */
static void warn_element(
        Parser *p,
        int field,
        const char *start,
        const char *end,
        int lo,
        int hi,
        int step,
        uint64_t bits,
        uint64_t before) {
        const FieldInfo *f = &fields[field];
        int len = (int) (end - start);
        char values[32];

        if (step > 1 && step > hi - lo)
                parse_warning(
                        p,
                        start,
                        (size_t) len,
                        "step %d in '%.*s' is larger than the %s range %d-%d it steps through: it means %s "
                        "%s only",
                        step,
                        len,
                        start,
                        f->name,
                        lo,
                        hi,
                        f->name,
                        field_values(field, bits, values));
        else if (field == FIELD_DOM && step > 15)
                parse_warning(
                        p,
                        start,
                        (size_t) len,
                        "'%.*s' means days %s of each month: the step starts again with each month, it is "
                        "not "
                        "every %d days",
                        len,
                        start,
                        field_values(field, bits, values),
                        step);
        else if ((bits & ~before) == 0)
                parse_warning(
                        p,
                        start,
                        (size_t) len,
                        "'%.*s' in %s repeats a value listed before it%s",
                        len,
                        start,
                        f->name,
                        field == FIELD_DOW && (bits & 1) ? " (0 and 7 are both Sunday)" : "");
}

/* One list element: "*", "*" "/n", "a", "a-b", "a-b/n", "a/n", "L", "D#N", "DL". */
static int parse_element(Parser *p, int field, const char *s, const char *end, FieldSet *set) {
        const FieldInfo *f = &fields[field];
        const char *start = s;
        int lo, hi, step = 1, r;

        if (s == end)
                return parse_error(p, s, 1, "empty element in %s list", f->name);

        if (field == FIELD_DOM && end - s == 1 && (*s == 'L' || *s == 'l')) {
                set->last = true;
                return 0;
        }

        if (*s == '*') {
                lo = f->min;
                hi = field == FIELD_DOW ? 6 : f->max;
                s++;
        } else {
                r = parse_value(p, f, &s, end, &lo);
                if (r < 0)
                        return r;

                if (field == FIELD_DOW && s < end && (*s == '#' || *s == 'L' || *s == 'l')) {
                        int d = lo % 7;
                        if (*s == '#') {
                                const char *n = ++s;
                                if (end - n != 1 || *n < '1' || *n > '5')
                                        return parse_error(
                                                p,
                                                start,
                                                end - start,
                                                "'%.*s': '#' takes a week number 1-5 (SUN#1 is the "
                                                "first Sunday of the month)",
                                                (int) (end - start),
                                                start);
                                set->nth[d] |= 1u << (*n - '0');
                        } else {
                                if (end - s != 1)
                                        return parse_error(
                                                p,
                                                start,
                                                end - start,
                                                "'%.*s' is not a %s",
                                                (int) (end - start),
                                                start,
                                                f->name);
                                set->last_dow |= 1u << d;
                        }
                        return 0;
                }

                hi = lo;
                if (s < end && *s == '-') {
                        const char *h = ++s;
                        r = parse_value(p, f, &s, end, &hi);
                        if (r < 0)
                                return r;
                        /* "FRI-SUN", "5-0": to Sunday, the end of the week (as cronie reads it). */
                        if (field == FIELD_DOW && hi == 0 && lo > 0)
                                hi = 7;
                        if (hi < lo)
                                return parse_error(
                                        p,
                                        start,
                                        s - start,
                                        "range '%.*s' in %s goes backwards (write %.*s-%d,%d-%.*s "
                                        "for a wrap-around)",
                                        (int) (s - start),
                                        start,
                                        f->name,
                                        (int) (h - 1 - start),
                                        start,
                                        f->max,
                                        f->min,
                                        (int) (s - h),
                                        h);
                } else if (s < end && *s == '/')
                        /* "a/n": from a to the end of the field (7, Sunday, for days of the week) */
                        hi = f->max;
        }

        if (s < end && *s == '/') {
                s++;
                r = parse_step(p, f, &s, end, &step);
                if (r < 0)
                        return r;
        }
        if (s != end)
                return parse_error(p, s, end - s, "unexpected '%.*s' in %s", (int) (end - s), s, f->name);

        uint64_t bits = 0;
        for (int v = lo; v <= hi; v += step)
                bits |= UINT64_C(1) << (field == FIELD_DOW ? v % 7 : v);
        warn_element(p, field, start, end, lo, hi, step, bits, set->bits);
        set->bits |= bits;
        return 0;
}

static int parse_field(Parser *p, int field, const char *s, const char *end, FieldSet *ret) {
        FieldSet set = { .star = *s == '*' };
        int r;

        for (;;) {
                const char *comma = memchr(s, ',', end - s);
                const char *e = comma ? comma : end;

                r = parse_element(p, field, s, e, &set);
                if (r < 0)
                        return r;
                if (!comma)
                        break;
                s = comma + 1;
        }
        *ret = set;
        return 0;
}

/* Days 1..NDAYS (bits 1..31) of a month whose 1st is weekday W1 that match
 * the day fields. Called for each month cron_next_wall() looks at, so the
 * plain weekdays are one rotation of their bits repeated every 7 days, and
 * only the weekdays that carry a D#N or DL are looked at one by one. */
static uint32_t day_mask(const CronSpec *s, int w1, int ndays) {
        uint32_t valid = (uint32_t) ((UINT64_C(1) << (ndays + 1)) - 2);
        uint32_t dm = s->dom & valid, wm;
        uint64_t week = s->dow, rot;

        if (s->dom_last)
                dm |= 1u << ndays;

        /* Bit j of ROT: day j + 1 of the month is one of the weekdays. */
        rot = ((week >> w1) | (week << (7 - w1))) & 0x7f;
        wm = (uint32_t) ((rot << 1 | rot << 8 | rot << 15 | rot << 22 | rot << 29) & valid);

        for (unsigned special = s->special; special; special &= special - 1) {
                int d = first_bit(special);
                int first = 1 + (d - w1 + 7) % 7; /* the first such weekday of the month */

                for (unsigned nth = s->nth[d]; nth; nth &= nth - 1) {
                        int day = first + 7 * (first_bit(nth) - 1);
                        if (day <= ndays)
                                wm |= 1u << day;
                }
                if (s->last_dow & (1u << d))
                        wm |= 1u << (first + 7 * ((ndays - first) / 7));
        }
        return s->days_either ? (dm | wm) : (dm & wm);
}

static int build(Parser *p, const FieldSet *f, bool has_seconds, CronSpec **ret) {
        _cleanup_free_ CronSpec *s = NULL;
        bool possible = false;

        s = calloc(1, sizeof(CronSpec));
        if (!s)
                return -ENOMEM;
        s->seconds = has_seconds ? f[FIELD_SECOND].bits : 1;
        s->minutes = f[FIELD_MINUTE].bits;
        s->hours = (uint32_t) f[FIELD_HOUR].bits;
        s->months = (uint16_t) f[FIELD_MONTH].bits;
        s->days_either = !f[FIELD_DOM].star && !f[FIELD_DOW].star;
        s->dom = (uint32_t) f[FIELD_DOM].bits;
        s->dom_last = f[FIELD_DOM].last;
        s->dow = (uint8_t) (f[FIELD_DOW].bits & 0x7f);
        s->last_dow = f[FIELD_DOW].last_dow;
        s->special = f[FIELD_DOW].last_dow;
        for (int d = 0; d < 7; d++) {
                s->nth[d] = f[FIELD_DOW].nth[d];
                if (s->nth[d])
                        s->special |= 1u << d;
        }

        /* Every weekday starts a month of each possible length somewhere in
         * the 400-year cycle, so this decides exactly whether it ever fires. */
        for (int m = 1; m <= 12 && !possible; m++) {
                if (!(s->months & (1u << m)))
                        continue;
                int lo = m == 2 ? 28 : days_in_month(1970, m), hi = m == 2 ? 29 : lo;
                for (int w1 = 0; w1 < 7; w1++)
                        for (int nd = lo; nd <= hi; nd++)
                                possible = possible || day_mask(s, w1, nd) != 0;
        }
        if (!possible)
                return parse_error(
                        p,
                        p->expr,
                        strlen(p->expr),
                        "schedule can never fire: no month it names has such a day");

        s->first_tod = first_bit(s->hours) * 3600 + first_bit(s->minutes) * 60 + first_bit(s->seconds);
        s->last_tod = last_bit(s->hours) * 3600 + last_bit(s->minutes) * 60 + last_bit(s->seconds);
        *ret = TAKE_PTR(s);
        return 0;
}

static bool is_space(char c) {
        return c == ' ' || c == '\t';
}

int cron_parse(const char *expr, CronSpec **ret, CronError *reterr) {
        return cron_parse_warn(expr, ret, reterr, NULL);
}

int cron_parse_warn(const char *expr, CronSpec **ret, CronError *reterr, CronWarnings *retwarn) {
        static const int order5[] = { FIELD_MINUTE, FIELD_HOUR, FIELD_DOM, FIELD_MONTH, FIELD_DOW };
        static const int order6[] = { FIELD_SECOND, FIELD_MINUTE, FIELD_HOUR,
                                      FIELD_DOM,    FIELD_MONTH,  FIELD_DOW };
        Parser p = { .expr = expr, .err = reterr, .warnings = retwarn };
        const char *start[7], *end[7];
        FieldSet set[_FIELD_MAX] = {};
        size_t n = 0;
        int r;

        const char *s = expr;
        while (is_space(*s))
                s++;
        if (*s == '@') {
                const char *e = s;
                while (*e && !is_space(*e))
                        e++;
                for (size_t i = 0; i < ELEMENTSOF(macros); i++)
                        if (strlen(macros[i].name) == (size_t) (e - s) &&
                            strncasecmp(s, macros[i].name, e - s) == 0) {
                                const char *rest = e;
                                while (is_space(*rest))
                                        rest++;
                                if (*rest)
                                        return parse_error(
                                                &p,
                                                rest,
                                                strlen(rest),
                                                "unexpected text after %s",
                                                macros[i].name);
                                p.expr = s = macros[i].expr;
                                p.shift = SIZE_MAX; /* errors point at the macro itself */
                                break;
                        }
                if (*s == '@')
                        return parse_error(
                                &p,
                                s,
                                e - s,
                                "unknown macro '%.*s' (use @yearly, @annually, @monthly, @weekly, "
                                "@daily, @midnight or @hourly)",
                                (int) (e - s),
                                s);
        }

        while (*s) {
                if (n == 7)
                        break;
                start[n] = s;
                while (*s && !is_space(*s))
                        s++;
                end[n++] = s;
                while (is_space(*s))
                        s++;
        }
        if (n != 5 && n != 6)
                return parse_error(
                        &p,
                        expr,
                        strlen(expr),
                        "expected 5 fields (minute hour day-of-month month day-of-week) or 6 "
                        "(with a leading second), got %s%zu",
                        n == 7 ? "more than " : "",
                        n == 7 ? (size_t) 6 : n);

        for (size_t i = 0; i < n; i++) {
                int field = n == 6 ? order6[i] : order5[i];
                r = parse_field(&p, field, start[i], end[i], &set[field]);
                if (r < 0)
                        return r;
        }
        return build(&p, set, n == 6, ret);
}

CronSpec *cron_spec_free(CronSpec *s) {
        free(s);
        return NULL;
}

bool cron_days_either(const CronSpec *s) {
        return s->days_either;
}

int cron_next_wall(const CronSpec *s, int64_t after_wall, int64_t *ret_wall) {
        CivilTime c;
        int64_t limit;

        civil_from_seconds(after_wall + 1, &c);
        limit = c.year + CRON_SEARCH_YEARS;

        /* Each step either accepts the current unit or moves to the start of
         * the next candidate of that unit and starts over from the month. */
        for (;;) {
                if (c.year > limit || c.year > CRON_MAX_YEAR)
                        return -ERANGE;

                if (!(s->months & (1u << c.month))) {
                        uint32_t later = s->months & ~((2u << c.month) - 1);
                        if (later)
                                c.month = first_bit(later);
                        else {
                                c.year++;
                                c.month = first_bit(s->months);
                        }
                        c.day = 1;
                        c.hour = c.minute = c.second = 0;
                        continue;
                }

                int ndays = days_in_month(c.year, c.month);
                int w1 = weekday_from_days(days_from_civil(c.year, c.month, 1));
                uint32_t days = c.day > 31 ? 0 : day_mask(s, w1, ndays) & ~((1u << c.day) - 1);
                if (!days) {
                        if (++c.month > 12) {
                                c.month = 1;
                                c.year++;
                        }
                        c.day = 1;
                        c.hour = c.minute = c.second = 0;
                        continue;
                }
                if (first_bit(days) != c.day) {
                        c.day = first_bit(days);
                        c.hour = c.minute = c.second = 0;
                }

                uint32_t hours = s->hours & ~((1u << c.hour) - 1);
                if (!hours) {
                        c.day++;
                        c.hour = c.minute = c.second = 0;
                        continue;
                }
                if (first_bit(hours) != c.hour) {
                        c.hour = first_bit(hours);
                        c.minute = c.second = 0;
                }

                uint64_t minutes = s->minutes & ~((UINT64_C(1) << c.minute) - 1);
                if (!minutes) {
                        c.hour++;
                        c.minute = c.second = 0;
                        if (c.hour == 24) {
                                c.day++;
                                c.hour = 0;
                        }
                        continue;
                }
                if (first_bit(minutes) != c.minute) {
                        c.minute = first_bit(minutes);
                        c.second = 0;
                }

                uint64_t seconds = s->seconds & ~((UINT64_C(1) << c.second) - 1);
                if (!seconds) {
                        c.minute++;
                        c.second = 0;
                        if (c.minute == 60) {
                                c.hour++;
                                c.minute = 0;
                                if (c.hour == 24) {
                                        c.day++;
                                        c.hour = 0;
                                }
                        }
                        continue;
                }
                c.second = first_bit(seconds);

                *ret_wall = seconds_from_civil(&c);
                return 0;
        }
}

int cron_next(const CronSpec *s, const Tz *tz, int64_t after, int64_t *ret) {
        /* Slot W fires at the first instant whose wall-clock time is at or
         * past W (tz_wall_to_instant), so it fires after AFTER exactly when W
         * is later than every wall-clock time shown up to AFTER. */
        int64_t wall, fire, lower = tz_wall_reached(tz, after);
        int r;

        for (;;) {
                r = cron_next_wall(s, lower, &wall);
                if (r < 0)
                        return r;
                fire = tz_wall_to_instant(tz, wall);
                if (fire > after)
                        break;
                lower = wall; /* only with transitions closer than their own size */
        }
        *ret = fire;
        return 0;
}

/* The smallest distance between consecutive set bits; INT32_MAX for one bit. */
static int32_t min_bit_gap(uint64_t v) {
        int32_t gap = INT32_MAX;
        int prev = -1;

        for (; v; v &= v - 1) {
                int b = first_bit(v);
                if (prev >= 0 && b - prev < gap)
                        gap = b - prev;
                prev = b;
        }
        return gap;
}

/* The smallest gap between two fires on the same day, in seconds. */
static int64_t min_gap_within_day(const CronSpec *s) {
        int64_t span_s = last_bit(s->seconds) - first_bit(s->seconds);
        int64_t span_m = (last_bit(s->minutes) - first_bit(s->minutes)) * 60 + span_s;
        int64_t gap = min_bit_gap(s->seconds), g;

        g = (int64_t) min_bit_gap(s->minutes) * 60 - span_s;
        if (g < gap)
                gap = g;
        g = (int64_t) min_bit_gap(s->hours) * 3600 - span_m;
        if (g < gap)
                gap = g;
        return gap;
}

/* The across-days part of cron_find_close_fires(), from fire day DAY0 on:
 * the fire days are walked through the month masks, one month at a time,
 * since with a 28-day min_interval over four years a search per fire
 * (cron_next_wall()) cost 40,000 instructions per environment. */
static int find_close_days(
        const CronSpec *s,
        const Tz *tz,
        int64_t day0,
        int64_t until,
        int64_t min_gap,
        int64_t *ret_first,
        int64_t *ret_second) {
        int64_t year, prev = day0, month_start;
        int month, mday;

        civil_from_days(day0, &year, &month, &mday);
        month_start = day0 - (mday - 1);
        for (int w1 = weekday_from_days(month_start);;) {
                int ndays = days_in_month(year, month);

                if (s->months & (1u << month)) {
                        /* In the first month, only the days after DAY0. */
                        uint32_t days = day_mask(s, w1, ndays) & (uint32_t) ~((UINT64_C(2) << mday) - 1);

                        for (; days; days &= days - 1) {
                                int64_t day = month_start + first_bit(days) - 1;
                                int64_t last = prev * SEC_PER_DAY + s->last_tod;
                                int64_t next = day * SEC_PER_DAY + s->first_tod;

                                if (next > until)
                                        return 0;
                                if (next - last < min_gap) {
                                        *ret_first = tz_wall_to_instant(tz, last);
                                        *ret_second = tz_wall_to_instant(tz, next);
                                        return 1;
                                }
                                prev = day;
                        }
                }
                month_start += ndays;
                if (month_start * SEC_PER_DAY > until)
                        return 0;
                w1 = (w1 + ndays) % 7;
                mday = 0;
                if (++month > 12) {
                        month = 1;
                        if (++year > CRON_MAX_YEAR)
                                return 0;
                }
        }
}

int cron_find_close_fires(
        const CronSpec *s,
        const Tz *tz,
        int64_t from,
        int64_t horizon,
        int64_t min_gap,
        int64_t *ret_first,
        int64_t *ret_second) {
        int64_t wall, next, from_wall = from + tz_offset(tz, from, NULL), until = from_wall + horizon;
        int r;

        if (min_gap <= 0)
                return 0;
        r = cron_next_wall(s, from_wall, &wall);
        if (r < 0 || wall > until)
                return 0;

        if (min_gap_within_day(s) < min_gap) {
                /* The same on every day: find the pair on the first day. */
                for (;;) {
                        r = cron_next_wall(s, wall, &next);
                        if (r < 0)
                                return 0;
                        if (next - wall < min_gap)
                                break;
                        wall = next;
                }
                *ret_first = tz_wall_to_instant(tz, wall);
                *ret_second = tz_wall_to_instant(tz, next);
                return 1;
        }

        /* Across days: from the last fire of one day to the first of the
         * next day that fires. No pair of days can be closer than this. */
        if (min_gap <= SEC_PER_DAY - (s->last_tod - s->first_tod))
                return 0;
        return find_close_days(s, tz, floor_div(wall, SEC_PER_DAY), until, min_gap, ret_first, ret_second);
}
