//! A real Prometheus (Debian `prometheus` 2.42) scrapes a real `burp_exporter` watching a real
//! burp server, and the exposition passes the strict format checkers: `promtool check metrics`
//! for the text format 0.0.4 and the Python `prometheus_client` OpenMetrics parser.

mod common;

use common::{http_get, require, urlencode, BurpServer, Exporter};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A Prometheus server on a free loopback port, scraping one target every second.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(binary: &Path, target: SocketAddr) -> Prometheus {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: burp\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .expect("write prometheus.yml");
        let port = common::free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn prometheus");
        let mut p = Prometheus {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
        };
        common::wait_for("prometheus /-/ready", Duration::from_secs(60), || {
            if let Ok(Some(s)) = p.child.try_wait() {
                panic!("prometheus exited ({s}):\n{}", p.log());
            }
            http_get(p.addr, "/-/ready", None)
                .ok()
                .filter(|r| r.status == 200)
        });
        p
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// GET an API path; returns `data` of a `"status":"success"` answer.
    fn api(&self, path: &str) -> Value {
        let r = http_get(self.addr, path, None).unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(r.status, 200, "GET {path}: {}", r.body);
        let v: Value =
            serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{path}: {e}: {}", r.body));
        assert_eq!(v["status"], "success", "{path}: {}", r.body);
        v["data"].clone()
    }

    /// Instant query; the result vector.
    fn query(&self, promql: &str) -> Vec<Value> {
        let data = self.api(&format!("/api/v1/query?query={}", urlencode(promql)));
        data["result"].as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sample_value(series: &Value) -> f64 {
    series["value"][1]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no value in {series}"))
}

/// The series of `promql` whose labels contain `labels`, each with its value.
fn series_with(prom: &Prometheus, promql: &str, labels: &[(&str, &str)]) -> Vec<f64> {
    prom.query(promql)
        .iter()
        .filter(|s| labels.iter().all(|(k, v)| s["metric"][*k] == *v))
        .map(sample_value)
        .collect()
}

#[test]
fn prometheus_scrapes_the_exporter() {
    let (Some(_), Some(prom_bin)) = (require("burp", "burp"), require("prometheus", "prometheus"))
    else {
        return;
    };
    let server = BurpServer::shared("prom");
    let truth = server.status_json("testclient");
    let backup_num = current_backup(&truth, "testclient");

    let mut exporter = Exporter::start(&[server.client_entry("srv")]);
    exporter.wait_metrics("burp_up 1", Duration::from_secs(60), |m| {
        (m.value("burp_up", &[("server", "srv")]) == Some(1.0)).then_some(())
    });
    let prom = Prometheus::start(&prom_bin, exporter.addr);

    // The target is healthy and was scraped without error.
    let target = common::wait_for(
        "the target to be scraped with health up",
        Duration::from_secs(60),
        || {
            let data = prom.api("/api/v1/targets");
            let t = data["activeTargets"].as_array()?.first()?.clone();
            (t["health"] == "up").then_some(t)
        },
    );
    assert_eq!(
        target["lastError"], "",
        "Prometheus reports a scrape error: {target}"
    );

    // The values Prometheus stored are those the server reports.
    let up = common::wait_for("burp_up in the TSDB", Duration::from_secs(30), || {
        let v = series_with(&prom, "burp_up", &[("server", "srv")]);
        (!v.is_empty()).then_some(v)
    });
    assert_eq!(up, vec![1.0], "burp_up{{server=\"srv\"}}");
    assert_eq!(
        series_with(
            &prom,
            "burp_client_backup_num",
            &[("server", "srv"), ("name", "testclient")]
        ),
        vec![backup_num as f64],
        "burp_client_backup_num for testclient"
    );
    let clients = series_with(&prom, "burp_clients", &[("server", "srv")]);
    assert_eq!(clients, vec![2.0], "burp_clients (testclient + monitor)");
    let running = series_with(
        &prom,
        "burp_client_run_status",
        &[("server", "srv"), ("name", "testclient")],
    );
    assert!(
        running.contains(&1.0),
        "no run_status series is 1 for testclient: {running:?}"
    );

    // Metadata: the types Prometheus learnt from the exposition.
    let meta = common::wait_for("metadata", Duration::from_secs(30), || {
        let m = prom.api("/api/v1/metadata");
        m.get("burp_up").is_some().then_some(m)
    });
    let type_of = |family: &str| -> String {
        // OpenMetrics names counter families without `_total`; text 0.0.4 with it.
        let alt = family.trim_end_matches("_total");
        meta.get(family)
            .or_else(|| meta.get(alt))
            .and_then(|v| v[0]["type"].as_str())
            .unwrap_or_else(|| panic!("no metadata for {family}; have: {meta}"))
            .to_string()
    };
    for (family, want) in [
        ("burp_up", "gauge"),
        ("burp_clients", "gauge"),
        ("burp_last_contact", "gauge"),
        ("burp_client_backup_num", "gauge"),
        ("burp_client_backup_timestamp", "gauge"),
        ("burp_client_run_status", "gauge"),
        ("burp_client_backup_has_in_progress", "gauge"),
        ("burp_contact_attempts_total", "counter"),
        ("burp_parse_errors_total", "counter"),
    ] {
        assert_eq!(type_of(family), want, "metadata type of {family}");
    }
    let log = exporter.log();
    assert!(!log.contains("panicked"), "exporter panicked:\n{log}");
}

#[test]
fn exposition_passes_promtool_and_the_openmetrics_parser() {
    let (Some(_), Some(promtool)) = (require("burp", "burp"), require("promtool", "prometheus"))
    else {
        return;
    };
    let server = BurpServer::shared("prom");
    let mut exporter = Exporter::start(&[server.client_entry("srv")]);
    exporter.wait_metrics("a first poll", Duration::from_secs(60), |m| {
        m.value(
            "burp_client_backup_num",
            &[("server", "srv"), ("name", "testclient")],
        )
    });

    // Text format 0.0.4: promtool exits 1 on a parse error, 3 on lint problems.
    let text = http_get(exporter.addr, "/metrics", Some("text/plain; version=0.0.4"))
        .expect("GET /metrics (text)");
    assert!(
        text.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain")),
        "content-type for Accept text/plain: {:?}",
        text.header("content-type")
    );
    let out = pipe_to(
        Command::new(&promtool).args(["check", "metrics"]),
        &text.body,
    );
    let problems =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => {}
        Some(3) => {
            // Lint findings are style advice, not format errors. None is expected today; a new
            // one must be reviewed and either fixed or listed here with the reason.
            let allowed: [&str; 0] = [];
            for line in problems.lines().filter(|l| !l.trim().is_empty()) {
                assert!(
                    allowed.iter().any(|a| line.contains(a)),
                    "promtool lint finding: {line}\n(all: {problems})"
                );
            }
        }
        _ => panic!(
            "promtool check metrics failed ({}):\n{problems}\n--- exposition:\n{}",
            out.status, text.body
        ),
    }

    // OpenMetrics: what Prometheus asks for; the Python reference parser is strict.
    let om = http_get(
        exporter.addr,
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
    )
    .expect("GET /metrics (OpenMetrics)");
    assert!(
        om.header("content-type")
            .is_some_and(|c| c.starts_with("application/openmetrics-text")),
        "content-type for Accept OpenMetrics: {:?}",
        om.header("content-type")
    );
    assert!(
        om.body.ends_with("# EOF\n"),
        "OpenMetrics must end with # EOF"
    );
    // Debian's python3-prometheus-client is for the system python; a python3 earlier on PATH
    // (pyenv, venv) may lack it.
    let python = [
        Some(PathBuf::from("/usr/bin/python3")),
        common::find_binary("python3"),
    ]
    .into_iter()
    .flatten()
    .find(|p: &PathBuf| {
        Command::new(p)
            .args(["-c", "import prometheus_client.openmetrics.parser"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    let Some(python) = python else {
        // Same rule as for services: CI must have it.
        common::missing(
            "python3 module prometheus_client.openmetrics",
            "python3-prometheus-client",
        );
        return;
    };
    let out = pipe_to(
        Command::new(python).args([
            "-c",
            "import sys\n\
             from prometheus_client.openmetrics.parser import text_string_to_metric_families\n\
             fams = list(text_string_to_metric_families(sys.stdin.read()))\n\
             print(len(fams), 'families')",
        ]),
        &om.body,
    );
    assert!(
        out.status.success(),
        "OpenMetrics parser rejected the exposition: {}\n--- exposition:\n{}",
        String::from_utf8_lossy(&out.stderr),
        om.body
    );
    eprintln!(
        "OpenMetrics parser: {}",
        String::from_utf8_lossy(&out.stdout).trim()
    );
}

fn current_backup(truth: &Value, client: &str) -> u64 {
    truth["clients"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == client)
        .and_then(|c| {
            c["backups"]
                .as_array()?
                .iter()
                .find(|b| {
                    b["flags"]
                        .as_array()
                        .is_some_and(|f| f.iter().any(|x| x == "current"))
                })
                .and_then(|b| b["number"].as_u64())
        })
        .unwrap_or_else(|| panic!("server reports no current backup of {client}: {truth}"))
}

fn pipe_to(cmd: &mut Command, input: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_string();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    let out = child.wait_with_output().expect("wait");
    let _ = writer.join();
    out
}
