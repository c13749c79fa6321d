//! A child process whose stdout is a source stream (tar, mysqldump, pg_dump).
//!
//! The stream is read straight from the pipe (no temporary file). stderr is drained by a
//! thread into a bounded tail, so a chatty child can never block on a full pipe and the error
//! message still says what went wrong. If the stream is dropped without `finish` (a
//! destination failed, the run is aborting), the child is killed and reaped.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;

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

/// Something kept alive until the child has exited (a 0600 credentials file).
pub type Keep = Box<dyn Send>;

/// A running child producing the stream on stdout.
pub struct ChildStream {
    what: String,
    child: Option<Child>,
    stdout: Option<ChildStdout>,
    stderr: Option<JoinHandle<String>>,
    classify: fn(i32) -> Verdict,
    bytes: u64,
    _keep: Vec<Keep>,
}

impl ChildStream {
    /// Starts `cmd` with stdin closed and stdout/stderr piped. `what` names the program in
    /// messages (`tar`, `mysqldump`); `keep` lives until the child has been reaped.
    pub fn spawn(
        what: &str,
        mut cmd: Command,
        classify: fn(i32) -> Verdict,
        keep: Vec<Keep>,
    ) -> Result<Self, SourceError> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| {
            SourceError::Unavailable(format!(
                "cannot run {}: {e}",
                cmd.get_program().to_string_lossy()
            ))
        })?;
        let stdout = child.stdout.take();
        let stderr = child.stderr.take().map(|mut err| {
            let what = what.to_owned();
            std::thread::spawn(move || drain_tail(&what, &mut err))
        });
        tracing::debug!(program = what, pid = child.id(), "started");
        Ok(ChildStream {
            what: what.to_owned(),
            child: Some(child),
            stdout,
            stderr,
            classify,
            bytes: 0,
            _keep: keep,
        })
    }

    fn reap(&mut self) -> (io::Result<ExitStatus>, String) {
        // Closing our end first makes a child still writing get EPIPE instead of blocking.
        self.stdout = None;
        let status = match self.child.take() {
            Some(mut c) => c.wait(),
            None => Err(io::Error::other("already reaped")),
        };
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
}

impl Drop for ChildStream {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
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

/// Creates a 0600 file in `dir` (or the system temp folder) holding `text`; it is removed when
/// the returned handle is dropped.
pub fn secret_file(
    dir: Option<&Path>,
    prefix: &str,
    suffix: &str,
    text: &str,
) -> Result<tempfile::NamedTempFile, SourceError> {
    let dir = match dir {
        Some(d) if d.is_dir() => d.to_owned(),
        Some(d) => {
            tracing::debug!(tmpdir = %d.display(), "tmpdir does not exist; using the system temp folder");
            std::env::temp_dir()
        }
        None => std::env::temp_dir(),
    };
    // tempfile creates the file with mode 0600 and O_EXCL.
    let mut file = tempfile::Builder::new()
        .prefix(prefix)
        .suffix(suffix)
        .tempfile_in(&dir)
        .map_err(|source| SourceError::Io {
            context: format!("creating a credentials file in {}", dir.display()),
            source,
        })?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.flush())
        .map_err(|source| SourceError::Io {
            context: format!("writing {}", file.path().display()),
            source,
        })?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.arg("-c").arg(script);
        c
    }

    fn strict(code: i32) -> Verdict {
        if code == 0 {
            Verdict::Ok
        } else {
            Verdict::Failed
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
        let mut s = Box::new(ChildStream::spawn("sh", sh("printf hello"), strict, vec![]).unwrap());
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert_eq!(out, "hello");
        s.finish().unwrap();
    }

    #[test]
    fn failure_reports_status_and_stderr_tail() {
        let script = "printf partial; echo 'first line' >&2; echo 'boom: disk on fire' >&2; exit 3";
        let mut s = Box::new(ChildStream::spawn("dumper", sh(script), strict, vec![]).unwrap());
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        let err = s.finish().unwrap_err().to_string();
        assert!(err.contains("dumper exited with status 3"), "{err}");
        assert!(err.contains("boom: disk on fire"), "{err}");
    }

    #[test]
    fn warning_exit_with_output_is_ok_without_output_fails() {
        let mut s = Box::new(
            ChildStream::spawn("tar", sh("printf data; exit 1"), tar_like, vec![]).unwrap(),
        );
        std::io::copy(&mut s, &mut std::io::sink()).unwrap();
        s.finish().unwrap();

        let mut s = Box::new(
            ChildStream::spawn(
                "tar",
                sh("echo 'sudo: a password is required' >&2; exit 1"),
                tar_like,
                vec![],
            )
            .unwrap(),
        );
        std::io::copy(&mut s, &mut std::io::sink()).unwrap();
        let err = s.finish().unwrap_err().to_string();
        assert!(err.contains("password is required"), "{err}");
    }

    #[test]
    fn killed_child_is_a_failure() {
        let mut s =
            Box::new(ChildStream::spawn("sh", sh("printf x; kill -9 $$"), strict, vec![]).unwrap());
        std::io::copy(&mut s, &mut std::io::sink()).unwrap();
        let err = s.finish().unwrap_err().to_string();
        assert!(err.contains("killed by signal 9"), "{err}");
    }

    #[test]
    fn finish_before_eof_does_not_report_success() {
        // The child writes more than a pipe holds; finishing early must not hang or succeed.
        let s = Box::new(
            ChildStream::spawn("yes", sh("yes | head -c 10000000"), strict, vec![]).unwrap(),
        );
        assert!(s.finish().is_err());
    }

    #[test]
    fn drop_kills_a_running_child() {
        let s = ChildStream::spawn("sleep", sh("exec sleep 30"), strict, vec![]).unwrap();
        let t = std::time::Instant::now();
        drop(s);
        assert!(t.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn missing_program_is_unavailable() {
        let e = ChildStream::spawn(
            "nope",
            Command::new("/nonexistent/custos-no-such-program"),
            strict,
            vec![],
        )
        .err()
        .unwrap();
        assert!(matches!(e, SourceError::Unavailable(_)), "{e}");
        assert!(e.to_string().contains("custos-no-such-program"), "{e}");
    }

    #[test]
    fn long_stderr_is_cut_to_the_tail() {
        let script =
            "i=0; while [ $i -lt 2000 ]; do echo \"line $i\" >&2; i=$((i+1)); done; exit 2";
        let s = Box::new(ChildStream::spawn("sh", sh(script), strict, vec![]).unwrap());
        let err = s.finish().unwrap_err().to_string();
        assert!(err.contains("line 1999"), "{err}");
        assert!(!err.contains("line 10;"), "{err}");
        assert!(err.len() < 3000, "{}", err.len());
    }
}
