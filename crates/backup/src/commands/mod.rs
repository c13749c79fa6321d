//! The commands, the library's only public surface (the CLI in `main.rs` is its one user):
//! `run`, `list`, `restore`, `ls`, `verify`, `prune`, `schedule` and `status`: which job,
//! destinations and keys to use, and what to print. Most return an [`Outcome`] (the text for
//! stdout and stderr, and whether anything failed), `run` a [`RunOutcome`], or a
//! [`CommandError`]; the CLI prints the one and turns the other into an exit code.
//!
//! This file holds what the commands share (the loaded [`Job`], [`Keys`], [`Signals`], the
//! job's destinations, how a source's copies are opened); each command family has its file.

use std::path::{Path, PathBuf};

use crate::cancel::Cancel;
use crate::crypto::{self, CryptoError, Decryption};
use crate::destination::Destination;
use crate::engine::{fanout, interrupt, lock};
use crate::job::{self, JobConfig, Protection};
use crate::naming::RunStamp;
use crate::restore::RestoreError;
use custos_kit::config::Strictness;

mod list;
mod ls;
mod prune;
mod restore;
mod run;
mod schedule;
mod status;
mod verify;

pub use crate::restore::Percent;
pub use list::{list, ListRequest};
pub use ls::{ls, LsRequest};
pub use prune::{prune, PruneRequest};
pub use restore::{restore, RestoreRequest};
pub use run::{run, RunOutcome, RunRequest};
pub use schedule::{schedule, ScheduleRequest, SYSTEM_UNIT_DIR};
pub use status::{status, StatusRequest};
pub use verify::{verify, VerifyRequest};

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
