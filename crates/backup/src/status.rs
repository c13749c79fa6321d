//! `backup status`: per source and destination, the newest good copy, its age and size, and
//! whether `verify` last passed; with `max_age` a check that fails when a copy is older or
//! missing (a Nagios/Icinga check, `--json` for scripts, `--textfile` for node_exporter).
//!
//! `verify` records its results in the job's state file (`state_dir`, default
//! [`DEFAULT_STATE_DIR`]; the file is named by the job file's escaped path), which is how
//! `status` knows a copy was read back; nothing else is kept between commands.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{Local, NaiveDateTime};
use serde::{Deserialize, Serialize};

use crate::job::{JobConfig, Span};
use crate::naming::RunStamp;
use crate::notify::metrics::{self, Metric, Value};
use crate::restore::{Listing, VerifyReport};
use crate::schedule::escape_path;
use crate::table;

/// Where `verify` records results when the job file does not say (`state_dir`).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/custos/backup";

/// The last verify of one source at one destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyRecord {
    /// The copy read back (`None` when none could be).
    pub stamp: Option<String>,
    pub ok: bool,
    /// When, seconds since the epoch.
    pub at: i64,
}

/// Results by source id, then destination id.
pub type VerifyState = BTreeMap<String, BTreeMap<String, VerifyRecord>>;

/// The job's state file.
pub fn state_file(job: &JobConfig) -> PathBuf {
    let dir = job
        .state_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
    let path = std::fs::canonicalize(&job.file).unwrap_or_else(|_| job.file.clone());
    dir.join(format!("{}.verify.json", escape_path(&path)))
}

/// The recorded results; none when the file is absent or unreadable (a warning then).
pub fn load_state(path: &Path) -> VerifyState {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::warn!(file = %path.display(), "ignoring an unreadable verify state: {e}");
            VerifyState::new()
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => VerifyState::new(),
        Err(e) => {
            tracing::warn!(file = %path.display(), "cannot read the verify state: {e}");
            VerifyState::new()
        }
    }
}

/// Adds `reports` to the state at `path` (written atomically). A failure is a warning: the
/// verify itself is what its exit code reports.
pub fn record(path: &Path, reports: &[VerifyReport], now: SystemTime) {
    let mut state = load_state(path);
    let at = seconds(now) as i64;
    // A per-database copy gives a report per database, a sample a report per copy: the
    // source's verify there passed only if every one did, and names the newest copy read
    // (reports come newest first).
    let mut failed = std::collections::BTreeSet::new();
    let mut seen = std::collections::BTreeSet::new();
    for r in reports {
        let (stamp, ok) = match &r.result {
            Ok(v) => (Some(v.copy.name.stamp.to_string()), true),
            Err(_) => (None, false),
        };
        let key = (r.source_id.clone(), r.destination.clone());
        if failed.contains(&key) || (ok && !seen.insert(key.clone())) {
            continue;
        }
        if !ok {
            failed.insert(key);
        }
        state
            .entry(r.source_id.clone())
            .or_default()
            .insert(r.destination.clone(), VerifyRecord { stamp, ok, at });
    }
    let written = serde_json::to_vec_pretty(&state)
        .map_err(std::io::Error::other)
        .and_then(|body| {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            crate::notify::write_atomically(path, &body).map_err(std::io::Error::other)
        });
    if let Err(e) = written {
        tracing::warn!(file = %path.display(), "cannot record the verify results for `backup status`: {e}");
    }
}

/// How one source stands at one destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Standing {
    /// A good copy within `max_age` (or no `max_age`).
    Ok,
    /// The newest good copy is older than `max_age`.
    Stale,
    /// No good copy there.
    Missing,
    /// The destination could not be listed.
    Unknown,
}

/// One row of the status.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub source: String,
    pub destination: String,
    /// The newest good copy's stamp.
    pub newest: Option<String>,
    pub age_seconds: Option<i64>,
    pub size_bytes: Option<u64>,
    pub max_age: Option<String>,
    pub verify: Option<VerifyRecord>,
    pub status: Standing,
}

/// The whole status.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Every row is [`Standing::Ok`].
    pub ok: bool,
    pub rows: Vec<Row>,
}

/// The status of every source of `job` (or `only`) at every destination, from `listing`
/// (`unlisted` destinations are [`Standing::Unknown`]).
pub fn assess(
    job: &JobConfig,
    listing: &Listing,
    state: &VerifyState,
    now: NaiveDateTime,
) -> Status {
    let mut rows = Vec::new();
    for source in &job.sources {
        for dest in &job.destinations {
            let mut by_stamp: BTreeMap<RunStamp, (u64, bool)> = BTreeMap::new();
            for c in listing
                .copies
                .iter()
                .filter(|c| c.destination == dest.id && c.name.source_id == source.id)
                // A copy dated in the future (planted, or a clock that ran ahead) proves
                // nothing about today's backup.
                .filter(|c| c.name.stamp.age(now) >= chrono::TimeDelta::zero())
            {
                let e = by_stamp.entry(c.name.stamp).or_default();
                e.0 += c.size;
                e.1 |= c.has_sidecar;
            }
            let newest = by_stamp.iter().rev().find(|(_, (_, good))| *good);
            let status = if listing.unlisted.contains(&dest.id) {
                Standing::Unknown
            } else {
                match (newest, source.max_age) {
                    (None, _) => Standing::Missing,
                    (Some((stamp, _)), Some(max)) if stale(*stamp, max, now) => Standing::Stale,
                    (Some(_), _) => Standing::Ok,
                }
            };
            rows.push(Row {
                source: source.id.clone(),
                destination: dest.id.clone(),
                newest: newest.map(|(s, _)| s.to_string()),
                age_seconds: newest.map(|(s, _)| s.age(now).num_seconds()),
                size_bytes: newest.map(|(_, (size, _))| *size),
                max_age: source.max_age.map(|m| m.to_string()),
                verify: state.get(&source.id).and_then(|d| d.get(&dest.id)).cloned(),
                status,
            });
        }
    }
    Status {
        ok: rows.iter().all(|r| r.status == Standing::Ok),
        rows,
    }
}

/// Older than `max` before `now` (calendar arithmetic, as `keep_within`).
fn stale(stamp: RunStamp, max: Span, now: NaiveDateTime) -> bool {
    max.before(now)
        .is_some_and(|limit| stamp.age(now) > now.signed_duration_since(limit))
}

impl Status {
    /// A first line as Nagios reads it, then a table.
    pub fn text(&self) -> String {
        let problems: Vec<String> = self
            .rows
            .iter()
            .filter(|r| r.status != Standing::Ok)
            .map(|r| match r.status {
                Standing::Stale => format!(
                    "{} at {} is {} old (max_age {})",
                    r.source,
                    r.destination,
                    age(r.age_seconds.unwrap_or(0)),
                    r.max_age.as_deref().unwrap_or("-")
                ),
                Standing::Missing => format!("{} has no good copy at {}", r.source, r.destination),
                _ => format!(
                    "{} at {}: destination could not be listed",
                    r.source, r.destination
                ),
            })
            .collect();
        let mut out = if problems.is_empty() {
            format!("OK: {} copies fresh\n", self.rows.len())
        } else {
            format!("CRITICAL: {}\n", problems.join("; "))
        };
        let mut rows = vec![[
            "SOURCE".to_owned(),
            "DESTINATION".to_owned(),
            "STATUS".to_owned(),
            "NEWEST".to_owned(),
            "AGE".to_owned(),
            "SIZE".to_owned(),
            "VERIFY".to_owned(),
        ]];
        for r in &self.rows {
            let verify = match &r.verify {
                None => "never".to_owned(),
                Some(v) if !v.ok => "FAILED".to_owned(),
                Some(v) if v.stamp == r.newest => "ok".to_owned(),
                Some(v) => format!("ok (older copy {})", v.stamp.as_deref().unwrap_or("-")),
            };
            rows.push([
                r.source.clone(),
                r.destination.clone(),
                format!("{:?}", r.status).to_lowercase(),
                r.newest.clone().unwrap_or_else(|| "-".to_owned()),
                r.age_seconds.map(age).unwrap_or_else(|| "-".to_owned()),
                r.size_bytes
                    .map(|b| crate::outcome::size_description(b as f64))
                    .unwrap_or_else(|| "-".to_owned()),
                verify,
            ]);
        }
        out.push_str(&table::render(&rows, &[4, 5]));
        out
    }

    /// node_exporter's textfile format: a sample set per source and destination.
    pub fn textfile(&self, job: &str) -> String {
        let sets: Vec<(String, Vec<Metric>)> = self
            .rows
            .iter()
            .map(|r| {
                let labels = [
                    metrics::label("backup_job", job),
                    metrics::label("source", &r.source),
                    metrics::label("destination", &r.destination),
                ]
                .join(",");
                let gauge = |name, help, v: f64| Metric {
                    name,
                    help,
                    value: Value::Gauge(v),
                };
                let mut ms = vec![gauge(
                    "backup_copy_ok",
                    "1 if a good copy within max_age is at this destination, else 0",
                    f64::from(u8::from(r.status == Standing::Ok)),
                )];
                if let (Some(stamp), Some(size)) = (&r.newest, r.size_bytes) {
                    if let Some(t) = RunStamp::parse(stamp) {
                        ms.push(gauge(
                            "backup_copy_newest_timestamp_seconds",
                            "Run time of the newest good copy at this destination, seconds since the epoch",
                            seconds(t.instant()),
                        ));
                    }
                    ms.push(gauge(
                        "backup_copy_newest_size_bytes",
                        "Stored size of the newest good copy at this destination",
                        size as f64,
                    ));
                }
                if let Some(v) = &r.verify {
                    ms.push(gauge(
                        "backup_copy_verify_ok",
                        "1 if the last backup verify of this source at this destination passed",
                        f64::from(u8::from(v.ok)),
                    ));
                    ms.push(gauge(
                        "backup_copy_verify_timestamp_seconds",
                        "When the last backup verify of this source at this destination ran",
                        v.at as f64,
                    ));
                }
                (labels, ms)
            })
            .collect();
        metrics::render(&sets)
    }
}

fn seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// `3d 4h`, `5h 12m`, `42m`.
pub fn age(secs: i64) -> String {
    let mins = secs.max(0) / 60;
    let (days, hours, m) = (mins / 1440, (mins / 60) % 24, mins % 60);
    if days > 0 {
        format!("{days}d {hours}h")
    } else if hours > 0 {
        format!("{hours}h {m}m")
    } else {
        format!("{m}m")
    }
}

/// The local time now (stamps are local).
pub fn now_local() -> NaiveDateTime {
    Local::now().naive_local()
}

#[cfg(test)]
mod tests {
    use super::age;

    #[test]
    fn ages_read_naturally() {
        assert_eq!(age(42 * 60), "42m");
        assert_eq!(age((5 * 60 + 12) * 60), "5h 12m");
        assert_eq!(age(76 * 3600), "3d 4h");
        assert_eq!(age(-5), "0m");
    }
}
