//! Running smartctl: one process per call, bounded in time and output.
//!
//! A hung smartctl (a dying disk, a wedged controller) must cost one device its data, never
//! the whole sweep. custos-process runs it in its own process group and kills the whole
//! group at the deadline: a `--smartctl` wrapper that forks (`sleep 600 & sleep 600`) would
//! otherwise leave its children running, holding the pipe.

use crate::cli::{ManualDevice, Options};
use custos_process::{Output, ProcessError, Spawn};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The most output kept from one smartctl run (a full `--xall` of a SAS drive is ~60 KiB).
pub const MAX_OUTPUT: usize = 1024 * 1024;

/// Runs `program args` with no stdin and no stderr, waiting at most `timeout`; its exit
/// status (a bitmask: any value) and stdout, or why there is none (not found, timed out,
/// killed by a signal, more than [`MAX_OUTPUT`] bytes).
pub fn run(program: &Path, args: &[String], timeout: Duration) -> Result<Output, ProcessError> {
    let mut cmd = Command::new(program);
    cmd.args(args).env("LC_ALL", "C");
    let name = program.display().to_string();
    custos_process::run(
        Spawn::new(name, cmd).stderr(Stdio::null()),
        timeout,
        MAX_OUTPUT,
    )
}

/// Arguments of `smartctl --scan-open`.
pub fn scan_args() -> Vec<String> {
    vec!["--scan-open".into(), "--json=c".into()]
}

/// Arguments that read one device: info, health, attributes, error and self-test logs (or
/// `--xall`), tolerant of odd firmware, never waking a drive below the `--nocheck` mode.
pub fn device_args(opts: &Options, dev: &ManualDevice) -> Vec<String> {
    let mut a: Vec<String> = vec!["--json=c".into()];
    if opts.xall {
        a.push("--xall".into());
    } else {
        for s in [
            "--info",
            "--health",
            "--attributes",
            "--log=error",
            "--log=selftest",
        ] {
            a.push(s.into());
        }
    }
    a.push("--tolerance=verypermissive".into());
    a.push(format!("--nocheck={}", opts.nocheck.as_str()));
    a.extend(opts.smartctl_args.iter().cloned());
    if let Some(t) = &dev.dev_type {
        a.push("-d".into());
        a.push(t.clone());
    }
    // A scanned name is outside input: after `--` a device called `-d...` or `--foo` stays
    // a device name and never becomes an option of smartctl running as root.
    a.push("--".into());
    a.push(dev.path.clone());
    a
}

/// The devices of a `--scan-open --json` document, as (path, type); entries without a name
/// are skipped.
pub fn parse_scan(doc: &serde_json::Value) -> Vec<ManualDevice> {
    let Some(list) = doc.get("devices").and_then(|d| d.as_array()) else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|d| {
            let path = d.get("name")?.as_str()?;
            Some(ManualDevice {
                path: path.to_string(),
                dev_type: d.get("type").and_then(|t| t.as_str()).map(str::to_string),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::NoCheck;

    #[test]
    fn device_arguments() {
        let o = Options {
            smartctl_args: vec!["-q".into()],
            ..Options::default()
        };
        let d = ManualDevice {
            path: "/dev/bus/0".into(),
            dev_type: Some("megaraid,1".into()),
        };
        assert_eq!(
            device_args(&o, &d).join(" "),
            "--json=c --info --health --attributes --log=error --log=selftest \
             --tolerance=verypermissive --nocheck=standby -q -d megaraid,1 -- /dev/bus/0"
        );
        let o = Options {
            xall: true,
            nocheck: NoCheck::Never,
            ..Options::default()
        };
        let d = ManualDevice {
            path: "/dev/sda".into(),
            dev_type: None,
        };
        assert_eq!(
            device_args(&o, &d).join(" "),
            "--json=c --xall --tolerance=verypermissive --nocheck=never -- /dev/sda"
        );
    }

    #[test]
    fn scan_documents() {
        let doc: serde_json::Value = serde_json::from_str(
            r#"{"devices":[{"name":"/dev/sda","type":"sat"},{"type":"x"},{"name":"/dev/nvme0"}]}"#,
        )
        .unwrap();
        let d = parse_scan(&doc);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].dev_type.as_deref(), Some("sat"));
        assert_eq!(d[1].dev_type, None);
        assert!(parse_scan(&serde_json::json!({"smartctl": {}})).is_empty());
    }

    #[test]
    fn a_hanging_process_is_killed_at_the_deadline() {
        let t = std::time::Instant::now();
        let r = run(
            Path::new("sh"),
            &["-c".into(), "exec sleep 30".into()],
            Duration::from_millis(200),
        );
        assert!(matches!(r, Err(ProcessError::TimedOut { .. })), "{r:?}");
        assert!(t.elapsed() < Duration::from_secs(5));
        let out = run(
            Path::new("sh"),
            &["-c".into(), "echo '{}'; exit 4".into()],
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(out.exit.code, 4);
        assert_eq!(out.stdout, b"{}\n");
        let r = run(
            Path::new("/nonexistent/smartctl"),
            &[],
            Duration::from_secs(1),
        );
        assert!(matches!(r, Err(ProcessError::NotFound { .. })), "{r:?}");
        // More output than the cap: refused, and the process is killed at once.
        let t = std::time::Instant::now();
        let r = run(
            Path::new("sh"),
            &["-c".into(), "exec yes".into()],
            Duration::from_secs(20),
        );
        assert!(
            matches!(
                r,
                Err(ProcessError::OutputTooLarge {
                    limit: MAX_OUTPUT,
                    ..
                })
            ),
            "{r:?}"
        );
        assert!(t.elapsed() < Duration::from_secs(10));
    }
}
