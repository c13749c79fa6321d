//! A running child in its own process group: streamed stdin/stdout, a deadline, a stderr
//! tail, and an outcome typed by [`ProcessError`].

use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rustix::process::{Pid, WaitId, WaitIdOptions};

use crate::registry::{kill_group, Registry};
use crate::secret::SecretFile;
use crate::tail::{self, LineHook};
use crate::ProcessError;

/// stderr kept for messages unless [`Spawn::tail`] says otherwise.
pub const DEFAULT_TAIL: usize = 2048;

/// How long [`Child::wait`] waits for stderr's end once the child has exited: a background
/// process it started can hold the pipe open for ever; its lines still reach the line hook,
/// but nobody waits for them.
const OUTPUT_GRACE: Duration = Duration::from_secs(1);

/// What the child reads on stdin.
#[derive(Debug, Default)]
pub enum Stdin {
    /// Nothing (`/dev/null`).
    #[default]
    Null,
    /// A pipe the caller writes ([`Child::stdin`]).
    Piped,
    /// A secret file, read by the child as [`SecretFile::PATH`]. This process's copy is
    /// closed as soon as the child exists.
    Secret(SecretFile),
}

/// How to start a child: a `Command` (program, arguments, environment, directory) plus what
/// this crate decides (process group, stdin, stderr tail, registry).
pub struct Spawn {
    program: String,
    cmd: Command,
    stdin: Stdin,
    stdout: Option<Stdio>,
    stderr: Option<Stdio>,
    tail: usize,
    hook: Option<LineHook>,
    merged: bool,
    registry: Option<&'static Registry>,
}

impl Spawn {
    /// `program` names the child in messages (`tar`, `mysqldump`); stdout is piped unless
    /// [`Spawn::stdout`] says otherwise, stdin is `/dev/null`, stderr goes to the tail.
    pub fn new(program: impl Into<String>, cmd: Command) -> Self {
        Spawn {
            program: program.into(),
            cmd,
            stdin: Stdin::Null,
            stdout: None,
            stderr: None,
            tail: DEFAULT_TAIL,
            hook: None,
            merged: false,
            registry: None,
        }
    }

    pub fn stdin(mut self, stdin: Stdin) -> Self {
        self.stdin = stdin;
        self
    }

    /// Where stdout goes instead of a pipe (`Stdio::null()`, a file).
    pub fn stdout(mut self, stdout: Stdio) -> Self {
        self.stdout = Some(stdout);
        self
    }

    /// Where stderr goes instead of the tail (`Stdio::null()`, a file); errors then carry
    /// no stderr.
    pub fn stderr(mut self, stderr: Stdio) -> Self {
        self.stderr = Some(stderr);
        self
    }

    /// How many bytes of stderr's end to keep (default [`DEFAULT_TAIL`]).
    pub fn tail(mut self, bytes: usize) -> Self {
        self.tail = bytes;
        self
    }

    /// Called with (program, line) for every non-blank stderr line as it arrives.
    pub fn on_stderr_line(mut self, hook: fn(&str, &str)) -> Self {
        self.hook = Some(hook);
        self
    }

    /// stdout and stderr into one pipe, read as stderr is (line hook, tail): for a command
    /// whose output is only for the log, in the order it was printed.
    pub fn merge_output(mut self) -> Self {
        self.merged = true;
        self
    }

    /// Registers the child in `registry` while it runs, so [`Registry::cancel`] kills it.
    pub fn registry(mut self, registry: &'static Registry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Starts the child in a new process group (killable as a whole; a Ctrl-C on the
    /// terminal reaches it only through its parent, which decides what happens).
    pub fn spawn(self) -> Result<Child, ProcessError> {
        let Spawn {
            program,
            mut cmd,
            stdin,
            stdout,
            stderr,
            tail,
            hook,
            merged,
            registry,
        } = self;
        let piped_stderr = stderr.is_none();
        // Merged: both streams are the write end of one pipe, whose read end is stderr's.
        let mut merged_read = None;
        let (stdout, stderr) = if merged && piped_stderr {
            let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
                .map_err(|e| ProcessError::spawn(&program, e.into()))?;
            let write2 = write
                .try_clone()
                .map_err(|e| ProcessError::spawn(&program, e))?;
            merged_read = Some(std::fs::File::from(read));
            (Some(Stdio::from(write)), Some(Stdio::from(write2)))
        } else {
            (stdout, stderr)
        };
        match stdin {
            Stdin::Null => cmd.stdin(Stdio::null()),
            Stdin::Piped => cmd.stdin(Stdio::piped()),
            Stdin::Secret(s) => cmd.stdin(Stdio::from(s.fd)),
        };
        cmd.stdout(stdout.unwrap_or_else(Stdio::piped))
            .stderr(stderr.unwrap_or_else(Stdio::piped))
            .process_group(0);
        let spawned = match registry {
            Some(r) => r.register(|| cmd.spawn(), std::process::Child::id),
            None => cmd.spawn(),
        };
        let path = cmd.get_program().to_string_lossy().into_owned();
        // The Command owns a secret's descriptor: close it now, not when the child ends.
        drop(cmd);
        let mut inner = spawned.map_err(|e| ProcessError::spawn(&path, e))?;
        let err: Option<Box<dyn io::Read + Send>> = match merged_read {
            Some(read) => Some(Box::new(read)),
            None => inner
                .stderr
                .take()
                .filter(|_| piped_stderr)
                .map(|e| Box::new(e) as Box<dyn io::Read + Send>),
        };
        let mut child = Child {
            pgid: inner.id(),
            program,
            inner,
            stderr: None,
            watchdog: None,
            expired: Arc::new(AtomicBool::new(false)),
            registry,
            reaped: false,
        };
        if let Some(err) = err {
            let name = child.program.clone();
            let kept = Arc::new(Mutex::new(Vec::new()));
            let (done, ended) = mpsc::channel();
            let shared = kept.clone();
            // No thread (resources exhausted): an error, and the child is killed on drop.
            std::thread::Builder::new()
                .name("stderr-tail".into())
                .spawn(move || {
                    tail::drain(err, tail, &name, hook, &shared);
                    let _ = done.send(());
                })
                .map_err(|e| child.io("reading the stderr of", e))?;
            child.stderr = Some(Tail {
                kept,
                ended,
                limit: tail,
            });
        }
        Ok(child)
    }
}

/// stderr's reader: the bytes it kept, and a signal when the stream ended.
struct Tail {
    kept: Arc<Mutex<Vec<u8>>>,
    ended: mpsc::Receiver<()>,
    limit: usize,
}

impl Tail {
    /// The tail once the stream ended, or what arrived within [`OUTPUT_GRACE`].
    fn finish(self) -> String {
        let _ = self.ended.recv_timeout(OUTPUT_GRACE);
        tail::text(&self.kept, self.limit)
    }
}

/// A child that ended with an exit status (any: what it means is the caller's to decide).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    pub program: String,
    pub code: i32,
    /// stderr's tail as printed.
    pub stderr: String,
}

impl Exit {
    pub fn success(&self) -> bool {
        self.code == 0
    }

    /// This exit as an error ([`ProcessError::Exited`]).
    pub fn into_error(self) -> ProcessError {
        ProcessError::Exited {
            program: self.program,
            code: self.code,
            stderr: self.stderr,
        }
    }

    /// `Ok` for status 0, else [`ProcessError::Exited`].
    pub fn require_success(self) -> Result<Exit, ProcessError> {
        if self.success() {
            Ok(self)
        } else {
            Err(self.into_error())
        }
    }
}

/// A running child in its own process group. Dropped before [`Child::wait`], it is killed
/// (the whole group) and reaped: a wrapper's children never outlive it.
pub struct Child {
    program: String,
    inner: std::process::Child,
    /// The child's pid, which is also its process group id.
    pgid: u32,
    stderr: Option<Tail>,
    watchdog: Option<Watchdog>,
    /// Set when the deadline killed the group.
    expired: Arc<AtomicBool>,
    registry: Option<&'static Registry>,
    reaped: bool,
}

impl Child {
    /// The child's pid (= its process group id).
    pub fn id(&self) -> u32 {
        self.pgid
    }

    /// The name given to [`Spawn::new`].
    pub fn program(&self) -> &str {
        &self.program
    }

    /// Its stdin pipe ([`Stdin::Piped`]), taken once.
    pub fn stdin(&mut self) -> Option<ChildStdin> {
        self.inner.stdin.take()
    }

    /// Its stdout pipe, taken once.
    pub fn stdout(&mut self) -> Option<ChildStdout> {
        self.inner.stdout.take()
    }

    /// Kills the whole group once `after` has passed from now, unless it ended; `wait`
    /// then fails with [`ProcessError::TimedOut`]. A second call keeps the first deadline.
    pub fn set_deadline(&mut self, after: Duration) {
        if !self.reaped && self.watchdog.is_none() {
            self.watchdog = Some(Watchdog::start(self.pgid, after, self.expired.clone()));
        }
    }

    /// Whether the child has exited (without reaping it: its group id stays ours).
    pub fn has_exited(&self) -> io::Result<bool> {
        if self.reaped {
            return Ok(true);
        }
        exited(self.pgid)
    }

    /// Kills the whole group after the deadline that passed (or is treated as passed), so
    /// `wait` reports [`ProcessError::TimedOut`].
    pub fn expire(&mut self) {
        self.expired.store(true, Ordering::SeqCst);
        if !self.reaped {
            kill_group(self.pgid);
        }
    }

    /// Kills the whole group and reaps the child; its outcome is dropped.
    pub fn kill(&mut self) {
        if !self.reaped {
            kill_group(self.pgid);
            self.release();
            let _ = self.inner.kill();
            let _ = self.inner.wait();
            self.reaped = true;
        }
    }

    /// Kills the whole group, then waits as [`Child::wait`] does, for stderr's tail (a
    /// child given up on that should still say why).
    pub fn kill_and_wait(&mut self) -> Result<Exit, ProcessError> {
        if !self.reaped {
            kill_group(self.pgid);
        }
        self.wait()
    }

    /// Waits for the child (closing this side's stdin and stdout first, so a child still
    /// writing gets EPIPE instead of blocking) and reads stderr's tail: `Ok` with any exit
    /// status, an error when it was killed by its deadline or a signal.
    pub fn wait(&mut self) -> Result<Exit, ProcessError> {
        if self.reaped {
            return Err(self.io("waiting for", io::Error::other("already reaped")));
        }
        self.inner.stdin = None;
        self.inner.stdout = None;
        // Wait without reaping, then stop the watchdog and unregister: the group id cannot
        // be reused before both are done, so neither can ever kill a stranger.
        if let Some(pid) = self.pid() {
            let opts = WaitIdOptions::EXITED | WaitIdOptions::NOWAIT;
            while let Err(rustix::io::Errno::INTR) = rustix::process::waitid(WaitId::Pid(pid), opts)
            {
            }
        }
        let deadline = self.release();
        let status = self.inner.wait();
        self.reaped = true;
        let stderr = self.stderr.take().map(Tail::finish).unwrap_or_default();
        let program = self.program.clone();
        let status = status.map_err(|e| self.io("waiting for", e))?;
        if self.expired.load(Ordering::SeqCst) {
            return Err(ProcessError::TimedOut {
                program,
                after: deadline.unwrap_or_default(),
                stderr,
            });
        }
        match (status.code(), status.signal()) {
            (Some(code), _) => Ok(Exit {
                program,
                code,
                stderr,
            }),
            (None, signal) => Err(ProcessError::Signaled {
                program,
                signal: signal.unwrap_or(0),
                stderr,
            }),
        }
    }

    /// [`Child::set_deadline`] then [`Child::wait`].
    pub fn wait_timeout(&mut self, after: Duration) -> Result<Exit, ProcessError> {
        self.set_deadline(after);
        self.wait()
    }

    fn pid(&self) -> Option<Pid> {
        i32::try_from(self.pgid).ok().and_then(Pid::from_raw)
    }

    fn io(&self, context: &'static str, source: io::Error) -> ProcessError {
        ProcessError::Io {
            program: self.program.clone(),
            context,
            source,
        }
    }

    /// Stops the watchdog and leaves the registry (before reaping); the deadline it had.
    fn release(&mut self) -> Option<Duration> {
        let deadline = self.watchdog.take().map(Watchdog::stop);
        if let Some(r) = self.registry {
            r.unregister(self.pgid);
        }
        deadline
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // stderr's reader ends once the killed group has closed the pipe; not joined here,
        // so a drop never waits on a process that escaped the group.
        self.kill();
    }
}

/// Whether child `pid` has exited, without reaping it (its pid stays ours until `wait`).
fn exited(pid: u32) -> io::Result<bool> {
    let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return Ok(true);
    };
    let status = rustix::process::waitid(
        WaitId::Pid(pid),
        WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT,
    )?;
    // With NOHANG, Linux fills no status when nothing changed.
    Ok(status.is_some_and(|s| s.exited() || s.killed() || s.dumped()))
}

/// Kills a process group when its deadline passes first.
struct Watchdog {
    /// Set (and notified) when the child ended in time.
    done: Arc<(Mutex<bool>, Condvar)>,
    after: Duration,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    fn start(pgid: u32, after: Duration, expired: Arc<AtomicBool>) -> Self {
        let done = Arc::new((Mutex::new(false), Condvar::new()));
        let d = done.clone();
        let killer = expired.clone();
        let thread = std::thread::Builder::new()
            .name("deadline".into())
            .spawn(move || {
                let (lock, cv) = &*d;
                let Ok(guard) = lock.lock() else { return };
                let Ok((guard, _)) = cv.wait_timeout_while(guard, after, |done| !*done) else {
                    return;
                };
                // A child that exited in time but was not waited for yet (its caller still
                // reads what it wrote) did not time out.
                if !*guard && !exited(pgid).unwrap_or(false) {
                    expired.store(true, Ordering::SeqCst);
                    kill_group(pgid);
                }
            });
        // A deadline nobody can watch (no thread: resources exhausted) is treated as passed:
        // the child is killed now rather than left to hang.
        let thread = match thread {
            Ok(t) => Some(t),
            Err(_) => {
                killer.store(true, Ordering::SeqCst);
                kill_group(pgid);
                None
            }
        };
        Watchdog {
            done,
            after,
            thread,
        }
    }

    /// Stops the watchdog; the deadline it had.
    fn stop(mut self) -> Duration {
        if let Ok(mut d) = self.done.0.lock() {
            *d = true;
        }
        self.done.1.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.after
    }
}
