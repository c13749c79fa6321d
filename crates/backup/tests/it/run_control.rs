//! One run of a job at a time, bounded sources and clean interruption, with the real binary
//! and a stand-in `mysqldump` on PATH (a shell script that waits for a gate file or stalls,
//! with a child of its own, so killing "the producer" must mean its whole process group).

use crate::common;

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// The stand-in: prints a dump header, starts a `sleep` child in its process group, records
/// both pids, then either waits for `$STANDIN_DIR/open` (mode `gate`) or stalls (`stall`).
const STANDIN: &str = r#"#!/bin/sh
d="$STANDIN_DIR"
echo "-- stand-in dump"
sleep 600 &
echo $! > "$d/child.$$"
echo $$ >> "$d/pids"
if [ "$STANDIN_MODE" = gate ]; then
  i=0
  while [ ! -e "$d/open" ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done
  kill $! 2>/dev/null
  echo "INSERT INTO t VALUES (1);"
  exit 0
fi
wait
"#;

struct Fixture {
    _t: tempfile::TempDir,
    dir: PathBuf,
    cfg: PathBuf,
    dest: PathBuf,
    path: OsString,
}

fn fixture(mode: &str, extra_root: Option<(&str, serde_json::Value)>) -> Fixture {
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path().to_owned();
    let path = stand_in(&dir, "mysqldump", STANDIN);
    fs::write(dir.join("mode"), mode).expect("write mode");
    let dest = dir.join("dest");
    let mut job = Job::new(&dir);
    job.source(
        json!({"id": "db", "type": "mysql", "dbname": "app", "dbuser": "u",
                      "dbpass": "Dbpass-Secret-42", "passphrase": PASSPHRASE}),
    )
    .destination(local_destination("disk", &dest));
    if let Some((k, v)) = extra_root {
        job.set(k, v);
    }
    let cfg = job.write();
    Fixture {
        _t: t,
        dir,
        cfg,
        dest,
        path,
    }
}

impl Fixture {
    /// Starts `backup ARGS` with the stand-in first on PATH.
    fn spawn(&self, args: &[&str]) -> Child {
        let mode = fs::read_to_string(self.dir.join("mode")).expect("mode");
        Command::new(bin())
            .args(args)
            .arg(&self.cfg)
            .env("PATH", &self.path)
            .env("STANDIN_DIR", &self.dir)
            .env("STANDIN_MODE", mode)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn backup")
    }

    fn finish(&self, child: Child, deadline: Duration, what: &str) -> Run {
        let out = wait_with_deadline(child, deadline, what);
        Run {
            status: out.status,
            stdout: out.stdout,
            stderr: out.stderr,
        }
    }

    /// Pids of the stand-ins started so far, each with its `sleep` child.
    fn standins(&self) -> Vec<(i32, i32)> {
        let pids = fs::read_to_string(self.dir.join("pids")).unwrap_or_default();
        pids.lines()
            .filter_map(|l| l.trim().parse::<i32>().ok())
            .filter_map(|p| {
                let child = fs::read_to_string(self.dir.join(format!("child.{p}"))).ok()?;
                Some((p, child.trim().parse().ok()?))
            })
            .collect()
    }

    fn wait_for_standins(&self, n: usize) {
        wait_until(
            Duration::from_secs(60),
            "the stand-in mysqldump to start",
            || self.standins().len() >= n,
        );
    }
}

fn assert_no_object_and_no_partial(dest: &Path) {
    let left = files_under(dest);
    assert!(left.is_empty(), "objects or partial files left: {left:?}");
    // Issue 16.6: nor the `{id}/{stamp}/` directories made for the failed copy.
    let dirs: Vec<_> = fs::read_dir(dest)
        .expect("read dest")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(dirs.is_empty(), "directories left: {dirs:?}");
}

/// A second run while one holds the lock is refused at once naming the holder's pid; a run
/// with `--lock-wait` waits for it; each run gets its own stamp and every copy verifies.
#[test]
fn concurrent_runs_one_refused_one_waits_and_every_copy_verifies() {
    let f = fixture("gate", None);
    let first = f.spawn(&["run"]);
    let first_pid = first.id();
    f.wait_for_standins(1);

    let refused = f.finish(f.spawn(&["run"]), Duration::from_secs(30), "second run");
    refused.assert_code(1);
    assert!(
        refused.stderr_text().contains(&format!(
            "another run of this job is in progress (pid {first_pid})"
        )),
        "{}",
        refused.describe()
    );
    let waiting = f.spawn(&["run", "--lock-wait", "120"]);
    fs::write(f.dir.join("open"), b"").expect("open the gate");
    f.finish(first, Duration::from_secs(60), "first run")
        .assert_code(0);
    f.finish(waiting, Duration::from_secs(120), "waiting run")
        .assert_code(0);

    let objects = objects(&f.dest, "db");
    assert_eq!(objects.len(), 2, "{objects:?}");
    verify(&f.cfg).assert_code(0);
    for o in &objects {
        let stamp = o
            .parent()
            .and_then(|p| p.file_name())
            .expect("stamp dir")
            .to_string_lossy()
            .into_owned();
        let r = restore_with(
            &f.cfg,
            "db",
            &["--at".as_ref(), stamp.as_ref()],
            Path::new("-"),
        );
        r.assert_code(0);
        assert!(
            r.stdout_text().contains("INSERT INTO t VALUES (1);"),
            "{}",
            r.describe()
        );
    }
    for (sh, sleep) in f.standins() {
        assert!(
            not_running(sh) && not_running(sleep),
            "stand-in {sh}/{sleep} still runs"
        );
    }
}

/// A run whose stamp is taken (a copy of this second exists) moves to the next second: the
/// committed object is never overwritten.
#[test]
fn a_taken_stamp_moves_to_the_next_second() {
    let f = fixture("gate", None);
    fs::write(f.dir.join("open"), b"").expect("gate open");
    let now = chrono::Local::now().naive_local();
    // Six seconds from now: the run starts within them even on a loaded machine.
    let planted: Vec<String> = (0..6)
        .map(|s| {
            (now + chrono::TimeDelta::seconds(s))
                .format("%Y%m%d%H%M%S")
                .to_string()
        })
        .collect();
    for s in &planted {
        let d = f.dest.join("db").join(s);
        fs::create_dir_all(&d).expect("mkdir");
        fs::write(d.join("db.sql.zst.gpg"), b"earlier run").expect("write");
    }
    let r = f.finish(f.spawn(&["-v", "run"]), Duration::from_secs(60), "run");
    r.assert_code(0);
    assert!(
        r.stderr_text()
            .contains("a copy with this stamp exists; moving to the next second"),
        "{}",
        r.describe()
    );
    for s in &planted {
        assert_eq!(
            fs::read(f.dest.join("db").join(s).join("db.sql.zst.gpg")).expect("planted"),
            b"earlier run",
            "the object of {s} was overwritten"
        );
    }
    let new: Vec<PathBuf> = objects(&f.dest, "db")
        .into_iter()
        .filter(|o| {
            !planted
                .iter()
                .any(|s| o.to_string_lossy().contains(s.as_str()))
        })
        .collect();
    assert_eq!(new.len(), 1, "{new:?}\n{}", r.describe());
}

/// A stalled source fails at its `timeout` (root default here), its whole process group is
/// killed, and no object is left; the run does not hang.
#[test]
fn stalled_source_fails_at_its_timeout_and_leaves_no_object() {
    let f = fixture("stall", Some(("timeout", json!(2))));
    let started = Instant::now();
    let r = f.finish(f.spawn(&["run"]), Duration::from_secs(60), "stalled run");
    r.assert_code(1);
    assert!(
        r.all_text()
            .contains("did not finish within its timeout of 2 s"),
        "{}",
        r.describe()
    );
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert_no_object_and_no_partial(&f.dest);
    let standins = f.standins();
    assert_eq!(standins.len(), 1);
    let (sh, sleep) = standins[0];
    wait_until(
        Duration::from_secs(10),
        "the stand-in's group to be gone",
        || not_running(sh) && not_running(sleep),
    );
    assert!(!r.all_text().contains("Dbpass-Secret-42"));
}

/// SIGTERM (143) and SIGINT (130) mid-run: the producers are killed, every writer aborted, no
/// partial object, no child left running.
#[test]
fn signals_mid_run_exit_128_plus_signal_with_nothing_left() {
    for (signal, code) in [
        (rustix::process::Signal::TERM, 143),
        (rustix::process::Signal::INT, 130),
    ] {
        let f = fixture("stall", None);
        let child = f.spawn(&["run"]);
        let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("pid");
        f.wait_for_standins(1);
        rustix::process::kill_process(pid, signal).expect("signal backup");
        let r = f.finish(child, Duration::from_secs(60), "interrupted run");
        r.assert_code(code);
        assert!(r.stderr_text().contains("received"), "{}", r.describe());
        assert_no_object_and_no_partial(&f.dest);
        let (sh, sleep) = f.standins()[0];
        wait_until(
            Duration::from_secs(10),
            "the stand-in's group to be gone",
            || not_running(sh) && not_running(sleep),
        );
    }
}

/// `backup` marks itself non-dumpable at start: its `/proc/PID` files then belong to root
/// even though it runs as another user (as root, the test runs it as `nobody`).
#[test]
fn the_process_is_not_dumpable() {
    use std::os::unix::fs::MetadataExt;
    let f = fixture("stall", None);
    let root = is_root();
    let mut cmd = if root {
        if !require_tools("the_process_is_not_dumpable", &["setpriv"]) {
            return;
        }
        // Everything the run touches belongs to nobody.
        sh(&format!(
            "chown -R 65534:65534 '{d}' && chmod 0755 '{d}'",
            d = f.dir.display()
        ));
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(bin());
        c
    } else {
        Command::new(bin())
    };
    let child = cmd
        .arg("run")
        .arg(&f.cfg)
        .env("PATH", &f.path)
        .env("STANDIN_DIR", &f.dir)
        .env("STANDIN_MODE", "stall")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    f.wait_for_standins(1);
    let status_uid = fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("status")
        .lines()
        .find_map(|l| {
            l.strip_prefix("Uid:")
                .map(|u| u.split_whitespace().nth(1).unwrap_or("").to_owned())
        })
        .expect("Uid line");
    let environ_owner = fs::metadata(format!("/proc/{pid}/environ"))
        .expect("environ")
        .uid();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).expect("pid"),
        rustix::process::Signal::TERM,
    )
    .expect("SIGTERM");
    let r = f.finish(child, Duration::from_secs(60), "non-root run");
    assert_ne!(status_uid, "0", "the run is not running as another user");
    assert_eq!(
        environ_owner,
        0,
        "/proc/{pid}/environ belongs to the run's user: dumpable\n{}",
        r.describe()
    );
    r.assert_code(143);
}
