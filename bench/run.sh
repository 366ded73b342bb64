#!/bin/bash
# bench/run.sh: the CPU benchmarks and their peer, measured in one run.
#
#   bench/run.sh BENCH_TRAIN [OUT.json]
#
# Runs BENCH_TRAIN (bench/bench_train.c built) for the sgemm rate, the ~25M
# LoRA training step and the Llama-3.2-1B-shaped model, and bench/peer_torch.py
# (PyTorch on the CPU, same config, same threads) beside it. Prints a Markdown
# table (measure, ours, peer, ratio, unit) and writes the same rows to OUT.json
# (default bench-results.json) atomically. A peer that cannot run is reported
# as missing. Environment: THREADS (default: all cores), PYTHON (default
# /usr/bin/python3: Debian's python3-torch), SKIP_1B=1 to leave out the 1B
# model, BENCH_TMP (default TMPDIR or /tmp) for its 2.5 GB of weights.
set -euo pipefail

bin=${1:?usage: bench/run.sh BENCH_TRAIN [OUT.json]}
out=${2:-bench-results.json}
here=$(cd "$(dirname "$0")" && pwd)
threads=${THREADS:-$(nproc)}
python=${PYTHON:-/usr/bin/python3}
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
machine="${cpu:-unknown CPU}, $(nproc) cores"
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT

# "key value" lines -> the value of key in file $1 (empty when absent)
get() { awk -v k="$2" '$1 == k { sub(/^[^ ]+ /, ""); print; exit }' "$1"; }
# a / b with 2 decimals, empty when either is missing
div() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b != "" && b + 0 != 0) printf "%.2f", a / b }'; }

# Busy cores skew every number here; say so rather than hide it.
busy_share() {
    local a b
    read -r _ a1 a2 a3 a4 _ < /proc/stat; a=$((a1 + a2 + a3)); b=$((a + a4))
    sleep 1
    read -r _ c1 c2 c3 c4 _ < /proc/stat
    awk -v u=$((c1 + c2 + c3 - a)) -v t=$((c1 + c2 + c3 + c4 - b)) 'BEGIN { printf "%.2f", t ? u / t : 0 }'
}
busy=$(busy_share)
echo "machine: $machine; threads: $threads; cores busy before the run: $busy" >&2

echo "== sgemm and the 25M LoRA training step (ours)" >&2
"$bin" train --threads "$threads" | tee "$log/train" >&2

echo "== the same step in PyTorch" >&2
peer_name=""
if [ ! -x "$python" ]; then
    peer_name="missing ($python not found)"
elif ! "$python" "$here/peer_torch.py" --threads "$threads" > "$log/torch" 2> "$log/torch.err"; then
    peer_name="missing (peer_torch.py failed: $(tail -n 1 "$log/torch.err"))"
elif [ -n "$(get "$log/torch" torch_missing)" ]; then
    peer_name="missing ($(get "$log/torch" torch_missing))"
else
    peer_name="PyTorch $(get "$log/torch" torch_version)"
fi
[ -f "$log/torch" ] && cat "$log/torch" >&2
echo "peer: $peer_name" >&2

touch "$log/1b"
if [ "${SKIP_1B:-0}" = 1 ]; then
    echo "== 1B model skipped (SKIP_1B=1)" >&2
else
    tmp=${BENCH_TMP:-${TMPDIR:-/tmp}}
    free_gb=$(df -Pk "$tmp" | awk 'NR == 2 { printf "%d", $4 / 1048576 }')
    mem_gb=$(awk '/^MemAvailable:/ { printf "%d", $2 / 1048576 }' /proc/meminfo)
    if [ "$free_gb" -lt 4 ] || [ "$mem_gb" -lt 9 ]; then
        echo "== 1B model skipped: needs 4 GB free in $tmp ($free_gb) and 9 GB of memory ($mem_gb)" >&2
    else
        echo "== Llama-3.2-1B shape: generate, load, LoRA step" >&2
        dir=$(mktemp -d "$tmp/seal-bench-1b.XXXXXX")
        trap 'rm -rf "$log" "$dir"' EXIT
        "$bin" 1b "$dir" --threads "$threads" | tee "$log/1b" >&2
        rm -rf "$dir"
    fi
fi

# ---------------------------------------------------------------------------
# Rows: measure, ours, peer name, peer value, ratio, unit
rows=()
US=$'\x1f'   # field separator: not whitespace, so empty fields survive `read`
row() { rows+=("$1$US$2$US$3$US$4$US$5$US$6"); }
T=$log/train P=$log/torch
ours_tps=$(get "$T" train_tokens_per_s)
peer_tps=$(get "$P" torch_tokens_per_s 2> /dev/null || true)
case $peer_name in missing*) peer_tps="" ;; esac
gf=$(get "$T" sgemm_gflops)
step_gflop=$(get "$T" train_step_gflop)
peer_step=$(get "$P" torch_step_s 2> /dev/null || true)
[ -n "$peer_tps" ] || peer_step=""
peer_gflops=$(awk -v f="$step_gflop" -v s="$peer_step" 'BEGIN { if (s != "") printf "%.2f", f / s }')
peer_frac=$(awk -v g="$peer_gflops" -v s="$gf" 'BEGIN { if (g != "") printf "%.3f", g / s }')
ratio_tps=$(div "$ours_tps" "$peer_tps")
row "LoRA training step, 25M Llama, batch 4x256, $threads threads" "$ours_tps" "$peer_name" "$peer_tps" "$ratio_tps" "tokens/s"
row "Step model FLOP rate (${step_gflop} GFLOP per step)" "$(get "$T" train_gflops)" "$peer_name" "$peer_gflops" \
    "$(div "$(get "$T" train_gflops)" "$peer_gflops")" "GFLOP/s"
row "Step FLOP rate / OpenBLAS sgemm rate" "$(get "$T" train_sgemm_fraction)" "$peer_name" "$peer_frac" \
    "$(div "$(get "$T" train_sgemm_fraction)" "$peer_frac")" "fraction"
row "OpenBLAS sgemm 2048^3, $threads threads (the yardstick)" "$gf" "" "" "" "GFLOP/s"
B=$log/1b
if [ -n "$(get "$B" 1b_params)" ]; then
    row "1B shape: load BF16 safetensors, evicted from page cache" "$(get "$B" 1b_load_cold_s)" "" "" "" "s"
    row "1B shape: load BF16 safetensors, warm page cache" "$(get "$B" 1b_load_warm_s)" "" "" "" "s"
    row "1B shape: peak resident memory (load + LoRA step)" "$(get "$B" 1b_peak_rss_gib)" "" "" "" "GiB"
    row "1B shape: resident memory after the step" "$(get "$B" 1b_rss_after_step_gib)" "" "" "" "GiB"
    row "1B shape: first LoRA step, 1x256 tokens" "$(get "$B" 1b_step1_s)" "" "" "" "s"
    row "1B shape: second LoRA step, 1x256 tokens" "$(get "$B" 1b_step2_s)" "" "" "" "s"
    row "1B shape: second step model FLOP rate" "$(get "$B" 1b_step2_gflops)" "" "" "" "GFLOP/s"
fi

# ---------------------------------------------------------------------------
# Markdown table on stdout
echo
echo "| measure | ours | peer | ratio | unit |"
echo "|---|---|---|---|---|"
for r in "${rows[@]}"; do
    IFS=$US read -r m o pn pv ra u <<< "$r"
    if [ -z "$pn" ]; then peer="—"
    elif [ -n "$pv" ]; then peer="$pv ($pn)"
    else peer="$pn"
    fi
    echo "| $m | ${o:-missing} | $peer | ${ra:-—} | $u |"
done
echo
share_ours=$(get "$T" train_cpu_share)
share_peer=$(get "$P" torch_cpu_share 2> /dev/null || true)
echo "machine: $machine; cores busy before the run: $busy (0 = idle); share of the cores the 25M step" \
    "got: ours ${share_ours:-?}, peer ${share_peer:-?} (1 = all; lower means other processes interfered)"

# ---------------------------------------------------------------------------
# bench-results.json, atomically
json_str() { local s=${1//\\/\\\\}; s=${s//\"/\\\"}; printf '"%s"' "$s"; }
json_num() { if [ -n "$1" ]; then printf '%s' "$1"; else printf 'null'; fi; }
tmpjson="$out.tmp.$$"
{
    echo "["
    n=${#rows[@]} i=0
    for r in "${rows[@]}"; do
        IFS=$US read -r m o pn pv ra u <<< "$r"
        i=$((i + 1))
        printf '  {"measure": %s, "ours": %s, "peer": %s, "peer_value": %s, "ratio": %s, "unit": %s, "machine": %s}' \
            "$(json_str "$m")" "$(json_num "$o")" "$(if [ -n "$pn" ]; then json_str "$pn"; else printf 'null'; fi)" \
            "$(json_num "$pv")" "$(json_num "$ra")" "$(json_str "$u")" "$(json_str "$machine")"
        [ "$i" -lt "$n" ] && echo "," || echo
    done
    echo "]"
} > "$tmpjson"
mv "$tmpjson" "$out"
echo "wrote $out" >&2
