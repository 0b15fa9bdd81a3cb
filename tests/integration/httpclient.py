"""HTTP requests for the integration tests, made with the curl binary.

Why this file exists: the suite must send what a careless or hostile client sends (chunked
bodies without Content-Length, NUL bytes, odd methods, raw paths, repeated headers), and read
exactly what came back through the web server. curl does all of that from its command line, and
its -D/-o/-w outputs are easy to parse; Python's own HTTP client would normalise some of it
away. Every request is recorded with a copy-and-paste curl command so that a failure message
shows how to repeat it.

Python 3 standard library only.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import tempfile
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

BodyType = Union[None, bytes, str]

# Longest body shown in a failure message.
SHOWN_BODY = 3000


class Response:
    """What came back: status (0 when curl got no HTTP answer), headers (name lower-cased ->
    list of values, in order), body (bytes), and the request that produced it."""

    def __init__(self, request: "Request", status: int, header_lines: List[str], body: bytes,
                 curl_error: str = ""):
        self.request = request
        self.status = status
        self.header_lines = header_lines
        self.body = body
        self.curl_error = curl_error
        self.headers: Dict[str, List[str]] = {}
        for line in header_lines:
            name, sep, value = line.partition(":")
            if sep:
                self.headers.setdefault(name.strip().lower(), []).append(value.strip())

    def header(self, name: str, default: Optional[str] = None) -> Optional[str]:
        """The last value of header name (case-insensitive), or default."""
        values = self.headers.get(name.lower())
        return values[-1] if values else default

    @property
    def content_type(self) -> str:
        return (self.header("content-type") or "").split(";")[0].strip().lower()

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> object:
        """The body parsed as JSON (raises ValueError with the response described)."""
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise ValueError(f"the body is not JSON ({e})\n{self.describe()}") from None

    def json_or_none(self) -> Optional[object]:
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None

    def is_problem(self) -> bool:
        """Whether this is a problem document of the responder (RFC 9457 with a
        urn:risksim:problem: type)."""
        doc = self.json_or_none() if self.content_type == "application/problem+json" else None
        return isinstance(doc, dict) and str(doc.get("type", "")).startswith(
            "urn:risksim:problem:")

    def describe(self) -> str:
        """The request and the whole response, for failure messages."""
        body = self.body
        shown = body[:SHOWN_BODY].decode("utf-8", "backslashreplace")
        more = f"\n... ({len(body) - SHOWN_BODY} more bytes)" if len(body) > SHOWN_BODY else ""
        err = f"\ncurl: {self.curl_error}" if self.curl_error else ""
        headers = "\n".join(self.header_lines)
        return (f"request:  {self.request.describe()}\n"
                f"status:   {self.status}{err}\n"
                f"headers:\n{headers}\n"
                f"body ({len(body)} bytes):\n{shown}{more}")

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.request.method} {self.request.url}>"


class Request:
    """A request as given to curl (kept for failure messages)."""

    def __init__(self, method: str, url: str, headers: Sequence[Tuple[str, str]],
                 body: Optional[bytes], chunked: bool, args: List[str]):
        self.method = method
        self.url = url
        self.headers = list(headers)
        self.body = body
        self.chunked = chunked
        self.args = args

    def describe(self) -> str:
        body = ""
        if self.body is not None:
            shown = self.body[:300].decode("utf-8", "backslashreplace")
            more = f"... ({len(self.body)} bytes in all)" if len(self.body) > 300 else ""
            body = f"\n          body: {shown!r}{more}"
        return " ".join(shlex.quote(a) for a in self.args) + body


def _header_blocks(raw: bytes) -> List[str]:
    """The header lines of the final response in curl's -D output (which holds every response
    of the exchange: 1xx interim ones first)."""
    text = raw.decode("latin-1")
    blocks: List[List[str]] = []
    current: List[str] = []
    for line in text.split("\n"):
        line = line.rstrip("\r")
        if line == "":
            if current:
                blocks.append(current)
                current = []
            continue
        current.append(line)
    if current:
        blocks.append(current)
    final = [b for b in blocks if b and b[0].startswith("HTTP/")]
    if not final:
        return []
    last = final[-1]
    # Drop the status line; keep the header lines.
    return last[1:]


Headers = Union[Mapping[str, Optional[str]], Sequence[Tuple[str, Optional[str]]]]


def request(url: str, method: Optional[str] = None, headers: Optional[Headers] = None,
            body: BodyType = None, json_body: object = None, chunked: bool = False,
            content_type: Optional[str] = "application/json", timeout: float = 60.0,
            extra_args: Sequence[str] = ()) -> Response:
    """Sends one request with curl and returns the Response (never raises on HTTP errors).

    headers: a mapping or (name, value) pairs; a value of None removes a header curl would add.
    body/json_body: the request body (bytes or str, or an object sent as JSON). When a body is
    given, content_type becomes its Content-Type (None: no Content-Type header at all).
    chunked: send the body with Transfer-Encoding: chunked (no Content-Length).
    method: default POST with a body, GET without.
    The path and query of url are sent exactly as written (--path-as-is, no globbing)."""
    if json_body is not None:
        body = json.dumps(json_body).encode()
    if isinstance(body, str):
        body = body.encode("utf-8")
    if method is None:
        method = "POST" if body is not None else "GET"
    if body is None and method in ("POST", "PUT", "PATCH"):
        body = b""  # with Content-Length: 0 (web servers refuse a POST without a length: 411)
    pairs: List[Tuple[str, Optional[str]]] = []
    if isinstance(headers, Mapping):
        pairs = list(headers.items())
    elif headers:
        pairs = list(headers)
    with tempfile.TemporaryDirectory(prefix="risksim-curl-") as tmp:
        hdr_path = os.path.join(tmp, "headers")
        body_path = os.path.join(tmp, "body")
        args = ["curl", "-sS", "--path-as-is", "-g", "--max-time", str(timeout),
                "-D", hdr_path, "-o", body_path, "-w", "%{http_code}"]
        shown = ["curl", "-sS", "--path-as-is", "-g", "-i"]
        method_args: List[str] = []
        if method == "HEAD":
            method_args = ["--head"]
        elif method != ("POST" if body is not None else "GET"):
            method_args = ["-X", method]
        args += method_args
        shown += method_args
        header_args: List[str] = []
        names = {n.lower() for n, _ in pairs}
        if body is not None:
            data_path = os.path.join(tmp, "data")
            with open(data_path, "wb") as f:
                f.write(body)
            if "content-type" not in names:
                header_args += ["-H", f"Content-Type: {content_type}" if content_type is not None
                                else "Content-Type:"]
            # curl asks for 100-continue on large bodies; send them at once instead.
            if "expect" not in names:
                header_args += ["-H", "Expect:"]
            if chunked:
                header_args += ["-H", "Transfer-Encoding: chunked"]
            args += ["--data-binary", "@" + data_path]
            shown += ["--data-binary", "@BODY"]
        for name, value in pairs:
            # "Name:" makes curl drop the header, "Name;" sends it with an empty value.
            if value is None:
                header_args += ["-H", f"{name}:"]
            elif value == "":
                header_args += ["-H", f"{name};"]
            else:
                header_args += ["-H", f"{name}: {value}"]
        args += header_args
        shown += header_args
        args += list(extra_args)
        shown += list(extra_args)
        args.append(url)
        shown.append(url)
        req = Request(method, url, [(n, v or "") for n, v in pairs], body, chunked, shown)
        proc = subprocess.run(args, capture_output=True, timeout=timeout + 15)
        code_text = proc.stdout.decode("ascii", "replace").strip()
        status = int(code_text) if code_text.isdigit() else 0
        try:
            with open(hdr_path, "rb") as f:
                raw_headers = f.read()
        except OSError:
            raw_headers = b""
        data = b""
        if method != "HEAD":  # with --head curl reads no body (and -o gets the headers)
            try:
                with open(body_path, "rb") as f:
                    data = f.read()
            except OSError:
                pass
        err = proc.stderr.decode("utf-8", "replace").strip()
        return Response(req, status, _header_blocks(raw_headers), data,
                        err if proc.returncode != 0 else "")
