//! `type: btrfs` against a real btrfs filesystem: a loop file made with `mkfs.btrfs` and
//! mounted by the test (root only), a subvolume backed up in tar and send mode, restored
//! byte-identical (send mode through the real `btrfs receive`), and the snapshot gone after
//! every run, including one left by a killed run.

use crate::common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::json;

/// A btrfs filesystem in a loop file, mounted at `mnt`; unmounted and removed when dropped.
struct Btrfs {
    _dir: tempfile::TempDir,
    mnt: PathBuf,
}

impl Btrfs {
    /// Makes and mounts the filesystem; `None` (after printing why) where this machine
    /// cannot (not root, no btrfs-progs, no loop devices or btrfs in the kernel).
    fn mount(test: &str) -> Option<Btrfs> {
        if !require_tools(test, &["mkfs.btrfs", "btrfs", "mount", "umount", "tar"]) {
            return None;
        }
        // What the machine lacks (not a package CI installs) skips even in CI, loudly.
        let skip = |why: String| {
            eprintln!("SKIP: {test}: {why}");
            None
        };
        if !is_root() {
            return skip("mounting a loop file needs root".into());
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let img = dir.path().join("fs.img");
        let mnt = dir.path().join("mnt");
        fs::create_dir(&mnt).expect("mkdir");
        fs::File::create(&img)
            .and_then(|f| f.set_len(256 << 20))
            .expect("image file");
        run_ok(Command::new("mkfs.btrfs").arg("-q").arg(&img));
        let out = Command::new("mount")
            .args(["-o", "loop"])
            .arg(&img)
            .arg(&mnt)
            .output()
            .expect("mount");
        if !out.status.success() {
            return skip(format!(
                "loop devices unavailable (mount -o loop: {})",
                lossy(&out.stderr).trim()
            ));
        }
        Some(Btrfs { _dir: dir, mnt })
    }

    fn btrfs(&self, args: &[&str]) -> String {
        lossy(&run_ok(Command::new("btrfs").args(args)).stdout)
    }

    /// Paths of the subvolumes on the filesystem, relative to its top.
    fn subvolumes(&self) -> Vec<String> {
        self.btrfs(&["subvolume", "list", "-o", self.mnt.to_str().expect("utf-8")])
            .lines()
            .filter_map(|l| l.rsplit(" path ").next().map(str::to_owned))
            .collect()
    }

    /// A subvolume `name` at the top holding a tree of awkward names and contents.
    fn volume(&self, name: &str) -> PathBuf {
        let vol = self.mnt.join(name);
        self.btrfs(&["subvolume", "create", vol.to_str().expect("utf-8")]);
        tricky_tree(&vol, "tree");
        vol
    }
}

impl Drop for Btrfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mnt).status();
    }
}

fn btrfs_job(dir: &Path, source: serde_json::Value) -> (PathBuf, PathBuf) {
    let dest = dir.join("dest");
    let mut job = Job::new(dir);
    job.source(source)
        .destination(local_destination("disk", &dest));
    (job.write(), dest)
}

/// Tar mode: the restore is the subvolume's tree exactly; a snapshot a killed run left (of
/// older contents) is removed first and not what gets backed up; none is left afterwards.
#[test]
fn tar_mode_round_trips_and_leaves_no_snapshot() {
    let Some(fs_) = Btrfs::mount("tar_mode_round_trips_and_leaves_no_snapshot") else {
        return;
    };
    let vol = fs_.volume("vol");
    // What a kill -9 during an earlier run leaves: its snapshot, of what the data was then.
    fs::write(vol.join("stale-only-in-old-snapshot"), b"old").expect("write");
    fs::create_dir(fs_.mnt.join(".custos-vol-tar")).expect("mkdir");
    fs_.btrfs(&[
        "subvolume",
        "snapshot",
        "-r",
        vol.to_str().expect("utf-8"),
        fs_.mnt.join(".custos-vol-tar/vol").to_str().expect("utf-8"),
    ]);
    fs::remove_file(vol.join("stale-only-in-old-snapshot")).expect("rm");

    let t = tempfile::tempdir().expect("tempdir");
    let (cfg, dest) = btrfs_job(
        t.path(),
        json!({"id": "vol-tar", "name": "vol", "type": "btrfs", "path": vol,
               "passphrase": PASSPHRASE}),
    );
    let run = run_job(&cfg);
    run.assert_code(0);
    assert!(
        run.all_text().contains("interrupted earlier run"),
        "the leftover's removal is not reported\n{}",
        run.describe()
    );
    assert_eq!(fs_.subvolumes(), ["vol"], "a snapshot was left behind");
    assert!(!fs_.mnt.join(".custos-vol-tar").exists());
    let object = only_object(&dest, "vol-tar");
    assert!(object.to_string_lossy().ends_with("vol-tar.tar.zst.gpg"));

    let target = t.path().join("restored");
    restore_to(&cfg, "vol-tar", &target).assert_code(0);
    assert_same_tree(&vol, &restored_root(&target, "vol"), true);
}

/// Send mode: the object is the `btrfs send` stream; `btrfs receive` turns the restored file
/// back into a read-only subvolume with the same tree.
#[test]
fn send_mode_round_trips_through_btrfs_receive() {
    let Some(fs_) = Btrfs::mount("send_mode_round_trips_through_btrfs_receive") else {
        return;
    };
    let vol = fs_.volume("vol");
    let t = tempfile::tempdir().expect("tempdir");
    let (cfg, dest) = btrfs_job(
        t.path(),
        json!({"id": "vol-send", "name": "vol", "type": "btrfs", "path": vol, "mode": "send",
               "passphrase": PASSPHRASE}),
    );
    run_job(&cfg).assert_code(0);
    assert_eq!(fs_.subvolumes(), ["vol"], "a snapshot was left behind");
    let object = only_object(&dest, "vol-send");
    assert!(object.to_string_lossy().ends_with("vol-send.btrfs.zst.gpg"));

    let target = t.path().join("restored");
    let restored = restore_to(&cfg, "vol-send", &target);
    restored.assert_code(0);
    let stream = target.join("vol-send.btrfs");
    assert!(stream.is_file(), "{}", restored.describe());
    let received = fs_.mnt.join("received");
    fs::create_dir(&received).expect("mkdir");
    fs_.btrfs(&[
        "receive",
        "-f",
        stream.to_str().expect("utf-8"),
        received.to_str().expect("utf-8"),
    ]);
    assert_same_tree(&vol.join("tree"), &received.join("vol/tree"), true);
}

/// A path that is a plain folder, not a subvolume: the run fails naming btrfs's complaint,
/// and the snapshot folder it made is gone.
#[test]
fn a_folder_that_is_no_subvolume_fails_clearly_and_cleans_up() {
    let Some(fs_) = Btrfs::mount("a_folder_that_is_no_subvolume_fails_clearly_and_cleans_up")
    else {
        return;
    };
    let plain = fs_.mnt.join("plain");
    fs::create_dir(&plain).expect("mkdir");
    let t = tempfile::tempdir().expect("tempdir");
    let (cfg, dest) = btrfs_job(
        t.path(),
        json!({"id": "plain", "name": "plain", "type": "btrfs", "path": plain,
               "passphrase": PASSPHRASE}),
    );
    let run = run_job(&cfg);
    run.assert_code(1);
    let text = run.all_text();
    assert!(
        text.contains("btrfs subvolume snapshot") && text.contains("plain"),
        "{}",
        run.describe()
    );
    assert!(!fs_.mnt.join(".custos-plain").exists());
    assert!(objects(&dest, "plain").is_empty());
}

/// SIGTERM mid-stream removes the snapshot before the run exits; a `kill -9` leaves it, and
/// the next run removes it, backs up the current data and leaves none.
#[test]
fn snapshot_is_removed_after_sigterm_and_after_a_kill_by_the_next_run() {
    let Some(fs_) =
        Btrfs::mount("snapshot_is_removed_after_sigterm_and_after_a_kill_by_the_next_run")
    else {
        return;
    };
    let vol = fs_.mnt.join("vol");
    fs_.btrfs(&["subvolume", "create", vol.to_str().expect("utf-8")]);
    // More than the pipeline buffers, so tar is still writing when the signal comes.
    fs::write(vol.join("big.bin"), pseudo_random(40 << 20, 3)).expect("write");
    let t = tempfile::tempdir().expect("tempdir");
    let dest = t.path().join("dest");
    let mut job = Job::new(t.path());
    let mut slow = local_destination("disk", &dest);
    // Incompressible data at 1 MiB/s: the stream runs for ~40 s.
    slow["upload_rate_limit"] = json!(1 << 20);
    job.source(json!({"id": "vol", "type": "btrfs", "path": vol, "compress_only": 1}))
        .destination(slow);
    let cfg = job.write();
    let snapshot = fs_.mnt.join(".custos-vol/vol");

    for signal in [rustix::process::Signal::TERM, rustix::process::Signal::KILL] {
        let child = Command::new(bin())
            .arg(&cfg)
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn backup");
        wait_until(
            std::time::Duration::from_secs(30),
            "the snapshot exists",
            || {
                fs_.subvolumes()
                    .iter()
                    .any(|s| s.ends_with(".custos-vol/vol"))
            },
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(child.id() as i32).expect("pid"),
            signal,
        )
        .expect("signal");
        let run = Run::from(wait_with_deadline(
            child,
            std::time::Duration::from_secs(60),
            "interrupted backup",
        ));
        if signal == rustix::process::Signal::TERM {
            run.assert_code(143);
            assert_eq!(fs_.subvolumes(), ["vol"], "snapshot left after SIGTERM");
        } else {
            assert!(
                snapshot.exists(),
                "a kill -9 cannot remove it: the next run must"
            );
        }
        assert!(
            objects(&dest, "vol").is_empty(),
            "{:?}\n{}",
            files_under(&dest),
            run.describe()
        );
    }

    // The next run, at full speed: the leftover goes, today's data is backed up.
    fs::write(vol.join("after-the-kill"), b"new").expect("write");
    let mut job = Job::new(t.path());
    job.source(json!({"id": "vol", "type": "btrfs", "path": vol, "compress_only": 1}))
        .destination(local_destination("disk", &dest));
    let cfg = job.write_as("fast.json");
    let run = run_job(&cfg);
    run.assert_code(0);
    assert!(
        run.all_text().contains("interrupted earlier run"),
        "{}",
        run.describe()
    );
    assert_eq!(fs_.subvolumes(), ["vol"]);
    let target = t.path().join("restored");
    restore_to(&cfg, "vol", &target).assert_code(0);
    assert_same_tree(&vol, &restored_root(&target, "vol"), true);
}
