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
use custos_smart_wire::{Report, HEADER_LEN, MAX_PAYLOAD};
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
pub async fn fetch(socket: &Path, timeout: Duration) -> Result<Report, Error> {
    let work = async {
        let stream = tokio::net::UnixStream::connect(socket)
            .await
            .map_err(|source| Error::Connect {
                path: socket.to_path_buf(),
                source,
            })?;
        // One frame, then EOF; read at most the cap (+1 byte to notice more).
        let mut buf = Vec::new();
        stream
            .take(HEADER_LEN as u64 + MAX_PAYLOAD + 1)
            .read_to_end(&mut buf)
            .await
            .map_err(|e| Error::Wire {
                path: socket.to_path_buf(),
                source: custos_smart_wire::WireError::Io(e),
            })?;
        custos_smart_wire::decode(&buf).map_err(|source| Error::Wire {
            path: socket.to_path_buf(),
            source,
        })
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
