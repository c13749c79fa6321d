//! A child process whose stdout is a source stream (tar, mysqldump, pg_dump).
//!
//! The stream is read straight from the pipe (no temporary file). stderr is drained by a
//! thread into a bounded tail, so a chatty child can never block on a full pipe and the error
//! message still says what went wrong. If the stream is dropped without `finish` (a
//! destination failed, the run is aborting), the child is killed and reaped.
//!
//! Each child runs in its own process group, registered while it lives: a `timeout`
//! ([`SourceStream::set_timeout`]) or a SIGINT/SIGTERM to `backup` ([`kill_all`]) kills the
//! whole group (a shell wrapper's children too), and the stream then fails instead of hanging.
//!
//! Credentials reach a child through [`Credentials`]: an anonymous memory file (memfd) that
//! becomes the child's stdin, which the child opens again by name as `/dev/fd/0`. Nothing is
//! ever written to a file system, so a `kill -9` of the run leaves no secret behind.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Write};
#[cfg(test)]
use std::os::fd::AsFd;
use std::os::fd::OwnedFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rustix::process::{kill_process_group, Pid, Signal};

use super::{SourceError, SourceStream};

/// How much of stderr is kept for messages.
const TAIL_BYTES: usize = 2048;

/// What an exit code means for a given program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Success.
    Ok,
    /// Usable output, but something deserves a warning (tar exit 1: a file changed while read).
    Warning,
    /// The output must not be committed.
    Failed,
}

impl Verdict {
    /// Any exit code but 0 fails (mysqldump, pg_dump).
    pub fn zero_only(code: i32) -> Verdict {
        if code == 0 {
            Verdict::Ok
        } else {
            Verdict::Failed
        }
    }
}

/// The path under which a child finds the [`Credentials`] handed to it as stdin.
pub const CREDENTIALS_PATH: &str = "/dev/fd/0";

/// A secret option file held only in memory (a memfd, mode 0600), for one child.
///
/// Why stdin and not an inherited descriptor N: the memfd stays close-on-exec in this
/// process, so no other child spawned meanwhile (by any thread) can inherit it; only the
/// child it is given to gets it, as fd 0 (set up between fork and exec by std). Why a memfd:
/// it is a regular file, so libpq's pgpass checks (regular file, no group/other bits) and
/// MariaDB's option file reader (ignores world-writable files) accept `/dev/fd/0`, which
/// opens it afresh from offset 0; and it vanishes with the last process holding it.
pub struct Credentials {
    fd: OwnedFd,
}

impl Credentials {
    /// Creates the memfd (`name` only shows in `/proc/*/fd` links), makes it 0600 and writes
    /// `text` into it.
    pub fn new(name: &str, text: &str) -> Result<Self, SourceError> {
        let context = |what: &str| format!("{what} the in-memory credentials file {name}");
        let fd = rustix::fs::memfd_create(name, rustix::fs::MemfdFlags::CLOEXEC).map_err(|e| {
            SourceError::Io {
                context: context("creating"),
                source: e.into(),
            }
        })?;
        // memfds start as 0777; MariaDB ignores world-writable option files and libpq
        // refuses a pgpass file with any group/other bit.
        rustix::fs::fchmod(&fd, rustix::fs::Mode::from_raw_mode(0o600)).map_err(|e| {
            SourceError::Io {
                context: context("restricting"),
                source: e.into(),
            }
        })?;
        let mut file = File::from(fd);
        file.write_all(text.as_bytes())
            .map_err(|source| SourceError::Io {
                context: context("writing"),
                source,
            })?;
        Ok(Credentials {
            fd: OwnedFd::from(file),
        })
    }

    /// Mode bits, whether it is a regular file, and the text, read back without moving the
    /// offset (tests).
    #[cfg(test)]
    pub(crate) fn read_back(&self) -> io::Result<(u32, bool, String)> {
        use std::os::unix::fs::{FileExt, PermissionsExt};
        let file = File::from(self.fd.try_clone()?);
        let meta = file.metadata()?;
        let mut buf = vec![0u8; meta.len() as usize];
        file.read_exact_at(&mut buf, 0)?;
        Ok((
            meta.permissions().mode() & 0o7777,
            meta.file_type().is_file(),
            String::from_utf8_lossy(&buf).into_owned(),
        ))
    }

    /// Device and inode, to find copies of the descriptor in `/proc/*/fd` (tests).
    #[cfg(test)]
    pub(crate) fn identity(&self) -> io::Result<(u64, u64)> {
        let st = rustix::fs::fstat(self.fd.as_fd())?;
        Ok((st.st_dev, st.st_ino))
    }
}

/// Makes `credentials` the stdin of `cmd`, or gives it no stdin at all. The descriptor then
/// belongs to `cmd`: drop `cmd` right after spawning so this process holds no copy.
fn set_stdin(cmd: &mut Command, credentials: Option<Credentials>) {
    match credentials {
        Some(c) => cmd.stdin(Stdio::from(c.fd)),
        None => cmd.stdin(Stdio::null()),
    };
}

/// Runs `cmd` to its end with `credentials` as stdin, for a check that produces no stream
/// (a dumper's connection test): a nonzero exit is [`SourceError::Unavailable`] with the
/// program, its status and its stderr.
pub fn run_check(mut cmd: Command, credentials: Option<Credentials>) -> Result<(), SourceError> {
    set_stdin(&mut cmd, credentials);
    let out = cmd.output();
    let program = cmd.get_program().to_string_lossy().into_owned();
    // The Command owns the credentials descriptor: close it now.
    drop(cmd);
    let out = out.map_err(|e| SourceError::Unavailable(format!("cannot run {program}: {e}")))?;
    if !out.status.success() {
        return Err(SourceError::Unavailable(format!(
            "{program} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Process groups of the producers running now.
static LIVE: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Kills every running producer's process group (SIGINT/SIGTERM to `backup`): their streams
/// end, the pipeline sees the failure and aborts its writers. Returns how many were killed.
pub fn kill_all() -> usize {
    let live = LIVE.lock().map(|l| l.clone()).unwrap_or_default();
    live.iter().filter(|pgid| kill_group(**pgid)).count()
}

fn kill_group(pgid: u32) -> bool {
    i32::try_from(pgid)
        .ok()
        .and_then(Pid::from_raw)
        .is_some_and(|p| kill_process_group(p, Signal::KILL).is_ok())
}

/// Kills a producer's process group when its timeout passes first.
struct Watchdog {
    /// Set (and notified) when the producer ended in time.
    done: Arc<(Mutex<bool>, Condvar)>,
    expired: Arc<AtomicBool>,
    timeout: Duration,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    fn start(pgid: u32, what: &str, timeout: Duration) -> Self {
        let done = Arc::new((Mutex::new(false), Condvar::new()));
        let expired = Arc::new(AtomicBool::new(false));
        let (d, e, what) = (done.clone(), expired.clone(), what.to_owned());
        let thread = std::thread::spawn(move || {
            let (lock, cv) = &*d;
            let Ok(guard) = lock.lock() else { return };
            let Ok((guard, _)) = cv.wait_timeout_while(guard, timeout, |done| !*done) else {
                return;
            };
            if !*guard {
                e.store(true, Ordering::SeqCst);
                tracing::warn!(program = %what, pgid, "timeout of {} s passed: killing its process group", timeout.as_secs());
                kill_group(pgid);
            }
        });
        Watchdog {
            done,
            expired,
            timeout,
            thread: Some(thread),
        }
    }

    /// Stops the watchdog; whether the timeout had passed.
    fn stop(&mut self) -> bool {
        if let Ok(mut d) = self.done.0.lock() {
            *d = true;
        }
        self.done.1.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.expired.load(Ordering::SeqCst)
    }
}

/// A running child producing the stream on stdout.
pub struct ChildStream {
    what: String,
    child: Option<Child>,
    /// The child's pid, which is also its process group id.
    pgid: u32,
    stdout: Option<ChildStdout>,
    stderr: Option<JoinHandle<String>>,
    classify: fn(i32) -> Verdict,
    bytes: u64,
    watchdog: Option<Watchdog>,
    /// Set when the watchdog killed the producer: the timeout that passed.
    timed_out: Option<Duration>,
}

impl ChildStream {
    /// Starts `cmd` with stdout/stderr piped and stdin either `credentials` (read by the
    /// child as [`CREDENTIALS_PATH`]) or nothing. `what` names the program in messages (`tar`,
    /// `mysqldump`). This process's copy of the credentials is closed as soon as the child
    /// exists.
    pub fn spawn(
        what: &str,
        mut cmd: Command,
        classify: fn(i32) -> Verdict,
        credentials: Option<Credentials>,
    ) -> Result<Self, SourceError> {
        set_stdin(&mut cmd, credentials);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        // Its own process group: killable as a whole, and Ctrl-C reaches it only through us
        // (so an interrupted run decides what happens to its objects).
        cmd.process_group(0);
        let mut live = LIVE.lock().ok();
        let spawned = cmd.spawn();
        if let (Some(live), Ok(c)) = (live.as_mut(), spawned.as_ref()) {
            live.push(c.id());
            // A signal that came while it was being started: it must not run on.
            if crate::interrupt::received().is_some() {
                kill_group(c.id());
            }
        }
        drop(live);
        let program = cmd.get_program().to_string_lossy().into_owned();
        // The Command owns the credentials descriptor: close it now, not when the stream ends.
        drop(cmd);
        let mut child =
            spawned.map_err(|e| SourceError::Unavailable(format!("cannot run {program}: {e}")))?;
        let stdout = child.stdout.take();
        let stderr = child.stderr.take().map(|mut err| {
            let what = what.to_owned();
            std::thread::spawn(move || drain_tail(&what, &mut err))
        });
        tracing::debug!(program = what, pid = child.id(), "started");
        Ok(ChildStream {
            what: what.to_owned(),
            pgid: child.id(),
            child: Some(child),
            stdout,
            stderr,
            classify,
            bytes: 0,
            watchdog: None,
            timed_out: None,
        })
    }

    fn reap(&mut self) -> (io::Result<ExitStatus>, String) {
        // Closing our end first makes a child still writing get EPIPE instead of blocking.
        self.stdout = None;
        let status = match self.child.take() {
            Some(mut c) => c.wait(),
            None => Err(io::Error::other("already reaped")),
        };
        if let Some(mut w) = self.watchdog.take() {
            if w.stop() {
                self.timed_out = Some(w.timeout);
            }
        }
        if let Ok(mut live) = LIVE.lock() {
            live.retain(|p| *p != self.pgid);
        }
        let tail = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        (status, tail)
    }
}

impl Read for ChildStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.stdout.as_mut() {
            Some(out) => {
                let n = out.read(buf)?;
                self.bytes += n as u64;
                Ok(n)
            }
            None => Ok(0),
        }
    }
}

impl SourceStream for ChildStream {
    fn finish(mut self: Box<Self>) -> Result<(), SourceError> {
        let (status, tail) = self.reap();
        if let Some(t) = self.timed_out {
            return Err(SourceError::Failed(format!(
                "{} did not finish within its timeout of {} s (`timeout`); its process group \
                 was killed{}",
                self.what,
                t.as_secs(),
                if tail.is_empty() {
                    String::new()
                } else {
                    format!(": {tail}")
                }
            )));
        }
        let status = status.map_err(|source| SourceError::Io {
            context: format!("waiting for {}", self.what),
            source,
        })?;
        let detail = if tail.is_empty() {
            String::new()
        } else {
            format!(": {tail}")
        };
        let Some(code) = status.code() else {
            let signal = status.signal().unwrap_or(0);
            return Err(SourceError::Failed(format!(
                "{} was killed by signal {signal}{detail}",
                self.what
            )));
        };
        match (self.classify)(code) {
            Verdict::Ok => {
                if !tail.is_empty() {
                    tracing::debug!(program = %self.what, stderr = %tail, "finished with messages");
                }
                Ok(())
            }
            // A warning exit with no output at all is not a backup (e.g. `sudo -n` refusing,
            // which also exits 1).
            Verdict::Warning if self.bytes > 0 => {
                tracing::warn!(program = %self.what, status = code, stderr = %tail, "finished with warnings");
                Ok(())
            }
            Verdict::Warning | Verdict::Failed => Err(SourceError::Failed(format!(
                "{} exited with status {code}{detail}",
                self.what
            ))),
        }
    }

    fn set_timeout(&mut self, timeout: Duration) {
        if self.child.is_some() && self.watchdog.is_none() {
            self.watchdog = Some(Watchdog::start(self.pgid, &self.what, timeout));
        }
    }
}

impl Drop for ChildStream {
    fn drop(&mut self) {
        if self.child.is_some() {
            // The whole group: a wrapper's children must not outlive the stream.
            kill_group(self.pgid);
            let _ = self.reap();
        }
    }
}

/// Reads stderr to its end, keeping the last [`TAIL_BYTES`] and logging lines at debug level.
fn drain_tail(what: &str, err: &mut impl Read) -> String {
    let mut tail: Vec<u8> = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match err.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                for line in String::from_utf8_lossy(&buf[..n]).lines() {
                    if !line.trim().is_empty() {
                        tracing::debug!(program = what, "{line}");
                    }
                }
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > TAIL_BYTES * 2 {
                    tail.drain(..tail.len() - TAIL_BYTES);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    if tail.len() > TAIL_BYTES {
        tail.drain(..tail.len() - TAIL_BYTES);
    }
    let text = String::from_utf8_lossy(&tail);
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Joins a program and its arguments for debug logs (never used for argv holding secrets:
/// no source puts one there).
pub fn describe(cmd: &Command) -> String {
    let mut parts: Vec<OsString> = vec![cmd.get_program().to_owned()];
    parts.extend(cmd.get_args().map(|a| a.to_owned()));
    parts
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.arg("-c").arg(script);
        c
    }

    fn tar_like(code: i32) -> Verdict {
        match code {
            0 => Verdict::Ok,
            1 => Verdict::Warning,
            _ => Verdict::Failed,
        }
    }

    #[test]
    fn streams_stdout_and_succeeds() {
        let mut s = Box::new(
            ChildStream::spawn("sh", sh("printf hello"), Verdict::zero_only, None).unwrap(),
        );
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert_eq!(out, "hello");
        s.finish().unwrap();
    }

    #[test]
    fn failure_reports_status_and_stderr_tail() {
        let script = "printf partial; echo 'first line' >&2; echo 'boom: disk on fire' >&2; exit 3";
        let mut s =
            Box::new(ChildStream::spawn("dumper", sh(script), Verdict::zero_only, None).unwrap());
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        let err = s.finish().unwrap_err().to_string();
        assert!(err.contains("dumper exited with status 3"), "{err}");
        assert!(err.contains("boom: disk on fire"), "{err}");
    }

    #[test]
    fn warning_exit_with_output_is_ok_without_output_fails() {
        let mut s =
            Box::new(ChildStream::spawn("tar", sh("printf data; exit 1"), tar_like, None).unwrap());
        std::io::copy(&mut s, &mut std::io::sink()).unwrap();
        s.finish().unwrap();

        let mut s = Box::new(
            ChildStream::spawn(
                "tar",
                sh("echo 'sudo: a password is required' >&2; exit 1"),
                tar_like,
                None,
            )
            .unwrap(),
        );
        std::io::copy(&mut s, &mut std::io::sink()).unwrap();
        let err = s.finish().unwrap_err().to_string();
        assert!(err.contains("password is required"), "{err}");
    }

    #[test]
    fn killed_child_is_a_failure() {
        let mut s = Box::new(
            ChildStream::spawn("sh", sh("printf x; kill -9 $$"), Verdict::zero_only, None).unwrap(),
        );
        std::io::copy(&mut s, &mut std::io::sink()).unwrap();
        let err = s.finish().unwrap_err().to_string();
        assert!(err.contains("killed by signal 9"), "{err}");
    }

    #[test]
    fn finish_before_eof_does_not_report_success() {
        // The child writes more than a pipe holds; finishing early must not hang or succeed.
        let s = Box::new(
            ChildStream::spawn(
                "yes",
                sh("yes | head -c 10000000"),
                Verdict::zero_only,
                None,
            )
            .unwrap(),
        );
        assert!(s.finish().is_err());
    }

    #[test]
    fn drop_kills_a_running_child() {
        let s = ChildStream::spawn("sleep", sh("exec sleep 30"), Verdict::zero_only, None).unwrap();
        let t = std::time::Instant::now();
        drop(s);
        assert!(t.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn missing_program_is_unavailable() {
        let e = ChildStream::spawn(
            "nope",
            Command::new("/nonexistent/custos-no-such-program"),
            Verdict::zero_only,
            None,
        )
        .err()
        .unwrap();
        assert!(matches!(e, SourceError::Unavailable(_)), "{e}");
        assert!(e.to_string().contains("custos-no-such-program"), "{e}");
    }

    /// The child finds the secret as a regular 0600 file at /dev/fd/0 (what libpq and
    /// MariaDB's option reader require), readable more than once, and no path on disk.
    #[test]
    fn credentials_are_a_0600_regular_file_at_dev_fd_0() {
        let c = Credentials::new("custos-test", "password=\"x\"\n").unwrap();
        let (mode, regular, text) = c.read_back().unwrap();
        assert_eq!((mode, regular), (0o600, true));
        assert_eq!(text, "password=\"x\"\n");
        let script =
            "stat -L -c '%a %F' /dev/fd/0; readlink /dev/fd/0; cat /dev/fd/0; cat /dev/fd/0";
        let mut s =
            Box::new(ChildStream::spawn("sh", sh(script), Verdict::zero_only, Some(c)).unwrap());
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        s.finish().unwrap();
        let mut lines = out.lines();
        assert_eq!(lines.next(), Some("600 regular file"), "{out}");
        let link = lines.next().unwrap_or_default();
        assert!(link.starts_with("/memfd:custos-test"), "{out}");
        assert_eq!(
            lines.collect::<Vec<_>>(),
            ["password=\"x\"", "password=\"x\""],
            "{out}"
        );
    }

    /// Device and inode of every descriptor `pid` holds.
    fn open_files(pid: &str) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .flatten()
        {
            if let Ok(st) = rustix::fs::stat(e.path()) {
                out.push((st.st_dev, st.st_ino));
            }
        }
        out
    }

    /// This process holds no copy once the child runs, and a child spawned meanwhile (by
    /// any thread) does not inherit it: only the child it was given to has it, as stdin.
    #[test]
    fn credentials_are_closed_after_spawn_and_reach_no_other_child() {
        let c = Credentials::new("custos-test-leak", "secret").unwrap();
        let id = c.identity().unwrap();
        assert!(open_files("self").contains(&id));
        // Another child started while the credentials exist here.
        let mut other = Command::new("sleep").arg("30").spawn().unwrap();
        let seen = open_files(&other.id().to_string());
        let _ = other.kill();
        let _ = other.wait();
        assert!(!seen.is_empty());
        assert!(
            !seen.contains(&id),
            "another child inherited the credentials"
        );

        let holder =
            ChildStream::spawn("sleep", sh("exec sleep 30"), Verdict::zero_only, Some(c)).unwrap();
        assert!(
            !open_files("self").contains(&id),
            "the parent still holds the credentials after spawn"
        );
        let pid = holder.child.as_ref().map(|c| c.id()).unwrap();
        assert!(open_files(&pid.to_string()).contains(&id));
        drop(holder);
    }

    #[test]
    fn long_stderr_is_cut_to_the_tail() {
        let script =
            "i=0; while [ $i -lt 2000 ]; do echo \"line $i\" >&2; i=$((i+1)); done; exit 2";
        let s = Box::new(ChildStream::spawn("sh", sh(script), Verdict::zero_only, None).unwrap());
        let err = s.finish().unwrap_err().to_string();
        assert!(err.contains("line 1999"), "{err}");
        assert!(!err.contains("line 10;"), "{err}");
        assert!(err.len() < 3000, "{}", err.len());
    }
}
