//! `backup prune`: each destination's retention applied without a run.

use std::path::Path;
use std::time::Duration;

use super::{destinations, CommandError, Job, Outcome};
use crate::engine::{lock, retention};
use crate::table;

/// What `backup prune` is asked for.
#[derive(Debug, Clone)]
pub struct PruneRequest<'a> {
    /// The job file (locked while copies are deleted).
    pub config: &'a Path,
    /// Only this source id.
    pub source: Option<&'a str>,
    /// Say what would go and why the rest stays; delete nothing.
    pub dry_run: bool,
}

/// `backup prune`: applies each destination's retention to each source's copies without a
/// run (the newest good copy stays, as always), a row per copy saying what happens to it and
/// which rules keep it. With `dry_run` nothing is deleted and no lock is taken.
pub fn prune(job: &Job, request: PruneRequest<'_>) -> Result<Outcome, CommandError> {
    let job = &job.0;
    if let Some(id) = request.source {
        if !job.sources.iter().any(|s| s.id == id) {
            return Err(CommandError::Usage(format!(
                "--source {id:?}: no such source in the config"
            )));
        }
    }
    let _lock = if request.dry_run {
        None
    } else {
        Some(lock::acquire(request.config, Duration::ZERO)?)
    };
    let (dests, mut failures) = destinations(job);
    let now = std::time::SystemTime::now();
    let mut rows = vec![[
        "DESTINATION".to_owned(),
        "SOURCE".to_owned(),
        "COPY".to_owned(),
        "ACTION".to_owned(),
        "KEPT BY".to_owned(),
    ]];
    for dest in &dests {
        let Some(config) = job.destinations.iter().find(|d| d.id == dest.id()) else {
            continue;
        };
        for source in job
            .sources
            .iter()
            .filter(|s| request.source.is_none_or(|id| s.id == id))
        {
            let copies = match retention::list_copies(dest.as_ref(), &source.id) {
                Ok(c) => c,
                Err(e) => {
                    failures.push(format!("{} -> {}: {e}", source.id, dest.id()));
                    continue;
                }
            };
            let verdicts = retention::decide(&config.retention, &copies, now, None, &chrono::Local);
            let mut order: Vec<usize> = (0..copies.len()).collect();
            order.sort_by(|&a, &b| copies[b].timestamp.cmp(&copies[a].timestamp));
            for i in order {
                let (copy, verdict) = (&copies[i], &verdicts[i]);
                let action = match (verdict.delete, request.dry_run) {
                    (false, _) => "keep".to_owned(),
                    (true, true) => "would delete".to_owned(),
                    (true, false) => match retention::remove(dest.as_ref(), &source.id, copy) {
                        Ok(()) => "deleted".to_owned(),
                        Err(e) => {
                            failures.push(format!(
                                "{} -> {}: deleting copy {}: {e}",
                                source.id,
                                dest.id(),
                                copy.timestamp
                            ));
                            "DELETE FAILED".to_owned()
                        }
                    },
                };
                let mut why: Vec<String> =
                    verdict.kept_by.iter().map(ToString::to_string).collect();
                if !copy.good {
                    why.push("(no sidecar)".to_owned());
                }
                if verdict.kept_by.is_empty() && !verdict.delete {
                    why.insert(0, "no retention rule".to_owned());
                }
                rows.push([
                    dest.id().to_owned(),
                    source.id.clone(),
                    copy.timestamp.clone(),
                    action,
                    why.join(", "),
                ]);
            }
        }
    }
    let mut stdout = table::render(&rows, &[]);
    for line in &failures {
        stdout.push_str(line);
        stdout.push('\n');
    }
    Ok(Outcome {
        stdout,
        failed: !failures.is_empty(),
        ..Outcome::default()
    })
}
