//! Destinations: where objects are written, listed, read back and deleted.
//!
//! The engine (pipeline, retention, restore, verify) only sees the [`Destination`] trait; each
//! type owns its object layout behind it. Each type's module holds its config, its checks and
//! its construction; the `destination_types!` list below is the one place that maps `type` to
//! a module. [`build`] wraps every destination in the shared retry layer
//! ([`retry::Retrying`]); remote stores with async clients run on the one process-wide runtime
//! in [`runtime`].

use std::io::{Read, Write};
use std::num::NonZeroUsize;
use std::time::{Duration, SystemTime};

use custos_kit::config::ConfigError;

use custos_kit::config::{Entry, Invalid, Validate};

pub mod api;
pub mod b2;
pub mod cause;
pub mod chunked;
pub mod dropbox;
pub mod gdrive;
pub mod gs;
pub mod local;
pub mod multipart;
pub mod retry;
pub mod runtime;
pub mod s3;
pub mod samba;
pub mod service_account;
pub mod store;

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
    /// A remote store answered with an error or could not be reached.
    #[error("{destination}: {op} {object}: {message}")]
    Store {
        destination: String,
        op: &'static str,
        object: String,
        kind: ErrorKind,
        message: String,
    },
}

/// What kind of failure: restore and retention tell "gone" from "network down" by it, and
/// only [`ErrorKind::Transient`] failures are retried ([`retry`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The object (or bucket) does not exist.
    NotFound,
    /// Credentials missing, wrong or not allowed to do this.
    Auth,
    /// Worth trying again: connection refused or dropped, timeout, 5xx, throttling.
    Transient,
    /// Anything else; retrying will not help.
    Other,
}

impl DestinationError {
    /// The kind of this failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            DestinationError::Io { source, .. } => match source.kind() {
                std::io::ErrorKind::NotFound => ErrorKind::NotFound,
                std::io::ErrorKind::PermissionDenied => ErrorKind::Auth,
                std::io::ErrorKind::TimedOut
                | std::io::ErrorKind::ConnectionRefused
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::Interrupted => ErrorKind::Transient,
                _ => ErrorKind::Other,
            },
            DestinationError::Other { .. } => ErrorKind::Other,
            DestinationError::Store { kind, .. } => *kind,
        }
    }
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
    #[allow(
        dead_code,
        reason = "the engine reads the type from the job entry; kept in the trait every \
                  destination type implements (a name in messages for new callers)"
    )]
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
    /// How long the pipeline waits for this destination to take the next chunk (or commit)
    /// before it gives up on it, and only it: a stalled upload must not hold the others.
    fn stall_timeout(&self) -> Duration {
        DEFAULT_STALL_TIMEOUT
    }
    /// Average bytes per second to write at (`upload_rate_limit`); `None`: as fast as it goes.
    fn upload_rate_limit(&self) -> Option<u64> {
        None
    }
    /// How many copies this destination takes at once when a job's sources run in parallel
    /// (`max_parallel_sources`): a source waits for a free upload before it starts. `None`:
    /// as many as run; a type whose service serialises writes says so here.
    fn max_uploads(&self) -> Option<NonZeroUsize> {
        None
    }
}

/// One upload at a time, for [`Destination::max_uploads`].
pub const ONE_UPLOAD: Option<NonZeroUsize> = Some(NonZeroUsize::MIN);

/// Default of the `stall_timeout` destination key.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(300);

/// The destination `id` of type `spec`, wrapped in the shared retry layer; `stall_timeout`
/// (seconds, default [`DEFAULT_STALL_TIMEOUT`]) and `upload_rate_limit` (bytes/s) as the
/// user wrote them.
pub(crate) fn build(
    id: &str,
    spec: &DestinationSpec,
    stall_timeout: Option<u32>,
    upload_rate_limit: Option<u32>,
) -> Result<Box<dyn Destination>, DestinationError> {
    let stall = stall_timeout.map_or(DEFAULT_STALL_TIMEOUT, |s| Duration::from_secs(u64::from(s)));
    let inner = spec.build(id, stall)?;
    Ok(Box::new(retry::Retrying::new(
        inner,
        retry::Policy::default(),
        stall,
        upload_rate_limit.map(u64::from),
    )))
}

/// Declares [`DestinationSpec`] from the list of `"type" => Variant(module)`: each module has
/// a `Config` (deserializable, [`Validate`]) whose `build(id)` makes its [`Destination`].
macro_rules! destination_types {
    ($($kind:literal => $variant:ident($config:ty)),* $(,)?) => {
        /// The type-specific part of a destination: the config of its type.
        #[derive(Debug, Clone)]
        pub enum DestinationSpec {
            $($variant($config),)*
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
                    _ => None,
                }
            }

            /// The type's own checks.
            pub fn validate(&self) -> Result<(), Invalid> {
                match self {
                    $(DestinationSpec::$variant(c) => c.validate(),)*
                }
            }

            /// The destination.
            pub fn build(
                &self,
                id: &str,
                stall: Duration,
            ) -> Result<Box<dyn Destination>, DestinationError> {
                match self {
                    $(DestinationSpec::$variant(c) => c.build(id, stall),)*
                }
            }
        }
    };
}

destination_types! {
    "local" => Local(local::LocalConfig),
    "s3" => S3(s3::S3Config),
    "minio" => Minio(s3::MinioConfig),
    "gs" => Gs(gs::GsConfig),
    "samba" => Samba(samba::SambaConfig),
    "b2" => B2(b2::B2Config),
    "dropbox" => Dropbox(dropbox::DropboxConfig),
    "gdrive" => Gdrive(gdrive::GdriveConfig),
}
