//! `type: prometheus`: no sink task; `/metrics` for the servers that name the backend, served
//! from the snapshot store at scrape time ([`crate::metrics`], started by [`crate::monitor`]).

use super::{Built, Context, SinkConfig, SinkError};
use custos_kit::config::{Invalid, Validate};
use serde::Deserialize;
use std::net::SocketAddr;

/// Default listen address of a `prometheus` backend (that of HAProxy's Go exporter).
pub const DEFAULT_LISTEN: &str = "0.0.0.0:9101";

/// `type: prometheus`: serves `/metrics` for the servers that name it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusBackend {
    /// `host:port` to listen on (`:port` for all interfaces).
    #[serde(default = "default_listen", deserialize_with = "listen_or_default")]
    pub listen: String,
}

fn default_listen() -> String {
    DEFAULT_LISTEN.into()
}

/// `listen: ~` reads as absent, as the original's `.get()`.
fn listen_or_default<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_else(default_listen))
}

impl PrometheusBackend {
    /// The socket address (valid after `validate()`).
    pub fn addr(&self) -> Result<SocketAddr, std::net::AddrParseError> {
        let s = self.listen.trim();
        match s.strip_prefix(':') {
            Some(port) => format!("0.0.0.0:{port}").parse(),
            None => s.parse(),
        }
    }
}

impl Validate for PrometheusBackend {
    fn validate(&self) -> Result<(), Invalid> {
        match self.addr() {
            Err(e) => Err(Invalid::new("listen", &self.listen, e.to_string())),
            Ok(_) => Ok(()),
        }
    }
}

impl SinkConfig for PrometheusBackend {
    fn listens(&self) -> Option<(SocketAddr, &str)> {
        self.addr().ok().map(|a| (a, self.listen.as_str()))
    }

    fn build(&self, _: &Context) -> Result<Built, SinkError> {
        self.addr().map(Built::Listen).map_err(|e| SinkError::Http {
            what: format!("listen address {}", self.listen),
            reason: e.to_string(),
        })
    }
}
