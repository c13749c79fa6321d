//! The real `burp_exporter` binary against real burp 3.1.4 servers on 127.0.0.1, started by
//! `scripts/burp-test-server.sh` (certificates from burp's own CA, a real backup taken).
//!
//! What the exporter serves is compared with what the server tells burp's own client (`burp -a m`
//! JSON, `burp -a S`), never with our own parser. Faults (server gone and back, wrong password,
//! wrong server CN, untrusted CA, a peer that never answers) must give a log line, `burp_up 0`
//! and an error counter, never a panic or a hang.
//!
//! Servers: `main` is shared by the read-only tests; `running` and `restart` belong to one test
//! each because those tests change the server's state.

mod common;

use common::{
    openssl_foreign_ca, require, run_once, wait_for, write_config, BurpServer, ClientEntry,
    Exporter, Metrics,
};
use serde_json::Value;
use std::collections::BTreeSet;
use std::net::TcpListener;
use std::time::Duration;

const FIRST_POLL: Duration = Duration::from_secs(60);

fn clients(truth: &Value) -> Vec<Value> {
    truth["clients"].as_array().cloned().unwrap_or_default()
}

fn current_backup(client: &Value) -> Option<Value> {
    client["backups"]
        .as_array()?
        .iter()
        .find(|b| has_flag(b, "current"))
        .cloned()
}

fn has_flag(backup: &Value, flag: &str) -> bool {
    backup["flags"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == flag))
}

fn client_named(truth: &Value, name: &str) -> Value {
    clients(truth)
        .into_iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("server reports no client {name}: {truth}"))
}

/// The `burp_client_run_status` state whose sample is 1.
fn run_status(m: &Metrics, server: &str, client: &str) -> Option<String> {
    let on: Vec<_> = m
        .find(
            "burp_client_run_status",
            &[("server", server), ("name", client)],
        )
        .into_iter()
        .filter(|s| s.value == 1.0)
        .collect();
    match on.as_slice() {
        [one] => one.labels.get("burp_client_run_status").cloned(),
        _ => None,
    }
}

fn up(m: &Metrics, server: &str) -> Option<f64> {
    m.value("burp_up", &[("server", server)])
}

fn errors(m: &Metrics, server: &str, kind: &str) -> f64 {
    m.value(
        "burp_poll_errors_total",
        &[("server", server), ("kind", kind)],
    )
    .unwrap_or(0.0)
}

/// Asserts the exporter logged nothing that looks like a crash.
fn assert_no_panic(log: &str) {
    assert!(
        !log.contains("panicked") && !log.contains("RUST_BACKTRACE"),
        "the exporter panicked:\n{log}"
    );
}

#[test]
fn metrics_match_what_the_server_reports() {
    if require("burp", "burp").is_none() {
        return;
    }
    let server = BurpServer::shared("main");
    let truth = server.status_json("");
    let mut ex = Exporter::start(&[server.client_entry("main")]);
    // Wait for the first poll including its details (backup list and backup_stats).
    let m = ex.wait_metrics("the first poll with details", FIRST_POLL, |m| {
        m.value(
            "burp_client_last_backup_bytes",
            &[("server", "main"), ("name", "testclient")],
        )
        .map(|_| m.clone())
    });
    let s = [("server", "main")];

    assert_eq!(up(&m, "main"), Some(1.0), "burp_up");
    let want_names: BTreeSet<String> = clients(&truth)
        .iter()
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect();
    assert_eq!(
        want_names,
        ["monitor", "testclient"].map(String::from).into(),
        "the test server's clients"
    );
    assert_eq!(
        m.value("burp_clients", &s),
        Some(want_names.len() as f64),
        "burp_clients"
    );
    let got_names: BTreeSet<String> = m
        .find("burp_client_run_status", &s)
        .iter()
        .filter_map(|x| x.labels.get("name").cloned())
        .collect();
    assert_eq!(
        got_names, want_names,
        "client names in burp_client_run_status"
    );

    for c in clients(&truth) {
        let name = c["name"].as_str().expect("name");
        let l = [("server", "main"), ("name", name)];
        assert_eq!(
            run_status(&m, "main", name).as_deref(),
            c["run_status"].as_str(),
            "run_status of {name}"
        );
        assert_eq!(
            m.value("burp_client_backup_has_in_progress", &l),
            Some(0.0),
            "has_in_progress of {name}"
        );
        let backups = c["backups"].as_array().cloned().unwrap_or_default();
        assert_eq!(
            m.value("burp_client_backups", &l),
            Some(backups.len() as f64),
            "burp_client_backups of {name}"
        );
        match current_backup(&c) {
            Some(b) => {
                assert_eq!(
                    m.value("burp_client_backup_num", &l),
                    b["number"].as_f64(),
                    "backup_num of {name}"
                );
                assert_eq!(
                    m.value("burp_client_backup_timestamp", &l),
                    b["timestamp"].as_f64(),
                    "backup_timestamp of {name}"
                );
                let stamps: Vec<f64> = backups
                    .iter()
                    .filter_map(|b| b["timestamp"].as_f64())
                    .collect();
                let min = stamps.iter().cloned().fold(f64::INFINITY, f64::min);
                let max = stamps.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                assert_eq!(
                    m.value("burp_client_oldest_backup_timestamp_seconds", &l),
                    Some(min),
                    "oldest backup of {name}"
                );
                assert_eq!(
                    m.value("burp_client_newest_backup_timestamp_seconds", &l),
                    Some(max),
                    "newest backup of {name}"
                );
                for log in ["backup", "backup_stats"] {
                    assert_eq!(
                        m.value(
                            "burp_client_backup_log",
                            &[("server", "main"), ("name", name), ("log", log)]
                        ),
                        Some(1.0),
                        "burp_client_backup_log {log} of {name}"
                    );
                }
            }
            None => assert!(
                m.find("burp_client_backup_num", &l).is_empty(),
                "{name} has no backup but a burp_client_backup_num series"
            ),
        }
    }

    // backup_stats of testclient's current backup, as the server reports it.
    let tc = client_named(&truth, "testclient");
    let n = current_backup(&tc).expect("testclient has a backup")["number"]
        .as_u64()
        .expect("number");
    let stats_doc = server.status_json(&format!("testclient:b:{n}:l:backup_stats"));
    let lines = stats_doc["clients"][0]["backups"][0]["logs"]["backup_stats"]
        .as_array()
        .unwrap_or_else(|| panic!("no backup_stats log: {stats_doc}"))
        .iter()
        .filter_map(|l| l.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let stats: Value = serde_json::from_str(&lines).expect("backup_stats JSON");
    let counter = |name: &str, field: &str| -> f64 {
        stats["counters"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["name"] == name)
            .and_then(|c| c[field].as_f64())
            .unwrap_or(0.0)
    };
    let l = [("server", "main"), ("name", "testclient")];
    assert_eq!(
        m.value("burp_client_last_backup_bytes", &l),
        Some(counter("bytes", "count")),
        "last backup bytes"
    );
    assert_eq!(
        m.value("burp_client_last_backup_received_bytes", &l),
        Some(counter("bytes_received", "count")),
        "last backup received bytes"
    );
    assert_eq!(
        m.value("burp_client_last_backup_files", &l),
        Some(counter("files", "count") + counter("files", "changed") + counter("files", "same")),
        "last backup files"
    );
    assert_eq!(
        m.value("burp_client_last_backup_end_timestamp_seconds", &l),
        Some(counter("time_end", "count")),
        "last backup end"
    );
    assert_eq!(
        m.value("burp_client_last_backup_duration_seconds", &l),
        Some(counter("time_end", "count") - counter("time_start", "count")),
        "last backup duration"
    );

    // The exporter's own health.
    assert!(
        m.value("burp_polls_total", &s).is_some_and(|v| v >= 1.0),
        "burp_polls_total"
    );
    assert!(
        m.value("burp_snapshot_age_seconds", &s)
            .is_some_and(|v| (0.0..30.0).contains(&v)),
        "burp_snapshot_age_seconds: {:?}",
        m.value("burp_snapshot_age_seconds", &s)
    );
    let last_contact = m.value("burp_last_contact", &s).expect("burp_last_contact");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    assert!(
        (now - last_contact).abs() < 60.0,
        "burp_last_contact {last_contact} is not recent (now {now})"
    );
    assert_no_panic(&ex.log());
}

#[test]
fn landing_page_and_probe() {
    if require("burp", "burp").is_none() {
        return;
    }
    let server = BurpServer::shared("main");
    let mut ex = Exporter::start(&[server.client_entry("main")]);
    ex.wait_metrics("the first poll", FIRST_POLL, |m| {
        m.value(
            "burp_client_backup_num",
            &[("server", "main"), ("name", "testclient")],
        )
    });
    let landing = ex.get("/");
    for link in ["/metrics", "/probe"] {
        assert!(
            landing.contains(link),
            "landing page lacks {link}: {landing}"
        );
    }
    // /probe with this server: its client series; with an unknown name: none of them.
    let probe = Metrics::parse(&ex.get("/probe?server[]=main"));
    assert!(
        probe
            .value(
                "burp_client_backup_num",
                &[("server", "main"), ("name", "testclient")]
            )
            .is_some(),
        "/probe?server[]=main lacks testclient:\n{}",
        probe.lines_starting("burp_")
    );
    let probe = Metrics::parse(&ex.get("/probe?server%5B%5D=main"));
    assert!(
        probe.value("burp_up", &[("server", "main")]) == Some(1.0),
        "/probe with an encoded server%5B%5D key:\n{}",
        probe.lines_starting("burp_")
    );
    // Unknown server names: 404 that names them (the original sent an empty reply).
    let other = common::http_get(ex.addr, "/probe?server[]=nosuch", None).expect("GET /probe");
    assert_eq!(other.status, 404, "/probe?server[]=nosuch: {}", other.body);
    assert!(
        other.body.contains("nosuch"),
        "the 404 names the server: {}",
        other.body
    );
}

/// Voluntary context switches per thread (`tid -> (name, count)`): each is a wake-up.
fn wakeups(pid: u32) -> std::collections::BTreeMap<String, (String, u64)> {
    let mut out = std::collections::BTreeMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("/proc/PID/task") {
        let dir = task.expect("task entry").path();
        let (Ok(name), Ok(status)) = (
            std::fs::read_to_string(dir.join("comm")),
            std::fs::read_to_string(dir.join("status")),
        ) else {
            continue; // ended meanwhile
        };
        let n = status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let tid = dir.file_name().unwrap().to_string_lossy().into_owned();
        out.insert(tid, (name.trim().to_owned(), n));
    }
    out
}

/// Polls run on a thread of their own that wakes about twice per poll (the tick, the reply):
/// they never wake the HTTP runtime's workers, and no timer wheel wakes the thread between
/// ticks. (Before, each 1 s poll woke the process 3 to 5 times, spread over both workers; on
/// this machine class the wake-ups were most of a poll's CPU time.)
#[cfg(target_os = "linux")]
#[test]
fn an_idle_exporter_wakes_only_to_poll() {
    if require("burp", "burp").is_none() {
        return;
    }
    let server = BurpServer::shared("main");
    let mut ex = Exporter::start(&[server.client_entry("main")]);
    let polls = |ex: &mut Exporter| {
        ex.metrics()
            .value("burp_polls_total", &[("server", "main")])
            .unwrap_or(0.0) as u64
    };
    ex.wait_metrics("the first polls", FIRST_POLL, |m| {
        m.value("burp_polls_total", &[("server", "main")])
            .filter(|n| *n >= 3.0)
    });
    // A quiet window: no scrape between the two readings (and time for the threads that
    // served the last one to go back to sleep).
    let p0 = polls(&mut ex);
    std::thread::sleep(Duration::from_millis(300));
    let w0 = wakeups(ex.pid());
    std::thread::sleep(Duration::from_secs(6));
    let w1 = wakeups(ex.pid());
    let p1 = polls(&mut ex);
    let n = p1 - p0;
    assert!(n >= 4, "only {n} polls in 6 s");
    // Per thread that lived through the window (a blocking-pool thread may end in it).
    let delta = |pick: &dyn Fn(&str) -> bool| -> u64 {
        w1.iter()
            .filter(|(_, (name, _))| pick(name))
            .filter_map(|(tid, (_, v))| w0.get(tid).map(|(_, v0)| v - v0))
            .sum()
    };
    let poll_thread = delta(&|name| name == custos_burp::exporter::POLL_THREAD);
    // tokio's workers and blocking-pool threads ("tokio-rt-worker", "tokio-runtime-w...").
    let workers = delta(&|name| name.starts_with("tokio-r"));
    assert_eq!(
        workers, 0,
        "{n} polls woke the HTTP runtime's threads {workers} times: {w0:?} -> {w1:?}"
    );
    assert!(
        w1.values()
            .any(|(name, _)| name == custos_burp::exporter::POLL_THREAD),
        "no polling thread: {w1:?}"
    );
    assert!(
        poll_thread <= 3 * n,
        "{poll_thread} wake-ups of the polling thread for {n} polls (expected about 2 each)"
    );
}

#[test]
fn once_prints_what_burp_a_s_prints() {
    if require("burp", "burp").is_none() {
        return;
    }
    let server = BurpServer::shared("main");
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(dir.path(), 9645, &[server.client_entry("main")], "");
    let (status, stdout, stderr) = run_once(&cfg, Duration::from_secs(60));
    assert!(
        status.success(),
        "--once failed ({status}):\n{stdout}\n{stderr}"
    );
    // burp's own summary of the same server: its client lines must appear byte for byte.
    let out = server.script(&["summary"], Duration::from_secs(60));
    let reference = String::from_utf8_lossy(&out.stdout);
    let client_lines: Vec<&str> = reference
        .lines()
        .filter(|l| l.contains("last backup:"))
        .collect();
    assert_eq!(client_lines.len(), 2, "burp -a S output:\n{reference}");
    for line in client_lines {
        assert!(
            stdout.lines().any(|l| l == line),
            "--once lacks burp -a S's line {line:?}:\n{stdout}"
        );
    }
    assert!(
        stdout.contains("main"),
        "--once names the server:\n{stdout}"
    );
    assert_no_panic(&stderr);
}

#[test]
fn once_fails_when_the_server_is_down() {
    if require("burp", "burp").is_none() {
        return;
    }
    let server = BurpServer::shared("main"); // for its certificate files
    let mut entry = server.client_entry("gone");
    entry.burp_port = common::free_port(); // nothing listens there
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(dir.path(), 9645, &[entry], "request_timeout_seconds: 3");
    let (status, stdout, stderr) = run_once(&cfg, Duration::from_secs(30));
    assert_eq!(
        status.code(),
        Some(1),
        "--once exit code:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("gone") && stdout.to_lowercase().contains("unreachable"),
        "--once should say which server is unreachable:\n{stdout}\n{stderr}"
    );
    assert_no_panic(&stderr);
}

#[test]
fn running_backup_shows_children_phase_and_counters() {
    if require("burp", "burp").is_none() {
        return;
    }
    let server = BurpServer::start("running", &[]);
    let mut ex = Exporter::start(&[server.client_entry("run")]);
    let l = [("server", "run"), ("name", "testclient")];
    let before = ex.wait_metrics("the first poll", FIRST_POLL, |m| {
        m.value("burp_client_backup_num", &l)
    });

    // 8 MiB of random data, then two fifos fed for 20 s each: about 40 s of RUNNING,
    // whatever the speed of the machine.
    const MIB: f64 = 1024.0 * 1024.0;
    server.slow_backup(8, 40);
    let truth = server.status_json("testclient");
    let tc = client_named(&truth, "testclient");
    assert_eq!(tc["run_status"], "running", "server view: {truth}");
    let child = tc["children"][0].clone();
    let pid = child["pid"].as_u64().expect("child pid").to_string();
    let number = child["backup"].as_f64().expect("child backup number");
    assert_eq!(number, before + 1.0, "the running backup's number");

    let cl = [
        ("server", "run"),
        ("name", "testclient"),
        ("pid", pid.as_str()),
        ("action", "backup"),
    ];
    let m = ex.wait_metrics(
        "child metrics of the running backup",
        Duration::from_secs(20),
        |m| {
            m.value("burp_client_child_backup_num", &cl)
                .map(|_| m.clone())
        },
    );
    // burp's status child caches each client's backup list and may never list the `working`
    // backup to a connection that polls often (seen with burp's own `burp -a m` sending `c:`
    // every 0.3 s), so the exporter also counts a running backup child as in progress.
    let tl = [("server", "run"), ("name", "testclient")];
    assert_eq!(
        m.value("burp_client_backup_has_in_progress", &tl),
        Some(1.0),
        "a running backup child is a backup in progress"
    );
    assert_eq!(
        run_status(&m, "run", "testclient").as_deref(),
        Some("running")
    );
    assert_eq!(m.value("burp_client_child_backup_num", &cl), Some(number));
    let phases = m.find("burp_client_child_phase", &cl);
    assert_eq!(
        phases.len(),
        1,
        "one phase series per child:\n{}",
        m.lines_starting("burp_")
    );
    assert_eq!(
        phases[0].labels.get("phase").map(String::as_str),
        child["phase"].as_str(),
        "phase label (the server says {})",
        child["phase"]
    );
    assert_eq!(phases[0].value, 1.0);
    let start = m
        .value("burp_client_child_start_timestamp_seconds", &cl)
        .expect("child start time");
    let time_start = child["counters"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == "time_start")
        .and_then(|c| c["count"].as_f64());
    assert_eq!(Some(start), time_start, "child start time");
    // The previous backup stays the completed one while the new one runs.
    assert_eq!(m.value("burp_client_backup_num", &l), Some(before));

    // --once shows the child too.
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(dir.path(), 9645, &[server.client_entry("run")], "");
    let (status, stdout, _) = run_once(&cfg, Duration::from_secs(60));
    assert!(status.success());
    let child_line = format!("backup {:07}", number as u64);
    assert!(
        stdout
            .lines()
            .any(|l| l.contains(&child_line) && l.contains("phase")),
        "--once lacks the running child ({child_line} ... phase):\n{stdout}"
    );

    // Counters: the estimate from the scan, then bytes that grow while the backup runs.
    let (est, first_bytes) = ex.wait_metrics(
        "estimated bytes and progress",
        Duration::from_secs(30),
        |m| {
            let est = m.value("burp_client_child_estimated_bytes", &cl)?;
            let bytes = m.value("burp_client_child_bytes", &cl)?;
            (est >= 8.0 * MIB && bytes > 0.0).then_some((est, bytes))
        },
    );
    assert!(est < 9.0 * MIB, "estimated bytes {est}");
    ex.wait_metrics("the byte counter to grow", Duration::from_secs(40), |m| {
        m.value("burp_client_child_bytes", &cl)
            .filter(|b| *b > first_bytes)
    });
    let m = ex.metrics();
    assert!(
        m.value("burp_client_child_scanned_files", &cl)
            .is_some_and(|v| v >= 200.0),
        "scanned files:\n{}",
        m.lines_starting("burp_")
    );

    // When it ends: idle, the new backup is current, the child series are gone.
    server.wait_idle();
    // The reference: a fresh status connection (burp's own client) lists it as current...
    wait_for(
        "a fresh connection's c: to list the finished backup",
        Duration::from_secs(120),
        || {
            let truth = server.status_json("");
            let tc = client_named(&truth, "testclient");
            let cur = current_backup(&tc).and_then(|b| b["number"].as_f64());
            (tc["run_status"] == "idle" && cur == Some(number)).then_some(())
        },
    );
    // ...and the exporter's long-lived connection, whose status child may hold a stale
    // list (see `refresh_settled` in src/exporter.rs), shows it within a few poll intervals (1 s) too: the exporter
    // asks `c:testclient`, which rereads the list, when the client turns idle.
    let m = ex.wait_metrics("the finished backup", Duration::from_secs(10), |m| {
        let done = m.value("burp_client_backup_num", &l) == Some(number)
            && run_status(m, "run", "testclient").as_deref() == Some("idle");
        done.then(|| m.clone())
    });
    // Whether burp served this connection a stale list this time (it does now and then).
    if let Some(line) = ex.log().lines().find(|l| l.contains("stale backup list")) {
        eprintln!("burp served a stale c: list; the exporter reread it: {line}");
    }
    assert_eq!(m.value("burp_client_backup_has_in_progress", &l), Some(0.0));
    assert!(
        m.find("burp_client_child_phase", &[("server", "run")])
            .is_empty()
            && m.find("burp_client_child_bytes", &[("server", "run")])
                .is_empty(),
        "child series remain after the backup ended:\n{}",
        m.lines_starting("burp_")
    );
    // backup_stats of the new backup are fetched: 8 MiB plus what came through the fifos.
    ex.wait_metrics(
        "backup_stats of the new backup",
        Duration::from_secs(30),
        |m| {
            m.value("burp_client_last_backup_bytes", &l)
                .filter(|b| *b > 8.0 * MIB)
        },
    );
    assert_no_panic(&ex.log());
}

#[test]
fn server_stopped_and_restarted_burp_up_goes_0_then_1() {
    if require("burp", "burp").is_none() {
        return;
    }
    let server = BurpServer::start("restart", &[]);
    let mut ex = Exporter::start(&[server.client_entry("rs")]);
    ex.wait_metrics("burp_up 1", FIRST_POLL, |m| {
        (up(m, "rs") == Some(1.0)).then_some(())
    });
    let pid = ex.pid();

    server.stop();
    let m = ex.wait_metrics(
        "burp_up 0 after the server stopped",
        Duration::from_secs(30),
        |m| (up(m, "rs") == Some(0.0)).then(|| m.clone()),
    );
    // The last known client data stays visible, with its age.
    assert!(
        m.value(
            "burp_client_backup_num",
            &[("server", "rs"), ("name", "testclient")]
        )
        .is_some(),
        "client data vanished while the server is down:\n{}",
        m.lines_starting("burp_")
    );
    let line = ex.wait_log("the lost server", Duration::from_secs(10), |l| {
        l.contains("warn") && l.contains("rs")
    });
    eprintln!("log line for the stopped server: {line}");
    let attempts_down = m
        .value("burp_contact_attempts_total", &[("server", "rs")])
        .unwrap_or(0.0);

    server.restart();
    let m = ex.wait_metrics(
        "burp_up 1 after the restart",
        Duration::from_secs(90),
        |m| (up(m, "rs") == Some(1.0)).then(|| m.clone()),
    );
    assert_eq!(ex.pid(), pid, "same exporter process");
    assert!(
        m.value("burp_contact_attempts_total", &[("server", "rs")])
            .is_some_and(|v| v > attempts_down),
        "burp_contact_attempts_total did not grow:\n{}",
        m.lines_starting("burp_")
    );
    assert!(
        m.value("burp_snapshot_age_seconds", &[("server", "rs")])
            .is_some_and(|v| v < 10.0),
        "snapshot not fresh after reconnect:\n{}",
        m.lines_starting("burp_")
    );
    assert_no_panic(&ex.log());
}

/// One exporter with a good server and three broken entries: each broken one gives its own
/// log line, error kind and `burp_up 0`; the good one is unaffected.
#[test]
fn wrong_password_cname_and_ca_are_reported_per_server() {
    if require("burp", "burp").is_none() || require("openssl", "openssl").is_none() {
        return;
    }
    let server = BurpServer::shared("main");
    let dir = tempfile::tempdir().expect("tempdir");
    let good = server.client_entry("good");
    let badpw = ClientEntry {
        name: "badpw".into(),
        password: "not-the-password".into(),
        ..good.clone()
    };
    let badcn = ClientEntry {
        name: "badcn".into(),
        burp_cname: "notburpserver".into(),
        ..good.clone()
    };
    let badca = ClientEntry {
        name: "badca".into(),
        tls_ca_cert: openssl_foreign_ca(dir.path()),
        ..good.clone()
    };
    let mut ex = Exporter::start(&[good, badpw, badcn, badca]);
    let m = ex.wait_metrics("all four servers polled", FIRST_POLL, |m| {
        let ok = up(m, "good") == Some(1.0)
            && m.value(
                "burp_client_backup_num",
                &[("server", "good"), ("name", "testclient")],
            )
            .is_some()
            && errors(m, "badpw", "auth") >= 1.0
            && errors(m, "badcn", "tls") >= 1.0
            && errors(m, "badca", "tls") >= 1.0;
        ok.then(|| m.clone())
    });
    for s in ["badpw", "badcn", "badca"] {
        assert_eq!(up(&m, s), Some(0.0), "burp_up of {s}");
        assert!(
            m.find("burp_client_backup_num", &[("server", s)])
                .is_empty(),
            "{s} shows client data"
        );
    }

    let pw = ex.wait_log("the wrong password", Duration::from_secs(10), |l| {
        l.contains("badpw")
            && (l.contains("authoris") || l.contains("password") || l.contains("login"))
    });
    assert!(
        !pw.contains("not-the-password"),
        "the password is in the log: {pw}"
    );
    let cn = ex.wait_log("the wrong burp_cname", Duration::from_secs(10), |l| {
        l.contains("badcn") && l.contains("notburpserver") && l.contains("burpserver\"")
    });
    let ca = ex.wait_log("the untrusted CA", Duration::from_secs(10), |l| {
        l.contains("badca") && (l.contains("tls_ca_cert") || l.contains("issuer"))
    });
    eprintln!("log lines:\n  {pw}\n  {cn}\n  {ca}");

    // It retries (with backoff), stays alive and answers quickly meanwhile.
    let m = ex.wait_metrics(
        "a retry of each broken server",
        Duration::from_secs(90),
        |m| {
            let retried = errors(m, "badpw", "auth") >= 2.0
                && errors(m, "badcn", "tls") >= 2.0
                && errors(m, "badca", "tls") >= 2.0;
            retried.then(|| m.clone())
        },
    );
    assert_eq!(up(&m, "good"), Some(1.0));
    let log = ex.log();
    assert_no_panic(&log);
    assert!(
        !log.contains("not-the-password"),
        "the password is in the log"
    );
}

/// A peer that accepts TCP and never says a word: the poll times out, `/metrics` stays fast,
/// `--once` ends with exit 1.
#[test]
fn a_peer_that_never_answers_times_out() {
    if require("burp", "burp").is_none() {
        return;
    }
    let server = BurpServer::shared("main"); // for certificate files
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    // Accept and hold connections without reading or writing.
    let holder = std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in silent.incoming().take(50) {
            match c {
                Ok(c) => held.push(c),
                Err(_) => break,
            }
        }
    });
    let mut entry = server.client_entry("silent");
    entry.burp_port = port;
    let mut ex = Exporter::start_with(
        &[entry.clone(), server.client_entry("good")],
        "request_timeout_seconds: 2",
    );
    let m = ex.wait_metrics(
        "a timeout of the silent server",
        Duration::from_secs(30),
        |m| (errors(m, "silent", "timeout") >= 1.0).then(|| m.clone()),
    );
    assert_eq!(up(&m, "silent"), Some(0.0));
    ex.wait_metrics("the good server meanwhile", FIRST_POLL, |m| {
        (up(m, "good") == Some(1.0)).then_some(())
    });
    ex.wait_log("the timeout", Duration::from_secs(10), |l| {
        l.contains("silent")
            && (l.contains("timeout") || l.contains("no answer") || l.contains("timed out"))
    });

    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(dir.path(), 9645, &[entry], "request_timeout_seconds: 2");
    let (status, stdout, stderr) = run_once(&cfg, Duration::from_secs(20));
    assert_eq!(
        status.code(),
        Some(1),
        "--once against a silent peer:\n{stdout}\n{stderr}"
    );
    assert_no_panic(&ex.log());
    drop(ex);
    drop(holder); // detached: ends with the test process
}

#[test]
fn version_and_bad_config_exit_codes() {
    let out = common::run_with_deadline(
        std::process::Command::new(common::EXPORTER).arg("--version"),
        Duration::from_secs(10),
    );
    assert!(out.status.success());
    let v = String::from_utf8_lossy(&out.stdout);
    assert!(
        v.contains("burp_exporter") && v.contains(env!("CARGO_PKG_VERSION")),
        "--version: {v}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("bad.yaml");
    std::fs::write(
        &cfg,
        "bind_port: 9645\nrefresh_intervall_seconds: 1\nclients: []\n",
    )
    .expect("write");
    // A key nothing reads: a warning naming file, key and nearest key (the original ignored
    // it); with --strict an error, exit 2.
    let run = |strict: bool| {
        let mut cmd = std::process::Command::new(common::EXPORTER);
        cmd.arg("-c").arg(&cfg);
        if strict {
            cmd.arg("--strict");
        }
        common::run_with_deadline(&mut cmd, Duration::from_secs(10))
    };
    for strict in [true, false] {
        let out = run(strict);
        assert_eq!(out.status.code(), Some(2), "bad config exit code");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("bad.yaml")
                && err.contains("refresh_intervall_seconds")
                && err.contains("nearest known key: `refresh_interval_seconds`"),
            "the message names file, key and nearest key (strict: {strict}): {err}"
        );
        if !strict {
            // The run went on to validation, which refuses the empty client list.
            assert!(err.contains("clients"), "{err}");
        }
    }
}

/// The `burp_client_child_*` samples of one `c:` reply, as `/metrics` would show them, without
/// the `pid` label (old servers do not say it).
fn child_samples(doc: &[u8]) -> BTreeSet<String> {
    use custos_burp::metrics::{registry, BurpCollector};
    use custos_burp::snapshot::Snapshots;
    let list = custos_burp::model::parse_clients(doc).expect("c: reply parses");
    let store = std::sync::Arc::new(Snapshots::new(["s"]));
    let mut snap = custos_burp::snapshot::ServerSnapshot::empty("s");
    snap.clients = std::sync::Arc::new(
        list.clients
            .into_iter()
            .map(|client| custos_burp::snapshot::ClientSnapshot {
                client,
                ..Default::default()
            })
            .collect(),
    );
    store.publish(snap);
    let (_, text) = custos_kit::exposition::encode(&registry(BurpCollector::new(store)), None);
    Metrics::parse(&text)
        .samples
        .iter()
        .filter(|s| s.name.starts_with("burp_client_child_"))
        .map(|s| {
            let labels: Vec<String> = s
                .labels
                .iter()
                .filter(|(k, _)| k.as_str() != "pid")
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            format!("{}{{{}}} {}", s.name, labels.join(","), s.value)
        })
        .collect()
}

#[test]
fn old_format_via_peer_version_gives_the_same_child_metrics() {
    if require("burp", "burp").is_none() {
        return;
    }
    let server = BurpServer::start("oldfmt", &[]);
    // Long enough to be running through two logins (1-4 s each) on a loaded machine.
    server.slow_backup(2, 15);
    let e = server.client_entry("x");
    let target = custos_burp::session::Target::new(
        e.burp_host.clone(),
        e.burp_port,
        e.cname.clone(),
        e.password.clone(),
        e.burp_cname.clone(),
        e.tls_ca_cert.clone(),
    )
    .with_client_cert(e.tls_cert.clone(), e.tls_key.clone());
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (new, old) = rt.block_on(async {
        use custos_burp::session::StatusClient;
        let mut new = StatusClient::connect(&target).await.expect("connect");
        let mut old = StatusClient::connect(&target).await.expect("connect");
        // burp answers with a warning document: "Peer version updated".
        let r = old.request("j:peer_version=2.1.8").await;
        assert!(
            matches!(&r, Err(custos_burp::error::Error::Warning(w)) if w.contains("updated")),
            "{r:?}"
        );
        // The counters move while the backup runs: take the new-format reply between two
        // identical old-format ones, so all three show the same moment.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let before = old.request("c:").await.expect("old c:");
            let now = new.request("c:").await.expect("new c:");
            let after = old.request("c:").await.expect("old c:");
            if before == after {
                return (now, after);
            }
            assert!(
                std::time::Instant::now() < deadline,
                "counters never stood still"
            );
        }
    });
    let old_text = String::from_utf8_lossy(&old);
    assert!(
        old_text.contains(r#""phase":"#) && !old_text.contains(r#""children":"#),
        "not the old format: {old_text}"
    );
    let (new_samples, old_samples) = (child_samples(&new), child_samples(&old));
    assert!(
        new_samples
            .iter()
            .any(|s| s.starts_with("burp_client_child_bytes{")),
        "no running child in the new format: {new_samples:?}"
    );
    assert_eq!(old_samples, new_samples, "old: {old_text}");
    server.wait_idle();
}
