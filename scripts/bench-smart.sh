#!/usr/bin/env bash
# Benchmark of smart_exporter_helper + prometheus_smart_exporter with 24 recorded drives
# (the stand-in smartctl of crates/smart-helper/tests/data replaying the fixtures in turn):
#   - /metrics latency p50/p99 over BENCH_REQUESTS sequential scrapes while refreshes go on;
#   - helper peak RSS (VmHWM) after BENCH_SWEEPS sweeps, and its binary size, dependencies
#     and lines of code;
#   - with one of the 24 drives hanging (device timeout 2 s, refresh interval 5 s): the
#     oldest data of the other 23 drives, which must stay within one refresh interval.
#
# Environment: CARGO_TARGET_DIR (release build goes there), BENCH_REQUESTS (default 1000),
# BENCH_SWEEPS (default 20), BENCH_OUT (also write the table to this file).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

BENCH_REQUESTS=${BENCH_REQUESTS:-1000}
BENCH_SWEEPS=${BENCH_SWEEPS:-20}
target=${CARGO_TARGET_DIR:-$root/target}
work=$(mktemp -d /tmp/custos-bench-smart.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT

cargo build --release -q -p custos-smart -p custos-smart-helper
helper=$target/release/smart_exporter_helper
exporter=$target/release/prometheus_smart_exporter
data=$root/crates/smart-helper/tests/data

# 24 drives: sd0..sd23, each a copy of one of the seven recorded drives with data.
drives=(sda sdb sdc sdd sde nvme0 nvme1)
fixtures=$work/fixtures
mkdir -p "$fixtures"
{
	echo '{"json_format_version":[1,0],"smartctl":{"version":[7,3],"exit_status":0},"devices":['
	for i in $(seq 0 23); do
		src=${drives[$((i % ${#drives[@]}))]}
		cp "$data/$src.json" "$fixtures/d$i.json"
		sep=$([ "$i" -lt 23 ] && echo , || true)
		echo "{\"name\":\"/dev/d$i\",\"type\":\"auto\",\"protocol\":\"ATA\"}$sep"
	done
	echo ']}'
} >"$fixtures/scan.json"
cp "$data/smartctl" "$fixtures/smartctl"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

start_pair() { # $1 = device timeout, $2 = refresh interval
	SMARTCTL_FIXTURES=$fixtures "$helper" --socket-path "$work/ipc" --smartctl "$fixtures/smartctl" \
		--device-timeout "$1" &
	pids+=($!)
	helper_pid=$!
	while [ ! -S "$work/ipc" ]; do sleep 0.05; done
	"$exporter" "$work/ipc" --device-db "$data/check_smartdb.json" -p "$port" --interval "$2" 2>/dev/null &
	pids+=($!)
	exporter_pid=$!
	until curl -sf "http://127.0.0.1:$port/metrics" | grep -q '^smart_access_error{port="/dev/d23"}'; do
		sleep 0.1
	done
}
stop_pair() {
	kill "$helper_pid" "$exporter_pid" 2>/dev/null || true
	wait "$helper_pid" "$exporter_pid" 2>/dev/null || true
	rm -f "$work/ipc"
}

# 1. Scrape latency and helper RSS, all 24 drives answering; a refresh every second.
start_pair 10 1
latency=$(python3 - "$port" "$BENCH_REQUESTS" <<'EOF'
import http.client, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
c = http.client.HTTPConnection("127.0.0.1", port)
times, size = [], 0
for _ in range(n):
    t = time.perf_counter()
    c.request("GET", "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    body = c.getresponse().read()
    times.append((time.perf_counter() - t) * 1000)
    size = len(body)
times.sort()
print(f"{times[len(times)//2]:.2f} {times[int(len(times)*0.99)-1]:.2f} {size}")
EOF
)
read -r p50 p99 body_bytes <<<"$latency"
sweeps=$(curl -sf "http://127.0.0.1:$port/metrics" | awk '/^smart_refreshes_total/ {print $2}')
while [ "${sweeps%.*}" -lt "$BENCH_SWEEPS" ]; do
	sleep 0.5
	sweeps=$(curl -sf "http://127.0.0.1:$port/metrics" | awk '/^smart_refreshes_total/ {print $2}')
done
helper_rss=$(awk '/VmHWM/ {print $2}' "/proc/$helper_pid/status")
exporter_rss=$(awk '/VmHWM/ {print $2}' "/proc/$exporter_pid/status")
stop_pair

# 2. One drive hangs: the other 23 must never be older than one refresh interval (+ the sweep).
touch "$fixtures/d5.hang"
start_pair 2 5
# Sample every 0.25 s for three refresh intervals; keep the oldest age seen.
worst=0
for _ in $(seq 1 60); do
	age=$(curl -sf "http://127.0.0.1:$port/metrics" |
		awk '/^smart_device_data_age_seconds/ && !/d5"/ { if ($2 > m) m = $2 } END { printf "%.2f", m }')
	worst=$(python3 -c "print(max($worst, $age))")
	sleep 0.25
done
hung=$(curl -sf "http://127.0.0.1:$port/metrics" | awk '/^smart_device_read_timeout\{port="\/dev\/d5"\}/ {print $2}')
stop_pair

helper_size=$(stat -c %s "$helper")
exporter_size=$(stat -c %s "$exporter")
deps=$(cargo tree -q -p custos-smart-helper -e normal --prefix none | sed 's/ (\*)//' | sort -u | grep -vc '^custos-')
loc=$(cat crates/smart-helper/src/*.rs crates/smart-wire/src/*.rs | grep -cv '^\s*$')

table="| measure | value |
|---|---|
| /metrics p50 / p99 (24 drives, OpenMetrics, $BENCH_REQUESTS scrapes) | ${p50} ms / ${p99} ms |
| /metrics body | $body_bytes bytes |
| helper peak RSS (VmHWM) after $sweeps sweeps | $((helper_rss / 1024)).$(((helper_rss % 1024) * 10 / 1024)) MiB |
| exporter peak RSS | $((exporter_rss / 1024)) MiB |
| helper binary (release, stripped of debuginfo) | $((helper_size / 1024)) KiB |
| exporter binary | $((exporter_size / 1024)) KiB |
| helper dependencies (crates besides custos') | $deps |
| helper + wire code, non-blank lines | $loc |
| one of 24 drives hanging (timeout 2 s, interval 5 s): oldest data of the other 23 | ${worst} s (hung drive's read_timeout: $hung) |"
echo "$table"
if [ -n "${BENCH_OUT:-}" ]; then echo "$table" >"$BENCH_OUT"; fi
