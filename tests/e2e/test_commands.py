#!/usr/bin/env python3
"""The operator commands against the bundled Zuora simulator: `refresh [--wait]`, `cancel`,
`check --online` and `status [--json]`, as an operator scripts them (exit codes, standard output).

    python3 tests/e2e/test_commands.py build/daemon/refreshd
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (DEFAULT_SECRET, SECRET_ENV, Daemon, Sim, make_config, next_second,  # noqa: E402
                     seconds_schedule)

BINARY = None
JOB_ID = "[0-9a-f]{32}"


def read(path):
    with open(path) as f:
        return f.read()


class Commands(unittest.TestCase):
    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="refreshd-commands-")
        self.addCleanup(shutil.rmtree, self.work, ignore_errors=True)
        self.sim = Sim(self.work, job_seconds=3)
        self.addCleanup(self.sim.stop)
        self.config = os.path.join(self.work, "refreshd.yaml")
        self.write([dict(name="uat", id="env-uat", schedule="0 3 * * SUN#1"),
                    dict(name="dev", id="env-dev", schedule="@monthly")])

    def write(self, envs):
        with open(self.config, "w") as f:
            f.write(make_config(self.sim.base_url, envs, defaults={"poll_interval": "1s"}))

    def run_cmd(self, *args, timeout=60):
        env = dict(os.environ, **{SECRET_ENV: DEFAULT_SECRET})
        p = subprocess.run([BINARY, *args, "-c", self.config], capture_output=True, text=True, env=env,
                           timeout=timeout)
        self.assertNotIn(DEFAULT_SECRET, p.stdout + p.stderr)
        return p.returncode, p.stdout, p.stderr

    def test_refresh_prints_job_and_polling_url(self):
        rc, out, err = self.run_cmd("refresh", "uat")
        self.assertEqual(rc, 0, err)
        job_id, url = out.splitlines()
        self.assertRegex(job_id, "^%s$" % JOB_ID)
        self.assertEqual(url, "%s/test-environments/env-uat/jobs/%s" % (self.sim.base_url, job_id))
        self.assertEqual(len(self.sim.posts("env-uat")), 1)
        # The same list check as the daemon: a running job is not doubled.
        rc, out, err = self.run_cmd("refresh", "uat")
        self.assertEqual(rc, 1)
        self.assertIn("already has a running job: %s" % job_id, err)
        self.assertEqual(len(self.sim.posts("env-uat")), 1)

    def test_refresh_wait_follows_to_the_end(self):
        rc, out, err = self.run_cmd("refresh", "uat", "--wait")
        self.assertEqual(rc, 0, err)
        lines = out.splitlines()
        self.assertRegex(lines[-1], r"^job %s: COMPLETED 100%%$" % JOB_ID)
        self.assertTrue(any("IN_PROGRESS" in l for l in lines), out)

    def test_refresh_wait_failed_job_exits_1(self):
        self.sim.config(environments={"env-uat": {"final_status": "FAILED"}})
        rc, out, _ = self.run_cmd("refresh", "uat", "--wait")
        self.assertEqual(rc, 1)
        self.assertRegex(out.splitlines()[-1], r"FAILED")

    def test_refresh_rejected_shows_zuora_reason(self):
        self.sim.fault({"match": {"method": "POST", "path": "/jobs$"}, "action": "status", "status": 400,
                        "body": '{"success":false,"reasons":[{"code":50000040,"message":"Sandbox is locked"}]}'})
        rc, out, err = self.run_cmd("refresh", "uat")
        self.assertEqual(rc, 1)
        self.assertEqual(out, "")
        self.assertIn("Sandbox is locked", err)
        self.assertIn("Zuora-Track-Id", err)

    def test_refresh_unknown_environment(self):
        rc, _, err = self.run_cmd("refresh", "nope")
        self.assertEqual(rc, 1)
        self.assertIn("no environment 'nope'", err)

    def test_cancel(self):
        self.sim.config(job_seconds=30)
        rc, out, err = self.run_cmd("refresh", "uat")
        self.assertEqual(rc, 0, err)
        job_id = out.splitlines()[0]
        rc, out, err = self.run_cmd("cancel", "uat")
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.strip(), "job %s: CANCELED" % job_id)
        rc, _, err = self.run_cmd("cancel", "uat")
        self.assertEqual(rc, 1)
        self.assertIn("no running job", err)

    def test_cancel_too_late_shows_zuora_answer(self):
        self.sim.config(job_seconds=8)
        rc, out, err = self.run_cmd("refresh", "uat")
        self.assertEqual(rc, 0, err)
        time.sleep(5)  # past the reset stage (half way)
        rc, _, err = self.run_cmd("cancel", "uat")
        self.assertEqual(rc, 1)
        self.assertIn("was not cancelled: Zuora answered 400", err)

    def test_check_online(self):
        rc, out, err = self.run_cmd("check", "--online")
        self.assertEqual(rc, 0, err)
        self.assertIn("uat: ok: last refresh never, next refresh allowed from now", out)
        self.sim.config(environments={"env-dev": {"exists": False}})
        rc, out, err = self.run_cmd("check", "--online")
        self.assertEqual(rc, 1)
        self.assertIn("dev: error: Zuora knows no test environment with id 'env-dev'", out)

    def test_check_online_wrong_credentials(self):
        self.sim.config(client_secret="another-secret")
        rc, out, _ = self.run_cmd("check", "--online")
        self.assertEqual(rc, 1)
        self.assertIn("check client_id/client_secret", out)

    def test_status_json_after_a_run(self):
        slot = next_second(2)
        envs = [dict(name="uat", id="env-uat", schedule=seconds_schedule(slot))]
        self.write(envs)
        d = Daemon(BINARY, self.work, make_config(self.sim.base_url, envs, defaults={"poll_interval": "1s"}))
        self.addCleanup(d.stop)
        d.start()
        d.wait_log(r"submitted", timeout=10)
        state_dir = d.state_dir

        rc, out, err = self.run_cmd("status", "--json", "--state-dir", state_dir)
        self.assertEqual(rc, 0, err)
        env = json.loads(out)["environments"][0]
        self.assertEqual((env["name"], env["id"], env["timezone"]), ("uat", "env-uat", "UTC"))
        self.assertEqual(env["last_slot"], time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(slot)))
        self.assertRegex(env["job"]["id"], "^%s$" % JOB_ID)
        self.assertIn(env["job"]["status"], ("NEW", "QUEUED", "IN_PROGRESS"))
        self.assertTrue(env["job"]["polling_url"].startswith(self.sim.base_url))
        self.assertIsNotNone(env["next_slot"])

        d.wait_log(r"completed", timeout=15)
        d.sigterm()
        self.assertEqual(d.wait_exit(5), 0)
        rc, out, _ = self.run_cmd("status", "--json", "--state-dir", state_dir)
        env = json.loads(out)["environments"][0]
        self.assertIsNone(env["job"])
        self.assertEqual(env["last_job"]["status"], "COMPLETED")
        rc, out, _ = self.run_cmd("status", "--state-dir", state_dir)
        self.assertEqual(rc, 0)
        self.assertIn("last job:", out)
        self.assertIn("COMPLETED", out)
        # It never writes: the state file is as the daemon left it.
        before = read(os.path.join(state_dir, "state.json"))
        self.run_cmd("status", "--state-dir", state_dir)
        self.assertEqual(read(os.path.join(state_dir, "state.json")), before)


if __name__ == "__main__":
    BINARY = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
