//! Sources: something that produces one byte stream per run (a tar, a SQL dump).
//!
//! Each type's module holds its config (the keys of its `type`), their checks, how the
//! source is built from them, and the [`Source`] itself; the `source_types!` list below is the
//! one place that maps `type` to a module. Adding a type (`rds`, `ssh`...) touches its module
//! and one line of that list.

use std::io::Read;

use custos_kit::config::ConfigError;

use custos_kit::config::{Entry, Invalid, Validate};

use crate::cancel::Cancel;

pub mod aws;
pub mod azure;
pub mod btrfs;
pub mod databases;
pub mod folder;
pub mod folder_ssh;
pub mod lvm_ssh;
pub mod mysql;
pub mod mysql_ssh;
pub mod pgsql;
pub mod process;
pub mod rds;
pub mod snapshot;
pub mod ssh;

/// Whether running the job again unchanged may help: decided where the error is made,
/// from what happened (never from its text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// It may pass next time (cannot connect, the server is busy, a check timed out).
    Transient,
    /// It will fail again until someone changes something (a missing path or program, a
    /// dump that failed once it ran).
    Permanent,
}

/// A source failed; the message names what failed (path, command, exit status, stderr tail).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The source cannot be read at all (a missing or unreadable path, not GNU tar).
    #[error("{message}")]
    Unavailable { retry: Retry, message: String },
    /// A producer or check process failed; `error` says how (not found, status, signal,
    /// timeout).
    #[error("{error}")]
    Process {
        retry: Retry,
        #[source]
        error: custos_process::ProcessError,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl SourceError {
    /// A failure that will repeat until someone changes something (an unreadable report).
    pub fn permanent(message: String) -> Self {
        SourceError::Unavailable {
            retry: Retry::Permanent,
            message,
        }
    }

    /// Whether a retry may help, when the error says so itself; `None` for an I/O error,
    /// whose kind decides (the report's transient I/O kinds).
    pub fn retry(&self) -> Option<Retry> {
        match self {
            SourceError::Unavailable { retry, .. } | SourceError::Process { retry, .. } => {
                Some(*retry)
            }
            SourceError::Io { .. } => None,
        }
    }
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

/// Who a run of a source is: written as tags on what the source creates in a cloud (a
/// temporary RDS instance, an EBS snapshot), so the next run of the same job and source finds
/// what a killed run left, and never touches what another job made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The job: host name and job file (`db1:/etc/backups/nightly.json`).
    pub job: String,
    /// The source's `id`.
    pub source: String,
}

/// Something a source created that it could not release (or a leftover it could not
/// remove): names the resource, so an operator can remove it by hand.
#[derive(Debug, thiserror::Error)]
#[error("{resource}: {message}")]
pub struct CleanupError {
    /// What is left (`RDS instance tmp-orders-51234 in eu-west-1`).
    pub resource: String,
    /// Why it could not be released.
    pub message: String,
    pub retry: Retry,
}

/// A configured source.
pub trait Source: Send + Sync {
    /// The `id` from the config (first part of object names).
    #[allow(
        dead_code,
        reason = "the engine reads id, name and type from the job entry; these stay in the \
                  trait every source type implements (types are being added in parallel)"
    )]
    fn id(&self) -> &str;
    /// The `name` from the config (for messages and notifications).
    #[allow(dead_code, reason = "see `id`")]
    fn name(&self) -> &str;
    /// The `type` from the config (`folder`, `mysql`, `pgsql`, ...).
    #[allow(dead_code, reason = "see `id`")]
    fn kind(&self) -> &'static str;
    /// The payload suffix before compression/encryption suffixes: `tar` or `sql`.
    fn suffix(&self) -> &'static str;
    /// Checks that the source is reachable without producing data (`--dry-run`); a check
    /// process is registered with `cancel`.
    fn check(&self, cancel: Cancel) -> Result<(), SourceError>;
    /// Starts producing the stream; its producer is registered with `cancel` (SIGINT/SIGTERM
    /// kill it).
    fn open(&self, cancel: Cancel) -> Result<Box<dyn SourceStream>, SourceError>;

    /// Begins a real run for `owner`, before `open`/`make`: removes what a killed run of the
    /// same owner left (found by its tags) and remembers `owner` to tag what this run
    /// creates. Returns the leftovers removed. Sources that create nothing keep this default.
    fn prepare(&self, _owner: &Owner, _cancel: Cancel) -> Result<Vec<String>, CleanupError> {
        Ok(Vec::new())
    }

    /// Releases what this run created (a temporary instance). The engine always calls it
    /// once the stream ended or failed, after a timeout and after SIGINT/SIGTERM; each error
    /// names a resource left behind. After a signal (`cancel`) it tries once, within the
    /// run's grace period.
    fn cleanup(&self, _cancel: Cancel) -> Vec<CleanupError> {
        Vec::new()
    }

    /// Whether the source streams a payload (`open`). A source that makes something in
    /// place instead (an EBS snapshot) says `false` and does its work in [`Source::make`]:
    /// no object is written, no passphrase is needed.
    fn payload(&self) -> bool {
        true
    }

    /// The work of a source without a payload; returns what it made, for the run result;
    /// its waits stop when `cancel` is cancelled.
    fn make(&self, _cancel: Cancel) -> Result<Vec<String>, SourceError> {
        Ok(Vec::new())
    }

    /// The databases dumped one object each (`dbname: all`, asked of the server now, or a
    /// list); `None` for a source whose run makes one object with [`Source::open`].
    fn databases(&self, _cancel: Cancel) -> Result<Option<Vec<String>>, SourceError> {
        Ok(None)
    }

    /// The database server this source dumps, for `backup restore --database`; `None` for
    /// a source that is no database.
    fn server(&self) -> Option<&dyn databases::Server> {
        None
    }

    /// Starts the dump of one database of [`Source::databases`], registered with `cancel`.
    fn open_database(
        &self,
        database: &str,
        _cancel: Cancel,
    ) -> Result<Box<dyn SourceStream>, SourceError> {
        Err(SourceError::Unavailable {
            retry: Retry::Permanent,
            message: format!(
                "source '{}': type {} has no per-database dumps (database {database:?})",
                self.id(),
                self.kind()
            ),
        })
    }
}

/// Declares [`SourceSpec`] from the list of `"type" => Variant(module)`: each module has a
/// `Config` (deserializable, [`Validate`]) whose `build(id, name)` makes its [`Source`].
macro_rules! source_types {
    ($($kind:literal => $variant:ident($config:ty)),* $(,)?) => {
        /// The type-specific part of a source: the config of its type.
        #[derive(Debug, Clone)]
        pub enum SourceSpec {
            $($variant($config),)*
        }

        impl SourceSpec {
            /// The types implemented.
            pub const TYPES: &'static [&'static str] = &[$($kind),*];

            /// Parses the keys of `kind`; `None` for a type nobody knows.
            pub fn parse(kind: &str, entry: Entry<'_>) -> Option<Result<SourceSpec, ConfigError>> {
                match kind {
                    $($kind => Some(entry.take().map(SourceSpec::$variant)),)*
                    _ => None,
                }
            }

            /// The type's own checks.
            pub fn validate(&self) -> Result<(), Invalid> {
                match self {
                    $(SourceSpec::$variant(c) => c.validate(),)*
                }
            }

            /// The source.
            pub fn build(&self, id: &str, name: &str) -> Box<dyn Source> {
                match self {
                    $(SourceSpec::$variant(c) => c.build(id, name),)*
                }
            }
        }
    };
}

source_types! {
    "folder" => Folder(folder::FolderConfig),
    "folder-ssh" => FolderSsh(folder_ssh::FolderSshConfig),
    "mysql-ssh" => MysqlSsh(mysql_ssh::MysqlSshConfig),
    "lvm-ssh" => LvmSsh(lvm_ssh::LvmSshConfig),
    "mysql" => Mysql(mysql::MysqlConfig),
    "pgsql" => Pgsql(pgsql::PgsqlConfig),
    "btrfs" => Btrfs(btrfs::BtrfsConfig),
    "azure-managed-disk" => AzureManagedDisk(azure::AzureDiskConfig),
    "rds" => Rds(rds::RdsConfig),
    "rds-pgsql" => RdsPgsql(rds::RdsPgsqlConfig),
    "snapshot" => Snapshot(snapshot::SnapshotConfig),
}

impl SourceSpec {
    /// Whether the type streams a payload (so it needs a passphrase or recipients); an EBS
    /// snapshot stays where it is made.
    pub fn payload(&self) -> bool {
        !matches!(self, SourceSpec::Snapshot(_))
    }
}
