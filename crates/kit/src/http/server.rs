//! The connection loop behind [`super::serve`]: hyper driven by hand so that its timers work.
//!
//! `axum::serve` sets no timer on hyper, so hyper's header-read timeout never fires, it has
//! no connection cap, and its graceful shutdown waits for every connection for ever. An
//! exporter is reachable by anything on the network for years; a slowloris must not exhaust
//! its file descriptors and `systemctl stop` must not hang on one stalled client.

use axum::{Extension, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use prometheus_client::metrics::{counter::Counter, gauge::Gauge};
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// What one client may cost the server. Every exporter uses [`Limits::default`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A request header must be complete this long after the connection opened or after the
    /// previous response; hyper starts the same timer while a keep-alive connection waits for
    /// its next request, so this is also the idle keep-alive timeout.
    pub header_read_timeout: Duration,
    /// A response write that makes no progress for this long closes the connection (the
    /// client stopped reading).
    pub write_stall_timeout: Duration,
    /// Open connections at most; one more is answered 503 and closed at once.
    pub max_connections: usize,
    /// Open connections at most from one IP address (same answer beyond it), so one source
    /// cannot take every slot from the scrapers elsewhere.
    pub max_connections_per_ip: usize,
    /// After the shutdown signal, how long open requests may finish before their
    /// connections are closed.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            write_stall_timeout: Duration::from_secs(10),
            max_connections: 256,
            max_connections_per_ip: 32,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// The server's own metrics, appended to `/metrics` by [`super::router`].
#[derive(Debug)]
pub struct ConnectionStats {
    refused: Counter,
    open: Gauge,
    registry: Registry,
}

impl ConnectionStats {
    fn new() -> ConnectionStats {
        let refused = Counter::default();
        let open = Gauge::default();
        let mut registry = Registry::default();
        registry.register(
            "custos_http_connections_refused",
            "HTTP connections refused because too many were open (in all, or from one address)",
            refused.clone(),
        );
        registry.register(
            "custos_http_connections_open",
            "HTTP connections open now, this scrape's included",
            open.clone(),
        );
        ConnectionStats {
            refused,
            open,
            registry,
        }
    }

    /// The registry holding these metrics.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

/// The answer to a connection beyond the cap, written only if the socket takes it at once.
const REFUSED: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";

/// Serves `app` on `listener` within `limits` until `shutdown` resolves, then lets open
/// requests finish for at most `limits.shutdown_grace`.
pub async fn serve_listener(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: Limits,
) -> io::Result<()> {
    let stats = Arc::new(ConnectionStats::new());
    let app = app.layer(Extension(Arc::clone(&stats)));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut conns: JoinSet<()> = JoinSet::new();
    let per_ip: PerIp = Arc::default();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                accept_failed(e).await;
                continue;
            }
        };
        while conns.try_join_next().is_some() {}
        let ip = peer.ip();
        let from_ip = lock(&per_ip).get(&ip).copied().unwrap_or(0);
        if conns.len() >= limits.max_connections || from_ip >= limits.max_connections_per_ip {
            refuse(&stats, stream, &limits);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let io = WriteDeadline::new(TokioIo::new(stream), limits.write_stall_timeout);
        let conn = http.serve_connection(io, TowerToHyperService::new(app.clone()));
        let mut stop = stop_rx.clone();
        let open = OpenGuard::new(Arc::clone(&stats), Arc::clone(&per_ip), ip);
        conns.spawn(async move {
            let _open = open;
            tokio::pin!(conn);
            let r = tokio::select! {
                r = conn.as_mut() => r,
                _ = async { stop.wait_for(|s| *s).await.map(|_| ()) } => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = r {
                tracing::debug!("HTTP connection closed: {e}");
            }
        });
    }
    drop(listener);
    stop_tx.send_replace(true);
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = conns.len(),
            "HTTP connections still busy {:?} after shutdown began; closing them",
            limits.shutdown_grace
        );
        conns.shutdown().await;
    }
    Ok(())
}

/// Counts and closes a connection beyond the cap, with a 503 if the socket takes it at once.
fn refuse(stats: &ConnectionStats, stream: TcpStream, limits: &Limits) {
    let refused = stats.refused.inc() + 1;
    // Logged at the first and then every 1000th, so a flood does not flood the log as well.
    if refused % 1000 == 1 {
        tracing::warn!(
            refused,
            "{} HTTP connections open, or {} from one address: refusing new ones \
             (custos_http_connections_refused_total)",
            limits.max_connections,
            limits.max_connections_per_ip
        );
    }
    let _ = stream.try_write(REFUSED);
}

/// An accept error: a connection reset before we took it is nothing; anything else (out of
/// file descriptors) is logged and waited out briefly instead of spinning.
async fn accept_failed(e: io::Error) {
    use io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused
    ) {
        return;
    }
    tracing::warn!("accepting an HTTP connection failed: {e}");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Open connections per client address.
type PerIp = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// The per-address counts; held only to read or change one number.
fn lock(per_ip: &PerIp) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
    per_ip.lock().unwrap_or_else(|e| e.into_inner())
}

/// Keeps `custos_http_connections_open` and the per-address counts right however a
/// connection task ends (even aborted).
struct OpenGuard {
    stats: Arc<ConnectionStats>,
    per_ip: PerIp,
    ip: IpAddr,
}

impl OpenGuard {
    fn new(stats: Arc<ConnectionStats>, per_ip: PerIp, ip: IpAddr) -> OpenGuard {
        stats.open.inc();
        *lock(&per_ip).entry(ip).or_insert(0) += 1;
        OpenGuard { stats, per_ip, ip }
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.stats.open.dec();
        let mut per_ip = lock(&self.per_ip);
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

/// An I/O object whose writes fail after `timeout` without progress: hyper has no write
/// timeout, and a client that sends a request and never reads would hold its connection.
struct WriteDeadline<I> {
    inner: I,
    timeout: Duration,
    stalled_since: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<I> WriteDeadline<I> {
    fn new(inner: I, timeout: Duration) -> WriteDeadline<I> {
        WriteDeadline {
            inner,
            timeout,
            stalled_since: None,
        }
    }

    /// Maps a write poll's result: progress resets the deadline, `Pending` starts it.
    fn check<T>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if r.is_ready() {
            self.stalled_since = None;
            return r;
        }
        let timeout = self.timeout;
        let deadline = self
            .stalled_since
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("client read nothing for {timeout:?}"),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<I: hyper::rt::Read + Unpin> hyper::rt::Read for WriteDeadline<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<I: hyper::rt::Write + Unpin> hyper::rt::Write for WriteDeadline<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.check(cx, r)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.check(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_flush(cx);
        this.check(cx, r)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.check(cx, r)
    }
}
