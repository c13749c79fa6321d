//! One sweep for many clients: connections must never multiply root smartctl runs.
//!
//! A client that arrives while a sweep runs is served from that sweep (the frames so far, then
//! each new one as its device is read); one that arrives within `--min-interval` of the last
//! sweep's end gets that sweep's frames at once. So a burst of connections costs at most one
//! sweep per interval, and each frame is encoded once and shared (`Arc`) by every client.

use crate::cli::Options;
use crate::log::error;
use crate::sweep::sweep;
use custos_smart_wire::{encode, Event};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

/// An encoded frame, shared by the clients it is written to.
pub type Frame = Arc<Vec<u8>>;

/// Hands clients the running or a recent sweep, or starts one.
pub struct SharedSweep {
    opts: Arc<Options>,
    latest: Mutex<Option<Arc<Sweep>>>,
}

/// One sweep's frames: a frame per device as it is read, then the end; grows while it runs.
#[derive(Default)]
pub struct Sweep {
    frames: Mutex<Frames>,
    grew: Condvar,
}

#[derive(Default)]
struct Frames {
    list: Vec<Frame>,
    /// Set when the last frame is in `list`.
    done_at: Option<Instant>,
}

impl Sweep {
    fn lock(&self) -> MutexGuard<'_, Frames> {
        self.frames.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, frame: Frame) {
        self.lock().list.push(frame);
        self.grew.notify_all();
    }

    /// Adds the last frame (if it could be encoded) and marks the sweep done.
    fn finish(&self, last: Option<Frame>) {
        let mut f = self.lock();
        f.list.extend(last);
        f.done_at = Some(Instant::now());
        drop(f);
        self.grew.notify_all();
    }

    /// Frame `i`, waiting for it while the sweep runs; `None` after the last.
    pub fn get(&self, i: usize) -> Option<Frame> {
        let mut f = self.lock();
        loop {
            if let Some(frame) = f.list.get(i) {
                return Some(Arc::clone(frame));
            }
            if f.done_at.is_some() {
                return None;
            }
            f = self.grew.wait(f).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Still running.
    pub fn running(&self) -> bool {
        self.lock().done_at.is_none()
    }

    /// Running, or finished less than `min_interval` ago.
    fn reusable(&self, min_interval: std::time::Duration) -> bool {
        self.lock()
            .done_at
            .is_none_or(|at| at.elapsed() < min_interval)
    }
}

impl SharedSweep {
    /// Nothing swept yet.
    pub fn new(opts: Arc<Options>) -> SharedSweep {
        SharedSweep {
            opts,
            latest: Mutex::new(None),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<Arc<Sweep>>> {
        self.latest.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The sweep a new client is served from: the running one, one that finished less than
    /// `--min-interval` ago, or a new one, started now in its own thread.
    pub fn join(&self) -> Arc<Sweep> {
        let mut latest = self.lock();
        if let Some(s) = latest.as_ref() {
            if s.reusable(self.opts.min_interval) {
                return Arc::clone(s);
            }
        }
        let s = Arc::new(Sweep::default());
        *latest = Some(Arc::clone(&s));
        drop(latest);
        let (opts, run) = (Arc::clone(&self.opts), Arc::clone(&s));
        let started = std::thread::Builder::new()
            .name("sweep".into())
            .spawn(move || run_sweep(&opts, &run));
        if let Err(e) = started {
            error!("cannot start a sweep: {e}");
            s.finish(None);
        }
        s
    }

    /// A sweep is running (the idle timeout must not end the process under it).
    pub fn running(&self) -> bool {
        self.lock().as_ref().is_some_and(|s| s.running())
    }
}

/// Runs one sweep into `out`: a frame per device as it is read, then the end.
fn run_sweep(opts: &Options, out: &Sweep) {
    // Marks the sweep done even if it unwinds (debug builds), so clients never wait for ever.
    struct Finish<'s>(&'s Sweep, Option<Frame>);
    impl Drop for Finish<'_> {
        fn drop(&mut self) {
            self.0.finish(self.1.take());
        }
    }
    let mut finish = Finish(out, None);
    let sent = AtomicU32::new(0);
    let mut summary = sweep(opts, &|dev| match encode(&Event::Device(dev)) {
        Ok(bytes) => {
            out.push(Arc::new(bytes));
            sent.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => error!("encoding a device's report: {e}"),
    });
    // The count of frames actually sent, which the reader checks.
    summary.devices = sent.into_inner();
    match encode(&Event::Done(summary)) {
        Ok(bytes) => finish.1 = Some(Arc::new(bytes)),
        Err(e) => error!("encoding the end of the sweep: {e}"),
    }
}
