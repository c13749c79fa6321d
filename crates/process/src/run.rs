//! Running a command to its end within a deadline, its stdout read into memory (bounded).

use std::io::Read;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::child::{Child, Exit, Spawn};
use crate::ProcessError;

/// A command that ran to its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Its exit status and stderr's tail.
    pub exit: Exit,
    /// Everything it printed on stdout (at most the limit given to [`run`]).
    pub stdout: Vec<u8>,
}

/// Extra wait for the pipe to close after the deadline's kill has landed.
const KILL_GRACE: Duration = Duration::from_millis(200);

/// Runs `spawn` to its end, stdout piped and read into memory, waiting at most `deadline`:
/// then its whole group is killed ([`ProcessError::TimedOut`]). More than `max_stdout`
/// bytes kill it too ([`ProcessError::OutputTooLarge`]). Any exit status is `Ok`.
pub fn run(spawn: Spawn, deadline: Duration, max_stdout: usize) -> Result<Output, ProcessError> {
    spawn
        .stdout(Stdio::piped())
        .spawn()?
        .wait_with_output(deadline, max_stdout)
}

impl Child {
    /// Reads the stdout pipe (not yet taken) to its end and waits, as [`run`] does: for a
    /// child that needs something from the caller between its start and its output (a
    /// credentials FIFO).
    pub fn wait_with_output(
        mut self,
        deadline: Duration,
        max_stdout: usize,
    ) -> Result<Output, ProcessError> {
        let end = Instant::now() + deadline;
        self.set_deadline(deadline);
        let Some(mut stdout) = self.stdout() else {
            return Err(ProcessError::Io {
                program: self.program().to_owned(),
                context: "reading",
                source: std::io::Error::other("no stdout pipe"),
            });
        };
        let (tx, rx) = mpsc::channel();
        let cap = u64::try_from(max_stdout)
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        // Detached: it ends when every holder of the pipe is gone, which the group kill
        // ensures; a process that left the group and holds the pipe cannot hold us, since
        // we wait for it no longer than the deadline.
        let reader = std::thread::Builder::new()
            .name("stdout".into())
            .spawn(move || {
                let mut buf = Vec::new();
                let r = (&mut stdout).take(cap).read_to_end(&mut buf);
                let _ = tx.send(r.map(|_| buf));
            });
        if let Err(source) = reader {
            // Dropped here: the group is killed.
            return Err(ProcessError::Io {
                program: self.program().to_owned(),
                context: "reading the output of",
                source,
            });
        }
        let remaining = end.saturating_duration_since(Instant::now()) + KILL_GRACE;
        match rx.recv_timeout(remaining) {
            Ok(Ok(stdout)) if stdout.len() > max_stdout => {
                let program = self.program().to_owned();
                self.kill();
                Err(ProcessError::OutputTooLarge {
                    program,
                    limit: max_stdout,
                })
            }
            Ok(Ok(stdout)) => Ok(Output {
                exit: self.wait()?,
                stdout,
            }),
            Ok(Err(source)) => {
                let program = self.program().to_owned();
                self.kill();
                Err(ProcessError::Io {
                    program,
                    context: "reading the output of",
                    source,
                })
            }
            Err(_) => {
                self.expire();
                Err(match self.wait() {
                    Err(e) => e,
                    // Not reached (expired means TimedOut); kept typed anyway.
                    Ok(exit) => exit.into_error(),
                })
            }
        }
    }
}
