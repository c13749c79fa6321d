#!/usr/bin/env bash
# Quickstart demo: a real local burp server (Debian's `burp`, started by
# scripts/burp-test-server.sh under /tmp/custos-burp-demo) and burp_exporter watching it with
# examples/burp_exporter.yaml. Prints the burp_* metrics and leaves both running.
#
#   scripts/demo.sh          start (or restart) the demo
#   scripts/demo.sh stop     stop the exporter and the burp server
#
# Environment: DEMO_PROFILE=release builds an optimised binary (default: debug, builds faster).
set -euo pipefail
cd "$(dirname "$0")/.."

# examples/burp_exporter.yaml names files under this BASE and the default ports.
export BASE=/tmp/custos-burp-demo PORT=4971 STATUS_PORT=4972
CONFIG=examples/burp_exporter.yaml
LISTEN=127.0.0.1:9645
PIDFILE=$BASE/burp_exporter.pid
LOG=$BASE/burp_exporter.log

stop_exporter() {
	if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
		kill "$(cat "$PIDFILE")"
		for _ in $(seq 1 50); do
			kill -0 "$(cat "$PIDFILE")" 2>/dev/null || break
			sleep 0.1
		done
	fi
	rm -f "$PIDFILE"
}

if [ "${1:-start}" = stop ]; then
	stop_exporter
	scripts/burp-test-server.sh stop
	exit 0
fi
[ "${1:-start}" = start ] || { echo "usage: $0 [start|stop]" >&2; exit 2; }

command -v cargo >/dev/null || { echo "demo: cargo not found (install Rust: rustup)" >&2; exit 1; }
# A fresh machine lacks Debian's burp (and curl): install what is missing (quick when present).
bash scripts/install-deps.sh
command -v curl >/dev/null || { echo "demo: curl not found (Debian package 'curl')" >&2; exit 1; }

echo "== 1/3 burp server (burp 3.1.4 on 127.0.0.1:$STATUS_PORT, data in $BASE)"
stop_exporter
scripts/burp-test-server.sh start

echo "== 2/3 build burp_exporter"
profile=${DEMO_PROFILE:-debug}
if [ "$profile" = release ]; then
	cargo build --release -p custos-burp --bin burp_exporter
else
	cargo build -p custos-burp --bin burp_exporter
fi
bin=${CARGO_TARGET_DIR:-target}/$profile/burp_exporter

echo "== 3/3 start burp_exporter on $LISTEN"
if (exec 3<>/dev/tcp/127.0.0.1/9645) 2>/dev/null; then
	echo "demo: $LISTEN is already in use by another process; stop it first" >&2
	exit 1
fi
# The config holds the monitor client's password: run from a private copy (mode 600), as a
# real installation would keep it; the exporter warns about configs others can read.
install -m 600 "$CONFIG" "$BASE/burp_exporter.yaml"
setsid "$bin" -c "$BASE/burp_exporter.yaml" >"$LOG" 2>&1 </dev/null &
echo $! >"$PIDFILE"

ok=""
for _ in $(seq 1 150); do
	kill -0 "$(cat "$PIDFILE")" 2>/dev/null || { echo "demo: burp_exporter exited:" >&2; cat "$LOG" >&2; exit 1; }
	if curl -fsS "http://$LISTEN/metrics" 2>/dev/null | grep -Eq '^burp_client_backup_num\{.*\} [1-9]'; then
		ok=1
		break
	fi
	sleep 0.2
done
[ -n "$ok" ] || { echo "demo: no backup metrics after 30 s; log ($LOG):" >&2; cat "$LOG" >&2; exit 1; }

echo
echo "\$ curl -s $LISTEN/metrics | grep ^burp_"
curl -s "http://$LISTEN/metrics" | grep '^burp_'
echo
echo "burp_exporter is running (pid $(cat "$PIDFILE"), log $LOG), burp server too."
echo "  more:  curl -s $LISTEN/   |  curl -s '$LISTEN/probe?server[]=demo'"
echo "         $bin --once -c $BASE/burp_exporter.yaml"
echo "  stop:  scripts/demo.sh stop"
