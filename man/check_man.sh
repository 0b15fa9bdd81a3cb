#!/usr/bin/env bash
# Checks the hand-written man pages in man/: well-formed and complete.
# Why this file exists: the pages repeat what the programs do, so this test (ctest man_pages)
# compares them with the programs themselves and fails when one of them changes alone.
# Usage: check_man.sh MANDIR RISKSIM RISKSIM_FCGI RISKSIM_WSBRIDGE
#   - every page formats with groff -man -ww (all warnings on) without a single warning, on the
#     terminal and the default device, and its .TH names the file's name and section;
#   - every key printed by `risksim-fcgi --print-config` and `risksim-wsbridge --print-config`
#     has its own entry in risksim.conf.5 with the same default, and every entry there is a key;
#   - every command of `risksim --help`, every subcommand of `risksim help db|jobs` and every
#     option of those helps is in risksim.1;
#   - every flag of the daemons' --help is in their page (the responder's keys in
#     risksim-fcgi.8, the bridge's in risksim-wsbridge.8, --config and the like in both).
# A missing groff is a failure, never a skip (scripts/deps.sh test installs groff-base).
set -uo pipefail

if [ $# -ne 4 ]; then
  echo "usage: $0 MANDIR RISKSIM RISKSIM_FCGI RISKSIM_WSBRIDGE" >&2
  exit 64
fi
mandir=$1 cli=$2 fcgi=$3 bridge=$4
pages=(risksim.1 risksim-fcgi.8 risksim-wsbridge.8 risksim.conf.5)
failures=0
fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

if ! command -v groff >/dev/null 2>&1; then
  echo "FAIL: groff is not installed (Debian: apt-get install groff-base; scripts/deps.sh test)" >&2
  exit 1
fi
for p in "$cli" "$fcgi" "$bridge"; do
  if [ ! -x "$p" ]; then
    echo "FAIL: $p: not an executable" >&2
    exit 1
  fi
done

# Runs a daemon with nothing from this host's environment or /etc (only the defaults).
clean() { env -i PATH="$PATH" LC_ALL=C "$@"; }

# --- 1. Well-formed -------------------------------------------------------------------------
for page in "${pages[@]}"; do
  f=$mandir/$page
  if [ ! -f "$f" ]; then
    fail "$page: missing"
    continue
  fi
  for dev in utf8 ps; do
    out=$(LC_ALL=C.UTF-8 groff -man -T"$dev" -ww -z "$f" 2>&1)
    if [ -n "$out" ]; then
      fail "$page: groff -man -T$dev -ww reports:"
      printf '%s\n' "$out" | sed 's/^/    /' >&2
    fi
  done
  # .TH NAME SECTION: the name in upper case (with \- for -), the section of the file name.
  name=${page%.*} section=${page##*.}
  want=$(printf '%s' "$name" | tr '[:lower:]' '[:upper:]' | sed 's/-/\\-/g')
  read -r th th_name th_section _ < <(grep -m1 '^\.TH ' "$f")
  if [ "${th:-}" != .TH ] || [ "${th_name:-}" != "$want" ] ||
    [ "${th_section:-}" != "$section" ]; then
    fail "$page: .TH should start with '.TH $want $section'"
  fi
  for sh in NAME SYNOPSIS DESCRIPTION "SEE ALSO"; do
    grep -q "^\.SH $sh\$" "$f" || fail "$page: no .SH $sh section"
  done
done

# Whether the page holds the option --name, written \-\-name in roff (and not only as the
# start of a longer option such as --name-more).
has_option() {
  local re
  re=$(printf '%s' "$2" | sed 's/-/\\\\-/g')
  grep -qE -- "$re"'([^a-z\\]|\\[^-]|$)' "$mandir/$1"
}

# --- 2. risksim.conf.5: every key, with its default ------------------------------------------
conf=$mandir/risksim.conf.5
# The key entries of the page: "key<TAB>default" for each `.TP` + `.B key` in a *KEYS section,
# the default being the words after "Default" up to the first ";" or "(" of the entry's text.
documented=$(awk '
  function text(s) {
    sub(/^\.[A-Z]+ /, "", s); gsub(/\\f[BIRP]/, "", s); gsub(/\\-/, "-", s)
    gsub(/\\\(dq/, "\"", s); gsub(/\\~/, " ", s); gsub(/\\&/, "", s); return s
  }
  function flush() {
    if (key == "") return
    d = body; sub(/^ */, "", d)
    if (d !~ /^Default /) { print key "\t?"; key = ""; return }
    sub(/^Default /, "", d); sub(/[;(].*/, "", d); sub(/ +$/, "", d)
    print key "\t" d; key = ""
  }
  /^\.SH / { flush(); inkeys = ($0 ~ /KEYS/ && $0 !~ /CHECKS/); next }
  /^\.TP/ { flush(); tp = 1; next }
  inkeys && tp && /^\.B [a-z_]+$/ { key = $2; body = ""; tp = 0; next }
  { tp = 0 }
  inkeys && key != "" { body = body " " text($0) }
  END { flush() }
' "$conf")

check_keys() { # program: every key it prints is documented with the default it prints
  local prog=$1 printed line key value doc
  if ! printed=$(clean "$prog" --config /dev/null --print-config 2>&1); then
    fail "$prog --print-config failed: $printed"
    return
  fi
  while IFS= read -r line; do
    [[ $line =~ ^([a-z_]+)\ =\ (.*)$ ]] || continue
    key=${BASH_REMATCH[1]} value=${BASH_REMATCH[2]}
    value=${value#\"} value=${value%\"}
    [ -n "$value" ] || value=empty
    doc=$(printf '%s\n' "$documented" | awk -F '\t' -v k="$key" '$1 == k { print $2 }')
    if [ -z "$doc" ]; then
      fail "risksim.conf.5: key $key (printed by $(basename "$prog") --print-config) has no entry"
    elif [ "$doc" != "$value" ]; then
      fail "risksim.conf.5: key $key: documented default '$doc', $(basename "$prog") says '$value'"
    fi
    printf '%s\n' "$key" >>"$seen"
  done <<<"$printed"
}
seen=$(mktemp)
trap 'rm -f "$seen"' EXIT
check_keys "$fcgi"
check_keys "$bridge"
while IFS=$'\t' read -r key _; do
  [ -n "$key" ] || continue
  grep -qx "$key" "$seen" || fail "risksim.conf.5: entry $key is not a key of --print-config"
done <<<"$documented"

# --- 3. risksim.1: every command, subcommand and option ---------------------------------------
cli_page=$mandir/risksim.1
commands=$("$cli" --help | awk '/^Commands:/ { on = 1; next }
                                on && /^  [a-z]/ { print $1 } on && /^$/ { on = 0 }')
[ -n "$commands" ] || fail "risksim --help lists no commands (format changed?)"
for c in $commands; do
  grep -qx "\.SS $c" "$cli_page" ||
    fail "risksim.1: command '$c' of risksim --help has no .SS section"
  help=$("$cli" help "$c" 2>&1) || {
    [ "$c" = help ] || fail "risksim help $c failed"
    continue
  }
  # Subcommands from the usage lines: "usage: risksim db migrate ..." and the lines under it.
  subs=$(printf '%s\n' "$help" | sed -n -E "s/^(usage:)? +risksim $c ([a-z]+)( .*)?$/\2/p")
  for sub in $subs; do
    grep -qx "\.B risksim $c $sub" "$cli_page" ||
      fail "risksim.1: 'risksim $c $sub' is not in the SYNOPSIS"
    grep -q "^\.B $sub\( \|\$\)" "$cli_page" || fail "risksim.1: '$c $sub' has no entry"
  done
  for opt in $(printf '%s\n' "$help" | grep -oE -- '--[a-z][a-z-]*' | sort -u); do
    has_option risksim.1 "$opt" || fail "risksim.1: option $opt of 'risksim help $c' is missing"
  done
done
for opt in --help --version; do
  has_option risksim.1 "$opt" || fail "risksim.1: $opt is missing"
done

# --- 4. The daemons' pages: every flag of their --help ---------------------------------------
check_flags() { # program page: the general flags and the flags of its own part of --help
  local prog=$1 page=$2 part=$3 help opt
  help=$(clean "$prog" --help) || {
    fail "$prog --help failed"
    return
  }
  general=$(printf '%s\n' "$help" | awk 'NR > 1 && /^[A-Z]/ { exit } /^ *--/ { print $1 }')
  for opt in $general -h; do
    has_option "$page" "$opt" || fail "$page: option $opt of $(basename "$prog") --help is missing"
  done
  for opt in $(printf '%s\n' "$help" | awk -v part="$part" '
      /^[A-Z]/ { on = index($0, part) > 0; next } on && /^ *--/ { print $1 }'); do
    has_option "$page" "$opt" || fail "$page: option $opt of $(basename "$prog") --help is missing"
  done
}
check_flags "$fcgi" risksim-fcgi.8 "risksim-fcgi:"
check_flags "$bridge" risksim-wsbridge.8 "risksim-wsbridge:"

if [ "$failures" -ne 0 ]; then
  echo "man pages: $failures problem(s)" >&2
  exit 1
fi
echo "man pages: ${pages[*]} are well-formed and complete"
