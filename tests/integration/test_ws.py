#!/usr/bin/python3
"""Integration tests of the WebSocket stream (docs/api.md sections 4, 5) through real web servers.

Why this file exists: browsers reach the bridge, risksim-wsbridge, only through the web server's
WebSocket proxy (lighttpd's mod_proxy or Apache's mod_proxy_http, configured by httpd-conf/),
while the responder writes the events the bridge reads from the shared SQLite file. Only the
whole chain shows whether a client really gets every event once, in order, with the documented
close codes, whatever it does: connecting late, resuming with `after`, reading slowly, sending
garbage, or meeting a bridge that is restarted under it. These tests start the shipped
configurations on loopback with scripts/serve.py (through tests/integration/test_http.py's Site),
run a real bridge on the web server's bridge port with the same configuration file, and drive
the stream with real WebSocket clients (the websockets library), and with plain sockets for what
a library will not do. The same suite runs against either server:

    /usr/bin/python3 tests/integration/test_ws.py --server lighttpd|apache --build BUILD_DIR \\
        [--keep] [unittest arguments, e.g. -v or a test name]

It needs Debian's python3-websockets, which is installed for the system interpreter only, hence
/usr/bin/python3 (bash scripts/deps.sh test installs it); without it the suite fails. Several
servers with different configurations are started, one per test class. Each class stops its
server and bridge when it is done and fails if a log holds a sanitizer report. Nothing here
asserts durations: timeouts only keep a broken service from hanging the suite.

Python 3 standard library and websockets only.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from pathlib import Path
from typing import (Any, Awaitable, Callable, Dict, Iterable, List, Mapping, Optional, Sequence,
                    Tuple, TypeVar, Union)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(HERE))

import serve  # noqa: E402
import test_http as http_suite  # noqa: E402  (its Site, its jobs and its options)

try:
    import websockets
    import websockets.exceptions
    WEBSOCKETS_MISSING: Optional[str] = None
except ImportError as import_error:  # reported by main(): the suite fails, it is not skipped
    websockets = None  # type: ignore[assignment]
    WEBSOCKETS_MISSING = str(import_error)

T = TypeVar("T")
Msg = Dict[str, Any]

# How long a condition may take before a test gives up (only to avoid hanging).
WAIT_S = 120.0

SECRET = "ws-integration-secret"
OPENING_KEYS = {"seq", "jobId", "type", "status", "progress", "trialsDone", "trials", "ts"}
DONE = (1000, "job completed")
CANCELLED = (1000, "job cancelled")
FAILED = (4000, "job failed")
NO_JOB = (4004, "no such job")
TS_RE = http_suite.TS_RE

# The bridge's resident memory must stay below this while a client reads nothing. A normal build
# runs in under 10 MiB and a sanitizer build in a few tens; the bound only has to catch memory that
# grows with what a stalled client has not read (the queue is bounded by session_queue messages).
BRIDGE_RSS_BOUND_KIB = 128 * 1024

# A client that reads nothing: a tiny receive buffer, and a tiny segment size so that the
# kernel's send buffer on the other end (sized from the segment size) stays small too. On
# loopback the default segment size is 64 KiB and the kernel alone would hold megabytes of
# events, so that the bridge's own queue would never fill.
SLOW_RCVBUF = 4096
SLOW_MSS = 536
# How many progress messages the bridge must have collapsed for such a client before the test
# lets the job end: enough to have recycled its queue (session_queue = 16) many times over.
SLOW_COLLAPSES = 200
# The job meanwhile: fast trials (about a hundred progress events a second with progress_ms = 10)
# and enough of them to last well beyond that; it is cancelled then.
SLOW_TRIALS = 50_000_000


# --------------------------------------------------------------------------------------------
# Small helpers


def wait_for(what: str, probe: Callable[[], Optional[T]], timeout: float = WAIT_S,
             describe: Callable[[], str] = lambda: "") -> T:
    return http_suite.wait_for(what, probe, timeout, interval=0.02, describe=describe)


def brief(msg: Msg) -> str:
    """One message as compact JSON, with a result shortened, for failure messages."""
    shown = dict(msg)
    if "result" in shown:
        shown["result"] = "…"
    text = json.dumps(shown, separators=(",", ":"))
    return text if len(text) <= 240 else text[:240] + "…"


def seqs(events: Iterable[Msg]) -> List[int]:
    return [int(e["seq"]) for e in events]


def rss_kib(pid: int) -> int:
    """The resident memory of process pid, from /proc/PID/status."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for process {pid}")


def parse_metrics(text: str) -> Dict[str, float]:
    """Prometheus text as {name{labels}: value}."""
    out: Dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


# --------------------------------------------------------------------------------------------
# What a WebSocket client received


class Received:
    """Every message one connection received, in order (parsed JSON), and how it ended."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.messages: List[Msg] = []
        self.bytes = 0  # text bytes received
        self.close_code: Optional[int] = None
        self.close_reason = ""
        self.ended = False

    def add(self, data: Union[str, bytes]) -> Msg:
        if isinstance(data, bytes):
            msg: Msg = {"_binary": data.hex()}
            self.bytes += len(data)
        else:
            self.bytes += len(data.encode())
            try:
                parsed = json.loads(data)
            except ValueError:
                parsed = {"_text": data}
            msg = parsed if isinstance(parsed, dict) else {"_json": parsed}
        self.messages.append(msg)
        return msg

    def parts(self) -> Tuple[Optional[Msg], Optional[Msg], List[Msg], List[Msg]]:
        """(reset, opening status, events, others) in the order of docs/api.md section 5: an
        optional reset first, then the opening status (a snapshot, not an event), then the
        events (messages with a seq); others are the messages without a seq that came after
        the opening (heartbeat, pong, error)."""
        reset = opening = None
        events: List[Msg] = []
        others: List[Msg] = []
        for msg in self.messages:
            if opening is None and reset is None and msg.get("type") == "reset":
                reset = msg
            elif opening is None and msg.get("type") == "status":
                opening = msg
            elif opening is not None and "seq" in msg:
                events.append(msg)
            else:
                others.append(msg)
        return reset, opening, events, others

    def of_type(self, kind: str) -> List[Msg]:
        return [m for m in self.messages if m.get("type") == kind]

    def describe(self, limit: int = 50) -> str:
        lines = [f"{self.url}: {len(self.messages)} messages, "
                 + (f"closed {self.close_code} {self.close_reason!r}" if self.ended
                    else "still open")]
        shown = self.messages if len(self.messages) <= limit else (
            self.messages[:limit // 2] + [{"…": f"{len(self.messages) - limit} more"}]
            + self.messages[-limit // 2:])
        lines += ["  " + brief(m) for m in shown]
        return "\n".join(lines)


def connect(url: str, headers: Optional[Mapping[str, str]] = None,
            origin: Optional[str] = None) -> Any:
    """A WebSocket client connection (an async context manager) as a program would open one:
    no pings of its own, no size limit on what it receives; it answers the bridge's pings by
    itself and sends no Origin unless given one."""
    return websockets.connect(url, extra_headers=dict(headers or {}), origin=origin,
                              max_size=None, ping_interval=None, open_timeout=60,
                              close_timeout=10)


async def receive(ws: Any, got: Received,
                  on_message: Optional[Callable[[Msg], Awaitable[None]]] = None) -> Received:
    """Receives into got until the connection closes, calling on_message after each message."""
    try:
        async for data in ws:
            msg = got.add(data)
            if on_message is not None:
                await on_message(msg)
    except websockets.exceptions.ConnectionClosedError:
        pass  # a close code other than 1000/1001, or no close frame (1006): see close_code
    got.close_code, got.close_reason, got.ended = ws.close_code, ws.close_reason, True
    return got


async def next_message(ws: Any, got: Received, skip: Sequence[str] = ("heartbeat",)) -> Msg:
    """The next message whose type is not in skip (those are still recorded in got)."""
    while True:
        msg = got.add(await ws.recv())
        if msg.get("type") not in skip:
            return msg


async def collect(url: str, got: Received, headers: Optional[Mapping[str, str]] = None,
                  origin: Optional[str] = None,
                  on_message: Optional[Callable[[Msg], Awaitable[None]]] = None) -> Received:
    """One whole connection: open, receive until closed."""
    async with connect(url, headers, origin) as ws:
        return await receive(ws, got, on_message)


class Follower:
    """Follows one job as the browser client of docs/api.md does: keeps the seq of the last event
    as its cursor and, whenever a connection ends before the job did, connects again with it as
    `after`, so that the events of all its connections together must be the job's events."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.events: List[Msg] = []
        self.connections: List[Received] = []
        self.failed_attempts: List[str] = []
        self.seen_progress = False

    @property
    def after(self) -> int:
        return int(self.events[-1]["seq"]) if self.events else 0

    @property
    def final(self) -> Optional[Received]:
        last = self.connections[-1] if self.connections else None
        return last if last is not None and last.close_code in (1000, 4000) else None

    async def run(self, deadline: float) -> None:
        while self.final is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.url}: gave up reconnecting\n" + self.describe())
            got = Received(f"{self.url}?after={self.after}")
            opened = False

            async def on_message(msg: Msg) -> None:
                nonlocal opened
                if not opened:  # the opening status (a snapshot) comes first, and no reset
                    if msg.get("type") != "status":
                        raise AssertionError(f"{got.url}: {brief(msg)} before the opening "
                                             "status\n" + got.describe())
                    opened = True
                elif "seq" in msg:
                    self.events.append(msg)
                    self.seen_progress = self.seen_progress or msg["type"] == "progress"
            try:
                async with connect(got.url) as ws:
                    self.connections.append(got)
                    await receive(ws, got, on_message)
            except (OSError, asyncio.TimeoutError,
                    websockets.exceptions.InvalidHandshake) as e:
                # The bridge is down: the web server answers 503 (or the proxy breaks off).
                self.failed_attempts.append(repr(e))
                await asyncio.sleep(0.05)

    def describe(self) -> str:
        return (f"{len(self.connections)} connections, {len(self.failed_attempts)} failed "
                f"attempts, events {seqs(self.events)}\n"
                + "\n".join(c.describe(12) for c in self.connections))


# --------------------------------------------------------------------------------------------
# A WebSocket client on a plain socket


def ws_frame(opcode: int, payload: bytes = b"", fin: bool = True, masked: bool = True,
             declared: Optional[int] = None, rsv: int = 0) -> bytes:
    """One client frame (RFC 6455 section 5.2), masked unless told otherwise. declared: the
    payload length the header claims, when it should differ from len(payload)."""
    n = len(payload) if declared is None else declared
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    mask_bit = 0x80 if masked else 0
    if n < 126:
        head += bytes([mask_bit | n])
    elif n < 65536:
        head += bytes([mask_bit | 126]) + struct.pack(">H", n)
    else:
        head += bytes([mask_bit | 127]) + struct.pack(">Q", n)
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def upgrade_request(path: str, host: str, headers: Optional[Mapping[str, Optional[str]]] = None
                    ) -> bytes:
    """A WebSocket handshake request; a header set to None in headers is left out."""
    h: Dict[str, Optional[str]] = {
        "Host": host, "Upgrade": "websocket", "Connection": "Upgrade",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        "Sec-WebSocket-Version": "13"}
    h.update(headers or {})
    lines = [f"GET {path} HTTP/1.1"] + [f"{k}: {v}" for k, v in h.items() if v is not None]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class RawTimeout(AssertionError):
    """A raw client waited longer than its timeout for data."""


class RawClient:
    """A WebSocket client on a plain socket, for what a library will not do: read nothing (a slow
    client), send malformed bytes, hang up in the middle of something, leave the bridge's pings
    unanswered or see them at all. Frames received are recorded: texts (parsed JSON), pings, and
    the close (code, reason) or the end of the connection without one."""

    def __init__(self, port: int, rcvbuf: Optional[int] = None, mss: Optional[int] = None,
                 timeout: float = 30.0) -> None:
        self.port = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if mss:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, mss)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.buf = b""
        self.head = ""
        self.status: Optional[int] = None
        self.texts: List[Msg] = []
        self.pings = 0
        self.other_frames: List[Tuple[int, bytes]] = []
        self.close: Optional[Tuple[int, str]] = None
        self.eof = False

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        except socket.timeout:
            raise RawTimeout(f"nothing received for {self.sock.gettimeout():g} s\n"
                             + self.describe()) from None
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def handshake(self, path: str, headers: Optional[Mapping[str, Optional[str]]] = None) -> int:
        """Sends the upgrade request and reads the answer's head; returns its status, or 0 when
        the connection ends without an answer."""
        self.send(upgrade_request(path, f"127.0.0.1:{self.port}", headers))
        while b"\r\n\r\n" not in self.buf:
            if not self._fill():
                return 0
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        self.head = head.decode("latin-1")
        self.status = int(self.head.split()[1])
        return self.status

    def _take(self, n: int) -> Optional[bytes]:
        while len(self.buf) < n:
            if not self._fill():
                return None
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_frame(self, answer_pings: bool = False) -> Optional[Tuple[int, bytes]]:
        """Reads and records one frame; returns (opcode, payload), or None at the end of the
        connection."""
        head = self._take(2)
        if head is None:
            return None
        n = head[1] & 0x7F
        ext = {126: 2, 127: 8}.get(n, 0)
        if ext:
            raw_len = self._take(ext)
            if raw_len is None:
                return None
            n = int.from_bytes(raw_len, "big")
        if head[1] & 0x80 and self._take(4) is None:
            return None
        payload = self._take(n)
        if payload is None:
            return None
        opcode = head[0] & 0x0F
        if opcode == 0x1:
            try:
                self.texts.append(json.loads(payload))
            except ValueError:
                self.texts.append({"_text": payload.decode("utf-8", "replace")})
        elif opcode == 0x9:
            self.pings += 1
            if answer_pings:
                self.send(ws_frame(0xA, payload))
        elif opcode == 0x8:
            code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else 1005
            self.close = (code, payload[2:].decode("utf-8", "replace"))
        else:
            self.other_frames.append((opcode, payload))
        return opcode, payload

    def poll_frame(self, timeout: float, answer_pings: bool = False) -> bool:
        """Reads one frame if one starts arriving within timeout; returns whether it did."""
        if not self.buf and not select.select([self.sock], [], [], timeout)[0]:
            return False
        return self.read_frame(answer_pings) is not None

    def read_until(self, done: Callable[["RawClient"], bool], answer_pings: bool = False) -> None:
        """Reads frames until done(self), a close frame or the end of the connection."""
        while not done(self) and self.close is None and not self.eof:
            if self.read_frame(answer_pings) is None:
                return

    def read_to_end(self, answer_pings: bool = False) -> None:
        self.read_until(lambda c: False, answer_pings)

    def drain(self) -> None:
        """Reads raw bytes until the other end closes the connection or nothing more comes
        within the timeout (either is fine here)."""
        with contextlib.suppress(RawTimeout):
            while self._fill():
                pass

    def hang_up(self) -> None:
        """Closes the socket with a reset (no FIN, no close frame)."""
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def describe(self) -> str:
        return (f"raw client on port {self.port}: status {self.status}, {len(self.texts)} texts, "
                f"{self.pings} pings, other frames {self.other_frames[:5]}, close {self.close}, "
                f"eof {self.eof}\n" + "\n".join("  " + brief(m) for m in self.texts[-20:]))


# --------------------------------------------------------------------------------------------
# Servers: a web server and the bridge, sharing one state directory and configuration file


class BridgeSite(http_suite.Site):
    """test_http.py's Site (the web server chosen on the command line, started from the shipped
    files, with the responder) plus the bridge, risksim-wsbridge, on the web server's bridge
    port, with the same configuration file: the same db_path, base_path and bridge keys."""

    def __init__(self, label: str, overrides: Optional[Dict[str, object]] = None,
                 fcgi_procs: int = 1) -> None:
        super().__init__(label, overrides, fcgi_procs)
        self.bridge: Optional[serve.Bridge] = None

    def start(self) -> "BridgeSite":
        super().start()
        try:
            self.start_bridge()
        except BaseException:
            self.stop()
            raise
        return self

    def start_bridge(self) -> serve.Bridge:
        """Starts the bridge (again, after a test stopped it) and waits until it is healthy."""
        web = self.web
        assert web is not None
        if self.bridge is None:
            self.bridge = serve.Bridge(web.state_dir, http_suite.OPTIONS["build"], web.bridge_port,
                                       config_path=web.config_path, layout=web.layout,
                                       auth_secret=web.auth_secret)
        self.bridge.start(timeout=60)
        return self.bridge

    @property
    def db_path(self) -> Path:
        assert self.state_dir is not None
        return self.state_dir / "risksim.db"

    def log_tail(self, lines: int = 25) -> str:
        text = super().log_tail(lines)
        if self.bridge is not None:
            text += self.bridge.log_tail(lines)
        return text

    def stop(self) -> List[str]:
        """Stops the bridge (SIGTERM: it must exit 0), then the web server; returns the
        problems found: a bad exit of the bridge and sanitizer reports in any log."""
        problems = []
        if self.bridge is not None and self.bridge.running:
            self.bridge.terminate()
            try:
                code = self.bridge.wait(30)
                if code != 0:
                    problems.append(f"the bridge exited with status {code} after SIGTERM\n"
                                    + self.bridge.log_tail())
            except subprocess.TimeoutExpired:
                problems.append("the bridge did not exit within 30 s of SIGTERM")
        if self.bridge is not None:
            self.bridge.stop()
        return problems + super().stop()


# --------------------------------------------------------------------------------------------
# The test base


class WsCase(unittest.TestCase):
    """A test class with its own web server and bridge (started once for the class)."""

    LABEL = "ws"
    OVERRIDES: Dict[str, object] = {}
    FCGI_PROCS = 1
    site: BridgeSite
    maxDiff = 8000

    @classmethod
    def setUpClass(cls) -> None:
        cls.site = BridgeSite(cls.LABEL, cls.OVERRIDES, cls.FCGI_PROCS).start()

    @classmethod
    def tearDownClass(cls) -> None:
        problems = cls.site.stop()
        if problems:
            raise AssertionError(f"the {cls.LABEL} site:\n" + "\n\n".join(problems))

    def tearDown(self) -> None:
        # A bridge that died during a test (and was not stopped by the test itself) fails it.
        bridge = self.site.bridge
        if bridge is not None and bridge.proc is not None and not bridge.running:
            code = bridge.returncode
            self.site.start_bridge()
            self.fail(f"the bridge died during the test (status {code})\n" + self.site.log_tail())

    @property
    def bridge(self) -> serve.Bridge:
        assert self.site.bridge is not None
        return self.site.bridge

    # -- failures -------------------------------------------------------------------------

    def fail_with(self, msg: str, *received: Union[Received, RawClient]) -> None:
        text = msg + "".join("\n" + r.describe() for r in received)
        raise self.failureException(text + "\n" + self.site.log_tail())

    def check(self, cond: object, msg: str, *received: Union[Received, RawClient]) -> None:
        if not cond:
            self.fail_with(msg, *received)

    # -- the HTTP API (through the web server) --------------------------------------------

    def api_headers(self) -> Dict[str, str]:
        """An admin token when the site has auth_secret set."""
        assert self.site.web is not None
        return self.site.web.auth_headers()

    def api(self, method: str, path: str, body: Optional[object] = None,
            expect: Optional[int] = None) -> Tuple[int, Any]:
        headers = self.api_headers()
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        status, _, raw = serve.http_request(self.site.url(path), method, data, headers, timeout=60)
        try:
            doc = json.loads(raw) if raw else None
        except ValueError:
            doc = raw
        if expect is not None and status != expect:
            self.fail_with(f"{method} {path}: expected {expect}, got {status}: {raw[:600]!r}")
        return status, doc

    def submit(self, body: Dict[str, object]) -> str:
        return str(self.api("POST", "/simulations/async", body, expect=202)[1]["id"])

    def job(self, job_id: str) -> Msg:
        return self.api("GET", f"/simulations/{job_id}", expect=200)[1]

    def wait_job(self, job_id: str, statuses: Sequence[str]) -> Msg:
        last: Msg = {}

        def probe() -> Optional[Msg]:
            nonlocal last
            last = self.job(job_id)
            return last if last["status"] in statuses else None
        return wait_for(f"job {job_id} to be {'/'.join(statuses)}", probe,
                        describe=lambda: brief(last) + "\n" + self.site.log_tail())

    def polled(self, job_id: str) -> List[Msg]:
        """Every event of the job from the polling endpoint, page by page."""
        out: List[Msg] = []
        after = 0
        while True:
            doc = self.api("GET", f"/simulations/{job_id}/events?after={after}", expect=200)[1]
            if not doc["events"]:
                return out
            out.extend(doc["events"])
            after = int(doc["next"])

    def cancel(self, job_id: str) -> None:
        status = self.api("DELETE", f"/simulations/{job_id}")[0]
        self.check(status in (200, 202), f"DELETE of {job_id} answered {status}")

    def finished_job(self, trials: int = 300_000, seed: int = 1) -> Tuple[str, List[Msg]]:
        """A completed async job and its events."""
        job_id = self.submit(http_suite.small_request(seed=seed, trials=trials))
        self.wait_job(job_id, ["completed"])
        return job_id, self.polled(job_id)

    # -- the stream -----------------------------------------------------------------------

    def stream_url(self, job_id: str, query: str = "", direct: bool = False) -> str:
        """The job's stream through the web server, or straight at the bridge (direct)."""
        assert self.site.web is not None
        base = (f"ws://127.0.0.1:{self.bridge.port}{serve.BASE_PATH}" if direct
                else self.site.web.ws_url)
        return f"{base}/simulations/{job_id}/stream" + (f"?{query}" if query else "")

    def stream_path(self, job_id: str, query: str = "") -> str:
        return f"{serve.BASE_PATH}/simulations/{job_id}/stream" + (f"?{query}" if query else "")

    def run_async(self, coro: Awaitable[T], *watched: Received, timeout: float = WAIT_S) -> T:
        """Runs coro on a new event loop; a hang, or a handshake that is not a WebSocket, fails
        the test with what the watched connections had received."""
        async def guarded() -> T:
            return await asyncio.wait_for(coro, timeout)
        try:
            return asyncio.run(guarded())
        except asyncio.TimeoutError:
            self.fail_with(f"gave up after {timeout:g} s", *watched)
        except websockets.exceptions.InvalidStatusCode as e:
            self.fail_with(f"the handshake was answered with HTTP {e.status_code}", *watched)
        except websockets.exceptions.InvalidHandshake as e:
            self.fail_with(f"the handshake failed: {e!r}", *watched)
        raise AssertionError("unreachable")

    def stream(self, job_id: str, query: str = "", headers: Optional[Mapping[str, str]] = None,
               origin: Optional[str] = None, direct: bool = False) -> Received:
        """One whole connection to the job's stream."""
        got = Received(self.stream_url(job_id, query, direct))
        return self.run_async(collect(got.url, got, headers, origin), got)

    def streams(self, urls: Sequence[str]) -> List[Received]:
        """Connections to each of urls at once, each to its end."""
        gots = [Received(u) for u in urls]

        async def all_of_them() -> List[object]:
            return await asyncio.gather(*(collect(g.url, g) for g in gots),
                                        return_exceptions=True)
        for got, result in zip(gots, self.run_async(all_of_them(), *gots)):
            if isinstance(result, BaseException):
                self.fail_with(f"{got.url}: {result!r}", got)
        return gots

    # -- what the stream must be ----------------------------------------------------------

    def check_opening(self, got: Received, msg: Optional[Msg], job_id: str,
                      expect: Mapping[str, object]) -> None:
        """The opening status: the documented fields, the job's state, and expect's values."""
        self.check(msg is not None, "no opening status", got)
        assert msg is not None
        self.check(set(msg) == OPENING_KEYS, f"opening status fields {sorted(msg)}", got)
        self.check(msg["type"] == "status" and msg["jobId"] == job_id
                   and isinstance(msg["seq"], int) and TS_RE.match(str(msg["ts"])),
                   f"malformed opening status {brief(msg)}", got)
        trials, done = msg["trials"], msg["trialsDone"]
        self.check(isinstance(trials, int) and isinstance(done, int) and 0 <= done <= trials
                   and abs(msg["progress"] - (done / trials if trials else 0)) < 1e-6,
                   f"the opening status's progress does not match {brief(msg)}", got)
        for key, value in expect.items():
            self.check(msg[key] == value, f"opening status {key} is {msg[key]!r}, not {value!r}",
                       got)

    def check_stream(self, got: Received, job_id: str, events: List[Msg],
                     close: Tuple[int, str], reset: bool = False,
                     opening: Optional[Mapping[str, object]] = None) -> None:
        """got is what docs/api.md section 5 promises: a reset when told, the opening status
        (with the values of opening), exactly events (the objects of the polling endpoint), and
        the close; heartbeats may come in between."""
        got_reset, got_opening, got_events, others = got.parts()
        self.check(got.ended and (got.close_code, got.close_reason) == close,
                   f"expected the close {close}", got)
        if reset:
            self.check(got.messages and got.messages[0] == {"type": "reset", "jobId": job_id},
                       "the first message is not the reset", got)
        else:
            self.check(got_reset is None, "unexpected reset", got)
        self.check(got.messages and got_opening is got.messages[1 if reset else 0],
                   "the opening status is not where it belongs", got)
        self.check_opening(got, got_opening, job_id, opening or {})
        self.check([m for m in others if m.get("type") != "heartbeat"] == [],
                   "messages other than events and heartbeats", got)
        if got_events != events:
            self.fail_with(f"the events differ from the polling endpoint's:\n  expected seqs "
                           f"{seqs(events)}\n  got seqs      {seqs(got_events)}", got)

    def check_finished_stream(self, got: Received, job_id: str, polled: List[Msg],
                              after: int = 0, close: Tuple[int, str] = DONE,
                              reset: bool = False, status: str = "completed") -> None:
        """A stream of a job that had finished when it started: the status as of its last
        event, every event after `after` (all of them after a reset), the close."""
        expected = polled if reset else [e for e in polled if int(e["seq"]) > after]
        self.check_stream(got, job_id, expected, close, reset,
                          {"seq": polled[-1]["seq"], "status": status})

    def check_refused(self, got: Received, close: Tuple[int, object]) -> None:
        """A refusal: the handshake succeeded and the close came at once, without a message.
        close's reason may be a string or a predicate."""
        code, reason = close
        ok_reason = reason(got.close_reason) if callable(reason) else got.close_reason == reason
        self.check(got.ended and got.messages == [] and got.close_code == code and ok_reason,
                   f"expected a refusal with {code} {reason if not callable(reason) else ''}",
                   got)

    # -- the bridge's own HTTP answers ----------------------------------------------------

    def bridge_get(self, path: str) -> Tuple[int, bytes]:
        status, _, body = serve.http_request(self.bridge.base_url + path, timeout=30)
        return status, body

    def health(self) -> Msg:
        status, body = self.bridge_get("/healthz")
        self.check(status == 200, f"the bridge's /healthz answered {status}: {body!r}")
        return json.loads(body)

    def metrics(self) -> Dict[str, float]:
        status, body = self.bridge_get("/metrics")
        self.check(status == 200, f"the bridge's /metrics answered {status}")
        return parse_metrics(body.decode())

    def wait_sessions(self, n: int) -> None:
        wait_for(f"the bridge to count {n} sessions", lambda: self.health()["sessions"] == n,
                 describe=lambda: json.dumps(self.health()) + "\n" + self.site.log_tail())


# --------------------------------------------------------------------------------------------
# The main site: defaults, with frequent progress events


class StreamTests(WsCase):
    """The stream of completed, cancelled and unknown jobs, replay, filters, query refusals,
    many clients, the polling endpoint, bad clients, health and metrics."""

    LABEL = "ws-main"
    OVERRIDES = {"progress_ms": 20, "progress_trials": 1000}

    _reference: Optional[Tuple[str, List[Msg]]] = None

    def reference_job(self) -> Tuple[str, List[Msg]]:
        """A completed job with many events, made once (again if it was pruned)."""
        cls = type(self)
        if cls._reference is None or self.api(
                "GET", f"/simulations/{cls._reference[0]}")[0] != 200:
            cls._reference = self.finished_job(trials=1_000_000, seed=99)
        return cls._reference

    def check_still_serving(self, what: str) -> None:
        """After a bad client: the bridge runs, is healthy and streams a job in full."""
        self.check(self.bridge.running, f"the bridge died after {what}")
        self.check(self.health()["status"] == "ok", f"the bridge is not healthy after {what}")
        job_id, polled = self.reference_job()
        self.check_finished_stream(self.stream(job_id), job_id, polled)

    # -- the sequences of docs/api.md section 5 -------------------------------------------

    def test_completed_job_sequence(self) -> None:
        job_id = self.submit(http_suite.small_request(seed=11, trials=1_000_000))
        got = self.stream(job_id)
        polled = self.polled(job_id)
        job = self.job(job_id)
        _, opening, _, _ = got.parts()
        self.check(opening is not None and opening["status"] in ("queued", "running")
                   and opening["seq"] in seqs(polled),
                   "the opening status is not the state of a job that had just started", got)
        self.check_stream(got, job_id, polled, DONE)
        types = [e["type"] for e in polled]
        self.check(types[:2] == ["status", "status"] and types[-1] == "complete"
                   and "progress" in types and set(types[2:-1]) == {"progress"},
                   f"not status, status, progress..., complete: {types}", got)
        self.assertEqual([e["status"] for e in polled[:2]], ["queued", "running"])
        self.assertEqual(polled[-1]["result"], job["result"])

    def test_cancelled_job_sequence(self) -> None:
        job_id = self.submit(http_suite.long_request())
        got = Received(self.stream_url(job_id))
        cancelled = False

        async def on_message(msg: Msg) -> None:
            nonlocal cancelled
            if msg.get("type") == "progress" and not cancelled:
                cancelled = True
                await asyncio.to_thread(self.cancel, job_id)
        try:
            self.run_async(collect(got.url, got, on_message=on_message), got)
        finally:
            self.cancel(job_id)
        polled = self.polled(job_id)
        self.check_stream(got, job_id, polled, CANCELLED)
        self.check(polled[-1]["type"] == "cancelled" and set(polled[-1]) == {
            "seq", "jobId", "type", "ts"}, f"not a cancelled event: {brief(polled[-1])}", got)
        self.assertEqual(self.job(job_id)["status"], "cancelled")

    def test_replay_from_every_position(self) -> None:
        # Two jobs at once, so that each job's seqs have gaps (positions between its events).
        other = self.submit(http_suite.small_request(seed=13, trials=300_000))
        job_id, polled = self.finished_job(trials=300_000, seed=12)
        self.wait_job(other, ["completed"])
        job_seqs = seqs(polled)
        positions = sorted({0, job_seqs[0] - 1, *job_seqs,
                            *(s - 1 for s in job_seqs[1:] if s - 1 not in job_seqs)})
        gots = self.streams([self.stream_url(job_id, f"after={p}") for p in positions])
        for after, got in zip(positions, gots):
            with self.subTest(after=after):
                self.check_finished_stream(got, job_id, polled, after=after)

    def test_after_beyond_newest_resets(self) -> None:
        job_id, polled = self.finished_job(seed=14)
        newest = int(polled[-1]["seq"])
        positions = [newest + 1, newest + 1_000_000, 2**63 - 1]
        gots = self.streams([self.stream_url(job_id, f"after={p}") for p in positions])
        for after, got in zip(positions, gots):
            with self.subTest(after=after):
                self.check_finished_stream(got, job_id, polled, after=after, reset=True)
        self.check_refused(self.stream(job_id, f"after={2**63}"),
                           (1008, lambda r: "after" in r))

    def test_pruned_job_4004(self) -> None:
        # Events live as long as their job; pruning the job (risksim db prune) removes both, so
        # the cursor of a pruned job leads to 4004, not to a reset.
        job_id, polled = self.finished_job(seed=15)
        self.check_finished_stream(self.stream(job_id), job_id, polled)
        cli = Path(http_suite.OPTIONS["build"]) / "cli" / "risksim"  # type: ignore[arg-type]
        proc = subprocess.run([str(cli), "db", "prune", "--db", str(self.site.db_path),
                               "--retention", "0"], capture_output=True, text=True, timeout=120)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        pruned = re.match(r"pruned (\d+) finished job", proc.stdout)
        self.assertTrue(pruned and int(pruned.group(1)) >= 1, proc.stdout)
        self.api("GET", f"/simulations/{job_id}", expect=404)
        self.check_refused(self.stream(job_id), NO_JOB)
        self.check_refused(self.stream(job_id, f"after={polled[-1]['seq']}"), NO_JOB)

    def test_unknown_and_malformed_job_ids_4004(self) -> None:
        job_id, _ = self.reference_job()
        for bad in ("0" * 26, "7ZZZZZZZZZZZZZZZZZZZZZZZZZ", job_id.lower(), job_id + "0",
                    job_id[:-1], "not-an-id", "I" * 26):
            with self.subTest(id=bad):
                self.check_refused(self.stream(bad), NO_JOB)
                self.check_refused(self.stream(bad, "after=5&types=complete"), NO_JOB)

    def test_bad_queries_1008(self) -> None:
        job_id, polled = self.reference_job()
        bad = {
            "afer=3": "afer", "x=1": "x", "after=1&after=2": "after", "after=-1": "after",
            "after=%2B1": "after", "after=01": "after", "after=": "after", "after=1.5": "after",
            "after=9223372036854775808": "after", "types=bogus": "types",
            "types=complete,,progress": "types", "types=": "types", "types=Progress": "types",
            "types=heartbeat": "types", "types=status&types=progress": "types",
        }
        # (A malformed escape such as %zz never reaches the bridge's parser: Apache answers 403
        # and libwebsockets 400 before the handshake.)
        gots = self.streams([self.stream_url(job_id, q) for q in bad])
        for (query, name), got in zip(bad.items(), gots):
            with self.subTest(query=query):
                self.check_refused(got, (1008, lambda r, n=name: n in r and len(r) <= 123))
        self.assertEqual(gots[0].close_reason, 'unknown or malformed query parameter "afer"')
        # The same parameters written correctly are accepted.
        third = int(polled[2]["seq"])
        for query, after in (("after=0", 0), ("types=complete%2Cprogress", 0),
                             (f"after={third}&types=progress,complete", third),
                             ("types=status,progress,complete,error,cancelled", 0)):
            with self.subTest(query=query):
                self.check_finished_stream(self.stream(job_id, query), job_id, polled, after)

    def test_types_filter(self) -> None:
        job_id, polled = self.reference_job()
        without_progress = [e for e in polled if e["type"] != "progress"]
        self.assertGreater(len(without_progress), 0)
        self.assertGreater(len(polled), len(without_progress))
        cases = {"types=complete": without_progress, "types=status": without_progress,
                 "types=cancelled,error": without_progress, "types=progress": polled,
                 "types=complete%2Cprogress": polled}
        gots = self.streams([self.stream_url(job_id, q) for q in cases])
        for (query, expected), got in zip(cases.items(), gots):
            with self.subTest(query=query):
                self.check_stream(got, job_id, expected, DONE,
                                  opening={"seq": polled[-1]["seq"], "status": "completed"})

    def test_same_origin_by_default(self) -> None:
        # allowed_origins is empty: only the Origin whose host and port are the Host header's.
        assert self.site.web is not None
        job_id, polled = self.reference_job()
        port = self.site.web.port
        self.check_finished_stream(self.stream(job_id, origin=f"http://127.0.0.1:{port}"),
                                   job_id, polled)
        self.check_finished_stream(self.stream(job_id), job_id, polled)  # no Origin: not checked
        for origin in (f"http://127.0.0.1:{port + 1}", f"http://localhost:{port}",
                       "https://evil.example", "null"):
            with self.subTest(origin=origin):
                self.check_refused(self.stream(job_id, origin=origin), (4003, "origin not allowed"))

    def test_many_clients_get_identical_streams(self) -> None:
        job_id = self.submit(http_suite.small_request(seed=16, trials=1_000_000))
        gots = self.streams([self.stream_url(job_id)] * 50)
        polled = self.polled(job_id)
        for i, got in enumerate(gots):
            with self.subTest(client=i):
                self.check_stream(got, job_id, polled, DONE)
        self.assertGreater(len([e for e in polled if e["type"] == "progress"]), 0)

    def test_polling_and_stream_identical(self) -> None:
        # A long-polling client (after=next&wait=25) and a stream, following the same job from
        # its start, see the very same objects.
        job_id = self.submit(http_suite.small_request(seed=17, trials=1_000_000))
        got = Received(self.stream_url(job_id))

        def long_poll() -> List[Msg]:
            out: List[Msg] = []
            after = 0
            while True:
                doc = self.api("GET", f"/simulations/{job_id}/events?after={after}&wait=25",
                               expect=200)[1]
                out.extend(doc["events"])
                after = int(doc["next"])
                if not doc["events"] and doc["status"] in ("completed", "failed", "cancelled"):
                    return out

        async def both() -> List[Msg]:
            polls, _ = await asyncio.gather(asyncio.to_thread(long_poll), collect(got.url, got))
            return polls
        polls = self.run_async(both(), got)
        self.check_stream(got, job_id, polls, DONE)
        self.assertEqual(polls, self.polled(job_id))

    # -- health and metrics ---------------------------------------------------------------

    def test_health_and_metrics(self) -> None:
        self.wait_sessions(0)
        before = self.metrics()
        job_id = self.submit(http_suite.long_request())
        gots = [Received(self.stream_url(job_id)) for _ in range(3)]

        def next_progress(got: Received) -> Optional[Msg]:
            return next((m for m in got.messages if m.get("type") == "progress"), None)

        async def scenario() -> None:
            async with contextlib.AsyncExitStack() as stack:
                conns = [await stack.enter_async_context(connect(g.url)) for g in gots]
                for ws, got in zip(conns, gots):
                    while next_progress(got) is None:
                        await next_message(ws, got)
                health = await asyncio.to_thread(self.health)
                self.check(health["sessions"] == 3 and health["jobs"] == 1,
                           f"/healthz with 3 sessions on 1 job: {health}", *gots)
                gauges = await asyncio.to_thread(self.metrics)
                self.check(gauges["risksim_bridge_sessions"] == 3
                           and gauges["risksim_bridge_jobs_watched"] == 1,
                           "/metrics does not count 3 sessions on 1 job", *gots)
                await asyncio.to_thread(self.cancel, job_id)
                await asyncio.gather(*(receive(ws, g) for ws, g in zip(conns, gots)))
        try:
            self.run_async(scenario(), *gots)
        finally:
            self.cancel(job_id)
        for got in gots:
            self.check_stream(got, job_id, self.polled(job_id), CANCELLED)
        refused = self.stream("0" * 26)
        self.check_refused(refused, NO_JOB)
        raw = RawClient(self.bridge.port)
        self.assertEqual(raw.handshake(f"{serve.BASE_PATH}/healthz"), 404)
        raw.hang_up()
        self.wait_sessions(0)
        health = self.health()
        after = self.metrics()
        self.assertEqual((health["status"], health["db"], health["dbErrors"]), ("ok", "ok", 0))
        self.assertGreaterEqual(health["cursor"], self.polled(job_id)[-1]["seq"])
        self.assertGreaterEqual(health["pollAgeMs"], 0)

        def delta(name: str) -> float:
            return after.get(name, 0) - before.get(name, 0)
        self.assertEqual(delta("risksim_bridge_sessions_opened_total"), 3)
        self.assertEqual(delta('risksim_bridge_sessions_closed_total{reason="done"}'), 3)
        self.assertEqual(delta('risksim_bridge_rejected_total{code="4004"}'), 1)
        self.assertEqual(delta('risksim_bridge_rejected_total{code="route"}'), 1)
        self.assertEqual(delta("risksim_bridge_messages_sent_total"),
                         sum(len(g.messages) for g in gots))
        self.assertEqual(delta("risksim_bridge_bytes_sent_total"), sum(g.bytes for g in gots))
        self.assertEqual(after["risksim_bridge_sessions"], 0)
        self.assertEqual(after["risksim_bridge_db_up"], 1)
        self.assertGreater(delta("risksim_bridge_poll_ticks_total"), 0)
        self.assertGreater(delta("risksim_bridge_events_read_total"), 0)
        # The same answers under the mount point.
        for path in ("/healthz", "/metrics"):
            status, _ = self.bridge_get(serve.BASE_PATH + path)
            self.assertEqual(status, 200, path)

    # -- bad clients ----------------------------------------------------------------------

    def targets(self) -> Dict[str, int]:
        """Where bad clients are tried: through the web server and straight at the bridge."""
        assert self.site.web is not None
        return {"web server": self.site.web.port, "bridge": self.bridge.port}

    def abuse(self, what: str, send: bytes, expect_close: Optional[int] = None) -> None:
        """Opens a session on a job that keeps it open (a long job, cancelled afterwards), sends
        send, and reads until the connection ends: with expect_close when given. Then the bridge
        must go on serving."""
        job_id = self.submit(http_suite.long_request())
        try:
            for target, port in self.targets().items():
                with self.subTest(what=what, via=target):
                    raw = RawClient(port, timeout=30)
                    self.check(raw.handshake(self.stream_path(job_id)) == 101, "no WebSocket",
                               raw)
                    raw.read_until(lambda c: len(c.texts) >= 1)
                    raw.send(send)
                    raw.read_to_end()
                    raw.hang_up()
                    self.check((raw.close is not None or raw.eof) and raw.close != DONE,
                               "the connection was not ended for it", raw)
                    if expect_close is not None:
                        self.check(raw.close is not None and raw.close[0] == expect_close,
                                   f"expected a close frame with {expect_close}", raw)
                    self.check_still_serving(f"{what} via the {target}")
        finally:
            self.cancel(job_id)

    def test_garbage_instead_of_a_handshake(self) -> None:
        rng = random.Random(1)
        for target, port in self.targets().items():
            for name, data in (("binary", bytes(rng.randrange(256) for _ in range(4096))),
                               ("bad request line", b"\x16\x03\x01\x02GARBAGE / HTTP/9\r\n\r\n"),
                               ("endless header", b"GET / HTTP/1.1\r\nX: " + b"a" * 65536)):
                with self.subTest(what=name, via=target):
                    raw = RawClient(port, timeout=5)
                    with contextlib.suppress(OSError):
                        raw.send(data)
                    raw.drain()
                    raw.hang_up()
                    self.check(b" 101 " not in raw.buf[:40],
                               f"garbage was upgraded: {raw.buf[:200]!r}")
                    self.check_still_serving(f"{name} via the {target}")

    def test_garbage_frames(self) -> None:
        rng = random.Random(2)
        self.abuse("random bytes after the handshake",
                   bytes(rng.randrange(256) for _ in range(2048)))

    def test_invalid_opcodes_and_reserved_bits(self) -> None:
        for opcode in (0x3, 0x7, 0xB, 0xF):
            self.abuse(f"opcode {opcode:#x}", ws_frame(opcode, b"x"), expect_close=1002)
        self.abuse("reserved bit", ws_frame(0x1, b'{"type":"ping"}', rsv=4), expect_close=1002)
        self.abuse("continuation without a start", ws_frame(0x0, b"x"), expect_close=1002)

    def test_unmasked_frame(self) -> None:
        # RFC 6455 wants the server to fail a connection whose client frames are not masked;
        # whatever the library does with it, the bridge must go on serving everyone else.
        self.abuse("an unmasked frame", ws_frame(0x1, b'{"type":"ping"}', masked=False)
                   + ws_frame(0x8, struct.pack(">H", 1000)))

    def test_huge_declared_frame_length(self) -> None:
        self.abuse("a frame declaring 2**40 bytes",
                   ws_frame(0x1, b"x" * 1000, declared=2**40)[:14 + 1000], expect_close=1009)
        self.abuse("a frame declaring 2**63 bytes",
                   ws_frame(0x1, b"x" * 100, declared=2**63)[:14 + 100])
        self.abuse("a binary frame over max_frame_bytes", ws_frame(0x2, b"\0" * 5000),
                   expect_close=1009)

    def test_abrupt_disconnects(self) -> None:
        job_id, _ = self.reference_job()
        path = self.stream_path(job_id)
        for target, port in self.targets().items():
            for stage in ("mid-handshake", "before the answer", "during the replay",
                          "mid-frame", "after a close frame"):
                with self.subTest(stage=stage, via=target):
                    raw = RawClient(port, timeout=30)
                    request = upgrade_request(path, f"127.0.0.1:{port}")
                    if stage == "mid-handshake":
                        raw.send(request[:len(request) // 2])
                    elif stage == "before the answer":
                        raw.send(request)
                    else:
                        self.check(raw.handshake(path) == 101, "no WebSocket", raw)
                        if stage == "mid-frame":
                            raw.send(ws_frame(0x1, b'{"type":"ping"}')[:5])
                        elif stage == "after a close frame":
                            raw.send(ws_frame(0x8, struct.pack(">H", 1000)))
                    raw.hang_up()
                    self.check_still_serving(f"a hang-up {stage} via the {target}")

    def test_bad_upgrade_requests(self) -> None:
        job_id, _ = self.reference_job()
        bridge = self.bridge.port
        # An upgrade to a path that is not a stream URL: 404 from the bridge.
        for path in (f"{serve.BASE_PATH}/healthz", f"{serve.BASE_PATH}/simulations/{job_id}",
                     f"{serve.BASE_PATH}/simulations/{job_id}/events", "/", "/stream",
                     f"/other/simulations/{job_id}/stream"):
            with self.subTest(path=path):
                raw = RawClient(bridge)
                self.assertEqual(raw.handshake(path), 404, raw.head)
                raw.hang_up()
        # Upgrades that cannot be WebSocket handshakes are refused (lighttpd may switch to its
        # own HTTP/2 for "Upgrade: h2c", which is fine); the library tolerates a missing
        # version or "Connection: Upgrade", which must do no harm either.
        for headers, refused in (({"Upgrade": "h2c"}, True), ({"Sec-WebSocket-Key": None}, True),
                                 ({"Sec-WebSocket-Key": "short"}, False),
                                 ({"Sec-WebSocket-Version": None}, False),
                                 ({"Connection": "keep-alive"}, False)):
            for target, port in self.targets().items():
                with self.subTest(headers=headers, via=target):
                    raw = RawClient(port)
                    status = raw.handshake(self.stream_path(job_id), headers)
                    raw.hang_up()
                    self.check(not refused or status != 101
                               or "sec-websocket-accept" not in raw.head.lower(),
                               f"a WebSocket with {headers}: {raw.head}")
        # A plain GET of a stream URL reaches the bridge through the web server: 426.
        status, headers, body = serve.http_request(self.site.url(f"/simulations/{job_id}/stream"))
        self.assertEqual(status, 426, body)
        self.assertEqual(json.loads(body)["status"], 426)
        self.check_still_serving("bad upgrade requests")


# --------------------------------------------------------------------------------------------
# Quiet jobs: nothing runs, so sessions stay open and only the bridge's own messages flow


class QuietTests(WsCase):
    """workers = 0 (jobs stay queued), heartbeat_s = 1, ping_s = 1, idle_timeout_s = 10: the
    heartbeat, the protocol ping, the idle close, the client's ping and bad messages, and the
    largest client message."""

    LABEL = "ws-quiet"
    OVERRIDES = {"workers": 0, "heartbeat_s": 1, "ping_s": 1, "idle_timeout_s": 10}

    def setUp(self) -> None:
        self.job_id = self.queued_job()

    def queued_job(self) -> str:
        """A job that stays queued (no workers) until the test ends."""
        job_id = self.submit(http_suite.small_request(seed=21))
        self.addCleanup(self.cancel, job_id)
        return job_id

    def quiet_session(self, scenario: Callable[[Any, Received], Awaitable[None]]) -> Received:
        """Runs scenario(ws, got) on a session of the queued job, after its opening status and
        replay (the queued event); then cancels the job and checks the rest of the stream."""
        got = Received(self.stream_url(self.job_id))

        async def run() -> None:
            async with connect(got.url) as ws:
                await next_message(ws, got)
                await next_message(ws, got)
                await scenario(ws, got)
                await asyncio.to_thread(self.cancel, self.job_id)
                await receive(ws, got)
        self.run_async(run(), got)
        polled = self.polled(self.job_id)
        self.assertEqual([e["type"] for e in polled], ["status", "cancelled"])
        _, opening, events, _ = got.parts()
        self.check_opening(got, opening, self.job_id, {"status": "queued", "seq": polled[0]["seq"]})
        self.check(events == polled and (got.close_code, got.close_reason) == CANCELLED,
                   "not the queued job's events and close", got)
        return got

    async def ask(self, ws: Any, got: Received, data: Union[str, bytes]) -> Msg:
        """Sends data and returns the answer (heartbeats skipped)."""
        await ws.send(data)
        return await next_message(ws, got)

    def test_heartbeat(self) -> None:
        async def scenario(ws: Any, got: Received) -> None:
            for _ in range(2):
                msg = await next_message(ws, got, skip=())
                self.check(msg.get("type") == "heartbeat" and set(msg) == {"type", "ts"}
                           and TS_RE.match(str(msg["ts"])), f"not a heartbeat: {brief(msg)}", got)
        got = self.quiet_session(scenario)
        self.assertGreaterEqual(len(got.of_type("heartbeat")), 2)

    def test_protocol_pings(self) -> None:
        raw = RawClient(self.bridge.port)
        self.check(raw.handshake(self.stream_path(self.job_id)) == 101, "no WebSocket", raw)
        raw.read_until(lambda c: c.pings >= 2, answer_pings=True)
        self.check(raw.pings >= 2 and raw.close is None, "no protocol pings", raw)
        raw.send(ws_frame(0x8, struct.pack(">H", 1000)))
        raw.read_to_end(answer_pings=True)
        raw.hang_up()
        self.check(raw.close is not None and raw.close[0] == 1000, "no close answer", raw)
        # Through the web server too (the proxies pass pings on).
        assert self.site.web is not None
        raw = RawClient(self.site.web.port)
        self.check(raw.handshake(self.stream_path(self.job_id)) == 101, "no WebSocket", raw)
        raw.read_until(lambda c: c.pings >= 1, answer_pings=True)
        raw.hang_up()
        self.check(raw.pings >= 1, "no protocol ping through the web server", raw)

    def test_idle_timeout(self) -> None:
        # Two clients that send nothing: one leaves the pings unanswered and is closed after
        # idle_timeout_s; the other answers them, which counts as traffic, and stays.
        assert self.site.web is not None
        before = self.metrics()
        idle, answering = RawClient(self.site.web.port), RawClient(self.site.web.port)
        for raw in (idle, answering):
            self.check(raw.handshake(self.stream_path(self.job_id)) == 101, "no WebSocket", raw)
        done = threading.Event()

        def answer_pings() -> None:
            while not done.is_set() and answering.close is None and not answering.eof:
                answering.poll_frame(0.1, answer_pings=True)
        pinger = threading.Thread(target=answer_pings)
        pinger.start()
        try:
            idle.read_to_end()
        finally:
            done.set()
            pinger.join()
        self.check(idle.close == (1001, "idle timeout") and idle.pings > 0,
                   "not closed for being idle", idle)
        self.check(answering.close is None and not answering.eof,
                   "the client that answered pings was closed too", answering)
        answering.send(ws_frame(0x1, b'{"type":"ping"}'))
        answering.read_until(lambda c: any(m.get("type") == "pong" for m in c.texts),
                             answer_pings=True)
        self.check(any(m.get("type") == "pong" for m in answering.texts),
                   "the client that answered pings gets no pong", answering)
        idle.hang_up()
        answering.hang_up()
        self.wait_sessions(0)
        closed = 'risksim_bridge_sessions_closed_total{reason="idle"}'
        self.assertEqual(self.metrics()[closed] - before.get(closed, 0), 1)

    def test_ping_message_answered_with_pong(self) -> None:
        async def scenario(ws: Any, got: Received) -> None:
            for text in ('{"type":"ping"}', '{"type":"ping","id":7,"x":[1,{"y":null}]}',
                         ' {"type" : "ping"} '):
                msg = await self.ask(ws, got, text)
                self.check(msg.get("type") == "pong" and set(msg) == {"type", "ts"}
                           and TS_RE.match(str(msg["ts"])), f"{text}: not a pong", got)
        self.quiet_session(scenario)

    def test_bad_messages_keep_the_connection(self) -> None:
        async def scenario(ws: Any, got: Received) -> None:
            for data in ("hello", '{"type":"pong"}', '{"type":1}', "[]", '{"kind":"ping"}',
                         '{"type":"ping"', "null", b"\x00\x01\x02", b'{"type":"ping"}', ""):
                msg = await self.ask(ws, got, data)
                error = msg.get("error")
                self.check(msg.get("type") == "error" and set(msg) == {"type", "error"}
                           and isinstance(error, dict) and error.get("code") == "bad_message"
                           and isinstance(error.get("message"), str) and error["message"],
                           f"{data!r}: not a bad_message error", got)
            msg = await self.ask(ws, got, '{"type":"ping"}')
            self.check(msg.get("type") == "pong", "no pong after the bad messages", got)
        self.quiet_session(scenario)

    def test_message_size_limit_1009(self) -> None:
        limit = 4096  # max_frame_bytes, default
        at_limit = '{"type":"ping","pad":"' + "x" * (limit - 24) + '"}'
        self.assertEqual(len(at_limit), limit)

        async def scenario(ws: Any, got: Received) -> None:
            msg = await self.ask(ws, got, at_limit)
            self.check(msg.get("type") == "pong", "a message of max_frame_bytes is refused", got)
        self.quiet_session(scenario)
        for name, data in (("one frame", "x" * (limit + 1)),
                           ("fragments", ["x" * 1500, "x" * 1500, "x" * 1500])):
            with self.subTest(message=name):
                got = Received(self.stream_url(self.queued_job()))

                async def send_big(data: Union[str, List[str]] = data,
                                   got: Received = got) -> None:
                    async with connect(got.url) as ws:
                        await next_message(ws, got)
                        await ws.send(data)
                        await receive(ws, got)
                self.run_async(send_big(), got)
                self.check((got.close_code, got.close_reason) == (1009, "message too big"),
                           "expected 1009", got)


# --------------------------------------------------------------------------------------------
# Session limits


class LimitTests(WsCase):
    """workers = 0 (sessions stay open on a queued job), max_sessions = 3,
    max_sessions_per_ip = 2. Through the web server every client comes from 127.0.0.1; the
    bridge counts a connection from loopback under the last address of X-Forwarded-For, so
    clients connecting straight to it with that header stand for other addresses."""

    LABEL = "ws-limits"
    OVERRIDES = {"workers": 0, "max_sessions": 3, "max_sessions_per_ip": 2}

    def limited(self, scenario: Callable[[str, contextlib.AsyncExitStack], Awaitable[None]]
                ) -> None:
        job_id = self.submit(http_suite.small_request(seed=31))
        self.wait_sessions(0)

        async def run() -> None:
            async with contextlib.AsyncExitStack() as stack:
                await scenario(job_id, stack)
        try:
            self.run_async(run())
        finally:
            self.cancel(job_id)

    async def open_session(self, stack: contextlib.AsyncExitStack, url: str,
                           headers: Optional[Mapping[str, str]] = None) -> Any:
        """Opens a session that must be accepted (its opening status arrives)."""
        got = Received(url)
        ws = await stack.enter_async_context(connect(url, headers))
        msg = await next_message(ws, got)
        self.check(msg.get("type") == "status", "the session was not accepted", got)
        return ws

    async def expect_refused(self, url: str, reason: str,
                             headers: Optional[Mapping[str, str]] = None, code: int = 4029,
                             origin: Optional[str] = None) -> None:
        got = await collect(url, Received(url), headers, origin)
        self.check_refused(got, (code, reason))

    def test_per_address_limit(self) -> None:
        async def scenario(job_id: str, stack: contextlib.AsyncExitStack) -> None:
            url = self.stream_url(job_id)
            first = await self.open_session(stack, url)
            # A refused handshake does not keep the place it took.
            await self.expect_refused(self.stream_url(job_id, "afer=1"),
                                      'unknown or malformed query parameter "afer"', code=1008)
            await self.expect_refused(self.stream_url("0" * 26), "no such job", code=4004)
            await self.open_session(stack, url)
            await self.expect_refused(url, "too many sessions from this address")
            await first.close()
            await asyncio.to_thread(self.wait_sessions, 1)
            await self.open_session(stack, url)
            await self.expect_refused(url, "too many sessions from this address")
        self.limited(scenario)

    def test_total_limit(self) -> None:
        async def scenario(job_id: str, stack: contextlib.AsyncExitStack) -> None:
            url, direct = self.stream_url(job_id), self.stream_url(job_id, direct=True)
            for _ in range(2):
                await self.open_session(stack, url)
            await self.open_session(stack, direct, {"X-Forwarded-For": "192.0.2.1"})
            # The total is checked before the address: both are refused as "too many sessions".
            await self.expect_refused(url, "too many sessions")
            await self.expect_refused(direct, "too many sessions", {"X-Forwarded-For": "192.0.2.2"})
            # The order of the checks: Origin before the limits, the limits before the query and
            # the job.
            await self.expect_refused(url, "origin not allowed", code=4003,
                                      origin="https://evil.example")
            await self.expect_refused(self.stream_url(job_id, "afer=1"), "too many sessions")
            await self.expect_refused(self.stream_url("0" * 26), "too many sessions")
            health = await asyncio.to_thread(self.health)
            self.check(health["sessions"] == 3, f"refusals were counted as sessions: {health}")
        self.limited(scenario)


# --------------------------------------------------------------------------------------------
# Tokens and origins


class AuthTests(WsCase):
    """auth_secret set, allowed_origins listing one origin: 4001 for every refused token, 4003
    for an Origin not listed, and the order of the checks (token first)."""

    LABEL = "ws-auth"
    APP = "https://app.example.com"
    OVERRIDES = {"auth_secret": SECRET, "allowed_origins": f"{APP}, http://127.0.0.1:1"}

    job_id: str
    other_id: str
    events: List[Msg]

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        try:
            case = cls("test_tokens_accepted")
            cls.job_id, cls.events = case.finished_job(seed=41)
            cls.other_id, _ = case.finished_job(seed=42, trials=2000)
        except BaseException:
            cls.site.stop()
            raise

    def token(self, ttl: int = 300, **claims: object) -> str:
        return serve.make_token(SECRET, ttl, **claims)

    def test_tokens_accepted(self) -> None:
        for name, query, headers in (
                ("job token in the query", f"token={self.token(job=self.job_id)}", {}),
                ("admin token in the query", f"token={self.token(scope='admin')}", {}),
                ("user token in the query", f"token={self.token()}", {}),
                ("bearer header", "", {"Authorization": "Bearer " + self.token(job=self.job_id)})):
            with self.subTest(name):
                got = self.stream(self.job_id, query, headers)
                self.check_finished_stream(got, self.job_id, self.events)

    def test_refused_tokens_4001(self) -> None:
        job = self.job_id
        cases = {
            "a token is required": ("", {}),
            "the token has expired": (f"token={self.token(ttl=-10, job=job)}", {}),
            "the token is malformed or its signature is wrong": (
                f"token={serve.make_token('another secret', job=job)}", {}),
            "the token is for another job": (f"token={self.token(job=self.other_id)}", {}),
            "the Authorization header is not a Bearer token": (
                "", {"Authorization": "Basic dXNlcjpwYXNz"}),
        }
        for reason, (query, headers) in cases.items():
            with self.subTest(reason):
                self.check_refused(self.stream(job, query, headers), (4001, reason))

    def test_token_checked_first(self) -> None:
        # Without a valid token a client learns nothing: not whether the job exists, not what
        # its Origin or query would get.
        for job, query, origin in (("0" * 26, "", None), (self.job_id, "", "https://evil.example"),
                                   (self.job_id, "afer=1", None)):
            with self.subTest(job=job, query=query, origin=origin):
                self.check_refused(self.stream(job, query, origin=origin),
                                   (4001, "a token is required"))
        self.check_refused(self.stream("0" * 26, f"token={self.token(scope='admin')}"), NO_JOB)

    def test_origins_4003(self) -> None:
        token = f"token={self.token(job=self.job_id)}"
        for origin in (self.APP, self.APP + ":443", "HTTPS://APP.EXAMPLE.COM", None):
            with self.subTest(origin=origin):
                self.check_finished_stream(self.stream(self.job_id, token, origin=origin),
                                           self.job_id, self.events)
        assert self.site.web is not None
        for origin in ("https://evil.example", "http://app.example.com", self.APP + ":8443",
                       f"http://127.0.0.1:{self.site.web.port}"):
            with self.subTest(origin=origin):
                self.check_refused(self.stream(self.job_id, token, origin=origin),
                                   (4003, "origin not allowed"))


# --------------------------------------------------------------------------------------------
# A job that fails for real


class FailedJobTests(WsCase):
    """Two responder processes, lease_s = 2, max_attempts = 1: the process running a job is
    killed, and the other one's lease reaper fails the job (lease_expired) with an error event."""

    LABEL = "ws-failed"
    FCGI_PROCS = 2
    OVERRIDES = {"workers": 1, "lease_s": 2, "max_attempts": 1, "progress_ms": 50}

    def owner_pid(self, job_id: str) -> Optional[int]:
        """The pid of the responder holding the job's lease ("host:pid:wN"), read-only from the
        database, or None while it is not running."""
        con = sqlite3.connect(f"file:{self.site.db_path}?mode=ro", uri=True, timeout=30)
        try:
            row = con.execute("SELECT state, lease_owner FROM jobs WHERE id = ?",
                              (job_id,)).fetchone()
        finally:
            con.close()
        if not row or row[0] != "running" or not row[1]:
            return None
        return int(row[1].split(":")[-2])

    def kill_owner(self, job_id: str) -> None:
        pid = wait_for(f"job {job_id} to have an owner", lambda: self.owner_pid(job_id))
        self.assertIn(pid, self.site.responder_pids())
        self.site.signal_responder(pid, signal.SIGKILL)

    def test_failed_job_sequence(self) -> None:
        job_id = self.submit(http_suite.long_request())
        got = Received(self.stream_url(job_id))
        killed = False

        async def on_message(msg: Msg) -> None:
            nonlocal killed
            if msg.get("type") == "progress" and not killed:
                killed = True
                await asyncio.to_thread(self.kill_owner, job_id)
        self.run_async(collect(got.url, got, on_message=on_message), got)
        job = self.wait_job(job_id, ["failed"])
        polled = self.polled(job_id)
        self.check_stream(got, job_id, polled, FAILED)
        last = polled[-1]
        self.check(last["type"] == "error" and last["error"]["code"] == "lease_expired"
                   and last["error"] == job["error"], f"not the job's error: {brief(last)}", got)
        self.assertEqual([e["type"] for e in polled if e["type"] != "progress"],
                         ["status", "status", "error"])
        # Later sessions: the state, the replay, the close; or the state and the close.
        self.check_finished_stream(self.stream(job_id), job_id, polled, close=FAILED,
                                   status="failed")
        self.check_finished_stream(self.stream(job_id, f"after={last['seq']}"), job_id, polled,
                                   after=int(last["seq"]), close=FAILED, status="failed")


# --------------------------------------------------------------------------------------------
# Slow readers, and the bridge stopped under its clients


class BridgeRestartTests(WsCase):
    """progress_ms = 10 (about a hundred events a second per job), session_queue = 16: a
    client that stops reading, the bridge killed and restarted under twenty clients, and the
    bridge stopped with SIGTERM."""

    LABEL = "ws-restart"
    OVERRIDES = {"progress_ms": 10, "progress_trials": 1000, "session_queue": 16,
                 "max_trials": SLOW_TRIALS}

    def setUp(self) -> None:
        if not self.bridge.running:  # a previous test of this class stopped it and failed
            self.site.start_bridge()

    def test_slow_reader(self) -> None:
        # Two clients stop reading while a long job runs: one through the web server (which
        # buffers on its own, so its client may well get everything) and one straight at the
        # bridge, whose queue for it fills up. Once the bridge has collapsed a good number of
        # progress messages the job is cancelled, and both clients read: every state change,
        # the cancel and the close must be there, the progress messages in order.
        assert self.site.web is not None
        bridge = self.bridge
        collapsed = "risksim_bridge_messages_collapsed_total"
        before = self.metrics().get(collapsed, 0)
        job_id = self.submit(http_suite.small_request(seed=51, trials=SLOW_TRIALS))
        self.addCleanup(self.cancel, job_id)
        readers = {"web server": RawClient(self.site.web.port, SLOW_RCVBUF, SLOW_MSS, WAIT_S),
                   "bridge": RawClient(bridge.port, SLOW_RCVBUF, SLOW_MSS, WAIT_S)}
        for raw in readers.values():
            self.check(raw.handshake(self.stream_path(job_id)) == 101, "no WebSocket", raw)
        peak = 0

        def queue_churned() -> Optional[bool]:
            nonlocal peak
            assert bridge.pid is not None
            peak = max(peak, rss_kib(bridge.pid))
            if self.metrics()[collapsed] - before >= SLOW_COLLAPSES:
                return True
            self.check(self.job(job_id)["status"] in ("queued", "running"),
                       f"the job ended before the bridge had collapsed {SLOW_COLLAPSES} "
                       "progress messages")
            return None
        wait_for(f"the bridge to collapse {SLOW_COLLAPSES} progress messages of the client "
                 "that reads nothing", queue_churned,
                 describe=lambda: f"collapsed {self.metrics()[collapsed] - before}\n"
                 + self.site.log_tail())
        self.cancel(job_id)
        self.wait_job(job_id, ["cancelled"])
        queue_churned()
        polled = self.polled(job_id)
        progress = [e for e in polled if e["type"] == "progress"]
        for via, raw in readers.items():
            with self.subTest(via=via):
                raw.read_to_end()
                raw.hang_up()
                got = raw.texts
                self.check(raw.close == CANCELLED and got and got[0].get("type") == "status",
                           "not an opening status ... and the close", raw)
                events = got[1:]
                self.check([e for e in events if e["type"] != "progress"]
                           == [e for e in polled if e["type"] != "progress"],
                           "a state change or the cancel is missing", raw)
                got_progress = [e for e in events if e["type"] == "progress"]
                self.check(all(e in progress for e in got_progress)
                           and seqs(events) == sorted(set(seqs(events))),
                           "progress events out of order or not the job's", raw)
                if via == "bridge":
                    self.check(len(got_progress) < len(progress),
                               f"all {len(progress)} progress events reached the client that "
                               "read nothing although the bridge collapsed some", raw)
        self.check(peak <= BRIDGE_RSS_BOUND_KIB,
                   f"the bridge's resident memory reached {peak} KiB (bound "
                   f"{BRIDGE_RSS_BOUND_KIB} KiB)")

    def test_sigkill_and_restart_without_gaps(self) -> None:
        # Twenty clients follow two running jobs; the bridge is killed and started again; each
        # client reconnects with its cursor. Prompt readers never fill a queue, so nothing may
        # be collapsed: every client's events are exactly the polling endpoint's.
        jobs = [self.submit(http_suite.small_request(seed=60 + i, trials=4_000_000))
                for i in range(2)]
        followers = [Follower(self.stream_url(jobs[i % 2])) for i in range(20)]

        async def scenario() -> None:
            deadline = time.monotonic() + WAIT_S
            tasks = [asyncio.create_task(f.run(deadline)) for f in followers]
            while not all(f.seen_progress for f in followers):
                if any(t.done() for t in tasks) or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.02)
            running = [self.job(j)["status"] for j in jobs]
            self.check(running == ["running"] * 2, f"the jobs are {running}, not running")
            await asyncio.to_thread(self.bridge.kill)
            await asyncio.to_thread(self.site.start_bridge)
            await asyncio.gather(*tasks)
        self.run_async(scenario())
        for i, follower in enumerate(followers):
            with self.subTest(client=i):
                job_id = jobs[i % 2]
                polled = self.polled(job_id)
                self.check(len(follower.connections) >= 2,
                           "the client was never disconnected\n" + follower.describe())
                final = follower.final
                self.check(final is not None and (final.close_code, final.close_reason) == DONE,
                           "not closed with 1000 job completed\n" + follower.describe())
                if follower.events != polled:
                    self.fail_with(f"gaps or duplicates:\n  polled {seqs(polled)}\n"
                                   f"  client {seqs(follower.events)}\n" + follower.describe())

    def test_sigterm_closes_every_session_with_a_retry_hint(self) -> None:
        job_id = self.submit(http_suite.long_request())
        gots = [Received(self.stream_url(job_id)) for _ in range(10)]

        async def scenario() -> None:
            async with contextlib.AsyncExitStack() as stack:
                conns = [await stack.enter_async_context(connect(g.url)) for g in gots]
                for ws, got in zip(conns, gots):
                    await next_message(ws, got)
                self.bridge.terminate()
                await asyncio.gather(*(receive(ws, g) for ws, g in zip(conns, gots)))
        try:
            self.run_async(scenario(), *gots)
            code = self.bridge.wait(30)
        finally:
            self.cancel(job_id)
            self.site.start_bridge()
        self.assertEqual(code, 0, self.site.log_tail())
        delays = []
        for got in gots:
            self.check(got.close_code == 1001 and re.fullmatch(r'\{"retryMs":\d+\}',
                                                               got.close_reason),
                       'not closed with 1001 {"retryMs":N}', got)
            delays.append(json.loads(got.close_reason)["retryMs"])
            self.check(500 <= delays[-1] <= 5000, "retryMs out of [500, 5000]", got)
        self.assertGreater(len(set(delays)), 1, f"every session got the same delay: {delays}")
        self.assertIn("closing 10 sessions (1001)", self.bridge.log_tail(200))


# --------------------------------------------------------------------------------------------


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", choices=("lighttpd", "apache"), default="lighttpd")
    ap.add_argument("--build", default=str(REPO / "build"), help="the CMake build directory")
    ap.add_argument("--keep", action="store_true",
                    help="keep the state directories (configs, databases, logs) afterwards")
    args, rest = ap.parse_known_args(argv)
    if WEBSOCKETS_MISSING is not None:
        print(f"the websockets library cannot be imported by {sys.executable} "
              f"({WEBSOCKETS_MISSING}): run this suite with /usr/bin/python3, with Debian's "
              "python3-websockets installed (bash scripts/deps.sh test)", file=sys.stderr)
        return 1
    build = Path(args.build).resolve()
    for binary in ("fcgi/risksim-fcgi", "wsbridge/risksim-wsbridge", "cli/risksim"):
        if not (build / binary).exists():
            print(f"{build / binary} is missing: build first", file=sys.stderr)
            return 2
    server = "lighttpd" if args.server == "lighttpd" else "apache2"
    if shutil.which(server) is None:
        print(f"{server} not installed (bash scripts/deps.sh test installs it)", file=sys.stderr)
        return 1
    root = Path(tempfile.mkdtemp(prefix=f"risksim-ws-{args.server}-"))
    os.chmod(root, 0o755)  # Apache's children (www-data) must reach the sockets in it
    http_suite.OPTIONS.update(server=args.server, build=build, keep=args.keep, state_root=root)
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
