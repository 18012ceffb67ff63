#!/usr/bin/env python3
"""Daemon benchmarks for refreshd: firing precision, idle cost, scale, memory (issue text, items 2-5).

    python3 tests/bench/bench-daemon.py build/daemon/refreshd [--quick] [--only NAMES] [--json FILE]

NAMES (comma-separated): precision, hooks, burst, idle, scale, load; and hooks-starting (not run by
default: a slot while 100 hooks are being started, about 75 s). A full run takes about 15 minutes
on the project's 2-vCPU machine, --quick about 7 (a daemon that is not ready within 45 s is given up;
hooks alone: about 4.5 minutes, --quick 2.5). Needs root (cron runs in a private mount
namespace), strace, cron (`apt-get install strace cron`) and cc. Method and results:
tests/bench/bench-daemon.md. Prints a results table (markdown) at the end; exits non-zero only
when something could not be run, never because a target was missed.

Peers measured in the same run: Debian's cron (idle wake-ups and CPU; firing delay of a
`* * * * *` job), each in its own mount namespace so that it sees only the crontab written here.
Receivers: the bundled simulator as shipped (tests/sim/zuora_sim.py), the same with TCP_NODELAY
(sim-nodelay.py), and bench-rx (bench-rx.c: C, epoll, backlog 4096).
"""

import argparse
import ctypes
import datetime as dt
import json
import math
import os
import re
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zoneinfo

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
import harness as H  # noqa: E402

SIM_STOCK = H.SIM_PATH
SIM_NODELAY = os.path.join(HERE, "sim-nodelay.py")
CLK_TCK = os.sysconf("SC_CLK_TCK")
CAP = [45]  # seconds a daemon may take to become ready before a figure is given up
PAGE = os.sysconf("SC_PAGE_SIZE")
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo"]


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------
# statistics

def pct(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    v = sorted(values)
    if not v:
        return float("nan")
    k = max(1, math.ceil(p / 100 * len(v)))
    return v[k - 1]


def ms(x):
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else "%.1f ms" % (x * 1000)


def parse_iso(s):
    """'2026-11-29T01:15:17Z' or '2026-11-29T01:15:17.000Z' -> epoch seconds (float)."""
    s = s.rstrip("Z")
    fmt = "%Y-%m-%dT%H:%M:%S.%f" if "." in s else "%Y-%m-%dT%H:%M:%S"
    return dt.datetime.strptime(s, fmt).replace(tzinfo=dt.timezone.utc).timestamp()


# ------------------------------------------------------------------------------------------------
# a process's costs, from /proc

def proc_sample(pid):
    """RSS, peak RSS, RSS of anonymous memory and of mapped files (KiB), CPU (s, utime+stime incl. dead threads), run time (s, schedstat of the
    live tasks: ns resolution), context switches (voluntary, involuntary) of the live tasks."""
    out = {"t": time.time()}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[k] = int(v.split()[0])
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    out["cpu"] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    run_ns, vol, invol = 0, 0, 0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                run_ns += int(f.read().split()[0])
            with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches"):
                        vol += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches"):
                        invol += int(line.split()[1])
        except FileNotFoundError:
            pass
    out["run"] = run_ns / 1e9
    out["vcsw"], out["ivcsw"] = vol, invol
    return out


class Strace:
    """`strace -f -c -p PID` for a window; .stop() returns {syscall: calls}."""

    def __init__(self, pid, path):
        self.path = path
        self.proc = subprocess.Popen(["strace", "-f", "-c", "-o", path, "-p", str(pid)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        calls = {}
        try:
            with open(self.path) as f:
                for line in f:
                    m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$", line)
                    if m and m.group(2) != "total":
                        calls[m.group(2)] = int(m.group(1))
        except FileNotFoundError:
            pass
        return calls


class StateWrites:
    """Counts renames onto DIR/state.json (one per state write) with inotify, with their times."""
    IN_MOVED_TO = 0x80

    def __init__(self, directory):
        libc = ctypes.CDLL(None, use_errno=True)
        self.fd = libc.inotify_init1(os.O_CLOEXEC)
        if self.fd < 0 or libc.inotify_add_watch(self.fd, directory.encode(), self.IN_MOVED_TO) < 0:
            raise OSError(ctypes.get_errno(), "inotify")
        self.times = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            try:
                data = os.read(self.fd, 65536)
            except OSError:
                return
            now = time.time()
            i = 0
            while i + 16 <= len(data):
                _wd, _mask, _cookie, length = struct.unpack_from("iIII", data, i)
                name = data[i + 16:i + 16 + length].rstrip(b"\0")
                if name == b"state.json":
                    self.times.append(now)
                i += 16 + length

    def count(self, t0, t1):
        return sum(1 for t in self.times if t0 <= t <= t1)

    def close(self):
        os.close(self.fd)


# ------------------------------------------------------------------------------------------------
# receivers: the simulator (stock or TCP_NODELAY) and bench-rx, with one interface

class SimReceiver:
    def __init__(self, workdir, name, job_seconds, nodelay=False, post_status=None):
        self.kind = "sim-nodelay" if nodelay else "sim"
        H.SIM_PATH = SIM_NODELAY if nodelay else SIM_STOCK
        try:
            self.sim = H.Sim(workdir, name=name, job_seconds=job_seconds)
        finally:
            H.SIM_PATH = SIM_STOCK
        self.base_url = self.sim.base_url
        self.pid = self.sim.proc.pid
        if post_status:
            self.sim.fault({"match": {"method": "POST", "path": "^/test-environments/[^/]+/jobs$"},
                            "action": "status", "status": post_status, "times": -1,
                            "body": {"success": False, "reasons": [
                                {"code": 50000040, "message": "benchmark: refused after arrival"}]}})

    def requests(self, path=None, method=None):
        """[(time, method, path)]"""
        return [(r["time"], r["method"], r["path"]) for r in self.sim.requests(path=path, method=method)]

    def clear(self):
        self.sim._call("POST", "/_sim/requests/clear")

    def stop(self):
        self.sim.stop()


class RxReceiver:
    def __init__(self, workdir, name, binary, job_seconds, post_status=None):
        self.kind = "bench-rx"
        port_file = os.path.join(workdir, name + ".port")
        if os.path.exists(port_file):
            os.unlink(port_file)  # a reused --keep directory: never read the last run's port
        argv = [binary, "--port", "0", "--port-file", port_file, "--job-seconds", str(job_seconds)]
        if post_status:
            argv += ["--post-status", str(post_status)]
        self.out = open(os.path.join(workdir, name + ".out"), "w")
        self.proc = subprocess.Popen(argv, stdout=self.out, stderr=self.out)
        self.pid = self.proc.pid
        deadline = time.time() + 10
        while not os.path.exists(port_file):
            if time.time() > deadline or self.proc.poll() is not None:
                raise RuntimeError("bench-rx did not start")
            time.sleep(0.02)
        with open(port_file) as f:
            self.base_url = "http://127.0.0.1:%d" % int(f.read())

    def _get(self, path, method="GET"):
        req = urllib.request.Request(self.base_url + path, method=method, data=b"" if method == "POST" else None)
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.read().decode()

    def requests(self, path=None, method=None):
        rx = re.compile(path) if path else None
        out = []
        for line in self._get("/_rx/requests").splitlines():
            _seq, t, m, p = line.split("\t")
            if (method is None or m == method) and (rx is None or rx.search(p)):
                out.append((float(t), m, p))
        return out

    def stats(self):
        return json.loads(self._get("/_rx/stats"))

    def clear(self):
        self._get("/_rx/clear", "POST")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out.close()


def build_rx(workdir):
    out = os.path.join(workdir, "bench-rx")
    cc = os.environ.get("CC", "cc")
    subprocess.run([cc, "-O2", "-o", out, os.path.join(HERE, "bench-rx.c")], check=True)
    return out


# ------------------------------------------------------------------------------------------------
# the peer: Debian's cron, alone in a mount namespace

class Cron:
    """/usr/sbin/cron -f seeing only CRONTAB (as /etc/crontab): empty /etc/cron.d and spool, a
    private /run for its pid file. proc.pid is cron's pid (sh execs it)."""

    def __init__(self, workdir, name, crontab):
        d = os.path.join(workdir, name)
        for sub in ("cron.d", "spool", "run"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        tab = os.path.join(d, "crontab")
        with open(tab, "w") as f:
            f.write("SHELL=/bin/sh\nPATH=/usr/bin:/bin\n" + crontab)
        os.chmod(tab, 0o644)
        os.chmod(os.path.join(d, "spool"), 0o730)
        script = ("set -e; mount --bind {d}/cron.d /etc/cron.d; mount --bind {tab} /etc/crontab; "
                  "mount --bind {d}/spool /var/spool/cron/crontabs; mount -t tmpfs tmpfs /run; "
                  "exec /usr/sbin/cron -f").format(d=d, tab=tab)
        self.log = open(os.path.join(d, "cron.out"), "w")
        self.proc = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                                     stdout=self.log, stderr=self.log)
        time.sleep(0.5)
        if self.proc.poll() is not None:
            raise RuntimeError("cron did not start (see %s/cron.out)" % d)
        self.pid = self.proc.pid

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def cron_available():
    return os.geteuid() == 0 and os.path.exists("/usr/sbin/cron") and shutil.which("unshare") \
        and os.path.isdir("/var/spool/cron/crontabs") and os.path.isdir("/etc/cron.d")


# ------------------------------------------------------------------------------------------------
# configs

def far_schedule(i, zone):
    """A weekly schedule in ZONE whose next fire is at least an hour away (2..21 h ahead)."""
    now = dt.datetime.now(zoneinfo.ZoneInfo(zone))
    hour = (now.hour + 2 + i % 20) % 24
    return "%d %d * * %d" % (i % 60, hour, i % 7)


def once_at(t):
    """A 6-field schedule firing at epoch second T (UTC) once a year."""
    u = time.gmtime(t)
    return "%d %d %d %d %d *" % (u.tm_sec, u.tm_min, u.tm_hour, u.tm_mday, u.tm_mon)


def daemon_config(base_url, envs, max_concurrent=None, poll="1s"):
    z = {"request_timeout": "30s"}
    if max_concurrent:
        z["max_concurrent_requests"] = max_concurrent
    return H.make_config(base_url, envs, defaults={"poll_interval": poll}, zuora=z)


UNIT = os.path.join(HERE, "..", "..", "systemd", "refreshd.service.in")


def unit_environment():
    """The variables the shipped unit sets with Environment=: every daemon here gets them, as under systemd."""
    env = {}
    with open(UNIT) as f:
        for line in f:
            if line.startswith("Environment="):
                for item in shlex.split(line[len("Environment="):]):
                    k, _, v = item.partition("=")
                    env[k] = v
    return env


def new_daemon(binary, workdir, config, name, extra_env=None):
    return H.Daemon(binary, workdir, config, name=name, extra_env=dict(unit_environment(), **(extra_env or {})))


def start_daemon(binary, workdir, name, config, timeout=60, extra_env=None):
    d = new_daemon(binary, workdir, config, name, extra_env=extra_env)
    d.start(timeout=timeout)
    return d


def ready_time(d, since=0):
    i, t, _ = d.wait_notify(r"(^|\n)READY=1($|\n)", 60, since=since)
    return i, t


# ------------------------------------------------------------------------------------------------
# 2. firing precision, one environment

def bench_precision(ctx, receiver_kind, fires):
    """One environment, '* * * * * *': a slot every second. The receiver answers the POST 400 after
    recording it, so the slot ends there and the next second fires again (a 200 would start a job
    and the next slots would be skipped while it runs). Delay = arrival - slot."""
    wd = ctx.dir("precision-" + receiver_kind)
    if receiver_kind == "bench-rx":
        rcv = RxReceiver(wd, "rx", ctx.rx, 1, post_status=400)
    else:
        rcv = SimReceiver(wd, "sim", 1, nodelay=receiver_kind == "sim-nodelay", post_status=400)
    env_id = "prec-1"
    cfg = daemon_config(rcv.base_url, [{"name": "p1", "id": env_id, "schedule": "* * * * * *"}])
    d = start_daemon(ctx.binary, wd, "daemon", cfg)
    try:
        deadline = time.time() + fires + 15
        while time.time() < deadline:
            time.sleep(1)
            if len(rcv.requests(path="/jobs$", method="POST")) >= fires + 1:
                break
    finally:
        d.stop()
    reqs = rcv.requests()
    rcv.stop()
    dues = {}
    for line in d.events("is due"):
        slot = parse_iso(line.get("SLOT"))
        dues[slot] = parse_iso(line.ts)
    rows = []
    for slot in sorted(dues):
        inside = [r for r in reqs if slot <= r[0] < slot + 1]
        first = lambda m, rx: next((r[0] - slot for r in inside if r[1] == m and re.search(rx, r[2])), None)
        # The eligibility GET leaves ahead of the slot (halfway there with a slot every second).
        near = [r[0] - slot for r in reqs if slot - 0.9 <= r[0] < slot + 0.4 and r[1] == "GET"
                and re.search(r"^/test-environments/[^/]+$", r[2])]
        row = {"slot": slot, "due": dues[slot] - slot,
               "token": first("POST", r"^/oauth/token$"),
               "env": near[-1] if near else None,
               "list": first("GET", r"/jobs$"),
               "post": first("POST", r"/jobs$")}
        if row["post"] is not None:
            rows.append(row)
    first_fire, warm = rows[0], rows[1:fires + 1]
    res = {"receiver": receiver_kind, "fires": len(warm), "first": first_fire, "rows": rows}
    for k in ("due", "env", "list", "post"):
        vals = [r[k] for r in warm if r[k] is not None]
        res[k] = {"p50": pct(vals, 50), "p99": pct(vals, 99), "max": max(vals) if vals else None}
    allpost = [r["post"] for r in rows[:fires]]
    res["post_incl_first"] = {"p50": pct(allpost, 50), "p99": pct(allpost, 99), "n": len(allpost)}
    log("precision %s: %d warm fires, POST p50 %s p99 %s; first fire POST %s (token %s)" % (
        receiver_kind, len(warm), ms(res["post"]["p50"]), ms(res["post"]["p99"]), ms(first_fire["post"]),
        ms(first_fire["token"])))
    return res


# ------------------------------------------------------------------------------------------------
# 2b. 1,000 environments due in the same second

def bench_burst(ctx, receiver_kind, n=1000):
    wd = ctx.dir("burst-" + receiver_kind)
    if receiver_kind == "bench-rx":
        rcv = RxReceiver(wd, "rx", ctx.rx, 3600)
    else:
        rcv = SimReceiver(wd, "sim", 3600, nodelay=receiver_kind == "sim-nodelay")
    slot = int(time.time()) + 6
    envs = [{"name": "b%04d" % i, "id": "burst-%04d" % i, "schedule": once_at(slot)} for i in range(n)]
    cfg = daemon_config(rcv.base_url, envs, max_concurrent=1000, poll="60s")
    d = start_daemon(ctx.binary, wd, "daemon", cfg)
    writes = StateWrites(d.state_dir)
    try:
        # From before the eligibility checks, which leave a second ahead of the slot.
        while time.time() < slot - 1.5:
            time.sleep(0.1)
        s0 = proc_sample(d.proc.pid)
        deadline = slot + 45
        posts = []
        while time.time() < deadline:
            time.sleep(0.5)
            posts = rcv.requests(path="/jobs$", method="POST")
            if len(posts) >= n:
                break
        time.sleep(0.5)
        s1 = proc_sample(d.proc.pid)
        stats = rcv.stats() if receiver_kind == "bench-rx" else None
    finally:
        d.stop()
    reqs = rcv.requests()
    rcv.stop()
    writes.close()
    posts = sorted(r[0] - slot for r in reqs if r[1] == "POST" and r[2].endswith("/jobs"))
    envg = sorted(r[0] - slot for r in reqs if r[1] == "GET" and re.match(r"^/test-environments/[^/]+$", r[2]))
    lists = sorted(r[0] - slot for r in reqs if r[1] == "GET" and r[2].endswith("/jobs"))
    token = [r[0] - slot for r in reqs if r[2] == "/oauth/token"]
    dues = sorted(parse_iso(l.ts) - slot for l in d.events("is due"))
    res = {"receiver": receiver_kind, "n": n, "posts": len(posts),
           "post_p50": pct(posts, 50), "post_p99": pct(posts, 99), "post_max": posts[-1] if posts else None,
           "within_1s": sum(1 for p in posts if p <= 1.0),
           "token": token[0] if token else None,
           "due_first": dues[0] if dues else None, "due_last": dues[-1] if dues else None,
           "env_first": envg[0] if envg else None, "env_last": envg[-1] if envg else None,
           "list_first": lists[0] if lists else None, "list_last": lists[-1] if lists else None,
           "state_writes": writes.count(slot - 1.5, slot + (posts[-1] if posts else 20) + 0.5),
           "state_writes_ahead": writes.count(slot - 1.5, slot),
           "cpu_s": s1["cpu"] - s0["cpu"], "rx_stats": stats}
    log("burst %d @%s: %d/%d POSTs, p50 %s p99 %s max %s, %d within 1 s, %d state writes (%d before the slot)" % (
        n, receiver_kind, len(posts), n, ms(res["post_p50"]), ms(res["post_p99"]), ms(res["post_max"]),
        res["within_1s"], res["state_writes"], res["state_writes_ahead"]))
    return res


def bench_receiver(ctx, receiver_kind, n=1000):
    """Can the receiver take a burst? curl --parallel (1,000 at once, new connections) sends N
    GET /test-environments/{id}, then N POST .../jobs; the time until the last answer is the
    receiver's, with no refreshd involved."""
    if not shutil.which("curl"):
        return None
    wd = ctx.dir("receiver-" + receiver_kind)
    if receiver_kind == "bench-rx":
        rcv = RxReceiver(wd, "rx", ctx.rx, 3600)
    else:
        rcv = SimReceiver(wd, "sim", 3600, nodelay=receiver_kind == "sim-nodelay")
    try:
        req = urllib.request.Request(rcv.base_url + "/oauth/token", method="POST", data=(
            "grant_type=client_credentials&client_id=%s&client_secret=%s" % (H.CLIENT_ID, H.DEFAULT_SECRET)).encode())
        with urllib.request.urlopen(req, timeout=10) as resp:
            token = json.loads(resp.read())["access_token"]
        res = {"receiver": receiver_kind, "n": n}
        for what, extra in (("get", ""), ("post", 'request = "POST"\ndata = "{\\"jobType\\":\\"REFRESH\\"}"\n'
                                                   'header = "Content-Type: application/json"\n')):
            cfg = os.path.join(wd, what + ".curl")
            with open(cfg, "w") as f:
                f.write(extra)  # options are global in a curl config (a repeated 'data' would be joined)
                for i in range(n):
                    f.write('url = "%s/test-environments/cap-%04d%s"\noutput = "/dev/null"\n' % (
                        rcv.base_url, i, "/jobs" if what == "post" else ""))
            t0 = time.time()
            p = subprocess.run(["curl", "-sS", "--parallel", "--parallel-immediate", "--parallel-max", str(n),
                                "-H", "Authorization: Bearer " + token, "-w", "%{http_code}\n", "-K", cfg],
                               capture_output=True, text=True, timeout=120)
            res[what + "_s"] = time.time() - t0
            res[what + "_ok"] = sum(1 for c in p.stdout.split() if c.startswith("2"))
        log("receiver %s: %d parallel GETs in %.2f s (%d ok), %d parallel POSTs in %.2f s (%d ok)" % (
            receiver_kind, n, res["get_s"], res["get_ok"], n, res["post_s"], res["post_ok"]))
        return res
    finally:
        rcv.stop()


# ------------------------------------------------------------------------------------------------
# 2c. firing delay with 100 hooks running at the slot's instant, and without, interleaved

HOOK_SLEEP = 3  # seconds: a hook started just after its slot (x0) still runs at x2, and is gone by x4


def daemon_children(pid):
    """{child pid: comm} of every thread of PID."""
    out = {}
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except FileNotFoundError:
        return out
    for tid in tids:
        try:
            with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                kids = [int(x) for x in f.read().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
        for c in kids:
            try:
                with open("/proc/%d/comm" % c) as f:
                    out[c] = f.read().strip()
            except (FileNotFoundError, ProcessLookupError):
                pass
    return out


def parse_took(s):
    """'3s2ms' (duration_format) -> seconds."""
    units = {"d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+)(ms|d|h|m|s)", s or "")
    return sum(int(n) * units[u] for n, u in parts) if parts else None


def bootstrap_median_diff(a, b, n=4000, seed=1):
    """95% percentile interval of median(A) - median(B) (nearest rank), by resampling each set."""
    import random
    rnd = random.Random(seed)
    diffs = sorted(pct(rnd.choices(a, k=len(a)), 50) - pct(rnd.choices(b, k=len(b)), 50) for _ in range(n))
    return diffs[int(0.025 * n)], diffs[int(0.975 * n) - 1]


def bench_hooks(ctx, cycles, n_hooks=100, on="submitted", group_poll=None):
    """One measured environment M, '2/5 * * * * *': slots at x2 and x7 of every 10 s. Group A, N_HOOKS
    environments with a hook on 'submitted' (/bin/sleep HOOK_SLEEP), fires at x0: its hooks run at
    M's x2 slot. Group B, N_HOOKS environments without hooks, fires at x5: the same load 2 s before
    M's x7 slot, minus the hooks. Delay = M's POST arrival - slot, as in the precision figure. Every
    POST is answered 200 with a job of 0.5 s (one poll a second later ends it). Hooks running at each
    measured slot: the daemon's children at slot - 0.2 s and slot + 0.2 s (the same pids, named
    'sleep'), and the log's 'hook ... finished after D' lines (end - D .. end covers the slot).
    ON and GROUP_POLL (the poll_interval of A and B) are for trying other timings by hand:
    on="completed" with group_poll="1500ms" starts A's hooks at A's first poll, about 1.5 s after
    its slot, so that they are being started at M's x2 slot instead of running."""
    wd = ctx.dir("hooks")
    rcv = RxReceiver(wd, "rx", ctx.rx, 0.5)
    m_id = "hk-m"
    cfg = daemon_config(rcv.base_url, [], max_concurrent=2 * n_hooks)
    cfg = cfg.replace("defaults:\n", "max_concurrent_hooks: %d\ndefaults:\n" % n_hooks, 1)
    blocks = ['  - name: m\n    id: %s\n    schedule: "2/5 * * * * *"\n' % m_id]
    poll = "    poll_interval: %s\n" % group_poll if group_poll else ""
    for i in range(n_hooks):
        blocks.append('  - name: a%03d\n    id: hk-a%03d\n    schedule: "0/10 * * * * *"\n%s'
                      '    hooks:\n      - on: [%s]\n        run: ["/bin/sleep", "%d"]\n'
                      '        timeout: 1m\n' % (i, i, poll, on, HOOK_SLEEP))
    for i in range(n_hooks):
        blocks.append('  - name: b%03d\n    id: hk-b%03d\n    schedule: "5/10 * * * * *"\n%s' % (i, i, poll))
    cfg += "".join(blocks)
    d = start_daemon(ctx.binary, wd, "daemon", cfg)
    writes = StateWrites(d.state_dir)
    pid = d.proc.pid
    # The first cycle warms up (the token, the connections): measured from the second A slot on.
    now = time.time()
    first_a = (math.floor(now / 10) + 1) * 10
    t_begin = first_a + 10
    slots = [t_begin + 10 * k + off for k in range(cycles) for off in (2, 7)]
    samples = {}

    def sampler():
        for s in slots:
            for when in ("before", "after"):
                t = s - 0.2 if when == "before" else s + 0.2
                while True:
                    left = t - time.time()
                    if left <= 0:
                        break
                    time.sleep(min(left, 0.5))
                if d.proc.poll() is not None:
                    return
                samples.setdefault(s, {})[when] = daemon_children(pid)

    th = threading.Thread(target=sampler, daemon=True)
    th.start()
    try:
        log("hooks: %d cycles of 10 s from %s (about %.0f s)" % (
            cycles, time.strftime("%H:%M:%S", time.localtime(t_begin)), slots[-1] + 1.5 - time.time()))
        th.join(slots[-1] + 5 - time.time())
        while time.time() < slots[-1] + 1.5:
            time.sleep(0.2)
        s_end = proc_sample(pid)
    finally:
        d.stop()
    reqs = rcv.requests()
    rcv.stop()
    writes.close()
    m_path = "^/test-environments/%s" % m_id
    dues = {}
    for line in d.events("is due"):
        if line.get("ENVIRONMENT") == "m":
            dues[parse_iso(line.get("SLOT"))] = parse_iso(line.ts)
    # hook runs from the log: (start, end, the event's slot)
    runs = []
    for line in d.events(r"hook /bin/sleep for event %s" % on):
        took = parse_took(re.search(r"after (\S+)", line.message).group(1)) if "after" in line.message else None
        end = parse_iso(line.ts)
        runs.append({"start": end - took if took is not None else None, "end": end,
                     "slot": parse_iso(line.get("SLOT")) if line.get("SLOT") else None,
                     "ok": "finished after" in line.message, "took": took})
    failed = [r for r in d.events(r"hook .* (failed|killed|could not be started|ran past)")]
    a_posts = [r[0] for r in reqs if r[1] == "POST" and re.match(r"^/test-environments/hk-a\d+/jobs$", r[2])]
    b_posts = [r[0] for r in reqs if r[1] == "POST" and re.match(r"^/test-environments/hk-b\d+/jobs$", r[2])]
    rows = []
    for s in slots:
        inside = [r for r in reqs if s <= r[0] < s + 1 and re.match(m_path, r[2])]
        first = lambda m, rx: next((r[0] - s for r in inside if r[1] == m and re.search(rx, r[2])), None)
        smp = samples.get(s, {})
        before = {p for p, c in smp.get("before", {}).items() if c == "sleep"}
        after = {p for p, c in smp.get("after", {}).items() if c == "sleep"}
        post = first("POST", r"/jobs$")
        at = s + (post if post is not None else 0)
        group = a_posts if (s - 2) % 10 == 0 else b_posts
        row = {"slot": s, "hooks": (s - 2) % 10 == 0,
               "due": dues[s] - s if s in dues else None,
               "list": first("GET", r"/jobs$"), "post": post,
               "children_before": len(smp.get("before", {})), "children_after": len(smp.get("after", {})),
               "sleeps_across": len(before & after),
               "hooks_in_log": sum(1 for r in runs if r["start"] is not None and r["start"] <= s and r["end"] >= at),
               # the group's POSTs of the slot 2 s before (A at x0, B at x5)
               "group_posts": sum(1 for t in group if s - 2 <= t < s - 1),
               "group_last_post": max((t - (s - 2) for t in group if s - 2 <= t < s - 1), default=None)}
        rows.append(row)
    res = {"receiver": "bench-rx", "cycles": cycles, "n_hooks": n_hooks, "on": on, "group_poll": group_poll, "hook": ["/bin/sleep", str(HOOK_SLEEP)],
           "rows": rows, "hook_runs": len(runs), "hook_runs_ok": sum(1 for r in runs if r["ok"]),
           "hook_failures": [line.raw for line in failed][:10], "daemon_cpu_s": s_end["cpu"],
           "daemon_rss_peak_kib": s_end["VmHWM"]}
    for key, want in (("with", True), ("without", False)):
        sel = [r for r in rows if r["hooks"] == want and r["post"] is not None]
        vals = [r["post"] for r in sel]
        res[key] = {"fires": len(vals), "missing": sum(1 for r in rows if r["hooks"] == want and r["post"] is None),
                    "p50": pct(vals, 50) if vals else None, "p99": pct(vals, 99) if vals else None,
                    "max": max(vals) if vals else None, "min": min(vals) if vals else None}
        for k in ("due", "list"):
            v = [r[k] for r in sel if r[k] is not None]
            res[key][k + "_p50"] = pct(v, 50) if v else None
        for k in ("sleeps_across", "hooks_in_log", "group_posts"):
            v = sorted(r[k] for r in rows if r["hooks"] == want)
            res[key][k] = {"min": v[0], "median": v[len(v) // 2], "max": v[-1]} if v else None
        v = [r["group_last_post"] for r in rows if r["hooks"] == want and r["group_last_post"] is not None]
        res[key]["group_last_post_p50"] = pct(v, 50) if v else None
        # state.json writes in the half cycle of the group's slot (A: x0..x5, hooks started and ended; B: x5..x10)
        off = 0 if want else 5
        res[key]["state_writes"] = [writes.count(t_begin + 10 * k + off, t_begin + 10 * k + off + 5)
                                    for k in range(cycles)]
    # Every state.json write of the measured cycles: (cycle, ms after its A slot).
    res["state_write_times"] = [(int((t - t_begin) // 10), round(((t - t_begin) % 10) * 1000))
                                for t in writes.times if t_begin <= t < t_begin + 10 * cycles]
    # The hooks' starts (fork+exec), per A slot of the measured cycles: how long after the slot the
    # first and the last began (the log's end minus the duration it gives, ms resolution).
    spawn = []
    for k in range(cycles):
        a = t_begin + 10 * k
        st = sorted(r["start"] - a for r in runs if r["slot"] == a and r["start"] is not None)
        if st:
            spawn.append({"slot": a, "n": len(st), "first": st[0], "last": st[-1]})
    res["spawn"] = spawn
    if spawn:
        res["spawn_span_p50"] = pct([x["last"] - x["first"] for x in spawn], 50)
        res["spawn_span_max"] = max(x["last"] - x["first"] for x in spawn)
        res["spawn_first_p50"] = pct([x["first"] for x in spawn], 50)
        res["spawn_last_p50"] = pct([x["last"] for x in spawn], 50)
    w, n = res["with"], res["without"]
    if w["fires"] and n["fires"]:
        res["ratio_p50"] = w["p50"] / n["p50"]
        res["ratio_p99"] = w["p99"] / n["p99"]
        wv = [r["post"] for r in rows if r["hooks"] and r["post"] is not None]
        nv = [r["post"] for r in rows if not r["hooks"] and r["post"] is not None]
        res["p50_diff_ci"] = bootstrap_median_diff(wv, nv)
    ci = res.get("p50_diff_ci", (None, None))
    log("hooks: %d fires with %d hooks running (at the slots, log: %s; children: %s): POST p50 %s p99 %s; "
        "%d without: p50 %s p99 %s; ratio p50 %.2f p99 %.2f; p50 difference 95%% CI %s..%s; %d hook runs "
        "(%d ok); spawn of %d hooks over %s (p50; max %s); state writes per half cycle %s / %s" % (
            w["fires"], n_hooks, w["hooks_in_log"], w["sleeps_across"], ms(w["p50"]), ms(w["p99"]), n["fires"],
            ms(n["p50"]), ms(n["p99"]), res.get("ratio_p50", float("nan")), res.get("ratio_p99", float("nan")),
            ms(ci[0]), ms(ci[1]), res["hook_runs"], res["hook_runs_ok"], n_hooks, ms(res.get("spawn_span_p50")),
            ms(res.get("spawn_span_max")), w["state_writes"], n["state_writes"]))
    return res


# ------------------------------------------------------------------------------------------------
# 3. idle cost, with cron beside it

def bench_idle(ctx, window):
    """Two identical idle daemons and two identical idle crons side by side: one of each is only
    read from /proc (context switches = wake-ups, schedstat run time = CPU, both exact), the other
    runs under `strace -f -c` for the syscall breakdown (ptrace stops would inflate the first
    one's counts: two context switches per traced syscall)."""
    wd = ctx.dir("idle")
    rcv = RxReceiver(wd, "rx", ctx.rx, 3600)
    envs = [{"name": "i%03d" % i, "id": "idle-%03d" % i, "schedule": far_schedule(i, "UTC")} for i in range(100)]
    cfg = daemon_config(rcv.base_url, envs)
    # WatchdogSec=30s, as in systemd/refreshd.service.in: sd-event pings every 15 s or so.
    wdog = {"WATCHDOG_USEC": "30000000"}
    daemons = [start_daemon(ctx.binary, wd, name, cfg, extra_env=wdog) for name in ("daemon", "daemon-traced")]
    crons = []
    if ctx.cron:
        tab = "0 %d * * * root /bin/true\n" % ((time.gmtime().tm_hour + 2) % 24)
        crons = [Cron(wd, "cron-idle", tab), Cron(wd, "cron-idle-traced", tab)]
    time.sleep(3)
    res = {"window": window}
    try:
        pids = {"refreshd": daemons[0].proc.pid}
        traced = {"refreshd": daemons[1].proc.pid}
        if crons:
            pids["cron"], traced["cron"] = crons[0].pid, crons[1].pid
        straces = {k: Strace(p, os.path.join(wd, k + ".strace")) for k, p in traced.items()}
        time.sleep(1)
        s0 = {k: proc_sample(p) for k, p in pids.items()}
        n0 = len(daemons[0].notifications())
        time.sleep(window)
        s1 = {k: proc_sample(p) for k, p in pids.items()}
        pings = sum(1 for _, text in daemons[0].notifications()[n0:] if "WATCHDOG=1" in text)
        calls = {k: s.stop() for k, s in straces.items()}
        for k in pids:
            # A wake-up from a blocking wait ends in one voluntary switch when it blocks again;
            # involuntary ones are preemptions while already awake (e.g. by this script's
            # notify reader taking the watchdog datagram), counted apart.
            res[k] = {"wakeups": s1[k]["vcsw"] - s0[k]["vcsw"], "preempted": s1[k]["ivcsw"] - s0[k]["ivcsw"],
                      "cpu_ms": (s1[k]["run"] - s0[k]["run"]) * 1000,
                      "syscalls": calls[k], "rss_kib": s1[k]["VmRSS"]}
        res["refreshd"]["watchdog_pings"] = pings
        res["refreshd"]["wakeups_besides_watchdog"] = res["refreshd"]["wakeups"] - pings
        res["refreshd"]["traced_epoll_wait"] = calls["refreshd"].get("epoll_wait", 0)
    finally:
        for d in daemons:
            d.stop()
        rcv.stop()
        for c in crons:
            c.stop()
    r = res["refreshd"]
    log("idle %ds: refreshd %d wake-ups (%d watchdog pings), %.3f ms CPU, traced twin %s; cron %s" % (
        window, r["wakeups"], r["watchdog_pings"], r["cpu_ms"], r["syscalls"],
        "%d wake-ups, %.3f ms CPU, traced twin %s" % (res["cron"]["wakeups"], res["cron"]["cpu_ms"],
                                                     res["cron"]["syscalls"]) if "cron" in res else "n/a"))
    return res


# ------------------------------------------------------------------------------------------------
# 4./5. scale: N environments loaded, N/10 jobs in flight polled every second

def scale_envs(n, fire_at, n_fire, prefix="s", min_interval=False):
    envs = []
    for i in range(n):
        # short names and ids, no 'timezone: UTC' (the default): 10,000 entries with min_interval must
        # fit in refreshd's 1 MiB config limit (CONFIG_MAX_SIZE); real 36-character ids would not
        zone = ZONES[i % len(ZONES)]
        e = {"name": "%s%04d" % (prefix, i), "id": "%s%04d" % (prefix, i),
             "timezone": zone if zone != "UTC" else None}
        if i < n_fire:
            e["schedule"], e["timezone"] = once_at(fire_at), None
        elif min_interval:
            # weekly (7d), monthly on a day (28d), first weekday of the month (28d): each proof is real
            kind = i % 3
            now_h = dt.datetime.now(zoneinfo.ZoneInfo(zone)).hour
            h = (now_h + 2 + i % 20) % 24
            e["schedule"], e["min_interval"] = [
                ("%d %d * * %d" % (i % 60, h, i % 7), "7d"),
                ("%d %d %d * *" % (i % 60, h, 1 + i % 28), "28d"),
                ("%d %d * * %s#1" % (i % 60, h, ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"][i % 7]), "28d"),
            ][kind]
        else:
            e["schedule"] = far_schedule(i, zone)
        envs.append(e)
    return envs


def bench_scale(ctx, n, receiver_kind, window):
    wd = ctx.dir("scale-%d-%s" % (n, receiver_kind))
    jobs = max(1, n // 10)
    if receiver_kind == "bench-rx":
        rcv = RxReceiver(wd, "rx", ctx.rx, 3600)
    else:
        rcv = SimReceiver(wd, "sim", 3600, nodelay=receiver_kind == "sim-nodelay")
    # Start with nothing due; once ready, rewrite the config so that JOBS environments fire 3 s
    # later and reload it (SIGHUP): the reload time includes re-planning them.
    cfg = daemon_config(rcv.base_url, scale_envs(n, 0, 0))
    res = {"n": n, "jobs": jobs, "receiver": receiver_kind}
    d = new_daemon(ctx.binary, wd, cfg, "daemon")
    try:
        try:
            d.start(timeout=ctx.start_cap)
        except H.Timeout:
            # Not ready in time: report that, with what it costs meanwhile, and go on.
            s = proc_sample(d.proc.pid)
            res.update({"start_ms": None, "start_over_s": ctx.start_cap, "rss_loading_kib": s["VmRSS"],
                        "cpu_loading_s": s["cpu"]})
            log("scale %d: not ready after %d s (RSS %d KiB, CPU %.1f s so far); skipped" % (
                n, ctx.start_cap, s["VmRSS"], s["cpu"]))
            return res
        _, t_ready = ready_time(d)
        res["start_ms"] = (t_ready - d.started_at) * 1000
        time.sleep(0.5)
        loaded = proc_sample(d.proc.pid)
        fire_at = int(time.time()) + 4
        d.write_config(daemon_config(rcv.base_url, scale_envs(n, fire_at, jobs)))
        k = len(d.notifications())
        t0 = time.time()
        d.sighup()
        _, t_rel = ready_time(d, since=k)
        res["reload_ms"] = (t_rel - t0) * 1000
        time.sleep(0.3)
        reloaded = proc_sample(d.proc.pid)
        res["rss_loaded_kib"], res["rss_reloaded_kib"] = loaded["VmRSS"], reloaded["VmRSS"]
        if time.time() > fire_at - 0.2:
            log("scale %d: the fire time passed during the reload; results are late" % n)
        while time.time() < fire_at + 0.5:
            time.sleep(0.1)
        deadline = fire_at + 60
        posts = []
        while time.time() < deadline:
            posts = rcv.requests(path="/jobs$", method="POST")
            if len(posts) >= jobs:
                break
            time.sleep(0.5)
        res["posts"] = len(posts)
        res["burst_last_post_s"] = max(p[0] for p in posts) - fire_at if posts else None
        time.sleep(2.5)
        rcv.clear()
        s0 = proc_sample(d.proc.pid)
        r0 = proc_sample(rcv.pid)
        rss_max = s0["VmRSS"]
        t_end = time.time() + window
        while time.time() < t_end:
            time.sleep(1)
            rss_max = max(rss_max, proc_sample(d.proc.pid)["VmRSS"])
        s1 = proc_sample(d.proc.pid)
        r1 = proc_sample(rcv.pid)
        wall = s1["t"] - s0["t"]
        res["cpu_pct"] = 100 * (s1["cpu"] - s0["cpu"]) / wall
        res["receiver_cpu_pct"] = 100 * (r1["cpu"] - r0["cpu"]) / wall
        res["rss_window_kib"], res["rss_window_max_kib"], res["rss_peak_kib"] = s1["VmRSS"], rss_max, s1["VmHWM"]
        # Mapped files are mostly shared libraries (libcurl's OpenSSL, GnuTLS, Kerberos, LDAP...), shared with
        # every process using them; anonymous memory is the daemon's own.
        res["rss_anon_kib"], res["rss_file_kib"] = s1["RssAnon"], s1["RssFile"]
        polls = rcv.requests(path=r"/jobs/[0-9a-f]{32}$", method="GET")
        # A restart with the jobs in flight: the start reads them all from state.json.
        d.stop()
        res["state_json_bytes"] = os.path.getsize(os.path.join(d.state_dir, "state.json"))
        d = new_daemon(ctx.binary, wd, daemon_config(rcv.base_url, scale_envs(n, fire_at, jobs)), "daemon")
        d.start(timeout=ctx.start_cap)
        _, t_ready = ready_time(d)
        res["restart_ms"] = (t_ready - d.started_at) * 1000
        time.sleep(2)
        s2 = proc_sample(d.proc.pid)
        res["restart_rss_kib"], res["restart_peak_kib"] = s2["VmRSS"], s2["VmHWM"]
    finally:
        d.stop()
        rcv.stop()
    by_job = {}
    for t, _m, p in polls:
        by_job.setdefault(p, []).append(t)
    lags = []
    for ts in by_job.values():
        ts.sort()
        lags += [b - a - 1.0 for a, b in zip(ts, ts[1:])]
    res["polls"] = len(polls)
    res["polls_per_s"] = len(polls) / window
    res["jobs_polled"] = len(by_job)
    res["lag_p50"], res["lag_p99"] = pct(lags, 50), pct(lags, 99)
    res["lag_max"] = max(lags) if lags else None
    log("scale %d (%d jobs) @%s: start %.0f ms, reload %.0f ms, RSS loaded %d KiB, window RSS %d KiB "
        "(peak %d), CPU %.1f%%, %.0f polls/s, lag p50 %s p99 %s max %s (receiver CPU %.0f%%); restart with "
        "the jobs in flight %.0f ms, peak %d KiB (state.json %d KB)" % (
            n, jobs, receiver_kind, res["start_ms"], res["reload_ms"], res["rss_loaded_kib"],
            res["rss_window_kib"], res["rss_peak_kib"], res["cpu_pct"], res["polls_per_s"],
            ms(res["lag_p50"]), ms(res["lag_p99"]), ms(res["lag_max"]), res["receiver_cpu_pct"],
            res["restart_ms"], res["restart_peak_kib"], res["state_json_bytes"] // 1000))
    return res


# ------------------------------------------------------------------------------------------------
# 4b. config load + scheduling of 10,000 environments, with and without min_interval

def bench_load(ctx, n, reps):
    """Config load + scheduling. `refreshd check` (load, validate incl. the min_interval proof, one
    next fire per environment, exit) timed from outside, plain and with min_interval everywhere;
    `refreshd run` from exec to READY=1 and SIGHUP to READY=1 (sd_notify), plain, 1 and N envs."""
    wd = ctx.dir("load")
    rcv = RxReceiver(wd, "rx", ctx.rx, 3600)
    res = {"n": n}
    env = dict(os.environ, **{H.SECRET_ENV: H.DEFAULT_SECRET})
    try:
        for label, envs in (("one", scale_envs(1, 0, 0, "o")),
                            ("plain", scale_envs(n, 0, 0, "p")),
                            ("min_interval", scale_envs(n, 0, 0, "m", min_interval=True))):
            cfg = daemon_config(rcv.base_url, envs)
            path = os.path.join(wd, label + ".yaml")
            with open(path, "w") as f:
                f.write(cfg)
            checks = []
            for i in range(reps):
                t0 = time.perf_counter()
                p = subprocess.run([ctx.binary, "check", "-c", path, "--next", "1"], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, env=env, text=True)
                checks.append((time.perf_counter() - t0) * 1000)
                if p.returncode != 0:
                    raise RuntimeError("refreshd check failed on %s: %s" % (path, p.stderr[-500:]))
            r = {"check_ms": sorted(checks)[len(checks) // 2], "checks": checks}
            res[label] = r
            if label == "min_interval" and res["plain"].get("start_ms") is None:
                log("load min_interval (%d envs): check %.0f ms; daemon not started (the plain config did not start "
                    "within %d s)" % (len(envs), r["check_ms"], ctx.start_cap))
                continue
            else:
                starts, reloads = [], []
                for i in range(reps):
                    d = new_daemon(ctx.binary, wd, cfg, "%s-%d" % (label, i))
                    try:
                        try:
                            d.start(timeout=ctx.start_cap)
                        except H.Timeout:
                            break
                        _, t_ready = ready_time(d)
                        starts.append((t_ready - d.started_at) * 1000)
                        time.sleep(0.3)
                        k = len(d.notifications())
                        t0 = time.time()
                        d.sighup()
                        _, t_rel = ready_time(d, since=k)
                        reloads.append((t_rel - t0) * 1000)
                    finally:
                        d.stop()
                    shutil.rmtree(d.state_dir, ignore_errors=True)
                r["start_ms"] = sorted(starts)[len(starts) // 2] if starts else None
                r["reload_ms"] = sorted(reloads)[len(reloads) // 2] if reloads else None
                r["starts"], r["reloads"] = starts, reloads
            log("load %s (%d envs): check %.0f ms, daemon start %s, reload %s (median of %d)" % (
                label, len(envs), r["check_ms"],
                "%.0f ms" % r["start_ms"] if r.get("start_ms") is not None else "> %d s" % ctx.start_cap,
                "%.0f ms" % r["reload_ms"] if r.get("reload_ms") is not None else "n/a", reps))
    finally:
        rcv.stop()
    return res


# ------------------------------------------------------------------------------------------------
# the cron firing peer, running through the whole benchmark

class CronFiring:
    """A '* * * * *' job that stamps the time; delay = stamp - the minute. Includes /bin/sh and
    date(1) starting, about a millisecond."""

    def __init__(self, ctx):
        wd = ctx.dir("cron-firing")
        self.stamps = os.path.join(wd, "stamps")
        script = os.path.join(wd, "stamp.sh")
        with open(script, "w") as f:
            f.write("#!/bin/sh\ndate +%%s.%%N >> %s\n" % self.stamps)
        os.chmod(script, 0o755)
        self.cron = Cron(wd, "cron", "* * * * * root %s\n" % script)

    def stop(self):
        self.cron.stop()
        try:
            with open(self.stamps) as f:
                ts = [float(x) for x in f.read().split()]
        except FileNotFoundError:
            ts = []
        delays = [t - math.floor(t / 60) * 60 for t in ts]
        return {"fires": len(delays), "p50": pct(delays, 50) if delays else None,
                "max": max(delays) if delays else None, "delays": delays}


# ------------------------------------------------------------------------------------------------

class Ctx:
    def __init__(self, binary, workdir):
        self.binary = binary
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.rx = build_rx(workdir)
        self.cron = bool(cron_available())
        self.start_cap = CAP[0]

    def dir(self, name):
        p = os.path.join(self.workdir, name)
        os.makedirs(p, exist_ok=True)
        return p


def linear_fit(xs, ys):
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else float("nan")
    return slope, my - slope * mx


def report(R, quick):
    P = print
    P()
    P("## refreshd daemon benchmarks (%s, %s, %d CPUs%s)" % (
        time.strftime("%Y-%m-%d"), os.uname().release, os.cpu_count(), ", --quick" if quick else ""))
    P()
    P("binary: %s" % R.get("binary", "?"))
    P()
    P("| # | figure | target | refreshd | peer | ratio | met? |")
    P("|---|---|---|--:|--:|--:|---|")
    cronf = R.get("cron_firing") or {}

    def ratio(a, b):
        """How many times refreshd's A is better (smaller) than the peer's B."""
        if not a or not b:
            return "n/a"
        r = b / a
        return "%.0fx" % r if r >= 10 else "%.2gx" % r

    for p in R.get("precision", []):
        peer = ("cron %s" % ms(cronf.get("p50")) if cronf.get("p50") is not None else "cron: minute granularity") + \
            "; systemd timer: AccuracySec=1min default"
        ok = p["post"]["p50"] <= 0.002 and p["post"]["p99"] <= 0.010
        P("| 2 | fire->POST, 1 env, %d fires, at %s: p50 / p99 | <= 2 / 10 ms | %s / %s | %s | %s | %s |" % (
            p["fires"], p["receiver"], ms(p["post"]["p50"]), ms(p["post"]["p99"]), peer,
            ratio(p["post"]["p50"], cronf.get("p50")), "yes" if ok else "NO"))
        f = p["first"]
        P("| 2 | first fire after the start (token and GET env mostly ahead of the slot), at %s | - | %s (token at the slot: %s) | | | |" % (
            p["receiver"], ms(f["post"]), ms(f["token"])))
    for key in ("hooks", "hooks_starting"):
        hk = R.get(key)
        if not hk or not hk["with"]["fires"] or not hk["without"]["fires"]:
            continue
        w, n = hk["with"], hk["without"]
        lo, hi = hk["p50_diff_ci"]
        d50 = w["p50"] - n["p50"]
        diff = "p50 %+.2f ms, 95%% CI %+.2f..%+.2f" % (d50 * 1e3, lo * 1e3, hi * 1e3)
        if key == "hooks":
            what = "with %d hooks running (`%s`, started by %d envs' slots 2 s before)" % (
                hk["n_hooks"], " ".join(hk["hook"]), hk["n_hooks"])
            target, met = "within noise of none", "yes (%s)" % diff if lo <= 0 <= hi else "NO: %s" % diff
        else:
            what = "while %d hooks are being started (on %s, at %d envs' first poll, %s after their slot)" % (
                hk["n_hooks"], hk["on"], hk["n_hooks"], hk["group_poll"])
            target, met = "-", diff
        P("| 2 | fire->POST %s, at %s, %d fires: p50 / p99 | %s | %s / %s | none (%d envs' slots 2 s before, no "
          "hooks), %d fires interleaved: %s / %s | p50 %.2fx, p99 %.2fx | %s |" % (
              what, hk["receiver"], w["fires"], target, ms(w["p50"]), ms(w["p99"]), hk["n_hooks"], n["fires"],
              ms(n["p50"]), ms(n["p99"]), hk["ratio_p50"], hk["ratio_p99"], met))
        if key == "hooks":
            P("| 2 | same: hooks running at the measured instants (log: started before the slot, ended after the "
              "POST; sleep children at slot -/+ 0.2 s), min / median / max | %d | %d / %d / %d; %d / %d / %d "
              "(none: %d) | | | %s |" % (
                  hk["n_hooks"], w["hooks_in_log"]["min"], w["hooks_in_log"]["median"], w["hooks_in_log"]["max"],
                  w["sleeps_across"]["min"], w["sleeps_across"]["median"], w["sleeps_across"]["max"],
                  n["sleeps_across"]["max"],
                  "yes" if min(w["hooks_in_log"]["min"], w["sleeps_across"]["min"]) >= hk["n_hooks"] else "NO"))
        else:
            P("| 2 | same: the slot's 'is due' line after the slot, p50 / max | - | %s / %s | none: %s | | |" % (
                ms(pct([r["due"] for r in hk["rows"] if r["hooks"] and r["due"] is not None], 50)),
                ms(max(r["due"] for r in hk["rows"] if r["hooks"] and r["due"] is not None)),
                ms(pct([r["due"] for r in hk["rows"] if not r["hooks"] and r["due"] is not None], 50))))
        if hk.get("spawn"):
            sw, sn = sorted(w["state_writes"]), sorted(n["state_writes"])
            P("| 2 | same: the %d hooks' fork+exec after their slot, first / last started (p50; span first->last "
              "p50, max); state.json writes per 5 s, with / none (median) | - | %s / %s (span %s, max %s); %d / %d "
              "| | | |" % (hk["n_hooks"], ms(hk["spawn_first_p50"]), ms(hk["spawn_last_p50"]),
                           ms(hk["spawn_span_p50"]), ms(hk["spawn_span_max"]), sw[len(sw) // 2], sn[len(sn) // 2]))
    for b in R.get("burst", []):
        ok = b["posts"] == b["n"] and b["within_1s"] == b["n"]
        P("| 2 | %d envs same second, at %s: POSTs within 1 s; last POST (last 'is due' line; state writes, before the slot) | all within 1 s | %d/%d; %s (%s; %d writes, %d) | | | %s |" % (
            b["n"], b["receiver"], b["within_1s"], b["n"], ms(b["post_max"]), ms(b["due_last"]), b["state_writes"],
            b.get("state_writes_ahead", 0), "yes" if ok else "NO"))
    for c in R.get("receivers", []):
        P("| 2 | receiver alone (curl, 1000 in parallel), %s: 1000 GET env / 1000 POST jobs | takes them within 1 s | %.2f s / %.2f s (%d+%d ok) | | | %s |" % (
            c["receiver"], c["get_s"], c["post_s"], c["get_ok"], c["post_ok"],
            "yes" if max(c["get_s"], c["post_s"]) <= 1 and c["get_ok"] + c["post_ok"] == 2 * c["n"] else "NO"))
    if "idle" in R:
        i = R["idle"]
        r, c = i["refreshd"], i.get("cron")
        P("| 3 | idle 100 envs, %d s: wake-ups besides watchdog (WatchdogSec=30s) | 0 | %d (+%d watchdog) | cron %s | %s | %s |" % (
            i["window"], r["wakeups_besides_watchdog"], r["watchdog_pings"], c["wakeups"] if c else "n/a",
            "-" if r["wakeups_besides_watchdog"] <= 0 else ratio(r["wakeups_besides_watchdog"], c["wakeups"]) if c else "n/a",
            "yes" if r["wakeups_besides_watchdog"] <= 0 else "NO"))
        P("| 3 | idle CPU over %d s | < 1 ms | %.3f ms | cron %s | %s | %s |" % (
            i["window"], r["cpu_ms"], "%.3f ms" % c["cpu_ms"] if c else "n/a",
            ratio(r["cpu_ms"], c["cpu_ms"]) if c else "n/a", "yes" if r["cpu_ms"] < 1 else "NO"))
    S = R.get("scale", [])
    done = [s for s in S if s.get("start_ms") is not None]
    big = next((s for s in S if s["n"] == 10000), None)
    if big and big.get("start_ms") is None:
        P("| 4 | 10000 envs: daemon ready (READY=1) | - | not within %d s (RSS %.1f MiB, %.0f s CPU by then) | | | NO |" % (
            big["start_over_s"], big["rss_loading_kib"] / 1024, big["cpu_loading_s"]))
    for s in ([big] if big and big.get("start_ms") is not None else []) + ([done[-1]] if done and done[-1] is not big else []):
        tag = "" if s["n"] == 10000 else " (largest size that started; target is for 10000)"
        P("| 4 | %d envs, %d jobs polled/s: peak RSS%s | <= 16 MiB | %.1f MiB (at the end: %.1f MiB anonymous, "
          "%.1f MiB mapped files) | | | %s |" % (
              s["n"], s["jobs"], tag, s["rss_peak_kib"] / 1024, s["rss_anon_kib"] / 1024, s["rss_file_kib"] / 1024,
              "yes" if s["rss_peak_kib"] <= 16384 else "NO"))
        P("| 4 | same: CPU | <= 20%% | %.1f%% | | | %s |" % (s["cpu_pct"], "yes" if s["cpu_pct"] <= 20 else "NO"))
        P("| 4 | same: poll lag p99 (at %s) | <= 50 ms | %s (p50 %s, max %s) | | | %s |" % (
            s["receiver"], ms(s["lag_p99"]), ms(s["lag_p50"]), ms(s["lag_max"]),
            "yes" if s["lag_p99"] <= 0.05 else "NO"))
        P("| 4 | same, restarted with the jobs in flight (state.json %.1f MB): peak RSS; ready after | <= 16 MiB | "
          "%.1f MiB; %.0f ms | | | %s |" % (
              s["state_json_bytes"] / 1e6, s["restart_peak_kib"] / 1024, s["restart_ms"],
              "yes" if s["restart_peak_kib"] <= 16384 else "NO"))
    if "load" in R:
        L = R["load"]
        for label in ("plain", "min_interval"):
            if label not in L:
                continue
            r = L[label]
            st = "%.0f / %.0f ms" % (r["start_ms"], r["reload_ms"]) if r.get("start_ms") is not None else \
                "not ready within %d s" % CAP[0] if "start_ms" in r else "not run"
            ok = r.get("start_ms") is not None and max(r["start_ms"], r["reload_ms"]) <= 100
            P("| 4 | load+schedule %d envs%s: daemon start / reload (1 env: %.0f / %.0f ms) | <= 100 ms | %s | | | %s |" % (
                L["n"], " with min_interval" if label == "min_interval" else "", L["one"]["start_ms"],
                L["one"]["reload_ms"], st, "yes" if ok else "NO"))
            P("| 4 | `refreshd check` %d envs%s (load, validate, 1 next fire each; 1 env: %.0f ms) | <= 100 ms | %.0f ms | | | %s |" % (
                L["n"], " with min_interval" if label == "min_interval" else "", L["one"]["check_ms"], r["check_ms"],
                "yes" if r["check_ms"] <= 100 else "NO"))
    if S:
        P()
        P("Growth (jobs = envs/10, polled every second; CPU over the window; RSS in KiB):")
        P()
        P("| envs | jobs | start ms | reload ms | RSS loaded | RSS polling | peak RSS | CPU % | polls/s | lag p50 | lag p99 | receiver |")
        P("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|")
        for s in S:
            if s.get("start_ms") is None:
                P("| %d | %d | > %d s | - | (%d while loading) | - | - | (%.0f s CPU while loading) | - | - | - | %s |" % (
                    s["n"], s["jobs"], s["start_over_s"], s["rss_loading_kib"], s["cpu_loading_s"], s["receiver"]))
                continue
            P("| %d | %d | %.0f | %.0f | %d | %d | %d | %.2f | %.0f | %s | %s | %s |" % (
                s["n"], s["jobs"], s["start_ms"], s["reload_ms"], s["rss_loaded_kib"], s["rss_window_kib"],
                s["rss_peak_kib"], s["cpu_pct"], s["polls_per_s"], ms(s["lag_p50"]), ms(s["lag_p99"]), s["receiver"]))
        if len(done) >= 2:
            xs = [s["n"] for s in done]
            slope, icpt = linear_fit(xs, [s["rss_loaded_kib"] * 1024 for s in done])
            per_job = [(s["rss_window_kib"] - s["rss_loaded_kib"]) * 1024 / s["jobs"] for s in done if s["jobs"] >= 100]
            P()
            P("| 5 | memory per environment (slope of loaded RSS over envs) | %.0f bytes (intercept %.1f MiB) |" % (
                slope, icpt / 2 ** 20))
            if per_job:
                P("| 5 | memory per in-flight job ((RSS polling - RSS loaded) / jobs, runs with >= 100 jobs) | %s bytes |"
                  % " / ".join("%.0f" % x for x in per_job))
    if cronf:
        P()
        P("cron firing delay over %d minutes: p50 %s, max %s" % (cronf["fires"], ms(cronf["p50"]), ms(cronf["max"])))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binary")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default="precision,hooks,burst,idle,scale,load")
    ap.add_argument("--json")
    ap.add_argument("--keep", help="keep the work files in this directory")
    ap.add_argument("--hooks-cycles", type=int, default=0,
                    help="10-s cycles of the hooks figure, one fire with and one without hooks each (default 24, --quick 12)")
    ap.add_argument("--scale-receiver", default="sim-nodelay", choices=["sim", "sim-nodelay", "bench-rx"],
                    help="receiver of the scale runs (default: the simulator with TCP_NODELAY; see sim-nodelay.py)")
    args = ap.parse_args()
    only = set(args.only.split(","))
    binary = os.path.abspath(args.binary)
    if not os.access(binary, os.X_OK):
        sys.exit("%s: not an executable" % binary)
    workdir = args.keep or tempfile.mkdtemp(prefix="bench-daemon-")
    os.makedirs(workdir, exist_ok=True)
    ctx = Ctx(binary, workdir)
    q = args.quick
    R, failed = {}, False
    try:
        head = subprocess.run(["git", "-C", os.path.dirname(binary), "log", "-1", "--format=%h %cI"],
                              capture_output=True, text=True).stdout.strip()
    except OSError:
        head = ""
    R["binary"] = "%s (built %s%s)" % (binary, time.strftime("%Y-%m-%d %H:%M", time.localtime(os.stat(binary).st_mtime)),
                                       ", tree at " + head if head else "")
    cronf = None
    if ctx.cron and "precision" in only:
        try:
            cronf = CronFiring(ctx)
        except Exception as exc:
            log("cron peer not available: %s" % exc)
    else:
        log("cron peer not run (needs root, cron, unshare)" if not ctx.cron else "cron firing peer: only with precision")

    def run(name, fn, *a):
        nonlocal failed
        try:
            return fn(*a)
        except Exception as exc:  # keep going: one failure must not hide the other figures
            import traceback
            traceback.print_exc()
            log("%s failed: %s" % (name, exc))
            failed = True
            return None

    try:
        if "precision" in only:
            R["precision"] = [x for x in (
                run("precision", bench_precision, ctx, "sim", 20 if q else 100),
                run("precision", bench_precision, ctx, "sim-nodelay", 10 if q else 20),
                run("precision", bench_precision, ctx, "bench-rx", 20 if q else 100)) if x]
        if "hooks" in only:
            R["hooks"] = run("hooks", bench_hooks, ctx, args.hooks_cycles or (12 if q else 24))
        if "hooks-starting" in only:
            R["hooks_starting"] = run("hooks-starting", bench_hooks, ctx, 6, 100, "completed", "1500ms")
        if "burst" in only:
            kinds = ["bench-rx"] if q else ["bench-rx", "sim"]
            R["burst"] = [x for x in (run("burst", bench_burst, ctx, k) for k in kinds) if x]
            R["receivers"] = [x for x in (run("receiver", bench_receiver, ctx, k)
                                          for k in ["bench-rx", "sim", "sim-nodelay"]) if x]
        if "idle" in only:
            R["idle"] = run("idle", bench_idle, ctx, 15 if q else 60)
        if "scale" in only:
            sizes = [10, 100, 1000, 10000] if q else [10, 100, 1000, 2000, 10000]
            R["scale"] = [x for x in (run("scale", bench_scale, ctx, n, args.scale_receiver,
                                          (10 if q else 20) if n < 10000 else (15 if q else 60)) for n in sizes) if x]
        if "load" in only:
            R["load"] = run("load", bench_load, ctx, 10000, 1 if q else 3)
    finally:
        if cronf:
            R["cron_firing"] = cronf.stop()
    R = {k: v for k, v in R.items() if v is not None}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(R, f, indent=1, default=str)
    report(R, q)
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
