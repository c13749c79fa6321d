//! Runs Debian's `smbclient` (as the original did) for one share: one process per operation
//! (through custos-process: its own process group, killed at a deadline, stderr's tail),
//! data streamed through pipes (`put -`, `get NAME -`), every request bounded by `-t` and
//! every short operation by a deadline, and failures mapped from smbclient's `NT_STATUS_*`
//! words to [`ErrorKind`].
//!
//! The password reaches smbclient as its authentication file (`-A`), never argv or the
//! environment: a FIFO of mode 0600 in a private 0700 temporary directory, filled once
//! smbclient opens it and removed right after. The password is never on disk, so nothing is
//! left behind even when the run is killed (the original wrote `/var/tmp/{id}.smbauth`).

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use custos_process::{ProcessError, Spawn, Stdin};
use rustix::fs::OFlags;

use crate::destination::{DestinationError, ErrorKind};
use custos_kit::config::Secret;

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

/// A running smbclient; its stderr's tail is kept for the error.
pub type Process = custos_process::Child;

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
    fn send_credentials(&self, child: &Process, path: &Path) -> io::Result<()> {
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
                    if child.has_exited()? || Instant::now() >= end {
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

    /// Starts `smbclient -c command`; stdin and stdout as given, stderr's tail kept.
    pub fn spawn(
        &self,
        op: &'static str,
        object: &str,
        command: &str,
        stdin: Stdin,
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
            .env("LC_ALL", "C");
        let mut process = Spawn::new("smbclient", cmd)
            .stdin(stdin)
            .stdout(stdout)
            .tail(MAX_STDERR)
            .spawn()
            .map_err(|e| self.process_error(op, object, e))?;
        let sent = self.send_credentials(&process, &auth);
        // The FIFO goes now: smbclient has its end open (or gave up).
        drop(dir);
        if let Err(e) = sent {
            let out = match process.kill_and_wait() {
                Ok(exit) => exit.stderr,
                Err(e) => e.stderr().to_owned(),
            };
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
        let p = self.spawn(op, object, command, Stdin::Null, Stdio::piped())?;
        match p.wait_with_output(self.deadline(), MAX_STDOUT) {
            Ok(out) if out.exit.success() => Ok(out.stdout),
            Ok(out) => Err(self.failure(
                op,
                object,
                &format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    out.exit.stderr
                ),
            )),
            Err(e) => Err(self.process_error(op, object, e)),
        }
    }

    /// How a streaming smbclient (`put -`, `get NAME -`) ended, waited for at most the
    /// deadline: the failure's kind and text (`timed_out` when the deadline passed, else
    /// the stall_timeout message).
    pub fn outcome(
        &self,
        p: &mut Process,
        timed_out: Option<String>,
    ) -> Result<(), (ErrorKind, String)> {
        match p.wait_timeout(self.deadline()) {
            Ok(exit) if exit.success() => Ok(()),
            Ok(exit) => Err((kind_of(&exit.stderr), summary(&exit.stderr))),
            Err(ProcessError::TimedOut { .. }) if timed_out.is_some() => {
                Err((ErrorKind::Other, timed_out.unwrap_or_default()))
            }
            Err(e) => match self.process_error("", "", e) {
                DestinationError::Store { kind, message, .. } => Err((kind, message)),
                // The kind from the I/O error; the text without the empty op and object.
                e => {
                    let text = match &e {
                        DestinationError::Io { source, .. } => source.to_string(),
                        e => e.to_string(),
                    };
                    Err((e.kind(), text))
                }
            },
        }
    }

    /// The typed error of an smbclient that could not run or did not end well.
    fn process_error(&self, op: &'static str, object: &str, e: ProcessError) -> DestinationError {
        let store = |kind, message| DestinationError::Store {
            destination: self.destination.clone(),
            op,
            object: object.to_string(),
            kind,
            message,
        };
        match e {
            ProcessError::NotFound { source, .. }
            | ProcessError::PermissionDenied { source, .. } => DestinationError::Io {
                destination: self.destination.clone(),
                op,
                object: object.to_string(),
                source: io::Error::new(
                    source.kind(),
                    format!("cannot run smbclient (Debian package smbclient): {source}"),
                ),
            },
            ProcessError::Io {
                context, source, ..
            } => DestinationError::Io {
                destination: self.destination.clone(),
                op,
                object: object.to_string(),
                source: io::Error::new(source.kind(), format!("{context} smbclient: {source}")),
            },
            ProcessError::TimedOut { .. } => self.timed_out(op, object),
            ProcessError::OutputTooLarge { limit, .. } => store(
                ErrorKind::Other,
                format!("smbclient printed more than {} MiB; refused", limit >> 20),
            ),
            ProcessError::Exited { stderr, .. } | ProcessError::Signaled { stderr, .. } => {
                self.failure(op, object, &stderr)
            }
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
        s = format!("{}...", custos_kit::text::prefix(&s, 400));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let mut cat = Command::new("cat");
        cat.arg(&path);
        let child = Spawn::new("cat", cat).spawn().expect("cat");
        share.send_credentials(&child, &path).expect("send");
        let kept = dir.path().to_path_buf();
        drop(dir);
        assert!(!kept.exists());
        let out = child
            .wait_with_output(Duration::from_secs(10), 4096)
            .expect("wait");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "username = u\npassword = pw-fifo-test\ndomain = WG\n"
        );

        // A reader that never opens it: an error, not a hang.
        let (_dir, path) = auth_fifo().expect("fifo");
        let child = Spawn::new("true", Command::new("true"))
            .spawn()
            .expect("true");
        assert!(share.send_credentials(&child, &path).is_err());
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
