//! A local HTTP/1.1 receiver for notifier tests: records every request (method, path with
//! query, headers, body) and answers with a configured status after an optional delay. Std
//! only, one thread per connection, `Connection: close`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    /// Path and query, as on the request line.
    pub target: String,
    /// Header names lower-cased.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!("body of {} is not JSON ({e}): {}", self.target, self.text())
        })
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
}

/// How the receiver answers.
#[derive(Debug, Clone, Copy)]
pub struct Behaviour {
    pub status: u16,
    pub delay: Duration,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            status: 200,
            delay: Duration::ZERO,
        }
    }
}

/// A running receiver on 127.0.0.1 (an ephemeral port of its own).
pub struct Receiver {
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    pub fn start(b: Behaviour) -> Self {
        Self::serve_on(TcpListener::bind("127.0.0.1:0").expect("bind receiver"), b)
    }

    /// A receiver on `port` of 127.0.0.1, listening only from `after` on (connections before
    /// that are refused); its log fills once it listens.
    pub fn start_later(port: u16, after: Duration, b: Behaviour) -> Arc<Mutex<Option<Self>>> {
        let slot = Arc::new(Mutex::new(None));
        let s2 = slot.clone();
        std::thread::spawn(move || {
            std::thread::sleep(after);
            let l = TcpListener::bind(("127.0.0.1", port)).expect("bind receiver later");
            *s2.lock().unwrap() = Some(Self::serve_on(l, b));
        });
        slot
    }

    fn serve_on(listener: TcpListener, b: Behaviour) -> Self {
        let addr = listener.local_addr().expect("addr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let l2 = log.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let log = l2.clone();
                std::thread::spawn(move || serve(conn, b, &log));
            }
        });
        Receiver { addr, log }
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn requests(&self) -> Vec<Received> {
        self.log.lock().unwrap().clone()
    }

    /// The requests whose path starts with `prefix`.
    pub fn at(&self, prefix: &str) -> Vec<Received> {
        self.requests()
            .into_iter()
            .filter(|r| r.target.starts_with(prefix))
            .collect()
    }
}

fn serve(conn: TcpStream, b: Behaviour, log: &Mutex<Vec<Received>>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let target = parts.next().unwrap_or("").to_owned();
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    log.lock().unwrap().push(Received {
        method,
        target,
        headers,
        body,
    });
    std::thread::sleep(b.delay);
    let reason = if b.status < 400 { "OK" } else { "Error" };
    let answer = if b.status < 400 {
        "{\"ok\":true}"
    } else {
        "boom"
    };
    let mut conn = conn;
    let _ = write!(
        conn,
        "HTTP/1.1 {} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
        b.status,
        answer.len()
    );
    let _ = conn.flush();
}

/// A port on 127.0.0.1 where nothing listens (bound, then closed).
pub fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("ephemeral port")
}
