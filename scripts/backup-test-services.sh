#!/usr/bin/env bash
# Throw-away MariaDB and PostgreSQL on 127.0.0.1 for the `backup` crate's integration tests
# and for .ci/run. No systemd, no system-wide state: everything lives under $BASE (default
# /tmp/custos-backup-services) and `stop` + `rm -rf $BASE` removes it all.
#
# Ports: CUSTOS_MYSQL_PORT / CUSTOS_PGSQL_PORT when set; otherwise `start` picks free ports
# (again, if a server finds its port taken in the meantime) and records them under $BASE, so a
# fixed port can never collide with another server or another test run on the machine.
#
# Usage: scripts/backup-test-services.sh start|stop|status|env
#   start   initialise (first time), start both servers, create the test user + databases and
#           seed data; idempotent (already-running servers are reused on their ports). Exit 0
#           only if both are up; then prints the connection settings (as `env`) on stdout.
#   stop    stop both servers (data stays under $BASE for the next start).
#   status  print up/down per service; exit 0 only if both are up.
#   env     print the connection settings of the running servers (KEY=value lines).
#
# Root-safe: PostgreSQL refuses to run as root and MariaDB should not, so when started as root
# both run as the unprivileged user $SERVICE_USER (default custos-test, created if missing).
# Started as a normal user, they run as that user.
#
# Binaries come from Debian packages (installed by scripts/install-deps.sh):
#   mariadb-server mariadb-client postgresql-15 postgresql-client-15
# A missing binary is reported by name and the script exits 3, so tests can tell "not installed"
# (skip, unless CUSTOS_REQUIRE_SERVICES=1) from "installed but broken" (exit 1: fail).
set -euo pipefail

BASE=${BASE:-/tmp/custos-backup-services}
HOST=127.0.0.1
# Ports asked for; empty: `start` picks one and records it ($MY_DIR/port, $PG_DIR/port), where
# the other commands (and a later `start` finding the server still up) read it.
MY_PORT_GIVEN=${CUSTOS_MYSQL_PORT:-}
PG_PORT_GIVEN=${CUSTOS_PGSQL_PORT:-}
MY_PORT=$MY_PORT_GIVEN
PG_PORT=$PG_PORT_GIVEN
PORT_TRIES=5 # picks of a free port before giving up (each can be taken before the server binds)
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
SERVICE_USER=${SERVICE_USER:-custos-test}
# Test credentials. The password is deliberately distinctive: the secrets test greps process
# argv and logs for it.
DB_USER=custos
DB_PASS='Dbpw-7cQ2x-custos'
DB_NAME=custos_test
DB_NAME2=custos_test2
DEADLINE=${DEADLINE:-60} # seconds to wait for a server to accept connections

MY_DIR=$BASE/mariadb
PG_DIR=$BASE/pgsql
LOG_DIR=$BASE/log
MY_SOCK=$MY_DIR/mysqld.sock
MY_PID=$MY_DIR/mysqld.pid

log() { echo "backup-test-services: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

find_bin() { # name, candidates...: the first executable candidate, or exit 3 naming what is missing
    local name=$1; shift
    local c
    for c in "$@"; do
        if [[ $c == /* ]]; then [[ -x $c ]] && { echo "$c"; return 0; }
        else command -v "$c" >/dev/null 2>&1 && { command -v "$c"; return 0; }; fi
    done
    log "MISSING: $name (looked for: $*); install the Debian packages listed in scripts/apt-packages.txt (scripts/install-deps.sh)"
    exit 3
}

resolve_bins() {
    MARIADBD=$(find_bin "MariaDB server" /usr/sbin/mariadbd /usr/sbin/mysqld mariadbd)
    MARIADB_INSTALL_DB=$(find_bin "mariadb-install-db" mariadb-install-db mysql_install_db)
    MARIADB=$(find_bin "MariaDB client" mariadb mysql)
    INITDB=$(find_bin "PostgreSQL initdb" "$PGBIN/initdb")
    PG_CTL=$(find_bin "PostgreSQL pg_ctl" "$PGBIN/pg_ctl")
    find_bin "PostgreSQL server" "$PGBIN/postgres" >/dev/null
    PSQL=$(find_bin "PostgreSQL client psql" "$PGBIN/psql" psql)
    find_bin "mysqldump" mariadb-dump mysqldump >/dev/null
    find_bin "pg_dump" "$PGBIN/pg_dump" pg_dump >/dev/null
}

# as_svc CMD...: run a command as the service user (itself when not root).
as_svc() {
    if [[ $(id -u) -eq 0 ]]; then runuser -u "$SERVICE_USER" -- "$@"; else "$@"; fi
}

ensure_user() {
    [[ $(id -u) -eq 0 ]] || { SERVICE_USER=$(id -un); return 0; }
    if ! id "$SERVICE_USER" >/dev/null 2>&1; then
        useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
            "$SERVICE_USER" || die "cannot create user $SERVICE_USER"
    fi
}

port_open() { [[ -n $1 ]] && (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# A port nothing listens on now: the kernel's pick for a socket bound to port 0.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# The ports `start` recorded, for the servers left running by an earlier call.
load_ports() {
    [[ -n $MY_PORT || ! -f $MY_DIR/port ]] || MY_PORT=$(<"$MY_DIR/port")
    [[ -n $PG_PORT || ! -f $PG_DIR/port ]] || PG_PORT=$(<"$PG_DIR/port")
}

# retry_or_die WHAT PORT GIVEN TRY LOG SEEN: after a failed start, returns (to try another
# port) when we picked PORT and the lines LOG gained since line SEEN say it was taken in the
# meantime; otherwise shows the log's tail and exits.
retry_or_die() {
    local what=$1 port=$2 given=$3 try=$4 log_file=$5 seen=$6
    if [[ -z $given ]] && ((try < PORT_TRIES)) \
        && tail -n "+$((seen + 1))" "$log_file" 2>/dev/null | grep -q 'Address already in use'; then
        log "port $port was taken before $what bound it; picking another"
        return 0
    fi
    tail -20 "$log_file" >&2
    die "$what did not start on $HOST:$port (waited at most ${DEADLINE}s; log: $log_file)"
}

wait_port() { # port, what, pid-or-empty
    local end=$((SECONDS + DEADLINE))
    while ((SECONDS < end)); do
        port_open "$1" && return 0
        if [[ -n ${3:-} ]] && ! kill -0 "$3" 2>/dev/null; then return 1; fi
        sleep 0.2
    done
    return 1
}

# ---------------------------------------------------------------- MariaDB
my_sql() { "$MARIADB" --no-defaults -S "$MY_SOCK" -u "$SVC_DB_ROOT" "$@"; }

# wait_mariadb PID: until the server answers on its socket and its port, or exits (it exits
# when its port is taken). The socket first: an open port alone may be someone else's.
wait_mariadb() {
    local end=$((SECONDS + DEADLINE))
    while ((SECONDS < end)); do
        kill -0 "$1" 2>/dev/null || return 1
        my_sql -e 'SELECT 1' >/dev/null 2>&1 && port_open "$MY_PORT" && return 0
        sleep 0.2
    done
    return 1
}

start_mariadb() {
    mkdir -p "$MY_DIR" "$LOG_DIR"
    if [[ ! -d $MY_DIR/data/mysql ]]; then
        mkdir -p "$MY_DIR/data"
        chown -R "$SERVICE_USER": "$MY_DIR"
        # unix_socket auth: OS user root -> root@localhost, the service user -> its own admin account.
        "$MARIADB_INSTALL_DB" --no-defaults --user="$SERVICE_USER" --datadir="$MY_DIR/data" \
            --auth-root-authentication-method=socket --auth-root-socket-user="$SERVICE_USER" \
            --skip-test-db >"$LOG_DIR/mariadb-install.log" 2>&1 \
            || { tail -20 "$LOG_DIR/mariadb-install.log" >&2; die "mariadb-install-db failed (log: $LOG_DIR/mariadb-install.log)"; }
    fi
    chown -R "$SERVICE_USER": "$MY_DIR"
    if [[ $(id -u) -eq 0 ]]; then SVC_DB_ROOT=root; else SVC_DB_ROOT=$SERVICE_USER; fi
    local running=
    [[ -f $MY_PID ]] && kill -0 "$(cat "$MY_PID")" 2>/dev/null && running=1
    # Reused only on the port we know, as the server itself says (an open port alone may be
    # someone else's).
    if [[ -n $running ]] && [[ $(my_sql -N -B -e 'SELECT @@port' 2>/dev/null) == "$MY_PORT" ]]; then
        log "MariaDB already listening on $HOST:$MY_PORT"
    else
        # Running on a port we do not know (an older run of this script): restart it.
        [[ -z $running ]] || stop_mariadb
        local given=$MY_PORT_GIVEN try
        for ((try = 1; ; try++)); do
            MY_PORT=${given:-$(free_port)}
            local args=(--no-defaults --datadir="$MY_DIR/data" --socket="$MY_SOCK" --pid-file="$MY_PID"
                --port="$MY_PORT" --bind-address="$HOST" --skip-name-resolve --skip-log-bin
                --innodb-buffer-pool-size=64M --innodb-log-file-size=16M --innodb-flush-log-at-trx-commit=0
                --log-error="$LOG_DIR/mariadb.err")
            touch "$LOG_DIR/mariadb.err" && chown "$SERVICE_USER" "$LOG_DIR/mariadb.err"
            local seen; seen=$(wc -l <"$LOG_DIR/mariadb.err")
            # mariadbd as root needs --user; as a normal user it simply runs as that user.
            if [[ $(id -u) -eq 0 ]]; then args+=(--user="$SERVICE_USER"); fi
            setsid "$MARIADBD" "${args[@]}" </dev/null >>"$LOG_DIR/mariadb.out" 2>&1 9>&- &
            local pid=$!
            wait_mariadb "$pid" && break
            retry_or_die MariaDB "$MY_PORT" "$given" "$try" "$LOG_DIR/mariadb.err" "$seen"
        done
        echo "$MY_PORT" >"$MY_DIR/port"
    fi
    seed_mariadb
    log "MariaDB up: $HOST:$MY_PORT user=$DB_USER db=$DB_NAME,$DB_NAME2 (socket $MY_SOCK)"
}

seed_mariadb() {
    # Idempotent: the seed tables are recreated on every start, so a test that broke them
    # cannot poison the next run. Tests that mutate data use their own databases.
    my_sql <<SQL || die "seeding MariaDB failed"
CREATE USER IF NOT EXISTS '$DB_USER'@'%' IDENTIFIED BY '$DB_PASS';
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
ALTER USER '$DB_USER'@'%' IDENTIFIED BY '$DB_PASS';
ALTER USER '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL PRIVILEGES ON *.* TO '$DB_USER'@'%' WITH GRANT OPTION;
GRANT ALL PRIVILEGES ON *.* TO '$DB_USER'@'localhost' WITH GRANT OPTION;
FLUSH PRIVILEGES;
DROP DATABASE IF EXISTS $DB_NAME;
CREATE DATABASE $DB_NAME CHARACTER SET utf8mb4;
USE $DB_NAME;
CREATE TABLE items (
  id INT PRIMARY KEY,
  name VARCHAR(200) NOT NULL,
  note TEXT NULL,
  price DECIMAL(10,2) NOT NULL,
  blob_data BLOB NULL,
  created DATETIME NOT NULL
) ENGINE=InnoDB;
INSERT INTO items
  SELECT seq, CONCAT('item ', seq, ' \'quoted\' "dq" \\\\ back'),
         IF(seq % 7 = 0, NULL, CONCAT('Grüße ✓ ', REPEAT('x', seq % 50))),
         seq * 1.25, IF(seq % 5 = 0, NULL, UNHEX(SHA2(seq, 256))),
         '2024-01-01 00:00:00' + INTERVAL seq MINUTE
  FROM seq_1_to_2000;
CREATE TABLE tags (item_id INT NOT NULL, tag VARCHAR(50) NOT NULL, PRIMARY KEY (item_id, tag),
  FOREIGN KEY (item_id) REFERENCES items(id)) ENGINE=InnoDB;
INSERT INTO tags SELECT seq, CONCAT('tag', seq % 10) FROM seq_1_to_2000;
CREATE VIEW expensive AS SELECT id, name FROM items WHERE price > 2000;
DROP DATABASE IF EXISTS $DB_NAME2;
CREATE DATABASE $DB_NAME2;
CREATE TABLE $DB_NAME2.settings (k VARCHAR(50) PRIMARY KEY, v TEXT);
INSERT INTO $DB_NAME2.settings VALUES ('a','1'),('b','two'),('c',NULL);
SQL
}

stop_mariadb() {
    [[ -f $MY_PID ]] || { log "MariaDB not running (no $MY_PID)"; return 0; }
    local pid; pid=$(cat "$MY_PID")
    kill "$pid" 2>/dev/null || true
    local end=$((SECONDS + DEADLINE))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < end)); do sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && { log "MariaDB $pid did not stop, SIGKILL"; kill -9 "$pid" 2>/dev/null || true; }
    rm -f "$MY_PID"
    log "MariaDB stopped"
}

# ---------------------------------------------------------------- PostgreSQL
pg_sql() { # db, psql args...: as the service user (the initdb superuser) over the socket, peer auth
    local db=$1; shift
    as_svc env PGOPTIONS='-c client_min_messages=warning' "$PSQL" -X -q -v ON_ERROR_STOP=1 -h "$PG_DIR/sock" -p "$PG_PORT" -d "$db" "$@"
}

start_postgres() {
    mkdir -p "$PG_DIR/sock" "$LOG_DIR"
    chown "$SERVICE_USER": "$PG_DIR" "$PG_DIR/sock"
    if [[ ! -f $PG_DIR/data/PG_VERSION ]]; then
        rm -rf "$PG_DIR/data"
        mkdir -m 700 "$PG_DIR/data" && chown "$SERVICE_USER": "$PG_DIR/data"
        # Superuser = the service user (peer auth on the socket); TCP needs a password.
        as_svc "$INITDB" -D "$PG_DIR/data" --auth-local=peer --auth-host=scram-sha-256 \
            -E UTF8 --locale=C.UTF-8 >"$LOG_DIR/pg-initdb.log" 2>&1 \
            || { tail -20 "$LOG_DIR/pg-initdb.log" >&2; die "initdb failed (log: $LOG_DIR/pg-initdb.log)"; }
    fi
    touch "$LOG_DIR/postgres.log" && chown "$SERVICE_USER" "$LOG_DIR/postgres.log"
    local running=
    as_svc "$PG_CTL" -D "$PG_DIR/data" status >/dev/null 2>&1 && running=1
    # Reused only on the port we know, as the server wrote it (line 4 of postmaster.pid).
    if [[ -n $running ]] && [[ $(sed -n 4p "$PG_DIR/data/postmaster.pid" 2>/dev/null) == "$PG_PORT" ]] \
        && port_open "$PG_PORT"; then
        log "PostgreSQL already listening on $HOST:$PG_PORT"
    else
        # Running on a port we do not know (an older run of this script): restart it.
        [[ -z $running ]] || stop_postgres
        local given=$PG_PORT_GIVEN try
        for ((try = 1; ; try++)); do
            PG_PORT=${given:-$(free_port)}
            local seen; seen=$(wc -l <"$LOG_DIR/postgres.log")
            as_svc "$PG_CTL" -D "$PG_DIR/data" -l "$LOG_DIR/postgres.log" -w -t "$DEADLINE" \
                -o "-p $PG_PORT -h $HOST -k $PG_DIR/sock -c fsync=off -c full_page_writes=off -c shared_buffers=32MB" \
                start >/dev/null 9>&- && break
            retry_or_die PostgreSQL "$PG_PORT" "$given" "$try" "$LOG_DIR/postgres.log" "$seen"
        done
        wait_port "$PG_PORT" PostgreSQL || die "PostgreSQL not listening on $HOST:$PG_PORT"
        echo "$PG_PORT" >"$PG_DIR/port"
    fi
    seed_postgres
    log "PostgreSQL up: $HOST:$PG_PORT user=$DB_USER db=$DB_NAME (socket dir $PG_DIR/sock)"
}

seed_postgres() {
    pg_sql postgres <<SQL || die "creating the PostgreSQL role failed"
DO \$\$BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$DB_USER') THEN
    CREATE ROLE $DB_USER LOGIN CREATEDB;
  END IF;
END\$\$;
ALTER ROLE $DB_USER LOGIN CREATEDB PASSWORD '$DB_PASS';
DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE);
CREATE DATABASE $DB_NAME OWNER $DB_USER ENCODING 'UTF8';
SQL
    # Seed as the test user so pg_dump (run as that user) can read everything and restore it.
    PGPASSWORD=$DB_PASS PGOPTIONS='-c client_min_messages=warning' "$PSQL" -X -q -v ON_ERROR_STOP=1 -h "$HOST" -p "$PG_PORT" -U "$DB_USER" -d "$DB_NAME" <<'SQL' \
        || die "seeding PostgreSQL failed"
CREATE TABLE items (
  id integer PRIMARY KEY,
  name text NOT NULL,
  note text,
  price numeric(10,2) NOT NULL,
  blob_data bytea,
  created timestamptz NOT NULL
);
INSERT INTO items
  SELECT g, 'item ' || g || ' ''quoted'' "dq" \ back',
         CASE WHEN g % 7 = 0 THEN NULL ELSE 'Grüße ✓ ' || repeat('x', g % 50) || E'\ttab\nnewline' END,
         g * 1.25, CASE WHEN g % 5 = 0 THEN NULL ELSE sha256(g::text::bytea) END,
         timestamptz '2024-01-01 00:00:00+00' + g * interval '1 minute'
  FROM generate_series(1, 2000) g;
CREATE TABLE tags (item_id integer NOT NULL REFERENCES items(id), tag text NOT NULL,
  PRIMARY KEY (item_id, tag));
INSERT INTO tags SELECT g, 'tag' || (g % 10) FROM generate_series(1, 2000) g;
CREATE SEQUENCE counter START 42;
SELECT nextval('counter') \g /dev/null
CREATE VIEW expensive AS SELECT id, name FROM items WHERE price > 2000;
SQL
}

stop_postgres() {
    if [[ -f $PG_DIR/data/postmaster.pid ]]; then
        as_svc "$PG_CTL" -D "$PG_DIR/data" -m fast -w -t "$DEADLINE" stop >/dev/null 2>&1 || true
        log "PostgreSQL stopped"
    else
        log "PostgreSQL not running (no postmaster.pid)"
    fi
}

# ---------------------------------------------------------------- main
status() {
    load_ports
    local rc=0
    if port_open "$MY_PORT"; then echo "up   mariadb    $HOST:$MY_PORT"; else echo "down mariadb    $HOST:$MY_PORT"; rc=1; fi
    if port_open "$PG_PORT"; then echo "up   postgresql $HOST:$PG_PORT"; else echo "down postgresql $HOST:$PG_PORT"; rc=1; fi
    return $rc
}

print_env() {
    load_ports
    [[ -n $MY_PORT && -n $PG_PORT ]] || die "no ports recorded under $BASE: run \`$0 start\` first"
    cat <<EOF
CUSTOS_DB_HOST=$HOST
CUSTOS_MYSQL_PORT=$MY_PORT
CUSTOS_PGSQL_PORT=$PG_PORT
CUSTOS_DB_USER=$DB_USER
CUSTOS_DB_PASS=$DB_PASS
CUSTOS_DB_NAME=$DB_NAME
CUSTOS_DB_NAME2=$DB_NAME2
CUSTOS_MYSQL_SOCKET=$MY_SOCK
EOF
}

case "${1:-}" in
start)
    resolve_bins
    ensure_user
    mkdir -p "$BASE"
    chmod 755 "$BASE"
    # Tests start the services from several processes at once: serialise.
    exec 9>"$BASE/.lock"
    flock -w "$((DEADLINE * 3))" 9 || die "timed out waiting for $BASE/.lock"
    load_ports
    # Skip re-seeding if a previous caller in this boot already brought both up and seeded.
    if port_open "$MY_PORT" && port_open "$PG_PORT" && [[ -f $BASE/.seeded ]] \
        && [[ $(cat "$BASE/.seeded") == "$(stat -c %Y "$MY_PID" 2>/dev/null)-$(stat -c %Y "$PG_DIR/data/postmaster.pid" 2>/dev/null)" ]]; then
        log "both services already up and seeded"
        print_env
        exit 0
    fi
    start_mariadb
    start_postgres
    echo "$(stat -c %Y "$MY_PID" 2>/dev/null)-$(stat -c %Y "$PG_DIR/data/postmaster.pid" 2>/dev/null)" >"$BASE/.seeded"
    print_env
    ;;
stop)
    resolve_bins
    ensure_user
    load_ports
    stop_mariadb
    stop_postgres
    rm -f "$BASE/.seeded"
    ;;
status) status ;;
env) print_env ;;
*)
    echo "usage: $0 start|stop|status|env" >&2
    exit 2
    ;;
esac
