//! The typed result of a run: what each source produced, what each destination and its
//! retention did, what each notifier did. The engine fills it; the summary table
//! (`engine::report`), the exit code and every notification are views of it, so they can
//! never disagree. It sits below the handlers so that notifiers read it without depending on
//! the engine (docs/ARCHITECTURE.md, "Layers").
//!
//! `backup verify` has its own result, [`Verification`], which notifiers read the same way.
//!
//! A failure is a [`Failure`]: the stage that failed, a message naming what failed (never a
//! secret), and whether retrying the run may help (a refused connection may; a wrong
//! passphrase will not).

use std::time::{Duration, SystemTime};

use crate::naming::RunStamp;

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
    /// Releasing what a source created (a temporary instance), or removing what a killed
    /// run left.
    Cleanup,
    /// A `before`, `after` or `on_error` hook of the job or a source (a failed `before`
    /// means the source was not run; a failed `after` never undoes a stored copy).
    Hook,
    /// `backup verify`: reading a stored copy back.
    Verify,
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
            Stage::Cleanup => "cleanup",
            Stage::Hook => "hook",
            Stage::Verify => "verify",
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
    /// Per destination, in config order (empty on a dry run). For a per-database source a
    /// destination failed when any database failed there.
    pub destinations: Vec<DestinationReport>,
    /// What a source without a payload made (EBS snapshot ids), instead of an object.
    pub made: Vec<String>,
    /// Resources the source created and could not release, each naming the resource.
    pub cleanup: Vec<Failure>,
    /// `after`/`on_error` hooks (of the source, and of the job, which every source carries)
    /// that failed: the copy stays stored, but the source counts as failed.
    pub hooks: Vec<Failure>,
    /// A per-database source (`dbname: all` or a list): each database's own outcome, in the
    /// order dumped; empty for a source that makes one object.
    pub databases: Vec<DatabaseReport>,
}

/// A database name as messages and the summary show it: control characters (a name is
/// outside input: `all` reads it from the server) escaped, so it cannot forge log lines or
/// terminal output.
pub fn printable(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_debug().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// One database of a per-database source: its object, or why it is missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseReport {
    pub name: String,
    /// The object name written.
    pub object: Option<String>,
    pub input_bytes: Option<u64>,
    /// The object's size, when it is stored somewhere.
    pub stored_bytes: Option<u64>,
    pub sha256: Option<String>,
    pub dump: Duration,
    /// The dump failed: stored nowhere.
    pub failure: Option<Failure>,
    /// Per destination id: stored, or why not.
    pub destinations: Vec<(String, Result<(), Failure>)>,
}

impl DatabaseReport {
    /// A database with nothing done yet.
    pub fn new(name: &str) -> Self {
        DatabaseReport {
            name: name.to_owned(),
            object: None,
            input_bytes: None,
            stored_bytes: None,
            sha256: None,
            dump: Duration::ZERO,
            failure: None,
            destinations: Vec::new(),
        }
    }

    /// Its failure at destination `id`: the dump's, else the upload's there.
    pub fn failure_at(&self, id: &str) -> Option<&Failure> {
        self.failure.as_ref().or_else(|| {
            self.destinations
                .iter()
                .find(|(d, _)| d == id)
                .and_then(|(_, r)| r.as_ref().err())
        })
    }
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
            made: Vec::new(),
            cleanup: Vec::new(),
            hooks: Vec::new(),
            databases: Vec::new(),
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
        out.extend(self.cleanup.iter().map(|f| (None, f)));
        out.extend(self.hooks.iter().map(|f| (None, f)));
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
    pub ended: SystemTime,
    /// `--dry-run` only: each destination's check.
    pub checks: Vec<DestinationCheck>,
    /// Sources in config order.
    pub sources: Vec<SourceReport>,
    /// Notifiers in config order (filled after the backups).
    pub notifications: Vec<NotificationReport>,
    /// The last log lines before the notifiers ran (info and above, whatever was printed).
    pub log_tail: Vec<String>,
}

impl RunReport {
    /// A report for a run starting now, with nothing done yet.
    pub fn new(stamp: RunStamp, hostname: String, dry_run: bool) -> Self {
        RunReport {
            stamp,
            hostname,
            dry_run,
            ended: SystemTime::now(),
            checks: Vec::new(),
            sources: Vec::new(),
            notifications: Vec::new(),
            log_tail: Vec::new(),
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
}

/// What `backup verify` found: the notifiers' view of it, as [`RunReport`] is of a run.
#[derive(Debug, Clone)]
pub struct Verification {
    /// Host name for messages.
    pub hostname: String,
    /// `--sample`: the share of each source's copies read, in percent (`10.0`, `2.5`);
    /// `None`: the newest copy only.
    pub sample: Option<f64>,
    /// The sources verified, in config order.
    pub sources: Vec<SourceVerification>,
}

/// One source: every copy read (or tried) at every destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceVerification {
    pub id: String,
    pub name: String,
    /// The `type` from the config.
    pub kind: String,
    pub copies: Vec<CopyCheck>,
}

/// One copy (one database of a per-database copy) read back at one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyCheck {
    /// The destination's `id`.
    pub destination: String,
    pub database: Option<String>,
    /// The copy's run stamp, when one was found.
    pub stamp: Option<RunStamp>,
    /// The object's size, when it read back.
    pub size: Option<u64>,
    /// Read back with the sha256 of its sidecar, or why not.
    pub result: Result<(), Failure>,
}

impl CopyCheck {
    /// `disk 20261207020000` (`disk 20261207020000 shop` for a database; `disk` when no copy
    /// was found).
    pub fn label(&self) -> String {
        let mut l = self.destination.clone();
        if let Some(s) = self.stamp {
            l.push_str(&format!(" {s}"));
        }
        if let Some(db) = &self.database {
            l.push_str(&format!(" {}", printable(db)));
        }
        l
    }
}

impl SourceVerification {
    /// Every copy tried read back.
    pub fn succeeded(&self) -> bool {
        self.copies.iter().all(|c| c.result.is_ok())
    }

    /// Each failure with the copy it concerns, `; `-joined (a message that already starts
    /// with the destination, about no copy in particular, is not prefixed again).
    pub fn error_text(&self) -> String {
        self.copies
            .iter()
            .filter_map(|c| c.result.as_ref().err().map(|f| (c, f)))
            .map(|(c, f)| {
                let named = f.message.starts_with(&format!("{}:", c.destination));
                if named && c.stamp.is_none() && c.database.is_none() {
                    f.message.clone()
                } else {
                    format!("{}: {}", c.label(), f.message)
                }
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// What was read: `3 copies read at disk, s3, a 10 % sample`.
    pub fn summary(&self, sample: Option<f64>) -> String {
        let mut at: Vec<&str> = Vec::new();
        for c in &self.copies {
            if !at.contains(&c.destination.as_str()) {
                at.push(&c.destination);
            }
        }
        let n = self.copies.len();
        format!(
            "{n} {} read at {}{}",
            if n == 1 { "copy" } else { "copies" },
            at.join(", "),
            sample.map_or(String::new(), |p| format!(", a {p} % sample"))
        )
    }
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

    #[test]
    fn a_verify_names_each_failed_copy_once() {
        let check = |destination: &str, stamp: Option<&str>, result| CopyCheck {
            destination: destination.into(),
            database: None,
            stamp: stamp.and_then(RunStamp::parse),
            size: None,
            result,
        };
        let failed = |m: &str| Err(Failure::new(Stage::Verify, m, false));
        let s = SourceVerification {
            id: "www".into(),
            name: "Web".into(),
            kind: "folder".into(),
            copies: vec![
                check("disk", Some("20261207020000"), Ok(())),
                check("disk", Some("20261201020000"), failed("www/x: corrupted")),
                check("s3", None, failed("s3: connection refused")),
            ],
        };
        assert!(!s.succeeded());
        assert_eq!(
            s.error_text(),
            "disk 20261201020000: www/x: corrupted; s3: connection refused"
        );
        assert_eq!(
            s.summary(Some(2.5)),
            "3 copies read at disk, s3, a 2.5 % sample"
        );
    }

    #[test]
    fn printable_escapes_control_characters_only() {
        assert_eq!(super::printable("shop.eu Grüße"), "shop.eu Grüße");
        assert_eq!(super::printable("a\nb\u{1b}[31m"), "a\\nb\\u{1b}[31m");
    }
}
