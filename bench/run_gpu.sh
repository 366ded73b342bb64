#!/bin/bash
# bench/run_gpu.sh: the GPU benchmarks and their peer, measured in one run on
# the same GPU (make bench-gpu).
#
#   bench/run_gpu.sh BENCH_GPU [OUT.json]
#
# Runs BENCH_GPU (bench/bench_gpu.c built) on a Llama-3.2-1B-shaped model with
# random weights: a LoRA training step (r=128 on q,v,gate,up,down, batch
# 2 x 1024) and greedy KV-cache decoding at batch 1 and 64 after 1024-token
# prompts, and K test-time adapters trained at once against one at a time; then bench/peer_hf_gpu.py (Hugging Face transformers + peft, bf16,
# SDPA) on the same shapes. Prints a Markdown table (measure, ours, peer,
# ratio, unit) on stdout and writes the same rows to OUT.json (default
# bench-results-gpu.json) atomically. A peer that cannot run is reported as
# missing. Then one ARC self-edit evaluation (bench/bench_arc.c, beside it in
# BENCH_GPU's folder, with --backend cuda): SEAL's oracle self-edit on task
# ARC_TASK (default 6d0aefbc, the median of SEAL's 12 training tasks by TTT
# tokens: 250 examples, 124,798 tokens an epoch, 2 epochs, 250 steps; then
# its 16 views answered), on ARC_MODEL (a 1B-shaped random
# model folder; made with make_model from DATA/llama3 when not given), and
# bench/peer_hf_arc.py on the work it exported. Environment: PYTHON (default
# python3, the one with torch), PEER_TIMEOUT (default 300 s), STEPS (10), GEN
# (128), PROMPT (1024), DATA (data, else ../shared/data), ARC_MODEL, ARC_TASK.
set -euo pipefail

bin=${1:?usage: bench/run_gpu.sh BENCH_GPU [OUT.json]}
out=${2:-bench-results-gpu.json}
here=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-python3}
steps=${STEPS:-10} gen=${GEN:-128} prompt=${PROMPT:-1024}
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT
# shellcheck source=bench/lib.sh
. "$here/lib.sh"

echo "== ours: bench_gpu (LoRA step, then decode at batch 1 and 64)"
"$bin" --steps "$steps" --gen "$gen" --prompt "$prompt" | tee "$log/ours" || echo "bench_gpu failed" > "$log/ours.failed"
gpu=$(get "$log/ours" gpu)

echo "== peer: Hugging Face transformers + peft (bench/peer_hf_gpu.py)"
run_peer "$log/peer" HF "${PEER_TIMEOUT:-300}" "$python" "$here/peer_hf_gpu.py" --steps "$steps" --gen "$gen" --prompt "$prompt"

O=$log/ours P=$log/peer
# rows (row in bench/lib.sh); rate: ours / peer; time or memory: peer / ours (the ratio is always ours' advantage)

k=train_tokens_per_s
row "LoRA training step, 1B shape, r=128 on q,v,gate,up,down, batch 2x1024" "$(get "$O" $k)" "$(peer_name "$P" $k)" "$(get "$P" $k)" \
    "$(div "$(get "$O" $k)" "$(get "$P" $k)")" "tokens/s"
mfu_peer=$(awk -v t="$(get "$P" train_tokens_per_s)" -v f="$(get "$O" train_step_gflop)" -v pk="$(get "$O" gpu_peak_bf16_tflops)" \
    'BEGIN { if (t != "" && f != "" && pk + 0 > 0) printf "%.3f", t / 2048 * f / 1000 / pk }')
row "LoRA training step: MFU (model FLOPs $(get "$O" train_step_gflop) GFLOP/step / peak $(get "$O" gpu_peak_bf16_tflops) TFLOP/s)" \
    "$(get "$O" train_mfu)" "$(peer_name "$P" train_tokens_per_s)" "$mfu_peer" "$(div "$(get "$O" train_mfu)" "$mfu_peer")" "fraction"
k=train_mem_gib
row "LoRA training step: GPU memory in use (ratio: peer / ours)" "$(get "$O" $k)" "$(peer_name "$P" $k)" "$(get "$P" $k)" \
    "$(div "$(get "$P" $k)" "$(get "$O" $k)")" "GiB"
for b in 1 64; do
    k=b${b}_decode_tokens_per_s
    row "Greedy decode, 1B shape, batch $b, $gen tokens after a $prompt-token prompt" "$(get "$O" $k)" "$(peer_name "$P" $k)" "$(get "$P" $k)" \
        "$(div "$(get "$O" $k)" "$(get "$P" $k)")" "tokens/s"
    [ "$b" = 1 ] && row "Greedy decode, batch 1: share of the GPU's memory bandwidth (weights + KV cache read per token)" \
        "$(get "$O" b1_decode_bandwidth_share)" "" "" "" "fraction"
    k=b${b}_prefill_tokens_per_s
    row "Prefill, 1B shape, batch $b x $prompt tokens" "$(get "$O" $k)" "$(peer_name "$P" $k)" "$(get "$P" $k)" \
        "$(div "$(get "$O" $k)" "$(get "$P" $k)")" "tokens/s"
    k=b${b}_mem_gib
    row "Decode, batch $b: GPU memory in use (ratio: peer / ours)" "$(get "$O" $k)" "$(peer_name "$P" $k)" "$(get "$P" $k)" \
        "$(div "$(get "$P" $k)" "$(get "$O" $k)")" "GiB"
done
k=sample_decode_tokens_per_s
row "A task's self-edits as one batch: 15 x $gen tokens after 2048-token prompts (greedy for sampling)" "$(get "$O" $k)" "$(peer_name "$P" $k)" "$(get "$P" $k)" \
    "$(div "$(get "$O" $k)" "$(get "$P" $k)")" "tokens/s"
row "Several adapters trained at once vs one at a time: self-edit trainings per minute ($(get "$O" many_adapters) adapters r=128, each $(get "$O" many_steps) steps of 1x$(get "$O" many_seq); peer column: ours one at a time)" \
    "$(get "$O" many_at_once_per_min)" "ours, one at a time" "$(get "$O" many_one_at_a_time_per_min)" \
    "$(div "$(get "$O" many_at_once_per_min)" "$(get "$O" many_one_at_a_time_per_min)")" "per minute"
# One ARC self-edit evaluation: ours on CUDA (exporting its work), then the peer on that work
dir=$(dirname "$bin") data=${DATA:-$([ -f data/llama3/config.json ] && echo data || echo ../shared/data)} task=${ARC_TASK:-6d0aefbc}
arc_model=${ARC_MODEL:-}
if [ -z "$arc_model" ] && [ -f "$data/llama3/config.json" ] && [ -f "$data/llama3/tokenizer.json" ]; then
    arc_model=$log/m1b
    "$dir/make_model" --config "$data/llama3/config.json" --tokenizer "$data/llama3/tokenizer.json" --out "$arc_model" || arc_model=
fi
A=$log/arc_ours AP=$log/arc_peer
loss1() { awk '$1 == "loss" && $2 == 1 { print $3 }' "$1"; }
if [ -n "$arc_model" ] && [ -f "$data/arc/training/$task.json" ]; then
    echo "== ours: bench_arc (one ARC self-edit evaluation, task $task)"
    "$dir/bench_arc" --backend cuda --model "$arc_model" --task "$data/arc/training/$task.json" --export "$log/arc" > "$A" || echo "bench_arc failed" > "$log/ours.failed"
    grep -v '^loss ' "$A" || true
    echo "== peer: Hugging Face transformers + peft (bench/peer_hf_arc.py)"
    run_peer "$AP" HF "${PEER_TIMEOUT:-300}" "$python" "$here/peer_hf_arc.py" --model "$arc_model" --work "$log/arc" --device cuda
    rm -rf "$log/m1b" "$log/arc"
    what="task $task, $(get "$A" examples) examples x $(get "$A" epochs) epochs = $(get "$A" steps) steps, $(get "$A" views) views"
else
    echo "bench_arc skipped: no ARC_MODEL and no $data/llama3 to make one, or no $data/arc/training/$task.json" > "$A"
    cat "$A"
    what="skipped: $(cat "$A")"
fi
for k in total_s ttt_s infer_s; do
    case $k in total_s) m="One ARC self-edit evaluation at SEAL's settings, 1B shape ($what): TTT + voting" ;;
               ttt_s) m="ARC self-edit evaluation: test-time training (LoRA r=128, batch 2)" ;;
               infer_s) m="ARC self-edit evaluation: voting inference (greedy answers to every view, in one batch per test input)" ;; esac
    row "$m (ratio: peer / ours)" "$(get "$A" $k)" "$(peer_name "$AP" $k)" "$(get "$AP" $k)" "$(div "$(get "$AP" $k)" "$(get "$A" $k)")" "s"
done

print_table
echo
echo "GPU: ${gpu:-unknown}; decode graphs: batch 1 $(get "$O" b1_graphs), batch 64 $(get "$O" b64_graphs) (1 = replayed from CUDA graphs);" \
    "memory is cudaMemGetInfo's in-use figure on both sides (peer's torch.cuda.max_memory_allocated: training $(get "$P" train_max_allocated_gib) GiB)"
echo "ARC self-edit evaluation: building the TTT data (ours only, the peer is given it; not in the rows): $(get "$A" data_s) s;" \
    "answer tokens generated: ours $(get "$A" answer_tokens), peer $(get "$AP" answer_tokens)" \
    "(a random model's greedy answers run to a stop token or $(get "$A" max_answer_tokens) tokens; bf16 on both sides, so they may differ);" \
    "the peer's answers equal to ours: $(get "$AP" answers_equal) of $(get "$A" views); first step's loss: ours $(loss1 "$A"), peer $(loss1 "$AP"); peak memory: ours $(get "$A" peak_mem_gib) GiB, peer $(get "$AP" peak_mem_gib) GiB (max allocated)"

write_json "$out" "${gpu:-unknown GPU}"
[ ! -f "$log/ours.failed" ]
