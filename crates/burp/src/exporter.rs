//! Polling burp servers: one task per server publishing snapshots.
//!
//! Per server one background task polls at `refresh_interval_seconds`, the first poll at once.
//! A poll asks `c:` (every client, current and in-progress backups) and publishes the result;
//! then, for clients whose current backup changed since the last poll, it asks `c:<client>`
//! (the whole backup list) and the `backup_stats` log of the new backup, once, and caches both.
//! A 2,000-client server thus costs one request per poll once its details are known.

use crate::config::{Config, ServerConfig};
use crate::error::Error;
use crate::model::{self, BackupStats, ClientList, History, ModelError};
use crate::session::Connection;
use crate::snapshot::{error_kind, ClientSnapshot, ServerSnapshot, Snapshots};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// A backup list older than this is fetched again even if the current backup did not change
/// (someone may have deleted old backups by hand).
pub const HISTORY_MAX_AGE: Duration = Duration::from_secs(3600);

/// Where a poll gets its documents: the real [`Connection`], or a replay in tests.
pub trait Source: Send {
    /// Sends one request and returns one whole JSON document.
    fn request(&mut self, cmd: &str) -> impl Future<Output = Result<Vec<u8>, Error>> + Send;
    /// Connects unless connected or backing off.
    fn ensure_connected(&mut self) -> impl Future<Output = Result<(), Error>> + Send;
    /// Whether a connection is open.
    fn is_connected(&self) -> bool;
    /// Connection attempts made so far (`burp_contact_attempts_total`).
    fn connect_attempts(&self) -> u64;
}

impl Source for Connection {
    fn request(&mut self, cmd: &str) -> impl Future<Output = Result<Vec<u8>, Error>> + Send {
        Connection::request(self, cmd)
    }
    fn ensure_connected(&mut self) -> impl Future<Output = Result<(), Error>> + Send {
        Connection::ensure_connected(self)
    }
    fn is_connected(&self) -> bool {
        Connection::is_connected(self)
    }
    fn connect_attempts(&self) -> u64 {
        Connection::connect_attempts(self)
    }
}

/// What we fetched for one client's current backup, kept across polls.
#[derive(Debug, Clone)]
struct Details {
    /// Current backup number the details were fetched for.
    number: u64,
    history: Option<History>,
    history_at: Instant,
    stats: Option<(u64, BackupStats)>,
}

/// Why a detail fetch stopped.
enum Stop {
    /// The connection broke; details wait for the next poll.
    Transport,
}

/// The `c:` reply whose client list the snapshot holds.
#[derive(Debug)]
struct LastReply {
    doc: Vec<u8>,
    /// What its parse left out, counted again on each poll that gets the same reply.
    skipped: Vec<String>,
}

/// The state of one server's polling: counters and the per-client cache.
#[derive(Debug)]
pub struct Poller {
    snap: ServerSnapshot,
    details: HashMap<String, Details>,
    /// Time a poll may spend on detail requests before leaving the rest to the next poll.
    budget: Duration,
    /// Between backups burp sends the same `c:` bytes poll after poll; a reply equal to this
    /// one keeps the client list as it is instead of parsing it again (on a 2,000-client
    /// server the parse was three quarters of a poll's instructions). `None` after a poll
    /// that did not take its list in full.
    last_reply: Option<LastReply>,
}

impl Poller {
    /// A poller for `server` that spends at most `budget` per poll on detail requests.
    pub fn new(server: &str, budget: Duration) -> Poller {
        Poller {
            snap: ServerSnapshot::empty(server),
            details: HashMap::new(),
            budget,
            last_reply: None,
        }
    }

    /// The last snapshot this poller built.
    pub fn snapshot(&self) -> &ServerSnapshot {
        &self.snap
    }

    /// One debug line per poll.
    fn log_poll(&self) {
        let s = &self.snap;
        tracing::debug!(
            server = %s.server,
            up = s.up,
            clients = s.clients.len(),
            duration_ms = s.poll_duration.map_or(0, |d| d.as_millis()),
            "poll done"
        );
    }

    fn count_error(&mut self, e: &Error, what: &str) {
        if let Some(kind) = error_kind(e) {
            self.snap.errors.add(kind);
        }
        let msg = e.to_string();
        tracing::warn!(server = %self.snap.server, "{what}: {msg}");
        self.snap.last_error = Some(msg);
    }

    fn count_parse_error(&mut self, e: &ModelError, what: &str) {
        self.snap.parse_errors += 1;
        self.snap.errors.add("parse");
        let msg = format!("{what}: {e}");
        tracing::warn!(server = %self.snap.server, "{msg}");
        self.snap.last_error = Some(msg);
    }

    /// Requests one detail document and parses it. A broken connection stops the detail
    /// fetch (`Stop::Transport`); a parse error is counted; a warning (the client vanished
    /// between `c:` and now) just yields nothing.
    async fn fetch_detail<S: Source, T>(
        &mut self,
        src: &mut S,
        cmd: &str,
        what: &str,
        parse: impl FnOnce(&[u8]) -> Result<T, ModelError>,
    ) -> Result<Option<T>, Stop> {
        match self.request(src, cmd).await {
            Ok(doc) => match parse(&doc) {
                Ok(v) => Ok(Some(v)),
                Err(e) => {
                    self.count_parse_error(&e, &format!("{what} ({cmd})"));
                    Ok(None)
                }
            },
            Err(e) if e.needs_reconnect() => {
                self.count_error(&e, &format!("{cmd} failed"));
                Err(Stop::Transport)
            }
            Err(e) => {
                tracing::debug!(server = %self.snap.server, "{cmd}: {e}");
                Ok(None)
            }
        }
    }

    async fn request<S: Source>(&mut self, src: &mut S, cmd: &str) -> Result<Vec<u8>, Error> {
        if !src.is_connected() {
            match src.ensure_connected().await {
                Err(Error::Backoff { .. }) | Ok(()) => {}
                Err(e) => {
                    self.snap.contact_attempts = src.connect_attempts();
                    return Err(e);
                }
            }
        }
        let r = src.request(cmd).await;
        self.snap.contact_attempts = src.connect_attempts();
        if r.is_ok() || matches!(r, Err(Error::Warning(_))) {
            self.snap.last_contact = Some(SystemTime::now());
        }
        r
    }

    /// Polls once and publishes the result to `store` (after `c:`, and again with details).
    pub async fn poll<S: Source>(&mut self, src: &mut S, store: &Snapshots) {
        let t0 = Instant::now();
        self.snap.polls += 1;
        let doc = match self.request(src, "c:").await {
            Ok(doc) => doc,
            Err(e) => {
                self.count_error(&e, "polling client list (c:) failed");
                // Keep the last good client data (its age is exported) but say we are down.
                self.finish(t0, false, store);
                return;
            }
        };
        match self.last_reply.take() {
            Some(last) if last.doc == doc => {
                // The snapshot holds this list already (with what `refresh_settled` reread
                // then); the same bytes mean nobody turned idle since. Only its time moves.
                self.count_skipped(&last.skipped);
                self.snap.data_time = Some(SystemTime::now());
                self.last_reply = Some(last);
            }
            _ => {
                let mut list = match model::parse_clients(&doc) {
                    Ok(list) => list,
                    Err(e) => {
                        self.count_parse_error(&e, "client list (c:)");
                        self.finish(t0, false, store);
                        return;
                    }
                };
                let settled = self.refresh_settled(src, &mut list).await;
                let skipped = list.skipped.clone();
                self.take_list(list);
                if settled.is_err() {
                    self.finish(t0, false, store);
                    return;
                }
                self.last_reply = Some(LastReply { doc, skipped });
            }
        }
        self.set_up(true, t0);
        let due = self.details_due();
        let complete = if due.is_empty() {
            // Nothing to fetch: `finish` publishes at once; publishing twice would only make
            // `/metrics` encode its cache twice.
            Ok(())
        } else {
            // Details may take a while: serve the fresh client list meanwhile.
            store.publish(self.snap.clone());
            self.fetch_details(src, t0, due).await
        };
        self.finish(t0, complete.is_ok(), store);
    }

    /// Asks `c:<client>` for each client that ran something at the last poll and is idle
    /// now, and takes its backups from that reply.
    ///
    /// burp's status child rereads a client's backup list for `c:` only when the client's
    /// directory mtime (1 s resolution) differs from that of its last reload, and only in a
    /// second in which no request arrived; a backup that finishes within the second of a
    /// reload stays invisible to `c:` on this connection until the directory changes again
    /// (burp 3.1.4, `src/server/monitor/status_server.c` and `cstat.c`). `c:<client>` always rereads that client's list, and later `c:`
    /// replies use the reread list. So the finished backup shows in the poll that first sees
    /// the client idle. (A backup that starts and ends between two polls is caught by the
    /// hourly `c:<client>` of [`HISTORY_MAX_AGE`].)
    async fn refresh_settled<S: Source>(
        &mut self,
        src: &mut S,
        list: &mut ClientList,
    ) -> Result<(), Stop> {
        let was_busy: std::collections::HashSet<&str> = self
            .snap
            .clients
            .iter()
            .filter(|c| is_busy(&c.client))
            .map(|c| c.client.name.as_str())
            .collect();
        let settled: Vec<String> = list
            .clients
            .iter()
            .filter(|c| !is_busy(c) && was_busy.contains(c.name.as_str()))
            .filter(|c| !c.name.contains([':', '\n', '\r', '\0']))
            .map(|c| c.name.clone())
            .collect();
        for name in settled {
            let cmd = format!("c:{name}");
            let fresh = self
                .fetch_detail(src, &cmd, "backup list", |doc| {
                    model::parse_clients(doc)
                        .map(|l| l.clients.into_iter().find(|c| c.name == name))
                })
                .await?
                .flatten();
            let (Some(fresh), Some(c)) = (fresh, list.clients.iter_mut().find(|c| c.name == name))
            else {
                continue;
            };
            let listed = c.current().map(|b| b.number);
            let reread = fresh.current().map(|b| b.number);
            if listed != reread {
                tracing::info!(
                    server = %self.snap.server,
                    client = %name,
                    "c: listed a stale backup list (current {listed:?}, reread {reread:?})"
                );
            }
            // What `c:` lists: the current backup and any unfinished one.
            c.backups = fresh
                .backups
                .into_iter()
                .filter(|b| b.has_flag("current") || !b.is_complete())
                .collect();
        }
        Ok(())
    }

    /// Records whether the server is usable; logs when it becomes so.
    fn set_up(&mut self, up: bool, t0: Instant) {
        if up && !self.snap.up {
            tracing::info!(
                server = %self.snap.server,
                clients = self.snap.clients.len(),
                "burp status port answers (poll {}, client list after {:?})",
                self.snap.polls,
                t0.elapsed()
            );
        }
        self.snap.up = up;
        if up {
            self.snap.last_error = None;
        }
    }

    fn finish(&mut self, t0: Instant, up: bool, store: &Snapshots) {
        self.set_up(up, t0);
        self.snap.poll_duration = Some(t0.elapsed());
        self.snap.last_poll = Some(SystemTime::now());
        store.publish(self.snap.clone());
    }

    /// Installs a fresh client list, with cached details where they still apply.
    fn take_list(&mut self, list: ClientList) {
        self.count_skipped(&list.skipped);
        let present: std::collections::HashSet<&str> =
            list.clients.iter().map(|c| c.name.as_str()).collect();
        self.details
            .retain(|name, _| present.contains(name.as_str()));
        let clients = list
            .clients
            .into_iter()
            .map(|client| self.with_details(client))
            .collect();
        self.snap.clients = Arc::new(clients);
        self.snap.data_time = Some(SystemTime::now());
    }

    fn with_details(&self, client: model::Client) -> ClientSnapshot {
        match (
            client.current().map(|b| b.number),
            self.details.get(&client.name),
        ) {
            // No completed backup: the `c:` entry already shows everything there is.
            (None, _) => ClientSnapshot {
                history: Some(History::of(&client)),
                stats: None,
                client,
            },
            (Some(_), Some(d)) => ClientSnapshot {
                history: d.history,
                stats: d.stats.clone(),
                client,
            },
            (Some(_), None) => ClientSnapshot {
                client,
                ..ClientSnapshot::default()
            },
        }
    }

    /// Counts and logs the entries a `c:` reply's parse left out.
    fn count_skipped(&mut self, skipped: &[String]) {
        for s in skipped {
            self.snap.parse_errors += 1;
            tracing::warn!(server = %self.snap.server, "left out of the client list: {s}");
        }
    }

    /// Clients whose backup list or stats are due: `(current backup changed, name, backup)`.
    fn details_due(&self) -> Vec<(bool, String, model::Backup)> {
        let now = Instant::now();
        let mut due: Vec<(bool, String, model::Backup)> = Vec::new();
        for c in self.snap.clients.iter() {
            let Some(cur) = c.client.current() else {
                continue;
            };
            if c.client.name.contains([':', '\n', '\r', '\0']) {
                continue; // cannot be named in a request
            }
            match self.details.get(&c.client.name) {
                Some(d) if d.number == cur.number => {
                    if now.duration_since(d.history_at) >= HISTORY_MAX_AGE {
                        due.push((false, c.client.name.clone(), cur.clone()));
                    }
                }
                _ => due.push((true, c.client.name.clone(), cur.clone())),
            }
        }
        due
    }

    /// Fetches the `due` backup lists and stats, newest-backup changes first, within the
    /// budget. Returns `Err` when the connection broke.
    async fn fetch_details<S: Source>(
        &mut self,
        src: &mut S,
        t0: Instant,
        mut due: Vec<(bool, String, model::Backup)>,
    ) -> Result<(), Stop> {
        due.sort_by_key(|(changed, _, _)| !*changed);
        let mut changed_any = false;
        let mut result = Ok(());
        for (changed, name, cur) in due {
            if t0.elapsed() >= self.budget {
                tracing::debug!(server = %self.snap.server, "detail budget used up; rest next poll");
                break;
            }
            match self.fetch_client(src, &name, &cur, changed).await {
                Ok(()) => changed_any = true,
                Err(stop) => {
                    result = Err(stop);
                    break;
                }
            }
        }
        if changed_any {
            let clients = self
                .snap
                .clients
                .iter()
                .map(|c| self.with_details(c.client.clone()))
                .collect();
            self.snap.clients = Arc::new(clients);
        }
        result
    }

    async fn fetch_client<S: Source>(
        &mut self,
        src: &mut S,
        name: &str,
        cur: &model::Backup,
        changed: bool,
    ) -> Result<(), Stop> {
        let history = self
            .fetch_detail(src, &format!("c:{name}"), "backup list", |doc| {
                model::parse_clients(doc)
                    .map(|l| l.clients.iter().find(|c| c.name == name).map(History::of))
            })
            .await?
            .flatten();
        let old = self.details.get(name).cloned();
        let stats = if !changed {
            old.and_then(|d| d.stats)
        } else if cur.has_log("backup_stats") {
            let cmd = format!("c:{name}:b:{}:l:backup_stats", cur.number);
            self.fetch_detail(src, &cmd, "backup stats", |doc| {
                model::parse_backup_stats(doc, name, cur.number)
            })
            .await?
            .map(|s| (cur.number, s))
        } else {
            None
        };
        self.details.insert(
            name.to_string(),
            Details {
                number: cur.number,
                history,
                history_at: Instant::now(),
                stats,
            },
        );
        Ok(())
    }
}

/// Whether burp reports a process working for this client. (Not the backup list: that is
/// what may be stale, e.g. still showing the `working` entry of a finished backup.)
fn is_busy(c: &model::Client) -> bool {
    c.run_status != "idle" || !c.children.is_empty()
}

/// Polls one server for ever, every `interval`, the first time at once, on the caller's
/// runtime (the fallback when [`spawn_pollers`] cannot start a thread).
pub async fn run_poller<S: Source>(
    server: String,
    mut src: S,
    interval: Duration,
    store: Arc<Snapshots>,
) {
    let mut poller = Poller::new(&server, interval / 2);
    let mut ticks = custos_kit::poll::fixed_rate(interval);
    loop {
        ticks.tick().await;
        poller.poll(&mut src, &store).await;
        poller.log_poll();
    }
}

/// Polls one server for ever, every `interval`, the first time at once, blocking the calling
/// thread: `rt` (single-threaded) runs each poll, and the thread sleeps in between.
///
/// One sleep is one wake-up. tokio's timer wheel would wake the thread two or three times
/// per tick (a one-second timer cascades through the wheel's coarser levels: `epoll_wait`
/// timeouts of 191, 761 and 40 ms for one tick under strace), and on this machine class the
/// wake-ups, not the few thousand instructions of a poll, are most of a poll's CPU time.
/// Nothing else runs on `rt`, so nothing waits for it while the thread sleeps.
pub fn poll_on_this_thread<S: Source>(
    server: &str,
    mut src: S,
    interval: Duration,
    store: &Snapshots,
    rt: &tokio::runtime::Runtime,
) -> ! {
    let mut poller = Poller::new(server, interval / 2);
    let mut tick = std::time::Instant::now();
    loop {
        rt.block_on(poller.poll(&mut src, store));
        poller.log_poll();
        let now = std::time::Instant::now();
        tick = next_tick(tick, now, interval);
        std::thread::sleep(tick.saturating_duration_since(now));
    }
}

/// When the poll after the one due at `prev` is due, seen at `now`, on the grid
/// `prev + k * interval`: a slow poll does not shift later ones. A poll that overran its
/// interval is followed by one at once (the grid point it overran, which is not after `now`)
/// and then by the grid again; what it overran beyond that is skipped, not made up in a burst.
/// That is what [`custos_kit::poll::fixed_rate`] (tokio's `MissedTickBehavior::Skip`) does.
fn next_tick(
    prev: std::time::Instant,
    now: std::time::Instant,
    interval: Duration,
) -> std::time::Instant {
    let interval = interval.max(Duration::from_millis(1));
    let next = prev + interval;
    if next >= now {
        return next;
    }
    // Overran: the last grid point not after `now`.
    let into_period = now.duration_since(next).as_nanos() % interval.as_nanos();
    let back = u64::try_from(into_period).map_or(Duration::ZERO, Duration::from_nanos);
    now.checked_sub(back).unwrap_or(now)
}

/// The reconnect backoff for a server polled every `interval`: capped below the interval, so
/// each scheduled poll makes an attempt, yet the requests within a failed poll are not retried.
pub(crate) fn connection(cfg: &Config, s: &ServerConfig) -> Connection {
    let interval = cfg.refresh_interval(s);
    let max = (interval / 2).max(Duration::from_millis(100));
    Connection::new(cfg.target(s)).with_backoff(Duration::from_millis(500).min(max), max)
}

/// Name of each server's polling thread (seen in `top -H` and `/proc/PID/task/*/comm`).
pub const POLL_THREAD: &str = "burp-poll";

/// Starts polling every configured server, each on a thread of its own; returns the store
/// they publish to.
///
/// A poll is a timer, a request and a reply. On its own thread with a single-threaded
/// runtime it wakes that thread alone (see [`poll_on_this_thread`]); on the HTTP server's
/// two-worker runtime each poll also woke the other worker and spread its allocations over
/// both workers' malloc arenas. Scrapes stay on the HTTP runtime, so a long parse never
/// delays `/metrics`, and a slow server never delays another's polls. A server whose thread
/// cannot start is polled on the calling runtime instead.
pub fn spawn_pollers(cfg: &Config) -> Arc<Snapshots> {
    let store = Arc::new(Snapshots::new(cfg.clients.iter().map(|s| s.name.as_str())));
    for s in &cfg.clients {
        let conn = connection(cfg, s);
        let interval = cfg.refresh_interval(s);
        tracing::info!(
            server = %s.name,
            addr = %conn.target().addr(),
            interval_s = interval.as_secs(),
            "polling burp status port"
        );
        let thread_store = Arc::clone(&store);
        let name = s.name.clone();
        let started = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .and_then(|rt| {
                std::thread::Builder::new()
                    .name(POLL_THREAD.into())
                    .spawn(move || poll_on_this_thread(&name, conn, interval, &thread_store, &rt))
            });
        if let Err(e) = started {
            tracing::warn!(server = %s.name, "cannot start a polling thread ({e}); polling on the HTTP runtime");
            tokio::spawn(run_poller(
                s.name.clone(),
                connection(cfg, s),
                interval,
                Arc::clone(&store),
            ));
        }
    }
    store
}

#[cfg(test)]
mod tests;
