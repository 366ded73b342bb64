#!/usr/bin/env bash
# test/data_fetch.sh: data/fetch.sh against the local mirror ../shared/data
# (SEAL_SHARED_DATA overrides), into temporary folders, never into data/:
# every file of arc, seal-arc, squad and llama3-tokenizer copied and checked
# against data/MANIFEST with sha256sum; a second run that skips everything; a
# corrupted file named by --check (exit 1) and repaired by the next run; a
# mirror with a bad file, a missing file and no derived files (the bad and
# missing ones named, exit 1, the derived ones rebuilt); a file without a
# published sum recorded on first fetch and checked afterwards.
set -u
cd "$(dirname "$0")/.." || exit 1
mirror=${SEAL_SHARED_DATA:-../shared/data}
if [ ! -d "$mirror" ]; then echo "SKIP: ../shared/data not found (test/data_fetch.sh)"; exit 0; fi
mirror=$(cd "$mirror" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
ok() { echo "ok   $1"; }
bad() { echo "FAIL $1"; fails=$((fails + 1)); }
check() { local name=$1; shift; if "$@"; then ok "$name"; else bad "$name"; fi; }
fetch() { nice data/fetch.sh "$@" >"$tmp/out" 2>&1; echo $? >"$tmp/rc"; }
rc() { [ "$(cat "$tmp/rc")" = "$1" ]; }
said() { grep -q -- "$1" "$tmp/out"; }
both() { rc "$1" && said "$2"; }   # both CODE PATTERN: exit code CODE and PATTERN in the output
sets=(arc seal-arc squad llama3-tokenizer)
# The manifest's own "sha256  path" lines for those sets, checked with sha256sum.
awk -v sets=",$(IFS=,; echo "${sets[*]}")," '!/^#/ && NF { n = split($1, s, ","); for (i = 1; i <= n; i++)
     if (index(sets, "," s[i] ",")) { print $2 "  " $3; break } }' data/MANIFEST >"$tmp/sums"
n=$(wc -l <"$tmp/sums")
start=$(date +%s%N)

# 1. A fresh copy of the four sets: every file verifies.
fetch "${sets[@]}" --from "$mirror" --dest "$tmp/d"
check "fetch ${sets[*]} --from the mirror: exit 0" rc 0
check "all $n files reported verified" said "$n files verified.*0 already there, $n fetched"
check "every file matches data/MANIFEST (sha256sum -c)" sh -c "cd '$tmp/d' && sha256sum -c --quiet '$tmp/sums'"
check "nothing else left in the destination" test "$(cd "$tmp/d" && find . -type f | wc -l)" = "$n"
check "no .partial folder left" test ! -e "$tmp/d/.partial"
rc 0 || tail -20 "$tmp/out"

# 2. Again: everything is there and verifies, nothing is copied.
t0=$(date +%s%N)
fetch "${sets[@]}" --from "$mirror" --dest "$tmp/d"
check "second run: exit 0, all $n already there, 0 fetched ($(( ($(date +%s%N) - t0) / 1000000 )) ms)" both 0 "$n already there, 0 fetched"

# 3. A corrupted file: --check names it and exits 1; a run names it and repairs it.
victim=arc/training/007bbfb7.json
printf ' ' >>"$tmp/d/$victim"
fetch "${sets[@]}" --dest "$tmp/d" --check
check "--check after corrupting $victim: exit 1" rc 1
check "--check names $victim" said "BAD $victim"
check "--check names only that file" test "$(grep -c '^BAD\|^MISSING' "$tmp/out")" = 1
fetch "${sets[@]}" --from "$mirror" --dest "$tmp/d"
check "the next run names $victim and fetches it again" said "BAD $victim"
check "the next run: exit 0, 1 fetched" both 0 "1 fetched"
check "$victim repaired (sha256sum -c)" sh -c "cd '$tmp/d' && sha256sum -c --quiet '$tmp/sums'"
rm "$tmp/d/squad/squad_val.json"
fetch squad --dest "$tmp/d" --check
check "--check names a missing file, exit 1" both 1 "MISSING squad/squad_val.json"

# 4. A bad mirror: a corrupted file and a missing one are named, not installed,
#    exit 1; the files SEAL's data derive (seal_tasks.json, the SQuAD subsets)
#    are rebuilt by data/derive.py when the mirror lacks them.
mkdir -p "$tmp/m/arc" && cp -rs "$mirror/squad" "$tmp/m/" && cp -rs "$mirror/arc/seal" "$tmp/m/arc/"
rm "$tmp/m/squad/seal_synthetic/iter1_train.json.meta" "$tmp/m/squad/squad_train_seal_subset.json" "$tmp/m/squad/seal_subsets.json"
rm "$tmp/m/squad/seal_synthetic/base_val.json.meta" && printf '{}\n' >"$tmp/m/squad/seal_synthetic/base_val.json.meta"
fetch squad seal-arc --from "$tmp/m" --dest "$tmp/e"
check "a bad mirror: exit 1" rc 1
check "the corrupted file is named" said "BAD squad/seal_synthetic/base_val.json.meta"
check "the missing file is named" said "MISSING squad/seal_synthetic/iter1_train.json.meta"
check "the corrupted file is not installed" test ! -e "$tmp/e/squad/seal_synthetic/base_val.json.meta"
if command -v python3 >/dev/null; then
    grep -E ' (squad|arc/seal)' "$tmp/sums" | grep -v '\.meta$' >"$tmp/sums2"
    check "the other files, derived ones included, verify" sh -c "cd '$tmp/e' && sha256sum -c --quiet '$tmp/sums2'"
else
    echo "note: python3 not installed, the derived files not checked"
fi

# 5. A file with no published sum: recorded on first fetch, checked afterwards.
mkdir -p "$tmp/u/x" && echo one >"$tmp/u/x/a.txt"
echo "t unverified-first-fetch x/a.txt https://example.invalid/a.txt" >"$tmp/manifest"
fetch t --manifest "$tmp/manifest" --from "$tmp/u" --dest "$tmp/f"
check "unverified-first-fetch: recorded in .local-sums, said so" both 0 "no published sha256"
check "unverified-first-fetch: .local-sums holds its sum" grep -q "  x/a.txt$" "$tmp/f/.local-sums"
echo two >"$tmp/u/x/a.txt" && rm "$tmp/f/x/a.txt"
fetch t --manifest "$tmp/manifest" --from "$tmp/u" --dest "$tmp/f"
check "unverified-first-fetch: a changed copy is refused afterwards, exit 1" both 1 "BAD x/a.txt"
fetch nosuchset --dest "$tmp/g"
check "an unknown set: exit 2, the sets listed" both 2 "llama3-tokenizer"

echo "test/data_fetch.sh: $(( ($(date +%s%N) - start) / 1000000 )) ms"
[ "$fails" = 0 ] && echo "test/data_fetch.sh: all passed" || echo "test/data_fetch.sh: $fails failed"
[ "$fails" = 0 ]
