#!/usr/bin/env bash
# Runs Debian's smbd (package samba) on 127.0.0.1 for the `backup` crate's samba tests: a
# private smb.conf, state and passdb in a fresh temporary directory, one share `backups`
# (its directory printed as `share=`) and one real user, `custos-smb` (a system user created
# if missing), whose password is $CUSTOS_SMB_PASSWORD (default below), workgroup CUSTOSTEST.
#
# Usage: scripts/samba-test-server.sh [PORT]
#   Without PORT a free port is chosen. Prints `port=<n>`, `dir=<temp dir>` and
#   `share=<share dir>` on stdout, then becomes smbd (exec, foreground), so the caller's child
#   PID is the server's. The caller removes the temp dir when done.
#   Exit 3 when smbd/pdbedit are missing or not run as root (tests skip, unless
#   CUSTOS_REQUIRE_SERVICES=1).
set -euo pipefail
user=custos-smb
password=${CUSTOS_SMB_PASSWORD:-Sk-custos-smb-secret}
for tool in smbd pdbedit smbclient; do
	if ! command -v "$tool" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$tool" ]; then
		echo "samba-test-server: MISSING: $tool (apt-get install samba smbclient; scripts/install-deps.sh)" >&2
		exit 3
	fi
done
if [ "$(id -u)" != 0 ]; then
	echo "samba-test-server: needs root (creates a system user, runs smbd)" >&2
	exit 3
fi
PATH=$PATH:/usr/sbin
# Idempotent; a concurrent start may win the race, which is fine.
id "$user" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$user" 2>/dev/null || id "$user" >/dev/null
port=${1:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
dir=$(mktemp -d /tmp/custos-smbd.XXXXXX)
# The share's owner must reach it; state stays root's.
chmod 755 "$dir"
mkdir -p "$dir/share" "$dir/private" "$dir/lock" "$dir/state" "$dir/cache" "$dir/pid" "$dir/log"
chmod 700 "$dir/private"
chown "$user" "$dir/share"
cat >"$dir/smb.conf" <<CONF
[global]
  workgroup = CUSTOSTEST
  server role = standalone server
  smb ports = $port
  interfaces = 127.0.0.1
  bind interfaces only = yes
  disable netbios = yes
  private dir = $dir/private
  lock directory = $dir/lock
  state directory = $dir/state
  cache directory = $dir/cache
  pid directory = $dir/pid
  ncalrpc dir = $dir/ncalrpc
  log file = $dir/log/log.%m
  passdb backend = tdbsam:$dir/private/passdb.tdb
  map to guest = never
  load printers = no
  printing = bsd
  printcap name = /dev/null
  disable spoolss = yes
  server min protocol = SMB2_10
[backups]
  path = $dir/share
  read only = no
  valid users = $user
CONF
printf '%s\n%s\n' "$password" "$password" | pdbedit -s "$dir/smb.conf" -a -u "$user" -t >/dev/null
echo "port=$port"
echo "dir=$dir"
echo "share=$dir/share"
# smbd signals its whole process group when it stops: it makes its own session, which
# fails when this shell leads a group already; then that group is ours alone.
group=()
if [ "$(ps -o pgid= -p $$ | tr -d ' ')" = "$$" ]; then
	group=(--no-process-group)
fi
exec smbd --foreground "${group[@]}" --debug-stdout -s "$dir/smb.conf"
