//! Encoding a registry for a scraper.
//!
//! prometheus-client writes OpenMetrics. Prometheus prefers it, but `promtool check metrics`
//! and many older scrapers (PRTG, Telegraf, curl-and-grep scripts) read only the classic text
//! format 0.0.4, so we serve OpenMetrics when the scraper asks for it and 0.0.4 otherwise.

use prometheus_client::registry::Registry;
use std::collections::HashMap;

/// Content type of OpenMetrics text.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Content type of the classic Prometheus text format.
pub const TEXT_004: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether an `Accept` header asks for OpenMetrics (Prometheus sends it first in its list).
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("application/openmetrics-text"))
}

/// Encodes `registry` in the format the `Accept` header asks for; returns (content type, body).
pub fn encode(registry: &Registry, accept: Option<&str>) -> (&'static str, String) {
    let mut om = String::with_capacity(16 * 1024);
    if let Err(e) = prometheus_client::encoding::text::encode(&mut om, registry) {
        // Only fmt::Error from a String writer, i.e. never; still, no panic on a scrape.
        tracing::error!("encoding metrics failed: {e}");
    }
    if wants_openmetrics(accept) {
        (OPENMETRICS, om)
    } else {
        (TEXT_004, openmetrics_to_text004(&om))
    }
}

/// Rewrites OpenMetrics text as text format 0.0.4.
///
/// Counters are named `x` in OpenMetrics metadata but `x_total` in 0.0.4; `_created` samples,
/// `# UNIT` and `# EOF` have no 0.0.4 form; `info` becomes a gauge named `x_info`; `unknown`
/// becomes `untyped`.
pub fn openmetrics_to_text004(om: &str) -> String {
    let mut types: HashMap<&str, &str> = HashMap::new();
    for line in om.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some((name, ty)) = rest.split_once(' ') {
                types.insert(name, ty);
            }
        }
    }
    let mut out = String::with_capacity(om.len());
    for line in om.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line
            .strip_prefix("# HELP ")
            .map(|r| ("HELP", r))
            .or_else(|| line.strip_prefix("# TYPE ").map(|r| ("TYPE", r)))
        {
            let (kind, rest) = rest;
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            let ty = types.get(name).copied().unwrap_or("unknown");
            let (name004, tail004) = match (ty, kind) {
                ("counter", "TYPE") => (format!("{name}_total"), "counter".to_string()),
                ("counter", _) => (format!("{name}_total"), tail.to_string()),
                ("info", "TYPE") => (format!("{name}_info"), "gauge".to_string()),
                ("info", _) => (format!("{name}_info"), tail.to_string()),
                ("unknown", "TYPE") => (name.to_string(), "untyped".to_string()),
                (_, _) => (name.to_string(), tail.to_string()),
            };
            out.push_str("# ");
            out.push_str(kind);
            out.push(' ');
            out.push_str(&name004);
            if !tail004.is_empty() {
                out.push(' ');
                out.push_str(&tail004);
            }
            out.push('\n');
            continue;
        }
        if !line.starts_with('#') {
            let name_end = line.find(['{', ' ']).unwrap_or(line.len());
            let sample = &line[..name_end];
            if let Some(base) = sample.strip_suffix("_created") {
                if types.get(base) == Some(&"counter") {
                    continue;
                }
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::{counter::Counter, gauge::Gauge, info::Info};

    fn registry() -> Registry {
        let mut r = Registry::default();
        let c: Counter = Counter::default();
        c.inc_by(3);
        r.register("demo_polls", "Polls done", c);
        let g: Gauge = Gauge::default();
        g.set(7);
        r.register("demo_clients", "Clients seen", g);
        r.register(
            "demo_build",
            "Build information",
            Info::new(vec![("version", "1.2.3")]),
        );
        r
    }

    #[test]
    fn openmetrics_when_asked() {
        let (ct, body) = encode(
            &registry(),
            Some("application/openmetrics-text;version=1.0.0,text/plain;q=0.5"),
        );
        assert_eq!(ct, OPENMETRICS);
        assert!(body.ends_with("# EOF\n"));
        assert!(body.contains("# TYPE demo_polls counter\ndemo_polls_total 3\n"));
    }

    #[test]
    fn text004_by_default() {
        let (ct, body) = encode(&registry(), None);
        assert_eq!(ct, TEXT_004);
        assert!(!body.contains("# EOF"));
        assert!(
            body.contains("# HELP demo_polls_total Polls done.\n"),
            "{body}"
        );
        assert!(body.contains("# TYPE demo_polls_total counter\ndemo_polls_total 3\n"));
        assert!(body.contains("# TYPE demo_clients gauge\ndemo_clients 7\n"));
        assert!(body.contains("# TYPE demo_build_info gauge\n"));
        assert!(body.contains("demo_build_info{version=\"1.2.3\"} 1\n"));
    }
}
