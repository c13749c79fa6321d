//! Producers: a child process whose stdout is a source stream (tar, mysqldump, pg_dump).
//!
//! The plumbing is custos-process's (docs/ARCHITECTURE.md §3): each child runs in its own
//! process group, a `timeout` ([`SourceStream::set_timeout`]) or a SIGINT/SIGTERM to `backup`
//! (the [`Cancel`] token the runner hands to `check`/`open`) kills the whole group (a shell wrapper's
//! children too), stderr is drained into a bounded tail, and credentials reach the child as
//! an in-memory file on its stdin ([`Credentials`], read by the child as
//! [`CREDENTIALS_PATH`]), never argv, the environment or a file on disk. The stream is read
//! straight from the pipe (no temporary file); a stream dropped without `finish` (a
//! destination failed, the run is aborting) kills and reaps its child.
//!
//! What is backup's own is decided here: what an exit code means ([`Verdict`]), and which
//! failures a retry may help ([`Retry`], set where each error is made).

use std::ffi::OsString;
use std::io::{self, Read};
use std::process::{ChildStdout, Command, Stdio};
use std::time::Duration;

use custos_process::{Child, ProcessError, Spawn, Stdin};

use crate::cancel::Cancel;

use super::{Retry, SourceError, SourceStream};

/// A secret option file held only in memory (a memfd, mode 0600), for one child.
pub use custos_process::SecretFile as Credentials;

/// The path under which a child finds the [`Credentials`] handed to it as stdin.
pub const CREDENTIALS_PATH: &str = Credentials::PATH;

/// The longest a connection check (`--dry-run`) may run before its group is killed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(600);

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

/// Makes the in-memory credentials file `name` holding `text`.
pub fn credentials(name: &str, text: &str) -> Result<Credentials, SourceError> {
    Credentials::new(name, text).map_err(|source| SourceError::Io {
        context: format!("creating the in-memory credentials file {name}"),
        source,
    })
}

/// The source error of a child that failed; `outcome` is whether a retry may help once it
/// ran (a connection check: it may; a dump that failed mid-stream: it will not). A program
/// that is missing or not executable stays so: never retryable.
pub fn process_error(e: ProcessError, outcome: Retry) -> SourceError {
    match e {
        ProcessError::Io {
            program,
            context,
            source,
        } => SourceError::Io {
            context: format!("{context} {program}"),
            source,
        },
        e @ (ProcessError::NotFound { .. } | ProcessError::PermissionDenied { .. }) => {
            SourceError::Process {
                retry: Retry::Permanent,
                error: e,
            }
        }
        error => SourceError::Process {
            retry: outcome,
            error,
        },
    }
}

/// Logs a producer's stderr line at debug level.
fn log_line(program: &str, line: &str) {
    tracing::debug!(program, "{line}");
}

/// `what` with `credentials` (or nothing) as stdin and stderr to a tail, registered with
/// `cancel` (a SIGINT/SIGTERM kills it and any started after, so streams end and the pipeline
/// aborts its writers).
fn spawn_spec(what: &str, cmd: Command, credentials: Option<Credentials>, cancel: Cancel) -> Spawn {
    let stdin = credentials.map_or(Stdin::Null, Stdin::Secret);
    Spawn::new(what, cmd)
        .stdin(stdin)
        .on_stderr_line(log_line)
        .registry(cancel.producers())
}

/// Runs `cmd` to its end with `credentials` as stdin, for a check that produces no stream
/// (a dumper's connection test): a nonzero exit fails with the program, its status and its
/// stderr, retryable (the server may be down, or busy).
pub fn run_check(
    what: &str,
    cmd: Command,
    credentials: Option<Credentials>,
    cancel: Cancel,
) -> Result<(), SourceError> {
    let child = spawn_spec(what, cmd, credentials, cancel).stdout(Stdio::null());
    run_to_end(child, CHECK_TIMEOUT)
}

/// Runs `cmd` to its end without registering it for cancellation, for a clean-up that must
/// run even after a SIGINT/SIGTERM cancelled the producers (removing a snapshot); fails as
/// [`run_check`] does.
pub fn run_cleanup(what: &str, cmd: Command, timeout: Duration) -> Result<(), SourceError> {
    let child = Spawn::new(what, cmd)
        .on_stderr_line(log_line)
        .stdout(Stdio::null());
    run_to_end(child, timeout)
}

fn run_to_end(spawn: Spawn, timeout: Duration) -> Result<(), SourceError> {
    let mut child = spawn
        .spawn()
        .map_err(|e| process_error(e, Retry::Transient))?;
    child
        .wait_timeout(timeout)
        .and_then(custos_process::Exit::require_success)
        .map(drop)
        .map_err(|e| process_error(e, Retry::Transient))
}

/// A running child producing the stream on stdout.
pub struct ChildStream {
    child: Child,
    stdout: Option<ChildStdout>,
    classify: fn(i32) -> Verdict,
    bytes: u64,
}

impl ChildStream {
    /// Starts `cmd` with stdout/stderr piped and stdin either `credentials` (read by the
    /// child as [`CREDENTIALS_PATH`]) or nothing. `what` names the program in messages (`tar`,
    /// `mysqldump`). This process's copy of the credentials is closed as soon as the child
    /// exists.
    pub fn spawn(
        what: &str,
        cmd: Command,
        classify: fn(i32) -> Verdict,
        credentials: Option<Credentials>,
        cancel: Cancel,
    ) -> Result<Self, SourceError> {
        let mut child = spawn_spec(what, cmd, credentials, cancel)
            .spawn()
            .map_err(|e| process_error(e, Retry::Transient))?;
        tracing::debug!(program = what, pid = child.id(), "started");
        Ok(ChildStream {
            stdout: child.stdout(),
            child,
            classify,
            bytes: 0,
        })
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
        // Closing our end first makes a child still writing get EPIPE instead of blocking.
        self.stdout = None;
        // A producer that failed once it ran (status, signal, its timeout) is not retried.
        let exit = self
            .child
            .wait()
            .map_err(|e| process_error(e, Retry::Permanent))?;
        match (self.classify)(exit.code) {
            Verdict::Ok => {
                if !exit.stderr.trim().is_empty() {
                    tracing::debug!(program = %exit.program, stderr = %custos_process::one_line(&exit.stderr), "finished with messages");
                }
                Ok(())
            }
            // A warning exit with no output at all is not a backup (e.g. `sudo -n` refusing,
            // which also exits 1).
            Verdict::Warning if self.bytes > 0 => {
                tracing::warn!(program = %exit.program, status = exit.code, stderr = %custos_process::one_line(&exit.stderr), "finished with warnings");
                Ok(())
            }
            Verdict::Warning | Verdict::Failed => Err(SourceError::Process {
                retry: Retry::Permanent,
                error: exit.into_error(),
            }),
        }
    }

    fn set_timeout(&mut self, timeout: Duration) {
        self.child.set_deadline(timeout);
    }
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

    /// The process error of a source error marked permanent.
    fn permanent(e: &SourceError) -> &ProcessError {
        match e {
            SourceError::Process {
                retry: Retry::Permanent,
                error,
            } => error,
            e => panic!("not a permanent process error: {e:?}"),
        }
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
            ChildStream::spawn(
                "sh",
                sh("printf hello"),
                Verdict::zero_only,
                None,
                Cancel::new(),
            )
            .unwrap(),
        );
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert_eq!(out, "hello");
        s.finish().unwrap();
    }

    #[test]
    fn failure_reports_status_and_stderr_tail_and_is_permanent() {
        let script = "printf partial; echo 'first line' >&2; echo 'boom: disk on fire' >&2; exit 3";
        let mut s = Box::new(
            ChildStream::spawn(
                "dumper",
                sh(script),
                Verdict::zero_only,
                None,
                Cancel::new(),
            )
            .unwrap(),
        );
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        let e = s.finish().unwrap_err();
        assert!(
            matches!(permanent(&e), ProcessError::Exited { code: 3, .. }),
            "{e:?}"
        );
        let err = e.to_string();
        assert!(err.contains("dumper exited with status 3"), "{err}");
        assert!(err.contains("boom: disk on fire"), "{err}");
    }

    #[test]
    fn warning_exit_with_output_is_ok_without_output_fails() {
        let mut s = Box::new(
            ChildStream::spawn(
                "tar",
                sh("printf data; exit 1"),
                tar_like,
                None,
                Cancel::new(),
            )
            .unwrap(),
        );
        std::io::copy(&mut s, &mut std::io::sink()).unwrap();
        s.finish().unwrap();

        let mut s = Box::new(
            ChildStream::spawn(
                "tar",
                sh("echo 'sudo: a password is required' >&2; exit 1"),
                tar_like,
                None,
                Cancel::new(),
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
            ChildStream::spawn(
                "sh",
                sh("printf x; kill -9 $$"),
                Verdict::zero_only,
                None,
                Cancel::new(),
            )
            .unwrap(),
        );
        std::io::copy(&mut s, &mut std::io::sink()).unwrap();
        let err = s.finish().unwrap_err().to_string();
        assert!(err.contains("killed by signal 9"), "{err}");
    }

    #[test]
    fn a_timeout_kills_the_producer_and_is_not_retried() {
        let mut s = Box::new(
            ChildStream::spawn(
                "sh",
                sh("exec sleep 30"),
                Verdict::zero_only,
                None,
                Cancel::new(),
            )
            .unwrap(),
        );
        s.set_timeout(Duration::from_millis(200));
        let t = std::time::Instant::now();
        std::io::copy(&mut s, &mut std::io::sink()).unwrap();
        let e = s.finish().unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(5));
        assert!(
            matches!(permanent(&e), ProcessError::TimedOut { .. }),
            "{e:?}"
        );
    }

    /// A missing program stays missing: the error says so and no retry is offered (it was
    /// once an "unavailable" string, which the report called retryable).
    #[test]
    fn missing_program_is_permanent() {
        let e = ChildStream::spawn(
            "nope",
            Command::new("/nonexistent/custos-no-such-program"),
            Verdict::zero_only,
            None,
            Cancel::new(),
        )
        .err()
        .unwrap();
        assert!(
            matches!(permanent(&e), ProcessError::NotFound { .. }),
            "{e:?}"
        );
        assert!(e.to_string().contains("custos-no-such-program"), "{e}");
        let e = run_check(
            "nope",
            Command::new("/nonexistent/custos-no-such-program"),
            None,
            Cancel::new(),
        )
        .unwrap_err();
        assert_eq!(e.retry(), Some(Retry::Permanent), "{e:?}");
    }

    /// A connection check that runs and fails (server down, busy) may pass next time.
    #[test]
    fn a_failed_check_is_transient_and_says_why() {
        let e = run_check(
            "mysqldump",
            sh("echo 'ERROR 2002: cannot connect' >&2; exit 2"),
            None,
            Cancel::new(),
        )
        .unwrap_err();
        assert_eq!(e.retry(), Some(Retry::Transient), "{e:?}");
        assert!(
            e.to_string()
                .contains("mysqldump exited with status 2: ERROR 2002: cannot connect"),
            "{e}"
        );
        run_check(
            "sh",
            sh("cat /dev/fd/0 >/dev/null"),
            Some(credentials("t", "x").unwrap()),
            Cancel::new(),
        )
        .unwrap();
    }

    /// A cancelled token kills the producer it was handed (its whole group), and one
    /// started after the cancel at once: the signal watcher reaches producers only
    /// through the token.
    #[test]
    fn a_cancel_kills_the_producers_it_was_handed() {
        let cancel = Cancel::new();
        let mut s = Box::new(
            ChildStream::spawn(
                "sh",
                sh("sleep 30 & wait"),
                Verdict::zero_only,
                None,
                cancel,
            )
            .unwrap(),
        );
        let t = std::time::Instant::now();
        assert_eq!(cancel.cancel(15), 1);
        std::io::copy(&mut s, &mut std::io::sink()).unwrap();
        let err = s.finish().unwrap_err().to_string();
        assert!(err.contains("killed by signal"), "{err}");
        let late = ChildStream::spawn("sh", sh("exec sleep 30"), Verdict::zero_only, None, cancel)
            .map(|mut s| {
                let _ = std::io::copy(&mut s, &mut std::io::sink());
                Box::new(s).finish()
            });
        assert!(
            !matches!(late, Ok(Ok(()))),
            "a producer started after the cancel ran"
        );
        assert!(t.elapsed() < Duration::from_secs(10));
        // Another token's producers are untouched.
        let mut other = Box::new(
            ChildStream::spawn(
                "sh",
                sh("printf ok"),
                Verdict::zero_only,
                None,
                Cancel::new(),
            )
            .unwrap(),
        );
        let mut out = String::new();
        other.read_to_string(&mut out).unwrap();
        other.finish().unwrap();
        assert_eq!(out, "ok");
    }
}
