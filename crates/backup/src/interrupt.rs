//! SIGINT and SIGTERM during a run: stop the producers, let every writer abort, exit 130/143.
//!
//! A watcher thread (a one-thread tokio runtime, the kit's signal machinery, no `unsafe`)
//! records the signal and cancels the producers ([`process::PRODUCERS`]: every process group
//! is killed, now and as it starts). The stream being written then ends early, its source
//! fails, and the pipeline aborts every destination writer (no object that looks complete);
//! the runner starts nothing more and the CLI exits with 128 + the signal number. Should the
//! run not wind down within [`GRACE`], the process exits anyway (a half-written temporary file
//! is hidden and removed by the next run).

use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::source::process;

/// How long an interrupted run may take to abort its writers before the process exits.
pub const GRACE: Duration = Duration::from_secs(30);

/// The signal received (0: none).
static RECEIVED: AtomicI32 = AtomicI32::new(0);

/// Staging directories of restores in progress. An interrupted restore stops at its next
/// member and removes its own; these are removed if it has not within [`GRACE`].
static STAGING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Registers a restore's staging directory until the guard is dropped.
pub fn remove_on_interrupt(path: PathBuf) -> StagingGuard {
    if let Ok(mut s) = STAGING.lock() {
        s.push(path.clone());
    }
    StagingGuard(path)
}

/// Unregisters a staging directory when dropped.
#[derive(Debug)]
pub struct StagingGuard(PathBuf);

impl Drop for StagingGuard {
    fn drop(&mut self) {
        if let Ok(mut s) = STAGING.lock() {
            s.retain(|p| p != &self.0);
        }
    }
}

const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;

/// Starts watching for SIGINT and SIGTERM; returns once both handlers are installed.
pub fn install() -> std::io::Result<()> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            rt.block_on(async move {
                use tokio::signal::unix::{signal, SignalKind};
                let handlers = signal(SignalKind::interrupt())
                    .and_then(|i| Ok((i, signal(SignalKind::terminate())?)));
                let (mut int, mut term) = match handlers {
                    Ok(h) => h,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                let number = tokio::select! {
                    _ = int.recv() => SIGINT,
                    _ = term.recv() => SIGTERM,
                };
                on_signal(number);
            });
        })?;
    ready_rx
        .recv()
        .unwrap_or_else(|_| Err(std::io::Error::other("signal thread ended")))
}

fn on_signal(number: i32) {
    RECEIVED.store(number, Ordering::SeqCst);
    let name = if number == SIGINT {
        "SIGINT"
    } else {
        "SIGTERM"
    };
    let killed = process::PRODUCERS.cancel();
    tracing::warn!("{name} received: killed {killed} producer(s); aborting writers and stopping");
    // The run (or restore) notices, aborts and exits; this is the backstop.
    std::thread::sleep(GRACE);
    for p in STAGING.lock().map(|s| s.clone()).unwrap_or_default() {
        let _ = std::fs::remove_dir_all(p);
    }
    tracing::error!("{name}: did not stop within {} s; exiting", GRACE.as_secs());
    std::process::exit(128 + number);
}

/// The signal that interrupted the run, if one did.
pub fn received() -> Option<i32> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        n => Some(n),
    }
}

/// The exit code for an interrupted run: 130 (SIGINT) or 143 (SIGTERM).
pub fn exit_code() -> Option<u8> {
    received().map(|n| (128 + n) as u8)
}
