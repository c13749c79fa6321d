//! Object names, as the original writes them, and their parsing for restore and retention.
//!
//! Public API:
//! - [`RunStamp`]: the one timestamp of a run, `YYYYmmddHHMMSS` in local time (the original
//!   uses Python's `datetime.now()`); [`RunStamp::now`], [`RunStamp::parse`], `Display`.
//! - [`Payload`] (`tar`, `sql`), [`Compression`] (`.zst`, `.gz`, none) and [`Encoding`]
//!   (compression + `.gpg`): the suffix chain, which tells restore how to decode.
//!   [`Encoding::CUSTOS`] = `.zst.gpg` (default), [`Encoding::ORIGINAL`] = `.gpg` (gpg's own
//!   zlib inside), [`Encoding::COMPRESS_ONLY`] = `.gz`.
//! - [`ObjectName`] is `{id}/{YYYYmmddHHMMSS}/{id}.{payload}{.zst|.gz|}{.gpg|}`, or for one
//!   database of a per-database source (`dbname: all` or a list)
//!   `{id}/{YYYYmmddHHMMSS}/{id}.{database}.{payload}...` with the database name
//!   percent-encoded ([`encode_database`]) so that it is one dot-free word of a file name;
//!   [`ObjectName::path`] formats it, [`ObjectName::parse`] reads it back and returns `None`
//!   for anything else in the tree (sidecars, temp files, foreign objects). Names keep the
//!   source id first so a run's folder never mistakes a foreign file for a copy, and a
//!   copy made before per-database dumps existed parses as it always did.
//! - Sidecars: [`sidecar_name`] (`{object}.sha256`), [`sidecar_body`] (sha256sum format:
//!   `<hex>  <file>\n`, checkable with `sha256sum -c` from the object's directory),
//!   [`parse_sidecar`], [`is_sidecar`].
//! - [`valid_source_id`]: what a source id may contain so that names round-trip.

use std::fmt;

use std::time::SystemTime;

use chrono::{Local, LocalResult, NaiveDateTime, TimeZone, Timelike};

/// `strftime` format of the run timestamp (the original's).
pub const STAMP_FORMAT: &str = "%Y%m%d%H%M%S";

/// Suffix of the checksum object written beside each object.
pub const SIDECAR_SUFFIX: &str = ".sha256";

/// The timestamp shared by every object of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RunStamp(NaiveDateTime);

impl RunStamp {
    /// Now, local time, whole seconds. Take it once per run.
    pub fn now() -> Self {
        Self::from_datetime(Local::now().naive_local())
    }

    /// A given local date-time, truncated to whole seconds.
    pub fn from_datetime(dt: NaiveDateTime) -> Self {
        Self(dt.with_nanosecond(0).unwrap_or(dt))
    }

    /// Parses exactly 14 digits `YYYYmmddHHMMSS`.
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() != 14 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        NaiveDateTime::parse_from_str(s, STAMP_FORMAT)
            .ok()
            .map(Self)
    }

    /// Age relative to `now` (local); negative when the stamp is in the future.
    pub fn age(&self, now: NaiveDateTime) -> chrono::TimeDelta {
        now - self.0
    }

    /// The stamp (local time, as the original names folders) as an instant. A time that
    /// occurs twice (the DST fall-back hour) is read as its first, earlier occurrence, so a
    /// copy is never taken for newer (or for in the future) than it is; a time skipped by a
    /// DST change is read as UTC, an hour off at most.
    pub fn instant(&self) -> SystemTime {
        match Local.from_local_datetime(&self.0) {
            LocalResult::Single(t) => t.into(),
            // Compared as instants: chrono's `earliest()` is the first by offset, which for
            // a fall-back hour is the later instant.
            LocalResult::Ambiguous(a, b) => SystemTime::from(a).min(SystemTime::from(b)),
            LocalResult::None => self.0.and_utc().into(),
        }
    }

    /// Whether the stamp lies after `now`: a copy made while the clock ran ahead, or planted.
    pub fn is_future(&self, now: SystemTime) -> bool {
        self.instant() > now
    }
}

impl fmt::Display for RunStamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format(STAMP_FORMAT))
    }
}

/// What the object holds before compression and encryption.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Payload {
    /// A tar archive (folder sources).
    Tar,
    /// An SQL dump (mysql, pgsql).
    Sql,
    /// A PostgreSQL custom-format archive (`pg_dump -Fc`), restored with `pg_restore`.
    Dump,
    /// A disk image (azure-managed-disk), restored as one file.
    Disk,
    /// A `btrfs send` stream (btrfs with `mode: send`), restored as one file for `btrfs receive`.
    Btrfs,
    /// A block device image (lvm-ssh; the original's `vol` suffix).
    Vol,
}

impl Payload {
    /// The suffix word (`tar`, `sql`, `disk`, `btrfs`), as `Source::suffix` returns it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Payload::Tar => "tar",
            Payload::Sql => "sql",
            Payload::Dump => "dump",
            Payload::Disk => "disk",
            Payload::Btrfs => "btrfs",
            Payload::Vol => "vol",
        }
    }

    /// From a suffix word; `None` for anything else.
    pub fn from_suffix(s: &str) -> Option<Self> {
        match s {
            "tar" => Some(Payload::Tar),
            "sql" => Some(Payload::Sql),
            "dump" => Some(Payload::Dump),
            "disk" => Some(Payload::Disk),
            "btrfs" => Some(Payload::Btrfs),
            "vol" => Some(Payload::Vol),
            _ => None,
        }
    }
}

/// Compression applied outside OpenPGP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// zstd, `.zst` (custos' default).
    Zstd,
    /// gzip, `.gz` (the original's `compress_only`).
    Gzip,
    /// None outside OpenPGP (the original's `.tar.gpg`: gpg compresses inside).
    None,
}

impl Compression {
    /// The suffix including its dot, empty for none.
    pub fn suffix(&self) -> &'static str {
        match self {
            Compression::Zstd => ".zst",
            Compression::Gzip => ".gz",
            Compression::None => "",
        }
    }
}

/// The suffix chain after the payload: how to decode the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Encoding {
    pub compression: Compression,
    /// OpenPGP-encrypted (`.gpg`).
    pub encrypted: bool,
}

impl Encoding {
    /// custos default: `.zst.gpg`.
    pub const CUSTOS: Encoding = Encoding {
        compression: Compression::Zstd,
        encrypted: true,
    };
    /// The original's layout: `.gpg`, compressed inside by OpenPGP (ZLIB).
    pub const ORIGINAL: Encoding = Encoding {
        compression: Compression::None,
        encrypted: true,
    };
    /// The original's `compress_only`: `.gz`, no encryption.
    pub const COMPRESS_ONLY: Encoding = Encoding {
        compression: Compression::Gzip,
        encrypted: false,
    };

    /// `.zst.gpg`, `.gpg`, `.gz`, ... (may be empty: plain payload).
    pub fn suffix(&self) -> String {
        let mut s = self.compression.suffix().to_string();
        if self.encrypted {
            s.push_str(".gpg");
        }
        s
    }
}

/// May `id` be used as a source id? Non-empty, no `/`, not `.`/`..`, no control characters:
/// it becomes a directory name and the start of a file name.
pub fn valid_source_id(id: &str) -> bool {
    !id.is_empty() && id != "." && id != ".." && !id.chars().any(|c| c == '/' || c.is_control())
}

/// Longest file name (bytes) most file systems and object stores accept.
pub const MAX_FILE_NAME: usize = 255;

/// A database name as one word of a file name: ASCII letters, digits, `_` and `-` stay,
/// every other byte (`.`, `%`, `/`, spaces, UTF-8) becomes `%XX`. Reversible
/// ([`decode_database`]) and free of dots, so the suffix chain still parses from the right.
pub fn encode_database(name: &str) -> String {
    let mut s = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            s.push(char::from(b));
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

/// The database name of an encoded word; `None` unless it is exactly what
/// [`encode_database`] writes (so each name has one spelling).
pub fn decode_database(word: &str) -> Option<String> {
    let bytes = word.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = word.get(i + 1..i + 3)?;
            if !hex
                .bytes()
                .all(|h| h.is_ascii_digit() || (b'A'..=b'F').contains(&h))
            {
                return None;
            }
            let v = u8::from_str_radix(hex, 16).ok()?;
            if v.is_ascii_alphanumeric() || v == b'_' || v == b'-' {
                return None;
            }
            out.push(v);
            i += 3;
        } else if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b);
            i += 1;
        } else {
            return None;
        }
    }
    String::from_utf8(out).ok().filter(|s| !s.is_empty())
}

/// One object's name, `{id}/{YYYYmmddHHMMSS}/{id}[.{database}].{payload}{suffix}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectName {
    pub source_id: String,
    pub stamp: RunStamp,
    /// The database of a per-database dump; `None` for a source's one object.
    pub database: Option<String>,
    pub payload: Payload,
    pub encoding: Encoding,
}

impl ObjectName {
    /// The last path component, e.g. `www.tar.zst.gpg` or `db.shop.sql.zst.gpg`.
    pub fn file_name(&self) -> String {
        let database = self
            .database
            .as_deref()
            .map(|d| format!(".{}", encode_database(d)))
            .unwrap_or_default();
        format!(
            "{}{database}.{}{}",
            self.source_id,
            self.payload.as_str(),
            self.encoding.suffix()
        )
    }

    /// The full name relative to the destination root.
    pub fn path(&self) -> String {
        format!("{}/{}/{}", self.source_id, self.stamp, self.file_name())
    }

    /// The name of its sha256 sidecar.
    pub fn sidecar(&self) -> String {
        sidecar_name(&self.path())
    }

    /// Parses a name written by [`ObjectName::path`] (or by the original); `None` for
    /// anything else, so listings can skip foreign objects, sidecars and temp files.
    pub fn parse(name: &str) -> Option<Self> {
        let mut parts = name.split('/');
        let (id, stamp, file) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || !valid_source_id(id) {
            return None;
        }
        let stamp = RunStamp::parse(stamp)?;
        let rest = file.strip_prefix(id)?.strip_prefix('.')?;
        // `{payload}{suffix}` or `{database}.{payload}{suffix}`: a database word is never a
        // payload word followed by a valid chain, so at most one reading fits.
        if let Some((payload, encoding)) = Self::parse_chain(rest) {
            return Some(Self {
                source_id: id.to_string(),
                stamp,
                database: None,
                payload,
                encoding,
            });
        }
        let (word, chain) = rest.split_once('.')?;
        let (payload, encoding) = Self::parse_chain(chain)?;
        Some(Self {
            source_id: id.to_string(),
            stamp,
            database: Some(decode_database(word)?),
            payload,
            encoding,
        })
    }

    /// `{payload}{.zst|.gz|}{.gpg|}`.
    fn parse_chain(rest: &str) -> Option<(Payload, Encoding)> {
        let mut words = rest.split('.');
        let payload = Payload::from_suffix(words.next()?)?;
        let mut compression = Compression::None;
        let mut encrypted = false;
        let mut next = words.next();
        match next {
            Some("zst") => {
                compression = Compression::Zstd;
                next = words.next();
            }
            Some("gz") => {
                compression = Compression::Gzip;
                next = words.next();
            }
            _ => {}
        }
        if next == Some("gpg") {
            encrypted = true;
            next = words.next();
        }
        if next.is_some() {
            return None;
        }
        Some((
            payload,
            Encoding {
                compression,
                encrypted,
            },
        ))
    }
}

impl fmt::Display for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path())
    }
}

/// What a stored name is to the engine: one of its objects or that object's sidecar.
/// Every store's listing goes through this one parser, so retention and restore agree on
/// what is a copy and leave everything else (foreign files, odd names) alone.
pub fn parse_stored(name: &str) -> Option<(ObjectName, bool)> {
    match name.strip_suffix(SIDECAR_SUFFIX) {
        Some(base) => ObjectName::parse(base).map(|o| (o, true)),
        None => ObjectName::parse(name).map(|o| (o, false)),
    }
}

/// `{object}.sha256`.
pub fn sidecar_name(object: &str) -> String {
    format!("{object}{SIDECAR_SUFFIX}")
}

/// Is `name` a sidecar (by suffix)?
pub fn is_sidecar(name: &str) -> bool {
    name.ends_with(SIDECAR_SUFFIX)
}

/// The sidecar's content in `sha256sum` format: `<64 hex>  <file name>\n`.
pub fn sidecar_body(sha256_hex: &str, file_name: &str) -> String {
    format!("{sha256_hex}  {file_name}\n")
}

/// The lower-case hex digest from a sidecar (`sha256sum` format, text or binary marker).
pub fn parse_sidecar(body: &str) -> Option<String> {
    let line = body.lines().next()?;
    let hex = line.split_whitespace().next()?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| hex.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn stamp(s: &str) -> RunStamp {
        RunStamp::parse(s).expect("valid stamp")
    }

    #[test]
    fn formats_the_three_layouts() {
        let mut n = ObjectName {
            source_id: "www".into(),
            stamp: stamp("20240131235959"),
            database: None,
            payload: Payload::Tar,
            encoding: Encoding::CUSTOS,
        };
        assert_eq!(n.path(), "www/20240131235959/www.tar.zst.gpg");
        n.encoding = Encoding::ORIGINAL;
        assert_eq!(n.path(), "www/20240131235959/www.tar.gpg");
        n.encoding = Encoding::COMPRESS_ONLY;
        n.payload = Payload::Sql;
        assert_eq!(n.path(), "www/20240131235959/www.sql.gz");
        assert_eq!(n.sidecar(), "www/20240131235959/www.sql.gz.sha256");
    }

    /// Disk images and send streams are listed, restored and pruned like any copy: a name
    /// that did not parse back would be invisible to retention and restore.
    #[test]
    fn disk_and_btrfs_payloads_round_trip() {
        for (payload, file) in [
            (Payload::Disk, "vm/20240131235959/vm.disk.zst.gpg"),
            (Payload::Btrfs, "vm/20240131235959/vm.btrfs.zst.gpg"),
        ] {
            let n = ObjectName {
                source_id: "vm".into(),
                stamp: stamp("20240131235959"),
                database: None,
                payload,
                encoding: Encoding::CUSTOS,
            };
            assert_eq!(n.path(), file);
            assert_eq!(ObjectName::parse(file), Some(n));
            assert_eq!(Payload::from_suffix(payload.as_str()), Some(payload));
        }
    }

    #[test]
    fn parses_original_names_and_skips_others() {
        let n = ObjectName::parse("db-1/20230102030405/db-1.sql.gpg").expect("parses");
        assert_eq!(n.source_id, "db-1");
        assert_eq!(n.payload, Payload::Sql);
        assert_eq!(n.encoding, Encoding::ORIGINAL);
        assert_eq!(n.stamp.to_string(), "20230102030405");
        for other in [
            "db-1/20230102030405/db-1.sql.gpg.sha256",
            "db-1/20230102030405/.db-1.sql.gpg.partial-77",
            "db-1/20230102030405/other.sql.gpg",
            "db-1/2023010203040/db-1.sql.gpg",
            "db-1/20231302030405/db-1.sql.gpg",
            "db-1/20230102030405/db-1.zip",
            "db-1/20230102030405/db-1.sql.gpg.bak",
            "db-1/20230102030405/db-1.sql.gz.zst",
            "x/db-1/20230102030405/db-1.sql.gpg",
            "README",
            "",
        ] {
            assert_eq!(ObjectName::parse(other), None, "{other}");
        }
    }

    #[test]
    fn per_database_names_sit_beside_single_object_names() {
        let mut n = ObjectName {
            source_id: "db".into(),
            stamp: stamp("20240131235959"),
            database: Some("shop.eu 100%".into()),
            payload: Payload::Sql,
            encoding: Encoding::CUSTOS,
        };
        assert_eq!(
            n.path(),
            "db/20240131235959/db.shop%2Eeu%20100%25.sql.zst.gpg"
        );
        assert_eq!(ObjectName::parse(&n.path()), Some(n.clone()));
        // Databases named like payload or suffix words stay databases.
        for db in ["sql", "dump", "tar", "zst", "gpg", "gz"] {
            n.database = Some(db.into());
            n.payload = Payload::Dump;
            assert_eq!(ObjectName::parse(&n.path()), Some(n.clone()), "{db}");
        }
        // Older single-object copies keep parsing without a database.
        let old = ObjectName::parse("db/20240131235959/db.sql.gpg").expect("parses");
        assert_eq!(old.database, None);
        // Not our spelling of a database: foreign.
        for other in [
            "db/20240131235959/db.a%2e.sql",
            "db/20240131235959/db.%41.sql",
            "db/20240131235959/db.a%2.sql",
            "db/20240131235959/db.a b.sql",
            "db/20240131235959/db..sql",
            "db/20240131235959/db.x.y.sql",
        ] {
            assert_eq!(ObjectName::parse(other), None, "{other}");
        }
    }

    #[test]
    fn sidecar_round_trip() {
        let hex = "ab".repeat(32);
        let body = sidecar_body(&hex, "www.tar.zst.gpg");
        assert_eq!(body, format!("{hex}  www.tar.zst.gpg\n"));
        assert_eq!(parse_sidecar(&body), Some(hex));
        assert_eq!(parse_sidecar("xyz  f\n"), None);
        assert!(is_sidecar("a/b/c.sha256"));
    }

    #[test]
    fn stamp_is_whole_seconds_and_ordered() {
        let a = RunStamp::now();
        assert_eq!(a.0.nanosecond(), 0);
        assert_eq!(RunStamp::parse(&a.to_string()), Some(a));
        assert!(stamp("20240101000000") < stamp("20240101000001"));
    }

    fn arb_encoding() -> impl Strategy<Value = Encoding> {
        (
            prop_oneof![
                Just(Compression::Zstd),
                Just(Compression::Gzip),
                Just(Compression::None)
            ],
            any::<bool>(),
        )
            .prop_map(|(compression, encrypted)| Encoding {
                compression,
                encrypted,
            })
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(
            id in "[^/\\x00-\\x1f\\x7f]{1,20}",
            secs in 0i64..4_000_000_000,
            sql in any::<bool>(),
            encoding in arb_encoding(),
            database in proptest::option::of("\\PC{1,20}"),
        ) {
            prop_assume!(valid_source_id(&id));
            let dt = chrono::DateTime::from_timestamp(secs, 0).expect("in range").naive_utc();
            let name = ObjectName {
                source_id: id,
                stamp: RunStamp::from_datetime(dt),
                database,
                payload: if sql { Payload::Sql } else { Payload::Tar },
                encoding,
            };
            prop_assert_eq!(ObjectName::parse(&name.path()), Some(name.clone()));
            prop_assert_eq!(ObjectName::parse(&name.sidecar()), None);
        }

        #[test]
        fn database_names_round_trip_as_one_dot_free_word(db in "\\PC{1,30}") {
            let word = encode_database(&db);
            prop_assert!(!word.contains('.') && !word.contains('/'));
            prop_assert_eq!(decode_database(&word), Some(db));
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,80}") {
            let _ = ObjectName::parse(&s);
            let _ = parse_sidecar(&s);
        }
    }
}
