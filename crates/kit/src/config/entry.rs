//! What a handler's module sees of its config file: the keys of its entry ([`Entry`]), the
//! checks serde cannot express ([`Validate`]) and how it rejects a value ([`Invalid`]). Every
//! binary's handlers (backup's sources, destinations and notifiers, haproxy's sinks) are built
//! from these, so adding a handler is the same in each.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::fmt;
use std::path::Path;

use super::missing::{key_line, missing_field};
use super::unknown::{from_json_value, nearest_known};
use super::{ConfigError, KeyPrefix, UnknownKey};

/// A value a handler's config rejects: the key (relative to the entry), the value as shown
/// (never a secret), and why. Turned into a [`ConfigError`] naming the entry's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub key: String,
    pub value: String,
    pub reason: String,
}

impl Invalid {
    pub fn new(key: &str, value: impl fmt::Display, reason: impl Into<String>) -> Self {
        Invalid {
            key: key.to_owned(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    /// The error for the entry at `at` in `file`.
    pub fn into_error(self, file: &Path, at: &str) -> ConfigError {
        ConfigError::invalid(file, format!("{at}.{}", self.key), self.value, self.reason)
    }
}

/// The checks of a handler's config that serde cannot express (empty paths, patterns).
pub trait Validate {
    fn validate(&self) -> Result<(), Invalid> {
        Ok(())
    }
}

/// The keys of one entry's type, and where they come from: what each handler's module
/// deserializes its config from (errors name the path; unknown keys are collected).
pub struct Entry<'a> {
    pub file: &'a Path,
    /// Key path of the entry, `sources[2]`.
    pub at: &'a str,
    pub keys: Map<String, Value>,
    /// Keys every entry of this kind has (for "nearest known key" hints).
    pub common_keys: &'static [&'static str],
    pub unknown: &'a mut Vec<UnknownKey>,
}

impl<'a> Entry<'a> {
    /// Opens one entry of a list (a source, a sink): the keys every entry of its kind has,
    /// deserialized as `C`, and the entry holding the keys of its type for the type's own
    /// config to [`Entry::take`].
    pub fn open<C: DeserializeOwned>(
        file: &'a Path,
        at: &'a str,
        value: Value,
        common_keys: &'static [&'static str],
        unknown: &'a mut Vec<UnknownKey>,
    ) -> Result<(C, Entry<'a>), ConfigError> {
        let (shared, keys) = split(file, at, value, common_keys)?;
        let c = common(file, at, shared, &keys, unknown)?;
        Ok((
            c,
            Entry {
                file,
                at,
                keys,
                common_keys,
                unknown,
            },
        ))
    }
}

impl Entry<'_> {
    /// Deserializes the type's keys.
    pub fn take<T: DeserializeOwned>(self) -> Result<T, ConfigError> {
        typed(
            self.file,
            self.at,
            self.keys,
            self.common_keys,
            self.unknown,
        )
    }

    /// [`Entry::take`] for an entry read from a YAML file's `text` and typed after the whole
    /// file was parsed (so serde's own position is gone): a value of the wrong type is
    /// reported at its key's line, when exactly one line of the file holds that key.
    pub fn take_in<T: DeserializeOwned>(self, text: &str) -> Result<T, ConfigError> {
        self.take().map_err(|e| match e {
            ConfigError::Parse { file, key, message }
                if missing_field(&message).is_none()
                    && !message.starts_with("unknown key")
                    && !message.contains(" at line ") =>
            {
                let name = key.0.rsplit('.').next().unwrap_or_default();
                let message = match key_line(Some(text), name) {
                    Some(line) => format!("{message} at line {line}"),
                    None => message,
                };
                ConfigError::Parse { file, key, message }
            }
            e => e,
        })
    }
}

/// The keys an entry shares with every entry of its kind, and the keys of its type.
type Parts = (Map<String, Value>, Map<String, Value>);

/// Splits an entry into the keys all entries share and the keys of its type.
fn split(file: &Path, at: &str, value: Value, common_keys: &[&str]) -> Result<Parts, ConfigError> {
    let Value::Object(map) = value else {
        return Err(ConfigError::Parse {
            file: file.to_owned(),
            key: KeyPrefix(at.to_owned()),
            message: "expected an object".into(),
        });
    };
    let (common, specific): (Map<_, _>, Map<_, _>) = map
        .into_iter()
        .partition(|(k, _)| common_keys.contains(&k.as_str()));
    Ok((common, specific))
}

/// Deserializes the keys every entry of a kind has; a required one that is missing while a
/// key of the type's part (`others`) looks like it is reported as that typo (`tpye`).
fn common<T: DeserializeOwned>(
    file: &Path,
    at: &str,
    map: Map<String, Value>,
    others: &Map<String, Value>,
    unknown: &mut Vec<UnknownKey>,
) -> Result<T, ConfigError> {
    from_map(file, at, map, unknown).map_err(|e| {
        let Some(wanted) = e.missing_key() else {
            return e;
        };
        match nearest_known(wanted, others.keys().map(String::as_str)) {
            Some(typo) => ConfigError::misspelt(file, format!("{at}.{typo}"), typo, wanted, None),
            None => e,
        }
    })
}

/// Deserializes part of an entry, prefixing the entry's path to any error and to the keys
/// nothing reads (added to `unknown`).
fn from_map<T: DeserializeOwned>(
    file: &Path,
    at: &str,
    map: Map<String, Value>,
    unknown: &mut Vec<UnknownKey>,
) -> Result<T, ConfigError> {
    let (value, keys) = from_json_value(file, at, Value::Object(map))?;
    unknown.extend(keys);
    Ok(value)
}

/// [`from_map`] for the keys of an entry's type: the nearest known key of an unknown one is
/// looked for among the keys every entry has, too (`retention_cpoies` is near
/// `retention_copies`, not `path`).
fn typed<T: DeserializeOwned>(
    file: &Path,
    at: &str,
    map: Map<String, Value>,
    common_keys: &[&str],
    unknown: &mut Vec<UnknownKey>,
) -> Result<T, ConfigError> {
    let first = unknown.len();
    let value = from_map(file, at, map, unknown)?;
    for k in &mut unknown[first..] {
        let Some(name) = k.key.strip_prefix(at).and_then(|r| r.strip_prefix('.')) else {
            continue;
        };
        let candidates = common_keys.iter().copied().chain(k.nearest.as_deref());
        k.nearest = nearest_known(name, candidates).map(str::to_owned);
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Gelf {
        #[serde(deserialize_with = "crate::config::values::port")]
        port: Option<u16>,
        host: String,
    }

    fn take(keys: Value, text: &str) -> Result<Gelf, ConfigError> {
        let mut unknown = Vec::new();
        let Value::Object(keys) = keys else {
            panic!("an object")
        };
        Entry {
            file: Path::new("c.yml"),
            at: "backends.g",
            keys,
            common_keys: &["type"],
            unknown: &mut unknown,
        }
        .take_in(text)
    }

    /// An entry typed after the file was parsed has no parser position: the key's line stands
    /// in, when one line alone holds that key; a missing key's message is left as it is.
    #[test]
    fn take_in_names_the_line_of_a_bad_value() {
        let text = "backends:\n  g:\n    type: gelf\n    port: [1]\n    host: h\n";
        let e = take(serde_json::json!({"port": [1], "host": "h"}), text).unwrap_err();
        assert_eq!(
            e.to_string(),
            "c.yml: backends.g.port: invalid type: sequence, expected a port 1-65535 at line 4"
        );
        let twice = format!("{text}  h:\n    port: 2\n");
        let e = take(serde_json::json!({"port": [1], "host": "h"}), &twice).unwrap_err();
        assert!(!e.to_string().contains("line"), "{e}");
        let e = take(serde_json::json!({"port": 1}), text).unwrap_err();
        assert_eq!(e.to_string(), "c.yml: backends.g: missing field `host`");
    }
}
