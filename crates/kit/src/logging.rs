//! Logging setup shared by all binaries: human-readable lines on stderr, or journald.

use tracing_subscriber::{filter::EnvFilter, prelude::*};

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
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    if journal {
        match tracing_journald::layer() {
            Ok(layer) => {
                let _ = tracing_subscriber::registry()
                    .with(filter)
                    .with(layer)
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
        .with(filter)
        .with(fmt)
        .try_init();
}
