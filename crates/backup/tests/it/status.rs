//! `backup status`: fresh, stale, missing and future-dated copies per destination, the last
//! verify, exit codes, `--json` and `--textfile` (checked by promtool when present).

use crate::common;

use std::fs;
use std::path::Path;

use chrono::{Local, TimeDelta};
use common::*;

/// A fake good copy of `id` at `stamp` (object + sidecar).
fn plant(dest: &Path, id: &str, stamp: &str) {
    let dir = dest.join(id).join(stamp);
    fs::create_dir_all(&dir).expect("mkdir");
    fs::write(dir.join(format!("{id}.tar.zst.gpg")), b"0123456789").expect("write");
    fs::write(
        dir.join(format!("{id}.tar.zst.gpg.sha256")),
        format!("{}  {id}.tar.zst.gpg\n", "0".repeat(64)),
    )
    .expect("write sidecar");
}

fn stamp(offset: TimeDelta) -> String {
    (Local::now().naive_local() + offset)
        .format("%Y%m%d%H%M%S")
        .to_string()
}

#[test]
fn status_reports_fresh_stale_missing_and_the_last_verify() {
    let t = tempfile::tempdir().expect("tempdir");
    let src = t.path().join("data");
    fs::create_dir_all(&src).expect("mkdir");
    fs::write(src.join("f.txt"), b"hello\n").expect("write");
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    fs::create_dir_all(&a).expect("mkdir");
    fs::create_dir_all(&b).expect("mkdir");
    let mut source = folder_source("files", &src);
    source["passphrase"] = "status-test-passphrase".into();
    let mut job = Job::new(t.path());
    job.source(source)
        .destination(local_destination("a", &a))
        .destination(local_destination("b", &b))
        .set("max_age", "1h".into());
    let cfg = job.write();
    run_job(&cfg).assert_code(0);

    let s = backup(["status".as_ref(), cfg.as_os_str()]);
    s.assert_code(0);
    let text = s.stdout_text();
    assert!(text.starts_with("OK: 2 copies fresh\n"), "{text}");
    assert!(text.contains("never"), "no verify yet:\n{text}");

    verify(&cfg).assert_code(0);
    let text = backup(["status".as_ref(), cfg.as_os_str()]).stdout_text();
    let row_a: Vec<&str> = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|w| w.get(1) == Some(&"a"))
        .expect("row a");
    assert_eq!(
        (row_a[2], row_a.last().copied()),
        ("ok", Some("ok")),
        "{text}"
    );

    // b loses its copy: missing; a copy dated in the future does not stand in for it.
    fs::remove_dir_all(b.join("files")).expect("rm");
    plant(&b, "files", &stamp(TimeDelta::days(2)));
    let s = backup(["status".as_ref(), cfg.as_os_str()]);
    s.assert_code(1);
    assert!(
        s.stdout_text()
            .starts_with("CRITICAL: files has no good copy at b\n"),
        "{}",
        s.describe()
    );

    // An old copy: stale, with its age and the limit.
    plant(&b, "files", &stamp(-TimeDelta::hours(3)));
    let s = backup([
        "status".as_ref(),
        cfg.as_os_str(),
        "--json".as_ref(),
        "--textfile".as_ref(),
        t.path().join("status.prom").as_os_str(),
    ]);
    s.assert_code(1);
    let json: serde_json::Value = serde_json::from_str(&s.stdout_text()).expect("json");
    assert_eq!(json["ok"], false);
    let rows = json["rows"].as_array().expect("rows");
    assert_eq!(rows[0]["status"], "ok");
    assert_eq!(rows[0]["verify"]["ok"], true);
    assert_eq!(rows[1]["status"], "stale");
    assert_eq!(rows[1]["max_age"], "1h");
    let age = rows[1]["age_seconds"].as_i64().expect("age");
    assert!((3 * 3600..3 * 3600 + 120).contains(&age), "{age}");
    let text = backup(["status".as_ref(), cfg.as_os_str()]).stdout_text();
    assert!(
        text.starts_with("CRITICAL: files at b is 3h 0m old (max_age 1h)"),
        "{text}"
    );

    let prom = fs::read_to_string(t.path().join("status.prom")).expect("textfile");
    assert!(
        prom.contains("backup_copy_ok{backup_job=\"job\",source=\"files\",destination=\"a\"} 1\n")
            && prom.contains(
                "backup_copy_ok{backup_job=\"job\",source=\"files\",destination=\"b\"} 0\n"
            )
            && prom.contains(
                "backup_copy_verify_ok{backup_job=\"job\",source=\"files\",destination=\"a\"} 1\n"
            ),
        "{prom}"
    );
    if let Some(promtool) = which("promtool") {
        let out = std::process::Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(fs::File::open(t.path().join("status.prom")).expect("open"))
            .output()
            .expect("promtool");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
