//! Harness for the haproxysessionmon integration tests: a real HAProxy (through the repo's
//! `scripts/haproxy-test-server.sh`) with sessions held open, the real binary, and local
//! receivers in place of Graylog (GELF over UDP and TCP) and the PRTG probe (HTTP). Every wait
//! polls against a deadline.

#![allow(dead_code)] // each test binary uses a different part of this module

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// Each test binary uses a different part of these.
#[allow(unused_imports)]
pub use custos_testkit::{
    free_port, http_get, require, run_with_deadline, strip_ansi, wait_for, Metrics,
};

/// The binary cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_haproxysessionmon");
pub const STATS_USER: &str = "admin";
pub const STATS_PASS: &str = "s3cret";

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/haproxy-test-server.sh")
}

// ---------------------------------------------------------------------------------------------
// HAProxy

/// A throw-away HAProxy on free loopback ports; stopped when dropped.
pub struct Haproxy {
    pub base: PathBuf,
    pub stats_port: u16,
    pub tcp_port: u16,
    pub web_port: u16,
    /// The TLS stats port, when started with TLS ([`Haproxy::start_tls`]).
    pub tls_port: Option<u16>,
    holder: Holder,
    held: Mutex<Vec<TcpStream>>,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    /// Starts one with the stats page behind `admin:s3cret`; `None` (after a SKIP, or a
    /// failure under CUSTOS_REQUIRE_SERVICES=1) without haproxy.
    pub fn start() -> Option<Haproxy> {
        Haproxy::start_with(Some((STATS_USER, STATS_PASS)))
    }

    /// As [`Haproxy::start`], also serving the stats page over TLS (CA in [`Haproxy::tls_ca`]).
    pub fn start_tls() -> Option<Haproxy> {
        Haproxy::start_opts(Some((STATS_USER, STATS_PASS)), true)
    }

    /// As [`Haproxy::start`] with other stats credentials (`None`: no authentication).
    pub fn start_with(auth: Option<(&str, &str)>) -> Option<Haproxy> {
        Haproxy::start_opts(auth, false)
    }

    fn start_opts(auth: Option<(&str, &str)>, tls: bool) -> Option<Haproxy> {
        require("haproxy", "haproxy")?;
        let dir = tempfile::tempdir().expect("tempdir");
        let holder = Holder::start();
        let h = Haproxy {
            base: dir.path().join("haproxy"),
            stats_port: free_port(),
            tcp_port: free_port(),
            web_port: free_port(),
            tls_port: tls.then(free_port),
            holder,
            held: Mutex::new(Vec::new()),
            _dir: dir,
        };
        let (user, pass) = auth.unwrap_or(("", ""));
        let tls_port = h.tls_port.map(|p| p.to_string()).unwrap_or_default();
        let env = [
            ("NO_AUTH", if auth.is_some() { "0" } else { "1" }),
            ("STATS_USER", user),
            ("STATS_PASS", pass),
            ("TLS_PORT", tls_port.as_str()),
        ];
        let out = h.script(&["start"], &env);
        assert!(
            out.status.success(),
            "haproxy-test-server.sh start failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Some(h)
    }

    fn script(&self, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
        let mut cmd = Command::new("bash");
        cmd.arg(script())
            .args(args)
            .env("BASE", &self.base)
            .env("STATS_PORT", self.stats_port.to_string())
            .env("TCP_PORT", self.tcp_port.to_string())
            .env("WEB_PORT", self.web_port.to_string())
            .env("ORIGIN_PORT", free_port().to_string())
            .env("HOLD_PORT", self.holder.port.to_string());
        for (k, v) in env {
            cmd.env(k, v);
        }
        run_with_deadline(&mut cmd, Duration::from_secs(60))
    }

    /// The `;csv` URL of the stats page (the original README's path).
    pub fn csv_url(&self) -> String {
        format!("http://127.0.0.1:{}/haproxy?stats;csv", self.stats_port)
    }

    /// The `;csv` URL of the TLS stats page.
    pub fn tls_url(&self) -> String {
        format!(
            "https://127.0.0.1:{}/haproxy?stats;csv",
            self.tls_port.expect("started with TLS")
        )
    }

    /// The CA that signed the TLS stats page's certificate.
    pub fn tls_ca(&self) -> PathBuf {
        self.base.join("tls/ca.pem")
    }

    pub fn socket(&self) -> PathBuf {
        self.base.join("admin.sock")
    }

    /// Opens `n` more TCP sessions through fe_tcp -> be_tcp and waits until HAProxy itself
    /// (`show stat` on its socket) counts all held sessions on be_tcp.
    pub fn hold_sessions(&self, n: usize) -> u64 {
        let mut held = self.held.lock().unwrap();
        for _ in 0..n {
            let s = TcpStream::connect(("127.0.0.1", self.tcp_port)).expect("connect fe_tcp");
            held.push(s);
        }
        let want = held.len() as u64;
        drop(held);
        wait_for(
            "HAProxy to count the held sessions",
            Duration::from_secs(20),
            || (self.scur("be_tcp", "BACKEND") == Some(want)).then_some(want),
        )
    }

    /// `scur` of one row as HAProxy reports it on its runtime socket (the reference).
    pub fn scur(&self, proxy: &str, svname: &str) -> Option<u64> {
        let text = self.show_stat();
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next()?.trim_start_matches("# ").split(',').collect();
        let col = |n: &str| header.iter().position(|h| *h == n);
        let (px, sv, sc) = (col("pxname")?, col("svname")?, col("scur")?);
        lines
            .map(|l| l.split(',').collect::<Vec<_>>())
            .find(|f| f.len() > sc && f[px] == proxy && f[sv] == svname)
            .and_then(|f| f[sc].parse().ok())
    }

    pub fn show_stat(&self) -> String {
        let mut s = UnixStream::connect(self.socket()).expect("connect admin.sock");
        s.write_all(b"show stat\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.script(&["stop"], &[]);
        self.holder.stop();
    }
}

/// The "server" behind be_tcp: accepts connections and keeps them open until stopped.
struct Holder {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl Holder {
    fn start() -> Holder {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        l.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let st = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut conns = Vec::new();
            while !st.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((c, _)) => conns.push(c),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Holder { port, stop }
    }

    fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

// ---------------------------------------------------------------------------------------------
// haproxysessionmon

/// A running haproxysessionmon; killed when dropped.
pub struct Monitor {
    child: Child,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    stderr: PathBuf,
}

impl Monitor {
    /// Writes `yaml` to a config file and starts the binary with `-c`.
    pub fn start(yaml: &str) -> Monitor {
        Monitor::start_with(yaml, true)
    }

    /// As [`Monitor::start`]; `by_flag: false` passes the path in `HAPROXYSM_CONFIG_FILE`.
    pub fn start_with(yaml: &str, by_flag: bool) -> Monitor {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("haproxysessionmon.yml");
        std::fs::write(&config, yaml).unwrap();
        let stderr = dir.path().join("stderr");
        let mut cmd = Command::new(BIN);
        if by_flag {
            cmd.arg("-c").arg(&config);
        } else {
            cmd.env("HAPROXYSM_CONFIG_FILE", &config);
        }
        let child = cmd
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("spawn haproxysessionmon");
        Monitor {
            child,
            dir,
            config,
            stderr,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        strip_ansi(&std::fs::read_to_string(&self.stderr).unwrap_or_default())
    }

    /// Waits up to `timeout` for the process to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let ok = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -TERM {}", self.pid());
        self.wait_exit(timeout)
    }

    /// The peak resident memory so far (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/PID/status")
    }

    pub fn assert_alive(&mut self) {
        if let Ok(Some(s)) = self.child.try_wait() {
            panic!("haproxysessionmon exited ({s}); log:\n{}", self.log());
        }
    }

    /// Polls `/metrics` at `addr` until `f` accepts it.
    pub fn wait_metrics<T>(
        &mut self,
        addr: SocketAddr,
        what: &str,
        mut f: impl FnMut(&Metrics) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            self.assert_alive();
            let m = http_get(addr, "/metrics", None)
                .ok()
                .filter(|r| r.status == 200)
                .map(|r| Metrics::parse(&r.body));
            if let Some(v) = m.as_ref().and_then(&mut f) {
                return v;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}\n--- /metrics:\n{}\n--- log:\n{}",
                    m.map(|m| m.text).unwrap_or_default(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// receivers

/// A GELF receiver: UDP datagrams (chunks reassembled, gzip/zlib inflated) or a TCP stream of
/// `\0`-terminated messages; every message parsed as JSON.
pub struct GelfReceiver {
    pub port: u16,
    messages: Arc<Mutex<Vec<serde_json::Value>>>,
    /// Datagrams that were chunks (to prove chunking happened).
    pub chunks: Arc<Mutex<usize>>,
}

impl GelfReceiver {
    pub fn udp() -> GelfReceiver {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = sock.local_addr().unwrap().port();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let chunks = Arc::new(Mutex::new(0));
        let (m, c) = (Arc::clone(&messages), Arc::clone(&chunks));
        std::thread::spawn(move || {
            let mut partial: HashMap<[u8; 8], Vec<Option<Vec<u8>>>> = HashMap::new();
            let mut buf = vec![0u8; 65536];
            while let Ok(n) = sock.recv(&mut buf) {
                let d = &buf[..n];
                let whole = if d.len() >= 12 && d[..2] == [0x1e, 0x0f] {
                    *c.lock().unwrap() += 1;
                    let id: [u8; 8] = d[2..10].try_into().unwrap();
                    let (seq, count) = (d[10] as usize, d[11] as usize);
                    let parts = partial.entry(id).or_insert_with(|| vec![None; count]);
                    parts[seq] = Some(d[12..].to_vec());
                    if parts.iter().all(Option::is_some) {
                        let p = partial.remove(&id).unwrap();
                        p.into_iter().flatten().flatten().collect()
                    } else {
                        continue;
                    }
                } else {
                    d.to_vec()
                };
                m.lock().unwrap().push(decode(&whole));
            }
        });
        GelfReceiver {
            port,
            messages,
            chunks,
        }
    }

    pub fn tcp() -> GelfReceiver {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let m = Arc::clone(&messages);
        std::thread::spawn(move || {
            for conn in l.incoming().flatten() {
                let m = Arc::clone(&m);
                std::thread::spawn(move || {
                    let mut r = BufReader::new(conn);
                    let mut msg = Vec::new();
                    while r.read_until(0, &mut msg).unwrap_or(0) > 0 {
                        if msg.last() == Some(&0) {
                            msg.pop();
                            m.lock().unwrap().push(decode(&msg));
                        }
                        msg.clear();
                    }
                });
            }
        });
        GelfReceiver {
            port,
            messages,
            chunks: Arc::default(),
        }
    }

    pub fn messages(&self) -> Vec<serde_json::Value> {
        self.messages.lock().unwrap().clone()
    }

    /// Waits for a message from `host` about the backend row of `proxy` whose `_sessions` is
    /// `sessions`.
    pub fn wait_sessions(&self, host: &str, proxy: &str, sessions: u64) -> serde_json::Value {
        wait_for(
            &format!("a GELF message from {host} with {proxy} at {sessions} sessions"),
            Duration::from_secs(30),
            || {
                self.messages().into_iter().find(|m| {
                    m["host"] == host
                        && m["_backend"] == proxy
                        && m["_row_type"] == "backend"
                        && m["_sessions"] == sessions
                })
            },
        )
    }
}

/// JSON from a GELF payload: plain, gzip or zlib.
fn decode(payload: &[u8]) -> serde_json::Value {
    let text = match payload {
        [0x1f, 0x8b, ..] => {
            let mut s = String::new();
            flate2::read::GzDecoder::new(payload)
                .read_to_string(&mut s)
                .expect("gunzip GELF");
            s
        }
        [0x78, ..] => {
            let mut s = String::new();
            flate2::read::ZlibDecoder::new(payload)
                .read_to_string(&mut s)
                .expect("inflate GELF");
            s
        }
        _ => String::from_utf8(payload.to_vec()).expect("GELF is UTF-8"),
    };
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("GELF not JSON ({e}): {text}"))
}

/// One request an [`HttpStub`] received.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path and query as sent.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// What an [`HttpStub`] answers: status and body, after an optional delay.
pub type Responder = Arc<dyn Fn(&Request) -> (u16, String, Duration) + Send + Sync>;

/// A local HTTP/1.1 server that records requests and answers with a responder: the PRTG probe
/// and the broken stats pages of the fault tests.
pub struct HttpStub {
    pub port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl HttpStub {
    pub fn start(responder: Responder) -> HttpStub {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let r = Arc::clone(&requests);
        std::thread::spawn(move || {
            for conn in l.incoming().flatten() {
                let (r, responder) = (Arc::clone(&r), Arc::clone(&responder));
                std::thread::spawn(move || serve_one(conn, &r, &*responder));
            }
        });
        HttpStub { port, requests }
    }

    /// A stub answering every request with `status` and `body`.
    pub fn fixed(status: u16, body: &str) -> HttpStub {
        let body = body.to_string();
        HttpStub::start(Arc::new(move |_| (status, body.clone(), Duration::ZERO)))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    pub fn wait_request(&self, what: &str, f: impl Fn(&Request) -> bool) -> Request {
        wait_for(what, Duration::from_secs(30), || {
            self.requests().into_iter().find(|r| f(r))
        })
    }
}

fn serve_one(
    conn: TcpStream,
    log: &Mutex<Vec<Request>>,
    responder: &(dyn Fn(&Request) -> (u16, String, Duration) + Send + Sync),
) {
    let mut r = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, target) = (
            parts.next().unwrap_or("").to_string(),
            parts.next().unwrap_or("").to_string(),
        );
        let mut headers = Vec::new();
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
                if k == "content-length" {
                    len = v.parse().unwrap_or(0);
                }
                headers.push((k, v));
            }
        }
        let mut body = vec![0u8; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let req = Request {
            method,
            target,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        };
        let (status, text, delay) = responder(&req);
        log.lock().unwrap().push(req);
        std::thread::sleep(delay);
        let resp = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{text}",
            text.len()
        );
        if r.get_mut().write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

/// Percent-decodes a query value (`+` is a space).
pub fn urldecode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let h = u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap_or(b'?');
                out.push(h);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
