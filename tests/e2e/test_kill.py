#!/usr/bin/env python3
"""Crash-safety test of `refreshd run`: kill -9 at random moments, restart at once, and check with the
simulator's record that no slot was refreshed twice or lost and every job was followed to its end.

    python3 tests/e2e/test_kill.py build/daemon/refreshd [--kills N] [--envs M] [--seconds S] [--seed X]

Defaults (CI): 30 kills, 8 environments, 30 s of clean running after the last kill: about 60-70 s.
The full run: --kills 200 (about 4 minutes). --max-down X keeps the daemon down a random 0..X s
before each restart (default 0), --job-seconds the simulator's job duration (2.5), --seed a seed,
--clock-offset N puts Zuora's clock N seconds ahead of ours (negative: behind; CI runs -300, 0 and
+120): every time Zuora writes is shifted, and the accounting below stays in real time.
--post-latency S makes Zuora answer each POST S seconds after creating its job (a kill in between
leaves a job the next start must find), --period P spaces an environment's slots P s apart (10). Exit status 0 when every check passes, 1 otherwise,
2 on a usage error. Artifacts (every run's log, the simulator's log, state) are kept in a temp
directory when the run fails, or always with --keep.

Setup
-----
The simulator (tests/sim/zuora_sim.py, jobs of --job-seconds, default 2.5 s, no idempotency-key
support, so the daemon's own at-most-once logic is what is tested) and refreshd with M environments
k0..k(M-1). Environment i fires every 10 s at second offset o_i = floor(10 i / M) ("o_i/10 * * * *
*"), catch_up true, poll_interval 1s, request_timeout 5s. A job (2.5 s plus polling) ends well before
its environment's next slot, so in a clean run every slot gets its own job.

Kill loop: N times, wait a uniform random 0.2-1.5 s after the daemon is ready, kill -9 it, load
state.json with json.load (a parse failure, or the file missing once it has existed, is counted),
and start it again at once with the same state directory. The delays make the kills land in every
phase: token fetch, eligibility GET, list check, between the intent write and the POST, during the
POST, between the POST's answer and the state write, while polling, idle. The phase of each kill
(the last request the simulator saw before it) is printed as a histogram.

Then the daemon runs clean for S seconds. Finally every environment is disabled (enabled: false,
SIGHUP): no new slot fires, the jobs in flight are still followed; once every job the simulator
created has ended and the daemon has logged its end, SIGTERM.

Accounting
----------
Times: a slot is an epoch second t with t mod 10 = o_i. The window of environment i is the slots
after the first start (an environment with no state starts at its next slot) and at or before the
SIGHUP that disables the schedules, less one second; a slot after that boundary counts only if the
daemon logged something for it.

Daemon's own lines (every run's stderr, parsed by harness.parse_log_line; the SLOT field names the
slot): "is due" and "catching up" (SLOT_FIRED), "submitted" (SUBMITTED), "already refreshes"
(ADOPTED), "skipped" (SKIPPED, with its reason), the end of a job ("job ID completed" / "ended"),
"started" (one per run).

Each slot of the window is classified:
  due      -- the daemon logged it as due, submitted or adopted (or caught it up without a skip).
              It must have exactly one job; none is "lost", two or more is "duplicate". (A slot
              logged due in one run and then skipped in the next, with no job, is lost too: its
              refresh was started and dropped.)
  skipped  -- only "skipped" lines for it (a job still running, a slot still being submitted,
              min_interval, catch_up off), or a catch-up followed by a skip: a stated rule. It must
              have no job of its own. A skip "job X is still running" is checked against the
              simulator: if X had ended (jobEndTime) more than poll_interval + 1 s before the slot,
              the slot did not come while the job ran (and the daemon could have known), so it is
              lost.
  collapsed-- no line at all, and the next slot of the environment the daemon logged anything for
              was a catch-up: several missed slots collapsed into one catch-up (README: "catch_up
              fires once for the latest missed slot"). It must have no job. (Collapsed slots that
              did not fall into a downtime are counted separately, for information.)
  silent   -- no line at all and not collapsed: lost.

Jobs to slots: a job's slot is the latest slot at or before its creation time on the simulator
(/_sim/jobs "created", epoch seconds with a fraction). When a submission was delayed past the next
slot (retries), the daemon's own claim decides: if it logged the job as submitted or adopted for an
earlier slot X (X at or before the creation-time slot), the job counts for X. A claim for a LATER
slot than the job's creation (adopting an older job for a newer slot) is never believed: the newer
slot then has no job and is lost; such adoptions are also listed as "wrong adoptions".

Followed to the end: every job the simulator created must have ended on the simulator, and the
daemon must have logged its end (JOB_ID) in some run, or the final state.json's last_job names it.

The result line prints: kills, slots due, jobs created, duplicates, lost, jobs followed to the end,
state parse failures, and the details of every problem.
"""

import argparse
import collections
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from harness import Daemon, Sim, make_config, parse_log_line, wait_until  # noqa: E402

PERIOD = 10


def parse_ts(ts):
    """The console line's timestamp "2026-11-29T01:07:01.000Z" (or "@EPOCH.mmm") -> epoch seconds."""
    if ts is None:
        return None
    if ts.startswith("@"):
        return float(ts[1:])
    import calendar
    base, frac = ts[:-1].split(".")
    return calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S")) + int(frac) / 1000.0


def iso_to_epoch(text):
    import calendar
    return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))


def slot_at_or_before(t, offset):
    t = int(t // 1)
    return t - ((t - offset) % PERIOD)


def env_config(sim, n_envs, enabled=True):
    envs = []
    for i in range(n_envs):
        off = (PERIOD * i) // n_envs
        envs.append(dict(name="k%d" % i, id="env-k%d" % i, schedule="%d/%d * * * * *" % (off, PERIOD),
                         enabled=None if enabled else False))
    return make_config(sim.base_url, envs,
                       defaults={"catch_up": True, "poll_interval": "1s"},
                       zuora={"request_timeout": "5s"}), {("k%d" % i): (PERIOD * i) // n_envs for i in range(n_envs)}


class Line:
    def __init__(self, raw, run):
        self.raw = raw
        self.run = run
        ts, self.level, self.message, self.fields = parse_log_line(raw)
        self.t = parse_ts(ts)

    def get(self, key):
        return self.fields.get("REFRESHD_" + key)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("binary")
    ap.add_argument("--kills", type=int, default=30)
    ap.add_argument("--envs", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=30.0, help="clean running after the last kill")
    ap.add_argument("--job-seconds", type=float, default=2.5)
    ap.add_argument("--period", type=int, default=10, choices=(5, 6, 10, 12, 15, 20, 30),
                    help="seconds between an environment's slots")
    ap.add_argument("--post-latency", type=float, default=0.0,
                    help="seconds Zuora takes to answer a POST after creating its job")
    ap.add_argument("--clock-offset", type=float, default=0.0,
                    help="Zuora's clock minus ours, seconds (the simulator's --clock-offset)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--max-down", type=float, default=0.0,
                    help="stay down a uniform 0..X s before each restart (default 0: restart at once); "
                         "more than the period exercises the collapsing of missed slots into one catch-up")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args(argv[1:])
    global PERIOD
    PERIOD = args.period
    binary = os.path.abspath(args.binary)
    if not os.access(binary, os.X_OK):
        print("not an executable: %s" % binary, file=sys.stderr)
        return 2
    if not 1 <= args.envs <= 60:
        print("--envs must be 1..60", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 30)
    rng = random.Random(seed)
    work = tempfile.mkdtemp(prefix="refreshd-kill-")
    print("refreshd kill test: %d kills, %d environments, Zuora's clock %+g s, seed %d, work dir %s"
          % (args.kills, args.envs, args.clock_offset, seed, work), flush=True)

    # A private copy: every run uses the same binary, even if the build tree is rebuilt meanwhile.
    copy = os.path.join(work, "refreshd")
    shutil.copy2(binary, copy)
    binary = copy
    sim = Sim(work, job_seconds=args.job_seconds, extra_args=["--clock-offset", str(args.clock_offset)])
    if args.post_latency > 0:
        sim.fault({"match": {"method": "POST", "path": r"^/test-environments/[^/]+/jobs$"}, "action": "slow",
                   "delay": args.post_latency, "commit_first": True, "times": -1})
    d = None
    try:
        cfg, offsets = env_config(sim, args.envs)
        d = Daemon(binary, work, cfg)
        state_path = os.path.join(d.state_dir, "state.json")
        run_starts = []          # (run number, time the start was asked)
        kills = []               # times of the kills
        parse_failures = []
        state_seen = False
        t_begin = time.time()
        run_first_line = [0]     # index in d.all_lines of each run's first line
        d.start()
        run_starts.append(t_begin)
        for k in range(args.kills):
            time.sleep(rng.uniform(0.2, 1.5))
            kills.append(time.time())
            d.kill9()
            try:
                with open(state_path) as fh:
                    json.load(fh)
                state_seen = True
            except FileNotFoundError:
                if state_seen:
                    parse_failures.append("kill %d: state.json is gone" % (k + 1))
            except (ValueError, OSError) as exc:
                parse_failures.append("kill %d: %s" % (k + 1, exc))
                shutil.copy(state_path, os.path.join(work, "unparsable-state.%d.json" % (k + 1)))
            if args.max_down > 0:
                time.sleep(rng.uniform(0, args.max_down))
            run_starts.append(time.time())
            run_first_line.append(len(d.all_lines))  # the killed run's reader thread has ended
            d.start(timeout=20)
            if (k + 1) % 10 == 0:
                print("  %d kills" % (k + 1), flush=True)
        t_last_kill = time.time()
        time.sleep(args.seconds)

        # Disable every schedule; jobs in flight are still followed.
        cfg_off, _ = env_config(sim, args.envs, enabled=False)
        d.write_config(cfg_off)
        n = len(d.notifications())
        t_hup = time.time()
        d.sighup()
        d.wait_notify(r"(^|\n)READY=1($|\n)", timeout=10, since=n)

        def all_followed():
            jobs = sim.jobs()
            if any(j["running"] for j in jobs):
                return False
            ended = {Line(r, 0).get("JOB_ID") for r in d.all_lines if re.search(r"job \S+ (completed|ended)", r)}
            return all(j["id"] in ended for j in jobs)

        wait_until(all_followed, 30, 0.25)
        time.sleep(1.5)
        d.sigterm()
        rc = d.wait_exit(10)
        t_end = time.time()
        try:
            with open(state_path) as fh:
                final_state = json.load(fh)
        except (OSError, ValueError) as exc:
            parse_failures.append("final: %s" % exc)
            final_state = {}
        leftovers = [f for f in os.listdir(d.state_dir) if f not in ("state.json", "intents", "lock")]

        jobs = sim.jobs()
        requests = sim.requests()
        ok = report(args, seed, d, sim, offsets, jobs, requests, run_starts, run_first_line, kills, t_hup, final_state,
                    parse_failures, leftovers, rc, t_begin, t_last_kill, t_end)
    finally:
        if d is not None:
            d.stop()
        sim.stop()
    if ok and not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print("artifacts kept in %s" % work)
    return 0 if ok else 1


def kill_phase(requests, t):
    """What the daemon was doing at a kill: the last request the simulator saw before it."""
    before = [r for r in requests if r["time"] <= t]
    if not before:
        return "starting"
    r = before[-1]
    if t - r["time"] > 1.2:
        return "idle"
    p, m = r["path"], r["method"]
    if p == "/oauth/token":
        what = "token"
    elif m == "POST":
        what = "POST" if r["status"] is not None else "POST (no answer)"
    elif re.search(r"/jobs/[0-9a-f]{32}$", p):
        what = "polling"
    elif p.endswith("/jobs"):
        what = "list check"
    else:
        what = "eligibility GET"
    return "after %s" % what


def report(args, seed, d, sim, offsets, jobs, requests, run_starts, run_first_line, kills, t_hup, final_state,
           parse_failures, leftovers, rc, t_begin, t_last_kill, t_end):
    # -- the daemon's lines, with their run
    lines = []
    run = 0
    firsts = set(run_first_line)
    for i, raw in enumerate(d.all_lines):
        if i in firsts:
            run += 1
        lines.append(Line(raw, run))
    problems = []
    info = []

    by_env = collections.defaultdict(list)
    for l in lines:
        if l.get("ENVIRONMENT"):
            by_env[l.get("ENVIRONMENT")].append(l)
    ended_ids = {l.get("JOB_ID") for l in lines if l.get("JOB_ID") and re.search(r"job \S+ (completed|ended)", l.raw)}
    last_jobs = set()
    for env in (final_state.get("environments") or {}).values() if isinstance(final_state.get("environments"), dict) \
            else (final_state.get("environments") or []):
        lj = env.get("last_job") if isinstance(env, dict) else None
        if isinstance(lj, dict) and lj.get("id"):
            last_jobs.add(lj["id"])
    if not last_jobs:
        last_jobs = set(re.findall(r'"last_job"\s*:\s*\{[^{}]*?"id"\s*:\s*"([0-9a-f]{32})"', json.dumps(final_state)))

    first_start = min(l.t for l in lines if l.t) if lines else t_begin
    downtimes = list(zip(kills, run_starts[1:]))

    counts = collections.Counter()
    wrong_adoptions = []
    jobs_by_env = collections.defaultdict(list)
    jobs_by_id = {j["id"]: j for j in jobs}
    for j in jobs:
        jobs_by_env[j["env_id"]].append(j)

    for name in sorted(offsets, key=lambda n: int(n[1:])):
        off = offsets[name]
        env_id = "env-" + name
        ev = by_env.get(name, [])
        due, skipped, caught = collections.defaultdict(list), collections.defaultdict(list), set()
        catchups = collections.defaultdict(list)
        claims = collections.defaultdict(set)  # job id -> slots the daemon said it covers
        for l in ev:
            slot = l.get("SLOT")
            if not slot:
                continue
            s = iso_to_epoch(slot)
            if re.search(r"catching up", l.message):
                caught.add(s)
                catchups[s].append(l)
            elif re.search(r"is due$|is due ", l.message):
                due[s].append(l)
            elif re.search(r"submitted", l.message) and l.get("JOB_ID"):
                due[s].append(l)
                claims[l.get("JOB_ID")].add(s)
            elif re.search(r"already refreshes", l.message) and l.get("JOB_ID"):
                due[s].append(l)
                claims[l.get("JOB_ID")].add(s)
            elif re.search(r"skipped", l.message):
                skipped[s].append(l)
        # A catch-up is followed, in the same run, by "is due" or by a skip; one with neither is due.
        for s, cls in catchups.items():
            for c in cls:
                if not any(l.run == c.run and l.t >= c.t for l in due.get(s, []) + skipped.get(s, [])):
                    due[s].append(c)

        # jobs -> slots
        per_slot = collections.defaultdict(list)
        for j in jobs_by_env.get(env_id, []):
            by_time = slot_at_or_before(j["created"], off)
            earlier = [x for x in claims.get(j["id"], ()) if x <= by_time]
            slot = max(earlier) if earlier else by_time
            per_slot[slot].append(j)
            for x in claims.get(j["id"], ()):
                if x > by_time:
                    wrong_adoptions.append("%s: job %s created %s (slot %s) adopted for slot %s" % (
                        name, j["id"], time.strftime("%H:%M:%S", time.gmtime(j["created"])),
                        hms(by_time), hms(x)))

        # the window
        lo = int(first_start)
        hi = int(t_hup - 1)
        slots = {s for s in range(lo + 1, hi + 1) if s % PERIOD == off}
        slots |= {s for s in list(due) + list(skipped) if s > lo}
        slots |= {s for s in per_slot}
        logged = sorted(set(due) | set(skipped))
        for s in sorted(slots):
            js = per_slot.get(s, [])
            if s in due:
                counts["due"] += 1
                later_skip = [l for l in skipped.get(s, []) if l.t and due[s][0].t and l.t > due[s][0].t]
                if len(js) == 0:
                    counts["lost"] += 1
                    problems.append("LOST %s slot %s: logged %s, no job on the server%s" % (
                        name, hms(s), "; ".join(short(l) for l in due[s][:3]),
                        " (then skipped: %s)" % short(later_skip[0]) if later_skip else ""))
                elif len(js) > 1:
                    counts["duplicates"] += 1
                    problems.append("DUPLICATE %s slot %s: %d jobs %s" % (
                        name, hms(s), len(js), ", ".join("%s created %.3f" % (j["id"], j["created"]) for j in js)))
            elif s in skipped:
                counts["skipped"] += 1
                false_skip = None
                for l in skipped[s]:
                    m = re.search(r"job ([0-9a-f]{32}) is still running", l.message)
                    j = jobs_by_id.get(m.group(1)) if m else None
                    if j and j.get("jobEndTime") and iso_to_epoch(j["jobEndTime"]) + 2 <= s:
                        false_skip = (l, j)
                if false_skip:
                    counts["lost"] += 1
                    counts["false_skips"] += 1
                    problems.append("LOST %s slot %s: skipped as if job %s were still running, but it had ended at "
                                    "%s: %s" % (name, hms(s), false_skip[1]["id"],
                                                hms(iso_to_epoch(false_skip[1]["jobEndTime"])), short(false_skip[0])))
                if js:
                    counts["unexplained"] += 1
                    problems.append("JOB FOR A SKIPPED SLOT %s slot %s: %s; skip: %s" % (
                        name, hms(s), [j["id"] for j in js], short(skipped[s][0])))
            else:
                if s > hi:
                    if js:
                        counts["unexplained"] += 1
                        problems.append("UNLOGGED JOB %s slot %s: %s" % (name, hms(s), [j["id"] for j in js]))
                    continue
                nxt = [x for x in logged if x > s]
                if nxt and nxt[0] in caught:
                    counts["collapsed"] += 1
                    if not any(a - 1 <= s <= b + 1 for a, b in downtimes):
                        counts["collapsed_no_downtime"] += 1
                    if js:
                        counts["unexplained"] += 1
                        problems.append("JOB FOR A COLLAPSED SLOT %s slot %s: %s" % (name, hms(s), [j["id"] for j in js]))
                else:
                    counts["lost"] += 1
                    counts["silent"] += 1
                    problems.append("LOST (silent) %s slot %s: no line and no later catch-up; jobs %s" % (
                        name, hms(s), [j["id"] for j in js]))

    followed = 0
    for j in jobs:
        ok = not j["running"] and (j["id"] in ended_ids or j["id"] in last_jobs)
        if ok:
            followed += 1
        else:
            problems.append("NOT FOLLOWED job %s (%s, created %.3f, status %s, running %s)" % (
                j["id"], j["env_id"], j["created"], j["status"], j["running"]))
    for p in parse_failures:
        problems.append("STATE " + p)
    if rc != 0:
        problems.append("EXIT refreshd exited %s on SIGTERM" % rc)
    problems += ["WRONG ADOPTION " + w for w in wrong_adoptions]

    phases = collections.Counter(kill_phase(requests, t) for t in kills)
    posts = [r["time"] for r in requests if r["method"] == "POST" and r["path"] != "/oauth/token"]
    near_post = sum(1 for t in kills if any(0 <= t - p <= 0.1 for p in posts))
    # A slot adopted or submitted in a run that did not fire it: the intent written before a kill,
    # resumed by the list check at the next start.
    fired = {(l.run, l.get("ENVIRONMENT"), l.get("SLOT")) for l in lines if re.search(r"is due|catching up", l.message)}
    resumed = collections.Counter(
        "adopted" if "already refreshes" in l.message else "submitted again"
        for l in lines if re.search(r"already refreshes|submitted", l.message)
        and (l.run, l.get("ENVIRONMENT"), l.get("SLOT")) not in fired)
    print("\nkill phases: %s" % ", ".join("%s %d" % kv for kv in sorted(phases.items(), key=lambda kv: -kv[1])))
    print("kills within 100 ms after a POST: %d; slots resumed from a written intent after a kill: %s"
          % (near_post, ", ".join("%s %d" % kv for kv in sorted(resumed.items())) or "none"))
    print("runs %d, %.0f s of kills, %.0f s in all; skipped slots %d, collapsed slots %d (%d outside a downtime); "
          "temp files left in the state dir %d; wrong adoptions %d"
          % (len(run_starts), t_last_kill - t_begin, t_end - t_begin, counts["skipped"], counts["collapsed"],
             counts["collapsed_no_downtime"], len(leftovers), len(wrong_adoptions)))
    for p in problems[:60]:
        print("  " + p)
    if len(problems) > 60:
        print("  ... %d more" % (len(problems) - 60))
    print("kills %d, slots due %d, jobs created %d, duplicates %d, lost %d, jobs followed to the end %d/%d, "
          "state parse failures %d"
          % (len(kills), counts["due"], len(jobs), counts["duplicates"], counts["lost"], followed, len(jobs),
             len(parse_failures)))
    bad = counts["duplicates"] or counts["lost"] or parse_failures or followed != len(jobs) or \
        counts["unexplained"] or rc != 0
    print("RESULT: %s" % ("FAIL" if bad else "PASS"), flush=True)
    return not bad


def hms(t):
    return time.strftime("%H:%M:%S", time.gmtime(t))


def short(l):
    return "[run %d %s] %s" % (l.run, hms(l.t) if l.t else "?", l.message[:140])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
