//! Notifications end to end: the real `backup` binary reports a real run to local HTTP
//! receivers (checked against each service's documented API), to a real SMTP server
//! (aiosmtpd), to Debian's real push gateway, to a textfile checked by `promtool`, and to a
//! flag file; and a notifier that fails never hides the backup or stops the others.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::receiver::{closed_port, Behaviour, Received, Receiver};
use common::*;
use serde_json::{json, Value};

/// A job with one good folder source (`www`) and, when `with_failure`, one whose path is
/// missing (`gone`), stored to a local destination.
struct Fixture {
    dir: tempfile::TempDir,
    job: Job,
}

impl Fixture {
    fn new(with_failure: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("www");
        fs::create_dir_all(&data).unwrap();
        fs::write(data.join("index.html"), "hello\n").unwrap();
        let mut job = Job::new(dir.path());
        job.source(
            json!({"id": "www", "name": "Web site", "type": "folder", "path": data,
                          "passphrase": PASSPHRASE}),
        );
        if with_failure {
            job.source(json!({"id": "gone", "name": "Gone", "type": "folder",
                              "path": dir.path().join("missing"), "passphrase": PASSPHRASE}));
        }
        job.destination(local_destination("disk", &dir.path().join("store")));
        Fixture { dir, job }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn run(&mut self, notifications: Vec<Value>) -> Run {
        self.job.set("notifications", Value::Array(notifications));
        run_job(&self.job.write())
    }

    fn stored_size(&self) -> u64 {
        fs::metadata(only_object(&self.path("store"), "www"))
            .unwrap()
            .len()
    }
}

const SUCCESS: &str = "Backup of 'Web site' (folder) on 'testhost' was successful [size: ";
const FAILURE: &str = "Backup of 'Gone' (folder) on 'testhost' failed: source 'gone': ";

fn both(mut v: Value) -> Value {
    v["notify_on_success"] = json!(1);
    v["notify_on_failure"] = json!(1);
    v
}

#[track_caller]
fn one(reqs: &[Received], what: &str) -> Received {
    assert_eq!(reqs.len(), 1, "{what}: {reqs:#?}");
    reqs[0].clone()
}

/// The two messages (success of `www`, failure of `gone`) a per-source notifier sent, in
/// that order.
#[track_caller]
fn two(reqs: Vec<Received>, what: &str) -> (Received, Received) {
    assert_eq!(reqs.len(), 2, "{what}: {reqs:#?}");
    (reqs[0].clone(), reqs[1].clone())
}

#[test]
fn http_notifiers_send_the_documented_requests() {
    let rx = Receiver::start(Behaviour::default());
    let mut f = Fixture::new(true);
    let run = f.run(vec![
        both(json!({"type": "slack", "url": rx.url("/services/T0/B0/slacksecret")})),
        both(json!({"type": "discord", "url": rx.url("/api/webhooks/1/discordsecret")})),
        both(json!({"type": "matrix", "url": rx.url("/mx"), "access_token": "mxsecret",
                    "room_id": "!room:example.org"})),
        both(json!({"type": "telegram", "api_token": "123:tgsecret", "chat_id": "38123456",
                    "api_url": rx.url("/tg")})),
        both(json!({"type": "hipchat", "url": rx.url("/v2/room/7/notification?auth_token=hcsecret")})),
        json!({"id": "logging", "type": "elasticsearch", "url": rx.url("/es"),
               "credentials": {"username": "backups", "password": "essecret"},
               "indexpattern": "backups-%Y"}),
        json!({"type": "healthchecks", "url": rx.url("/ping/hcuuid")}),
        json!({"type": "prometheus", "url": rx.url("/pgw/"), "instance": "host1",
               "credentials": {"username": "prometheus", "password": "pgwsecret"}}),
    ]);
    // The failed source makes the run fail; every notifier delivered.
    run.assert_code(1);
    let out = run.all_text();
    assert!(out.contains("gone"), "{}", run.describe());
    assert!(!out.contains("- -> notify:"), "a notifier failed: {out}");
    for secret in [
        "slacksecret",
        "discordsecret",
        "mxsecret",
        "tgsecret",
        "hcsecret",
        "essecret",
        "hcuuid",
    ] {
        assert!(!out.contains(secret), "{secret} leaked: {out}");
    }

    // Slack incoming webhook: POST JSON {text} (plus the original's username/icon).
    let (ok, bad) = two(rx.at("/services/T0/B0/slacksecret"), "slack");
    assert_eq!(ok.method, "POST");
    assert_eq!(ok.header("content-type"), Some("application/json"));
    let body = ok.json();
    assert!(
        body["text"].as_str().unwrap().starts_with(SUCCESS),
        "{body}"
    );
    assert_eq!(body["username"], "Backup Agent");
    assert_eq!(body["icon_emoji"], ":+1:");
    let body = bad.json();
    assert!(
        body["text"].as_str().unwrap().starts_with(FAILURE),
        "{body}"
    );
    assert_eq!(body["icon_emoji"], ":imp:");

    // Discord webhook: POST JSON {content}.
    let (ok, bad) = two(rx.at("/api/webhooks/1/discordsecret"), "discord");
    assert_eq!(
        (ok.method.as_str(), ok.header("content-type")),
        ("POST", Some("application/json"))
    );
    assert!(ok.json()["content"].as_str().unwrap().starts_with(SUCCESS));
    assert!(bad.json()["content"].as_str().unwrap().starts_with(FAILURE));

    // Matrix client-server API v3: PUT .../rooms/{id}/send/m.room.message/{txn}, bearer token,
    // distinct transaction ids.
    let (ok, bad) = two(rx.at("/mx/"), "matrix");
    assert_eq!(ok.method, "PUT");
    assert!(
        ok.path()
            .starts_with("/mx/_matrix/client/v3/rooms/!room:example.org/send/m.room.message/"),
        "{}",
        ok.target
    );
    assert_ne!(ok.path(), bad.path(), "transaction ids must differ");
    assert_eq!(ok.header("authorization"), Some("Bearer mxsecret"));
    assert!(!ok.target.contains("access_token"));
    assert_eq!(ok.json()["msgtype"], "m.text");
    assert!(ok.json()["body"].as_str().unwrap().starts_with(SUCCESS));
    assert!(bad.json()["body"].as_str().unwrap().starts_with(FAILURE));

    // Telegram Bot API: POST /bot<token>/sendMessage JSON {chat_id, text}.
    let (ok, bad) = two(rx.at("/tg/"), "telegram");
    assert_eq!(
        (ok.method.as_str(), ok.path()),
        ("POST", "/tg/bot123:tgsecret/sendMessage")
    );
    assert_eq!(ok.json()["chat_id"], "38123456");
    assert!(ok.json()["text"].as_str().unwrap().starts_with(SUCCESS));
    assert!(bad.json()["text"].as_str().unwrap().starts_with(FAILURE));

    // HipChat v2 room notification: POST JSON {message, message_format, notify, color, from}.
    let (ok, bad) = two(rx.at("/v2/room/7/notification"), "hipchat");
    assert_eq!(ok.target, "/v2/room/7/notification?auth_token=hcsecret");
    let (o, b) = (ok.json(), bad.json());
    assert_eq!(
        (o["color"].as_str(), o["notify"].as_bool()),
        (Some("green"), Some(false))
    );
    assert_eq!(
        (b["color"].as_str(), b["notify"].as_bool()),
        (Some("red"), Some(true))
    );
    assert_eq!(o["message_format"], "text");
    assert!(b["message"].as_str().unwrap().starts_with(FAILURE));

    // Elasticsearch: POST /<strftime index>/_doc with basic auth; success and failure docs
    // with @timestamp.
    let (ok, bad) = two(rx.at("/es/"), "elasticsearch");
    let year = chrono::Local::now().format("%Y").to_string();
    assert_eq!(
        (ok.method.as_str(), ok.path()),
        ("POST", format!("/es/backups-{year}/_doc").as_str())
    );
    assert_eq!(
        ok.header("authorization"),
        Some("Basic YmFja3Vwczplc3NlY3JldA==")
    );
    let doc = ok.json();
    assert_eq!(doc["status"], "success");
    assert_eq!(
        doc["source"],
        json!({"id": "www", "name": "Web site", "type": "folder"})
    );
    assert_eq!(doc["hostname"], "testhost");
    assert!(chrono::DateTime::parse_from_rfc3339(doc["@timestamp"].as_str().unwrap()).is_ok());
    assert_eq!(doc["stats"]["size"], json!(f.stored_size()));
    assert_eq!(doc["stats"]["retainedfiles"], json!(1));
    assert_eq!(doc["stats"]["sha256"].as_str().unwrap().len(), 64);
    let doc = bad.json();
    assert_eq!(doc["status"], "failed");
    assert!(doc["@timestamp"].is_string());
    assert!(
        doc["error"]
            .as_str()
            .unwrap()
            .starts_with("source 'gone': "),
        "{doc}"
    );

    // Push gateway API: PUT (replace the group) on success, POST (replace only the named
    // metrics) on failure, grouping job/instance in the path, text format 0.0.4, basic auth.
    let (ok, bad) = two(rx.at("/pgw/"), "prometheus");
    assert_eq!(
        (ok.method.as_str(), ok.path()),
        ("PUT", "/pgw/metrics/job/www/instance/host1")
    );
    assert_eq!(
        (bad.method.as_str(), bad.path()),
        ("POST", "/pgw/metrics/job/gone/instance/host1")
    );
    assert_eq!(
        ok.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_eq!(
        ok.header("authorization"),
        Some("Basic cHJvbWV0aGV1czpwZ3dzZWNyZXQ=")
    );
    assert!(
        ok.text()
            .contains(&format!("backup_size_sum {}\n", f.stored_size())),
        "{}",
        ok.text()
    );
    assert!(bad.text().contains("backup_success 0\n"), "{}", bad.text());
    assert!(!bad.text().contains("backup_size"), "{}", bad.text());

    // healthchecks: /start first, then /fail (one source failed) with the summary.
    let pings = rx.at("/ping/");
    let paths: Vec<&str> = pings.iter().map(|r| r.path()).collect();
    assert_eq!(paths, ["/ping/hcuuid/start", "/ping/hcuuid/fail"]);
    assert!(pings.iter().all(|r| r.method == "POST"));
    let body = pings[1].text();
    assert!(
        body.contains("gone -> disk: source 'gone'") && body.contains("1 of 2 succeeded"),
        "{body}"
    );
    // The run's log tail, although this quiet run printed no log lines.
    assert!(body.contains("\nlog (last lines):\n"), "{body}");
    assert!(body.contains("ERROR source 'gone': "), "{body}");
    assert!(body.contains(" INFO stored source=www"), "{body}");
}

#[test]
fn the_original_readme_examples_run_against_local_receivers() {
    // The README's entries as written, with each service URL pointed at a local receiver
    // (Telegram has no URL key: custos `api_url`).
    let rx = Receiver::start(Behaviour::default());
    let mut f = Fixture::new(true);
    let flag = f.path("gitdata.ok");
    let run = f.run(vec![
        json!({"type": "hipchat", "url": rx.url("/hipchat"), "notify_on_success": 0, "notify_on_failure": 1}),
        json!({"type": "discord", "url": rx.url("/discord"), "notify_on_success": 0, "notify_on_failure": 1}),
        json!({"type": "matrix", "url": rx.url("/matrix"), "access_token": "ALongStringOfCharacters",
               "room_id": "!roomidstringofchars@matrix.org", "notify_on_success": 0, "notify_on_failure": 1}),
        json!({"type": "slack", "url": rx.url("/slack"), "notify_on_success": 0, "notify_on_failure": 1}),
        json!({"type": "telegram", "api_token": "295432120:use_your_own_token_here", "chat_id": "38123456",
               "notify_on_success": 0, "notify_on_failure": 1, "api_url": rx.url("/telegram")}),
        json!({"type": "flagfile", "flagfile": flag}),
        json!({"id": "logging", "type": "elasticsearch", "url": rx.url("/es"),
               "credentials": {"username": "backups", "password": "yourpasswordhere"},
               "indexpattern": "backups-%Y"}),
    ]);
    run.assert_code(1);
    // notify_on_success 0, notify_on_failure 1: exactly the failure of `gone`.
    for prefix in ["/hipchat", "/discord", "/matrix/", "/slack", "/telegram/"] {
        let r = one(&rx.at(prefix), prefix);
        assert!(
            r.text()
                .contains("Backup of 'Gone' (folder) on 'testhost' failed"),
            "{prefix}: {}",
            r.text()
        );
    }
    // Elasticsearch reports both; the flag file only a fully successful run.
    assert_eq!(rx.at("/es/").len(), 2);
    assert!(!flag.exists());
}

#[test]
fn healthchecks_and_uptime_kuma_get_their_success_signals() {
    let rx = Receiver::start(Behaviour::default());
    let mut f = Fixture::new(false);
    let run = f.run(vec![
        json!({"type": "healthchecks", "url": rx.url("/ping/abc?create=1")}),
        json!({"type": "healthchecks", "url": rx.url("/api/push/kumatoken?status=up&msg=OK&ping=")}),
    ]);
    run.assert_code(0);
    let hc = rx.at("/ping/");
    let targets: Vec<&str> = hc.iter().map(|r| r.target.as_str()).collect();
    assert_eq!(targets, ["/ping/abc/start?create=1", "/ping/abc?create=1"]);
    assert!(
        hc[1].text().contains("1 of 1 succeeded on testhost"),
        "{}",
        hc[1].text()
    );
    let kuma = one(&rx.at("/api/push/"), "kuma: no start signal, one up");
    assert_eq!(kuma.method, "GET");
    assert_eq!(kuma.target, "/api/push/kumatoken?ping=&status=up&msg=OK");
    // A failed run: Uptime Kuma gets `down` with the summary's last line.
    let rx = Receiver::start(Behaviour::default());
    let mut g = Fixture::new(true);
    g.run(vec![json!({"type": "healthchecks", "url": rx.url("/api/push/kumatoken?status=up&msg=OK&ping=")})])
        .assert_code(1);
    let kuma = one(&rx.at("/api/push/"), "kuma down");
    assert!(
        kuma.target
            .starts_with("/api/push/kumatoken?ping=&status=down&msg=1+of+2+succeeded+on+testhost"),
        "{}",
        kuma.target
    );
}

#[test]
fn failing_notifiers_are_reported_and_never_stop_the_others() {
    let good = Receiver::start(Behaviour::default());
    let broken = Receiver::start(Behaviour {
        status: 500,
        delay: Duration::ZERO,
    });
    let slow = Receiver::start(Behaviour {
        status: 200,
        delay: Duration::from_secs(20),
    });
    let down = closed_port();
    let mut f = Fixture::new(false);
    let flag = f.path("flag.ok");
    let started = Instant::now();
    let run = f.run(vec![
        both(json!({"id": "down", "type": "slack", "url": format!("http://127.0.0.1:{down}/hook/downsecret")})),
        both(json!({"id": "broken", "type": "discord", "url": broken.url("/hook/brokensecret")})),
        both(json!({"id": "slow", "type": "slack", "url": slow.url("/hook/slowsecret"), "timeout": 1})),
        both(json!({"id": "good", "type": "slack", "url": good.url("/hook/goodsecret")})),
        json!({"type": "flagfile", "filename": flag}),
    ]);
    let took = started.elapsed();
    // The backup itself succeeded and is stored; the exit code says a notifier failed.
    run.assert_code(1);
    assert!(f.stored_size() > 0);
    assert!(
        took < Duration::from_secs(15),
        "the slow receiver held the run: {took:?}"
    );
    let table = run.stdout_text();
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("www ") && l.contains(" disk ") && l.contains(" ok ")),
        "{table}"
    );
    let line = |label: &str| {
        table
            .lines()
            .find(|l| l.starts_with(&format!("- -> notify:{label}: ")))
            .unwrap_or_else(|| panic!("no failure line for {label}: {table}"))
            .to_owned()
    };
    assert!(
        line("down").contains(&format!("http://127.0.0.1:{down}: ")),
        "{table}"
    );
    assert!(line("broken").contains("HTTP 500"), "{table}");
    assert!(line("slow").to_lowercase().contains("timed out"), "{table}");
    assert!(table.contains("3 of 6 succeeded"), "{table}");
    // The others were notified.
    assert_eq!(good.requests().len(), 1);
    assert!(fs::read_to_string(&flag).unwrap().starts_with("OK "));
    // Secrets in the URLs' paths never reach the output.
    let out = run.all_text();
    for secret in ["downsecret", "brokensecret", "slowsecret", "goodsecret"] {
        assert!(!out.contains(secret), "{secret} leaked: {out}");
    }
}

#[test]
fn flag_file_is_written_atomically_on_success_only() {
    let mut f = Fixture::new(false);
    let flag = f.path("backup.ok");
    let n = vec![json!({"type": "flagfile", "flagfile": flag})];
    f.run(n.clone()).assert_code(0);
    let text = fs::read_to_string(&flag).unwrap();
    let stamp = text.strip_prefix("OK ").unwrap().trim();
    assert!(
        chrono::DateTime::parse_from_rfc3339(stamp).is_ok(),
        "{text}"
    );
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        fs::metadata(&flag).unwrap().permissions().mode() & 0o777,
        0o644
    );
    // No temporary file left beside it.
    let names: Vec<String> = fs::read_dir(f.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".custos-"))
        .collect();
    assert!(names.is_empty(), "{names:?}");
    // A failing run leaves the last good flag untouched.
    fs::write(&flag, "previous").unwrap();
    let mut g = Fixture::new(true);
    g.run(vec![json!({"type": "flagfile", "flagfile": flag})])
        .assert_code(1);
    assert_eq!(fs::read_to_string(&flag).unwrap(), "previous");
}

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

/// The value of the sample line starting with `series ` in a text exposition.
#[track_caller]
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

// ------------------------------------------------------------------------------------------
// Real servers: push gateway and SMTP

/// A child process killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for_port(port: u16, child: &mut Child, what: &str) {
    wait_until(Duration::from_secs(30), what, || {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited early: {status}");
        }
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
}

/// GET over HTTP/1.0 (the reply ends at EOF).
fn http_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
}

const PUSHGATEWAY: &str = "/usr/bin/prometheus-pushgateway";
const PGW_PORT: u16 = 19191;

#[test]
fn push_gateway_keeps_the_originals_types_and_reads_back_our_values() {
    let python_client = Command::new("/usr/bin/python3")
        .args(["-c", "import prometheus_client"])
        .status()
        .is_ok_and(|s| s.success());
    if !Path::new(PUSHGATEWAY).exists() || !python_client {
        let msg =
            "push gateway test: needs Debian prometheus-pushgateway and python3-prometheus-client";
        assert!(!services_required(), "CUSTOS_REQUIRE_SERVICES=1 but {msg}");
        eprintln!("SKIP: {msg}");
        return;
    }
    let mut child = Command::new(PUSHGATEWAY)
        .args([
            format!("--web.listen-address=127.0.0.1:{PGW_PORT}"),
            "--persistence.file=".to_owned(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_port(PGW_PORT, &mut child, "push gateway");
    let _gw = Server(child);

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
             push_to_gateway('127.0.0.1:{PGW_PORT}', job='www', registry=r)\n"
        )])
        .status()
        .unwrap();
    assert!(seeded.success());
    let before = http_get(PGW_PORT, "/metrics");
    assert!(
        before.contains("backup_size_sum{instance=\"\",job=\"www\"} 1234"),
        "{before}"
    );

    // The README's example, pointed at the local gateway; two runs keep two good copies.
    let mut f = Fixture::new(false);
    let n = vec![
        json!({"type": "prometheus", "url": format!("http://127.0.0.1:{PGW_PORT}/"),
                        "credentials": {"username": "prometheus", "password": "yourpasswordhere"}}),
    ];
    f.run(n.clone()).assert_code(0);
    // (A second run within the same second moves its stamp to the next one by itself.)
    let run = f.run(n.clone());
    run.assert_code(0);
    let m = http_get(PGW_PORT, "/metrics");
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
    let m = http_get(PGW_PORT, "/metrics");
    assert_eq!(value(&m, &series("backup_success")), 0.0);
    assert!(value(&m, &series("backup_last_failure_timestamp_seconds")) >= last_ok);
    assert_eq!(
        value(&m, &series("backup_last_success_timestamp_seconds")),
        last_ok
    );
    assert_eq!(value(&m, &series("backup_retained_copies")), 2.0);
    assert_eq!(value(&m, &series("push_failure_time_seconds")), 0.0);
}

/// An aiosmtpd server on `port` storing messages under the returned directory.
fn smtp_server(port: u16, extra: &[&str]) -> Option<(Server, tempfile::TempDir)> {
    let ok = Command::new("/usr/bin/python3")
        .args(["-c", "import aiosmtpd"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let msg = "SMTP tests need python3-aiosmtpd (Debian)";
        assert!(!services_required(), "CUSTOS_REQUIRE_SERVICES=1 but {msg}");
        eprintln!("SKIP: {msg}");
        return None;
    }
    let out = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smtp_server.py");
    let mut child = Command::new("/usr/bin/python3")
        .arg(script)
        .args(["127.0.0.1", &port.to_string()])
        .arg(out.path())
        .args(extra)
        .stdout(Stdio::null())
        // Its tracebacks (a refused certificate) belong to the test that provokes them.
        .stderr(fs::File::create(out.path().join("server.log")).unwrap())
        .spawn()
        .unwrap();
    wait_for_port(port, &mut child, "aiosmtpd");
    Some((Server(child), out))
}

/// The messages the server stored, in arrival order.
fn mails(dir: &Path, n: usize) -> Vec<Value> {
    let path = |i: usize| dir.join(format!("{i}.json"));
    wait_until(Duration::from_secs(10), "stored mails", || path(n).exists());
    (1..=n)
        .map(|i| serde_json::from_slice(&fs::read(path(i)).unwrap()).unwrap())
        .collect()
}

/// The value of header `name` in a raw message (first occurrence).
fn header<'a>(raw: &'a str, name: &str) -> Option<&'a str> {
    let head = raw.split("\r\n\r\n").next().unwrap_or(raw);
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn smtp_notification(port: u16, extra: Value) -> Value {
    let mut v = json!({"type": "smtp", "host": "127.0.0.1", "port": port, "use_tls": 0, "use_ssl": 0,
                       "success_to": "archive@example.com", "failure_to": "sysadmin@example.com"});
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

#[test]
fn smtp_without_auth_sends_proper_mails_and_never_logs_in() {
    let port = 18125;
    let Some((_server, dir)) = smtp_server(port, &[]) else {
        return;
    };
    let mut f = Fixture::new(true);
    // The original README's example has `"credentials": {}` (no username): no login.
    f.run(vec![smtp_notification(port, json!({"credentials": {}}))])
        .assert_code(1);
    let m = mails(dir.path(), 2);
    let (ok, bad) = (&m[0], &m[1]);
    assert_eq!(ok["authenticated"], false);
    assert_eq!(ok["rcpt_tos"], json!(["archive@example.com"]));
    assert_eq!(bad["rcpt_tos"], json!(["sysadmin@example.com"]));
    let raw = ok["data"].as_str().unwrap();
    assert_eq!(
        header(raw, "Subject"),
        Some("Backup of Web site (folder) on testhost was successful")
    );
    assert_eq!(header(raw, "From"), Some("archive@example.com"));
    assert_eq!(header(raw, "To"), Some("archive@example.com"));
    assert!(
        chrono::DateTime::parse_from_rfc2822(header(raw, "Date").unwrap()).is_ok(),
        "{raw}"
    );
    let id = header(raw, "Message-ID").unwrap();
    assert!(
        id.starts_with('<') && id.ends_with('>') && id.contains('@'),
        "{id}"
    );
    assert_eq!(header(raw, "X-Backup-Id"), Some("www"));
    assert_eq!(header(raw, "X-Backup-Type"), Some("folder"));
    assert_eq!(header(raw, "X-Backup-Hostname"), Some("testhost"));
    assert!(
        raw.contains("Successfully backed up Web site (folder) [size: "),
        "{raw}"
    );
    let raw = bad["data"].as_str().unwrap();
    assert_eq!(
        header(raw, "Subject"),
        Some("ERROR: Backup of Gone (folder) on testhost failed")
    );
    assert!(
        raw.contains("Error encountered while backing up Gone (folder):"),
        "{raw}"
    );
    assert!(raw.contains("source 'gone': "), "{raw}");
}

#[test]
fn smtp_with_auth_logs_in_with_the_configured_credentials() {
    let port = 18126;
    let Some((_server, dir)) = smtp_server(port, &["--auth", "backups:relaypassword"]) else {
        return;
    };
    let mut f = Fixture::new(false);
    let n = smtp_notification(
        port,
        json!({"credentials": {"username": "backups", "password": "relaypassword"}, "from": "Backups <backups@example.com>"}),
    );
    let run = f.run(vec![n]);
    run.assert_code(0);
    let m = mails(dir.path(), 1);
    assert_eq!(m[0]["authenticated"], true);
    assert_eq!(m[0]["login"], "backups");
    assert_eq!(m[0]["mail_from"], "backups@example.com");
    assert!(!run.all_text().contains("relaypassword"));
    // A wrong password: the mail is not sent, the notifier fails, the password is not shown.
    let mut g = Fixture::new(false);
    let n = smtp_notification(
        port,
        json!({"credentials": {"username": "backups", "password": "wrongpassword"}}),
    );
    let run = g.run(vec![n]);
    run.assert_code(1);
    let out = run.stdout_text();
    assert!(out.contains("www     disk         ok"), "{out}");
    assert!(
        out.contains("- -> notify:smtp: SMTP 127.0.0.1:18126: "),
        "{out}"
    );
    assert!(!run.all_text().contains("wrongpassword"));
}

/// A CA and a server certificate for 127.0.0.1, written to `dir`: (ca, cert, key).
fn pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    fs::write(&paths.0, ca.pem()).unwrap();
    fs::write(&paths.1, cert.pem()).unwrap();
    fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

#[test]
fn smtp_starttls_and_implicit_tls_encrypt_before_the_mail() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = pki(certs.path());
    let (cert_s, key_s) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let Some((_a, starttls)) = smtp_server(18127, &["--starttls", cert_s, key_s, "--auth", "u:p"])
    else {
        return;
    };
    let Some((_b, implicit)) = smtp_server(18128, &["--ssl", cert_s, key_s]) else {
        return;
    };
    let mut f = Fixture::new(false);
    f.run(vec![
        smtp_notification(
            18127,
            json!({"use_tls": 1, "ca_file": ca, "credentials": {"username": "u", "password": "p"}}),
        ),
        smtp_notification(18128, json!({"use_ssl": 1, "ca_file": ca})),
    ])
    .assert_code(0);
    let m = mails(starttls.path(), 1);
    assert_eq!(
        (m[0]["tls"].as_bool(), m[0]["authenticated"].as_bool()),
        (Some(true), Some(true))
    );
    let m = mails(implicit.path(), 1);
    assert_eq!(m[0]["tls"], true);
    assert!(header(m[0]["data"].as_str().unwrap(), "Subject")
        .unwrap()
        .contains("was successful"));
    // Without the CA the server's certificate is refused: nothing is sent in the clear.
    let mut g = Fixture::new(false);
    let run = g.run(vec![smtp_notification(18127, json!({"use_tls": 1}))]);
    run.assert_code(1);
    assert!(
        run.stdout_text()
            .contains("notify:smtp: SMTP 127.0.0.1:18127: "),
        "{}",
        run.describe()
    );
    assert!(!starttls.path().join("2.json").exists());
}

/// SIGTERM mid-run: `backup` still reports the interrupted source to the notifiers (quickly),
/// then exits 143.
#[test]
fn an_interrupted_run_still_notifies_its_failure() {
    let rx = Receiver::start(Behaviour::default());
    let dir = tempfile::tempdir().unwrap();
    let bin_dir = dir.path().join("bin");
    fs::create_dir_all(&bin_dir).unwrap();
    // A stand-in mysqldump that says it started, then stalls.
    let script = bin_dir.join("mysqldump");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\ntouch {}/started\nexec sleep 600\n",
            dir.path().display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let mut job = Job::new(dir.path());
    job.source(
        json!({"id": "db", "name": "App DB", "type": "mysql", "dbname": "app",
                      "passphrase": PASSPHRASE}),
    )
    .destination(local_destination("disk", &dir.path().join("store")))
    .set(
        "notifications",
        json!([both(json!({"type": "slack", "url": rx.url("/hook")}))]),
    );
    let cfg = job.write();
    let mut path = std::ffi::OsString::from(&bin_dir);
    path.push(":");
    path.push(std::env::var_os("PATH").unwrap_or_default());
    let child = Command::new(bin())
        .arg(&cfg)
        .env("PATH", path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(Duration::from_secs(60), "the stand-in to start", || {
        dir.path().join("started").exists()
    });
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let out = wait_with_deadline(child, Duration::from_secs(60), "interrupted run");
    assert_eq!(
        out.status.code(),
        Some(143),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let msg = one(&rx.at("/hook"), "slack").json()["text"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        msg.starts_with("Backup of 'App DB' (mysql) on 'testhost' failed: source 'db': "),
        "{msg}"
    );
    assert!(msg.contains("interrupted by signal"), "{msg}");
}
