#!/usr/bin/env python3
"""End-to-end tests of refreshd's clock rules: wall-clock steps and suspend.

    python3 tests/e2e/test_clock.py build/daemon/refreshd build/tests/fakeclock.so [NAME-FILTER...]

The machine's clock is never touched. The daemon runs with tests/e2e/fakeclock.c preloaded: its
CLOCK_REALTIME starts at a chosen instant of 2030 (so every slot is known in advance), and the test
steps that clock (a settimeofday() of the whole machine) or the wall and boot clocks together (a
suspend: the process is stopped, both clocks jump, it is continued), while the shim does to the
process's timerfds what the kernel does on a clock change: absolute wall-clock timers are re-armed
against the new time, and a TFD_TIMER_CANCEL_ON_SET timer wakes up with ECANCELED. CLOCK_MONOTONIC
is never moved. The simulator keeps the real time, as a Zuora server's clock would: the daemon's
clock is the one that is off.

The contract (README.md, "Guarantees"; issue: "Clock"):
* the loop notices a wall-clock step at once and plans again (the notice comes within a second
  even with no timer due);
* a step backwards never fires again a slot already fired (state.json's last_slot says so), even
  when the clock passes the slot's instant a second time;
* a step forwards over several slots fires once, for the latest (the catch-up rule), at once, with
  catch_up true or false alike (catch_up is about downtime; the clock passed these slots while
  refreshd ran, as a systemd timer's would);
* after a suspend, the slots that came due fire once, for the latest; a job followed across a
  suspend is polled once on resume, not once per missed interval;
* polls run on CLOCK_BOOTTIME: wall-clock steps of a day either way neither stall nor hurry them;
* time zones are per environment (UTC by default): the process's TZ changes no slot.
"""

import calendar
import os
import signal
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Daemon, Sim, flatten, make_config, run_parallel, wait_until  # noqa: E402

BINARY = None
FAKECLOCK = None
ARTIFACTS = None

HOURLY = "0 * * * *"
LAST_SLOT_NONE = object()


def at(text):
    """'2030-01-07T10:00:00Z' -> epoch seconds."""
    return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))


class Clock(unittest.TestCase):
    def setUp(self):
        self.work = tempfile.mkdtemp(prefix=self.id().split(".")[-1][:50] + "-", dir=ARTIFACTS)

    def sim(self, **kw):
        s = Sim(self.work, **kw)
        self.addCleanup(s.stop)
        return s

    def daemon(self, sim, envs, start, poll="1s", extra_env=None):
        """A daemon whose wall clock reads START (epoch s) when it starts; (daemon, ctl path)."""
        ctl = os.path.join(self.work, "clock.ctl")
        os.mkfifo(ctl)
        env = {"LD_PRELOAD": FAKECLOCK, "FAKECLOCK_REALTIME": "%.3f" % start, "FAKECLOCK_CTL": ctl}
        # An ASan build wants its runtime first in the list of libraries; the shim only wraps libc.
        env["ASAN_OPTIONS"] = ":".join(filter(None, [os.environ.get("ASAN_OPTIONS"), "verify_asan_link_order=0"]))
        env.update(extra_env or {})
        # catch_up: None leaves the key out, so the built-in default (true) applies.
        cfg = make_config(sim.base_url, envs, defaults={"poll_interval": poll, "catch_up": None},
                          zuora={"request_timeout": "5s"})
        d = Daemon(BINARY, self.work, cfg, extra_env=env)
        self.addCleanup(d.stop)
        d.start()
        self.ctl = ctl
        return d

    def step(self, d, real_s, boot_s=0):
        """Moves the daemon's wall clock by REAL_S (and boot clock by BOOT_S) seconds; returns the
        index of the next log line."""
        k = len(d.lines)
        # Non-blocking: the daemon holds the FIFO open (even when stopped), so this never waits.
        fd = os.open(self.ctl, os.O_WRONLY | os.O_NONBLOCK)
        try:
            os.write(fd, b"step %.3f %.3f\n" % (real_s, boot_s))
        finally:
            os.close(fd)
        return k

    def wait_clock_notice(self, d, since, timeout=1.5):
        t0 = time.time()
        d.wait_log(r"system clock was set", timeout=timeout, since=since)
        return time.time() - t0

    def last_slot(self, d, name):
        st = d.state() or {}
        return st.get("environments", {}).get(name, {}).get("last_slot")

    def fired(self, d, name, since=0):
        """The slots (RFC 3339) the daemon reported due for NAME."""
        return [l.get("SLOT") for l in d.events(r"slot \S+ is due", since=since)
                if l.get("ENVIRONMENT") == name]

    def test_step_forwards_fires_latest_slot_once(self):
        sim = self.sim()
        d = self.daemon(sim, [dict(name="a", id="env-a", schedule=HOURLY),
                              dict(name="b", id="env-b", schedule=HOURLY, catch_up=False)],
                        start=at("2030-01-07T09:30:00Z"))
        time.sleep(0.5)
        self.assertEqual(sim.posts(), [], "nothing is due before 10:00")
        k = self.step(d, 3 * 3600)  # 09:30 -> 12:30: 10:00, 11:00 and 12:00 went by
        t0 = time.time()
        self.wait_clock_notice(d, k)
        posts = wait_until(lambda: sim.posts("env-a"), 3)
        self.assertEqual(len(posts), 1, d.tail())
        self.assertLess(posts[0]["time"] - t0, 1.5, "the catch-up fires at once after the step")
        d.wait_log(r"job \S+ completed", timeout=10, since=k)
        time.sleep(1.5)
        self.assertEqual(len(sim.posts("env-a")), 1, "one fire for three slots")
        self.assertEqual(self.fired(d, "a"), ["2030-01-07T12:00:00Z"])
        self.assertEqual(self.last_slot(d, "a"), "2030-01-07T12:00:00Z")
        # catch_up is about downtime: slots the clock jumps over while refreshd runs fire once either way.
        self.assertEqual(len(sim.posts("env-b")), 1, d.tail())
        self.assertEqual(self.fired(d, "b"), ["2030-01-07T12:00:00Z"])
        self.assertEqual(d.events(r"skipped", since=k), [])

    def test_step_backwards_never_fires_a_slot_again(self):
        sim = self.sim(job_seconds=1)
        d = self.daemon(sim, [dict(name="a", id="env-a", schedule=HOURLY)], start=at("2030-01-07T09:59:58Z"))
        d.wait_log(r"job \S+ completed", timeout=10)
        self.assertEqual(self.fired(d, "a"), ["2030-01-07T10:00:00Z"])
        self.assertEqual(len(sim.posts("env-a")), 1)
        # The wall clock now reads about 10:00:03; back to about 09:59:56, and let it pass 10:00 again.
        k = self.step(d, -7)
        waited = self.wait_clock_notice(d, k)
        self.assertLess(waited, 1.0, "the step is noticed at once, with no timer due")
        time.sleep(9)
        self.assertEqual(len(sim.posts("env-a")), 1, "10:00 fired twice:\n" + d.tail())
        self.assertEqual(self.fired(d, "a"), ["2030-01-07T10:00:00Z"])
        self.assertEqual(self.last_slot(d, "a"), "2030-01-07T10:00:00Z")
        # A step forwards to just before 11:00: the next slot fires once, on time.
        k = self.step(d, 3600 - 10)
        self.wait_clock_notice(d, k)
        d.wait_log(r"slot \S+ is due", timeout=15, since=k)
        self.assertEqual(self.fired(d, "a", since=k), ["2030-01-07T11:00:00Z"])
        due = d.events(r"slot \S+ is due", since=k)[0]
        self.assertTrue(due.ts.startswith("2030-01-07T11:00:00."), "fired at %s, not at 11:00:00" % due.ts)
        d.wait_log(r"job \S+ completed", timeout=10, since=k)
        self.assertEqual(len(sim.posts("env-a")), 2)

    def test_suspend_fires_due_slot_once_and_polls_once_on_resume(self):
        sim = self.sim(job_seconds=6)
        d = self.daemon(sim, [dict(name="a", id="env-a", schedule=HOURLY)], start=at("2030-01-07T10:59:30Z"))
        # Suspend before 11:00; resume two hours later (wall and boot clocks move, monotonic does not).
        d.proc.send_signal(signal.SIGSTOP)
        k = self.step(d, 2 * 3600, 2 * 3600)
        time.sleep(0.3)
        t0 = time.time()
        d.proc.send_signal(signal.SIGCONT)
        self.wait_clock_notice(d, k)
        posts = wait_until(lambda: sim.posts("env-a"), 3)
        self.assertEqual(len(posts), 1, d.tail())
        self.assertLess(posts[0]["time"] - t0, 1.5)
        self.assertEqual(self.fired(d, "a"), ["2030-01-07T12:00:00Z"])
        # A suspend while the job runs: one poll on resume, then one per poll_interval again.
        wait_until(lambda: len(sim.polls("env-a")) >= 2, 5)
        d.proc.send_signal(signal.SIGSTOP)
        n_before = len(sim.polls("env-a"))
        k = self.step(d, 3600, 3600)  # 13:00 goes by while the job runs: the overlap rule skips it
        time.sleep(0.3)
        t0 = time.time()
        d.proc.send_signal(signal.SIGCONT)
        self.wait_clock_notice(d, k)
        wait_until(lambda: len(sim.polls("env-a")) > n_before, 2)
        time.sleep(0.6)
        resumed = [p for p in sim.polls("env-a")[n_before:] if p["time"] < t0 + 0.6]
        self.assertEqual(len(resumed), 1, "polls right after the resume: %s" % [p["time"] - t0 for p in resumed])
        d.wait_log(r"job \S+ completed", timeout=12, since=k)
        self.assertEqual(len(sim.posts("env-a")), 1, "13:00 overlapped the running job:\n" + d.tail())
        self.assertIn("2030-01-07T13:00:00Z", [l.get("SLOT") for l in d.events(r"skipped", since=k)])

    def test_system_zone_changes_nothing(self):
        # Zones are per environment (UTC by default), never the process's local time: a TZ of
        # +05:30 and a system zone file of any kind leave the UTC slot where it is.
        sim = self.sim()
        d = self.daemon(sim, [dict(name="u", id="env-u", schedule=HOURLY, timezone=None),
                              dict(name="k", id="env-k", schedule=HOURLY, timezone="Asia/Kolkata")],
                        start=at("2030-01-07T09:59:57Z"), extra_env={"TZ": "America/St_Johns"})
        d.wait_log(r"slot \S+ is due", timeout=6, ENVIRONMENT="u")
        due = d.events(r"slot \S+ is due")
        self.assertEqual([(l.get("ENVIRONMENT"), l.get("SLOT")) for l in due], [("u", "2030-01-07T10:00:00Z")])
        self.assertTrue(due[0].ts.startswith("2030-01-07T10:00:00."), due[0].ts)
        # Kolkata's hours start at half past in UTC: step to 10:29:57, it fires at 10:30:00Z.
        k = self.step(d, at("2030-01-07T10:29:57Z") - at("2030-01-07T10:00:00Z") - 0.05)
        d.wait_log(r"slot \S+ is due", timeout=6, since=k, ENVIRONMENT="k")
        due = d.events(r"slot \S+ is due", since=k)
        self.assertEqual([(l.get("ENVIRONMENT"), l.get("SLOT")) for l in due], [("k", "2030-01-07T10:30:00Z")])
        self.assertTrue(due[0].ts.startswith("2030-01-07T10:30:00."), due[0].ts)

    def test_polls_ignore_wall_clock_steps(self):
        sim = self.sim(job_seconds=12)
        d = self.daemon(sim, [dict(name="a", id="env-a", schedule=HOURLY)], start=at("2030-01-07T09:59:58Z"))
        wait_until(lambda: len(sim.polls("env-a")) >= 1, 6)
        for delta in (-86400, 86400 + 600):  # a day back, then a day and ten minutes forwards
            n0, t0 = len(sim.polls("env-a")), time.time()
            k = self.step(d, delta)
            self.wait_clock_notice(d, k)
            time.sleep(3.5 - (time.time() - t0))
            n = len(sim.polls("env-a")) - n0
            self.assertTrue(3 <= n <= 4, "%d polls in 3.5 s after a step of %+d s (poll_interval 1s)" % (n, delta))
        d.wait_log(r"job \S+ completed", timeout=12)
        # The net step forwards (10:00:0x -> 10:10:0x) passed no slot: still one POST.
        self.assertEqual(len(sim.posts("env-a")), 1, d.tail())


def main(argv):
    global BINARY, FAKECLOCK, ARTIFACTS
    if len(argv) < 3:
        print("usage: %s /path/to/refreshd /path/to/fakeclock.so [NAME-FILTER...]" % argv[0], file=sys.stderr)
        return 2
    BINARY, FAKECLOCK = os.path.abspath(argv[1]), os.path.abspath(argv[2])
    filters = argv[3:]
    ARTIFACTS = tempfile.mkdtemp(prefix="refreshd-clock-")
    tests = list(flatten(unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__])))
    if filters:
        tests = [t for t in tests if any(f in t.id() for f in filters)]
    return run_parallel(tests, int(os.environ.get("REFRESHD_E2E_JOBS", "4")), "refreshd clock e2e", ARTIFACTS)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
