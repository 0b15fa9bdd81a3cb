#!/usr/bin/env python3
"""Integration tests of the HTTP API (docs/api.md sections 3, 4 and 6) through a real web server.

Why this file exists: the responder is only ever reached through Apache's mod_proxy_fcgi or
lighttpd's mod_fastcgi, configured by the files in httpd-conf/, and each of them passes
requests on a little differently (chunked bodies, headers, methods, what it answers itself).
These tests start the shipped configurations on loopback with scripts/serve.py and drive every
endpoint, every documented error and the job life cycle with the curl binary, so that what a
client sees is what is checked. The same suite runs against either server:

    python3 tests/integration/test_http.py --server lighttpd|apache --build BUILD_DIR \\
        [--keep] [unittest arguments, e.g. -v or a test name]

Several servers with different configurations are started, one per test class (the main one
serves most tests). Each class stops its server when it is done and fails if a log of that
server holds a sanitizer report (the responder of an ASan/UBSan build writes them to its
stderr, which ends up in the server's logs). Nothing here asserts durations: timeouts only keep
a broken service from hanging the suite.

Python 3 standard library only.
"""

from __future__ import annotations

import argparse
import base64
import copy
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import uuid
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, TypeVar

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(HERE))

import bad_requests  # noqa: E402
import httpclient  # noqa: E402
import serve  # noqa: E402

T = TypeVar("T")

# Set from the command line in main().
OPTIONS = {
    "server": "lighttpd",
    "build": REPO / "build",
    "keep": False,
    "state_root": None,  # type: Optional[Path]
}

# How long a condition may take before a test gives up (only to avoid hanging; generous for
# sanitizer builds and busy machines).
WAIT_S = 180.0

# What a sanitizer writes when it finds something.
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")

ENTERPRISE = json.loads((REPO / "examples" / "enterprise.json").read_text())

SECRET = "integration-test-secret"

JOB_ID_RE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")
TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def small_request(seed: int = 1, trials: int = 2000, name: str = "small") -> Dict[str, object]:
    """A quick valid request (a portfolio of two leaves)."""
    doc = copy.deepcopy(bad_requests.GOOD)
    doc["seed"] = seed
    doc["trials"] = trials
    doc["name"] = name
    return doc


def long_request(trials: int = 10_000_000) -> Dict[str, object]:
    """A request that runs for a long time (many trials of a tree of 40 Poisson leaves), for
    jobs that must still be running when a test acts on them; tests cancel it."""
    children = []
    for i in range(40):
        children.append({"id": f"leaf{i}", "type": "leaf",
                         "frequency": {"type": "poisson", "lambda": 20},
                         "severity": {"type": "lognormal", "lower": 1000, "upper": 100000}})
    return {"name": "long", "trials": trials, "seed": 3,
            "root": {"id": "root", "type": "portfolio", "children": children}}


def wait_for(what: str, probe: Callable[[], Optional[T]], timeout: float = WAIT_S,
             interval: float = 0.02, describe: Callable[[], str] = lambda: "") -> T:
    """Calls probe until it returns something other than None (or False) and returns that;
    fails the test with what (and describe()) after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what} after {timeout:g} s\n{describe()}")
        time.sleep(interval)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def raw_token(header: Dict[str, object], payload: Dict[str, object], secret: str = SECRET,
              digest=hashlib.sha256) -> str:
    """A JWT with exactly the given header and payload, HMAC-signed with secret."""
    h = b64url(json.dumps(header, separators=(",", ":")).encode())
    p = b64url(json.dumps(payload, separators=(",", ":")).encode())
    sig = hmac.new(secret.encode(), f"{h}.{p}".encode(), digest).digest()
    return f"{h}.{p}.{b64url(sig)}"


# --------------------------------------------------------------------------------------------
# Servers


class Site:
    """One web server (the one chosen on the command line) with its own state directory and
    configuration, started from the shipped files by scripts/serve.py."""

    def __init__(self, label: str, overrides: Optional[Dict[str, object]] = None,
                 fcgi_procs: int = 1):
        self.label = label
        self.overrides = dict(overrides or {})
        self.fcgi_procs = fcgi_procs
        self.web: Optional[serve._WebServer] = None
        self.state_dir: Optional[Path] = None

    def start(self) -> "Site":
        root = OPTIONS["state_root"]
        assert isinstance(root, Path)
        self.state_dir = root / self.label
        self.web = serve.start_on_free_port(str(OPTIONS["server"]), self.state_dir,
                                            Path(str(OPTIONS["build"])), self.overrides,
                                            timeout=60, fcgi_procs=self.fcgi_procs)
        return self

    @property
    def base(self) -> str:
        assert self.web is not None
        return self.web.base_url

    def url(self, path: str) -> str:
        return self.base + path

    def log_dir(self) -> Path:
        assert self.state_dir is not None
        return self.state_dir / "log"

    def log_tail(self, lines: int = 25) -> str:
        if self.web is None:
            return ""
        return "server logs:\n" + self.web.log_tail(lines)

    def logs_text(self) -> str:
        """Everything every log of this server holds so far."""
        out = []
        d = self.log_dir()
        if d.is_dir():
            for p in sorted(d.iterdir()):
                if p.is_file():
                    out.append(p.read_text("utf-8", "replace"))
        return "\n".join(out)

    def responder_pids(self) -> List[int]:
        assert self.web is not None
        if isinstance(self.web, serve.Lighttpd):
            return self.web.responder_pids()
        return [r.pid for r in self.web.responders if r.running and r.pid is not None]

    def signal_responder(self, pid: int, sig: int) -> None:
        """Sends sig to the responder process pid (one of responder_pids()); for SIGKILL and
        SIGTERM also waits until it is gone."""
        assert self.web is not None
        if isinstance(self.web, serve.Apache):
            for r in self.web.responders:
                if r.pid == pid:
                    os.kill(pid, sig)
                    if sig in (signal.SIGKILL, signal.SIGTERM):
                        r.wait(WAIT_S)
                    return
            raise AssertionError(f"no responder with pid {pid}")
        os.kill(pid, sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            wait_for(f"process {pid} to exit", lambda: not serve._pid_alive(pid))

    def revive(self) -> None:
        """Starts again the responders of Apache that a test stopped (lighttpd restarts its
        own)."""
        if isinstance(self.web, serve.Apache):
            for r in self.web.responders:
                if not r.running:
                    r.start(timeout=30)

    def fcgi_address(self) -> str:
        """The FastCGI socket of (the first) responder, to reach it without the web server."""
        assert self.web is not None
        if isinstance(self.web, serve.Lighttpd):
            return f"unix:{self.web.fcgi_socket}-0"
        return self.web.responders[0].address

    def stop(self) -> List[str]:
        """Stops the server and returns the sanitizer reports found in its logs."""
        if isinstance(self.web, serve.Lighttpd) and self.web.running:
            # lighttpd passes SIGTERM on to the responders it spawned and exits without
            # waiting for them; let them finish their shutdown (and a sanitizer build write
            # its leak report) before serve.py's stop() clears the process group.
            pids = self.web.responder_pids()
            assert self.web.proc is not None
            os.kill(self.web.proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and (
                    self.web.running or any(serve._pid_alive(p) for p in pids)):
                time.sleep(0.05)
        if self.web is not None:
            self.web.stop()
        findings = []
        d = self.log_dir() if self.state_dir else None
        if d is not None and d.is_dir():
            for p in sorted(d.iterdir()):
                if not p.is_file():
                    continue
                lines = p.read_text("utf-8", "replace").splitlines()
                for i, line in enumerate(lines):
                    if any(m in line for m in SANITIZER_MARKERS):
                        findings.append(f"{p}:{i + 1}:\n" + "\n".join(lines[i:i + 40]))
                        break
        return findings


# --------------------------------------------------------------------------------------------
# The test base


class ApiCase(unittest.TestCase):
    """A test class with its own server (started once for the class)."""

    LABEL = "main"
    OVERRIDES: Dict[str, object] = {}
    FCGI_PROCS = 1
    site: Site
    maxDiff = 4000

    @classmethod
    def setUpClass(cls) -> None:
        cls.site = Site(cls.LABEL, cls.OVERRIDES, cls.FCGI_PROCS).start()

    @classmethod
    def tearDownClass(cls) -> None:
        findings = cls.site.stop()
        if findings:
            raise AssertionError(f"sanitizer reports in the logs of the {cls.LABEL} server:\n"
                                 + "\n\n".join(findings))

    # -- requests ---------------------------------------------------------------------------

    def auth(self) -> Dict[str, str]:
        """The Authorization header every request of this class carries by default."""
        return {}

    def req(self, method: Optional[str], path: str,
            headers: Optional[Dict[str, Optional[str]]] = None, auth: bool = True,
            **kw: object) -> httpclient.Response:
        h: Dict[str, Optional[str]] = dict(self.auth()) if auth else {}
        h.update(headers or {})
        return httpclient.request(self.site.url(path), method, headers=h, **kw)  # type: ignore

    def get(self, path: str, **kw: object) -> httpclient.Response:
        return self.req("GET", path, **kw)

    def post(self, path: str, body: object, **kw: object) -> httpclient.Response:
        if isinstance(body, (bytes, str)):
            return self.req("POST", path, body=body, **kw)
        return self.req("POST", path, json_body=body, **kw)

    # -- assertions -------------------------------------------------------------------------

    def fail_on(self, resp: Optional[httpclient.Response], msg: str) -> None:
        text = msg
        if resp is not None:
            text += "\n" + resp.describe()
        raise self.failureException(text + "\n" + self.site.log_tail())

    def check(self, cond: object, resp: Optional[httpclient.Response], msg: str) -> None:
        if not cond:
            self.fail_on(resp, msg)

    def expect(self, resp: httpclient.Response, status: int, problem: Optional[bool] = None,
               ptype: Optional[str] = None) -> httpclient.Response:
        """Checks the status, Cache-Control: no-store (on every answer of the responder) and,
        for errors (or when problem is True), the problem document: application/problem+json
        with type (urn:risksim:problem:PTYPE when given), title and a status equal to the HTTP
        status."""
        self.check(resp.status == status, resp, f"expected status {status}, got {resp.status}")
        self.check(resp.header("cache-control") == "no-store", resp,
                   "no Cache-Control: no-store")
        if problem is None:
            problem = status >= 400
        if problem:
            doc = self.check_problem(resp)
            if ptype is not None and resp.request.method != "HEAD":
                self.check(doc.get("type") == "urn:risksim:problem:" + ptype, resp,
                           f"the problem type is not urn:risksim:problem:{ptype}")
        elif resp.request.method != "HEAD" and resp.status not in (204,):
            self.check(resp.content_type in ("application/json", "text/plain"), resp,
                       "unexpected Content-Type")
        return resp

    def check_problem(self, resp: httpclient.Response) -> Dict[str, object]:
        self.check(resp.content_type == "application/problem+json", resp,
                   "expected Content-Type: application/problem+json")
        if resp.request.method == "HEAD":
            return {}
        doc = resp.json_or_none()
        self.check(isinstance(doc, dict), resp, "the problem is not a JSON object")
        assert isinstance(doc, dict)
        self.check(isinstance(doc.get("type"), str) and doc["type"], resp, "problem without type")
        self.check(isinstance(doc.get("title"), str) and doc["title"], resp,
                   "problem without title")
        self.check(doc.get("status") == resp.status, resp,
                   "the problem's status differs from the HTTP status")
        if "detail" in doc:
            self.check(isinstance(doc["detail"], str), resp, "detail is not a string")
        if resp.status == 422:
            errors = doc.get("errors")
            self.check(isinstance(errors, list) and errors, resp, "422 without errors")
            for e in errors:  # type: ignore[union-attr]
                self.check(isinstance(e, dict) and isinstance(e.get("pointer"), str), resp,
                           "an error without a pointer")
                self.check(isinstance(e.get("code"), str) and isinstance(e.get("message"), str),
                           resp, "an error without code or message")
        return doc

    def json_of(self, resp: httpclient.Response) -> Dict[str, object]:
        doc = resp.json_or_none()
        self.check(isinstance(doc, dict), resp, "the body is not a JSON object")
        assert isinstance(doc, dict)
        return doc

    # -- jobs -------------------------------------------------------------------------------

    def run_sync(self, body: object, headers: Optional[Dict[str, Optional[str]]] = None
                 ) -> Tuple[httpclient.Response, Dict[str, object]]:
        resp = self.expect(self.post("/simulations", body, headers=headers), 200)
        return resp, self.json_of(resp)

    def submit(self, body: object, headers: Optional[Dict[str, Optional[str]]] = None,
               path: str = "/simulations/async") -> str:
        resp = self.expect(self.post(path, body, headers=headers), 202)
        doc = self.json_of(resp)
        self.check(isinstance(doc.get("id"), str) and JOB_ID_RE.match(doc["id"]), resp,
                   "no valid job id")
        return str(doc["id"])

    def job(self, job_id: str) -> Dict[str, object]:
        return self.json_of(self.expect(self.get(f"/simulations/{job_id}"), 200))

    def wait_job(self, job_id: str, statuses: Sequence[str],
                 pred: Callable[[Dict[str, object]], bool] = lambda j: True,
                 timeout: float = WAIT_S, proxy_errors_ok: bool = False) -> Dict[str, object]:
        """Polls the job until its status is one of statuses and pred holds. proxy_errors_ok:
        a 5xx of the web server itself (not a problem document of the responder) is retried,
        as when a responder process was just killed under it."""
        last: Dict[str, object] = {}

        def probe() -> Optional[Dict[str, object]]:
            nonlocal last
            if proxy_errors_ok:
                resp = self.get(f"/simulations/{job_id}")
                if resp.status >= 500 and not resp.is_problem():
                    return None
                last = self.json_of(self.expect(resp, 200))
            else:
                last = self.job(job_id)
            if last.get("status") in statuses and pred(last):
                return last
            if last.get("status") in ("completed", "failed", "cancelled"):
                raise AssertionError(f"job {job_id} ended {last.get('status')}, not "
                                     f"{'/'.join(statuses)}:\n{describe()}")
            return None

        def describe() -> str:
            shown = {k: v for k, v in last.items() if k != "result"}
            return f"job {job_id}: {json.dumps(shown)}\n{self.site.log_tail()}"

        return wait_for(f"job {job_id} to be {'/'.join(statuses)}", probe, timeout,
                        interval=0.03, describe=describe)

    def events(self, job_id: str, after: Optional[int] = None, wait: Optional[int] = None,
               extra: str = "") -> Tuple[httpclient.Response, Dict[str, object]]:
        q = []
        if after is not None:
            q.append(f"after={after}")
        if wait is not None:
            q.append(f"wait={wait}")
        if extra:
            q.append(extra)
        path = f"/simulations/{job_id}/events" + ("?" + "&".join(q) if q else "")
        resp = self.expect(self.get(path), 200)
        doc = self.json_of(resp)
        self.check(isinstance(doc.get("events"), list) and isinstance(doc.get("next"), int)
                   and isinstance(doc.get("status"), str), resp,
                   "events answer without events/next/status")
        return resp, doc

    def all_events(self, job_id: str) -> List[Dict[str, object]]:
        out: List[Dict[str, object]] = []
        after = 0
        while True:
            _, doc = self.events(job_id, after=after)
            evs = doc["events"]
            assert isinstance(evs, list)
            if not evs:
                return out
            out.extend(evs)
            after = int(doc["next"])  # type: ignore[arg-type]

    def check_event_order(self, job_id: str, evs: List[Dict[str, object]]) -> None:
        seqs = [e.get("seq") for e in evs]
        ok = all(isinstance(s, int) for s in seqs) and all(
            a < b for a, b in zip(seqs, seqs[1:]))  # type: ignore[operator]
        self.check(ok, None, f"event seqs of {job_id} do not strictly increase: {seqs}")
        for e in evs:
            self.check(e.get("jobId") == job_id, None, f"event of another job: {e}")
            self.check(e.get("type") in ("status", "progress", "complete", "error", "cancelled"),
                       None, f"unknown event type: {e}")
            self.check(isinstance(e.get("ts"), str) and TS_RE.match(e["ts"]), None,
                       f"event without an RFC 3339 ts: {e}")

    def list_all(self, query: str = "", limit: int = 1000) -> List[Dict[str, object]]:
        sep = "&" if query else ""
        resp = self.expect(self.get(f"/simulations?{query}{sep}limit={limit}"), 200)
        doc = self.json_of(resp)
        jobs = doc.get("jobs")
        self.check(isinstance(jobs, list), resp, "list without jobs")
        assert isinstance(jobs, list)
        return jobs

    def cancel_quietly(self, job_id: str) -> None:
        """Cleanup: cancel a job if it is still going (errors ignored)."""
        try:
            self.req("DELETE", f"/simulations/{job_id}")
        except Exception:  # noqa: BLE001 - best effort
            pass


# --------------------------------------------------------------------------------------------
# The main server: defaults, plus the sync endpoint's migration headers


SUNSET = "Fri, 31 Dec 2027 23:59:59 GMT"
LINK = '<https://risk.example.com/docs/async>; rel="sunset"'


class ApiTests(ApiCase):
    """Every endpoint and every error through one server with the default configuration."""

    LABEL = "main"
    OVERRIDES = {"sync_deprecation": "@1767225600", "sync_sunset": SUNSET, "sync_link": LINK}

    # -- POST /simulations -------------------------------------------------------------------

    def test_sync_run(self) -> None:
        resp, doc = self.run_sync(ENTERPRISE)
        location = resp.header("location")
        self.check(location and re.fullmatch(r"/risksim/simulations/[0-9A-Z]{26}", location), resp,
                   "no Location of the stored job")
        job_id = location.rsplit("/", 1)[1]  # type: ignore[union-attr]
        self.check(doc.get("id") == job_id, resp, "the result's id is not the Location's")
        self.check(doc.get("status") == "completed", resp, "status is not completed")
        self.check(doc.get("trials") == 100000 and doc.get("seed") == 42, resp,
                   "trials/seed not echoed")
        nodes = doc.get("nodes")
        self.check(isinstance(nodes, list) and [n.get("id") for n in nodes]
                   == ["enterprise", "ransomware", "outage"], resp, "nodes not in request order")
        for n in nodes:  # type: ignore[union-attr]
            for key in ("mean", "stddev", "quantiles", "tvar", "lec", "probabilityOfLoss"):
                self.check(key in n, resp, f"node {n.get('id')} without {key}")
        self.check(isinstance(doc.get("vegaLite"), dict), resp, "no vegaLite")
        # The stored job is the same result.
        stored = self.job(job_id)
        self.assertEqual(stored.get("status"), "completed")
        self.assertEqual(stored.get("result"), doc)
        # The migration headers configured for the sync endpoint.
        self.check(resp.header("deprecation") == "@1767225600", resp, "no Deprecation header")
        self.check(resp.header("sunset") == SUNSET, resp, "no Sunset header")
        self.check(resp.header("link") == LINK, resp, "no Link header")

    def test_sync_same_seed_same_result(self) -> None:
        _, a = self.run_sync(small_request(seed=11))
        _, b = self.run_sync(small_request(seed=11))
        self.assertNotEqual(a["id"], b["id"])
        self.assertEqual(a["nodes"], b["nodes"])

    def test_sync_flat_form(self) -> None:
        flat = json.loads((REPO / "examples" / "flat.json").read_text())
        flat["nTrials"] = 5000
        _, doc = self.run_sync(flat)
        self.assertEqual(doc.get("status"), "completed")

    def test_sync_chunked_body(self) -> None:
        resp = self.expect(self.post("/simulations", small_request(seed=5), chunked=True), 200)
        doc = self.json_of(resp)
        _, plain = self.run_sync(small_request(seed=5))
        self.assertEqual(doc["nodes"], plain["nodes"])

    def test_sync_json_type_variants(self) -> None:
        for ctype in ("application/json; charset=utf-8", "Application/JSON",
                      "application/problem+json", "application/vnd.risksim+json"):
            with self.subTest(content_type=ctype):
                self.expect(self.post("/simulations", small_request(),
                                      headers={"Content-Type": ctype}), 200)

    def test_body_at_the_limit_is_accepted(self) -> None:
        body = bad_requests._padded(bad_requests.MAX_BODY)
        self.assertEqual(len(body), 1048576)
        self.expect(self.post("/simulations", body), 200)
        self.expect(self.post("/simulations/async", body, chunked=True), 202)

    # -- async -------------------------------------------------------------------------------

    def check_accepted(self, resp: httpclient.Response) -> str:
        self.expect(resp, 202)
        doc = self.json_of(resp)
        job_id = doc.get("id")
        self.check(isinstance(job_id, str) and JOB_ID_RE.match(job_id), resp, "no job id")
        self.check(resp.header("location") == f"/risksim/simulations/{job_id}", resp,
                   "Location is not the job's")
        self.check(doc.get("status") in ("queued", "running", "completed"), resp,
                   "unexpected status")
        links = doc.get("links")
        self.check(isinstance(links, dict) and links == {
            "self": f"/risksim/simulations/{job_id}",
            "events": f"/risksim/simulations/{job_id}/events",
            "stream": f"/risksim/simulations/{job_id}/stream"}, resp, "links are wrong")
        return str(job_id)

    def test_async_submit_runs_to_completion(self) -> None:
        resp = self.post("/simulations/async", small_request(seed=21, trials=50000))
        job_id = self.check_accepted(resp)
        self.check(self.json_of(resp).get("status") == "queued", resp, "a new job is not queued")
        job = self.wait_job(job_id, ["completed"])
        self.assertEqual(job["attempts"], 1)
        self.assertEqual(job["trialsDone"], 50000)
        self.assertEqual(job["progress"], 1)
        result = job.get("result")
        self.assertIsInstance(result, dict)
        self.assertEqual(result["id"], job_id)
        self.assertEqual(result["status"], "completed")
        # Same request, same seed: the sync endpoint gives the same numbers.
        _, sync = self.run_sync(small_request(seed=21, trials=50000))
        self.assertEqual(result["nodes"], sync["nodes"])

    def test_new_jobs_are_acknowledged_as_queued(self) -> None:
        # Idle workers claim a tiny job within milliseconds of its commit, often before the
        # answer is sent; the acknowledgement still says what was committed: queued.
        ids = []
        for seed in range(200):
            resp = self.post("/simulations/async", small_request(seed=seed, trials=1))
            ids.append(self.check_accepted(resp))
            self.check(self.json_of(resp).get("status") == "queued", resp,
                       "a new job is acknowledged in another state than queued")
            self.check(self.json_of(resp).get("attempts") == 0, resp, "attempts is not 0")
        for job_id in ids:
            self.wait_job(job_id, ["completed"])

    def test_prefer_respond_async(self) -> None:
        for prefer in ("respond-async", "wait=10, respond-async", "RESPOND-ASYNC; x=1"):
            with self.subTest(prefer=prefer):
                resp = self.post("/simulations", small_request(seed=22),
                                 headers={"Prefer": prefer})
                job_id = self.check_accepted(resp)
                self.wait_job(job_id, ["completed"])
        # Another preference is no reason to go async.
        self.run_sync(small_request(seed=22), headers={"Prefer": "return=minimal"})

    def test_get_job_while_running(self) -> None:
        job_id = self.submit(long_request())
        self.addCleanup(self.cancel_quietly, job_id)
        job = self.wait_job(job_id, ["running"], lambda j: int(j["trialsDone"]) > 0)  # type: ignore
        self.assertNotIn("result", job)
        self.assertGreater(job["progress"], 0)
        self.assertLess(job["progress"], 1)
        self.assertEqual(job["trials"], 10_000_000)
        self.assertIsInstance(job["startedAt"], str)
        self.assertIsNone(job["finishedAt"])

    def test_events_sequence_and_suffixes(self) -> None:
        job_id = self.submit(small_request(seed=23, trials=2_000_000))
        job = self.wait_job(job_id, ["completed"])
        evs = self.all_events(job_id)
        self.check_event_order(job_id, evs)
        types = [e["type"] for e in evs]
        self.assertEqual(types[0], "status", types)
        self.assertEqual(evs[0]["status"], "queued")
        self.assertEqual(types[-1], "complete", types)
        self.assertEqual(types.count("complete"), 1, types)
        self.assertEqual(evs[-1]["result"], job["result"])
        for e in evs:
            if e["type"] == "progress":
                self.assertTrue(0 <= e["progress"] <= 1, e)
                self.assertEqual(e["trials"], 2_000_000, e)
                self.assertIn("phase", e)
        seqs = [int(e["seq"]) for e in evs]  # type: ignore[arg-type]
        # Every cursor returns exactly the suffix after it.
        positions = sorted({0, seqs[0] - 1, *seqs, seqs[-1] + 1000})
        for after in positions:
            with self.subTest(after=after):
                resp, doc = self.events(job_id, after=after)
                expected = [e for e in evs if int(e["seq"]) > after]  # type: ignore[arg-type]
                self.check(doc["events"] == expected, resp,
                           f"after={after}: not the suffix of the events")
                self.check(doc["next"] == (seqs[-1] if expected else after), resp,
                           f"after={after}: wrong next")
                self.check(doc["status"] == "completed", resp, "wrong status")
        # A wait on a finished job answers at once with what there is.
        _, doc = self.events(job_id, after=seqs[-1], wait=30)
        self.assertEqual(doc["events"], [])
        self.assertEqual(doc["status"], "completed")
        # An explicit wait=0 and no after at all are the same as the full list.
        _, doc = self.events(job_id, wait=0)
        self.assertEqual(doc["events"], evs)

    def test_events_query_limits(self) -> None:
        job_id = str(self.run_sync(small_request(seed=25))[1]["id"])
        # after at the largest seq there can be: nothing after it.
        top = 9223372036854775807
        _, doc = self.events(job_id, after=top)
        self.assertEqual((doc["events"], doc["next"]), ([], top))
        # "values above max_wait_s are cut to it" (docs/api.md): any whole number of seconds.
        for wait in (31, 3600, 86400, 86401, 10 ** 9):
            with self.subTest(wait=wait):
                _, doc = self.events(job_id, wait=wait)
                self.assertEqual(doc["status"], "completed")
        # The token parameter is known (and ignored while auth is off).
        self.events(job_id, extra="token=anything")

    def test_job_representation(self) -> None:
        job_id = self.submit(small_request(seed=26))
        job = self.wait_job(job_id, ["completed"])
        for key in ("createdAt", "startedAt", "finishedAt"):
            self.assertRegex(str(job[key]), TS_RE)
        self.assertLessEqual(job["createdAt"], job["startedAt"])
        self.assertLessEqual(job["startedAt"], job["finishedAt"])
        self.assertIs(job["cancelRequested"], False)
        self.assertNotIn("error", job)
        self.assertEqual(job["links"]["self"], f"/risksim/simulations/{job_id}")  # type: ignore

    def test_tree_at_the_depth_limit(self) -> None:
        body = small_request(seed=27)
        body["root"] = bad_requests._deep_portfolio(32)
        _, doc = self.run_sync(body)
        self.assertEqual(len(doc["nodes"]), 32)  # type: ignore[arg-type]

    def test_parallel_requests(self) -> None:
        """More requests at once than the responder has threads: all are answered."""
        job_id = str(self.run_sync(small_request(seed=28))[1]["id"])
        calls: List[Tuple[str, Callable[[], httpclient.Response], int]] = []
        for i in range(8):
            calls.append(("sync", lambda i=i: self.post("/simulations", small_request(
                seed=200 + i, trials=20000)), 200))
            calls.append(("get", lambda: self.get(f"/simulations/{job_id}"), 200))
            calls.append(("events", lambda: self.get(f"/simulations/{job_id}/events"), 200))
            calls.append(("bad", lambda: self.post("/simulations", b"{"), 400))
        results: List[Tuple[str, int, httpclient.Response]] = []
        lock = threading.Lock()

        def run(name: str, call: Callable[[], httpclient.Response], status: int) -> None:
            r = call()
            with lock:
                results.append((name, status, r))

        threads = [threading.Thread(target=run, args=c) for c in calls]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT_S)
        self.assertEqual(len(results), len(calls))
        for name, status, r in results:
            self.expect(r, status)

    def test_cancel_running_job(self) -> None:
        job_id = self.submit(long_request())
        self.addCleanup(self.cancel_quietly, job_id)
        self.wait_job(job_id, ["running"], lambda j: int(j["trialsDone"]) > 0)  # type: ignore
        resp = self.req("DELETE", f"/simulations/{job_id}")
        self.expect(resp, 202)
        doc = self.json_of(resp)
        self.check(doc.get("id") == job_id and doc.get("cancelRequested") is True, resp,
                   "the answer does not show the cancel request")
        job = self.wait_job(job_id, ["cancelled", "completed", "failed"])
        self.assertEqual(job["status"], "cancelled", job)
        self.assertNotIn("result", job)
        evs = self.all_events(job_id)
        self.check_event_order(job_id, evs)
        self.assertEqual(evs[-1]["type"], "cancelled", [e["type"] for e in evs])
        self.assertEqual([e["type"] for e in evs].count("cancelled"), 1)
        # Cancelling again: already finished.
        again = self.expect(self.req("DELETE", f"/simulations/{job_id}"), 200)
        self.assertEqual(self.json_of(again)["status"], "cancelled")

    def test_cancel_finished_job(self) -> None:
        resp, doc = self.run_sync(small_request(seed=24))
        job_id = str(doc["id"])
        for _ in range(2):
            d = self.expect(self.req("DELETE", f"/simulations/{job_id}"), 200)
            self.check(self.json_of(d).get("status") == "completed", d, "status changed")
        self.assertEqual(self.job(job_id)["status"], "completed")

    # -- the admin list ---------------------------------------------------------------------

    def test_list_pages_newest_first(self) -> None:
        mine = [str(self.run_sync(small_request(seed=30 + i))[1]["id"]) for i in range(5)]
        full = self.list_all()
        ids = [j["id"] for j in full]
        self.assertEqual(len(ids), len(set(ids)), "a job listed twice")
        # Newest first: my five jobs appear in reverse order of creation.
        positions = [ids.index(j) for j in mine]
        self.assertEqual(positions, sorted(positions, reverse=True), (mine, ids))
        created = [j["createdAt"] for j in full]
        self.assertEqual(created, sorted(created, reverse=True))
        for j in full:
            for key in ("id", "status", "progress", "trials", "attempts", "createdAt", "links"):
                self.assertIn(key, j)
            self.assertNotIn("result", j)
        # Paging with a cursor visits every job exactly once, in the same order.
        for limit in (1, 2, 3, 7):
            with self.subTest(limit=limit):
                seen: List[str] = []
                cursor: Optional[str] = None
                for _ in range(len(full) + 2):
                    q = f"limit={limit}" + (f"&before={cursor}" if cursor else "")
                    resp = self.expect(self.get(f"/simulations?{q}"), 200)
                    page = self.json_of(resp)
                    jobs = page["jobs"]
                    self.check(len(jobs) <= limit, resp, "more jobs than limit")  # type: ignore
                    seen.extend(j["id"] for j in jobs)  # type: ignore[union-attr]
                    cursor = page.get("next")  # type: ignore[assignment]
                    if cursor is None:
                        break
                    self.check(isinstance(cursor, str) and len(jobs) == limit, resp,  # type: ignore
                               "a next cursor on a short page")
                self.assertEqual(seen, ids)
        # The default limit is 50; a full last page ends with an empty one.
        resp = self.expect(self.get(f"/simulations?limit={len(ids)}"), 200)
        nxt = self.json_of(resp).get("next")
        if nxt is not None:
            resp = self.expect(self.get(f"/simulations?limit=5&before={nxt}"), 200)
            self.assertEqual(self.json_of(resp)["jobs"], [])

    def test_list_status_filter(self) -> None:
        self.run_sync(small_request(seed=40))
        running = self.submit(long_request())
        self.addCleanup(self.cancel_quietly, running)
        self.wait_job(running, ["running"])
        for status in ("queued", "running", "completed", "failed", "cancelled"):
            with self.subTest(status=status):
                jobs = self.list_all(f"status={status}")
                bad = [j for j in jobs if j["status"] != status]
                self.assertEqual(bad, [], f"status={status} lists other states")
        completed = [j["id"] for j in self.list_all("status=completed")]
        self.assertGreaterEqual(len(completed), 1)
        everything = self.list_all()
        self.assertEqual(completed, [j["id"] for j in everything if j["id"] in set(completed)])
        self.cancel_quietly(running)
        self.wait_job(running, ["cancelled"])
        self.assertIn(running, [j["id"] for j in self.list_all("status=cancelled")])

    # -- idempotency -------------------------------------------------------------------------

    def test_idempotent_sync(self) -> None:
        key = "sync-" + uuid.uuid4().hex
        before = {j["id"] for j in self.list_all()}
        body = small_request(seed=50)
        r1, d1 = self.run_sync(body, headers={"Idempotency-Key": key})
        r2, d2 = self.run_sync(body, headers={"Idempotency-Key": key})
        self.assertEqual(d1["id"], d2["id"])
        self.assertEqual(r1.header("location"), r2.header("location"))
        self.assertEqual(d1["nodes"], d2["nodes"])
        after = {j["id"] for j in self.list_all()}
        self.assertEqual(after - before, {d1["id"]}, "not exactly one new job")
        # The same key with another body is a conflict.
        other = small_request(seed=51)
        self.expect(self.post("/simulations", other, headers={"Idempotency-Key": key}), 409,
                    ptype="idempotency-conflict")
        self.expect(self.post("/simulations/async", other, headers={"Idempotency-Key": key}),
                    409, ptype="idempotency-conflict")
        self.assertEqual({j["id"] for j in self.list_all()} - before, {d1["id"]})

    def test_idempotent_async(self) -> None:
        key = "async-" + uuid.uuid4().hex
        before = {j["id"] for j in self.list_all()}
        body = json.dumps(small_request(seed=52))
        a = self.submit(body, headers={"Idempotency-Key": key})
        b = self.submit(body, headers={"Idempotency-Key": key})
        c = self.submit(body, headers={"Idempotency-Key": key, "Prefer": "respond-async"},
                        path="/simulations")
        self.assertEqual({a, b, c}, {a})
        self.wait_job(a, ["completed"])
        d = self.submit(body, headers={"Idempotency-Key": key})
        self.assertEqual(d, a)
        after = {j["id"] for j in self.list_all()}
        self.assertEqual(after - before, {a}, "not exactly one new job")
        # The same key with another body (even one byte) is a conflict.
        self.expect(self.post("/simulations/async", body + " ",
                              headers={"Idempotency-Key": key}), 409,
                    ptype="idempotency-conflict")
        self.expect(self.post("/simulations", small_request(seed=53),
                              headers={"Idempotency-Key": key, "Prefer": "respond-async"}), 409,
                    ptype="idempotency-conflict")

    def test_empty_idempotency_key(self) -> None:
        # Straight to the responder: an empty key is malformed.
        status, headers, body = serve.fcgi_request(
            self.site.fcgi_address(), "POST", "/risksim/simulations/async",
            headers={"Content-Type": "application/json", "Idempotency-Key": ""}, body=GOOD_BYTES)
        self.assertEqual(status, 400, body)
        self.assertEqual(headers.get("content-type"), "application/problem+json")
        # Through the web server: Apache passes the empty header on (400), lighttpd drops it
        # (then the request is an ordinary one).
        resp = self.post("/simulations/async", GOOD_BYTES, headers={"Idempotency-Key": ""})
        if resp.status == 400:
            self.check_problem(resp)
        else:
            self.expect(resp, 202)

    def test_idempotent_async_concurrent(self) -> None:
        key = "race-" + uuid.uuid4().hex
        before = {j["id"] for j in self.list_all()}
        body = json.dumps(small_request(seed=54))
        results: List[httpclient.Response] = []
        lock = threading.Lock()

        def send() -> None:
            r = self.post("/simulations/async", body, headers={"Idempotency-Key": key})
            with lock:
                results.append(r)

        threads = [threading.Thread(target=send) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT_S)
        ids = set()
        for r in results:
            self.expect(r, 202)
            ids.add(self.json_of(r)["id"])
        self.assertEqual(len(results), 8)
        self.assertEqual(len(ids), 1, ids)
        after = {j["id"] for j in self.list_all()}
        self.assertEqual(after - before, ids)

    # -- health, metrics, OPTIONS, HEAD ----------------------------------------------------------

    def test_healthz(self) -> None:
        resp = self.expect(self.get("/healthz"), 200)
        doc = self.json_of(resp)
        self.assertEqual(doc.get("status"), "ok")
        self.assertEqual(doc.get("db"), "ok")
        self.assertEqual(doc.get("workers"), {"configured": 2, "alive": 2})
        self.assertIsInstance(doc.get("queueDepth"), int)

    def test_metrics(self) -> None:
        self.run_sync(small_request(seed=60))
        self.expect(self.get("/simulations/" + bad_requests.UNKNOWN_ID), 404)
        resp = self.expect(self.get("/metrics"), 200)
        self.check(resp.content_type == "text/plain", resp, "metrics are not text/plain")
        samples: Dict[str, float] = {}
        for line in resp.text.splitlines():
            if not line or line.startswith("#"):
                self.check(not line or re.match(r"# (HELP|TYPE) [a-z_]+ ", line), resp,
                           f"bad comment line {line!r}")
                continue
            m = re.fullmatch(r'([a-z_:][a-z0-9_:]*(?:\{[^}]*\})?) (\S+)', line)
            self.check(m, resp, f"not a sample line: {line!r}")
            samples[m.group(1)] = float(m.group(2))  # type: ignore[union-attr]
        for state in ("queued", "running", "completed", "failed", "cancelled"):
            self.check(f'risksim_jobs{{state="{state}"}}' in samples, resp,
                       f"no risksim_jobs for {state}")
        self.assertGreaterEqual(samples['risksim_jobs{state="completed"}'], 1)
        self.check(samples.get('risksim_http_requests_total{route="simulations",status="200"}',
                               0) >= 1, resp, "sync requests not counted")
        self.check(samples.get('risksim_http_requests_total{route="job",status="404"}', 0) >= 1,
                   resp, "404 not counted")
        for name in ("risksim_up", "risksim_queue_depth", "risksim_workers_alive"):
            self.check(name in samples, resp, f"no {name}")
        self.assertEqual(samples["risksim_up"], 1)

    def test_options(self) -> None:
        job_id = str(self.run_sync(small_request(seed=61))[1]["id"])
        for path, allow in [
            ("/simulations", "GET, HEAD, POST, OPTIONS"),
            ("/simulations/async", "POST, OPTIONS"),
            (f"/simulations/{job_id}", "GET, HEAD, DELETE, OPTIONS"),
            (f"/simulations/{bad_requests.UNKNOWN_ID}", "GET, HEAD, DELETE, OPTIONS"),
            (f"/simulations/{job_id}/events", "GET, HEAD, OPTIONS"),
            ("/healthz", "GET, HEAD, OPTIONS"),
            ("/metrics", "GET, HEAD, OPTIONS"),
        ]:
            with self.subTest(path=path):
                resp = self.req("OPTIONS", path)
                self.expect(resp, 204, problem=False)
                self.check(resp.header("allow") == allow, resp, f"Allow is not {allow!r}")
                self.check(resp.body == b"", resp, "a 204 with a body")
        self.expect(self.req("OPTIONS", "/simulations/async/x"), 404)

    def test_head(self) -> None:
        job_id = str(self.run_sync(small_request(seed=62))[1]["id"])
        for path in ("/healthz", "/metrics", f"/simulations/{job_id}",
                     f"/simulations/{job_id}/events", "/simulations?limit=2"):
            with self.subTest(path=path):
                got = self.get(path)
                head = self.req("HEAD", path)
                self.expect(head, 200, problem=False)
                self.check(head.body == b"", head, "HEAD answered with a body")
                self.check(head.content_type == got.content_type, head,
                           "HEAD and GET differ in Content-Type")
        head = self.req("HEAD", f"/simulations/{bad_requests.UNKNOWN_ID}")
        self.expect(head, 404)
        self.check(head.body == b"", head, "HEAD answered with a body")
        head = self.req("HEAD", "/simulations/async")
        self.expect(head, 405)
        self.check(head.header("allow") == "POST, OPTIONS", head, "wrong Allow")

    # -- errors --------------------------------------------------------------------------------

    def test_400_not_json(self) -> None:
        for body in (b"{", GOOD_BYTES + b" trailing", GOOD_BYTES.replace(b'"catalogue"',
                                                                          b'"\xff\xfe"')):
            for path in ("/simulations", "/simulations/async"):
                with self.subTest(body=body[:40], path=path):
                    doc = self.check_problem(self.expect(self.post(path, body), 400))
                    codes = [e.get("code") for e in doc.get("errors", [])]  # type: ignore
                    self.assertEqual(codes, ["invalid_json"])

    def test_400_bad_query(self) -> None:
        job_id = str(self.run_sync(small_request(seed=63))[1]["id"])
        for path in (f"/simulations/{job_id}/events?after=abc", "/simulations?limit=0",
                     f"/simulations/{job_id}/events?nope=1"):
            with self.subTest(path=path):
                self.expect(self.get(path), 400)

    def test_422_lists_every_broken_rule(self) -> None:
        doc = copy.deepcopy(bad_requests.GOOD)
        doc["seed"] = -1
        doc["root"]["children"][0]["frequency"]["p"] = 2  # type: ignore[index]
        doc["root"]["children"][1]["severity"]["max"] = -5  # type: ignore[index]
        for path in ("/simulations", "/simulations/async"):
            with self.subTest(path=path):
                resp = self.expect(self.post(path, doc), 422)
                problem = self.check_problem(resp)
                pointers = {e["pointer"] for e in problem["errors"]}  # type: ignore
                for p in ("/seed", "/root/children/0/frequency/p", "/root/children/1/severity/max"):
                    self.check(p in pointers, resp, f"no error at {p}")

    def test_422_sync_trials_point_to_async(self) -> None:
        body = small_request(trials=100001)
        resp = self.expect(self.post("/simulations", body), 422)
        problem = self.check_problem(resp)
        self.check("/simulations/async" in str(problem.get("detail", "")), resp,
                   "the detail does not name the async endpoint")
        errors = problem["errors"]
        assert isinstance(errors, list)
        self.check(any(e.get("pointer") == "/trials" for e in errors), resp, "no error at /trials")
        # The same request is fine for the async endpoint.
        job_id = self.submit(body)
        self.wait_job(job_id, ["completed"])

    def test_413(self) -> None:
        over = bad_requests._padded(bad_requests.MAX_BODY + 1)
        for path in ("/simulations", "/simulations/async"):
            for chunked in (False, True):
                with self.subTest(path=path, chunked=chunked):
                    self.expect(self.post(path, over, chunked=chunked), 413,
                                ptype="payload-too-large")
                    # The connection and the responder are fine afterwards.
                    self.expect(self.post(path, small_request(), chunked=chunked),
                                200 if path == "/simulations" else 202)

    def test_415(self) -> None:
        for ctype in (None, "text/plain", "application/x-www-form-urlencoded"):
            for path in ("/simulations", "/simulations/async"):
                with self.subTest(content_type=ctype, path=path):
                    resp = self.expect(self.req("POST", path, body=GOOD_BYTES,
                                                content_type=ctype), 415,
                                       ptype="unsupported-media-type")
                    self.check(resp.header("accept-post") == "application/json", resp,
                               "no Accept-Post: application/json")

    def test_404(self) -> None:
        for method, path in [("GET", "/simulations/" + bad_requests.UNKNOWN_ID),
                             ("GET", f"/simulations/{bad_requests.UNKNOWN_ID}/events"),
                             ("DELETE", "/simulations/" + bad_requests.UNKNOWN_ID),
                             ("GET", "/simulations/not-an-id"),
                             ("GET", "/simulations/" + bad_requests.UNKNOWN_ID + "/other")]:
            with self.subTest(method=method, path=path):
                self.expect(self.req(method, path), 404)

    def test_405(self) -> None:
        for method, path, allow in [("PUT", "/simulations", "GET, HEAD, POST, OPTIONS"),
                                    ("GET", "/simulations/async", "POST, OPTIONS"),
                                    ("POST", "/healthz", "GET, HEAD, OPTIONS")]:
            with self.subTest(method=method, path=path):
                resp = self.expect(self.req(method, path), 405)
                self.check(resp.header("allow") == allow, resp, f"Allow is not {allow!r}")

    def test_stream_route_goes_to_the_bridge(self) -> None:
        job_id = str(self.run_sync(small_request(seed=64))[1]["id"])
        for headers in ({}, {"Upgrade": "websocket", "Connection": "Upgrade",
                             "Sec-WebSocket-Version": "13",
                             "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}):
            with self.subTest(upgrade=bool(headers)):
                resp = self.get(f"/simulations/{job_id}/stream", headers=headers, timeout=20)
                self.check(not 200 <= resp.status < 300 and resp.status != 101, resp,
                           "the stream answered although no bridge is running")
                self.check(not resp.is_problem(), resp,
                           "the stream route reached the responder instead of the bridge")

    def test_stream_route_426_at_the_responder(self) -> None:
        """What the responder answers if a web server ever routes the stream to it."""
        job_id = str(self.run_sync(small_request(seed=65))[1]["id"])
        # with the stream's own query too (what a client sends), and not with another one
        for query, expected in (("", 426), ("?after=3&types=complete", 426), ("?wait=1", 400)):
            status, headers, body = serve.fcgi_request(
                self.site.fcgi_address(), "GET", f"/risksim/simulations/{job_id}/stream{query}")
            self.assertEqual(status, expected, body)
            self.assertEqual(headers.get("content-type"), "application/problem+json")
            self.assertEqual(json.loads(body)["status"], expected)
            if expected == 426:
                self.assertEqual(headers.get("upgrade"), "websocket")

    def test_414_long_uri(self) -> None:
        # The web servers refuse a request line this long themselves (Apache 414, lighttpd 431).
        resp = self.get("/simulations?limit=1&x=" + "a" * 9000)
        self.check(400 <= resp.status < 500, resp, "a long URI is not refused with a 4xx")
        # A responder that gets one anyway (another front end) answers 414.
        status, headers, body = serve.fcgi_request(
            self.site.fcgi_address(), "GET", "/risksim/healthz?x=" + "a" * 8200)
        self.assertEqual(status, 414, body)
        self.assertEqual(headers.get("content-type"), "application/problem+json")
        self.assertEqual(json.loads(body)["type"], "urn:risksim:problem:uri-too-long")

    def test_400_body_not_matching_content_length(self) -> None:
        # Web servers never pass such a body on; the responder is asked directly.
        for declared in ("10000", "5", "abc", "-1"):
            with self.subTest(content_length=declared):
                status, headers, body = serve.fcgi_request(
                    self.site.fcgi_address(), "POST", "/risksim/simulations",
                    headers={"Content-Type": "application/json", "Content-Length": declared},
                    body=GOOD_BYTES)
                self.assertEqual(status, 400, body)
                self.assertEqual(json.loads(body)["type"], "urn:risksim:problem:bad-length")
        self.expect(self.get("/healthz"), 200)

    # -- the catalogue ----------------------------------------------------------------------

    def test_bad_request_catalogue(self) -> None:
        run_catalogue(self, [c for c in bad_requests.cases() if "token" not in c])

    # -- the examples of docs/api.md -----------------------------------------------------------

    def test_docs_examples(self) -> None:
        run_docs_examples(self)


GOOD_BYTES = bad_requests.GOOD_TEXT.encode()


def catalogue_jobs(t: ApiCase) -> Dict[str, str]:
    """Two completed jobs for the catalogue's {job} and {other}."""
    job = str(t.run_sync(small_request(seed=70))[1]["id"])
    other = str(t.run_sync(small_request(seed=71))[1]["id"])
    return {"job": job, "other": other, "job_lower": job.lower()}


TokenFor = Callable[[Dict[str, object], Dict[str, str]], Tuple[Dict[str, Optional[str]], str]]


def run_catalogue(t: ApiCase, cases: List[Dict[str, object]],
                  headers_for: Optional[TokenFor] = None) -> None:
    """Sends every case; each must get its documented status with a problem document (never a
    5xx); then the service must still be healthy and run a good request. headers_for (the
    token cases) gives a case's Authorization header and its path with any ?token= added;
    without it, requests carry the class's default credentials."""
    ids = catalogue_jobs(t)
    failures: List[str] = []
    for case in cases:
        path = str(case["path"]).format(**ids)
        headers: Dict[str, Optional[str]] = dict(case.get("headers", {}))  # type: ignore
        if headers_for is not None:
            extra, path = headers_for(case, ids)
            headers.update(extra)
        kw: Dict[str, object] = {}
        if case.get("body") is not None:
            kw["body"] = case["body"]
            if "content_type" in case:
                kw["content_type"] = case["content_type"]
        resp = t.req(str(case.get("method")) if case.get("method") else None, path,
                     headers=headers, auth=headers_for is None, chunked=bool(case.get("chunked")),
                     **kw)
        status = int(case["status"])  # type: ignore[arg-type]
        problems = []
        if case.get("proxy_may_refuse") and resp.status == status and not resp.is_problem():
            continue  # refused by the web server itself, with the same status
        if resp.status != status:
            problems.append(f"expected {status}, got {resp.status}")
        if resp.status >= 500 or resp.status == 0:
            problems.append("a 5xx (or no answer) for a client's mistake")
        if resp.content_type != "application/problem+json":
            problems.append("not application/problem+json")
        else:
            doc = resp.json_or_none()
            if not (isinstance(doc, dict) and doc.get("type") and doc.get("title")
                    and doc.get("status") == resp.status):
                problems.append("the problem lacks type/title/status")
            elif isinstance(doc, dict):
                if "type" in case and doc.get("type") != "urn:risksim:problem:" + str(case["type"]):
                    problems.append(f"type is not urn:risksim:problem:{case['type']}")
                if resp.header("cache-control") != "no-store":
                    problems.append("no Cache-Control: no-store")
                errors = doc.get("errors") if isinstance(doc.get("errors"), list) else []
                if "pointer" in case and not any(
                        isinstance(e, dict) and e.get("pointer") == case["pointer"]
                        for e in errors):
                    problems.append(f"no error with pointer {case['pointer']!r}")
                if "code" in case and not any(
                        isinstance(e, dict) and e.get("code") == case["code"] for e in errors):
                    problems.append(f"no error with code {case['code']!r}")
                if status == 422 and not errors:
                    problems.append("a 422 without errors")
        if "allow" in case and resp.header("allow") != case["allow"]:
            problems.append(f"Allow is not {case['allow']!r}")
        if problems:
            failures.append(f"[{case['name']}] " + "; ".join(problems) + "\n" + resp.describe())
    health = t.get("/healthz")
    good = t.post("/simulations", small_request(seed=72))
    if health.status != 200:
        failures.append("after the catalogue /healthz is not 200\n" + health.describe())
    if good.status != 200:
        failures.append("after the catalogue a good request is not 200\n" + good.describe())
    if failures:
        raise t.failureException(
            f"{len(failures)} of {len(cases)} bad requests were not answered as documented:\n\n"
            + "\n\n".join(failures) + "\n\n" + t.site.log_tail(40))


# --------------------------------------------------------------------------------------------
# docs/api.md examples

DOCS_API = REPO / "docs" / "api.md"
EXPECT_RE = re.compile(r"^\s*#\s*expect\s+(\d{3})\s*$")
STATUS_MARK = "RISKSIM-EXAMPLE-STATUS"


def docs_examples(text: str) -> Tuple[List[Tuple[int, int, str]], List[str]]:
    """The examples of docs/api.md: (line number, expected status, shell text) for each, and the
    problems found (sh blocks that call curl on $RISKSIM without an expect line)."""
    examples: List[Tuple[int, int, str]] = []
    problems: List[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)(```+|~~~+)\s*(\S*)", lines[i])
        if not m:
            i += 1
            continue
        fence, lang = m.group(2), m.group(3).lower()
        start = i + 1
        j = start
        while j < len(lines) and not lines[j].strip().startswith(fence):
            j += 1
        block = lines[start:j]
        i = j + 1
        if lang not in ("sh", "shell", "bash"):
            continue
        current: Optional[Tuple[int, int, List[str]]] = None
        leading: List[str] = []
        for k, line in enumerate(block):
            em = EXPECT_RE.match(line)
            if em:
                if current:
                    examples.append((current[0], current[1], "\n".join(current[2])))
                current = (start + k + 1, int(em.group(1)), [])
            elif current:
                current[2].append(line)
            elif line.strip() and not line.strip().startswith("#"):
                leading.append(line)
        if current:
            examples.append((current[0], current[1], "\n".join(current[2])))
        if leading and any("$RISKSIM" in x or "${RISKSIM}" in x for x in leading):
            problems.append(f"docs/api.md:{start}: a sh block with a request before its first "
                            f"'# expect NNN' line:\n  " + "\n  ".join(leading))
    return examples, problems


def run_docs_examples(t: ApiCase) -> None:
    """Runs every curl example of docs/api.md and checks its status (the convention is
    described in tests/integration/README.md)."""
    if not DOCS_API.exists():
        t.fail("docs/api.md is missing")
    examples, problems = docs_examples(DOCS_API.read_text())
    if not examples:
        t.fail("docs/api.md has no examples to run: expected ```sh blocks in which each curl "
               "example follows a line '# expect NNN' (the HTTP status it gets) and uses "
               "$RISKSIM (the base URL, e.g. http://127.0.0.1:8080/risksim) and $JOB (the id of "
               "a completed job); see tests/integration/README.md")
    job = str(t.run_sync(ENTERPRISE)[1]["id"])
    prelude = (
        "set -e\n"
        f"curl() {{ command curl -sS \"$@\" -w '%{{stderr}}{STATUS_MARK} %{{http_code}}\\n'; }}\n")
    env = dict(os.environ, RISKSIM=t.site.base, JOB=job)
    failures = list(problems)
    for line, expected, script in examples:
        with tempfile.TemporaryDirectory(prefix="risksim-doc-") as tmp:
            proc = subprocess.run(["bash", "-c", prelude + script], cwd=str(REPO), env=dict(
                env, TMPDIR=tmp), capture_output=True, timeout=120)
        err = proc.stderr.decode("utf-8", "replace")
        statuses = [int(m) for m in re.findall(STATUS_MARK + r" (\d{3})", err)]
        clean_err = "\n".join(x for x in err.splitlines() if STATUS_MARK not in x)
        got = statuses[-1] if statuses else None
        if got != expected:
            out = proc.stdout.decode("utf-8", "replace")
            failures.append(
                f"docs/api.md:{line}: expected {expected}, got "
                f"{got if got is not None else 'no HTTP answer (no curl ran, or curl failed)'}"
                f" (exit status {proc.returncode})\n"
                f"  example:\n    " + script.strip().replace("\n", "\n    ")
                + f"\n  with RISKSIM={t.site.base} JOB={job}"
                + f"\n  stdout: {out[:1500]}\n  stderr: {clean_err[:1500]}")
    if failures:
        t.fail(f"{len(failures)} of {len(examples)} examples of docs/api.md failed:\n\n"
               + "\n\n".join(failures) + "\n\n" + t.site.log_tail())


# --------------------------------------------------------------------------------------------
# A server that runs no jobs (every job stays queued) with a queue of 2


class QueueTests(ApiCase):
    """Queued jobs, the full queue and the long poll, with workers = 0 and queue_size = 2."""

    LABEL = "queue"
    OVERRIDES = {"workers": 0, "queue_size": 2, "retry_after_s": 7, "max_waiters": 1}

    def submit_queued(self, seed: int) -> str:
        job_id = self.submit(small_request(seed=seed))
        self.addCleanup(self.cancel_quietly, job_id)
        return job_id

    def test_queued_job(self) -> None:
        job_id = self.submit_queued(1)
        job = self.job(job_id)
        self.assertEqual(job["status"], "queued")
        self.assertEqual(job["attempts"], 0)
        self.assertEqual(job["trialsDone"], 0)
        self.assertNotIn("result", job)
        self.assertIsNone(job["startedAt"])
        _, doc = self.events(job_id)
        self.assertEqual([e["type"] for e in doc["events"]], ["status"])  # type: ignore
        self.assertEqual(doc["events"][0]["status"], "queued")  # type: ignore
        self.assertEqual(doc["status"], "queued")
        health = self.json_of(self.expect(self.get("/healthz"), 200))
        self.assertEqual(health["workers"], {"configured": 0, "alive": 0})
        self.assertGreaterEqual(health["queueDepth"], 1)  # type: ignore[operator]

    def test_cancel_queued_job(self) -> None:
        job_id = self.submit_queued(2)
        resp = self.expect(self.req("DELETE", f"/simulations/{job_id}"), 202)
        self.check(self.json_of(resp).get("status") == "cancelled", resp,
                   "a queued job is not cancelled at once")
        job = self.job(job_id)
        self.assertEqual(job["status"], "cancelled")
        self.assertIsInstance(job["finishedAt"], str)
        evs = self.all_events(job_id)
        self.check_event_order(job_id, evs)
        self.assertEqual([e["type"] for e in evs], ["status", "cancelled"])
        # Idempotent: a second DELETE finds it finished.
        again = self.expect(self.req("DELETE", f"/simulations/{job_id}"), 200)
        self.assertEqual(self.json_of(again)["status"], "cancelled")
        self.assertEqual(len(self.all_events(job_id)), 2)

    def test_queue_full(self) -> None:
        self.submit_queued(3)
        self.submit_queued(4)
        for path, headers in (("/simulations/async", {}),
                              ("/simulations", {"Prefer": "respond-async"})):
            with self.subTest(path=path):
                resp = self.expect(self.post(path, small_request(seed=5), headers=headers), 503,
                                   ptype="queue-full")
                self.check(resp.header("retry-after") == "7", resp, "no Retry-After: 7")
        # The synchronous endpoint does not use the queue.
        self.run_sync(small_request(seed=6))
        # A cancelled job leaves the queue: there is room again.
        jobs = self.list_all("status=queued")
        self.assertEqual(len(jobs), 2)
        self.expect(self.req("DELETE", f"/simulations/{jobs[0]['id']}"), 202)
        self.submit_queued(7)

    def test_long_poll_wakes_up_on_cancel(self) -> None:
        job_id = self.submit_queued(8)
        _, doc = self.events(job_id)
        after = int(doc["next"])  # type: ignore[arg-type]
        result: Dict[str, object] = {}

        def poll() -> None:
            result["resp"] = self.get(f"/simulations/{job_id}/events?after={after}&wait=20",
                                      timeout=90)

        waiter = threading.Thread(target=poll)
        waiter.start()
        try:
            # The long poll is waiting once this process counts it.
            self.wait_for_waiters(1)
            self.expect(self.req("DELETE", f"/simulations/{job_id}"), 202)
        finally:
            waiter.join(WAIT_S)
        self.assertFalse(waiter.is_alive(), "the long poll did not return")
        resp = result["resp"]
        assert isinstance(resp, httpclient.Response)
        self.expect(resp, 200)
        doc = self.json_of(resp)
        self.check([e["type"] for e in doc["events"]] == ["cancelled"], resp,  # type: ignore
                   "the long poll did not return with the cancelled event")
        self.check(doc["status"] == "cancelled", resp, "status is not cancelled")
        events = doc["events"]
        assert isinstance(events, list)
        self.check(doc["next"] == events[0]["seq"], resp, "next is not the event's seq")

    def test_sync_replay_of_a_queued_job(self) -> None:
        """An Idempotency-Key first used for an async job, then on the sync endpoint with the
        same body: the same job, not a second run."""
        key = "queued-" + uuid.uuid4().hex
        body = json.dumps(small_request(seed=12))
        job_id = self.submit(body, headers={"Idempotency-Key": key})
        self.addCleanup(self.cancel_quietly, job_id)
        before = {j["id"] for j in self.list_all()}
        resp = self.post("/simulations", body, headers={"Idempotency-Key": key})
        self.expect(resp, 202)
        self.check(self.json_of(resp).get("id") == job_id, resp, "not the same job")
        self.check(resp.header("location") == f"/risksim/simulations/{job_id}", resp,
                   "Location is not the job's")
        self.assertEqual({j["id"] for j in self.list_all()}, before)

    def wait_for_waiters(self, n: int) -> None:
        """Waits until this (single) responder process counts n waiting long polls."""
        wait_for(f"{n} long poll(s) to be waiting", lambda: re.search(
            rf"^risksim_long_polls {n}$", self.get("/metrics").text, re.M),
            timeout=60, describe=self.site.log_tail)

    def test_long_poll_limit(self) -> None:
        first = self.submit_queued(10)
        second = self.submit_queued(11)
        _, d1 = self.events(first)
        _, d2 = self.events(second)
        result: Dict[str, object] = {}

        def poll() -> None:
            result["resp"] = self.get(f"/simulations/{first}/events?after={d1['next']}&wait=25",
                                      timeout=90)

        waiter = threading.Thread(target=poll)
        waiter.start()
        try:
            self.wait_for_waiters(1)
            # max_waiters = 1: a second long poll is answered at once, empty, with Retry-After.
            resp, doc = self.events(second, after=int(d2["next"]), wait=25)  # type: ignore
            self.check(doc["events"] == [] and doc["status"] == "queued", resp,
                       "unexpected answer to a long poll over the limit")
            self.check(resp.header("retry-after") == "1", resp, "no Retry-After: 1")
        finally:
            self.cancel_quietly(first)
            waiter.join(WAIT_S)
        self.assertFalse(waiter.is_alive(), "the long poll did not return")
        resp = result["resp"]
        assert isinstance(resp, httpclient.Response)
        self.expect(resp, 200)
        events = self.json_of(resp)["events"]
        assert isinstance(events, list)
        self.check([e["type"] for e in events] == ["cancelled"], resp,
                   "the first long poll did not end with the cancelled event")
        self.wait_for_waiters(0)

    def test_long_poll_without_events_times_out_empty(self) -> None:
        job_id = self.submit_queued(9)
        _, doc = self.events(job_id)
        _, polled = self.events(job_id, after=int(doc["next"]), wait=1)  # type: ignore[arg-type]
        self.assertEqual(polled["events"], [])
        self.assertEqual(polled["next"], doc["next"])
        self.assertEqual(polled["status"], "queued")


# --------------------------------------------------------------------------------------------
# Async jobs switched off


class AsyncDisabledTests(ApiCase):
    LABEL = "noasync"
    OVERRIDES = {"async_enabled": False}

    def test_async_refused_with_503(self) -> None:
        for path, headers in (("/simulations/async", {}),
                              ("/simulations", {"Prefer": "respond-async"})):
            with self.subTest(path=path):
                resp = self.expect(self.post(path, small_request(), headers=headers), 503,
                                   ptype="async-disabled")
                self.check(resp.header("retry-after") == "5", resp, "no Retry-After")
        self.run_sync(small_request())
        self.assertEqual(self.list_all("status=queued"), [])


# --------------------------------------------------------------------------------------------
# Authentication


def tokens(kind: str, ids: Dict[str, str]) -> Tuple[Dict[str, Optional[str]], str]:
    """The Authorization header (or query parameter) of a token kind of the catalogue: returns
    (headers, query string to append)."""
    now = int(time.time())
    bearer = lambda t: ({"Authorization": "Bearer " + t}, "")  # noqa: E731
    if kind == "none":
        return {}, ""
    if kind == "basic":
        return {"Authorization": "Basic " + base64.b64encode(b"admin:admin").decode()}, ""
    if kind == "empty bearer":
        return {"Authorization": "Bearer "}, ""
    if kind == "garbage":
        return bearer("not.a.token")
    if kind == "wrong signature":
        return bearer(serve.make_token("another-secret", scope="admin"))
    if kind == "expired":
        return bearer(serve.make_token(SECRET, ttl=-10, scope="admin"))
    if kind == "no exp":
        return bearer(raw_token({"alg": "HS256", "typ": "JWT"}, {"scope": "admin"}))
    if kind == "exp string":
        return bearer(raw_token({"alg": "HS256", "typ": "JWT"},
                                {"scope": "admin", "exp": str(now + 300)}))
    if kind == "alg none":
        h = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
        p = b64url(json.dumps({"scope": "admin", "exp": now + 300}).encode())
        return bearer(f"{h}.{p}.")
    if kind == "HS512":
        return bearer(raw_token({"alg": "HS512", "typ": "JWT"},
                                {"scope": "admin", "exp": now + 300}, digest=hashlib.sha512))
    if kind == "too long":
        return bearer(serve.make_token(SECRET, scope="admin", pad="x" * 5000))
    if kind == "query garbage":
        return {}, "token=garbage"
    if kind == "query expired":
        return {}, "token=" + serve.make_token(SECRET, ttl=-10, scope="admin")
    if kind == "other job":
        return bearer(serve.make_token(SECRET, job=ids["other"]))
    if kind == "query other job":
        return {}, "token=" + serve.make_token(SECRET, job=ids["other"])
    if kind == "user":
        return bearer(serve.make_token(SECRET))
    if kind == "job":
        return bearer(serve.make_token(SECRET, job=ids["job"]))
    if kind == "query twice":
        return bearer(serve.make_token(SECRET, scope="admin"))
    raise KeyError(kind)


class AuthTests(ApiCase):
    """auth_secret set: every endpoint needs a JWT (docs/api.md section 6)."""

    LABEL = "auth"
    OVERRIDES = {"auth_secret": SECRET}

    def auth(self) -> Dict[str, str]:
        return {"Authorization": "Bearer " + serve.make_token(SECRET, scope="admin")}

    def as_(self, **claims: object) -> Dict[str, Optional[str]]:
        return {"Authorization": "Bearer " + serve.make_token(SECRET, **claims)}

    def test_missing_token(self) -> None:
        for method, path in (("GET", "/healthz"), ("GET", "/metrics"), ("GET", "/simulations"),
                             ("GET", f"/simulations/{bad_requests.UNKNOWN_ID}")):
            with self.subTest(path=path):
                resp = self.expect(self.req(method, path, auth=False), 401)
                self.check((resp.header("www-authenticate") or "").startswith("Bearer"), resp,
                           "no WWW-Authenticate: Bearer")
        resp = self.expect(self.req("POST", "/simulations", body=GOOD_BYTES, auth=False), 401)

    def test_user_token(self) -> None:
        user = self.as_()
        self.expect(self.req("GET", "/healthz", headers=user, auth=False), 200)
        self.expect(self.req("GET", "/metrics", headers=user, auth=False), 200)
        resp = self.expect(self.req("POST", "/simulations", body=GOOD_BYTES, headers=user,
                                    auth=False), 200)
        job_id = str(self.json_of(resp)["id"])
        self.expect(self.req("GET", f"/simulations/{job_id}", headers=user, auth=False), 200)
        resp = self.expect(self.req("GET", "/simulations", headers=user, auth=False), 403)

    def test_job_token(self) -> None:
        _, doc = self.run_sync(small_request(seed=80))
        job_id = str(doc["id"])
        _, other = self.run_sync(small_request(seed=81))
        own = serve.make_token(SECRET, job=job_id)
        for path in (f"/simulations/{job_id}", f"/simulations/{job_id}/events"):
            with self.subTest(path=path):
                self.expect(self.req("GET", path, headers={"Authorization": "Bearer " + own},
                                     auth=False), 200)
                self.expect(self.req("GET", f"{path}?token={own}", auth=False), 200)
        self.expect(self.req("GET", f"/simulations/{job_id}/events?after=0&token={own}",
                             auth=False), 200)
        self.expect(self.req("GET", f"/simulations/{other['id']}",
                             headers={"Authorization": "Bearer " + own}, auth=False), 403)
        self.expect(self.req("GET", f"/simulations/{other['id']}?token={own}", auth=False), 403)
        self.expect(self.req("POST", "/simulations/async", body=GOOD_BYTES,
                             headers={"Authorization": "Bearer " + own}, auth=False), 403)
        self.expect(self.req("GET", "/simulations", headers={"Authorization": "Bearer " + own},
                             auth=False), 403)

    def test_admin_token_lists(self) -> None:
        _, doc = self.run_sync(small_request(seed=82))
        ids = [j["id"] for j in self.list_all()]
        self.assertIn(doc["id"], ids)
        token = serve.make_token(SECRET, scope="admin")
        resp = self.expect(self.req("GET", f"/simulations?limit=5&token={token}", auth=False),
                           200)
        self.assertIn("jobs", self.json_of(resp))

    def test_expired_and_wrongly_signed(self) -> None:
        _, doc = self.run_sync(small_request(seed=83))
        for kind in ("expired", "wrong signature", "no exp", "alg none", "garbage"):
            with self.subTest(kind=kind):
                headers, _ = tokens(kind, {})
                self.expect(self.req("GET", f"/simulations/{doc['id']}", headers=headers,
                                     auth=False), 401)

    def test_job_token_may_cancel_its_job_only(self) -> None:
        _, doc = self.run_sync(small_request(seed=84))
        _, other = self.run_sync(small_request(seed=85))
        own = {"Authorization": "Bearer " + serve.make_token(SECRET, job=str(doc["id"]))}
        self.expect(self.req("DELETE", f"/simulations/{doc['id']}", headers=own, auth=False),
                    200)
        self.expect(self.req("DELETE", f"/simulations/{other['id']}", headers=own, auth=False),
                    403)

    def test_scheme_is_case_insensitive(self) -> None:
        token = serve.make_token(SECRET)
        for scheme in ("bearer", "BEARER", "Bearer  "):
            with self.subTest(scheme=scheme):
                self.expect(self.req("GET", "/healthz",
                                     headers={"Authorization": f"{scheme} {token}"}, auth=False),
                            200)

    def test_options_needs_no_token(self) -> None:
        resp = self.expect(self.req("OPTIONS", "/simulations", auth=False), 204, problem=False)
        self.check(resp.header("allow") == "GET, HEAD, POST, OPTIONS", resp, "wrong Allow")

    def test_bad_request_catalogue_tokens(self) -> None:
        def headers_for(case: Dict[str, object], ids: Dict[str, str]
                        ) -> Tuple[Dict[str, Optional[str]], str]:
            headers, query = tokens(str(case["token"]), ids)
            path = str(case["path"]).format(**ids)
            if query:
                path += ("&" if "?" in path else "?") + query
            return headers, path

        cases = [c for c in bad_requests.cases() if "token" in c]
        self.assertGreater(len(cases), 10)
        run_catalogue(self, cases, headers_for)


# --------------------------------------------------------------------------------------------
# Two responder processes sharing one queue


class SharedQueueTests(ApiCase):
    LABEL = "twoprocs"
    FCGI_PROCS = 2
    OVERRIDES = {"workers": 2}

    def test_two_processes_run_each_job_once(self) -> None:
        self.assertEqual(len(self.site.responder_pids()), 2)
        ids = [self.submit(small_request(seed=100 + i, trials=20000 + 1000 * i))
               for i in range(20)]
        self.assertEqual(len(set(ids)), 20)
        for job_id in ids:
            job = self.wait_job(job_id, ["completed", "failed", "cancelled"])
            self.assertEqual(job["status"], "completed", job.get("error"))
            self.assertEqual(job["attempts"], 1, job_id)
            self.assertEqual(job["result"]["id"], job_id)  # type: ignore[index]
            evs = self.all_events(job_id)
            self.check_event_order(job_id, evs)
            types = [e["type"] for e in evs]
            self.assertEqual(types.count("complete"), 1, (job_id, types))
            self.assertEqual(types[-1], "complete", (job_id, types))
            self.assertEqual([e["status"] for e in evs if e["type"] == "status"],
                             ["queued", "running"], (job_id, types))
        # Every job was claimed exactly once, whichever process claimed it.
        logs = self.site.logs_text()
        for job_id in ids:
            claims = re.findall(rf"job={job_id} claimed by (\S+)", logs)
            self.assertEqual(len(claims), 1, (job_id, claims))


# --------------------------------------------------------------------------------------------
# A responder killed in the middle of a job


class LeaseCase(ApiCase):
    """Two responder processes with short leases; tests stop the process that runs a job."""

    FCGI_PROCS = 2

    def setUp(self) -> None:
        # A previous test may have stopped a process: start it again (Apache), or wait until
        # lighttpd has, and until the service answers.
        self.site.revive()
        wait_for("two responder processes", lambda: len(self.site.responder_pids()) == 2,
                 timeout=30, describe=self.site.log_tail)
        wait_for("the service to answer", lambda: self.get("/healthz").status == 200,
                 timeout=30, describe=self.site.log_tail)

    def owner_of(self, job_id: str) -> Tuple[Optional[str], Optional[str]]:
        """(state, lease_owner) of the job, read from the database (read-only)."""
        db = self.site.state_dir / "risksim.db"  # type: ignore[operator]
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        try:
            row = con.execute("SELECT state, lease_owner FROM jobs WHERE id = ?",
                              (job_id,)).fetchone()
        finally:
            con.close()
        return (row[0], row[1]) if row else (None, None)

    def stop_owner_mid_job(self, body: Dict[str, object], sig: int) -> Tuple[str, int]:
        """Submits body, waits until it runs with progress, and sends sig to the responder
        process that owns its lease (the owner is "host:pid:wN"). Returns (job id, pid)."""
        for _ in range(3):  # the job may finish before the signal on a fast machine
            pids = self.site.responder_pids()
            self.assertEqual(len(pids), 2, pids)
            job_id = self.submit(body)
            self.wait_job(job_id, ["running", "completed"], lambda j: j["status"] == "completed"
                          or int(j["trialsDone"]) > 0)  # type: ignore[arg-type]
            state, owner = self.owner_of(job_id)
            if state != "running" or owner is None:
                continue
            pid = int(owner.split(":")[-2])
            self.assertIn(pid, pids, f"lease owner {owner} is not a responder ({pids})")
            self.site.signal_responder(pid, sig)
            if sig == signal.SIGKILL:
                state_after, owner_after = self.owner_of(job_id)
                if state_after != "running" or owner_after != owner:
                    continue
            # The web server may fail a request or two on the stopped process's socket.
            wait_for("the service to answer again",
                     lambda: self.get("/healthz").status == 200, timeout=30,
                     describe=self.site.log_tail)
            return job_id, pid
        self.fail("could not stop the owner of a running job in three tries\n"
                  + self.site.log_tail())

    @staticmethod
    def enterprise(trials: int) -> Dict[str, object]:
        body = copy.deepcopy(ENTERPRISE)
        body["trials"] = trials
        return body

    def claims(self, job_id: str) -> List[Tuple[int, str]]:
        """(pid, attempt) of every claim of the job, from the responders' log lines (each
        process may have its own log), in the order of their time stamps."""
        found = re.findall(rf"(?m)^(\S+) .* job={job_id} claimed by (\S+) \(attempt (\d+)\)",
                           self.site.logs_text())
        return [(int(owner.split(":")[-2]), attempt) for _, owner, attempt in sorted(found)]


class LeaseRecoveryTests(LeaseCase):
    LABEL = "lease"
    OVERRIDES = {"workers": 1, "lease_s": 2, "max_attempts": 3, "sim_threads": 1}

    def test_killed_responder_job_finished_by_another(self) -> None:
        body = self.enterprise(10_000_000)
        job_id, killed = self.stop_owner_mid_job(body, signal.SIGKILL)
        job = self.wait_job(job_id, ["completed"], proxy_errors_ok=True)
        self.assertEqual(job["attempts"], 2)
        claims = self.claims(job_id)
        self.assertEqual([a for _, a in claims], ["1", "2"], claims)
        self.assertEqual(claims[0][0], killed)
        self.assertNotEqual(claims[1][0], killed, claims)
        evs = self.all_events(job_id)
        self.check_event_order(job_id, evs)
        types = [e["type"] for e in evs]
        self.assertEqual(types.count("complete"), 1, types)
        self.assertEqual(types[-1], "complete", types)
        # The reaper's re-queue and the second claim are in the log, each a status event.
        self.assertEqual([e["status"] for e in evs if e["type"] == "status"],
                         ["queued", "running", "queued", "running"], types)
        requeued = [e for e in evs if e["type"] == "status"][2]
        self.assertEqual(requeued["trialsDone"], 0, requeued)
        # The result is the one an uninterrupted run gives.
        request_file = self.site.state_dir / "killed-request.json"  # type: ignore[operator]
        request_file.write_text(json.dumps(body))
        cli = Path(OPTIONS["build"]) / "cli" / "risksim"  # type: ignore[arg-type]
        proc = subprocess.run([str(cli), "simulate", "--progress", "never", str(request_file)],
                              capture_output=True, timeout=600)
        self.assertEqual(proc.returncode, 0, proc.stderr.decode("utf-8", "replace"))
        expected = json.loads(proc.stdout)
        got = dict(job["result"])  # type: ignore[arg-type]
        self.assertEqual(got.pop("id"), job_id)
        for d in (got, expected):
            d.pop("durationMs", None)
        self.assertEqual(got["nodes"], expected["nodes"])
        self.assertEqual(got, expected)

class GracefulStopTests(LeaseCase):
    """SIGTERM to one of two responder processes sharing the queue (and, behind Apache, one
    listening socket, as with systemd's risksim-fcgi.socket or spawn-fcgi -F 2)."""

    LABEL = "graceful"
    OVERRIDES = {"workers": 1, "lease_s": 2, "max_attempts": 3, "sim_threads": 1}

    def test_stopped_responder_leaves_the_socket_to_the_others(self) -> None:
        pids = self.site.responder_pids()
        self.site.signal_responder(pids[0], signal.SIGTERM)
        # The other process keeps serving (the web server may fail a request on the way).
        wait_for("the remaining responder to answer", lambda: self.get(
            "/healthz").status == 200, timeout=30, describe=self.site.log_tail)
        for _ in range(10):
            self.expect(self.get("/healthz"), 200)
        # A process started again on the same socket serves it too.
        self.site.revive()
        wait_for("two responder processes", lambda: len(self.site.responder_pids()) == 2,
                 timeout=30, describe=self.site.log_tail)
        if isinstance(self.site.web, serve.Apache):
            status, _, body = serve.fcgi_request(self.site.fcgi_address(), timeout=30)
            self.assertEqual(status, 200, body)

    def test_terminated_responder_hands_its_job_back(self) -> None:
        # SIGTERM: the process releases the lease at once (docs/operations.md, Upgrades); the
        # job runs again from 0 elsewhere, and the release does not count as an attempt.
        job_id, stopped = self.stop_owner_mid_job(self.enterprise(10_000_000), signal.SIGTERM)
        job = self.wait_job(job_id, ["completed"], proxy_errors_ok=True)
        self.assertEqual(job["attempts"], 1)
        evs = self.all_events(job_id)
        self.check_event_order(job_id, evs)
        types = [e["type"] for e in evs]
        self.assertEqual(types.count("complete"), 1, types)
        self.assertEqual([e["status"] for e in evs if e["type"] == "status"],
                         ["queued", "running", "queued", "running"], types)
        claims = self.claims(job_id)
        self.assertEqual(len(claims), 2, claims)
        self.assertEqual(claims[0][0], stopped)
        self.assertIn(f"job={job_id} released", self.site.logs_text())



class LeaseExhaustedTests(LeaseCase):
    """max_attempts = 1: a job whose process dies fails with lease_expired."""

    LABEL = "lease1"
    OVERRIDES = {"workers": 1, "lease_s": 2, "max_attempts": 1, "sim_threads": 1}

    def test_job_fails_when_its_attempts_are_used_up(self) -> None:
        job_id, _ = self.stop_owner_mid_job(long_request(), signal.SIGKILL)
        job = self.wait_job(job_id, ["failed"], proxy_errors_ok=True)
        self.assertEqual(job["attempts"], 1)
        self.assertEqual(job["error"]["code"], "lease_expired", job)  # type: ignore[index]
        self.assertIsInstance(job["error"]["message"], str)  # type: ignore[index]
        self.assertNotIn("result", job)
        evs = self.all_events(job_id)
        self.check_event_order(job_id, evs)
        self.assertEqual(evs[-1]["type"], "error", [e["type"] for e in evs])
        self.assertEqual(evs[-1]["error"]["code"], "lease_expired")  # type: ignore[index]
        _, doc = self.events(job_id, after=int(evs[-1]["seq"]), wait=5)  # type: ignore
        self.assertEqual((doc["events"], doc["status"]), ([], "failed"))
        self.expect(self.req("DELETE", f"/simulations/{job_id}"), 200)
        self.assertIn(job_id, [j["id"] for j in self.list_all("status=failed")])


# --------------------------------------------------------------------------------------------


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", choices=("lighttpd", "apache"), default="lighttpd")
    ap.add_argument("--build", default=str(REPO / "build"), help="the CMake build directory")
    ap.add_argument("--keep", action="store_true",
                    help="keep the state directories (configs, databases, logs) afterwards")
    args, rest = ap.parse_known_args(argv)
    build = Path(args.build).resolve()
    if not (build / "fcgi" / "risksim-fcgi").exists():
        print(f"{build}/fcgi/risksim-fcgi is missing: build first", file=sys.stderr)
        return 2
    needed = ["curl", "bash", "lighttpd" if args.server == "lighttpd" else "apache2"]
    missing = [p for p in needed if shutil.which(p) is None]
    if missing:
        print(f"{', '.join(missing)} not installed (bash scripts/deps.sh test installs it)",
              file=sys.stderr)
        return 1
    OPTIONS["server"] = args.server
    OPTIONS["build"] = build
    OPTIONS["keep"] = args.keep
    root = Path(tempfile.mkdtemp(prefix=f"risksim-http-{args.server}-"))
    os.chmod(root, 0o755)  # Apache's children (www-data) must reach the sockets in it
    OPTIONS["state_root"] = root
    started = time.monotonic()
    prog = unittest.main(module=__name__, argv=[sys.argv[0]] + rest, exit=False)
    ok = prog.result.wasSuccessful()
    print(f"{args.server}: {time.monotonic() - started:.1f} s; state in {root}"
          + ("" if (args.keep or not ok) else " (removed)"), file=sys.stderr)
    if ok and not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
