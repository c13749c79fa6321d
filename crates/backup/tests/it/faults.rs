//! Faults with the real binary: missing sources, unwritable and full destinations, wrong
//! passphrases, corrupted objects, a run killed with SIGKILL, retention after failures, config
//! errors, trailing commas, `--dry-run`.

use crate::common;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::json;

fn small_folder(root: &Path, name: &str, content: &[u8]) -> PathBuf {
    let p = root.join(name);
    fs::create_dir_all(&p).expect("mkdir");
    fs::write(p.join("data.bin"), content).expect("write");
    p
}

/// Hidden/partial files a writer left in a destination (anything starting with `.`).
fn partial_files(dest: &Path) -> Vec<String> {
    files_under(dest)
        .into_iter()
        .filter(|f| f.rsplit('/').next().is_some_and(|n| n.starts_with('.')))
        .collect()
}

/// A tmpfs mounted on a fresh directory; unmounted (lazily) when dropped. `None` when mounting
/// is not possible here (not root, no CAP_SYS_ADMIN).
struct Mount {
    dir: PathBuf,
}

impl Mount {
    fn tmpfs(dir: &Path, options: &str) -> Option<Mount> {
        fs::create_dir_all(dir).expect("mkdir");
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "custos-test"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .ok()?;
        st.success().then(|| Mount {
            dir: dir.to_owned(),
        })
    }
}

impl Mount {
    /// [`Mount::tmpfs`], or a loud SKIP line naming `test` (a panic when CI requires the
    /// services and we are root, where mounting must work).
    fn tmpfs_or_skip(dir: &Path, options: &str, test: &str) -> Option<Mount> {
        let m = Mount::tmpfs(dir, options);
        if m.is_none() {
            if services_required() && is_root() {
                panic!("CUSTOS_REQUIRE_SERVICES=1 but tmpfs mount failed as root");
            }
            eprintln!("SKIP: {test}: CANNOT MOUNT A TMPFS HERE (needs root); ENOSPC is not tested");
        }
        m
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

#[test]
fn missing_source_path_fails_that_source_only() {
    let t = tempfile::tempdir().expect("tempdir");
    let good = small_folder(&t.path().join("src"), "good", b"good data");
    let missing = t.path().join("src/no such folder");
    let dest = t.path().join("dest");
    fs::create_dir_all(&dest).expect("mkdir dest");
    let mut job = Job::new(t.path());
    job.source(folder_source("gone", &missing))
        .source(folder_source("good", &good))
        .destination(local_destination("disk", &dest));
    let cfg = job.write();
    let r = run_job(&cfg);
    r.assert_code(1);
    assert!(
        r.all_text().contains(&missing.display().to_string()),
        "message does not name the missing path {}:\n{}",
        missing.display(),
        r.describe()
    );
    assert!(
        objects(&dest, "gone").is_empty(),
        "an object was stored for the missing source: {:?}",
        files_under(&dest)
    );
    only_object(&dest, "good");
    let target = t.path().join("restore");
    restore_to(&cfg, "good", &target).assert_code(0);
    assert_eq!(
        fs::read(target.join("good/data.bin")).expect("read"),
        b"good data"
    );
}

/// One destination unusable (a file where a directory is expected; a read-only mount): that
/// destination fails with a message naming it, the other destination still gets the object,
/// the run exits 1.
#[test]
fn unwritable_destination_fails_alone() {
    let t = tempfile::tempdir().expect("tempdir");
    let src = small_folder(&t.path().join("src"), "data", &pseudo_random(100_000, 3));
    let good = t.path().join("good");
    let not_a_dir = t.path().join("not-a-dir");
    fs::write(&not_a_dir, b"I am a file").expect("write");
    let mut job = Job::new(t.path());
    job.source(folder_source("files", &src))
        .destination(local_destination("broken", &not_a_dir))
        .destination(local_destination("good", &good));
    let cfg = job.write();
    let r = run_job(&cfg);
    r.assert_code(1);
    assert!(
        r.all_text().contains("broken"),
        "message does not name destination `broken`:\n{}",
        r.describe()
    );
    assert_eq!(
        fs::read(&not_a_dir).expect("read"),
        b"I am a file",
        "the file was modified"
    );
    only_object(&good, "files");

    // Read-only file system.
    let ro_dir = t.path().join("ro");
    let Some(_mount) = Mount::tmpfs(&ro_dir, "ro,size=1m") else {
        eprintln!("SKIP (part): cannot mount a read-only tmpfs here (needs root)");
        return;
    };
    let good2 = t.path().join("good2");
    let mut job = Job::new(t.path());
    job.source(folder_source("files", &src))
        .destination(local_destination("readonly", &ro_dir))
        .destination(local_destination("good2", &good2));
    let cfg = job.write_as("job-ro.json");
    let r = run_job(&cfg);
    r.assert_code(1);
    assert!(
        r.all_text().contains("readonly"),
        "message does not name destination `readonly`:\n{}",
        r.describe()
    );
    assert!(
        r.all_text().to_lowercase().contains("read-only"),
        "message does not say read-only:\n{}",
        r.describe()
    );
    only_object(&good2, "files");
    assert!(files_under(&ro_dir).is_empty());
}

/// A destination that fills up mid-object: that destination fails (ENOSPC named), nothing that
/// looks like an object and no partial file is left there, the other destination succeeds.
#[test]
fn full_destination_leaves_no_object() {
    let t = tempfile::tempdir().expect("tempdir");
    let full = t.path().join("full");
    let Some(_mount) = Mount::tmpfs_or_skip(&full, "size=1m", "full_destination_leaves_no_object")
    else {
        return;
    };
    // First a small good copy on both (aged, so retention would like to delete it).
    let src = small_folder(&t.path().join("src"), "data", b"small first copy");
    let good = t.path().join("good");
    let mut job = Job::new(t.path());
    let mut tiny = local_destination("tiny", &full);
    tiny["retention_copies"] = json!(1);
    tiny["retention_days"] = json!(1);
    job.source(folder_source("files", &src))
        .destination(tiny)
        .destination(local_destination("good", &good));
    let cfg = job.write();
    run_job(&cfg).assert_code(0);
    let first = only_object(&full, "files");
    fs::rename(
        first.parent().expect("dir"),
        full.join("files/20200101000000"),
    )
    .expect("rename");
    fs::remove_dir_all(good.join("files")).expect("clean good");

    // 4 MB of random data cannot compress into 1 MB.
    fs::write(src.join("data.bin"), pseudo_random(4 << 20, 4)).expect("write");
    let r = run_job(&cfg);
    r.assert_code(1);
    assert!(
        r.all_text().contains("tiny"),
        "message does not name destination `tiny`:\n{}",
        r.describe()
    );
    assert!(
        r.all_text().contains("No space left") || r.all_text().to_lowercase().contains("space"),
        "message does not say the disk is full:\n{}",
        r.describe()
    );
    let left = objects(&full, "files");
    assert_eq!(
        left.len(),
        1,
        "the full destination should hold only the old copy: {:?}",
        files_under(&full)
    );
    assert!(
        left[0].to_string_lossy().contains("20200101000000"),
        "retention ran after a failed upload and removed the last good copy: {:?}",
        files_under(&full)
    );
    assert!(
        partial_files(&full).is_empty(),
        "partial files left on the full destination: {:?}",
        partial_files(&full)
    );
    only_object(&good, "files");
    // The old copy on the full destination still restores.
    let target = t.path().join("restore");
    restore_with(
        &cfg,
        "files",
        &["--destination".as_ref(), "tiny".as_ref()],
        &target,
    )
    .assert_code(0);
    assert_eq!(
        fs::read(target.join("data/data.bin")).expect("read"),
        b"small first copy"
    );
}

/// Every entry under `root`, directories with a trailing `/`, sorted.
fn tree(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).expect("read_dir").flatten() {
            let rel = e
                .path()
                .strip_prefix(root)
                .expect("under")
                .display()
                .to_string();
            if e.file_type().expect("type").is_dir() {
                out.push(format!("{rel}/"));
                stack.push(e.path());
            } else {
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}

/// The summary row of `source` at `destination`: (status, INPUT, STORED) as printed.
fn summary_row(stdout: &str, source: &str, destination: &str) -> (String, String, String) {
    let row = stdout
        .lines()
        .find(|l| {
            let mut w = l.split_whitespace();
            w.next() == Some(source) && w.next() == Some(destination)
        })
        .unwrap_or_else(|| panic!("no summary row {source} -> {destination}:\n{stdout}"));
    let w: Vec<&str> = row.split_whitespace().collect();
    // SOURCE DESTINATION STATUS INPUT(n unit) STORED(n unit) ...
    assert!(w.len() >= 7, "short summary row: {row}");
    (
        w[2].to_owned(),
        format!("{} {}", w[3], w[4]),
        format!("{} {}", w[5], w[6]),
    )
}

/// Issue 16.6, ENOSPC: a copy that does not fit leaves nothing at its destination (the
/// `files/{stamp}/` directories used to stay), and its row shows what was read and that
/// nothing was stored (it showed `INPUT 0.0 bytes, STORED 4.0 MB`).
#[test]
fn full_destination_keeps_nothing_and_its_row_says_so() {
    let t = tempfile::tempdir().expect("tempdir");
    let full = t.path().join("full");
    let Some(_mount) = Mount::tmpfs_or_skip(
        &full,
        "size=2m",
        "full_destination_keeps_nothing_and_its_row_says_so",
    ) else {
        return;
    };
    // 4 MiB of random data cannot compress into 2 MiB.
    let src = small_folder(&t.path().join("src"), "data", &pseudo_random(4 << 20, 16));
    let mut job = Job::new(t.path());
    job.source(folder_source("files", &src))
        .destination(local_destination("tiny", &full));
    let r = run_job(&job.write());
    r.assert_code(1);
    assert!(
        r.all_text().contains("No space left"),
        "ENOSPC is not named:\n{}",
        r.describe()
    );
    assert_eq!(tree(&full), Vec::<String>::new(), "{}", r.describe());
    let (status, input, stored) = summary_row(&r.stdout_text(), "files", "tiny");
    assert_eq!(status, "FAILED");
    assert_eq!(stored, "0.0 bytes", "{}", r.describe());
    assert!(
        input.ends_with(" MB") && input != "0.0 MB",
        "the row does not show what was read (at least the 2 MiB that filled the disk): \
         {input}\n{}",
        r.describe()
    );
}

/// Issue 16.6, a source that fails mid-stream (a mysqldump that writes, then exits 2):
/// nothing of the copy stays at the destination, not even its directories, and the row
/// shows the bytes read and nothing stored.
#[test]
fn failed_source_leaves_no_directories_and_its_row_says_so() {
    let t = tempfile::tempdir().expect("tempdir");
    let bin_dir = t.path().join("bin");
    fs::create_dir_all(&bin_dir).expect("mkdir");
    let script = bin_dir.join("mysqldump");
    fs::write(
        &script,
        "#!/bin/sh\nhead -c 300000 /dev/zero\necho 'mysqldump: Got error: 2013' >&2\nexit 2\n",
    )
    .expect("write");
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod");
    let store = t.path().join("store");
    fs::create_dir_all(&store).expect("mkdir");
    let mut job = Job::new(t.path());
    job.source(
        json!({"id": "db", "name": "App DB", "type": "mysql", "dbname": "app",
                      "passphrase": PASSPHRASE}),
    )
    .destination(local_destination("disk", &store));
    let mut path = std::ffi::OsString::from(&bin_dir);
    path.push(":");
    path.push(std::env::var_os("PATH").unwrap_or_default());
    let r = backup_with(
        [OsStr::new("run"), job.write().as_os_str()],
        &[("PATH", &path)],
        None,
    );
    r.assert_code(1);
    assert!(r.all_text().contains("2013"), "{}", r.describe());
    assert_eq!(tree(&store), Vec::<String>::new(), "{}", r.describe());
    let (status, input, stored) = summary_row(&r.stdout_text(), "db", "disk");
    assert_eq!(status, "FAILED");
    assert_eq!(
        (input.as_str(), stored.as_str()),
        ("293.0 KB", "0.0 bytes"),
        "{}",
        r.describe()
    );
}

#[test]
fn wrong_passphrase_on_restore_fails_clearly() {
    let t = tempfile::tempdir().expect("tempdir");
    let src = small_folder(&t.path().join("src"), "data", b"secret data");
    let dest = t.path().join("dest");
    fs::create_dir_all(&dest).expect("mkdir dest");
    let mut job = Job::new(t.path());
    job.source(folder_source("files", &src))
        .destination(local_destination("disk", &dest));
    let cfg = job.write();
    run_job(&cfg).assert_code(0);

    let wrong = "Wrong-Passphrase-123";
    let mut job2 = Job::new(t.path());
    let mut s = folder_source("files", &src);
    s["passphrase"] = json!(wrong);
    job2.source(s).destination(local_destination("disk", &dest));
    let cfg2 = job2.write_as("job-wrong.json");
    let target = t.path().join("restore");
    let r = restore_to(&cfg2, "files", &target);
    assert_ne!(
        r.code(),
        Some(0),
        "restore with a wrong passphrase succeeded:\n{}",
        r.describe()
    );
    // Issue 16.5: said once, in words (it read `...: wrong passphrase: ... (Unsupported
    // symmetric algorithm Other(167)): wrong passphrase: ... (Unsupported ...)`).
    let said = "wrong passphrase, or the copy is not encrypted with this passphrase";
    assert_eq!(
        r.stderr_text().matches(said).count(),
        1,
        "the wrong passphrase is not said exactly once:\n{}",
        r.describe()
    );
    assert!(
        !r.all_text().contains("Unsupported") && !r.all_text().contains("Other("),
        "rPGP's garbage-key message leaks:\n{}",
        r.describe()
    );
    assert!(
        !r.all_text().contains(wrong),
        "the passphrase is printed:\n{}",
        r.describe()
    );
    assert!(
        files_under(&target).is_empty(),
        "files restored with a wrong passphrase: {:?}",
        files_under(&target)
    );
    // verify with the wrong passphrase fails too.
    let v = verify(&cfg2);
    assert_ne!(
        v.code(),
        Some(0),
        "verify with a wrong passphrase succeeded:\n{}",
        v.describe()
    );
    assert_eq!(v.all_text().matches(said).count(), 1, "{}", v.describe());
    assert!(!v.all_text().contains("Unsupported"), "{}", v.describe());
}

/// A flipped byte is found by `verify` (naming the object), both when only the object changed
/// (sidecar mismatch) and when the sidecar was "fixed" too (decryption/MDC must catch it).
#[test]
fn corrupted_object_fails_verify_naming_it() {
    if !require_tools("corrupted_object_fails_verify_naming_it", &["sha256sum"]) {
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    let src = small_folder(&t.path().join("src"), "data", &pseudo_random(2 << 20, 5));
    let dest = t.path().join("dest");
    fs::create_dir_all(&dest).expect("mkdir dest");
    let mut job = Job::new(t.path());
    job.source(folder_source("files", &src))
        .destination(local_destination("disk", &dest));
    let cfg = job.write();
    run_job(&cfg).assert_code(0);
    verify(&cfg).assert_code(0);

    let object = only_object(&dest, "files");
    let original = fs::read(&object).expect("read");
    let mut bad = original.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x01;
    fs::write(&object, &bad).expect("write");
    let name = object
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let stamp = object
        .parent()
        .and_then(|p| p.file_name())
        .expect("stamp")
        .to_string_lossy()
        .into_owned();

    let v = verify(&cfg);
    v.assert_code(1);
    assert!(
        v.all_text().contains(&name) && v.all_text().contains(&stamp),
        "verify does not name the object files/{stamp}/{name}:\n{}",
        v.describe()
    );

    // Sidecar rewritten to match the damaged object: only the content check can notice.
    let sidecar = PathBuf::from(format!("{}.sha256", object.display()));
    let sum = sh(&format!(
        "cd '{}' && sha256sum '{}'",
        object.parent().expect("dir").display(),
        name
    ));
    fs::write(&sidecar, &sum.stdout).expect("write sidecar");
    let v = verify(&cfg);
    v.assert_code(1);
    assert!(
        v.all_text().contains(&name),
        "verify does not name the object:\n{}",
        v.describe()
    );

    // Restore of the damaged object fails too and does not claim success.
    let target = t.path().join("restore");
    let r = restore_to(&cfg, "files", &target);
    assert_ne!(
        r.code(),
        Some(0),
        "restore of a corrupted object succeeded:\n{}",
        r.describe()
    );

    // Truncated object.
    fs::write(&object, &original[..original.len() - 100]).expect("write");
    let v = verify(&cfg);
    v.assert_code(1);
}

/// Retention: with `retention_copies: 1` and `retention_days: 1`, a run whose source fails
/// deletes nothing (the only good copy stays); a good run then replaces the old copy.
#[test]
fn retention_never_deletes_the_last_good_copy() {
    let t = tempfile::tempdir().expect("tempdir");
    let src = small_folder(&t.path().join("src"), "data", b"v1");
    let dest = t.path().join("dest");
    fs::create_dir_all(&dest).expect("mkdir dest");
    let mut job = Job::new(t.path());
    job.source(folder_source("files", &src)).destination(json!({
        "id": "disk", "type": "local", "path": dest, "retention_copies": 1, "retention_days": 1
    }));
    let cfg = job.write();
    run_job(&cfg).assert_code(0);
    // Age the copy far beyond retention_days.
    let first = only_object(&dest, "files");
    fs::rename(
        first.parent().expect("dir"),
        dest.join("files/20200101000000"),
    )
    .expect("rename");

    // Source now fails: nothing may be deleted.
    fs::rename(&src, t.path().join("src/moved")).expect("rename");
    let r = run_job(&cfg);
    r.assert_code(1);
    let left = objects(&dest, "files");
    assert_eq!(
        left.len(),
        1,
        "retention after a failed run removed the last good copy: {:?}",
        files_under(&dest)
    );
    assert!(left[0].to_string_lossy().contains("20200101000000"));

    // Source back with new content: the new copy is stored, the old one expires.
    fs::rename(t.path().join("src/moved"), &src).expect("rename");
    fs::write(src.join("data.bin"), b"v2").expect("write");
    run_job(&cfg).assert_code(0);
    let left = objects(&dest, "files");
    assert_eq!(left.len(), 1, "retention_copies 1 kept {:?}", left);
    assert!(
        !left[0].to_string_lossy().contains("20200101000000"),
        "old copy kept: {:?}",
        left
    );
    assert!(
        files_under(&dest.join("files"))
            .iter()
            .all(|f| !f.starts_with("20200101000000")),
        "old copy's sidecar or dir left: {:?}",
        files_under(&dest)
    );
    let target = t.path().join("restore");
    restore_to(&cfg, "files", &target).assert_code(0);
    assert_eq!(fs::read(target.join("data/data.bin")).expect("read"), b"v2");
}

/// Retention by count keeps the newest N and deletes sidecars with their objects.
#[test]
fn retention_copies_keeps_newest() {
    let t = tempfile::tempdir().expect("tempdir");
    let src = small_folder(&t.path().join("src"), "data", b"x");
    let dest = t.path().join("dest");
    fs::create_dir_all(&dest).expect("mkdir dest");
    let mut job = Job::new(t.path());
    job.source(folder_source("files", &src)).destination(json!({
        "id": "disk", "type": "local", "path": dest, "retention_copies": 2
    }));
    let cfg = job.write();
    for stamp in ["20200101000000", "20200102000000", "20200103000000"] {
        run_job(&cfg).assert_code(0);
        let newest = objects(&dest, "files")
            .into_iter()
            .find(|o| !o.to_string_lossy().contains("/2020"))
            .expect("new object");
        fs::rename(
            newest.parent().expect("dir"),
            dest.join("files").join(stamp),
        )
        .expect("rename");
    }
    run_job(&cfg).assert_code(0);
    let left: Vec<String> = objects(&dest, "files")
        .iter()
        .map(|o| {
            o.parent()
                .and_then(|p| p.file_name())
                .expect("stamp")
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(left.len(), 2, "retention_copies 2 left {left:?}");
    assert!(
        left.contains(&"20200103000000".to_owned()),
        "newest old copy deleted: {left:?}"
    );
    for gone in ["20200101000000", "20200102000000"] {
        assert!(
            !dest.join("files").join(gone).exists(),
            "{gone} not removed entirely: {:?}",
            files_under(&dest)
        );
    }
}

/// SIGKILL to the whole process group in the middle of a run (the source stalled with
/// SIGSTOP, so the moment is deterministic): nothing that looks complete is left, the previous
/// copy still verifies and restores, and the next run works normally.
#[test]
fn kill_9_mid_run_loses_nothing() {
    let t = tempfile::tempdir().expect("tempdir");
    let src = small_folder(&t.path().join("src"), "data", b"first version");
    let dest = t.path().join("dest");
    fs::create_dir_all(&dest).expect("mkdir dest");
    let mut job = Job::new(t.path());
    job.source(folder_source("files", &src)).destination(json!({
        "id": "disk", "type": "local", "path": dest, "retention_copies": 1
    }));
    let cfg = job.write();
    run_job(&cfg).assert_code(0);
    let first = only_object(&dest, "files");
    fs::rename(
        first.parent().expect("dir"),
        dest.join("files/20200101000000"),
    )
    .expect("rename");

    // Enough data that tar is still running when we look for it.
    fs::write(src.join("big.bin"), pseudo_random(8 << 20, 6)).expect("write");
    fs::write(src.join("data.bin"), b"second version").expect("write");
    let mut cmd = Command::new(bin());
    cmd.arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().expect("spawn backup");
    let pid = child.id() as i32;
    // Stop the tar child as soon as it exists: the pipeline stalls mid-stream.
    let mut stopped = false;
    let end = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < end {
        if let Some(tar) = descendants(pid)
            .into_iter()
            .find(|p| comm(*p).as_deref() == Some("tar"))
        {
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_raw(tar).expect("pid"),
                rustix::process::Signal::STOP,
            );
            stopped = true;
            break;
        }
        if child.try_wait().expect("try_wait").is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(
        stopped,
        "never saw tar running under backup (pid {pid}) before it finished"
    );
    // The destination's partial file is created right after tar starts: kill once it is
    // there, so the next run has something to clean up.
    let end = std::time::Instant::now() + Duration::from_secs(30);
    while partial_files(&dest).is_empty() && std::time::Instant::now() < end {
        std::thread::sleep(Duration::from_millis(1));
    }
    let _ = rustix::process::kill_process_group(
        rustix::process::Pid::from_raw(pid).expect("pid"),
        rustix::process::Signal::KILL,
    );
    let _ = child.wait();
    // Reap/let go of the stopped tar too (SIGKILL works on stopped processes).
    let killed_partials = partial_files(&dest);
    assert!(
        !killed_partials.is_empty(),
        "the killed run left no partial file (test no longer covers the cleanup): {:?}",
        files_under(&dest)
    );

    let objs = objects(&dest, "files");
    assert_eq!(
        objs.len(),
        1,
        "after kill -9 the destination shows more than the previous copy: {:?}",
        files_under(&dest)
    );
    assert!(objs[0].to_string_lossy().contains("20200101000000"));
    let list = list(&cfg);
    list.assert_code(0);
    verify(&cfg).assert_code(0);
    let target = t.path().join("restore-old");
    restore_to(&cfg, "files", &target).assert_code(0);
    assert_eq!(
        fs::read(target.join("data/data.bin")).expect("read"),
        b"first version"
    );

    // A new run: succeeds, retention (copies 1) keeps only the new good copy.
    run_job(&cfg).assert_code(0);
    let objs = objects(&dest, "files");
    assert_eq!(objs.len(), 1, "{:?}", files_under(&dest));
    assert!(!objs[0].to_string_lossy().contains("20200101000000"));
    let target = t.path().join("restore-new");
    restore_to(&cfg, "files", &target).assert_code(0);
    assert_eq!(
        fs::read(target.join("data/data.bin")).expect("read"),
        b"second version"
    );
    // The new run removed what the killed one had half written.
    let leftovers = partial_files(&dest);
    assert!(
        leftovers.is_empty(),
        "partial files of the killed run are still in the destination: {leftovers:?}"
    );
}

fn comm(pid: i32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_owned())
}

// ---------------------------------------------------------------------------------- config

/// Config errors exit 2 and name the JSON path (and never print secrets).
#[test]
fn config_errors_exit_2_naming_the_json_path() {
    let t = tempfile::tempdir().expect("tempdir");
    let src = small_folder(&t.path().join("src"), "data", b"x");
    let dest = t.path().join("dest");
    fs::create_dir_all(&dest).expect("mkdir dest");
    let ok_source = folder_source("files", &src);
    let ok_dest = local_destination("disk", &dest);
    let cases: Vec<(&str, serde_json::Value, Vec<&str>)> = vec![
        (
            "missing source path",
            json!({"sources": [{"id": "files", "type": "folder", "passphrase": PASSPHRASE}], "destinations": [ok_dest]}),
            vec!["sources[0]", "path"],
        ),
        (
            "unknown type",
            json!({"sources": [ok_source, {"id": "b", "type": "foldr", "path": "/x", "passphrase": PASSPHRASE}], "destinations": [ok_dest]}),
            vec!["sources[1].type", "foldr"],
        ),
        (
            "bad retention",
            json!({"sources": [ok_source], "destinations": [{"id": "disk", "type": "local", "path": dest, "retention_copies": "many"}]}),
            vec!["destinations[0]", "retention_copies"],
        ),
        (
            "duplicate source id",
            json!({"sources": [ok_source, ok_source], "destinations": [ok_dest]}),
            vec!["sources[1]", "files"],
        ),
        (
            "mysql port out of range",
            json!({"sources": [{"id": "db", "type": "mysql", "dbport": 70000, "dbpass": "Dbpass-Secret-42", "passphrase": PASSPHRASE}], "destinations": [ok_dest]}),
            vec!["sources[0]", "dbport"],
        ),
        (
            "numeric password",
            json!({"sources": [{"id": "db", "type": "mysql", "dbpass": 98765432, "passphrase": PASSPHRASE}], "destinations": [ok_dest]}),
            vec!["sources[0]", "dbpass"],
        ),
    ];
    for (what, cfg_json, needles) in cases {
        let p = t.path().join("bad.json");
        write_private(
            &p,
            serde_json::to_string_pretty(&cfg_json)
                .expect("json")
                .as_bytes(),
        );
        let r = run_job(&p);
        assert_eq!(
            r.code(),
            Some(2),
            "{what}: expected exit 2\n{}",
            r.describe()
        );
        let text = r.all_text();
        for n in needles {
            assert!(
                text.contains(n),
                "{what}: message does not contain {n:?}:\n{}",
                r.describe()
            );
        }
        for secret in [PASSPHRASE, "Dbpass-Secret-42", "98765432"] {
            assert!(
                !text.contains(secret),
                "{what}: a secret is printed:\n{}",
                r.describe()
            );
        }
        assert!(
            files_under(&dest).is_empty(),
            "{what}: something was written: {:?}",
            files_under(&dest)
        );
    }
    // Invalid JSON names the line; a missing file names the file.
    let p = t.path().join("broken.json");
    write_private(
        &p,
        b"{\n  \"sources\": [\n    {\"id\": \"x\" \"type\": \"folder\"}\n  ]\n}\n",
    );
    let r = run_job(&p);
    assert_eq!(r.code(), Some(2), "invalid JSON:\n{}", r.describe());
    assert!(
        r.all_text().contains("line 3"),
        "invalid JSON: no line number:\n{}",
        r.describe()
    );
    let missing = t.path().join("nonexistent.json");
    let r = run_job(&missing);
    assert_eq!(r.code(), Some(2), "missing file:\n{}", r.describe());
    assert!(
        r.all_text().contains("nonexistent.json"),
        "missing file not named:\n{}",
        r.describe()
    );
    // Usage errors are 2 as well.
    let r = backup(["restore"]);
    assert_eq!(r.code(), Some(2), "usage error:\n{}", r.describe());
}

/// The flags an `Options:` list of a `--help` text names (`-n, --dry-run`, `--lock-wait`).
fn help_flags(help: &str) -> Vec<String> {
    help.lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with('-'))
        .flat_map(|l| {
            let spec = l.split("  ").next().unwrap_or_default();
            spec.split([',', ' '])
                .filter(|w| w.starts_with('-'))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// `backup --help` shows every flag of `run`, since the original's form `backup [-n] CONFIG`
/// takes them without the word `run` (it once lacked `-n/--dry-run`).
#[test]
fn help_shows_every_flag_of_run() {
    let top = backup(["--help"]);
    top.assert_code(0);
    let top = help_flags(&top.stdout_text());
    let run = backup(["run", "--help"]);
    run.assert_code(0);
    let run = help_flags(&run.stdout_text());
    for want in ["-n", "--dry-run", "--lock-wait", "--strict", "-v", "-d"] {
        assert!(run.iter().any(|f| f == want), "{want} not in {run:?}");
    }
    for flag in &run {
        assert!(top.contains(flag), "`backup --help` lacks {flag}: {top:?}");
    }
}

/// A key nothing reads is a warning naming file, key path and nearest known key, and the job
/// runs (as the original, which ignores such keys); `--strict` makes it exit 2, and a dry run
/// validates exactly as a run (a warning, exit 0) unless `--strict` is given too.
#[test]
fn unknown_keys_warn_and_run_strict_refuses_dry_run_validates_as_a_run() {
    let t = tempfile::tempdir().expect("tempdir");
    let src = small_folder(&t.path().join("src"), "data", b"x");
    let dest = t.path().join("dest");
    fs::create_dir_all(&dest).expect("mkdir dest");
    let cases = [
        (
            json!({"sources": [{"id": "files", "type": "folder", "path": src, "passphrase": PASSPHRASE, "pathh": "/x"}], "destinations": [local_destination("disk", &dest)]}),
            "sources[0].pathh: unknown key (nearest known key: `path`)",
        ),
        (
            json!({"sources": [folder_source("files", &src)], "destinations": [{"id": "disk", "type": "local", "path": dest, "retention_copy": 2}]}),
            "destinations[0].retention_copy: unknown key (nearest known key: `retention_copies`)",
        ),
        (
            json!({"sources": [folder_source("files", &src)], "destinations": [local_destination("disk", &dest)], "hostnme": "h"}),
            "hostnme: unknown key (nearest known key: `hostname`)",
        ),
    ];
    for (i, (cfg_json, needle)) in cases.into_iter().enumerate() {
        let p = t.path().join(format!("job{i}.json"));
        write_private(&p, cfg_json.to_string().as_bytes());
        let want = format!("{}: {needle}", p.display());
        for strict in [&["--strict"][..], &["--strict", "run", "--dry-run"][..]] {
            let mut args: Vec<&OsStr> = strict.iter().map(OsStr::new).collect();
            args.push(p.as_os_str());
            let r = backup(&args);
            r.assert_code(2);
            assert!(
                r.stderr_text().contains(&want),
                "{strict:?}: {want}
{}",
                r.describe()
            );
        }
        assert!(files_under(&dest).is_empty(), "strict runs wrote something");
        let r = backup([OsStr::new("run"), OsStr::new("--dry-run"), p.as_os_str()]);
        r.assert_code(0);
        assert!(
            r.stderr_text().contains(&want),
            "dry run: no warning {want}\n{}",
            r.describe()
        );
        assert!(files_under(&dest).is_empty(), "the dry run wrote something");
        let r = run_job(&p);
        r.assert_code(0);
        assert!(
            r.stderr_text().contains(&want),
            "no warning {want}
{}",
            r.describe()
        );
        assert!(!r.all_text().contains(PASSPHRASE));
        fs::remove_dir_all(&dest).expect("clean dest");
        fs::create_dir_all(&dest).expect("mkdir dest");
    }
}

/// The original README's "Complete Example" gives its mysql source a folder's `path`: custos
/// loads it with a warning, under `--dry-run` too (here with a local destination instead of
/// s3, so `list` works).
#[test]
fn complete_example_with_stray_mysql_path_loads_with_a_warning() {
    let t = tempfile::tempdir().expect("tempdir");
    let dest = t.path().join("dest");
    fs::create_dir_all(&dest).expect("mkdir dest");
    let cfg = json!({
        "tmpdir": "/var/tmp/folderdumps",
        "modules": ["backups.sources.folder", "backups.sources.mysql"],
        "sources": [
            {"id": "config", "type": "folder", "name": "Live server config", "path": "/etc", "passphrase": PASSPHRASE},
            {"id": "db", "type": "mysql", "name": "Live server database", "path": "/data", "passphrase": PASSPHRASE}
        ],
        "destinations": [local_destination("disk", &dest)],
        "notifications": []
    });
    let p = t.path().join("complete.json");
    write_private(&p, cfg.to_string().as_bytes());
    let r = list(&p);
    r.assert_code(0);
    // No hint: the nearest known key (`name`) is nothing like `path`.
    let want = format!("{}: sources[1].path: unknown key;", p.display());
    assert!(r.stderr_text().contains(&want), "{}", r.describe());
    // A dry run accepts what a run accepts: the stray key stays a warning (the mysql source
    // then fails to reach a server, a job failure, not a config error).
    let r = backup(["--dry-run".as_ref(), p.as_os_str()]);
    assert_ne!(r.code(), Some(2), "{}", r.describe());
    assert!(r.stderr_text().contains(&want), "{}", r.describe());
    assert!(files_under(&dest).is_empty(), "the dry run wrote something");
    let r = backup(["--strict".as_ref(), "list".as_ref(), p.as_os_str()]);
    r.assert_code(2);
    assert!(
        r.stderr_text().contains("sources[1].path"),
        "{}",
        r.describe()
    );
}

/// The original's example files carry trailing commas: tolerated, with a warning.
#[test]
fn trailing_commas_are_tolerated_with_a_warning() {
    let t = tempfile::tempdir().expect("tempdir");
    let src = small_folder(&t.path().join("src"), "data", b"x");
    let dest = t.path().join("dest");
    fs::create_dir_all(&dest).expect("mkdir dest");
    let text = format!(
        "{{\n  \"hostname\": \"h\",\n  \"modules\": [\"backups.sources.folder\", \"backups.destinations.local\",],\n  \"sources\": [\n    {{\n      \"id\": \"files\",\n      \"name\": \"Files\",\n      \"type\": \"folder\",\n      \"path\": \"{}\",\n      \"passphrase\": \"{}\",\n    }},\n  ],\n  \"destinations\": [\n    {{\"id\": \"disk\", \"type\": \"local\", \"path\": \"{}\",}},\n  ],\n}}\n",
        src.display(),
        PASSPHRASE,
        dest.display()
    );
    let p = t.path().join("commas.json");
    write_private(&p, text.as_bytes());
    let r = run_job(&p);
    r.assert_code(0);
    assert!(
        r.all_text().to_lowercase().contains("trailing comma"),
        "no warning about trailing commas:\n{}",
        r.describe()
    );
    only_object(&dest, "files");
    // A comma inside a string value is data, not a trailing comma.
    let text2 = text.replace("\"Files\"", "\"Files ,]\"");
    write_private(&p, text2.as_bytes());
    run_job(&p).assert_code(0);
}

/// `--dry-run` checks everything and writes nothing; a missing source still fails it.
#[test]
fn dry_run_writes_nothing() {
    let t = tempfile::tempdir().expect("tempdir");
    let src = small_folder(&t.path().join("src"), "data", b"x");
    let dest = t.path().join("dest");
    fs::create_dir_all(&dest).expect("mkdir dest");
    let mut job = Job::new(t.path());
    job.source(folder_source("files", &src))
        .destination(local_destination("disk", &dest));
    let cfg = job.write();
    let r = backup(["--dry-run".as_ref(), cfg.as_os_str()]);
    r.assert_code(0);
    assert!(
        files_under(&dest).is_empty() && fs::read_dir(&dest).expect("read").next().is_none(),
        "dry run wrote {:?}",
        files_under(&dest)
    );
    assert!(
        files_under(&job.tmpdir()).is_empty(),
        "dry run left temp files"
    );

    let mut job = Job::new(t.path());
    job.source(folder_source("files", &t.path().join("missing")))
        .destination(local_destination("disk", &dest));
    let cfg = job.write_as("job-missing.json");
    let r = backup(["--dry-run".as_ref(), cfg.as_os_str()]);
    r.assert_code(1);
    assert!(
        r.all_text().contains("missing"),
        "dry run does not name the missing path:\n{}",
        r.describe()
    );
    assert!(
        fs::read_dir(&dest).expect("read").next().is_none(),
        "dry run wrote something"
    );
}

/// A job file readable by others while it holds a passphrase draws a warning.
#[test]
fn world_readable_config_with_secrets_warns() {
    let t = tempfile::tempdir().expect("tempdir");
    let src = small_folder(&t.path().join("src"), "data", b"x");
    let mut job = Job::new(t.path());
    job.source(folder_source("files", &src))
        .destination(local_destination("disk", &t.path().join("dest")));
    let cfg = job.write();
    fs::set_permissions(&cfg, fs::Permissions::from_mode(0o644)).expect("chmod");
    let r = run_job(&cfg);
    r.assert_code(0);
    let text = r.all_text().to_lowercase();
    assert!(
        text.contains("readable"),
        "no warning about a world-readable config with secrets:\n{}",
        r.describe()
    );
    assert!(!r.all_text().contains(PASSPHRASE));
}

/// The original's deployment runs as a non-root user: a file that user cannot read makes tar
/// exit 2, the source fails naming the file, and no object is stored.
#[test]
fn unreadable_file_fails_the_source_as_non_root() {
    if !is_root() || which("runuser").is_none() {
        eprintln!("SKIP: unreadable_file_fails_the_source_as_non_root: needs root and runuser to drop to nobody");
        return;
    }
    let t = tempfile::Builder::new()
        .prefix("custos-nobody")
        .tempdir()
        .expect("tempdir");
    fs::set_permissions(t.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let src = small_folder(t.path(), "data", b"readable");
    fs::set_permissions(&src, fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::set_permissions(src.join("data.bin"), fs::Permissions::from_mode(0o644)).expect("chmod");
    fs::write(src.join("root-only.key"), b"secret").expect("write");
    fs::set_permissions(src.join("root-only.key"), fs::Permissions::from_mode(0o600))
        .expect("chmod");
    let dest = t.path().join("dest");
    fs::create_dir_all(&dest).expect("mkdir");
    let mut job = Job::new(t.path());
    job.source(folder_source("files", &src))
        .destination(local_destination("disk", &dest));
    let cfg = job.write();
    run_ok(
        Command::new("chown")
            .arg("-R")
            .arg("nobody")
            .arg(&dest)
            .arg(&cfg)
            .arg(job.tmpdir()),
    );
    let child = Command::new("runuser")
        .args(["-u", "nobody", "--"])
        .arg(bin())
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runuser");
    let out = wait_with_deadline(child, RUN_DEADLINE, "backup as nobody");
    let r = Run {
        status: out.status,
        stdout: out.stdout,
        stderr: out.stderr,
    };
    r.assert_code(1);
    assert!(
        r.all_text().contains("root-only.key"),
        "message does not name the unreadable file:\n{}",
        r.describe()
    );
    assert!(
        objects(&dest, "files").is_empty(),
        "an incomplete archive was stored: {:?}",
        files_under(&dest)
    );
}
