//! `type: folder`: a tar stream of `path`, produced by GNU tar.
//!
//! GNU tar rather than an in-process archiver because it already gets every hard case right
//! (names of any bytes, symlinks, hard links, long names, sparse files found with SEEK_HOLE so
//! a 3 GB hole costs no reads, files > 8 GB), runs at ~700 MB/s here, and is what the original's
//! sudo deployment allows (`backups ALL=(ALL) NOPASSWD: /bin/tar`): with `"sudo": true` the
//! archive is made by `sudo -n tar`, so root-only files are read without running the job as root.
//!
//! Members are `./<basename(path)>/...` as the original (`tar cf - ./<basename>` run in the
//! parent folder), so restores of either tool's archives look the same. Unlike the original,
//! `--exclude` options come before the member: GNU tar >= 1.29 treats them as positional and
//! ignores (and exits 2 on) excludes given after it.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use custos_process::{one_line, Spawn};

use super::process::{describe, process_error, ChildStream, Verdict};
use super::{Retry, Source, SourceError, SourceStream};
use crate::cancel::Cancel;

use serde::Deserialize;

use custos_kit::config::{Invalid, Validate};

/// The longest `tar --version` (through `sudo -n` when set) may take in a check.
const TAR_VERSION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// `type: folder`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FolderConfig {
    /// `path`: the file or folder to archive; members are `./<basename>/...`.
    pub path: PathBuf,
    /// `excludes`: GNU tar `--exclude` patterns.
    #[serde(
        default,
        deserialize_with = "custos_kit::config::values::null_as_default"
    )]
    pub excludes: Vec<String>,
    /// custos `sudo`: run `sudo -n tar` (the original's deployment: a `backups` user with a
    /// sudoers line for tar) instead of `tar`.
    #[serde(default)]
    pub sudo: bool,
}

impl FolderConfig {
    /// The source this config describes.
    pub fn build(&self, id: &str, name: &str) -> Box<dyn Source> {
        Box::new(FolderSource::new(id, name, self))
    }
}

impl Validate for FolderConfig {
    fn validate(&self) -> Result<(), Invalid> {
        if self.path.as_os_str().is_empty() {
            return Err(Invalid::new("path", "", "must not be empty"));
        }
        if let Some(i) = self.excludes.iter().position(|e| e.is_empty()) {
            return Err(Invalid::new(
                &format!("excludes[{i}]"),
                "",
                "an empty pattern would match nothing useful",
            ));
        }
        Ok(())
    }
}

/// A folder (or single file) archived with GNU tar.
#[derive(Debug, Clone)]
pub struct FolderSource {
    id: String,
    name: String,
    path: PathBuf,
    excludes: Vec<String>,
    sudo: bool,
    tar: OsString,
}

impl FolderSource {
    /// Builds the source from its config entry.
    pub fn new(id: &str, name: &str, config: &FolderConfig) -> Self {
        FolderSource {
            id: id.to_owned(),
            name: name.to_owned(),
            path: config.path.clone(),
            excludes: config.excludes.clone(),
            sudo: config.sudo,
            tar: OsString::from("tar"),
        }
    }

    /// Uses another tar binary (tests; systems where GNU tar is `gtar`).
    #[cfg(test)]
    pub fn with_tar(mut self, tar: impl Into<OsString>) -> Self {
        self.tar = tar.into();
        self
    }

    /// `tar`, or `sudo -n -- tar` (never prompts: a missing sudoers line fails at once).
    fn tar_command(&self) -> Command {
        if self.sudo {
            let mut c = Command::new("sudo");
            c.arg("-n").arg("--").arg(&self.tar);
            c
        } else {
            Command::new(&self.tar)
        }
    }

    /// The tar command line: `[sudo -n] tar --create ... --directory=PARENT --exclude=P... ./BASE`.
    pub fn command(&self) -> Command {
        let (dir, member) = split_member(&self.path);
        let mut cmd = self.tar_command();
        cmd.arg("--create")
            .arg("--file=-")
            .arg("--format=gnu")
            .arg("--sparse");
        let mut d = OsString::from("--directory=");
        d.push(&dir);
        cmd.arg(d);
        for e in &self.excludes {
            cmd.arg(format!("--exclude={e}"));
        }
        cmd.arg(member);
        cmd
    }

    fn check_path(&self) -> Result<(), SourceError> {
        match std::fs::symlink_metadata(&self.path) {
            Ok(_) => Ok(()),
            // With sudo, tar (as root) may see what we cannot.
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied && self.sudo => Ok(()),
            Err(e) => Err(self.unavailable(&e)),
        }
    }

    /// The path cannot be read; for permission errors, says how the original's deployment
    /// reads root-only files. A missing or forbidden path stays so until someone acts: not
    /// retryable; other errors (EIO, a stale mount) may pass.
    fn unavailable(&self, e: &std::io::Error) -> SourceError {
        use std::io::ErrorKind as K;
        let path = self.path.display();
        let (retry, message) = match e.kind() {
            K::NotFound => (Retry::Permanent, format!("{path}: no such file or directory")),
            K::PermissionDenied if !self.sudo => (Retry::Permanent, format!(
                "{path}: {e} (to read files only root can read, allow `sudo tar` and set \"sudo\": true)"
            )),
            K::PermissionDenied | K::NotADirectory => (Retry::Permanent, format!("{path}: {e}")),
            _ => (Retry::Transient, format!("{path}: {e}")),
        };
        SourceError::Unavailable { retry, message }
    }
}

/// tar exits 1 when a file changed or vanished while being read: the archive is usable.
fn tar_verdict(code: i32) -> Verdict {
    match code {
        0 => Verdict::Ok,
        1 => Verdict::Warning,
        _ => Verdict::Failed,
    }
}

/// Splits `path` as the original does (Python's `os.path.dirname` / `basename`): the folder
/// tar runs in, and the member `./<basename>` (`./` when the path ends in `/`).
pub fn split_member(path: &Path) -> (PathBuf, OsString) {
    let bytes = path.as_os_str().as_bytes();
    let cut = bytes.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
    let (head, base) = bytes.split_at(cut);
    let mut dir = head;
    if dir.iter().any(|&b| b != b'/') {
        while dir.last() == Some(&b'/') {
            dir = &dir[..dir.len() - 1];
        }
    }
    let dir = if dir.is_empty() {
        PathBuf::from(".")
    } else {
        PathBuf::from(OsStr::from_bytes(dir))
    };
    let mut member = OsString::from("./");
    member.push(OsStr::from_bytes(base));
    (dir, member)
}

impl Source for FolderSource {
    fn id(&self) -> &str {
        &self.id
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "folder"
    }

    fn suffix(&self) -> &'static str {
        "tar"
    }

    fn check(&self, _cancel: Cancel) -> Result<(), SourceError> {
        self.check_path()?;
        if !self.sudo {
            // The top level must be readable by us; deeper files are tar's to report.
            let readable = match std::fs::metadata(&self.path) {
                Ok(m) if m.is_dir() => std::fs::read_dir(&self.path).map(drop),
                Ok(_) => std::fs::File::open(&self.path).map(drop),
                Err(e) => Err(e),
            };
            if let Err(e) = readable {
                return Err(self.unavailable(&e));
            }
        }
        let mut cmd = self.tar_command();
        cmd.arg("--version");
        let line = describe(&cmd);
        // tar (or sudo) missing, refusing or not GNU: a setup problem a retry cannot fix.
        let out = custos_process::run(Spawn::new("tar", cmd), TAR_VERSION_TIMEOUT, 64 << 10)
            .map_err(|e| process_error(e, Retry::Permanent))?;
        if !out.exit.success() {
            return Err(SourceError::Unavailable {
                retry: Retry::Permanent,
                message: format!("`{line}` failed: {}", one_line(&out.exit.stderr)),
            });
        }
        if !String::from_utf8_lossy(&out.stdout).contains("GNU tar") {
            return Err(SourceError::Unavailable {
                retry: Retry::Permanent,
                message: format!(
                    "{} is not GNU tar (needed for --sparse and --exclude semantics)",
                    self.tar.to_string_lossy()
                ),
            });
        }
        Ok(())
    }

    fn open(&self, cancel: Cancel) -> Result<Box<dyn SourceStream>, SourceError> {
        self.check_path()?;
        let cmd = self.command();
        tracing::debug!(source = %self.id, command = %describe(&cmd), "archiving");
        Ok(Box::new(ChildStream::spawn(
            "tar",
            cmd,
            tar_verdict,
            None,
            cancel,
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::symlink;

    fn source(path: &Path, excludes: &[&str]) -> FolderSource {
        FolderSource::new(
            "data",
            "Data",
            &FolderConfig {
                path: path.to_owned(),
                excludes: excludes.iter().map(|s| s.to_string()).collect(),
                sudo: false,
            },
        )
    }

    /// Reads the whole stream and lists member names with GNU tar.
    fn members(src: &FolderSource) -> Vec<String> {
        let mut stream = src.open(Cancel::new()).unwrap();
        let mut tar = Vec::new();
        stream.read_to_end(&mut tar).unwrap();
        stream.finish().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.tar");
        std::fs::write(&file, &tar).unwrap();
        let out = Command::new("tar").arg("tf").arg(&file).output().unwrap();
        assert!(out.status.success());
        let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        names.sort();
        names
    }

    #[test]
    fn split_member_matches_python_dirname_basename() {
        let cases = [
            ("/etc", "/", "./etc"),
            ("/var/lib/data", "/var/lib", "./data"),
            ("/var/lib/data/", "/var/lib/data", "./"),
            ("/", "/", "./"),
            ("data", ".", "./data"),
            ("sub/data", "sub", "./data"),
            ("/a//b", "/a", "./b"),
        ];
        for (path, dir, member) in cases {
            let (d, m) = split_member(Path::new(path));
            assert_eq!(
                (d.to_str().unwrap(), m.to_str().unwrap()),
                (dir, member),
                "{path}"
            );
        }
    }

    #[test]
    fn command_puts_excludes_before_the_member() {
        let src = source(Path::new("/var/lib/accounts"), &["tmp", "*~"]);
        assert_eq!(
            describe(&src.command()),
            "tar --create --file=- --format=gnu --sparse --directory=/var/lib \
             --exclude=tmp --exclude=*~ ./accounts"
        );
        let mut sudo = src.clone();
        sudo.sudo = true;
        assert!(describe(&sudo.command()).starts_with("sudo -n -- tar --create"));
    }

    #[test]
    fn members_are_dot_basename_and_excludes_apply() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("accounts");
        std::fs::create_dir_all(data.join("tmp")).unwrap();
        std::fs::create_dir_all(data.join("keep/deep")).unwrap();
        std::fs::write(data.join("tmp/x"), "x").unwrap();
        std::fs::write(data.join("keep/a"), "a").unwrap();
        std::fs::write(data.join("keep/b~"), "b").unwrap();
        std::fs::write(data.join("keep/deep/c"), "c").unwrap();
        symlink("keep/a", data.join("link")).unwrap();
        let names = members(&source(&data, &["tmp", "*~"]));
        assert_eq!(
            names,
            vec![
                "./accounts/",
                "./accounts/keep/",
                "./accounts/keep/a",
                "./accounts/keep/deep/",
                "./accounts/keep/deep/c",
                "./accounts/link",
            ]
        );
    }

    #[test]
    fn a_single_file_is_archived_as_dot_name() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("db.conf");
        std::fs::write(&f, "x").unwrap();
        assert_eq!(members(&source(&f, &[])), vec!["./db.conf"]);
    }

    #[test]
    fn missing_path_is_unavailable_and_names_the_path() {
        let src = source(Path::new("/nonexistent/custos-test-folder"), &[]);
        let e = src.open(Cancel::new()).err().unwrap();
        assert!(
            matches!(
                e,
                SourceError::Unavailable {
                    retry: Retry::Permanent,
                    ..
                }
            ),
            "{e}"
        );
        assert!(
            e.to_string().contains("/nonexistent/custos-test-folder"),
            "{e}"
        );
        assert!(src.check(Cancel::new()).is_err());
    }

    #[test]
    fn check_accepts_an_existing_folder() {
        let dir = tempfile::tempdir().unwrap();
        source(dir.path(), &[]).check(Cancel::new()).unwrap();
    }

    #[test]
    fn unreadable_file_is_an_error_not_a_warning() {
        if running_as_root() {
            eprintln!("SKIP: running as root, permissions are not enforced");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("d");
        std::fs::create_dir(&data).unwrap();
        let secret = data.join("secret");
        std::fs::write(&secret, "x").unwrap();
        std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o000))
            .unwrap();
        let mut s = source(&data, &[]).open(Cancel::new()).unwrap();
        std::io::copy(&mut s, &mut std::io::sink()).unwrap();
        let e = s.finish().unwrap_err().to_string();
        assert!(e.contains("status 2") && e.contains("secret"), "{e}");
    }

    fn running_as_root() -> bool {
        // /proc/self/status "Uid:" line, first field is the real uid.
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("Uid:"))
                    .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
            })
            .unwrap_or(false)
    }

    #[test]
    fn a_non_gnu_tar_is_rejected_by_check() {
        let dir = tempfile::tempdir().unwrap();
        let src = source(dir.path(), &[]).with_tar("/bin/true");
        let e = src.check(Cancel::new()).unwrap_err().to_string();
        assert!(e.contains("not GNU tar"), "{e}");
    }
}
