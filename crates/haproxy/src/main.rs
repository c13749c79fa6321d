//! `haproxysessionmon`: polls HAProxy stats and forwards sessions to log file, GELF, PRTG and
//! Prometheus.
//!
//! Exit codes: 0 stopped by a signal (or `--check` found the config valid), 1 a runtime
//! failure (a listen address in use), 2 bad usage or config.

use clap::{ArgAction, Parser};
use custos_haproxy::config::{Config, ENV_CONFIG};
use custos_haproxy::{applog, monitor};
use custos_kit::config::Strictness;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;

#[derive(Debug, Parser)]
#[command(
    name = "haproxysessionmon",
    version,
    disable_version_flag = true,
    about = "Polls HAProxy stats and forwards current sessions per proxy to a log file, \
             Graylog (GELF), PRTG and Prometheus."
)]
struct Cli {
    /// YAML configuration file (the original's format).
    #[arg(short, long, env = ENV_CONFIG)]
    config: PathBuf,
    /// Print the version and exit (`-v` as in the original).
    #[arg(short = 'v', long, action = ArgAction::Version)]
    version: Option<bool>,
    /// Log at debug level whatever `logging.level` says.
    #[arg(short, long)]
    debug: bool,
    /// Log to the systemd journal instead of the console and log file.
    #[arg(long)]
    journal: bool,
    /// Check the configuration and exit.
    #[arg(long)]
    check: bool,
    /// Treat config keys nothing reads as errors (by default a warning, as the original
    /// ignored them).
    #[arg(long)]
    strict: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (cfg, unknown) = match Config::load(&cli.config, cli.strict) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("haproxysessionmon: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.check {
        for k in &unknown {
            eprintln!(
                "haproxysessionmon: {}: {k} (ignored; an error with --strict)",
                cli.config.display()
            );
        }
        println!(
            "{}: OK ({} servers, {} backends)",
            cli.config.display(),
            cfg.servers.len(),
            cfg.backends.len()
        );
        return ExitCode::SUCCESS;
    }
    applog::init(&cfg.logging, cli.debug, cli.journal);
    // Only warnings now (strict mode failed in `load`); logged where the config says.
    let _ = custos_kit::config::check_unknown(&cli.config, &unknown, Strictness::Warn);
    if cfg.servers.values().any(|s| s.password.is_some()) {
        custos_kit::config::warn_if_readable_by_others(&cli.config);
    }
    // One thread: the work is waiting on sockets; a page parses in microseconds (a 2,000-server
    // HAProxy's in a few ms), and one thread costs less CPU (no cross-thread wake-ups) and
    // memory than a pool.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("haproxysessionmon: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = rt.block_on(async {
        let reopen = Arc::default();
        spawn_sighup(Arc::clone(&reopen));
        monitor::run(&cfg, reopen).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            // Once: the log line above is on stderr (or in the journal) already, unless the
            // log goes only to a file.
            if !cli.journal && !cfg.logging.console {
                eprintln!("haproxysessionmon: {e}");
            }
            ExitCode::from(1)
        }
    }
}

/// On SIGHUP (logrotate's postrotate) log files are reopened at their next write.
fn spawn_sighup(reopen: Arc<std::sync::atomic::AtomicU64>) {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::hangup()) {
        Ok(mut hup) => {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    tracing::info!("SIGHUP: reopening log files");
                    reopen.fetch_add(1, Ordering::Release);
                }
            });
        }
        Err(e) => tracing::warn!("cannot handle SIGHUP ({e}); log files are not reopened"),
    }
}
