//! Runner tests against real folders, GNU tar and the local destination.

use super::*;
use crate::destination::local::LocalDestination;
use crate::destination::{DestinationError, ObjectInfo, ObjectWriter};
use crate::engine::report::summary::Status;
use crate::job::parse;
use crate::outcome::size_description;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Fixture {
    _dir: tempfile::TempDir,
    data: PathBuf,
    store: PathBuf,
    root: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    let data = root.join("accounts");
    std::fs::create_dir_all(data.join("sub")).unwrap();
    std::fs::write(data.join("a.txt"), "alpha\n").unwrap();
    std::fs::write(data.join("sub/b.txt"), "beta\n").unwrap();
    let store = root.join("store");
    std::fs::create_dir(&store).unwrap();
    Fixture {
        _dir: dir,
        data,
        store,
        root,
    }
}

fn job(text: &str) -> JobConfig {
    let j = parse(Path::new("job.json"), text).unwrap_or_else(|e| panic!("{e}"));
    j.validate().unwrap_or_else(|e| panic!("{e}"));
    j
}

fn run_job(text: &str) -> RunReport {
    run(&job(text), &Options::default())
}

/// Decrypts (passphrase), decompresses (zstd) and lists a stored tar object.
fn tar_members(object: &Path, passphrase: &str) -> Vec<(String, Vec<u8>)> {
    let file = std::fs::File::open(object).unwrap();
    let plain = crypto::decrypt(
        file,
        &crypto::Decryption::Passphrase(crypto::Passphrase::new(passphrase)),
    )
    .unwrap();
    let tar = zstd::stream::read::Decoder::new(plain).unwrap();
    let mut archive = tar::Archive::new(tar);
    let mut out = Vec::new();
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut body = Vec::new();
        e.read_to_end(&mut body).unwrap();
        out.push((name, body));
    }
    out.sort();
    out
}

#[test]
fn folder_to_local_stores_an_encrypted_object_with_its_sidecar() {
    let f = fixture();
    let report = run_job(&format!(
        r#"{{"sources": [{{"id": "accounts", "type": "folder", "path": "{}",
            "passphrase": "correct horse"}}],
          "destinations": [{{"id": "disk", "type": "local", "path": "{}"}}]}}"#,
        f.data.display(),
        f.store.display()
    ));
    assert!(report.success(), "{}", report.table());
    assert_eq!(report.exit_code(), 0);
    let row = &report.rows()[0];
    let object = row.object.clone().unwrap();
    assert_eq!(
        object,
        format!("accounts/{}/accounts.tar.zst.gpg", report.stamp)
    );
    let path = f.store.join(&object);
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        row.stored_bytes.unwrap()
    );
    let sidecar = std::fs::read_to_string(f.store.join(format!("{object}.sha256"))).unwrap();
    assert!(sidecar.ends_with("  accounts.tar.zst.gpg\n"), "{sidecar}");
    // The typed result carries what the notifiers need.
    let s = &report.sources[0];
    assert_eq!((s.id.as_str(), s.kind.as_str()), ("accounts", "folder"));
    assert_eq!(sidecar.split_whitespace().next(), s.sha256.as_deref());
    assert!(s.dump > Duration::ZERO && s.ended >= s.started);
    let d = &s.destinations[0];
    assert!(d.upload >= s.dump, "{d:?} vs {:?}", s.dump);
    assert_eq!(d.retained_good(), Some(1));
    let members = tar_members(&path, "correct horse");
    let names: Vec<&str> = members.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "./accounts/",
            "./accounts/a.txt",
            "./accounts/sub/",
            "./accounts/sub/b.txt"
        ]
    );
    assert_eq!(members[1].1, b"alpha\n");
}

#[test]
fn a_failing_source_does_not_stop_the_next_and_the_run_fails() {
    let f = fixture();
    let report = run_job(&format!(
        r#"{{"sources": [
            {{"id": "gone", "type": "folder", "path": "{0}/missing", "passphrase": "p"}},
            {{"id": "accounts", "type": "folder", "path": "{1}", "passphrase": "p"}}],
          "destinations": [{{"id": "disk", "type": "local", "path": "{2}"}}]}}"#,
        f.root.display(),
        f.data.display(),
        f.store.display()
    ));
    assert_eq!(report.exit_code(), 1);
    let gone = &report.rows()[0];
    assert_eq!(
        (gone.source.as_str(), gone.destination.as_str()),
        ("gone", "disk")
    );
    let Status::Failed(m) = &gone.status else {
        panic!("{:?}", gone.status)
    };
    assert!(m.contains("gone") && m.contains("missing"), "{m}");
    assert_eq!(report.rows()[1].status, Status::Ok);
    assert!(
        !f.store.join("gone").exists(),
        "nothing stored for a failed source"
    );
    assert!(f
        .store
        .join(report.rows()[1].object.as_ref().unwrap())
        .exists());
}

#[test]
fn a_failing_destination_does_not_skip_the_others() {
    let f = fixture();
    let report = run_job(&format!(
        r#"{{"sources": [{{"id": "accounts", "type": "folder", "path": "{0}", "passphrase": "p"}}],
          "destinations": [
            {{"id": "unmounted", "type": "local", "path": "{1}/not-mounted"}},
            {{"id": "cloud", "type": "gs", "bucket": "b", "gcs_creds_path": "/x.json"}},
            {{"id": "disk", "type": "local", "path": "{2}"}}]}}"#,
        f.data.display(),
        f.root.display(),
        f.store.display()
    ));
    assert_eq!(report.exit_code(), 1, "{}", report.table());
    let by_dest = |d: &str| {
        report
            .rows()
            .iter()
            .find(|r| r.destination == d)
            .unwrap()
            .status
            .clone()
    };
    assert_eq!(by_dest("disk"), Status::Ok);
    assert!(matches!(by_dest("cloud"), Status::Failed(m) if m.contains("gcs_creds_path /x.json")));
    assert!(matches!(by_dest("unmounted"), Status::Failed(m) if m.contains("not-mounted")));
    assert!(!f.root.join("not-mounted").exists());
}

#[test]
fn a_failing_source_fails_alone_and_notifiers_see_it() {
    let f = fixture();
    let report = run_job(&format!(
        r#"{{"sources": [
            {{"id": "db", "type": "folder", "path": "{0}/gone", "passphrase": "p"}},
            {{"id": "accounts", "type": "folder", "path": "{1}", "passphrase": "p"}}],
          "destinations": [{{"id": "disk", "type": "local", "path": "{2}"}}],
          "notifications": [{{"type": "flagfile", "flagfile": "{0}/ok"}}]}}"#,
        f.root.display(),
        f.data.display(),
        f.store.display(),
    ));
    assert_eq!(report.exit_code(), 1);
    assert!(
        matches!(&report.rows()[0].status, Status::Failed(m) if m.contains("/gone")),
        "{:?}",
        report.rows()[0]
    );
    assert_eq!(report.rows()[1].status, Status::Ok);
    let n = report.rows().last().unwrap().clone();
    assert_eq!(n.destination, "notify:flagfile");
    // The flag marks a fully successful run only: one source failed.
    assert_eq!(n.status, Status::Ok);
    assert!(!f.root.join("ok").exists());
}

#[test]
fn dry_run_checks_everything_and_writes_nothing() {
    let f = fixture();
    let text = format!(
        r#"{{"sources": [
            {{"id": "accounts", "type": "folder", "path": "{0}", "passphrase": "p"}},
            {{"id": "gone", "type": "folder", "path": "{1}/missing", "passphrase": "p"}}],
          "destinations": [{{"id": "disk", "type": "local", "path": "{2}"}},
                           {{"id": "nowhere", "type": "local", "path": "{1}/nowhere"}}]}}"#,
        f.data.display(),
        f.root.display(),
        f.store.display()
    );
    let report = run(
        &job(&text),
        &Options {
            dry_run: true,
            ..Options::default()
        },
    );
    let rows = report.rows();
    let summary: Vec<(&str, &str, bool)> = rows
        .iter()
        .map(|r| (r.source.as_str(), r.destination.as_str(), r.status.is_ok()))
        .collect();
    assert_eq!(
        summary,
        [
            ("-", "disk", true),
            ("-", "nowhere", false),
            ("accounts", "-", true),
            ("gone", "-", false)
        ]
    );
    assert_eq!(report.rows()[0].status, Status::Checked);
    assert_eq!(report.exit_code(), 1);
    assert_eq!(std::fs::read_dir(&f.store).unwrap().count(), 0);
    assert!(report.table().contains("dry run: 2 of 4 checks succeeded"));
}

#[test]
fn retention_runs_after_a_good_upload_and_keeps_the_newest_n() {
    let f = fixture();
    // Three older good copies from earlier runs.
    for stamp in ["20200101020000", "20200102020000", "20200103020000"] {
        let dir = f.store.join("accounts").join(stamp);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("accounts.tar.gpg"), "old").unwrap();
        std::fs::write(dir.join("accounts.tar.gpg.sha256"), "x  accounts.tar.gpg\n").unwrap();
    }
    let report = run_job(&format!(
        r#"{{"sources": [{{"id": "accounts", "type": "folder", "path": "{0}", "passphrase": "p"}}],
          "destinations": [{{"id": "disk", "type": "local", "path": "{1}",
                             "retention_copies": 2}}]}}"#,
        f.data.display(),
        f.store.display()
    ));
    assert!(report.success(), "{}", report.table());
    assert_eq!(
        report.rows()[0].removed,
        ["20200101020000", "20200102020000"]
    );
    let mut left: Vec<String> = std::fs::read_dir(f.store.join("accounts"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["20200103020000".to_owned(), report.stamp.to_string()]
    );
}

/// A destination that lists and deletes like `local` but fails every upload.
struct FailingUpload {
    inner: LocalDestination,
    deletes: AtomicUsize,
}

impl Destination for FailingUpload {
    fn id(&self) -> &str {
        self.inner.id()
    }
    fn kind(&self) -> &'static str {
        "failing"
    }
    fn check(&self) -> Result<(), DestinationError> {
        Ok(())
    }
    fn create(&self, name: &str) -> Result<Box<dyn ObjectWriter>, DestinationError> {
        Err(DestinationError::Other {
            destination: self.id().to_owned(),
            message: format!("no space left on device writing {name}"),
        })
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, DestinationError> {
        self.inner.list(prefix)
    }
    fn open(&self, name: &str) -> Result<Box<dyn Read + Send>, DestinationError> {
        self.inner.open(name)
    }
    fn delete(&self, name: &str) -> Result<(), DestinationError> {
        self.deletes.fetch_add(1, Ordering::SeqCst);
        self.inner.delete(name)
    }
}

#[test]
fn retention_never_runs_where_the_upload_failed() {
    let f = fixture();
    for stamp in ["20200101020000", "20200102020000"] {
        let dir = f.store.join("accounts").join(stamp);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("accounts.tar.gpg"), "old").unwrap();
        std::fs::write(dir.join("accounts.tar.gpg.sha256"), "x  accounts.tar.gpg\n").unwrap();
    }
    let j = job(&format!(
        r#"{{"sources": [{{"id": "accounts", "type": "folder", "path": "{0}", "passphrase": "p"}}],
          "destinations": [{{"id": "full", "type": "local", "path": "{1}",
                             "retention_copies": 1, "retention_days": 1}}]}}"#,
        f.data.display(),
        f.store.display()
    ));
    let failing = std::sync::Arc::new(FailingUpload {
        inner: LocalDestination::new("full", &f.store),
        deletes: AtomicUsize::new(0),
    });
    struct Shared(std::sync::Arc<FailingUpload>);
    impl Destination for Shared {
        fn id(&self) -> &str {
            self.0.id()
        }
        fn kind(&self) -> &'static str {
            self.0.kind()
        }
        fn check(&self) -> Result<(), DestinationError> {
            self.0.check()
        }
        fn create(&self, n: &str) -> Result<Box<dyn ObjectWriter>, DestinationError> {
            self.0.create(n)
        }
        fn list(&self, p: &str) -> Result<Vec<ObjectInfo>, DestinationError> {
            self.0.list(p)
        }
        fn open(&self, n: &str) -> Result<Box<dyn Read + Send>, DestinationError> {
            self.0.open(n)
        }
        fn delete(&self, n: &str) -> Result<(), DestinationError> {
            self.0.delete(n)
        }
    }
    let targets = vec![Target {
        config: j.destinations[0].clone(),
        built: Ok(Box::new(Shared(failing.clone()))),
        uploads: Uploads::new(None),
    }];
    let source = run_source(
        &j.sources[0],
        build_source(&j.sources[0]),
        &targets,
        RunStamp::now(),
        &Options::default(),
        "job",
    );
    let failure = source.destinations[0].failure().cloned();
    assert!(
        matches!(&failure, Some(f) if f.message.contains("no space left") && f.stage == Stage::Upload),
        "{source:?}"
    );
    assert!(source.destinations[0].retention.is_none());
    assert_eq!(failing.deletes.load(Ordering::SeqCst), 0);
    assert_eq!(
        std::fs::read_dir(f.store.join("accounts")).unwrap().count(),
        2
    );
}

#[test]
fn plans_follow_layout_compression_and_protection() {
    let j = job(r#"{"sources": [
          {"id": "a", "type": "folder", "path": "/a", "passphrase": "p"},
          {"id": "b", "type": "folder", "path": "/b", "passphrase": "p", "layout": "original"},
          {"id": "c", "type": "folder", "path": "/c", "compress_only": 1, "layout": "original"},
          {"id": "d", "type": "folder", "path": "/d", "compress_only": 1},
          {"id": "e", "type": "folder", "path": "/e", "passphrase": "p", "compression": "gzip"},
          {"id": "f", "type": "mysql", "passphrase": "p", "compression_level": 7}
        ], "destinations": [{"id": "l", "type": "local", "path": "/x"}]}"#);
    let suffixes: Vec<String> = j
        .sources
        .iter()
        .map(|s| build_plan(s).unwrap().encoding.suffix())
        .collect();
    assert_eq!(
        suffixes,
        [".zst.gpg", ".gpg", ".gz", ".zst", ".gz.gpg", ".zst.gpg"]
    );
    assert_eq!(build_plan(&j.sources[5]).unwrap().zstd_level, 7);
    assert!(build_plan(&j.sources[3]).unwrap().encryption.is_none());
}

#[test]
fn unknown_recipient_fails_only_that_source() {
    let f = fixture();
    let keyring = f.root.join("empty.asc");
    std::fs::write(&keyring, "").unwrap();
    let report = run_job(&format!(
        r#"{{"keyring": "{0}", "sources": [
            {{"id": "r", "type": "folder", "path": "{1}", "recipients": ["nobody@example.org"]}},
            {{"id": "accounts", "type": "folder", "path": "{1}", "passphrase": "p"}}],
          "destinations": [{{"id": "disk", "type": "local", "path": "{2}"}}]}}"#,
        keyring.display(),
        f.data.display(),
        f.store.display()
    ));
    assert!(matches!(&report.rows()[0].status, Status::Failed(m) if m.starts_with("source 'r'")));
    assert_eq!(report.rows()[1].status, Status::Ok);
}

#[test]
fn size_description_matches_the_original() {
    assert_eq!(size_description(100.0), "100.0 bytes");
    assert_eq!(size_description(1024.0), "1.0 KB");
    assert_eq!(size_description(12390.0), "12.1 KB");
    assert_eq!(size_description(1024.0 * 1024.0 * 1024.0), "1.0 GB");
}

/// A run removes the partial objects that killed runs of the same source left (their PID is
/// gone), before writing; other sources' partials wait for their own run. A dry run writes
/// and removes nothing.
#[test]
fn a_run_removes_partial_objects_of_its_sources_killed_runs() {
    let f = fixture();
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let pid = gone.id();
    gone.wait().unwrap();
    let killed = f.store.join(format!(
        "accounts/20200101000000/.accounts.tar.zst.gpg.partial-{pid}-0"
    ));
    let other = f.store.join(format!(
        "payroll/20200101000000/.payroll.tar.zst.gpg.partial-{pid}-0"
    ));
    for p in [&killed, &other] {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, vec![0u8; 4096]).unwrap();
    }
    let text = format!(
        r#"{{"sources": [{{"id": "accounts", "type": "folder", "path": "{}",
            "passphrase": "p"}}],
          "destinations": [{{"id": "disk", "type": "local", "path": "{}"}}]}}"#,
        f.data.display(),
        f.store.display()
    );
    let dry = run(
        &job(&text),
        &Options {
            dry_run: true,
            ..Options::default()
        },
    );
    assert!(dry.success(), "{}", dry.table());
    assert!(killed.exists(), "a dry run removed a file");
    let report = run_job(&text);
    assert!(report.success(), "{}", report.table());
    assert!(!killed.exists(), "partial of the killed run left");
    assert!(
        !f.store.join("accounts/20200101000000").exists(),
        "its emptied directory left"
    );
    assert!(other.exists(), "another source's partial was touched");
}

/// A source that owns a resource: records the engine's calls to its steps; its stream
/// fails after some bytes when `fail` is set.
#[derive(Default)]
struct Owning {
    fail: bool,
    payload: bool,
    calls: std::sync::Mutex<Vec<String>>,
}

impl Owning {
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
    fn note(&self, what: &str) {
        self.calls.lock().unwrap().push(what.to_owned());
    }
}

struct FailingStream(bool, std::io::Cursor<Vec<u8>>);

impl Read for FailingStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.1.read(buf)
    }
}

impl crate::source::SourceStream for FailingStream {
    fn finish(self: Box<Self>) -> Result<(), crate::source::SourceError> {
        if self.0 {
            Err(crate::source::SourceError::Unavailable {
                retry: crate::source::Retry::Permanent,
                message: "dump died".into(),
            })
        } else {
            Ok(())
        }
    }
}

impl Source for std::sync::Arc<Owning> {
    fn id(&self) -> &str {
        "db"
    }
    fn name(&self) -> &str {
        "db"
    }
    fn kind(&self) -> &'static str {
        "rds"
    }
    fn suffix(&self) -> &'static str {
        "sql"
    }
    fn check(&self, _: Cancel) -> Result<(), crate::source::SourceError> {
        Ok(())
    }
    fn open(
        &self,
        _: Cancel,
    ) -> Result<Box<dyn crate::source::SourceStream>, crate::source::SourceError> {
        self.note("open");
        Ok(Box::new(FailingStream(
            self.fail,
            std::io::Cursor::new(b"SELECT 1;\n".repeat(100)),
        )))
    }
    fn prepare(
        &self,
        owner: &crate::source::Owner,
        _: Cancel,
    ) -> Result<Vec<String>, crate::source::CleanupError> {
        self.note(&format!("prepare {}/{}", owner.job, owner.source));
        Err(crate::source::CleanupError {
            resource: "RDS instance tmp-old-1".into(),
            message: "AccessDenied".into(),
            retry: crate::source::Retry::Permanent,
        })
    }
    fn cleanup(&self, _: Cancel) -> Vec<crate::source::CleanupError> {
        self.note("cleanup");
        vec![crate::source::CleanupError {
            resource: "RDS instance tmp-db-2".into(),
            message: "InvalidDBInstanceState".into(),
            retry: crate::source::Retry::Transient,
        }]
    }
    fn payload(&self) -> bool {
        self.payload
    }
    fn make(&self, _: Cancel) -> Result<Vec<String>, crate::source::SourceError> {
        self.note("make");
        Ok(vec!["snap-1".into(), "snap-2".into()])
    }
}

fn run_owning(fail: bool, payload: bool) -> (SourceReport, Vec<String>, Fixture) {
    let f = fixture();
    let j = job(&format!(
        r#"{{"sources": [{{"id": "db", "type": "folder", "path": "{0}", "passphrase": "p"}}],
          "destinations": [{{"id": "disk", "type": "local", "path": "{1}"}}]}}"#,
        f.data.display(),
        f.store.display()
    ));
    let targets = build_targets(&j);
    let owning = std::sync::Arc::new(Owning {
        fail,
        payload,
        ..Owning::default()
    });
    let r = run_source(
        &j.sources[0],
        Ok(Box::new(owning.clone())),
        &targets,
        RunStamp::now(),
        &Options::default(),
        "host:/etc/job.json",
    );
    (r, owning.calls(), f)
}

#[test]
fn the_engine_always_runs_a_sources_cleanup_and_reports_what_it_left() {
    for fail in [false, true] {
        let (r, calls, f) = run_owning(fail, true);
        assert_eq!(
            calls,
            ["prepare host:/etc/job.json/db", "open", "cleanup"],
            "fail={fail}"
        );
        // Stored or not, both the leftover that could not go and the resource this run
        // could not release fail the source, named.
        assert_eq!(r.failure.is_some(), fail, "{r:?}");
        let cleanup: Vec<&str> = r.cleanup.iter().map(|c| c.message.as_str()).collect();
        assert_eq!(
            cleanup,
            [
                "source 'db': cleanup: RDS instance tmp-old-1: AccessDenied",
                "source 'db': cleanup: RDS instance tmp-db-2: InvalidDBInstanceState"
            ]
        );
        assert!(r.cleanup.iter().all(|c| c.stage == Stage::Cleanup));
        assert!(!r.succeeded());
        assert!(r.error_text().contains("tmp-db-2"), "{}", r.error_text());
        assert_eq!(objects_under(&f.store).is_empty(), fail);
    }
}

#[test]
fn a_source_without_payload_reports_what_it_made_and_writes_no_object() {
    let (r, calls, f) = run_owning(false, false);
    assert_eq!(calls, ["prepare host:/etc/job.json/db", "make", "cleanup"]);
    assert_eq!(r.made, ["snap-1", "snap-2"]);
    assert!(r.object.is_none() && r.destinations.is_empty(), "{r:?}");
    assert!(objects_under(&f.store).is_empty());
    let mut report = RunReport::new(RunStamp::now(), "h".into(), false);
    report.sources.push(r);
    let rows = report.rows();
    assert!(rows
        .iter()
        .any(|row| row.status == Status::Ok && row.object.as_deref() == Some("snap-1 snap-2")));
    assert!(rows
        .iter()
        .any(|row| row.destination == "cleanup" && !row.status.is_ok()));
}

fn objects_under(store: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![store.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.path().is_dir() {
                dirs.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

/// Objects of one destination being written now, and the most seen at once.
#[derive(Default)]
struct InFlight {
    now: AtomicUsize,
    most: AtomicUsize,
}

/// A local destination that counts its writers in flight and takes `limit` at once.
struct Counted {
    inner: LocalDestination,
    flight: std::sync::Arc<InFlight>,
    limit: Option<std::num::NonZeroUsize>,
}

struct CountedWriter {
    inner: Option<Box<dyn ObjectWriter>>,
    flight: std::sync::Arc<InFlight>,
}

impl std::io::Write for CountedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.inner.as_mut() {
            Some(w) => w.write(buf),
            None => Ok(0),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.as_mut().map_or(Ok(()), |w| w.flush())
    }
}

impl ObjectWriter for CountedWriter {
    fn commit(mut self: Box<Self>) -> Result<(), DestinationError> {
        match self.inner.take() {
            Some(w) => w.commit(),
            None => Ok(()),
        }
    }
    fn abort(mut self: Box<Self>) {
        if let Some(w) = self.inner.take() {
            w.abort();
        }
    }
}

impl Drop for CountedWriter {
    fn drop(&mut self) {
        self.flight.now.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Destination for Counted {
    fn id(&self) -> &str {
        self.inner.id()
    }
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn check(&self) -> Result<(), DestinationError> {
        self.inner.check()
    }
    fn create(&self, name: &str) -> Result<Box<dyn ObjectWriter>, DestinationError> {
        let w = self.inner.create(name)?;
        let n = self.flight.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.flight.most.fetch_max(n, Ordering::SeqCst);
        // Long enough for the other sources to start writing too, if they may.
        std::thread::sleep(std::time::Duration::from_millis(200));
        Ok(Box::new(CountedWriter {
            inner: Some(w),
            flight: self.flight.clone(),
        }))
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, DestinationError> {
        self.inner.list(prefix)
    }
    fn open(&self, name: &str) -> Result<Box<dyn Read + Send>, DestinationError> {
        self.inner.open(name)
    }
    fn delete(&self, name: &str) -> Result<(), DestinationError> {
        self.inner.delete(name)
    }
    fn max_uploads(&self) -> Option<std::num::NonZeroUsize> {
        self.limit
    }
}

/// Two sources at once to a destination that takes one upload at a time: never two of its
/// objects in flight, and every copy stored; without the limit they do overlap.
#[test]
fn a_destination_gets_no_more_uploads_at_once_than_it_takes() {
    let f = fixture();
    let j = job(&format!(
        r#"{{"max_parallel_sources": 2, "sources": [
            {{"id": "a", "type": "folder", "path": "{0}", "passphrase": "p"}},
            {{"id": "b", "type": "folder", "path": "{0}", "passphrase": "p"}}],
          "destinations": [{{"id": "one", "type": "local", "path": "{1}"}}]}}"#,
        f.data.display(),
        f.store.display()
    ));
    for (limit, most) in [(crate::destination::ONE_UPLOAD, 1), (None, 2)] {
        let flight = std::sync::Arc::new(InFlight::default());
        let targets = vec![Target {
            config: j.destinations[0].clone(),
            built: Ok(Box::new(Counted {
                inner: LocalDestination::new("one", &f.store),
                flight: flight.clone(),
                limit,
            })),
            uploads: Uploads::new(limit),
        }];
        let stamp = RunStamp::now();
        let reports = parallel::run_each(&j.sources, 2, |s| {
            run_source(
                s,
                build_source(s),
                &targets,
                stamp,
                &Options::default(),
                "job",
            )
        });
        let ids: Vec<&str> = reports.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        for r in &reports {
            assert!(
                r.failure.is_none() && r.destinations[0].failure().is_none(),
                "{r:?}"
            );
        }
        assert_eq!(flight.most.load(Ordering::SeqCst), most, "limit {limit:?}");
        std::fs::remove_dir_all(&f.store).unwrap();
        std::fs::create_dir(&f.store).unwrap();
    }
}
