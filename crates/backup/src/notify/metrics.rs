//! The backup metrics the push gateway and the textfile notifiers share, in the Prometheus
//! text format 0.0.4 (what both a push gateway and node_exporter's textfile collector read).
//!
//! Names, types and help texts of the original's push (`backup_size`, `backup_dumptime`,
//! `backup_uploadtime` summaries; `backup_retained_copies`, `backup_timestamp` gauges) are
//! kept exactly: a push gateway rejects a push whose types differ from a group it holds.
//! Added: `backup_success` (1/0) and `backup_last_success_timestamp_seconds` /
//! `backup_last_failure_timestamp_seconds`, so an alert can fire on a failed or stale backup.
//!
//! `backup verify` has metrics of its own ([`of_verification`]): `backup_verify_success`,
//! `backup_verify_copies`, `backup_verify_failed_copies` and the time of the last passed or
//! failed verify.

use std::fmt::Write as _;

use crate::outcome::{SourceReport, SourceVerification};

/// A metric's value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    /// One observation: `_sum` and `_count` (no quantiles, as the original's `Summary`).
    Summary {
        sum: f64,
        count: u64,
    },
    Gauge(f64),
}

/// One metric of one source.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub name: &'static str,
    pub help: &'static str,
    pub value: Value,
}

const fn gauge(name: &'static str, help: &'static str, v: f64) -> Metric {
    Metric {
        name,
        help,
        value: Value::Gauge(v),
    }
}

const fn summary(name: &'static str, help: &'static str, sum: f64) -> Metric {
    Metric {
        name,
        help,
        value: Value::Summary { sum, count: 1 },
    }
}

pub const LAST_SUCCESS: &str = "backup_last_success_timestamp_seconds";
const LAST_SUCCESS_HELP: &str =
    "Time the last successful backup of this source completed, seconds since the epoch";

/// The metrics of a source after this run. `now` in seconds since the epoch; on failure
/// `last_success` (from an earlier run, if known) is carried over.
pub fn of_source(s: &SourceReport, now: f64, last_success: Option<f64>) -> Vec<Metric> {
    let success = gauge(
        "backup_success",
        "1 if the last backup of this source succeeded, 0 if it failed",
        if s.succeeded() { 1.0 } else { 0.0 },
    );
    if !s.succeeded() {
        let mut m = vec![
            success,
            gauge(
                "backup_last_failure_timestamp_seconds",
                "Time the last failed backup of this source ended, seconds since the epoch",
                now,
            ),
        ];
        if let Some(t) = last_success {
            m.push(gauge(LAST_SUCCESS, LAST_SUCCESS_HELP, t));
        }
        return m;
    }
    vec![
        summary(
            "backup_size",
            "Size of backup file in bytes",
            s.stored_bytes.unwrap_or(0) as f64,
        ),
        summary(
            "backup_dumptime",
            "Time taken to dump and compress/encrypt backup in seconds",
            s.dump.as_secs_f64(),
        ),
        summary(
            "backup_uploadtime",
            "Time taken to upload backup in seconds",
            s.upload().as_secs_f64(),
        ),
        gauge(
            "backup_retained_copies",
            "Number of retained backups found on destination",
            s.retained_good().unwrap_or(0) as f64,
        ),
        gauge(
            "backup_timestamp",
            "Time backup completed as seconds-since-the-epoch",
            now,
        ),
        gauge(LAST_SUCCESS, LAST_SUCCESS_HELP, now),
        success,
    ]
}

/// The metrics of a source after `backup verify`; `now` in seconds since the epoch. A
/// failure leaves out the last success time (a push that only adds keeps the earlier one).
pub fn of_verification(s: &SourceVerification, now: f64) -> Vec<Metric> {
    let failed = s.copies.iter().filter(|c| c.result.is_err()).count();
    let mut m = vec![
        gauge(
            "backup_verify_success",
            "1 if every copy of this source the last verify read back matched its sha256, else 0",
            if failed == 0 { 1.0 } else { 0.0 },
        ),
        gauge(
            "backup_verify_copies",
            "Copies of this source the last verify read (or tried to), at every destination",
            s.copies.len() as f64,
        ),
        gauge(
            "backup_verify_failed_copies",
            "Copies of this source the last verify could not read back intact",
            failed as f64,
        ),
    ];
    m.push(if failed == 0 {
        gauge(
            "backup_last_verify_success_timestamp_seconds",
            "Time the last passed verify of this source ended, seconds since the epoch",
            now,
        )
    } else {
        gauge(
            "backup_last_verify_failure_timestamp_seconds",
            "Time the last failed verify of this source ended, seconds since the epoch",
            now,
        )
    });
    m
}

/// Renders sets of metrics, each with its label set (`source="www"` or empty), grouping
/// samples under one `# HELP`/`# TYPE` per name in first-seen order.
pub fn render(sets: &[(String, Vec<Metric>)]) -> String {
    let mut names: Vec<&Metric> = Vec::new();
    for (_, ms) in sets {
        for m in ms {
            if !names.iter().any(|n| n.name == m.name) {
                names.push(m);
            }
        }
    }
    let mut out = String::new();
    for meta in names {
        let kind = match meta.value {
            Value::Summary { .. } => "summary",
            Value::Gauge(_) => "gauge",
        };
        let _ = writeln!(out, "# HELP {} {}", meta.name, meta.help);
        let _ = writeln!(out, "# TYPE {} {kind}", meta.name);
        for (labels, ms) in sets {
            let braces = if labels.is_empty() {
                String::new()
            } else {
                format!("{{{labels}}}")
            };
            for m in ms.iter().filter(|m| m.name == meta.name) {
                match m.value {
                    Value::Summary { sum, count } => {
                        let _ = writeln!(out, "{}_sum{braces} {}", m.name, number(sum));
                        let _ = writeln!(out, "{}_count{braces} {count}", m.name);
                    }
                    Value::Gauge(v) => {
                        let _ = writeln!(out, "{}{braces} {}", m.name, number(v));
                    }
                }
            }
        }
    }
    out
}

/// A label pair with the value escaped as the text format requires.
pub fn label(name: &str, value: &str) -> String {
    let v = value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    format!("{name}=\"{v}\"")
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{DestinationReport, Retention};
    use std::time::Duration;

    #[test]
    fn success_keeps_the_originals_names_and_types() {
        let mut s = SourceReport::new("www", "Web", "folder");
        s.stored_bytes = Some(2048);
        s.dump = Duration::from_millis(1500);
        s.destinations.push(DestinationReport {
            id: "disk".into(),
            upload: Duration::from_secs(2),
            result: Ok(()),
            retention: Some(Ok(Retention {
                removed: vec![],
                retained_good: 4,
            })),
        });
        let text = render(&[(label("source", "w\"w"), of_source(&s, 1700000000.0, None))]);
        assert!(text.contains("# TYPE backup_size summary\nbackup_size_sum{source=\"w\\\"w\"} 2048\nbackup_size_count{source=\"w\\\"w\"} 1\n"), "{text}");
        assert!(text.contains(
            "# HELP backup_dumptime Time taken to dump and compress/encrypt backup in seconds\n"
        ));
        assert!(text.contains("backup_dumptime_sum{source=\"w\\\"w\"} 1.5\n"));
        assert!(text.contains(
            "# TYPE backup_retained_copies gauge\nbackup_retained_copies{source=\"w\\\"w\"} 4\n"
        ));
        assert!(text.contains("backup_timestamp{source=\"w\\\"w\"} 1700000000\n"));
        assert!(text.contains("backup_success{source=\"w\\\"w\"} 1\n"));
    }

    #[test]
    fn failure_carries_the_last_success_over() {
        let mut s = SourceReport::new("db", "DB", "mysql");
        s.failure = Some(crate::outcome::Failure::new(
            crate::outcome::Stage::Source,
            "x",
            false,
        ));
        let m = of_source(&s, 20.0, Some(10.0));
        let text = render(&[(String::new(), m)]);
        assert_eq!(
            text,
            "# HELP backup_success 1 if the last backup of this source succeeded, 0 if it failed\n\
             # TYPE backup_success gauge\nbackup_success 0\n\
             # HELP backup_last_failure_timestamp_seconds Time the last failed backup of this source ended, seconds since the epoch\n\
             # TYPE backup_last_failure_timestamp_seconds gauge\nbackup_last_failure_timestamp_seconds 20\n\
             # HELP backup_last_success_timestamp_seconds Time the last successful backup of this source completed, seconds since the epoch\n\
             # TYPE backup_last_success_timestamp_seconds gauge\nbackup_last_success_timestamp_seconds 10\n"
        );
    }
}
