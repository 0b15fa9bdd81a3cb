#!/usr/bin/env bash
# The README's test command: installs what is missing, then builds and runs the whole suite:
# format check, unit and integration tests (plain), the same under ASan+UBSan, the unit tests
# under valgrind, and each fuzz target briefly. Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh test

step() { printf '\n==== %s\n' "$*"; }

step "format check"
bash scripts/check-format.sh

step "build and test (plain)"
# BENCH explicitly on: the run command configures the same tree with it off.
bash scripts/build.sh build -DRISKSIM_BENCH=ON
ctest --test-dir build --output-on-failure -j "$(nproc)"

step "build and test (ASan + UBSan)"
bash scripts/build.sh build-asan -DRISKSIM_SANITIZE=ON -DRISKSIM_BENCH=OFF
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j "$(nproc)"

step "unit tests under valgrind"
fails=0
for t in build/tests/engine_test_* build/tests/db_test_* build/tests/common_test_* \
    build/tests/fcgi_test_* build/tests/wsbridge_test_*; do
  [ -x "$t" ] || continue
  if ! RISKSIM_UNDER_VALGRIND=1 valgrind -q --error-exitcode=99 --leak-check=full \
      --errors-for-leak-kinds=definite,indirect,possible --show-leak-kinds=definite,indirect,possible \
      "$t" > "build/$(basename "$t").valgrind.log" 2>&1; then
    echo "valgrind: $(basename "$t") FAILED"; cat "build/$(basename "$t").valgrind.log"; fails=1
  else
    echo "valgrind: $(basename "$t") ok"
  fi
done
[ "$fails" -eq 0 ]

step "fuzz targets (libFuzzer, ${RISKSIM_FUZZ_SECONDS:-60} s each, one per CPU at a time)"
CC=clang bash scripts/build.sh build-fuzz -DRISKSIM_FUZZ=ON -DRISKSIM_BENCH=OFF
bash tests/fuzz/run.sh build-fuzz "${RISKSIM_FUZZ_SECONDS:-60}"

step "all tests passed"
