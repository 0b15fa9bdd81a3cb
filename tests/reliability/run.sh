#!/usr/bin/env bash
# The reliability suite: crashes, storage faults, security, load and fuzzing, in a short form
# (what the test command runs, through ctest) or in full with --long.
#
# Usage: tests/reliability/run.sh [--long] [--build DIR] [--server lighttpd|apache]
#   --build   the build tree to test (default build/; built first if missing)
#   --long    the full form: 100 jobs over several crash rounds, 1,000 stream clients over three
#             bridge kills, a fuller fault and security sweep, 10 minutes of load at half capacity,
#             and each libFuzzer target for RISKSIM_FUZZ_SECONDS (default 600) seconds with the
#             inputs that reach new coverage merged into the committed corpus
# Every program prints "FIGURE key=value" lines; they are collected, with each program's time,
# into BUILD/reliability-report.txt (the figures of docs/reliability.md come from there).
#
# Why this file exists: the programs of this directory are separate so that ctest can run them
# in parallel in their short form; this runs all of them, in either form, and keeps their figures.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
build=build
server=lighttpd
long=()
while [ $# -gt 0 ]; do
  case $1 in
    --long) long=(--long) ;;
    --build) build=$2; shift ;;
    --server) server=$2; shift ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 64 ;;
  esac
  shift
done
[ -x "$build/fcgi/risksim-fcgi" ] || bash scripts/build.sh "$build"
report=$build/reliability-report.txt
: > "$report"
failed=()

run_program() {
  local name=$1; shift
  local start=$SECONDS log=$build/reliability-$name.log rc=0
  printf '\n==== %s %s\n' "$name" "${long[*]:-}"
  "$@" > "$log" 2>&1 || rc=$?
  grep -E '^(FIGURE|FUZZ|PASS|FAIL)' "$log" || true
  {
    echo "## $name ${long[*]:-} (exit $rc, $((SECONDS - start)) s)"
    grep -E '^(FIGURE|FUZZ)' "$log" || true
  } >> "$report"
  if [ "$rc" -ne 0 ]; then
    failed+=("$name")
    echo "---- $name failed (exit $rc); the end of $log:"
    tail -n 40 "$log"
  fi
}

py=/usr/bin/python3
common=(--build "$build" --server "$server" "${long[@]}")
run_program check_sql "$py" tests/reliability/check_sql.py
run_program crash "$py" tests/reliability/crash.py "${common[@]}"
run_program bridge_crash "$py" tests/reliability/bridge_crash.py "${common[@]}"
run_program storage "$py" tests/reliability/storage.py "${common[@]}"
run_program security "$py" tests/reliability/security.py "${common[@]}"
run_program load "$py" tests/reliability/load.py "${common[@]}"
if [ ${#long[@]} -gt 0 ]; then
  [ -x build-fuzz/tests/fuzz/fuzz_request ] ||
    CC=clang bash scripts/build.sh build-fuzz -DRISKSIM_FUZZ=ON -DRISKSIM_BENCH=OFF
  run_program fuzz bash tests/fuzz/run.sh build-fuzz "${RISKSIM_FUZZ_SECONDS:-600}" --merge
fi

printf '\nfigures: %s\n' "$report"
if [ ${#failed[@]} -gt 0 ]; then
  echo "reliability: FAILED: ${failed[*]}"
  exit 1
fi
echo "reliability: all passed"
