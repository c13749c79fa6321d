//! Running smartctl: one process per call, bounded in time and output.
//!
//! A hung smartctl (a dying disk, a wedged controller) must cost one device its data, never
//! the whole sweep: the output is read by a thread, the caller waits at most until the
//! deadline, then kills the process and moves on.
//!
//! Each run gets its own process group and a timeout kills the whole group: a `--smartctl`
//! wrapper that forks (`sleep 600 & sleep 600`) would otherwise leave its children running,
//! holding the pipe and its reader thread. std has no `killpg`; `rustix` (features `process`
//! and `fs`, no crates beyond `bitflags` and `linux-raw-sys`) gives a checked one, which we
//! prefer to a second hand-written `unsafe` FFI declaration in a root process.

use crate::cli::{ManualDevice, Options};
use rustix::process::{kill_process_group, Pid, Signal};
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The most output kept from one smartctl run (a full `--xall` of a SAS drive is ~60 KiB).
pub const MAX_OUTPUT: usize = 1024 * 1024;

/// How one smartctl run ended.
#[derive(Debug)]
pub enum RunResult {
    /// It exited; its stdout (at most [`MAX_OUTPUT`] bytes, `truncated` if there was more).
    Exited {
        status: ExitStatus,
        stdout: Vec<u8>,
        truncated: bool,
    },
    /// It ran past the deadline and was killed.
    TimedOut,
    /// It could not be started or read.
    Failed(String),
}

/// Runs `program args` with no stdin and stderr, waiting at most `timeout`.
pub fn run(program: &Path, args: &[String], timeout: Duration) -> RunResult {
    let deadline = Instant::now() + timeout;
    let mut child = match Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .env("LC_ALL", "C")
        .process_group(0)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return RunResult::Failed(format!("cannot run {}: {e}", program.display())),
    };
    let Some(mut stdout) = child.stdout.take() else {
        kill(&mut child);
        return RunResult::Failed("no stdout pipe".into());
    };
    let (tx, rx) = mpsc::channel();
    // Detached: it ends when every holder of the pipe is gone, which the group kill on a
    // timeout ensures; nobody waits for it.
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let r = (&mut stdout)
            .take(MAX_OUTPUT as u64 + 1)
            .read_to_end(&mut buf);
        let _ = tx.send(r.map(|_| buf));
    });
    let remaining = || deadline.saturating_duration_since(Instant::now());
    match rx.recv_timeout(remaining()) {
        Ok(Ok(mut stdout)) => {
            let truncated = stdout.len() > MAX_OUTPUT;
            stdout.truncate(MAX_OUTPUT);
            match wait_until(&mut child, deadline) {
                Some(status) => RunResult::Exited {
                    status,
                    stdout,
                    truncated,
                },
                None => RunResult::TimedOut,
            }
        }
        Ok(Err(e)) => {
            kill(&mut child);
            RunResult::Failed(format!("reading smartctl output: {e}"))
        }
        Err(_) => {
            kill(&mut child);
            RunResult::TimedOut
        }
    }
}

/// Waits for `child` until `deadline`; kills it and returns `None` if it is still running.
fn wait_until(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    // stdout is closed, so the process is exiting: poll briefly rather than block for ever.
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            _ => {
                kill(child);
                return None;
            }
        }
    }
}

/// Kills `child`'s whole process group (it leads one: `process_group(0)`), then reaps it.
fn kill(child: &mut Child) {
    kill_group(child);
    let _ = child.kill();
    let _ = child.wait();
}

/// SIGKILL to the group `child` leads. Called only before `child` is reaped: until then its
/// pid (= the group id) cannot be reused, so this never hits another process's group.
fn kill_group(child: &Child) {
    if let Some(pgid) = i32::try_from(child.id()).ok().and_then(Pid::from_raw) {
        // ESRCH (the group is already empty) is the usual, fine case.
        let _ = kill_process_group(pgid, Signal::KILL);
    }
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
        let t = Instant::now();
        let r = run(
            Path::new("sh"),
            &["-c".into(), "exec sleep 30".into()],
            Duration::from_millis(200),
        );
        assert!(matches!(r, RunResult::TimedOut), "{r:?}");
        assert!(t.elapsed() < Duration::from_secs(5));
        let r = run(
            Path::new("sh"),
            &["-c".into(), "echo '{}'; exit 4".into()],
            Duration::from_secs(10),
        );
        match r {
            RunResult::Exited { status, stdout, .. } => {
                assert_eq!(status.code(), Some(4));
                assert_eq!(stdout, b"{}\n");
            }
            r => panic!("{r:?}"),
        }
        assert!(matches!(
            run(
                Path::new("/nonexistent/smartctl"),
                &[],
                Duration::from_secs(1)
            ),
            RunResult::Failed(_)
        ));
        // More output than the cap: cut off, flagged, the process ends (SIGPIPE).
        match run(
            Path::new("sh"),
            &["-c".into(), "exec yes".into()],
            Duration::from_secs(20),
        ) {
            RunResult::Exited {
                stdout, truncated, ..
            } => {
                assert!(truncated);
                assert_eq!(stdout.len(), MAX_OUTPUT);
            }
            r => panic!("{r:?}"),
        }
    }
}
