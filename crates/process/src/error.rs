//! What went wrong with a child, as a kind callers can act on; the text is for people.

use std::fmt;
use std::io;
use std::time::Duration;

use crate::tail::one_line;

/// A child that could not be run, or did not end as its caller needs. Each variant names
/// the program (as the caller called it) and keeps stderr's tail where there was one.
#[derive(Debug)]
pub enum ProcessError {
    /// The program does not exist (spawning it failed with ENOENT).
    NotFound { program: String, source: io::Error },
    /// Not allowed to run it (EACCES, EPERM).
    PermissionDenied { program: String, source: io::Error },
    /// It ran and exited with a status its caller does not accept.
    Exited {
        program: String,
        code: i32,
        stderr: String,
    },
    /// A signal it did not get from us ended it.
    Signaled {
        program: String,
        signal: i32,
        stderr: String,
    },
    /// It ran past its deadline; its whole process group was killed.
    TimedOut {
        program: String,
        after: Duration,
        stderr: String,
    },
    /// It printed more on stdout than its caller takes; its group was killed.
    OutputTooLarge { program: String, limit: usize },
    /// Starting, feeding or waiting for it failed otherwise.
    Io {
        program: String,
        context: &'static str,
        source: io::Error,
    },
}

impl ProcessError {
    /// The program, as named by the caller.
    pub fn program(&self) -> &str {
        match self {
            ProcessError::NotFound { program, .. }
            | ProcessError::PermissionDenied { program, .. }
            | ProcessError::Exited { program, .. }
            | ProcessError::Signaled { program, .. }
            | ProcessError::TimedOut { program, .. }
            | ProcessError::OutputTooLarge { program, .. }
            | ProcessError::Io { program, .. } => program,
        }
    }

    /// stderr's tail as the child printed it (empty when there was none).
    pub fn stderr(&self) -> &str {
        match self {
            ProcessError::Exited { stderr, .. }
            | ProcessError::Signaled { stderr, .. }
            | ProcessError::TimedOut { stderr, .. } => stderr,
            _ => "",
        }
    }

    /// The error of a failed spawn, typed by why it failed.
    pub(crate) fn spawn(program: &str, source: io::Error) -> Self {
        let program = program.to_owned();
        match source.kind() {
            io::ErrorKind::NotFound => ProcessError::NotFound { program, source },
            io::ErrorKind::PermissionDenied => ProcessError::PermissionDenied { program, source },
            _ => ProcessError::Io {
                program,
                context: "starting",
                source,
            },
        }
    }
}

/// `: <stderr lines joined>` or nothing.
struct Detail<'a>(&'a str);

impl fmt::Display for Detail<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let line = one_line(self.0);
        if line.is_empty() {
            Ok(())
        } else {
            write!(f, ": {line}")
        }
    }
}

impl fmt::Display for ProcessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProcessError::NotFound { program, source }
            | ProcessError::PermissionDenied { program, source } => {
                write!(f, "cannot run {program}: {source}")
            }
            ProcessError::Exited {
                program,
                code,
                stderr,
            } => write!(f, "{program} exited with status {code}{}", Detail(stderr)),
            ProcessError::Signaled {
                program,
                signal,
                stderr,
            } => write!(
                f,
                "{program} was killed by signal {signal}{}",
                Detail(stderr)
            ),
            ProcessError::TimedOut {
                program,
                after,
                stderr,
            } => write!(
                f,
                "{program} did not finish within its timeout of {} s; its process group was \
                 killed{}",
                after.as_secs_f64(),
                Detail(stderr)
            ),
            ProcessError::OutputTooLarge { program, limit } => {
                write!(f, "{program} printed more than {limit} bytes; refused")
            }
            ProcessError::Io {
                program,
                context,
                source,
            } => write!(f, "{context} {program}: {source}"),
        }
    }
}

impl std::error::Error for ProcessError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ProcessError::NotFound { source, .. }
            | ProcessError::PermissionDenied { source, .. }
            | ProcessError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
