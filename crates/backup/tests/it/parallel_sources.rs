//! `max_parallel_sources` with the real binary: a parallel run stores what a sequential run
//! stores (same names, same bytes once decrypted), its sources really overlap, the report
//! keeps config order whatever order they end in, and SIGTERM stops every running source,
//! starts no new one and leaves no partial object.
//!
//! The slow sources are `mysql` sources whose `mysqldump` is a stand-in on PATH (a shell
//! script): it logs when it starts and ends, and waits, stalls or dumps as its database's
//! file in the fixture says.

use crate::common;

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// The stand-in `mysqldump`: the database is its last argument. `$D/plan.DB` says what to
/// do: `sleep N` (seconds), `after PATH` (wait up to 60 s for PATH, a glob, to exist;
/// `$D/saw.DB` records whether it did) or `stall` (a `sleep 600` child in its process
/// group, waited for). It appends `start DB T` and `end DB T` (T: nanoseconds since the
/// epoch) to `$D/events`, and its pid and child's to `$D/pids` and `$D/child.PID`.
const STANDIN: &str = r#"#!/bin/sh
for a; do db=$a; done
d="$STANDIN_DIR"
echo "start $db $(date +%s%N)" >> "$d/events"
echo $$ >> "$d/pids"
set -- $(cat "$d/plan.$db")
case $1 in
sleep) sleep "$2" ;;
after)
  i=0
  while ! ls $2 >/dev/null 2>&1 && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done
  if ls $2 >/dev/null 2>&1; then echo yes > "$d/saw.$db"; else echo no > "$d/saw.$db"; fi ;;
stall)
  sleep 600 &
  echo $! > "$d/child.$$"
  wait
  exit 1 ;;
esac
echo "-- stand-in dump of $db"
echo "INSERT INTO t VALUES ('$db');"
echo "end $db $(date +%s%N)" >> "$d/events"
"#;

struct Fixture {
    _t: tempfile::TempDir,
    dir: PathBuf,
    path: OsString,
}

impl Fixture {
    fn new() -> Self {
        let t = tempfile::tempdir().expect("tempdir");
        let dir = t.path().to_owned();
        let path = stand_in(&dir, "mysqldump", STANDIN);
        Fixture { _t: t, dir, path }
    }

    /// A job of stand-in sources `(database, plan)` in this order, to `dest`, with
    /// `max_parallel_sources: at_once`; the events of an earlier run are cleared.
    fn job(&self, name: &str, sources: &[(&str, &str)], at_once: u32, dest: &Path) -> PathBuf {
        let _ = fs::remove_file(self.dir.join("events"));
        let _ = fs::remove_file(self.dir.join("pids"));
        let mut job = Job::new(&self.dir);
        for (db, plan) in sources {
            fs::write(self.dir.join(format!("plan.{db}")), plan).expect("plan");
            job.source(
                json!({"id": db, "type": "mysql", "dbname": db, "dbuser": "u",
                              "dbpass": "Dbpass-Secret-42", "passphrase": PASSPHRASE}),
            );
        }
        job.destination(local_destination("disk", dest))
            .set("max_parallel_sources", json!(at_once));
        job.write_as(name)
    }

    /// Starts `backup -v run CFG` with the stand-in first on PATH.
    fn spawn(&self, cfg: &Path) -> Child {
        spawn_backup_with(
            ["-v".as_ref(), "run".as_ref(), cfg.as_os_str()],
            &[("PATH", &self.path), ("STANDIN_DIR", self.dir.as_os_str())],
        )
    }

    fn run(&self, cfg: &Path) -> Run {
        wait_with_deadline(self.spawn(cfg), RUN_DEADLINE, "backup run").into()
    }

    /// `(start, end)` in nanoseconds of database `db`'s dump (`end` 0 if it did not end).
    fn span(&self, db: &str) -> (u128, u128) {
        let events = fs::read_to_string(self.dir.join("events")).unwrap_or_default();
        let at = |what: &str| {
            events
                .lines()
                .find_map(|l| {
                    let mut w = l.split_whitespace();
                    (w.next() == Some(what) && w.next() == Some(db))
                        .then(|| w.next().and_then(|t| t.parse().ok()))
                        .flatten()
                })
                .unwrap_or(0)
        };
        (at("start"), at("end"))
    }

    fn started(&self) -> Vec<i32> {
        fs::read_to_string(self.dir.join("pids"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }
}

/// Where `needle` first appears in `text` (panics naming it when it does not).
#[track_caller]
fn position(text: &str, needle: &str) -> usize {
    text.find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not found in:\n{text}"))
}

/// The summary table's rows name the sources in config order.
#[track_caller]
fn assert_table_order(r: &Run, ids: &[&str]) {
    let table = r.stdout_text();
    let at: Vec<usize> = ids
        .iter()
        .map(|id| position(&table, &format!("{id} ")))
        .collect();
    assert!(
        at.windows(2).all(|w| w[0] < w[1]),
        "summary rows not in config order {ids:?}:\n{table}"
    );
}

/// Two sources at once: the first one's dump goes on until the second one's copy is
/// stored, so they overlap and end in the other order; the summary table still lists them
/// in config order. With `max_parallel_sources: 1` the same sources run one after the other.
#[test]
fn parallel_sources_overlap_and_the_report_keeps_config_order() {
    let f = Fixture::new();
    let dest = f.dir.join("dest");
    let quick_stored = format!("after {}/quick/*/quick.sql.zst.gpg", dest.display());
    let cfg = f.job(
        "parallel.json",
        &[("slow", &quick_stored), ("quick", "sleep 0.2")],
        2,
        &dest,
    );
    let r = f.run(&cfg);
    r.assert_code(0);
    assert_eq!(
        fs::read_to_string(f.dir.join("saw.slow"))
            .unwrap_or_default()
            .trim(),
        "yes",
        "the first source's dump never saw the second one's copy: they did not overlap\n{}",
        r.describe()
    );
    let (slow, quick) = (f.span("slow"), f.span("quick"));
    let events = fs::read_to_string(f.dir.join("events")).unwrap_or_default();
    assert!(quick.0 < slow.1 && quick.1 < slow.1, "{events}");
    let log = r.stderr_text();
    assert!(log.contains("running sources in parallel"), "{log}");
    // The log tells the order they ended in; the report keeps the file's.
    assert!(
        position(&log, "stored source=quick") < position(&log, "stored source=slow"),
        "{events}\n{log}"
    );
    assert_table_order(&r, &["slow", "quick"]);
    for id in ["slow", "quick"] {
        only_object(&dest, id);
    }

    let seq_dest = f.dir.join("seq");
    let cfg = f.job(
        "sequential.json",
        &[("slow", "sleep 0.5"), ("quick", "sleep 0.2")],
        1,
        &seq_dest,
    );
    let r = f.run(&cfg);
    r.assert_code(0);
    let (slow, quick) = (f.span("slow"), f.span("quick"));
    assert!(
        slow.1 > 0 && quick.0 >= slow.1,
        "max_parallel_sources 1 overlapped: {slow:?} {quick:?}"
    );
    assert!(!r.stderr_text().contains("running sources in parallel"));
    assert_table_order(&r, &["slow", "quick"]);
}

/// SIGTERM while two of three sources run (`max_parallel_sources: 2`): both producers'
/// process groups are killed, the third never starts and is reported not run, no object or
/// partial file is left, and the run exits 143.
#[test]
fn sigterm_stops_every_running_source_and_starts_no_other() {
    let f = Fixture::new();
    let dest = f.dir.join("dest");
    let cfg = f.job(
        "job.json",
        &[("one", "stall"), ("two", "stall"), ("three", "sleep 0")],
        2,
        &dest,
    );
    let child = f.spawn(&cfg);
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("pid");
    wait_until(Duration::from_secs(60), "two stand-ins to stall", || {
        f.started()
            .iter()
            .filter(|p| f.dir.join(format!("child.{p}")).exists())
            .count()
            == 2
    });
    // Both workers are busy: nothing starts the third.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(f.started().len(), 2, "a third source started");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
    let r: Run = wait_with_deadline(child, Duration::from_secs(60), "interrupted run").into();
    r.assert_code(143);
    assert_eq!(
        f.started().len(),
        2,
        "a source started after SIGTERM\n{}",
        r.describe()
    );
    assert!(
        r.all_text().contains("not run: interrupted by signal 15"),
        "{}",
        r.describe()
    );
    assert_table_order(&r, &["one", "two", "three"]);
    let left = files_under(&dest);
    assert!(left.is_empty(), "objects or partial files left: {left:?}");
    for p in f.started() {
        let child: i32 = fs::read_to_string(f.dir.join(format!("child.{p}")))
            .expect("child pid")
            .trim()
            .parse()
            .expect("pid");
        wait_until(
            Duration::from_secs(10),
            "the stand-ins' groups to be gone",
            || not_running(p) && not_running(child),
        );
    }
    assert!(!r.all_text().contains("Dbpass-Secret-42"));
}

/// Three folders of different shapes backed up by one job with `max_parallel_sources: 1` and
/// by the same job with 3: the same object names per source, the same tar bytes once
/// decrypted (`restore --to -`), and restored trees equal to the sources; verify passes.
#[test]
fn parallel_run_stores_what_a_sequential_run_stores() {
    let t = tempfile::tempdir().expect("tempdir");
    let root = t.path();
    let big = root.join("src/big");
    let many = root.join("src/many");
    let one = root.join("src/one");
    fs::create_dir_all(big.join("sub")).expect("mkdir");
    fs::create_dir_all(&many).expect("mkdir");
    fs::create_dir_all(&one).expect("mkdir");
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut noise = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    };
    fs::write(big.join("random.bin"), noise(6 << 20)).expect("write");
    fs::write(big.join("sub/text.txt"), "a line of text\n".repeat(200_000)).expect("write");
    for i in 0..300 {
        fs::write(many.join(format!("f{i:03}")), noise(100 + i * 37)).expect("write");
    }
    fs::write(one.join("only.txt"), b"one file\n").expect("write");
    let sources: Vec<Value> = [("big", &big), ("many", &many), ("one", &one)]
        .iter()
        .map(|(id, p)| folder_source(id, p))
        .collect();
    let mut runs = Vec::new();
    for at_once in [1u32, 3] {
        let dir = root.join(format!("run{at_once}"));
        fs::create_dir_all(&dir).expect("mkdir");
        let dest = dir.join("dest");
        let mut job = Job::new(&dir);
        for s in &sources {
            job.source(s.clone());
        }
        job.destination(local_destination("disk", &dest))
            .set("max_parallel_sources", json!(at_once));
        let cfg = job.write();
        // -v: the summary table on stdout.
        let r = backup(["-v".as_ref(), "run".as_ref(), cfg.as_os_str()]);
        r.assert_code(0);
        assert_table_order(&r, &["big", "many", "one"]);
        verify(&cfg).assert_code(0);
        runs.push((cfg, dest));
    }
    let name = |dest: &Path, id: &str| {
        let o = only_object(dest, id);
        let file = o.file_name().expect("file").to_owned();
        let stamp_dir = o.parent().expect("stamp").to_owned();
        let stamp = stamp_dir
            .file_name()
            .expect("stamp")
            .to_string_lossy()
            .into_owned();
        assert!(
            stamp.len() == 14 && stamp.bytes().all(|b| b.is_ascii_digit()),
            "{o:?}"
        );
        assert_eq!(stamp_dir.parent(), Some(dest.join(id).as_path()), "{o:?}");
        file
    };
    for (id, src) in [("big", &big), ("many", &many), ("one", &one)] {
        let (seq_cfg, seq_dest) = &runs[0];
        let (par_cfg, par_dest) = &runs[1];
        assert_eq!(
            name(seq_dest, id),
            name(par_dest, id),
            "object names of {id}"
        );
        let seq = restore_to(seq_cfg, id, Path::new("-"));
        let par = restore_to(par_cfg, id, Path::new("-"));
        seq.assert_code(0);
        par.assert_code(0);
        assert!(!seq.stdout.is_empty());
        assert!(
            seq.stdout == par.stdout,
            "{id}: the parallel run's tar differs from the sequential run's"
        );
        let target = par_cfg.with_file_name(format!("restored-{id}"));
        restore_to(par_cfg, id, &target).assert_code(0);
        let base = src
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        assert_same_tree(src, &restored_root(&target, &base), false);
    }
}
