#!/bin/bash
# test/cuda_emu.sh (make test-cuda-emu): the CUDA backend (kernels.cu) run on
# the CPU by the emulator of test/cuda_emu.h, against model.c.
#   1. exact build ("bf16" holds a float, so only the order of fp32 sums may
#      differ from model.c): test/gpu_compare with bounds of 1e-4 on small
#      models through every kernel path: tensor-core attention (head_dim 64),
#      plain-loop attention, head_dim 128 with an A100's shared memory (32-row
#      tiles), head_dim 8, with and without CUDA graphs, fibers in both orders
#      (a missing barrier shows as a difference), Qwen2's biases; several
#      adapters trained at once (be_sft_many) against the CPU's sft_many;
#   2. bf16 build: gpu_compare with the bf16 bounds, and `seal verify
#      --backend cuda` on every fixture (the tolerance the GPU states);
#   3. no device: --backend cuda fails with "no CUDA device", auto runs on the CPU;
#   4. the SEAL loop: seal demo --quick, seal demo knowledge --quick, and small
#      seal knowledge and seal fewshot runs with --backend cuda (exact build)
#      give the CPU runs' self-edits, answers, rewards and tables, and so does
#      a fewshot run whose oracle adapters train two at a time on the device
#      (--adapters-at-once 2); SEAL_EMU_BENCH=1 also runs bench_gpu's rows
#      at a tiny size.
set -euo pipefail
cd "$(dirname "$0")/.."
seal=build/seal-emu
cmp=build/gpu_compare-emu
exact=build/gpu_compare-emu-exact
last() { tail -n 1; }

echo "== exact: tensor-core attention, GQA 4/2, untied, llama3 RoPE, batch 2 x 100"
"$exact" --exact --shape small --batch 2 --seq 100 --rank 8 | grep -E "logits|grad q_proj.lora_A|kv prefill \+|PASS|FAIL"
echo "== exact: plain-loop attention, fibers in reverse order"
SEAL_CUDA_ATTN=loops SEAL_EMU_ORDER=reverse "$exact" --exact --shape small --batch 2 --seq 70 --rank 8 | last
echo "== exact: head_dim 128, no GQA, tied, adapters on all projections, an A100's shared memory (32-row tiles), fibers reversed"
SEAL_EMU_SMEM=166912 SEAL_EMU_ORDER=reverse "$exact" --exact --shape small --head-dim 128 --kv-heads 4 --tied --all-targets --batch 1 --seq 90 --rank 4 | last
echo "== exact: head_dim 8 (plain loops), decode graphs off, prompts prefilled 16 rows at a time"
SEAL_CUDA_GRAPHS=0 SEAL_CUDA_PREFILL_ROWS=16 "$exact" --exact --shape small --head-dim 8 --batch 2 --seq 40 --rank 4 | last
echo "== exact: Qwen2 (q/k/v biases), tied, head_dim 64"
"$exact" --exact --shape small --qwen2 --tied --batch 2 --seq 50 --rank 4 | last
echo "== exact: three adapters trained at once on the device (be_sft_many: one pass over their rows a step) against the CPU's sft_many"
"$exact" --exact --shape small --batch 3 --seq 40 --rank 4 --many 3 | grep -E "adapters at once|own number|PASS|FAIL"
echo "== bf16: gpu_compare with the bounds the GPU must meet"
"$cmp" --shape small --batch 2 --seq 100 --rank 8 | last
echo "== bf16: seal verify --backend cuda, every fixture"
"$seal" verify --backend cuda test/fixtures/*/ test/fixtures_hf/*/ > build/emu-verify.txt || { grep -E "^fixture|FAIL" build/emu-verify.txt; exit 1; }
grep -c "^PASS" build/emu-verify.txt | sed 's/$/ fixtures PASS/'
echo "== no device: --backend cuda fails with a message, auto runs on the CPU"
if SEAL_EMU_NO_DEVICE=1 "$seal" verify --backend cuda test/fixtures/tied_lora_kv1 > /dev/null 2> build/emu-nodev.err; then
    echo "FAIL: --backend cuda without a device succeeded"; exit 1
fi
grep "no CUDA device" build/emu-nodev.err
SEAL_EMU_NO_DEVICE=1 "$seal" verify test/fixtures/tied_lora_kv1 | grep -E "gemm:" | sed 's/.*gemm:/auto ran on the CPU, gemm:/'
echo "== the SEAL loop on the backend: seal demo --quick --backend cuda (exact build) against the CPU run"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
OMP_NUM_THREADS=1 ./seal demo --quick --cache "$tmp/cache" --out "$tmp/cpu" > "$tmp/cpu.out" 2>/dev/null
OMP_NUM_THREADS=1 build/seal-emu-exact demo --quick --backend cuda --cache "$tmp/cache" --out "$tmp/cuda" > "$tmp/cuda.out" 2>/dev/null
outcomes() {   # what each self-edit was and earned, and the answers given: no timings, no policy hashes
    python3 -c 'import json, sys
for l in open(sys.argv[1]):
    e = json.loads(l)
    print(*(e.get(k) for k in ("phase", "round", "task", "sample", "attempt", "edit", "valid", "trained", "accepted", "reward")), (e.get("metrics") or {}).get("answers"))' "$1"
}
same() {   # same CPU_RUN CUDA_RUN: the same self-edits, rewards, answers and table, and the backend recorded
    diff <(outcomes "$tmp/$1/edits.jsonl") <(outcomes "$tmp/$2/edits.jsonl") > /dev/null || { echo "FAIL: $2: self-edits, answers or rewards differ from $1's"; exit 1; }
    diff <(grep '^|' "$tmp/$1.out") <(grep '^|' "$tmp/$2.out") || { echo "FAIL: $2: the tables differ"; exit 1; }
    grep -Eq '"backend":[[:space:]]*"cuda"' "$tmp/$2/run.json" || { echo "FAIL: $2: run.json does not record the backend"; exit 1; }
}
same cpu cuda
echo "$(wc -l < "$tmp/cuda/edits.jsonl") self-edits, the same rewards and accepted ones, the same table"
echo "== bf16 build: the same demo finishes and reports"
OMP_NUM_THREADS=1 build/seal-emu demo --quick --backend cuda --cache "$tmp/cache" --out "$tmp/bf16" 2>/dev/null | grep -c '^| SEAL, round' | sed 's/$/ SEAL row(s) in the bf16 table/'
echo "== seal knowledge, seal demo knowledge --quick and seal fewshot: --backend cuda (exact build) against the CPU runs"
base=$(ls -d "$tmp"/cache/base-* | head -1)
cat > "$tmp/notes.jsonl" <<'JSONL'
{"id": "r21", "title": "Release 2.1", "context": "Release 2.1 adds dark mode and drops Python 2.", "questions": [{"question": "What does release 2.1 add?", "answers": ["dark mode"]}]}
{"id": "r22", "title": "Release 2.2", "context": "Release 2.2 ships on Mondays.", "questions": [{"question": "When does 2.2 ship?", "answers": ["Mondays", "on Mondays"]}]}
JSONL
kn() { OMP_NUM_THREADS=1 "$1" knowledge --model "$base" --train "$tmp/notes.jsonl" --eval "$tmp/notes.jsonl" --n-train 1 --n-eval 2 --rounds 1 --samples 2 \
       --epochs 1 --max-edit-tokens 16 --ttt-runs 1 --max-answer-tokens 4 --cpt-sizes 2 --cpt-epochs 1 --out "$tmp/$2" "${@:3}" > "$tmp/$2.out" 2>/dev/null; }
kn ./seal kcpu && kn build/seal-emu-exact kcuda --backend cuda && same kcpu kcuda
echo "seal knowledge: $(wc -l < "$tmp/kcuda/edits.jsonl") self-edits and answers, the same table"
kn build/seal-emu-exact kcuda2 --backend cuda --adapters-at-once 2 && same kcpu kcuda2
echo "seal knowledge --adapters-at-once 2 (two self-edits' adapters at once on the device): the same"
OMP_NUM_THREADS=1 ./seal demo knowledge --quick --cache "$tmp/cache" --out "$tmp/dkcpu" > "$tmp/dkcpu.out" 2>/dev/null
OMP_NUM_THREADS=1 build/seal-emu-exact demo knowledge --quick --backend cuda --cache "$tmp/cache" --out "$tmp/dkcuda" > "$tmp/dkcuda.out" 2>/dev/null
same dkcpu dkcuda
echo "seal demo knowledge --quick: $(wc -l < "$tmp/dkcuda/edits.jsonl") self-edits, the same table"
ARC=${SEAL_SHARED_DATA:-$([ -d data/arc/training ] && echo data || echo ../shared/data)}/arc
if [ -d "$ARC/training" ]; then
    oracle='{"data_generation": {"use_basic_augmentations": false, "use_size_augmentations": false, "use_chain_augmentations": false, "use_repeat_augmentations": false}, "training": {"strategy": "train_using_output_tokens", "learning_rate": 0.001, "num_train_epochs": 1}}'
    fs() { OMP_NUM_THREADS=1 "$1" fewshot --model "$base" --train-dir "$ARC/training" --eval-dir "$ARC/evaluation" --train-ids 6150a2bd --eval-ids 68b67ca3 \
           --samples 2 --eval-samples 1 --rounds 1 --lora-r 4 --lora-alpha 8 --max-views 2 --max-answer-tokens 24 --max-edit-tokens 40 --m-rank 2 \
           --m-epochs 1 --attempts 1 --oracle "$oracle" --seed 7 --out "$tmp/$2" "${@:3}" > "$tmp/$2.out" 2>/dev/null; }
    fs ./seal fcpu && fs build/seal-emu-exact fcuda --backend cuda && same fcpu fcuda
    echo "seal fewshot: $(wc -l < "$tmp/fcuda/edits.jsonl") self-edits, TTT and votes, the same table"
    # two held-out tasks whose oracle adapters train together on the device (--adapters-at-once 2) against one at a time on the CPU
    fsm() { fs "$@" --eval-ids be03b35f,66e6c45b --rounds 0 --all-tasks; }
    fsm ./seal fmcpu && fsm build/seal-emu-exact fmcuda --backend cuda --adapters-at-once 2 && same fmcpu fmcuda
    grep -q '"adapters_at_once":[[:space:]]*2' "$tmp/fmcuda/run.json" || { echo "FAIL: fmcuda: run.json does not record adapters_at_once"; exit 1; }
    echo "seal fewshot --adapters-at-once 2: $(grep -c '"phase":"oracle".*"trained":true' "$tmp/fmcuda/edits.jsonl") oracle adapters trained together, the same rewards and table"
else
    echo "SKIP seal fewshot: ARC tasks in neither data/ nor ../shared/data (data/fetch.sh fetches them)"
fi
if [ "${SEAL_EMU_BENCH:-0}" = 1 ]; then   # a few minutes more: bench_gpu's rows run at a tiny size (make bench-gpu's code path)
    echo "== bench_gpu (bf16 build) at a tiny size: every row runs"
    OMP_NUM_THREADS=1 build/bench_gpu-emu --shape small --steps 1 --seq 16 --prompt 8 --gen 2 --batches 1 --sample 3 --sample-prompt 12 --many 2 --many-steps 1 --many-seq 16 |
        grep -E "train_tokens_per_s|b1_decode_tokens_per_s|many_(one_at_a_time|at_once)_per_min"
fi
echo "cuda emulation: all passed"
