//! Processes and services in tests: finding binaries, the missing-service policy, free ports,
//! and waiting for conditions or commands with a deadline (never a sleep-and-hope).

use std::net::TcpListener;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use custos_process::{ProcessError, Spawn};

/// Finds a binary on PATH or in the sbin directories (Debian daemons live in /usr/sbin, which
/// a normal user's PATH lacks).
pub fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin"].iter().map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Whether CI demands every service (`CUSTOS_REQUIRE_SERVICES=1`).
pub fn services_required() -> bool {
    std::env::var("CUSTOS_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// `Some(path)` when the binary exists; otherwise [`missing`] (`None`).
pub fn require(binary: &str, package: &str) -> Option<PathBuf> {
    match find_binary(binary) {
        Some(p) => Some(p),
        None => {
            missing(&format!("`{binary}`"), package);
            None
        }
    }
}

/// Reports a missing service: a loud SKIP line, or a test failure when CI demands every
/// service (`CUSTOS_REQUIRE_SERVICES=1`).
pub fn missing(what: &str, package: &str) {
    assert!(
        !services_required(),
        "{what} is missing but CUSTOS_REQUIRE_SERVICES=1: install Debian's `{package}` \
         (scripts/install-deps.sh)"
    );
    eprintln!(
        "SKIP: {what} not found (Debian package `{package}`; scripts/install-deps.sh \
         installs it). Set CUSTOS_REQUIRE_SERVICES=1 to make this a failure."
    );
}

/// A free TCP port on 127.0.0.1 (bound, then released; good enough on a test machine).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// Polls `f` every 200 ms until it returns `Some`, or panics with `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs a command with a deadline; kills its process group and panics if it does not finish
/// in time (custos-process: the same plumbing as the binaries). `cmd` is used up.
///
/// Output goes to files, not pipes: a script that leaves a daemon running in the background
/// (which inherits its stdout) must not make the wait hang.
pub fn run_with_deadline(cmd: &mut Command, timeout: Duration) -> Output {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let tag = format!(
        "custos-cmd-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let out = std::env::temp_dir().join(format!("{tag}.stdout"));
    let err = std::env::temp_dir().join(format!("{tag}.stderr"));
    let shown = format!("{cmd:?}");
    // Taken, not copied: no caller runs a command twice.
    let taken = std::mem::replace(cmd, Command::new("true"));
    let result = Spawn::new(shown.clone(), taken)
        .stdout(
            std::fs::File::create(&out)
                .expect("create stdout file")
                .into(),
        )
        .stderr(
            std::fs::File::create(&err)
                .expect("create stderr file")
                .into(),
        )
        .spawn()
        .and_then(|mut child| child.wait_timeout(timeout));
    let stdout = std::fs::read(&out).unwrap_or_default();
    let stderr = std::fs::read(&err).unwrap_or_default();
    let _ = std::fs::remove_file(&out);
    let _ = std::fs::remove_file(&err);
    // A raw wait status: the code in the second byte, or the signal in the first.
    let raw = match result {
        Ok(exit) => (exit.code & 0xff) << 8,
        Err(ProcessError::Signaled { signal, .. }) => signal & 0x7f,
        Err(ProcessError::TimedOut { .. }) => panic!(
            "{shown} did not finish within {timeout:?} (hang); stderr:\n{}",
            String::from_utf8_lossy(&stderr)
        ),
        Err(e) => panic!("cannot run {shown}: {e}"),
    };
    Output {
        status: std::process::ExitStatus::from_raw(raw),
        stdout,
        stderr,
    }
}

/// Runs `cmd` with `input` on its stdin; returns its output.
pub fn pipe_to(cmd: &mut Command, input: &str) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_string();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    let out = child.wait_with_output().expect("wait");
    let _ = writer.join();
    out
}

/// `s` without terminal colour codes (logs of a binary that thinks it has a terminal).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Percent-encodes a query parameter value (the kit's one encoder).
pub use custos_kit::http::query_escape as urlencode;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(strip_ansi("\u{1b}[1mWARN\u{1b}[0m x"), "WARN x");
        assert_eq!(urlencode("a b/{c}"), "a%20b%2F%7Bc%7D");
        let out = run_with_deadline(
            Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
            Duration::from_secs(10),
        );
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
        let out = run_with_deadline(
            Command::new("sh").args(["-c", "kill -9 $$"]),
            Duration::from_secs(10),
        );
        assert_eq!(out.status.signal(), Some(9));
        // A background child holding stdout does not hold the wait.
        let t = Instant::now();
        let out = run_with_deadline(
            Command::new("sh").args(["-c", "sleep 5 & echo started"]),
            Duration::from_secs(30),
        );
        assert_eq!(out.stdout, b"started\n");
        assert!(t.elapsed() < Duration::from_secs(4));
        let out = pipe_to(&mut Command::new("cat"), "piped");
        assert_eq!(out.stdout, b"piped");
        let mut n = 0;
        assert_eq!(
            wait_for("n to reach 2", Duration::from_secs(5), || {
                n += 1;
                (n == 2).then_some(n)
            }),
            2
        );
    }
}
