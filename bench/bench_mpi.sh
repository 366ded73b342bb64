#!/usr/bin/env bash
# bench/bench_mpi.sh [SEAL_MPI]: how many of SEAL's inner loops per minute K
# MPI ranks get through on this machine's CPU, for each K in RANKS.
#
# The work: `seal fewshot --rounds 0` on the quick demo base with 12 ARC
# evaluation tasks (SEAL's 12 tasks a round). Each task's oracle self-edit is
# one pair of a batch: a fresh LoRA trained on the task's augmented
# demonstrations (24 examples, one epoch), then voting inference over 2 views:
# the work of one self-edit without its sampling. The run's other phases (no adaptation, sampled edits
# that the tiny base writes invalid, the probe) add a few seconds.
#
# Rank 0 records and hands out pairs; ranks 1..K-1 score them (K = 1: rank 0
# alone). Every process computes with THREADS OpenMP threads (default 1), so
# K - 1 scoring ranks share the machine's cores. Prints a Markdown table: K,
# scoring ranks, wall seconds, pairs, pairs per minute, mean compute seconds
# per training pair, speed-up over ./seal alone. The machine may be shared:
# the table says how loaded it was.
#
# Environment: RANKS (default "1 2 4"), THREADS, SEAL (default ./seal),
# SEAL_DATA (default ../shared/data), BENCH_TMP (default /tmp), TASKS (12).
set -euo pipefail
SEAL_MPI=${1:-build/seal-mpi}
SEAL=${SEAL:-./seal}
RANKS=${RANKS:-1 2 4}
TASKS=${TASKS:-12}
export OMP_NUM_THREADS=${THREADS:-1}
arc=${SEAL_DATA:-$(cd "$(dirname "$0")/../.." && pwd)/shared/data}/arc
[ -d "$arc/evaluation" ] || { echo "bench_mpi: no ARC tasks in $arc (set SEAL_DATA)"; exit 1; }
tmp=$(mktemp -d "${BENCH_TMP:-/tmp}/bench-mpi-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
MPIRUN=(mpirun)
if mpirun --version 2>/dev/null | grep -q "Open MPI"; then MPIRUN+=(--allow-run-as-root --oversubscribe --bind-to none -x OMP_NUM_THREADS); fi

"$SEAL" demo --quick --cache "$tmp/cache" --out "$tmp/demo" >/dev/null 2>&1 || { echo "bench_mpi: building the quick demo base failed"; exit 1; }
base=$(ls -d "$tmp"/cache/base-*)
ids=$(ls "$arc/evaluation" | head -n "$TASKS" | sed 's/\.json$//' | paste -sd,)
oracle='{"data_generation": {"use_basic_augmentations": true, "use_size_augmentations": false, "use_chain_augmentations": false, "use_repeat_augmentations": false}, "training": {"strategy": "train_using_output_tokens", "learning_rate": 0.001, "num_train_epochs": 1}}'
fewshot() {   # fewshot OUT COMMAND...
    local out=$1; shift
    "$@" fewshot --model "$base" --train-dir "$arc/training" --eval-dir "$arc/evaluation" --train-ids 007bbfb7 --eval-ids "$ids" \
        --out "$out" --rounds 0 --eval-samples 1 --lora-r 4 --lora-alpha 8 --max-views 2 --max-answer-tokens 40 --max-edit-tokens 60 --max-examples 24 \
        --all-tasks --attempts 3 --oracle "$oracle" --seed 1 >/dev/null 2>"$out.err"
}
# prints: pairs, mean seconds_total of the oracle pairs
tally() { awk '/"final":true/ {n++} /"phase":"oracle"/ {match($0, /"seconds_total":[-0-9.e]+/); s += substr($0, RSTART + 16, RLENGTH - 16); k++}
               END {printf "%d %.2f\n", n, k ? s / k : 0}' "$1/edits.jsonl"; }
measure() {   # measure NAME K COMMAND...: one table row; its run directory is $tmp/run-K (K = 0: ./seal)
    local name=$1 k=$2 dir="$tmp/run-$2"; shift 2
    local t0 t1 pairs per
    t0=$(date +%s.%N)
    fewshot "$dir" "$@" || { cat "$dir.err"; echo "bench_mpi: $name failed"; exit 1; }
    t1=$(date +%s.%N)
    read -r pairs per < <(tally "$dir")
    [ -z "${alone:-}" ] && alone=$(awk "BEGIN {print $t1 - $t0}")
    awk -v name="$name" -v k="$k" -v wall="$(awk "BEGIN {print $t1 - $t0}")" -v pairs="$pairs" -v per="$per" -v alone="$alone" \
        'BEGIN {printf "| %s | %d | %.1f | %d | %.1f | %.2f | %.2f |\n", name, (k > 1 ? k - 1 : 1), wall, pairs, 60 * pairs / wall, per, alone / wall}'
}
echo "bench_mpi: $(getconf _NPROCESSORS_ONLN) cores, $OMP_NUM_THREADS OpenMP thread(s) per process, load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| run | ranks scoring pairs | wall s | pairs | pairs / min | compute s per training pair | speed-up |"
echo "|---|---|---|---|---|---|---|"
measure "./seal" 0 "$SEAL"
for k in $RANKS; do measure "mpirun -n $k" "$k" "${MPIRUN[@]}" -n "$k" "$SEAL_MPI"; done
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
for k in $RANKS; do   # the run directories agree, whatever K
    cmp -s <(sed -E 's/"seconds_[a-z]+":[^,}]*,?//g' "$tmp/run-0/edits.jsonl") <(sed -E 's/"seconds_[a-z]+":[^,}]*,?//g' "$tmp/run-$k/edits.jsonl") ||
        echo "bench_mpi: mpirun -n $k: edits.jsonl differs from ./seal's"
done
