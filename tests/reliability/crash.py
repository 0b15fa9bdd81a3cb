#!/usr/bin/python3
"""Reliability: responder processes SIGKILLed while 100 async jobs run.

Why this file exists: docs/api.md promises that a job whose worker died is taken up again
once its lease runs out, "with the same result", and docs/internals.md that the lease protocol
never completes a job twice. The integration tests kill one process under one job; this
program kills every responder process at once, at moments when several of 100 jobs are in the
middle of their trials, the way a crash, an OOM kill or a power cut of the host would. It runs
the shipped web server configuration (scripts/serve.py) with two responder processes: lighttpd
spawns them itself (max-procs 2) and respawns a killed one; behind Apache, two processes share
one socket (as spawn-fcgi -F 2 does) and this program starts them again. Leases are shortened
(lease_s = 2) so that the reaper re-queues the interrupted jobs quickly.

Afterwards every job must be completed, with exactly one `complete` event, and its result must
be identical (every member, in order, every number's exact text; only the job `id` and the
measured `durationMs` differ) to a synchronous POST /simulations of the same request. Every
job that was running on a killed process must have been re-queued and run again. The SQLite
file must hold exactly the jobs submitted and pass `risksim db check`.

    /usr/bin/python3 tests/reliability/crash.py --build BUILD_DIR [--server lighttpd|apache] \\
        [--long] [--keep] [--seed N]

Default (short form, for the test command): 100 jobs of 80k-230k trials, one kill round of
both processes. --long: 100 jobs of 1M-2.5M trials and 5 kill rounds at random moments (the
random seed is printed; --seed repeats a run). Prints `FIGURE key=value` lines and ends with
PASS (exit 0) or FAIL and the reason (exit 1). State goes to a temporary directory, removed
unless --keep or on failure. Timeouts only guard against hangs; nothing asserts a duration.

Python 3 standard library, relcommon.py (the frame shared with the other programs here),
scripts/serve.py and tests/integration/test_http.py (its Site).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import copy
import json
import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

import relcommon  # (first: it puts scripts/ and tests/integration/ on sys.path)
from relcommon import REPO, Failure, db_query, figure, note
import serve
import test_http as http_suite  # (its Site, its requests and its options)

JOBS = 100
PROCS = 2
WORKERS = 4  # per process: 8 jobs run at once, so that a kill interrupts several
SHORT = {"trials": (80_000, 230_000), "rounds": 1}
LONG = {"trials": (1_000_000, 2_500_000), "rounds": 5}
# Only against hangs (generous for sanitizer builds on a busy machine).
WAIT_S = 600.0
FINAL = ("completed", "failed", "cancelled")
ENTERPRISE = json.loads((REPO / "examples" / "enterprise.json").read_text())


# --------------------------------------------------------------------------------------------
# The jobs


def job_request(i: int, trials: int) -> Dict[str, Any]:
    """Job i: alternately examples/enterprise.json (metalog, controls) and the integration
    tests' small tree, each with its own seed and trial count."""
    if i % 2:
        doc = copy.deepcopy(ENTERPRISE)
    else:
        doc = http_suite.small_request()
    doc.update(name=f"crash-{i}", seed=1000 + 7919 * i, trials=trials)
    return doc


def job_requests(rng: random.Random, trials: Tuple[int, int]) -> List[Dict[str, Any]]:
    return [job_request(i, rng.randrange(trials[0], trials[1] + 1)) for i in range(JOBS)]


def overrides(max_trials: int, rounds: int) -> Dict[str, object]:
    """Short leases (the reaper re-queues a dead worker's job after 2 s), more workers, room
    for 100 queued jobs, synchronous runs as large as the jobs, and enough attempts for a job
    interrupted in every round (plus a spare for a lease that a starved thread let run out)."""
    return {"workers": WORKERS, "sim_threads": 1, "lease_s": 2, "maintenance_ms": 100,
            "max_attempts": rounds + 5, "queue_size": 1000, "progress_ms": 20,
            "progress_trials": 5000, "max_trials": max(max_trials, 100_000),
            "max_sync_trials": max(max_trials, 100_000)}


# --------------------------------------------------------------------------------------------
# The HTTP API through the web server


class Api:
    """Requests through the web server. A 5xx that the web server made itself (the responder
    it picked was just killed) is retried; anything the responder answers is returned."""

    def __init__(self, site: http_suite.Site) -> None:
        self.site = site

    def call(self, method: str, path: str, body: Optional[object] = None,
             timeout: float = 120.0) -> Tuple[int, bytes]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                status, hdrs, raw = serve.http_request(self.site.url(path), method, data, headers,
                                                       timeout=timeout)
            except OSError as e:
                status, hdrs, raw = 0, {}, repr(e).encode()
            from_web_server = status == 0 or (
                status >= 500 and "problem+json" not in hdrs.get("content-type", ""))
            if not from_web_server:
                return status, raw
            if time.monotonic() > deadline:
                raise Failure(f"{method} {path}: the web server kept answering {status}: "
                              f"{raw[:300]!r}\n{self.site.log_tail()}")
            time.sleep(0.1)

    def json(self, method: str, path: str, body: Optional[object] = None,
             expect: int = 200) -> Any:
        status, raw = self.call(method, path, body)
        if status != expect:
            raise Failure(f"{method} {path}: expected {expect}, got {status}: {raw[:500]!r}")
        return json.loads(raw)

    def raw(self, path: str) -> bytes:
        status, raw = self.call("GET", path)
        if status != 200:
            raise Failure(f"GET {path}: expected 200, got {status}: {raw[:500]!r}")
        return raw

    def events(self, job_id: str) -> List[Any]:
        """Every event of the job from the polling endpoint, page by page, each parsed exactly
        (see exact())."""
        out: List[Any] = []
        after = 0
        while True:
            doc = exact(self.raw(f"/simulations/{job_id}/events?after={after}"))
            events = member(doc, "events")
            if not events:
                return out
            out.extend(events)
            after = int(plain(member(doc, "next")))


# --------------------------------------------------------------------------------------------
# Exact JSON: objects as lists of (key, value) pairs in their order, numbers as their text


def exact(raw: bytes) -> Any:
    """The JSON text as nested lists: an object is a list of [key, value] pairs in the order
    sent, a number keeps its exact text. Two of these are equal only if the texts are equal up
    to blanks between tokens."""
    return json.loads(raw, object_pairs_hook=lambda pairs: [list(p) for p in pairs],
                      parse_float=lambda s: ("num", s), parse_int=lambda s: ("num", s),
                      parse_constant=lambda s: ("num", s))


def member(obj: Any, key: str, default: Any = None) -> Any:
    for k, v in obj:
        if k == key:
            return v
    return default


def without(obj: Any, keys: Sequence[str]) -> Any:
    return [[k, v] for k, v in obj if k not in keys]


def plain(value: Any) -> Any:
    """An exact value as ordinary Python (for the checks that need numbers or strings)."""
    if isinstance(value, tuple) and value and value[0] == "num":
        return json.loads(value[1])
    if isinstance(value, list) and all(isinstance(p, list) and len(p) == 2
                                       and isinstance(p[0], str) for p in value) and value:
        return {k: plain(v) for k, v in value}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


# What may differ between two runs of one request: the job's id and the measured time.
VARIABLE = ("id", "durationMs")


# --------------------------------------------------------------------------------------------
# The job store, read directly (read-only)


def db_rows(db: Path) -> Dict[str, Tuple[str, Optional[str], int]]:
    """{job id: (state, lease_owner, attempts)} read straight from the SQLite file."""
    return {r[0]: (r[1], r[2], r[3]) for r in
            db_query(db, "SELECT id, state, lease_owner, attempts FROM jobs")}


def owner_pid(owner: Optional[str]) -> Optional[int]:
    """The pid in a lease owner "host:pid:wN"."""
    try:
        return int(str(owner).split(":")[-2])
    except (IndexError, ValueError):
        return None


def running_with_progress(db: Path, ids: Set[str]) -> int:
    """How many of ids are running and have written progress (trials_done > 0)."""
    marks = ",".join("?" * len(ids))
    return db_query(db, f"SELECT count(*) FROM jobs WHERE state = 'running' AND trials_done > 0"
                        f" AND id IN ({marks})", sorted(ids))[0][0]


def finished_count(db: Path, ids: Set[str]) -> int:
    """How many of ids have ended (a job missing from the store counts: it will not end, and
    the checks report it as lost)."""
    rows = db_rows(db)
    return sum(1 for i in ids if i not in rows or rows[i][0] in FINAL)


# --------------------------------------------------------------------------------------------
# The responder processes


def responder_pids(site: http_suite.Site) -> List[int]:
    return site.responder_pids()


def kill_all_responders(site: http_suite.Site) -> List[int]:
    """SIGKILLs every responder process at once (all signals sent before any wait), waits
    until they are gone, and returns their pids."""
    pids = responder_pids(site)
    if len(pids) != PROCS:
        raise Failure(f"expected {PROCS} responder processes, found {pids}\n{site.log_tail()}")
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    web = site.web
    if isinstance(web, serve.Apache):
        for r in web.responders:
            if r.pid in pids:
                r.wait(WAIT_S)
    http_suite.wait_for("the killed responders to be gone",
                        lambda: not any(serve._pid_alive(p) for p in pids), timeout=WAIT_S)
    return pids


def wait_serving_again(site: http_suite.Site, killed: Sequence[int]) -> None:
    """lighttpd respawns its bin-path children by itself; behind Apache they are started here
    (as a supervisor would). Then the API must answer through the web server."""
    site.revive()
    http_suite.wait_for(f"{PROCS} new responder processes", lambda: len(
        [p for p in responder_pids(site) if p not in killed]) == PROCS, timeout=WAIT_S,
        describe=site.log_tail)
    http_suite.wait_for("the service to answer", lambda: serve.http_request(
        site.url("/healthz"), timeout=30)[0] == 200, timeout=WAIT_S, describe=site.log_tail)


def kill_round(site: http_suite.Site, db: Path, ids: Set[str]) -> Tuple[List[int], Set[str]]:
    """Kills both processes; returns their pids and the jobs they were running (read from the
    database once they are dead: nothing but the reaper, after the lease, can change those)."""
    killed = kill_all_responders(site)
    interrupted = {i for i, (state, owner, _) in db_rows(db).items()
                   if i in ids and state == "running" and owner_pid(owner) in killed}
    return killed, interrupted


def wait_for_kill_moment(db: Path, ids: Set[str], done_at_least: int, deadline: float) -> bool:
    """Waits until at least done_at_least of the jobs have finished and at least two are
    running with progress written. False when the jobs ran out first (nothing left to
    interrupt)."""
    while time.monotonic() < deadline:
        done = finished_count(db, ids)
        if done >= len(ids):
            return False
        if done >= done_at_least and running_with_progress(db, ids) >= 2:
            return True
        time.sleep(0.01)
    raise Failure("gave up waiting for jobs to run")


# --------------------------------------------------------------------------------------------
# The run


def submit_all(api: Api, bodies: Sequence[Dict[str, Any]]) -> List[str]:
    ids = []
    for body in bodies:
        doc = api.json("POST", "/simulations/async", body, expect=202)
        ids.append(str(doc["id"]))
    if len(set(ids)) != len(ids):
        raise Failure(f"the service gave two submissions the same id: {ids}")
    return ids


def crash_phase(site: http_suite.Site, db: Path, ids: Set[str], rounds: int,
                rng: random.Random) -> Tuple[int, int, Set[str], int]:
    """The kill rounds: round k waits until about k/(rounds+1) of the jobs (randomized) have
    finished and some are running, waits a random moment more, kills both processes and waits
    until the service is back. Returns (processes killed, rounds done, interrupted jobs, runs
    interrupted: a job cut off in two rounds counts twice)."""
    kills, done_rounds, runs = 0, 0, 0
    interrupted: Set[str] = set()
    deadline = time.monotonic() + WAIT_S
    for k in range(rounds):
        lo = k / (rounds + 1)
        hi = (k + 1) / (rounds + 1)
        target = int(len(ids) * rng.uniform(lo, (lo + hi) / 2)) if rounds > 1 else len(ids) // 10
        if not wait_for_kill_moment(db, ids, target, deadline):
            break
        time.sleep(rng.uniform(0.0, 0.3) if rounds > 1 else 0.0)
        killed, hit = kill_round(site, db, ids)
        kills += len(killed)
        done_rounds += 1
        interrupted |= hit
        runs += len(hit)
        note(f"round {k + 1}: killed responders {killed} with {finished_count(db, ids)} of "
             f"{len(ids)} jobs finished, {len(hit)} running on them")
        if not hit:
            raise Failure(f"round {k + 1}: no job was running on the killed processes "
                          "(the kill tested nothing)")
        wait_serving_again(site, killed)
    if done_rounds < rounds:
        raise Failure(f"the jobs finished after {done_rounds} of {rounds} kill rounds: "
                      "make them longer")
    return kills, done_rounds, interrupted, runs


def wait_all_finished(site: http_suite.Site, db: Path, ids: Set[str]) -> None:
    def describe() -> str:
        rows = db_rows(db)
        states: Dict[str, int] = {}
        for i in ids:
            states[rows.get(i, ("missing",))[0]] = states.get(rows.get(i, ("missing",))[0], 0) + 1
        return f"states {states}\n{site.log_tail()}"
    http_suite.wait_for("every job to finish", lambda: finished_count(db, ids) == len(ids),
                        timeout=WAIT_S, interval=0.2, describe=describe)


def sync_references(api: Api, bodies: Sequence[Dict[str, Any]]) -> List[Tuple[Any, str]]:
    """The synchronous run of each request: (its exact result, its stored job's id)."""
    def one(body: Dict[str, Any]) -> Tuple[Any, str]:
        status, raw = api.call("POST", "/simulations", body, timeout=300)
        if status != 200:
            raise Failure(f"POST /simulations {body['name']}: {status}: {raw[:500]!r}")
        doc = exact(raw)
        return doc, str(plain(member(doc, "id")))
    with concurrent.futures.ThreadPoolExecutor(max_workers=PROCS) as pool:
        return list(pool.map(one, bodies))


# --------------------------------------------------------------------------------------------
# The checks


def check_job(api: Api, job_id: str, reference: Any, was_interrupted: bool
              ) -> Dict[str, object]:
    """One job against its synchronous twin; returns what was found (see tally)."""
    status, raw = api.call("GET", f"/simulations/{job_id}")
    if status == 404:
        return {"id": job_id, "status": "missing", "attempts": 0,
                "problems": ["GET answers 404: the job is lost"]}
    if status != 200:
        raise Failure(f"GET /simulations/{job_id}: {status}: {raw[:500]!r}")
    job = exact(raw)
    found: Dict[str, object] = {"id": job_id, "status": plain(member(job, "status")),
                                "attempts": plain(member(job, "attempts")), "problems": []}
    problems: List[str] = found["problems"]  # type: ignore[assignment]
    if found["status"] != "completed":
        problems.append(f"status {found['status']}, error {plain(member(job, 'error'))}")
        return found
    result = member(job, "result")
    if plain(member(result, "id")) != job_id:
        problems.append("the result's id is not the job's")
    identical = without(result, VARIABLE) == without(reference, VARIABLE)
    found["identical"] = identical
    if not identical:
        problems.append("the result differs from the synchronous run of the same request")
    events = api.events(job_id)
    kinds = [plain(member(e, "type")) for e in events]
    seqs = [int(plain(member(e, "seq"))) for e in events]
    found["completes"] = kinds.count("complete")
    if seqs != sorted(set(seqs)):
        problems.append(f"event seqs not strictly increasing: {seqs}")
    if kinds.count("complete") != 1 or kinds[-1] != "complete":
        problems.append(f"events {kinds}: not exactly one complete, last")
    for e in events:
        if plain(member(e, "type")) == "complete" and member(e, "result") != result:
            problems.append("the complete event's result is not the job's result")
    statuses = [plain(member(e, "status")) for e in events if plain(member(e, "type")) == "status"]
    requeued = statuses.count("queued") - 1
    found["requeued"] = requeued
    if was_interrupted and (requeued < 1 or int(found["attempts"]) < 2):  # type: ignore
        problems.append(f"was running on a killed process but not run again (status events "
                        f"{statuses}, attempts {found['attempts']})")
    if statuses[:2] != ["queued", "running"] or statuses.count("running") != requeued + 1:
        problems.append(f"status events {statuses}")
    return found


def check_store(build: Path, db: Path, expected: Set[str]) -> List[str]:
    """The SQLite file itself: exactly the jobs submitted (async and sync), one complete event
    per job, and `risksim db check`."""
    problems = []
    stored = {r[0] for r in db_query(db, "SELECT id FROM jobs")}
    if stored != expected:
        problems.append(f"the job store holds {len(stored)} jobs; missing "
                        f"{sorted(expected - stored)[:5]}, "
                        f"unexpected {sorted(stored - expected)[:5]}")
    twice = db_query(db, "SELECT job_id, count(*) FROM events WHERE type = 'complete' "
                         "GROUP BY job_id HAVING count(*) > 1")
    if twice:
        problems.append(f"jobs with more than one complete event in the store: {twice[:5]}")
    code, out = relcommon.db_check(build, db)
    if code != 0:
        problems.append(f"risksim db check failed ({code}): {out}")
    return problems


def tally(found: Sequence[Dict[str, object]]) -> Dict[str, int]:
    return {
        "identical": sum(1 for f in found if f.get("identical")),
        "lost": sum(1 for f in found if f["status"] != "completed"),
        "duplicated_completions": sum(max(0, int(f.get("completes", 1)) - 1)  # type: ignore
                                      for f in found),
        "rerun": sum(1 for f in found if int(f.get("requeued", 0)) > 0),  # type: ignore
        "max_attempts_used": max(int(f["attempts"] or 0) for f in found),  # type: ignore
    }


# --------------------------------------------------------------------------------------------


def run(args: argparse.Namespace, root: Path) -> None:
    form = LONG if args.long else SHORT
    seed, rng = relcommon.random_seed(args)
    note(f"crash: {args.server}, {'long' if args.long else 'short'} form, random seed {seed}, "
         f"state {root}")
    bodies = job_requests(rng, form["trials"])  # type: ignore[arg-type]
    rounds = int(form["rounds"])  # type: ignore[arg-type]
    site = http_suite.Site("crash", overrides(form["trials"][1], rounds),  # type: ignore
                           fcgi_procs=PROCS)
    site.start()
    with relcommon.stopped_on_error(site, "and sanitizer reports"):
        assert site.state_dir is not None
        db = site.state_dir / "risksim.db"
        api = Api(site)
        ids = submit_all(api, bodies)
        kills, done_rounds, interrupted, runs = crash_phase(site, db, set(ids), rounds, rng)
        wait_all_finished(site, db, set(ids))
        references = sync_references(api, bodies)
        found = [check_job(api, i, ref, i in interrupted) for i, (ref, _) in zip(ids, references)]
        store_problems = check_store(Path(args.build), db,
                                     set(ids) | {sync_id for _, sync_id in references})
    findings = site.stop()
    counts = tally(found)
    figure("jobs", len(ids))
    figure("trials_total", sum(int(b["trials"]) for b in bodies))
    figure("kills", kills)
    figure("kill_rounds", done_rounds)
    figure("resumed", len(interrupted))
    figure("interrupted_runs", runs)
    for key in ("identical", "lost", "duplicated_completions", "rerun", "max_attempts_used"):
        figure(key, counts[key])
    problems = [f"job {f['id']}: {p}" for f in found for p in f["problems"]]  # type: ignore
    problems += store_problems
    problems += [f"sanitizer report:\n{x}" for x in findings]
    if problems:
        raise Failure(f"{len(problems)} problems:\n" + "\n".join(problems[:40]))


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = relcommon.parser(__doc__, "larger jobs, 5 kill rounds",
                            seed_help="random seed (kill moments, trials)").parse_args(argv)
    return relcommon.run_main("crash", args, run,
                              binaries=("fcgi/risksim-fcgi", "cli/risksim"))


if __name__ == "__main__":
    sys.exit(main())
