//! haproxysessionmon against a real HAProxy 2.6 (Debian `haproxy`) with sessions held open, so
//! `scur` is known: the log file, a GELF receiver (UDP with gzip and chunking, and TCP), a local
//! HTTP server in place of the PRTG probe, `/metrics` and a real Prometheus scrape all carry the
//! numbers HAProxy itself reports on its runtime socket.

mod common;

use common::{free_port, require, wait_for, GelfReceiver, Haproxy, HttpStub, Monitor};
use custos_testkit::prometheus::{check_exposition, Prometheus};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The log file's lines as columns; waits until one satisfies `f`.
fn wait_log_line(path: &Path, what: &str, f: impl Fn(&[&str]) -> bool) -> Vec<String> {
    wait_for(what, Duration::from_secs(30), || {
        let text = std::fs::read_to_string(path).ok()?;
        text.lines()
            .map(|l| l.split('\t').collect::<Vec<_>>())
            .find(|c| f(c))
            .map(|c| c.into_iter().map(str::to_string).collect())
    })
}

/// Column `name` of a log line, by the header.
fn col<'a>(line: &'a [String], name: &str) -> &'a str {
    let i = custos_haproxy::sink::logfile::HEADER
        .split('\t')
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("no column {name}"));
    &line[i]
}

fn prtg_channels(body: &str) -> Vec<(String, u64)> {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["prtg"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c["channel"].as_str().unwrap().to_string(),
                c["value"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn every_sink_carries_the_sessions_haproxy_counts() {
    let Some(hap) = Haproxy::start() else { return };
    assert_eq!(hap.hold_sessions(3), 3);
    let udp = GelfReceiver::udp();
    let tcp = GelfReceiver::tcp();
    let probe = HttpStub::fixed(200, "{\"status\":\"Ok\"}");
    let prom_port = free_port();
    let prom_addr = SocketAddr::from(([127, 0, 0, 1], prom_port));
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("sessions.log");
    let yaml = format!(
        "logging:\n  level: INFO\n\
         backends:\n\
         \x20 log:\n    type: logfile\n    path: {log}\n\
         \x20 graylog:\n    type: gelf\n    host: 127.0.0.1\n    port: {udp}\n    facility: custos-test\n    compress: true\n    chunk-size: 200\n\
         \x20 graylog_tcp:\n    type: gelf\n    host: 127.0.0.1\n    port: {tcp}\n    protocol: tcp\n\
         \x20 probe:\n    type: prtg\n    base-url: {probe}\n    token: \"tok-{{server}}\"\n\
         \x20 probe_get:\n    type: prtg\n    base-url: {probe}\n    key: \"get-{{server}}\"\n    method: GET\n\
         \x20 prom:\n    type: prometheus\n    listen: 127.0.0.1:{prom_port}\n\
         servers:\n\
         \x20 lb-http:\n    endpoint: \"{csv}\"\n    update-interval: 0.5\n    username: admin\n    password: s3cret\n\
         \x20   rows: [frontend, backend, server]\n    backends: [log, graylog, graylog_tcp, probe, probe_get, prom]\n\
         \x20 lb-sock:\n    endpoint: unix://{sock}\n    update-interval: 0.5\n    backends: [log, prom]\n",
        log = log.display(),
        udp = udp.port,
        tcp = tcp.port,
        probe = probe.url("/"),
        csv = hap.csv_url(),
        sock = hap.socket().display(),
    );
    let mut mon = Monitor::start(&yaml);

    // Log file: a header, then a line per row with scur as sessions.
    let line = wait_log_line(&log, "be_tcp at 3 sessions from lb-http", |c| {
        c.get(1) == Some(&"lb-http")
            && c.get(3) == Some(&"be_tcp")
            && c.get(9) == Some(&"backend")
            && c.get(4) == Some(&"3")
    });
    assert_eq!(
        col(&line, "endpoint"),
        hap.csv_url(),
        "endpoint without credentials"
    );
    assert_eq!(col(&line, "status"), "UP");
    assert_eq!(col(&line, "active_backends"), "1");
    wait_log_line(
        &log,
        "be_tcp at 3 sessions from lb-sock (runtime socket)",
        |c| c.get(1) == Some(&"lb-sock") && c.get(3) == Some(&"be_tcp") && c.get(4) == Some(&"3"),
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.starts_with(custos_haproxy::sink::logfile::HEADER),
        "{text}"
    );
    assert!(
        !text
            .lines()
            .any(|l| l.contains("lb-sock") && l.contains("\tfrontend\t")),
        "lb-sock forwards backends only (the default)"
    );
    assert!(!text.contains("s3cret"));

    // GELF over UDP, gzipped and chunked at 200 bytes.
    let m = udp.wait_sessions("lb-http", "be_tcp", 3);
    assert_eq!(m["version"], "1.1");
    assert_eq!(m["_facility"], "custos-test");
    assert_eq!(m["level"], 6);
    assert_eq!(
        m["short_message"],
        "3 concurrent requests measured for backend \"be_tcp\""
    );
    assert_eq!(m["_row_type"], "backend");
    assert!(*udp.chunks.lock().unwrap() > 0, "no message was chunked");
    let srv = wait_for("a GELF server row", Duration::from_secs(10), || {
        udp.messages()
            .into_iter()
            .find(|m| m["_backend"] == "be_tcp" && m["_svname"] == "hold1")
    });
    assert_eq!(srv["_sessions"], 3);
    assert_eq!(srv["_row_type"], "server");
    // GELF over TCP.
    tcp.wait_sessions("lb-http", "be_tcp", 3);

    // PRTG: one push per poll to the server's token, a channel per row.
    let req = probe.wait_request("a PRTG push with be_tcp at 3", |r| {
        r.method == "POST"
            && r.target == "/tok-lb-http"
            && prtg_channels(&r.body).contains(&("be_tcp".to_string(), 3))
    });
    let ch = prtg_channels(&req.body);
    assert!(ch.contains(&("fe_tcp (frontend)".to_string(), 3)), "{ch:?}");
    assert!(ch.contains(&("be_tcp/hold1".to_string(), 3)), "{ch:?}");
    assert!(
        req.headers
            .iter()
            .any(|(k, v)| k == "content-type" && v == "application/json"),
        "{req:?}"
    );

    // PRTG by GET: the same document in `?content=`, token from the original's `key`.
    let get = probe.wait_request("a PRTG GET push", |r| {
        r.method == "GET" && r.target.starts_with("/get-lb-http?content=")
    });
    let content = common::urldecode(get.target.split_once("?content=").unwrap().1);
    assert!(
        prtg_channels(&content).contains(&("be_tcp".to_string(), 3)),
        "{content}"
    );

    // More sessions: every sink follows.
    assert_eq!(hap.hold_sessions(2), 5);
    udp.wait_sessions("lb-http", "be_tcp", 5);
    wait_log_line(&log, "be_tcp at 5 sessions from lb-sock", |c| {
        c.get(1) == Some(&"lb-sock") && c.get(3) == Some(&"be_tcp") && c.get(4) == Some(&"5")
    });

    // /metrics agrees with HAProxy's own view of its rows.
    let truth_down = hap.show_stat();
    assert!(truth_down.contains("be_app,app3_down,"), "{truth_down}");
    mon.wait_metrics(prom_addr, "be_tcp at 5 on both servers", |m| {
        let v = |h: &str| {
            m.value(
                "haproxy_backend_current_sessions",
                &[("haproxy", h), ("proxy", "be_tcp")],
            )
        };
        (v("lb-http") == Some(5.0) && v("lb-sock") == Some(5.0)).then_some(())
    });
    let m = mon.wait_metrics(prom_addr, "server rows", |m| {
        m.value(
            "haproxy_server_current_sessions",
            &[
                ("haproxy", "lb-http"),
                ("proxy", "be_tcp"),
                ("server", "hold1"),
            ],
        )
        .map(|_| m.clone())
    });
    assert_eq!(
        m.value("haproxysessionmon_up", &[("server", "lb-http")]),
        Some(1.0)
    );
    assert_eq!(
        m.value("haproxysessionmon_up", &[("server", "lb-sock")]),
        Some(1.0)
    );
    let down = m.find(
        "haproxy_server_status",
        &[
            ("haproxy", "lb-http"),
            ("proxy", "be_app"),
            ("server", "app3_down"),
        ],
    );
    assert_eq!(down.len(), 1);
    assert!(down[0].labels["state"].starts_with("DOWN"), "{down:?}");
    let maint = m.find("haproxy_server_status", &[("server", "app4_maint")]);
    assert_eq!(maint[0].labels["state"], "MAINT");
    assert_eq!(
        m.value(
            "haproxysessionmon_sink_errors_total",
            &[("backend", "graylog"), ("type", "gelf")]
        ),
        Some(0.0)
    );

    // logrotate: move the file, SIGHUP, and a new file with a header appears.
    std::fs::rename(&log, dir.path().join("sessions.log.1")).unwrap();
    let st = std::process::Command::new("kill")
        .args(["-HUP", &mon.pid().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    wait_log_line(&log, "a line in the reopened file", |c| {
        c.get(1) == Some(&"lb-sock")
    });
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.starts_with(custos_haproxy::sink::logfile::HEADER),
        "{text}"
    );
    mon.assert_alive();

    // A real Prometheus scrapes it, and the strict parsers accept both formats.
    let (Some(prom_bin), Some(promtool)) = (
        require("prometheus", "prometheus"),
        require("promtool", "prometheus"),
    ) else {
        return;
    };
    check_exposition(&promtool, prom_addr, "/metrics", &[]);
    let pdir = tempfile::tempdir().unwrap();
    let prom = Prometheus::start(&prom_bin, "haproxysessionmon", prom_addr, pdir.path());
    prom.wait_target_up(Duration::from_secs(60));
    let v = wait_for("be_tcp in the TSDB", Duration::from_secs(30), || {
        let v = prom.series_with(
            "haproxy_backend_current_sessions",
            &[("haproxy", "lb-sock"), ("proxy", "be_tcp")],
        );
        (!v.is_empty()).then_some(v)
    });
    assert_eq!(v, vec![5.0]);
    assert_eq!(
        prom.series_with("haproxysessionmon_up", &[("server", "lb-http")]),
        vec![1.0]
    );
    let type_of = prom.metadata_types("haproxysessionmon_up", Duration::from_secs(30));
    assert_eq!(type_of("haproxysessionmon_up"), "gauge");
    assert_eq!(type_of("haproxysessionmon_fetch_errors_total"), "counter");
    assert_eq!(type_of("haproxy_backend_current_sessions"), "gauge");
    assert!(!mon.log().contains("panicked"), "{}", mon.log());
}

/// The example config of the original's README, with only hosts, ports and file paths replaced
/// by local ones, loads (from `HAPROXYSM_CONFIG_FILE`) and feeds each backend what it names.
#[test]
fn original_readme_example_runs() {
    let Some(primary) = Haproxy::start_with(Some(("admin", "admin"))) else {
        return;
    };
    let Some(secondary) = Haproxy::start_with(None) else {
        return;
    };
    primary.hold_sessions(3);
    secondary.hold_sessions(2);
    let (g1, g2) = (GelfReceiver::udp(), GelfReceiver::udp());
    let probe = HttpStub::fixed(200, "{\"status\":\"Ok\"}");
    let dir = tempfile::tempdir().unwrap();
    let (sessions, applog) = (
        dir.path().join("session-count.log"),
        dir.path().join("haproxysessionmon.log"),
    );
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/original-readme-example.yml"),
    )
    .unwrap();
    let mut yaml = example;
    for (from, to) in [
        (
            "lb-primary:8080",
            format!("127.0.0.1:{}", primary.stats_port),
        ),
        (
            "lb-secondary:8080",
            format!("127.0.0.1:{}", secondary.stats_port),
        ),
        (
            "host: logbroker1.local\n        port: 12201",
            format!("host: 127.0.0.1\n        port: {}", g1.port),
        ),
        (
            "host: logbroker2.local\n        port: 12201",
            format!("host: 127.0.0.1\n        port: {}", g2.port),
        ),
        ("https://prtg.local/probe/", probe.url("/probe/")),
        ("/var/log/session-count.log", sessions.display().to_string()),
        (
            "/var/log/haproxysessionmon.log",
            applog.display().to_string(),
        ),
    ] {
        assert!(yaml.contains(from), "the example has no {from:?}");
        yaml = yaml.replace(from, &to);
    }
    let mon = Monitor::start_with(&yaml, false);

    let m = g1.wait_sessions("lb-primary", "be_tcp", 3);
    assert_eq!(m["_facility"], "haproxysm");
    let m = g2.wait_sessions("lb-secondary", "be_tcp", 2);
    assert_eq!(m["_facility"], "haproxysm-secondary");
    probe.wait_request("a PRTG push for lb-primary", |r| {
        r.target == "/probe/lb-primary" && prtg_channels(&r.body).contains(&("be_tcp".into(), 3))
    });
    wait_log_line(&sessions, "lb-secondary's be_tcp in the log file", |c| {
        c.get(1) == Some(&"lb-secondary") && c.get(3) == Some(&"be_tcp") && c.get(4) == Some(&"2")
    });
    // Backends only, as the original: no frontend rows anywhere.
    assert!(g1.messages().iter().all(|m| m["_row_type"] == "backend"));
    assert!(!std::fs::read_to_string(&sessions)
        .unwrap()
        .contains("\tfrontend\t"));
    assert!(
        g1.messages().iter().all(|m| m["host"] == "lb-primary"),
        "graylog1 gets lb-primary only"
    );
    // The monitor's own log goes to logging.file too.
    wait_for("the application log file", Duration::from_secs(10), || {
        std::fs::read_to_string(&applog)
            .ok()
            .filter(|t| t.contains("polling HAProxy stats"))
    });
    assert!(!mon.log().contains("panicked"));
}

/// A column set of an old HAProxy (1.4: no `type`, no `rate`... after `bck`).
const OLD_CSV: &str =
    "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,\
eresp,wretr,wredis,status,weight,act,bck,\nweb,FRONTEND,,,9,9,2000,100,0,0,0,0,0,,,,,OPEN,,,,\n\
web,BACKEND,0,0,7,8,,90,0,0,0,0,,0,0,0,0,UP,2,2,0,\n";

/// Faults: dead, unauthorised, slow, garbage, truncated, short-header and column-less stats
/// endpoints next to a good one; a GELF target nobody listens on and a PRTG probe answering
/// 500. The good server is still polled and forwarded, and the counters say what failed.
#[test]
fn faults_are_counted_and_the_rest_goes_on() {
    let Some(hap) = Haproxy::start() else { return };
    hap.hold_sessions(2);
    let full = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/stats-2.6.csv"),
    )
    .unwrap();
    let cut = full.find("be_app,app2").unwrap() + 20;
    let truncated = HttpStub::fixed(200, &full[..cut]);
    let garbage = HttpStub::fixed(200, "<html><body>Service Unavailable</body></html>\n");
    let nocol = HttpStub::fixed(
        200,
        "# pxname,svname,qcur,status,type,\nbe_x,BACKEND,4,UP,1,\n",
    );
    let old = HttpStub::fixed(200, OLD_CSV);
    let slow = HttpStub::start(Arc::new(|_| {
        (200, OLD_CSV.to_string(), Duration::from_secs(3))
    }));
    let probe = HttpStub::fixed(500, "internal error");
    let prom_port = free_port();
    let prom_addr = SocketAddr::from(([127, 0, 0, 1], prom_port));
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("sessions.log");
    // Only `slow` has a timeout shorter than its stub's 3 s delay: the others get one a
    // loaded machine cannot reach (a 0.4 s timeout for all once timed out the good server).
    let server = |id: &str, endpoint: &str, extra: &str| {
        let timeout = if id == "slow" { "0.4" } else { "5" };
        format!(
            "  {id}:\n    endpoint: \"{endpoint}\"\n    update-interval: 0.5\n    timeout: {timeout}\n{extra}    backends: [log, graylog, probe, prom]\n"
        )
    };
    let yaml = format!(
        "backends:\n\
         \x20 log:\n    type: logfile\n    filename: {log}\n\
         \x20 graylog:\n    type: gelf\n    host: 127.0.0.1\n    port: {closed}\n    facility: f\n\
         \x20 probe:\n    type: prtg\n    base-url: {probe}\n\
         \x20 prom:\n    type: prometheus\n    listen: 127.0.0.1:{prom_port}\n\
         servers:\n{good}{down}{unauth}{slow}{garbage}{truncated}{nocol}{old}",
        log = log.display(),
        closed = free_port(),
        probe = probe.url("/"),
        good = server(
            "good",
            &hap.csv_url(),
            "    username: admin\n    password: s3cret\n"
        ),
        down = server(
            "down",
            &format!("http://127.0.0.1:{}/haproxy?stats;csv", free_port()),
            ""
        ),
        unauth = server(
            "unauth",
            &hap.csv_url(),
            "    username: admin\n    password: n0tTh3Pass\n"
        ),
        slow = server("slow", &slow.url("/;csv"), ""),
        garbage = server("garbage", &garbage.url("/;csv"), ""),
        truncated = server("truncated", &truncated.url("/;csv"), ""),
        nocol = server("nocol", &nocol.url("/;csv"), ""),
        old = server("old", &old.url("/;csv"), ""),
    );
    let mut mon = Monitor::start(&yaml);
    let err = |m: &common::Metrics, server: &str, kind: &str| {
        m.value(
            "haproxysessionmon_fetch_errors_total",
            &[("server", server), ("kind", kind)],
        )
        .unwrap_or(0.0)
    };
    let m = mon.wait_metrics(prom_addr, "every fault counted", |m| {
        let up = |s: &str| m.value("haproxysessionmon_up", &[("server", s)]);
        let sink_err = |b: &str| {
            m.value("haproxysessionmon_sink_errors_total", &[("backend", b)])
                .unwrap_or(0.0)
        };
        (err(m, "down", "connect") >= 1.0
            && err(m, "unauth", "auth") >= 1.0
            && err(m, "slow", "timeout") >= 1.0
            && err(m, "garbage", "parse") >= 1.0
            && up("good") == Some(1.0)
            && up("truncated") == Some(1.0)
            && up("nocol") == Some(1.0)
            && up("old") == Some(1.0)
            && sink_err("graylog") >= 1.0
            && sink_err("probe") >= 1.0)
            .then(|| m.clone())
    });
    for s in ["down", "unauth", "slow", "garbage"] {
        assert_eq!(
            m.value("haproxysessionmon_up", &[("server", s)]),
            Some(0.0),
            "{s}"
        );
    }
    assert_eq!(err(&m, "good", "connect") + err(&m, "good", "timeout"), 0.0);
    // The good server's numbers are right despite everything else.
    assert_eq!(
        m.value(
            "haproxy_backend_current_sessions",
            &[("haproxy", "good"), ("proxy", "be_tcp")]
        ),
        Some(2.0)
    );
    // A truncated page: the broken last row is skipped and counted, the rows before it used.
    assert!(
        m.value(
            "haproxysessionmon_malformed_rows_total",
            &[("server", "truncated")]
        )
        .unwrap()
            >= 1.0
    );
    assert!(m
        .value(
            "haproxy_backend_current_sessions",
            &[("haproxy", "truncated"), ("proxy", "stats")]
        )
        .is_some());
    // No scur column: sessions unknown (no sample, not 0), the other columns still read.
    assert!(m
        .find("haproxy_backend_current_sessions", &[("haproxy", "nocol")])
        .is_empty());
    assert_eq!(
        m.value(
            "haproxy_backend_current_queue",
            &[("haproxy", "nocol"), ("proxy", "be_x")]
        ),
        Some(4.0)
    );
    // The old, shorter header: read by name, rows typed by svname.
    assert_eq!(
        m.value(
            "haproxy_backend_current_sessions",
            &[("haproxy", "old"), ("proxy", "web")]
        ),
        Some(7.0)
    );
    // The log file still gets the good server's rows; the failing sinks were tried.
    wait_log_line(&log, "good's be_tcp in the log file", |c| {
        c.get(1) == Some(&"good") && c.get(3) == Some(&"be_tcp") && c.get(4) == Some(&"2")
    });
    assert!(
        probe.requests().len() >= 2,
        "PRTG is retried at the next poll"
    );
    let log_text = mon.log();
    assert!(
        !log_text.contains("s3cret") && !log_text.contains("n0tTh3Pass"),
        "{log_text}"
    );
    assert!(log_text.contains("HTTP 500"), "{log_text}");
    mon.assert_alive();
}

/// Config errors name the key path and value and exit 2; `--check` accepts the example.
#[test]
fn config_errors_and_check() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yml");
    std::fs::write(
        &bad,
        "backends:\n  a:\n    type: logfile\n    path: /tmp/x\nservers:\n  lb:\n    endpoint: http://127.0.0.1:1/;csv\n    password: hunter2\n    username: u\n    backends: [a, b]\n",
    )
    .unwrap();
    let out = common::run_with_deadline(
        std::process::Command::new(common::BIN).arg("-c").arg(&bad),
        Duration::from_secs(20),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("servers.lb.backends[1]") && err.contains("\"b\""),
        "{err}"
    );
    assert!(!err.contains("hunter2"));
    let example =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/original-readme-example.yml");
    let out = common::run_with_deadline(
        std::process::Command::new(common::BIN)
            .arg("--check")
            .env("HAPROXYSM_CONFIG_FILE", &example),
        Duration::from_secs(20),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A key nothing reads: a warning and the program runs; an error with --strict.
    let typo = dir.path().join("typo.yml");
    let text = std::fs::read_to_string(&example).unwrap().replace(
        "update-interval: 60",
        "update-interval: 60\n        updte-interval: 5",
    );
    std::fs::write(&typo, text).unwrap();
    let out = common::run_with_deadline(
        std::process::Command::new(common::BIN)
            .args(["--check", "--strict", "-c"])
            .arg(&typo),
        Duration::from_secs(20),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("servers.lb-secondary.updte-interval") && err.contains("update-interval"),
        "{err}"
    );
    let out = common::run_with_deadline(
        std::process::Command::new(common::BIN)
            .args(["--check", "-c"])
            .arg(&typo),
        Duration::from_secs(20),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("updte-interval"), "{err}");
    let out = common::run_with_deadline(
        std::process::Command::new(common::BIN).arg("-v"),
        Duration::from_secs(20),
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

/// An https stats page: trusted through `ca-file`, or with `insecure`; without either the
/// certificate (from a private CA) is refused and counted as a connect error.
#[test]
fn https_stats_page_with_ca_file_or_insecure() {
    let Some(hap) = Haproxy::start_tls() else {
        return;
    };
    hap.hold_sessions(1);
    let prom_port = free_port();
    let prom_addr = SocketAddr::from(([127, 0, 0, 1], prom_port));
    let server = |id: &str, extra: &str| {
        format!(
            "  {id}:\n    endpoint: \"{}\"\n    update-interval: 0.5\n    username: admin\n    password: s3cret\n{extra}    backends: [prom]\n",
            hap.tls_url()
        )
    };
    let yaml = format!(
        "backends:\n  prom:\n    type: prometheus\n    listen: 127.0.0.1:{prom_port}\nservers:\n{}{}{}",
        server("with-ca", &format!("    ca-file: {}\n", hap.tls_ca().display())),
        server("insecure", "    insecure: true\n"),
        server("untrusted", ""),
    );
    let mut mon = Monitor::start(&yaml);
    let m = mon.wait_metrics(
        prom_addr,
        "both trusted servers up, the other refused",
        |m| {
            let sessions = |h: &str| {
                m.value(
                    "haproxy_backend_current_sessions",
                    &[("haproxy", h), ("proxy", "be_tcp")],
                )
            };
            (sessions("with-ca") == Some(1.0)
                && sessions("insecure") == Some(1.0)
                && m.value(
                    "haproxysessionmon_fetch_errors_total",
                    &[("server", "untrusted"), ("kind", "connect")],
                )
                .is_some_and(|n| n >= 1.0))
            .then(|| m.clone())
        },
    );
    assert_eq!(
        m.value("haproxysessionmon_up", &[("server", "untrusted")]),
        Some(0.0)
    );
    let log = mon.log();
    assert!(log.to_lowercase().contains("certificate"), "{log}");
}

/// `show stat` parsed with every column the `prometheus` backend exports.
fn full_rows(text: &str) -> Vec<custos_haproxy::sample::Sample> {
    let mut r = custos_haproxy::csv::Reader::new(usize::MAX).with_extra_columns();
    r.feed(text.as_bytes());
    r.finish().expect("show stat is CSV").samples
}

/// `show info` as HAProxy answers it on its runtime socket (the reference).
fn show_info(hap: &Haproxy) -> custos_haproxy::info::Info {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(hap.socket()).expect("admin.sock");
    s.write_all(b"show info\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    custos_haproxy::info::parse(&text)
}

/// Sends one HTTP/1.0 request through fe_web and reads the reply to its end.
fn http_request(port: u16, path: &str) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect fe_web");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).unwrap();
    assert!(reply.starts_with(b"HTTP/1.0 200") || reply.starts_with(b"HTTP/1.1 200"));
}

/// Every column of the exported table becomes its family with the value HAProxy reports: the
/// runtime socket is read before and after a poll of the monitor, and every field equal in both
/// (so the poll in between saw it) is the sample; a field empty in both has no sample, never 0.
/// The session gauges keep their values, and promtool and the OpenMetrics parser accept it.
#[test]
fn prometheus_exports_every_column_as_haproxy_reports_it() {
    use custos_haproxy::columns::{Kind, COLUMNS};
    use custos_haproxy::info::FIELDS;
    let Some(hap) = Haproxy::start() else { return };
    assert_eq!(hap.hold_sessions(2), 2);
    for path in ["/", "/api/x", "/"] {
        http_request(hap.web_port, path);
    }
    let prom_port = free_port();
    let prom_addr = SocketAddr::from(([127, 0, 0, 1], prom_port));
    let yaml = format!(
        "backends:\n  prom:\n    type: prometheus\n    listen: 127.0.0.1:{prom_port}\n\
         servers:\n  lb:\n    endpoint: unix://{sock}\n    update-interval: 0.2\n\
         \x20   rows: [frontend, backend, server, listener]\n    backends: [prom]\n",
        sock = hap.socket().display(),
    );
    let mut mon = Monitor::start(&yaml);
    let fetches = |m: &custos_testkit::Metrics| {
        m.value("haproxysessionmon_fetches_total", &[("server", "lb")])
    };
    let n0 = mon.wait_metrics(prom_addr, "a first poll", fetches);
    let before = full_rows(&hap.show_stat());
    let info_before = show_info(&hap);
    mon.wait_metrics(prom_addr, "two more polls", |m| {
        fetches(m).filter(|n| *n >= n0 + 2.0)
    });
    let m = mon.wait_metrics(prom_addr, "the exposition", |m| Some(m.clone()));
    let after = full_rows(&hap.show_stat());
    let info_after = show_info(&hap);

    // `show info`: each field equal before and after is the `haproxy_process_*` sample.
    let mut same = 0;
    for (k, f) in FIELDS.iter().enumerate() {
        if info_before[k] != info_after[k] {
            continue;
        }
        let (name, want) = match f.kind {
            Kind::Counter => (format!("haproxy_process_{}_total", f.name), info_after[k]),
            Kind::Mebibytes => (
                format!("haproxy_process_{}", f.name),
                info_after[k].map(|v| v << 20),
            ),
            _ => (format!("haproxy_process_{}", f.name), info_after[k]),
        };
        let got = m.value(&name, &[("haproxy", "lb")]);
        assert_eq!(
            got,
            want.map(|v| v as f64),
            "{name} ({}) {}",
            f.csv,
            mon.log()
        );
        same += 1;
    }
    assert!(same > 20, "{same} process fields compared");
    assert!(
        m.value("haproxy_process_max_connections", &[("haproxy", "lb")])
            .unwrap()
            > 0.0
    );
    assert!(
        m.value("haproxy_process_connections_total", &[("haproxy", "lb")])
            .unwrap()
            > 0.0
    );

    let (mut compared, mut absent) = (0, 0);
    for row in &after {
        let Some(old) = before
            .iter()
            .find(|b| b.proxy == row.proxy && b.svname == row.svname)
        else {
            continue;
        };
        let ty = row.row_type.as_str();
        let mut labels = vec![("haproxy", "lb"), ("proxy", row.proxy.as_str())];
        if ty == "server" || ty == "listener" {
            labels.push(("server", row.svname.as_str()));
        }
        let (x0, x1) = (old.counts.extra.as_deref(), row.counts.extra.as_deref());
        let (x0, x1) = (x0.expect("extra read"), x1.expect("extra read"));
        for (k, col) in COLUMNS.iter().enumerate() {
            // The duration of a check that runs every second varies between 0 and 1 ms.
            if x0[k] != x1[k] || col.csv == "check_duration" {
                continue;
            }
            let mut l = labels.clone();
            let (name, want) = match col.kind {
                Kind::Counter => (
                    format!("haproxy_{ty}_{}_total", col.name),
                    x1[k].map(|v| v as f64),
                ),
                Kind::Gauge => (
                    format!("haproxy_{ty}_{}", col.name),
                    x1[k].map(|v| v as f64),
                ),
                Kind::Millis => (
                    format!("haproxy_{ty}_{}", col.name),
                    x1[k].map(|v| v as f64 / 1000.0),
                ),
                Kind::Mebibytes => (
                    format!("haproxy_{ty}_{}", col.name),
                    x1[k].map(|v| (v << 20) as f64),
                ),
                Kind::Response(code) => {
                    l.push(("code", code));
                    (
                        format!("haproxy_{ty}_{}_total", col.name),
                        x1[k].map(|v| v as f64),
                    )
                }
            };
            let got: Vec<f64> = m.find(&name, &l).iter().map(|s| s.value).collect();
            match want {
                Some(v) => {
                    assert_eq!(got, [v], "{name} {l:?} ({})", col.csv);
                    compared += 1;
                }
                None => {
                    assert!(
                        got.is_empty(),
                        "{name} {l:?}: empty field exported as {got:?}"
                    );
                    absent += 1;
                }
            }
        }
    }
    assert!(
        compared > 200 && absent > 200,
        "{compared} compared, {absent} absent"
    );
    let v = |name: &str, l: &[(&str, &str)]| m.value(name, l);
    assert_eq!(
        v(
            "haproxy_backend_http_responses_total",
            &[("proxy", "be_app"), ("code", "2xx")]
        ),
        Some(2.0)
    );
    assert!(v("haproxy_frontend_bytes_in_total", &[("proxy", "fe_web")]).unwrap() > 0.0);
    assert!(v(
        "haproxy_server_check_failures_total",
        &[("server", "app3_down")]
    )
    .is_some());
    assert!(
        m.find("haproxy_frontend_max_queue", &[]).is_empty(),
        "frontends have no queue"
    );
    assert_eq!(m.types["haproxy_backend_bytes_out_total"], "counter");
    assert_eq!(m.types["haproxy_server_downtime_seconds_total"], "counter");
    assert_eq!(
        m.types["haproxy_backend_http_total_time_average_seconds"],
        "gauge"
    );
    // The session gauges as before.
    assert_eq!(
        v("haproxy_backend_current_sessions", &[("proxy", "be_tcp")]),
        Some(2.0)
    );
    assert_eq!(
        v(
            "haproxy_server_current_sessions",
            &[("proxy", "be_tcp"), ("server", "hold1")]
        ),
        Some(2.0)
    );
    if let Some(promtool) = require("promtool", "prometheus") {
        check_exposition(&promtool, prom_addr, "/metrics", &[]);
    }
    mon.assert_alive();
}
