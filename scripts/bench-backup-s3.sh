# The `--s3` part of scripts/bench-backup.sh (sourced by it, not run alone): local alone, moto S3
# alone, local + S3 in one job, and the original's S3 upload, side by side. See that script's
# header for what is measured; it provides ROOT, BENCH_DIR, BACKUP, TIME, PASS, WORK, GB,
# REPEAT, PORT, ORIGINAL, PREPARE_ONLY, MD.

for t in curl; do
    command -v "$t" >/dev/null || { echo "missing: $t (Debian package: $t)" >&2; exit 3; }
done

# ------------------------------------------------------------------ data
# N GiB of random bytes in 8 MiB files (deterministic): incompressible, so zstd -1 passes it
# through and what is measured is encryption + transfer.
IN=$BENCH_DIR/random-${GB}g
if ! [[ -f $IN/.complete && $(cat "$IN/.complete") == "$GB-7" ]]; then
    echo "generating ${GB} GiB of random bytes in $IN ..." >&2
    rm -rf "$IN"
    mkdir -p "$IN"
    python3 - "$IN" "$GB" <<'PY'
import os, random, sys
root, gib = sys.argv[1], float(sys.argv[2])
rng = random.Random(7)
size = 8 << 20
for i in range(int(gib * (1 << 30)) // size):
    with open(os.path.join(root, f"r{i:05d}"), "wb") as f:
        f.write(rng.randbytes(size))
PY
    echo "$GB-7" >"$IN/.complete"
fi
if ((PREPARE_ONLY)); then echo "prepared $IN" >&2; exit 0; fi
INPUT_BYTES=$(tar cf - -C "$(dirname "$IN")" "./$(basename "$IN")" | wc -c) # also warms the cache
DATA_BYTES=$(du -sb --exclude=.complete "$IN" | cut -f1)

# ------------------------------------------------------------------ moto
PORT=${PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
ENDPOINT=http://127.0.0.1:$PORT
BUCKET=bench
"$ROOT/scripts/moto-test-server.sh" "$PORT" >"$WORK/moto.out" 2>"$WORK/moto.log" &
MOTO=$!
trap 'kill "$MOTO" 2>/dev/null || true; gpgconf --kill gpg-agent >/dev/null 2>&1 || true' EXIT
for _ in $(seq 1 300); do
    curl -sf -o /dev/null "$ENDPOINT/" && break
    kill -0 "$MOTO" 2>/dev/null || { cat "$WORK/moto.log" >&2; echo "moto did not start" >&2; exit 3; }
    sleep 0.1
done
curl -sf -o /dev/null "$ENDPOINT/" || { echo "moto not answering on $ENDPOINT" >&2; exit 3; }
TICKS=$(getconf CLK_TCK)
moto_cpu() { awk -v t="$TICKS" '{ print ($14 + $15) / t }' "/proc/$MOTO/stat"; }
# An empty store with an empty bucket before each run: moto keeps every object.
fresh_bucket() {
    curl -sf -o /dev/null -X POST "$ENDPOINT/moto-api/reset"
    curl -sf -o /dev/null -X PUT "$ENDPOINT/$BUCKET"
}
# Bytes stored in the bucket (sum of the listed object sizes).
bucket_bytes() {
    curl -sf "$ENDPOINT/$BUCKET?list-type=2" | grep -o '<Size>[0-9]*</Size>' | tr -dc '0-9\n' |
        awk '{ s += $1 } END { print s + 0 }'
}

# ------------------------------------------------------------------ jobs
S3_DEST=$(
    cat <<EOF
{ "id": "s3", "type": "s3", "bucket": "$BUCKET", "region": "us-east-1", "endpoint_url": "$ENDPOINT",
      "credentials": { "aws_access_key_id": "bench", "aws_secret_access_key": "bench-secret" } }
EOF
)
LOCAL_DEST="{ \"id\": \"disk\", \"type\": \"local\", \"path\": \"$WORK/out/local\" }"
job_with() { # job_with FILE DEST_JSON...
    local file=$1 dests
    shift
    dests=$(IFS=,; echo "$*")
    cat >"$file" <<EOF
{
  "hostname": "bench",
  "sources": [ { "id": "bench", "name": "bench random", "type": "folder", "path": "$IN", "passphrase": "$PASS" } ],
  "destinations": [ $dests ]
}
EOF
    chmod 600 "$file"
}
job_with "$WORK/local.json" "$LOCAL_DEST"
job_with "$WORK/s3.json" "$S3_DEST"
job_with "$WORK/both.json" "$LOCAL_DEST" "$S3_DEST"

# The original, from PyPI into a venv (made once, reused), with awscli for its `aws s3 cp`.
ORIG_VENV=$BENCH_DIR/original-venv
if ((ORIGINAL)) && ! [[ -x $ORIG_VENV/bin/backup && -x $ORIG_VENV/bin/aws ]]; then
    echo "installing the original (rossigee-backups, awscli) into $ORIG_VENV ..." >&2
    if ! { python3 -m venv "$ORIG_VENV" && "$ORIG_VENV/bin/pip" install --quiet rossigee-backups awscli; } >&2; then
        echo "could not install the original: its row is left out" >&2
        ORIGINAL=0
    fi
fi
if ((ORIGINAL)); then
    mkdir -p "$WORK/orig-tmp"
    cat >"$WORK/original.json" <<EOF
{
  "modules": [ "backups.sources.folder", "backups.destinations.s3" ],
  "sources": [ { "id": "bench", "name": "bench random", "type": "folder", "path": "$IN",
                 "passphrase": "$PASS", "tmpdir": "$WORK/orig-tmp" } ],
  "destinations": [ $S3_DEST ],
  "notifications": []
}
EOF
    chmod 600 "$WORK/original.json"
    ORIG_VERSION=$("$ORIG_VENV/bin/pip" show rossigee-backups 2>/dev/null | awk '/^Version/ {print $2}')
fi

# ------------------------------------------------------------------ measurement
declare -A BEST_WALL MAX_RSS MOTO_S LOAD OWN_CPU
ORDER=()
FAILED=0
# measure NAME S3? CMD...: one run under GNU time with an empty bucket and output dir; the row
# keeps the best wall (with the moto CPU and load average of that run) and the highest RSS.
measure() {
    local name=$1 s3=$2
    shift 2
    [[ -n ${LOAD[$name]:-} ]] || ORDER+=("$name")
    rm -rf "$WORK/out" "$WORK/orig-tmp"/*
    mkdir -p "$WORK/out/local"
    fresh_bucket
    sync
    local load cpu0 cpu1 tf=$WORK/time.out
    load=$(cut -d' ' -f1 /proc/loadavg)
    cpu0=$(moto_cpu)
    if ! "$TIME" -v -o "$tf" "$@" >"$WORK/run.log" 2>&1; then
        echo "FAILED: $name" >&2
        tail -20 "$WORK/run.log" >&2
        BEST_WALL[$name]=FAILED
        LOAD[$name]=$load
        FAILED=1
        return 0
    fi
    cpu1=$(moto_cpu)
    if ((s3)); then
        local stored
        stored=$(bucket_bytes)
        # The files' bytes are random; only tar's headers and padding compress.
        if ((stored < DATA_BYTES)); then
            echo "FAILED: $name stored $stored bytes in the bucket, less than the $DATA_BYTES of data" >&2
            BEST_WALL[$name]=FAILED
            LOAD[$name]=$load
            FAILED=1
            return 0
        fi
    fi
    local wall rss moto own
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$tf" | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$tf")
    moto=$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { printf "%.1f", b - a }')
    own=$(awk -F': ' '/User time|System time/ { s += $2 } END { printf "%.1f", s }' "$tf")
    if [[ ${BEST_WALL[$name]:-} != FAILED ]] && { [[ -z ${BEST_WALL[$name]:-} ]] || awk -v a="$wall" -v b="${BEST_WALL[$name]}" 'BEGIN { exit !(a < b) }'; }; then
        BEST_WALL[$name]=$wall
        MOTO_S[$name]=$moto
        OWN_CPU[$name]=$own
        LOAD[$name]=$load
    fi
    if [[ -z ${MAX_RSS[$name]:-} ]] || ((rss > ${MAX_RSS[$name]})); then MAX_RSS[$name]=$rss; fi
    echo "  $name: ${wall}s, $(awk -v b="$INPUT_BYTES" -v s="$wall" 'BEGIN { printf "%.0f", b / 1e6 / s }') MB/s, peak RSS $((rss / 1024)) MiB, CPU ${own} s, moto ${moto} CPU s, load $load" >&2
}
mbps() { awk -v b="$INPUT_BYTES" -v s="${BEST_WALL[$1]}" 'BEGIN { printf "%.0f", b / 1e6 / s }'; }

N_LOCAL="backup -> local"
N_S3="backup -> S3 (moto)"
N_BOTH="backup -> local + S3, one job"
N_ORIG="original ${ORIG_VERSION:-} -> S3: tar, gpg -c, aws s3 cp (temp files)"
N_AWS="aws s3 cp of the tar file alone (upload only: moto's pace)"
echo "running (${GB} GiB random, $REPEAT rounds, moto on $ENDPOINT) ..." >&2
for _ in $(seq 1 "$REPEAT"); do
    measure "$N_LOCAL" 0 "$BACKUP" "$WORK/local.json"
    measure "$N_S3" 1 "$BACKUP" "$WORK/s3.json"
    measure "$N_BOTH" 1 "$BACKUP" "$WORK/both.json"
done
if ((ORIGINAL)); then
    measure "$N_ORIG" 1 env PATH="$ORIG_VENV/bin:$PATH" "$ORIG_VENV/bin/backup" "$WORK/original.json"
    # What moto takes at most: the same bytes as one file, uploaded by aws-cli alone (multipart,
    # 8 MiB parts, 10 at once), no tar or encryption.
    tar cf "$WORK/input.tar" -C "$(dirname "$IN")" "./$(basename "$IN")"
    measure "$N_AWS" 1 env AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret AWS_DEFAULT_REGION=us-east-1 \
        "$ORIG_VENV/bin/aws" --endpoint-url "$ENDPOINT" s3 cp --only-show-errors "$WORK/input.tar" "s3://$BUCKET/input.tar"
    rm -f "$WORK/input.tar"
fi
rm -rf "$WORK/out" "$WORK/orig-tmp"
fresh_bucket

# ------------------------------------------------------------------ report
target() { # target TEXT OK?
    if (($2)); then echo "- met: $1"; else echo "- MISSED: $1"; fi
}
ok_ratio() { # ok_ratio A B: A >= 0.8 B (throughputs)
    [[ ${BEST_WALL[$1]} != FAILED && ${BEST_WALL[$2]} != FAILED ]] &&
        awk -v a="$(mbps "$1")" -v b="$(mbps "$2")" 'BEGIN { exit !(a >= 0.8 * b) }'
}
CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
MOTO_VERSION=$(python3 -c 'import moto; print(moto.__version__)' 2>/dev/null || echo '?')
{
    echo "Machine: $(nproc) CPUs ($CPU), $(free -g | awk '/Mem:/ {print $2}') GiB RAM; $(uname -r); moto $MOTO_VERSION on the same CPUs."
    echo "Input: ${GB} GiB of random bytes (incompressible: zstd -1 passes it through, so this measures encryption and transfer), tar stream $INPUT_BYTES bytes."
    echo "backup rows: best wall of $REPEAT interleaved rounds (CPU, moto CPU and load of that round), highest peak RSS of all; the original and aws ran once. CPU s: user + system of the run (children included); moto CPU s: of the moto server during it."
    echo
    echo "| run | wall s | MB/s (input) | peak RSS MiB | CPU s | moto CPU s | load avg (1 min) at start |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    for n in "${ORDER[@]}"; do
        if [[ ${BEST_WALL[$n]} == FAILED ]]; then
            echo "| $n | FAILED | | | | | ${LOAD[$n]} |"
        else
            echo "| $n | $(printf '%.1f' "${BEST_WALL[$n]}") | $(mbps "$n") | $((${MAX_RSS[$n]} / 1024)) | ${OWN_CPU[$n]} | ${MOTO_S[$n]:-0} | ${LOAD[$n]} |"
        fi
    done
    echo
    rss_ok=0
    if [[ ${BEST_WALL[$N_S3]} != FAILED && ${BEST_WALL[$N_BOTH]} != FAILED ]] &&
        ((${MAX_RSS[$N_S3]} < 150 * 1024 && ${MAX_RSS[$N_BOTH]} < 150 * 1024)); then
        rss_ok=1
    fi
    slower=$N_LOCAL
    if [[ ${BEST_WALL[$N_S3]} != FAILED ]] &&
        awk -v a="$(mbps "$N_S3")" -v b="$(mbps "$N_LOCAL")" 'BEGIN { exit !(a < b) }'; then
        slower=$N_S3
    fi
    target "peak RSS under 150 MiB to S3 (alone and with local)" "$rss_ok"
    target "S3 throughput within 20 % of local" "$(ok_ratio "$N_S3" "$N_LOCAL" && echo 1 || echo 0)"
    target "local + S3 within 20 % of the slower alone ($slower)" "$(ok_ratio "$N_BOTH" "$slower" && echo 1 || echo 0)"
} | tee "${MD:-/dev/null}"
exit $FAILED
