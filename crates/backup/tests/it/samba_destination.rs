//! The `samba` destination with the real binary against Debian's smbd
//! (scripts/samba-test-server.sh: 127.0.0.1, a free port, a share and a real user with a
//! password): backup, `list`, `restore` byte-identical, `verify`, the original's layout on
//! the share, retention by days and by copies (foreign files kept), a wrong password that
//! fails only that destination, and a `kill -9` mid-upload that leaves nothing listed and
//! whose partial the next run removes.

use crate::common;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::stall::{stalled_server, upload_seconds};
use common::*;
use serde_json::{json, Value};

/// The test user's password (the script's default); must never appear in output.
const PASSWORD: &str = "Sk-custos-smb-secret";

/// smbd on its own share, stopped and removed when dropped.
struct Smbd {
    child: Child,
    port: u16,
    dir: PathBuf,
    share: PathBuf,
}

impl Drop for Smbd {
    fn drop(&mut self) {
        // SIGTERM: smbd stops its helper processes too.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let end = std::time::Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && std::time::Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Starts smbd through the project's script; `None` (after a loud SKIP) when it is missing.
/// The script picks a free port that smbd binds a moment later (smbd cannot be handed a
/// socket); if another program took the port in between, smbd exits: start it again.
fn smbd(test: &str) -> Option<Smbd> {
    for _ in 0..5 {
        let mut s = start_smbd(test)?;
        if listens_or_ends(&mut s.child, s.port, "smbd") {
            return Some(s);
        }
    }
    panic!("{test}: smbd ended five times before listening");
}

/// One start of the script, its `port=`, `dir=` and `share=` read.
fn start_smbd(test: &str) -> Option<Smbd> {
    let mut child = Command::new("bash")
        .arg(repo_root().join("scripts/samba-test-server.sh"))
        .env_remove("CUSTOS_SMB_PASSWORD")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn samba-test-server.sh");
    let mut out = child.stdout.take().expect("stdout");
    let first = read_line(&mut out);
    let Some(port) = first.strip_prefix("port=").and_then(|p| p.parse().ok()) else {
        let status = child.wait().expect("wait");
        let msg = format!("{test}: smbd not available ({status}); apt-get install samba smbclient");
        if status.code() == Some(3) && !services_required() {
            eprintln!("SKIP: {msg}");
            return None;
        }
        panic!("{msg}");
    };
    let dir = PathBuf::from(read_line(&mut out).strip_prefix("dir=").expect("dir="));
    let share = PathBuf::from(read_line(&mut out).strip_prefix("share=").expect("share="));
    // Keep draining its log so the server never blocks on a full pipe.
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut out, &mut std::io::sink());
    });
    Some(Smbd {
        child,
        port,
        dir,
        share,
    })
}

/// A `samba` destination with the keys of the original's example, on the test share.
fn samba_destination(id: &str, port: u16, password: &str) -> Value {
    json!({
        "id": id, "type": "samba", "host": format!("127.0.0.1:{port}"), "share": "backups",
        "workgroup": "CUSTOSTEST",
        "credentials": {"username": "custos-smb", "password": password},
        "suffix": "gpg",
    })
}

/// File names at the share's root, sorted.
fn share_files(share: &Path) -> Vec<String> {
    let mut out: Vec<String> = fs::read_dir(share)
        .expect("read share")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

/// `{id}-{stamp}.` objects (not sidecars, not partials) of source `id` at the share: stamps.
fn share_stamps(share: &Path, id: &str) -> Vec<String> {
    share_files(share)
        .iter()
        .filter(|f| f.ends_with(".tar.zst.gpg"))
        .filter_map(|f| f.strip_prefix(&format!("{id}-")))
        .map(|f| f[..14].to_string())
        .collect()
}

/// Plants a file on the share as smbd's user would have written it.
fn plant(s: &Smbd, name: &str, body: &[u8]) {
    let p = s.share.join(name);
    fs::write(&p, body).expect("plant");
    let uid = fs::metadata(&s.share).expect("share").uid();
    std::os::unix::fs::chown(&p, Some(uid), None).expect("chown");
}

/// Waits until the clock shows a later second than `stamp`, so the next run's objects get a
/// new name (a run's stamp has whole seconds).
fn wait_past(stamp: &str) {
    wait_until(Duration::from_secs(5), "the next second", || {
        chrono::Local::now()
            .format("%Y%m%d%H%M%S")
            .to_string()
            .as_str()
            > stamp
    });
}

fn source_tree(root: &Path, size: usize, seed: u64) -> PathBuf {
    let src = root.join("src/big");
    fs::create_dir_all(&src).expect("mkdir");
    fs::write(src.join("random.bin"), pseudo_random(size, seed)).expect("write");
    fs::write(src.join("small.txt"), b"hello samba\n").expect("write");
    src
}

fn assert_restores(cfg: &Path, dest: &str, src: &Path, target: &Path) {
    restore_with(
        cfg,
        "files",
        &["--destination".as_ref(), OsStr::new(dest)],
        target,
    )
    .assert_code(0);
    assert_same_tree(src, &restored_root(target, "big"), false);
}

#[test]
fn backup_list_restore_verify_on_samba_in_the_original_layout() {
    let Some(s) = smbd("backup_list_restore_verify_on_samba_in_the_original_layout") else {
        return;
    };
    // Foreign files on the share: the original's own object and a note. Never objects.
    plant(&s, "files-20200101000000.gpg", b"the original's");
    plant(&s, "notes.txt", b"hands off");
    let t = tempfile::tempdir().expect("tempdir");
    let src = source_tree(t.path(), 1 << 20, 21);
    let disk = t.path().join("disk");
    let mut job = Job::new(t.path());
    job.source(folder_source("files", &src))
        .destination(samba_destination("smb", s.port, PASSWORD))
        .destination(local_destination("disk", &disk));
    let cfg = job.write();
    let r = run_job(&cfg);
    r.assert_code(0);
    assert!(
        !r.all_text().contains(PASSWORD),
        "password in output:\n{}",
        r.describe()
    );

    // `{id}-{stamp}.tar.zst.gpg` and its sidecar at the share's root, nothing partial, the
    // same bytes as the local copy.
    let local = only_object(&disk, "files");
    let file = local
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let stamp = local
        .parent()
        .and_then(Path::file_name)
        .expect("stamp dir")
        .to_string_lossy()
        .into_owned();
    let object = format!("files-{stamp}.tar.zst.gpg");
    assert_eq!(file, "files.tar.zst.gpg");
    assert_eq!(
        share_files(&s.share),
        vec![
            "files-20200101000000.gpg".to_string(),
            object.clone(),
            format!("{object}.sha256"),
            "notes.txt".to_string(),
        ]
    );
    assert!(
        fs::read(s.share.join(&object)).expect("share object") == fs::read(&local).expect("local"),
        "the share's object differs from the local copy"
    );

    // `list` shows the copy at both destinations, and nothing for the foreign files.
    let l = list(&cfg);
    l.assert_code(0);
    let out = l.stdout_text();
    for d in ["smb", "disk"] {
        assert!(
            out.lines()
                .any(|line| line.split_whitespace().any(|w| w == d)),
            "{d} missing from list:\n{out}"
        );
    }
    assert!(!out.contains("20200101"), "a foreign file listed:\n{out}");
    assert_restores(&cfg, "smb", &src, &t.path().join("restore"));
    let v = verify(&cfg);
    v.assert_code(0);
    assert_eq!(
        v.stdout_text().matches("matches").count(),
        2,
        "{}",
        v.describe()
    );

    // A copy changed on the share fails verify, and only there.
    let mut bytes = fs::read(s.share.join(&object)).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    fs::write(s.share.join(&object), bytes).expect("write");
    let v = verify(&cfg);
    v.assert_code(1);
    assert_eq!(
        v.stdout_text().matches("matches").count(),
        1,
        "{}",
        v.describe()
    );
}

#[test]
fn retention_by_days_and_copies_on_samba_keeps_foreign_files() {
    let Some(s) = smbd("retention_by_days_and_copies_on_samba_keeps_foreign_files") else {
        return;
    };
    // An old copy (2020) by an earlier run: object + sidecar; and foreign files.
    let old = "files-20200101000000.tar.zst.gpg";
    plant(&s, old, b"old");
    let sidecar = format!("{}  files.tar.zst.gpg\n", "0".repeat(64));
    plant(&s, &format!("{old}.sha256"), sidecar.as_bytes());
    plant(&s, "files-20200101000000.gpg", b"the original's");
    plant(&s, "notes.txt", b"hands off");
    let t = tempfile::tempdir().expect("tempdir");
    let src = t.path().join("src/small");
    fs::create_dir_all(&src).expect("mkdir");
    fs::write(src.join("a.txt"), b"retention").expect("write");

    let mut dest = samba_destination("smb", s.port, PASSWORD);
    dest["retention_days"] = json!(30);
    let mut job = Job::new(t.path());
    job.source(folder_source("files", &src))
        .destination(dest.clone());
    let cfg = job.write();
    run_job(&cfg).assert_code(0);
    let now = share_stamps(&s.share, "files");
    assert_eq!(now.len(), 1, "the 2020 copy is past 30 days: {now:?}");
    assert_ne!(now[0], "20200101000000");
    assert!(!share_files(&s.share).contains(&format!("{old}.sha256")));

    // Copies: keep the newest 2 of 3 runs.
    dest["retention_copies"] = json!(2);
    let mut job = Job::new(t.path());
    job.source(folder_source("files", &src)).destination(dest);
    let cfg = job.write_as("copies.json");
    wait_past(&now[0]);
    run_job(&cfg).assert_code(0);
    let second = share_stamps(&s.share, "files");
    wait_past(second.last().expect("stamp"));
    run_job(&cfg).assert_code(0);
    let after = share_stamps(&s.share, "files");
    assert_eq!(after.len(), 2, "{after:?}");
    assert!(!after.contains(&now[0]), "the oldest copy went: {after:?}");
    let mut want: Vec<String> = after
        .iter()
        .flat_map(|st| {
            let o = format!("files-{st}.tar.zst.gpg");
            [format!("{o}.sha256"), o]
        })
        .collect();
    want.extend(["files-20200101000000.gpg".into(), "notes.txt".into()]);
    want.sort();
    assert_eq!(
        share_files(&s.share),
        want,
        "foreign files kept, nothing else left"
    );
}

#[test]
fn a_wrong_password_fails_only_samba_and_is_not_retried() {
    let Some(s) = smbd("a_wrong_password_fails_only_samba_and_is_not_retried") else {
        return;
    };
    let t = tempfile::tempdir().expect("tempdir");
    let src = source_tree(t.path(), 1 << 20, 4);
    let disk = t.path().join("disk");
    let wrong = "Wrong-custos-password";
    let mut job = Job::new(t.path());
    job.source(folder_source("files", &src))
        .destination(samba_destination("smb", s.port, wrong))
        .destination(local_destination("disk", &disk));
    let cfg = job.write();
    let r = run_job(&cfg);
    r.assert_code(1);
    let text = r.all_text();
    assert!(text.contains("NT_STATUS_LOGON_FAILURE"), "{}", r.describe());
    assert!(
        !text.contains(wrong),
        "password in output:\n{}",
        r.describe()
    );
    assert!(
        !text.contains("retrying"),
        "an auth failure was retried:\n{}",
        r.describe()
    );
    assert!(
        r.stdout_text()
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some("disk") && l.contains(" ok ")),
        "{}",
        r.describe()
    );
    assert_restores(&cfg, "disk", &src, &t.path().join("restore"));
    assert_eq!(share_files(&s.share), Vec::<String>::new());
    // `list` fails for that destination and names it.
    let l = list(&cfg);
    l.assert_code(1);
    assert!(l.stderr_text().contains("smb"), "{}", l.describe());
}

/// Whether any process's command line names `needle` (the orphaned smbclient of a killed run).
fn process_naming(needle: &str) -> bool {
    fs::read_dir("/proc")
        .map(|d| {
            d.flatten().any(|e| {
                fs::read(e.path().join("cmdline"))
                    .map(|c| String::from_utf8_lossy(&c).contains(needle))
                    .unwrap_or(false)
            })
        })
        .unwrap_or(false)
}

#[test]
fn a_run_killed_mid_upload_leaves_nothing_listed_and_the_next_run_removes_its_partial() {
    let Some(s) =
        smbd("a_run_killed_mid_upload_leaves_nothing_listed_and_the_next_run_removes_its_partial")
    else {
        return;
    };
    let t = tempfile::tempdir().expect("tempdir");
    let src = source_tree(t.path(), 1 << 20, 8);
    // Paced (8 s for the whole), so the upload is surely under way when the run is killed.
    let mut slow = samba_destination("smb", s.port, PASSWORD);
    slow["upload_rate_limit"] = json!(128 << 10);
    let mut job = Job::new(t.path());
    job.source(folder_source("files", &src)).destination(slow);
    let cfg = job.write();
    let mut run = Command::new(bin())
        .arg(&cfg)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn backup");
    let partial_with_data = || {
        share_files(&s.share).into_iter().find(|f| {
            f.ends_with(".tar.zst.gpg.partial")
                && fs::metadata(s.share.join(f)).is_ok_and(|m| m.len() > 0)
        })
    };
    wait_until(Duration::from_secs(60), "the upload is under way", || {
        partial_with_data().is_some()
    });
    let partial = partial_with_data().expect("partial");
    run.kill().expect("kill -9");
    run.wait().expect("reap");
    // Its smbclient sees the end of its input and closes the partial; wait for it to exit.
    wait_until(
        Duration::from_secs(30),
        "the orphaned smbclient exits",
        || !process_naming(&partial),
    );
    assert_eq!(
        share_files(&s.share),
        vec![partial.clone()],
        "only the partial"
    );
    let l = list(&cfg);
    l.assert_code(0);
    assert!(!l.stdout_text().contains("files.tar"), "{}", l.describe());

    // The next run removes the partial and stores a whole copy.
    let mut job = Job::new(t.path());
    job.source(folder_source("files", &src))
        .destination(samba_destination("smb", s.port, PASSWORD));
    let cfg = job.write_as("next.json");
    let r = backup(["-v".as_ref(), cfg.as_os_str()]);
    r.assert_code(0);
    assert!(
        r.stderr_text().contains("removed the partial upload")
            && r.stderr_text().contains(&partial),
        "{}",
        r.describe()
    );
    let files = share_files(&s.share);
    assert!(!files.contains(&partial), "{files:?}\n{}", r.describe());
    assert_eq!(files.len(), 2, "object + sidecar: {files:?}");
    assert!(files.iter().all(|f| !f.ends_with(".partial")), "{files:?}");
    assert_restores(&cfg, "smb", &src, &t.path().join("restore"));
    assert_no_credentials_at_rest();
}

/// No regular file in smbclient's private temporary directories: the credentials only ever
/// pass through a FIFO, so not even a killed run leaves them on disk.
fn assert_no_credentials_at_rest() {
    for d in fs::read_dir(std::env::temp_dir()).expect("tmp").flatten() {
        if !d.file_name().to_string_lossy().starts_with("custos-smb-") {
            continue;
        }
        for f in fs::read_dir(d.path()).into_iter().flatten().flatten() {
            let ft = f.file_type().expect("type");
            assert!(!ft.is_file(), "credentials at rest: {}", f.path().display());
        }
    }
}

/// A server that accepts connections and never answers: the samba destination alone is given
/// up (exit 1) within a bound set by its `stall_timeout`, and the local destination in the
/// same job commits without waiting for it and is restorable.
#[test]
fn a_stalled_samba_server_is_given_up_and_the_local_destination_is_unaffected() {
    if !require_tools(
        "a_stalled_samba_server_is_given_up_and_the_local_destination_is_unaffected",
        &["smbclient"],
    ) {
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    let src = source_tree(t.path(), 2 << 20, 6);
    let disk = t.path().join("disk");
    let mut stalled = samba_destination("smb", stalled_server(), PASSWORD);
    stalled["stall_timeout"] = json!(2);
    let mut job = Job::new(t.path());
    job.source(folder_source("files", &src))
        .destination(stalled)
        .destination(local_destination("disk", &disk));
    let cfg = job.write();
    let started = std::time::Instant::now();
    let r = backup(["-v".as_ref(), cfg.as_os_str()]);
    r.assert_code(1);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(60), "{took:?}\n{}", r.describe());
    assert!(r.all_text().contains("stalled"), "{}", r.describe());
    let local = upload_seconds(&r.stderr_text(), "disk");
    assert!(
        local < took.as_secs_f64() - 2.0,
        "local upload {local}s waited for the stalled one (run {took:?})\n{}",
        r.describe()
    );
    assert_restores(&cfg, "disk", &src, &t.path().join("restore"));
}

/// The original's documented example (docs/destinations/samba.md) pointed at the test
/// server: every key loads as the original has it (`--strict`: an unknown key would exit 2),
/// and its made-up user is refused by the server.
#[test]
fn the_original_example_loads_and_reaches_the_server() {
    let Some(s) = smbd("the_original_example_loads_and_reaches_the_server") else {
        return;
    };
    let t = tempfile::tempdir().expect("tempdir");
    let src = source_tree(t.path(), 1 << 10, 1);
    let example = json!({
      "id": "samba-backup",
      "type": "samba",
      "host": format!("127.0.0.1:{}", s.port),
      "share": "backups",
      "workgroup": "WORKGROUP",
      "credentials": {
        "username": "backups",
        "password": "your-password"
      },
      "suffix": "gpg"
    });
    let mut job = Job::new(t.path());
    job.source(folder_source("files", &src))
        .destination(example);
    let cfg = job.write();
    let r = backup(["--strict".as_ref(), "--dry-run".as_ref(), cfg.as_os_str()]);
    r.assert_code(1);
    let text = r.all_text();
    assert!(text.contains("samba-backup"), "{}", r.describe());
    assert!(text.contains("NT_STATUS_LOGON_FAILURE"), "{}", r.describe());
    assert!(!text.contains("your-password"), "{}", r.describe());
}
