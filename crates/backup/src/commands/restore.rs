//! `backup restore`: a copy back into a directory or onto stdout, or a dump loaded into the
//! source's own server.

use std::path::Path;

use super::{decryption_for, destinations, parse_at, CommandError, Job, Keys, Outcome, Signals};
use crate::cancel::Cancel;
use crate::destination::Destination;
use crate::engine::runner;
use crate::job::JobConfig;
use crate::naming::RunStamp;
use crate::outcome::size_description;
use crate::restore::{self, RestoreError, RestoreOptions, RestoreTarget, SidecarCheck};

/// What `backup restore` is asked for.
#[derive(Debug, Clone, Copy)]
pub struct RestoreRequest<'a> {
    /// Source id to restore.
    pub source: &'a str,
    /// Run timestamp as `backup list` shows it (YYYYmmddHHMMSS); the newest copy if absent.
    pub at: Option<&'a str>,
    /// Destination id to read from; the first one (config order) with the copy if absent.
    pub destination: Option<&'a str>,
    /// Target directory, or `-` for the raw tar/dump on stdout; `None` (with `database`):
    /// load the dump into the source's server.
    pub to: Option<&'a Path>,
    /// One database of a per-database source.
    pub database: Option<&'a str>,
    /// `--as`: load into this database instead of `database`.
    pub into: Option<&'a str>,
    /// `--force`: load into a database that holds tables.
    pub force: bool,
    /// `--path`: only these members of a folder copy.
    pub paths: &'a [String],
    pub keys: &'a Keys,
}

/// `backup restore`: streams the copy back; the line saying what was restored goes to stderr
/// (stdout may be carrying the copy itself).
pub fn restore(
    job: &Job,
    request: RestoreRequest<'_>,
    signals: Signals,
) -> Result<Outcome, CommandError> {
    let job = &job.0;
    signals.watch();
    let cancel = signals.0;
    let at = parse_at(request.at)?;
    let to =
        match (request.to, request.database) {
            (Some(_), _) if request.into.is_some() || request.force => {
                return Err(CommandError::Usage(
                    "--as and --force load into the server: drop --to".into(),
                ))
            }
            (Some(to), _) if !request.paths.is_empty() && to.as_os_str() == "-" => {
                return Err(CommandError::Usage(
                    "--path restores members into a directory: give --to DIR, not -".into(),
                ))
            }
            (Some(to), _) => to,
            (None, Some(database)) => return load_into_server(job, &request, database, at, cancel),
            (None, None) => return Err(CommandError::Usage(
                "--to DIR (or -) is required, unless --database NAME loads a dump into the server"
                    .into(),
            )),
        };
    let decryption = decryption_for(job, request.source, request.keys)?;
    let (dests, skipped) = destinations(job);
    for m in &skipped {
        tracing::warn!("{m}");
    }
    let refs: Vec<&dyn Destination> = dests.iter().map(|d| d.as_ref()).collect();
    let (target, consequence) = if to.as_os_str() == "-" {
        (
            RestoreTarget::Writer(Box::new(std::io::stdout().lock())),
            "the output already written to stdout is unverified and must be discarded".to_owned(),
        )
    } else {
        (
            RestoreTarget::Directory(to.to_path_buf()),
            format!("nothing was restored into {}", to.display()),
        )
    };
    let done = restore::restore(
        &refs,
        RestoreOptions {
            source_id: request.source.to_owned(),
            at,
            destination: request.destination.map(str::to_owned),
            // A pgsql source's one object is its one database's dump: no database filter.
            database: request
                .database
                .filter(|d| single_database(job, request.source).as_deref() != Some(*d))
                .map(str::to_owned),
            paths: request.paths.to_vec(),
            target,
            decryption,
            cancel,
        },
    )
    .map_err(|error| CommandError::Restore {
        source_id: request.source.to_owned(),
        consequence,
        error: Box::new(error),
    })?;
    let check = match done.sidecar {
        SidecarCheck::Match => "sha256 matches its sidecar",
        SidecarCheck::Missing => "no sidecar to check (made by the original?)",
    };
    let mut stderr = String::new();
    for w in &done.warnings {
        stderr.push_str(&format!("backup: warning: {w}\n"));
    }
    Ok(Outcome {
        stderr: stderr
            + &format!(
                "restored {} from {} ({} of payload) to {}; {check}\n",
                done.copy.name.path(),
                done.copy.destination,
                size_description(done.payload_bytes as f64),
                done.written_to
                    .as_deref()
                    .map_or("stdout".to_owned(), |p| p.display().to_string()),
            ),
        ..Outcome::default()
    })
}

/// `backup restore --database NAME [--as NEW] [--force]` without `--to`: checks the copy,
/// then loads it into the source's own server with its credentials.
fn load_into_server(
    job: &JobConfig,
    request: &RestoreRequest<'_>,
    database: &str,
    at: Option<RunStamp>,
    cancel: Cancel,
) -> Result<Outcome, CommandError> {
    let into = request.into.unwrap_or(database);
    if into.is_empty() || into.contains('\0') {
        return Err(CommandError::Usage(format!(
            "--as {into:?}: not a database name"
        )));
    }
    let config = job
        .sources
        .iter()
        .find(|s| s.id == request.source)
        .ok_or_else(|| {
            CommandError::Usage(format!(
                "--source {:?}: no such source in the config (its server and credentials are needed)",
                request.source
            ))
        })?;
    let source = runner::build_source(config).map_err(|e| CommandError::Usage(e.to_string()))?;
    let server = source.server().ok_or_else(|| {
        CommandError::Usage(format!(
            "--database: source {:?} is of type {}, not a database; use --to",
            config.id, config.kind
        ))
    })?;
    let decryption = decryption_for(job, request.source, request.keys)?;
    let (dests, skipped) = destinations(job);
    for m in &skipped {
        tracing::warn!("{m}");
    }
    let refs: Vec<&dyn Destination> = dests.iter().map(|d| d.as_ref()).collect();
    let done = restore::load(
        &refs,
        &restore::LoadRequest {
            source_id: request.source,
            database,
            into,
            at,
            destination: request.destination,
            decryption: decryption.as_ref(),
            force: request.force,
            cancel,
        },
        server,
    )
    .map_err(|error| CommandError::Restore {
        source_id: request.source.to_owned(),
        consequence: match error {
            RestoreError::Server { .. } => format!("database {into:?} may hold part of the dump"),
            _ => format!("nothing was loaded into database {into:?}"),
        },
        error: Box::new(error),
    })?;
    let check = match done.sidecar {
        SidecarCheck::Match => "sha256 matches its sidecar",
        SidecarCheck::Missing => "no sidecar to check",
    };
    Ok(Outcome {
        stderr: format!(
            "restored {} from {} ({} of payload) into database {into:?}{} on the server of source {:?}; {check}\n",
            done.copy.name.path(),
            done.copy.destination,
            size_description(done.payload_bytes as f64),
            if done.created { " (created)" } else { "" },
            request.source,
        ),
        ..Outcome::default()
    })
}

/// The database whose dump is the one object of source `id` ([`Server::single_database`]).
///
/// [`Server::single_database`]: crate::source::databases::Server::single_database
fn single_database(job: &JobConfig, id: &str) -> Option<String> {
    let config = job.sources.iter().find(|s| s.id == id)?;
    let source = runner::build_source(config).ok()?;
    source
        .server()
        .and_then(|s| s.single_database().map(str::to_owned))
}
