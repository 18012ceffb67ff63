#!/usr/bin/env python3
"""End-to-end tests of `refreshd run` against the bundled Zuora simulator.

    python3 tests/e2e/test_daemon.py build/daemon/refreshd [NAME-FILTER...]

Each test starts its own simulator(s) and daemon. Tests run in parallel threads (REFRESHD_E2E_JOBS,
default 6); a class with a shared setUpClass runs as one unit. REFRESHD_E2E_VALGRIND=1 adds the
valgrind run. Artifacts (daemon logs, simulator logs, configs, state) are kept under a temp dir when
a test fails, or always with REFRESHD_E2E_KEEP=1.
"""

import datetime
import json
import os
import re
import shutil
import sys
import tempfile
import time
import unittest
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (DEFAULT_SECRET, Daemon, Sim, Timeout, make_config, next_second,  # noqa: E402
                     flatten, refreshd_version, rfc3339, run_check, run_parallel, seconds_schedule,
                     wait_until)

BINARY = None
VERSION = None
ARTIFACTS = None

TRACK_ID_RE = re.compile(r"^[\x20-\x7e]{1,64}$")
JOB_PATH_RE = r"^/test-environments/%s/jobs/[0-9a-f]{32}$"


def hdr(request, name):
    """A recorded request's header, case-insensitively (a repeated header gives a list)."""
    for k, v in request["headers"].items():
        if k.lower() == name.lower():
            return v
    return None


def new_workdir(label):
    return tempfile.mkdtemp(prefix=re.sub(r"[^A-Za-z0-9_.-]", "_", label)[:70] + "-", dir=ARTIFACTS)


class E2E(unittest.TestCase):
    """Base: per-test simulators and daemons, stopped at the end; checks that no daemon output or
    state file ever holds the client secret."""

    def setUp(self):
        self.work = new_workdir(self.id().split(".", 1)[-1])

    # -- factories (usable from setUp, or from setUpClass with cls)

    @classmethod
    def _init_class(cls):
        """For a shared setUpClass: a workdir, and class cleanups of this class only (unittest keeps
        them in one list shared by every TestCase class, which breaks when classes run in parallel)."""
        cls._class_cleanups = []
        cls.work = new_workdir(cls.__name__)

    @classmethod
    def _sim(cls, owner, work, **kw):
        sim = Sim(work, **kw)
        owner(sim.stop)
        return sim

    @classmethod
    def _daemon(cls, owner, work, config_text, **kw):
        d = Daemon(BINARY, work, config_text, **kw)
        owner(lambda: cls._check_no_secret(d))
        owner(d.stop)
        return d

    @staticmethod
    def _check_no_secret(d):
        where = []
        enc = urllib.parse.quote(d.secret, safe="")
        for label, texts in (("stderr", d.all_lines), ("stdout", d.all_stdout), ("sd_notify", d.all_notify)):
            for t in texts:
                if d.secret in t or enc in t:
                    where.append("%s: %s" % (label, t))
        if os.path.isdir(d.state_dir) and (d.secret in d.state_text() or enc in d.state_text()):
            where.append("state dir %s" % d.state_dir)
        if where:
            raise AssertionError("the client secret appears in the daemon's output:\n" + "\n".join(where))

    def sim(self, **kw):
        return self._sim(self.addCleanup, self.work, **kw)

    def daemon(self, config_text, **kw):
        return self._daemon(self.addCleanup, self.work, config_text, **kw)

    # -- helpers

    def env(self, name, env_id, schedule, **kw):
        return dict(name=name, id=env_id, schedule=schedule, **kw)

    def single(self, sim, env_id="env-x", name="e", delay=2, defaults=None, zuora=None, start=True, **envkw):
        """A daemon with one environment firing once, about DELAY s from now: (daemon, slot)."""
        slot = next_second(delay)
        cfg = make_config(sim.base_url, [self.env(name, env_id, seconds_schedule(slot), **envkw)],
                          defaults=defaults, zuora=zuora)
        d = self.daemon(cfg)
        if start:
            d.start()
        return d, slot

    def assertNoPostsFor(self, sim, env_id, seconds, expected=1):
        time.sleep(seconds)
        posts = sim.posts(env_id)
        self.assertEqual(len(posts), expected, "POSTs: %s" % [(p["time"], p["status"]) for p in posts])


def finished_re():
    return r"job \S+ completed"


# ==============================================================================================
# 1. requests, 2. polling, 10. sd_notify (one shared run)

class RequestContract(E2E):
    """One environment (entity_id set) fires once; the job is followed to COMPLETED; SIGTERM."""

    @classmethod
    def setUpClass(cls):
        cls._init_class()
        cls.simu = cls._sim(cls.addClassCleanup, cls.work, job_seconds=1.5)
        cls.slot = next_second(2)
        cfg = make_config(cls.simu.base_url, [dict(name="uat", id="env-req", schedule=seconds_schedule(cls.slot))],
                          zuora={"entity_id": "ent-42"})
        cls.d = cls._daemon(cls.addClassCleanup, cls.work, cfg)
        cls.d.start()
        cls.finished = cls.d.wait_log(finished_re(), timeout=20, JOB_STATUS="COMPLETED")
        cls.polls_at_finish = len(cls.simu.polls("env-req"))
        time.sleep(2.2)
        cls.polls_after = len(cls.simu.polls("env-req"))
        cls.n_notify = len(cls.d.notifications())
        t0 = time.time()
        cls.d.sigterm()
        cls.rc = cls.d.wait_exit(10)
        cls.exit_seconds = time.time() - t0
        cls.reqs = cls.simu.requests()
        cls.api = [r for r in cls.reqs if r["path"] != "/oauth/token"]
        cls.tokens = [r for r in cls.reqs if r["path"] == "/oauth/token"]
        cls.jobs = cls.simu.jobs()

    def setUp(self):
        pass

    def test_oauth_token_request_form(self):
        self.assertEqual(len(self.tokens), 1, [t["body"] for t in self.tokens])
        tok = self.tokens[0]
        self.assertEqual(tok["method"], "POST")
        self.assertIn("application/x-www-form-urlencoded", hdr(tok, "Content-Type") or "")
        form = urllib.parse.parse_qs(tok["body"], keep_blank_values=True)
        self.assertEqual(form.get("client_id"), ["demo-client"])
        self.assertEqual(form.get("client_secret"), [DEFAULT_SECRET])
        self.assertEqual(form.get("grant_type"), ["client_credentials"])
        self.assertEqual(tok["status"], 200)

    def test_token_cached_for_all_calls(self):
        self.assertGreaterEqual(len(self.api), 4, [(r["method"], r["path"]) for r in self.api])
        self.assertEqual(len(self.tokens), 1)
        auths = {hdr(r, "Authorization") for r in self.api}
        self.assertEqual(len(auths), 1, auths)

    def test_eligibility_and_list_check_before_post(self):
        # The eligibility check (made ahead of the slot when there is time) and the list check,
        # then the POST after both answers.
        seq = [(r["method"], r["path"]) for r in self.api[:3]]
        self.assertEqual(sorted(seq[:2]), [("GET", "/test-environments/env-req"),
                                           ("GET", "/test-environments/env-req/jobs")])
        self.assertEqual(seq[2], ("POST", "/test-environments/env-req/jobs"))

    def test_post_body_and_headers(self):
        posts = [r for r in self.api if r["method"] == "POST"]
        self.assertEqual(len(posts), 1)
        p = posts[0]
        self.assertEqual(json.loads(p["body"]), {"jobType": "REFRESH"}, p["body"])
        self.assertEqual((hdr(p, "Content-Type") or "").split(";")[0].strip(), "application/json")
        self.assertTrue(hdr(p, "Idempotency-Key"), p["headers"])
        self.assertEqual(len(self.jobs), 1)

    def test_headers_on_every_api_request(self):
        tracks = []
        for r in self.api:
            what = "%s %s %s" % (r["method"], r["path"], r["headers"])
            self.assertRegex(hdr(r, "Authorization") or "", r"^Bearer \S+$", what)
            track = hdr(r, "Zuora-Track-Id")
            self.assertIsInstance(track, str, what)
            self.assertRegex(track, TRACK_ID_RE, what)
            self.assertFalse(set(track) & set(":;\"'"), what)
            tracks.append(track)
            self.assertIn("gzip", hdr(r, "Accept-Encoding") or "", what)
            self.assertEqual(hdr(r, "User-Agent"), "refreshd/%s" % VERSION, what)
            self.assertEqual(hdr(r, "Zuora-Entity-Ids"), "ent-42", what)
            if r["body"]:
                self.assertEqual((hdr(r, "Content-Type") or "").split(";")[0].strip(), "application/json", what)
        self.assertEqual(len(set(tracks)), len(tracks), "Zuora-Track-Id must be fresh per request: %s" % tracks)

    def test_polled_at_poll_interval_until_terminal(self):
        job_id = self.jobs[0]["id"]
        polls = self.simu.polls("env-req", job_id)
        self.assertGreaterEqual(len(polls), 2)
        gaps = [b["time"] - a["time"] for a, b in zip(polls, polls[1:])]
        for g in gaps:
            self.assertGreaterEqual(g, 0.9, gaps)
            self.assertLessEqual(g, 2.0, gaps)
        self.assertEqual(self.polls_after, self.polls_at_finish, "polled after the terminal status")

    def test_status_and_progress_logged(self):
        job_id = self.jobs[0]["id"]
        d = self.d
        running = d.events(r"is IN_PROGRESS", JOB_STATUS="IN_PROGRESS", JOB_ID=job_id, ENVIRONMENT="uat")
        self.assertTrue(running, d.tail())
        progress = [l for l in d.events(JOB_ID=job_id) if l.get("PROGRESS") is not None]
        self.assertTrue(progress, d.tail())
        for l in progress:
            self.assertRegex(l.get("PROGRESS"), r"^\d{1,3}$")
        f = self.finished  # the terminal status is logged by the end-of-job event
        self.assertIn("completed", f.message)
        self.assertEqual(f.get("JOB_STATUS"), "COMPLETED")
        self.assertEqual(f.get("JOB_ID"), job_id)
        self.assertEqual(f.get("ENVIRONMENT"), "uat")
        self.assertEqual(f.get("ENVIRONMENT_ID"), "env-req")
        self.assertEqual(f.get("SLOT"), rfc3339(self.slot))

    def test_submitted_event_fields(self):
        post = [r for r in self.api if r["method"] == "POST"][0]
        sub = self.d.events(r"submitted", ENVIRONMENT="uat")
        self.assertEqual(len(sub), 1, self.d.tail())
        s = sub[0]
        self.assertEqual(s.get("TRACK_ID"), hdr(post, "Zuora-Track-Id"))
        self.assertEqual(s.get("JOB_ID"), self.jobs[0]["id"])
        self.assertEqual(s.get("SLOT"), rfc3339(self.slot))
        self.assertEqual(s.get("HTTP_STATUS"), "200")

    def test_sd_notify_ready_status_stopping(self):
        texts = [t for _, t in self.d.notifications()]
        self.assertTrue(any(re.search(r"(^|\n)READY=1($|\n)", t) for t in texts), texts)
        statuses = [m.group(1) for t in texts for m in [re.search(r"(?:^|\n)STATUS=([^\n]*)", t)] if m]
        self.assertTrue(any("environment" in s for s in statuses), statuses)
        self.assertTrue(any(re.search(r"\buat (NEW|QUEUED|IN_PROGRESS|SUBMITTED)", s) for s in statuses), statuses)
        after = texts[self.n_notify:]
        self.assertTrue(any(re.search(r"(^|\n)STOPPING=1($|\n)", t) for t in after), after)

    def test_sigterm_exit_0_within_a_second(self):
        self.assertEqual(self.rc, 0)
        self.assertLess(self.exit_seconds, 1.0)


# ==============================================================================================
# 2. terminal statuses, 404 -> lost, unknown status

class TerminalStatuses(E2E):
    """Three environments fire at the same slot: FAILED, CANCELED, and one whose job answers 404."""

    @classmethod
    def setUpClass(cls):
        cls._init_class()
        cls.simu = cls._sim(cls.addClassCleanup, cls.work, job_seconds=1.5)
        cls.simu.config(environments={"env-failed": {"final_status": "FAILED"},
                                      "env-canceled": {"final_status": "CANCELED"}})
        cls.simu.fault({"match": {"method": "GET", "path": JOB_PATH_RE % "env-lost"}, "action": "status",
                        "status": 404, "times": -1})
        slot = next_second(2)
        sched = seconds_schedule(slot)
        cfg = make_config(cls.simu.base_url, [dict(name="failed", id="env-failed", schedule=sched),
                                              dict(name="canceled", id="env-canceled", schedule=sched),
                                              dict(name="lost", id="env-lost", schedule=sched)])
        cls.d = cls._daemon(cls.addClassCleanup, cls.work, cfg)
        cls.d.start()
        cls.ended = {}
        for name, status in (("failed", "FAILED"), ("canceled", "CANCELED"), ("lost", "LOST")):
            try:
                cls.ended[name] = cls.d.wait_log(r"job \S+", timeout=20, ENVIRONMENT=name, JOB_STATUS=status)
            except Timeout:
                cls.ended[name] = None
        cls.polls_lost_1 = len(cls.simu.polls("env-lost"))
        time.sleep(2.2)
        cls.polls_lost_2 = len(cls.simu.polls("env-lost"))

    def setUp(self):
        pass

    def _ended(self, name):
        line = self.ended[name]
        self.assertIsNotNone(line, "no terminal event for %s; log:\n%s" % (name, self.d.tail(60)))
        return line

    def test_failed_logged(self):
        line = self._ended("failed")
        self.assertIn("FAILED", line.message)
        self.assertEqual(line.get("JOB_ID"), self.simu.jobs("env-failed")[0]["id"])
        self.assertIn(line.level, ("err", "warning", "crit"))

    def test_canceled_logged(self):
        line = self._ended("canceled")
        self.assertIn("CANCELED", line.message)
        self.assertEqual(line.get("JOB_ID"), self.simu.jobs("env-canceled")[0]["id"])

    def test_404_while_polling_ends_job_as_lost(self):
        line = self._ended("lost")
        self.assertIn("404", line.message)
        self.assertEqual(line.get("JOB_ID"), self.simu.jobs("env-lost")[0]["id"])
        self.assertEqual(self.polls_lost_1, self.polls_lost_2, "still polling a lost job")

    def test_one_post_each(self):
        for env_id in ("env-failed", "env-canceled", "env-lost"):
            self.assertEqual(len(self.simu.posts(env_id)), 1, env_id)


class UnknownStatus(E2E):
    def test_unknown_status_warned_once_polling_goes_on_then_reset_lost(self):
        sim = self.sim(job_seconds=1.5)
        sim.config(environments={"env-weird": {"final_status": "WEIRD_STATE", "set_end_time": False}})
        d, _ = self.single(sim, env_id="env-weird", name="weird")
        d.wait_log(r"WEIRD_STATE", timeout=15, ENVIRONMENT="weird", JOB_STATUS="WEIRD_STATE")
        n1 = len(sim.polls("env-weird"))
        time.sleep(3.2)
        n2 = len(sim.polls("env-weird"))
        self.assertGreaterEqual(n2 - n1, 2, "polling must go on after an unknown status")
        warnings = d.events(r"does not know|unknown", ENVIRONMENT="weird")
        self.assertEqual(len(warnings), 1, d.tail())
        self.assertEqual(warnings[0].level, "warning")
        self.assertIn("WEIRD_STATE", warnings[0].message)
        self.assertFalse(d.events(r"completed|ended", ENVIRONMENT="weird", JOB_STATUS="WEIRD_STATE"),
                         "an unknown status must not end the job")
        # The job disappears (simulator reset): the next poll gets 404 and the job is lost.
        sim.reset()
        lost = d.wait_log(r"job \S+", timeout=10, ENVIRONMENT="weird", JOB_STATUS="LOST")
        self.assertIn("404", lost.message)


# ==============================================================================================
# 3. error answers to the POST

def post_fault(env_id, **rule):
    r = {"match": {"method": "POST", "path": "^/test-environments/%s/jobs$" % env_id}}
    r.update(rule)
    return r


class PostErrors(E2E):
    def test_400_fails_without_retry(self):
        sim = self.sim()
        sim.fault(post_fault("env-400", action="status", status=400, times=-1,
                             body={"success": False, "reasons": [{"code": 50000040,
                                                                  "message": "xyzzy jobType is not valid"}]}))
        d, slot = self.single(sim, env_id="env-400")
        line = d.wait_log(r"fail", timeout=15, ENVIRONMENT="e", SLOT=rfc3339(slot))
        self.assertIn("xyzzy jobType is not valid", line.message)
        self.assertNoPostsFor(sim, "env-400", 5.5, expected=1)
        self.assertFalse(d.events(r"retrying", ENVIRONMENT="e"), d.tail())

    def test_401_new_token_one_retry(self):
        sim = self.sim()
        sim.fault(post_fault("env-401", action="status", status=401, times=1))
        d, _ = self.single(sim, env_id="env-401")
        d.wait_log(finished_re(), timeout=15, JOB_STATUS="COMPLETED")
        posts = sim.posts("env-401")
        self.assertEqual(len(posts), 2, [p["status"] for p in posts])
        self.assertEqual([p["status"] for p in posts], [401, 200])
        self.assertEqual(len(sim.token_requests()), 2)
        self.assertNotEqual(hdr(posts[0], "Authorization"), hdr(posts[1], "Authorization"))
        self.assertNotEqual(hdr(posts[0], "Zuora-Track-Id"), hdr(posts[1], "Zuora-Track-Id"))
        self.assertEqual(len(sim.jobs("env-401")), 1)

    def test_two_401_fail_check_credentials(self):
        sim = self.sim()
        sim.fault(post_fault("env-401b", action="status", status=401, times=-1))
        d, _ = self.single(sim, env_id="env-401b")
        line = d.wait_log(r"check client_id/client_secret", timeout=15)
        self.assertEqual(line.get("ENVIRONMENT"), "e")
        self.assertNoPostsFor(sim, "env-401b", 5.5, expected=2)
        self.assertEqual(len(sim.token_requests()), 2)
        self.assertTrue(d.events(r"refresh for slot .* failed", ENVIRONMENT="e"), d.tail())

    def test_403_period_rejection_not_retried(self):
        sim = self.sim()
        sim.fault(post_fault("env-403p", action="period_rejection", times=-1))
        d, slot = self.single(sim, env_id="env-403p")
        line = d.wait_log(r"Only one refresh can be performed during a set period", timeout=15)
        self.assertEqual(line.get("ENVIRONMENT"), "e")
        self.assertEqual(line.get("SLOT"), rfc3339(slot))
        self.assertNoPostsFor(sim, "env-403p", 5.5, expected=1)
        self.assertFalse(d.events(r"retrying", ENVIRONMENT="e"), d.tail())

    def test_403_permission_names_permission(self):
        sim = self.sim()
        sim.fault(post_fault("env-403", action="permission_denied", times=-1))
        d, _ = self.single(sim, env_id="env-403")
        line = d.wait_log(r"Refresh Central Sandbox", timeout=15)
        self.assertEqual(line.get("ENVIRONMENT"), "e")
        self.assertEqual(line.get("HTTP_STATUS"), "403")
        self.assertNoPostsFor(sim, "env-403", 5.5, expected=1)

    def test_429_retry_after_respected(self):
        sim = self.sim()
        sim.fault(post_fault("env-429", action="status", status=429, retry_after=2, times=1))
        d, _ = self.single(sim, env_id="env-429")
        d.wait_log(finished_re(), timeout=20, JOB_STATUS="COMPLETED")
        posts = sim.posts("env-429")
        self.assertEqual([p["status"] for p in posts], [429, 200])
        gap = posts[1]["time"] - posts[0]["time"]
        self.assertGreaterEqual(gap, 2.0, "second POST %.3fs after the 429 with Retry-After: 2" % gap)
        retry = d.events(r"retry", HTTP_STATUS=429)
        self.assertTrue(retry, d.tail())
        self.assertGreaterEqual(float(retry[0].get("RETRY_IN", "0s").rstrip("s")), 2.0)
        self.assertEqual(len(sim.jobs("env-429")), 1)

    def test_500_retried_with_backoff_then_succeeds(self):
        sim = self.sim()
        sim.fault(post_fault("env-500", action="status", status=500, times=1))
        d, _ = self.single(sim, env_id="env-500")
        d.wait_log(finished_re(), timeout=25, JOB_STATUS="COMPLETED")
        posts = sim.posts("env-500")
        self.assertEqual([p["status"] for p in posts], [500, 200])
        gap = posts[1]["time"] - posts[0]["time"]
        self.assertLessEqual(gap, 6.5, "full jitter from 5 s: the first retry within 5 s")
        retry = d.events(r"retry", HTTP_STATUS=500)
        self.assertTrue(retry, d.tail())
        self.assertLessEqual(float(retry[0].get("RETRY_IN", "99s").rstrip("s")), 5.0)
        lists = [r for r in sim.requests(path="^/test-environments/env-500/jobs$", method="GET")
                 if posts[0]["time"] < r["time"] < posts[1]["time"]]
        self.assertTrue(lists, "the list check must run before the retry")
        self.assertEqual(hdr(posts[0], "Idempotency-Key"), hdr(posts[1], "Idempotency-Key"))
        self.assertEqual(len(sim.jobs("env-500")), 1)

    def test_commit_then_fail_is_adopted(self):
        sim = self.sim(job_seconds=4)
        sim.fault(post_fault("env-ctf", action="commit_then_fail", times=1))
        d, slot = self.single(sim, env_id="env-ctf")
        adopted = d.wait_log(r"already refreshes|adopt", timeout=15, ENVIRONMENT="e")
        jobs = sim.jobs("env-ctf")
        self.assertEqual(len(jobs), 1)
        self.assertEqual(adopted.get("JOB_ID"), jobs[0]["id"])
        self.assertEqual(adopted.get("SLOT"), rfc3339(slot))
        d.wait_log(finished_re(), timeout=15, JOB_STATUS="COMPLETED", JOB_ID=jobs[0]["id"])
        self.assertEqual(len(sim.posts("env-ctf")), 1)
        self.assertEqual(len(sim.jobs("env-ctf")), 1)


# ==============================================================================================
# 4. foreign Location

class ForeignLocation(E2E):
    def test_foreign_location_refused_default_url_polled(self):
        recorder = self.sim(name="recorder", record_only=True)
        sim = self.sim(extra_args=["--location-mode", "foreign", "--foreign-base", recorder.base_url])
        d, _ = self.single(sim, env_id="env-f")
        line = d.wait_log(r"Location", timeout=15, ENVIRONMENT="e")
        self.assertIn(recorder.base_url, line.message)
        self.assertIn(line.level, ("warning", "notice", "err"))
        job_id = sim.jobs("env-f")[0]["id"]
        d.wait_log(finished_re(), timeout=15, JOB_STATUS="COMPLETED", JOB_ID=job_id)
        time.sleep(0.5)
        recorded = recorder.requests()
        self.assertFalse([r for r in recorded if hdr(r, "Authorization")], "credentials sent to the foreign host")
        self.assertEqual(recorded, [], "the foreign host got requests")
        self.assertTrue(sim.polls("env-f", job_id))


# ==============================================================================================
# 5. SIGHUP

class Reload(E2E):
    def test_sighup_valid_adds_env_and_changes_schedule(self):
        sim = self.sim()
        far = "0 0 1 1 *"
        d = self.daemon(make_config(sim.base_url, [self.env("a", "env-a", far)]))
        d.start()
        slot = next_second(2)
        d.write_config(make_config(sim.base_url, [self.env("a", "env-a", seconds_schedule(slot)),
                                                  self.env("b", "env-b", seconds_schedule(slot))]))
        n0 = len(d.notifications())
        before = time.monotonic()
        d.sighup()
        i, _, text = d.wait_notify(r"(^|\n)RELOADING=1($|\n)", timeout=5, since=n0)
        m = re.search(r"(?:^|\n)MONOTONIC_USEC=(\d+)", text)
        self.assertIsNotNone(m, "RELOADING=1 without MONOTONIC_USEC=: %r" % text)
        usec = int(m.group(1))
        self.assertLess(abs(usec / 1e6 - before), 5.0, "MONOTONIC_USEC is not CLOCK_MONOTONIC")
        d.wait_notify(r"(^|\n)READY=1($|\n)", timeout=5, since=i + 1)
        d.wait_log(r"Reloaded", timeout=5)
        self.assertTrue(wait_until(lambda: sim.posts("env-a") and sim.posts("env-b"), 12),
                        "both environments should fire at %s; log:\n%s" % (rfc3339(slot), d.tail()))
        for name in ("a", "b"):
            d.wait_log(r"is due", timeout=2, ENVIRONMENT=name, SLOT=rfc3339(slot))
        statuses = [t for _, t in d.notifications()[i:] if "STATUS=" in t]
        self.assertTrue(any("2 environments" in t for t in statuses), statuses)

    def test_sighup_invalid_keeps_running_and_reports_like_check(self):
        sim = self.sim()
        slot = next_second(5)
        d = self.daemon(make_config(sim.base_url, [self.env("a", "env-a", seconds_schedule(slot))]))
        d.start()
        bad = make_config(sim.base_url, [self.env("a", "env-a", "0 3 * * SUN#6")],
                          defaults={"pol_interval": "1s", "poll_interval": None})
        d.write_config(bad)
        rc, _, err = run_check(BINARY, d.config_path)
        self.assertNotEqual(rc, 0)
        expected = [l for l in err.splitlines() if re.match(r"^.+:\d+:\d+: error: ", l)]
        self.assertGreaterEqual(len(expected), 2, err)
        n0, since = len(d.notifications()), len(d.log())
        d.sighup()
        i, _, _ = d.wait_notify(r"(^|\n)RELOADING=1($|\n)", timeout=5, since=n0)
        d.wait_notify(r"(^|\n)READY=1($|\n)", timeout=5, since=i + 1)
        # (Not just "reload": the work directory's name, in every path, has it too.)
        d.wait_log(r" err Reloading \S+ failed", timeout=5, since=since)
        got = [l.message for l in d.log()[since:]]
        for e in expected:
            self.assertIn(e, got, "the reload should report the same errors as refreshd check")
        self.assertTrue(d.running())
        # the old config goes on: its slot still fires
        self.assertTrue(wait_until(lambda: sim.posts("env-a"), 12), d.tail())
        self.assertTrue(d.running())


# ==============================================================================================
# 6. SIGTERM and restart

class StopAndResume(E2E):
    def test_sigterm_idle(self):
        sim = self.sim()
        d = self.daemon(make_config(sim.base_url, [self.env("a", "env-a", "0 0 1 1 *")]))
        d.start()
        n0 = len(d.notifications())
        t0 = time.time()
        d.sigterm()
        rc = d.wait_exit(5)
        dt = time.time() - t0
        self.assertEqual(rc, 0)
        self.assertLess(dt, 1.0)
        self.assertTrue(any("STOPPING=1" in t for _, t in d.notifications()[n0:]), d.notifications())

    def _resume(self, kill):
        sim = self.sim(job_seconds=6)
        d, slot = self.single(sim, env_id="env-r")
        d.wait_log(r"submitted", timeout=10, ENVIRONMENT="e")
        if kill:
            d.kill9()
        else:
            d.wait_log(r"is (QUEUED|IN_PROGRESS)", timeout=5, ENVIRONMENT="e")
            n0 = len(d.notifications())
            t0 = time.time()
            d.sigterm()
            rc = d.wait_exit(5)
            self.assertEqual(rc, 0)
            self.assertLess(time.time() - t0, 1.0)
            self.assertTrue(any("STOPPING=1" in t for _, t in d.notifications()[n0:]))
        job_id = sim.jobs("env-r")[0]["id"]
        self.assertTrue(sim.jobs("env-r")[0]["running"], "the job should still run at the restart")
        restart = time.time()
        d.start()
        d.wait_log(finished_re(), timeout=15, JOB_STATUS="COMPLETED", JOB_ID=job_id)
        self.assertEqual(len(sim.posts("env-r")), 1, "a second POST for slot %s" % rfc3339(slot))
        self.assertEqual(len(sim.jobs("env-r")), 1)
        self.assertTrue([p for p in sim.polls("env-r", job_id) if p["time"] > restart])
        self.assertFalse(d.events(r"is due"), "the slot fired again after the restart")

    def test_restart_after_sigterm_resumes_job_no_second_post(self):
        self._resume(kill=False)

    def test_restart_after_kill9_resumes_job_no_second_post(self):
        self._resume(kill=True)


# ==============================================================================================
# 7. catch-up

class CatchUp(E2E):
    """Run once (slot A), stop, miss slots B and C, start again with catch_up: true."""

    @classmethod
    def setUpClass(cls):
        cls._init_class()
        cls.simu = cls._sim(cls.addClassCleanup, cls.work, job_seconds=1)
        a = next_second(2)
        cls.a, cls.b, cls.c = a, a + 5, a + 10
        sched = seconds_schedule(cls.a, cls.b, cls.c)
        cfg1 = make_config(cls.simu.base_url, [dict(name="cu", id="env-cu", schedule=sched)],
                           defaults={"catch_up": True})
        cls.d = cls._daemon(cls.addClassCleanup, cls.work, cfg1)
        cls.d.start()
        cls.d.wait_log(finished_re(), timeout=10, JOB_STATUS="COMPLETED", ENVIRONMENT="cu")
        cls.d.sigterm()
        cls.d.wait_exit(5)
        cls.posts_run1 = len(cls.simu.posts("env-cu"))
        time.sleep(max(0, cls.c + 1.5 - time.time()))
        cfg2 = make_config(cls.simu.base_url, [dict(name="cu", id="env-cu", schedule=sched),
                                               dict(name="fresh", id="env-fresh", schedule=sched)],
                           defaults={"catch_up": True})
        cls.d.write_config(cfg2)
        cls.restart = time.time()
        cls.d.start()
        try:
            cls.d.wait_log(finished_re(), timeout=10, JOB_STATUS="COMPLETED", ENVIRONMENT="cu")
        except Timeout:
            pass
        time.sleep(1.5)

    def setUp(self):
        pass

    def test_one_post_for_latest_missed_slot(self):
        self.assertEqual(self.posts_run1, 1)
        posts = [p for p in self.simu.posts("env-cu") if p["time"] > self.restart]
        self.assertEqual(len(posts), 1, self.d.tail())
        sub = self.d.events(r"submitted", ENVIRONMENT="cu")
        self.assertEqual([s.get("SLOT") for s in sub], [rfc3339(self.c)], self.d.tail())

    def test_catching_up_logged(self):
        lines = self.d.events(r"catching up", ENVIRONMENT="cu")
        self.assertEqual(len(lines), 1, self.d.tail())
        self.assertEqual(lines[0].get("SLOT"), rfc3339(self.c))

    def test_new_environment_does_not_catch_up(self):
        self.assertEqual(self.simu.posts("env-fresh"), [])
        self.assertFalse(self.d.events(r"catching up", ENVIRONMENT="fresh"))


class NoCatchUp(E2E):
    def test_catch_up_false_fires_nothing(self):
        sim = self.sim(job_seconds=1)
        a = next_second(2)
        sched = seconds_schedule(a, a + 5, a + 10)
        d = self.daemon(make_config(sim.base_url, [self.env("cu", "env-cu", sched)], defaults={"catch_up": False}))
        d.start()
        d.wait_log(finished_re(), timeout=10, JOB_STATUS="COMPLETED")
        d.sigterm()
        self.assertEqual(d.wait_exit(5), 0)
        time.sleep(max(0, a + 11.5 - time.time()))
        restart = time.time()
        d.start()
        time.sleep(2.5)
        self.assertEqual([p for p in sim.posts("env-cu") if p["time"] > restart], [], d.tail())
        self.assertFalse(d.events(r"catching up"), d.tail())


# ==============================================================================================
# 8. overlap, 9. min_interval

class Skips(E2E):
    def test_overlap_slot_skipped_while_job_runs(self):
        sim = self.sim(job_seconds=5)
        a = next_second(2)
        d = self.daemon(make_config(sim.base_url, [self.env("ov", "env-ov", seconds_schedule(a, a + 2))]))
        d.start()
        d.wait_log(r"submitted", timeout=10, ENVIRONMENT="ov")
        job_id = sim.jobs("env-ov")[0]["id"]
        try:
            skip = d.wait_log(r"skipped", timeout=6, ENVIRONMENT="ov", SLOT=rfc3339(a + 2))
        except Timeout:
            skip = None
        fin = d.wait_log(finished_re(), timeout=10, JOB_STATUS="COMPLETED", JOB_ID=job_id)
        time.sleep(1.0)
        self.assertIsNotNone(skip, "no skip logged for slot %s while job %s ran; log:\n%s"
                             % (rfc3339(a + 2), job_id, d.tail()))
        self.assertIn("still running", skip.message)
        self.assertLess(skip.t, fin.t, "the skip should be logged when the slot comes, while the job runs")
        self.assertLess(skip.t - (a + 2), 1.5)
        self.assertEqual(len(sim.posts("env-ov")), 1)

    def test_consecutive_slots_each_submitted(self):
        # Not an overlap: the first job ends before the second slot, so both slots must be POSTed
        # (the list check must not mistake the previous slot's job for this one's).
        sim = self.sim(job_seconds=1)
        a = next_second(2)
        d = self.daemon(make_config(sim.base_url, [self.env("cs", "env-cs", seconds_schedule(a, a + 6))]))
        d.start()
        d.wait_log(r"is due", timeout=10, ENVIRONMENT="cs", SLOT=rfc3339(a + 6))
        time.sleep(max(0, a + 9 - time.time()))
        posts = sim.posts("env-cs")
        self.assertEqual(len(posts), 2, "slot %s was not submitted; log:\n%s" % (rfc3339(a + 6), d.tail()))
        self.assertFalse(d.events(r"already refreshes", SLOT=rfc3339(a + 6)), d.tail())

    def test_min_interval_skips_slot_after_recent_submission(self):
        # Validation refuses schedules that fire closer than min_interval, so the recent submission
        # comes from the previous run's state: run 1 submits at slot S1; run 2 has a schedule whose
        # next slot is a few seconds later.
        sim = self.sim(job_seconds=1)
        s1 = next_second(2)
        d = self.daemon(make_config(sim.base_url, [self.env("mi", "env-mi", seconds_schedule(s1),
                                                            min_interval="30s")]))
        d.start()
        d.wait_log(finished_re(), timeout=10, JOB_STATUS="COMPLETED")
        d.sigterm()
        self.assertEqual(d.wait_exit(5), 0)
        s2 = max(s1 + 6, next_second(2))
        d.write_config(make_config(sim.base_url, [self.env("mi", "env-mi", seconds_schedule(s2),
                                                           min_interval="30s")]))
        restart = time.time()
        d.start()
        skip = d.wait_log(r"skipped", timeout=s2 - time.time() + 4, ENVIRONMENT="mi")
        self.assertEqual(skip.get("SLOT"), rfc3339(s2))
        self.assertIn("min_interval", skip.message)
        time.sleep(1)
        self.assertEqual([p for p in sim.posts("env-mi") if p["time"] > restart], [])


def log_time(line):
    """A console line's own timestamp, epoch seconds."""
    return datetime.datetime.strptime(line.ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


class FirstAttempt(E2E):
    """A slot's first attempt: the eligibility check leaves a second ahead of the slot; at the slot
    the list check leaves and the intent is written, and the POST waits for all three. Each check
    can end the slot on its own, and then the other's answer is dropped."""

    def _requests(self, sim, env_id):
        """(time, what) of the environment's API requests: 'check', 'list' or 'post'."""
        kinds = {("GET", "/test-environments/%s" % env_id): "check",
                 ("GET", "/test-environments/%s/jobs" % env_id): "list",
                 ("POST", "/test-environments/%s/jobs" % env_id): "post"}
        return [(r["time"], kinds[(r["method"], r["path"])]) for r in sim.api_requests()
                if (r["method"], r["path"]) in kinds]

    def test_ineligible_slot_is_not_posted(self):
        sim = self.sim()
        # Refreshed a minute ago, allowed again in an hour: nextRefreshTime is after the slot.
        sim.config(environments={"env-in": {"cooldown_seconds": 3600, "last_refresh_ago": 60}})
        d, slot = self.single(sim, env_id="env-in", name="in", when_ineligible="skip", delay=3)
        line = d.wait_log(r"Zuora allows the next refresh from", timeout=10, ENVIRONMENT="in")
        self.assertEqual(line.get("SLOT"), rfc3339(slot))
        self.assertIn("skipped", line.message)
        # Known from the check ahead of the slot, but said (and acted on) when the slot comes.
        self.assertGreaterEqual(log_time(line), slot, line.ts)
        self.assertNoPostsFor(sim, "env-in", 2, expected=0)
        self.assertEqual([k for _, k in self._requests(sim, "env-in")], ["check"])
        self.assertIsNone((d.state() or {})["environments"]["in"].get("intent"), "the intent was not cleared")

    def _fire(self, env_id, fault=None, before_slot=None):
        """One slot of ENV_ID, about 3 s from now, FAULT applied once to its eligibility check, and
        BEFORE_SLOT(daemon, slot) run once the daemon is up; once it has submitted:
        (slot, self._requests())."""
        sim = self.sim(job_seconds=30)
        if fault:
            sim.fault(dict(fault, match={"method": "GET", "path": "^/test-environments/%s$" % env_id}, times=1))
        d, slot = self.single(sim, env_id=env_id, name=env_id, delay=3)
        if before_slot:
            before_slot(d, slot)
        d.wait_log(r"submitted", timeout=10, ENVIRONMENT=env_id)
        return slot, self._requests(sim, env_id)

    def test_eligibility_checked_a_second_ahead(self):
        slot, reqs = self._fire("env-ah")
        self.assertEqual([k for _, k in reqs], ["check", "list", "post"], reqs)
        (check, _), (listed, _), (post, _) = reqs
        self.assertTrue(slot - 1.2 <= check < slot, "check %.3f s from the slot" % (check - slot))
        self.assertGreaterEqual(listed, slot)
        self.assertLess(post - slot, 0.5)

    def test_check_ahead_still_out_at_the_slot_is_the_slots_check(self):
        # The check ahead is answered 2 s late, a second after the slot: no second check; the POST
        # waits for that answer.
        slot, reqs = self._fire("env-so", {"action": "slow", "delay": 2.0})
        self.assertEqual([k for _, k in reqs], ["check", "list", "post"], reqs)
        self.assertLess(reqs[0][0], slot)
        self.assertGreaterEqual(reqs[2][0], reqs[0][0] + 1.9, "the POST left before the check's answer")

    def test_reload_drops_the_check_ahead(self):
        # A reload plans the slot again: the check still out (answered 3 s late) is dropped and
        # another leaves before the slot; the POST does not wait for the first one's answer.
        def reload(d, slot):
            time.sleep(max(0.0, slot - 0.6 - time.time()))
            d.sighup()

        slot, reqs = self._fire("env-rl", {"action": "slow", "delay": 3.0}, reload)
        self.assertEqual([k for _, k in reqs], ["check", "check", "list", "post"], reqs)
        self.assertLess(reqs[1][0], slot)
        self.assertLess(reqs[3][0], slot + 1.0, "the POST waited for the dropped check")

    def test_failed_check_ahead_is_made_again_at_the_slot(self):
        slot, reqs = self._fire("env-fa", {"action": "status", "status": 500})
        self.assertEqual(sorted(k for _, k in reqs), ["check", "check", "list", "post"], reqs)
        self.assertLess(reqs[0][0], slot)
        self.assertEqual(reqs[0][1], "check")
        self.assertGreaterEqual(min(t for t, k in reqs[1:] if k == "check"), slot)

    def test_job_started_by_hand_before_slot_is_adopted(self):
        sim = self.sim(job_seconds=3)
        d, slot = self.single(sim, env_id="env-hand", name="hand", delay=4)
        # Someone refreshes the sandbox by hand 2 s before the slot (within the 5 min of skew).
        time.sleep(max(0, slot - 2 - time.time()))
        body = urllib.parse.urlencode({"client_id": "demo-client", "client_secret": DEFAULT_SECRET,
                                       "grant_type": "client_credentials"}).encode()
        with urllib.request.urlopen(sim.base_url + "/oauth/token", data=body, timeout=10) as resp:
            token = json.loads(resp.read())["access_token"]
        req = urllib.request.Request(sim.base_url + "/test-environments/env-hand/jobs", method="POST",
                                     data=b'{"jobType":"REFRESH"}',
                                     headers={"Authorization": "Bearer " + token,
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            by_hand = json.loads(resp.read())["id"]
        adopted = d.wait_log(r"already refreshes slot", timeout=10, ENVIRONMENT="hand")
        self.assertEqual(adopted.get("JOB_ID"), by_hand)
        d.wait_log(finished_re(), timeout=10, JOB_STATUS="COMPLETED", JOB_ID=by_hand)
        self.assertEqual(len(sim.posts("env-hand")), 1, "refreshd POSTed although a job covered the slot")


class Concurrency(E2E):
    def test_at_most_max_concurrent_requests_at_zuora(self):
        # Nine environments due in the same second, max_concurrent_requests: 3, and every answer
        # 0.4 s late: never more than three requests at Zuora at once, and the others wait their
        # turn rather than fail (each slot is a GET, a GET and a POST; then polls).
        sim = self.sim(job_seconds=60)
        sim.fault({"match": {"path": "^/test-environments/"}, "action": "slow", "delay": 0.4, "times": -1})
        slot = next_second(3)
        envs = [self.env("c%d" % i, "env-c%d" % i, seconds_schedule(slot)) for i in range(9)]
        d = self.daemon(make_config(sim.base_url, envs, zuora={"max_concurrent_requests": 3}))
        d.start()
        self.assertTrue(wait_until(lambda: len(sim.posts()) >= 9, 30), d.tail())
        arrivals = sorted(r["time"] for r in sim.api_requests())
        self.assertGreaterEqual(len(arrivals), 27)
        # Three in flight, each answered 0.4 s after it came: any four arrivals span 0.4 s.
        spans = [arrivals[i + 3] - arrivals[i] for i in range(len(arrivals) - 3)]
        self.assertGreaterEqual(min(spans), 0.35, "more than 3 requests in flight: %s"
                                % ["%.3f" % (t - arrivals[0]) for t in arrivals])
        self.assertEqual(sorted(p["path"] for p in sim.posts()),
                         sorted("/test-environments/env-c%d/jobs" % i for i in range(9)))
        self.assertFalse(d.events(r"retrying|failed"), d.tail())


class StateWrites(E2E):
    """state.json is not replaced while a slot's checks are out: its intent is already in the
    intent log, and the write (two flushes and a rename) would hold up the answers the POST waits
    for. It follows once the POST has left, or a second after the fire when the checks are slow."""

    def _watch(self, d, seconds):
        """Times at which state.json was replaced, polled every 2 ms for SECONDS."""
        path = os.path.join(d.state_dir, "state.json")
        seen, times, end = None, [], time.time() + seconds
        while time.time() < end:
            try:
                st = os.stat(path)
                key = (st.st_ino, st.st_mtime_ns)
            except FileNotFoundError:
                key = None
            if key != seen:
                if seen is not None:
                    times.append(time.time())
                seen = key
            time.sleep(0.002)
        return times

    def _fire_with_slow_list(self, delay):
        sim = self.sim(job_seconds=30)
        sim.fault({"match": {"method": "GET", "path": "^/test-environments/env-sw/jobs$"},
                   "action": "slow", "delay": delay, "times": 1})
        d, slot = self.single(sim, env_id="env-sw", name="sw", delay=3)
        time.sleep(max(0.0, slot - 0.5 - time.time()))
        writes = self._watch(d, 0.5 + delay + 1.5)
        posts = sim.posts("env-sw")
        self.assertEqual(len(posts), 1, d.tail())
        return slot, posts[0]["time"], [t for t in writes if t >= slot]

    def test_no_state_write_between_the_fire_and_the_post(self):
        slot, post, writes = self._fire_with_slow_list(0.6)
        self.assertGreater(post, slot + 0.5)
        self.assertFalse([t for t in writes if t < post],
                         "state.json replaced while the checks were out: %s (slot %d, POST %.3f)"
                         % (["%.3f" % (t - slot) for t in writes], slot, post - slot))
        self.assertTrue([t for t in writes if post <= t <= post + 1.0],
                        "state.json not written after the POST: %s" % ["%.3f" % (t - slot) for t in writes])

    def test_slow_checks_hold_the_state_write_a_second_at_most(self):
        slot, post, writes = self._fire_with_slow_list(3.0)
        early = [t for t in writes if t < post]
        self.assertTrue(early, "state.json waited for the POST (%.3f s after the slot)" % (post - slot))
        self.assertGreaterEqual(early[0] - slot, 0.9, "%.3f" % (early[0] - slot))
        self.assertLess(early[0] - slot, 2.0, "%.3f" % (early[0] - slot))


class SubmitAhead(E2E):
    def test_post_leaves_early_with_scheduled_refresh_time(self):
        sim = self.sim(job_seconds=1)
        slot = next_second(5)
        cfg = make_config(sim.base_url, [self.env("sa", "env-sa", seconds_schedule(slot), submit_ahead="3s")])
        d = self.daemon(cfg)
        d.start()
        d.wait_log(r"submitted", timeout=10, ENVIRONMENT="sa")
        post = sim.posts("env-sa")[0]
        self.assertLess(post["time"], slot - 2.5, "the POST should leave 3 s before the slot")
        self.assertGreaterEqual(post["time"], slot - 3.5)
        self.assertEqual(json.loads(post["body"]), {"jobType": "REFRESH", "scheduledRefreshTime": rfc3339(slot)})


class Idle(E2E):
    def test_idle_daemon_does_not_wake_up(self):
        # Nothing due for an hour: no CPU and no context switch between two reads of /proc.
        sim = self.sim()
        far = time.gmtime(time.time() + 3600)
        cfg = make_config(sim.base_url, [self.env("idle%d" % i, "env-idle%d" % i,
                                                  "%d %d * * *" % (far.tm_min, far.tm_hour))
                                         for i in range(20)])
        d = self.daemon(cfg)
        d.start()
        time.sleep(1.0)  # let the start-up state write settle

        def sample():
            with open("/proc/%d/stat" % d.proc.pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open("/proc/%d/status" % d.proc.pid) as f:
                switches = {k: int(v) for k, v in (l.split(":") for l in f if "ctxt_switches" in l)}
            return int(fields[11]) + int(fields[12]), switches

        cpu0, sw0 = sample()
        time.sleep(5)
        cpu1, sw1 = sample()
        self.assertEqual(cpu1 - cpu0, 0, "CPU ticks used while idle")
        self.assertEqual(sw1, sw0, "the process woke up while nothing was due")


# ==============================================================================================
# 10. sd_notify STATUS while a job runs, 11. invalid config, 12. secret

class Notify(E2E):
    def test_status_shows_running_job(self):
        sim = self.sim(job_seconds=5)
        d, _ = self.single(sim, env_id="env-n", name="u1")
        first = [t for _, t in d.notifications() if "STATUS=" in t]
        self.assertTrue(first and re.search(r"STATUS=.*1 environment", first[0]), first)
        _, _, text = d.wait_notify(r"STATUS=[^\n]*\bu1 IN_PROGRESS \d{1,2}%", timeout=12)
        d.wait_log(finished_re(), timeout=12, JOB_STATUS="COMPLETED")
        d.wait_notify(r"STATUS=[^\n]*running: none", timeout=3, since=len(d.notifications()) - 1)
        n0 = len(d.notifications())
        d.sigterm()
        self.assertEqual(d.wait_exit(5), 0)
        self.assertTrue(any("STOPPING=1" in t for _, t in d.notifications()[n0:]))


class InvalidConfig(E2E):
    def test_run_exits_78_on_invalid_config(self):
        cfg = make_config("http://127.0.0.1:9", [self.env("a", "env-a", "0 3 * * SUN#6")],
                          defaults={"pol_interval": "1s"})
        d = self.daemon(cfg)
        d.start(wait_ready=False)
        rc = d.wait_exit(10)
        self.assertEqual(rc, 78)
        self.assertTrue([l for l in d.all_lines if re.search(r":\d+:\d+: error: ", l)], d.all_lines)
        self.assertFalse(any("READY=1" in t for t in d.all_notify))


class Secret(E2E):
    def test_secret_never_in_output_or_state(self):
        secret = "e2e-Leak-Canary-93jd7QpX"
        sim = self.sim(client_secret=secret)
        slot = next_second(2)
        cfg = make_config(sim.base_url, [self.env("s", "env-s", seconds_schedule(slot))])
        d = self.daemon(cfg, secret=secret)
        d.start()
        d.wait_log(finished_re(), timeout=15, JOB_STATUS="COMPLETED")
        sim.expire_tokens()
        n0 = len(d.notifications())
        d.sighup()
        d.wait_notify(r"(^|\n)READY=1($|\n)", timeout=5, since=n0)
        d.sigterm()
        self.assertEqual(d.wait_exit(5), 0)
        self.assertTrue(d.all_lines)
        self.assertIsNotNone(d.state(), "no state.json written")
        for line in d.all_lines + d.all_stdout + d.all_notify:
            self.assertNotIn(secret, line)
        self.assertNotIn(secret, d.state_text())


# ==============================================================================================
# valgrind

@unittest.skipUnless(os.environ.get("REFRESHD_E2E_VALGRIND") == "1", "set REFRESHD_E2E_VALGRIND=1")
@unittest.skipUnless(shutil.which("valgrind"), "valgrind is not installed")
class Valgrind(E2E):
    def test_fire_track_sigterm_under_valgrind(self):
        sim = self.sim(job_seconds=1.5)
        slot = next_second(8)
        d = self.daemon(make_config(sim.base_url, [self.env("vg", "env-vg", seconds_schedule(slot))]),
                        valgrind=True)
        d.start(timeout=60)
        d.wait_log(finished_re(), timeout=40, JOB_STATUS="COMPLETED")
        d.sigterm()
        rc = d.wait_exit(60)
        logs = ""
        for name in os.listdir(self.work):
            if ".valgrind." in name:
                with open(os.path.join(self.work, name)) as fh:
                    logs += fh.read()
        self.assertEqual(rc, 0, logs[-4000:])


# ==============================================================================================
# runner

def _units(suite):
    """Whole classes when they have a shared setUpClass, else single tests."""
    by_class = {}
    for test in flatten(suite):
        by_class.setdefault(type(test), []).append(test)
    units = []
    for cls, tests in by_class.items():
        if "setUpClass" in cls.__dict__:
            units.append(unittest.TestSuite(tests))
        else:
            units += [unittest.TestSuite([t]) for t in tests]
    return units


def main(argv):
    global BINARY, VERSION, ARTIFACTS
    if len(argv) < 2:
        print("usage: %s /path/to/refreshd [NAME-FILTER...]" % argv[0], file=sys.stderr)
        return 2
    BINARY = os.path.abspath(argv[1])
    filters = argv[2:]
    if not os.access(BINARY, os.X_OK):
        print("not an executable: %s" % BINARY, file=sys.stderr)
        return 2
    VERSION = refreshd_version(BINARY)
    ARTIFACTS = tempfile.mkdtemp(prefix="refreshd-e2e-")
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__])
    if filters:
        suite = unittest.TestSuite([t for t in flatten(suite) if any(f in t.id() for f in filters)])
    units = _units(suite)
    return run_parallel(units, int(os.environ.get("REFRESHD_E2E_JOBS", "6")),
                        "refreshd e2e (%s, version %s)" % (BINARY, VERSION), ARTIFACTS)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
