//! Runs the hooks of the job and of each source (their config: `job/hooks.rs`) around the
//! runner's work, in this order:
//!
//! job `before` -> for each source: source `before` -> backup -> source `on_error` (when
//! that source failed) -> source `after` (always) -> once every source is done: job
//! `on_error` (when any source failed) -> job `after` (always) -> notifiers.
//!
//! A `before` that fails (or times out) stops the `before` hooks after it and skips its
//! source (the job's: every source), a [`Stage::Hook`] failure in the run result; the
//! `on_error` and `after` hooks of a source whose `before` started still run (an `after`
//! that starts the service a `before` stopped must run). A failing `on_error` or `after` is
//! reported in the source's `hooks` (the job's in every source's) and fails the run, but
//! never touches a stored copy.
//!
//! Each hook is a child through `custos-process`: its own process group, killed whole at its
//! deadline. Its stdout and stderr share one pipe whose lines go to the log (never to the
//! summary on stdout); the pipe's last lines go into a failure's message. A `before` is
//! registered with the run's [`Cancel`] (a signal kills it) and is not started once a signal
//! came; `on_error` and `after` are not registered, so they run after SIGINT/SIGTERM too,
//! within their timeout cut to the time the signal grace leaves ([`crate::engine::interrupt`]).
//! A dry run starts no hook: it checks that each `command`'s program is on PATH and that
//! each `shell` script parses (`sh -n`).

use std::ffi::OsString;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use custos_process::{Exit, ProcessError, Spawn};

use crate::cancel::Cancel;
use crate::engine::interrupt::GRACE;
use crate::job::{Hook, HookCommand, Hooks, JobConfig, SourceConfig};
use crate::naming::RunStamp;
use crate::outcome::{printable, Failure, SourceReport, Stage};

mod check;

pub(crate) use check::check;

/// A hook's deadline when its entry sets no `timeout`: enough to stop or start a service or
/// take a snapshot, short enough that a hung hook does not hold the job for long.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// After a signal, the part of the grace kept for the notifiers (5 s) and the exit.
const RESERVE: Duration = Duration::from_secs(8);
/// A hook's last output bytes kept for its failure message.
const TAIL: usize = 2048;
/// `CUSTOS_ERROR` is cut to this many bytes.
const ERROR_MAX: usize = 4096;

/// Every variable a hook gets; removed from the inherited environment first, so a hook never
/// sees a value left by whoever started `backup`.
const VARS: &[&str] = &[
    "CUSTOS_JOB",
    "CUSTOS_HOOK",
    "CUSTOS_RUN",
    "CUSTOS_HOST",
    "CUSTOS_SOURCE",
    "CUSTOS_OBJECT",
    "CUSTOS_SIZE",
    "CUSTOS_STATUS",
    "CUSTOS_DESTINATIONS",
    "CUSTOS_ERROR",
];

/// Which list a hook is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Before,
    After,
    OnError,
}

impl Phase {
    /// As `CUSTOS_HOOK` and messages say it.
    fn as_str(self) -> &'static str {
        match self {
            Phase::Before => "before",
            Phase::After => "after",
            Phase::OnError => "on_error",
        }
    }
}

/// Variables of a hook's environment.
type Env = Vec<(&'static str, OsString)>;

/// The hooks of one run: the job's, and the facts every hook's environment holds.
pub(crate) struct RunHooks<'a> {
    job: &'a Hooks,
    /// `CUSTOS_JOB`, `CUSTOS_RUN`, `CUSTOS_HOST`.
    facts: Env,
    cancel: Cancel,
    dry_run: bool,
    /// The job's `before` failed: no source runs.
    blocked: Option<Failure>,
}

impl<'a> RunHooks<'a> {
    /// Runs the job's `before` hooks (none on a dry run). `file` is the job file as hooks
    /// see it (absolute).
    pub(crate) fn start(
        job: &'a JobConfig,
        file: &Path,
        stamp: RunStamp,
        hostname: &str,
        dry_run: bool,
        cancel: Cancel,
    ) -> Self {
        let facts = vec![
            ("CUSTOS_JOB", file.as_os_str().to_owned()),
            ("CUSTOS_RUN", stamp.to_string().into()),
            ("CUSTOS_HOST", env_value(hostname)),
        ];
        let blocked = if dry_run {
            None
        } else {
            run_before(&job.hooks.before, "job", &facts, cancel).err()
        };
        RunHooks {
            job: &job.hooks,
            facts,
            cancel,
            dry_run,
            blocked,
        }
    }

    /// Source `s` with its hooks: its `before` hooks, then `backup` unless one of them (or
    /// the job's) failed, then its `on_error` (when it failed) and `after` hooks.
    pub(crate) fn around_source(
        &self,
        s: &SourceConfig,
        backup: impl FnOnce() -> SourceReport,
    ) -> SourceReport {
        if let Some(f) = &self.blocked {
            return skipped(
                s,
                Failure::new(
                    Stage::Hook,
                    format!("source '{}' not run: {}", s.id, f.message),
                    f.retryable,
                ),
            );
        }
        if s.hooks.is_empty() {
            return backup();
        }
        let who = format!("source '{}'", s.id);
        let mut env = self.facts.clone();
        env.push(("CUSTOS_SOURCE", env_value(&s.id)));
        let mut r = match run_before(&s.hooks.before, &who, &env, self.cancel) {
            Ok(()) => backup(),
            Err(f) => skipped(s, f),
        };
        env.extend(source_outcome(&r, self.cancel));
        let failures = run_finish(&s.hooks, !r.succeeded(), &who, &env, self.cancel);
        r.hooks.extend(failures);
        r
    }

    /// Once every source is done: the job's `on_error` (when any source failed) and `after`
    /// hooks (a dry run checks every hook of the job instead). Their failures go to every
    /// source's report, so each notification says the run failed and why.
    pub(crate) fn finish(&self, sources: &mut [SourceReport]) {
        let failures = if self.dry_run {
            check(self.job, "job")
        } else {
            let failed = self.blocked.is_some() || sources.iter().any(|s| !s.succeeded());
            let mut env = self.facts.clone();
            env.extend(job_outcome(sources, self.cancel));
            run_finish(self.job, failed, "job", &env, self.cancel)
        };
        for s in sources {
            s.hooks.extend(failures.iter().cloned());
        }
    }
}

/// The report of a source that did not run because of `failure`.
fn skipped(s: &SourceConfig, failure: Failure) -> SourceReport {
    log_failure(&s.id, &failure);
    let mut r = SourceReport::new(&s.id, &s.name, &s.kind);
    r.failure = Some(failure);
    r
}

/// `ok`, `failed`, or `interrupted` (failed after a signal).
fn status(ok: bool, cancel: Cancel) -> &'static str {
    match (ok, cancel.signal()) {
        (true, _) => "ok",
        (false, Some(_)) => "interrupted",
        (false, None) => "failed",
    }
}

/// What a source's `on_error`/`after` hooks learn of its outcome.
fn source_outcome(r: &SourceReport, cancel: Cancel) -> Env {
    let ok = r.succeeded();
    let stored: Vec<&str> = r
        .destinations
        .iter()
        .filter(|d| d.result.is_ok())
        .map(|d| d.id.as_str())
        .collect();
    let mut env = vec![
        ("CUSTOS_STATUS", status(ok, cancel).into()),
        ("CUSTOS_DESTINATIONS", env_value(&stored.join(" "))),
    ];
    let objects: Vec<&str> = match (&r.object, r.databases.is_empty()) {
        (Some(o), _) => vec![o.as_str()],
        (None, false) => r
            .databases
            .iter()
            .filter_map(|d| d.object.as_deref())
            .collect(),
        (None, true) => r.made.iter().map(String::as_str).collect(),
    };
    if !stored.is_empty() || !r.made.is_empty() {
        env.push(("CUSTOS_OBJECT", env_value(&objects.join(" "))));
    }
    if !stored.is_empty() {
        env.push(("CUSTOS_SIZE", stored_bytes(r).to_string().into()));
    }
    if !ok {
        env.push(("CUSTOS_ERROR", error_value(&r.error_text())));
    }
    env
}

/// What the job's `on_error`/`after` hooks learn of the run.
fn job_outcome(sources: &[SourceReport], cancel: Cancel) -> Env {
    let ok = sources.iter().all(SourceReport::succeeded);
    let size: u64 = sources.iter().map(stored_bytes).sum();
    let mut env = vec![
        ("CUSTOS_STATUS", status(ok, cancel).into()),
        ("CUSTOS_SIZE", size.to_string().into()),
    ];
    if !ok {
        let errors: Vec<String> = sources
            .iter()
            .filter(|s| !s.succeeded())
            .map(SourceReport::error_text)
            .collect();
        env.push(("CUSTOS_ERROR", error_value(&errors.join("; "))));
    }
    env
}

/// Bytes of this source stored at some destination (every database's, for a per-database
/// source).
fn stored_bytes(r: &SourceReport) -> u64 {
    r.stored_bytes
        .unwrap_or_else(|| r.databases.iter().filter_map(|d| d.stored_bytes).sum())
}

/// A value for the environment: a NUL (which no variable can hold) written as `\0`.
fn env_value(s: &str) -> OsString {
    s.replace('\0', "\\0").into()
}

/// An error text for `CUSTOS_ERROR`, cut at a char boundary.
fn error_value(s: &str) -> OsString {
    env_value(custos_kit::text::prefix(s, ERROR_MAX))
}

/// Runs `hooks` in order until one fails; none is started once a signal came.
fn run_before(hooks: &[Hook], who: &str, env: &Env, cancel: Cancel) -> Result<(), Failure> {
    for h in hooks {
        if let Some(sig) = cancel.signal() {
            return Err(Failure::new(
                Stage::Hook,
                format!(
                    "{who}: before hook {} not started: interrupted by signal {sig}",
                    h.at
                ),
                true,
            ));
        }
        run_one(h, Phase::Before, who, env, cancel)?;
    }
    Ok(())
}

/// Runs the `on_error` hooks (when `failed`), then the `after` hooks, each whatever the ones
/// before it did; their failures.
fn run_finish(hooks: &Hooks, failed: bool, who: &str, env: &Env, cancel: Cancel) -> Vec<Failure> {
    let on_error = if failed {
        hooks.on_error.as_slice()
    } else {
        &[]
    };
    let phases = on_error
        .iter()
        .map(|h| (h, Phase::OnError))
        .chain(hooks.after.iter().map(|h| (h, Phase::After)));
    phases
        .filter_map(|(h, phase)| run_one(h, phase, who, env, cancel).err())
        .collect()
}

/// Runs one hook to its end within its deadline; a failure names the hook and carries the
/// last lines it printed.
fn run_one(h: &Hook, phase: Phase, who: &str, env: &Env, cancel: Cancel) -> Result<(), Failure> {
    let fail = |message: String, retryable: bool| {
        let f = Failure::new(
            Stage::Hook,
            format!("{who}: {} hook {message}", phase.as_str()),
            retryable,
        );
        log_failure(who, &f);
        f
    };
    let mut timeout = h
        .timeout
        .map_or(DEFAULT_TIMEOUT, |t| Duration::from_secs(u64::from(t)));
    if let (Phase::After | Phase::OnError, Some(since)) = (phase, cancel.since()) {
        let left = GRACE.saturating_sub(since).saturating_sub(RESERVE);
        if left < Duration::from_secs(1) {
            return Err(fail(
                format!(
                    "{} not started: a signal came and the run must end within {} s of it",
                    h.at,
                    GRACE.as_secs()
                ),
                true,
            ));
        }
        timeout = timeout.min(left);
    }
    let label = format!("{} ({})", h.at, h.run.program());
    tracing::info!(
        hook = %h.at,
        phase = phase.as_str(),
        program = %h.run.program(),
        timeout_seconds = timeout.as_secs(),
        "running hook"
    );
    let mut cmd = command(&h.run);
    for v in VARS {
        cmd.env_remove(v);
    }
    cmd.env("CUSTOS_HOOK", phase.as_str());
    for (k, v) in env {
        cmd.env(k, v);
    }
    // stdout and stderr in one pipe: every line to the log, the last ones for a failure.
    let mut spawn = Spawn::new(label.clone(), cmd)
        .merge_output()
        .tail(TAIL)
        .on_stderr_line(log_line);
    if phase == Phase::Before {
        spawn = spawn.registry(cancel.producers());
    }
    let result = spawn
        .spawn()
        .and_then(|mut child| child.wait_timeout(timeout))
        .and_then(Exit::require_success);
    match result {
        Ok(_) => {
            tracing::info!(hook = %h.at, phase = phase.as_str(), "hook done");
            Ok(())
        }
        Err(ProcessError::Signaled { .. }) if phase == Phase::Before && cancel.is_cancelled() => {
            let sig = cancel.signal().unwrap_or(0);
            Err(fail(format!("{label} interrupted by signal {sig}"), true))
        }
        Err(e) => {
            let retryable = matches!(e, ProcessError::TimedOut { .. });
            Err(fail(e.to_string(), retryable))
        }
    }
}

/// The command of a hook: its argv as written, or its script through `/bin/sh -c`.
fn command(run: &HookCommand) -> Command {
    match run {
        HookCommand::Argv(argv) => {
            let (program, args) = argv.split_first().map_or(("", &[][..]), |(p, a)| (p, a));
            let mut c = Command::new(program);
            c.args(args);
            c
        }
        HookCommand::Shell(script) => {
            let mut c = Command::new("/bin/sh");
            c.arg("-c").arg(script);
            c
        }
    }
}

/// A line a hook printed, to the log (never to the summary on stdout).
fn log_line(label: &str, line: &str) {
    tracing::info!(hook = %label, "{}", printable(line));
}

pub(super) fn log_failure(who: &str, f: &Failure) {
    tracing::error!(
        who,
        stage = f.stage.as_str(),
        retryable = f.retryable,
        "{}",
        f.message
    );
}

#[cfg(test)]
mod tests;
