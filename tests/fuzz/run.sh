#!/usr/bin/env bash
# Runs every libFuzzer target of a fuzz build for a given time, from its committed seed corpus
# (tests/fuzz/corpus/NAME) and with its dictionary (tests/fuzz/NAME.dict) when there is one,
# as many targets at a time as there are CPUs. A finding (crash, leak, timeout, sanitizer report)
# fails the run; the fuzzer's output and the crashing input stay in WORK/NAME/.
#
# Usage: tests/fuzz/run.sh FUZZ_BUILD_DIR SECONDS [--merge]
#   --merge  afterwards adds the inputs that reached new coverage to the committed corpus
#            (libFuzzer -merge=1: only inputs that add coverage are copied)
# Prints, per target, one line: "FUZZ name execs=N seconds=S corpus=N new_corpus=N" (execs as
# libFuzzer's -print_final_stats reports them).
#
# Why this file exists: the test command runs each target briefly, the reliability suite's long
# form for at least ten minutes each; both need the same runner, with the same corpus and
# dictionaries, and figures to quote.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
build=$(realpath "$1")
seconds=$2
merge=${3:-}
work=$(mktemp -d "${TMPDIR:-/tmp}/risksim-fuzz.XXXXXX")

run_one() {
  local bin=$1 name=${1##*/fuzz_}
  local corpus=$repo/tests/fuzz/corpus/$name out=$work/$name
  local dict=$repo/tests/fuzz/$name.dict args=()
  mkdir -p "$out/corpus"
  cp -r "$corpus"/. "$out/corpus/" 2>/dev/null || true
  [ -f "$dict" ] && args+=(-dict="$dict")
  local rc=0
  (cd "$out" && "$bin" "${args[@]}" -max_total_time="$seconds" -print_final_stats=1 \
     -artifact_prefix="$out/" "$out/corpus" > "$out/log" 2>&1) || rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "FUZZ $name FAILED (exit $rc); see $out/log and any $out/crash-* (last lines follow)"
    tail -n 40 "$out/log"
    return 1
  fi
  local execs
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/log" | tail -n 1)
  echo "FUZZ $name execs=${execs:-?} seconds=$seconds corpus=$(ls "$corpus" | wc -l)" \
       "new_corpus=$(ls "$out/corpus" | wc -l)"
}

merge_one() {
  local bin=$1 name=${1##*/fuzz_}
  local corpus=$repo/tests/fuzz/corpus/$name before
  before=$(ls "$corpus" | wc -l)
  "$bin" -merge=1 "$corpus" "$work/$name/corpus" > "$work/$name/merge.log" 2>&1
  echo "FUZZ $name merged $(( $(ls "$corpus" | wc -l) - before )) inputs into tests/fuzz/corpus/$name"
}

targets=("$build"/tests/fuzz/fuzz_*)
[ -x "${targets[0]}" ] || { echo "no fuzz targets in $build/tests/fuzz (build with CC=clang -DRISKSIM_FUZZ=ON)" >&2; exit 1; }
jobs=$(nproc)
pids=()
status=0
for t in "${targets[@]}"; do
  run_one "$t" &
  pids+=($!)
  if [ "${#pids[@]}" -ge "$jobs" ]; then
    wait "${pids[0]}" || status=1
    pids=("${pids[@]:1}")
  fi
done
for p in "${pids[@]}"; do wait "$p" || status=1; done
if [ "$status" -eq 0 ] && [ "$merge" = --merge ]; then
  for t in "${targets[@]}"; do merge_one "$t"; done
fi
if [ "$status" -eq 0 ]; then rm -rf "$work"; else echo "fuzz work kept in $work"; fi
exit "$status"
