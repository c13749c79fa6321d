//! What the exporter knows after each refresh: per drive its last read and its last good data.
//!
//! A drive that sleeps, times out or fails keeps the values of its last successful read, with
//! their age, until the helper stops listing it; only then do its series disappear.

use crate::model::{self, Doc};
use custos_smart_wire::{DeviceReport, Outcome, Report, Scan, Summary};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// smartctl exit-status bits that mean "no fresh data" (command line, open failed).
const NO_DATA_BITS: i32 = 0b11;

/// How the latest read of one drive went.
#[derive(Debug, Clone, PartialEq)]
pub struct LastRead {
    pub outcome: Outcome,
    pub exit_status: Option<i32>,
    pub error: Option<String>,
    pub elapsed: Duration,
    /// The power mode smartctl reported when `--nocheck` made it skip the drive.
    pub skipped_mode: Option<String>,
}

/// One drive (a `port`).
#[derive(Debug, Clone)]
pub struct Drive {
    /// The `port` label (device path, plus the `-d` type behind a controller).
    pub port: String,
    pub last_read: LastRead,
    /// The latest document with fresh data, and when it was read.
    pub good: Option<(Arc<Doc>, SystemTime)>,
}

impl Drive {
    /// The drive could not be read (not a sleeping drive: that is a state, not an error).
    pub fn access_error(&self) -> bool {
        match self.last_read.outcome {
            Outcome::Ok => {
                self.last_read.skipped_mode.is_none()
                    && self
                        .last_read
                        .exit_status
                        .is_none_or(|s| s & NO_DATA_BITS != 0)
            }
            Outcome::Timeout | Outcome::Failed => true,
        }
    }

    /// The last read brought fresh data.
    pub fn fresh(&self) -> bool {
        !self.access_error() && self.last_read.skipped_mode.is_none()
    }
}

/// Everything a scrape serves.
#[derive(Debug, Clone, Default)]
pub struct State {
    /// The last refresh could not get a report from the helper.
    pub system_error: bool,
    /// Why, for logs.
    pub last_error: Option<String>,
    pub refreshes: u64,
    pub refresh_errors: u64,
    pub last_refresh: Option<SystemTime>,
    /// When the helper last sent a whole report (the status page shows its age).
    pub last_answer: Option<SystemTime>,
    pub refresh_duration: Option<Duration>,
    /// The helper's last scan, and its version.
    pub scan: Option<Scan>,
    pub helper_version: Option<String>,
    /// Drives the helper listed last, sorted by port.
    pub drives: Vec<Drive>,
    /// Ports read so far in the sweep under way: at its end the other drives vanish.
    in_sweep: HashSet<String>,
}

impl State {
    /// Takes in a whole report the helper sent at `now`.
    pub fn apply(&mut self, report: Report, now: SystemTime, took: Duration) {
        let Report {
            helper_version,
            started,
            duration_ms,
            scan,
            devices,
        } = report;
        let n = devices.len();
        for dev in devices {
            self.apply_device(dev, now);
        }
        let summary = Summary {
            helper_version,
            started,
            duration_ms,
            scan,
            devices: u32::try_from(n).unwrap_or(u32::MAX),
        };
        self.finish_sweep(summary, now, took);
    }

    /// Takes in one device of the sweep under way, read at `now`.
    pub fn apply_device(&mut self, dev: DeviceReport, now: SystemTime) {
        let port = dev.port();
        let at = self.drives.binary_search_by(|d| d.port.cmp(&port));
        let previous = at.ok().map(|i| &self.drives[i]);
        let good = previous.and_then(|d| d.good.clone());
        let said = previous.and_then(|d| d.last_read.error.clone());
        let drive = read_drive(dev, port.clone(), good, now);
        match &drive.last_read.error {
            // A new reason is an error in the log (shown without -v); the same reason
            // again at the next refresh only at debug level.
            Some(e) if said.as_ref() != Some(e) => {
                tracing::error!(port = %drive.port, "no fresh data: {e}");
            }
            Some(e) => tracing::debug!(port = %drive.port, "still no fresh data: {e}"),
            None => {}
        }
        match at {
            Ok(i) => self.drives[i] = drive,
            Err(i) => self.drives.insert(i, drive),
        }
        self.in_sweep.insert(port);
    }

    /// Ends the sweep under way: drives it did not list disappear.
    pub fn finish_sweep(&mut self, summary: Summary, now: SystemTime, took: Duration) {
        let seen = std::mem::take(&mut self.in_sweep);
        self.drives.retain(|d| seen.contains(&d.port));
        self.system_error = false;
        self.last_error = None;
        self.scan = Some(summary.scan);
        self.helper_version = Some(summary.helper_version);
        self.last_answer = Some(now);
        self.finish(now, took);
    }

    /// Records a refresh that got no report; drives keep their last data.
    pub fn fail(&mut self, error: String, now: SystemTime, took: Duration) {
        // Drives read before the failure keep their new data; none vanishes.
        self.in_sweep.clear();
        self.system_error = true;
        self.last_error = Some(error);
        self.refresh_errors += 1;
        self.finish(now, took);
    }

    fn finish(&mut self, now: SystemTime, took: Duration) {
        self.refreshes += 1;
        self.last_refresh = Some(now);
        self.refresh_duration = Some(took);
    }
}

fn read_drive(
    dev: DeviceReport,
    port: String,
    previous: Option<(Arc<Doc>, SystemTime)>,
    now: SystemTime,
) -> Drive {
    let mut last_read = LastRead {
        outcome: dev.outcome,
        exit_status: dev.exit_status,
        error: dev.error,
        elapsed: Duration::from_millis(dev.elapsed_ms),
        skipped_mode: None,
    };
    let doc = dev.smartctl.as_ref().and_then(|raw| {
        serde_json::from_str::<Doc>(raw.get())
            .map_err(|e| {
                last_read.outcome = Outcome::Failed;
                last_read.error = Some(format!("smartctl JSON not understood: {e}"));
            })
            .ok()
    });
    if let Some(d) = &doc {
        last_read.skipped_mode = model::skipped_power_mode(&d.smartctl);
    }
    let mut drive = Drive {
        port,
        last_read,
        good: previous,
    };
    // smartctl ran but gave no data (`Unable to detect device type`, open failed): its own
    // messages are the reason, else nothing would ever say why the drive has no series.
    if drive.access_error() && drive.last_read.error.is_none() {
        drive.last_read.error = Some(no_data_reason(
            doc.as_ref().map(|d| &d.smartctl),
            drive.last_read.exit_status,
        ));
    }
    if drive.fresh() {
        if let Some(d) = doc {
            drive.good = Some((Arc::new(d), now));
        }
    }
    drive
}

/// Why smartctl gave no data: its error messages (all of its messages if none is marked
/// an error), else its exit status.
fn no_data_reason(meta: Option<&model::Meta>, exit_status: Option<i32>) -> String {
    let messages = meta.map_or(&[][..], |m| m.messages.as_slice());
    let errors: Vec<&str> = messages
        .iter()
        .filter(|m| m.severity.as_deref() == Some("error"))
        .map(|m| m.string.as_str())
        .collect();
    let said = if errors.is_empty() {
        messages.iter().map(|m| m.string.as_str()).collect()
    } else {
        errors
    };
    let status =
        exit_status.map_or_else(|| "no exit status".into(), |s| format!("exit status {s}"));
    if said.is_empty() {
        format!("smartctl gave no data ({status})")
    } else {
        format!("smartctl gave no data ({status}): {}", said.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use custos_smart_wire::Source;
    use serde_json::value::RawValue;

    fn dev(name: &str, outcome: Outcome, exit: Option<i32>, doc: Option<&str>) -> DeviceReport {
        DeviceReport {
            name: name.into(),
            dev_type: None,
            source: Source::Scan,
            outcome,
            exit_status: exit,
            error: None,
            elapsed_ms: 5,
            smartctl: doc.map(|d| RawValue::from_string(d.into()).unwrap()),
        }
    }

    fn report(devices: Vec<DeviceReport>) -> Report {
        Report {
            helper_version: "t".into(),
            started: 0,
            duration_ms: 1,
            scan: Scan::default(),
            devices,
        }
    }

    #[test]
    fn last_good_data_is_kept_through_standby_and_timeouts() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let t1 = t0 + Duration::from_secs(60);
        let ok = r#"{"smartctl":{"exit_status":0},"model_name":"M","temperature":{"current":30}}"#;
        let standby = r#"{"smartctl":{"exit_status":2,"messages":[{"string":"Device is in STANDBY mode, exit(2)"}]}}"#;
        let mut s = State::default();
        s.apply(
            report(vec![
                dev("/dev/sdb", Outcome::Ok, Some(0), Some(ok)),
                dev("/dev/sda", Outcome::Ok, Some(0), Some(ok)),
            ]),
            t0,
            Duration::ZERO,
        );
        assert_eq!(s.drives[0].port, "/dev/sda", "sorted by port");
        assert!(s.drives.iter().all(|d| d.fresh() && d.good.is_some()));

        s.apply(
            report(vec![
                dev("/dev/sda", Outcome::Ok, Some(2), Some(standby)),
                dev("/dev/sdb", Outcome::Timeout, None, None),
            ]),
            t1,
            Duration::ZERO,
        );
        let (a, b) = (&s.drives[0], &s.drives[1]);
        assert_eq!(a.last_read.skipped_mode.as_deref(), Some("standby"));
        assert!(!a.access_error(), "standby is a state, not an error");
        assert_eq!(
            a.good.as_ref().unwrap().1,
            t0,
            "old data kept with its time"
        );
        assert!(b.access_error());
        assert_eq!(b.good.as_ref().unwrap().1, t0);

        s.fail("gone".into(), t1, Duration::ZERO);
        assert!(s.system_error);
        assert_eq!(s.drives.len(), 2, "drives kept while the helper is away");

        s.apply(report(vec![]), t1, Duration::ZERO);
        assert!(
            s.drives.is_empty(),
            "drives the helper no longer lists disappear"
        );
    }

    #[test]
    fn open_failures_are_access_errors() {
        let err = r#"{"smartctl":{"exit_status":2,"messages":[{"string":"open failed","severity":"error"}]}}"#;
        let mut s = State::default();
        s.apply(
            report(vec![dev("/dev/sdf", Outcome::Ok, Some(2), Some(err))]),
            SystemTime::UNIX_EPOCH,
            Duration::ZERO,
        );
        assert!(s.drives[0].access_error());
        assert!(s.drives[0].good.is_none());
        // The reason is smartctl's own message (`--device /dev/vda` on a virtio disk).
        let vda = r#"{"smartctl":{"exit_status":1,"messages":[{"string":"/dev/vda: Unable to detect device type","severity":"error"}]}}"#;
        s.apply(
            report(vec![dev("/dev/vda", Outcome::Ok, Some(1), Some(vda))]),
            SystemTime::UNIX_EPOCH,
            Duration::ZERO,
        );
        assert_eq!(
            s.drives[0].last_read.error.as_deref(),
            Some("smartctl gave no data (exit status 1): /dev/vda: Unable to detect device type")
        );
        // Exit status 8 (disk failing) still carries data.
        let failing = r#"{"smartctl":{"exit_status":8},"smart_status":{"passed":false}}"#;
        s.apply(
            report(vec![dev("/dev/nvme1", Outcome::Ok, Some(8), Some(failing))]),
            SystemTime::UNIX_EPOCH,
            Duration::ZERO,
        );
        assert!(s.drives[0].fresh());
    }
}
