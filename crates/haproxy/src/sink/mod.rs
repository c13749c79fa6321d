//! Sinks: where a poll's samples go. Each configured backend runs as its own task fed by a
//! bounded queue, so a slow or failing sink never delays polling or the other sinks; a batch
//! it cannot take is dropped and counted, a failed write is logged, counted and not retried
//! (the next poll brings fresh numbers).
//!
//! The `prometheus` backend is no task: it serves the snapshot store at scrape time
//! ([`crate::metrics`]).

pub mod gelf;
pub mod logfile;
pub mod prtg;

use crate::sample::Batch;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

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
}

impl SinkStats {
    pub fn new(id: &str, kind: &'static str) -> SinkStats {
        SinkStats {
            id: id.to_string(),
            kind,
            delivered: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }
}

/// A sink that writes batches.
#[derive(Debug)]
pub enum Sink {
    Logfile(logfile::LogfileSink),
    Gelf(gelf::GelfSink),
    Prtg(prtg::PrtgSink),
}

impl Sink {
    async fn write(&mut self, batch: &Batch) -> Result<(), SinkError> {
        match self {
            Sink::Logfile(s) => s.write(batch),
            Sink::Gelf(s) => s.write(batch).await,
            Sink::Prtg(s) => s.write(batch).await,
        }
    }
}

/// The poller's end of a running sink.
#[derive(Debug, Clone)]
pub struct SinkHandle {
    pub stats: Arc<SinkStats>,
    tx: mpsc::Sender<Arc<Batch>>,
}

impl SinkHandle {
    /// Queues a batch without waiting; a full queue drops it (counted, logged).
    pub fn offer(&self, batch: Arc<Batch>) {
        if self.tx.try_send(batch).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(backend = %self.stats.id, "sink is behind; batch dropped");
        }
    }
}

/// Starts the task of `sink`; returns the handle pollers send to.
pub fn spawn(stats: Arc<SinkStats>, mut sink: Sink) -> SinkHandle {
    let (tx, mut rx) = mpsc::channel::<Arc<Batch>>(QUEUE);
    let st = Arc::clone(&stats);
    tokio::spawn(async move {
        while let Some(batch) = rx.recv().await {
            match sink.write(&batch).await {
                Ok(()) => {
                    st.delivered.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    st.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(backend = %st.id, server = %batch.server, "sink failed: {e}");
                }
            }
        }
    });
    SinkHandle { stats, tx }
}

/// `text` with tabs and line breaks replaced by spaces (one value per column and line).
pub fn one_line(text: &str) -> String {
    text.replace(['\t', '\n', '\r'], " ")
}
