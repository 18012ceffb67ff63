#!/usr/bin/env python3
"""End-to-end fault tests of `refreshd run`: network and HTTP faults, tokens, long jobs, TLS, secrets,
and a state directory that cannot be written.

    python3 tests/e2e/test_faults.py build/daemon/refreshd [NAME-FILTER...]

Each test starts its own simulator(s) (tests/sim/zuora_sim.py) and daemon through tests/e2e/harness.py,
injects faults with the simulator's fault rules, and checks the contract of README.md ("What the
daemon does"):

* the daemon keeps running (never exits on a fault);
* it retries as documented: 5xx, timeouts, transport errors and malformed answers are retried with
  full-jitter backoff starting at 5 s (so the first retry comes within 5 s), each retry after the
  list check (GET .../jobs) that adopts a job the failed POST may have created;
* it loses nothing: exactly one job per slot exists on the simulator, and that job is followed to
  its terminal status (the end event is logged with the job's id and slot, and state.json's
  last_job names it).

Faults on the POST (one slot each, times: 1 so that each test ends in well under 30 s):
connection refused (simulator stopped, then restarted on the same port; and a base_url on a closed
port fixed by SIGHUP), reset mid-body, hang (request_timeout 3s), drip at 1 byte/s (timeout), a body
over the 1 MiB cap, not JSON, truncated JSON (both kinds), wrong shapes (status a number, id missing,
array instead of object), 200 without a body, commit_then_fail/reset. Faults that perform the real
operation before failing (reset_mid_body, drip, huge_body, truncated_json*, id_missing, array,
commit_then_fail) must end with the job ADOPTED by the list check: one POST, one job. Faults answered
without creating a job (hang, not_json, empty_200, connection refused) must end with a second POST
and still one job. A job whose answer has a numeric status is acceptable either way (the id is
valid; the daemon may track it with an unknown status, or retry and adopt it).

Crash points: the daemon is killed (SIGKILL) while its POST hangs, with and without the job created,
and started again: the list check at the start adopts the job the POST created or sends the POST
again; never an older slot's job taken for this slot's. And a stop (SIGTERM) while a job runs, the
job ending and the next slot passing while refreshd is down: at the start the missed slot is caught
up (it did not come while the job was running).

Tokens: the token endpoint answers 500 twice, then OK; tokens expire early (expire_token on the POST
and on a poll, and every token expired from the control API while a job runs) and are renewed.

Tracking: a status the daemon does not know (warned once; polling goes on; the job ends when Zuora
sets jobEndTime); a job IN_PROGRESS "for days" (final_status never): polling goes on at
poll_interval while the daemon's RSS (/proc/PID/status VmRSS) grows less than 256 KiB between 5 s
and 15 s, and state.json's size does not change.

TLS (skipped without openssl): a throwaway CA and a server certificate for IP:127.0.0.1; the
simulator serves HTTPS. Without ca_file the refresh is retried with an error naming the certificate
problem, and the simulator records no request at all (the handshake fails first). With ca_file the
job is followed to COMPLETED.

Secrets: a run with several faults and a foreign Location (pointing to a second simulator in
--record-only mode): neither the client secret nor any access token the simulator saw (the
Authorization headers of its recorded requests) appears in the daemon's stderr, stdout, sd_notify
messages, state directory, or the output of `refreshd status` and `status --json`; the foreign host
receives nothing.

Disk (needs a private mount namespace: the script re-executes itself under
`unshare -m --propagation private` when it can, else these tests are skipped with the reason):
(1) the state directory is a read-only bind mount from the start (with a state.json from an earlier
run): "Cannot write .../state.json" is logged once for the whole failure streak, both slots are
refreshed exactly once, and state.json is byte-identical afterwards; (2) the state directory is a
16 KiB tmpfs filled by a big file (writes fail with ENOSPC): one error per streak, "written again"
once space is freed, twice over; no temporary files are left behind.

Tests run in parallel threads (REFRESHD_E2E_JOBS, default 4). Artifacts (daemon and simulator logs,
configs, state) are kept when a test fails, or always with REFRESHD_E2E_KEEP=1.
REFRESHD_E2E_NO_UNSHARE=1 disables the re-execution under unshare.
"""

import calendar
import errno
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from harness import (DEFAULT_SECRET, Daemon, Sim, Timeout, make_config, next_second,  # noqa: E402
                     flatten, rfc3339, run_parallel, seconds_schedule, wait_until)

BINARY = None
ARTIFACTS = None
NS_ENV = "REFRESHD_E2E_IN_MOUNT_NS"

JOB_PATH_RE = r"^/test-environments/%s/jobs/[0-9a-f]{32}$"
LIST_PATH_RE = r"^/test-environments/%s/jobs$"
END_RE = r"job \S+ (completed|ended)"
RETRY_RE = r"retrying in"


def hdr(request, name):
    for k, v in request["headers"].items():
        if k.lower() == name.lower():
            return v
    return None


def post_fault(env_id, **rule):
    r = {"match": {"method": "POST", "path": LIST_PATH_RE % env_id}}
    r.update(rule)
    return r


def new_workdir(label):
    return tempfile.mkdtemp(prefix=re.sub(r"[^A-Za-z0-9_.-]", "_", label)[:60] + "-", dir=ARTIFACTS)


def iso_to_epoch(text):
    return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def vm_rss_kib(pid):
    with open("/proc/%d/status" % pid) as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


def run_status(d, *extra):
    """`refreshd status` for daemon D's config and state: (exit code, stdout + stderr)."""
    env = dict(os.environ)
    env["REFRESHD_E2E_SECRET"] = d.secret
    p = subprocess.run([BINARY, "status", "-c", d.config_path, "--state-dir", d.state_dir] + list(extra),
                       capture_output=True, text=True, env=env, timeout=30)
    return p.returncode, p.stdout + p.stderr


def sanitized(binary):
    """True for a build with AddressSanitizer (its runtime's entry point is linked in)."""
    with open(binary, "rb") as f:
        return b"__asan_init" in f.read()


class TlsSim(Sim):
    """The simulator serving HTTPS with CERT/KEY; its control API is reached with CA."""

    def __init__(self, workdir, cert, key, ca, **kw):
        self._ctx = ssl.create_default_context(cafile=ca)
        kw["extra_args"] = list(kw.get("extra_args", ())) + ["--tls-cert", cert, "--tls-key", key]
        super().__init__(workdir, **kw)
        self.base_url = "https://127.0.0.1:%d" % self.port

    def _call(self, method, path, body=None, raw=False):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request("https://127.0.0.1:%d%s" % (self.port, path), data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=10, context=self._ctx) as resp:
            text = resp.read().decode()
        if raw:
            return text.strip()
        return json.loads(text) if text.strip() else None


# ==============================================================================================
# base

class E2E(unittest.TestCase):
    def setUp(self):
        self.work = new_workdir(self.id().split(".", 1)[-1])
        self.daemons = []

    def sim(self, **kw):
        s = Sim(self.work, **kw)
        self.addCleanup(s.stop)
        return s

    def daemon(self, config_text, **kw):
        d = Daemon(BINARY, self.work, config_text, **kw)
        self.addCleanup(self._check_no_secret, d)
        self.addCleanup(d.stop)
        self.daemons.append(d)
        return d

    @staticmethod
    def _check_no_secret(d):
        enc = urllib.parse.quote(d.secret, safe="")
        bad = [t for t in d.all_lines + d.all_stdout + d.all_notify if d.secret in t or enc in t]
        if os.path.isdir(d.state_dir):
            try:
                text = d.state_text()
            except OSError:
                text = ""
            if d.secret in text or enc in text:
                bad.append("state dir %s" % d.state_dir)
        if bad:
            raise AssertionError("the client secret appears in the daemon's output:\n" + "\n".join(bad))

    def one_slot(self, sim, env_id, name="e", delay=2, zuora=None, defaults=None, base_url=None, **envkw):
        """A daemon with one environment firing once, about DELAY s from now: (daemon, slot)."""
        slot = next_second(delay)
        z = {"request_timeout": "3s"}
        z.update(zuora or {})
        cfg = make_config(base_url or sim.base_url,
                          [dict(name=name, id=env_id, schedule=seconds_schedule(slot), **envkw)],
                          defaults=defaults, zuora=z)
        d = self.daemon(cfg)
        d.start()
        return d, slot

    # -- the invariants

    def assert_one_job_followed(self, sim, d, env_id, slot, name="e", status="COMPLETED", timeout=25):
        """Exactly one job for ENV_ID on SIM, followed to STATUS (logged with its id and slot, and in
        state.json's last_job); the daemon still runs. Returns the job."""
        try:
            end = d.wait_log(END_RE + r"|refresh for slot .* failed", timeout=timeout, ENVIRONMENT=name)
        except Timeout as exc:
            self.fail("no end of job logged: %s\nsimulator jobs: %s" % (exc, sim.jobs(env_id)))
        if re.search(r"refresh for slot .* failed", end.message):
            self.fail("the refresh failed instead of following the job; simulator jobs %s, POSTs %s; log:\n%s"
                      % ([(j["id"], j["status"]) for j in sim.jobs(env_id)],
                         [(p["status"], hdr(p, "Zuora-Track-Id")) for p in sim.posts(env_id)], d.tail()))
        time.sleep(1.2)  # nothing else may happen: no second POST, no second job
        jobs = sim.jobs(env_id)
        self.assertEqual(len(jobs), 1, "jobs on the simulator: %s\nlog:\n%s" % (
            [(j["id"], j["createTime"], j["status"]) for j in jobs], d.tail()))
        job = jobs[0]
        self.assertEqual(end.get("JOB_ID"), job["id"], d.tail())
        self.assertEqual(end.get("JOB_STATUS"), status, d.tail())
        self.assertEqual(end.get("SLOT"), rfc3339(slot), d.tail())
        self.assertEqual(job["status"], status)
        self.assertTrue(d.running(), "refreshd exited (%s); log:\n%s" % (d.proc.poll(), d.tail()))
        st = d.state()
        self.assertIsNotNone(st, "no state.json")
        last = ((st.get("environments") or {}).get(name) or {}).get("last_job") or {}
        self.assertEqual((last.get("id"), last.get("status")), (job["id"], status),
                         "state.json's last_job: %s" % json.dumps(st, indent=1))
        self.assertFalse(d.events(r"refresh for slot .* failed", ENVIRONMENT=name), d.tail())
        return job

    def assert_retried(self, d, slot, name="e", regex=None, first_within=5.0):
        """A retry was logged for the slot (warning, RETRY_IN within the first backoff ceiling)."""
        retries = d.events(RETRY_RE, ENVIRONMENT=name, SLOT=rfc3339(slot))
        self.assertTrue(retries, "no retry logged; log:\n%s" % d.tail())
        r = retries[0]
        self.assertEqual(r.level, "warning", r.raw)
        self.assertLessEqual(float(r.get("RETRY_IN", "999s").rstrip("s")), first_within, r.raw)
        if regex:
            self.assertRegex(r.message, regex)
        return retries

    def assert_list_before_each_retry(self, sim, env_id):
        """Between two POSTs, the environment's jobs were listed (the at-most-once check)."""
        posts = sim.posts(env_id)
        lists = sim.requests(path=LIST_PATH_RE % re.escape(env_id), method="GET")
        for a, b in zip(posts, posts[1:]):
            self.assertTrue([l for l in lists if a["seq"] < l["seq"] < b["seq"]],
                            "POST retried without a list check in between")


# ==============================================================================================
# faults on the POST

class PostFaults(E2E):
    def _fault(self, env_id, rule, creates_job, regex=None, job_seconds=1.5, timeout=25, answered=False):
        """The POST meets the fault RULE. ANSWERED: Zuora's 2xx came, but not a job refreshd can name
        (cut short, not JSON, too big, the wrong shape): Zuora may have accepted the refresh, so the
        POST is never sent again; the list check adopts the job it made (CREATES_JOB), or the refresh
        fails, saying so. Otherwise the outcome is unknown (no answer): retried after the list check."""
        sim = self.sim(job_seconds=job_seconds)
        sim.fault(post_fault(env_id, **rule))
        d, slot = self.one_slot(sim, env_id)
        if answered and not creates_job:
            failed = d.wait_log(r"refresh for slot .* failed", timeout=timeout, ENVIRONMENT="e")
            self.assertIn("not submitted again", failed.message)
            self.assertEqual(failed.get("SLOT"), rfc3339(slot))
            time.sleep(1.2)
            self.assertEqual(len(sim.posts(env_id)), 1, d.tail())
            self.assertEqual(sim.jobs(env_id), [])
            last = (((d.state() or {}).get("environments") or {}).get("e") or {}).get("last_job") or {}
            self.assertEqual(last.get("status"), "SUBMIT_FAILED", d.state())
            self.assertTrue(d.running())
            return sim, d, slot, None
        job = self.assert_one_job_followed(sim, d, env_id, slot, timeout=timeout)
        posts = sim.posts(env_id)
        if creates_job:
            # The failed POST created the job: the list check adopts it, nothing is sent again.
            self.assertEqual(len(posts), 1, [(p["status"]) for p in posts])
            adopted = d.events(r"already refreshes", ENVIRONMENT="e", JOB_ID=job["id"], SLOT=rfc3339(slot))
            self.assertEqual(len(adopted), 1, d.tail())
        else:
            self.assertEqual(len(posts), 2, [(p["status"]) for p in posts])
            self.assertEqual(hdr(posts[0], "Idempotency-Key"), hdr(posts[1], "Idempotency-Key"))
            self.assert_list_before_each_retry(sim, env_id)
        if answered:
            unknown = d.events(r"Zuora may have accepted the refresh, so it is not submitted again",
                               ENVIRONMENT="e", SLOT=rfc3339(slot))
            self.assertEqual(len(unknown), 1, d.tail())
            self.assertEqual(unknown[0].level, "warning")
            if regex:
                self.assertRegex(unknown[0].message, regex)
            self.assertFalse(d.events(RETRY_RE, ENVIRONMENT="e"), d.tail())
        else:
            self.assert_retried(d, slot, regex=regex)
        return sim, d, slot, job

    def test_reset_mid_body(self):
        self._fault("env-rst", {"action": "reset_mid_body"}, creates_job=True, answered=True)

    def test_hang_request_timeout(self):
        sim, d, slot, _ = self._fault("env-hang", {"action": "hang"}, creates_job=False, regex=r"(?i)time")
        posts = sim.posts("env-hang")
        # request_timeout 3s: the second POST leaves after the timeout plus at most 5 s of backoff
        gap = posts[1]["time"] - posts[0]["time"]
        self.assertGreaterEqual(gap, 2.9, gap)
        self.assertLessEqual(gap, 3 + 5 + 1.5, gap)

    def test_drip_timeout(self):
        self._fault("env-drip", {"action": "drip", "bytes_per_second": 1}, creates_job=True, answered=True, regex=r"(?i)time")

    def test_body_over_1mib_cap(self):
        self._fault("env-huge", {"action": "huge_body"}, creates_job=True, answered=True)

    def test_not_json(self):
        self._fault("env-html", {"action": "not_json"}, creates_job=False, answered=True)

    def test_truncated_json(self):
        self._fault("env-trunc", {"action": "truncated_json"}, creates_job=True, answered=True)

    def test_truncated_json_short(self):
        self._fault("env-trs", {"action": "truncated_json_short"}, creates_job=True, answered=True)

    def test_wrong_shape_id_missing(self):
        self._fault("env-noid", {"action": "wrong_shape", "variant": "id_missing"}, creates_job=True, answered=True)

    def test_wrong_shape_array_instead_of_object(self):
        self._fault("env-arr", {"action": "wrong_shape", "variant": "array_instead_of_object"}, creates_job=True, answered=True)

    def test_wrong_shape_status_number(self):
        # The id is valid: tracking it (status unknown) or retrying and adopting it both keep the
        # invariants; what matters is one POST, one job, followed to its end.
        sim = self.sim(job_seconds=1.5)
        sim.fault(post_fault("env-num", action="wrong_shape", variant="status_number"))
        d, slot = self.one_slot(sim, "env-num")
        job = self.assert_one_job_followed(sim, d, "env-num", slot)
        self.assertEqual(len(sim.posts("env-num")), 1)
        took = d.events(r"submitted|already refreshes", ENVIRONMENT="e", JOB_ID=job["id"])
        self.assertEqual(len(took), 1, d.tail())

    def test_empty_200(self):
        self._fault("env-empty", {"action": "empty_200"}, creates_job=False, answered=True)

    def test_commit_then_fail_reset_adopted_not_doubled(self):
        self._fault("env-ctf", {"action": "commit_then_fail", "variant": "reset"}, creates_job=True,
                    job_seconds=3)

    def test_connection_refused_sim_restarted_on_same_port(self):
        sim = Sim(self.work, name="sim-down")
        port = sim.port
        sim.stop()
        d, slot = self.one_slot(None, "env-cr", base_url="http://127.0.0.1:%d" % port)
        first = d.wait_log(RETRY_RE, timeout=10, ENVIRONMENT="e", SLOT=rfc3339(slot))
        self.assertRegex(first.message, r"(?i)connect|refused")
        self.assertLessEqual(float(first.get("RETRY_IN").rstrip("s")), 5.0)
        sim2 = self.sim(name="sim-up", job_seconds=1.5, extra_args=["--port", str(port)])
        self.assertEqual(sim2.port, port)
        job = self.assert_one_job_followed(sim2, d, "env-cr", slot, timeout=40)
        self.assertEqual(len(sim2.posts("env-cr")), 1)
        self.assertEqual(job["status"], "COMPLETED")

    def test_connection_refused_then_sighup_to_the_right_port(self):
        sim = self.sim(job_seconds=1.5)
        closed = free_port()
        d, slot = self.one_slot(sim, "env-hup", base_url="http://127.0.0.1:%d" % closed)
        d.wait_log(RETRY_RE, timeout=10, ENVIRONMENT="e", SLOT=rfc3339(slot))
        self.assertEqual(sim.requests(), [])
        d.write_config(make_config(sim.base_url, [dict(name="e", id="env-hup", schedule=seconds_schedule(slot))],
                                   zuora={"request_timeout": "3s"}))
        n = len(d.notifications())
        d.sighup()
        d.wait_notify(r"(^|\n)READY=1($|\n)", timeout=5, since=n)
        self.assert_one_job_followed(sim, d, "env-hup", slot, timeout=40)
        self.assertEqual(len(sim.posts("env-hup")), 1)


# ==============================================================================================
# crash points (deterministic kill -9; tests/e2e/test_kill.py does it at random moments)

class CrashPoints(E2E):
    """Three slots S1, S1+6, S1+12; the third POST hangs (with or without creating the job); the daemon
    is killed with SIGKILL while it hangs (its intent for S3 is on disk) and started again. The list
    check at the start must find the job the POST created, or else send the POST again: one job per
    slot, S3's own job followed to its end. An older job (S1's, created less than 5 minutes before S3
    and not known by id after the kill) must not be taken for S3's."""

    def _crash_during_third_post(self, rule, job_created):
        sim = self.sim(job_seconds=1.5)
        env_id = "env-crash"
        sim.fault(post_fault(env_id, after=2, times=1, **rule))
        a = next_second(2)
        slots = [a, a + 6, a + 12]
        d = self.daemon(make_config(sim.base_url, [dict(name="e", id=env_id, schedule=seconds_schedule(*slots))],
                                    zuora={"request_timeout": "20s"}))
        d.start()
        self.assertTrue(wait_until(lambda: len(sim.posts(env_id)) >= 3, a + 12 + 6 - time.time()),
                        "no third POST; log:\n%s" % d.tail())
        time.sleep(0.3)
        intent = ((d.state() or {}).get("environments", {}).get("e") or {}).get("intent")
        self.assertIsNotNone(intent, "no intent on disk while the POST is in flight: %s" % d.state())
        self.assertEqual(intent.get("slot"), rfc3339(slots[2]))
        d.kill9()
        d.start()
        end = d.wait_log(END_RE, timeout=20, ENVIRONMENT="e", SLOT=rfc3339(slots[2]))
        time.sleep(1.2)
        jobs = sim.jobs(env_id)
        by_slot = {}
        for j in jobs:
            slot = max(s for s in slots if s <= j["created"])
            by_slot.setdefault(slot, []).append(j["id"])
        self.assertEqual({rfc3339(s): len(by_slot.get(s, [])) for s in slots}, {rfc3339(s): 1 for s in slots},
                         "jobs per slot; simulator jobs %s; log of the second run:\n%s"
                         % ([(j["id"], j["createTime"]) for j in jobs], d.tail()))
        self.assertEqual(end.get("JOB_ID"), by_slot[slots[2]][0],
                         "slot %s was given another slot's job; log:\n%s" % (rfc3339(slots[2]), d.tail()))
        self.assertEqual(end.get("JOB_STATUS"), "COMPLETED")
        self.assertEqual(len(sim.posts(env_id)), 3 if job_created else 4)
        self.assertTrue(d.running())

    def test_job_ended_while_down_missed_slot_caught_up(self):
        # SIGTERM while slot A's job runs (README: it is followed again at the next start); the job
        # ends at Zuora, then slot B passes while refreshd is down. At the start, B is the latest
        # missed slot and catch_up fires it: it did not come while A's job was running.
        sim = self.sim(job_seconds=2)
        a = next_second(2)
        b = a + 6
        d = self.daemon(make_config(sim.base_url, [dict(name="e", id="env-down", schedule=seconds_schedule(a, b))],
                                    defaults={"catch_up": True}))
        d.start()
        d.wait_log(r"submitted", timeout=10, ENVIRONMENT="e", SLOT=rfc3339(a))
        d.sigterm()
        self.assertEqual(d.wait_exit(5), 0)
        time.sleep(max(0, b + 1.5 - time.time()))
        job_a = sim.jobs("env-down")[0]
        self.assertFalse(job_a["running"])
        self.assertLess(iso_to_epoch(job_a["jobEndTime"]) + 2, b)
        d.start()
        end_a = d.wait_log(END_RE, timeout=10, ENVIRONMENT="e", SLOT=rfc3339(a))
        self.assertEqual(end_a.get("JOB_ID"), job_a["id"])
        d.wait_log(r"catching up", timeout=5, ENVIRONMENT="e", SLOT=rfc3339(b))
        try:
            end_b = d.wait_log(END_RE, timeout=15, ENVIRONMENT="e", SLOT=rfc3339(b))
        except Timeout:
            self.fail("the missed slot %s was not refreshed although job %s had ended at %s, before it; "
                      "log:\n%s" % (rfc3339(b), job_a["id"], job_a["jobEndTime"], d.tail()))
        jobs = sim.jobs("env-down")
        self.assertEqual(len(jobs), 2, [(j["id"], j["createTime"]) for j in jobs])
        self.assertEqual(end_b.get("JOB_ID"), jobs[1]["id"])
        self.assertEqual(end_b.get("JOB_STATUS"), "COMPLETED")

    def test_kill_with_the_intent_in_the_intent_log_alone_job_adopted(self):
        # A directory stands where state.json goes, so no state write succeeds after the first:
        # when the daemon is killed with its POST in flight, the slot's intent is on disk only in
        # the intent log. The next start replays it, finds the job the POST created and follows
        # it. With catch_up: false nothing else would: the slot looks neither fired nor missed.
        sim = self.sim(job_seconds=1.5)
        env_id = "env-log"
        sim.fault(post_fault(env_id, times=1, action="commit_then_fail", variant="hang"))
        slot = next_second(3)
        d = self.daemon(make_config(sim.base_url, [dict(name="e", id=env_id, schedule=seconds_schedule(slot))],
                                    defaults={"catch_up": False}, zuora={"request_timeout": "20s"}))
        d.start()
        path = os.path.join(d.state_dir, "state.json")
        self.assertTrue(wait_until(lambda: os.path.exists(path), 5), d.tail())
        with open(path, "rb") as f:
            saved = f.read()
        self.assertIsNone(json.loads(saved)["environments"]["e"]["intent"])
        os.unlink(path)
        os.mkdir(path)
        open(os.path.join(path, "keep"), "w").close()
        self.assertTrue(wait_until(lambda: len(sim.posts(env_id)) >= 1, slot + 5 - time.time()), d.tail())
        d.wait_log(r"Cannot write", timeout=5)
        d.kill9()
        shutil.rmtree(path)
        with open(path, "wb") as f:
            f.write(saved)
        d.start()
        end = d.wait_log(END_RE, timeout=20, ENVIRONMENT="e", SLOT=rfc3339(slot))
        jobs = sim.jobs(env_id)
        self.assertEqual(len(jobs), 1, [(j["id"], j["createTime"]) for j in jobs])
        self.assertEqual(end.get("JOB_ID"), jobs[0]["id"], d.tail())
        self.assertEqual(end.get("JOB_STATUS"), "COMPLETED")
        self.assertEqual(len(sim.posts(env_id)), 1)

    def test_kill_while_post_hangs_job_not_created_resubmitted(self):
        self._crash_during_third_post({"action": "hang"}, job_created=False)

    def test_kill_after_post_committed_job_adopted(self):
        self._crash_during_third_post({"action": "commit_then_fail", "variant": "hang"}, job_created=True)


# ==============================================================================================
# tokens

class TokenFaults(E2E):
    def test_token_endpoint_500_twice_then_ok(self):
        sim = self.sim(job_seconds=1.5)
        sim.fault({"match": {"path": "^/oauth/token$"}, "action": "status", "status": 500, "times": 2})
        d, slot = self.one_slot(sim, "env-tok")
        self.assert_one_job_followed(sim, d, "env-tok", slot)
        toks = sim.token_requests()
        self.assertEqual([t["status"] for t in toks][:3], [500, 500, 200], [t["status"] for t in toks])
        self.assertEqual(len(sim.posts("env-tok")), 1)

    def test_tokens_expiring_early_are_renewed(self):
        sim = self.sim(job_seconds=6)
        sim.fault([post_fault("env-exp", action="expire_token"),
                   {"match": {"method": "GET", "path": JOB_PATH_RE % "env-exp"}, "action": "expire_token",
                    "after": 1, "times": 1}])
        d, slot = self.one_slot(sim, "env-exp")
        # the POST's token and a poll's token expire (fault rules): two renewals; then every token
        # is expired from the control API: a third
        self.assertTrue(wait_until(lambda: len(sim.token_requests()) >= 3, 15), sim.token_requests())
        sim.expire_tokens()
        self.assert_one_job_followed(sim, d, "env-exp", slot)
        posts = sim.posts("env-exp")
        self.assertEqual([p["status"] for p in posts], [401, 200])
        toks = sim.token_requests()
        self.assertGreaterEqual(len(toks), 4, "expected a new token after each expiry: %d" % len(toks))
        self.assertFalse(d.events(r"check client_id"), d.tail())
        auths = [hdr(r, "Authorization") for r in sim.api_requests()]
        self.assertGreaterEqual(len(set(auths)), 4, "tokens were not renewed")


# ==============================================================================================
# tracking

class Tracking(E2E):
    def test_unknown_status_warned_polling_goes_on_then_ends_at_job_end_time(self):
        sim = self.sim(job_seconds=2)
        sim.config(environments={"env-odd": {"final_status": "WEIRD_STATE", "set_end_time": False},
                                 "env-odd-end": {"final_status": "ODD_END"}})
        slot = next_second(2)
        d = self.daemon(make_config(sim.base_url, [
            dict(name="odd", id="env-odd", schedule=seconds_schedule(slot)),
            dict(name="oddend", id="env-odd-end", schedule=seconds_schedule(slot))]))
        d.start()
        d.wait_log(r"does not know", timeout=15, ENVIRONMENT="odd")
        n1 = len(sim.polls("env-odd"))
        time.sleep(3.2)
        n2 = len(sim.polls("env-odd"))
        self.assertGreaterEqual(n2 - n1, 2, "polling must go on after an unknown status")
        self.assertEqual(len(d.events(r"does not know", ENVIRONMENT="odd")), 1, d.tail())
        self.assertFalse(d.events(END_RE, ENVIRONMENT="odd"), "an unknown status without jobEndTime ended the job")
        # with a jobEndTime the job has ended, whatever its status says
        end = d.wait_log(END_RE, timeout=10, ENVIRONMENT="oddend")
        job = sim.jobs("env-odd-end")
        self.assertEqual(len(job), 1)
        self.assertEqual(end.get("JOB_ID"), job[0]["id"])
        self.assertEqual(end.get("JOB_STATUS"), "ODD_END")
        self.assertTrue(d.running())
        self.assertEqual(len(sim.jobs("env-odd")), 1)
        self.assertEqual(len(sim.posts()), 2)

    def test_in_progress_for_days_steady_rss_and_state(self):
        sim = self.sim(job_seconds=1)
        sim.config(environments={"env-days": {"final_status": "never"}})
        d, slot = self.one_slot(sim, "env-days")
        d.wait_log(r"is IN_PROGRESS", timeout=15, ENVIRONMENT="e")
        t0 = time.time()
        state_path = os.path.join(d.state_dir, "state.json")
        time.sleep(5)
        rss5, size5, polls5 = vm_rss_kib(d.proc.pid), os.path.getsize(state_path), sim.polls("env-days")
        time.sleep(max(0, t0 + 15 - time.time()))
        rss15, size15, polls15 = vm_rss_kib(d.proc.pid), os.path.getsize(state_path), sim.polls("env-days")
        self.assertTrue(d.running())
        n = len(polls15) - len(polls5)
        self.assertGreaterEqual(n, 8, "polls between 5 s and 15 s: %d" % n)
        self.assertLessEqual(n, 11, "polls between 5 s and 15 s: %d" % n)
        gaps = [b["time"] - a["time"] for a, b in zip(polls15, polls15[1:])]
        self.assertTrue(all(0.9 <= g <= 2.0 for g in gaps), gaps)
        # AddressSanitizer keeps freed memory in quarantine: RSS says nothing there.
        if not sanitized(BINARY):
            self.assertLess(rss15 - rss5, 256, "VmRSS %d KiB at 5 s, %d KiB at 15 s" % (rss5, rss15))
        self.assertEqual(size15, size5, "state.json grew while nothing changed")
        self.assertEqual(len(sim.jobs("env-days")), 1)
        self.assertEqual(len(sim.posts("env-days")), 1)
        self.assertFalse(d.events(END_RE), d.tail())
        st = d.state()
        self.assertIn(sim.jobs("env-days")[0]["id"], json.dumps(st))


# ==============================================================================================
# TLS

def make_certs(work):
    """A throwaway CA and a server certificate for IP:127.0.0.1 signed by it: (ca, cert, key)."""
    ca_key, ca = os.path.join(work, "ca.key"), os.path.join(work, "ca.pem")
    key, csr, cert = os.path.join(work, "srv.key"), os.path.join(work, "srv.csr"), os.path.join(work, "srv.pem")
    ext = os.path.join(work, "srv.ext")
    with open(ext, "w") as fh:
        fh.write("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                 "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")

    def run(*argv):
        p = subprocess.run(["openssl"] + list(argv), capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            raise RuntimeError("openssl %s: %s" % (" ".join(argv), p.stderr))

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca, "-days", "2",
        "-subj", "/CN=refreshd e2e throwaway CA", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1")
    run("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert,
        "-days", "2", "-extfile", ext)
    return ca, cert, key


@unittest.skipUnless(shutil.which("openssl"), "openssl is not installed")
class Tls(E2E):
    def tls_sim(self):
        ca, cert, key = make_certs(self.work)
        sim = TlsSim(self.work, cert, key, ca, job_seconds=1.5)
        self.addCleanup(sim.stop)
        self.assertTrue(sim.base_url.startswith("https://"))
        self.assertEqual(sim._call("GET", "/_sim/health", raw=True), "ok")
        return sim, ca

    def test_without_ca_file_certificate_error_and_no_request(self):
        sim, _ = self.tls_sim()
        d, slot = self.one_slot(sim, "env-tls")
        retry = d.wait_log(RETRY_RE, timeout=10, ENVIRONMENT="e", SLOT=rfc3339(slot))
        self.assertRegex(retry.message, r"(?i)certificate|self[- ]signed|unable to get local issuer", retry.raw)
        time.sleep(float(retry.get("RETRY_IN").rstrip("s")) + 1.5)
        self.assertTrue(d.running())
        self.assertEqual(sim.requests(), [], "the simulator received HTTP requests over an unverified connection")
        self.assertEqual(sim.jobs(), [])
        self.assertFalse(d.events(r"submitted"), d.tail())

    def test_with_ca_file_completes(self):
        sim, ca = self.tls_sim()
        d, slot = self.one_slot(sim, "env-tls", zuora={"ca_file": ca})
        self.assert_one_job_followed(sim, d, "env-tls", slot)
        self.assertFalse(d.events(RETRY_RE), d.tail())
        self.assertEqual(len(sim.posts("env-tls")), 1)


# ==============================================================================================
# secrets, and who may talk to whom

class Secrets(E2E):
    def test_no_secret_no_token_anywhere_foreign_host_gets_nothing(self):
        secret = "e2e-Faults-Canary-Zq81xLm4"
        recorder = self.sim(name="recorder", record_only=True)
        sim = self.sim(job_seconds=3, client_secret=secret,
                       extra_args=["--location-mode", "foreign", "--foreign-base", recorder.base_url])
        sim.fault([{"match": {"path": "^/oauth/token$"}, "action": "status", "status": 500, "times": 1},
                   post_fault("env-s1", action="status", status=500, times=1),
                   post_fault("env-s2", action="commit_then_fail", variant="500", times=1),
                   {"match": {"method": "GET", "path": JOB_PATH_RE % "env-s1"}, "action": "expire_token",
                    "after": 1, "times": 1},
                   {"match": {"method": "GET", "path": JOB_PATH_RE % "env-s2"}, "action": "status",
                    "status": 401, "times": 1}])
        slot = next_second(2)
        cfg = make_config(sim.base_url, [dict(name="s1", id="env-s1", schedule=seconds_schedule(slot)),
                                         dict(name="s2", id="env-s2", schedule=seconds_schedule(slot))],
                          zuora={"request_timeout": "3s"})
        d = self.daemon(cfg, secret=secret)
        d.start()
        for name in ("s1", "s2"):
            d.wait_log(END_RE, timeout=30, ENVIRONMENT=name, JOB_STATUS="COMPLETED")
        sim.expire_tokens()
        n = len(d.notifications())
        d.sighup()
        d.wait_notify(r"(^|\n)READY=1($|\n)", timeout=5, since=n)
        outputs = []
        for extra in ((), ("--json",)):
            rc, out = run_status(d, *extra)
            self.assertEqual(rc, 0, out)
            outputs.append(("status %s" % " ".join(extra), out))
        d.sigterm()
        self.assertEqual(d.wait_exit(5), 0)
        for extra in ((), ("--json",)):
            rc, out = run_status(d, *extra)
            outputs.append(("status %s after exit" % " ".join(extra), out))

        tokens = set()
        for r in sim.requests():
            m = re.match(r"(?i)bearer\s+(\S+)", hdr(r, "Authorization") or "")
            if m:
                tokens.add(m.group(1))
        self.assertGreaterEqual(len(tokens), 2, "expected several tokens: %s" % tokens)
        texts = [("stderr", t) for t in d.all_lines] + [("stdout", t) for t in d.all_stdout] + \
                [("sd_notify", t) for t in d.all_notify] + outputs
        for name in sorted(os.listdir(d.state_dir)):
            with open(os.path.join(d.state_dir, name), "rb") as fh:
                texts.append(("state/" + name, fh.read().decode("utf-8", "replace")))
        needles = [("client secret", secret), ("client secret (url-encoded)", urllib.parse.quote(secret, safe=""))]
        needles += [("token %s..." % t[:6], t) for t in tokens]
        leaks = ["%s in %s: %s" % (what, where, text[:300]) for where, text in texts for what, needle in needles
                 if needle in text]
        self.assertEqual(leaks, [])
        self.assertEqual(recorder.requests(), [], "the foreign host received requests")
        self.assertEqual(len(sim.jobs()), 2)
        self.assertEqual(sorted(j["status"] for j in sim.jobs()), ["COMPLETED", "COMPLETED"])


# ==============================================================================================
# disk

MOUNT_NS = os.environ.get(NS_ENV) == "1"


def mount(*argv):
    p = subprocess.run(["mount"] + list(argv), capture_output=True, text=True, timeout=20)
    if p.returncode != 0:
        raise OSError("mount %s: %s" % (" ".join(argv), p.stderr.strip()))


def umount(path):
    subprocess.run(["umount", "-l", path], capture_output=True, timeout=20)


def fill(path):
    """Writes PATH until the file system is full; returns the bytes written. A page the daemon frees
    a moment later (its save replaces state.json: the old file's page comes free after the rename)
    is taken too: the filling goes on for a second."""
    n = 0
    deadline = time.time() + 1.0
    with open(path, "ab", buffering=0) as fh:
        while True:
            for size in (4096, 512, 1):
                while True:
                    try:
                        n += fh.write(b"\0" * size)
                    except OSError as exc:
                        if exc.errno != errno.ENOSPC:
                            raise
                        break
            if time.time() >= deadline:
                return n
            time.sleep(0.02)


class Disk(E2E):
    def setUp(self):
        super().setUp()
        if not MOUNT_NS:
            self.skipTest("not in a private mount namespace (unshare -m was not possible: %s)"
                          % os.environ.get("REFRESHD_E2E_NS_WHY", "not tried"))
        probe = os.path.join(self.work, "probe")
        os.makedirs(probe)
        try:
            mount("-t", "tmpfs", "-o", "size=16k", "tmpfs", probe)
        except OSError as exc:
            self.skipTest("mounting is not permitted here: %s" % exc)
        umount(probe)

    def _sched(self, sim, slots, state_dir):
        cfg = make_config(sim.base_url, [dict(name="e", id="env-disk", schedule=seconds_schedule(*slots))],
                          zuora={"request_timeout": "3s"})
        return self.daemon(cfg, state_dir=state_dir)

    def test_state_dir_read_only(self):
        sim = self.sim(job_seconds=1.5)
        state_dir = os.path.join(self.work, "ro-state")
        os.makedirs(state_dir)
        # an earlier run leaves a state.json behind
        far = next_second(30)
        d0 = self._sched(sim, [far], state_dir)
        d0.start()
        wait_until(lambda: os.path.exists(os.path.join(state_dir, "state.json")), 5)
        d0.sigterm()
        self.assertEqual(d0.wait_exit(5), 0)
        with open(os.path.join(state_dir, "state.json"), "rb") as fh:
            before = fh.read()
        mount("--bind", state_dir, state_dir)
        self.addCleanup(umount, state_dir)
        mount("-o", "remount,bind,ro", state_dir)
        with self.assertRaises(OSError):
            open(os.path.join(state_dir, "x"), "w")
        a = next_second(2)
        b = a + 6
        d = self._sched(sim, [a, b], state_dir)
        d.start()
        for slot in (a, b):
            d.wait_log(END_RE, timeout=20, ENVIRONMENT="e", SLOT=rfc3339(slot), JOB_STATUS="COMPLETED")
        time.sleep(1)
        self.assertTrue(d.running())
        errors = d.events(r"Cannot write .*state\.json")
        self.assertEqual(len(errors), 1, "one error per failure streak:\n%s" % "\n".join(l.raw for l in errors))
        self.assertEqual(errors[0].level, "err")
        self.assertRegex(errors[0].message, r"(?i)read-only")
        jobs = sim.jobs("env-disk")
        slots = sorted(int(j["created"]) - int(j["created"] - a) % 6 for j in jobs)
        self.assertEqual(len(jobs), 2, [(j["id"], j["createTime"]) for j in jobs])
        self.assertEqual(slots, [a, b])
        self.assertEqual(len(sim.posts("env-disk")), 2)
        with open(os.path.join(state_dir, "state.json"), "rb") as fh:
            self.assertEqual(fh.read(), before, "state.json changed on a read-only file system")
        d.sigterm()
        self.assertEqual(d.wait_exit(5), 0)
        self.assertEqual(len(d.events(r"Cannot write .*state\.json")), 1)

    def test_state_dir_full_then_freed(self):
        sim = self.sim(job_seconds=3)
        state_dir = os.path.join(self.work, "small")
        os.makedirs(state_dir)
        mount("-t", "tmpfs", "-o", "size=16k,mode=0755", "tmpfs", state_dir)
        self.addCleanup(umount, state_dir)
        a = next_second(3)
        b = a + 9
        d = self._sched(sim, [a, b], state_dir)
        d.start()
        wait_until(lambda: os.path.exists(os.path.join(state_dir, "state.json")), 5)
        filler = os.path.join(state_dir, "filler")
        n = fill(filler)
        self.assertGreater(n, 0)
        # streak 1: the first slot's intent, submission and progress cannot be written
        e1 = d.wait_log(r"Cannot write .*state\.json", timeout=10)
        self.assertRegex(e1.message, r"(?i)no space")
        with open(os.path.join(state_dir, "state.json")) as fh:
            json.load(fh)  # the last good state.json is still there, whole
        d.wait_log(END_RE, timeout=15, ENVIRONMENT="e", SLOT=rfc3339(a), JOB_STATUS="COMPLETED")
        self.assertEqual(len(d.events(r"Cannot write .*state\.json")), 1, d.tail())
        os.unlink(filler)
        ok1 = d.wait_log(r"is written again", timeout=15)
        self.assertGreater(ok1.index, e1.index)
        # streak 2: full again while the second slot's job runs
        d.wait_log(r"submitted|already refreshes", timeout=15, ENVIRONMENT="e", SLOT=rfc3339(b))
        fill(filler)
        e2 = d.wait_log(r"Cannot write .*state\.json", timeout=10, since=ok1.index + 1)
        d.wait_log(END_RE, timeout=15, ENVIRONMENT="e", SLOT=rfc3339(b), JOB_STATUS="COMPLETED")
        os.unlink(filler)
        n0 = len(d.notifications())
        d.sighup()  # a reload makes a change to write
        d.wait_notify(r"(^|\n)READY=1($|\n)", timeout=5, since=n0)
        ok2 = d.wait_log(r"is written again", timeout=10, since=e2.index + 1)
        self.assertTrue(d.running())
        errors = d.events(r"Cannot write .*state\.json")
        self.assertEqual([l.index for l in errors], [e1.index, e2.index], "one error per failure streak:\n%s"
                         % "\n".join(l.raw for l in errors))
        self.assertEqual(len(d.events(r"is written again")), 2)
        self.assertLess(e2.index, ok2.index)
        self.assertEqual(len(sim.jobs("env-disk")), 2)
        self.assertEqual(len(sim.posts("env-disk")), 2)
        st = d.state()
        last = st and json.dumps(st)
        self.assertIn(sim.jobs("env-disk")[1]["id"], last or "", st)
        leftovers = [f for f in os.listdir(state_dir) if f not in ("state.json", "lock")]
        self.assertEqual(leftovers, [], "temporary files left behind")
        d.sigterm()
        self.assertEqual(d.wait_exit(5), 0)


# ==============================================================================================
# runner (as in test_daemon.py)

def _maybe_reexec_in_mount_ns(argv):
    """Runs the whole script again in a private mount namespace (for the disk tests)."""
    if os.environ.get(NS_ENV):
        return
    if os.environ.get("REFRESHD_E2E_NO_UNSHARE") == "1":
        os.environ["REFRESHD_E2E_NS_WHY"] = "REFRESHD_E2E_NO_UNSHARE=1"
        return
    if not shutil.which("unshare"):
        os.environ["REFRESHD_E2E_NS_WHY"] = "unshare is not installed"
        return
    tries = [["unshare", "-m", "--propagation", "private"]]
    if os.geteuid() != 0:
        tries.append(["unshare", "-r", "-m", "--propagation", "private"])
    why = []
    for prefix in tries:
        p = subprocess.run(prefix + ["true"], capture_output=True, text=True)
        if p.returncode == 0:
            os.environ[NS_ENV] = "1"
            sys.stdout.flush()
            os.execvp(prefix[0], prefix + [sys.executable, os.path.abspath(argv[0])] + argv[1:])
        why.append("%s: %s" % (" ".join(prefix), p.stderr.strip() or "exit %d" % p.returncode))
    os.environ["REFRESHD_E2E_NS_WHY"] = "; ".join(why)


# ==============================================================================================
# what Zuora's list shows at the slot, Zuora's clock, one daemon per state directory

class AtTheSlot(E2E):
    """Jobs someone else made, as the list check finds them at the slot: one that ended FAILED or
    CANCELED minutes before the slot refreshed nothing (the slot is POSTed); one that COMPLETED
    minutes before is the slot's refresh (adopted, no POST); one still running since long before is
    a refresh under way (the slot is skipped as an overlap, naming it, no POST, and when Zuora shows
    no nextRefreshTime beside a lastRefreshTime the message says so); a sandbox never refreshed
    fires normally."""

    def _run(self, envs, settings=None):
        sim = self.sim(job_seconds=1.5)
        if settings:
            sim.config(environments=settings)
        hand = {}
        for env_id, status, created_ago, ended_ago in envs:
            if status:
                hand[env_id] = sim.add_job(env_id, status, created_ago, ended_ago)["id"]
        slot = next_second(3)
        cfg = make_config(sim.base_url, [dict(name=e[0], id=e[0], schedule=seconds_schedule(slot)) for e in envs],
                          zuora={"request_timeout": "5s"})
        d = self.daemon(cfg)
        d.start()
        return sim, d, slot, hand

    def test_ended_before_the_slot(self):
        sim, d, slot, hand = self._run([("env-canceled", "CANCELED", 200, 140),
                                        ("env-failed", "FAILED", 200, 60),
                                        ("env-completed", "COMPLETED", 200, 60)])
        for env_id in ("env-canceled", "env-failed"):
            end = d.wait_log(END_RE, timeout=20, ENVIRONMENT=env_id, SLOT=rfc3339(slot))
            self.assertEqual(len(sim.posts(env_id)), 1, d.tail())
            self.assertNotEqual(end.get("JOB_ID"), hand[env_id], d.tail())
            self.assertFalse(d.events(r"already refreshes", ENVIRONMENT=env_id), d.tail())
        adopted = d.wait_log(r"already refreshes", timeout=10, ENVIRONMENT="env-completed")
        self.assertEqual(adopted.get("JOB_ID"), hand["env-completed"])
        self.assertEqual(adopted.get("SLOT"), rfc3339(slot))
        time.sleep(1.5)
        self.assertEqual(sim.posts("env-completed"), [], d.tail())
        self.assertTrue(d.running())

    def test_running_elsewhere_skips_never_refreshed_fires(self):
        settings = {"env-busy-known": {"cooldown_seconds": 28 * 86400, "last_refresh_ago": 30 * 86400}}
        sim, d, slot, hand = self._run([("env-busy", "IN_PROGRESS", 3600, None),
                                        ("env-busy-known", "IN_PROGRESS", 3600, None),
                                        ("env-never", None, 0, None)], settings)
        for env_id in ("env-busy", "env-busy-known"):
            skip = d.wait_log(r"skipped", timeout=15, ENVIRONMENT=env_id, SLOT=rfc3339(slot))
            self.assertIn("job %s is already running at Zuora" % hand[env_id], skip.message)
            self.assertEqual("nextRefreshTime" in skip.message, env_id == "env-busy-known", skip.raw)
        end = d.wait_log(END_RE, timeout=20, ENVIRONMENT="env-never", SLOT=rfc3339(slot))
        self.assertEqual(end.get("JOB_STATUS"), "COMPLETED")
        time.sleep(1)
        self.assertEqual(len(sim.posts("env-never")), 1)
        self.assertEqual(sim.posts("env-busy") + sim.posts("env-busy-known"), [], d.tail())
        st = d.state()["environments"]
        self.assertEqual(st["env-busy"].get("last_slot"), rfc3339(slot))
        self.assertTrue(d.running())


class ZuoraClock(E2E):
    """Zuora's clock 5 minutes behind ours: the offset is measured from its Date headers and the
    createTime of the job refreshd made, logged once, kept in state.json and shown by status --json;
    the slot is refreshed once."""

    def test_offset_measured_logged_and_shown(self):
        sim = self.sim(job_seconds=1.5, extra_args=["--clock-offset", "-300"])
        d, slot = self.one_slot(sim, "env-clock")
        end = d.wait_log(END_RE, timeout=20, ENVIRONMENT="e", SLOT=rfc3339(slot))
        self.assertEqual(end.get("JOB_STATUS"), "COMPLETED")
        warned = d.events(r"Zuora's clock is")
        self.assertEqual(len(warned), 1, d.tail())
        self.assertEqual(warned[0].level, "warning")
        self.assertRegex(warned[0].message, r"Zuora's clock is 30\d\.\d s behind ours|Zuora's clock is 299\.\d s behind ours")
        self.assertEqual(len(sim.posts("env-clock")), 1)
        code, out = run_status(d, "--json")
        self.assertEqual(code, 0, out)
        doc = json.loads(out)
        self.assertAlmostEqual(doc["zuora_clock_offset_s"], -300, delta=1.5)
        self.assertLess(doc["zuora_clock_uncertainty_s"], 1.5)
        clock = d.state().get("zuora_clock")
        self.assertIsNotNone(clock, d.state())
        self.assertAlmostEqual(clock["offset_us"] / 1e6, -300, delta=1.5)


class StateDirLock(E2E):
    """One daemon per state directory: a second `run` on it exits 1 at once, naming the directory
    and the PID of the first; the first fires its slot once; `status` reads meanwhile."""

    def test_second_run_refused(self):
        sim = self.sim(job_seconds=1.5)
        d, slot = self.one_slot(sim, "env-lock", delay=3)
        with open(d.config_path) as fh:
            second = self.daemon(fh.read(), name="second", state_dir=d.state_dir)
        t0 = time.time()
        second.start(wait_ready=False)
        self.assertEqual(second.wait_exit(5), 1, second.tail())
        self.assertLess(time.time() - t0, 1.5)
        said = "\n".join(second.all_lines)
        self.assertIn(d.state_dir, said)
        self.assertIn("PID %d" % d.proc.pid, said)
        code, out = run_status(d)
        self.assertEqual(code, 0, out)
        d.wait_log(END_RE, timeout=20, ENVIRONMENT="e", SLOT=rfc3339(slot))
        time.sleep(1)
        self.assertEqual(len(sim.posts("env-lock")), 1)
        # Once the first is gone, the directory is free again.
        d.sigterm()
        self.assertEqual(d.wait_exit(5), 0)
        second.start()
        self.assertTrue(second.running())


class Hostile(E2E):
    """What hostile tests found: SIGPIPE outside systemd, a FIFO as the config, planted logfmt fields."""

    def test_sigpipe_does_not_kill_run(self):
        sim = self.sim(job_seconds=1.0)
        slot = next_second(3)
        cfg_path = os.path.join(self.work, "pipe.yaml")
        with open(cfg_path, "w") as fh:
            fh.write(make_config(sim.base_url, [dict(name="e", id="env-pipe", schedule=seconds_schedule(slot))]))
        env = dict(os.environ, REFRESHD_E2E_SECRET=DEFAULT_SECRET)
        env.pop("NOTIFY_SOCKET", None)
        # refreshd run 2>&1 | head -1
        p = subprocess.Popen([BINARY, "run", "-c", cfg_path, "--state-dir", os.path.join(self.work, "st"),
                              "--log-target", "console"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, env=env)
        os.makedirs(os.path.join(self.work, "st"), exist_ok=True)
        self.addCleanup(lambda: p.poll() is None and p.kill())
        p.stdout.readline()
        p.stdout.close()  # the reader is gone: every later write gets EPIPE
        self.assertTrue(wait_until(lambda: sim.posts("env-pipe"), slot + 5 - time.time()), "no POST")
        time.sleep(1.5)
        self.assertIsNone(p.poll(), "refreshd died: %s" % p.returncode)
        p.terminate()
        self.assertEqual(p.wait(5), 0)

    def test_config_fifo_refused_reload_goes_on(self):
        sim = self.sim(job_seconds=1.0)
        d, slot = self.one_slot(sim, "env-fifo", delay=30)
        fifo = os.path.join(self.work, "fifo.yaml")
        os.mkfifo(fifo)
        good = d.config_path + ".good"
        shutil.copy(d.config_path, good)
        os.replace(fifo, d.config_path)
        n0 = len(d.notifications())
        d.sighup()
        failed = d.wait_log(r"not a regular file", timeout=5)
        self.assertIn(d.config_path, failed.message)
        d.wait_notify(r"(^|\n)READY=1($|\n)", timeout=5, since=n0)
        d.sigterm()
        self.assertEqual(d.wait_exit(5), 0)

    def test_planted_fields_stay_in_the_message(self):
        sim = self.sim(job_seconds=1.0)
        sim.fault(post_fault("env-plant", action="status", status=400,
                             body={"success": False, "reasons": [{"code": 1, "message": "denied REFRESHD_JOB_STATUS=COMPLETED REFRESHD_ENVIRONMENT=other"}]}))
        d, slot = self.one_slot(sim, "env-plant")
        failed = d.wait_log(r"refresh for slot .* failed", timeout=15, ENVIRONMENT="e")
        self.assertIsNone(failed.get("JOB_STATUS"), failed.raw)
        self.assertEqual(failed.get("ENVIRONMENT"), "e", failed.raw)
        self.assertIn("denied", failed.raw)
        self.assertNotRegex(failed.raw, r"(^| )REFRESHD_JOB_STATUS=")


def main(argv):
    global BINARY, ARTIFACTS
    if len(argv) < 2:
        print("usage: %s /path/to/refreshd [NAME-FILTER...]" % argv[0], file=sys.stderr)
        return 2
    if not os.access(argv[1], os.X_OK):
        print("not an executable: %s" % argv[1], file=sys.stderr)
        return 2
    _maybe_reexec_in_mount_ns(argv)
    filters = argv[2:]
    ARTIFACTS = tempfile.mkdtemp(prefix="refreshd-faults-")
    # A private copy, so that a rebuild of the tree during the run changes nothing.
    BINARY = os.path.join(ARTIFACTS, "refreshd")
    shutil.copy2(os.path.abspath(argv[1]), BINARY)
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__])
    tests = list(flatten(suite))
    if filters:
        tests = [t for t in tests if any(f in t.id() for f in filters)]
    title = "refreshd fault e2e (%s%s)" % (os.path.abspath(argv[1]), ", private mount namespace" if MOUNT_NS else "")
    return run_parallel([unittest.TestSuite([t]) for t in tests], int(os.environ.get("REFRESHD_E2E_JOBS", "4")), title,
                        ARTIFACTS, show_skips=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
