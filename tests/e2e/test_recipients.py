#!/usr/bin/env python3
"""End-to-end tests of notify_emails: Zuora's e-mail list of each environment kept in step with the
config by `refreshd run` (at start, on SIGHUP, when a slot fires), and shown by `check --online`.

    python3 tests/e2e/test_recipients.py build/daemon/refreshd [NAME-FILTER...]

Every test starts its own simulator (tests/sim/zuora_sim.py) and daemon (tests/e2e/harness.py).
A recipient "added by hand" (in Zuora's UI) is added through the simulator's /_sim/notifications,
which records no request; one "deleted by hand" is deleted through Zuora's API with a token of the
test's own, its requests marked with an X-E2E-By-Hand header so that they are never counted as the
daemon's.

* AddedAtStart: both forms (address + name, bare address) POSTed at start as {"address", "name"},
  logged at notice with the environment's fields, recorded in state.json's "recipients" with
  Zuora's ids; an environment without notify_emails (and one with `notify_emails: []`) makes no
  notification request at all; defaults: notify_emails is inherited, and replaced by an
  environment's own.
* HandAdded: recipients added by hand before the start, one listed in the config (in another case),
  one not: neither POSTed again, deleted or recorded.
* RemovedOnReload: an address dropped from the config + SIGHUP: DELETEd once, forgotten in
  state.json, hand-added ones still there; the key dropped altogether: the last one removed too;
  then (nothing in the config, nothing recorded) no notification request on the next reload.
* Restart: SIGTERM, start again: the list is read, nothing POSTed twice, nothing deleted.
* DeletedByHand: a recipient refreshd added, deleted by hand at Zuora, then dropped from the config:
  forgotten in state.json, never DELETEd by the daemon, no "removed" line.
* Faults: 500 on the notifications POST: a warning (HTTP_STATUS=500), nothing recorded, the next
  SIGHUP adds them; 500 on the DELETE: a warning, the record kept, the next SIGHUP deletes it.
* SlotSync: schedule "*/5 * * * * *": a recipient refreshd added, deleted by hand, is added again
  when the next slot fires, without SIGHUP.
* CheckOnline: `check --online` with STATE_DIRECTORY at the daemon's state: would add, would remove
  (added by refreshd), left alone (hand-added), in step (N at Zuora); without a readable state the
  one refreshd added is left alone; no POST/PATCH/DELETE on notifications, Zuora's list and
  state.json unchanged.
* Secret: the client secret appears in no output of any test (checked after each one: the daemon's
  stderr, stdout and sd_notify, its state directory, every command's output); one test also makes
  the token endpoint fail for the daemon's sync and for check --online.

Tests run in parallel threads (REFRESHD_E2E_JOBS, default 8). Artifacts (daemon logs, configs,
state, simulator request logs) are kept when a test fails, or always with REFRESHD_E2E_KEEP=1.
The last line is "N passed, N failed, N errors, N skipped"; exit status 0 only when all passed.
"""

import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from harness import (CLIENT_ID, DEFAULT_SECRET, SECRET_ENV, Daemon, Sim, TimedResult,  # noqa: E402
                     flatten, make_config, wait_until)

BINARY = None
ARTIFACTS = None

FAR = "0 3 * * SUN#1"  # a schedule that never fires during a test
BY_HAND = "X-E2E-By-Hand"
ID_RE = r"^[0-9a-f]{32}$"
NOTIF_RE = r"^/test-environments/%s/notifications(/[^/]+)?$"


def yaml_str(s):
    return json.dumps(s)  # a JSON string is a valid YAML double-quoted scalar


def email_lines(emails, indent):
    """notify_emails: as YAML lines; EMAILS is a list of "addr" or ("addr", "name"); [] is "[]"."""
    pad = " " * indent
    if not emails:
        return ["%snotify_emails: []" % pad]
    out = ["%snotify_emails:" % pad]
    for e in emails:
        if isinstance(e, tuple):
            out.append("%s  - address: %s" % (pad, yaml_str(e[0])))
            out.append("%s    name: %s" % (pad, yaml_str(e[1])))
        else:
            out.append("%s  - %s" % (pad, yaml_str(e)))
    return out


def recipients_config(base_url, envs, default_emails=None):
    """The config YAML. ENVS: dicts with name, id, schedule and optionally emails (a list as
    email_lines takes; None: no notify_emails key)."""
    text = make_config(base_url, [], defaults={"poll_interval": "1s"})
    assert text.endswith("environments:\n")
    lines = text[:-len("environments:\n")].splitlines()
    if default_emails is not None:
        lines += email_lines(default_emails, 2)
    lines.append("environments:")
    for env in envs:
        lines.append("  - name: %s" % env["name"])
        lines.append("    id: %s" % env["id"])
        lines.append("    schedule: %s" % yaml_str(env.get("schedule", FAR)))
        if env.get("emails") is not None:
            lines += email_lines(env["emails"], 4)
    return "\n".join(lines) + "\n"


class E2E(unittest.TestCase):
    """A simulator per test; daemons and command runs whose output is checked for the secret."""

    secret = DEFAULT_SECRET

    def setUp(self):
        self.work = tempfile.mkdtemp(prefix=self.id().split(".")[-1][:40] + "-", dir=ARTIFACTS)
        self.sim = Sim(self.work, job_seconds=1, client_secret=self.secret)
        self.addCleanup(self.sim.stop)
        self.daemons = []
        self.outputs = []  # (what, text) of every command run

    def tearDown(self):
        for d in self.daemons:
            d.stop()
        for d in self.daemons:
            texts = [("%s stderr" % d.name, "\n".join(d.all_lines)),
                     ("%s stdout" % d.name, "\n".join(d.all_stdout)),
                     ("%s sd_notify" % d.name, "\n".join(d.all_notify)),
                     ("%s state directory" % d.name, d.state_text())]
            for what, text in texts:
                self.assert_no_secret(text, "the %s" % what)
        for what, text in self.outputs:
            self.assert_no_secret(text, "the output of `refreshd %s`" % what)

    def assert_no_secret(self, text, where):
        lines = [l.replace(self.secret, "<THE SECRET>") for l in text.splitlines() if self.secret in l]
        self.assertEqual(lines, [], "the client secret in %s" % where)

    # -- the daemon

    def daemon(self, envs, default_emails=None, name="daemon", start=True):
        d = Daemon(BINARY, self.work, recipients_config(self.sim.base_url, envs, default_emails),
                   name=name, secret=self.secret)
        self.daemons.append(d)
        if start:
            d.start()
        return d

    def reconfigure(self, d, envs, default_emails=None):
        """Writes the new config, sends SIGHUP and waits for the reload's line; returns the index
        of the first line after it."""
        d.write_config(recipients_config(self.sim.base_url, envs, default_emails))
        n = len(d.log())
        d.sighup()
        line = d.wait_log(r"info Reloaded ", timeout=10, since=n)
        return line.index + 1

    def wait_change(self, d, env, address, added, since=0, timeout=10):
        verb = "added to" if added else "removed from"
        return d.wait_log(r" notice Environment '%s': %s %s Zuora's e-mail notifications"
                          % (re.escape(env), re.escape(address), verb),
                          timeout=timeout, since=since, ENVIRONMENT=env)

    def changes(self, d, since=0):
        """(environment, address, "added"|"removed") of the change lines of this run."""
        rx = re.compile(r"Environment '([^']+)': (\S+) (added to|removed from) Zuora's e-mail notifications")
        out = []
        for line in d.log()[since:]:
            m = rx.search(line.message)
            if m:
                out.append((m.group(1), m.group(2), "added" if m.group(3) == "added to" else "removed"))
        return out

    def recorded(self, d, env=None):
        """state.json's recipients (of ENV): sorted (environment, id, address)."""
        st = d.state() or {}
        recs = st.get("recipients", [])
        self.assertIsInstance(recs, list, st)
        return sorted((r["environment"], r["id"], r["address"]) for r in recs
                      if env is None or r["environment"] == env)

    def wait_recorded(self, d, addresses, env=None, timeout=5):
        """Waits until state.json records exactly ADDRESSES (of ENV); returns the records, sorted."""
        want = sorted(addresses)
        wait_until(lambda: sorted(a for _, _, a in self.recorded(d, env)) == want, timeout)
        rec = self.recorded(d, env)
        self.assertEqual(sorted(a for _, _, a in rec), want,
                         "state.json's recipients: %s" % (d.state() or {}).get("recipients"))
        return rec

    def ids(self, records):
        return {a: i for _, i, a in records}

    def run_refreshd(self, *args, env_extra=None, timeout=60):
        env = {k: v for k, v in os.environ.items() if k not in ("STATE_DIRECTORY",)}
        env[SECRET_ENV] = self.secret
        env.update(env_extra or {})
        p = subprocess.run([BINARY, *args], capture_output=True, text=True, env=env, timeout=timeout)
        self.outputs.append((" ".join(args), p.stdout + p.stderr))
        return p.returncode, p.stdout, p.stderr

    # -- Zuora's side

    def at_zuora(self, env_id):
        """Zuora's recipients of ENV_ID (the /_sim/ view), oldest first."""
        return self.sim._call("GET", "/_sim/notifications?env_id=" + urllib.parse.quote(env_id))

    def addresses(self, env_id):
        return [r["address"] for r in self.at_zuora(env_id)]

    def add_by_hand(self, env_id, address, name=None):
        """As in Zuora's UI: not recorded as a request."""
        rec = self.sim._call("POST", "/_sim/notifications", {"env_id": env_id, "address": address, "name": name})
        self.assertTrue(rec["by_hand"], rec)
        return rec

    def _api(self, method, path, body=None, headers=None):
        req = urllib.request.Request(self.sim.base_url + path, data=body, method=method)
        req.add_header(BY_HAND, "1")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode()

    def delete_by_hand(self, env_id, notification_id):
        """DELETE through Zuora's API with a token of our own (the requests marked BY_HAND)."""
        form = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": CLIENT_ID,
                                       "client_secret": self.secret}).encode()
        _, text = self._api("POST", "/oauth/token", form,
                            {"Content-Type": "application/x-www-form-urlencoded"})
        token = json.loads(text)["access_token"]
        status, _ = self._api("DELETE", "/test-environments/%s/notifications/%s" % (env_id, notification_id),
                              headers={"Authorization": "Bearer " + token})
        self.assertEqual(status, 200)

    def notif_requests(self, env_id="[^/]+", method=None):
        """The daemon's (and commands') requests on ENV_ID's notifications (ours by hand left out)."""
        reqs = self.sim.requests(path=NOTIF_RE % env_id, method=method)
        return [r for r in reqs if not any(k.lower() == BY_HAND.lower() for k in r["headers"])]

    def bodies(self, reqs):
        return [json.loads(r["body"]) for r in reqs]


# ==============================================================================================

class AddedAtStart(E2E):
    def test_added_at_start_and_recorded(self):
        d = self.daemon([dict(name="uat", id="env-uat", emails=[("qa@example.com", "QA team"), "ops@example.com"]),
                         dict(name="dev", id="env-dev"),
                         dict(name="none", id="env-none", emails=[])])
        a = self.wait_change(d, "uat", "qa@example.com", True)
        self.assertEqual(a.level, "notice")
        self.assertEqual(a.get("ENVIRONMENT_ID"), "env-uat", a.raw)
        self.wait_change(d, "uat", "ops@example.com", True)
        posts = self.notif_requests("env-uat", "POST")
        self.assertEqual(sorted(self.bodies(posts), key=lambda b: b["address"]),
                         [{"address": "ops@example.com", "name": None},
                          {"address": "qa@example.com", "name": "QA team"}])
        self.assertTrue(all(p["path"] == "/test-environments/env-uat/notifications" for p in posts), posts)
        at = self.at_zuora("env-uat")
        self.assertEqual(sorted((r["address"], r["name"]) for r in at),
                         [("ops@example.com", None), ("qa@example.com", "QA team")])
        # recorded with Zuora's ids (the state is written soon after, not necessarily at once)
        want = sorted(("uat", r["id"], r["address"]) for r in at)
        self.wait_recorded(d, ["ops@example.com", "qa@example.com"])
        self.assertEqual(self.recorded(d), want, d.state())
        for _, rid, _ in want:
            self.assertRegex(rid, ID_RE)
        # the environments without recipients: not a single notification request
        time.sleep(1)
        self.assertEqual(self.notif_requests("env-dev"), [])
        self.assertEqual(self.notif_requests("env-none"), [])
        self.assertEqual(len(self.notif_requests("env-uat")), 3, self.notif_requests("env-uat"))  # GET + 2 POSTs
        self.assertEqual(sorted(self.changes(d)), [("uat", "ops@example.com", "added"),
                                                   ("uat", "qa@example.com", "added")])

    def test_defaults_inherited_and_replaced(self):
        d = self.daemon([dict(name="inherits", id="env-inh"),
                         dict(name="own", id="env-own", emails=["own@example.com"]),
                         dict(name="optout", id="env-out", emails=[])],
                        default_emails=[("all@example.com", "Everyone")])
        self.wait_change(d, "inherits", "all@example.com", True)
        self.wait_change(d, "own", "own@example.com", True)
        time.sleep(1)
        self.assertEqual([(r["address"], r["name"]) for r in self.at_zuora("env-inh")],
                         [("all@example.com", "Everyone")])
        self.assertEqual(self.addresses("env-own"), ["own@example.com"])
        self.assertEqual(self.at_zuora("env-out"), [])
        self.assertEqual(self.notif_requests("env-out"), [])
        self.assertEqual(sorted(self.changes(d)), [("inherits", "all@example.com", "added"),
                                                   ("own", "own@example.com", "added")])


class HandAdded(E2E):
    def test_hand_added_left_alone_listed_or_not(self):
        listed = self.add_by_hand("env-uat", "Hand-Listed@Example.com", "listed by hand")
        other = self.add_by_hand("env-uat", "other@example.com", "not in the config")
        d = self.daemon([dict(name="uat", id="env-uat",
                              emails=["hand-listed@example.com", ("qa@example.com", "QA")])])
        self.wait_change(d, "uat", "qa@example.com", True)
        time.sleep(1)
        # the listed one is there already (compared case-insensitively): not POSTed again
        self.assertEqual(self.bodies(self.notif_requests("env-uat", "POST")),
                         [{"address": "qa@example.com", "name": "QA"}])
        self.assertEqual(self.notif_requests("env-uat", "DELETE"), [])
        self.assertEqual(self.notif_requests("env-uat", "PATCH"), [])
        at = {r["id"]: r for r in self.at_zuora("env-uat")}
        for rec in (listed, other):
            self.assertIn(rec["id"], at, "a hand-added recipient is gone: %s" % rec)
            self.assertEqual((at[rec["id"]]["address"], at[rec["id"]]["name"]), (rec["address"], rec["name"]))
        self.assertEqual(len(at), 3, at)
        self.wait_recorded(d, ["qa@example.com"])
        self.assertEqual(self.changes(d), [("uat", "qa@example.com", "added")])


class RemovedOnReload(E2E):
    def test_removed_from_config_deleted_and_forgotten(self):
        hand = self.add_by_hand("env-uat", "hand@example.com", "by hand")
        listed_hand = self.add_by_hand("env-uat", "listed-hand@example.com")
        envs = [dict(name="uat", id="env-uat",
                     emails=["qa@example.com", "ops@example.com", "listed-hand@example.com"]),
                dict(name="dev", id="env-dev")]
        d = self.daemon(envs)
        self.wait_change(d, "uat", "qa@example.com", True)
        self.wait_change(d, "uat", "ops@example.com", True)
        ids = self.ids(self.wait_recorded(d, ["qa@example.com", "ops@example.com"]))

        # qa and the listed hand-added one dropped: qa deleted, the hand-added one left alone
        since = self.reconfigure(d, [dict(envs[0], emails=["ops@example.com"]), envs[1]])
        self.wait_change(d, "uat", "qa@example.com", False, since=since)
        time.sleep(1)
        deletes = self.notif_requests("env-uat", "DELETE")
        self.assertEqual([r["path"] for r in deletes],
                         ["/test-environments/env-uat/notifications/%s" % ids["qa@example.com"]])
        self.assertEqual(sorted(self.addresses("env-uat")),
                         ["hand@example.com", "listed-hand@example.com", "ops@example.com"])
        self.assertEqual(self.wait_recorded(d, ["ops@example.com"]), [("uat", ids["ops@example.com"], "ops@example.com")])
        self.assertEqual(len(self.notif_requests("env-uat", "POST")), 2)  # nothing added again

        # the key dropped altogether: what refreshd added is removed all the same
        since = self.reconfigure(d, [dict(envs[0], emails=None), envs[1]])
        self.wait_change(d, "uat", "ops@example.com", False, since=since)
        time.sleep(1)
        self.assertEqual(len(self.notif_requests("env-uat", "DELETE")), 2)
        self.assertEqual(sorted(r["id"] for r in self.at_zuora("env-uat")), sorted([hand["id"], listed_hand["id"]]))
        self.wait_recorded(d, [])

        # nothing in the config, nothing recorded: no notification request any more
        n = len(self.notif_requests())
        self.reconfigure(d, [dict(envs[0], emails=None), envs[1]])
        time.sleep(1.5)
        self.assertEqual(self.notif_requests()[n:], [])
        self.assertEqual(self.notif_requests("env-dev"), [])
        self.assertEqual(sorted(self.changes(d)), [("uat", "ops@example.com", "added"),
                                                   ("uat", "ops@example.com", "removed"),
                                                   ("uat", "qa@example.com", "added"),
                                                   ("uat", "qa@example.com", "removed")])


class Restart(E2E):
    def test_restart_does_not_add_twice(self):
        self.add_by_hand("env-uat", "hand@example.com")
        d = self.daemon([dict(name="uat", id="env-uat", emails=[("qa@example.com", "QA"), "ops@example.com"])])
        self.wait_change(d, "uat", "qa@example.com", True)
        self.wait_change(d, "uat", "ops@example.com", True)
        recorded = self.wait_recorded(d, ["ops@example.com", "qa@example.com"])
        d.sigterm()
        self.assertEqual(d.wait_exit(10), 0)
        self.assertEqual(self.recorded(d), recorded)
        gets = len(self.notif_requests("env-uat", "GET"))

        d.start()
        # the list is read again at start, and found in step
        self.assertTrue(wait_until(lambda: len(self.notif_requests("env-uat", "GET")) > gets, 10),
                        "no GET of the list after the restart")
        time.sleep(1.5)
        self.assertEqual(len(self.notif_requests("env-uat", "POST")), 2, self.notif_requests("env-uat", "POST"))
        self.assertEqual(self.notif_requests("env-uat", "DELETE"), [])
        self.assertEqual(sorted(self.addresses("env-uat")), ["hand@example.com", "ops@example.com", "qa@example.com"])
        self.assertEqual(self.recorded(d), recorded)
        self.assertEqual(self.changes(d), [])  # this run's lines: nothing changed


class DeletedByHand(E2E):
    def test_deleted_by_hand_forgotten_not_deleted_again(self):
        envs = [dict(name="uat", id="env-uat", emails=["qa@example.com", "ops@example.com"])]
        d = self.daemon(envs)
        self.wait_change(d, "uat", "qa@example.com", True)
        self.wait_change(d, "uat", "ops@example.com", True)
        ids = self.ids(self.wait_recorded(d, ["qa@example.com", "ops@example.com"]))
        self.delete_by_hand("env-uat", ids["qa@example.com"])
        self.assertEqual(self.addresses("env-uat"), ["ops@example.com"])

        # qa dropped from the config (and new@ added, to see the sync happen)
        since = self.reconfigure(d, [dict(envs[0], emails=["ops@example.com", "new@example.com"])])
        self.wait_change(d, "uat", "new@example.com", True, since=since)
        time.sleep(1)
        self.assertEqual(self.notif_requests("env-uat", "DELETE"), [], "deleted again by refreshd")
        self.assertEqual([c for c in self.changes(d) if c[2] == "removed"], [])
        rec = self.wait_recorded(d, ["new@example.com", "ops@example.com"])
        self.assertNotIn(ids["qa@example.com"], [i for _, i, _ in rec])
        self.assertEqual(sorted(self.addresses("env-uat")), ["new@example.com", "ops@example.com"])


class Faults(E2E):
    def test_post_500_warns_then_reload_adds(self):
        self.sim.fault({"match": {"method": "POST", "path": "^/test-environments/env-uat/notifications$"},
                        "action": "status", "status": 500, "times": -1})
        envs = [dict(name="uat", id="env-uat", emails=["qa@example.com", ("ops@example.com", "Ops")])]
        d = self.daemon(envs)
        w = d.wait_log(r" warning Environment 'uat': Zuora's e-mail notifications could not be kept in step: ",
                       timeout=10, ENVIRONMENT="uat")
        self.assertEqual(w.get("HTTP_STATUS"), "500", w.raw)
        self.assertIn("500", w.message)
        self.assertTrue(wait_until(lambda: len(self.notif_requests("env-uat", "POST")) >= 2, 5))
        time.sleep(0.5)
        self.assertEqual(self.at_zuora("env-uat"), [])
        self.assertEqual(self.recorded(d), [], d.state())
        self.assertEqual(self.changes(d), [])

        self.sim._call("DELETE", "/_sim/faults")
        since = self.reconfigure(d, envs)  # the same config: the sync is retried
        self.wait_change(d, "uat", "qa@example.com", True, since=since)
        self.wait_change(d, "uat", "ops@example.com", True, since=since)
        self.assertEqual(sorted((r["address"], r["name"]) for r in self.at_zuora("env-uat")),
                         [("ops@example.com", "Ops"), ("qa@example.com", None)])
        self.wait_recorded(d, ["ops@example.com", "qa@example.com"])
        self.assertEqual(d.events(r"could not be kept in step", since=since), [])

    def test_delete_500_warns_keeps_record_then_reload_deletes(self):
        envs = [dict(name="uat", id="env-uat", emails=["qa@example.com", "ops@example.com"])]
        d = self.daemon(envs)
        self.wait_change(d, "uat", "qa@example.com", True)
        self.wait_change(d, "uat", "ops@example.com", True)
        before = self.wait_recorded(d, ["ops@example.com", "qa@example.com"])
        qa_id = self.ids(before)["qa@example.com"]

        self.sim.fault({"match": {"method": "DELETE", "path": "/notifications/"}, "action": "status",
                        "status": 500, "times": -1})
        since = self.reconfigure(d, [dict(envs[0], emails=["ops@example.com"])])
        w = d.wait_log(r" warning Environment 'uat': Zuora's e-mail notifications could not be kept in step: ",
                       timeout=10, since=since, ENVIRONMENT="uat")
        self.assertEqual(w.get("HTTP_STATUS"), "500", w.raw)
        time.sleep(0.5)
        self.assertEqual(self.recorded(d), before, "the record of a recipient not deleted was dropped")
        self.assertIn("qa@example.com", self.addresses("env-uat"))
        self.assertEqual([c for c in self.changes(d) if c[2] == "removed"], [])

        self.sim._call("DELETE", "/_sim/faults")
        since = self.reconfigure(d, [dict(envs[0], emails=["ops@example.com"])])
        self.wait_change(d, "uat", "qa@example.com", False, since=since)
        self.assertEqual(self.addresses("env-uat"), ["ops@example.com"])
        self.assertEqual(self.wait_recorded(d, ["ops@example.com"]), [r for r in before if r[1] != qa_id])


class SlotSync(E2E):
    def test_slot_firing_re_adds_a_recipient_deleted_by_hand(self):
        self.sim.config(cooldown_seconds=0)
        d = self.daemon([dict(name="uat", id="env-uat", schedule="*/5 * * * * *", emails=["qa@example.com"])])
        self.wait_change(d, "uat", "qa@example.com", True)
        first = self.wait_recorded(d, ["qa@example.com"])
        # Delete it just after a slot's sync, so that the next slot is the first chance to see it.
        self.assertTrue(wait_until(lambda: self.sim.posts("env-uat"), 7), "no slot fired")
        n_posts = len(self.sim.posts("env-uat"))
        wait_until(lambda: len(self.sim.posts("env-uat")) > n_posts, 7)
        time.sleep(0.5)
        deleted_at = time.time()
        self.delete_by_hand("env-uat", first[0][1])
        self.assertEqual(self.at_zuora("env-uat"), [])
        n_lines = len(d.log())

        again = self.wait_change(d, "uat", "qa@example.com", True, since=n_lines, timeout=9)
        self.assertGreater(again.t, deleted_at)
        self.assertEqual(self.addresses("env-uat"), ["qa@example.com"])
        adds = [r for r in self.notif_requests("env-uat", "POST") if r["time"] > deleted_at]
        self.assertEqual(len(adds), 1, adds)
        # it came with a slot (every 5 s on the second), not from anything else
        self.assertLess(adds[0]["time"] % 5, 1.5, "the re-add is not at a slot: %s" % adds[0]["time"])
        self.assertTrue([p for p in self.sim.posts("env-uat") if abs(p["time"] - adds[0]["time"]) < 2],
                        "no refresh POST for the slot of the re-add")
        new_id = self.at_zuora("env-uat")[0]["id"]
        wait_until(lambda: self.recorded(d) == [("uat", new_id, "qa@example.com")], 5)
        self.assertEqual(self.recorded(d), [("uat", new_id, "qa@example.com")],
                         "the re-added recipient recorded under its new id, the old one forgotten")
        self.assertEqual(d.events(r"Reloaded"), [])


class CheckOnline(E2E):
    def test_check_online_shows_drift_and_changes_nothing(self):
        envs = [dict(name="uat", id="env-uat", emails=["qa@example.com", "ops@example.com"]),
                dict(name="stage", id="env-stage", emails=["stage@example.com"]),
                dict(name="dev", id="env-dev")]
        d = self.daemon(envs)
        self.wait_change(d, "uat", "qa@example.com", True)
        self.wait_change(d, "uat", "ops@example.com", True)
        self.wait_change(d, "stage", "stage@example.com", True)
        d.sigterm()
        self.assertEqual(d.wait_exit(10), 0)
        self.add_by_hand("env-uat", "hand@example.com")
        # ops dropped, new added: the config the daemon has not seen yet
        d.write_config(recipients_config(self.sim.base_url,
                                         [dict(envs[0], emails=["qa@example.com", "new@example.com"])] + envs[1:]))
        state_before = open(os.path.join(d.state_dir, "state.json"), "rb").read()
        zuora_before = {e: self.at_zuora(e) for e in ("env-uat", "env-stage", "env-dev")}
        seq0 = max([r["seq"] for r in self.sim.requests()] + [0])

        rc, out, err = self.run_refreshd("check", "-c", d.config_path, "--online",
                                         env_extra={"STATE_DIRECTORY": d.state_dir})
        self.assertEqual(rc, 0, out + err)
        writes = [(r["method"], r["path"]) for r in self.sim.requests(since=seq0)
                  if re.match(NOTIF_RE % "[^/]+", r["path"]) and r["method"] != "GET"]
        self.assertEqual(writes, [], "check --online changed Zuora's list")
        lines = [l for l in out.splitlines() if "notify_emails" in l]
        self.assertEqual(sorted(lines), sorted([
            "uat: notify_emails: would add new@example.com",
            "uat: notify_emails: would remove ops@example.com (added by refreshd, no longer in the config)",
            "uat: notify_emails: hand@example.com is at Zuora and not in the config: left alone",
            "stage: notify_emails: in step (1 at Zuora)",
        ]), out)
        self.assertNotIn("dev: notify_emails", out)

        # without refreshd's state, ops cannot be known as refreshd's: left alone
        empty = os.path.join(self.work, "empty-state")
        os.makedirs(empty)
        rc, out, err = self.run_refreshd("check", "-c", d.config_path, "--online",
                                         env_extra={"STATE_DIRECTORY": empty})
        self.assertEqual(rc, 0, out + err)
        lines = [l for l in out.splitlines() if l.startswith("uat: notify_emails")]
        self.assertEqual(sorted(lines), sorted([
            "uat: notify_emails: would add new@example.com",
            "uat: notify_emails: ops@example.com is at Zuora and not in the config: left alone",
            "uat: notify_emails: hand@example.com is at Zuora and not in the config: left alone",
        ]), out)

        # nothing changed: no write on notifications, Zuora's lists and state.json as they were
        after = self.sim.requests(since=seq0)
        self.assertTrue([r for r in after if re.match(NOTIF_RE % "env-uat", r["path"]) and r["method"] == "GET"],
                        "check --online did not read the list")
        writes = [(r["method"], r["path"]) for r in after
                  if re.match(NOTIF_RE % "[^/]+", r["path"]) and r["method"] != "GET"]
        self.assertEqual(writes, [])
        self.assertEqual([r["path"] for r in after if re.match(NOTIF_RE % "env-dev", r["path"])], [],
                         "check --online read the list of an environment without notify_emails")
        self.assertEqual({e: self.at_zuora(e) for e in zuora_before}, zuora_before)
        self.assertEqual(open(os.path.join(d.state_dir, "state.json"), "rb").read(), state_before)


class Secret(E2E):
    secret = "rcpt-Secret-5b8e1d07c9aa"

    def test_secret_never_in_output(self):
        # the daemon's first token request fails (the sync warns), check --online's too
        self.sim.fault({"match": {"path": "^/oauth/token$"}, "action": "status", "status": 500, "times": 1})
        envs = [dict(name="uat", id="env-uat", emails=[("qa@example.com", "QA")])]
        d = self.daemon(envs)
        d.wait_log(r"could not be kept in step|added to Zuora's e-mail notifications", timeout=15)
        since = self.reconfigure(d, [dict(envs[0], emails=["ops@example.com"])])
        self.wait_change(d, "uat", "ops@example.com", True, since=since, timeout=15)
        self.sim.config(client_secret="another-secret")
        self.sim.expire_tokens()
        since = self.reconfigure(d, [dict(envs[0], emails=["x@example.com"])])
        d.wait_log(r"could not be kept in step", timeout=15, since=since)
        rc, out, err = self.run_refreshd("check", "-c", d.config_path, "--online",
                                         env_extra={"STATE_DIRECTORY": d.state_dir})
        self.assertEqual(rc, 1, out + err)
        self.sim.config(client_secret=self.secret)
        rc, out, err = self.run_refreshd("check", "-c", d.config_path, "--online",
                                         env_extra={"STATE_DIRECTORY": d.state_dir})
        self.assertEqual(rc, 0, out + err)
        self.assertIn("uat: notify_emails: would add x@example.com", out)
        d.sigterm()
        self.assertEqual(d.wait_exit(10), 0)
        # the secret did reach the simulator (so the test means something); tearDown checks the rest
        self.assertTrue(any(self.secret in (r["body"] or "") for r in self.sim.token_requests()))


# ==============================================================================================
# runner

def main(argv):
    global BINARY, ARTIFACTS
    if len(argv) < 2:
        print("usage: %s /path/to/refreshd [NAME-FILTER...]" % argv[0], file=sys.stderr)
        return 2
    if not os.access(argv[1], os.X_OK):
        print("not an executable: %s" % argv[1], file=sys.stderr)
        return 2
    filters = argv[2:]
    ARTIFACTS = tempfile.mkdtemp(prefix="refreshd-recipients-")
    # A private copy, so that a rebuild of the tree during the run changes nothing.
    BINARY = os.path.join(ARTIFACTS, "refreshd")
    shutil.copy2(os.path.abspath(argv[1]), BINARY)
    tests = list(flatten(unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__])))
    if filters:
        tests = [t for t in tests if any(f in t.id() for f in filters)]
    print("refreshd notify_emails e2e (%s): %d tests" % (os.path.abspath(argv[1]), len(tests)), flush=True)
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
