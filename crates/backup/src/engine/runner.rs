//! Runs a job: every source, each streamed once through the pipeline to every destination,
//! then retention where the upload succeeded.
//!
//! Failures stay where they happen: a source that fails does not stop the next one, a
//! destination that fails does not stop the others (the original skipped every destination
//! after the first failing one), and nothing that failed is reported as success (the original
//! exits 0 when sources fail). The run's result is a typed [`RunReport`]; the summary table,
//! the exit code and the notifications are views of it. Notifiers run last (and, for
//! `notify_on_start`, first); their failures count in the exit code but never change a
//! source's own result.
//!
//! Sources run up to `max_parallel_sources` at once ([`parallel`]), each through its own
//! pipeline; the report keeps config order. Progress: one line per running source on a
//! terminal, log lines otherwise ([`progress`]).

use std::time::{Duration, Instant, SystemTime};

use crate::cancel::Cancel;
use crate::crypto::{self, Encryption};
use crate::destination::Destination;
use crate::engine::hooks::{self, RunHooks};
use crate::engine::parallel::{self, Upload, Uploads};
use crate::engine::pipeline::{self, Plan};
use crate::engine::report::FailureFrom;
use crate::engine::retention;
use crate::job::{Compression, DestinationConfig, JobConfig, Layout, Protection, SourceConfig};
use crate::naming::{self, Encoding, ObjectName, Payload, RunStamp};
use crate::notify::{self, StartInfo};
use crate::outcome::{
    DestinationCheck, DestinationReport, Failure, Retention, RunReport, SourceReport, Stage,
};
use crate::source::{Owner, Retry, Source};
use progress::ProgressReport;

/// How to run.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Validate, reach every source and destination (`check()`), resolve keys; write nothing.
    pub dry_run: bool,
    /// Draw a progress bar on stderr (the CLI sets it when stderr is a terminal).
    pub progress_bar: bool,
    /// The process's last log lines, copied into the report for the notifiers.
    pub log_tail: Option<custos_kit::logging::LogTail>,
    /// Cancelled by SIGINT/SIGTERM: handed to every source's check and producer; the run
    /// then starts nothing more and applies no retention.
    pub cancel: Cancel,
}

/// A destination ready to use, or why it cannot be.
struct Target {
    config: DestinationConfig,
    built: Result<Box<dyn Destination>, SetupError>,
    /// Its uploads in flight, shared by the sources running at once.
    uploads: Uploads,
}

/// A source or destination of the config that cannot be set up for this run; only that
/// entry fails, the others run.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("source '{id}': no passphrase or recipients (and not compress_only)")]
    NoProtection { id: String },
    #[error("source '{id}': {source}")]
    Keys {
        id: String,
        #[source]
        source: crypto::CryptoError,
    },
    #[error(transparent)]
    Destination(#[from] crate::destination::DestinationError),
}

impl SetupError {
    /// The failure the report shows for the entry.
    pub fn failure(&self) -> Failure {
        match self {
            SetupError::Destination(e) => Failure::from_destination(Stage::Setup, e),
            other => Failure::new(Stage::Setup, other.to_string(), false),
        }
    }
}

/// Builds the source of a config entry.
pub fn build_source(s: &SourceConfig) -> Result<Box<dyn Source>, SetupError> {
    Ok(s.spec.build(&s.id, &s.name))
}

/// The pipeline plan of a source: layout, compression, encryption keys (recipients are
/// resolved here, so a missing key fails this source only).
pub fn build_plan(s: &SourceConfig) -> Result<Plan, SetupError> {
    let encryption = match s.protection() {
        None => return Err(SetupError::NoProtection { id: s.id.clone() }),
        Some(Protection::CompressOnly) => None,
        Some(Protection::Passphrase(p)) => {
            Some(Encryption::Passphrase(crypto::Passphrase::new(p.expose())))
        }
        Some(Protection::Recipients(r)) => Some(Encryption::Recipients(
            crypto::load_recipients(r, s.keyring.as_deref()).map_err(|source| {
                SetupError::Keys {
                    id: s.id.clone(),
                    source,
                }
            })?,
        )),
    };
    if s.layout == Layout::Original {
        return Ok(match encryption {
            Some(e) => Plan::original(e),
            None => Plan::compress_only(),
        });
    }
    let mut plan = match encryption {
        Some(e) => Plan::custos(e),
        None => Plan {
            encoding: Encoding {
                compression: naming::Compression::Zstd,
                encrypted: false,
            },
            encryption: None,
            zstd_level: pipeline::DEFAULT_ZSTD_LEVEL,
            zstd_threads: parallel::zstd_threads(),
        },
    };
    plan.encoding.compression = match s.compression {
        Compression::Zstd => naming::Compression::Zstd,
        Compression::Gzip => naming::Compression::Gzip,
    };
    if let Some(level) = s.compression_level {
        plan.zstd_level = level;
    }
    Ok(plan)
}

/// Runs (or with `dry_run` checks) the whole job, then reports it to the notifiers.
pub fn run(job: &JobConfig, options: &Options) -> RunReport {
    let hostname = job.hostname();
    // Tags what sources create in a cloud, so the next run finds what a killed one left
    // (the same file whatever the working directory it is named from).
    let file = std::fs::canonicalize(&job.file).unwrap_or_else(|_| job.file.clone());
    let owner_job = format!("{hostname}:{}", file.display());
    tracing::info!(
        file = %job.file.display(),
        host = %hostname,
        dry_run = options.dry_run,
        "job started"
    );
    let targets = build_targets(job);
    let stamp = if options.dry_run {
        RunStamp::now()
    } else {
        free_stamp(job, &targets)
    };
    tracing::info!(run = %stamp, "run stamp");
    let mut report = RunReport::new(stamp, hostname, options.dry_run);
    let started = if options.dry_run {
        Vec::new()
    } else {
        let infos: Vec<StartInfo> = job
            .sources
            .iter()
            .map(|s| StartInfo {
                id: s.id.clone(),
                name: s.name.clone(),
                kind: s.kind.clone(),
            })
            .collect();
        notify::start(&job.notifications, &report.hostname, &infos)
    };
    if options.dry_run {
        for t in &targets {
            let result = match &t.built {
                Ok(d) => d
                    .check()
                    .map_err(|e| Failure::from_destination(Stage::Check, &e)),
                Err(e) => Err(e.failure()),
            };
            log_result("-", &t.config.id, &result);
            report.checks.push(DestinationCheck {
                id: t.config.id.clone(),
                result,
            });
        }
    }
    // The job's `before` hooks run here; each source's hooks run around it.
    let hooks = RunHooks::start(
        job,
        &file,
        stamp,
        &report.hostname,
        options.dry_run,
        options.cancel,
    );
    let workers = parallel::workers(job.max_parallel_sources, job.sources.len());
    if workers > 1 {
        tracing::info!(
            sources = job.sources.len(),
            at_once = workers,
            "running sources in parallel"
        );
    }
    // Config order in the report, whatever order the sources end in.
    report.sources = parallel::run_each(&job.sources, workers, |s| {
        if let Some(sig) = options.cancel.signal() {
            let mut r = SourceReport::new(&s.id, &s.name, &s.kind);
            let f = not_run(sig);
            log_result(&s.id, "-", &Err(f.clone()));
            r.failure = Some(f);
            r
        } else if options.dry_run {
            check_source(s, options.cancel)
        } else {
            hooks.around_source(s, || {
                run_source(s, build_source(s), &targets, stamp, options, &owner_job)
            })
        }
    });
    hooks.finish(&mut report.sources);
    report.ended = std::time::SystemTime::now();
    if let Some(t) = &options.log_tail {
        report.log_tail = t.lines();
    }
    if !options.dry_run {
        // Interrupted: still report the failure, but quickly.
        let cap = options.cancel.signal().map(|_| Duration::from_secs(5));
        report.notifications = notify::finish(&job.notifications, &report, started, cap);
    }
    tracing::info!(
        run = %report.stamp,
        ok = report.backups_succeeded(),
        notifications_ok = report.notifications_succeeded(),
        "job finished"
    );
    report
}

/// Every destination of the job, built (or why it cannot be).
fn build_targets(job: &JobConfig) -> Vec<Target> {
    job.destinations
        .iter()
        .map(|d| {
            let built = d.build().map_err(SetupError::from);
            let limit = built.as_ref().ok().and_then(|b| b.max_uploads());
            Target {
                config: d.clone(),
                built,
                uploads: Uploads::new(limit),
            }
        })
        .collect()
}

/// A source a signal kept from starting.
fn not_run(signal: i32) -> Failure {
    Failure::new(
        Stage::Source,
        format!("not run: interrupted by signal {signal}"),
        true,
    )
}

/// One upload of each usable destination, for the source `id` (waits while a destination
/// that takes few at once is busy with other sources); `Err(signal)` when a signal came
/// meanwhile.
fn take_uploads<'a>(
    id: &str,
    usable: &[&'a Target],
    cancel: Cancel,
) -> Result<Vec<Upload<'a>>, i32> {
    let uploads: Vec<&Uploads> = usable.iter().map(|t| &t.uploads).collect();
    parallel::take_all(&uploads, cancel, |i| {
        let Some(t) = usable.get(i) else { return };
        tracing::info!(
            source = id,
            destination = %t.config.id,
            at_once = t.uploads.limit().map_or(0, |l| l.get()),
            "waiting for the destination: it takes this many uploads at once"
        );
    })
}

/// This run's stamp: now, or, when a copy of any source already has that stamp at a
/// destination (an earlier run in the same second), the next second on the clock, so a
/// committed object is never overwritten. (Objects are committed without replacing, too.)
fn free_stamp(job: &JobConfig, targets: &[Target]) -> RunStamp {
    let taken = |stamp: RunStamp| {
        targets
            .iter()
            .filter_map(|t| t.built.as_ref().ok())
            .any(|d| {
                job.sources.iter().any(|s| {
                    d.list(&format!("{}/{stamp}/", s.id))
                        .is_ok_and(|l| !l.is_empty())
                })
            })
    };
    let mut stamp = RunStamp::now();
    for _ in 0..10 {
        if !taken(stamp) {
            break;
        }
        tracing::info!(run = %stamp, "a copy with this stamp exists; moving to the next second");
        loop {
            let sub = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            std::thread::sleep(Duration::from_nanos(u64::from(1_000_000_000 - sub)));
            let next = RunStamp::now();
            if next > stamp {
                stamp = next;
                break;
            }
        }
    }
    stamp
}

fn log_result(source: &str, destination: &str, result: &Result<(), Failure>) {
    match result {
        Err(f) => tracing::error!(
            source,
            destination,
            stage = f.stage.as_str(),
            retryable = f.retryable,
            "{}",
            f.message
        ),
        Ok(()) => tracing::info!(source, destination, "ok"),
    }
}

fn check_source(s: &SourceConfig, cancel: Cancel) -> SourceReport {
    let mut r = SourceReport::new(&s.id, &s.name, &s.kind);
    let result = build_source(s).map_err(|e| e.failure()).and_then(|source| {
        if source.payload() {
            build_plan(s).map_err(|e| e.failure())?;
        }
        source
            .check(cancel)
            .map_err(|e| Failure::from_source(Stage::Check, &format!("source '{}'", s.id), &e))
    });
    log_result(&s.id, "-", &result);
    r.failure = result.err();
    r.hooks = hooks::check(&s.hooks, &format!("source '{}'", s.id));
    r.ended = std::time::SystemTime::now();
    r
}

/// Streams one source to every usable destination, then applies retention where the copy
/// was stored.
fn run_source(
    s: &SourceConfig,
    built: Result<Box<dyn Source>, SetupError>,
    targets: &[Target],
    stamp: RunStamp,
    options: &Options,
    owner_job: &str,
) -> SourceReport {
    let mut r = SourceReport::new(&s.id, &s.name, &s.kind);
    let usable: Vec<&Target> = targets.iter().filter(|t| t.built.is_ok()).collect();
    let source = match built {
        Ok(source) => source,
        Err(e) => {
            r.failure = Some(e.failure());
            return finish_source(r, targets);
        }
    };
    let owner = Owner {
        job: owner_job.to_owned(),
        source: s.id.clone(),
    };
    match source.prepare(&owner, options.cancel) {
        Ok(removed) => {
            for resource in removed {
                tracing::info!(source = %s.id, %resource, "removed what a killed run left");
            }
        }
        Err(e) => r.cleanup.push(cleanup_failure(&s.id, &e)),
    }
    if !source.payload() {
        return make_in_place(r, source.as_ref(), options.cancel);
    }
    let plan = match build_plan(s) {
        Ok(plan) => plan,
        Err(e) => {
            r.failure = Some(e.failure());
            release(source.as_ref(), &mut r, options.cancel);
            return finish_source(r, targets);
        }
    };
    if usable.is_empty() {
        release(source.as_ref(), &mut r, options.cancel);
        return finish_source(r, targets);
    }
    let context = format!("source '{}'", s.id);
    let databases = match source.databases(options.cancel) {
        Ok(d) => d,
        Err(e) => {
            r.failure = Some(Failure::from_source(Stage::Source, &context, &e));
            release(source.as_ref(), &mut r, options.cancel);
            return finish_source(r, targets);
        }
    };
    // Held until the copy and its retention are done.
    let _uploads = match take_uploads(&s.id, &usable, options.cancel) {
        Ok(held) => held,
        Err(sig) => {
            r.failure = Some(not_run(sig));
            release(source.as_ref(), &mut r, options.cancel);
            return finish_source(r, targets);
        }
    };
    remove_abandoned(s, &usable);
    if let Some(names) = databases {
        databases::run(
            &mut r,
            s,
            source.as_ref(),
            &names,
            (&plan, stamp),
            &usable,
            options,
        );
        release(source.as_ref(), &mut r, options.cancel);
        return finish_source(r, targets);
    }
    let object = ObjectName {
        source_id: s.id.clone(),
        stamp,
        database: None,
        payload: Payload::from_suffix(source.suffix()).unwrap_or(Payload::Tar),
        encoding: plan.encoding,
    }
    .path();
    tracing::info!(source = %s.id, name = %s.name, kind = %s.kind, object = %object, "backing up");
    let opened = source.open(options.cancel);
    let (outcome, read) = stream(
        opened, &s.id, s.timeout, &plan, &object, &usable, options, &context,
    );
    // A failed source still shows what it read before it failed.
    if outcome.is_err() {
        r.input_bytes = read.map(|(bytes, _)| bytes);
        r.dump = read.map(|(_, d)| d).unwrap_or_default();
    }
    // The stream has ended (or never started): what the source created goes now, before
    // retention, whatever happened (a signal included: the run still waits for this).
    release(source.as_ref(), &mut r, options.cancel);
    match outcome {
        Err(f) => r.failure = Some(f),
        Ok(out) => {
            r.object = Some(out.object.clone());
            r.input_bytes = Some(out.source_bytes);
            // Size and digest of a copy that is stored somewhere; when every destination
            // failed they describe bytes that no longer exist anywhere.
            if out.destinations.iter().any(|d| d.result.is_ok()) {
                r.stored_bytes = Some(out.size);
                r.sha256 = Some(out.sha256.clone());
            }
            r.dump = out.dump;
            for d in &out.destinations {
                let mut dr = DestinationReport {
                    id: d.destination.clone(),
                    upload: d.upload,
                    result: d
                        .result
                        .as_ref()
                        .map(|_| ())
                        .map_err(|e| Failure::from_destination(Stage::Upload, e)),
                    retention: None,
                };
                // Retention only where this run's copy is safely stored, and not once a
                // signal asked the run to stop.
                if dr.result.is_ok() && options.cancel.signal().is_none() {
                    if let Some(t) = usable.iter().find(|t| t.config.id == d.destination) {
                        if let Ok(dest) = &t.built {
                            dr.retention = Some(apply_retention(dest.as_ref(), &s.id, t, stamp));
                        }
                    }
                }
                r.destinations.push(dr);
            }
        }
    }
    finish_source(r, targets)
}

/// A source without a payload (an EBS snapshot): its work, its cleanup, what it made.
fn make_in_place(mut r: SourceReport, source: &dyn Source, cancel: Cancel) -> SourceReport {
    tracing::info!(source = %r.id, name = %r.name, kind = %r.kind, "making in place");
    let started = Instant::now();
    match source.make(cancel) {
        Ok(made) => {
            tracing::info!(source = %r.id, made = %made.join(" "), "made");
            r.made = made;
        }
        Err(e) => {
            let f = Failure::from_source(Stage::Source, &format!("source '{}'", r.id), &e);
            log_result(&r.id, "-", &Err(f.clone()));
            r.failure = Some(f);
        }
    }
    r.dump = started.elapsed();
    release(source, &mut r, cancel);
    r.ended = SystemTime::now();
    r
}

/// Runs the source's cleanup step; each resource it could not release is a failure of the
/// source in the report (and the exit code), named.
fn release(source: &dyn Source, r: &mut SourceReport, cancel: Cancel) {
    for e in source.cleanup(cancel) {
        r.cleanup.push(cleanup_failure(&r.id, &e));
    }
}

fn cleanup_failure(source: &str, e: &crate::source::CleanupError) -> Failure {
    let f = Failure::new(
        Stage::Cleanup,
        format!("source '{source}': cleanup: {e}"),
        e.retry == Retry::Transient,
    );
    log_result(source, "-", &Err(f.clone()));
    f
}

/// Half-written objects of this source's killed runs go first (space comes back before
/// the new copy needs it). A failure here only costs space: log it and carry on.
fn remove_abandoned(s: &SourceConfig, usable: &[&Target]) {
    let prefix = format!("{}/", s.id);
    for t in usable {
        if let Ok(dest) = &t.built {
            if let Err(e) = dest.remove_abandoned(&prefix) {
                tracing::warn!(source = %s.id, destination = %t.config.id, "cannot remove partial objects of earlier runs: {e}");
            }
        }
    }
}

/// Streams one opened source (or its failure to open) as `object` to every usable
/// destination, within `timeout` seconds, showing progress as `label`; also returns what
/// was read and for how long when the stream started (a failed source's summary row shows
/// it).
#[allow(clippy::too_many_arguments)]
fn stream(
    opened: Result<Box<dyn crate::source::SourceStream>, crate::source::SourceError>,
    label: &str,
    timeout: Option<u32>,
    plan: &Plan,
    object: &str,
    usable: &[&Target],
    options: &Options,
    context: &str,
) -> (Result<pipeline::Outcome, Failure>, Option<(u64, Duration)>) {
    let mut stream = match opened {
        Ok(stream) => stream,
        Err(e) => return (Err(Failure::from_source(Stage::Source, context, &e)), None),
    };
    if let Some(secs) = timeout {
        stream.set_timeout(Duration::from_secs(u64::from(secs)));
    }
    let progress = ProgressReport::new(label, options.progress_bar);
    let dests: Vec<&dyn Destination> = usable
        .iter()
        .filter_map(|t| t.built.as_ref().ok().map(|d| d.as_ref()))
        .collect();
    let cb = |n: u64| progress.update(n);
    let result = pipeline::run(stream, plan, object, &dests, Some(&cb));
    progress.finish();
    let read = Some((progress.read(), progress.started.elapsed()));
    let result = result.map_err(|e| match options.cancel.signal() {
        Some(sig) => {
            let mut f = Failure::from_pipeline(context, &e);
            f.message = format!("{context}: interrupted by signal {sig}: {e}");
            f.retryable = true;
            f
        }
        None => Failure::from_pipeline(context, &e),
    });
    (result, read)
}

fn apply_retention(
    dest: &dyn Destination,
    source_id: &str,
    t: &Target,
    stamp: RunStamp,
) -> Result<Retention, Failure> {
    // Lists even without a policy: the count of good copies is reported (the original's
    // push always said 0).
    retention::apply(
        dest,
        source_id,
        &t.config.retention,
        SystemTime::now(),
        Some(&stamp.to_string()),
    )
    .map(|a| {
        warn_future(source_id, &t.config.id, &a.future);
        Retention {
            removed: a.removed,
            retained_good: a.retained_good,
        }
    })
    .map_err(|e| {
        let mut f = Failure::from_destination(Stage::Retention, &e);
        f.message = format!("stored, but retention failed: {}", f.message);
        f
    })
}

/// Fills in the destinations that got nothing (could not be built, or the source failed),
/// stamps the end, logs each outcome.
fn finish_source(mut r: SourceReport, targets: &[Target]) -> SourceReport {
    for t in targets {
        if r.destinations.iter().any(|d| d.id == t.config.id) {
            continue;
        }
        let f = match (&t.built, &r.failure) {
            (Err(e), _) => e.failure(),
            (Ok(_), Some(f)) => f.clone(),
            (Ok(_), None) => continue,
        };
        r.destinations
            .push(DestinationReport::failed(&t.config.id, f));
    }
    // Config order, whatever order the outcomes came in.
    r.destinations.sort_by_key(|d| {
        targets
            .iter()
            .position(|t| t.config.id == d.id)
            .unwrap_or(usize::MAX)
    });
    r.ended = SystemTime::now();
    if r.destinations.is_empty() {
        if let Some(f) = &r.failure {
            log_result(&r.id, "-", &Err(f.clone()));
        }
    }
    for d in &r.destinations {
        match d.failure() {
            Some(f) => tracing::error!(
                source = %r.id,
                destination = %d.id,
                stage = f.stage.as_str(),
                retryable = f.retryable,
                "{}",
                f.message
            ),
            None => tracing::info!(
                source = %r.id,
                destination = %d.id,
                object = r.object.as_deref().unwrap_or("-"),
                input_bytes = r.input_bytes.unwrap_or(0),
                stored_bytes = r.stored_bytes.unwrap_or(0),
                sha256 = r.sha256.as_deref().unwrap_or("-"),
                dump_seconds = format_args!("{:.2}", r.dump.as_secs_f64()),
                upload_seconds = format_args!("{:.2}", d.upload.as_secs_f64()),
                removed = d.retention.as_ref().and_then(|x| x.as_ref().ok()).map_or(0, |x| x.removed.len()),
                "stored"
            ),
        }
    }
    r
}

/// Copies dated in the future: retention leaves them alone and restore skips them unless
/// asked for by `--at`; the operator should know.
fn warn_future(source: &str, destination: &str, stamps: &[String]) {
    for stamp in stamps {
        tracing::warn!(
            "{destination}: copy {source}/{stamp} is dated in the future (clock ran ahead, or \
             planted?); retention leaves it alone and restore skips it without --at"
        );
    }
}

mod databases;
mod progress;

#[cfg(test)]
mod tests;
