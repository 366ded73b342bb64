#!/bin/bash
# test/gpu_check.sh (make gpu-check): the CUDA backend on a real GPU, against
# the CPU reference, then its benchmarks. Everything goes to stdout; exit 0
# only when every check passed.
#   1. seal verify --backend cuda on every fixture (bf16 tolerance stated);
#   2. test/gpu_compare: CPU and CUDA logits, loss, LoRA gradients, an AdamW
#      step and KV-cache decoding on a random Llama-3.2-1B-shaped model, then
#      on small models that take the other kernel paths (plain-loop
#      attention, head_dim 128, no CUDA graphs; three adapters trained at
#      once against the CPU's sft_many);
#   3. compute-sanitizer (memcheck, racecheck) on a small model, when the
#      tool is there;
#   4. the SEAL loop on the GPU: seal demo --quick --backend cuda beside the
#      CPU run (its self-edits and rewards compared, bf16 against fp32);
#   5. one SEAL few-shot round on a random Llama-3.2-1B-shaped model at SEAL's
#      settings (2 tasks x 2 self-edits): seconds per phase, peak memory;
#   6. bench/run_gpu.sh: the benchmarks beside Hugging Face transformers + peft,
#      one ARC self-edit evaluation among them (on step 5's model).
# Made to finish in about 8 minutes on an H100; one summary table at the end.
set -uo pipefail
cd "$(dirname "$0")/.."
exec 2>&1
fail=0
summary=""
step() { echo; echo "== $*"; current=$*; }
check() {   # check COMMAND...: run it, and note its result and time under the current step
    local t0=$(date +%s) rc=0
    "$@" || rc=$?
    if [ "$rc" != 0 ]; then echo "FAILED (exit $rc): $*"; fail=1; fi
    summary+="| $current | $([ "$rc" = 0 ] && echo pass || echo "FAIL ($rc)") | $(( $(date +%s) - t0 )) s |"$'\n'
}
start=$(date +%s)

step "device"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "nvidia-smi not available"
./seal verify --help > /dev/null

step "seal verify --backend cuda: every fixture"
check ./seal verify --backend cuda test/fixtures/*/ test/fixtures_hf/*/

step "CPU vs CUDA: random Llama-3.2-1B-shaped model, batch 2 x 200, LoRA r=16"
check build/gpu_compare --shape 1b --batch 2 --seq 200 --rank 16

step "CPU vs CUDA: small models through the other kernel paths"
check build/gpu_compare --shape small --batch 3 --seq 333 --rank 8 --many 3
check env SEAL_CUDA_ATTN=loops build/gpu_compare --shape small --batch 2 --seq 150 --rank 8
check build/gpu_compare --shape small --head-dim 128 --kv-heads 4 --tied --batch 1 --seq 257 --rank 8
check build/gpu_compare --shape small --head-dim 8 --batch 2 --seq 90 --rank 4
check env SEAL_CUDA_GRAPHS=0 build/gpu_compare --shape small --batch 2 --seq 64 --rank 8

# Sanitizers on a tiny model, each at most 90 s (a run cut short by the
# limit is reported, not counted as a failure: the tools slow kernels 10-100x).
if command -v compute-sanitizer > /dev/null; then
    for tool in memcheck racecheck; do
        step "compute-sanitizer --tool $tool, small model"
        rc=0
        timeout 90 compute-sanitizer --tool "$tool" --error-exitcode 9 --print-limit 20 \
            build/gpu_compare --shape small --batch 1 --seq 70 --rank 4 || rc=$?
        case $rc in
            0) echo "$tool: clean" ;;
            124) echo "$tool: stopped after 90 s (not counted)" ;;
            *) echo "FAILED: compute-sanitizer --tool $tool (exit $rc)"; fail=1 ;;
        esac
    done
else
    step "compute-sanitizer not found: skipped"
fi

step "the SEAL loop on CUDA: seal demo --quick --backend cuda beside --backend cpu"
tmp=$(mktemp -d)
check ./seal demo --quick --backend cpu --cache "$tmp/cache" --out "$tmp/cpu" > "$tmp/cpu.out"
check ./seal demo --quick --backend cuda --cache "$tmp/cache" --out "$tmp/cuda" > "$tmp/cuda.out"
grep '^|' "$tmp/cuda.out"
outcomes() { python3 -c 'import json, sys
for l in open(sys.argv[1]):
    e = json.loads(l); print(e["phase"], e["round"], e["task"], e.get("sample"), e.get("valid"), e.get("trained"), e.get("reward"))' "$1"; }
echo "self-edits with the CPU run's outcome: $(diff <(outcomes "$tmp/cpu/edits.jsonl") <(outcomes "$tmp/cuda/edits.jsonl") | grep -c '^>') differ of $(wc -l < "$tmp/cuda/edits.jsonl") (bf16 against fp32)"
./seal runs show "$tmp/cuda" | head -20
rm -rf "$tmp"

# SEAL's few-shot settings on Llama-3.2-1B's shape with random weights: what
# a round costs in time and memory (a random model scores nothing). Its
# self-edits are grammar-constrained (--constrain edits) so that they parse
# and train (up to 1024 tokens: a random model spends many on whitespace the
# grammar allows), and --threshold 0 accepts them so that the M-step runs; 4
# minutes at most, then the phases logged so far are shown.
DATA=$([ -f data/llama3/config.json ] && echo data || echo ../shared/data)
if [ -f "$DATA/llama3/config.json" ] && [ -f "$DATA/llama3/tokenizer.json" ] && [ -d "$DATA/arc/training" ]; then
    step "one SEAL few-shot round, random Llama-3.2-1B-shaped model, SEAL's settings, 2 tasks x 2 self-edits"
    tmp=$(mktemp -d)
    check build/make_model --config "$DATA/llama3/config.json" --tokenizer "$DATA/llama3/tokenizer.json" --out "$tmp/m1b"
    check timeout 240 ./seal fewshot --backend cuda --model "$tmp/m1b" --chat-format llama3 --constrain edits --max-edit-tokens 1024 \
        --train-dir "$DATA/arc/training" --eval-dir "$DATA/arc/evaluation" --train-ids 6150a2bd,67e8384a --eval-ids 68b67ca3 \
        --samples 2 --eval-samples 2 --rounds 1 --threshold 0 --attempts 3 --out "$tmp/f1b"
    ./seal runs show "$tmp/f1b"
    python3 -c 'import json, sys
for l in open(sys.argv[1]):
    e = json.loads(l)
    if e["phase"] == "oracle": print("one ARC self-edit evaluation at SEAL'"'"'s oracle settings (TTT on every augmentation, 2 epochs, then voting): %.1f s (TTT %.1f s, voting %.1f s)" % (e["seconds_total"], e["metrics"].get("seconds_train", 0), e["metrics"].get("seconds_infer", 0)))' "$tmp/f1b/edits.jsonl"
    rm -rf "$tmp/f1b"
    m1b=$tmp   # its model serves bench/run_gpu.sh's ARC row below, then goes
else
    step "SEAL few-shot round on the 1B shape skipped: data/llama3 (config, tokenizer) and data/arc missing (data/fetch.sh llama3-tokenizer arc)"
fi

step "benchmarks (bench/run_gpu.sh; with one ARC self-edit evaluation beside Hugging Face's on the same 1B-shaped model)"
check env DATA="$DATA" ARC_MODEL="${m1b:+$m1b/m1b}" bench/run_gpu.sh build/bench_gpu bench-results-gpu.json
[ -n "${m1b:-}" ] && rm -rf "$m1b"

echo
echo "| step | result | seconds |"
echo "|---|---|---|"
printf '%s' "$summary"
echo "gpu-check: $(( $(date +%s) - start )) s on $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)"
if [ "$fail" = 0 ]; then echo "gpu-check: PASS"; else echo "gpu-check: FAIL"; fi
exit "$fail"
