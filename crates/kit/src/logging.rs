//! Logging setup shared by all binaries: human-readable lines on stderr, or journald.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::{EnvFilter, LevelFilter};
use tracing_subscriber::layer::Context;
use tracing_subscriber::{prelude::*, Layer};

/// Installs the global subscriber.
///
/// `debug` lowers the default level from `info` to `debug` (`-d/--debug` in every original);
/// `RUST_LOG` still overrides both. With `journal` the lines go to journald with their fields;
/// if journald is not reachable we fall back to stderr and say so, rather than log nothing.
pub fn init(debug: bool, journal: bool) {
    init_level(if debug { "debug" } else { "info" }, journal);
}

/// Like [`init`] with an explicit default level (`warn`, `info`, `debug`, ...), for tools
/// whose original is silent unless asked (a cron job mails whatever it prints, so `backup`
/// logs only warnings unless `-v`/`-d`). `RUST_LOG` still overrides it.
pub fn init_level(default: &str, journal: bool) {
    init_with_tail(default, journal, None);
}

/// Like [`init_level`], and also keeps the last lines at info level or above in `tail`
/// whatever the printed level (a dead-man's switch ping carries them even when a quiet cron
/// run printed nothing).
pub fn init_with_tail(default: &str, journal: bool, tail: Option<LogTail>) {
    let tail = tail.map(|t| t.with_filter(LevelFilter::INFO));
    let filter = default_filter(default);
    if journal {
        match tracing_journald::layer() {
            Ok(layer) => {
                let _ = tracing_subscriber::registry()
                    .with(tail)
                    .with(layer.with_filter(filter))
                    .try_init();
                return;
            }
            Err(e) => eprintln!("journald not reachable ({e}); logging to stderr"),
        }
    }
    // No colour codes in files, pipes and cron mails.
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .with_target(default == "debug" || default == "trace");
    let _ = tracing_subscriber::registry()
        .with(tail)
        .with(fmt.with_filter(filter))
        .try_init();
}

/// Libraries whose own debug lines (a line per connection, pool checkout and frame) would
/// drown a binary's at `-d`; they stay at info unless `RUST_LOG` names them.
pub const CHATTY_LIBRARIES: [&str; 5] = ["hyper", "hyper_util", "h2", "reqwest", "rustls"];

/// `RUST_LOG` if set, else `default` (`info`, `debug`, ...) with [`CHATTY_LIBRARIES`] kept at
/// info when `default` is more verbose.
pub fn default_filter(default: &str) -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(directives(default)))
}

fn directives(default: &str) -> String {
    let mut d = default.to_string();
    if matches!(default, "debug" | "trace") {
        for lib in CHATTY_LIBRARIES {
            d.push_str(&format!(",{lib}=info"));
        }
    }
    d
}

/// The last log lines of this process (`LEVEL target: message key=value ...`), bounded.
#[derive(Clone, Debug)]
pub struct LogTail {
    lines: Arc<Mutex<VecDeque<String>>>,
    keep: usize,
}

impl LogTail {
    /// Keeps the last `keep` lines.
    pub fn new(keep: usize) -> Self {
        LogTail {
            lines: Arc::new(Mutex::new(VecDeque::with_capacity(keep))),
            keep,
        }
    }

    /// The lines kept, oldest first.
    pub fn lines(&self) -> Vec<String> {
        self.lines
            .lock()
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn push(&self, line: String) {
        if let Ok(mut l) = self.lines.lock() {
            if l.len() == self.keep {
                l.pop_front();
            }
            l.push_back(line);
        }
    }
}

/// Collects an event's message and fields into one line.
struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, " {value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            let _ = write!(self.0, " {value}");
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}

impl<S: Subscriber> Layer<S> for LogTail {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut line = Line(format!("{:>5}", event.metadata().level().as_str()));
        event.record(&mut line);
        self.push(line.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_keeps_library_debug_lines_out() {
        let tail = LogTail::new(10);
        let filter = EnvFilter::new(directives("debug"));
        let sub = tracing_subscriber::registry().with(tail.clone().with_filter(filter));
        tracing::subscriber::with_default(sub, || {
            tracing::debug!(target: "hyper_util::client::legacy::pool", "pooling idle connection");
            tracing::debug!(target: "reqwest::connect", "starting new connection");
            tracing::debug!(target: "h2::codec", "frame");
            tracing::info!(target: "hyper", "kept: info");
            tracing::debug!(target: "custos_haproxy::monitor", "kept: ours");
        });
        let lines = tail.lines();
        assert_eq!(lines, [" INFO kept: info", "DEBUG kept: ours"], "{lines:?}");
        assert_eq!(directives("info"), "info");
    }

    #[test]
    fn the_tail_keeps_the_last_lines_with_their_fields() {
        let tail = LogTail::new(2);
        let sub = tracing_subscriber::registry().with(tail.clone().with_filter(LevelFilter::INFO));
        tracing::subscriber::with_default(sub, || {
            tracing::info!("one");
            tracing::debug!("not kept");
            tracing::warn!(source = "www", "two");
            tracing::error!(code = 2, "three {}", 3);
        });
        assert_eq!(
            tail.lines(),
            [" WARN two source=www", "ERROR three 3 code=2"]
        );
    }
}
