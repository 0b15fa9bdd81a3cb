"""The catalogue of bad requests: what a careless or hostile client sends, and what the responder
must answer (docs/api.md section 3 and docs/request.md).

Why this file exists: every refusal the API documents should be exercised through a real web
server, with its exact status and an application/problem+json body, and none of them may end
in a 5xx or take the service down. Keeping the cases as data (one dict each) makes the list
easy to read, to extend and to count; test_http.py runs them all (test_bad_request_catalogue)
and then checks that the service still answers.

Each case is a dict:

    name          unique label, shown in failure messages
    method        HTTP method (default: POST when there is a body, else GET)
    path          path and query under the mount point; "{job}" and "{other}" are replaced by
                  the ids of two completed jobs the test creates first
    body          bytes (sent as they are) or None
    content_type  the Content-Type of a body (default application/json; None: no header)
    headers       extra request headers {name: value}
    chunked       send the body with Transfer-Encoding: chunked (no Content-Length)
    token         only for the server with auth_secret set: which Authorization to send (see
                  TOKENS in test_http.py); cases with a token run against that server only
    status        the documented status
    type          the problem type after "urn:risksim:problem:" (docs/api.md, Errors); by
                  default the one of the status (400 has several and is always given)
    pointer       for 422: a JSON pointer that must appear in errors[].pointer
    code          for 400/422: a problem code that must appear in errors[].code
    allow         for 405: the expected Allow header
    proxy_may_refuse  the web server itself may refuse this request before the responder sees
                  it (control characters in a header, or a query that decodes to them); its
                  answer must then have the same status, whatever its body

Python 3 standard library only.
"""

from __future__ import annotations

import copy
import json
from typing import Dict, List

# A small valid request: everything below breaks one thing of it.
GOOD = {
    "name": "catalogue",
    "trials": 1000,
    "seed": 7,
    "root": {
        "id": "root", "type": "portfolio",
        "children": [
            {"id": "a", "type": "leaf",
             "frequency": {"type": "bernoulli", "p": 0.3},
             "severity": {"type": "lognormal", "lower": 1000, "upper": 50000}},
            {"id": "b", "type": "leaf",
             "frequency": {"type": "poisson", "lambda": 2},
             "severity": {"type": "pert", "min": 0, "mode": 100, "max": 1000},
             "controls": [{"type": "deductible", "amount": 10}]},
        ],
    },
}

GOOD_TEXT = json.dumps(GOOD)

# A job id of the right form that no job has (ids are random, this one is all zeros).
UNKNOWN_ID = "0" * 26

# The most a test server accepts (max_body_bytes is the default, 1 MiB).
MAX_BODY = 1048576


def _dump(obj: object) -> bytes:
    return json.dumps(obj).encode()


def _with(path: str, value: object, remove: bool = False) -> bytes:
    """GOOD with the member at path (a "/"-separated pointer) set to value, or removed."""
    doc = copy.deepcopy(GOOD)
    parts = [int(p) if p.isdigit() else p for p in path.strip("/").split("/")]
    target = doc
    for p in parts[:-1]:
        target = target[p]  # type: ignore[index]
    if remove:
        del target[parts[-1]]  # type: ignore[attr-defined]
    else:
        target[parts[-1]] = value  # type: ignore[index]
    return _dump(doc)


def _padded(total: int) -> bytes:
    """GOOD as JSON followed by spaces (still valid JSON) to exactly total bytes."""
    text = GOOD_TEXT.encode()
    return text + b" " * (total - len(text))


def _deep_portfolio(levels: int) -> Dict[str, object]:
    node: Dict[str, object] = {"id": f"n{levels}", "type": "leaf",
                               "frequency": {"type": "bernoulli", "p": 0.1},
                               "severity": {"type": "constant", "value": 1}}
    for i in range(levels - 1, 0, -1):
        node = {"id": f"n{i}", "type": "portfolio", "children": [node]}
    return node


# The problem type of each status that has only one.
TYPES = {401: "unauthorized", 403: "forbidden", 404: "not-found", 405: "method-not-allowed",
         409: "idempotency-conflict", 413: "payload-too-large", 415: "unsupported-media-type",
         422: "validation"}


def _case(name: str, status: int, **kw: object) -> Dict[str, object]:
    c: Dict[str, object] = {"name": name, "status": status}
    if status in TYPES:
        c["type"] = TYPES[status]
    c.update(kw)
    return c


def _post(name: str, status: int, body: bytes, path: str = "/simulations",
          **kw: object) -> Dict[str, object]:
    return _case(name, status, method="POST", path=path, body=body, **kw)


def cases() -> List[Dict[str, object]]:
    """Every case, in a fixed order."""
    c: List[Dict[str, object]] = []
    sync, async_ = "/simulations", "/simulations/async"

    # --- 400: the body is not (strict) JSON -------------------------------------------------
    not_json = [
        ("empty body", b""),
        ("only whitespace", b"  \r\n\t "),
        ("truncated object", b'{"root":'),
        ("lone brace", b"{"),
        ("unterminated array", b"[1, 2"),
        ("bare word", b"nul"),
        ("single quotes", b"{'trials': 10}"),
        ("unquoted key", b"{trials: 10}"),
        ("trailing comma", GOOD_TEXT[:-1].encode() + b",}"),
        ("comment", b"/* c */" + GOOD_TEXT.encode()),
        ("NaN", _with("/trials", 1)[:-1] + b', "x-nan": NaN}'),
        ("Infinity", b'{"trials": Infinity}'),
        ("leading zero", b'{"trials": 01}'),
        ("hex number", b'{"trials": 0x10}'),
        ("plus sign", b'{"trials": +1}'),
        ("trailing garbage", GOOD_TEXT.encode() + b" x"),
        ("two documents", GOOD_TEXT.encode() + GOOD_TEXT.encode()),
        ("NUL after the document", GOOD_TEXT.encode() + b"\x00"),
        ("NUL inside a string", GOOD_TEXT.replace('"catalogue"', '"cata\x00logue"').encode()),
        ("NUL alone", b"\x00"),
        ("raw control character in a string", GOOD_TEXT.replace('"catalogue"',
                                                                '"cata\x01logue"').encode()),
        ("raw tab in a string", GOOD_TEXT.replace('"catalogue"', '"cata\tlogue"').encode()),
        ("invalid UTF-8 byte", GOOD_TEXT.encode().replace(b'"catalogue"', b'"cat\xffalogue"')),
        ("overlong UTF-8", GOOD_TEXT.encode().replace(b'"catalogue"', b'"cat\xc0\xafalogue"')),
        ("UTF-8 encoded surrogate", GOOD_TEXT.encode().replace(b'"catalogue"',
                                                               b'"cat\xed\xa0\x80alogue"')),
        ("truncated UTF-8 sequence", GOOD_TEXT.encode().replace(b'"catalogue"', b'"cat\xe2\x82"')),
        ("Latin-1 body", GOOD_TEXT.replace('"catalogue"', '"caf\u00e9"').encode("latin-1")),
        ("UTF-16 body", GOOD_TEXT.encode("utf-16")),
        ("byte order mark", b"\xef\xbb\xbf" + GOOD_TEXT.encode()),
        ("10,000 open brackets", b"[" * 10000),
        ("10,000 nested arrays", b"[" * 10000 + b"]" * 10000),
        ("deep nesting inside a field", GOOD_TEXT[:-1].encode() + b', "x-deep": '
         + b"[" * 5000 + b"]" * 5000 + b"}"),
    ]
    for label, body in not_json:
        c.append(_post(f"400 sync: {label}", 400, body, sync, code="invalid_json",
                       type="invalid-json"))
    for label, body in not_json[:12]:
        c.append(_post(f"400 async: {label}", 400, body, async_, code="invalid_json",
                       type="invalid-json"))
    c.append(_post("400 chunked: not JSON", 400, b'{"trials": ', sync, chunked=True,
                   type="invalid-json"))
    c.append(_post("400 chunked: empty", 400, b"", async_, chunked=True, type="invalid-json"))

    # --- 422: well-formed JSON that breaks rules ------------------------------------------------
    rules = [
        ("top level is an array", b"[]", ""),
        ("top level is a string", b'"request"', ""),
        ("top level is null", b"null", ""),
        ("top level is a number", b"42", ""),
        ("trials 1e400", _with("/trials", 0)[:-1].replace(b'"trials": 0', b'"trials": 1e400')
         + b"}", "/trials"),
        ("trials 2^64", _with("/trials", 2 ** 64), "/trials"),
        ("trials 2^64-1", _with("/trials", 2 ** 64 - 1), "/trials"),
        ("trials 2^63", _with("/trials", 2 ** 63), "/trials"),
        ("trials -1", _with("/trials", -1), "/trials"),
        ("trials 0", _with("/trials", 0), "/trials"),
        ("trials 1.5", _with("/trials", 1.5), "/trials"),
        ("trials as a string", _with("/trials", "1000"), "/trials"),
        ("trials true", _with("/trials", True), "/trials"),
        ("trials null", _with("/trials", None), "/trials"),
        ("trials and nTrials", _with("/nTrials", 1000), "/nTrials"),
        ("trials above max_trials", _with("/trials", 10000001), "/trials"),
        ("seed 10^8", _with("/seed", 100000000), "/seed"),
        ("seed -1", _with("/seed", -1), "/seed"),
        ("seed -1e400", _with("/seed", 0).replace(b'"seed": 0', b'"seed": -1e400'), "/seed"),
        ("quantile 1", _with("/quantiles", [0.5, 1]), "/quantiles/1"),
        ("quantile 0", _with("/quantiles", [0]), "/quantiles/0"),
        ("33 quantiles", _with("/quantiles", [i / 34 for i in range(1, 34)]), "/quantiles"),
        ("empty quantiles", _with("/quantiles", []), "/quantiles"),
        ("quantiles a string", _with("/quantiles", "p99"), "/quantiles"),
        ("unknown top-level field", _with("/trails", 1000), "/trails"),
        ("root missing", _with("/root", None, remove=True), "/root"),
        ("root an array", _with("/root", []), "/root"),
        ("id with a space", _with("/root/children/0/id", "a b"), "/root/children/0/id"),
        ("id of 65 characters", _with("/root/children/0/id", "x" * 65), "/root/children/0/id"),
        ("empty id", _with("/root/children/0/id", ""), "/root/children/0/id"),
        ("duplicate id", _with("/root/children/1/id", "a"), "/root/children/1/id"),
        ("name of 201 characters", _with("/name", "n" * 201), "/name"),
        ("name with \\u0000", _with("/name", "a\u0000b"), "/name"),
        ("name with a C1 control", _with("/name", "a\u0085b"), "/name"),
        ("empty children", _with("/root/children", []), "/root/children"),
        ("unknown node type", _with("/root/children/0/type", "branch"),
         "/root/children/0/type"),
        ("frequency missing", _with("/root/children/0/frequency", None, remove=True),
         "/root/children/0/frequency"),
        ("bernoulli p 1.5", _with("/root/children/0/frequency/p", 1.5),
         "/root/children/0/frequency/p"),
        ("poisson lambda 1001", _with("/root/children/1/frequency/lambda", 1001),
         "/root/children/1/frequency/lambda"),
        ("lognormal upper below lower", _with("/root/children/0/severity/upper", 10),
         "/root/children/0/severity/upper"),
        ("lognormal lower 0", _with("/root/children/0/severity/lower", 0),
         "/root/children/0/severity/lower"),
        ("pert mode above max", _with("/root/children/1/severity/mode", 5000),
         "/root/children/1/severity/mode"),
        ("unknown severity type", _with("/root/children/0/severity/type", "weibull"),
         "/root/children/0/severity/type"),
        ("metalog not increasing", _with("/root/children/0/severity",
                                         {"type": "metalog", "percentiles": [0.1, 0.5, 0.9],
                                          "quantiles": [100, 50, 900]}),
         "/root/children/0/severity/quantiles/1"),
        ("negative deductible", _with("/root/children/1/controls/0/amount", -1),
         "/root/children/1/controls/0/amount"),
        ("unknown control", _with("/root/children/1/controls/0/type", "cap"),
         "/root/children/1/controls/0/type"),
        ("seedVar 0", _with("/root/children/0/seedVar", 0), "/root/children/0/seedVar"),
        ("seedVar 5e7", _with("/root/children/0/seedVar", 50000000), "/root/children/0/seedVar"),
        ("33 levels", _with("/root", _deep_portfolio(33)), None),
        ("flat form with a cycle", _dump({
            "trials": 100,
            "portfolios": [{"name": "G"}, {"name": "A", "parentName": "B"},
                           {"name": "B", "parentName": "A"}],
            "leaves": [{"name": "L", "parentName": "A", "probability": 0.1,
                        "distributionShape": {"distributionType": "lognormal",
                                              "minLoss": 1, "maxLoss": 10}}]}), None),
    ]
    for label, body, pointer in rules:
        kw: Dict[str, object] = {}
        if pointer is not None:
            kw["pointer"] = pointer
        c.append(_post(f"422 sync: {label}", 422, body, sync, **kw))
    for label, body, pointer in rules[:12]:
        kw = {"pointer": pointer} if pointer is not None else {}
        c.append(_post(f"422 async: {label}", 422, body, async_, **kw))
    c.append(_post("422 sync: trials above max_sync_trials", 422, _with("/trials", 100001),
                   sync, pointer="/trials", code="too_many_trials_for_sync"))
    c.append(_post("422 chunked: broken rule", 422, _with("/seed", -1), async_, chunked=True,
                   pointer="/seed"))

    # --- 413: bodies over max_body_bytes -------------------------------------------------------
    c.append(_post("413 sync: one byte over", 413, _padded(MAX_BODY + 1), sync))
    c.append(_post("413 async: 1.5 MiB", 413, _padded(MAX_BODY * 3 // 2), async_))
    c.append(_post("413 sync: chunked, one byte over", 413, _padded(MAX_BODY + 1), sync,
                   chunked=True))
    c.append(_post("413 async: chunked 1.5 MiB", 413, _padded(MAX_BODY * 3 // 2), async_,
                   chunked=True))
    c.append(_post("413 sync: not JSON and over the limit", 413, b"x" * (MAX_BODY + 100), sync))

    # --- 415: wrong Content-Type ---------------------------------------------------------------
    for label, ctype, path in [
        ("no Content-Type", None, sync),
        ("text/plain", "text/plain", sync),
        ("form encoded", "application/x-www-form-urlencoded", sync),
        ("multipart", "multipart/form-data; boundary=x", async_),
        ("application/xml", "application/xml", async_),
        ("application/jsonx", "application/jsonx", sync),
        ("text/json", "text/json", async_),
        ("just +json", "+json", sync),
    ]:
        c.append(_post(f"415: {label}", 415, GOOD_TEXT.encode(), path, content_type=ctype))
    c.append(_post("415: chunked text/plain", 415, GOOD_TEXT.encode(), async_,
                   content_type="text/plain", chunked=True))

    # --- 404: unknown routes and jobs ------------------------------------------------------------
    for label, method, path in [
        ("unknown job", "GET", f"/simulations/{UNKNOWN_ID}"),
        ("unknown job events", "GET", f"/simulations/{UNKNOWN_ID}/events"),
        ("unknown job delete", "DELETE", f"/simulations/{UNKNOWN_ID}"),
        ("lower-case id", "GET", "/simulations/{job_lower}"),
        ("id of 25 characters", "GET", "/simulations/" + "1" * 25),
        ("id of 27 characters", "GET", "/simulations/" + "1" * 27),
        ("id with U (not Crockford)", "GET", "/simulations/" + "U" * 26),
        ("id with a dash", "GET", "/simulations/ABC-DEF"),
        ("id of 300 characters", "GET", "/simulations/" + "A" * 300),
        ("bad id events", "GET", "/simulations/nope/events"),
        ("bad id delete", "DELETE", "/simulations/nope"),
        ("sub-resource", "GET", "/simulations/{job}/result"),
        ("under events", "GET", "/simulations/{job}/events/1"),
        ("under async", "POST", "/simulations/async/now"),
        ("trailing slash", "GET", "/simulations/"),
        ("trailing slash on a job", "GET", "/simulations/{job}/"),
        ("wrong case", "GET", "/simulations/{job}/Events"),
        ("percent-encoded id", "GET", "/simulations/%30%30"),
    ]:
        c.append(_case(f"404: {label}", 404, method=method, path=path))

    # --- 405 with Allow ---------------------------------------------------------------------------
    for method, path, allow in [
        ("PUT", "/simulations", "GET, HEAD, POST, OPTIONS"),
        ("PATCH", "/simulations", "GET, HEAD, POST, OPTIONS"),
        ("DELETE", "/simulations", "GET, HEAD, POST, OPTIONS"),
        ("GET", "/simulations/async", "POST, OPTIONS"),
        ("DELETE", "/simulations/async", "POST, OPTIONS"),
        ("PUT", "/simulations/{job}", "GET, HEAD, DELETE, OPTIONS"),
        ("POST", "/simulations/{job}", "GET, HEAD, DELETE, OPTIONS"),
        ("PATCH", "/simulations/{job}", "GET, HEAD, DELETE, OPTIONS"),
        ("POST", "/simulations/{job}/events", "GET, HEAD, OPTIONS"),
        ("DELETE", "/simulations/{job}/events", "GET, HEAD, OPTIONS"),
        ("POST", "/healthz", "GET, HEAD, OPTIONS"),
        ("DELETE", "/metrics", "GET, HEAD, OPTIONS"),
        ("TRACE", "/healthz", "GET, HEAD, OPTIONS"),
    ]:
        c.append(_case(f"405: {method} {path}", 405, method=method, path=path, allow=allow))

    # --- 400: bad query strings ------------------------------------------------------------------
    events = "/simulations/{job}/events"
    for label, query in [
        ("after=-1", "after=-1"), ("after=abc", "after=abc"), ("after twice", "after=1&after=2"),
        ("after=%zz", "after=%zz"), ("after empty", "after="), ("after=01", "after=01"),
        ("after=1.5", "after=1.5"), ("after=2^64", "after=18446744073709551616"),
        ("after=2^63", "after=9223372036854775808"), ("after=+1", "after=+1"),
        ("after=1%20", "after=1%20"), ("wait=-1", "wait=-1"), ("wait=abc", "wait=abc"),
        ("wait twice", "wait=1&wait=2"), ("wait=1e3", "wait=1e3"),
        ("unknown parameter", "after=0&foo=1"), ("empty name", "=1"),
        ("name with %zz", "%zz=1"),
    ]:
        c.append(_case(f"400 events: {label}", 400, method="GET", path=f"{events}?{query}",
                       type="bad-query"))
    # Queries that decode to control characters or to bytes that are not UTF-8: lighttpd
    # refuses them itself.
    for label, query in [("after=%00", "after=%00"), ("control character in a name", "a%01=1"),
                         ("invalid UTF-8 value", "after=%ff"), ("DEL in a value", "wait=%7f")]:
        c.append(_case(f"400 events: {label}", 400, method="GET", path=f"{events}?{query}",
                       proxy_may_refuse=True, type="bad-query"))
    for label, query in [
        ("limit=0", "limit=0"), ("limit=1001", "limit=1001"), ("limit=abc", "limit=abc"),
        ("limit=-5", "limit=-5"), ("limit twice", "limit=1&limit=2"),
        ("status=nope", "status=nope"), ("status=COMPLETED", "status=COMPLETED"),
        ("status twice", "status=queued&status=running"), ("status empty", "status="),
        ("before=garbage", "before=garbage"), ("before without a dot", "before=123"),
        ("before without time", "before=.{job}"),
        ("before with a lower-case id", "before=1.{job_lower}"),
        ("before with a negative time", "before=-1.{job}"),
        ("before=%zz", "before=%zz"), ("unknown parameter", "page=2"),
        ("%zz alone", "%zz"),
    ]:
        c.append(_case(f"400 list: {label}", 400, method="GET", path=f"/simulations?{query}",
                       type="bad-query"))
    # docs/api.md: "Query strings are strict: unknown parameter names are refused".
    for label, method, path in [
        ("unknown parameter on a job", "GET", "/simulations/{job}?verbose=1"),
        ("malformed parameter on a job", "GET", "/simulations/{job}?%zz"),
        ("unknown parameter on a cancel", "DELETE", "/simulations/{job}?force=1"),
        ("unknown parameter on healthz", "GET", "/healthz?full=1"),
        ("unknown parameter on metrics", "GET", "/metrics?format=json"),
        ("unknown parameter on a submission", "POST", "/simulations/async?priority=high"),
    ]:
        kw = {"body": GOOD_TEXT.encode()} if method == "POST" else {}
        c.append(_case(f"400 strict query: {label}", 400, method=method, path=path,
                       type="bad-query", **kw))

    # --- 400: bad Idempotency-Key ----------------------------------------------------------------
    for label, key in [
        ("256 characters", "k" * 256),
        ("300 characters", "k" * 300),
        ("a tab", "a\tb"),
        ("non-ASCII", "cl\u00e9"),
    ]:
        c.append(_post(f"400 Idempotency-Key: {label}", 400, GOOD_TEXT.encode(), async_,
                       headers={"Idempotency-Key": key}, type="bad-idempotency-key"))
    # Control characters other than tab are refused by both web servers themselves. (An empty
    # key is checked in test_http.py: lighttpd drops empty headers.)
    for label, key in [("SOH", "a\x01b"), ("DEL", "a\x7fb")]:
        c.append(_post(f"400 Idempotency-Key: {label}", 400, GOOD_TEXT.encode(), sync,
                       headers={"Idempotency-Key": key}, proxy_may_refuse=True,
                       type="bad-idempotency-key"))

    # --- 401/403: tokens (run against the server with auth_secret set) ---------------------------
    for token, status, method, path in [
        ("none", 401, "GET", "/healthz"),
        ("none", 401, "GET", "/simulations/{job}"),
        ("basic", 401, "GET", "/simulations/{job}"),
        ("empty bearer", 401, "GET", "/metrics"),
        ("garbage", 401, "GET", "/simulations/{job}/events"),
        ("wrong signature", 401, "GET", "/simulations/{job}"),
        ("expired", 401, "GET", "/simulations/{job}"),
        ("no exp", 401, "GET", "/simulations/{job}"),
        ("exp string", 401, "GET", "/simulations/{job}"),
        ("alg none", 401, "GET", "/simulations/{job}"),
        ("HS512", 401, "GET", "/simulations/{job}"),
        ("too long", 401, "GET", "/healthz"),
        ("query garbage", 401, "GET", "/simulations/{job}"),
        ("query expired", 401, "GET", "/simulations/{job}/events"),
        ("other job", 403, "GET", "/simulations/{job}"),
        ("other job", 403, "GET", "/simulations/{job}/events"),
        ("other job", 403, "DELETE", "/simulations/{job}"),
        ("query other job", 403, "GET", "/simulations/{job}"),
        ("user", 403, "GET", "/simulations"),
        ("job", 403, "GET", "/simulations"),
        ("job", 403, "GET", "/healthz"),
    ]:
        c.append(_case(f"{status} token {token}: {method} {path}", status, method=method,
                       path=path, token=token))
    c.append(_post("401 token none: POST /simulations", 401, GOOD_TEXT.encode(), sync,
                   token="none"))
    c.append(_post("403 token job: POST /simulations/async", 403, GOOD_TEXT.encode(), async_,
                   token="job"))
    c.append(_case("400 token given twice in the query", 400, method="GET",
                   path="/simulations/{job}?token=a&token=b", token="query twice",
                   type="bad-query"))
    return c


if __name__ == "__main__":
    all_cases = cases()
    names = [str(x["name"]) for x in all_cases]
    assert len(names) == len(set(names)), "duplicate case names"
    by_status: Dict[int, int] = {}
    for x in all_cases:
        by_status[int(x["status"])] = by_status.get(int(x["status"]), 0) + 1  # type: ignore
    print(f"{len(all_cases)} cases:", ", ".join(f"{k}: {v}" for k, v in sorted(by_status.items())))
