//! The run summary: the typed result flattened into table rows (one per source and
//! destination, per destination check, per notifier), rendered as an aligned table.

use std::fmt::Write as _;
use std::time::Duration;

use crate::naming::RunStamp;
use crate::outcome::{size_description, Failure, RunReport};
use crate::table;

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
    /// A notifier's row: counted on its own line, never as a backup.
    pub notifier: bool,
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
            notifier: false,
        }
    }

    /// The row of notifier `label`.
    pub fn notification(label: &str, status: Status) -> Self {
        Row {
            notifier: true,
            ..Row::new("-", &format!("notify:{label}"), status)
        }
    }
}

impl RunReport {
    /// The summary as rows: checks, then per source one row per destination (or one row
    /// for the source alone), then one per notifier.
    pub fn rows(&self) -> Vec<Row> {
        let mut rows = Vec::new();
        for c in &self.checks {
            rows.push(Row::new("-", &c.id, Status::of(&c.result, Status::Checked)));
        }
        for s in &self.sources {
            for f in &s.cleanup {
                rows.push(Row::new(
                    &s.id,
                    "cleanup",
                    Status::Failed(f.message.clone()),
                ));
            }
            rows.extend(self.source_rows(s));
            // After the copy's rows: a failed `after` hook never un-stores the copy.
            for f in &s.hooks {
                rows.push(Row::new(&s.id, "hook", Status::Failed(f.message.clone())));
            }
        }
        for n in &self.notifications {
            rows.push(Row::notification(
                &n.label,
                Status::of(&n.result, Status::Ok),
            ));
        }
        rows
    }

    /// The rows of source `s`'s copy: one per destination (per database and destination
    /// for a per-database source), or one for the source alone.
    fn source_rows(&self, s: &crate::outcome::SourceReport) -> Vec<Row> {
        if self.dry_run || s.destinations.is_empty() {
            let status = match &s.failure {
                Some(f) => Status::Failed(f.message.clone()),
                None if self.dry_run => Status::Checked,
                // A source without a payload: what it made is its result.
                None if !s.made.is_empty() => Status::Ok,
                None => Status::Failed(format!("source '{}': no destination", s.id)),
            };
            let mut row = Row::new(&s.id, "-", status);
            if !s.made.is_empty() {
                row.object = Some(s.made.join(" "));
            }
            return vec![row];
        }
        if !s.databases.is_empty() {
            return database_rows(s);
        }
        let mut rows = Vec::new();
        for d in &s.destinations {
            let status = match (&s.failure, d.failure()) {
                (_, Some(f)) => Status::Failed(f.message.clone()),
                (Some(f), None) => Status::Failed(f.message.clone()),
                (None, None) => Status::Ok,
            };
            let stored = s.failure.is_none() && d.result.is_ok();
            let mut row = Row::new(&s.id, &d.id, status);
            if s.input_bytes.is_some() {
                row.object.clone_from(&s.object);
                row.input_bytes = s.input_bytes;
                // What was read, and that nothing of a failed copy was kept here.
                row.stored_bytes = if stored { s.stored_bytes } else { Some(0) };
                row.duration = s.dump;
            }
            if let Some(Ok(r)) = &d.retention {
                row.removed.clone_from(&r.removed);
            }
            rows.push(row);
        }
        rows
    }

    /// The summary table, then one line per failure with its full message.
    pub fn table(&self) -> String {
        summary_table(&self.rows(), self.dry_run, &self.hostname, self.stamp)
    }
}

/// A per-database source: a row per database and destination, named `{id}:{database}`;
/// retention (run once for the source) shows on its last database's rows.
fn database_rows(s: &crate::outcome::SourceReport) -> Vec<Row> {
    let mut rows = Vec::new();
    let last = s.databases.len().saturating_sub(1);
    for (i, db) in s.databases.iter().enumerate() {
        let label = format!("{}:{}", s.id, crate::outcome::printable(&db.name));
        for d in &s.destinations {
            let failure = db.failure_at(&d.id).or(match (i == last, &d.retention) {
                (true, Some(Err(f))) => Some(f),
                _ => None,
            });
            let status = match failure {
                Some(f) => Status::Failed(f.message.clone()),
                None => Status::Ok,
            };
            let mut row = Row::new(&label, &d.id, status);
            row.object.clone_from(&db.object);
            row.input_bytes = db.input_bytes;
            row.stored_bytes = if db.failure_at(&d.id).is_none() {
                db.stored_bytes
            } else {
                Some(0)
            };
            row.duration = db.dump;
            if let (true, Some(Ok(r))) = (i == last, &d.retention) {
                row.removed.clone_from(&r.removed);
            }
            rows.push(row);
        }
    }
    rows
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
    // What sources without a payload made (EBS snapshots): their result has no object.
    for r in rows {
        if let (Status::Ok, "-", Some(made)) = (&r.status, r.destination.as_str(), &r.object) {
            let _ = writeln!(out, "{} made: {made}", r.source);
        }
    }
    // Backups (or, on a dry run, checks) and notifiers are counted apart: a notifier that
    // delivered is no backup that succeeded. The backups' line comes last (pings quote it).
    let (notifiers, backups): (Vec<&Row>, Vec<&Row>) = rows.iter().partition(|r| r.notifier);
    let failed_notifiers = notifiers.iter().filter(|r| !r.status.is_ok()).count();
    if failed_notifiers > 0 {
        let _ = writeln!(
            out,
            "{failed_notifiers} of {} notifiers failed",
            notifiers.len()
        );
    }
    let _ = writeln!(
        out,
        "{}{} of {} {} succeeded on {} (run {})",
        if dry_run { "dry run: " } else { "" },
        backups.iter().filter(|r| r.status.is_ok()).count(),
        backups.len(),
        if dry_run { "checks" } else { "backups" },
        hostname,
        stamp
    );
    out
}
