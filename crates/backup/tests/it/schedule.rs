//! `backup schedule`: the units it prints or installs are accepted by `systemd-analyze
//! verify` (offline), name the job file as the instance, and carry the shipped hardening;
//! `--cron` prints a line cron runs.

use crate::common;

use std::fs;
use std::process::Command;

use common::*;

#[test]
fn installed_units_pass_systemd_analyze_verify_and_run_the_job_file() {
    if !require_tools(
        "schedule_units_verify",
        &["systemd-analyze", "systemd-escape"],
    ) {
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    // A job file whose path needs escaping (a space and a dash).
    let dir = t.path().join("jobs dir");
    fs::create_dir_all(&dir).expect("mkdir");
    let src = t.path().join("data");
    fs::create_dir_all(&src).expect("mkdir");
    let dest = t.path().join("dest");
    fs::create_dir_all(&dest).expect("mkdir");
    let mut job = Job::new(&dir);
    job.source(folder_source("files", &src))
        .destination(local_destination("disk", &dest));
    let cfg = job.write_as("night-ly.json");
    let units = t.path().join("units");
    fs::create_dir_all(&units).expect("mkdir");

    let r = backup([
        "schedule".as_ref(),
        cfg.as_os_str(),
        "--on".as_ref(),
        "Mon..Fri *-*-* 02:30".as_ref(),
        "--user".as_ref(),
        "root".as_ref(),
        "--install".as_ref(),
        units.as_os_str(),
    ]);
    r.assert_code(0);
    let escaped = Command::new("systemd-escape")
        .arg("--path")
        .arg(fs::canonicalize(&cfg).expect("canonical"))
        .output()
        .expect("systemd-escape");
    let instance = String::from_utf8_lossy(&escaped.stdout).trim().to_owned();
    let timer = units.join(format!("backup-job@{instance}.timer"));
    let template = units.join("backup-job@.service");
    assert!(
        timer.is_file(),
        "{}\n{:?}",
        r.describe(),
        files_under(&units)
    );
    let timer_text = fs::read_to_string(&timer).expect("timer");
    assert!(
        timer_text.contains("OnCalendar=Mon..Fri *-*-* 02:30\n"),
        "{timer_text}"
    );
    assert!(
        timer_text.contains("Persistent=true") && timer_text.contains("RandomizedDelaySec=3600")
    );
    let service = fs::read_to_string(&template).expect("service");
    let exe = fs::canonicalize(bin()).expect("bin");
    assert!(
        service.contains(&format!(
            "ExecStart={} run --lock-wait 600 %f\n",
            exe.display()
        )),
        "{service}"
    );
    assert!(service.contains("NoNewPrivileges=yes") && service.contains("ProtectSystem=full"));

    // Offline verification of both, with the instance the timer starts.
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&timer)
        .arg(&template)
        .output()
        .expect("systemd-analyze");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify:\n{said}"
    );

    // What the instance expands to is the job file: the unit's command runs it.
    let expanded = format!(
        "/{}",
        instance
            .replace('-', "/")
            .replace("\\x20", " ")
            .replace("\\x2d", "-")
    );
    assert_eq!(expanded, fs::canonicalize(&cfg).unwrap().to_string_lossy());
    backup(["run", "--lock-wait", "600", expanded.as_str()]).assert_code(0);
    assert_eq!(objects(&dest, "files").len(), 1, "the job ran");

    // Printing (no --install) shows the same units and how to enable them.
    let printed = backup([
        "schedule".as_ref(),
        cfg.as_os_str(),
        "--on".as_ref(),
        "daily".as_ref(),
    ]);
    printed.assert_code(0);
    let text = printed.stdout_text();
    assert!(
        text.contains("# /etc/systemd/system/backup-job@.service"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "systemctl enable --now 'backup-job@{instance}.timer'"
        )),
        "{text}"
    );
}

#[test]
fn cron_lines_and_bad_schedules() {
    let t = tempfile::tempdir().expect("tempdir");
    let mut job = Job::new(t.path());
    job.source(folder_source("files", t.path()))
        .destination(local_destination("disk", t.path()));
    let cfg = job.write();
    let r = backup([
        "schedule".as_ref(),
        cfg.as_os_str(),
        "--on".as_ref(),
        "*-*-* 04:15".as_ref(),
        "--cron".as_ref(),
    ]);
    r.assert_code(0);
    let line = r
        .stdout_text()
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned();
    assert!(line.starts_with("15 4 * * * backups '"), "{line}");
    assert!(
        line.ends_with(&format!(
            "run --lock-wait 600 '{}'",
            fs::canonicalize(&cfg).unwrap().display()
        )),
        "{line}"
    );

    let bad = backup([
        "schedule".as_ref(),
        cfg.as_os_str(),
        "--on".as_ref(),
        "daily\nExecStartPre=/bin/true".as_ref(),
    ]);
    bad.assert_code(2);
    assert!(
        bad.stderr_text().contains("not a schedule"),
        "{}",
        bad.describe()
    );
    let missing = backup(["schedule", "/nonexistent/job.json", "--on", "daily"]);
    missing.assert_code(2);
    assert!(
        missing.stderr_text().contains("/nonexistent/job.json"),
        "{}",
        missing.describe()
    );
}
