//! `type: prometheus`: the snapshot of each server that names the backend, encoded at scrape
//! time. Row metrics carry the names and `proxy`/`server` labels of HAProxy's own exporter
//! (`haproxy_backend_current_sessions{proxy="be_app"}`) plus `haproxy`, the configured server
//! id; the monitor's own health is `haproxysessionmon_*{server}`.

use crate::columns::{Column, Kind, COLUMNS, RESPONSES};
use crate::info::FIELDS;
use crate::sample::{RowType, Sample};
use crate::sink::SinkStats;
use crate::snapshot::{ServerSnapshot, Snapshots, FETCH_ERROR_KINDS};
use custos_kit::exposition::Exposition;
use custos_kit::families::{counter, gauge};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, LabelSetEncoder};
use prometheus_client::registry::{Registry, Unit};
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

/// Which families a collector writes: everything that changes only with a poll (cached per
/// snapshot generation), or what changes on its own (data age, sink counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Polled,
    Volatile,
}

/// Encodes the snapshots of `servers` and the counters of `sinks`.
#[derive(Debug)]
pub struct SessionCollector {
    store: Arc<Snapshots>,
    servers: Vec<String>,
    sinks: Arc<Vec<Arc<SinkStats>>>,
    part: Part,
}

/// The exposition a `prometheus` backend serves for `servers`.
pub fn exposition(
    store: Arc<Snapshots>,
    servers: Vec<String>,
    sinks: Arc<Vec<Arc<SinkStats>>>,
) -> Exposition {
    let collector = |part| SessionCollector {
        store: Arc::clone(&store),
        servers: servers.clone(),
        sinks: Arc::clone(&sinks),
        part,
    };
    let registry = |c: SessionCollector| {
        let mut r = Registry::default();
        r.register_collector(Box::new(c));
        r
    };
    let gen_store = Arc::clone(&store);
    Exposition::cached(
        registry(collector(Part::Polled)),
        registry(collector(Part::Volatile)),
        Box::new(move || gen_store.generation()),
    )
}

type Labels<'a> = Vec<(&'static str, &'a str)>;

impl SessionCollector {
    fn selected(&self) -> Vec<Arc<ServerSnapshot>> {
        self.store
            .all()
            .into_iter()
            .filter(|s| self.servers.contains(&s.server))
            .collect()
    }
}

fn per_server<V>(
    snaps: &[Arc<ServerSnapshot>],
    f: impl Fn(&ServerSnapshot) -> Option<V>,
) -> Vec<([(&'static str, &str); 1], V)> {
    snaps
        .iter()
        .filter_map(|s| f(s).map(|v| ([("server", s.server.as_str())], v)))
        .collect()
}

/// Labels of a row: `haproxy`, `proxy`, and `server` for server and listener rows.
fn row_labels<'a>(server: &'a str, s: &'a Sample) -> Labels<'a> {
    let mut l = vec![("haproxy", server), ("proxy", s.proxy.as_str())];
    if matches!(s.row_type, RowType::Server | RowType::Listener) {
        l.push(("server", s.svname.as_str()));
    }
    l
}

/// The labels of a row (as [`row_labels`]) without allocating: a scrape writes one sample per
/// row and column, tens of thousands on a large HAProxy.
#[derive(Debug, Clone, Copy)]
struct RowLabels<'a> {
    haproxy: &'a str,
    proxy: &'a str,
    server: Option<&'a str>,
}

impl<'a> RowLabels<'a> {
    fn of(haproxy: &'a str, s: &'a Sample) -> RowLabels<'a> {
        let server = matches!(s.row_type, RowType::Server | RowType::Listener);
        RowLabels {
            haproxy,
            proxy: &s.proxy,
            server: server.then_some(s.svname.as_str()),
        }
    }
}

impl EncodeLabelSet for RowLabels<'_> {
    fn encode(&self, e: &mut LabelSetEncoder) -> fmt::Result {
        let (h, p) = (("haproxy", self.haproxy), ("proxy", self.proxy));
        match self.server {
            Some(s) => [h, p, ("server", s)].encode(e),
            None => [h, p].encode(e),
        }
    }
}

/// Gauge families per row type, named as HAProxy's own exporter names them.
/// (name after `haproxy_<type>_`, help, value).
type RowGauge = (&'static str, &'static str, fn(&Sample) -> Option<u64>);

const ROW_GAUGES: [RowGauge; 7] = [
    ("current_sessions", "Current sessions (scur).", |s| {
        s.counts.scur
    }),
    ("max_sessions", "Maximum sessions seen (smax).", |s| {
        s.counts.smax
    }),
    ("limit_sessions", "Configured session limit (slim).", |s| {
        s.counts.slim
    }),
    (
        "current_session_rate",
        "Sessions per second over the last second (rate).",
        |s| s.counts.rate,
    ),
    ("current_queue", "Current queued requests (qcur).", |s| {
        s.counts.qcur
    }),
    ("active_servers", "Active servers (act).", |s| s.counts.act),
    ("backup_servers", "Backup servers (bck).", |s| s.counts.bck),
];

fn encode_rows(e: &mut DescriptorEncoder, snaps: &[Arc<ServerSnapshot>]) -> fmt::Result {
    let rows: Vec<(&str, &Sample)> = snaps
        .iter()
        .filter_map(|s| s.batch.as_ref().map(|b| (s.server.as_str(), b)))
        .flat_map(|(server, b)| b.samples.iter().map(move |s| (server, s)))
        .collect();
    for t in RowType::ALL {
        let of_type: Vec<(&str, &Sample)> = rows
            .iter()
            .filter(|(_, s)| s.row_type == t)
            .copied()
            .collect();
        if of_type.is_empty() {
            continue;
        }
        let ty = t.as_str();
        for (name, help, get) in ROW_GAUGES {
            let samples: Vec<(RowLabels, u64)> = of_type
                .iter()
                .filter_map(|(srv, s)| get(s).map(|v| (RowLabels::of(srv, s), v)))
                .collect();
            if !samples.is_empty() {
                gauge(e, &format!("haproxy_{ty}_{name}"), help, None, samples)?;
            }
        }
        let mut status = Vec::new();
        let mut responses = Vec::new();
        for (srv, s) in &of_type {
            if let Some(st) = &s.status {
                let mut l = row_labels(srv, s);
                l.push(("state", st.as_str()));
                status.push((l, 1i64));
            }
            let extra = s.counts.extra.as_deref();
            let class = |code| {
                let k = COLUMNS
                    .iter()
                    .position(|c| c.kind == Kind::Response(code))?;
                extra?[k]
            };
            let codes = [
                ("1xx", class("1xx")),
                ("2xx", class("2xx")),
                ("3xx", class("3xx")),
                ("4xx", s.counts.hrsp_4xx),
                ("5xx", s.counts.hrsp_5xx),
                ("other", class("other")),
            ];
            for (code, v) in codes {
                if let Some(v) = v {
                    let mut l = row_labels(srv, s);
                    l.push(("code", code));
                    responses.push((l, v));
                }
            }
        }
        encode_columns(e, ty, &of_type)?;
        if !status.is_empty() {
            gauge(
                e,
                &format!("haproxy_{ty}_status"),
                "Current status (status column) as a state label with value 1.",
                None,
                status,
            )?;
        }
        if !responses.is_empty() {
            counter(
                e,
                &format!("haproxy_{ty}_http_responses"),
                RESPONSES,
                responses,
            )?;
        }
    }
    Ok(())
}

/// The families of [`COLUMNS`] for the rows of one type; a column no row knows has none.
fn encode_columns(e: &mut DescriptorEncoder, ty: &str, rows: &[(&str, &Sample)]) -> fmt::Result {
    if rows.iter().all(|(_, s)| s.counts.extra.is_none()) {
        return Ok(());
    }
    for (k, col) in COLUMNS.iter().enumerate() {
        if matches!(col.kind, Kind::Response(_)) {
            continue; // in `http_responses_total`, with 4xx and 5xx
        }
        let values = rows.iter().filter_map(|(srv, s)| {
            let v = s.counts.extra.as_deref()?[k]?;
            Some((RowLabels::of(srv, s), v))
        });
        let samples: Vec<_> = values.collect();
        if !samples.is_empty() {
            family(e, &format!("haproxy_{ty}_{}", col.name), col, samples)?;
        }
    }
    Ok(())
}

/// One family of a table column: a counter, a gauge, or a gauge scaled to a base unit.
fn family<L: EncodeLabelSet>(
    e: &mut DescriptorEncoder,
    name: &str,
    col: &Column,
    samples: Vec<(L, u64)>,
) -> fmt::Result {
    match col.kind {
        Kind::Counter | Kind::Response(_) => counter(e, name, col.help, samples),
        Kind::Gauge => gauge(e, name, col.help, None, samples),
        Kind::Millis => {
            let s = samples.into_iter().map(|(l, v)| (l, v as f64 / 1000.0));
            gauge(e, name, col.help, None, s)
        }
        Kind::Mebibytes => {
            let s = samples
                .into_iter()
                .map(|(l, v)| (l, v.saturating_mul(1 << 20)));
            gauge(e, name, col.help, None, s)
        }
    }
}

/// `haproxy_process_*` from each server's last `show info`.
fn encode_info(e: &mut DescriptorEncoder, snaps: &[Arc<ServerSnapshot>]) -> fmt::Result {
    for (k, col) in FIELDS.iter().enumerate() {
        // Labelled `haproxy` as the row families are: it names the HAProxy, not the monitor.
        let samples: Vec<_> = snaps
            .iter()
            .filter_map(|s| Some(([("haproxy", s.server.as_str())], s.info.as_ref()?[k]?)))
            .collect();
        if !samples.is_empty() {
            family(e, &format!("haproxy_process_{}", col.name), col, samples)?;
        }
    }
    Ok(())
}

fn encode_polled(e: &mut DescriptorEncoder, snaps: &[Arc<ServerSnapshot>]) -> fmt::Result {
    gauge(
        e,
        "haproxysessionmon_up",
        "Whether the last poll of the HAProxy got a usable stats page.",
        None,
        per_server(snaps, |s| Some(i64::from(s.up))),
    )?;
    gauge(
        e,
        "haproxysessionmon_fetch_duration",
        "Time the last fetch of the stats page took.",
        Some(&Unit::Seconds),
        per_server(snaps, |s| s.fetch_duration.map(|d| d.as_secs_f64())),
    )?;
    counter(
        e,
        "haproxysessionmon_fetches",
        "Polls of the HAProxy's stats.",
        per_server(snaps, |s| Some(s.fetches)),
    )?;
    let mut errors = Vec::new();
    for s in snaps {
        for (kind, n) in FETCH_ERROR_KINDS.iter().zip(s.errors) {
            errors.push(([("server", s.server.as_str()), ("kind", *kind)], n));
        }
    }
    counter(
        e,
        "haproxysessionmon_fetch_errors",
        "Failed polls by kind (timeout, connect, auth, http, read, parse, setup).",
        errors,
    )?;
    counter(
        e,
        "haproxysessionmon_malformed_rows",
        "Stats rows skipped because they could not be read.",
        per_server(snaps, |s| Some(s.malformed_rows)),
    )?;
    counter(
        e,
        "haproxysessionmon_duplicate_rows",
        "Stats rows skipped because an earlier row had the same pxname and svname.",
        per_server(snaps, |s| Some(s.duplicate_rows)),
    )?;
    counter(
        e,
        "haproxysessionmon_rows_over_limit",
        "Stats rows skipped because the page had more rows than max-rows.",
        per_server(snaps, |s| Some(s.rows_over_limit)),
    )?;
    encode_info(e, snaps)?;
    encode_rows(e, snaps)
}

impl Collector for SessionCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        let snaps = self.selected();
        if self.part == Part::Polled {
            return encode_polled(&mut e, &snaps);
        }
        let now = SystemTime::now();
        gauge(
            &mut e,
            "haproxysessionmon_snapshot_age",
            "Age of the rows served (since the last successful poll).",
            Some(&Unit::Seconds),
            per_server(&snaps, |s| {
                custos_kit::snapshot::age(s.data_time, now).map(|d| d.as_secs_f64())
            }),
        )?;
        let sink = |f: fn(&SinkStats) -> u64| -> Vec<([(&'static str, &str); 2], u64)> {
            self.sinks
                .iter()
                .map(|s| ([("backend", s.id.as_str()), ("type", s.kind)], f(s)))
                .collect()
        };
        counter(
            &mut e,
            "haproxysessionmon_sink_deliveries",
            "Batches (one poll of one server) a sink delivered.",
            sink(|s| s.delivered.load(Ordering::Relaxed)),
        )?;
        counter(
            &mut e,
            "haproxysessionmon_sink_errors",
            "Batches a sink failed to deliver.",
            sink(|s| s.errors.load(Ordering::Relaxed)),
        )?;
        counter(
            &mut e,
            "haproxysessionmon_sink_dropped",
            "Batches dropped because the sink was still busy with earlier ones.",
            sink(|s| s.dropped.load(Ordering::Relaxed)),
        )?;
        counter(
            &mut e,
            "haproxysessionmon_sink_skipped_messages",
            "Messages left out of delivered batches (a GELF message larger than 128 chunks).",
            sink(|s| s.skipped.load(Ordering::Relaxed)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::{Batch, Counts};
    use custos_kit::snapshot::Snapshot as _;
    use custos_testkit::Metrics;
    use std::time::Duration;

    fn store() -> Arc<Snapshots> {
        let store = Arc::new(Snapshots::new(["lb", "down", "other"]));
        let row = |proxy: &str, svname: &str, row_type, scur| Sample {
            proxy: proxy.into(),
            svname: svname.into(),
            row_type,
            status: Some("UP".into()),
            counts: Counts {
                scur,
                hrsp_5xx: Some(2),
                ..Counts::default()
            },
        };
        let mut s = ServerSnapshot::empty("lb");
        s.up = true;
        s.fetches = 3;
        s.count_error("timeout");
        s.fetch_duration = Some(Duration::from_millis(5));
        s.data_time = Some(SystemTime::now());
        s.batch = Some(Arc::new(Batch {
            server: "lb".into(),
            endpoint: "e".into(),
            time: SystemTime::now(),
            samples: vec![
                row("be_app", "BACKEND", RowType::Backend, Some(4)),
                row("be_app", "app1", RowType::Server, Some(3)),
                row("fe", "FRONTEND", RowType::Frontend, None),
            ],
        }));
        store.publish(s);
        store
    }

    /// Extra columns: counters as `_total`, milliseconds as seconds, response classes in the
    /// one `http_responses_total` family, unknown values without a sample.
    #[test]
    fn extra_columns() {
        use crate::columns::{COLUMNS, COUNT};
        let col = |name| COLUMNS.iter().position(|c| c.csv == name).unwrap();
        let mut x = [None; COUNT];
        x[col("bin")] = Some(10);
        x[col("check_duration")] = Some(1500);
        x[col("hrsp_2xx")] = Some(7);
        let store = store();
        let mut snap = (*store.get("lb").unwrap()).clone();
        let mut batch = (**snap.batch.as_ref().unwrap()).clone();
        batch.samples[1].counts.extra = Some(Box::new(x));
        batch.samples[0].counts.extra = Some(Box::new([None; COUNT]));
        snap.batch = Some(Arc::new(batch));
        store.publish(snap);
        let x = exposition(store, vec!["lb".into()], Arc::new(Vec::new()));
        let m = Metrics::parse(&x.render(None).1);
        let srv = [("proxy", "be_app"), ("server", "app1")];
        assert_eq!(m.value("haproxy_server_bytes_in_total", &srv), Some(10.0));
        assert_eq!(m.types["haproxy_server_bytes_in_total"], "counter");
        assert_eq!(
            m.value("haproxy_server_check_duration_seconds", &srv),
            Some(1.5)
        );
        let code = [("server", "app1"), ("code", "2xx")];
        assert_eq!(
            m.value("haproxy_server_http_responses_total", &code),
            Some(7.0)
        );
        let code = [("server", "app1"), ("code", "5xx")];
        assert_eq!(
            m.value("haproxy_server_http_responses_total", &code),
            Some(2.0)
        );
        assert!(m.find("haproxy_server_max_queue", &[]).is_empty());
        assert!(m.find("haproxy_backend_bytes_in_total", &[]).is_empty());
        assert_eq!(m.value("haproxy_server_current_sessions", &srv), Some(3.0));
    }

    #[test]
    fn rows_and_health() {
        let sinks = Arc::new(vec![Arc::new(SinkStats::new("g", "gelf"))]);
        sinks[0].errors.fetch_add(2, Ordering::Relaxed);
        sinks[0].skipped.fetch_add(3, Ordering::Relaxed);
        let x = exposition(store(), vec!["lb".into(), "down".into()], sinks);
        let (_, text) = x.render(None);
        let m = Metrics::parse(&text);
        let v = |n: &str, l: &[(&str, &str)]| m.value(n, l);
        assert_eq!(v("haproxysessionmon_up", &[("server", "lb")]), Some(1.0));
        assert_eq!(v("haproxysessionmon_up", &[("server", "down")]), Some(0.0));
        assert!(m
            .find("haproxysessionmon_up", &[("server", "other")])
            .is_empty());
        assert_eq!(
            v(
                "haproxy_backend_current_sessions",
                &[("haproxy", "lb"), ("proxy", "be_app")]
            ),
            Some(4.0)
        );
        assert_eq!(
            v(
                "haproxy_server_current_sessions",
                &[("haproxy", "lb"), ("proxy", "be_app"), ("server", "app1")]
            ),
            Some(3.0)
        );
        assert!(
            m.find("haproxy_frontend_current_sessions", &[]).is_empty(),
            "unknown is no sample"
        );
        assert_eq!(
            v("haproxy_backend_http_responses_total", &[("code", "5xx")]),
            Some(2.0)
        );
        assert_eq!(v("haproxy_backend_status", &[("state", "UP")]), Some(1.0));
        assert_eq!(
            v(
                "haproxysessionmon_fetch_errors_total",
                &[("server", "lb"), ("kind", "timeout")]
            ),
            Some(1.0)
        );
        assert_eq!(
            v(
                "haproxysessionmon_sink_errors_total",
                &[("backend", "g"), ("type", "gelf")]
            ),
            Some(2.0)
        );
        assert_eq!(
            v(
                "haproxysessionmon_sink_skipped_messages_total",
                &[("backend", "g"), ("type", "gelf")]
            ),
            Some(3.0)
        );
        assert!(v(
            "haproxysessionmon_snapshot_age_seconds",
            &[("server", "lb")]
        )
        .is_some());
        assert_eq!(m.types["haproxysessionmon_fetches_total"], "counter");
    }
}
