#!/usr/bin/env bash
# test/valgrind.sh SEAL: `seal demo --quick` under valgrind memcheck must run
# clean: no invalid read or write, no use of uninitialised memory, no leak
# (definite, indirect or possible). The base model is built first without
# valgrind into a scratch cache, so the run under valgrind is the world, the
# cached base model's load and the whole SEAL loop.
# VALGRIND_FULL=1 runs the pretraining under valgrind too (much slower).
set -u
SEAL=${1:-./seal}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if ! command -v valgrind >/dev/null; then echo "SKIP: valgrind is not installed"; exit 0; fi
if [ -z "${VALGRIND_FULL:-}" ]; then
    "$SEAL" demo --quick --seed 4 --cache "$tmp/cache" --out "$tmp/warm" >/dev/null 2>&1 || { echo "FAIL: building the base model"; exit 1; }
fi
# One OpenMP thread: the same code, faster under valgrind (which runs threads one at a time).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
start=$(date +%s)
valgrind --tool=memcheck --error-exitcode=99 --leak-check=full --show-leak-kinds=definite,indirect,possible \
    --errors-for-leak-kinds=definite,indirect,possible --suppressions=test/valgrind.supp --num-callers=30 \
    --log-file="$tmp/valgrind.log" \
    "$SEAL" demo --quick --seed 4 --cache "$tmp/cache" --out "$tmp/run" >"$tmp/out" 2>"$tmp/err"
rc=$?
secs=$(( $(date +%s) - start ))
if [ "$rc" = 0 ] && grep -q "ERROR SUMMARY: 0 errors" "$tmp/valgrind.log"; then
    echo "ok   valgrind: seal demo --quick clean in ${secs}s ($(grep -o 'total heap usage.*' "$tmp/valgrind.log"))"
    exit 0
fi
echo "FAIL valgrind: exit $rc after ${secs}s"
grep -A40 "Invalid\|uninitialised\|definitely lost\|possibly lost\|indirectly lost\|ERROR SUMMARY" "$tmp/valgrind.log" | head -150
tail -5 "$tmp/err"
exit 1
