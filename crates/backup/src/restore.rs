//! Getting backups back: `list`, `restore`, `verify`.
//!
//! Public API (the CLI in `main.rs` wires these to `backup list|restore|verify CONFIG`):
//! - [`list`]`(&destinations, source_id)` -> [`Listing`]: every copy ([`Copy`]: source id,
//!   timestamp, destination, size, sidecar present, [`Copy::age`]), newest first, plus the
//!   destinations that could not be listed. Objects that are not ours are skipped.
//!   [`crate::coverage`] arranges it by copy across the destinations.
//! - [`restore`]`(&destinations, &RestoreOptions)` -> [`Restored`]: picks the copy (`at` a
//!   timestamp or the newest; on `destination` or the first one that has it), then streams
//!   open -> sha256 -> decrypt -> decompress -> untar into a directory (or writes the SQL dump
//!   as `{dir}/{id}.sql`), or writes the payload to a writer (`--to -`: stdout).
//! - [`verify`]`(&destinations, &source_ids, keys, choice)` -> one [`VerifyReport`] per copy
//!   read: the newest copy of each source at each destination, or a random share of all its
//!   copies ([`Choice::Sample`], `sample.rs`), read end to end into a sink (tar payloads are
//!   walked entry by entry) with the sha256 compared with the sidecar.
//!
//! Decoding is chosen from the object name's suffix chain ([`Encoding`]): `.gpg` needs a
//! [`Decryption`]; `.zst` and `.gz` are decompressed; the original's `.tar.gpg` (gpg's zlib
//! inside) and `.tar.gz` work as well as custos' `.tar.zst.gpg`.
//!
//! Untar keeps symlinks, hard links, sparse files, FIFOs, permissions, mtimes (also of
//! directories, set last), ownership and device nodes when run as root, and names of any bytes.
//! It works through directory file descriptors in a staging directory inside the target, and
//! moves the result into place only after the whole stream verified (see `unpack`): a member
//! whose path leaves the target (`..`, absolute) stops the restore with
//! [`RestoreError::UnsafePath`], one that would go through or replace a symlink or directory
//! with [`RestoreError::Refused`], and either way the target holds nothing new.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::cancel::Cancel;
use crate::crypto::{CryptoError, Decryption};
use crate::destination::{Destination, DestinationError};
use crate::naming::{self, ObjectName, Payload, RunStamp};

mod decode;
mod sample;
mod select;
mod server;
mod unpack;
mod verify;
use decode::{copy_payload, open_decoded, stream_failure, walk_tar, Counting, Decoded};
pub use sample::{random_seed, Percent};
pub(crate) use select::{Member, Selection};
pub use server::{load, LoadRequest};
use unpack::{Failure, Unpacker};
pub use verify::{verify, Choice, VerifyReport};

/// One stored copy of a source's backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    /// The destination's `id`.
    pub destination: String,
    /// The parsed object name (source id, timestamp, payload, encoding).
    pub name: ObjectName,
    /// Object size in bytes.
    pub size: u64,
    /// Whether `{object}.sha256` exists beside it.
    pub has_sidecar: bool,
}

impl Copy {
    /// Age of the copy, from its run timestamp to now (local time).
    pub fn age(&self) -> chrono::TimeDelta {
        self.name.stamp.age(chrono::Local::now().naive_local())
    }

    /// Dated after now: made while the clock ran ahead, or planted by someone who can write
    /// to the destination (for `recipients` sources anyone with the public key can make one).
    pub fn is_future(&self) -> bool {
        self.name.stamp.is_future(std::time::SystemTime::now())
    }
}

/// What [`list`] found.
#[derive(Debug, Default)]
pub struct Listing {
    /// Newest first; for equal timestamps in destination order.
    pub copies: Vec<Copy>,
    /// Destinations that could not be listed (the others are still listed).
    pub errors: Vec<DestinationError>,
    /// The ids of those destinations.
    pub unlisted: Vec<String>,
}

/// Where a restore writes.
pub enum RestoreTarget {
    /// Untar into this directory (created if missing), or write `{id}.sql` into it.
    Directory(PathBuf),
    /// Write the payload (tar stream or SQL dump) to this writer, e.g. stdout for `--to -`.
    Writer(Box<dyn Write>),
}

impl std::fmt::Debug for RestoreTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RestoreTarget::Directory(p) => f.debug_tuple("Directory").field(p).finish(),
            RestoreTarget::Writer(_) => f.write_str("Writer"),
        }
    }
}

/// What to restore and where.
#[derive(Debug)]
pub struct RestoreOptions {
    /// The source `id`.
    pub source_id: String,
    /// A run timestamp; `None` for the newest copy.
    pub at: Option<RunStamp>,
    /// A destination `id`; `None` for the first destination (config order) that has the copy.
    pub destination: Option<String>,
    /// One database of a per-database source (`dbname: all` or a list); required for them.
    pub database: Option<String>,
    /// Only these members of a folder copy (`--path`); empty: all of it.
    pub paths: Vec<String>,
    pub target: RestoreTarget,
    /// Needed for `.gpg` objects: the source's passphrase, a secret key file, or gpg.
    pub decryption: Option<Decryption>,
    /// SIGINT/SIGTERM cancel it: the restore stops and removes its staging directory.
    pub cancel: Cancel,
}

/// Which copy [`members`] lists, chosen as [`restore`] chooses it.
#[derive(Debug)]
pub struct ListOptions {
    pub source_id: String,
    pub at: Option<RunStamp>,
    pub destination: Option<String>,
    pub decryption: Option<Decryption>,
}

/// How the sha256 sidecar compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SidecarCheck {
    /// The object's sha256 equals the sidecar's.
    Match,
    /// No sidecar beside the object (e.g. made by the original): nothing to compare.
    Missing,
}

/// What [`restore`] did.
#[derive(Debug)]
pub struct Restored {
    pub copy: Copy,
    /// sha256 of the object as read.
    #[allow(
        dead_code,
        reason = "the tests compare it with the digest the pipeline stored"
    )]
    pub sha256: String,
    pub sidecar: SidecarCheck,
    /// Payload bytes written (tar stream or dump size).
    pub payload_bytes: u64,
    /// Where it went: the directory, the dump file, or `None` for a writer.
    pub written_to: Option<PathBuf>,
    /// Members that were not restored (device nodes as non-root), one line each.
    pub warnings: Vec<String>,
}

/// Restore, list or verify failed; each variant names the object or path concerned.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("no copy of source {source_id:?}{at} found{on}")]
    NotFound {
        source_id: String,
        at: String,
        on: String,
    },
    #[error(transparent)]
    Destination(#[from] DestinationError),
    /// The copy holds one object per database: which one?
    #[error("{copy} holds one dump per database ({}): choose one with --database NAME", databases.iter().map(|d| crate::outcome::printable(d)).collect::<Vec<_>>().join(", "))]
    PerDatabase {
        copy: String,
        databases: Vec<String>,
    },
    /// `--database` on an object that is no database dump (a tar).
    #[error("{object}: not a database dump")]
    NotADump { object: String },
    /// The database to load into already holds tables.
    #[error(
        "database {database:?} exists and is not empty; nothing was loaded: restore into a new \
         database with --as NAME, or load over it with --force"
    )]
    NotEmpty { database: String },
    /// The server refused or the client failed (creating, checking, loading `database`).
    #[error("database {database:?}: {source}")]
    Server {
        database: String,
        #[source]
        source: crate::source::SourceError,
    },
    #[error("{object}: the object is encrypted; give the source's passphrase or a secret key")]
    NeedKey { object: String },
    #[error("{object}: {source}")]
    Crypto {
        object: String,
        #[source]
        source: CryptoError,
    },
    #[error("{object}: corrupted or truncated: {message}")]
    Corrupt { object: String, message: String },
    #[error("{object}: sha256 {actual} does not match the sidecar's {expected}")]
    ChecksumMismatch {
        object: String,
        expected: String,
        actual: String,
    },
    #[error(
        "{object}: member {member:?} would be written outside {target}; refusing (unsafe archive)"
    )]
    UnsafePath {
        object: String,
        member: String,
        target: PathBuf,
    },
    /// SIGINT/SIGTERM arrived; the restore stopped.
    #[error("{object}: interrupted by signal {signal}")]
    Interrupted { object: String, signal: i32 },
    /// A member the restore will not unpack (it would replace a directory or symlink, go
    /// through a non-directory, or replace something already in the target).
    #[error("{object}: member {member:?} refused: {reason}")]
    Refused {
        object: String,
        member: String,
        reason: String,
    },
    /// `--path` names no member path, or the copy is no archive.
    #[error("{0}")]
    Selection(String),
    /// `--path` patterns that matched no member of the copy (nothing was restored).
    #[error("{object}: no member matches --path {paths}; nothing restored")]
    NoSuchMember { object: String, paths: String },
    #[error("{object}: writing {path}: {source}")]
    Write {
        object: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Lists the copies of `source_id` (all sources when `None`) on every destination.
pub fn list(destinations: &[&dyn Destination], source_id: Option<&str>) -> Listing {
    let prefix = source_id.map(|s| format!("{s}/")).unwrap_or_default();
    let mut listing = Listing::default();
    for d in destinations {
        let objects = match d.list(&prefix) {
            Ok(o) => o,
            Err(e) => {
                listing.errors.push(e);
                listing.unlisted.push(d.id().to_string());
                continue;
            }
        };
        let names: std::collections::HashSet<&str> =
            objects.iter().map(|o| o.name.as_str()).collect();
        // A store that normalizes keys (`src//STAMP/..` read as `src/STAMP/..`) can list one
        // name twice: it is one copy.
        let mut seen = std::collections::HashSet::new();
        for o in &objects {
            let Some((name, false)) = naming::parse_stored(&o.name) else {
                continue;
            };
            if !seen.insert(o.name.as_str()) {
                continue;
            }
            let has_sidecar = names.contains(naming::sidecar_name(&o.name).as_str());
            listing.copies.push(Copy {
                destination: d.id().to_string(),
                name,
                size: o.size,
                has_sidecar,
            });
        }
    }
    // Source id, newest first, then destination order as given.
    let order_of = |id: &str| destinations.iter().position(|d| d.id() == id);
    listing.copies.sort_by(|a, b| {
        a.name
            .source_id
            .cmp(&b.name.source_id)
            .then(b.name.stamp.cmp(&a.name.stamp))
            .then(order_of(&a.destination).cmp(&order_of(&b.destination)))
    });
    listing
}

/// Chooses the copy: `at`, or the newest not dated in the future; on `destination` or the
/// first (in order) that has it. Also returns the timestamps of future copies passed over.
fn choose(
    destinations: &[&dyn Destination],
    source_id: &str,
    at: Option<RunStamp>,
    destination: Option<&str>,
    database: Option<&str>,
) -> Result<(Copy, Vec<String>), RestoreError> {
    let chosen: Vec<&dyn Destination> = destinations
        .iter()
        .copied()
        .filter(|d| destination.is_none_or(|want| d.id() == want))
        .collect();
    let not_found = |extra: String| RestoreError::NotFound {
        source_id: source_id.to_string(),
        at: database
            .map(|d| format!(" database {d:?}"))
            .unwrap_or_default()
            + &at.map(|t| format!(" at {t}")).unwrap_or_default(),
        on: match destination {
            Some(d) => format!(" on destination {d:?}{extra}"),
            None => extra,
        },
    };
    if chosen.is_empty() {
        return Err(not_found(" (no such destination in the config)".into()));
    }
    let listing = list(&chosen, Some(source_id));
    match find_copy(&listing.copies, source_id, at, database)? {
        Some(found) => Ok(found),
        None => match listing.errors.into_iter().next() {
            // A destination could not be listed: that is the more useful error.
            Some(e) if chosen.len() == 1 => Err(RestoreError::Destination(e)),
            Some(e) => Err(not_found(format!(" (and a destination failed: {e})"))),
            None => Err(not_found(String::new())),
        },
    }
}

/// The copy of `source_id` (`database` of it) among `copies` (as [`list`] orders them):
/// made `at`, or the newest not dated in the future; with the future copies passed over.
/// A per-database copy asked for without `database` is [`RestoreError::PerDatabase`].
fn find_copy(
    copies: &[Copy],
    source_id: &str,
    at: Option<RunStamp>,
    database: Option<&str>,
) -> Result<Option<(Copy, Vec<String>)>, RestoreError> {
    let mut skipped = Vec::new();
    let copy = copies.iter().find(|c| {
        if c.name.source_id != source_id
            || database.is_some_and(|d| c.name.database.as_deref() != Some(d))
        {
            return false;
        }
        match at {
            Some(t) => c.name.stamp == t,
            None if c.is_future() => {
                skipped.push(format!("{}/{}", c.destination, c.name.path()));
                false
            }
            None => true,
        }
    });
    match copy {
        // A per-database copy restores one database at a time.
        Some(c) if database.is_none() && c.name.database.is_some() => {
            let databases = copies
                .iter()
                .filter(|o| o.name.stamp == c.name.stamp && o.destination == c.destination)
                .filter_map(|o| o.name.database.clone())
                .collect();
            Err(RestoreError::PerDatabase {
                copy: format!("{}/{}/{}", c.destination, c.name.source_id, c.name.stamp),
                databases,
            })
        }
        Some(c) => Ok(Some((c.clone(), skipped))),
        None => Ok(None),
    }
}

fn find_destination<'a>(
    destinations: &[&'a dyn Destination],
    id: &str,
) -> Option<&'a dyn Destination> {
    destinations.iter().copied().find(|d| d.id() == id)
}

/// Restores one copy; see the module docs.
pub fn restore(
    destinations: &[&dyn Destination],
    opts: RestoreOptions,
) -> Result<Restored, RestoreError> {
    let (copy, skipped) = choose(
        destinations,
        &opts.source_id,
        opts.at,
        opts.destination.as_deref(),
        opts.database.as_deref(),
    )?;
    let skipped: Vec<String> = skipped
        .into_iter()
        .map(|c| format!("{c}: dated in the future; passed over (use --at to restore it)"))
        .collect();
    let dest = find_destination(destinations, &copy.destination).ok_or_else(|| {
        RestoreError::NotFound {
            source_id: opts.source_id.clone(),
            at: String::new(),
            on: String::new(),
        }
    })?;
    let object = copy.name.path();
    let mut selection = Selection::new(&opts.paths).map_err(RestoreError::Selection)?;
    if !selection.everything() && copy.name.payload != Payload::Tar {
        return Err(RestoreError::Selection(format!(
            "{object}: --path selects members of a folder copy; this copy is one file"
        )));
    }
    let expected = read_sidecar(dest, &copy)?;
    let mut decoded = open_decoded(dest, &copy, opts.decryption.as_ref(), expected.as_deref())?;
    match opts.target {
        RestoreTarget::Writer(mut w) => {
            // Streamed before it could be verified: the caller says so when this fails.
            let payload_bytes = copy_payload(&mut decoded, &mut w, &object, Path::new("-"))?;
            w.flush().map_err(|e| RestoreError::Write {
                object: object.clone(),
                path: "-".into(),
                source: e,
            })?;
            let (sha256, sidecar) = decoded.finish(expected.as_deref())?;
            Ok(Restored {
                copy,
                sha256,
                sidecar,
                payload_bytes,
                written_to: None,
                warnings: skipped,
            })
        }
        RestoreTarget::Directory(dir) => {
            let mut unpacker = Unpacker::new(&dir, &object, opts.cancel)?;
            let dump = OsString::from(dump_file_name(&copy.name));
            let unpacked = match copy.name.payload {
                Payload::Tar => untar(&mut decoded, &mut unpacker, &mut selection),
                Payload::Sql | Payload::Disk | Payload::Btrfs | Payload::Vol | Payload::Dump => {
                    unpacker
                        .file(&dump, &mut decoded)
                        .map_err(|f| stream_failure(&decoded, f))
                }
            };
            // Nothing is moved into place before the whole stream verified.
            let verified = unpacked
                .and_then(|n| Ok((n, decoded.finish(expected.as_deref())?)))
                .and_then(|v| match selection.unmatched() {
                    none if none.is_empty() => Ok(v),
                    missing => Err(RestoreError::NoSuchMember {
                        object: object.clone(),
                        paths: missing.join(", "),
                    }),
                });
            let (payload_bytes, (sha256, sidecar)) = match verified {
                Ok(v) => v,
                Err(e) => {
                    unpacker.discard();
                    return Err(e);
                }
            };
            let mut warnings = skipped;
            warnings.extend(unpacker.warnings().iter().cloned());
            unpacker.commit()?;
            let written_to = match copy.name.payload {
                Payload::Tar => dir,
                Payload::Sql | Payload::Disk | Payload::Btrfs | Payload::Vol | Payload::Dump => {
                    dir.join(dump)
                }
            };
            Ok(Restored {
                copy,
                sha256,
                sidecar,
                payload_bytes,
                written_to: Some(written_to),
                warnings,
            })
        }
    }
}

/// Lists the members of a folder copy (chosen as [`restore`] chooses it) without writing
/// anything, handing each to `each`; the whole object is read and its sidecar checked, so a
/// listing of a damaged copy fails as a restore would.
pub fn members(
    destinations: &[&dyn Destination],
    opts: &ListOptions,
    each: &mut dyn FnMut(Member),
) -> Result<Copy, RestoreError> {
    let (copy, _) = choose(
        destinations,
        &opts.source_id,
        opts.at,
        opts.destination.as_deref(),
        None,
    )?;
    let object = copy.name.path();
    if copy.name.payload != Payload::Tar {
        return Err(RestoreError::Selection(format!(
            "{object}: only folder copies have members; this copy is one file"
        )));
    }
    let dest = find_destination(destinations, &copy.destination).ok_or_else(|| {
        RestoreError::NotFound {
            source_id: opts.source_id.clone(),
            at: String::new(),
            on: String::new(),
        }
    })?;
    let expected = read_sidecar(dest, &copy)?;
    let mut decoded = open_decoded(dest, &copy, opts.decryption.as_ref(), expected.as_deref())?;
    walk_tar(&mut decoded, each)?;
    decoded.finish(expected.as_deref())?;
    Ok(copy)
}

/// The file a dump is restored to in a directory: the object's name without its
/// compression and encryption suffixes (`db.sql`, `db.shop.dump`).
fn dump_file_name(name: &ObjectName) -> String {
    let file = name.file_name();
    let suffix = name.encoding.suffix();
    file.strip_suffix(suffix.as_str())
        .unwrap_or(&file)
        .to_owned()
}

/// The sidecar's digest, `None` when there is no sidecar.
fn read_sidecar(d: &dyn Destination, copy: &Copy) -> Result<Option<String>, RestoreError> {
    if !copy.has_sidecar {
        return Ok(None);
    }
    let name = copy.name.sidecar();
    let mut body = String::new();
    d.open(&name)?
        .take(4096)
        .read_to_string(&mut body)
        .map_err(|e| DestinationError::Io {
            destination: d.id().to_string(),
            op: "read",
            object: name.clone(),
            source: e,
        })?;
    naming::parse_sidecar(&body)
        .map(Some)
        .ok_or_else(|| RestoreError::Corrupt {
            object: name,
            message: "the sidecar is not in sha256sum format".into(),
        })
}

/// Unpacks a tar stream into the staging directory of `unpacker`; returns the stream's size.
/// Unpacks the members `selection` wants (all, by default); the others are read past.
fn untar(
    decoded: &mut Decoded,
    unpacker: &mut Unpacker,
    selection: &mut Selection,
) -> Result<u64, RestoreError> {
    let mut counting = Counting {
        inner: decoded,
        n: 0,
    };
    match unpack_members(&mut counting, unpacker, selection) {
        Ok(()) => Ok(counting.n),
        Err(f) => Err(stream_failure(counting.inner, f)),
    }
}

/// The members of the tar stream `reader` that `selection` wants, through `unpacker`.
fn unpack_members(
    reader: impl Read,
    unpacker: &mut Unpacker,
    selection: &mut Selection,
) -> Result<(), Failure> {
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(Failure::Read)? {
        let mut entry = entry.map_err(Failure::Read)?;
        if selection.wants(&entry.path_bytes()) {
            unpacker.member(&mut entry)?;
        }
    }
    Ok(())
}

/// Unpacks a plain tar `archive` into `target` as a restore does (staging, then commit; on
/// failure nothing stays), acting as non-root (no owners, no device nodes): the way in of the
/// `restore_tar` fuzz target, which feeds it hostile archives. Returns the top-level names.
pub(crate) fn unpack_tar(
    archive: &[u8],
    target: &Path,
    cancel: Cancel,
) -> Result<Vec<OsString>, RestoreError> {
    let object = "fuzz.tar";
    let mut unpacker = Unpacker::new(target, object, cancel)?.acting_as_non_root();
    match unpack_members(archive, &mut unpacker, &mut Selection::default()) {
        Ok(()) => unpacker.commit(),
        Err(f) => {
            unpacker.discard();
            Err(match f {
                Failure::Restore(e) => e,
                Failure::Read(e) => RestoreError::Corrupt {
                    object: object.to_owned(),
                    message: format!("not a valid tar archive: {}", custos_kit::error::chain(&e)),
                },
            })
        }
    }
}

#[cfg(test)]
mod tests;
