#!/usr/bin/env bash
# Benchmark of the `backup` binary against the original's pipeline, side by side in one run.
#
#   scripts/bench-backup.sh [--gb N] [--big-gb M] [--repeat R] [--no-build] [--prepare-only] [--md FILE]
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
#    for a pipeline that is the largest single process of it; for `backup` the larger of the
#    backup process and its tar child). The fast pipelines run R rounds (default 3),
#    interleaved, best wall time kept: the machine may be shared.
# 3. Runs `backup` once more on an M GiB input (default 4: the N GiB set copied until M) to
#    show that peak RSS does not grow with input size.
#
# Needs: tar, gpg, zstd, python3, /usr/bin/time (Debian: tar gnupg zstd python3 time), cargo.
#
#   scripts/bench-backup.sh --s3 [--gb N] [--repeat R] [--port P] [--no-original] [--md FILE]
#
# Remote instead (issue 11's targets): an incompressible N GiB folder (default 1; random bytes,
# so zstd passes it through and the figures are transfer, not compression) backed up by
# `backup` to a local destination alone, to moto's S3 server alone (scripts/moto-test-server.sh
# on 127.0.0.1, port P or a free one), and to both in one job; R rounds (default 3),
# interleaved, best wall kept. Then the original (PyPI `rossigee-backups` with `awscli`, in a
# venv under $BENCH_DIR made on first use; --no-original skips it) doing the same S3 backup:
# tar to a temp file, gpg -c to a temp file, `aws s3 cp`; and aws-cli uploading the tar file
# alone (moto's own pace, the ceiling for any client). Each row has the load average at its
# start and the CPU seconds moto used during it (moto runs on the same cores: its CPU is CPU
# the backup does not get). Ends with the targets: S3 peak RSS < 150 MB, S3 throughput within
# 20 % of local, local + S3 within 20 % of the slower alone. Needs curl and moto[server]
# (scripts/install-deps.sh); the original's rows need python3's venv (Debian: python3-venv).
#
#   scripts/bench-backup.sh --ssh [--gb N] [--repeat R] [--md FILE]
#
# folder-ssh instead (issue 18): the same N GiB mixed folder read over a loopback OpenSSH
# server (scripts/sshd-test-server.sh; needs root and openssh-server) by `backup` with a
# folder-ssh source, against `ssh host tar c | zstd -1 | gpg -z0 -c`, the original's
# `ssh host tar c | gpg -c`, and `backup` with the local folder source on the same input.
# See scripts/bench-backup-ssh.sh.
#
#   scripts/bench-backup.sh --parallel [--gb N] [--repeat R] [--md FILE]
#
# Parallel sources instead (issue 20): two N GiB mixed folders in one job, encrypted, to a
# local destination, with `max_parallel_sources` 1 and 2 (and two processes at once): wall
# time, CPU and peak RSS; then a full restore of one copy against `restore --path` of one
# small file of it. Deletes its inputs and outputs at the end. See
# scripts/bench-backup-parallel.sh.
set -euo pipefail

GB=1
BIG_GB=4
BUILD=1
REPEAT=
PREPARE_ONLY=0
MD=""
S3=0
SSH_BENCH=0
PARALLEL=0
PORT=
ORIGINAL=1
while (($#)); do
    case $1 in
    --s3) S3=1; shift ;;
    --ssh) SSH_BENCH=1; shift ;;
    --parallel) PARALLEL=1; shift ;;
    --port) PORT=$2; shift 2 ;;
    --no-original) ORIGINAL=0; shift ;;
    --gb) GB=$2; shift 2 ;;
    --big-gb) BIG_GB=$2; shift 2 ;;
    --repeat) REPEAT=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --prepare-only) PREPARE_ONLY=1; BUILD=0; shift ;;
    --md) MD=$2; shift 2 ;;
    -h | --help) awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
REPEAT=${REPEAT:-3}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/tmp/custos-bench-backup}
# The workspace's own target directory (override with CARGO_TARGET_DIR).
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
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

if ((S3)); then
    # shellcheck source=scripts/bench-backup-s3.sh
    source "$ROOT/scripts/bench-backup-s3.sh"
    exit $?
fi

IN=$BENCH_DIR/in-${GB}g
echo "generating ${GB} GiB input in $IN (deterministic; reused when present) ..." >&2
gen_set "$IN" "$GB" 42
if ((PREPARE_ONLY)); then echo "prepared $IN" >&2; exit 0; fi
INPUT_BYTES=$(tar cf - -C "$(dirname "$IN")" "./$(basename "$IN")" | wc -c)
echo "input: $(du -sh --apparent-size "$IN" | cut -f1), tar stream $INPUT_BYTES bytes; warming page cache" >&2

# ------------------------------------------------------------------ measurement
# Each fast pipeline runs REPEAT times, interleaved (round 1: A B C, round 2: A B C, ...) so
# that load from other processes hits all of them alike; the table shows the best wall time
# and the highest peak RSS seen. The two gpg-zlib pipelines (several times slower) run once.
declare -A BEST_WALL MAX_RSS OUT_BYTES IN_BYTES
ORDER=()
FAILED=0
# measure NAME OUTPUT_FILE_OR_DIR INPUT_BYTES CMD...: run under /usr/bin/time -v.
measure() {
    local name=$1 out=$2 bytes=$3; shift 3
    [[ -n ${IN_BYTES[$name]:-} ]] || ORDER+=("$name")
    IN_BYTES[$name]=$bytes
    if [[ -d $out ]]; then rm -rf "${out:?}"/*; elif [[ -n $out ]]; then rm -f "$out"; fi
    sync
    local tf=$WORK/time.out
    if ! "$TIME" -v -o "$tf" "$@"; then
        echo "FAILED: $name" >&2
        cat "$tf" >&2
        BEST_WALL[$name]=FAILED
        FAILED=1
        return 0
    fi
    local wall rss outsz
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$tf" | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$tf")
    if [[ -n $out ]]; then outsz=$(du -sb "$out" | cut -f1); else outsz=0; fi
    OUT_BYTES[$name]=$outsz
    if [[ ${BEST_WALL[$name]:-} != FAILED ]] && { [[ -z ${BEST_WALL[$name]:-} ]] || awk -v a="$wall" -v b="${BEST_WALL[$name]}" 'BEGIN { exit !(a < b) }'; }; then
        BEST_WALL[$name]=$wall
    fi
    if [[ -z ${MAX_RSS[$name]:-} ]] || ((rss > MAX_RSS[$name])); then MAX_RSS[$name]=$rss; fi
    echo "  $name: ${wall}s, $(awk -v b="$bytes" -v s="$wall" 'BEGIN { printf "%.0f", b / 1e6 / s }') MB/s, peak RSS $((rss / 1024)) MiB" >&2
}

row() { # row NAME: the markdown line for NAME
    local name=$1 wall=${BEST_WALL[$1]} bytes=${IN_BYTES[$1]} out=${OUT_BYTES[$1]:-0}
    if [[ $wall == FAILED ]]; then echo "| $name | FAILED | | | | |"; return; fi
    echo "| $name | $(printf '%.2f' "$wall") | $(awk -v b="$bytes" -v s="$wall" 'BEGIN { printf "%.0f", b / 1e6 / s }') | $((MAX_RSS[$name] / 1024)) | $(awk -v o="$out" 'BEGIN { if (o>0) printf "%.0f", o/1e6; else print "-" }') | $(awk -v o="$out" -v b="$bytes" 'BEGIN { if (o>0) printf "%.3f", o/b; else print "-" }') |"
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
tar cf - -C "$(dirname "$IN")" "./$(basename "$IN")" >/dev/null # warm cache
PARENT=$(dirname "$IN")
BASE=$(basename "$IN")
GPG="gpg --batch --quiet --yes --pinentry-mode loopback --passphrase-file '$WORK/pass'"
if ((SSH_BENCH)); then
    # The ssh login user reads the input.
    chmod -R a+rX "$IN"
    chmod a+rx "$BENCH_DIR"
    # shellcheck source=scripts/bench-backup-ssh.sh
    source "$ROOT/scripts/bench-backup-ssh.sh"
    exit $?
fi
if ((PARALLEL)); then
    # shellcheck source=scripts/bench-backup-parallel.sh
    source "$ROOT/scripts/bench-backup-parallel.sh"
    exit $?
fi

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

N_ORIG="original: tar \| gpg -c (AES256, zlib)"
N_SHELL="shell: tar \| zstd -1 \| gpg -z0 -c"
N_BACKUP="backup (zstd + OpenPGP, default)"
N_VERIFY="backup verify (read + decrypt + sha256)"
N_RESTORE="backup restore --to - (tar to /dev/null)"
N_BORIG="backup, \"layout\": \"original\" (.tar.gpg, zlib)"
echo "running (${GB} GiB, $REPEAT rounds) ..." >&2
measure "$N_ORIG" "$WORK/out/orig.tar.gpg" "$INPUT_BYTES" \
    sh -c "tar cf - -C '$PARENT' './$BASE' | $GPG --symmetric --cipher-algo AES256 -o '$WORK/out/orig.tar.gpg'"
for _ in $(seq 1 "$REPEAT"); do
    measure "$N_SHELL" "$WORK/out/shell.tar.zst.gpg" "$INPUT_BYTES" \
        sh -c "tar cf - -C '$PARENT' './$BASE' | zstd -1 -q | $GPG -z0 --symmetric --cipher-algo AES256 -o '$WORK/out/shell.tar.zst.gpg'"
    measure "$N_BACKUP" "$WORK/out/backup" "$INPUT_BYTES" "$BACKUP" "$WORK/job.json" >/dev/null
    measure "$N_VERIFY" "" "$INPUT_BYTES" "$BACKUP" verify "$WORK/job.json" >/dev/null
    measure "$N_RESTORE" "" "$INPUT_BYTES" sh -c "'$BACKUP' restore '$WORK/job.json' --source bench --to - 2>/dev/null >/dev/null"
done
# Sanity: the default object decrypts with real gpg and unpacks with zstd + tar.
OBJ=$(find "$WORK/out/backup" -name '*.gpg' | head -1)
gpg --batch --quiet --pinentry-mode loopback --passphrase-file "$WORK/pass" -d "$OBJ" | zstd -dq | tar tf - | wc -l >"$WORK/members"
echo "sanity: $OBJ decrypts with gpg, $(cat "$WORK/members") tar members" >&2
measure "$N_BORIG" "$WORK/out/backup-orig" "$INPUT_BYTES" "$BACKUP" "$WORK/job-orig.json" >/dev/null
ROWS=()
for n in "${ORDER[@]}"; do ROWS+=("$(row "$n")"); done

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
    echo "running (${BIG_GB} GiB) ..." >&2
    N_BIG="backup (zstd + OpenPGP), ${BIG_GB} GiB input"
    measure "$N_BIG" "$WORK/out/backup-big" "$BIG_BYTES" "$BACKUP" "$WORK/job-big.json" >/dev/null
    BIG_ROWS=("$(row "$N_BIG")")
    rm -rf "$WORK/out"/*
fi

# ------------------------------------------------------------------ report
CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
{
    echo "Machine: $(nproc) CPUs ($CPU), $(free -g | awk '/Mem:/ {print $2}') GiB RAM; $(uname -r); page cache warm; load average before the run: $LOAD_BEFORE."
    echo "Best of $REPEAT interleaved rounds for shell/backup/verify/restore; the gpg-zlib pipelines ran once."
    echo "Input: ${GB} GiB mixed folder (half pseudo-random-word text, half random bytes; 2-8 MiB files plus 12288 files of 4 KiB), tar stream $INPUT_BYTES bytes."
    echo "Tools: $(tar --version | head -1), $(gpg --version | head -1), zstd $(zstd -V | grep -o 'v[0-9.]*')."
    echo
    echo "| pipeline | wall s | MB/s (input) | peak RSS MiB | output MB | ratio |"
    echo "|---|---:|---:|---:|---:|---:|"
    printf '%s\n' "${ROWS[@]}" "${BIG_ROWS[@]}"
} | tee "${MD:-/dev/null}"
exit $FAILED
