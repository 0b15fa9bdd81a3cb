#!/usr/bin/env bash
# The README's run command: installs what is missing, builds risksim, and serves it on
# 127.0.0.1 behind lighttpd (or Apache) from the shipped configurations, with the job store in
# build/serve-SERVER/risksim.db, with the WebSocket bridge; submits a sample job, prints the URL
# of the demo page following it, shows its progress streaming over WebSocket in the terminal,
# then stays in the foreground until Ctrl-C, which stops everything it started.
#
# Usage: bash scripts/run.sh [--apache]     (or RISKSIM_SERVER=apache; RISKSIM_PORT=8080)
set -euo pipefail
cd "$(dirname "$0")/.."

server=${RISKSIM_SERVER:-lighttpd}
if [ "${1:-}" = "--apache" ]; then server=apache; fi
case "$server" in lighttpd | apache) ;; *) echo "run.sh: unknown server '$server'" >&2; exit 64 ;; esac
port=${RISKSIM_PORT:-8080}
base="http://127.0.0.1:$port/risksim"

bash scripts/deps.sh build
if [ "$server" = apache ]; then bash scripts/deps.sh apache; fi
echo "risksim: building (build/)" >&2
bash scripts/build.sh build -DRISKSIM_BENCH=OFF

echo "risksim: starting $server on 127.0.0.1:$port" >&2
python3 scripts/serve.py --server "$server" --port "$port" --state "build/serve-$server" \
  --build build &
serve_pid=$!
stop() { kill -TERM "$serve_pid" 2>/dev/null || true; wait "$serve_pid" 2>/dev/null || true; }
trap stop EXIT
trap 'exit 130' INT TERM

for _ in $(seq 1 100); do
  if curl -fsS -o /dev/null "$base/healthz" 2>/dev/null; then break; fi
  if ! kill -0 "$serve_pid" 2>/dev/null; then echo "run.sh: the server did not start" >&2; exit 1; fi
  sleep 0.2
done

cat <<MSG

risksim is serving $base/
  page:     $base/   (the demo page: edit a request, run it, watch it stream)
  API:      $base/simulations  (sync)   $base/simulations/async  (async)
  health:   $base/healthz      metrics: $base/metrics
  try:      curl -s -H 'Content-Type: application/json' --data-binary @examples/enterprise.json $base/simulations
  stream:   ${base/http:/ws:}/simulations/ID/stream  (WebSocket, through the bridge)
MSG
# Debian's python3-websockets belongs to the system interpreter, whatever python3 comes first
# on PATH.
demo() { /usr/bin/python3 scripts/demo_job.py "$base" "$@"; }
if job=$(demo examples/enterprise.json --trials 5000000 --submit-only); then
  echo "A sample job (examples/enterprise.json, 5,000,000 trials), on the demo page:"
  echo
  echo "  open $base/?job=$job"
  echo
  echo "and its events as they arrive:"
  demo --job "$job" || true
  page="$base/?job=$job"
else
  echo "run.sh: the sample job could not be submitted" >&2
  page="$base/"
fi
echo
echo "risksim: still serving $base/ — press Ctrl-C to stop. The demo page:"
echo "  open $page"
wait "$serve_pid"
