//! Destinations: where objects are written, listed, read back and deleted.
//!
//! The remote-destinations issue implements [`Destination`] for S3, GCS, B2, Samba, Dropbox,
//! Google Drive; the engine (pipeline, retention, restore, verify) only sees this trait. Each
//! type's module holds its config, its checks and its construction; the `destination_types!`
//! list below is the one place that maps `type` to a module.

use std::io::{Read, Write};
use std::time::SystemTime;

use custos_kit::config::ConfigError;

use crate::config::{Entry, Invalid, Validate};

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

/// Declares [`DestinationSpec`] from the list of `"type" => Variant(module)`: each module has
/// a `Config` (deserializable, [`Validate`]) whose `build(id)` makes its [`Destination`].
macro_rules! destination_types {
    ($($kind:literal => $variant:ident($config:ty)),* $(,)?) => {
        /// The type-specific part of a destination: the config of its type.
        #[derive(Debug, Clone)]
        pub enum DestinationSpec {
            $($variant($config),)*
            /// A type the original has and custos will implement later: fails at run time.
            Unsupported,
        }

        impl DestinationSpec {
            /// The types implemented.
            pub const TYPES: &'static [&'static str] = &[$($kind),*];

            /// Parses the keys of `kind`; `None` for a type nobody knows.
            pub fn parse(
                kind: &str,
                entry: Entry<'_>,
            ) -> Option<Result<DestinationSpec, ConfigError>> {
                match kind {
                    $($kind => Some(entry.take().map(DestinationSpec::$variant)),)*
                    k if Self::LATER.contains(&k) => Some(Ok(DestinationSpec::Unsupported)),
                    _ => None,
                }
            }

            /// The type's own checks.
            pub fn validate(&self) -> Result<(), Invalid> {
                match self {
                    $(DestinationSpec::$variant(c) => c.validate(),)*
                    DestinationSpec::Unsupported => Ok(()),
                }
            }

            /// The destination; `None` for a type not implemented yet.
            pub fn build(&self, id: &str) -> Option<Box<dyn Destination>> {
                match self {
                    $(DestinationSpec::$variant(c) => Some(c.build(id)),)*
                    DestinationSpec::Unsupported => None,
                }
            }
        }
    };
}

destination_types! {
    "local" => Local(local::LocalConfig),
}

impl DestinationSpec {
    /// Types of the original that custos does not implement yet.
    pub const LATER: &'static [&'static str] =
        &["s3", "gs", "b2", "minio", "samba", "dropbox", "gdrive"];
}
