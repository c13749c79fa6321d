//! Runs a job's sources several at a time (`max_parallel_sources`), and keeps each
//! destination within the uploads it takes at once.
//!
//! - [`workers`]: how many sources run at once: the job's key, else the number of cores,
//!   never more than there are sources. 1 is the original's order: one source after another
//!   on the caller's thread.
//! - [`run_each`]: the executor: scoped worker threads take the next source from one shared
//!   queue (an index) in config order, so sources start in config order and a new one starts
//!   as soon as one ends; results come back in config order whatever order they ended in, so
//!   the report, the summary table and the notifications read as in a sequential run.
//! - [`Uploads`]: a destination's count of uploads in flight, bounded by
//!   [`Destination::max_uploads`](crate::destination::Destination::max_uploads): a source
//!   takes one of every destination it writes to ([`take_all`], always in config order, so two
//!   sources never hold one each of what the other waits for) and gives them back when it is
//!   done with them (copy and retention).
//!
//! Cancellation: the caller's body checks the run's [`Cancel`] before it starts a source (and
//! reports it not run), so once a signal came no new source starts, while those running stop
//! through their producers' process groups; a wait for an upload ends at once on a signal.
//!
//! CPU: each worker runs its source's whole pipeline, whose zstd has worker threads of its
//! own; [`zstd_threads`] shares the cores between the pipelines that run at once.

use std::cell::Cell;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

use crate::cancel::Cancel;

/// How often a wait for an upload looks at the cancellation token.
const CANCEL_POLL: Duration = Duration::from_millis(100);

/// Most zstd worker threads one pipeline gets (the cap it had before sources ran in
/// parallel; the OpenPGP stage behind zstd is one thread whatever zstd has).
const MAX_ZSTD_THREADS: usize = 8;

/// The cores of this machine (as the scheduler lets this process use them).
pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
}

/// Sources run at once: `configured` (the job's `max_parallel_sources`, checked 1-64 where
/// the job is loaded), else the number of cores; at least 1, at most `sources`.
pub(crate) fn workers(configured: Option<u32>, sources: usize) -> usize {
    let wanted = configured.map_or_else(cores, |n| n as usize);
    wanted.clamp(1, sources.max(1))
}

thread_local! {
    /// Pipelines that run at once in the executor this thread works for (1 outside one).
    static RUNNING: Cell<usize> = const { Cell::new(1) };
}

/// zstd worker threads for a pipeline started on this thread: the cores shared out between
/// the sources running at once (at least 1: compression then still overlaps reading the
/// source), at most [`MAX_ZSTD_THREADS`].
pub(crate) fn zstd_threads() -> u32 {
    let share = cores() / RUNNING.with(Cell::get).max(1);
    share.clamp(1, MAX_ZSTD_THREADS) as u32
}

/// Sets [`RUNNING`] for the current thread until dropped (the caller's thread works too).
struct Running(usize);

impl Running {
    fn enter(n: usize) -> Self {
        Running(RUNNING.with(|r| r.replace(n)))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING.with(|r| r.set(self.0));
    }
}

/// Calls `f` on every item, up to `workers` at once, and returns the results in the items'
/// order. With one worker everything runs on the caller's thread, in order.
pub(crate) fn run_each<T, R, F>(items: &[T], workers: usize, f: F) -> Vec<R>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> R + Sync,
{
    let workers = workers.clamp(1, items.len().max(1));
    if workers == 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let work = || {
        let _running = Running::enter(workers);
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::SeqCst);
            let Some(item) = items.get(i) else {
                return done;
            };
            done.push((i, f(item)));
        }
    };
    let mut results: Vec<(usize, R)> = std::thread::scope(|scope| {
        // The caller's thread is one of the workers; a thread that cannot be started only
        // means one worker fewer.
        let helpers: Vec<_> = (1..workers)
            .filter_map(|n| {
                std::thread::Builder::new()
                    .name(format!("source-{n}"))
                    .spawn_scoped(scope, work)
                    .map_err(|e| tracing::warn!("cannot start a thread for parallel sources: {e}"))
                    .ok()
            })
            .collect();
        let mut all = work();
        for h in helpers {
            match h.join() {
                Ok(done) => all.extend(done),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        all
    });
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

/// The uploads a destination has in flight, and how many it takes at once.
#[derive(Debug)]
pub(crate) struct Uploads {
    limit: Option<NonZeroUsize>,
    taken: Mutex<usize>,
    freed: Condvar,
}

/// One upload taken from [`Uploads`]; given back when dropped.
#[derive(Debug)]
pub(crate) struct Upload<'a>(&'a Uploads);

impl Uploads {
    /// Uploads for a destination that takes `limit` at once (`None`: any number).
    pub(crate) fn new(limit: Option<NonZeroUsize>) -> Self {
        Uploads {
            limit,
            taken: Mutex::new(0),
            freed: Condvar::new(),
        }
    }

    /// How many this destination takes at once (`None`: any number).
    pub(crate) fn limit(&self) -> Option<NonZeroUsize> {
        self.limit
    }

    /// Whether `taken` uploads are all this destination takes.
    fn full(&self, taken: usize) -> bool {
        self.limit.is_some_and(|l| taken >= l.get())
    }

    /// Takes one upload if one is free now.
    pub(crate) fn try_take(&self) -> Option<Upload<'_>> {
        let mut taken = self.taken.lock().unwrap_or_else(PoisonError::into_inner);
        if self.full(*taken) {
            return None;
        }
        *taken += 1;
        Some(Upload(self))
    }

    /// Takes one upload, waiting for one to be given back; `Err(signal)` when the run is
    /// cancelled meanwhile.
    pub(crate) fn take(&self, cancel: Cancel) -> Result<Upload<'_>, i32> {
        let mut taken = self.taken.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(sig) = cancel.signal() {
                return Err(sig);
            }
            if !self.full(*taken) {
                *taken += 1;
                return Ok(Upload(self));
            }
            taken = self
                .freed
                .wait_timeout(taken, CANCEL_POLL)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

impl Drop for Upload<'_> {
    fn drop(&mut self) {
        let mut taken = self.0.taken.lock().unwrap_or_else(PoisonError::into_inner);
        *taken = taken.saturating_sub(1);
        self.0.freed.notify_one();
    }
}

/// Takes one upload of each of `uploads` (in the order given, which must be the same for
/// every caller: config order), calling `waiting(i)` before it waits for the `i`th; on a
/// signal gives back what it took and returns `Err(signal)`.
pub(crate) fn take_all<'a>(
    uploads: &[&'a Uploads],
    cancel: Cancel,
    waiting: impl Fn(usize),
) -> Result<Vec<Upload<'a>>, i32> {
    let mut held = Vec::with_capacity(uploads.len());
    for (i, u) in uploads.iter().enumerate() {
        let upload = match u.try_take() {
            Some(upload) => upload,
            None => {
                waiting(i);
                u.take(cancel)?
            }
        };
        held.push(upload);
    }
    Ok(held)
}

#[cfg(test)]
mod tests;
