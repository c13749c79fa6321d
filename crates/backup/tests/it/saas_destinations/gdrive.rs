//! `gdrive` against the fakes of Drive API v3 and Google's token endpoint.

use serde_json::{json, Value};

use super::common::saas::*;
use super::common::*;
use super::*;

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
    let (cfg, src, name, bytes, r) =
        backup_beside_local(&fake, t.path(), 17 << 20, gdrive_example(&fake));
    assert!(!r.all_text().contains("PRIVATE KEY"), "{}", r.describe());

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
    let src = small_source(t.path());
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
    let (name, bytes) = local_copy(&disk);
    let stored = fake.files("gdrive");
    assert_eq!(stored["files"][&name]["sha256"], json!(sha256_hex(&bytes)));
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
