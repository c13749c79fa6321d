//! One sweep: scan, filter, read every device with a bounded pool; each device goes to the
//! caller as soon as it is read, the [`Summary`] at the end.

use crate::cli::{ManualDevice, Options};
use crate::glob;
use crate::log::{debug, info, warning};
use crate::smartctl;
use custos_process::ProcessError;
use custos_smart_wire::{DeviceReport, Outcome, Scan, Source, Summary};
use serde_json::value::RawValue;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Scans (unless `--no-scan`), adds the `--device` devices and reads them all, handing each
/// to `sink` as soon as it is read (from the reading threads, in the order reads finish).
pub fn sweep(opts: &Options, sink: &(dyn Fn(DeviceReport) + Sync)) -> Summary {
    let t0 = Instant::now();
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (scan, scanned) = if opts.scan {
        scan(opts)
    } else {
        (Scan::default(), Vec::new())
    };
    let mut todo: Vec<(ManualDevice, Source)> = scanned
        .into_iter()
        .filter(|d| wanted(opts, &d.path))
        .map(|d| (d, Source::Scan))
        .collect();
    for d in &opts.devices {
        // A hand-added device the scan found too is read once.
        if !todo.iter().any(|(t, _)| t == d) {
            todo.push((d.clone(), Source::Manual));
        }
    }
    read_all(opts, &todo, sink);
    let summary = Summary {
        helper_version: env!("CARGO_PKG_VERSION").to_string(),
        started,
        duration_ms: t0.elapsed().as_millis() as u64,
        scan,
        devices: u32::try_from(todo.len()).unwrap_or(u32::MAX),
    };
    info!(
        "sweep: {} devices in {} ms",
        summary.devices, summary.duration_ms
    );
    summary
}

/// `--include` (if any) must match and no `--exclude` may.
fn wanted(opts: &Options, path: &str) -> bool {
    let included = opts.include.is_empty() || opts.include.iter().any(|g| glob::matches(g, path));
    let excluded = opts.exclude.iter().any(|g| glob::matches(g, path));
    if !included || excluded {
        debug!("{path}: filtered out");
    }
    included && !excluded
}

fn scan(opts: &Options) -> (Scan, Vec<ManualDevice>) {
    let mut scan = Scan::default();
    match smartctl::run(&opts.smartctl, &smartctl::scan_args(), opts.device_timeout) {
        Ok(out) => {
            scan.exit_status = Some(out.exit.code);
            match serde_json::from_slice::<serde_json::Value>(&out.stdout) {
                Ok(doc) => {
                    let devices = smartctl::parse_scan(&doc);
                    scan.ok = true;
                    scan.found = devices.len() as u32;
                    return (scan, devices);
                }
                Err(e) => scan.error = Some(format!("scan printed no JSON: {e}")),
            }
        }
        Err(ProcessError::TimedOut { .. }) => scan.error = Some("scan timed out".into()),
        Err(e) => scan.error = Some(e.to_string()),
    }
    if let Some(e) = &scan.error {
        warning!("smartctl --scan-open: {e}");
    }
    (scan, Vec::new())
}

/// Reads `todo` with at most `opts.jobs` smartctl processes at a time, each result to `sink`.
fn read_all(opts: &Options, todo: &[(ManualDevice, Source)], sink: &(dyn Fn(DeviceReport) + Sync)) {
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..opts.jobs.min(todo.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((dev, source)) = todo.get(i) else {
                    break;
                };
                sink(read_one(opts, dev, *source));
            });
        }
    });
}

fn read_one(opts: &Options, dev: &ManualDevice, source: Source) -> DeviceReport {
    let t0 = Instant::now();
    let result = smartctl::run(
        &opts.smartctl,
        &smartctl::device_args(opts, dev),
        opts.device_timeout,
    );
    let mut r = DeviceReport {
        name: dev.path.clone(),
        dev_type: dev.dev_type.clone(),
        source,
        outcome: Outcome::Failed,
        exit_status: None,
        error: None,
        elapsed_ms: 0,
        smartctl: None,
    };
    match result {
        Ok(out) => {
            r.exit_status = Some(out.exit.code);
            match serde_json::from_slice::<Box<RawValue>>(&out.stdout) {
                Ok(doc) => {
                    r.outcome = Outcome::Ok;
                    r.smartctl = Some(doc);
                }
                Err(e) => r.error = Some(format!("smartctl printed no JSON: {e}")),
            }
        }
        Err(ProcessError::OutputTooLarge { .. }) => {
            r.error = Some(format!(
                "smartctl output above {} bytes",
                smartctl::MAX_OUTPUT
            ));
        }
        Err(ProcessError::Signaled { signal, .. }) => {
            r.error = Some(format!("smartctl died from signal {signal}"));
        }
        Err(ProcessError::TimedOut { .. }) => {
            r.outcome = Outcome::Timeout;
            r.error = Some(format!(
                "smartctl killed after {:.1} s",
                opts.device_timeout.as_secs_f64()
            ));
        }
        Err(e) => r.error = Some(e.to_string()),
    }
    r.elapsed_ms = t0.elapsed().as_millis() as u64;
    match &r.error {
        Some(e) => warning!("{}: {e}", r.port()),
        None => debug!(
            "{}: exit status {:?} in {} ms",
            r.port(),
            r.exit_status,
            r.elapsed_ms
        ),
    }
    r
}
