//! A real Prometheus scraping an exporter under test, and the strict format checkers.
//!
//! What a real scraper accepts is the test that matters: Prometheus (Debian `prometheus`)
//! scrapes the target every second and its API tells what it stored; `promtool check metrics`
//! checks text 0.0.4 and the Python `prometheus_client` parser checks OpenMetrics.

use super::http::http_get;
use super::process::{find_binary, free_port, missing, pipe_to, urlencode, wait_for};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A Prometheus server on a free loopback port, scraping one target every second; killed when
/// dropped.
pub struct Prometheus {
    child: Child,
    pub addr: SocketAddr,
    dir: PathBuf,
}

impl Prometheus {
    /// Starts `binary` scraping `target` (job `job`) and waits until it is ready. `dir` holds
    /// its config, TSDB and log (a test's temporary directory).
    pub fn start(binary: &Path, job: &str, target: SocketAddr, dir: &Path) -> Prometheus {
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: {job}\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .expect("write prometheus.yml");
        let port = free_port();
        let log = std::fs::File::create(dir.join("prometheus.log")).expect("log file");
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("prometheus-data").display()
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
            dir: dir.to_path_buf(),
        };
        wait_for("prometheus /-/ready", Duration::from_secs(60), || {
            if let Ok(Some(s)) = p.child.try_wait() {
                panic!("prometheus exited ({s}):\n{}", p.log());
            }
            http_get(p.addr, "/-/ready", None)
                .ok()
                .filter(|r| r.status == 200)
        });
        p
    }

    /// What Prometheus logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// GET an API path; returns `data` of a `"status":"success"` answer.
    pub fn api(&self, path: &str) -> Value {
        let r = http_get(self.addr, path, None).unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(r.status, 200, "GET {path}: {}", r.body);
        let v: Value =
            serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{path}: {e}: {}", r.body));
        assert_eq!(v["status"], "success", "{path}: {}", r.body);
        v["data"].clone()
    }

    /// Instant query; the result vector.
    pub fn query(&self, promql: &str) -> Vec<Value> {
        let data = self.api(&format!("/api/v1/query?query={}", urlencode(promql)));
        data["result"].as_array().cloned().unwrap_or_default()
    }

    /// The values of the series of `promql` whose labels contain `labels`.
    pub fn series_with(&self, promql: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        self.query(promql)
            .iter()
            .filter(|s| labels.iter().all(|(k, v)| s["metric"][*k] == *v))
            .map(sample_value)
            .collect()
    }

    /// Waits until the (only) target was scraped with health `up`; returns its API entry and
    /// asserts that Prometheus reports no scrape error.
    pub fn wait_target_up(&self, timeout: Duration) -> Value {
        let target = wait_for("the target to be scraped with health up", timeout, || {
            let data = self.api("/api/v1/targets");
            let t = data["activeTargets"].as_array()?.first()?.clone();
            (t["health"] == "up").then_some(t)
        });
        assert_eq!(
            target["lastError"], "",
            "Prometheus reports a scrape error: {target}"
        );
        target
    }

    /// Waits until the metadata API knows `family`; returns a lookup of family -> type that
    /// accepts counter names with or without `_total` (OpenMetrics names them without).
    pub fn metadata_types(&self, family: &str, timeout: Duration) -> impl Fn(&str) -> String {
        let meta = wait_for("metadata", timeout, || {
            let m = self.api("/api/v1/metadata");
            m.get(family).is_some().then_some(m)
        });
        move |family: &str| {
            let alt = family.trim_end_matches("_total");
            meta.get(family)
                .or_else(|| meta.get(alt))
                .and_then(|v| v[0]["type"].as_str())
                .unwrap_or_else(|| panic!("no metadata for {family}; have: {meta}"))
                .to_string()
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of one series of an instant-query result.
pub fn sample_value(series: &Value) -> f64 {
    series["value"][1]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no value in {series}"))
}

/// Fetches `path` from `addr` in both formats and runs the strict checkers on them:
/// `promtool check metrics` (found at `promtool`) on text 0.0.4 (lint findings other than those
/// containing a string of `allowed_lint` fail), the Python OpenMetrics parser on OpenMetrics
/// (a loud SKIP, or a failure under `CUSTOS_REQUIRE_SERVICES=1`, when that module is missing).
pub fn check_exposition(promtool: &Path, addr: SocketAddr, path: &str, allowed_lint: &[&str]) {
    let text =
        http_get(addr, path, Some("text/plain; version=0.0.4")).expect("GET /metrics (text)");
    assert_eq!(text.status, 200, "GET {path}: {}", text.body);
    assert!(
        text.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain")),
        "content-type for Accept text/plain: {:?}",
        text.header("content-type")
    );
    // promtool exits 1 on a parse error, 3 on lint problems.
    let out = pipe_to(
        Command::new(promtool).args(["check", "metrics"]),
        &text.body,
    );
    let problems =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => {}
        Some(3) => {
            // Lint findings are style advice, not format errors; each allowed one is reviewed.
            for line in problems.lines().filter(|l| !l.trim().is_empty()) {
                assert!(
                    allowed_lint.iter().any(|a| line.contains(a)),
                    "promtool lint finding: {line}\n(all: {problems})"
                );
            }
        }
        _ => panic!(
            "promtool check metrics failed ({}):\n{problems}\n--- exposition:\n{}",
            out.status, text.body
        ),
    }

    let om = http_get(
        addr,
        path,
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
    let Some(python) = openmetrics_python() else {
        missing(
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

/// A python3 with Debian's python3-prometheus-client: the system one first, since a python3
/// earlier on PATH (pyenv, venv) may lack it.
fn openmetrics_python() -> Option<PathBuf> {
    [
        Some(PathBuf::from("/usr/bin/python3")),
        find_binary("python3"),
    ]
    .into_iter()
    .flatten()
    .find(|p: &PathBuf| {
        Command::new(p)
            .args(["-c", "import prometheus_client.openmetrics.parser"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}
