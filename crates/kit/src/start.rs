//! The one start-up of every custos binary: the runtime a binary asks for, and its typed
//! outcome mapped to the exit code with the error chain printed once (docs/ARCHITECTURE.md §1:
//! 0 ok, 1 a job or target failed, 2 bad usage or config; a binary may name another code,
//! such as backup's 3 and 130/143). A `main.rs` is its flags and one call of [`main`].

use std::error::Error;
use std::future::Future;
use std::process::ExitCode;

/// Exit code: everything succeeded.
pub const OK: u8 = 0;
/// Exit code: a job or target failed (or the process could not do its work).
pub const FAILED: u8 = 1;
/// Exit code: bad usage or config; nothing was started.
pub const USAGE: u8 = 2;

/// The runtime a binary asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// One thread: the work is waiting on sockets (haproxysessionmon, a signal watcher).
    CurrentThread,
    /// A pool of this many workers (at least one).
    Workers(usize),
}

/// Builds the runtime `kind` with I/O and timers. `thread_name` names its threads; `None`
/// keeps tokio's names (`tokio-runtime-worker`), which tests and operators look for.
pub fn runtime(
    kind: Runtime,
    thread_name: Option<&str>,
) -> std::io::Result<tokio::runtime::Runtime> {
    let mut b = match kind {
        Runtime::CurrentThread => tokio::runtime::Builder::new_current_thread(),
        Runtime::Workers(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n.max(1));
            b
        }
    };
    if let Some(name) = thread_name {
        b.thread_name(name);
    }
    b.enable_all().build()
}

/// Why a binary stops short: its exit code and the error to print, if it has not been
/// reported already (a binary that logged it where its user reads it).
#[derive(Debug)]
pub struct Failure {
    code: u8,
    error: Option<Box<dyn Error + Send + Sync>>,
}

impl Failure {
    /// Bad usage or config (exit 2).
    pub fn usage(e: impl Into<Box<dyn Error + Send + Sync>>) -> Failure {
        Failure::with_code(USAGE, e)
    }

    /// A job or target failed, or the work could not be done (exit 1).
    pub fn failed(e: impl Into<Box<dyn Error + Send + Sync>>) -> Failure {
        Failure::with_code(FAILED, e)
    }

    /// `e` with the exit code the binary chose.
    pub fn with_code(code: u8, e: impl Into<Box<dyn Error + Send + Sync>>) -> Failure {
        Failure {
            code,
            error: Some(e.into()),
        }
    }

    /// Exit `code` with nothing more printed: the error has been reported already.
    pub fn reported(code: u8) -> Failure {
        Failure { code, error: None }
    }

    /// The exit code.
    pub fn code(&self) -> u8 {
        self.code
    }

    /// The line printed on stderr: `<binary>: <error>: <cause>...`, each cause once.
    pub fn message(&self, binary: &str) -> Option<String> {
        let e = self.error.as_deref()?;
        Some(format!("{binary}: {}", crate::error::chain(e)))
    }
}

/// Runs a binary's body: `Ok(code)` exits with `code`; a [`Failure`] prints its error chain
/// once on stderr (under systemd that reaches the journal too) and exits with its code.
pub fn main(binary: &str, body: impl FnOnce() -> Result<u8, Failure>) -> ExitCode {
    match body() {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            if let Some(line) = f.message(binary) {
                eprintln!("{line}");
            }
            ExitCode::from(f.code)
        }
    }
}

/// Runs `fut` to completion on a new runtime of `kind` (a binary's async part); a runtime
/// that cannot start is a [`Failure::failed`].
pub fn block_on<F: Future>(kind: Runtime, fut: F) -> Result<F::Output, Failure> {
    let rt = runtime(kind, None).map_err(|e| {
        Failure::failed(std::io::Error::new(
            e.kind(),
            format!("cannot start the runtime: {e}"),
        ))
    })?;
    Ok(rt.block_on(fut))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read /etc/x.yml")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn a_failure_prints_its_chain_once_and_keeps_its_code() {
        let f = Failure::usage(Outer(std::io::Error::other("permission denied")));
        assert_eq!(f.code(), USAGE);
        assert_eq!(
            f.message("burp_exporter").as_deref(),
            Some("burp_exporter: cannot read /etc/x.yml: permission denied")
        );
        assert_eq!(Failure::failed("boom").code(), FAILED);
        assert_eq!(Failure::with_code(143, "stopped").code(), 143);
        let quiet = Failure::reported(FAILED);
        assert_eq!((quiet.code(), quiet.message("x")), (FAILED, None));
    }

    #[test]
    fn the_runtime_asked_for_runs_the_body() {
        for kind in [
            Runtime::CurrentThread,
            Runtime::Workers(2),
            Runtime::Workers(0),
        ] {
            let out = block_on(kind, async {
                tokio::task::spawn(async { 40 + 2 }).await.unwrap()
            });
            assert_eq!(out.unwrap(), 42);
        }
    }

    #[test]
    fn exit_codes_are_the_bodys() {
        assert_eq!(main("t", || Ok(3)), ExitCode::from(3));
        assert_eq!(
            main("t", || Err(Failure::usage("bad"))),
            ExitCode::from(USAGE)
        );
    }
}
