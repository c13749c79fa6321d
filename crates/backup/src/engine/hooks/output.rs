//! A hook's output: its stdout and stderr share one pipe, read by a thread that logs each
//! line (never to the summary on stdout) and keeps the last lines for a failure's message.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::os::fd::OwnedFd;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use custos_process::ProcessError;

use crate::outcome::printable;

/// A hook's last output bytes kept for its failure message.
pub(super) const TAIL: usize = 2048;
/// Longest line logged in one piece.
const LINE_MAX: u64 = 4096;
/// How long the output may go on once the hook exited (a background process it started can
/// hold the pipe: its lines are still logged, but nobody waits for them).
const OUTPUT_GRACE: Duration = Duration::from_secs(1);

/// `e` with the hook's last output as its stderr (the hook's stderr is not the process
/// crate's tail: both streams go to one pipe that this module reads).
pub(super) fn with_output(e: ProcessError, tail: String) -> ProcessError {
    match e {
        ProcessError::Exited { program, code, .. } => ProcessError::Exited {
            program,
            code,
            stderr: tail,
        },
        ProcessError::Signaled {
            program, signal, ..
        } => ProcessError::Signaled {
            program,
            signal,
            stderr: tail,
        },
        ProcessError::TimedOut { program, after, .. } => ProcessError::TimedOut {
            program,
            after,
            stderr: tail,
        },
        other => other,
    }
}

/// A hook's stdout and stderr: one pipe, read by a thread that logs each line and keeps the
/// last [`TAIL`] bytes.
pub(super) struct Output {
    tail: Arc<Mutex<Tail>>,
    ended: mpsc::Receiver<()>,
}

impl Output {
    /// The reader, and the write ends for the hook's stdout and stderr.
    pub(super) fn start(label: &str) -> std::io::Result<(Output, OwnedFd, OwnedFd)> {
        let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        let write2 = write.try_clone()?;
        let tail = Arc::new(Mutex::new(Tail::default()));
        let (tx, ended) = mpsc::channel();
        let kept = tail.clone();
        let label = label.to_owned();
        std::thread::Builder::new()
            .name("hook-output".into())
            .spawn(move || {
                drain(std::fs::File::from(read), &label, &kept);
                let _ = tx.send(());
            })?;
        Ok((Output { tail, ended }, write, write2))
    }

    /// The last output, once the pipe closed or [`OUTPUT_GRACE`] passed.
    pub(super) fn finish(self) -> String {
        let _ = self.ended.recv_timeout(OUTPUT_GRACE);
        self.tail.lock().map(|t| t.text()).unwrap_or_default()
    }
}

/// Logs every non-blank line of `r` (control characters escaped) until its end.
fn drain(r: impl Read, label: &str, tail: &Mutex<Tail>) {
    let mut r = BufReader::new(r);
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut r).take(LINE_MAX).read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {
                let text = printable(String::from_utf8_lossy(&line).trim_end());
                if text.trim().is_empty() {
                    continue;
                }
                tracing::info!(hook = %label, "{text}");
                if let Ok(mut t) = tail.lock() {
                    t.push(text);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
}

/// The last lines of a hook's output, at most [`TAIL`] bytes.
#[derive(Default)]
pub(super) struct Tail {
    lines: VecDeque<String>,
    bytes: usize,
}

impl Tail {
    pub(super) fn push(&mut self, line: String) {
        self.bytes += line.len() + 1;
        self.lines.push_back(line);
        while self.bytes > TAIL && self.lines.len() > 1 {
            if let Some(old) = self.lines.pop_front() {
                self.bytes -= old.len() + 1;
            }
        }
    }

    /// The lines, newline-separated; a single longer line keeps its end, cut at a char
    /// boundary.
    pub(super) fn text(&self) -> String {
        let all = Vec::from(self.lines.clone()).join("\n");
        let mut start = all.len().saturating_sub(TAIL);
        while !all.is_char_boundary(start) {
            start += 1;
        }
        all.get(start..).unwrap_or_default().to_owned()
    }
}
