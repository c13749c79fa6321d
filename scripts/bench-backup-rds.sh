#!/usr/bin/env bash
# CPU of one `rds` run of `backup` (issue 18's figure), waits excluded: a waiting run sleeps,
# so user + system CPU seconds of the whole run (backup and its mysqldump) are the CPU of the
# work, however long AWS takes.
#
#   scripts/bench-backup-rds.sh [--repeat R] [--polls N] [--no-build]
#
# Starts MariaDB (scripts/backup-test-services.sh) and moto with the patched RDS model
# (scripts/moto-aws-test-server.py: the restored instance is the local MariaDB, `creating` for
# its first N polls, default 5), makes the source instance, then runs `backup JOB` (release
# build) R times (default 5) on the test database (2,000 rows) with poll_interval 0.5 s under
# /usr/bin/time, and `mysqldump` alone on the same database for comparison. Prints a Markdown
# table: wall, CPU (user + sys) of the run, of mysqldump alone, and their difference (custos:
# the API calls, polls, zstd and OpenPGP of the dump). Needs python3 with moto[server]
# (scripts/install-deps.sh), mysqldump, /usr/bin/time, cargo.
set -euo pipefail

REPEAT=5
POLLS=5
BUILD=1
while [[ $# -gt 0 ]]; do
	case $1 in
	--repeat) REPEAT=$2; shift 2 ;;
	--polls) POLLS=$2; shift 2 ;;
	--no-build) BUILD=0; shift ;;
	*) echo "unknown argument $1" >&2; exit 2 ;;
	esac
done
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/custos-bench-rds.XXXXXX)
moto_pid=
cleanup() {
	[[ -n $moto_pid ]] && kill "$moto_pid" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

[[ $BUILD == 1 ]] && (cd "$root" && cargo build --release -p custos-backup --bin backup >&2)
bin=$root/target/release/backup
eval "$(bash "$root/scripts/backup-test-services.sh" start | grep '^CUSTOS_')"

MOTO_RDS_CREATING_POLLS=$POLLS python3 "$root/scripts/moto-aws-test-server.py" >"$work/moto.out" 2>/dev/null &
moto_pid=$!
for _ in $(seq 100); do grep -q '^port=' "$work/moto.out" 2>/dev/null && break; sleep 0.1; done
port=$(sed -n 's/^port=//p' "$work/moto.out")
url=http://127.0.0.1:$port
AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
	python3 "$root/crates/backup/tests/it/aws_fixture.py" "$url" rds-source mysql benchdb "$CUSTOS_MYSQL_PORT" >/dev/null

mkdir -p "$work/dest"
cat >"$work/job.json" <<EOF
{"hostname": "bench",
 "sources": [{"id": "orders", "type": "rds", "instancename": "benchdb", "region": "eu-west-1",
   "dbuser": "$CUSTOS_DB_USER", "dbpass": "$CUSTOS_DB_PASS", "dbname": "$CUSTOS_DB_NAME",
   "credentials": {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"},
   "endpoint_url": "$url", "poll_interval": 0.5, "passphrase": "bench"}],
 "destinations": [{"id": "disk", "type": "local", "path": "$work/dest"}]}
EOF
chmod 600 "$work/job.json"
printf '[client]\nuser=%s\npassword=%s\nhost=127.0.0.1\nport=%s\n' \
	"$CUSTOS_DB_USER" "$CUSTOS_DB_PASS" "$CUSTOS_MYSQL_PORT" >"$work/my.cnf"
chmod 600 "$work/my.cnf"

echo "| run | wall s | CPU s (backup run) | CPU s (mysqldump alone) | custos CPU s |"
echo "|---|---|---|---|---|"
for i in $(seq "$REPEAT"); do
	/usr/bin/time -f "%e %U %S" -o "$work/t" "$bin" "$work/job.json" >/dev/null 2>&1 ||
		{ echo "backup run $i failed" >&2; exit 1; }
	read -r wall user sys <"$work/t"
	/usr/bin/time -f '%U %S' -o "$work/d" mysqldump --defaults-file="$work/my.cnf" \
		--routines --events --databases "$CUSTOS_DB_NAME" >/dev/null
	read -r duser dsys <"$work/d"
	python3 -c "r=$user+$sys; d=$duser+$dsys; print(f'| $i | $wall | {r:.2f} | {d:.2f} | {r-d:.2f} |')"
done
