#!/usr/bin/env bash
# Benchmark of burp_exporter against real burp 3.1.4 servers on 127.0.0.1, in one run:
#   - CPU-seconds per poll, in a quiet window (no scrapes) with refresh_interval_seconds 1;
#   - peak RSS (VmHWM) over the whole run;
#   - /metrics latency p50/p99 over BENCH_REQUESTS sequential scrapes while polls go on;
# on a small server (testclient + monitor) and on a large one (EXTRA_CLIENTS=2000, whose `c:`
# reply is about 136 kB in 9 frames).
#
# The Python original is measured side by side when ORIGINAL_BURP_EXPORTER names a checkout of
# it and ORIGINAL_PYTHON a python that can import it and its dependencies (e.g. a venv it was
# pip-installed into). This script never fetches or builds it.
#
# The same /metrics latency is measured again while BENCH_PROBE_CLIENTS (default 8) clients
# scrape /probe (three selectors) as fast as they can, at nice 19: /probe is served from a
# per-selector cache, one at a time, rendered off the runtime's threads, so it must not slow
# /metrics down.
#
# Usage: bench-burp.sh [--no-build]   (--no-build: use the release binary already built)
#
# Environment: CARGO_TARGET_DIR (release build goes there), BENCH_SECONDS (quiet window,
# default 60), BENCH_REQUESTS (default 500), BENCH_OUT (also write the table to this file),
# BENCH_SIZES (default "small large").
#
# How polls are counted: custos from its own poll counter; the original, which has none, from
# the write(2) calls of its process (/proc/PID/io syscw) in the quiet window: it writes exactly
# once per poll (the `c:` request) and nothing else while nobody scrapes it. CPU time is the sum
# over threads of what each used in the window by /proc/PID/task/TID/schedstat (ns resolution;
# /proc/PID/stat only counts 10 ms ticks), thread by thread so that a thread ending in the
# window (tokio's blocking pool lets an idle one go after 10 s) does not take its earlier CPU
# time out of the sum.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

BENCH_SECONDS=${BENCH_SECONDS:-60}
BENCH_REQUESTS=${BENCH_REQUESTS:-500}
BENCH_SIZES=${BENCH_SIZES:-small large}
BENCH_PROBE_CLIENTS=${BENCH_PROBE_CLIENTS:-8}
build=1
for arg in "$@"; do
	case $arg in
	--no-build) build=0 ;;
	*) echo "usage: $0 [--no-build]" >&2; exit 2 ;;
	esac
done
work=$(mktemp -d /tmp/custos-bench.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for size in small large; do
		BASE=/tmp/custos-bench-$size bash scripts/burp-test-server.sh stop >/dev/null 2>&1 || true
	done
}
trap cleanup EXIT

command -v curl >/dev/null || { echo "bench: curl missing" >&2; exit 1; }

if [ "$build" = 1 ]; then
	echo "== build (release)" >&2
	cargo build --release -q -p custos-burp --bin burp_exporter
fi
custos_bin=${CARGO_TARGET_DIR:-target}/release/burp_exporter
[ -x "$custos_bin" ] || { echo "bench: $custos_bin not built" >&2; exit 1; }

# --- servers ------------------------------------------------------------------------------
declare -A sport
start_server() { # size extra_clients port status_port
	echo "== burp server '$1' ($2 extra clients)" >&2
	BASE=/tmp/custos-bench-$1 PORT=$3 STATUS_PORT=$4 EXTRA_CLIENTS=$2 \
		bash scripts/burp-test-server.sh start >&2
	sport[$1]=$4
}

# --- measurements ------------------------------------------------------------------------
cpu_snap() { # pid -> "tid ns" per live thread (/proc/PID/task/*/schedstat, ns resolution)
	local t
	for t in /proc/"$1"/task/*; do
		echo "${t##*/} $(cut -d' ' -f1 "$t/schedstat" 2>/dev/null || echo 0)"
	done
}
cpu_delta() { # snapshot-before snapshot-after -> ns used in between, thread by thread
	# A thread that ended in between (a blocking-pool thread idle for 10 s) drops out of the
	# sum of live threads with everything it ever used; summing per-thread deltas keeps that
	# from making the window's CPU time smaller, even negative. A new thread counts in full.
	awk 'NR == FNR { before[$1] = $2; next } { s += $2 - (($1 in before) ? before[$1] : 0) } END { print s + 0 }' "$1" "$2"
}
syscw() { awk '/^syscw:/ { print $2 }' /proc/"$1"/io; }
hwm_kb() { awk '/^VmHWM:/ { print $2 }' /proc/"$1"/status; }
scrape() { curl -fsS --max-time 10 "http://127.0.0.1:$1/metrics" 2>/dev/null || true; }
metric_sum() { # port regex -> sum of the values of matching sample lines
	scrape "$1" | awk -v re="$2" '$0 ~ re { s += $NF; n++ } END { if (n) printf "%.0f\n", s; else print "" }'
}

write_config() { # file bind_port status_port base
	cat >"$1" <<EOF
bind_address: 127.0.0.1
bind_port: $2
clients:
  - name: bench
    burp_host: 127.0.0.1
    burp_port: $3
    burp_cname: burpserver
    cname: monitor
    password: monitorpass
    tls_ca_cert: $4/client-monitor/ssl_cert_ca.pem
    tls_cert: $4/client-monitor/ssl_cert-client.pem
    tls_key: $4/client-monitor/ssl_cert-client.key
    # per server, where the original reads it; custos accepts both places
    refresh_interval_seconds: 1
EOF
	chmod 600 "$1"
}

rows=()
measure() { # tool size
	local tool=$1 size=$2 base=/tmp/custos-bench-$2 port cfg log pid
	port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
	cfg=$work/$tool-$size.yaml
	log=$work/$tool-$size.log
	write_config "$cfg" "$port" "${sport[$size]}" "$base"
	echo "== $tool on $size server (log $log)" >&2
	case $tool in
	custos) setsid "$custos_bin" -c "$cfg" >"$log" 2>&1 </dev/null & ;;
	original)
		setsid env PYTHONPATH="$ORIGINAL_BURP_EXPORTER/src" "$ORIGINAL_PYTHON" -c \
			'import sys; from burp_exporter.cli import cli; sys.argv[0] = "burp_exporter"; cli()' \
			-c "$cfg" >"$log" 2>&1 </dev/null &
		;;
	esac
	pid=$!
	pids+=("$pid")

	# First poll: the client list is in /metrics (the original connects after 60 s).
	local t0=$SECONDS note="" first=""
	while [ $((SECONDS - t0)) -lt 150 ]; do
		if ! kill -0 "$pid" 2>/dev/null; then break; fi
		first=$(metric_sum "$port" '^burp_clients[{ ]')
		if [ -n "$first" ] && [ "$first" -gt 0 ]; then break; fi
		first=""
		sleep 0.2
	done
	local first_s=$((SECONDS - t0))
	if ! kill -0 "$pid" 2>/dev/null; then
		if grep -q Traceback "$log"; then
			note="crashes on its first poll (${first_s} s after start): $(grep -v '^\s*$' "$log" | tail -n1 | cut -c1-100)"
		else
			note="exits before its first poll: $(grep -v '^\s*$' "$log" | tail -n1 | cut -c1-100)"
		fi
		rows+=("| $tool | $size | - | - | - | - | - | $note |")
		return
	fi
	sleep 2 # let a crash on the first reply surface
	if ! kill -0 "$pid" 2>/dev/null; then
		note="crashes on first poll: $(grep -v '^\s*$' "$log" | tail -n1 | cut -c1-100)"
		rows+=("| $tool | $size | - | - | - | - | - | $note |")
		return
	fi
	if [ -z "$first" ]; then
		note="no client list after 150 s"
		rows+=("| $tool | $size | - | $(($(hwm_kb "$pid") / 1024)) MB | - | - | - | $note |")
		kill "$pid" 2>/dev/null || true
		return
	fi

	# Quiet window: no scrapes between the two CPU readings.
	local polls0 polls1 w0 w1 polls used
	polls0=$(custos_polls "$tool" "$port")
	cpu_snap "$pid" >"$work/cpu0-$tool-$size"
	w0=$(syscw "$pid")
	sleep "$BENCH_SECONDS"
	cpu_snap "$pid" >"$work/cpu1-$tool-$size"
	w1=$(syscw "$pid")
	polls1=$(custos_polls "$tool" "$port")
	used=$(cpu_delta "$work/cpu0-$tool-$size" "$work/cpu1-$tool-$size")
	if [ "$tool" = custos ]; then polls=$((polls1 - polls0)); else polls=$((w1 - w0)); fi
	local cpu_per_poll="-"
	[ "$polls" -gt 0 ] && cpu_per_poll=$(awk -v c="$used" -v p="$polls" 'BEGIN { printf "%.6f", c / 1e9 / p }')
	local cpu_total
	cpu_total=$(awk -v c="$used" 'BEGIN { printf "%.3f", c / 1e9 }')

	# Latency: sequential scrapes, one keep-alive connection, while polls continue.
	local cfgcurl=$work/curl-$tool-$size.cfg
	: >"$cfgcurl"
	for _ in $(seq 1 "$BENCH_REQUESTS"); do
		printf 'url = "http://127.0.0.1:%s/metrics"\noutput = "/dev/null"\n' "$port" >>"$cfgcurl"
	done
	local times=$work/times-$tool-$size.txt
	curl -s -K "$cfgcurl" -w '%{http_code} %{time_total} %{size_download}\n' >"$times" || true
	local ok p50 p99
	ok=$(awk '$1 == 200' "$times" | wc -l)
	p50=$(percentile "$times" 0.50)
	p99=$(percentile "$times" 0.99)
	[ "$ok" -eq "$BENCH_REQUESTS" ] || note="$note only $ok/$BENCH_REQUESTS scrapes answered 200;"

	# The same while clients hammer /probe (the original has no /probe cache to compare).
	local p99_probe="-"
	if [ "$tool" = custos ]; then
		local probecfg=$work/probe-$size.cfg loaders=() probes=$work/probes-$size.txt
		local stop=$work/probe-$size.stop
		: >"$probecfg"
		: >"$probes"
		for _ in $(seq 1 100); do
			for sel in 'probe?server%5B%5D=bench' 'probe' 'probe?server=bench&server=bench'; do
				printf 'url = "http://127.0.0.1:%s/%s"\noutput = "/dev/null"\n' "$port" "$sel" >>"$probecfg"
			done
		done
		# The loaders run at the lowest CPU priority: what is measured is whether the
		# exporter lets /probe work delay /metrics, not how curl competes for the 2 CPUs.
		for _ in $(seq 1 "$BENCH_PROBE_CLIENTS"); do
			(
				while [ ! -e "$stop" ]; do
					nice -n 19 stdbuf -oL curl -s -K "$probecfg" -w '%{http_code}\n' 2>/dev/null || true
				done
			) >>"$probes" &
			loaders+=("$!")
			pids+=("$!")
		done
		# Measure only once /probe answers are flowing.
		local t1=$SECONDS
		while [ "$(grep -c '^200' "$probes" || true)" -lt $((BENCH_PROBE_CLIENTS * 20)) ] && [ $((SECONDS - t1)) -lt 30 ]; do
			sleep 0.2
		done
		local before after
		before=$(grep -c '^200' "$probes" || true)
		local times_probe=$work/times-probe-$tool-$size.txt
		curl -s -K "$cfgcurl" -w '%{http_code} %{time_total} %{size_download}\n' >"$times_probe" || true
		after=$(grep -c '^200' "$probes" || true)
		touch "$stop"
		wait "${loaders[@]}" 2>/dev/null || true
		p99_probe=$(percentile "$times_probe" 0.99)
		local nprobes=$((after - before))
		note="$note $nprobes /probe answers during the loaded /metrics run ($BENCH_PROBE_CLIENTS curl clients at nice 19);"
	fi

	local rss_mb
	rss_mb=$(awk -v k="$(hwm_kb "$pid")" 'BEGIN { printf "%.1f", k / 1024 }')
	kill -0 "$pid" 2>/dev/null || note="$note died during the run;"
	local kb
	kb=$(awk '$1 == 200 { b = $3 } END { printf "%.0f", b / 1024 }' "$times")
	note="$note $polls polls in ${BENCH_SECONDS} s ($cpu_total CPU-s), first poll after ${first_s} s, $first clients, /metrics $kb kB"
	rows+=("| $tool | $size | $cpu_per_poll | $rss_mb MB | $p50 | $p99 | $p99_probe | ${note# } |")
	kill "$pid" 2>/dev/null || true
}

percentile() { # file-of-curl-lines fraction -> "X.XX ms" over the 200 answers
	awk '$1 == 200 { print $2 }' "$1" | sort -n |
		awk -v q="$2" '{ a[NR] = $1 } END { i = int(NR * q + 0.5); if (i < 1) i = 1; printf "%.2f ms", a[i] * 1000 }'
}

custos_polls() { # tool port -> polls so far (custos: its own counter; original: unused)
	[ "$1" = custos ] || { echo 0; return; }
	local v
	v=$(metric_sum "$2" "$CUSTOS_POLL_COUNTER")
	echo "${v:-0}"
}
# custos' counter of finished polls (successful or not), summed over servers.
CUSTOS_POLL_COUNTER=${CUSTOS_POLL_COUNTER:-'^burp_polls_total[{ ]'}

tools=(custos)
if [ -n "${ORIGINAL_BURP_EXPORTER:-}" ]; then
	[ -d "$ORIGINAL_BURP_EXPORTER/src/burp_exporter" ] ||
		{ echo "bench: ORIGINAL_BURP_EXPORTER=$ORIGINAL_BURP_EXPORTER is not a checkout of it" >&2; exit 1; }
	ORIGINAL_PYTHON=${ORIGINAL_PYTHON:-python3}
	tools+=(original)
fi

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
for size in $BENCH_SIZES; do
	case $size in
	small) start_server small 0 24991 24992 ;;
	large) start_server large 2000 24993 24994 ;;
	*) echo "bench: unknown size $size" >&2; exit 2 ;;
	esac
	for tool in "${tools[@]}"; do measure "$tool" "$size"; done
	BASE=/tmp/custos-bench-$size bash scripts/burp-test-server.sh stop >/dev/null
done

{
	echo "burp_exporter benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, burp $(dpkg-query -W -f='${Version}' burp 2>/dev/null || echo '?'),"
	echo "refresh_interval_seconds 1, quiet window ${BENCH_SECONDS} s, ${BENCH_REQUESTS} sequential scrapes for latency,"
	echo "load average at start $load_start, at end $(cut -d' ' -f1-3 /proc/loadavg)."
	echo
	echo "| tool | server | CPU-s per poll | peak RSS | /metrics p50 | /metrics p99 | /metrics p99, $BENCH_PROBE_CLIENTS clients on /probe | notes |"
	echo "|---|---|---|---|---|---|---|---|"
	printf '%s\n' "${rows[@]}"
} | tee "$work/table.md"
[ -z "${BENCH_OUT:-}" ] || cp "$work/table.md" "$BENCH_OUT"
echo "(logs in $work)" >&2
