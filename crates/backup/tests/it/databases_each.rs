//! Per-database dumps against the real MariaDB and PostgreSQL: `dbname: all` or a list stores
//! one object per database, `format: custom` round-trips through pg_restore, `backup restore
//! --database NAME --as NEW` loads one database's dump back into the server, and a database
//! that cannot be dumped loses only its own object (the summary and the notification name
//! it, retention does not run).
//!
//! `all` on MariaDB runs as a user of its own that sees only this test's databases, so other
//! tests creating and dropping databases on the shared server cannot change what it lists.

use crate::common;
use crate::databases::{
    drop_mysql, drop_pg, mysql_fingerprint, mysql_seed, pg_fingerprint, pg_seed, pipe_into, setup,
    Lock,
};

use std::ffi::OsStr;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::notify::both;
use common::receiver::{Behaviour, Receiver};
use common::*;
use serde_json::{json, Value};

/// `backup restore CFG --source ID --database DB [EXTRA...]` (no `--to`: into the server).
fn load(cfg: &Path, source: &str, database: &str, extra: &[&str]) -> Run {
    let mut args: Vec<&OsStr> = vec![
        "restore".as_ref(),
        cfg.as_os_str(),
        "--source".as_ref(),
        source.as_ref(),
        "--database".as_ref(),
        database.as_ref(),
    ];
    args.extend(extra.iter().map(|a| OsStr::new(*a)));
    backup(args)
}

/// The file names of the objects of `id`, sorted.
fn object_names(dest: &Path, id: &str) -> Vec<String> {
    let mut names: Vec<String> = objects(dest, id)
        .iter()
        .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A MariaDB user that may use only `dbs` (`_` escaped: GRANT reads it as a wildcard).
fn mysql_user(s: &Services, user: &str, pass: &str, dbs: &[&str]) {
    let mut sql = format!(
        "DROP USER IF EXISTS '{user}'@'%'; CREATE USER '{user}'@'%' IDENTIFIED BY '{}';",
        pass.replace('\'', "''")
    );
    for db in dbs {
        sql.push_str(&format!(
            "GRANT ALL ON `{}`.* TO '{user}'@'%';",
            db.replace('_', "\\_")
        ));
    }
    s.mysql_sql("", &sql);
}

/// A mysql source of `dbname` logging in as `user`.
fn mysql_as(s: &Services, id: &str, dbname: Value, user: &str, pass: &str) -> Value {
    let mut v = s.mysql_source(id, dbname);
    v["dbuser"] = json!(user);
    v["dbpass"] = json!(pass);
    v
}

#[test]
fn mysql_list_and_all_store_one_object_per_database_and_restore_under_a_new_name() {
    let Some(s) = setup("mysql_list_and_all_store_one_object_per_database") else {
        return;
    };
    let t = tempfile::tempdir().expect("tempdir");
    let db = unique_db("myeach");
    // A name that needs quoting everywhere: a dot, a space, a quote.
    let odd = format!("{}.o d'd", unique_db("myodd"));
    let new = unique_db("myeachnew");
    let odd_new = unique_db("myoddnew");
    mysql_seed(&s, &db);
    s.mysql_sql(
        "",
        &format!(
            "DROP DATABASE IF EXISTS `{odd}`; CREATE DATABASE `{odd}`;
             CREATE TABLE `{odd}`.kv (k VARCHAR(10) PRIMARY KEY, v TEXT);
             INSERT INTO `{odd}`.kv VALUES ('a', 'x\\ty'), ('b', NULL);"
        ),
    );
    let user = unique_db("myu");
    let pass = "Uu-7q'x #\"pw";
    mysql_user(&s, &user, pass, &[&db, &odd]);
    let want = mysql_fingerprint(&s, &db);
    let want_odd = s.mysql_sql(&odd, "SELECT * FROM kv ORDER BY k");

    let dest = t.path().join("dest");
    let mut job = Job::new(t.path());
    // The limited user may not read other definers' procedures (mysql.proc): no routines.
    let mut all = mysql_as(&s, "myall", json!("all"), &user, pass);
    all["options"] = json!("--skip-routines");
    job.source(s.mysql_source("mya", json!([db, odd])))
        .source(all)
        .destination(local_destination("disk", &dest))
        .set("state_dir", json!(t.path().join("state")));
    let cfg = job.write();
    // -v: the summary table even on success.
    let r = backup([OsStr::new("-v"), cfg.as_os_str()]);
    r.assert_code(0);
    let encoded_odd = odd
        .replace('.', "%2E")
        .replace(' ', "%20")
        .replace('\'', "%27");
    let mut want_names = vec![
        format!("mya.{db}.sql.zst.gpg"),
        format!("mya.{encoded_odd}.sql.zst.gpg"),
    ];
    want_names.sort();
    assert_eq!(object_names(&dest, "mya"), want_names, "{}", r.describe());
    // `all`: exactly what the user can see, without information_schema.
    assert_eq!(
        object_names(&dest, "myall"),
        want_names
            .iter()
            .map(|n| n.replacen("mya.", "myall.", 1))
            .collect::<Vec<_>>(),
        "{}",
        r.describe()
    );
    let summary = r.stdout_text();
    assert!(
        summary.contains(&format!("mya:{db}")) && summary.contains(&format!("myall:{odd}")),
        "the summary names each database:\n{summary}"
    );
    assert!(!r.all_text().contains(pass), "{}", r.describe());

    // Restore one database into a new one, created by the restore.
    let l = load(&cfg, "mya", &db, &["--as", &new]);
    l.assert_code(0);
    assert!(l.stderr_text().contains("(created)"), "{}", l.describe());
    assert_eq!(mysql_fingerprint(&s, &new), want, "restored rows differ");
    // Not over a database that holds tables, unless --force.
    let again = load(&cfg, "mya", &db, &["--as", &new]);
    again.assert_code(1);
    assert!(
        again.stderr_text().contains("not empty") && again.stderr_text().contains(&new),
        "{}",
        again.describe()
    );
    s.mysql_sql(&new, "DELETE FROM tags");
    load(&cfg, "mya", &db, &["--as", &new, "--force"]).assert_code(0);
    assert_eq!(mysql_fingerprint(&s, &new), want, "--force reloads");
    // The odd name, quoted right all the way.
    load(&cfg, "mya", &odd, &["--as", &odd_new]).assert_code(0);
    assert_eq!(
        s.mysql_sql(&odd_new, "SELECT * FROM kv ORDER BY k"),
        want_odd
    );
    // Without --database a per-database copy names its databases.
    let whole = restore_to(&cfg, "mya", &t.path().join("r"));
    whole.assert_code(1);
    assert!(
        whole.stderr_text().contains("--database") && whole.stderr_text().contains(&odd),
        "{}",
        whole.describe()
    );
    // --to writes one database's dump.
    let one = restore_with(
        &cfg,
        "mya",
        &[OsStr::new("--database"), OsStr::new(&odd)],
        &t.path().join("r"),
    );
    one.assert_code(0);
    assert!(
        t.path()
            .join("r")
            .join(format!("mya.{encoded_odd}.sql"))
            .is_file(),
        "{}",
        one.describe()
    );
    // verify reads every database of the copy.
    let v = verify(&cfg);
    v.assert_code(0);
    assert!(
        v.stdout_text().contains(&format!("mya:{odd}"))
            && v.stdout_text().contains(&format!("myall:{db}")),
        "{}",
        v.describe()
    );
    // status: the source's verify passed (every database of its newest copy did).
    let st = backup([OsStr::new("status"), cfg.as_os_str()]);
    let text = st.stdout_text();
    let row = text
        .lines()
        .find(|l| l.starts_with("mya "))
        .unwrap_or_else(|| panic!("no status row for mya: {}", st.describe()));
    assert!(row.trim_end().ends_with(" ok"), "{row}\n{}", st.describe());
    // list: one copy per run (its objects summed); --long: a row per database's object.
    let l = list(&cfg);
    l.assert_code(0);
    let copies = l.stdout_text();
    let rows = copies.lines().filter(|r| r.starts_with("mya ")).count();
    assert_eq!(rows, 1, "{}", l.describe());
    let long = backup([OsStr::new("list"), cfg.as_os_str(), OsStr::new("--long")]);
    long.assert_code(0);
    for name in &want_names {
        assert!(
            long.stdout_text().contains(name.as_str()),
            "{name}: {}",
            long.describe()
        );
    }

    for d in [&db, &odd, &new, &odd_new] {
        s.mysql_sql("", &format!("DROP DATABASE IF EXISTS `{d}`"));
    }
    s.mysql_sql("", &format!("DROP USER IF EXISTS '{user}'@'%'"));
}

#[test]
fn pgsql_custom_format_and_per_database_dumps_load_back() {
    let Some(s) = setup("pgsql_custom_format_and_per_database_dumps_load_back") else {
        return;
    };
    if !require_tools("pgsql custom format", &["pg_restore"]) {
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    let db = unique_db("pgcf");
    let fresh = [
        unique_db("pgcfa"),
        unique_db("pgcfb"),
        unique_db("pgcfc"),
        unique_db("pgcfd"),
    ];
    pg_seed(&s, &db);
    let want = pg_fingerprint(&s, &db);

    let dest = t.path().join("dest");
    let mut custom_one = s.pgsql_source("pgone", &db);
    custom_one["format"] = json!("custom");
    let mut custom_each = s.pgsql_source("pgc", &db);
    custom_each["format"] = json!("custom");
    custom_each["dbname"] = json!([db]);
    let mut plain_each = s.pgsql_source("pgp", &db);
    plain_each["dbname"] = json!([db]);
    let mut job = Job::new(t.path());
    job.source(custom_one)
        .source(custom_each)
        .source(plain_each)
        .destination(local_destination("disk", &dest));
    let cfg = job.write();
    // --dry-run reaches each database of a list.
    backup([OsStr::new("--dry-run"), cfg.as_os_str()]).assert_code(0);
    let r = run_job(&cfg);
    r.assert_code(0);
    assert_eq!(object_names(&dest, "pgone"), ["pgone.dump.zst.gpg"]);
    assert_eq!(
        object_names(&dest, "pgc"),
        [format!("pgc.{db}.dump.zst.gpg")]
    );
    assert_eq!(
        object_names(&dest, "pgp"),
        [format!("pgp.{db}.sql.zst.gpg")]
    );

    // The single custom-format object: restored as pgone.dump, which pg_restore loads.
    let dir = t.path().join("r");
    restore_to(&cfg, "pgone", &dir).assert_code(0);
    let archive = fs::read(dir.join("pgone.dump")).expect("pgone.dump");
    assert!(archive.starts_with(b"PGDMP"), "not a pg_dump archive");
    s.psql_sql("postgres", &format!("CREATE DATABASE {}", fresh[0]));
    let sql = run_ok(
        Command::new("pg_restore")
            .args(["-f", "-"])
            .arg(dir.join("pgone.dump")),
    )
    .stdout;
    pipe_into(s.psql(&fresh[0]), &sql);
    assert_eq!(
        pg_fingerprint(&s, &fresh[0]),
        want,
        "pg_restore of --to DIR"
    );

    // Per database, custom and plain, loaded by backup itself into new databases.
    let l = load(&cfg, "pgc", &db, &["--as", &fresh[1]]);
    l.assert_code(0);
    assert!(l.stderr_text().contains("(created)"), "{}", l.describe());
    assert_eq!(
        pg_fingerprint(&s, &fresh[1]),
        want,
        "custom format via pg_restore"
    );
    load(&cfg, "pgp", &db, &["--as", &fresh[2]]).assert_code(0);
    assert_eq!(pg_fingerprint(&s, &fresh[2]), want, "plain format via psql");
    // A source with one dbname: its one object is that database's dump.
    load(&cfg, "pgone", &db, &["--as", &fresh[3]]).assert_code(0);
    let by_name = restore_with(
        &cfg,
        "pgone",
        &[OsStr::new("--database"), OsStr::new(&db)],
        Path::new("-"),
    );
    by_name.assert_code(0);
    assert!(
        by_name.stdout == archive,
        "--database --to - of the one object"
    );
    assert_eq!(
        pg_fingerprint(&s, &fresh[3]),
        want,
        "the single object via pg_restore"
    );
    // Without --as the dump's own database is the target: it holds tables.
    let refused = load(&cfg, "pgc", &db, &[]);
    refused.assert_code(1);
    assert!(
        refused.stderr_text().contains("not empty"),
        "{}",
        refused.describe()
    );
    // --force with a custom archive replaces the objects it holds.
    s.psql_sql(&fresh[1], "DELETE FROM tags");
    load(&cfg, "pgc", &db, &["--as", &fresh[1], "--force"]).assert_code(0);
    assert_eq!(pg_fingerprint(&s, &fresh[1]), want, "--force reloads");

    drop_pg(&s, &db);
    for f in &fresh {
        drop_pg(&s, f);
    }
}

/// `all` on PostgreSQL: every database that takes connections, templates left out. The
/// shared server's databases come and go with other tests, so a database dropped between the
/// listing and its dump may fail, and only that way.
#[test]
fn pgsql_all_dumps_every_database_but_the_templates() {
    let Some(s) = setup("pgsql_all_dumps_every_database_but_the_templates") else {
        return;
    };
    let t = tempfile::tempdir().expect("tempdir");
    let db = unique_db("pgall");
    pg_seed(&s, &db);
    let dest = t.path().join("dest");
    let mut source = s.pgsql_source("pga", "all");
    source["format"] = json!("custom");
    let mut job = Job::new(t.path());
    job.source(source)
        .destination(local_destination("disk", &dest));
    let cfg = job.write();
    let r = run_job(&cfg);
    let names = object_names(&dest, "pga");
    for want in [
        format!("pga.{db}.dump.zst.gpg"),
        "pga.postgres.dump.zst.gpg".into(),
    ] {
        assert!(
            names.contains(&want),
            "{want} missing: {names:?}\n{}",
            r.describe()
        );
    }
    assert!(
        !names.iter().any(|n| n.contains("template")),
        "templates dumped: {names:?}"
    );
    if r.code() != Some(0) {
        r.assert_code(1);
        for line in r.stdout_text().lines().filter(|l| l.contains(" -> disk: ")) {
            assert!(line.contains("does not exist"), "{line}\n{}", r.describe());
        }
    }
    drop_pg(&s, &db);
}

/// MariaDB databases `names`, each with one table `t` of one row.
fn tiny_databases(s: &Services, names: &[&str]) {
    for d in names {
        s.mysql_sql(
            "",
            &format!(
                "DROP DATABASE IF EXISTS {d}; CREATE DATABASE {d}; \
                 CREATE TABLE {d}.t (x INT); INSERT INTO {d}.t VALUES (1);"
            ),
        );
    }
}

#[test]
fn a_database_that_fails_loses_only_its_own_object() {
    let Some(s) = setup("a_database_that_fails_loses_only_its_own_object") else {
        return;
    };
    let t = tempfile::tempdir().expect("tempdir");
    let (a, secret, b) = (unique_db("myfa"), unique_db("myfsecret"), unique_db("myfb"));
    tiny_databases(&s, &[&a, &secret, &b]);
    let user = unique_db("myfu");
    let pass = "Pw-failing-db";
    mysql_user(&s, &user, pass, &[&a, &b]);
    let dest = t.path().join("dest");
    let mut disk = local_destination("disk", &dest);
    disk["retention_copies"] = json!(1);

    // A good run first: the copy that retention would remove after a good second run.
    let first_dir = t.path().join("first");
    fs::create_dir_all(&first_dir).expect("mkdir");
    let mut first = Job::new(&first_dir);
    first
        .source(mysql_as(&s, "myf", json!([a, b]), &user, pass))
        .destination(disk.clone());
    run_job(&first.write()).assert_code(0);

    let rx = Receiver::start(Behaviour::default());
    let mut job = Job::new(t.path());
    job.source(mysql_as(&s, "myf", json!([a, secret, b]), &user, pass))
        .destination(disk)
        .set(
            "notifications",
            json!([both(json!({"type": "slack", "url": rx.url("/slack")}))]),
        );
    let cfg = job.write();
    // --dry-run already sees the database the user may not read.
    let dry = backup([OsStr::new("--dry-run"), cfg.as_os_str()]);
    dry.assert_code(1);
    assert!(
        dry.stdout_text().contains("Access denied"),
        "{}",
        dry.describe()
    );
    let r = run_job(&cfg);
    r.assert_code(1);
    let stamps: std::collections::BTreeSet<String> = files_under(&dest.join("myf"))
        .iter()
        .filter_map(|f| f.split('/').next().map(str::to_owned))
        .collect();
    assert_eq!(
        stamps.len(),
        2,
        "retention ran after a failed run: {stamps:?}"
    );
    let newest = stamps.iter().next_back().expect("stamp");
    let mut stored: Vec<String> = files_under(&dest.join("myf").join(newest));
    stored.sort();
    assert_eq!(
        stored,
        [
            format!("myf.{a}.sql.zst.gpg"),
            format!("myf.{a}.sql.zst.gpg.sha256"),
            format!("myf.{b}.sql.zst.gpg"),
            format!("myf.{b}.sql.zst.gpg.sha256"),
        ],
        "{}",
        r.describe()
    );
    let summary = r.stdout_text();
    let row = |db: &str| {
        summary
            .lines()
            .find(|l| l.starts_with(&format!("myf:{db} ")))
            .unwrap_or_else(|| panic!("no row for {db}:\n{summary}"))
            .to_owned()
    };
    assert!(row(&a).contains(" ok "), "{summary}");
    assert!(row(&b).contains(" ok "), "{summary}");
    assert!(row(&secret).contains("FAILED"), "{summary}");
    assert!(
        summary.contains("Access denied") && summary.contains("2 of 3 backups succeeded"),
        "{summary}"
    );
    let sent = rx.requests();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let text = sent[0].text();
    assert!(
        text.contains(&format!("database '{secret}'")) && text.contains("1 of 3 databases failed"),
        "the notification names the failed database: {text}"
    );
    assert!(!text.contains(pass) && !r.all_text().contains(pass));

    // The next complete run applies retention: one copy left, every object of the others
    // (the partial copy's too) gone.
    let good = first.write();
    run_job(&good).assert_code(0);
    let left: Vec<String> = files_under(&dest.join("myf"));
    let left_stamps: std::collections::BTreeSet<&str> =
        left.iter().filter_map(|f| f.split('/').next()).collect();
    assert_eq!(left_stamps.len(), 1, "{left:?}");
    assert!(!left_stamps.contains(newest.as_str()), "{left:?}");
    assert_eq!(left.len(), 4, "two objects and their sidecars: {left:?}");

    for d in [&a, &secret, &b] {
        drop_mysql(&s, d);
    }
    s.mysql_sql("", &format!("DROP USER IF EXISTS '{user}'@'%'"));
}

/// SIGTERM while one database's dump waits on a lock: that dump is killed, the databases
/// after it are not started and say so, the ones before stay stored, no retention runs, and
/// `backup` exits 143.
#[test]
fn sigterm_stops_the_databases_not_yet_dumped() {
    let Some(s) = setup("sigterm_stops_the_databases_not_yet_dumped") else {
        return;
    };
    let t = tempfile::tempdir().expect("tempdir");
    let (a, locked, b) = (unique_db("mysa"), unique_db("myslocked"), unique_db("mysb"));
    tiny_databases(&s, &[&a, &locked, &b]);
    let dest = t.path().join("dest");
    let mut disk = local_destination("disk", &dest);
    disk["retention_copies"] = json!(1);
    let mut source = s.mysql_source("mys", json!([a, locked, b]));
    source["options"] = json!("--single-transaction");
    let mut job = Job::new(t.path());
    job.source(source).destination(disk);
    let cfg = job.write();
    run_job(&cfg).assert_code(0);
    let first: Vec<String> = files_under(&dest.join("mys"));
    assert_eq!(first.len(), 6, "three objects and sidecars: {first:?}");

    let lock = Lock::mysql(&s, &locked, "t");
    let child = Command::new(bin())
        .arg(&cfg)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn backup");
    // The locked database's dump has begun (its partial object exists): `a` is committed.
    wait_until(
        Duration::from_secs(60),
        "the locked database's dump",
        || {
            files_under(&dest)
                .iter()
                .any(|f| f.contains(&format!(".mys.{locked}.sql")) && f.contains(".partial-"))
        },
    );
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(child.id() as i32).expect("pid"),
        rustix::process::Signal::TERM,
    )
    .expect("SIGTERM");
    let out = wait_with_deadline(child, RUN_DEADLINE, "backup");
    lock.release();
    assert_eq!(out.status.code(), Some(143), "{}", lossy(&out.stderr));
    let now: Vec<String> = files_under(&dest.join("mys"))
        .into_iter()
        .filter(|f| !first.contains(f) && !f.contains(".partial-"))
        .collect();
    let stamp = now
        .first()
        .and_then(|f| f.split('/').next())
        .unwrap_or("-")
        .to_owned();
    assert_eq!(
        now,
        [
            format!("{stamp}/mys.{a}.sql.zst.gpg"),
            format!("{stamp}/mys.{a}.sql.zst.gpg.sha256"),
        ],
        "only the database dumped before the signal"
    );
    assert!(
        first.iter().all(|f| dest.join("mys").join(f).is_file()),
        "retention ran after SIGTERM"
    );
    let err = lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "database '{b}': not run: interrupted by signal 15"
        )),
        "{err}"
    );
    for d in [&a, &locked, &b] {
        drop_mysql(&s, d);
    }
}
