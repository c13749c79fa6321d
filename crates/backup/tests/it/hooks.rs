//! Hooks (`before`, `after`, `on_error` at job and source level) with the real binary: the
//! order and environment they run in, a failing `before` that skips its source and reaches
//! the summary and a notifier, `after` hooks that still run after SIGTERM, a timeout that
//! kills a forking hook's whole group, argv that no shell interprets, and a dry run that
//! checks hooks without starting them.

use crate::common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::notify::both;
use common::receiver::{Behaviour, Receiver};
use common::*;
use serde_json::{json, Value};

/// A shell hook appending one line to `log`: `TAG|HOOK|SOURCE|STATUS|OBJECT|SIZE|
/// DESTINATIONS|RUN|JOB|ERROR?` (unset variables empty; `error` when `CUSTOS_ERROR` is set).
fn record(log: &Path, tag: &str) -> Value {
    json!({"shell": format!(
        "printf '%s|%s|%s|%s|%s|%s|%s|%s|%s|%s\\n' {tag} \"$CUSTOS_HOOK\" \"${{CUSTOS_SOURCE-}}\" \
         \"${{CUSTOS_STATUS-}}\" \"${{CUSTOS_OBJECT-}}\" \"${{CUSTOS_SIZE-}}\" \
         \"${{CUSTOS_DESTINATIONS-}}\" \"$CUSTOS_RUN\" \"$CUSTOS_JOB\" \"${{CUSTOS_ERROR:+error}}\" \
         >> '{}'",
        log.display()
    )})
}

/// `before`, `after` and `on_error`, each one [`record`] hook tagged `tag`.
fn recorded(log: &Path, tag: &str) -> Value {
    json!({"before": [record(log, tag)], "after": [record(log, tag)],
           "on_error": [record(log, tag)]})
}

fn lines(log: &Path) -> Vec<String> {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn folder(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    fs::create_dir_all(&p).expect("mkdir");
    fs::write(p.join("file.txt"), format!("{name}\n")).expect("write");
    p
}

/// Two sources, `a` stored and `b` failing (its folder is missing): every hook runs in the
/// documented order with the run's facts; argv reaches its program unchanged (`$(id)` stays
/// text); what hooks print goes to the log, not to the summary on stdout.
#[test]
fn hooks_run_in_order_with_the_runs_facts() {
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path();
    let log = dir.join("hooks.log");
    let errors = dir.join("errors.log");
    let store = dir.join("store");
    let mut job = Job::new(dir);
    let mut a = folder_source("a", &folder(dir, "a"));
    a["hooks"] = recorded(&log, "a");
    a["hooks"]["before"]
        .as_array_mut()
        .expect("list")
        .push(json!({"command": ["printf", "argv:%s:%s\\n", "$(id)", "a b"], "timeout": 30}));
    let mut b = folder_source("b", &dir.join("missing"));
    b["hooks"] = recorded(&log, "b");
    b["hooks"]["on_error"].as_array_mut().expect("list").push(
        json!({"shell": format!("printf '%s\\n' \"$CUSTOS_ERROR\" >> '{}'", errors.display())}),
    );
    job.source(a)
        .source(b)
        .destination(local_destination("disk", &store))
        .set("hooks", recorded(&log, "job"))
        .set("max_parallel_sources", json!(1));
    let cfg = job.write();
    let r = backup(["-v".as_ref(), cfg.as_os_str()]);
    r.assert_code(1);

    let object = only_object(&store, "a");
    let stamp = object
        .parent()
        .and_then(Path::file_name)
        .expect("stamp")
        .to_string_lossy()
        .into_owned();
    let name = object
        .strip_prefix(&store)
        .expect("under the store")
        .display()
        .to_string();
    let size = fs::metadata(&object).expect("object").len();
    let job_file = fs::canonicalize(&cfg).expect("canonical");
    let (size, job_file) = (size.to_string(), job_file.display().to_string());
    // TAG, HOOK, SOURCE, STATUS, OBJECT, SIZE, DESTINATIONS, (RUN, JOB), ERROR
    let line = |f: [&str; 8]| {
        let [tag, hook, source, status, object, size, dests, error] = f;
        [
            tag, hook, source, status, object, size, dests, &stamp, &job_file, error,
        ]
        .join("|")
    };
    assert_eq!(
        lines(&log),
        [
            line(["job", "before", "", "", "", "", "", ""]),
            line(["a", "before", "a", "", "", "", "", ""]),
            line(["a", "after", "a", "ok", &name, &size, "disk", ""]),
            line(["b", "before", "b", "", "", "", "", ""]),
            line(["b", "on_error", "b", "failed", "", "", "", "error"]),
            line(["b", "after", "b", "failed", "", "", "", "error"]),
            line(["job", "on_error", "", "failed", "", &size, "", "error"]),
            line(["job", "after", "", "failed", "", &size, "", "error"]),
        ],
        "{}",
        r.describe()
    );
    let error = fs::read_to_string(&errors).expect("b's on_error wrote its error");
    assert!(error.starts_with("source 'b': "), "{error}");
    // argv: no shell in between, and the output went to the log only.
    assert!(
        r.stderr_text().contains("argv:$(id):a b"),
        "{}",
        r.describe()
    );
    assert!(!r.all_text().contains("uid="), "{}", r.describe());
    assert!(!r.stdout_text().contains("argv:"), "{}", r.describe());

    // Sources at once: each source's hooks keep their order (and facts) around its own
    // backup, and the job's hooks still come first and last.
    let shape = |lines: Vec<String>| -> Vec<String> {
        lines
            .iter()
            .map(|l| l.split('|').take(4).collect::<Vec<_>>().join("|"))
            .collect()
    };
    let sequential = shape(lines(&log));
    fs::remove_file(&log).expect("clear the hook log");
    job.set("max_parallel_sources", json!(2));
    let r = backup(["-v".as_ref(), job.write().as_os_str()]);
    r.assert_code(1);
    let parallel = shape(lines(&log));
    let of = |all: &[String], tag: &str| -> Vec<String> {
        all.iter()
            .filter(|l| l.starts_with(&format!("{tag}|")))
            .cloned()
            .collect()
    };
    for tag in ["a", "b", "job"] {
        assert_eq!(of(&parallel, tag), of(&sequential, tag), "{}", r.describe());
    }
    assert_eq!(parallel.first(), sequential.first(), "{}", r.describe());
    assert_eq!(
        parallel[parallel.len() - 2..],
        sequential[sequential.len() - 2..]
    );
}

/// A failing `before` skips its source only: the other source is stored, the run exits 1,
/// the summary and the notifier name the hook and what it printed, and the source's `after`
/// still runs. A failing job `before` skips every source.
#[test]
fn a_failing_before_skips_its_source_and_is_reported() {
    let rx = Receiver::start(Behaviour::default());
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path();
    let log = dir.join("hooks.log");
    let store = dir.join("store");
    let mut job = Job::new(dir);
    let mut a = folder_source("a", &folder(dir, "a"));
    a["hooks"] = json!({
        "before": [{"command": ["sh", "-c", "echo cannot stop app >&2; exit 7"]},
                   record(&log, "never")],
        "after": [record(&log, "a")]
    });
    job.source(a)
        .source(folder_source("b", &folder(dir, "b")))
        .destination(local_destination("disk", &store))
        .set(
            "notifications",
            json!([both(json!({"type": "slack", "url": rx.url("/hook")}))]),
        );
    let cfg = job.write();
    let r = run_job(&cfg);
    r.assert_code(1);
    let message = "source 'a': before hook sources[0].hooks.before[0] (sh) exited with status 7: \
                   cannot stop app";
    assert!(r.stdout_text().contains(message), "{}", r.describe());
    assert!(objects(&store, "a").is_empty());
    only_object(&store, "b");
    let l = lines(&log);
    assert_eq!(l.len(), 1, "{l:?}");
    assert!(l[0].starts_with("a|after|a|failed|"), "{l:?}");
    let texts: Vec<String> = rx
        .at("/hook")
        .iter()
        .map(|m| m.json()["text"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(
        texts
            .iter()
            .any(|t| t == &format!("Backup of 'folder a' (folder) on 'testhost' failed: {message}")),
        "{texts:?}"
    );

    // The job's before fails: no source runs, its after still does.
    job.set(
        "hooks",
        json!({"before": [{"command": ["false"]}], "after": [record(&log, "job")]}),
    );
    let cfg = job.write();
    let r = run_job(&cfg);
    r.assert_code(1);
    assert!(
        r.stdout_text().contains(
            "source 'b' not run: job: before hook hooks.before[0] (false) exited with status 1"
        ),
        "{}",
        r.describe()
    );
    assert_eq!(objects(&store, "b").len(), 1, "b ran again");
    assert!(lines(&log)
        .last()
        .is_some_and(|l| l.starts_with("job|after||failed|")));
}

/// SIGTERM during a slow source: the producer is killed, `on_error` and `after` of the
/// source and of the job run (status `interrupted`), no later `before` starts, and the run
/// exits 143.
#[test]
fn after_hooks_run_after_sigterm() {
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path();
    let log = dir.join("hooks.log");
    let path = stand_in(
        dir,
        "mysqldump",
        &format!(
            "#!/bin/sh\ntouch '{}/started'\nexec sleep 600\n",
            dir.display()
        ),
    );
    let mut job = Job::new(dir);
    job.source(json!({"id": "db", "type": "mysql", "dbname": "app",
                      "passphrase": PASSPHRASE, "hooks": recorded(&log, "db")}))
        .source({
            let mut b = folder_source("b", &folder(dir, "b"));
            b["hooks"] = recorded(&log, "b");
            b
        })
        .destination(local_destination("disk", &dir.join("store")))
        .set(
            "hooks",
            json!({"after": [record(&log, "job")], "on_error": [record(&log, "job")]}),
        )
        // One source after another: `b`'s `before` is the one a signal must not start.
        .set("max_parallel_sources", json!(1));
    let cfg = job.write();
    let child = spawn_backup_with([&cfg], &[("PATH", &path)]);
    wait_until(Duration::from_secs(60), "the stand-in to start", || {
        dir.join("started").exists()
    });
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
    let r = Run::from(wait_with_deadline(
        child,
        Duration::from_secs(60),
        "interrupted run",
    ));
    r.assert_code(143);
    let shape: Vec<String> = lines(&log)
        .iter()
        .map(|l| l.split('|').take(4).collect::<Vec<_>>().join("|"))
        .collect();
    assert_eq!(
        shape,
        [
            "db|before|db|",
            "db|on_error|db|interrupted",
            "db|after|db|interrupted",
            "job|on_error||interrupted",
            "job|after||interrupted",
        ],
        "{}",
        r.describe()
    );
}

/// A hook past its timeout has its whole process group killed: the shell and the `sleep` it
/// forked, which are the run's descendants while it waits, are gone afterwards.
#[test]
fn a_hook_timeout_kills_its_whole_group() {
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path();
    let pids = dir.join("pids");
    let store = dir.join("store");
    let mut job = Job::new(dir);
    job.source(folder_source("a", &folder(dir, "a")))
        .destination(local_destination("disk", &store))
        .set(
            "hooks",
            json!({"before": [{"shell": format!(
                "sleep 300 & echo $! > '{p}.tmp'; echo $$ >> '{p}.tmp'; mv '{p}.tmp' '{p}'; wait",
                p = pids.display()), "timeout": 5}]}),
        );
    let cfg = job.write();
    let child = spawn_backup([&cfg]);
    let backup_pid = child.id() as i32;
    wait_until(Duration::from_secs(30), "the hook to start", || {
        pids.exists()
    });
    let started: Vec<i32> = fs::read_to_string(&pids)
        .expect("pids")
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    assert_eq!(started.len(), 2, "{started:?}");
    let running = descendants(backup_pid);
    assert!(
        started.iter().all(|p| running.contains(p)),
        "{started:?} not among the run's descendants {running:?}"
    );
    let r = Run::from(wait_with_deadline(child, Duration::from_secs(60), "run"));
    r.assert_code(1);
    assert!(
        r.stdout_text().contains(
            "job: before hook hooks.before[0] (sh) did not finish within its timeout of 5 s; \
             its process group was killed"
        ),
        "{}",
        r.describe()
    );
    assert!(objects(&store, "a").is_empty());
    for p in started {
        wait_until(
            Duration::from_secs(10),
            "the hook's group to be gone",
            || not_running(p),
        );
    }
}

/// `--dry-run` starts no hook; it names a program missing from PATH and a script `sh`
/// cannot parse, and exits 1. A bad hook entry is a config error (exit 2) naming file, key
/// and value.
#[test]
fn dry_run_checks_hooks_and_bad_entries_are_config_errors() {
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path();
    let marker = dir.join("ran");
    let mut job = Job::new(dir);
    let mut a = folder_source("a", &folder(dir, "a"));
    a["hooks"] = json!({
        "before": [{"shell": format!("touch '{}'", marker.display())}],
        "after": [{"command": ["custos-no-such-program"]}, {"shell": "if then"}]
    });
    job.source(a)
        .destination(local_destination("disk", &dir.join("store")));
    let cfg = job.write();
    let r = backup(["--dry-run".as_ref(), cfg.as_os_str()]);
    r.assert_code(1);
    let out = r.stdout_text();
    assert!(
        out.contains(
            "source 'a': hook sources[0].hooks.after[0]: custos-no-such-program: not found on PATH"
        ),
        "{}",
        r.describe()
    );
    assert!(
        out.contains("source 'a': hook sources[0].hooks.after[1]: not valid for /bin/sh"),
        "{}",
        r.describe()
    );
    assert!(!marker.exists(), "a dry run started a hook");

    job.set(
        "hooks",
        json!({"after": [{"command": "systemctl start app"}]}),
    );
    let cfg = job.write();
    let r = run_job(&cfg);
    r.assert_code(2);
    assert!(
        r.stderr_text().contains(&format!(
            "{}: hooks.after[0].command: invalid value \"systemctl start app\": expected a list",
            cfg.display()
        )),
        "{}",
        r.describe()
    );
}
