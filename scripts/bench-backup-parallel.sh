# The `--parallel` part of scripts/bench-backup.sh (sourced by it, not run alone): issue 20's
# figures. It provides ROOT, BENCH_DIR, BACKUP, TIME, PASS, WORK, GB, REPEAT, MD, IN, gen_set
# and the measure helper.
#
# 1. Two N GiB folders (IN, seed 42, and a second set of the same shape, seed 43: half text,
#    half random bytes, big and small files) as two sources of one job, encrypted as by
#    default (zstd -1 + OpenPGP with a passphrase), to one local destination:
#      - `max_parallel_sources: 1` (one source after the other, each zstd with every core),
#      - `max_parallel_sources: 2` (both at once, the cores shared: one zstd thread each on
#        2 cores),
#      - two `backup` processes started at once, one source each (both at once, each zstd
#        with every core: what not sharing the cores would give).
#    R rounds interleaved, best wall time kept; peak RSS is GNU time's (the largest single
#    process: `backup`, or a tar child), CPU % is user + system over wall.
# 2. Partial restore: a one-source job's copy of IN, restored whole into a directory and with
#    `--path` naming one 4 KiB file of it (checked byte for byte), R rounds interleaved.
# Every input and output under BENCH_DIR is deleted at the end.

IN2=$BENCH_DIR/in-${GB}g-b
echo "generating the second ${GB} GiB input in $IN2 ..." >&2
gen_set "$IN2" "$GB" 43
trap 'rm -rf "$IN" "$IN2" "$WORK"; gpgconf --kill gpg-agent >/dev/null 2>&1 || true' EXIT
tar_bytes() { tar cf - -C "$(dirname "$1")" "./$(basename "$1")" | wc -c; }
BYTES_A=$(tar_bytes "$IN")
BYTES_B=$(tar_bytes "$IN2")
BYTES_AB=$((BYTES_A + BYTES_B))

pjob() { # pjob FILE DEST AT_ONCE ID=FOLDER...: a job of these folder sources to DEST
    local file=$1 dest=$2 at_once=$3 sources=""
    shift 3
    mkdir -p "$dest"
    for s in "$@"; do
        sources+="${sources:+,}
    { \"id\": \"${s%%=*}\", \"type\": \"folder\", \"path\": \"${s#*=}\", \"passphrase\": \"$PASS\" }"
    done
    cat >"$file" <<EOF
{
  "hostname": "bench",
  "max_parallel_sources": $at_once,
  "sources": [$sources
  ],
  "destinations": [ { "id": "disk", "type": "local", "path": "$dest" } ]
}
EOF
    chmod 600 "$file"
}
OUT=$WORK/out
pjob "$WORK/seq.json" "$OUT/seq" 1 "a=$IN" "b=$IN2"
pjob "$WORK/par.json" "$OUT/par" 2 "a=$IN" "b=$IN2"
# The two processes share one destination folder (measure empties it, never removes it).
pjob "$WORK/one-a.json" "$OUT/two" 1 "a=$IN"
pjob "$WORK/one-b.json" "$OUT/two" 1 "b=$IN2"

N_SEQ="one job, \`max_parallel_sources: 1\`"
N_PAR="one job, \`max_parallel_sources: 2\`"
N_TWO="two \`backup\` processes at once, one source each"
declare -A CPU_PCT
# run_row NAME OUT CMD...: measure, keep the CPU % of the best round, free the disk.
run_row() {
    local name=$1 out=$2 before=${BEST_WALL[$1]:-}
    shift 2
    measure "$name" "$out" "$BYTES_AB" "$@" >/dev/null
    if [[ ${BEST_WALL[$name]} != "$before" ]]; then
        CPU_PCT[$name]=$(awk -F': ' '/Percent of CPU/ {print $2}' "$WORK/time.out")
    fi
}
echo "running 2 x ${GB} GiB, $REPEAT rounds ..." >&2
# Each row starts with an empty destination and nothing dirty (measure syncs).
for _ in $(seq 1 "$REPEAT"); do
    run_row "$N_SEQ" "$OUT/seq" "$BACKUP" "$WORK/seq.json"
    rm -rf "${OUT:?}/seq"/*
    run_row "$N_PAR" "$OUT/par" "$BACKUP" "$WORK/par.json"
    # Both copies are there and whole.
    "$BACKUP" verify "$WORK/par.json" >/dev/null 2>&1 || { echo "verify of the parallel run failed" >&2; FAILED=1; }
    rm -rf "${OUT:?}/par"/*
    # The row fails when either process does.
    run_row "$N_TWO" "$OUT/two" sh -c "'$BACKUP' '$WORK/one-a.json' & a=\$!; '$BACKUP' '$WORK/one-b.json'; b=\$?; wait \$a && [ \$b = 0 ]"
    rm -rf "${OUT:?}/two"/*
done

# ------------------------------------------------------------------ partial restore
echo "partial restore ..." >&2
pjob "$WORK/restore.json" "$OUT/copy" 1 "a=$IN"
"$BACKUP" "$WORK/restore.json" >/dev/null
SMALL=$(basename "$IN")/text/small/f00100
N_FULL="\`backup restore --to DIR\` (the whole ${GB} GiB copy)"
N_PART="\`backup restore --to DIR --path $SMALL\` (one 4 KiB file)"
for _ in $(seq 1 "$REPEAT"); do
    measure "$N_FULL" "$OUT/full" "$BYTES_A" "$BACKUP" restore "$WORK/restore.json" --source a --to "$OUT/full" >/dev/null
    measure "$N_PART" "$OUT/part" "$BYTES_A" "$BACKUP" restore "$WORK/restore.json" --source a --to "$OUT/part" --path "$SMALL" >/dev/null
    cmp -s "$OUT/part/$SMALL" "$IN/text/small/f00100" || { echo "partial restore: $SMALL differs" >&2; FAILED=1; }
    [[ $(find "$OUT/part" -type f | wc -l) == 1 ]] || { echo "partial restore wrote more than one file" >&2; FAILED=1; }
    rm -rf "${OUT:?}/full" "${OUT:?}/part"
done

# ------------------------------------------------------------------ report
prow() { # prow NAME: | name | wall | MB/s | CPU | RSS | speed-up against the sequential row |
    local n=$1 w=${BEST_WALL[$1]}
    if [[ $w == FAILED ]]; then echo "| $n | FAILED | | | | |"; return; fi
    echo "| $n | $(printf '%.2f' "$w") | $(awk -v b="${IN_BYTES[$n]}" -v s="$w" 'BEGIN { printf "%.0f", b / 1e6 / s }') | ${CPU_PCT[$n]:--} | $((MAX_RSS[$n] / 1024)) | $(awk -v a="${BEST_WALL[$N_SEQ]}" -v b="$w" 'BEGIN { printf "%.2fx", a / b }') |"
}
rrow() { # rrow NAME: | name | wall | peak RSS |
    local n=$1 w=${BEST_WALL[$1]}
    if [[ $w == FAILED ]]; then echo "| $n | FAILED | |"; return; fi
    echo "| $n | $(printf '%.2f' "$w") | $((MAX_RSS[$n] / 1024)) |"
}
CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
{
    echo "Machine: $(nproc) CPUs ($CPU), $(free -g | awk '/Mem:/ {print $2}') GiB RAM; $(uname -r); page cache warm; load average before the run: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg)."
    echo "Input: two ${GB} GiB mixed folders (half text, half random bytes), tar streams $BYTES_A + $BYTES_B bytes; best of $REPEAT interleaved rounds."
    echo
    echo "| run (2 sources, zstd + OpenPGP, local) | wall s | MB/s (input) | CPU | peak RSS MiB | speed-up |"
    echo "|---|---:|---:|---:|---:|---:|"
    prow "$N_SEQ"
    prow "$N_PAR"
    prow "$N_TWO"
    echo
    echo "| restore of one ${GB} GiB copy | wall s | peak RSS MiB |"
    echo "|---|---:|---:|"
    rrow "$N_FULL"
    rrow "$N_PART"
} | tee "${MD:-/dev/null}"
exit $FAILED
