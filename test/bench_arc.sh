#!/bin/bash
# test/bench_arc.sh (make test-bench-arc): bench/bench_arc.c and its peer,
# bench/peer_hf_arc.py, do the same work. On a tiny random model with
# Llama-3's tokenizer, on the CPU in fp32: one ARC self-edit evaluation of a
# small task (6 examples, 2 epochs: 6 steps at a learning rate high enough
# that the adapter moves) through bench_arc --export, then the peer on what it
# exported. Passes when every step's loss agrees to 1e-5 and every view gets
# the same greedy answer. Skips (exit 0, saying why) without the data or
# without a Python that has torch, transformers and peft (HF_PYTHON).
#   test/bench_arc.sh [BENCH_ARC] [MAKE_MODEL]
set -euo pipefail
cd "$(dirname "$0")/.."
bench=${1:-build/bench_arc} make_model=${2:-build/make_model}
python=${HF_PYTHON:-python3}
DATA=$([ -f data/llama3/config.json ] && echo data || echo ../shared/data)
if [ ! -f "$DATA/llama3/config.json" ] || [ ! -f "$DATA/llama3/tokenizer.json" ] || [ ! -f "$DATA/arc/training/d631b094.json" ]; then
    echo "SKIP: test/bench_arc.sh: data/llama3 and data/arc not found (data/fetch.sh llama3-tokenizer arc, or ../shared/data)"
    exit 0
fi
if ! "$python" -c 'import torch, transformers, peft, safetensors' 2> /dev/null; then
    echo "SKIP: test/bench_arc.sh: $python has no torch, transformers, peft and safetensors (set HF_PYTHON)"
    exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$python" -c 'import json, sys
c = json.load(open(sys.argv[1]))
c.update(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=16)
json.dump(c, open(sys.argv[2], "w"))' "$DATA/llama3/config.json" "$tmp/tiny.json"
"$make_model" --config "$tmp/tiny.json" --tokenizer "$DATA/llama3/tokenizer.json" --out "$tmp/tiny" > /dev/null
edit='{"data_generation": {"use_basic_augmentations": true, "use_size_augmentations": true, "use_chain_augmentations": true, "use_repeat_augmentations": true}, "training": {"strategy": "train_using_output_tokens", "learning_rate": 0.01, "num_train_epochs": 2}}'
"$bench" --model "$tmp/tiny" --task "$DATA/arc/training/d631b094.json" --edit "$edit" --max-examples 6 --max-views 6 --max-answer-tokens 12 \
    --export "$tmp/work" > "$tmp/ours"
OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} "$python" bench/peer_hf_arc.py --model "$tmp/tiny" --work "$tmp/work" --device cpu 2>&1 | grep -v "rope_scaling" > "$tmp/peer"
get() { awk -v k="$2" '$1 == k { print $2 }' "$1"; }
echo "ours: $(get "$tmp/ours" example_tokens) tokens, $(get "$tmp/ours" steps) steps, $(get "$tmp/ours" views) views; ttt $(get "$tmp/ours" ttt_s) s, voting $(get "$tmp/ours" infer_s) s"
echo "peer: ttt $(get "$tmp/peer" ttt_s) s, voting $(get "$tmp/peer" infer_s) s"
fail=0
if ! join <(awk '$1 == "loss" { print $2, $3 }' "$tmp/ours") <(awk '$1 == "loss" { print $2, $3 }' "$tmp/peer") |
    awk -v n="$(get "$tmp/ours" steps)" '{ d = $2 - $3; if (d < 0) d = -d; printf "step %d: loss %s ours, %s peer\n", $1, $2, $3; if (d > 1e-5) bad++; k++ }
        END { if (k != n || k == 0 || bad) { printf "FAIL: %d of %d steps compared, %d differ by more than 1e-5\n", k, n, bad; exit 1 } }'; then
    fail=1
fi
views=$(get "$tmp/ours" views) equal=$(get "$tmp/peer" answers_equal)
echo "greedy answers: $equal of $views views the same ($(get "$tmp/ours" answer_tokens) tokens ours, $(get "$tmp/peer" answer_tokens) peer)"
if [ -z "$views" ] || [ "$views" = 0 ] || [ "$equal" != "$views" ]; then echo "FAIL: the answers differ"; fail=1; fi
if [ "$fail" = 0 ]; then echo "bench_arc: ours and the peer do the same work: PASS"; else cat "$tmp/peer"; exit 1; fi
