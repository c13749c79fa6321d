//! `backup status`: freshness and the last verify per source and destination.

use std::path::Path;

use super::{destinations, Job, Outcome};
use crate::destination::Destination;
use crate::restore;
use crate::status;

/// What `backup status` is asked for.
#[derive(Debug, Clone, Copy, Default)]
pub struct StatusRequest<'a> {
    /// JSON instead of the Nagios line and table.
    pub json: bool,
    /// Also write node_exporter's textfile format here (atomically).
    pub textfile: Option<&'a Path>,
}

/// `backup status`: per source and destination the newest good copy, its age, size and last
/// verify; `failed` when a copy is older than `max_age`, missing, or a destination could not
/// be listed.
pub fn status(job: &Job, request: StatusRequest<'_>) -> Outcome {
    let job = &job.0;
    let (dests, skipped) = destinations(job);
    let refs: Vec<&dyn Destination> = dests.iter().map(|d| d.as_ref()).collect();
    let mut listing = restore::list(&refs, None);
    for d in &job.destinations {
        if !dests.iter().any(|b| b.id() == d.id) {
            listing.unlisted.push(d.id.clone());
        }
    }
    let state = status::load_state(&status::state_file(job));
    let assessed = status::assess(job, &listing, &state, status::now_local());
    let mut out = Outcome {
        stdout: if request.json {
            serde_json::to_string_pretty(&assessed).unwrap_or_default() + "\n"
        } else {
            assessed.text()
        },
        failed: !assessed.ok,
        ..Outcome::default()
    };
    if let Some(path) = request.textfile {
        let name = job
            .file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Err(e) = crate::notify::write_atomically(path, assessed.textfile(&name).as_bytes()) {
            out.stderr.push_str(&format!("backup: {e}\n"));
            out.failed = true;
        }
    }
    let errors = listing.errors.iter().map(ToString::to_string);
    for m in skipped.into_iter().chain(errors) {
        out.stderr.push_str(&format!("backup: {m}\n"));
    }
    out
}
