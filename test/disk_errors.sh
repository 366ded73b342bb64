#!/usr/bin/env bash
# test/disk_errors.sh: a full disk and a read-only run directory give a clear
# error (exit 1, "No space left on device" / "Read-only file system" naming
# the file) and leave the run that was there as it was: byte for byte, and
# still resumable to the same end as an uninterrupted run.
#
# The full disk is a small tmpfs and the read-only directory a read-only bind
# mount, both inside a private mount namespace (unshare -m), so nothing is
# left mounted whatever happens. Without permission to mount (not root, no
# unshare), the read-only case falls back to chmod (which does not bind root)
# and the full-disk case is skipped, saying so. `seal fewshot --resume` is
# checked on real ARC tasks from ../shared/data when they are there;
# `seal runs rollback` and a new `seal demo` always.
set -u
SEAL=${SEAL:-./seal}
SEAL=$(cd "$(dirname "$SEAL")" && pwd)/$(basename "$SEAL")
ARC=$(cd "${SEAL_SHARED_DATA:-$([ -d data/arc/training ] && echo data || echo ../shared/data)}" 2>/dev/null && pwd)/arc

if [ -z "${SEAL_DISK_NS:-}" ] && command -v unshare >/dev/null && unshare -m true 2>/dev/null; then
    exec unshare -m --propagation private env SEAL_DISK_NS=1 bash "$0" "$@"
fi
tmp=$(mktemp -d)
cleanup() {
    for m in "$tmp"/ro "$tmp"/full; do mountpoint -q "$m" 2>/dev/null && umount "$m"; done
    chmod -R u+w "$tmp" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
mkdir -p "$tmp/full" "$tmp/ro"
can_mount=0
if [ -n "${SEAL_DISK_NS:-}" ] && mount -t tmpfs -o size=64k tmpfs "$tmp/full" 2>/dev/null; then umount "$tmp/full"; can_mount=1; fi

fails=0
ok() { echo "ok   $*"; }
fail() { echo "FAIL $*"; fails=$((fails + 1)); }
# expect_fail NAME PATTERN COMMAND...: exit code 1 and PATTERN in stderr
expect_fail() {
    local name=$1 pattern=$2; shift 2
    "$@" >"$tmp/out" 2>"$tmp/err"
    local rc=$?
    if [ "$rc" = 1 ] && grep -q -- "$pattern" "$tmp/err"; then ok "$name: $(grep -m1 -o "seal: .*" "$tmp/err" | cut -c1-150)"
    else fail "$name: exit $rc (want 1 and \"$pattern\"), stderr: $(tail -c 300 "$tmp/err")"; fi
}
same_tree() {   # same_tree NAME A B: identical files, no stray temp files
    if diff -r "$2" "$3" >/dev/null; then ok "$1"; else fail "$1: $(diff -rq "$2" "$3" | head -3)"; fi
}
# kept_tree NAME BEFORE AFTER: a run that failed part way kept what it had:
# every file as it was, except that *.jsonl logs may have grown by whole lines.
kept_tree() {
    local f bad=""
    while IFS= read -r f; do
        case "$f" in
        *.jsonl) { cmp -s -n "$(stat -c %s "$2/$f")" "$2/$f" "$3/$f" && [ -z "$(tail -c 1 "$3/$f")" ]; } || bad="$bad $f" ;;
        *) cmp -s "$2/$f" "$3/$f" || bad="$bad $f" ;;
        esac
    done < <(cd "$2" && find . -type f)
    extra=$(cd "$3" && find . -type f -newer "$2" | grep -v '\.jsonl$' | head -3)
    if [ -z "$bad" ] && [ -z "$extra" ]; then ok "$1 ($(( $(wc -l <"$3/edits.jsonl") - $(wc -l <"$2/edits.jsonl") )) whole lines appended before the disk filled)"
    else fail "$1: changed:$bad; new: $extra"; fi
}
stable() { LC_ALL=C sed -E 's/"seconds_[a-z]+":[^,}]*[,]?//g' "$1"; }   # timings differ run to run
fill() { dd if=/dev/zero of="$1/filler" bs=4k 2>/dev/null; sync; }   # until the disk is full

# --- a finished demo run: rollback and a new run on a full / read-only disk
"$SEAL" demo --quick --seed 2 --cache "$tmp/cache" --out "$tmp/demo" >/dev/null 2>&1 || { echo "FAIL building the quick base"; exit 1; }
base=$(ls -d "$tmp"/cache/base-*)
if [ "$can_mount" = 1 ]; then
    mount -t tmpfs -o size=2m tmpfs "$tmp/full"
    cp -a "$tmp/demo" "$tmp/full/demo"
    fill "$tmp/full"
    expect_fail "rollback on a full disk" "No space left on device" "$SEAL" runs rollback "$tmp/full/demo" --to 0
    same_tree "the run is unchanged after the failed rollback" "$tmp/demo" "$tmp/full/demo"
    expect_fail "a new demo run on a full disk" "No space left on device" \
        "$SEAL" demo --quick --seed 2 --cache "$tmp/cache" --out "$tmp/full/new"
    # what the failed run wrote: no file half written, no torn line
    if [ -f "$tmp/full/new/edits.jsonl" ] && [ -n "$(tail -c 1 "$tmp/full/new/edits.jsonl")" ]; then fail "a torn line in the failed run's edits.jsonl"
    elif ls "$tmp/full/new" 2>/dev/null | grep -q '\.tmp\.'; then fail "a temp file left in the failed run"
    else ok "the failed run left no torn line and no temp file"; fi
    umount "$tmp/full"
    cp -a "$tmp/demo" "$tmp/ro/demo"
    mount --bind "$tmp/ro" "$tmp/ro" && mount -o remount,bind,ro "$tmp/ro"
else
    echo "SKIP full disk: mounting a tmpfs is not permitted here (needs root or unshare)"
    cp -a "$tmp/demo" "$tmp/ro/demo"
    chmod -R a-w "$tmp/ro"
fi
if touch "$tmp/ro/probe" 2>/dev/null; then
    echo "SKIP read-only run directory: root ignores chmod and mounting is not permitted"
    rm -f "$tmp/ro/probe"
else
    expect_fail "rollback in a read-only run directory" "Read-only file system\|Permission denied" "$SEAL" runs rollback "$tmp/ro/demo" --to 0
    same_tree "the read-only run is unchanged" "$tmp/demo" "$tmp/ro/demo"
    expect_fail "a new demo run under a read-only directory" "Read-only file system\|Permission denied" \
        "$SEAL" demo --quick --seed 2 --cache "$tmp/cache" --out "$tmp/ro/new"
fi
mountpoint -q "$tmp/ro" && umount "$tmp/ro"
chmod -R u+w "$tmp/ro"

# --- seal fewshot --resume of an interrupted run, on a full disk, then with room again
if [ ! -d "$ARC/training" ]; then echo "SKIP fewshot --resume: ../shared/data not found"; exit $((fails > 0)); fi
oracle='{"data_generation": {"use_basic_augmentations": false, "use_size_augmentations": false, "use_chain_augmentations": false, "use_repeat_augmentations": false}, "training": {"strategy": "train_using_output_tokens", "learning_rate": 0.001, "num_train_epochs": 1}}'
fewshot() {   # fewshot OUT [--resume]
    "$SEAL" fewshot --model "$base" --train-dir "$ARC/training" --eval-dir "$ARC/evaluation" \
        --train-ids 6150a2bd,67e8384a --eval-ids 68b67ca3 --out "$1" --samples 4 --eval-samples 3 --rounds 2 \
        --lora-r 4 --lora-alpha 8 --max-views 2 --max-answer-tokens 24 --max-edit-tokens 60 --m-rank 2 --m-epochs 1 --attempts 3 \
        --oracle "$oracle" --seed 7 "${@:2}"
}
fewshot "$tmp/A" >/dev/null 2>&1 || { echo "FAIL: the uninterrupted fewshot run failed"; exit 1; }
# An interrupted run: killed once edits.jsonl has 12 lines, its torn line cut.
(exec "$SEAL" fewshot --model "$base" --train-dir "$ARC/training" --eval-dir "$ARC/evaluation" \
    --train-ids 6150a2bd,67e8384a --eval-ids 68b67ca3 --out "$tmp/P" --samples 4 --eval-samples 3 --rounds 2 \
    --lora-r 4 --lora-alpha 8 --max-views 2 --max-answer-tokens 24 --max-edit-tokens 60 --m-rank 2 --m-epochs 1 --attempts 3 \
    --oracle "$oracle" --seed 7 >/dev/null 2>&1) &
pid=$!
for _ in $(seq 600); do
    [ "$(cat "$tmp/P/edits.jsonl" 2>/dev/null | wc -l)" -ge 12 ] && break
    sleep 0.05
done
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
"$SEAL" runs show "$tmp/P" >/dev/null 2>&1   # reading it cuts a torn last line
cp -a "$tmp/P" "$tmp/P.before"
if [ "$can_mount" = 1 ]; then
    mount -t tmpfs -o size=4m tmpfs "$tmp/full"
    cp -a "$tmp/P" "$tmp/full/P"
    fill "$tmp/full"
    expect_fail "fewshot --resume on a full disk" "No space left on device" fewshot "$tmp/full/P" --resume
    kept_tree "the interrupted run is kept after the failed resume" "$tmp/P.before" "$tmp/full/P"
    rm -f "$tmp/full/filler"
    if fewshot "$tmp/full/P" --resume >/dev/null 2>"$tmp/err"; then ok "resumed once there is room again"
    else fail "resume after freeing space: $(tail -c 300 "$tmp/err")"; fi
    if diff <(stable "$tmp/A/edits.jsonl") <(stable "$tmp/full/P/edits.jsonl") >/dev/null; then ok "edits.jsonl equals the uninterrupted run's"
    else fail "edits.jsonl differs from the uninterrupted run's"; fi
    for f in current rounds/1/metrics.json rounds/2/metrics.json; do
        if cmp -s "$tmp/A/$f" "$tmp/full/P/$f"; then ok "$f equals the uninterrupted run's"; else fail "$f differs"; fi
    done
    umount "$tmp/full"
    mount --bind "$tmp/P" "$tmp/P" && mount -o remount,bind,ro "$tmp/P" || fail "read-only bind mount"
    expect_fail "fewshot --resume in a read-only run directory" "Read-only file system" fewshot "$tmp/P" --resume
    umount "$tmp/P"
    same_tree "the read-only run is unchanged after the failed resume" "$tmp/P.before" "$tmp/P"
else
    echo "SKIP fewshot --resume on a full disk: mounting is not permitted here"
fi
echo "disk errors: $fails failed"
exit $((fails > 0))
