#!/usr/bin/python3
"""The security sweep: every endpoint and the stream refuse every kind of bad token, caps hold,
and the daemons listen on loopback or unix sockets only.

Why this file exists: the integration suites check auth, origins and limits one case at a time
(tests/integration/test_http.py AuthTests, test_ws.py AuthTests and LimitTests). A new endpoint,
a new route in a web server configuration or a change of the token code can still leave one
combination open. This program is the whole matrix in one place, through the real web server
from the shipped configurations (scripts/serve.py), with auth on (auth_secret set):

- every HTTP endpoint (POST /simulations, the same with Prefer: respond-async,
  POST /simulations/async, GET and HEAD /simulations/{id}, GET .../events and its long poll,
  DELETE /simulations/{id}, GET /simulations, GET /healthz, GET /metrics) against every bad
  token (missing, expired, expiring now, signed with another secret or an empty one, alg none
  with and without a signature, HS512, no exp, a string exp, malformed in five ways, a tampered
  payload, too long, another scheme), in the Authorization header and in ?token=: 401
  problem+json with WWW-Authenticate: Bearer; a token for another job on the job's endpoints and
  a job token on the others, a user token on the admin list: 403 problem+json; each with
  positive controls (the right token is accepted) and no side effect of a refused request (no
  job created, the target job not cancelled). OPTIONS is the only endpoint open without a
  token (docs/api.md);
- the WebSocket stream through the web server with the same tokens: close 4001, before the
  Origin, the query and the job are looked at; the Origin check (a foreign Origin 4003, the same
  origin and no Origin accepted);
- caps: the bridge's per-address and total session caps (4029, also for a client that sends its
  own X-Forwarded-For through the web server; refusals checked after the token), the
  responder's long-poll cap (max_waiters: answered at once with Retry-After: 1), its queue cap
  (queue_size: 503 queue-full) and body cap (413); a request without a token never takes
  a waiter's place or a queue slot (401 first). The responder has no per-address cap or rate
  limit (docs/configuration.md);
- where the daemons listen: risksim-fcgi --print-config and risksim-wsbridge --print-config with
  the shipped httpd-conf/risksim.conf, with an empty configuration and with none at all (every
  listen address is 127.0.0.0/8, ::1, a unix socket or fd 0), the shipped systemd socket and web
  server snippets (the bridge is reached on 127.0.0.1, the responder on a unix socket), and the
  running daemons' listening TCP sockets in /proc/net/tcp and tcp6 (loopback only).

    /usr/bin/python3 tests/reliability/security.py --build BUILD_DIR [--server lighttpd|apache]
        [--long] [--keep]

--long adds the ?token= form of every bad token on every endpoint, HEAD of every GET
endpoint and the Authorization header form of every bad token on the stream (the default form
checks the query form on the job endpoints and the stream). Figures are printed as
`FIGURE key=value` lines, then PASS (exit 0) or FAIL with every failed check (exit 1). It fails
too on a sanitizer report in any daemon log (an ASan build directory works) and when a daemon
did not stop cleanly. Nothing here asserts durations. State lives in a temporary directory,
removed unless --keep (or on failure). It needs /usr/bin/python3 with Debian's
python3-websockets, curl and the web server.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import relcommon  # (first: it puts scripts/ and tests/integration/ on sys.path)
from relcommon import REPO, Tally
import httpclient
import serve
import test_http as http_suite
import test_ws as ws_suite

websockets = ws_suite.websockets  # None without the library: run_main() reports that

SECRET = http_suite.SECRET  # so that test_http.tokens() makes tokens for this site
# The site: jobs stay queued (no workers), small caps to reach.
OVERRIDES: Dict[str, object] = {
    "auth_secret": SECRET,
    "workers": 0,
    "queue_size": 4,
    "max_waiters": 2,
    "max_body_bytes": 4096,
    "max_sessions": 4,
    "max_sessions_per_ip": 2,
    "retry_after_s": 3,
}
GOOD = json.dumps(http_suite.small_request(seed=7, trials=2000)).encode()
WAIT_S = 120.0
ANOTHER_ADDRESS = "192.0.2.7"  # TEST-NET-1: stands for another client (X-Forwarded-For)
ORIGIN_REFUSED = (4003, "origin not allowed")


class SweepError(AssertionError):
    """A check of the sweep failed (the message says which)."""


# ------------------------------------------------------------------------------------------
# Tokens


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def jwt(header: Mapping[str, object], payload: Mapping[str, object], secret: str = SECRET,
        digest: Any = hashlib.sha256) -> str:
    return http_suite.raw_token(dict(header), dict(payload), secret, digest)


def bad_tokens(job_id: str) -> Dict[str, Optional[str]]:
    """Every kind of token that must be refused with 401, by name: the token text (None: no
    token at all). Each would be valid for job_id and as admin but for what is wrong with it."""
    now = int(time.time())
    hs256 = {"alg": "HS256", "typ": "JWT"}
    good_claims = {"scope": "admin", "exp": now + 300}
    valid = serve.make_token(SECRET, scope="admin")
    head, _, sig = valid.split(".")
    tampered_payload = b64url(json.dumps({"scope": "admin", "exp": now + 600}).encode())
    none_header = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    none_payload = b64url(json.dumps(good_claims).encode())
    none_sig = b64url(hmac.new(SECRET.encode(), f"{none_header}.{none_payload}".encode(),
                               hashlib.sha256).digest())
    return {
        "missing": None,
        "expired": serve.make_token(SECRET, ttl=-10, scope="admin"),
        "expiring now": jwt(hs256, {"scope": "admin", "exp": now}),
        "other secret": serve.make_token("not-the-secret", scope="admin"),
        "empty secret": serve.make_token("", scope="admin"),
        "alg none": f"{none_header}.{none_payload}.",
        "alg none signed": f"{none_header}.{none_payload}.{none_sig}",
        "HS512": jwt({"alg": "HS512", "typ": "JWT"}, good_claims, digest=hashlib.sha512),
        "no exp": jwt(hs256, {"scope": "admin"}),
        "exp string": jwt(hs256, {"scope": "admin", "exp": str(now + 300)}),
        "garbage": "not.a.token",
        "two parts": f"{head}.{tampered_payload}",
        "four parts": valid + ".x",
        "bad base64": "%%%.***.!!!",
        "empty signature": f"{head}.{tampered_payload}.",
        "tampered payload": f"{head}.{tampered_payload}.{sig}",
        "too long": serve.make_token(SECRET, scope="admin", pad="x" * 5000),
    }


def bearer(token: Optional[str]) -> Dict[str, str]:
    return {} if token is None else {"Authorization": "Bearer " + token}


# ------------------------------------------------------------------------------------------
# Where the daemons listen


LOOPBACK_V4 = re.compile(r"^127\.\d{1,3}\.\d{1,3}\.\d{1,3}:\d+$")


def listen_is_private(value: str) -> bool:
    """Whether a listen address keeps the daemon off the network: fd 0 (""), a unix socket,
    127.0.0.0/8 or [::1]."""
    return value == "" or value.startswith("unix:/") or bool(LOOPBACK_V4.match(value)) \
        or bool(re.match(r"^\[::1\]:\d+$", value))


def print_config(binary: Path, args: Sequence[str]) -> Dict[str, str]:
    """The settings --print-config shows (quotes removed), run with an environment without
    RISKSIM_* variables."""
    env = serve.daemon_env()
    proc = subprocess.run([str(binary), "--print-config", *args], capture_output=True, text=True,
                          env=env, timeout=60, cwd="/")
    if proc.returncode != 0:
        raise SweepError(f"{binary.name} --print-config {' '.join(args)} failed "
                         f"({proc.returncode}): {proc.stderr.strip()}")
    out = {}
    for line in proc.stdout.splitlines():
        m = re.match(r"^([a-z_]+) = (.*)$", line)
        if m:
            value = m.group(2)
            out[m.group(1)] = value[1:-1] if value.startswith('"') and value.endswith('"') \
                else value
    return out


def check_listen_settings(build: Path, tally: Tally) -> None:
    """Every listen key of both daemons, with the shipped file, an empty one and none."""
    configs = [("the shipped httpd-conf/risksim.conf",
                ["--config", str(REPO / "httpd-conf" / "risksim.conf")]),
               ("an empty configuration", ["--config", "/dev/null"])]
    if not Path("/etc/risksim/risksim.conf").exists():
        configs.append(("no configuration at all", []))
    else:
        print("NOTE: /etc/risksim/risksim.conf exists on this host; the built-in defaults are "
              "checked with --config /dev/null only")
    for binary in (build / "fcgi" / "risksim-fcgi", build / "wsbridge" / "risksim-wsbridge"):
        for what, args in configs:
            settings = print_config(binary, args)
            keys = [k for k in settings if k in ("listen", "bridge_listen")]
            tally.check(len(keys) == 2, f"{binary.name} with {what}: listen keys {keys}")
            for key in keys:
                tally.count("listen_settings_checked")
                tally.check(listen_is_private(settings[key]),
                            f"{binary.name} with {what}: {key} = {settings[key]!r} is not "
                            "loopback, a unix socket or fd 0")


def check_shipped_routes(tally: Tally) -> None:
    """The shipped systemd socket and web server snippets reach the daemons privately."""
    unit = (REPO / "httpd-conf" / "systemd" / "risksim-fcgi.socket").read_text()
    streams = re.findall(r"(?m)^\s*Listen(?:Stream|Datagram|SequentialPacket)\s*=\s*(\S+)", unit)
    tally.check(streams and all(s.startswith("/") for s in streams),
                f"risksim-fcgi.socket listens on {streams}, not only on unix sockets")
    tally.count("listen_settings_checked", len(streams))
    lighttpd = (REPO / "httpd-conf" / "lighttpd" / "10-risksim.conf").read_text()
    hosts = re.findall(r'"host"\s*=>\s*"([^"]+)"', lighttpd)
    tally.check(hosts and all(h.startswith("127.") or h == "::1" for h in hosts),
                f"the lighttpd snippet proxies to {hosts}")
    apache = (REPO / "httpd-conf" / "apache" / "risksim.conf").read_text()
    targets = re.findall(r'(?m)^\s*ProxyPass(?:Match)?\s+"[^"]*"\s+"([^"]+)"', apache)
    tally.check(targets and all(re.match(r"^(http|ws)://127\.0\.0\.1:|^unix:/", t)
                                for t in targets),
                f"the Apache snippet proxies to {targets}")
    tally.count("listen_settings_checked", len(hosts) + len(targets))


def listening_tcp(pid: int) -> List[Tuple[str, int]]:
    """(address, port) of every listening TCP socket of process pid (/proc/PID/fd and
    /proc/net/tcp, tcp6)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            m = re.match(r"socket:\[(\d+)\]", target)
            if m:
                inodes.add(m.group(1))
    out = []
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        with contextlib.suppress(OSError), open(table) as f:
            next(f)
            for line in f:
                parts = line.split()
                local, state, inode = parts[1], parts[3], parts[9]
                if state != "0A" or inode not in inodes:
                    continue
                hexaddr, hexport = local.split(":")
                raw = bytes.fromhex(hexaddr)
                if v6:
                    # four 32-bit words in host (little-endian) order
                    raw = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
                    addr = socket.inet_ntop(socket.AF_INET6, raw)
                else:
                    addr = socket.inet_ntop(socket.AF_INET, raw[::-1])
                out.append((addr, int(hexport, 16)))
    return out


def check_running_sockets(site: ws_suite.BridgeSite, tally: Tally) -> None:
    """The running bridge listens on 127.0.0.1 only; the responders on no TCP socket except
    loopback ones."""
    assert site.bridge is not None and site.bridge.pid is not None
    found = listening_tcp(site.bridge.pid)
    tally.check(found, "the running bridge has no listening TCP socket in /proc/net/tcp")
    for addr, port in found:
        tally.count("listening_sockets_checked")
        tally.check(addr == "127.0.0.1", f"the bridge listens on {addr}:{port}")
    for pid in site.responder_pids():
        for addr, port in listening_tcp(pid):
            tally.count("listening_sockets_checked")
            tally.check(addr.startswith("127.") or addr == "::1",
                        f"responder {pid} listens on {addr}:{port}")


# ------------------------------------------------------------------------------------------
# The HTTP matrix


@dataclass
class Endpoint:
    name: str
    method: str
    path: str  # with {job} for the job the refusals target
    scope: str  # "job", "user" or "admin": what a token must allow
    body: Optional[bytes] = None
    headers: Dict[str, str] = field(default_factory=dict)
    ok: Tuple[int, ...] = (200,)


def endpoints(long_form: bool) -> List[Endpoint]:
    out = [
        Endpoint("POST /simulations", "POST", "/simulations", "user", GOOD),
        Endpoint("POST /simulations (Prefer: respond-async)", "POST", "/simulations", "user",
                 GOOD, {"Prefer": "respond-async"}, (202,)),
        Endpoint("POST /simulations/async", "POST", "/simulations/async", "user", GOOD,
                 ok=(202,)),
        Endpoint("GET /simulations/{id}", "GET", "/simulations/{job}", "job"),
        Endpoint("GET /simulations/{id}/events", "GET", "/simulations/{job}/events?after=0",
                 "job"),
        Endpoint("GET /simulations/{id}/events (long poll)", "GET",
                 "/simulations/{job}/events?after={last}&wait=2", "job"),
        Endpoint("DELETE /simulations/{id}", "DELETE", "/simulations/{job}", "job",
                 ok=(200, 202)),
        Endpoint("GET /simulations", "GET", "/simulations?limit=5", "admin"),
        Endpoint("GET /healthz", "GET", "/healthz", "user"),
        Endpoint("GET /metrics", "GET", "/metrics", "user"),
        Endpoint("HEAD /simulations/{id}", "HEAD", "/simulations/{job}", "job"),
    ]
    if long_form:
        out += [Endpoint("HEAD /simulations/{id}/events", "HEAD",
                         "/simulations/{job}/events?after=0", "job"),
                Endpoint("HEAD /simulations", "HEAD", "/simulations?limit=5", "admin"),
                Endpoint("HEAD /healthz", "HEAD", "/healthz", "user"),
                Endpoint("HEAD /metrics", "HEAD", "/metrics", "user")]
    return out


class HttpSweep:
    """The HTTP side of the sweep on one site."""

    def __init__(self, site: ws_suite.BridgeSite, tally: Tally, long_form: bool):
        self.site = site
        self.tally = tally
        self.long_form = long_form
        self.created: List[str] = []  # jobs the positive controls created

    # -- requests -----------------------------------------------------------------------

    def request(self, method: str, path: str, headers: Optional[Mapping[str, str]] = None,
                body: Optional[bytes] = None, timeout: float = 60) -> httpclient.Response:
        return httpclient.request(self.site.url(path), method, headers=dict(headers or {}),
                                  body=body, timeout=timeout)

    def admin(self) -> Dict[str, str]:
        return bearer(serve.make_token(SECRET, scope="admin"))

    def job_ids(self) -> List[str]:
        resp = self.request("GET", "/simulations?limit=1000", self.admin())
        if resp.status != 200:
            raise SweepError("listing jobs as admin failed\n" + resp.describe())
        return [str(j["id"]) for j in resp.json()["jobs"]]  # type: ignore[index]

    def state(self, job_id: str) -> str:
        resp = self.request("GET", f"/simulations/{job_id}", self.admin())
        if resp.status != 200:
            raise SweepError(f"reading job {job_id} as admin failed\n" + resp.describe())
        return str(resp.json()["status"])  # type: ignore[index]

    def new_job(self, path: str, expect: int, what: str, seed: int) -> str:
        """The id of a job made as admin by POST path of a small request (seed, 2,000
        trials); SweepError("<what> as admin failed") unless the answer is expect."""
        body = json.dumps(http_suite.small_request(seed=seed, trials=2000)).encode()
        resp = self.request("POST", path, self.admin(), body)
        if resp.status != expect:
            raise SweepError(f"{what} as admin failed\n" + resp.describe())
        return str(resp.json()["id"])  # type: ignore[index]

    def sync_job(self, seed: int) -> str:
        return self.new_job("/simulations", 200, "a synchronous run", seed)

    def queued_job(self, seed: int) -> str:
        return self.new_job("/simulations/async", 202, "an async submission", seed)

    def last_seq(self, job_id: str) -> int:
        resp = self.request("GET", f"/simulations/{job_id}/events?after=0", self.admin())
        return int(resp.json()["next"])  # type: ignore[index]

    # -- checks -------------------------------------------------------------------------

    def expect_refusal(self, resp: httpclient.Response, status: int, what: str) -> None:
        """A 401 or 403 problem document, with WWW-Authenticate: Bearer on 401, that says
        nothing about the job."""
        t = self.tally
        ok = t.check(resp.status == status, f"{what}: expected {status}\n{resp.describe()}")
        if not ok:
            return
        t.count(f"http_{status}_checked")
        t.check(resp.content_type == "application/problem+json",
                f"{what}: not application/problem+json\n{resp.describe()}")
        t.check(resp.header("cache-control") == "no-store", f"{what}: no Cache-Control: no-store")
        if status == 401:
            t.check((resp.header("www-authenticate") or "").startswith("Bearer"),
                    f"{what}: no WWW-Authenticate: Bearer\n{resp.describe()}")
        if resp.request.method == "HEAD":
            t.check(resp.body == b"", f"{what}: HEAD answered with a body")
            return
        doc = resp.json_or_none()
        kind = "unauthorized" if status == 401 else "forbidden"
        t.check(isinstance(doc, dict) and doc.get("type") == f"urn:risksim:problem:{kind}"
                and doc.get("status") == status,
                f"{what}: not the {kind} problem\n{resp.describe()}")
        if isinstance(doc, dict):
            leaked = {"result", "events", "jobs", "nodes", "queueDepth"} & set(doc)
            t.check(not leaked, f"{what}: the refusal carries {sorted(leaked)}")

    def expect_accepted(self, resp: httpclient.Response, ep: Endpoint, what: str) -> None:
        ok = self.tally.check(resp.status in ep.ok,
                              f"{what}: expected {ep.ok} with a valid token\n{resp.describe()}")
        if ok:
            self.tally.count("http_accepted_checked")
        if ok and ep.method != "HEAD" and resp.status in (200, 202) \
                and ep.path.startswith("/simulations") and ep.method == "POST":
            doc = resp.json_or_none()
            if isinstance(doc, dict) and isinstance(doc.get("id"), str):
                self.created.append(str(doc["id"]))

    # -- the matrix ---------------------------------------------------------------------

    def path_of(self, ep: Endpoint, job_id: str, last: int) -> str:
        return ep.path.replace("{job}", job_id).replace("{last}", str(last))

    def with_query(self, path: str, token: str) -> str:
        return path + ("&" if "?" in path else "?") + "token=" + urllib.parse.quote(token, "")

    def send(self, ep: Endpoint, path: str, auth: Mapping[str, str],
             timeout: float = 60) -> httpclient.Response:
        """One request of ep (its own headers and body) with the auth headers given."""
        return self.request(ep.method, path, {**ep.headers, **auth}, ep.body, timeout)

    def refusals_401(self, eps: List[Endpoint], target: str, last: int) -> None:
        tokens = bad_tokens(target)
        for ep in eps:
            path = self.path_of(ep, target, last)
            for kind, token in tokens.items():
                resp = self.send(ep, path, bearer(token))
                self.expect_refusal(resp, 401, f"{ep.name} with a {kind} token (header)")
                query_form = token is not None and kind != "too long" and (
                    self.long_form or ep.scope == "job")
                if query_form:
                    assert token is not None
                    resp = self.send(ep, self.with_query(path, token), {})
                    self.expect_refusal(resp, 401, f"{ep.name} with a {kind} token (query)")
            for scheme, value in (("Basic", "Basic " + base64.b64encode(b"admin:x").decode()),
                                  ("an empty Bearer", "Bearer "),
                                  ("Bearer without a blank", "Bearer" + serve.make_token(SECRET)),
                                  ("Token", "Token " + serve.make_token(SECRET))):
                resp = self.send(ep, path, {"Authorization": value})
                self.expect_refusal(resp, 401, f"{ep.name} with {scheme} authorization")

    def refusals_403(self, eps: List[Endpoint], target: str, other: str, last: int) -> None:
        other_job = serve.make_token(SECRET, job=other)
        own_job = serve.make_token(SECRET, job=target)
        user = serve.make_token(SECRET)
        for ep in eps:
            path = self.path_of(ep, target, last)
            if ep.scope == "job":
                cases = [("another job's token", other_job)]
            else:
                cases = [("a job token", own_job)]
            if ep.scope == "admin":
                cases.append(("a user token", user))
            for kind, token in cases:
                resp = self.send(ep, path, bearer(token))
                self.expect_refusal(resp, 403, f"{ep.name} with {kind} (header)")
                resp = self.send(ep, self.with_query(path, token), {})
                self.expect_refusal(resp, 403, f"{ep.name} with {kind} (query)")

    def controls(self, eps: List[Endpoint], job_id: str, last: int) -> None:
        """The right tokens are accepted (so that the refusals mean something)."""
        admin = serve.make_token(SECRET, scope="admin")
        own = serve.make_token(SECRET, job=job_id)
        user = serve.make_token(SECRET)
        for ep in eps:
            path = self.path_of(ep, job_id, last)
            tokens = [("an admin token", admin)]
            if ep.scope == "job":
                tokens.append(("its job token", own))
            if ep.scope in ("job", "user"):
                tokens.append(("a user token", user))
            for kind, token in tokens:
                self.expect_accepted(self.send(ep, path, bearer(token)), ep,
                                     f"{ep.name} with {kind} (header)")
                self.cancel_created()
                self.expect_accepted(self.send(ep, self.with_query(path, token), {}), ep,
                                     f"{ep.name} with {kind} (query)")
                self.cancel_created()

    def cancel_created(self) -> None:
        """Cancels the queued jobs the positive controls created (the queue is small)."""
        for job_id in self.created:
            self.request("DELETE", f"/simulations/{job_id}", self.admin())
        self.created.clear()

    def options_open(self, eps: List[Endpoint], job_id: str) -> None:
        """OPTIONS is documented as open: 204 with Allow and no body, without a token."""
        for path in sorted({self.path_of(ep, job_id, 0).split("?")[0] for ep in eps}):
            resp = self.request("OPTIONS", path)
            if self.tally.check(resp.status == 204 and resp.header("allow") and not resp.body,
                                f"OPTIONS {path} without a token\n{resp.describe()}"):
                self.tally.count("open_endpoints_checked")

    def run(self, completed: str, other: str, queued: str) -> None:
        """The matrix. Refusals that could change something target the queued job (DELETE),
        so that a refused cancel would show; every other job refusal targets a completed one."""
        eps = endpoints(self.long_form)
        before = set(self.job_ids())
        last = self.last_seq(completed)
        for ep in eps:
            target = queued if ep.method == "DELETE" else completed
            self.refusals_401([ep], target, last)
            self.refusals_403([ep], target, other, last)
        after = set(self.job_ids())
        self.tally.check(after == before,
                         f"refused requests changed the jobs: new {sorted(after - before)}, "
                         f"gone {sorted(before - after)}")
        state = self.state(queued)
        self.tally.check(state == "queued", f"the queued job {queued} is {state} after refused "
                                            "DELETEs")
        self.controls(eps, completed, last)
        self.options_open(eps, completed)
        self.tally.check(self.state(queued) == state, "a positive control touched the queued "
                                                      "job")


# ------------------------------------------------------------------------------------------
# Responder caps


class ResponderCaps:
    """max_waiters, queue_size and max_body_bytes, and the 401 that comes before them."""

    def __init__(self, http: HttpSweep):
        self.http = http
        self.tally = http.tally

    def long_polls(self, job_id: str) -> None:
        """max_waiters long polls wait; one more is answered at once with Retry-After: 1 and
        no events; one without a token is a 401, not a waiter."""
        h = self.http
        after = h.last_seq(job_id)
        path = f"/simulations/{job_id}/events?after={after}&wait=25"
        cap = int(OVERRIDES["max_waiters"])  # type: ignore[arg-type]
        results: List[httpclient.Response] = []
        threads = [threading.Thread(target=lambda: results.append(
            h.request("GET", path, h.admin(), timeout=90))) for _ in range(cap)]
        for t in threads:
            t.start()
        try:
            self.wait_long_polls(cap)
            over = h.request("GET", path, h.admin(), timeout=60)
            doc = over.json_or_none()
            if self.tally.check(over.status == 200 and isinstance(doc, dict)
                                and doc.get("events") == [] and over.header("retry-after") == "1",
                                f"a long poll over max_waiters = {cap} is not answered at once "
                                f"with Retry-After: 1\n{over.describe()}"):
                self.tally.count("cap_refusals_checked")
            h.expect_refusal(h.request("GET", path, {}, timeout=60), 401,
                             "a long poll without a token while the waiters are full")
        finally:
            # the cancel wakes the waiting polls
            h.request("DELETE", f"/simulations/{job_id}", h.admin())
            for t in threads:
                t.join(WAIT_S)
        for resp in results:
            doc = resp.json_or_none()
            self.tally.check(resp.status == 200 and isinstance(doc, dict)
                             and [e.get("type") for e in doc.get("events", [])] == ["cancelled"],
                             f"a waiting long poll did not end with the cancel\n{resp.describe()}")

    def wait_long_polls(self, n: int) -> None:
        h = self.http

        def probe() -> Optional[bool]:
            text = h.request("GET", "/metrics", h.admin()).text
            return True if re.search(rf"(?m)^risksim_long_polls {n}$", text) else None
        http_suite.wait_for(f"{n} long polls to wait", probe, timeout=WAIT_S,
                            describe=self.http.site.log_tail)

    def queue(self) -> None:
        """Fill the queue; the next submission is 503 queue-full with Retry-After, and one
        without a token is a 401."""
        h = self.http
        size = int(OVERRIDES["queue_size"])  # type: ignore[arg-type]
        mine = []
        try:
            queued = sum(1 for _ in self.queued_ids())
            for i in range(size - queued):
                mine.append(h.queued_job(seed=300 + i))
            for path, headers in (("/simulations/async", {}),
                                  ("/simulations", {"Prefer": "respond-async"})):
                resp = h.request("POST", path, {**h.admin(), **headers}, GOOD)
                doc = resp.json_or_none()
                retry = str(OVERRIDES["retry_after_s"])
                if self.tally.check(resp.status == 503 and isinstance(doc, dict)
                                    and doc.get("type") == "urn:risksim:problem:queue-full"
                                    and resp.header("retry-after") == retry,
                                    f"POST {path} with a full queue\n{resp.describe()}"):
                    self.tally.count("cap_refusals_checked")
                h.expect_refusal(h.request("POST", path, headers, GOOD), 401,
                                 f"POST {path} without a token while the queue is full")
        finally:
            for job_id in mine:
                h.request("DELETE", f"/simulations/{job_id}", h.admin())

    def queued_ids(self) -> List[str]:
        h = self.http
        resp = h.request("GET", "/simulations?status=queued&limit=1000", h.admin())
        return [str(j["id"]) for j in resp.json()["jobs"]]  # type: ignore[index]

    def body(self) -> None:
        """A body over max_body_bytes is 413 with a token, 401 without one."""
        h = self.http
        big = json.dumps({**json.loads(GOOD), "name": "x" * 8000}).encode()
        resp = h.request("POST", "/simulations", h.admin(), big)
        if self.tally.check(resp.status == 413 and resp.is_problem(),
                            f"a body over max_body_bytes\n{resp.describe()}"):
            self.tally.count("cap_refusals_checked")
        h.expect_refusal(h.request("POST", "/simulations", {}, big), 401,
                         "a body over max_body_bytes without a token")


# ------------------------------------------------------------------------------------------
# The stream


class StreamSweep:
    """Tokens, origins and session caps of the WebSocket stream, through the web server."""

    def __init__(self, site: ws_suite.BridgeSite, tally: Tally):
        self.site = site
        self.tally = tally
        assert site.web is not None and site.bridge is not None
        self.web = site.web
        self.bridge = site.bridge

    def url(self, job_id: str, query: str = "", direct: bool = False) -> str:
        base = (f"ws://127.0.0.1:{self.bridge.port}{serve.BASE_PATH}" if direct
                else self.web.ws_url)
        return f"{base}/simulations/{job_id}/stream" + (f"?{query}" if query else "")

    def run_async(self, coro: Any) -> Any:
        async def guarded() -> Any:
            return await asyncio.wait_for(coro, WAIT_S)
        return asyncio.run(guarded())

    def stream(self, url: str, headers: Optional[Mapping[str, str]] = None,
               origin: Optional[str] = None) -> ws_suite.Received:
        got = ws_suite.Received(url)
        try:
            self.run_async(ws_suite.collect(url, got, headers, origin))
        except Exception as e:  # noqa: BLE001 - reported as a failed check
            got.close_reason = f"{got.close_reason} (client error {e!r})"
        return got

    def expect_close(self, got: ws_suite.Received, code: int, reason: Optional[str],
                     what: str, key: str) -> None:
        """A refusal: the handshake succeeded and the close came at once, with no message."""
        ok = got.ended and got.messages == [] and got.close_code == code and (
            reason is None or got.close_reason == reason)
        if self.tally.check(ok, f"{what}: expected close {code} {reason or ''}\n"
                                f"{got.describe()}"):
            self.tally.count(key)

    def expect_complete(self, got: ws_suite.Received, what: str) -> None:
        ok = got.ended and (got.close_code, got.close_reason) == ws_suite.DONE and any(
            m.get("type") == "complete" for m in got.messages)
        if self.tally.check(ok, f"{what}: the stream was not served to its end\n"
                                f"{got.describe()}"):
            self.tally.count("ws_accepted_checked")

    def tokens(self, completed: str, other: str, long_form: bool) -> None:
        for kind, token in bad_tokens(completed).items():
            if kind == "too long":
                continue  # a 5 KB query is the web server's matter (414/431), not the bridge's
            query = "" if token is None else "token=" + urllib.parse.quote(token, "")
            self.expect_close(self.stream(self.url(completed, query)), 4001, None,
                              f"stream with a {kind} token (query)", "ws_4001_checked")
            if token is not None and long_form:
                self.expect_close(self.stream(self.url(completed), bearer(token)), 4001, None,
                                  f"stream with a {kind} token (header)", "ws_4001_checked")
        other_token = serve.make_token(SECRET, job=other)
        self.expect_close(self.stream(self.url(completed, f"token={other_token}")), 4001,
                          "the token is for another job", "stream with another job's token",
                          "ws_4001_checked")
        self.expect_close(self.stream(self.url(completed), bearer(other_token)), 4001,
                          "the token is for another job",
                          "stream with another job's token (header)", "ws_4001_checked")
        good = serve.make_token(SECRET, job=completed)
        self.expect_close(self.stream(self.url(completed, f"token={good}&token={good}")), 4001,
                          None, "stream with the token given twice", "ws_4001_checked")
        for scheme in ("Basic " + base64.b64encode(b"a:b").decode(), "Bearer "):
            self.expect_close(self.stream(self.url(completed), {"Authorization": scheme}), 4001,
                              None, f"stream with Authorization: {scheme[:6]}",
                              "ws_4001_checked")
        # The token comes first: a client without one learns nothing about the job, its Origin
        # or its query.
        for what, url, origin in (
                ("an unknown job", self.url("0" * 26), None),
                ("a foreign Origin", self.url(completed), "https://evil.example"),
                ("a bad query", self.url(completed, "afer=1"), None)):
            self.expect_close(self.stream(url, origin=origin), 4001, "a token is required",
                              f"stream without a token and {what}", "ws_4001_checked")
        # Positive controls.
        for what, query, headers in (
                ("its job token (query)", f"token={good}", {}),
                ("an admin token (query)", f"token={serve.make_token(SECRET, scope='admin')}", {}),
                ("its job token (header)", "", bearer(good))):
            self.expect_complete(self.stream(self.url(completed, query), headers),
                                 f"stream with {what}")

    def origins(self, completed: str) -> None:
        """allowed_origins is empty: only the page's own origin (and no Origin) is accepted."""
        token = f"token={serve.make_token(SECRET, job=completed)}"
        port = self.web.port
        for origin in (f"http://127.0.0.1:{port}", None):
            self.expect_complete(self.stream(self.url(completed, token), origin=origin),
                                 f"stream with Origin {origin}")
        # (the scheme is not compared: the bridge cannot know it behind a TLS proxy; docs/api.md
        # says host and port)
        for origin in ("https://evil.example", f"http://127.0.0.1:{port + 1}",
                       f"http://localhost:{port}", "null",
                       f"http://127.0.0.1:{port}.evil.example", "http://127.0.0.1"):
            self.expect_close(self.stream(self.url(completed, token), origin=origin),
                              *ORIGIN_REFUSED, f"stream with Origin {origin}", "ws_4003_checked")

    def sessions(self) -> int:
        status, _, body = serve.http_request(self.bridge.base_url + "/healthz", timeout=30)
        if status != 200:
            raise SweepError(f"the bridge's /healthz answered {status}: {body[:300]!r}")
        return int(json.loads(body)["sessions"])

    def wait_sessions(self, n: int) -> None:
        http_suite.wait_for(f"the bridge to count {n} sessions", lambda: self.sessions() == n,
                            timeout=WAIT_S, describe=self.site.log_tail)

    def caps(self, queued: str) -> None:
        """max_sessions_per_ip = 2 and max_sessions = 4 on a job that stays queued."""
        token = f"token={serve.make_token(SECRET, job=queued)}"
        via_web = self.url(queued, token)
        state = HttpSweep(self.site, self.tally, False).state(queued)
        if state != "queued":
            raise SweepError(f"the job for the session caps is {state}, not queued")
        direct = self.url(queued, token, direct=True)
        self.wait_sessions(0)

        async def open_session(stack: contextlib.AsyncExitStack, url: str,
                               headers: Optional[Mapping[str, str]] = None) -> None:
            got = ws_suite.Received(url)
            ws = await stack.enter_async_context(ws_suite.connect(url, headers))
            msg = await ws_suite.next_message(ws, got)
            if not self.tally.check(msg.get("type") == "status",
                                    f"a session below the caps was refused\n{got.describe()}"):
                raise SweepError("session refused")
            self.tally.count("ws_sessions_opened")

        async def refused(url: str, reason: str, headers: Optional[Mapping[str, str]] = None,
                          code: int = 4029, what: str = "") -> None:
            """A refusal closes before any message; an accepted session (on the queued job)
            would send its opening status first, and is then closed by the client."""
            got = ws_suite.Received(url)
            async with ws_suite.connect(url, headers) as ws:
                try:
                    got.add(await ws.recv())
                except websockets.exceptions.ConnectionClosed:
                    pass
                got.close_code, got.close_reason, got.ended = ws.close_code, ws.close_reason, True
            self.expect_close(got, code, reason, what or f"a session over the cap ({reason})",
                              "cap_refusals_checked" if code == 4029 else "ws_4001_checked")

        async def scenario() -> None:
            async with contextlib.AsyncExitStack() as stack:
                for _ in range(2):
                    await open_session(stack, via_web)
                await refused(via_web, "too many sessions from this address")
                # a client's own X-Forwarded-For does not make it another address: the web
                # server appends the real one, and the bridge counts the last
                await refused(via_web, "too many sessions from this address",
                              {"X-Forwarded-For": ANOTHER_ADDRESS},
                              what="a session over the per-address cap with a forged "
                                   "X-Forwarded-For")
                # without a token: 4001 even at the cap
                await refused(self.url(queued), "a token is required", code=4001,
                              what="a session without a token at the per-address cap")
                # another address (through a proxy on loopback) still gets in, up to the total
                await open_session(stack, direct, {"X-Forwarded-For": ANOTHER_ADDRESS})
                await open_session(stack, direct, {"X-Forwarded-For": "192.0.2.8"})
                await refused(direct, "too many sessions", {"X-Forwarded-For": "192.0.2.9"})
                await refused(via_web, "too many sessions")
                await asyncio.to_thread(self.wait_sessions, 4)
        self.run_async(scenario())
        self.wait_sessions(0)


# ------------------------------------------------------------------------------------------
# The program


def start_site(label: str) -> ws_suite.BridgeSite:
    return ws_suite.BridgeSite(label, dict(OVERRIDES)).start()


def sweep(site: ws_suite.BridgeSite, tally: Tally, long_form: bool) -> None:
    """Every part of the sweep, each on its own jobs, so that one failing part does not hide
    what the others find."""
    http = HttpSweep(site, tally, long_form)
    completed = http.sync_job(seed=11)
    other = http.sync_job(seed=12)
    stream = StreamSweep(site, tally)
    caps = ResponderCaps(http)
    stages: List[Tuple[str, Callable[[], None]]] = [
        ("the HTTP matrix", lambda: http.run(completed, other, http.queued_job(seed=13))),
        ("stream tokens", lambda: stream.tokens(completed, other, long_form)),
        ("stream origins", lambda: stream.origins(completed)),
        ("stream session caps", lambda: stream.caps(http.queued_job(seed=14))),
        ("the queue cap", caps.queue),
        ("the body cap", caps.body),
        ("the long-poll cap", lambda: caps.long_polls(http.queued_job(seed=15))),
        ("listening sockets", lambda: check_running_sockets(site, tally)),
    ]
    t0 = time.monotonic()
    for name, stage in stages:
        try:
            stage()
        except Exception as e:  # noqa: BLE001 - every stage's failure is reported
            tally.fail(f"{name}: {type(e).__name__}: {e}")
        print(f"  {name}: done ({time.monotonic() - t0:.1f} s)", flush=True)


def run_sweep(args: argparse.Namespace, root: Path) -> None:
    """Where the daemons listen, then the sweep on a site of its own, then the figures; raises
    Failure if a check failed."""
    build = Path(args.build)
    tally = Tally()
    print(f"security sweep: {args.server}, build {build}, state {root}", flush=True)
    try:
        check_listen_settings(build, tally)
        check_shipped_routes(tally)
        site = start_site("security")
        try:
            sweep(site, tally, args.long)
        except (AssertionError, OSError) as e:
            tally.fail(f"{e}\n{site.log_tail()}")
        finally:
            for problem in site.stop():
                tally.fail(problem)
    except (AssertionError, serve.ServeError, OSError, subprocess.SubprocessError) as e:
        tally.fail(f"{type(e).__name__}: {e}")
    refusals = sum(int(v) for k, v in tally.figures.items()  # type: ignore[call-overload]
                   if k.endswith("_checked") and ("40" in k or "cap_" in k))
    tally.report("security", shown=40, extra=[("refusals_checked", refusals)])


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = relcommon.parser(__doc__, "the fuller matrix").parse_args(argv)
    return relcommon.run_main(
        "security", args, run_sweep, needs_websockets=True,
        binaries=("fcgi/risksim-fcgi", "wsbridge/risksim-wsbridge"),
        programs=("curl", relcommon.web_server_program(args.server)),
        on_sigterm=relcommon.exit_on_sigterm)


if __name__ == "__main__":
    sys.exit(main())
