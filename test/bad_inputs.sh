#!/usr/bin/env bash
# shellcheck disable=SC2016,SC2317  # python code in single quotes; functions run through eval
# test/bad_inputs.sh: a corpus of broken input files and run directories (issue
# 26 item 8). Each case breaks one thing in a good input (a model folder, a
# GGUF file, a PEFT adapter, a tokenizer.json, ARC tasks, passages, a run
# directory) and runs seal on it. Every case must end with exit status 1 (not 0,
# not 2, not a signal, not a hang past 30 s), print a "seal: " line naming the
# file (or flag) at fault, print no sanitizer report, and, where it starts from
# a copy of a good run directory, leave that directory as it was: the same
# files with the same bytes, no new file or folder (RUN/lock aside).
#
# SEAL (default build/seal-asan: AddressSanitizer + UBSan, `make build/seal-asan`)
# runs the cases; SEAL_GOOD (default ./seal, else SEAL) builds the good run
# directory they start from; TEST (build/test-blas) writes the tiny ChatML
# GGUF. test/bad_inputs.py edits JSON, safetensors and GGUF files in place.
# Cases listed in KNOWN_BAD print "known" instead of failing: bugs in files
# being changed elsewhere, left here so that the fix shows ("fixed?").
# ONLY=PATTERN runs the cases whose name matches; KEEP=1 keeps the work folder.
set -u
SEAL=${SEAL:-build/seal-asan}
SEAL_GOOD=${SEAL_GOOD:-./seal}
TEST=${TEST:-./build/test-blas}
ONLY=${ONLY:-}
abs() { case $1 in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
SEAL=$(abs "$SEAL"); SEAL_GOOD=$(abs "$SEAL_GOOD"); TEST=$(abs "$TEST")
[ -x "$SEAL_GOOD" ] || SEAL_GOOD=$SEAL
ED="python3 $(abs test/bad_inputs.py)"
FX=$(abs test/fixtures)
QTOK=$(abs test/qwen2_tokenizer/tokenizer.json)
if [ ! -x "$SEAL" ]; then echo "FAIL $SEAL is not built (make build/seal-asan)"; exit 1; fi
if ! command -v python3 >/dev/null; then echo "FAIL python3 is needed to write the broken files"; exit 1; fi
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1} UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}

# Known failures (case names): each prints "known" until fixed, then "fixed?".
KNOWN_BAD=" ${KNOWN_BAD:-} "

tmp=$(mktemp -d)
[ -n "${KEEP:-}" ] && echo "keeping $tmp"
trap '[ -n "${KEEP:-}" ] || rm -rf "$tmp"' EXIT
W=$tmp/w
mkdir -p "$W"
start=$(date +%s)

# ---------------------------------------------------------------- the good inputs
# A tiny ChatML GGUF (model and tokenizer in one file), two small ARC tasks, and
# a finished one-round fewshot run on them.
G=$tmp/good
mkdir -p "$G/arc"
if ! SEAL_TINY_GGUF="$G/tiny.gguf" CK_RUN_SUITE=gguf CK_RUN_CASE=tiny_chatml "$TEST" >"$tmp/t.out" 2>&1; then
    echo "FAIL writing the tiny ChatML GGUF with $TEST: $(tail -c 300 "$tmp/t.out")"; exit 1
fi
cat >"$G/arc/flip.json" <<'JSON'
{"train": [{"input": [[1, 2], [3, 4]], "output": [[2, 1], [4, 3]]}, {"input": [[5, 0], [0, 6]], "output": [[0, 5], [6, 0]]},
           {"input": [[7, 8], [0, 0]], "output": [[8, 7], [0, 0]]}],
 "test": [{"input": [[1, 0], [2, 3]], "output": [[0, 1], [3, 2]]}]}
JSON
cat >"$G/arc/same.json" <<'JSON'
{"train": [{"input": [[1, 2]], "output": [[1, 2]]}, {"input": [[3], [4]], "output": [[3], [4]]}, {"input": [[5, 6], [7, 8]], "output": [[5, 6], [7, 8]]}],
 "test": [{"input": [[9, 1]], "output": [[9, 1]]}]}
JSON
GG=$G/tiny.gguf
fewshot_with() {   # fewshot_with BINARY FLAGS...: fewshot on the tiny model, a one-round run of seconds (TMO: its limit)
    local bin=$1; shift
    timeout "${TMO:-30}" "$bin" fewshot --model "$GG" \
        --rounds 1 --samples 2 --eval-samples 1 --lora-r 2 --lora-alpha 4 --max-views 2 --max-answer-tokens 12 --max-edit-tokens 24 \
        --max-examples 4 --m-rank 2 --m-epochs 1 --seed 1 --attempts 3 "$@"
}
GOOD_TASKS=(--train-dir "$G/arc" --eval-dir "$G/arc" --train-ids flip --eval-ids same)
if ! TMO=300 fewshot_with "$SEAL_GOOD" "${GOOD_TASKS[@]}" --out "$G/run" >"$tmp/g.out" 2>"$tmp/g.err"; then
    echo "FAIL the good fewshot run: $(tail -c 300 "$tmp/g.err")"; exit 1
fi
# The same run with round 1's policy as an adapter (q_proj, v_proj, rank 2 on
# the tiny model: dim 64, 2 layers, 2 KV heads of 16), for the rollback cases.
cp -a "$G/run" "$G/run_adapter"
python3 - "$G/run_adapter/rounds/1" <<'PY'
import json, struct, sys
d = sys.argv[1]
h, data, off = {}, b"", 0
for layer in range(2):
    for proj, out in (("q_proj", 64), ("v_proj", 32)):
        for ab, shape in (("A", [2, 64]), ("B", [out, 2])):
            n = shape[0] * shape[1]
            h["base_model.model.model.layers.%d.self_attn.%s.lora_%s.weight" % (layer, proj, ab)] = \
                {"dtype": "F32", "shape": shape, "data_offsets": [off, off + 4 * n]}
            data += struct.pack("<%df" % n, *[0.01 * ((i % 7) - 3) for i in range(n)])
            off += 4 * n
t = json.dumps(h).encode()
t += b" " * (-len(t) % 8)
open(d + "/adapter_model.safetensors", "wb").write(struct.pack("<Q", len(t)) + t + data)
json.dump({"peft_type": "LORA", "r": 2, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"], "lora_dropout": 0.0,
           "bias": "none", "task_type": "CAUSAL_LM"}, open(d + "/adapter_config.json", "w"))
m = json.load(open(d + "/metrics.json"))
m["adapter"] = True
json.dump(m, open(d + "/metrics.json", "w"))
PY
cp -a "$G/run_adapter" "$tmp/rb_check"
if ! "$SEAL_GOOD" runs rollback "$tmp/rb_check" --to 1 >/dev/null 2>"$tmp/rb.err"; then
    echo "FAIL the crafted round-1 adapter does not roll back: $(cat "$tmp/rb.err")"; exit 1
fi

# ---------------------------------------------------------------- the runner
# The cases are set up first (their files copied and broken: the edits queued
# for one python run), then run one after another.
fails=0 total=0 known=0 fixed=0
declare -A seen_cat
queue=()
listing() {   # every path under $1 but lock, and every file's hash
    (cd "$1" && find . -not -name lock | LC_ALL=C sort && find . -type f -not -name lock -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum)
}
# c NAME WANT [-r RUN] -- COMMAND...: COMMAND exits 1 with a "seal: " line
# holding WANT (a file's basename, a flag), no sanitizer report; RUN unchanged.
c() {
    case $1 in *$ONLY*) queue+=("$(printf '%q ' "$@")") ;; esac
}
run_case() {
    local name=$1 want=$2 run="" before="" why=""; shift 2
    if [ "$1" = -r ]; then run=$2; shift 2; fi
    [ "$1" = -- ] && shift
    total=$((total + 1)); seen_cat[${name%%/*}]=$(( ${seen_cat[${name%%/*}]:-0} + 1 ))
    [ -n "$run" ] && before=$(listing "$run")
    "$@" >"$tmp/out" 2>"$tmp/err" </dev/null
    local rc=$?
    [ "$rc" = 1 ] || why="exit $rc (want 1); "
    [ "$rc" -ge 124 ] && why="exit $rc: a hang or a signal; "
    grep -q "^seal: .*$(printf '%s' "$want" | sed 's/[][\.*^$]/\\&/g')" "$tmp/err" || why="${why}no \"seal: ...$want\" line; "
    grep -q "runtime error\|AddressSanitizer\|LeakSanitizer" "$tmp/err" && why="${why}sanitizer report; "
    if [ -n "$run" ] && [ "$(listing "$run")" != "$before" ]; then why="${why}the run directory changed; "; fi
    local msg
    msg=$(grep -m1 "^seal: " "$tmp/err" | cut -c1-160)
    msg=${msg//$W\//}
    if [ -z "$why" ]; then
        case $KNOWN_BAD in *" $name "*) echo "fixed? $name (in KNOWN_BAD, but passes): $msg"; fixed=$((fixed + 1)) ;;
        *) echo "ok   $name: ${msg#seal: }" ;; esac
    else
        case $KNOWN_BAD in *" $name "*) echo "known $name: $why$msg"; known=$((known + 1)) ;;
        *) echo "FAIL $name: $why stderr: $(grep -v '^ *#\|^$' "$tmp/err" | head -c 600)"; fails=$((fails + 1)) ;; esac
    fi
}
edits=$tmp/edits
: >"$edits"
edit() { printf '%s\0%s\0%s\0' "$1" "$2" "$3" >>"$edits"; }
S() { timeout 30 "$SEAL" "$@"; }
J() { edit json "$@"; }    # J FILE CODE: edit a JSON file (j)
ST() { edit st "$@"; }     # ST FILE CODE: edit a safetensors file (h, d)
GF() { edit gguf "$@"; }   # GF FILE CODE: edit a GGUF file (g)
dir() { echo "$W/${1//\//_}"; }                                  # dir NAME: the case's own folder
fx() { local d; d=$(dir "$1"); rm -rf "$d"; cp -a "$FX/$2" "$d"; echo "$d"; }   # fx NAME FIXTURE: a copy to break
gen() { S generate --prompt hi --max-new 2 "$@"; }

# ================================================================ model folders
# config.json of a small Llama fixture (tied_full_kv2: 32 wide, 4 heads, 2 KV
# heads, vocab 48), edited by CODE; `seal generate` loads it first.
mcfg() {   # mcfg NAME CODE [WANT]
    local m; m=$(fx "$1" tied_full_kv2)
    J "$m/config.json" "$2"
    c "$1" "${3:-config.json}" -- gen --model "$m"
}
m=$(fx model/config-missing tied_full_kv2); rm "$m/config.json"
c model/config-missing config.json -- gen --model "$m"
m=$(fx model/config-not-json tied_full_kv2); printf '{"hidden_size": 32,' >"$m/config.json"
c model/config-not-json config.json -- gen --model "$m"
m=$(fx model/config-empty tied_full_kv2); : >"$m/config.json"
c model/config-empty config.json -- gen --model "$m"
m=$(fx model/config-binary tied_full_kv2); head -c 300 "$FX/tied_full_kv2/model.safetensors" >"$m/config.json"
c model/config-binary config.json -- gen --model "$m"
mcfg model/config-array 'j = [j]'
mcfg model/config-string 'j = "config"'
for k in hidden_size intermediate_size num_hidden_layers num_attention_heads vocab_size; do
    mcfg "model/config-no-$k" "del j['$k']" "\"$k\""
done
mcfg model/config-null-hidden 'j["hidden_size"] = None' hidden_size
mcfg model/config-string-hidden 'j["hidden_size"] = "32"' hidden_size
mcfg model/config-bool-layers 'j["num_hidden_layers"] = True' num_hidden_layers
mcfg model/config-fraction-layers 'j["num_hidden_layers"] = 2.5' num_hidden_layers
mcfg model/config-negative-hidden 'j["hidden_size"] = -32' hidden_size
mcfg model/config-zero-hidden 'j["hidden_size"] = 0' hidden_size
mcfg model/config-zero-vocab 'j["vocab_size"] = 0' vocab_size
mcfg model/config-zero-heads 'j["num_attention_heads"] = 0' num_attention_heads
mcfg model/config-zero-layers 'j["num_hidden_layers"] = 0' num_hidden_layers
mcfg model/config-huge-hidden 'j["hidden_size"] = 1e12' hidden_size
mcfg model/config-huge-ffn 'j["intermediate_size"] = 16000000' config.json
mcfg model/config-huge-layers 'j["num_hidden_layers"] = 4000' config.json
mcfg model/config-huge-vocab 'j["vocab_size"] = 16000000' config.json
mcfg model/config-kv-not-divisor 'j["num_key_value_heads"] = 3' num_key_value_heads
mcfg model/config-kv-zero 'j["num_key_value_heads"] = 0' num_key_value_heads
mcfg model/config-kv-more-than-heads 'j["num_key_value_heads"] = 8' num_key_value_heads
mcfg model/config-head-dim-odd 'j["head_dim"] = 7' head_dim
mcfg model/config-head-dim-huge 'j["head_dim"] = 100000' head_dim
mcfg model/config-head-dim-zero 'j["head_dim"] = 0' head_dim
mcfg model/config-head-dim-inconsistent 'j["head_dim"] = 16' model.safetensors
mcfg model/config-heads-over-width 'j["hidden_size"] = 2; j["num_attention_heads"] = 4' config.json
mcfg model/config-vocab-mismatch 'j["vocab_size"] = 40' model.safetensors
mcfg model/config-untied 'j["tie_word_embeddings"] = False' model.safetensors
mcfg model/config-tie-string 'j["tie_word_embeddings"] = "yes"' tie_word_embeddings
mcfg model/config-model-type-mistral 'j["model_type"] = "mistral"' model_type
mcfg model/config-model-type-number 'j["model_type"] = 7' model_type
mcfg model/config-act-gelu 'j["hidden_act"] = "gelu"' hidden_act
mcfg model/config-attention-bias 'j["attention_bias"] = True' attention_bias
mcfg model/config-mlp-bias-string 'j["mlp_bias"] = "no"' mlp_bias
mcfg model/config-qwen2-sliding 'j["model_type"] = "qwen2"; j["use_sliding_window"] = True' use_sliding_window
mcfg model/config-rope-yarn 'j["rope_scaling"] = {"rope_type": "yarn", "factor": 4.0}' rope_scaling
mcfg model/config-rope-number 'j["rope_scaling"] = 8' rope_scaling
mcfg model/config-rope-no-type 'j["rope_scaling"] = {"factor": 8.0}' rope_scaling
mcfg model/config-rope-llama3-no-factor 'j["rope_scaling"] = {"rope_type": "llama3", "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 64}' factor
mcfg model/config-rope-llama3-freqs 'j["rope_scaling"] = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 4.0, "high_freq_factor": 1.0, "original_max_position_embeddings": 64}' high_freq_factor
mcfg model/config-eps-zero 'j["rms_norm_eps"] = 0' rms_norm_eps
mcfg model/config-eps-tiny 'j["rms_norm_eps"] = 1e-60' rms_norm_eps
mcfg model/config-theta-negative 'j["rope_theta"] = -1' rope_theta
mcfg model/config-context-zero 'j["max_position_embeddings"] = 0' max_position_embeddings
mcfg model/config-eos-outside-vocab 'j["eos_token_id"] = 4800' eos_token_id
mcfg model/config-eos-string 'j["eos_token_id"] = "2"' eos_token_id
mcfg model/config-eos-too-many 'j["eos_token_id"] = list(range(9))' eos_token_id
mcfg model/config-bos-negative 'j["bos_token_id"] = -1' bos_token_id
mcfg model/config-bos-outside-vocab 'j["bos_token_id"] = 4800' bos_token_id

# model.safetensors, edited by CODE (h: its header, d: its data)
mst() {   # mst NAME CODE [WANT]
    local m; m=$(fx "$1" tied_full_kv2)
    ST "$m/model.safetensors" "$2"
    c "$1" "${3:-model.safetensors}" -- gen --model "$m"
}
m=$(fx model/st-missing tied_full_kv2); rm "$m/model.safetensors"
c model/st-missing "$(basename "$m")" -- gen --model "$m"
m=$(fx model/st-empty tied_full_kv2); : >"$m/model.safetensors"
c model/st-empty model.safetensors -- gen --model "$m"
m=$(fx model/st-seven-bytes tied_full_kv2); truncate -s 7 "$m/model.safetensors"
c model/st-seven-bytes model.safetensors -- gen --model "$m"
m=$(fx model/st-truncated-header tied_full_kv2); truncate -s 200 "$m/model.safetensors"
c model/st-truncated-header model.safetensors -- gen --model "$m"
m=$(fx model/st-truncated-data tied_full_kv2); truncate -s 40000 "$m/model.safetensors"
c model/st-truncated-data model.safetensors -- gen --model "$m"
m=$(fx model/st-directory tied_full_kv2); rm "$m/model.safetensors"; mkdir "$m/model.safetensors"
c model/st-directory model.safetensors -- gen --model "$m"
mst model/st-header-length-huge 'hlen = 1 << 62'
mst model/st-header-length-past-end 'hlen = 10 ** 6'
mst model/st-header-length-zero 'hlen = 0'
mst model/st-header-length-short 'hlen = 100'
mst model/st-header-array 'htext = b"[1, 2, 3]"'
mst model/st-header-garbage 'htext = b"\xff\xfe garbage"'
mst model/st-header-nul 'htext = json.dumps(h).encode()[:50] + b"\0" + json.dumps(h).encode()[51:]'
mst model/st-entry-not-object 'h[first(h, "embed")] = 5'
mst model/st-dtype-unknown 'h[first(h, "embed")]["dtype"] = "F42"'
mst model/st-dtype-missing 'del h[first(h, "embed")]["dtype"]'
mst model/st-dtype-f64 'd = retype(h, d, first(h, "norm"), "F64")'
mst model/st-dtype-i64 'd = retype(h, d, first(h, "q_proj"), "I64")'
mst model/st-dtype-i32 'h[first(h, "norm")]["dtype"] = "I32"'
mst model/st-dtype-u8 'd = retype(h, d, first(h, "embed"), "U8")'
mst model/st-dtype-bool 'e = h[first(h, "norm")]; e["dtype"] = "BOOL"; e["shape"] = [e["shape"][0] * 4]'
mst model/st-f16-nan 'd = retype(h, d, first(h, "k_proj"), "F16"); struct.pack_into("<H", d, h[first(h, "k_proj")]["data_offsets"][0] + 6, 0x7e00)' k_proj
mst model/st-shape-not-list 'h[first(h, "embed")]["shape"] = "48x32"'
mst model/st-shape-negative 'h[first(h, "embed")]["shape"] = [-48, -32]'
mst model/st-shape-nine-dims 'h[first(h, "norm")]["shape"] = [1] * 9'
mst model/st-shape-huge 'h[first(h, "embed")]["shape"] = [1 << 30, 1 << 30]'
mst model/st-shape-transposed 'e = h[first(h, "q_proj")]; e["shape"] = [e["shape"][1] // 2, e["shape"][0] * 2]'
mst model/st-shape-3d 'e = h[first(h, "q_proj")]; e["shape"] = [1] + e["shape"]'
mst model/st-offsets-past-end 'h[first(h, "embed")]["data_offsets"][1] += 10 ** 7'
mst model/st-offsets-reversed 'e = h[first(h, "embed")]; e["data_offsets"] = e["data_offsets"][::-1]'
mst model/st-offsets-negative 'h[first(h, "embed")]["data_offsets"][0] = -4'
mst model/st-offsets-fraction 'h[first(h, "norm")]["data_offsets"][0] += 0.5'
mst model/st-offsets-one 'h[first(h, "embed")]["data_offsets"] = [0]'
mst model/st-offsets-strings 'h[first(h, "embed")]["data_offsets"] = ["0", "6144"]'
mst model/st-offsets-overlap 'a = h[first(h, "input_layernorm")]; b = h[first(h, "q_proj")]; b["data_offsets"] = [a["data_offsets"][0], a["data_offsets"][0] + b["data_offsets"][1] - b["data_offsets"][0]]'
mst model/st-offsets-size 'h[first(h, "embed")]["data_offsets"][1] -= 4'
mst model/st-tensor-missing 'del h[first(h, "layers.1.mlp.down_proj")]' down_proj
mst model/st-tensor-twice 'k = first(h, "norm"); t = json.dumps(h); htext = t[:-1] + ", " + json.dumps(k) + ": " + json.dumps(h[k]) + "}"'
mst model/st-metadata-not-object 'h["__metadata__"] = [1]'
mst model/st-metadata-number 'h["__metadata__"] = {"format": 5}'
mst model/st-nan-weight 'f32(h, d, first(h, "q_proj"), NAN, 7)' q_proj
mst model/st-inf-weight 'f32(h, d, first(h, "embed"), -INF, 100)' embed_tokens
mst model/st-nan-norm 'f32(h, d, first(h, "layers.1.input_layernorm"), NAN)' input_layernorm

# sharded: model.safetensors.index.json and its shards
shard() {   # shard NAME INDEX-JSON [WANT]: the fixture's weights as shard.safetensors, and the index
    local m; m=$(fx "$1" tied_full_kv2)
    mv "$m/model.safetensors" "$m/shard.safetensors"
    printf '%s' "$2" >"$m/model.safetensors.index.json"
    c "$1" "${3:-model.safetensors.index.json}" -- gen --model "$m"
}
shard model/index-missing-shard '{"weight_map": {"model.embed_tokens.weight": "missing-00001.safetensors"}}' missing-00001.safetensors
shard model/index-not-json '{"weight_map": {' model.safetensors.index.json
shard model/index-no-map '{"metadata": {}}'
shard model/index-map-list '{"weight_map": ["shard.safetensors"]}'
shard model/index-shard-number '{"weight_map": {"model.embed_tokens.weight": 1}}'
shard model/index-shard-path '{"weight_map": {"model.embed_tokens.weight": "../tied_full_kv2/model.safetensors"}}'
shard model/index-tensor-unmapped '{"weight_map": {"model.embed_tokens.weight": "shard.safetensors", "model.norm.weight": "other.safetensors"}}' other.safetensors
m=$(fx model/index-shard-truncated tied_full_kv2); mv "$m/model.safetensors" "$m/a.safetensors"; truncate -s 5000 "$m/a.safetensors"
printf '{"weight_map": {"model.embed_tokens.weight": "a.safetensors"}}' >"$m/model.safetensors.index.json"
c model/index-shard-truncated a.safetensors -- gen --model "$m"
# seal verify reads expected.safetensors first
m=$(fx model/verify-no-expected qwen2_full); rm "$m/expected.safetensors"
c model/verify-no-expected expected.safetensors -- S verify "$m"
m=$(fx model/verify-trainable qwen2_full); ST "$m/expected.safetensors" 'h["__metadata__"]["trainable"] = "some"'
c model/verify-trainable expected.safetensors -- S verify "$m"
m=$(fx model/verify-ids-outside-vocab qwen2_full); ST "$m/expected.safetensors" 'struct.pack_into("<i", d, h["input_ids"]["data_offsets"][0], 100000)'
c model/verify-ids-outside-vocab expected.safetensors -- S verify "$m"
m=$(fx model/verify-nan-model qwen2_full); ST "$m/model.safetensors" 'f32(h, d, first(h, "o_proj"), NAN)'
c model/verify-nan-model o_proj -- S verify "$m"

# ================================================================ GGUF files
# The tiny ChatML GGUF (llama, 64 wide, 2 blocks, vocab 265; F32, F16, BF16,
# Q8_0, Q4_0 and Q4_1 tensors), edited by CODE (g: its parsed header and data);
# `seal generate` loads the model, then the tokenizer from the same file.
gq() { local f; f=$(dir "$1").gguf; cp "$GG" "$f"; echo "$f"; }   # gq NAME: a copy to break
gg() {   # gg NAME CODE [WANT]
    local f; f=$(gq "$1")
    GF "$f" "$2"
    c "$1" "${3:-$(basename "$f")}" -- gen --model "$f"
}
f=$(gq gguf/empty); : >"$f"
c gguf/empty "$(basename "$f")" -- gen --model "$f"
f=$(gq gguf/missing); rm "$f"
c gguf/missing "$(basename "$f")" -- gen --model "$f"
f=$(gq gguf/directory); rm "$f"; mkdir "$f"
c gguf/directory "$(basename "$f")" -- gen --model "$f"
f=$(gq gguf/truncated-header); truncate -s 20 "$f"
c gguf/truncated-header "$(basename "$f")" -- gen --model "$f"
f=$(gq gguf/truncated-metadata); truncate -s 300 "$f"
c gguf/truncated-metadata "$(basename "$f")" -- gen --model "$f"
f=$(gq gguf/truncated-tensor-infos); truncate -s 5000 "$f"
c gguf/truncated-tensor-infos "$(basename "$f")" -- gen --model "$f"
f=$(gq gguf/truncated-data); truncate -s $(( $(stat -c %s "$GG") - 3000 )) "$f"
c gguf/truncated-data "$(basename "$f")" -- gen --model "$f"
f=$(gq gguf/safetensors-renamed); cp "$FX/tied_full_kv2/model.safetensors" "$f"
c gguf/safetensors-renamed "$(basename "$f")" -- gen --model "$f"
gg gguf/magic 'magic = b"GGML"'
gg gguf/version-1 'g["version"] = 1'
gg gguf/version-4 'g["version"] = 4'
gg gguf/version-big-endian 'g["version"] = 3 << 24'
gg gguf/tensor-count-absurd 'n_tensors = 1 << 40'
gg gguf/kv-count-absurd 'n_kv = 1 << 40'
gg gguf/kv-count-short 'n_kv = len(g["kvs"]) - 3'
gg gguf/tensor-count-more 'n_tensors = len(g["ts"]) + 1'
gg gguf/key-length-absurd 'g["kvs"][0][0] = "x" * 70000'
gg gguf/pre-nul 'kv(g, "tokenizer.ggml.pre")[2] = b"smollm\0x"' tokenizer.ggml.pre
gg gguf/key-nul 'g["kvs"][1][0] = "general.\0name"'
gg gguf/kv-type-unknown 'kv(g, "llama.block_count")[1] = 99; kv(g, "llama.block_count")[2] = None' ; # written as no value
gg gguf/array-of-arrays 'setkv(g, "general.tags", ARR, [ARR, [[U8, [1]]]])'
gg gguf/array-type-unknown 'setkv(g, "general.tags", ARR, [42, []])'
gg gguf/key-twice 'g["kvs"].append(list(kv(g, "llama.block_count")))'
gg gguf/alignment-three 'setkv(g, "general.alignment", U32, 3)'
gg gguf/alignment-zero 'setkv(g, "general.alignment", U32, 0)'
gg gguf/tensor-dims-five 'g["ts"][1]["dims"] = [64, 1, 1, 1, 1]'
gg gguf/tensor-dims-zero 'g["ts"][1]["dims"] = []'
gg gguf/tensor-dim-absurd 'g["ts"][1]["dims"] = [1 << 41]'
gg gguf/tensor-type-unknown 'g["ts"][1]["type"] = 99'
gg gguf/tensor-type-q5k 'tensor(g, "blk.0.ffn_up.weight")["type"] = 13; tensor(g, "blk.0.ffn_up.weight")["dims"] = [256, 24]' ffn_up
gg gguf/tensor-type-q5-0 'tensor(g, "blk.0.attn_k.weight")["type"] = 6'
gg gguf/tensor-type-i32 'tensor(g, "blk.0.attn_norm.weight")["type"] = 26' attn_norm
gg gguf/tensor-not-whole-blocks 'tensor(g, "blk.0.attn_k.weight")["dims"] = [48, 32]' attn_k
gg gguf/tensor-offset-past-end 'g["ts"][-1]["offset"] = len(g["data"]) + 32'
gg gguf/tensor-offset-misaligned 'g["ts"][1]["offset"] += 4'
gg gguf/tensor-offset-overlap 'g["ts"][2]["offset"] = g["ts"][1]["offset"]'
gg gguf/tensor-name-twice 'g["ts"][2]["name"] = g["ts"][1]["name"]'
gg gguf/tensor-missing 'g["ts"] = [t for t in g["ts"] if t["name"] != "blk.1.ffn_down.weight"]' blk.1.ffn_down.weight
gg gguf/tensor-extra 'x = dict(tensor(g, "blk.0.attn_norm.weight")); x["name"] = "blk.7.attn_norm.weight"; g["ts"].append(x)' blk.7.attn_norm.weight
gg gguf/tensor-wrong-shape 'tensor(g, "blk.0.attn_norm.weight")["dims"] = [32]' attn_norm
gg gguf/embedding-missing 'tensor(g, "token_embd.weight")["name"] = "token_embd.weight.x"' token_embd
gg gguf/nan-f32 'gguf_f32(g, "blk.0.ffn_up.weight", NAN, 5)'
gg gguf/inf-f32 'gguf_f32(g, "blk.1.attn_norm.weight", INF)'
gg gguf/nan-f16 'x = tensor(g, "blk.0.attn_q.weight"); struct.pack_into("<H", g["data"], x["offset"] + 2, 0x7e00)'
gg gguf/arch-missing 'delkv(g, "general.architecture")' general.architecture
gg gguf/arch-gpt2 'setkv(g, "general.architecture", STR, b"gpt2")' general.architecture
gg gguf/arch-number 'setkv(g, "general.architecture", U32, 7)' general.architecture
gg gguf/block-count-missing 'delkv(g, "llama.block_count")' llama.block_count
gg gguf/block-count-zero 'setkv(g, "llama.block_count", U32, 0)' llama.block_count
gg gguf/block-count-huge 'setkv(g, "llama.block_count", U32, 1 << 30)' llama.block_count
gg gguf/block-count-string 'setkv(g, "llama.block_count", STR, b"2")' llama.block_count
gg gguf/embedding-length-mismatch 'setkv(g, "llama.embedding_length", U32, 32)'
gg gguf/head-count-zero 'setkv(g, "llama.attention.head_count", U32, 0)' head_count
gg gguf/head-count-kv-not-divisor 'setkv(g, "llama.attention.head_count_kv", U32, 3)' head_count
gg gguf/rope-dims-partial 'setkv(g, "llama.rope.dimension_count", U32, 8)' llama.rope.dimension_count
gg gguf/rms-eps-zero 'setkv(g, "llama.attention.layer_norm_rms_epsilon", F32, 0.0)' layer_norm_rms_epsilon
gg gguf/rope-base-negative 'setkv(g, "llama.rope.freq_base", F32, -1.0)' llama.rope.freq_base
gg gguf/rope-scaling-yarn 'setkv(g, "llama.rope.scaling.type", STR, b"yarn")' llama.rope.scaling.type
gg gguf/vocab-size-mismatch 'setkv(g, "llama.vocab_size", U32, 300)' llama.vocab_size
gg gguf/bos-outside-vocab 'setkv(g, "tokenizer.ggml.bos_token_id", U32, 5000)' tokenizer.ggml.bos_token_id
gg gguf/eos-outside-vocab 'setkv(g, "tokenizer.ggml.eos_token_id", U32, 265)' tokenizer.ggml.eos_token_id
gg gguf/context-length-zero 'setkv(g, "llama.context_length", U32, 0)' llama.context_length
gg gguf/tokens-missing 'delkv(g, "tokenizer.ggml.tokens")' tokenizer.ggml.tokens
gg gguf/tokens-not-strings 'setkv(g, "tokenizer.ggml.tokens", ARR, [U32, list(range(265))])' tokenizer.ggml.tokens
gg gguf/tokens-short 'kv(g, "tokenizer.ggml.tokens")[2][1].pop()' tokenizer.ggml
gg gguf/token-type-short 'kv(g, "tokenizer.ggml.token_type")[2][1].pop()' tokenizer.ggml.token_type
gg gguf/tokenizer-model-llama 'setkv(g, "tokenizer.ggml.model", STR, b"llama")' tokenizer.ggml.model
gg gguf/tokenizer-model-missing 'delkv(g, "tokenizer.ggml.model")' tokenizer.ggml.model
gg gguf/tokenizer-pre-unknown 'setkv(g, "tokenizer.ggml.pre", STR, b"deepseek-coder")' tokenizer.ggml.pre
gg gguf/merges-unknown-token 'kv(g, "tokenizer.ggml.merges")[2][1].append(b"zz qq")' merges
gg gguf/merges-not-pairs 'kv(g, "tokenizer.ggml.merges")[2][1].append(b"abc")' merges
gg gguf/merges-numbers 'setkv(g, "tokenizer.ggml.merges", ARR, [U32, [1, 2]])' tokenizer.ggml.merges
gg gguf/token-nul 'kv(g, "tokenizer.ggml.tokens")[2][1][100] = b"a\0b"' tokenizer.ggml.tokens
gg gguf/chat-template-number 'setkv(g, "tokenizer.chat_template", U32, 1)' tokenizer.chat_template

# ================================================================ adapters
# PEFT adapter folders: the qwen2_lora_qv fixture's (q_proj, v_proj, r 4 on a
# 32-wide Qwen2), given to `seal generate --adapter` and inside `seal verify`'s
# fixture; the rank-2 adapter of the tiny GGUF (the good run's round 1).
ad() { local d; d=$(dir "$1"); rm -rf "$d"; mkdir -p "$d"; cp -a "$FX/qwen2_lora_qv/adapter" "$d/adapter"; echo "$d/adapter"; }
acfg() {   # acfg NAME CODE [WANT]: adapter_config.json edited by CODE
    local a; a=$(ad "$1")
    J "$a/adapter_config.json" "$2"
    c "$1" "${3:-adapter_config.json}" -- gen --model "$FX/qwen2_lora_qv" --adapter "$a"
}
ast() {   # ast NAME CODE [WANT]: adapter_model.safetensors edited by CODE
    local a; a=$(ad "$1")
    ST "$a/adapter_model.safetensors" "$2"
    c "$1" "${3:-adapter_model.safetensors}" -- gen --model "$FX/qwen2_lora_qv" --adapter "$a"
}
a=$(dir adapter/missing-folder)/nowhere
c adapter/missing-folder nowhere -- gen --model "$FX/qwen2_lora_qv" --adapter "$a"
a=$(ad adapter/config-missing); rm "$a/adapter_config.json"
c adapter/config-missing adapter_config.json -- gen --model "$FX/qwen2_lora_qv" --adapter "$a"
a=$(ad adapter/config-not-json); printf '{"r": 4, "lora_alpha": 8' >"$a/adapter_config.json"
c adapter/config-not-json adapter_config.json -- gen --model "$FX/qwen2_lora_qv" --adapter "$a"
a=$(ad adapter/config-trailing); printf '{"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]} {}' >"$a/adapter_config.json"
c adapter/config-trailing adapter_config.json -- gen --model "$FX/qwen2_lora_qv" --adapter "$a"
a=$(ad adapter/given-a-file); a=$a/adapter_config.json
c adapter/given-a-file adapter_config.json -- gen --model "$FX/qwen2_lora_qv" --adapter "$a"
acfg adapter/config-array 'j = [j]'
acfg adapter/r-zero 'j["r"] = 0' '"r"'
acfg adapter/r-negative 'j["r"] = -4' '"r"'
acfg adapter/r-fraction 'j["r"] = 2.5' '"r"'
acfg adapter/r-string 'j["r"] = "4"' '"r"'
acfg adapter/r-missing 'del j["r"]' '"r"'
acfg adapter/r-huge 'j["r"] = 1e9' '"r"'
acfg adapter/r-mismatch 'j["r"] = 8' adapter_model.safetensors
acfg adapter/alpha-missing 'del j["lora_alpha"]' lora_alpha
acfg adapter/alpha-string 'j["lora_alpha"] = "8"' lora_alpha
acfg adapter/alpha-huge 'j["lora_alpha"] = 1e39' lora_alpha
acfg adapter/peft-type-ia3 'j["peft_type"] = "IA3"' peft_type
acfg adapter/bias-all 'j["bias"] = "all"' bias
acfg adapter/use-dora 'j["use_dora"] = True' use_dora
acfg adapter/use-rslora 'j["use_rslora"] = True' use_rslora
acfg adapter/rank-pattern 'j["rank_pattern"] = {"q_proj": 8}' rank_pattern
acfg adapter/alpha-pattern 'j["alpha_pattern"] = {"v_proj": 32}' alpha_pattern
acfg adapter/layers-to-transform 'j["layers_to_transform"] = [0]' layers_to_transform
acfg adapter/modules-to-save 'j["modules_to_save"] = ["lm_head"]' modules_to_save
acfg adapter/fan-in-fan-out 'j["fan_in_fan_out"] = True' fan_in_fan_out
acfg adapter/target-string 'j["target_modules"] = "q_proj"' target_modules
acfg adapter/target-unknown 'j["target_modules"] = ["q_proj", "attn_c"]' attn_c
acfg adapter/target-empty 'j["target_modules"] = []' adapter_config.json
acfg adapter/target-number 'j["target_modules"] = [3]' target_modules
acfg adapter/target-missing 'del j["target_modules"]' target_modules
acfg adapter/target-more 'j["target_modules"] = ["q_proj", "k_proj", "v_proj"]' k_proj
a=$(ad adapter/weights-missing); rm "$a/adapter_model.safetensors"
c adapter/weights-missing adapter_model.safetensors -- gen --model "$FX/qwen2_lora_qv" --adapter "$a"
a=$(ad adapter/weights-bin-only); mv "$a/adapter_model.safetensors" "$a/adapter_model.bin"
c adapter/weights-bin-only adapter_model.safetensors -- gen --model "$FX/qwen2_lora_qv" --adapter "$a"
a=$(ad adapter/weights-truncated); truncate -s 2000 "$a/adapter_model.safetensors"
c adapter/weights-truncated adapter_model.safetensors -- gen --model "$FX/qwen2_lora_qv" --adapter "$a"
ast adapter/tensor-missing 'del h[first(h, "layers.1.self_attn.v_proj.lora_B")]' v_proj.lora_B
ast adapter/tensor-wrong-shape 'e = h[first(h, "layers.0.self_attn.q_proj.lora_A")]; e["shape"] = e["shape"][::-1]' q_proj.lora_A
ast adapter/tensor-extra 'h["base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector"] = {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}' lora_magnitude_vector
ast adapter/tensor-extra-lm-head 'h["base_model.model.lm_head.weight"] = {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}' lm_head
ast adapter/tensor-renamed 'k = first(h, "layers.0.self_attn.q_proj.lora_A"); h[k.replace("base_model.model.", "")] = h.pop(k)' q_proj.lora_A
ast adapter/nan-lora-a 'f32(h, d, first(h, "q_proj.lora_A"), NAN, 3)' q_proj.lora_A
ast adapter/inf-lora-b 'f32(h, d, first(h, "v_proj.lora_B"), INF)' v_proj.lora_B
ast adapter/dtype-i64 'd = retype(h, d, first(h, "q_proj.lora_A"), "I64")'
ast adapter/header-length 'hlen = 1 << 40'
a=$(ad adapter/other-model); rm -r "$a"; cp -a "$FX/untied_lora_kv4_hd/adapter" "$a"
c adapter/other-model adapter_model.safetensors -- gen --model "$FX/qwen2_lora_qv" --adapter "$a"
# seal verify: the fixture's own adapter/ folder
for v in r-zero:'j["r"] = 0' dora:'j["use_dora"] = True' not-object:'j = 4'; do
    m=$(fx "adapter/verify-${v%%:*}" qwen2_lora_qv)
    J "$m/adapter/adapter_config.json" "${v#*:}"
    c "adapter/verify-${v%%:*}" adapter_config.json -- S verify "$m"
done
m=$(fx adapter/verify-nan qwen2_lora_qv); ST "$m/adapter/adapter_model.safetensors" 'f32(h, d, first(h, "lora_B"), NAN)'
c adapter/verify-nan adapter_model.safetensors -- S verify "$m"
m=$(fx adapter/verify-no-adapter qwen2_lora_qv); rm -r "$m/adapter"
c adapter/verify-no-adapter adapter_config.json -- S verify "$m"
# the tiny GGUF's adapter: an alpha that overflows every output
a=$(dir adapter/gguf-alpha-huge); cp -a "$G/run_adapter/rounds/1" "$a"; J "$a/adapter_config.json" 'j["lora_alpha"] = 1e30'
c adapter/gguf-alpha-huge lora_alpha -- gen --model "$GG" --adapter "$a"
a=$(dir adapter/gguf-shape); cp -a "$G/run_adapter/rounds/1" "$a"; J "$a/adapter_config.json" 'j["target_modules"] = ["q_proj", "k_proj"]'
c adapter/gguf-shape k_proj -- gen --model "$GG" --adapter "$a"

# ================================================================ tokenizer.json
# test/qwen2_tokenizer/tokenizer.json (byte-level BPE, 456 tokens, NFC, a
# Split regex), edited by CODE; `seal tokenize` loads it, and `seal generate
# --tokenizer` beside the tiny GGUF.
tj() { local f; f=$(dir "$1").tokenizer.json; cp "$QTOK" "$f"; echo "$f"; }   # tj NAME: a copy to break
tk() {   # tk NAME CODE [WANT]
    local f; f=$(tj "$1")
    J "$f" "$2"
    c "$1" "${3:-$(basename "$f")}" -- S tokenize "$f"
}
f=$(tj tokenizer/missing); rm "$f"
c tokenizer/missing "$(basename "$f")" -- S tokenize "$f"
f=$(tj tokenizer/empty); : >"$f"
c tokenizer/empty "$(basename "$f")" -- S tokenize "$f"
f=$(tj tokenizer/not-json); head -c 5000 "$QTOK" >"$f"
c tokenizer/not-json "$(basename "$f")" -- S tokenize "$f"
f=$(tj tokenizer/directory); rm "$f"; mkdir "$f"
c tokenizer/directory "$(basename "$f")" -- S tokenize "$f"
f=$(tj tokenizer/binary); head -c 4000 "$GG" >"$f"
c tokenizer/binary "$(basename "$f")" -- S tokenize "$f"
tk tokenizer/array 'j = [j]'
tk tokenizer/model-missing 'del j["model"]' model
tk tokenizer/model-string 'j["model"] = "BPE"' model
tk tokenizer/model-wordpiece 'j["model"]["type"] = "WordPiece"' model.type
tk tokenizer/model-unigram 'j["model"]["type"] = "Unigram"; del j["model"]["merges"]' model.type
tk tokenizer/model-type-number 'j["model"]["type"] = 3' model.type
tk tokenizer/dropout 'j["model"]["dropout"] = 0.1' model.dropout
tk tokenizer/subword-prefix 'j["model"]["continuing_subword_prefix"] = "##"' continuing_subword_prefix
tk tokenizer/vocab-missing 'del j["model"]["vocab"]' model.vocab
tk tokenizer/vocab-list 'j["model"]["vocab"] = list(j["model"]["vocab"])' model.vocab
tk tokenizer/vocab-id-negative 'j["model"]["vocab"]["a"] = -1' model.vocab
tk tokenizer/vocab-id-string 'j["model"]["vocab"]["a"] = "7"' model.vocab
tk tokenizer/vocab-id-huge 'j["model"]["vocab"]["a"] = 1 << 40' model.vocab
tk tokenizer/merges-missing 'del j["model"]["merges"]' model.merges
tk tokenizer/merges-object 'j["model"]["merges"] = {"a": "b"}' model.merges
tk tokenizer/merges-number 'j["model"]["merges"].append(7)' model.merges
tk tokenizer/merges-one-part 'j["model"]["merges"].append("abc")' model.merges
tk tokenizer/merges-unknown 'j["model"]["merges"].append(["zq", "qz"])' model.merges
tk tokenizer/merges-no-result 'v = j["model"]["vocab"]; v["\u0120zzz"] = max(v.values()) + 1; v["zzz"] = max(v.values()) + 1; j["model"]["merges"].append(["zzz", "zzz"])' model.merges
tk tokenizer/pre-missing 'del j["pre_tokenizer"]' pre_tokenizer
tk tokenizer/pre-whitespace 'j["pre_tokenizer"] = {"type": "Whitespace"}' pre_tokenizer
tk tokenizer/pre-no-type 'j["pre_tokenizer"] = {"pretokenizers": []}' pre_tokenizer
tk tokenizer/pre-bad-regex 'j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(unclosed["' pre_tokenizer
tk tokenizer/pre-split-removed 'j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Removed"' behavior
tk tokenizer/pre-split-invert 'j["pre_tokenizer"]["pretokenizers"][0]["invert"] = True' invert
tk tokenizer/pre-no-bytelevel 'j["pre_tokenizer"]["pretokenizers"].pop()' pre_tokenizer
tk tokenizer/pre-prefix-space 'j["pre_tokenizer"]["pretokenizers"][1]["add_prefix_space"] = True' add_prefix_space
tk tokenizer/normalizer-lowercase 'j["normalizer"] = {"type": "Lowercase"}' normalizer
tk tokenizer/decoder-wordpiece 'j["decoder"] = {"type": "WordPiece"}' decoder
tk tokenizer/added-not-list 'j["added_tokens"] = {"id": 1}' added_tokens
tk tokenizer/added-id-string 'j["added_tokens"][0]["id"] = "456"' added_tokens
tk tokenizer/added-no-content 'del j["added_tokens"][0]["content"]' added_tokens
tk tokenizer/added-lstrip 'j["added_tokens"][1]["lstrip"] = True' added_tokens
tk tokenizer/added-special-string 'j["added_tokens"][0]["special"] = "yes"' added_tokens
tk tokenizer/bool-not-bool 'j["model"]["ignore_merges"] = "false"' ignore_merges
f=$(tj tokenizer/generate-flag); J "$f" 'del j["model"]["vocab"]'
c tokenizer/generate-flag "$(basename "$f")" -- gen --model "$GG" --tokenizer "$f"
f=$(tj tokenizer/generate-flag-missing); rm "$f"
c tokenizer/generate-flag-missing "$(basename "$f")" -- gen --model "$GG" --tokenizer "$f"
m=$(fx tokenizer/model-folder tied_full_kv2); cp "$QTOK" "$m/tokenizer.json"; J "$m/tokenizer.json" 'j["model"]["type"] = "WordLevel"'
c tokenizer/model-folder tokenizer.json -- gen --model "$m"
m=$(fx tokenizer/larger-than-model tied_full_kv2); cp "$QTOK" "$m/tokenizer.json"
c tokenizer/larger-than-model tokenizer.json -- gen --model "$m" --prompt "<|im_start|>"

# ================================================================ ARC tasks
# `seal fewshot` on the tiny GGUF reads its tasks first: a folder holding the
# good tasks flip and same and a broken one, bad.json, given as the held-out
# task (or the training task), the run going to a new --out.
FS() { local bin=$SEAL; fewshot_with "$bin" "$@"; }
arcd() { local d; d=$(dir "$1"); rm -rf "$d"; mkdir -p "$d"; cp "$G"/arc/*.json "$d/"; echo "$d"; }
arc() {   # arc NAME JSON [eval|train] [WANT] [FLAGS...]
    local d; d=$(arcd "$1")
    printf '%s' "$2" >"$d/bad.json"
    local ids=(--train-ids flip --eval-ids bad)
    [ "${3:-eval}" = train ] && ids=(--train-ids bad --eval-ids same)
    c "$1" "${4:-bad.json}" -- FS --train-dir "$d" --eval-dir "$d" "${ids[@]}" --out "$d/out" "${@:5}"
}
P='{"input": [[1, 2]], "output": [[2, 1]]}'
T='{"input": [[3, 4]], "output": [[4, 3]]}'
grid() { printf '{"train": [{"input": %s, "output": [[1]]}], "test": [%s]}' "$1" "$T"; }
arc arc/not-json '{"train": ['
arc arc/empty ''
arc arc/binary "$(head -c 200 "$GG" | tr -d '\0')"
arc arc/array "[$P]"
arc arc/string '"task"'
arc arc/no-train "{\"test\": [$T]}" eval '"train"'
arc arc/no-test "{\"train\": [$P]}" eval '"test"'
arc arc/train-empty "{\"train\": [], \"test\": [$T]}" eval '"train"'
arc arc/test-empty "{\"train\": [$P], \"test\": []}" eval '"test"'
arc arc/train-not-list "{\"train\": $P, \"test\": [$T]}" eval '"train"'
arc arc/pair-not-object "{\"train\": [[[1]]], \"test\": [$T]}" eval 'train[0]'
arc arc/pair-no-input "{\"train\": [{\"output\": [[1]]}], \"test\": [$T]}" eval 'train[0]'
arc arc/train-no-output "{\"train\": [{\"input\": [[1]]}], \"test\": [$T]}" eval 'train[0]'
arc arc/grid-number "$(grid 5)" eval 'train[0].input'
arc arc/grid-empty "$(grid '[]')" eval 'train[0].input'
arc arc/grid-row-empty "$(grid '[[]]')" eval 'train[0].input'
arc arc/grid-row-not-list "$(grid '[1, 2]')" eval 'train[0].input'
arc arc/grid-ragged "$(grid '[[1, 2], [3]]')" eval 'train[0].input'
arc arc/grid-31-rows "$(grid "[$(printf '[1],%.0s' $(seq 30))[1]]")" eval 'train[0].input'
arc arc/grid-31-cols "$(grid "[[$(printf '1,%.0s' $(seq 30))1]]")" eval 'train[0].input'
arc arc/colour-10 "$(grid '[[1, 10]]')" eval 'train[0].input'
arc arc/colour-negative "$(grid '[[-1]]')" eval 'train[0].input'
arc arc/colour-fraction "$(grid '[[1.5]]')" eval 'train[0].input'
arc arc/colour-string "$(grid '[["1"]]')" eval 'train[0].input'
arc arc/colour-null "$(grid '[[null]]')" eval 'train[0].input'
arc arc/colour-bool "$(grid '[[true]]')" eval 'train[0].input'
arc arc/test-output-ragged "{\"train\": [$P], \"test\": [{\"input\": [[1]], \"output\": [[1, 2], [3]]}]}" eval 'test[0].output'
arc arc/deep-nesting "{\"train\": $(printf '[%.0s' $(seq 3000))$(printf ']%.0s' $(seq 3000)), \"test\": [$T]}"
# known: scored as a failure, not refused (fewshot_check in the guard branch refuses it); SHORT keeps the run short
SHORT=(--rounds 0 --max-edit-tokens 2 --max-answer-tokens 2)
arc arc/heldout-no-test-output "{\"train\": [$P], \"test\": [{\"input\": [[5, 6]]}]}" eval bad.json "${SHORT[@]}"
arc arc/train-no-test-output "{\"train\": [$P], \"test\": [{\"input\": [[5, 6]]}]}" train bad.json "${SHORT[@]}"
arc arc/train-ragged "$(grid '[[1], [2, 3]]')" train 'train[0].input'
d=$(arcd arc/task-is-directory); mkdir "$d/bad.json"
c arc/task-is-directory bad.json -- FS --train-dir "$d" --eval-dir "$d" --train-ids flip --eval-ids bad --out "$d/out"
d=$(arcd arc/id-missing)
c arc/id-missing nosuch.json -- FS --train-dir "$d" --eval-dir "$d" --train-ids flip --eval-ids same,nosuch --out "$d/out"
d=$(arcd arc/train-id-missing)
c arc/train-id-missing nosuch.json -- FS --train-dir "$d" --eval-dir "$d" --train-ids nosuch --eval-ids same --out "$d/out"
d=$(arcd arc/dir-missing)
c arc/dir-missing no-such-dir -- FS --train-dir "$d/no-such-dir" --eval-dir "$d" --train-ids flip --eval-ids same --out "$d/out"
d=$(arcd arc/dir-is-file)
c arc/dir-is-file same.json -- FS --train-dir "$d" --eval-dir "$d/same.json" --eval-ids same --train-ids flip --out "$d/out"
d=$(arcd arc/dir-no-tasks); mkdir "$d/none"; echo hi >"$d/none/readme.txt"
c arc/dir-no-tasks none -- FS --train-dir "$d" --eval-dir "$d/none" --train-ids flip --out "$d/out"
d=$(arcd arc/dir-one-bad); mkdir "$d/all"; cp "$d"/*.json "$d/all/"; printf '{"train": [' >"$d/all/zz.json"
c arc/dir-one-bad zz.json -- FS --train-dir "$d" --eval-dir "$d/all" --train-ids flip --out "$d/out"
# --seal-tasks: a JSON object with "train" and "eval" lists of task ids
# (beside the task folder, not in it: there it would be read as a task)
st() {   # st NAME JSON [WANT] [FLAGS...]
    local d; d=$(arcd "$1")
    printf '%s' "$2" >"$d.seal_tasks.json"
    c "$1" "${3:-seal_tasks.json}" -- FS --train-dir "$d" --eval-dir "$d" --seal-tasks "$d.seal_tasks.json" --out "$d.out" "${@:4}"
}
d=$(arcd arc/seal-tasks-missing)
c arc/seal-tasks-missing seal_tasks.json -- FS --train-dir "$d" --eval-dir "$d" --seal-tasks "$d.seal_tasks.json" --out "$d.out"
st arc/seal-tasks-not-json '{"train": ["flip"], "eval": '
st arc/seal-tasks-array '["flip", "same"]'
st arc/seal-tasks-no-eval '{"train": ["flip"]}'
st arc/seal-tasks-train-string '{"train": "flip", "eval": ["same"]}'
st arc/seal-tasks-unknown-id '{"train": ["flip"], "eval": ["nosuch"]}' nosuch.json
# known: lists with no task id mean "every task in the folder"; SHORT keeps that run short
SHORT=(--rounds 0 --max-edit-tokens 2 --max-answer-tokens 2)
st arc/seal-tasks-empty-lists '{"train": [], "eval": []}' seal_tasks.json "${SHORT[@]}"
st arc/seal-tasks-numbers '{"train": [1, 2], "eval": [3]}' seal_tasks.json "${SHORT[@]}"

# ================================================================ passages
# `seal knowledge` on the tiny GGUF reads the held-out passages (--eval, with
# --eval-subset) and then the training ones (--train): every case breaks one
# of them so that no passage is usable, or breaks the subset file.
cat >"$G/notes.jsonl" <<'JSONL'
{"id": "r21", "title": "Release 2.1", "context": "Release 2.1 adds dark mode and drops Python 2.", "questions": [{"question": "What does release 2.1 add?", "answers": ["dark mode"]}]}
{"id": "r22", "title": "Release 2.2", "context": "Release 2.2 ships on Mondays.", "questions": [{"question": "When does 2.2 ship?", "answers": ["Mondays", "on Mondays"]}]}
JSONL
KN() {
    timeout 30 "$SEAL" knowledge --model "$GG" --n-train 1 --n-eval 2 --rounds 1 --samples 2 --epochs 1 --max-edit-tokens 16 --ttt-runs 1 \
        --max-answer-tokens 4 --cpt-sizes 2 --cpt-epochs 1 "$@"
}
pas() {   # pas NAME TEXT [eval|train] [WANT]: TEXT as the passage file passages.json
    local d; d=$(dir "$1"); rm -rf "$d"; mkdir -p "$d"
    printf '%s' "$2" >"$d/passages.json"
    local files=(--train "$G/notes.jsonl" --eval "$d/passages.json")
    [ "${3:-eval}" = train ] && files=(--train "$d/passages.json" --eval "$G/notes.jsonl")
    c "$1" "${4:-passages.json}" -- KN "${files[@]}" --out "$d/out"
}
Q='"questions": [{"question": "What is it?", "answers": ["it"]}]'
d=$(dir passages/eval-missing); mkdir -p "$d"
c passages/eval-missing nosuch.jsonl -- KN --train "$G/notes.jsonl" --eval "$d/nosuch.jsonl" --out "$d/out"
d=$(dir passages/train-missing); mkdir -p "$d"
c passages/train-missing nosuch.jsonl -- KN --train "$d/nosuch.jsonl" --eval "$G/notes.jsonl" --out "$d/out"
d=$(dir passages/eval-directory); mkdir -p "$d/dir.jsonl"
c passages/eval-directory dir.jsonl -- KN --train "$G/notes.jsonl" --eval "$d/dir.jsonl" --out "$d/out"
pas passages/empty ''
pas passages/whitespace $'  \n\n \t\n'
pas passages/plain-text 'Release 2.1 adds dark mode.'
pas passages/number '42'
pas passages/binary "$(head -c 300 "$GG" | tr -d '\0')"
pas passages/truncated-squad $'{\n "version": "1.1",\n "data": [\n  {"title": "a", "paragraphs": [{"context": "x", "qas": ['
pas passages/squad-data-number '{"version": "1.1", "data": 5}'
pas passages/squad-no-data $'{\n "version": "1.1"\n}'
pas passages/squad-data-empty '{"version": "1.1", "data": []}'
pas passages/squad-no-paragraphs '{"data": [{"title": "a"}]}'
pas passages/squad-paragraphs-string '{"data": [{"title": "a", "paragraphs": "x"}]}'
pas passages/squad-no-context '{"data": [{"title": "a", "paragraphs": [{"qas": [{"question": "q?", "answers": [{"text": "a"}]}]}]}]}'
pas passages/squad-no-answers '{"data": [{"title": "a", "paragraphs": [{"context": "A b c.", "qas": [{"question": "q?", "answers": []}]}]}]}'
pas passages/jsonl-no-context "{\"id\": \"a\", $Q}"
pas passages/jsonl-context-empty "{\"id\": \"a\", \"context\": \"  \", $Q}"
pas passages/jsonl-context-number "{\"id\": \"a\", \"context\": 5, $Q}"
pas passages/jsonl-no-questions '{"id": "a", "context": "It is here."}'
pas passages/jsonl-questions-empty '{"id": "a", "context": "It is here.", "questions": []}'
pas passages/jsonl-questions-string '{"id": "a", "context": "It is here.", "questions": "What is it?"}'
pas passages/jsonl-no-answers '{"id": "a", "context": "It is here.", "questions": [{"question": "What is it?"}]}'
pas passages/jsonl-answers-empty '{"id": "a", "context": "It is here.", "questions": [{"question": "What is it?", "answers": []}]}'
pas passages/jsonl-answers-blank '{"id": "a", "context": "It is here.", "questions": [{"question": "What is it?", "answers": [" ", ""]}]}'
pas passages/jsonl-answers-numbers '{"id": "a", "context": "It is here.", "questions": [{"question": "What is it?", "answers": [1, 2]}]}'
pas passages/jsonl-no-question-text '{"id": "a", "context": "It is here.", "questions": [{"answers": ["it"]}]}'
pas passages/jsonl-lines-broken $'{"id": "a", "context": "It\n{"id": "b", "context": \n'
pas passages/jsonl-lines-not-objects $'[1]\n"two"\n3\n'
pas passages/seal-list-empty '[]'
pas passages/seal-list-numbers '[1, 2, 3]'
pas passages/seal-list-no-context '[{"title": "a", "questions": []}]'
pas passages/train-plain-text 'not passages' train
pas passages/train-no-answers '{"id": "a", "context": "It is here.", "questions": [{"question": "What is it?", "answers": []}]}' train
# --eval-subset: a JSON object whose --subset-key list picks --eval passages by index
sub() {   # sub NAME JSON [WANT] [FLAGS...]
    local d; d=$(dir "$1"); rm -rf "$d"; mkdir -p "$d"
    printf '%s' "$2" >"$d/subset.json"
    c "$1" "${3:-subset.json}" -- KN --train "$G/notes.jsonl" --eval "$G/notes.jsonl" --eval-subset "$d/subset.json" --out "$d/out" "${@:4}"
}
d=$(dir passages/subset-missing); mkdir -p "$d"
c passages/subset-missing subset.json -- KN --train "$G/notes.jsonl" --eval "$G/notes.jsonl" --eval-subset "$d/subset.json" --out "$d/out"
sub passages/subset-not-json '{"val_eval_200": [0, 1'
sub passages/subset-array '[0, 1]'
sub passages/subset-no-key '{"other": [0, 1]}'
sub passages/subset-other-key '{"val_eval_200": [0, 1]}' subset.json --subset-key test_200
sub passages/subset-key-number '{"val_eval_200": 1}'
sub passages/subset-negative '{"val_eval_200": [-1]}'
sub passages/subset-string '{"val_eval_200": ["0"]}'
sub passages/subset-fraction '{"val_eval_200": [0.5]}'
sub passages/subset-out-of-range '{"val_eval_200": [5, 99]}'
sub passages/subset-huge '{"val_eval_200": [1e300]}'
sub passages/subset-empty '{"val_eval_200": []}'

# ================================================================ run directories
# A copy of the good one-round fewshot run, broken, then resumed with the
# flags it began with (`seal fewshot --resume`), shown, or rolled back; the
# copy must come out as it went in. rd NAME [FROM]: the copy (its folder is
# named after the case, so that messages naming it can be told apart).
rd() { local d; d=$(dir "$1"); rm -rf "$d"; cp -a "${2:-$G/run}" "$d"; echo "$d"; }
RS() { FS "${GOOD_TASKS[@]}" --out "$1" --resume "${@:2}"; }   # RS RUN [FLAGS]: resume it
res() {   # res NAME SHELL-CODE [WANT]: SHELL-CODE runs in the copy; then --resume
    local r; r=$(rd "$1")
    (cd "$r" && eval "$2") || echo "FAIL setting up $1"
    c "$1" "${3:-$(basename "$r")}" -r "$r" -- RS "$r"
}
line() { sed -i "$1" edits.jsonl; }   # line SED-SCRIPT: edit edits.jsonl in place
r=$(dir run/resume-nonexistent)
c run/resume-nonexistent "$(basename "$r")" -- RS "$r"
r=$(dir run/resume-empty-dir); mkdir -p "$r"
c run/resume-empty-dir "$(basename "$r")" -r "$r" -- RS "$r"
r=$(dir run/resume-a-file); echo hi >"$r"
c run/resume-a-file "$(basename "$r")" -- RS "$r"
res run/no-run-json 'rm run.json'
res run/run-json-empty ': >run.json'
res run/run-json-truncated 'truncate -s 100 run.json' run.json
res run/run-json-binary 'head -c 500 "$GG" >run.json' run.json
res run/run-json-array 'echo "[1, 2]" >run.json'
r=$(rd run/config-changed); J "$r/run.json" 'j["config"]["samples"] = 3'
c run/config-changed samples -r "$r" -- RS "$r"
r=$(rd run/config-missing); J "$r/run.json" 'del j["config"]'
c run/config-missing "$(basename "$r")" -r "$r" -- RS "$r"
r=$(rd run/flag-changed)
c run/flag-changed eval_samples -r "$r" -- RS "$r" --eval-samples 2
r=$(rd run/inputs-missing); J "$r/run.json" 'del j["inputs"]'
c run/inputs-missing "$(basename "$r")" -r "$r" -- RS "$r"
r=$(rd run/inputs-not-object); J "$r/run.json" 'j["inputs"] = 5'
c run/inputs-not-object inputs -r "$r" -- RS "$r"
r=$(rd run/input-changed); J "$r/run.json" 'k = next(k for k in j["inputs"] if k.endswith("same.json")); j["inputs"][k] = "0123456789abcdef"'
c run/input-changed same.json -r "$r" -- RS "$r"
r=$(rd run/input-hash-number); J "$r/run.json" 'k = next(iter(j["inputs"])); j["inputs"][k] = 5'
c run/input-hash-number flip.json -r "$r" -- RS "$r"
r=$(rd run/input-gone); J "$r/run.json" 'j["inputs"]["/nonexistent/task.json"] = "0123456789abcdef"'
c run/input-gone /nonexistent/task.json -r "$r" -- RS "$r"
res run/edits-bad-json "line '3s/.*/{\"phase\": \"eval\", \"round\"/'" 'edits.jsonl: line 3'
res run/edits-array-line "line '2s/.*/[1, 2]/'" 'edits.jsonl: line 2'
res run/edits-unknown-phase "line '4s/\"phase\":\"[a-z]*\"/\"phase\":\"evaluation\"/'" 'edits.jsonl: line 4'
res run/edits-phase-number "line '4s/\"phase\":\"[a-z]*\"/\"phase\":7/'" 'edits.jsonl: line 4'
res run/edits-round-string "line '5s/\"round\":[0-9]*/\"round\":\"0\"/'" 'edits.jsonl: line 5'
res run/edits-round-negative "line '5s/\"round\":[0-9]*/\"round\":-1/'" 'edits.jsonl: line 5'
res run/edits-task-huge "line '5s/\"task\":[0-9]*/\"task\":1e20/'" 'edits.jsonl: line 5'
res run/edits-sample-fraction "line '5s/\"sample\":[0-9]*/\"sample\":0.5/'" 'edits.jsonl: line 5'
res run/edits-no-reward "line '6s/\"reward\":[^,]*,//'" 'edits.jsonl: line 6'
res run/edits-edit-number "line '6s/\"edit\":\\(null\\|\"[^\"]*\"\\)/\"edit\":5/'" 'edits.jsonl: line 6'
res run/edits-accepted-no-edit "line '1s/\"accepted\":false/\"accepted\":true/'" 'edits.jsonl: line 1'
res run/edits-nul-byte "printf '{\"phase\": \"eval\"}\0{}\n' >>edits.jsonl" 'edits.jsonl'
res run/edits-deleted 'rm edits.jsonl'
res run/edits-empty ': >edits.jsonl'
res run/edits-round-1-lost "grep '\"round\":0,' edits.jsonl >e && mv e edits.jsonl"
res run/current-missing 'rm current'
res run/current-garbage 'echo abc >current'
res run/current-empty ': >current'
res run/current-negative 'echo -1 >current'
res run/current-incomplete 'echo 5 >current'
res run/current-partial-round 'mkdir rounds/2 && echo 2 >current && cp rounds/1/metrics.json rounds/2/x.json'
res run/rounds-gap 'cp -a rounds/1 rounds/3'
res run/round-metrics-not-json 'echo "{" >rounds/1/metrics.json'
res run/round-metrics-no-score "sed -i '/eval_success/d' rounds/1/metrics.json" metrics.json
r=$(rd run/round-adapter-missing); J "$r/rounds/1/metrics.json" 'j["adapter"] = True'
c run/round-adapter-missing adapter_model.safetensors -r "$r" -- RS "$r"
r=$(rd run/round-adapter-gone "$G/run_adapter"); rm "$r/rounds/1/adapter_model.safetensors"
c run/round-adapter-gone adapter_model.safetensors -r "$r" -- RS "$r"
# a new run (no --resume): only into a new or empty folder
r=$(rd run/new-over-run)
c run/new-over-run "$(basename "$r")" -r "$r" -- FS "${GOOD_TASKS[@]}" --out "$r"
r=$(dir run/new-into-other-folder); mkdir -p "$r"; echo notes >"$r/notes.txt"
c run/new-into-other-folder "$(basename "$r")" -r "$r" -- FS "${GOOD_TASKS[@]}" --out "$r"
r=$(dir run/new-into-half-run); mkdir -p "$r/rounds/1"; echo '{}' >"$r/rounds/1/metrics.json"; echo 1 >"$r/current"
c run/new-into-half-run "$(basename "$r")" -r "$r" -- FS "${GOOD_TASKS[@]}" --out "$r"
r=$(dir run/new-out-is-file); echo hi >"$r"
c run/new-out-is-file "$(basename "$r")" -- FS "${GOOD_TASKS[@]}" --out "$r"
r=$(dir run/new-out-under-file); echo hi >"$r"
c run/new-out-under-file "$(basename "$r")" -- FS "${GOOD_TASKS[@]}" --out "$r/run"
r=$(dir run/json-missing-dir); mkdir -p "$r"
c run/json-missing-dir no-such-dir -- FS "${GOOD_TASKS[@]}" --rounds 0 --out "$r/run" --json "$r/no-such-dir/report.json"
r=$(dir run/json-is-dir); mkdir -p "$r/report.json"
c run/json-is-dir report.json -- FS "${GOOD_TASKS[@]}" --rounds 0 --out "$r/run" --json "$r/report.json"
r=$(rd run/json-missing-dir-resume)
c run/json-missing-dir-resume no-such-dir -r "$r" -- RS "$r" --json "$r/no-such-dir/report.json"
# seal runs show
r=$(dir run/show-nonexistent)
c run/show-nonexistent "$(basename "$r")" -- S runs show "$r"
r=$(dir run/show-not-a-run); mkdir -p "$r"; echo x >"$r/notes.txt"
c run/show-not-a-run "$(basename "$r")" -r "$r" -- S runs show "$r"
r=$(dir run/show-a-file); echo x >"$r"
c run/show-a-file "$(basename "$r")" -- S runs show "$r"
r=$(rd run/show-run-json-broken); echo '{"config":' >"$r/run.json"
c run/show-run-json-broken "$(basename "$r")" -r "$r" -- S runs show "$r"
r=$(rd run/show-edits-bad-json); sed -i '2s/.*/{"phase"/' "$r/edits.jsonl"
c run/show-edits-bad-json 'edits.jsonl: line 2' -r "$r" -- S runs show "$r"
r=$(rd run/show-edits-unknown-phase); sed -i '3s/"phase":"[a-z]*"/"phase":"later"/' "$r/edits.jsonl"
c run/show-edits-unknown-phase 'edits.jsonl: line 3' -r "$r" -- S runs show "$r"
# seal runs rollback: round 1's adapter is loaded and checked first
rb() {   # rb NAME SHELL-CODE WANT [K]: SHELL-CODE runs in a copy of the run with round 1's adapter
    local r; r=$(rd "$1" "$G/run_adapter")
    (cd "$r" && eval "$2") || echo "FAIL setting up $1"
    c "$1" "$3" -r "$r" -- S runs rollback "$r" --to "${4:-1}"
}
r=$(dir run/rollback-not-a-run); mkdir -p "$r"
c run/rollback-not-a-run "$(basename "$r")" -r "$r" -- S runs rollback "$r" --to 0
r=$(dir run/rollback-nonexistent)
c run/rollback-nonexistent "$(basename "$r")" -- S runs rollback "$r" --to 0
rb run/rollback-incomplete-round ':' 'round 5' 5
rb run/rollback-adapter-missing 'rm rounds/1/adapter_model.safetensors' adapter_model.safetensors
rb run/rollback-adapter-config-missing 'rm rounds/1/adapter_config.json' adapter_config.json
rb run/rollback-adapter-truncated 'truncate -s 300 rounds/1/adapter_model.safetensors' adapter_model.safetensors
rb run/rollback-metrics-broken 'echo "{" >rounds/1/metrics.json' 'round 1'
rb run/rollback-run-json-broken 'echo "{" >run.json' run.json
rb run/rollback-model-gone "sed -i 's#\"path\":[^,]*#\"path\": \"/nonexistent/tiny.gguf\"#' run.json" /nonexistent/tiny.gguf
rb run/rollback-no-model "sed -i 's#\"path\":#\"where\":#' run.json" run.json
r=$(rd run/rollback-adapter-nan "$G/run_adapter"); ST "$r/rounds/1/adapter_model.safetensors" 'f32(h, d, first(h, "layers.1.self_attn.q_proj.lora_B"), NAN)'
c run/rollback-adapter-nan adapter_model.safetensors -r "$r" -- S runs rollback "$r" --to 1
r=$(rd run/rollback-adapter-r-zero "$G/run_adapter"); J "$r/rounds/1/adapter_config.json" 'j["r"] = 0'
c run/rollback-adapter-r-zero adapter_config.json -r "$r" -- S runs rollback "$r" --to 1
r=$(rd run/rollback-adapter-shape "$G/run_adapter"); J "$r/rounds/1/adapter_config.json" 'j["r"] = 4'
c run/rollback-adapter-shape adapter_model.safetensors -r "$r" -- S runs rollback "$r" --to 1
r=$(rd run/rollback-adapter-dora "$G/run_adapter"); J "$r/rounds/1/adapter_config.json" 'j["use_dora"] = True'
c run/rollback-adapter-dora use_dora -r "$r" -- S runs rollback "$r" --to 1

# ---------------------------------------------------------------- run them
if ! $ED batch "$edits"; then echo "FAIL writing the broken files"; exit 1; fi
echo "set up in $(( $(date +%s) - start )) s; ${#queue[@]} cases"
for q in "${queue[@]}"; do eval "run_case $q"; done
cats=""
for k in "${!seen_cat[@]}"; do cats="$cats, $k ${seen_cat[$k]}"; done
echo "bad inputs: $total cases (${cats#, }), $fails failed, $known known, $fixed fixed?, $(( $(date +%s) - start )) s"
exit $((fails > 0))
