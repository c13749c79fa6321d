//! `b2` against the fake B2 native API.

use serde_json::{json, Value};

use super::*;

#[test]
fn b2_large_file_backup_list_restore_verify_with_exact_requests() {
    let fake = Fake::start();
    let t = tempfile::tempdir().expect("tempdir");
    // 9 MiB of incompressible data: large-file parts of 8 + ~1 MiB.
    let (cfg, src, name, bytes, r) =
        backup_beside_local(&fake, t.path(), 9 << 20, example(B2_EXAMPLE));
    assert_no_secret(&r);

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
    let src = small_source(t.path());
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
