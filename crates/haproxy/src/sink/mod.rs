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

/// A sink that writes batches.
#[derive(Debug)]
pub enum Sink {
    Logfile(logfile::LogfileSink),
    Gelf(gelf::GelfSink),
    Prtg(prtg::PrtgSink),
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
        Sink::Logfile(mut file) => {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Arc<Batch>>(QUEUE);
            let spawned = std::thread::Builder::new()
                .name(format!("logfile {}", st.id))
                .spawn(move || {
                    while let Ok(batch) = rx.recv() {
                        record(
                            &st,
                            &batch,
                            file.write(&batch).map(|()| Delivered::default()),
                        );
                    }
                });
            if let Err(e) = spawned {
                // The receiver is gone with the closure: every batch counts as dropped.
                tracing::error!(backend = %stats.id, "cannot start the log file thread: {e}");
            }
            Queue::Thread(tx)
        }
        Sink::Gelf(gelf) => spawn_task(st, NetSink::Gelf(gelf)),
        Sink::Prtg(prtg) => spawn_task(st, NetSink::Prtg(prtg)),
    };
    SinkHandle { stats, tx }
}

/// A sink that waits only on sockets, and so runs as a task.
#[derive(Debug)]
enum NetSink {
    Gelf(gelf::GelfSink),
    Prtg(prtg::PrtgSink),
}

fn spawn_task(st: Arc<SinkStats>, mut sink: NetSink) -> Queue {
    let (tx, mut rx) = mpsc::channel::<Arc<Batch>>(QUEUE);
    tokio::spawn(async move {
        while let Some(batch) = rx.recv().await {
            let r = match &mut sink {
                NetSink::Gelf(s) => s.write(&batch).await,
                NetSink::Prtg(s) => s.write(&batch).await.map(|()| Delivered::default()),
            };
            record(&st, &batch, r);
        }
    });
    Queue::Task(tx)
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
