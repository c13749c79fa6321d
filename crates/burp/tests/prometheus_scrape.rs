//! A real Prometheus (Debian `prometheus` 2.42) scrapes a real `burp_exporter` watching a real
//! burp server, and the exposition passes the strict format checkers: `promtool check metrics`
//! for the text format 0.0.4 and the Python `prometheus_client` OpenMetrics parser.

mod common;

use common::{require, BurpServer, Exporter};
use custos_testkit::prometheus::{check_exposition, Prometheus};
use serde_json::Value;
use std::time::Duration;

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
    let dir = tempfile::tempdir().expect("tempdir");
    let prom = Prometheus::start(&prom_bin, "burp", exporter.addr, dir.path());
    prom.wait_target_up(Duration::from_secs(60));

    // The values Prometheus stored are those the server reports.
    let up = common::wait_for("burp_up in the TSDB", Duration::from_secs(30), || {
        let v = prom.series_with("burp_up", &[("server", "srv")]);
        (!v.is_empty()).then_some(v)
    });
    assert_eq!(up, vec![1.0], "burp_up{{server=\"srv\"}}");
    assert_eq!(
        prom.series_with(
            "burp_client_backup_num",
            &[("server", "srv"), ("name", "testclient")]
        ),
        vec![backup_num as f64],
        "burp_client_backup_num for testclient"
    );
    let clients = prom.series_with("burp_clients", &[("server", "srv")]);
    assert_eq!(clients, vec![2.0], "burp_clients (testclient + monitor)");
    let running = prom.series_with(
        "burp_client_run_status",
        &[("server", "srv"), ("name", "testclient")],
    );
    assert!(
        running.contains(&1.0),
        "no run_status series is 1 for testclient: {running:?}"
    );

    // Metadata: the types Prometheus learnt from the exposition.
    let type_of = prom.metadata_types("burp_up", Duration::from_secs(30));
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

    check_exposition(&promtool, exporter.addr, "/metrics", &[]);
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
