//! `burp_exporter`: Prometheus exporter for the status port of Burp backup servers.
//!
//! Exit codes: 0 ok, 1 `--once` found a server unreachable (or the HTTP server failed),
//! 2 bad usage or config.

use anyhow::Context;
use clap::Parser;
use custos_burp::{config, exporter, routes, summary};
use custos_kit::start::{Failure, Runtime};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "burp_exporter",
    version,
    about = "Prometheus exporter for the status port of Burp backup servers.",
    long_about = "Connects to one or more burp servers' status ports as a monitor client, polls \
                  them in the background and serves the result on /metrics and \
                  /probe?server[]=<name>. Certificates are made by burp's own CA: run a \
                  regular burp client once with the monitor's cname to get them."
)]
struct Cli {
    /// YAML configuration file.
    #[arg(short, long, default_value = config::DEFAULT_PATH)]
    config: PathBuf,
    /// Log at debug level.
    #[arg(short, long)]
    debug: bool,
    /// Log to the systemd journal instead of stderr.
    #[arg(long)]
    journal: bool,
    /// Poll every server once, print a summary like `burp -a S` and exit
    /// (1 if a server is unreachable).
    #[arg(long)]
    once: bool,
    /// Refuse config keys that nothing reads (by default they are a warning, as the original
    /// ignored them).
    #[arg(long)]
    strict: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    custos_kit::start::main("burp_exporter", || {
        custos_kit::logging::init(cli.debug, cli.journal);
        let strictness = custos_kit::config::Strictness::from_flag(cli.strict);
        let cfg = config::Config::load(&cli.config, strictness).map_err(Failure::usage)?;
        let result = if cli.once {
            custos_kit::start::block_on(Runtime::Workers(2), run_once(&cfg))?
        } else {
            custos_kit::start::block_on(Runtime::Workers(2), serve(cfg))?
        };
        result.map_err(Failure::failed)
    })
}

async fn run_once(cfg: &config::Config) -> anyhow::Result<u8> {
    let (text, all_up) = summary::once(cfg).await;
    // `--once | head` closes the pipe early; that is not an error worth a panic.
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            return Err(e).context("writing the summary")
        }
        _ => {}
    }
    Ok(if all_up {
        custos_kit::start::OK
    } else {
        custos_kit::start::FAILED
    })
}

/// How often the status page reloads: the shortest poll interval, between 5 s and 5 min.
fn page_refresh(cfg: &config::Config) -> std::time::Duration {
    cfg.clients
        .iter()
        .map(|s| cfg.refresh_interval(s))
        .min()
        .unwrap_or_default()
        .clamp(
            std::time::Duration::from_secs(5),
            std::time::Duration::from_secs(300),
        )
}

async fn serve(cfg: config::Config) -> anyhow::Result<u8> {
    let store = exporter::spawn_pollers(&cfg);
    let app = routes::router(store, page_refresh(&cfg));
    custos_kit::http::serve(cfg.listen_addr(), app, custos_kit::shutdown::signal())
        .await
        .context("HTTP server")?;
    Ok(custos_kit::start::OK)
}
