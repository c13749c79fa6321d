//! The typed result of a run: what each source produced, what each destination and its
//! retention did, what each notifier did. The summary table, the exit code and every
//! notification are views of it, so they can never disagree.
//!
//! A failure is a [`Failure`]: the stage that failed, a message naming what failed (never a
//! secret), and whether retrying the run may help (a refused connection may; a wrong
//! passphrase will not).

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use crate::destination::DestinationError;
use crate::naming::RunStamp;
use crate::pipeline::PipelineError;
use crate::source::SourceError;
use crate::table;

/// Where in a run something failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The entry could not be built (unsupported type, missing key file).
    Setup,
    /// `--dry-run`: the check of a source or destination.
    Check,
    /// Reading, compressing or encrypting the source.
    Source,
    /// Writing or committing the object at a destination.
    Upload,
    /// Removing old copies after a successful upload.
    Retention,
    /// Sending a notification.
    Notify,
}

impl Stage {
    /// A short word for logs and documents.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Setup => "setup",
            Stage::Check => "check",
            Stage::Source => "source",
            Stage::Upload => "upload",
            Stage::Retention => "retention",
            Stage::Notify => "notify",
        }
    }
}

/// Something that failed, typed enough for a notifier or a retry policy to act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    pub stage: Stage,
    /// What failed and where; never holds a secret.
    pub message: String,
    /// Whether running again unchanged may succeed (network, timeouts, busy servers).
    pub retryable: bool,
}

impl Failure {
    pub fn new(stage: Stage, message: impl Into<String>, retryable: bool) -> Self {
        Failure {
            stage,
            message: message.into(),
            retryable,
        }
    }

    /// A source or data-path failure; `context` prefixes the message (`source 'www'`).
    pub fn from_pipeline(context: &str, e: &PipelineError) -> Self {
        let retryable = match e {
            PipelineError::Source(s) => source_retryable(s),
            PipelineError::Compress(io) => io_retryable(io),
            PipelineError::Crypto(_) | PipelineError::Plan(_) => false,
        };
        Failure::new(Stage::Source, format!("{context}: {e}"), retryable)
    }

    /// A source that could not be opened or checked.
    pub fn from_source(stage: Stage, context: &str, e: &SourceError) -> Self {
        Failure::new(stage, format!("{context}: {e}"), source_retryable(e))
    }

    /// A destination operation that failed at `stage`.
    pub fn from_destination(stage: Stage, e: &DestinationError) -> Self {
        let retryable = match e {
            DestinationError::Io { source, .. } => io_retryable(source),
            DestinationError::Other { .. } => false,
            DestinationError::Store { kind, .. } => {
                *kind == crate::destination::ErrorKind::Transient
            }
        };
        Failure::new(stage, e.to_string(), retryable)
    }
}

fn source_retryable(e: &SourceError) -> bool {
    match e {
        // Cannot connect, server not up: may work next time.
        SourceError::Unavailable(_) => true,
        SourceError::Failed(_) => false,
        SourceError::Io { source, .. } => io_retryable(source),
    }
}

/// Transient I/O conditions: the network, timeouts, a busy or full device that may drain.
pub fn io_retryable(e: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(
        e.kind(),
        K::TimedOut
            | K::Interrupted
            | K::WouldBlock
            | K::ConnectionRefused
            | K::ConnectionReset
            | K::ConnectionAborted
            | K::NotConnected
            | K::BrokenPipe
            | K::AddrNotAvailable
            | K::StorageFull
            | K::ResourceBusy
            | K::HostUnreachable
            | K::NetworkUnreachable
            | K::NetworkDown
    )
}

/// What retention did at one destination after this run's copy was stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retention {
    /// Run timestamps of the copies removed.
    pub removed: Vec<String>,
    /// Good (restorable) copies left at the destination, this run's included.
    pub retained_good: usize,
}

/// One source at one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationReport {
    /// The destination's `id`.
    pub id: String,
    /// From the first byte written until the object and its sidecar were committed (the
    /// stream feeds every destination at once, so this overlaps the dump).
    pub upload: Duration,
    /// Stored, or why not.
    pub result: Result<(), Failure>,
    /// Retention's outcome; `None` when it did not run (the upload failed, dry run).
    pub retention: Option<Result<Retention, Failure>>,
}

impl DestinationReport {
    /// A destination that failed before anything was written.
    pub fn failed(id: &str, failure: Failure) -> Self {
        DestinationReport {
            id: id.to_owned(),
            upload: Duration::ZERO,
            result: Err(failure),
            retention: None,
        }
    }

    /// The first failure here: the upload's, else retention's.
    pub fn failure(&self) -> Option<&Failure> {
        match (&self.result, &self.retention) {
            (Err(f), _) => Some(f),
            (Ok(()), Some(Err(f))) => Some(f),
            _ => None,
        }
    }

    /// Good copies retention left (this run's included), when it ran.
    pub fn retained_good(&self) -> Option<usize> {
        match &self.retention {
            Some(Ok(r)) => Some(r.retained_good),
            _ => None,
        }
    }
}

/// One source: what it produced and where it went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceReport {
    pub id: String,
    pub name: String,
    /// The `type` from the config.
    pub kind: String,
    pub started: SystemTime,
    pub ended: SystemTime,
    /// Reading, compressing and encrypting the whole stream (overlaps the uploads).
    pub dump: Duration,
    /// Bytes read from the source.
    pub input_bytes: Option<u64>,
    /// Bytes stored (the object's size).
    pub stored_bytes: Option<u64>,
    /// sha256 of the stored object, as in its sidecar.
    pub sha256: Option<String>,
    /// The object name written.
    pub object: Option<String>,
    /// The source itself failed (nothing stored anywhere), or its dry-run check failed.
    pub failure: Option<Failure>,
    /// Per destination, in config order (empty on a dry run).
    pub destinations: Vec<DestinationReport>,
}

impl SourceReport {
    /// A source report with nothing done yet.
    pub fn new(id: &str, name: &str, kind: &str) -> Self {
        let now = SystemTime::now();
        SourceReport {
            id: id.to_owned(),
            name: name.to_owned(),
            kind: kind.to_owned(),
            started: now,
            ended: now,
            dump: Duration::ZERO,
            input_bytes: None,
            stored_bytes: None,
            sha256: None,
            object: None,
            failure: None,
            destinations: Vec::new(),
        }
    }

    /// Every failure of this source: its own, then each destination's.
    pub fn failures(&self) -> Vec<(Option<&str>, &Failure)> {
        let mut out: Vec<(Option<&str>, &Failure)> = Vec::new();
        if let Some(f) = &self.failure {
            out.push((None, f));
        }
        for d in &self.destinations {
            if let Some(f) = d.failure() {
                out.push((Some(d.id.as_str()), f));
            }
        }
        out
    }

    /// Stored at every destination and retention applied everywhere.
    pub fn succeeded(&self) -> bool {
        self.failures().is_empty()
    }

    /// The error text of a failure message: each failure, `; `-joined, with the destination
    /// it happened at.
    pub fn error_text(&self) -> String {
        self.failures()
            .iter()
            .map(|(d, f)| match d {
                Some(d) if !f.message.starts_with(&format!("{d}:")) => {
                    format!("{d}: {}", f.message)
                }
                _ => f.message.clone(),
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Whether retrying may help: every failure is retryable.
    pub fn retryable(&self) -> bool {
        let f = self.failures();
        !f.is_empty() && f.iter().all(|(_, f)| f.retryable)
    }

    /// The longest upload among the destinations that stored the copy.
    pub fn upload(&self) -> Duration {
        self.destinations
            .iter()
            .filter(|d| d.result.is_ok())
            .map(|d| d.upload)
            .max()
            .unwrap_or_default()
    }

    /// Good copies kept, the most at any destination (the original reported one
    /// destination's count; several destinations hold the same copies).
    pub fn retained_good(&self) -> Option<usize> {
        self.destinations
            .iter()
            .filter_map(DestinationReport::retained_good)
            .max()
    }
}

/// A destination checked on `--dry-run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationCheck {
    pub id: String,
    pub result: Result<(), Failure>,
}

/// What one notifier did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationReport {
    /// The notifier's `id`, else its `type`.
    pub label: String,
    /// Messages (requests, mails, files) it delivered.
    pub sent: usize,
    /// The first failure; the notifier still tried its other messages.
    pub result: Result<(), Failure>,
}

/// Everything a run did.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The one timestamp of this run (the folder name of its objects).
    pub stamp: RunStamp,
    /// Host name for messages.
    pub hostname: String,
    pub dry_run: bool,
    pub started: SystemTime,
    pub ended: SystemTime,
    /// `--dry-run` only: each destination's check.
    pub checks: Vec<DestinationCheck>,
    /// Sources in config order.
    pub sources: Vec<SourceReport>,
    /// Notifiers in config order (filled after the backups).
    pub notifications: Vec<NotificationReport>,
}

/// Outcome of one summary row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Stored (and retention applied), or a notification sent.
    Ok,
    /// `--dry-run`: reachable and usable.
    Checked,
    /// Failed; the message says what and where.
    Failed(String),
}

impl Status {
    /// Whether the row counts as success.
    pub fn is_ok(&self) -> bool {
        !matches!(self, Status::Failed(_))
    }

    /// The word shown in the table.
    pub fn word(&self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Checked => "checked",
            Status::Failed(_) => "FAILED",
        }
    }

    fn of(result: &Result<(), Failure>, ok: Status) -> Status {
        match result {
            Ok(()) => ok,
            Err(f) => Status::Failed(f.message.clone()),
        }
    }
}

/// One line of the summary table: a source at a destination (or a source, destination or
/// notification on its own, shown as `-` in the other column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Source id, or `-`.
    pub source: String,
    /// Destination id, `notify:<label>`, or `-`.
    pub destination: String,
    pub status: Status,
    /// The object name written.
    pub object: Option<String>,
    /// Bytes read from the source.
    pub input_bytes: Option<u64>,
    /// Bytes stored (the object's size).
    pub stored_bytes: Option<u64>,
    /// Time spent on the source (shared by its destinations: one stream feeds them all).
    pub duration: Duration,
    /// Copies removed by retention.
    pub removed: Vec<String>,
}

impl Row {
    /// A row with only its place and status.
    pub fn new(source: &str, destination: &str, status: Status) -> Self {
        Row {
            source: source.to_owned(),
            destination: destination.to_owned(),
            status,
            object: None,
            input_bytes: None,
            stored_bytes: None,
            duration: Duration::ZERO,
            removed: Vec::new(),
        }
    }
}

impl RunReport {
    /// A report for a run starting now, with nothing done yet.
    pub fn new(stamp: RunStamp, hostname: String, dry_run: bool) -> Self {
        let now = SystemTime::now();
        RunReport {
            stamp,
            hostname,
            dry_run,
            started: now,
            ended: now,
            checks: Vec::new(),
            sources: Vec::new(),
            notifications: Vec::new(),
        }
    }

    /// Every source stored everywhere (or checked on a dry run) and every check passed;
    /// notifiers do not count here (see [`RunReport::exit_code`]).
    pub fn backups_succeeded(&self) -> bool {
        self.checks.iter().all(|c| c.result.is_ok())
            && self.sources.iter().all(SourceReport::succeeded)
    }

    /// Every notifier delivered what it had to.
    pub fn notifications_succeeded(&self) -> bool {
        self.notifications.iter().all(|n| n.result.is_ok())
    }

    /// Everything succeeded: backups and notifications.
    pub fn success(&self) -> bool {
        self.backups_succeeded() && self.notifications_succeeded()
    }

    /// 0 when everything succeeded, 1 when a backup or a notifier failed (2, bad usage or
    /// config, is decided before a run starts).
    pub fn exit_code(&self) -> i32 {
        i32::from(!self.success())
    }

    /// The summary as rows: checks, then per source one row per destination (or one row
    /// for the source alone), then one per notifier.
    pub fn rows(&self) -> Vec<Row> {
        let mut rows = Vec::new();
        for c in &self.checks {
            rows.push(Row::new("-", &c.id, Status::of(&c.result, Status::Checked)));
        }
        for s in &self.sources {
            if self.dry_run || s.destinations.is_empty() {
                let status = match &s.failure {
                    Some(f) => Status::Failed(f.message.clone()),
                    None if self.dry_run => Status::Checked,
                    None => Status::Failed(format!("source '{}': no destination", s.id)),
                };
                rows.push(Row::new(&s.id, "-", status));
                continue;
            }
            for d in &s.destinations {
                let status = match (&s.failure, d.failure()) {
                    (_, Some(f)) => Status::Failed(f.message.clone()),
                    (Some(f), None) => Status::Failed(f.message.clone()),
                    (None, None) => Status::Ok,
                };
                let stored = s.failure.is_none() && d.result.is_ok();
                let mut row = Row::new(&s.id, &d.id, status);
                if stored || s.input_bytes.is_some() {
                    row.object.clone_from(&s.object);
                    row.input_bytes = s.input_bytes;
                    row.stored_bytes = s.stored_bytes;
                    row.duration = s.dump;
                }
                if let Some(Ok(r)) = &d.retention {
                    row.removed.clone_from(&r.removed);
                }
                rows.push(row);
            }
        }
        for n in &self.notifications {
            rows.push(Row::new(
                "-",
                &format!("notify:{}", n.label),
                Status::of(&n.result, Status::Ok),
            ));
        }
        rows
    }

    /// The summary table, then one line per failure with its full message.
    pub fn table(&self) -> String {
        summary_table(&self.rows(), self.dry_run, &self.hostname, self.stamp)
    }
}

/// Renders rows as the run summary (see [`RunReport::table`]).
pub fn summary_table(rows: &[Row], dry_run: bool, hostname: &str, stamp: RunStamp) -> String {
    let header = [
        "SOURCE",
        "DESTINATION",
        "STATUS",
        "INPUT",
        "STORED",
        "DURATION",
        "RATE",
    ];
    let mut lines: Vec<[String; 7]> = vec![header.map(str::to_owned)];
    for r in rows {
        let rate = match (r.input_bytes, r.duration.as_secs_f64()) {
            (Some(b), secs) if secs > 0.0 && b > 0 => {
                format!("{}/s", size_description(b as f64 / secs))
            }
            _ => "-".to_owned(),
        };
        let dur = if r.duration.is_zero() {
            "-".to_owned()
        } else {
            format!("{:.1}s", r.duration.as_secs_f64())
        };
        lines.push([
            r.source.clone(),
            r.destination.clone(),
            r.status.word().to_owned(),
            r.input_bytes
                .map_or("-".into(), |b| size_description(b as f64)),
            r.stored_bytes
                .map_or("-".into(), |b| size_description(b as f64)),
            dur,
            rate,
        ]);
    }
    // Numbers right-aligned, words left-aligned.
    let mut out = table::render(&lines, &[3, 4, 5, 6]);
    for r in rows {
        if let Status::Failed(m) = &r.status {
            let _ = writeln!(out, "{} -> {}: {m}", r.source, r.destination);
        }
    }
    let ok = rows.iter().filter(|r| r.status.is_ok()).count();
    let _ = writeln!(
        out,
        "{}{} of {} succeeded on {} (run {})",
        if dry_run { "dry run: " } else { "" },
        ok,
        rows.len(),
        hostname,
        stamp
    );
    out
}

/// The original's human size (`getSizeDescription`): `12.1 KB`, 1024-based.
pub fn size_description(n: f64) -> String {
    let mut n = n;
    for unit in ["bytes", "KB", "MB", "GB", "TB"] {
        if n < 1024.0 {
            return format!("{n:.1} {unit}");
        }
        n /= 1024.0;
    }
    format!("{:.1} PB", n)
}

/// `H:MM:SS`, as the original's Slack message prints durations.
pub fn clock(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(lines[4], "1 of 2 succeeded on host1 (run 20240102030405)");
        assert_eq!(r.rows()[0].removed, ["20240101030405"]);
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
        assert!(!s.retryable());
        assert_eq!(s.error_text(), "disk: delete x: permission denied");
        assert_eq!(s.retained_good(), None);
    }

    #[test]
    fn retryable_only_when_every_failure_is() {
        let mut s = source_ok();
        s.destinations[0].result = Err(Failure::new(Stage::Upload, "timed out", true));
        assert!(s.retryable());
        assert_eq!(s.error_text(), "disk: timed out");
        s.failure = Some(Failure::new(Stage::Source, "bad passphrase", false));
        assert!(!s.retryable());
    }

    #[test]
    fn sizes_and_clock_match_the_original() {
        assert_eq!(size_description(100.0), "100.0 bytes");
        assert_eq!(size_description(12390.0), "12.1 KB");
        assert_eq!(clock(Duration::from_secs(3725)), "1:02:05");
    }
}
