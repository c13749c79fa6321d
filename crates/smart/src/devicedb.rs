//! The device database of check_smart_attributes (`check_smartdb.json`): which attributes a
//! drive model has and whether each one's normalized `VALUE` or its `RAW_VALUE` is meaningful.
//!
//! Two shapes of `ID#` entries exist: the current `{"5": {"value": "RAW_VALUE", "comment":
//! ".."}}` and the pre-2019 `{"5": "RAW_VALUE"}`; both are read. (The Python original reads
//! only the old one and fails on today's file.) `Device` entries are model strings matched as
//! regexes anchored at the end, against smartctl's model name and then its model family.

use crate::error::Error;
use custos_kit::config::Strictness;
use regex_lite::Regex;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Which of an attribute's numbers a drive model makes meaningful.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ValueKind {
    /// The normalized value (`VALUE`, 1-253, higher is better).
    #[serde(rename = "VALUE")]
    Value,
    /// The raw value (`RAW_VALUE`, a count or a measurement).
    #[serde(rename = "RAW_VALUE")]
    Raw,
}

/// One `ID#` entry in either shape.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum IdEntry {
    Current { value: ValueKind },
    Old(ValueKind),
}

impl IdEntry {
    fn kind(&self) -> ValueKind {
        match self {
            IdEntry::Current { value } | IdEntry::Old(value) => *value,
        }
    }
}

/// A device block as written in the file (`Threshs` and `Perfs` are read and not used: the
/// format has them, so they are no unknown keys).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    #[serde(rename = "Device")]
    device: Vec<String>,
    #[serde(rename = "ID#")]
    ids: BTreeMap<String, IdEntry>,
    #[serde(default, rename = "Threshs")]
    _threshs: Option<serde_json::Value>,
    #[serde(default, rename = "Perfs")]
    _perfs: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDb {
    #[serde(rename = "Devices")]
    devices: BTreeMap<String, RawDevice>,
}

/// One device block: its name, the model patterns and the attribute kinds.
#[derive(Debug)]
pub struct Entry {
    /// The block's key in the file (`"Samsung SM863"`).
    pub name: String,
    patterns: Vec<Regex>,
    ids: HashMap<u32, ValueKind>,
}

impl Entry {
    /// The kind of attribute `id` for this model, if the DB lists it.
    pub fn kind(&self, id: u32) -> Option<ValueKind> {
        self.ids.get(&id).copied()
    }
}

/// The loaded database.
#[derive(Debug, Default)]
pub struct DeviceDb {
    entries: Vec<Entry>,
}

impl DeviceDb {
    /// Reads and parses `path`.
    pub fn load(path: &Path, strictness: Strictness) -> Result<DeviceDb, Error> {
        let text = custos_kit::config::read(path)?;
        DeviceDb::parse(path, &text, strictness)
    }

    /// Parses a database's text (`file` names it in errors). Unknown keys are warnings (the
    /// original ignored them), errors when `strictness` is strict.
    pub fn parse(file: &Path, text: &str, strictness: Strictness) -> Result<DeviceDb, Error> {
        let raw: RawDb = custos_kit::config::parse_json_with(file, text, strictness)?;
        let mut entries = Vec::with_capacity(raw.devices.len());
        for (name, dev) in raw.devices {
            let mut ids = HashMap::with_capacity(dev.ids.len());
            for (id, e) in &dev.ids {
                let n: u32 = id.trim().parse().map_err(|_| {
                    custos_kit::config::ConfigError::invalid(
                        file,
                        format!("Devices.{name}.ID#"),
                        id,
                        "attribute IDs are numbers",
                    )
                })?;
                ids.insert(n, e.kind());
            }
            let patterns = dev.device.iter().map(|m| model_pattern(m)).collect();
            entries.push(Entry {
                name,
                patterns,
                ids,
            });
        }
        Ok(DeviceDb { entries })
    }

    /// Number of device blocks.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The block for a drive: the first whose pattern matches the end of `model`, else of
    /// `family`. Blocks are tried in name order, so the choice is stable.
    pub fn lookup(&self, model: &str, family: Option<&str>) -> Option<&Entry> {
        let find = |s: &str| {
            self.entries
                .iter()
                .find(|e| e.patterns.iter().any(|p| p.is_match(s)))
        };
        find(model).or_else(|| family.and_then(find))
    }
}

/// `model` as an end-anchored regex; a string that is no valid regex is matched literally.
fn model_pattern(model: &str) -> Regex {
    Regex::new(&format!("(?:{model})$"))
        .or_else(|_| Regex::new(&format!("{}$", regex_lite::escape(model))))
        .unwrap_or_else(|_| Regex::new("$^").expect("valid regex"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_id_shapes_and_end_anchored_models() {
        let db = DeviceDb::parse(
            Path::new("db.json"),
            r#"{"Devices": {
                "New": {"Device": ["SAMSUNG MZ7KM240HAHP-0E005", "ST1\\d+NM"],
                        "ID#": {"5": {"value": "RAW_VALUE", "comment": "x"}, "177": {"value": "VALUE"}},
                        "Threshs": {}, "Perfs": []},
                "Old": {"Device": ["Old Family"], "ID#": {"9": "RAW_VALUE", "1": "VALUE"}}
            }}"#,
            // Strict: every key of the format is known (`Threshs`, `Perfs`, `comment`).
            Strictness::Strict,
        )
        .unwrap();
        assert_eq!(db.len(), 2);
        let e = db.lookup("SAMSUNG MZ7KM240HAHP-0E005", None).unwrap();
        assert_eq!(e.name, "New");
        assert_eq!(e.kind(5), Some(ValueKind::Raw));
        assert_eq!(e.kind(177), Some(ValueKind::Value));
        assert_eq!(e.kind(9), None);
        // End-anchored, not start-anchored; the pattern is a regex.
        assert!(db.lookup("XX ST12NM", None).is_some());
        assert!(db.lookup("ST12NM-extra", None).is_none());
        let old = db.lookup("unknown model", Some("Old Family")).unwrap();
        assert_eq!(old.kind(1), Some(ValueKind::Value));
        assert!(db.lookup("nothing", None).is_none());
    }

    #[test]
    fn the_real_check_smartdb_loads() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../smart-helper/tests/data/check_smartdb.json"
        ));
        // Strict: the file as check_smart_attributes ships it has no key we do not know.
        let db = DeviceDb::load(path, Strictness::Strict).unwrap();
        assert!(db.len() > 80, "{}", db.len());
        // Seagate Exos X16 from the fixture.
        let e = db.lookup("ST16000NM001G-2KK103", Some("Seagate Exos X16"));
        assert!(e.is_none() || e.unwrap().kind(5).is_some());
        let sm863 = db.lookup("SAMSUNG MZ7KM480HAHP-0E005", None).unwrap();
        assert_eq!(sm863.kind(177), Some(ValueKind::Value));
        assert_eq!(sm863.kind(5), Some(ValueKind::Raw));
    }

    #[test]
    fn errors_name_the_file() {
        let e = DeviceDb::parse(
            Path::new("/etc/db.json"),
            r#"{"Devices": {"X": {"Device": []}}}"#,
            Strictness::Warn,
        )
        .unwrap_err();
        assert!(e.to_string().contains("/etc/db.json"), "{e}");
    }

    /// A key nothing reads is a warning (the original ignored it), an error with `--strict`
    /// naming file, key path and the nearest known key.
    #[test]
    fn unknown_keys_warn_or_with_strict_fail() {
        let text =
            r#"{"Devices": {"X": {"Device": ["M"], "ID#": {"5": "RAW_VALUE"}, "Thresh": {}}}}"#;
        let db = DeviceDb::parse(Path::new("/etc/db.json"), text, Strictness::Warn).unwrap();
        assert_eq!(db.len(), 1);
        let e = DeviceDb::parse(Path::new("/etc/db.json"), text, Strictness::Strict)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/etc/db.json") && e.contains("Devices.X.Thresh") && e.contains("Threshs"),
            "{e}"
        );
    }
}
