//! Real MariaDB and PostgreSQL (started by scripts/backup-test-services.sh): dump through a
//! job, restore into a fresh database with `backup restore --to -` piped into the client,
//! compare rows; dump failures; secrets never in children's argv/environment or logs.
//!
//! Each test works in databases of its own (`ct_<tag>_<pid>_<n>`), so they run in parallel
//! and never touch the seed databases.

use crate::common;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

const TOOLS: &[&str] = &["mysql", "mysqldump", "psql", "pg_dump"];

pub(crate) fn setup(test: &str) -> Option<Services> {
    let s = services(test)?;
    require_tools(test, TOOLS).then_some(s)
}

/// Creates MariaDB database `db` as a copy of the seed data, with a view, a trigger, a
/// procedure and an event (dumped thanks to `--routines`/`--events`).
pub(crate) fn mysql_seed(s: &Services, db: &str) {
    s.mysql_sql(
        "",
        &format!(
            "DROP DATABASE IF EXISTS {db}; CREATE DATABASE {db} CHARACTER SET utf8mb4; USE {db};
             CREATE TABLE items LIKE {seed}.items; INSERT INTO items SELECT * FROM {seed}.items;
             CREATE TABLE tags LIKE {seed}.tags; INSERT INTO tags SELECT * FROM {seed}.tags;
             CREATE VIEW expensive AS SELECT id, name FROM items WHERE price > 2000;
             CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY, item INT);
             CREATE TRIGGER items_ai AFTER INSERT ON items FOR EACH ROW INSERT INTO audit (item) VALUES (NEW.id);
             CREATE PROCEDURE count_items() SELECT COUNT(*) FROM items;
             CREATE EVENT nightly ON SCHEDULE EVERY 1 DAY DISABLE DO DELETE FROM audit;",
            seed = s.db
        ),
    );
}

/// Everything that must survive a dump/restore of a seeded MariaDB database, as text.
pub(crate) fn mysql_fingerprint(s: &Services, db: &str) -> String {
    s.mysql_sql(
        db,
        "SELECT id, name, IFNULL(note, 'NULL'), price, IFNULL(HEX(blob_data), 'NULL'), created FROM items ORDER BY id;
         SELECT item_id, tag FROM tags ORDER BY item_id, tag;
         SELECT COUNT(*) FROM expensive;
         SELECT TRIGGER_NAME, ACTION_STATEMENT FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE();
         SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = DATABASE();
         SELECT EVENT_NAME, STATUS FROM information_schema.EVENTS WHERE EVENT_SCHEMA = DATABASE();",
    )
}

/// Creates PostgreSQL database `db` (owned by the test user) with the seed's shape and data.
pub(crate) fn pg_seed(s: &Services, db: &str) {
    s.psql_sql("postgres", &format!("DROP DATABASE IF EXISTS {db}"));
    s.psql_sql("postgres", &format!("CREATE DATABASE {db}"));
    s.psql_sql(
        db,
        "CREATE TABLE items (id integer PRIMARY KEY, name text NOT NULL, note text, price numeric(10,2) NOT NULL,
                             blob_data bytea, created timestamptz NOT NULL);
         INSERT INTO items SELECT g, 'item ' || g || ' ''quoted'' \\ back',
                CASE WHEN g % 7 = 0 THEN NULL ELSE 'Grüße ✓ ' || repeat('x', g % 50) || E'\\ttab\\nnewline' END,
                g * 1.25, CASE WHEN g % 5 = 0 THEN NULL ELSE sha256(g::text::bytea) END,
                timestamptz '2024-01-01 00:00:00+00' + g * interval '1 minute'
           FROM generate_series(1, 2000) g;
         CREATE TABLE tags (item_id integer NOT NULL REFERENCES items(id), tag text NOT NULL, PRIMARY KEY (item_id, tag));
         INSERT INTO tags SELECT g, 'tag' || (g % 10) FROM generate_series(1, 2000) g;
         CREATE SEQUENCE counter START 42; SELECT nextval('counter');
         CREATE VIEW expensive AS SELECT id, name FROM items WHERE price > 2000;",
    );
}

pub(crate) fn pg_fingerprint(s: &Services, db: &str) -> String {
    s.psql_sql(
        db,
        "SELECT id, name, coalesce(note, 'NULL'), price, coalesce(encode(blob_data, 'hex'), 'NULL'), created FROM items ORDER BY id;
         SELECT item_id, tag FROM tags ORDER BY item_id, tag;
         SELECT last_value FROM counter;
         SELECT count(*) FROM expensive;",
    )
}

pub(crate) fn drop_mysql(s: &Services, db: &str) {
    s.mysql_sql("", &format!("DROP DATABASE IF EXISTS {db}"));
}

pub(crate) fn drop_pg(s: &Services, db: &str) {
    s.psql_sql(
        "postgres",
        &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
    );
}

/// Feeds `sql` to a client command's stdin; panics with its stderr on failure.
#[track_caller]
pub(crate) fn pipe_into(mut cmd: Command, sql: &[u8]) {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn client");
    let mut stdin = child.stdin.take().expect("stdin");
    let bytes = sql.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&bytes));
    let out = wait_with_deadline(child, RUN_DEADLINE, &what);
    let _ = feeder.join();
    assert!(
        out.status.success(),
        "{what} failed to load the dump: {}",
        lossy(&out.stderr)
    );
}

pub(crate) fn restore_stdout(cfg: &Path, id: &str) -> Vec<u8> {
    let r = restore_to(cfg, id, Path::new("-"));
    r.assert_code(0);
    assert!(
        !r.stdout.is_empty(),
        "restore --to - wrote nothing:\n{}",
        r.describe()
    );
    r.stdout
}

#[test]
fn mysql_dump_restores_into_a_fresh_database() {
    let Some(s) = setup("mysql_dump_restores_into_a_fresh_database") else {
        return;
    };
    let t = tempfile::tempdir().expect("tempdir");
    let db = unique_db("myrt");
    let db2 = unique_db("myrt2");
    mysql_seed(&s, &db);
    s.mysql_sql("", &format!("CREATE DATABASE {db2}; CREATE TABLE {db2}.kv (k VARCHAR(10) PRIMARY KEY, v TEXT); INSERT INTO {db2}.kv VALUES ('a', 'x'), ('b', NULL);"));
    let want = mysql_fingerprint(&s, &db);
    let want2 = s.mysql_sql(&db2, "SELECT * FROM kv ORDER BY k");
    assert!(
        want.lines().count() > 4000,
        "seed data missing: {} lines",
        want.lines().count()
    );

    let dest = t.path().join("dest");
    let mut job = Job::new(t.path());
    // Two databases, space-separated as in the original's examples.
    job.source(s.mysql_source("mydb", json!(format!("{db} {db2}"))))
        .destination(local_destination("disk", &dest));
    let cfg = job.write();
    let r = run_job(&cfg);
    r.assert_code(0);
    let object = only_object(&dest, "mydb");
    assert!(
        object.to_string_lossy().ends_with("/mydb.sql.zst.gpg"),
        "object name {}",
        object.display()
    );
    assert!(
        files_under(&job.tmpdir()).is_empty(),
        "credentials file left in tmpdir: {:?}",
        files_under(&job.tmpdir())
    );

    let dump = restore_stdout(&cfg, "mydb");
    // The same bytes come out of real gpg + zstd.
    if require_tools("mysql gpg interop", &["gpg", "zstd"]) {
        let home = GnupgHome::new();
        let zst = t.path().join("dump.sql.zst");
        fs::write(&zst, gpg_decrypt_passphrase(&home, &object, PASSPHRASE)).expect("write");
        let plain = run_ok(Command::new("zstd").arg("-dc").arg(&zst)).stdout;
        assert!(
            plain == dump,
            "gpg|zstd output differs from backup restore --to - ({} vs {} bytes)",
            plain.len(),
            dump.len()
        );
    }
    // --to DIR writes {id}.sql.
    let target = t.path().join("restore");
    restore_to(&cfg, "mydb", &target).assert_code(0);
    assert!(
        fs::read(target.join("mydb.sql")).expect("restore --to DIR: mydb.sql") == dump,
        "mydb.sql differs from --to - output"
    );

    // Disaster: both databases gone. The dump recreates them.
    drop_mysql(&s, &db);
    drop_mysql(&s, &db2);
    pipe_into(s.mysql(""), &dump);
    assert_eq!(
        mysql_fingerprint(&s, &db),
        want,
        "restored MariaDB rows differ"
    );
    assert_eq!(s.mysql_sql(&db2, "SELECT * FROM kv ORDER BY k"), want2);
    drop_mysql(&s, &db);
    drop_mysql(&s, &db2);
}

#[test]
fn pgsql_dump_restores_into_a_fresh_database() {
    let Some(s) = setup("pgsql_dump_restores_into_a_fresh_database") else {
        return;
    };
    let t = tempfile::tempdir().expect("tempdir");
    let db = unique_db("pgrt");
    let fresh = unique_db("pgfresh");
    pg_seed(&s, &db);
    let want = pg_fingerprint(&s, &db);
    assert!(want.lines().count() > 4000, "seed data missing");

    let dest = t.path().join("dest");
    let mut job = Job::new(t.path());
    job.source(s.pgsql_source("pgdb", &db))
        .destination(local_destination("disk", &dest));
    let cfg = job.write();
    run_job(&cfg).assert_code(0);
    let object = only_object(&dest, "pgdb");
    assert!(
        object.to_string_lossy().ends_with("/pgdb.sql.zst.gpg"),
        "object name {}",
        object.display()
    );
    assert!(
        files_under(&job.tmpdir()).is_empty(),
        "pgpass file left in tmpdir: {:?}",
        files_under(&job.tmpdir())
    );

    let dump = restore_stdout(&cfg, "pgdb");
    s.psql_sql("postgres", &format!("CREATE DATABASE {fresh}"));
    pipe_into(s.psql(&fresh), &dump);
    assert_eq!(
        pg_fingerprint(&s, &fresh),
        want,
        "restored PostgreSQL rows differ"
    );
    drop_pg(&s, &db);
    drop_pg(&s, &fresh);
}

/// mysqldump dies after it has written megabytes (a broken view reached after the table data,
/// `--single-transaction` so no early LOCK TABLES), or before (wrong database name): the
/// source fails with mysqldump's message, no object that looks complete is stored, other
/// sources of the job still run.
#[test]
fn mysqldump_failing_mid_stream_stores_nothing() {
    let Some(s) = setup("mysqldump_failing_mid_stream_stores_nothing") else {
        return;
    };
    let t = tempfile::tempdir().expect("tempdir");
    let db = unique_db("mybroken");
    s.mysql_sql(
        "",
        &format!(
            "CREATE DATABASE {db}; USE {db};
             CREATE TABLE a_data (id INT PRIMARY KEY, v TEXT); INSERT INTO a_data SELECT seq, REPEAT('x', 200) FROM seq_1_to_20000;
             CREATE TABLE t_gone (x INT); CREATE VIEW z_view AS SELECT x FROM t_gone; DROP TABLE t_gone;"
        ),
    );
    let folder = t.path().join("src/ok");
    fs::create_dir_all(&folder).expect("mkdir");
    fs::write(folder.join("f"), b"fine").expect("write");
    let dest = t.path().join("dest");
    let mut job = Job::new(t.path());
    let mut mid = s.mysql_source("midstream", json!(db));
    mid["options"] = json!("--single-transaction");
    job.source(mid)
        .source(s.mysql_source("early", json!(db)))
        .source(s.mysql_source("nodb", json!("no_such_database_xyz")))
        .source(folder_source("files", &folder))
        .destination(local_destination("disk", &dest));
    let cfg = job.write();
    let r = run_job(&cfg);
    r.assert_code(1);
    let text = r.all_text();
    assert!(
        text.contains("mysqldump"),
        "message does not name mysqldump:\n{}",
        r.describe()
    );
    assert!(
        text.contains("z_view"),
        "mysqldump's own error (z_view) is not shown:\n{}",
        r.describe()
    );
    assert!(
        text.contains("no_such_database_xyz"),
        "the wrong database name is not shown:\n{}",
        r.describe()
    );
    for id in ["midstream", "early", "nodb"] {
        assert!(
            objects(&dest, id).is_empty(),
            "object stored for failed source {id}: {:?}",
            files_under(&dest)
        );
    }
    let partial: Vec<String> = files_under(&dest)
        .into_iter()
        .filter(|f| f.rsplit('/').next().is_some_and(|n| n.starts_with('.')))
        .collect();
    assert!(partial.is_empty(), "partial files left: {partial:?}");
    only_object(&dest, "files");
    assert!(!text.contains(&s.pass), "db password in output");
    drop_mysql(&s, &db);
}

#[test]
fn pg_dump_failure_stores_nothing() {
    let Some(s) = setup("pg_dump_failure_stores_nothing") else {
        return;
    };
    let t = tempfile::tempdir().expect("tempdir");
    let dest = t.path().join("dest");
    let mut job = Job::new(t.path());
    let mut wrong_pw = s.pgsql_source("badpw", &s.db);
    wrong_pw["dbpass"] = json!("Wrong-Db-Password-77");
    job.source(wrong_pw)
        .source(s.pgsql_source("nodb", "no_such_database_xyz"))
        .destination(local_destination("disk", &dest));
    let cfg = job.write();
    let r = run_job(&cfg);
    r.assert_code(1);
    let text = r.all_text();
    assert!(
        text.contains("pg_dump"),
        "message does not name pg_dump:\n{}",
        r.describe()
    );
    assert!(
        text.contains("password authentication failed"),
        "pg_dump's reason not shown:\n{}",
        r.describe()
    );
    assert!(
        text.contains("no_such_database_xyz"),
        "the wrong database is not named:\n{}",
        r.describe()
    );
    assert!(
        !text.contains("Wrong-Db-Password-77"),
        "password printed:\n{}",
        r.describe()
    );
    assert!(
        objects(&dest, "badpw").is_empty() && objects(&dest, "nodb").is_empty(),
        "objects stored: {:?}",
        files_under(&dest)
    );
}

// ------------------------------------------------------------------------- table locks

/// A client session holding a table lock until released, so a dump blocks at a known point
/// (deterministic "while the dump runs" without timing guesses).
pub(crate) struct Lock {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Lock {
    fn hold(mut cmd: Command, sql: &str) -> Lock {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn lock client");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(sql.as_bytes()).expect("lock sql");
        stdin
            .write_all(b"\nSELECT 'locked-now';\n")
            .expect("lock sql");
        stdin.flush().expect("flush");
        let out = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if line.contains("locked-now") {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(30))
            .expect("lock acquired within 30 s");
        Lock {
            child,
            stdin: Some(stdin),
        }
    }
    pub(crate) fn mysql(s: &Services, db: &str, table: &str) -> Lock {
        let mut c = s.mysql(db);
        c.arg("--unbuffered");
        Lock::hold(c, &format!("LOCK TABLES {table} WRITE;"))
    }
    fn pg(s: &Services, db: &str, table: &str) -> Lock {
        Lock::hold(
            s.psql(db),
            &format!("BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE;"),
        )
    }
    pub(crate) fn release(mut self) {
        self.stdin.take();
        let _ = self.child.wait();
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        if self.stdin.take().is_some() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

fn all_pids_under(pid: i32) -> Vec<i32> {
    let mut v = vec![pid];
    v.extend(descendants(pid));
    v
}

fn comm(pid: i32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Waits until a process named `name` runs under `root`, then checks argv and environment of
/// `root` and all its descendants for every secret. Returns the pid found.
fn inspect_while_running(root: i32, name: &str, secrets: &[&str], tmpdir: &Path) -> i32 {
    let end = Instant::now() + Duration::from_secs(60);
    let pid = loop {
        if let Some(p) = descendants(root).into_iter().find(|p| comm(*p) == name) {
            break p;
        }
        assert!(
            Instant::now() < end,
            "{name} never started under backup (pid {root})"
        );
        std::thread::sleep(Duration::from_millis(2));
    };
    for p in all_pids_under(root) {
        let cmdline = fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
        let environ = fs::read(format!("/proc/{p}/environ")).unwrap_or_default();
        for secret in secrets {
            assert!(
                !contains(&cmdline, secret),
                "secret in argv of pid {p} ({}): {:?}",
                comm(p),
                lossy(&cmdline).replace('\0', " ")
            );
            assert!(
                !contains(&environ, secret),
                "secret in the environment of pid {p} ({})",
                comm(p)
            );
        }
    }
    // No credentials file on disk, even while the dump runs: the dumper reads them from an
    // in-memory file that is its stdin, and no other process of the run holds it.
    assert!(
        files_under(tmpdir).is_empty(),
        "file in tmpdir while {name} runs: {:?}",
        files_under(tmpdir)
    );
    let stdin = fs::read_link(format!("/proc/{pid}/fd/0")).unwrap_or_default();
    assert!(
        stdin.to_string_lossy().starts_with("/memfd:custos-"),
        "{name}'s stdin is {}, not the in-memory credentials",
        stdin.display()
    );
    // The parent closes its copy right after spawning the dumper; on a busy machine we may
    // look in between, so allow it a moment before calling it a leak. Sources run at once
    // (`max_parallel_sources`): another source's dumper holds its own credentials as its
    // stdin, and only there (memfds are close-on-exec: no child inherits another's).
    let dumper = |p: i32| matches!(comm(p).as_str(), "mysqldump" | "pg_dump");
    let holders = || -> Vec<String> {
        let mut found = Vec::new();
        for p in all_pids_under(root).into_iter().filter(|p| *p != pid) {
            for fd in fs::read_dir(format!("/proc/{p}/fd"))
                .into_iter()
                .flatten()
                .flatten()
            {
                let target = fs::read_link(fd.path()).unwrap_or_default();
                let own_stdin = dumper(p) && fd.file_name() == "0";
                if !own_stdin && target.to_string_lossy().starts_with("/memfd:custos-") {
                    found.push(format!("pid {p} ({}) fd {:?}", comm(p), fd.file_name()));
                }
            }
        }
        found
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut held = holders();
    while !held.is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
        held = holders();
    }
    assert!(
        held.is_empty(),
        "other processes hold the credentials: {held:?}"
    );
    pid
}

/// While a mysql and a pgsql source dump (each held at a table lock), neither the database
/// password nor the passphrase is in any child's argv or environment, nor in `-v` logs.
#[test]
fn secrets_stay_out_of_argv_environment_and_logs() {
    let Some(s) = setup("secrets_stay_out_of_argv_environment_and_logs") else {
        return;
    };
    let t = tempfile::tempdir().expect("tempdir");
    let mydb = unique_db("mysecret");
    let pgdb = unique_db("pgsecret");
    mysql_seed(&s, &mydb);
    pg_seed(&s, &pgdb);
    let dest = t.path().join("dest");
    let mut job = Job::new(t.path());
    job.source(s.mysql_source("my", json!(mydb)))
        .source(s.pgsql_source("pg", &pgdb))
        .destination(local_destination("disk", &dest));
    let cfg = job.write();

    let my_lock = Lock::mysql(&s, &mydb, "items");
    let pg_lock = Lock::pg(&s, &pgdb, "items");
    let mut child = Command::new(bin())
        .arg("-v")
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn backup");
    let root = child.id() as i32;
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(mut o) = stdout {
            let _ = std::io::Read::read_to_end(&mut o, &mut v);
        }
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(mut o) = stderr {
            let _ = std::io::Read::read_to_end(&mut o, &mut v);
        }
        v
    });
    let secrets = [s.pass.as_str(), PASSPHRASE];
    inspect_while_running(root, "mysqldump", &secrets, &job.tmpdir());
    my_lock.release();
    inspect_while_running(root, "pg_dump", &secrets, &job.tmpdir());
    pg_lock.release();
    let end = Instant::now() + RUN_DEADLINE;
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break st;
        }
        assert!(Instant::now() < end, "backup did not finish");
        std::thread::sleep(Duration::from_millis(5));
    };
    let out = out_t.join().unwrap_or_default();
    let err = err_t.join().unwrap_or_default();
    let log = format!("{}{}", lossy(&out), lossy(&err));
    assert_eq!(status.code(), Some(0), "backup failed:\n{log}");
    for secret in secrets {
        assert!(!log.contains(secret), "secret in the -v log output:\n{log}");
    }
    assert!(
        files_under(&job.tmpdir()).is_empty(),
        "credentials files left: {:?}",
        files_under(&job.tmpdir())
    );
    only_object(&dest, "my");
    only_object(&dest, "pg");
    drop_mysql(&s, &mydb);
    drop_pg(&s, &pgdb);
}

/// SIGKILL of the whole run while mysqldump is blocked mid-dump: no object, and the next run
/// (lock gone) stores a good one.
#[test]
fn kill_9_while_dumping_leaves_no_object() {
    let Some(s) = setup("kill_9_while_dumping_leaves_no_object") else {
        return;
    };
    let t = tempfile::tempdir().expect("tempdir");
    let db = unique_db("mykill");
    mysql_seed(&s, &db);
    let dest = t.path().join("dest");
    let mut job = Job::new(t.path());
    // --single-transaction: items is dumped, then the SELECT on tags waits for the lock.
    let mut src = s.mysql_source("my", json!(db));
    src["options"] = json!("--single-transaction");
    job.source(src)
        .destination(local_destination("disk", &dest));
    let cfg = job.write();
    let lock = Lock::mysql(&s, &db, "tags");
    let mut cmd = Command::new(bin());
    cmd.arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().expect("spawn");
    let root = child.id() as i32;
    inspect_while_running(root, "mysqldump", &[&s.pass, PASSPHRASE], &job.tmpdir());
    // Kill once the destination's partial file exists, so the next run must clean it up.
    let partials = |dest: &Path| -> Vec<String> {
        files_under(dest)
            .into_iter()
            .filter(|f| f.contains(".partial-"))
            .collect()
    };
    let end = Instant::now() + Duration::from_secs(30);
    while partials(&dest).is_empty() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(
        !partials(&dest).is_empty(),
        "no partial file while mysqldump runs"
    );
    rustix::process::kill_process_group(
        rustix::process::Pid::from_raw(root).expect("pid"),
        rustix::process::Signal::KILL,
    )
    .expect("kill -9");
    let _ = child.wait();
    lock.release();
    // Nothing secret on disk right after the kill, before any cleanup could have run.
    assert!(
        files_under(&job.tmpdir()).is_empty(),
        "kill -9 left files in tmpdir: {:?}",
        files_under(&job.tmpdir())
    );
    assert!(
        objects(&dest, "my").is_empty(),
        "object after kill -9: {:?}",
        files_under(&dest)
    );
    run_job(&cfg).assert_code(0);
    only_object(&dest, "my");
    let leftovers: Vec<String> = files_under(&job.tmpdir());
    assert!(
        leftovers.is_empty(),
        "the killed run left files in tmpdir: {leftovers:?}"
    );
    let left = partials(&dest);
    assert!(
        left.is_empty(),
        "the next run left the killed run's partial files: {left:?}"
    );
    drop_mysql(&s, &db);
}

/// The shipped example jobs run as written against the test services (only the destination
/// folder and tmpdir are moved into a temp dir, and the database ports are the ones the
/// services got), and every source restores.
#[test]
fn example_jobs_run_and_restore() {
    let Some(s) = setup("example_jobs_run_and_restore") else {
        return;
    };
    let examples = repo_root().join("examples");
    for name in ["backup-quickstart.json", "backup-full.json"] {
        let path = examples.join(name);
        let Ok(text) = fs::read_to_string(&path) else {
            panic!("{} is missing", path.display());
        };
        let t = tempfile::tempdir().expect("tempdir");
        let dest = t.path().join("backups");
        fs::create_dir_all(&dest).expect("mkdir");
        let text = text
            .replace("/tmp/custos-backups", &dest.display().to_string())
            .replace("\"/var/tmp\"", &format!("\"{}\"", t.path().display()))
            .replace(
                "\"dbport\": 3307,",
                &format!("\"dbport\": {},", s.mysql_port),
            )
            .replace(
                "\"dbport\": 5433,",
                &format!("\"dbport\": {},", s.pgsql_port),
            );
        let cfg = t.path().join(name);
        write_private(&cfg, text.as_bytes());
        let r = run_job(&cfg);
        r.assert_code(0);
        let ids: Vec<String> = fs::read_dir(&dest)
            .expect("read dest")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!ids.is_empty(), "{name}: nothing stored");
        for id in ids {
            let target = t.path().join("restore").join(&id);
            let r = restore_to(&cfg, id.as_ref(), &target);
            r.assert_code(0);
            assert!(
                !files_under(&target).is_empty(),
                "{name}: restore of {id} produced no files"
            );
        }
        verify(&cfg).assert_code(0);
    }
}
