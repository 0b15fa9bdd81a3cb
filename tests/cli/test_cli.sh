#!/usr/bin/env bash
# Integration test of the risksim command-line tool (cli/risksim.c, docs/cli.md).
#
# Why this file exists: the CLI's exit codes, messages and output are a contract for scripts.
# This runs the real binary on a real request and checks that contract: exit 0 with valid
# result JSON, 2 with the JSON pointer of an invalid field, 64 for bad options, 1 for unreadable
# or oversized input, every node id in --summary, byte-identical results for 1 and 2 threads
# (only durationMs may differ), 130 with "cancelled" after SIGINT or SIGTERM mid-run, and
# `risksim db` / `risksim jobs` on a temporary database (migrate, stats, check, prune, backup,
# list, and exit 1 for an unknown job id or an existing backup destination).
#
# Usage: test_cli.sh RISKSIM_BINARY SOURCE_DIR
# Needs bash and python3. Prints one "ok"/"not ok" line per check; exits 1 if any failed.
set -u

bin=${1:?usage: test_cli.sh RISKSIM_BINARY SOURCE_DIR}
src=${2:?usage: test_cli.sh RISKSIM_BINARY SOURCE_DIR}

# The request: the shipped example when it exists, else this directory's fixture.
req="$src/examples/enterprise.json"
if [ ! -f "$req" ]; then
    req="$src/tests/cli/request.json"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/risksim-cli.XXXXXX") || exit 1
bgpid=""
# shellcheck disable=SC2317 # called through the EXIT trap
cleanup() {
    if [ -n "$bgpid" ]; then
        kill -KILL "$bgpid" 2>/dev/null
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

failures=0
# A check is a `run` followed by conditions on its output and then `ok` (or `fail`). A run whose
# exit code matched leaves its check pending until ok or fail settles it; a check still pending
# at the next run, or at the end, had a condition that did not hold, and fails.
pending=""
ok() {
    pending=""
    echo "ok - $1"
}
fail() {
    pending=""
    echo "not ok - $1"
    failures=$((failures + 1))
    if [ -s "$tmp/err" ]; then
        sed 's/^/#   stderr: /' "$tmp/err" | head -n 20
    fi
}
settle() {
    if [ -n "$pending" ]; then
        fail "$pending: the exit code was right, a check of its output was not"
    fi
}

# run EXPECTED_EXIT NAME ARGS...: runs the binary (stdout to $tmp/out, stderr to $tmp/err) and
# checks its exit code. Returns 0 when it matched (the check then waits for ok or fail).
run() {
    local want=$1 name=$2
    shift 2
    settle
    "$bin" "$@" >"$tmp/out" 2>"$tmp/err" </dev/null
    local got=$?
    if [ "$got" -ne "$want" ]; then
        fail "$name (exit $got, expected $want)"
        return 1
    fi
    pending=$name
    return 0
}

# The result JSON with its durationMs field cut out of the text (byte-level, no re-encoding).
strip_duration() {
    python3 -c '
import re, sys
text = sys.stdin.read()
sys.stdout.write(re.sub(r"\"durationMs\":\s*[-+0-9.eE]+,?\s*", "", text))
'
}

# json_get EXPR: evaluates a Python expression over the JSON on stdin (bound to d).
json_get() {
    python3 -c "import json, sys; d = json.load(sys.stdin); print($1)"
}

# --- the dispatcher -----------------------------------------------------------------------------

run 0 "--version" --version && grep -q '^risksim ' "$tmp/out" && ok "--version prints the version"
"$bin" >"$tmp/out" 2>"$tmp/err"
if [ $? -eq 64 ] && grep -q 'usage:' "$tmp/err"; then ok "no command: usage, exit 64"; else fail "no command: usage, exit 64"; fi
run 0 "help" help && grep -q 'simulate' "$tmp/out" && ok "help lists the commands"
run 0 "help simulate" help simulate && grep -q -- '--threads' "$tmp/out" && ok "help simulate"
run 0 "simulate --help" simulate --help && grep -q -- '--summary' "$tmp/out" && ok "simulate --help"
run 64 "unknown command" frobnicate && grep -q 'usage:' "$tmp/err" && ok "unknown command: exit 64"

# --- a valid request ----------------------------------------------------------------------------

if run 0 "valid request" simulate --trials 2000 --seed 7 --progress never "$req"; then
    cp "$tmp/out" "$tmp/valid.json"
    want_nodes=$(python3 -c '
import json, sys
def count(n):
    return 1 + sum(count(c) for c in n.get("children", []))
print(count(json.load(open(sys.argv[1]))["root"]))' "$req")
    facts=$(json_get '"%s %s %s" % (d["trials"], d["seed"], len(d["nodes"]))' <"$tmp/valid.json")
    if [ "$facts" = "2000 7 $want_nodes" ]; then
        ok "valid request: exit 0, trials/seed overridden, one entry per node"
    else
        fail "valid request: got 'trials seed nodes' = '$facts', expected '2000 7 $want_nodes'"
    fi
    if [ "$(wc -l <"$tmp/valid.json")" -eq 1 ]; then ok "compact JSON by default"; else fail "compact JSON by default"; fi
fi

if "$bin" simulate --trials 1000 --progress never - <"$req" >"$tmp/out" 2>"$tmp/err" &&
    [ "$(json_get 'd["trials"]' <"$tmp/out")" = 1000 ]; then
    ok "request from stdin (-)"
else
    fail "request from stdin (-)"
fi

if run 0 "--pretty" simulate --trials 2000 --seed 7 --pretty --progress never "$req"; then
    a=$(json_get 'json.dumps({k: v for k, v in d.items() if k != "durationMs"}, sort_keys=True)' <"$tmp/out")
    b=$(json_get 'json.dumps({k: v for k, v in d.items() if k != "durationMs"}, sort_keys=True)' <"$tmp/valid.json")
    if [ "$(wc -l <"$tmp/out")" -gt 1 ] && [ "$a" = "$b" ]; then
        ok "--pretty: indented, same content"
    else
        fail "--pretty: indented, same content"
    fi
fi

# "nTrials" is an alias of "trials"; --trials replaces both.
python3 - "$req" "$tmp/ntrials.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
d.pop("trials", None)
d["nTrials"] = 1500
json.dump(d, open(sys.argv[2], "w"))
EOF
if run 0 "--trials replaces nTrials" simulate --trials 700 --progress never "$tmp/ntrials.json" &&
    [ "$(json_get 'd["trials"]' <"$tmp/out")" = 700 ]; then
    ok "--trials replaces nTrials"
elif [ -s "$tmp/out" ]; then
    fail "--trials replaces nTrials (trials = $(json_get 'd["trials"]' <"$tmp/out"))"
fi

# --- determinism across threads and chunks --------------------------------------------------------

"$bin" simulate --trials 2000 --seed 7 --threads 1 --progress never "$req" 2>"$tmp/err" |
    strip_duration >"$tmp/t1.json"
"$bin" simulate --trials 2000 --seed 7 --threads 2 --progress never "$req" 2>"$tmp/err" |
    strip_duration >"$tmp/t2.json"
"$bin" simulate --trials 2000 --seed 7 --threads 2 --chunk 333 --progress never "$req" \
    2>"$tmp/err" | strip_duration >"$tmp/t2c.json"
if [ -s "$tmp/t1.json" ] && cmp -s "$tmp/t1.json" "$tmp/t2.json"; then
    ok "--threads 1 and --threads 2 give byte-identical results"
else
    fail "--threads 1 and --threads 2 give byte-identical results"
fi
if [ -s "$tmp/t1.json" ] && cmp -s "$tmp/t1.json" "$tmp/t2c.json"; then
    ok "--chunk 333 gives the same result"
else
    fail "--chunk 333 gives the same result"
fi

# --- --summary ----------------------------------------------------------------------------------

if run 0 "--summary" simulate --summary --trials 2000 --progress never "$req"; then
    missing=$(python3 - "$req" "$tmp/out" <<'EOF'
import json, sys
def ids(n):
    yield n["id"]
    for c in n.get("children", []):
        yield from ids(c)
words = set(open(sys.argv[2]).read().split())
print(" ".join(i for i in ids(json.load(open(sys.argv[1]))["root"]) if i not in words))
EOF
)
    if [ -z "$missing" ] && grep -q 'TVaR' "$tmp/out" && grep -q 'P(loss)' "$tmp/out"; then
        ok "--summary prints every node id, P(loss) and TVaR"
    else
        fail "--summary prints every node id (missing: $missing)"
    fi
fi

# --- invalid requests: exit 2 with the JSON pointer -----------------------------------------------

ptr=$(python3 - "$req" "$tmp/invalid.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
def first_leaf(n, ptr):
    if n.get("type") == "leaf":
        return n, ptr
    for i, c in enumerate(n.get("children", [])):
        r = first_leaf(c, "%s/children/%d" % (ptr, i))
        if r:
            return r
leaf, ptr = first_leaf(d["root"], "/root")
leaf["frequency"] = {"type": "bernoulli", "p": 1.5}
json.dump(d, open(sys.argv[2], "w"))
print(ptr + "/frequency")
EOF
)
if run 2 "invalid request" simulate --progress never "$tmp/invalid.json"; then
    if grep -q "^error: $ptr" "$tmp/err" && grep -q '\[.*\]$' "$tmp/err" && [ ! -s "$tmp/out" ]; then
        ok "invalid request: exit 2, 'error: $ptr...' with a [code]"
    else
        fail "invalid request: expected a line 'error: $ptr...: message [code]'"
    fi
fi
printf '{"trials": 10, ' >"$tmp/broken.json"
run 2 "malformed JSON" simulate --progress never "$tmp/broken.json" &&
    grep -q '^error: .*\[.*\]$' "$tmp/err" && ok "malformed JSON: exit 2 with a diagnostic"

# --- bad options: exit 64 with the usage ---------------------------------------------------------

for args in "--bogus" "--threads 0" "--threads abc" "--threads 257" "--trials -5" "--trials 1e3" \
    "--trials 0" "--trials 99999999999" "--seed 100000000" "--seed 7x" "--chunk 0" \
    "--chunk 2000000" "--progress sometimes" "--threads" "--summary=yes"; do
    # shellcheck disable=SC2086 # word splitting of $args is intended
    if run 64 "bad option '$args'" simulate $args "$req" && grep -q 'usage:' "$tmp/err"; then
        ok "bad option '$args': exit 64 with usage"
    fi
done
run 64 "no request file" simulate && ok "no request file: exit 64"
run 64 "two request files" simulate "$req" "$req" && ok "two request files: exit 64"

# --- unreadable and oversized input: exit 1 -------------------------------------------------------

run 1 "missing file" simulate --progress never "$tmp/does-not-exist.json" &&
    grep -q 'does-not-exist' "$tmp/err" && ok "missing file: exit 1 naming it"
# 64 MiB of spaces and one byte more: refused before parsing.
python3 -c '
import sys
chunk = b" " * (1 << 20)
for _ in range(64):
    sys.stdout.buffer.write(chunk)
sys.stdout.buffer.write(b"1")' >"$tmp/huge.json"
run 1 "request over 64 MiB" simulate --progress never "$tmp/huge.json" &&
    grep -q '64 MiB' "$tmp/err" && ok "request over 64 MiB: exit 1, refused clearly"
rm -f "$tmp/huge.json"

# --- cancellation: SIGINT and SIGTERM mid-run -----------------------------------------------------

# A long run: 10^7 trials (the default maximum) of 400 rare leaves on one thread takes minutes,
# while rare losses keep its memory small.
python3 - "$tmp/long.json" <<'EOF'
import json, sys
leaves = [{"id": "r%d" % i, "type": "leaf",
           "frequency": {"type": "bernoulli", "p": 0.001},
           "severity": {"type": "lognormal", "lower": 1000, "upper": 100000}}
          for i in range(400)]
json.dump({"name": "long", "trials": 10000000, "seed": 1,
           "root": {"id": "root", "type": "portfolio", "children": leaves}},
          open(sys.argv[1], "w"))
EOF
for sig in INT TERM; do
    # --progress always on a file prints a line at the first chunk: the run has started and the
    # handlers are installed (they are set before the request is read).
    "$bin" simulate --threads 1 --progress always "$tmp/long.json" >"$tmp/out" 2>"$tmp/err" &
    bgpid=$!
    for _ in $(seq 300); do # up to 30 s for the first progress line
        grep -q 'sampling' "$tmp/err" 2>/dev/null && break
        kill -0 "$bgpid" 2>/dev/null || break
        sleep 0.1
    done
    kill -"$sig" "$bgpid" 2>/dev/null
    for _ in $(seq 600); do # hang guard: 60 s
        kill -0 "$bgpid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$bgpid" 2>/dev/null; then
        kill -KILL "$bgpid" 2>/dev/null
        wait "$bgpid" 2>/dev/null
        bgpid=""
        fail "SIG$sig mid-run: still running 60 s after the signal"
        continue
    fi
    wait "$bgpid"
    rc=$?
    bgpid=""
    if [ "$rc" -eq 130 ] && grep -q 'cancelled' "$tmp/err" && [ ! -s "$tmp/out" ]; then
        ok "SIG$sig mid-run: exit 130, 'cancelled', no result"
    else
        fail "SIG$sig mid-run: exit $rc, expected 130 and 'cancelled' on stderr"
    fi
done

# --- risksim db and risksim jobs on a temporary database ------------------------------------------

# The CLI has no way to enqueue a job (only the service does), so these checks cover the empty
# database; the job operations themselves are tested through db.h in tests/db/.
db="$tmp/jobs.db"
run 1 "db stats on a missing file" db stats --db "$db" && [ ! -e "$db" ] &&
    grep -q 'jobs.db' "$tmp/err" && ok "db stats on a missing file: exit 1, file not created"
run 0 "db migrate" db migrate --db "$db" && grep -q 'schema version 3$' "$tmp/out" && [ -f "$db" ] &&
    ok "db migrate creates the file and prints the schema version"
run 0 "db migrate again" db migrate --db "$db" && grep -q 'schema version 3$' "$tmp/out" &&
    ok "db migrate of an up-to-date file"
if run 0 "db stats" db stats --db "$db"; then
    if grep -q '^jobs queued: *0$' "$tmp/out" && grep -q '^queue depth: *0$' "$tmp/out" &&
        grep -q '^WAL size:' "$tmp/out" && grep -q '^busy retries: *0 ' "$tmp/out" &&
        [ "$(grep -c '^jobs ' "$tmp/out")" -eq 5 ]; then
        ok "db stats on an empty database: 5 states, queue depth 0, WAL size, busy retries"
    else
        fail "db stats on an empty database"
    fi
fi
run 0 "db check" db check --db "$db" && grep -q ': ok: ' "$tmp/out" && ok "db check: ok"
copy="$tmp/backup.db"
run 0 "db backup" db backup --db "$db" --to "$copy" &&
    grep -q "^$db: backed up to $copy (.* bytes, checked)\$" "$tmp/out" && [ -f "$copy" ] &&
    [ ! -e "$copy-wal" ] && [ ! -e "$copy-journal" ] &&
    ok "db backup: a new self-contained file, reported"
run 0 "db check of the backup" db check --db "$copy" && grep -q ': ok: ' "$tmp/out" &&
    ok "db check of the backup: ok"
printf 'keep me\n' >"$tmp/taken.db"
run 1 "db backup to an existing file" db backup --db "$db" --to "$tmp/taken.db" &&
    grep -q 'already exists' "$tmp/err" && [ "$(cat "$tmp/taken.db")" = "keep me" ] &&
    ok "db backup to an existing file: exit 1, file untouched"
run 1 "db backup into a missing directory" db backup --db "$db" --to "$tmp/no-such-dir/b.db" &&
    grep -q 'no-such-dir' "$tmp/err" && [ ! -e "$tmp/no-such-dir" ] &&
    ok "db backup into a missing directory: exit 1"
run 0 "db prune" db prune --db "$db" && grep -q '^pruned 0 ' "$tmp/out" && ok "db prune prints 0"
run 0 "db prune --retention 0 --batch 10" db prune --db "$db" --retention 0 --batch 10 &&
    grep -q '^pruned 0 .* 0 s$' "$tmp/out" && ok "db prune --retention 0 --batch 10"
run 0 "jobs list" jobs list --db "$db" && [ "$(wc -l <"$tmp/out")" -eq 1 ] &&
    grep -q '^id ' "$tmp/out" && ok "jobs list on an empty database: only the header"
run 0 "jobs list --status" jobs list --db "$db" --status queued --limit 5 &&
    [ "$(wc -l <"$tmp/out")" -eq 1 ] && ok "jobs list --status queued --limit 5"
unknown=0123456789ABCDEFGHJKMNPQRS
run 1 "jobs show unknown" jobs show --db "$db" "$unknown" && grep -q 'no job' "$tmp/err" &&
    ok "jobs show of an unknown id: exit 1"
run 1 "jobs cancel unknown" jobs cancel --db "$db" "$unknown" && grep -q 'no job' "$tmp/err" &&
    ok "jobs cancel of an unknown id: exit 1"
run 1 "jobs show malformed" jobs show --db "$db" not-an-id && ok "jobs show of a malformed id: exit 1"
printf 'not a database, just text\n' >"$tmp/bad.db"
run 1 "db check of a non-database" db check --db "$tmp/bad.db" && grep -q 'not a database' "$tmp/err" &&
    ok "db check of a non-database: exit 1 with the reason"
run 0 "help db" help db && grep -q -- '--retention' "$tmp/out" && grep -q -- '--to DEST' "$tmp/out" &&
    ok "help db"
run 0 "jobs --help" jobs --help && grep -q -- '--status' "$tmp/out" && ok "jobs --help"
for args in "db" "db frobnicate --db $db" "db stats" "db stats --db" "db prune --db $db --batch 0" \
    "db prune --db $db --retention -1" "db stats --db $db --limit 3" "db stats --db $db extra" \
    "db backup --db $db" "db backup --db $db --to" "db stats --db $db --to $tmp/x.db" \
    "jobs list --db $db --status done" "jobs list --db $db --limit 0" \
    "jobs list --db $db --limit 1001" "jobs show --db $db" "jobs cancel --db $db a b"; do
    # shellcheck disable=SC2086 # word splitting of $args is intended
    if run 64 "usage error '$args'" $args && grep -q 'usage:' "$tmp/err"; then
        ok "usage error '$args': exit 64 with usage"
    fi
done

settle
if [ "$failures" -ne 0 ]; then
    echo "# $failures check(s) failed"
    exit 1
fi
echo "# all checks passed"
exit 0
