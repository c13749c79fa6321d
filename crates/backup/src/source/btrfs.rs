//! `type: btrfs` (custos): a read-only snapshot of a btrfs subvolume, streamed with GNU tar
//! (`mode: tar`, the default: restores as a folder does) or `btrfs send` (`mode: send`: the
//! subvolume exactly, for `btrfs receive`).
//!
//! A snapshot is consistent where a folder tar of a live tree is not (a database's files
//! copied at one instant). It is made as `<snapshot_dir>/.custos-<id>/<basename(path)>`, so a
//! tar of it has the members a `folder` source of `path` has (`./<basename>/...`) and a send
//! stream receives under the subvolume's own name. The snapshot is removed after the run
//! whatever happened (success, failure, a destination that stopped the stream, SIGTERM: the
//! guard's drop); one left by a killed run (`kill -9`, a crash) has the same name and is
//! removed by the next run before it snapshots again.

use std::ffi::OsStr;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use custos_kit::config::{Invalid, Validate};
use serde::Deserialize;

use super::folder::{FolderConfig, FolderSource};
use super::process::{describe, run_check, run_cleanup, ChildStream, Verdict};
use super::{Retry, Source, SourceError, SourceStream};
use crate::cancel::Cancel;

/// The longest removing a snapshot may take (it only unlinks; the space is freed later by
/// the kernel's cleaner).
const DELETE_TIMEOUT: Duration = Duration::from_secs(300);

/// How the snapshot is streamed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// GNU tar of the snapshot (object `.tar`, restored as a folder).
    #[default]
    Tar,
    /// `btrfs send` of the snapshot (object `.btrfs`, restored with `btrfs receive`).
    Send,
}

/// `type: btrfs`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BtrfsConfig {
    /// `path`: the subvolume to back up.
    pub path: PathBuf,
    /// `mode`: `tar` (default) or `send`.
    #[serde(default)]
    pub mode: Mode,
    /// `snapshot_dir`: a folder on the same btrfs filesystem for the temporary snapshot
    /// (default: the parent of `path`; set it when `path` is a mount point).
    #[serde(default)]
    pub snapshot_dir: Option<PathBuf>,
    /// `excludes`: GNU tar `--exclude` patterns (tar mode only).
    #[serde(
        default,
        deserialize_with = "custos_kit::config::values::null_as_default"
    )]
    pub excludes: Vec<String>,
}

impl BtrfsConfig {
    /// The source this config describes.
    pub fn build(&self, id: &str, name: &str) -> Box<dyn Source> {
        Box::new(BtrfsSource::new(id, name, self))
    }
}

impl Validate for BtrfsConfig {
    fn validate(&self) -> Result<(), Invalid> {
        if self.path.file_name().is_none() {
            return Err(Invalid::new(
                "path",
                self.path.display(),
                "must name a subvolume (a path ending in a name, not `/` or `..`)",
            ));
        }
        if !self.excludes.is_empty() && self.mode == Mode::Send {
            return Err(Invalid::new(
                "excludes",
                self.excludes.join(", "),
                "only `mode: tar` can exclude files (`btrfs send` streams the whole subvolume)",
            ));
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

/// A btrfs subvolume, snapshotted and streamed.
#[derive(Debug, Clone)]
pub struct BtrfsSource {
    id: String,
    name: String,
    config: BtrfsConfig,
}

impl BtrfsSource {
    /// Builds the source from its config entry.
    pub fn new(id: &str, name: &str, config: &BtrfsConfig) -> Self {
        BtrfsSource {
            id: id.to_owned(),
            name: name.to_owned(),
            config: config.clone(),
        }
    }

    /// The folder holding this source's snapshot: `<snapshot_dir>/.custos-<id>`.
    pub fn holder(&self) -> PathBuf {
        let dir = match &self.config.snapshot_dir {
            Some(d) => d.clone(),
            None => match self.config.path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
                _ => PathBuf::from("."),
            },
        };
        dir.join(format!(".custos-{}", self.id))
    }

    /// The snapshot: `<holder>/<basename(path)>` (validated to exist).
    pub fn snapshot(&self) -> PathBuf {
        let base = self
            .config
            .path
            .file_name()
            .unwrap_or(OsStr::new("subvolume"));
        self.holder().join(base)
    }

    /// Makes the read-only snapshot, after removing one a killed run left.
    fn take_snapshot(&self, cancel: Cancel) -> Result<Snapshot, SourceError> {
        let holder = self.holder();
        let snapshot = Snapshot {
            path: self.snapshot(),
            holder: holder.clone(),
            removed: false,
        };
        if std::fs::symlink_metadata(&snapshot.path).is_ok() {
            tracing::warn!(source = %self.id, snapshot = %snapshot.path.display(),
                "removing the snapshot an interrupted earlier run left");
            delete_subvolume(&snapshot.path)?;
        }
        std::fs::create_dir_all(&holder).map_err(|source| SourceError::Io {
            context: format!("creating the snapshot folder {}", holder.display()),
            source,
        })?;
        let mut cmd = Command::new("btrfs");
        cmd.args(["subvolume", "snapshot", "-r"])
            .arg(&self.config.path)
            .arg(&snapshot.path);
        tracing::debug!(source = %self.id, command = %describe(&cmd), "snapshotting");
        // From here the guard removes whatever the command made, even when it failed late.
        run_check("btrfs subvolume snapshot", cmd, None, cancel).map_err(|e| match e {
            SourceError::Process { error, .. } => SourceError::Process {
                retry: Retry::Permanent,
                error,
            },
            e => e,
        })?;
        Ok(snapshot)
    }
}

/// Removes a subvolume, also after a SIGTERM cancelled the producers.
fn delete_subvolume(path: &Path) -> Result<(), SourceError> {
    let mut cmd = Command::new("btrfs");
    cmd.args(["subvolume", "delete"]).arg(path);
    run_cleanup("btrfs subvolume delete", cmd, DELETE_TIMEOUT)
}

/// This run's snapshot, removed when dropped (or earlier by [`Snapshot::remove`]).
#[derive(Debug)]
struct Snapshot {
    path: PathBuf,
    holder: PathBuf,
    removed: bool,
}

impl Snapshot {
    /// Removes the snapshot (if the snapshot command made it) and its empty holder folder.
    fn remove(&mut self) -> Result<(), SourceError> {
        if self.removed {
            return Ok(());
        }
        self.removed = true;
        if std::fs::symlink_metadata(&self.path).is_ok() {
            delete_subvolume(&self.path)?;
        }
        match std::fs::remove_dir(&self.holder) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(SourceError::Io {
                context: format!("removing the snapshot folder {}", self.holder.display()),
                source: e,
            }),
            _ => Ok(()),
        }
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        if let Err(e) = self.remove() {
            tracing::warn!(snapshot = %self.path.display(),
                "cannot remove the snapshot (the next run removes it): {e}");
        }
    }
}

/// The stream of a snapshot; the snapshot goes once the producer has ended.
struct SnapshotStream {
    inner: Box<dyn SourceStream>,
    snapshot: Snapshot,
}

impl Read for SnapshotStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

impl SourceStream for SnapshotStream {
    fn finish(self: Box<Self>) -> Result<(), SourceError> {
        let SnapshotStream {
            inner,
            mut snapshot,
        } = *self;
        let produced = inner.finish();
        // A snapshot that cannot be removed costs space only, and the next run retries:
        // the copy just made stays good.
        if let Err(e) = snapshot.remove() {
            tracing::warn!(snapshot = %snapshot.path.display(),
                "cannot remove the snapshot (the next run removes it): {e}");
        }
        produced
    }

    fn set_timeout(&mut self, timeout: Duration) {
        self.inner.set_timeout(timeout);
    }
}

impl Source for BtrfsSource {
    fn id(&self) -> &str {
        &self.id
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "btrfs"
    }

    fn suffix(&self) -> &'static str {
        match self.config.mode {
            Mode::Tar => "tar",
            Mode::Send => "btrfs",
        }
    }

    /// `path` is a btrfs subvolume this user may read.
    fn check(&self, cancel: Cancel) -> Result<(), SourceError> {
        let mut cmd = Command::new("btrfs");
        cmd.args(["subvolume", "show"]).arg(&self.config.path);
        run_check("btrfs subvolume show", cmd, None, cancel)
    }

    fn open(&self, cancel: Cancel) -> Result<Box<dyn SourceStream>, SourceError> {
        let snapshot = self.take_snapshot(cancel)?;
        let inner: Box<dyn SourceStream> = match self.config.mode {
            Mode::Tar => {
                let folder = FolderConfig {
                    path: snapshot.path.clone(),
                    excludes: self.config.excludes.clone(),
                    sudo: false,
                };
                FolderSource::new(&self.id, &self.name, &folder).open(cancel)?
            }
            Mode::Send => {
                let mut cmd = Command::new("btrfs");
                cmd.arg("send").arg(&snapshot.path);
                tracing::debug!(source = %self.id, command = %describe(&cmd), "streaming");
                Box::new(ChildStream::spawn(
                    "btrfs send",
                    cmd,
                    Verdict::zero_only,
                    None,
                    cancel,
                )?)
            }
        };
        Ok(Box::new(SnapshotStream { inner, snapshot }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(path: &str) -> BtrfsConfig {
        BtrfsConfig {
            path: path.into(),
            mode: Mode::Tar,
            snapshot_dir: None,
            excludes: vec![],
        }
    }

    #[test]
    fn snapshot_lives_beside_the_subvolume_under_the_source_id() {
        let s = BtrfsSource::new("home", "Home", &config("/srv/data/home"));
        assert_eq!(s.holder(), Path::new("/srv/data/.custos-home"));
        assert_eq!(s.snapshot(), Path::new("/srv/data/.custos-home/home"));
        let mut c = config("/mnt/pool");
        c.snapshot_dir = Some("/mnt/pool/.snapshots".into());
        let s = BtrfsSource::new("pool", "Pool", &c);
        assert_eq!(
            s.snapshot(),
            Path::new("/mnt/pool/.snapshots/.custos-pool/pool")
        );
    }

    #[test]
    fn validate_names_the_bad_key() {
        let e = config("/srv/..").validate().unwrap_err();
        assert_eq!((e.key.as_str(), e.value.as_str()), ("path", "/srv/.."));
        let mut c = config("/srv/data");
        c.mode = Mode::Send;
        c.excludes = vec!["*.tmp".into()];
        let e = c.validate().unwrap_err();
        assert_eq!(e.key, "excludes");
        assert!(e.reason.contains("mode: tar"), "{e:?}");
        config("/srv/data").validate().unwrap();
    }

    #[test]
    fn suffix_follows_the_mode() {
        let mut c = config("/srv/data");
        assert_eq!(BtrfsSource::new("a", "A", &c).suffix(), "tar");
        c.mode = Mode::Send;
        assert_eq!(BtrfsSource::new("a", "A", &c).suffix(), "btrfs");
    }
}
