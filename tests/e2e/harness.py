"""Reusable pieces for refreshd's end-to-end tests (Python 3 standard library only).

Sim     -- the bundled Zuora simulator (tests/sim/zuora_sim.py) as a child process, with helpers for
           its control API (/_sim/).
Daemon  -- `refreshd run` as a child process: config file, state directory, secret in the child's
           environment, console log lines collected (and parsed) by a reader thread, sd_notify
           datagrams collected from its own NOTIFY_SOCKET.
parse_log_line -- the console line format "TS LEVEL MESSAGE REFRESHD_KEY=value ..." (logfmt).
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SIM_PATH = os.path.join(os.path.dirname(HERE), "sim", "zuora_sim.py")

SECRET_ENV = "REFRESHD_E2E_SECRET"
CLIENT_ID = "demo-client"
DEFAULT_SECRET = "e2e-Secret-7f3a9c41d2"


# ----------------------------------------------------------------------------------------------
# console log lines

LOG_LINE_RE = re.compile(r"^(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z|@\d+\.\d{3}) (?P<level>[a-z]+) (?P<rest>.*)$")
FIELD_START_RE = re.compile(r" (?=REFRESHD_[A-Z_]+=)")


class LogLine:
    """One console line: ts, level, message, fields (dict), raw, t (when it was read, epoch s)."""

    def __init__(self, raw, t, index):
        self.raw = raw
        self.t = t
        self.index = index
        self.ts, self.level, self.message, self.fields = parse_log_line(raw)

    def get(self, key, default=None):
        if not key.startswith("REFRESHD_"):
            key = "REFRESHD_" + key
        return self.fields.get(key, default)

    def __repr__(self):
        return self.raw


def _parse_logfmt(text):
    """KEY=value KEY="quoted \\" value" ... -> dict. Raises ValueError on malformed input."""
    fields = {}
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] == " ":
            i += 1
        if i >= n:
            break
        eq = text.find("=", i)
        if eq < 0:
            raise ValueError("no '=' in %r" % text[i:])
        key = text[i:eq]
        if not re.fullmatch(r"[A-Z][A-Z0-9_]*", key):
            raise ValueError("bad key %r" % key)
        i = eq + 1
        if i < n and text[i] == '"':
            i += 1
            out = []
            while True:
                if i >= n:
                    raise ValueError("unterminated quoted value for %s" % key)
                c = text[i]
                if c == "\\":
                    if i + 1 >= n:
                        raise ValueError("dangling backslash")
                    nxt = text[i + 1]
                    if nxt == "n":
                        out.append("\n")
                    elif nxt == "r":
                        out.append("\r")
                    elif nxt == "t":
                        out.append("\t")
                    elif nxt == "x" and i + 3 < n:
                        out.append(chr(int(text[i + 2:i + 4], 16)))
                        i += 2
                    else:
                        out.append(nxt)
                    i += 2
                    continue
                if c == '"':
                    i += 1
                    break
                out.append(c)
                i += 1
            value = "".join(out)
        else:
            sp = text.find(" ", i)
            sp = n if sp < 0 else sp
            value = text[i:sp]
            i = sp
        fields[key] = value
    return fields


def parse_log_line(raw):
    """(ts, level, message, fields) of one console line; a line that is not in the format gives
    (None, None, raw, {})."""
    m = LOG_LINE_RE.match(raw)
    if not m:
        return None, None, raw, {}
    rest = m.group("rest")
    parts = FIELD_START_RE.split(rest, maxsplit=1)
    message = parts[0]
    fields = {}
    if len(parts) == 2:
        try:
            fields = _parse_logfmt(parts[1])
        except ValueError:
            message, fields = rest, {}
    return m.group("ts"), m.group("level"), message, fields


def rfc3339(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


# ----------------------------------------------------------------------------------------------
# config

_PLAIN = re.compile(r"^[A-Za-z0-9_.-]+$")


def _yaml_scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    v = str(v)
    if _PLAIN.match(v) and v.lower() not in ("true", "false", "yes", "no", "on", "off", "null", "~"):
        return v
    return json.dumps(v)  # a JSON string is a valid YAML double-quoted scalar


def make_config(base_url, envs, defaults=None, zuora=None):
    """The config YAML: ENVS is a list of dicts (name, id, schedule, ...); None values are left out."""
    z = {"base_url": base_url, "client_id": CLIENT_ID, "client_secret_env": SECRET_ENV,
         "request_timeout": "10s"}
    z.update(zuora or {})
    d = {"timezone": "UTC", "poll_interval": "1s", "catch_up": False}
    d.update(defaults or {})
    lines = ["zuora:"]
    lines += ["  %s: %s" % (k, _yaml_scalar(v)) for k, v in z.items() if v is not None]
    lines.append("defaults:")
    lines += ["  %s: %s" % (k, _yaml_scalar(v)) for k, v in d.items() if v is not None]
    lines.append("environments:")
    for env in envs:
        first = True
        for k, v in env.items():
            if v is None:
                continue
            lines.append("%s%s: %s" % ("  - " if first else "    ", k, _yaml_scalar(v)))
            first = False
    return "\n".join(lines) + "\n"


def seconds_schedule(*times):
    """A 6-field schedule firing at the given epoch seconds' second-of-minute (every minute)."""
    secs = sorted({int(t) % 60 for t in times})
    return "%s * * * * *" % ",".join(str(s) for s in secs)


def next_second(delay):
    """An epoch second DELAY seconds (at least) from now."""
    return int(time.time()) + 1 + int(delay)


# ----------------------------------------------------------------------------------------------
# the simulator

class Sim:
    """tests/sim/zuora_sim.py on 127.0.0.1, port 0."""

    def __init__(self, workdir, name="sim", job_seconds=1.5, record_only=False, extra_args=(),
                 client_secret=DEFAULT_SECRET):
        self.workdir = workdir
        self.name = name
        self.port_file = os.path.join(workdir, name + ".port")
        self.log_path = os.path.join(workdir, name + ".log")
        argv = [sys.executable, SIM_PATH, "--host", "127.0.0.1", "--port", "0",
                "--port-file", self.port_file, "--log", self.log_path,
                "--job-seconds", str(job_seconds), "--client-id", CLIENT_ID,
                "--client-secret", client_secret]
        if record_only:
            argv.append("--record-only")
        argv += list(extra_args)
        self.stdout = open(os.path.join(workdir, name + ".stdout"), "wb")
        self.proc = subprocess.Popen(argv, stdout=self.stdout, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        deadline = time.time() + 15
        self.port = None
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("the simulator exited with %s (see %s)" % (self.proc.returncode, self.log_path))
            try:
                with open(self.port_file) as fh:
                    self.port = int(fh.read().strip())
                break
            except (OSError, ValueError):
                time.sleep(0.05)
        if self.port is None:
            self.stop()
            raise RuntimeError("the simulator did not write its port file")
        self.base_url = "http://127.0.0.1:%d" % self.port
        # wait for health
        while time.time() < deadline:
            try:
                if self._call("GET", "/_sim/health", raw=True) == "ok":
                    break
            except OSError:
                time.sleep(0.05)

    def _call(self, method, path, body=None, raw=False):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                text = resp.read().decode()
        except urllib.error.HTTPError as exc:
            raise RuntimeError("%s %s: %s %s" % (method, path, exc.code, exc.read().decode(errors="replace")))
        if raw:
            return text.strip()
        return json.loads(text) if text.strip() else None

    # -- control API

    def requests(self, path=None, method=None, since=0):
        """Recorded requests (path: a regex searched in the path)."""
        q = ["since=%d" % since]
        if path:
            q.append("path=" + urllib.request.quote(path, safe=""))
        if method:
            q.append("method=" + method)
        out = self._call("GET", "/_sim/requests?" + "&".join(q))
        return out if isinstance(out, list) else out.get("requests", out)

    def api_requests(self):
        return [r for r in self.requests() if r["path"] != "/oauth/token"]

    def token_requests(self):
        return self.requests(path="^/oauth/token$")

    def posts(self, env_id=None):
        path = "^/test-environments/%s/jobs$" % (re.escape(env_id) if env_id else "[^/]+")
        return self.requests(path=path, method="POST")

    def polls(self, env_id=None, job_id=None):
        path = "^/test-environments/%s/jobs/%s$" % (re.escape(env_id) if env_id else "[^/]+",
                                                   job_id or "[0-9a-f]{32}")
        return self.requests(path=path, method="GET")

    def jobs(self, env_id=None):
        jobs = self._call("GET", "/_sim/jobs")
        if isinstance(jobs, dict):
            jobs = jobs.get("jobs", [])
        return [j for j in jobs if env_id is None or j.get("env_id") == env_id]

    def config(self, **kw):
        """With keywords: change the config (POST); always returns the current config."""
        if kw:
            self._call("POST", "/_sim/config", kw)
        return self._call("GET", "/_sim/config")

    def add_job(self, env_id, status, created_ago, ended_ago=None):
        """A job made by hand in Zuora's UI, CREATED_AGO seconds ago (ended ENDED_AGO ago)."""
        spec = {"env_id": env_id, "status": status, "created_ago": created_ago}
        if ended_ago is not None:
            spec["ended_ago"] = ended_ago
        return self._call("POST", "/_sim/jobs", spec)

    def fault(self, rule):
        """Append one rule or a list of rules."""
        return self._call("POST", "/_sim/faults", rule)

    def faults(self):
        return self._call("GET", "/_sim/faults")

    def clear(self):
        """Forget fault rules and recorded requests."""
        self._call("DELETE", "/_sim/faults")
        self._call("POST", "/_sim/requests/clear")

    def reset(self):
        return self._call("POST", "/_sim/reset")

    def expire_tokens(self):
        return self._call("POST", "/_sim/tokens/expire")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.stdout.close()


# ----------------------------------------------------------------------------------------------
# the daemon

class Timeout(AssertionError):
    pass


class Daemon:
    """`refreshd run` with its own config, state directory and NOTIFY_SOCKET."""

    def __init__(self, binary, workdir, config_text, name="daemon", secret=DEFAULT_SECRET,
                 state_dir=None, valgrind=False, extra_env=None):
        self.binary = binary
        self.workdir = workdir
        self.name = name
        self.secret = secret
        self.valgrind = valgrind
        self.extra_env = dict(extra_env or {})
        self.config_path = os.path.join(workdir, name + ".yaml")
        self.state_dir = state_dir or os.path.join(workdir, name + "-state")
        os.makedirs(self.state_dir, exist_ok=True)
        self.write_config(config_text)
        # sun_path holds 108 bytes: the socket lives in a short directory of its own
        self.notify_dir = tempfile.mkdtemp(prefix="rdn-", dir="/tmp")
        self.notify_path = os.path.join(self.notify_dir, "notify")
        self.control_path = os.path.join(self.notify_dir, "io.refreshd.sock")
        self.proc = None
        self.runs = 0
        self.all_lines = []        # every stderr line of every run (raw)
        self.all_stdout = []
        self.all_notify = []
        self.lines = []            # LogLines of the current run
        self.notify = []           # (t, text) of the current run
        self.cond = threading.Condition()
        self.exit_code = None
        self.valgrind_log = os.path.join(workdir, name + ".valgrind.%p")
        self._threads = []
        self._sock = None

    def write_config(self, text):
        tmp = self.config_path + ".tmp"
        with open(tmp, "w") as fh:
            fh.write(text)
        os.replace(tmp, self.config_path)

    # -- life

    def start(self, wait_ready=True, timeout=None):
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.runs += 1
        with self.cond:
            self.lines = []
            self.notify = []
        self.exit_code = None
        if os.path.exists(self.notify_path):
            os.unlink(self.notify_path)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(self.notify_path)
        env = {k: v for k, v in os.environ.items()
               if k not in ("JOURNAL_STREAM", "INVOCATION_ID", "STATE_DIRECTORY", "CONFIGURATION_DIRECTORY",
                            "CREDENTIALS_DIRECTORY", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS")}
        env[SECRET_ENV] = self.secret
        env["NOTIFY_SOCKET"] = self.notify_path
        # The control socket: $RUNTIME_DIRECTORY/io.refreshd.sock, in the same short directory.
        env["RUNTIME_DIRECTORY"] = self.notify_dir
        env.update(self.extra_env)
        argv = [self.binary, "run", "-c", self.config_path, "--state-dir", self.state_dir,
                "--log-target", "console"]
        if self.valgrind:
            argv = ["valgrind", "--leak-check=full", "--error-exitcode=99",
                    "--errors-for-leak-kinds=definite", "--log-file=" + self.valgrind_log] + argv
        self.log_file = open(os.path.join(self.workdir, "%s.run%d.log" % (self.name, self.runs)), "w")
        self.started_at = time.time()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env)
        proc, sock, log_file = self.proc, self._sock, self.log_file
        self._threads = [
            threading.Thread(target=self._read_stderr, args=(proc, log_file), daemon=True),
            threading.Thread(target=self._read_stdout, args=(proc,), daemon=True),
            threading.Thread(target=self._read_notify, args=(sock,), daemon=True),
        ]
        for t in self._threads:
            t.start()
        if wait_ready:
            self.wait_notify(r"(^|\n)READY=1($|\n)", timeout or (60 if self.valgrind else 10))
        return self

    def _read_stderr(self, proc, log_file):
        for raw in iter(proc.stderr.readline, b""):
            text = raw.decode("utf-8", errors="replace").rstrip("\n")
            now = time.time()
            with self.cond:
                line = LogLine(text, now, len(self.lines))
                if self.proc is proc:
                    self.lines.append(line)
                self.all_lines.append(text)
                self.cond.notify_all()
            try:
                log_file.write(text + "\n")
                log_file.flush()
            except ValueError:
                pass
        with self.cond:
            self.cond.notify_all()

    def _read_stdout(self, proc):
        for raw in iter(proc.stdout.readline, b""):
            with self.cond:
                self.all_stdout.append(raw.decode("utf-8", errors="replace").rstrip("\n"))

    def _read_notify(self, sock):
        while True:
            try:
                data = sock.recv(65536)
            except OSError:
                return
            if not data:
                continue
            text = data.decode("utf-8", errors="replace")
            with self.cond:
                self.notify.append((time.time(), text))
                self.all_notify.append(text)
                self.cond.notify_all()

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def sighup(self):
        self.proc.send_signal(signal.SIGHUP)

    def sigterm(self):
        self.proc.send_signal(signal.SIGTERM)

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        return self.wait_exit(10)

    def wait_exit(self, timeout):
        """The exit code; raises Timeout when still running after TIMEOUT seconds."""
        try:
            self.exit_code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise Timeout("refreshd still running after %.1fs" % timeout)
        for t in self._threads[:2]:
            t.join(5)
        self._close_sock()
        try:
            self.log_file.close()
        except Exception:
            pass
        return self.exit_code

    def _close_sock(self):
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._sock.close()
            self._sock = None
            try:
                os.unlink(self.notify_path)
            except OSError:
                pass
            if len(self._threads) > 2:
                self._threads[2].join(2)

    def stop(self):
        """Ends the daemon whatever its state (SIGTERM, then SIGKILL)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30 if self.valgrind else 5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc is not None:
            try:
                self.wait_exit(5)
            except Timeout:
                pass
        self._close_sock()
        try:
            os.rmdir(self.notify_dir)
        except OSError:
            pass

    # -- looking at the output

    def log(self):
        with self.cond:
            return list(self.lines)

    def events(self, regex=None, since=0, **fields):
        """Parsed lines of this run whose raw text matches REGEX and whose fields have the given
        values (keys without the REFRESHD_ prefix, e.g. JOB_STATUS="COMPLETED")."""
        rx = re.compile(regex) if regex else None
        out = []
        for line in self.log()[since:]:
            if rx and not rx.search(line.raw):
                continue
            if any(line.get(k) != (None if v is None else str(v)) for k, v in fields.items()):
                continue
            out.append(line)
        return out

    def wait_log(self, regex, timeout=10, since=0, **fields):
        """The first line (from index SINCE) matching REGEX (and FIELDS); raises Timeout."""
        deadline = time.time() + timeout
        rx = re.compile(regex)
        with self.cond:
            while True:
                for line in self.lines[since:]:
                    if rx.search(line.raw) and all(line.get(k) == str(v) for k, v in fields.items()):
                        return line
                left = deadline - time.time()
                if left <= 0:
                    raise Timeout("no log line matching %r %s within %.1fs; log:\n%s"
                                  % (regex, fields or "", timeout, self.tail()))
                if self.proc.poll() is not None and not self._threads[0].is_alive():
                    raise Timeout("refreshd exited (%s) before logging %r; log:\n%s"
                                  % (self.proc.returncode, regex, self.tail()))
                self.cond.wait(min(left, 0.2))

    def notifications(self):
        with self.cond:
            return list(self.notify)

    def wait_notify(self, regex, timeout=10, since=0):
        """(index, time, text) of the first sd_notify datagram matching REGEX; raises Timeout."""
        deadline = time.time() + timeout
        rx = re.compile(regex)
        with self.cond:
            while True:
                for i, (t, text) in enumerate(self.notify[since:], since):
                    if rx.search(text):
                        return i, t, text
                left = deadline - time.time()
                if left <= 0:
                    raise Timeout("no sd_notify message matching %r within %.1fs; got %r; log:\n%s"
                                  % (regex, timeout, [n[1] for n in self.notify], self.tail()))
                if self.proc.poll() is not None and not self._threads[0].is_alive():
                    raise Timeout("refreshd exited (%s) before notifying %r; log:\n%s"
                                  % (self.proc.returncode, regex, self.tail()))
                self.cond.wait(min(left, 0.2))

    def tail(self, n=40):
        with self.cond:
            return "\n".join(l.raw for l in self.lines[-n:])

    def state(self):
        path = os.path.join(self.state_dir, "state.json")
        try:
            with open(path) as fh:
                return json.load(fh)
        except FileNotFoundError:
            return None

    def state_text(self):
        out = []
        for name in sorted(os.listdir(self.state_dir)):
            p = os.path.join(self.state_dir, name)
            if os.path.isfile(p):
                with open(p, "rb") as fh:
                    out.append(fh.read().decode("utf-8", errors="replace"))
        return "\n".join(out)


def refreshd_version(binary):
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    m = re.match(r"refreshd (\S+)", out)
    return m.group(1) if m else None


def run_check(binary, config_path, secret=DEFAULT_SECRET):
    """`refreshd check -c PATH`: (exit code, stdout, stderr)."""
    env = dict(os.environ)
    env[SECRET_ENV] = secret
    p = subprocess.run([binary, "check", "-c", config_path], capture_output=True, text=True, env=env,
                       timeout=30)
    return p.returncode, p.stdout, p.stderr


def wait_until(predicate, timeout, interval=0.1):
    """Polls PREDICATE until it returns a true value (returned) or TIMEOUT passes (returns the last value)."""
    deadline = time.time() + timeout
    while True:
        v = predicate()
        if v or time.time() >= deadline:
            return v
        time.sleep(interval)


class TimedResult(unittest.TestResult):
    """Records (name, outcome, detail, seconds) per test, for the runners' summaries."""
    def __init__(self):
        super().__init__()
        self.outcomes = []  # (name, outcome, detail, seconds)
        self._t = {}

    def startTest(self, test):
        super().startTest(test)
        self._t[test.id()] = time.time()

    def _dt(self, test):
        return time.time() - self._t.get(test.id(), time.time())

    def addSuccess(self, test):
        super().addSuccess(test)
        self.outcomes.append((test.id(), "ok", "", self._dt(test)))

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self.outcomes.append((test.id(), "FAIL", self.failures[-1][1], self._dt(test)))

    def addError(self, test, err):
        super().addError(test, err)
        name = test.id() if hasattr(test, "id") else str(test)
        self.outcomes.append((name, "ERROR", self.errors[-1][1], self._dt(test) if hasattr(test, "id") else 0))

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self.outcomes.append((test.id(), "skip", reason, 0))


def flatten(suite):
    """The test cases of a (nested) unittest suite."""
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            yield from flatten(t)
        else:
            yield t


def run_parallel(units, jobs, title, artifacts, show_skips=False):
    """Runs UNITS (tests or suites) on JOBS threads, printing one line per test as it ends, then the
    failures in full and "TITLE: N passed, N failed, N errors, N skipped in Ts". Removes ARTIFACTS
    unless something failed or REFRESHD_E2E_KEEP=1. Returns the exit code (1 when anything failed)."""
    import concurrent.futures

    t0 = time.time()

    def run(unit):
        r = TimedResult()
        unit.run(r)
        for name, outcome, _, dt in r.outcomes:
            print("%-6s %5.1fs %s" % (outcome, dt, name.replace("__main__.", "")), flush=True)
        return r

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        results = list(pool.map(run, units))
    outcomes = sorted(o for r in results for o in r.outcomes)
    bad = [o for o in outcomes if o[1] in ("FAIL", "ERROR")]
    for name, outcome, detail, _ in bad:
        print("\n" + "=" * 78 + "\n%s: %s\n" % (outcome, name.replace("__main__.", "")) + "-" * 78)
        print(detail.rstrip()[-6000:])
    if show_skips:
        for name, outcome, detail, _ in outcomes:
            if outcome == "skip":
                print("skipped %s: %s" % (name.replace("__main__.", ""), detail))
    n = {k: sum(1 for o in outcomes if o[1] == k) for k in ("ok", "FAIL", "ERROR", "skip")}
    print("\n" + "=" * 78)
    print("%s: %d passed, %d failed, %d errors, %d skipped in %.1fs"
          % (title, n["ok"], n["FAIL"], n["ERROR"], n["skip"], time.time() - t0))
    if bad or os.environ.get("REFRESHD_E2E_KEEP") == "1":
        print("artifacts (logs, configs, state) kept in %s" % artifacts)
    else:
        import shutil
        shutil.rmtree(artifacts, ignore_errors=True)
    return 1 if bad else 0
