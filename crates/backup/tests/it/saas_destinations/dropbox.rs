//! `dropbox` against the fake Dropbox API v2.

use serde_json::{json, Value};

use super::common::saas::*;
use super::common::*;
use super::*;

fn dropbox_arg(r: &Value) -> Value {
    serde_json::from_str(header(r, "dropbox-api-arg")).expect("Dropbox-API-Arg is JSON")
}

#[test]
fn dropbox_upload_session_backup_list_restore_verify_with_exact_requests() {
    let fake = Fake::start();
    let t = tempfile::tempdir().expect("tempdir");
    // 17 MiB: session chunks of 8 + 8 + ~1 MiB (start, append, finish).
    let (cfg, src, name, bytes, r) =
        backup_beside_local(&fake, t.path(), 17 << 20, example(DROPBOX_EXAMPLE));
    assert_no_secret(&r);

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
    let src = small_source(t.path());
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

/// The proxy (the only way to Dropbox here) refuses: the error names the refusal, Dropbox's
/// endpoint and the proxy, and the retried listing makes one WARN line.
#[test]
fn a_refused_connection_names_the_cause_and_the_endpoint() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let t = tempfile::tempdir().expect("tempdir");
    let mut job = Job::new(t.path());
    job.source(folder_source("files", &small_source(t.path())))
        .destination(example(DROPBOX_EXAMPLE));
    let cfg = job.write();
    let proxy = std::ffi::OsString::from(format!("http://127.0.0.1:{port}"));
    let r = backup_with(
        [cfg.as_os_str()],
        &[("HTTPS_PROXY", &proxy), ("NO_PROXY", OsStr::new(""))],
        None,
    );
    r.assert_code(1);
    let err = r.stderr_text();
    let want = format!(
        "request to https://content.dropboxapi.com (through proxy http://127.0.0.1:{port}) failed: connection refused"
    );
    let errors: Vec<&str> = err.lines().filter(|l| l.contains(" ERROR ")).collect();
    assert_eq!(errors.len(), 1, "{}", r.describe());
    assert!(errors[0].contains(&want), "{}", r.describe());
    let warnings = err
        .lines()
        .filter(|l| l.contains(" WARN ") && l.contains("operation=\"list\""))
        .count();
    assert_eq!(warnings, 1, "{}", r.describe());
    assert!(!err.contains("YOUR_LONG_LIVED"), "{}", r.describe());
}
