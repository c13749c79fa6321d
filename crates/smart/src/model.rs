//! The parts of smartctl's JSON the exporter reads (smartmontools 7.0-7.3 field names).
//!
//! Every field is optional: drives, protocols and smartctl versions each leave some out, and a
//! missing field means "no metric", never an error.

use serde::Deserialize;

/// One device's `smartctl --json` document.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Doc {
    #[serde(default)]
    pub smartctl: Meta,
    pub device: Option<Device>,
    pub model_name: Option<String>,
    pub model_family: Option<String>,
    pub scsi_model_name: Option<String>,
    pub serial_number: Option<String>,
    pub firmware_version: Option<String>,
    pub scsi_revision: Option<String>,
    pub wwn: Option<Wwn>,
    pub logical_unit_id: Option<String>,
    pub user_capacity: Option<Capacity>,
    pub rotation_rate: Option<u64>,
    pub smart_status: Option<SmartStatus>,
    pub temperature: Option<Temperature>,
    pub power_on_time: Option<PowerOnTime>,
    pub power_cycle_count: Option<u64>,
    pub ata_smart_attributes: Option<AtaAttributes>,
    pub ata_smart_error_log: Option<AtaErrorLog>,
    pub ata_smart_self_test_log: Option<AtaSelfTestLog>,
    pub nvme_smart_health_information_log: Option<NvmeHealth>,
    pub nvme_self_test_log: Option<NvmeSelfTestLog>,
    pub scsi_error_counter_log: Option<ScsiErrorCounterLog>,
    pub scsi_grown_defect_list: Option<u64>,
}

/// The `smartctl` block: exit status and messages.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Meta {
    pub exit_status: Option<i64>,
    #[serde(default)]
    pub messages: Vec<Message>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    pub string: String,
    pub severity: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Device {
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub dev_type: Option<String>,
    pub protocol: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Wwn {
    pub naa: u64,
    pub oui: u64,
    pub id: u64,
}

impl Wwn {
    /// The 64-bit WWN as Linux shows it in `/dev/disk/by-id/wwn-0x...`.
    pub fn hex(&self) -> String {
        format!(
            "0x{:x}{:06x}{:09x}",
            self.naa & 0xf,
            self.oui & 0xff_ffff,
            self.id & 0xf_ffff_ffff
        )
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Capacity {
    pub bytes: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SmartStatus {
    pub passed: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Temperature {
    pub current: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PowerOnTime {
    pub hours: Option<u64>,
    pub minutes: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AtaAttributes {
    #[serde(default)]
    pub table: Vec<AtaAttribute>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AtaAttribute {
    pub id: u32,
    #[serde(default)]
    pub name: String,
    pub value: Option<i64>,
    pub worst: Option<i64>,
    pub thresh: Option<i64>,
    pub raw: Option<Raw>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Raw {
    pub value: Option<i64>,
    pub string: Option<String>,
}

impl Raw {
    /// The raw value as `smartctl -A` prints it first, which the original exported:
    /// `"26 (Min/Max 18/47)"` is 26, where `value` packs min and max into the upper bytes.
    /// Falls back to `value` when the string does not start with a number.
    pub fn number(&self) -> Option<i64> {
        self.string
            .as_deref()
            .and_then(|s| s.split_whitespace().next())
            .and_then(|t| t.parse().ok())
            .or(self.value)
    }
}

/// `summary` (`-l error`) or `extended` (`-x`) error log; `count` = errors the drive logged.
#[derive(Debug, Clone, Deserialize)]
pub struct AtaErrorLog {
    pub summary: Option<Count>,
    pub extended: Option<Count>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Count {
    pub count: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AtaSelfTestLog {
    pub standard: Option<AtaSelfTestTable>,
    pub extended: Option<AtaSelfTestTable>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AtaSelfTestTable {
    #[serde(default)]
    pub table: Vec<AtaSelfTest>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AtaSelfTest {
    pub status: Option<AtaSelfTestStatus>,
    pub lifetime_hours: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AtaSelfTestStatus {
    pub value: Option<i64>,
    pub passed: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct NvmeHealth {
    pub critical_warning: Option<u64>,
    pub temperature: Option<f64>,
    pub available_spare: Option<f64>,
    pub available_spare_threshold: Option<f64>,
    pub percentage_used: Option<f64>,
    pub data_units_read: Option<u64>,
    pub data_units_written: Option<u64>,
    pub host_reads: Option<u64>,
    pub host_writes: Option<u64>,
    pub controller_busy_time: Option<u64>,
    pub power_cycles: Option<u64>,
    pub power_on_hours: Option<u64>,
    pub unsafe_shutdowns: Option<u64>,
    pub media_errors: Option<u64>,
    pub num_err_log_entries: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NvmeSelfTestLog {
    #[serde(default)]
    pub table: Vec<NvmeSelfTest>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NvmeSelfTest {
    pub self_test_result: Option<Code>,
    pub power_on_hours: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Code {
    pub value: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ScsiErrorCounterLog {
    pub read: Option<ScsiErrorCounters>,
    pub write: Option<ScsiErrorCounters>,
    pub verify: Option<ScsiErrorCounters>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ScsiErrorCounters {
    pub total_errors_corrected: Option<u64>,
    pub correction_algorithm_invocations: Option<u64>,
    /// smartctl prints it as a string with 3 decimals (`"162438.759"`).
    pub gigabytes_processed: Option<serde_json::Value>,
    pub total_uncorrected_errors: Option<u64>,
}

impl ScsiErrorCounters {
    /// `gigabytes_processed` in bytes.
    pub fn bytes_processed(&self) -> Option<u64> {
        let gb = match self.gigabytes_processed.as_ref()? {
            serde_json::Value::String(s) => s.trim().parse::<f64>().ok()?,
            v => v.as_f64()?,
        };
        Some((gb * 1e9).round() as u64)
    }
}

/// Power state a `--nocheck` skip reports (`Device is in STANDBY mode, exit(2)`).
pub fn skipped_power_mode(meta: &Meta) -> Option<String> {
    meta.messages.iter().find_map(|m| {
        let rest = m.string.strip_prefix("Device is in ")?;
        let (mode, _) = rest.split_once(" mode")?;
        Some(mode.to_ascii_lowercase().replace(' ', "_"))
    })
}

impl Doc {
    /// The model for labels and the device DB: ATA/NVMe model name, or SCSI vendor + product.
    pub fn model(&self) -> Option<&str> {
        self.model_name
            .as_deref()
            .or(self.scsi_model_name.as_deref())
    }

    /// Power-on hours from whichever block has them.
    pub fn power_on_hours(&self) -> Option<u64> {
        self.power_on_time
            .as_ref()
            .and_then(|p| p.hours)
            .or_else(|| {
                self.nvme_smart_health_information_log
                    .as_ref()?
                    .power_on_hours
            })
    }

    /// The most recent self-test: (passed, power-on hours when it ran). ATA entries still in
    /// progress (status value 0xF_) carry no verdict and are skipped.
    pub fn last_self_test(&self) -> Option<(bool, Option<u64>)> {
        if let Some(log) = &self.ata_smart_self_test_log {
            let table = log.extended.as_ref().or(log.standard.as_ref())?;
            return table
                .table
                .iter()
                .find(|t| {
                    t.status
                        .as_ref()
                        .and_then(|s| s.value)
                        .is_none_or(|v| v >> 4 != 0xf)
                })
                .map(|t| {
                    let passed = t.status.as_ref().and_then(|s| s.passed).unwrap_or(false);
                    (passed, t.lifetime_hours)
                });
        }
        let t = self.nvme_self_test_log.as_ref()?.table.first()?;
        let code = t.self_test_result.as_ref()?.value?;
        Some((code == 0, t.power_on_hours))
    }

    /// Errors in the drive's error log: ATA error count or NVMe error-log entries.
    pub fn error_log_count(&self) -> Option<u64> {
        if let Some(l) = &self.ata_smart_error_log {
            return l
                .extended
                .as_ref()
                .or(l.summary.as_ref())
                .and_then(|c| c.count);
        }
        self.nvme_smart_health_information_log
            .as_ref()?
            .num_err_log_entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wwn_and_power_mode() {
        let w = Wwn {
            naa: 5,
            oui: 9528,
            id: 61213911380,
        };
        assert_eq!(w.hex(), "0x5002538e40a22954");
        let meta: Meta = serde_json::from_str(
            r#"{"exit_status":2,"messages":[{"string":"Device is in STANDBY mode, exit(2)","severity":"information"}]}"#,
        )
        .unwrap();
        assert_eq!(skipped_power_mode(&meta).as_deref(), Some("standby"));
        assert_eq!(skipped_power_mode(&Meta::default()), None);
    }

    #[test]
    fn self_tests_ata_in_progress_skipped_and_nvme() {
        // ATA: the newest entry is in progress (status 0xF_): the one before it counts.
        let ata: Doc = serde_json::from_str(
            r#"{"power_on_time":{"hours":100},"ata_smart_self_test_log":{"standard":{"table":[
                {"status":{"value":249,"string":"Self-test routine in progress"},"lifetime_hours":99},
                {"status":{"value":121,"string":"Completed: read failure","passed":false},"lifetime_hours":90}]}}}"#,
        )
        .unwrap();
        assert_eq!(ata.last_self_test(), Some((false, Some(90))));
        // NVMe (smartctl 7.3 field names): result 0 = completed without error.
        let nvme: Doc = serde_json::from_str(
            r#"{"nvme_smart_health_information_log":{"power_on_hours":2200,"num_err_log_entries":3},
                "nvme_self_test_log":{"current_self_test_operation":{"value":0},"table":[
                {"self_test_code":{"value":1},"self_test_result":{"value":0},"power_on_hours":2100}]}}"#,
        )
        .unwrap();
        assert_eq!(nvme.last_self_test(), Some((true, Some(2100))));
        assert_eq!(nvme.power_on_hours(), Some(2200));
        assert_eq!(nvme.error_log_count(), Some(3));
    }

    #[test]
    fn scsi_gigabytes() {
        let c: ScsiErrorCounters =
            serde_json::from_str(r#"{"gigabytes_processed":"1.525"}"#).unwrap();
        assert_eq!(c.bytes_processed(), Some(1_525_000_000));
    }
}
