//! Burp status-port client and the `burp_exporter` collector.
//!
//! Data flows one way:
//! `tls::connect -> session (handshake) -> frame (request/response) -> model (JSON) -> snapshot -> metrics`.
//!
//! Transport (owned by `frame`, `tls`, `session`, `error`):
//! - [`frame`]: burp's framing: 1 command byte (`c`, `w`, `e`), 4 uppercase hex digits length,
//!   payload; a document is the concatenation of `c` frames up to the `c0001\n` end frame.
//! - [`tls`]: rustls config with a verifier that checks the chain against `tls_ca_cert` and the
//!   server certificate's CN against `burp_cname` (burp certs have no SAN).
//! - [`session`]: `StatusClient::connect(&Target)` does TCP+TLS+handshake;
//!   `StatusClient::request(&mut self, cmd) -> Result<Vec<u8>, Error>` returns one whole JSON
//!   document (warnings like `{"warning":"Could not find client: x"}` become `Error::Warning`).
//! - [`error`]: typed errors, each saying whether a reconnect may help.
//! - [`warnings`]: the budget of `w` frames per login and per request.
//!
//! Semantics (owned by `model`, `config`, `snapshot`, `metrics`, `exporter`):
//! - [`model`]: serde types for `c:` / `c:<client>` replies and backup_stats logs.
//! - [`config`]: the original's YAML config.
//! - [`snapshot`]: the latest poll result per server, with its time.
//! - [`metrics`]: a prometheus-client `Collector` that encodes the snapshot at scrape time.
//! - [`exporter`]: poll loop per server.
//! - [`routes`]: HTTP routes (`/`, `/metrics`, `/probe`).
//! - [`status_page`]: the page at `/`, rendered from the snapshots.
//! - [`summary`]: `--once`, a `burp -a S`-like summary.

pub mod error;
pub mod frame;
pub mod session;
pub mod tls;
pub mod warnings;

pub mod config;
pub mod exporter;
pub mod metrics;
pub mod model;
pub mod routes;
pub mod snapshot;
pub mod status_page;
pub mod summary;
