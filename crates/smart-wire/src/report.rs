//! What the frames carry: the helper's sweep over all devices, one [`Event`] per frame.
//!
//! The helper does not interpret smartctl's output beyond checking that it is JSON: each
//! device's document travels verbatim ([`RawValue`]), so the root side stays small and the
//! exporter, unprivileged, does all the parsing.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// One frame of a helper's answer: each device as soon as it is read (in the order reads
/// finish), then the end of the sweep. So the exporter can publish the drives that answer
/// while a hung one is still waiting for its timeout.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    Device(DeviceReport),
    Done(Summary),
}

/// The end of a sweep: all of a [`Report`] but its devices, which came before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// The helper's version (`CARGO_PKG_VERSION`).
    pub helper_version: String,
    /// Unix time (seconds) when the sweep started.
    pub started: u64,
    /// How long the whole sweep took.
    pub duration_ms: u64,
    /// How `smartctl --scan-open` went.
    pub scan: Scan,
    /// How many [`Event::Device`] frames came before this one (a reader checks it).
    pub devices: u32,
}

/// One sweep, put together from its events: the scan and every device read.
#[derive(Debug, Serialize, Deserialize)]
pub struct Report {
    /// The helper's version (`CARGO_PKG_VERSION`).
    pub helper_version: String,
    /// Unix time (seconds) when the sweep started.
    pub started: u64,
    /// How long the whole sweep took.
    pub duration_ms: u64,
    /// How `smartctl --scan-open` went.
    pub scan: Scan,
    /// Every device read, scanned and added by hand, in a stable order.
    pub devices: Vec<DeviceReport>,
}

/// The result of `smartctl --scan-open --json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scan {
    /// The scan produced a device list (possibly empty).
    pub ok: bool,
    /// smartctl's exit status, if it exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_status: Option<i32>,
    /// Why the scan failed (spawn error, timeout, bad output).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Devices the scan found before filtering.
    pub found: u32,
}

/// Where a device came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// `smartctl --scan-open`.
    Scan,
    /// A `--device` option of the helper.
    Manual,
}

/// How reading one device ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// smartctl exited and printed JSON (its exit status may still report problems).
    Ok,
    /// smartctl ran past the per-device timeout and was killed.
    Timeout,
    /// smartctl could not be started, died from a signal, or printed no usable JSON.
    Failed,
}

/// One device's read.
#[derive(Debug, Serialize, Deserialize)]
pub struct DeviceReport {
    /// Device path as given to smartctl (`/dev/sda`, `/dev/bus/0`).
    pub name: String,
    /// smartctl `-d` type (`sat`, `nvme`, `megaraid,1`), if one was passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev_type: Option<String>,
    pub source: Source,
    pub outcome: Outcome,
    /// smartctl's exit status (a bitmask, see smartctl(8)), if it exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_status: Option<i32>,
    /// What went wrong, for `Timeout` and `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Wall time of the smartctl run.
    pub elapsed_ms: u64,
    /// smartctl's JSON document, verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smartctl: Option<Box<RawValue>>,
}

impl DeviceReport {
    /// The `port` label: the device path, with the `-d` type when it addresses a disk behind
    /// a controller (`/dev/bus/0 megaraid,1`), since then the path alone is not unique.
    pub fn port(&self) -> String {
        match &self.dev_type {
            Some(t) if t.contains(',') => format!("{} {}", self.name, t),
            _ => self.name.clone(),
        }
    }
}

impl Report {
    /// The report of a finished stream: `summary` and the devices that came before it.
    pub fn new(summary: Summary, devices: Vec<DeviceReport>) -> Report {
        Report {
            helper_version: summary.helper_version,
            started: summary.started,
            duration_ms: summary.duration_ms,
            scan: summary.scan,
            devices,
        }
    }
}
