//! The latest poll result per burp server: what a scrape serves.
//!
//! A poll task builds a whole new [`ServerSnapshot`] and swaps it into the kit's
//! [`Store`](custos_kit::snapshot::Store); a scrape takes an `Arc` to the current one.

use crate::error::Error;
use crate::model::{BackupStats, Client, History};
use custos_kit::snapshot::{Snapshot, Store};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Kinds of poll errors, the values of the `kind` label of `burp_poll_errors_total`.
pub const ERROR_KINDS: [&str; 10] = [
    "io",
    "tls",
    "timeout",
    "closed",
    "auth",
    "warning",
    "server",
    "protocol",
    "too_large",
    "parse",
];

/// The `kind` label for a transport error; `None` when no attempt was made (backing off).
pub fn error_kind(e: &Error) -> Option<&'static str> {
    Some(match e {
        Error::Io { .. } => "io",
        Error::Tls { .. } => "tls",
        Error::Timeout { .. } => "timeout",
        Error::Eof { .. } => "closed",
        Error::Auth { .. } => "auth",
        Error::Warning(_) => "warning",
        Error::Server(_) => "server",
        Error::Protocol { .. } => "protocol",
        Error::TooLarge { .. } => "too_large",
        Error::Parse { .. } => "parse",
        Error::Backoff { .. } => return None,
    })
}

/// Error counts by kind, in [`ERROR_KINDS`] order (all present, so no series appears late).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErrorCounts([u64; ERROR_KINDS.len()]);

impl ErrorCounts {
    /// Counts one error of `kind` (an unknown kind is counted as `protocol`).
    pub fn add(&mut self, kind: &str) {
        let i = ERROR_KINDS.iter().position(|k| *k == kind).unwrap_or(7);
        self.0[i] = self.0[i].saturating_add(1);
    }

    /// `(kind, count)` for every kind.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        ERROR_KINDS.iter().copied().zip(self.0.iter().copied())
    }

    pub fn get(&self, kind: &str) -> u64 {
        ERROR_KINDS
            .iter()
            .position(|k| *k == kind)
            .map_or(0, |i| self.0[i])
    }

    pub fn total(&self) -> u64 {
        self.0.iter().fold(0u64, |a, b| a.saturating_add(*b))
    }
}

/// One client as the last successful poll saw it, with details fetched for its current backup.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientSnapshot {
    /// The client's entry in the last `c:` reply.
    pub client: Client,
    /// Summary of its backup list (`c:<client>`); may lag one backup behind while a fetch is due.
    pub history: Option<History>,
    /// `backup_stats` of the current backup: `(backup number, stats)`.
    pub stats: Option<(u64, BackupStats)>,
}

impl ClientSnapshot {
    /// The stats, if they belong to the client's current backup.
    pub fn current_stats(&self) -> Option<&BackupStats> {
        let cur = self.client.current()?.number;
        self.stats
            .as_ref()
            .filter(|(n, _)| *n == cur)
            .map(|(_, s)| s)
    }
}

/// Everything known about one configured server after its latest poll.
#[derive(Debug, Clone, Default)]
pub struct ServerSnapshot {
    /// The configured `name` (the `server` label).
    pub server: String,
    /// Whether the last poll got a usable client list.
    pub up: bool,
    /// Clients of the last successful poll (kept while the server is down; see `data_time`).
    pub clients: Arc<Vec<ClientSnapshot>>,
    /// When `clients` was fetched; `None` before the first successful poll.
    pub data_time: Option<SystemTime>,
    /// When the server last answered a request.
    pub last_contact: Option<SystemTime>,
    /// When the last poll ended.
    pub last_poll: Option<SystemTime>,
    pub poll_duration: Option<Duration>,
    pub polls: u64,
    /// Connection attempts (TCP + TLS + login).
    pub contact_attempts: u64,
    /// Replies and client entries that could not be parsed.
    pub parse_errors: u64,
    pub errors: ErrorCounts,
    /// The last error, for `--once` and logs (never contains a secret).
    pub last_error: Option<String>,
}

impl ServerSnapshot {
    /// The state before the first poll.
    pub fn empty(server: &str) -> ServerSnapshot {
        ServerSnapshot {
            server: server.to_string(),
            ..ServerSnapshot::default()
        }
    }

    /// Age of `clients` at `now`, if any data was ever fetched.
    pub fn age(&self, now: SystemTime) -> Option<Duration> {
        custos_kit::snapshot::age(self.data_time, now)
    }
}

impl Snapshot for ServerSnapshot {
    fn key(&self) -> &str {
        &self.server
    }
    fn empty(server: &str) -> ServerSnapshot {
        ServerSnapshot::empty(server)
    }
}

/// The current snapshot of every configured server, in config order (the kit's store).
pub type Snapshots = Store<ServerSnapshot>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_counts_by_kind() {
        let mut e = ErrorCounts::default();
        e.add("auth");
        e.add("auth");
        e.add("nonsense");
        assert_eq!(e.get("auth"), 2);
        assert_eq!(e.get("protocol"), 1);
        assert_eq!(e.total(), 3);
        assert_eq!(e.iter().count(), ERROR_KINDS.len());
        let kind = error_kind(&Error::Timeout {
            addr: "x".into(),
            request: "c:".into(),
            timeout: Duration::from_secs(1),
        });
        assert_eq!(kind, Some("timeout"));
    }

    #[test]
    fn stats_only_for_current_backup() {
        let l = crate::model::parse_clients(
            br#"{"clients":[{"name":"t","backups":[{"number":5,"timestamp":1,"flags":["current"]}]}]}"#,
        )
        .unwrap();
        let mut c = ClientSnapshot {
            client: l.clients[0].clone(),
            history: None,
            stats: Some((4, BackupStats::default())),
        };
        assert!(c.current_stats().is_none());
        c.stats = Some((5, BackupStats::default()));
        assert!(c.current_stats().is_some());
    }
}
