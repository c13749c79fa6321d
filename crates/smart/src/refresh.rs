//! Asking the helper: one connection, one frame, on a fixed interval in the background.
//!
//! A scrape never waits for this: it serves what the last refresh published. A refresh that
//! fails leaves every drive's last good data in place (their ages keep growing) and sets
//! `smart_system_error`.

use crate::attrmap::AttrMap;
use crate::collector::{Published, SmartStore};
use crate::devicedb::DeviceDb;
use crate::error::Error;
use crate::metrics;
use crate::state::State;
use custos_smart_wire::{decode_payload, parse_header, Report, WireError, HEADER_LEN};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::io::AsyncReadExt;

/// What the refresher needs.
#[derive(Debug)]
pub struct Refresher {
    pub socket: PathBuf,
    /// Longest wait for the helper's answer (its sweep runs while we wait).
    pub timeout: Duration,
    pub db: Arc<DeviceDb>,
    pub map: Arc<AttrMap>,
}

/// Connects to the helper at `socket` and reads its report, all within `timeout`.
///
/// The header is checked before anything else is read: a peer that is not the helper (or a
/// helper of another version) costs 9 bytes, and the payload is read only up to the length
/// the header announced, growing with what actually arrives.
pub async fn fetch(socket: &Path, timeout: Duration) -> Result<Report, Error> {
    let wire = |source| Error::Wire {
        path: socket.to_path_buf(),
        source,
    };
    let work = async {
        let mut stream = tokio::net::UnixStream::connect(socket)
            .await
            .map_err(|source| Error::Connect {
                path: socket.to_path_buf(),
                source,
            })?;
        let mut header = Vec::with_capacity(HEADER_LEN);
        (&mut stream)
            .take(HEADER_LEN as u64)
            .read_to_end(&mut header)
            .await
            .map_err(|e| wire(WireError::Io(e)))?;
        let Some(h) = header.first_chunk::<HEADER_LEN>() else {
            return Err(wire(WireError::Truncated {
                expected: HEADER_LEN as u64,
                got: header.len() as u64,
            }));
        };
        let len = parse_header(h).map_err(wire)?;
        // One byte more than announced, to notice trailing data.
        let mut body = Vec::new();
        stream
            .take(len.saturating_add(1))
            .read_to_end(&mut body)
            .await
            .map_err(|e| wire(WireError::Io(e)))?;
        decode_payload(len, &body).map_err(wire)
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| Error::Timeout {
            path: socket.to_path_buf(),
            secs: timeout.as_secs(),
        })?
}

impl Refresher {
    /// One refresh: ask the helper, update `state`, publish.
    pub async fn refresh(&self, state: &mut State, store: &SmartStore) {
        let t0 = Instant::now();
        let result = fetch(&self.socket, self.timeout).await;
        let now = SystemTime::now();
        match result {
            Ok(report) => {
                tracing::info!(
                    drives = report.devices.len(),
                    helper_ms = report.duration_ms,
                    "refreshed"
                );
                state.apply(report, now, t0.elapsed());
            }
            Err(e) => {
                tracing::error!("{e}");
                state.fail(e.to_string(), now, t0.elapsed());
            }
        }
        let families = metrics::families(state, &self.db, &self.map);
        store.publish(Published {
            state: state.clone(),
            families,
        });
    }

    /// Refreshes every `interval` (the first at once) for ever.
    pub async fn run(self, interval: Duration, store: Arc<SmartStore>) {
        let mut ticks = custos_kit::poll::fixed_rate(interval);
        let mut state = State::default();
        loop {
            ticks.tick().await;
            self.refresh(&mut state, &store).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A peer that is not the helper (here it speaks HTTP and never closes) is refused on its
    /// header, without waiting for or buffering the rest.
    #[tokio::test]
    async fn a_bad_header_is_refused_before_the_payload_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ipc");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await;
            // Then megabytes more, and the connection is held open.
            let junk = vec![b'x'; 1024 * 1024];
            for _ in 0..64 {
                if s.write_all(&junk).await.is_err() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_secs(60)).await;
        });
        let t = Instant::now();
        let e = fetch(&path, Duration::from_secs(20)).await.unwrap_err();
        assert!(
            matches!(
                e,
                Error::Wire {
                    source: WireError::UnknownVersion(b'H'),
                    ..
                }
            ),
            "{e}"
        );
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        server.abort();
    }

    /// A header announcing the cap followed by a few bytes and EOF: truncated, not a 64 MiB
    /// buffer.
    #[tokio::test]
    async fn a_short_payload_is_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ipc");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut frame =
                custos_smart_wire::frame::header(custos_smart_wire::MAX_PAYLOAD).to_vec();
            frame.extend_from_slice(b"{}");
            let _ = s.write_all(&frame).await;
        });
        let e = fetch(&path, Duration::from_secs(20)).await.unwrap_err();
        assert!(
            matches!(
                e,
                Error::Wire {
                    source: WireError::Truncated { got: 2, .. },
                    ..
                }
            ),
            "{e}"
        );
    }
}
