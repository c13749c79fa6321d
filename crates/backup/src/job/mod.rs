//! The job file: the original's JSON (`hostname`, `tmpdir`, `modules`, `sources`,
//! `destinations`, `notifications`), read so that its files keep working, plus a few custos
//! options whose defaults change nothing for those files.
//!
//! Parsing happens in two steps so that every error names its JSON path: the root is parsed
//! with [`custos_kit::config::parse_json`], then each source/destination is split into the keys
//! every entry has (`id`, `type`, `passphrase`, ...) and the keys of its type, and each part is
//! deserialized on its own (`deny_unknown_fields`) with the entry's path as prefix.
//!
//! A key nothing reads (the original ignores those; its own README's complete example has one)
//! is collected in [`JobConfig::unknown_keys`]: [`load`] warns about each, naming the nearest
//! known key, or fails with `--strict`, through the kit's one rule.
//!
//! Every source type of the original is implemented; a type nobody knows is a config error (a
//! typo must not turn into a silently skipped backup, as it does in the original).

use custos_kit::config::{ConfigError, Strictness, UnknownKey};
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

use custos_kit::config::values::{count, equals_one, null_as_default, strip_trailing_commas};
use custos_kit::config::{Entry, Secret};

use crate::destination::{self, Destination, DestinationError};
use crate::notify;

mod hooks;
mod retention;
pub use hooks::{Hook, HookCommand, Hooks};
pub use retention::{Calendar, RetentionPolicy, Span};

/// Compression applied before encryption (custos option `compression`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Multi-threaded zstd: `.tar.zst.gpg`. Several times faster than gzip at a similar ratio.
    #[default]
    Zstd,
    /// gzip (`--fast`, as the original's `compress_only`): `.tar.gz.gpg`.
    Gzip,
}

/// Which object layout to write (custos option `layout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// custos objects: the compression is named in the suffix (`.tar.zst.gpg`).
    #[default]
    Custos,
    /// The original's objects: `.tar.gpg`/`.sql.gpg` whose `gpg -d` output is the tar or
    /// dump, `.tar.gz`/`.sql.gz` with `compress_only`. For tools that read the original's
    /// files directly. (Both layouts write a `.sha256` sidecar beside each object.)
    Original,
}

/// How a source's stream is protected, resolved from `compress_only`, `recipients`,
/// `passphrase` with the original's precedence (compress_only, then recipients).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protection<'a> {
    /// `compress_only: 1`: compressed, not encrypted.
    CompressOnly,
    /// Public-key encryption to these recipients (key ids, fingerprints or e-mail addresses).
    Recipients(&'a [String]),
    /// Symmetric encryption with a passphrase.
    Passphrase(&'a Secret),
}

/// The whole job as read and validated.
#[derive(Debug, Clone)]
pub struct JobConfig {
    /// The file the job was read from (for messages).
    pub file: PathBuf,
    /// `hostname`: used in messages/notifications; the system's host name when absent.
    pub hostname: Option<String>,
    /// Sources in file order.
    pub sources: Vec<SourceConfig>,
    /// Destinations in file order.
    pub destinations: Vec<DestinationConfig>,
    /// Notifications in file order.
    pub notifications: Vec<NotificationConfig>,
    /// custos `state_dir`: where `verify` records its results for `status`.
    pub state_dir: Option<PathBuf>,
    /// custos `hooks` at the root: commands run before and after the whole job.
    pub hooks: Hooks,
    /// custos `max_parallel_sources`: sources run at once (1..=[`MAX_PARALLEL_SOURCES`]);
    /// absent: the engine's default (the number of cores).
    pub max_parallel_sources: Option<u32>,
    /// Lines (1-based) of trailing commas that were tolerated.
    pub trailing_commas: Vec<usize>,
    /// Whether the file holds passwords/passphrases/credentials.
    pub holds_secrets: bool,
    /// Keys nothing reads (warnings, or an error when loaded strictly).
    pub unknown_keys: Vec<UnknownKey>,
}

/// One source.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// `id`: first part of every object name.
    pub id: String,
    /// `name` (defaults to `id`).
    pub name: String,
    /// `type` as written.
    pub kind: String,
    /// `passphrase`.
    pub passphrase: Option<Secret>,
    /// `recipients`.
    pub recipients: Vec<String>,
    /// `compress_only` (true only for `1`/`true`, as the original's `== 1`).
    pub compress_only: bool,
    /// custos `compression` (per source, else root, else zstd); ignored by `layout: original`.
    pub compression: Compression,
    /// custos `compression_level`: zstd level (per source, else root, else the pipeline's
    /// default).
    pub compression_level: Option<i32>,
    /// custos `layout` (per source, else root, else custos).
    pub layout: Layout,
    /// custos `keyring`: public keys for `recipients` (per source, else root, else the
    /// user's gpg keyring).
    pub keyring: Option<PathBuf>,
    /// custos `timeout`: seconds the producer (tar, mysqldump, pg_dump) may run before its
    /// whole process group is killed and the source fails (per source, else root; absent or
    /// 0: no limit). A dump waiting on a lock or a tar on a dead NFS mount must not hang the
    /// job, and cron must not pile runs on top of it.
    pub timeout: Option<u32>,
    /// custos `max_age` (per source, else root): `backup status` fails when the newest good
    /// copy at a destination is older, or missing.
    pub max_age: Option<Span>,
    /// custos `hooks` of this source: commands run before and after its backup.
    pub hooks: Hooks,
    /// The type-specific part.
    pub spec: SourceSpec,
}

impl SourceConfig {
    /// The protection this source gets, `None` when nothing is configured (an error that
    /// `validate` reports for implemented types).
    pub fn protection(&self) -> Option<Protection<'_>> {
        if self.compress_only {
            Some(Protection::CompressOnly)
        } else if !self.recipients.is_empty() {
            Some(Protection::Recipients(&self.recipients))
        } else {
            self.passphrase
                .as_ref()
                .filter(|p| !p.expose().is_empty())
                .map(Protection::Passphrase)
        }
    }
}

/// One destination.
#[derive(Debug, Clone)]
pub struct DestinationConfig {
    /// `id`.
    pub id: String,
    /// `retention_copies` / `retention_days`.
    pub retention: RetentionPolicy,
    /// custos `stall_timeout` (seconds): how long the run waits for this destination to take
    /// more data (or answer a request) before giving up on it alone (default 300).
    pub stall_timeout: Option<u32>,
    /// custos `upload_rate_limit` (bytes/s): the average rate this destination is written at.
    pub upload_rate_limit: Option<u32>,
    /// The type-specific part.
    pub spec: DestinationSpec,
}

use crate::destination::DestinationSpec;
use crate::notify::NotificationConfig;
use crate::source::SourceSpec;

impl DestinationConfig {
    /// The destination of this entry, wrapped in the shared retry layer (the destination
    /// layer applies its own defaults to the values written here).
    pub fn build(&self) -> Result<Box<dyn Destination>, DestinationError> {
        destination::build(
            &self.id,
            &self.spec,
            self.stall_timeout,
            self.upload_rate_limit,
        )
    }
}

/// Most sources a job runs at once (`max_parallel_sources`): each running source holds a
/// pipeline (its producer, ~5 threads, ~50 MB of buffers), so more than this is a typo.
pub const MAX_PARALLEL_SOURCES: u32 = 64;

/// Keys every source accepts, whatever its type.
const SOURCE_COMMON_KEYS: &[&str] = &[
    "id",
    "name",
    "type",
    "passphrase",
    "recipients",
    "compress_only",
    "tmpdir",
    "compression",
    "compression_level",
    "layout",
    "keyring",
    "timeout",
    "max_age",
    "hooks",
];
/// Keys every destination accepts, whatever its type.
const DESTINATION_COMMON_KEYS: &[&str] = &[
    "id",
    "type",
    "retention_copies",
    "retention_days",
    "keep_last",
    "keep_hourly",
    "keep_daily",
    "keep_weekly",
    "keep_monthly",
    "keep_yearly",
    "keep_within",
    "stall_timeout",
    "upload_rate_limit",
];

/// Keys whose presence means the file holds a secret (checked at any depth).
const SECRET_KEYS: &[&str] = &[
    "passphrase",
    "dbpass",
    "password",
    "credentials",
    "access_token",
    "api_token",
    "aws_secret_access_key",
    "application_key",
    "secret_key",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJob {
    #[serde(default)]
    hostname: Option<String>,
    /// `tmpdir`: accepted as in the original; custos writes no temporary files (database
    /// credentials stay in memory), so nothing reads it.
    #[serde(default)]
    #[allow(dead_code)]
    tmpdir: Option<PathBuf>,
    /// The original imports these Python modules; every handler is built in here.
    #[serde(default)]
    #[allow(dead_code)]
    modules: Option<Vec<String>>,
    sources: Vec<Value>,
    #[serde(default, deserialize_with = "null_as_default")]
    destinations: Vec<Value>,
    #[serde(default, deserialize_with = "null_as_default")]
    notifications: Vec<Value>,
    #[serde(default)]
    compression: Option<Compression>,
    #[serde(default)]
    compression_level: Option<i32>,
    #[serde(default)]
    layout: Option<Layout>,
    #[serde(default)]
    keyring: Option<PathBuf>,
    #[serde(default, deserialize_with = "count")]
    timeout: Option<u32>,
    #[serde(default, deserialize_with = "retention::span")]
    max_age: Option<Span>,
    #[serde(default)]
    state_dir: Option<PathBuf>,
    #[serde(default, deserialize_with = "null_as_default")]
    hooks: hooks::RawHooks,
    #[serde(default, deserialize_with = "count")]
    max_parallel_sources: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSourceCommon {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    passphrase: Option<Secret>,
    #[serde(default, deserialize_with = "null_as_default")]
    recipients: Vec<String>,
    #[serde(default, deserialize_with = "equals_one")]
    compress_only: bool,
    /// `tmpdir`: accepted as in the original; custos writes no temporary files (database
    /// credentials stay in memory), so nothing reads it.
    #[serde(default)]
    #[allow(dead_code)]
    tmpdir: Option<PathBuf>,
    #[serde(default)]
    compression: Option<Compression>,
    #[serde(default)]
    compression_level: Option<i32>,
    #[serde(default)]
    layout: Option<Layout>,
    #[serde(default)]
    keyring: Option<PathBuf>,
    #[serde(default, deserialize_with = "count")]
    timeout: Option<u32>,
    #[serde(default, deserialize_with = "retention::span")]
    max_age: Option<Span>,
    #[serde(default, deserialize_with = "null_as_default")]
    hooks: hooks::RawHooks,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDestinationCommon {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default, deserialize_with = "count")]
    retention_copies: Option<u32>,
    #[serde(default, deserialize_with = "count")]
    retention_days: Option<u32>,
    #[serde(default, deserialize_with = "count")]
    keep_last: Option<u32>,
    #[serde(default, deserialize_with = "count")]
    keep_hourly: Option<u32>,
    #[serde(default, deserialize_with = "count")]
    keep_daily: Option<u32>,
    #[serde(default, deserialize_with = "count")]
    keep_weekly: Option<u32>,
    #[serde(default, deserialize_with = "count")]
    keep_monthly: Option<u32>,
    #[serde(default, deserialize_with = "count")]
    keep_yearly: Option<u32>,
    #[serde(default, deserialize_with = "retention::span")]
    keep_within: Option<Span>,
    #[serde(default, deserialize_with = "count")]
    stall_timeout: Option<u32>,
    #[serde(default, deserialize_with = "count")]
    upload_rate_limit: Option<u32>,
}

/// Reads, parses and validates a job file; logs the tolerated trailing commas, each key
/// nothing reads (an error when `strictness` is strict) and a warning when a file holding
/// secrets is readable by others.
pub fn load(path: &Path, strictness: Strictness) -> Result<JobConfig, ConfigError> {
    let text = custos_kit::config::read(path)?;
    let job = parse(path, &text)?;
    custos_kit::config::check_unknown(path, &job.unknown_keys, strictness)?;
    if !job.trailing_commas.is_empty() {
        tracing::warn!(
            file = %path.display(),
            lines = ?job.trailing_commas,
            "trailing commas are not JSON; tolerated as in the original's examples"
        );
    }
    job.validate()?;
    if job.holds_secrets {
        custos_kit::config::warn_if_readable_by_others(path);
    }
    Ok(job)
}

/// Parses job text read from `file` (no validation; see [`JobConfig::validate`]).
pub fn parse(file: &Path, text: &str) -> Result<JobConfig, ConfigError> {
    let (clean, trailing_commas) = strip_trailing_commas(text);
    let (raw, mut unknown_keys): (RawJob, _) =
        custos_kit::config::parse_json_lenient(file, &clean)?;
    let holds_secrets = raw
        .sources
        .iter()
        .chain(&raw.destinations)
        .chain(&raw.notifications)
        .any(has_secret_key)
        // A notification's URL is its secret (webhook tokens, ping UUIDs).
        || raw.notifications.iter().any(|n| n.get("url").is_some());
    let defaults = RootDefaults {
        compression: raw.compression,
        compression_level: raw.compression_level,
        layout: raw.layout,
        keyring: raw.keyring.clone(),
        timeout: raw.timeout,
        max_age: raw.max_age,
    };
    let sources = raw
        .sources
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            parse_source(
                file,
                &format!("sources[{i}]"),
                v,
                &defaults,
                &mut unknown_keys,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let destinations = raw
        .destinations
        .into_iter()
        .enumerate()
        .map(|(i, v)| parse_destination(file, &format!("destinations[{i}]"), v, &mut unknown_keys))
        .collect::<Result<Vec<_>, _>>()?;
    let notifications = raw
        .notifications
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            parse_notification(file, &format!("notifications[{i}]"), v, &mut unknown_keys)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(JobConfig {
        file: file.to_owned(),
        hostname: raw.hostname.filter(|h| !h.is_empty()),
        state_dir: raw.state_dir,
        hooks: hooks::resolve(file, "hooks", raw.hooks)?,
        max_parallel_sources: raw.max_parallel_sources,
        sources,
        destinations,
        notifications,
        trailing_commas,
        holds_secrets,
        unknown_keys,
    })
}

/// Root-level custos options that sources inherit.
struct RootDefaults {
    compression: Option<Compression>,
    compression_level: Option<i32>,
    layout: Option<Layout>,
    keyring: Option<PathBuf>,
    timeout: Option<u32>,
    max_age: Option<Span>,
}

fn parse_source(
    file: &Path,
    at: &str,
    value: Value,
    root: &RootDefaults,
    unknown: &mut Vec<UnknownKey>,
) -> Result<SourceConfig, ConfigError> {
    let (c, entry): (RawSourceCommon, _) =
        Entry::open(file, at, value, SOURCE_COMMON_KEYS, unknown)?;
    let Some(spec) = SourceSpec::parse(&c.kind, entry) else {
        return Err(unknown_type(file, at, &c.kind, SourceSpec::TYPES));
    };
    let spec = spec?;
    let hooks = hooks::resolve(file, &format!("{at}.hooks"), c.hooks)?;
    Ok(SourceConfig {
        name: c
            .name
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| c.id.clone()),
        id: c.id,
        kind: c.kind,
        passphrase: c.passphrase,
        recipients: c.recipients,
        compress_only: c.compress_only,
        compression: c.compression.or(root.compression).unwrap_or_default(),
        compression_level: c.compression_level.or(root.compression_level),
        layout: c.layout.or(root.layout).unwrap_or_default(),
        keyring: c.keyring.or_else(|| root.keyring.clone()),
        timeout: c.timeout.or(root.timeout).filter(|t| *t > 0),
        max_age: c.max_age.or(root.max_age),
        hooks,
        spec,
    })
}

fn parse_destination(
    file: &Path,
    at: &str,
    value: Value,
    unknown: &mut Vec<UnknownKey>,
) -> Result<DestinationConfig, ConfigError> {
    let (c, entry): (RawDestinationCommon, _) =
        Entry::open(file, at, value, DESTINATION_COMMON_KEYS, unknown)?;
    let Some(spec) = DestinationSpec::parse(&c.kind, entry) else {
        return Err(unknown_type(file, at, &c.kind, DestinationSpec::TYPES));
    };
    let spec = spec?;
    Ok(DestinationConfig {
        id: c.id,
        retention: RetentionPolicy {
            copies: c.retention_copies.unwrap_or(0),
            days: c.retention_days.unwrap_or(0),
            calendar: Calendar {
                last: c.keep_last.unwrap_or(0),
                hourly: c.keep_hourly.unwrap_or(0),
                daily: c.keep_daily.unwrap_or(0),
                weekly: c.keep_weekly.unwrap_or(0),
                monthly: c.keep_monthly.unwrap_or(0),
                yearly: c.keep_yearly.unwrap_or(0),
                within: c.keep_within,
            },
        },
        stall_timeout: c.stall_timeout.filter(|s| *s > 0),
        upload_rate_limit: c.upload_rate_limit.filter(|r| *r > 0),
        spec,
    })
}

fn parse_notification(
    file: &Path,
    at: &str,
    value: Value,
    unknown: &mut Vec<UnknownKey>,
) -> Result<NotificationConfig, ConfigError> {
    let (c, entry) = Entry::open(file, at, value, notify::COMMON_KEYS, unknown)?;
    notify::build(c, entry)
}

/// The error for a `type` nobody implements: the implemented types, and the one the value
/// looks like a typo of.
fn unknown_type(file: &Path, at: &str, kind: &str, have: &[&str]) -> ConfigError {
    let sorted = |types: &[&str]| {
        let mut v = types.to_vec();
        v.sort_unstable();
        v.join(", ")
    };
    let mut reason = match custos_kit::config::nearest_known(kind, have.iter().copied()) {
        Some(near) => format!("unknown type, did you mean \"{near}\"? implemented types: "),
        None => "unknown type; implemented types: ".to_owned(),
    };
    reason.push_str(&sorted(have));
    ConfigError::invalid(file, format!("{at}.type"), kind, reason)
}

fn has_secret_key(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.iter().any(|(k, v)| {
            (SECRET_KEYS.contains(&k.as_str()) && !v.is_null() && v != "") || has_secret_key(v)
        }),
        Value::Array(a) => a.iter().any(has_secret_key),
        _ => false,
    }
}

impl JobConfig {
    /// The host name for messages: `hostname` from the file, else the system's.
    pub fn hostname(&self) -> String {
        if let Some(h) = &self.hostname {
            return h.clone();
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "localhost".to_owned())
    }

    /// Checks what the schema cannot: ids unique and usable as object name parts, paths not
    /// empty, every implemented source protected or explicitly `compress_only`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let f = self.file.as_path();
        if self.sources.is_empty() {
            return Err(ConfigError::invalid(
                f,
                "sources",
                "[]",
                "no sources: nothing to back up",
            ));
        }
        if self.destinations.is_empty() {
            return Err(ConfigError::invalid(
                f,
                "destinations",
                "[]",
                "no destinations: backups would be made and thrown away",
            ));
        }
        if let Some(n) = self.max_parallel_sources {
            if !(1..=MAX_PARALLEL_SOURCES).contains(&n) {
                return Err(ConfigError::invalid(
                    f,
                    "max_parallel_sources",
                    n,
                    format!(
                        "must be 1 (one source after another) to {MAX_PARALLEL_SOURCES}; \
                         leave it out to run as many at once as there are cores"
                    ),
                ));
            }
        }
        let mut seen = HashSet::new();
        for (i, s) in self.sources.iter().enumerate() {
            let at = format!("sources[{i}]");
            check_id(f, &at, &s.id)?;
            if !seen.insert(s.id.as_str()) {
                return Err(ConfigError::invalid(
                    f,
                    format!("{at}.id"),
                    &s.id,
                    "duplicate source id (objects would overwrite each other)",
                ));
            }
            validate_source(f, &at, s)?;
        }
        let mut seen = HashSet::new();
        for (i, d) in self.destinations.iter().enumerate() {
            let at = format!("destinations[{i}]");
            check_id(f, &at, &d.id)?;
            if !seen.insert(d.id.as_str()) {
                return Err(ConfigError::invalid(
                    f,
                    format!("{at}.id"),
                    &d.id,
                    "duplicate destination id",
                ));
            }
            d.spec.validate().map_err(|i| i.into_error(f, &at))?;
        }
        Ok(())
    }
}

fn check_id(file: &Path, at: &str, id: &str) -> Result<(), ConfigError> {
    let reason = if id.is_empty() {
        Some("must not be empty")
    } else if id == "." || id == ".." {
        Some("must not be . or ..")
    } else if id.contains('/') || id.contains('\\') {
        Some("must not contain / or \\ (it is a folder name at the destination)")
    } else if id.chars().any(char::is_control) {
        Some("must not contain control characters")
    } else {
        None
    };
    match reason {
        Some(r) => Err(ConfigError::invalid(file, format!("{at}.id"), id, r)),
        None => Ok(()),
    }
}

fn validate_source(f: &Path, at: &str, s: &SourceConfig) -> Result<(), ConfigError> {
    if s.protection().is_none() && s.spec.payload() {
        return Err(ConfigError::invalid(
            f,
            format!("{at}.passphrase"),
            "",
            "no passphrase or recipients: set one, or \"compress_only\": 1 to store \
             the backup unencrypted",
        ));
    }
    if s.recipients.iter().any(|r| r.trim().is_empty()) {
        return Err(ConfigError::invalid(
            f,
            format!("{at}.recipients"),
            "",
            "a recipient must not be empty",
        ));
    }
    if let Some(level) = s.compression_level {
        if s.layout == Layout::Custos {
            let reason = match s.compression {
                Compression::Zstd if !(1..=19).contains(&level) => "out of range for zstd: 1-19",
                Compression::Gzip => "only zstd takes a level (gzip is always --fast)",
                Compression::Zstd => "",
            };
            if !reason.is_empty() {
                return Err(ConfigError::invalid(
                    f,
                    format!("{at}.compression_level"),
                    level,
                    reason,
                ));
            }
        }
    }
    s.spec.validate().map_err(|i| i.into_error(f, at))?;
    Ok(())
}

#[cfg(test)]
mod tests;
