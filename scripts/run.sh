#!/usr/bin/env bash
# The README's run command: installs what is missing, builds risksim and runs a simulation of
# the shipped example, showing its progress and the result.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh build
echo "risksim: building (build/)" >&2
bash scripts/build.sh build -DRISKSIM_BENCH=OFF
echo "risksim: simulating examples/enterprise.json with 1,000,000 trials" >&2
./build/cli/risksim simulate examples/enterprise.json --trials 1000000 --progress always --summary
