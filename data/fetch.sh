#!/usr/bin/env bash
# data/fetch.sh: fetch the real data sets into data/ and check every file's
# sha256 against data/MANIFEST.
#
#   data/fetch.sh [SET...] [--from DIR] [--dest DIR] [--hf-token T] [--check]
#
# SET        arc, seal-arc, squad, llama3-tokenizer, llama3-1b, smollm2, or all
#            (default: arc seal-arc squad)
# --from DIR copy from a local mirror with the same layout (e.g. ../shared/data)
#            instead of the network
# --dest DIR put the files under DIR instead of data/
# --hf-token T  Hugging Face token for meta-llama/Llama-3.2-1B-Instruct (or set
#            HF_TOKEN); accept the Llama 3.2 licence on the Hub first
# --check    fetch nothing: verify what is there, name every missing or bad file
# --manifest FILE  another manifest (tests)
#
# A file that is there and verifies is skipped, so a second run is fast. New
# copies go to DEST/.partial/PATH first and are renamed into place once they
# verify; an interrupted download resumes from there on the next run. A file
# that is there but does not verify is named and fetched again. A copy that
# does not verify is named, not installed, and the script exits 1 at the end.
# Files marked unverified-first-fetch in the manifest have no published sum:
# the first copy's sum goes into DEST/.local-sums (the script says so) and
# later runs check against it.
set -u
here=$(cd "$(dirname "$0")" && pwd)
manifest=$here/MANIFEST dest=$here from='' token=${HF_TOKEN:-} check=0 sets=()
die() { echo "fetch.sh: $*" >&2; exit 2; }
[ "${BASH_VERSINFO[0]}" -ge 4 ] || die "needs bash 4 or later"
while [ $# -gt 0 ]; do
    case $1 in
        --from|--dest|--hf-token|--manifest) [ $# -ge 2 ] || die "$1 needs a value"
            case $1 in --from) from=$2 ;; --dest) dest=$2 ;; --hf-token) token=$2 ;; --manifest) manifest=$2 ;; esac
            shift 2 ;;
        --check) check=1; shift ;;
        -h|--help) sed -n '2,/^set -u/s/^# \{0,1\}//p' "$0" | grep -v '^set -u'; exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) sets+=("$1"); shift ;;
    esac
done
[ -r "$manifest" ] || die "no manifest $manifest"
if [ -n "$from" ]; then from=$(cd "$from" 2>/dev/null && pwd) || die "--from: no such directory"; fi
known=$(awk '!/^#/ && NF { n = split($1, s, ","); for (i = 1; i <= n; i++) print s[i] }' "$manifest" | sort -u)
[ ${#sets[@]} -gt 0 ] || sets=(arc seal-arc squad)
for s in "${sets[@]}"; do
    [ "$s" = all ] || grep -qx -- "$s" <<<"$known" || die "unknown set '$s'; sets: ${known//$'\n'/ } all"
done
mkdir -p "$dest" || die "cannot create $dest"
dest=$(cd "$dest" && pwd) stage=$dest/.partial local_sums=$dest/.local-sums unreachable='' told=''
hf_page=https://huggingface.co/meta-llama/Llama-3.2-1B-Instruct
if command -v sha256sum >/dev/null; then SHA=(sha256sum)
elif command -v shasum >/dev/null; then SHA=(shasum -a 256)
else die "needs sha256sum (coreutils) or shasum"; fi

declare -A HAVE   # HAVE[PATH]: the sha256 of DIR/PATH after `sums DIR PATH...`
sums() {   # one process for all the files: 800 ARC files add up
    local dir=$1 s p; shift; HAVE=()
    [ $# -gt 0 ] || return 0
    while read -r s p; do HAVE[$p]=$s; done < <(cd "$dir" && printf '%s\0' "$@" | xargs -0 "${SHA[@]}" 2>/dev/null)
}

selected() {   # selected SETS: is any of the comma-separated SETS asked for?
    local s
    for s in "${sets[@]}"; do [ "$s" = all ] || [[ ",$1," == *",$s,"* ]] && return 0; done
    return 1
}

curl_get() {   # curl_get URL FILE [CURL-OPTION...]: prints the HTTP code
    local url=$1 out=$2; shift 2
    local args=(-fL --connect-timeout 30 --retry 3 -o "$out" -w '%{http_code}' "$@")
    if [ -t 2 ]; then args+=(-#); else args+=(-sS); fi
    if [[ $url == https://huggingface.co/* ]]; then
        # The token goes to curl on stdin (-K -), not on its command line.
        printf 'header = "Authorization: Bearer %s"\n' "$token" | curl -K - "${args[@]}" "$url"
    else
        curl "${args[@]}" "$url"
    fi
}

download() {   # download URL FILE WANT: into FILE, resuming what is there
    local url=$1 out=$2 code rc host=${1#https://}; host=${host%%/*}
    [ -n "$3" ] && [ -f "$out" ] && sums "$stage" "${out#"$stage"/}" && [ "${HAVE[${out#"$stage"/}]:-}" = "$3" ] && return 0
    command -v curl >/dev/null || { echo "  needs curl"; return 1; }
    [[ " $unreachable " != *" $host "* ]] || { echo "  $host could not be reached (above)"; return 1; }
    if [[ $url == https://huggingface.co/* ]] && [ -z "$token" ]; then
        [ -n "$told" ] && echo "  no Hugging Face token (above)" ||
            echo "  needs a Hugging Face token (--hf-token T or HF_TOKEN), after accepting the licence at $hf_page"
        told=1; return 1
    fi
    code=$(curl_get "$url" "$out" -C -); rc=$?
    if [ $rc != 0 ] && { [ "$code" = 416 ] || [ $rc = 33 ]; }; then   # cannot resume: start again
        rm -f "$out"; code=$(curl_get "$url" "$out"); rc=$?
    fi
    [ $rc = 0 ] && return 0
    echo "  curl failed (exit $rc, HTTP $code)$([ -s "$out" ] && echo "; run again to resume")"
    case $rc in 6|7|28) unreachable+=" $host" ;; esac   # no network: do not try each of 800 files
    [[ $url == https://huggingface.co/* ]] && case $code in 401|403)
        echo "  Hugging Face refused the token: check it, and accept the licence at $hf_page" ;; esac
    return 1
}

build() {   # build SOURCE FILE: a derive: or zip: file from files already in DEST
    local src=$1 out=$2
    case $src in
        derive:*) command -v python3 >/dev/null || { echo "  needs python3"; return 1; }
                  python3 "$here/derive.py" "${src#derive:}" "$dest" "$out" ;;
        zip:*) local zip=${src#zip:}; local member=${zip#*!}; zip=$dest/${zip%%!*}
               if command -v unzip >/dev/null; then unzip -p "$zip" "$member" >"$out"
               else python3 -c 'import sys, zipfile, shutil; shutil.copyfileobj(zipfile.ZipFile(sys.argv[1]).open(sys.argv[2]), sys.stdout.buffer)' "$zip" "$member" >"$out"; fi ;;
        *) echo "  unknown source $src"; return 1 ;;
    esac
}

put() {   # put PATH...: verify DEST/.partial/PATH against the manifest, then rename it into place
    local p dir='' batch=()
    sums "$stage" "$@"
    for p in "$@"; do
        local want=${WANT[$p]} have=${HAVE[$p]:-unreadable}
        if [ -z "$want" ]; then
            echo "$p: no published sha256; recorded $have in $local_sums (trusted on first fetch, checked from now on)"
            echo "$have  $p" >>"$local_sums"
        elif [ "$have" != "$want" ]; then
            echo "BAD $p: the copy from ${from:-${SRC[$p]}} has sha256 $have, ${SAYS[$p]:-the manifest says} $want; not installed"
            rm -f "$stage/$p"; failed+=("$p"); continue
        fi
        # One mv per directory, not per file.
        [ "${p%/*}" = "$dir" ] || { [ ${#batch[@]} = 0 ] || mv -f "${batch[@]}" "$dest/$dir/"; dir=${p%/*} batch=(); mkdir -p "$dest/$dir"; }
        batch+=("$stage/$p") n_new=$((n_new + 1))
    done
    [ ${#batch[@]} = 0 ] || mv -f "${batch[@]}" "$dest/$dir/"
}

# 1. The files of the chosen sets, and what is already there.
declare -A WANT SRC SAYS   # SAYS: where the sum comes from, when not the manifest
order=() n_ok=0 n_new=0 n_skip=0 failed=() todo=()
while read -r fsets want path src; do
    case $fsets in ''|'#'*) continue ;; esac
    selected "$fsets" || continue
    if [ "$want" = unverified-first-fetch ]; then
        want=$( [ -f "$local_sums" ] && awk -v p="$path" '$2 == p { print $1 }' "$local_sums" | tail -1)
        SAYS[$path]="$local_sums says"
    fi
    order+=("$path") WANT[$path]=$want SRC[$path]=$src
done <"$manifest"
there=(); for p in "${order[@]}"; do [ -f "$dest/$p" ] && there+=("$p"); done
sums "$dest" "${there[@]}"
for p in "${order[@]}"; do
    want=${WANT[$p]} src=${SRC[$p]}
    if [ -f "$dest/$p" ]; then
        have=${HAVE[$p]:-unreadable}
        if [ "$have" = "$want" ]; then n_ok=$((n_ok + 1)); continue; fi
        if [ -z "$want" ]; then
            n_ok=$((n_ok + 1)); [ $check = 1 ] && continue
            echo "$p: no published sha256; recorded $have in $local_sums (trusted as it is, checked from now on)"
            echo "$have  $p" >>"$local_sums"; continue
        fi
        echo "BAD $p: sha256 $have, ${SAYS[$p]:-the manifest says} $want"
        if [ $check = 1 ]; then failed+=("$p"); else echo "  fetching it again"; todo+=("$p"); fi
    elif [ "$src" = mirror-only ] && { [ -z "$from" ] || [ ! -f "$from/$p" ]; }; then
        echo "note: $p is not there: it was made for this project and only a local mirror has it (--from DIR)"
        n_skip=$((n_skip + 1))
    elif [ $check = 1 ]; then echo "MISSING $p"; failed+=("$p")
    else todo+=("$p"); fi
done

# 2. Copy from the mirror (all at once) or download; then verify and install.
if [ ${#todo[@]} -gt 0 ]; then
    mkdir -p "$stage" || die "cannot create $stage"
    copy=() got=() later=()
    for p in "${todo[@]}"; do
        src=${SRC[$p]}
        if [ -n "$from" ] && [ -f "$from/$p" ]; then copy+=("$p")
        elif [[ $src == derive:* || $src == zip:* ]]; then later+=("$p")
        elif [ -n "$from" ]; then echo "MISSING $p: not in $from"; failed+=("$p")
        elif [[ $src == https://* ]]; then
            echo "get $p"; mkdir -p "$stage/${p%/*}"
            if download "$src" "$stage/$p" "${WANT[$p]}"; then got+=("$p"); else echo "FAILED $p ($src)"; failed+=("$p"); fi
        else echo "FAILED $p: unknown source $src"; failed+=("$p"); fi
    done
    if [ ${#copy[@]} -gt 0 ]; then
        # tar -h: a mirror may hold symbolic links; copy what they point to.
        printf '%s\0' "${copy[@]}" | (cd "$from" && tar -chf - --null -T -) | (cd "$stage" && tar --no-same-owner -xf -) && chmod -R u+w "$stage" ||
            echo "fetch.sh: copying from $from failed"
        got+=("${copy[@]}")
    fi
    put "${got[@]}"
    for p in "${later[@]}"; do   # built from files installed above, in manifest order
        mkdir -p "$stage/${p%/*}"
        if build "${SRC[$p]}" "$stage/$p"; then put "$p"; else echo "FAILED $p (${SRC[$p]})"; rm -f "$stage/$p"; failed+=("$p"); fi
    done
    find "$stage" -depth -type d -empty -delete 2>/dev/null
fi

if [ $check = 1 ]; then counts="$n_ok files verified in $dest"
else counts="$((n_ok + n_new)) files verified in $dest ($n_ok already there, $n_new fetched)"; fi
echo "fetch.sh (${sets[*]}): $counts$([ $n_skip = 0 ] || echo ", $n_skip mirror-only skipped")"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fetch.sh: ${#failed[@]} file(s) missing or not verified:"
    printf '  %s\n' "${failed[@]}"
    exit 1
fi
