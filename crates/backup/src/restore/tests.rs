//! Restore, list and verify against local destinations, with archives built in the test.

use super::*;
use crate::cancel::Cancel;
use crate::crypto::gpg_test::GpgHome;
use crate::crypto::{Encryption, Passphrase};
use crate::destination::local::LocalDestination;
use crate::destination::{ObjectInfo, ObjectWriter};
use crate::engine::pipeline::{self, Plan};
use crate::naming::Encoding;
use crate::source::{SourceError, SourceStream};
use std::fs::{self, File, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

struct Bytes(io::Cursor<Vec<u8>>);

impl Read for Bytes {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl SourceStream for Bytes {
    fn finish(self: Box<Self>) -> Result<(), SourceError> {
        Ok(())
    }
}

/// A source stream of `data` (the verify tests use it too).
pub(super) fn stream(data: Vec<u8>) -> Box<dyn SourceStream> {
    Box::new(Bytes(io::Cursor::new(data)))
}

fn have_tar() -> bool {
    Command::new("tar")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A tree with the awkward cases; returns its root (`parent/base`).
fn awkward_tree(parent: &Path) -> PathBuf {
    let base = parent.join("base");
    fs::create_dir_all(base.join("empty dir")).expect("mkdir");
    fs::create_dir_all(base.join("ro")).expect("mkdir");
    fs::write(base.join("ro/inside"), b"in a read-only dir").expect("write");
    fs::write(base.join("name with spaces\nand newline"), b"x").expect("write");
    let non_utf8 = std::ffi::OsStr::from_bytes(b"bytes-\xff\xfe");
    fs::write(base.join(non_utf8), b"non-utf8 name").expect("write");
    let long = "d".repeat(60);
    let deep = base.join(&long).join(&long);
    fs::create_dir_all(&deep).expect("mkdir");
    fs::write(deep.join("f".repeat(90)), b"long path").expect("write");
    fs::write(base.join("exec.sh"), b"#!/bin/sh\n").expect("write");
    fs::set_permissions(base.join("exec.sh"), fs::Permissions::from_mode(0o751)).expect("chmod");
    std::os::unix::fs::symlink("exec.sh", base.join("link")).expect("symlink");
    std::os::unix::fs::symlink("/nonexistent/target", base.join("dangling")).expect("ln");
    fs::hard_link(base.join("exec.sh"), base.join("hard")).expect("hard link");
    let sparse = File::create(base.join("sparse")).expect("create");
    sparse.set_len(64 << 20).expect("set_len");
    drop(sparse);
    let mut f = OpenOptions::new()
        .write(true)
        .open(base.join("sparse"))
        .expect("open");
    io::Seek::seek(&mut f, io::SeekFrom::Start(32 << 20)).expect("seek");
    f.write_all(b"data in the middle").expect("write");
    drop(f);
    let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    File::open(base.join("exec.sh"))
        .expect("open")
        .set_modified(old)
        .expect("mtime");
    fs::set_permissions(base.join("ro"), fs::Permissions::from_mode(0o555)).expect("chmod");
    base
}

/// `tar cf - ./base` from the parent, as the original does (GNU format, sparse).
fn tar_like_original(parent: &Path) -> Vec<u8> {
    let out = Command::new("tar")
        .current_dir(parent)
        .args(["--sparse", "-cf", "-", "./base"])
        .output()
        .expect("tar");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Compares two trees: names, types, modes, mtimes of files, contents, link targets.
fn assert_same_tree(a: &Path, b: &Path) {
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let (pa, pb) = (a.join(&rel), b.join(&rel));
        let (ma, mb) = (
            fs::symlink_metadata(&pa).expect("a"),
            fs::symlink_metadata(&pb).unwrap_or_else(|e| panic!("{}: {e}", pb.display())),
        );
        assert_eq!(ma.file_type(), mb.file_type(), "{}", rel.display());
        assert_eq!(ma.mode(), mb.mode(), "mode of {}", rel.display());
        if ma.file_type().is_symlink() {
            assert_eq!(fs::read_link(&pa).ok(), fs::read_link(&pb).ok());
        } else if ma.is_file() {
            assert_eq!(ma.mtime(), mb.mtime(), "mtime of {}", rel.display());
            assert!(
                fs::read(&pa).ok() == fs::read(&pb).ok(),
                "{}",
                rel.display()
            );
        } else if ma.is_dir() {
            assert_eq!(ma.mtime(), mb.mtime(), "mtime of dir {}", rel.display());
            let mut names: Vec<_> = fs::read_dir(&pa)
                .expect("dir")
                .map(|e| e.expect("e").file_name())
                .collect();
            let mut names_b: Vec<_> = fs::read_dir(&pb)
                .expect("dir")
                .map(|e| e.expect("e").file_name())
                .collect();
            names.sort();
            names_b.sort();
            assert_eq!(names, names_b, "{}", rel.display());
            stack.extend(names.into_iter().map(|n| rel.join(n)));
        }
    }
}

fn setup() -> (tempfile::TempDir, LocalDestination, LocalDestination) {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = LocalDestination::new("a", dir.path().join("dest-a"));
    let b = LocalDestination::new("b", dir.path().join("dest-b"));
    fs::create_dir_all(a.root()).expect("mkdir");
    fs::create_dir_all(b.root()).expect("mkdir");
    (dir, a, b)
}

fn name(id: &str, stamp: &str, payload: Payload, encoding: Encoding) -> ObjectName {
    ObjectName {
        source_id: id.into(),
        stamp: RunStamp::parse(stamp).expect("stamp"),
        database: None,
        payload,
        encoding,
    }
}

fn opts(id: &str, target: RestoreTarget, dec: Option<Decryption>) -> RestoreOptions {
    RestoreOptions {
        source_id: id.into(),
        at: None,
        destination: None,
        database: None,
        paths: Vec::new(),
        target,
        decryption: dec,
        cancel: Cancel::new(),
    }
}

#[test]
fn folder_round_trip_through_pipeline_and_restore() {
    if !have_tar() {
        eprintln!("SKIP: GNU tar not installed");
        return;
    }
    let (dir, a, b) = setup();
    let src_parent = dir.path().join("src");
    fs::create_dir_all(&src_parent).expect("mkdir");
    let base = awkward_tree(&src_parent);
    let tar = tar_like_original(&src_parent);
    let pass = Passphrase::new("pw");
    let n = name("www", "20240101120000", Payload::Tar, Encoding::CUSTOS);
    let out = pipeline::run(
        stream(tar),
        &Plan::custos(Encryption::Passphrase(pass.clone())),
        &n.path(),
        &[&a, &b],
        None,
    )
    .expect("backup");
    assert!(out.all_ok());
    let target = dir.path().join("restored");
    let restored = restore(
        &[&a, &b],
        opts(
            "www",
            RestoreTarget::Directory(target.clone()),
            Some(Decryption::Passphrase(pass)),
        ),
    )
    .expect("restore");
    assert_eq!(restored.copy.destination, "a");
    assert_eq!(restored.sidecar, SidecarCheck::Match);
    assert_eq!(restored.sha256, out.sha256);
    assert_same_tree(&base, &target.join("base"));
    let m = |p: &str| fs::metadata(target.join("base").join(p)).expect("meta");
    assert_eq!(m("exec.sh").ino(), m("hard").ino(), "hard link kept");
    assert!(
        m("sparse").blocks() * 512 < 4 << 20,
        "sparse file kept its holes"
    );
    fs::set_permissions(base.join("ro"), fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::set_permissions(target.join("base/ro"), fs::Permissions::from_mode(0o755)).expect("chmod");
}

#[test]
fn restores_the_originals_layouts() {
    if !have_tar() {
        eprintln!("SKIP: GNU tar not installed");
        return;
    }
    let Some(gpg) = GpgHome::new() else { return };
    let (dir, a, _b) = setup();
    let src_parent = dir.path().join("src");
    fs::create_dir_all(&src_parent).expect("mkdir");
    let base = src_parent.join("base");
    fs::create_dir_all(base.join("sub")).expect("mkdir");
    fs::write(
        base.join("sub/file.txt"),
        b"hello from the original\n".repeat(1000),
    )
    .expect("write");
    let tar = tar_like_original(&src_parent);
    // `.tar.gpg` as the original writes it: gpg --passphrase-fd 0 -c (zlib inside).
    let enc = gpg.encrypt_like_original(&tar, "orig");
    let n = name("site", "20230101010101", Payload::Tar, Encoding::ORIGINAL);
    fs::create_dir_all(a.root().join("site/20230101010101")).expect("mkdir");
    fs::write(a.root().join(n.path()), enc).expect("write object");
    // `.tar.gz` from compress_only: gzip --fast.
    let gz = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&tar).expect("gzip");
        e.finish().expect("gzip")
    };
    let n2 = name(
        "plain",
        "20230101010101",
        Payload::Tar,
        Encoding::COMPRESS_ONLY,
    );
    fs::create_dir_all(a.root().join("plain/20230101010101")).expect("mkdir");
    fs::write(a.root().join(n2.path()), gz).expect("write object");

    let t1 = dir.path().join("r1");
    let r = restore(
        &[&a],
        opts(
            "site",
            RestoreTarget::Directory(t1.clone()),
            Some(Decryption::Passphrase(Passphrase::new("orig"))),
        ),
    )
    .expect("restore .tar.gpg");
    assert_eq!(r.sidecar, SidecarCheck::Missing);
    assert_same_tree(&base, &t1.join("base"));
    let t2 = dir.path().join("r2");
    restore(
        &[&a],
        opts("plain", RestoreTarget::Directory(t2.clone()), None),
    )
    .expect("restore .tar.gz");
    assert_same_tree(&base, &t2.join("base"));
    // What custos writes in the original's layout, gpg -d gives back as the tar itself.
    let n3 = name("again", "20230101010101", Payload::Tar, Encoding::ORIGINAL);
    pipeline::run(
        stream(tar.clone()),
        &Plan::original(Encryption::Passphrase(Passphrase::new("orig"))),
        &n3.path(),
        &[&a],
        None,
    )
    .expect("backup");
    let obj = a.root().join(n3.path());
    let out = gpg.decrypt_with_passphrase(&obj, "orig");
    assert!(out == tar, "gpg -d of the original layout is the tar");
}

#[test]
fn sql_dump_to_directory_and_to_a_writer_with_at_and_destination() {
    let (dir, a, b) = setup();
    let pass = Passphrase::new("db");
    for (stamp, body) in [
        ("20240101000000", "old dump"),
        ("20240102000000", "new dump"),
    ] {
        let n = name("db", stamp, Payload::Sql, Encoding::CUSTOS);
        let dests: Vec<&dyn Destination> = vec![&a, &b];
        pipeline::run(
            stream(body.as_bytes().to_vec()),
            &Plan::custos(Encryption::Passphrase(pass.clone())),
            &n.path(),
            &dests,
            None,
        )
        .expect("backup");
    }
    let l = list(&[&a, &b], None);
    assert!(l.errors.is_empty());
    let order: Vec<(String, String)> = l
        .copies
        .iter()
        .map(|c| (c.name.stamp.to_string(), c.destination.clone()))
        .collect();
    assert_eq!(
        order,
        vec![
            ("20240102000000".into(), "a".into()),
            ("20240102000000".into(), "b".into()),
            ("20240101000000".into(), "a".into()),
            ("20240101000000".into(), "b".into()),
        ]
    );
    assert!(l.copies.iter().all(|c| c.has_sidecar));
    assert!(l.copies[0].age() > chrono::TimeDelta::zero());

    let target = dir.path().join("dump");
    let r = restore(
        &[&a, &b],
        opts(
            "db",
            RestoreTarget::Directory(target.clone()),
            Some(Decryption::Passphrase(pass.clone())),
        ),
    )
    .expect("restore");
    assert_eq!(
        fs::read_to_string(target.join("db.sql")).expect("dump"),
        "new dump"
    );
    assert_eq!(r.written_to, Some(target.join("db.sql")));

    let shared = Arc::new(Mutex::new(Vec::new()));
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut o = opts(
        "db",
        RestoreTarget::Writer(Box::new(Shared(shared.clone()))),
        Some(Decryption::Passphrase(pass.clone())),
    );
    o.at = RunStamp::parse("20240101000000");
    o.destination = Some("b".into());
    let r = restore(&[&a, &b], o).expect("restore old from b");
    assert_eq!(r.copy.destination, "b");
    assert_eq!(shared.lock().expect("lock").as_slice(), b"old dump");

    let mut o = opts("db", RestoreTarget::Directory(target.clone()), None);
    o.at = RunStamp::parse("20200101000000");
    let err = restore(&[&a, &b], o).expect_err("no such copy");
    assert!(err.to_string().contains("20200101000000"), "{err}");
    let err = restore(
        &[&a],
        opts("db", RestoreTarget::Directory(dir.path().join("x")), None),
    )
    .expect_err("needs a key");
    assert!(matches!(err, RestoreError::NeedKey { .. }), "{err}");
    let err = restore(
        &[&a],
        opts(
            "db",
            RestoreTarget::Directory(dir.path().join("y")),
            Some(Decryption::Passphrase(Passphrase::new("wrong"))),
        ),
    )
    .expect_err("wrong passphrase");
    assert!(err.to_string().contains("wrong passphrase"), "{err}");
}

#[test]
fn verify_detects_corruption_and_checksum_mismatch() {
    let (_dir, a, b) = setup();
    let pass = Passphrase::new("v");
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let n = name("v", "20240101000000", Payload::Sql, Encoding::CUSTOS);
    pipeline::run(
        stream(data),
        &Plan::custos(Encryption::Passphrase(pass.clone())),
        &n.path(),
        &[&a, &b],
        None,
    )
    .expect("backup");
    let keys = |_: &str| Some(Decryption::Passphrase(pass.clone()));
    let reports = verify(
        &[&a, &b],
        &["v".into(), "missing".into()],
        &keys,
        Choice::Newest,
    );
    assert_eq!(reports.len(), 4);
    for r in &reports[..2] {
        let v = r.result.as_ref().expect("verified");
        assert_eq!(v.sidecar, SidecarCheck::Match);
        assert_eq!(v.payload_bytes, 3_000_000);
    }
    assert!(matches!(
        reports[2].result,
        Err(RestoreError::NotFound { .. })
    ));
    // Flip a byte in the middle of a's copy: decoding fails, naming the object.
    let path = a.root().join(n.path());
    let mut bytes = fs::read(&path).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    fs::write(&path, &bytes).expect("write");
    let reports = verify(&[&a, &b], &["v".into()], &keys, Choice::Newest);
    let err = reports[0].result.as_ref().expect_err("corrupted");
    assert!(err.to_string().contains(&n.path()), "{err}");
    assert!(
        matches!(
            err,
            RestoreError::Corrupt { .. } | RestoreError::ChecksumMismatch { .. }
        ),
        "{err}"
    );
    assert!(reports[1].result.is_ok());
    // A wrong sidecar with an intact object is a checksum mismatch.
    bytes[mid] ^= 1;
    fs::write(&path, &bytes).expect("write");
    fs::write(
        a.root().join(n.sidecar()),
        naming::sidecar_body(&"0".repeat(64), "v.sql.zst.gpg"),
    )
    .expect("write sidecar");
    let reports = verify(&[&a], &["v".into()], &keys, Choice::Newest);
    assert!(
        matches!(
            reports[0].result,
            Err(RestoreError::ChecksumMismatch { .. })
        ),
        "{:?}",
        reports[0].result
    );
}

/// (member path, type, link target, data)
type RawMember<'a> = (&'a [u8], tar::EntryType, &'a [u8], &'a [u8]);

/// A tar with raw member names, bypassing the tar crate's own path checks.
fn raw_tar(members: &[RawMember<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for (path, kind, link, data) in members {
        let mut h = tar::Header::new_gnu();
        {
            let old = h.as_old_mut();
            old.name[..path.len()].copy_from_slice(path);
            old.linkname[..link.len()].copy_from_slice(link);
        }
        h.set_entry_type(*kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

#[test]
fn refuses_members_that_escape_the_target() {
    let (dir, a, _b) = setup();
    // A directory outside every target that the symlink case points at.
    let outside = dir.path().join("outside");
    fs::create_dir_all(&outside).expect("mkdir");
    let outside_bytes = outside.as_os_str().as_bytes().to_vec();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "dotdot",
            raw_tar(&[(b"../evil", tar::EntryType::Regular, b"", b"x")]),
        ),
        (
            "symlink",
            raw_tar(&[
                (b"link", tar::EntryType::Symlink, &outside_bytes, b""),
                (b"link/evil", tar::EntryType::Regular, b"", b"x"),
            ]),
        ),
    ];
    for (id, tar) in cases {
        let n = name(id, "20240101000000", Payload::Tar, Encoding::COMPRESS_ONLY);
        pipeline::run(stream(tar), &Plan::compress_only(), &n.path(), &[&a], None).expect("backup");
        let target = dir.path().join(format!("t-{id}"));
        let err =
            restore(&[&a], opts(id, RestoreTarget::Directory(target), None)).expect_err("refused");
        assert!(
            matches!(
                err,
                RestoreError::UnsafePath { .. } | RestoreError::Refused { .. }
            ),
            "{id}: {err}"
        );
        assert!(
            !dir.path().join(format!("t-{id}")).exists(),
            "{id}: the target this restore created (or its staging directory) is left"
        );
        assert!(!dir.path().join("evil").exists(), "{id}");
        assert!(!outside.join("evil").exists(), "{id}");
    }
}

#[test]
fn restore_via_gpg_of_a_recipient_encrypted_object() {
    let Some(gpg) = GpgHome::new() else { return };
    gpg.generate_key("Restore Test <restore@example.org>");
    let (dir, a, _b) = setup();
    let keys = crate::crypto::load_recipients_with_gnupg_home(
        &["restore@example.org".into()],
        None,
        Some(gpg.path()),
    )
    .expect("keys");
    let n = name("r", "20240101000000", Payload::Sql, Encoding::CUSTOS);
    pipeline::run(
        stream(b"SELECT 1;\n".to_vec()),
        &Plan::custos(Encryption::Recipients(keys)),
        &n.path(),
        &[&a],
        None,
    )
    .expect("backup");
    let target = dir.path().join("out");
    restore(
        &[&a],
        opts(
            "r",
            RestoreTarget::Directory(target.clone()),
            Some(Decryption::Gpg {
                gnupg_home: Some(gpg.path().to_path_buf()),
            }),
        ),
    )
    .expect("restore via gpg");
    assert_eq!(
        fs::read(target.join("r.sql")).expect("dump"),
        b"SELECT 1;\n"
    );
}

/// As non-root, a device node is skipped with a warning naming it; the rest is unpacked.
#[test]
fn device_nodes_are_skipped_with_a_warning_when_not_root() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut h = tar::Header::new_gnu();
    h.set_path("null").expect("path");
    h.set_entry_type(tar::EntryType::Char);
    h.set_device_major(1).expect("major");
    h.set_device_minor(3).expect("minor");
    h.set_size(0);
    h.set_mode(0o666);
    h.set_cksum();
    let mut b = tar::Builder::new(Vec::new());
    b.append(&h, io::empty()).expect("append");
    let mut f = tar::Header::new_gnu();
    f.set_path("file").expect("path");
    f.set_size(4);
    f.set_mode(0o644);
    f.set_cksum();
    b.append(&f, &b"data"[..]).expect("append");
    let tar = b.into_inner().expect("tar");
    let target = dir.path().join("t");
    let mut unpacker = Unpacker::new(&target, "obj", Cancel::new())
        .expect("unpacker")
        .acting_as_non_root();
    let mut archive = tar::Archive::new(&tar[..]);
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        assert!(unpacker.member(&mut entry).is_ok());
    }
    assert_eq!(
        unpacker.warnings(),
        ["null: character device not restored: making device nodes needs root"]
    );
    unpacker.commit().expect("commit");
    assert!(fs::symlink_metadata(target.join("null")).is_err());
    assert_eq!(fs::read(target.join("file")).expect("file"), b"data");
    assert_eq!(
        fs::read_dir(&target).expect("dir").count(),
        1,
        "staging left"
    );
}

/// A destination that only lists, as a store that normalizes keys does: `src//STAMP/x` and
/// `src/STAMP/x` both come back as `src/STAMP/x`.
struct Listed(Vec<ObjectInfo>);

impl Destination for Listed {
    fn id(&self) -> &str {
        "listed"
    }
    fn kind(&self) -> &'static str {
        "s3"
    }
    fn check(&self) -> Result<(), DestinationError> {
        Ok(())
    }
    fn create(&self, _: &str) -> Result<Box<dyn ObjectWriter>, DestinationError> {
        unreachable!("list only")
    }
    fn list(&self, _: &str) -> Result<Vec<ObjectInfo>, DestinationError> {
        Ok(self.0.clone())
    }
    fn open(&self, _: &str) -> Result<Box<dyn Read + Send>, DestinationError> {
        unreachable!("list only")
    }
    fn delete(&self, _: &str) -> Result<(), DestinationError> {
        unreachable!("list only")
    }
}

#[test]
fn a_name_listed_twice_is_one_copy() {
    let info = |name: &str| ObjectInfo {
        name: name.into(),
        size: 3,
        modified: None,
    };
    let d = Listed(vec![
        info("src/20200101000000/src.tar.zst.gpg"),
        info("src/20200101000000/src.tar.zst.gpg"),
        info("src/20200101000000/src.tar.zst.gpg.sha256"),
        info("src/20200101000000/src.tar.zst.gpg.sha256"),
    ]);
    let listing = crate::restore::list(&[&d], Some("src"));
    assert_eq!(listing.copies.len(), 1, "{:?}", listing.copies);
    assert!(listing.copies[0].has_sidecar);
}
