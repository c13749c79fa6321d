//! The `b2`, `dropbox` and `gdrive` destinations with the real binary against fakes of their
//! HTTP APIs
//! (`common/saas_fake.py`; no local server exists for these services). The binary reaches
//! the fakes the way it reaches the real services, through `HTTPS_PROXY` with a test CA as
//! its only trusted root, and every test asserts the exact API requests it made: auth,
//! the large-file / upload-session calls of a multi-part object, list, download, delete.
//!
//! The destinations are the original's documented examples, unchanged (the fake accepts
//! their placeholder credentials; gdrive's `creds_file` alone points at a key the test made),
//! plus a local destination in the same job.

mod common;

use std::ffi::OsStr;
use std::path::Path;

use common::saas::*;
use common::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The original's `docs/destinations/b2.md` example, as written.
const B2_EXAMPLE: &str = r#"{
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
const DROPBOX_EXAMPLE: &str = r#"{
  "id": "dropbox-backup",
  "type": "dropbox",
  "access_token": "YOUR_LONG_LIVED_ACCESS_TOKEN",
  "folder": "/backups",
  "retention_copies": 7
}"#;

/// The original's `docs/destinations/gdrive.md` example, as written.
const GDRIVE_EXAMPLE: &str = r#"{
  "id": "gdrive-backup",
  "type": "gdrive",
  "creds_file": "/etc/backups/gdrive-service-account.json",
  "folder_id": "YOUR_GOOGLE_DRIVE_FOLDER_ID",
  "retention_copies": 10,
  "retention_days": 90
}"#;

fn example(text: &str) -> Value {
    serde_json::from_str(text).expect("example json")
}

/// A source `files` holding `big/random.bin` of `size` incompressible bytes and a small file.
fn big_source(dir: &Path, size: usize) -> std::path::PathBuf {
    let src = dir.join("src/big");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("random.bin"), pseudo_random(size, 7)).expect("write");
    std::fs::write(src.join("small.txt"), b"hello saas\n").expect("write");
    src
}

fn run(fake: &Fake, cfg: &Path) -> Run {
    fake.backup(&[cfg.as_os_str()])
}

/// No secret of the examples in the output (the key id is not secret).
fn assert_no_secret(r: &Run) {
    let text = r.all_text().replace(B2_KEY_ID, "");
    for secret in [B2_KEY, DROPBOX_TOKEN] {
        assert!(
            !text.contains(secret),
            "secret in output:\n{}",
            r.describe()
        );
    }
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn header<'a>(r: &'a Value, name: &str) -> &'a str {
    r["headers"][name].as_str().unwrap_or_default()
}

/// `restore --destination DEST` of `files` gives `src` back, byte for byte.
fn assert_restores(fake: &Fake, cfg: &Path, dest: &str, src: &Path, target: &Path) {
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
fn assert_list_and_verify(fake: &Fake, cfg: &Path, dest: &str) {
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
fn b2_large_file_backup_list_restore_verify_with_exact_requests() {
    let fake = Fake::start();
    let t = tempfile::tempdir().expect("tempdir");
    // 9 MiB of incompressible data: large-file parts of 8 + ~1 MiB.
    let src = big_source(t.path(), 9 << 20);
    let disk = t.path().join("disk");
    let mut job = Job::new(t.path());
    job.source(folder_source("files", &src))
        .destination(example(B2_EXAMPLE))
        .destination(local_destination("disk", &disk));
    let cfg = job.write();
    let r = run(&fake, &cfg);
    r.assert_code(0);
    assert_no_secret(&r);

    let local = only_object(&disk, "files");
    let bytes = std::fs::read(&local).expect("local object");
    let name = local
        .strip_prefix(&disk)
        .expect("under disk")
        .to_str()
        .expect("utf-8")
        .to_owned();
    let sidecar = format!("{name}.sha256");
    let stored = fake.files("b2");
    assert_eq!(stored["files"][&name]["sha256"], json!(sha256_hex(&bytes)));
    assert!(stored["files"][&sidecar].is_object(), "{stored}");
    assert_eq!(stored["unfinished"], json!(0));

    let reqs = fake.requests();
    // Authorization with the key, then the bucket's id by name; opendal authorizes once
    // more for its own session.
    let auth = with_path(&reqs, "/b2_authorize_account");
    assert_eq!(auth.len(), 2, "{:?}", calls(&reqs));
    let basic = format!(
        "Basic {}",
        base64_std(format!("{B2_KEY_ID}:{B2_KEY}").as_bytes())
    );
    for a in &auth {
        assert_eq!(a["method"], "GET");
        assert_eq!(a["host"], "api.backblazeb2.com");
        assert_eq!(header(a, "authorization"), basic);
    }
    let buckets = with_path(&reqs, "/b2api/v2/b2_list_buckets");
    assert_eq!(buckets.len(), 1);
    assert_eq!(buckets[0]["host"], "api001.backblazeb2.com");
    assert_eq!(
        buckets[0]["json"],
        json!({"accountId": "acct1", "bucketName": B2_BUCKET})
    );
    assert_eq!(header(buckets[0], "authorization"), "b2-acct-token-1");
    // The object: a large file of two parts.
    let start = with_path(&reqs, "/b2_start_large_file");
    assert_eq!(start.len(), 1, "{:?}", calls(&reqs));
    assert_eq!(start[0]["json"]["bucketId"], "bkt0001");
    assert_eq!(start[0]["json"]["fileName"], json!(name));
    let parts = with_path(&reqs, "/b2api/v2/b2_upload_part/");
    assert_eq!(parts.len(), 2, "{:?}", calls(&reqs));
    for (i, p) in parts.iter().enumerate() {
        assert_eq!(p["method"], "POST");
        assert_eq!(header(p, "x-bz-part-number"), (i + 1).to_string());
        assert_eq!(header(p, "authorization"), "b2-upload-token-1");
        assert_eq!(header(p, "x-bz-content-sha1"), "do_not_verify");
        assert_eq!(header(p, "content-length"), p["body_len"].to_string());
    }
    assert_eq!(parts[0]["body_len"], json!(8 << 20));
    let finish = with_path(&reqs, "/b2_finish_large_file");
    assert_eq!(finish.len(), 1);
    let sha1s: Vec<Value> = parts.iter().map(|p| p["body_sha1"].clone()).collect();
    assert_eq!(finish[0]["json"]["partSha1Array"], Value::Array(sha1s));
    // The sidecar: one small upload.
    let small = with_path(&reqs, "/b2api/v2/b2_upload_file/bkt0001/");
    assert_eq!(small.len(), 1, "{:?}", calls(&reqs));
    assert_eq!(header(small[0], "x-bz-file-name"), sidecar);
    assert_eq!(header(small[0], "authorization"), "b2-upload-token-1");
    assert!(with_path(&reqs, "/b2_cancel_large_file").is_empty());

    let seen = reqs.len();
    assert_list_and_verify(&fake, &cfg, "b2-backup");
    assert_restores(&fake, &cfg, "b2-backup", &src, &t.path().join("restore"));
    let reqs = fake.requests();
    let later = &reqs[seen..];
    let lists = with_path(later, "/b2api/v2/b2_list_file_names");
    assert!(!lists.is_empty(), "{:?}", calls(later));
    assert!(lists
        .iter()
        .all(|l| l["query"]["bucketId"] == "bkt0001"
            && header(l, "authorization") == "b2-acct-token-1"));
    let downloads = with_path(later, &format!("/file/{B2_BUCKET}/{name}"));
    assert!(!downloads.is_empty(), "{:?}", calls(later));
    for d in &downloads {
        assert_eq!(d["method"], "GET");
        assert_eq!(d["host"], "f001.backblazeb2.com");
        assert_eq!(header(d, "authorization"), "b2-acct-token-1");
        assert!(header(d, "range").starts_with("bytes="), "{d}");
    }
    // Reading back changed nothing.
    assert!(with_path(later, "/b2_hide_file").is_empty());
}

#[test]
fn b2_retention_hides_old_copies_and_a_bad_key_fails_only_b2() {
    let fake = Fake::start();
    let t = tempfile::tempdir().expect("tempdir");
    let src = t.path().join("src/small");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("a.txt"), b"retention").expect("write");
    // A copy from 2020 made by an earlier run: past the example's 30 days.
    let old = "files/20200101000000/files.tar.zst.gpg";
    fake.put("b2", old, "old");
    fake.put("b2", &format!("{old}.sha256"), "0  files.tar.zst.gpg\n");
    let mut dest = example(B2_EXAMPLE);
    dest["retention_copies"] = json!(1);
    let mut job = Job::new(t.path());
    job.source(folder_source("files", &src)).destination(dest);
    let cfg = job.write();
    run(&fake, &cfg).assert_code(0);
    let first = visible(&fake.files("b2"));
    assert_eq!(first.len(), 2, "the 2020 copy went: {first:?}");
    assert!(
        first.iter().all(|n| !n.contains("20200101000000")),
        "{first:?}"
    );
    let hides = fake.requests();
    let hides = with_path(&hides, "/b2api/v2/b2_hide_file");
    let hidden: Vec<&str> = hides
        .iter()
        .map(|h| h["json"]["fileName"].as_str().unwrap_or_default())
        .collect();
    assert!(hidden.contains(&old), "{hidden:?}");
    assert!(hides.iter().all(|h| h["json"]["bucketId"] == "bkt0001"));
    // Copies: a second run keeps only its own copy.
    run(&fake, &cfg).assert_code(0);
    let second = visible(&fake.files("b2"));
    assert_eq!(second.len(), 2, "{second:?}");
    assert!(second.iter().all(|n| !first.contains(n)), "{second:?}");

    // A wrong key: b2 fails (auth, not retried), the local copy in the same job is made.
    let mut bad = example(B2_EXAMPLE);
    bad["credentials"]["application_key"] = json!("K001-custos-wrong-key");
    let disk = t.path().join("disk");
    let mut job = Job::new(t.path());
    job.source(folder_source("files", &src))
        .destination(bad)
        .destination(local_destination("disk", &disk));
    let cfg = job.write_as("bad.json");
    let seen = fake.requests().len();
    let r = run(&fake, &cfg);
    r.assert_code(1);
    assert!(r.all_text().contains("b2-backup"), "{}", r.describe());
    assert!(
        !r.all_text().contains("K001-custos-wrong-key"),
        "{}",
        r.describe()
    );
    only_object(&disk, "files");
    let reqs = fake.requests();
    let later = &reqs[seen..];
    assert!(!later.is_empty());
    assert!(
        later
            .iter()
            .all(|r| r["path"] == "/b2api/v2/b2_authorize_account"),
        "only authorization was tried: {:?}",
        calls(later)
    );
    assert_eq!(visible(&fake.files("b2")), second, "nothing changed at b2");
}

/// The names stored and not hidden.
fn visible(files: &Value) -> Vec<String> {
    let mut out: Vec<String> = files["files"]
        .as_object()
        .expect("files")
        .iter()
        .filter(|(_, f)| f["hidden"] != json!(true))
        .map(|(n, _)| n.clone())
        .collect();
    out.sort();
    out
}

fn dropbox_arg(r: &Value) -> Value {
    serde_json::from_str(header(r, "dropbox-api-arg")).expect("Dropbox-API-Arg is JSON")
}

#[test]
fn dropbox_upload_session_backup_list_restore_verify_with_exact_requests() {
    let fake = Fake::start();
    let t = tempfile::tempdir().expect("tempdir");
    // 17 MiB: session chunks of 8 + 8 + ~1 MiB (start, append, finish).
    let src = big_source(t.path(), 17 << 20);
    let disk = t.path().join("disk");
    let mut job = Job::new(t.path());
    job.source(folder_source("files", &src))
        .destination(example(DROPBOX_EXAMPLE))
        .destination(local_destination("disk", &disk));
    let cfg = job.write();
    let r = run(&fake, &cfg);
    r.assert_code(0);
    assert_no_secret(&r);

    let local = only_object(&disk, "files");
    let bytes = std::fs::read(&local).expect("local object");
    let name = local
        .strip_prefix(&disk)
        .expect("under disk")
        .to_str()
        .expect("utf-8")
        .to_owned();
    let path = format!("/backups/{name}");
    let stored = fake.files("dropbox");
    assert_eq!(stored["files"][&path]["sha256"], json!(sha256_hex(&bytes)));
    assert!(
        stored["files"][&format!("{path}.sha256")].is_object(),
        "{stored}"
    );
    assert_eq!(stored["sessions"], json!(0));

    let reqs = fake.requests();
    for r in &reqs {
        assert_eq!(
            header(r, "authorization"),
            format!("Bearer {DROPBOX_TOKEN}")
        );
    }
    let start = with_path(&reqs, "/2/files/upload_session/start");
    assert_eq!(start.len(), 1, "{:?}", calls(&reqs));
    assert_eq!(start[0]["host"], "content.dropboxapi.com");
    assert_eq!(start[0]["method"], "POST");
    assert_eq!(dropbox_arg(start[0]), json!({"close": false}));
    assert_eq!(header(start[0], "content-type"), "application/octet-stream");
    assert_eq!(start[0]["body_len"], json!(8 << 20));
    let append = with_path(&reqs, "/2/files/upload_session/append_v2");
    assert_eq!(append.len(), 1, "{:?}", calls(&reqs));
    let sid = "sess0001";
    assert_eq!(
        dropbox_arg(append[0]),
        json!({"cursor": {"session_id": sid, "offset": 8 << 20}, "close": false})
    );
    let finish = with_path(&reqs, "/2/files/upload_session/finish");
    assert_eq!(finish.len(), 1);
    assert_eq!(
        dropbox_arg(finish[0]),
        json!({"cursor": {"session_id": sid, "offset": 16 << 20},
               "commit": {"path": path, "mode": "add", "autorename": false, "mute": true}})
    );
    assert_eq!(
        finish[0]["body_len"].as_u64(),
        Some(bytes.len() as u64 - (16 << 20))
    );
    // The sidecar: one plain upload.
    let upload = with_path(&reqs, "/2/files/upload");
    let plain: Vec<_> = upload
        .iter()
        .filter(|r| r["path"] == "/2/files/upload")
        .collect();
    assert_eq!(plain.len(), 1, "{:?}", calls(&reqs));
    assert_eq!(
        dropbox_arg(plain[0]),
        json!({"path": format!("{path}.sha256"), "mode": "add", "autorename": false, "mute": true})
    );

    let seen = reqs.len();
    assert_list_and_verify(&fake, &cfg, "dropbox-backup");
    assert_restores(
        &fake,
        &cfg,
        "dropbox-backup",
        &src,
        &t.path().join("restore"),
    );
    let reqs = fake.requests();
    let later = &reqs[seen..];
    let lists = with_path(later, "/2/files/list_folder");
    assert!(
        lists.iter().any(|l| l["path"] == "/2/files/list_folder"
            && l["host"] == "api.dropboxapi.com"
            && l["json"]["path"]
                .as_str()
                .is_some_and(|p| p.starts_with("/backups"))),
        "{:?}",
        calls(later)
    );
    assert!(
        lists
            .iter()
            .any(|l| l["path"] == "/2/files/list_folder/continue"),
        "more entries than one page: {:?}",
        calls(later)
    );
    let downloads = with_path(later, "/2/files/download");
    assert!(!downloads.is_empty());
    for d in &downloads {
        assert_eq!(d["host"], "content.dropboxapi.com");
        let arg = dropbox_arg(d);
        assert!(
            arg["path"] == json!(path) || arg["path"] == json!(format!("{path}.sha256")),
            "{d}"
        );
    }
    assert!(with_path(later, "/2/files/delete_v2").is_empty());
}

#[test]
fn dropbox_retention_and_a_connection_drop_mid_upload_fails_only_dropbox() {
    let fake = Fake::start();
    let t = tempfile::tempdir().expect("tempdir");
    let src = t.path().join("src/small");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("a.txt"), b"retention").expect("write");
    let mut dest = example(DROPBOX_EXAMPLE);
    dest["retention_copies"] = json!(1);
    let mut job = Job::new(t.path());
    job.source(folder_source("files", &src))
        .destination(dest.clone());
    let cfg = job.write();
    run(&fake, &cfg).assert_code(0);
    let first = names(&fake.files("dropbox"));
    assert_eq!(first.len(), 2, "{first:?}");
    run(&fake, &cfg).assert_code(0);
    let second = names(&fake.files("dropbox"));
    assert_eq!(second.len(), 2, "only the newest copy is kept: {second:?}");
    assert!(second.iter().all(|n| !first.contains(n)), "{second:?}");
    let reqs = fake.requests();
    let deletes: Vec<Value> = with_path(&reqs, "/2/files/delete_v2")
        .iter()
        .map(|r| r["json"]["path"].clone())
        .collect();
    let want: Vec<Value> = first.iter().map(|n| json!(n)).collect();
    let mut got = deletes.clone();
    got.sort_by_key(|v| v.to_string());
    assert_eq!(got, want, "the first run's object and sidecar deleted");

    // The connection drops when the last chunk of a 9 MiB upload goes out (the session
    // holds the first 8 MiB): dropbox fails, the local copy in the same job is complete, and
    // no file appears at Dropbox.
    let big = big_source(t.path(), 9 << 20);
    fake.fault("content.dropboxapi.com", "/upload_session/finish", 0, 100);
    let disk = t.path().join("disk");
    let mut job = Job::new(t.path());
    job.source(folder_source("files", &big))
        .destination(dest)
        .destination(local_destination("disk", &disk));
    let cfg = job.write_as("drop.json");
    let r = run(&fake, &cfg);
    r.assert_code(1);
    assert!(r.all_text().contains("dropbox-backup"), "{}", r.describe());
    assert_restores(&fake, &cfg, "disk", &big, &t.path().join("restore"));
    assert_eq!(
        names(&fake.files("dropbox")),
        second,
        "no new file at Dropbox"
    );
}

/// Paths stored at the fake Dropbox, sorted.
fn names(files: &Value) -> Vec<String> {
    let mut out: Vec<String> = files["files"]
        .as_object()
        .expect("files")
        .keys()
        .cloned()
        .collect();
    out.sort();
    out
}

#[test]
fn the_original_examples_load_unchanged() {
    let fake = Fake::start();
    let t = tempfile::tempdir().expect("tempdir");
    let src = t.path().join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    // `--dry-run` loads the job strictly (an unread key is an error) and reaches each
    // destination without writing.
    for (text, kind) in [(B2_EXAMPLE, "b2"), (DROPBOX_EXAMPLE, "dropbox")] {
        let mut job = Job::new(t.path());
        job.source(folder_source("files", &src))
            .destination(example(text));
        let cfg = job.write_as(&format!("{kind}.json"));
        let r = fake.backup(&["run".as_ref(), cfg.as_os_str(), "--dry-run".as_ref()]);
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
    let r = fake.backup(&["run".as_ref(), cfg.as_os_str(), "--dry-run".as_ref()]);
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
fn gdrive_example(fake: &Fake) -> Value {
    let mut v = example(GDRIVE_EXAMPLE);
    v["creds_file"] = json!(fake.gdrive_creds());
    v
}

/// A Drive `q` for the children of `parent` named `name`, folders only when `folder`.
fn drive_query(parent: &str, name: &str, folder: bool) -> String {
    let mut q = format!("'{parent}' in parents and trashed = false and name = '{name}'");
    if folder {
        q.push_str(" and mimeType = 'application/vnd.google-apps.folder'");
    }
    q
}

#[test]
fn gdrive_resumable_upload_list_restore_verify_with_exact_requests() {
    let fake = Fake::start();
    // Tokens that are always within the renewal margin: one fresh token per request, which
    // shows an upload outliving its token gets a new one for each chunk.
    fake.token_lifetime(60);
    let t = tempfile::tempdir().expect("tempdir");
    // 17 MiB: resumable chunks of 8 + 8 + ~1 MiB.
    let src = big_source(t.path(), 17 << 20);
    let disk = t.path().join("disk");
    let mut job = Job::new(t.path());
    job.source(folder_source("files", &src))
        .destination(gdrive_example(&fake))
        .destination(local_destination("disk", &disk));
    let cfg = job.write();
    let r = run(&fake, &cfg);
    r.assert_code(0);
    assert!(!r.all_text().contains("PRIVATE KEY"), "{}", r.describe());

    let local = only_object(&disk, "files");
    let bytes = std::fs::read(&local).expect("local object");
    let name = local
        .strip_prefix(&disk)
        .expect("under disk")
        .to_str()
        .expect("utf-8")
        .to_owned();
    let stored = fake.files("gdrive");
    assert_eq!(stored["files"][&name]["sha256"], json!(sha256_hex(&bytes)));
    assert!(
        stored["files"][&format!("{name}.sha256")].is_object(),
        "{stored}"
    );
    assert_eq!(stored["sessions"], json!(0));
    let stamp = name.split('/').nth(1).expect("stamp");

    let reqs = fake.requests();
    // Each Drive request carries the token issued just before it.
    let mut current = String::new();
    for r in &reqs {
        if r["host"] == "oauth2.googleapis.com" {
            assert_eq!(r["method"], "POST");
            assert_eq!(r["path"], "/token");
            assert_eq!(
                r["form"]["grant_type"],
                "urn:ietf:params:oauth:grant-type:jwt-bearer"
            );
            let jwt = r["form"]["assertion"].as_str().expect("assertion");
            assert_eq!(jwt.split('.').count(), 3, "{jwt}");
            current.clear();
        } else {
            assert_eq!(r["host"], "www.googleapis.com");
            let auth = header(r, "authorization");
            assert!(auth.starts_with("Bearer ya29.fake-"), "{r}");
            assert_ne!(auth, current, "a token used twice at lifetime 60 s");
            current = auth.to_owned();
        }
    }
    // The source's and the run's folders are looked up, then made, under folder_id.
    let lookups: Vec<&Value> = reqs
        .iter()
        .filter(|r| {
            r["method"] == "GET"
                && r["path"] == "/drive/v3/files"
                && r["query"]["q"]
                    .as_str()
                    .is_some_and(|q| q.contains(" and name = "))
        })
        .collect();
    assert_eq!(
        lookups[0]["query"]["q"],
        json!(drive_query(GDRIVE_FOLDER, "files", true))
    );
    let folders: Vec<&Value> = reqs
        .iter()
        .filter(|r| r["method"] == "POST" && r["path"] == "/drive/v3/files")
        .collect();
    assert_eq!(folders.len(), 2, "{:?}", calls(&reqs));
    assert_eq!(
        folders[0]["json"],
        json!({"name": "files", "mimeType": "application/vnd.google-apps.folder",
               "parents": [GDRIVE_FOLDER]})
    );
    assert_eq!(folders[1]["json"]["name"], json!(stamp));
    // One resumable session per file; the object's chunks continue each other.
    let starts: Vec<&Value> = reqs
        .iter()
        .filter(|r| r["method"] == "POST" && r["path"] == "/upload/drive/v3/files")
        .collect();
    assert_eq!(starts.len(), 2, "object and sidecar: {:?}", calls(&reqs));
    for s in &starts {
        assert_eq!(s["query"]["uploadType"], "resumable");
        assert_eq!(
            header(s, "x-upload-content-type"),
            "application/octet-stream"
        );
    }
    assert_eq!(starts[0]["json"]["name"], "files.tar.zst.gpg");
    let puts: Vec<&Value> = reqs
        .iter()
        .filter(|r| r["method"] == "PUT" && r["path"] == "/upload/drive/v3/files")
        .collect();
    let total = bytes.len();
    let want = [
        format!("bytes 0-{}/*", (8 << 20) - 1),
        format!("bytes {}-{}/*", 8 << 20, (16 << 20) - 1),
        format!("bytes {}-{}/{total}", 16 << 20, total - 1),
    ];
    let got: Vec<&str> = puts
        .iter()
        .take(3)
        .map(|p| header(p, "content-range"))
        .collect();
    assert_eq!(got, want);
    assert_eq!(
        puts.len(),
        4,
        "three chunks and the sidecar: {:?}",
        calls(&reqs)
    );

    // Reading back with long-lived tokens (one per run).
    fake.token_lifetime(3599);
    let seen = reqs.len();
    assert_list_and_verify(&fake, &cfg, "gdrive-backup");
    assert_restores(
        &fake,
        &cfg,
        "gdrive-backup",
        &src,
        &t.path().join("restore"),
    );
    let reqs = fake.requests();
    let later = &reqs[seen..];
    let media: Vec<&Value> = later
        .iter()
        .filter(|r| r["query"]["alt"] == "media")
        .collect();
    assert!(!media.is_empty(), "{:?}", calls(later));
    for m in &media {
        assert_eq!(m["method"], "GET");
        assert!(header(m, "range").starts_with("bytes="), "{m}");
    }
    assert!(later.iter().all(|r| r["method"] != "DELETE"));
}

#[test]
fn gdrive_retention_then_a_5xx_mid_upload_and_a_bad_key_fail_only_gdrive() {
    let fake = Fake::start();
    let t = tempfile::tempdir().expect("tempdir");
    let src = t.path().join("src/small");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("a.txt"), b"retention").expect("write");
    // A copy from 2020 made by an earlier run: past the example's 90 days.
    let old = "files/20200101000000/files.tar.zst.gpg";
    fake.put("gdrive", old, "old");
    fake.put("gdrive", &format!("{old}.sha256"), "0  files.tar.zst.gpg\n");
    let mut job = Job::new(t.path());
    job.source(folder_source("files", &src))
        .destination(gdrive_example(&fake));
    let cfg = job.write();
    run(&fake, &cfg).assert_code(0);
    let stored = fake.files("gdrive");
    let files: Vec<&String> = stored["files"].as_object().expect("files").keys().collect();
    assert_eq!(files.len(), 2, "the 2020 copy went: {files:?}");
    assert!(
        files.iter().all(|f| !f.contains("20200101000000")),
        "{files:?}"
    );
    assert!(
        !stored["folders"]
            .as_array()
            .expect("folders")
            .contains(&json!("files/20200101000000")),
        "its emptied folder went too: {stored}"
    );
    let reqs = fake.requests();
    let deletes = reqs.iter().filter(|r| r["method"] == "DELETE").count();
    assert_eq!(deletes, 3, "two files and their folder: {:?}", calls(&reqs));

    // Drive holds only 256 KiB of the first chunk, then nothing of the next request: custos
    // sends the rest again from where Drive stopped, and the copy is whole.
    let big = big_source(t.path(), 9 << 20);
    fake.drive_keeps(256 << 10, 1);
    fake.drive_keeps(0, 1);
    let disk = t.path().join("disk");
    let mut job = Job::new(t.path());
    job.source(folder_source("files", &big))
        .destination(gdrive_example(&fake))
        .destination(local_destination("disk", &disk));
    let cfg = job.write_as("partial.json");
    let seen = fake.requests().len();
    run(&fake, &cfg).assert_code(0);
    let local = only_object(&disk, "files");
    let name = local
        .strip_prefix(&disk)
        .expect("under disk")
        .to_str()
        .expect("utf-8");
    let bytes = std::fs::read(&local).expect("local object");
    let stored = fake.files("gdrive");
    assert_eq!(stored["files"][name]["sha256"], json!(sha256_hex(&bytes)));
    let reqs = fake.requests();
    let ranges: Vec<&str> = reqs[seen..]
        .iter()
        .filter(|r| r["method"] == "PUT")
        .map(|r| header(r, "content-range"))
        .collect();
    let total = bytes.len();
    assert_eq!(
        ranges[..4],
        [
            format!("bytes 0-{}/*", (8 << 20) - 1),
            format!("bytes {}-{}/*", 256 << 10, (8 << 20) - 1),
            format!("bytes {}-{}/*", 256 << 10, (8 << 20) - 1),
            format!("bytes {}-{}/{total}", 8 << 20, total - 1),
        ],
        "{ranges:?}"
    );
    let stored = fake.files("gdrive");

    // Every chunk upload fails with 503 (retried, then given up): gdrive fails, the local
    // copy in the same job is complete, the session is cancelled, no new file at Drive.
    fake.fault_method(
        "PUT",
        "www.googleapis.com",
        "/upload/drive/v3/files",
        503,
        1000,
    );
    let disk = t.path().join("disk2");
    let mut job = Job::new(t.path());
    job.source(folder_source("files", &big))
        .destination(gdrive_example(&fake))
        .destination(local_destination("disk", &disk));
    let cfg = job.write_as("fail.json");
    let r = run(&fake, &cfg);
    r.assert_code(1);
    assert!(r.all_text().contains("gdrive-backup"), "{}", r.describe());
    assert!(r.all_text().contains("503"), "{}", r.describe());
    assert_restores(&fake, &cfg, "disk", &big, &t.path().join("restore"));
    let after = fake.files("gdrive");
    assert_eq!(after["files"], stored["files"], "no new file at Drive");
    assert_eq!(after["sessions"], json!(0), "the session was cancelled");

    // A key the token endpoint does not know (its JWT signature does not verify): an auth
    // failure, no Drive request, exit 1.
    let other = t.path().join("other-key.pem");
    run_ok(
        std::process::Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
            ])
            .arg(&other),
    );
    let mut creds: Value =
        serde_json::from_slice(&std::fs::read(fake.gdrive_creds()).expect("creds")).expect("json");
    creds["private_key"] = json!(std::fs::read_to_string(&other).expect("key"));
    let bad_creds = t.path().join("bad-creds.json");
    write_private(&bad_creds, creds.to_string().as_bytes());
    let mut dest = gdrive_example(&fake);
    dest["creds_file"] = json!(bad_creds);
    let mut job = Job::new(t.path());
    job.source(folder_source("files", &src)).destination(dest);
    let cfg = job.write_as("badkey.json");
    let seen = fake.requests().len();
    let r = run(&fake, &cfg);
    r.assert_code(1);
    assert!(r.all_text().contains("invalid_grant"), "{}", r.describe());
    assert!(!r.all_text().contains("PRIVATE KEY"), "{}", r.describe());
    let reqs = fake.requests();
    let later = &reqs[seen..];
    assert!(!later.is_empty());
    assert!(
        later.iter().all(|r| r["host"] == "oauth2.googleapis.com"),
        "only the token endpoint was asked: {:?}",
        calls(later)
    );
}

/// Standard base64, for the expected Basic authorization.
fn base64_std(b: &[u8]) -> String {
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
