#!/usr/bin/env python3
"""refreshd as a systemd service: the built binary and unit file, installed into a throwaway real
systemd (tests/systemd/box.sh), against the bundled Zuora simulator on the host's 127.0.0.1.

    python3 tests/systemd/test_service.py build/daemon/refreshd build/systemd/refreshd.service .

Everything is checked the way an operator would, through systemctl and journalctl inside the box:
READY=1, STATUS=, journal fields and catalog, LoadCredential=, DynamicUser=, reload, the watchdog,
the sandboxing, and `systemd-analyze security`/`verify`. The steps share one box and one daemon and
run in order (test_a_... to test_h_...). Exit status 0 = pass, 1 = failure, 77 = skipped (systemd
cannot boot in a namespace here; the reason is printed). REFRESHD_SYSTEMD_KEEP=1 keeps the artifacts
directory (the box's journal, simulator log); it is always kept when a step fails.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
BOX_SH = os.path.join(HERE, "box.sh")

BINARY = None
UNIT = None
SRCROOT = None
ARTIFACTS = None

SECRET = "demo-secret"
EXPOSURE_MAX = 1.1
WATCHDOG_SEC = 3
JOB_SECONDS = 8

# refreshd's own (daemon/refreshd-messages.h) and systemd's (sd-messages.h)
MSG_STARTED = "05a101f5535c413d8039a286288022a1"
MSG_RELOADED = "71aa8fc23384459a882b953da07f92ee"
MSG_SUBMITTED = "0453df95312d4df1a9eaf6f46683f2e4"
MSG_FINISHED = "c31b9eaa04404ac9b46a88af57178a24"
MSG_SLOT_FIRED = "83de462900d04ce3a267163f73705282"
SD_UNIT_STARTED = "39f53479d3a045ac8e11786248231fbf"
SD_UNIT_RELOADING = "d34d037fff1847e6ae669a370e694725"
SD_UNIT_RELOADED = "7b05ebc668384222baa8881179cfda54"

# the range systemd hands out to DynamicUser= (61184-65519, see systemd.exec(5))
DYNAMIC_UIDS = range(61184, 65520)


class Timeout(AssertionError):
    pass


def wait_for(what, predicate, timeout, interval=0.2):
    """PREDICATE's first true value; raises Timeout naming WHAT."""
    deadline = time.time() + timeout
    while True:
        v = predicate()
        if v:
            return v
        if time.time() >= deadline:
            raise Timeout("%s: not within %.0fs" % (what, timeout))
        time.sleep(interval)


# ----------------------------------------------------------------------------------------------
# the box

class BoxUnavailable(Exception):
    pass


class Box:
    """A running tests/systemd/box.sh; commands run inside it with run()."""

    def __init__(self, name):
        self.name = name
        self.running = False

    def _box(self, *argv, timeout=60, input=None):
        return subprocess.run([BOX_SH, "-n", self.name, *argv], capture_output=True, text=True,
                              timeout=timeout, input=input)

    def start(self):
        p = self._box("start", "--timeout", "60", timeout=150)
        self.running = p.returncode == 0
        if p.returncode == 77:
            raise BoxUnavailable(p.stderr.strip().splitlines()[-1] if p.stderr.strip() else "box.sh exited 77")
        if p.returncode != 0:
            raise RuntimeError("box.sh start exited %d:\n%s" % (p.returncode, p.stderr))
        self.boot_line = p.stderr.strip().splitlines()[-1]

    def run(self, *argv, check=True, timeout=30, input=None):
        """CompletedProcess (text) of ARGV inside the box; CHECK: fail on a non-zero exit."""
        p = self._box("exec", *argv, timeout=timeout, input=input)
        if check and p.returncode != 0:
            raise AssertionError("in the box: %s exited %d\n%s%s" % (" ".join(argv), p.returncode, p.stdout,
                                                                     p.stderr))
        return p

    def out(self, *argv, **kw):
        return self.run(*argv, **kw).stdout

    def write(self, path, text, mode="0644"):
        self.run("sh", "-c", 'mkdir -p "$(dirname "$1")" && cat >"$1" && chmod "$2" "$1"', "-", path, mode,
                 input=text)

    def cp(self, host_path, box_path):
        p = self._box("cp", host_path, box_path)
        if p.returncode != 0:
            raise AssertionError("box.sh cp %s %s: %s" % (host_path, box_path, p.stderr))

    def show(self, unit, *props):
        """`systemctl show -p A,B UNIT` as a dict."""
        out = self.out("systemctl", "show", "-p", ",".join(props), unit)
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal(self, *args):
        """`journalctl -o json ARGS` as a list of dicts (byte-array fields decoded)."""
        out = self.out("journalctl", "--no-pager", "-o", "json", *args, timeout=60)
        entries = []
        for line in out.splitlines():
            e = json.loads(line)
            for k, v in e.items():
                if isinstance(v, list) and v and all(isinstance(b, int) for b in v):
                    e[k] = bytes(v).decode("utf-8", errors="replace")
            entries.append(e)
        return entries

    def save_journal(self, path):
        p = self.run("journalctl", "--no-pager", "-o", "short-precise", check=False, timeout=60)
        with open(path, "w") as fh:
            fh.write(p.stdout + p.stderr)

    def stop(self):
        p = self._box("stop", timeout=120)
        self.running = False
        if p.returncode != 0:
            raise RuntimeError("box.sh stop exited %d: %s" % (p.returncode, p.stderr))


# ----------------------------------------------------------------------------------------------
# the service

CONFIG = """\
zuora:
  base_url: {base_url}
  client_id: demo-client
  client_secret_credential: client_secret
  request_timeout: 10s
defaults:
  timezone: UTC
  poll_interval: 1s
  catch_up: false
environments:
{envs}"""


def config(base_url, envs):
    text = "".join('  - name: %s\n    id: %s\n    schedule: "%s"\n' % e for e in envs)
    return CONFIG.format(base_url=base_url, envs=text)


def exec_start_path(unit_path):
    with open(unit_path) as fh:
        m = re.search(r"^ExecStart=[-@:+!]*(/\S+)", fh.read(), re.M)
    if not m:
        raise RuntimeError("no ExecStart= with an absolute path in %s" % unit_path)
    return m.group(1)


def catalog_entries(path):
    """{MESSAGE_ID: Subject} of a journal catalog file."""
    entries, current = {}, None
    with open(path) as fh:
        for line in fh:
            m = re.match(r"^-- ([0-9a-f]{32})\s*$", line)
            if m:
                current = m.group(1)
                entries[current] = None
            elif current and entries[current] is None and line.startswith("Subject:"):
                entries[current] = line.split(":", 1)[1].strip()
    return entries


class Service(unittest.TestCase):
    """One box, one simulator, one refreshd.service; the steps run in name order."""

    @classmethod
    def setUpClass(cls):
        sys.path.insert(0, os.path.join(SRCROOT, "tests", "e2e"))
        from harness import Sim  # the e2e tests' simulator wrapper

        cls.t0 = time.time()
        cls.timings = {}
        cls.figures = {}
        cls.box = Box("refreshd-test-%d" % os.getpid())
        cls.addClassCleanup(cls._teardown)
        try:
            cls.box.start()
        except BoxUnavailable as exc:
            raise unittest.SkipTest(str(exc))
        cls.timings["box boot"] = time.time() - cls.t0

        # box.sh keeps the host's network namespace: the simulator can stay on the host
        host_ns = os.readlink("/proc/self/ns/net")
        box_ns = cls.box.out("readlink", "/proc/1/ns/net").strip()
        if host_ns != box_ns:
            raise unittest.SkipTest("the box has its own network namespace (%s, host %s)" % (box_ns, host_ns))
        cls.sim = Sim(ARTIFACTS, job_seconds=JOB_SECONDS, client_secret=SECRET)
        cls.base_url = cls.sim.base_url
        cls.box.run("python3", "-c", "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=5)",
                    cls.base_url + "/_sim/health")

        # install as a package would, plus a drop-in with a short watchdog
        cls.exec_path = exec_start_path(UNIT)
        cls.box.cp(BINARY, cls.exec_path)
        cls.box.cp(UNIT, "/etc/systemd/system/refreshd.service")
        cls.box.write("/etc/systemd/system/refreshd.service.d/test.conf",
                      "[Service]\nWatchdogSec=%ds\n" % WATCHDOG_SEC)
        cls.envs = [("uat", "env-uat", "*/15 * * * * *")]
        cls.box.write("/etc/refreshd/refreshd.yaml", config(cls.base_url, cls.envs))
        cls.box.write("/etc/refreshd/client_secret", SECRET, mode="0600")
        cls.catalog = os.path.join(SRCROOT, "systemd", "refreshd.catalog")
        if os.path.exists(cls.catalog):
            cls.box.cp(cls.catalog, "/usr/lib/systemd/catalog/refreshd.catalog")
            cls.box.run("journalctl", "--update-catalog")
        cls.box.run("systemctl", "daemon-reload")

    @classmethod
    def _teardown(cls):
        box, sim = getattr(cls, "box", None), getattr(cls, "sim", None)
        cls.sim = None
        if sim is not None:
            sim.stop()
        if box is None:
            return
        if box.running:
            try:
                box.save_journal(os.path.join(ARTIFACTS, "box-journal.txt"))
            except Exception as exc:  # the box may be wedged; stopping it matters more
                print("saving the box's journal failed: %s" % exc, file=sys.stderr)
        t, was_running = time.time(), box.running
        box.stop()  # also after a failed start: box.sh stop removes whatever is left
        if was_running:
            cls.timings["box stop"] = time.time() - t

    # -- helpers

    def journal(self, *args):
        return self.box.journal("-u", "refreshd", *args)

    def events(self, message_id=None, since=0, **fields):
        """Journal entries of refreshd.service with MESSAGE_ID and REFRESHD_* FIELDS (prefix left out)."""
        out = []
        for e in self.journal():
            if message_id and e.get("MESSAGE_ID") != message_id:
                continue
            if since and int(e["__REALTIME_TIMESTAMP"]) < since * 1e6:
                continue
            if all(e.get("REFRESHD_" + k) == str(v) for k, v in fields.items()):
                out.append(e)
        return out

    def wait_event(self, what, message_id=None, timeout=20, since=0, **fields):
        return wait_for(what, lambda: self.events(message_id, since, **fields), timeout, interval=0.5)[0]

    def main_pid(self):
        return int(self.box.show("refreshd", "MainPID")["MainPID"])

    def step(self, name, t):
        self.timings[name] = time.time() - t

    # -- the steps

    def test_a_start_returns_after_ready(self):
        t = time.time()
        self.box.run("systemctl", "start", "refreshd", timeout=60)
        took = time.time() - t
        self.timings["systemctl start"] = took
        p = self.box.show("refreshd", "ActiveState", "SubState", "MainPID", "Type", "NotifyAccess")
        self.assertEqual((p["ActiveState"], p["SubState"]), ("active", "running"), p)
        self.assertEqual(p["Type"], "notify")
        self.assertGreater(int(p["MainPID"]), 0)
        # the daemon logs "started" just before READY=1; systemd logs "Started" when READY=1 arrives
        started = self.wait_event("refreshd's started message", MSG_STARTED, timeout=5)
        unit_started = wait_for("systemd's Started message", lambda: [
            e for e in self.box.journal("MESSAGE_ID=" + SD_UNIT_STARTED, "UNIT=refreshd.service")], 5)[0]
        self.assertEqual(started["_PID"], p["MainPID"])
        self.assertGreaterEqual(int(unit_started["__REALTIME_TIMESTAMP"]), int(started["__REALTIME_TIMESTAMP"]))
        self.assertEqual(unit_started.get("JOB_RESULT"), "done")

    def test_b_status_line(self):
        t = time.time()
        first = wait_for("StatusText", lambda: self.box.show("refreshd", "StatusText")["StatusText"], 5)
        self.assertIn("environment", first)
        self.assertRegex(first, r"^1 environment; running: .+; next: uat \d{4}-\d\d-\d\d \d\d:\d\d(:\d\d)? UTC$")
        # a slot comes every 15 s; the job is IN_PROGRESS from 1.6 s to 8 s after its creation
        running = wait_for("StatusText with a running job", lambda: re.search(
            r"running: uat IN_PROGRESS \d{1,3}%", self.box.show("refreshd", "StatusText")["StatusText"]), 25)
        self.figures["StatusText"] = running.string
        status = self.box.out("systemctl", "status", "--no-pager", "refreshd", check=False)
        self.assertRegex(status, r'Status: ".*environment.*"', status)
        self.step("STATUS= and progress", t)

    def test_c_journal_fields_and_catalog(self):
        job = self.wait_event("a job followed to COMPLETED", MSG_FINISHED, timeout=20, ENVIRONMENT="uat",
                              JOB_STATUS="COMPLETED")
        self.assertRegex(job.get("REFRESHD_JOB_ID", ""), r"^[0-9a-f]{32}$")
        entries = self.journal()
        with_fields = [e for e in entries if "REFRESHD_ENVIRONMENT" in e and "REFRESHD_JOB_ID" in e
                       and "MESSAGE_ID" in e]
        self.assertTrue(with_fields, "no entry with REFRESHD_ENVIRONMENT, REFRESHD_JOB_ID and MESSAGE_ID")
        progress = [e for e in entries if e.get("REFRESHD_JOB_ID") == job["REFRESHD_JOB_ID"]
                    and "REFRESHD_PROGRESS" in e]
        self.assertTrue(progress, "no REFRESHD_PROGRESS for job %s" % job["REFRESHD_JOB_ID"])
        if not os.path.exists(self.catalog):
            self.figures["catalog"] = "skipped (no systemd/refreshd.catalog)"
            return
        subjects = catalog_entries(self.catalog)
        ids = {e["MESSAGE_ID"] for e in entries if e.get("_SYSTEMD_UNIT") == "refreshd.service" and "MESSAGE_ID" in e}
        listed = self.box.out("journalctl", "--list-catalog")
        missing = [i for i in ids if i not in subjects or i not in listed]
        self.assertFalse(missing, "MESSAGE_IDs logged without a catalog entry: %s" % missing)
        text = self.box.out("journalctl", "--no-pager", "-x", "-u", "refreshd")
        for i in ids:
            # "Subject: Job @REFRESHD_JOB_ID@ of ..." comes with the entry's own fields filled in
            rx = ".+?".join(re.escape(part) for part in re.split(r"@[A-Z0-9_]+@", subjects[i]))
            self.assertRegex(text, "(?m)^░░ Subject: " + rx + "$",
                             "journalctl -x does not show the catalog entry of %s" % i)
        self.figures["catalog"] = "%d entries, %d shown by journalctl -x" % (len(subjects), len(ids))

    def test_d_credential_and_dynamic_user(self):
        tokens = self.sim.token_requests()
        self.assertTrue(tokens, "no POST /oauth/token at the simulator")
        for tok in tokens:
            self.assertEqual(tok["method"], "POST")
            form = urllib.parse.parse_qs(tok["body"])
            self.assertEqual(form.get("client_secret"), [SECRET])
            self.assertEqual(tok["status"], 200)
        self.assertEqual(self.box.show("refreshd", "DynamicUser")["DynamicUser"], "yes")
        # `systemctl show -p LoadCredential` prints "[unprintable]" in systemd 252: look at the mount
        cred = self.box.out("stat", "-c", "%u %a", "/run/credentials/refreshd.service/client_secret").split()
        stat = self.box.out("stat", "-c", "%n %u %g %a %F", "/var/lib/private/refreshd",
                            "/var/lib/private/refreshd/state.json").splitlines()
        d_uid, f_uid = int(stat[0].split()[1]), int(stat[1].split()[1])
        self.assertIn(d_uid, DYNAMIC_UIDS, stat)
        self.assertEqual(f_uid, d_uid, stat)
        self.assertEqual(cred, [str(d_uid), "400"], "the credential's owner and mode")
        self.assertIn("regular file", stat[1])
        self.assertEqual(self.box.out("readlink", "/var/lib/refreshd").strip(), "private/refreshd")
        uid = self.events(MSG_STARTED)[0]["_UID"]
        self.assertEqual(int(uid), d_uid, "the daemon runs as uid %s, the state directory is %d's" % (uid, d_uid))
        self.figures["dynamic uid"] = d_uid
        everything = self.box.out("journalctl", "--no-pager", "-o", "export")
        self.assertNotIn(SECRET, everything, "the client secret is in the journal")

    def test_e_reload(self):
        t = time.time()
        pid = self.main_pid()
        self.envs.append(("dev", "env-dev", "5/15 * * * * *"))
        self.box.write("/etc/refreshd/refreshd.yaml", config(self.base_url, self.envs))
        self.box.run("systemctl", "reload", "refreshd")
        p = self.box.show("refreshd", "ActiveState", "SubState", "MainPID")
        self.assertEqual((p["ActiveState"], p["SubState"]), ("active", "running"), p)
        self.assertEqual(int(p["MainPID"]), pid, "reload must not restart the daemon")
        reloaded = self.wait_event("refreshd's Reloaded message", MSG_RELOADED, timeout=10)
        self.assertIn("Reloaded", reloaded["MESSAGE"])
        self.assertIn("2 environments", reloaded["MESSAGE"])
        self.assertEqual(int(reloaded["_PID"]), pid)
        sd = self.box.journal("UNIT=refreshd.service")
        self.assertTrue([e for e in sd if e.get("MESSAGE_ID") == SD_UNIT_RELOADING], "no 'Reloading' from systemd")
        self.assertTrue([e for e in sd if e.get("MESSAGE_ID") == SD_UNIT_RELOADED and e.get("JOB_RESULT") == "done"],
                        "no 'Reloaded' (done) from systemd")
        wait_for("StatusText with 2 environments",
                 lambda: self.box.show("refreshd", "StatusText")["StatusText"].startswith("2 environments"), 5)
        self.wait_event("a slot of the new environment", MSG_SLOT_FIRED, timeout=20, ENVIRONMENT="dev")
        self.wait_event("a job of the new environment", MSG_SUBMITTED, timeout=10, ENVIRONMENT="dev")
        self.step("reload", t)

    def test_f_watchdog_restart_resumes_job(self):
        t = time.time()
        p = self.box.show("refreshd", "WatchdogUSec", "NRestarts", "MainPID", "ActiveEnterTimestampMonotonic")
        self.assertEqual(p["WatchdogUSec"], "%ds" % WATCHDOG_SEC)
        self.assertEqual(p["NRestarts"], "0", "restarted before the test stopped it; the watchdog is not pinged?")
        old_pid = int(p["MainPID"])
        # a longer job for this environment, so that it still runs when the daemon comes back
        self.sim.config(environments={"env-uat": {"job_seconds": 20}})
        since = time.time()
        sub = self.wait_event("a new uat job", MSG_SUBMITTED, timeout=20, since=since, ENVIRONMENT="uat")
        job_id, slot, track = sub["REFRESHD_JOB_ID"], sub["REFRESHD_SLOT"], sub["REFRESHD_TRACK_ID"]
        wait_for("a poll of job %s" % job_id, lambda: self.events(None, since=since, JOB_ID=job_id,
                                                                  JOB_STATUS="QUEUED"), 10, 0.3)
        self.box.run("kill", "-STOP", str(old_pid))
        stopped = time.time()
        p = wait_for("a restart", lambda: (lambda q: q if q["NRestarts"] == "1" and q["SubState"] == "running"
                                           else None)(self.box.show("refreshd", "NRestarts", "MainPID",
                                                                    "SubState", "ActiveState")), 30, 0.2)
        self.figures["watchdog restart"] = "%.1fs after SIGSTOP" % (time.time() - stopped)
        new_pid = int(p["MainPID"])
        self.assertNotEqual(new_pid, old_pid)
        sd = [e["MESSAGE"] for e in self.box.journal("UNIT=refreshd.service", "_PID=1")]
        self.assertTrue([m for m in sd if "Watchdog timeout" in m], sd[-10:])
        self.assertTrue([m for m in sd if "SIGABRT" in m or "status=6/ABRT" in m], sd[-10:])
        # the restarted daemon follows the same job to its end, and nothing is submitted again
        done = self.wait_event("job %s completed by the restarted daemon" % job_id, MSG_FINISHED, timeout=30,
                               JOB_ID=job_id)
        self.assertEqual(int(done["_PID"]), new_pid)
        self.assertEqual(done["REFRESHD_JOB_STATUS"], "COMPLETED")
        polled = [e for e in self.events(JOB_ID=job_id) if int(e["_PID"]) == new_pid]
        self.assertTrue(polled)
        self.assertEqual(len(self.events(MSG_SUBMITTED, SLOT=slot, ENVIRONMENT="uat")), 1)
        posts = self.sim.posts("env-uat")
        key = [p_["headers"].get("Idempotency-Key") for p_ in posts if p_["headers"].get("Zuora-Track-Id") == track]
        self.assertEqual(len(key), 1, "the POST of track id %s" % track)
        same = [p_ for p_ in posts if p_["headers"].get("Idempotency-Key") == key[0]]
        self.assertEqual(len(same), 1, "a second POST for slot %s" % slot)
        self.assertEqual(len([j for j in self.sim.jobs("env-uat") if j["id"] == job_id]), 1)
        self.step("watchdog", t)

    def test_g_hardening_in_force(self):
        p = self.box.show("refreshd", "NoNewPrivileges", "ProtectSystem", "PrivateUsers", "DynamicUser",
                          "CapabilityBoundingSet", "AmbientCapabilities", "SystemCallFilter",
                          "RestrictAddressFamilies", "ProtectHome", "PrivateTmp", "PrivateDevices",
                          "MemoryDenyWriteExecute", "RestrictNamespaces", "SystemCallArchitectures", "MainPID")
        self.assertEqual(p["NoNewPrivileges"], "yes")
        self.assertEqual(p["ProtectSystem"], "strict")
        self.assertEqual(p["PrivateUsers"], "yes")
        self.assertEqual(p["DynamicUser"], "yes")
        self.assertEqual(p["CapabilityBoundingSet"], "")
        self.assertEqual(p["AmbientCapabilities"], "")
        self.assertEqual(p["ProtectHome"], "yes")
        self.assertEqual(p["PrivateTmp"], "yes")
        self.assertEqual(p["PrivateDevices"], "yes")
        self.assertEqual(p["MemoryDenyWriteExecute"], "yes")
        self.assertEqual(p["RestrictNamespaces"], "yes")
        self.assertEqual(p["SystemCallArchitectures"], "native")
        calls = p["SystemCallFilter"].split()
        self.assertIn("openat", calls)
        self.assertNotIn("reboot", calls)   # @privileged is denied
        self.assertNotIn("setrlimit", calls)  # @resources is denied
        self.assertEqual(sorted(p["RestrictAddressFamilies"].split()), ["AF_INET", "AF_INET6", "AF_UNIX"])
        status = self.box.out("cat", "/proc/%s/status" % p["MainPID"])
        fields = dict(re.findall(r"^(\w+):\s*(.*)$", status, re.M))
        self.assertEqual(fields["NoNewPrivs"], "1")
        self.assertEqual(int(fields["CapEff"], 16), 0)
        self.assertEqual(int(fields["CapBnd"], 16), 0)
        self.assertEqual(fields["Seccomp"], "2")
        self.assertIn(int(fields["Uid"].split()[0]), DYNAMIC_UIDS)
        # Not dumpable while it holds the secret: the kernel then gives its /proc files to root.
        owner = self.box.out("stat", "-c", "%u", "/proc/%s/environ" % p["MainPID"]).strip()
        self.assertEqual(owner, "0", "refreshd is dumpable: /proc/PID/environ belongs to uid %s" % owner)
        # and it works under all of it: a job was followed to COMPLETED by this very process
        done = [e for e in self.events(MSG_FINISHED, JOB_STATUS="COMPLETED") if e["_PID"] == p["MainPID"]]
        self.assertTrue(done, "no job COMPLETED by the current MainPID %s" % p["MainPID"])
        self.figures["proc status"] = "NoNewPrivs %s CapEff %s Seccomp %s" % (
            fields["NoNewPrivs"], fields["CapEff"], fields["Seccomp"])

    def test_h_analyze_security_and_verify(self):
        def exposure(path):
            out = self.box.out("systemd-analyze", "security", "--offline=true", "--no-pager", path, check=False)
            m = re.search(r"Overall exposure level for \S+: ([0-9.]+) (\w+)", out)
            self.assertTrue(m, out[-2000:])
            return float(m.group(1)), m.group(2)

        ours = exposure("/etc/systemd/system/refreshd.service")
        for peer in ("systemd-timesyncd.service", "systemd-networkd.service"):
            if self.box.run("test", "-e", "/lib/systemd/system/" + peer, check=False).returncode == 0:
                self.figures["exposure " + peer] = "%.1f %s" % exposure("/lib/systemd/system/" + peer)
        self.figures["exposure refreshd.service"] = "%.1f %s" % ours
        self.assertLessEqual(ours[0], EXPOSURE_MAX)

        # verify runs `man` for Documentation=: install the built pages as `meson install` would.
        build_dir = os.path.dirname(os.path.dirname(UNIT))
        pages = [(os.path.join(build_dir, "systemd", name), "/usr/share/man/man%s/%s" % (name[-1], name))
                 for name in ("refreshd.8", "refreshd.yaml.5")]
        have_pages = all(os.path.exists(src) for src, _ in pages) and shutil.which("man")
        if have_pages:
            for src, dst in pages:
                self.box.cp(src, dst)
        v = self.box.run("systemd-analyze", "verify", "/etc/systemd/system/refreshd.service", check=False)
        lines = [l for l in (v.stdout + v.stderr).splitlines() if l.strip()]
        man = [l for l in lines if re.search(r"\bman\b|man:", l)]
        other = [l for l in lines if l not in man]
        self.figures["verify"] = "clean" if not lines else "%d line(s) about man pages only: %s" % (
            len(man), man[0]) if not other else "%d line(s)" % len(lines)
        self.assertFalse(other, "systemd-analyze verify:\n" + "\n".join(lines))
        if have_pages:
            self.assertFalse(man, "systemd-analyze verify:\n" + "\n".join(lines))
            self.assertEqual(v.returncode, 0, lines)


def main(argv):
    global BINARY, UNIT, SRCROOT, ARTIFACTS
    if len(argv) != 4:
        print("usage: %s /path/to/refreshd /path/to/refreshd.service SOURCE-ROOT" % argv[0], file=sys.stderr)
        return 2
    BINARY, UNIT, SRCROOT = (os.path.abspath(a) for a in argv[1:])
    for path in (BINARY, UNIT):
        if not os.path.isfile(path):
            print("not a file: %s" % path, file=sys.stderr)
            return 2
    ARTIFACTS = tempfile.mkdtemp(prefix="refreshd-systemd-")

    def on_sigterm(signo, frame):
        # meson's timeout: unittest would record SystemExit as an error and go on, so tear down here
        print("SIGTERM: stopping the box and the simulator; artifacts in %s" % ARTIFACTS, file=sys.stderr)
        Service._teardown()
        os._exit(1)

    signal.signal(signal.SIGTERM, on_sigterm)
    t0 = time.time()
    suite = unittest.defaultTestLoader.loadTestsFromTestCase(Service)
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    elapsed = time.time() - t0
    bad = result.failures + result.errors
    skipped = [reason for _, reason in result.skipped]

    print("=" * 78)
    for k, v in list(Service.timings.items()) + list(Service.figures.items()):
        print("%-28s %s" % (k, "%.2fs" % v if isinstance(v, float) else v))
    n_ok = max(0, result.testsRun - len(bad) - len(result.skipped))  # a skip in setUpClass runs no test
    print("refreshd under systemd: %d passed, %d failed, %d skipped in %.1fs"
          % (n_ok, len(bad), len(result.skipped), elapsed))
    if bad or os.environ.get("REFRESHD_SYSTEMD_KEEP") == "1":
        print("artifacts (box journal, simulator log) kept in %s" % ARTIFACTS)
    else:
        shutil.rmtree(ARTIFACTS, ignore_errors=True)
    if bad:
        return 1
    if skipped and n_ok == 0:
        print("skipped: %s" % skipped[0])
        return 77
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
