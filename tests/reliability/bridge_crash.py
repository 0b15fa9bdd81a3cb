#!/usr/bin/python3
"""Reliability: the WebSocket bridge SIGKILLed under 1,000 subscribed clients.

Why this file exists: docs/api.md section 5 promises that a client which reconnects with
`?after=SEQ` (the seq of the last event it received) gets every missed event once, in order,
"without a gap or a duplicate", whatever happened to the bridge in between. The integration
tests check this for twenty clients; this program checks it at the scale the bridge is sized
for, with every client coming through the shipped web server configuration (lighttpd by
default, Apache with --server apache) the way browsers do. It starts the web server and the
bridge (scripts/serve.py, through tests/integration/test_ws.py's BridgeSite) with the per-address
session cap raised (through the web server every client is 127.0.0.1), submits a few long
async jobs that write progress events, and opens the clients in this one process (asyncio and
websockets), spread over the jobs. While events flow the bridge is SIGKILLed, left down for a
moment (the web server answers 503 meanwhile) and started again on the same port; every
client reconnects with exponential backoff and its cursor, as the client of docs/api.md does.

Once the jobs have completed, each client's events (all its connections together, without the
opening status snapshots) must be exactly its job's events as GET /simulations/{id}/events
lists them: the same objects, every seq once, none missing, in order, and the last connection
closed with 1000 "job completed". Every client must have been cut off by every kill.

    /usr/bin/python3 tests/reliability/bridge_crash.py --build BUILD_DIR \\
        [--server lighttpd|apache] [--long] [--keep] [--seed N]

Default (short form, for the test command): 200 clients, 1 kill. --long: 1,000 clients,
3 kills. The jobs' trial counts come from a short synchronous calibration run, so that they
last long enough on this machine (and on a sanitizer build) for the kills. Prints
`FIGURE key=value` lines and ends with PASS (exit 0) or FAIL and the reason (exit 1). State
goes to a temporary directory, removed unless --keep or on failure. Timeouts only guard
against hangs; nothing asserts a duration.

Apache holds one worker thread per open WebSocket (docs/operations.md: "MaxRequestWorkers must
cover the browsers watching jobs"); serve.py's generated main configuration has 128. Under
--server apache this program therefore sizes the MPM for its clients, as that advice says,
in the generated main configuration only (the shipped snippet is untouched).

RLIMIT_NOFILE: the soft limit is raised to the hard limit here, and the web server and the
bridge inherit it (each client costs this process one descriptor, lighttpd two, the bridge
one).

Needs Debian's python3-websockets (hence /usr/bin/python3), relcommon.py, scripts/serve.py
and tests/integration/test_http.py and test_ws.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import math
import random
import re
import resource
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import relcommon  # (first: it puts scripts/ and tests/integration/ on sys.path)
from relcommon import Failure, figure, note
import serve
import test_http as http_suite  # (its options)
import test_ws as ws_suite  # (its BridgeSite and connect())

websockets = ws_suite.websockets

SHORT = {"clients": 200, "kills": 1, "job_s": 24.0, "progress_ms": 100,
         "thresholds": (0.25,)}
LONG = {"clients": 1000, "kills": 3, "job_s": 120.0, "progress_ms": 250,
        "thresholds": (0.2, 0.45, 0.7)}
JOBS = 4
CALIBRATION_TRIALS = 20_000
# Reconnection backoff: from BACKOFF_MIN seconds, doubling up to BACKOFF_MAX, with jitter.
BACKOFF_MIN = 0.05
BACKOFF_MAX = 2.0
# Only against hangs (generous for sanitizer builds on a busy machine).
WAIT_S = 900.0
# Apache (mpm_event) threads per child process, and threads kept besides the clients.
APACHE_THREADS_PER_CHILD = 64
APACHE_SPARE_THREADS = 128
# Closes after which a client stops: the job ended, or the bridge refused it for good.
FINAL_CODES = {1000, 4000, 1008, 1009, 4001, 4003, 4004}


def raise_nofile() -> int:
    """Raises this process's soft RLIMIT_NOFILE to the hard limit (the daemons started from
    here inherit it); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# --------------------------------------------------------------------------------------------
# The servers


class SizedApache(serve.Apache):
    """serve.Apache with enough mpm_event worker threads for `clients` open WebSockets plus
    the request load (the generated main configuration has 128)."""

    clients = 0

    def write_configs(self) -> Path:
        conf = super().write_configs()
        children = math.ceil((self.clients + APACHE_SPARE_THREADS) / APACHE_THREADS_PER_CHILD)
        text = conf.read_text()
        for key, value in (("ServerLimit", children),
                           ("ThreadsPerChild", APACHE_THREADS_PER_CHILD),
                           ("MaxRequestWorkers", children * APACHE_THREADS_PER_CHILD)):
            text, n = re.subn(rf"(?m)^{key} \d+$", f"{key} {value}", text)
            if n != 1:
                raise serve.ServeError(f"{conf}: no '{key} N' line to size for the clients")
        conf.write_text(text + f"ThreadLimit {APACHE_THREADS_PER_CHILD}\n")
        return conf


class Site(ws_suite.BridgeSite):
    """test_ws.py's BridgeSite; behind Apache with SizedApache instead of serve.Apache."""

    def __init__(self, label: str, overrides: Dict[str, object], clients: int) -> None:
        super().__init__(label, overrides)
        self.clients = clients

    def start(self) -> "Site":
        if http_suite.OPTIONS["server"] != "apache":
            super().start()
            return self
        root = http_suite.OPTIONS["state_root"]
        assert isinstance(root, Path)
        self.state_dir = root / self.label
        for attempt in range(5):  # as serve.start_on_free_port: another process took the port
            web = SizedApache(serve.free_port(), self.state_dir,
                              Path(str(http_suite.OPTIONS["build"])), serve.REPO_DIR,
                              self.overrides, fcgi_procs=self.fcgi_procs)
            web.clients = self.clients
            try:
                web.start(timeout=60)
                break
            except serve.PortTaken:
                if attempt == 4:
                    raise
        self.web = web
        try:
            self.start_bridge()
        except BaseException:
            self.stop()
            raise
        return self


# --------------------------------------------------------------------------------------------
# The jobs


def slow_request(seed: int, trials: int) -> Dict[str, Any]:
    """Two leaves with 20 events a trial each: slow enough trials that a job lasts long with
    few trials (the engine keeps every trial's loss in memory), fast enough that the engine's
    chunks of 4,096 trials, after each of which a progress event may be written, take well
    under progress_ms; and a small result (three nodes)."""
    return {"name": f"bridge-crash-{seed}", "trials": trials, "seed": seed, "root": {
        "id": "root", "type": "portfolio", "children": [
            {"id": "a", "type": "leaf", "frequency": {"type": "poisson", "lambda": 20},
             "severity": {"type": "lognormal", "lower": 1000, "upper": 50000}},
            {"id": "b", "type": "leaf", "frequency": {"type": "poisson", "lambda": 20},
             "severity": {"type": "pert", "min": 0, "mode": 100, "max": 1000}}]}}


def overrides(clients: int, progress_ms: int) -> Dict[str, object]:
    """Session caps above what the clients need (all come from 127.0.0.1 through the web
    server), one worker per job, progress events paced by progress_ms."""
    return {"max_sessions_per_ip": 2 * clients + 100, "max_sessions": 2 * clients + 100,
            "workers": JOBS, "sim_threads": 1, "progress_ms": progress_ms,
            "progress_trials": 200, "max_trials": 100_000_000}


def api_call(site: Site, method: str, path: str, body: Optional[object] = None,
             expect: int = 200) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if data is not None else {}
    status, _, raw = serve.http_request(site.url(path), method, data, headers, timeout=60)
    if status != expect:
        raise Failure(f"{method} {path}: expected {expect}, got {status}: {raw[:500]!r}")
    return json.loads(raw)


def calibrate(site: Site) -> float:
    """Trials per second of one engine thread on this build and machine (a synchronous run;
    only used to size the jobs, never checked)."""
    started = time.monotonic()
    api_call(site, "POST", "/simulations", slow_request(1, CALIBRATION_TRIALS))
    return CALIBRATION_TRIALS / max(time.monotonic() - started, 1e-3)


def job_trials(rate: float, seconds: float) -> int:
    """Trials for a job to run about `seconds` while JOBS jobs and the clients share the CPUs."""
    share = min(1.0, (os.cpu_count() or 1) / (JOBS + 1))
    return max(10_000, int(rate * seconds * share))


def submit_jobs(site: Site, trials: int) -> List[str]:
    return [str(api_call(site, "POST", "/simulations/async", slow_request(100 + i, trials),
                         expect=202)["id"]) for i in range(JOBS)]


def polled(site: Site, job_id: str) -> List[Dict[str, Any]]:
    """Every event of the job from the polling endpoint, page by page."""
    out: List[Dict[str, Any]] = []
    after = 0
    while True:
        doc = api_call(site, "GET", f"/simulations/{job_id}/events?after={after}")
        if not doc["events"]:
            return out
        out.extend(doc["events"])
        after = int(doc["next"])


def job_states(site: Site, jobs: Sequence[str]) -> List[str]:
    return [str(api_call(site, "GET", f"/simulations/{j}")["status"]) for j in jobs]


# --------------------------------------------------------------------------------------------
# A client


class Client:
    """Follows one job as the client of docs/api.md section 5 does: the seq of the last event
    received is its cursor; a connection that ends before the job did (the bridge was killed)
    is opened again with ?after=CURSOR, after a backoff that doubles while attempts fail (the
    web server answers 503 while the bridge is down)."""

    def __init__(self, n: int, url: str, rng: random.Random) -> None:
        self.n = n
        self.url = url
        self.rng = rng
        self.events: List[Tuple[int, str]] = []  # (seq, the message's text) of each event
        self.opened = 0  # connections that got their opening status
        self.events_this_connection = 0
        self.failed_attempts = 0
        self.problems: List[str] = []
        self.close: Optional[Tuple[int, str]] = None  # the final close
        self.last_progress = 0.0

    @property
    def after(self) -> int:
        return self.events[-1][0] if self.events else 0

    def take(self, data: Any, first: bool) -> None:
        """One message of a connection: the opening status first, then events (with a seq)
        and messages without one (heartbeats)."""
        if not isinstance(data, str):
            self.problems.append(f"a binary message: {data[:60]!r}")
            return
        msg = json.loads(data)
        if first:
            if msg.get("type") != "status":
                self.problems.append(f"connection {self.opened + 1} began with {data[:200]}")
            self.opened += 1
            self.events_this_connection = 0
            return
        if "seq" not in msg:
            return
        self.events.append((int(msg["seq"]), data))
        self.events_this_connection += 1
        if msg.get("type") == "progress":
            self.last_progress = float(msg["progress"])

    async def connection(self) -> Optional[Tuple[int, str]]:
        """One connection from the handshake to its end; returns its close (code, reason), or
        None when the handshake failed."""
        try:
            async with ws_suite.connect(f"{self.url}?after={self.after}") as ws:
                first = True
                try:
                    async for data in ws:
                        self.take(data, first)
                        first = False
                except websockets.exceptions.ConnectionClosedError:
                    pass  # no close frame (1006): the bridge was killed under it
                return ws.close_code, ws.close_reason
        except (OSError, asyncio.TimeoutError, websockets.exceptions.InvalidHandshake):
            self.failed_attempts += 1
            return None

    async def run(self) -> None:
        failures = 0
        while self.close is None:
            closed = await self.connection()
            if closed is not None and closed[0] in FINAL_CODES:
                self.close = closed
                return
            if closed is not None and self.events_this_connection > 0:
                failures = 0
            delay = min(BACKOFF_MAX, BACKOFF_MIN * 2 ** failures)
            failures += 1
            await asyncio.sleep(delay * self.rng.uniform(0.5, 1.0))


# --------------------------------------------------------------------------------------------
# The run


class Crash:
    """The clients, the jobs and the kills."""

    def __init__(self, site: Site, jobs: Sequence[str], n_clients: int,
                 rng: random.Random) -> None:
        self.site = site
        self.jobs = list(jobs)
        self.rng = rng
        assert site.web is not None
        base = site.web.ws_url
        self.clients = [Client(i, f"{base}/simulations/{jobs[i % len(jobs)]}/stream", rng)
                        for i in range(n_clients)]
        self.kills = 0
        self.collapsed = 0

    @property
    def bridge(self) -> serve.Bridge:
        assert self.site.bridge is not None
        return self.site.bridge

    def job_progress(self) -> float:
        """The least progress any client has seen of its job."""
        return min(c.last_progress for c in self.clients)

    def all_following(self, connections: int) -> bool:
        """Whether every client has had `connections` opened connections and an event on the
        last one (so that a kill now cuts every one of them off in the middle of the flow)."""
        return all(c.opened >= connections and c.events_this_connection > 0
                   for c in self.clients)

    async def wait_until(self, what: str, cond: Any, tasks: Sequence[asyncio.Task]) -> None:
        deadline = time.monotonic() + WAIT_S
        while not cond():
            if any(t.done() for t in tasks):
                raise Failure(f"clients ended while waiting for {what}: the jobs are "
                              f"{job_states(self.site, self.jobs)} (too short for the kills?)")
            if time.monotonic() > deadline:
                raise Failure(f"gave up waiting for {what}\n{self.site.log_tail()}")
            await asyncio.sleep(0.05)

    def collapsed_now(self) -> int:
        """risksim_bridge_messages_collapsed_total of the running bridge."""
        status, _, body = serve.http_request(self.bridge.base_url + "/metrics", timeout=30)
        if status != 200:
            raise Failure(f"the bridge's /metrics answered {status}")
        return int(ws_suite.parse_metrics(body.decode()).get(
            "risksim_bridge_messages_collapsed_total", 0))

    async def kill_and_restart(self) -> None:
        """SIGKILLs the bridge while every job runs, leaves it down for a moment, starts it
        again on the same port."""
        states = await asyncio.to_thread(job_states, self.site, self.jobs)
        if states != ["running"] * len(self.jobs):
            raise Failure(f"the jobs are {states} at kill {self.kills + 1}: too short for the "
                          "kills on this machine")
        self.collapsed += await asyncio.to_thread(self.collapsed_now)
        await asyncio.to_thread(self.bridge.kill)
        self.kills += 1
        down = self.rng.uniform(0.3, 1.0)
        note(f"kill {self.kills}: bridge SIGKILLed at job progress {self.job_progress():.2f}, "
             f"down for {down:.1f} s")
        await asyncio.sleep(down)
        await asyncio.to_thread(self.site.start_bridge)

    async def run(self, thresholds: Sequence[float]) -> None:
        tasks = [asyncio.create_task(c.run()) for c in self.clients]
        try:
            for k, threshold in enumerate(thresholds):
                await self.wait_until(f"every client following its job ({k + 1} connections)",
                                      lambda: self.all_following(k + 1), tasks)
                await self.wait_until(f"job progress {threshold}",
                                      lambda: self.job_progress() >= threshold, tasks)
                await asyncio.sleep(self.rng.uniform(0.0, 0.5))
                await self.kill_and_restart()
            await asyncio.wait_for(asyncio.gather(*tasks), WAIT_S)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        self.collapsed += await asyncio.to_thread(self.collapsed_now)


# --------------------------------------------------------------------------------------------
# The checks


def check_client(c: Client, expected: List[Dict[str, Any]], kills: int) -> Dict[str, int]:
    """One client against the polling endpoint's events of its job. Returns its counts
    (gaps, duplicates, delivered) and records problems in c.problems."""
    got = [s for s, _ in c.events]
    want = [int(e["seq"]) for e in expected]
    counts = {"gaps": len(set(want) - set(got)), "duplicates": len(got) - len(set(got)),
              "delivered": len(got)}
    if c.close != (1000, "job completed"):
        c.problems.append(f"ended with {c.close}, not 1000 'job completed'")
    if got != want:
        extra = sorted(set(got) - set(want))
        c.problems.append(f"seqs differ from the polling endpoint's: {counts['gaps']} missing, "
                          f"{counts['duplicates']} repeated, {len(extra)} not the job's "
                          f"{extra[:5]}\n  polled {want}\n  got    {got}")
    else:
        for (seq, text), event in zip(c.events, expected):
            if json.loads(text) != event:
                c.problems.append(f"event {seq} differs from the polling endpoint's")
                break
    if c.opened < kills + 1:
        c.problems.append(f"only {c.opened} connections for {kills} kills: not cut off")
    return counts


def check_all(crash: Crash) -> Tuple[Dict[str, int], List[str]]:
    expected = {j: polled(crash.site, j) for j in crash.jobs}
    problems = []
    for j, evs in expected.items():
        if not evs or evs[-1]["type"] != "complete":
            problems.append(f"job {j} did not complete: {[e['type'] for e in evs][-5:]}")
    totals = {"gaps": 0, "duplicates": 0, "delivered": 0}
    for c in crash.clients:
        job = crash.jobs[c.n % len(crash.jobs)]
        for key, value in check_client(c, expected[job], crash.kills).items():
            totals[key] += value
        problems += [f"client {c.n} (job {job}): {p}" for p in c.problems]
    totals["events_per_job"] = min(len(e) for e in expected.values())
    return totals, problems


# --------------------------------------------------------------------------------------------


def run(args: argparse.Namespace, root: Path) -> None:
    form = LONG if args.long else SHORT
    seed, rng = relcommon.random_seed(args)
    clients, kills = int(form["clients"]), int(form["kills"])  # type: ignore[arg-type]
    nofile = raise_nofile()
    if nofile < 2 * clients + 256:  # lighttpd: a client's socket and its proxy connection
        raise Failure(f"RLIMIT_NOFILE is {nofile} even after raising the soft limit to the hard "
                      f"one; {clients} clients need about {2 * clients + 256} (ulimit -Hn)")
    note(f"bridge_crash: {args.server}, {'long' if args.long else 'short'} form, random seed "
         f"{seed}, RLIMIT_NOFILE {nofile}, state {root}")
    site = Site("bridge-crash", overrides(clients, int(form["progress_ms"])), clients)
    site.start()
    with relcommon.stopped_on_error(site, "and"):
        rate = calibrate(site)
        trials = job_trials(rate, float(form["job_s"]))  # type: ignore[arg-type]
        note(f"calibration: {rate:.0f} trials/s on one thread; {JOBS} jobs of {trials} trials")
        jobs = submit_jobs(site, trials)
        crash = Crash(site, jobs, clients, rng)
        asyncio.run(crash.run(form["thresholds"]))  # type: ignore[arg-type]
        totals, problems = check_all(crash)
    problems += site.stop()
    figure("clients", clients)
    figure("jobs", JOBS)
    figure("kills", crash.kills)
    figure("reconnects", sum(c.opened - 1 for c in crash.clients))
    figure("failed_handshakes", sum(c.failed_attempts for c in crash.clients))
    figure("events_per_job", totals["events_per_job"])
    figure("events_delivered", totals["delivered"])
    figure("gaps", totals["gaps"])
    figure("duplicates", totals["duplicates"])
    figure("collapsed", crash.collapsed)
    if crash.kills != kills:
        problems.append(f"{crash.kills} kills instead of {kills}")
    if problems:
        raise Failure(f"{len(problems)} problems:\n" + "\n".join(problems[:20]))


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = relcommon.parser(__doc__, "1,000 clients, 3 kills",
                            seed_help="random seed (kill moments, backoff)").parse_args(argv)
    return relcommon.run_main("bridge_crash", args, run, needs_websockets=True,
                              binaries=("fcgi/risksim-fcgi", "wsbridge/risksim-wsbridge"))


if __name__ == "__main__":
    sys.exit(main())
