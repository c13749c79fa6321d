#!/usr/bin/env bash
# Runs Debian's OpenSSH server (package openssh-server) on 127.0.0.1 for the `backup` crate's
# SSH source tests: a private sshd_config, its own host key, key login only, and one
# throwaway user, `custos-ssh` (a system user with /bin/sh, created if missing), whose
# authorized_keys holds a client key generated here (root may log in with that key too).
# Nothing of the system's sshd is used or changed (its config, keys and port 22 stay as they are).
#
# Usage: scripts/sshd-test-server.sh [PORT]
#   Without PORT a free port is chosen. Prints, one per line:
#     port=<n>            the port sshd listens on (127.0.0.1)
#     dir=<temp dir>      everything below; the caller removes it when done
#     user=custos-ssh     the login user
#     identity=<file>     the client's private key
#     known_hosts=<file>  the host key, as `[127.0.0.1]:<port> ssh-ed25519 ...`
#     config=<file>       an ssh_config: `Host custos-sshd-test` (alias with port, user, key)
#                         and defaults for every host (this known_hosts, this key), for
#                         `ssh -F <file> ...`
#   then becomes sshd (exec, foreground, log on stderr), so the caller's child PID is the
#   server's. Exit 3 when sshd/ssh-keygen are missing or not run as root (tests skip,
#   unless CUSTOS_REQUIRE_SERVICES=1).
set -euo pipefail
user=custos-ssh
sshd=/usr/sbin/sshd
for tool in "$sshd" /usr/bin/ssh-keygen /usr/bin/ssh; do
	if [ ! -x "$tool" ]; then
		echo "sshd-test-server: MISSING: $tool (apt-get install openssh-server openssh-client; scripts/install-deps.sh)" >&2
		exit 3
	fi
done
if [ "$(id -u)" != 0 ]; then
	echo "sshd-test-server: needs root (creates a system user, runs sshd)" >&2
	exit 3
fi
PATH=$PATH:/usr/sbin
# Idempotent. `usermod -p '*'`: a locked account (`!` in shadow, useradd's default) is
# refused by sshd even for key logins. Tests start servers in parallel: a start that finds
# /etc/passwd or /etc/shadow locked by another one tries again.
ready() { id "$user" >/dev/null 2>&1 && [ "$(getent shadow "$user" | cut -d: -f2)" = '*' ]; }
for _ in $(seq 1 50); do
	ready && break
	id "$user" >/dev/null 2>&1 || useradd --system --no-create-home --home-dir / --shell /bin/sh "$user" 2>/dev/null || true
	id "$user" >/dev/null 2>&1 && usermod -p '*' "$user" 2>/dev/null || true
	ready || sleep 0.1
done
ready || { echo "sshd-test-server: cannot create the user $user with a usable password field" >&2; exit 1; }
# sshd's privilege separation directory (Debian creates it only when its service starts).
mkdir -p /run/sshd
chmod 755 /run/sshd
port=${1:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
dir=$(mktemp -d /tmp/custos-sshd.XXXXXX)
chmod 755 "$dir"
ssh-keygen -q -t ed25519 -N '' -C custos-sshd-test-host -f "$dir/host_key"
ssh-keygen -q -t ed25519 -N '' -C custos-sshd-test-client -f "$dir/client_key"
cp "$dir/client_key.pub" "$dir/authorized_keys"
chmod 644 "$dir/authorized_keys"
printf '[127.0.0.1]:%s %s\n' "$port" "$(cut -d' ' -f1,2 "$dir/host_key.pub")" >"$dir/known_hosts"
cat >"$dir/sshd_config" <<CONF
ListenAddress 127.0.0.1:$port
HostKey $dir/host_key
PidFile none
AuthorizedKeysFile $dir/authorized_keys
# The temp dir sits in /tmp (mode 1777), which StrictModes would refuse.
StrictModes no
# root only with this run's key: the real-LVM test (runs where device-mapper exists) logs in
# as root, as the original's lvm-ssh example does.
AllowUsers $user root
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
X11Forwarding no
AllowTcpForwarding no
AllowAgentForwarding no
PermitUserEnvironment no
PrintMotd no
LogLevel VERBOSE
CONF
cat >"$dir/config" <<CONF
Host custos-sshd-test
  HostName 127.0.0.1
  Port $port
  User $user

Host *
  IdentityFile $dir/client_key
  IdentitiesOnly yes
  UserKnownHostsFile $dir/known_hosts
  GlobalKnownHostsFile /dev/null
  PasswordAuthentication no
CONF
echo "port=$port"
echo "dir=$dir"
echo "user=$user"
echo "identity=$dir/client_key"
echo "known_hosts=$dir/known_hosts"
echo "config=$dir/config"
# -D: foreground; -e: log to stderr.
exec "$sshd" -D -e -f "$dir/sshd_config"
