//! Cancellation of a run or a restore, handed down as a value: the engine's signal watcher
//! ([`crate::engine::interrupt`]) cancels it; source spawns register their children in it
//! (so every producer's process group is killed, now and as it starts), the runner stops
//! starting work once it is cancelled, and a restore removes its staging directory.
//!
//! A [`Cancel`] is a cheap copy of one shared state that lives as long as the process
//! (custos-process registers children in a `&'static` registry), so nothing reaches the
//! state through a global: whoever needs it is given it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use custos_process::Registry;

/// The shared state behind every copy of one [`Cancel`].
#[derive(Debug, Default)]
struct State {
    /// Producers and checks running now.
    producers: Registry,
    /// The signal that cancelled (0: none).
    signal: AtomicI32,
    /// When it cancelled (what is still to run after a signal fits in the time left).
    at: OnceLock<Instant>,
    /// Staging directories of restores in progress, removed as a last resort.
    staging: Mutex<Vec<PathBuf>>,
}

/// A cancellation token: copy it to whoever spawns a producer or must stop on a signal.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cancel(&'static State);

impl Cancel {
    /// A token nobody has cancelled. One per command (its state is leaked on purpose: the
    /// process registry of custos-process needs a `'static` reference).
    pub(crate) fn new() -> Self {
        Cancel(Box::leak(Box::default()))
    }

    /// Records `signal` and kills every registered producer's process group (and any
    /// registered later); how many groups were killed.
    pub(crate) fn cancel(self, signal: i32) -> usize {
        let _ = self.0.at.set(Instant::now());
        self.0.signal.store(signal, Ordering::SeqCst);
        self.0.producers.cancel()
    }

    /// The signal that cancelled, if one did.
    pub(crate) fn signal(self) -> Option<i32> {
        match self.0.signal.load(Ordering::SeqCst) {
            0 => None,
            n => Some(n),
        }
    }

    /// How long ago the signal came, if one did.
    pub(crate) fn since(self) -> Option<Duration> {
        self.0.at.get().map(Instant::elapsed)
    }

    /// Whether the command was cancelled (waits stop at once then).
    pub(crate) fn is_cancelled(self) -> bool {
        self.0.producers.is_cancelled()
    }

    /// Where producers register (custos-process's `Spawn::registry`).
    pub(crate) fn producers(self) -> &'static Registry {
        &self.0.producers
    }

    /// Registers a restore's staging directory until the guard is dropped.
    pub(crate) fn remove_on_cancel(self, path: PathBuf) -> StagingGuard {
        if let Ok(mut s) = self.0.staging.lock() {
            s.push(path.clone());
        }
        StagingGuard { cancel: self, path }
    }

    /// The staging directories registered now.
    pub(crate) fn staging(self) -> Vec<PathBuf> {
        self.0.staging.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Default for Cancel {
    /// A fresh token ([`Cancel::new`]).
    fn default() -> Self {
        Cancel::new()
    }
}

/// Unregisters a staging directory when dropped.
#[derive(Debug)]
pub(crate) struct StagingGuard {
    cancel: Cancel,
    path: PathBuf,
}

impl Drop for StagingGuard {
    fn drop(&mut self) {
        if let Ok(mut s) = self.cancel.0.staging.lock() {
            s.retain(|p| p != &self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_sees_the_cancel_of_another_and_staging_follows_its_guard() {
        let a = Cancel::new();
        let b = a;
        let other = Cancel::new();
        assert_eq!(b.signal(), None);
        assert_eq!(b.since(), None);
        let guard = b.remove_on_cancel(PathBuf::from("/tmp/x"));
        assert_eq!(a.staging(), vec![PathBuf::from("/tmp/x")]);
        assert_eq!(a.cancel(15), 0);
        assert_eq!(b.signal(), Some(15));
        assert!(b.since().is_some_and(|d| d < Duration::from_secs(60)));
        assert!(b.producers().is_cancelled());
        assert_eq!(other.signal(), None, "tokens are independent");
        drop(guard);
        assert!(a.staging().is_empty());
    }
}
