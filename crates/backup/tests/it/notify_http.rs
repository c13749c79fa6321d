//! Notifications over HTTP end to end: the real `backup` binary reports a real run to local
//! receivers, each request checked against the service's documented API; the original
//! README's examples; a flag file; and a notifier that fails never hides the backup or stops
//! the others.

use crate::common;

use std::fs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::notify::*;
use common::receiver::{closed_port, Behaviour, Receiver};
use common::*;
use serde_json::json;

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
        body.contains("gone -> disk: source 'gone'") && body.contains("1 of 2 backups succeeded"),
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
        hc[1]
            .text()
            .contains("1 of 1 backups succeeded on testhost"),
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
        kuma.target.starts_with(
            "/api/push/kumatoken?ping=&status=down&msg=1+of+2+backups+succeeded+on+testhost"
        ),
        "{}",
        kuma.target
    );
}

/// The healthchecks service refuses connections for a moment (a restart, a network blip):
/// the start ping is retried until it arrives, the run succeeds, and the other notifier is
/// not held up by the retries.
#[test]
fn a_refused_healthchecks_ping_is_retried_and_arrives() {
    let port = closed_port();
    let later = Receiver::start_later(port, Duration::from_millis(700), Behaviour::default());
    let other = Receiver::start(Behaviour::default());
    let mut f = Fixture::new(false);
    let started = Instant::now();
    let run = f.run(vec![
        json!({"type": "healthchecks", "url": format!("http://127.0.0.1:{port}/ping/hcuuid")}),
        both(json!({"id": "other", "type": "slack", "url": other.url("/hook/x")})),
    ]);
    run.assert_code(0);
    let guard = later.lock().unwrap();
    let rx = guard.as_ref().expect("the receiver listens by now");
    let targets: Vec<String> = rx.at("/ping/").iter().map(|r| r.target.clone()).collect();
    assert_eq!(
        targets,
        ["/ping/hcuuid/start", "/ping/hcuuid"],
        "{}",
        run.describe()
    );
    assert_eq!(other.requests().len(), 1, "{}", run.describe());
    assert!(started.elapsed() < Duration::from_secs(60));
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
    assert!(table.contains("\n3 of 5 notifiers failed\n"), "{table}");
    assert!(table.contains("\n1 of 1 backups succeeded on "), "{table}");
    // The others were notified.
    assert_eq!(good.requests().len(), 1);
    assert!(fs::read_to_string(&flag).unwrap().starts_with("OK "));
    // Secrets in the URLs' paths never reach the output.
    let out = run.all_text();
    for secret in ["downsecret", "brokensecret", "slowsecret", "goodsecret"] {
        assert!(!out.contains(secret), "{secret} leaked: {out}");
    }
}

/// Issue 16.4: the only source fails and Slack delivers its failure: the summary counts one
/// backup, failed (the notifier's delivery was counted as a success: `1 of 2 succeeded`).
#[test]
fn a_delivered_notification_is_not_counted_as_a_backup() {
    let rx = Receiver::start(Behaviour::default());
    let dir = tempfile::tempdir().unwrap();
    let mut job = Job::new(dir.path());
    job.source(json!({"id": "gone", "name": "Gone", "type": "folder",
                      "path": dir.path().join("missing"), "passphrase": PASSPHRASE}))
        .destination(local_destination("disk", &dir.path().join("store")))
        .set(
            "notifications",
            json!([both(json!({"type": "slack", "url": rx.url("/hook")}))]),
        );
    let run = run_job(&job.write());
    run.assert_code(1);
    one(&rx.at("/hook"), "slack got the failure");
    let table = run.stdout_text();
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("- ") && l.contains("notify:slack") && l.contains(" ok")),
        "{table}"
    );
    assert_eq!(
        table.lines().last().and_then(|l| l.split(" on ").next()),
        Some("0 of 1 backups succeeded"),
        "{table}"
    );
    assert!(!table.contains("notifiers failed"), "{table}");
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
