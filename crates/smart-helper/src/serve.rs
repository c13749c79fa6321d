//! The accept loop: one sweep and one frame per connection, nothing read from the client.

use crate::cli::Options;
use crate::log::{error, info};
use crate::sweep::sweep;
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a client may take to read its frame before the helper gives up on it.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves connections one at a time until `--timeout` passes without one (or for ever).
pub fn serve(listener: UnixListener, opts: &Options) {
    let busy = Arc::new(AtomicBool::new(false));
    let last = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    if let Some(idle) = opts.idle_timeout {
        let (busy, last) = (Arc::clone(&busy), Arc::clone(&last));
        // accept() has no timeout in std: a watchdog ends the process once idle long enough.
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(100).min(idle));
            let since = start
                .elapsed()
                .saturating_sub(Duration::from_millis(last.load(Ordering::Acquire)));
            if !busy.load(Ordering::Acquire) && since >= idle {
                info!("no connection for {:.1} s, exiting", idle.as_secs_f64());
                std::process::exit(0);
            }
        });
    }
    for conn in listener.incoming() {
        busy.store(true, Ordering::Release);
        match conn {
            Ok(stream) => handle(stream, opts),
            Err(e) => {
                error!("accept: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        last.store(start.elapsed().as_millis() as u64, Ordering::Release);
        busy.store(false, Ordering::Release);
    }
}

/// Closes the reading side at once, sweeps, writes one frame, closes.
pub fn handle(stream: UnixStream, opts: &Options) {
    // The client has nothing to say: whatever it sends is discarded by the kernel.
    let _ = stream.shutdown(Shutdown::Read);
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let report = sweep(opts);
    let mut w = &stream;
    if let Err(e) = custos_smart_wire::write_frame(&mut w, &report) {
        error!("writing the frame: {e}");
    }
    let _ = stream.shutdown(Shutdown::Both);
}
