//! The process groups of a set of running children, to kill them all at once (a SIGINT to
//! the parent) without a global in each caller.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use rustix::process::{kill_process_group, Pid, Signal};

/// Children registered while they run ([`crate::Spawn::registry`]). Once cancelled, every
/// registered child is killed and any child registered later is killed as it starts.
#[derive(Debug, Default)]
pub struct Registry {
    live: Mutex<Vec<u32>>,
    cancelled: AtomicBool,
}

impl Registry {
    /// An empty registry (usable in a `static`).
    pub const fn new() -> Self {
        Registry {
            live: Mutex::new(Vec::new()),
            cancelled: AtomicBool::new(false),
        }
    }

    /// Kills every registered child's process group, now and from now on; how many groups
    /// were killed.
    pub fn cancel(&self) -> usize {
        let live = match self.live.lock() {
            Ok(l) => l,
            Err(poisoned) => poisoned.into_inner(),
        };
        self.cancelled.store(true, Ordering::SeqCst);
        live.iter().filter(|pgid| kill_group(**pgid)).count()
    }

    /// Whether [`Registry::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// Runs `spawn` under the registry's lock, so a cancel cannot slip between the start and
    /// the registration: the child is registered, and killed at once if cancelled.
    pub(crate) fn register<T>(
        &self,
        spawn: impl FnOnce() -> std::io::Result<T>,
        id: impl Fn(&T) -> u32,
    ) -> std::io::Result<T> {
        let mut live = match self.live.lock() {
            Ok(l) => l,
            Err(poisoned) => poisoned.into_inner(),
        };
        let spawned = spawn()?;
        let pgid = id(&spawned);
        live.push(pgid);
        if self.is_cancelled() {
            kill_group(pgid);
        }
        Ok(spawned)
    }

    /// Forgets a child; called before it is reaped, so its group id cannot have been reused.
    pub(crate) fn unregister(&self, pgid: u32) {
        if let Ok(mut live) = self.live.lock() {
            live.retain(|p| *p != pgid);
        }
    }
}

/// SIGKILL to process group `pgid`; whether it reached a process.
pub(crate) fn kill_group(pgid: u32) -> bool {
    i32::try_from(pgid)
        .ok()
        .and_then(Pid::from_raw)
        .is_some_and(|p| kill_process_group(p, Signal::KILL).is_ok())
}
