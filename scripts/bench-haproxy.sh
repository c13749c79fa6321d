#!/usr/bin/env bash
# Benchmark of haproxysessionmon against a real HAProxy 2.6 on 127.0.0.1, side by side in one
# run with Debian's prometheus-haproxy-exporter (Go) and, when given, the Python original:
#   - custos: BENCH_ENDPOINTS servers (default 50) polled every second, GELF over UDP only (what
#     the original can do: its log file backend crashes), for BENCH_SECONDS (default 60);
#   - the original: the same config, same GELF target kind;
#   - the Go exporter: one process scraped BENCH_ENDPOINTS times per second (each scrape is one
#     fetch of the stats page, so per scrape = per endpoint fetch).
# All three fetch the same stats page (EXTRA_BACKENDS=20 backends, so 24 backend rows; every
# "endpoint" is that one URL under another server id: the work per fetch is the same, and one
# HAProxy answers 150 fetches a second without strain).
#
# Reported per tool: CPU-seconds over the window (sum of /proc/PID/task/*/schedstat), CPU per
# endpoint fetch, share of one core, peak RSS (VmHWM) and RSS at the end. Fetches are counted
# from what each delivered: custos and the original from the GELF datagrams received divided by
# the backend rows per page (one datagram per row per poll; the drains have 8 MiB receive
# buffers so none is lost), the Go exporter from successful scrapes.
#
# The original runs only when ORIGINAL_HSM names a checkout of thanethomson/haproxy-session-mon
# and ORIGINAL_PYTHON a python that can import it with its pinned dependencies (they install
# only on Python 3.6, e.g. `python3.6 -m venv V && V/bin/pip install -r requirements.txt &&
# V/bin/pip install --no-deps -e CHECKOUT`). This script never fetches or builds it.
#
# BENCH_BASELINE names another haproxysessionmon binary (an earlier build) to run beside this
# one with the same config, as row "baseline": a change measured before/after in one run.
#
# Environment: BENCH_ENDPOINTS, BENCH_SECONDS, BENCH_OUT (also write the table there),
# CARGO_TARGET_DIR, ORIGINAL_HSM, ORIGINAL_PYTHON, BENCH_BASELINE, BENCH_PROMETHEUS (1: custos
# and the baseline also serve a prometheus backend scraped once a second).
set -euo pipefail
cd "$(dirname "$0")/.."

BENCH_ENDPOINTS=${BENCH_ENDPOINTS:-50}
BENCH_SECONDS=${BENCH_SECONDS:-60}
work=$(mktemp -d /tmp/custos-bench-haproxy.XXXXXX)
pids=()
export BASE=$work/haproxy STATS_PORT=28404 WEB_PORT=28080 TCP_PORT=28443 ORIGIN_PORT=28001 \
	HOLD_PORT=28002 EXTRA_BACKENDS=20 STATS_USER=admin STATS_PASS=s3cret
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	bash scripts/haproxy-test-server.sh stop >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

for b in curl python3; do command -v $b >/dev/null || { echo "bench: $b missing" >&2; exit 1; }; done
go_exporter=$(command -v prometheus-haproxy-exporter || true)

echo "== build (release)" >&2
cargo build --release -q -p custos-haproxy --bin haproxysessionmon
custos_bin=${CARGO_TARGET_DIR:-target}/release/haproxysessionmon

echo "== haproxy" >&2
bash scripts/haproxy-test-server.sh start >&2
url="http://127.0.0.1:$STATS_PORT/haproxy?stats;csv"
rows=$(curl -fsS -u admin:s3cret "$url" | awk -F, '$2 == "BACKEND"' | wc -l)
echo "   $rows backend rows per page" >&2

cpu_ns() { # pid -> CPU ns of all its threads
	local sum=0 t v
	for t in /proc/"$1"/task/*/schedstat; do
		v=$(cut -d' ' -f1 "$t" 2>/dev/null || echo 0)
		sum=$((sum + v))
	done
	echo "$sum"
}
hwm_kb() { awk '/^VmHWM:/ { print $2 }' /proc/"$1"/status; }
rss_kb() { awk '/^VmRSS:/ { print $2 }' /proc/"$1"/status; }

# A UDP drain that writes how many datagrams it got to a file (twice a second).
drain() { # port file
	python3 - "$1" "$2" <<'PY' &
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.settimeout(0.2)
n, last = 0, 0.0
while True:
    try:
        s.recv(65535)
        n += 1
    except socket.timeout:
        pass
    if time.time() - last > 0.5:
        with open(sys.argv[2] + ".tmp", "w") as f:
            f.write(str(n))
        import os
        os.replace(sys.argv[2] + ".tmp", sys.argv[2])
        last = time.time()
PY
	pids+=($!)
	for _ in $(seq 1 50); do [[ -f $2 ]] && return 0; sleep 0.1; done
}
count() { cat "$1" 2>/dev/null || echo 0; }

config() { # gelf_port [metrics_port] -> YAML with BENCH_ENDPOINTS servers
	local sinks=graylog
	printf 'logging:\n    level: WARNING\n    console: true\nbackends:\n    graylog:\n        type: gelf\n        host: 127.0.0.1\n        port: %s\n        facility: bench\n' "$1"
	if [[ -n ${2:-} ]]; then
		printf '    prom:\n        type: prometheus\n        listen: 127.0.0.1:%s\n' "$2"
		sinks="graylog, prom"
	fi
	printf 'servers:\n'
	for i in $(seq -w 1 "$BENCH_ENDPOINTS"); do
		printf '    lb-%s:\n        endpoint: "%s"\n        update-interval: 1\n        username: admin\n        password: s3cret\n        backends: [%s]\n' "$i" "$url" "$sinks"
	done
}

# With BENCH_PROMETHEUS=1, custos and the baseline also serve a `prometheus` backend (every
# column of every row, as a Prometheus with scrape_interval 1s would ask) scraped once a second.
scrape() { # port
	python3 - "$1" <<'PY' &
import http.client, sys, time
c = None
while True:
    try:
        c = c or http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=5)
        c.request("GET", "/metrics")
        c.getresponse().read()
    except Exception:
        c = None
    time.sleep(1)
PY
	pids+=($!)
}
prom_port() { [[ ${BENCH_PROMETHEUS:-0} == 1 ]] && echo "$1" || true; }

declare -A pid cnt
drain 29001 "$work/custos.count"
config 29001 "$(prom_port 29201)" >"$work/custos.yml"
"$custos_bin" -c "$work/custos.yml" 2>"$work/custos.log" &
pid[custos]=$!; pids+=($!); cnt[custos]=$work/custos.count
[[ ${BENCH_PROMETHEUS:-0} != 1 ]] || scrape 29201

if [[ -n ${BENCH_BASELINE:-} ]]; then
	drain 29003 "$work/baseline.count"
	config 29003 "$(prom_port 29203)" >"$work/baseline.yml"
	"$BENCH_BASELINE" -c "$work/baseline.yml" 2>"$work/baseline.log" &
	pid[baseline]=$!; pids+=($!); cnt[baseline]=$work/baseline.count
	[[ ${BENCH_PROMETHEUS:-0} != 1 ]] || scrape 29203
fi

if [[ -n ${ORIGINAL_HSM:-} && -n ${ORIGINAL_PYTHON:-} ]]; then
	drain 29002 "$work/original.count"
	config 29002 >"$work/original.yml"
	(cd "$ORIGINAL_HSM" && exec "$ORIGINAL_PYTHON" -m haproxysessionmon.core -c "$work/original.yml") \
		2>"$work/original.log" &
	pid[original]=$!; pids+=($!); cnt[original]=$work/original.count
else
	echo "   (the Python original is skipped: set ORIGINAL_HSM and ORIGINAL_PYTHON)" >&2
fi

if [[ -n $go_exporter ]]; then
	"$go_exporter" --haproxy.scrape-uri="http://admin:s3cret@127.0.0.1:$STATS_PORT/haproxy?stats;csv" \
		--web.listen-address=127.0.0.1:29101 2>"$work/go.log" &
	pid[go]=$!; pids+=($!)
	# The scraper: BENCH_ENDPOINTS scrapes a second on one keep-alive connection; counts the
	# good ones into a file.
	python3 - "$BENCH_ENDPOINTS" "$work/go.count" <<'PY' &
import http.client, os, sys, time
rate, out = int(sys.argv[1]), sys.argv[2]
n, t0 = 0, time.time()
c = None
while True:
    try:
        c = c or http.client.HTTPConnection("127.0.0.1", 29101, timeout=5)
        c.request("GET", "/metrics")
        r = c.getresponse()
        body = r.read()
        if r.status == 200 and b"haproxy_up 1" in body:
            n += 1
    except Exception:
        c = None
        time.sleep(0.1)
    with open(out + ".tmp", "w") as f:
        f.write(str(n))
    os.replace(out + ".tmp", out)
    delay = t0 + n / rate - time.time()
    if delay > 0:
        time.sleep(delay)
PY
	pids+=($!); cnt[go]=$work/go.count
else
	echo "   (prometheus-haproxy-exporter missing: Debian package prometheus-haproxy-exporter)" >&2
fi

echo "== warm-up 10 s" >&2
sleep 10
declare -A c0 n0
for t in "${!pid[@]}"; do c0[$t]=$(cpu_ns "${pid[$t]}"); n0[$t]=$(count "${cnt[$t]}"); done
echo "== measuring ${BENCH_SECONDS} s" >&2
sleep "$BENCH_SECONDS"
out=$work/table
{
	echo "| tool | endpoints | fetches in ${BENCH_SECONDS} s | CPU-s | CPU-s per fetch | % of one core | peak RSS | RSS at end |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|"
	for t in custos baseline original go; do
		[[ -n ${pid[$t]:-} ]] || continue
		if ! kill -0 "${pid[$t]}" 2>/dev/null; then
			echo "| $t | $BENCH_ENDPOINTS | – | – | – | – | – | died: $(tail -1 "$work/$t.log") |"
			continue
		fi
		c1=$(cpu_ns "${pid[$t]}"); n1=$(count "${cnt[$t]}")
		fetches=$((n1 - n0[$t]))
		[[ $t == go ]] || fetches=$((fetches / rows))
		awk -v t="$t" -v e="$BENCH_ENDPOINTS" -v f="$fetches" -v c=$((c1 - c0[$t])) \
			-v s="$BENCH_SECONDS" -v hwm="$(hwm_kb "${pid[$t]}")" -v rss="$(rss_kb "${pid[$t]}")" 'BEGIN {
			cpu = c / 1e9
			printf "| %s | %d | %d | %.3f | %.6f | %.2f %% | %.1f MB | %.1f MB |\n",
				t, e, f, cpu, (f ? cpu / f : 0), 100 * cpu / s, hwm / 1024, rss / 1024 }'
	done
} >"$out"
cat "$out"
[[ -z ${BENCH_OUT:-} ]] || cp "$out" "$BENCH_OUT"
grep -i -E "error|panick" "$work/custos.log" | head -5 >&2 || true
