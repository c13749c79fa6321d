//! Sources: something that produces one byte stream per run (a tar, a SQL dump).
//!
//! Later issues add `rds`, `ec2`, `ssh`... by implementing [`Source`] and adding a variant to
//! the config; nothing else in the engine changes.

use std::io::Read;

pub mod folder;
pub mod mysql;
pub mod pgsql;
pub mod process;

/// A source failed; the message names what failed (path, command, exit status, stderr tail).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The source cannot be read at all (missing path, command not found, cannot connect).
    #[error("{0}")]
    Unavailable(String),
    /// The stream started but the producer failed (tar exit 2, mysqldump died mid-stream).
    #[error("{0}")]
    Failed(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

/// A running source: read the stream to its end, then call [`SourceStream::finish`], which
/// reports whether the producer succeeded. A stream whose `finish` fails must never be
/// committed at a destination.
pub trait SourceStream: Read + Send {
    /// Waits for the producer and reports its outcome; warnings (tar exit 1) are logged.
    fn finish(self: Box<Self>) -> Result<(), SourceError>;

    /// Bounds the producer's run time: when `timeout` passes before it ends, its whole
    /// process group is killed and `finish` fails naming the timeout. Streams without a
    /// producer process keep this default.
    fn set_timeout(&mut self, _timeout: std::time::Duration) {}
}

/// A configured source.
pub trait Source: Send + Sync {
    /// The `id` from the config (first part of object names).
    fn id(&self) -> &str;
    /// The `name` from the config (for messages and notifications).
    fn name(&self) -> &str;
    /// The `type` from the config (`folder`, `mysql`, `pgsql`, ...).
    fn kind(&self) -> &'static str;
    /// The payload suffix before compression/encryption suffixes: `tar` or `sql`.
    fn suffix(&self) -> &'static str;
    /// Checks that the source is reachable without producing data (`--dry-run`).
    fn check(&self) -> Result<(), SourceError>;
    /// Starts producing the stream.
    fn open(&self) -> Result<Box<dyn SourceStream>, SourceError>;
}
