#!/usr/bin/env bash
# Checks the Debian package as CI runs it (scripts/test.sh), on this Debian machine, as root
# (or through sudo): builds it (scripts/build-deb.sh, release), installs it with
# `apt-get install ./custos_*.deb`, then
#   - every installed binary answers --help and --version; the man pages, completions, units
#     and conffiles are where Debian looks, the system users exist, the configs' groups are set
#   - haproxysessionmon runs from its unit's ExecStart line (its Environment= and User=, the
#     installed config edited as an admin would, to point at a real HAProxy on free ports) and
#     its /metrics says haproxysessionmon_up 1; prometheus_smart_exporter likewise against the
#     installed helper replaying recorded drives on the unit's socket path
#   - `dpkg -r` removes the binaries and keeps the conffiles; `dpkg --purge` leaves no file of
#     the package under /etc, /usr or /var/lib, and no system user of it.
# Cleans up (processes, package, temp dir) on failure too. Exit 1 on any failure.
# CUSTOS_DEB=path skips the build and checks that .deb.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

fail() {
	echo "check-deb: FAIL: $*" >&2
	exit 1
}
if dpkg-query -W -f='${Status}' custos 2>/dev/null | grep -q installed; then
	fail "a custos package is already installed here; remove it first (dpkg --purge custos)"
fi

tmp=$(mktemp -d /tmp/custos-deb-check.XXXXXX)
chmod 755 "$tmp"
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do $sudo kill "$p" 2>/dev/null || true; done
	BASE=$tmp/haproxy scripts/haproxy-test-server.sh stop >/dev/null 2>&1 || true
	if dpkg-query -W -f='${Status}' custos 2>/dev/null | grep -q "ok"; then
		$sudo dpkg --purge custos >/dev/null 2>&1 || true
	fi
	$sudo rm -rf "$tmp" /run/prometheus_smart_helper
}
trap cleanup EXIT

if [ -n "${CUSTOS_DEB:-}" ]; then
	deb=$CUSTOS_DEB
else
	start=$(date +%s)
	deb=$(bash scripts/build-deb.sh) || fail "scripts/build-deb.sh failed"
	echo "check-deb: built $deb in $(($(date +%s) - start)) s"
fi
# apt-get wants a path that does not look like a package name.
case $deb in /*) ;; *) deb=$repo/$deb ;; esac

DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$deb" >"$tmp/apt.log" 2>&1 ||
	{ cat "$tmp/apt.log" >&2; fail "apt-get install $deb"; }
files=$(dpkg -L custos)

for b in burp_exporter haproxysessionmon smart_exporter_helper prometheus_smart_exporter backup; do
	[ "$(command -v "$b")" = "/usr/bin/$b" ] || fail "$b is not /usr/bin/$b"
	"/usr/bin/$b" --help >"$tmp/help" 2>&1 || fail "$b --help exited $?"
	grep -q "$b" "$tmp/help" || fail "$b --help does not name it"
	version=$("/usr/bin/$b" --version 2>&1) || fail "$b --version exited $?"
	grep -q '0\.[0-9]' <<<"$version" || fail "$b --version prints no version: $version"
	grep -qx "/usr/share/man/man8/$b.8.gz" <<<"$files" || fail "no man page for $b"
	zgrep -q '^\.TH' "/usr/share/man/man8/$b.8.gz" || fail "the man page of $b is not roff"
done
for b in burp_exporter haproxysessionmon prometheus_smart_exporter backup; do
	for f in "/usr/share/bash-completion/completions/$b" "/usr/share/zsh/vendor-completions/_$b" \
		"/usr/share/fish/vendor_completions.d/$b.fish"; do
		[ -s "$f" ] || fail "missing completion $f"
	done
done
bash -c 'source /usr/share/bash-completion/completions/backup && complete -p backup' >/dev/null ||
	fail "the bash completion of backup does not load"
for u in burp_exporter.service haproxysessionmon.service prometheus_smart_exporter.service \
	prometheus_smart_helper.service prometheus_smart_helper.socket backup@.service backup@.timer \
	backup-verify@.service backup-verify@.timer; do
	[ -f "/lib/systemd/system/$u" ] || fail "unit $u not installed"
done
! grep -l /usr/local /lib/systemd/system/{burp_exporter,haproxysessionmon,prometheus_smart_*,backup@,backup-verify@}* ||
	fail "an installed unit runs something from /usr/local"
conffiles=$(dpkg-query -W -f='${Conffiles}\n' custos | awk 'NF { print $1 }' | sort)
want=$(printf '%s\n' /etc/burp_exporter/burp_exporter.yaml /etc/custos/backup/quickstart.json \
	/etc/haproxysessionmon/config.yml /etc/logrotate.d/haproxysessionmon \
	/etc/prometheus_smart_exporter/devices.json | sort)
[ "$conffiles" = "$want" ] || fail "conffiles: got [$conffiles], want [$want]"
for pair in burp_exporter:/etc/burp_exporter/burp_exporter.yaml haproxysm:/etc/haproxysessionmon/config.yml \
	backups:/etc/custos/backup/quickstart.json; do
	u=${pair%%:*} f=${pair#*:}
	getent passwd "$u" >/dev/null || fail "system user $u missing"
	[ "$(stat -c '%G %a' "$f")" = "$u 640" ] || fail "$f: $(stat -c '%U:%G %a' "$f"), want root:$u 640"
done
getent passwd smart_exporter >/dev/null || fail "system user smart_exporter missing"

# The unit's command line as systemd would run it: its User=, Environment= and ExecStart=
# (without --journal where no journald listens, as in this container).
unit_exec() { # UNIT -> runs ExecStart in the background as User=, pid in $!
	local unit=/lib/systemd/system/$1 user env cmd
	user=$(sed -n 's/^User=//p' "$unit")
	env=$(sed -n 's/^Environment=//p' "$unit")
	cmd=$(sed -n 's/^ExecStart=//p' "$unit")
	[ -S /run/systemd/journal/socket ] || cmd=${cmd/ --journal/}
	echo "check-deb: $1: as $user: ${env:+$env }$cmd"
	# setpriv execs (no process in between): $! is the service's own pid.
	# shellcheck disable=SC2086 # the unit's words, split as systemd splits these simple lines
	$sudo env $env setpriv --reuid="$user" --regid="$user" --init-groups -- $cmd >"$tmp/$1.log" 2>&1 &
}
wait_metric() { # NAME URL PATTERN
	for _ in $(seq 1 200); do
		grep -Eq "$3" <<<"$(curl -fsS "$2" 2>/dev/null)" && return 0
		sleep 0.1
	done
	cat "$tmp/$1.log" >&2
	fail "$1: no /$3/ at $2"
}

$sudo install -d -o haproxysm "$tmp/logs"
read -r -a ports < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(7)]
for s in ss:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))')
BASE=$tmp/haproxy STATS_PORT=${ports[0]} WEB_PORT=${ports[1]} TCP_PORT=${ports[2]} ORIGIN_PORT=${ports[3]} \
	HOLD_PORT=${ports[4]} scripts/haproxy-test-server.sh start >/dev/null
# As an admin would: point the installed example at this HAProxy.
$sudo sed -i -e "s|127.0.0.1:18404|127.0.0.1:${ports[0]}|" -e "s|/tmp/custos-haproxy-test|$tmp/haproxy|" \
	-e "s|/tmp/haproxysessionmon-sessions.log|$tmp/logs/sessions.log|" -e "s|127.0.0.1:9101|127.0.0.1:${ports[5]}|" \
	-e "s|update-interval: 10|update-interval: 1|" /etc/haproxysessionmon/config.yml
unit_exec haproxysessionmon.service
pids+=($!)
wait_metric haproxysessionmon.service "http://127.0.0.1:${ports[5]}/metrics" '^haproxysessionmon_up\{server="lb-local"\} 1$'
echo "check-deb: haproxysessionmon from its unit: haproxysessionmon_up 1"

! (exec 3<>/dev/tcp/127.0.0.1/9257) 2>/dev/null ||
	fail "127.0.0.1:9257, where prometheus_smart_exporter's unit listens, is in use by another process"
# The SMART pair: the installed helper (root, as its unit) on the socket path of the exporter's
# unit, replaying the recorded drives; the socket's group as the .socket unit sets it.
$sudo install -d -m 755 /run/prometheus_smart_helper
$sudo /usr/bin/smart_exporter_helper --socket-path /run/prometheus_smart_helper/ipc \
	--smartctl "$repo/crates/smart-helper/tests/data/smartctl" --exclude /dev/sdg >"$tmp/helper.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do [ -S /run/prometheus_smart_helper/ipc ] && break; sleep 0.1; done
$sudo chgrp smart_exporter /run/prometheus_smart_helper/ipc
unit_exec prometheus_smart_exporter.service
pids+=($!)
wait_metric prometheus_smart_exporter.service http://127.0.0.1:9257/metrics '^smart_system_error 0(\.0)?$'
echo "check-deb: prometheus_smart_exporter from its unit: smart_system_error 0"
for p in "${pids[@]}"; do $sudo kill "$p" 2>/dev/null || true; done
wait "${pids[@]}" 2>/dev/null || true
pids=()

$sudo dpkg -r custos >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log" >&2; fail "dpkg -r custos"; }
for b in burp_exporter haproxysessionmon smart_exporter_helper prometheus_smart_exporter backup; do
	[ ! -e "/usr/bin/$b" ] || fail "/usr/bin/$b left after dpkg -r"
done
[ -f /etc/haproxysessionmon/config.yml ] || fail "dpkg -r removed a conffile"
$sudo dpkg --purge custos >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log" >&2; fail "dpkg --purge custos"; }
left=()
while read -r f; do
	case $f in /etc/* | /usr/* | /var/lib/* | /lib/*) ;; *) continue ;; esac
	# Directories Debian shares (/usr/bin, /etc/logrotate.d...) stay; ours must go.
	if [ -d "$f" ] && [ -n "$(dpkg -S "$f" 2>/dev/null)" ]; then continue; fi
	[ -e "$f" ] && left+=("$f")
done <<<"$files"
for f in /etc/burp_exporter /etc/haproxysessionmon /etc/custos /etc/prometheus_smart_exporter \
	/usr/share/custos /usr/share/doc/custos /var/lib/backups /var/log/haproxysessionmon; do
	[ -e "$f" ] && left+=("$f")
done
[ ${#left[@]} -eq 0 ] || fail "left after dpkg --purge: ${left[*]}"
for u in burp_exporter haproxysm smart_exporter backups; do
	! getent passwd "$u" >/dev/null || fail "system user $u left after dpkg --purge"
done
echo "check-deb: ok (installed, ran from its units, removed and purged without a trace)"
