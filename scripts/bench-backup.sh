#!/usr/bin/env bash
# Benchmark of the `backup` binary against the original's pipeline, side by side in one run.
#
#   scripts/bench-backup.sh [--gb N] [--big-gb M] [--no-build] [--prepare-only] [--md FILE]
#
# 1. Generates a deterministic mixed folder of N GiB (default 1: half text, half random; big
#    and small files) under $BENCH_DIR (default /tmp/custos-bench-backup), warms the page cache.
# 2. Measures, each writing its output to the same file system:
#      original   tar cf - ./in | gpg --symmetric --cipher-algo AES256        (rossigee/backups)
#      shell      tar cf - ./in | zstd -1 | gpg -z0 --symmetric --cipher-algo AES256
#      backup     `backup JOB` (release build): folder -> zstd -> OpenPGP -> local
#    plus `backup` with "layout": "original" (gpg-compatible .tar.gpg, zlib inside), and the
#    read side: `backup verify` and `backup restore --to -`.
#    Wall time, throughput (input MB / s, MB = 10^6 bytes) and peak RSS (/usr/bin/time -v;
#    for a pipeline that is the largest single process of it).
# 3. Runs `backup` once more on an M GiB input (default 4: the N GiB set copied until M) to
#    show that peak RSS does not grow with input size.
#
# Needs: tar, gpg, zstd, python3, /usr/bin/time (Debian: tar gnupg zstd python3 time), cargo.
set -euo pipefail

GB=1
BIG_GB=4
BUILD=1
PREPARE_ONLY=0
MD=""
while (($#)); do
    case $1 in
    --gb) GB=$2; shift 2 ;;
    --big-gb) BIG_GB=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --prepare-only) PREPARE_ONLY=1; BUILD=0; shift ;;
    --md) MD=$2; shift 2 ;;
    -h | --help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/tmp/custos-bench-backup}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-backup-release}
BACKUP=$CARGO_TARGET_DIR/release/backup
TIME=/usr/bin/time
PASS="bench-Passphrase-0f3c"

for t in tar gpg zstd python3 "$TIME"; do
    command -v "$t" >/dev/null || { echo "missing: $t (Debian packages: tar gnupg zstd python3 time)" >&2; exit 3; }
done

if ((BUILD)); then
    (cd "$ROOT" && cargo build --release -p custos-backup --bin backup) >&2
fi
((PREPARE_ONLY)) || [[ -x $BACKUP ]] || { echo "no release binary at $BACKUP (run without --no-build)" >&2; exit 3; }

mkdir -p "$BENCH_DIR"
WORK=$BENCH_DIR/work
rm -rf "$WORK"
mkdir -p "$WORK/gnupg" "$WORK/out"
chmod 700 "$WORK/gnupg"
export GNUPGHOME=$WORK/gnupg
printf '%s' "$PASS" >"$WORK/pass"
chmod 600 "$WORK/pass"
trap 'gpgconf --kill gpg-agent >/dev/null 2>&1 || true' EXIT

# ------------------------------------------------------------------ data
# gen_set DIR GIB SEED: half text (a 16 MiB block of pseudo-random words, each file a different
# rotation of it: compressible like prose, no long repeats within zstd -1's or gzip's window),
# half random bytes; per half: 2 MiB / 8 MiB files plus many 4 KiB files.
gen_set() {
    local dir=$1 gib=$2 seed=$3
    if [[ -f $dir/.complete ]] && [[ $(cat "$dir/.complete") == "$gib-$seed" ]]; then return 0; fi
    rm -rf "$dir"
    mkdir -p "$dir"
    python3 - "$dir" "$gib" "$seed" <<'PY'
import os, random, sys
root, gib, seed = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed)
half = int(gib * (1 << 30)) // 2
MiB, KiB = 1 << 20, 1 << 10
letters = "etaoinshrdlcumwfgypbvkjxqz"
weights = [12.7, 9.1, 8.2, 7.5, 7.0, 6.7, 6.3, 6.1, 6.0, 4.3, 4.0, 2.8, 2.8, 2.4, 2.4, 2.2, 2.0, 2.0, 1.9, 1.5, 1.0, 0.8, 0.2, 0.2, 0.1, 0.1]
vocab = ["".join(rng.choices(letters, weights, k=rng.randint(1, 10))) for _ in range(20000)]
words = rng.choices(vocab, k=(16 * MiB) // 5)
block = bytearray()
line = 0
for w in words:
    block += w.encode()
    line += len(w) + 1
    if line > 72:
        block += b".\n"
        line = 0
    else:
        block += b" "
block = bytes(block[: 16 * MiB])

def text(n):
    off = rng.randrange(len(block))
    out = (block[off:] + block[:off])
    while len(out) < n:
        out += out
    return out[:n]

def emit(sub, count, size, gen):
    d = os.path.join(root, sub)
    os.makedirs(d, exist_ok=True)
    for i in range(count):
        with open(os.path.join(d, f"f{i:05d}"), "wb") as f:
            f.write(gen(size))

small_text, small_rand = 16 * MiB, 32 * MiB
emit("text/small", small_text // (4 * KiB), 4 * KiB, text)
emit("text/big", (half - small_text) // (2 * MiB), 2 * MiB, text)
emit("random/small", small_rand // (4 * KiB), 4 * KiB, rng.randbytes)
emit("random/big", (half - small_rand) // (8 * MiB), 8 * MiB, rng.randbytes)
PY
    echo "$gib-$seed" >"$dir/.complete"
}

IN=$BENCH_DIR/in-${GB}g
echo "generating ${GB} GiB input in $IN (deterministic; reused when present) ..." >&2
gen_set "$IN" "$GB" 42
if ((PREPARE_ONLY)); then echo "prepared $IN" >&2; exit 0; fi
INPUT_BYTES=$(tar cf - -C "$(dirname "$IN")" "./$(basename "$IN")" | wc -c)
echo "input: $(du -sh --apparent-size "$IN" | cut -f1), tar stream $INPUT_BYTES bytes; warming page cache" >&2

# ------------------------------------------------------------------ measurement
ROWS=()
FAILED=0
# measure NAME OUTPUT_FILE_OR_DIR INPUT_BYTES CMD...: run under /usr/bin/time -v, record a row.
measure() {
    local name=$1 out=$2 bytes=$3; shift 3
    sync
    local tf=$WORK/time.$RANDOM
    if ! "$TIME" -v -o "$tf" "$@"; then
        echo "FAILED: $name" >&2
        cat "$tf" >&2
        ROWS+=("| $name | FAILED | | | | |")
        FAILED=1
        return 0
    fi
    local wall rss outsz mbs
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$tf" | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$tf")
    if [[ -n $out ]]; then outsz=$(du -sb "$out" | cut -f1); else outsz=0; fi
    mbs=$(awk -v b="$bytes" -v s="$wall" 'BEGIN { printf "%.0f", b / 1e6 / s }')
    ROWS+=("| $name | $(printf '%.2f' "$wall") | $mbs | $((rss / 1024)) | $(awk -v o="$outsz" 'BEGIN { if (o>0) printf "%.0f", o/1e6; else print "-" }') | $(awk -v o="$outsz" -v b="$bytes" 'BEGIN { if (o>0) printf "%.3f", o/b; else print "-" }') |")
    echo "  $name: ${wall}s, $mbs MB/s, peak RSS $((rss / 1024)) MiB" >&2
}

tar cf - -C "$(dirname "$IN")" "./$(basename "$IN")" >/dev/null # warm cache
PARENT=$(dirname "$IN")
BASE=$(basename "$IN")

echo "running (${GB} GiB) ..." >&2
measure "original: tar \| gpg -c (AES256, zlib)" "$WORK/out/orig.tar.gpg" "$INPUT_BYTES" \
    sh -c "tar cf - -C '$PARENT' './$BASE' | gpg --batch --quiet --pinentry-mode loopback --passphrase-file '$WORK/pass' --symmetric --cipher-algo AES256 -o '$WORK/out/orig.tar.gpg'"
measure "shell: tar \| zstd -1 \| gpg -z0 -c" "$WORK/out/shell.tar.zst.gpg" "$INPUT_BYTES" \
    sh -c "tar cf - -C '$PARENT' './$BASE' | zstd -1 -q | gpg --batch --quiet --pinentry-mode loopback --passphrase-file '$WORK/pass' -z0 --symmetric --cipher-algo AES256 -o '$WORK/out/shell.tar.zst.gpg'"

job() { # job FILE DEST LAYOUT SRC
    mkdir -p "$2"
    cat >"$1" <<EOF
{
  "hostname": "bench",
  "sources": [
    { "id": "bench", "name": "bench folder", "type": "folder", "path": "$4",
      "passphrase": "$PASS"$( [[ $3 == original ]] && printf ', "layout": "original"') }
  ],
  "destinations": [ { "id": "disk", "type": "local", "path": "$2" } ]
}
EOF
    chmod 600 "$1"
}
job "$WORK/job.json" "$WORK/out/backup" custos "$IN"
job "$WORK/job-orig.json" "$WORK/out/backup-orig" original "$IN"
measure "backup (zstd + OpenPGP, default)" "$WORK/out/backup" "$INPUT_BYTES" "$BACKUP" "$WORK/job.json" >/dev/null
measure "backup verify (read + decrypt + sha256)" "" "$INPUT_BYTES" "$BACKUP" verify "$WORK/job.json" >/dev/null
measure "backup restore --to - (tar to /dev/null)" "" "$INPUT_BYTES" sh -c "'$BACKUP' restore '$WORK/job.json' --source bench --to - >/dev/null"
measure "backup, \"layout\": \"original\" (.tar.gpg, zlib)" "$WORK/out/backup-orig" "$INPUT_BYTES" "$BACKUP" "$WORK/job-orig.json" >/dev/null

# Sanity: the default object decrypts with real gpg and unpacks with zstd + tar.
OBJ=$(find "$WORK/out/backup" -name '*.gpg' | head -1)
gpg --batch --quiet --pinentry-mode loopback --passphrase-file "$WORK/pass" -d "$OBJ" | zstd -dq | tar tf - | wc -l >"$WORK/members"
echo "sanity: $OBJ decrypts with gpg, $(cat "$WORK/members") tar members" >&2

rm -rf "$WORK/out"/*
BIG_ROWS=()
if [[ $BIG_GB != 0 ]]; then
    BIG=$BENCH_DIR/in-${BIG_GB}g
    echo "preparing ${BIG_GB} GiB input in $BIG ..." >&2
    if ! [[ -f $BIG/.complete && $(cat "$BIG/.complete") == "$BIG_GB-copies" ]]; then
        rm -rf "$BIG"
        mkdir -p "$BIG"
        n=$(awk -v b="$BIG_GB" -v g="$GB" 'BEGIN { n = b / g; if (n > int(n)) n = int(n) + 1; print n }')
        for i in $(seq 1 "$n"); do cp -a "$IN" "$BIG/part$i"; done
        echo "$BIG_GB-copies" >"$BIG/.complete"
    fi
    BIG_BYTES=$(tar cf - -C "$(dirname "$BIG")" "./$(basename "$BIG")" | wc -c)
    job "$WORK/job-big.json" "$WORK/out/backup-big" custos "$BIG"
    SAVED=("${ROWS[@]}")
    ROWS=()
    echo "running (${BIG_GB} GiB) ..." >&2
    measure "backup (zstd + OpenPGP), ${BIG_GB} GiB input" "$WORK/out/backup-big" "$BIG_BYTES" "$BACKUP" "$WORK/job-big.json" >/dev/null
    BIG_ROWS=("${ROWS[@]}")
    ROWS=("${SAVED[@]}")
    rm -rf "$WORK/out"/*
fi

# ------------------------------------------------------------------ report
CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
{
    echo "Machine: $(nproc) CPUs ($CPU), $(free -g | awk '/Mem:/ {print $2}') GiB RAM; $(uname -r); page cache warm."
    echo "Input: ${GB} GiB mixed folder (half pseudo-random-word text, half random bytes; 2-8 MiB files plus 12288 files of 4 KiB), tar stream $INPUT_BYTES bytes."
    echo "Tools: $(tar --version | head -1), $(gpg --version | head -1), zstd $(zstd -V | grep -o 'v[0-9.]*')."
    echo
    echo "| pipeline | wall s | MB/s (input) | peak RSS MiB | output MB | ratio |"
    echo "|---|---:|---:|---:|---:|---:|"
    printf '%s\n' "${ROWS[@]}" "${BIG_ROWS[@]}"
} | tee "${MD:-/dev/null}"
exit $FAILED
