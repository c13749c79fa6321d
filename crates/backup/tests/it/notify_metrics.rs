//! Metrics notifications end to end: Debian's real push gateway (including a group the
//! original pushed) read back from its /metrics, and the node_exporter textfile checked by
//! `promtool`.

use crate::common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::notify::*;
use common::*;
use serde_json::json;

#[test]
fn textfile_is_accepted_by_promtool_and_keeps_the_last_success() {
    if !require_tools("textfile", &["promtool"]) {
        return;
    }
    let mut f = Fixture::new(false);
    let prom = f.path("backup.prom");
    let n = vec![json!({"type": "textfile", "path": prom})];
    f.run(n.clone()).assert_code(0);
    let text = fs::read_to_string(&prom).unwrap();
    promtool_check(&prom);
    let size = f.stored_size();
    assert!(text.contains("# TYPE backup_size summary\n"), "{text}");
    assert!(
        text.contains(&format!("backup_size_sum{{source=\"www\"}} {size}\n")),
        "{text}"
    );
    assert!(
        text.contains("backup_success{source=\"www\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("backup_retained_copies{source=\"www\"} 1\n"),
        "{text}"
    );
    let last = value(
        &text,
        "backup_last_success_timestamp_seconds{source=\"www\"}",
    );
    // Now the source fails: status 0, the last success kept.
    fs::remove_dir_all(f.path("www")).unwrap();
    f.run(n).assert_code(1);
    let text = fs::read_to_string(&prom).unwrap();
    promtool_check(&prom);
    assert!(
        text.contains("backup_success{source=\"www\"} 0\n"),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "backup_last_success_timestamp_seconds{source=\"www\"}"
        ),
        last
    );
    assert!(!text.contains("backup_size_sum"), "{text}");
}

fn promtool_check(file: &Path) {
    let out = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(fs::File::open(file).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool rejected {}: {}{}",
        file.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn push_gateway_keeps_the_originals_types_and_reads_back_our_values() {
    let python_client = Command::new("/usr/bin/python3")
        .args(["-c", "import prometheus_client"])
        .status()
        .is_ok_and(|s| s.success());
    if !python_client {
        let msg = "push gateway test: needs python3-prometheus-client";
        assert!(!services_required(), "CUSTOS_REQUIRE_SERVICES=1 but {msg}");
        eprintln!("SKIP: {msg}");
        return;
    }
    let Some((_gw, pgw_port)) = push_gateway("push gateway test") else {
        return;
    };

    // The group as the original (prometheus_client's push_to_gateway) left it.
    let seeded = Command::new("/usr/bin/python3")
        .args(["-c", &format!(
            "from prometheus_client import CollectorRegistry, Gauge, Summary, push_to_gateway\n\
             r = CollectorRegistry()\n\
             Summary('backup_size', 'Size of backup file in bytes', registry=r).observe(1234)\n\
             Summary('backup_dumptime', 'Time taken to dump and compress/encrypt backup in seconds', registry=r).observe(1.5)\n\
             Summary('backup_uploadtime', 'Time taken to upload backup in seconds', registry=r).observe(2.5)\n\
             Gauge('backup_retained_copies', 'Number of retained backups found on destination', registry=r).set(0)\n\
             Gauge('backup_timestamp', 'Time backup completed as seconds-since-the-epoch', registry=r).set_to_current_time()\n\
             push_to_gateway('127.0.0.1:{pgw_port}', job='www', registry=r)\n"
        )])
        .status()
        .unwrap();
    assert!(seeded.success());
    let before = http_get(pgw_port, "/metrics");
    assert!(
        before.contains("backup_size_sum{instance=\"\",job=\"www\"} 1234"),
        "{before}"
    );

    // The README's example, pointed at the local gateway; two runs keep two good copies.
    let mut f = Fixture::new(false);
    let n = vec![
        json!({"type": "prometheus", "url": format!("http://127.0.0.1:{pgw_port}/"),
                        "credentials": {"username": "prometheus", "password": "yourpasswordhere"}}),
    ];
    f.run(n.clone()).assert_code(0);
    // (A second run within the same second moves its stamp to the next one by itself.)
    let run = f.run(n.clone());
    run.assert_code(0);
    let m = http_get(pgw_port, "/metrics");
    let series = |name: &str| format!("{name}{{instance=\"\",job=\"www\"}}");
    assert!(m.contains("# TYPE backup_size summary"), "{m}");
    assert!(m.contains("# TYPE backup_retained_copies gauge"), "{m}");
    let newest = objects(&f.path("store"), "www")
        .into_iter()
        .filter(|p| !p.to_string_lossy().ends_with(".sha256"))
        .max()
        .unwrap();
    assert_eq!(
        value(&m, &series("backup_size_sum")),
        fs::metadata(newest).unwrap().len() as f64
    );
    assert_eq!(value(&m, &series("backup_size_count")), 1.0);
    assert_eq!(value(&m, &series("backup_retained_copies")), 2.0);
    assert_eq!(value(&m, &series("backup_success")), 1.0);
    let last_ok = value(&m, &series("backup_last_success_timestamp_seconds"));
    let now = chrono::Utc::now().timestamp() as f64;
    assert!((now - last_ok).abs() < 120.0, "{last_ok} vs {now}");
    assert!(value(&m, &series("backup_dumptime_sum")) >= 0.0);
    assert!(value(&m, &series("backup_uploadtime_sum")) >= 0.0);
    // The gateway accepted the push: its own failure marker is 0.
    assert_eq!(value(&m, &series("push_failure_time_seconds")), 0.0);

    // A failure: status 0 and the failure time; the last success and its statistics stay.
    fs::remove_dir_all(f.path("www")).unwrap();
    f.run(n).assert_code(1);
    let m = http_get(pgw_port, "/metrics");
    assert_eq!(value(&m, &series("backup_success")), 0.0);
    assert!(value(&m, &series("backup_last_failure_timestamp_seconds")) >= last_ok);
    assert_eq!(
        value(&m, &series("backup_last_success_timestamp_seconds")),
        last_ok
    );
    assert_eq!(value(&m, &series("backup_retained_copies")), 2.0);
    assert_eq!(value(&m, &series("push_failure_time_seconds")), 0.0);
}
