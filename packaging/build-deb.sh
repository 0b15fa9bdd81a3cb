#!/usr/bin/env bash
# Builds the Debian package: configures a tree for packaging in BUILD_DIR (default
# build-deb; the prefix /usr, no tests or benchmarks), builds it and runs cpack -G DEB.
# Prints the path of the .deb on its last line. Usage: packaging/build-deb.sh [BUILD_DIR]
# Why this file exists: the package needs a tree configured differently from the development
# build (installing into /etc is only right for a package), and its test and the docs need one
# command that makes it.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
build=$(realpath -m "${1:-$repo/build-deb}")
cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=/usr \
    -DRISKSIM_PACKAGE=ON -DRISKSIM_TESTS=OFF -DRISKSIM_BENCH=OFF >/dev/null
cmake --build "$build" -j "$(nproc)" >/dev/null
(cd "$build" && cpack -G DEB >/dev/null)
ls -1t "$build"/risksim_*.deb | head -n 1
