//! `show info` on the runtime socket: process-level figures (uptime, connections, limits...)
//! for the `prometheus` backend's `haproxy_process_*` families, named as HAProxy's built-in
//! exporter names them. Only a server polled over its runtime socket has them: the `;csv` page
//! carries no process figures.

use crate::columns::{Column, Kind};
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Longest `show info` answer read (2.6 writes about 1.5 KB).
const MAX_ANSWER: usize = 64 << 10;

/// Why `show info` gave nothing.
#[derive(Debug, thiserror::Error)]
pub enum InfoError {
    #[error("show info on {path}: no answer within {timeout:?}")]
    Timeout { path: String, timeout: Duration },
    #[error("show info on {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("show info on {path}: answer larger than {MAX_ANSWER} bytes")]
    TooLarge { path: String },
}

const fn f(key: &'static str, name: &'static str, help: &'static str, kind: Kind) -> Column {
    Column {
        csv: key,
        name,
        help,
        kind,
    }
}

use Kind::{Counter, Gauge, Mebibytes};

/// The `show info` fields exported, as `haproxy_process_<name>` (`csv` is the field's name).
pub const FIELDS: [Column; 35] = [
    f("Nbthread", "nbthread", "Threads (Nbthread).", Gauge),
    f(
        "Uptime_sec",
        "uptime_seconds",
        "Seconds since the process started (Uptime_sec).",
        Gauge,
    ),
    f(
        "Memmax_MB",
        "max_memory_bytes",
        "Memory limit (Memmax_MB; 0: none).",
        Mebibytes,
    ),
    f(
        "PoolAlloc_MB",
        "pool_allocated_bytes",
        "Memory allocated in pools (PoolAlloc_MB).",
        Mebibytes,
    ),
    f(
        "PoolUsed_MB",
        "pool_used_bytes",
        "Memory used from pools (PoolUsed_MB).",
        Mebibytes,
    ),
    f(
        "PoolFailed",
        "pool_failures",
        "Failed pool allocations (PoolFailed).",
        Counter,
    ),
    f(
        "Ulimit-n",
        "max_fds",
        "File descriptor limit (Ulimit-n).",
        Gauge,
    ),
    f("Maxsock", "max_sockets", "Socket limit (Maxsock).", Gauge),
    f(
        "Maxconn",
        "max_connections",
        "Connection limit (Maxconn).",
        Gauge,
    ),
    f(
        "Hard_maxconn",
        "hard_max_connections",
        "Initial connection limit (Hard_maxconn).",
        Gauge,
    ),
    f(
        "CurrConns",
        "current_connections",
        "Current connections (CurrConns).",
        Gauge,
    ),
    f(
        "CumConns",
        "connections",
        "Connections since start (CumConns).",
        Counter,
    ),
    f(
        "CumReq",
        "requests",
        "HTTP requests since start (CumReq).",
        Counter,
    ),
    f(
        "MaxSslConns",
        "max_ssl_connections",
        "SSL connection limit (MaxSslConns).",
        Gauge,
    ),
    f(
        "CurrSslConns",
        "current_ssl_connections",
        "Current SSL connections (CurrSslConns).",
        Gauge,
    ),
    f(
        "CumSslConns",
        "ssl_connections",
        "SSL connections since start (CumSslConns).",
        Counter,
    ),
    f("Maxpipes", "max_pipes", "Pipe limit (Maxpipes).", Gauge),
    f(
        "PipesUsed",
        "pipes_used",
        "Pipes in use (PipesUsed).",
        Gauge,
    ),
    f(
        "PipesFree",
        "pipes_free",
        "Unused pipes (PipesFree).",
        Gauge,
    ),
    f(
        "ConnRate",
        "current_connection_rate",
        "Connections per second over the last second (ConnRate).",
        Gauge,
    ),
    f(
        "ConnRateLimit",
        "limit_connection_rate",
        "Connection rate limit (ConnRateLimit).",
        Gauge,
    ),
    f(
        "MaxConnRate",
        "max_connection_rate",
        "Highest connections per second seen (MaxConnRate).",
        Gauge,
    ),
    f(
        "SessRate",
        "current_session_rate",
        "Sessions per second over the last second (SessRate).",
        Gauge,
    ),
    f(
        "SessRateLimit",
        "limit_session_rate",
        "Session rate limit (SessRateLimit).",
        Gauge,
    ),
    f(
        "MaxSessRate",
        "max_session_rate",
        "Highest sessions per second seen (MaxSessRate).",
        Gauge,
    ),
    f(
        "SslRate",
        "current_ssl_rate",
        "SSL sessions per second over the last second (SslRate).",
        Gauge,
    ),
    f(
        "MaxSslRate",
        "max_ssl_rate",
        "Highest SSL sessions per second seen (MaxSslRate).",
        Gauge,
    ),
    f("Tasks", "current_tasks", "Current tasks (Tasks).", Gauge),
    f(
        "Run_queue",
        "current_run_queue",
        "Tasks in the run queue (Run_queue).",
        Gauge,
    ),
    f(
        "Idle_pct",
        "idle_time_percent",
        "Idle time in percent (Idle_pct).",
        Gauge,
    ),
    f(
        "Stopping",
        "stopping",
        "1 while the process is stopping (Stopping).",
        Gauge,
    ),
    f("Jobs", "jobs", "Active jobs (Jobs).", Gauge),
    f(
        "Listeners",
        "listeners",
        "Active listeners (Listeners).",
        Gauge,
    ),
    f(
        "DroppedLogs",
        "dropped_logs",
        "Log messages dropped (DroppedLogs).",
        Counter,
    ),
    f(
        "TotalBytesOut",
        "bytes_out",
        "Bytes sent since start (TotalBytesOut).",
        Counter,
    ),
];

/// One `show info` answer: the values of [`FIELDS`], in that order (`None`: absent or no
/// count).
pub type Info = [Option<u64>; FIELDS.len()];

/// Reads the fields of a `show info` answer (`Name: value` lines); other lines are ignored.
pub fn parse(text: &str) -> Info {
    let mut info = [None; FIELDS.len()];
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        if let Some(i) = FIELDS.iter().position(|f| f.csv == key.trim()) {
            info[i] = value.trim().parse().ok();
        }
    }
    info
}

/// Asks the runtime socket at `path` for `show info`, within `timeout`.
pub async fn fetch(path: &Path, timeout: Duration) -> Result<Info, InfoError> {
    let shown = || path.display().to_string();
    let ask = async {
        let io = |source| InfoError::Io {
            path: shown(),
            source,
        };
        let mut s = tokio::net::UnixStream::connect(path).await.map_err(io)?;
        s.write_all(b"show info\n").await.map_err(io)?;
        let mut answer = Vec::new();
        let read = (&mut s)
            .take(MAX_ANSWER as u64 + 1)
            .read_to_end(&mut answer)
            .await;
        read.map_err(io)?;
        if answer.len() > MAX_ANSWER {
            return Err(InfoError::TooLarge { path: shown() });
        }
        Ok(parse(&String::from_utf8_lossy(&answer)))
    };
    tokio::time::timeout(timeout, ask)
        .await
        .map_err(|_| InfoError::Timeout {
            path: shown(),
            timeout,
        })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_by_name_and_garbage_ignored() {
        let text = "Name: HAProxy\nVersion: 2.6.12\nUptime_sec: 42\nCurrConns: x\n\
                    Memmax_MB: 0\nno colon\nCumConns:7\n: 3\nMaxconn: -1\n";
        let info = parse(text);
        let at = |k| info[FIELDS.iter().position(|f| f.csv == k).unwrap()];
        assert_eq!(at("Uptime_sec"), Some(42));
        assert_eq!(at("CumConns"), Some(7));
        assert_eq!(at("Memmax_MB"), Some(0));
        assert_eq!(at("CurrConns"), None, "no count: unknown");
        assert_eq!(at("Maxconn"), None);
        assert_eq!(at("Jobs"), None, "absent: unknown");
    }

    /// The socket gets one command and the answer is read to its end; a peer that never
    /// answers is a timeout.
    #[tokio::test]
    async fn fetch_from_a_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.sock");
        let l = tokio::net::UnixListener::bind(&path).unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut cmd = [0u8; 10];
            s.read_exact(&mut cmd).await.unwrap();
            s.write_all(b"Name: HAProxy\nUptime_sec: 9\nCumConns: 3\n\n")
                .await
                .unwrap();
            drop(s);
            let (_s, _) = l.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
            cmd
        });
        let info = fetch(&path, Duration::from_secs(5)).await.unwrap();
        let at = |k| info[FIELDS.iter().position(|f| f.csv == k).unwrap()];
        assert_eq!((at("Uptime_sec"), at("CumConns")), (Some(9), Some(3)));
        let e = fetch(&path, Duration::from_millis(100)).await.unwrap_err();
        assert!(matches!(e, InfoError::Timeout { .. }), "{e}");
        server.abort();
    }

    #[test]
    fn names_are_unique_and_documented() {
        let mut n: Vec<_> = FIELDS.iter().map(|f| f.name).collect();
        n.sort_unstable();
        n.dedup();
        assert_eq!(n.len(), FIELDS.len());
        let readme = include_str!("../../../README.md");
        for f in &FIELDS {
            let total = if f.kind == Kind::Counter {
                "_total"
            } else {
                ""
            };
            let metric = format!(
                "`haproxy_process_{}{total}` | haproxy | `{}`",
                f.name, f.csv
            );
            assert!(readme.contains(&metric), "README lacks {metric}");
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in proptest::prelude::any::<String>()) {
            let _ = parse(&s);
        }
    }
}
