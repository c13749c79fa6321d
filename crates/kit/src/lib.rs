//! custos-kit: what every custos binary shares, so each thing is done one way.
//!
//! - [`http`]: the one `/metrics` + status-page server (axum), with content negotiation.
//! - [`html`]: the status page at `/`: escaping, tables with a row cap, ages, its headers.
//! - [`exposition`]: encoding a prometheus-client registry as OpenMetrics or text 0.0.4.
//! - [`logging`]: `-d/--debug` and optional journald.
//! - [`shutdown`]: a future that resolves on SIGTERM/SIGINT.
//! - [`error`]: error messages with their causes.
//! - [`config`]: YAML/JSON loading whose errors name file, key path and value.
//! - [`snapshot`]: the latest poll result per target, swapped whole, with a generation.
//! - [`poll`]: the fixed-rate poll schedule and the reconnect backoff.
//! - [`families`]: writing constant metric families from a collector.
//! - [`start`]: the runtime a binary asks for, and its outcome mapped to the exit code.
//! - [`http_client`] (feature `http-client`): the one HTTP client set-up and URL redaction.
//! - [`text`]: cutting outside text to a byte budget between characters.

pub mod config;
pub mod error;
pub mod exposition;
pub mod families;
pub mod html;
pub mod http;
#[cfg(feature = "http-client")]
pub mod http_client;
pub mod logging;
pub mod poll;
pub mod shutdown;
pub mod snapshot;
pub mod start;
pub mod text;
