//! One sweep for many clients: connections must never multiply root smartctl runs.
//!
//! A client that arrives while a sweep runs waits for that sweep and gets its frame; one that
//! arrives within `--min-interval` of the last sweep's end gets that frame at once. So a burst
//! of connections costs at most one sweep per interval, and the frame is encoded once and
//! shared (`Arc`) by every client writing it.

use crate::cli::Options;
use crate::log::error;
use crate::sweep::sweep;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

/// An encoded frame, shared by the clients it is written to; `None` if the report could not
/// be encoded (logged once; those clients get an empty answer, which the exporter reports).
pub type Frame = Option<Arc<Vec<u8>>>;

/// The latest sweep's frame and whether a sweep is under way.
pub struct SharedSweep<'a> {
    opts: &'a Options,
    state: Mutex<State>,
    finished: Condvar,
}

#[derive(Default)]
struct State {
    running: bool,
    /// Counts finished sweeps, so a waiter knows the one it waited for is done.
    generation: u64,
    last: Option<(Instant, Frame)>,
}

impl<'a> SharedSweep<'a> {
    /// Nothing swept yet.
    pub fn new(opts: &'a Options) -> SharedSweep<'a> {
        SharedSweep {
            opts,
            state: Mutex::new(State::default()),
            finished: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A frame no older than `--min-interval`, or the one of the sweep running now, or a new
    /// sweep's (run by this caller while later callers wait for it).
    pub fn frame(&self) -> Frame {
        let mut st = self.lock();
        if let Some((at, frame)) = &st.last {
            if at.elapsed() < self.opts.min_interval {
                return frame.clone();
            }
        }
        if st.running {
            let waited_for = st.generation;
            while st.running && st.generation == waited_for {
                st = self.finished.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            if let Some((_, frame)) = &st.last {
                return frame.clone();
            }
        }
        st.running = true;
        drop(st);
        // Resets `running` even if the sweep unwinds (debug builds), so waiters never hang.
        let done = Done(self);
        let frame = match custos_smart_wire::encode(&sweep(self.opts)) {
            Ok(bytes) => Some(Arc::new(bytes)),
            Err(e) => {
                error!("encoding the report: {e}");
                None
            }
        };
        self.lock().last = Some((Instant::now(), frame.clone()));
        drop(done);
        frame
    }

    /// How many sweeps have finished (for tests and logs).
    pub fn sweeps(&self) -> u64 {
        self.lock().generation
    }
}

/// Marks the running sweep finished and wakes its waiters.
struct Done<'s, 'a>(&'s SharedSweep<'a>);

impl Drop for Done<'_, '_> {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.running = false;
        st.generation += 1;
        drop(st);
        self.0.finished.notify_all();
    }
}
