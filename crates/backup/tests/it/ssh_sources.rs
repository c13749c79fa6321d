//! `folder-ssh` and `mysql-ssh` with the real binary through a real OpenSSH server
//! (scripts/sshd-test-server.sh, one per test) and the real MariaDB: round trips that restore
//! byte-identical (hostile names and paths are data: nothing runs on the remote host), no
//! password in any `ps` sample, a changed or unknown host key refused naming the host, an
//! ssh_config alias, and a killed run (SIGTERM, and SIGKILL) that leaves no process on the
//! remote side.

use crate::common;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::sshd::{sshd, Sshd, ALIAS};
use common::*;
use serde_json::{json, Value};

/// A folder-ssh source entry reaching `s` with every custos SSH key.
fn folder_ssh(s: &Sshd, id: &str, path: &Path, excludes: &[&str]) -> Value {
    let mut m = s.keys();
    m.extend([
        ("id".to_owned(), json!(id)),
        ("name".to_owned(), json!(format!("folder-ssh {id}"))),
        ("type".to_owned(), json!("folder-ssh")),
        ("path".to_owned(), json!(path)),
        ("excludes".to_owned(), json!(excludes)),
        ("passphrase".to_owned(), json!(PASSPHRASE)),
    ]);
    Value::Object(m)
}

/// A mysql-ssh source entry for database `db`, dumped on the sshd host (this one).
fn mysql_ssh(s: &Sshd, db: &Services, id: &str, name: &str) -> Value {
    let mut m = s.keys();
    m.extend([
        ("id".to_owned(), json!(id)),
        ("name".to_owned(), json!(format!("mysql-ssh {id}"))),
        ("type".to_owned(), json!("mysql-ssh")),
        ("dbhost".to_owned(), json!(db.host)),
        ("dbport".to_owned(), json!(db.mysql_port)),
        ("dbuser".to_owned(), json!(db.user)),
        ("dbpass".to_owned(), json!(db.pass)),
        ("dbname".to_owned(), json!(name)),
        ("passphrase".to_owned(), json!(PASSPHRASE)),
    ]);
    Value::Object(m)
}

/// A tree under a folder whose own path has spaces, `$(...)` and `;` (a shell that parsed it
/// would run `touch <marks>/pwned`), holding files named `$(id)`, `a;touch pwned`, with
/// spaces and a quote. Returns (the folder, the marks folder the remote user may write).
fn hostile_tree(root: &Path) -> (PathBuf, PathBuf) {
    let marks = root.join("marks");
    fs::create_dir_all(&marks).expect("mkdir");
    fs::set_permissions(&marks, fs::Permissions::from_mode(0o777)).expect("chmod");
    let name = format!(
        "data with spaces $(touch {m}/pwned-dollar);touch {m}/pwned",
        m = marks.display()
    );
    let top = root.join("src").join(name.trim_start_matches('/'));
    let w = |rel: &str, bytes: &[u8]| {
        let p = top.join(rel);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(&p, bytes).expect("write");
    };
    w("$(id)", b"dollar id\n");
    w("a;touch pwned", b"semicolon\n");
    w("with spaces/and 'quotes' \"too\".txt", b"quotes\n");
    w("`touch pwned-backtick`", b"backtick\n");
    w("random.bin", &pseudo_random(1 << 20, 7));
    w("skip/me.tmp", b"excluded\n");
    set_mtime(&top.join("$(id)"), 1_000_000_000);
    set_mtime(&top.join("skip"), 1_100_000_000);
    (top, marks)
}

fn no_marks(marks: &Path) {
    let left: Vec<_> = fs::read_dir(marks)
        .expect("marks")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "a remote word ran as code: {left:?}");
}

#[test]
fn folder_ssh_round_trip_restores_hostile_names_byte_identical_and_runs_nothing() {
    let test = "folder_ssh_round_trip_restores_hostile_names_byte_identical_and_runs_nothing";
    let Some(s) = sshd(test) else { return };
    let t = tempfile::tempdir().expect("tempdir");
    let (top, marks) = hostile_tree(t.path());
    s.hand_over(&t.path().join("src"));
    let dest = t.path().join("dest");
    let mut job = Job::new(t.path());
    job.source(folder_ssh(&s, "remote", &top, &["*.tmp", "$(touch pwned)"]))
        .destination(local_destination("disk", &dest));
    let cfg = job.write();

    backup(["--dry-run".as_ref(), cfg.as_os_str()]).assert_code(0);
    run_job(&cfg).assert_code(0);
    let object = only_object(&dest, "remote");
    assert!(
        object.to_string_lossy().ends_with("/remote.tar.zst.gpg"),
        "{}",
        object.display()
    );
    no_marks(&marks);

    let target = t.path().join("restore");
    restore_to(&cfg, "remote", &target).assert_code(0);
    // The original's layout: members are `./...` below `path`; excludes applied.
    fs::remove_file(top.join("skip/me.tmp")).expect("rm");
    set_mtime(&top.join("skip"), 1_100_000_000);
    assert_same_tree(&top, &target, true);

    // A path missing on the remote host: the dry run says so, naming it.
    let missing = top.join("not here");
    let mut job = Job::new(t.path());
    job.source(folder_ssh(&s, "gone", &missing, &[]))
        .destination(local_destination("disk", &dest));
    let r = backup([
        "--dry-run".as_ref(),
        job.write_as("missing.json").as_os_str(),
    ]);
    r.assert_code(1);
    let text = r.all_text();
    assert!(
        text.contains(&format!("{}: no such file or directory", missing.display())),
        "{}",
        r.describe()
    );
    no_marks(&marks);
}

#[test]
fn an_ssh_config_alias_works() {
    let Some(s) = sshd("an_ssh_config_alias_works") else {
        return;
    };
    let t = tempfile::tempdir().expect("tempdir");
    let src = t.path().join("src/etc");
    fs::create_dir_all(&src).expect("mkdir");
    fs::write(src.join("hosts"), b"127.0.0.1 localhost\n").expect("write");
    s.hand_over(&t.path().join("src"));
    let dest = t.path().join("dest");
    let mut job = Job::new(t.path());
    // Only the alias and the ssh_config: port, user, key and known_hosts come from there.
    job.source(
        json!({"id": "aliased", "type": "folder-ssh", "sshhost": ALIAS,
                      "ssh_command": s.ssh_command(), "path": src, "passphrase": PASSPHRASE}),
    )
    .destination(local_destination("disk", &dest));
    let cfg = job.write();
    run_job(&cfg).assert_code(0);
    let target = t.path().join("restore");
    restore_to(&cfg, "aliased", &target).assert_code(0);
    assert_same_tree(&src, &target, true);
}

#[test]
fn a_changed_or_unknown_host_key_is_refused_naming_the_host() {
    let Some(s) = sshd("a_changed_or_unknown_host_key_is_refused_naming_the_host") else {
        return;
    };
    let t = tempfile::tempdir().expect("tempdir");
    let src = t.path().join("src/d");
    fs::create_dir_all(&src).expect("mkdir");
    fs::write(src.join("f"), b"x").expect("write");
    s.hand_over(&t.path().join("src"));
    // Another key under the server's name: what a man in the middle would present.
    let other = t.path().join("other_key");
    run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", ""])
            .arg("-f")
            .arg(&other),
    );
    let pubkey = fs::read_to_string(other.with_extension("pub")).expect("pub");
    let changed = t.path().join("known_hosts_changed");
    let key: Vec<&str> = pubkey.split_whitespace().take(2).collect();
    fs::write(
        &changed,
        format!("[127.0.0.1]:{} {}\n", s.port, key.join(" ")),
    )
    .expect("write");
    let unknown = t.path().join("known_hosts_empty");
    fs::write(&unknown, b"").expect("write");

    for (known, says) in [
        (&changed, "REMOTE HOST IDENTIFICATION HAS CHANGED"),
        (&unknown, "Host key verification failed"),
    ] {
        let dest = t.path().join(format!(
            "dest-{}",
            known.file_name().unwrap().to_string_lossy()
        ));
        let mut source = folder_ssh(&s, "guarded", &src, &[]);
        source["ssh_command"] = json!([
            "ssh",
            "-F",
            s.config,
            "-o",
            format!("UserKnownHostsFile={}", known.display())
        ]);
        let mut job = Job::new(t.path());
        job.source(source)
            .destination(local_destination("disk", &dest));
        let r = run_job(&job.write());
        r.assert_code(1);
        let text = r.all_text();
        assert!(
            text.contains(&format!("over ssh to custos-ssh@127.0.0.1 port {}", s.port)),
            "{}",
            r.describe()
        );
        assert!(text.contains(says), "{}", r.describe());
        assert!(
            objects(&dest, "guarded").is_empty(),
            "{:?}",
            files_under(&dest)
        );
    }

    // Switching the check off is refused before anything runs.
    let mut source = folder_ssh(&s, "guarded", &src, &[]);
    source["ssh_command"] = json!(["ssh", "-o", "StrictHostKeyChecking=no"]);
    let mut job = Job::new(t.path());
    job.source(source)
        .destination(local_destination("disk", &t.path().join("dest-x")));
    let r = run_job(&job.write());
    r.assert_code(2);
    assert!(
        r.all_text().contains("sources[0].ssh_command"),
        "{}",
        r.describe()
    );
}

/// Samples `ps -eo args` until `stop`, returning every sample.
fn sample_ps(stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        let mut samples = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let out = Command::new("ps")
                .args(["-eo", "args"])
                .output()
                .expect("ps");
            samples.push(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        samples
    })
}

/// A client session holding `LOCK TABLES <db>.items WRITE` until killed (or `secs`).
fn hold_write_lock(db: &Services, name: &str, secs: u32) -> Child {
    let mut child = db
        .mysql("")
        // Each result as it comes (the client buffers a pipe until it exits otherwise).
        .arg("--unbuffered")
        .arg("-e")
        .arg(format!(
            "LOCK TABLES {name}.items WRITE; SELECT 'locked'; SELECT SLEEP({secs}); UNLOCK TABLES;"
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("mysql");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("read");
    assert_eq!(line.trim(), "locked", "the lock holder did not start");
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    child
}

/// Pids of processes whose argv names `marker` and `program` (the remote dump, its wrapper,
/// the local ssh).
fn processes_with(marker: &str, program: &str) -> Vec<(i32, String)> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(raw) = fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args = String::from_utf8_lossy(&raw).replace('\0', " ");
        if args.contains(marker) && args.contains(program) {
            out.push((pid, args));
        }
    }
    out
}

#[test]
fn mysql_ssh_dump_restores_and_the_password_is_in_no_ps_sample() {
    let test = "mysql_ssh_dump_restores_and_the_password_is_in_no_ps_sample";
    let Some(db) = services(test) else { return };
    if !require_tools(test, &["mysql", "mysqldump", "ps"]) {
        return;
    }
    let Some(s) = sshd(test) else { return };
    let t = tempfile::tempdir().expect("tempdir");
    let name = unique_db("sshmy");
    crate::databases::mysql_seed(&db, &name);
    let want = crate::databases::mysql_fingerprint(&db, &name);
    let dest = t.path().join("dest");
    let mut job = Job::new(t.path());
    job.source(mysql_ssh(&s, &db, "remotedb", &name))
        .destination(local_destination("disk", &dest));
    let cfg = job.write();
    backup(["--dry-run".as_ref(), cfg.as_os_str()]).assert_code(0);

    // The dump waits for a lock for a second: the sampler sees ssh and the remote dump.
    let lock = hold_write_lock(&db, &name, 1);
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_ps(stop.clone());
    let r = run_job(&cfg);
    stop.store(true, Ordering::Relaxed);
    let samples = sampler.join().expect("sampler");
    drop(lock);
    r.assert_code(0);
    let seen = |what: &str| {
        samples
            .iter()
            .filter(|s| s.lines().any(|l| l.contains(what) && l.contains(&name)))
            .count()
    };
    let (ssh_seen, dump_seen) = (seen("ssh"), seen("mysqldump --defaults-file=/dev/stdin"));
    eprintln!(
        "{} ps samples; ssh in {ssh_seen}, the remote mysqldump in {dump_seen}",
        samples.len()
    );
    assert!(
        ssh_seen > 0 && dump_seen > 0,
        "the samples missed the run: {} samples",
        samples.len()
    );
    for (i, sample) in samples.iter().enumerate() {
        assert!(
            !sample.contains(&db.pass),
            "sample {i} holds the password:\n{sample}"
        );
    }
    assert!(!r.all_text().contains(&db.pass));

    let r = restore_to(&cfg, "remotedb", Path::new("-"));
    r.assert_code(0);
    crate::databases::drop_mysql(&db, &name);
    crate::databases::pipe_into(db.mysql(""), &r.stdout);
    assert_eq!(
        crate::databases::mysql_fingerprint(&db, &name),
        want,
        "restored rows differ"
    );
    crate::databases::drop_mysql(&db, &name);
}

/// A remote dump blocked on a lock; `backup` then gets `signal`: nothing of the dump may stay
/// running on the remote host (nor the local ssh), and no object is stored.
fn killed_run_leaves_no_remote_process(signal: rustix::process::Signal) {
    let test = format!("killed_run_leaves_no_remote_process({signal:?})");
    let Some(db) = services(&test) else { return };
    if !require_tools(&test, &["mysql", "mysqldump"]) {
        return;
    }
    let Some(s) = sshd(&test) else { return };
    let t = tempfile::tempdir().expect("tempdir");
    let name = unique_db("sshkill");
    crate::databases::mysql_seed(&db, &name);
    let dest = t.path().join("dest");
    let mut job = Job::new(t.path());
    job.source(mysql_ssh(&s, &db, "blocked", &name))
        .destination(local_destination("disk", &dest));
    let cfg = job.write();
    let mut lock = hold_write_lock(&db, &name, 300);
    let child = spawn_backup([&cfg]);
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("pid");
    let is_remote =
        |(_, args): &(i32, String)| !args.contains("ssh -") && !args.contains("setpriv");
    wait_until(
        Duration::from_secs(60),
        "the remote mysqldump to start",
        || processes_with(&name, "mysqldump").iter().any(is_remote),
    );
    let remote: Vec<_> = processes_with(&name, "mysqldump")
        .into_iter()
        .filter(is_remote)
        .collect();
    rustix::process::kill_process(pid, signal).expect("signal backup");
    let out = wait_with_deadline(child, Duration::from_secs(60), "the killed run");
    assert!(!out.status.success(), "{out:?}");
    let end = Instant::now() + Duration::from_secs(15);
    let mut left = processes_with(&name, "mysqldump");
    while !left.is_empty() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
        left = processes_with(&name, "mysqldump");
    }
    let _ = lock.kill();
    let _ = lock.wait();
    assert!(
        left.is_empty(),
        "still running after {signal:?} to backup (remote was {remote:?}): {left:?}"
    );
    assert!(
        objects(&dest, "blocked").is_empty(),
        "{:?}",
        files_under(&dest)
    );
    crate::databases::drop_mysql(&db, &name);
    let _ = std::io::stdout().flush();
}

#[test]
fn a_run_killed_with_sigterm_leaves_no_remote_process() {
    killed_run_leaves_no_remote_process(rustix::process::Signal::TERM);
}

#[test]
fn a_run_killed_with_sigkill_leaves_no_remote_process() {
    killed_run_leaves_no_remote_process(rustix::process::Signal::KILL);
}
