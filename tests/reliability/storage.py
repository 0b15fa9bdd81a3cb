#!/usr/bin/python3
"""Storage faults: the job store's disk fills up, or its file system turns read-only, under load.

Why this file exists: every job and event lives in one SQLite file. When its disk is full or
read-only, the service must say so (503 application/problem+json with the documented type and
Retry-After, docs/api.md "Errors"), keep running, lose no job it accepted, and be whole again
once the disk is. Nothing else runs the daemons on a disk that really is full or read-only; this
program does, through the real web server and the bridge from the shipped configurations
(scripts/serve.py), with the database on a small file system of its own:

    /usr/bin/python3 tests/reliability/storage.py --build BUILD_DIR [--server lighttpd|apache]
        [--long] [--keep]

It needs root: it re-executes itself under `unshare -m --propagation private` (a private mount
namespace, so that nothing it mounts is seen outside or outlives it) and mounts there:

1. Disk full: a tmpfs of a few MiB holds the database. A filler file takes all its free space
   (and is topped up while the load runs) while clients run synchronous and asynchronous
   submissions, event polls and long polls, job reads, cancels and health checks, and
   WebSocket streams follow the jobs. Every answer must be a normal success or a 503
   problem+json of type storage-full, storage-unavailable or busy with Retry-After (never a 500,
   a web server error or no answer), at least one must be such a 503 (the fault must bite), the
   daemons must keep their process ids, and every stream must end with a documented close
   code. Then the filler goes: new jobs succeed, every job accepted before or during the fault
   (200 or 202) ends completed, cancelled or failed with its terminal event (none vanishes),
   and `risksim db check` passes.
2. Read-only while running: an ext4 image on a loop device, mounted with errors=remount-ro,
   holds the database; an ext4 error (/sys/fs/ext4/DEV/trigger_fs_error) turns it read-only
   under the running daemons, as a failing disk does. (A plain `mount -o remount,ro` is refused
   while SQLite holds the files open for writing, and chmod does not bind root, so this is the
   only way a file system goes read-only under a running service.) Writes must be 503
   storage-unavailable (or -full, busy) with Retry-After, reads must work, /healthz must agree
   with the reads (docs/api.md: 200 while the store can be read), and nothing may crash. Then
   the operator's repair: stop the daemons, unmount, e2fsck, mount read-write, start again:
   every accepted job ends, new jobs succeed, db check passes. Where the kernel has no loop
   devices or no ext4 trigger_fs_error, the program fails and says so (it does not skip).
3. Starting on a read-only database (the file system remounted read-only while everything was
   stopped): after a clean stop (no -wal/-shm beside the file) the responder must refuse to
   start with status 1 and a log line naming the database (docs/operations.md) and the bridge
   must keep running with /healthz 503 and close sessions with 1011; after a crash (-wal and
   -shm left beside it) the whole site starts, reads work, writes are 503 storage-unavailable.
   Read-write again, the service works and db check passes.

Figures are printed as `FIGURE key=value` lines (requests during each fault, 503s by type,
successes, jobs accounted for, ...), then PASS (exit 0) or FAIL with every failed check
(exit 1). It also fails on a sanitizer report in any daemon log (an ASan build directory
works) and when a daemon does not stop cleanly. Nothing here asserts durations; timeouts only
keep a broken service from hanging the program. --long runs more requests, clients and jobs.
The state lives in a temporary directory, removed unless --keep (or on failure, when the
databases are copied there too).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import relcommon  # (first: it puts scripts/ and tests/integration/ on sys.path)
from relcommon import Tally
import httpclient
import serve
import test_http as http_suite
import test_ws as ws_suite

NAMESPACE_MARK = "RISKSIM_STORAGE_TEST_NAMESPACE"
WAIT_S = 240.0  # only against hangs: generous for sanitizer builds on a busy machine
STORAGE_PROBLEMS = ("storage-full", "storage-unavailable", "busy")
TERMINAL = ("completed", "failed", "cancelled")
LAST_EVENT = {"completed": "complete", "failed": "error", "cancelled": "cancelled"}
# Close codes a stream may end with while the store is faulty or the job ends (docs/api.md 5).
STREAM_CLOSES = {1000, 4000, 1011}
# The settings of every site: short leases, so that a job whose result could not be stored
# runs again soon after the disk is back (the default is 30 s).
BASE_OVERRIDES: Dict[str, object] = {"lease_s": 2}


class StorageError(AssertionError):
    """A check failed in a way that stops the phase (the message says which)."""


# ------------------------------------------------------------------------------------------
# File systems


def run(args: Sequence[str], check: bool = True,
        timeout: float = 120) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise StorageError(f"{' '.join(args)} failed ({proc.returncode}): "
                           f"{proc.stdout.strip()} {proc.stderr.strip()}")
    return proc


def mount_options(path: Path) -> List[str]:
    """The options of the mount at path (from /proc/self/mountinfo), both per-mount and
    per-superblock."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == str(path):
            sep = fields.index("-")
            return fields[5].split(",") + fields[sep + 3].split(",")
    return []


def mount_source(path: Path) -> Optional[str]:
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == str(path):
            return fields[fields.index("-") + 2]
    return None


class Volume:
    """A small file system mounted at path, in this process's private mount namespace: a
    tmpfs of size_kib, or an ext4 image on a loop device mounted errors=remount-ro."""

    def __init__(self, path: Path, kind: str, size_kib: int, image: Optional[Path] = None):
        self.path = path
        self.kind = kind
        self.size_kib = size_kib
        self.image = image
        self.filler = path / "filler"
        self.mounted = False

    def mount(self, read_only: bool = False) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        ro = ["-o", "ro"] if read_only else []
        if self.kind == "tmpfs":
            run(["mount", "-t", "tmpfs", "-o", f"size={self.size_kib}k,mode=0755",
                 "risksim-storage", str(self.path)])
        else:
            assert self.image is not None
            if not self.image.exists():
                run(["truncate", "-s", f"{self.size_kib}K", str(self.image)])
                run(["mkfs.ext4", "-q", "-F", "-O", "^has_journal", "-m", "0", str(self.image)])
            run(["mount", "-t", "ext4", "-o", "loop,errors=remount-ro", *ro, str(self.image),
                 str(self.path)])
        self.mounted = True

    def umount(self) -> None:
        if self.mounted:
            run(["umount", str(self.path)])
            self.mounted = False

    def remount(self, read_only: bool) -> None:
        run(["mount", "-o", "remount," + ("ro" if read_only else "rw"), str(self.path)])

    def read_only(self) -> bool:
        return "ro" in mount_options(self.path) or "emergency_ro" in mount_options(self.path)

    def free_bytes(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def fill(self) -> int:
        """Writes the filler until the file system is full (ENOSPC at 64 KiB, then at 4 KiB,
        then at 1 byte). Returns the bytes the filler holds."""
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for size in (65536, 4096, 512, 1):
                chunk = b"\xa5" * size
                while True:
                    try:
                        os.write(fd, chunk)
                    except OSError as e:
                        if e.errno != errno.ENOSPC:
                            raise
                        break
            return os.fstat(fd).st_size
        finally:
            os.close(fd)

    def unfill(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.filler.unlink()

    def loop_device(self) -> Optional[str]:
        source = mount_source(self.path)
        return source.rsplit("/", 1)[-1] if source and source.startswith("/dev/loop") else None

    def trigger_error(self) -> None:
        """An ext4 error: with errors=remount-ro the kernel turns the file system read-only at
        once, under the open files (as after an I/O error of the disk)."""
        dev = self.loop_device()
        if dev is None:
            raise StorageError(f"{self.path} is not on a loop device")
        Path(f"/sys/fs/ext4/{dev}/trigger_fs_error").write_text("risksim storage.py test\n")

    def repair(self) -> int:
        """What an operator does after such an error: unmount, e2fsck, mount read-write.
        Returns e2fsck's status (0: clean, 1: errors corrected)."""
        self.umount()
        proc = run(["e2fsck", "-fy", str(self.image)], check=False)
        if proc.returncode not in (0, 1):
            raise StorageError(f"e2fsck failed ({proc.returncode}): {proc.stdout}{proc.stderr}")
        self.mount()
        return proc.returncode


def ext4_unavailable() -> Optional[str]:
    """Why the read-only-while-running phase cannot run here, or None."""
    if not Path("/dev/loop-control").exists():
        return "no /dev/loop-control (loop devices)"
    if shutil.which("mkfs.ext4") is None or shutil.which("e2fsck") is None:
        return "mkfs.ext4/e2fsck are not installed"
    if "ext4" not in Path("/proc/filesystems").read_text():
        return "the kernel has no ext4"
    if not Path("/sys/fs/ext4").is_dir():
        return "no /sys/fs/ext4"
    return None


def mount_database(vol: Volume) -> Tuple[Path, Dict[str, object]]:
    """Mounts vol for a phase's job store: (the database file on it, the site settings that
    put the job store there)."""
    vol.mount()
    db = vol.path / "risksim.db"
    return db, {**BASE_OVERRIDES, "db_path": str(db)}


def db_check(opts: argparse.Namespace, db: Path, tally: Tally, what: str) -> None:
    """`risksim db check --db FILE`; when it fails, so does the check `what`, with its
    output."""
    code, out = relcommon.db_check(Path(opts.build), db)
    tally.check(code == 0, f"{what} failed: {out}")


def unmount(opts: argparse.Namespace, root: Path, vol: Volume, phase: str,
            tally: Tally) -> None:
    """Unmounts the volume of a phase; with --keep or after a failure, first copies its
    database files to ROOT/PHASE-db (the volume goes with the namespace)."""
    if opts.keep or tally.failures:
        dest = root / f"{phase}-db"
        dest.mkdir(exist_ok=True)
        for p in vol.path.glob("risksim.db*"):
            shutil.copy2(p, dest / p.name)
    vol.umount()


# ------------------------------------------------------------------------------------------
# The site and its clients


def small(seed: int, trials: int = 2000) -> bytes:
    return json.dumps(http_suite.small_request(seed=seed, trials=trials,
                                               name=f"storage-{seed}")).encode()


@dataclass
class Answer:
    """One request during a fault and how it was judged."""
    what: str
    status: int
    verdict: str  # "ok", a problem type ("storage-full", ...), or "bad"
    detail: str = ""
    stage: str = ""  # before, during or after the fault (when the answer came)
    job_id: Optional[str] = None  # the job a submission created


class Client:
    """Requests to the site through the web server, judged against the documented answers."""

    def __init__(self, site: ws_suite.BridgeSite, tally: Tally, phase: str):
        self.site = site
        self.tally = tally
        self.phase = phase
        self.accepted: Dict[str, str] = {}  # job id -> how it was accepted
        self.cancelled: Dict[str, str] = {}  # job id -> the status the DELETE answered
        self.stage = "before"  # before, during or after the fault: counted per accepted job
        self.lock = threading.Lock()

    def request(self, method: str, path: str, body: Optional[bytes] = None,
                headers: Optional[Mapping[str, str]] = None,
                timeout: float = 90) -> httpclient.Response:
        return httpclient.request(self.site.url(path), method, headers=dict(headers or {}),
                                  body=body, timeout=timeout)

    @staticmethod
    def judge(resp: httpclient.Response, ok: Sequence[int]) -> Tuple[str, str]:
        """(verdict, why): "ok" for a documented success, the problem type for a documented
        storage refusal (503 problem+json with Retry-After), else "bad"."""
        if resp.status in ok:
            return "ok", ""
        doc = resp.json_or_none()
        if resp.status == 503 and resp.content_type == "application/problem+json" \
                and isinstance(doc, dict):
            ptype = str(doc.get("type", "")).replace("urn:risksim:problem:", "")
            if ptype in STORAGE_PROBLEMS and resp.header("retry-after") \
                    and doc.get("status") == 503:
                return ptype, ""
            return "bad", f"503 {ptype} without Retry-After or of an undocumented type"
        if resp.status == 0:
            return "bad", "no answer (" + (resp.curl_error or "timeout") + ")"
        return "bad", f"status {resp.status}"

    def record(self, what: str, resp: httpclient.Response, ok: Sequence[int]) -> Answer:
        verdict, why = self.judge(resp, ok)
        if verdict == "bad":
            self.tally.fail(f"{what}: not a documented answer ({why})\n{resp.describe()}")
        return Answer(what, resp.status, verdict, why, self.stage)

    def note_job(self, resp: httpclient.Response, how: str) -> Optional[str]:
        doc = resp.json_or_none()
        if isinstance(doc, dict) and isinstance(doc.get("id"), str):
            with self.lock:
                self.accepted[str(doc["id"])] = f"{how} {self.stage} the fault"
            self.tally.count(f"{self.phase}_jobs_accepted_{self.stage}_fault")
            return str(doc["id"])
        return None

    # -- operations ---------------------------------------------------------------------

    def run_sync(self, seed: int) -> Answer:
        resp = self.request("POST", "/simulations", small(seed))
        ans = self.record("POST /simulations", resp, (200,))
        if ans.verdict == "ok":
            ans.job_id = self.note_job(resp, "200 sync")
        return ans

    def submit(self, seed: int, trials: int = 20000, prefer: bool = False) -> Answer:
        path = "/simulations" if prefer else "/simulations/async"
        headers = {"Prefer": "respond-async"} if prefer else {}
        resp = self.request("POST", path, small(seed, trials), headers)
        ans = self.record(f"POST {path}" + (" (Prefer: respond-async)" if prefer else ""),
                          resp, (202,))
        if ans.verdict == "ok":
            ans.job_id = self.note_job(resp, "202 async")
        return ans

    def get(self, job_id: str) -> Answer:
        return self.record("GET /simulations/{id}", self.request("GET", f"/simulations/{job_id}"),
                           (200,))

    def events(self, job_id: str, wait: Optional[int] = None) -> Answer:
        query = "after=0" if wait is None else f"after={self.last_seq(job_id)}&wait={wait}"
        return self.record("GET /simulations/{id}/events" + (" (long poll)" if wait else ""),
                           self.request("GET", f"/simulations/{job_id}/events?{query}"), (200,))

    def last_seq(self, job_id: str) -> int:
        doc = self.request("GET", f"/simulations/{job_id}/events?after=0").json_or_none()
        return int(doc["next"]) if isinstance(doc, dict) and "next" in doc else 0

    def cancel(self, job_id: str) -> Answer:
        resp = self.request("DELETE", f"/simulations/{job_id}")
        ans = self.record("DELETE /simulations/{id}", resp, (200, 202))
        doc = resp.json_or_none()
        if ans.verdict == "ok" and isinstance(doc, dict):
            with self.lock:
                self.cancelled[job_id] = str(doc.get("status"))
        return ans

    def healthz(self) -> Answer:
        """200, or 503 application/json with Retry-After and status unavailable (the
        documented /healthz answers; it is not a problem document)."""
        resp = self.request("GET", "/healthz")
        doc = resp.json_or_none()
        if resp.status == 503 and isinstance(doc, dict) and doc.get("status") == "unavailable" \
                and resp.header("retry-after"):
            return Answer("GET /healthz", 503, "unavailable", "", self.stage)
        return self.record("GET /healthz", resp, (200,))

    def listing(self) -> Answer:
        return self.record("GET /simulations", self.request("GET", "/simulations?limit=20"),
                           (200,))

    def metrics(self) -> Answer:
        return self.record("GET /metrics", self.request("GET", "/metrics"), (200,))

    # -- after the fault ----------------------------------------------------------------

    def job(self, job_id: str) -> Dict[str, Any]:
        resp = self.request("GET", f"/simulations/{job_id}")
        doc = resp.json_or_none()
        if resp.status != 200 or not isinstance(doc, dict):
            raise StorageError(f"job {job_id} ({self.accepted.get(job_id)}) cannot be read: "
                               f"{resp.status}\n{resp.describe()}")
        return doc

    def all_events(self, job_id: str) -> List[Dict[str, Any]]:
        out: List[Dict[str, Any]] = []
        after = 0
        while True:
            resp = self.request("GET", f"/simulations/{job_id}/events?after={after}")
            doc = resp.json_or_none()
            if resp.status != 200 or not isinstance(doc, dict):
                raise StorageError(f"events of {job_id}: {resp.status}\n{resp.describe()}")
            if not doc["events"]:
                return out
            out.extend(doc["events"])
            after = int(doc["next"])

    def wait_terminal(self, job_id: str) -> Dict[str, Any]:
        last: Dict[str, Any] = {}

        def probe() -> Optional[Dict[str, Any]]:
            nonlocal last
            last = self.job(job_id)
            return last if last.get("status") in TERMINAL else None
        return http_suite.wait_for(
            f"job {job_id} ({self.accepted.get(job_id)}) to end", probe, timeout=WAIT_S,
            interval=0.2, describe=lambda: json.dumps({k: v for k, v in last.items()
                                                      if k != "result"})
            + "\n" + self.site.log_tail())

    def account(self, job_ids: Sequence[str], phase: str) -> None:
        """Every job accepted is there and ended, with the terminal event of its state, its
        seqs increasing; a cancel answered "cancelled" ended cancelled."""
        for job_id in job_ids:
            job = self.wait_terminal(job_id)
            state = str(job["status"])
            events = self.all_events(job_id)
            seqs = [int(e["seq"]) for e in events]
            ok = self.tally.check(events and events[-1].get("type") == LAST_EVENT[state]
                                  and all(a < b for a, b in zip(seqs, seqs[1:])),
                                  f"{phase}: job {job_id} is {state} but its events are "
                                  f"{[e.get('type') for e in events]} (seqs {seqs})")
            if state == "failed":
                ok = self.tally.check(isinstance(job.get("error"), dict)
                                      and events[-1].get("error", {}).get("code"),
                                      f"{phase}: failed job {job_id} without an error code") \
                    and ok
            if self.cancelled.get(job_id) == "cancelled":
                ok = self.tally.check(state == "cancelled",
                                      f"{phase}: job {job_id} was cancelled (DELETE answered "
                                      f"cancelled) but ended {state}") and ok
            if ok:
                self.tally.count(f"{phase}_jobs_accounted")
                self.tally.count(f"{phase}_jobs_{state}")
                if int(job.get("attempts", 0)) > 1:
                    self.tally.count(f"{phase}_jobs_run_again")

    def works(self, phase: str, seed: int) -> None:
        """A new synchronous run and a new asynchronous job both succeed."""
        sync = self.request("POST", "/simulations", small(seed))
        if not self.tally.check(sync.status == 200, f"{phase}: a synchronous run after the "
                                                    f"fault\n{sync.describe()}"):
            return
        resp = self.request("POST", "/simulations/async", small(seed + 1, 50000))
        if not self.tally.check(resp.status == 202, f"{phase}: a submission after the fault\n"
                                                    f"{resp.describe()}"):
            return
        job_id = self.note_job(resp, "202 after")
        assert job_id is not None
        job = self.wait_terminal(job_id)
        self.tally.check(job["status"] == "completed",
                         f"{phase}: a job submitted after the fault ended {job['status']}")


def stop_site(site: ws_suite.BridgeSite, tally: Tally, what: str) -> None:
    """Stops site; every problem its stop finds (a bad exit of the bridge, a sanitizer report)
    is a failure of `what`."""
    for problem in site.stop():
        tally.fail(f"{what}: {problem}")


@contextlib.contextmanager
def serving(client: Client, label: str, overrides: Mapping[str, object],
            what: str) -> Iterator[ws_suite.BridgeSite]:
    """A new site (a BridgeSite named label with overrides) for client, which the block gets;
    on leaving the block it is stopped with stop_site(site, client.tally, what)."""
    site = ws_suite.BridgeSite(label, dict(overrides)).start()
    client.site = site
    try:
        yield site
    finally:
        stop_site(site, client.tally, what)


class StreamWatch:
    """WebSocket streams followed in the background (an event loop in a thread) until they
    close, through the web server."""

    def __init__(self, site: ws_suite.BridgeSite):
        assert site.web is not None
        self.base = site.web.ws_url
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.streams: List[Tuple[str, ws_suite.Received, Any]] = []

    def follow(self, job_id: str) -> None:
        url = f"{self.base}/simulations/{job_id}/stream"
        got = ws_suite.Received(url)

        async def one() -> None:
            try:
                await ws_suite.collect(url, got)
            except Exception as e:  # noqa: BLE001 - judged in check()
                got.close_reason += f" (client: {e!r})"
        self.streams.append((job_id, got, asyncio.run_coroutine_threadsafe(one(), self.loop)))

    def finish(self, timeout: float) -> List[str]:
        """Waits for every stream to close; returns the problems (a stream still open, or
        closed with an undocumented code or without its job's end)."""
        deadline = time.monotonic() + timeout
        problems = []
        for job_id, got, fut in self.streams:
            try:
                fut.result(max(0.1, deadline - time.monotonic()))
            except Exception as e:  # noqa: BLE001 - a timeout is a problem too
                problems.append(f"the stream of {job_id} did not end: {e!r}\n{got.describe(8)}")
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        return problems

    def judge(self, tally: Tally, states: Mapping[str, str], phase: str,
              allowed: Sequence[int] = tuple(STREAM_CLOSES)) -> None:
        """Every stream closed with an allowed code; one closed at its job's end (1000, 4000)
        after that end's event."""
        for job_id, got, _ in self.streams:
            code = got.close_code
            tally.count(f"{phase}_streams")
            if not tally.check(got.ended and code in allowed,
                               f"{phase}: stream of {job_id} closed {code} "
                               f"{got.close_reason!r}\n{got.describe(8)}"):
                continue
            tally.count(f"{phase}_streams_closed_{code}")
            if code in (1000, 4000):
                last = [m for m in got.messages if "seq" in m][-1:]
                want = LAST_EVENT.get(states.get(job_id, ""), "?")
                tally.check(last and last[0].get("type") == want,
                            f"{phase}: stream of {job_id} ({states.get(job_id)}) closed {code} "
                            f"after {last}")


def site_pids(site: ws_suite.BridgeSite) -> Dict[str, int]:
    """The pids of every daemon of the site (web server, responders, bridge)."""
    assert site.web is not None and site.web.pid is not None
    pids = {"web server": site.web.pid}
    for i, pid in enumerate(site.responder_pids()):
        pids[f"responder {i}"] = pid
    if site.bridge is not None and site.bridge.pid is not None:
        pids["bridge"] = site.bridge.pid
    return pids


def check_pids(site: ws_suite.BridgeSite, before: Mapping[str, int], tally: Tally,
               phase: str) -> None:
    now = site_pids(site)
    alive = {k: serve._pid_alive(v) for k, v in before.items()}
    tally.check(now == dict(before) and all(alive.values()),
                f"{phase}: a daemon died or was replaced: before {dict(before)}, now {now}, "
                f"alive {alive}\n{site.log_tail()}")


def check_bridge_health(site: ws_suite.BridgeSite, tally: Tally, phase: str) -> None:
    """The bridge answers /healthz with 200, or 503 when it cannot read the store."""
    assert site.bridge is not None
    status, _, body = serve.http_request(site.bridge.base_url + "/healthz", timeout=30)
    tally.check(status in (200, 503) and isinstance(json.loads(body or b"null"), dict),
                f"{phase}: the bridge's /healthz answered {status} {body[:200]!r}")


# ------------------------------------------------------------------------------------------
# Phase 1: disk full


class Topper:
    """Keeps the volume full while the load runs (SQLite may free pages, e.g. by truncating
    its WAL): writes the filler to ENOSPC again every 50 ms."""

    def __init__(self, volume: Volume):
        self.volume = volume
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.errors: List[str] = []

    def loop(self) -> None:
        while not self.stop.wait(0.05):
            try:
                self.volume.fill()
            except OSError as e:
                self.errors.append(repr(e))
                return

    def __enter__(self) -> "Topper":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)


def load(client: Client, watch: StreamWatch, requests: int, workers: int, seed0: int,
         milestone: Optional[Tuple[int, threading.Event]] = None) -> List[Answer]:
    """requests requests of every kind, from workers threads, on the jobs accepted so far (and
    those accepted meanwhile); some new jobs' streams are followed. milestone (n, event): the
    event is set once n answers have come (so that a fault can arrive under load)."""
    answered = [0]
    answered_lock = threading.Lock()
    kinds = ["sync", "async", "events", "prefer", "get", "cancel", "longpoll", "healthz",
             "async", "list", "sync", "metrics"]
    rnd = random.Random(seed0)
    plan = [(i, kinds[i % len(kinds)], rnd.random()) for i in range(requests)]

    def some_job(r: float) -> Optional[str]:
        with client.lock:
            ids = sorted(client.accepted)
        return ids[int(r * len(ids))] if ids else None

    def one(item: Tuple[int, str, float]) -> Answer:
        ans = request(item)
        with answered_lock:
            answered[0] += 1
            if milestone is not None and answered[0] >= milestone[0]:
                milestone[1].set()
        return ans

    def request(item: Tuple[int, str, float]) -> Answer:
        i, kind, r = item
        seed = seed0 + i
        if kind == "sync":
            return client.run_sync(seed)
        if kind in ("async", "prefer"):
            ans = client.submit(seed, trials=20000 + 1000 * (i % 50), prefer=kind == "prefer")
            if ans.job_id is not None and i % 3 == 0:
                watch.follow(ans.job_id)
            return ans
        job_id = some_job(r)
        if job_id is None or kind == "healthz":
            return client.healthz()
        if kind == "events":
            return client.events(job_id)
        if kind == "longpoll":
            return client.events(job_id, wait=1)
        if kind == "get":
            return client.get(job_id)
        if kind == "cancel":
            return client.cancel(job_id)
        if kind == "list":
            return client.listing()
        return client.metrics()

    try:
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(one, plan))
    finally:
        if milestone is not None:
            milestone[1].set()


def count_answers(answers: Sequence[Answer], tally: Tally, phase: str) -> None:
    """Requests, and those answered during the fault by outcome: successes, 503s (and by
    problem type)."""
    tally.count(f"{phase}_requests", len(answers))
    for a in answers:
        if a.stage != "during":
            continue
        tally.count(f"{phase}_requests_during_fault")
        tally.count(f"{phase}_{'successes' if a.verdict == 'ok' else a.verdict}_during_fault")
        if a.verdict in STORAGE_PROBLEMS:
            tally.count(f"{phase}_503s_during_fault")


def phase_disk_full(opts: argparse.Namespace, root: Path, tally: Tally) -> None:
    vol = Volume(root / "dbfs", "tmpfs", 6144 if not opts.long else 12288)
    db, overrides = mount_database(vol)
    site = ws_suite.BridgeSite("diskfull", overrides).start()
    client = Client(site, tally, "diskfull")
    watch = StreamWatch(site)
    try:
        # before the fault: jobs of every kind, some long enough to run through it
        for i in range(3):
            client.run_sync(100 + i)
        for i in range(4 if not opts.long else 10):
            client.submit(200 + i, trials=400_000 + 100_000 * i)
        for job_id in list(client.accepted):
            watch.follow(job_id)
        before = site_pids(site)
        # the load starts; the disk fills up once a sixth of it has been answered
        requests = 72 if not opts.long else 480
        fault = threading.Event()
        with ThreadPoolExecutor(1) as background:
            running = background.submit(load, client, watch, requests,
                                        4 if not opts.long else 8, 1000, (requests // 6, fault))
            fault.wait(WAIT_S)
            client.stage = "during"
            filler = vol.fill()
            tally.set("diskfull_tmpfs_kib", vol.size_kib)
            tally.set("diskfull_filler_kib", filler // 1024)
            tally.check(vol.free_bytes() == 0, f"the tmpfs still has {vol.free_bytes()} bytes "
                                               "free after the filler")
            with Topper(vol) as topper:
                answers = running.result()
        tally.check(not topper.errors, f"filling the tmpfs failed: {topper.errors}")
        count_answers(answers, tally, "diskfull")
        refused = sum(1 for a in answers if a.verdict in STORAGE_PROBLEMS)
        tally.check(refused > 0, "no request was refused with a storage 503 while the disk was "
                                 "full: the fault did not bite (or was hidden)")
        check_pids(site, before, tally, "disk full")
        check_bridge_health(site, tally, "disk full")
        vol.unfill()
        client.stage = "after"
        accepted = sorted(client.accepted)
        client.works("diskfull", 5000)
        client.account(accepted, "diskfull")
        states = {j: str(client.job(j)["status"]) for j, _, _ in watch.streams}
        for problem in watch.finish(WAIT_S):
            tally.fail("disk full: " + problem)
        watch.judge(tally, states, "diskfull")
        check_pids(site, before, tally, "disk full (after)")
        db_check(opts, db, tally, "disk full: risksim db check while running")
    finally:
        with contextlib.suppress(Exception):
            watch.finish(1)
        stop_site(site, tally, "disk full")
    db_check(opts, db, tally, "disk full: risksim db check after the stop")
    unmount(opts, root, vol, "diskfull", tally)


# ------------------------------------------------------------------------------------------
# Phase 2: read-only while running


def probe_read_only(client: Client, done_id: str, pending_id: Optional[str], seed: int,
                    tally: Tally) -> List[Answer]:
    """Every endpoint once on a read-only store: writes must be refused (documented 503),
    reads must work, /healthz must agree with the reads. pending_id: a job that is queued or
    running (its cancel is a write), or None."""
    writes = [client.run_sync(seed), client.submit(seed + 1), client.submit(seed + 2, prefer=True)]
    if pending_id is not None:
        writes.append(client.cancel(pending_id))
    for a in writes:
        tally.check(a.verdict in STORAGE_PROBLEMS,
                    f"read-only: {a.what} was not refused with a storage 503 ({a.status} "
                    f"{a.verdict}): a write cannot succeed on a read-only file system")
    reads = [client.cancel(done_id),  # a finished job: nothing to write, 200
             client.get(done_id), client.events(done_id), client.events(done_id, wait=1),
             client.listing(), client.metrics()]
    if pending_id is not None:
        reads.append(client.get(pending_id))
    for a in reads:
        tally.check(a.verdict == "ok", f"read-only: {a.what} failed ({a.status} {a.verdict}) "
                                       "although the store can still be read")
    health = client.healthz()
    tally.check(health.verdict == "ok", f"read-only: /healthz answered {health.status} while "
                                        "the store can be read (docs/api.md: 200 then)")
    tally.set("readonly_healthz_status", health.status)
    return writes + reads + [health]


def unfinished(client: Client, ids: Sequence[str]) -> Optional[str]:
    """One of ids that is queued or running now."""
    for job_id in ids:
        if client.job(job_id)["status"] in ("queued", "running"):
            return job_id
    return None


def phase_read_only_live(opts: argparse.Namespace, root: Path, tally: Tally) -> None:
    why = ext4_unavailable()
    # Not a skip: a machine that cannot mount the ext4 image fails the test with the reason
    # (the test command runs as root on Debian, where loop devices and ext4 are available).
    tally.check(not why, f"the read-only-while-running phase cannot run here: {why}")
    if why:
        return
    vol = Volume(root / "rofs", "ext4", 32768, image=root / "rofs.img")
    db, overrides = mount_database(vol)
    site = ws_suite.BridgeSite("readonly", overrides).start()
    client = Client(site, tally, "readonly_live")
    watch = StreamWatch(site)
    try:
        done_id = client.run_sync(300).job_id
        if done_id is None:
            raise StorageError("the first synchronous run failed")
        # two workers, four jobs: two are still queued when the fault comes
        running = [client.submit(310 + i, trials=1_500_000) for i in range(4)]
        if any(a.verdict != "ok" for a in running):
            raise StorageError("a submission before the fault failed")
        ids = sorted(client.accepted)
        for job_id in ids:
            watch.follow(job_id)
        before = site_pids(site)
        client.stage = "during"
        vol.trigger_error()
        tally.check(vol.read_only(), f"the ext4 error did not make {vol.path} read-only: "
                                     f"{mount_options(vol.path)}")
        pending = unfinished(client, [j for j in ids if j != done_id])
        tally.check(pending is not None, "every job had finished before the fault: no cancel "
                                         "could be tried (make the jobs longer)")
        answers = probe_read_only(client, done_id, pending, 320, tally)
        answers += load(client, watch, 36 if not opts.long else 240, 4, 2000)
        count_answers(answers, tally, "readonly_live")
        check_pids(site, before, tally, "read-only")
        check_bridge_health(site, tally, "read-only")
        client.stage = "after"
        states = {j: str(client.job(j)["status"]) for j, _, _ in watch.streams}
    except BaseException:
        with contextlib.suppress(Exception):
            watch.finish(1)
        raise
    finally:
        stop_site(site, tally, "read-only")
    # the bridge's stop closed the streams of the jobs that could not end (1001)
    for problem in watch.finish(WAIT_S):
        tally.fail("read-only: " + problem)
    watch.judge(tally, states, "readonly_live", allowed=tuple(STREAM_CLOSES | {1001}))
    tally.set("readonly_live_e2fsck_status", vol.repair())
    db_check(opts, db, tally, "read-only: risksim db check after the repair")
    # start again on the repaired file system: every accepted job ends, new jobs work
    with serving(client, "readonly-after", overrides, "read-only (after the repair)"):
        client.works("readonly_live", 6000)
        client.account(sorted(client.accepted), "readonly_live")
    db_check(opts, db, tally, "read-only: risksim db check at the end")
    unmount(opts, root, vol, "readonly", tally)


# ------------------------------------------------------------------------------------------
# Phase 3: starting on a read-only database


def responder_refuses_to_start(build: Path, config: Path, state: Path, db: Path,
                               tally: Tally) -> None:
    """docs/operations.md: a responder that cannot open the job store exits at its start with
    a line naming it."""
    responder = serve.Responder(state, build, config_path=config, name="fcgi-on-readonly")
    try:
        responder.start(timeout=60)
        tally.fail("a responder started on a read-only database without -wal/-shm, which "
                   "SQLite cannot open there")
    except serve.ServeError:
        pass
    finally:
        code = responder.stop(10)
    log = responder.log_path.read_text("utf-8", "replace") if responder.log_path else ""
    tally.check(code == 1 and f"cannot open the job store {db}" in log,
                f"the responder on a read-only database: status {code}, log:\n{log[-1500:]}")
    tally.count("readonly_start_refusals_checked")


def bridge_waits(build: Path, config: Path, state: Path, tally: Tally) -> None:
    """docs/operations.md: the bridge keeps running, /healthz 503, new sessions 1011."""
    bridge = serve.Bridge(state, build, serve.free_port(), config_path=config)
    try:
        bridge.proc = bridge._spawn()
        serve._RUNNING.append(bridge)

        def health() -> Optional[Tuple[int, bytes]]:
            try:
                status, _, body = serve.http_request(bridge.base_url + "/healthz", timeout=10)
            except OSError:
                return None
            return (status, body) if status else None
        status, body = http_suite.wait_for("the bridge to answer", health, timeout=60)
        tally.check(status == 503 and bridge.running,
                    f"the bridge on an unreadable database: /healthz {status} {body[:200]!r}")
        url = f"ws://127.0.0.1:{bridge.port}{serve.BASE_PATH}/simulations/{'0' * 26}/stream"
        got = ws_suite.Received(url)
        asyncio.run(asyncio.wait_for(ws_suite.collect(url, got), 60))
        if tally.check((got.close_code, got.close_reason) == (1011, "job store unavailable, try "
                                                                    "again"),
                       f"a session on the bridge without its store\n{got.describe()}"):
            tally.count("readonly_start_refusals_checked")
        tally.check(bridge.running, "the bridge died without its job store\n" + bridge.log_tail())
    finally:
        bridge.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            code = bridge.wait(30)
            tally.check(code == 0, f"the bridge exited {code} after SIGTERM")
        bridge.stop(5)


def crash(site: ws_suite.BridgeSite) -> None:
    """SIGKILL every daemon of the site (so that -wal and -shm stay beside the database): the
    web server first (lighttpd would start its responder again), then the responders and the
    bridge."""
    responders = site.responder_pids()
    if site.web is not None:
        site.web.kill()
    for pid in responders:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if site.bridge is not None:
        site.bridge.kill()
    site.stop()


def holders(path: Path) -> List[int]:
    """The processes with a file under path open."""
    out = []
    prefix = str(path) + "/"
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{entry}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{entry}/fd/{fd}").startswith(prefix):
                        out.append(int(entry))
                        break
    return out


def remount_read_only(vol: Volume) -> None:
    """Remounts vol read-only once the stopped daemons have closed their files (the kernel
    refuses while a file is open for writing)."""
    http_suite.wait_for(f"every process to close its files on {vol.path}",
                        lambda: not holders(vol.path), timeout=WAIT_S,
                        describe=lambda: f"still open in {holders(vol.path)}")
    vol.remount(read_only=True)


def clean_start_refused(opts: argparse.Namespace, root: Path, vol: Volume, client: Client,
                        overrides: Mapping[str, object], tally: Tally) -> None:
    """A database closed cleanly (no -wal, no -shm), then read-only: SQLite cannot open it
    there, the responder refuses to start and the bridge waits for it."""
    with serving(client, "start-rw", overrides, "read-only start"):
        client.run_sync(400)
        client.submit(401)
        client.account(sorted(client.accepted), "readonly_start")
    leftovers = sorted(p.name for p in vol.path.iterdir() if p.name != "risksim.db")
    tally.check(not leftovers, f"a clean stop left {leftovers} beside the database")
    remount_read_only(vol)
    config = root / "start-rw" / "risksim.conf"
    build = Path(opts.build)
    responder_refuses_to_start(build, config, root / "start-ro", vol.path / "risksim.db", tally)
    bridge_waits(build, config, root / "start-ro", tally)
    vol.remount(read_only=False)


def start_after_crash(vol: Volume, client: Client, overrides: Mapping[str, object],
                      tally: Tally) -> None:
    """A crash leaves -wal and -shm beside the database; SQLite can then read it on a read-only
    mount: the site starts, reads work, writes are refused with the documented 503."""
    site = ws_suite.BridgeSite("start-crash", dict(overrides)).start()
    client.site = site
    try:
        done_id = client.run_sync(410).job_id
    finally:
        crash(site)
    if done_id is None:
        raise StorageError("a synchronous run before the crash failed")
    remount_read_only(vol)
    client.stage = "during"
    with serving(client, "start-ro-wal", overrides, "read-only start") as site:
        answers = probe_read_only(client, done_id, None, 420, tally)
        count_answers(answers, tally, "readonly_start")
        watch = StreamWatch(site)
        watch.follow(done_id)
        for problem in watch.finish(WAIT_S):
            tally.fail("read-only start: " + problem)
        watch.judge(tally, {done_id: "completed"}, "readonly_start")
    vol.remount(read_only=False)


def phase_read_only_start(opts: argparse.Namespace, root: Path, tally: Tally) -> None:
    vol = Volume(root / "startfs", "tmpfs", 16384)
    db, overrides = mount_database(vol)
    client = Client(None, tally, "readonly_start")  # type: ignore[arg-type]
    clean_start_refused(opts, root, vol, client, overrides, tally)
    start_after_crash(vol, client, overrides, tally)
    # read-write again: the service works, every job is there
    client.stage = "after"
    with serving(client, "start-rw-again", overrides, "read-only start (after)"):
        client.works("readonly_start", 7000)
        client.account(sorted(client.accepted), "readonly_start_after")
    db_check(opts, db, tally, "read-only start: risksim db check at the end")
    unmount(opts, root, vol, "readonly-start", tally)


# ------------------------------------------------------------------------------------------
# The program


def namespace_unavailable() -> Optional[str]:
    """Why this program cannot have a private mount namespace of its own here, or None."""
    if os.geteuid() != 0:
        return "this program must run as root (a private mount namespace with its own tmpfs)"
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    return None


def enter_namespace(argv: Sequence[str]) -> None:
    """Re-executes this program in a private mount namespace (does not return), unless it
    already runs in one."""
    if os.environ.get(NAMESPACE_MARK) == "1":
        return
    env = dict(os.environ, **{NAMESPACE_MARK: "1"})
    sys.stdout.flush()
    os.execvpe("unshare", ["unshare", "-m", "--propagation", "private", sys.executable,
                           str(Path(__file__).resolve()), *argv], env)


def run_phases(opts: argparse.Namespace, root: Path) -> None:
    """The three phases (a failed one is reported and the next still runs), then the
    sanitizer reports of every log and the figures; raises Failure if a check failed."""
    tally = Tally()
    print(f"storage faults: {opts.server}, build {opts.build}, state {root}", flush=True)
    for name, phase in (("disk full", phase_disk_full),
                        ("read-only while running", phase_read_only_live),
                        ("starting read-only", phase_read_only_start)):
        t0 = time.monotonic()
        try:
            phase(opts, root, tally)
        except Exception as e:  # noqa: BLE001 - reported; the next phase still runs
            tally.fail(f"{name}: {type(e).__name__}: {e}")
        print(f"  {name}: done ({time.monotonic() - t0:.1f} s)", flush=True)
    for report in relcommon.sanitizer_reports(root):
        tally.fail("sanitizer report: " + report)
    tally.report("storage", shown=30)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    opts = relcommon.parser(__doc__, "more requests, clients and jobs").parse_args(argv)
    why = namespace_unavailable()
    if why:
        return relcommon.fail(why)
    return relcommon.run_main(
        "storage", opts, run_phases, needs_websockets=True,
        binaries=("fcgi/risksim-fcgi", "wsbridge/risksim-wsbridge", "cli/risksim"),
        programs=("curl", relcommon.web_server_program(opts.server)),
        before=lambda: enter_namespace(argv), on_sigterm=relcommon.exit_on_sigterm)


if __name__ == "__main__":
    sys.exit(main())
