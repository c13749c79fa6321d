//! `backup verify --sample PERCENT`: it reads ceil(PERCENT % of N) of a source's N copies at
//! each destination (at least one), the copies it names are really read (a corrupt copy fails
//! the verify exactly when the seed picks it), `--seed` repeats a choice, bad values are
//! refused, and the result reaches the notifiers: an HTTP receiver (chat, Elasticsearch; the
//! flag file and the dead-man's switch stay silent) and Debian's real push gateway.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use chrono::{Local, TimeDelta};
use common::notify::*;
use common::receiver::{Behaviour, Receiver};
use common::*;
use serde_json::{json, Value};

/// A folder source stored compressed only: no key derivation per copy read, so a test can
/// verify dozens of copies quickly; the sidecar check is the same.
fn plain_source(id: &str, data: &Path) -> Value {
    json!({"id": id, "name": "Web site", "type": "folder", "path": data, "compress_only": 1})
}

/// Turns the one copy of `id` at `dest` into `n` copies: the run's, and `n - 1` identical ones
/// a day apart before it (real objects with their sidecars, under other run stamps). Returns
/// the stamps, newest first.
fn plant_copies(dest: &Path, id: &str, n: usize) -> Vec<String> {
    let dir = dest.join(id);
    let newest: Vec<String> = fs::read_dir(&dir)
        .expect("read copies")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(newest.len(), 1, "{newest:?}");
    let mut stamps = vec![newest[0].clone()];
    for k in 1..n {
        let stamp = (Local::now().naive_local() - TimeDelta::days(k as i64))
            .format("%Y%m%d%H%M%S")
            .to_string();
        let to = dir.join(&stamp);
        fs::create_dir_all(&to).expect("mkdir");
        for f in fs::read_dir(dir.join(&newest[0])).expect("read copy") {
            let f = f.expect("entry");
            fs::copy(f.path(), to.join(f.file_name())).expect("copy");
        }
        stamps.push(stamp);
    }
    stamps
}

/// One table row of `backup verify`: source, destination, status, stamp.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Row {
    source: String,
    destination: String,
    status: String,
    stamp: String,
}

fn rows(run: &Run) -> Vec<Row> {
    run.stdout_text()
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let stamp = w.get(3)?;
            (stamp.len() == 14 && stamp.bytes().all(|b| b.is_ascii_digit())).then(|| Row {
                source: w[0].to_owned(),
                destination: w[1].to_owned(),
                status: w[2].to_owned(),
                stamp: w[3].to_owned(),
            })
        })
        .collect()
}

/// The stamps read per (source, destination); every row `ok`.
#[track_caller]
fn read_ok(run: &Run) -> BTreeMap<(String, String), BTreeSet<String>> {
    let mut out: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for r in rows(run) {
        assert_eq!(r.status, "ok", "{}", run.describe());
        let fresh = out
            .entry((r.source.clone(), r.destination.clone()))
            .or_default()
            .insert(r.stamp.clone());
        assert!(fresh, "{r:?} read twice: {}", run.describe());
    }
    out
}

fn sample(cfg: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["verify".to_owned(), cfg.display().to_string()];
    args.extend(extra.iter().map(|s| s.to_string()));
    backup(args)
}

/// Two sources (7 and 3 copies) at two destinations.
struct Setup {
    _t: tempfile::TempDir,
    cfg: PathBuf,
    dests: [PathBuf; 2],
    stamps: BTreeMap<&'static str, Vec<String>>,
}

fn setup(copies: &[(&'static str, usize)]) -> Setup {
    let t = tempfile::tempdir().expect("tempdir");
    let mut job = Job::new(t.path());
    let dests = [t.path().join("d1"), t.path().join("d2")];
    for (id, _) in copies {
        let data = t.path().join(format!("data-{id}"));
        fs::create_dir_all(&data).expect("mkdir");
        fs::write(data.join("f.txt"), format!("{id}\n").repeat(100)).expect("write");
        job.source(plain_source(id, &data));
    }
    job.destination(local_destination("d1", &dests[0]))
        .destination(local_destination("d2", &dests[1]));
    let cfg = job.write();
    run_job(&cfg).assert_code(0);
    let mut stamps = BTreeMap::new();
    for (id, n) in copies {
        let s = plant_copies(&dests[0], id, *n);
        assert_eq!(plant_copies(&dests[1], id, *n), s);
        stamps.insert(*id, s);
    }
    Setup {
        _t: t,
        cfg,
        dests,
        stamps,
    }
}

#[test]
fn sample_reads_the_ceiling_of_its_share_of_every_source_at_every_destination() {
    let s = setup(&[("a", 7), ("b", 3)]);
    // (share, copies of a, copies of b): ceil(share of 7), ceil(share of 3), at least one.
    for (share, ka, kb) in [
        ("30", 3, 1),
        ("50", 4, 2),
        ("10", 1, 1),
        ("2.5", 1, 1),
        ("66.67", 5, 3),
        ("100", 7, 3),
    ] {
        let run = sample(&s.cfg, &["--sample", share, "--seed", "11"]);
        run.assert_code(0);
        assert!(
            run.stdout_text()
                .starts_with(&format!("sample: {share} % of each source's copies")),
            "{}",
            run.describe()
        );
        let read = read_ok(&run);
        for dest in ["d1", "d2"] {
            for (id, k) in [("a", ka), ("b", kb)] {
                let got = &read[&(id.to_owned(), dest.to_owned())];
                assert_eq!(got.len(), k, "{share} % of {id} at {dest}: {got:?}");
                assert!(got.iter().all(|st| s.stamps[id].contains(st)), "{got:?}");
            }
        }
        assert_eq!(read.len(), 4, "{}", run.describe());
    }

    // The seed repeats the choice; without one the output names the seed it drew.
    let first = sample(&s.cfg, &["--sample", "30", "--seed", "5"]);
    let again = sample(&s.cfg, &["--sample", "30", "--seed", "5"]);
    assert_eq!(rows(&first), rows(&again));
    let drawn = sample(&s.cfg, &["--sample", "30"]);
    drawn.assert_code(0);
    let seed = drawn
        .stdout_text()
        .split(", seed ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next().map(str::to_owned))
        .expect("the seed is named");
    assert_eq!(
        rows(&sample(&s.cfg, &["--sample", "30", "--seed", &seed])),
        rows(&drawn)
    );

    // --source: only that source, the share of its own copies.
    let only_b = sample(&s.cfg, &["--source", "b", "--sample", "100"]);
    only_b.assert_code(0);
    let read = read_ok(&only_b);
    assert_eq!(read.keys().filter(|(id, _)| id == "a").count(), 0);
    assert_eq!(read[&("b".to_owned(), "d2".to_owned())].len(), 3);

    // Without --sample: the newest copy only, as before.
    let newest = read_ok(&backup(["verify".as_ref(), s.cfg.as_os_str()]));
    assert!(newest.values().all(|v| v.len() == 1), "{newest:?}");
    assert_eq!(
        newest[&("a".to_owned(), "d1".to_owned())],
        BTreeSet::from([s.stamps["a"][0].clone()])
    );

    // Bad values: usage errors naming the flag and the value.
    for bad in ["0", "101", "abc", "1.234"] {
        let run = sample(&s.cfg, &["--sample", bad]);
        run.assert_code(2);
        assert!(
            run.stderr_text()
                .contains(&format!("invalid value '{bad}' for '--sample <PERCENT>'")),
            "{}",
            run.describe()
        );
    }
    let run = sample(&s.cfg, &["--seed", "3"]);
    run.assert_code(2);
    assert!(run.stderr_text().contains("--sample"), "{}", run.describe());
    assert_eq!(s.dests.len(), 2);
}

#[test]
fn a_corrupt_copy_fails_the_sample_exactly_when_the_seed_picks_it() {
    let s = setup(&[("a", 4)]);
    // One byte of one copy at d2 changed, its size kept: only reading it finds out.
    let bad_stamp = s.stamps["a"][2].clone();
    let object = objects(&s.dests[1], "a")
        .into_iter()
        .find(|p| p.to_string_lossy().contains(&bad_stamp))
        .expect("the object");
    let mut bytes = fs::read(&object).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    fs::write(&object, bytes).expect("write");

    let (mut picked, mut passed) = (false, false);
    for seed in 0..40 {
        let run = sample(&s.cfg, &["--sample", "50", "--seed", &seed.to_string()]);
        let rows = rows(&run);
        assert_eq!(
            rows.len(),
            4,
            "2 of 4 at each destination: {}",
            run.describe()
        );
        let hit = rows
            .iter()
            .any(|r| r.destination == "d2" && r.stamp == bad_stamp);
        for r in &rows {
            let corrupt = r.destination == "d2" && r.stamp == bad_stamp;
            assert_eq!(
                r.status,
                if corrupt { "FAILED" } else { "ok" },
                "{r:?}: {}",
                run.describe()
            );
        }
        if hit {
            run.assert_code(1);
            let out = run.stdout_text();
            assert!(
                out.contains(&format!("a -> d2: a/{bad_stamp}/a.tar.zst: corrupted")),
                "the failure names the object: {out}"
            );
            picked = true;
        } else {
            run.assert_code(0);
            passed = true;
        }
        if picked && passed {
            break;
        }
    }
    assert!(
        picked && passed,
        "40 seeds never both picked and passed over the copy"
    );
}

#[test]
fn the_verify_result_goes_to_the_notifiers() {
    let rx = Receiver::start(Behaviour::default());
    let t = tempfile::tempdir().expect("tempdir");
    let data = t.path().join("www");
    fs::create_dir_all(&data).expect("mkdir");
    fs::write(data.join("index.html"), "hello\n").expect("write");
    let store = t.path().join("store");
    let mut job = Job::new(t.path());
    let mut source = plain_source("www", &data);
    source["passphrase"] = PASSPHRASE.into();
    source
        .as_object_mut()
        .expect("object")
        .remove("compress_only");
    job.source(source)
        .destination(local_destination("disk", &store));
    let cfg = job.write();
    run_job(&cfg).assert_code(0);
    let stamps = plant_copies(&store, "www", 2);
    let gateway = push_gateway("verify notifications (push gateway part)");
    let flag = t.path().join("flag");
    let mut notifications = vec![
        both(json!({"type": "slack", "url": rx.url("/slack")})),
        json!({"type": "elasticsearch", "url": rx.url("/es"), "indexpattern": "backups-%Y"}),
        json!({"type": "healthchecks", "url": rx.url("/ping/uuid")}),
        json!({"type": "flagfile", "flagfile": flag}),
    ];
    if let Some((_, port)) = &gateway {
        notifications
            .push(json!({"type": "prometheus", "url": format!("http://127.0.0.1:{port}/")}));
    }
    job.set("notifications", Value::Array(notifications));
    let cfg = job.write();

    let run = sample(&cfg, &["--sample", "50", "--seed", "1"]);
    run.assert_code(0);
    let slack = one(&rx.at("/slack"), "slack");
    assert_eq!(
        slack.json()["text"],
        "Verify of 'Web site' (folder) on 'testhost' was successful: 1 copy read at disk, a 50 % sample."
    );
    assert_eq!(slack.json()["icon_emoji"], ":+1:");
    let doc = one(&rx.at("/es/"), "elasticsearch").json();
    assert_eq!(
        (&doc["event"], &doc["status"], &doc["hostname"]),
        (&json!("verify"), &json!("success"), &json!("testhost"))
    );
    assert_eq!(doc["source"]["id"], "www");
    assert_eq!(doc["verify"]["sample_percent"], json!(50.0));
    let copies = doc["verify"]["copies"].as_array().expect("copies");
    assert_eq!(copies.len(), 1, "{doc}");
    assert_eq!(
        (&copies[0]["destination"], &copies[0]["ok"]),
        (&json!("disk"), &json!(true))
    );
    assert!(stamps.contains(&copies[0]["timestamp"].as_str().expect("stamp").to_owned()));
    // A verify is no run: the dead-man's switch is not pinged, no flag is written.
    assert!(rx.at("/ping/").is_empty(), "{:?}", rx.at("/ping/"));
    assert!(!flag.exists());
    if let Some((_, port)) = &gateway {
        let m = http_get(*port, "/metrics");
        let series = |name: &str| format!("{name}{{command=\"verify\",instance=\"\",job=\"www\"}}");
        assert_eq!(value(&m, &series("backup_verify_success")), 1.0);
        assert_eq!(value(&m, &series("backup_verify_copies")), 1.0);
        assert_eq!(value(&m, &series("backup_verify_failed_copies")), 0.0);
        let ok_at = value(&m, &series("backup_last_verify_success_timestamp_seconds"));
        assert!((chrono::Utc::now().timestamp() as f64 - ok_at).abs() < 120.0);
    }

    // Every copy damaged, and a destination that cannot be built (its key file is missing):
    // the verify fails, and says so everywhere.
    job.destination(json!({"id": "cloud", "type": "gs", "bucket": "b",
                           "gcs_creds_path": t.path().join("no-key.json")}));
    let broken = job.write_as("broken.json");
    for o in objects(&store, "www") {
        let mut bytes = fs::read(&o).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&o, bytes).expect("write");
    }
    let before = rx.at("/slack").len();
    let run = sample(&broken, &["--sample", "100"]);
    run.assert_code(1);
    let slack = rx.at("/slack");
    let text = slack[before..]
        .iter()
        .map(|r| r.json()["text"].as_str().unwrap_or_default().to_owned())
        .collect::<Vec<_>>();
    // Each stored copy, and the destination that could not be built.
    let copies = objects(&store, "www").len() + 1;
    assert_eq!(text.len(), 1, "{text:?}");
    assert!(
        text[0].starts_with(&format!(
            "Verify of 'Web site' (folder) on 'testhost' failed ({copies} copies read at disk, cloud, a 100 % sample): disk "
        )) && text[0].ends_with(&format!(
            "; cloud: gcs_creds_path {}: cannot read: No such file or directory (os error 2)",
            t.path().join("no-key.json").display()
        )),
        "{text:?}"
    );
    let docs = rx.at("/es/");
    let doc = docs.last().expect("a document").json();
    assert_eq!(doc["status"], "failed");
    assert!(
        doc["error"].as_str().is_some_and(|e| e.contains("disk ")),
        "{doc}"
    );
    assert!(rx.at("/ping/").is_empty());
    if let Some((_, port)) = &gateway {
        let m = http_get(*port, "/metrics");
        let series = |name: &str| format!("{name}{{command=\"verify\",instance=\"\",job=\"www\"}}");
        assert_eq!(value(&m, &series("backup_verify_success")), 0.0);
        assert_eq!(
            value(&m, &series("backup_verify_failed_copies")),
            copies as f64
        );
        assert!(value(&m, &series("backup_last_verify_failure_timestamp_seconds")) > 0.0);
        // The last passed verify's time stays for a staleness alert.
        assert!(value(&m, &series("backup_last_verify_success_timestamp_seconds")) > 0.0);
        // A run replaces its own group (job=www), not the verify's.
        run_job(&cfg).assert_code(0);
        let m = http_get(*port, "/metrics");
        assert_eq!(value(&m, "backup_success{instance=\"\",job=\"www\"}"), 1.0);
        assert_eq!(value(&m, &series("backup_verify_success")), 0.0);
    }
}
