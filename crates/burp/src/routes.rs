//! The HTTP routes of `burp_exporter`: `/` (status page), `/metrics` and `/probe`.

use crate::metrics::{registry, BurpCollector};
use crate::snapshot::Snapshots;
use axum::extract::Query;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use custos_kit::exposition::Exposition;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// The HTTP routes: `/` (the status page, reloading every `refresh`), `/metrics` (every
/// server) and `/probe?server[]=<name>` (the named servers only; all without a name, as the
/// original).
pub fn router(store: Arc<Snapshots>, refresh: Duration) -> Router {
    let page_store = Arc::clone(&store);
    let page = move || crate::status_page::render(&page_store, SystemTime::now(), refresh);
    let probes = Arc::new(ProbeCache::new(store));
    let all = Arc::clone(&probes.all);
    custos_kit::http::router(all, page).route(
        "/probe",
        get(
            move |Query(q): Query<Vec<(String, String)>>, headers: HeaderMap| {
                let probes = Arc::clone(&probes);
                async move { probe(&probes, &q, &headers).await }
            },
        ),
    )
}

/// Distinct `/probe` selectors kept at most; more (a client trying combinations) start over.
const MAX_SELECTORS: usize = 64;

/// One cached exposition per distinct `/probe` selector (a sorted set of server names), each
/// encoded once per generation of the store, as `/metrics` is.
struct ProbeCache {
    store: Arc<Snapshots>,
    /// Every server: `/metrics` and `/probe` without a name.
    all: Arc<Exposition>,
    /// Held only to look up or insert, never while encoding.
    selected: Mutex<HashMap<Vec<String>, Arc<Exposition>>>,
    /// One `/probe` rendered at a time: a client hammering `/probe` gets at most one core's
    /// worth of the exporter, and `/metrics` (not limited) the other.
    rendering: tokio::sync::Semaphore,
}

impl ProbeCache {
    fn new(store: Arc<Snapshots>) -> ProbeCache {
        ProbeCache {
            all: Arc::new(cached(&store, None)),
            store,
            selected: Mutex::new(HashMap::new()),
            rendering: tokio::sync::Semaphore::new(1),
        }
    }

    /// The exposition of these (configured) servers.
    fn get(&self, mut names: Vec<String>) -> Arc<Exposition> {
        names.sort();
        names.dedup();
        let configured = self.store.names();
        if names.len() == configured.len() && names.iter().all(|n| configured.contains(n)) {
            // Every server (a one-server setup probed by name): the same body as `/metrics`,
            // not a second copy of it in memory (610 kB per format for 2,000 clients).
            return Arc::clone(&self.all);
        }
        let mut selected = self.selected.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = selected.get(&names) {
            return Arc::clone(e);
        }
        if selected.len() >= MAX_SELECTORS {
            selected.clear();
        }
        let e = Arc::new(cached(&self.store, Some(names.clone())));
        selected.insert(names, Arc::clone(&e));
        e
    }
}

/// An exposition of `only` these servers (all: `None`) that encodes once per generation;
/// only `burp_snapshot_age_seconds` is encoded on every scrape.
fn cached(store: &Arc<Snapshots>, only: Option<Vec<String>>) -> Exposition {
    let restrict = |c: BurpCollector| match &only {
        Some(names) => c.restricted_to(names.clone()),
        None => c,
    };
    let gen_store = Arc::clone(store);
    Exposition::cached(
        registry(restrict(BurpCollector::without_age(Arc::clone(store)))),
        registry(restrict(BurpCollector::age_only(Arc::clone(store)))),
        Box::new(move || gen_store.generation()),
    )
}

async fn probe(probes: &ProbeCache, query: &[(String, String)], headers: &HeaderMap) -> Response {
    let names: Vec<String> = query
        .iter()
        .filter(|(k, _)| k == "server[]" || k == "server")
        .map(|(_, v)| v.clone())
        .collect();
    // Never closed, so acquiring only waits.
    let _turn = probes.rendering.acquire().await;
    if names.is_empty() {
        return custos_kit::http::render(Arc::clone(&probes.all), headers, None).await;
    }
    let store = &probes.store;
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
    custos_kit::http::render(probes.get(names), headers, None).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_exposition_per_selector_and_a_bounded_cache() {
        let names: Vec<String> = (0..8).map(|i| format!("s{i}")).collect();
        let probes = ProbeCache::new(Arc::new(Snapshots::new(names.iter().map(String::as_str))));
        let a = probes.get(vec!["s1".into(), "s0".into()]);
        let b = probes.get(vec!["s0".into(), "s1".into(), "s1".into()]);
        assert!(Arc::ptr_eq(&a, &b), "same set of servers, same cache");
        let every = probes.get(names.iter().rev().cloned().chain(["s3".into()]).collect());
        assert!(
            Arc::ptr_eq(&every, &probes.all),
            "every server by name: the /metrics cache, not a copy"
        );
        // Every subset of 8 servers: 255 selectors, at most MAX_SELECTORS kept.
        for mask in 1u32..256 {
            let sel = (0..8)
                .filter(|i| mask & (1 << i) != 0)
                .map(|i| names[i].clone())
                .collect();
            probes.get(sel);
            assert!(probes.selected.lock().unwrap().len() <= MAX_SELECTORS);
        }
    }

    #[test]
    fn escapes_query() {
        assert_eq!(custos_kit::http::query_escape("a b&c"), "a%20b%26c");
    }
}
