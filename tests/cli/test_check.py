#!/usr/bin/env python3
"""`refreshd check` and the command line, as a user scripts against them:
exit codes, the JSON on standard output, errors on standard error."""

import json
import os
import subprocess
import sys
import tempfile
import unittest

REFRESHD = None

VALID = """\
zuora:
  base_url: http://127.0.0.1:8080
  client_id: demo-client
  client_secret_env: REFRESHD_TEST_SECRET
defaults:
  timezone: Europe/Berlin
environments:
  - name: uat
    id: 11111111-1111-1111-1111-111111111111
    schedule: "0 3 * * SUN#1"
    min_interval: 28d
  - name: ny
    id: 22222222-2222-2222-2222-222222222222
    schedule: "30 2 * * *"
    timezone: America/New_York
  - name: off
    id: 33333333-3333-3333-3333-333333333333
    schedule: "@monthly"
    enabled: false
"""


def run(*args, config_text=None, env_extra=None):
    env = dict(os.environ, REFRESHD_TEST_SECRET="s3cret")
    env.pop("CONFIGURATION_DIRECTORY", None)
    env.update(env_extra or {})
    with tempfile.TemporaryDirectory() as d:
        argv = [REFRESHD, *args]
        if config_text is not None:
            path = os.path.join(d, "refreshd.yaml")
            with open(path, "w") as f:
                f.write(config_text)
            argv += ["-c", path]
        p = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
        return p.returncode, p.stdout, p.stderr.replace(d + "/", "")


class CheckTest(unittest.TestCase):
    def test_json_output(self):
        rc, out, err = run("check", "--json", "--from", "2026-11-29T00:00:00Z", config_text=VALID)
        self.assertEqual(rc, 0, err)
        doc = json.loads(out)  # stdout is JSON and nothing else
        envs = {e["name"]: e for e in doc["environments"]}
        self.assertEqual(list(envs), ["uat", "ny", "off"])
        self.assertEqual(envs["uat"]["timezone"], "Europe/Berlin")
        self.assertEqual(envs["uat"]["next"], ["2026-12-06T03:00:00+01:00", "2027-01-03T03:00:00+01:00",
                                               "2027-02-07T03:00:00+01:00"])
        self.assertEqual(envs["uat"]["next_utc"][0], "2026-12-06T02:00:00Z")
        self.assertIs(envs["uat"]["enabled"], True)
        self.assertIs(envs["off"]["enabled"], False)
        self.assertEqual(envs["off"]["next"][0], "2026-12-01T00:00:00+01:00")

    def test_dst_preview(self):
        rc, out, _ = run("check", "--json", "--next", "3", "--from", "2027-03-13T00:00:00Z", config_text=VALID)
        self.assertEqual(rc, 0)
        ny = json.loads(out)["environments"][1]
        # 02:30 does not exist on 2027-03-14: it fires at 03:00 EDT, once.
        self.assertEqual(ny["next"], ["2027-03-13T02:30:00-05:00", "2027-03-14T03:00:00-04:00",
                                      "2027-03-15T02:30:00-04:00"])

    def test_text_output(self):
        rc, out, err = run("check", "--next", "1", "--from", "2026-11-29T00:00:00Z", config_text=VALID)
        self.assertEqual(rc, 0, err)
        self.assertIn("uat  Europe/Berlin  \"0 3 * * SUN#1\"", out)
        self.assertIn("2026-12-06T03:00:00+01:00  2026-12-06T02:00:00Z", out)
        self.assertIn("disabled", out)

    def test_invalid_config(self):
        text = VALID.replace("schedule: \"30 2 * * *\"", "schedule: \"30 2 * * MOON\"").replace(
            "timezone: Europe/Berlin", "timezone: Europe/Berln")
        rc, out, err = run("check", "--json", config_text=text)
        self.assertEqual(rc, 1)
        self.assertEqual(out, "")
        self.assertIn("refreshd.yaml:6:13: error: defaults: unknown time zone 'Europe/Berln'", err)
        self.assertIn("refreshd.yaml:14:25: error: environment 'ny': 'schedule'", err)
        self.assertIn("2 errors", err)

    def test_warning_keeps_exit_zero(self):
        text = VALID.replace("\"@monthly\"", "\"0 2 1-7 * SUN\"")
        rc, out, err = run("check", "--json", config_text=text)
        self.assertEqual(rc, 0)
        json.loads(out)
        self.assertIn("warning:", err)
        self.assertIn("SUN#1", err)

    def test_missing_config(self):
        rc, _, err = run("check", "-c", "/nonexistent/refreshd.yaml")
        self.assertEqual(rc, 1)
        self.assertIn("/nonexistent/refreshd.yaml: error: cannot read the config file", err)

    def test_configuration_directory(self):
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "refreshd.yaml"), "w") as f:
                f.write(VALID)
            rc, out, err = run("check", "--json", env_extra={"CONFIGURATION_DIRECTORY": d})
            self.assertEqual(rc, 0, err)
            self.assertEqual(len(json.loads(out)["environments"]), 3)

    def test_secret_is_never_printed(self):
        rc, out, err = run("check", config_text=VALID.replace("demo-client", ""))
        self.assertEqual(rc, 1)
        self.assertNotIn("s3cret", out + err)

    def test_unusable_secret_fails_check_where_run_would(self):
        # "  client_secret_file: " is 22 columns: the value is at 4:23.
        for content, words in ((b"\n", "is empty"), (b"x" * 5000, "longer than 4096 bytes")):
            with tempfile.TemporaryDirectory() as d:
                secret = os.path.join(d, "secret")
                with open(secret, "wb") as f:
                    f.write(content)
                os.chmod(secret, 0o600)
                text = VALID.replace("client_secret_env: REFRESHD_TEST_SECRET", "client_secret_file: " + secret)
                for command, code in (("check", 1), ("run", 78)):
                    rc, out, err = run(command, "--state-dir", d, config_text=text) if command == "run" \
                        else run(command, config_text=text)
                    self.assertEqual(rc, code, err)
                    self.assertIn("refreshd.yaml:4:23: error: 'client_secret_file': the client secret in", err)
                    self.assertIn(words, err)

    def test_config_fifo_refused_at_once(self):
        with tempfile.TemporaryDirectory() as d:
            fifo = os.path.join(d, "refreshd.yaml")
            os.mkfifo(fifo)
            rc, _, err = run("check", "-c", fifo)
            self.assertEqual(rc, 1)
            self.assertIn("cannot read the config file: not a regular file", err)

    def test_schedule_warnings_and_peer_forms(self):
        text = VALID.replace("\"30 2 * * *\"", "\"*/60 2 * * thu-sun\"")
        rc, out, err = run("check", "--json", "--from", "2026-11-29T00:00:00Z", config_text=text)
        self.assertEqual(rc, 0, err)
        self.assertIn("refreshd.yaml:14:16: warning: environment 'ny': 'schedule' \"*/60 2 * * thu-sun\": step 60", err)
        ny = json.loads(out)["environments"][1]
        # Sunday 29 November (the range ends on Sunday), then Thursday 3 December.
        self.assertEqual(ny["next"][:2], ["2026-11-29T02:00:00-05:00", "2026-12-03T02:00:00-05:00"])

    def test_one_sandbox_under_two_names(self):
        text = VALID.replace("33333333-3333-3333-3333-333333333333", "11111111-1111-1111-1111-111111111111")
        rc, _, err = run("check", config_text=text)
        self.assertEqual(rc, 1)
        self.assertIn("refreshd.yaml:17:9: error: environment 'off': 'id' '11111111-1111-1111-1111-111111111111' "
                      "is environment 'uat''s too (line 9)", err)

    def test_run_with_invalid_config_exits_78(self):
        rc, _, err = run("run", config_text="zuora: {}\n")
        self.assertEqual(rc, 78)
        self.assertIn("missing required key", err)


class UsageTest(unittest.TestCase):
    def test_help_and_version(self):
        rc, out, _ = run("--help")
        self.assertEqual(rc, 0)
        self.assertIn("Usage: refreshd", out)
        rc, out, _ = run("--version")
        self.assertEqual(rc, 0)
        self.assertRegex(out, r"^refreshd \d+\.\d+\.\d+\n$")

    def test_usage_errors_exit_2(self):
        for args in (["frobnicate"], ["check", "--bogus"], ["check", "--next", "0"], ["check", "--next"],
                     ["check", "--from", "yesterday"], ["run", "--next", "3"], ["refresh"],
                     ["check", "extra"]):
            rc, out, err = run(*args)
            self.assertEqual(rc, 2, args)
            self.assertIn("refreshd:", err)
            self.assertEqual(out, "")


if __name__ == "__main__":
    REFRESHD = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
