//! The one HTTP server of every custos exporter: a status page at `/` and `/metrics`.
//!
//! Binaries that need more endpoints (burp's `/probe`) merge their own routes into
//! [`router`]'s result, so listening, shutdown, encoding and the limits on what a client may
//! cost ([`Limits`]: header and idle timeouts, a connection cap, bounded shutdown) stay in
//! one place.

mod server;

pub use server::{serve_listener, ConnectionStats, Limits};

use crate::exposition::{self, Exposition};
use axum::body::Body;
use axum::{
    http::{header, HeaderMap, HeaderValue},
    response::{IntoResponse, Response},
    routing::get,
    Extension, Router,
};
use bytes::Bytes;
use std::{future::Future, net::SocketAddr, sync::Arc};

/// A response with `exposition` rendered as the request's `Accept` header asks, rendered off
/// the runtime's threads and followed by the HTTP server's own metrics (`custos_http_*`)
/// when `stats` is given.
///
/// Rendering may encode (a new generation, or an uncached registry) while holding the
/// exposition's cache lock; on a blocking-pool thread that stalls no other request, while on
/// one of the runtime's few worker threads it would stall every scrape behind it.
pub async fn render(
    exposition: Arc<Exposition>,
    headers: &HeaderMap,
    stats: Option<Arc<ConnectionStats>>,
) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let rendered = tokio::task::spawn_blocking(move || {
        let accept = accept.as_deref();
        let (content_type, mut parts) = exposition.render_parts(accept);
        if let Some(stats) = stats {
            let (_, extra) = exposition::encode(stats.registry(), accept);
            if content_type == exposition::OPENMETRICS {
                // One `# EOF` at the very end: the server's part brings its own.
                if let Some(last) = parts.last_mut() {
                    if last.ends_with(b"# EOF\n") {
                        last.truncate(last.len() - b"# EOF\n".len());
                    }
                }
            }
            parts.push(Bytes::from(extra));
        }
        (content_type, parts)
    })
    .await;
    match rendered {
        Ok((content_type, parts)) => {
            let mut resp = Body::new(Parts::new(parts)).into_response();
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            resp
        }
        Err(e) => {
            tracing::error!("rendering metrics failed: {e}");
            axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// A response body sent as the parts it was rendered in: the cached part of an exposition is
/// shared, not copied into one string per scrape (with many concurrent scrapes of a large
/// exposition those copies were most of the exporter's memory). Its exact length is known,
/// so the response keeps its `Content-Length`.
struct Parts {
    parts: std::collections::VecDeque<Bytes>,
    len: u64,
}

impl Parts {
    fn new(parts: Vec<Bytes>) -> Parts {
        let len = parts.iter().map(|p| p.len() as u64).sum();
        Parts {
            parts: parts.into_iter().filter(|p| !p.is_empty()).collect(),
            len,
        }
    }
}

impl http_body::Body for Parts {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let next = this.parts.pop_front();
        if let Some(p) = &next {
            this.len -= p.len() as u64;
        }
        std::task::Poll::Ready(next.map(|p| Ok(http_body::Frame::data(p))))
    }

    fn is_end_stream(&self) -> bool {
        self.parts.is_empty()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.len)
    }
}

/// The router every exporter starts from: `/` (the status page `page` renders from the
/// exporter's current state at each request, see [`crate::html`]) and `/metrics` (with the
/// server's connection metrics when served by [`serve`]).
pub fn router<P>(exposition: Arc<Exposition>, page: P) -> Router
where
    P: FnOnce() -> String + Clone + Send + Sync + 'static,
{
    // One page rendered at a time, off the runtime's threads: a client reloading `/` in a
    // loop gets at most one core and never delays a scrape.
    let turn = Arc::new(tokio::sync::Semaphore::new(1));
    Router::new()
        .route(
            "/",
            get(move || {
                let (page, turn) = (page.clone(), Arc::clone(&turn));
                async move {
                    // Never closed, so acquiring only waits.
                    let _turn = turn.acquire_owned().await;
                    match tokio::task::spawn_blocking(page).await {
                        Ok(html) => crate::html::response(html),
                        Err(e) => {
                            tracing::error!("rendering the status page failed: {e}");
                            axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response()
                        }
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(
                move |headers: HeaderMap, stats: Option<Extension<Arc<ConnectionStats>>>| {
                    let exposition = Arc::clone(&exposition);
                    async move { render(exposition, &headers, stats.map(|s| s.0)).await }
                },
            ),
        )
}

/// Binds `addr` (error names the address) and serves `app` within [`Limits::default`] until
/// `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
    tracing::info!(%addr, "serving metrics on http://{addr}/metrics");
    serve_listener(listener, app, shutdown, Limits::default()).await
}

/// Percent-encodes a query parameter value (RFC 3986 unreserved characters kept), for links
/// on status pages and for test clients.
pub fn query_escape(s: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use custos_testkit::http_get;
    use prometheus_client::metrics::gauge::Gauge;
    use prometheus_client::registry::Registry;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn serves_status_page_and_metrics() {
        let mut reg = Registry::default();
        let g: Gauge = Gauge::default();
        g.set(42);
        reg.register("kit_test_value", "A value", g);
        let app = router(Arc::new(Exposition::uncached(reg)), || {
            let mut p = crate::html::Page::new("kit test");
            p.line(&["demo <page>".into()]);
            p.finish()
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            serve_listener(
                listener,
                app,
                async {
                    let _ = rx.await;
                },
                Limits::default(),
            )
            .await
        });
        let (m, l) = tokio::task::spawn_blocking(move || {
            (
                http_get(addr, "/metrics", None).unwrap(),
                http_get(addr, "/", None).unwrap(),
            )
        })
        .await
        .unwrap();
        assert_eq!(m.status, 200);
        assert!(m
            .header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4"));
        assert!(m.body.contains("kit_test_value 42"));
        assert!(
            m.body.contains("custos_http_connections_open 1\n"),
            "{}",
            m.body
        );
        assert!(m.body.contains("custos_http_connections_refused_total 0\n"));
        assert!(l.body.contains("demo &lt;page&gt;"));
        assert_eq!(l.header("content-type"), Some("text/html; charset=utf-8"));
        assert_eq!(l.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(l.header("content-security-policy"), Some(crate::html::CSP));
        // Sent in parts, but with its exact length, and one `# EOF` at the very end.
        let om = tokio::task::spawn_blocking(move || {
            http_get(addr, "/metrics", Some("application/openmetrics-text")).unwrap()
        })
        .await
        .unwrap();
        assert_eq!(
            om.header("content-length").map(str::to_owned),
            Some(om.body.len().to_string())
        );
        assert!(om.body.contains("kit_test_value 42\n"));
        assert!(om.body.ends_with("# EOF\n") && om.body.matches("# EOF").count() == 1);
        assert_eq!(
            m.header("content-length").map(str::to_owned),
            Some(m.body.len().to_string())
        );
        tx.send(()).unwrap();
        server.await.unwrap().unwrap();
    }
}
