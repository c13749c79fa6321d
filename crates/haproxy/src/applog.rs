//! The monitor's own log as the original's `logging` section configures it: a level, the
//! console (stderr) and/or a file. `-d` forces debug (HTTP libraries stay at info);
//! `RUST_LOG` overrides both.

use crate::config::Logging;
use std::fs::OpenOptions;
use std::sync::Mutex;
use tracing_subscriber::prelude::*;

/// The tracing level for one of the original's (Python) level names.
pub fn level(name: &str) -> &'static str {
    match name.to_ascii_uppercase().as_str() {
        "DEBUG" => "debug",
        "WARNING" => "warn",
        "ERROR" | "CRITICAL" => "error",
        _ => "info",
    }
}

/// Installs the global subscriber. A log file that cannot be opened is reported on stderr and
/// skipped: the monitor is more useful running than refusing to start over its own log.
pub fn init(cfg: &Logging, debug: bool, journal: bool) {
    let default = if debug { "debug" } else { level(&cfg.level) };
    if journal {
        custos_kit::logging::init_level(default, true);
        return;
    }
    let filter = || custos_kit::logging::default_filter(default);
    let console = cfg.console.then(|| {
        tracing_subscriber::fmt::layer()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
            .with_filter(filter())
    });
    let file = cfg.file.as_ref().and_then(|path| {
        match OpenOptions::new().create(true).append(true).open(path) {
            Ok(f) => Some(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(Mutex::new(f))
                    .with_filter(filter()),
            ),
            Err(e) => {
                eprintln!(
                    "haproxysessionmon: cannot open log file {}: {e}",
                    path.display()
                );
                None
            }
        }
    });
    let _ = tracing_subscriber::registry()
        .with(console)
        .with(file)
        .try_init();
}
