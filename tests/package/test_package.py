#!/usr/bin/python3
"""The Debian package, installed on this machine and used through Apache and lighttpd.

Why this file exists: the package is what administrators install, so it must do on a real
Debian host what docs/packaging.md promises: put the programs, configurations, units, page and
docs in place, create the risksim user, the directories and the job store (migrating one left by
an older version), and work once `a2enconf risksim` or `lighty-enable-mod risksim` is run. This
test builds the package with packaging/build-deb.sh, installs it with dpkg (twice: the second
time is an upgrade in place), checks what was installed, then enables it under the machine's
own Apache and lighttpd configurations (only the listening port and the log and pid paths are
changed, so that they run on loopback next to anything else) and runs the API and a WebSocket
stream through each. At the end it purges the package and undoes what it enabled.

The machine has no systemd as process 1 here, so the test starts the daemons the way the
installed units say: it reads risksim-fcgi.socket and the two .service files and runs their
ExecStart as their User and Group, with their UMask, and with the socket of the .socket unit
(path, owner, group, mode) on fd 0 for the responder, as StandardInput=socket does.
`systemd-analyze verify` checks the installed units. Under lighttpd the responder is spawned by
lighttpd itself (bin-path) as www-data, which checks the group permissions the package sets up.

    /usr/bin/python3 tests/package/test_package.py --build BUILD_DIR [--keep]

Needs root and a machine without the risksim package (it refuses to touch an existing
installation). Python 3 standard library and Debian's python3-websockets.
"""

from __future__ import annotations

import argparse
import asyncio
import configparser
import contextlib
import grp
import gzip
import json
import os
import pwd
import shlex
import shutil
import socket
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "scripts"))

import serve  # noqa: E402

try:
    import websockets
    WEBSOCKETS_MISSING: Optional[str] = None
except ImportError as import_error:  # reported by main(): the test fails, it is not skipped
    websockets = None  # type: ignore[assignment]
    WEBSOCKETS_MISSING = str(import_error)

UNIT_DIR = Path("/lib/systemd/system")
UNITS = ("risksim-fcgi.socket", "risksim-fcgi.service", "risksim-wsbridge.service")
CONF = Path("/etc/risksim/risksim.conf")
STATE = Path("/var/lib/risksim")
DB = STATE / "risksim.db"
APACHE_CONF = Path("/etc/apache2/conf-available/risksim.conf")
LIGHTTPD_CONF = Path("/etc/lighttpd/conf-available/10-risksim.conf")
MAN_PAGES = ("/usr/share/man/man1/risksim.1.gz", "/usr/share/man/man5/risksim.conf.5.gz",
             "/usr/share/man/man8/risksim-fcgi.8.gz", "/usr/share/man/man8/risksim-wsbridge.8.gz")
CHANGELOG = "/usr/share/doc/risksim/changelog.Debian.gz"
APACHE_MODULES = ("proxy", "proxy_fcgi", "proxy_http", "headers", "alias")
BRIDGE_PORT = 8091  # bridge_listen of the shipped configuration, which both web servers use
V1_DATABASE = REPO / "tests/data/jobs-schema-v1.sql"
# Queued in the old database: a responder of the new version takes it up. (Its stored request is
# not in the current request format, so it ends failed with invalid_request; what matters here
# is that the migrated queue is worked off.)
V1_QUEUED_JOB = "4SKS3F2W8JYY3RT0DKY73A1483"
WAIT_S = 60.0
# The shipped example (installed under /usr/share/doc/risksim/examples too), run small.
REQUEST = dict(json.loads((REPO / "examples/enterprise.json").read_text()), trials=2000, seed=11)


class Failure(Exception):
    """A check did not hold; the message says which."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise Failure(message)


def run(*args: str, **kwargs: object) -> subprocess.CompletedProcess:
    """Runs a command, failing the test with its output if it fails."""
    proc = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          **kwargs)  # type: ignore[call-overload]
    if proc.returncode != 0:
        raise Failure(f"{' '.join(args)} exited {proc.returncode}:\n{proc.stdout}")
    return proc


def step(text: str) -> None:
    print(f"-- {text}", flush=True)


def package_installed() -> bool:
    proc = subprocess.run(["dpkg-query", "-W", "-f=${Status}", "risksim"],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return "installed" in proc.stdout or "config-files" in proc.stdout


def refuse_existing_installation() -> None:
    """The test purges what it installs: it must not meet an installation of someone else's."""
    check(os.geteuid() == 0, "the package test needs root (dpkg -i, users, /etc)")
    check(not package_installed(), "the risksim package is installed on this machine; "
          "the test would purge it: remove it first (dpkg --purge risksim)")
    for path in (STATE, CONF.parent, Path("/run/risksim"), Path("/etc/apache2/conf-enabled/risksim.conf"),
                 Path("/etc/lighttpd/conf-enabled/10-risksim.conf")):
        check(not path.exists() and not path.is_symlink(),
              f"{path} exists without the package: refusing to overwrite it")
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the bridge binds
        try:
            s.bind(("127.0.0.1", BRIDGE_PORT))
        except OSError:
            raise Failure(f"127.0.0.1:{BRIDGE_PORT} (the shipped bridge_listen) is taken")


def build_package(build_dir: Path) -> Path:
    step("building the package (packaging/build-deb.sh)")
    out = run("bash", str(REPO / "packaging/build-deb.sh"), str(build_dir / "package"))
    deb = Path(out.stdout.strip().splitlines()[-1])
    check(deb.is_file(), f"no package at {deb}")
    return deb


def replace_with_old_database() -> None:
    """Puts a job store of schema version 1 where the installed package keeps its own, as an
    upgrade from an old version finds it (owned by risksim, group-writable)."""
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            Path(f"{DB}{suffix}").unlink()
    con = sqlite3.connect(DB)
    con.executescript(V1_DATABASE.read_text())
    con.close()
    user = pwd.getpwnam("risksim")
    os.chown(DB, user.pw_uid, user.pw_gid)
    os.chmod(DB, 0o660)


def install(deb: Path) -> None:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run("dpkg", "-i", str(deb), env=env)


# --- what the package installed -------------------------------------------------------------

def mode_owner(path: Path) -> Tuple[int, str, str]:
    st = path.stat()
    return (stat.S_IMODE(st.st_mode), pwd.getpwuid(st.st_uid).pw_name,
            grp.getgrgid(st.st_gid).gr_name)


def check_files() -> None:
    listed = set(run("dpkg-query", "-L", "risksim").stdout.split())
    for path in ("/usr/sbin/risksim-fcgi", "/usr/sbin/risksim-wsbridge", "/usr/bin/risksim",
                 str(CONF), str(APACHE_CONF), str(LIGHTTPD_CONF),
                 "/usr/lib/tmpfiles.d/risksim.conf", "/usr/share/risksim/web/index.html",
                 "/usr/share/risksim/web/risksim.js", "/usr/share/doc/risksim/copyright",
                 "/usr/share/doc/risksim/operations.md", CHANGELOG) + MAN_PAGES + tuple(
                     str(UNIT_DIR / u) for u in UNITS):
        check(path in listed, f"{path} is not in the package")
        check(Path(path).exists(), f"{path} is not installed")
    for page in MAN_PAGES:
        text = gzip.decompress(Path(page).read_bytes()).decode()
        check("\n.TH " in "\n" + text, f"{page} is not a man page")
    version = run("dpkg-query", "-W", "-f=${Version}", "risksim").stdout.strip()
    top = gzip.decompress(Path(CHANGELOG).read_bytes()).decode().splitlines()[0]
    check(top.startswith(f"risksim ({version})"),
          f"the changelog's top entry ({top}) is not the package's version {version}")
    conffiles = run("dpkg-query", "-W", "-f=${Conffiles}", "risksim").stdout
    for path in (CONF, APACHE_CONF, LIGHTTPD_CONF):
        check(str(path) in conffiles, f"{path} is not a conffile:\n{conffiles}")


def check_user_and_permissions() -> None:
    user = pwd.getpwnam("risksim")
    check(user.pw_uid < 1000, f"risksim is not a system user (uid {user.pw_uid})")
    check(user.pw_shell in ("/usr/sbin/nologin", "/bin/false"), f"risksim has a shell: "
          f"{user.pw_shell}")
    check("www-data" in grp.getgrnam("risksim").gr_mem, "www-data is not in group risksim")
    expected = {CONF: (0o640, "root", "risksim"), STATE: (0o2770, "risksim", "risksim"),
                DB: (0o660, "risksim", "risksim"),
                Path("/run/risksim"): (0o770, "risksim", "www-data")}
    for path, want in expected.items():
        got = mode_owner(path)
        check(got == want, f"{path}: mode/owner/group {oct(got[0])} {got[1]}:{got[2]}, "
              f"expected {oct(want[0])} {want[1]}:{want[2]}")


def check_database(version: int, jobs: int) -> None:
    """The job store has the given schema version and number of jobs (the postinst creates it,
    or migrates an old one in place, keeping its jobs), and risksim db check passes."""
    want_version, want_jobs = version, jobs
    con = sqlite3.connect(f"file:{DB}?mode=ro", uri=True)
    version = con.execute("PRAGMA user_version").fetchone()[0]
    jobs = con.execute("SELECT count(*) FROM jobs").fetchone()[0]
    con.close()
    check(version == want_version,
          f"the database has schema version {version} after the install, not {want_version}")
    check(jobs == want_jobs, f"{jobs} jobs in the database after the install, not {want_jobs}")
    run("runuser", "-u", "risksim", "--", "/usr/bin/risksim", "db", "check", "--db", str(DB))


def check_units_verify() -> None:
    out = subprocess.run(["systemd-analyze", "verify", *(str(UNIT_DIR / u) for u in UNITS)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # Without systemd as process 1 verify still parses every directive and checks the
    # ExecStart programs; it may only complain that it cannot reach the manager's bus.
    lines = [line for line in out.stdout.splitlines()
             if line.strip() and "Failed to connect to bus" not in line
             and "System has not been booted with systemd" not in line]
    # A failure without any message at all would be unexplained: that fails too.
    check(not lines and (out.returncode == 0 or out.stdout.strip()),
          f"systemd-analyze verify exited {out.returncode}:\n{out.stdout}")


# --- the units, run as systemd would --------------------------------------------------------

def read_unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None,
                                       comment_prefixes=("#", ";"))
    parser.optionxform = str  # type: ignore[assignment]
    parser.read(UNIT_DIR / name)
    return parser


def unit_socket(name: str) -> socket.socket:
    """The listening socket a .socket unit describes (ListenStream, owner, group, mode)."""
    sec = read_unit(name)["Socket"]
    path = Path(sec["ListenStream"])
    path.parent.mkdir(mode=int(sec.get("DirectoryMode", "0755"), 8), exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    os.chown(path, pwd.getpwnam(sec["SocketUser"]).pw_uid, grp.getgrnam(sec["SocketGroup"]).gr_gid)
    os.chmod(path, int(sec["SocketMode"], 8))
    sock.listen(int(sec.get("Backlog", "128")))
    return sock


def start_service(name: str, log: Path, stdin: Optional[socket.socket] = None
                  ) -> subprocess.Popen:
    """Runs a .service unit's ExecStart as its User and Group (with the user's supplementary
    groups) and UMask; StandardInput=socket gets the given socket on fd 0."""
    sec = read_unit(name)["Service"]
    user = sec["User"]
    groups = [g.gr_gid for g in grp.getgrall() if user in g.gr_mem]
    if sec.get("StandardInput") == "socket":
        check(stdin is not None, f"{name} wants its socket on fd 0")
    out = open(log, "ab")
    return subprocess.Popen(shlex.split(sec["ExecStart"]), stdin=stdin or subprocess.DEVNULL,
                            stdout=out, stderr=out, user=user, group=sec["Group"],
                            extra_groups=groups, umask=int(sec.get("UMask", "0022"), 8),
                            start_new_session=True)


def stop(proc: Optional[subprocess.Popen]) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_for(url: str, what: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + WAIT_S
    last = ""
    while time.monotonic() < deadline:
        check(proc.poll() is None, f"{what} exited {proc.returncode}:\n{serve.tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status == 200:
                    return
        except urllib.error.HTTPError as err:
            last = f"HTTP {err.code}"
        except OSError as err:
            last = str(err)
        time.sleep(0.2)
    raise Failure(f"{what} not ready at {url}: {last}\n{serve.tail(log)}")


# --- web servers with the machine's own configuration ---------------------------------------

def enable_apache(enabled: List[str]) -> None:
    """a2enmod the modules the shipped file needs (remembering which were off), a2enconf."""
    for mod in APACHE_MODULES:
        if not Path(f"/etc/apache2/mods-enabled/{mod}.load").exists():
            run("a2enmod", "-q", mod)
            enabled.append(mod)
    run("a2enconf", "-q", "risksim")


def apache_main_config(work: Path, port: int) -> Path:
    """/etc/apache2/apache2.conf with its ports.conf (Listen 80) replaced by one loopback port."""
    text = Path("/etc/apache2/apache2.conf").read_text()
    check("Include ports.conf" in text, "/etc/apache2/apache2.conf has no 'Include ports.conf'")
    text = text.replace("Include ports.conf", f"Listen 127.0.0.1:{port}")
    conf = work / "apache2.conf"
    conf.write_text(f'ServerRoot "/etc/apache2"\nServerName 127.0.0.1\n{text}')
    return conf


def start_apache(work: Path, port: int) -> subprocess.Popen:
    conf = apache_main_config(work, port)
    logs = work / "apache-log"
    run_dir = work / "apache-run"
    for d in (logs, run_dir):
        d.mkdir()
    env = dict(os.environ, APACHE_RUN_USER="www-data", APACHE_RUN_GROUP="www-data",
               APACHE_PID_FILE=str(run_dir / "apache2.pid"), APACHE_RUN_DIR=str(run_dir),
               APACHE_LOCK_DIR=str(run_dir), APACHE_LOG_DIR=str(logs), LANG="C")
    run("apache2", "-f", str(conf), "-t", env=env)
    out = open(work / "apache-stderr.log", "ab")
    return subprocess.Popen(["apache2", "-f", str(conf), "-DFOREGROUND"], env=env, stdout=out,
                            stderr=out, start_new_session=True)


def start_lighttpd(work: Path, port: int) -> subprocess.Popen:
    """/etc/lighttpd/lighttpd.conf (with conf-enabled/, where lighty-enable-mod put risksim),
    its port, pid file and error log replaced (:= overrides a setting)."""
    logs = work / "lighttpd-log"
    logs.mkdir()
    os.chown(logs, pwd.getpwnam("www-data").pw_uid, grp.getgrnam("www-data").gr_gid)
    conf = work / "lighttpd.conf"
    conf.write_text('include "/etc/lighttpd/lighttpd.conf"\n'
                    f'server.port := {port}\nserver.bind := "127.0.0.1"\n'
                    f'server.pid-file := "{work}/lighttpd.pid"\n'
                    f'server.errorlog := "{logs}/error.log"\n')
    run("lighttpd", "-tt", "-f", str(conf))
    out = open(work / "lighttpd-stderr.log", "ab")
    return subprocess.Popen(["lighttpd", "-D", "-f", str(conf)], stdout=out, stderr=out,
                            start_new_session=True)


# --- the API and the stream through a web server --------------------------------------------

def http(method: str, url: str, body: Optional[dict] = None) -> Tuple[int, dict, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(req, timeout=WAIT_S) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


async def stream_events(url: str) -> Tuple[List[dict], int]:
    """The events a stream delivers until it closes (without the opening status snapshot, which
    is not a stored event), and the close code."""
    events: List[dict] = []
    async with websockets.connect(url, open_timeout=WAIT_S) as ws:  # type: ignore[union-attr]
        opening = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
        check(opening.get("type") == "status", f"the stream opened with {opening}")
        try:
            while True:
                msg = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
                if "seq" in msg:
                    events.append(msg)
        except websockets.exceptions.ConnectionClosed:  # type: ignore[union-attr]
            pass
        return events, ws.close_code or 0


def comparable(result: dict) -> dict:
    """A result without what differs between two runs of one request (its id and duration)."""
    return {k: v for k, v in result.items() if k not in ("id", "durationMs")}


def exercise(base: str, label: str) -> None:
    """Page, health, a synchronous run, an async job streamed over WebSocket and polled."""
    status, headers, body = http("GET", base + "/")
    check(status == 200 and b"risksim" in body, f"{label}: GET /risksim/ -> {status}")
    status, _, body = http("GET", base + "/healthz")
    check(status == 200, f"{label}: healthz -> {status} {body[:300]!r}")
    status, _, body = http("POST", base + "/simulations", REQUEST)
    check(status == 200, f"{label}: sync run -> {status} {body[:300]!r}")
    sync_result = json.loads(body)
    status, headers, body = http("POST", base + "/simulations/async", REQUEST)
    check(status == 202, f"{label}: async submit -> {status} {body[:300]!r}")
    job = json.loads(body)["id"]
    ws_url = base.replace("http://", "ws://") + f"/simulations/{job}/stream?after=0"
    events, code = asyncio.run(stream_events(ws_url))
    check(code == 1000, f"{label}: stream closed with {code}, not 1000")
    check(events and events[-1]["type"] == "complete", f"{label}: stream ended without complete")
    status, _, body = http("GET", base + f"/simulations/{job}/events?after=0")
    check(status == 200, f"{label}: events -> {status}")
    polled = json.loads(body)
    polled_events = polled["events"] if isinstance(polled, dict) else polled
    check(events == polled_events, f"{label}: the stream and the polling endpoint disagree")
    status, _, body = http("GET", base + f"/simulations/{job}")
    check(status == 200, f"{label}: GET job -> {status}")
    job_doc = json.loads(body)
    check(comparable(job_doc["result"]) == comparable(sync_result),
          f"{label}: the async result differs from the synchronous one")
    print(f"   {label}: page, healthz, sync, async job {job} streamed "
          f"({len(events)} events) and polled", flush=True)


def check_old_job_ran(base: str) -> None:
    """The job queued in the old database before the upgrade is taken up and ends."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        status, _, body = http("GET", base + f"/simulations/{V1_QUEUED_JOB}")
        check(status == 200, f"the migrated job {V1_QUEUED_JOB}: GET -> {status} {body[:200]!r}")
        if json.loads(body)["status"] in ("completed", "failed"):
            return
        time.sleep(0.2)
    raise Failure(f"the job queued before the upgrade did not end: {body[:300]!r}")


# --- cleanup ----------------------------------------------------------------------------------

def undo(apache_mods: List[str]) -> None:
    """Disable what the test enabled and purge the package."""
    if Path("/etc/apache2/conf-enabled/risksim.conf").is_symlink():
        subprocess.run(["a2disconf", "-q", "risksim"], check=False)
    for mod in reversed(apache_mods):
        subprocess.run(["a2dismod", "-q", "-f", mod], check=False)
    if package_installed():
        subprocess.run(["dpkg", "--purge", "risksim"], check=False)
    else:
        shutil.rmtree(STATE, ignore_errors=True)


def lintian(deb: Path) -> None:
    """lintian finds nothing in the package but the note that an upload to Debian's archive
    would close no bug report (this package is not uploaded there)."""
    out = subprocess.run(["lintian", "--tag-display-limit", "0", str(deb)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tags = [line for line in out.stdout.splitlines()
            if line[:3] in ("E: ", "W: ", "I: ") and "initial-upload-closes-no-bugs" not in line]
    check(not tags and out.returncode in (0, 1) and "E: " not in out.stdout,
          f"lintian reports:\n{out.stdout}")


def check_purged() -> None:
    """The purge removed the configuration, the job store and the links that enabled the
    configurations of Apache and lighttpd (the postrm disables them)."""
    check(not package_installed(), "risksim is still installed after dpkg --purge")
    for path in (CONF, STATE, Path("/etc/apache2/conf-enabled/risksim.conf"),
                 Path("/etc/lighttpd/conf-enabled/10-risksim.conf"), Path("/usr/sbin/risksim-fcgi")):
        check(not path.exists() and not path.is_symlink(), f"{path} is left after the purge")


# --- the test -----------------------------------------------------------------------------------

def serve_through(name: str, start, work: Path, fcgi_needed: bool) -> None:
    """Starts the units (the socket-activated responder only where the server does not spawn
    one), the web server, runs the exercises, and stops everything."""
    procs: List[subprocess.Popen] = []
    sock = None
    try:
        if fcgi_needed:
            sock = unit_socket("risksim-fcgi.socket")
            procs.append(start_service("risksim-fcgi.service", work / f"{name}-fcgi.log", sock))
        bridge_log = work / f"{name}-wsbridge.log"
        bridge = start_service("risksim-wsbridge.service", bridge_log)
        procs.append(bridge)
        wait_for(f"http://127.0.0.1:{BRIDGE_PORT}/healthz", "risksim-wsbridge", bridge, bridge_log)
        port = serve.free_port()
        web = start(work, port)
        procs.append(web)
        base = f"http://127.0.0.1:{port}/risksim"
        wait_for(base + "/healthz", name, web, work / f"{name}-stderr.log")
        if name == "apache":
            check_old_job_ran(base)
        exercise(base, name)
    finally:
        for proc in reversed(procs):
            stop(proc)
        if sock is not None:
            sock.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", type=Path, default=REPO / "build")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    if WEBSOCKETS_MISSING:
        print(f"FAIL: python3-websockets is missing ({WEBSOCKETS_MISSING}); "
              "bash scripts/deps.sh test installs it", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="risksim-package-"))
    os.chmod(work, 0o755)
    apache_mods: List[str] = []
    try:
        refuse_existing_installation()
        deb = build_package(args.build.resolve())
        step("lintian")
        lintian(deb)
        step(f"installing {deb.name}")
        install(deb)
        check_files()
        check_user_and_permissions()
        check_database(version=3, jobs=0)
        step("installing it again over a job store of schema version 1 (an upgrade)")
        replace_with_old_database()
        install(deb)
        check_user_and_permissions()
        check_database(version=3, jobs=8)
        step("systemd-analyze verify of the installed units")
        check_units_verify()
        step("a2enmod + a2enconf risksim; Apache with the machine's configuration")
        enable_apache(apache_mods)
        serve_through("apache", start_apache, work, fcgi_needed=True)
        step("lighty-enable-mod risksim; lighttpd with the machine's configuration")
        run("lighty-enable-mod", "risksim")
        serve_through("lighttpd", start_lighttpd, work, fcgi_needed=False)
        run("runuser", "-u", "risksim", "--", "/usr/bin/risksim", "db", "check", "--db", str(DB))
        step("dpkg --purge risksim (with its Apache and lighttpd configurations enabled)")
        run("dpkg", "--purge", "risksim")
        check_purged()
    except Failure as err:
        print(f"FAIL: {err}", file=sys.stderr)
        for log in sorted(work.glob("*.log")) + sorted(work.glob("*-log/*")):
            print(f"--- {log}\n{serve.tail(log)}", file=sys.stderr)
        return 1
    finally:
        undo(apache_mods)
        if args.keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
