//! The summary table, the exit code and retry hints as views of the typed result.

use super::*;
use crate::cancel::Cancel;
use crate::naming::RunStamp;
use crate::outcome::{
    clock, size_description, DestinationReport, NotificationReport, Retention, RunReport,
    SourceReport,
};
use std::time::Duration;

fn source_ok() -> SourceReport {
    let mut s = SourceReport::new("www", "Web site", "folder");
    s.input_bytes = Some(10 * 1024 * 1024);
    s.stored_bytes = Some(3 * 1024 * 1024);
    s.dump = Duration::from_secs(2);
    s.object = Some("www/20240102030405/www.tar.zst.gpg".into());
    s.destinations.push(DestinationReport {
        id: "disk".into(),
        upload: Duration::from_secs(2),
        result: Ok(()),
        retention: Some(Ok(Retention {
            removed: vec!["20240101030405".into()],
            retained_good: 3,
        })),
    });
    s
}

fn report(sources: Vec<SourceReport>) -> RunReport {
    let mut r = RunReport::new(
        RunStamp::parse("20240102030405").unwrap(),
        "host1".into(),
        false,
    );
    r.sources = sources;
    r
}

#[test]
fn table_and_exit_code_are_views_of_the_typed_result() {
    let mut db = SourceReport::new("db", "Database", "mysql");
    db.failure = Some(Failure::new(
        Stage::Source,
        "mysqldump exited with status 2",
        false,
    ));
    db.destinations.push(DestinationReport::failed(
        "disk",
        db.failure.clone().unwrap(),
    ));
    let r = report(vec![source_ok(), db]);
    assert!(!r.backups_succeeded());
    assert_eq!(r.exit_code(), 1);
    let t = r.table();
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(
        lines[0],
        "SOURCE  DESTINATION  STATUS    INPUT  STORED  DURATION      RATE"
    );
    assert_eq!(
        lines[1],
        "www     disk         ok      10.0 MB  3.0 MB      2.0s  5.0 MB/s"
    );
    assert!(lines[2].starts_with("db      disk         FAILED"), "{t}");
    assert_eq!(lines[3], "db -> disk: mysqldump exited with status 2");
    assert_eq!(
        lines[4],
        "1 of 2 backups succeeded on host1 (run 20240102030405)"
    );
    assert_eq!(r.rows()[0].removed, ["20240101030405"]);
}

/// A failed `after` hook fails the source (and the exit code) but leaves its copy's row as
/// it was: stored, then the hook's own row.
#[test]
fn a_failed_hook_is_its_own_row_after_the_stored_copy() {
    let mut s = source_ok();
    s.hooks.push(Failure::new(
        Stage::Hook,
        "source 'www': after hook sources[0].hooks.after[0] (sh) exited with status 3",
        false,
    ));
    let r = report(vec![s]);
    assert!(!r.backups_succeeded());
    assert_eq!(r.exit_code(), 1);
    let rows = r.rows();
    assert_eq!(rows[0].status, summary::Status::Ok);
    assert_eq!(rows[0].stored_bytes, Some(3 * 1024 * 1024));
    assert_eq!(
        (rows[1].source.as_str(), rows[1].destination.as_str()),
        ("www", "hook")
    );
    assert!(r.table().contains(
        "www -> hook: source 'www': after hook sources[0].hooks.after[0] (sh) exited with status 3"
    ));
    assert_eq!(
        r.sources[0].error_text(),
        "source 'www': after hook sources[0].hooks.after[0] (sh) exited with status 3"
    );
}

#[test]
fn a_failed_notifier_fails_the_exit_code_but_not_the_backups() {
    let mut r = report(vec![source_ok()]);
    assert_eq!(r.exit_code(), 0);
    r.notifications.push(NotificationReport {
        label: "slack".into(),
        sent: 0,
        result: Err(Failure::new(Stage::Notify, "HTTP 500", true)),
    });
    assert!(r.backups_succeeded());
    assert_eq!(r.exit_code(), 1);
    assert!(r.table().contains("- -> notify:slack: HTTP 500"));
}

/// Issue 16.4: a job whose only source failed, with a notifier that delivered, was summed
/// up as `1 of 2 succeeded`; backups and notifiers are counted apart.
#[test]
fn notifiers_are_not_counted_as_backups() {
    let mut db = SourceReport::new("db", "Database", "mysql");
    db.failure = Some(Failure::new(Stage::Source, "mysqldump exited 2", false));
    db.destinations.push(DestinationReport::failed(
        "disk",
        db.failure.clone().unwrap(),
    ));
    let mut r = report(vec![db]);
    r.notifications.push(NotificationReport {
        label: "slack".into(),
        sent: 1,
        result: Ok(()),
    });
    let t = r.table();
    assert_eq!(
        t.lines().last(),
        Some("0 of 1 backups succeeded on host1 (run 20240102030405)"),
        "{t}"
    );
    assert!(!t.contains("notifiers failed"), "{t}");
    r.notifications.push(NotificationReport {
        label: "mail".into(),
        sent: 0,
        result: Err(Failure::new(Stage::Notify, "refused", true)),
    });
    let t = r.table();
    let tail: Vec<&str> = t.lines().rev().take(3).collect();
    assert_eq!(
        tail,
        [
            "0 of 1 backups succeeded on host1 (run 20240102030405)",
            "1 of 2 notifiers failed",
            "- -> notify:mail: refused",
        ],
        "{t}"
    );
}

#[test]
fn retention_failure_fails_the_source_and_counts_are_kept() {
    let mut s = source_ok();
    assert_eq!(s.retained_good(), Some(3));
    s.destinations[0].retention = Some(Err(Failure::new(
        Stage::Retention,
        "disk: delete x: permission denied",
        false,
    )));
    assert!(!s.succeeded());
    assert_eq!(s.error_text(), "disk: delete x: permission denied");
    assert_eq!(s.retained_good(), None);
}

#[test]
fn error_text_names_the_destination() {
    let mut s = source_ok();
    s.destinations[0].result = Err(Failure::new(Stage::Upload, "timed out", true));
    assert_eq!(s.error_text(), "disk: timed out");
}

#[test]
fn sizes_and_clock_match_the_original() {
    assert_eq!(size_description(100.0), "100.0 bytes");
    assert_eq!(size_description(12390.0), "12.1 KB");
    assert_eq!(clock(Duration::from_secs(3725)), "1:02:05");
}

/// Retry hints come from the kind the source gave its error, never from the text: a
/// missing program or path is not retryable, whatever its message says; a check that ran
/// and failed is.
#[test]
fn source_retry_hints_follow_the_kind_not_the_message() {
    use crate::source::process::run_check;
    use crate::source::{Retry, SourceError};
    use std::process::Command;

    let missing = run_check(
        "mysqldump",
        Command::new("/nonexistent/mysqldump"),
        None,
        Cancel::new(),
    )
    .unwrap_err();
    let f = Failure::from_source(Stage::Check, "source 'db'", &missing);
    assert!(!f.retryable, "{f}");
    assert!(f.message.contains("/nonexistent/mysqldump"), "{f}");

    let mut refused = Command::new("sh");
    refused.args(["-c", "echo 'Connection refused' >&2; exit 2"]);
    let e = run_check("mysqldump", refused, None, Cancel::new()).unwrap_err();
    assert!(Failure::from_source(Stage::Check, "source 'db'", &e).retryable);

    // The words of a transient failure in a permanent error change nothing.
    let e = SourceError::Unavailable {
        retry: Retry::Permanent,
        message: "/srv/www: timed out, connection refused".into(),
    };
    assert!(!Failure::from_source(Stage::Source, "source 'www'", &e).retryable);
    let e = SourceError::Io {
        context: "reading".into(),
        source: std::io::Error::from(std::io::ErrorKind::ConnectionReset),
    };
    assert!(Failure::from_source(Stage::Source, "source 'www'", &e).retryable);
}
