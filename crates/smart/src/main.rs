//! `prometheus_smart_exporter`: S.M.A.R.T. metrics from `smart_exporter_helper`.
//!
//! Exit codes: 0 stopped by a signal, 1 the HTTP server failed, 2 bad usage or config.

use anyhow::Context;
use clap::Parser;
use custos_smart::{attrmap::AttrMap, collector, devicedb::DeviceDb, metrics, refresh::Refresher};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// The original's default device DB location.
const DEFAULT_DEVICE_DB: &str = "/etc/prometheus_smart_exporter/devices.json";

#[derive(Debug, Parser)]
#[command(
    name = "prometheus_smart_exporter",
    version,
    about = "Prometheus exporter for S.M.A.R.T. data read by smart_exporter_helper.",
    long_about = "Asks smart_exporter_helper (running as root) on its UNIX socket for every \
                  drive's smartctl data, in the background every --interval, and serves the \
                  last result on /metrics. A scrape never runs smartctl."
)]
struct Cli {
    /// Path to the UNIX socket where the helper listens.
    socket: PathBuf,
    /// Device database in JSON format (check_smart_attributes' check_smartdb.json).
    #[arg(long, value_name = "DEVICE_DB")]
    device_db: Option<PathBuf>,
    /// Attribute mapping in JSON format (default: the built-in mapping).
    #[arg(long, value_name = "ATTR_MAPPING")]
    attr_mapping: Option<PathBuf>,
    /// Increase verbosity (up to -vvv).
    #[arg(short = 'v', action = clap::ArgAction::Count)]
    verbosity: u8,
    /// Log to the systemd journal.
    #[arg(long)]
    journal: bool,
    /// Port number to bind to.
    #[arg(
        short = 'p',
        long = "listen-port",
        value_name = "PORT",
        default_value_t = 9257
    )]
    listen_port: u16,
    /// Address to bind to.
    #[arg(
        short = 'a',
        long = "listen-address",
        value_name = "ADDR",
        default_value = "127.0.0.1"
    )]
    listen_address: IpAddr,
    /// Seconds between refreshes (each asks the helper once).
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    interval: f64,
    /// Seconds to wait for the helper's answer.
    #[arg(long, value_name = "SECS", default_value_t = 120.0)]
    helper_timeout: f64,
}

fn seconds(name: &str, v: f64) -> anyhow::Result<Duration> {
    anyhow::ensure!(
        v.is_finite() && v > 0.0 && v < 1e9,
        "--{name} {v}: expected a positive number of seconds"
    );
    Ok(Duration::from_secs_f64(v))
}

fn load_db(path: Option<&Path>) -> anyhow::Result<DeviceDb> {
    match path {
        Some(p) => Ok(DeviceDb::load(p)?),
        None if Path::new(DEFAULT_DEVICE_DB).exists() => {
            Ok(DeviceDb::load(Path::new(DEFAULT_DEVICE_DB))?)
        }
        None => {
            tracing::warn!(
                "no device DB at {DEFAULT_DEVICE_DB} (use --device-db): mapped attributes are \
                 exported with their raw values and flagged in smart_metric_error"
            );
            Ok(DeviceDb::default())
        }
    }
}

fn load_map(path: Option<&Path>) -> anyhow::Result<AttrMap> {
    let map = match path {
        Some(p) => AttrMap::load(p)?,
        None => AttrMap::builtin(),
    };
    for name in map.metrics().keys() {
        anyhow::ensure!(
            !metrics::is_reserved(name),
            "attribute mapping: smart_{name} is a name the exporter itself uses"
        );
    }
    Ok(map)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = ["error", "warn", "info", "debug"][usize::from(cli.verbosity.min(3))];
    custos_kit::logging::init_level(level, cli.journal);
    let setup = (|| -> anyhow::Result<_> {
        let db = load_db(cli.device_db.as_deref())?;
        let map = load_map(cli.attr_mapping.as_deref())?;
        tracing::info!(
            devices = db.len(),
            rules = map.len(),
            "device DB and attribute mapping loaded"
        );
        Ok((
            db,
            map,
            seconds("interval", cli.interval)?,
            seconds("helper-timeout", cli.helper_timeout)?,
        ))
    })();
    let (db, map, interval, timeout) = match setup {
        Ok(s) => s,
        Err(e) => {
            // `{e}`, not `{e:#}`: the config errors already end with their cause, and the
            // alternate form would print it a second time.
            eprintln!("prometheus_smart_exporter: {e}");
            return ExitCode::from(2);
        }
    };
    let refresher = Refresher {
        socket: cli.socket,
        timeout,
        db: Arc::new(db),
        map: Arc::new(map),
    };
    let addr = SocketAddr::new(cli.listen_address, cli.listen_port);
    match serve(refresher, interval, addr).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("prometheus_smart_exporter: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn serve(refresher: Refresher, interval: Duration, addr: SocketAddr) -> anyhow::Result<()> {
    let store = collector::store();
    tokio::spawn(refresher.run(interval, Arc::clone(&store)));
    let app = custos_kit::http::router(
        Arc::new(collector::exposition(&store)),
        custos_kit::http::landing_page(
            "prometheus_smart_exporter",
            "S.M.A.R.T. metrics of every drive, read by smart_exporter_helper.",
            &[("/metrics", "Metrics")],
        ),
    );
    custos_kit::http::serve(addr, app, custos_kit::shutdown::signal())
        .await
        .context("HTTP server")
}
