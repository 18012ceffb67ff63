/* SPDX-License-Identifier: MIT */
/*
 * Throughput benchmark of the schedule engine, run side by side with the
 * croniter and cron-parser peers by run.sh. For each expression and zone the
 * expression is parsed once, then cron_next() is chained from a fixed start
 * instant (each call's answer is the next call's AFTER), going back to the
 * start whenever the answers pass the year 2400, the end of the zone's
 * generated transitions. Each run lasts at least --min-time seconds of
 * CLOCK_MONOTONIC; the median of --runs runs is reported as calls per second,
 * one line per case: "EXPR<TAB>ZONE<TAB>MEDIAN<TAB>RUN,RUN,...".
 *
 * With --dump N --from EPOCH it instead prints the first N fire times after
 * EPOCH, one per line: "EXPR<TAB>ZONE<TAB>2026-01-04T02:00:00Z", for these
 * expressions and for a DST probe that is not timed.
 */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cron.h"
#include "macro.h"
#include "tz.h"

/* 2026-01-01T00:00:00Z and 2400-01-01T00:00:00Z. */
#define BENCH_START INT64_C(1767225600)
#define BENCH_WRAP INT64_C(13569465600)
/* Calls between two clock reads: about a millisecond at the target rate. */
#define BENCH_BATCH 1024
#define BENCH_RUNS_MAX 99

static const struct {
        const char *expr;
        bool timed;
} exprs[] = {
        { "0 3 * * SUN#1", true },
        { "*/15 9-17 * * MON-FRI", true },
        { "0 0 L * *", true },
        { "30 2 29 2 *", true },
        /* Only dumped: a weekly slot inside Europe/Berlin's spring-forward
         * gap and its fall-back overlap, to compare the DST rules. */
        { "30 2 * * SUN", false },
};

static const char *const zones[] = {
        "UTC",
        "Europe/Berlin",
};

DEFINE_TRIVIAL_CLEANUP_FUNC(CronSpec *, cron_spec_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(Tz *, tz_unref);

/* Every answer is folded in here, so the compiler cannot drop the calls. */
static volatile uint64_t sink;

static double now_sec(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b) {
        double x = *(const double *) a, y = *(const double *) b;
        return (x > y) - (x < y);
}

/* One timed run: calls per second over at least MIN_TIME seconds. */
static int bench_run(const CronSpec *s, const Tz *tz, double min_time, double *ret_rate) {
        int64_t after = BENCH_START, next;
        uint64_t calls = 0, acc = 0;
        double start, elapsed;
        int r;

        start = now_sec();
        do {
                for (unsigned i = 0; i < BENCH_BATCH; i++) {
                        r = cron_next(s, tz, after, &next);
                        if (r < 0)
                                return r;
                        acc ^= (uint64_t) next;
                        after = next >= BENCH_WRAP ? BENCH_START : next;
                }
                calls += BENCH_BATCH;
                elapsed = now_sec() - start;
        } while (elapsed < min_time);

        sink ^= acc;
        *ret_rate = (double) calls / elapsed;
        return 0;
}

static int bench_case(const char *expr, const char *zone, const CronSpec *s, const Tz *tz, unsigned runs,
                      double min_time) {
        double rates[BENCH_RUNS_MAX], sorted[BENCH_RUNS_MAX], warm;
        int r;

        /* Warm caches and branch predictors before the first counted run. */
        r = bench_run(s, tz, min_time / 5, &warm);
        if (r < 0)
                return r;
        for (unsigned i = 0; i < runs; i++) {
                r = bench_run(s, tz, min_time, &rates[i]);
                if (r < 0)
                        return r;
        }
        memcpy(sorted, rates, runs * sizeof(double));
        qsort(sorted, runs, sizeof(double), cmp_double);

        printf("%s\t%s\t%.0f\t", expr, zone, sorted[runs / 2]);
        for (unsigned i = 0; i < runs; i++)
                printf("%s%.0f", i > 0 ? "," : "", rates[i]);
        printf("\n");
        fflush(stdout);
        return 0;
}

static int dump_case(const char *expr, const char *zone, const CronSpec *s, const Tz *tz, unsigned n,
                     int64_t from) {
        char buf[TZ_ISO_MAX];
        int64_t t = from;
        int r;

        for (unsigned i = 0; i < n; i++) {
                r = cron_next(s, tz, t, &t);
                if (r >= 0)
                        r = tz_format_utc(t, buf, sizeof(buf));
                if (r < 0) {
                        printf("%s\t%s\terror: %s\n", expr, zone, strerror(-r));
                        return r;
                }
                printf("%s\t%s\t%s\n", expr, zone, buf);
        }
        return 0;
}

static void help(void) {
        printf("bench-cron [--runs N] [--min-time SECONDS]\n"
               "bench-cron --dump N --from EPOCH\n\n"
               "Times chained cron_next() calls (calls/s, median of N runs), or prints\n"
               "the first N fire times after EPOCH for each expression and zone.\n");
}

static int parse_number(const char *s, double min, double max, double *ret) {
        char *end;
        double v;

        errno = 0;
        v = strtod(s, &end);
        if (errno != 0 || end == s || *end != 0 || v < min || v > max)
                return -EINVAL;
        *ret = v;
        return 0;
}

int main(int argc, char *argv[]) {
        enum { ARG_DUMP = 0x100, ARG_FROM, ARG_RUNS, ARG_MIN_TIME };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "dump", required_argument, NULL, ARG_DUMP },
                { "from", required_argument, NULL, ARG_FROM },
                { "runs", required_argument, NULL, ARG_RUNS },
                { "min-time", required_argument, NULL, ARG_MIN_TIME },
                {}
        };
        double dump = 0, from = (double) BENCH_START, runs = 5, min_time = 0.5, *v;
        int c, idx, r;

        while ((c = getopt_long(argc, argv, "h", options, &idx)) >= 0) {
                double lo = 1, hi = BENCH_RUNS_MAX;

                switch (c) {
                case 'h':
                        help();
                        return EXIT_SUCCESS;
                case ARG_DUMP:
                        v = &dump, hi = 100000;
                        break;
                case ARG_FROM:
                        v = &from, lo = -1e11, hi = 1e11;
                        break;
                case ARG_RUNS:
                        v = &runs;
                        break;
                case ARG_MIN_TIME:
                        v = &min_time, lo = 0.001, hi = 600;
                        break;
                default:
                        return EXIT_FAILURE;
                }
                if (parse_number(optarg, lo, hi, v) < 0) {
                        fprintf(stderr, "Invalid value for --%s: '%s'\n", options[idx].name, optarg);
                        return EXIT_FAILURE;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "Unexpected argument '%s'\n", argv[optind]);
                return EXIT_FAILURE;
        }

        for (size_t i = 0; i < ELEMENTSOF(exprs); i++)
                for (size_t j = 0; j < ELEMENTSOF(zones); j++) {
                        _cleanup_(cron_spec_freep) CronSpec *s = NULL;
                        _cleanup_(tz_unrefp) Tz *tz = NULL;
                        const char *expr = exprs[i].expr;
                        CronError err = {};

                        if (dump <= 0 && !exprs[i].timed)
                                continue;

                        r = cron_parse(expr, &s, &err);
                        if (r < 0) {
                                fprintf(stderr, "'%s': %s\n", expr, err.message);
                                return EXIT_FAILURE;
                        }
                        r = tz_load(zones[j], &tz);
                        if (r < 0) {
                                fprintf(stderr, "Failed to load zone '%s': %s\n", zones[j], strerror(-r));
                                return EXIT_FAILURE;
                        }
                        if (dump > 0)
                                r = dump_case(expr, zones[j], s, tz, (unsigned) dump, (int64_t) from);
                        else
                                r = bench_case(expr, zones[j], s, tz, (unsigned) runs, min_time);
                        if (r < 0) {
                                fprintf(stderr, "cron_next('%s', %s) failed: %s\n", expr, zones[j],
                                        strerror(-r));
                                return EXIT_FAILURE;
                        }
                }
        return EXIT_SUCCESS;
}
