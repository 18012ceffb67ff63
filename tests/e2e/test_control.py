#!/usr/bin/env python3
"""End-to-end tests of the control socket and the commands on it: `refreshd pause`, `resume`,
`skip`, `unskip` and `list`, against the real daemon and the bundled Zuora simulator.

    python3 tests/e2e/test_control.py build/daemon/refreshd [NAME-FILTER...]

The Varlink client here is written from the protocol's text (https://varlink.org: JSON objects
ended by a NUL byte; {"method", "parameters", "oneway"} calls; {"parameters"} or {"error",
"parameters"} replies), not from refreshd's code.

* Protocol: GetInfo and GetInterfaceDescription; unknown interface and method errors; two calls
  sent at once answered in order; a oneway call answered with nothing but done; a malformed
  message, one over 64 KiB and one too slow (5 s) each close their own connection only, while
  another connection is answered and the daemon runs on; the socket is mode 0600; a non-root
  user cannot connect; each call logged with the caller's uid.
* Pause: slots skipped with who and why, no POST; kept across a restart and a reload; resume:
  the next slot POSTs; --until ends it by itself; resume --catch-up fires the latest slot held
  (once); an unknown name pauses nothing; no daemon: exit 1, nothing changed.
* Skip: the next slot (printed) is skipped when it comes and the one after fires; twice skips
  two; --slot must be a slot still to come; unskip fires it after all; kept across a restart.
* List: sorted by the next fire, NEXT after a skip or a pause, STATE; --json fields; with no
  daemon, from the config and state.json, saying so on stderr.

Tests run in parallel threads (REFRESHD_E2E_JOBS, default 8). Artifacts are kept when a test
fails, or always with REFRESHD_E2E_KEEP=1. The last line is "N passed, N failed, N errors,
N skipped"; exit status 0 only when all passed.
"""

import calendar
import concurrent.futures
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from harness import (DEFAULT_SECRET, SECRET_ENV, Daemon, Sim, TimedResult,  # noqa: E402
                     flatten, make_config, rfc3339, wait_until)

BINARY = None
ARTIFACTS = None

FAR = "0 3 * * SUN#1"   # never fires during a test
EVERY3 = "*/3 * * * * *"  # every 3 seconds


class Varlink:
    """A Varlink client on a unix socket, from the protocol's text."""

    def __init__(self, path, timeout=10):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""

    def send_raw(self, data):
        self.sock.sendall(data)

    def send(self, method, parameters=None, oneway=False):
        msg = {"method": method, "parameters": parameters or {}}
        if oneway:
            msg["oneway"] = True
        self.send_raw(json.dumps(msg).encode() + b"\0")

    def receive(self):
        """The next reply, or None when the daemon closed the connection."""
        while b"\0" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method, parameters=None):
        self.send(method, parameters)
        reply = self.receive()
        assert reply is not None, "connection closed instead of a reply to %s" % method
        return reply

    def closed(self, timeout):
        """Whether the daemon closes the connection within TIMEOUT seconds (nothing else comes)."""
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True

    def close(self):
        self.sock.close()


class E2E(unittest.TestCase):
    def setUp(self):
        self.work = tempfile.mkdtemp(prefix=self.id().split(".")[-1][:40] + "-", dir=ARTIFACTS)
        self.sim = Sim(self.work, job_seconds=1)
        self.sim.config(cooldown_seconds=0)
        self.addCleanup(self.sim.stop)
        self.daemons = []

    def tearDown(self):
        for d in self.daemons:
            d.stop()

    def config(self, envs):
        return make_config(self.sim.base_url, [dict(name=n, id="env-" + n, schedule=s) for n, s in envs])

    def daemon(self, envs, start=True):
        d = Daemon(BINARY, self.work, self.config(envs))
        self.daemons.append(d)
        if start:
            d.start()
        return d

    def restart(self, d):
        d.sigterm()
        d.wait_exit(10)
        d.start()

    def refreshd(self, d, *args, env_extra=None, user=None):
        """Runs a command against daemon D's socket, config and state; (code, stdout, stderr)."""
        env = {k: v for k, v in os.environ.items() if k not in ("RUNTIME_DIRECTORY", "STATE_DIRECTORY")}
        env[SECRET_ENV] = DEFAULT_SECRET
        env.update(env_extra or {})
        argv = [BINARY, *args, "--control-socket", d.control_path]
        if args and args[0] == "list":
            argv += ["-c", d.config_path, "--state-dir", d.state_dir]
        if user is not None:
            argv = ["setpriv", "--reuid=%d" % user, "--regid=%d" % user, "--clear-groups"] + argv
        p = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=30)
        return p.returncode, p.stdout, p.stderr

    def ok(self, d, *args):
        code, out, err = self.refreshd(d, *args)
        self.assertEqual(code, 0, "refreshd %s: %s%s" % (" ".join(args), out, err))
        return out

    def varlink(self, d):
        v = Varlink(d.control_path)
        self.addCleanup(v.close)
        return v

    def posts(self, env):
        return self.sim.posts("env-" + env)

    def wait_skipped(self, d, env, why, since=0, timeout=10):
        return d.wait_log(r"notice Environment '%s': slot \S+ skipped: %s" % (env, why), timeout=timeout,
                          since=since, ENVIRONMENT=env)

    def list_json(self, d):
        return json.loads(self.ok(d, "list", "--json"))


# ==============================================================================================

class Protocol(E2E):
    def test_get_info_and_descriptions(self):
        d = self.daemon([("uat", FAR)])
        v = self.varlink(d)
        info = v.call("org.varlink.service.GetInfo")
        self.assertNotIn("error", info)
        p = info["parameters"]
        self.assertEqual(p["product"], "refreshd")
        self.assertRegex(p["version"], r"^\d+\.\d+")
        for key in ("vendor", "url"):
            self.assertIsInstance(p[key], str)
        self.assertEqual(sorted(p["interfaces"]), ["io.refreshd.Manager", "org.varlink.service"])
        desc = v.call("org.varlink.service.GetInterfaceDescription", {"interface": "io.refreshd.Manager"})
        text = desc["parameters"]["description"]
        self.assertRegex(text, r"(?m)^interface io\.refreshd\.Manager$")
        for m in ("Pause", "Resume", "Skip", "Unskip", "List"):
            self.assertRegex(text, r"(?m)^method %s\(" % m)
        svc = v.call("org.varlink.service.GetInterfaceDescription", {"interface": "org.varlink.service"})
        self.assertIn("interface org.varlink.service", svc["parameters"]["description"])
        none = v.call("org.varlink.service.GetInterfaceDescription", {"interface": "com.example.Nope"})
        self.assertEqual(none["error"], "org.varlink.service.InterfaceNotFound")
        self.assertEqual(v.call("com.example.Nope.Do")["error"], "org.varlink.service.InterfaceNotFound")
        self.assertEqual(v.call("io.refreshd.Manager.Nope")["error"], "org.varlink.service.MethodNotFound")
        bad = v.call("io.refreshd.Manager.Skip", {})
        self.assertEqual(bad["error"], "org.varlink.service.InvalidParameter")
        self.assertEqual(bad["parameters"]["parameter"], "environment")
        d.wait_log(r"info control: uid 0 \(root\) called io\.refreshd\.Manager\.Skip")

    def test_pipelined_and_oneway(self):
        d = self.daemon([("uat", FAR), ("dev", FAR)])
        v = self.varlink(d)
        # Two calls in one write: two replies, in order.
        v.send_raw(json.dumps({"method": "io.refreshd.Manager.List"}).encode() + b"\0" +
                   json.dumps({"method": "org.varlink.service.GetInfo"}).encode() + b"\0")
        first, second = v.receive(), v.receive()
        self.assertIn("environments", first["parameters"])
        self.assertIn("interfaces", second["parameters"])
        # oneway: done, nothing answered (the next reply is the next call's).
        v.send("io.refreshd.Manager.Pause", {"environments": ["dev"], "reason": "oneway"}, oneway=True)
        listed = v.call("io.refreshd.Manager.List")
        self.assertIn("environments", listed["parameters"], listed)
        dev = [e for e in listed["parameters"]["environments"] if e["name"] == "dev"][0]
        self.assertTrue(dev["paused"])
        self.assertEqual(dev["pause_reason"], "oneway")

    def test_bad_messages_close_only_their_connection(self):
        d = self.daemon([("uat", FAR)])
        good = self.varlink(d)
        malformed = self.varlink(d)
        malformed.send_raw(b"{not json\0")
        self.assertTrue(malformed.closed(3), "a malformed message did not close its connection")
        notcall = self.varlink(d)
        notcall.send_raw(b"[1,2]\0")
        self.assertTrue(notcall.closed(3), "a message that is no call did not close its connection")
        big = self.varlink(d)
        try:
            big.send_raw(b'{"method":"' + b"a" * (70 * 1024))
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.assertTrue(big.closed(3), "a message over 64 KiB did not close its connection")
        slow = self.varlink(d)
        slow.send_raw(b'{"method":"org.varlink.service.GetInfo"')
        t0 = time.time()
        self.assertIn("interfaces", good.call("org.varlink.service.GetInfo")["parameters"])
        self.assertTrue(slow.closed(9), "a message not complete in 5 s did not close its connection")
        self.assertGreaterEqual(time.time() - t0, 4.0, "closed before its 5 s")
        self.assertIn("interfaces", good.call("org.varlink.service.GetInfo")["parameters"])
        self.assertTrue(d.running())

    def test_socket_mode_and_other_users(self):
        d = self.daemon([("uat", FAR)])
        mode = stat.S_IMODE(os.stat(d.control_path).st_mode)
        self.assertEqual(mode, 0o600, oct(mode))
        os.chmod(d.notify_dir, 0o755)  # the directory aside: the socket's own mode is what stops them
        code, out, err = self.refreshd(d, "pause", "uat", user=65534)
        self.assertEqual(code, 1, out + err)
        self.assertIn("permission denied", err)
        self.assertIn("nothing changed", err)
        self.assertFalse(self.list_json(d)[0]["paused"])


class Pause(E2E):
    def test_paused_across_restart_and_reload_then_resumed(self):
        d = self.daemon([("uat", EVERY3), ("dev", FAR)])
        out = self.ok(d, "pause", "uat", "--reason", "release freeze")
        self.assertEqual(out, "uat: paused until resumed\n")
        line = d.wait_log(r"notice Environment 'uat': paused by uid 0 \(root\)", ENVIRONMENT="uat")
        self.assertEqual(line.get("REASON"), "release freeze")
        self.assertEqual(line.get("CALLER"), "uid 0 (root)")
        n_posts = len(self.posts("uat"))
        self.wait_skipped(d, "uat", r"paused by uid 0 \(root\): release freeze")
        st = d.state()["environments"]["uat"]["pause"]
        self.assertEqual(st["reason"], "release freeze")
        self.assertIsNone(st["until"])

        self.restart(d)
        self.wait_skipped(d, "uat", r"paused by uid 0 \(root\)")
        d.write_config(self.config([("uat", EVERY3), ("dev", FAR)]))
        n = len(d.log())
        d.sighup()
        d.wait_log(r"info Reloaded ", since=n)
        self.wait_skipped(d, "uat", r"paused by", since=n)
        self.assertEqual(len(self.posts("uat")), n_posts, "a paused environment POSTed")
        rows = self.list_json(d)
        self.assertTrue([r for r in rows if r["name"] == "uat"][0]["paused"])

        n = len(d.log())
        self.assertEqual(self.ok(d, "resume", "uat", "dev"), "uat: resumed\ndev: was not paused\n")
        d.wait_log(r"notice Environment 'uat': resumed by uid 0 \(root\)", since=n, ENVIRONMENT="uat")
        d.wait_log(r"Environment 'uat': refresh for slot \S+ submitted", since=n, timeout=10)
        self.assertGreater(len(self.posts("uat")), n_posts)
        self.assertNotIn("pause", d.state()["environments"]["uat"])

    def test_until_ends_by_itself(self):
        d = self.daemon([("uat", EVERY3)])
        until = int(time.time()) + 4
        self.ok(d, "pause", "uat", "--until", rfc3339(until))
        d.wait_log(r"notice Environment 'uat': resumed as its pause ended", timeout=10, ENVIRONMENT="uat")
        self.assertGreaterEqual(time.time(), until - 0.5)
        d.wait_log(r"Environment 'uat': refresh for slot \S+ submitted", timeout=10)
        self.assertNotIn("pause", d.state()["environments"]["uat"])

    def test_resume_catch_up_fires_the_latest_slot_held(self):
        d = self.daemon([("uat", EVERY3)])
        self.ok(d, "pause", "uat")
        n = len(d.log())
        self.wait_skipped(d, "uat", "paused by", since=n)
        held = self.wait_skipped(d, "uat", "paused by", since=self.wait_skipped(d, "uat", "paused", since=n).index + 1)
        n_posts = len(self.posts("uat"))
        m = len(d.log())
        self.ok(d, "resume", "uat", "--catch-up")
        line = d.wait_log(r"catching up the slot \S+ held while paused, as told", since=m)
        self.assertEqual(line.get("SLOT"), held.get("SLOT"))
        sub = d.wait_log(r"refresh for slot \S+ submitted", since=m)
        self.assertEqual(sub.get("SLOT"), held.get("SLOT"))
        wait_until(lambda: len(self.posts("uat")) > n_posts, 5)
        self.assertEqual(len(self.posts("uat")), n_posts + 1)
        # Once: the held slot is not fired again.
        time.sleep(1)
        self.assertEqual(len(d.events(r"catching up the slot", since=m)), 1)
        self.assertEqual(len([l for l in d.events(r"refresh for slot \S+ submitted", since=m)
                              if l.get("SLOT") == held.get("SLOT")]), 1)

    def test_unknown_name_pauses_nothing_and_no_daemon_changes_nothing(self):
        d = self.daemon([("uat", FAR), ("dev", FAR)])
        code, out, err = self.refreshd(d, "pause", "uat", "nope")
        self.assertEqual(code, 1)
        self.assertIn("no environment 'nope'", err)
        self.assertFalse(any(r["paused"] for r in self.list_json(d)))
        d.sigterm()
        d.wait_exit(10)
        before = open(os.path.join(d.state_dir, "state.json")).read()
        for args in (("pause", "uat"), ("resume", "uat"), ("skip", "uat"), ("unskip", "uat")):
            code, out, err = self.refreshd(d, *args)
            self.assertEqual(code, 1, args)
            self.assertIn("no refreshd daemon answers on", err)
            self.assertIn("nothing changed", err)
        self.assertEqual(open(os.path.join(d.state_dir, "state.json")).read(), before)


class Skip(E2E):
    def test_skip_next_then_the_one_after_fires(self):
        d = self.daemon([("uat", EVERY3)])
        out = self.ok(d, "skip", "uat", "--reason", "demo day")
        slot = out.split()[2]
        self.assertRegex(out, r"^uat: slot \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ skipped\n$")
        line = d.wait_log(r"Environment 'uat': slot \S+ skipped: skipped by uid 0 \(root\): demo day",
                          timeout=10, ENVIRONMENT="uat")
        self.assertEqual(line.get("SLOT"), slot)
        sub = d.wait_log(r"refresh for slot \S+ submitted", since=line.index, timeout=10)
        self.assertGreater(sub.get("SLOT"), slot)
        self.assertNotIn(slot, [p.get("SLOT") for p in d.events(r"submitted")])

    def test_twice_skips_two_slot_checked_unskip(self):
        d = self.daemon([("uat", FAR)])
        first = self.ok(d, "skip", "uat").split()[2]
        second = self.ok(d, "skip", "uat").split()[2]
        self.assertGreater(second, first)
        self.assertEqual(self.list_json(d)[0]["skips"], [first, second])
        code, out, err = self.refreshd(d, "skip", "uat", "--slot", "2030-01-01T00:00:01Z")
        self.assertEqual(code, 1)
        self.assertIn("is no slot of environment 'uat' still to come", err)
        again = self.ok(d, "skip", "uat", "--slot", first)
        self.assertIn("was already skipped", again)
        self.assertEqual(self.ok(d, "unskip", "uat"), "uat: slot %s fires again\n" % first)
        self.assertEqual(self.ok(d, "unskip", "uat", "--slot", second), "uat: slot %s fires again\n" % second)
        code, out, err = self.refreshd(d, "unskip", "uat")
        self.assertEqual(code, 1)
        self.assertIn("has no such slot to skip", err)
        self.assertEqual(self.list_json(d)[0]["skips"], [])

    def test_skip_kept_across_restart(self):
        d = self.daemon([("uat", EVERY3)])
        # A slot a few ahead, so that the restart comes before it.
        nxt = self.ok(d, "skip", "uat").split()[2]
        self.ok(d, "unskip", "uat")
        slot = rfc3339(calendar.timegm(time.strptime(nxt, "%Y-%m-%dT%H:%M:%SZ")) + 6)
        self.ok(d, "skip", "uat", "--slot", slot)
        self.restart(d)
        self.assertIn(slot, [s["slot"] for s in d.state().get("skips", [])])
        line = d.wait_log(r"Environment 'uat': slot \S+ skipped: skipped by uid 0", timeout=15, ENVIRONMENT="uat")
        self.assertEqual(line.get("SLOT"), slot)
        wait_until(lambda: not (d.state() or {}).get("skips"), 5)
        self.assertFalse(d.state().get("skips"))


class List(E2E):
    def test_sorted_with_state_and_json(self):
        d = self.daemon([("weekly", "0 4 * * MON"), ("hourly", "0 * * * *"), ("daily", "30 2 * * *"),
                         ("off", FAR)])
        self.ok(d, "pause", "daily", "--reason", "freeze")
        skipped = self.ok(d, "skip", "hourly").split()[2]
        rows = self.list_json(d)
        names = [r["name"] for r in rows]
        nexts = [r["next"] for r in rows if r["next"]]
        self.assertEqual(nexts, sorted(nexts))
        self.assertEqual(names[-1], "daily", "a paused environment has no next fire: last")
        hourly = [r for r in rows if r["name"] == "hourly"][0]
        self.assertEqual(hourly["skips"], [skipped])
        self.assertGreater(hourly["next"], skipped, "NEXT is the slot after the skipped one")
        for key in ("name", "id", "schedule", "timezone", "enabled", "state", "next", "last_slot", "job_id",
                    "job_status", "progress", "paused", "paused_until", "pause_reason", "paused_by", "skips"):
            self.assertIn(key, hourly)
        self.assertEqual(hourly["state"], "idle")
        code, out, err = self.refreshd(d, "list")
        self.assertEqual(code, 0, err)
        lines = out.splitlines()
        self.assertEqual(lines[0].split(), ["NEXT", "LEFT", "LAST", "PASSED", "ENVIRONMENT", "SCHEDULE", "STATE"])
        daily = [l for l in lines if " daily " in l][0]
        self.assertIn("paused", daily)
        self.assertIn("skip " + skipped, [l for l in lines if " hourly " in l][0])
        self.assertIn("4 environments listed.", out)
        # No daemon: the same rows from the config and state.json, said on stderr.
        d.sigterm()
        d.wait_exit(10)
        code, out2, err2 = self.refreshd(d, "list", "--json")
        self.assertEqual(code, 0, err2)
        self.assertIn("no daemon answers on", err2)
        offline = json.loads(out2)
        self.assertEqual([r["name"] for r in offline], names)
        self.assertTrue([r for r in offline if r["name"] == "daily"][0]["paused"])
        self.assertEqual([r for r in offline if r["name"] == "hourly"][0]["next"], hourly["next"])
        self.assertIsNone(offline[0]["state"])


# ==============================================================================================

def main(argv):
    global BINARY, ARTIFACTS
    if len(argv) < 2:
        print("usage: %s /path/to/refreshd [NAME-FILTER...]" % argv[0], file=sys.stderr)
        return 2
    filters = argv[2:]
    ARTIFACTS = tempfile.mkdtemp(prefix="refreshd-control-")
    os.chmod(ARTIFACTS, 0o755)
    BINARY = os.path.join(ARTIFACTS, "refreshd")
    shutil.copy2(os.path.abspath(argv[1]), BINARY)
    tests = list(flatten(unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__])))
    if filters:
        tests = [t for t in tests if any(f in t.id() for f in filters)]
    print("refreshd control e2e (%s): %d tests" % (os.path.abspath(argv[1]), len(tests)), flush=True)
    t0 = time.time()

    def run(test):
        r = TimedResult()
        test.run(r)
        for name, outcome, _, dt in r.outcomes:
            print("%-6s %5.1fs %s" % (outcome, dt, name.replace("__main__.", "")), flush=True)
        return r

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, int(os.environ.get("REFRESHD_E2E_JOBS", "8")))) as pool:
        results = list(pool.map(run, tests))
    outcomes = sorted(o for r in results for o in r.outcomes)
    bad = [o for o in outcomes if o[1] in ("FAIL", "ERROR")]
    for name, outcome, detail, _ in bad:
        print("\n" + "=" * 78 + "\n%s: %s\n" % (outcome, name.replace("__main__.", "")) + "-" * 78)
        print(detail.rstrip()[-6000:])
    n = {k: sum(1 for o in outcomes if o[1] == k) for k in ("ok", "FAIL", "ERROR", "skip")}
    print("\n" + "=" * 78)
    print("in %.1fs" % (time.time() - t0))
    if bad or os.environ.get("REFRESHD_E2E_KEEP") == "1":
        print("artifacts (logs, configs, state) kept in %s" % ARTIFACTS)
    else:
        shutil.rmtree(ARTIFACTS, ignore_errors=True)
    print("%d passed, %d failed, %d errors, %d skipped" % (n["ok"], n["FAIL"], n["ERROR"], n["skip"]), flush=True)
    return 0 if not bad and n["ok"] == len(tests) and tests else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
