//! A moto server started through one of the project's scripts (S3: `moto-test-server.sh`;
//! RDS/EC2 with the patched model: `moto-aws-test-server.py`): it prints `port=<n>` of the
//! port-0 socket it bound, then serves; killed when dropped.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{read_line, services_required, wait_until};

/// A running moto server.
pub struct Moto {
    pub child: Child,
    pub port: u16,
}

impl Moto {
    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `cmd` (a script that prints `port=<n>`); `None` (after a loud SKIP) when it exits 3
/// (moto missing) and CI did not demand the services.
pub fn start(test: &str, mut cmd: Command) -> Option<Moto> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the moto script");
    let mut out = child.stdout.take().expect("stdout");
    let line = read_line(&mut out);
    let Some(port) = line.strip_prefix("port=").and_then(|p| p.parse().ok()) else {
        let status = child.wait().expect("wait");
        let msg =
            format!("{test}: moto server not available ({status}); pip install 'moto[server]'");
        if status.code() == Some(3) && !services_required() {
            eprintln!("SKIP: {msg}");
            return None;
        }
        panic!("{msg}");
    };
    // Keep draining its stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut out, &mut std::io::sink());
    });
    let m = Moto { child, port };
    wait_until(Duration::from_secs(60), "moto server accepts", || {
        TcpStream::connect(("127.0.0.1", m.port)).is_ok()
    });
    Some(m)
}
