//! `backup run`: the job's lock, the runner, the exit code.

use std::path::Path;
use std::time::Duration;

use super::{CommandError, Job, Signals};
use crate::engine::{lock, runner};
use custos_kit::logging::LogTail;

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
