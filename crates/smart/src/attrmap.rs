//! The attribute mapping: which ATA attribute becomes which `smart_<name>` metric.
//!
//! Format of the original: `{"generic": [{"id": 5, "match": "regex", "name": "...",
//! "type": "counter|gauge"}]}`; `match` is optional and, as Python's `re.match`, anchored at the
//! start of the attribute name. The first rule for an ID whose `match` fits wins.

use crate::error::Error;
use custos_kit::config::{ConfigError, Strictness};
use regex_lite::Regex;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// The mapping shipped with the exporter (the original's `attrmap.json`).
pub const DEFAULT: &str = include_str!("../data/attrmap.json");

/// Prometheus type of a mapped metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Gauge,
    Counter,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: u32,
    #[serde(default, rename = "match")]
    matcher: Option<String>,
    name: String,
    #[serde(rename = "type")]
    kind: Kind,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMap {
    #[serde(default)]
    generic: Vec<RawRule>,
    /// Known to the original but never implemented there; accepted and ignored.
    #[serde(default, rename = "per-device")]
    _per_device: Option<serde_json::Value>,
}

/// One rule.
#[derive(Debug)]
pub struct Rule {
    matcher: Option<Regex>,
    /// Metric name without the `smart_` prefix (`reallocated_sectors_total`).
    pub name: String,
    pub kind: Kind,
}

/// The loaded mapping.
#[derive(Debug, Default)]
pub struct AttrMap {
    rules: BTreeMap<u32, Vec<Rule>>,
}

impl AttrMap {
    /// The built-in mapping.
    pub fn builtin() -> AttrMap {
        AttrMap::parse(
            Path::new("<built-in attrmap.json>"),
            DEFAULT,
            Strictness::Strict,
        )
        .expect("the built-in mapping is valid")
    }

    /// Reads and parses `path`.
    pub fn load(path: &Path, strictness: Strictness) -> Result<AttrMap, Error> {
        let text = custos_kit::config::read(path)?;
        AttrMap::parse(path, &text, strictness)
    }

    /// Parses a mapping (`file` names it in errors). Unknown keys are warnings naming the
    /// nearest known key, as the original warns, or errors when `strictness` is strict.
    pub fn parse(file: &Path, text: &str, strictness: Strictness) -> Result<AttrMap, Error> {
        let raw: RawMap = custos_kit::config::parse_json_with(file, text, strictness)?;
        let mut rules: BTreeMap<u32, Vec<Rule>> = BTreeMap::new();
        let mut names: BTreeMap<String, Kind> = BTreeMap::new();
        for (i, r) in raw.generic.into_iter().enumerate() {
            let key = |k: &str| format!("generic[{i}].{k}");
            let valid_name = !r.name.is_empty()
                && !r.name.starts_with(|c: char| c.is_ascii_digit())
                && r.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid_name {
                return Err(ConfigError::invalid(
                    file,
                    key("name"),
                    &r.name,
                    "letters, digits and _ only (the smart_ prefix is added)",
                )
                .into());
            }
            if names
                .insert(r.name.clone(), r.kind)
                .is_some_and(|k| k != r.kind)
            {
                return Err(ConfigError::invalid(
                    file,
                    key("type"),
                    format!("{:?}", r.kind),
                    "another rule gives this name the other type",
                )
                .into());
            }
            let matcher = match r.matcher.as_deref().filter(|m| !m.is_empty()) {
                None => None,
                Some(m) => Some(
                    Regex::new(&format!("^(?:{m})"))
                        .map_err(|e| ConfigError::invalid(file, key("match"), m, e.to_string()))?,
                ),
            };
            rules.entry(r.id).or_default().push(Rule {
                matcher,
                name: r.name,
                kind: r.kind,
            });
        }
        Ok(AttrMap { rules })
    }

    /// The rule for attribute `id` named `name`, if any.
    pub fn lookup(&self, id: u32, name: &str) -> Option<&Rule> {
        self.rules
            .get(&id)?
            .iter()
            .find(|r| r.matcher.as_ref().is_none_or(|m| m.is_match(name)))
    }

    /// Every metric name and type the mapping can produce, each once.
    pub fn metrics(&self) -> BTreeMap<&str, Kind> {
        self.rules
            .values()
            .flatten()
            .map(|r| (r.name.as_str(), r.kind))
            .collect()
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key nothing reads is a warning, as the original warns; an error with `--strict`.
    #[test]
    fn unknown_keys_warn_or_with_strict_fail() {
        let text = r#"{"generic": [{"id": 5, "name": "x", "type": "gauge", "comment": "c"}]}"#;
        let m = AttrMap::parse(Path::new("m.json"), text, Strictness::Warn).unwrap();
        assert_eq!(m.len(), 1);
        let e = AttrMap::parse(Path::new("m.json"), text, Strictness::Strict)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("m.json") && e.contains("generic[0].comment"),
            "{e}"
        );
    }

    #[test]
    fn builtin_rules() {
        let m = AttrMap::builtin();
        assert_eq!(m.len(), 16);
        let r = m.lookup(5, "Reallocated_Sector_Ct").unwrap();
        assert_eq!(
            (r.name.as_str(), r.kind),
            ("reallocated_sectors_total", Kind::Counter)
        );
        assert_eq!(
            m.lookup(194, "Temperature_Celsius").unwrap().kind,
            Kind::Gauge
        );
        // `match` is anchored at the start like Python's re.match.
        assert!(m.lookup(241, "Total_LBAs_Written").is_some());
        assert!(m.lookup(241, "Lifetime_Writes_GiB").is_none());
        assert!(m.lookup(183, "Runtime_Bad_Block").is_some());
        assert!(m.lookup(183, "SATA_Downshift_Count").is_none());
        assert!(m.lookup(9, "Power_On_Hours").is_none());
    }

    #[test]
    fn bad_rules_name_their_key() {
        let bad = [
            (
                r#"{"generic":[{"id":5,"name":"a-b","type":"gauge"}]}"#,
                "generic[0].name",
            ),
            (
                r#"{"generic":[{"id":5,"name":"a","type":"gauge","match":"("}]}"#,
                "generic[0].match",
            ),
            (
                r#"{"generic":[{"id":5,"name":"a","type":"gauge"},{"id":6,"name":"a","type":"counter"}]}"#,
                "generic[1].type",
            ),
            (
                r#"{"generic":[{"id":5,"name":"a","type":"histogram"}]}"#,
                "generic[0].type",
            ),
        ];
        for (text, key) in bad {
            let e = AttrMap::parse(Path::new("m.json"), text, Strictness::Warn).unwrap_err();
            assert!(e.to_string().contains(key), "{e}");
        }
        let ok = AttrMap::parse(
            Path::new("m.json"),
            r#"{"generic":[], "per-device": []}"#,
            Strictness::Strict,
        )
        .unwrap();
        assert!(ok.is_empty());
    }
}
