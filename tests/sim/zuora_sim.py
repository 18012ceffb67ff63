#!/usr/bin/env python3
"""Zuora REST API simulator for refreshd's tests.

It speaks the parts of Zuora's v1 REST API that refreshd uses: OAuth 2.0 client-credentials tokens,
test environments (sandboxes), their refresh jobs and their e-mail notification recipients (kept in
memory only: the simulator never sends e-mail). A control API under ``/_sim/`` (no auth)
inspects the recorded requests, changes settings at run time and injects faults that behave as named
at the socket level (slow, hanging, dripping, truncated or reset answers, wrong shapes, ...).

Python 3 standard library only. Job state is computed lazily from ``time.time()``: there are no
background threads besides the per-connection ones. See README.md beside this file.
"""

import argparse
import base64
import collections
import copy
import datetime
import email.utils
import gc
import gzip
import hashlib
import http.client
import http.server
import json
import math
import os
import random
import re
import secrets
import select
import signal
import socket
import socketserver
import ssl
import struct
import sys
import threading
import time
import traceback
import urllib.parse
import uuid

PERIOD_TEXT = "Only one refresh can be performed during a set period"
PERMISSION_TEXT = ("You do not have the permission 'Refresh Central Sandbox' required to perform "
                   "this operation (missing permission).")
CANCEL_TOO_LATE_TEXT = ("The refresh can no longer be canceled: the job has reached its reset stage.")
AUTH_ERROR = {"message": "Authentication error"}

# Zuora error codes: object 500000 + category (10 permission, 30 rule restriction, 40 invalid
# input / not found (as this project's brief asks), 50 locking contention, 60 internal error).
CODE_PERMISSION = 50000010
CODE_RULE = 50000030
CODE_BAD_REQUEST = 50000040
CODE_NOT_FOUND = 50000040
CODE_CONFLICT = 50000050
CODE_INTERNAL = 50000060

ENV_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# What the simulator takes for an e-mail address: a local part and a dotted domain, no blanks, one @.
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")
MAX_EMAIL = 254
MAX_BODY = 32 * 1024 * 1024
MAX_HEADER_LINE = 65536  # as http.client
MAX_HEADERS = 100
VERSION_RE = re.compile(r"HTTP/(\d{1,10})\.(\d{1,10})")

# The request log is kept for the whole run (the control API serves it), and Python's collector
# walks every object it holds: at 1,000 requests a second its full collections stopped the server
# for 200-300 ms every few seconds, which the daemon's poll-lag benchmark measured as lateness.
# Records are never part of a cycle that must be collected, so they are moved out of the
# collector's reach (gc.freeze()) as the log grows.
GC_FREEZE_EVERY = 2000

GZIP_THRESHOLD = 1000

DEFAULT_CONFIG = {
    "location_mode": "relative",       # relative | absolute | missing | foreign
    "foreign_base": "http://127.0.0.1:9",
    "list_shape": "bare",              # bare | result | data | jobs
    "job_seconds": 6.0,
    "token_lifetime": 3600.0,
    "gzip_always": False,
    "cooldown_seconds": 0.0,           # default for every environment
    "final_status": "COMPLETED",       # default for every environment
    "create_status": 200,              # 200 or 201
    "client_id": "demo-client",
    "client_secret": "demo-secret",
    "strict_environments": False,      # True: only the listed environments exist
    "idempotency": False,              # True: honour Idempotency-Key on job creation
    "clock_offset": 0.0,               # seconds Zuora's clock is ahead of the real one (negative: behind)
    "environments": {},
}

# Zuora's clock, which is not the client's: every time the API writes (createTime, updateTime,
# jobStartTime, jobEndTime, nextRefreshTime, lastRefreshTime, scheduledRefreshTime, the Date and
# Retry-After headers) is real time plus this, and every time it reads is its clock's. Set from the
# clock_offset setting whenever the config changes.
CLOCK = {"offset": 0.0}
ENV_KEYS = ("cooldown_seconds", "final_status", "job_seconds", "exists", "environment_type",
            "data_copy_type", "tenant_name", "last_refresh_time", "last_refresh_ago", "set_end_time")


# ----------------------------------------------------------------------------------------------
# small helpers

def rfc3339(ts, round_up=False):
    """Format epoch seconds (real time) as Zuora's clock shows them: RFC 3339 UTC with whole
    seconds and a "Z"; None stays None."""
    if ts is None:
        return None
    ts += CLOCK["offset"]
    ts = math.ceil(ts) if round_up else math.floor(ts)
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text):
    """Parse an RFC 3339 date-time (offset or "Z" required) into epoch seconds; ValueError if bad."""
    if not isinstance(text, str) or not re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", text):
        raise ValueError("not an RFC 3339 date-time")
    value = datetime.datetime.fromisoformat(text.replace("z", "Z"))
    if value.tzinfo is None:
        raise ValueError("RFC 3339 date-time without a time zone")
    return value.timestamp()


def zuora_error(code, message):
    """Zuora's usual error body."""
    return {"success": False, "reasons": [{"code": code, "message": message}]}


def is_number(value):
    """True for int/float but not bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def url_host(host):
    """Host as it appears in a URL (IPv6 literals get brackets)."""
    return "[%s]" % host if ":" in host and not host.startswith("[") else host


class ApiError(Exception):
    """An error answer raised anywhere below the HTTP layer."""

    def __init__(self, status, body, headers=None):
        super().__init__(status, body)
        self.status = status
        self.body = body
        self.headers = list(headers or [])


class BodyError(Exception):
    """The request body could not be read (bad framing, too large, bad gzip)."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


# ----------------------------------------------------------------------------------------------
# requests and replies

class Request:
    """A parsed HTTP request as the simulator sees it."""

    def __init__(self, method, target, headers, body, client_address):
        split = urllib.parse.urlsplit(target)
        self.method = method
        self.target = target
        self.path = split.path or "/"
        self.query = split.query
        self.headers = headers
        self.body = body
        self.client_address = client_address
        self.track_id = headers.get("Zuora-Track-Id") if headers is not None else None

    @property
    def route_method(self):
        """The method used for routing (HEAD is routed as GET)."""
        return "GET" if self.method == "HEAD" else self.method

    @property
    def bearer(self):
        """The bearer token of the Authorization header, or None."""
        value = (self.headers.get("Authorization") or "").strip()
        scheme, _, token = value.partition(" ")
        return token.strip() or None if scheme.lower() == "bearer" else None

    def text(self):
        """The body as text (undecodable bytes replaced)."""
        return self.body.decode("utf-8", "replace")

    def json(self):
        """The body parsed as JSON; ApiError 400 when empty or malformed."""
        if not self.body.strip():
            raise ApiError(400, zuora_error(CODE_BAD_REQUEST, "The request body is required."))
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ApiError(400, zuora_error(CODE_BAD_REQUEST, "Malformed JSON in request body: %s" % exc))


class Reply:
    """An HTTP answer before transport: status, extra headers and an unencoded body."""

    def __init__(self, status, body=b"", content_type="application/json", headers=None):
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = list(headers or [])

    @classmethod
    def json(cls, status, value, headers=None):
        """A JSON answer."""
        return cls(status, json.dumps(value, separators=(",", ":")).encode(), "application/json", headers)

    @classmethod
    def text(cls, status, text, content_type="text/plain; charset=utf-8", headers=None):
        """A text answer."""
        return cls(status, text.encode(), content_type, headers)

    def json_value(self):
        """The body parsed as JSON, or None when it is not JSON."""
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None


# ----------------------------------------------------------------------------------------------
# jobs, environments, fault rules

class Job:
    """One refresh job. Its status is computed from the clock, never advanced by a thread.

    Timeline over ``duration`` seconds (D): NEW for 0.1*D, QUEUED until max(create+0.2*D,
    scheduledRefreshTime), then IN_PROGRESS for 0.8*D with progressPercentage rising 0..99, then the
    final status (progress 100). Final status "never" stays IN_PROGRESS at 99 forever.
    """

    def __init__(self, job_id, env_id, seq, created, duration, final_status, set_end_time,
                 user_id, scheduled=None):
        self.id = job_id
        self.env_id = env_id
        self.seq = seq
        self.created = created
        self.duration = duration
        self.final_status = final_status
        self.set_end_time = set_end_time
        self.user_id = user_id
        self.scheduled = scheduled
        self.never = final_status.lower() == "never"
        self.new_end = created + 0.1 * duration
        self.start = max(created + 0.2 * duration, scheduled if scheduled is not None else created)
        self.run_span = 0.8 * duration
        self.end = None if self.never else self.start + self.run_span
        self.canceled_at = None
        self.canceled_progress = 0
        self.polls = 0

    def progress(self, now):
        """progressPercentage while running (0..99)."""
        if now < self.start:
            return 0
        if self.run_span <= 0:
            return 99
        return max(0, min(99, int(100 * (now - self.start) / self.run_span)))

    def phase(self, now):
        """(status, progress, jobStartTime, jobEndTime, updateTime) at ``now`` (epoch seconds)."""
        if self.canceled_at is not None:
            started = self.start if self.canceled_at >= self.start else None
            return "CANCELED", self.canceled_progress, started, self.canceled_at, self.canceled_at
        if self.end is not None and now >= self.end:
            end_time = self.end if self.set_end_time else None
            return self.final_status, 100, self.start, end_time, self.end
        if now >= self.start:
            return "IN_PROGRESS", self.progress(now), self.start, None, now
        if now >= self.new_end:
            return "QUEUED", 0, None, None, self.new_end
        return "NEW", 0, None, None, self.created

    def running(self, now):
        """True while the lifecycle has not ended (and the job was not canceled)."""
        return self.canceled_at is None and (self.end is None or now < self.end)

    def completed_at(self, now):
        """When the job completed successfully (for lastRefreshTime), or None."""
        if self.canceled_at is None and self.end is not None and now >= self.end \
                and self.final_status == "COMPLETED":
            return self.end
        return None

    def view(self, now, at_creation=False):
        """The JobResponse body."""
        if at_creation:
            status, progress, started, ended, updated = "NEW", 0, None, None, self.created
        else:
            status, progress, started, ended, updated = self.phase(now)
        return {
            "id": self.id,
            "testEnvironmentId": self.env_id,
            "jobType": "REFRESH",
            "status": status,
            "progressPercentage": progress,
            "createTime": rfc3339(self.created),
            "updateTime": rfc3339(updated),
            "createdById": self.user_id,
            "updatedById": self.user_id,
            "scheduledRefreshTime": rfc3339(self.scheduled),
            "jobStartTime": rfc3339(started),
            "jobEndTime": rfc3339(ended),
            "estimatedCompletionTime": rfc3339(self.end, round_up=True),
        }


class Environment:
    """A test environment (sandbox) known to the simulator."""

    def __init__(self, env_id, provisioned):
        self.id = env_id
        self.provisioned = provisioned
        digest = hashlib.sha256(env_id.encode()).hexdigest()
        self.tenant_id = str(20000 + int(digest[:8], 16) % 70000)


class FaultRule:
    """One fault-injection rule: which requests it matches, what it does, how often."""

    ACTIONS = ("status", "period_rejection", "permission_denied", "slow", "hang", "drip",
               "reset_mid_body", "truncated_json", "truncated_json_short", "not_json", "empty_200",
               "huge_body", "wrong_shape", "commit_then_fail", "expire_token")
    CANNED = ("status", "period_rejection", "permission_denied", "not_json", "empty_200")
    SHAPES = ("status_number", "id_missing", "array_instead_of_object")
    COMMIT_VARIANTS = ("500", "reset", "close", "hang")
    PARAMS = {
        "status": ("status", "body", "headers", "content_type", "retry_after", "retry_after_date"),
        "slow": ("delay", "commit_first"),
        "drip": ("bytes_per_second",),
        "huge_body": ("size",),
        "wrong_shape": ("variant",),
        "commit_then_fail": ("variant",),
    }

    def __init__(self, spec, rule_id):
        if not isinstance(spec, dict):
            raise ValueError("a fault rule must be a JSON object")
        unknown = set(spec) - {"match", "action", "times", "after", "comment", "params",
                               *[p for ps in self.PARAMS.values() for p in ps]}
        if unknown:
            raise ValueError("unknown fault rule keys: %s" % ", ".join(sorted(unknown)))
        self.id = rule_id
        self.spec = copy.deepcopy(spec)
        match = spec.get("match", {})
        if not isinstance(match, dict) or set(match) - {"method", "path"}:
            raise ValueError("match must be an object with optional 'method' and 'path'")
        method = match.get("method")
        if method is not None and not isinstance(method, str):
            raise ValueError("match.method must be a string")
        self.method = None if method in (None, "", "*") else method.upper()
        try:
            self.path_re = re.compile(match.get("path") or "")
        except (re.error, TypeError) as exc:
            raise ValueError("match.path is not a valid regex: %s" % exc)
        action = spec.get("action")
        params = {k: v for k, v in spec.items() if k not in ("match", "action", "times", "after",
                                                              "comment", "params")}
        if not isinstance(spec.get("params") or {}, dict):
            raise ValueError("params must be an object")
        params.update(spec.get("params") or {})
        if isinstance(action, dict):
            params.update({k: v for k, v in action.items() if k not in ("name", "type")})
            action = action.get("name", action.get("type"))
        if action is None and "status" in params:
            action = "status"
        if action not in self.ACTIONS:
            raise ValueError("unknown fault action %r (known: %s)" % (action, ", ".join(self.ACTIONS)))
        self.action = action
        self.params = self._check_params(action, params)
        self.times = spec.get("times", 1)
        self.after = spec.get("after", 0)
        if not isinstance(self.times, int) or isinstance(self.times, bool) or self.times < -1:
            raise ValueError("times must be an integer >= -1")
        if not isinstance(self.after, int) or isinstance(self.after, bool) or self.after < 0:
            raise ValueError("after must be an integer >= 0")
        self.seen = 0
        self.applied = 0

    def _check_params(self, action, params):
        allowed = self.PARAMS.get(action, ())
        extra = set(params) - set(allowed)
        if extra:
            raise ValueError("action %s takes no %s" % (action, ", ".join(sorted(extra))))
        p = dict(params)
        if action == "status":
            status = p.get("status")
            if not isinstance(status, int) or isinstance(status, bool) or not 200 <= status <= 599:
                raise ValueError("status action needs an integer 'status' in 200..599")
            headers = p.get("headers", {})
            if not isinstance(headers, dict):
                raise ValueError("headers must be an object")
            p["headers"] = {str(k): str(v) for k, v in headers.items()}
            for key in ("retry_after", "retry_after_date"):
                if key in p and not is_number(p[key]):
                    raise ValueError("%s must be a number of seconds" % key)
        elif action == "slow":
            p.setdefault("delay", 1.0)
            p.setdefault("commit_first", False)
            if not is_number(p["delay"]) or p["delay"] < 0:
                raise ValueError("delay must be a number >= 0")
            if not isinstance(p["commit_first"], bool):
                raise ValueError("commit_first must be true or false")
        elif action == "drip":
            p.setdefault("bytes_per_second", 1)
            if not is_number(p["bytes_per_second"]) or p["bytes_per_second"] <= 0:
                raise ValueError("bytes_per_second must be a number > 0")
        elif action == "huge_body":
            p.setdefault("size", 2 * 1024 * 1024)
            if not isinstance(p["size"], int) or not 0 < p["size"] <= 256 * 1024 * 1024:
                raise ValueError("size must be an integer in 1..256 MiB")
        elif action == "wrong_shape":
            p.setdefault("variant", "status_number")
            if p["variant"] not in self.SHAPES:
                raise ValueError("wrong_shape variant must be one of %s" % ", ".join(self.SHAPES))
        elif action == "commit_then_fail":
            p["variant"] = str(p.get("variant", "500"))
            if p["variant"] not in self.COMMIT_VARIANTS:
                raise ValueError("commit_then_fail variant must be one of %s"
                                 % ", ".join(self.COMMIT_VARIANTS))
        return p

    def matches(self, method, path):
        """True when the rule's method and path regex match the request."""
        return (self.method is None or self.method == method) and self.path_re.search(path) is not None

    def consume(self):
        """Count one matching request; True when the rule applies to it (honours after/times)."""
        self.seen += 1
        if self.seen <= self.after:
            return False
        if self.times != -1 and self.applied >= self.times:
            return False
        self.applied += 1
        return True

    def to_dict(self):
        """The rule as given plus its counters."""
        return {"id": self.id, "rule": self.spec, "action": self.action, "params": self.params,
                "times": self.times, "after": self.after, "seen": self.seen, "applied": self.applied,
                "exhausted": self.times != -1 and self.applied >= self.times}

    # -- answers built by the rule itself

    def canned_reply(self):
        """The answer of an action that does not perform the real operation."""
        p = self.params
        if self.action == "period_rejection":
            return Reply.json(403, zuora_error(CODE_RULE, PERIOD_TEXT))
        if self.action == "permission_denied":
            return Reply.json(403, zuora_error(CODE_PERMISSION, PERMISSION_TEXT))
        if self.action == "not_json":
            return Reply.text(200, "<!DOCTYPE html>\n<html><head><title>Maintenance</title></head>"
                                   "<body><h1>Zuora is down for maintenance</h1></body></html>\n",
                              "text/html; charset=utf-8")
        if self.action == "empty_200":
            return Reply(200, b"", "application/json")
        # status
        status = p["status"]
        headers = list(p["headers"].items())
        if "retry_after" in p:
            headers.append(("Retry-After", str(int(math.ceil(p["retry_after"])))))
        if "retry_after_date" in p:
            headers.append(("Retry-After", email.utils.formatdate(time.time() + CLOCK["offset"] + p["retry_after_date"],
                                                                  usegmt=True)))
        body = p.get("body")
        if body is None:
            reply = self.default_status_reply(status)
        elif isinstance(body, str):
            try:
                json.loads(body)
                ctype = "application/json"
            except ValueError:
                ctype = "text/plain; charset=utf-8"
            reply = Reply.text(status, body, ctype)
        else:
            reply = Reply.json(status, body)
        if "content_type" in p:
            reply.content_type = p["content_type"]
        reply.headers.extend(headers)
        return reply

    @staticmethod
    def default_status_reply(status):
        """A plausible body for an injected status code."""
        if status == 401:
            return Reply.json(401, AUTH_ERROR)
        if status == 429:
            return Reply.json(429, {"message": "Too Many Requests"})
        if status in (502, 503, 504):
            text = {502: "502 Bad Gateway", 503: "503 Service Unavailable", 504: "504 Gateway Timeout"}
            return Reply.text(status, "<html><body><h1>%s</h1></body></html>\n" % text[status],
                              "text/html; charset=utf-8")
        if status >= 500:
            return Reply.json(status, zuora_error(CODE_INTERNAL, "Internal Error (injected)"))
        if status >= 400:
            return Reply.json(status, zuora_error(CODE_BAD_REQUEST, "Injected error %d" % status))
        return Reply.json(status, {"success": True})

    def transform(self, reply):
        """Body-changing actions applied to the real answer."""
        if self.action == "truncated_json_short":
            body = reply.body[:len(reply.body) // 2] if len(reply.body) >= 2 else b"{"
            return Reply(reply.status, body, reply.content_type, reply.headers)
        value = reply.json_value()
        if self.action == "huge_body":
            size = self.params["size"]
            if not isinstance(value, dict):
                value = {"result": value}
            rng = random.Random(size)
            pad = base64.b64encode(rng.randbytes(size * 3 // 4 + 3)).decode()[:size]
            value["padding"] = pad
            return Reply.json(200, value, reply.headers)
        if self.action == "wrong_shape":
            variant = self.params["variant"]
            if variant == "array_instead_of_object":
                return Reply.json(reply.status, [value], reply.headers)
            items = value if isinstance(value, list) else [value]
            for item in items:
                if isinstance(item, dict):
                    if variant == "status_number":
                        item["status"] = 2
                    else:
                        item.pop("id", None)
            return Reply.json(reply.status, value, reply.headers)
        return reply


# ----------------------------------------------------------------------------------------------
# state

class State:
    """All mutable simulator state, guarded by one lock."""

    def __init__(self, max_requests=100000):
        self.lock = threading.RLock()
        self.max_requests = max_requests
        self._initial_config = copy.deepcopy(DEFAULT_CONFIG)
        self._initial_faults = []
        self.config = copy.deepcopy(DEFAULT_CONFIG)
        CLOCK["offset"] = 0.0
        self.faults = []
        self._fault_seq = 0
        self.reset(keep_config=True)

    # -- configuration

    def mark_initial(self):
        """Remember the current config and faults as what /_sim/reset goes back to."""
        with self.lock:
            self._initial_config = copy.deepcopy(self.config)
            self._initial_faults = [copy.deepcopy(rule.spec) for rule in self.faults]

    def reset(self, keep_config=False):
        """Forget jobs, notifications, tokens, environments and requests; restore the initial config
        and faults."""
        with self.lock:
            if not keep_config:
                self.config = copy.deepcopy(self._initial_config)
                CLOCK["offset"] = self.config["clock_offset"]
                self.faults = []
                self.add_faults(copy.deepcopy(self._initial_faults))
            self.envs = {}
            self.jobs = {}
            self.notifications = {}  # id -> record, in creation order
            self.tokens = {}
            self.idempotency_keys = {}
            self.requests = collections.deque(maxlen=self.max_requests)
            self.request_seq = 0
            self.job_seq = 0

    def configure(self, updates):
        """Validate and apply a config update (all or nothing); ValueError when invalid."""
        if not isinstance(updates, dict):
            raise ValueError("config must be a JSON object")
        with self.lock:
            new = copy.deepcopy(self.config)
            faults = updates.get("faults", [])
            for key, value in updates.items():
                if key == "faults":
                    continue
                if key not in DEFAULT_CONFIG:
                    raise ValueError("unknown config key %r" % key)
                if key == "environments":
                    self._merge_environments(new["environments"], value)
                else:
                    new[key] = self._check_value(key, value)
            rules = self._make_rules(faults)
            self.config = new
            CLOCK["offset"] = new["clock_offset"]
            self._append_rules(rules)

    @staticmethod
    def _check_value(key, value):
        choices = {"location_mode": ("relative", "absolute", "missing", "foreign"),
                   "list_shape": ("bare", "result", "data", "jobs"), "create_status": (200, 201)}
        if key in choices:
            if value not in choices[key]:
                raise ValueError("%s must be one of %s" % (key, ", ".join(map(str, choices[key]))))
        elif key in ("job_seconds", "token_lifetime", "cooldown_seconds"):
            if not is_number(value) or value < 0:
                raise ValueError("%s must be a number >= 0" % key)
            value = float(value)
        elif key == "clock_offset":
            if not is_number(value):
                raise ValueError("clock_offset must be a number of seconds")
            value = float(value)
        elif key in ("gzip_always", "strict_environments", "idempotency"):
            if not isinstance(value, bool):
                raise ValueError("%s must be true or false" % key)
        elif key == "foreign_base":
            if not isinstance(value, str) or not re.match(r"^https?://[^/]+", value):
                raise ValueError("foreign_base must be an http(s)://host:port URL")
            value = value.rstrip("/")
        elif not isinstance(value, str) or not value:
            raise ValueError("%s must be a non-empty string" % key)
        return value

    @staticmethod
    def _merge_environments(target, updates):
        if not isinstance(updates, dict):
            raise ValueError("environments must be an object {id: settings}")
        for env_id, settings in updates.items():
            if not isinstance(env_id, str) or not ENV_ID_RE.fullmatch(env_id):
                raise ValueError("bad environment id %r" % env_id)
            if settings is None:
                target.pop(env_id, None)
                continue
            if not isinstance(settings, dict):
                raise ValueError("settings of environment %s must be an object" % env_id)
            merged = dict(target.get(env_id, {}))
            for key, value in settings.items():
                if key not in ENV_KEYS:
                    raise ValueError("unknown environment setting %r" % key)
                if key in ("cooldown_seconds", "job_seconds", "last_refresh_ago"):
                    if not is_number(value) or value < 0:
                        raise ValueError("%s must be a number >= 0" % key)
                elif key in ("exists", "set_end_time"):
                    if not isinstance(value, bool):
                        raise ValueError("%s must be true or false" % key)
                elif key == "last_refresh_time":
                    if value is not None and not is_number(value):
                        try:
                            value = parse_rfc3339(value)
                        except ValueError:
                            raise ValueError("last_refresh_time must be RFC 3339, epoch seconds or null")
                elif not isinstance(value, str) or not value:
                    raise ValueError("%s must be a non-empty string" % key)
                if key == "last_refresh_ago":
                    key, value = "last_refresh_time", time.time() - value
                merged[key] = value
            target[env_id] = merged

    def setting(self, key):
        """One global setting."""
        with self.lock:
            return self.config[key]

    def config_view(self):
        """The current config."""
        with self.lock:
            return copy.deepcopy(self.config)

    def env_setting(self, env_id, key, default=None):
        """A per-environment setting, falling back to the global one of the same name."""
        with self.lock:
            settings = self.config["environments"].get(env_id, {})
            if key in settings:
                return settings[key]
            return self.config.get(key, default)

    # -- faults

    def _make_rules(self, specs):
        if isinstance(specs, dict):
            specs = [specs]
        if not isinstance(specs, list):
            raise ValueError("faults must be a JSON list of rules (or one rule object)")
        rules = []
        for i, spec in enumerate(specs):
            try:
                rules.append(FaultRule(spec, 0))
            except ValueError as exc:
                raise ValueError("fault rule %d: %s" % (i, exc))
        return rules

    def _append_rules(self, rules):
        for rule in rules:
            self._fault_seq += 1
            rule.id = self._fault_seq
            self.faults.append(rule)

    def add_faults(self, specs):
        """Validate and append fault rules; ValueError when any is invalid."""
        with self.lock:
            self._append_rules(self._make_rules(specs))
            return self.faults_view()

    def clear_faults(self):
        """Remove every fault rule."""
        with self.lock:
            count = len(self.faults)
            self.faults = []
            return count

    def faults_view(self):
        """The rules with their counters."""
        with self.lock:
            return [rule.to_dict() for rule in self.faults]

    def pick_fault(self, method, path):
        """The first rule that applies to this request (counting it), or None."""
        with self.lock:
            for rule in self.faults:
                if rule.matches(method, path) and rule.consume():
                    return rule
        return None

    # -- recorded requests

    def record_request(self, req, when):
        """Record one request; returns the record (its status is filled in later)."""
        headers = {}
        canonical = {}
        for name, value in req.headers.items():
            key = canonical.setdefault(name.lower(), name)
            if key in headers:
                if not isinstance(headers[key], list):
                    headers[key] = [headers[key]]
                headers[key].append(value)
            else:
                headers[key] = value
        with self.lock:
            self.request_seq += 1
            record = {"seq": self.request_seq, "time": when, "method": req.method, "path": req.path,
                      "query": req.query, "target": req.target, "headers": headers,
                      "header_list": [[k, v] for k, v in req.headers.items()], "body": req.text(),
                      "client_port": req.client_address[1], "status": None}
            self.requests.append(record)
            if self.request_seq % GC_FREEZE_EVERY == 0:
                gc.freeze()
            return record

    def set_request_status(self, record, status):
        """Fill in the status answered to a recorded request (None: no answer)."""
        with self.lock:
            record["status"] = status

    def requests_view(self, since=0, path_re=None, method=None):
        """Recorded requests, optionally filtered."""
        with self.lock:
            return [copy.deepcopy(r) for r in self.requests
                    if r["seq"] > since and (method is None or r["method"] == method)
                    and (path_re is None or path_re.search(r["path"]))]

    def clear_requests(self):
        """Forget the recorded requests."""
        with self.lock:
            count = len(self.requests)
            self.requests.clear()
            return count

    # -- tokens

    def issue_token(self, client_id, client_secret):
        """A token answer for valid credentials, or None."""
        with self.lock:
            if not (secrets.compare_digest(client_id.encode(), self.config["client_id"].encode())
                    and secrets.compare_digest(client_secret.encode(),
                                               self.config["client_secret"].encode())):
                return None
            lifetime = self.config["token_lifetime"]
            token = secrets.token_hex(16)
            self.tokens[token] = time.time() + lifetime
            return {"access_token": token, "token_type": "bearer",
                    "expires_in": int(math.ceil(lifetime)),
                    "scope": "user.%s entity.%s service.ts.read service.ts.write tenant.9"
                             % (hashlib.md5(client_id.encode()).hexdigest(), uuid.UUID(int=9)),
                    "jti": secrets.token_hex(16)}

    def token_valid(self, token):
        """True when the token was issued here and has not expired."""
        with self.lock:
            expiry = self.tokens.get(token) if token else None
            return expiry is not None and time.time() < expiry

    def expire_token(self, token):
        """Make one token expired from now on."""
        with self.lock:
            if token in self.tokens:
                self.tokens[token] = 0.0

    def expire_all_tokens(self):
        """Make every issued token expired."""
        with self.lock:
            for token in self.tokens:
                self.tokens[token] = 0.0
            return len(self.tokens)

    # -- environments

    def environment(self, env_id):
        """The environment, created on first use; ApiError 404 when it does not exist."""
        with self.lock:
            settings = self.config["environments"].get(env_id)
            known = ENV_ID_RE.fullmatch(env_id or "") is not None
            if settings is not None and settings.get("exists") is False:
                known = False
            if self.config["strict_environments"] and settings is None:
                known = False
            if not known:
                raise ApiError(404, zuora_error(CODE_NOT_FOUND, "Test environment '%s' not found." % env_id))
            env = self.envs.get(env_id)
            if env is None:
                env = self.envs[env_id] = Environment(env_id, time.time())
            return env

    def last_refresh(self, env_id, now):
        """lastRefreshTime: the initial setting or the end of the latest completed job."""
        with self.lock:
            times = [job.completed_at(now) for job in self.jobs.values() if job.env_id == env_id]
            times.append(self.env_setting(env_id, "last_refresh_time"))
            times = [t for t in times if t is not None]
            return max(times) if times else None

    def env_view(self, env, now):
        """The TestEnvironment body.

        nextRefreshTime is lastRefreshTime + cooldown (rounded up to the second, possibly in the
        past), and null when the environment was never refreshed or has no cooldown, or while a
        job runs (Zuora's UI: "if a job is still in progress, this field has no value").
        """
        with self.lock:
            last = self.last_refresh(env.id, now)
            cooldown = self.env_setting(env.id, "cooldown_seconds")
            env_type = self.env_setting(env.id, "environment_type") or "CentralSandbox"
            default_copy = "Metadata" if env_type == "DeveloperSandbox" else "Full"
            return {
                "id": env.id,
                "tenantId": env.tenant_id,
                "tenantName": self.env_setting(env.id, "tenant_name") or "sandbox-%s" % env.id[:12],
                "environmentType": env_type,
                "dataCopyType": self.env_setting(env.id, "data_copy_type") or default_copy,
                "status": "ACTIVE",
                "sourceTenantId": "10000",
                "provisionTime": rfc3339(env.provisioned),
                "deactivationTime": None,
                "lastRefreshTime": rfc3339(last),
                "nextRefreshTime": rfc3339(last + cooldown, round_up=True)
                if last and cooldown and not self._running(env.id, now) else None,
            }

    def _running(self, env_id, now):
        return any(j.env_id == env_id and j.running(now) for j in self.jobs.values())

    def list_environments(self, now):
        """Every existing environment (configured or seen)."""
        with self.lock:
            ids = list(self.envs)
            ids += [i for i in self.config["environments"] if i not in self.envs]
            views = []
            for env_id in ids:
                try:
                    views.append(self.env_view(self.environment(env_id), now))
                except ApiError:
                    pass
            return views

    # -- jobs

    def create_job(self, env_id, scheduled, user_id, idempotency_key=None):
        """Create a refresh job; returns (job, replayed). ApiError 409/403 when refused."""
        now = time.time()
        with self.lock:
            self.environment(env_id)
            if idempotency_key and self.config["idempotency"]:
                known = self.idempotency_keys.get((env_id, idempotency_key))
                if known is not None:
                    return self.jobs[known], True
            for job in self.jobs.values():
                if job.env_id == env_id and job.running(now):
                    raise ApiError(409, zuora_error(
                        CODE_CONFLICT, "A refresh job (%s) is already in progress for test environment "
                                       "%s; only one job can run at a time." % (job.id, env_id)))
            cooldown = self.env_setting(env_id, "cooldown_seconds")
            last = self.last_refresh(env_id, now)
            if cooldown and last is not None and now < last + cooldown:
                raise ApiError(403, zuora_error(
                    CODE_RULE, "%s. The next refresh is allowed after %s."
                               % (PERIOD_TEXT, rfc3339(last + cooldown, round_up=True))))
            self.job_seq += 1
            job = Job(uuid.uuid4().hex, env_id, self.job_seq, now,
                      float(self.env_setting(env_id, "job_seconds")),
                      str(self.env_setting(env_id, "final_status")),
                      self.env_setting(env_id, "set_end_time", True) is not False, user_id, scheduled)
            self.jobs[job.id] = job
            if idempotency_key and self.config["idempotency"]:
                self.idempotency_keys[(env_id, idempotency_key)] = job.id
            return job, False

    def add_job(self, spec):
        """A job made elsewhere (by hand in Zuora's UI, by another program), for /_sim/jobs POST:
        {"env_id", "status": COMPLETED | FAILED | CANCELED | IN_PROGRESS, "created_ago": s,
        "ended_ago": s (not for IN_PROGRESS, which runs until canceled)}. Its times are in the past
        by real time (Zuora's clock offset is added when they are shown, as for every job)."""
        if not isinstance(spec, dict) or not isinstance(spec.get("env_id"), str):
            raise ValueError("a job needs an env_id")
        status = spec.get("status", "COMPLETED")
        if status not in ("COMPLETED", "FAILED", "CANCELED", "IN_PROGRESS"):
            raise ValueError("status must be COMPLETED, FAILED, CANCELED or IN_PROGRESS")
        now = time.time()
        created = now - float(spec.get("created_ago", 0))
        ended = None if status == "IN_PROGRESS" else now - float(spec.get("ended_ago", 0))
        if ended is not None and ended < created:
            raise ValueError("ended_ago must not be more than created_ago")
        with self.lock:
            self.environment(spec["env_id"])
            self.job_seq += 1
            final = {"IN_PROGRESS": "never", "CANCELED": "COMPLETED"}.get(status, status)
            duration = 1.0 if ended is None else max(ended - created, 0.001)
            job = Job(uuid.uuid4().hex, spec["env_id"], self.job_seq, created, duration, final, True,
                      spec.get("user_id", "by-hand"))
            if status == "CANCELED":
                job.canceled_at = ended
                job.canceled_progress = 10
            self.jobs[job.id] = job
            return job.view(now)

    def job(self, env_id, job_id):
        """The job of that environment; ApiError 404 when unknown."""
        with self.lock:
            self.environment(env_id)
            job = self.jobs.get(job_id)
            if job is None or job.env_id != env_id:
                raise ApiError(404, zuora_error(CODE_NOT_FOUND, "Job '%s' not found." % job_id))
            return job

    def poll_job(self, env_id, job_id):
        """GET of one job: counts the poll and returns the JobResponse."""
        with self.lock:
            job = self.job(env_id, job_id)
            job.polls += 1
            return job.view(time.time())

    def list_jobs(self, env_id):
        """The environment's jobs, newest first."""
        with self.lock:
            self.environment(env_id)
            now = time.time()
            jobs = sorted((j for j in self.jobs.values() if j.env_id == env_id),
                          key=lambda j: (j.created, j.seq), reverse=True)
            return [job.view(now) for job in jobs]

    def cancel_job(self, env_id, job_id):
        """Cancel a job that has not reached its reset stage (progress < 50)."""
        with self.lock:
            job = self.job(env_id, job_id)
            now = time.time()
            status, progress = job.phase(now)[:2]
            if not job.running(now):
                raise ApiError(400, zuora_error(CODE_RULE, "The refresh can no longer be canceled: the "
                                                           "job has already ended (status %s)." % status))
            if progress >= 50:
                raise ApiError(400, zuora_error(CODE_RULE, CANCEL_TOO_LATE_TEXT))
            job.canceled_at = now
            job.canceled_progress = progress
            return job.view(now)

    def jobs_view(self):
        """All jobs with simulator details (for /_sim/jobs), oldest first."""
        with self.lock:
            now = time.time()
            out = []
            for job in sorted(self.jobs.values(), key=lambda j: j.seq):
                view = job.view(now)
                view.update({"env_id": job.env_id, "final_status": job.final_status,
                             "polls": job.polls, "canceled": job.canceled_at is not None,
                             "job_seconds": job.duration, "created": job.created,
                             "running": job.running(now)})
                out.append(view)
            return out

    # -- e-mail notification recipients (kept here only: nothing is ever sent)

    @staticmethod
    def _notification_view(record):
        """The TestEnvironmentNotificationResponse body."""
        return {"id": record["id"], "address": record["address"], "name": record["name"],
                "testEnvironmentId": record["env_id"]}

    @classmethod
    def _notification_sim_view(cls, record):
        """The record with simulator details (for /_sim/notifications)."""
        view = cls._notification_view(record)
        view.update({"env_id": record["env_id"], "created": record["created"],
                     "updated": record["updated"], "by_hand": record["by_hand"]})
        return view

    def add_notification(self, env_id, fields, by_hand=False):
        """A new recipient of that environment (FIELDS checked by check_notification_body);
        returns its TestEnvironmentNotificationResponse, or, BY_HAND (for /_sim/notifications POST),
        its /_sim/ view. ApiError 404 when the environment does not exist."""
        with self.lock:
            self.environment(env_id)
            now = time.time()
            record = {"id": uuid.uuid4().hex, "env_id": env_id, "address": fields["address"],
                      "name": fields.get("name"), "created": now,
                      "updated": now, "by_hand": by_hand}
            self.notifications[record["id"]] = record
            return self._notification_sim_view(record) if by_hand else self._notification_view(record)

    def _notification(self, env_id, notification_id):
        self.environment(env_id)
        record = self.notifications.get(notification_id)
        if record is None or record["env_id"] != env_id:
            raise ApiError(404, zuora_error(CODE_NOT_FOUND,
                                            "Notification '%s' not found." % notification_id))
        return record

    def notification(self, env_id, notification_id):
        """One recipient of that environment; ApiError 404 when it or the environment is unknown."""
        with self.lock:
            return self._notification_view(self._notification(env_id, notification_id))

    def list_notifications(self, env_id):
        """The environment's recipients, oldest first; ApiError 404 when it does not exist."""
        with self.lock:
            self.environment(env_id)
            return [self._notification_view(r) for r in self.notifications.values()
                    if r["env_id"] == env_id]

    def update_notification(self, env_id, notification_id, fields):
        """Change the fields given (a partial update); returns the record."""
        with self.lock:
            record = self._notification(env_id, notification_id)
            record.update(fields)
            record["updated"] = time.time()
            return self._notification_view(record)

    def delete_notification(self, env_id, notification_id):
        """Remove a recipient; returns its record as it was."""
        with self.lock:
            record = self._notification(env_id, notification_id)
            del self.notifications[notification_id]
            return self._notification_view(record)

    def notifications_view(self, env_id=None):
        """Every recipient (or those of one environment) with simulator details, oldest first."""
        with self.lock:
            return [self._notification_sim_view(r) for r in self.notifications.values()
                    if env_id is None or r["env_id"] == env_id]


def check_notification_body(data, partial=False):
    """The fields of a notification body {"address", "name"} (PATCH: PARTIAL, either may be left
    out); ApiError 400 with a Zuora error body when it is not an object, the address is missing
    (on create) or not an e-mail address, or the name is neither a string nor null."""
    if not isinstance(data, dict):
        raise ApiError(400, zuora_error(CODE_BAD_REQUEST, "The request body must be a JSON object "
                                                          "{\"address\": ..., \"name\": ...}."))
    fields = {}
    if "address" in data or not partial:
        address = data.get("address")
        if address is None or address == "":
            raise ApiError(400, zuora_error(CODE_BAD_REQUEST, "The field address is required."))
        if not isinstance(address, str) or len(address) > MAX_EMAIL or not EMAIL_RE.fullmatch(address):
            raise ApiError(400, zuora_error(CODE_BAD_REQUEST, "Invalid value for field address: %s "
                                                              "(expected an e-mail address)."
                                            % json.dumps(address)))
        fields["address"] = address
    if "name" in data or not partial:
        name = data.get("name")
        if name is not None and not isinstance(name, str):
            raise ApiError(400, zuora_error(CODE_BAD_REQUEST, "Invalid value for field name: %s "
                                                              "(expected a string)." % json.dumps(name)))
        fields["name"] = name
    return fields


# ----------------------------------------------------------------------------------------------
# the Zuora API and the control API

class ZuoraApi:
    """Turns a Request into a Reply for the Zuora endpoints (no faults, no transport)."""

    def __init__(self, state, base_url):
        self.state = state
        self.base_url = base_url

    def handle(self, req):
        """Answer one API request."""
        try:
            return self._route(req)
        except ApiError as exc:
            return Reply.json(exc.status, exc.body, exc.headers)

    @staticmethod
    def _allow(req, *methods):
        if req.route_method not in methods:
            raise ApiError(405, {"message": "Method %s not allowed" % req.method},
                           [("Allow", ", ".join(methods))])

    def _route(self, req):
        if req.path == "/oauth/token":
            self._allow(req, "POST")
            return self._token(req)
        segs = req.path.split("/")[1:]
        if not segs or segs[0] != "test-environments":
            raise ApiError(404, {"message": "No resource at %s" % req.path})
        self._authenticate(req)
        if len(segs) == 1:
            self._allow(req, "GET")
            envs = self.state.list_environments(time.time())
            return Reply.json(200, {"result": envs, "size": len(envs)})
        env_id = segs[1]
        if len(segs) == 2:
            self._allow(req, "GET")
            now = time.time()
            return Reply.json(200, self.state.env_view(self.state.environment(env_id), now))
        if segs[2] == "notifications" and len(segs) <= 4:
            return self._route_notifications(req, env_id, segs[3] if len(segs) == 4 else None)
        if segs[2] != "jobs" or len(segs) > 5 or (len(segs) == 5 and segs[4] != "actions"):
            raise ApiError(404, {"message": "No resource at %s" % req.path})
        if len(segs) == 3:
            self._allow(req, "GET", "POST")
            if req.route_method == "POST":
                return self._create_job(req, env_id)
            return self._list_jobs(env_id)
        if len(segs) == 4:
            self._allow(req, "GET")
            return Reply.json(200, self.state.poll_job(env_id, segs[3]))
        self._allow(req, "POST")
        return self._job_action(req, env_id, segs[3])

    def _authenticate(self, req):
        if not self.state.token_valid(req.bearer):
            raise ApiError(401, AUTH_ERROR, [("WWW-Authenticate", 'Bearer realm="zuora"')])

    def _token(self, req):
        fields = urllib.parse.parse_qs(req.text(), keep_blank_values=True)
        client_id = fields.get("client_id", [None])[0]
        client_secret = fields.get("client_secret", [None])[0]
        auth = req.headers.get("Authorization") or ""
        if auth.lower().startswith("basic ") and client_id is None:
            try:
                client_id, _, client_secret = base64.b64decode(auth[6:].strip()).decode().partition(":")
            except ValueError:
                pass
        grant = fields.get("grant_type", [None])[0]
        if grant is None or client_id is None or client_secret is None:
            raise ApiError(400, {"error": "invalid_request", "message": "Bad request",
                                 "error_description": "client_id, client_secret and grant_type are required"})
        if grant != "client_credentials":
            raise ApiError(400, {"error": "unsupported_grant_type", "message": "Bad request",
                                 "error_description": "grant_type must be client_credentials"})
        answer = self.state.issue_token(client_id, client_secret)
        if answer is None:
            raise ApiError(401, {"error": "invalid_client", "message": "Authentication error",
                                 "error_description": "Invalid client credentials"})
        return Reply.json(200, answer, [("Cache-Control", "no-store"), ("Pragma", "no-cache")])

    def _create_job(self, req, env_id):
        self.state.environment(env_id)
        data = req.json()
        if not isinstance(data, dict):
            raise ApiError(400, zuora_error(CODE_BAD_REQUEST,
                                            "The request body must be a JobRequest object."))
        if data.get("jobType") != "REFRESH":
            raise ApiError(400, zuora_error(CODE_BAD_REQUEST,
                                            "Invalid value for field jobType: %s (expected REFRESH)."
                                            % json.dumps(data.get("jobType"))))
        scheduled = data.get("scheduledRefreshTime")
        if scheduled is not None:
            try:
                scheduled = parse_rfc3339(scheduled) - CLOCK["offset"]  # by Zuora's clock
            except (ValueError, TypeError):
                raise ApiError(400, zuora_error(CODE_BAD_REQUEST,
                                                "Invalid value for field scheduledRefreshTime: "
                                                "expected an RFC 3339 date-time."))
        user_id = hashlib.md5(self.state.setting("client_id").encode()).hexdigest()
        job, replayed = self.state.create_job(env_id, scheduled, user_id,
                                              req.headers.get("Idempotency-Key"))
        view = job.view(time.time()) if replayed else job.view(job.created, at_creation=True)
        return self._created(view, "/test-environments/%s/jobs/%s" % (env_id, job.id))

    def _created(self, view, path):
        """The answer to a create: create_status, and a Location header to PATH as location_mode says."""
        config = self.state.config_view()
        mode = config["location_mode"]
        location = {"relative": path, "absolute": self.base_url + path,
                    "foreign": config["foreign_base"] + path, "missing": None}[mode]
        headers = [("Location", location)] if location else []
        return Reply.json(config["create_status"], view, headers)

    def _list_reply(self, items):
        """A list answer in the ArrayResponse envelope list_shape says (bare, or {shape: [...], size})."""
        shape = self.state.setting("list_shape")
        return Reply.json(200, items if shape == "bare" else {shape: items, "size": len(items)})

    def _route_notifications(self, req, env_id, notification_id):
        """/test-environments/{id}/notifications[/{notificationId}]."""
        state = self.state
        if notification_id is None:
            self._allow(req, "GET", "POST")
            if req.route_method == "GET":
                return self._list_reply(state.list_notifications(env_id))
            state.environment(env_id)  # an unknown environment is a 404 before the body is read
            view = state.add_notification(env_id, check_notification_body(req.json()))
            return self._created(view, "/test-environments/%s/notifications/%s" % (env_id, view["id"]))
        self._allow(req, "GET", "PATCH", "DELETE")
        if req.route_method == "GET":
            return Reply.json(200, state.notification(env_id, notification_id))
        if req.route_method == "DELETE":
            return Reply.json(200, state.delete_notification(env_id, notification_id))
        state.notification(env_id, notification_id)  # 404 before 400, as for a job action
        fields = check_notification_body(req.json(), partial=True)
        return Reply.json(200, state.update_notification(env_id, notification_id, fields))

    def _list_jobs(self, env_id):
        return self._list_reply(self.state.list_jobs(env_id))

    def _job_action(self, req, env_id, job_id):
        self.state.job(env_id, job_id)
        data = req.json()
        action = data.get("jobAction") if isinstance(data, dict) else None
        if not isinstance(action, str) or action.upper() != "CANCEL":
            raise ApiError(400, zuora_error(CODE_BAD_REQUEST, "Invalid value for field jobAction: %s "
                                                              "(expected CANCEL)." % json.dumps(action)))
        return Reply.json(200, self.state.cancel_job(env_id, job_id))


class ControlApi:
    """The /_sim/ endpoints: inspection, run-time config and fault injection (no auth)."""

    def __init__(self, state):
        self.state = state

    def handle(self, req):
        """Answer one control request."""
        try:
            return self._route(req)
        except ApiError as exc:
            return Reply.json(exc.status, exc.body)
        except (ValueError, re.error) as exc:
            return Reply.json(400, {"error": str(exc)})

    def _route(self, req):
        state, m, path = self.state, req.route_method, req.path.rstrip("/")
        if path == "/_sim/health" and m == "GET":
            return Reply.text(200, "ok")
        if path == "/_sim/requests" and m == "GET":
            q = urllib.parse.parse_qs(req.query)
            since = int(q.get("since", ["0"])[0])
            path_re = re.compile(q["path"][0]) if "path" in q else None
            method = q["method"][0].upper() if "method" in q else None
            return Reply.json(200, state.requests_view(since, path_re, method))
        if path in ("/_sim/requests/clear", "/_sim/requests") and m in ("POST", "DELETE"):
            return Reply.json(200, {"cleared": state.clear_requests()})
        if path == "/_sim/jobs" and m == "GET":
            return Reply.json(200, state.jobs_view())
        if path == "/_sim/jobs" and m == "POST":
            return Reply.json(200, state.add_job(self._json(req)))
        if path == "/_sim/notifications" and m == "GET":
            q = urllib.parse.parse_qs(req.query)
            return Reply.json(200, state.notifications_view(q["env_id"][0] if "env_id" in q else None))
        if path == "/_sim/notifications" and m == "POST":
            spec = self._json(req)
            if not isinstance(spec, dict) or not isinstance(spec.get("env_id"), str):
                raise ValueError("a notification needs an env_id")
            fields = check_notification_body({k: v for k, v in spec.items() if k != "env_id"})
            return Reply.json(200, state.add_notification(spec["env_id"], fields, by_hand=True))
        if path == "/_sim/config" and m == "GET":
            return Reply.json(200, state.config_view())
        if path == "/_sim/config" and m == "POST":
            state.configure(self._json(req))
            return Reply.json(200, state.config_view())
        if path == "/_sim/faults" and m == "GET":
            return Reply.json(200, state.faults_view())
        if path == "/_sim/faults" and m == "POST":
            return Reply.json(200, state.add_faults(self._json(req)))
        if path == "/_sim/faults" and m == "DELETE":
            return Reply.json(200, {"cleared": state.clear_faults()})
        if path == "/_sim/tokens/expire" and m == "POST":
            return Reply.json(200, {"expired": state.expire_all_tokens()})
        if path == "/_sim/reset" and m == "POST":
            state.reset()
            return Reply.json(200, {"reset": True})
        raise ApiError(404, {"error": "no control endpoint %s %s" % (req.method, req.path)})

    @staticmethod
    def _json(req):
        try:
            return json.loads(req.body.decode("utf-8") or "null")
        except (UnicodeDecodeError, ValueError) as exc:
            raise ValueError("malformed JSON: %s" % exc)


# ----------------------------------------------------------------------------------------------
# HTTP transport

class RequestLog:
    """One line per request to a file or stderr."""

    def __init__(self, path=None):
        self._lock = threading.Lock()
        self._fh = open(path, "a", buffering=1, encoding="utf-8") if path else sys.stderr

    def write(self, line):
        """Write one line (thread-safe, never raises)."""
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        try:
            with self._lock:
                self._fh.write("%s %s\n" % (stamp, line.replace("\n", "\\n")))
                self._fh.flush()
        except (OSError, ValueError):
            pass


class Handler(http.server.BaseHTTPRequestHandler):
    """Reads requests, applies fault rules and writes answers, byte by byte when a fault says so."""

    protocol_version = "HTTP/1.1"
    default_request_version = "HTTP/1.0"  # so that errors about malformed request lines carry a status line
    server_version = "ZuoraSim/1.0"

    def version_string(self):
        """The Server header."""
        return self.server_version

    def date_time_string(self, timestamp=None):
        """The Date header, by Zuora's clock."""
        return email.utils.formatdate((time.time() if timestamp is None else timestamp) + CLOCK["offset"],
                                      usegmt=True)

    # -- connection setup / teardown

    def setup(self):
        """Wrap the connection in TLS (in this thread, not the accept loop) and set the idle timeout."""
        srv = self.server
        # Head and body go out in separate writes: without this, Nagle holds
        # the body back until the client's delayed ACK (40 ms per answer).
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if srv.ssl_context is not None:
            self.request.settimeout(10)
            self.request = srv.ssl_context.wrap_socket(self.request, server_side=True)
        self.timeout = srv.idle_timeout
        super().setup()

    def finish(self):
        """Flush, then close the TLS connection ourselves (the server only knows the raw socket)."""
        try:
            super().finish()
        except OSError:
            pass
        if self.server.ssl_context is not None:
            try:
                self.connection.close()
            except OSError:
                pass

    def parse_request(self):
        """The base class's parse_request(), with the same answers to bad requests, but its header
        parser (the email package's, 0.2 ms a request when the thread wakes up cold) replaced by a
        line split: the simulator's time is not the client's. Notes the request's arrival first:
        its line is in, its headers not yet read."""
        self._arrived = time.time()
        self.command = None  # for send_error()
        self.request_version = self.default_request_version
        self.close_connection = True
        self.requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = self.requestline.split()
        if not words:
            return False
        if len(words) >= 3:
            version = VERSION_RE.fullmatch(words[-1])
            if not version:
                self.send_error(400, "Bad request version (%r)" % words[-1])
                return False
            number = (int(version[1]), int(version[2]))
            if number >= (2, 0):
                self.send_error(505, "Invalid HTTP version (%s)" % words[-1][5:])
                return False
            self.close_connection = number < (1, 1)
            self.request_version = words[-1]
        if not 2 <= len(words) <= 3:
            self.send_error(400, "Bad request syntax (%r)" % self.requestline)
            return False
        if len(words) == 2:
            self.close_connection = True
            if words[0] != "GET":
                self.send_error(400, "Bad HTTP/0.9 request type (%r)" % words[0])
                return False
        self.command, self.path = words[:2]
        if self.path.startswith("//"):
            self.path = "/" + self.path.lstrip("/")
        self.headers = self._read_headers()
        if self.headers is None:
            return False
        connection = self.headers.get("Connection", "").lower()
        if connection == "close":
            self.close_connection = True
        elif connection == "keep-alive":
            self.close_connection = False
        if (self.headers.get("Expect", "").lower() == "100-continue" and self.request_version >= "HTTP/1.1"
                and not self.handle_expect_100()):
            return False
        return True

    def _read_headers(self):
        """The header lines up to the blank one, as an http.client.HTTPMessage (values without the
        leading blanks and the line end; a folded line joins the header before it; a line with no
        colon is dropped), or None after a 431."""
        headers, last, count = http.client.HTTPMessage(), None, 0
        while True:
            line = self.rfile.readline(MAX_HEADER_LINE + 1)
            if len(line) > MAX_HEADER_LINE:
                self.send_error(431, "Line too long", "header line")
                return None
            if line in (b"\r\n", b"\n", b""):
                if last:
                    headers[last[0]] = last[1]
                return headers
            count += 1
            if count > MAX_HEADERS:
                self.send_error(431, "Too many headers", "got more than %d headers" % MAX_HEADERS)
                return None
            text = line.decode("iso-8859-1").rstrip("\r\n")
            if text[:1] in (" ", "\t"):
                if last:
                    last[1] += " " + text.strip(" \t")
                continue
            if last:
                headers[last[0]] = last[1]
            name, colon, value = text.partition(":")
            last = [name, value.lstrip(" \t")] if colon and name else None

    def log_request(self, code="-", size="-"):
        """Silenced: _serve writes its own line per request."""

    def log_message(self, format, *args):  # noqa: A002 (signature of the base class)
        """Messages of the base class (malformed requests, timeouts)."""
        self.server.log.write("%s:%s %s" % (self.client_address[0], self.client_address[1], format % args))

    # -- methods

    def do_GET(self):
        """Every method goes through _serve."""
        self._serve()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = do_GET

    # -- request body

    def _read_body(self):
        """The request body (Content-Length or chunked; gunzipped when Content-Encoding: gzip)."""
        lengths = self.headers.get_all("Content-Length") or []
        chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
        if chunked:
            body = self._read_chunked()
        elif lengths:
            if len(set(v.strip() for v in lengths)) != 1 or not lengths[0].strip().isdigit():
                raise BodyError(400, "Invalid Content-Length header")
            length = int(lengths[0])
            if length > MAX_BODY:
                raise BodyError(413, "Request body too large")
            body = self.rfile.read(length)
            if len(body) != length:
                raise BodyError(400, "Request body shorter than Content-Length")
        else:
            body = b""
        if "gzip" in (self.headers.get("Content-Encoding") or "").lower() and body:
            try:
                body = gzip.decompress(body)
            except (OSError, EOFError, ValueError):
                raise BodyError(400, "Request body is not valid gzip")
        return body

    def _read_chunked(self):
        body = bytearray()
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                raise BodyError(400, "Bad chunk size in chunked body")
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                return bytes(body)
            if len(body) + size > MAX_BODY:
                raise BodyError(413, "Request body too large")
            data = self.rfile.read(size)
            if len(data) != size:
                raise BodyError(400, "Truncated chunked body")
            body += data
            self.rfile.readline(1024)

    # -- main dispatch

    def _serve(self):
        srv, started = self.server, self._arrived
        self._sent_status = None
        self._head_sent = False
        fault = None
        req = None
        record = None
        self._record = None
        try:
            try:
                body = self._read_body()
                error = None
            except BodyError as exc:
                body, error = b"", exc
                self.close_connection = True
            req = Request(self.command, self.path, self.headers, body, self.client_address)
            is_control = req.path == "/_sim" or req.path.startswith("/_sim/")
            if not is_control:
                record = self._record = srv.state.record_request(req, started)
            if error is not None:
                self._send(Reply.json(error.status, zuora_error(CODE_BAD_REQUEST, str(error))), req)
            elif is_control:
                self._send(srv.control.handle(req), req)
            elif srv.record_only:
                self._send(Reply.json(200, {}), req)
            else:
                fault = self._serve_api(req)
        except (OSError, ssl.SSLError) as exc:
            self.close_connection = True
            fault = (fault or "-") + " (connection: %s)" % exc.__class__.__name__
        except Exception:  # never let a bug kill the connection thread silently
            srv.log.write("internal error: %s" % traceback.format_exc())
            self.close_connection = True
            if not self._head_sent:
                try:
                    self._send(Reply.json(500, zuora_error(CODE_INTERNAL, "Simulator internal error")), req)
                except OSError:
                    pass
        finally:
            if record is not None:
                srv.state.set_request_status(record, self._sent_status)
            track = req.track_id if req is not None else None
            srv.log.write("%s:%s %s %s %s track=%s fault=%s %.1fms" % (
                self.client_address[0], self.client_address[1], self.command, self.path,
                self._sent_status if self._sent_status is not None else "-",
                track if track is not None else "-", fault or "-", (time.time() - started) * 1000))

    def _serve_api(self, req):
        """Answer a Zuora API request, applying the first matching fault rule; returns its name."""
        srv = self.server
        rule = srv.state.pick_fault(req.method, req.path)
        action = rule.action if rule else None
        if action == "hang":
            self._hang()
            return action
        slow_after = action == "slow" and rule.params["commit_first"]
        if action == "slow" and not slow_after:
            srv.stopping.wait(rule.params["delay"])
        if action == "expire_token":
            srv.state.expire_token(req.bearer)
        if action in FaultRule.CANNED:
            reply = rule.canned_reply()
        else:
            reply = srv.api.handle(req)
        if slow_after:
            # Done (a job made), and the answer still on its way: a client that dies meanwhile
            # never learns of it.
            srv.stopping.wait(rule.params["delay"])
        if action == "commit_then_fail":
            variant = rule.params["variant"]
            if variant == "500":
                reply = Reply.json(500, zuora_error(CODE_INTERNAL, "Internal Error"))
            elif variant == "hang":
                self._hang()
                return "%s/%s" % (action, variant)
            else:
                self._abort(rst=variant == "reset")
                return "%s/%s" % (action, variant)
        elif action in ("huge_body", "wrong_shape", "truncated_json_short"):
            reply = rule.transform(reply)
        status, headers, body = self._finalize(reply, req)
        if action == "drip":
            self._write_head(status, headers, len(body))
            self._drip(body, rule.params["bytes_per_second"])
        elif action == "reset_mid_body":
            self._write_head(status, headers, len(body))
            self.wfile.write(body[:max(1, len(body) // 2)])
            time.sleep(0.05)
            self._abort(rst=True)
        elif action == "truncated_json":
            self._write_head(status, headers, len(body))
            self.wfile.write(body[:len(body) // 2])
            self.close_connection = True
        else:
            self._send_raw(status, headers, body)
        return action

    # -- answering

    def _wants_gzip(self, req):
        for item in (req.headers.get("Accept-Encoding") or "").split(","):
            coding, _, params = item.strip().partition(";")
            if coding.strip().lower() in ("gzip", "x-gzip", "*"):
                q = params.strip()
                return not re.match(r"^q\s*=\s*0(\.0*)?$", q)
        return False

    def _finalize(self, reply, req):
        """Status, headers and wire body: content type, track id echo, gzip."""
        headers = [("Content-Type", reply.content_type)] if reply.content_type else []
        headers += reply.headers
        if req is not None and req.track_id is not None:
            headers.append(("Zuora-Track-Id", req.track_id))
        body = reply.body
        if body and req is not None and self._wants_gzip(req) and (
                len(body) > GZIP_THRESHOLD or self.server.state.setting("gzip_always")):
            body = gzip.compress(body, mtime=0)
            headers += [("Content-Encoding", "gzip"), ("Vary", "Accept-Encoding")]
        return reply.status, headers, body

    def _write_head(self, status, headers, length, body=None):
        """The status line and the headers; BODY, when given, leaves in the same write."""
        # Recorded before the answer leaves: a client that reads /_sim/requests
        # right after its answer must see the status.
        if getattr(self, "_record", None) is not None:
            self.server.state.set_request_status(self._record, status)
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if length is not None:
            self.send_header("Content-Length", str(length))
        if self.close_connection:
            self.send_header("Connection", "close")
        # end_headers(), with the body joined: one send(), so that the client
        # is not woken once for the head and again for the body.
        self._headers_buffer.append(b"\r\n")
        if body:
            self._headers_buffer.append(body)
        self.flush_headers()
        self._head_sent = True
        self._sent_status = status

    def _send_raw(self, status, headers, body):
        self._write_head(status, headers, len(body), body if self.command != "HEAD" else None)

    def _send(self, reply, req):
        self._send_raw(*self._finalize(reply, req))

    # -- socket-level misbehaviour

    def _drip(self, body, bytes_per_second):
        chunk = max(1, int(bytes_per_second / 20))
        interval = chunk / bytes_per_second
        for offset in range(0, len(body), chunk):
            if self.server.stopping.is_set():
                self._abort(rst=True)
                return
            self.wfile.write(body[offset:offset + chunk])
            if offset + chunk < len(body):
                time.sleep(interval)

    def _hang(self):
        """Never answer; return when the client closes the connection (or the server stops)."""
        self.close_connection = True
        conn = self.connection
        while not self.server.stopping.is_set():
            try:
                readable, _, _ = select.select([conn], [], [], 0.25)
                if readable and not conn.recv(65536):
                    break
            except (TimeoutError, ssl.SSLWantReadError):
                continue
            except (OSError, ValueError):
                break

    def _abort(self, rst):
        """Close the connection now: with RST (SO_LINGER 0) or with a plain FIN."""
        self.close_connection = True
        if not rst:
            return  # the server shuts the socket down (FIN) after this request
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.rfile.close()
            self.connection.close()
        except OSError:
            pass


class SimServer(http.server.ThreadingHTTPServer):
    """Threading HTTP/1.1 server: daemon threads, listen backlog 4096, IPv4 or IPv6."""

    daemon_threads = True
    block_on_close = False  # never wait for hanging or idle keep-alive connections at exit
    request_queue_size = 4096
    allow_reuse_address = True

    def __init__(self, host, port, state, log, ssl_context=None, record_only=False, idle_timeout=None):
        infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
        self.address_family = infos[0][0]
        self.host = host
        self.state = state
        self.log = log
        self.ssl_context = ssl_context
        self.record_only = record_only
        self.idle_timeout = idle_timeout
        self.stopping = threading.Event()
        super().__init__((host, port), Handler)
        self.port = self.socket.getsockname()[1]
        self.scheme = "https" if ssl_context else "http"
        self.base_url = "%s://%s:%d" % (self.scheme, url_host(host), self.port)
        self.api = ZuoraApi(state, self.base_url)
        self.control = ControlApi(state)

    def server_bind(self):
        """Bind without the reverse DNS lookup HTTPServer does."""
        socketserver.TCPServer.server_bind(self)
        self.server_name = self.host
        self.server_port = self.socket.getsockname()[1]

    def handle_error(self, request, client_address):
        """One log line instead of a traceback on stderr."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (OSError, ssl.SSLError)):
            self.log.write("%s:%s connection error: %r" % (client_address[0], client_address[1], exc))
        else:
            self.log.write("%s:%s handler error: %s" % (client_address[0], client_address[1],
                                                        traceback.format_exc()))


# ----------------------------------------------------------------------------------------------
# command line

def parse_args(argv):
    """The command line."""
    p = argparse.ArgumentParser(description="Zuora REST API simulator for refreshd tests.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1, ::1, ...)")
    p.add_argument("--port", type=int, default=0, help="port; 0 picks a free one")
    p.add_argument("--port-file", help="write the actual port here (atomically)")
    p.add_argument("--job-seconds", type=float, help="total duration of a refresh job (default 6)")
    p.add_argument("--token-lifetime", type=float, help="token lifetime in seconds (default 3600)")
    p.add_argument("--client-id", help="valid client_id (default demo-client)")
    p.add_argument("--client-secret", help="valid client_secret (default demo-secret)")
    p.add_argument("--cooldown-seconds", type=float, help="default cooldown of every environment (0)")
    p.add_argument("--location-mode", choices=("relative", "absolute", "missing", "foreign"))
    p.add_argument("--foreign-base", help="base URL used by --location-mode foreign")
    p.add_argument("--list-shape", choices=("bare", "result", "data", "jobs"))
    p.add_argument("--clock-offset", type=float, help="seconds Zuora's clock is ahead (negative: behind)")
    p.add_argument("--tls-cert", help="PEM certificate (chain): serve HTTPS")
    p.add_argument("--tls-key", help="PEM private key for --tls-cert")
    p.add_argument("--scenario", help="JSON file: config keys and an optional 'faults' list")
    p.add_argument("--log", help="request log file (default stderr)")
    p.add_argument("--record-only", action="store_true", help="answer 200 {} to everything, record all")
    p.add_argument("--idle-timeout", type=float, default=600.0,
                   help="close idle keep-alive connections after this many seconds (0: never)")
    p.add_argument("--max-requests", type=int, default=100000, help="recorded requests kept")
    args = p.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        p.error("--tls-cert and --tls-key go together")
    return args


def build_state(args):
    """State from defaults, then the scenario file, then explicit command-line flags."""
    state = State(args.max_requests)
    if args.scenario:
        with open(args.scenario, encoding="utf-8") as fh:
            scenario = json.load(fh)
        if not isinstance(scenario, dict):
            raise ValueError("the scenario must be a JSON object")
        scenario = dict(scenario.get("config", {}), **{k: v for k, v in scenario.items() if k != "config"})
        if "environments" in scenario and "strict_environments" not in scenario:
            scenario["strict_environments"] = True
        state.configure(scenario)
    flags = {"job_seconds": args.job_seconds, "token_lifetime": args.token_lifetime,
             "client_id": args.client_id, "client_secret": args.client_secret,
             "cooldown_seconds": args.cooldown_seconds, "location_mode": args.location_mode,
             "foreign_base": args.foreign_base, "list_shape": args.list_shape,
             "clock_offset": args.clock_offset}
    state.configure({k: v for k, v in flags.items() if v is not None})
    state.mark_initial()
    return state


def write_port_file(path, port):
    """Write the port atomically (temp file + rename)."""
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w", encoding="ascii") as fh:
        fh.write("%d\n" % port)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def raise_fd_limit():
    """Allow many concurrent connections."""
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = hard if hard != resource.RLIM_INFINITY else 65536
        if soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, 65536), hard))
    except (ImportError, ValueError, OSError):
        pass


def main(argv=None):
    """Run the simulator until SIGTERM or SIGINT."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        state = build_state(args)
    except (OSError, ValueError) as exc:
        print("zuora_sim: bad scenario or settings: %s" % exc, file=sys.stderr)
        return 2
    ssl_context = None
    if args.tls_cert:
        ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            ssl_context.load_cert_chain(args.tls_cert, args.tls_key)
        except (OSError, ssl.SSLError) as exc:
            print("zuora_sim: cannot load TLS certificate/key: %s" % exc, file=sys.stderr)
            return 2
    raise_fd_limit()
    threading.stack_size(1024 * 1024)
    try:
        log = RequestLog(args.log)
        server = SimServer(args.host, args.port, state, log, ssl_context, args.record_only,
                           args.idle_timeout or None)
    except OSError as exc:
        print("zuora_sim: cannot listen on %s port %d: %s" % (args.host, args.port, exc), file=sys.stderr)
        return 2
    stop = threading.Event()

    def on_signal(signum, _frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    worker = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              name="accept", daemon=True)
    worker.start()
    if args.port_file:
        try:
            write_port_file(args.port_file, server.port)
        except OSError as exc:
            print("zuora_sim: cannot write the port file: %s" % exc, file=sys.stderr)
            server.server_close()
            return 2
    try:
        print("listening on %s" % server.base_url, flush=True)
    except OSError:
        pass
    log.write("listening on %s%s" % (server.base_url, " (record-only)" if args.record_only else ""))
    while not stop.wait(0.5):
        pass
    log.write("shutting down")
    server.stopping.set()
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
