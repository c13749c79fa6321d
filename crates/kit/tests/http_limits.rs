//! The kit's HTTP server against hostile clients: slowloris, silent and idle connections,
//! clients that stop reading, more connections than the cap, and shutdown with a stalled
//! client. Limits are shortened so each test takes about a second.

use custos_kit::exposition::Exposition;
use custos_kit::http::{router, serve_listener, Limits};
use custos_testkit::{http_get, wait_for};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A server on a free port with `limits`, and `series` gauges to make `/metrics` as big as needed.
struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: std::sync::mpsc::Receiver<Duration>,
    _rt: std::thread::JoinHandle<()>,
}

impl Server {
    fn start(limits: Limits, series: usize) -> Server {
        let mut reg = Registry::default();
        for i in 0..series {
            let g: Gauge = Gauge::default();
            g.set(i as i64);
            reg.register(
                format!("kit_test_padding_{i}"),
                "Padding to make a big body",
                g,
            );
        }
        let app = router(Arc::new(Exposition::uncached(reg)), || {
            custos_kit::html::Page::new("t").finish()
        });
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (done_tx, done) = std::sync::mpsc::channel();
        let rt = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
                let (signal_tx, signal_rx) = tokio::sync::oneshot::channel::<Instant>();
                let shutdown = async move {
                    let _ = stop_rx.await;
                    let _ = signal_tx.send(Instant::now());
                };
                serve_listener(listener, app, shutdown, limits)
                    .await
                    .unwrap();
                let t = signal_rx.await.unwrap();
                let _ = done_tx.send(t.elapsed());
            });
        });
        Server {
            addr,
            stop: Some(stop_tx),
            done,
            _rt: rt,
        }
    }

    fn metrics(&self) -> String {
        let r = http_get(self.addr, "/metrics", None).unwrap();
        assert_eq!(r.status, 200);
        r.body
    }

    /// The value of an unlabelled sample in `/metrics`.
    fn sample(&self, name: &str) -> f64 {
        let body = self.metrics();
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} not in {body}"))
    }

    /// Signals shutdown; returns how long serving took to end after it.
    fn shutdown(mut self) -> Duration {
        self.stop.take().unwrap().send(()).unwrap();
        self.done.recv_timeout(Duration::from_secs(30)).unwrap()
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// Reads until the server closes; returns what it sent and when it closed.
fn read_until_closed(s: &mut TcpStream) -> (Vec<u8>, Instant) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (got, Instant::now()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return (got, Instant::now())
            }
            Err(e) => panic!("server did not close the connection: {e}"),
        }
    }
}

/// `custos_http_connections_refused_total` in an exposition.
fn refused_total(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("custos_http_connections_refused_total "))
        .and_then(|v| v.trim().parse().ok())
}

fn short(header_read_timeout: Duration) -> Limits {
    Limits {
        header_read_timeout,
        write_stall_timeout: Duration::from_secs(1),
        max_connections: 64,
        max_connections_per_ip: 64,
        shutdown_grace: Duration::from_secs(1),
    }
}

#[test]
fn partial_header_silent_and_idle_clients_are_closed_within_the_timeout() {
    let timeout = Duration::from_millis(1000);
    let srv = Server::start(short(timeout), 0);
    let t0 = Instant::now();
    let mut silent = connect(srv.addr);
    let mut partial = connect(srv.addr);
    partial
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .unwrap();
    // A keep-alive client that asks once, reads its answer and then says nothing more.
    let mut idle = connect(srv.addr);
    idle.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    let idle_from = Instant::now();
    // Meanwhile a normal client is served.
    assert!(srv.metrics().contains("custos_http_connections_open 4"));

    let (_, silent_closed) = read_until_closed(&mut silent);
    let (answer, partial_closed) = read_until_closed(&mut partial);
    let (_, idle_closed) = read_until_closed(&mut idle);
    let slack = Duration::from_secs(3);
    for (what, from, closed) in [
        ("silent", t0, silent_closed),
        ("partial header", t0, partial_closed),
        ("idle keep-alive", idle_from, idle_closed),
    ] {
        let took = closed - from;
        assert!(
            took <= timeout + slack,
            "{what} client closed after {took:?}"
        );
    }
    // Not closed early either: the timeout is what closed them.
    assert!(silent_closed - t0 >= timeout - Duration::from_millis(100));
    assert!(
        answer.is_empty() || answer.starts_with(b"HTTP/1.1 408"),
        "{answer:?}"
    );
    wait_for("only the scrape open", Duration::from_secs(3), || {
        (srv.sample("custos_http_connections_open") == 1.0).then_some(())
    });
    srv.shutdown();
}

#[test]
fn client_that_stops_reading_is_closed() {
    // ~10 MB of exposition: more than loopback socket buffers hold.
    let srv = Server::start(short(Duration::from_secs(30)), 80_000);
    let mut stalled = connect(srv.addr);
    stalled
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let t0 = Instant::now();
    // It never reads; the write stall timeout (1 s) ends its connection.
    wait_for("stalled reader closed", Duration::from_secs(20), || {
        (srv.sample("custos_http_connections_open") == 1.0).then_some(())
    });
    let (got, _) = read_until_closed(&mut stalled);
    assert!(got.starts_with(b"HTTP/1.1 200"));
    assert!(t0.elapsed() >= Duration::from_millis(900));
    drop(stalled);
    srv.shutdown();
}

#[test]
fn client_beyond_the_cap_is_refused_and_counted() {
    let limits = Limits {
        max_connections: 3,
        ..short(Duration::from_secs(30))
    };
    let srv = Server::start(limits, 0);
    // Two silent clients hold two of three slots; a scrape still gets the third.
    let _a = connect(srv.addr);
    let _b = connect(srv.addr);
    wait_for("two held connections", Duration::from_secs(5), || {
        (srv.sample("custos_http_connections_open") == 3.0).then_some(())
    });
    // The third slot: a keep-alive client that was answered holds it. (Until the server has
    // reaped the scrape above, a newcomer may still be refused: then try again.)
    let mut c = None;
    wait_for(
        "a third client holds a slot",
        Duration::from_secs(5),
        || {
            let mut s = connect(srv.addr);
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut status = [0u8; 12];
            let held = s.read_exact(&mut status).is_ok() && &status == b"HTTP/1.1 200";
            if held {
                c = Some(s);
            }
            held.then_some(())
        },
    );
    let mut c = c.unwrap();
    // All three slots taken now: the next client is refused at once with a 503.
    let t0 = Instant::now();
    let mut refused = connect(srv.addr);
    let (answer, closed) = read_until_closed(&mut refused);
    assert!(closed - t0 < Duration::from_secs(3), "refused promptly");
    assert!(answer.starts_with(b"HTTP/1.1 503"), "{answer:?}");
    // Meanwhile the client on its kept-alive connection (as Prometheus keeps one) is still
    // answered, and sees the refusal counted.
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (rest, _) = read_until_closed(&mut c);
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.contains("HTTP/1.1 200"), "{rest}");
    assert!(refused_total(&rest) >= Some(1), "{rest}");
    // The slot of a client that leaves is free again for a scrape, while the others still hold theirs.
    drop(c);
    // (Each scrape is checked on its own answer: back-to-back scrapes could meet the cap
    // until the server has reaped the previous one.)
    let body = wait_for("scrape after a slot freed", Duration::from_secs(5), || {
        http_get(srv.addr, "/metrics", None)
            .ok()
            .filter(|r| r.status == 200)
            .map(|r| r.body)
    });
    assert!(refused_total(&body) >= Some(1), "{body}");
    assert!(body.contains("custos_http_connections_open 3\n"), "{body}");
    srv.shutdown();
}

/// A connection to `addr` from the loopback address `from` (all of 127/8 is loopback).
fn connect_from(from: [u8; 4], addr: SocketAddr) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::from((from, 0)).into()).unwrap();
    s.connect(&addr.into()).unwrap();
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

#[test]
fn one_address_cannot_take_the_slots_of_another() {
    let limits = Limits {
        max_connections: 8,
        max_connections_per_ip: 2,
        ..short(Duration::from_secs(30))
    };
    let srv = Server::start(limits, 0);
    // A flood from 127.0.0.3: two held, every further one refused at once.
    let _a = connect_from([127, 0, 0, 3], srv.addr);
    let _b = connect_from([127, 0, 0, 3], srv.addr);
    wait_for("two held connections", Duration::from_secs(5), || {
        (srv.sample("custos_http_connections_open") == 3.0).then_some(())
    });
    for _ in 0..5 {
        let mut more = connect_from([127, 0, 0, 3], srv.addr);
        let (answer, _) = read_until_closed(&mut more);
        assert!(answer.starts_with(b"HTTP/1.1 503"), "{answer:?}");
    }
    // Meanwhile a scraper elsewhere (127.0.0.1) opens new connections and is answered.
    let body = srv.metrics();
    assert_eq!(refused_total(&body), Some(5), "{body}");
    srv.shutdown();
}

#[test]
fn shutdown_with_a_stalled_client_ends_within_the_grace() {
    let srv = Server::start(short(Duration::from_secs(30)), 0);
    let mut partial = connect(srv.addr);
    partial
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    // A served scrape first: the partial request is surely being read by now.
    wait_for("partial client accepted", Duration::from_secs(5), || {
        (srv.sample("custos_http_connections_open") == 2.0).then_some(())
    });
    let took = srv.shutdown();
    // The grace is 1 s: hyper waits for the unfinished request until then, not longer.
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert!(took < Duration::from_secs(4), "{took:?}");
    let (_, _) = read_until_closed(&mut partial);
}

#[test]
fn openmetrics_has_one_eof_at_the_end() {
    let srv = Server::start(Limits::default(), 1);
    let r = http_get(srv.addr, "/metrics", Some("application/openmetrics-text")).unwrap();
    assert_eq!(r.body.matches("# EOF").count(), 1, "{}", r.body);
    assert!(r.body.ends_with("# EOF\n"));
    assert!(r.body.contains("custos_http_connections_refused_total 0\n"));
    assert!(r.body.contains("kit_test_padding_0 0\n"));
    srv.shutdown();
}
