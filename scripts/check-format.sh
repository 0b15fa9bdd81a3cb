#!/usr/bin/env bash
# Fails when a C source or header does not follow .clang-format.
# Why this file exists: the house style says every file is clang-formatted; this makes it a
# test. scripts/check-format.sh --fix rewrites the files instead.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files --cached --others --exclude-standard '*.c' '*.h' 2>/dev/null || find . -name '*.[ch]' -not -path './build*')
[ ${#files[@]} -gt 0 ] || exit 0
if [ "${1:-}" = --fix ]; then
  clang-format -i "${files[@]}"
  exit 0
fi
bad=0
for f in "${files[@]}"; do
  if ! clang-format --dry-run -Werror "$f" >/dev/null 2>&1; then
    echo "not formatted: $f (run scripts/check-format.sh --fix)"; bad=1
  fi
done
[ "$bad" -eq 0 ] && echo "format: ${#files[@]} files ok"
exit "$bad"
