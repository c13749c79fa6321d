//! The bodies of the fuzz targets of `fuzz/` (cargo-fuzz, nightly) for what smartctl and the
//! exporter's table files give it, shared with the tests that run their corpora on stable Rust.
//! Each takes arbitrary bytes, must not panic (release builds abort), and checks an invariant
//! where that is cheap.

use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use custos_kit::config::Strictness;
use custos_smart_wire::{DeviceReport, Outcome, Scan, Source, Summary};
use serde_json::value::RawValue;

use crate::attrmap::AttrMap;
use crate::devicedb::DeviceDb;
use crate::metrics;
use crate::state::State;

/// A device DB with one end-anchored model pattern, as check_smartdb.json has them.
fn device_db() -> &'static DeviceDb {
    static DB: OnceLock<DeviceDb> = OnceLock::new();
    DB.get_or_init(|| {
        let text = r#"{"Devices": {"Fuzz": {"Device": ["^Samsung SSD 8.0 .*$"],
            "ID#": {"5": {"value": "RAW_VALUE"}, "177": "VALUE"}}}}"#;
        DeviceDb::parse(Path::new("fuzz-db.json"), text, Strictness::Strict)
            .expect("the fuzz device DB parses")
    })
}

fn attr_map() -> &'static AttrMap {
    static MAP: OnceLock<AttrMap> = OnceLock::new();
    MAP.get_or_init(AttrMap::builtin)
}

/// `smartctl_json`: one device's `smartctl --json` document, as the helper forwards it (any
/// JSON). Every family it makes has a valid metric name and valid label names, and no label set
/// twice (Prometheus rejects such a scrape).
pub fn smartctl_json(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The helper forwards only documents that are JSON.
    let Ok(raw) = RawValue::from_string(text.to_owned()) else {
        return;
    };
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut state = State::default();
    state.apply_device(
        DeviceReport {
            name: "/dev/sda".into(),
            dev_type: None,
            source: Source::Scan,
            outcome: Outcome::Ok,
            exit_status: Some(0),
            error: None,
            elapsed_ms: 1,
            smartctl: Some(raw),
        },
        now,
    );
    state.finish_sweep(
        Summary {
            helper_version: "fuzz".into(),
            started: 1_700_000_000,
            duration_ms: 1,
            scan: Scan::default(),
            devices: 1,
        },
        now,
        Duration::from_millis(1),
    );
    let families = metrics::families(&state, device_db(), attr_map())
        .into_iter()
        .chain(metrics::age_families(&state, now));
    for f in families {
        assert!(valid_name(&f.name, true), "metric name {:?}", f.name);
        let mut seen = std::collections::HashSet::new();
        for (labels, _) in &f.samples {
            for (k, _) in labels {
                assert!(valid_name(k, false), "{}: label name {k:?}", f.name);
            }
            assert!(
                seen.insert(labels),
                "{}: label set {labels:?} twice",
                f.name
            );
        }
    }
}

/// Prometheus' name rule: `[a-zA-Z_:][a-zA-Z0-9_:]*` (no `:` in label names).
fn valid_name(name: &str, colon: bool) -> bool {
    let ok = |c: char, first: bool| {
        c.is_ascii_alphabetic() || c == '_' || (colon && c == ':') || (!first && c.is_ascii_digit())
    };
    let mut chars = name.chars();
    chars.next().is_some_and(|c| ok(c, true)) && chars.all(|c| ok(c, false))
}

/// `smart_tables`: a device DB (`--smartdb`, check_smart_attributes' format) or an attribute
/// map (`--attrmap`); both are JSON files read at start. Each ends in a table or an error whose
/// message can be printed.
pub fn tables(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match DeviceDb::parse(Path::new("smartdb.json"), text, Strictness::Warn) {
        Ok(db) => drop(db.lookup("Samsung SSD 860 EVO 500GB", Some("Samsung based SSDs"))),
        Err(e) => drop(e.to_string()),
    }
    match AttrMap::parse(Path::new("attrmap.json"), text, Strictness::Warn) {
        Ok(map) => drop(map.lookup(5, "Reallocated_Sector_Ct")),
        Err(e) => drop(e.to_string()),
    }
}

/// Each target's corpus (`fuzz/corpus/<target>/`) as a test on stable.
#[cfg(test)]
mod tests {
    custos_testkit::corpus_tests! {
        smartctl_json => super::smartctl_json,
        smart_tables => super::tables,
    }
}
