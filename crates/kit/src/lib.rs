//! custos-kit: what every custos binary shares, so each thing is done one way.
//!
//! - [`http`]: the one `/metrics` + landing-page server (axum), with content negotiation.
//! - [`exposition`]: encoding a prometheus-client registry as OpenMetrics or text 0.0.4.
//! - [`logging`]: `-d/--debug` and optional journald.
//! - [`shutdown`]: a future that resolves on SIGTERM/SIGINT.
//! - [`config`]: YAML/JSON loading whose errors name file, key path and value.
//! - [`testing`]: small helpers for tests that talk to the real binaries.

pub mod config;
pub mod exposition;
pub mod http;
pub mod logging;
pub mod shutdown;
pub mod testing;
