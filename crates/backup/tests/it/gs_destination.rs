//! The `gs` destination with the real binary against a local fake of Google Cloud Storage
//! (tests/it/common/gcs/: the exact JSON and XML API requests opendal sends, and an OAuth
//! token endpoint that verifies the service-account JWT with `openssl`). The binary finds
//! the fake through `STORAGE_EMULATOR_HOST` and the key's `token_uri`, as Google's own
//! client libraries would: a streamed multipart backup, `list`, `restore` byte-identical,
//! `verify`, retention by copies and by days, and a key the token endpoint refuses, which
//! fails only the gs destination (exit 1) while a local destination in the same job
//! completes.

use crate::common;

use std::ffi::OsStr;
use std::path::Path;

use common::gcs::{FakeGcs, ServiceAccount};
use common::*;
use serde_json::{json, Value};

fn gs_destination(id: &str, bucket: &str, key: &Path) -> Value {
    json!({"id": id, "type": "gs", "bucket": bucket, "gcs_creds_path": key})
}

/// Runs `backup ARGS CFG` with the fake as `STORAGE_EMULATOR_HOST`.
fn gs_run(fake: &FakeGcs, args: &[&str], cfg: &Path) -> Run {
    let host = fake.host();
    let mut a: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    a.push(cfg.as_os_str());
    backup_with(a, &[("STORAGE_EMULATOR_HOST", OsStr::new(&host))], None)
}

/// A fake with `buckets` and a service-account key it trusts.
fn setup(dir: &Path, buckets: &[&str]) -> Option<(FakeGcs, ServiceAccount)> {
    if !require_tools("gs", &["openssl"]) {
        return None;
    }
    let fake = FakeGcs::start(buckets);
    let sa = ServiceAccount::generate(dir, "backup", &fake.token_uri());
    fake.trust(&sa);
    Some((fake, sa))
}

/// Neither the private key nor an access token in `r`'s output.
fn assert_no_secrets(r: &Run, fake: &FakeGcs, sa: &ServiceAccount) {
    let text = r.all_text();
    assert!(
        !text.contains(&sa.private_fragment()),
        "private key in output:\n{}",
        r.describe()
    );
    for t in fake.tokens_issued() {
        assert!(!text.contains(&t), "token in output:\n{}", r.describe());
    }
    assert!(
        !text.contains("Tk9qLmRc"),
        "token in output:\n{}",
        r.describe()
    );
}

#[test]
fn streamed_backup_list_restore_verify_on_gs() {
    let t = tempfile::tempdir().expect("tempdir");
    let Some((fake, sa)) = setup(t.path(), &["bk"]) else {
        return;
    };
    // 17 MiB of incompressible data: parts of 8 + 8 + ~1 MiB.
    let src = random_source(t.path(), 17 << 20, 21);
    std::fs::write(src.join("small.txt"), b"hello gcs\n").expect("write");
    let disk = t.path().join("disk");
    let mut job = Job::new(t.path());
    job.source(folder_source("files", &src))
        .destination(gs_destination("gcs", "bk", &sa.json))
        .destination(local_destination("disk", &disk));
    let cfg = job.write();
    // `--dry-run` reaches the bucket (a one-entry listing) and writes nothing.
    let d = gs_run(&fake, &["run", "--dry-run"], &cfg);
    d.assert_code(0);
    assert!(fake.names("bk").is_empty() && fake.uploads().is_empty());
    assert!(
        fake.requests()
            .iter()
            .any(|q| q.starts_with("GET /storage/v1/b/bk/o?") && q.contains("maxResults=1")),
        "{:#?}",
        fake.requests()
    );
    let r = gs_run(&fake, &[], &cfg);
    r.assert_code(0);
    assert_no_secrets(&r, &fake, &sa);

    // The same object and sidecar as on disk, byte for byte.
    let local = only_object(&disk, "files");
    let names = fake.names("bk");
    assert_eq!(names.len(), 2, "object + sidecar: {names:?}");
    let object = names
        .iter()
        .find(|k| !k.ends_with(".sha256"))
        .expect("object");
    assert!(local.ends_with(object), "{} vs {object}", local.display());
    assert!(
        fake.object("bk", object).expect("object") == std::fs::read(&local).expect("local"),
        "the gs object differs from the local copy"
    );
    // Streamed as one multipart upload of three parts, then completed; the small sidecar in
    // one media request. No upload is left open, and every request was one the fake knows.
    let reqs = fake.requests();
    let count = |needle: &str| reqs.iter().filter(|r| r.contains(needle)).count();
    assert_eq!(count(&format!("POST /bk/{object}?uploads")), 1, "{reqs:#?}");
    for n in 1..=3 {
        assert_eq!(count(&format!("partNumber={n}&")), 1, "{reqs:#?}");
    }
    assert_eq!(count("partNumber=4&"), 0, "{reqs:#?}");
    assert_eq!(count("uploadType=media"), 1, "{reqs:#?}");
    assert!(fake.uploads().is_empty(), "{:?}", fake.uploads());
    // One token exchange per run (the dry run's and this one's), shared by the uploads and
    // the cleanup of dead uploads.
    assert_eq!(count("POST /token"), 2, "{reqs:#?}");
    assert_eq!(count("GET /bk?uploads&prefix=files%2F"), 1, "{reqs:#?}");

    // `list` shows the copy; restore from gs gives the tree back; verify reads both copies.
    let l = gs_run(&fake, &["list"], &cfg);
    l.assert_code(0);
    assert!(
        l.stdout_text()
            .lines()
            .any(|line| line.split_whitespace().any(|w| w == "gcs")),
        "{}",
        l.describe()
    );
    let target = t.path().join("restore");
    let host = fake.host();
    restore_gs(&cfg, &host, &target).assert_code(0);
    assert_same_tree(&src, &restored_root(&target, "big"), false);
    let v = gs_run(&fake, &["verify"], &cfg);
    v.assert_code(0);
    assert_eq!(
        v.stdout_text().matches("matches").count(),
        2,
        "{}",
        v.describe()
    );
    // Ranged reads: restore and verify each fetched the 17 MiB object in three 8 MiB ranges.
    let reads = fake
        .requests()
        .iter()
        .filter(|r| r.contains("alt=media") && !r.contains(".sha256"))
        .count();
    assert!(reads >= 6, "{:#?}", fake.requests());
    assert!(fake.unexpected().is_empty(), "{:#?}", fake.unexpected());
}

fn restore_gs(cfg: &Path, host: &str, target: &Path) -> Run {
    restore_with_env(
        cfg,
        "files",
        &["--destination".as_ref(), OsStr::new("gcs")],
        target,
        &[("STORAGE_EMULATOR_HOST", OsStr::new(host))],
    )
}

#[test]
fn retention_by_copies_and_days_on_gs() {
    let t = tempfile::tempdir().expect("tempdir");
    let Some((fake, sa)) = setup(t.path(), &["ret"]) else {
        return;
    };
    assert_retention_by_days_and_copies(
        t.path(),
        gs_destination("gcs", "ret", &sa.json),
        |name, data| fake.put("ret", name, data),
        || fake.names("ret"),
        |cfg| gs_run(&fake, &[], cfg),
    );
    assert!(fake.unexpected().is_empty(), "{:#?}", fake.unexpected());
}

/// A key the token endpoint refuses (the trusted account's email, signed by another key:
/// the signature check fails): the gs destination
/// fails with the endpoint's reason in the log, exit 1; the local destination in the same
/// job has its complete copy; nothing reaches the bucket; no key or token in the output.
#[test]
fn a_refused_key_fails_only_gs_and_the_local_copy_is_complete() {
    let t = tempfile::tempdir().expect("tempdir");
    let Some((fake, trusted)) = setup(t.path(), &["auth"]) else {
        return;
    };
    let stranger = ServiceAccount::generate(t.path(), "stranger", &fake.token_uri());
    stranger.set_email(&trusted.email);
    let src = random_source(t.path(), 9 << 20, 4);
    let disk = t.path().join("disk");
    let mut job = Job::new(t.path());
    job.source(folder_source("files", &src))
        .destination(gs_destination("gcs", "auth", &stranger.json))
        .destination(local_destination("disk", &disk));
    let cfg = job.write();
    let r = gs_run(&fake, &[], &cfg);
    r.assert_code(1);
    assert!(fake.token_refusals() >= 1, "{}", r.describe());
    let err = r.stderr_text();
    assert!(
        err.contains("invalid_grant") && err.contains("Invalid JWT Signature"),
        "the refusal is not explained:\n{}",
        r.describe()
    );
    assert!(
        r.stdout_text()
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some("disk") && l.contains(" ok ")),
        "{}",
        r.describe()
    );
    assert_no_secrets(&r, &fake, &stranger);
    assert!(fake.names("auth").is_empty(), "{:?}", fake.names("auth"));
    assert!(fake.uploads().is_empty(), "{:?}", fake.uploads());
    restore_with(
        &cfg,
        "files",
        &["--destination".as_ref(), OsStr::new("disk")],
        &t.path().join("restore"),
    )
    .assert_code(0);
    assert_same_tree(
        &src,
        &restored_root(&t.path().join("restore"), "big"),
        false,
    );
}

/// A run killed with `kill -9` after its first part reached GCS leaves an incomplete XML-API
/// multipart upload (GCS keeps its parts until it is aborted) that `list` does not show; the
/// job's next run lists the bucket's uploads under the source's prefix and aborts it.
#[test]
fn a_killed_runs_multipart_upload_is_aborted_by_the_next_run_on_gs() {
    let t = tempfile::tempdir().expect("tempdir");
    let Some((fake, sa)) = setup(t.path(), &["kill"]) else {
        return;
    };
    let src = random_source(t.path(), 24 << 20, 19);
    // Paced at 2 MiB/s: the first part is up after ~4 s, the upload would end after ~12 s.
    let mut slow = gs_destination("gcs", "kill", &sa.json);
    slow["upload_rate_limit"] = json!(2 << 20);
    let mut job = Job::new(t.path());
    job.source(folder_source("files", &src)).destination(slow);
    let cfg = job.write();
    let host = fake.host();
    let env = [("STORAGE_EMULATOR_HOST", OsStr::new(&host))];
    kill_during_upload(&cfg, &env, || {
        fake.uploads().iter().any(|(_, _, parts)| *parts >= 1)
    });
    let left = fake.uploads();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].1.starts_with("files/"), "{left:?}");
    assert!(fake.names("kill").is_empty(), "{:?}", fake.names("kill"));
    let l = gs_run(&fake, &["list"], &cfg);
    l.assert_code(0);
    assert!(!l.stdout_text().contains("files.tar"), "{}", l.describe());

    let mut job = Job::new(t.path());
    job.source(folder_source("files", &src))
        .destination(gs_destination("gcs", "kill", &sa.json));
    let r = gs_run(&fake, &["-v"], &job.write());
    r.assert_code(0);
    assert!(fake.uploads().is_empty(), "{:?}", fake.uploads());
    assert!(
        r.stderr_text()
            .contains("aborted an upload a killed run left incomplete")
            && r.stderr_text().contains(&left[0].1),
        "{}",
        r.describe()
    );
    assert_eq!(fake.names("kill").len(), 2, "{:?}", fake.names("kill"));
    assert_no_secrets(&r, &fake, &sa);
    let reqs = fake.requests();
    assert!(
        reqs.iter()
            .any(|r| r.starts_with("GET /kill?uploads&prefix=files%2F")),
        "{reqs:#?}"
    );
    assert!(fake.unexpected().is_empty(), "{:#?}", fake.unexpected());
}

/// GCS answers the second part `503`: the upload is aborted at the server (no upload left
/// open, no object), only the gs destination fails (exit 1) and the local destination in the
/// same job has its complete copy.
#[test]
fn a_failed_part_aborts_the_upload_and_fails_only_gs() {
    let t = tempfile::tempdir().expect("tempdir");
    let Some((fake, sa)) = setup(t.path(), &["err"]) else {
        return;
    };
    fake.fail_part(2);
    let src = random_source(t.path(), 17 << 20, 23);
    let disk = t.path().join("disk");
    let mut job = Job::new(t.path());
    job.source(folder_source("files", &src))
        .destination(gs_destination("gcs", "err", &sa.json))
        .destination(local_destination("disk", &disk));
    let cfg = job.write();
    let r = gs_run(&fake, &[], &cfg);
    r.assert_code(1);
    assert!(
        r.all_text().contains("ServiceUnavailable"),
        "{}",
        r.describe()
    );
    let reqs = fake.requests();
    assert!(
        reqs.iter()
            .any(|q| q.starts_with("DELETE /err/") && q.contains("uploadId=")),
        "the upload was not aborted: {reqs:#?}"
    );
    assert!(fake.uploads().is_empty(), "{:?}", fake.uploads());
    assert!(fake.names("err").is_empty(), "{:?}", fake.names("err"));
    assert_no_secrets(&r, &fake, &sa);
    restore_with(
        &cfg,
        "files",
        &["--destination".as_ref(), OsStr::new("disk")],
        &t.path().join("restore"),
    )
    .assert_code(0);
    assert_same_tree(
        &src,
        &restored_root(&t.path().join("restore"), "big"),
        false,
    );
}
