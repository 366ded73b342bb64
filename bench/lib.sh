# shellcheck shell=bash
# bench/lib.sh: what bench/run.sh and bench/run_gpu.sh share, sourced by both:
# reading the "key value" lines the benchmarks and their peers print, running
# a peer, and the rows of the results table with their Markdown and JSON forms.

# "key value" lines -> the value of key in file $1 (empty when absent)
get() { awk -v k="$2" '$1 == k { sub(/^[^ ]+ /, ""); print; exit }' "$1"; }
# a / b with 2 decimals, empty when either is missing
div() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b != "" && b + 0 != 0) printf "%.2f", a / b }'; }

# run_peer OUT LABEL TIMEOUT CMD...: runs a peer script, its "key value" lines
# into OUT; OUT.status gets "LABEL VERSION" when it ran (", timed out" when
# TIMEOUT seconds ended it: the rows it finished stand) or "missing (why)".
run_peer() {
    local o=$1 label=$2 limit=$3 rc=0
    shift 3
    timeout "$limit" "$@" > "$o" 2> "$o.err" || rc=$?
    cat "$o" >&2
    if [ -n "$(get "$o" peer_missing)" ]; then echo "missing ($(get "$o" peer_missing))"
    elif [ "$rc" = 124 ]; then echo "$label $(get "$o" version), timed out after $limit s"
    elif [ "$rc" != 0 ]; then echo "missing ($(basename "$2") failed: $(tail -n 1 "$o.err"))"
    else echo "$label $(get "$o" version)"
    fi > "$o.status"
    echo "peer: $(cat "$o.status")" >&2
}
# peer_name FILE KEY: the peer column for a row: the peer's label when it
# gave KEY, else "missing (why)"
peer_name() {
    local st
    st=$(cat "$1.status" 2> /dev/null || echo "missing (not run)")
    if [ -n "$(get "$1" "$2")" ]; then echo "${st%%, timed out*}"
    else case $st in missing*) echo "$st" ;; *", timed out"*) echo "missing (${st#*, })" ;; *) echo "missing (no result)" ;; esac
    fi
}

# Rows: measure, ours, peer name, peer value, ratio, unit
rows=()
US=$'\x1f'   # field separator: not whitespace, so empty fields survive `read`
row() { rows+=("$1$US$2$US$3$US$4$US$5$US$6"); }

# The rows as a Markdown table on stdout.
print_table() {
    local r m o pn pv ra u peer
    echo
    echo "| measure | ours | peer | ratio | unit |"
    echo "|---|---|---|---|---|"
    for r in "${rows[@]}"; do
        IFS=$US read -r m o pn pv ra u <<< "$r"
        if [ -z "$pn" ]; then peer="—"
        elif [ -n "$pv" ]; then peer="$pv ($pn)"
        else peer="$pn"
        fi
        echo "| $m | ${o:-missing} | $peer | ${ra:-—} | $u |"
    done
}

json_str() { local s=${1//\\/\\\\}; s=${s//\"/\\\"}; printf '"%s"' "$s"; }
json_num() { if [ -n "$1" ]; then printf '%s' "$1"; else printf 'null'; fi; }
# write_json OUT MACHINE: the rows as a JSON array in OUT, written atomically.
write_json() {
    local out=$1 machine=$2 tmp="$1.tmp.$$" n=${#rows[@]} i=0 r m o pn pv ra u
    {
        echo "["
        for r in "${rows[@]}"; do
            IFS=$US read -r m o pn pv ra u <<< "$r"
            i=$((i + 1))
            printf '  {"measure": %s, "ours": %s, "peer": %s, "peer_value": %s, "ratio": %s, "unit": %s, "machine": %s}' \
                "$(json_str "$m")" "$(json_num "$o")" "$(if [ -n "$pn" ]; then json_str "$pn"; else printf 'null'; fi)" \
                "$(json_num "$pv")" "$(json_num "$ra")" "$(json_str "$u")" "$(json_str "$machine")"
            [ "$i" -lt "$n" ] && echo "," || echo
        done
        echo "]"
    } > "$tmp"
    mv "$tmp" "$out"
    echo "wrote $out" >&2
}
