//! Runs Debian's `smbclient` (as the original did) for one share: one process per operation,
//! data streamed through pipes (`put -`, `get NAME -`), every request bounded by `-t` and
//! every short operation by a deadline, and failures mapped from smbclient's `NT_STATUS_*`
//! words to [`ErrorKind`].
//!
//! The password reaches smbclient as its authentication file (`-A`), never argv or the
//! environment: a FIFO of mode 0600 in a private 0700 temporary directory, filled once
//! smbclient opens it and removed right after. The password is never on disk, so nothing is
//! left behind even when the run is killed (the original wrote `/var/tmp/{id}.smbauth`).

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::fs::OFlags;

use crate::config::Secret;
use crate::destination::{DestinationError, ErrorKind};

/// Most of smbclient's stderr kept for a message.
const MAX_STDERR: usize = 64 << 10;
/// Most of smbclient's stdout read (an `ls` of the share): ~80 bytes a file, so hundreds of
/// thousands of files; a server (or share) that lists without end fails the listing.
const MAX_STDOUT: usize = 64 << 20;
/// Extra time for a process to start, connect and exit around its `-t` request timeout.
const PROCESS_SLACK: Duration = Duration::from_secs(3);
/// Longest wait for smbclient to open its authentication file (it does so on start).
const AUTH_OPEN: Duration = Duration::from_secs(30);

/// How to reach the share.
#[derive(Debug, Clone)]
pub struct Share {
    /// The destination's id, for errors.
    pub destination: String,
    /// `//host/share`.
    pub service: String,
    pub port: Option<u16>,
    pub workgroup: String,
    pub username: String,
    pub password: Secret,
    /// smbclient's per-request timeout and the deadline of short operations.
    pub timeout: Duration,
}

/// A running smbclient and what it prints on stderr.
pub struct Process {
    child: Child,
    stderr: Option<JoinHandle<Vec<u8>>>,
}

/// Makes the FIFO smbclient reads its credentials from: `auth` in a new 0700 directory.
fn auth_fifo() -> io::Result<(tempfile::TempDir, PathBuf)> {
    let dir = tempfile::Builder::new()
        .prefix("custos-smb-")
        .permissions(fs::Permissions::from_mode(0o700))
        .tempdir()?;
    let path = dir.path().join("auth");
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        &path,
        rustix::fs::Mode::from_raw_mode(0o600),
    )?;
    Ok((dir, path))
}

impl Share {
    /// Hands the credentials to `child` through the FIFO at `path` once it opens it for
    /// reading; fails when the child exits first or does not open it in time.
    fn send_credentials(&self, child: &mut Child, path: &Path) -> io::Result<()> {
        let end = Instant::now() + AUTH_OPEN;
        let fd = loop {
            // Non-blocking: ENXIO until the reader has it open.
            match rustix::fs::open(
                path,
                OFlags::WRONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            ) {
                Ok(fd) => break fd,
                Err(rustix::io::Errno::NXIO) => {
                    if child.try_wait()?.is_some() || Instant::now() >= end {
                        return Err(io::Error::other(
                            "smbclient did not read its authentication file",
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => return Err(e.into()),
            }
        };
        let body = zeroize::Zeroizing::new(format!(
            "username = {}\npassword = {}\ndomain = {}\n",
            self.username,
            self.password.expose(),
            self.workgroup
        ));
        // A few hundred bytes: one write into the empty pipe (the fd is non-blocking).
        let mut f = fs::File::from(fd);
        f.write_all(body.as_bytes())
    }

    /// Starts `smbclient -c command`; stdin and stdout as given, stderr collected.
    pub fn spawn(
        &self,
        op: &'static str,
        object: &str,
        command: &str,
        stdin: Stdio,
        stdout: Stdio,
    ) -> Result<Process, DestinationError> {
        let io_err = |e: io::Error| DestinationError::Io {
            destination: self.destination.clone(),
            op,
            object: object.to_string(),
            source: e,
        };
        let (dir, auth) = auth_fifo().map_err(io_err)?;
        let mut cmd = Command::new("smbclient");
        cmd.arg("-A").arg(&auth);
        if let Some(p) = self.port {
            cmd.arg("-p").arg(p.to_string());
        }
        let secs = self.timeout.as_secs().max(1);
        cmd.arg("-t")
            .arg(secs.to_string())
            .arg(&self.service)
            .arg("-c")
            .arg(command)
            // Fixed-width English dates and messages, whatever the host's locale.
            .env("LC_ALL", "C")
            .stdin(stdin)
            .stdout(stdout)
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| {
            io_err(io::Error::new(
                e.kind(),
                format!("cannot run smbclient (Debian package smbclient): {e}"),
            ))
        })?;
        let stderr = child.stderr.take().map(collect_stderr);
        let sent = self.send_credentials(&mut child, &auth);
        // The FIFO goes now: smbclient has its end open (or gave up).
        drop(dir);
        let mut process = Process { child, stderr };
        if let Err(e) = sent {
            process.kill();
            let out = process.stderr_text();
            let mut err = io_err(e);
            if !out.trim().is_empty() {
                err = self.failure(op, object, &out);
            }
            return Err(err);
        }
        Ok(process)
    }

    /// Runs `command` to its end within the deadline; its stdout on success.
    pub fn run(
        &self,
        op: &'static str,
        object: &str,
        command: &str,
    ) -> Result<Vec<u8>, DestinationError> {
        let mut p = self.spawn(op, object, command, Stdio::null(), Stdio::piped())?;
        let stdout = p.child.stdout.take().map(|r| collect(r, MAX_STDOUT));
        let status = p.wait(self.deadline());
        let (out, whole) = stdout
            .and_then(|h| h.join().ok())
            .unwrap_or((Vec::new(), true));
        let err = p.stderr_text();
        match status {
            Some(s) if s.success() && !whole => Err(DestinationError::Store {
                destination: self.destination.clone(),
                op,
                object: object.to_string(),
                kind: ErrorKind::Other,
                message: format!(
                    "smbclient printed more than {} MiB; refused",
                    MAX_STDOUT >> 20
                ),
            }),
            Some(s) if s.success() => Ok(out),
            Some(_) => Err(self.failure(op, object, &format!("{}{err}", lossy(&out)))),
            None => Err(self.timed_out(op, object)),
        }
    }

    /// The longest a process may take for one short operation.
    pub fn deadline(&self) -> Duration {
        self.timeout + PROCESS_SLACK
    }

    /// The typed error of a failed smbclient from what it printed.
    pub fn failure(&self, op: &'static str, object: &str, output: &str) -> DestinationError {
        DestinationError::Store {
            destination: self.destination.clone(),
            op,
            object: object.to_string(),
            kind: kind_of(output),
            message: summary(output),
        }
    }

    /// The error of a process that did not finish in time.
    pub fn timed_out(&self, op: &'static str, object: &str) -> DestinationError {
        DestinationError::Store {
            destination: self.destination.clone(),
            op,
            object: object.to_string(),
            kind: ErrorKind::Other,
            message: format!(
                "smbclient did not finish within {} s (stall_timeout)",
                self.deadline().as_secs()
            ),
        }
    }
}

impl Process {
    pub fn stdin(&mut self) -> Option<ChildStdin> {
        self.child.stdin.take()
    }

    pub fn stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }

    /// Waits for the exit, killing the process after `deadline`; `None` when it was killed.
    pub fn wait(&mut self, deadline: Duration) -> Option<std::process::ExitStatus> {
        let end = Instant::now() + deadline;
        let mut pause = Duration::from_millis(1);
        loop {
            match self.child.try_wait() {
                Ok(Some(s)) => return Some(s),
                Ok(None) if Instant::now() < end => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                _ => {
                    self.kill();
                    return None;
                }
            }
        }
    }

    /// Kills and reaps the process (nothing if it has exited).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// What it printed on stderr; call after it exited.
    pub fn stderr_text(&mut self) -> String {
        self.stderr
            .take()
            .and_then(|h| h.join().ok())
            .map(|b| lossy(&b))
            .unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}

/// Reads a pipe to its end on a thread, so the process never blocks on a full pipe, keeping
/// at most `limit` bytes: the bytes kept and whether they are all there were (the rest is
/// read and dropped).
fn collect<R: Read + Send + 'static>(mut r: R, limit: usize) -> JoinHandle<(Vec<u8>, bool)> {
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let cap = u64::try_from(limit).unwrap_or(u64::MAX);
        let _ = r.by_ref().take(cap).read_to_end(&mut out);
        let rest = std::io::copy(&mut r, &mut std::io::sink()).unwrap_or(0);
        (out, rest == 0)
    })
}

/// Reads stderr keeping its tail only.
fn collect_stderr(r: ChildStderr) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut r = r;
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = r.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
            if out.len() > MAX_STDERR {
                out.drain(..out.len() - MAX_STDERR);
            }
        }
        out
    })
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The kind of a failure from smbclient's output.
pub fn kind_of(output: &str) -> ErrorKind {
    const AUTH: &[&str] = &[
        "NT_STATUS_LOGON_FAILURE",
        "NT_STATUS_ACCESS_DENIED",
        "NT_STATUS_WRONG_PASSWORD",
        "NT_STATUS_NO_SUCH_USER",
        "NT_STATUS_ACCOUNT_DISABLED",
        "NT_STATUS_ACCOUNT_LOCKED_OUT",
        "NT_STATUS_ACCOUNT_RESTRICTION",
        "NT_STATUS_PASSWORD_EXPIRED",
        "NT_STATUS_NETWORK_ACCESS_DENIED",
    ];
    const NOT_FOUND: &[&str] = &[
        "NT_STATUS_OBJECT_NAME_NOT_FOUND",
        "NT_STATUS_OBJECT_PATH_NOT_FOUND",
        "NT_STATUS_NO_SUCH_FILE",
    ];
    const TRANSIENT: &[&str] = &[
        "NT_STATUS_CONNECTION_REFUSED",
        "NT_STATUS_CONNECTION_RESET",
        "NT_STATUS_CONNECTION_DISCONNECTED",
        "NT_STATUS_CONNECTION_ABORTED",
        "NT_STATUS_IO_TIMEOUT",
        "NT_STATUS_HOST_UNREACHABLE",
        "NT_STATUS_NETWORK_UNREACHABLE",
        "NT_STATUS_PIPE_BROKEN",
        "NT_STATUS_PIPE_DISCONNECTED",
        "NT_STATUS_END_OF_FILE",
        "NT_STATUS_INSUFFICIENT_RESOURCES",
    ];
    let has = |words: &[&str]| words.iter().any(|w| output.contains(w));
    if has(AUTH) {
        ErrorKind::Auth
    } else if has(NOT_FOUND) {
        ErrorKind::NotFound
    } else if has(TRANSIENT) {
        ErrorKind::Transient
    } else {
        ErrorKind::Other
    }
}

/// The lines that say what went wrong (those naming an `NT_STATUS_`), else the last line.
pub fn summary(output: &str) -> String {
    let lines: Vec<&str> = output
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let status: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.contains("NT_STATUS_"))
        .collect();
    let mut s = if status.is_empty() {
        lines
            .last()
            .copied()
            .unwrap_or("smbclient failed")
            .to_string()
    } else {
        status.join("; ")
    };
    if s.len() > 400 {
        let mut cut = 400;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdout_is_read_to_its_end_but_kept_only_to_the_limit() {
        let endless = std::io::repeat(b'x').take(10_000);
        let (kept, whole) = collect(endless, 4096).join().expect("thread");
        assert_eq!((kept.len(), whole), (4096, false));
        let (kept, whole) = collect(&b"  a.gpg   A   3\n"[..], 4096)
            .join()
            .expect("thread");
        assert_eq!((kept.len(), whole), (16, true));
    }

    #[test]
    fn nt_status_words_map_to_kinds() {
        let cases = [
            (
                "session setup failed: NT_STATUS_LOGON_FAILURE",
                ErrorKind::Auth,
            ),
            (
                "NT_STATUS_ACCESS_DENIED opening remote file \\x",
                ErrorKind::Auth,
            ),
            (
                "NT_STATUS_OBJECT_NAME_NOT_FOUND opening remote file \\x",
                ErrorKind::NotFound,
            ),
            ("NT_STATUS_NO_SUCH_FILE listing \\x", ErrorKind::NotFound),
            (
                "do_connect: Connection to 127.0.0.1 failed (Error NT_STATUS_CONNECTION_REFUSED)",
                ErrorKind::Transient,
            ),
            ("NT_STATUS_CONNECTION_RESET", ErrorKind::Transient),
            (
                "tree connect failed: NT_STATUS_BAD_NETWORK_NAME",
                ErrorKind::Other,
            ),
            (
                "NT_STATUS_OBJECT_NAME_COLLISION renaming files",
                ErrorKind::Other,
            ),
        ];
        for (text, want) in cases {
            assert_eq!(kind_of(text), want, "{text}");
        }
    }

    /// `cat` stands in for smbclient: it opens the FIFO like `-A` does and gets the
    /// credentials; the directory is gone once the process has them.
    #[test]
    fn credentials_go_through_a_fifo_that_is_removed() {
        let share = Share {
            destination: "d".into(),
            service: "//h/s".into(),
            port: None,
            workgroup: "WG".into(),
            username: "u".into(),
            password: Secret::new("pw-fifo-test"),
            timeout: Duration::from_secs(5),
        };
        let (dir, path) = auth_fifo().expect("fifo");
        let mode = fs::metadata(dir.path()).expect("dir").permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let mut child = Command::new("cat")
            .arg(&path)
            .stdout(Stdio::piped())
            .spawn()
            .expect("cat");
        share.send_credentials(&mut child, &path).expect("send");
        let kept = dir.path().to_path_buf();
        drop(dir);
        assert!(!kept.exists());
        let out = child.wait_with_output().expect("wait");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "username = u\npassword = pw-fifo-test\ndomain = WG\n"
        );

        // A reader that never opens it: an error, not a hang.
        let (_dir, path) = auth_fifo().expect("fifo");
        let mut child = Command::new("true").spawn().expect("true");
        assert!(share.send_credentials(&mut child, &path).is_err());
    }

    #[test]
    fn the_summary_keeps_the_status_lines() {
        let out = "Domain=[X]\nputting file\nNT_STATUS_ACCESS_DENIED opening remote file \\x\n";
        assert_eq!(
            summary(out),
            "NT_STATUS_ACCESS_DENIED opening remote file \\x"
        );
        assert_eq!(summary("a\nlast\n"), "last");
        assert_eq!(summary(""), "smbclient failed");
        assert!(summary(&"é".repeat(500)).len() <= 403);
    }
}
