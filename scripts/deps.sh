#!/usr/bin/env bash
# Installs the Debian 12 packages risksim needs that are not installed yet.
# Why this file exists: the README's run and test commands must work on a fresh machine, so
# both start here. Usage: scripts/deps.sh build|apache|test
#   build:  what building and serving behind lighttpd need (the run command)
#   apache: plus Apache (the run command's --apache)
#   test:   plus everything the test suite uses
set -euo pipefail

build_pkgs=(build-essential cmake pkg-config libjson-c-dev libsqlite3-dev sqlite3
            libfcgi-dev libinih-dev libjwt-dev libssl-dev libwebsockets-dev lighttpd curl
            python3 python3-websockets)
test_pkgs=(libcmocka-dev valgrind clang libclang-rt-14-dev clang-format python3 groff-base
           apache2 spawn-fcgi python3-websockets wrk chromium dpkg-dev adduser lintian e2fsprogs
           mount)

want=("${build_pkgs[@]}")
case "${1:-build}" in
  build) ;;
  apache) want+=(apache2) ;;
  test) want+=("${test_pkgs[@]}") ;;
  *) echo "deps.sh: unknown set '$1' (build, apache or test)" >&2; exit 64 ;;
esac
# The browser tests run node and npm (tests/browser). Debian's nodejs and npm only when the
# commands are missing: a node from elsewhere (NodeSource's nodejs, which brings its own npm and
# conflicts with Debian's npm package) is used as it is.
if [ "${1:-build}" = test ]; then
  command -v node >/dev/null 2>&1 || want+=(nodejs)
  command -v npm >/dev/null 2>&1 || want+=(npm)
fi

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "risksim: installing ${missing[*]}" >&2
SUDO=
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
