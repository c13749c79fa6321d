//! The bodies of the fuzz targets of `fuzz/` (cargo-fuzz, nightly) for what a job file and a
//! stored archive give `backup`, shared with the tests that run their corpora on stable Rust.
//! Each takes arbitrary bytes, must not panic (release builds abort), and checks what must
//! hold.

use std::ffi::OsString;
use std::path::Path;
use std::sync::OnceLock;

use crate::cancel::Cancel;
use crate::{job, restore};

/// `job_config`: a job file (the original's JSON, trailing commas tolerated). Parsing and
/// validation end in a job or an error whose message can be printed, and every unknown key can
/// be named.
pub fn job_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match job::parse(Path::new("nightly.cfg"), text) {
        Ok(job) => {
            job.unknown_keys.iter().for_each(|k| drop(k.to_string()));
            if let Err(e) = job.validate() {
                drop(e.to_string());
            }
        }
        Err(e) => drop(e.to_string()),
    }
}

/// `restore_tar`: a hostile archive restored into a fresh directory. Whatever the archive
/// holds, nothing is written beside the target, a file there is untouched, no staging
/// directory stays behind, and a refused archive leaves no target.
pub fn restore_tar(data: &[u8]) {
    // tmpfs where there is one: the restore ends with syncfs, which is free there.
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .expect("a temporary directory");
    let outside = base.path().join("outside");
    std::fs::write(&outside, b"keep").expect("writing the sentinel");
    let target = base.path().join("target");
    // One token for every run: each `Cancel::new` leaks its state on purpose.
    static CANCEL: OnceLock<Cancel> = OnceLock::new();
    let result = restore::unpack_tar(data, &target, *CANCEL.get_or_init(Cancel::new));
    let mut names: Vec<OsString> = std::fs::read_dir(base.path())
        .expect("reading the base directory")
        .map(|e| e.expect("an entry").file_name())
        .collect();
    names.sort();
    match &result {
        Ok(_) => assert_eq!(names, ["outside", "target"], "written beside the target"),
        Err(e) => assert_eq!(names, ["outside"], "a refused restore left something: {e}"),
    }
    if let Err(e) = &result {
        drop(e.to_string());
    }
    assert_eq!(
        std::fs::read(&outside).expect("the sentinel"),
        b"keep",
        "the file beside the target changed"
    );
    if result.is_ok() {
        for entry in std::fs::read_dir(&target).expect("reading the target") {
            let name = entry.expect("an entry").file_name();
            assert!(
                !name.to_string_lossy().starts_with(".custos-restore-"),
                "staging directory {name:?} left in the target"
            );
        }
    }
    make_removable(base.path());
}

/// Gives every directory under `dir` (symlinks not followed) owner rwx, so that the temporary
/// directory can be removed when a restored directory had mode 000 and we are not root.
fn make_removable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let mode = meta.permissions().mode();
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o700));
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            make_removable(&e.path());
        }
    }
}

/// Each target's corpus (`fuzz/corpus/<target>/`) as a test on stable.
#[cfg(test)]
mod tests {
    custos_testkit::corpus_tests! {
        job_config => super::job_config,
        restore_tar => super::restore_tar,
    }
}
