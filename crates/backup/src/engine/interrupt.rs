//! SIGINT and SIGTERM during a run: stop the producers, let every writer abort, exit 130/143.
//!
//! A watcher thread (a one-thread tokio runtime, the kit's signal machinery, no `unsafe`)
//! cancels the command's [`Cancel`] token, which the runner handed to every producer spawn:
//! every process group is killed, now and as it starts. The stream being written then ends early, its source
//! fails, and the pipeline aborts every destination writer (no object that looks complete);
//! the runner starts nothing more and the CLI exits with 128 + the signal number. Should the
//! run not wind down within [`GRACE`], the process exits anyway (a half-written temporary file
//! is hidden and removed by the next run).

use std::time::Duration;

use crate::cancel::Cancel;

/// How long an interrupted run may take to abort its writers before the process exits.
pub(crate) const GRACE: Duration = Duration::from_secs(30);

const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;

/// Starts watching for SIGINT and SIGTERM, which cancel `cancel`; returns once both handlers
/// are installed.
pub(crate) fn install(cancel: Cancel) -> std::io::Result<()> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let rt =
                match custos_kit::start::runtime(custos_kit::start::Runtime::CurrentThread, None) {
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
                on_signal(cancel, number);
            });
        })?;
    ready_rx
        .recv()
        .unwrap_or_else(|_| Err(std::io::Error::other("signal thread ended")))
}

fn on_signal(cancel: Cancel, number: i32) {
    let name = if number == SIGINT {
        "SIGINT"
    } else {
        "SIGTERM"
    };
    let killed = cancel.cancel(number);
    tracing::warn!("{name} received: killed {killed} producer(s); aborting writers and stopping");
    // The run (or restore) notices, aborts and exits; this is the backstop.
    std::thread::sleep(GRACE);
    for p in cancel.staging() {
        let _ = std::fs::remove_dir_all(p);
    }
    tracing::error!("{name}: did not stop within {} s; exiting", GRACE.as_secs());
    std::process::exit(128 + number);
}

/// The exit code for a run cancelled by a signal: 130 (SIGINT) or 143 (SIGTERM).
pub(crate) fn exit_code(cancel: Cancel) -> Option<u8> {
    cancel.signal().map(|n| (128 + n) as u8)
}
