#!/usr/bin/env bash
# Quickstart demo of all five binaries against real local servers, all on 127.0.0.1 with their
# state under one directory (DEMO_DIR, default /tmp/custos-demo):
#   burp_exporter             <- a real burp 3.1.4 server (scripts/burp-test-server.sh)
#   haproxysessionmon         <- a real HAProxy 2.6 (scripts/haproxy-test-server.sh)
#   prometheus_smart_exporter <- smart_exporter_helper replaying recorded drives through the
#                                stand-in smartctl of crates/smart-helper/tests/data
#   backup                    one run of a local job, pushing to Debian's push gateway
#   prometheus                scrapes every exporter and the push gateway and loads the
#                             alert rules of deploy/*-alerts.yml
# Prints where to look and leaves everything running.
#
#   scripts/demo.sh          start (or restart) the demo
#   scripts/demo.sh stop     stop every process it started (the state directory stays)
#
# Environment: DEMO_DIR; DEMO_PROFILE=release builds optimised binaries (default: debug);
#   ports (defaults in brackets): DEMO_BURP_PORT [4971], DEMO_BURP_STATUS_PORT [4972],
#   DEMO_BURP_EXPORTER_PORT [9645], DEMO_HAPROXY_STATS_PORT [18404], DEMO_HAPROXY_WEB_PORT
#   [18080], DEMO_HAPROXY_TCP_PORT [18443], DEMO_HAPROXY_ORIGIN_PORT [18001],
#   DEMO_HAPROXY_HOLD_PORT [18002], DEMO_HAPROXYSM_PORT [9101], DEMO_SMART_PORT [9257],
#   DEMO_PUSHGATEWAY_PORT [9091], DEMO_PROMETHEUS_PORT [9090].
# Exit status: 0 started/stopped, 1 something did not start (its log is printed).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

D=${DEMO_DIR:-/tmp/custos-demo}
BURP_PORT=${DEMO_BURP_PORT:-4971}
BURP_STATUS_PORT=${DEMO_BURP_STATUS_PORT:-4972}
BURP_EXPORTER_PORT=${DEMO_BURP_EXPORTER_PORT:-9645}
HAPROXY_STATS_PORT=${DEMO_HAPROXY_STATS_PORT:-18404}
HAPROXY_WEB_PORT=${DEMO_HAPROXY_WEB_PORT:-18080}
HAPROXY_TCP_PORT=${DEMO_HAPROXY_TCP_PORT:-18443}
HAPROXY_ORIGIN_PORT=${DEMO_HAPROXY_ORIGIN_PORT:-18001}
HAPROXY_HOLD_PORT=${DEMO_HAPROXY_HOLD_PORT:-18002}
HAPROXYSM_PORT=${DEMO_HAPROXYSM_PORT:-9101}
SMART_PORT=${DEMO_SMART_PORT:-9257}
PUSHGATEWAY_PORT=${DEMO_PUSHGATEWAY_PORT:-9091}
PROMETHEUS_PORT=${DEMO_PROMETHEUS_PORT:-9090}
SMART_DATA=$repo/crates/smart-helper/tests/data

die() {
	echo "demo: $*" >&2
	exit 1
}

# The helpers of scripts/ keep their own pid files; ours are one per process in $D/run, each
# process the leader of its own group (setsid), so stopping it also ends what it forked
# (the helper's smartctl runs).
stop_ours() {
	local f pid
	for f in "$D"/run/*.pid; do
		[ -f "$f" ] || continue
		pid=$(cat "$f")
		if kill -0 "$pid" 2>/dev/null; then
			kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true
			for _ in $(seq 1 50); do
				kill -0 "$pid" 2>/dev/null || break
				sleep 0.1
			done
			kill -0 "$pid" 2>/dev/null && kill -KILL -- "-$pid" 2>/dev/null
		fi
		rm -f "$f"
	done
}

stop_all() {
	stop_ours
	if [ -d "$D/haproxy" ]; then BASE=$D/haproxy scripts/haproxy-test-server.sh stop; fi
	if [ -d "$D/burp" ]; then BASE=$D/burp scripts/burp-test-server.sh stop >/dev/null; fi
}

if [ "${1:-start}" = stop ]; then
	stop_all
	echo "demo stopped (state kept in $D)"
	exit 0
fi
[ "${1:-start}" = start ] || { echo "usage: $0 [start|stop]" >&2; exit 2; }

command -v cargo >/dev/null || die "cargo not found (install Rust: rustup)"
# A fresh machine lacks Debian's burp, HAProxy, Prometheus...: install what is missing (quick
# when present).
bash scripts/install-deps.sh --no-cargo-deb
for c in curl prometheus prometheus-pushgateway; do
	command -v "$c" >/dev/null || die "$c not found (scripts/apt-packages.txt)"
done

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# start NAME COMMAND...: runs COMMAND in its own process group, log in $D/log/NAME.log.
start() {
	local name=$1
	shift
	setsid "$@" >"$D/log/$name.log" 2>&1 </dev/null &
	echo $! >"$D/run/$name.pid"
}

# wait_for NAME URL PATTERN: until URL's body matches PATTERN (30 s), or NAME's process exits.
wait_for() {
	local name=$1 url=$2 pattern=$3 pid
	pid=$(cat "$D/run/$name.pid")
	for _ in $(seq 1 300); do
		kill -0 "$pid" 2>/dev/null || { echo "demo: $name exited:" >&2; cat "$D/log/$name.log" >&2; exit 1; }
		grep -Eq "$pattern" <<<"$(curl -fsS "$url" 2>/dev/null)" && return 0
		sleep 0.1
	done
	echo "demo: $name: no /$pattern/ at $url after 30 s; log ($D/log/$name.log):" >&2
	cat "$D/log/$name.log" >&2
	exit 1
}

stop_all
mkdir -p "$D/run" "$D/log" "$D/etc"
chmod 700 "$D"
for p in "$BURP_EXPORTER_PORT" "$HAPROXYSM_PORT" "$SMART_PORT" "$PUSHGATEWAY_PORT" "$PROMETHEUS_PORT"; do
	port_busy "$p" && die "127.0.0.1:$p is already in use by another process (see the DEMO_*_PORT variables in $0)"
done

echo "== 1/6 build the binaries"
profile=${DEMO_PROFILE:-debug}
flags=()
[ "$profile" = release ] && flags=(--release)
cargo build "${flags[@]}" -p custos-burp -p custos-haproxy -p custos-smart -p custos-smart-helper -p custos-backup --bins
bin=$(cd "${CARGO_TARGET_DIR:-target}" && pwd)/$profile

echo "== 2/6 burp server + burp_exporter"
BASE=$D/burp PORT=$BURP_PORT STATUS_PORT=$BURP_STATUS_PORT scripts/burp-test-server.sh start
# examples/burp_exporter.yaml, pointed at this server; it holds a password: mode 600.
sed -e "s|/tmp/custos-burp-demo|$D/burp|g" -e "s|^bind_port: .*|bind_port: $BURP_EXPORTER_PORT|" \
	-e "s|burp_port: 4972|burp_port: $BURP_STATUS_PORT|" -e "s|^refresh_interval_seconds: .*|refresh_interval_seconds: 10|" \
	examples/burp_exporter.yaml | install -m 600 /dev/stdin "$D/etc/burp_exporter.yaml"
start burp_exporter "$bin/burp_exporter" -c "$D/etc/burp_exporter.yaml"

echo "== 3/6 HAProxy + haproxysessionmon"
BASE=$D/haproxy STATS_PORT=$HAPROXY_STATS_PORT WEB_PORT=$HAPROXY_WEB_PORT TCP_PORT=$HAPROXY_TCP_PORT \
	ORIGIN_PORT=$HAPROXY_ORIGIN_PORT HOLD_PORT=$HAPROXY_HOLD_PORT scripts/haproxy-test-server.sh start
sed -e "s|127.0.0.1:18404|127.0.0.1:$HAPROXY_STATS_PORT|" -e "s|/tmp/custos-haproxy-test|$D/haproxy|" \
	-e "s|/tmp/haproxysessionmon-sessions.log|$D/haproxy/sessions.log|" -e "s|127.0.0.1:9101|127.0.0.1:$HAPROXYSM_PORT|" \
	-e "s|update-interval: 10|update-interval: 5|" \
	examples/haproxysessionmon.yml | install -m 600 /dev/stdin "$D/etc/haproxysessionmon.yml"
start haproxysessionmon "$bin/haproxysessionmon" -c "$D/etc/haproxysessionmon.yml"

echo "== 4/6 S.M.A.R.T. helper (recorded drives, stand-in smartctl) + prometheus_smart_exporter"
mkdir -p "$D/smart"
rm -f "$D/smart/ipc"
# sdg hangs on purpose: the helper kills its smartctl after 3 s and reports the timeout.
start smart_exporter_helper "$bin/smart_exporter_helper" --socket-path "$D/smart/ipc" \
	--smartctl "$SMART_DATA/smartctl" --device-timeout 3 -vv
for _ in $(seq 1 100); do [ -S "$D/smart/ipc" ] && break; sleep 0.1; done
[ -S "$D/smart/ipc" ] || { cat "$D/log/smart_exporter_helper.log" >&2; die "the helper made no socket"; }
start prometheus_smart_exporter "$bin/prometheus_smart_exporter" "$D/smart/ipc" \
	--device-db "$SMART_DATA/check_smartdb.json" -a 127.0.0.1 -p "$SMART_PORT" --interval 15 -vv

echo "== 5/6 push gateway + one backup run"
start pushgateway prometheus-pushgateway --web.listen-address="127.0.0.1:$PUSHGATEWAY_PORT" \
	--persistence.file="$D/pushgateway.state"
wait_for pushgateway "http://127.0.0.1:$PUSHGATEWAY_PORT/-/ready" .
cat >"$D/etc/backup-demo.json" <<EOF
{
  "hostname": "demo.localhost",
  "sources": [
    {"id": "licenses", "name": "Debian licence texts", "type": "folder",
     "path": "/usr/share/common-licenses", "passphrase": "demo-only-passphrase"}
  ],
  "destinations": [
    {"id": "local", "type": "local", "path": "$D/backups", "retention_copies": 3}
  ],
  "notifications": [
    {"type": "prometheus", "url": "http://127.0.0.1:$PUSHGATEWAY_PORT/"}
  ]
}
EOF
chmod 600 "$D/etc/backup-demo.json"
mkdir -p "$D/backups"
"$bin/backup" -v run "$D/etc/backup-demo.json" >"$D/log/backup.log" 2>&1 ||
	{ cat "$D/log/backup.log" >&2; die "the backup run failed"; }

echo "== 6/6 Prometheus (scrapes every exporter, loads deploy/*-alerts.yml)"
mkdir -p "$D/prometheus"
{
	printf 'global:\n  scrape_interval: 5s\n  evaluation_interval: 5s\nrule_files:\n'
	for f in "$repo"/deploy/*-alerts.yml; do printf '  - %s\n' "$f"; done
	printf 'scrape_configs:\n'
	printf '  - job_name: %s\n    static_configs:\n      - targets: ["127.0.0.1:%s"]\n' \
		burp "$BURP_EXPORTER_PORT" haproxy "$HAPROXYSM_PORT" smart "$SMART_PORT" prometheus "$PROMETHEUS_PORT"
	# The push gateway's groups carry job=<source id>: keep it (honor_labels).
	printf '  - job_name: backup\n    honor_labels: true\n    static_configs:\n      - targets: ["127.0.0.1:%s"]\n' "$PUSHGATEWAY_PORT"
} >"$D/prometheus/prometheus.yml"
start prometheus prometheus --config.file="$D/prometheus/prometheus.yml" \
	--storage.tsdb.path="$D/prometheus/data" --web.listen-address="127.0.0.1:$PROMETHEUS_PORT"

wait_for burp_exporter "http://127.0.0.1:$BURP_EXPORTER_PORT/metrics" '^burp_up\{.*\} 1'
wait_for haproxysessionmon "http://127.0.0.1:$HAPROXYSM_PORT/metrics" '^haproxysessionmon_up\{.*\} 1'
wait_for prometheus_smart_exporter "http://127.0.0.1:$SMART_PORT/metrics" '^smart_system_error 0(\.0)?$'
wait_for pushgateway "http://127.0.0.1:$PUSHGATEWAY_PORT/metrics" '^backup_success\{.*\} 1'
wait_for prometheus "http://127.0.0.1:$PROMETHEUS_PORT/-/ready" .

cat <<EOF

custos demo running; state and logs under $D (logs in $D/log):
  burp_exporter              http://127.0.0.1:$BURP_EXPORTER_PORT/        (burp server 127.0.0.1:$BURP_STATUS_PORT)
  haproxysessionmon          http://127.0.0.1:$HAPROXYSM_PORT/         (HAProxy stats http://127.0.0.1:$HAPROXY_STATS_PORT/haproxy?stats, admin/s3cret)
  prometheus_smart_exporter  http://127.0.0.1:$SMART_PORT/         (helper socket $D/smart/ipc)
  backup                     copies in $D/backups; pushed to http://127.0.0.1:$PUSHGATEWAY_PORT/
                             again: $bin/backup -v run $D/etc/backup-demo.json
  Prometheus                 http://127.0.0.1:$PROMETHEUS_PORT/targets  /alerts  /graph
                             (the SMART rules fire on the recorded failing drives within minutes)
  stop:  ${DEMO_DIR:+DEMO_DIR=$D }scripts/demo.sh stop
EOF
