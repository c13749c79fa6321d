//! Encoding a registry for a scraper.
//!
//! prometheus-client writes OpenMetrics. Prometheus prefers it, but `promtool check metrics`
//! and many older scrapers (PRTG, Telegraf, curl-and-grep scripts) read only the classic text
//! format 0.0.4, so we serve OpenMetrics when the scraper asks for it and 0.0.4 otherwise.
//!
//! An exporter whose data changes only when it publishes a new snapshot serves an
//! [`Exposition::cached`]: the bulk is encoded once per generation and format, and a scrape
//! encodes only the few families that change by themselves (ages), so a large exposition costs
//! a copy, not an encode, per scrape.

use bytes::Bytes;
use prometheus_client::registry::Registry;
use std::sync::Mutex;

/// Content type of OpenMetrics text.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Content type of the classic Prometheus text format.
pub const TEXT_004: &str = "text/plain; version=0.0.4; charset=utf-8";

const EOF_LINE: &str = "# EOF\n";

/// Whether an `Accept` header asks for OpenMetrics (Prometheus sends it first in its list).
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("application/openmetrics-text"))
}

/// Encodes `registry` in the format the `Accept` header asks for; returns (content type, body).
pub fn encode(registry: &Registry, accept: Option<&str>) -> (&'static str, String) {
    let om = encode_openmetrics(registry);
    if wants_openmetrics(accept) {
        (OPENMETRICS, om)
    } else {
        (TEXT_004, openmetrics_to_text004(&om))
    }
}

fn encode_openmetrics(registry: &Registry) -> String {
    let mut om = String::with_capacity(16 * 1024);
    if let Err(e) = prometheus_client::encoding::text::encode(&mut om, registry) {
        // Only fmt::Error from a String writer, i.e. never; still, no panic on a scrape.
        tracing::error!("encoding metrics failed: {e}");
    }
    om
}

/// Where the data of a cached exposition stands: bumped by the exporter on every change.
pub type Generation = Box<dyn Fn() -> u64 + Send + Sync>;

/// What a `/metrics` route serves: a registry encoded on every scrape, or a cached one.
pub struct Exposition {
    stable: Registry,
    volatile: Option<Registry>,
    generation: Option<Generation>,
    cache: Mutex<Cache>,
}

/// Encoded stable part of one generation, per format (each made on its first scrape). A
/// scrape's body shares these bytes rather than copying them (610 kB for 2,000 burp clients).
#[derive(Default)]
struct Cache {
    generation: u64,
    openmetrics: Option<Bytes>,
    text004: Option<Bytes>,
}

impl std::fmt::Debug for Exposition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exposition")
            .field("cached", &self.generation.is_some())
            .finish_non_exhaustive()
    }
}

impl Exposition {
    /// `registry` encoded on every scrape.
    pub fn uncached(registry: Registry) -> Exposition {
        Exposition {
            stable: registry,
            volatile: None,
            generation: None,
            cache: Mutex::new(Cache::default()),
        }
    }

    /// `stable` encoded once per value of `generation` (which must change whenever any of its
    /// metrics may have), followed by `volatile`, encoded on every scrape. The families of
    /// `volatile` come last in the output.
    pub fn cached(stable: Registry, volatile: Registry, generation: Generation) -> Exposition {
        Exposition {
            stable,
            volatile: Some(volatile),
            generation: Some(generation),
            cache: Mutex::new(Cache::default()),
        }
    }

    /// The body for a scrape with this `Accept` header; returns (content type, body).
    pub fn render(&self, accept: Option<&str>) -> (&'static str, String) {
        let (content_type, parts) = self.render_parts(accept);
        let mut out = String::with_capacity(parts.iter().map(Bytes::len).sum());
        for p in &parts {
            // Every part is UTF-8 text made by the encoder, or a cut of it at a line start.
            out.push_str(&String::from_utf8_lossy(p));
        }
        (content_type, out)
    }

    /// The body for a scrape as consecutive parts: the cached stable part shared, not copied,
    /// then what is encoded for this scrape; returns (content type, parts).
    pub fn render_parts(&self, accept: Option<&str>) -> (&'static str, Vec<Bytes>) {
        let Some(generation) = &self.generation else {
            let (content_type, body) = encode(&self.stable, accept);
            return (content_type, vec![Bytes::from(body)]);
        };
        let om = wants_openmetrics(accept);
        let stable = self.stable_part(generation(), om);
        let volatile = self.volatile.as_ref().map(encode_openmetrics);
        if om {
            let end = match stable.ends_with(EOF_LINE.as_bytes()) {
                true => stable.len() - EOF_LINE.len(),
                false => stable.len(),
            };
            let tail = match volatile {
                Some(v) => Bytes::from(v),
                None => Bytes::from_static(EOF_LINE.as_bytes()),
            };
            (OPENMETRICS, vec![stable.slice(..end), tail])
        } else {
            let mut tail = String::new();
            if let Some(v) = volatile {
                openmetrics_to_text004_into(&v, &mut tail);
            }
            (TEXT_004, vec![stable, Bytes::from(tail)])
        }
    }

    /// The stable part of `generation` in one format, encoded now if not yet cached.
    fn stable_part(&self, generation: u64, openmetrics: bool) -> Bytes {
        // Held while encoding: concurrent scrapes of a new generation wait for one encode
        // instead of each doing their own.
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.generation != generation {
            *cache = Cache {
                generation,
                ..Cache::default()
            };
        }
        let om = cache
            .openmetrics
            .get_or_insert_with(|| Bytes::from(encode_openmetrics(&self.stable)))
            .clone();
        if openmetrics {
            return om;
        }
        cache
            .text004
            .get_or_insert_with(|| {
                // Made from our own encoder's UTF-8 output.
                Bytes::from(openmetrics_to_text004(&String::from_utf8_lossy(&om)))
            })
            .clone()
    }
}

/// Rewrites OpenMetrics text as text format 0.0.4.
///
/// Counters are named `x` in OpenMetrics metadata but `x_total` in 0.0.4; `_created` samples,
/// `# UNIT` and `# EOF` have no 0.0.4 form; `info` becomes a gauge named `x_info`; `unknown`
/// becomes `untyped`.
pub fn openmetrics_to_text004(om: &str) -> String {
    // Renamed metadata adds a few bytes per family; dropped `# EOF`/`# UNIT` lines give some back.
    let mut out = String::with_capacity(om.len() + om.len() / 32);
    openmetrics_to_text004_into(om, &mut out);
    out
}

/// [`openmetrics_to_text004`] appending to `out`, in one pass.
///
/// A family's `# HELP` comes right before its `# TYPE` (as prometheus-client writes them), so the
/// type a `# HELP` line needs is the next line's; its samples follow its `# TYPE`.
fn openmetrics_to_text004_into(om: &str, out: &mut String) {
    let mut lines = om.lines().peekable();
    // The family whose samples follow: (name, type).
    let mut family: (&str, &str) = ("", "unknown");
    while let Some(line) = lines.next() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            let ty = lines
                .peek()
                .and_then(|next| next.strip_prefix("# TYPE "))
                .and_then(|r| r.split_once(' '))
                .filter(|(n, _)| *n == name)
                .map(|(_, ty)| ty)
                .or_else(|| (family.0 == name).then_some(family.1))
                .unwrap_or("unknown");
            push_meta(out, "HELP", name, ty, help);
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').unwrap_or((rest, ""));
            family = (name, if ty.is_empty() { "unknown" } else { ty });
            let ty004 = match family.1 {
                "info" => "gauge",
                "unknown" => "untyped",
                t => t,
            };
            push_meta(out, "TYPE", name, family.1, ty004);
        } else if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        } else {
            if family.1 == "counter" && !line.starts_with('#') {
                let name_end = line.find(['{', ' ']).unwrap_or(line.len());
                if line[..name_end].strip_suffix("_created") == Some(family.0) {
                    continue;
                }
            }
            out.push_str(line);
            out.push('\n');
        }
    }
}

/// Writes `# <kind> <name as in 0.0.4>[ <tail>]`.
fn push_meta(out: &mut String, kind: &str, name: &str, ty: &str, tail: &str) {
    out.push_str("# ");
    out.push_str(kind);
    out.push(' ');
    out.push_str(name);
    match ty {
        "counter" => out.push_str("_total"),
        "info" => out.push_str("_info"),
        _ => {}
    }
    if !tail.is_empty() {
        out.push(' ');
        out.push_str(tail);
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::{counter::Counter, gauge::Gauge, info::Info};
    use std::sync::Arc;

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

    #[test]
    fn cached_encodes_stable_part_once_per_generation() {
        use std::sync::atomic::{AtomicU64, Ordering};
        let stable_gauge: Gauge = Gauge::default();
        let mut stable = registry();
        stable.register("demo_value", "A value", stable_gauge.clone());
        let age: Gauge = Gauge::default();
        let mut volatile = Registry::default();
        volatile.register("demo_age", "An age", age.clone());
        let generation = Arc::new(AtomicU64::new(1));
        let g = Arc::clone(&generation);
        let cached = Exposition::cached(
            stable,
            volatile,
            Box::new(move || g.load(Ordering::Acquire)),
        );
        let om_accept = Some("application/openmetrics-text; version=1.0.0");

        stable_gauge.set(1);
        age.set(10);
        let (ct, om) = cached.render(om_accept);
        assert_eq!(ct, OPENMETRICS);
        assert!(
            om.contains("demo_value 1\n") && om.contains("demo_age 10\n"),
            "{om}"
        );
        assert!(om.ends_with("demo_age 10\n# EOF\n"), "{om}");
        assert_eq!(om.matches("# EOF").count(), 1);
        let (ct, text) = cached.render(None);
        assert_eq!(ct, TEXT_004);
        assert!(text.contains("demo_value 1\n") && text.ends_with("demo_age 10\n"));
        assert!(text.contains("# TYPE demo_polls_total counter\ndemo_polls_total 3\n"));

        // Same generation: the stable part is served from the cache, the volatile part is new.
        stable_gauge.set(2);
        age.set(11);
        let (_, om) = cached.render(om_accept);
        assert!(
            om.contains("demo_value 1\n") && om.contains("demo_age 11\n"),
            "{om}"
        );
        let (_, text) = cached.render(None);
        assert!(text.contains("demo_value 1\n") && text.contains("demo_age 11\n"));

        generation.store(2, Ordering::Release);
        let (_, text) = cached.render(None);
        assert!(text.contains("demo_value 2\n"), "{text}");
        let (_, om) = cached.render(om_accept);
        assert!(om.contains("demo_value 2\n"), "{om}");
    }

    #[test]
    fn scrapes_share_the_cached_part_instead_of_copying_it() {
        let cached = Exposition::cached(registry(), Registry::default(), Box::new(|| 7));
        for accept in [None, Some("application/openmetrics-text")] {
            let (_, a) = cached.render_parts(accept);
            let (_, b) = cached.render_parts(accept);
            assert!(a[0].len() > 100);
            assert_eq!(
                a[0].as_ptr(),
                b[0].as_ptr(),
                "one copy of the stable part, whatever the number of scrapes"
            );
            let joined: Vec<u8> = a.concat();
            assert_eq!(String::from_utf8(joined).unwrap(), cached.render(accept).1);
        }
    }

    #[test]
    fn cached_has_the_same_lines_as_uncached() {
        let mut volatile = Registry::default();
        let g: Gauge = Gauge::default();
        g.set(5);
        volatile.register("demo_age", "An age", g.clone());
        let mut all = registry();
        all.register("demo_age", "An age", g);
        let cached = Exposition::cached(registry(), volatile, Box::new(|| 0));
        let uncached = Exposition::uncached(all);
        for accept in [None, Some("application/openmetrics-text")] {
            let (_, a) = cached.render(accept);
            let (_, b) = uncached.render(accept);
            assert_eq!(a, b, "volatile families come last, as registered last here");
        }
    }

    #[test]
    fn text004_conversion_of_every_kind() {
        let om = "# HELP a_c Counts.\n# TYPE a_c counter\na_c_total 1\na_c_created 17.0\n\
                  # HELP a_i Info.\n# TYPE a_i info\na_i_info{v=\"1\"} 1\n\
                  # HELP a_u Unknown.\n# TYPE a_u unknown\na_u 3\n\
                  # HELP a_s Seconds.\n# TYPE a_s gauge\n# UNIT a_s seconds\na_s 0.5\n# EOF\n";
        assert_eq!(
            openmetrics_to_text004(om),
            "# HELP a_c_total Counts.\n# TYPE a_c_total counter\na_c_total 1\n\
             # HELP a_i_info Info.\n# TYPE a_i_info gauge\na_i_info{v=\"1\"} 1\n\
             # HELP a_u Unknown.\n# TYPE a_u untyped\na_u 3\n\
             # HELP a_s Seconds.\n# TYPE a_s gauge\na_s 0.5\n"
        );
    }
}
