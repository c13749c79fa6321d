//! `prometheus_smart_exporter`: S.M.A.R.T. metrics from `smart_exporter_helper`.
//!
//! Exit codes: 0 stopped by a signal, 1 the HTTP server failed, 2 bad usage or config.

use anyhow::Context;
use clap::Parser;
use custos_kit::config::Strictness;
use custos_kit::start::{Failure, Runtime};
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
    /// Refuse keys in the device DB or attribute mapping that nothing reads (by default a
    /// warning, as the original ignored them).
    #[arg(long)]
    strict: bool,
}

fn seconds(name: &str, v: f64) -> anyhow::Result<Duration> {
    anyhow::ensure!(
        v.is_finite() && v > 0.0 && v < 1e9,
        "--{name} {v}: expected a positive number of seconds"
    );
    Ok(Duration::from_secs_f64(v))
}

fn load_db(path: Option<&Path>, strictness: Strictness) -> anyhow::Result<DeviceDb> {
    match path {
        Some(p) => Ok(DeviceDb::load(p, strictness)?),
        None if Path::new(DEFAULT_DEVICE_DB).exists() => {
            Ok(DeviceDb::load(Path::new(DEFAULT_DEVICE_DB), strictness)?)
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

fn load_map(path: Option<&Path>, strictness: Strictness) -> anyhow::Result<AttrMap> {
    let map = match path {
        Some(p) => AttrMap::load(p, strictness)?,
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    custos_kit::start::main("prometheus_smart_exporter", || {
        let level = ["error", "warn", "info", "debug"][usize::from(cli.verbosity.min(3))];
        custos_kit::logging::init_level(level, cli.journal);
        let (refresher, interval) = setup(&cli).map_err(Failure::usage)?;
        let addr = SocketAddr::new(cli.listen_address, cli.listen_port);
        custos_kit::start::block_on(Runtime::Workers(2), serve(refresher, interval, addr))?
            .map_err(Failure::failed)?;
        Ok(custos_kit::start::OK)
    })
}

/// The device DB, the attribute mapping and the durations, checked before anything starts.
fn setup(cli: &Cli) -> anyhow::Result<(Refresher, Duration)> {
    let strictness = Strictness::from_flag(cli.strict);
    let db = load_db(cli.device_db.as_deref(), strictness)?;
    let map = load_map(cli.attr_mapping.as_deref(), strictness)?;
    tracing::info!(
        devices = db.len(),
        rules = map.len(),
        "device DB and attribute mapping loaded"
    );
    let interval = seconds("interval", cli.interval)?;
    let refresher = Refresher {
        socket: cli.socket.clone(),
        timeout: seconds("helper-timeout", cli.helper_timeout)?,
        db: Arc::new(db),
        map: Arc::new(map),
    };
    Ok((refresher, interval))
}

async fn serve(refresher: Refresher, interval: Duration, addr: SocketAddr) -> anyhow::Result<()> {
    let store = collector::store();
    tokio::spawn(refresher.run(interval, Arc::clone(&store)));
    let page_store = Arc::clone(&store);
    let refresh = interval.clamp(Duration::from_secs(5), Duration::from_secs(300));
    let page = move || {
        custos_smart::status_page::render(&page_store, std::time::SystemTime::now(), refresh)
    };
    let app = custos_kit::http::router(Arc::new(collector::exposition(&store)), page);
    custos_kit::http::serve(addr, app, custos_kit::shutdown::signal())
        .await
        .context("HTTP server")
}
