#!/usr/bin/env bash
# Checks scripts/demo.sh as CI runs it (scripts/test.sh): the demo starts in a temporary
# DEMO_DIR on ports the kernel picks; every exporter's /metrics answers with its up-style
# series (burp_up 1, haproxysessionmon_up 1, smart_system_error 0, backup_success 1 on the push
# gateway); Prometheus has every target up with no scrape error and every alert rule of
# deploy/*-alerts.yml loaded; then `scripts/demo.sh stop` leaves no process behind (none of the
# pids the demo and its helper scripts recorded, none whose command line names DEMO_DIR, no
# port still open). Cleans up on failure too. Exit 1 on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

D=$(mktemp -d /tmp/custos-demo-check.XXXXXX)
export DEMO_DIR=$D
cleanup() {
	scripts/demo.sh stop >/dev/null 2>&1 || true
	rm -rf "$D"
}
trap cleanup EXIT
fail() {
	echo "check-demo: FAIL: $*" >&2
	exit 1
}

# Twelve distinct free ports, held open together while chosen so none repeats.
read -r -a ports < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(12)]
for s in ss:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))')
export DEMO_BURP_PORT=${ports[0]} DEMO_BURP_STATUS_PORT=${ports[1]} DEMO_BURP_EXPORTER_PORT=${ports[2]}
export DEMO_HAPROXY_STATS_PORT=${ports[3]} DEMO_HAPROXY_WEB_PORT=${ports[4]} DEMO_HAPROXY_TCP_PORT=${ports[5]}
export DEMO_HAPROXY_ORIGIN_PORT=${ports[6]} DEMO_HAPROXY_HOLD_PORT=${ports[7]} DEMO_HAPROXYSM_PORT=${ports[8]}
export DEMO_SMART_PORT=${ports[9]} DEMO_PUSHGATEWAY_PORT=${ports[10]} DEMO_PROMETHEUS_PORT=${ports[11]}

start=$(date +%s)
scripts/demo.sh start >"$D.out" 2>&1 || { cat "$D.out" >&2; rm -f "$D.out"; fail "scripts/demo.sh start failed"; }
echo "check-demo: demo started in $(($(date +%s) - start)) s"
grep -q "Prometheus *http://127.0.0.1:$DEMO_PROMETHEUS_PORT/" "$D.out" || { cat "$D.out" >&2; rm -f "$D.out"; fail "the demo did not print where to look"; }
rm -f "$D.out"

metric() { # URL PATTERN
	local body
	body=$(curl -fsS "$1") || fail "$1 does not answer"
	grep -Eq "$2" <<<"$body" || fail "$1 has no line matching /$2/"
}
metric "http://127.0.0.1:$DEMO_BURP_EXPORTER_PORT/metrics" '^burp_up\{server="demo"\} 1$'
metric "http://127.0.0.1:$DEMO_HAPROXYSM_PORT/metrics" '^haproxysessionmon_up\{server="lb-local"\} 1$'
metric "http://127.0.0.1:$DEMO_SMART_PORT/metrics" '^smart_system_error 0(\.0)?$'
metric "http://127.0.0.1:$DEMO_PUSHGATEWAY_PORT/metrics" '^backup_success\{.*job="licenses".*\} 1$'

python3 - "http://127.0.0.1:$DEMO_PROMETHEUS_PORT" deploy/*-alerts.yml <<'PY' || fail "Prometheus did not scrape every target or load every rule"
import json, sys, time, urllib.request
import yaml

base, files = sys.argv[1], sys.argv[2:]
want_jobs = {"burp", "haproxy", "smart", "backup", "prometheus"}
want_rules = {r["alert"] for f in files for g in yaml.safe_load(open(f))["groups"] for r in g["rules"] if "alert" in r}

def api(path):
    with urllib.request.urlopen(base + path, timeout=10) as r:
        return json.load(r)["data"]

deadline, up, loaded = time.time() + 60, set(), set()
while time.time() < deadline:
    try:
        up = {t["labels"]["job"] for t in api("/api/v1/targets")["activeTargets"]
              if t["health"] == "up" and not t["lastError"]}
        loaded = {r["name"] for g in api("/api/v1/rules")["groups"] for r in g["rules"] if r["type"] == "alerting"}
        if up == want_jobs and loaded == want_rules:
            print(f"check-demo: Prometheus: targets up {sorted(up)}, {len(loaded)} alert rules loaded")
            sys.exit(0)
    except OSError:
        pass
    time.sleep(0.5)
print(f"targets up {sorted(up)} of {sorted(want_jobs)}; rules missing {sorted(want_rules - loaded)}", file=sys.stderr)
sys.exit(1)
PY

# Every process the demo started, before stopping it: its own pid files and the helpers'.
pids=$(cat "$D"/run/*.pid "$D/haproxy/haproxy.pid" "$D/burp/burp.server.pid" 2>/dev/null | tr '\n' ' ')
[ "$(echo "$pids" | wc -w)" -ge 8 ] || fail "expected at least 8 recorded pids, got: $pids"
scripts/demo.sh stop >/dev/null
for p in $pids; do
	! kill -0 "$p" 2>/dev/null || fail "pid $p ($(tr '\0' ' ' </proc/"$p"/cmdline 2>/dev/null)) still runs after stop"
done
left=$(pgrep -f "$D" || true)
[ -z "$left" ] || fail "processes naming $D still run after stop: $(ps -o pid=,args= -p "${left//$'\n'/,}")"
for p in "${ports[@]}"; do
	! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || fail "127.0.0.1:$p still accepts connections after stop"
done
echo "check-demo: ok (stop left nothing running)"
