#!/usr/bin/env python3
"""Run risksim behind a real web server on loopback, from the shipped configurations.

Why this file exists: the configurations in httpd-conf/ are what administrators install, so they
are also what the run command and the integration tests use. This module makes a private copy
of them in a state directory, changing only paths and ports (binaries -> the build tree,
/etc/risksim/risksim.conf -> STATE/risksim.conf, /var/lib/risksim -> STATE, /run/risksim ->
STATE/run, /usr/share/risksim/web -> the repository's web/, the bridge's port 8091 -> a chosen
port; the mount point /risksim stays), wraps a minimal main server configuration around the
shipped snippet, and starts the processes in the foreground (no daemonizing, no systemd), each
in its own process group, with its logs in STATE/log/.

As a program (the run command, or by hand):

    python3 scripts/serve.py --server lighttpd|apache --port 8080 --state DIR --build BUILD_DIR \\
        [--set key=value ...] [--bridge-port N] [--fcgi-procs N] [--no-bridge]
        [--no-stream-proxy] [--check]

starts everything, prints the URLs and stays in the foreground until Ctrl-C or SIGTERM, then
stops everything it started. As a module (the integration tests):

    with serve.Lighttpd(port, state_dir, build_dir) as web:
        urllib.request.urlopen(web.base_url + "/healthz")

Python 3 standard library only.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

REPO_DIR = Path(__file__).resolve().parent.parent
DEFAULT_BUILD_DIR = REPO_DIR / "build"
HTTPD_CONF = REPO_DIR / "httpd-conf"
BASE_PATH = "/risksim"
DEFAULT_BRIDGE_PORT = 8091
START_TIMEOUT = 20.0
STOP_TIMEOUT = 30.0
APACHE_MODULES_DIR = Path("/usr/lib/apache2/modules")
# The user Apache switches to when started as root (Debian's APACHE_RUN_USER).
APACHE_USER = "www-data"
# Longest usable unix socket path (sun_path is 108 bytes with the NUL); lighttpd appends "-N".
SUN_PATH_MAX = 107

PathLike = Union[str, Path]


class ServeError(RuntimeError):
    """A server could not be configured or started (the message includes its log tail)."""


class PortTaken(ServeError):
    """The port chosen for a web server was taken (by another process) before it started."""


# --------------------------------------------------------------------------------------------
# Small helpers


def free_port() -> int:
    """Returns a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: PathLike, lines: int = 30) -> str:
    """The last lines of a log file, or a note that it is missing or empty."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError:
        return f"--- {p}: (missing)\n"
    text = data.decode("utf-8", "replace").splitlines()[-lines:]
    if not text:
        return f"--- {p}: (empty)\n"
    return f"--- {p} (last {len(text)} lines):\n" + "\n".join(text) + "\n"


def http_request(url: str, method: str = "GET", body: Optional[bytes] = None,
                 headers: Optional[Mapping[str, str]] = None,
                 timeout: float = 10.0) -> Tuple[int, Dict[str, str], bytes]:
    """One HTTP request without raising on 4xx/5xx: returns (status, headers, body).
    Header names are lower-cased."""
    req = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def make_token(secret: str, ttl: int = 300, **claims: object) -> str:
    """An HS256 JWT signed with secret (the auth_secret key), expiring in ttl seconds, with the
    given claims (for example scope="admin" or job=ID), as the responder and the bridge expect
    in "Authorization: Bearer" or ?token=."""
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = dict(claims)
    payload.setdefault("exp", int(time.time()) + ttl)
    body = b64(json.dumps(payload, separators=(",", ":")).encode())
    signing_input = f"{header}.{body}".encode("ascii")
    signature = hmac.new(secret.encode(), signing_input, hashlib.sha256).digest()
    return f"{header}.{body}.{b64(signature)}"


def _process_group_signal(proc: subprocess.Popen, sig: int) -> None:
    """Sends sig to the process group led by proc (every child was started as a group leader),
    or to proc alone if the group is gone."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass


def _stop_process(proc: Optional[subprocess.Popen], timeout: float) -> Optional[int]:
    """SIGTERM to the process group, wait up to timeout seconds, then SIGKILL the group.
    Returns the exit status (negative: killed by that signal)."""
    if proc is None:
        return None
    if getattr(proc, "risksim_group_killed", False):
        return proc.returncode
    if proc.poll() is None:
        _process_group_signal(proc, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _process_group_signal(proc, signal.SIGKILL)
            proc.wait()
    # Whatever is left in the group (grandchildren that ignored SIGTERM) goes too; only once,
    # so that a later call never signals a group whose id has been reused.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.risksim_group_killed = True  # type: ignore[attr-defined]
    return proc.returncode


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
        return state != b"Z"
    except (OSError, IndexError):
        return False


def _handles_signal(pid: int, sig: int) -> bool:
    """Whether process pid blocks (main thread) or catches sig, from /proc/PID/status."""
    try:
        with open(f"/proc/{pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
    except OSError:
        return False
    bit = 1 << (int(sig) - 1)
    return any(int(fields.get(k, "0").strip() or "0", 16) & bit for k in ("SigBlk", "SigCgt"))


def _children(pid: int) -> List[int]:
    """The pids of the live child processes of pid (from /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if len(fields) > 1 and int(fields[1]) == pid and fields[0] != b"Z":
            out.append(int(entry))
    return sorted(out)


_RUNNING: List["_Service"] = []


def _stop_all_at_exit() -> None:
    for svc in reversed(list(_RUNNING)):
        try:
            svc.stop(timeout=5)
        except Exception:  # noqa: BLE001 - best effort at interpreter exit
            pass


atexit.register(_stop_all_at_exit)


# --------------------------------------------------------------------------------------------
# A minimal FastCGI client (the responder's readiness check, and tests without a web server)

_FCGI_BEGIN, _FCGI_END, _FCGI_PARAMS, _FCGI_STDIN, _FCGI_STDOUT, _FCGI_STDERR = 1, 3, 4, 5, 6, 7


def _fcgi_record(rtype: int, content: bytes, request_id: int = 1) -> bytes:
    out = b""
    for i in range(0, max(len(content), 1), 65535):
        chunk = content[i:i + 65535]
        pad = (8 - len(chunk) % 8) % 8
        out += struct.pack(">BBHHBx", 1, rtype, request_id, len(chunk), pad) + chunk + b"\0" * pad
    return out


def _fcgi_name_value(name: bytes, value: bytes) -> bytes:
    def length(n: int) -> bytes:
        return struct.pack(">B", n) if n < 128 else struct.pack(">I", n | 0x80000000)
    return length(len(name)) + length(len(value)) + name + value


def _connect(address: str, timeout: float) -> socket.socket:
    """Connects to a listen address of the responder: unix:/path or HOST:PORT."""
    if address.startswith("unix:"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        target: object = address[len("unix:"):]
    else:
        host, _, port = address.rpartition(":")
        host = host.strip("[]")
        s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        target = (host, int(port))
    s.settimeout(timeout)
    try:
        s.connect(target)
    except OSError:
        s.close()
        raise
    return s


def fcgi_request(address: str, method: str = "GET", uri: str = BASE_PATH + "/healthz",
                 headers: Optional[Mapping[str, str]] = None, body: bytes = b"",
                 timeout: float = 10.0,
                 script_name: str = BASE_PATH) -> Tuple[int, Dict[str, str], bytes]:
    """Sends one FastCGI request to a responder listening on address ("unix:/path" or
    "127.0.0.1:PORT"), the way a web server would, and returns (status, headers, body) of its
    answer. Header names are lower-cased. Raises OSError on connection errors."""
    path, _, query = uri.partition("?")
    params = {
        "GATEWAY_INTERFACE": "CGI/1.1",
        "SERVER_SOFTWARE": "risksim-serve",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "1",
        "REQUEST_METHOD": method,
        "REQUEST_URI": uri,
        "SCRIPT_NAME": script_name,
        "PATH_INFO": path[len(script_name):] if path.startswith(script_name) else path,
        "QUERY_STRING": query,
        "CONTENT_LENGTH": str(len(body)),
    }
    for name, value in (headers or {}).items():
        key = name.upper().replace("-", "_")
        if key == "CONTENT_TYPE":
            params["CONTENT_TYPE"] = value
        elif key == "CONTENT_LENGTH":
            params["CONTENT_LENGTH"] = value
        else:
            params["HTTP_" + key] = value
    encoded = b"".join(_fcgi_name_value(k.encode(), v.encode()) for k, v in params.items())
    msg = (_fcgi_record(_FCGI_BEGIN, struct.pack(">HB5x", 1, 0))  # responder, no keep-conn
           + _fcgi_record(_FCGI_PARAMS, encoded) + _fcgi_record(_FCGI_PARAMS, b""))
    if body:
        msg += _fcgi_record(_FCGI_STDIN, body)
    msg += _fcgi_record(_FCGI_STDIN, b"")
    stdout = b""
    with _connect(address, timeout) as s:
        s.sendall(msg)
        buf = b""
        ended = False
        while not ended:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
            while len(buf) >= 8:
                _, rtype, _, clen, plen = struct.unpack(">BBHHBx", buf[:8])
                if len(buf) < 8 + clen + plen:
                    break
                content = buf[8:8 + clen]
                buf = buf[8 + clen + plen:]
                if rtype == _FCGI_STDOUT:
                    stdout += content
                elif rtype == _FCGI_END:
                    ended = True
                    break
    if not ended:
        raise ConnectionError("the responder closed the connection before FCGI_END_REQUEST")
    head, sep, payload = stdout.partition(b"\r\n\r\n")
    if not sep:
        head, _, payload = stdout.partition(b"\n\n")
    out_headers: Dict[str, str] = {}
    for line in head.decode("latin-1").splitlines():
        name, _, value = line.partition(":")
        out_headers[name.strip().lower()] = value.strip()
    status = int(out_headers.get("status", "200").split()[0])
    return status, out_headers, payload


# --------------------------------------------------------------------------------------------
# Configuration generation


class Layout:
    """Where a loopback installation lives: the substitutions applied to the shipped files.

    state_dir: everything written (configs, database, logs, sockets unless run_dir says
    otherwise). build_dir: the CMake build tree with fcgi/risksim-fcgi (and, once it exists,
    wsbridge/risksim-wsbridge). repo_dir: the source tree (httpd-conf/ and web/).
    run_dir: the stand-in for /run/risksim, default STATE/run (see Layout.choose_run_dir)."""

    def __init__(self, state_dir: PathLike, build_dir: PathLike = DEFAULT_BUILD_DIR,
                 repo_dir: PathLike = REPO_DIR, bridge_port: int = DEFAULT_BRIDGE_PORT,
                 run_dir: Optional[PathLike] = None, web_user: Optional[str] = None):
        self.state_dir = Path(state_dir).resolve()
        self.build_dir = Path(build_dir).resolve()
        self.repo_dir = Path(repo_dir).resolve()
        self.bridge_port = int(bridge_port)
        self.log_dir = self.state_dir / "log"
        self.config_path = self.state_dir / "risksim.conf"
        self.db_path = self.state_dir / "risksim.db"
        self.web_dir = self.repo_dir / "web"
        self.fcgi_bin = self.build_dir / "fcgi" / "risksim-fcgi"
        self.bridge_bin = self.build_dir / "wsbridge" / "risksim-wsbridge"
        self.cli_bin = self.build_dir / "cli" / "risksim"
        self._own_run_dir = False
        self.run_dir = Path(run_dir) if run_dir else self.choose_run_dir(web_user)

    def choose_run_dir(self, web_user: Optional[str]) -> Path:
        """STATE/run, unless a socket path there would be too long, or another user (Apache's
        children switch to www-data when it starts as root) could not reach it because a parent
        directory is closed to others (pytest's tmp_path, mkdtemp): then a fresh directory
        /tmp/risksim-run-XXXXXX, removed again by cleanup()."""
        candidate = self.state_dir / "run"
        too_long = len(str(candidate / "fcgi-lighttpd.sock-00")) > SUN_PATH_MAX
        closed = False
        if web_user:
            # prepare() makes STATE itself 0755; its existing parents must let others through.
            for parent in self.state_dir.parents:
                if parent.exists() and not parent.stat().st_mode & stat.S_IXOTH:
                    closed = True
        if not too_long and not closed:
            return candidate
        self._own_run_dir = True
        return Path(tempfile.mkdtemp(prefix="risksim-run-", dir="/tmp"))

    def prepare(self) -> None:
        """Creates the directories. The state and run directories are made 0755 so that a web
        server that switched users (Apache as root -> www-data) can reach the sockets."""
        for d in (self.state_dir, self.log_dir, self.run_dir):
            d.mkdir(parents=True, exist_ok=True)
        for d in (self.state_dir, self.run_dir):
            os.chmod(d, 0o755)

    def cleanup(self) -> None:
        """Removes a run directory this layout created under /tmp."""
        if self._own_run_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def substitutions(self) -> List[Tuple[str, str]]:
        """The (installed path, loopback path) pairs, most specific first."""
        return [
            ("/usr/sbin/risksim-fcgi", str(self.fcgi_bin)),
            ("/usr/sbin/risksim-wsbridge", str(self.bridge_bin)),
            ("/usr/bin/risksim", str(self.cli_bin)),
            ("/etc/risksim/risksim.conf", str(self.config_path)),
            ("/var/lib/risksim", str(self.state_dir)),
            ("/run/risksim", str(self.run_dir)),
            ("/usr/share/risksim/web", str(self.web_dir)),
        ]

    def substitute(self, text: str, required: Iterable[str] = ()) -> str:
        """Applies the path substitutions and the bridge port (the number 8091) to a shipped
        file. Every string in required must occur in the shipped text, so that a change of the
        shipped file that would silently skip a substitution fails here instead."""
        for needle in required:
            if needle not in text:
                raise ServeError(f"shipped configuration no longer contains {needle!r}")
        subs = self.substitutions()
        # An installed path outside comments that none of the substitutions covers.
        for line in text.splitlines():
            code = line.split("#", 1)[0]
            for old, _ in subs:
                code = code.replace(old, "")
            for prefix in ("/usr/sbin/risksim", "/usr/bin/risksim", "/etc/risksim",
                           "/var/lib/risksim", "/run/risksim", "/usr/share/risksim"):
                if prefix in code:
                    raise ServeError(f"no substitution for the installed path in: "
                                     f"{line.strip()}")
        # The port first, so that digits in the substituted paths are left alone.
        text = re.sub(r"(?<![0-9])%d(?![0-9])" % DEFAULT_BRIDGE_PORT, str(self.bridge_port), text)
        for old, new in subs:
            text = text.replace(old, new)
        return text

    def write_config(self, overrides: Optional[Mapping[str, object]] = None,
                     path: Optional[PathLike] = None) -> Path:
        """Writes the responder's (and bridge's) configuration file, by default STATE/risksim.conf:
        the shipped example httpd-conf/risksim.conf with its paths and port substituted
        (db_path = STATE/risksim.db), then each override as "key = value" replacing the key's
        line if the example sets it, appended otherwise. Returns its path."""
        shipped = (self.repo_dir / "httpd-conf" / "risksim.conf").read_text()
        text = self.substitute(shipped, required=("/var/lib/risksim/risksim.db",))
        text = re.sub(r"(?m)^(\s*db_path\s*=).*$", lambda m: f"{m.group(1)} {self.db_path}", text)
        lines = text.splitlines()
        for key, value in (overrides or {}).items():
            if not re.fullmatch(r"[a-z][a-z0-9_]*", key):
                raise ServeError(f"bad configuration key {key!r}")
            value_text = _config_value(value)
            new_line = f"{key} = {value_text}"
            for i, line in enumerate(lines):
                if re.match(r"\s*%s\s*=" % re.escape(key), line):
                    lines[i] = new_line
                    break
            else:
                lines.append(new_line)
        target = Path(path) if path else self.config_path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("# Generated by scripts/serve.py from httpd-conf/risksim.conf.\n"
                          + "\n".join(lines) + "\n")
        return target


def _config_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    # The file syntax: a value in double quotes is taken as it is (no escapes) up to the last
    # quote of the line; unquoted, a '#' or ';' after a blank starts a comment and outer
    # blanks are dropped.
    if text == "" or text != text.strip() or text.startswith('"') or "#" in text or ";" in text:
        return '"' + text + '"'
    return text


def _without(text: str, pattern: str, what: str) -> str:
    """text with the one match of pattern removed (a shipped route left out); ServeError if
    the shipped file no longer has it."""
    out, n = re.subn(pattern, "", text, count=1)
    if n != 1:
        raise ServeError(f"shipped configuration no longer contains {what}")
    return out


def _secret_of(overrides: Optional[Mapping[str, object]]) -> Optional[str]:
    value = (overrides or {}).get("auth_secret")
    return str(value) if value else None


def parse_overrides(items: Sequence[str]) -> Dict[str, str]:
    """["key=value", ...] (the --set arguments) as a dict."""
    out: Dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ServeError(f"--set expects key=value, got {item!r}")
        out[key.strip().replace("-", "_")] = value
    return out


# --------------------------------------------------------------------------------------------
# Processes


class _Service:
    """A started process (and its process group) with its log file; the common part of the
    classes below. Subclasses implement _spawn() and _probe()."""

    name = "service"

    def __init__(self) -> None:
        self.proc: Optional[subprocess.Popen] = None
        self.log_path: Optional[Path] = None
        self.auth_secret: Optional[str] = None
        self._last_probe = "no answer"

    # Subclass hooks.
    def _spawn(self) -> subprocess.Popen:
        raise NotImplementedError

    def _probe(self) -> int:
        """One readiness request; returns its HTTP status (raises OSError: not listening)."""
        raise NotImplementedError

    def _ready(self) -> bool:
        try:
            status = self._probe()
        except OSError as e:
            self._last_probe = f"no answer ({e})"
            return False
        self._last_probe = f"status {status}"
        return status == 200

    def auth_headers(self, **claims: object) -> Dict[str, str]:
        """{"Authorization": "Bearer ..."} with a fresh token (default scope admin) when
        auth_secret is set, else {}."""
        if not self.auth_secret:
            return {}
        claims.setdefault("scope", "admin")
        return {"Authorization": "Bearer " + make_token(self.auth_secret, **claims)}

    def _logs(self) -> List[Path]:
        return [self.log_path] if self.log_path else []

    def _cleanup(self) -> None:
        pass

    @property
    def pid(self) -> Optional[int]:
        """The process id of the main process (None before start)."""
        return self.proc.pid if self.proc else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> Optional[int]:
        return self.proc.poll() if self.proc else None

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of every log of this service."""
        return "".join(tail(p, lines) for p in self._logs())

    def start(self, timeout: float = START_TIMEOUT) -> "_Service":
        """Starts the process and waits until it is ready (at most timeout seconds). Raises
        ServeError, with the log tails, if it exits or is not ready in time."""
        if self.running:
            return self
        try:
            self.proc = self._spawn()
        except BaseException:
            self.stop(5)
            raise
        _RUNNING.append(self)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.stop()
                raise ServeError(f"{self.name} exited with status {code} while starting\n"
                                 + self.log_tail())
            if self._ready():
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise ServeError(f"{self.name} was not ready after {timeout:g} s (health check: "
                                 f"{self._last_probe})\n" + self.log_tail())
            time.sleep(0.1)

    def terminate(self) -> None:
        """Sends SIGTERM to the process group and returns at once."""
        if self.proc:
            _process_group_signal(self.proc, signal.SIGTERM)

    def kill(self, sig: int = signal.SIGKILL) -> Optional[int]:
        """Sends sig (default SIGKILL) to the process group; for SIGKILL also waits for the
        process and returns its status."""
        if not self.proc:
            return None
        _process_group_signal(self.proc, sig)
        if sig == signal.SIGKILL:
            return self.proc.wait()
        return None

    def wait(self, timeout: Optional[float] = None) -> int:
        """Waits for the process to exit and returns its status (raises
        subprocess.TimeoutExpired)."""
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self, timeout: float = STOP_TIMEOUT) -> Optional[int]:
        """SIGTERM, wait up to timeout seconds, then SIGKILL; returns the exit status."""
        code = _stop_process(self.proc, timeout)
        self._cleanup()
        if self in _RUNNING:
            _RUNNING.remove(self)
        return code

    def __enter__(self) -> "_Service":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def daemon_env(extra: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """This process's environment without RISKSIM_* variables (which would override the
    generated configuration file in the daemons), plus extra."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RISKSIM_")}
    env.update(extra or {})
    return env


def _popen(args: Sequence[str], log_path: Path, stdin: object = subprocess.DEVNULL,
           env: Optional[Mapping[str, str]] = None, cwd: Optional[Path] = None) -> subprocess.Popen:
    """Starts args in a new session (its own process group), stdout and stderr appended to
    log_path, with env (default: daemon_env())."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        log.write(("==== %s %s\n" % (time.strftime("%Y-%m-%dT%H:%M:%S"),
                                      " ".join(args))).encode())
        log.flush()
        return subprocess.Popen(list(args), stdin=stdin, stdout=log, stderr=subprocess.STDOUT,
                                env=dict(env) if env is not None else daemon_env(),
                                cwd=str(cwd) if cwd else None, start_new_session=True,
                                close_fds=True)


class Responder(_Service):
    """One risksim-fcgi process on its own listening socket.

    Responder(state_dir, build_dir=DEFAULT_BUILD_DIR, listen=None, *, repo_dir=REPO_DIR,
              config_path=None, config_overrides=None, listen_mode=None, name="fcgi",
              extra_args=(), env=None, inherit_socket=None, layout=None, auth_secret=None)

    listen: "unix:/abs/path" or "127.0.0.1:PORT"; None = unix:RUN/NAME.sock. The responder
    binds it itself (--listen), with --listen-mode listen_mode (e.g. "0666") if given.
    inherit_socket: a listening socket.socket to hand over as fd 0 instead (as lighttpd,
    spawn-fcgi or systemd do); then --listen is not passed and several Responders can share the
    one socket; listen must still name its address for the readiness check.
    config_path: the --config file; None = write STATE/risksim.conf from the shipped example
    plus config_overrides. env: its whole environment (default: this process's without
    RISKSIM_* variables, see daemon_env). Its stderr goes to STATE/log/NAME.log.
    start() waits until GET /risksim/healthz over FastCGI answers 200 (with an admin token
    when auth_secret, or config_overrides["auth_secret"], is set)."""

    def __init__(self, state_dir: PathLike, build_dir: PathLike = DEFAULT_BUILD_DIR,
                 listen: Optional[str] = None, *, repo_dir: PathLike = REPO_DIR,
                 config_path: Optional[PathLike] = None,
                 config_overrides: Optional[Mapping[str, object]] = None,
                 listen_mode: Optional[str] = None, name: str = "fcgi",
                 extra_args: Sequence[str] = (), env: Optional[Mapping[str, str]] = None,
                 inherit_socket: Optional[socket.socket] = None,
                 layout: Optional[Layout] = None, auth_secret: Optional[str] = None):
        super().__init__()
        self.layout = layout or Layout(state_dir, build_dir, repo_dir)
        self.auth_secret = auth_secret or _secret_of(config_overrides)
        self.name = name
        self.listen = listen or f"unix:{self.layout.run_dir / (name + '.sock')}"
        self.listen_mode = listen_mode
        self.config_path = Path(config_path) if config_path else None
        self.config_overrides = dict(config_overrides or {})
        self.extra_args = list(extra_args)
        self.env = env
        self.inherit_socket = inherit_socket
        self.log_path = self.layout.log_dir / f"{name}.log"

    @property
    def address(self) -> str:
        """The listen address ("unix:/path" or "HOST:PORT")."""
        return self.listen

    @property
    def socket_path(self) -> Optional[Path]:
        return Path(self.listen[5:]) if self.listen.startswith("unix:") else None

    def command(self) -> List[str]:
        """The command line start() runs."""
        if not self.layout.fcgi_bin.exists():
            raise ServeError(f"{self.layout.fcgi_bin} is missing: build it first "
                             "(cmake --build build --target risksim-fcgi)")
        args = [str(self.layout.fcgi_bin), "--config", str(self.config_path)]
        if self.inherit_socket is None:
            args += ["--listen", self.listen]
            if self.listen_mode is not None:
                args += ["--listen-mode", str(self.listen_mode)]
        return args + self.extra_args

    def _spawn(self) -> subprocess.Popen:
        self.layout.prepare()
        if self.config_path is None:
            self.config_path = self.layout.write_config(self.config_overrides)
        path = self.socket_path
        if self.inherit_socket is None and path is not None:
            if len(str(path)) > SUN_PATH_MAX:
                raise ServeError(f"unix socket path too long ({len(str(path))} bytes): {path}")
            if path.exists() or path.is_symlink():
                path.unlink()
        stdin = self.inherit_socket.fileno() if self.inherit_socket else subprocess.DEVNULL
        return _popen(self.command(), self.log_path, stdin=stdin, env=self.env)

    def _probe(self) -> int:
        status, _, _ = fcgi_request(self.listen, "GET", BASE_PATH + "/healthz",
                                    headers=self.auth_headers(), timeout=5)
        return status

    def _ready(self) -> bool:
        # On a shared socket any of the processes may have answered; this one is ready once it
        # also handles SIGTERM (blocked for sigwait, or caught), i.e. is past its start-up.
        if not super()._ready():
            return False
        if self.inherit_socket is not None and self.proc is not None \
                and not _handles_signal(self.proc.pid, signal.SIGTERM):
            self._last_probe += ", but this process does not handle SIGTERM yet"
            return False
        return True

    def request(self, method: str, uri: str, headers: Optional[Mapping[str, str]] = None,
                body: bytes = b"", timeout: float = 30.0) -> Tuple[int, Dict[str, str], bytes]:
        """One FastCGI request straight to this responder (see fcgi_request)."""
        return fcgi_request(self.listen, method, uri, headers, body, timeout)

    def _cleanup(self) -> None:
        path = self.socket_path
        if self.inherit_socket is None and path is not None and path.is_socket():
            try:
                path.unlink()
            except OSError:
                pass


class Bridge(_Service):
    """The bridge, risksim-wsbridge (once it is built).

    Bridge(state_dir, build_dir=DEFAULT_BUILD_DIR, port=DEFAULT_BRIDGE_PORT, *,
           repo_dir=REPO_DIR, config_path=None, config_overrides=None,
           health_path="/healthz", extra_args=(), env=None, layout=None, auth_secret=None)

    Runs risksim-wsbridge --config FILE --bridge-listen 127.0.0.1:PORT (stderr to
    STATE/log/wsbridge.log); start() waits until GET http://127.0.0.1:PORT{health_path}
    answers 200. Pass the web server's bridge_port as port."""

    name = "risksim-wsbridge"

    def __init__(self, state_dir: PathLike, build_dir: PathLike = DEFAULT_BUILD_DIR,
                 port: int = DEFAULT_BRIDGE_PORT, *, repo_dir: PathLike = REPO_DIR,
                 config_path: Optional[PathLike] = None,
                 config_overrides: Optional[Mapping[str, object]] = None,
                 health_path: str = "/healthz", extra_args: Sequence[str] = (),
                 env: Optional[Mapping[str, str]] = None, layout: Optional[Layout] = None,
                 auth_secret: Optional[str] = None):
        super().__init__()
        self.auth_secret = auth_secret or _secret_of(config_overrides)
        self.port = int(port)
        self.layout = layout or Layout(state_dir, build_dir, repo_dir, bridge_port=self.port)
        self.config_path = Path(config_path) if config_path else None
        self.config_overrides = dict(config_overrides or {})
        self.health_path = health_path
        self.extra_args = list(extra_args)
        self.env = env
        self.log_path = self.layout.log_dir / "wsbridge.log"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> List[str]:
        if not self.layout.bridge_bin.exists():
            raise ServeError(f"{self.layout.bridge_bin} is missing: build it first")
        return [str(self.layout.bridge_bin), "--config", str(self.config_path),
                "--bridge-listen", f"127.0.0.1:{self.port}"] + self.extra_args

    def _spawn(self) -> subprocess.Popen:
        self.layout.prepare()
        if self.config_path is None:
            self.config_path = self.layout.write_config(self.config_overrides)
        return _popen(self.command(), self.log_path, env=self.env)

    def _probe(self) -> int:
        status, _, _ = http_request(self.base_url + self.health_path,
                                    headers=self.auth_headers(), timeout=5)
        return status


class _WebServer(_Service):
    """What Lighttpd and Apache share: the layout, the generated configs, the URLs."""

    def __init__(self, port: int, state_dir: PathLike, build_dir: PathLike = DEFAULT_BUILD_DIR,
                 repo_dir: PathLike = REPO_DIR,
                 config_overrides: Optional[Mapping[str, object]] = None,
                 fcgi_procs: int = 1, bridge_port: Optional[int] = None,
                 web_user: Optional[str] = None, stream_proxy: bool = True):
        super().__init__()
        self.port = int(port)
        # False: the generated configuration lacks the WebSocket route to the bridge (as a web
        # server whose proxy refuses WebSockets), so that clients have to fall back to polling.
        self.stream_proxy = bool(stream_proxy)
        self.bridge_port = int(bridge_port) if bridge_port else free_port()
        self.fcgi_procs = int(fcgi_procs)
        if self.fcgi_procs < 1:
            raise ServeError("fcgi_procs must be at least 1")
        self.config_overrides = dict(config_overrides or {})
        self.auth_secret = _secret_of(self.config_overrides)
        self.layout = Layout(state_dir, build_dir, repo_dir, bridge_port=self.bridge_port,
                             web_user=web_user)
        self.state_dir = self.layout.state_dir
        self.config_path = self.layout.config_path

    @property
    def base_url(self) -> str:
        """http://127.0.0.1:PORT/risksim (no trailing slash)."""
        return f"http://127.0.0.1:{self.port}{BASE_PATH}"

    @property
    def ws_url(self) -> str:
        """ws://127.0.0.1:PORT/risksim (append /simulations/{id}/stream)."""
        return f"ws://127.0.0.1:{self.port}{BASE_PATH}"

    @property
    def run_dir(self) -> Path:
        """The stand-in for /run/risksim (the FastCGI sockets)."""
        return self.layout.run_dir

    def _probe(self) -> int:
        status, _, _ = http_request(self.base_url + "/healthz", headers=self.auth_headers(),
                                    timeout=5)
        return status

    def _check_port(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", self.port))
            except OSError as e:
                raise PortTaken(f"127.0.0.1:{self.port} is not free: {e}") from None

    def write_configs(self) -> Path:
        """Writes every generated file; returns the main server configuration."""
        raise NotImplementedError

    def check(self) -> str:
        """Writes the configurations and runs the server's own syntax check on them; returns
        its output, raises ServeError if it fails."""
        raise NotImplementedError


class Lighttpd(_WebServer):
    """lighttpd in the foreground (lighttpd -D -f STATE/lighttpd/lighttpd.conf) with the shipped
    httpd-conf/lighttpd/10-risksim.conf included; lighttpd spawns the responder itself
    (bin-path), fcgi_procs processes ("max-procs").

    Lighttpd(port, state_dir, build_dir=DEFAULT_BUILD_DIR, repo_dir=REPO_DIR,
             config_overrides=None, fcgi_procs=1, bridge_port=None, stream_proxy=True)

    bridge_port: where the stream route proxies to (None = a free port; see .bridge_port).
    stream_proxy=False leaves out the stream route (the mod_proxy block): stream URLs then
    reach the responder, which answers 426, as behind a proxy that refuses WebSockets.
    Logs: STATE/log/lighttpd-error.log (lighttpd's error log, which also receives the spawned
    responders' stderr), STATE/log/lighttpd-access.log, STATE/log/lighttpd.log (its
    stdout/stderr). lighttpd runs as the invoking user (no server.username), so the responder
    it spawns can write STATE whoever runs this."""

    name = "lighttpd"

    def __init__(self, port: int, state_dir: PathLike, build_dir: PathLike = DEFAULT_BUILD_DIR,
                 repo_dir: PathLike = REPO_DIR,
                 config_overrides: Optional[Mapping[str, object]] = None,
                 fcgi_procs: int = 1, bridge_port: Optional[int] = None,
                 stream_proxy: bool = True):
        super().__init__(port, state_dir, build_dir, repo_dir, config_overrides, fcgi_procs,
                         bridge_port, stream_proxy=stream_proxy)
        self.conf_dir = self.state_dir / "lighttpd"
        self.main_conf = self.conf_dir / "lighttpd.conf"
        self.error_log = self.layout.log_dir / "lighttpd-error.log"
        self.access_log = self.layout.log_dir / "lighttpd-access.log"
        self.log_path = self.layout.log_dir / "lighttpd.log"
        self._spawned: List[int] = []

    @property
    def fcgi_socket(self) -> Path:
        """The socket lighttpd creates for the responder (lighttpd appends -0, -1, ...)."""
        return self.layout.run_dir / "fcgi-lighttpd.sock"

    def responder_pids(self) -> List[int]:
        """The pids of the responder processes lighttpd has spawned (its live children)."""
        if not self.running:
            return []
        return _children(self.proc.pid)

    def _logs(self) -> List[Path]:
        return [self.error_log, self.log_path]

    def write_configs(self) -> Path:
        lay = self.layout
        lay.prepare()
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        lay.write_config(self.config_overrides)
        shipped = (lay.repo_dir / "httpd-conf" / "lighttpd" / "10-risksim.conf").read_text()
        snippet = lay.substitute(shipped, required=(
            "/usr/sbin/risksim-fcgi --config /etc/risksim/risksim.conf",
            "/run/risksim/fcgi-lighttpd.sock", "/usr/share/risksim/web/", '"port" => 8091',
            '"max-procs" => 1,'))
        snippet = snippet.replace('"max-procs" => 1,', f'"max-procs" => {self.fcgi_procs},')
        if not self.stream_proxy:
            snippet = _without(snippet, r'(?ms)^\$HTTP\["url"\] =~ "\^/risksim/simulations/'
                               r'\[\^/\]\+/stream\$" \{.*?^\}\s*else ', "the stream block")
        snippet_path = self.conf_dir / "10-risksim.conf"
        snippet_path.write_text(snippet)
        # The modules lighty-enable-mod would enable with this snippet ("depends" line):
        # 10-fastcgi.conf loads mod_fastcgi, 10-proxy.conf loads mod_proxy.
        depends = re.search(r"-\*- depends: ([-\w, ]+) -\*-", shipped)
        dep_modules = [f'"mod_{d.strip()}"' for d in depends.group(1).split(",")] if depends else []
        mime = Path("/usr/share/lighttpd/create-mime.conf.pl")
        if mime.exists():
            mime_line = f'include_shell "{mime}"'
        else:
            mime_line = ('mimetype.assign = ( ".html" => "text/html; charset=utf-8", ".js" => '
                         '"text/javascript; charset=utf-8", ".css" => "text/css; charset=utf-8", '
                         '".json" => "application/json", ".svg" => "image/svg+xml", '
                         '".png" => "image/png", ".woff2" => "font/woff2" )')
        docroot = self.conf_dir / "htdocs"
        docroot.mkdir(exist_ok=True)
        uploads = self.state_dir / "lighttpd-uploads"
        uploads.mkdir(exist_ok=True)
        self.main_conf.write_text(f"""\
# Generated by scripts/serve.py: a minimal lighttpd.conf around the shipped
# httpd-conf/lighttpd/10-risksim.conf, laid out as Debian's /etc/lighttpd/lighttpd.conf.
# Debian's default module list (mod_alias and mod_redirect are used by the snippet).
server.modules = ( "mod_indexfile", "mod_access", "mod_alias", "mod_redirect" )
# What lighty-enable-mod risksim enables through the snippet's "depends" line.
server.modules += ( {", ".join(dep_modules)} )
server.modules += ( "mod_accesslog" )
server.document-root = "{docroot}"
server.upload-dirs = ( "{uploads}" )
server.bind = "127.0.0.1"
server.port = {self.port}
server.errorlog = "{self.error_log}"
accesslog.filename = "{self.access_log}"
server.pid-file = "{self.conf_dir / 'lighttpd.pid'}"
index-file.names = ( "index.html" )
{mime_line}
include "{snippet_path}"
# Debian loads mod_staticfile last.
server.modules += ( "mod_staticfile" )
""")
        return self.main_conf

    def check(self) -> str:
        conf = self.write_configs()
        r = subprocess.run(["lighttpd", "-tt", "-f", str(conf)], capture_output=True, text=True)
        out = r.stdout + r.stderr
        if r.returncode != 0:
            raise ServeError(f"lighttpd -tt -f {conf} failed:\n{out}")
        return out

    def _spawn(self) -> subprocess.Popen:
        if not self.layout.fcgi_bin.exists():
            raise ServeError(f"{self.layout.fcgi_bin} is missing: build it first "
                             "(cmake --build build --target risksim-fcgi)")
        self._check_port()
        conf = self.write_configs()
        for i in range(self.fcgi_procs):
            stale = Path(f"{self.fcgi_socket}-{i}")
            if stale.is_socket():
                stale.unlink()
        return _popen(["lighttpd", "-D", "-f", str(conf)], self.log_path, cwd=self.conf_dir)

    def _ready(self) -> bool:
        # Ready when the API answers and every spawned responder is past its start-up.
        if not super()._ready():
            return False
        pids = self.responder_pids()
        if len(pids) < self.fcgi_procs or not all(
                _handles_signal(p, signal.SIGTERM) for p in pids):
            self._last_probe += f", but {len(pids)} of {self.fcgi_procs} responders are up"
            return False
        self._spawned = pids
        return True

    def stop(self, timeout: float = STOP_TIMEOUT) -> Optional[int]:
        # lighttpd sends its backends SIGTERM when it stops; make sure none outlives it.
        spawned = set(self._spawned) | set(self.responder_pids())
        code = super().stop(timeout)
        deadline = time.monotonic() + timeout
        for pid in spawned:
            while _pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _pid_alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.layout.cleanup()
        return code


class Apache(_WebServer):
    """Apache httpd in the foreground (apache2 -f STATE/apache/apache2.conf -d STATE/apache
    -D FOREGROUND, mpm_event) with the shipped httpd-conf/apache/risksim.conf included, and the
    responder(s) started here on the unix socket RUN/fcgi.sock.

    Apache(port, state_dir, build_dir=DEFAULT_BUILD_DIR, repo_dir=REPO_DIR,
           config_overrides=None, fcgi_procs=1, bridge_port=None, user=None,
           responder_args=(), responder_env=None, stream_proxy=True)

    fcgi_procs == 1: one risksim-fcgi --listen unix:RUN/fcgi.sock.
    stream_proxy=False leaves out the stream rule (its ProxyPassMatch): stream URLs then go to
    the responder by the API rule, which answers 426, as behind a proxy refusing WebSockets.
    fcgi_procs > 1: this module binds RUN/fcgi.sock itself and starts that many risksim-fcgi
    processes sharing it on fd 0 (as spawn-fcgi -F N does); they share one job queue.
    .responders lists the Responder objects (pid, kill(), terminate(), ...).
    Started as root, Apache's children switch to user (default www-data, as on Debian): the
    socket is then made 0666 (--listen-mode 0666) and the state and run directories 0755, and
    RUN is a directory under /tmp when a parent of STATE is closed to other users.
    Logs: STATE/log/apache-error.log, apache-access.log, apache.log (stdout/stderr),
    fcgi-N.log (each responder's stderr)."""

    name = "apache2"

    def __init__(self, port: int, state_dir: PathLike, build_dir: PathLike = DEFAULT_BUILD_DIR,
                 repo_dir: PathLike = REPO_DIR,
                 config_overrides: Optional[Mapping[str, object]] = None,
                 fcgi_procs: int = 1, bridge_port: Optional[int] = None,
                 user: Optional[str] = None, responder_args: Sequence[str] = (),
                 responder_env: Optional[Mapping[str, str]] = None,
                 stream_proxy: bool = True):
        as_root = os.geteuid() == 0
        self.user = (user or APACHE_USER) if as_root else None
        super().__init__(port, state_dir, build_dir, repo_dir, config_overrides, fcgi_procs,
                         bridge_port, web_user=self.user, stream_proxy=stream_proxy)
        self.server_root = self.state_dir / "apache"
        self.main_conf = self.server_root / "apache2.conf"
        self.error_log = self.layout.log_dir / "apache-error.log"
        self.access_log = self.layout.log_dir / "apache-access.log"
        self.log_path = self.layout.log_dir / "apache.log"
        self.responder_args = list(responder_args)
        self.responder_env = responder_env
        self.responders: List[Responder] = []
        self._shared_socket: Optional[socket.socket] = None

    @property
    def fcgi_socket(self) -> Path:
        """The responders' socket (the stand-in for /run/risksim/fcgi.sock)."""
        return self.layout.run_dir / "fcgi.sock"

    def _logs(self) -> List[Path]:
        return [self.error_log, self.log_path] + [r.log_path for r in self.responders]

    def modules(self, shipped: str) -> List[str]:
        """The modules to load: Debian's default-enabled ones that matter here, then those of
        the a2enmod line at the top of the shipped file, in its order."""
        base = ["mpm_event", "authz_core", "authz_host", "mime", "dir", "reqtimeout"]
        m = re.search(r"(?m)^#\s*a2enmod\s+(.+)$", shipped)
        if not m:
            raise ServeError("httpd-conf/apache/risksim.conf: no '# a2enmod ...' line")
        for name in m.group(1).split():
            if name not in base:
                base.append(name)
        return base

    def write_configs(self) -> Path:
        lay = self.layout
        lay.prepare()
        run = self.server_root / "run"
        run.mkdir(parents=True, exist_ok=True)
        lay.write_config(self.config_overrides)
        shipped = (lay.repo_dir / "httpd-conf" / "apache" / "risksim.conf").read_text()
        snippet = lay.substitute(shipped, required=(
            "unix:/run/risksim/fcgi.sock|fcgi://", "http://127.0.0.1:8091/",
            '"/usr/share/risksim/web/"'))
        if not self.stream_proxy:
            snippet = _without(snippet, r'(?m)^ProxyPassMatch "\^/risksim/simulations/'
                               r'\(\[\^/\]\+\)/stream\$" .*\n', "the stream rule")
        snippet_path = self.server_root / "risksim.conf"
        snippet_path.write_text(snippet)
        loads = []
        for name in self.modules(shipped):
            so = APACHE_MODULES_DIR / f"mod_{name}.so"
            if not so.exists():
                raise ServeError(f"Apache module {so} is missing")
            loads.append(f"LoadModule {name}_module {so}")
        docroot = self.server_root / "htdocs"
        docroot.mkdir(exist_ok=True)
        user_lines = (f"User {self.user}\nGroup {self.user}\n" if self.user else
                      "# Not started as root: the children keep the invoking user.\n")
        load_text = "\n".join(loads)
        self.main_conf.write_text(f"""\
# Generated by scripts/serve.py: a minimal apache2.conf around the shipped
# httpd-conf/apache/risksim.conf, for apache2 -f {self.main_conf} -d {self.server_root}.
ServerRoot "{self.server_root}"
DefaultRuntimeDir "{run}"
PidFile "{run}/apache2.pid"
Mutex file:{run} default
{load_text}
{user_lines}Listen 127.0.0.1:{self.port}
ServerName 127.0.0.1
ServerAdmin webmaster@localhost
ErrorLog "{self.error_log}"
LogLevel warn
LogFormat "%h %l %u %t \\"%r\\" %>s %O %D \\"%{{Upgrade}}i\\"" risksim
CustomLog "{self.access_log}" risksim
TypesConfig /etc/mime.types
# As Debian's apache2.conf: nothing outside the granted directories.
<Directory />
    Options FollowSymLinks
    AllowOverride None
    Require all denied
</Directory>
DocumentRoot "{docroot}"
<Directory "{docroot}">
    Require all granted
</Directory>
# Sized for tests: enough workers for long polls and open WebSockets at once.
Timeout 300
KeepAlive On
StartServers 1
ServerLimit 4
ThreadsPerChild 32
MaxRequestWorkers 128
Include "{snippet_path}"
""")
        return self.main_conf

    def check(self) -> str:
        conf = self.write_configs()
        r = subprocess.run(["apache2", "-t", "-f", str(conf), "-d", str(self.server_root)],
                           capture_output=True, text=True)
        out = r.stdout + r.stderr
        if r.returncode != 0:
            raise ServeError(f"apache2 -t -f {conf} failed:\n{out}")
        return out

    def _start_responders(self) -> None:
        lay = self.layout
        mode = "0666" if self.user else None
        sock = str(self.fcgi_socket)
        if len(sock) > SUN_PATH_MAX:
            raise ServeError(f"unix socket path too long: {sock}")
        if self.fcgi_procs == 1:
            r = Responder(self.state_dir, lay.build_dir, f"unix:{sock}", layout=lay,
                          config_path=self.config_path, listen_mode=mode, name="fcgi-0",
                          extra_args=self.responder_args, env=self.responder_env,
                          auth_secret=self.auth_secret)
            self.responders = [r]
            r.start()
            return
        if os.path.exists(sock):
            os.unlink(sock)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(sock)
        os.chmod(sock, 0o666 if self.user else 0o660)
        s.listen(1024)
        s.set_inheritable(True)
        self._shared_socket = s
        self.responders = [
            Responder(self.state_dir, lay.build_dir, f"unix:{sock}", layout=lay,
                      config_path=self.config_path, name=f"fcgi-{i}", inherit_socket=s,
                      extra_args=self.responder_args, env=self.responder_env,
                      auth_secret=self.auth_secret)
            for i in range(self.fcgi_procs)]
        for r in self.responders:
            r.start()

    def _spawn(self) -> subprocess.Popen:
        self._check_port()
        conf = self.write_configs()
        try:
            self._start_responders()
        except Exception:
            self._stop_responders(5)
            raise
        return _popen(["apache2", "-f", str(conf), "-d", str(self.server_root),
                       "-D", "FOREGROUND"], self.log_path, cwd=self.server_root,
                      env={"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
                           "LANG": "C"})

    def _stop_responders(self, timeout: float) -> None:
        for r in self.responders:
            r.terminate()
        for r in self.responders:
            r.stop(timeout)
        if self._shared_socket is not None:
            self._shared_socket.close()
            self._shared_socket = None
            try:
                self.fcgi_socket.unlink()
            except OSError:
                pass

    def stop(self, timeout: float = STOP_TIMEOUT) -> Optional[int]:
        code = super().stop(timeout)
        self._stop_responders(timeout)
        self.layout.cleanup()
        return code


def start_on_free_port(kind: str, state_dir: PathLike, build_dir: PathLike = DEFAULT_BUILD_DIR,
                       overrides: Optional[Mapping[str, object]] = None, attempts: int = 5,
                       timeout: float = START_TIMEOUT, **kwargs: object) -> _WebServer:
    """Starts Lighttpd (kind "lighttpd") or Apache ("apache") with these overrides and keyword
    arguments on a free loopback port, choosing another one when another process takes the
    chosen port first (up to attempts times, for tests that run side by side). Returns the
    started server; raises ServeError when it cannot start."""
    cls = Lighttpd if kind == "lighttpd" else Apache
    for attempt in range(attempts):
        web = cls(free_port(), state_dir, build_dir, REPO_DIR, overrides, **kwargs)
        try:
            web.start(timeout=timeout)
            return web
        except PortTaken:
            if attempt + 1 == attempts:
                raise
    raise ServeError("no attempt to start")  # attempts < 1


# --------------------------------------------------------------------------------------------
# The command line


class _Stop(Exception):
    pass


def _raise_stop(signum: int, _frame: object) -> None:
    raise _Stop(signum)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(
        description="Run risksim behind lighttpd or Apache on 127.0.0.1, configured from "
                    "httpd-conf/, in the foreground until Ctrl-C or SIGTERM.")
    ap.add_argument("--server", choices=("lighttpd", "apache"), default="lighttpd")
    ap.add_argument("--port", type=int, default=int(os.environ.get("RISKSIM_PORT", "8080")),
                    help="HTTP port on 127.0.0.1 (default: $RISKSIM_PORT or 8080)")
    ap.add_argument("--state", default=None,
                    help="state directory: configs, database, logs (default: BUILD/serve-SERVER)")
    ap.add_argument("--build", default=str(DEFAULT_BUILD_DIR), help="CMake build directory")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a responder/bridge configuration key (repeatable)")
    ap.add_argument("--bridge-port", type=int, default=DEFAULT_BRIDGE_PORT,
                    help="port of the bridge on 127.0.0.1 (default 8091)")
    ap.add_argument("--fcgi-procs", type=int, default=1, help="responder processes")
    ap.add_argument("--no-bridge", action="store_true",
                    help="do not start risksim-wsbridge even if it is built")
    ap.add_argument("--no-stream-proxy", action="store_true",
                    help="leave the WebSocket route out of the web server configuration "
                         "(clients have to poll)")
    ap.add_argument("--check", action="store_true",
                    help="only write the configurations and run the server's syntax check")
    args = ap.parse_args(argv)

    build = Path(args.build).resolve()
    state = Path(args.state).resolve() if args.state else build / f"serve-{args.server}"
    try:
        overrides = parse_overrides(args.set)
        cls = Lighttpd if args.server == "lighttpd" else Apache
        web = cls(args.port, state, build, REPO_DIR, overrides, fcgi_procs=args.fcgi_procs,
                  bridge_port=args.bridge_port, stream_proxy=not args.no_stream_proxy)
        if args.check:
            out = web.check()
            sys.stdout.write(out if out.endswith("\n") or not out else out + "\n")
            print(f"risksim: {web.main_conf}: ok")
            web.layout.cleanup()
            return 0
    except ServeError as e:
        print(f"risksim: {e}", file=sys.stderr)
        return 1

    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    started: List[_Service] = []
    try:
        bridge = None
        if not args.no_bridge and web.layout.bridge_bin.exists():
            web.layout.prepare()
            bridge = Bridge(state, build, args.bridge_port, config_path=web.layout.write_config(
                overrides), layout=web.layout, auth_secret=web.auth_secret)
            bridge.start()
            started.append(bridge)
        web.start()
        started.append(web)
        print(f"risksim: {args.server} on http://127.0.0.1:{args.port}/ (state {state})")
        print(f"  page:    {web.base_url}/")
        print(f"  API:     {web.base_url}/simulations")
        print(f"  health:  {web.base_url}/healthz")
        if not web.stream_proxy:
            print("  stream:  not routed (--no-stream-proxy): clients poll")
        elif bridge:
            print(f"  stream:  {web.ws_url}/simulations/{{id}}/stream")
        else:
            print(f"  stream:  not available (the bridge, risksim-wsbridge, is not running)")
        print(f"  logs:    {web.layout.log_dir}/")
        print("Ctrl-C stops.", flush=True)
        while True:
            for svc in started:
                if not svc.running:
                    print(f"risksim: {svc.name} exited with status {svc.returncode}\n"
                          + svc.log_tail(), file=sys.stderr)
                    return 1
            time.sleep(0.5)
    except _Stop:
        print("risksim: stopping", file=sys.stderr)
        return 0
    except ServeError as e:
        print(f"risksim: {e}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for svc in reversed(started):
            svc.stop()
        if web not in started:
            web.stop()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)


if __name__ == "__main__":
    sys.exit(main())
