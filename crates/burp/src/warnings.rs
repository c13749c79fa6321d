//! Bounds on the `w` (warning) frames a peer may send.
//!
//! burp sends a warning now and then (its version warning at login). A peer that passes TLS
//! could instead stream warnings without end: logged one by one and, during login, kept in a
//! list, that costs a log line and memory per frame for as long as it likes. So each login
//! and each request gets a budget of warnings (count and bytes); a peer over it is dropped
//! with a protocol error, and a warning repeated back to back is logged once with a count.

/// Warnings allowed per login and per request.
pub const MAX_WARNINGS: usize = 64;
/// Bytes of warning text allowed per login and per request.
pub const MAX_WARNING_BYTES: usize = 64 * 1024;

/// The warnings of one login or one request: what was used of the budget, and the warning
/// last logged with how often it came again since.
#[derive(Debug, Default)]
pub struct WarningBudget {
    count: usize,
    bytes: usize,
    last: Option<String>,
    repeats: u64,
}

impl WarningBudget {
    /// A fresh budget (a new login or request); logs what the previous one left unlogged.
    pub fn reset(&mut self, addr: &str) {
        self.flush(addr);
        *self = WarningBudget::default();
    }

    /// Records a warning and logs it unless it repeats the previous one. Returns whether
    /// it is new (not a repeat), or why the peer is over its budget.
    pub fn record(&mut self, addr: &str, text: &str) -> Result<bool, String> {
        self.count += 1;
        self.bytes = self.bytes.saturating_add(text.len());
        if self.count > MAX_WARNINGS || self.bytes > MAX_WARNING_BYTES {
            self.flush(addr);
            return Err(format!(
                "more than {MAX_WARNINGS} warnings or {MAX_WARNING_BYTES} bytes of warnings \
                 in one reply"
            ));
        }
        if self.last.as_deref() == Some(text) {
            self.repeats += 1;
            return Ok(false);
        }
        self.flush(addr);
        tracing::warn!(addr = %addr, "burp server warns: {text}");
        self.last = Some(text.to_owned());
        Ok(true)
    }

    /// Logs how often the last warning repeated, if it did.
    pub fn flush(&mut self, addr: &str) {
        if self.repeats > 0 {
            tracing::warn!(
                addr = %addr,
                "burp server repeated that warning {} more time(s)",
                self.repeats
            );
            self.repeats = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_counted_not_logged_and_the_budget_holds() {
        let mut b = WarningBudget::default();
        assert_eq!(b.record("a", "x"), Ok(true));
        assert_eq!(b.record("a", "x"), Ok(false));
        assert_eq!(b.repeats, 1);
        assert_eq!(b.record("a", "y"), Ok(true));
        assert_eq!(b.repeats, 0, "flushed when a different one came");
        for _ in 3..MAX_WARNINGS {
            assert_eq!(b.record("a", "y"), Ok(false));
        }
        assert!(b.record("a", "y").is_err());
        b.reset("a");
        assert_eq!(b.record("a", "y"), Ok(true), "a new request, a new budget");
    }

    #[test]
    fn bytes_are_bounded_too() {
        let mut b = WarningBudget::default();
        let big = "w".repeat(MAX_WARNING_BYTES / 2);
        assert!(b.record("a", &big).is_ok());
        assert!(b.record("a", &big).is_ok());
        assert!(b.record("a", "!").is_err());
    }
}
