//! Sinks: where a poll's samples go. Each configured backend runs as its own task fed by a
//! bounded queue, so a slow or failing sink never delays polling or the other sinks; a batch
//! it cannot take is dropped and counted, a failed write is logged, counted and not retried
//! (the next poll brings fresh numbers).
//!
//! A `logfile` backend runs on its own thread rather than a task: opening and writing a file
//! block (a hung NFS mount, a FIFO nobody reads), and a blocked call on the runtime's one
//! thread would stop polling, the other sinks, `/metrics` and the signal handler. The thread
//! is never joined, so a write that hangs for ever does not hold up the exit either.
//!
//! The `prometheus` backend is no task: it serves the snapshot store at scrape time
//! ([`crate::metrics`]).
//!
//! Each backend type is one module holding its config keys, their checks ([`Validate`]), its
//! [`SinkConfig::build`] and the sink itself; the `sink_types!` list below is the one place
//! that maps a `type` to its module (docs/ARCHITECTURE.md §4).

pub mod gelf;
pub mod logfile;
pub mod prometheus;
pub mod prtg;

use crate::sample::Batch;
use custos_kit::config::{ConfigError, Entry, UnknownKey, Validate};
use serde::de::DeserializeOwned;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

sink_types! {
    "logfile" => Logfile(logfile::LogfileBackend),
    "gelf" => Gelf(gelf::GelfBackend),
    "prtg" => Prtg(prtg::PrtgBackend),
    "prometheus" => Prometheus(prometheus::PrometheusBackend),
}

/// What a backend type's config provides beyond its keys and checks.
pub trait SinkConfig: Validate {
    /// The address this backend serves `/metrics` on, if it does (two may not share one),
    /// and its `listen` value as written.
    fn listens(&self) -> Option<(SocketAddr, &str)> {
        None
    }

    /// Starts nothing yet: the sink to run, or the address to serve.
    fn build(&self, ctx: &Context) -> Result<Built, SinkError>;
}

/// What every sink may need from the monitor when it is built.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// Bumped on SIGHUP: log files are reopened.
    pub reopen: logfile::Reopen,
}

/// A built backend.
#[derive(Debug)]
pub enum Built {
    /// A sink fed batches.
    Sink(Sink),
    /// No batches: `/metrics` at this address, from the snapshot store.
    Listen(SocketAddr),
}

/// The boxed future of [`TaskSink::write`].
pub type Write<'a> = Pin<Box<dyn Future<Output = Result<Delivered, SinkError>> + Send + 'a>>;

/// A sink that waits only on sockets, and so runs as a task.
pub trait TaskSink: Send + fmt::Debug {
    fn write<'a>(&'a mut self, batch: &'a Batch) -> Write<'a>;
}

/// A sink whose writes block (files), and so runs on its own thread.
pub trait ThreadSink: Send + fmt::Debug {
    fn write(&mut self, batch: &Batch) -> Result<Delivered, SinkError>;
}

/// Keys every backend has, whatever its type.
const COMMON_KEYS: &[&str] = &["type"];

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Common {
    #[serde(rename = "type")]
    kind: String,
}

/// Generates [`Backend`] (a variant per type) and its dispatch from one line per type.
macro_rules! sink_types {
    ($($kind:literal => $variant:ident($config:ty)),* $(,)?) => {
        /// A backend's config, by its `type`.
        #[derive(Debug, Clone)]
        pub enum Backend {
            $($variant($config),)*
        }

        impl Backend {
            /// The types, in the order error messages list them.
            pub const TYPES: &'static [&'static str] = &[$($kind),*];

            /// The `type` value.
            pub fn kind(&self) -> &'static str {
                match self {
                    $(Backend::$variant(_) => $kind,)*
                }
            }

            /// The type's checks, address and build.
            pub fn config(&self) -> &dyn SinkConfig {
                match self {
                    $(Backend::$variant(c) => c,)*
                }
            }

            /// The keys of `kind`; `None` for a type nobody knows.
            fn take(
                kind: &str,
                entry: Entry<'_>,
                text: Option<&str>,
            ) -> Option<Result<Backend, ConfigError>> {
                match kind {
                    $($kind => Some(take(entry, text).map(Backend::$variant)),)*
                    _ => None,
                }
            }
        }
    };
}
use sink_types;

/// Deserializes a type's keys, at their lines in `text` when known.
fn take<T: DeserializeOwned>(entry: Entry<'_>, text: Option<&str>) -> Result<T, ConfigError> {
    match text {
        Some(text) => entry.take_in(text),
        None => entry.take(),
    }
}

impl Backend {
    /// Types the backend `id` (its keys as written in `file`, whose `text` gives error lines
    /// when known); keys its type does not read are added to `unknown`. A required key that is
    /// missing is named as `backends.<id>.<key>`, or as the typo of it that was written.
    pub fn parse(
        file: &Path,
        id: &str,
        keys: serde_json::Value,
        text: Option<&str>,
        unknown: &mut Vec<UnknownKey>,
    ) -> Result<Backend, ConfigError> {
        let at = format!("backends.{id}");
        let (Common { kind }, entry) = Entry::open(file, &at, keys, COMMON_KEYS, unknown)?;
        match Backend::take(&kind, entry, text) {
            Some(Ok(b)) => Ok(b),
            Some(Err(e)) => Err(match e.missing_key() {
                Some(k) if e.key() == Some(at.as_str()) => ConfigError::invalid(
                    file,
                    format!("{at}.{k}"),
                    "",
                    format!("a {kind} backend needs `{k}`"),
                ),
                _ => e,
            }),
            None => {
                let (last, rest) = Backend::TYPES.split_last().unwrap_or((&"", &[]));
                Err(ConfigError::invalid(
                    file,
                    format!("{at}.type"),
                    &kind,
                    format!("must be {} or {last}", rest.join(", ")),
                ))
            }
        }
    }

    /// The type's checks that serde cannot express, naming `backends.<id>.<key>`.
    pub fn validate(&self, file: &Path, id: &str) -> Result<(), ConfigError> {
        self.config()
            .validate()
            .map_err(|i| i.into_error(file, &format!("backends.{id}")))
    }
}

/// serde's "missing field" text, for a required key of a type checked after its keys were read
/// (so that `key: ~` reads as absent, as the original's `.get()` did).
pub(crate) fn missing(key: &'static str) -> String {
    format!("missing field `{key}`")
}

/// Batches a sink may have waiting; beyond that new ones are dropped (and counted).
pub const QUEUE: usize = 64;

/// Why a sink could not deliver a batch.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: no answer within {timeout:?}")]
    Timeout {
        what: String,
        timeout: std::time::Duration,
    },
    #[error("{what}: HTTP {status}: {body}")]
    Status {
        what: String,
        status: u16,
        body: String,
    },
    #[error("{what}: {reason}")]
    Http { what: String, reason: String },
    #[error("GELF message of {bytes} bytes needs more than 128 chunks of {chunk_size} bytes")]
    TooLarge { bytes: usize, chunk_size: usize },
}

/// What a sink did with a batch it delivered.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// Messages of the batch left out because the sink cannot carry them (a GELF message
    /// larger than 128 chunks); the rest were sent.
    pub skipped: u64,
}

/// Counters of one sink, read by `/metrics`.
#[derive(Debug)]
pub struct SinkStats {
    /// The backend id from the config.
    pub id: String,
    /// Its `type`.
    pub kind: &'static str,
    /// Batches delivered.
    pub delivered: AtomicU64,
    /// Batches that failed.
    pub errors: AtomicU64,
    /// Batches dropped because the sink's queue was full.
    pub dropped: AtomicU64,
    /// Messages left out of delivered batches ([`Delivered::skipped`]).
    pub skipped: AtomicU64,
    /// Whether the last offered batch was dropped (a stalled sink is logged once, not per poll).
    behind: std::sync::atomic::AtomicBool,
}

impl SinkStats {
    pub fn new(id: &str, kind: &'static str) -> SinkStats {
        SinkStats {
            id: id.to_string(),
            kind,
            delivered: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            behind: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

/// A sink that writes batches: a task, or a thread for blocking writes.
#[derive(Debug)]
pub enum Sink {
    Task(Box<dyn TaskSink>),
    Thread(Box<dyn ThreadSink>),
}

/// The queue into a running sink: a task's or a thread's.
#[derive(Debug, Clone)]
enum Queue {
    Task(mpsc::Sender<Arc<Batch>>),
    Thread(std::sync::mpsc::SyncSender<Arc<Batch>>),
}

/// The poller's end of a running sink.
#[derive(Debug, Clone)]
pub struct SinkHandle {
    pub stats: Arc<SinkStats>,
    tx: Queue,
}

impl SinkHandle {
    /// Queues a batch without waiting; a full queue drops it (counted, logged).
    pub fn offer(&self, batch: Arc<Batch>) {
        let full = match &self.tx {
            Queue::Task(tx) => tx.try_send(batch).is_err(),
            Queue::Thread(tx) => tx.try_send(batch).is_err(),
        };
        let st = &self.stats;
        if full {
            st.dropped.fetch_add(1, Ordering::Relaxed);
            if !st.behind.swap(true, Ordering::Relaxed) {
                tracing::warn!(backend = %st.id,
                    "sink is behind; batches are dropped until it catches up (counted in haproxysessionmon_sink_dropped_total)");
            }
        } else if st.behind.swap(false, Ordering::Relaxed) {
            tracing::info!(backend = %st.id, dropped_total = st.dropped.load(Ordering::Relaxed),
                "sink caught up");
        }
    }
}

/// Starts `sink` (a task, or a thread for a log file); returns the handle pollers send to.
pub fn spawn(stats: Arc<SinkStats>, sink: Sink) -> SinkHandle {
    let st = Arc::clone(&stats);
    let tx = match sink {
        Sink::Thread(mut sink) => {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Arc<Batch>>(QUEUE);
            let spawned = std::thread::Builder::new()
                .name(format!("{} {}", stats.kind, st.id))
                .spawn(move || {
                    while let Ok(batch) = rx.recv() {
                        record(&st, &batch, sink.write(&batch));
                    }
                });
            if let Err(e) = spawned {
                // The receiver is gone with the closure: every batch counts as dropped.
                tracing::error!(backend = %stats.id, "cannot start the {} thread: {e}", stats.kind);
            }
            Queue::Thread(tx)
        }
        Sink::Task(mut sink) => {
            let (tx, mut rx) = mpsc::channel::<Arc<Batch>>(QUEUE);
            tokio::spawn(async move {
                while let Some(batch) = rx.recv().await {
                    let r = sink.write(&batch).await;
                    record(&st, &batch, r);
                }
            });
            Queue::Task(tx)
        }
    };
    SinkHandle { stats, tx }
}

/// Counts (and logs) what became of one batch.
fn record(st: &SinkStats, batch: &Batch, r: Result<Delivered, SinkError>) {
    match r {
        Ok(d) => {
            st.delivered.fetch_add(1, Ordering::Relaxed);
            if d.skipped > 0 {
                st.skipped.fetch_add(d.skipped, Ordering::Relaxed);
            }
        }
        Err(e) => {
            st.errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(backend = %st.id, server = %batch.server, "sink failed: {e}");
        }
    }
}

/// `text` with tabs and line breaks replaced by spaces (one value per column and line).
pub fn one_line(text: &str) -> String {
    text.replace(['\t', '\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::path::Path;

    /// Loads `backends` (YAML under `backends:`) with one server naming backend `b`.
    fn load(backends: &str) -> Result<Config, String> {
        let text = format!(
            "backends:\n{backends}servers:\n  a:\n    endpoint: http://127.0.0.1:1/;csv\n    backends: [b]\n"
        );
        let mut cfg: Config =
            custos_kit::config::parse_yaml(Path::new("c.yml"), &text).map_err(|e| e.to_string())?;
        cfg.validate(Path::new("c.yml"))
            .map_err(|e| e.to_string())?;
        Ok(cfg)
    }

    /// The registry's messages are the ones the hand-written typing gave.
    #[test]
    fn a_type_or_required_key_missing_is_named() {
        assert_eq!(
            load("  b:\n    type: kafka\n").unwrap_err(),
            "c.yml: backends.b.type: invalid value \"kafka\": must be logfile, gelf, prtg or prometheus"
        );
        assert_eq!(
            load("  b:\n    type: gelf\n    port: 1\n").unwrap_err(),
            "c.yml: backends.b.host: invalid value \"\": a gelf backend needs `host`"
        );
        // `~` is absent, as the original's `.get()`.
        assert_eq!(
            load("  b:\n    type: gelf\n    host: h\n    port: ~\n").unwrap_err(),
            "c.yml: backends.b.port: invalid value \"\": a gelf backend needs `port`"
        );
        assert_eq!(
            load("  b:\n    type: prtg\n").unwrap_err(),
            "c.yml: backends.b.base-url: invalid value \"\": a prtg backend needs `base-url`"
        );
        let e = load("  b:\n    tpye: gelf\n").unwrap_err();
        assert!(
            e.contains("backends.b.tpye") && e.contains("did you mean `type`?"),
            "{e}"
        );
    }

    /// Typed after the file was parsed, a backend's keys still see YAML's `.inf` as a number
    /// (a detour through `serde_json::Value` made it null, i.e. "not set", and the default).
    #[test]
    fn a_non_finite_number_in_a_backend_is_rejected_with_its_key() {
        let e =
            load("  b:\n    type: prtg\n    base-url: http://p/\n    timeout: .inf\n").unwrap_err();
        assert!(
            e.contains("backends.b.timeout: invalid value \"inf\"") && e.contains("seconds from"),
            "{e}"
        );
    }

    /// Null optional keys read as their defaults.
    #[test]
    fn null_keys_take_their_defaults() {
        let cfg = load(
            "  b:\n    type: gelf\n    host: h\n    port: 1\n    facility: ~\n    chunk-size: ~\n",
        )
        .unwrap();
        match &cfg.backends["b"] {
            super::Backend::Gelf(g) => {
                assert_eq!(g.facility, super::gelf::DEFAULT_FACILITY);
                assert_eq!(g.chunk_size, super::gelf::DEFAULT_CHUNK_SIZE);
            }
            b => panic!("{b:?}"),
        }
    }
}
