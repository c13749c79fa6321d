//! The HTTP routes of `burp_exporter`: `/`, `/metrics` and `/probe`.

use crate::metrics::{registry, BurpCollector};
use crate::snapshot::Snapshots;
use axum::extract::Query;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use custos_kit::exposition::Exposition;
use std::fmt::Write as _;
use std::sync::Arc;

/// The HTTP routes: `/` (landing page), `/metrics` (every server) and
/// `/probe?server[]=<name>` (the named servers only; all without a name, as the original).
pub fn router(store: Arc<Snapshots>) -> Router {
    let mut links: Vec<(String, String)> = vec![
        ("/metrics".into(), "/metrics: all servers".into()),
        ("/probe".into(), "/probe: all servers".into()),
    ];
    for n in store.names() {
        links.push((
            format!("/probe?server[]={}", query_escape(n)),
            format!("/probe?server[]={n}: this server only"),
        ));
    }
    let links: Vec<(&str, &str)> = links
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let landing = custos_kit::http::landing_page(
        &format!("burp_exporter {}", env!("CARGO_PKG_VERSION")),
        "Prometheus exporter for the status port of Burp backup servers (custos).",
        &links,
    );
    let gen_store = Arc::clone(&store);
    let all = Exposition::cached(
        registry(BurpCollector::without_age(Arc::clone(&store))),
        registry(BurpCollector::age_only(Arc::clone(&store))),
        Box::new(move || gen_store.generation()),
    );
    custos_kit::http::router(Arc::new(all), landing).route(
        "/probe",
        get(
            move |Query(q): Query<Vec<(String, String)>>, headers: HeaderMap| {
                let store = Arc::clone(&store);
                async move { probe(&store, &q, &headers) }
            },
        ),
    )
}

fn probe(store: &Arc<Snapshots>, query: &[(String, String)], headers: &HeaderMap) -> Response {
    let names: Vec<String> = query
        .iter()
        .filter(|(k, _)| k == "server[]" || k == "server")
        .map(|(_, v)| v.clone())
        .collect();
    if names.is_empty() {
        let r = Exposition::uncached(registry(BurpCollector::new(Arc::clone(store))));
        return custos_kit::http::metrics_response(&r, headers);
    }
    let unknown: Vec<&str> = names
        .iter()
        .filter(|n| !store.names().contains(n))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        let msg = format!(
            "unknown server(s): {}; configured: {}\n",
            unknown.join(", "),
            store.names().join(", ")
        );
        return (StatusCode::NOT_FOUND, msg).into_response();
    }
    let r = Exposition::uncached(registry(BurpCollector::for_servers(
        Arc::clone(store),
        names,
    )));
    custos_kit::http::metrics_response(&r, headers)
}

fn query_escape(s: &str) -> String {
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

    #[test]
    fn escapes_query() {
        assert_eq!(query_escape("a b&c"), "a%20b%26c");
    }
}
