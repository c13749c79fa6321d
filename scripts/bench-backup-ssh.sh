# The `--ssh` part of scripts/bench-backup.sh (sourced by it, not run alone): `folder-ssh`
# over a loopback OpenSSH server against the shell pipeline it replaces, side by side. It
# provides ROOT, BENCH_DIR, BACKUP, TIME, PASS, WORK, GB, REPEAT, MD, IN, INPUT_BYTES, PARENT,
# BASE, GPG and the measure/row helpers.
#
# sshd is scripts/sshd-test-server.sh (127.0.0.1, a free port, key login as `custos-ssh`);
# the input folder must be readable by that user (bench-backup.sh makes it world-readable).
# Rows: the original folder-ssh (`ssh host tar c | gpg -c`, once: it is the slow one), the
# shell pipeline `ssh host tar c | zstd -1 | gpg -z0 -c`, `backup` with a folder-ssh source,
# and `backup` with the local folder source on the same input (what SSH costs). Peak RSS is
# GNU time's: the largest single local process (backup or ssh; the remote tar runs under
# sshd and is not counted, nor is sshd's CPU, which shares the same cores).

for t in ssh /usr/sbin/sshd; do
    command -v "$t" >/dev/null || { echo "missing: $t (Debian packages: openssh-client openssh-server)" >&2; exit 3; }
done

"$ROOT/scripts/sshd-test-server.sh" >"$WORK/sshd.out" 2>"$WORK/sshd.log" &
SSHD=$!
trap 'kill "$SSHD" 2>/dev/null || true; rm -rf "${SSHD_DIR:-/nonexistent}"; gpgconf --kill gpg-agent >/dev/null 2>&1 || true' EXIT
for _ in $(seq 1 100); do
    grep -q '^config=' "$WORK/sshd.out" 2>/dev/null && break
    kill -0 "$SSHD" 2>/dev/null || { cat "$WORK/sshd.log" >&2; echo "sshd-test-server.sh failed" >&2; exit 3; }
    sleep 0.1
done
SSHD_DIR=$(sed -n 's/^dir=//p' "$WORK/sshd.out")
SSH_CONFIG=$(sed -n 's/^config=//p' "$WORK/sshd.out")
ALIAS=custos-sshd-test
SSH="ssh -F '$SSH_CONFIG' -o BatchMode=yes -T -- $ALIAS"
for _ in $(seq 1 100); do
    ssh -F "$SSH_CONFIG" -o BatchMode=yes -- "$ALIAS" true 2>/dev/null && break
    sleep 0.1
done
ssh -F "$SSH_CONFIG" -o BatchMode=yes -- "$ALIAS" test -r "$IN/text/big/f00000" ||
    { echo "the ssh user cannot read $IN" >&2; exit 3; }

job_ssh() { # job_ssh FILE DEST TYPE
    mkdir -p "$2"
    local keys
    if [[ $3 == folder-ssh ]]; then
        keys="\"type\": \"folder-ssh\", \"sshhost\": \"$ALIAS\", \"ssh_command\": [\"ssh\", \"-F\", \"$SSH_CONFIG\"], \"path\": \"$IN\""
    else
        keys="\"type\": \"folder\", \"path\": \"$IN\""
    fi
    cat >"$1" <<EOF
{
  "hostname": "bench",
  "sources": [ { "id": "bench", "name": "bench $3", $keys, "passphrase": "$PASS" } ],
  "destinations": [ { "id": "disk", "type": "local", "path": "$2" } ]
}
EOF
    chmod 600 "$1"
}
job_ssh "$WORK/job-ssh.json" "$WORK/out/backup-ssh" folder-ssh
job_ssh "$WORK/job-local.json" "$WORK/out/backup-local" folder

N_SSH_ORIG="original folder-ssh: ssh host tar c \| gpg -c (AES256, zlib)"
N_SSH_SHELL="shell: ssh host tar c \| zstd -1 \| gpg -z0 -c"
N_SSH_BACKUP="backup folder-ssh (zstd + OpenPGP)"
N_LOCAL_BACKUP="backup folder, local (same input)"
echo "running folder-ssh (${GB} GiB, $REPEAT rounds) ..." >&2
measure "$N_SSH_ORIG" "$WORK/out/ssh-orig.tar.gpg" "$INPUT_BYTES" \
    sh -c "$SSH tar cf - -C '$PARENT' './$BASE' | $GPG --symmetric --cipher-algo AES256 -o '$WORK/out/ssh-orig.tar.gpg'"
for _ in $(seq 1 "$REPEAT"); do
    measure "$N_SSH_SHELL" "$WORK/out/ssh-shell.tar.zst.gpg" "$INPUT_BYTES" \
        sh -c "$SSH tar cf - -C '$PARENT' './$BASE' | zstd -1 -q | $GPG -z0 --symmetric --cipher-algo AES256 -o '$WORK/out/ssh-shell.tar.zst.gpg'"
    measure "$N_SSH_BACKUP" "$WORK/out/backup-ssh" "$INPUT_BYTES" "$BACKUP" "$WORK/job-ssh.json" >/dev/null
    measure "$N_LOCAL_BACKUP" "$WORK/out/backup-local" "$INPUT_BYTES" "$BACKUP" "$WORK/job-local.json" >/dev/null
done
# Sanity: the folder-ssh object decrypts with real gpg and unpacks with zstd + tar.
"$BACKUP" "$WORK/job-ssh.json" >/dev/null
OBJ=$(find "$WORK/out/backup-ssh" -name '*.gpg' | head -1)
gpg --batch --quiet --pinentry-mode loopback --passphrase-file "$WORK/pass" -d "$OBJ" | zstd -dq | tar tf - | wc -l >"$WORK/members"
echo "sanity: $OBJ decrypts with gpg, $(cat "$WORK/members") tar members" >&2
ROWS=()
for n in "${ORDER[@]}"; do ROWS+=("$(row "$n")"); done
rm -rf "$WORK/out"/*

CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
{
    echo "Machine: $(nproc) CPUs ($CPU), $(free -g | awk '/Mem:/ {print $2}') GiB RAM; $(uname -r); page cache warm; load average before the run: $LOAD_BEFORE."
    echo "folder-ssh over a loopback sshd ($(ssh -V 2>&1)); sshd, the remote tar and the local side share the same cores."
    echo "Best of $REPEAT interleaved rounds; the gpg-zlib pipeline ran once. Peak RSS: the largest single local process."
    echo "Input: ${GB} GiB mixed folder (half pseudo-random-word text, half random bytes), tar stream $INPUT_BYTES bytes."
    echo
    echo "| pipeline | wall s | MB/s (input) | peak RSS MiB | output MB | ratio |"
    echo "|---|---:|---:|---:|---:|---:|"
    printf '%s\n' "${ROWS[@]}"
} | tee "${MD:-/dev/null}"
exit $FAILED
