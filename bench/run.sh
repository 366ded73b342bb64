#!/bin/bash
# bench/run.sh: the CPU benchmarks and their peer, measured in one run.
#
#   bench/run.sh BENCH_TRAIN [OUT.json]
#
# Runs BENCH_TRAIN (bench/bench_train.c built) for the sgemm rate, the ~25M
# LoRA training step and the Llama-3.2-1B-shaped model, and bench/peer_torch.py
# (PyTorch on the CPU, same config, same threads) beside it; then bench_infer
# (bench/bench_infer.c built, beside BENCH_TRAIN) for the Llama-3 tokenizer
# beside Hugging Face `tokenizers` (bench/peer_tokenizers.py), the memory read
# bandwidth, KV-cache decoding of the 25M (bf16 and fp32 weights) and 1B
# shapes beside plain PyTorch (bench/peer_torch_decode.py), and of
# SmolLM2-135M's Q4_1 GGUF on its own blocks beside llama.cpp
# (bench/peer_llamacpp.py; LLAMA_PYTHON, SMOLLM2_GGUF). Prints a Markdown table (measure, ours, peer,
# ratio, unit) and writes the same rows to OUT.json (default
# bench-results.json) atomically. A peer that cannot run is reported as
# missing. Environment: THREADS (default: all cores), PYTHON (default
# /usr/bin/python3: Debian's python3-torch), SKIP_1B=1 to leave out the 1B
# model, BENCH_TMP (default TMPDIR or /tmp) for its 2.5 GB of weights,
# BENCH_INFER (default: bench_infer beside BENCH_TRAIN), SEAL_DATA (default
# ../shared/data beside the repository) for the tokenizer and its texts,
# TOK_PYTHON (a python with `tokenizers`; default: PYTHON if it has it, else
# bench/.venv, made with `pip install tokenizers` unless BENCH_NO_INSTALL=1),
# PEER_1B_TIMEOUT (default 420 s) for the 1B PyTorch decode, SKIP_PEER_1B=1 to
# leave it out.
set -euo pipefail

bin=${1:?usage: bench/run.sh BENCH_TRAIN [OUT.json]}
out=${2:-bench-results.json}
here=$(cd "$(dirname "$0")" && pwd)
infer=${BENCH_INFER:-$(dirname "$bin")/bench_infer}
data=${SEAL_DATA:-$here/../../shared/data}
threads=${THREADS:-$(nproc)}
python=${PYTHON:-/usr/bin/python3}
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
machine="${cpu:-unknown CPU}, $(nproc) cores"
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT
# shellcheck source=bench/lib.sh
. "$here/lib.sh"

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
run_peer "$log/torch" PyTorch 600 "$python" "$here/peer_torch.py" --threads "$threads"

pdec_timeout=${PEER_1B_TIMEOUT:-420}
for f in tok ptok dec_25m pdec_25m dec_1b pdec_1b; do touch "$log/$f"; done

# Tokenizer encode, one thread: ours, then Hugging Face tokenizers
tok_note=""
if [ ! -f "$data/llama3/tokenizer.json" ] || [ ! -f "$data/squad/squad_val.json" ] || [ ! -d "$data/arc/training" ]; then
    tok_note="skipped: $data (../shared/data) not found"
    echo "== tokenizer $tok_note" >&2
else
    echo "== Llama-3 tokenizer encode, one thread (ours)" >&2
    "$infer" tokenize "$data" "$log/texts" --reps 3 | tee "$log/tok" >&2
    # a python with Hugging Face tokenizers: TOK_PYTHON, PYTHON, bench/.venv, or pip install into bench/.venv
    tok_py=""
    for py in "${TOK_PYTHON:-}" "$python" "$here/.venv/bin/python"; do
        if [ -n "$py" ] && [ -x "$py" ] && "$py" -c 'import tokenizers' 2> /dev/null; then tok_py=$py; break; fi
    done
    why="tokenizers not installed (BENCH_NO_INSTALL=1)"
    if [ -z "$tok_py" ] && [ "${BENCH_NO_INSTALL:-0}" != 1 ]; then
        echo "== installing Hugging Face tokenizers into bench/.venv (pip install tokenizers)" >&2
        if { [ -x "$here/.venv/bin/python" ] || "$python" -m venv "$here/.venv"; } >&2 2> "$log/pip.err" &&
            "$here/.venv/bin/python" -m pip install -q tokenizers >&2 2>> "$log/pip.err" &&
            "$here/.venv/bin/python" -c 'import tokenizers' 2>> "$log/pip.err"; then
            tok_py=$here/.venv/bin/python
        else
            why="pip install tokenizers failed: $(tail -n 1 "$log/pip.err")"
        fi
    fi
    if [ -n "$tok_py" ]; then
        echo "== the same encode in Hugging Face tokenizers ($tok_py), RAYON_NUM_THREADS=1" >&2
        RAYON_NUM_THREADS=1 run_peer "$log/ptok" "HF tokenizers" 300 "$tok_py" "$here/peer_tokenizers.py" \
            "$data/llama3/tokenizer.json" "$log/texts" --reps 3
        for t in squad arc; do
            match=$(get "$log/ptok" "${t}_ids_match")
            if [ "$match" = 1 ]; then echo "token ids identical to HF tokenizers on the $t text ($(get "$log/tok" "${t}_tokens") ids)" >&2
            elif [ "$match" = 0 ]; then echo "WARNING: token ids differ from HF tokenizers on the $t text: $(get "$log/ptok" "${t}_first_diff")" >&2
            fi
        done
    else
        echo "missing ($why)" > "$log/ptok.status"
        echo "peer: $(cat "$log/ptok.status")" >&2
    fi
fi

# The machine's memory read bandwidth: what decoding, which reads every weight
# once a step, is bounded by.
echo "== memory read bandwidth" >&2
"$infer" bandwidth --threads "$threads" | tee "$log/bw" >&2

# KV-cache decode of the 25M shape: ours with bf16 weights (what a Hugging
# Face bf16 checkpoint decodes with) and with fp32, then PyTorch in fp32 (the
# 1B one runs with the 1B model below)
echo "== KV-cache decode, 25M, bf16 weights (ours)" >&2
"$infer" decode 25m --weights bf16 --threads "$threads" --reps 3 | tee "$log/dec_25m" >&2
echo "== KV-cache decode, 25M, fp32 weights (ours)" >&2
"$infer" decode 25m --weights fp32 --threads "$threads" --reps 3 | tee "$log/dec_25m_fp32" >&2
echo "== the same decode in PyTorch" >&2
run_peer "$log/pdec_25m" PyTorch 300 "$python" "$here/peer_torch_decode.py" 25m --threads "$threads" --reps 3

# SmolLM2-135M-Instruct's Q4_1 GGUF (data/fetch.sh smollm2): ours on the
# file's own blocks, exact (fp32 activations, the default) and with 8-bit
# activations (native+q8, what llama.cpp does), then llama.cpp's Python
# binding (LLAMA_PYTHON: a python with llama_cpp; default PYTHON) on the same
# file, batch 1.
gguf=${SMOLLM2_GGUF:-$(ls "$data"/smollm2/*.gguf 2> /dev/null | head -n 1)}
touch "$log/dec_smol" "$log/dec_smolq8" "$log/pdec_smol"
if [ -n "$gguf" ] && [ -f "$gguf" ]; then
    echo "== KV-cache decode, SmolLM2 Q4_1 GGUF, native blocks (ours)" >&2
    "$infer" decode "$gguf" --weights native --threads "$threads" --reps 2 | tee "$log/dec_smol" >&2
    echo "== the same with 8-bit activations (ours, native+q8)" >&2
    "$infer" decode "$gguf" --weights native+q8 --threads "$threads" --reps 2 | tee "$log/dec_smolq8" >&2
    echo "== the same decode in llama.cpp (llama-cpp-python)" >&2
    run_peer "$log/pdec_smol" llama.cpp 300 "${LLAMA_PYTHON:-$python}" "$here/peer_llamacpp.py" "$gguf" --threads "$threads" --reps 2
else
    echo "missing (no SmolLM2 GGUF: data/fetch.sh smollm2, or SMOLLM2_GGUF)" > "$log/pdec_smol.status"
fi

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
        echo "== KV-cache decode, 1B shape, the weights just written (ours)" >&2
        "$infer" decode 1b --dir "$dir" --threads "$threads" --reps 1 | tee "$log/dec_1b" >&2
        rm -rf "$dir"
        if [ "${SKIP_PEER_1B:-0}" = 1 ]; then
            echo "== the 1B decode in PyTorch skipped (SKIP_PEER_1B=1)" >&2
            echo "missing (skipped: SKIP_PEER_1B=1)" > "$log/pdec_1b.status"
        else
            echo "== the same 1B decode in PyTorch (at most ${PEER_1B_TIMEOUT:-420} s)" >&2
            run_peer "$log/pdec_1b" PyTorch "$pdec_timeout" "$python" "$here/peer_torch_decode.py" 1b \
                --threads "$threads" --reps 1
        fi
    fi
fi

# ---------------------------------------------------------------------------
# Rows (row in bench/lib.sh): measure, ours, peer name, peer value, ratio, unit
T=$log/train P=$log/torch
train_peer=$(peer_name "$P" torch_tokens_per_s)
ours_tps=$(get "$T" train_tokens_per_s)
peer_tps=$(get "$P" torch_tokens_per_s)
case $train_peer in missing*) peer_tps="" ;; esac
gf=$(get "$T" sgemm_gflops)
step_gflop=$(get "$T" train_step_gflop)
peer_step=$(get "$P" torch_step_s)
[ -n "$peer_tps" ] || peer_step=""
peer_gflops=$(awk -v f="$step_gflop" -v s="$peer_step" 'BEGIN { if (s != "") printf "%.2f", f / s }')
peer_frac=$(awk -v g="$peer_gflops" -v s="$gf" 'BEGIN { if (g != "") printf "%.3f", g / s }')
ratio_tps=$(div "$ours_tps" "$peer_tps")
row "LoRA training step, 25M Llama, batch 4x256, $threads threads" "$ours_tps" "$train_peer" "$peer_tps" "$ratio_tps" "tokens/s"
row "Step model FLOP rate (${step_gflop} GFLOP per step)" "$(get "$T" train_gflops)" "$train_peer" "$peer_gflops" \
    "$(div "$(get "$T" train_gflops)" "$peer_gflops")" "GFLOP/s"
row "Step FLOP rate / OpenBLAS sgemm rate" "$(get "$T" train_sgemm_fraction)" "$train_peer" "$peer_frac" \
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

# Tokenizer rows. The ratio is always the speed-up (ours faster when above 1):
# ours / peer for rates, peer / ours for times.
K=$log/tok Q=$log/ptok
if [ -n "$tok_note" ]; then
    row "Tokenizer encode: $tok_note" "" "" "" "" "MB/s"
else
    row "Llama-3 tokenizer.json load (ratio: peer s / ours s)" "$(get "$K" load_s)" "$(peer_name "$Q" load_s)" \
        "$(get "$Q" load_s)" "$(div "$(get "$Q" load_s)" "$(get "$K" load_s)")" "s"
    for t in squad arc; do
        case $t in
            squad) what="SQuAD contexts, English" ;;
            arc) what="ARC prompts, numpy grids + chat tokens" ;;
        esac
        mb=$(awk -v b="$(get "$K" "${t}_bytes")" 'BEGIN { printf "%.2f", b / 1e6 }')
        same=""
        case $(get "$Q" "${t}_ids_match") in 1) same=", ids identical" ;; 0) same=", IDS DIFFER" ;; esac
        row "Tokenizer encode, $what ($mb MB, $(get "$K" "${t}_tokens") tokens$same), 1 thread, best of 3" \
            "$(get "$K" "${t}_mb_per_s")" "$(peer_name "$Q" "${t}_mb_per_s")" "$(get "$Q" "${t}_mb_per_s")" \
            "$(div "$(get "$K" "${t}_mb_per_s")" "$(get "$Q" "${t}_mb_per_s")")" "MB/s"
    done
fi

# Decode rows, each with the weight bandwidth it reaches (bytes of weights a
# step x steps a second) beside the machine's
bw=$(get "$log/bw" read_gb_per_s)
row "Memory read bandwidth, 1 GiB summed, $threads threads (the decode bound)" "$bw" "" "" "" "GB/s"
for sz in 25m 25m_fp32 smol smolq8 1b; do
    O=$log/dec_$sz R=$log/pdec_$sz
    [ "$sz" = 25m_fp32 ] && R=$log/pdec_25m
    [ "$sz" = smolq8 ] && R=$log/pdec_smol
    [ -n "$(get "$O" params)" ] || continue
    case $sz in smol|smolq8) name="SmolLM2-135M Q4_1 GGUF" ;; 25m_fp32) name="25M" ;; *) name=$(echo "$sz" | tr a-z A-Z) ;; esac
    p=$(get "$O" prompt) g=$(get "$O" gen) w=$(get "$O" weights)
    for b in 1 8; do
        k=b${b}_decode_tokens_per_s
        [ -n "$(get "$O" "$k")" ] || continue
        row "KV-cache decode, $name, weights $w, batch $b: $g greedy steps after a $p-token prompt, $threads threads ($(get "$O" "b${b}_decode_weight_gb_per_s") GB/s of weights read, machine ${bw:-?})" \
            "$(get "$O" "$k")" "$(peer_name "$R" "$k")" "$(get "$R" "$k")" "$(div "$(get "$O" "$k")" "$(get "$R" "$k")")" "tokens/s"
    done
    [ "$sz" = 25m_fp32 ] && continue
    for b in 1 8; do
        k=b${b}_prefill_tokens_per_s
        [ -n "$(get "$O" "$k")" ] || continue
        row "KV-cache prefill, $name, batch $b x $p tokens (one batched forward, both)" \
            "$(get "$O" "$k")" "$(peer_name "$R" "$k")" "$(get "$R" "$k")" "$(div "$(get "$O" "$k")" "$(get "$R" "$k")")" "tokens/s"
    done
done
if [ "${SKIP_1B:-0}" = 1 ] || [ -z "$(get "$log/dec_1b" params)" ]; then
    row "KV-cache decode, 1B: skipped (SKIP_1B=1 or not enough memory / disk)" "" "" "" "" "tokens/s"
fi

# ---------------------------------------------------------------------------
# Markdown table on stdout
print_table
echo
share_ours=$(get "$T" train_cpu_share)
share_peer=$(get "$P" torch_cpu_share)
echo "machine: $machine; cores busy before the run: $busy (0 = idle); share of the cores the 25M step" \
    "got: ours ${share_ours:-?}, peer ${share_peer:-?} (1 = all; lower means other processes interfered)"
shares=""
for sz in 25m 1b; do
    for b in 1 8; do
        o=$(get "$log/dec_$sz" "b${b}_decode_cpu_share") p=$(get "$log/pdec_$sz" "b${b}_decode_cpu_share")
        [ -n "$o$p" ] && shares="$shares $sz b$b ${o:-?}/${p:-?};"
    done
done
[ -n "$shares" ] && echo "share of the cores the decode got (ours/peer):${shares%;}"
echo "ratio: the speed-up of ours over the peer (rates: ours / peer; times: peer / ours); tokenizer rows run on one thread;" \
    "PyTorch peers run with OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE} (see bench/peer_common.py)"

# bench-results.json, atomically
write_json "$out" "$machine"
