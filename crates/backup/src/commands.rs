//! The commands, the library's only public surface (the CLI in `main.rs` is its one user):
//! `run`, `list`, `restore`, `verify`, `prune`, `schedule` and `status`: which job, destinations and keys to use, and what
//! to print. `list`, `restore` and `verify` return an [`Outcome`] (the text for stdout and
//! stderr, and whether anything failed), `run` a [`RunOutcome`], or a [`CommandError`]; the
//! CLI prints the one and turns the other into an exit code.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cancel::Cancel;
use crate::coverage::{Cell, Column, Coverage};
use crate::crypto::{self, CryptoError, Decryption};
use crate::destination::Destination;
use crate::engine::{fanout, interrupt, lock, retention, runner};
use crate::job::{self, JobConfig, Protection};
use crate::naming::RunStamp;
use crate::outcome::{printable, size_description};
use crate::restore::{self, RestoreError, RestoreOptions, RestoreTarget, SidecarCheck};
use crate::schedule::{self, Schedule};
use crate::status;
use crate::table;
use custos_kit::config::Strictness;
use custos_kit::logging::LogTail;

/// How to open objects encrypted to `recipients` (passphrase sources use the config).
#[derive(Debug, Clone, Default)]
pub struct Keys {
    /// Secret key file (armored or binary).
    pub key: Option<PathBuf>,
    /// Environment variable holding the passphrase that unlocks `key`.
    pub key_passphrase_env: Option<String>,
    /// gpg home for objects opened by gpg (recipients without `key`); default `$GNUPGHOME`.
    pub gnupg_home: Option<PathBuf>,
}

/// Why a command could not do its job.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// Bad usage or config (the CLI's exit code 2).
    #[error("{0}")]
    Usage(String),
    /// Another run of the job holds its lock.
    #[error(transparent)]
    Lock(#[from] lock::LockError),
    /// The `--key` file cannot be used.
    #[error(transparent)]
    Key(#[from] CryptoError),
    /// The copy could not be restored; `consequence` says what that means for the output.
    #[error("restoring source {source_id:?} failed, {consequence}")]
    Restore {
        source_id: String,
        consequence: String,
        #[source]
        error: Box<RestoreError>,
    },
}

impl CommandError {
    /// True for bad usage or config, as opposed to a failure while working.
    pub fn is_usage(&self) -> bool {
        matches!(self, CommandError::Usage(_))
    }
}

/// What a command has to say, and whether anything failed (the CLI's exit code 1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub stdout: String,
    pub stderr: String,
    pub failed: bool,
    /// `list`: a copy is missing at a destination whose retention would keep it.
    pub missing_copies: bool,
}

/// A job file, read and checked ([`load`]).
#[derive(Debug)]
pub struct Job(JobConfig);

/// Loads the job file and checks what the engine needs of it (upload rate limits against
/// stall timeouts); any problem with it (a key nothing reads, when `strictness` is strict)
/// is a [`CommandError::Usage`].
pub fn load(path: &Path, strictness: Strictness) -> Result<Job, CommandError> {
    let job = job::load(path, strictness).map_err(|e| CommandError::Usage(e.to_string()))?;
    fanout::check_rate_limits(&job).map_err(|e| CommandError::Usage(e.to_string()))?;
    Ok(Job(job))
}

/// SIGINT and SIGTERM for one command: `run` and `restore` watch them; they cancel the command
/// (producers killed, writers aborted, a restore's staging directory removed).
#[derive(Debug, Clone, Copy, Default)]
pub struct Signals(Cancel);

impl Signals {
    /// Not yet watching.
    pub fn new() -> Self {
        Signals(Cancel::new())
    }

    /// Starts watching; a failure to do so is logged (the command still runs).
    fn watch(self) {
        if let Err(e) = interrupt::install(self.0) {
            tracing::warn!("cannot watch for SIGINT/SIGTERM: {e}");
        }
    }

    /// 130 (SIGINT) or 143 (SIGTERM) once a signal cancelled the command.
    pub fn exit_code(self) -> Option<u8> {
        interrupt::exit_code(self.0)
    }
}

/// What `backup run` is asked for.
#[derive(Debug, Clone)]
pub struct RunRequest<'a> {
    /// The job file (locked for the run).
    pub config: &'a Path,
    /// Check the config and reach every source and destination; write nothing.
    pub dry_run: bool,
    /// How long to wait for another run of this job to finish.
    pub lock_wait: Duration,
    /// Draw a progress bar on stderr.
    pub progress_bar: bool,
    /// The process's last log lines, for the notifiers that carry them.
    pub log_tail: Option<LogTail>,
}

/// What a run did, as the CLI shows it.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// The summary table.
    pub table: String,
    /// Every backup and every notification succeeded.
    pub success: bool,
    /// 0 or 1 ([`RunOutcome::success`]), 130/143 when a signal stopped the run.
    pub exit_code: u8,
}

/// `backup run` (and `--dry-run`): holds the job's lock (not for a dry run, which writes
/// nothing), runs every source to every destination, then the notifiers.
pub fn run(
    job: &Job,
    request: RunRequest<'_>,
    signals: Signals,
) -> Result<RunOutcome, CommandError> {
    signals.watch();
    // Held until the run is over.
    let _lock = if request.dry_run {
        None
    } else {
        Some(lock::acquire(request.config, request.lock_wait)?)
    };
    let report = runner::run(
        &job.0,
        &runner::Options {
            dry_run: request.dry_run,
            progress_bar: request.progress_bar,
            log_tail: request.log_tail,
            cancel: signals.0,
        },
    );
    Ok(RunOutcome {
        table: report.table(),
        success: report.success(),
        exit_code: signals
            .exit_code()
            .unwrap_or(u8::from(report.exit_code() != 0)),
    })
}

/// Destinations of the job; one that cannot be built (an unreadable key file, a bad
/// endpoint) comes back as its error message, so the others are still listed.
fn destinations(job: &JobConfig) -> (Vec<Box<dyn Destination>>, Vec<String>) {
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for d in &job.destinations {
        match d.build() {
            Ok(b) => out.push(b),
            Err(e) => skipped.push(e.to_string()),
        }
    }
    (out, skipped)
}

/// How to open a source's objects: its passphrase from the config; for recipients (or a
/// source no longer in the config) a `--key` file, else the user's gpg and its agent.
fn decryption_for(
    job: &JobConfig,
    source_id: &str,
    keys: &Keys,
) -> Result<Option<Decryption>, CommandError> {
    if let Some(file) = &keys.key {
        let secret = crypto::load_secret_keys(file)?;
        let passphrase = match &keys.key_passphrase_env {
            Some(var) => Some(crypto::Passphrase::new(std::env::var(var).map_err(
                |_| CommandError::Usage(format!("--key-passphrase-env: variable {var} is not set")),
            )?)),
            None => None,
        };
        return Ok(Some(Decryption::SecretKeys {
            keys: secret,
            passphrase,
        }));
    }
    let source = job.sources.iter().find(|s| s.id == source_id);
    Ok(match source.and_then(|s| s.protection()) {
        Some(Protection::Passphrase(p)) => {
            Some(Decryption::Passphrase(crypto::Passphrase::new(p.expose())))
        }
        // compress_only objects are not encrypted; one made before the config changed still
        // can be opened by gpg.
        Some(Protection::CompressOnly) | Some(Protection::Recipients(_)) | None => {
            Some(Decryption::Gpg {
                gnupg_home: keys.gnupg_home.clone(),
            })
        }
    })
}

/// What `backup list` is asked for.
#[derive(Debug, Clone, Copy, Default)]
pub struct ListRequest<'a> {
    /// Only this source id.
    pub source: Option<&'a str>,
    /// One row per copy per destination (object name, sidecar) instead of the side-by-side
    /// table.
    pub long: bool,
}

/// `backup list`: the stored copies (of `source` only, if given). By default one row per
/// copy (source and run) with a column per destination, so a copy one destination lacks
/// stands out, then a `missing:` line per such copy ([`Outcome::missing_copies`]); with
/// `long`, a row per copy per destination. Future-dated copies are warned about and
/// destinations that cannot be listed go to stderr and fail the command.
pub fn list(job: &Job, request: ListRequest<'_>) -> Outcome {
    let job = &job.0;
    let (dests, skipped) = destinations(job);
    let refs: Vec<&dyn Destination> = dests.iter().map(|d| d.as_ref()).collect();
    let listing = restore::list(&refs, request.source);
    let mut out = Outcome::default();
    if request.long {
        out.stdout = long_table(&listing);
    } else {
        let columns = dests
            .iter()
            .map(|d| Column {
                id: d.id().to_owned(),
                retention: job
                    .destinations
                    .iter()
                    .find(|c| c.id == d.id())
                    .map(|c| c.retention)
                    .unwrap_or_default(),
                unlisted: false,
            })
            .collect();
        let coverage = Coverage::new(&listing, columns, std::time::SystemTime::now());
        out.stdout = side_by_side(&coverage);
        out.missing_copies = coverage.gaps().next().is_some();
    }
    if listing.copies.is_empty() {
        out.stdout.push_str("(no copies)\n");
    }
    for c in listing.copies.iter().filter(|c| c.is_future()) {
        out.stderr.push_str(&format!(
            "backup: warning: {}: copy {} is dated in the future (clock ran ahead, or planted?); \
             retention leaves it alone and restore skips it without --at\n",
            c.destination,
            c.name.path()
        ));
    }
    let errors = listing.errors.iter().map(ToString::to_string);
    for m in skipped.into_iter().chain(errors) {
        out.stderr.push_str(&format!("backup: {m}\n"));
        out.failed = true;
    }
    out
}

/// `list --long`: a row per copy per destination.
fn long_table(listing: &restore::Listing) -> String {
    let mut rows = vec![[
        "SOURCE".to_owned(),
        "TIMESTAMP".to_owned(),
        "DESTINATION".to_owned(),
        "SIZE".to_owned(),
        "AGE".to_owned(),
        "SHA256".to_owned(),
        "OBJECT".to_owned(),
    ]];
    for c in &listing.copies {
        rows.push([
            c.name.source_id.clone(),
            c.name.stamp.to_string(),
            c.destination.clone(),
            size_description(c.size as f64),
            status::age(c.age().num_seconds()),
            if c.has_sidecar { "yes" } else { "none" }.to_owned(),
            c.name.path(),
        ]);
    }
    table::render(&rows, &[3])
}

/// The default `list`: a row per copy, a column per destination, then a line per copy that
/// a destination lacks.
fn side_by_side(coverage: &Coverage) -> String {
    let mut header = vec![
        "SOURCE".to_owned(),
        "TIMESTAMP".to_owned(),
        "AGE".to_owned(),
    ];
    header.extend(coverage.columns.iter().map(|c| c.id.clone()));
    let mut rows = vec![header];
    let now = chrono::Local::now().naive_local();
    for r in &coverage.rows {
        let mut row = vec![
            r.source_id.clone(),
            r.stamp.to_string(),
            status::age(r.stamp.age(now).num_seconds()),
        ];
        row.extend(r.cells.iter().map(|c| match c {
            Cell::Present {
                size,
                has_sidecar: true,
            } => size_description(*size as f64),
            Cell::Present {
                size,
                has_sidecar: false,
            } => format!("{}, no sha256", size_description(*size as f64)),
            Cell::Expired => "expired".to_owned(),
            Cell::Missing => MISSING.to_owned(),
            Cell::Unknown => "unknown".to_owned(),
        }));
        rows.push(row);
    }
    let mut out = table::render(&rows, &[]);
    for r in coverage.gaps() {
        let on: Vec<&str> = r
            .missing()
            .map(|i| coverage.columns[i].id.as_str())
            .collect();
        out.push_str(&format!(
            "missing: {} {} on {}\n",
            r.source_id,
            r.stamp,
            on.join(", ")
        ));
    }
    out
}

/// The cell of a destination that lacks a copy its retention would keep.
const MISSING: &str = "MISSING";

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

/// `--at`, as `backup list` shows it.
fn parse_at(at: Option<&str>) -> Result<Option<RunStamp>, CommandError> {
    Ok(match at {
        Some(s) => Some(RunStamp::parse(s).ok_or_else(|| {
            CommandError::Usage(format!(
                "--at {s:?}: expected YYYYmmddHHMMSS, as `backup list` shows"
            ))
        })?),
        None => None,
    })
}

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

/// What `backup schedule` is asked for.
#[derive(Debug, Clone)]
pub struct ScheduleRequest<'a> {
    /// The job file (made absolute).
    pub config: &'a Path,
    /// `OnCalendar=`: `daily`, `weekly`, ... or a systemd calendar expression.
    pub on: &'a str,
    /// `RandomizedDelaySec=` in seconds.
    pub randomized_delay: u32,
    /// The user the job runs as.
    pub user: &'a str,
    /// A crontab line instead of systemd units.
    pub cron: bool,
    /// Write the units into this directory (and enable the timer when it is systemd's).
    pub install: Option<&'a Path>,
}

/// Where `--install` writes units when not told otherwise; only there is the timer enabled.
pub const SYSTEM_UNIT_DIR: &str = "/etc/systemd/system";

/// `backup schedule`: prints (or installs) the service template and the job's timer, or a
/// crontab line.
pub fn schedule(request: ScheduleRequest<'_>) -> Result<Outcome, CommandError> {
    let usage = |e: &dyn std::fmt::Display| CommandError::Usage(e.to_string());
    let job = std::fs::canonicalize(request.config)
        .map_err(|e| CommandError::Usage(format!("{}: {e}", request.config.display())))?;
    let exe = std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .map_err(|e| CommandError::Usage(format!("cannot tell where this binary is: {e}")))?;
    let s = Schedule {
        job,
        on: request.on.to_owned(),
        randomized_delay: request.randomized_delay,
        user: request.user.to_owned(),
        exe,
    };
    s.validate().map_err(|e| usage(&e))?;
    if request.cron {
        return Ok(Outcome {
            stdout: s.cron().map_err(|e| usage(&e))?,
            ..Outcome::default()
        });
    }
    let timer_name = s.timer_name();
    let units = [
        (schedule::TEMPLATE.to_owned(), s.service()),
        (timer_name.clone(), s.timer()),
    ];
    let enable = format!("systemctl daemon-reload && systemctl enable --now '{timer_name}'");
    let Some(dir) = request.install else {
        let mut stdout = String::new();
        for (name, text) in &units {
            stdout.push_str(&format!("# {SYSTEM_UNIT_DIR}/{name}\n{text}\n"));
        }
        stdout.push_str(&format!("# then: {enable}\n"));
        return Ok(Outcome {
            stdout,
            ..Outcome::default()
        });
    };
    let mut stdout = String::new();
    for (name, text) in &units {
        let path = dir.join(name);
        std::fs::write(&path, text)
            .map_err(|e| CommandError::Usage(format!("{}: {e}", path.display())))?;
        stdout.push_str(&format!("wrote {}\n", path.display()));
    }
    if dir == Path::new(SYSTEM_UNIT_DIR) && Path::new("/run/systemd/system").is_dir() {
        for args in [&["daemon-reload"][..], &["enable", "--now", &timer_name]] {
            systemctl(args).map_err(|e| CommandError::Usage(e.to_string()))?;
        }
        stdout.push_str(&format!("enabled and started {timer_name}\n"));
    } else {
        stdout.push_str(&format!("to enable it: {enable}\n"));
    }
    Ok(Outcome {
        stdout,
        ..Outcome::default()
    })
}

fn systemctl(args: &[&str]) -> Result<(), custos_process::ProcessError> {
    let mut cmd = std::process::Command::new("systemctl");
    cmd.args(args);
    custos_process::Spawn::new("systemctl", cmd)
        .spawn()?
        .wait_timeout(Duration::from_secs(60))?
        .require_success()
        .map(drop)
}
