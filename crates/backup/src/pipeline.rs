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
//! ([`crate::fanout`]), so destinations write in parallel and a stalled one is given up after
//! its stall timeout instead of holding the others. Bounded channels of 1 MiB chunks between
//! them cap memory (peak RSS stays under 50 MB whatever the input size, plus what a remote
//! store buffers for its parts).

use std::io::{self, Read, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::crypto::{self, CryptoError, Encryption};
use crate::destination::{Destination, DestinationError};
use crate::fanout::{Chunk as SharedChunk, Feed};
use crate::naming::{self, Compression, Encoding};
use crate::source::{SourceError, SourceStream};

/// Size of reads from the source and of chunks between the threads.
const CHUNK: usize = crate::fanout::CHUNK_BYTES as usize;
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
            zstd_threads: default_threads(),
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

fn default_threads() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get().min(8) as u32)
        .unwrap_or(2)
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
        Err(FeedError::Downstream) => {
            // Stage 2 stopped: all destinations failed, or encryption failed (reported below).
            if tee.live() == 0 {
                drop(stream);
                return Ok(outcome(tee, 0, failed));
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

enum FeedError {
    Source(SourceError),
    Compress(io::Error),
    /// Stage 2 hung up (it failed or has no destination left).
    Downstream,
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
            break Err(compressor.classify(e));
        }
    };
    match result {
        Ok(()) => match compressor.finish() {
            Ok(mut sink) => match sink.flush_chunk() {
                Ok(()) => Ok(total),
                Err(_) => Err(FeedError::Downstream),
            },
            Err((e, hung_up)) => Err(if hung_up {
                FeedError::Downstream
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

/// A chunk between the threads; `Err` means the producer side failed.
type Chunk = Result<Vec<u8>, ()>;

struct ChannelWriter {
    tx: SyncSender<Chunk>,
    buf: Vec<u8>,
    hung_up: bool,
}

impl ChannelWriter {
    fn flush_chunk(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx.send(Ok(chunk)).map_err(|_| {
            self.hung_up = true;
            io::Error::new(io::ErrorKind::BrokenPipe, "encryption stage stopped")
        })
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.hung_up {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "encryption stage stopped",
            ));
        }
        let room = CHUNK - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.flush_chunk()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Chunks are only sent when full or at the end: small sends would cost more.
        Ok(())
    }
}

struct ChannelReader {
    rx: Receiver<Chunk>,
    current: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    self.current = chunk;
                    self.pos = 0;
                }
                Ok(Err(())) => {
                    return Err(io::Error::other("source failed; stream aborted"));
                }
                // Sender gone without an error marker: end of stream.
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.current.len() - self.pos);
        out[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

enum Compressor {
    Zstd(zstd::stream::write::Encoder<'static, ChannelWriter>),
    Gzip(flate2::write::GzEncoder<ChannelWriter>),
    Plain(ChannelWriter),
}

impl Compressor {
    fn new(plan: &Plan, sink: ChannelWriter) -> io::Result<Self> {
        Ok(match plan.encoding.compression {
            Compression::Zstd => {
                let mut enc = zstd::stream::write::Encoder::new(sink, plan.zstd_level)?;
                enc.include_checksum(true)?;
                if plan.zstd_threads > 0 {
                    enc.multithread(plan.zstd_threads)?;
                }
                Compressor::Zstd(enc)
            }
            Compression::Gzip => Compressor::Gzip(flate2::write::GzEncoder::new(
                sink,
                flate2::Compression::fast(),
            )),
            Compression::None => Compressor::Plain(sink),
        })
    }

    fn sink(&self) -> &ChannelWriter {
        match self {
            Compressor::Zstd(e) => e.get_ref(),
            Compressor::Gzip(e) => e.get_ref(),
            Compressor::Plain(w) => w,
        }
    }

    fn classify(&self, e: io::Error) -> FeedError {
        if self.sink().hung_up {
            FeedError::Downstream
        } else {
            FeedError::Compress(e)
        }
    }

    fn finish(self) -> Result<ChannelWriter, (io::Error, bool)> {
        match self {
            Compressor::Zstd(e) => e.finish().map_err(|err| (err, false)),
            Compressor::Gzip(e) => e.finish().map_err(|err| (err, false)),
            Compressor::Plain(w) => Ok(w),
        }
        .map_err(|(err, _)| {
            let hung_up = err.kind() == io::ErrorKind::BrokenPipe;
            (err, hung_up)
        })
    }
}

impl Write for Compressor {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::Zstd(e) => e.write(data),
            Compressor::Gzip(e) => e.write(data),
            Compressor::Plain(w) => w.write(data),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One destination inside the tee.
struct Slot {
    destination: String,
    /// Its writer thread, while it is still in the run.
    feed: Option<Feed>,
    error: Option<DestinationError>,
    /// When this destination was done (committed or failed), from the run's start.
    done: Option<Duration>,
}

impl Slot {
    /// Waits for this destination's writer thread after [`Feed::close`] and records how it
    /// went.
    fn wait(&mut self, started: Instant) {
        if let Some(feed) = self.feed.take() {
            let f = feed.wait(started);
            if let Err(e) = f.result {
                if self.error.is_none() {
                    self.error = Some(e);
                }
            }
            self.done = Some(f.done);
        }
    }
}

/// Hashes, counts and fans the object bytes out to every live destination's thread.
struct Tee {
    slots: Vec<Slot>,
    hasher: Sha256,
    size: u64,
    started: Instant,
}

impl Tee {
    fn live(&self) -> usize {
        self.slots.iter().filter(|s| s.feed.is_some()).count()
    }

    /// Aborts every live writer and waits for the aborts (nothing partial stays behind).
    fn abort_all(&mut self) {
        self.close_all(false);
    }

    /// Closes every live writer first, then waits for each: they commit (or abort) in
    /// parallel, each in its own thread, so a slow or stalled destination does not hold
    /// another's commit.
    fn close_all(&mut self, commit: bool) {
        for slot in &self.slots {
            if let Some(feed) = &slot.feed {
                feed.close(commit);
            }
        }
        for slot in &mut self.slots {
            slot.wait(self.started);
        }
    }

    /// Commits every live writer (see [`Tee::close_all`]).
    fn commit_all(&mut self) {
        self.close_all(true);
    }

    /// Hashes `chunk` and queues it for every live destination; a destination that failed or
    /// stalled is finished (and reported) at once. Fails when none is left.
    fn send(&mut self, chunk: Vec<u8>) -> io::Result<()> {
        self.hasher.update(&chunk);
        self.size += chunk.len() as u64;
        let shared: SharedChunk = std::sync::Arc::new(chunk);
        for slot in &mut self.slots {
            let Some(feed) = slot.feed.as_ref() else {
                continue;
            };
            if !feed.send(shared.clone()) {
                feed.close(false);
                slot.wait(self.started);
            }
        }
        if self.live() == 0 {
            return Err(io::Error::other("every destination failed"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{Decryption, Passphrase};
    use crate::destination::local::LocalDestination;
    use crate::destination::{ObjectInfo, ObjectWriter};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Mutex;

    /// A source stream over bytes that may fail mid-way or at `finish`.
    struct TestStream {
        data: io::Cursor<Vec<u8>>,
        fail_read_after: Option<u64>,
        fail_finish: bool,
    }

    impl TestStream {
        fn ok(data: Vec<u8>) -> Box<Self> {
            Box::new(Self {
                data: io::Cursor::new(data),
                fail_read_after: None,
                fail_finish: false,
            })
        }
    }

    impl Read for TestStream {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if let Some(limit) = self.fail_read_after {
                if self.data.position() >= limit {
                    return Err(io::Error::other("disk read error"));
                }
            }
            let max = (buf.len()).min(64 * 1024);
            self.data.read(&mut buf[..max])
        }
    }

    impl SourceStream for TestStream {
        fn finish(self: Box<Self>) -> Result<(), SourceError> {
            if self.fail_finish {
                Err(SourceError::Failed("mysqldump exited with status 2".into()))
            } else {
                Ok(())
            }
        }
    }

    /// Mixed test data: text-like and random-like parts.
    pub(crate) fn sample(len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        while out.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if (out.len() / 4096) % 2 == 0 {
                out.extend_from_slice(format!("line {} of some text\n", x % 1000).as_bytes());
            } else {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
        out.truncate(len);
        out
    }

    fn all_files(root: &std::path::Path) -> Vec<String> {
        let d = LocalDestination::new("probe", root);
        let mut names: Vec<String> = d
            .list("")
            .expect("list")
            .into_iter()
            .map(|o: ObjectInfo| o.name)
            .collect();
        // Also count hidden partial files, which list() skips.
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).expect("read_dir") {
                let e = e.expect("entry");
                if e.file_type().expect("type").is_dir() {
                    stack.push(e.path());
                } else if e.file_name().to_string_lossy().contains(".partial-") {
                    names.push(e.path().display().to_string());
                }
            }
        }
        names.sort();
        names
    }

    fn decode(obj: Vec<u8>, enc: Encoding, dec: Option<&Decryption>) -> Vec<u8> {
        let mut r: Box<dyn Read + Send> = Box::new(io::Cursor::new(obj));
        if enc.encrypted {
            r = crypto::decrypt(r, dec.expect("key")).expect("decrypt");
        }
        let mut out = Vec::new();
        match enc.compression {
            Compression::Zstd => {
                zstd::stream::read::Decoder::new(r)
                    .expect("zstd")
                    .read_to_end(&mut out)
                    .expect("read");
            }
            Compression::Gzip => {
                flate2::read::MultiGzDecoder::new(r)
                    .read_to_end(&mut out)
                    .expect("read");
            }
            Compression::None => {
                r.read_to_end(&mut out).expect("read");
            }
        }
        out
    }

    #[test]
    fn round_trip_all_layouts_through_local() {
        let data = sample(3 * CHUNK + 12345);
        let pass = Passphrase::new("correct horse");
        let dec = Decryption::Passphrase(pass.clone());
        for plan in [
            Plan::custos(Encryption::Passphrase(pass.clone())),
            Plan::original(Encryption::Passphrase(pass.clone())),
            Plan::compress_only(),
        ] {
            let dir = tempfile::tempdir().expect("tempdir");
            let a = LocalDestination::new("a", dir.path().join("a"));
            let b = LocalDestination::new("b", dir.path().join("b"));
            std::fs::create_dir_all(a.root()).expect("mkdir");
            std::fs::create_dir_all(b.root()).expect("mkdir");
            let object = format!("src/20240101000000/src.tar{}", plan.encoding.suffix());
            let seen = AtomicU64::new(0);
            let progress = |n: u64| seen.store(n, Ordering::Relaxed);
            let out = run(
                TestStream::ok(data.clone()),
                &plan,
                &object,
                &[&a, &b],
                Some(&progress),
            )
            .expect("pipeline");
            assert!(out.all_ok(), "{out:?}");
            assert_eq!(out.source_bytes, data.len() as u64);
            assert_eq!(seen.load(Ordering::Relaxed), data.len() as u64);
            for d in [&a, &b] {
                let bytes = std::fs::read(d.root().join(&object)).expect("object");
                assert_eq!(bytes.len() as u64, out.size);
                assert_eq!(hex::encode(Sha256::digest(&bytes)), out.sha256);
                let side = std::fs::read_to_string(d.root().join(format!("{object}.sha256")))
                    .expect("sidecar");
                assert_eq!(naming::parse_sidecar(&side), Some(out.sha256.clone()));
                assert_eq!(decode(bytes, plan.encoding, Some(&dec)), data);
            }
        }
    }

    /// A destination whose writer fails after `fail_after` bytes.
    struct Flaky {
        inner: LocalDestination,
        fail_after: u64,
    }

    struct FlakyWriter {
        inner: Box<dyn ObjectWriter>,
        left: u64,
    }

    impl Write for FlakyWriter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.left < buf.len() as u64 {
                return Err(io::Error::from_raw_os_error(28));
            }
            self.left -= buf.len() as u64;
            self.inner.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl ObjectWriter for FlakyWriter {
        fn commit(self: Box<Self>) -> Result<(), DestinationError> {
            self.inner.commit()
        }
        fn abort(self: Box<Self>) {
            self.inner.abort()
        }
    }

    impl Destination for Flaky {
        fn id(&self) -> &str {
            "flaky"
        }
        fn kind(&self) -> &'static str {
            "test"
        }
        fn check(&self) -> Result<(), DestinationError> {
            Ok(())
        }
        fn create(&self, name: &str) -> Result<Box<dyn ObjectWriter>, DestinationError> {
            Ok(Box::new(FlakyWriter {
                inner: self.inner.create(name)?,
                left: self.fail_after,
            }))
        }
        fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, DestinationError> {
            self.inner.list(prefix)
        }
        fn open(&self, name: &str) -> Result<Box<dyn Read + Send>, DestinationError> {
            self.inner.open(name)
        }
        fn delete(&self, name: &str) -> Result<(), DestinationError> {
            self.inner.delete(name)
        }
    }

    #[test]
    fn one_failing_writer_does_not_stop_the_others() {
        let data = sample(4 * CHUNK);
        let dir = tempfile::tempdir().expect("tempdir");
        let good = LocalDestination::new("good", dir.path().join("good"));
        let flaky = Flaky {
            inner: LocalDestination::new("flaky", dir.path().join("flaky")),
            fail_after: 100_000,
        };
        std::fs::create_dir_all(good.root()).expect("mkdir");
        std::fs::create_dir_all(flaky.inner.root()).expect("mkdir");
        let object = "s/20240101000000/s.tar.gz";
        let out = run(
            TestStream::ok(data.clone()),
            &Plan::compress_only(),
            object,
            &[&flaky, &good],
            None,
        )
        .expect("pipeline");
        assert_eq!(out.destinations.len(), 2);
        assert_eq!(out.destinations[0].destination, "flaky");
        let err = out.destinations[0]
            .result
            .as_ref()
            .expect_err("flaky failed");
        assert!(err.to_string().contains("os error 28"), "{err}");
        assert!(out.destinations[1].result.is_ok());
        assert_eq!(
            all_files(flaky.inner.root()),
            Vec::<String>::new(),
            "failed destination keeps nothing"
        );
        let bytes = std::fs::read(good.root().join(object)).expect("object");
        assert_eq!(decode(bytes, Encoding::COMPRESS_ONLY, None), data);
    }

    #[test]
    fn all_writers_failing_is_reported_per_destination() {
        let dir = tempfile::tempdir().expect("tempdir");
        let flaky = Flaky {
            inner: LocalDestination::new("flaky", dir.path()),
            fail_after: 10,
        };
        let out = run(
            TestStream::ok(sample(2 * CHUNK)),
            &Plan::compress_only(),
            "s/20240101000000/s.tar.gz",
            &[&flaky],
            None,
        )
        .expect("pipeline");
        assert!(!out.all_ok());
        assert_eq!(all_files(dir.path()), Vec::<String>::new());
    }

    #[test]
    fn source_failure_aborts_everything() {
        let pass = Passphrase::new("pw");
        for (fail_read_after, fail_finish) in [(Some(2 * CHUNK as u64), false), (None, true)] {
            let dir = tempfile::tempdir().expect("tempdir");
            let a = LocalDestination::new("a", dir.path());
            let stream = Box::new(TestStream {
                data: io::Cursor::new(sample(4 * CHUNK)),
                fail_read_after,
                fail_finish,
            });
            let err = run(
                stream,
                &Plan::custos(Encryption::Passphrase(pass.clone())),
                "s/20240101000000/s.sql.zst.gpg",
                &[&a],
                None,
            )
            .expect_err("source failed");
            assert!(matches!(err, PipelineError::Source(_)), "{err}");
            assert_eq!(all_files(dir.path()), Vec::<String>::new(), "{err}");
        }
    }

    #[test]
    fn create_failure_marks_only_that_destination() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = LocalDestination::new("missing", dir.path().join("not-mounted"));
        let ok = LocalDestination::new("ok", dir.path().join("ok"));
        std::fs::create_dir_all(ok.root()).expect("mkdir");
        let out = run(
            TestStream::ok(b"hello".to_vec()),
            &Plan::compress_only(),
            "s/20240101000000/s.sql.gz",
            &[&missing, &ok],
            None,
        )
        .expect("pipeline");
        assert!(out.destinations[0].result.is_err());
        assert!(out.destinations[1].result.is_ok());
    }

    #[test]
    fn inconsistent_plan_is_rejected() {
        let mut plan = Plan::compress_only();
        plan.encoding = Encoding::CUSTOS;
        let dir = tempfile::tempdir().expect("tempdir");
        let a = LocalDestination::new("a", dir.path());
        let err = run(
            TestStream::ok(vec![]),
            &plan,
            "s/20240101000000/s.sql.zst.gpg",
            &[&a],
            None,
        )
        .expect_err("no keys");
        assert!(matches!(err, PipelineError::Plan(_)));
    }

    #[test]
    fn empty_source_makes_a_valid_object() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = LocalDestination::new("a", dir.path());
        let pass = Passphrase::new("pw");
        let out = run(
            TestStream::ok(vec![]),
            &Plan::custos(Encryption::Passphrase(pass.clone())),
            "s/20240101000000/s.sql.zst.gpg",
            &[&a],
            None,
        )
        .expect("pipeline");
        assert!(out.all_ok());
        let bytes = std::fs::read(dir.path().join("s/20240101000000/s.sql.zst.gpg")).expect("obj");
        assert_eq!(
            decode(bytes, Encoding::CUSTOS, Some(&Decryption::Passphrase(pass))),
            Vec::<u8>::new()
        );
    }

    #[test]
    fn recipient_round_trip_with_generated_key() {
        use pgp::composed::{KeyType, SecretKeyParamsBuilder, SubkeyParamsBuilder};
        let mut rng = rand::thread_rng();
        let params = SecretKeyParamsBuilder::default()
            .key_type(KeyType::Ed25519Legacy)
            .can_certify(true)
            .can_sign(true)
            .primary_user_id("Backup Test <backup@example.org>".into())
            .subkeys(vec![SubkeyParamsBuilder::default()
                .key_type(KeyType::ECDH(
                    pgp::crypto::ecc_curve::ECCCurve::Curve25519Legacy,
                ))
                .can_encrypt(pgp::composed::EncryptionCaps::All)
                .build()
                .expect("subkey params")])
            .build()
            .expect("params");
        let secret = params.generate(&mut rng).expect("generate");
        let public = secret.to_public_key();
        let dir = tempfile::tempdir().expect("tempdir");
        let ring = dir.path().join("ring.asc");
        std::fs::write(
            &ring,
            public.to_armored_string(Default::default()).expect("armor"),
        )
        .expect("write ring");
        let keys = crypto::load_recipients(&["backup@example.org".into()], Some(&ring))
            .expect("recipients");
        let dest = LocalDestination::new("d", dir.path());
        let data = sample(CHUNK + 77);
        let object = "k/20240101000000/k.tar.zst.gpg";
        let out = run(
            TestStream::ok(data.clone()),
            &Plan::custos(Encryption::Recipients(keys)),
            object,
            &[&dest],
            None,
        )
        .expect("pipeline");
        assert!(out.all_ok());
        let bytes = std::fs::read(dir.path().join(object)).expect("object");
        let dec = Decryption::SecretKeys {
            keys: vec![secret],
            passphrase: None,
        };
        assert_eq!(decode(bytes.clone(), Encoding::CUSTOS, Some(&dec)), data);
        let wrong = Decryption::Passphrase(Passphrase::new("nope"));
        let err = crypto::decrypt(io::Cursor::new(bytes), &wrong)
            .err()
            .expect("no key for it");
        let _ = Mutex::new(()); // keep the import used in all cfgs
        assert!(!err.to_string().contains("nope"), "{err}");
    }
}
