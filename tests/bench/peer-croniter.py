#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Peer benchmark: Debian's python3-croniter, run by run.sh next to bench-cron.

Same cases and output as bench-cron.c: for each expression and zone, a
croniter built once from a zone-aware start datetime (zoneinfo), then chained
get_next() calls (float return, the cheapest), going back to the start with
set_current() once the answers pass the year 2400. Median of --runs runs of at
least --min-time seconds, one line per case:
"EXPR<TAB>ZONE<TAB>MEDIAN<TAB>RUN,RUN,...", or "EXPR<TAB>ZONE<TAB>unsupported".

--dump N --from EPOCH prints the first N fire times after EPOCH instead,
"EXPR<TAB>ZONE<TAB>2026-01-04T02:00:00Z", also for a DST probe that is not timed.

Run it with /usr/bin/python3: croniter is a Debian package, not a pip one.
"""

import argparse
import datetime
import statistics
import sys
import time
import zoneinfo

import croniter

EXPRS = ["0 3 * * SUN#1", "*/15 9-17 * * MON-FRI", "0 0 L * *", "30 2 29 2 *"]
# Only dumped: a weekly slot inside Europe/Berlin's spring-forward gap and its
# fall-back overlap, to compare the DST rules.
DST_PROBE = "30 2 * * SUN"
ZONES = ["UTC", "Europe/Berlin"]
START = 1767225600  # 2026-01-01T00:00:00Z
WRAP = 13569465600  # 2400-01-01T00:00:00Z
BATCH = 64


def make(expr, zone, epoch):
    """A croniter at EPOCH in ZONE, or None when croniter rejects EXPR."""
    start = datetime.datetime.fromtimestamp(epoch, zoneinfo.ZoneInfo(zone))
    try:
        it = croniter.croniter(expr, start, ret_type=float)
        it.get_next()
    except (ValueError, KeyError, croniter.CroniterError):
        return None
    it.set_current(start)
    return it, start


def bench_run(it, start, min_time):
    calls = 0
    t0 = time.perf_counter()
    while True:
        for _ in range(BATCH):
            if it.get_next() >= WRAP:
                it.set_current(start)
        calls += BATCH
        elapsed = time.perf_counter() - t0
        if elapsed >= min_time:
            return calls / elapsed


def iso(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dump", type=int, metavar="N", help="print the first N fire times instead")
    ap.add_argument("--from", dest="from_", type=int, default=START, metavar="EPOCH")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--min-time", type=float, default=0.5, metavar="SECONDS")
    args = ap.parse_args()

    for expr in EXPRS + ([DST_PROBE] if args.dump else []):
        for zone in ZONES:
            made = make(expr, zone, args.from_ if args.dump else START)
            if made is None:
                print(f"{expr}\t{zone}\tunsupported", flush=True)
                continue
            it, start = made
            if args.dump:
                for _ in range(args.dump):
                    try:
                        t = it.get_next()
                    except Exception as e:  # report, as bench-cron does, and go on
                        print(f"{expr}\t{zone}\terror: {type(e).__name__}: {e}")
                        break
                    print(f"{expr}\t{zone}\t{iso(t)}")
                continue
            bench_run(it, start, args.min_time / 5)  # warm-up
            it.set_current(start)
            rates = [bench_run(it, start, args.min_time) for _ in range(args.runs)]
            runs = ",".join(f"{r:.0f}" for r in rates)
            print(f"{expr}\t{zone}\t{statistics.median(rates):.0f}\t{runs}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
