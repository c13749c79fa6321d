//! The latest poll of each HAProxy, kept in the kit's snapshot store for `/metrics`.

use crate::sample::Batch;
use custos_kit::snapshot::{Snapshot, Store};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Kinds of fetch errors, the values of the `kind` label of
/// `haproxysessionmon_fetch_errors_total` (all present from the start).
pub const FETCH_ERROR_KINDS: [&str; 7] = [
    "timeout", "connect", "auth", "http", "read", "parse", "setup",
];

/// Everything known about one configured HAProxy after its latest poll.
#[derive(Debug, Clone, Default)]
pub struct ServerSnapshot {
    /// The configured server id.
    pub server: String,
    /// Whether the last poll got a usable page.
    pub up: bool,
    /// The rows of the last successful poll (kept while the server is down; see `data_time`).
    pub batch: Option<Arc<Batch>>,
    /// When `batch` was fetched.
    pub data_time: Option<SystemTime>,
    pub fetch_duration: Option<Duration>,
    pub fetches: u64,
    /// The last `show info` (runtime socket servers a `prometheus` backend serves).
    pub info: Option<Arc<crate::info::Info>>,
    /// Error counts in [`FETCH_ERROR_KINDS`] order.
    pub errors: [u64; FETCH_ERROR_KINDS.len()],
    /// Rows skipped because they could not be read.
    pub malformed_rows: u64,
    /// Rows skipped because an earlier row of the page had the same proxy and server.
    pub duplicate_rows: u64,
    /// Rows skipped because the page had more than `max-rows`.
    pub rows_over_limit: u64,
    /// The last error (never holds a secret).
    pub last_error: Option<String>,
}

impl ServerSnapshot {
    /// Counts one error of `kind` (one of [`FETCH_ERROR_KINDS`]).
    pub fn count_error(&mut self, kind: &str) {
        if let Some(i) = FETCH_ERROR_KINDS.iter().position(|k| *k == kind) {
            self.errors[i] = self.errors[i].saturating_add(1);
        }
    }

    /// The count of errors of `kind`.
    pub fn errors_of(&self, kind: &str) -> u64 {
        FETCH_ERROR_KINDS
            .iter()
            .position(|k| *k == kind)
            .map_or(0, |i| self.errors[i])
    }
}

impl Snapshot for ServerSnapshot {
    fn key(&self) -> &str {
        &self.server
    }
    fn empty(server: &str) -> ServerSnapshot {
        ServerSnapshot {
            server: server.to_string(),
            ..ServerSnapshot::default()
        }
    }
}

/// The snapshots of all configured servers.
pub type Snapshots = Store<ServerSnapshot>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_errors_by_kind() {
        let mut s = ServerSnapshot::empty("a");
        s.count_error("auth");
        s.count_error("auth");
        s.count_error("nonsense");
        assert_eq!(s.errors_of("auth"), 2);
        assert_eq!(s.errors.iter().sum::<u64>(), 2);
    }
}
