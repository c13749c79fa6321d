//! Errors of the status-port client.
//!
//! Each variant says what failed; [`Error::needs_reconnect`] says whether the connection is
//! still usable. None carries the password.

use std::time::Duration;

/// Everything that can go wrong talking to a burp status port.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// TCP connect/read/write failed.
    #[error("{addr}: {source}")]
    Io {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// TLS setup or handshake failed (untrusted CA, CN mismatch, bad client cert/key file).
    #[error("{addr}: TLS: {reason}")]
    Tls { addr: String, reason: String },
    /// No answer within the request timeout.
    #[error("{addr}: no answer within {timeout:?} to {request:?}")]
    Timeout {
        addr: String,
        request: String,
        timeout: Duration,
    },
    /// The server closed the connection.
    #[error("{addr}: connection closed by server")]
    Eof { addr: String },
    /// The server refused our login (`e` frame such as "unable to authorise on server"). burp
    /// says no more than that, so the message lists what decides it.
    #[error(
        "{addr}: login refused: {message}; check `cname` and `password` of this server's entry, \
         and on the burp server the file named after that cname in its clientconfdir (same \
         password), and, to see other clients, their `restore_client`"
    )]
    Auth { addr: String, message: String },
    /// The server answered a request with a warning document (e.g. unknown client).
    #[error("burp warning: {0}")]
    Warning(String),
    /// The server sent an `e` frame after login.
    #[error("burp error: {0}")]
    Server(String),
    /// The peer violated the framing protocol or sent something we cannot read.
    #[error("{addr}: protocol error: {reason}")]
    Protocol { addr: String, reason: String },
    /// A document exceeded the configured size cap.
    #[error("{addr}: document larger than the {limit} byte cap")]
    TooLarge { addr: String, limit: usize },
    /// Not connected, and the reconnect delay after earlier failures has not passed yet:
    /// no attempt was made, so a dead server is not hammered.
    #[error("{addr}: not connected, next attempt in {retry_in:?} (last error: {last_error})")]
    Backoff {
        addr: String,
        retry_in: Duration,
        last_error: String,
    },
    /// A document was not the JSON we expected.
    #[error("cannot parse burp reply to {request:?}: {reason}")]
    Parse { request: String, reason: String },
}

impl Error {
    /// Whether the connection must be dropped and re-established (with backoff).
    ///
    /// Only a complete answer leaves the stream in a known state: a warning document, or a
    /// document the caller could not parse.
    pub fn needs_reconnect(&self) -> bool {
        !matches!(self, Error::Warning(_) | Error::Parse { .. })
    }
}
