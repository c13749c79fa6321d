//! Runs a job: every source in file order, each streamed once through the pipeline to every
//! destination, then retention where the upload succeeded.
//!
//! Failures stay where they happen: a source that fails does not stop the next one, a
//! destination that fails does not stop the others (the original skipped every destination
//! after the first failing one), and nothing that failed is reported as success (the original
//! exits 0 when sources fail). The [`Report`] holds one row per source and destination; its
//! exit code is 0 only when every row succeeded.
//!
//! Progress: a bar with bytes and rate when stderr is a terminal; otherwise structured log
//! lines (`-v` shows them), so cron mails stay empty unless something went wrong.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use crate::config::{
    Compression, DestinationConfig, DestinationSpec, JobConfig, Layout, Protection, SourceConfig,
    SourceSpec,
};
use crate::crypto::{self, Encryption};
use crate::destination::local::LocalDestination;
use crate::destination::Destination;
use crate::interrupt;
use crate::naming::{self, Encoding, ObjectName, Payload, RunStamp};
use crate::pipeline::{self, Plan};
use crate::retention;
use crate::source::folder::FolderSource;
use crate::source::mysql::MysqlSource;
use crate::source::pgsql::PgsqlSource;
use crate::source::Source;
use crate::table;

/// How to run.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Validate, reach every source and destination (`check()`), resolve keys; write nothing.
    pub dry_run: bool,
    /// Draw a progress bar on stderr (the CLI sets it when stderr is a terminal).
    pub progress_bar: bool,
}

/// Outcome of one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Stored (and retention applied).
    Ok,
    /// `--dry-run`: reachable and usable.
    Checked,
    /// Failed; the message says what and where.
    Failed(String),
}

impl Status {
    /// Whether the row counts as success.
    pub fn is_ok(&self) -> bool {
        !matches!(self, Status::Failed(_))
    }

    fn word(&self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Checked => "checked",
            Status::Failed(_) => "FAILED",
        }
    }
}

/// One line of the summary: a source at a destination (or a source, destination or
/// notification on its own, shown as `-` in the other column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Source id, or `-`.
    pub source: String,
    /// Destination id, `notify:<type>`, or `-`.
    pub destination: String,
    pub status: Status,
    /// The object name written.
    pub object: Option<String>,
    /// Bytes read from the source.
    pub input_bytes: Option<u64>,
    /// Bytes stored (the object's size).
    pub stored_bytes: Option<u64>,
    /// Time spent on the source (shared by its destinations: one stream feeds them all).
    pub duration: Duration,
    /// Copies removed by retention.
    pub removed: Vec<String>,
}

impl Row {
    fn new(source: &str, destination: &str, status: Status) -> Self {
        Row {
            source: source.to_owned(),
            destination: destination.to_owned(),
            status,
            object: None,
            input_bytes: None,
            stored_bytes: None,
            duration: Duration::ZERO,
            removed: Vec::new(),
        }
    }
}

/// Everything a run did.
#[derive(Debug, Clone)]
pub struct Report {
    /// The one timestamp of this run (the folder name of its objects).
    pub stamp: RunStamp,
    /// Host name for messages.
    pub hostname: String,
    pub dry_run: bool,
    pub rows: Vec<Row>,
}

impl Report {
    /// True when every row succeeded.
    pub fn success(&self) -> bool {
        self.rows.iter().all(|r| r.status.is_ok())
    }

    /// 0 when everything succeeded, 1 when anything failed (2, bad usage/config, is decided
    /// before a run starts).
    pub fn exit_code(&self) -> i32 {
        if self.success() {
            0
        } else {
            1
        }
    }

    /// The summary table, then one line per failure with its full message.
    pub fn table(&self) -> String {
        let header = [
            "SOURCE",
            "DESTINATION",
            "STATUS",
            "INPUT",
            "STORED",
            "DURATION",
            "RATE",
        ];
        let mut lines: Vec<[String; 7]> = vec![header.map(str::to_owned)];
        for r in &self.rows {
            let rate = match (r.input_bytes, r.duration.as_secs_f64()) {
                (Some(b), secs) if secs > 0.0 && b > 0 => {
                    format!("{}/s", size_description(b as f64 / secs))
                }
                _ => "-".to_owned(),
            };
            let dur = if r.duration.is_zero() {
                "-".to_owned()
            } else {
                format!("{:.1}s", r.duration.as_secs_f64())
            };
            lines.push([
                r.source.clone(),
                r.destination.clone(),
                r.status.word().to_owned(),
                r.input_bytes
                    .map_or("-".into(), |b| size_description(b as f64)),
                r.stored_bytes
                    .map_or("-".into(), |b| size_description(b as f64)),
                dur,
                rate,
            ]);
        }
        // Numbers right-aligned, words left-aligned.
        let mut out = table::render(&lines, &[3, 4, 5, 6]);
        for r in &self.rows {
            if let Status::Failed(m) = &r.status {
                let _ = writeln!(out, "{} -> {}: {m}", r.source, r.destination);
            }
        }
        let ok = self.rows.iter().filter(|r| r.status.is_ok()).count();
        let _ = writeln!(
            out,
            "{}{} of {} succeeded on {} (run {})",
            if self.dry_run { "dry run: " } else { "" },
            ok,
            self.rows.len(),
            self.hostname,
            self.stamp
        );
        out
    }
}

/// The original's human size (`getSizeDescription`): `12.1 KB`, 1024-based.
pub fn size_description(n: f64) -> String {
    let mut n = n;
    for unit in ["bytes", "KB", "MB", "GB", "TB"] {
        if n < 1024.0 {
            return format!("{n:.1} {unit}");
        }
        n /= 1024.0;
    }
    format!("{:.1} PB", n)
}

/// A destination ready to use, or why it cannot be.
struct Target {
    config: DestinationConfig,
    built: Result<Box<dyn Destination>, String>,
}

/// Builds the destination of a config entry.
pub fn build_destination(d: &DestinationConfig) -> Result<Box<dyn Destination>, String> {
    match &d.spec {
        DestinationSpec::Local(l) => Ok(Box::new(LocalDestination::new(&d.id, &l.path))),
        DestinationSpec::Unsupported => Err(format!(
            "destination '{}': type '{}' is not yet supported",
            d.id, d.kind
        )),
    }
}

/// Builds the source of a config entry.
pub fn build_source(s: &SourceConfig) -> Result<Box<dyn Source>, String> {
    match &s.spec {
        SourceSpec::Folder(c) => Ok(Box::new(FolderSource::new(&s.id, &s.name, c))),
        SourceSpec::Mysql(c) => Ok(Box::new(MysqlSource::new(&s.id, &s.name, c))),
        SourceSpec::Pgsql(c) => Ok(Box::new(PgsqlSource::new(&s.id, &s.name, c))),
        SourceSpec::Unsupported => Err(format!(
            "source '{}': type '{}' is not yet supported",
            s.id, s.kind
        )),
    }
}

/// The pipeline plan of a source: layout, compression, encryption keys (recipients are
/// resolved here, so a missing key fails this source only).
pub fn build_plan(s: &SourceConfig) -> Result<Plan, String> {
    let encryption = match s.protection() {
        None => {
            return Err(format!(
                "source '{}': no passphrase or recipients (and not compress_only)",
                s.id
            ))
        }
        Some(Protection::CompressOnly) => None,
        Some(Protection::Passphrase(p)) => {
            Some(Encryption::Passphrase(crypto::Passphrase::new(p.expose())))
        }
        Some(Protection::Recipients(r)) => Some(Encryption::Recipients(
            crypto::load_recipients(r, s.keyring.as_deref())
                .map_err(|e| format!("source '{}': {e}", s.id))?,
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
            zstd_threads: std::thread::available_parallelism()
                .map(|n| n.get().min(8) as u32)
                .unwrap_or(2),
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

/// Runs (or with `dry_run` checks) the whole job.
pub fn run(job: &JobConfig, options: &Options) -> Report {
    let hostname = job.hostname();
    tracing::info!(
        file = %job.file.display(),
        host = %hostname,
        dry_run = options.dry_run,
        "job started"
    );
    let targets: Vec<Target> = job
        .destinations
        .iter()
        .map(|d| Target {
            config: d.clone(),
            built: build_destination(d),
        })
        .collect();
    let stamp = if options.dry_run {
        RunStamp::now()
    } else {
        free_stamp(job, &targets)
    };
    tracing::info!(run = %stamp, "run stamp");
    let mut rows = Vec::new();
    if options.dry_run {
        for t in &targets {
            let status = match &t.built {
                Ok(d) => match d.check() {
                    Ok(()) => Status::Checked,
                    Err(e) => Status::Failed(e.to_string()),
                },
                Err(m) => Status::Failed(m.clone()),
            };
            log_row("-", &t.config.id, &status);
            rows.push(Row::new("-", &t.config.id, status));
        }
    }
    for s in &job.sources {
        if let Some(sig) = interrupt::received() {
            let status = Status::Failed(format!("not run: interrupted by signal {sig}"));
            log_row(&s.id, "-", &status);
            rows.push(Row::new(&s.id, "-", status));
            continue;
        }
        if options.dry_run {
            let status = check_source(s);
            log_row(&s.id, "-", &status);
            rows.push(Row::new(&s.id, "-", status));
        } else {
            rows.extend(run_source(s, &targets, stamp, options));
        }
    }
    for n in &job.notifications {
        let label = format!("notify:{}", n.id.as_deref().unwrap_or(&n.kind));
        let status = Status::Failed(format!(
            "notification type '{}' is not yet supported",
            n.kind
        ));
        log_row("-", &label, &status);
        rows.push(Row::new("-", &label, status));
    }
    let report = Report {
        stamp,
        hostname,
        dry_run: options.dry_run,
        rows,
    };
    tracing::info!(
        run = %report.stamp,
        ok = report.success(),
        "job finished"
    );
    report
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

fn log_row(source: &str, destination: &str, status: &Status) {
    match status {
        Status::Failed(m) => {
            tracing::error!(source, destination, "{m}")
        }
        s => tracing::info!(source, destination, status = s.word(), "done"),
    }
}

fn check_source(s: &SourceConfig) -> Status {
    let source = match build_source(s) {
        Ok(src) => src,
        Err(m) => return Status::Failed(m),
    };
    if let Err(m) = build_plan(s) {
        return Status::Failed(m);
    }
    match source.check() {
        Ok(()) => Status::Checked,
        Err(e) => Status::Failed(format!("source '{}': {e}", s.id)),
    }
}

/// Streams one source to every usable destination; one row per destination.
fn run_source(
    s: &SourceConfig,
    targets: &[Target],
    stamp: RunStamp,
    options: &Options,
) -> Vec<Row> {
    let started = Instant::now();
    let mut rows: Vec<Row> = Vec::new();
    // Destinations that cannot be built fail for this source; the rest get the stream.
    let usable: Vec<&Target> = targets.iter().filter(|t| t.built.is_ok()).collect();
    for t in targets {
        if let Err(m) = &t.built {
            rows.push(Row::new(&s.id, &t.config.id, Status::Failed(m.clone())));
        }
    }
    let fail_all = |rows: &mut Vec<Row>, message: String| {
        for t in &usable {
            rows.push(Row::new(
                &s.id,
                &t.config.id,
                Status::Failed(message.clone()),
            ));
        }
        if usable.is_empty() {
            rows.push(Row::new(&s.id, "-", Status::Failed(message)));
        }
    };
    if usable.is_empty() {
        for r in &rows {
            log_row(&r.source, &r.destination, &r.status);
        }
        return rows;
    }
    let prepared = build_source(s).and_then(|src| Ok((src, build_plan(s)?)));
    let (source, plan) = match prepared {
        Ok(p) => p,
        Err(m) => {
            fail_all(&mut rows, m);
            for r in &rows {
                log_row(&r.source, &r.destination, &r.status);
            }
            return rows;
        }
    };
    let object = ObjectName {
        source_id: s.id.clone(),
        stamp,
        payload: match source.suffix() {
            "sql" => Payload::Sql,
            _ => Payload::Tar,
        },
        encoding: plan.encoding,
    }
    .path();
    tracing::info!(source = %s.id, name = %s.name, kind = %s.kind, object = %object, "backing up");
    // Half-written objects of this source's killed runs go first (space comes back before
    // the new copy needs it). A failure here only costs space: log it and carry on.
    let prefix = format!("{}/", s.id);
    for t in &usable {
        if let Ok(dest) = &t.built {
            if let Err(e) = dest.remove_abandoned(&prefix) {
                tracing::warn!(source = %s.id, destination = %t.config.id, "cannot remove partial objects of earlier runs: {e}");
            }
        }
    }

    let outcome = match source.open() {
        Ok(mut stream) => {
            if let Some(secs) = s.timeout {
                stream.set_timeout(Duration::from_secs(u64::from(secs)));
            }
            let progress = ProgressReport::new(&s.id, options.progress_bar);
            let dests: Vec<&dyn Destination> = usable
                .iter()
                .filter_map(|t| t.built.as_ref().ok().map(|d| d.as_ref()))
                .collect();
            let cb = |n: u64| progress.update(n);
            let result = pipeline::run(stream, &plan, &object, &dests, Some(&cb));
            progress.finish();
            result.map_err(|e| match interrupt::received() {
                Some(sig) => format!("source '{}': interrupted by signal {sig}: {e}", s.id),
                None => format!("source '{}': {e}", s.id),
            })
        }
        Err(e) => Err(format!("source '{}': {e}", s.id)),
    };
    let duration = started.elapsed();
    match outcome {
        Err(m) => fail_all(&mut rows, m),
        Ok(out) => {
            for d in &out.destinations {
                let mut row = Row::new(&s.id, &d.destination, Status::Ok);
                row.object = Some(out.object.clone());
                row.input_bytes = Some(out.source_bytes);
                row.stored_bytes = Some(out.size);
                row.duration = duration;
                match &d.result {
                    Err(e) => row.status = Status::Failed(e.to_string()),
                    Ok(()) if interrupt::received().is_some() => {}
                    Ok(()) => {
                        // Retention only where this run's copy is safely stored.
                        if let Some(t) = usable.iter().find(|t| t.config.id == d.destination) {
                            if let Ok(dest) = &t.built {
                                match retention::apply(
                                    dest.as_ref(),
                                    &s.id,
                                    &t.config.retention,
                                    SystemTime::now(),
                                    Some(&stamp.to_string()),
                                ) {
                                    Ok(applied) => {
                                        warn_future(&s.id, &t.config.id, &applied.future);
                                        row.removed = applied.removed;
                                    }
                                    Err(e) => {
                                        row.status = Status::Failed(format!(
                                            "stored, but retention failed: {e}"
                                        ))
                                    }
                                }
                            }
                        }
                    }
                }
                rows.push(row);
            }
        }
    }
    for r in &rows {
        match &r.status {
            Status::Failed(m) => {
                tracing::error!(source = %r.source, destination = %r.destination, "{m}")
            }
            st => tracing::info!(
                source = %r.source,
                destination = %r.destination,
                status = st.word(),
                object = r.object.as_deref().unwrap_or("-"),
                input_bytes = r.input_bytes.unwrap_or(0),
                stored_bytes = r.stored_bytes.unwrap_or(0),
                seconds = format_args!("{:.2}", r.duration.as_secs_f64()),
                removed = r.removed.len(),
                "stored"
            ),
        }
    }
    rows
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

/// Progress of one source: a bar on a terminal, a log line every 30 s otherwise.
struct ProgressReport {
    bar: Option<indicatif::ProgressBar>,
    source: String,
    started: Instant,
    last_log: Mutex<Instant>,
}

/// Interval of progress log lines when there is no terminal.
const LOG_EVERY: Duration = Duration::from_secs(30);

impl ProgressReport {
    fn new(source: &str, bar: bool) -> Self {
        let bar = (bar && std::io::stderr().is_terminal()).then(|| {
            let b = indicatif::ProgressBar::new_spinner();
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{spinner} {prefix}: {bytes} read, {binary_bytes_per_sec}, {elapsed}",
            ) {
                b.set_style(style);
            }
            b.set_prefix(source.to_owned());
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        ProgressReport {
            bar,
            source: source.to_owned(),
            started: Instant::now(),
            last_log: Mutex::new(Instant::now()),
        }
    }

    fn update(&self, bytes: u64) {
        if let Some(b) = &self.bar {
            b.set_position(bytes);
            return;
        }
        let Ok(mut last) = self.last_log.lock() else {
            return;
        };
        if last.elapsed() >= LOG_EVERY {
            *last = Instant::now();
            let secs = self.started.elapsed().as_secs_f64().max(0.001);
            tracing::info!(
                source = %self.source,
                bytes,
                rate = %format!("{}/s", size_description(bytes as f64 / secs)),
                "progress"
            );
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests;
