//! A prometheus-client `Collector` that encodes the current snapshots at scrape time.
//!
//! Nothing is registered per client: every scrape walks the snapshots, so a client that left a
//! server's list, a child that ended or a phase that changed leaves no stale series behind.
//! Names, labels and meanings of the original burp_exporter's metrics are kept (`name` is the
//! client, `server` the configured server); everything else follows the Prometheus naming
//! guidelines (base units in the name, `_total` only on counters).

use crate::model::Client;
use crate::snapshot::{ClientSnapshot, ServerSnapshot, Snapshots};
use custos_kit::families::{counter, gauge, unix_seconds as unix};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

/// Log names burp knows (`json_output.c`); each gets a 0/1 `burp_client_backup_log` sample.
pub const KNOWN_LOGS: [&str; 6] = [
    "backup",
    "restore",
    "verify",
    "backup_stats",
    "restore_stats",
    "verify_stats",
];

/// Run states burp 3.1.4 reports (`cstat.c`); each gets a 0/1 `burp_client_run_status` sample.
pub const RUN_STATES: [&str; 2] = ["idle", "running"];

/// Encodes the snapshots of all servers, or of a chosen few (`/probe?server[]=`).
#[derive(Debug)]
pub struct BurpCollector {
    store: Arc<Snapshots>,
    only: Option<Vec<String>>,
    families: Families,
}

/// Which families a collector encodes: `/metrics` caches everything but the snapshot age,
/// which changes with the clock rather than with a poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Families {
    All,
    AllButAge,
    AgeOnly,
}

impl BurpCollector {
    /// All configured servers (`/metrics`).
    pub fn new(store: Arc<Snapshots>) -> BurpCollector {
        BurpCollector {
            store,
            only: None,
            families: Families::All,
        }
    }

    /// Only the named servers (`/probe`).
    pub fn for_servers(store: Arc<Snapshots>, names: Vec<String>) -> BurpCollector {
        BurpCollector {
            store,
            only: Some(names),
            families: Families::All,
        }
    }

    /// The same families, for the named servers only.
    pub fn restricted_to(self, names: Vec<String>) -> BurpCollector {
        BurpCollector {
            only: Some(names),
            ..self
        }
    }

    /// All servers, every family that changes only when a poll publishes (`/metrics`' cache).
    pub fn without_age(store: Arc<Snapshots>) -> BurpCollector {
        BurpCollector {
            families: Families::AllButAge,
            ..BurpCollector::new(store)
        }
    }

    /// All servers, `burp_snapshot_age_seconds` only (encoded on every `/metrics` scrape).
    pub fn age_only(store: Arc<Snapshots>) -> BurpCollector {
        BurpCollector {
            families: Families::AgeOnly,
            ..BurpCollector::new(store)
        }
    }

    fn selected(&self) -> Vec<Arc<ServerSnapshot>> {
        let all = self.store.all();
        match &self.only {
            None => all,
            Some(names) => all
                .into_iter()
                .filter(|s| names.iter().any(|n| *n == s.server))
                .collect(),
        }
    }
}

/// A registry holding one collector: what `/metrics` (all) or `/probe` (some) encodes.
pub fn registry(collector: BurpCollector) -> Registry {
    let mut r = Registry::default();
    r.register_collector(Box::new(collector));
    r
}

/// `burp_snapshot_age_seconds`: the one family that changes between polls.
fn snapshot_age(
    e: &mut DescriptorEncoder,
    snaps: &[Arc<ServerSnapshot>],
    now: SystemTime,
) -> fmt::Result {
    gauge(
        e,
        "burp_snapshot_age",
        "Age of the client data served for the burp server (since its last successful poll).",
        Some(&Unit::Seconds),
        per_server(snaps, |s| s.age(now).map(|d| d.as_secs_f64())),
    )
}

type L1<'a> = [(&'static str, &'a str); 1];
type L2<'a> = [(&'static str, &'a str); 2];
type L3<'a> = [(&'static str, &'a str); 3];

fn per_server<'a, V>(
    snaps: &'a [Arc<ServerSnapshot>],
    f: impl Fn(&'a ServerSnapshot) -> Option<V>,
) -> Vec<(L1<'a>, V)> {
    snaps
        .iter()
        .filter_map(|s| f(s).map(|v| ([("server", s.server.as_str())], v)))
        .collect()
}

fn per_client<'a, V>(
    snaps: &'a [Arc<ServerSnapshot>],
    f: impl Fn(&'a ClientSnapshot) -> Option<V>,
) -> Vec<(L2<'a>, V)> {
    let mut out = Vec::new();
    for s in snaps {
        for c in s.clients.iter() {
            if let Some(v) = f(c) {
                out.push((
                    [
                        ("server", s.server.as_str()),
                        ("name", c.client.name.as_str()),
                    ],
                    v,
                ));
            }
        }
    }
    out
}

/// One sample per running child: labels server, name, pid, action.
fn per_child<'a, V>(
    snaps: &'a [Arc<ServerSnapshot>],
    f: impl Fn(&'a crate::model::Child) -> Option<V>,
) -> Vec<([(&'static str, String); 4], V)> {
    let mut out = Vec::new();
    for s in snaps {
        for c in s.clients.iter() {
            for ch in &c.client.children {
                if let Some(v) = f(ch) {
                    out.push((
                        [
                            ("server", s.server.clone()),
                            ("name", c.client.name.clone()),
                            ("pid", ch.pid.to_string()),
                            ("action", ch.action.clone()),
                        ],
                        v,
                    ));
                }
            }
        }
    }
    out
}

fn run_states(c: &Client) -> impl Iterator<Item = (&str, i64)> {
    let other = (!RUN_STATES.contains(&c.run_status.as_str())).then_some(c.run_status.as_str());
    RUN_STATES
        .iter()
        .copied()
        .chain(other)
        .map(move |st| (st, i64::from(c.run_status == st)))
}

fn log_presence(c: &Client) -> Vec<(&str, i64)> {
    let Some(cur) = c.current() else {
        return Vec::new();
    };
    let mut v: Vec<(&str, i64)> = KNOWN_LOGS
        .iter()
        .map(|l| (*l, i64::from(cur.has_log(l))))
        .collect();
    for l in &cur.logs.list {
        if !KNOWN_LOGS.contains(&l.as_str()) {
            v.push((l.as_str(), 1));
        }
    }
    v
}

impl Collector for BurpCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let snaps = self.selected();
        let snaps = snaps.as_slice();
        let now = SystemTime::now();
        if self.families == Families::AgeOnly {
            return snapshot_age(&mut enc, snaps, now);
        }
        let seconds = Unit::Seconds;
        let bytes = Unit::Bytes;
        let e = &mut enc;

        // --- the original's server metrics ------------------------------------------------
        gauge(
            e,
            "burp_last_contact",
            "Unix time the burp server last answered a request (0: never).",
            None,
            per_server(snaps, |s| Some(s.last_contact.map_or(0.0, unix))),
        )?;
        counter(
            e,
            "burp_contact_attempts",
            "Connection attempts (TCP, TLS and login) to the burp server.",
            per_server(snaps, |s| Some(s.contact_attempts)),
        )?;
        gauge(
            e,
            "burp_up",
            "Whether the last poll of the burp server succeeded (1) or not (0).",
            None,
            per_server(snaps, |s| Some(i64::from(s.up))),
        )?;
        counter(
            e,
            "burp_parse_errors",
            "Replies and client entries from the burp server that could not be parsed.",
            per_server(snaps, |s| Some(s.parse_errors)),
        )?;
        gauge(
            e,
            "burp_clients",
            "Clients the burp server reports to us.",
            None,
            per_server(snaps, |s| s.data_time.map(|_| s.clients.len() as i64)),
        )?;

        // --- the original's client metrics ------------------------------------------------
        gauge(
            e,
            "burp_client_backup_num",
            "Number of the most recent completed backup of a client.",
            None,
            per_client(snaps, |c| c.client.current().map(|b| b.number)),
        )?;
        gauge(
            e,
            "burp_client_backup_timestamp",
            "Unix time the most recent completed backup of a client started.",
            None,
            per_client(snaps, |c| c.client.current().map(|b| b.timestamp)),
        )?;
        {
            let mut m = e.encode_descriptor(
                "burp_client_backup_log",
                "Whether the most recent completed backup of a client has this log (1) or not (0).",
                None,
                MetricType::Gauge,
            )?;
            for s in snaps {
                for c in s.clients.iter() {
                    for (log, v) in log_presence(&c.client) {
                        let l: L3 = [
                            ("server", s.server.as_str()),
                            ("name", c.client.name.as_str()),
                            ("log", log),
                        ];
                        ConstGauge::new(v).encode(m.encode_family(&l)?)?;
                    }
                }
            }
        }
        gauge(
            e,
            "burp_client_backup_has_in_progress",
            "Whether a client has a backup in progress (flag working or finishing).",
            None,
            per_client(snaps, |c| Some(i64::from(c.client.has_in_progress()))),
        )?;
        {
            let mut m = e.encode_descriptor(
                "burp_client_run_status",
                "Run status of a client: 1 for the current state, 0 for the others.",
                None,
                MetricType::Gauge,
            )?;
            for s in snaps {
                for c in s.clients.iter() {
                    for (state, v) in run_states(&c.client) {
                        let l: L3 = [
                            ("server", s.server.as_str()),
                            ("name", c.client.name.as_str()),
                            ("burp_client_run_status", state),
                        ];
                        ConstGauge::new(v).encode(m.encode_family(&l)?)?;
                    }
                }
            }
        }

        // --- backup list ----------------------------------------------------------------
        gauge(
            e,
            "burp_client_backups",
            "Completed backups a client has on the server.",
            None,
            per_client(snaps, |c| c.history.map(|h| h.count)),
        )?;
        gauge(
            e,
            "burp_client_oldest_backup_timestamp",
            "Unix time the oldest completed backup of a client started.",
            Some(&seconds),
            per_client(snaps, |c| c.history.and_then(|h| h.oldest_timestamp)),
        )?;
        gauge(
            e,
            "burp_client_newest_backup_timestamp",
            "Unix time the newest completed backup of a client started.",
            Some(&seconds),
            per_client(snaps, |c| c.history.and_then(|h| h.newest_timestamp)),
        )?;

        // --- backup_stats of the most recent completed backup -----------------------------
        gauge(
            e,
            "burp_client_last_backup",
            "Size of the most recent completed backup of a client (burp's bytes in backup).",
            Some(&bytes),
            per_client(snaps, |c| c.current_stats().map(|s| s.bytes)),
        )?;
        gauge(
            e,
            "burp_client_last_backup_received",
            "Bytes received from a client during its most recent completed backup.",
            Some(&bytes),
            per_client(snaps, |c| c.current_stats().map(|s| s.bytes_received)),
        )?;
        gauge(
            e,
            "burp_client_last_backup_estimated",
            "Bytes a client estimated in the scan phase of its most recent completed backup.",
            Some(&bytes),
            per_client(snaps, |c| c.current_stats().map(|s| s.bytes_estimated)),
        )?;
        gauge(
            e,
            "burp_client_last_backup_files",
            "Files in the most recent completed backup of a client (new, changed and unchanged).",
            None,
            per_client(snaps, |c| c.current_stats().map(|s| s.files.total())),
        )?;
        gauge(
            e,
            "burp_client_last_backup_changed_files",
            "Files new or changed in the most recent completed backup of a client.",
            None,
            per_client(snaps, |c| {
                c.current_stats()
                    .map(|s| s.files.new.saturating_add(s.files.changed))
            }),
        )?;
        gauge(
            e,
            "burp_client_last_backup_warnings",
            "Warnings during the most recent completed backup of a client.",
            None,
            per_client(snaps, |c| c.current_stats().map(|s| s.warnings)),
        )?;
        gauge(
            e,
            "burp_client_last_backup_duration",
            "How long the most recent completed backup of a client took.",
            Some(&seconds),
            per_client(snaps, |c| {
                c.current_stats().and_then(|s| s.duration_seconds())
            }),
        )?;
        gauge(
            e,
            "burp_client_last_backup_end_timestamp",
            "Unix time the most recent completed backup of a client ended.",
            Some(&seconds),
            per_client(snaps, |c| c.current_stats().and_then(|s| s.time_end)),
        )?;

        // --- running children --------------------------------------------------------------
        {
            let mut m = e.encode_descriptor(
                "burp_client_child_phase",
                "Phase of a server child working for a client (1 for the current phase).",
                None,
                MetricType::Gauge,
            )?;
            for s in snaps {
                for c in s.clients.iter() {
                    for ch in &c.client.children {
                        let pid = ch.pid.to_string();
                        let l = [
                            ("server", s.server.as_str()),
                            ("name", c.client.name.as_str()),
                            ("pid", pid.as_str()),
                            ("action", ch.action.as_str()),
                            ("phase", ch.phase.as_str()),
                        ];
                        ConstGauge::new(1i64).encode(m.encode_family(&l)?)?;
                    }
                }
            }
        }
        gauge(
            e,
            "burp_client_child_backup_num",
            "Number of the backup a server child works on.",
            None,
            per_child(snaps, |ch| Some(ch.backup)),
        )?;
        gauge(
            e,
            "burp_client_child_start_timestamp",
            "Unix time a server child started its work.",
            Some(&seconds),
            per_child(snaps, |ch| ch.counters.time("time_start")),
        )?;
        gauge(
            e,
            "burp_client_child_scanned_files",
            "Files a server child's client found in the scan phase.",
            None,
            per_child(snaps, |ch| Some(ch.counters.files().scanned)),
        )?;
        gauge(
            e,
            "burp_client_child_files",
            "Files a server child has processed so far (new, changed and unchanged).",
            None,
            per_child(snaps, |ch| Some(ch.counters.files().total())),
        )?;
        gauge(
            e,
            "burp_client_child_changed_files",
            "Files new or changed that a server child has processed so far.",
            None,
            per_child(snaps, |ch| {
                let f = ch.counters.files();
                Some(f.new.saturating_add(f.changed))
            }),
        )?;
        gauge(
            e,
            "burp_client_child",
            "Bytes a server child has processed so far.",
            Some(&bytes),
            per_child(snaps, |ch| Some(ch.counters.value("bytes"))),
        )?;
        gauge(
            e,
            "burp_client_child_received",
            "Bytes a server child has received from its client so far.",
            Some(&bytes),
            per_child(snaps, |ch| Some(ch.counters.value("bytes_received"))),
        )?;
        gauge(
            e,
            "burp_client_child_estimated",
            "Bytes the client of a server child estimated in the scan phase.",
            Some(&bytes),
            per_child(snaps, |ch| Some(ch.counters.value("bytes_estimated"))),
        )?;

        // --- the exporter itself ------------------------------------------------------------
        counter(
            e,
            "burp_polls",
            "Polls of the burp server.",
            per_server(snaps, |s| Some(s.polls)),
        )?;
        {
            let mut m = e.encode_descriptor(
                "burp_poll_errors",
                "Errors while polling the burp server, by kind.",
                None,
                MetricType::Counter,
            )?;
            for s in snaps {
                for (kind, n) in s.errors.iter() {
                    let l: L2 = [("server", s.server.as_str()), ("kind", kind)];
                    ConstCounter::new(n).encode(m.encode_family(&l)?)?;
                }
            }
        }
        gauge(
            e,
            "burp_poll_duration",
            "How long the last poll of the burp server took.",
            Some(&seconds),
            per_server(snaps, |s| s.poll_duration.map(|d| d.as_secs_f64())),
        )?;
        if self.families == Families::All {
            snapshot_age(e, snaps, now)?;
        }
        {
            let mut m = e.encode_descriptor(
                "burp_exporter_build",
                "Version of custos burp_exporter.",
                None,
                MetricType::Info,
            )?;
            m.encode_info(&[("version", env!("CARGO_PKG_VERSION"))])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{parse_backup_stats, parse_clients, History};
    use crate::snapshot::ServerSnapshot;
    use custos_kit::exposition;
    use std::time::{Duration, UNIX_EPOCH};

    fn data(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    /// Snapshots of two servers: "main" idle with stats and history, "busy" with a running backup.
    fn store() -> Arc<Snapshots> {
        let store = Arc::new(Snapshots::new(["main", "busy", "down"]));
        let t = UNIX_EPOCH + Duration::from_secs(1_795_300_300);
        let idle = parse_clients(&data("c.json")).unwrap();
        let stats = parse_backup_stats(
            &data("c_testclient_b_1_l_backup_stats.json"),
            "testclient",
            1,
        )
        .unwrap();
        let clients = idle
            .clients
            .into_iter()
            .map(|c| {
                let stats = (c.name == "testclient").then(|| (1, stats.clone()));
                ClientSnapshot {
                    history: Some(History::of(&c)),
                    stats,
                    client: c,
                }
            })
            .collect();
        store.publish(ServerSnapshot {
            server: "main".into(),
            up: true,
            clients: Arc::new(clients),
            data_time: Some(t),
            last_contact: Some(t),
            last_poll: Some(t),
            poll_duration: Some(Duration::from_millis(45)),
            polls: 3,
            contact_attempts: 1,
            ..ServerSnapshot::default()
        });
        let running = parse_clients(&data("running_c.json")).unwrap();
        let mut errors = crate::snapshot::ErrorCounts::default();
        errors.add("timeout");
        store.publish(ServerSnapshot {
            server: "busy".into(),
            up: true,
            clients: Arc::new(
                running
                    .clients
                    .into_iter()
                    .map(|client| ClientSnapshot {
                        client,
                        ..Default::default()
                    })
                    .collect(),
            ),
            data_time: Some(t),
            last_contact: Some(t),
            polls: 1,
            contact_attempts: 2,
            parse_errors: 1,
            errors,
            ..ServerSnapshot::default()
        });
        store
    }

    fn render(c: BurpCollector, openmetrics: bool) -> String {
        let accept = openmetrics.then_some("application/openmetrics-text; version=1.0.0");
        exposition::encode(&registry(c), accept).1
    }

    #[test]
    fn cached_parts_hold_the_same_lines_as_the_whole() {
        let st = store();
        for om in [false, true] {
            let whole = render(BurpCollector::new(Arc::clone(&st)), om);
            let cached = exposition::Exposition::cached(
                registry(BurpCollector::without_age(Arc::clone(&st))),
                registry(BurpCollector::age_only(Arc::clone(&st))),
                Box::new(|| 0),
            );
            let accept = om.then_some("application/openmetrics-text; version=1.0.0");
            let parts = cached.render(accept).1;
            // Ages are computed at encode time; compare them without their value.
            let lines = |t: &str| {
                let mut v: Vec<String> = t
                    .lines()
                    .map(|l| match l.split_once("} ") {
                        Some((k, _)) if l.starts_with("burp_snapshot_age") => k.to_string(),
                        _ => l.to_string(),
                    })
                    .collect();
                v.sort();
                v
            };
            assert_eq!(lines(&whole), lines(&parts));
            assert!(parts.contains("burp_snapshot_age_seconds{server=\"main\"} "));
            if om {
                assert!(parts.ends_with("# EOF\n") && parts.matches("# EOF").count() == 1);
            }
        }
    }

    #[test]
    fn original_metrics_with_server_label() {
        let text = render(BurpCollector::new(store()), false);
        for line in [
            "# TYPE burp_last_contact gauge",
            "burp_last_contact{server=\"main\"} 1795300300.0",
            "burp_last_contact{server=\"down\"} 0.0",
            "# TYPE burp_contact_attempts_total counter",
            "burp_contact_attempts_total{server=\"busy\"} 2",
            "burp_up{server=\"main\"} 1",
            "burp_up{server=\"down\"} 0",
            "burp_parse_errors_total{server=\"busy\"} 1",
            "burp_clients{server=\"main\"} 2",
            "burp_client_backup_num{server=\"main\",name=\"testclient\"} 1",
            "burp_client_backup_timestamp{server=\"main\",name=\"testclient\"} 1795300217",
            "burp_client_backup_log{server=\"main\",name=\"testclient\",log=\"backup_stats\"} 1",
            "burp_client_backup_log{server=\"main\",name=\"testclient\",log=\"restore\"} 0",
            "burp_client_backup_has_in_progress{server=\"main\",name=\"testclient\"} 0",
            "burp_client_backup_has_in_progress{server=\"busy\",name=\"testclient\"} 1",
            "burp_client_run_status{server=\"main\",name=\"monitor\",burp_client_run_status=\"idle\"} 1",
            "burp_client_run_status{server=\"main\",name=\"monitor\",burp_client_run_status=\"running\"} 0",
            "burp_client_run_status{server=\"busy\",name=\"testclient\",burp_client_run_status=\"running\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        // A client without backups has no backup number (as the original).
        assert!(!text.contains("burp_client_backup_num{server=\"main\",name=\"monitor\"}"));
        assert!(!text.contains("burp_clients{server=\"down\"}"));
    }

    #[test]
    fn new_metrics() {
        let text = render(BurpCollector::new(store()), false);
        for line in [
            "burp_client_backups{server=\"main\",name=\"testclient\"} 1",
            "burp_client_backups{server=\"main\",name=\"monitor\"} 0",
            "burp_client_oldest_backup_timestamp_seconds{server=\"main\",name=\"testclient\"} 1795300217",
            "burp_client_newest_backup_timestamp_seconds{server=\"main\",name=\"testclient\"} 1795300217",
            "burp_client_last_backup_bytes{server=\"main\",name=\"testclient\"} 308905",
            "burp_client_last_backup_received_bytes{server=\"main\",name=\"testclient\"} 245677",
            "burp_client_last_backup_files{server=\"main\",name=\"testclient\"} 3",
            "burp_client_last_backup_changed_files{server=\"main\",name=\"testclient\"} 3",
            "burp_client_last_backup_warnings{server=\"main\",name=\"testclient\"} 0",
            "burp_client_last_backup_duration_seconds{server=\"main\",name=\"testclient\"} 1",
            "burp_client_last_backup_end_timestamp_seconds{server=\"main\",name=\"testclient\"} 1795300218",
            "burp_client_child_phase{server=\"busy\",name=\"testclient\",pid=\"13962\",action=\"backup\",phase=\"backup\"} 1",
            "burp_client_child_backup_num{server=\"busy\",name=\"testclient\",pid=\"13962\",action=\"backup\"} 2",
            "burp_client_child_start_timestamp_seconds{server=\"busy\",name=\"testclient\",pid=\"13962\",action=\"backup\"} 1795300270",
            "burp_client_child_scanned_files{server=\"busy\",name=\"testclient\",pid=\"13962\",action=\"backup\"} 1504",
            "burp_client_child_files{server=\"busy\",name=\"testclient\",pid=\"13962\",action=\"backup\"} 1503",
            "burp_client_child_bytes{server=\"busy\",name=\"testclient\",pid=\"13962\",action=\"backup\"} 322798",
            "burp_client_child_estimated_bytes{server=\"busy\",name=\"testclient\",pid=\"13962\",action=\"backup\"} 4322798",
            "burp_polls_total{server=\"main\"} 3",
            "burp_poll_errors_total{server=\"busy\",kind=\"timeout\"} 1",
            "burp_poll_errors_total{server=\"busy\",kind=\"auth\"} 0",
            "burp_poll_duration_seconds{server=\"main\"} 0.045",
            "burp_exporter_build_info{version=\"0.1.0\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        assert!(text.contains("burp_snapshot_age_seconds{server=\"main\"} "));
        assert!(!text.contains("burp_snapshot_age_seconds{server=\"down\"}"));
    }

    #[test]
    fn probe_selects_servers_and_vanished_clients_disappear() {
        let st = store();
        let text = render(
            BurpCollector::for_servers(Arc::clone(&st), vec!["busy".into()]),
            false,
        );
        assert!(text.contains("burp_up{server=\"busy\"} 1"));
        assert!(!text.contains("server=\"main\""), "{text}");
        // The running backup ends and testclient leaves the list: its series go with it.
        let mut s = (*st.get("busy").unwrap()).clone();
        s.clients = Arc::new(Vec::new());
        st.publish(s);
        let text = render(BurpCollector::new(st), false);
        assert!(!text.contains("server=\"busy\",name"), "{text}");
        assert!(text.contains("burp_clients{server=\"busy\"} 0"));
    }

    #[test]
    fn openmetrics_and_text_are_well_formed() {
        let om = render(BurpCollector::new(store()), true);
        assert!(om.ends_with("# EOF\n"));
        assert!(om.contains("# UNIT burp_poll_duration_seconds seconds\n"));
        assert!(om.contains("# TYPE burp_exporter_build info\n"));
        let text = render(BurpCollector::new(store()), false);
        check_text_format(&text);
    }

    /// The rules `promtool check metrics` applies that a unit test can check without it:
    /// every sample belongs to the family declared just before, each family is declared once,
    /// counters end in `_total`, names and label names are valid, no duplicate series.
    fn check_text_format(text: &str) {
        use std::collections::HashSet;
        let valid = |s: &str| {
            !s.is_empty()
                && s.chars().enumerate().all(|(i, c)| {
                    c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
                })
        };
        let mut families = HashSet::new();
        let mut series = HashSet::new();
        let mut current = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, ty) = rest.split_once(' ').unwrap();
                assert!(valid(name), "{line}");
                assert!(families.insert(name.to_string()), "declared twice: {line}");
                if ty == "counter" {
                    assert!(name.ends_with("_total"), "{line}");
                } else {
                    assert!(!name.ends_with("_total"), "{line}");
                }
                current = name.to_string();
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let name_end = line.find(['{', ' ']).unwrap();
            assert_eq!(
                &line[..name_end],
                current,
                "sample outside its family: {line}"
            );
            assert!(
                series.insert(line.rsplit_once(' ').unwrap().0.to_string()),
                "duplicate {line}"
            );
            let value = line.rsplit_once(' ').unwrap().1;
            assert!(value.parse::<f64>().is_ok(), "{line}");
            if let Some(labels) = line[name_end..].strip_prefix('{') {
                let labels = labels.split_once("} ").unwrap().0;
                for pair in labels.split("\",") {
                    let key = pair.split_once('=').unwrap().0;
                    assert!(valid(key) && !key.starts_with("__"), "{line}");
                }
            }
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let st = Arc::new(Snapshots::new(["s"]));
        let c = parse_clients(br#"{"clients":[{"name":"we\"ird\\na\nme","run_status":"idle"}]}"#)
            .unwrap();
        st.publish(ServerSnapshot {
            server: "s".into(),
            up: true,
            clients: Arc::new(
                c.clients
                    .into_iter()
                    .map(|client| ClientSnapshot {
                        client,
                        ..Default::default()
                    })
                    .collect(),
            ),
            data_time: Some(SystemTime::now()),
            ..ServerSnapshot::default()
        });
        let text = render(BurpCollector::new(st), false);
        assert!(
            text.contains(
                r#"burp_client_backup_has_in_progress{server="s",name="we\"ird\\na\nme"} 0"#
            ),
            "{text}"
        );
        check_text_format(&text);
    }
}
