//! Config loading: one loader for every binary, with errors that name file, key path and value.
//!
//! Config structs are plain serde types (`deny_unknown_fields`); their `validate()` reports
//! semantic problems through [`ConfigError::invalid`], so every message has the same shape:
//! `/etc/x.yaml: clients[0].burp_port: invalid value "0": must be 1-65535`.
//!
//! **One entry point.** A binary loads its file with [`load`] (path, [`Format`], [`Strictness`]);
//! its handlers' entries (typed once their `type` is known) are read through [`Entry`].
//!
//! **Unknown keys.** Every original custos replaces ignores keys it does not read, and their own
//! README examples carry such keys, so [`load`] treats a key nothing reads as a warning naming
//! file, key path and the nearest known key (returned for the caller to report with
//! [`check_unknown`]), and the program runs; [`Strictness::Strict`] (a binary's `--strict`)
//! makes it an error. Keep `deny_unknown_fields` on config structs: the loader learns
//! the known sibling keys from serde's "unknown field" error, drops the key and deserializes
//! again. Keys skipped by structs without it are still found (`serde_ignored`), without a
//! nearest key. Handler entries deserialized on their own ([`Entry::take`]) collect theirs the
//! same way. A nearest key is offered only when it is close: a far-off hint sends the user the
//! wrong way.
//!
//! **Missing keys.** serde's "missing field" hides the cause; the loader names it: a close
//! unknown key at the same place is the typo ([`ConfigError::misspelt`]), a key of that name
//! elsewhere was indented into the wrong mapping, and a syntax error further down (a broken
//! indent) is reported instead of the "missing field" the parser met first.

use serde::de::DeserializeOwned;
use std::fmt;
use std::path::{Path, PathBuf};

mod entry;
mod missing;
mod secret;
mod unknown;
pub mod values;
pub use entry::{Entry, Invalid, Validate};
pub use secret::Secret;
use unknown::nearest_hint;
pub use unknown::{
    check_unknown, nearest_known, parse_json_lenient, parse_json_with, parse_yaml_lenient,
    Strictness, UnknownKey,
};

/// A config file could not be read, parsed or validated.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("{file}: cannot read config: {source}")]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid YAML/JSON or does not match the schema.
    #[error("{file}: {key}{message}")]
    Parse {
        file: PathBuf,
        /// Key path such as `clients[0].burp_port`, followed by `: ` when non-empty.
        key: KeyPrefix,
        message: String,
    },
    /// A key nothing reads, in strict mode (otherwise it is only a warning).
    #[error("{file}: {key}: unknown key{}", nearest_hint(nearest))]
    UnknownKey {
        file: PathBuf,
        /// Key path such as `sources[0].path`.
        key: String,
        /// The known key at the same place whose name is closest, when known.
        nearest: Option<String>,
    },
    /// The file parsed but a value is not acceptable.
    #[error("{file}: {key}: invalid value {value:?}: {reason}")]
    Invalid {
        file: PathBuf,
        key: String,
        /// The offending value; callers pass `"<secret>"` for secrets.
        value: String,
        reason: String,
    },
}

/// A key path printed as `path: `, or nothing for the document root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPrefix(pub String);

impl fmt::Display for KeyPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() || self.0 == "." {
            Ok(())
        } else {
            write!(f, "{}: ", self.0)
        }
    }
}

impl ConfigError {
    /// A semantic error found by a `validate()` step.
    pub fn invalid(
        file: impl Into<PathBuf>,
        key: impl Into<String>,
        value: impl fmt::Display,
        reason: impl Into<String>,
    ) -> Self {
        ConfigError::Invalid {
            file: file.into(),
            key: key.into(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    /// A required key (`wanted`) is missing and an unknown key (`typo`, at key path `key`,
    /// on `line` of the file when known) looks like it: name both, the typo first.
    pub fn misspelt(
        file: impl Into<PathBuf>,
        key: impl Into<String>,
        typo: &str,
        wanted: &str,
        line: Option<usize>,
    ) -> Self {
        let line = line.map(|l| format!(" (line {l})")).unwrap_or_default();
        ConfigError::Parse {
            file: file.into(),
            key: KeyPrefix(key.into()),
            message: format!(
                "unknown key `{typo}`{line}, did you mean `{wanted}`? (`{wanted}` is required)"
            ),
        }
    }

    /// The required key a "missing field" error is about (for callers that know more keys of
    /// the mapping than the part that failed, and look for its typo there).
    pub fn missing_key(&self) -> Option<&str> {
        match self {
            ConfigError::Parse { message, .. } => missing::missing_field(message),
            _ => None,
        }
    }

    /// The key path the error is about, if any (used by tests and callers that re-word errors).
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Parse { key, .. } => Some(&key.0),
            ConfigError::UnknownKey { key, .. } => Some(key),
            ConfigError::Invalid { key, .. } => Some(key),
        }
    }
}

/// Reads a whole config file, mapping I/O errors to [`ConfigError::Read`].
pub fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        file: path.to_owned(),
        source,
    })
}

/// Parses YAML text (already read from `file`) into `T`, naming the failing key path.
pub fn parse_yaml<T: DeserializeOwned>(file: &Path, text: &str) -> Result<T, ConfigError> {
    let de = yaml_serde::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        // A document broken further down (a bad indent) can fail as "missing field" before
        // the parser reaches the broken line: the syntax error is the cause.
        if let Err(syntax) = yaml_serde::from_str::<yaml_serde::Value>(text) {
            return ConfigError::Parse {
                file: file.to_owned(),
                key: KeyPrefix(String::new()),
                message: syntax.to_string(),
            };
        }
        let key = e.path().to_string();
        let message = e.into_inner().to_string();
        // The YAML parser already prefixes some messages with the path; say it once.
        let message = match message.strip_prefix(&format!("{key}: ")) {
            Some(rest) => rest.to_string(),
            None => message,
        };
        ConfigError::Parse {
            file: file.to_owned(),
            key: KeyPrefix(key),
            message: unknown::plain_types(&message),
        }
    })
}

/// Parses JSON text (already read from `file`) into `T`, naming the failing key path.
pub fn parse_json<T: DeserializeOwned>(file: &Path, text: &str) -> Result<T, ConfigError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        // As for YAML: a syntax error further down is the cause of an earlier "missing field".
        if let Err(syntax) = serde_json::from_str::<serde_json::Value>(text) {
            return ConfigError::Parse {
                file: file.to_owned(),
                key: KeyPrefix(String::new()),
                message: syntax.to_string(),
            };
        }
        ConfigError::Parse {
            file: file.to_owned(),
            key: KeyPrefix(e.path().to_string()),
            message: unknown::plain_types(&e.into_inner().to_string()),
        }
    })?;
    de.end().map_err(|e| ConfigError::Parse {
        file: file.to_owned(),
        key: KeyPrefix(String::new()),
        message: e.to_string(),
    })?;
    Ok(value)
}

/// The format of a config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
}

/// A config file as [`load`] read it.
#[derive(Debug)]
pub struct Loaded<T> {
    pub value: T,
    /// The file's text, for the lines of errors found by later checks.
    pub text: String,
    /// Keys nothing read, for the caller to report with [`check_unknown`] (with
    /// [`Strictness::Warn`]; [`Strictness::Strict`] made the first one an error already).
    pub unknown: Vec<UnknownKey>,
}

/// The one way a binary loads its config file: read it, parse it with errors that name file,
/// key path and value, and decide about the keys nothing reads. The keys are returned rather
/// than logged, because a binary may set up its log from the file, or find more such keys in
/// checks of its own (then it passes `Warn` here and decides after them).
pub fn load<T: DeserializeOwned>(
    path: &Path,
    format: Format,
    strictness: Strictness,
) -> Result<Loaded<T>, ConfigError> {
    let text = read(path)?;
    let (value, unknown) = match format {
        Format::Yaml => parse_yaml_lenient(path, &text)?,
        Format::Json => parse_json_lenient(path, &text)?,
    };
    if strictness == Strictness::Strict {
        check_unknown(path, &unknown, strictness)?;
    }
    Ok(Loaded {
        value,
        text,
        unknown,
    })
}

/// Logs a warning when a file that holds secrets can be read by group or others.
///
/// Returns whether the warning was given, so tests can check it.
pub fn warn_if_readable_by_others(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode();
            if mode & 0o044 != 0 {
                tracing::warn!(
                    file = %path.display(),
                    mode = format_args!("{:o}", mode & 0o777),
                    "config holds secrets but is readable by group/others; chmod 600 it"
                );
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Server {
        name: String,
        port: u16,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Root {
        servers: Vec<Server>,
    }

    #[test]
    fn yaml_error_names_key_path() {
        let err = parse_yaml::<Root>(
            Path::new("/etc/x.yaml"),
            "servers:\n  - name: a\n    port: 70000\n",
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("/etc/x.yaml: servers[0].port: "), "{msg}");
        assert!(msg.contains("70000"), "{msg}");
    }

    #[test]
    fn yaml_unknown_key_is_an_error() {
        let err = parse_yaml::<Root>(
            Path::new("f.yaml"),
            "servers:\n  - name: a\n    port: 1\n    colour: red\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
        assert_eq!(err.key(), Some("servers[0].colour"));
    }

    #[test]
    fn yaml_duplicate_key_named_once() {
        let err = parse_yaml::<Root>(
            Path::new("d.yaml"),
            "servers:\n  - name: a\n    port: 1\n    port: 2\n",
        )
        .unwrap_err();
        let msg = err.to_string();
        assert_eq!(msg.matches("servers[0]").count(), 1, "{msg}");
        assert!(msg.contains("duplicate"), "{msg}");
    }

    #[test]
    fn json_error_names_key_path() {
        let err =
            parse_json::<Root>(Path::new("j.json"), r#"{"servers":[{"name":"a"}]}"#).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("servers[0]"), "{msg}");
        assert!(msg.contains("missing field `port`"), "{msg}");
    }

    #[test]
    fn json_syntax_error_after_a_missing_field_is_the_one_reported() {
        // serde_json meets the end of servers[0] (no `port`) before the broken line.
        let err = parse_json::<Root>(
            Path::new("j.json"),
            "{\"servers\": [{\"name\": \"a\"}]\n \"x\" }",
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(!msg.contains("missing field"), "{msg}");
        assert!(msg.contains("line 2"), "{msg}");
        let err = parse_json_lenient::<Root>(
            Path::new("j.json"),
            "{\"servers\": [{\"name\": \"a\"}]\n \"x\" }",
        )
        .unwrap_err();
        assert!(!err.to_string().contains("missing field"), "{err}");
        let err = parse_json::<Root>(
            Path::new("j.json"),
            r#"{"servers":[{"name":"a","port":"x"}]}"#,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("expected a whole number 0-65535"),
            "{err}"
        );
    }

    /// `load` reads the file in its format; a key nothing reads is returned with its nearest
    /// known key, or is the error when strict.
    #[test]
    fn load_reads_either_format_and_decides_unknown_keys() {
        let dir = std::env::temp_dir().join(format!("custos-kit-load-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let yaml = dir.join("c.yaml");
        std::fs::write(
            &yaml,
            "servers:
  - name: a
    port: 1
    prot: 2
",
        )
        .unwrap();
        let l = load::<Root>(&yaml, Format::Yaml, Strictness::Warn).unwrap();
        assert_eq!(l.value.servers[0].port, 1);
        assert_eq!(l.text, std::fs::read_to_string(&yaml).unwrap());
        let keys: Vec<_> = l
            .unknown
            .iter()
            .map(|k| (k.key.as_str(), k.nearest.as_deref()))
            .collect();
        assert_eq!(keys, [("servers[0].prot", Some("port"))]);
        let e = load::<Root>(&yaml, Format::Yaml, Strictness::Strict).unwrap_err();
        assert_eq!(e.key(), Some("servers[0].prot"));
        let json = dir.join("c.json");
        std::fs::write(&json, r#"{"servers":[{"name":"a","port":"x"}]}"#).unwrap();
        let e = load::<Root>(&json, Format::Json, Strictness::Warn).unwrap_err();
        assert!(e.to_string().contains("servers[0].port"), "{e}");
        let e = load::<Root>(&dir.join("none.yaml"), Format::Yaml, Strictness::Warn).unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn invalid_names_file_key_value() {
        let e = ConfigError::invalid("/c.yaml", "clients[1].burp_port", 0, "must be 1-65535");
        assert_eq!(
            e.to_string(),
            "/c.yaml: clients[1].burp_port: invalid value \"0\": must be 1-65535"
        );
    }
}
