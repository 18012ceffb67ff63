#!/usr/bin/env python3
"""End-to-end tests of hooks and webhooks: what `refreshd run` does after an event.

    python3 tests/e2e/test_hooks.py build/daemon/refreshd [NAME-FILTER...]

Every test starts its own simulator (tests/sim/zuora_sim.py), daemon (tests/e2e/harness.py) and,
for webhooks, a receiver on 127.0.0.1 in this process. The hook is one program written at the start
(HOOK_PROGRAM below, a Python script): it records, in a directory given as its first argument, one
JSON file when it starts (its argv, the environment it was given as /proc/self/environ shows it, the
file descriptors it inherited beyond 0, 1 and 2, where its stdin points, the content of
$REFRESHD_EVENT_FILE) and one when it ends; it can print lines on stdout and stderr, sleep, ignore
SIGTERM, kill itself with SIGKILL, or exit with a status, as its options say.

* HookEvents: eight environments of one daemon reach every kind but hook_failed: submitted, started,
  completed; failed (a job ending FAILED, and a POST answered 400: no job); canceled; lost (404 while
  polling); rejected (403 period answer); skipped (a slot while the job runs); retrying (500 on the
  POST). Each environment's sequence of hook runs is exactly what happened, one at a time; the
  variables, the argv placeholders and the event file agree with each other and with Zuora's job; no
  other variable, no inherited fd, stdin /dev/null, never the client secret; ids are 32 hex, one per
  event, the same in the webhook's X-Refreshd-Event-Id and body; output lines are logged with their
  fields (stdout at info, stderr at warning), then the end of the run; state.json's last_event.
* HookFailures: a hook past its 2 s timeout (SIGTERM), one ignoring SIGTERM (timeout 5 s, SIGKILL 10 s
  later; the durations the daemon reports at least that), an exit status 3, a hook killed by
  SIGKILL: each logged as such, each raises hook_failed once, posted to a webhook subscribed to
  hook_failed and run by a hook on hook_failed that fails in turn (which raises nothing more).
* CrashDuringHook: kill -9 while a 5 s hook runs (state.json's outbox holds it): after the restart
  it runs again with the same REFRESHD_EVENT_ID, once; after it finished, never again.
* CrashDuringWebhook: kill -9 while the receiver answers 500, and while it holds a request
  unanswered: after the restart both are posted again (same X-Refreshd-Event-Id), answered 200, and
  never posted again after another restart.
* WebhookRetries: 500, 500, 200 (retried after 1 s then 2 s, delivered once); 503 with Retry-After:
  3 (honoured); 404 (given up, one POST): logged with the host only.
* Secrets: webhook URLs from url, url_file and url_env (the last to a closed port, given up after
  retry_for) with a secret-looking token in their paths: neither the paths nor the client secret
  appear in the daemon's output, sd_notify, state directory, `refreshd status [--json]`, nor in a
  hook's environment or argv.
* SlackFormat: format slack posts {"text": "..."} naming the environment and the event.
* PerEnvironmentOrder: two hooks on three events of one environment that come faster than the hooks
  end: run one at a time, event by event, in the list's order.
* MaxConcurrentHooks: max_concurrent_hooks: 1 with two environments whose hooks sleep 2 s: never two
  at once (while a daemon with the default lets them overlap).

Tests run in parallel threads (REFRESHD_E2E_JOBS, default 9; a class with a shared setUpClass is one
unit). Artifacts (daemon logs, configs, state, hook records, receiver posts) are kept when a test
fails, or always with REFRESHD_E2E_KEEP=1.
"""

import calendar
import http.server
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from harness import (CLIENT_ID, DEFAULT_SECRET, SECRET_ENV, Daemon, Sim, Timeout,  # noqa: E402
                     flatten, rfc3339, run_parallel, wait_until)

BINARY = None
ARTIFACTS = None
HOOK = None  # the hook program's path

JOB_PATH_RE = r"^/test-environments/%s/jobs/[0-9a-f]{32}$"
LIST_PATH_RE = r"^/test-environments/%s/jobs$"
ID_RE = re.compile(r"^[0-9a-f]{32}$")
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
ALL_KINDS = ["submitted", "started", "completed", "failed", "canceled", "lost", "rejected", "skipped",
             "retrying", "hook_failed"]
EVENT_KEYS = {"id", "event", "environment", "environment_id", "slot", "job_id", "job_status", "job_start",
              "job_end", "track_id", "message", "time", "attempt", "test"}
# Event file key -> variable (the two that are not fields of the file are added below).
FIELD_VARS = {k: "REFRESHD_" + k.upper() for k in
              ("environment", "environment_id", "slot", "job_id", "job_status", "job_start", "job_end",
               "track_id", "message", "time")}
KEPT_VARS = {"PATH", "LANG", "LC_ALL", "TZ", "STATE_DIRECTORY", "RUNTIME_DIRECTORY"}
EVENT_VARS = set(FIELD_VARS.values()) | {"REFRESHD_EVENT", "REFRESHD_EVENT_ID", "REFRESHD_EVENT_FILE",
                                         "REFRESHD_EVENT_TEST"}
# The placeholders, in the order the hook's argv has them after "--".
PLACEHOLDERS = ["event", "event_id", "environment", "environment_id", "slot", "job_id", "job_status",
                "job_start", "job_end", "track_id", "message"]


# ----------------------------------------------------------------------------------------------
# the hook program

HOOK_PROGRAM = r'''#!%(python)s -IS
# refreshd e2e hook: HOOK RECORD_DIR [--sleep S] [--exit N] [--out LINE]... [--err LINE]...
#                        [--ignore-term] [--kill-self] -- ARGS...
import os
import signal
import sys
if "--ignore-term" in sys.argv[:sys.argv.index("--") if "--" in sys.argv else None]:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # first of all: the timeout may come soon
FDS = []
for _fd in range(3, 1024):  # before anything opens a file
    try:
        os.fstat(_fd)
    except OSError:
        continue
    try:
        FDS.append([_fd, os.readlink("/proc/self/fd/%%d" %% _fd)])
    except OSError:
        FDS.append([_fd, "?"])
import json
import time

START = time.time()


def environ():
    # as exec'ed: Python may add variables of its own (PEP 538), /proc/self/environ never shows them
    with open("/proc/self/environ", "rb") as f:
        raw = f.read()
    env = {}
    for item in raw.split(b"\0"):
        if item:
            k, _, v = item.decode("utf-8", "replace").partition("=")
            env[k] = v
    return env


def record(directory, phase, rec):
    name = "%%.6f-%%d-%%s.json" %% (time.time(), os.getpid(), phase)
    tmp = os.path.join(directory, "." + name)
    with open(tmp, "w") as f:
        json.dump(rec, f)
    os.replace(tmp, os.path.join(directory, name))


def main():
    args = sys.argv[1:]
    directory = args.pop(0)
    opts = {"sleep": 0.0, "exit": 0, "out": [], "err": [], "ignore_term": False, "kill_self": False}
    while args:
        a = args.pop(0)
        if a == "--":
            break
        if a == "--sleep":
            opts["sleep"] = float(args.pop(0))
        elif a == "--exit":
            opts["exit"] = int(args.pop(0))
        elif a == "--out":
            opts["out"].append(args.pop(0))
        elif a == "--err":
            opts["err"].append(args.pop(0))
        elif a == "--ignore-term":
            opts["ignore_term"] = True
        elif a == "--kill-self":
            opts["kill_self"] = True
    env = environ()
    rec = {"phase": "start", "t": START, "pid": os.getpid(), "argv": sys.argv, "rest": args, "env": env,
           "fds": FDS, "stdin": os.readlink("/proc/self/fd/0"), "event_file": None, "event_file_mode": None}
    path = env.get("REFRESHD_EVENT_FILE")
    if path:
        try:
            with open(path) as f:
                rec["event_file"] = json.load(f)
            rec["event_file_mode"] = os.stat(path).st_mode & 0o7777
        except (OSError, ValueError) as exc:
            rec["event_file"] = "unreadable: %%s" %% exc
    record(directory, "start", rec)
    for line in opts["out"]:
        print(line, flush=True)
    for line in opts["err"]:
        print(line, file=sys.stderr, flush=True)
    if opts["kill_self"]:
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(opts["sleep"])
    record(directory, "end", {"phase": "end", "t": time.time(), "pid": os.getpid(),
                              "event": env.get("REFRESHD_EVENT"), "event_id": env.get("REFRESHD_EVENT_ID"),
                              "environment": env.get("REFRESHD_ENVIRONMENT")})
    sys.exit(opts["exit"])


main()
'''


def write_hook_program(directory):
    path = os.path.join(directory, "hook.py")
    with open(path, "w") as f:
        f.write(HOOK_PROGRAM % {"python": sys.executable})
    os.chmod(path, 0o755)
    return path


def hook_run(records, *opts, words=None):
    """A hook's 'run': the program, its record directory, OPTS, then every placeholder."""
    argv = [HOOK, records] + [str(o) for o in opts] + ["--"]
    argv += words if words is not None else ["{%s}" % p for p in PLACEHOLDERS] + ["{{x}}"]
    return argv


class Run:
    """One run of the hook: its start record (and end record, if it got there)."""

    def __init__(self, start, end):
        self.start = start
        self.end = end
        self.env = start["env"]
        self.t0 = start["t"]
        self.t1 = end["t"] if end else None
        self.pid = start["pid"]
        self.kind = self.env.get("REFRESHD_EVENT")
        self.id = self.env.get("REFRESHD_EVENT_ID")
        self.environment = self.env.get("REFRESHD_ENVIRONMENT")

    def __repr__(self):
        return "<run %s %s %s pid %d %.3f-%s>" % (self.environment, self.kind, self.id, self.pid, self.t0,
                                                   "%.3f" % self.t1 if self.t1 else "?")


def hook_runs(records):
    """The runs recorded in RECORDS (a directory), by start time."""
    starts, ends = [], {}
    for name in sorted(os.listdir(records)):
        if name.startswith(".") or not name.endswith(".json"):
            continue
        with open(os.path.join(records, name)) as f:
            rec = json.load(f)
        if rec["phase"] == "start":
            starts.append(rec)
        else:
            ends[rec["pid"]] = rec
    return sorted((Run(s, ends.get(s["pid"])) for s in starts), key=lambda r: r.t0)


# ----------------------------------------------------------------------------------------------
# the webhook receiver

class Receiver:
    """An HTTP server on 127.0.0.1 recording every POST. plan(path, *answers): the answers to the
    POSTs to PATH in turn (the last one repeated), each a status or a dict {status, headers, delay};
    200 when none is planned."""

    def __init__(self, work, name="receiver"):
        self.log_path = os.path.join(work, name + ".posts.jsonl")
        self.posts = []
        self.plans = {}
        self.cond = threading.Condition()
        self.stopping = threading.Event()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                receiver._handle(self)

            def do_GET(self):
                self.send_response(405)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1},
                                       daemon=True)
        self.thread.start()

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def plan(self, path, *answers):
        with self.cond:
            self.plans[path] = [a if isinstance(a, dict) else {"status": a} for a in answers]

    def _handle(self, h):
        n = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(n) if n else b""
        path = urllib.parse.urlsplit(h.path).path
        with self.cond:
            plan = self.plans.get(path) or [{"status": 200}]
            index = sum(1 for p in self.posts if p["path"] == path)
            answer = plan[min(index, len(plan) - 1)]
            try:
                value = json.loads(body.decode())
            except ValueError:
                value = None
            post = {"t": time.time(), "path": path, "target": h.path,
                    "headers": {k.lower(): v for k, v in h.headers.items()},
                    "body": body.decode("utf-8", "replace"), "json": value, "status": answer["status"],
                    "answered": None}
            self.posts.append(post)
            self.cond.notify_all()
        with open(self.log_path, "a") as f:
            f.write(json.dumps(post) + "\n")
        if answer.get("delay"):
            self.stopping.wait(answer["delay"])
        try:
            h.send_response(answer["status"])
            for k, v in answer.get("headers", {}).items():
                h.send_header(k, v)
            h.send_header("Content-Type", "text/plain")
            h.send_header("Content-Length", "2")
            h.end_headers()
            h.wfile.write(b"ok")
            h.wfile.flush()
            post["answered"] = time.time()
        except OSError:
            pass  # the client is gone

    def received(self, path=None, event_id=None):
        with self.cond:
            return [p for p in self.posts if (path is None or p["path"] == path) and
                    (event_id is None or p["headers"].get("x-refreshd-event-id") == event_id)]

    def wait(self, predicate, timeout):
        """Waits until PREDICATE(posts) is true; returns the posts then (raises Timeout)."""
        deadline = time.time() + timeout
        with self.cond:
            while not predicate(self.posts):
                left = deadline - time.time()
                if left <= 0:
                    raise Timeout("the receiver did not get what was expected within %.1fs; it got:\n%s"
                                  % (timeout, "\n".join("%.3f %s %s %s" % (p["t"], p["path"], p["status"],
                                                                           p["body"][:200])
                                                        for p in self.posts)))
                self.cond.wait(min(left, 0.2))
            return list(self.posts)

    def stop(self):
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ----------------------------------------------------------------------------------------------
# config

def _scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    return json.dumps(v)  # strings double-quoted, lists of words in flow style: JSON is valid YAML


def _yaml(value, indent):
    pad = " " * indent
    out = []
    if isinstance(value, dict):
        for k, v in value.items():
            if v is None:
                continue
            if isinstance(v, dict) or (isinstance(v, list) and v and isinstance(v[0], dict)):
                out.append("%s%s:" % (pad, k))
                out += _yaml(v, indent + 2)
            else:
                out.append("%s%s: %s" % (pad, k, _scalar(v)))
    else:  # a list of mappings
        for item in value:
            sub = _yaml(item, indent + 2)
            sub[0] = pad + "- " + sub[0].lstrip()
            out += sub
    return out


def hooks_config(base_url, envs, defaults=None, top=None):
    """A config with hooks: ENVS a list of dicts (name, id, schedule, hooks, webhooks, ...), DEFAULTS
    added to timezone UTC, poll_interval 1s, catch_up false; TOP more top-level keys."""
    d = {"timezone": "UTC", "poll_interval": "1s", "catch_up": False}
    d.update(defaults or {})
    cfg = {"zuora": {"base_url": base_url, "client_id": CLIENT_ID, "client_secret_env": SECRET_ENV,
                     "request_timeout": "10s"}}
    cfg.update(top or {})
    cfg["defaults"] = d
    cfg["environments"] = envs
    return "\n".join(_yaml(cfg, 0)) + "\n"


def slot_at(delay, span=0):
    """An epoch second at least DELAY s from now such that it and the SPAN seconds after it are in
    one minute."""
    t = int(time.time()) + 1 + int(delay)
    if t % 60 + span > 59:
        t += 60 - t % 60
    return t


def once(*times):
    """A six-field schedule firing at TIMES (epoch seconds of one UTC minute) and not again this year."""
    tm = time.gmtime(times[0])
    assert all(int(t) // 60 == int(times[0]) // 60 for t in times), times
    return "%s %d %d %d %d *" % (",".join(str(int(t) % 60) for t in sorted(times)), tm.tm_min, tm.tm_hour,
                                 tm.tm_mday, tm.tm_mon)


_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}


def after_seconds(message):
    """The duration in "... after 2s18ms" (the daemon's format: d h m s ms), in seconds."""
    m = re.search(r" after ((?:\d+(?:ms|[wdhms]))+)$", message)
    if not m:
        raise AssertionError("no duration at the end of %r" % message)
    return sum(int(n) * _UNITS[u] for n, u in re.findall(r"(\d+)(ms|[wdhms])", m.group(1)))


def iso_to_epoch(text):
    return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))


def new_workdir(label):
    return tempfile.mkdtemp(prefix=re.sub(r"[^A-Za-z0-9_.-]", "_", label)[:60] + "-", dir=ARTIFACTS)


def tree_text(directory):
    """Every file under DIRECTORY, as (path, text)."""
    out = []
    for root, _, files in os.walk(directory):
        for name in files:
            p = os.path.join(root, name)
            try:
                with open(p, "rb") as f:
                    out.append((p, f.read().decode("utf-8", "replace")))
            except OSError:
                pass
    return out


def run_status(d, *extra, env=None):
    e = dict(os.environ, **{SECRET_ENV: d.secret})
    e.update(env or {})
    p = subprocess.run([BINARY, "status", "-c", d.config_path, "--state-dir", d.state_dir] + list(extra),
                       capture_output=True, text=True, env=e, timeout=30)
    return p.returncode, p.stdout + p.stderr


def pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


# ==============================================================================================
# base

class E2E(unittest.TestCase):
    """Per-test (or per-class) workdir, simulator, daemons and receiver, stopped at the end."""

    def setUp(self):
        self.work = new_workdir(self.id().split(".", 1)[-1])

    @classmethod
    def _init_class(cls):
        # cleanups of this class only (unittest's class cleanups are one list for every class)
        cls._class_cleanups = []
        cls.work = new_workdir(cls.__name__)

    @staticmethod
    def _records(work, name="records"):
        path = os.path.join(work, name)
        os.makedirs(path, exist_ok=True)
        return path

    @classmethod
    def _sim(cls, owner, work, **kw):
        s = Sim(work, **kw)
        owner(s.stop)
        return s

    @classmethod
    def _receiver(cls, owner, work, **kw):
        r = Receiver(work, **kw)
        owner(r.stop)
        return r

    @classmethod
    def _daemon(cls, owner, work, config_text, **kw):
        d = Daemon(BINARY, work, config_text, **kw)
        owner(d.stop)
        return d

    def records(self, name="records"):
        return self._records(self.work, name)

    def sim(self, **kw):
        return self._sim(self.addCleanup, self.work, **kw)

    def receiver(self, **kw):
        return self._receiver(self.addCleanup, self.work, **kw)

    def daemon(self, config_text, **kw):
        return self._daemon(self.addCleanup, self.work, config_text, **kw)

    def wait_runs(self, records, predicate, timeout, what, d=None):
        """Waits until PREDICATE(runs) holds; returns the runs."""
        runs = wait_until(lambda: (lambda r: r if predicate(r) else None)(hook_runs(records)), timeout, 0.1)
        if not runs:
            self.fail("%s=> %s: not within %.0fs; runs: %s" % ("log:\n" + brief(d) + "\n" if d else "", what,
                                                              timeout, hook_runs(records)))
        return runs

    def log_line(self, d, regex, timeout, **fields):
        """d.wait_log(), failing with the point of it at the end of the message."""
        try:
            return d.wait_log(regex, timeout=timeout, **fields)
        except Timeout:
            self.fail("log:\n%s\n=> no log line matching %r %s within %.0fs" % (brief(d), regex, fields, timeout))

    def wait_outbox_empty(self, d, timeout):
        ok = wait_until(lambda: not (d.state() or {}).get("outbox"), timeout, 0.2)
        self.assertTrue(ok, "state.json's outbox still holds %s" % (d.state() or {}).get("outbox"))


def brief(d, n=12):
    """The last N lines of D's log, each cut to 220 characters (a failure's detail is printed cut to
    its last 6000 characters: the point of a message goes at its end)."""
    return "\n".join(l.raw[:220] for l in d.log()[-n:])


def finished_re(kind=None):
    return r"hook %s for event %s finished after \d[0-9a-z.]*( |$)" % (re.escape(HOOK), kind or r"\S+")


# ==============================================================================================
# 1, 2. every event kind, its variables, event file, ids and output lines

class HookEvents(E2E):
    """One daemon, eight environments firing at one slot (one of them twice), a hook and a webhook on
    every event kind in defaults."""

    # environment name -> the kinds its hook must see, in order
    EXPECTED = {
        "ok": ["submitted", "started", "completed"],
        "failed": ["submitted", "started", "failed"],
        "canceled": ["submitted", "started", "canceled"],
        "lost": ["submitted", "lost"],
        "rejected": ["rejected"],
        "skip": ["submitted", "started", "skipped", "completed"],
        "retry": ["retrying", "submitted", "started", "completed"],
        "nojob": ["failed"],
    }
    JOB_STATUS = {"submitted": "NEW", "started": "IN_PROGRESS", "completed": "COMPLETED",
                  "canceled": "CANCELED"}

    @classmethod
    def setUpClass(cls):
        cls._init_class()
        add = cls.addClassCleanup
        cls.sim = cls._sim(add, cls.work, job_seconds=2)
        cls.recv = cls._receiver(add, cls.work)
        cls.rec = cls._records(cls.work)
        cls.sim.config(environments={"env-failed": {"final_status": "FAILED"},
                                     "env-canceled": {"final_status": "CANCELED"},
                                     "env-skip": {"job_seconds": 6}})
        cls.sim.fault([
            {"match": {"method": "GET", "path": JOB_PATH_RE % "env-lost"}, "action": "status", "status": 404,
             "times": -1},
            {"match": {"method": "POST", "path": LIST_PATH_RE % "env-rejected"}, "action": "period_rejection",
             "times": -1},
            {"match": {"method": "POST", "path": LIST_PATH_RE % "env-retry"}, "action": "status", "status": 500,
             "times": 1},
            {"match": {"method": "POST", "path": LIST_PATH_RE % "env-nojob"}, "action": "status", "status": 400,
             "body": {"success": False, "reasons": [{"code": 50000040, "message": "bad request"}]},
             "times": -1},
        ])
        cls.slot = slot_at(3, span=3)
        envs = [dict(name=n, id="env-" + n, schedule=once(cls.slot, cls.slot + 3) if n == "skip" else once(cls.slot))
                for n in cls.EXPECTED]
        cls.hook_path = "/all/" + secrets.token_hex(8)
        defaults = {
            "hooks": [{"on": ALL_KINDS,
                       "run": hook_run(cls.rec, "--out", "said {event} on stdout a=b", "--err",
                                       "said {event} on stderr")}],
            "webhooks": [{"on": ALL_KINDS, "url": cls.recv.url(cls.hook_path)}],
        }
        cls.d = cls._daemon(add, cls.work, hooks_config(cls.sim.base_url, envs, defaults=defaults))
        cls.d.start()
        total = sum(len(v) for v in cls.EXPECTED.values())
        deadline = time.time() + 30
        wait_until(lambda: sum(1 for r in hook_runs(cls.rec) if r.end) >= total and
                   len(cls.recv.received()) >= total, deadline - time.time(), 0.2)
        time.sleep(1.5)  # nothing more may come
        cls.runs = hook_runs(cls.rec)
        cls.posts = cls.recv.received()
        cls.jobs = {j["env_id"]: j for j in cls.sim.jobs()}
        wait_until(lambda: not (cls.d.state() or {}).get("outbox"), max(1, deadline - time.time()), 0.2)
        cls.state = cls.d.state()

    def setUp(self):
        pass

    def by_env(self, name):
        return [r for r in self.runs if r.environment == name]

    def run_of(self, name, kind):
        runs = [r for r in self.by_env(name) if r.kind == kind]
        self.assertEqual(len(runs), 1, "log:\n%s\n=> runs of %s/%s: %s" % (brief(self.d), name, kind, self.runs))
        return runs[0]

    def test_each_kind_reaches_the_hook_in_order(self):
        got = {n: [r.kind for r in self.by_env(n)] for n in self.EXPECTED}
        for n in self.EXPECTED:
            self.assertEqual(got[n], self.EXPECTED[n], "log:\n%s\n=> the runs of %s's hook" % (brief(self.d), n))
        self.assertFalse([r for r in self.runs if r.environment not in self.EXPECTED])

    def test_every_run_finished_and_one_at_a_time_per_environment(self):
        for name in self.EXPECTED:
            runs = self.by_env(name)
            self.assertTrue(all(r.end for r in runs), runs)
            for a, b in zip(runs, runs[1:]):
                self.assertGreaterEqual(b.t0, a.t1, "two hooks of %s at once: %s, %s" % (name, a, b))

    def test_variables(self):
        kept = {k: v for k, v in os.environ.items() if k in KEPT_VARS - {"PATH"}}
        for r in self.runs:
            env = r.env
            extra = set(env) - KEPT_VARS - EVENT_VARS
            self.assertFalse(extra, "unexpected variables in %s: %s" % (r, {k: env[k] for k in extra}))
            self.assertIn("PATH", env)
            for k, v in kept.items():
                self.assertEqual(env.get(k), v, "%s of the daemon not passed on (%s)" % (k, r))
            self.assertNotIn("REFRESHD_EVENT_TEST", env)
            self.assertEqual(env["REFRESHD_ENVIRONMENT_ID"], "env-" + r.environment)
            self.assertRegex(r.id or "", ID_RE)
            self.assertIn(r.kind, ALL_KINDS)
            self.assertTrue(os.path.isabs(env["REFRESHD_EVENT_FILE"]), env["REFRESHD_EVENT_FILE"])
            for k in ("REFRESHD_TIME", "REFRESHD_SLOT", "REFRESHD_JOB_START", "REFRESHD_JOB_END"):
                if k in env:
                    self.assertRegex(env[k], TIME_RE, "%s of %s" % (k, r))
            self.assertLess(abs(iso_to_epoch(env["REFRESHD_TIME"]) - r.t0), 10, r)  # now, give or take a start
            slot = self.slot + 3 if r.kind == "skipped" else self.slot
            self.assertEqual(env.get("REFRESHD_SLOT"), rfc3339(slot), r)
            job = self.jobs.get("env-" + r.environment)
            if r.environment in ("rejected", "nojob") or r.kind == "retrying":
                self.assertNotIn("REFRESHD_JOB_ID", env, r)
            elif r.kind == "skipped":  # the slot's own event: a job id, if any, is the one that runs
                self.assertIn(env.get("REFRESHD_JOB_ID"), (None, job and job["id"]), r)
            else:
                self.assertIsNotNone(job, r)
                self.assertEqual(env.get("REFRESHD_JOB_ID"), job["id"], r)
            if r.kind in self.JOB_STATUS:
                self.assertEqual(env.get("REFRESHD_JOB_STATUS"), self.JOB_STATUS[r.kind], r)
            if r.kind in ("completed", "failed", "canceled", "lost", "rejected", "skipped", "retrying"):
                if r.kind != "completed":
                    self.assertTrue(env.get("REFRESHD_MESSAGE"), "no message for %s" % r)
                else:
                    self.assertNotIn("REFRESHD_MESSAGE", env)

    def test_variables_of_the_ends(self):
        c = self.run_of("ok", "completed").env
        job = self.jobs["env-ok"]
        self.assertEqual(c["REFRESHD_JOB_START"], job["jobStartTime"])
        self.assertEqual(c["REFRESHD_JOB_END"], job["jobEndTime"])
        self.assertEqual(self.run_of("failed", "failed").env["REFRESHD_JOB_STATUS"], "FAILED")
        self.assertIn("FAILED", self.run_of("failed", "failed").env["REFRESHD_MESSAGE"])
        self.assertIn("CANCELED", self.run_of("canceled", "canceled").env["REFRESHD_MESSAGE"])
        self.assertIn("404", self.run_of("lost", "lost").env["REFRESHD_MESSAGE"])
        self.assertIn("Only one refresh can be performed during a set period",
                      self.run_of("rejected", "rejected").env["REFRESHD_MESSAGE"])
        self.assertIn("bad request", self.run_of("nojob", "failed").env["REFRESHD_MESSAGE"])
        self.assertIn("500", self.run_of("retry", "retrying").env["REFRESHD_MESSAGE"])
        self.assertIn("running", self.run_of("skip", "skipped").env["REFRESHD_MESSAGE"])
        s = self.run_of("ok", "submitted").env
        self.assertRegex(s.get("REFRESHD_TRACK_ID", ""), r"^[\x21-\x7e]{1,64}$", "the POST's track id")

    def test_argv_placeholders(self):
        for r in self.runs:
            want = [r.env.get("REFRESHD_" + p.upper(), "") for p in PLACEHOLDERS] + ["{x}"]
            self.assertEqual(r.start["rest"], want, r)
            argv = r.start["argv"]
            self.assertEqual(argv[0], HOOK)
            self.assertIn("said %s on stdout a=b" % r.kind, argv)

    def test_event_file(self):
        for r in self.runs:
            ev = r.start["event_file"]
            self.assertIsInstance(ev, dict, "%s: %s" % (r, ev))
            self.assertEqual(set(ev), EVENT_KEYS, r)
            self.assertEqual(ev["id"], r.id)
            self.assertEqual(ev["event"], r.kind)
            for key, var in FIELD_VARS.items():
                self.assertEqual(ev[key], r.env.get(var), "%s: %s" % (r, key))
            self.assertIs(ev["test"], False)
            self.assertIsInstance(ev["attempt"], int)
            if r.kind == "retrying":
                self.assertGreaterEqual(ev["attempt"], 1)
            self.assertEqual(r.start["event_file_mode"] & 0o077, 0, "event file readable by others")

    def test_event_ids_one_per_event(self):
        ids = [r.id for r in self.runs]
        self.assertEqual(len(ids), len(set(ids)), self.runs)

    def test_webhook_gets_every_event_with_the_same_id(self):
        self.assertEqual(len(self.posts), len(self.runs), [(p["headers"].get("x-refreshd-event"), p["status"])
                                                           for p in self.posts])
        by_id = {p["headers"].get("x-refreshd-event-id"): p for p in self.posts}
        for r in self.runs:
            p = by_id.get(r.id)
            self.assertIsNotNone(p, "no webhook POST for %s" % r)
            self.assertEqual(p["headers"].get("x-refreshd-event"), r.kind)
            self.assertTrue(p["headers"].get("content-type", "").startswith("application/json"), p["headers"])
            self.assertEqual(p["json"], r.start["event_file"], r)
            self.assertEqual(p["path"], self.hook_path)

    def test_no_secret_no_fd_stdin_devnull(self):
        for r in self.runs:
            self.assertEqual(r.start["fds"], [], "fds inherited by %s" % r)
            self.assertEqual(r.start["stdin"], "/dev/null", r)
            for k, v in r.env.items():
                self.assertNotIn(DEFAULT_SECRET, v, "%s in the hook's environment" % k)
            self.assertNotIn(SECRET_ENV, r.env)
            self.assertFalse([a for a in r.start["argv"] if DEFAULT_SECRET in a])

    def test_output_lines_logged_with_fields(self):
        for r in self.runs:
            for stream, level in (("stdout", "info"), ("stderr", "warning")):
                text = "said %s on %s" % (r.kind, stream)
                lines = self.d.events(re.escape(text), EVENT_ID=r.id, HOOK_STREAM=stream)
                self.assertEqual(len(lines), 1, "log:\n%s\n=> %s line of %s: %s" % (brief(self.d), stream, r, lines))
                line = lines[0]
                self.assertEqual(line.level, level, line.raw)
                want = "Environment '%s': hook %s (%s): %s" % (r.environment, HOOK, r.kind, text)
                if stream == "stdout":
                    want += r" a\x3db"  # the console writes '=' in a message as \x3d
                self.assertEqual(line.message, want, line.raw)
                self.assertEqual(line.get("ENVIRONMENT"), r.environment)
                self.assertEqual(line.get("EVENT"), r.kind)
                self.assertEqual(line.get("HOOK"), HOOK)
                self.assertEqual(line.get("JOB_ID"), r.env.get("REFRESHD_JOB_ID"))
            fin = self.d.events(finished_re(r.kind), EVENT_ID=r.id)
            self.assertEqual(len(fin), 1, "end of %s: %s" % (r, fin))
            self.assertEqual(fin[0].level, "info")
            self.assertEqual(fin[0].get("ENVIRONMENT"), r.environment)
            self.assertIsNone(fin[0].get("HOOK_STREAM"))
            out = self.d.events(re.escape("said %s on stdout" % r.kind), EVENT_ID=r.id)[0]
            self.assertLess(out.index, fin[0].index, "output after the end")

    def test_last_event_in_state(self):
        self.assertIsNotNone(self.state)
        self.assertFalse(self.state.get("outbox"), "outbox not emptied")
        last = self.state["environments"]["ok"]["last_event"]
        c = self.run_of("ok", "completed")
        self.assertEqual(last["event"], "completed")
        self.assertEqual(last["id"], c.id)
        self.assertRegex(last["at"] or "", TIME_RE)
        self.assertIsNone(last["error"])
        self.assertEqual(self.state["environments"]["rejected"]["last_event"]["event"], "rejected")


# ==============================================================================================
# 3. hooks failing: timeout, SIGKILL, exit status; hook_failed

class HookFailures(E2E):
    """Four environments whose completed hook fails four ways; a hook on hook_failed that fails too;
    a webhook on hook_failed."""

    CASES = {
        # name: (options, timeout, end-line regex, hook_failed message regex)
        "timeout": (["--sleep", "60"], "2s", r"ran past its timeout and was killed \(SIGTERM\) after",
                    r"ran past its timeout"),
        "stubborn": (["--ignore-term", "--sleep", "60"], "5s",
                     r"ran past its timeout and was killed \(SIGKILL\) after", r"ran past its timeout"),
        "exit3": (["--exit", "3"], None, r"failed with exit status 3 after", r"failed with exit status 3"),
        "signal": (["--kill-self"], None, r"was killed by signal SIGKILL after", r"killed by signal 9"),
    }

    @classmethod
    def setUpClass(cls):
        cls._init_class()
        add = cls.addClassCleanup
        cls.sim = cls._sim(add, cls.work, job_seconds=1)
        cls.recv = cls._receiver(add, cls.work)
        cls.rec = cls._records(cls.work)
        cls.slot = slot_at(2)
        envs = []
        for name, (opts, timeout, _, _) in cls.CASES.items():
            envs.append(dict(name=name, id="env-" + name, schedule=once(cls.slot), hooks=[
                {"on": "completed", "run": hook_run(cls.rec, *opts), "timeout": timeout},
                {"on": ["hook_failed"], "run": hook_run(cls.rec, "--exit", "1")},
            ]))
        defaults = {"webhooks": [{"on": ["hook_failed"], "url": cls.recv.url("/hf")}]}
        cls.d = cls._daemon(add, cls.work, hooks_config(cls.sim.base_url, envs, defaults=defaults))
        cls.d.start()
        cls.ends = {}
        for name in cls.CASES:
            try:
                cls.ends[name] = cls.d.wait_log(re.escape(HOOK) + " for event completed (ran|failed|was)", timeout=25,
                                                ENVIRONMENT=name)
            except Timeout:
                cls.ends[name] = None
        wait_until(lambda: len(cls.recv.received()) >= len(cls.CASES) and
                   len([r for r in hook_runs(cls.rec) if r.kind == "hook_failed" and r.end]) >= len(cls.CASES),
                   10, 0.2)
        wait_until(lambda: len(cls.d.events(r"for event hook_failed failed with exit status 1")) >= len(cls.CASES),
                   5, 0.2)
        time.sleep(2)  # no second hook_failed may come
        cls.runs = hook_runs(cls.rec)
        cls.posts = cls.recv.received()
        cls.state = cls.d.state()

    def setUp(self):
        pass

    def end(self, name):
        line = self.ends[name]
        self.assertIsNotNone(line, "log:\n%s\n=> no end of %s's hook logged" % (brief(self.d), name))
        return line

    def assert_end_said(self, name):
        self.assertRegex(self.end(name).message, self.CASES[name][2], "the end of %s's hook" % name)

    def first_run(self, name):
        runs = [r for r in self.runs if r.environment == name and r.kind == "completed"]
        self.assertEqual(len(runs), 1, runs)
        return runs[0]

    def test_timeout_kills_with_sigterm(self):
        line = self.end("timeout")
        self.assertEqual(line.level, "err", line.raw)
        r = self.first_run("timeout")
        self.assertIsNone(r.end, "the hook was not killed")
        took = after_seconds(line.message)
        self.assertGreaterEqual(took, 2, line.raw)
        self.assertLess(took, 3.5, "killed %.1fs after its start (timeout 2s)" % took)
        self.assertLess(line.t - r.t0, 3.5)
        self.assertEqual(line.get("EVENT_ID"), r.id)
        self.assertFalse(pid_alive(r.pid), "the hook still runs")
        self.assert_end_said("timeout")

    def test_sigterm_ignored_then_sigkill_10s_later(self):
        line = self.end("stubborn")
        self.assertEqual(line.level, "err", line.raw)
        r = self.first_run("stubborn")
        self.assertIsNone(r.end)
        took = after_seconds(line.message)  # timeout 5s, then SIGTERM, SIGKILL 10 s later
        self.assertGreaterEqual(took, 15, line.raw)
        self.assertLess(took, 16.5, line.raw)
        self.assertLess(line.t - r.t0, 16.5)
        self.assertFalse(pid_alive(r.pid), "the hook still runs")
        self.assert_end_said("stubborn")

    def test_exit_status_and_signal_logged(self):
        for name in ("exit3", "signal"):
            line = self.end(name)
            self.assertEqual(line.level, "err", line.raw)
            self.assertEqual(line.get("EVENT"), "completed")
            self.assertEqual(line.get("HOOK"), HOOK)
            self.assert_end_said(name)

    def test_hook_failed_posted_once_each(self):
        for name, (_, _, _, why) in self.CASES.items():
            posts = [p for p in self.posts if (p["json"] or {}).get("environment") == name]
            self.assertEqual(len(posts), 1, "hook_failed posts for %s: %s" % (name, [p["body"] for p in posts]))
            p = posts[0]
            ev = p["json"]
            self.assertEqual(p["headers"].get("x-refreshd-event"), "hook_failed")
            self.assertEqual(ev["event"], "hook_failed")
            self.assertEqual(p["headers"].get("x-refreshd-event-id"), ev["id"])
            self.assertRegex(ev["message"] or "", why)
            self.assertIn(HOOK, ev["message"])
            orig = self.end(name)  # the failed hook's end, logged with its event's fields
            self.assertNotEqual(ev["id"], orig.get("EVENT_ID"))
            self.assertEqual(ev["job_id"], self.sim.jobs("env-" + name)[0]["id"])
            self.assertEqual(ev["job_id"], orig.get("JOB_ID"))
            self.assertEqual(ev["slot"], rfc3339(self.slot))
        self.assertEqual(len(self.posts), len(self.CASES), [p["body"] for p in self.posts])

    def test_hook_on_hook_failed_runs_and_its_failure_raises_nothing(self):
        for name, (_, _, _, why) in self.CASES.items():
            runs = [r for r in self.runs if r.environment == name and r.kind == "hook_failed"]
            self.assertEqual(len(runs), 1, "hook_failed runs of %s: %s" % (name, runs))
            self.assertRegex(runs[0].env.get("REFRESHD_MESSAGE", ""), why)
            post = [p for p in self.posts if (p["json"] or {}).get("environment") == name]
            if post:
                self.assertEqual(runs[0].id, post[0]["json"]["id"])
        lines = self.d.events(r"for event hook_failed failed with exit status 1")
        self.assertEqual(len(lines), len(self.CASES), lines)
        self.assertEqual(len([r for r in self.runs if r.kind == "hook_failed"]), len(self.CASES))

    def test_error_in_state(self):
        for name in self.CASES:
            last = self.state["environments"][name]["last_event"]
            self.assertIn("hook", last["error"] or "", last)
            self.assertRegex(last["error_at"] or "", TIME_RE)


# ==============================================================================================
# 4. kill -9 while a hook runs

class CrashDuringHook(E2E):
    def test_hook_runs_again_with_the_same_id_once(self):
        sim = self.sim(job_seconds=1.5)
        rec = self.records()
        slot = slot_at(2)
        cfg = hooks_config(sim.base_url, [dict(name="uat", id="env-uat", schedule=once(slot), hooks=[
            {"on": ["completed"], "run": hook_run(rec, "--sleep", "5")}])])
        d = self.daemon(cfg)
        d.start()
        first = self.wait_runs(rec, lambda r: len(r) >= 1, 20, "the hook's first start", d)[0]
        self.assertEqual(first.kind, "completed")
        time.sleep(1.0)
        d.kill9()
        st = d.state()
        entries = [e for e in st.get("outbox", []) if e["event"]["id"] == first.id]
        self.assertEqual(len(entries), 1, "the running hook's event is not in state.json's outbox: %s"
                         % st.get("outbox"))
        self.assertEqual(len(entries[0]["pending"]), 1, entries)
        self.assertRegex(entries[0]["pending"][0], r"^hook:[0-9a-f]{32}$")
        self.assertEqual(entries[0]["event"]["event"], "completed")
        restarted = time.time()
        d.start()
        runs = self.wait_runs(rec, lambda r: len(r) >= 2 and r[1].end, 15, "the hook's second run", d)
        second = runs[1]
        self.assertEqual(second.id, first.id, "another event id after the restart")
        self.assertEqual(second.kind, "completed")
        self.assertNotEqual(second.pid, first.pid)
        self.assertLess(second.t0 - restarted, 4, "run again %.1fs after the restart" % (second.t0 - restarted))
        self.log_line(d, finished_re("completed"), 5, EVENT_ID=first.id)
        self.wait_outbox_empty(d, 5)
        self.assertEqual(d.state()["environments"]["uat"]["last_event"]["id"], first.id)
        # finished: never again, through another kill -9 and a clean stop
        d.kill9()
        d.start()
        time.sleep(3)
        d.sigterm()
        self.assertEqual(d.wait_exit(10), 0)
        d.start()
        time.sleep(2)
        runs = hook_runs(rec)
        self.assertEqual([(r.kind, r.id) for r in runs], [("completed", first.id)] * 2, runs)
        self.assertEqual(len(sim.posts("env-uat")), 1)


# ==============================================================================================
# 5. kill -9 during webhook deliveries

class CrashDuringWebhook(E2E):
    def test_undelivered_posted_again_delivered_never_again(self):
        sim = self.sim(job_seconds=1.5)
        recv = self.receiver()
        recv.plan("/fail", 500)                # 500 until told otherwise
        recv.plan("/hold", {"status": 200, "delay": 60}, 200)  # the first POST held unanswered
        slot = slot_at(2)
        envs = [dict(name="a", id="env-a", schedule=once(slot),
                     webhooks=[{"on": ["completed"], "url": recv.url("/fail")}]),
                dict(name="b", id="env-b", schedule=once(slot),
                     webhooks=[{"on": ["completed"], "url": recv.url("/hold")}])]
        d = self.daemon(hooks_config(sim.base_url, envs))
        d.start()
        recv.wait(lambda p: len([x for x in p if x["path"] == "/fail"]) >= 2 and
                  any(x["path"] == "/hold" for x in p), 20)
        self.log_line(d, r"posting event completed to webhook at 127\.0\.0\.1 failed: HTTP 500; trying again in",
                      5, ENVIRONMENT="a")
        d.kill9()
        st = d.state()
        ids = {}
        for name, path in (("a", "/fail"), ("b", "/hold")):
            ids[name] = recv.received(path)[0]["headers"]["x-refreshd-event-id"]
            entries = [e for e in st.get("outbox", []) if e["event"]["id"] == ids[name]]
            self.assertEqual(len(entries), 1, "%s's event not in the outbox: %s" % (name, st.get("outbox")))
            self.assertEqual(len(entries[0]["pending"]), 1)
            self.assertRegex(entries[0]["pending"][0], r"^webhook:[0-9a-f]{32}$")
        n_fail = len(recv.received("/fail"))
        recv.plan("/fail", 200)
        d.start()
        recv.wait(lambda p: len([x for x in p if x["path"] == "/fail"]) > n_fail and
                  len([x for x in p if x["path"] == "/hold"]) >= 2, 10)
        for name in ("a", "b"):
            self.log_line(d, r"event completed posted to webhook at 127\.0\.0\.1 \(HTTP 200\)", 5,
                          ENVIRONMENT=name, EVENT_ID=ids[name])
        self.wait_outbox_empty(d, 5)
        d.kill9()
        d.start()
        time.sleep(3)
        fail, hold = recv.received("/fail"), recv.received("/hold")
        self.assertEqual({p["headers"]["x-refreshd-event-id"] for p in fail}, {ids["a"]})
        self.assertEqual({p["headers"]["x-refreshd-event-id"] for p in hold}, {ids["b"]})
        self.assertEqual([p["status"] for p in fail], [500] * n_fail + [200], "posted again after its 200")
        self.assertEqual(len(hold), 2, "the held POST: posted again once after the restart, then never")
        self.assertEqual(len(d.events(r"posted to webhook")), 0, "delivered again after the last restart")


# ==============================================================================================
# 6. retries and give-ups

class WebhookRetries(E2E):
    def test_500_500_200_then_503_retry_after_then_404_given_up(self):
        sim = self.sim(job_seconds=1)
        recv = self.receiver()
        recv.plan("/flaky", 500, 500, 200)
        recv.plan("/busy", {"status": 503, "headers": {"Retry-After": "3"}}, 200)
        recv.plan("/gone", 404)
        slot = slot_at(2)
        envs = [dict(name=n, id="env-" + n, schedule=once(slot),
                     webhooks=[{"on": ["completed"], "url": recv.url("/" + n)}]) for n in ("flaky", "busy", "gone")]
        d = self.daemon(hooks_config(sim.base_url, envs))
        d.start()
        recv.wait(lambda p: len([x for x in p if x["path"] == "/flaky"]) >= 3 and
                  len([x for x in p if x["path"] == "/busy"]) >= 2 and any(x["path"] == "/gone" for x in p), 25)
        self.log_line(d, r"given up", 5, ENVIRONMENT="gone")
        time.sleep(3)  # nothing more
        flaky, busy, gone = recv.received("/flaky"), recv.received("/busy"), recv.received("/gone")

        self.assertEqual([p["status"] for p in flaky], [500, 500, 200])
        self.assertEqual(len({p["headers"]["x-refreshd-event-id"] for p in flaky}), 1)
        self.assertEqual(len({p["body"] for p in flaky}), 1, "the body changed between attempts")
        g1, g2 = flaky[1]["t"] - flaky[0]["t"], flaky[2]["t"] - flaky[1]["t"]
        self.assertGreater(g1, 0.9, "first retry %.2fs after the 500" % g1)
        self.assertLess(g1, 2.5, g1)
        self.assertGreater(g2, 1.9, "second retry %.2fs after the 500" % g2)
        self.assertLess(g2, 4, g2)
        retries = d.events(r"posting event completed to webhook at 127\.0\.0\.1 failed: HTTP 500; trying again in",
                           ENVIRONMENT="flaky")
        self.assertEqual([re.search(r"trying again in (\S+)", l.message).group(1) for l in retries], ["1s", "2s"])
        self.assertTrue(all(l.level == "warning" and l.get("WEBHOOK_HOST") == "127.0.0.1" for l in retries),
                        retries)
        ok = d.events(r"event completed posted to webhook at 127\.0\.0\.1 \(HTTP 200\)", ENVIRONMENT="flaky")
        self.assertEqual(len(ok), 1, ok)
        self.assertEqual(ok[0].get("EVENT_ID"), flaky[0]["headers"]["x-refreshd-event-id"])

        h = flaky[2]["headers"]
        self.assertTrue(h.get("content-type", "").startswith("application/json"), h)
        self.assertEqual(h.get("x-refreshd-event"), "completed")
        ev = flaky[2]["json"]
        self.assertEqual(set(ev), EVENT_KEYS)
        self.assertEqual(ev["id"], h.get("x-refreshd-event-id"))
        self.assertEqual((ev["event"], ev["environment"], ev["environment_id"], ev["slot"], ev["job_status"]),
                         ("completed", "flaky", "env-flaky", rfc3339(slot), "COMPLETED"))
        self.assertEqual(ev["job_id"], sim.jobs("env-flaky")[0]["id"])

        self.assertEqual([p["status"] for p in busy], [503, 200])
        self.assertGreater(busy[1]["t"] - busy[0]["t"], 2.9, "Retry-After: 3 not honoured")
        self.assertTrue(d.events(r"failed: HTTP 503; trying again in 3s", ENVIRONMENT="busy"), brief(d))

        self.assertEqual([p["status"] for p in gone], [404], "a 404 is not retried")
        given = d.events(r"posting event completed to webhook at 127\.0\.0\.1 failed: HTTP 404; given up",
                         ENVIRONMENT="gone")
        self.assertEqual(len(given), 1, brief(d))
        self.assertEqual(given[0].level, "err")
        self.assertFalse(d.events(r"posted to webhook", ENVIRONMENT="gone"))
        self.wait_outbox_empty(d, 5)
        last = d.state()["environments"]["gone"]["last_event"]
        self.assertIn("HTTP 404", last["error"] or "", last)


# ==============================================================================================
# 7. secrets: the webhook URLs' paths and the client secret

class Secrets(E2E):
    def test_webhook_url_and_client_secret_never_shown(self):
        sim = self.sim(job_seconds=1)
        recv = self.receiver()
        rec = self.records()
        tokens = {n: "whsec-%s-%s" % (n, secrets.token_hex(12)) for n in ("url", "file", "env")}
        recv.plan("/t/" + tokens["url"], 500, 200)
        recv.plan("/t/" + tokens["file"], 404)
        url_file = os.path.join(self.work, "webhook.url")
        with open(url_file, "w") as f:
            f.write(recv.url("/t/" + tokens["file"]) + "\n")
        os.chmod(url_file, 0o600)
        env_url = "http://127.0.0.1:%d/t/%s" % (free_port(), tokens["env"])  # nothing listens there
        extra_env = {"REFRESHD_E2E_WEBHOOK_URL": env_url}
        slot = slot_at(2)
        hook = {"on": ["submitted", "completed"], "run": hook_run(rec)}
        envs = [dict(name="s1", id="env-s1", schedule=once(slot), hooks=[hook],
                     webhooks=[{"on": ["completed"], "url": recv.url("/t/" + tokens["url"])}]),
                dict(name="s2", id="env-s2", schedule=once(slot), hooks=[hook],
                     webhooks=[{"on": ["completed"], "url_file": url_file}]),
                dict(name="s3", id="env-s3", schedule=once(slot), hooks=[hook], retry_for="3s",
                     webhooks=[{"on": ["completed"], "url_env": "REFRESHD_E2E_WEBHOOK_URL"}])]
        d = self.daemon(hooks_config(sim.base_url, envs), extra_env=extra_env)
        d.start()
        recv.wait(lambda p: len(p) >= 3, 20)
        self.log_line(d, r"posted to webhook at 127\.0\.0\.1 \(HTTP 200\)", 5, ENVIRONMENT="s1")
        self.log_line(d, r"failed: HTTP 404; given up", 5, ENVIRONMENT="s2")
        self.log_line(d, r"given up", 10, ENVIRONMENT="s3")
        self.assertTrue(d.events(r"posting event completed to webhook at 127\.0\.0\.1 failed: .*trying again",
                                 ENVIRONMENT="s3"), brief(d))
        self.wait_outbox_empty(d, 5)
        runs = self.wait_runs(rec, lambda r: len([x for x in r if x.end]) >= 6, 5, "six hook runs", d)
        status = [run_status(d, env=extra_env), run_status(d, "--json", env=extra_env)]
        d.sigterm()
        self.assertEqual(d.wait_exit(10), 0)

        enc = urllib.parse.quote(DEFAULT_SECRET, safe="")
        needles = dict(("webhook URL path (%s)" % n, t) for n, t in tokens.items())
        needles["client secret"] = DEFAULT_SECRET
        needles["client secret (URL-encoded)"] = enc
        places = [("stderr", l) for l in d.all_lines] + [("stdout", l) for l in d.all_stdout]
        places += [("sd_notify", n) for n in d.all_notify]
        places += [("state " + p, t) for p, t in tree_text(d.state_dir)]
        places += [("status", t) for _, t in status]
        for r in runs:
            places += [("hook environment %s of %s" % (k, r), v) for k, v in r.env.items()]
            places += [("hook argv of %s" % r, a) for a in r.start["argv"]]
        bad = ["%s in %s: %s" % (what, where, text[:300]) for what, needle in needles.items()
               for where, text in places if needle in text]
        self.assertEqual(bad, [])
        self.assertTrue(d.events(r"webhook at 127\.0\.0\.1", ENVIRONMENT="s2"), "the host is logged")
        self.assertFalse([r for r in runs if "REFRESHD_E2E_WEBHOOK_URL" in r.env or SECRET_ENV in r.env])


# ==============================================================================================
# 8. format: slack

class SlackFormat(E2E):
    def test_slack_text(self):
        sim = self.sim(job_seconds=1)
        recv = self.receiver()
        slot = slot_at(2)
        envs = [dict(name="uat-eu", id="env-slack", schedule=once(slot),
                     webhooks=[{"on": ["submitted", "completed"], "url": recv.url("/slack"), "format": "slack"}])]
        d = self.daemon(hooks_config(sim.base_url, envs))
        d.start()
        posts = recv.wait(lambda p: len(p) >= 2, 20)
        job_id = sim.jobs("env-slack")[0]["id"]
        self.assertEqual([p["headers"].get("x-refreshd-event") for p in posts], ["submitted", "completed"])
        for p in posts:
            kind = p["headers"]["x-refreshd-event"]
            self.assertTrue(p["headers"].get("content-type", "").startswith("application/json"))
            self.assertIsInstance(p["json"], dict, p["body"])
            self.assertEqual(list(p["json"]), ["text"], p["body"])
            text = p["json"]["text"]
            self.assertIsInstance(text, str)
            self.assertNotIn("\n", text)
            self.assertIn("uat-eu", text)
            self.assertIn(kind, text)
            self.assertIn(job_id, text)
            self.assertRegex(p["headers"].get("x-refreshd-event-id", ""), ID_RE)


class StartFailure(E2E):
    def test_a_hook_that_cannot_start_raises_hook_failed(self):
        # The program is there when the config is loaded, and gone when its event comes.
        prog = os.path.join(self.work, "vanishing-hook")
        shutil.copy("/bin/true", prog)
        sim = self.sim(job_seconds=1)
        recv = self.receiver()
        slot = slot_at(10)
        envs = [dict(name="gone-prog", id="env-gone", schedule=once(slot),
                     hooks=[{"on": ["submitted"], "run": [prog]}],
                     webhooks=[{"on": ["hook_failed"], "url": recv.url("/failed")}])]
        d = self.daemon(hooks_config(sim.base_url, envs))
        d.start()
        self.log_line(d, r"refreshd \S+ started", 10)
        os.unlink(prog)
        self.assertLess(time.time(), slot - 1, "the program had to go before its slot")
        self.log_line(d, r"hook .*vanishing-hook for event submitted could not be started: No such file", 15,
                      ENVIRONMENT="gone-prog")
        posts = recv.wait(lambda p: len(p) >= 1, 15)
        self.assertEqual(posts[0]["json"]["event"], "hook_failed")
        self.assertIn("could not be started", posts[0]["json"]["message"])
        # The state is written at the end of the turn that logged it: wait for the file to show it.
        def last_error():
            return (((d.state() or {}).get("environments", {}).get("gone-prog") or {}).get("last_event")
                    or {}).get("error") or ""
        wait_until(lambda: "could not be started" in last_error(), 10, 0.2)
        self.assertIn("could not be started", last_error())
        self.wait_outbox_empty(d, 10)


# ==============================================================================================
# 9. max_concurrent_hooks

class MaxConcurrentHooks(E2E):
    def test_one_at_a_time_daemon_wide(self):
        sim = self.sim(job_seconds=1)
        slot = slot_at(2)
        recs, ds = {}, {}
        for label, top in (("one", {"max_concurrent_hooks": 1}), ("default", None)):
            recs[label] = self.records("records-" + label)
            envs = [dict(name="%s-%d" % (label, i), id="env-%s-%d" % (label, i), schedule=once(slot))
                    for i in (1, 2)]
            hooks = [{"on": ["submitted", "completed"], "run": hook_run(recs[label], "--sleep", "2")}]
            ds[label] = self.daemon(hooks_config(sim.base_url, envs, defaults={"hooks": hooks}, top=top),
                                    name="daemon-" + label)
            ds[label].start()
        for label in recs:
            self.wait_runs(recs[label], lambda r: len([x for x in r if x.end]) >= 4, 30,
                           "four hook runs (%s)" % label, ds[label])
        one = hook_runs(recs["one"])
        self.assertEqual(len(one), 4, one)
        for a, b in zip(one, one[1:]):
            self.assertGreaterEqual(b.t0, a.t1, "two hooks at once with max_concurrent_hooks 1: %s, %s" % (a, b))
        self.assertEqual({r.environment for r in one}, {"one-1", "one-2"})
        # the control: without the limit, the two environments' hooks overlap
        other = hook_runs(recs["default"])
        overlap = [(a, b) for a in other for b in other
                   if a.environment != b.environment and a.t0 < b.t0 < a.t1]
        self.assertTrue(overlap, "with the default limit the environments' hooks never overlapped: %s" % other)


class PerEnvironmentOrder(E2E):
    def test_one_environments_hooks_one_at_a_time_in_event_order(self):
        # Two hooks on three events that come faster than the hooks end: each waits for the one before.
        sim = self.sim(job_seconds=2)
        rec = self.records()
        slot = slot_at(2)
        hooks = [{"on": ["submitted", "started", "completed"],
                  "run": hook_run(rec, "--sleep", "1", words=[name, "{event}"])} for name in ("A", "B")]
        d = self.daemon(hooks_config(sim.base_url, [dict(name="uat", id="env-uat", schedule=once(slot),
                                                         hooks=hooks)]))
        d.start()
        runs = self.wait_runs(rec, lambda r: len([x for x in r if x.end]) >= 6, 30, "six hook runs", d)
        self.assertEqual([(r.kind, r.start["rest"][0]) for r in runs],
                         [(k, h) for k in ("submitted", "started", "completed") for h in ("A", "B")], runs)
        for a, b in zip(runs, runs[1:]):
            self.assertGreaterEqual(b.t0, a.t1, "two hooks of one environment at once: %s, %s" % (a, b))
        job = sim.jobs("env-uat")[0]
        started_at = iso_to_epoch(job["jobStartTime"])
        self.assertLess(started_at, runs[1].t1, "the job started while the first event's hooks ran (the test's "
                        "premise)")


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
    global BINARY, ARTIFACTS, HOOK
    if len(argv) < 2:
        print("usage: %s /path/to/refreshd [NAME-FILTER...]" % argv[0], file=sys.stderr)
        return 2
    if not os.access(argv[1], os.X_OK):
        print("not an executable: %s" % argv[1], file=sys.stderr)
        return 2
    filters = argv[2:]
    ARTIFACTS = tempfile.mkdtemp(prefix="refreshd-hooks-")
    # A private copy, so that a rebuild of the tree during the run changes nothing.
    BINARY = os.path.join(ARTIFACTS, "refreshd")
    shutil.copy2(os.path.abspath(argv[1]), BINARY)
    HOOK = write_hook_program(ARTIFACTS)
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__])
    if filters:
        suite = unittest.TestSuite([t for t in flatten(suite) if any(f in t.id() for f in filters)])
    return run_parallel(_units(suite), int(os.environ.get("REFRESHD_E2E_JOBS", "9")),
                        "refreshd hooks e2e (%s)" % os.path.abspath(argv[1]), ARTIFACTS)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
