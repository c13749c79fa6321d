#!/usr/bin/env bash
# A throw-away burp 3.x server on 127.0.0.1 for the demo, the integration tests and the
# benchmark. No systemd, no root needed, nothing installed: it only uses Debian's `burp`
# package (scripts/install-deps.sh installs it) and fails clearly when that is missing.
#
# Everything lives under BASE (default /tmp/custos-burp-demo):
#   etc/burp-server.conf, etc/CA.cnf, etc/clientconfdir/{testclient,monitor,extra-*}
#   etc/testclient.conf   a normal backup client (backs up BASE/data)
#   etc/monitor.conf      a client that does no backups; every client names it in
#                         `restore_client`, so its status-port view shows all clients
#   etc/slow.conf         testclient again, but backing up BASE/slowdata, whose fifos it reads
#                         (read_all_fifos), so a backup stays RUNNING as long as they are fed
#   CA/                   burp's own CA (burp_ca, made on the server's first start)
#   client-<name>/        each client's CA copy, certificate and key (ssl_cert_ca.pem,
#                         ssl_cert-client.pem, ssl_cert-client.key) -- what an exporter needs
#   spool/                the backups; server.log and client-*.log
#
# Commands:
#   start        write the configs, (re)start the server, wait for the status port, take a
#                first backup of testclient if it has none yet (FORCE_BACKUP=1: always),
#                make sure the monitor client has its certificate. Idempotent: re-running
#                keeps CA, certificates and backups, so a restart is cheap.
#   stop         stop the server (its whole process group) and any slow backup.
#   restart      stop + start the server only (no config rewrite, no backup).
#   status       "running (pid N)" / "not running"; exit 0 / 1.
#   backup       take one more backup of testclient now (foreground).
#   slow-backup  start a backup of BASE/slowdata (SLOW_MB MiB of random data, default 8, plus
#                two fifos fed for SLOW_SECONDS, default 30) in the background; returns once
#                the server reports it running. It ends by itself after about SLOW_SECONDS.
#   wait-idle    wait (up to 600 s) until no slow backup is running.
#   json [REQ]   what the server answers the monitor client for `c:REQ` (one JSON line), read
#                with burp's own client (`burp -a m`): the reference the tests compare with.
#   summary      `burp -a S` as the monitor client (burp's own one-screen status summary).
#   env          print the values an exporter config needs, as shell assignments.
#
# Environment: BASE, PORT (backups, default 4971), STATUS_PORT (default 4972),
#   EXTRA_CLIENTS (N >= 0: exactly N extra clients extra-0001.. in the clientconfdir; they
#   have no backups and exist to make the client list large, e.g. 2000 for the benchmark),
#   NAMED_CLIENTS (one client name per line, no '/'; unset: leave whatever is there; set:
#   exactly these): clients with no backups whose names a test chooses, e.g. markup
#   (`<b>bold`) to check that status pages escape what the server says,
#   PASS_TEST, PASS_MON, BURP (path of the burp binary), BURP_CA (path of burp_ca).
set -euo pipefail

BASE=${BASE:-/tmp/custos-burp-demo}
PORT=${PORT:-4971}
STATUS_PORT=${STATUS_PORT:-4972}
PASS_TEST=${PASS_TEST:-abcdefgh}
PASS_MON=${PASS_MON:-monitorpass}
SLOW_MB=${SLOW_MB:-8}
SLOW_SECONDS=${SLOW_SECONDS:-30}
ETC=$BASE/etc
PIDFILE=$BASE/burp.server.pid
SLOWPID=$BASE/slow-backup.pid
FEEDPID=$BASE/slow-feed.pid

die() { echo "burp-test-server: $*" >&2; exit 1; }

find_bin() { # name -> path on PATH or in /usr/sbin (Debian puts burp there; not on a user's PATH)
	command -v "$1" 2>/dev/null || { [ -x "/usr/sbin/$1" ] && echo "/usr/sbin/$1"; } || true
}
need_burp() {
	BURP=${BURP:-$(find_bin burp)}
	BURP_CA=${BURP_CA:-$(find_bin burp_ca)}
	[ -n "$BURP" ] && [ -x "$BURP" ] ||
		die "burp is not installed (Debian package 'burp'; scripts/install-deps.sh installs it)"
	[ -n "$BURP_CA" ] && [ -x "$BURP_CA" ] || die "burp_ca not found (part of Debian's 'burp')"
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

stop_pidfile() { # pidfile: TERM the process group, wait, then KILL
	local pid
	alive "$1" || { rm -f "$1"; return 0; }
	pid=$(cat "$1")
	kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 1 100); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL -- "-$pid" 2>/dev/null || true
	rm -f "$1"
}

stop_all() {
	stop_pidfile "$FEEDPID"
	stop_pidfile "$SLOWPID"
	stop_pidfile "$PIDFILE"
}

write_configs() {
	mkdir -p "$ETC/clientconfdir" "$BASE/spool" "$BASE/data/sub" "$BASE/slowdata" \
		"$BASE/client-testclient/CA-client" "$BASE/client-monitor/CA-client"

	cat >"$ETC/CA.cnf" <<EOF
# /etc/burp/CA.cnf with CA_DIR moved under BASE
CA_DIR                  = $BASE/CA

[ ca ]
dir                     = \$ENV::CA_DIR
database                = \$dir/index.txt
serial                  = \$dir/serial.txt
certs                   = \$dir/certs
new_certs_dir           = \$dir/newcerts
crlnumber               = \$dir/crlnumber.txt
unique_subject          = no
default_md              = sha256
default_days            = 7300
default_crl_days        = 7300
name_opt                = ca_default
cert_opt                = ca_default
x509_extensions         = usr_cert
copy_extensions         = copy
policy                  = policy_anything

[ usr_cert ]
basicConstraints        = CA:FALSE

[ policy_anything ]
commonName              = supplied
EOF

	cat >"$ETC/burp-server.conf" <<EOF
mode = server
listen = 127.0.0.1:$PORT
max_children = 5
listen_status = 127.0.0.1:$STATUS_PORT
max_status_children = 8
directory = $BASE/spool
dedup_group = global
clientconfdir = $ETC/clientconfdir
pidfile = $PIDFILE
hardlinked_archive = 0
working_dir_recovery_method = delete
umask = 0022
syslog = 0
stdout = 1
client_can_delete = 1
client_can_diff = 1
client_can_force_backup = 1
client_can_list = 1
client_can_monitor = 1
client_can_restore = 1
client_can_verify = 1
version_warn = 1
keep = 7
# Every client lets the 'monitor' client see it on the status port.
restore_client = monitor
ca_conf = $ETC/CA.cnf
ca_name = burpCA
ca_server_name = burpserver
ca_burp_ca = $BURP_CA
ca_crl_check = 1
ssl_cert_ca = $ETC/ssl_cert_ca.pem
ssl_cert = $ETC/ssl_cert-server.pem
ssl_key = $ETC/ssl_cert-server.key
ssl_dhfile = $ETC/dhfile.pem
EOF

	printf 'password = %s\n' "$PASS_TEST" >"$ETC/clientconfdir/testclient"
	printf 'password = %s\n' "$PASS_MON" >"$ETC/clientconfdir/monitor"

	# Extra clients: exactly EXTRA_CLIENTS of them (unset: leave whatever is there).
	if [ -n "${EXTRA_CLIENTS:-}" ]; then
		find "$ETC/clientconfdir" -maxdepth 1 -name 'extra-*' -delete
		local i
		for ((i = 1; i <= EXTRA_CLIENTS; i++)); do
			printf 'password = extra%d\n' "$i" >"$ETC/clientconfdir/$(printf 'extra-%04d' "$i")"
		done
	fi

	# Named clients: exactly the lines of NAMED_CLIENTS (unset: leave whatever is there).
	if [ -n "${NAMED_CLIENTS+set}" ]; then
		local n
		if [ -f "$ETC/named-clients" ]; then
			while IFS= read -r n; do
				if [ -n "$n" ]; then rm -f -- "$ETC/clientconfdir/$n"; fi
			done <"$ETC/named-clients"
		fi
		printf '%s\n' "$NAMED_CLIENTS" >"$ETC/named-clients"
		while IFS= read -r n; do
			case "$n" in
			'' ) continue ;;
			*/* | .* | testclient | monitor) die "NAMED_CLIENTS: unusable client name '$n'" ;;
			esac
			printf 'password = named\n' >"$ETC/clientconfdir/$n"
		done <"$ETC/named-clients"
	fi

	client_conf testclient "$PASS_TEST" "$BASE/client-testclient" "$BASE/data" "" >"$ETC/testclient.conf"
	client_conf monitor "$PASS_MON" "$BASE/client-monitor" "$BASE/data" "" >"$ETC/monitor.conf"
	client_conf testclient "$PASS_TEST" "$BASE/client-testclient" "$BASE/slowdata" \
		"read_all_fifos = 1" >"$ETC/slow.conf"

	# Something to back up.
	if [ ! -f "$BASE/data/hello.txt" ]; then
		echo "hello burp" >"$BASE/data/hello.txt"
		head -c 200000 /dev/urandom >"$BASE/data/sub/random.bin"
		seq 1 20000 >"$BASE/data/sub/numbers.txt"
	fi
}

client_conf() { # cname password dir include extra-line
	cat <<EOF
mode = client
server = 127.0.0.1:$PORT
status_port = $STATUS_PORT
cname = $1
password = $2
pidfile = $3/burp.client.pid
syslog = 0
stdout = 1
progress_counter = 0
server_can_restore = 0
network_timeout = 60
ca_burp_ca = $BURP_CA
ca_csr_dir = $3/CA-client
ssl_cert_ca = $3/ssl_cert_ca.pem
ssl_cert = $3/ssl_cert-client.pem
ssl_key = $3/ssl_cert-client.key
ssl_peer_cn = burpserver
include = $4
$5
EOF
}

start_server() {
	stop_pidfile "$PIDFILE"
	if port_open "$STATUS_PORT"; then
		die "127.0.0.1:$STATUS_PORT is already in use by another process (set STATUS_PORT)"
	fi
	# -F: foreground (we background it); setsid: its own process group, so `stop` also ends
	# the children it forks. On first start the server makes its CA, certificate and DH file.
	setsid "$BURP" -c "$ETC/burp-server.conf" -F >>"$BASE/server.log" 2>&1 </dev/null &
	echo $! >"$PIDFILE"
	local pid=$!
	for _ in $(seq 1 600); do
		kill -0 "$pid" 2>/dev/null || die "server exited at start, see $BASE/server.log"
		port_open "$STATUS_PORT" && port_open "$PORT" && break
		sleep 0.1
	done
	port_open "$STATUS_PORT" || die "server did not open 127.0.0.1:$STATUS_PORT, see $BASE/server.log"
	echo "burp server up: pid $pid, backups 127.0.0.1:$PORT, status 127.0.0.1:$STATUS_PORT"
}

# burp_ca guards itself with one lock directory in /tmp and quietly does nothing when another
# burp_ca holds it, so a client's certificate request can fail when servers start in parallel
# (the tests do). Our certificate steps therefore take a lock of their own and are retried.
ca_lock() { flock "${TMPDIR:-/tmp}/custos-burp-ca.lock" "$@"; }

run_backup() {
	local attempt
	for attempt in 1 2 3; do
		if ca_lock "$BURP" -c "$ETC/testclient.conf" -a b >>"$BASE/client-testclient.log" 2>&1; then
			echo "backup of testclient done"
			return 0
		fi
		echo "backup attempt $attempt failed, see $BASE/client-testclient.log" >&2
		sleep 1
	done
	die "backup failed, see $BASE/client-testclient.log"
}

# The status-port view of the monitor client, one JSON document (what an exporter sees).
# stdin stays open until the reply arrived (the first request on a connection takes 1-4 s).
status_json() { # [client]
	local out
	out=$(mktemp)
	{
		echo "j:pretty-print-off"
		echo "c:${1:-}"
		for _ in $(seq 1 150); do
			grep -q '^{"clients"\|Could not find' "$out" && break
			sleep 0.1
		done
	} | timeout 20 "$BURP" -c "$ETC/monitor.conf" -a m >"$out" 2>/dev/null || true
	grep '^{"clients"\|Could not find' "$out" | head -n1
	rm -f "$out"
}

cmd_start() {
	need_burp
	write_configs
	start_server
	if [ "${FORCE_BACKUP:-0}" = 1 ] || [ ! -e "$BASE/spool/testclient/current" ]; then
		run_backup
	fi
	# The monitor client gets its certificate on its first connection (burp's automatic CSR
	# signing); `-a m` with empty stdin logs in and leaves.
	local attempt
	for attempt in 1 2 3; do
		[ -s "$BASE/client-monitor/ssl_cert-client.pem" ] && break
		[ "$attempt" = 1 ] || sleep 1
		ca_lock "$BURP" -c "$ETC/monitor.conf" -a m </dev/null >>"$BASE/client-monitor.log" 2>&1 || true
	done
	[ -s "$BASE/client-monitor/ssl_cert-client.pem" ] ||
		die "monitor client got no certificate, see $BASE/client-monitor.log"
	echo "ready: BASE=$BASE"
}

cmd_slow_backup() {
	need_burp
	alive "$PIDFILE" || die "server not running (run '$0 start' first)"
	alive "$SLOWPID" && die "a slow backup is already running (pid $(cat "$SLOWPID"))"
	stop_pidfile "$FEEDPID"
	# What is backed up, in burp's (name) order: SLOW_MB MiB of fresh random data (nothing
	# dedups), a fifo, 200 small files, a second fifo. burp reads the fifos' contents
	# (read_all_fifos), so the backup lasts exactly as long as we feed them: SLOW_SECONDS
	# (default 30), half each, 64 KiB a second. Between the fifos the server's byte and file
	# counters move, so a test sees progress. Independent of CPU speed; no rate limit needed.
	rm -rf "$BASE/slowdata"
	mkdir -p "$BASE/slowdata"
	local i
	for ((i = 1; i <= SLOW_MB; i++)); do
		head -c 1048576 /dev/urandom >"$BASE/slowdata/1-chunk-$i.bin"
	done
	mkfifo "$BASE/slowdata/2-stream.fifo" "$BASE/slowdata/4-stream.fifo"
	for ((i = 1; i <= 200; i++)); do echo "$i" >"$BASE/slowdata/3-small-$i.txt"; done
	local half=$(((SLOW_SECONDS + 1) / 2))
	# The feeder opens both fifos read-write at once (never blocks on Linux), so whenever the
	# client opens one there is a writer and it waits for data instead of reading EOF; closing
	# a fifo ends that "file".
	setsid bash -c '
		exec 3<>"$0/2-stream.fifo" 4<>"$0/4-stream.fifo"
		for ((s = 0; s < $1; s++)); do head -c 65536 /dev/urandom >&3; sleep 1; done
		exec 3>&-
		for ((s = 0; s < $1; s++)); do head -c 65536 /dev/urandom >&4; sleep 1; done
		exec 4>&-
		sleep 600
	' "$BASE/slowdata" "$half" </dev/null >/dev/null 2>&1 &
	echo $! >"$FEEDPID"
	# The server refuses a backup while it still finalises the previous one ("Now finalising
	# previous backup of client. Please try again later."): retry for up to a minute.
	local pid attempt lines
	for attempt in $(seq 1 30); do
		lines=$(wc -l <"$BASE/client-slow.log" 2>/dev/null || echo 0)
		setsid "$BURP" -c "$ETC/slow.conf" -a b >>"$BASE/client-slow.log" 2>&1 </dev/null &
		pid=$!
		echo "$pid" >"$SLOWPID"
		for _ in $(seq 1 100); do
			kill -0 "$pid" 2>/dev/null || break
			# Running *this* backup: a backup child and a `working` backup directory (a
			# server finalising an interrupted backup also says "running").
			if status_json testclient | grep '"action":"backup"' | grep -q '"working"'; then
				echo "slow backup running: pid $pid (attempt $attempt), about $SLOW_SECONDS s"
				return 0
			fi
			sleep 0.2
		done
		kill -0 "$pid" 2>/dev/null &&
			die "server never reported testclient as running, see $BASE/client-slow.log"
		tail -n +"$((lines + 1))" "$BASE/client-slow.log" | grep -q 'try again later' ||
			die "slow backup ended at once, see $BASE/client-slow.log"
		sleep 2
	done
	die "server kept refusing the backup (still finalising?), see $BASE/client-slow.log"
}

cmd_wait_idle() {
	for _ in $(seq 1 6000); do
		alive "$SLOWPID" || { rm -f "$SLOWPID"; stop_pidfile "$FEEDPID"; echo "idle"; return 0; }
		sleep 0.1
	done
	die "slow backup still running after 600 s"
}

case "${1:-start}" in
start) cmd_start ;;
stop) stop_all; echo "stopped" ;;
restart)
	need_burp
	[ -f "$ETC/burp-server.conf" ] || die "no config under $BASE (run '$0 start' first)"
	start_server
	;;
status)
	if alive "$PIDFILE"; then echo "running (pid $(cat "$PIDFILE"))"; exit 0; fi
	echo "not running"; exit 1
	;;
backup) need_burp; alive "$PIDFILE" || die "server not running"; run_backup ;;
slow-backup) cmd_slow_backup ;;
wait-idle) cmd_wait_idle ;;
json) need_burp; status_json "${2:-}" ;;
summary) need_burp; timeout 30 "$BURP" -c "$ETC/monitor.conf" -a S 2>/dev/null ;;
env)
	cat <<EOF
BURP_HOST=127.0.0.1
BURP_STATUS_PORT=$STATUS_PORT
BURP_CNAME=burpserver
MONITOR_CNAME=monitor
MONITOR_PASSWORD=$PASS_MON
TLS_CA_CERT=$BASE/client-monitor/ssl_cert_ca.pem
TLS_CERT=$BASE/client-monitor/ssl_cert-client.pem
TLS_KEY=$BASE/client-monitor/ssl_cert-client.key
EOF
	;;
*)
	echo "usage: $0 [start|stop|restart|status|backup|slow-backup|wait-idle|json [req]|summary|env]" >&2
	exit 2
	;;
esac
