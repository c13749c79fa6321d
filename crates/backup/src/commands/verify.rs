//! `backup verify`: copies read back end to end, their sha256 compared with the sidecar; the
//! newest of each source at each destination, or with `--sample` a random share of all of
//! them. The results go to `status`'s state file and to the job's notifiers.

use super::{decryption_for, destinations, CommandError, Job, Keys, Outcome};
use crate::destination::{Destination, ErrorKind};
use crate::job::JobConfig;
use crate::notify;
use crate::outcome::{
    size_description, CopyCheck, Failure, SourceVerification, Stage, Verification,
};
use crate::restore::{self, Choice, Percent, RestoreError, SidecarCheck, VerifyReport};
use crate::status;
use crate::table;

/// What `backup verify` is asked for.
#[derive(Debug, Clone, Copy)]
pub struct VerifyRequest<'a> {
    /// Only these source ids (all when empty).
    pub only: &'a [String],
    pub keys: &'a Keys,
    /// `--sample`: read this share of every source's copies at each destination instead of
    /// the newest.
    pub sample: Option<Percent>,
    /// `--seed`: the sample's seed (a random one when absent; the output names it).
    pub seed: Option<u64>,
}

/// `backup verify`: reads the copies the request names of each source (of `only`, if not
/// empty) at each destination end to end; a table with a row per copy read, then one line
/// per failure and per unusable destination, then the notifiers.
pub fn verify(job: &Job, request: VerifyRequest<'_>) -> Result<Outcome, CommandError> {
    let job = &job.0;
    for id in request.only {
        if !job.sources.iter().any(|s| &s.id == id) {
            return Err(CommandError::Usage(format!(
                "--source {id:?}: no such source in the config"
            )));
        }
    }
    let ids: Vec<String> = job
        .sources
        .iter()
        .filter(|s| request.only.is_empty() || request.only.contains(&s.id))
        .map(|s| s.id.clone())
        .collect();
    let mut resolved = Vec::new();
    for id in &ids {
        resolved.push((id.clone(), decryption_for(job, id, request.keys)?));
    }
    let (dests, skipped) = destinations(job);
    let refs: Vec<&dyn Destination> = dests.iter().map(|d| d.as_ref()).collect();
    let keys_for = |id: &str| {
        resolved
            .iter()
            .find(|(i, _)| i == id)
            .and_then(|(_, d)| d.clone())
    };
    let choice = match request.sample {
        None => Choice::Newest,
        Some(share) => Choice::Sample {
            share,
            seed: request.seed.unwrap_or_else(restore::random_seed),
        },
    };
    let reports = restore::verify(&refs, &ids, &keys_for, choice);
    status::record(
        &status::state_file(job),
        &reports,
        std::time::SystemTime::now(),
    );
    let mut stdout = String::new();
    if let Choice::Sample { share, seed } = choice {
        stdout.push_str(&format!(
            "sample: {share} % of each source's copies at each destination, seed {seed} \
             (--seed {seed} reads the same copies again)\n"
        ));
    }
    let (table, failures) = table_of(&reports);
    stdout.push_str(&table);
    for line in failures.iter().chain(&skipped) {
        stdout.push_str(line);
        stdout.push('\n');
    }
    // A destination that could not be built failed every source there, for the notifiers
    // too (`skipped` holds their messages in config order).
    let unbuilt: Vec<(&str, &String)> = job
        .destinations
        .iter()
        .map(|d| d.id.as_str())
        .filter(|id| !dests.iter().any(|b| b.id() == *id))
        .zip(&skipped)
        .collect();
    let verification = Verification {
        hostname: job.hostname(),
        sample: request.sample.map(Percent::as_f64),
        sources: by_source(job, &ids, &reports, &unbuilt),
    };
    let mut notify_failed = false;
    for n in notify::verified(&job.notifications, &verification) {
        if let Err(f) = n.result {
            stdout.push_str(&format!("notification {}: {f}\n", n.label));
            notify_failed = true;
        }
    }
    Ok(Outcome {
        stdout,
        failed: !failures.is_empty() || !skipped.is_empty() || notify_failed,
        ..Outcome::default()
    })
}

/// The table, a row per copy read, and a line per failure.
fn table_of(reports: &[VerifyReport]) -> (String, Vec<String>) {
    let mut rows = vec![[
        "SOURCE".to_owned(),
        "DESTINATION".to_owned(),
        "STATUS".to_owned(),
        "TIMESTAMP".to_owned(),
        "SIZE".to_owned(),
        "SHA256".to_owned(),
    ]];
    let mut failures = Vec::new();
    for r in reports {
        // `{id}:{database}` for a database of a per-database copy.
        let label = match &r.database {
            Some(db) => format!("{}:{}", r.source_id, crate::outcome::printable(db)),
            None => r.source_id.clone(),
        };
        let stamp = r.stamp.map_or_else(|| "-".to_owned(), |s| s.to_string());
        match &r.result {
            Ok(v) => rows.push([
                label,
                r.destination.clone(),
                "ok".to_owned(),
                stamp,
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
                    stamp,
                    "-".to_owned(),
                    "-".to_owned(),
                ]);
                failures.push(format!("{label} -> {}: {e}", r.destination));
            }
        }
    }
    (table::render(&rows, &[4]), failures)
}

/// The notifiers' view: the reports of each source, in config order, and a failure at each
/// destination that could not be built.
fn by_source(
    job: &JobConfig,
    ids: &[String],
    reports: &[VerifyReport],
    unbuilt: &[(&str, &String)],
) -> Vec<SourceVerification> {
    job.sources
        .iter()
        .filter(|s| ids.contains(&s.id))
        .map(|s| SourceVerification {
            id: s.id.clone(),
            name: s.name.clone(),
            kind: s.kind.clone(),
            copies: reports
                .iter()
                .filter(|r| r.source_id == s.id)
                .map(|r| CopyCheck {
                    destination: r.destination.clone(),
                    database: r.database.clone(),
                    stamp: r.stamp,
                    size: r.result.as_ref().ok().map(|v| v.copy.size),
                    result: r.result.as_ref().map(drop).map_err(failure),
                })
                .chain(unbuilt.iter().map(|(id, message)| CopyCheck {
                    destination: (*id).to_owned(),
                    database: None,
                    stamp: None,
                    size: None,
                    result: Err(Failure::new(Stage::Setup, message.as_str(), false)),
                }))
                .collect(),
        })
        .collect()
}

/// A copy that did not read back, as notifiers see it: retrying may help only when the
/// destination could not be reached.
fn failure(e: &RestoreError) -> Failure {
    let retryable = matches!(e, RestoreError::Destination(d) if d.kind() == ErrorKind::Transient);
    Failure::new(Stage::Verify, e.to_string(), retryable)
}
