//! The `b2`, `dropbox` and `gdrive` destinations with the real binary against fakes of their
//! HTTP APIs (`common/saas_fake.py`; no local server exists for these services). The binary
//! reaches the fakes the way it reaches the real services, through `HTTPS_PROXY` with a test
//! CA as its only trusted root, and every test asserts the exact API requests it made: auth,
//! the large-file / upload-session calls of a multi-part object, list, download, delete.
//!
//! The destinations are the original's documented examples, unchanged (the fake accepts
//! their placeholder credentials; gdrive's `creds_file` alone points at a key the test made),
//! plus a local destination in the same job.
//!
//! One test binary, a module per service: `b2`, `dropbox`, `gdrive`; the helpers and the
//! original's example configs are here.

mod b2;
use crate::common;
mod dropbox;
mod gdrive;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use common::saas::*;
use common::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The original's `docs/destinations/b2.md` example, as written.
pub const B2_EXAMPLE: &str = r#"{
  "id": "b2-backup",
  "type": "b2",
  "bucket": "my-backup-bucket",
  "credentials": {
    "application_key_id": "YOUR_APPLICATION_KEY_ID",
    "application_key": "YOUR_APPLICATION_KEY"
  },
  "retention_copies": 5,
  "retention_days": 30
}"#;

/// The original's `docs/destinations/dropbox.md` example, as written.
pub const DROPBOX_EXAMPLE: &str = r#"{
  "id": "dropbox-backup",
  "type": "dropbox",
  "access_token": "YOUR_LONG_LIVED_ACCESS_TOKEN",
  "folder": "/backups",
  "retention_copies": 7
}"#;

/// The original's `docs/destinations/gdrive.md` example, as written.
pub const GDRIVE_EXAMPLE: &str = r#"{
  "id": "gdrive-backup",
  "type": "gdrive",
  "creds_file": "/etc/backups/gdrive-service-account.json",
  "folder_id": "YOUR_GOOGLE_DRIVE_FOLDER_ID",
  "retention_copies": 10,
  "retention_days": 90
}"#;

pub fn example(text: &str) -> Value {
    serde_json::from_str(text).expect("example json")
}

/// A source `files` holding `big/random.bin` of `size` incompressible bytes and a small file.
pub fn big_source(dir: &Path, size: usize) -> PathBuf {
    let src = dir.join("src/big");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("random.bin"), pseudo_random(size, 7)).expect("write");
    std::fs::write(src.join("small.txt"), b"hello saas\n").expect("write");
    src
}

/// A backup of a [`big_source`] of `size` bytes to the service destination `dest` beside the
/// local destination `disk`, exit 0: (the job file, the source, the local copy's name and
/// bytes, the run).
pub fn backup_beside_local(
    fake: &Fake,
    dir: &Path,
    size: usize,
    dest: Value,
) -> (PathBuf, PathBuf, String, Vec<u8>, Run) {
    let src = big_source(dir, size);
    let disk = dir.join("disk");
    let mut job = Job::new(dir);
    job.source(folder_source("files", &src))
        .destination(dest)
        .destination(local_destination("disk", &disk));
    let cfg = job.write();
    let r = run(fake, &cfg);
    r.assert_code(0);
    let (name, bytes) = local_copy(&disk);
    (cfg, src, name, bytes, r)
}

/// A source `files` holding one small file.
pub fn small_source(dir: &Path) -> PathBuf {
    let src = dir.join("src/small");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("a.txt"), b"retention").expect("write");
    src
}

/// The one object of source `files` at the local destination `disk`: its name (relative, as
/// a remote destination names it too) and its bytes.
pub fn local_copy(disk: &Path) -> (String, Vec<u8>) {
    let local = only_object(disk, "files");
    let bytes = std::fs::read(&local).expect("local object");
    let name = local
        .strip_prefix(disk)
        .expect("under disk")
        .to_str()
        .expect("utf-8");
    (name.to_owned(), bytes)
}

pub fn run(fake: &Fake, cfg: &Path) -> Run {
    fake.backup(&[cfg.as_os_str()])
}

/// No secret of the examples in the output (the key id is not secret).
pub fn assert_no_secret(r: &Run) {
    let text = r.all_text().replace(B2_KEY_ID, "");
    for secret in [B2_KEY, DROPBOX_TOKEN] {
        assert!(
            !text.contains(secret),
            "secret in output:\n{}",
            r.describe()
        );
    }
}

pub fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

pub fn header<'a>(r: &'a Value, name: &str) -> &'a str {
    r["headers"][name].as_str().unwrap_or_default()
}

/// `restore --destination DEST` of `files` gives `src` back, byte for byte.
pub fn assert_restores(fake: &Fake, cfg: &Path, dest: &str, src: &Path, target: &Path) {
    let r = fake.backup(&[
        "restore".as_ref(),
        cfg.as_os_str(),
        "--source".as_ref(),
        "files".as_ref(),
        "--destination".as_ref(),
        OsStr::new(dest),
        "--to".as_ref(),
        target.as_os_str(),
    ]);
    r.assert_code(0);
    assert_same_tree(src, &restored_root(target, "big"), false);
}

/// `list` and `verify` see the copy at `dest` and at the local disk.
pub fn assert_list_and_verify(fake: &Fake, cfg: &Path, dest: &str) {
    let l = fake.backup(&["list".as_ref(), cfg.as_os_str()]);
    l.assert_code(0);
    let out = l.stdout_text();
    for d in [dest, "disk"] {
        assert!(
            out.lines()
                .any(|line| line.split_whitespace().any(|w| w == d)),
            "{d} missing from list:\n{out}"
        );
    }
    let v = fake.backup(&["verify".as_ref(), cfg.as_os_str()]);
    v.assert_code(0);
    assert_eq!(
        v.stdout_text().matches("matches").count(),
        2,
        "{}",
        v.describe()
    );
}

#[test]
fn the_original_examples_load_unchanged() {
    let fake = Fake::start();
    let t = tempfile::tempdir().expect("tempdir");
    let src = t.path().join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    // `--strict --dry-run` loads the job strictly (an unread key is an error) and reaches
    // each destination without writing.
    for (text, kind) in [(B2_EXAMPLE, "b2"), (DROPBOX_EXAMPLE, "dropbox")] {
        let mut job = Job::new(t.path());
        job.source(folder_source("files", &src))
            .destination(example(text));
        let cfg = job.write_as(&format!("{kind}.json"));
        let r = fake.backup(&[
            "--strict".as_ref(),
            "run".as_ref(),
            cfg.as_os_str(),
            "--dry-run".as_ref(),
        ]);
        r.assert_code(0);
    }
    assert!(fake.files("b2")["files"]
        .as_object()
        .is_some_and(|f| f.is_empty()));
    assert!(fake.files("dropbox")["files"]
        .as_object()
        .is_some_and(|f| f.is_empty()));
    // gdrive: the example loads; its key file is missing here, which the check reports.
    let mut job = Job::new(t.path());
    job.source(folder_source("files", &src))
        .destination(example(GDRIVE_EXAMPLE));
    let cfg = job.write_as("gdrive.json");
    let r = fake.backup(&[
        "--strict".as_ref(),
        "run".as_ref(),
        cfg.as_os_str(),
        "--dry-run".as_ref(),
    ]);
    r.assert_code(1);
    assert!(
        r.all_text()
            .contains("creds_file /etc/backups/gdrive-service-account.json"),
        "{}",
        r.describe()
    );
    // With a real key file, the check reaches the folder.
    let mut job = Job::new(t.path());
    job.source(folder_source("files", &src))
        .destination(gdrive_example(&fake));
    let cfg = job.write_as("gdrive2.json");
    let r = fake.backup(&["run".as_ref(), cfg.as_os_str(), "--dry-run".as_ref()]);
    r.assert_code(0);
    let reqs = fake.requests();
    let check = with_path(&reqs, &format!("/drive/v3/files/{GDRIVE_FOLDER}"));
    assert_eq!(check.len(), 1, "{:?}", calls(&reqs));
    assert_eq!(check[0]["method"], "GET");
}

/// The gdrive example with `creds_file` pointing at the fake's service account key.
pub fn gdrive_example(fake: &Fake) -> Value {
    let mut v = example(GDRIVE_EXAMPLE);
    v["creds_file"] = json!(fake.gdrive_creds());
    v
}

/// Standard base64, for the expected Basic authorization.
pub fn base64_std(b: &[u8]) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A Dropbox (`has_more`) or Drive (`nextPageToken`) listing whose server repeats its cursor
/// fails, naming why, after a few requests instead of looping forever.
#[test]
fn a_listing_whose_cursor_repeats_fails_instead_of_looping() {
    for service in ["dropbox", "gdrive"] {
        let fake = Fake::start();
        let t = tempfile::tempdir().expect("tempdir");
        let old = "files/20200101000000/files.tar.zst.gpg";
        let stored = if service == "dropbox" {
            format!("/backups/{old}")
        } else {
            old.to_string()
        };
        fake.put(service, &stored, "old");
        let dest = if service == "dropbox" {
            example(DROPBOX_EXAMPLE)
        } else {
            gdrive_example(&fake)
        };
        let mut job = Job::new(t.path());
        job.source(folder_source("files", &small_source(t.path())))
            .destination(dest);
        let cfg = job.write();
        fake.stuck_cursor(service);
        let started = std::time::Instant::now();
        let l = fake.backup(&["list".as_ref(), cfg.as_os_str()]);
        l.assert_code(1);
        assert!(
            l.stderr_text().contains("repeated a listing cursor"),
            "{service}: {}",
            l.describe()
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "{service}"
        );
        let lists = fake
            .requests()
            .iter()
            .filter(|r| {
                let p = r["path"].as_str().unwrap_or("");
                p.contains("list_folder") || (p == "/drive/v3/files" && r["method"] == "GET")
            })
            .count();
        assert!(lists <= 10, "{service}: {lists} listing requests");
    }
}
