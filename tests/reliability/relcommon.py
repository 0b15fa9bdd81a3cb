"""What the reliability programs of this directory share: output, results, options and main().

Why this file exists: crash.py, bridge_crash.py, storage.py, security.py and load.py share one
frame: the command-line options every one of them takes (--build, --server, --long, --keep,
which run.sh and CMakeLists.txt pass), the checks that the websockets library, the built daemons
and the web server are there, the temporary state directory handed to the integration suite's
Site, the handling of a failed check or of a bug of the program, the PASS/FAIL ending, and the
`FIGURE key=value` lines that run.sh collects. One copy here keeps the programs alike where they
are meant to be alike (a fix of the frame reaches every program) and leaves each program only
what it tests.

Importing this module puts scripts/ and tests/integration/ on sys.path, so that a program can
then import serve, httpclient, test_http and test_ws. This module itself imports those only
inside the functions that need them: check_sql.py uses it too and needs nothing but the
standard library.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "tests" / "integration"))


class Failure(Exception):
    """A check failed: the message says which and why."""


# --------------------------------------------------------------------------------------------
# Output


def figure(key: str, value: object) -> None:
    """Prints `FIGURE key=value` (what run.sh collects into the report); a float is printed
    with one decimal."""
    if isinstance(value, float):
        value = f"{value:.1f}"
    print(f"FIGURE {key}={value}", flush=True)


def note(text: str) -> None:
    """Prints a line of progress or explanation at once (not a figure, not a verdict)."""
    print(text, flush=True)


def fail(reason: str) -> int:
    """Prints `FAIL: reason` and returns 1, the exit status of a failed program."""
    print(f"FAIL: {reason}", flush=True)
    return 1


# --------------------------------------------------------------------------------------------
# Results


@dataclass
class Tally:
    """What a program counted (printed as FIGURE lines) and the checks that failed; safe to use
    from several threads."""
    figures: Dict[str, object] = field(default_factory=dict)
    failures: List[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, key: str, n: int = 1) -> None:
        """Adds n to the figure key (0 before its first count)."""
        with self.lock:
            self.figures[key] = int(self.figures.get(key, 0)) + n  # type: ignore[arg-type]

    def set(self, key: str, value: object) -> None:
        """Sets the figure key to value."""
        with self.lock:
            self.figures[key] = value

    def fail(self, msg: str) -> None:
        """Records a failed check; msg says which and why."""
        with self.lock:
            self.failures.append(msg)

    def check(self, cond: object, msg: str) -> bool:
        """Records msg as a failure unless cond holds; returns whether it holds."""
        if not cond:
            self.fail(msg)
        return bool(cond)

    def report(self, what: str, shown: int,
               extra: Sequence[Tuple[str, object]] = ()) -> None:
        """Prints every figure as a FIGURE line (sorted by key), then the extra (key, value)
        figures, then `failed_checks`. When a check failed, prints the first `shown` failures as
        `FAILED: ...` lines and raises Failure("N <what> check(s) failed")."""
        for key in sorted(self.figures):
            figure(key, self.figures[key])
        for key, value in extra:
            figure(key, value)
        figure("failed_checks", len(self.failures))
        if not self.failures:
            return
        for f in self.failures[:shown]:
            print("FAILED: " + f.rstrip(), flush=True)
        if len(self.failures) > shown:
            print(f"... and {len(self.failures) - shown} more", flush=True)
        raise Failure(f"{len(self.failures)} {what} check(s) failed")


# --------------------------------------------------------------------------------------------
# The service's traces


def sanitizer_reports(root: Path) -> List[str]:
    """The sanitizer reports in the *.log files under root (the first in each file, with the 30
    lines from its start), also of daemons started outside a Site. Empty when there is none."""
    import test_http as http_suite
    found = []
    for path in sorted(root.rglob("*.log")):
        lines = path.read_text("utf-8", "replace").splitlines()
        for i, line in enumerate(lines):
            if any(m in line for m in http_suite.SANITIZER_MARKERS):
                found.append(f"{path}:{i + 1}:\n" + "\n".join(lines[i:i + 30]))
                break
    return found


@contextlib.contextmanager
def stopped_on_error(site: Any, heading: str) -> Iterator[None]:
    """Runs the block on a started site. When the block raises, the site is stopped first, and
    whatever its stop() found (sanitizer reports, a bad exit) is added under `heading` to the
    error, as a Failure; without such findings the error goes on unchanged. On success the
    site is left running (its caller stops it and judges what stop() returns)."""
    try:
        yield
    except BaseException as e:
        findings = site.stop()
        if findings:
            raise Failure(f"{e}\n{heading}:\n" + "\n".join(findings)) from e
        raise


def db_query(db: Path, sql: str, params: Sequence[object] = ()) -> List[Tuple[Any, ...]]:
    """The rows of one query on the SQLite file db, opened read-only (waits up to 30 s for a
    writer's lock)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def db_check(build: Path, db: Path) -> Tuple[int, str]:
    """`risksim db check --db db` with the CLI of build: (its exit status, its output)."""
    proc = subprocess.run([str(build / "cli" / "risksim"), "db", "check", "--db", str(db)],
                          capture_output=True, text=True, timeout=600)
    return proc.returncode, (proc.stdout + proc.stderr).strip()


# --------------------------------------------------------------------------------------------
# The command line and main()


def parser(doc: str, long_help: str, keep_help: str = "keep the state directory",
           seed_help: Optional[str] = None, **kwargs: Any) -> argparse.ArgumentParser:
    """An ArgumentParser described by the first paragraph of doc, with the options every
    program takes: --build DIR (default build/), --server lighttpd|apache (default lighttpd),
    --long (long_help says what it adds) and --keep (keep_help); with seed_help also --seed N
    (default None: a new random seed, see random_seed()). kwargs go to the parser."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0], **kwargs)
    ap.add_argument("--build", default=str(REPO / "build"), help="the CMake build directory")
    ap.add_argument("--server", choices=("lighttpd", "apache"), default="lighttpd")
    ap.add_argument("--long", action="store_true", help=long_help)
    ap.add_argument("--keep", action="store_true", help=keep_help)
    if seed_help is not None:
        ap.add_argument("--seed", type=int, default=None, help=seed_help)
    return ap


def random_seed(args: argparse.Namespace) -> Tuple[int, random.Random]:
    """(seed, a generator seeded with it): args.seed (--seed N, to repeat a run), or a new
    random seed when it is None (the program prints it)."""
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    return seed, random.Random(seed)


def web_server_program(server: str) -> str:
    """The executable of the web server that --server names."""
    return "lighttpd" if server == "lighttpd" else "apache2"


def missing_prerequisite(build: Path, needs_websockets: bool = False,
                         binaries: Sequence[str] = (),
                         programs: Sequence[str] = ()) -> Optional[str]:
    """Why the program cannot run, or None: the websockets library cannot be imported (when
    needs_websockets), one of binaries (paths under build) is not built, or one of programs is
    not on PATH."""
    if needs_websockets:
        import test_ws as ws_suite
        if ws_suite.WEBSOCKETS_MISSING is not None:
            return (f"the websockets library cannot be imported by {sys.executable} "
                    f"({ws_suite.WEBSOCKETS_MISSING}): use /usr/bin/python3 with Debian's "
                    "python3-websockets (bash scripts/deps.sh test)")
    for binary in binaries:
        if not (build / binary).exists():
            return f"{build / binary} is missing: build first"
    for prog in programs:
        if shutil.which(prog) is None:
            return f"{prog} is not installed (bash scripts/deps.sh test)"
    return None


def exit_on_sigterm(signum: int, _frame: object) -> None:
    """A SIGTERM handler (a test runner's timeout) that unwinds like Ctrl-C, with status 143:
    the finally blocks stop every daemon started."""
    sys.exit(143)


def run_main(name: str, args: argparse.Namespace,
             body: Callable[[argparse.Namespace, Path], None], *,
             needs_websockets: bool = False, binaries: Sequence[str] = (),
             programs: Sequence[str] = (), before: Optional[Callable[[], None]] = None,
             on_sigterm: Optional[Callable[[int, Any], None]] = None) -> int:
    """The main() of a program: returns its exit status (0 after PASS, 1 after FAIL).

    args must carry build, server and keep (see parser()); args.build is made absolute. First
    the prerequisites (missing_prerequisite() with needs_websockets, binaries and programs): a
    missing one is a FAIL. Then before() (e.g. entering a namespace), the SIGTERM handler
    on_sigterm if given, and a new state directory, /tmp/risksim-NAME-SERVER-*, readable by
    Apache's children, which test_http.OPTIONS (with server, build and keep) hands to every
    Site. body(args, root) runs the checks: it returns on success and raises on a failure. A
    Failure, serve.ServeError or AssertionError prints `FAIL: message`; any other exception is
    a bug of the program, printed with its trace, and fails too (KeyboardInterrupt and
    SystemExit go on). Then a line `NAME: S s; state in ROOT`; the state directory is removed
    after a success unless --keep, and kept after a failure; the last line is PASS or FAIL."""
    import serve
    import test_http as http_suite
    build = Path(args.build).resolve()
    args.build = str(build)
    missing = missing_prerequisite(build, needs_websockets, binaries, programs)
    if missing:
        return fail(missing)
    if before is not None:
        before()
    if on_sigterm is not None:
        signal.signal(signal.SIGTERM, on_sigterm)
    root = Path(tempfile.mkdtemp(prefix=f"risksim-{name.replace('_', '-')}-{args.server}-"))
    os.chmod(root, 0o755)  # Apache's children (www-data) must reach the sockets in it
    http_suite.OPTIONS.update(server=args.server, build=build, keep=args.keep, state_root=root)
    started = time.monotonic()
    ok = False
    try:
        body(args, root)
        ok = True
    except (Failure, serve.ServeError, AssertionError) as e:
        fail(str(e))
    except Exception:  # noqa: BLE001 - a bug of the program is a failure too, with its trace
        traceback.print_exc()
        fail("unexpected exception (above)")
    note(f"{name}: {time.monotonic() - started:.1f} s; state in {root}"
         + ("" if (args.keep or not ok) else " (removed)"))
    if ok and not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    if ok:
        print("PASS", flush=True)
    return 0 if ok else 1
