#!/usr/bin/env bash
# Configures and builds risksim into a build directory.
# Why this file exists: the run and test scripts build several variants (plain, sanitizers,
# fuzzing) the same way. Usage: scripts/build.sh DIR [cmake options...]
set -euo pipefail
dir=$1
shift
cmake -S "$(dirname "$0")/.." -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
cmake --build "$dir" -j "$(nproc)" >/dev/null
