#!/usr/bin/env python3
"""Self-test of zuora_sim.py: starts the simulator as a subprocess on a free loopback port and
exercises every feature over real sockets (urllib / http.client / socket). Standard library only.

Run: python3 tests/sim/test_zuora_sim.py [-v]      (exits non-zero on failure; well under 60 s)
"""

import datetime
import email.utils
import gzip
import http.client
import json
import os
import re
import selectors
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
SIM = os.path.join(HERE, "zuora_sim.py")
CREDS = "client_id=demo-client&client_secret=demo-secret&grant_type=client_credentials"
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
HEX32_RE = re.compile(r"^[0-9a-f]{32}$")
PERIOD_TEXT = "Only one refresh can be performed during a set period"
JOB_FIELDS = {"id", "testEnvironmentId", "jobType", "status", "progressPercentage", "createTime",
              "updateTime", "createdById", "updatedById", "scheduledRefreshTime", "jobStartTime",
              "jobEndTime", "estimatedCompletionTime"}
NOTIFICATION_FIELDS = {"id", "address", "name", "testEnvironmentId"}
ENV_FIELDS = {"id", "tenantId", "tenantName", "environmentType", "dataCopyType", "status",
              "sourceTenantId", "provisionTime", "lastRefreshTime", "nextRefreshTime"}


def parse_time(text):
    """RFC 3339 "Z" time -> epoch seconds."""
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def rfc3339(ts, fraction=False):
    """Epoch seconds -> RFC 3339 (optionally with milliseconds)."""
    value = datetime.datetime.fromtimestamp(ts, datetime.timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z" if fraction else value.strftime("%Y-%m-%dT%H:%M:%SZ")


class Resp:
    """An HTTP answer as read by http.client."""

    def __init__(self, status, headers, body, elapsed):
        self.status = status
        self.headers = headers
        self.body = body
        self.elapsed = elapsed

    def json(self):
        """The body as JSON (gunzipped first when Content-Encoding: gzip)."""
        body = self.body
        if (self.headers.get("Content-Encoding") or "") == "gzip":
            body = gzip.decompress(body)
        return json.loads(body.decode("utf-8"))


class Sim:
    """One simulator subprocess."""

    def __init__(self, *args, host="127.0.0.1", cafile=None):
        self.dir = tempfile.mkdtemp(prefix="zuora-sim-test-")
        self.port_file = os.path.join(self.dir, "port")
        self.log_path = os.path.join(self.dir, "sim.log")
        self.host = host
        self.cafile = cafile
        cmd = [sys.executable, SIM, "--host", host, "--port", "0", "--port-file", self.port_file,
               "--log", self.log_path, *args]
        self.stderr = open(os.path.join(self.dir, "stderr"), "wb")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.stderr)
        self.banner = self._read_line(15)
        match = re.match(r"^listening on (https?)://(\S+):(\d+)$", self.banner)
        if not match:
            self.stop()
            raise AssertionError("unexpected banner %r, stderr: %s" % (self.banner, self.stderr_text()))
        self.scheme, self.port = match.group(1), int(match.group(3))

    def _read_line(self, timeout):
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            self.proc.kill()
            raise AssertionError("simulator did not start: %s" % self.stderr_text())
        return self.proc.stdout.readline().decode().strip()

    def stderr_text(self):
        """What the simulator wrote on stderr."""
        with open(os.path.join(self.dir, "stderr"), "rb") as fh:
            return fh.read().decode(errors="replace")

    def log_text(self):
        """The request log."""
        with open(self.log_path, encoding="utf-8") as fh:
            return fh.read()

    def stop(self, sig=signal.SIGTERM, timeout=10):
        """Signal the simulator and return its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("simulator did not exit within %ss of signal %s" % (timeout, sig))
        self.proc.stdout.close()
        self.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        return self.proc.returncode

    @property
    def base(self):
        """Base URL."""
        host = "[%s]" % self.host if ":" in self.host else self.host
        return "%s://%s:%d" % (self.scheme, host, self.port)

    def conn(self, timeout=10):
        """A new HTTP(S) connection."""
        if self.scheme == "https":
            ctx = ssl.create_default_context(cafile=self.cafile)
            return http.client.HTTPSConnection(self.host, self.port, timeout=timeout, context=ctx)
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def call(self, method, path, body=None, headers=None, token=None, conn=None, timeout=10):
        """One request; returns Resp. Uses (and keeps open) ``conn`` when given."""
        own = conn is None
        conn = conn or self.conn(timeout)
        headers = dict(headers or {})
        if token:
            headers["Authorization"] = "Bearer " + token
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
            headers.setdefault("Content-Type", "application/json")
        if isinstance(body, str):
            body = body.encode()
        started = time.monotonic()
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            return Resp(resp.status, resp.headers, data, time.monotonic() - started)
        finally:
            if own:
                conn.close()

    def control(self, method, path, value=None):
        """A /_sim/ call that must succeed; returns its JSON (or text)."""
        resp = self.call(method, path, value if value is not None else None)
        if resp.status != 200:
            raise AssertionError("%s %s -> %d %s" % (method, path, resp.status, resp.body[:300]))
        return resp.json() if resp.headers.get("Content-Type", "").startswith("application/json") else resp.body

    def configure(self, **config):
        """POST /_sim/config."""
        return self.control("POST", "/_sim/config", config)

    def fault(self, *rules):
        """POST /_sim/faults."""
        return self.control("POST", "/_sim/faults", list(rules))

    def token(self, form=CREDS):
        """A fresh access token."""
        resp = self.call("POST", "/oauth/token", form,
                         {"Content-Type": "application/x-www-form-urlencoded"})
        if resp.status != 200:
            raise AssertionError("token: %d %s" % (resp.status, resp.body))
        return resp.json()["access_token"]

    def raw(self, data, timeout=5):
        """Send raw bytes on a new socket; return (bytes received, exception or None)."""
        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        received, error = b"", None
        try:
            sock.sendall(data)
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
        except OSError as exc:
            error = exc
        finally:
            sock.close()
        return received, error


def raw_get(path, token, extra=""):
    """Bytes of a GET request that closes the connection."""
    return ("GET %s HTTP/1.1\r\nHost: sim\r\nAuthorization: Bearer %s\r\n%sConnection: close\r\n\r\n"
            % (path, token, extra)).encode()


def split_head(data):
    """(status code, headers dict lower-case, body) of raw answer bytes."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


SIM_SHARED = None


def setUpModule():
    global SIM_SHARED
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < 4096:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    except (ImportError, ValueError, OSError):
        pass
    SIM_SHARED = Sim("--job-seconds", "1")


def tearDownModule():
    if SIM_SHARED is None:
        return
    log, errors = SIM_SHARED.log_text(), SIM_SHARED.stderr_text()
    assert SIM_SHARED.stop() == 0, "shared simulator did not exit cleanly"
    assert "Traceback" not in log and "internal error" not in log, "simulator bug, log:\n" + log
    assert errors == "", "simulator wrote on stderr:\n" + errors


class SimTest(unittest.TestCase):
    """Base: a reset shared simulator and a fresh token."""

    def setUp(self):
        self.sim = SIM_SHARED
        self.sim.control("POST", "/_sim/reset")
        self.tok = self.sim.token()

    def api(self, method, path, body=None, headers=None, **kw):
        """An authenticated API call."""
        return self.sim.call(method, path, body, headers, token=kw.pop("token", self.tok), **kw)

    def create(self, env, body=None, **kw):
        """POST a refresh job."""
        return self.api("POST", "/test-environments/%s/jobs" % env,
                        {"jobType": "REFRESH"} if body is None else body, **kw)

    def get_job(self, env, job_id):
        """GET one job (JSON)."""
        resp = self.api("GET", "/test-environments/%s/jobs/%s" % (env, job_id))
        self.assertEqual(resp.status, 200, resp.body)
        return resp.json()

    def assertZuoraError(self, resp, status, text=None):
        """A Zuora-style error body."""
        self.assertEqual(resp.status, status, resp.body)
        body = resp.json()
        self.assertIs(body["success"], False)
        self.assertIsInstance(body["reasons"][0]["code"], int)
        if text:
            self.assertIn(text, body["reasons"][0]["message"])
        return body


# ----------------------------------------------------------------------------------------------

class TestHttp(SimTest):
    """Transport: banner, keep-alive, concurrency, malformed input, gzip, track id, log."""

    def test_banner_and_port_file(self):
        with open(self.sim.port_file) as fh:
            self.assertEqual(fh.read(), "%d\n" % self.sim.port)
        self.assertEqual(self.sim.banner, "listening on http://127.0.0.1:%d" % self.sim.port)
        self.assertFalse([n for n in os.listdir(self.sim.dir) if ".tmp." in n])
        with urllib.request.urlopen(self.sim.base + "/_sim/health", timeout=5) as resp:
            self.assertEqual(resp.read(), b"ok")

    def test_keep_alive(self):
        conn = self.sim.conn()
        ports = set()
        for _ in range(5):
            resp = self.api("GET", "/test-environments/ka1", conn=conn)
            self.assertEqual(resp.status, 200)
            self.assertEqual(int(resp.headers["Content-Length"]), len(resp.body))
            ports.add(conn.sock.getsockname()[1])
        resp = self.api("GET", "/test-environments/bad!id", conn=conn)  # errors keep the connection too
        self.assertEqual(resp.status, 404)
        self.assertEqual(len(ports), 1)
        self.assertIsNotNone(conn.sock)
        conn.close()
        recs = self.sim.control("GET", "/_sim/requests?path=ka1")
        self.assertEqual({r["client_port"] for r in recs}, ports)

    def test_1000_concurrent_connections(self):
        socks = []
        try:
            for _ in range(1000):
                socks.append(socket.create_connection((self.sim.host, self.sim.port), timeout=30))
            for sock in socks:  # all 1000 are open before the first request is sent
                sock.sendall(raw_get("/test-environments/conc1", self.tok))
            sel = selectors.DefaultSelector()
            data = {}
            for sock in socks:
                sock.setblocking(False)
                sel.register(sock, selectors.EVENT_READ)
                data[sock] = b""
            done, deadline = 0, time.monotonic() + 40
            while done < len(socks) and time.monotonic() < deadline:
                for key, _ in sel.select(1):
                    chunk = key.fileobj.recv(65536)
                    data[key.fileobj] += chunk
                    if not chunk:
                        sel.unregister(key.fileobj)
                        done += 1
            statuses = [split_head(d)[0] if d else None for d in data.values()]
            self.assertEqual(statuses.count(200), 1000, statuses[:20])
        finally:
            for sock in socks:
                sock.close()

    def test_request_head_parsing(self):
        # The simulator's own header reader: names in any case, blanks around values, a folded
        # line, repeated headers, and the base class's answers to bad heads.
        data, _ = self.sim.raw(("GET /test-environments/hp1 HTTP/1.1\r\nhost: x\r\n"
                                "authorization:   Bearer %s\r\nZuora-Track-Id: t-1\r\nX-Fold: a\r\n b\r\n"
                                "X-Twice: 1\r\nX-Twice: 2\r\nconnection: close\r\n\r\n" % self.tok).encode())
        status, headers, _ = split_head(data)
        self.assertEqual(status, 200, data)
        self.assertEqual(headers.get("zuora-track-id"), "t-1")
        self.assertIn("close", headers.get("connection", "close"))
        rec = self.sim.control("GET", "/_sim/requests?path=hp1")[-1]
        self.assertEqual(rec["headers"].get("X-Fold"), "a b")
        self.assertEqual([v for k, v in rec["header_list"] if k == "X-Twice"], ["1", "2"])
        data, _ = self.sim.raw(b"POST /test-environments/hp1/jobs HTTP/1.1\r\nHost: x\r\n"
                               b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}")
        self.assertRegex(data, rb"^HTTP/1\.1 400")
        data, _ = self.sim.raw(b"GET / HTTP/2.0\r\n\r\n")
        self.assertRegex(data, rb"^HTTP/1\.[01] 505")
        data, _ = self.sim.raw(b"GET / HTTP/1.x\r\n\r\n")
        self.assertRegex(data, rb"^HTTP/1\.[01] 400")
        data, _ = self.sim.raw(b"POST /x\r\n\r\n")
        self.assertRegex(data, rb"^HTTP/1\.[01] 400")
        data, _ = self.sim.raw(b"GET / HTTP/1.1\r\nX-Long: " + b"a" * 70000 + b"\r\n\r\n")
        self.assertRegex(data, rb"^HTTP/1\.[01] 431")
        data, _ = self.sim.raw(b"GET / HTTP/1.1\r\n" + b"X-Many: 1\r\n" * 101 + b"\r\n")
        self.assertRegex(data, rb"^HTTP/1\.[01] 431")

    def test_malformed_input(self):
        data, _ = self.sim.raw(b"GARBAGE\r\n\r\n")
        self.assertRegex(data, rb"^HTTP/1\.[01] 400")
        data, _ = self.sim.raw(b"POST /test-environments/m1/jobs HTTP/1.1\r\nHost: x\r\n"
                               b"Content-Length: abc\r\n\r\n{}")
        self.assertRegex(data, rb"^HTTP/1\.1 400")
        data, _ = self.sim.raw(b"GET /test-environments/m1 HTTP/1.1\r\nHost: x\r\nNo colon here\r\n"
                               b"X-Bin: \xff\xfe\r\nConnection: close\r\n\r\n")
        self.assertRegex(data, rb"^HTTP/1\.1 \d\d\d")
        self.assertZuoraError(self.create("m1", "{not json"), 400, "Malformed JSON")
        self.assertZuoraError(self.api("POST", "/test-environments/m1/jobs", b"\xff\xfe{"), 400)
        resp = self.api("POST", "/test-environments/m1/jobs", b"not gzip", {"Content-Encoding": "gzip"})
        self.assertEqual(resp.status, 400)
        resp = self.sim.call("POST", "/_sim/config", "{bad")
        self.assertEqual(resp.status, 400)
        self.assertEqual(self.sim.call("GET", "/_sim/health").status, 200)
        self.assertEqual(self.sim.proc.poll(), None)

    def test_chunked_and_gzip_request_bodies(self):
        conn = self.sim.conn()
        conn.putrequest("POST", "/test-environments/chunk1/jobs")
        conn.putheader("Authorization", "Bearer " + self.tok)
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        for piece in (b'{"jobType":', b'"REFRESH"}'):
            conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
        conn.send(b"0\r\n\r\n")
        self.assertEqual(conn.getresponse().status, 200)
        conn.close()
        resp = self.api("POST", "/test-environments/gz1/jobs", gzip.compress(b'{"jobType":"REFRESH"}'),
                        {"Content-Encoding": "gzip"})
        self.assertEqual(resp.status, 200, resp.body)

    def test_gzip_answers(self):
        for i in range(8):
            self.api("GET", "/test-environments/gzip-env-%d" % i)
        big = self.api("GET", "/test-environments", headers={"Accept-Encoding": "gzip"})
        self.assertEqual(big.headers["Content-Encoding"], "gzip")
        self.assertEqual(int(big.headers["Content-Length"]), len(big.body))
        self.assertEqual(big.json()["size"], 8)
        plain = self.api("GET", "/test-environments")
        self.assertIsNone(plain.headers["Content-Encoding"])
        self.assertGreater(len(plain.body), 1000)
        small = self.api("GET", "/test-environments/gzip-env-1", headers={"Accept-Encoding": "gzip"})
        self.assertIsNone(small.headers["Content-Encoding"])
        self.assertLess(len(small.body), 1000)
        self.sim.configure(gzip_always=True)
        small = self.api("GET", "/test-environments/gzip-env-1", headers={"Accept-Encoding": "gzip, deflate"})
        self.assertEqual(small.headers["Content-Encoding"], "gzip")
        self.assertEqual(small.json()["id"], "gzip-env-1")
        refused = self.api("GET", "/test-environments/gzip-env-1", headers={"Accept-Encoding": "gzip;q=0"})
        self.assertIsNone(refused.headers["Content-Encoding"])

    def test_track_id_echo(self):
        track = {"Zuora-Track-Id": "trk-123"}
        self.assertEqual(self.api("GET", "/test-environments/t1", headers=track).headers["Zuora-Track-Id"], "trk-123")
        self.assertEqual(self.api("GET", "/test-environments/t1", headers=track, token="nope")
                         .headers["Zuora-Track-Id"], "trk-123")
        self.assertEqual(self.create("t1", "{", headers=track).headers["Zuora-Track-Id"], "trk-123")
        self.assertEqual(self.sim.call("GET", "/_sim/health", headers=track).headers["Zuora-Track-Id"], "trk-123")
        self.sim.fault({"match": {"path": "/t1$"}, "action": "status", "status": 503})
        resp = self.api("GET", "/test-environments/t1", headers=track)
        self.assertEqual((resp.status, resp.headers["Zuora-Track-Id"]), (503, "trk-123"))
        self.assertIsNone(self.api("GET", "/test-environments/t1").headers["Zuora-Track-Id"])

    def test_log_lines(self):
        self.api("GET", "/test-environments/logged1", headers={"Zuora-Track-Id": "log-trk-9"})
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            if re.search(r"GET /test-environments/logged1 200 track=log-trk-9", self.sim.log_text()):
                break
            time.sleep(0.05)
        self.assertRegex(self.sim.log_text(), r"GET /test-environments/logged1 200 track=log-trk-9")

    def test_unknown_paths_and_methods(self):
        self.assertEqual(self.api("GET", "/nothing-here").status, 404)
        self.assertEqual(self.api("DELETE", "/test-environments/x1").status, 405)
        self.assertEqual(self.sim.call("GET", "/oauth/token").status, 405)
        self.assertEqual(self.api("GET", "/test-environments/x1/other").status, 404)
        self.assertEqual(self.sim.call("GET", "/_sim/nothing").status, 404)


class TestAuth(SimTest):
    """OAuth token endpoint and bearer checks."""

    def test_token_answer(self):
        resp = self.sim.call("POST", "/oauth/token", CREDS, {"Content-Type": "application/x-www-form-urlencoded"})
        body = resp.json()
        self.assertEqual(resp.status, 200)
        self.assertEqual(body["token_type"], "bearer")
        self.assertEqual(body["expires_in"], 3600)
        for key in ("access_token", "scope", "jti"):
            self.assertTrue(body[key])
        self.assertNotEqual(body["access_token"], self.tok)

    def test_bad_credentials_and_requests(self):
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        resp = self.sim.call("POST", "/oauth/token", CREDS.replace("demo-secret", "wrong"), form)
        self.assertEqual(resp.status, 401)
        self.assertIn("error", resp.json())
        resp = self.sim.call("POST", "/oauth/token", CREDS.replace("client_credentials", "password"), form)
        self.assertEqual(resp.status, 400)
        self.assertEqual(self.sim.call("POST", "/oauth/token", "client_id=demo-client", form).status, 400)
        basic = "Basic " + __import__("base64").b64encode(b"demo-client:demo-secret").decode()
        resp = self.sim.call("POST", "/oauth/token", "grant_type=client_credentials",
                             dict(form, Authorization=basic))
        self.assertEqual(resp.status, 200)

    def test_bearer_required(self):
        for token in (None, "unknown-token"):
            resp = self.api("GET", "/test-environments/a1", token=token)
            self.assertEqual(resp.status, 401)
            self.assertEqual(resp.json()["message"], "Authentication error")
        resp = self.sim.call("GET", "/test-environments/a1", headers={"Authorization": "Basic " + self.tok})
        self.assertEqual(resp.status, 401)
        self.assertEqual(self.api("GET", "/test-environments/a1").status, 200)

    def test_token_expiry(self):
        self.sim.configure(token_lifetime=0.4)
        resp = self.sim.call("POST", "/oauth/token", CREDS, {"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(resp.json()["expires_in"], 1)
        tok = resp.json()["access_token"]
        self.assertEqual(self.api("GET", "/test-environments/a2", token=tok).status, 200)
        time.sleep(0.6)
        resp = self.api("GET", "/test-environments/a2", token=tok)
        self.assertEqual(resp.status, 401)
        self.assertEqual(resp.json()["message"], "Authentication error")

    def test_expire_all_tokens(self):
        self.assertEqual(self.sim.control("POST", "/_sim/tokens/expire")["expired"], 1)
        self.assertEqual(self.api("GET", "/test-environments/a3").status, 401)
        self.assertEqual(self.api("GET", "/test-environments/a3", token=self.sim.token()).status, 200)


class TestEnvironments(SimTest):
    """GET /test-environments[/{id}], existence rules, cooldown."""

    def test_environment_fields(self):
        resp = self.api("GET", "/test-environments/env-a")
        env = resp.json()
        self.assertEqual(resp.status, 200)
        self.assertTrue(ENV_FIELDS <= set(env))
        self.assertEqual((env["id"], env["status"], env["environmentType"]), ("env-a", "ACTIVE", "CentralSandbox"))
        self.assertRegex(env["provisionTime"], TIME_RE)
        self.assertIsNone(env["lastRefreshTime"])
        self.assertIsNone(env["nextRefreshTime"])
        self.sim.configure(environments={"dev-a": {"environment_type": "DeveloperSandbox"}})
        self.assertEqual(self.api("GET", "/test-environments/dev-a").json()["environmentType"], "DeveloperSandbox")

    def test_ids_and_existence(self):
        for env_id in (str(uuid.uuid4()), uuid.uuid4().hex, "a_b-C9", "x" * 64):
            self.assertEqual(self.api("GET", "/test-environments/" + env_id).status, 200, env_id)
        for env_id in ("bad!id", "x" * 65, "a%20b"):
            self.assertZuoraError(self.api("GET", "/test-environments/" + env_id), 404)
        self.sim.configure(environments={"gone1": {"exists": False}})
        self.assertEqual(self.api("GET", "/test-environments/gone1").status, 404)
        self.assertEqual(self.create("gone1").status, 404)
        self.assertEqual(self.api("GET", "/test-environments/gone1/jobs").status, 404)

    def test_list_and_strict(self):
        self.api("GET", "/test-environments/seen1")
        self.sim.configure(environments={"conf1": {"cooldown_seconds": 5}})
        body = self.api("GET", "/test-environments").json()
        self.assertEqual(sorted(e["id"] for e in body["result"]), ["conf1", "seen1"])
        self.assertEqual(body["size"], 2)
        self.sim.configure(strict_environments=True)
        self.assertEqual(self.api("GET", "/test-environments/seen1").status, 404)
        self.assertEqual(self.api("GET", "/test-environments/conf1").status, 200)
        self.assertEqual([e["id"] for e in self.api("GET", "/test-environments").json()["result"]], ["conf1"])

    def test_cooldown(self):
        self.sim.configure(environments={"cd1": {"cooldown_seconds": 30, "job_seconds": 0.2},
                                         "free1": {"job_seconds": 0.2}})
        for env in ("cd1", "free1"):
            self.assertEqual(self.create(env).status, 200)
        time.sleep(0.4)
        env = self.api("GET", "/test-environments/cd1").json()
        last, nxt = parse_time(env["lastRefreshTime"]), parse_time(env["nextRefreshTime"])
        self.assertAlmostEqual(last, time.time(), delta=2)
        self.assertAlmostEqual(nxt - last, 30, delta=1.01)
        resp = self.create("cd1")
        self.assertZuoraError(resp, 403, PERIOD_TEXT)
        self.assertIn(PERIOD_TEXT.encode(), resp.body)
        free = self.api("GET", "/test-environments/free1").json()
        self.assertIsNotNone(free["lastRefreshTime"])
        self.assertIsNone(free["nextRefreshTime"])
        self.assertEqual(self.create("free1").status, 200)

    def test_initial_last_refresh(self):
        self.sim.configure(environments={"cd2": {"cooldown_seconds": 100, "last_refresh_ago": 10}})
        env = self.api("GET", "/test-environments/cd2").json()
        self.assertAlmostEqual(parse_time(env["nextRefreshTime"]), time.time() + 90, delta=2)
        self.assertZuoraError(self.create("cd2"), 403, PERIOD_TEXT)


class TestJobs(SimTest):
    """Create, poll, list, cancel; lifecycle and its variations."""

    def test_create_answer(self):
        resp = self.create("job-a", headers={"Zuora-Track-Id": "c1"})
        self.assertEqual(resp.status, 200)
        job = resp.json()
        self.assertEqual(set(job), JOB_FIELDS)
        self.assertRegex(job["id"], HEX32_RE)
        self.assertEqual((job["status"], job["progressPercentage"], job["jobType"], job["testEnvironmentId"]),
                         ("NEW", 0, "REFRESH", "job-a"))
        for key in ("createTime", "updateTime", "estimatedCompletionTime"):
            self.assertRegex(job[key], TIME_RE)
        self.assertRegex(job["createdById"], HEX32_RE)
        self.assertIsNone(job["jobEndTime"])
        self.assertIsNone(job["scheduledRefreshTime"])
        self.assertEqual(resp.headers["Location"], "/test-environments/job-a/jobs/" + job["id"])
        self.assertEqual(self.get_job("job-a", job["id"])["id"], job["id"])

    def test_lifecycle(self):
        job = self.create("life1").json()
        seen, progress, order = [], [], ["NEW", "QUEUED", "IN_PROGRESS", "COMPLETED"]
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            view = self.get_job("life1", job["id"])
            seen.append(view["status"])
            progress.append(view["progressPercentage"])
            if view["status"] == "COMPLETED":
                break
            time.sleep(0.03)
        self.assertEqual(seen[-1], "COMPLETED")
        self.assertEqual([s for s in seen if s not in order], [])
        self.assertEqual([order.index(s) for s in seen], sorted(order.index(s) for s in seen))
        self.assertEqual(progress, sorted(progress))
        self.assertTrue(any(0 < p < 100 for s, p in zip(seen, progress) if s == "IN_PROGRESS"), progress)
        self.assertEqual(progress[-1], 100)
        self.assertRegex(view["jobEndTime"], TIME_RE)
        self.assertRegex(view["jobStartTime"], TIME_RE)
        self.assertIsNotNone(self.api("GET", "/test-environments/life1").json()["lastRefreshTime"])
        sim_job = self.sim.control("GET", "/_sim/jobs")[0]
        self.assertEqual((sim_job["id"], sim_job["env_id"], sim_job["polls"]), (job["id"], "life1", len(seen)))

    def test_final_statuses(self):
        finals = {"fin-failed": "FAILED", "fin-cancelled": "CANCELLED", "fin-canceled": "CANCELED",
                  "fin-never": "never", "fin-weird": "WEIRD_STATE"}
        envs = {env: {"final_status": final, "job_seconds": 0.3} for env, final in finals.items()}
        envs["fin-noend"] = {"final_status": "WEIRD_STATE", "job_seconds": 0.3, "set_end_time": False}
        self.sim.configure(environments=envs)
        ids = {env: self.create(env).json()["id"] for env in envs}
        time.sleep(0.5)
        for env, final in finals.items():
            view = self.get_job(env, ids[env])
            if final == "never":
                self.assertEqual((view["status"], view["progressPercentage"], view["jobEndTime"]),
                                 ("IN_PROGRESS", 99, None))
                self.assertIsNone(view["estimatedCompletionTime"])
                self.assertEqual(self.create(env).status, 409)
            else:
                self.assertEqual(view["status"], final)
                self.assertRegex(view["jobEndTime"], TIME_RE)
                self.assertIsNone(self.api("GET", "/test-environments/" + env).json()["lastRefreshTime"])
        view = self.get_job("fin-noend", ids["fin-noend"])
        self.assertEqual((view["status"], view["jobEndTime"]), ("WEIRD_STATE", None))

    def test_conflict_while_running(self):
        first = self.create("busy1").json()
        resp = self.create("busy1")
        self.assertZuoraError(resp, 409, "already in progress")
        self.assertIn(first["id"], resp.body.decode())

    def test_validation(self):
        for body in ("", "{", "[]", "{}", '{"jobType":"OTHER"}', '{"jobType":"refresh"}',
                     '{"jobType":"REFRESH","scheduledRefreshTime":"tomorrow"}',
                     '{"jobType":"REFRESH","scheduledRefreshTime":12345}',
                     '{"jobType":"REFRESH","scheduledRefreshTime":"2030-01-01T00:00:00"}'):
            body_json = self.assertZuoraError(self.create("val1", body), 400)
            self.assertEqual(body_json["reasons"][0]["code"], 50000040, body)
        self.assertEqual(self.sim.control("GET", "/_sim/jobs"), [])

    def test_scheduled_refresh(self):
        self.sim.configure(environments={"sch1": {"job_seconds": 0.4}, "sch2": {"job_seconds": 0.2}})
        when = time.time() + 1.5
        job = self.create("sch1", {"jobType": "REFRESH", "scheduledRefreshTime": rfc3339(when, True)}).json()
        self.assertEqual(job["scheduledRefreshTime"], rfc3339(when))
        past = self.create("sch2", {"jobType": "REFRESH", "scheduledRefreshTime": "2001-01-01T00:00:00+02:00"}).json()
        self.assertEqual(past["scheduledRefreshTime"], "2000-12-31T22:00:00Z")
        time.sleep(0.7)
        view = self.get_job("sch1", job["id"])
        self.assertEqual((view["status"], view["progressPercentage"], view["jobStartTime"]), ("QUEUED", 0, None))
        self.assertEqual(self.get_job("sch2", past["id"])["status"], "COMPLETED")
        time.sleep(max(0, when + 0.6 - time.time()))
        view = self.get_job("sch1", job["id"])
        self.assertEqual(view["status"], "COMPLETED")
        self.assertGreaterEqual(parse_time(view["jobStartTime"]), parse_time(job["scheduledRefreshTime"]))

    def test_list_jobs_and_shapes(self):
        self.sim.configure(environments={"list1": {"job_seconds": 0.1}})
        first = self.create("list1").json()["id"]
        time.sleep(0.2)
        second = self.create("list1").json()["id"]
        body = self.api("GET", "/test-environments/list1/jobs").json()
        self.assertEqual([j["id"] for j in body], [second, first])
        self.assertEqual(body[1]["status"], "COMPLETED")
        for shape in ("result", "data", "jobs"):
            self.sim.configure(list_shape=shape)
            body = self.api("GET", "/test-environments/list1/jobs").json()
            self.assertEqual([j["id"] for j in body[shape]], [second, first])
        self.assertEqual(self.api("GET", "/test-environments/other1/jobs").json()["jobs"], [])

    def test_unknown_jobs(self):
        job = self.create("own1").json()["id"]
        self.assertZuoraError(self.api("GET", "/test-environments/own1/jobs/" + "0" * 32), 404)
        self.assertEqual(self.api("GET", "/test-environments/own2/jobs/" + job).status, 404)
        resp = self.api("POST", "/test-environments/own1/jobs/%s/actions" % ("0" * 32), {"jobAction": "CANCEL"})
        self.assertEqual(resp.status, 404)

    def test_cancel(self):
        self.sim.configure(environments={"can1": {"job_seconds": 10}, "can2": {"job_seconds": 0.2,
                                                                               "final_status": "never"}})
        job = self.create("can1").json()["id"]
        path = "/test-environments/can1/jobs/%s/actions" % job
        self.assertZuoraError(self.api("POST", path, {"jobAction": "DELETE"}), 400)
        resp = self.api("POST", path, {"jobAction": "CANCEL"})
        self.assertEqual(resp.status, 200)
        self.assertEqual(resp.json()["status"], "CANCELED")
        self.assertRegex(resp.json()["jobEndTime"], TIME_RE)
        self.assertEqual(self.get_job("can1", job)["status"], "CANCELED")
        self.assertZuoraError(self.api("POST", path, {"jobAction": "CANCEL"}), 400, "no longer be canceled")
        self.assertEqual(self.create("can1").status, 200)  # a canceled job does not block
        late = self.create("can2").json()["id"]
        time.sleep(0.3)
        self.assertEqual(self.get_job("can2", late)["progressPercentage"], 99)
        resp = self.api("POST", "/test-environments/can2/jobs/%s/actions" % late, {"jobAction": "CANCEL"})
        self.assertZuoraError(resp, 400, "The refresh can no longer be canceled")

    def test_location_modes(self):
        self.sim.configure(location_mode="absolute")
        resp = self.create("loc1")
        self.assertEqual(resp.headers["Location"],
                         "http://127.0.0.1:%d/test-environments/loc1/jobs/%s" % (self.sim.port, resp.json()["id"]))
        self.sim.configure(location_mode="missing")
        resp = self.create("loc2")
        self.assertEqual(resp.status, 200)
        self.assertIsNone(resp.headers["Location"])
        self.sim.configure(location_mode="foreign", foreign_base="http://127.0.0.1:5999/")
        resp = self.create("loc3")
        self.assertEqual(resp.headers["Location"],
                         "http://127.0.0.1:5999/test-environments/loc3/jobs/" + resp.json()["id"])

    def test_create_status_and_idempotency(self):
        self.sim.configure(create_status=201)
        self.assertEqual(self.create("idem0").status, 201)
        key = {"Idempotency-Key": "k-1"}
        first = self.create("idem1", headers=key).json()["id"]
        self.assertEqual(self.create("idem1", headers=key).status, 409)  # not honoured by default
        self.sim.configure(idempotency=True)
        again = self.create("idem1", headers=key)
        self.assertEqual(again.status, 409)  # the key was not remembered while the switch was off
        key2 = {"Idempotency-Key": "k-2"}
        first = self.create("idem2", headers=key2).json()["id"]
        again = self.create("idem2", headers=key2)
        self.assertEqual((again.status, again.json()["id"]), (201, first))
        self.assertEqual(len([j for j in self.sim.control("GET", "/_sim/jobs") if j["env_id"] == "idem2"]), 1)


class TestClockAndHandJobs(SimTest):
    """Zuora's own clock (clock_offset) and jobs made elsewhere (POST /_sim/jobs)."""

    def test_clock_offset_shifts_every_time_written(self):
        self.sim.configure(clock_offset=-300)
        before = time.time()
        resp = self.create("clk1")
        job = resp.json()
        created = parse_time(job["createTime"])
        self.assertAlmostEqual(created, before - 300, delta=2)
        date = email.utils.parsedate_to_datetime(resp.headers["Date"]).timestamp()
        self.assertAlmostEqual(date, before - 300, delta=2)
        # Read by Zuora's clock too: a scheduledRefreshTime 60 s after Zuora's now is 60 s from now.
        self.sim.configure(clock_offset=120)
        later = self.create("clk2", body={"jobType": "REFRESH", "scheduledRefreshTime": rfc3339(time.time() + 180)})
        self.assertEqual(later.status, 200, later.body)
        self.assertAlmostEqual(parse_time(later.json()["scheduledRefreshTime"]), time.time() + 180, delta=2)
        self.assertAlmostEqual(parse_time(later.json()["createTime"]), time.time() + 120, delta=2)

    def test_hand_jobs_backdated(self):
        env = "hand1"
        for status, created, ended in (("CANCELED", 200, 150), ("FAILED", 190, 120), ("COMPLETED", 180, 100)):
            view = self.sim.control("POST", "/_sim/jobs", {"env_id": env, "status": status,
                                                          "created_ago": created, "ended_ago": ended})
            self.assertEqual(view["status"], status)
            self.assertAlmostEqual(parse_time(view["createTime"]), time.time() - created, delta=2)
            self.assertAlmostEqual(parse_time(view["jobEndTime"]), time.time() - ended, delta=2)
        listed = self.api("GET", "/test-environments/%s/jobs" % env).json()
        listed = listed if isinstance(listed, list) else listed.get("result", [])
        self.assertEqual([j["status"] for j in listed], ["COMPLETED", "FAILED", "CANCELED"])
        # A job running since long ago blocks a create (409) and empties nextRefreshTime.
        self.sim.configure(environments={env: {"cooldown_seconds": 10}})
        self.assertIsNotNone(self.api("GET", "/test-environments/" + env).json()["nextRefreshTime"])
        run = self.sim.control("POST", "/_sim/jobs", {"env_id": env, "status": "IN_PROGRESS", "created_ago": 3600})
        self.assertEqual(run["status"], "IN_PROGRESS")
        self.assertIsNone(run["jobEndTime"])
        info = self.api("GET", "/test-environments/" + env).json()
        self.assertIsNone(info["nextRefreshTime"])
        self.assertIsNotNone(info["lastRefreshTime"])
        self.assertEqual(self.create(env).status, 409)
        with self.assertRaises(AssertionError):
            self.sim.control("POST", "/_sim/jobs", {"env_id": env, "status": "WEIRD"})


class TestNotifications(SimTest):
    """E-mail notification recipients: /test-environments/{id}/notifications[/{notificationId}]."""

    def notify(self, env, body=None, **kw):
        """POST a recipient."""
        return self.api("POST", "/test-environments/%s/notifications" % env,
                        {"address": "john.smith@example.com", "name": "John Smith"} if body is None else body,
                        **kw)

    def listed(self, env):
        """GET the recipients of an environment (bare list, the default list_shape)."""
        resp = self.api("GET", "/test-environments/%s/notifications" % env)
        self.assertEqual(resp.status, 200, resp.body)
        return resp.json()

    def test_create_and_get(self):
        resp = self.notify("nt1", headers={"Zuora-Track-Id": "n-1"})
        self.assertEqual(resp.status, 200, resp.body)
        rec = resp.json()
        self.assertEqual(set(rec), NOTIFICATION_FIELDS)
        self.assertRegex(rec["id"], HEX32_RE)
        self.assertEqual((rec["address"], rec["name"], rec["testEnvironmentId"]),
                         ("john.smith@example.com", "John Smith", "nt1"))
        self.assertEqual(resp.headers["Location"], "/test-environments/nt1/notifications/" + rec["id"])
        self.assertEqual(resp.headers["Zuora-Track-Id"], "n-1")
        got = self.api("GET", resp.headers["Location"])
        self.assertEqual((got.status, got.json()), (200, rec))
        noname = self.notify("nt1", {"address": "ops@example.co.uk"}).json()
        self.assertIsNone(noname["name"])
        self.assertNotEqual(noname["id"], rec["id"])
        self.sim.configure(create_status=201, location_mode="absolute")
        resp = self.notify("nt1", {"address": "x@example.com", "name": "X"})
        self.assertEqual(resp.status, 201)
        self.assertEqual(resp.headers["Location"], "http://127.0.0.1:%d/test-environments/nt1/notifications/%s"
                         % (self.sim.port, resp.json()["id"]))
        self.sim.configure(location_mode="missing")
        self.assertIsNone(self.notify("nt1").headers["Location"])

    def test_list_and_shapes(self):
        self.assertEqual(self.listed("nl1"), [])
        first = self.notify("nl1", {"address": "a@example.com", "name": "A"}).json()
        second = self.notify("nl1", {"address": "b@example.com"}).json()
        self.notify("nl2", {"address": "c@example.com"})
        self.assertEqual(self.listed("nl1"), [first, second])  # oldest first, this environment only
        for shape in ("result", "data", "jobs"):  # the job list's envelope (list_shape)
            self.sim.configure(list_shape=shape)
            body = self.api("GET", "/test-environments/nl1/notifications").json()
            self.assertEqual(body, {shape: [first, second], "size": 2})
        self.assertEqual(self.api("GET", "/test-environments/nl3/notifications").json(), {"jobs": [], "size": 0})

    def test_patch_and_delete(self):
        rec = self.notify("np1").json()
        path = "/test-environments/np1/notifications/" + rec["id"]
        resp = self.api("PATCH", path, {"name": "J. Smith"})  # partial: the address stays
        self.assertEqual((resp.status, resp.json()), (200, dict(rec, name="J. Smith")))
        resp = self.api("PATCH", path, {"address": "js@example.org"})
        self.assertEqual(resp.json(), dict(rec, name="J. Smith", address="js@example.org"))
        resp = self.api("PATCH", path, {"address": "john@example.com", "name": None})
        self.assertEqual(resp.json(), dict(rec, name=None, address="john@example.com"))
        self.assertEqual(self.api("PATCH", path, {}).json(), resp.json())
        self.assertEqual(self.api("GET", path).json(), resp.json())
        other = self.notify("np1", {"address": "stays@example.com"}).json()
        resp = self.api("DELETE", path)
        self.assertEqual((resp.status, resp.json()), (200, dict(rec, name=None, address="john@example.com")))
        self.assertEqual(self.listed("np1"), [other])
        for method, body in (("GET", None), ("PATCH", {"name": "again"}), ("DELETE", None)):
            self.assertZuoraError(self.api(method, path, body), 404, "not found")

    def test_bad_bodies(self):
        for body in ({}, {"name": "No Address"}, {"address": None}, {"address": ""}, {"address": "john"},
                     {"address": "john@"}, {"address": "@example.com"}, {"address": "john@example"},
                     {"address": "a b@example.com"}, {"address": "a@b@example.com"}, {"address": "a@example..com"},
                     {"address": " a@example.com"}, {"address": 42}, {"address": ["a@example.com"]},
                     {"address": "a@example.com", "name": 7}, {"address": "a" * 250 + "@example.com"},
                     [{"address": "a@example.com"}], "null", "{not json", "", b"\xff\xfe{"):
            resp = self.notify("nb1", body)
            self.assertZuoraError(resp, 400)
        self.assertIn("address", self.assertZuoraError(self.notify("nb1", {"name": "n"}), 400)["reasons"][0]["message"])
        self.assertZuoraError(self.notify("nb1", "{not json"), 400, "Malformed JSON")
        resp = self.api("POST", "/test-environments/nb1/notifications", b"not gzip", {"Content-Encoding": "gzip"})
        self.assertZuoraError(resp, 400)
        self.assertEqual(self.sim.control("GET", "/_sim/notifications"), [])
        rec = self.notify("nb1").json()
        path = "/test-environments/nb1/notifications/" + rec["id"]
        for body in ({"address": "nope"}, {"address": None}, {"name": 1}, [], "{", ""):
            self.assertZuoraError(self.api("PATCH", path, body), 400)
        self.assertEqual(self.api("GET", path).json(), rec)  # unchanged

    def test_unknown_notifications_and_environments(self):
        rec = self.notify("nu1").json()
        for method, body in (("GET", None), ("PATCH", {"name": "x"}), ("DELETE", None)):
            self.assertZuoraError(self.api(method, "/test-environments/nu1/notifications/" + "0" * 32, body), 404)
            # another environment's recipient is unknown here
            self.assertZuoraError(self.api(method, "/test-environments/nu2/notifications/" + rec["id"], body), 404)
        self.sim.configure(environments={"gone2": {"exists": False}})
        for env in ("gone2", "bad!id"):
            self.assertZuoraError(self.api("GET", "/test-environments/%s/notifications" % env), 404)
            self.assertZuoraError(self.notify(env), 404)
            self.assertZuoraError(self.notify(env, "{not json"), 404)  # the environment first
            for method in ("GET", "PATCH", "DELETE"):
                self.assertZuoraError(self.api(method, "/test-environments/%s/notifications/%s" % (env, rec["id"]),
                                               {"name": "x"}), 404)
        self.sim.configure(strict_environments=True, environments={"nu3": {}})
        self.assertEqual(self.api("GET", "/test-environments/nu1/notifications").status, 404)
        self.assertEqual(self.api("GET", "/test-environments/nu3/notifications").status, 200)
        self.assertEqual(self.api("PUT", "/test-environments/nu3/notifications/" + rec["id"]).status, 405)
        self.assertEqual(self.api("DELETE", "/test-environments/nu3/notifications").status, 405)
        self.assertEqual(self.api("GET", "/test-environments/nu3/notifications/x/y").status, 404)
        self.assertEqual(len(self.sim.control("GET", "/_sim/notifications")), 1)

    def test_bearer_required(self):
        rec = self.notify("na1").json()
        path = "/test-environments/na1/notifications"
        one = path + "/" + rec["id"]
        calls = (("GET", path, None), ("POST", path, {"address": "evil@example.com"}), ("GET", one, None),
                 ("PATCH", one, {"name": "evil"}), ("DELETE", one, None))
        self.sim.control("POST", "/_sim/tokens/expire")
        for token in (None, "unknown-token", self.tok):
            for method, target, body in calls:
                resp = self.api(method, target, body, token=token)
                self.assertEqual(resp.status, 401, (token, method, target))
                self.assertEqual(resp.json()["message"], "Authentication error")
        recs = self.sim.control("GET", "/_sim/notifications")
        self.assertEqual([{k: n[k] for k in NOTIFICATION_FIELDS} for n in recs], [rec])  # no POST, PATCH or DELETE
        self.assertEqual(recs[0]["updated"], recs[0]["created"])
        self.assertEqual(self.api("GET", path, token=self.sim.token()).json(), [rec])

    def test_faults(self):
        self.sim.fault({"match": {"method": "POST", "path": "/nf1/notifications$"}, "status": 500},
                       {"match": {"method": "GET", "path": "/notifications$"}, "status": 429, "retry_after": 2},
                       {"match": {"method": "DELETE", "path": "/notifications/"}, "action": "commit_then_fail"},
                       {"match": {"method": "POST", "path": "/nf2/notifications$"}, "action": "commit_then_fail",
                        "variant": "reset"})
        self.assertZuoraError(self.notify("nf1"), 500)
        self.assertEqual(self.sim.control("GET", "/_sim/notifications"), [])  # the canned 500 did nothing
        resp = self.api("GET", "/test-environments/nf1/notifications")
        self.assertEqual((resp.status, resp.headers["Retry-After"], resp.json()["message"]),
                         (429, "2", "Too Many Requests"))
        self.assertEqual(self.listed("nf1"), [])  # times: 1
        rec = self.notify("nf1").json()
        self.assertZuoraError(self.api("DELETE", "/test-environments/nf1/notifications/" + rec["id"]), 500)
        self.assertEqual(self.listed("nf1"), [])  # the DELETE was done all the same
        with self.assertRaises(ConnectionResetError):
            self.notify("nf2")
        self.assertEqual([n["address"] for n in self.sim.control("GET", "/_sim/notifications?env_id=nf2")],
                         ["john.smith@example.com"])
        self.sim.fault({"match": {"path": "/notifications/"}, "action": "slow", "delay": 0.4})
        resp = self.api("GET", "/test-environments/nf1/notifications/" + "0" * 32)
        self.assertEqual(resp.status, 404)
        self.assertGreaterEqual(resp.elapsed, 0.35)

    def test_request_log(self):
        a = self.notify("nr1").json()["id"]
        b = self.notify("nr1", {"address": "b@example.com"}).json()["id"]
        self.notify("nr1", {"address": "bad"})
        self.api("PATCH", "/test-environments/nr1/notifications/" + a, {"name": "A"})
        for nid in (a, b, b):
            self.api("DELETE", "/test-environments/nr1/notifications/" + nid)
        posts = self.sim.control("GET", "/_sim/requests?method=POST&path=/notifications$")
        self.assertEqual([(r["status"], json.loads(r["body"]).get("address")) for r in posts],
                         [(200, "john.smith@example.com"), (200, "b@example.com"), (400, "bad")])
        deletes = self.sim.control("GET", "/_sim/requests?method=DELETE&path=/notifications/")
        self.assertEqual([(r["path"].rsplit("/", 1)[1], r["status"]) for r in deletes], [(a, 200), (b, 200), (b, 404)])
        self.assertEqual(len(self.sim.control("GET", "/_sim/requests?method=PATCH&path=/notifications/")), 1)
        line = r"DELETE /test-environments/nr1/notifications/%s 404" % b
        deadline = time.monotonic() + 3  # the log line is written once the answer has left
        while time.monotonic() < deadline and not re.search(line, self.sim.log_text()):
            time.sleep(0.05)
        self.assertRegex(self.sim.log_text(), line)

    def test_sim_inspection_and_by_hand(self):
        before = time.time()
        api = self.notify("ns1").json()
        hand = self.sim.control("POST", "/_sim/notifications", {"env_id": "ns1", "address": "hand@example.com",
                                                                  "name": "By Hand"})
        other = self.sim.control("POST", "/_sim/notifications", {"env_id": "ns2", "address": "o@example.com"})
        self.assertRegex(hand["id"], HEX32_RE)
        self.assertEqual({k: hand[k] for k in NOTIFICATION_FIELDS},
                         {"id": hand["id"], "address": "hand@example.com", "name": "By Hand", "testEnvironmentId": "ns1"})
        self.assertIsNone(other["name"])
        everything = self.sim.control("GET", "/_sim/notifications")
        self.assertEqual([(n["id"], n["env_id"], n["by_hand"]) for n in everything],
                         [(api["id"], "ns1", False), (hand["id"], "ns1", True), (other["id"], "ns2", True)])
        self.assertEqual(set(everything[0]), NOTIFICATION_FIELDS | {"env_id", "created", "updated", "by_hand"})
        self.assertAlmostEqual(everything[0]["created"], before, delta=5)
        self.assertEqual([n["id"] for n in self.sim.control("GET", "/_sim/notifications?env_id=ns2")], [other["id"]])
        self.assertEqual(self.sim.control("GET", "/_sim/notifications?env_id=none"), [])
        # A recipient added by hand is an ordinary one for the API, and was never a recorded request.
        self.assertEqual([n["id"] for n in self.listed("ns1")], [api["id"], hand["id"]])
        posts = self.sim.control("GET", "/_sim/requests?method=POST&path=/notifications")
        self.assertEqual([r["path"] for r in posts], ["/test-environments/ns1/notifications"])
        self.api("PATCH", "/test-environments/ns1/notifications/" + hand["id"], {"name": "Renamed"})
        view = self.sim.control("GET", "/_sim/notifications?env_id=ns1")[1]
        self.assertEqual(view["name"], "Renamed")
        self.assertGreaterEqual(view["updated"], view["created"])
        self.sim.configure(environments={"gone3": {"exists": False}})
        for bad, status in (({"address": "a@example.com"}, 400), ({"env_id": "ns1", "address": "nope"}, 400),
                            ({"env_id": "ns1"}, 400), ([1], 400), ("{", 400),
                            ({"env_id": "gone3", "address": "a@example.com"}, 404)):
            self.assertEqual(self.sim.call("POST", "/_sim/notifications", bad).status, status, bad)
        self.assertEqual(len(self.sim.control("GET", "/_sim/notifications")), 3)
        self.sim.control("POST", "/_sim/reset")
        self.assertEqual(self.sim.control("GET", "/_sim/notifications"), [])


class TestControl(SimTest):
    """/_sim/ endpoints."""

    def test_request_recording(self):
        conn = self.sim.conn()
        conn.putrequest("POST", "/test-environments/rec1/jobs?x=1", skip_accept_encoding=True)
        conn.putheader("Authorization", "Bearer " + self.tok)
        conn.putheader("X-CaSe-Test", "kept")
        conn.putheader("X-Multi", "one")
        conn.putheader("x-multi", "two")
        body = b'{"jobType":"REFRESH"}'
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        self.assertEqual(conn.getresponse().read() != b"", True)
        port = conn.sock.getsockname()[1]
        conn.close()
        before = time.time()
        recs = self.sim.control("GET", "/_sim/requests")
        self.assertEqual([r["path"] for r in recs], ["/oauth/token", "/test-environments/rec1/jobs"])
        rec = recs[1]
        self.assertEqual(rec["seq"], recs[0]["seq"] + 1)
        self.assertEqual((rec["method"], rec["query"], rec["body"], rec["client_port"], rec["status"]),
                         ("POST", "x=1", body.decode(), port, 200))
        self.assertIsInstance(rec["time"], float)
        self.assertAlmostEqual(rec["time"], before, delta=5)
        self.assertEqual(rec["headers"]["X-CaSe-Test"], "kept")
        self.assertEqual(rec["headers"]["X-Multi"], ["one", "two"])
        self.assertIn(["x-multi", "two"], rec["header_list"])
        self.assertEqual(self.sim.control("GET", "/_sim/requests?since=%d" % rec["seq"]), [])
        self.assertEqual(len(self.sim.control("GET", "/_sim/requests?method=POST&path=rec1")), 1)
        self.assertEqual(self.sim.control("POST", "/_sim/requests/clear")["cleared"], 2)
        self.assertEqual(self.sim.control("GET", "/_sim/requests"), [])

    def test_sim_jobs(self):
        a = self.create("sj1").json()["id"]
        b = self.create("sj2").json()["id"]
        for _ in range(3):
            self.get_job("sj2", b)
        jobs = self.sim.control("GET", "/_sim/jobs")
        self.assertEqual([(j["id"], j["env_id"], j["polls"], j["final_status"]) for j in jobs],
                         [(a, "sj1", 0, "COMPLETED"), (b, "sj2", 3, "COMPLETED")])
        self.assertRegex(jobs[0]["createTime"], TIME_RE)

    def test_config(self):
        config = self.sim.control("GET", "/_sim/config")
        self.assertEqual((config["location_mode"], config["list_shape"], config["job_seconds"]),
                         ("relative", "bare", 1.0))
        for bad in ({"nope": 1}, {"job_seconds": -1}, {"location_mode": "x"}, {"environments": {"a!": {}}},
                    {"environments": {"e": {"cooldown": 1}}}, {"gzip_always": "yes"}, [1]):
            self.assertEqual(self.sim.call("POST", "/_sim/config", bad).status, 400, bad)
        config = self.sim.configure(job_seconds=0.5, token_lifetime=60, gzip_always=True,
                                    environments={"e1": {"cooldown_seconds": 3, "final_status": "FAILED",
                                                         "job_seconds": 0.1, "exists": True}},
                                    faults=[{"action": "not_json", "match": {"path": "e1$"}}])
        self.assertEqual((config["job_seconds"], config["token_lifetime"], config["gzip_always"]), (0.5, 60, True))
        self.assertEqual(config["environments"]["e1"]["final_status"], "FAILED")
        self.assertEqual(len(self.sim.control("GET", "/_sim/faults")), 1)
        self.sim.control("POST", "/_sim/reset")
        self.assertEqual(self.sim.control("GET", "/_sim/config")["job_seconds"], 1.0)
        self.assertEqual(self.sim.control("GET", "/_sim/faults"), [])

    def test_fault_list_management(self):
        rules = self.sim.fault({"match": {"method": "GET", "path": "^/x"}, "action": "empty_200", "times": 2})
        self.assertEqual((rules[0]["action"], rules[0]["times"], rules[0]["applied"]), ("empty_200", 2, 0))
        for bad in ([{"action": "explode"}], [{"action": "status", "status": 99}], [{"match": {"path": "("}, "action": "hang"}],
                    [{"action": "slow", "delay": "x"}], [{"action": "drip", "color": 1}], {"times": "x"},
                    [{"action": "wrong_shape", "variant": "x"}], [{"action": "commit_then_fail", "variant": "x"}]):
            self.assertEqual(self.sim.call("POST", "/_sim/faults", bad).status, 400, bad)
        self.assertEqual(len(self.sim.control("GET", "/_sim/faults")), 1)
        self.assertEqual(self.sim.control("DELETE", "/_sim/faults")["cleared"], 1)
        self.assertEqual(self.sim.control("GET", "/_sim/faults"), [])


class TestFaults(SimTest):
    """Every fault action, checked at the socket level."""

    def test_status_and_counters(self):
        self.sim.fault({"match": {"method": "GET", "path": "/st1$"}, "action": "status", "status": 429,
                        "retry_after": 2, "headers": {"ratelimit-reset": "2"}, "times": 2})
        for _ in range(2):
            resp = self.api("GET", "/test-environments/st1")
            self.assertEqual((resp.status, resp.headers["Retry-After"], resp.headers["ratelimit-reset"]),
                             (429, "2", "2"))
        self.assertEqual(self.api("GET", "/test-environments/st1").status, 200)
        self.assertEqual(self.create("st1").status, 200)  # POST is not matched
        self.sim.fault({"match": {"path": "/st2$"}, "status": 429, "retry_after_date": 30})
        resp = self.api("GET", "/test-environments/st2")
        date = email.utils.parsedate_to_datetime(resp.headers["Retry-After"]).timestamp()
        self.assertAlmostEqual(date, time.time() + 30, delta=3)
        self.sim.fault({"match": {"path": "/st3$"}, "action": "status", "status": 502, "after": 1, "times": -1})
        self.assertEqual([self.api("GET", "/test-environments/st3").status for _ in range(4)], [200, 502, 502, 502])
        self.sim.fault({"match": {"path": "/st4$"}, "action": {"name": "status", "status": 409, "body": "plain"}})
        resp = self.api("GET", "/test-environments/st4")
        self.assertEqual((resp.status, resp.body, resp.headers["Content-Type"]),
                         (409, b"plain", "text/plain; charset=utf-8"))
        rules = {r["rule"]["match"]["path"]: r for r in self.sim.control("GET", "/_sim/faults")}
        self.assertEqual((rules["/st1$"]["seen"], rules["/st1$"]["applied"]), (3, 2))
        self.assertEqual((rules["/st3$"]["seen"], rules["/st3$"]["applied"]), (4, 3))

    def test_token_endpoint_failure(self):
        self.sim.fault({"match": {"path": "^/oauth/token$"}, "action": "status", "status": 500, "times": 2})
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        codes = [self.sim.call("POST", "/oauth/token", CREDS, form).status for _ in range(3)]
        self.assertEqual(codes, [500, 500, 200])

    def test_period_rejection_and_permission_denied(self):
        self.sim.fault({"match": {"method": "POST"}, "action": "period_rejection"},
                       {"match": {"method": "POST"}, "action": "permission_denied"})
        self.assertZuoraError(self.create("pr1"), 403, PERIOD_TEXT)
        body = self.assertZuoraError(self.create("pr1"), 403)
        self.assertIn("permission", body["reasons"][0]["message"])
        self.assertNotIn(PERIOD_TEXT, json.dumps(body))
        self.assertEqual(self.sim.control("GET", "/_sim/jobs"), [])

    def test_slow(self):
        self.sim.fault({"match": {"path": "/slow1$"}, "action": "slow", "delay": 0.5})
        resp = self.api("GET", "/test-environments/slow1")
        self.assertEqual(resp.status, 200)
        self.assertGreaterEqual(resp.elapsed, 0.45)

    def test_hang(self):
        self.sim.fault({"match": {"path": "/hang1$"}, "action": "hang"})
        with self.assertRaises((socket.timeout, TimeoutError)):
            self.api("GET", "/test-environments/hang1", timeout=0.7)
        self.assertEqual(self.api("GET", "/test-environments/hang1").status, 200)
        recs = self.sim.control("GET", "/_sim/requests?path=hang1")
        self.assertEqual([r["status"] for r in recs], [None, 200])

    def test_drip(self):
        self.sim.fault({"match": {"path": "/drip1$"}, "action": "drip", "bytes_per_second": 400})
        resp = self.api("GET", "/test-environments/drip1")
        self.assertEqual(resp.json()["id"], "drip1")
        self.assertGreaterEqual(resp.elapsed, 0.8 * len(resp.body) / 400)
        self.sim.fault({"match": {"path": "/drip2$"}, "action": "drip", "bytes_per_second": 1})
        sock = socket.create_connection((self.sim.host, self.sim.port), timeout=0.2)
        sock.sendall(raw_get("/test-environments/drip2", self.tok))
        data, deadline = b"", time.monotonic() + 1.5
        while time.monotonic() < deadline:
            try:
                data += sock.recv(4096)
            except socket.timeout:
                pass
        sock.close()
        status, headers, body = split_head(data)
        self.assertEqual(status, 200)
        self.assertGreater(int(headers["content-length"]), 100)
        self.assertTrue(1 <= len(body) <= 3, body)

    def test_reset_mid_body(self):
        self.sim.fault({"match": {"path": "/rst1$"}, "action": "reset_mid_body", "times": 2})
        data, error = self.sim.raw(raw_get("/test-environments/rst1", self.tok))
        self.assertIsInstance(error, ConnectionResetError)
        status, headers, body = split_head(data)
        self.assertEqual(status, 200)
        self.assertTrue(0 < len(body) < int(headers["content-length"]))
        with self.assertRaises((ConnectionResetError, http.client.IncompleteRead)):
            self.api("GET", "/test-environments/rst1")

    def test_truncated_json(self):
        self.sim.fault({"match": {"path": "/tr1$"}, "action": "truncated_json", "times": 2})
        data, error = self.sim.raw(raw_get("/test-environments/tr1", self.tok))
        self.assertIsNone(error)  # a clean FIN, not a reset
        status, headers, body = split_head(data)
        self.assertEqual(len(body), int(headers["content-length"]) // 2)
        with self.assertRaises(http.client.IncompleteRead):
            self.api("GET", "/test-environments/tr1")

    def test_truncated_json_short(self):
        self.sim.fault({"match": {"path": "/trs1$"}, "action": "truncated_json_short"})
        conn = self.sim.conn()
        resp = self.api("GET", "/test-environments/trs1", conn=conn)
        self.assertEqual(resp.status, 200)
        self.assertEqual(int(resp.headers["Content-Length"]), len(resp.body))
        self.assertTrue(resp.body.startswith(b'{"id":"trs1"'))
        with self.assertRaises(ValueError):
            resp.json()
        self.assertEqual(self.api("GET", "/test-environments/trs1", conn=conn).json()["id"], "trs1")
        conn.close()

    def test_not_json_and_empty_200(self):
        self.sim.fault({"match": {"path": "/nj1$"}, "action": "not_json"},
                       {"match": {"path": "/em1$"}, "action": "empty_200"})
        resp = self.api("GET", "/test-environments/nj1")
        self.assertEqual(resp.status, 200)
        self.assertTrue(resp.headers["Content-Type"].startswith("text/html"))
        self.assertIn(b"<html>", resp.body)
        resp = self.api("GET", "/test-environments/em1")
        self.assertEqual((resp.status, resp.headers["Content-Length"], resp.body), (200, "0", b""))

    def test_huge_body(self):
        self.sim.fault({"match": {"path": "/huge1$"}, "action": "huge_body"})
        resp = self.api("GET", "/test-environments/huge1")
        self.assertGreaterEqual(len(resp.body), 2 * 1024 * 1024)
        self.assertEqual(resp.json()["id"], "huge1")

    def test_wrong_shape(self):
        job = self.create("ws1").json()["id"]
        path = "/test-environments/ws1/jobs/" + job
        for variant in ("status_number", "id_missing", "array_instead_of_object"):
            self.sim.fault({"match": {"path": path + "$"}, "action": "wrong_shape", "variant": variant})
        value = self.api("GET", path).json()
        self.assertIsInstance(value["status"], int)
        self.assertNotIn("id", self.api("GET", path).json())
        value = self.api("GET", path).json()
        self.assertIsInstance(value, list)
        self.assertEqual(value[0]["id"], job)
        self.assertEqual(self.api("GET", path).json()["id"], job)

    def test_commit_then_fail(self):
        self.sim.fault({"match": {"method": "POST", "path": "/ctf1/jobs$"}, "action": "commit_then_fail"},
                       {"match": {"method": "POST", "path": "/ctf2/jobs$"}, "action": "commit_then_fail",
                        "variant": "reset"},
                       {"match": {"method": "POST", "path": "/ctf3/jobs$"}, "action": "commit_then_fail",
                        "variant": "close"})
        self.assertZuoraError(self.create("ctf1"), 500)
        with self.assertRaises(ConnectionResetError):
            self.create("ctf2")
        with self.assertRaises(http.client.RemoteDisconnected):
            self.create("ctf3")
        jobs = self.sim.control("GET", "/_sim/jobs")
        self.assertEqual([j["env_id"] for j in jobs], ["ctf1", "ctf2", "ctf3"])
        self.assertEqual(self.create("ctf1").status, 409)  # the first attempt did create the job

    def test_expire_token(self):
        self.sim.fault({"match": {"path": "/exp1$"}, "action": "expire_token"})
        resp = self.api("GET", "/test-environments/exp1")
        self.assertEqual((resp.status, resp.json()["message"]), (401, "Authentication error"))
        self.assertEqual(self.api("GET", "/test-environments/other").status, 401)
        self.assertEqual(self.api("GET", "/test-environments/exp1", token=self.sim.token()).status, 200)


# ----------------------------------------------------------------------------------------------

class TestProcesses(unittest.TestCase):
    """Separate simulator processes: signals, IPv6, scenario, record-only, TLS, bad settings."""

    def test_signals_exit_cleanly(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            sim = Sim()
            idle = sim.conn()
            self.assertEqual(sim.call("GET", "/_sim/health", conn=idle).status, 200)
            sim.configure(faults=[{"action": "hang", "times": -1}])
            hanging = socket.create_connection((sim.host, sim.port))
            hanging.sendall(b"GET /test-environments/h HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(0.2)
            started = time.monotonic()
            self.assertEqual(sim.stop(sig), 0, sig)
            self.assertLess(time.monotonic() - started, 5)
            hanging.close()
            idle.close()

    def test_ipv6(self):
        try:
            with socket.socket(socket.AF_INET6) as probe:
                probe.bind(("::1", 0))
        except OSError:
            self.skipTest("no IPv6 loopback")
        sim = Sim("--location-mode", "absolute", host="::1")
        try:
            self.assertEqual(sim.banner, "listening on http://[::1]:%d" % sim.port)
            resp = sim.call("POST", "/test-environments/v6/jobs", {"jobType": "REFRESH"}, token=sim.token())
            self.assertEqual(resp.status, 200)
            self.assertTrue(resp.headers["Location"].startswith("http://[::1]:%d/test-environments/v6/jobs/"
                                                                % sim.port))
        finally:
            self.assertEqual(sim.stop(), 0)

    def test_scenario_and_cli_credentials(self):
        scenario = {"list_shape": "jobs",
                    "environments": {"sc1": {"job_seconds": 0.2, "final_status": "FAILED"}},
                    "faults": [{"match": {"path": "^/oauth/token$"}, "action": "status", "status": 500}]}
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
            json.dump(scenario, fh)
        sim = Sim("--scenario", fh.name, "--client-id", "cli-id", "--client-secret", "cli-secret")
        try:
            good = "client_id=cli-id&client_secret=cli-secret&grant_type=client_credentials"
            form = {"Content-Type": "application/x-www-form-urlencoded"}
            self.assertEqual(sim.call("POST", "/oauth/token", good, form).status, 500)
            self.assertEqual(sim.call("POST", "/oauth/token", CREDS, form).status, 401)
            tok = sim.token(good)
            self.assertEqual(sim.call("GET", "/test-environments/zz1", token=tok).status, 404)
            job = sim.call("POST", "/test-environments/sc1/jobs", {"jobType": "REFRESH"}, token=tok).json()
            time.sleep(0.3)
            jobs = sim.call("GET", "/test-environments/sc1/jobs", token=tok).json()["jobs"]
            self.assertEqual([(j["id"], j["status"]) for j in jobs], [(job["id"], "FAILED")])
            sim.control("POST", "/_sim/reset")
            self.assertEqual(sim.call("POST", "/oauth/token", good, form).status, 500)  # fault re-armed
        finally:
            self.assertEqual(sim.stop(), 0)
            os.unlink(fh.name)

    def test_bad_scenario_fails_fast(self):
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
            json.dump({"no_such_key": 1}, fh)
        try:
            proc = subprocess.run([sys.executable, SIM, "--scenario", fh.name], capture_output=True, timeout=10)
            self.assertEqual(proc.returncode, 2)
            self.assertIn(b"no_such_key", proc.stderr)
        finally:
            os.unlink(fh.name)

    def test_record_only(self):
        sim = Sim("--record-only")
        try:
            form = {"Content-Type": "application/x-www-form-urlencoded", "Authorization": "Bearer leaked"}
            resp = sim.call("POST", "/oauth/token", CREDS, form)
            self.assertEqual((resp.status, resp.json()), (200, {}))
            self.assertEqual(sim.call("GET", "/anything/at/all").json(), {})
            recs = sim.control("GET", "/_sim/requests")
            self.assertEqual([r["path"] for r in recs], ["/oauth/token", "/anything/at/all"])
            self.assertIn("client_secret=demo-secret", recs[0]["body"])
            self.assertEqual(recs[0]["headers"]["Authorization"], "Bearer leaked")
        finally:
            self.assertEqual(sim.stop(), 0)

    def test_tls(self):
        openssl = shutil.which("openssl")
        if not openssl:
            self.skipTest("openssl not installed")
        tmp = tempfile.mkdtemp(prefix="zuora-sim-tls-")
        cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                       check=True, capture_output=True, timeout=30)
        sim = Sim("--tls-cert", cert, "--tls-key", key, "--location-mode", "absolute", cafile=cert)
        try:
            self.assertEqual(sim.banner, "listening on https://127.0.0.1:%d" % sim.port)
            plain, _ = sim.raw(b"GET /_sim/health HTTP/1.1\r\nHost: x\r\n\r\n", timeout=3)
            self.assertNotIn(b"200 OK", plain)
            ctx = ssl.create_default_context(cafile=cert)
            with urllib.request.urlopen(sim.base + "/_sim/health", context=ctx, timeout=5) as resp:
                self.assertEqual(resp.read(), b"ok")
            with self.assertRaises(urllib.error.URLError):
                urllib.request.urlopen(sim.base + "/_sim/health", context=ssl.create_default_context(), timeout=5)
            resp = sim.call("POST", "/test-environments/tls1/jobs", {"jobType": "REFRESH"}, token=sim.token())
            self.assertEqual(resp.status, 200)
            self.assertTrue(resp.headers["Location"].startswith("https://127.0.0.1:%d/" % sim.port))
        finally:
            self.assertEqual(sim.stop(), 0)
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
