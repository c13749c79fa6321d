//! Errors of the exporter library.

use custos_smart_wire::WireError;
use std::path::PathBuf;

/// What can go wrong loading the databases or talking to the helper.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The device DB or attribute mapping could not be read or is invalid.
    #[error(transparent)]
    Config(#[from] custos_kit::config::ConfigError),
    /// The helper's socket could not be reached (is the helper running? permissions?).
    #[error("cannot connect to the helper at {path}: {source}")]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The helper did not answer within the time allowed.
    #[error("the helper at {path} did not answer within {secs} s")]
    Timeout { path: PathBuf, secs: u64 },
    /// The helper's answer was not a valid frame.
    #[error("bad answer from the helper at {path}: {source}")]
    Wire {
        path: PathBuf,
        #[source]
        source: WireError,
    },
}
