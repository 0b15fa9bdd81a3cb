#!/usr/bin/env python3
"""Submit a job to a running risksim and print its events as they arrive.

Why this file exists: the run command shows a simulation streaming; this is the client side of
that, written against the public API only (docs/api.md): POST /simulations/async, then the
job's events over the WebSocket stream (GET /simulations/{id}/stream, served by the bridge
behind the web server), one line per message, until the bridge closes the stream at the job's
end. The run command also opens the demo page on the same job: --submit-only only submits and
prints the job's id, --job ID follows a job submitted before. Without the `websockets` module (Debian's python3-websockets, for /usr/bin/python3), or
with --poll, or when the stream cannot be opened, it long-polls
GET /simulations/{id}/events?after=SEQ&wait=S instead, from the last seq it has: the same
events either way.

Usage: demo_job.py BASE_URL REQUEST.json [--trials N] [--submit-only] [--poll]
       demo_job.py BASE_URL --job ID [--poll]
"""

import argparse
import asyncio
import json
import sys
import urllib.request

try:
    import websockets
except ImportError:  # the polling transport still works
    websockets = None

FINAL = ("completed", "failed", "cancelled")


def post_json(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.load(resp)


def get_json(url, timeout):
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.load(resp)


def describe(event):
    kind = event["type"]
    if kind == "status":
        return "status    %-9s %5.1f%%" % (event["status"], 100 * event["progress"])
    if kind == "progress":
        bar = "#" * int(30 * event["progress"])
        return "progress  [%-30s] %5.1f%%  %d of %d trials (%s)" % (
            bar, 100 * event["progress"], event["trialsDone"], event["trials"], event["phase"])
    if kind == "complete":
        root = event["result"]["nodes"][0]
        q = root["quantiles"]
        return "complete  %s: mean %.0f, p95 %.0f, p99 %.0f (engine %.0f ms)" % (
            root["id"], root["mean"], q.get("p95", float("nan")), q.get("p99", float("nan")),
            event["result"]["durationMs"])
    if kind == "error":
        return "error     %s: %s" % (event["error"]["code"], event["error"]["message"])
    return kind


def show(event):
    print("  seq %-6s %s" % (event.get("seq", "-"), describe(event)), flush=True)


async def stream(base, job_id, seen):
    """Prints the job's events from the WebSocket stream, keeping the seq of the last one in
    seen["seq"]; returns the close code and reason."""
    url = base.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
    url = "%s/simulations/%s/stream" % (url, job_id)
    print("  (over WebSocket: %s)" % url, flush=True)
    async with websockets.connect(url, max_size=None, open_timeout=10) as ws:
        opening = True
        try:
            async for text in ws:
                event = json.loads(text)
                if opening and event["type"] == "status":  # the snapshot, not an event
                    opening = False
                    print("  now      %s" % describe(event), flush=True)
                    continue
                if "seq" in event:
                    seen["seq"] = event["seq"]
                show(event)
        except websockets.ConnectionClosed:
            pass
        return ws.close_code, ws.close_reason


def poll(base, job_id, after):
    """Prints the job's events after `after` by long polling, until the job has ended."""
    print("  (by long polling: %s/simulations/%s/events)" % (base, job_id), flush=True)
    while True:
        page = get_json("%s/simulations/%s/events?after=%d&wait=25" % (base, job_id, after),
                        timeout=40)
        for event in page["events"]:
            show(event)
        after = page["next"]
        if page["status"] in FINAL and not page["events"]:
            return 0


def submit(base, request_path, trials):
    """Submits the request in request_path (with trials if given) as a job; returns its id."""
    with open(request_path) as f:
        body = json.load(f)
    if trials:
        body["trials"] = trials
    return post_json(base + "/simulations/async", body)["id"]


def follow(base, job_id, use_poll):
    """Prints the job's events until its end: over the WebSocket stream, else by polling."""
    seen = {"seq": 0}
    if websockets is not None and not use_poll:
        try:
            code, reason = asyncio.run(stream(base, job_id, seen))
            print("  stream closed: %s %s" % (code, reason), flush=True)
            if code in (1000, 4000):
                return 0
        except (OSError, asyncio.TimeoutError, websockets.WebSocketException) as e:
            print("  the stream is not available (%s)" % e, flush=True)
    elif websockets is None and not use_poll:
        print("  (no python3 websockets module: polling)", flush=True)
    return poll(base, job_id, seen["seq"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("base")
    ap.add_argument("request", nargs="?", help="the request to submit (not with --job)")
    ap.add_argument("--trials", type=int)
    ap.add_argument("--submit-only", action="store_true",
                    help="only submit the job and print its id")
    ap.add_argument("--job", help="follow this job instead of submitting one")
    ap.add_argument("--poll", action="store_true", help="long-poll instead of the WebSocket")
    args = ap.parse_args()
    if (args.job is None) == (args.request is None):
        ap.error("give either REQUEST.json or --job ID")
    if args.job is not None:
        return follow(args.base, args.job, args.poll)
    job_id = submit(args.base, args.request, args.trials)
    if args.submit_only:
        print(job_id, flush=True)
        return 0
    print("job %s queued" % job_id, flush=True)
    return follow(args.base, job_id, args.poll)


if __name__ == "__main__":
    sys.exit(main())
