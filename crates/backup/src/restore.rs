//! Getting backups back: `list`, `restore`, `verify`.
//!
//! Public API (the CLI in `main.rs` wires these to `backup list|restore|verify CONFIG`):
//! - [`list`]`(&destinations, source_id)` -> [`Listing`]: every copy ([`Copy`]: source id,
//!   timestamp, destination, size, sidecar present, [`Copy::age`]), newest first, plus the
//!   destinations that could not be listed. Objects that are not ours are skipped.
//! - [`restore`]`(&destinations, &RestoreOptions)` -> [`Restored`]: picks the copy (`at` a
//!   timestamp or the newest; on `destination` or the first one that has it), then streams
//!   open -> sha256 -> decrypt -> decompress -> untar into a directory (or writes the SQL dump
//!   as `{dir}/{id}.sql`), or writes the payload to a writer (`--to -`: stdout).
//! - [`verify`]`(&destinations, &source_ids, keys)` -> one [`VerifyReport`] per source and
//!   destination: reads the newest copy end to end into a sink (tar payloads are walked entry by
//!   entry) and compares the sha256 with the sidecar.
//!
//! Decoding is chosen from the object name's suffix chain ([`Encoding`]): `.gpg` needs a
//! [`Decryption`]; `.zst` and `.gz` are decompressed; the original's `.tar.gpg` (gpg's zlib
//! inside) and `.tar.gz` work as well as custos' `.tar.zst.gpg`.
//!
//! Untar keeps symlinks, hard links, sparse files (GNU format), permissions, mtimes (also of
//! directories, set last), ownership when run as root, and names of any bytes; a member whose
//! path leaves the target directory (`..`, through a symlink) stops the restore with
//! [`RestoreError::UnsafePath`].

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use crate::crypto::{self, CryptoError, Decryption};
use crate::destination::{Destination, DestinationError};
use crate::naming::{self, Compression, Encoding, ObjectName, Payload, RunStamp};

const BUFFER: usize = 1 << 20;

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
}

/// What [`list`] found.
#[derive(Debug, Default)]
pub struct Listing {
    /// Newest first; for equal timestamps in destination order.
    pub copies: Vec<Copy>,
    /// Destinations that could not be listed (the others are still listed).
    pub errors: Vec<DestinationError>,
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
    pub target: RestoreTarget,
    /// Needed for `.gpg` objects: the source's passphrase, a secret key file, or gpg.
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
    pub sha256: String,
    pub sidecar: SidecarCheck,
    /// Payload bytes written (tar stream or dump size).
    pub payload_bytes: u64,
    /// Where it went: the directory, the dump file, or `None` for a writer.
    pub written_to: Option<PathBuf>,
}

/// Result of verifying one source at one destination.
#[derive(Debug)]
pub struct VerifyReport {
    pub source_id: String,
    pub destination: String,
    /// The copy checked (the newest at that destination), or the reason none could be.
    pub result: Result<Verified, RestoreError>,
}

/// A copy that read back cleanly.
#[derive(Debug)]
pub struct Verified {
    pub copy: Copy,
    pub sha256: String,
    pub sidecar: SidecarCheck,
    pub payload_bytes: u64,
    /// Entries in the archive (tar payloads), `None` for dumps.
    pub members: Option<u64>,
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
    #[error("{object}: member {member:?} would be written outside {target}; refusing")]
    UnsafePath {
        object: String,
        member: String,
        target: PathBuf,
    },
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
                continue;
            }
        };
        let names: std::collections::HashSet<&str> =
            objects.iter().map(|o| o.name.as_str()).collect();
        for o in &objects {
            let Some(name) = ObjectName::parse(&o.name) else {
                continue;
            };
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

/// Chooses the copy: `at` or newest, on `destination` or the first (in order) that has it.
fn choose(
    destinations: &[&dyn Destination],
    source_id: &str,
    at: Option<RunStamp>,
    destination: Option<&str>,
) -> Result<Copy, RestoreError> {
    let chosen: Vec<&dyn Destination> = destinations
        .iter()
        .copied()
        .filter(|d| destination.is_none_or(|want| d.id() == want))
        .collect();
    let not_found = |extra: String| RestoreError::NotFound {
        source_id: source_id.to_string(),
        at: at.map(|t| format!(" at {t}")).unwrap_or_default(),
        on: match destination {
            Some(d) => format!(" on destination {d:?}{extra}"),
            None => extra,
        },
    };
    if chosen.is_empty() {
        return Err(not_found(" (no such destination in the config)".into()));
    }
    let listing = list(&chosen, Some(source_id));
    let copy = listing
        .copies
        .into_iter()
        .find(|c| c.name.source_id == source_id && at.is_none_or(|t| c.name.stamp == t));
    match copy {
        Some(c) => Ok(c),
        None => match listing.errors.into_iter().next() {
            // A destination could not be listed: that is the more useful error.
            Some(e) if chosen.len() == 1 => Err(RestoreError::Destination(e)),
            Some(e) => Err(not_found(format!(" (and a destination failed: {e})"))),
            None => Err(not_found(String::new())),
        },
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
    let copy = choose(
        destinations,
        &opts.source_id,
        opts.at,
        opts.destination.as_deref(),
    )?;
    let dest = find_destination(destinations, &copy.destination).ok_or_else(|| {
        RestoreError::NotFound {
            source_id: opts.source_id.clone(),
            at: String::new(),
            on: String::new(),
        }
    })?;
    let object = copy.name.path();
    let expected = read_sidecar(dest, &copy)?;
    let mut decoded = open_decoded(dest, &copy, opts.decryption.as_ref(), expected.as_deref())?;
    let (payload_bytes, written_to) = match opts.target {
        RestoreTarget::Writer(mut w) => {
            let n = copy_payload(&mut decoded, &mut w, &object, Path::new("-"))?;
            w.flush().map_err(|e| RestoreError::Write {
                object: object.clone(),
                path: "-".into(),
                source: e,
            })?;
            (n, None)
        }
        RestoreTarget::Directory(dir) => {
            fs::create_dir_all(&dir).map_err(|e| RestoreError::Write {
                object: object.clone(),
                path: dir.clone(),
                source: e,
            })?;
            match copy.name.payload {
                Payload::Tar => {
                    let n = untar(&mut decoded, &dir, &object)?;
                    (n, Some(dir))
                }
                Payload::Sql => {
                    let path = dir.join(format!(
                        "{}.{}",
                        copy.name.source_id,
                        copy.name.payload.as_str()
                    ));
                    let n = write_file(&mut decoded, &path, &object)?;
                    (n, Some(path))
                }
            }
        }
    };
    let (sha256, sidecar) = decoded.finish(expected.as_deref())?;
    Ok(Restored {
        copy,
        sha256,
        sidecar,
        payload_bytes,
        written_to,
    })
}

/// Verifies the newest copy of each source on each destination.
///
/// `keys` gives the decryption for a source id (its passphrase from the config, or a secret
/// key); `None` for a source whose objects are not encrypted. A destination without any copy of
/// a source gets a [`RestoreError::NotFound`] report.
pub fn verify(
    destinations: &[&dyn Destination],
    source_ids: &[String],
    keys: &dyn Fn(&str) -> Option<Decryption>,
) -> Vec<VerifyReport> {
    let mut reports = Vec::new();
    for source_id in source_ids {
        for d in destinations {
            let result = verify_one(*d, source_id, keys);
            reports.push(VerifyReport {
                source_id: source_id.clone(),
                destination: d.id().to_string(),
                result,
            });
        }
    }
    reports
}

fn verify_one(
    d: &dyn Destination,
    source_id: &str,
    keys: &dyn Fn(&str) -> Option<Decryption>,
) -> Result<Verified, RestoreError> {
    let copy = choose(&[d], source_id, None, Some(d.id()))?;
    let object = copy.name.path();
    let expected = read_sidecar(d, &copy)?;
    let decryption = keys(source_id);
    let mut decoded = open_decoded(d, &copy, decryption.as_ref(), expected.as_deref())?;
    let (payload_bytes, members) = match copy.name.payload {
        Payload::Tar => {
            let (bytes, members) = walk_tar(&mut decoded)?;
            (bytes, Some(members))
        }
        Payload::Sql => (
            copy_payload(
                &mut decoded,
                &mut io::sink(),
                &object,
                Path::new("/dev/null"),
            )?,
            None,
        ),
    };
    let (sha256, sidecar) = decoded.finish(expected.as_deref())?;
    Ok(Verified {
        copy,
        sha256,
        sidecar,
        payload_bytes,
        members,
    })
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

/// Shared between the raw object reader (hashing) and the decoded stream's owner.
#[derive(Default)]
struct ReadState {
    hasher: Sha256,
    bytes: u64,
    /// First error reading the object itself (as opposed to decoding it).
    error: Option<String>,
}

struct HashingReader {
    inner: Box<dyn Read + Send>,
    state: Arc<Mutex<ReadState>>,
}

impl Read for HashingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let r = self.inner.read(buf);
        if let Ok(mut st) = self.state.lock() {
            match &r {
                Ok(n) => {
                    st.hasher.update(&buf[..*n]);
                    st.bytes += *n as u64;
                }
                Err(e) if st.error.is_none() => st.error = Some(e.to_string()),
                Err(_) => {}
            }
        }
        r
    }
}

/// The decoded payload of one object, plus what is needed to check it at the end.
struct Decoded {
    reader: Box<dyn Read + Send>,
    state: Arc<Mutex<ReadState>>,
    object: String,
    size: u64,
    /// First decode error seen by a caller (tar hides our reader's errors in its own).
    decode_error: Option<String>,
}

impl Read for Decoded {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let r = self.reader.read(buf);
        if let Err(e) = &r {
            if self.decode_error.is_none() {
                self.decode_error = Some(e.to_string());
            }
        }
        r
    }
}

impl Decoded {
    /// Error for a failure while reading the payload: a decode error if one was seen.
    fn read_failure(&self, fallback: &io::Error) -> RestoreError {
        let object_error = self.state.lock().ok().and_then(|s| s.error.clone());
        let message = object_error
            .map(|e| format!("reading the object failed: {e}"))
            .or_else(|| self.decode_error.clone())
            .unwrap_or_else(|| fallback.to_string());
        RestoreError::Corrupt {
            object: self.object.clone(),
            message,
        }
    }

    /// Reads what is left (trailing padding, the MDC), then compares with the sidecar.
    fn finish(mut self, expected: Option<&str>) -> Result<(String, SidecarCheck), RestoreError> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match self.reader.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.read_failure(&e)),
            }
        }
        drop(self.reader);
        let state = Arc::try_unwrap(self.state)
            .ok()
            .and_then(|m| m.into_inner().ok())
            .unwrap_or_default();
        let actual = hex::encode(state.hasher.finalize());
        match expected {
            None => Ok((actual, SidecarCheck::Missing)),
            Some(exp) if exp == actual => Ok((actual, SidecarCheck::Match)),
            Some(exp) => Err(RestoreError::ChecksumMismatch {
                object: self.object,
                expected: exp.to_string(),
                actual: if state.bytes == self.size {
                    actual
                } else {
                    format!("{actual} (over {} of {} bytes)", state.bytes, self.size)
                },
            }),
        }
    }
}

/// sha256 of a whole object, `None` when it cannot be read.
fn hash_object(d: &dyn Destination, object: &str) -> Option<String> {
    let mut r = d.open(object).ok()?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; BUFFER];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return Some(hex::encode(h.finalize())),
            Ok(n) => h.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
}

/// open -> hash -> decrypt -> decompress, as the object's suffixes say.
fn open_decoded(
    d: &dyn Destination,
    copy: &Copy,
    decryption: Option<&Decryption>,
    expected: Option<&str>,
) -> Result<Decoded, RestoreError> {
    let object = copy.name.path();
    let raw = d.open(&object)?;
    let state = Arc::new(Mutex::new(ReadState::default()));
    let mut reader: Box<dyn Read + Send> = Box::new(io::BufReader::with_capacity(
        BUFFER,
        HashingReader {
            inner: raw,
            state: state.clone(),
        },
    ));
    let Encoding {
        compression,
        encrypted,
    } = copy.name.encoding;
    if encrypted {
        let Some(how) = decryption else {
            return Err(RestoreError::NeedKey { object });
        };
        reader = match crypto::decrypt(reader, how) {
            Ok(r) => r,
            Err(source) => {
                // Damage and a wrong key can look alike; the sidecar tells them apart.
                if let Some(exp) = expected {
                    if let Some(actual) = hash_object(d, &object) {
                        if actual != exp {
                            return Err(RestoreError::ChecksumMismatch {
                                object,
                                expected: exp.to_string(),
                                actual: format!("{actual} (damaged object: {source})"),
                            });
                        }
                    }
                }
                return Err(RestoreError::Crypto { object, source });
            }
        };
    }
    reader = match compression {
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(reader).map_err(|e| {
            RestoreError::Corrupt {
                object: object.clone(),
                message: e.to_string(),
            }
        })?),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
        Compression::None => reader,
    };
    Ok(Decoded {
        reader,
        state,
        object,
        size: copy.size,
        decode_error: None,
    })
}

fn copy_payload(
    decoded: &mut Decoded,
    out: &mut dyn Write,
    object: &str,
    path: &Path,
) -> Result<u64, RestoreError> {
    let mut buf = vec![0u8; BUFFER];
    let mut total = 0u64;
    loop {
        let n = match decoded.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(decoded.read_failure(&e)),
        };
        out.write_all(&buf[..n]).map_err(|e| RestoreError::Write {
            object: object.to_string(),
            path: path.to_path_buf(),
            source: e,
        })?;
        total += n as u64;
    }
}

/// Writes a dump file; refuses to overwrite an existing one.
fn write_file(decoded: &mut Decoded, path: &Path, object: &str) -> Result<u64, RestoreError> {
    let werr = |e: io::Error| RestoreError::Write {
        object: object.to_string(),
        path: path.to_path_buf(),
        source: e,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(werr)?;
    let n = match copy_payload(decoded, &mut file, object, path) {
        Ok(n) => n,
        Err(e) => {
            drop(file);
            let _ = fs::remove_file(path);
            return Err(e);
        }
    };
    file.sync_all().map_err(werr)?;
    Ok(n)
}

/// Counts bytes read through it (the tar stream size).
struct Counting<'a, R> {
    inner: &'a mut R,
    n: u64,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

/// Unpacks a tar stream into `dir`; returns the tar stream's size.
fn untar(decoded: &mut Decoded, dir: &Path, object: &str) -> Result<u64, RestoreError> {
    let mut counting = Counting {
        inner: decoded,
        n: 0,
    };
    // Directory metadata is applied last, deepest first: a read-only directory must not
    // stop its own contents from being written, and writing contents changes its mtime.
    let mut dirs: Vec<(PathBuf, u32, Option<u64>)> = Vec::new();
    let result = (|| -> Result<(), (Option<String>, RestoreError)> {
        let mut archive = tar::Archive::new(&mut counting);
        archive.set_preserve_permissions(true);
        archive.set_preserve_mtime(true);
        archive.set_overwrite(true);
        archive.set_unpack_xattrs(false);
        archive.set_preserve_ownerships(rustix::process::geteuid().is_root());
        let entries = archive
            .entries()
            .map_err(|e| (None, unpack_error(object, dir, e)))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| (None, unpack_error(object, dir, e)))?;
            let member = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let is_dir = entry.header().entry_type().is_dir();
            let mode = entry.header().mode().unwrap_or(0o755);
            let mtime = entry.header().mtime().ok();
            if is_dir {
                entry.set_preserve_permissions(false);
                entry.set_preserve_mtime(false);
            }
            // The tar crate unpacks a FIFO as an empty regular file; make a real one.
            if entry.header().entry_type().is_fifo() {
                let unsafe_path = || RestoreError::UnsafePath {
                    object: object.to_string(),
                    member: member.clone(),
                    target: dir.to_path_buf(),
                };
                let path = member_path(dir, &entry.path_bytes()).ok_or((None, unsafe_path()))?;
                make_fifo(dir, &path, mode, mtime).map_err(|e| match e {
                    FifoError::Escapes => (None, unsafe_path()),
                    FifoError::Io(source) => (
                        Some(member.clone()),
                        RestoreError::Write {
                            object: object.to_string(),
                            path: path.clone(),
                            source,
                        },
                    ),
                })?;
                continue;
            }
            match entry.unpack_in(dir) {
                Ok(true) => {}
                Ok(false) => {
                    return Err((
                        None,
                        RestoreError::UnsafePath {
                            object: object.to_string(),
                            member,
                            target: dir.to_path_buf(),
                        },
                    ))
                }
                Err(e) => return Err((Some(member), unpack_error(object, dir, e))),
            }
            if is_dir {
                if let Some(path) = member_path(dir, &entry.path_bytes()) {
                    dirs.push((path, mode, mtime));
                }
            }
        }
        Ok(())
    })();
    if let Err((member, e)) = result {
        // Prefer the decode error (corruption) over tar's wrapped version of it.
        let decode = counting.inner.decode_error.clone();
        let object_err = counting
            .inner
            .state
            .lock()
            .ok()
            .and_then(|s| s.error.clone());
        if let Some(msg) = object_err
            .map(|m| format!("reading the object failed: {m}"))
            .or(decode)
        {
            return Err(RestoreError::Corrupt {
                object: object.to_string(),
                message: msg,
            });
        }
        // tar refuses to write through a symlink that leads outside the target.
        return Err(match (member, e) {
            (Some(member), RestoreError::Write { object, source, .. })
                if source.to_string().contains("outside of") =>
            {
                RestoreError::UnsafePath {
                    object,
                    member,
                    target: dir.to_path_buf(),
                }
            }
            (_, e) => e,
        });
    }
    dirs.sort_by(|a, b| b.0.cmp(&a.0));
    for (path, mode, mtime) in dirs {
        let werr = |e: io::Error| RestoreError::Write {
            object: object.to_string(),
            path: path.clone(),
            source: e,
        };
        if let Some(secs) = mtime {
            let f = File::open(&path).map_err(werr)?;
            f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
                .map_err(werr)?;
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(mode & 0o7777)).map_err(werr)?;
    }
    Ok(counting.n)
}

fn unpack_error(object: &str, dir: &Path, e: io::Error) -> RestoreError {
    RestoreError::Write {
        object: object.to_string(),
        path: dir.to_path_buf(),
        source: io::Error::new(e.kind(), error_chain(&e)),
    }
}

/// `outer: inner: innermost`: tar wraps the real cause (errno, path) in its own error.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let msg = c.to_string();
        if !out.contains(&msg) {
            out.push_str(": ");
            out.push_str(&msg);
        }
        cur = c.source();
    }
    out
}

/// The on-disk path of a member, as `unpack_in` computes it (`.`, `/` dropped).
enum FifoError {
    /// The FIFO's parent resolves outside the restore target (through a symlink).
    Escapes,
    Io(io::Error),
}

/// Creates a FIFO at `path` (inside `dir`) with `mode` and `mtime`, replacing what is there.
fn make_fifo(dir: &Path, path: &Path, mode: u32, mtime: Option<u64>) -> Result<(), FifoError> {
    use rustix::fs::{mknodat, FileType, Mode, CWD};
    let parent = path.parent().unwrap_or(dir);
    fs::create_dir_all(parent).map_err(FifoError::Io)?;
    let root = fs::canonicalize(dir).map_err(FifoError::Io)?;
    let real_parent = fs::canonicalize(parent).map_err(FifoError::Io)?;
    if !real_parent.starts_with(&root) {
        return Err(FifoError::Escapes);
    }
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir(path).map_err(FifoError::Io)?,
        Ok(_) => fs::remove_file(path).map_err(FifoError::Io)?,
        Err(_) => {}
    }
    mknodat(
        CWD,
        path,
        FileType::Fifo,
        Mode::from_raw_mode(mode & 0o7777),
        0,
    )
    .map_err(|e| FifoError::Io(e.into()))?;
    // mknod is subject to the umask; the archive's mode is what we restore.
    fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o7777)).map_err(FifoError::Io)?;
    if let Some(secs) = mtime {
        let t = rustix::fs::Timestamps {
            last_access: rustix::fs::Timespec {
                tv_sec: secs as i64,
                tv_nsec: 0,
            },
            last_modification: rustix::fs::Timespec {
                tv_sec: secs as i64,
                tv_nsec: 0,
            },
        };
        rustix::fs::utimensat(CWD, path, &t, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| FifoError::Io(e.into()))?;
    }
    Ok(())
}

fn member_path(dir: &Path, member: &[u8]) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let rel = Path::new(std::ffi::OsStr::from_bytes(member));
    let mut out = dir.to_path_buf();
    for c in rel.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::ParentDir => return None,
            _ => {}
        }
    }
    Some(out)
}

/// Reads a tar stream entry by entry without writing anything; returns (bytes, members).
fn walk_tar(decoded: &mut Decoded) -> Result<(u64, u64), RestoreError> {
    let mut counting = Counting {
        inner: decoded,
        n: 0,
    };
    let mut members = 0u64;
    let result = (|| -> io::Result<()> {
        let mut archive = tar::Archive::new(&mut counting);
        for entry in archive.entries()? {
            let mut entry = entry?;
            io::copy(&mut entry, &mut io::sink())?;
            members += 1;
        }
        Ok(())
    })();
    match result {
        Ok(()) => Ok((counting.n, members)),
        Err(e) => Err(match counting.inner.read_failure(&e) {
            // No decode error underneath: the payload itself is not a tar archive.
            RestoreError::Corrupt { object, message } if message == e.to_string() => {
                RestoreError::Corrupt {
                    object,
                    message: format!("not a valid tar archive: {}", error_chain(&e)),
                }
            }
            other => other,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::gpg_test::GpgHome;
    use crate::crypto::{Encryption, Passphrase};
    use crate::destination::local::LocalDestination;
    use crate::pipeline::{self, Plan};
    use crate::source::{SourceError, SourceStream};
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    use std::process::{Command, Stdio};

    struct Bytes(io::Cursor<Vec<u8>>);

    impl Read for Bytes {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.0.read(buf)
        }
    }

    impl SourceStream for Bytes {
        fn finish(self: Box<Self>) -> Result<(), SourceError> {
            Ok(())
        }
    }

    fn stream(data: Vec<u8>) -> Box<dyn SourceStream> {
        Box::new(Bytes(io::Cursor::new(data)))
    }

    fn have_tar() -> bool {
        Command::new("tar")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// A tree with the awkward cases; returns its root (`parent/base`).
    fn awkward_tree(parent: &Path) -> PathBuf {
        let base = parent.join("base");
        fs::create_dir_all(base.join("empty dir")).expect("mkdir");
        fs::create_dir_all(base.join("ro")).expect("mkdir");
        fs::write(base.join("ro/inside"), b"in a read-only dir").expect("write");
        fs::write(base.join("name with spaces\nand newline"), b"x").expect("write");
        let non_utf8 = std::ffi::OsStr::from_bytes(b"bytes-\xff\xfe");
        fs::write(base.join(non_utf8), b"non-utf8 name").expect("write");
        let long = "d".repeat(60);
        let deep = base.join(&long).join(&long);
        fs::create_dir_all(&deep).expect("mkdir");
        fs::write(deep.join("f".repeat(90)), b"long path").expect("write");
        fs::write(base.join("exec.sh"), b"#!/bin/sh\n").expect("write");
        fs::set_permissions(base.join("exec.sh"), fs::Permissions::from_mode(0o751))
            .expect("chmod");
        std::os::unix::fs::symlink("exec.sh", base.join("link")).expect("symlink");
        std::os::unix::fs::symlink("/nonexistent/target", base.join("dangling")).expect("ln");
        fs::hard_link(base.join("exec.sh"), base.join("hard")).expect("hard link");
        let sparse = File::create(base.join("sparse")).expect("create");
        sparse.set_len(64 << 20).expect("set_len");
        drop(sparse);
        let mut f = OpenOptions::new()
            .write(true)
            .open(base.join("sparse"))
            .expect("open");
        io::Seek::seek(&mut f, io::SeekFrom::Start(32 << 20)).expect("seek");
        f.write_all(b"data in the middle").expect("write");
        drop(f);
        let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        File::open(base.join("exec.sh"))
            .expect("open")
            .set_modified(old)
            .expect("mtime");
        fs::set_permissions(base.join("ro"), fs::Permissions::from_mode(0o555)).expect("chmod");
        base
    }

    /// `tar cf - ./base` from the parent, as the original does (GNU format, sparse).
    fn tar_like_original(parent: &Path) -> Vec<u8> {
        let out = Command::new("tar")
            .current_dir(parent)
            .args(["--sparse", "-cf", "-", "./base"])
            .output()
            .expect("tar");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// Compares two trees: names, types, modes, mtimes of files, contents, link targets.
    fn assert_same_tree(a: &Path, b: &Path) {
        let mut stack = vec![PathBuf::new()];
        while let Some(rel) = stack.pop() {
            let (pa, pb) = (a.join(&rel), b.join(&rel));
            let (ma, mb) = (
                fs::symlink_metadata(&pa).expect("a"),
                fs::symlink_metadata(&pb).unwrap_or_else(|e| panic!("{}: {e}", pb.display())),
            );
            assert_eq!(ma.file_type(), mb.file_type(), "{}", rel.display());
            assert_eq!(ma.mode(), mb.mode(), "mode of {}", rel.display());
            if ma.file_type().is_symlink() {
                assert_eq!(fs::read_link(&pa).ok(), fs::read_link(&pb).ok());
            } else if ma.is_file() {
                assert_eq!(ma.mtime(), mb.mtime(), "mtime of {}", rel.display());
                assert!(
                    fs::read(&pa).ok() == fs::read(&pb).ok(),
                    "{}",
                    rel.display()
                );
            } else if ma.is_dir() {
                assert_eq!(ma.mtime(), mb.mtime(), "mtime of dir {}", rel.display());
                let mut names: Vec<_> = fs::read_dir(&pa)
                    .expect("dir")
                    .map(|e| e.expect("e").file_name())
                    .collect();
                let mut names_b: Vec<_> = fs::read_dir(&pb)
                    .expect("dir")
                    .map(|e| e.expect("e").file_name())
                    .collect();
                names.sort();
                names_b.sort();
                assert_eq!(names, names_b, "{}", rel.display());
                stack.extend(names.into_iter().map(|n| rel.join(n)));
            }
        }
    }

    fn setup() -> (tempfile::TempDir, LocalDestination, LocalDestination) {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = LocalDestination::new("a", dir.path().join("dest-a"));
        let b = LocalDestination::new("b", dir.path().join("dest-b"));
        fs::create_dir_all(a.root()).expect("mkdir");
        fs::create_dir_all(b.root()).expect("mkdir");
        (dir, a, b)
    }

    fn name(id: &str, stamp: &str, payload: Payload, encoding: Encoding) -> ObjectName {
        ObjectName {
            source_id: id.into(),
            stamp: RunStamp::parse(stamp).expect("stamp"),
            payload,
            encoding,
        }
    }

    fn opts(id: &str, target: RestoreTarget, dec: Option<Decryption>) -> RestoreOptions {
        RestoreOptions {
            source_id: id.into(),
            at: None,
            destination: None,
            target,
            decryption: dec,
        }
    }

    #[test]
    fn folder_round_trip_through_pipeline_and_restore() {
        if !have_tar() {
            eprintln!("SKIP: GNU tar not installed");
            return;
        }
        let (dir, a, b) = setup();
        let src_parent = dir.path().join("src");
        fs::create_dir_all(&src_parent).expect("mkdir");
        let base = awkward_tree(&src_parent);
        let tar = tar_like_original(&src_parent);
        let pass = Passphrase::new("pw");
        let n = name("www", "20240101120000", Payload::Tar, Encoding::CUSTOS);
        let out = pipeline::run(
            stream(tar),
            &Plan::custos(Encryption::Passphrase(pass.clone())),
            &n.path(),
            &[&a, &b],
            None,
        )
        .expect("backup");
        assert!(out.all_ok());
        let target = dir.path().join("restored");
        let restored = restore(
            &[&a, &b],
            opts(
                "www",
                RestoreTarget::Directory(target.clone()),
                Some(Decryption::Passphrase(pass)),
            ),
        )
        .expect("restore");
        assert_eq!(restored.copy.destination, "a");
        assert_eq!(restored.sidecar, SidecarCheck::Match);
        assert_eq!(restored.sha256, out.sha256);
        assert_same_tree(&base, &target.join("base"));
        let m = |p: &str| fs::metadata(target.join("base").join(p)).expect("meta");
        assert_eq!(m("exec.sh").ino(), m("hard").ino(), "hard link kept");
        assert!(
            m("sparse").blocks() * 512 < 4 << 20,
            "sparse file kept its holes"
        );
        fs::set_permissions(base.join("ro"), fs::Permissions::from_mode(0o755)).expect("chmod");
        fs::set_permissions(target.join("base/ro"), fs::Permissions::from_mode(0o755))
            .expect("chmod");
    }

    #[test]
    fn restores_the_originals_layouts() {
        if !have_tar() {
            eprintln!("SKIP: GNU tar not installed");
            return;
        }
        let Some(gpg) = GpgHome::new() else { return };
        let (dir, a, _b) = setup();
        let src_parent = dir.path().join("src");
        fs::create_dir_all(&src_parent).expect("mkdir");
        let base = src_parent.join("base");
        fs::create_dir_all(base.join("sub")).expect("mkdir");
        fs::write(
            base.join("sub/file.txt"),
            b"hello from the original\n".repeat(1000),
        )
        .expect("write");
        let tar = tar_like_original(&src_parent);
        // `.tar.gpg` as the original writes it: gpg --passphrase-fd 0 -c (zlib inside).
        let plain = gpg.file("t.tar", &tar);
        let enc = gpg.ok(
            &[
                "--pinentry-mode",
                "loopback",
                "--passphrase-fd",
                "0",
                "-c",
                "-o",
                "-",
                plain.to_str().expect("utf8"),
            ],
            b"orig\n",
        );
        let n = name("site", "20230101010101", Payload::Tar, Encoding::ORIGINAL);
        fs::create_dir_all(a.root().join("site/20230101010101")).expect("mkdir");
        fs::write(a.root().join(n.path()), enc).expect("write object");
        // `.tar.gz` from compress_only: gzip --fast.
        let gz = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&tar).expect("gzip");
            e.finish().expect("gzip")
        };
        let n2 = name(
            "plain",
            "20230101010101",
            Payload::Tar,
            Encoding::COMPRESS_ONLY,
        );
        fs::create_dir_all(a.root().join("plain/20230101010101")).expect("mkdir");
        fs::write(a.root().join(n2.path()), gz).expect("write object");

        let t1 = dir.path().join("r1");
        let r = restore(
            &[&a],
            opts(
                "site",
                RestoreTarget::Directory(t1.clone()),
                Some(Decryption::Passphrase(Passphrase::new("orig"))),
            ),
        )
        .expect("restore .tar.gpg");
        assert_eq!(r.sidecar, SidecarCheck::Missing);
        assert_same_tree(&base, &t1.join("base"));
        let t2 = dir.path().join("r2");
        restore(
            &[&a],
            opts("plain", RestoreTarget::Directory(t2.clone()), None),
        )
        .expect("restore .tar.gz");
        assert_same_tree(&base, &t2.join("base"));
        // What custos writes in the original's layout, gpg -d gives back as the tar itself.
        let n3 = name("again", "20230101010101", Payload::Tar, Encoding::ORIGINAL);
        pipeline::run(
            stream(tar.clone()),
            &Plan::original(Encryption::Passphrase(Passphrase::new("orig"))),
            &n3.path(),
            &[&a],
            None,
        )
        .expect("backup");
        let obj = a.root().join(n3.path());
        let out = gpg.ok(
            &[
                "--pinentry-mode",
                "loopback",
                "--passphrase-fd",
                "0",
                "--decrypt",
                obj.to_str().expect("utf8"),
            ],
            b"orig\n",
        );
        assert!(out == tar, "gpg -d of the original layout is the tar");
    }

    #[test]
    fn sql_dump_to_directory_and_to_a_writer_with_at_and_destination() {
        let (dir, a, b) = setup();
        let pass = Passphrase::new("db");
        for (stamp, body) in [
            ("20240101000000", "old dump"),
            ("20240102000000", "new dump"),
        ] {
            let n = name("db", stamp, Payload::Sql, Encoding::CUSTOS);
            let dests: Vec<&dyn Destination> = vec![&a, &b];
            pipeline::run(
                stream(body.as_bytes().to_vec()),
                &Plan::custos(Encryption::Passphrase(pass.clone())),
                &n.path(),
                &dests,
                None,
            )
            .expect("backup");
        }
        let l = list(&[&a, &b], None);
        assert!(l.errors.is_empty());
        let order: Vec<(String, String)> = l
            .copies
            .iter()
            .map(|c| (c.name.stamp.to_string(), c.destination.clone()))
            .collect();
        assert_eq!(
            order,
            vec![
                ("20240102000000".into(), "a".into()),
                ("20240102000000".into(), "b".into()),
                ("20240101000000".into(), "a".into()),
                ("20240101000000".into(), "b".into()),
            ]
        );
        assert!(l.copies.iter().all(|c| c.has_sidecar));
        assert!(l.copies[0].age() > chrono::TimeDelta::zero());

        let target = dir.path().join("dump");
        let r = restore(
            &[&a, &b],
            opts(
                "db",
                RestoreTarget::Directory(target.clone()),
                Some(Decryption::Passphrase(pass.clone())),
            ),
        )
        .expect("restore");
        assert_eq!(
            fs::read_to_string(target.join("db.sql")).expect("dump"),
            "new dump"
        );
        assert_eq!(r.written_to, Some(target.join("db.sql")));

        let shared = Arc::new(Mutex::new(Vec::new()));
        struct Shared(Arc<Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                self.0.lock().expect("lock").extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut o = opts(
            "db",
            RestoreTarget::Writer(Box::new(Shared(shared.clone()))),
            Some(Decryption::Passphrase(pass.clone())),
        );
        o.at = RunStamp::parse("20240101000000");
        o.destination = Some("b".into());
        let r = restore(&[&a, &b], o).expect("restore old from b");
        assert_eq!(r.copy.destination, "b");
        assert_eq!(shared.lock().expect("lock").as_slice(), b"old dump");

        let mut o = opts("db", RestoreTarget::Directory(target.clone()), None);
        o.at = RunStamp::parse("20200101000000");
        let err = restore(&[&a, &b], o).expect_err("no such copy");
        assert!(err.to_string().contains("20200101000000"), "{err}");
        let err = restore(
            &[&a],
            opts("db", RestoreTarget::Directory(dir.path().join("x")), None),
        )
        .expect_err("needs a key");
        assert!(matches!(err, RestoreError::NeedKey { .. }), "{err}");
        let err = restore(
            &[&a],
            opts(
                "db",
                RestoreTarget::Directory(dir.path().join("y")),
                Some(Decryption::Passphrase(Passphrase::new("wrong"))),
            ),
        )
        .expect_err("wrong passphrase");
        assert!(err.to_string().contains("wrong passphrase"), "{err}");
    }

    #[test]
    fn verify_detects_corruption_and_checksum_mismatch() {
        let (_dir, a, b) = setup();
        let pass = Passphrase::new("v");
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let n = name("v", "20240101000000", Payload::Sql, Encoding::CUSTOS);
        pipeline::run(
            stream(data),
            &Plan::custos(Encryption::Passphrase(pass.clone())),
            &n.path(),
            &[&a, &b],
            None,
        )
        .expect("backup");
        let keys = |_: &str| Some(Decryption::Passphrase(pass.clone()));
        let reports = verify(&[&a, &b], &["v".into(), "missing".into()], &keys);
        assert_eq!(reports.len(), 4);
        for r in &reports[..2] {
            let v = r.result.as_ref().expect("verified");
            assert_eq!(v.sidecar, SidecarCheck::Match);
            assert_eq!(v.payload_bytes, 3_000_000);
        }
        assert!(matches!(
            reports[2].result,
            Err(RestoreError::NotFound { .. })
        ));
        // Flip a byte in the middle of a's copy: decoding fails, naming the object.
        let path = a.root().join(n.path());
        let mut bytes = fs::read(&path).expect("read");
        let mid = bytes.len() / 2;
        bytes[mid] ^= 1;
        fs::write(&path, &bytes).expect("write");
        let reports = verify(&[&a, &b], &["v".into()], &keys);
        let err = reports[0].result.as_ref().expect_err("corrupted");
        assert!(err.to_string().contains(&n.path()), "{err}");
        assert!(
            matches!(
                err,
                RestoreError::Corrupt { .. } | RestoreError::ChecksumMismatch { .. }
            ),
            "{err}"
        );
        assert!(reports[1].result.is_ok());
        // A wrong sidecar with an intact object is a checksum mismatch.
        bytes[mid] ^= 1;
        fs::write(&path, &bytes).expect("write");
        fs::write(
            a.root().join(n.sidecar()),
            naming::sidecar_body(&"0".repeat(64), "v.sql.zst.gpg"),
        )
        .expect("write sidecar");
        let reports = verify(&[&a], &["v".into()], &keys);
        assert!(
            matches!(
                reports[0].result,
                Err(RestoreError::ChecksumMismatch { .. })
            ),
            "{:?}",
            reports[0].result
        );
    }

    /// (member path, type, link target, data)
    type RawMember<'a> = (&'a [u8], tar::EntryType, &'a [u8], &'a [u8]);

    /// A tar with raw member names, bypassing the tar crate's own path checks.
    fn raw_tar(members: &[RawMember<'_>]) -> Vec<u8> {
        let mut out = Vec::new();
        for (path, kind, link, data) in members {
            let mut h = tar::Header::new_gnu();
            {
                let old = h.as_old_mut();
                old.name[..path.len()].copy_from_slice(path);
                old.linkname[..link.len()].copy_from_slice(link);
            }
            h.set_entry_type(*kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_cksum();
            out.extend_from_slice(h.as_bytes());
            out.extend_from_slice(data);
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
        out.resize(out.len() + 1024, 0);
        out
    }

    #[test]
    fn refuses_members_that_escape_the_target() {
        let (dir, a, _b) = setup();
        // A directory outside every target that the symlink case points at.
        let outside = dir.path().join("outside");
        fs::create_dir_all(&outside).expect("mkdir");
        let outside_bytes = outside.as_os_str().as_bytes().to_vec();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "dotdot",
                raw_tar(&[(b"../evil", tar::EntryType::Regular, b"", b"x")]),
            ),
            (
                "symlink",
                raw_tar(&[
                    (b"link", tar::EntryType::Symlink, &outside_bytes, b""),
                    (b"link/evil", tar::EntryType::Regular, b"", b"x"),
                ]),
            ),
        ];
        for (id, tar) in cases {
            let n = name(id, "20240101000000", Payload::Tar, Encoding::COMPRESS_ONLY);
            pipeline::run(stream(tar), &Plan::compress_only(), &n.path(), &[&a], None)
                .expect("backup");
            let target = dir.path().join(format!("t-{id}"));
            let err = restore(&[&a], opts(id, RestoreTarget::Directory(target), None))
                .expect_err("refused");
            assert!(
                matches!(err, RestoreError::UnsafePath { .. }),
                "{id}: {err}"
            );
            assert!(!dir.path().join("evil").exists(), "{id}");
            assert!(!outside.join("evil").exists(), "{id}");
        }
    }

    #[test]
    fn restore_via_gpg_of_a_recipient_encrypted_object() {
        let Some(gpg) = GpgHome::new() else { return };
        gpg.generate_key("Restore Test <restore@example.org>");
        let (dir, a, _b) = setup();
        let keys = crate::crypto::load_recipients_with_gnupg_home(
            &["restore@example.org".into()],
            None,
            Some(gpg.path()),
        )
        .expect("keys");
        let n = name("r", "20240101000000", Payload::Sql, Encoding::CUSTOS);
        pipeline::run(
            stream(b"SELECT 1;\n".to_vec()),
            &Plan::custos(Encryption::Recipients(keys)),
            &n.path(),
            &[&a],
            None,
        )
        .expect("backup");
        let target = dir.path().join("out");
        restore(
            &[&a],
            opts(
                "r",
                RestoreTarget::Directory(target.clone()),
                Some(Decryption::Gpg {
                    gnupg_home: Some(gpg.path().to_path_buf()),
                }),
            ),
        )
        .expect("restore via gpg");
        assert_eq!(
            fs::read(target.join("r.sql")).expect("dump"),
            b"SELECT 1;\n"
        );
    }
}
