#!/usr/bin/env python3
"""Browser tests of the demo page (web/) in headless Chromium, through lighttpd or Apache.

Why this file exists: the page is where the API, the web server's routes and the bridge meet a
real browser: its fetch and WebSocket go through the shipped web server configuration, and its
client has to keep every event exactly once whatever the transport does. This harness starts
the shipped configuration on loopback with scripts/serve.py (the web server, the responder and
the bridge), then runs page.test.mjs (node + playwright-core driving Debian's chromium) once per
scenario, and kills and restarts the bridge when a scenario asks for it:

    python3 tests/browser/test_browser.py --server lighttpd|apache --build BUILD_DIR \\
        [--scenario NAME ...] [--keep]

Scenarios (README.md): websocket, fallback (a web server without the WebSocket route),
forced-polling, bridge-restart, validation, sync, cancel, follow. Screenshots go to BUILD/tests/browser/.
A missing node, chromium or web server fails the run, it is never skipped; when
tests/browser/node_modules is missing, `npm ci` installs it from package-lock.json first.

Python 3 standard library only.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "scripts"))

import serve  # noqa: E402

SCENARIOS = ("websocket", "fallback", "forced-polling", "bridge-restart", "validation", "sync",
             "cancel", "follow")
# The one that needs a web server without the WebSocket route.
NO_STREAM_SCENARIOS = ("fallback",)
SCENARIO_TIMEOUT_S = 240.0
# Progress events often enough to see the bar move, and room for the long job of
# bridge-restart (page.test.mjs sets the trials).
OVERRIDES = {"progress_ms": 20, "max_trials": 100_000_000, "log_level": "warn"}
DEFAULT_CHROMIUM = "/usr/bin/chromium"
OPTIONS = {"keep": False}


class Failure(Exception):
    """A precondition or a scenario failed (the message says which and why)."""


# --------------------------------------------------------------------------------------------
# Preconditions


def find_chromium() -> str:
    path = os.environ.get("RISKSIM_CHROMIUM") or DEFAULT_CHROMIUM
    if not os.access(path, os.X_OK):
        found = shutil.which("chromium")
        if not found:
            raise Failure(f"chromium is missing ({path}): bash scripts/deps.sh test installs "
                          "Debian's chromium package")
        path = found
    return path


def find_node() -> str:
    node = shutil.which("node")
    if not node:
        raise Failure("node is missing: bash scripts/deps.sh test installs nodejs and npm")
    return node


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock on path (two suites may run at once under ctest -j)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_node_modules(lock_dir: Path) -> None:
    """Runs `npm ci` in tests/browser when playwright-core is not installed there."""
    marker = HERE / "node_modules" / "playwright-core" / "package.json"
    with locked(lock_dir / "npm-ci.lock"):
        if marker.exists():
            return
        npm = shutil.which("npm")
        if not npm:
            raise Failure("npm is missing: bash scripts/deps.sh test installs nodejs and npm")
        print("browser: npm ci (tests/browser/node_modules is missing)", flush=True)
        r = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=HERE,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if r.returncode != 0 or not marker.exists():
            raise Failure(f"npm ci in {HERE} failed (status {r.returncode}):\n{r.stdout}")


# --------------------------------------------------------------------------------------------
# The site: a web server with the responder, and the bridge on its bridge port


class Site:
    """One web server from the shipped configuration (with or without the WebSocket route) and
    the bridge, each with its own state directory under root."""

    def __init__(self, server: str, root: Path, build: Path, stream_proxy: bool):
        self.server = server
        self.state = root / (server + ("" if stream_proxy else "-no-stream"))
        self.build = build
        self.stream_proxy = stream_proxy
        self.web: Optional[serve._WebServer] = None
        self.bridge: Optional[serve.Bridge] = None

    def start(self) -> "Site":
        try:
            web = serve.start_on_free_port(self.server, self.state, self.build, OVERRIDES,
                                           timeout=60, stream_proxy=self.stream_proxy)
        except serve.ServeError as e:
            raise Failure(f"could not start {self.server}: {e}") from None
        self.web = web
        self.bridge = serve.Bridge(web.state_dir, self.build, web.bridge_port,
                                   config_path=web.config_path, layout=web.layout)
        self.start_bridge()
        return self

    def start_bridge(self) -> None:
        assert self.bridge is not None
        try:
            self.bridge.start(timeout=60)
        except serve.ServeError as e:
            raise Failure(f"could not start the bridge: {e}") from None

    def restart_bridge(self) -> None:
        """SIGKILL to the bridge, then start it again on the same port."""
        assert self.bridge is not None
        self.bridge.kill()
        self.start_bridge()

    @property
    def base(self) -> str:
        assert self.web is not None
        return self.web.base_url

    def log_tail(self) -> str:
        out = self.web.log_tail(20) if self.web else ""
        return out + (self.bridge.log_tail(20) if self.bridge else "")

    def stop(self) -> None:
        if self.bridge is not None:
            self.bridge.stop()
        if self.web is not None:
            self.web.stop()


# --------------------------------------------------------------------------------------------
# Running page.test.mjs


def run_scenario(tools: "Tools", name: str, site: Site, artefacts: Path,
                 label: str) -> List[str]:
    """Runs one scenario; returns the artefacts it saved. Raises Failure."""
    env = dict(os.environ, RISKSIM_CHROMIUM=tools.chromium)
    proc = subprocess.Popen([tools.node, str(HERE / "page.test.mjs"), name, site.base,
                             str(artefacts), label], cwd=HERE, env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    timer = threading.Timer(SCENARIO_TIMEOUT_S, lambda: os.killpg(proc.pid, signal.SIGKILL))
    timer.start()
    saved: List[str] = []
    outcome: Optional[Dict[str, object]] = None
    try:
        assert proc.stdout is not None and proc.stdin is not None
        for line in proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                print(f"  {line.rstrip()}", flush=True)
                continue
            if "log" in msg:
                print(f"  {msg['log']}", flush=True)
            elif "artefact" in msg:
                saved.append(str(msg["artefact"]))
            elif msg.get("control") == "restart-bridge":
                started = time.monotonic()
                site.restart_bridge()
                print(f"  bridge killed (SIGKILL) and restarted in "
                      f"{time.monotonic() - started:.2f} s", flush=True)
                proc.stdin.write("ok\n")
                proc.stdin.flush()
            elif "ok" in msg:
                outcome = msg
        code = proc.wait()
    finally:
        timer.cancel()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # Chromium, should node have left it behind
    if outcome is None or not outcome.get("ok") or code != 0:
        why = outcome.get("error") if outcome else f"no result (exit status {code}; " \
            f"killed after {SCENARIO_TIMEOUT_S:g} s?)"
        raise Failure(f"{label} {name} failed: {why}\n" + site.log_tail())
    return saved


class Tools:
    """What the scenarios run: node, chromium, and playwright-core in tests/browser."""

    def __init__(self, server: str, build: Path):
        binary = "lighttpd" if server == "lighttpd" else "apache2"
        if shutil.which(binary) is None:
            raise Failure(f"{binary} is not installed (bash scripts/deps.sh test installs it)")
        for part in ("fcgi/risksim-fcgi", "wsbridge/risksim-wsbridge"):
            if not (build / part).exists():
                raise Failure(f"{build / part} is missing: build first")
        self.chromium = find_chromium()
        self.node = find_node()
        ensure_node_modules(build / "tests" / "browser")


def run_all(server: str, build: Path, tools: Tools, scenarios: Sequence[str],
            artefacts: Path) -> List[str]:
    """Runs the scenarios, starting each site when the first scenario needs it; returns the
    artefacts saved. The state directories go to a fresh temporary directory, removed after a
    success unless keep."""
    saved: List[str] = []
    sites: Dict[bool, Site] = {}
    root = Path(tempfile.mkdtemp(prefix=f"risksim-browser-{server}-"))
    os.chmod(root, 0o755)  # Apache's children (www-data) must reach the sockets in it
    ok = False
    try:
        for name in scenarios:
            stream = name not in NO_STREAM_SCENARIOS
            if stream not in sites:
                sites[stream] = Site(server, root, build, stream).start()
            started = time.monotonic()
            print(f"{server} {name}: {sites[stream].base}/", flush=True)
            saved += run_scenario(tools, name, sites[stream], artefacts, server)
            print(f"{server} {name}: ok ({time.monotonic() - started:.1f} s)", flush=True)
        ok = True
    finally:
        for site in sites.values():
            site.stop()
        if ok and not OPTIONS["keep"]:
            shutil.rmtree(root, ignore_errors=True)
        print(f"{server}: state in {root}" + (" (removed)" if ok and not OPTIONS["keep"] else ""),
              file=sys.stderr)
    return saved


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--server", choices=("lighttpd", "apache"), default="lighttpd")
    ap.add_argument("--build", default=str(REPO / "build"), help="the CMake build directory")
    ap.add_argument("--scenario", action="append", choices=SCENARIOS,
                    help="run only this scenario (repeatable; default: all)")
    ap.add_argument("--keep", action="store_true",
                    help="keep the state directories (configs, databases, logs) afterwards")
    args = ap.parse_args(argv)
    OPTIONS["keep"] = args.keep
    build = Path(args.build).resolve()
    started = time.monotonic()
    try:
        tools = Tools(args.server, build)
        saved = run_all(args.server, build, tools, args.scenario or SCENARIOS,
                        build / "tests" / "browser")
    except Failure as e:
        print(f"FAILED: {e}", file=sys.stderr)
        return 1
    for path in saved:
        print(f"screenshot: {path}")
    print(f"{args.server}: all passed in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
