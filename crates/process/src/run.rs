//! Running a command to its end within a deadline, its stdout read into memory (bounded).

use std::io::Read;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::child::{Exit, Spawn};
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
    let end = Instant::now() + deadline;
    let mut child = spawn.stdout(Stdio::piped()).spawn()?;
    child.set_deadline(deadline);
    let Some(mut stdout) = child.stdout() else {
        return Err(ProcessError::Io {
            program: child.program().to_owned(),
            context: "reading",
            source: std::io::Error::other("no stdout pipe"),
        });
    };
    let (tx, rx) = mpsc::channel();
    let cap = u64::try_from(max_stdout)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    // Detached: it ends when every holder of the pipe is gone, which the group kill
    // ensures; a process that left the group and holds the pipe cannot hold us, since we
    // wait for it no longer than the deadline.
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let r = (&mut stdout).take(cap).read_to_end(&mut buf);
        let _ = tx.send(r.map(|_| buf));
    });
    let remaining = end.saturating_duration_since(Instant::now()) + KILL_GRACE;
    match rx.recv_timeout(remaining) {
        Ok(Ok(stdout)) if stdout.len() > max_stdout => {
            let program = child.program().to_owned();
            child.kill();
            Err(ProcessError::OutputTooLarge {
                program,
                limit: max_stdout,
            })
        }
        Ok(Ok(stdout)) => Ok(Output {
            exit: child.wait()?,
            stdout,
        }),
        Ok(Err(source)) => {
            let program = child.program().to_owned();
            child.kill();
            Err(ProcessError::Io {
                program,
                context: "reading the output of",
                source,
            })
        }
        Err(_) => {
            child.expire();
            Err(match child.wait() {
                Err(e) => e,
                // Unreachable in practice (expired means TimedOut), kept typed anyway.
                Ok(exit) => exit.into_error(),
            })
        }
    }
}
