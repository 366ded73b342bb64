#!/usr/bin/env bash
# test/kill_resume.sh: `seal fewshot` killed with SIGKILL at random moments and
# resumed each time ends with the same run directory as an uninterrupted run:
# no torn, lost or duplicated lines. Uses the demo's quick base model and real
# ARC tasks from ../shared/data (skipped when that is absent).
set -u
SEAL=${SEAL:-./seal}
SHARED_ARC=${SEAL_SHARED_DATA:-$([ -d data/arc/training ] && echo data || echo ../shared/data)}/arc
KILLS=${KILLS:-20}
if [ ! -d "$SHARED_ARC/training" ]; then echo "SKIP: ARC tasks in neither data/ nor ../shared/data (data/fetch.sh fetches them) (kill_resume)"; exit 0; fi
tmp=$(mktemp -d); [ -n "${KEEP:-}" ] && echo "keeping $tmp"
trap '[ -n "${KEEP:-}" ] || rm -rf "$tmp"' EXIT
ARC=$tmp/arc   # a copy of the three tasks: the last check edits one
mkdir -p "$ARC/training" "$ARC/evaluation"
cp "$SHARED_ARC"/training/{6150a2bd,67e8384a}.json "$ARC/training/" && cp "$SHARED_ARC/evaluation/68b67ca3.json" "$ARC/evaluation/" || exit 1
"$SEAL" demo --quick --seed 2 --cache "$tmp/cache" --out "$tmp/demo" >/dev/null 2>&1 || { echo "FAIL building the quick base"; exit 1; }
base=$(ls -d "$tmp"/cache/base-*)
oracle='{"data_generation": {"use_basic_augmentations": false, "use_size_augmentations": false, "use_chain_augmentations": false, "use_repeat_augmentations": false}, "training": {"strategy": "train_using_output_tokens", "learning_rate": 0.001, "num_train_epochs": 1}}'
fewshot() {   # fewshot OUT [--resume]; exec, so that a background job's pid is seal's own
    exec "$SEAL" fewshot --model "$base" --train-dir "$ARC/training" --eval-dir "$ARC/evaluation" \
        --train-ids 6150a2bd,67e8384a --eval-ids 68b67ca3 --out "$1" --samples 4 --eval-samples 3 --rounds 2 \
        --lora-r 4 --lora-alpha 8 --max-views 2 --max-answer-tokens 24 --max-edit-tokens 60 --m-rank 2 --m-epochs 1 --attempts 3 \
        --oracle "$oracle" --seed 7 "${@:2}" >/dev/null 2>"${ERRLOG:-/dev/null}"
}
stable() { LC_ALL=C sed -E 's/"seconds_[a-z]+":[^,}]*[,]?//g' "$1"; }   # timings differ run to run

(fewshot "$tmp/A") || { echo "FAIL: the uninterrupted run failed"; exit 1; }
killed=0
for i in $(seq "$KILLS"); do
    if [ -f "$tmp/B/run.json" ]; then (fewshot "$tmp/B" --resume) & else (fewshot "$tmp/B") & fi
    pid=$!
    sleep "$(printf '0.%02d' $((RANDOM % 12 + 1)))"   # 0.01 to 0.12 s: the whole run takes about two seconds
    if kill -9 "$pid" 2>/dev/null; then killed=$((killed + 1)); fi
    wait "$pid" 2>/dev/null
done
[ -f "$tmp/B/run.json" ] && resume=--resume || resume=
(fewshot "$tmp/B" $resume) || { echo "FAIL: the final resume failed"; exit 1; }
fails=0
if [ "$killed" -lt 5 ]; then echo "FAIL only $killed of $KILLS runs were killed before finishing"; fails=1; fi
if diff <(stable "$tmp/A/edits.jsonl") <(stable "$tmp/B/edits.jsonl") >/dev/null; then echo "ok   edits.jsonl identical after $killed kills"
else echo "FAIL edits.jsonl differs after $killed kills"; fails=1; fi
for f in current report.md rounds/1/metrics.json rounds/2/metrics.json; do
    if cmp -s "$tmp/A/$f" "$tmp/B/$f"; then echo "ok   $f identical"; else echo "FAIL $f differs"; fails=1; fi
done
n=$(wc -l <"$tmp/B/edits.jsonl")
if python3 - "$tmp/B/edits.jsonl" <<'PY' 2>/dev/null || [ $? = 127 ]; then echo "ok   every line of $n is JSON (UTF-8)"; else echo "FAIL a line is not JSON"; fails=1; fi
import json, sys
for line in open(sys.argv[1], encoding="utf-8"): json.loads(line)
PY
# teacher-student: a second model proposes the self-edits; both are recorded
if (fewshot "$tmp/T" --teacher "$base") && grep -q '"teacher"' "$tmp/T/run.json"; then echo "ok   --teacher run recorded"
else echo "FAIL --teacher"; fails=1; fi
# one writer: a second process on a run in progress is refused at once, naming the first
(fewshot "$tmp/C") & pid=$!
for i in $(seq 100); do [ -f "$tmp/C/run.json" ] && break; sleep 0.05; done
(ERRLOG=$tmp/err fewshot "$tmp/C" --resume); rc=$?
kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
if [ "$rc" = 1 ] && grep -q "in use by another seal process (pid $pid)" "$tmp/err"; then echo "ok   a second writer is refused"
else echo "FAIL a second writer: exit $rc: $(cat "$tmp/err")"; fails=1; fi
# resume over a changed task file: refused, naming it; accepted with the flag, and logged
sed -i 's/\[\[/[ [/' "$ARC/evaluation/68b67ca3.json"
(ERRLOG=$tmp/err fewshot "$tmp/A" --resume); rc=$?
if [ "$rc" = 1 ] && grep -q "68b67ca3.json changed since the run began" "$tmp/err"; then echo "ok   a changed input stops the resume"
else echo "FAIL a changed input: exit $rc: $(cat "$tmp/err")"; fails=1; fi
if (fewshot "$tmp/A" --resume --accept-changed-inputs) && grep -q '"inputs-changed"' "$tmp/A/events.jsonl"; then echo "ok   --accept-changed-inputs goes on and logs it"
else echo "FAIL --accept-changed-inputs"; fails=1; fi
exit $fails
