//! From [`State`] to metric families: the original's names and labels, then the additions.
//!
//! Families are built once per refresh (a scrape only encodes them); the data ages, which
//! change with the clock, are built per scrape by [`age_families`].

use crate::attrmap::{self, AttrMap};
use crate::devicedb::{DeviceDb, ValueKind};
use crate::model::Doc;
use crate::state::{Drive, State};
use custos_kit::families::unix_seconds;
use std::collections::HashMap;
use std::time::SystemTime;

/// A label set: `(name, value)` pairs.
pub type Labels = Vec<(String, String)>;

/// Prometheus type of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    /// Named without `_total` here; the encoder appends it.
    Counter,
}

/// One metric family with its samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: String,
    pub help: String,
    pub kind: Kind,
    pub samples: Vec<(Labels, f64)>,
}

/// Names the exporter itself uses (without `smart_`), which the attribute map may not take.
pub const BUILTIN_PREFIXES: [&str; 8] = [
    "system_error",
    "access_error",
    "metric_error",
    "device_",
    "nvme_",
    "scsi_",
    "refresh",
    "smartctl_",
];

/// Whether a mapped name (without `smart_`) would collide with the exporter's own families.
pub fn is_reserved(name: &str) -> bool {
    let base = name.strip_suffix("_total").unwrap_or(name);
    BUILTIN_PREFIXES.iter().any(|p| base.starts_with(p))
        || base == "data_age_seconds"
        || base == "power_mode"
}

/// smartctl exit-status bits (smartctl(8), "RETURN VALUES").
pub const EXIT_BITS: [&str; 8] = [
    "command_line_error",
    "device_open_failed",
    "command_failed",
    "disk_failing",
    "prefail_threshold_exceeded",
    "threshold_exceeded_in_past",
    "error_log_has_errors",
    "self_test_log_has_errors",
];

/// Families in insertion order, each label set once.
#[derive(Default)]
struct Builder {
    families: Vec<Family>,
    index: HashMap<String, usize>,
}

impl Builder {
    fn add(&mut self, name: &str, help: &str, kind: Kind, labels: Labels, value: f64) {
        let i = *self.index.entry(name.to_string()).or_insert_with(|| {
            self.families.push(Family {
                name: name.to_string(),
                help: help.to_string(),
                kind,
                samples: Vec::new(),
            });
            self.families.len() - 1
        });
        let f = &mut self.families[i];
        if !f.samples.iter().any(|(l, _)| *l == labels) {
            f.samples.push((labels, value));
        }
    }

    fn gauge(&mut self, name: &str, help: &str, labels: &Labels, value: f64) {
        self.add(name, help, Kind::Gauge, labels.clone(), value);
    }

    fn counter(&mut self, name: &str, help: &str, labels: &Labels, value: f64) {
        self.add(name, help, Kind::Counter, labels.clone(), value);
    }
}

fn l(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Every family that changes only with a refresh.
pub fn families(state: &State, db: &DeviceDb, map: &AttrMap) -> Vec<Family> {
    let mut b = Builder::default();
    let none = Labels::new();
    b.gauge(
        "smart_system_error",
        "flag indicating that there is a problem with the helper daemon",
        &none,
        f64::from(u8::from(state.system_error)),
    );
    // The original's per-port flags first, for every drive the helper listed.
    for d in &state.drives {
        let port = l(&[("port", &d.port)]);
        b.gauge(
            "smart_access_error",
            "flag indicating that there is a problem accessing the device",
            &port,
            f64::from(u8::from(d.access_error())),
        );
    }
    let mut metric_errors = Vec::new();
    for d in &state.drives {
        metric_errors.push(drive_families(&mut b, d, db, map));
    }
    for (d, err) in state.drives.iter().zip(metric_errors) {
        b.gauge(
            "smart_metric_error",
            "flag indicating that there is a problem converting metrics from the device",
            &l(&[("port", &d.port)]),
            f64::from(u8::from(err)),
        );
    }
    for d in &state.drives {
        read_families(&mut b, d);
    }
    refresh_families(&mut b, state);
    b.families
}

/// The age of each drive's data (per scrape).
pub fn age_families(state: &State, now: SystemTime) -> Vec<Family> {
    let mut b = Builder::default();
    for d in &state.drives {
        if let Some((_, at)) = &d.good {
            let age = now.duration_since(*at).unwrap_or_default().as_secs_f64();
            b.gauge(
                "smart_device_data_age_seconds",
                "seconds since this drive's values were read (kept while it sleeps or fails)",
                &l(&[("port", &d.port)]),
                age,
            );
        }
    }
    if let Some(t) = state.last_refresh {
        b.gauge(
            "smart_refresh_age_seconds",
            "seconds since the exporter last asked the helper",
            &Labels::new(),
            now.duration_since(t).unwrap_or_default().as_secs_f64(),
        );
    }
    b.families
}

/// Mapped attributes and the additions for one drive with data; returns whether any mapped
/// attribute could not be converted (the original's `smart_metric_error`).
fn drive_families(b: &mut Builder, d: &Drive, db: &DeviceDb, map: &AttrMap) -> bool {
    let Some((doc, _)) = &d.good else {
        return false;
    };
    let model = doc.model().unwrap_or("unknown");
    let family = doc.model_family.as_deref().unwrap_or("unknown");
    let serial = doc.serial_number.as_deref().unwrap_or("unknown");
    let labels = l(&[
        ("port", &d.port),
        ("model", model),
        ("family", family),
        ("serial", serial),
    ]);
    let mut metric_error = false;
    let entry = db.lookup(model, doc.model_family.as_deref());
    for a in doc.ata_smart_attributes.iter().flat_map(|t| &t.table) {
        let Some(rule) = map.lookup(a.id, &a.name) else {
            continue;
        };
        // As the original: a mapped attribute the DB does not know for this model is a
        // conversion problem; unlike it, we still export the raw value.
        let kind = match entry.and_then(|e| e.kind(a.id)) {
            Some(k) => k,
            None => {
                tracing::debug!(port = %d.port, model, id = a.id, "attribute not in the device DB; using its raw value");
                metric_error = true;
                ValueKind::Raw
            }
        };
        let value = match kind {
            ValueKind::Value => a.value,
            ValueKind::Raw => a.raw.as_ref().and_then(|r| r.number()),
        };
        let Some(v) = value else {
            metric_error = true;
            continue;
        };
        let help = format!("S.M.A.R.T. metric based on attribute {}", a.name);
        match rule.kind {
            attrmap::Kind::Gauge => {
                b.gauge(&format!("smart_{}", rule.name), &help, &labels, v as f64)
            }
            attrmap::Kind::Counter if v >= 0 => {
                let name = rule.name.strip_suffix("_total").unwrap_or(&rule.name);
                b.counter(&format!("smart_{name}"), &help, &labels, v as f64)
            }
            attrmap::Kind::Counter => metric_error = true,
        }
    }
    device_families(b, doc, &labels);
    metric_error
}

/// Health, info, temperature, hours, cycles, logs, NVMe and SCSI counters.
fn device_families(b: &mut Builder, doc: &Doc, labels: &Labels) {
    let mut info = labels.clone();
    let dev = doc.device.as_ref();
    for (k, v) in [
        (
            "firmware",
            doc.firmware_version
                .as_deref()
                .or(doc.scsi_revision.as_deref()),
        ),
        ("protocol", dev.and_then(|d| d.protocol.as_deref())),
        ("type", dev.and_then(|d| d.dev_type.as_deref())),
    ] {
        info.push((k.into(), v.unwrap_or("").into()));
    }
    let wwn = doc
        .wwn
        .as_ref()
        .map(|w| w.hex())
        .or_else(|| doc.logical_unit_id.clone())
        .unwrap_or_default();
    info.push(("wwn".into(), wwn));
    b.gauge(
        "smart_device_info",
        "drive identity (value 1); wwn as in /dev/disk/by-id/wwn-*",
        &info,
        1.0,
    );
    if let Some(bytes) = doc.user_capacity.as_ref().and_then(|c| c.bytes) {
        b.gauge(
            "smart_device_capacity_bytes",
            "user capacity",
            labels,
            bytes as f64,
        );
    }
    if let Some(rpm) = doc.rotation_rate {
        b.gauge(
            "smart_device_rotation_rate_rpm",
            "rotation rate (0 for solid state)",
            labels,
            rpm as f64,
        );
    }
    if let Some(p) = doc.smart_status.as_ref().and_then(|s| s.passed) {
        b.gauge(
            "smart_device_health_passed",
            "overall health self-assessment passed (smart_status.passed)",
            labels,
            f64::from(u8::from(p)),
        );
    }
    if let Some(t) = doc.temperature.as_ref().and_then(|t| t.current) {
        b.gauge(
            "smart_device_temperature_celsius",
            "current drive temperature",
            labels,
            t,
        );
    }
    if let Some(h) = doc.power_on_hours() {
        let minutes = doc
            .power_on_time
            .as_ref()
            .and_then(|p| p.minutes)
            .unwrap_or(0);
        b.gauge(
            "smart_device_power_on_seconds",
            "power-on time",
            labels,
            // In f64: absurd hours or minutes from a drive must not wrap a u64.
            h as f64 * 3600.0 + minutes as f64 * 60.0,
        );
    }
    let cycles = doc
        .power_cycle_count
        .or_else(|| doc.nvme_smart_health_information_log.as_ref()?.power_cycles);
    if let Some(c) = cycles {
        b.counter(
            "smart_device_power_cycles",
            "power cycles",
            labels,
            c as f64,
        );
    }
    if let Some(n) = doc.error_log_count() {
        b.gauge(
            "smart_device_error_log_entries",
            "errors in the drive's error log (ATA error count, NVMe error-log entries)",
            labels,
            n as f64,
        );
    }
    if let Some((passed, at)) = doc.last_self_test() {
        b.gauge(
            "smart_device_selftest_passed",
            "the most recent completed self-test passed",
            labels,
            f64::from(u8::from(passed)),
        );
        if let (Some(at), Some(now)) = (at, doc.power_on_hours()) {
            b.gauge(
                "smart_device_selftest_age_seconds",
                "power-on time since the most recent self-test",
                labels,
                now.saturating_sub(at) as f64 * 3600.0,
            );
        }
    }
    if let Some(n) = &doc.nvme_smart_health_information_log {
        let g = |b: &mut Builder, name: &str, help: &str, v: Option<f64>| {
            if let Some(v) = v {
                b.gauge(name, help, labels, v);
            }
        };
        let c = |b: &mut Builder, name: &str, help: &str, v: Option<u64>| {
            if let Some(v) = v {
                b.counter(name, help, labels, v as f64);
            }
        };
        g(
            b,
            "smart_nvme_critical_warning",
            "NVMe critical warning bits (0 = none)",
            n.critical_warning.map(|v| v as f64),
        );
        g(
            b,
            "smart_nvme_available_spare_percent",
            "NVMe available spare",
            n.available_spare,
        );
        g(
            b,
            "smart_nvme_available_spare_threshold_percent",
            "NVMe available spare threshold",
            n.available_spare_threshold,
        );
        g(
            b,
            "smart_nvme_percentage_used",
            "NVMe estimate of life used, percent (may exceed 100)",
            n.percentage_used,
        );
        c(
            b,
            "smart_nvme_media_errors",
            "NVMe unrecovered data integrity errors",
            n.media_errors,
        );
        // Data units are thousands of 512-byte units.
        c(
            b,
            "smart_nvme_read_bytes",
            "NVMe data read",
            n.data_units_read.map(|u| u.saturating_mul(512_000)),
        );
        c(
            b,
            "smart_nvme_written_bytes",
            "NVMe data written",
            n.data_units_written.map(|u| u.saturating_mul(512_000)),
        );
        c(
            b,
            "smart_nvme_host_read_commands",
            "NVMe read commands",
            n.host_reads,
        );
        c(
            b,
            "smart_nvme_host_write_commands",
            "NVMe write commands",
            n.host_writes,
        );
        c(
            b,
            "smart_nvme_controller_busy_seconds",
            "NVMe controller busy time",
            n.controller_busy_time.map(|m| m.saturating_mul(60)),
        );
        c(
            b,
            "smart_nvme_unsafe_shutdowns",
            "NVMe unsafe shutdowns",
            n.unsafe_shutdowns,
        );
    }
    if let Some(g) = doc.scsi_grown_defect_list {
        b.gauge(
            "smart_scsi_grown_defects",
            "SCSI elements in the grown defect list",
            labels,
            g as f64,
        );
    }
    if let Some(log) = &doc.scsi_error_counter_log {
        for (op, c) in [
            ("read", &log.read),
            ("write", &log.write),
            ("verify", &log.verify),
        ] {
            let Some(c) = c else { continue };
            let mut ol = labels.clone();
            ol.push(("operation".into(), op.into()));
            let mut put = |name: &str, help: &str, v: Option<u64>| {
                if let Some(v) = v {
                    b.counter(name, help, &ol, v as f64);
                }
            };
            put(
                "smart_scsi_errors_corrected",
                "SCSI errors corrected",
                c.total_errors_corrected,
            );
            put(
                "smart_scsi_uncorrected_errors",
                "SCSI uncorrected errors",
                c.total_uncorrected_errors,
            );
            put(
                "smart_scsi_correction_algorithm_invocations",
                "SCSI correction algorithm invocations",
                c.correction_algorithm_invocations,
            );
            put(
                "smart_scsi_processed_bytes",
                "SCSI data processed",
                c.bytes_processed(),
            );
        }
    }
}

/// How the latest read of a drive went: power mode, exit status, timeout, duration.
fn read_families(b: &mut Builder, d: &Drive) {
    let port = l(&[("port", &d.port)]);
    let r = &d.last_read;
    let mode = match (&r.skipped_mode, d.fresh()) {
        (Some(m), _) => Some(m.as_str()),
        (None, true) => Some("active_or_idle"),
        (None, false) => None,
    };
    if let Some(m) = mode {
        b.gauge(
            "smart_device_power_mode",
            "power mode at the last read (1 for the mode); a drive in standby is not read, so as not to wake it",
            &l(&[("port", &d.port), ("mode", m)]),
            1.0,
        );
    }
    b.gauge(
        "smart_device_read_timeout",
        "the last smartctl run for this drive was killed at the helper's timeout",
        &port,
        f64::from(u8::from(r.outcome == custos_smart_wire::Outcome::Timeout)),
    );
    b.gauge(
        "smart_device_read_duration_seconds",
        "wall time of the last smartctl run",
        &port,
        r.elapsed.as_secs_f64(),
    );
    if let Some(s) = r.exit_status {
        b.gauge(
            "smart_smartctl_exit_status",
            "exit status of the last smartctl run (a bitmask, smartctl(8))",
            &port,
            f64::from(s),
        );
        for (i, name) in EXIT_BITS.iter().enumerate() {
            b.gauge(
                "smart_smartctl_exit_status_bit",
                "bits of the last smartctl exit status, by meaning",
                &l(&[("port", &d.port), ("bit", name)]),
                f64::from((s >> i) & 1),
            );
        }
    }
}

fn refresh_families(b: &mut Builder, s: &State) {
    let none = Labels::new();
    b.counter(
        "smart_refreshes",
        "refreshes (requests to the helper)",
        &none,
        s.refreshes as f64,
    );
    b.counter(
        "smart_refresh_errors",
        "refreshes that got no report from the helper",
        &none,
        s.refresh_errors as f64,
    );
    if let Some(t) = s.last_refresh {
        b.gauge(
            "smart_refresh_timestamp_seconds",
            "when the last refresh ended",
            &none,
            unix_seconds(t),
        );
    }
    if let Some(d) = s.refresh_duration {
        b.gauge(
            "smart_refresh_duration_seconds",
            "how long the last refresh took",
            &none,
            d.as_secs_f64(),
        );
    }
    if let Some(scan) = &s.scan {
        b.gauge(
            "smart_scan_error",
            "the helper's smartctl --scan-open failed",
            &none,
            f64::from(u8::from(!scan.ok)),
        );
        b.gauge(
            "smart_scan_devices",
            "devices smartctl --scan-open found",
            &none,
            f64::from(scan.found),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_original_names_are_not_reserved() {
        for name in crate::attrmap::AttrMap::builtin().metrics().keys() {
            assert!(!is_reserved(name), "{name}");
        }
        for own in [
            "device_info",
            "nvme_media_errors_total",
            "system_error",
            "refreshes_total",
        ] {
            assert!(is_reserved(own), "{own}");
        }
    }

    #[test]
    fn a_label_set_appears_once_per_family() {
        let mut b = Builder::default();
        let labels = l(&[("port", "/dev/sda")]);
        b.gauge("smart_x", "x", &labels, 1.0);
        b.gauge("smart_x", "x", &labels, 2.0);
        b.counter("smart_y", "y", &labels, 3.0);
        assert_eq!(b.families.len(), 2);
        assert_eq!(
            b.families[0].samples,
            vec![(labels, 1.0)],
            "the first value wins"
        );
    }

    /// Hours, minutes and counts a drive reports are outside input: absurd values give
    /// absurd (huge) samples, never wrapped small ones (or, with overflow checks, a panic).
    #[test]
    fn absurd_drive_numbers_do_not_wrap() {
        let doc: Doc = serde_json::from_value(serde_json::json!({
            "smartctl": {"exit_status": 0},
            "power_on_time": {"hours": u64::MAX, "minutes": u64::MAX},
            "ata_smart_self_test_log": {"standard": {"table": [
                {"type": {"string": "Short offline"},
                 "status": {"value": 0, "string": "Completed without error", "passed": true},
                 "lifetime_hours": 0}
            ]}},
            "nvme_smart_health_information_log": {
                "data_units_read": u64::MAX,
                "data_units_written": u64::MAX / 1000,
                "controller_busy_time": u64::MAX
            }
        }))
        .unwrap();
        let mut b = Builder::default();
        device_families(&mut b, &doc, &l(&[("port", "/dev/x")]));
        let value = |name: &str| {
            b.families
                .iter()
                .find(|f| f.name == name)
                .unwrap_or_else(|| panic!("{name} missing"))
                .samples[0]
                .1
        };
        assert!(value("smart_device_power_on_seconds") >= u64::MAX as f64 * 3600.0);
        assert!(value("smart_device_selftest_age_seconds") >= u64::MAX as f64 * 3600.0);
        assert_eq!(value("smart_nvme_read_bytes"), u64::MAX as f64);
        assert_eq!(value("smart_nvme_written_bytes"), u64::MAX as f64);
        assert_eq!(value("smart_nvme_controller_busy_seconds"), u64::MAX as f64);
    }
}
