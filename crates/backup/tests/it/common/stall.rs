//! A destination that takes no bytes, and the per-destination upload time of a run's log:
//! what the stalled-destination tests of each remote type share.

use std::net::TcpListener;

/// A server that accepts connections and never reads from them or answers.
pub fn stalled_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in listener.incoming().flatten() {
            held.push(c);
        }
    });
    port
}

/// `upload_seconds` of the `stored` log line (`-v`) of `destination`.
pub fn upload_seconds(log: &str, destination: &str) -> f64 {
    let line = log
        .lines()
        .find(|l| l.contains("stored") && l.contains(&format!("destination={destination} ")))
        .unwrap_or_else(|| panic!("no stored line for {destination}:\n{log}"));
    line.split_whitespace()
        .find_map(|w| {
            w.strip_prefix("upload_seconds=")
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or_else(|| panic!("no upload_seconds in {line}"))
}
