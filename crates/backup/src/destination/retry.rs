//! The one retry layer: every destination is wrapped in [`Retrying`], which repeats an
//! operation that failed with [`ErrorKind::Transient`] with exponential backoff. Destinations
//! themselves never retry, so a failure is retried once per layer, not multiplied.
//!
//! Streamed object bytes are not retried here (they are gone once written): a store that
//! uploads in parts retries nothing either, the upload is aborted and the destination fails
//! for this run, while the others carry on.

use std::io::Read;
use std::time::Duration;

use super::{Destination, DestinationError, ErrorKind, ObjectInfo, ObjectWriter};

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Tries in all, the first included.
    pub attempts: u32,
    /// Wait before the second try; doubled for each further one.
    pub initial: Duration,
    /// Longest single wait.
    pub max: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            attempts: 4,
            initial: Duration::from_millis(200),
            max: Duration::from_secs(5),
        }
    }
}

impl Policy {
    /// Runs `f` until it succeeds, fails with a kind other than transient, or the attempts
    /// are used up; `what` names the operation in the log. Each retry is one DEBUG line; an
    /// operation that needed retries ends with one WARN line (its outcome and the last
    /// error), so cron mails one line per operation, not one per attempt.
    pub fn run<T>(
        &self,
        destination: &str,
        what: &str,
        mut f: impl FnMut() -> Result<T, DestinationError>,
    ) -> Result<T, DestinationError> {
        let mut wait = self.initial;
        let mut attempt = 1;
        let mut last: Option<String> = None;
        loop {
            match f() {
                Err(e) if e.kind() == ErrorKind::Transient && attempt < self.attempts => {
                    tracing::debug!(destination, operation = what, attempt, error = %e,
                        retry_in_ms = wait.as_millis() as u64, "transient failure; retrying");
                    last = Some(e.to_string());
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(self.max);
                    attempt += 1;
                }
                Ok(v) => {
                    if let Some(e) = last {
                        tracing::warn!(
                            destination,
                            operation = what,
                            attempts = attempt,
                            "succeeded after transient failures; last: {e}"
                        );
                    }
                    return Ok(v);
                }
                Err(e) => {
                    if attempt > 1 {
                        tracing::warn!(
                            destination,
                            operation = what,
                            attempts = attempt,
                            "gave up after {attempt} attempts: {e}"
                        );
                    }
                    return Err(e);
                }
            }
        }
    }
}

/// A destination whose operations are retried by [`Policy`].
pub struct Retrying {
    inner: Box<dyn Destination>,
    policy: Policy,
    stall_timeout: Duration,
    upload_rate_limit: Option<u64>,
}

impl Retrying {
    /// Wraps `inner`; it answers [`Destination::stall_timeout`] and
    /// [`Destination::upload_rate_limit`] with the config's values.
    pub fn new(
        inner: Box<dyn Destination>,
        policy: Policy,
        stall_timeout: Duration,
        upload_rate_limit: Option<u64>,
    ) -> Self {
        Self {
            inner,
            policy,
            stall_timeout,
            upload_rate_limit,
        }
    }

    fn run<T>(
        &self,
        what: &str,
        f: impl FnMut() -> Result<T, DestinationError>,
    ) -> Result<T, DestinationError> {
        self.policy.run(self.inner.id(), what, f)
    }
}

impl Destination for Retrying {
    fn id(&self) -> &str {
        self.inner.id()
    }
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn check(&self) -> Result<(), DestinationError> {
        self.run("check", || self.inner.check())
    }
    fn create(&self, name: &str) -> Result<Box<dyn ObjectWriter>, DestinationError> {
        self.run("create", || self.inner.create(name))
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, DestinationError> {
        self.run("list", || self.inner.list(prefix))
    }
    fn open(&self, name: &str) -> Result<Box<dyn Read + Send>, DestinationError> {
        self.run("open", || self.inner.open(name))
    }
    fn delete(&self, name: &str) -> Result<(), DestinationError> {
        self.run("delete", || self.inner.delete(name))
    }
    fn remove_abandoned(&self, prefix: &str) -> Result<Vec<String>, DestinationError> {
        self.run("remove abandoned uploads", || {
            self.inner.remove_abandoned(prefix)
        })
    }
    fn stall_timeout(&self) -> Duration {
        self.stall_timeout
    }
    fn upload_rate_limit(&self) -> Option<u64> {
        self.upload_rate_limit
    }
    fn max_uploads(&self) -> Option<std::num::NonZeroUsize> {
        self.inner.max_uploads()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn err(kind: ErrorKind) -> DestinationError {
        DestinationError::Store {
            destination: "d".into(),
            op: "list",
            object: String::new(),
            kind,
            message: "boom".into(),
        }
    }

    fn quick() -> Policy {
        Policy {
            attempts: 3,
            initial: Duration::from_millis(1),
            max: Duration::from_millis(2),
        }
    }

    #[test]
    fn transient_failures_are_retried_until_success_or_attempts_run_out() {
        let calls = Cell::new(0);
        let r = quick().run("d", "list", || {
            calls.set(calls.get() + 1);
            if calls.get() < 3 {
                Err(err(ErrorKind::Transient))
            } else {
                Ok(7)
            }
        });
        assert_eq!(r.expect("third try"), 7);
        assert_eq!(calls.get(), 3);

        calls.set(0);
        let r: Result<(), _> = quick().run("d", "list", || {
            calls.set(calls.get() + 1);
            Err(err(ErrorKind::Transient))
        });
        assert_eq!(r.expect_err("gave up").kind(), ErrorKind::Transient);
        assert_eq!(calls.get(), 3);
    }

    #[test]
    fn other_kinds_fail_at_once() {
        for kind in [ErrorKind::NotFound, ErrorKind::Auth, ErrorKind::Other] {
            let calls = Cell::new(0);
            let r: Result<(), _> = quick().run("d", "open", || {
                calls.set(calls.get() + 1);
                Err(err(kind))
            });
            assert_eq!(r.expect_err("failed").kind(), kind);
            assert_eq!(calls.get(), 1, "{kind:?}");
        }
    }

    #[test]
    fn io_errors_are_classified() {
        let io = |k: std::io::ErrorKind| DestinationError::Io {
            destination: "d".into(),
            op: "open",
            object: "x".into(),
            source: k.into(),
        };
        assert_eq!(io(std::io::ErrorKind::NotFound).kind(), ErrorKind::NotFound);
        assert_eq!(
            io(std::io::ErrorKind::PermissionDenied).kind(),
            ErrorKind::Auth
        );
        assert_eq!(
            io(std::io::ErrorKind::TimedOut).kind(),
            ErrorKind::Transient
        );
        assert_eq!(io(std::io::ErrorKind::InvalidData).kind(), ErrorKind::Other);
    }
}
