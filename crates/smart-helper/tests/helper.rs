//! The real `smart_exporter_helper` binary against the stand-in smartctl (tests/data) and the
//! real smartctl of Debian's smartmontools.

use custos_smart_wire::{read_frame, Outcome, Report, Source};
use custos_testkit::{require, wait_for};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const HELPER: &str = env!("CARGO_BIN_EXE_smart_exporter_helper");

fn data(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(file)
}

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("custos-helper-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A helper process on its own socket; killed when dropped.
struct Helper {
    child: Child,
    socket: PathBuf,
}

impl Helper {
    fn start(dir: &Path, args: &[&str]) -> Helper {
        let socket = dir.join("ipc");
        // A previous helper's socket would count as ready (the replacement of stale sockets
        // is tested in listen.rs).
        let _ = std::fs::remove_file(&socket);
        let child = Command::new(HELPER)
            .arg("--socket-path")
            .arg(&socket)
            .args(args)
            .env("SMARTCTL_ARGLOG", dir.join("args.log"))
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn helper");
        let mut h = Helper { child, socket };
        wait_for("helper socket", Duration::from_secs(20), || {
            if let Ok(Some(s)) = h.child.try_wait() {
                panic!("helper exited: {s}");
            }
            // The socket appears (renamed into place) already listening; a probe connection
            // would cost a sweep.
            h.socket.exists().then_some(())
        });
        h
    }

    /// One connection: sends `junk` first (which must be ignored), reads the frame.
    fn ask(&self, junk: &[u8]) -> Report {
        let mut s = UnixStream::connect(&self.socket).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        // The helper has shut its reading side: the write may fail (EPIPE), which is fine.
        let _ = s.write_all(junk);
        read_frame(&mut s).expect("a valid frame")
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn smartctl() -> String {
    data("smartctl").display().to_string()
}

#[test]
fn replays_fixtures_and_a_hung_device_costs_only_itself() {
    let dir = tempdir("sweep");
    let stand_in = smartctl();
    let h = Helper::start(
        &dir,
        &[
            "--smartctl",
            &stand_in,
            "--device-timeout",
            "2",
            "--jobs",
            "4",
            "--device",
            "/dev/bus/0 -d megaraid,1",
            "-vv",
        ],
    );
    assert_eq!(
        std::fs::metadata(&h.socket).unwrap().mode() & 0o777,
        0o660,
        "only the socket's group may connect"
    );
    let r = h.ask(b"GET / HTTP/1.1\r\n\r\nanything at all");
    assert!(r.scan.ok);
    assert_eq!(r.scan.found, 10);
    let names: Vec<&str> = r.devices.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "/dev/sda",
            "/dev/sdb",
            "/dev/sdc",
            "/dev/sdd",
            "/dev/sde",
            "/dev/sdf",
            "/dev/sdg",
            "/dev/sdh",
            "/dev/nvme0",
            "/dev/nvme1",
            "/dev/bus/0"
        ]
    );
    let dev = |n: &str| r.devices.iter().find(|d| d.name == n).unwrap();
    let hung = dev("/dev/sdg");
    assert_eq!(hung.outcome, Outcome::Timeout);
    assert!(hung
        .error
        .as_deref()
        .unwrap()
        .contains("killed after 2.0 s"));
    assert!(
        (2000..6000).contains(&hung.elapsed_ms),
        "{}",
        hung.elapsed_ms
    );
    for d in r.devices.iter().filter(|d| d.name != "/dev/sdg") {
        assert_eq!(d.outcome, Outcome::Ok, "{}: {:?}", d.name, d.error);
        // Each finished while the hung one was still waiting for its timeout.
        assert!(d.elapsed_ms < 2000, "{} took {} ms", d.name, d.elapsed_ms);
        assert!(d.smartctl.is_some());
    }
    // Exit statuses as recorded: failing NVMe 8, open failure 2, sleeping drive 2.
    assert_eq!(dev("/dev/sda").exit_status, Some(0));
    assert_eq!(dev("/dev/nvme1").exit_status, Some(8));
    assert_eq!(dev("/dev/sdf").exit_status, Some(2));
    assert_eq!(dev("/dev/sdh").exit_status, Some(2));
    let raid = dev("/dev/bus/0");
    assert_eq!(raid.source, Source::Manual);
    assert_eq!(raid.dev_type.as_deref(), Some("megaraid,1"));
    assert_eq!(raid.port(), "/dev/bus/0 megaraid,1");
    // The hung device held one worker; the other ten finished meanwhile.
    assert!(r.duration_ms < 6000, "sweep took {} ms", r.duration_ms);

    let log = std::fs::read_to_string(dir.join("args.log")).unwrap();
    assert!(log.lines().any(|l| l == "--scan-open --json=c"), "{log}");
    assert!(
        log.lines().any(|l| l
            == "--json=c --info --health --attributes --log=error --log=selftest \
                --tolerance=verypermissive --nocheck=standby -d sat /dev/sda"),
        "{log}"
    );
    assert!(
        log.lines().any(|l| l.ends_with("-d megaraid,1 /dev/bus/0")),
        "{log}"
    );
    // The helper keeps serving.
    assert_eq!(h.ask(b"").devices.len(), 11);
    drop(h);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn filters_and_a_scan_without_disks() {
    let dir = tempdir("filter");
    let stand_in = smartctl();
    let h = Helper::start(
        &dir,
        &[
            "--smartctl",
            &stand_in,
            "--include",
            "/dev/nvme*",
            "--exclude",
            "/dev/nvme1",
            "--nocheck",
            "never",
            "--xall",
        ],
    );
    let r = h.ask(b"");
    assert_eq!(r.scan.found, 10);
    assert_eq!(r.devices.len(), 1);
    assert_eq!(r.devices[0].name, "/dev/nvme0");
    let log = std::fs::read_to_string(dir.join("args.log")).unwrap();
    assert!(
        log.contains(
            "--json=c --xall --tolerance=verypermissive --nocheck=never -d nvme /dev/nvme0"
        ),
        "{log}"
    );
    drop(h);

    let nodisks = data("smartctl-nodisks").display().to_string();
    let h = Helper::start(&dir, &["--smartctl", &nodisks]);
    let r = h.ask(b"");
    assert!(
        r.scan.ok && r.scan.found == 0 && r.devices.is_empty(),
        "{r:?}"
    );
    drop(h);

    // A smartctl that cannot be run: the scan says why, the helper still answers.
    let h = Helper::start(&dir, &["--smartctl", "/nonexistent/smartctl"]);
    let r = h.ask(b"");
    assert!(!r.scan.ok);
    assert!(r.scan.error.unwrap().contains("cannot run"));
    drop(h);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn idle_timeout_and_usage_errors() {
    let dir = tempdir("idle");
    let mut h = Helper::start(&dir, &["--timeout", "0.3", "--smartctl", "/bin/false"]);
    let status = wait_for("helper to exit when idle", Duration::from_secs(20), || {
        h.child.try_wait().unwrap()
    });
    assert!(status.success());
    drop(h);

    for args in [&[][..], &["--socket-path"][..], &["--jobs", "0"][..]] {
        let out = Command::new(HELPER).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
    // Never replaces a file that is not a socket.
    let file = dir.join("not-a-socket");
    std::fs::write(&file, "keep").unwrap();
    let out = Command::new(HELPER)
        .arg("--socket-path")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a socket"));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// systemd's own socket activation tool passes the listening socket as fd 3.
#[test]
fn systemd_socket_activation() {
    let Some(activate) = require("systemd-socket-activate", "systemd") else {
        return;
    };
    let dir = tempdir("activate");
    let socket = dir.join("activated.sock");
    let mut child = Command::new(activate)
        .arg("--listen")
        .arg(&socket)
        .arg(HELPER)
        .args([
            "--smartctl",
            &smartctl(),
            "--no-scan",
            "--device",
            "/dev/nvme0",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let report = wait_for("activated helper", Duration::from_secs(20), || {
        let mut s = UnixStream::connect(&socket).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        read_frame::<Report, _>(&mut s).ok()
    });
    assert_eq!(report.devices.len(), 1);
    assert_eq!(report.devices[0].outcome, Outcome::Ok);
    let _ = child.kill();
    let _ = child.wait();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The argument sets the helper passes are accepted by the real smartctl (smartmontools 7.3):
/// smartctl's exit bit 0 means "command line did not parse".
#[test]
fn real_smartctl_accepts_the_arguments() {
    let Some(real) = require("smartctl", "smartmontools") else {
        return;
    };
    let real = real.display().to_string();
    let dir = tempdir("real");
    for extra in [&[][..], &["--xall", "--nocheck", "never"][..]] {
        let mut args = vec!["--smartctl", &real, "--device", "/dev/null -d sat"];
        args.extend_from_slice(extra);
        let h = Helper::start(&dir, &args);
        let r = h.ask(b"");
        assert!(r.scan.ok, "{:?}", r.scan);
        assert_eq!(r.scan.exit_status, Some(0), "--scan-open --json=c accepted");
        let d = r.devices.iter().find(|d| d.name == "/dev/null").unwrap();
        assert_eq!(d.outcome, Outcome::Ok, "{:?}", d.error);
        let status = d.exit_status.unwrap();
        assert_eq!(status & 1, 0, "{extra:?}: smartctl rejected the arguments");
        let doc = d.smartctl.as_ref().unwrap().get();
        assert!(doc.contains("\"json_format_version\""));
        if extra.is_empty() {
            // /dev/null answers the power check like a sleeping drive: not woken, exit 2.
            assert!(doc.contains("SLEEP mode"), "{doc}");
            assert_eq!(status, 2);
        }
        drop(h);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
