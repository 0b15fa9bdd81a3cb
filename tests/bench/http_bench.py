#!/usr/bin/env python3
"""http_bench: requests per second and latency of the API through lighttpd and Apache.

Why this file exists: the responder's figures only mean something as a client sees them, through
the web server, the FastCGI round trip, the responder and the job store's durable commit. This
program starts the real servers on loopback from the shipped configurations (scripts/serve.py),
loads them with wrk, and prints figures with the targets beside them (docs/benchmarks.md,
"HTTP: http_bench"). It asserts nothing about speed: it exits 0 whatever the figures, and 1 only
when something did not work (a server did not start, an answer was not 2xx, a job did not
complete, wrk or a web server missing).

For each web server, on a fresh state directory:

  1. the responder with threads 16, workers 2, sim_threads 1, queue_size 1000000 and
     max_sync_trials 1000000 (the lines themselves stay within the default 100,000):
     GET /risksim/healthz (the ceiling); POST /risksim/simulations of 1,000 and of 100,000
     trials (synchronous); GET /risksim/simulations/{id} of a completed job; then --runs times,
     in turn: the CLI on the 1,000,000-trial request (risksim simulate --threads 1, a fresh
     process), the same request as a synchronous run in the responder (the engine alone in a
     warm process: a synchronous run has no progress callback), and the same request as an
     asynchronous job, timed from its `running` status event to its `complete` event; then
     POST /risksim/simulations/async while the two workers run the submitted jobs;
  2. the responder restarted with workers 0 (the queue only grows, so every submission is
     accepted): POST /risksim/simulations/async alone.

The request is examples/enterprise.json with "trials" set per line. wrk runs with --wrk-threads
threads and --connections keep-alive connections for --seconds per line, after one second of
unrecorded GET /healthz per server start; a Lua script written to the temporary directory sets
the POST body and prints wrk's summary as one JSON line (for the async lines also the answers
of each second).

Usage:
  tests/bench/http_bench.py [--build DIR] [--seconds N] [--connections N] [--wrk-threads N]
                            [--runs N] [--servers lighttpd,apache] [--quick] [--keep]
--quick (the smoke test): 1 s per line, one job run, no 100,000-trial line and no async line
with workers running. --keep keeps the state directories and logs.

Python 3 standard library, the wrk binary, and lighttpd and/or apache2.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Dict, List, Optional, Tuple

REPO_DIR = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(REPO_DIR / "scripts"))
import serve  # noqa: E402  (scripts/serve.py)

EXAMPLE = REPO_DIR / "examples" / "enterprise.json"

# The targets (docs/benchmarks.md).
TARGET_SYNC_SHARE = 0.50      # sync 1,000 trials at >= 50% of healthz req/s, through lighttpd
TARGET_ASYNC_PER_S = 2000.0   # async submissions accepted per second
TARGET_JOB_RATIO = 1.01       # a 1,000,000-trial job's run time / the engine's own time

# The responder's settings for every line (on top of the shipped httpd-conf/risksim.conf).
# max_sync_trials is raised so that the engine alone can be timed on the job's request in the
# same process (a synchronous run has no progress callback); the lines use at most 100,000.
RESPONDER = {"threads": 16, "workers": 2, "sim_threads": 1, "queue_size": 1000000,
             "max_sync_trials": 1000000}
JOB_TRIALS = 1000000

WRK_LUA = r"""
-- Written by tests/bench/http_bench.py for one line of the benchmark.
local body_path = %(body)s
local timeline = %(timeline)s
if body_path ~= nil then
  local f = assert(io.open(body_path, "rb"))
  wrk.method = "POST"
  wrk.body = f:read("*a")
  f:close()
  wrk.headers["Content-Type"] = "application/json"
end

-- With timeline, every thread counts its answers per wall-clock second.
local threads = {}
setup = function(thread)
  table.insert(threads, thread)
end
if timeline then
  per_second = {}
  response = function(status, headers, body)
    local s = os.time()
    per_second[s] = (per_second[s] or 0) + 1
  end
end

done = function(summary, latency, requests)
  local seconds = {}
  if timeline then
    local merged, first, last = {}, nil, nil
    for _, t in ipairs(threads) do
      for s, n in pairs(t:get("per_second")) do
        merged[s] = (merged[s] or 0) + n
        if first == nil or s < first then first = s end
        if last == nil or s > last then last = s end
      end
    end
    if first ~= nil then
      for s = first, last do table.insert(seconds, tostring(merged[s] or 0)) end
    end
  end
  io.write(string.format(
    'HTTP_BENCH {"requests":%%d,"duration_us":%%d,"bytes":%%d,"status":%%d,"connect":%%d,' ..
    '"read":%%d,"write":%%d,"timeout":%%d,"p50_us":%%d,"p99_us":%%d,"mean_us":%%.1f,' ..
    '"max_us":%%d,"per_second":[%%s]}\n',
    summary.requests, summary.duration, summary.bytes, summary.errors.status,
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean, latency.max,
    table.concat(seconds, ",")))
end
"""


class BenchError(RuntimeError):
    """Something did not work (not a slow figure: those are only printed)."""


# --------------------------------------------------------------------------------------------
# Facts about the machine and the build


def run_text(args: List[str]) -> str:
    try:
        r = subprocess.run(args, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (r.stdout + r.stderr).strip()


def machine_facts(build: Path) -> List[str]:
    commit = run_text(["git", "-C", str(REPO_DIR), "rev-parse", "--short", "HEAD"]) or "unknown"
    dirty = run_text(["git", "-C", str(REPO_DIR), "status", "--porcelain", "--untracked-files=no"])
    build_type = "unknown"
    try:
        m = re.search(r"(?m)^CMAKE_BUILD_TYPE:\w+=(.*)$", (build / "CMakeCache.txt").read_text())
        if m:
            build_type = m.group(1) or "(none)"
    except OSError:
        pass
    cpu = "unknown"
    try:
        m = re.search(r"(?m)^model name\s*:\s*(.*)$", Path("/proc/cpuinfo").read_text())
        if m:
            cpu = m.group(1).strip()
    except OSError:
        pass
    mem = ""
    try:
        m = re.search(r"(?m)^MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text())
        if m:
            mem = f", {int(m.group(1)) / 1024 / 1024:.0f} GiB RAM"
    except OSError:
        pass
    lighttpd = run_text(["lighttpd", "-v"]).split(" - ")[0] if shutil.which("lighttpd") else "-"
    apache = "-"
    if shutil.which("apache2"):
        m = re.search(r"Server version:\s*(\S+)", run_text(["apache2", "-v"]))
        apache = m.group(1) if m else "apache2"
    wrk = run_text(["wrk", "--version"]).split(" [")[0]
    return [
        f"commit {commit}{' (with uncommitted changes)' if dirty else ''}, "
        f"build {build} ({build_type})",
        f"machine: nproc {os.cpu_count()}, {cpu}{mem}, Linux {platform.release()}",
        f"servers: {lighttpd}, {apache} (mpm_event); {wrk}",
    ]


# --------------------------------------------------------------------------------------------
# wrk


class Line:
    """One measured line: wrk's summary of one URL and body."""

    def __init__(self, label: str, summary: Dict[str, float]):
        self.label = label
        self.s = summary

    @property
    def answers(self) -> int:
        return int(self.s["requests"])

    @property
    def rate(self) -> float:
        return self.s["requests"] / (self.s["duration_us"] / 1e6)

    @property
    def p50_ms(self) -> float:
        return self.s["p50_us"] / 1000.0

    @property
    def p99_ms(self) -> float:
        return self.s["p99_us"] / 1000.0

    @property
    def kib(self) -> float:
        return self.s["bytes"] / max(1, self.s["requests"]) / 1024.0

    @property
    def errors(self) -> str:
        parts = [f"{int(self.s[k])} {k}" for k in ("status", "connect", "read", "write", "timeout")
                 if self.s[k]]
        if not parts:
            return "all 2xx"
        return ", ".join(p.replace(" status", " not 2xx") for p in parts)


class Bench:
    def __init__(self, args: argparse.Namespace, tmp: Path):
        self.args = args
        self.tmp = tmp
        self.build = Path(args.build).resolve()
        self.cli = self.build / "cli" / "risksim"
        self.problems: List[str] = []
        base = json.loads(EXAMPLE.read_text())
        self.bodies: Dict[int, Path] = {}
        for trials in (1000, 100000, 1000000):
            req = dict(base, trials=trials)
            path = tmp / f"request-{trials}.json"
            path.write_text(json.dumps(req))
            self.bodies[trials] = path
        self.leaves = count_leaves(base["root"])

    def lua(self, body: Optional[Path], timeline: bool) -> Path:
        name = f"wrk-{body.stem if body else 'get'}{'-timeline' if timeline else ''}.lua"
        path = self.tmp / name
        if not path.exists():
            lua_body = "nil" if body is None else json.dumps(str(body))
            path.write_text(WRK_LUA % {"body": lua_body, "timeline": str(timeline).lower()})
        return path

    def wrk(self, label: str, url: str, body: Optional[Path] = None,
            seconds: Optional[int] = None, timeline: bool = False) -> Line:
        """One wrk run. timeline: also count the answers per wall-clock second (a Lua
        response() hook, which costs wrk a little; used for the async lines)."""
        args = ["wrk", "-t", str(self.args.wrk_threads), "-c", str(self.args.connections),
                "-d", f"{seconds or self.args.seconds}s", "--timeout", "30s",
                "-s", str(self.lua(body, timeline)), url]
        r = subprocess.run(args, capture_output=True, text=True)
        m = re.search(r"(?m)^HTTP_BENCH (\{.*\})$", r.stdout)
        if r.returncode != 0 or not m:
            raise BenchError(f"wrk failed on {label} (status {r.returncode}):\n"
                             f"{r.stdout}{r.stderr}")
        line = Line(label, json.loads(m.group(1)))
        # Read and write errors are connections the server closed between two requests (which
        # a client reconnects); an answer that is not 2xx, a refused connection or a timeout
        # means that something does not work.
        bad = int(line.s["status"] + line.s["connect"] + line.s["timeout"])
        if line.answers == 0:
            self.problems.append(f"{label}: no answers")
        elif bad:
            self.problems.append(f"{label}: {line.errors}")
        return line

    def warm_up(self, web: serve._WebServer) -> None:
        """One second of GET /healthz, not counted: Apache starts more children under load
        (closing keep-alive connections meanwhile), and the responder's caches fill."""
        subprocess.run(["wrk", "-t", str(self.args.wrk_threads), "-c",
                        str(self.args.connections), "-d", "1s", web.base_url + "/healthz"],
                       capture_output=True)

    # ----------------------------------------------------------------------------------------
    # The web servers

    def server(self, kind: str, state: Path, overrides: Dict[str, object]) -> serve._WebServer:
        cls = serve.Lighttpd if kind == "lighttpd" else serve.Apache
        return cls(serve.free_port(), state, self.build, serve.REPO_DIR, overrides, fcgi_procs=1)

    def request(self, web: serve._WebServer, method: str, path: str,
                body: Optional[bytes] = None, timeout: float = 60.0
                ) -> Tuple[int, Dict[str, str], dict]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        status, hdrs, data = serve.http_request(web.base_url + path, method, body, headers,
                                                timeout=timeout)
        try:
            obj = json.loads(data) if data else {}
        except ValueError:
            obj = {}
        return status, hdrs, obj

    def submit(self, web: serve._WebServer, trials: int) -> str:
        status, _, obj = self.request(web, "POST", "/simulations/async",
                                      self.bodies[trials].read_bytes())
        if status != 202 or "id" not in obj:
            raise BenchError(f"POST /simulations/async answered {status}: {obj}")
        return obj["id"]

    def wait_events(self, web: serve._WebServer, job: str, limit_s: float = 600.0) -> List[dict]:
        """Every event of the job up to its terminal one, by long polls."""
        events: List[dict] = []
        after = 0
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            status, _, obj = self.request(web, "GET",
                                          f"/simulations/{job}/events?after={after}&wait=30")
            if status != 200:
                raise BenchError(f"GET /simulations/{job}/events answered {status}: {obj}")
            events += obj.get("events", [])
            after = obj.get("next", after)
            if any(e.get("type") in ("complete", "error", "cancelled") for e in events):
                return events
        raise BenchError(f"job {job} did not finish within {limit_s:g} s")

    # ----------------------------------------------------------------------------------------
    # One 1,000,000-trial job against the engine alone

    def cli_run(self, trials: int) -> Tuple[float, float]:
        """(process seconds, durationMs) of risksim simulate --threads 1 on the request."""
        t0 = time.perf_counter()
        r = subprocess.run([str(self.cli), "simulate", "--threads", "1", "--progress", "never",
                            str(self.bodies[trials])], capture_output=True)
        wall = time.perf_counter() - t0
        if r.returncode != 0:
            raise BenchError(f"risksim simulate failed: {r.stderr.decode(errors='replace')}")
        return wall, float(json.loads(r.stdout)["durationMs"])

    def job_run(self, web: serve._WebServer, trials: int) -> Dict[str, float]:
        t0 = time.perf_counter()
        job = self.submit(web, trials)
        events = self.wait_events(web, job)
        client_s = time.perf_counter() - t0
        status, _, obj = self.request(web, "GET", f"/simulations/{job}")
        if status != 200 or obj.get("status") != "completed":
            raise BenchError(f"job {job} ended {obj.get('status')}: {obj.get('error')}")
        running = [e for e in events if e["type"] == "status" and e.get("status") == "running"]
        complete = [e for e in events if e["type"] == "complete"]
        if not running or not complete:
            raise BenchError(f"job {job}: no running status event or no complete event")
        return {
            "events_ms": ts_ms(complete[-1]["ts"]) - ts_ms(running[0]["ts"]),
            "fields_ms": ts_ms(obj["finishedAt"]) - ts_ms(obj["startedAt"]),
            "engine_ms": float(obj["result"]["durationMs"]),
            "wait_ms": ts_ms(obj["startedAt"]) - ts_ms(obj["createdAt"]),
            "client_ms": client_s * 1000.0,
            "progress": float(sum(1 for e in events if e["type"] == "progress")),
        }

    def metrics(self, web: serve._WebServer) -> Dict[str, float]:
        """The unlabelled figures of GET /metrics (Prometheus text) by name."""
        status, _, data = serve.http_request(web.base_url + "/metrics", timeout=30)
        out: Dict[str, float] = {}
        if status == 200:
            for line in data.decode("utf-8", "replace").splitlines():
                m = re.match(r"^([a-z_]+) ([-+0-9.eE]+)$", line)
                if m:
                    out[m.group(1)] = float(m.group(2))
        return out

    def sync_engine_ms(self, web: serve._WebServer, trials: int) -> float:
        """durationMs of a synchronous run of the request in the same responder: the engine
        alone (no progress callback) in a warm process."""
        status, _, obj = self.request(web, "POST", "/simulations", self.bodies[trials].read_bytes())
        if status != 200 or "durationMs" not in obj:
            raise BenchError(f"POST /simulations of {trials} trials answered {status}: {obj}")
        return float(obj["durationMs"])

    def job_timing(self, kind: str, web: serve._WebServer) -> Dict[str, float]:
        trials = JOB_TRIALS
        runs = self.args.runs
        rows: List[Dict[str, float]] = []
        self.cli_run(trials)  # the file cache
        self.sync_engine_ms(web, trials)  # the request thread's heap
        before = self.metrics(web)
        for _ in range(runs):
            cli_wall, cli_engine = self.cli_run(trials)
            row = {"cli_wall_ms": cli_wall * 1000.0, "cli_ms": cli_engine,
                   "sync_ms": self.sync_engine_ms(web, trials)}
            row.update(self.job_run(web, trials))
            rows.append(row)
        after = self.metrics(web)
        med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        paired = statistics.median(r["events_ms"] / r["engine_ms"] for r in rows)
        ratio = med["events_ms"] / med["sync_ms"]
        writes = (after.get("risksim_progress_writes_total", 0.0)
                  - before.get("risksim_progress_writes_total", 0.0)) / runs
        lag_ms = after.get("risksim_progress_lag_seconds_max", 0.0) * 1000.0

        def row(label: str, key: str, note: str = "") -> None:
            values = [r[key] for r in rows]
            span = f"{min(values):7.1f} .. {max(values):7.1f}" if runs > 1 else ""
            print(f"    {label:<52} {med[key]:7.1f} ms  {span:>18}  {note}".rstrip())
        plural = "s" if runs > 1 else ""
        print(f"  async job of {trials:,} trials: {runs} run{plural}, each one CLI run, one "
              "synchronous run and one job, in turn (medians, min .. max):")
        row("engine alone, CLI risksim simulate --threads 1", "cli_ms",
            f"(durationMs; the process {med['cli_wall_ms']:.1f} ms)")
        row("engine alone, POST /simulations in the responder", "sync_ms", "(durationMs)")
        row("engine inside the job", "engine_ms",
            f"(its durationMs; {med['progress']:.0f} progress events)")
        row("job run time, running -> complete events", "events_ms",
            f"(startedAt -> finishedAt {med['fields_ms']:.0f} ms)")
        row("queued -> claimed (createdAt -> startedAt)", "wait_ms")
        row("client: submit -> complete event received", "client_ms")
        print(f"    {'progress writes (on the engine thread)':<52} {writes:7.1f} per job, the "
              f"longest {lag_ms:.2f} ms (/metrics): at most "
              f"{writes * lag_ms / med['engine_ms']:.2%} of the engine time")
        print(f"    {'job run time / engine alone in the responder':<52} {ratio:7.3f}")
        print(f"    {'job run time / its own engine time (per run)':<52} {paired:7.3f}     "
              "(beyond the engine: parse, result JSON, the complete write)")
        print(f"    {'engine inside the job / engine alone':<52} "
              f"{med['engine_ms'] / med['sync_ms']:7.3f}     (against the CLI: "
              f"{med['engine_ms'] / med['cli_ms']:.3f})")
        return {"ratio": ratio, "events_ms": med["events_ms"], "engine_alone_ms": med["sync_ms"],
                "paired": paired}

    # ----------------------------------------------------------------------------------------
    # One web server

    def completed_job(self, web: serve._WebServer) -> str:
        job = self.submit(web, 1000)
        events = self.wait_events(web, job)
        if not any(e["type"] == "complete" for e in events):
            raise BenchError(f"job {job} did not complete")
        return job

    def run_server(self, kind: str) -> Dict[str, object]:
        quick = self.args.quick
        out: Dict[str, object] = {}
        lines: List[Line] = []
        print(f"\n{kind}")
        print_header()
        state = self.tmp / f"{kind}-workers2"
        with self.server(kind, state, dict(RESPONDER)) as web:
            self.warm_up(web)
            url = web.base_url
            lines.append(show(self.wrk("GET /healthz", url + "/healthz")))
            lines.append(show(self.wrk("POST /simulations, 1,000 trials",
                                       url + "/simulations", self.bodies[1000])))
            if not quick:
                lines.append(show(self.wrk("POST /simulations, 100,000 trials",
                                           url + "/simulations", self.bodies[100000])))
            job = self.completed_job(web)
            lines.append(show(self.wrk("GET /simulations/{id}, completed",
                                       f"{url}/simulations/{job}")))
            out["job"] = self.job_timing(kind, web)
            if not quick:
                print_header()
                a2 = self.wrk("POST /simulations/async, workers 2", url + "/simulations/async",
                              self.bodies[1000], timeline=True)
                lines.append(show(a2))
                show_timeline(a2)
                _, _, health = self.request(web, "GET", "/healthz")
                print(f"  (after it: {health.get('queueDepth', '?')} jobs still queued; "
                      "the workers ran the others)")
        state0 = self.tmp / f"{kind}-workers0"
        with self.server(kind, state0, dict(RESPONDER, workers=0)) as web:
            self.warm_up(web)
            print_header()
            a0 = self.wrk("POST /simulations/async, workers 0", web.base_url
                          + "/simulations/async", self.bodies[1000], timeline=True)
            lines.append(show(a0))
            show_timeline(a0)
            _, _, health = self.request(web, "GET", "/healthz")
            depth = health.get("queueDepth")
            print(f"  (after it: {depth} jobs queued for {a0.answers} answers counted by wrk; "
                  "wrk does not count answers still in flight when it stops)")
            if not isinstance(depth, int) or depth < a0.answers:
                self.problems.append(f"{kind}: {depth} jobs queued after {a0.answers} "
                                     "accepted submissions")
        out["lines"] = {line.label: line for line in lines}
        return out


def count_leaves(node: dict) -> int:
    if node.get("type") == "leaf":
        return 1
    return sum(count_leaves(c) for c in node.get("children", []))


def ts_ms(text: str) -> float:
    """Milliseconds since the epoch of an RFC 3339 UTC time with milliseconds."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000.0


def print_header() -> None:
    print(f"  {'line':<40} {'req/s':>9} {'p50 ms':>9} {'p99 ms':>9} {'KiB/ans':>8}"
          f" {'answers':>8}  errors")


def show(line: Line) -> Line:
    print(f"  {line.label:<40} {line.rate:9.1f} {line.p50_ms:9.2f} {line.p99_ms:9.2f} "
          f"{line.kib:8.1f} {line.answers:8d}  {line.errors}", flush=True)
    return line


def show_timeline(line: Line) -> None:
    """The answers of each wall-clock second (the first and last seconds are partial)."""
    counts = line.s.get("per_second") or []
    if len(counts) > 2:
        print(f"  (answers per second: {' '.join(str(n) for n in counts)}; the first and the "
              "last second are partial)")


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def print_targets(results: Dict[str, Dict[str, object]]) -> None:
    print("\ntargets:")

    def target(kind: str, what: str, value: str, detail: str, verdict_text: str) -> None:
        print(f"  {kind:<9}{what:<36}{value:>8}  {detail:<24}{verdict_text}")
    for kind, res in results.items():
        lines = res["lines"]  # type: ignore[index]
        health = lines["GET /healthz"]
        sync = lines["POST /simulations, 1,000 trials"]
        share = sync.rate / health.rate
        target(kind, "sync 1,000 trials / healthz", f"{share:.1%}",
               f"({sync.rate:.0f} / {health.rate:.0f} req/s)",
               f"target >= {TARGET_SYNC_SHARE:.0%}: {verdict(share >= TARGET_SYNC_SHARE)}"
               if kind == "lighttpd" else "(the target is for lighttpd)")
        a0 = lines["POST /simulations/async, workers 0"]
        target(kind, "async submissions/s (workers 0)", f"{a0.rate:.0f}", "",
               f"target >= {TARGET_ASYNC_PER_S:.0f}: {verdict(a0.rate >= TARGET_ASYNC_PER_S)}")
        job = res["job"]  # type: ignore[index]
        target(kind, "1,000,000-trial job / its engine", f"{job['paired']:.3f}",
               "(run time / durationMs)",
               f"target <= {TARGET_JOB_RATIO:.2f}: {verdict(job['paired'] <= TARGET_JOB_RATIO)}")
        target(kind, "  against a separate engine run", f"{job['ratio']:.3f}",
               f"({job['events_ms']:.1f} / {job['engine_alone_ms']:.1f} ms)",
               "(medians of separate runs: as noisy as the machine)")


# --------------------------------------------------------------------------------------------


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description="Requests/s and latency of the API through "
                                             "lighttpd and Apache on loopback (wrk).")
    ap.add_argument("--build", default=str(REPO_DIR / "build"), help="CMake build directory")
    ap.add_argument("--seconds", type=int, default=10, help="seconds per wrk line (default 10)")
    ap.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    ap.add_argument("--wrk-threads", type=int, default=2, help="wrk threads (default 2)")
    ap.add_argument("--runs", type=int, default=9,
                    help="runs of the 1,000,000-trial job, of the CLI and of the synchronous "
                         "run (default 9)")
    ap.add_argument("--servers", default="lighttpd,apache",
                    help="comma-separated: lighttpd, apache (default both)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 1 s per line, one job run, fewer lines")
    ap.add_argument("--keep", action="store_true",
                    help="keep the temporary directory (state, logs) and print its path")
    args = ap.parse_args(argv)
    if args.quick:
        args.seconds, args.runs = 1, 1
    kinds = [k.strip() for k in args.servers.split(",") if k.strip()]
    for k in kinds:
        if k not in ("lighttpd", "apache"):
            ap.error(f"unknown server {k!r}")
    if args.seconds < 1 or args.connections < 1 or args.wrk_threads < 1 or args.runs < 1:
        ap.error("--seconds, --connections, --wrk-threads and --runs must be at least 1")
    if args.connections < args.wrk_threads:
        args.wrk_threads = args.connections
    missing = [b for b in ["wrk"] + [{"lighttpd": "lighttpd", "apache": "apache2"}[k]
                                     for k in kinds] if shutil.which(b) is None]
    if missing:
        print(f"http_bench: {', '.join(missing)} not installed (bash scripts/deps.sh test "
              "installs it)", file=sys.stderr)
        return 1
    build = Path(args.build).resolve()
    for binary in (build / "fcgi" / "risksim-fcgi", build / "cli" / "risksim"):
        if not binary.exists():
            print(f"http_bench: {binary} is missing: build first", file=sys.stderr)
            return 1

    tmp = Path(tempfile.mkdtemp(prefix="http_bench."))
    os.chmod(tmp, 0o755)  # Apache's children (www-data when started as root) reach the sockets
    bench = Bench(args, tmp)
    print("http_bench: " + "\n".join(machine_facts(build)))
    print(f"wrk: {args.wrk_threads} threads, {args.connections} keep-alive connections, "
          f"{args.seconds} s per line; request {EXAMPLE.relative_to(REPO_DIR)} "
          f"({bench.leaves} leaves) with trials set per line")
    print("responder (shipped httpd-conf/risksim.conf plus): threads 16, workers 2 "
          "(0 for the last line), sim_threads 1, queue_size 1000000, max_sync_trials 1000000,"
          " log_level info;")
    print("  lighttpd: the shipped 10-risksim.conf, max-procs 1 (lighttpd spawns one responder);"
          " Apache: the shipped risksim.conf, one responder on a unix socket, mpm_event")
    results: Dict[str, Dict[str, object]] = {}
    try:
        for kind in kinds:
            results[kind] = bench.run_server(kind)
        print_targets(results)
    except (BenchError, serve.ServeError) as e:
        print(f"http_bench: {e}", file=sys.stderr)
        bench.problems.append(str(e).splitlines()[0])
    finally:
        if args.keep:
            print(f"\nstate and logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if bench.problems:
        print("\nhttp_bench: something did not work:\n  " + "\n  ".join(bench.problems),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
