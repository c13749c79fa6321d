//! The data path of one backup: source stream -> compress -> encrypt -> sha256 + size -> every
//! destination's writer, in bounded memory and without a temporary file.
//!
//! Public API (the runner calls this once per source and run):
//! - [`Plan`]: what to produce: the [`Encoding`] (which also names the object) plus the
//!   [`Encryption`] and zstd settings. [`Plan::custos`], [`Plan::original`],
//!   [`Plan::compress_only`] build the three layouts.
//! - [`run`]`(stream, &plan, object_name, &destinations, progress)`: streams everything, then
//!   calls [`SourceStream::finish`]; only if the source succeeded does it commit each
//!   destination's object and write its `{object}.sha256` sidecar beside it. Returns an
//!   [`Outcome`] with sha256/size and one [`DestinationOutcome`] per destination, or a
//!   [`PipelineError`] when the source (or compression/encryption) failed, in which case every
//!   writer was aborted and no object that looks complete exists anywhere.
//!
//! A destination that fails (create, write, commit, sidecar) is marked failed and the others
//! are still fed. When all have failed the source is dropped unread (a `SourceStream` must
//! stop its producer when dropped).
//!
//! Threads: the caller's thread reads the source and feeds the compressor (zstd runs its own
//! worker threads); a second thread encrypts (AES-CFB and the SHA-1 MDC are serial); a third
//! hashes (sha256) and hands each chunk to every destination's own writer thread
//! ([`crate::engine::fanout`]), so destinations write in parallel and a stalled one is given up after
//! its stall timeout instead of holding the others. Bounded channels of 1 MiB chunks between
//! them cap memory (peak RSS stays under 50 MB whatever the input size, plus what a remote
//! store buffers for its parts).

use std::io::{self, Read, Write};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::crypto::{self, CryptoError, Encryption};
use crate::destination::{Destination, DestinationError};
use crate::engine::fanout::Feed;
use crate::engine::parallel;
use crate::naming::{self, Compression, Encoding};
use crate::source::{SourceError, SourceStream};

mod channel;
mod compress;
mod tee;

use channel::{ChannelReader, ChannelWriter, Chunk};
use compress::Compressor;
use tee::{Slot, Tee};

/// Size of reads from the source and of chunks between the threads.
const CHUNK: usize = crate::engine::fanout::CHUNK_BYTES as usize;
/// Chunks in flight between the compress and encrypt threads.
const CHANNEL_DEPTH: usize = 4;

/// zstd level used by default. Level 1 keeps pace with AES + SHA on 2 cores; level 3 costs
/// about a third more CPU for a few percent of size (see the report/README figures).
pub const DEFAULT_ZSTD_LEVEL: i32 = 1;

/// What the pipeline produces for one source.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Suffix chain of the object; decides compression and whether to encrypt.
    pub encoding: Encoding,
    /// Required when `encoding.encrypted`.
    pub encryption: Option<Encryption>,
    /// zstd level (1..=19) when `encoding.compression` is zstd.
    pub zstd_level: i32,
    /// zstd worker threads (0 = single-threaded in the caller's thread).
    pub zstd_threads: u32,
}

impl Plan {
    /// custos default: zstd (multi-threaded) then OpenPGP, `.zst.gpg`.
    pub fn custos(encryption: Encryption) -> Self {
        Self {
            encoding: Encoding::CUSTOS,
            encryption: Some(encryption),
            zstd_level: DEFAULT_ZSTD_LEVEL,
            // This pipeline's share of the cores.
            zstd_threads: parallel::zstd_threads(),
        }
    }

    /// The original's `.gpg` layout: OpenPGP with ZLIB inside, so that `gpg -d` gives the tar
    /// or SQL dump itself, exactly as `gpg --symmetric` / `gpg -e` of the original did.
    pub fn original(encryption: Encryption) -> Self {
        Self {
            encoding: Encoding::ORIGINAL,
            encryption: Some(encryption),
            zstd_level: DEFAULT_ZSTD_LEVEL,
            zstd_threads: 0,
        }
    }

    /// The original's `compress_only`: gzip --fast, no encryption, `.gz`.
    pub fn compress_only() -> Self {
        Self {
            encoding: Encoding::COMPRESS_ONLY,
            encryption: None,
            zstd_level: DEFAULT_ZSTD_LEVEL,
            zstd_threads: 0,
        }
    }
}

/// Progress callback: total bytes read from the source so far.
pub type Progress<'a> = &'a (dyn Fn(u64) + Sync);

/// The result at one destination.
#[derive(Debug)]
pub struct DestinationOutcome {
    /// The destination's `id`.
    pub destination: String,
    /// `Ok` when the object and its sidecar were committed.
    pub result: Result<(), DestinationError>,
    /// From the start of the run until the object and its sidecar were committed (or it
    /// failed): the stream feeds every destination at once, so this overlaps the dump.
    pub upload: Duration,
}

/// What one run of the pipeline produced.
#[derive(Debug)]
pub struct Outcome {
    /// The object name written at each destination.
    pub object: String,
    /// sha256 (lower-case hex) of the object bytes, as in the sidecar.
    pub sha256: String,
    /// Size of the object in bytes.
    pub size: u64,
    /// Bytes read from the source (before compression).
    pub source_bytes: u64,
    /// From the start of the run until the source's last byte was read, compressed and
    /// encrypted and its producer reported success.
    pub dump: Duration,
    /// One entry per destination, in the order given.
    pub destinations: Vec<DestinationOutcome>,
}

#[cfg(test)]
impl Outcome {
    /// True when every destination has the object.
    pub fn all_ok(&self) -> bool {
        self.destinations.iter().all(|d| d.result.is_ok())
    }
}

/// The source or the data path failed: nothing was committed anywhere.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Reading the source failed, or its producer reported failure at the end.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// Compressing failed.
    #[error("compression failed: {0}")]
    Compress(#[source] io::Error),
    /// Encrypting failed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// The plan is inconsistent (encrypted encoding without keys).
    #[error("invalid plan: {0}")]
    Plan(String),
}

/// Streams `stream` through the plan into `object` at every destination.
///
/// `object` is the full name from [`naming::ObjectName::path`]. See the module docs.
pub fn run(
    mut stream: Box<dyn SourceStream>,
    plan: &Plan,
    object: &str,
    destinations: &[&dyn Destination],
    progress: Option<Progress<'_>>,
) -> Result<Outcome, PipelineError> {
    if plan.encoding.encrypted != plan.encryption.is_some() {
        return Err(PipelineError::Plan(if plan.encoding.encrypted {
            "the encoding is encrypted but no passphrase or recipients are set".into()
        } else {
            "encryption keys are set but the encoding is not encrypted".into()
        }));
    }
    let started = Instant::now();
    // Every way out that committed nothing new reports the same shape of outcome.
    let outcome = |tee: Tee, source_bytes: u64, failed: Vec<(String, DestinationError)>| {
        finish_outcome(object, tee, source_bytes, failed, destinations, started)
    };
    let mut failed: Vec<(String, DestinationError)> = Vec::new();
    let mut slots = Vec::new();
    for d in destinations {
        match d.create(object) {
            Ok(writer) => slots.push(Slot {
                destination: d.id().to_string(),
                feed: Some(Feed::spawn(
                    d.id(),
                    object,
                    writer,
                    d.stall_timeout(),
                    d.upload_rate_limit(),
                    started,
                )),
                error: None,
                done: None,
            }),
            Err(e) => failed.push((d.id().to_string(), e)),
        }
    }
    let mut tee = Tee {
        slots,
        hasher: Sha256::new(),
        size: 0,
        started,
    };
    if tee.live() == 0 {
        return Ok(outcome(tee, 0, failed));
    }

    let (tx, rx) = sync_channel::<Chunk>(CHANNEL_DEPTH);
    let (tx2, rx2) = sync_channel::<Chunk>(CHANNEL_DEPTH);
    let zlib_inside = plan.encoding.encrypted && plan.encoding.compression == Compression::None;
    let (read_result, stage2, stage3) = std::thread::scope(|scope| {
        // Stage 2: encryption (or a pass-through), chunks in, chunks out.
        let encrypt = scope.spawn(move || {
            let mut reader = ChannelReader {
                rx,
                current: Vec::new(),
                pos: 0,
            };
            let mut out = ChannelWriter {
                tx: tx2,
                buf: Vec::with_capacity(CHUNK),
                hung_up: false,
            };
            let result = match &plan.encryption {
                Some(enc) => crypto::encrypt(enc, zlib_inside, &mut reader, &mut out),
                None => forward(&mut reader, &mut out).map_err(|e| CryptoError::Encrypt {
                    detail: e.to_string(),
                }),
            };
            result.and_then(|()| {
                out.flush_chunk().map_err(|e| CryptoError::Encrypt {
                    detail: e.to_string(),
                })
            })
        });
        // Stage 3: sha256, size, and the destinations' writes.
        let write = scope.spawn(move || {
            for chunk in rx2 {
                let Ok(chunk) = chunk else { break };
                if tee.send(chunk).is_err() {
                    break;
                }
            }
            tee
        });
        let read_result = feed(&mut stream, plan, tx, progress);
        (read_result, encrypt.join(), write.join())
    });
    let (mut tee, stage2_result) = match (stage3, stage2) {
        (Ok(tee), Ok(result)) => (tee, result),
        _ => {
            return Err(PipelineError::Crypto(CryptoError::Encrypt {
                detail: "a pipeline thread panicked".into(),
            }))
        }
    };

    let source_bytes = match read_result {
        Ok(n) => n,
        Err(FeedError::Source(e)) => {
            tee.abort_all();
            return Err(PipelineError::Source(e));
        }
        Err(FeedError::Compress(e)) => {
            tee.abort_all();
            return Err(PipelineError::Compress(e));
        }
        Err(FeedError::Downstream { read }) => {
            // Stage 2 stopped: all destinations failed, or encryption failed (reported below).
            if tee.live() == 0 {
                drop(stream);
                return Ok(outcome(tee, read, failed));
            }
            tee.abort_all();
            return Err(stage2_result
                .err()
                .map(PipelineError::Crypto)
                .unwrap_or_else(|| {
                    PipelineError::Crypto(CryptoError::Encrypt {
                        detail: "the encryption stage stopped early".into(),
                    })
                }));
        }
    };
    if let Err(e) = stage2_result {
        if tee.live() == 0 {
            drop(stream);
            return Ok(outcome(tee, source_bytes, failed));
        }
        tee.abort_all();
        return Err(PipelineError::Crypto(e));
    }
    // The whole stream went through: only now ask the producer whether it succeeded.
    if let Err(e) = stream.finish() {
        tee.abort_all();
        return Err(PipelineError::Source(e));
    }
    let dump = started.elapsed();
    tee.commit_all();
    let mut out = outcome(tee, source_bytes, failed);
    out.dump = dump;
    Ok(out)
}

fn finish_outcome(
    object: &str,
    tee: Tee,
    source_bytes: u64,
    mut failed: Vec<(String, DestinationError)>,
    destinations: &[&dyn Destination],
    started: Instant,
) -> Outcome {
    let end = started.elapsed();
    let sha256 = hex::encode(tee.hasher.finalize());
    let size = tee.size;
    let mut results: Vec<(String, Result<(), DestinationError>, Duration)> = Vec::new();
    for slot in tee.slots {
        let r = match slot.error {
            Some(e) => Err(e),
            None => Ok(()),
        };
        results.push((slot.destination, r, slot.done.unwrap_or(end)));
    }
    results.extend(failed.drain(..).map(|(d, e)| (d, Err(e), Duration::ZERO)));
    // Sidecars beside each committed object.
    let file_name = object.rsplit('/').next().unwrap_or(object);
    let body = naming::sidecar_body(&sha256, file_name);
    let sidecar = naming::sidecar_name(object);
    let mut outcomes = Vec::new();
    for d in destinations {
        let Some(pos) = results.iter().position(|(id, _, _)| id == d.id()) else {
            continue;
        };
        let (id, mut result, mut upload) = results.swap_remove(pos);
        if result.is_ok() {
            let t = Instant::now();
            result = write_small(*d, &sidecar, body.as_bytes());
            if result.is_err() {
                // An object without its sidecar is no good copy (retention and verify would
                // count it): take it away, so nothing of the failed copy stays.
                if let Err(e) = d.delete(object) {
                    tracing::warn!(destination = %d.id(), object, "cannot remove the object whose sidecar failed: {e}");
                }
            }
            upload += t.elapsed();
        }
        outcomes.push(DestinationOutcome {
            destination: id,
            result,
            upload,
        });
    }
    Outcome {
        object: object.to_string(),
        sha256,
        size,
        source_bytes,
        dump: end,
        destinations: outcomes,
    }
}

/// Writes a small object (the sidecar) in one go.
fn write_small(d: &dyn Destination, name: &str, data: &[u8]) -> Result<(), DestinationError> {
    let mut w = d.create(name)?;
    if let Err(e) = w.write_all(data) {
        w.abort();
        return Err(DestinationError::Io {
            destination: d.id().to_string(),
            op: "write",
            object: name.to_string(),
            source: e,
        });
    }
    w.commit()
}

/// Moves everything from `reader` to `out` (no encryption), in large pieces.
fn forward(reader: &mut ChannelReader, out: &mut ChannelWriter) -> io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        out.write_all(&buf[..n])?;
    }
}

pub(super) enum FeedError {
    Source(SourceError),
    Compress(io::Error),
    /// Stage 2 hung up (it failed or has no destination left) after `read` bytes of the
    /// source had been read.
    Downstream {
        read: u64,
    },
}

/// Reads the source to its end into the compressor; returns the bytes read.
fn feed(
    stream: &mut Box<dyn SourceStream>,
    plan: &Plan,
    tx: SyncSender<Chunk>,
    progress: Option<Progress<'_>>,
) -> Result<u64, FeedError> {
    let sink = ChannelWriter {
        tx: tx.clone(),
        buf: Vec::with_capacity(CHUNK),
        hung_up: false,
    };
    let mut compressor = match Compressor::new(plan, sink) {
        Ok(c) => c,
        Err(e) => return Err(FeedError::Compress(e)),
    };
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    let result = loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                break Err(FeedError::Source(SourceError::Io {
                    context: "reading the source stream".into(),
                    source: e,
                }))
            }
        };
        total += n as u64;
        if let Some(p) = progress {
            p(total);
        }
        if let Err(e) = compressor.write_all(&buf[..n]) {
            break Err(compressor.classify(e, total));
        }
    };
    match result {
        Ok(()) => match compressor.finish() {
            Ok(mut sink) => match sink.flush_chunk() {
                Ok(()) => Ok(total),
                Err(_) => Err(FeedError::Downstream { read: total }),
            },
            Err((e, hung_up)) => Err(if hung_up {
                FeedError::Downstream { read: total }
            } else {
                FeedError::Compress(e)
            }),
        },
        Err(e) => {
            // Tell stage 2 the stream is broken so it stops instead of closing the message.
            let _ = tx.send(Err(()));
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests;
