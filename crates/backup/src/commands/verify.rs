//! `backup verify`: copies read back end to end, their sha256 compared with the sidecar.

use super::{decryption_for, destinations, CommandError, Job, Keys, Outcome};
use crate::destination::Destination;
use crate::outcome::size_description;
use crate::restore::{self, SidecarCheck};
use crate::status;
use crate::table;

/// `backup verify`: reads the newest copy of each source (of `only`, if not empty) at each
/// destination end to end; a table, then one line per failure and per unusable destination.
pub fn verify(job: &Job, only: &[String], keys: &Keys) -> Result<Outcome, CommandError> {
    let job = &job.0;
    for id in only {
        if !job.sources.iter().any(|s| &s.id == id) {
            return Err(CommandError::Usage(format!(
                "--source {id:?}: no such source in the config"
            )));
        }
    }
    let ids: Vec<String> = job
        .sources
        .iter()
        .filter(|s| only.is_empty() || only.contains(&s.id))
        .map(|s| s.id.clone())
        .collect();
    let mut resolved = Vec::new();
    for id in &ids {
        resolved.push((id.clone(), decryption_for(job, id, keys)?));
    }
    let (dests, skipped) = destinations(job);
    let refs: Vec<&dyn Destination> = dests.iter().map(|d| d.as_ref()).collect();
    let keys_for = |id: &str| {
        resolved
            .iter()
            .find(|(i, _)| i == id)
            .and_then(|(_, d)| d.clone())
    };
    let reports = restore::verify(&refs, &ids, &keys_for);
    status::record(
        &status::state_file(job),
        &reports,
        std::time::SystemTime::now(),
    );
    let mut rows = vec![[
        "SOURCE".to_owned(),
        "DESTINATION".to_owned(),
        "STATUS".to_owned(),
        "TIMESTAMP".to_owned(),
        "SIZE".to_owned(),
        "SHA256".to_owned(),
    ]];
    let mut failures = Vec::new();
    for r in &reports {
        // `{id}:{database}` for a database of a per-database copy.
        let label = match &r.database {
            Some(db) => format!("{}:{}", r.source_id, crate::outcome::printable(db)),
            None => r.source_id.clone(),
        };
        match &r.result {
            Ok(v) => rows.push([
                label,
                r.destination.clone(),
                "ok".to_owned(),
                v.copy.name.stamp.to_string(),
                size_description(v.copy.size as f64),
                match v.sidecar {
                    SidecarCheck::Match => "matches".to_owned(),
                    SidecarCheck::Missing => "no sidecar".to_owned(),
                },
            ]),
            Err(e) => {
                rows.push([
                    label.clone(),
                    r.destination.clone(),
                    "FAILED".to_owned(),
                    "-".to_owned(),
                    "-".to_owned(),
                    "-".to_owned(),
                ]);
                failures.push(format!("{label} -> {}: {e}", r.destination));
            }
        }
    }
    let mut stdout = table::render(&rows, &[4]);
    for line in failures.iter().chain(&skipped) {
        stdout.push_str(line);
        stdout.push('\n');
    }
    Ok(Outcome {
        stdout,
        failed: !failures.is_empty() || !skipped.is_empty(),
        ..Outcome::default()
    })
}
