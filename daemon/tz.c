/* SPDX-License-Identifier: MIT */
/*
 * TZif reader and wall-clock <-> instant mapping. The file's explicit
 * transitions are read from its 64-bit block, then the POSIX TZ string in its
 * footer (RFC 8536 section 3.3) is expanded year by year up to TZ_MAX_YEAR,
 * so a lookup never has to evaluate a rule. The DST rule of refreshd lives in
 * tz_wall_to_instant(): a skipped wall time fires at the end of the gap, a
 * repeated one at its first occurrence.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "civil.h"
#include "macro.h"
#include "tz.h"

#define TZ_ABBR_MAX 16
#define TZIF_MAX_SIZE (1024 * 1024)
#define TZIF_MAX_TIMES 20000
#define TZIF_MAX_TYPES 256

typedef struct TzType {
        int32_t offset;
        char abbr[TZ_ABBR_MAX];
} TzType;

struct Tz {
        unsigned n_ref;
        char *name;
        TzType *types;
        size_t n_types;
        int64_t *at;    /* transition instants, ascending */
        int64_t *key;   /* at[i] + min(offset before, offset after): wall-time search key */
        uint16_t *type; /* type in force from at[i] on */
        size_t n_trans;
        uint16_t type0; /* type before the first transition */
};

/* A parsed POSIX TZ rule: "CET-1CEST,M3.5.0,M10.5.0/3". */
typedef struct TzRuleDate {
        char kind; /* 'J' (1..365, no Feb 29), 'N' (0..365), 'M' (month.week.day) */
        int day, week, month;
        int32_t time; /* seconds after local midnight, may be negative or over 24h */
} TzRuleDate;

typedef struct TzRule {
        TzType std, dst;
        bool has_dst;
        TzRuleDate start, end;
} TzRule;

bool tz_name_is_valid(const char *name) {
        size_t len = strlen(name);
        if (len == 0 || len > 255 || name[0] == '/')
                return false;

        bool at_start = true;
        for (const char *p = name; *p; p++) {
                if (*p == '/') {
                        if (at_start)
                                return false;
                        at_start = true;
                        continue;
                }
                if (at_start && *p == '.')
                        return false; /* ".." and hidden files */
                if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-.", *p))
                        return false;
                at_start = false;
        }
        return !at_start;
}

Tz *tz_ref(Tz *tz) {
        if (tz)
                tz->n_ref++;
        return tz;
}

Tz *tz_unref(Tz *tz) {
        if (!tz || --tz->n_ref > 0)
                return NULL;
        free(tz->name);
        free(tz->types);
        free(tz->at);
        free(tz->key);
        free(tz->type);
        free(tz);
        return NULL;
}

DEFINE_TRIVIAL_CLEANUP_FUNC(Tz *, tz_unref);

const char *tz_name(const Tz *tz) {
        return tz ? tz->name : "UTC";
}

static uint32_t be32(const uint8_t *p) {
        return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
}

static int64_t be64(const uint8_t *p) {
        return (int64_t) ((uint64_t) be32(p) << 32 | be32(p + 4));
}

/* ---- POSIX TZ strings ---- */

static int rule_parse_abbr(const char **p, char *abbr) {
        const char *s = *p, *e;
        size_t n;

        if (*s == '<') {
                e = strchr(s + 1, '>');
                if (!e)
                        return -EBADMSG;
                n = e - s - 1;
                s++;
                *p = e + 1;
        } else {
                for (e = s; (*e >= 'A' && *e <= 'Z') || (*e >= 'a' && *e <= 'z'); e++)
                        ;
                n = e - s;
                *p = e;
        }
        if (n < 3 || n >= TZ_ABBR_MAX)
                return -EBADMSG;
        memcpy(abbr, s, n);
        abbr[n] = 0;
        return 0;
}

static int rule_parse_number(const char **p, int max, int *ret) {
        const char *s = *p;
        int v = 0;

        if (*s < '0' || *s > '9')
                return -EBADMSG;
        for (; *s >= '0' && *s <= '9'; s++) {
                v = v * 10 + (*s - '0');
                if (v > max)
                        return -EBADMSG;
        }
        *p = s;
        *ret = v;
        return 0;
}

/* [+-]hh[:mm[:ss]], hours up to 167 (RFC 8536 extension). */
static int rule_parse_time(const char **p, int32_t *ret) {
        int sign = 1, h, m = 0, s = 0, r;

        if (**p == '+' || **p == '-')
                sign = *(*p)++ == '-' ? -1 : 1;
        r = rule_parse_number(p, 167, &h);
        if (r < 0)
                return r;
        if (**p == ':') {
                (*p)++;
                r = rule_parse_number(p, 59, &m);
                if (r < 0)
                        return r;
                if (**p == ':') {
                        (*p)++;
                        r = rule_parse_number(p, 59, &s);
                        if (r < 0)
                                return r;
                }
        }
        *ret = sign * (h * 3600 + m * 60 + s);
        return 0;
}

static int rule_parse_date(const char **p, TzRuleDate *ret) {
        TzRuleDate d = { .time = 2 * 3600 };
        int r;

        if (**p == 'J') {
                (*p)++;
                d.kind = 'J';
                r = rule_parse_number(p, 365, &d.day);
                if (r < 0 || d.day < 1)
                        return -EBADMSG;
        } else if (**p == 'M') {
                (*p)++;
                d.kind = 'M';
                if (rule_parse_number(p, 12, &d.month) < 0 || d.month < 1 || *(*p)++ != '.' ||
                    rule_parse_number(p, 5, &d.week) < 0 || d.week < 1 || *(*p)++ != '.' ||
                    rule_parse_number(p, 6, &d.day) < 0)
                        return -EBADMSG;
        } else {
                d.kind = 'N';
                r = rule_parse_number(p, 365, &d.day);
                if (r < 0)
                        return r;
        }
        if (**p == '/') {
                (*p)++;
                r = rule_parse_time(p, &d.time);
                if (r < 0)
                        return r;
        }
        *ret = d;
        return 0;
}

static int rule_parse(const char *s, TzRule *ret) {
        TzRule rule = {};
        int32_t t;
        int r;

        r = rule_parse_abbr(&s, rule.std.abbr);
        if (r < 0)
                return r;
        r = rule_parse_time(&s, &t);
        if (r < 0)
                return r;
        rule.std.offset = -t; /* POSIX counts west of Greenwich as positive */

        if (*s == 0) {
                *ret = rule;
                return 0;
        }

        r = rule_parse_abbr(&s, rule.dst.abbr);
        if (r < 0)
                return r;
        rule.has_dst = true;
        rule.dst.offset = rule.std.offset + 3600;
        if (*s != ',' && *s != 0) {
                r = rule_parse_time(&s, &t);
                if (r < 0)
                        return r;
                rule.dst.offset = -t;
        }
        if (*s++ != ',')
                return -EBADMSG; /* a DST zone without a rule: no default rule is guessed */
        r = rule_parse_date(&s, &rule.start);
        if (r < 0)
                return r;
        if (*s++ != ',')
                return -EBADMSG;
        r = rule_parse_date(&s, &rule.end);
        if (r < 0)
                return r;
        if (*s != 0)
                return -EBADMSG;

        *ret = rule;
        return 0;
}

/* The day number, in YEAR, of a rule date. */
static int64_t rule_date_day(const TzRuleDate *d, int64_t year) {
        int64_t jan1 = days_from_civil(year, 1, 1);

        switch (d->kind) {
        case 'J': /* 1..365, February 29 never counted */
                return jan1 + d->day - 1 + (is_leap_year(year) && d->day >= 60);
        case 'N':
                return jan1 + d->day;
        default: {
                int64_t first = days_from_civil(year, d->month, 1);
                int64_t day = first + floor_mod(d->day - weekday_from_days(first), 7) + 7 * (d->week - 1);
                int64_t next = first + days_in_month(year, d->month);
                while (day >= next)
                        day -= 7; /* week 5 means the last such weekday */
                return day;
        }
        }
}

/* ---- building the transition table ---- */

typedef struct TzBuilder {
        Tz *tz;
        size_t allocated;
} TzBuilder;

static int builder_add_type(TzBuilder *b, const TzType *t, uint16_t *ret) {
        Tz *tz = b->tz;

        for (size_t i = 0; i < tz->n_types; i++)
                if (tz->types[i].offset == t->offset && strcmp(tz->types[i].abbr, t->abbr) == 0) {
                        *ret = (uint16_t) i;
                        return 0;
                }
        TzType *n = realloc(tz->types, (tz->n_types + 1) * sizeof(TzType));
        if (!n)
                return -ENOMEM;
        tz->types = n;
        tz->types[tz->n_types] = *t;
        *ret = (uint16_t) tz->n_types++;
        return 0;
}

static int builder_add_transition(TzBuilder *b, int64_t at, uint16_t type) {
        Tz *tz = b->tz;

        if (tz->n_trans > 0 && at <= tz->at[tz->n_trans - 1])
                return -EBADMSG;
        if (tz->n_trans == b->allocated) {
                size_t n = b->allocated ? b->allocated * 2 : 64;
                int64_t *at_n = realloc(tz->at, n * sizeof(int64_t));
                if (!at_n)
                        return -ENOMEM;
                tz->at = at_n;
                uint16_t *type_n = realloc(tz->type, n * sizeof(uint16_t));
                if (!type_n)
                        return -ENOMEM;
                tz->type = type_n;
                b->allocated = n;
        }
        tz->at[tz->n_trans] = at;
        tz->type[tz->n_trans] = type;
        tz->n_trans++;
        return 0;
}

/* Appends the rule's transitions that come after the last explicit one. */
static int builder_extend(TzBuilder *b, const TzRule *rule) {
        Tz *tz = b->tz;
        uint16_t std, dst;
        int64_t year, last;
        int month, day;
        int r;

        r = builder_add_type(b, &rule->std, &std);
        if (r < 0)
                return r;
        if (!rule->has_dst) {
                /* Fixed offset from the last transition on: make sure it is in force. */
                if (tz->n_trans == 0)
                        tz->type0 = std;
                else if (tz->type[tz->n_trans - 1] != std)
                        return builder_add_transition(b, tz->at[tz->n_trans - 1] + 1, std);
                return 0;
        }
        r = builder_add_type(b, &rule->dst, &dst);
        if (r < 0)
                return r;

        last = tz->n_trans > 0 ? tz->at[tz->n_trans - 1] : INT64_MIN;
        if (tz->n_trans > 0)
                civil_from_days(floor_div(last, SEC_PER_DAY), &year, &month, &day);
        else {
                year = 1970;
                tz->type0 = std;
        }

        for (; year <= TZ_MAX_YEAR; year++) {
                /* The start time is given in standard time, the end in daylight time. */
                int64_t on = rule_date_day(&rule->start, year) * SEC_PER_DAY + rule->start.time -
                             rule->std.offset;
                int64_t off =
                        rule_date_day(&rule->end, year) * SEC_PER_DAY + rule->end.time - rule->dst.offset;
                int64_t first = on < off ? on : off, second = on < off ? off : on;
                uint16_t first_type = on < off ? dst : std, second_type = on < off ? std : dst;

                if (first > last) {
                        r = builder_add_transition(b, first, first_type);
                        if (r < 0)
                                return r;
                        last = first;
                }
                if (second > last) {
                        r = builder_add_transition(b, second, second_type);
                        if (r < 0)
                                return r;
                        last = second;
                }
        }
        return 0;
}

static int builder_finish(TzBuilder *b) {
        Tz *tz = b->tz;

        if (tz->n_trans == 0)
                return 0;
        tz->key = malloc(tz->n_trans * sizeof(int64_t));
        if (!tz->key)
                return -ENOMEM;
        for (size_t i = 0; i < tz->n_trans; i++) {
                int32_t before = tz->types[i == 0 ? tz->type0 : tz->type[i - 1]].offset;
                int32_t after = tz->types[tz->type[i]].offset;
                tz->key[i] = tz->at[i] + (before < after ? before : after);
                if (i > 0 && tz->key[i] < tz->key[i - 1])
                        tz->key[i] = tz->key[i - 1]; /* keep the search key sorted */
        }
        return 0;
}

/* ---- TZif ---- */

typedef struct TzifHeader {
        uint32_t isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt;
} TzifHeader;

static int tzif_header(const uint8_t *p, size_t size, TzifHeader *ret, char *ret_version) {
        if (size < 44 || memcmp(p, "TZif", 4) != 0)
                return -EBADMSG;
        *ret_version = (char) p[4];
        *ret = (TzifHeader) {
                .isutcnt = be32(p + 20),
                .isstdcnt = be32(p + 24),
                .leapcnt = be32(p + 28),
                .timecnt = be32(p + 32),
                .typecnt = be32(p + 36),
                .charcnt = be32(p + 40),
        };
        if (ret->timecnt > TZIF_MAX_TIMES || ret->typecnt == 0 || ret->typecnt > TZIF_MAX_TYPES ||
            ret->charcnt > 1024 || ret->leapcnt > 1000 ||
            (ret->isutcnt != 0 && ret->isutcnt != ret->typecnt) ||
            (ret->isstdcnt != 0 && ret->isstdcnt != ret->typecnt))
                return -EBADMSG;
        return 0;
}

static size_t tzif_block_size(const TzifHeader *h, size_t time_size) {
        return h->timecnt * (time_size + 1) + h->typecnt * 6 + h->charcnt + h->leapcnt * (time_size + 4) +
               h->isstdcnt + h->isutcnt;
}

static int tzif_read_block(TzBuilder *b, const TzifHeader *h, const uint8_t *p, size_t time_size) {
        const uint8_t *times = p, *idx = p + h->timecnt * time_size;
        const uint8_t *types = idx + h->timecnt, *chars = types + h->typecnt * 6;
        uint16_t map[TZIF_MAX_TYPES];
        int r;

        for (size_t i = 0; i < h->typecnt; i++) {
                const uint8_t *t = types + i * 6;
                TzType type = { .offset = (int32_t) be32(t) };
                unsigned ci = t[5];

                if (type.offset < -25 * 3600 || type.offset > 26 * 3600 || ci >= h->charcnt)
                        return -EBADMSG;
                size_t n = strnlen((const char *) chars + ci, h->charcnt - ci);
                if (n >= TZ_ABBR_MAX)
                        n = TZ_ABBR_MAX - 1;
                memcpy(type.abbr, chars + ci, n);
                r = builder_add_type(b, &type, &map[i]);
                if (r < 0)
                        return r;
        }
        /* RFC 8536: local time before the first transition is given by type 0. */
        b->tz->type0 = map[0];

        for (size_t i = 0; i < h->timecnt; i++) {
                int64_t at = time_size == 8 ? be64(times + i * 8) : (int32_t) be32(times + i * 4);
                if (idx[i] >= h->typecnt)
                        return -EBADMSG;
                /* Drop the "big bang" sentinel some files carry. */
                if (at < -(INT64_C(1) << 59))
                        continue;
                r = builder_add_transition(b, at, map[idx[i]]);
                if (r < 0)
                        return r;
        }
        return 0;
}

int tz_parse(const char *name, const void *data, size_t size, Tz **ret) {
        _cleanup_(tz_unrefp) Tz *tz = NULL;
        const uint8_t *p = data;
        TzifHeader h;
        char version;
        int r;

        r = tzif_header(p, size, &h, &version);
        if (r < 0)
                return r;
        size_t block = tzif_block_size(&h, 4);
        if (44 + block > size)
                return -EBADMSG;

        tz = calloc(1, sizeof(Tz));
        if (!tz)
                return -ENOMEM;
        tz->n_ref = 1;
        tz->name = strdup(name);
        if (!tz->name)
                return -ENOMEM;
        TzBuilder b = { .tz = tz };

        if (version == 0) {
                r = tzif_read_block(&b, &h, p + 44, 4);
                if (r < 0)
                        return r;
        } else {
                const uint8_t *p2 = p + 44 + block;
                size_t left = size - 44 - block;

                r = tzif_header(p2, left, &h, &version);
                if (r < 0)
                        return r;
                block = tzif_block_size(&h, 8);
                if (44 + block > left)
                        return -EBADMSG;
                r = tzif_read_block(&b, &h, p2 + 44, 8);
                if (r < 0)
                        return r;

                /* The footer: "\n<POSIX TZ string>\n"; empty means no rule. */
                const char *f = (const char *) p2 + 44 + block, *end = (const char *) p + size;
                if (f >= end || *f != '\n')
                        return -EBADMSG;
                const char *nl = memchr(f + 1, '\n', end - f - 1);
                if (!nl || nl - f - 1 > 255)
                        return -EBADMSG;
                if (nl > f + 1) {
                        char footer[256];
                        TzRule rule;

                        memcpy(footer, f + 1, nl - f - 1);
                        footer[nl - f - 1] = 0;
                        r = rule_parse(footer, &rule);
                        if (r < 0)
                                return r;
                        r = builder_extend(&b, &rule);
                        if (r < 0)
                                return r;
                }
        }

        r = builder_finish(&b);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(tz);
        return 0;
}

static int tz_new_utc(const char *name, Tz **ret) {
        /* A TZif v1 image with one type, UTC+0 "UTC", and no transitions. */
        static const uint8_t utc[44 + 6 + 4] = {
                'T',        'Z',        'i',        'f', [39] = 1 /* typecnt */, [43] = 4 /* charcnt */,
                [50] = 'U', [51] = 'T', [52] = 'C',
        };
        return tz_parse(name, utc, sizeof(utc), ret);
}

int tz_load(const char *name, Tz **ret) {
        _cleanup_free_ uint8_t *buf = NULL;
        _cleanup_(closep) int fd = -EBADF;
        const char *dir = getenv("TZDIR");
        char path[4096];
        struct stat st;
        ssize_t n;

        if (!tz_name_is_valid(name))
                return -EINVAL;
        if (!dir || dir[0] != '/')
                dir = "/usr/share/zoneinfo";
        if ((size_t) snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path))
                return -EINVAL;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
                /* A machine without tzdata still knows UTC. */
                if (errno == ENOENT && (strcmp(name, "UTC") == 0 || strcmp(name, "Etc/UTC") == 0))
                        return tz_new_utc(name, ret);
                return errno == ENOTDIR ? -ENOENT : -errno;
        }
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -ENOENT;
        if (st.st_size > TZIF_MAX_SIZE)
                return -EBADMSG;
        buf = malloc(st.st_size ? st.st_size : 1);
        if (!buf)
                return -ENOMEM;
        n = read(fd, buf, st.st_size);
        if (n < 0)
                return -errno;
        if (n != st.st_size)
                return -EBADMSG;
        return tz_parse(name, buf, n, ret);
}

/* ---- lookups ---- */

/* How many of the N ascending values A are at or before V. */
static size_t count_at_or_before(const int64_t *a, size_t n, int64_t v) {
        size_t lo = 0, hi = n;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (a[mid] <= v)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

int32_t tz_offset(const Tz *tz, int64_t instant, const char **ret_abbr) {
        if (!tz) {
                if (ret_abbr)
                        *ret_abbr = "UTC";
                return 0;
        }

        /* The last transition at or before INSTANT. */
        size_t lo = count_at_or_before(tz->at, tz->n_trans, instant);
        const TzType *t = &tz->types[lo == 0 ? tz->type0 : tz->type[lo - 1]];
        if (ret_abbr)
                *ret_abbr = t->abbr;
        return t->offset;
}

int64_t tz_wall_reached(const Tz *tz, int64_t instant) {
        int64_t wall = instant + tz_offset(tz, instant, NULL);

        if (!tz)
                return wall;
        /* Clocks that went back shortly before INSTANT showed later times
         * just before they did. */
        size_t lo = count_at_or_before(tz->at, tz->n_trans, instant);
        for (size_t i = lo; i > 0 && i + 2 > lo; i--) {
                int32_t before = tz->types[i - 1 == 0 ? tz->type0 : tz->type[i - 2]].offset;
                int64_t shown = tz->at[i - 1] - 1 + before;
                if (shown > wall)
                        wall = shown;
        }
        return wall;
}

int64_t tz_wall_to_instant(const Tz *tz, int64_t wall) {
        if (!tz || tz->n_trans == 0)
                return wall - (tz ? tz->types[tz->type0].offset : 0);

        /* The last transition whose wall-clock effect starts at or before WALL. */
        size_t lo = count_at_or_before(tz->key, tz->n_trans, wall);
        if (lo == 0)
                return wall - tz->types[tz->type0].offset;

        size_t i = lo - 1;
        int32_t before = tz->types[i == 0 ? tz->type0 : tz->type[i - 1]].offset;
        int32_t after = tz->types[tz->type[i]].offset;
        int64_t at = tz->at[i];

        if (after > before && wall < at + after)
                return at; /* in the gap: the first instant after it */
        if (after < before && wall < at + before)
                return wall - before; /* repeated: the first occurrence */
        return wall - after;
}

/* ---- formatting and parsing ---- */

/* 0000-01-01T00:00:00 and 9999-12-31T23:59:59, as seconds. */
#define WALL_MIN INT64_C(-62167219200)
#define WALL_MAX INT64_C(253402300799)

static int format_civil(int64_t wall, char *buf, size_t size, size_t *ret_len) {
        CivilTime c;
        int n;

        if (wall < WALL_MIN || wall > WALL_MAX)
                return -ERANGE; /* before the date arithmetic could overflow */
        civil_from_seconds(wall, &c);
        if (c.year < 0 || c.year > 9999)
                return -ERANGE;
        n = snprintf(
                buf,
                size,
                "%04d-%02d-%02dT%02d:%02d:%02d",
                (int) c.year,
                c.month,
                c.day,
                c.hour,
                c.minute,
                c.second);
        if (n < 0 || (size_t) n >= size)
                return -ENOBUFS;
        *ret_len = n;
        return 0;
}

int tz_format_local(const Tz *tz, int64_t instant, char *buf, size_t size) {
        if (instant < WALL_MIN - 86400 || instant > WALL_MAX + 86400)
                return -ERANGE;
        int32_t off = tz_offset(tz, instant, NULL);
        int32_t a = off < 0 ? -off : off;
        size_t len;
        int r, n;

        r = format_civil(instant + off, buf, size, &len);
        if (r < 0)
                return r;
        if (a % 60 != 0) /* local mean times before 1900 */
                n = snprintf(
                        buf + len,
                        size - len,
                        "%c%02d:%02d:%02d",
                        off < 0 ? '-' : '+',
                        a / 3600,
                        a / 60 % 60,
                        a % 60);
        else
                n = snprintf(
                        buf + len, size - len, "%c%02d:%02d", off < 0 ? '-' : '+', a / 3600, a / 60 % 60);
        if (n < 0 || (size_t) n >= size - len)
                return -ENOBUFS;
        return 0;
}

int tz_format_utc(int64_t instant, char *buf, size_t size) {
        size_t len;
        int r;

        r = format_civil(instant, buf, size, &len);
        if (r < 0)
                return r;
        if (len + 2 > size)
                return -ENOBUFS;
        buf[len] = 'Z';
        buf[len + 1] = 0;
        return 0;
}

static bool parse_digits(const char **p, int n, int *ret) {
        int v = 0;

        for (int i = 0; i < n; i++) {
                char c = (*p)[i];
                if (c < '0' || c > '9')
                        return false;
                v = v * 10 + (c - '0');
        }
        *p += n;
        *ret = v;
        return true;
}

int tz_parse_iso8601(const char *s, int64_t *ret) {
        int y, mo, d, h = 0, mi = 0, sec = 0, oh = 0, om = 0, sign = 0;

        if (!parse_digits(&s, 4, &y) || *s++ != '-' || !parse_digits(&s, 2, &mo) || *s++ != '-' ||
            !parse_digits(&s, 2, &d))
                return -EINVAL;
        if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo))
                return -EINVAL;

        if (*s == 'T' || *s == 't' || *s == ' ') {
                s++;
                if (!parse_digits(&s, 2, &h) || *s++ != ':' || !parse_digits(&s, 2, &mi))
                        return -EINVAL;
                if (*s == ':') {
                        s++;
                        if (!parse_digits(&s, 2, &sec))
                                return -EINVAL;
                        if (*s == '.' || *s == ',') {
                                s++;
                                if (*s < '0' || *s > '9')
                                        return -EINVAL;
                                while (*s >= '0' && *s <= '9')
                                        s++;
                        }
                }
                if (h > 23 || mi > 59 || sec > 60)
                        return -EINVAL;
                if (sec == 60)
                        sec = 59; /* a leap second: the last second of that minute */
        }

        if (*s == 'Z' || *s == 'z')
                s++;
        else if (*s == '+' || *s == '-') {
                sign = *s++ == '-' ? -1 : 1;
                if (!parse_digits(&s, 2, &oh))
                        return -EINVAL;
                if (*s == ':')
                        s++;
                if (*s && !parse_digits(&s, 2, &om))
                        return -EINVAL;
                if (oh > 23 || om > 59)
                        return -EINVAL;
        }
        if (*s != 0)
                return -EINVAL;

        CivilTime c = { .year = y, .month = mo, .day = d, .hour = h, .minute = mi, .second = sec };
        *ret = seconds_from_civil(&c) - (int64_t) sign * (oh * 3600 + om * 60);
        return 0;
}
