#!/usr/bin/env bash
# test/bad_flags.sh: every numeric flag of every subcommand, given a value out
# of its range (or over the model's: a rank over the width, a length over the
# context), and output paths that cannot be written. Each case must end at
# once (timeout 20 s) with exit status 1, a line on stderr that starts with
# "seal: FLAG", and no change to an existing run directory given as --out.
# The model is the tiny ChatML GGUF that test/cli.sh uses (hidden size 64,
# context 2048, vocabulary 265).
set -u
SEAL=${SEAL:-./seal}
TEST=${TEST:-./build/test-blas}   # writes the tiny GGUF (CK_RUN_CASE=tiny_chatml)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0 n=0

if ! SEAL_TINY_GGUF="$tmp/tiny.gguf" CK_RUN_SUITE=gguf CK_RUN_CASE=tiny_chatml "$TEST" >"$tmp/t.out" 2>&1; then
    echo "FAIL writing the tiny ChatML GGUF with $TEST: $(tail -c 300 "$tmp/t.out")"
    exit 1
fi
mkdir -p "$tmp/arc"
cat >"$tmp/arc/flip.json" <<'JSON'
{"train": [{"input": [[1, 2], [3, 4]], "output": [[2, 1], [4, 3]]}, {"input": [[5, 0], [0, 6]], "output": [[0, 5], [6, 0]]}],
 "test": [{"input": [[1, 0], [2, 3]], "output": [[0, 1], [3, 2]]}]}
JSON
cat >"$tmp/notes.jsonl" <<'JSONL'
{"id": "r21", "context": "Release 2.1 adds dark mode.", "questions": [{"question": "What does release 2.1 add?", "answers": ["dark mode"]}]}
JSONL
echo "not a folder" >"$tmp/file.txt"

# The commands, each with flags that work; a case adds one bad flag. The run
# directory $tmp/run is a finished fewshot run: fewshot and knowledge cases resume it.
fs() { "$SEAL" fewshot --model "$tmp/tiny.gguf" --train-dir "$tmp/arc" --eval-dir "$tmp/arc" --rounds 0 --samples 1 --eval-samples 1 \
       --lora-r 2 --max-views 1 --max-answer-tokens 8 --max-edit-tokens 8 --m-rank 2 --attempts 3 --out "$tmp/run" --resume "$@"; }
kn() { "$SEAL" knowledge --model "$tmp/tiny.gguf" --train "$tmp/notes.jsonl" --eval "$tmp/notes.jsonl" --rounds 0 --samples 1 \
       --max-edit-tokens 8 --max-answer-tokens 4 --lora-r 2 --m-rank 2 --cpt-sizes 1 --out "$tmp/run" --resume "$@"; }
gen() { "$SEAL" generate --model "$tmp/tiny.gguf" --prompt hi --max-new 4 "$@"; }
demo() { "$SEAL" demo --quick --cache "$tmp/cache" --out "$tmp/demo" "$@"; }
runs() { "$SEAL" runs rollback "$tmp/run" "$@"; }
export SEAL tmp
export -f fs kn gen demo runs

"$SEAL" fewshot --model "$tmp/tiny.gguf" --train-dir "$tmp/arc" --eval-dir "$tmp/arc" --rounds 0 --samples 1 --eval-samples 1 \
    --lora-r 2 --max-views 1 --max-answer-tokens 8 --max-edit-tokens 8 --m-rank 2 --attempts 3 --out "$tmp/run" >/dev/null 2>"$tmp/setup.err" ||
    { echo "FAIL making the run directory: $(tail -c 300 "$tmp/setup.err")"; exit 1; }
listing() { (cd "$tmp/run" && find . -print0 | sort -z | xargs -0 ls -ld --time-style=+%s.%N | awk '{print $1, $5, $6, $7}'
             find . -type f -print0 | sort -z | xargs -0 md5sum); }
listing >"$tmp/before"

# COMMAND FLAG VALUE: one case a line ($tmp in VALUE is expanded)
while read -r cmd flag value; do
    [ -z "$cmd" ] || [ "${cmd:0:1}" = "#" ] && continue
    value=${value//\$tmp/$tmp}
    n=$((n + 1))
    start=$(date +%s)
    timeout 20 bash -c '"$0" "$@"' "$cmd" "$flag" "$value" >"$tmp/out" 2>"$tmp/err"
    rc=$? secs=$(($(date +%s) - start))
    why=""
    [ "$rc" = 1 ] || why="exit $rc (want 1)"
    grep -q -- "^seal: $flag\b" "$tmp/err" || why="$why; no line 'seal: $flag ...' on stderr"
    listing | cmp -s - "$tmp/before" || { why="$why; the run directory changed"; listing >"$tmp/before"; }
    if [ -z "$why" ]; then echo "ok   $cmd $flag $value (${secs}s): $(grep -m1 -- "^seal: $flag" "$tmp/err" | head -c 120)"
    else echo "FAIL $cmd $flag $value: ${why#; }; stderr: $(tail -c 300 "$tmp/err")"; fails=$((fails + 1)); fi
done <<'CASES'
fs --rounds -1
fs --rounds 1001
fs --samples 0
fs --samples 2147483647
fs --eval-samples 0
fs --eval-samples 100000
fs --keep -1
fs --attempts 0
fs --attempts 100001
fs --m-batch 0
fs --train-entries 0
fs --train-scored 0
fs --eval-entries 0
fs --eval-scored 10000001
fs --temperature -0.5
fs --temperature 1e999
fs --top-k -1
fs --top-k 266
fs --top-p 0
fs --top-p 1.5
fs --max-edit-tokens 0
fs --max-edit-tokens 2048
fs --max-edit-tokens 99999999999
fs --lora-r 0
fs --lora-r 65
fs --lora-alpha 0
fs --lora-alpha -3
fs --batch 0
fs --warmup -1
fs --max-tokens 1
fs --max-tokens 4096
fs --max-examples 0
fs --max-steps 0
fs --max-views -1
fs --max-views 1001
fs --adapters-at-once 0
fs --adapters-at-once 65
fs --max-answer-tokens 0
fs --max-answer-tokens 2048
fs --m-rank 0
fs --m-rank 65
fs --m-alpha 0
fs --m-lr 0
fs --m-lr 2
fs --m-epochs 0
fs --max-retention-drop -0.1
fs --max-retention-drop 1.5
fs --seed 18446744073709551616
fs --seed -1
fs --gpus-per-node -1
fs --gpus-per-node 1025
fs --oracle {}
fs --oracle {"data_generation":{},"training":{}}
fs --constrain json
fs --constrain none
fs --json /nonexistent-dir/report.json
fs --json $tmp
fs --json $tmp/file.txt/report.json
fs --out $tmp/file.txt/run
kn --n-train 0
kn --n-eval 0
kn --n-probe -1
kn --max-context-tokens -1
kn --max-context-tokens 4096
kn --threshold 2
kn --keep -1
kn --attempts 100001
kn --epochs 0
kn --lr 0
kn --lr 1e30
kn --batch 10001
kn --max-doc-tokens 1
kn --max-doc-tokens 999999
kn --max-answer-tokens 0
kn --max-answer-tokens 5000
kn --cpt-sizes 0
kn --cpt-sizes 99999999999
kn --cpt-sizes 1,2,3,4,5,6,7,8,9
kn --cpt-epochs 0
kn --cpt-lr -1
kn --cpt-batch 0
kn --ttt-runs 0
kn --ttt-runs 101
kn --adapters-at-once 0
kn --adapters-at-once 65
kn --cpt-completions -1
kn --stored-k -1
kn --train-stride -1
kn --m-batch 0
kn --m-rank 0
kn --m-rank 100000
kn --lora-r 100000
kn --samples 0
kn --rounds 5000
kn --temperature 101
kn --json $tmp/no/such/report.json
gen --max-new 0
gen --constrain json
gen --constrain edits
gen --arc-prompt grid
gen --repeat 0
gen --repeat 10001
gen --max-new 2048
gen --max-new 2147483648
gen --temperature -1
gen --top-k -1
gen --top-k 999999
gen --top-p 0
gen --top-p 2
gen --seed -5
demo --seed -1
demo --gpus-per-node -1
demo --adapters-at-once 0
demo --adapters-at-once 65
demo --json /nonexistent-dir/report.json
demo --out $tmp/file.txt/demo
demo --cache $tmp/file.txt
runs --to -1
runs --to 1001
CASES

echo "bad flags: $n cases, $fails failed"
[ "$n" -ge 60 ] || { echo "FAIL fewer than 60 cases ran"; fails=$((fails + 1)); }
exit $((fails > 0))
