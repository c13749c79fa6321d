//! The accept loop: up to [`MAX_CLIENTS`] clients at a time, each handed the shared sweep's
//! frames within one deadline; nothing is read from a client.
//!
//! A client that reads slowly or not at all holds only its own thread, and only until
//! `--client-timeout` (one deadline for all its writing, not per `write`; time spent
//! waiting for smartctl does not count).

use crate::cli::Options;
use crate::listen::SocketFile;
use crate::log::{error, info, warning};
use crate::shared::SharedSweep;
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use std::io::{self, Write};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Clients served at once; more wait in the listen backlog until one is done.
pub const MAX_CLIENTS: usize = 4;

/// Who is being served, and since when nobody is (for `--timeout`).
struct Clients {
    active: usize,
    idle_since: Instant,
}

struct Slots {
    clients: Mutex<Clients>,
    freed: Condvar,
}

impl Slots {
    fn lock(&self) -> MutexGuard<'_, Clients> {
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Blocks until fewer than [`MAX_CLIENTS`] are served.
    fn wait_free(&self) {
        let mut c = self.lock();
        while c.active >= MAX_CLIENTS {
            c = self.freed.wait(c).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn release(&self) {
        let mut c = self.lock();
        c.active -= 1;
        if c.active == 0 {
            c.idle_since = Instant::now();
        }
        drop(c);
        self.freed.notify_one();
    }
}

/// Serves connections until `--timeout` passes without one (or for ever). On that exit the
/// socket file the helper created (`socket`) is removed if it is still ours.
pub fn serve(listener: UnixListener, opts: &Options, socket: Option<SocketFile>) {
    let slots = Slots {
        clients: Mutex::new(Clients {
            active: 0,
            idle_since: Instant::now(),
        }),
        freed: Condvar::new(),
    };
    let shared = SharedSweep::new(Arc::new(opts.clone()));
    std::thread::scope(|s| {
        if let Some(idle) = opts.idle_timeout {
            let (slots, shared) = (&slots, &shared);
            // accept() has no timeout in std: a watchdog ends the process once idle long enough.
            s.spawn(move || loop {
                std::thread::sleep(Duration::from_millis(100).min(idle));
                let c = slots.lock();
                if c.active == 0 && c.idle_since.elapsed() >= idle && !shared.running() {
                    info!("no connection for {:.1} s, exiting", idle.as_secs_f64());
                    if let Some(socket) = &socket {
                        socket.remove();
                    }
                    std::process::exit(0);
                }
            });
        }
        loop {
            slots.wait_free();
            match listener.accept() {
                Ok((stream, _)) => {
                    slots.lock().active += 1;
                    let (slots, shared) = (&slots, &shared);
                    s.spawn(move || {
                        handle(stream, shared, opts.client_timeout);
                        slots.release();
                    });
                }
                Err(e) => {
                    error!("accept: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    });
}

/// Closes the reading side at once, writes the shared sweep's frames as they come, closes.
fn handle(stream: UnixStream, shared: &SharedSweep, timeout: Duration) {
    // The client has nothing to say: whatever it sends is discarded by the kernel.
    let _ = stream.shutdown(Shutdown::Read);
    let sweep = shared.join();
    let mut deadline = Instant::now() + timeout;
    for i in 0.. {
        let waiting = Instant::now();
        let Some(frame) = sweep.get(i) else { break };
        // Waiting for smartctl is not the client's fault: only writing counts.
        deadline += waiting.elapsed();
        if let Err(e) = write_by(&stream, &frame, deadline) {
            warning!("writing to a client: {e}");
            break;
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
}

/// Writes all of `buf` unless `deadline` passes first. The socket is non-blocking and the
/// wait for room is a `poll` bounded by what is left: a blocking `write` with a send timeout
/// would not do, as Linux restarts that timeout for each chunk a slow reader makes room for.
pub fn write_by(stream: &UnixStream, mut buf: &[u8], deadline: Instant) -> io::Result<()> {
    stream.set_nonblocking(true)?;
    while !buf.is_empty() {
        match (&*stream).write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                buf = &buf[n..];
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "client did not take its frame in time; {} bytes unsent",
                    buf.len()
                ),
            ));
        }
        let timeout = Timespec::try_from(left).ok();
        let mut fds = [PollFd::new(stream, PollFlags::OUT)];
        match poll(&mut fds, timeout.as_ref()) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// A reader taking a few bytes now and then is cut at the deadline, not per write.
    #[test]
    fn a_trickle_reader_is_cut_at_the_frame_deadline() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let reader = std::thread::spawn(move || {
            let mut total = 0;
            let mut chunk = [0u8; 4096];
            loop {
                match b.read(&mut chunk) {
                    Ok(0) | Err(_) => return total,
                    Ok(n) => total += n,
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let frame = vec![7u8; 8 * 1024 * 1024];
        let t = Instant::now();
        let r = write_by(&a, &frame, Instant::now() + Duration::from_millis(700));
        let took = t.elapsed();
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::TimedOut);
        assert!(took < Duration::from_millis(1500), "took {took:?}");
        drop(a);
        assert!(reader.join().unwrap() < frame.len());
    }
}
