#!/usr/bin/env bash
# test/cli.sh: the command line end to end: `seal demo --quick` twice (the
# same seed gives the same table, with a fresh and with a cached base), the
# run directory it leaves, `seal runs`, `seal knowledge` on the demo's base,
# `seal fewshot` on a tiny ChatML GGUF that the Check binary writes, and exit
# codes and messages on bad input.
set -u
SEAL=${SEAL:-./seal}
TEST=${TEST:-./build/test-blas}   # writes the tiny GGUF (CK_RUN_CASE=tiny_chatml)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
check() {   # check NAME COMMAND...: COMMAND must succeed
    local name=$1; shift
    if "$@"; then echo "ok   $name"; else echo "FAIL $name"; fails=$((fails + 1)); fi
}
quiet() { "$@" >/dev/null 2>&1; }
expect() {   # expect CODE PATTERN NAME COMMAND...: exit code CODE and PATTERN in stderr
    local code=$1 pattern=$2 name=$3; shift 3
    "$@" >"$tmp/out" 2>"$tmp/err"
    local rc=$?
    if [ "$rc" = "$code" ] && grep -q -- "$pattern" "$tmp/err"; then echo "ok   $name"
    else echo "FAIL $name: exit $rc (want $code), stderr: $(head -c 300 "$tmp/err")"; fails=$((fails + 1)); fi
}

# --- seal demo --quick: every phase, a complete run directory, a reproducible table
"$SEAL" demo --quick --seed 3 --cache "$tmp/cache" --out "$tmp/a" --json "$tmp/a.json" >"$tmp/a.out" 2>"$tmp/a.err"
check "demo --quick runs" test $? = 0
check "progress into a file: whole lines, no carriage returns" test "$(tr -cd '\r' <"$tmp/a.err" | wc -c)" = 0
check "progress into a file: a few lines" grep -q "step .* loss" "$tmp/a.err"
for phase in "1/3 world" "2/3 tokenizer" "2/3 pretraining" "3/3 SEAL"; do
    check "demo phase '$phase' ran" grep -q "$phase" "$tmp/a.err"
done
for f in run.json edits.jsonl events.jsonl current rounds/1/metrics.json report.md report.json; do
    check "run directory has $f" test -s "$tmp/a/$f"
done
for row in "no adaptation" "untrained policy" "SEAL, round 1" "oracle"; do
    check "table row '$row'" grep -q "$row" "$tmp/a.out"
done
"$SEAL" demo --quick --seed 3 --cache "$tmp/cache" --out "$tmp/b" >"$tmp/b.out" 2>"$tmp/b.err"
check "second run reuses the cached base" grep -q "cached" "$tmp/b.err"
"$SEAL" demo --quick --seed 3 --cache "$tmp/cache2" --out "$tmp/c" >"$tmp/c.out" 2>"$tmp/c.err"
table() { grep '^|' "$1"; }
check "same seed, same table (cached base)" diff <(table "$tmp/a.out") <(table "$tmp/b.out")
check "same seed, same table (rebuilt base)" diff <(table "$tmp/a.out") <(table "$tmp/c.out")
check "same seed, same edits" diff <(cut -c1-200 "$tmp/a/edits.jsonl" | sed 's/"seconds[^,]*,//g') <(cut -c1-200 "$tmp/b/edits.jsonl" | sed 's/"seconds[^,]*,//g')
check "runs show" quiet "$SEAL" runs show "$tmp/a"
check "runs plot" quiet "$SEAL" runs plot "$tmp/a"
svg_ok() { python3 -c "import xml.dom.minidom,sys; assert xml.dom.minidom.parse(sys.argv[1]).documentElement.tagName == 'svg'" "$1"; }
check "runs plot writes well-formed SVG" svg_ok "$tmp/a/plot.svg"
plot_has_table() { python3 -c "import json,sys; svg = open(sys.argv[2]).read(); fmt = {'in-context only, no adaptation': 'no adaptation %.2f<', 'oracle configuration': 'oracle %.2f<'}
sys.exit(any(fmt.get(r['method'], '>%.2f<') % r['ours'] not in svg for r in json.load(open(sys.argv[1]))['rows']))" "$@"; }
check "runs plot shows the table's numbers" plot_has_table "$tmp/a/report.json" "$tmp/a/plot.svg"
check "runs rollback" quiet "$SEAL" runs rollback "$tmp/a" --to 0
check "rollback recorded" grep -q rollback "$tmp/a/events.jsonl"
expect 1 "round 5 is not complete" "rollback to a missing round" "$SEAL" runs rollback "$tmp/a" --to 5
expect 1 "already holds a run" "a second run into the same directory" "$SEAL" demo --quick --seed 3 --cache "$tmp/cache" --out "$tmp/a"

# --- seal knowledge on a user's own JSON Lines file, with the demo's base model
base=$(ls -d "$tmp/cache"/base-*quick-seed3 2>/dev/null | head -1)
cat >"$tmp/notes.jsonl" <<'JSONL'
{"id": "r21", "title": "Release 2.1", "context": "Release 2.1 adds dark mode and drops Python 2.", "questions": [{"question": "What does release 2.1 add?", "answers": ["dark mode"]}]}
{"id": "r22", "title": "Release 2.2", "context": "Release 2.2 ships on Mondays.", "questions": [{"question": "When does 2.2 ship?", "answers": ["Mondays", "on Mondays"]}]}
{"id": "r23", "context": "Release 2.3 has no FAQ yet.", "questions": []}
JSONL
kn() { "$SEAL" knowledge --model "$base" --train "$tmp/notes.jsonl" --eval "$tmp/notes.jsonl" --n-train 1 --n-eval 2 --rounds 1 --samples 2 \
       --epochs 1 --max-edit-tokens 16 --ttt-runs 1 --max-answer-tokens 4 --cpt-sizes 2 --cpt-epochs 1 --out "$tmp/k" "$@"; }
kn --json "$tmp/k.json" >"$tmp/k.out" 2>"$tmp/k.err"
check "knowledge runs" test $? = 0
for row in "base model, no adaptation" "train on the passage only" "passage + base-model implications" "SEAL, round 1" "continued pretraining, n=2"; do
    check "knowledge table row '$row'" grep -q "$row" "$tmp/k.out"
done
check "knowledge names its grader" grep -q '"grader":.*"em-f1"' "$tmp/k.json"
# every row with its 95% interval over the 2 held-out passages around its mean; the in-context row among them
rows_have_intervals() { python3 -c "import json,sys
rows = json.load(open(sys.argv[1]))['rows']
bad = [r['method'] for r in rows if not (r['ci_low'] <= r['ours'] + 1e-9 and r['ours'] <= r['ci_high'] + 1e-9 and r['passages'] == 2 and r['questions'] >= 2)]
ctx = [r for r in rows if r['method'] == 'in context (passage in the prompt, no training)' and r['n'] == 2]
sys.exit(bool(bad) or len(ctx) != 1)" "$1"; }
check "knowledge rows have intervals, in context among them" rows_have_intervals "$tmp/k.json"
check "knowledge table has the in-context row and its interval" grep -q "^| in context (passage in the prompt, no training) | [0-9.]*% | [0-9.]*–[0-9.]*% |" "$tmp/k.out"
check "knowledge table names the grader in its header" grep -q "^| method | ours (grader: em-f1) | 95% CI |" "$tmp/k.out"
check "knowledge logs the in-context answers" test "$(grep -c '"phase":"in-context"' "$tmp/k/edits.jsonl")" = 2
check "runs show has the report's intervals" eval '"$SEAL" runs show "$tmp/k" | grep -q "^| in context (passage in the prompt, no training) | [0-9.]*% | [0-9.]*–[0-9.]*% | 2 |"'
check "knowledge counts the passage without questions" grep -q "line 3: no question with an answer" "$tmp/k.err"
kn --resume >"$tmp/k2.out" 2>"$tmp/k2.err"
check "knowledge --resume gives the same table" diff <(table "$tmp/k.out") <(table "$tmp/k2.out")
# --adapters-at-once 2: both inner loops of each training self-edit (--ttt-runs 2)
# and the held-out self-edits train in one group; each loop's losses (up to the
# order of float sums), rewards and answers must be what one at a time gives
same_edits() { python3 -c "import json,sys
def strip(o):
    if isinstance(o, dict): return {k: strip(v) for k, v in o.items() if not k.startswith('seconds') and k not in ('created', 'time')}
    return [strip(x) for x in o] if isinstance(o, list) else o
def same(a, b):
    if isinstance(a, float) or isinstance(b, float): return isinstance(a, (int, float)) and isinstance(b, (int, float)) and abs(a - b) <= 1e-5 * max(1, abs(a))
    if isinstance(a, dict): return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list): return isinstance(b, list) and len(a) == len(b) and all(map(same, a, b))
    return a == b
e = [[strip(json.loads(l)) for l in open(d + '/edits.jsonl')] for d in sys.argv[1:3]]
sys.exit(not (e[0] and same(e[0], e[1])))" "$@"; }
kn --ttt-runs 2 --epochs 3 --cpt-sizes "" --no-in-context --out "$tmp/kg1" >/dev/null 2>&1
kn --ttt-runs 2 --epochs 3 --cpt-sizes "" --no-in-context --out "$tmp/kg2" --adapters-at-once 2 >/dev/null 2>&1
check "knowledge --no-in-context: no in-context row or lines" eval '! grep -q "in.context" "$tmp/kg1/report.json" "$tmp/kg1/edits.jsonl"'
check "knowledge --adapters-at-once 2 runs" test $? = 0
check "knowledge --adapters-at-once 2 in run.json" grep -q '"adapters_at_once":.*2' "$tmp/kg2/run.json"
check "knowledge run.json without --adapters-at-once has none" eval '! grep -q adapters_at_once "$tmp/kg1/run.json"'
check "knowledge --adapters-at-once 2: the losses, rewards and answers of one at a time" same_edits "$tmp/kg1" "$tmp/kg2"
"$SEAL" demo knowledge --quick --seed 3 --cache "$tmp/cache" --out "$tmp/dk" >"$tmp/dk.out" 2>"$tmp/dk.err"
check "demo knowledge --quick runs" test $? = 0
for row in "passage + implications of the untrained policy" "oracle self-edit" "in context"; do
    check "demo knowledge table row '$row'" grep -q "| $row" "$tmp/dk.out"
done
check "demo knowledge writes its passages" test -s "$tmp/dk/eval.jsonl"
check "runs plot of a knowledge run" eval '"$SEAL" runs plot "$tmp/dk" -o "$tmp/dk.svg" >/dev/null && svg_ok "$tmp/dk.svg"'
expect 2 "unknown demo" "an unknown demo" "$SEAL" demo arc2
expect 2 "unknown grader" "knowledge with an unknown grader" kn --grader llm
expect 2 "go together" "knowledge --grader judge without --judge" kn --grader judge
expect 1 "no-such.jsonl: cannot open" "knowledge with a missing file" "$SEAL" knowledge --model "$base" --eval "$tmp/no-such.jsonl" --rounds 0 --out "$tmp/k3"
echo '{"id": "x", "context": "", "questions": []}' >"$tmp/empty.jsonl"
expect 1 "no usable passages" "knowledge with no usable passage" "$SEAL" knowledge --model "$base" --eval "$tmp/empty.jsonl" --rounds 0 --out "$tmp/k4"

# --- seal fewshot on a .gguf: a tiny random ChatML model with its tokenizer in
# the file, as SmolLM2's; prompts in ChatML, answers closed by <|im_end|>
if [ -x "$TEST" ] && SEAL_TINY_GGUF="$tmp/tiny.gguf" CK_RUN_SUITE=gguf CK_RUN_CASE=tiny_chatml "$TEST" >"$tmp/t.out" 2>&1; then
    mkdir -p "$tmp/arc"
    cat >"$tmp/arc/flip.json" <<'JSON'
{"train": [{"input": [[1, 2], [3, 4]], "output": [[2, 1], [4, 3]]}, {"input": [[5, 0], [0, 6]], "output": [[0, 5], [6, 0]]},
           {"input": [[7, 8], [0, 0]], "output": [[8, 7], [0, 0]]}],
 "test": [{"input": [[1, 0], [2, 3]], "output": [[0, 1], [3, 2]]}]}
JSON
    cat >"$tmp/arc/same.json" <<'JSON'
{"train": [{"input": [[1, 2]], "output": [[1, 2]]}, {"input": [[3], [4]], "output": [[3], [4]]}, {"input": [[5, 6], [7, 8]], "output": [[5, 6], [7, 8]]}],
 "test": [{"input": [[9, 1]], "output": [[9, 1]]}]}
JSON
    fs() { "$SEAL" fewshot --model "$tmp/tiny.gguf" --train-dir "$tmp/arc" --eval-dir "$tmp/arc" --train-ids flip --eval-ids same \
           --rounds 1 --samples 2 --eval-samples 1 --lora-r 2 --lora-alpha 4 --max-views 2 --max-answer-tokens 12 --max-edit-tokens 24 \
           --max-examples 4 --m-rank 2 --m-epochs 1 --seed 1 --attempts 3 "$@"; }   # a random model: a small cap on draws
    fs --out "$tmp/f" --json "$tmp/f.json" >"$tmp/f.out" 2>"$tmp/f.err"
    check "fewshot on a .gguf runs" test $? = 0
    check "fewshot reads the chat format from the .gguf" grep -q "chatml chat format" "$tmp/f.err"
    check "fewshot records the chat format" grep -q '"chat_format":.*"chatml"' "$tmp/f/run.json"
    for row in "no adaptation" "untrained policy" "SEAL, round 1" "oracle"; do
        check "fewshot table row '$row'" grep -q "$row" "$tmp/f.out"
    done
    check "fewshot trains the oracle's TTT data" grep -q '"phase":"oracle".*"trained":true' "$tmp/f/edits.jsonl"
    fs --out "$tmp/f" --resume >"$tmp/f2.out" 2>"$tmp/f2.err"
    check "fewshot --resume on a .gguf gives the same table" diff <(table "$tmp/f.out") <(table "$tmp/f2.out")
    fs --out "$tmp/f3" --chat-format smollm2 --rounds 0 >"$tmp/f3.out" 2>"$tmp/f3.err"
    check "fewshot --chat-format smollm2" grep -q '"chat_format":.*"smollm2"' "$tmp/f3/run.json"
    expect 1 "no <|eot_id|> token" "fewshot --chat-format llama3 on a ChatML tokenizer" fs --out "$tmp/f4" --chat-format llama3
    expect 1 "not a chat format" "fewshot with an unknown chat format" fs --out "$tmp/f5" --chat-format alpaca
    check "fewshot without --constrain records none (older run.json files still match)" bash -c "! grep -q constrain '$tmp/f/run.json'"
    fs --out "$tmp/f6" --rounds 0 --max-answer-tokens 200 --constrain answers >"$tmp/f6.out" 2>"$tmp/f6.err"
    check "fewshot --constrain answers records it" grep -q '"constrain":.*"answers"' "$tmp/f6/run.json"
    check "fewshot --constrain answers: a random model's answers all parse" grep -q '"phase":"baseline".*"views":2,"valid_answers":2' "$tmp/f6/edits.jsonl"
else
    echo "FAIL writing the tiny ChatML GGUF with $TEST: $(tail -c 300 "$tmp/t.out" 2>/dev/null)"; fails=$((fails + 1))
fi

# --- bad input: clear messages, exit 1; usage errors exit 2
expect 2 "unknown flag" "unknown flag" "$SEAL" verify --bogus
expect 2 "unknown command" "unknown command" "$SEAL" frobnicate
expect 1 "no-such-dir/expected.safetensors" "missing fixture" "$SEAL" verify "$tmp/no-such-dir"
mkdir -p "$tmp/bad" && echo '{"hidden_size": 8}' >"$tmp/bad/config.json"
expect 1 "missing required key" "config without a key" "$SEAL" generate --model "$tmp/bad" --prompt hi
expect 2 "expected a number" "non-numeric flag" "$SEAL" generate --model "$tmp/bad" --prompt hi --temperature warm
for cmd in verify generate tokenize fewshot knowledge demo runs; do
    check "$cmd --help" quiet "$SEAL" "$cmd" --help
done

echo "cli: $fails failed"
exit $((fails > 0))
