//! Restores that must not be turned against the host: hostile archives built in the test
//! (directory/FIFO/symlink at one path, directory then FIFO, symlink then file, hard links and
//! names leading outside, a device node) and copies that fail their checks (wrong sidecar,
//! flipped byte in the OpenPGP body, truncated). Each case runs the real binary under a
//! deadline; nothing outside the target changes and a failed restore leaves the target empty.

use crate::common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use common::*;
use serde_json::json;

/// A hostile case must finish (refused or restored) well within this.
const CASE_DEADLINE: Duration = Duration::from_secs(30);

/// One raw tar member: path, type, mode, link target, data, device numbers.
struct Member<'a> {
    path: &'a [u8],
    kind: tar::EntryType,
    mode: u32,
    link: &'a [u8],
    data: &'a [u8],
    device: (u32, u32),
}

fn m<'a>(path: &'a [u8], kind: tar::EntryType, link: &'a [u8], data: &'a [u8]) -> Member<'a> {
    Member {
        path,
        kind,
        mode: if kind.is_dir() { 0o755 } else { 0o644 },
        link,
        data,
        device: (0, 0),
    }
}

/// A tar with raw member names and types, bypassing the tar crate's own checks.
fn raw_tar(members: &[Member<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for mb in members {
        let mut h = tar::Header::new_gnu();
        {
            let old = h.as_old_mut();
            old.name[..mb.path.len()].copy_from_slice(mb.path);
            old.linkname[..mb.link.len()].copy_from_slice(mb.link);
        }
        h.set_entry_type(mb.kind);
        h.set_size(mb.data.len() as u64);
        h.set_mode(mb.mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_000_000_000);
        h.set_device_major(mb.device.0).expect("major");
        h.set_device_minor(mb.device.1).expect("minor");
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(mb.data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

/// Mode, mtime, size and content of everything under `root` (symlinks not followed).
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (u32, i64, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let meta = fs::symlink_metadata(&p).expect("meta");
        let content = if meta.is_file() {
            fs::read(&p).expect("read")
        } else {
            Vec::new()
        };
        out.insert(p.clone(), (meta.mode(), meta.mtime(), content));
        if meta.is_dir() {
            for e in fs::read_dir(&p).expect("dir") {
                stack.push(e.expect("entry").path());
            }
        }
    }
    out
}

/// `backup restore CFG --source ID --to TARGET` with a deadline (a hang fails the test).
fn restore_deadline(cfg: &Path, id: &str, target: &Path) -> Run {
    restore_paths(cfg, id, target, &[])
}

/// A restore of only the members `paths` select (`--path`), under the deadline.
fn restore_paths(cfg: &Path, id: &str, target: &Path, paths: &[&[u8]]) -> Run {
    let child = Command::new(bin())
        .args([
            "restore".as_ref(),
            cfg.as_os_str(),
            "--source".as_ref(),
            id.as_ref(),
            "--to".as_ref(),
            target.as_os_str(),
        ])
        .args(
            paths
                .iter()
                .flat_map(|p| ["--path".as_ref(), std::ffi::OsStr::from_bytes(p)]),
        )
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn backup");
    let out = wait_with_deadline(child, CASE_DEADLINE, &format!("restore of {id}"));
    Run {
        status: out.status,
        stdout: out.stdout,
        stderr: out.stderr,
    }
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn hostile_archives_change_nothing_outside_the_target() {
    let t = tempfile::tempdir().expect("tempdir");
    let outside = t.path().join("outside");
    fs::create_dir_all(outside.join("dir")).expect("mkdir");
    let victim = outside.join("victim");
    fs::write(&victim, b"precious\n").expect("write");
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o640)).expect("chmod");
    fs::File::open(&victim)
        .expect("open")
        .set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1_500_000_000))
        .expect("mtime");
    let victim_b = victim.as_os_str().as_bytes().to_vec();
    let abs_evil = outside.join("dir/evil");
    let abs_evil_b = abs_evil.as_os_str().as_bytes().to_vec();
    use tar::EntryType as E;
    let setuid_dir = Member {
        mode: 0o4777,
        ..m(b"a/", E::Directory, b"", b"")
    };
    let cases: Vec<(&str, Vec<u8>, &[&str])> = vec![
        (
            "dir-fifo-symlink",
            raw_tar(&[
                setuid_dir,
                m(b"a", E::Fifo, b"", b""),
                m(b"a", E::Symlink, &victim_b, b""),
            ]),
            &["\"a\"", "directory"],
        ),
        (
            "dir-then-fifo",
            raw_tar(&[m(b"b/", E::Directory, b"", b""), m(b"b", E::Fifo, b"", b"")]),
            &["\"b\"", "directory"],
        ),
        (
            "symlink-then-file",
            raw_tar(&[
                m(b"s", E::Symlink, &victim_b, b""),
                m(b"s", E::Regular, b"", b"pwned\n"),
            ]),
            &["\"s\"", "symlink"],
        ),
        (
            "symlink-dir-then-member",
            raw_tar(&[
                m(b"d", E::Symlink, outside.as_os_str().as_bytes(), b""),
                m(b"d/victim", E::Regular, b"", b"pwned\n"),
            ]),
            &["d/victim", "unsafe"],
        ),
        (
            "hardlink-absolute",
            raw_tar(&[m(b"h", E::Link, &victim_b, b"")]),
            &["\"h\"", "outside"],
        ),
        (
            "hardlink-dotdot",
            raw_tar(&[m(b"h", E::Link, b"../outside/victim", b"")]),
            &["\"h\"", "outside"],
        ),
        (
            "absolute-name",
            raw_tar(&[m(&abs_evil_b, E::Regular, b"", b"pwned\n")]),
            &["evil", "outside"],
        ),
        (
            "dotdot-name",
            raw_tar(&[m(b"x/../../evil", E::Regular, b"", b"pwned\n")]),
            &["evil", "outside"],
        ),
    ];
    let dest = t.path().join("dest");
    let mut job = Job::new(t.path());
    for (id, tar, _) in &cases {
        let dir = dest.join(id).join("20240101000000");
        fs::create_dir_all(&dir).expect("mkdir");
        fs::write(dir.join(format!("{id}.tar.gz")), gzip(tar)).expect("write object");
        job.source(
            json!({"id": id, "type": "folder", "path": outside, "compress_only": 1,
                          "layout": "original"}),
        );
    }
    job.destination(local_destination("disk", &dest));
    let cfg = job.write();
    let before = snapshot(&outside);
    let top_before = entries(t.path());
    // Each case twice: whole, and with --path selecting its hostile member (a partial
    // restore has the same guarantees). The path names the member as stored, minus a leading
    // `/` (a pattern is relative), or its first directory when it goes through one.
    let selected = |id: &str| -> Vec<u8> {
        let (_, tar, _) = cases.iter().find(|(c, _, _)| *c == id).expect("case");
        let name = &tar[..100];
        let name = &name[..name.iter().position(|b| *b == 0).unwrap_or(100)];
        let name = name.strip_prefix(b"/").unwrap_or(name);
        match id {
            "symlink-dir-then-member" | "dotdot-name" => name[..1].to_vec(),
            _ => name.to_vec(),
        }
    };
    let runs = cases
        .iter()
        .flat_map(|(id, _, needles)| [(*id, *needles, false), (*id, *needles, true)]);
    for (id, needles, partial) in runs {
        let target = t.path().join(format!("target-{id}"));
        let r = if partial {
            restore_paths(&cfg, id, &target, &[&selected(id)])
        } else {
            restore_deadline(&cfg, id, &target)
        };
        let id = &format!("{id}{}", if partial { " (--path)" } else { "" });
        assert_eq!(r.code(), Some(1), "{id}: expected exit 1\n{}", r.describe());
        let text = r.stderr_text();
        for n in needles {
            assert!(
                text.contains(n),
                "{id}: message lacks {n:?}\n{}",
                r.describe()
            );
        }
        assert!(
            text.contains(&format!("nothing was restored into {}", target.display())),
            "{id}: does not say nothing was restored\n{}",
            r.describe()
        );
        assert!(
            !target.exists(),
            "{id}: the target this restore created is left: {:?}",
            entries(&target)
        );
        assert_eq!(
            snapshot(&outside),
            before,
            "{id}: something outside changed"
        );
        assert!(!t.path().join("evil").exists(), "{id}");
        assert_eq!(
            entries(t.path()),
            top_before,
            "{id}: new files beside the target"
        );
    }
}

/// A device node is made with mknod as root; otherwise it is skipped with a warning naming it
/// and the rest is restored.
#[test]
fn device_nodes_need_root_and_are_named_when_skipped() {
    let t = tempfile::tempdir().expect("tempdir");
    let dest = t.path().join("dest");
    let dir = dest.join("dev/20240101000000");
    fs::create_dir_all(&dir).expect("mkdir");
    use tar::EntryType as E;
    let null = Member {
        device: (1, 3),
        mode: 0o666,
        ..m(b"./tree/null", E::Char, b"", b"")
    };
    let tar = raw_tar(&[
        m(b"./tree/", E::Directory, b"", b""),
        null,
        m(b"./tree/file", E::Regular, b"", b"kept\n"),
    ]);
    fs::write(dir.join("dev.tar.gz"), gzip(&tar)).expect("write object");
    let mut job = Job::new(t.path());
    job.source(
        json!({"id": "dev", "type": "folder", "path": "/nonexistent", "compress_only": 1,
                      "layout": "original"}),
    )
    .destination(local_destination("disk", &dest));
    let cfg = job.write();
    let target = t.path().join("target");
    let r = restore_deadline(&cfg, "dev", &target);
    r.assert_code(0);
    assert_eq!(fs::read(target.join("tree/file")).expect("file"), b"kept\n");
    let node = fs::symlink_metadata(target.join("tree/null"));
    if is_root() {
        let node = node.expect("device node made as root");
        assert!(node.file_type().is_char_device(), "{node:?}");
        assert_eq!(node.rdev(), rustix::fs::makedev(1, 3));
    } else {
        assert!(node.is_err(), "a device was restored as something else");
        assert!(
            r.stderr_text()
                .contains("tree/null: character device not restored"),
            "{}",
            r.describe()
        );
    }
}

/// Copies that fail a check (sidecar, OpenPGP MDC/packet, truncation) restore nothing, exit 1;
/// `--to -` exits 1 and says the output must be discarded.
#[test]
fn copies_failing_their_checks_restore_nothing() {
    let t = tempfile::tempdir().expect("tempdir");
    let src = t.path().join("src/data");
    fs::create_dir_all(&src).expect("mkdir");
    // Incompressible content, so that the archive is large enough to be cut in the middle.
    let noise: Vec<u8> = (0..400_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(src.join("noise.bin"), &noise).expect("write");
    fs::write(src.join("small.txt"), b"small\n").expect("write");
    let dest = t.path().join("dest");
    let mut job = Job::new(t.path());
    for id in ["sidecar", "flipped", "truncated"] {
        job.source(folder_source(id, &src));
    }
    job.destination(local_destination("disk", &dest));
    let cfg = job.write();
    run_job(&cfg).assert_code(0);
    let damage = |id: &str| {
        let object = only_object(&dest, id);
        match id {
            "sidecar" => {
                let sidecar = PathBuf::from(format!("{}.sha256", object.display()));
                let body = fs::read_to_string(&sidecar).expect("sidecar");
                let flipped = if body.starts_with('0') { "1" } else { "0" };
                fs::write(&sidecar, format!("{flipped}{}", &body[1..])).expect("write");
            }
            "flipped" => {
                let mut bytes = fs::read(&object).expect("read");
                let at = bytes.len() * 2 / 3;
                bytes[at] ^= 0x10;
                fs::write(&object, bytes).expect("write");
            }
            _ => {
                let len = fs::metadata(&object).expect("meta").len();
                let f = fs::OpenOptions::new()
                    .write(true)
                    .open(&object)
                    .expect("open");
                f.set_len(len / 2).expect("truncate");
            }
        }
    };
    for id in ["sidecar", "flipped", "truncated"] {
        damage(id);
        let target = t.path().join(format!("target-{id}"));
        let r = restore_deadline(&cfg, id, &target);
        assert_eq!(r.code(), Some(1), "{id}\n{}", r.describe());
        assert!(
            !target.exists(),
            "{id}: the target this restore created is left: {:?}",
            entries(&target)
        );
        assert!(
            r.stderr_text().contains("nothing was restored"),
            "{id}\n{}",
            r.describe()
        );
        let r = restore_to(&cfg, id, Path::new("-"));
        assert_eq!(r.code(), Some(1), "{id} to stdout\n{}", r.describe());
        assert!(
            r.stderr_text().contains("must be discarded"),
            "{id} to stdout\n{}",
            r.describe()
        );
    }
}

/// SIGTERM mid-restore: exit 143 and nothing restored (the staging directory is removed).
#[test]
fn sigterm_mid_restore_leaves_nothing() {
    let t = tempfile::tempdir().expect("tempdir");
    let dest = t.path().join("dest");
    let dir = dest.join("many/20240101000000");
    fs::create_dir_all(&dir).expect("mkdir");
    let mut b = tar::Builder::new(Vec::new());
    let body = vec![b'x'; 1024];
    for i in 0..5000 {
        let mut h = tar::Header::new_gnu();
        h.set_path(format!("./tree/d{}/f{i}", i % 50))
            .expect("path");
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, &body[..]).expect("append");
    }
    fs::write(dir.join("many.tar.gz"), gzip(&b.into_inner().expect("tar"))).expect("object");
    let mut job = Job::new(t.path());
    job.source(
        json!({"id": "many", "type": "folder", "path": "/nonexistent", "compress_only": 1,
                      "layout": "original"}),
    )
    .destination(local_destination("disk", &dest));
    let cfg = job.write();
    let target = t.path().join("target");
    fs::create_dir_all(&target).expect("mkdir target");
    let child = Command::new(bin())
        .args([
            "restore".as_ref(),
            cfg.as_os_str(),
            "--source".as_ref(),
            "many".as_ref(),
        ])
        .arg("--to")
        .arg(&target)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("pid");
    // Catch it while it unpacks: stop it as soon as its staging directory exists.
    let deadline = std::time::Instant::now() + CASE_DEADLINE;
    while entries(&target).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no staging directory appeared"
        );
        std::thread::yield_now();
    }
    rustix::process::kill_process(pid, rustix::process::Signal::STOP).expect("SIGSTOP");
    let staged = entries(&target);
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
    rustix::process::kill_process(pid, rustix::process::Signal::CONT).expect("SIGCONT");
    let out = wait_with_deadline(child, CASE_DEADLINE, "interrupted restore");
    let r = Run {
        status: out.status,
        stdout: out.stdout,
        stderr: out.stderr,
    };
    assert!(
        staged.iter().all(|n| n.starts_with(".custos-restore-")),
        "something was restored before the stream verified: {staged:?}"
    );
    r.assert_code(143);
    assert_eq!(entries(&target), Vec::<String>::new(), "{}", r.describe());
}
