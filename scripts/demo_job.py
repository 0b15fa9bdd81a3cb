#!/usr/bin/env python3
"""Submit a job to a running risksim and print its events as they arrive.

Why this file exists: the run command shows a simulation streaming; this is the client side of
that, written against the public API only (docs/api.md): POST /simulations/async, then the
job's events by long polling GET /simulations/{id}/events?after=SEQ&wait=S, one line per event,
until the job ends.

Usage: demo_job.py BASE_URL REQUEST.json [--trials N]
"""

import argparse
import json
import sys
import urllib.request


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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("base")
    ap.add_argument("request")
    ap.add_argument("--trials", type=int)
    args = ap.parse_args()
    with open(args.request) as f:
        body = json.load(f)
    if args.trials:
        body["trials"] = args.trials
    job = post_json(args.base + "/simulations/async", body)
    print("job %s queued; events from %s" % (job["id"], job["links"]["events"]))
    after = 0
    while True:
        page = get_json("%s/simulations/%s/events?after=%d&wait=25" % (args.base, job["id"], after),
                        timeout=40)
        for event in page["events"]:
            print("  seq %-6d %s" % (event["seq"], describe(event)), flush=True)
        after = page["next"]
        if page["status"] in ("completed", "failed", "cancelled") and not page["events"]:
            return 0


if __name__ == "__main__":
    sys.exit(main())
