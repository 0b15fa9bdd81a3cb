#!/usr/bin/python3
"""Reliability under load: mixed sync/async/polling/streaming traffic at half the capacity.

Why this file exists: the benchmarks (docs/benchmarks.md) say how fast each endpoint is for ten
seconds; they do not say whether the service stays correct and stays the same size when it is
used for a long time by a realistic mix of clients. This program starts the shipped web server
configuration with the responder and the bridge (scripts/serve.py, through the integration
suite's BridgeSite), measures what this machine can do for the mix, then offers half of that
for a while and checks that:

  - every answer is the expected success status (any 4xx/5xx, connection error, malformed
    answer or stream close other than 1000 is a failure, counted and printed with examples);
  - every async job submitted is accounted for: it reaches `completed`, its result is
    fetchable by GET /simulations/{id} and is the result its `complete` event carried, and the
    events its client received (by long polls or by the WebSocket stream) are exactly the
    job's events as GET .../events?after=0 lists them afterwards (no gap, no duplicate, in
    order, queued -> running -> progress* -> complete); and the jobs the API lists at the end
    are exactly the sync and async jobs submitted, all completed (also per /metrics, and in
    the SQLite file itself, read once every daemon has stopped);
  - the resident memory (VmRSS) of every daemon is flat: after a warm-up (the first 20% of the
    steady phase's samples), the largest sample of the last third is at most 1.25 times the
    largest of the first third plus 4 MiB. The daemons: each responder process, the bridge,
    and lighttpd (which serves every connection in its one process). For Apache only its
    parent process is sampled (mpm_event starts and stops children with the load, so their
    memory is not one process's);
  - the size of the SQLite -wal file stays below the bound derived below;
  - no daemon restarted (its pid is the same at the end), no daemon wrote an error-level log
    line, and no log holds a sanitizer report; the bridge exits 0 on SIGTERM.

Usage:

    /usr/bin/python3 tests/reliability/load.py --build BUILD_DIR [--server lighttpd|apache]
        [--long] [--duration S] [--keep] [--seed N] [--fcgi-procs N]
    /usr/bin/python3 tests/reliability/load.py --measure-generator [--build BUILD_DIR]

Short form (the default, run by the test command): 10 s of calibration and 30 s of steady
load. --long: 30 s of calibration and 600 s of steady load. --duration S sets the steady
phase. --keep keeps the state directory (configs, database, logs). --measure-generator
measures this client alone against a stub server (no risksim) and exits. --inject FAULT makes
one check fail on purpose, to show that it can (see INJECTIONS). Exit 0 and a last line `PASS`,
or exit 1 with the failures listed. Figures are printed as `FIGURE key=value` lines; no
duration or throughput is ever asserted (timeouts only guard hangs).

The load. Phase 1 (calibration) runs CALIBRATION_USERS closed-loop clients, each doing one
operation of the mix after the other; the operations completed per second are the capacity of
the mix on this machine at this moment. Phase 2 (steady) starts operations as a Poisson process
at half that rate (open loop: arrivals do not wait for answers). The mix (by operations):

    sync    55%  POST /simulations, 1,000-10,000 trials of one of three small seeded trees
    poll    20%  POST /simulations/async (20,000-100,000 trials), then long polls
                 GET .../events?after=NEXT&wait=25 until the terminal event
    stream  15%  POST /simulations/async, then the WebSocket stream through the web server's
                 /risksim/simulations/{id}/stream until the bridge closes it
    get     10%  GET /simulations/{id} of a recently finished job (its result is compared with
                 what the sync answer or the complete event carried)

An async operation then also reads GET /simulations/{id} and GET .../events?after=0 (the
accounting above). The server's work is dominated by the engine runs and the durable writes
(the sync runs and the jobs), not by the cheap requests. This client (asyncio, raw HTTP/1.1
over keep-alive connections, one thread) measured alone against a stub server
(--measure-generator, 32 clients, 2026-11-22 on the 2-vCPU machine of docs/benchmarks.md):
1,760-2,230 sync-like requests/s (a 36 KiB result parsed as JSON each time) at 99% of one
CPU, its limit, and 15,700-17,400 small ones/s (the stub's limit, the client at 73-75%).
The service's capacity for the mix there is 50-110 operations/s, about 150-300 requests/s,
so the client needs a fifth to a third of one CPU at calibration and half that at half load;
it prints its own CPU use for both phases (*_generator_cpu_pct), beside the machine's and
each daemon's, since it shares the machine's CPUs with the server.

The responder runs the shipped httpd-conf/risksim.conf plus: threads 16 and workers 2 (as
the benchmarks), queue_size 100000 (so that no 503 queue-full can come from the queue at half
capacity: if one comes, it is a finding), progress_ms 10 and progress_trials 10000 (so that
jobs have progress events to stream), retention_s 86400 (no job is pruned during the run, so
that every job can be counted at the end), and max_sessions_per_ip 10000 for the bridge (the
web server's proxy connects from one address).

The WAL bound. db/ sets `PRAGMA wal_autocheckpoint = RSDB_WAL_BACKSTOP_PAGES` (16384 pages,
db/risksim/db.h) and leaves SQLite's journal_size_limit at its default (-1: the -wal file is
never shrunk by SQLite itself); the responder's maintenance thread calls rsdb_checkpoint every
maintenance_ms (200) which, once the WAL is over checkpoint_bytes (4 MiB), runs a TRUNCATE
checkpoint (the file goes back to 0 bytes), and a PASSIVE one below that. So the file only
grows while writers append faster than checkpoints reset it, and whenever it passes the
backstop of 16384 frames every committing writer runs a checkpoint itself. The bound checked
is therefore that backstop, in bytes: a WAL header (32 bytes) plus 16384 frames of
(page_size + 24) bytes (page_size read from the database header; 4096 gives 67,502,112 bytes),
plus WAL_SLACK_BYTES (4 MiB) for the one transaction that may commit past it before its
checkpoint runs (the largest transactions here are a group commit of a few jobs or one 37 KiB
result with its events, far below that). A WAL at or over this bound means that neither the
maintenance thread nor SQLite's own backstop kept it down. The maximum, and its minimum/maximum
per third, are printed; at half capacity it is expected to stay within a few MiB.

Python 3 standard library, Debian's python3-websockets (hence /usr/bin/python3) and relcommon.py.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import math
import os
import random
import re
import resource
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence, Set, Tuple

import relcommon  # (first: it puts scripts/ and tests/integration/ on sys.path)
from relcommon import REPO, Failure, figure
import serve  # (scripts/serve.py)
import test_ws as ws_suite  # (its BridgeSite)

websockets = ws_suite.websockets  # None without the library: main() reports that

Msg = Dict[str, Any]

# --- The load -------------------------------------------------------------------------------

MIX: Tuple[Tuple[str, float], ...] = (("sync", 0.55), ("poll", 0.20), ("stream", 0.15),
                                      ("get", 0.10))
SYNC_TRIALS = (1000, 2000, 5000, 10000)
ASYNC_TRIALS = (20000, 50000, 100000)
CALIBRATION_USERS = 32
LOAD_FRACTION = 0.5
SHORT = {"calibrate_s": 10.0, "steady_s": 30.0}
LONG = {"calibrate_s": 30.0, "steady_s": 600.0}
LONG_POLL_WAIT_S = 25
# Recently finished jobs a `get` operation picks from (with what their result must be).
RECENT_JOBS = 256
# Operations in flight beyond which the open loop stops: the service fell far behind.
MAX_IN_FLIGHT = 5000

SERVER_OVERRIDES: Dict[str, object] = {
    "threads": 16, "workers": 2, "sim_threads": 1, "queue_size": 100000,
    "progress_ms": 10, "progress_trials": 10000, "retention_s": 86400,
    "max_sessions_per_ip": 10000,
}

# --- Guards against hangs (never asserted as durations) --------------------------------------

REQUEST_GUARD_S = 120.0
STREAM_GUARD_S = 180.0
DRAIN_GUARD_S = 300.0

# --- The checks ----------------------------------------------------------------------------

WARMUP_SHARE = 0.20
RSS_FACTOR = 1.25
RSS_SLACK_KIB = 4 * 1024
WAL_SLACK_BYTES = 4 * 1024 * 1024
WAL_HEADER_BYTES = 32
WAL_FRAME_HEADER_BYTES = 24
SAMPLE_EVERY_S = 1.0
WAL_SAMPLE_EVERY_S = 0.1
LOG_LEVEL_RE = re.compile(r"risksim-(?:fcgi|wsbridge)\[\d+\] (error|warn) ")
EXAMPLES_PER_ERROR = 5
TERMINAL = ("complete", "error", "cancelled")
# Most events one answer of GET .../events carries (docs/api.md section 4).
EVENTS_PAGE = 1000

# --inject FAULT: make one check fail on purpose (the checks' own test).
INJECTIONS = {
    "status": "treat one successful sync answer as an error",
    "drop-event": "drop one event from one WebSocket stream",
    "dup-event": "receive one polled event twice",
    "rss": "pretend the first daemon's RSS grew by 64 MiB in the last third",
    "wal": "pretend one WAL sample reached the bound",
    "lose-job": "forget one submitted async job",
}


# --------------------------------------------------------------------------------------------
# Small helpers


def now() -> float:
    return time.monotonic()


def rss_kib(pid: int) -> Optional[int]:
    """VmRSS of process pid in KiB, None if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def cpu_seconds() -> float:
    """CPU time (user + system) this process has used."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def machine_ticks() -> Tuple[int, int]:
    """(busy, total) clock ticks of all CPUs so far, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def process_ticks(pid: int) -> Optional[int]:
    """utime + stime of process pid in clock ticks, None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return int(fields[11]) + int(fields[12])


def load_average() -> str:
    try:
        with open("/proc/loadavg") as f:
            return f.read().split()[0]
    except OSError:
        return "?"


def backstop_pages() -> int:
    """RSDB_WAL_BACKSTOP_PAGES from db/risksim/db.h (the wal_autocheckpoint db/ sets)."""
    text = (REPO / "db" / "risksim" / "db.h").read_text()
    m = re.search(r"(?m)^#define\s+RSDB_WAL_BACKSTOP_PAGES\s+(\d+)", text)
    if not m:
        raise RuntimeError("db/risksim/db.h no longer defines RSDB_WAL_BACKSTOP_PAGES")
    return int(m.group(1))


def page_size(db_path: Path) -> int:
    """The page size from the database file header (bytes 16-17, big-endian; 1 means 65536)."""
    with open(db_path, "rb") as f:
        header = f.read(100)
    value = int.from_bytes(header[16:18], "big")
    return 65536 if value == 1 else value


def wal_bound(db_path: Path) -> int:
    """The WAL size the checks allow (see the module docstring)."""
    return (WAL_HEADER_BYTES + backstop_pages() * (page_size(db_path) + WAL_FRAME_HEADER_BYTES)
            + WAL_SLACK_BYTES)


def note(text: str) -> None:
    relcommon.note(f"load: {text}")


def brief(obj: object, limit: int = 240) -> str:
    if isinstance(obj, dict) and "result" in obj:
        obj = dict(obj, result="...")
    text = obj if isinstance(obj, str) else json.dumps(obj, separators=(",", ":"))
    return text if len(text) <= limit else text[:limit] + "..."


# --------------------------------------------------------------------------------------------
# HTTP/1.1 over asyncio streams, with keep-alive


class HttpError(Exception):
    """No complete HTTP answer (connection refused, closed, malformed, timed out)."""


class Answer:
    def __init__(self, status: int, headers: Dict[str, str], body: bytes):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer
        self.last_used = now()

    def close(self) -> None:
        try:
            self.writer.close()
        except Exception:  # noqa: BLE001 - already broken
            pass


class HttpPool:
    """Keep-alive connections to one host:port. A connection idle longer than IDLE_S is not
    reused (the web servers close idle connections after 5 s; reusing one just as the server
    closes it would fail a request that the server never saw). Requests are never retried."""

    IDLE_S = 2.0

    def __init__(self, host: str, port: int):
        self.host = host
        self.port = port
        self.idle: List[Connection] = []
        self.opened = 0

    async def _acquire(self) -> Connection:
        while self.idle:
            conn = self.idle.pop()
            if now() - conn.last_used < self.IDLE_S and not conn.reader.at_eof():
                return conn
            conn.close()
        reader, writer = await asyncio.open_connection(self.host, self.port, limit=1 << 20)
        self.opened += 1
        return Connection(reader, writer)

    def _release(self, conn: Connection, keep: bool) -> None:
        if keep:
            conn.last_used = now()
            self.idle.append(conn)
        else:
            conn.close()

    def sweep(self) -> None:
        """Closes the idle connections too old to be reused."""
        fresh = []
        for conn in self.idle:
            if now() - conn.last_used < self.IDLE_S:
                fresh.append(conn)
            else:
                conn.close()
        self.idle = fresh

    def close(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle = []

    def _encode(self, method: str, path: str, body: Optional[bytes],
                headers: Optional[Dict[str, str]]) -> bytes:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}")
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")

    async def _read_body(self, reader: asyncio.StreamReader, headers: Dict[str, str]) -> bytes:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            parts = []
            while True:
                size_line = await reader.readuntil(b"\r\n")
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    while (await reader.readuntil(b"\r\n")) != b"\r\n":
                        pass
                    return b"".join(parts)
                parts.append(await reader.readexactly(size))
                await reader.readexactly(2)
        if "content-length" in headers:
            return await reader.readexactly(int(headers["content-length"]))
        return await reader.read()

    async def _exchange(self, conn: Connection, data: bytes) -> Tuple[Answer, bool]:
        conn.writer.write(data)
        await conn.writer.drain()
        head = await conn.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        status = int(rest.split(" ", 1)[0])
        headers: Dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        body = await self._read_body(conn.reader, headers)
        keep = (version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
                and ("content-length" in headers or "chunked" in headers.get(
                    "transfer-encoding", "").lower()))
        return Answer(status, headers, body), keep

    async def request(self, method: str, path: str, body: Optional[bytes] = None,
                      headers: Optional[Dict[str, str]] = None,
                      timeout: float = REQUEST_GUARD_S) -> Answer:
        """One request; raises HttpError when there is no complete answer."""
        try:
            conn = await self._acquire()
        except OSError as e:
            raise HttpError(f"connect: {e!r}") from None
        try:
            answer, keep = await asyncio.wait_for(
                self._exchange(conn, self._encode(method, path, body, headers)), timeout)
        except asyncio.TimeoutError:
            conn.close()
            raise HttpError(f"no answer within {timeout:g} s") from None
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ValueError, IndexError) as e:
            conn.close()
            raise HttpError(f"{type(e).__name__}: {e}") from None
        self._release(conn, keep)
        return answer


# --------------------------------------------------------------------------------------------
# The requests of the mix

ENTERPRISE_ROOT = json.loads((REPO / "examples" / "enterprise.json").read_text())["root"]

TWO_LEAVES = {
    "id": "root", "type": "portfolio", "children": [
        {"id": "a", "type": "leaf", "frequency": {"type": "bernoulli", "p": 0.3},
         "severity": {"type": "lognormal", "lower": 1000, "upper": 50000}},
        {"id": "b", "type": "leaf", "frequency": {"type": "poisson", "lambda": 2},
         "severity": {"type": "pert", "min": 0, "mode": 100, "max": 1000},
         "controls": [{"type": "deductible", "amount": 10}]},
    ]}

FIVE_LEAVES = {
    "id": "firm", "type": "portfolio", "children": [
        {"id": "it", "type": "portfolio", "children": [
            {"id": "breach", "type": "leaf", "frequency": {"type": "bernoulli", "p": 0.1},
             "severity": {"type": "lognormal", "lower": 100000, "upper": 5000000}},
            {"id": "outage", "type": "leaf", "frequency": {"type": "poisson", "lambda": 1.2},
             "severity": {"type": "metalog", "percentiles": [0.1, 0.5, 0.9],
                          "quantiles": [5000, 40000, 300000], "lower": 0},
             "controls": [{"type": "deductible", "amount": 10000}]}]},
        {"id": "ops", "type": "portfolio", "children": [
            {"id": "fraud", "type": "leaf", "frequency": {"type": "poisson", "lambda": 0.4},
             "severity": {"type": "uniform", "min": 1000, "max": 90000}},
            {"id": "fire", "type": "leaf", "frequency": {"type": "bernoulli", "p": 0.02},
             "severity": {"type": "pert", "min": 1e5, "mode": 1e6, "max": 2e7},
             "controls": [{"type": "insurance", "deductible": 250000, "limit": 5000000}]},
            {"id": "fines", "type": "leaf", "frequency": {"type": "poisson", "lambda": 0.1},
             "severity": {"type": "constant", "value": 75000}}]},
    ]}

TREES = (("two", TWO_LEAVES), ("enterprise", ENTERPRISE_ROOT), ("five", FIVE_LEAVES))


class Mix:
    """Chooses operations and builds their requests, from one seeded random generator."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.kinds = [k for k, _ in MIX]
        self.weights = [w for _, w in MIX]

    def pick(self) -> str:
        return self.rng.choices(self.kinds, self.weights)[0]

    def request(self, trials_choices: Sequence[int], label: str) -> Tuple[bytes, int, int]:
        """(body, trials, seed) of a request of one of the trees."""
        name, root = self.rng.choice(TREES)
        trials = self.rng.choice(trials_choices)
        seed = self.rng.randrange(0, 10 ** 8)
        doc = {"name": f"load {label} {name}", "trials": trials, "seed": seed,
               "quantiles": [0.5, 0.9, 0.99], "root": root}
        return json.dumps(doc, separators=(",", ":")).encode(), trials, seed


def fingerprint(result: Msg) -> Tuple[object, ...]:
    """What identifies a result: its id, trials, seed and root figures."""
    root = result["nodes"][0]
    return (result.get("id"), result.get("trials"), result.get("seed"), len(result["nodes"]),
            root.get("mean"), root.get("max"), json.dumps(root.get("quantiles"), sort_keys=True))


# --------------------------------------------------------------------------------------------
# What happened


class Ledger:
    """Counts, errors with examples, and every job submitted with what became of it."""

    def __init__(self) -> None:
        self.requests: collections.Counter = collections.Counter()
        self.ops: collections.Counter = collections.Counter()
        self.ops_started: collections.Counter = collections.Counter()
        self.errors: collections.Counter = collections.Counter()
        self.examples: Dict[str, List[str]] = collections.defaultdict(list)
        self.sync_ids: Set[str] = set()
        self.async_submitted: Set[str] = set()
        self.async_accounted: Set[str] = set()
        self.recent: Deque[Tuple[str, Tuple[object, ...]]] = collections.deque(maxlen=RECENT_JOBS)
        self.streams = 0
        self.events_streamed = 0
        self.events_polled = 0
        self.waiters_full: collections.Counter = collections.Counter()
        self.phase = "start"

    def error(self, category: str, detail: str) -> None:
        key = f"{self.phase}/{category}"
        self.errors[key] += 1
        if len(self.examples[key]) < EXAMPLES_PER_ERROR:
            self.examples[key].append(detail)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def remember(self, job_id: str, fp: Tuple[object, ...]) -> None:
        self.recent.append((job_id, fp))


class Run:
    """Everything an operation needs: the HTTP pool, the URLs, the mix and the ledger."""

    def __init__(self, port: int, ws_base: str, mix: Mix, ledger: Ledger,
                 inject: Optional[str]):
        self.http = HttpPool("127.0.0.1", port)
        self.base = serve.BASE_PATH
        self.ws_base = ws_base
        self.mix = mix
        self.ledger = ledger
        self.inject = inject
        self.injected = False
        self.daemons: Dict[str, int] = {}

    def inject_once(self, fault: str) -> bool:
        """True exactly once when --inject fault was given."""
        if self.inject == fault and not self.injected:
            self.injected = True
            return True
        return False

    async def call(self, kind: str, method: str, path: str, expect: int,
                   body: Optional[bytes] = None, timeout: float = REQUEST_GUARD_S
                   ) -> Optional[Answer]:
        """One request counted under kind; any answer but expect (or none) is an error and
        returns None."""
        headers = {"Content-Type": "application/json"} if body is not None else None
        try:
            answer = await self.http.request(method, self.base + path, body, headers, timeout)
        except HttpError as e:
            self.ledger.error(f"{kind}: connection", f"{method} {path}: {e}")
            return None
        if answer.status != expect or (kind == "sync" and self.inject_once("status")):
            self.ledger.error(f"{kind}: HTTP {answer.status}",
                              f"{method} {path}: {answer.status} {answer.body[:300]!r}")
            return None
        self.ledger.requests[kind] += 1
        return answer

    def parse(self, kind: str, answer: Answer) -> Optional[Any]:
        try:
            return answer.json()
        except ValueError as e:
            self.ledger.error(f"{kind}: not JSON", f"{e}: {answer.body[:200]!r}")
            return None

    async def call_json(self, kind: str, method: str, path: str, expect: int,
                        body: Optional[bytes] = None) -> Tuple[Optional[Answer], Optional[Any]]:
        """call() and parse(): (the answer, its JSON); the JSON is None when there is no
        good answer or it is not JSON (the error is recorded)."""
        answer = await self.call(kind, method, path, expect, body)
        return answer, (self.parse(kind, answer) if answer is not None else None)


# --------------------------------------------------------------------------------------------
# The operations


async def op_sync(run: Run) -> bool:
    body, trials, seed = run.mix.request(SYNC_TRIALS, "sync")
    answer, result = await run.call_json("sync", "POST", "/simulations", 200, body)
    if answer is None or result is None:
        return False
    job_id = result.get("id")
    location = answer.headers.get("location", "")
    problems = []
    if result.get("status") != "completed" or result.get("trials") != trials \
            or result.get("seed") != seed:
        problems.append(f"status/trials/seed {result.get('status')}/{result.get('trials')}/"
                        f"{result.get('seed')}, expected completed/{trials}/{seed}")
    if not job_id or location != f"{run.base}/simulations/{job_id}":
        problems.append(f"id {job_id!r} and Location {location!r} do not match")
    if problems:
        run.ledger.error("sync: bad result", "; ".join(problems))
        return False
    run.ledger.sync_ids.add(job_id)
    run.ledger.remember(job_id, fingerprint(result))
    return True


async def op_get(run: Run) -> bool:
    if not run.ledger.recent:
        return await op_sync(run)
    job_id, expected = run.mix.rng.choice(run.ledger.recent)
    _, job = await run.call_json("get", "GET", f"/simulations/{job_id}", 200)
    if job is None:
        return False
    result = job.get("result")
    got = fingerprint(result) if isinstance(result, dict) else None
    if job.get("status") != "completed" or got != expected:
        run.ledger.error("get: not the stored result", f"{job_id}: status {job.get('status')}, "
                         f"result {got}, expected {expected}")
        return False
    return True


async def submit(run: Run, label: str) -> Optional[Tuple[str, int]]:
    """POST /simulations/async; (job id, trials) once accepted."""
    body, trials, _ = run.mix.request(ASYNC_TRIALS, label)
    _, doc = await run.call_json("async submit", "POST", "/simulations/async", 202, body)
    if doc is None:
        return None
    job_id = doc.get("id") if isinstance(doc, dict) else None
    if not isinstance(job_id, str) or not job_id:
        run.ledger.error("async submit: no job id", brief(doc))
        return None
    if run.inject_once("lose-job"):
        return None
    run.ledger.async_submitted.add(job_id)
    # The contract (API.md section 3): 202 {id, status: "queued", ...}. A deviation is an
    # error, but the job was accepted: it is still followed and accounted for.
    if doc.get("status") != "queued":
        run.ledger.error(f"async submit: 202 with status {doc.get('status')!r}, not 'queued'",
                         brief(doc))
    if doc.get("trials") != trials:
        run.ledger.error("async submit: wrong trials", f"{trials} submitted: {brief(doc)}")
    return job_id, trials


async def op_poll(run: Run) -> bool:
    submitted = await submit(run, "poll")
    if submitted is None:
        return False
    job_id, trials = submitted
    events: List[Msg] = []
    after = 0
    deadline = now() + STREAM_GUARD_S
    while not (events and events[-1].get("type") in TERMINAL):
        if now() > deadline:
            run.ledger.error("poll: no end", f"{job_id}: no terminal event within "
                             f"{STREAM_GUARD_S:g} s; got {[e.get('type') for e in events]}")
            return False
        answer, doc = await run.call_json(
            "events poll", "GET", f"/simulations/{job_id}/events?after={after}"
            f"&wait={LONG_POLL_WAIT_S}", 200)
        if answer is None or doc is None:
            return False
        got = doc.get("events") or []
        if got and run.inject_once("dup-event"):
            got = got + got[-1:]
        events += got
        after = int(doc.get("next", after))
        if not got and "retry-after" in answer.headers:
            run.ledger.waiters_full[run.ledger.phase] += 1
            await asyncio.sleep(float(answer.headers["retry-after"]))
    run.ledger.events_polled += len(events)
    return await account(run, job_id, trials, events, "poll")


async def op_stream(run: Run) -> bool:
    submitted = await submit(run, "stream")
    if submitted is None:
        return False
    job_id, trials = submitted
    url = f"{run.ws_base}/simulations/{job_id}/stream"
    try:
        messages, code, reason = await asyncio.wait_for(read_stream(url), STREAM_GUARD_S)
    except asyncio.TimeoutError:
        run.ledger.error("stream: no end", f"{url}: not closed within {STREAM_GUARD_S:g} s")
        return False
    except (OSError, websockets.exceptions.WebSocketException) as e:
        run.ledger.error("stream: connection", f"{url}: {e!r}")
        return False
    run.ledger.requests["stream"] += 1
    run.ledger.streams += 1
    events = stream_events(run, job_id, messages, code, reason)
    if events is None:
        return False
    if run.inject_once("drop-event") and len(events) > 2:
        del events[1]
    run.ledger.events_streamed += len(events)
    return await account(run, job_id, trials, events, "stream")


async def read_stream(url: str) -> Tuple[List[Msg], Optional[int], str]:
    """Every message of one WebSocket connection until the bridge closes it."""
    messages: List[Msg] = []
    async with websockets.connect(url, max_size=None, ping_interval=None, open_timeout=60,
                                  close_timeout=10) as ws:
        try:
            async for data in ws:
                if isinstance(data, bytes):
                    messages.append({"_binary": data.hex()})
                    continue
                try:
                    msg = json.loads(data)
                except ValueError:
                    msg = {"_text": data}
                messages.append(msg if isinstance(msg, dict) else {"_json": msg})
        except websockets.exceptions.ConnectionClosedError:
            pass  # not 1000/1001: the code is checked below
        return messages, ws.close_code, ws.close_reason


def stream_events(run: Run, job_id: str, messages: List[Msg], code: Optional[int],
                  reason: str) -> Optional[List[Msg]]:
    """The events of a stream after its opening status; None (an error recorded) when the
    stream is not: the opening status, events and heartbeats, then the close 1000."""
    problems = []
    if (code, reason) != (1000, "job completed"):
        problems.append(f"closed {code} {reason!r}, expected 1000 'job completed'")
    if not messages or messages[0].get("type") != "status" or messages[0].get("jobId") != job_id:
        problems.append(f"the first message is not the opening status: "
                        f"{brief(messages[0]) if messages else 'none'}")
    events = [m for m in messages[1:] if "seq" in m]
    others = [m for m in messages[1:] if "seq" not in m and m.get("type") != "heartbeat"]
    if others:
        problems.append(f"unexpected messages: {brief(others[0])}")
    if problems:
        run.ledger.error("stream: bad stream", f"{job_id}: " + "; ".join(problems))
        return None
    return events


def sequence_problems(job_id: str, events: List[Msg], trials: int) -> List[str]:
    """What is wrong with a job's events as one client received them (empty when nothing):
    seqs strictly increasing, all of the job, queued -> running -> progress* -> complete,
    progress never going back."""
    problems = []
    seq_list = [e.get("seq") for e in events]
    if any(not isinstance(s, int) for s in seq_list) or any(
            b <= a for a, b in zip(seq_list, seq_list[1:])):
        problems.append(f"seqs not strictly increasing: {seq_list}")
    if any(e.get("jobId") != job_id for e in events):
        problems.append("an event of another job")
    kinds = [e.get("type") if e.get("type") != "status" else f"status:{e.get('status')}"
             for e in events]
    middle = kinds[2:-1]
    if kinds[:2] != ["status:queued", "status:running"] or kinds[-1:] != ["complete"] \
            or any(k != "progress" for k in middle):
        problems.append(f"event order {kinds}")
    done = [e.get("trialsDone", -1) for e in events if e.get("type") == "progress"]
    if any(b < a for a, b in zip(done, done[1:])) or any(d > trials for d in done):
        problems.append(f"progress trialsDone {done} of {trials}")
    return problems


async def all_events(run: Run, job_id: str) -> Optional[List[Msg]]:
    """Every event of a finished job from the polling endpoint, page by page."""
    out: List[Msg] = []
    after = 0
    while True:
        _, doc = await run.call_json("events all", "GET",
                                     f"/simulations/{job_id}/events?after={after}", 200)
        if doc is None:
            return None
        page = doc.get("events") or []
        out.extend(page)
        if len(page) < EVENTS_PAGE:
            return out
        after = int(doc["next"])


async def account(run: Run, job_id: str, trials: int, received: List[Msg], how: str) -> bool:
    """The accounting of one async job once its client saw its end: the received events are
    well formed and exactly the job's events, and the job's result is fetchable and is the one
    its complete event carried."""
    problems = sequence_problems(job_id, received, trials)
    _, job = await run.call_json("job get", "GET", f"/simulations/{job_id}", 200)
    listed = await all_events(run, job_id)
    if job is None or listed is None:
        return False  # the error is recorded
    result = job.get("result")
    if job.get("status") != "completed" or not isinstance(result, dict) \
            or result.get("id") != job_id or result.get("trials") != trials:
        problems.append(f"job {brief(job)}")
    elif received and received[-1].get("type") == "complete" and isinstance(
            received[-1].get("result"), dict) and fingerprint(received[-1]["result"]) \
            != fingerprint(result):
        problems.append("the complete event's result is not the stored result")
    if received != listed:
        problems.append(f"received seqs {[e.get('seq') for e in received]} but the job's events "
                        f"are {[e.get('seq') for e in listed]}")
    if problems:
        run.ledger.error(f"{how}: job not accounted for", f"{job_id}: " + "; ".join(problems))
        return False
    run.ledger.async_accounted.add(job_id)
    run.ledger.remember(job_id, fingerprint(result))
    return True


OPERATIONS: Dict[str, Callable[[Run], Any]] = {
    "sync": op_sync, "poll": op_poll, "stream": op_stream, "get": op_get}


async def operation(run: Run, kind: str) -> None:
    """One operation; an exception nobody expected is an error too (with its type)."""
    run.ledger.ops_started[kind] += 1
    try:
        ok = await OPERATIONS[kind](run)
    except Exception as e:  # noqa: BLE001 - counted and shown, never swallowed silently
        run.ledger.error(f"{kind}: exception", f"{type(e).__name__}: {e}")
        ok = False
    if ok:
        run.ledger.ops[kind] += 1


# --------------------------------------------------------------------------------------------
# The phases


class PhaseFigures:
    """Operations and requests completed, and client CPU, over one phase."""

    def __init__(self, ledger: Ledger, daemons: Dict[str, int]):
        self.ledger = ledger
        self.daemons = daemons
        self.t0 = now()
        self.cpu0 = cpu_seconds()
        self.machine0 = machine_ticks()
        self.daemon0 = {name: process_ticks(pid) for name, pid in daemons.items()}
        self.machine_pct = 0.0
        self.daemon_pct: Dict[str, float] = {}
        self.ops0 = sum(ledger.ops.values())
        self.req0 = sum(ledger.requests.values())
        self.seconds = 0.0
        self.ops = 0
        self.requests = 0
        self.cpu_pct = 0.0

    def end(self, seconds: Optional[float] = None) -> "PhaseFigures":
        self.seconds = seconds if seconds is not None else now() - self.t0
        self.ops = sum(self.ledger.ops.values()) - self.ops0
        self.requests = sum(self.ledger.requests.values()) - self.req0
        elapsed = max(now() - self.t0, 1e-9)
        self.cpu_pct = 100.0 * (cpu_seconds() - self.cpu0) / elapsed
        busy, total = machine_ticks()
        self.machine_pct = 100.0 * (os.cpu_count() or 1) * (busy - self.machine0[0]) / max(
            total - self.machine0[1], 1)
        hz = os.sysconf("SC_CLK_TCK")
        for name, pid in self.daemons.items():
            before, after = self.daemon0.get(name), process_ticks(pid)
            if before is not None and after is not None:
                self.daemon_pct[name] = 100.0 * (after - before) / hz / elapsed
        return self

    def print_cpu(self, phase: str) -> None:
        figure(f"{phase}_generator_cpu_pct", self.cpu_pct)
        figure(f"{phase}_machine_cpu_pct", self.machine_pct)
        for name, pct in self.daemon_pct.items():
            figure(f"{phase}_cpu_pct_{name}", pct)
        note(f"{phase}: CPU in % of one CPU; the machine has {os.cpu_count()} "
             f"(load average now {load_average()})")

    @property
    def ops_rate(self) -> float:
        return self.ops / max(self.seconds, 1e-9)

    @property
    def request_rate(self) -> float:
        return self.requests / max(self.seconds, 1e-9)


async def closed_loop(run: Run, seconds: float, users: int) -> PhaseFigures:
    """users clients, each doing one operation after another, for seconds; the operations
    completed within the window give the capacity. Then waits for the last ones."""
    fig = PhaseFigures(run.ledger, run.daemons)
    stop = now() + seconds
    at_stop: Dict[str, float] = {}

    async def user() -> None:
        while now() < stop:
            await operation(run, run.mix.pick())

    async def mark() -> None:
        await asyncio.sleep(seconds)
        fig.end(seconds)
        at_stop["cpu"] = fig.cpu_pct
    marker = asyncio.ensure_future(mark())
    tasks = [asyncio.ensure_future(user()) for _ in range(users)]
    done, pending = await asyncio.wait(tasks, timeout=seconds + DRAIN_GUARD_S)
    await marker
    for task in pending:
        task.cancel()
        run.ledger.error("calibration: hang", "an operation did not end within "
                         f"{DRAIN_GUARD_S:g} s after the calibration")
    return fig


async def open_loop(run: Run, rate: float, seconds: float, report_every: float) -> \
        Tuple[PhaseFigures, Set["asyncio.Task[None]"], float]:
    """Starts operations as a Poisson process of rate per second for seconds, without waiting
    for them; returns the figures, the operations still running and the largest lag of the
    arrivals behind their schedule (seconds)."""
    fig = PhaseFigures(run.ledger, run.daemons)
    tasks: Set[asyncio.Task] = set()
    start = now()
    due = start
    max_lag = 0.0
    next_report = start + report_every
    while True:
        due += run.mix.rng.expovariate(rate)
        if due >= start + seconds:
            break
        delay = due - now()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            max_lag = max(max_lag, -delay)
        task = asyncio.ensure_future(operation(run, run.mix.pick()))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        if len(tasks) > MAX_IN_FLIGHT:
            run.ledger.error("steady: backlog", f"{len(tasks)} operations in flight: the "
                             "service fell far behind the offered rate")
            break
        if now() >= next_report:
            next_report += report_every
            note(f"steady: {now() - start:.0f} s, {sum(run.ledger.ops.values())} operations "
                 f"done, {len(tasks)} in flight, {run.ledger.error_count} errors")
    await asyncio.sleep(max(0.0, start + seconds - now()))
    fig.end(seconds)
    return fig, tasks, max_lag


async def drain(run: Run, tasks: Set["asyncio.Task[None]"]) -> None:
    """Waits for the operations still running (each ends by itself: answers or guards)."""
    if not tasks:
        return
    _, pending = await asyncio.wait(set(tasks), timeout=DRAIN_GUARD_S)
    for task in pending:
        task.cancel()
    if pending:
        run.ledger.error("drain: hang", f"{len(pending)} operations still running "
                         f"{DRAIN_GUARD_S:g} s after the load stopped")


# --------------------------------------------------------------------------------------------
# Sampling the daemons


class Sampler:
    """Samples the RSS of each daemon every SAMPLE_EVERY_S and the WAL size every
    WAL_SAMPLE_EVERY_S (each RSS sample carries the largest WAL size seen since the last)."""

    def __init__(self, daemons: Dict[str, int], wal_path: Path, ledger: Ledger):
        self.daemons = dict(daemons)
        self.wal_path = wal_path
        self.ledger = ledger
        self.samples: List[Tuple[float, str, Dict[str, Optional[int]], int]] = []
        self.wal_max = 0
        self._wal_window = 0

    def sample_rss(self) -> None:
        rss = {name: rss_kib(pid) for name, pid in self.daemons.items()}
        self.samples.append((now(), self.ledger.phase, rss, self._wal_window))
        self._wal_window = 0

    def sample_wal(self) -> None:
        size = file_size(self.wal_path)
        self._wal_window = max(self._wal_window, size)
        self.wal_max = max(self.wal_max, size)

    async def run(self, pool: HttpPool) -> None:
        next_rss = now()
        while True:
            self.sample_wal()
            if now() >= next_rss:
                self.sample_rss()
                pool.sweep()
                next_rss += SAMPLE_EVERY_S
            await asyncio.sleep(WAL_SAMPLE_EVERY_S)

    def steady(self) -> List[Tuple[float, str, Dict[str, Optional[int]], int]]:
        return [s for s in self.samples if s[1] == "steady"]


def thirds(values: List[int]) -> Tuple[List[int], List[int], List[int]]:
    """The samples after the warm-up (the first WARMUP_SHARE), in three thirds."""
    rest = values[int(math.ceil(len(values) * WARMUP_SHARE)):]
    n = len(rest)
    return rest[:n // 3], rest[n // 3:2 * n // 3], rest[2 * n // 3:]


def span(values: List[int]) -> str:
    return f"{min(values)}..{max(values)}" if values else "-"


def rss_checks(sampler: Sampler, inject: Optional[str]) -> List[str]:
    """Prints the RSS summary per daemon and third; returns the failures."""
    failures = []
    steady = sampler.steady()
    for i, name in enumerate(sampler.daemons):
        values = [s[2][name] for s in steady]
        if any(v is None for v in values) or not values:
            failures.append(f"{name}: the process was gone during the steady load")
            continue
        vals = [int(v) for v in values if v is not None]
        first, middle, last = thirds(vals)
        if inject == "rss" and i == 0 and last:
            last = [v + 64 * 1024 for v in last]
        figure(f"rss_kib_first_{name}", vals[0])
        figure(f"rss_kib_last_{name}", vals[-1])
        note(f"RSS {name} (KiB, min..max per third after the warm-up): {span(first)} | "
             f"{span(middle)} | {span(last)}")
        if not first or not last:
            failures.append(f"{name}: too few RSS samples ({len(vals)}) to judge")
            continue
        limit = max(first) * RSS_FACTOR + RSS_SLACK_KIB
        if max(last) > limit:
            failures.append(f"{name}: RSS grew: the last third reached {max(last)} KiB, above "
                            f"{RSS_FACTOR} x {max(first)} + {RSS_SLACK_KIB} = {limit:.0f} KiB")
    return failures


def wal_checks(sampler: Sampler, bound: int, inject: Optional[str]) -> List[str]:
    steady = [s[3] for s in sampler.steady()]
    first, middle, last = thirds(steady)
    wal_max = sampler.wal_max
    if inject == "wal":
        wal_max = bound
    note(f"WAL (bytes, min..max per third after the warm-up): {span(first)} | {span(middle)} | "
         f"{span(last)}")
    figure("wal_max_bytes", wal_max)
    figure("wal_bound_bytes", bound)
    if wal_max >= bound:
        return [f"the WAL reached {wal_max} bytes, at or above the bound {bound} (SQLite's "
                "backstop checkpoint; see the docstring)"]
    return []


# --------------------------------------------------------------------------------------------
# The end of the run: accounting over the API


async def list_jobs(run: Run) -> Optional[Dict[str, str]]:
    """Every job the API lists (id -> status), page by page."""
    jobs: Dict[str, str] = {}
    path = "/simulations?limit=1000"
    while True:
        _, doc = await run.call_json("list", "GET", path, 200)
        if doc is None:
            return None
        for job in doc.get("jobs", []):
            jobs[job["id"]] = job["status"]
        if not doc.get("next"):
            return jobs
        path = f"/simulations?limit=1000&before={doc['next']}"


async def server_metrics(run: Run) -> Optional[Dict[str, float]]:
    answer = await run.call("metrics", "GET", "/metrics", 200)
    if answer is None:
        return None
    return ws_suite.parse_metrics(answer.body.decode("utf-8", "replace"))


async def accounting(run: Run) -> List[str]:
    """The job counts: every job listed was submitted and completed, and the reverse."""
    led = run.ledger
    failures = []
    figure("jobs_submitted", len(led.async_submitted))
    figure("jobs_accounted", len(led.async_accounted))
    figure("sync_jobs_stored", len(led.sync_ids))
    missing = led.async_submitted - led.async_accounted
    if missing:
        failures.append(f"{len(missing)} async jobs not accounted for, e.g. "
                        f"{sorted(missing)[:5]}")
    listed = await list_jobs(run)
    metrics = await server_metrics(run)
    if listed is None or metrics is None:
        return failures + ["the job list or /metrics could not be read at the end"]
    expected = led.sync_ids | led.async_submitted
    figure("jobs_listed", len(listed))
    extra, absent = set(listed) - expected, expected - set(listed)
    if extra or absent:
        failures.append(f"the API lists {len(listed)} jobs for {len(expected)} submitted: "
                        f"{len(extra)} unknown (e.g. {sorted(extra)[:3]}), {len(absent)} "
                        f"missing (e.g. {sorted(absent)[:3]})")
    not_done = collections.Counter(s for s in listed.values() if s != "completed")
    if not_done:
        failures.append(f"listed jobs not completed: {dict(not_done)}")
    states = {k[len('risksim_jobs{state="'):-2]: v for k, v in metrics.items()
              if k.startswith("risksim_jobs{state=")}
    if states.get("completed") != len(expected) or any(
            v for k, v in states.items() if k != "completed"):
        failures.append(f"/metrics jobs by state {states}, expected {len(expected)} completed")
    bad_status = {k: v for k, v in metrics.items() if k.startswith("risksim_http_requests_total")
                  and re.search(r'status="[45]\d\d"', k) and v}
    if bad_status:
        failures.append(f"the responder counted error answers: {bad_status}")
    figure("sqlite_busy_retries", int(metrics.get("risksim_sqlite_busy_retries_total", 0)))
    return failures


# --------------------------------------------------------------------------------------------
# The service


def db_accounting(db_path: Path, expected: Set[str]) -> List[str]:
    """The same count straight from the SQLite file, once every daemon has stopped: its jobs
    are exactly the jobs submitted, all completed."""
    try:
        rows = dict(relcommon.db_query(db_path, "SELECT id, state FROM jobs"))
    except sqlite3.Error as e:
        return [f"the job store could not be read after the stop: {e}"]
    figure("jobs_in_db", len(rows))
    failures = []
    if set(rows) != expected:
        failures.append(f"the job store holds {len(rows)} jobs for {len(expected)} submitted "
                        f"({len(set(rows) - expected)} unknown, {len(expected - set(rows))} "
                        "missing)")
    not_done = collections.Counter(v for v in rows.values() if v != "completed")
    if not_done:
        failures.append(f"jobs in the job store not completed: {dict(not_done)}")
    return failures


def start_site(fcgi_procs: int) -> ws_suite.BridgeSite:
    """The site, in the state directory that run_main() gave test_http.OPTIONS."""
    site = ws_suite.BridgeSite("load", dict(SERVER_OVERRIDES), fcgi_procs)
    return site.start()


def daemons_of(site: ws_suite.BridgeSite) -> Dict[str, int]:
    """name -> pid of every daemon whose memory is sampled."""
    assert site.web is not None and site.bridge is not None
    out = {f"fcgi{i}": pid for i, pid in enumerate(sorted(site.responder_pids()))}
    out["bridge"] = int(site.bridge.pid or 0)
    out["lighttpd" if isinstance(site.web, serve.Lighttpd) else "apache2"] = int(
        site.web.pid or 0)
    return out


def log_findings(site: ws_suite.BridgeSite) -> Tuple[List[str], List[str]]:
    """(error-level lines, warn-level lines) the daemons wrote."""
    errors: List[str] = []
    warnings: List[str] = []
    log_dir = site.log_dir()
    for path in sorted(log_dir.iterdir()) if log_dir.is_dir() else []:
        if not path.is_file():
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                m = LOG_LEVEL_RE.search(line)
                if m:
                    (errors if m.group(1) == "error" else warnings).append(
                        f"{path.name}: {line.strip()}")
    return errors, warnings


def stop_site(site: ws_suite.BridgeSite) -> List[str]:
    """Stops the bridge and the web server; the problems found (a bad exit of the bridge,
    sanitizer reports in any log)."""
    try:
        return site.stop()
    except Exception as e:  # noqa: BLE001 - reported as a failure
        return [f"stopping the service failed: {e!r}"]


# --------------------------------------------------------------------------------------------
# The whole run


async def load(run: Run, site: ws_suite.BridgeSite, args: argparse.Namespace,
               timing: Dict[str, float]) -> Tuple[List[str], Sampler]:
    led = run.ledger
    daemons = daemons_of(site)
    run.daemons = daemons
    note("daemons: " + ", ".join(f"{k} pid {v}" for k, v in daemons.items()))
    assert site.state_dir is not None
    db_path = site.state_dir / "risksim.db"
    sampler = Sampler(daemons, Path(str(db_path) + "-wal"), led)
    sampling = asyncio.ensure_future(sampler.run(run.http))
    failures: List[str] = []
    try:
        led.phase = "calibrate"
        note(f"calibration: {CALIBRATION_USERS} closed-loop clients for "
             f"{timing['calibrate_s']:g} s")
        cal = await closed_loop(run, timing["calibrate_s"], CALIBRATION_USERS)
        capacity = cal.ops_rate
        figure("capacity_rps", capacity)
        figure("capacity_http_rps", cal.request_rate)
        cal.print_cpu("calibration")
        if cal.cpu_pct > 85.0:
            note(f"the client used {cal.cpu_pct:.0f}% of a CPU during the calibration: the "
                 "capacity may be the client's, not the service's")
        if capacity <= 0:
            return ["the calibration completed no operation"], sampler
        rate = capacity * LOAD_FRACTION
        led.phase = "steady"
        note(f"steady: Poisson arrivals at {rate:.1f} operations/s "
             f"({LOAD_FRACTION:.0%} of {capacity:.1f}) for {timing['steady_s']:g} s")
        steady, tasks, max_lag = await open_loop(
            run, rate, timing["steady_s"], 10.0 if timing["steady_s"] <= 60 else 60.0)
        figure("duration_s", steady.seconds)
        figure("offered_rps", rate)
        figure("achieved_rps", steady.ops_rate)
        figure("steady_http_rps", steady.request_rate)
        steady.print_cpu("steady")
        figure("generator_max_lag_ms", max_lag * 1000.0)
        led.phase = "drain"
        await drain(run, tasks)
        failures += rss_checks(sampler, args.inject)
        failures += wal_checks(sampler, wal_bound(db_path), args.inject)
        led.phase = "accounting"
        failures += await accounting(run)
        after = daemons_of(site)
        if after != daemons or any(rss_kib(pid) is None for pid in daemons.values()):
            failures.append(f"a daemon restarted or exited: before {daemons}, now {after}")
    finally:
        sampling.cancel()
        run.http.close()
    return failures, sampler


def print_counts(led: Ledger) -> None:
    mix = ", ".join(f"{k} {w:.0%}" for k, w in MIX)
    note(f"mix by operations: {mix}")
    for kind, _ in MIX:
        figure(f"ops_{kind}", led.ops[kind])
    for kind in sorted(led.requests):
        figure(f"requests_{kind.replace(' ', '_')}", led.requests[kind])
    figure("streams", led.streams)
    figure("events_streamed", led.events_streamed)
    figure("events_polled", led.events_polled)
    for phase in ("calibrate", "steady", "drain"):
        figure(f"long_polls_answered_at_once_{phase}", led.waiters_full[phase])
    figure("errors", led.error_count)


def print_errors(led: Ledger) -> List[str]:
    failures = []
    for key, count in sorted(led.errors.items()):
        failures.append(f"{count} x {key}")
        note(f"error: {count} x {key}")
        for example in led.examples[key]:
            print(f"    e.g. {example}", flush=True)
    return failures


def main_load(args: argparse.Namespace, root: Path) -> None:
    """The run: calibration, steady load, the checks; raises Failure with every failure."""
    timing = dict(LONG if args.long else SHORT)
    if args.duration is not None:
        timing["steady_s"] = float(args.duration)
    build = Path(args.build)
    note(f"{args.server}, build {build}, state {root}, seed {args.seed}, "
         f"calibration {timing['calibrate_s']:g} s, steady {timing['steady_s']:g} s"
         + (f", injecting: {INJECTIONS[args.inject]}" if args.inject else ""))
    failures: List[str] = []
    site: Optional[ws_suite.BridgeSite] = None
    started = now()
    led = Ledger()
    loaded = False
    try:
        site = start_site(args.fcgi_procs)
        assert site.web is not None
        run = Run(site.web.port, site.web.ws_url, Mix(args.seed), led, args.inject)
        failures, _ = asyncio.run(load(run, site, args, timing))
        loaded = True
        print_counts(led)
        failures += print_errors(led)
        log_errors, log_warnings = log_findings(site)
        figure("log_warnings", len(log_warnings))
        for line in log_warnings[:EXAMPLES_PER_ERROR]:
            note(f"warning in the logs: {line}")
        if log_errors:
            failures.append(f"{len(log_errors)} error lines in the daemons' logs, e.g. "
                            + "; ".join(log_errors[:3]))
    except (serve.ServeError, OSError, RuntimeError) as e:
        failures.append(f"the run could not be completed: {e}")
    finally:
        if site is not None:
            failures += stop_site(site)
            if loaded and site.state_dir is not None:
                failures += db_accounting(site.state_dir / "risksim.db",
                                          led.sync_ids | led.async_submitted)
        figure("run_s", now() - started)
    if failures:
        raise Failure("\n      ".join(failures))


# --------------------------------------------------------------------------------------------
# --measure-generator: this client alone, against a stub server


class StubProtocol(asyncio.Protocol):
    """Answers every request at once: POST with the canned result, GET with a small body."""

    def __init__(self, big: bytes, small: bytes):
        self.big = big
        self.small = small
        self.buf = b""
        self.transport: Optional[asyncio.Transport] = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].decode("latin-1")
            m = re.search(r"(?im)^content-length:\s*(\d+)", head)
            length = int(m.group(1)) if m else 0
            if len(self.buf) < end + 4 + length:
                return
            self.buf = self.buf[end + 4 + length:]
            assert self.transport is not None
            self.transport.write(self.big if head.startswith("POST") else self.small)


def stub_server(port: int, big: bytes, small: bytes) -> None:
    """The stub (run in a child process): a keep-alive HTTP/1.1 server on 127.0.0.1:port."""
    def response(body: bytes) -> bytes:
        return (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                f"{len(body)}\r\n\r\n").encode() + body

    async def serve_forever() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: StubProtocol(response(big), response(small)),
                                          "127.0.0.1", port)
        async with server:
            await server.serve_forever()
    asyncio.run(serve_forever())


def canned_result(build: Path) -> bytes:
    """A real result of a sync-sized request, from the CLI (the same JSON writer)."""
    doc = {"name": "load stub", "trials": 5000, "seed": 7, "quantiles": [0.5, 0.9, 0.99],
           "root": ENTERPRISE_ROOT}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(doc, f)
    try:
        r = subprocess.run([str(build / "cli" / "risksim"), "simulate", "--progress", "never",
                            f.name], capture_output=True, check=True, timeout=60)
    finally:
        os.unlink(f.name)
    result = json.loads(r.stdout)
    result["id"] = "0" * 26
    return json.dumps(result, separators=(",", ":")).encode()


async def generator_rate(port: int, method: str, seconds: float, users: int) -> Tuple[float, float]:
    """(requests/s, client CPU %) of users closed-loop clients parsing every answer."""
    pool = HttpPool("127.0.0.1", port)
    body = json.dumps({"trials": 1000}).encode() if method == "POST" else None
    stop = now() + seconds
    count = 0

    async def user() -> None:
        nonlocal count
        while now() < stop:
            answer = await pool.request(method, "/x", body,
                                        {"Content-Type": "application/json"} if body else None)
            answer.json()
            count += 1
    cpu0, t0 = cpu_seconds(), now()
    await asyncio.gather(*(user() for _ in range(users)))
    elapsed = now() - t0
    pool.close()
    return count / elapsed, 100.0 * (cpu_seconds() - cpu0) / elapsed


def main_measure_generator(args: argparse.Namespace) -> int:
    import multiprocessing
    big = canned_result(Path(args.build).resolve())
    small = json.dumps({"status": "ok", "queueDepth": 0}).encode()
    port = serve.free_port()
    stub = multiprocessing.Process(target=stub_server, args=(port, big, small), daemon=True)
    stub.start()
    try:
        deadline = now() + 10
        while now() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        for label, method in (("sync_like", "POST"), ("small", "GET")):
            rate, cpu = asyncio.run(generator_rate(port, method, 5.0, CALIBRATION_USERS))
            figure(f"generator_alone_{label}_rps", rate)
            figure(f"generator_alone_{label}_cpu_pct", cpu)
        figure("generator_alone_answer_bytes_sync_like", len(big))
    finally:
        stub.terminate()
        stub.join(10)
    return 0


# --------------------------------------------------------------------------------------------


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = relcommon.parser(__doc__, "the long form: 30 s of calibration, 600 s of steady load",
                          keep_help="keep the state directory and logs",
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=None,
                    help="seconds of steady load (default 30, or 600 with --long)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the mix (default 1)")
    ap.add_argument("--fcgi-procs", type=int, default=1,
                    help="responder processes (default 1, as shipped)")
    ap.add_argument("--inject", choices=sorted(INJECTIONS), default=None,
                    help="make one check fail on purpose (the checks' own test)")
    ap.add_argument("--measure-generator", action="store_true",
                    help="measure this client alone against a stub server and exit")
    args = ap.parse_args(argv)
    if args.duration is not None and args.duration < 5:
        ap.error("--duration must be at least 5 seconds")
    if args.measure_generator:
        missing = relcommon.missing_prerequisite(Path(args.build), needs_websockets=True)
        return relcommon.fail(missing) if missing else main_measure_generator(args)

    def terminate(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")
    return relcommon.run_main(
        "load", args, main_load, needs_websockets=True,
        binaries=("fcgi/risksim-fcgi", "wsbridge/risksim-wsbridge"),
        programs=(relcommon.web_server_program(args.server),), on_sigterm=terminate)


if __name__ == "__main__":
    sys.exit(main())
