#!/usr/bin/env bash
# test/mpi.sh SEAL_MPI: the E-step over MPI ranks (ranks.c) leaves the same run
# directory as ./seal alone, whatever the number of ranks:
#   - `seal demo --quick` under mpirun -n 1 and -n 3 (oversubscribed: CI has 2 cores);
#   - `seal demo knowledge --quick` under -n 2;
#   - a knowledge run whose M-steps train (so rank 0 sends each new policy to
#     the workers) under -n 3; then the same run with a worker rank killed
#     (SIGKILL) mid-run, resumed with -n 2, killed again, and finished by ./seal.
# Files are compared whole, less what differs from run to run anyway: timings,
# clock times, and the run's own path in report.md. Every process computes with
# one OpenMP thread: the last bits of a matmul depend on how many threads
# share it, so runs compare exactly only at the same OMP_NUM_THREADS (and 3
# ranks on CI's 2 cores do not fight over them).
set -u
export OMP_NUM_THREADS=1
SEAL_MPI=${1:-build/seal-mpi}
SEAL=${SEAL:-./seal}
MPIRUN=(mpirun)
if mpirun --version 2>/dev/null | grep -q "Open MPI"; then MPIRUN+=(--allow-run-as-root --oversubscribe --bind-to none -x OMP_NUM_THREADS); fi
tmp=$(mktemp -d); [ -n "${KEEP:-}" ] && echo "keeping $tmp"
trap '[ -n "${KEEP:-}" ] || rm -rf "$tmp"' EXIT
fails=0

norm() {   # a file of a run directory without its timings, clock times and path
    LC_ALL=C sed -E -e 's/"[a-z_]*seconds[a-z_]*":[[:space:]]*[-0-9.e+]+,?//g' -e 's/"(time|created)":[[:space:]]*[0-9.e+]+,?//g' \
        -e '/"seconds_per_self_edit"/,/}/d' -e '/^measured in|^inspect with|^seconds per self-edit/d' "$1"
}
same_run() {   # same_run A B WHAT: every file of run A is in B, the same
    local a=$1 b=$2 what=$3 f bad=0
    if [ "$(cd "$a" && find . -type f | sort)" != "$(cd "$b" && find . -type f | sort)" ]; then
        echo "FAIL $what: the run directories hold other files"; fails=1; return
    fi
    for f in $(cd "$a" && find . -type f | sort); do
        case "$f" in
        *.safetensors) cmp -s "$a/$f" "$b/$f" ;;
        *) cmp -s <(norm "$a/$f") <(norm "$b/$f") ;;
        esac || { echo "FAIL $what: $f differs"; bad=1; }
    done
    if [ $bad = 0 ]; then echo "ok   $what: the same run directory ($(wc -l <"$a/edits.jsonl") self-edit lines)"; else fails=1; fi
}
mpi() { "${MPIRUN[@]}" -n "$@"; }

# the few-shot demo
"$SEAL" demo --quick --cache "$tmp/cache" --out "$tmp/demo" >/dev/null 2>"$tmp/err" || { cat "$tmp/err"; echo "FAIL ./seal demo --quick"; exit 1; }
for k in 1 3; do
    if mpi "$k" "$SEAL_MPI" demo --quick --cache "$tmp/cache" --out "$tmp/demo-n$k" >/dev/null 2>"$tmp/err"; then
        same_run "$tmp/demo" "$tmp/demo-n$k" "seal demo --quick, mpirun -n $k"
    else cat "$tmp/err"; echo "FAIL mpirun -n $k seal demo --quick"; fails=1; fi
done

# the knowledge demo (its best-per-task filter scores each task's baseline too)
"$SEAL" demo knowledge --quick --cache "$tmp/cache" --out "$tmp/know" >/dev/null 2>"$tmp/err" || { cat "$tmp/err"; echo "FAIL ./seal demo knowledge --quick"; exit 1; }
if mpi 2 "$SEAL_MPI" demo knowledge --quick --cache "$tmp/cache" --out "$tmp/know-n2" >/dev/null 2>"$tmp/err"; then
    same_run "$tmp/know" "$tmp/know-n2" "seal demo knowledge --quick, mpirun -n 2"
else cat "$tmp/err"; echo "FAIL mpirun -n 2 seal demo knowledge --quick"; fails=1; fi

# a knowledge run that accepts every valid self-edit: each round's M-step trains a new policy
base=$(ls -d "$tmp"/cache/knowledge-*)
knowledge() {   # knowledge OUT COMMAND...: the run into OUT by COMMAND (./seal, or mpirun ...); --resume when $RESUME is set
    local out=$1; shift
    "$@" knowledge --model "$base" --train "$tmp/know/train.jsonl" --eval "$tmp/know/eval.jsonl" --out "$out" \
        --rounds 4 --samples 8 --filter threshold --threshold 0 --cpt-sizes "" --seed 3 --max-edit-tokens 512 --ttt-runs 1 --same-passages --m-from base ${RESUME:+--resume}
}
knowledge "$tmp/k" "$SEAL" >/dev/null 2>&1 || { echo "FAIL ./seal knowledge"; exit 1; }
if [ "$(grep -c '"adapter":[[:space:]]*true' "$tmp"/k/rounds/*/metrics.json | awk -F: '{s += $2} END {print s}')" -lt 2 ]; then
    echo "FAIL the knowledge run trained fewer than 2 policies: nothing to broadcast"; fails=1
fi
if knowledge "$tmp/k-n3" mpi 3 "$SEAL_MPI" >/dev/null 2>"$tmp/err"; then same_run "$tmp/k" "$tmp/k-n3" "seal knowledge, 4 trained policies, mpirun -n 3"
else cat "$tmp/err"; echo "FAIL mpirun -n 3 seal knowledge"; fails=1; fi

descendants() { local p; for p in $(pgrep -P "$1"); do echo "$p"; descendants "$p"; done; }
# kill_worker OUT LINES PID: SIGKILL rank 1 once OUT/edits.jsonl has LINES lines; 0 when it was killed in time.
# It waits for the lines however slow the machine is (PID ending first is a failure).
kill_worker() {
    local out=$1 lines=$2 pid=$3 child
    until [ -f "$out/edits.jsonl" ] && [ "$(wc -l <"$out/edits.jsonl")" -ge "$lines" ]; do
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.01
    done
    for child in $(descendants "$pid"); do
        if tr '\0' '\n' <"/proc/$child/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=1\|PMI_RANK=1"; then kill -9 "$child"; return 0; fi
    done
    return 1
}
whole_lines() { [ ! -s "$1" ] || [ "$(tail -c 1 "$1" | od -An -c | tr -d ' ')" = '\n' ]; }
killed_run() {   # killed_run K LINES: mpirun -n K on $tmp/kk, rank 1 killed at LINES lines
    local k=$1 lines=$2
    knowledge "$tmp/kk" mpi "$k" "$SEAL_MPI" >/dev/null 2>"$tmp/err" &
    local pid=$!
    if ! kill_worker "$tmp/kk" "$lines" "$pid"; then wait "$pid"; echo "FAIL mpirun -n $k: rank 1 could not be killed mid-run"; fails=1; return; fi
    if wait "$pid"; then echo "FAIL mpirun -n $k went on without its rank 1"; fails=1; return; fi
    # mpirun does not wait for the ranks it SIGKILLs: a slow rank 0 may still hold the run's lock
    [ ! -e "$tmp/kk/lock" ] || flock "$tmp/kk/lock" true
    if ! grep -q "resume" "$tmp/err"; then cat "$tmp/err"; echo "FAIL mpirun -n $k: no message on the killed rank"; fails=1; fi
    if whole_lines "$tmp/kk/edits.jsonl"; then echo "ok   mpirun -n $k, rank 1 killed: stopped with a message, $(wc -l <"$tmp/kk/edits.jsonl") whole lines kept"
    else echo "FAIL mpirun -n $k, rank 1 killed: a torn last line"; fails=1; fi
}
killed_run 3 12
RESUME=1 killed_run 2 40
if RESUME=1 knowledge "$tmp/kk" "$SEAL" >/dev/null 2>"$tmp/err"; then same_run "$tmp/k" "$tmp/kk" "killed under -n 3, resumed with -n 2, killed, resumed by ./seal"
else cat "$tmp/err"; echo "FAIL ./seal --resume after mpirun"; fails=1; fi
exit $fails
