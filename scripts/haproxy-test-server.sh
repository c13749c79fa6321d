#!/usr/bin/env bash
# A throw-away HAProxy (Debian `haproxy`, 2.6 on bookworm) on 127.0.0.1 for the
# haproxysessionmon integration tests, the demo and the benchmark. No systemd, no root: it writes
# a config under BASE and runs `haproxy -D` with a pid file there.
#
# What it serves (every port from the environment, so tests pick free ones):
#   STATS_PORT   the stats page at /haproxy?stats (`;csv` appended for CSV, the URL of the
#                original haproxysessionmon's README), basic auth STATS_USER:STATS_PASS
#                (default admin:s3cret; NO_AUTH=1: none)
#   WEB_PORT     fe_web (http): /api* -> be_api, the rest -> be_app
#   TCP_PORT     fe_tcp (tcp) -> be_tcp, whose one server is HOLD_PORT: a listener the caller
#                runs that accepts and holds connections, so every connection a test opens to
#                TCP_PORT is one current session (scur) on fe_tcp, be_tcp and its server
#   ORIGIN_PORT  origin (http): answers 200 itself; be_app's and be_api's servers point here
#   TLS_PORT     (optional) the same stats page over TLS, with a certificate for IP 127.0.0.1
#                signed by a throw-away CA: BASE/tls/ca.pem is what a client must trust
#   BASE/admin.sock  the runtime API (level admin): `show stat`, `show info`
#   be_app also has a server on a closed port (DOWN) and one in maintenance (MAINT).
#
# Commands: start (write config, check it, (re)start, wait until the stats page answers),
#           stop (kill the pid in BASE/haproxy.pid), status.
# Environment: BASE (default /tmp/custos-haproxy-test), the ports above (defaults 18404,
#   18080, 18443, 18001, 18002), STATS_USER, STATS_PASS, HAPROXY (path of the binary),
#   EXTRA_BACKENDS (N: N more backends be_extra_0001.. with one server each; benchmark).
set -euo pipefail

BASE=${BASE:-/tmp/custos-haproxy-test}
STATS_PORT=${STATS_PORT:-18404}
WEB_PORT=${WEB_PORT:-18080}
TCP_PORT=${TCP_PORT:-18443}
ORIGIN_PORT=${ORIGIN_PORT:-18001}
HOLD_PORT=${HOLD_PORT:-18002}
STATS_USER=${STATS_USER:-admin}
STATS_PASS=${STATS_PASS:-s3cret}
EXTRA_BACKENDS=${EXTRA_BACKENDS:-0}
CFG=$BASE/haproxy.cfg
PIDFILE=$BASE/haproxy.pid
SOCK=$BASE/admin.sock

find_haproxy() {
  if [[ -n ${HAPROXY:-} ]]; then echo "$HAPROXY"; return; fi
  for p in "$(command -v haproxy 2>/dev/null || true)" /usr/sbin/haproxy /sbin/haproxy; do
    [[ -n $p && -x $p ]] && { echo "$p"; return; }
  done
  echo "haproxy not found: install Debian's haproxy (scripts/install-deps.sh)" >&2
  exit 1
}

stop() {
  if [[ -f $PIDFILE ]]; then
    for p in $(cat "$PIDFILE"); do kill "$p" 2>/dev/null || true; done
    for _ in $(seq 1 50); do
      alive=0
      for p in $(cat "$PIDFILE"); do kill -0 "$p" 2>/dev/null && alive=1; done
      [[ $alive == 0 ]] && break
      sleep 0.1
    done
    rm -f "$PIDFILE"
  fi
}

# A CA and a server certificate for 127.0.0.1 signed by it (webpki accepts no self-signed leaf).
make_tls() {
  local d=$BASE/tls
  [[ -f $d/stats.pem ]] && return 0
  command -v openssl >/dev/null || { echo "openssl missing (Debian package openssl)" >&2; exit 1; }
  mkdir -p "$d"
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=custos test CA" \
    -keyout "$d/ca.key" -out "$d/ca.pem" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$d/server.key" -out "$d/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > "$d/ext.cnf"
  openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
    -days 30 -extfile "$d/ext.cnf" -out "$d/server.pem" 2>/dev/null
  cat "$d/server.pem" "$d/server.key" > "$d/stats.pem"
}

write_config() {
  mkdir -p "$BASE"
  local AUTH_LINES="" TLS_LINE=""
  if [[ -n ${TLS_PORT:-} ]]; then
    make_tls
    TLS_LINE="    bind 127.0.0.1:$TLS_PORT ssl crt $BASE/tls/stats.pem"
  fi
  if [[ ${NO_AUTH:-0} != 1 ]]; then
    AUTH_LINES=$(printf '    stats realm HAProxy\\ Statistics\n    stats auth %s:%s\n' "$STATS_USER" "$STATS_PASS")
  fi
  cat > "$CFG" <<CFG
global
    daemon
    pidfile $PIDFILE
    maxconn 2000
    stats socket $SOCK mode 600 level admin

defaults
    mode http
    timeout connect 2s
    timeout client 120s
    timeout server 120s
    timeout check 1s

listen stats
    bind 127.0.0.1:$STATS_PORT
$TLS_LINE
    stats enable
    stats uri /haproxy?stats
$AUTH_LINES
frontend origin
    bind 127.0.0.1:$ORIGIN_PORT
    http-request return status 200 content-type text/plain string "origin\n"

frontend fe_web
    bind 127.0.0.1:$WEB_PORT
    maxconn 500
    use_backend be_api if { path_beg /api }
    default_backend be_app

frontend fe_tcp
    mode tcp
    bind 127.0.0.1:$TCP_PORT
    default_backend be_tcp

backend be_app
    balance roundrobin
    server app1 127.0.0.1:$ORIGIN_PORT maxconn 100
    server app2 127.0.0.1:$ORIGIN_PORT maxconn 100
    server app3_down 127.0.0.1:1 check inter 1s
    server app4_maint 127.0.0.1:$ORIGIN_PORT disabled

backend be_api
    server api1 127.0.0.1:$ORIGIN_PORT

backend be_tcp
    mode tcp
    server hold1 127.0.0.1:$HOLD_PORT
CFG
  for i in $(seq 1 "$EXTRA_BACKENDS"); do
    printf 'backend be_extra_%04d\n    server s1 127.0.0.1:%s\n' "$i" "$ORIGIN_PORT" >> "$CFG"
  done
}

start() {
  local haproxy
  haproxy=$(find_haproxy)
  stop
  write_config
  "$haproxy" -c -q -f "$CFG"
  rm -f "$SOCK"
  "$haproxy" -f "$CFG"
  for _ in $(seq 1 100); do
    if [[ -S $SOCK ]] && (exec 3<>"/dev/tcp/127.0.0.1/$STATS_PORT") 2>/dev/null; then
      echo "haproxy running (pid $(cat "$PIDFILE")): stats http://127.0.0.1:$STATS_PORT/haproxy?stats;csv, socket $SOCK"
      return 0
    fi
    sleep 0.1
  done
  echo "haproxy did not come up; config $CFG" >&2
  exit 1
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  status)
    if [[ -f $PIDFILE ]] && kill -0 "$(head -1 "$PIDFILE")" 2>/dev/null; then
      echo "running (pid $(cat "$PIDFILE"))"
    else
      echo "not running"; exit 1
    fi ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
