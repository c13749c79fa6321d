//! One poll task per HAProxy on a fixed-rate schedule, the sinks they feed, and the
//! `/metrics` servers of the `prometheus` backends: the whole running monitor.

use crate::config::{Config, Server};
use crate::sample::{Batch, RowType, Sample};
use crate::sink::{self, logfile, Built, SinkHandle, SinkStats};
use crate::snapshot::{ServerSnapshot, Snapshots};
use crate::source::Source;
use custos_kit::snapshot::Snapshot as _;
use regex_lite::Regex;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Which rows of a page a server forwards.
#[derive(Debug, Clone)]
pub struct Selection {
    rows: Vec<RowType>,
    include: Option<Regex>,
    exclude: Option<Regex>,
}

impl Selection {
    /// The selection of a validated server config.
    pub fn of(server: &Server) -> Selection {
        let re = |r: &Option<String>| r.as_deref().and_then(|r| Regex::new(r).ok());
        Selection {
            rows: server.row_types(),
            include: re(&server.include),
            exclude: re(&server.exclude),
        }
    }

    pub fn keeps(&self, s: &Sample) -> bool {
        self.rows.contains(&s.row_type)
            && self.include.as_ref().is_none_or(|r| r.is_match(&s.proxy))
            && !self.exclude.as_ref().is_some_and(|r| r.is_match(&s.proxy))
    }
}

/// The polling state of one server.
#[derive(Debug)]
pub struct Poller {
    source: Result<Source, String>,
    endpoint: Arc<str>,
    timeout: Duration,
    /// Reads each page as it arrives; kept across polls (it remembers the header).
    reader: crate::csv::Reader,
    selection: Selection,
    sinks: Vec<SinkHandle>,
    snap: ServerSnapshot,
    /// Columns missing in the last page, to log a change once.
    missing: Vec<&'static str>,
    /// Rows the last page skipped, to log a change once.
    last: Skipped,
    /// The runtime socket, when the server is polled over one.
    socket: Option<PathBuf>,
    /// Whether `show info` is asked after each page (for a `prometheus` backend).
    info: bool,
}

/// Rows a page skipped, by reason.
#[derive(Debug, Default, Clone, Copy)]
struct Skipped {
    duplicates: u64,
    over_limit: u64,
}

impl Poller {
    pub fn new(id: &str, server: &Server, sinks: Vec<SinkHandle>) -> Poller {
        let source = Source::new(server).map_err(|e| e.to_string());
        Poller {
            source,
            endpoint: server.endpoint_display().into(),
            timeout: server.timeout(),
            reader: crate::csv::Reader::new(server.max_rows()),
            selection: Selection::of(server),
            sinks,
            snap: ServerSnapshot::empty(id),
            missing: Vec::new(),
            last: Skipped::default(),
            socket: server.endpoint.strip_prefix("unix://").map(PathBuf::from),
            info: false,
        }
    }

    /// Reads the extra columns a `prometheus` backend exports (not needed by other sinks), and
    /// `show info` after each page when polling a runtime socket.
    pub fn with_extra_columns(mut self) -> Poller {
        self.info = self.socket.is_some();
        self.reader =
            std::mem::replace(&mut self.reader, crate::csv::Reader::new(0)).with_extra_columns();
        self
    }

    /// The latest snapshot.
    pub fn snapshot(&self) -> &ServerSnapshot {
        &self.snap
    }

    /// Fetches and parses one page, publishes the snapshot and hands the rows to the sinks.
    pub async fn poll(&mut self, store: &Snapshots) {
        let t0 = Instant::now();
        let time = SystemTime::now();
        self.snap.fetches += 1;
        let page = match &self.source {
            Err(e) => Err(("setup", e.clone())),
            Ok(src) => {
                let fetched = src.fetch(self.timeout, &mut self.reader).await;
                // Taken either way, so a failed fetch leaves nothing for the next page.
                let page = self.reader.take_page();
                match fetched {
                    Err(e) => Err((e.kind(), e.to_string())),
                    Ok(()) => page.map_err(|e| ("parse", format!("{}: {e}", self.endpoint))),
                }
            }
        };
        self.snap.fetch_duration = Some(t0.elapsed());
        let server = self.snap.server.clone();
        match page {
            Err((kind, msg)) => {
                if self.snap.up || self.snap.fetches == 1 {
                    tracing::warn!(server = %server, kind, "poll failed: {msg}");
                } else {
                    tracing::debug!(server = %server, kind, "poll failed again: {msg}");
                }
                self.snap.up = false;
                self.snap.count_error(kind);
                self.snap.last_error = Some(msg);
            }
            Ok(page) => {
                if !self.snap.up {
                    tracing::info!(server = %server, rows = page.samples.len(), "HAProxy stats answer");
                }
                if page.malformed > 0 {
                    tracing::warn!(server = %server, skipped = page.malformed, "unreadable stats rows skipped");
                }
                // Said once when it starts (it would repeat every poll), again after it stopped.
                if page.duplicates > 0 && self.last.duplicates == 0 {
                    tracing::warn!(server = %server, skipped = page.duplicates,
                        first = page.first_duplicate.as_deref().unwrap_or(""),
                        "stats rows repeating an earlier row's pxname and svname skipped (the first is kept)");
                }
                if page.over_limit > 0 && self.last.over_limit == 0 {
                    tracing::warn!(server = %server, kept = page.samples.len(), skipped = page.over_limit,
                        "the stats page has more rows than max-rows; the rest are skipped");
                }
                self.last = Skipped {
                    duplicates: page.duplicates,
                    over_limit: page.over_limit,
                };
                if page.missing_columns != self.missing {
                    if !page.missing_columns.is_empty() {
                        tracing::info!(server = %server, columns = ?page.missing_columns,
                            "this HAProxy does not report some columns; their values are unknown");
                    }
                    self.missing = page.missing_columns.clone();
                }
                self.snap.up = true;
                self.snap.malformed_rows += page.malformed;
                self.snap.duplicate_rows += page.duplicates;
                self.snap.rows_over_limit += page.over_limit;
                self.snap.last_error = None;
                self.snap.data_time = Some(time);
                let batch = Arc::new(Batch {
                    server: server.as_str().into(),
                    endpoint: Arc::clone(&self.endpoint),
                    time,
                    samples: page
                        .samples
                        .into_iter()
                        .filter(|s| self.selection.keeps(s))
                        .collect(),
                });
                for s in &self.sinks {
                    s.offer(Arc::clone(&batch));
                }
                self.snap.batch = Some(batch);
                self.ask_info(t0).await;
            }
        }
        store.publish(self.snap.clone());
    }

    /// `show info` within what is left of the poll's timeout; a failure leaves the process
    /// figures out (logged when it starts, not every poll) and the rows as they are.
    async fn ask_info(&mut self, t0: Instant) {
        let (true, Some(path)) = (self.info, &self.socket) else {
            return;
        };
        let left = self.timeout.saturating_sub(t0.elapsed());
        match crate::info::fetch(path, left).await {
            Ok(info) => self.snap.info = Some(Arc::new(info)),
            Err(e) => {
                if self.snap.info.take().is_some() || self.snap.fetches == 1 {
                    tracing::warn!(server = %self.snap.server, "no process figures: {e}");
                }
            }
        }
    }

    /// Polls for ever every `interval` on a fixed grid (a slow fetch does not shift the next),
    /// the first time after `offset`.
    pub async fn run(mut self, interval: Duration, offset: Duration, store: Arc<Snapshots>) {
        tokio::time::sleep(offset).await;
        let mut ticks = custos_kit::poll::fixed_rate(interval);
        loop {
            ticks.tick().await;
            self.poll(&store).await;
        }
    }
}

/// Groups the first polls fall into, spread over the first second.
pub const SPREAD_GROUPS: u32 = 4;

/// When server `i` of `n` polls first: the servers fall into [`SPREAD_GROUPS`] groups spread
/// over the first second (or interval, if shorter), so that many servers do not fetch, parse and
/// send at the same instant every interval (a burst of page buffers alive at once), while a
/// group still shares one wake-up.
pub fn spread(i: u32, n: u32, interval: Duration) -> Duration {
    let groups = SPREAD_GROUPS.min(n.max(1));
    interval.min(Duration::from_secs(1)) * (i % groups) / groups
}

/// Why the monitor could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("backend {id}: {source}")]
    Sink {
        id: String,
        #[source]
        source: sink::SinkError,
    },
    #[error("backend {id}: {source}")]
    Listen {
        id: String,
        #[source]
        source: std::io::Error,
    },
}

/// Starts sinks and pollers and serves the `prometheus` backends until SIGTERM/SIGINT.
pub async fn run(cfg: &Config, reopen: logfile::Reopen) -> Result<(), RunError> {
    let store = Arc::new(Snapshots::new(cfg.servers.keys().map(String::as_str)));
    let mut handles: BTreeMap<&str, SinkHandle> = BTreeMap::new();
    let mut stats = Vec::new();
    let mut listeners: Vec<(&str, SocketAddr)> = Vec::new();
    let ctx = sink::Context { reopen };
    for (id, b) in &cfg.backends {
        let built = b.config().build(&ctx).map_err(|source| RunError::Sink {
            id: id.clone(),
            source,
        })?;
        let sink = match built {
            Built::Sink(sink) => sink,
            Built::Listen(addr) => {
                listeners.push((id, addr));
                continue;
            }
        };
        let st = Arc::new(SinkStats::new(id, b.kind()));
        stats.push(Arc::clone(&st));
        handles.insert(id, sink::spawn(st, sink));
    }
    let stats = Arc::new(stats);
    let n = cfg.servers.len() as u32;
    for (i, (id, s)) in (0u32..).zip(&cfg.servers) {
        let sinks: Vec<SinkHandle> = s
            .backends
            .iter()
            .filter_map(|b| handles.get(b.as_str()).cloned())
            .collect();
        tracing::info!(
            server = %id,
            endpoint = %s.endpoint_display(),
            interval_s = s.update_interval,
            backends = ?s.backends,
            "polling HAProxy stats"
        );
        let mut poller = Poller::new(id, s, sinks);
        if s.backends
            .iter()
            .any(|b| listeners.iter().any(|(l, _)| l == b))
        {
            poller = poller.with_extra_columns();
        }
        tokio::spawn(poller.run(s.interval(), spread(i, n, s.interval()), Arc::clone(&store)));
    }
    if listeners.is_empty() {
        custos_kit::shutdown::signal().await;
        return Ok(());
    }
    let mut servers = tokio::task::JoinSet::new();
    for (id, addr) in listeners {
        let names: Vec<String> = cfg
            .servers
            .iter()
            .filter(|(_, s)| s.backends.iter().any(|b| b == id))
            .map(|(n, _)| n.clone())
            .collect();
        let endpoints: Vec<crate::status_page::Endpoint> = cfg
            .servers
            .iter()
            .filter(|(n, _)| names.contains(n))
            .map(|(n, s)| crate::status_page::Endpoint {
                id: n.clone(),
                display: s.endpoint_display(),
            })
            .collect();
        // The page reloads as often as the fastest of its endpoints is polled, 5 s to 5 min.
        let refresh = cfg
            .servers
            .iter()
            .filter(|(n, _)| names.contains(n))
            .map(|(_, s)| s.interval())
            .min()
            .unwrap_or_default()
            .clamp(Duration::from_secs(5), Duration::from_secs(300));
        let page_store = Arc::clone(&store);
        let page =
            move || crate::status_page::render(&page_store, &endpoints, SystemTime::now(), refresh);
        let exp = crate::metrics::exposition(Arc::clone(&store), names, Arc::clone(&stats));
        let app = custos_kit::http::router(Arc::new(exp), page);
        let id = id.to_string();
        servers.spawn(async move {
            custos_kit::http::serve(addr, app, custos_kit::shutdown::signal())
                .await
                .map_err(|source| RunError::Listen { id, source })
        });
    }
    // The first to end decides: a listener that failed, or all stopped by a signal.
    while let Some(r) = servers.join_next().await {
        if let Ok(Err(e)) = r {
            return Err(e);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::Counts;

    fn server(extra: &str) -> Server {
        let text = format!("endpoint: http://127.0.0.1:1/;csv\nbackends: [x]\n{extra}");
        custos_kit::config::parse_yaml(std::path::Path::new("t"), &text).unwrap()
    }

    fn s(proxy: &str, row_type: RowType) -> Sample {
        Sample {
            proxy: proxy.into(),
            svname: "x".into(),
            row_type,
            status: None,
            counts: Counts::default(),
        }
    }

    #[test]
    fn first_polls_spread_in_groups_over_a_second() {
        let s = |i, n, ms| spread(i, n, Duration::from_millis(ms)).as_millis();
        assert_eq!(s(0, 50, 10_000), 0);
        assert_eq!(s(1, 50, 10_000), 250);
        assert_eq!(s(3, 50, 10_000), 750);
        assert_eq!(s(4, 50, 10_000), 0, "four groups");
        assert_eq!(s(1, 2, 200), 100, "never beyond the interval");
        assert_eq!(s(0, 0, 1000), 0);
    }

    #[test]
    fn selection_by_type_and_regex() {
        let sel = Selection::of(&server(""));
        assert!(sel.keeps(&s("be", RowType::Backend)));
        assert!(!sel.keeps(&s("fe", RowType::Frontend)));
        let sel = Selection::of(&server(
            "rows: [frontend, backend]\ninclude: \"^(be|fe)_\"\nexclude: \"_internal$\"\n",
        ));
        assert!(sel.keeps(&s("fe_web", RowType::Frontend)));
        assert!(!sel.keeps(&s("stats", RowType::Backend)));
        assert!(!sel.keeps(&s("be_internal", RowType::Backend)));
        assert!(!sel.keeps(&s("be_app", RowType::Server)));
    }

    #[tokio::test]
    async fn unreachable_server_is_down_and_counted() {
        // Port 1 on loopback: nothing listens, the connect is refused at once.
        let cfg = server("timeout: 2\n");
        let store = Snapshots::new(["a"]);
        let mut p = Poller::new("a", &cfg, Vec::new());
        p.poll(&store).await;
        p.poll(&store).await;
        let snap = store.get("a").unwrap();
        assert!(!snap.up);
        assert_eq!(snap.fetches, 2);
        assert_eq!(snap.errors_of("connect"), 2, "{:?}", snap.last_error);
        assert!(snap.batch.is_none());
    }
}
