//! Shared by the notification tests: a job with one good and (optionally) one failing source,
//! the message texts they produce, helpers to pick requests, and real servers as children.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use super::receiver::Received;
use super::*;

/// A job with one good folder source (`www`) and, when `with_failure`, one whose path is
/// missing (`gone`), stored to a local destination.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub job: Job,
}

impl Fixture {
    pub fn new(with_failure: bool) -> Self {
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

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    pub fn run(&mut self, notifications: Vec<Value>) -> Run {
        self.job.set("notifications", Value::Array(notifications));
        run_job(&self.job.write())
    }

    pub fn stored_size(&self) -> u64 {
        fs::metadata(only_object(&self.path("store"), "www"))
            .unwrap()
            .len()
    }
}

pub const SUCCESS: &str = "Backup of 'Web site' (folder) on 'testhost' was successful [size: ";
pub const FAILURE: &str = "Backup of 'Gone' (folder) on 'testhost' failed: source 'gone': ";

pub fn both(mut v: Value) -> Value {
    v["notify_on_success"] = json!(1);
    v["notify_on_failure"] = json!(1);
    v
}

#[track_caller]
pub fn one(reqs: &[Received], what: &str) -> Received {
    assert_eq!(reqs.len(), 1, "{what}: {reqs:#?}");
    reqs[0].clone()
}

/// The two messages (success of `www`, failure of `gone`) a per-source notifier sent, in
/// that order.
#[track_caller]
pub fn two(reqs: Vec<Received>, what: &str) -> (Received, Received) {
    assert_eq!(reqs.len(), 2, "{what}: {reqs:#?}");
    (reqs[0].clone(), reqs[1].clone())
}

/// A child process killed when dropped.
pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The value of the sample line starting with `series ` in a text exposition.
#[track_caller]
pub fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// GET over HTTP/1.0 (the reply ends at EOF).
pub fn http_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
}

const PUSHGATEWAY: &str = "/usr/bin/prometheus-pushgateway";

/// Debian's push gateway on a port of its own, persisting nothing, and that port; `None`
/// (after a loud skip message naming `test`) when it is not installed.
pub fn push_gateway(test: &str) -> Option<(Server, u16)> {
    if !Path::new(PUSHGATEWAY).exists() {
        let msg = format!("{test}: needs Debian prometheus-pushgateway");
        assert!(!services_required(), "CUSTOS_REQUIRE_SERVICES=1 but {msg}");
        eprintln!("SKIP: {msg}");
        return None;
    }
    // Port 0: the port it got is the one its listening socket has.
    let mut child = Command::new(PUSHGATEWAY)
        .args(["--web.listen-address=127.0.0.1:0", "--persistence.file="])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut port = None;
    wait_until(Duration::from_secs(30), "the push gateway listens", || {
        assert!(
            matches!(child.try_wait(), Ok(None)),
            "the push gateway exited"
        );
        port = listening_ports(child.id()).first().copied();
        port.is_some()
    });
    Some((Server(child), port.expect("port")))
}
