//! What can go wrong talking to Azure, and whether running again may help.

use crate::source::{Retry, SourceError};

/// An Azure call failed; `what` names the step (`creating snapshot web-20240101000000`).
#[derive(Debug, thiserror::Error)]
pub enum AzureError {
    /// A credential variable is missing or unusable.
    #[error("{0}")]
    Credentials(String),
    /// The process's HTTP client cannot be set up.
    #[error("cannot set up the HTTP client: {0}")]
    Client(String),
    /// No answer (refused, DNS, TLS, reset); `cause` names the endpoint's origin only.
    #[error("{what}: {cause}")]
    Request { what: String, cause: String },
    /// An answer with an unexpected status, with Azure's error code and message.
    #[error("{what}: HTTP {status}{}{}", if code.is_empty() { String::new() } else { format!(" {code}") }, if message.is_empty() { String::new() } else { format!(": {message}") })]
    Status {
        what: String,
        status: u16,
        code: String,
        message: String,
    },
    /// A long-running operation ended `Failed` or `Canceled`.
    #[error("{what}: the operation ended {status}: {code}: {message}")]
    Operation {
        what: String,
        status: String,
        code: String,
        message: String,
    },
    /// An answer that is not what the API documents.
    #[error("{what}: {detail}")]
    Answer { what: String, detail: String },
    /// No answer or no end of the operation in time.
    #[error("{what}: not finished within {seconds} s")]
    Timeout { what: String, seconds: u64 },
    /// SIGINT/SIGTERM stopped the run.
    #[error("{what}: stopped by a signal")]
    Cancelled { what: String },
}

impl AzureError {
    /// Whether a retry may help: a lost connection, a timeout, 408/429/5xx may pass; bad
    /// credentials, a missing disk, a failed operation stay so until someone acts.
    pub fn retry(&self) -> Retry {
        match self {
            AzureError::Request { .. } | AzureError::Timeout { .. } => Retry::Transient,
            AzureError::Status {
                status: 408 | 429 | 500..=599,
                ..
            } => Retry::Transient,
            AzureError::Cancelled { .. } => Retry::Transient,
            _ => Retry::Permanent,
        }
    }
}

impl From<AzureError> for SourceError {
    fn from(e: AzureError) -> Self {
        SourceError::Unavailable {
            retry: e.retry(),
            message: e.to_string(),
        }
    }
}
