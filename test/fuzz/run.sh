#!/usr/bin/env bash
# test/fuzz/run.sh TARGET SECONDS: replays the committed regression inputs of
# TARGET, then fuzzes it for SECONDS on its corpus (build/fuzz-corpus/TARGET,
# seeded by `make fuzz-corpus`) and prints one summary line. A crash leaves
# its input in build/fuzz-crashes/ and fails: fix it, then add the input to
# test/fuzz/regress/TARGET/.
set -u
t=$1 secs=$2
bin=build/fuzz/$t corpus=build/fuzz-corpus/$t regress=test/fuzz/regress/$t
mkdir -p "$corpus" build/fuzz-crashes "$regress"
SEAL_FUZZ_TMP=$(mktemp -d -p /dev/shm 2>/dev/null || mktemp -d)   # the targets' scratch files
export SEAL_FUZZ_TMP
trap 'rm -rf "$SEAL_FUZZ_TMP"' EXIT
log=build/fuzz-crashes/$t.log
opts=(-dict=test/fuzz/json.dict -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 -print_final_stats=1
      -artifact_prefix=build/fuzz-crashes/$t-)
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
n_regress=$(find "$regress" -type f | wc -l)
if [ "$n_regress" -gt 0 ] && ! "$bin" "${opts[@]}" -runs=0 "$regress" >"$log" 2>&1; then
    echo "FAIL fuzz $t: a regression input crashes again (see $log)"; tail -30 "$log"; exit 1
fi
if ! "$bin" "${opts[@]}" -max_total_time="$secs" "$corpus" "$regress" >"$log" 2>&1; then
    echo "FAIL fuzz $t: crash, input saved under build/fuzz-crashes/ (see $log)"; grep -m3 -A12 "ERROR\|invariant\|runtime error" "$log"; exit 1
fi
runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
echo "ok   fuzz $t: $runs executions in ${secs}s, corpus $(find "$corpus" -type f | wc -l) inputs, $n_regress regression inputs replayed"
