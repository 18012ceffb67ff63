#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Schedule-engine benchmark: refreshd's cron_next() against two peers,
# Debian's python3-croniter and the npm package cron-parser.
#
#   tests/bench/run.sh            # from anywhere; takes about 70 s
#   ninja -C build bench          # the same, once tests/meson.build has the
#                                 # bench-cron and bench targets (README.md)
#
# 1. Builds bench-cron: through meson when the build dir ($MESON_BUILD_ROOT,
#    else build/ at the repo root) has a target named bench-cron, otherwise
#    directly with cc -O2 against daemon/cron.c and daemon/tz.c.
# 2. Runs the three benchmarks one after the other, each pinned to one core
#    (taskset -c 1 when there is a core 1), and prints a table of calls/s
#    (median of $BENCH_RUNS runs of at least $BENCH_MIN_TIME s per case) and
#    refreshd's ratio to each peer, then checks the targets.
# 3. AGREEMENT: the first 50 fire times of every case, and of a DST probe
#    '30 2 * * SUN' (a slot inside Berlin's spring gap and autumn overlap),
#    after two starts,
#    2026-01-01T00:00:00Z and 2027-03-27T00:00:00Z (the eve of a DST change
#    in Europe/Berlin), from all three and from an independent oracle (a
#    day-by-day enumeration with refreshd's documented DST rule). Counts
#    agreement position by position, prints the first disagreement of each
#    case and classifies every differing fire: DST semantics that differ,
#    a peer that is wrong, or refreshd that is wrong.
#
# Exits non-zero only when something could not be built or run, never
# because of a performance number or a disagreement.
#
# Environment: BENCH_RUNS (5), BENCH_MIN_TIME (0.5 seconds per run),
# BENCH_CPU (1), CC (cc).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${MESON_BUILD_ROOT:-$root/build}
runs=${BENCH_RUNS:-5}
min_time=${BENCH_MIN_TIME:-0.5}
cpu=${BENCH_CPU:-1}
py=/usr/bin/python3 # Debian's python, where python3-croniter lives
failed=0

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# ---- build ----
bench=
if [[ -f $build/build.ninja ]] && command -v meson >/dev/null; then
        bench=$(meson introspect "$build" --targets | "$py" -c '
import json, sys
for t in json.load(sys.stdin):
    if t["name"] == "bench-cron" and t["type"] == "executable":
        print(t["filename"][0])
        break')
fi
if [[ -n $bench && -n ${MESON_BUILD_ROOT:-} ]]; then
        : # "ninja bench": the run target already built bench-cron, and ninja must not nest
elif [[ -n $bench ]]; then
        echo "Building bench-cron with meson in $build" >&2
        meson compile -C "$build" bench-cron >&2
else
        echo "No meson target bench-cron; compiling with ${CC:-cc} -O2" >&2
        bench=$work/bench-cron
        "${CC:-cc}" -O2 -std=gnu11 -D_GNU_SOURCE -I"$root/daemon" -o "$bench" \
                "$here/bench-cron.c" "$root/daemon/cron.c" "$root/daemon/tz.c"
fi

# ---- pinning ----
pin=()
if command -v taskset >/dev/null && taskset -c "$cpu" true 2>/dev/null; then
        pin=(taskset -c "$cpu")
else
        echo "Not pinned: taskset missing or no CPU $cpu" >&2
fi

# ---- peers ----
peer_py=("$py" "$here/peer-croniter.py")
peer_js=(node "$here/peer-cron-parser.js")
if ! "$py" -c 'import croniter' 2>/dev/null; then
        echo "croniter missing (apt-get install python3-croniter)" >&2
        peer_py=()
        failed=1
fi
if ! command -v node >/dev/null || ! node "$here/peer-cron-parser.js" --version >"$work/cron-parser.version"; then
        echo "cron-parser cannot run (needs node and npm)" >&2
        peer_js=()
        failed=1
fi

# run NAME CMD...: benchmark into $work/NAME.bench, dumps into $work/NAME.<start>
run() {
        local name=$1
        shift
        echo "Running $name" >&2
        if ! "${pin[@]}" "$@" --runs "$runs" --min-time "$min_time" >"$work/$name.bench"; then
                echo "$name benchmark failed" >&2
                failed=1
        fi
        for from in 1767225600 1806105600; do
                if ! "$@" --dump 50 --from "$from" >"$work/$name.$from"; then
                        echo "$name --dump failed" >&2
                        failed=1
                fi
        done
}

run refreshd "$bench"
[[ ${#peer_py[@]} -gt 0 ]] && run croniter "${peer_py[@]}"
[[ ${#peer_js[@]} -gt 0 ]] && run cron-parser "${peer_js[@]}"

# ---- report ----
export BENCH_PIN="${pin[*]:-none}" BENCH_RUNS_USED=$runs BENCH_MIN_TIME_USED=$min_time
"$py" - "$work" <<'PYEOF' || failed=1
import calendar
import datetime as dt
import os
import sys
import zoneinfo

work = sys.argv[1]
UTC = dt.timezone.utc
ENGINES = ["refreshd", "croniter", "cron-parser"]
PEERS = ENGINES[1:]
EXPRS = ["0 3 * * SUN#1", "*/15 9-17 * * MON-FRI", "0 0 L * *", "30 2 29 2 *"]
DST_PROBE = "30 2 * * SUN"  # dumped, not timed: a slot in Berlin's gap and overlap
ZONES = ["UTC", "Europe/Berlin"]
STARTS = [1767225600, 1806105600]
N = 50


def read_lines(path):
    try:
        with open(path) as f:
            return [line.rstrip("\n").split("\t") for line in f if line.strip()]
    except FileNotFoundError:
        return []


def read_bench(engine):
    out = {}
    for f in read_lines(f"{work}/{engine}.bench"):
        out[(f[0], f[1])] = float(f[2]) if f[2] != "unsupported" else "unsupported"
    return out


def read_dump(engine, start):
    out = {}
    for f in read_lines(f"{work}/{engine}.{start}"):
        out.setdefault((f[0], f[1]), []).append(f[2])
    return out


def iso(t):
    return dt.datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch(s):
    return int(dt.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp())


# ---- performance table ----
bench = {e: read_bench(e) for e in ENGINES}


def rate(e, case):
    v = bench[e].get(case)
    return "n/a" if v is None else v if isinstance(v, str) else f"{v:,.0f}"


def ratio(case, peer):
    r, p = bench["refreshd"].get(case), bench[peer].get(case)
    if not isinstance(r, float) or not isinstance(p, float) or p <= 0:
        return None
    return r / p


print()
print(f"PERFORMANCE: next() calls/s, median of {os.environ['BENCH_RUNS_USED']} runs of >= "
      f"{os.environ['BENCH_MIN_TIME_USED']} s, pinned: {os.environ['BENCH_PIN']}")
print()
print("| expression | zone | refreshd calls/s | croniter calls/s | cron-parser calls/s "
      "| ratio vs croniter | ratio vs cron-parser |")
print("|---|---|--:|--:|--:|--:|--:|")
for expr in EXPRS:
    for zone in ZONES:
        c = (expr, zone)
        rs = [ratio(c, p) for p in PEERS]
        cells = [f"{x:,.0f}x" if x is not None else "n/a" for x in rs]
        print(f"| `{expr}` | {zone} | {rate('refreshd', c)} | {rate('croniter', c)} | "
              f"{rate('cron-parser', c)} | {cells[0]} | {cells[1]} |")

print()
print("TARGETS")


def check(label, value, target, unit):
    if value is None:
        print(f"  {label}: n/a")
        return
    verdict = "PASS" if value >= target else "MISS"
    print(f"  {verdict}  {label}: {value:,.0f}{unit} (target >= {target:,}{unit})")


for zone, target in (("UTC", 1_000_000), ("Europe/Berlin", 500_000)):
    v = bench["refreshd"].get(("0 3 * * SUN#1", zone))
    check(f"refreshd '0 3 * * SUN#1' {zone}", v if isinstance(v, float) else None, target, "/s")
for peer, target in (("croniter", 40), ("cron-parser", 100)):
    rs = [(ratio((e, z), peer), e, z) for e in EXPRS for z in ZONES if ratio((e, z), peer) is not None]
    if rs:
        lo = min(rs)
        check(f"lowest ratio vs {peer} ('{lo[1]}' {lo[2]})", lo[0], target, "x")
    else:
        check(f"lowest ratio vs {peer}", None, target, "x")


# ---- the oracle: standard cron fields, enumerated day by day ----
MONTHS = "JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split()
DAYS = "SUN MON TUE WED THU FRI SAT".split()


class Spec:
    def __init__(self, expr):
        f = expr.split()
        assert len(f) == 5, expr
        self.minutes = self.field(f[0], 0, 59)
        self.hours = self.field(f[1], 0, 23)
        self.dom, self.dom_last = set(), False
        for el in f[2].split(","):
            if el.upper() == "L":
                self.dom_last = True
            else:
                self.dom |= self.field(el, 1, 31)
        self.months = self.field(f[3], 1, 12, MONTHS, 1)
        self.dow, self.dow_nth, self.dow_last = set(), set(), set()
        for el in f[4].upper().split(","):
            if "#" in el:
                d, n = el.split("#")
                self.dow_nth.add((self.value(d, DAYS, 0) % 7, int(n)))
            elif len(el) > 1 and el.endswith("L"):
                self.dow_last.add(self.value(el[:-1], DAYS, 0) % 7)
            else:
                self.dow |= {d % 7 for d in self.field(el, 0, 6, DAYS, 0)}
        # Vixie cron: when both day fields are restricted (neither begins
        # with "*"), a day matches if either matches; otherwise both must.
        self.either = not f[2].startswith("*") and not f[4].startswith("*")

    @staticmethod
    def value(s, names=None, base=0):
        if s.isdigit():
            return int(s)
        return names.index(s.upper()) + base

    def field(self, text, lo, hi, names=None, base=0):
        out = set()
        for el in text.split(","):
            rng, slash, step = el.partition("/")
            if rng == "*":
                a, b = lo, hi
            elif "-" in rng:
                a, b = (self.value(x, names, base) for x in rng.split("-"))
            else:
                a = self.value(rng, names, base)
                b = hi if slash else a
            out |= set(range(a, b + 1, int(step) if slash else 1))
        return out

    def day_matches(self, d):
        if d.month not in self.months:
            return False
        ndays = calendar.monthrange(d.year, d.month)[1]
        w = d.isoweekday() % 7
        dom = d.day in self.dom or (self.dom_last and d.day == ndays)
        dow = (w in self.dow or (w, (d.day - 1) // 7 + 1) in self.dow_nth
               or (w in self.dow_last and d.day + 7 > ndays))
        return (dom or dow) if self.either else (dom and dow)

    def matches(self, wall):
        return (wall.second == 0 and wall.minute in self.minutes and wall.hour in self.hours
                and self.day_matches(wall.date()))


def in_gap(z, wall):
    u = wall.replace(tzinfo=z, fold=0).astimezone(UTC)
    return u.astimezone(z).replace(tzinfo=None) != wall


def wall_to_instant(z, wall):
    """refreshd's rule: a skipped wall time maps to the end of the gap (the
    transition instant), a repeated one to its first occurrence."""
    u0 = int(wall.replace(tzinfo=z, fold=0).timestamp())
    if not in_gap(z, wall):
        return u0
    lo, hi = int(wall.replace(tzinfo=z, fold=1).timestamp()), u0
    after = dt.datetime.fromtimestamp(u0, z).utcoffset()
    while hi - lo > 1:  # the first instant with the offset after the gap
        mid = (lo + hi) // 2
        if dt.datetime.fromtimestamp(mid, z).utcoffset() == after:
            hi = mid
        else:
            lo = mid
    return hi


def oracle(expr, zone, start, n):
    spec, z, out = Spec(expr), zoneinfo.ZoneInfo(zone), []
    day = dt.datetime.fromtimestamp(start, z).date() - dt.timedelta(days=1)
    slots = [(h, m) for h in sorted(spec.hours) for m in sorted(spec.minutes)]
    while len(out) < n:
        if spec.day_matches(day):
            for h, m in slots:
                t = wall_to_instant(z, dt.datetime(day.year, day.month, day.day, h, m))
                if t > start and (not out or t > out[-1]):
                    out.append(t)
                    if len(out) == n:
                        break
        day += dt.timedelta(days=1)
    return [iso(t) for t in out]


def local(zone, s):
    t = dt.datetime.fromtimestamp(epoch(s), zoneinfo.ZoneInfo(zone))
    return t.strftime("%Y-%m-%d %H:%M %Z")


def classify(expr, zone, fire, only_in, truth):
    """Why FIRE, produced only by ONLY_IN ('refreshd' or the peer), differs."""
    z, spec = zoneinfo.ZoneInfo(zone), Spec(expr)
    loc = dt.datetime.fromtimestamp(epoch(fire), z)
    wall = loc.replace(tzinfo=None, fold=0)
    named = spec.matches(wall)
    if only_in == "refreshd":
        if fire not in truth:
            return "BUG", "refreshd WRONG: not a fire of the expression"
        if not named:
            return "DST", ("DST gap: refreshd fires the skipped wall slot at the end of the gap "
                           "(02:30 -> 03:00), as it documents")
        return "PEER", "peer missed a fire at a wall time the expression names"
    if loc.fold == 1 and named:
        return "DST", "DST overlap: the peer fires the repeated wall time again; refreshd fires it once"
    if named and fire in truth:
        return "BUG", "refreshd WRONG: missed a fire the expression names"
    if named:
        return "DST", "DST: the peer fires a wall slot at an instant other than refreshd's rule"
    # A slot skipped by a spring-forward gap, placed by the peer with the
    # offset from before the gap, lands one gap length after the slot.
    for o in {dt.datetime.fromtimestamp(epoch(fire) + d, z).utcoffset() for d in (-86400, 86400)}:
        w = (loc.astimezone(UTC) + o).replace(tzinfo=None)
        if spec.matches(w) and in_gap(z, w):
            return "DST", ("DST gap: the peer fires the skipped wall slot one gap length late, at the "
                           "slot read with the offset from before the gap (02:30 -> 03:30)")
    return "PEER", "peer wrong: fires at a local time the expression does not name"


# ---- agreement ----
print()
print(f"AGREEMENT: first {N} fire times, position by position; oracle = independent day-by-day")
print("enumeration with standard cron fields and refreshd's documented DST rule")
print()
print("| start | expression | zone | refreshd = oracle | croniter = refreshd | cron-parser = refreshd |")
print("|---|---|---|--:|--:|--:|")
notes, totals = [], {e: [0, 0] for e in ENGINES}
classes = {}
for start in STARTS:
    dumps = {e: read_dump(e, start) for e in ENGINES}
    for expr in EXPRS + [DST_PROBE]:
        for zone in ZONES:
            case = (expr, zone)
            truth = oracle(expr, zone, start, N)
            ref = dumps["refreshd"].get(case, [])
            cells = []
            for engine, base in (("refreshd", truth), ("croniter", ref), ("cron-parser", ref)):
                got = dumps[engine].get(case)
                if got is None:
                    cells.append("n/a")
                    continue
                if got == ["unsupported"]:
                    cells.append("unsupported")
                    continue
                agree = sum(1 for a, b in zip(got, base) if a == b)
                totals[engine][0] += agree
                totals[engine][1] += N - agree
                cells.append(f"{agree}/{N}")
                if agree == N:
                    continue
                i = next((i for i, (a, b) in enumerate(zip(got, base)) if a != b), min(len(got), len(base)))
                first = lambda l: f"{l[i]} ({local(zone, l[i])})" if i < len(l) and l[i][0].isdigit() else \
                    (l[i] if i < len(l) else "(none)")
                label = "refreshd vs oracle" if engine == "refreshd" else f"{engine} vs refreshd"
                notes.append(f"- {iso(start)} `{expr}` {zone}, {label}: first disagreement at #{i + 1}: "
                             f"{'oracle' if engine == 'refreshd' else 'refreshd'} {first(base)}, "
                             f"{engine} {first(got)}")
                # Every differing fire within the span both lists cover.
                good = [s for s in got if s[0].isdigit()]
                if not good or not base:
                    continue
                horizon = min(good[-1], base[-1])
                a_only = sorted(set(s for s in good if s <= horizon) - set(base))
                b_only = sorted(set(s for s in base if s <= horizon) - set(good))
                if engine == "refreshd":
                    found = [(f, "refreshd") for f in a_only] + [(f, "oracle") for f in b_only]
                else:
                    found = [(f, engine) for f in a_only] + [(f, "refreshd") for f in b_only]
                for fire, who in found:
                    if who == "oracle":
                        kind, why = "BUG", "refreshd WRONG: missed a fire the expression names"
                    else:
                        kind, why = classify(expr, zone, fire, "refreshd" if who == "refreshd" else engine, truth)
                    key = (engine, kind, why)
                    classes.setdefault(key, []).append(f"{fire} ({local(zone, fire)}) {expr!r} {zone}")
            print(f"| {iso(start)} | `{expr}` | {zone} | " + " | ".join(cells) + " |")

print()
for engine in ENGINES:
    a, d = totals[engine]
    what = "oracle" if engine == "refreshd" else "refreshd"
    print(f"{engine} vs {what}: {a} agree, {d} disagree (positions)")
if notes:
    print()
    print("First disagreements:")
    print("\n".join(notes))
if classes:
    print()
    print("Differing fires, classified (DST = semantics differ, PEER = the peer is wrong, BUG = refreshd is wrong):")
    for (engine, kind, why), fires in sorted(classes.items()):
        print(f"- {engine}: {len(fires)} x [{kind}] {why}; e.g. {fires[0]}")
if any(kind == "BUG" for _, kind, _ in classes):
    print()
    print("REFRESHD DISAGREES WITH THE ORACLE: see the [BUG] lines above.")
PYEOF

if [[ $failed -ne 0 ]]; then
        echo "Some part of the benchmark failed to run (see above)" >&2
        exit 1
fi
