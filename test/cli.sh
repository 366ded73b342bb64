#!/usr/bin/env bash
# test/cli.sh: the command line end to end: `seal demo --quick` twice (the
# same seed gives the same table, with a fresh and with a cached base), the
# run directory it leaves, `seal runs`, and exit codes and messages on bad input.
set -u
SEAL=${SEAL:-./seal}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
check() {   # check NAME COMMAND...: COMMAND must succeed
    local name=$1; shift
    if "$@"; then echo "ok   $name"; else echo "FAIL $name"; fails=$((fails + 1)); fi
}
quiet() { "$@" >/dev/null 2>&1; }
expect() {   # expect CODE PATTERN NAME COMMAND...: exit code CODE and PATTERN in stderr
    local code=$1 pattern=$2 name=$3; shift 3
    "$@" >"$tmp/out" 2>"$tmp/err"
    local rc=$?
    if [ "$rc" = "$code" ] && grep -q -- "$pattern" "$tmp/err"; then echo "ok   $name"
    else echo "FAIL $name: exit $rc (want $code), stderr: $(head -c 300 "$tmp/err")"; fails=$((fails + 1)); fi
}

# --- seal demo --quick: every phase, a complete run directory, a reproducible table
"$SEAL" demo --quick --seed 3 --cache "$tmp/cache" --out "$tmp/a" --json "$tmp/a.json" >"$tmp/a.out" 2>"$tmp/a.err"
check "demo --quick runs" test $? = 0
for phase in "1/3 world" "2/3 tokenizer" "2/3 pretraining" "3/3 SEAL"; do
    check "demo phase '$phase' ran" grep -q "$phase" "$tmp/a.err"
done
for f in run.json edits.jsonl events.jsonl current rounds/1/metrics.json report.md report.json; do
    check "run directory has $f" test -s "$tmp/a/$f"
done
for row in "no adaptation" "untrained policy" "SEAL, round 1" "oracle"; do
    check "table row '$row'" grep -q "$row" "$tmp/a.out"
done
"$SEAL" demo --quick --seed 3 --cache "$tmp/cache" --out "$tmp/b" >"$tmp/b.out" 2>"$tmp/b.err"
check "second run reuses the cached base" grep -q "cached" "$tmp/b.err"
"$SEAL" demo --quick --seed 3 --cache "$tmp/cache2" --out "$tmp/c" >"$tmp/c.out" 2>"$tmp/c.err"
table() { grep '^|' "$1"; }
check "same seed, same table (cached base)" diff <(table "$tmp/a.out") <(table "$tmp/b.out")
check "same seed, same table (rebuilt base)" diff <(table "$tmp/a.out") <(table "$tmp/c.out")
check "same seed, same edits" diff <(cut -c1-200 "$tmp/a/edits.jsonl" | sed 's/"seconds[^,]*,//g') <(cut -c1-200 "$tmp/b/edits.jsonl" | sed 's/"seconds[^,]*,//g')
check "runs show" quiet "$SEAL" runs show "$tmp/a"
check "runs rollback" quiet "$SEAL" runs rollback "$tmp/a" --to 0
check "rollback recorded" grep -q rollback "$tmp/a/events.jsonl"
expect 1 "round 5 is not complete" "rollback to a missing round" "$SEAL" runs rollback "$tmp/a" --to 5
expect 1 "already holds a run" "a second run into the same directory" "$SEAL" demo --quick --seed 3 --cache "$tmp/cache" --out "$tmp/a"

# --- bad input: clear messages, exit 1; usage errors exit 2
expect 2 "unknown flag" "unknown flag" "$SEAL" verify --bogus
expect 2 "unknown command" "unknown command" "$SEAL" frobnicate
expect 1 "no-such-dir/expected.safetensors" "missing fixture" "$SEAL" verify "$tmp/no-such-dir"
mkdir -p "$tmp/bad" && echo '{"hidden_size": 8}' >"$tmp/bad/config.json"
expect 1 "missing required key" "config without a key" "$SEAL" generate --model "$tmp/bad" --prompt hi
expect 2 "expected a number" "non-numeric flag" "$SEAL" generate --model "$tmp/bad" --prompt hi --temperature warm
for cmd in verify generate tokenize fewshot demo runs; do
    check "$cmd --help" quiet "$SEAL" "$cmd" --help
done

echo "cli: $fails failed"
exit $((fails > 0))
