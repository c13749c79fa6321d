//! One writer thread per destination, fed by a bounded queue of shared chunks: a slow
//! destination works at its own pace while the others go on, memory stays bounded
//! ([`QUEUE_DEPTH`] chunks per destination), and each destination's upload time is measured
//! where its writes happen.
//!
//! A destination that takes no chunk for its stall timeout is given up (its thread is told to
//! abort and left behind, since it may be stuck inside a write that never returns): a stalled
//! upload costs the others at most that long, once.

use std::collections::VecDeque;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use custos_kit::config::ConfigError;

use crate::destination::{DestinationError, ErrorKind, ObjectWriter, DEFAULT_STALL_TIMEOUT};
use crate::job::JobConfig;

/// Chunks waiting per destination.
pub const QUEUE_DEPTH: usize = 8;
/// Largest chunk the pipeline hands over (its read size).
pub const CHUNK_BYTES: u64 = 1 << 20;

/// A chunk of the object, shared by every destination's queue.
pub type Chunk = Arc<Vec<u8>>;

enum Msg {
    Data(Chunk),
    Commit,
    Abort,
}

struct State {
    items: VecDeque<Msg>,
    /// The writer thread stopped taking messages (it failed or finished).
    closed: bool,
    /// The feeder gave up on this destination: abort at the next chance.
    cancelled: bool,
}

struct Queue {
    state: Mutex<State>,
    not_full: Condvar,
    not_empty: Condvar,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Why a message could not be handed over.
enum SendError {
    /// The writer thread ended (it failed); its result says why.
    Closed,
    /// No room for the whole stall timeout.
    Stalled,
}

/// One destination's writer thread and its queue.
pub struct Feed {
    destination: String,
    object: String,
    queue: Arc<Queue>,
    result: mpsc::Receiver<(Result<(), DestinationError>, Duration)>,
    stall: Duration,
    /// Stalled once: out of this run.
    given_up: std::cell::Cell<bool>,
}

/// How a destination's part of the run ended.
pub struct Finished {
    pub result: Result<(), DestinationError>,
    /// From the run's start until this destination committed, failed or was given up.
    pub done: Duration,
}

impl Feed {
    /// Starts the writer thread for `writer`; `started` is the run's start, for timings.
    /// `rate` (bytes/s) paces the writes (`upload_rate_limit`).
    pub fn spawn(
        destination: &str,
        object: &str,
        writer: Box<dyn ObjectWriter>,
        stall: Duration,
        rate: Option<u64>,
        started: Instant,
    ) -> Feed {
        let queue = Arc::new(Queue {
            state: Mutex::new(State {
                items: VecDeque::with_capacity(QUEUE_DEPTH),
                closed: false,
                cancelled: false,
            }),
            not_full: Condvar::new(),
            not_empty: Condvar::new(),
        });
        let (tx, result) = mpsc::sync_channel(1);
        let q = Arc::clone(&queue);
        let (dest, obj) = (destination.to_string(), object.to_string());
        let spawned = std::thread::Builder::new()
            .name(format!("dest-{destination}"))
            .spawn(move || {
                let r = write_loop(&q, writer, &dest, &obj, rate);
                q.lock().closed = true;
                q.not_full.notify_all();
                let _ = tx.send((r, started.elapsed()));
            });
        if let Err(e) = spawned {
            // The writer went down with the closure; report it like any failure.
            let (tx, rx) = mpsc::sync_channel(1);
            let _ = tx.send((
                Err(DestinationError::Other {
                    destination: destination.to_string(),
                    message: format!("cannot start a writer thread: {e}"),
                }),
                started.elapsed(),
            ));
            queue.lock().closed = true;
            return Feed {
                destination: destination.to_string(),
                object: object.to_string(),
                queue,
                result: rx,
                stall,
                given_up: std::cell::Cell::new(false),
            };
        }
        Feed {
            destination: destination.to_string(),
            object: object.to_string(),
            queue,
            result,
            stall,
            given_up: std::cell::Cell::new(false),
        }
    }

    fn push(&self, msg: Msg) -> Result<(), SendError> {
        let deadline = Instant::now() + self.stall;
        let mut st = self.queue.lock();
        loop {
            if st.closed {
                return Err(SendError::Closed);
            }
            if st.items.len() < QUEUE_DEPTH {
                st.items.push_back(msg);
                self.queue.not_empty.notify_one();
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(SendError::Stalled);
            }
            st = self
                .queue
                .not_full
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Queues a chunk; `false` means this destination is out of the run (its writer failed
    /// or it stalled; [`Feed::wait`] says which).
    #[must_use]
    pub fn send(&self, chunk: Chunk) -> bool {
        match self.push(Msg::Data(chunk)) {
            Ok(()) => true,
            Err(SendError::Closed) => false,
            Err(SendError::Stalled) => {
                self.give_up();
                false
            }
        }
    }

    /// Asks the thread to commit (or abort) and waits for its result; see [`Feed::close`]
    /// and [`Feed::wait`].
    #[cfg(test)]
    pub fn finish(self, commit: bool, started: Instant) -> Finished {
        self.close(commit);
        self.wait(started)
    }

    /// Asks the thread to commit (or abort) once the queued chunks are written, without
    /// waiting: the caller closes every destination first, so they commit in parallel.
    pub fn close(&self, commit: bool) {
        if self.given_up.get() {
            return;
        }
        if let Err(SendError::Stalled) = self.push(if commit { Msg::Commit } else { Msg::Abort }) {
            self.give_up();
        }
    }

    /// Waits for the thread's result after [`Feed::close`], at most the stall timeout; a
    /// thread that does not answer is given up and its object aborted later.
    pub fn wait(self, started: Instant) -> Finished {
        if !self.given_up.get() {
            if let Ok((result, done)) = self.result.recv_timeout(self.stall) {
                return Finished { result, done };
            }
            self.give_up();
        }
        Finished {
            result: Err(self.stalled_error()),
            done: started.elapsed(),
        }
    }

    /// Tells a stuck thread to abort as soon as its current write returns.
    fn give_up(&self) {
        self.given_up.set(true);
        tracing::warn!(destination = %self.destination, object = %self.object,
            stall_timeout_s = self.stall.as_secs(), "destination stalled; giving up on it for this run");
        let mut st = self.queue.lock();
        st.cancelled = true;
        st.items.clear();
        self.queue.not_empty.notify_one();
    }

    fn stalled_error(&self) -> DestinationError {
        DestinationError::Store {
            destination: self.destination.clone(),
            op: "write",
            object: self.object.clone(),
            kind: ErrorKind::Transient,
            message: format!(
                "stalled: took no data for {} s (stall_timeout); given up for this run",
                self.stall.as_secs()
            ),
        }
    }
}

fn write_loop(
    q: &Queue,
    mut writer: Box<dyn ObjectWriter>,
    destination: &str,
    object: &str,
    rate: Option<u64>,
) -> Result<(), DestinationError> {
    let began = Instant::now();
    let mut written = 0u64;
    loop {
        let msg = {
            let mut st = q.lock();
            loop {
                if st.cancelled {
                    break Msg::Abort;
                }
                if let Some(m) = st.items.pop_front() {
                    q.not_full.notify_one();
                    break m;
                }
                st = q.not_empty.wait(st).unwrap_or_else(|p| p.into_inner());
            }
        };
        match msg {
            Msg::Data(chunk) => {
                if let Err(e) = writer.write_all(&chunk) {
                    tracing::warn!(destination, object, error = %e,
                        "destination failed while writing; continuing with the others");
                    writer.abort();
                    return Err(DestinationError::Io {
                        destination: destination.to_string(),
                        op: "write",
                        object: object.to_string(),
                        source: e,
                    });
                }
                written += chunk.len() as u64;
                if let Some(rate) = rate.filter(|r| *r > 0) {
                    // Keep the average since the first byte at or below `rate`.
                    let due = Duration::from_secs_f64(written as f64 / rate as f64);
                    if let Some(wait) = due.checked_sub(began.elapsed()) {
                        std::thread::sleep(wait);
                    }
                }
            }
            Msg::Commit => return writer.commit(),
            Msg::Abort => {
                writer.abort();
                return Err(DestinationError::Other {
                    destination: destination.to_string(),
                    message: format!("{object}: upload aborted"),
                });
            }
        }
    }
}

/// Checks each destination's `upload_rate_limit` against its stall timeout: a queued chunk
/// must go out well within it, or the destination would be given up as stalled. A config
/// error (exit 2), checked where the job is loaded; the job file holds only what the user
/// wrote, the chunk size and the default timeout are the engine's and the destination's.
pub(crate) fn check_rate_limits(job: &JobConfig) -> Result<(), ConfigError> {
    for (i, d) in job.destinations.iter().enumerate() {
        let Some(rate) = d.upload_rate_limit else {
            continue;
        };
        let stall = d
            .stall_timeout
            .map_or(DEFAULT_STALL_TIMEOUT.as_secs(), u64::from);
        let least = 2 * CHUNK_BYTES / stall.max(1);
        if u64::from(rate) < least {
            return Err(ConfigError::invalid(
                &job.file,
                format!("destinations[{i}].upload_rate_limit"),
                rate,
                format!("must be at least {least} bytes/s with stall_timeout {stall}"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{self, Write};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    /// Counts bytes; blocks in `write` while `stuck` is set; says on `ended` how its writer
    /// thread finished ("commit" or "abort"), so a test can wait for that instead of sleeping.
    struct Probe {
        bytes: Arc<AtomicU64>,
        stuck: Arc<AtomicBool>,
        committed: Arc<AtomicBool>,
        ended: mpsc::Sender<&'static str>,
    }

    impl Write for Probe {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            while self.stuck.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(5));
            }
            self.bytes.fetch_add(buf.len() as u64, Ordering::SeqCst);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl ObjectWriter for Probe {
        fn commit(self: Box<Self>) -> Result<(), DestinationError> {
            self.committed.store(true, Ordering::SeqCst);
            let _ = self.ended.send("commit");
            Ok(())
        }
        fn abort(self: Box<Self>) {
            let _ = self.ended.send("abort");
        }
    }

    type ProbeHandles = (
        Arc<AtomicU64>,
        Arc<AtomicBool>,
        Arc<AtomicBool>,
        mpsc::Receiver<&'static str>,
    );

    /// A probe and its (bytes, stuck, committed, ended) handles.
    fn probe(stuck: bool) -> (Probe, ProbeHandles) {
        let bytes = Arc::new(AtomicU64::new(0));
        let stuck = Arc::new(AtomicBool::new(stuck));
        let committed = Arc::new(AtomicBool::new(false));
        let (ended, ended_rx) = mpsc::channel();
        (
            Probe {
                bytes: bytes.clone(),
                stuck: stuck.clone(),
                committed: committed.clone(),
                ended,
            },
            (bytes, stuck, committed, ended_rx),
        )
    }

    /// A destination that never takes a byte is given up after its stall timeout while the
    /// other gets every chunk and commits; the feeder waits no more than that timeout.
    #[test]
    fn a_stalled_destination_is_given_up_and_the_other_completes() {
        let started = Instant::now();
        let (ok, (ok_bytes, _, ok_committed, _)) = probe(false);
        let (stalled, (_, stuck, stalled_committed, stalled_ended)) = probe(true);
        let stall = Duration::from_millis(300);
        let a = Feed::spawn(
            "ok",
            "o",
            Box::new(ok),
            Duration::from_secs(30),
            None,
            started,
        );
        let b = Feed::spawn("stalled", "o", Box::new(stalled), stall, None, started);
        let chunk: Chunk = Arc::new(vec![1u8; 1024]);
        let mut b_live = true;
        for _ in 0..100 {
            assert!(a.send(chunk.clone()), "ok destination takes data");
            if b_live && !b.send(chunk.clone()) {
                b_live = false;
            }
        }
        assert!(!b_live, "the stalled destination was given up");
        let t = Instant::now();
        let fa = a.finish(true, started);
        let fb = b.finish(true, started);
        assert!(t.elapsed() < Duration::from_secs(5));
        fa.result.expect("ok committed");
        assert!(ok_committed.load(Ordering::SeqCst));
        assert_eq!(ok_bytes.load(Ordering::SeqCst), 100 * 1024);
        let err = fb.result.expect_err("stalled one failed");
        assert_eq!(err.kind(), ErrorKind::Transient);
        assert!(err.to_string().contains("stalled"), "{err}");
        // Released later, the thread aborts instead of committing: wait for its writer to
        // end (however slow the machine), then look at how.
        stuck.store(false, Ordering::SeqCst);
        let how = stalled_ended
            .recv_timeout(Duration::from_secs(30))
            .expect("the released writer thread ends");
        assert_eq!(how, "abort");
        assert!(!stalled_committed.load(Ordering::SeqCst));
    }

    /// `upload_rate_limit`: 1 MiB at 2 MiB/s takes at least half a second, and all of it
    /// arrives.
    #[test]
    fn the_rate_limit_paces_the_writes() {
        let started = Instant::now();
        let (p, (bytes, _, committed, _)) = probe(false);
        let f = Feed::spawn(
            "r",
            "o",
            Box::new(p),
            Duration::from_secs(30),
            Some(2 << 20),
            started,
        );
        let chunk: Chunk = Arc::new(vec![0u8; 128 << 10]);
        for _ in 0..8 {
            assert!(f.send(chunk.clone()));
        }
        let t = Instant::now();
        f.finish(true, started).result.expect("committed");
        assert!(
            started.elapsed() >= Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(bytes.load(Ordering::SeqCst), 1 << 20);
        assert!(committed.load(Ordering::SeqCst));
    }

    #[test]
    fn a_failing_writer_reports_its_error() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::from_raw_os_error(28))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        impl ObjectWriter for Broken {
            fn commit(self: Box<Self>) -> Result<(), DestinationError> {
                panic!("must not commit")
            }
            fn abort(self: Box<Self>) {}
        }
        let started = Instant::now();
        let f = Feed::spawn(
            "b",
            "o",
            Box::new(Broken),
            Duration::from_secs(5),
            None,
            started,
        );
        let chunk: Chunk = Arc::new(vec![0u8; 10]);
        let mut refused = false;
        for _ in 0..100 {
            if !f.send(chunk.clone()) {
                refused = true;
                break;
            }
        }
        assert!(refused);
        let err = f.finish(true, started).result.expect_err("failed");
        assert!(err.to_string().contains("os error 28"), "{err}");
    }

    /// A chunk must go out well within the stall timeout: 2 MiB in 60 s is 34952 bytes/s;
    /// the error names the file, the entry's key and the value.
    #[test]
    fn a_rate_limit_too_slow_for_the_stall_timeout_is_a_config_error() {
        let job = |rate: u32| {
            let text = format!(
                r#"{{"sources": [{{"id": "a", "type": "folder", "path": "/a", "passphrase": "p"}}],
                "destinations": [{{"id": "s", "type": "s3", "bucket": "b", "stall_timeout": 60,
                "upload_rate_limit": {rate}}}]}}"#
            );
            crate::job::parse(std::path::Path::new("/etc/backups/job.json"), &text).unwrap()
        };
        let e = check_rate_limits(&job(30000)).unwrap_err().to_string();
        assert!(e.contains("/etc/backups/job.json"), "{e}");
        assert!(e.contains("destinations[0].upload_rate_limit"), "{e}");
        assert!(e.contains("30000") && e.contains("at least 34952"), "{e}");
        check_rate_limits(&job(34952)).unwrap();
    }
}
