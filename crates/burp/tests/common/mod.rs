//! Harness for the integration tests: a real burp server (started through the repo's
//! `scripts/burp-test-server.sh`), the real `burp_exporter` binary, and a small reader for the
//! text exposition. Every wait polls against a deadline, never a fixed sleep, so the tests are
//! as fast as the machine allows and fail with a message instead of hanging.

#![allow(dead_code)] // each test binary uses a different part of this module

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

// Each test binary uses a different part of these.
#[allow(unused_imports)]
pub use custos_testkit::{
    find_binary, free_port, http_get, missing, require, run_with_deadline, strip_ansi, urlencode,
    wait_for, Metrics,
};

/// The exporter binary cargo built for these tests.
pub const EXPORTER: &str = env!("CARGO_BIN_EXE_burp_exporter");

/// Repository root (the crate lives in crates/burp).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn script() -> PathBuf {
    repo_root().join("scripts/burp-test-server.sh")
}

// ---------------------------------------------------------------------------------------------
// burp server

/// A throw-away burp server under its own BASE and ports; stopped when the last handle drops.
///
/// BASE lives in cargo's target tmp dir and is kept between runs: the CA, certificates and
/// first backup are made once (about 12 s), later starts take about 2 s.
pub struct BurpServer {
    pub name: String,
    pub base: PathBuf,
    pub port: u16,
    pub status_port: u16,
    env: Vec<(String, String)>,
}

impl BurpServer {
    /// Starts (or restarts) the server called `name` with fresh ports.
    pub fn start(name: &str, extra_env: &[(&str, &str)]) -> BurpServer {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("burp-{name}"));
        let mut s = BurpServer {
            name: name.to_string(),
            base,
            port: free_port(),
            status_port: free_port(),
            env: extra_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        if s.port == s.status_port {
            s.status_port = free_port();
        }
        let out = s.script(&["start"], Duration::from_secs(180));
        assert!(
            out.status.success(),
            "burp-test-server.sh start failed for {name}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        s
    }

    /// A server shared by the tests of one binary that only read from it; it runs while at
    /// least one test holds the `Arc`.
    pub fn shared(name: &str) -> Arc<BurpServer> {
        static SHARED: OnceLock<Mutex<HashMap<String, Weak<BurpServer>>>> = OnceLock::new();
        let map = SHARED.get_or_init(|| Mutex::new(HashMap::new()));
        let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = map.get(name).and_then(Weak::upgrade) {
            return s;
        }
        let s = Arc::new(BurpServer::start(name, &[]));
        map.insert(name.to_string(), Arc::downgrade(&s));
        s
    }

    /// Runs `scripts/burp-test-server.sh <args>` for this server.
    pub fn script(&self, args: &[&str], timeout: Duration) -> Output {
        let mut cmd = Command::new("bash");
        cmd.arg(script())
            .args(args)
            .env("BASE", &self.base)
            .env("PORT", self.port.to_string())
            .env("STATUS_PORT", self.status_port.to_string());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        run_with_deadline(&mut cmd, timeout)
    }

    fn script_ok(&self, args: &[&str], timeout: Duration) -> String {
        let out = self.script(args, timeout);
        assert!(
            out.status.success(),
            "burp-test-server.sh {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn stop(&self) {
        self.script_ok(&["stop"], Duration::from_secs(30));
    }

    /// Starts the stopped server again on the same ports (no new backup).
    pub fn restart(&self) {
        self.script_ok(&["restart"], Duration::from_secs(60));
    }

    /// Starts a backup of testclient in the background that lasts about `seconds` (it reads
    /// fifos the script feeds slowly) after `mib` MiB of random data; returns once the server
    /// reports it running.
    pub fn slow_backup(&self, mib: u32, seconds: u32) {
        let out = {
            let mut cmd = Command::new("bash");
            cmd.arg(script())
                .arg("slow-backup")
                .env("BASE", &self.base)
                .env("PORT", self.port.to_string())
                .env("STATUS_PORT", self.status_port.to_string())
                .env("SLOW_MB", mib.to_string())
                .env("SLOW_SECONDS", seconds.to_string());
            run_with_deadline(&mut cmd, Duration::from_secs(120))
        };
        assert!(
            out.status.success(),
            "slow-backup failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn wait_idle(&self) {
        self.script_ok(&["wait-idle"], Duration::from_secs(620));
    }

    /// What the server reports to the monitor client for `c:<client>` (`""`: all clients),
    /// as JSON, read with burp's own client (`burp -a m`), not with our code.
    pub fn status_json(&self, client: &str) -> serde_json::Value {
        let text = self.script_ok(&["json", client], Duration::from_secs(60));
        let line = text
            .lines()
            .find(|l| l.starts_with('{'))
            .unwrap_or_else(|| {
                panic!("no JSON from burp -a m for c:{client}; got {text:?}");
            });
        serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON {line:?}: {e}"))
    }

    /// The monitor client's credentials, as a `clients:` entry of the exporter config.
    pub fn client_entry(&self, name: &str) -> ClientEntry {
        let m = self.base.join("client-monitor");
        ClientEntry {
            name: name.to_string(),
            burp_host: "127.0.0.1".into(),
            burp_port: self.status_port,
            burp_cname: "burpserver".into(),
            cname: "monitor".into(),
            password: "monitorpass".into(),
            tls_ca_cert: m.join("ssl_cert_ca.pem"),
            tls_cert: m.join("ssl_cert-client.pem"),
            tls_key: m.join("ssl_cert-client.key"),
        }
    }
}

impl Drop for BurpServer {
    fn drop(&mut self) {
        let _ = self.script(&["stop"], Duration::from_secs(30));
    }
}

// ---------------------------------------------------------------------------------------------
// exporter config and process

/// One entry of the original's `clients:` list (one burp server to watch).
#[derive(Clone, Debug)]
pub struct ClientEntry {
    pub name: String,
    pub burp_host: String,
    pub burp_port: u16,
    pub burp_cname: String,
    pub cname: String,
    pub password: String,
    pub tls_ca_cert: PathBuf,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
}

/// Writes the exporter's YAML config (the original's format) with a 1 s refresh interval;
/// `extra` is more top-level YAML (e.g. `connect_timeout_seconds: 2`).
pub fn write_config(dir: &Path, bind_port: u16, clients: &[ClientEntry], extra: &str) -> PathBuf {
    let mut y = format!(
        "bind_address: 127.0.0.1\nbind_port: {bind_port}\nrefresh_interval_seconds: 1\n{extra}\nclients:\n"
    );
    for c in clients {
        let _ = write!(
            y,
            "  - name: {}\n    burp_host: {}\n    burp_port: {}\n    burp_cname: {}\n    \
             cname: {}\n    password: {}\n    tls_ca_cert: {}\n    tls_cert: {}\n    \
             tls_key: {}\n",
            c.name,
            c.burp_host,
            c.burp_port,
            c.burp_cname,
            c.cname,
            c.password,
            c.tls_ca_cert.display(),
            c.tls_cert.display(),
            c.tls_key.display()
        );
    }
    let path = dir.join("burp_exporter.yaml");
    std::fs::write(&path, y).expect("write config");
    // The exporter warns about configs with passwords readable by others.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
    }
    path
}

/// A running `burp_exporter`; killed when dropped. Its stderr goes to a file the test reads.
pub struct Exporter {
    child: Child,
    pub addr: SocketAddr,
    pub stderr: PathBuf,
    _dir: tempfile::TempDir,
}

impl Exporter {
    /// Starts the exporter on a free port for these servers and waits until `/metrics` answers.
    pub fn start(clients: &[ClientEntry]) -> Exporter {
        Exporter::start_with(clients, "")
    }

    /// As [`Exporter::start`], with more top-level config YAML.
    pub fn start_with(clients: &[ClientEntry], extra: &str) -> Exporter {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let config = write_config(dir.path(), port, clients, extra);
        let stderr = dir.path().join("stderr");
        let child = Command::new(EXPORTER)
            .arg("-c")
            .arg(&config)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("spawn burp_exporter");
        let mut e = Exporter {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            stderr,
            _dir: dir,
        };
        wait_for(
            "burp_exporter to serve /metrics",
            Duration::from_secs(30),
            || {
                e.assert_alive();
                http_get(e.addr, "/metrics", None)
                    .ok()
                    .filter(|r| r.status == 200)
            },
        );
        e
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM (as `systemctl stop` does) and waits up to `timeout` for the exit;
    /// returns its status and how long it took.
    pub fn terminate(&mut self, timeout: Duration) -> (ExitStatus, Duration) {
        let t0 = Instant::now();
        let kill = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(kill.success(), "kill -TERM failed");
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for burp_exporter") {
                return (status, t0.elapsed());
            }
            assert!(
                t0.elapsed() < timeout,
                "burp_exporter still running {timeout:?} after SIGTERM; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Panics (with the log) if the process has exited, e.g. after a panic.
    pub fn assert_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("burp_exporter exited ({status}); stderr:\n{}", self.log());
        }
    }

    /// Everything the exporter logged so far, without terminal colour codes.
    pub fn log(&self) -> String {
        strip_ansi(&std::fs::read_to_string(&self.stderr).unwrap_or_default())
    }

    /// GET `path`; asserts 200 and that it answered within 5 s (a scrape must never hang on
    /// a slow or dead burp server).
    pub fn get(&mut self, path: &str) -> String {
        self.assert_alive();
        let t = Instant::now();
        let r = http_get(self.addr, path, None)
            .unwrap_or_else(|e| panic!("GET {path}: {e}; log:\n{}", self.log()));
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "GET {path} took {:?}",
            t.elapsed()
        );
        assert_eq!(r.status, 200, "GET {path}: {}", r.body);
        r.body
    }

    pub fn metrics(&mut self) -> Metrics {
        Metrics::parse(&self.get("/metrics"))
    }

    /// Polls /metrics until `f` accepts it; the panic message shows the last exposition.
    pub fn wait_metrics<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&Metrics) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            let m = self.metrics();
            if let Some(v) = f(&m) {
                return v;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}\n--- last /metrics (burp_*):\n{}\n--- log:\n{}",
                    m.lines_starting("burp_"),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until a log line (lower-cased) satisfies `pred`; returns it.
    pub fn wait_log(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            self.assert_alive();
            let log = self.log();
            if let Some(l) = log.lines().find(|l| pred(&l.to_lowercase())) {
                return l.to_string();
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for a log line about {what}; log:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `burp_exporter --once -c <config>` with a deadline.
pub fn run_once(config: &Path, timeout: Duration) -> (ExitStatus, String, String) {
    let out = run_with_deadline(
        Command::new(EXPORTER)
            .arg("--once")
            .arg("-c")
            .arg(config)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG"),
        timeout,
    );
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        strip_ansi(&String::from_utf8_lossy(&out.stderr)),
    )
}

/// Makes a self-signed CA and a `burpserver` certificate signed by it with openssl, so a test
/// can point the exporter at a CA the server's certificate does not chain to.
pub fn openssl_foreign_ca(dir: &Path) -> PathBuf {
    let openssl = find_binary("openssl").expect("openssl (Debian package `openssl`)");
    let ca = dir.join("foreign-ca.pem");
    let key = dir.join("foreign-ca.key");
    let out = run_with_deadline(
        Command::new(openssl)
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args(["-subj", "/CN=foreign test CA"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&ca),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "openssl req failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    ca
}
