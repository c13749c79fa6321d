//! Retention and restore against stamps that lie: copies dated in the future, copies missing
//! their sidecar, and the DST fall-back hour (`TZ=Europe/Berlin`, the clock faked with
//! libfaketime). This run's copy always survives its own retention; future copies are named.

use crate::common;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{Local, TimeDelta};
use common::*;

fn stamp(offset: TimeDelta) -> String {
    (Local::now().naive_local() + offset)
        .format("%Y%m%d%H%M%S")
        .to_string()
}

/// A fake copy of source `id` at `stamp` (with or without its sidecar).
fn plant(dest: &Path, id: &str, stamp: &str, sidecar: bool) {
    let dir = dest.join(id).join(stamp);
    fs::create_dir_all(&dir).expect("mkdir");
    let object = dir.join(format!("{id}.tar.zst.gpg"));
    fs::write(&object, b"not really a backup").expect("write");
    if sidecar {
        fs::write(
            dir.join(format!("{id}.tar.zst.gpg.sha256")),
            format!("{}  {id}.tar.zst.gpg\n", "0".repeat(64)),
        )
        .expect("write sidecar");
    }
}

fn stamps(dest: &Path, id: &str) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dest.join(id))
        .expect("read dest")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn job_with_retention(t: &Path, copies: u32) -> (std::path::PathBuf, std::path::PathBuf) {
    let src = t.join("src/data");
    fs::create_dir_all(&src).expect("mkdir");
    fs::write(src.join("file.txt"), b"content\n").expect("write");
    let dest = t.join("dest");
    fs::create_dir_all(&dest).expect("mkdir");
    let mut d = local_destination("disk", &dest);
    d["retention_copies"] = copies.into();
    let mut job = Job::new(t);
    job.source(folder_source("files", &src)).destination(d);
    (job.write(), dest)
}

#[test]
fn future_dated_and_sidecarless_copies_cannot_eat_this_runs_copy() {
    let t = tempfile::tempdir().expect("tempdir");
    let (cfg, dest) = job_with_retention(t.path(), 2);
    let f1 = stamp(TimeDelta::days(2));
    let f2 = stamp(TimeDelta::days(3));
    let no_sidecar = stamp(-TimeDelta::days(1));
    let older = stamp(-TimeDelta::days(2));
    let oldest = stamp(-TimeDelta::days(3));
    for s in [&f1, &f2, &older, &oldest] {
        plant(&dest, "files", s, true);
    }
    plant(&dest, "files", &no_sidecar, false);
    let planted = [&f1, &f2, &no_sidecar, &older, &oldest];

    let r = run_job(&cfg);
    r.assert_code(0);
    let now: Vec<String> = stamps(&dest, "files")
        .into_iter()
        .filter(|s| !planted.contains(&s))
        .collect();
    assert_eq!(
        now.len(),
        1,
        "this run's copy is missing: {now:?}\n{}",
        r.describe()
    );
    let this_run = &now[0];
    assert!(
        dest.join(format!("files/{this_run}/files.tar.zst.gpg.sha256"))
            .exists(),
        "this run's copy lost its sidecar"
    );
    // Kept: this run's copy + the newest other good one (and the sidecar-less copy newer than
    // it); the future ones are left alone and named; the oldest goes.
    let mut expected = vec![
        f1.clone(),
        f2.clone(),
        no_sidecar.clone(),
        older.clone(),
        this_run.clone(),
    ];
    expected.sort();
    assert_eq!(stamps(&dest, "files"), expected, "{}", r.describe());
    for f in [&f1, &f2] {
        assert!(
            r.stderr_text()
                .contains(&format!("copy files/{f} is dated in the future")),
            "run does not warn about {f}\n{}",
            r.describe()
        );
    }
    // A second run keeps its own copy too (the first run's copy is now "the other one").
    let r2 = run_job(&cfg);
    r2.assert_code(0);
    assert!(stamps(&dest, "files").len() >= 4, "{}", r2.describe());

    let r = list(&cfg);
    r.assert_code(0);
    for f in [&f1, &f2] {
        assert!(
            r.stderr_text().contains(&format!(
                "files/{f}/files.tar.zst.gpg is dated in the future"
            )),
            "list does not warn about {f}\n{}",
            r.describe()
        );
    }
    // Restore without --at passes over the future copies, says so, and restores a real one.
    let target = t.path().join("restored");
    let r = restore_to(&cfg, "files", &target);
    r.assert_code(0);
    assert!(
        r.stderr_text().contains("dated in the future; passed over"),
        "{}",
        r.describe()
    );
    assert_eq!(
        fs::read(target.join("data/file.txt")).expect("restored"),
        b"content\n"
    );
}

/// 2026-10-25 01:10:00 UTC = 02:10 CET, the second 02:10 of the Berlin fall-back night.
const FALL_BACK_SECOND_0210: u64 = 1_792_890_600;

#[test]
fn dst_fall_back_hour_keeps_this_runs_copy() {
    if !require_tools("dst_fall_back_hour_keeps_this_runs_copy", &["faketime"]) {
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    let (cfg, dest) = job_with_retention(t.path(), 1);
    // Copies made in the first pass through 02:00-03:00 (CEST), stamped later on the wall
    // clock than this run's copy will be.
    for s in ["20261025023000", "20261025024500"] {
        plant(&dest, "files", s, true);
    }
    let real = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let offset = FALL_BACK_SECOND_0210 as i64 - real as i64;
    let child = Command::new("faketime")
        .arg("-f")
        .arg(format!("{offset:+}"))
        .arg(bin())
        .arg(&cfg)
        .env("TZ", "Europe/Berlin")
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn faketime backup");
    let out = wait_with_deadline(child, Duration::from_secs(120), "backup under faketime");
    let r = Run {
        status: out.status,
        stdout: out.stdout,
        stderr: out.stderr,
    };
    r.assert_code(0);
    let left = stamps(&dest, "files");
    assert_eq!(
        left.len(),
        1,
        "retention_copies: 1 keeps exactly one: {left:?}\n{}",
        r.describe()
    );
    assert!(
        left[0].starts_with("2026102502"),
        "the faked clock was not used: {left:?}"
    );
    assert!(
        !["20261025023000", "20261025024500"].contains(&left[0].as_str()),
        "this run's copy was deleted, a copy of the first 02:xx kept: {left:?}"
    );
    // And it is a real, verifiable copy.
    verify(&cfg).assert_code(0);
}

/// Calendar retention, in local time (`TZ=Europe/Berlin`): `backup prune --dry-run` says what
/// would go and which rule keeps the rest, `backup prune` deletes exactly that. The DST
/// fall-back hour's two readings of 02:xx on 2024-10-27 share one hourly bucket.
#[test]
fn prune_applies_calendar_rules_in_local_time_across_the_dst_change() {
    let t = tempfile::tempdir().expect("tempdir");
    let (_, dest) = job_with_retention(t.path(), 0);
    let keep = [
        "20241027033000",
        "20241027024500",
        "20241027013000",
        "20241026220000",
        "20240930120000",
    ];
    let gone = [
        "20241027023000",
        "20241026080000",
        "20241020120000",
        "20241001120000",
    ];
    for s in keep.iter().chain(&gone) {
        plant(&dest, "files", s, true);
    }
    let mut d = local_destination("disk", &dest);
    d["keep_hourly"] = 3.into();
    d["keep_daily"] = 2.into();
    d["keep_monthly"] = 2.into();
    let mut job = Job::new(t.path());
    job.source(folder_source("files", &t.path().join("src/data")))
        .destination(d);
    let cfg = job.write_as("calendar.json");
    let berlin = [("TZ", std::ffi::OsStr::new("Europe/Berlin"))];

    let dry = backup_with(
        ["prune".as_ref(), "--dry-run".as_ref(), cfg.as_os_str()],
        &berlin,
        None,
    );
    dry.assert_code(0);
    let out = dry.stdout_text();
    let line = |stamp: &str| {
        out.lines()
            .find(|l| l.contains(stamp))
            .unwrap_or_else(|| panic!("no row for {stamp} in:\n{out}"))
            .to_owned()
    };
    assert!(
        line("20241027033000").contains("keep_hourly, keep_daily, keep_monthly"),
        "{out}"
    );
    assert!(line("20241027024500").contains("keep_hourly"), "{out}");
    assert!(line("20241026220000").contains("keep_daily"), "{out}");
    assert!(line("20240930120000").contains("keep_monthly"), "{out}");
    for s in gone {
        assert!(line(s).contains("would delete"), "{s}:\n{out}");
    }
    assert_eq!(
        stamps(&dest, "files").len(),
        keep.len() + gone.len(),
        "a dry run deletes nothing"
    );

    let real = backup_with(["prune".as_ref(), cfg.as_os_str()], &berlin, None);
    real.assert_code(0);
    let mut want: Vec<String> = keep.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(stamps(&dest, "files"), want, "{}", real.describe());
    assert_eq!(real.stdout_text().matches("deleted").count(), gone.len());
}

#[test]
fn a_bad_keep_within_is_a_config_error_naming_the_key() {
    let t = tempfile::tempdir().expect("tempdir");
    let dest = t.path().join("dest");
    let mut d = local_destination("disk", &dest);
    d["keep_within"] = "2 weeks".into();
    let mut job = Job::new(t.path());
    job.source(folder_source("files", t.path())).destination(d);
    let cfg = job.write();
    let r = backup(["prune".as_ref(), "-n".as_ref(), cfg.as_os_str()]);
    r.assert_code(2);
    let err = r.stderr_text();
    assert!(
        err.contains("destinations[0].keep_within") && err.contains("\"2 weeks\""),
        "{err}"
    );
}
