//! Destinations: where objects are written, listed, read back and deleted.
//!
//! The remote-destinations issue implements [`Destination`] for S3, GCS, B2, Samba, Dropbox,
//! Google Drive; the engine (pipeline, retention, restore, verify) only sees this trait.

use std::io::{Read, Write};
use std::time::SystemTime;

pub mod local;

/// A destination operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DestinationError {
    #[error("{destination}: {op} {object}: {source}")]
    Io {
        destination: String,
        op: &'static str,
        object: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{destination}: {message}")]
    Other {
        destination: String,
        message: String,
    },
}

/// One stored object as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Full object name relative to the destination root, `/`-separated.
    pub name: String,
    pub size: u64,
    pub modified: Option<SystemTime>,
}

/// An object being written. Nothing is visible under the final name until `commit` succeeds;
/// dropping or `abort`ing leaves no object that looks complete.
pub trait ObjectWriter: Write + Send {
    /// Makes the object visible under its final name (fsync + atomic rename for `local`).
    fn commit(self: Box<Self>) -> Result<(), DestinationError>;
    /// Discards what was written.
    fn abort(self: Box<Self>);
}

/// A configured destination.
pub trait Destination: Send + Sync {
    /// The `id` from the config.
    fn id(&self) -> &str;
    /// The `type` from the config.
    fn kind(&self) -> &'static str;
    /// Checks that the destination is reachable and writable without writing (`--dry-run`).
    fn check(&self) -> Result<(), DestinationError>;
    /// Starts writing object `name`.
    fn create(&self, name: &str) -> Result<Box<dyn ObjectWriter>, DestinationError>;
    /// Lists objects whose name starts with `prefix`.
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, DestinationError>;
    /// Opens object `name` for reading.
    fn open(&self, name: &str) -> Result<Box<dyn Read + Send>, DestinationError>;
    /// Deletes object `name`.
    fn delete(&self, name: &str) -> Result<(), DestinationError>;
    /// Removes what writers that no longer exist (a run killed with `kill -9`) left
    /// half-written under `prefix`, never anything a live writer may still commit; returns
    /// the names removed. Called before a source is written, so space comes back first.
    /// Destinations without such leftovers keep this default.
    fn remove_abandoned(&self, _prefix: &str) -> Result<Vec<String>, DestinationError> {
        Ok(Vec::new())
    }
}
