//! A per-database source (`dbname: all` or a list): one object per database in the run's
//! folder, each dumped by its own stream, in turn.
//!
//! One database that fails loses only its own object: the others are still dumped and
//! stored, and the report names each ([`DatabaseReport`]). The source fails when any
//! database failed, and then no retention runs for it (the run's copy is incomplete); a
//! destination whose upload of any database failed gets no retention either.

use std::time::{Duration, Instant};

use super::{apply_retention, stream, Options, Target};
use crate::engine::pipeline::Plan;
use crate::engine::report::FailureFrom;
use crate::job::SourceConfig;
use crate::naming::{ObjectName, Payload, RunStamp, MAX_FILE_NAME};
use crate::outcome::{printable, DatabaseReport, DestinationReport, Failure, SourceReport, Stage};
use crate::source::Source;

/// Dumps each of `names` to every usable destination and fills `r` in: its databases, the
/// totals, one [`DestinationReport`] per usable destination (with retention where every
/// database was stored), and a failure naming every database that failed.
pub(super) fn run(
    r: &mut SourceReport,
    s: &SourceConfig,
    source: &dyn Source,
    names: &[String],
    (plan, stamp): (&Plan, RunStamp),
    usable: &[&Target],
    options: &Options,
) {
    let started = Instant::now();
    let payload = Payload::from_suffix(source.suffix()).unwrap_or(Payload::Sql);
    for db in names {
        let shown = printable(db);
        let context = format!("source '{}': database '{shown}'", s.id);
        let mut dr = DatabaseReport::new(db);
        let name = ObjectName {
            source_id: s.id.clone(),
            stamp,
            database: Some(db.clone()),
            payload,
            encoding: plan.encoding,
        };
        if let Some(sig) = options.cancel.signal() {
            dr.failure = Some(Failure::new(
                Stage::Source,
                format!("{context}: not run: interrupted by signal {sig}"),
                true,
            ));
        } else if name.file_name().len() > MAX_FILE_NAME {
            dr.failure = Some(Failure::new(
                Stage::Source,
                format!("{context}: the object name would be longer than {MAX_FILE_NAME} bytes"),
                false,
            ));
        } else {
            let object = name.path();
            tracing::info!(source = %s.id, database = %shown, object = %object, "backing up");
            let opened = source.open_database(db, options.cancel);
            let label = format!("{}:{shown}", s.id);
            let (outcome, read) = stream(
                opened, &label, s.timeout, plan, &object, usable, options, &context,
            );
            match outcome {
                Err(f) => {
                    dr.input_bytes = read.map(|(bytes, _)| bytes);
                    dr.dump = read.map(|(_, d)| d).unwrap_or_default();
                    dr.failure = Some(f);
                }
                Ok(out) => {
                    dr.object = Some(out.object.clone());
                    dr.input_bytes = Some(out.source_bytes);
                    dr.dump = out.dump;
                    if out.destinations.iter().any(|d| d.result.is_ok()) {
                        dr.stored_bytes = Some(out.size);
                        dr.sha256 = Some(out.sha256.clone());
                    }
                    for d in &out.destinations {
                        let result = d.result.as_ref().map(|_| ()).map_err(|e| {
                            let mut f = Failure::from_destination(Stage::Upload, e);
                            f.message = format!("database '{shown}': {}", f.message);
                            f
                        });
                        upload_add(r, &d.destination, d.upload);
                        dr.destinations.push((d.destination.clone(), result));
                    }
                }
            }
        }
        if let Some(f) = &dr.failure {
            tracing::error!(source = %s.id, database = %shown, retryable = f.retryable, "{}", f.message);
        }
        r.databases.push(dr);
    }
    totals(r, started.elapsed());
    let complete = r.failure.is_none() && options.cancel.signal().is_none();
    for t in usable {
        let id = &t.config.id;
        let failed = r
            .databases
            .iter()
            .flat_map(|db| db.destinations.iter())
            .filter(|(d, _)| d == id)
            .find_map(|(_, result)| result.as_ref().err().cloned());
        let mut dr = match r.destinations.iter().position(|d| &d.id == id) {
            Some(i) => r.destinations.remove(i),
            None => DestinationReport {
                id: id.clone(),
                upload: Duration::ZERO,
                result: Ok(()),
                retention: None,
            },
        };
        if let Some(f) = failed {
            dr.result = Err(f);
        }
        if complete && dr.result.is_ok() {
            if let Ok(dest) = &t.built {
                dr.retention = Some(apply_retention(dest.as_ref(), &s.id, t, stamp));
            }
        }
        r.destinations.push(dr);
    }
}

/// Adds one database's upload time at destination `id` (the source's upload is the sum).
fn upload_add(r: &mut SourceReport, id: &str, upload: Duration) {
    match r.destinations.iter_mut().find(|d| d.id == id) {
        Some(d) => d.upload += upload,
        None => r.destinations.push(DestinationReport {
            id: id.to_owned(),
            upload,
            result: Ok(()),
            retention: None,
        }),
    }
}

/// The source's totals from its databases: bytes read and stored, the objects stored (the
/// notifications name them), the dump time, and one failure naming every database whose
/// dump failed.
fn totals(r: &mut SourceReport, elapsed: Duration) {
    let dbs = &r.databases;
    r.dump = elapsed;
    r.input_bytes = Some(dbs.iter().filter_map(|d| d.input_bytes).sum());
    let stored: Vec<&DatabaseReport> = dbs.iter().filter(|d| d.stored_bytes.is_some()).collect();
    if !stored.is_empty() {
        r.stored_bytes = Some(stored.iter().filter_map(|d| d.stored_bytes).sum());
        r.object = Some(
            stored
                .iter()
                .filter_map(|d| d.object.as_deref())
                .collect::<Vec<_>>()
                .join(", "),
        );
    }
    let failed: Vec<&Failure> = dbs.iter().filter_map(|d| d.failure.as_ref()).collect();
    if !failed.is_empty() {
        let message = format!(
            "{} of {} databases failed: {}",
            failed.len(),
            dbs.len(),
            failed
                .iter()
                .map(|f| f.message.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        );
        r.failure = Some(Failure::new(
            Stage::Source,
            message,
            failed.iter().all(|f| f.retryable),
        ));
    }
}
