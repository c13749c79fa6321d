//! `backup ls`: the members of a folder copy, read from the stream.

use super::{decryption_for, destinations, parse_at, CommandError, Job, Keys, Outcome};
use crate::destination::Destination;
use crate::outcome::printable;
use crate::restore;
use crate::table;

/// What `backup ls` is asked for.
#[derive(Debug, Clone, Copy)]
pub struct LsRequest<'a> {
    pub source: &'a str,
    pub at: Option<&'a str>,
    pub destination: Option<&'a str>,
    pub keys: &'a Keys,
}

/// `backup ls`: the members of a folder copy, read from the stream (nothing is written);
/// the copy is read to its end and its sidecar checked, so a damaged copy fails (exit 1).
pub fn ls(job: &Job, request: LsRequest<'_>) -> Result<Outcome, CommandError> {
    let job = &job.0;
    let at = parse_at(request.at)?;
    let decryption = decryption_for(job, request.source, request.keys)?;
    let (dests, skipped) = destinations(job);
    for m in &skipped {
        tracing::warn!("{m}");
    }
    let refs: Vec<&dyn Destination> = dests.iter().map(|d| d.as_ref()).collect();
    let options = restore::ListOptions {
        source_id: request.source.to_owned(),
        at,
        destination: request.destination.map(str::to_owned),
        decryption,
    };
    let mut rows = vec![[
        "TYPE".to_owned(),
        "SIZE".to_owned(),
        "MODIFIED".to_owned(),
        "PATH".to_owned(),
    ]];
    let listed = restore::members(&refs, &options, &mut |m| {
        let when = m
            .mtime
            .and_then(|t| i64::try_from(t).ok())
            .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
            .map(|t| {
                t.with_timezone(&chrono::Local)
                    .format("%Y-%m-%d %H:%M:%S")
                    .to_string()
            })
            .unwrap_or_else(|| "-".to_owned());
        // Names come from the archive: control characters are shown escaped.
        let path = match &m.link {
            Some(l) if m.kind == 'l' || m.kind == 'h' => {
                format!("{} -> {}", printable(&m.path), printable(l))
            }
            _ => printable(&m.path),
        };
        rows.push([m.kind.to_string(), m.size.to_string(), when, path]);
    });
    match listed {
        Ok(copy) => Ok(Outcome {
            stdout: table::render(&rows, &[1]),
            stderr: format!(
                "backup: {} members of {} on {}\n",
                rows.len() - 1,
                copy.name.path(),
                copy.destination
            ),
            ..Outcome::default()
        }),
        Err(error) => Err(CommandError::Restore {
            source_id: request.source.to_owned(),
            consequence: "the listing is incomplete".to_owned(),
            error: Box::new(error),
        }),
    }
}
