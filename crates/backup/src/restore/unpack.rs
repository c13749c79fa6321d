//! Unpacking a restore into a directory so that the archive cannot be turned against the host.
//!
//! Everything is written into a staging directory (`.custos-restore-*`, mode 0700) made inside
//! the target, and moved into place only after the caller verified the whole stream (sidecar
//! sha256, OpenPGP MDC, compression checksum); on failure the staging directory is removed and
//! the target holds nothing new.
//!
//! Every create, chmod, chown, utime and link goes through a directory file descriptor opened
//! with `O_NOFOLLOW | O_DIRECTORY` from the staging (or target) directory, one component at a
//! time, so no path is re-resolved after a later member replaced part of it: a symlink member
//! cannot redirect a later member or the directory modes applied at the end, and a FIFO or
//! device is never opened (`O_DIRECTORY` fails on it before any open). A member that would
//! replace a directory or a symlink is refused, naming it; one that replaces an earlier regular
//! file, FIFO or device replaces it (a later copy of the same member). Device nodes are made
//! with mknod when running as root, and skipped with a warning naming them otherwise.

use crate::cancel::{Cancel, StagingGuard};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, RenameFlags, Timespec, Timestamps};
use rustix::io::Errno;

use super::RestoreError;

/// Why unpacking stopped: reading the stream (the caller knows whether that is corruption) or
/// something about the member itself.
#[derive(Debug)]
pub(super) enum Failure {
    Read(io::Error),
    Restore(RestoreError),
}

impl From<RestoreError> for Failure {
    fn from(e: RestoreError) -> Self {
        Failure::Restore(e)
    }
}

/// Metadata of a directory member, applied after everything else (a read-only directory must
/// not stop its own contents, and writing contents changes its mtime).
struct DirMeta {
    components: Vec<OsString>,
    mode: u32,
    mtime: Option<u64>,
    owner: Option<(u32, u32)>,
}

/// One restore into one target directory; see the module docs.
pub(super) struct Unpacker {
    object: String,
    target_path: PathBuf,
    target: OwnedFd,
    staging_name: OsString,
    staging: OwnedFd,
    /// Running as root: restore owners and make device nodes.
    root: bool,
    /// The target did not exist before: a failed restore removes it again.
    created_target: bool,
    umask: u32,
    dirs: Vec<DirMeta>,
    /// Open directories along the last member's parent path (component, fd).
    cache: Vec<(OsString, OwnedFd)>,
    /// Members skipped with a warning.
    warnings: Vec<String>,
    /// Cancelled on SIGINT/SIGTERM: the restore stops at its next member.
    cancel: Cancel,
    /// Removes the staging directory if SIGINT/SIGTERM ends the process.
    _interrupt: StagingGuard,
}

const DIR_FLAGS: OFlags = OFlags::DIRECTORY
    .union(OFlags::NOFOLLOW)
    .union(OFlags::RDONLY)
    .union(OFlags::CLOEXEC);

impl Unpacker {
    /// Creates `target` if missing and a fresh staging directory inside it.
    pub(super) fn new(target: &Path, object: &str, cancel: Cancel) -> Result<Self, RestoreError> {
        let werr = |path: &Path, e: io::Error| RestoreError::Write {
            object: object.to_owned(),
            path: path.to_owned(),
            source: e,
        };
        let created_target = std::fs::symlink_metadata(target).is_err();
        std::fs::create_dir_all(target).map_err(|e| werr(target, e))?;
        let target_fd =
            rfs::open(target, DIR_FLAGS, Mode::empty()).map_err(|e| werr(target, e.into()))?;
        let mut n = 0u32;
        let (staging_name, staging) = loop {
            let name = OsString::from(format!(
                ".custos-restore-{}-{}",
                std::process::id(),
                rand::random::<u32>()
            ));
            match rfs::mkdirat(&target_fd, name.as_os_str(), Mode::from_raw_mode(0o700)) {
                Ok(()) => {
                    let fd = rfs::openat(&target_fd, name.as_os_str(), DIR_FLAGS, Mode::empty())
                        .map_err(|e| werr(&target.join(&name), e.into()))?;
                    break (name, fd);
                }
                Err(Errno::EXIST) if n < 100 => n += 1,
                Err(e) => return Err(werr(&target.join(&name), e.into())),
            }
        };
        let guard = cancel.remove_on_cancel(target.join(&staging_name));
        let old = rustix::process::umask(Mode::from_raw_mode(0o022));
        rustix::process::umask(old);
        Ok(Unpacker {
            object: object.to_owned(),
            target_path: target.to_owned(),
            target: target_fd,
            staging_name,
            staging,
            root: rustix::process::geteuid().is_root(),
            created_target,
            cancel,
            _interrupt: guard,
            umask: old.bits(),
            dirs: Vec::new(),
            cache: Vec::new(),
            warnings: Vec::new(),
        })
    }

    /// Acts as a non-root restore would (tests of the device-node warning run as root too).
    #[cfg(test)]
    pub(super) fn acting_as_non_root(mut self) -> Self {
        self.root = false;
        self
    }

    /// What was skipped with a warning (device nodes as non-root, unknown member types).
    pub(super) fn warnings(&self) -> &[String] {
        &self.warnings
    }

    fn refuse(&self, member: &str, reason: impl Into<String>) -> RestoreError {
        RestoreError::Refused {
            object: self.object.clone(),
            member: member.to_owned(),
            reason: reason.into(),
        }
    }

    fn unsafe_path(&self, member: &str) -> RestoreError {
        RestoreError::UnsafePath {
            object: self.object.clone(),
            member: member.to_owned(),
            target: self.target_path.clone(),
        }
    }

    fn write_error(&self, components: &[OsString], e: impl Into<io::Error>) -> RestoreError {
        let mut path = self.target_path.clone();
        path.extend(components);
        RestoreError::Write {
            object: self.object.clone(),
            path,
            source: e.into(),
        }
    }

    /// A member name as components; `..` and absolute names are refused.
    fn components(&self, member: &str, raw: &[u8]) -> Result<Vec<OsString>, RestoreError> {
        if raw.first() == Some(&b'/') {
            return Err(self.unsafe_path(member));
        }
        let mut out = Vec::new();
        for c in raw.split(|b| *b == b'/') {
            match c {
                b"" | b"." => {}
                b".." => return Err(self.unsafe_path(member)),
                c => out.push(OsStr::from_bytes(c).to_owned()),
            }
        }
        Ok(out)
    }

    /// The open directory `parents` (inside the staging directory), creating missing ones as
    /// tar does; refuses to go through anything that is not a real directory.
    fn parent(&mut self, member: &str, parents: &[OsString]) -> Result<BorrowedFd<'_>, Failure> {
        let keep = self
            .cache
            .iter()
            .zip(parents)
            .take_while(|((a, _), b)| a == *b)
            .count();
        self.cache.truncate(keep);
        for (i, c) in parents.iter().enumerate().skip(keep) {
            if i == 0 {
                self.check_target_free(member, c)?;
            }
            let at = match self.cache.last() {
                Some((_, fd)) => fd.as_fd(),
                None => self.staging.as_fd(),
            };
            let fd = match rfs::openat(at, c.as_os_str(), DIR_FLAGS, Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => {
                    rfs::mkdirat(at, c.as_os_str(), Mode::from_raw_mode(0o700))
                        .map_err(|e| self.write_error(&parents[..=i], e))?;
                    self.dirs.push(DirMeta {
                        components: parents[..=i].to_vec(),
                        mode: 0o777 & !self.umask,
                        mtime: None,
                        owner: None,
                    });
                    rfs::openat(at, c.as_os_str(), DIR_FLAGS, Mode::empty())
                        .map_err(|e| self.write_error(&parents[..=i], e))?
                }
                Err(Errno::LOOP | Errno::NOTDIR) => {
                    let p = parents[..=i]
                        .iter()
                        .map(|c| c.to_string_lossy())
                        .collect::<Vec<_>>();
                    return Err(self
                        .refuse(
                            member,
                            format!(
                                "{:?} is a symlink or not a directory; not going through it \
                                 (unsafe archive)",
                                p.join("/")
                            ),
                        )
                        .into());
                }
                Err(e) => return Err(self.write_error(&parents[..=i], e).into()),
            };
            self.cache.push((c.clone(), fd));
        }
        Ok(match self.cache.last() {
            Some((_, fd)) => fd.as_fd(),
            None => self.staging.as_fd(),
        })
    }

    /// A top-level name must be new in the target: a restore never replaces what is there.
    fn check_target_free(&self, member: &str, name: &OsStr) -> Result<(), RestoreError> {
        match rfs::statat(&self.target, name, AtFlags::SYMLINK_NOFOLLOW) {
            Err(Errno::NOENT) => Ok(()),
            Ok(_) => Err(self.refuse(
                member,
                format!(
                    "{} already exists in the target; restore into a new or empty directory",
                    self.target_path.join(name).display()
                ),
            )),
            Err(e) => Err(self.write_error(&[name.to_owned()], e)),
        }
    }

    /// Unpacks one member.
    pub(super) fn member<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), Failure> {
        self.check_interrupt()?;
        let raw = entry.path_bytes().into_owned();
        let member = String::from_utf8_lossy(&raw).into_owned();
        let header = entry.header();
        let kind = header.entry_type();
        let mode = header.mode().unwrap_or(0o644) & 0o7777;
        let mtime = header.mtime().ok();
        let owner = match (header.uid(), header.gid()) {
            (Ok(u), Ok(g)) if self.root => Some((u as u32, g as u32)),
            _ => None,
        };
        let device = (header.device_major(), header.device_minor());
        let link = entry.link_name_bytes().map(|l| l.into_owned());
        let mut components = self.components(&member, &raw)?;
        let Some(name) = components.pop() else {
            // `./` itself: the target is the operator's; its mode and times are left alone.
            return if kind.is_dir() {
                Ok(())
            } else {
                Err(self.unsafe_path(&member).into())
            };
        };
        let parents = components;
        let mut full = parents.clone();
        full.push(name.clone());
        if parents.is_empty() {
            self.check_target_free(&member, &name)?;
        }
        if kind.is_hard_link() {
            let Some(link) = link else {
                return Err(self.refuse(&member, "hard link without a target").into());
            };
            return self.hard_link(&member, &full, &link);
        }
        let is_dir = kind.is_dir();
        let parent = self
            .parent(&member, &parents)?
            .try_clone_to_owned()
            .map_err(|e| Failure::Restore(self.write_error(&parents, e)))?;
        if !self.make_room(&member, &parent, &name, is_dir, &full)? {
            // An existing directory that this member describes again.
            self.dirs.retain(|d| d.components != full);
        }
        let times = mtime.map(timestamps);
        if kind.is_file() || kind.is_contiguous() || kind == tar::EntryType::GNUSparse {
            let fd = rfs::openat(
                &parent,
                name.as_os_str(),
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
            .map_err(|e| self.write_error(&full, e))?;
            let mut file = File::from(fd);
            copy_sparse(entry, &mut file, self.cancel).map_err(|e| match e {
                CopyError::Read(e) => Failure::Read(e),
                CopyError::Write(e) => Failure::Restore(self.write_error(&full, e)),
            })?;
            let apply = || -> rustix::io::Result<()> {
                if let Some((u, g)) = owner {
                    rfs::fchown(&file, Some(uid(u)), Some(gid(g)))?;
                }
                rfs::fchmod(&file, Mode::from_raw_mode(mode))?;
                if let Some(t) = &times {
                    rfs::futimens(&file, t)?;
                }
                Ok(())
            };
            apply().map_err(|e| self.write_error(&full, e))?;
        } else if is_dir {
            match rfs::mkdirat(&parent, name.as_os_str(), Mode::from_raw_mode(0o700)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(self.write_error(&full, e).into()),
            }
            self.dirs.push(DirMeta {
                components: full,
                mode,
                mtime,
                owner,
            });
        } else if kind.is_symlink() {
            let Some(link) = link else {
                return Err(self.refuse(&member, "symlink without a target").into());
            };
            rfs::symlinkat(OsStr::from_bytes(&link), &parent, name.as_os_str())
                .map_err(|e| self.write_error(&full, e))?;
            self.node_metadata(&parent, &name, None, owner, times.as_ref())
                .map_err(|e| self.write_error(&full, e))?;
        } else if kind.is_fifo() || kind.is_character_special() || kind.is_block_special() {
            let (file_type, what) = if kind.is_fifo() {
                (FileType::Fifo, "FIFO")
            } else if kind.is_character_special() {
                (FileType::CharacterDevice, "character device")
            } else {
                (FileType::BlockDevice, "block device")
            };
            let dev = match device {
                (Ok(Some(major)), Ok(Some(minor))) => rfs::makedev(major, minor),
                _ => rfs::makedev(0, 0),
            };
            if file_type != FileType::Fifo && !self.root {
                self.warnings.push(format!(
                    "{member}: {what} not restored: making device nodes needs root"
                ));
                return Ok(());
            }
            rfs::mknodat(
                &parent,
                name.as_os_str(),
                file_type,
                Mode::from_raw_mode(0o600),
                dev,
            )
            .map_err(|e| self.write_error(&full, e))?;
            self.node_metadata(&parent, &name, Some(mode), owner, times.as_ref())
                .map_err(|e| self.write_error(&full, e))?;
        } else {
            self.warnings
                .push(format!("{member}: member of tar type {kind:?} skipped"));
        }
        Ok(())
    }

    /// Clears the way for a new member `name` in `parent`: refuses to replace a directory (unless
    /// the member is one: then `false`, it exists) or a symlink; removes an earlier file, FIFO or
    /// device of the same name. `true` when the name is free.
    fn make_room(
        &self,
        member: &str,
        parent: &OwnedFd,
        name: &OsStr,
        is_dir: bool,
        full: &[OsString],
    ) -> Result<bool, Failure> {
        let st = match rfs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => return Ok(true),
            Err(e) => return Err(self.write_error(full, e).into()),
        };
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory if is_dir => Ok(false),
            FileType::Directory => Err(self
                .refuse(member, "it would replace a directory of the same name")
                .into()),
            FileType::Symlink => Err(self
                .refuse(member, "it would replace a symlink of the same name")
                .into()),
            _ if is_dir => Err(self
                .refuse(member, "a directory would replace a file of the same name")
                .into()),
            _ => {
                rfs::unlinkat(parent, name, AtFlags::empty())
                    .map_err(|e| self.write_error(full, e))?;
                Ok(true)
            }
        }
    }

    /// Mode (not for symlinks), owner and times of a node just made at (`parent`, `name`).
    /// `chmodat` cannot refuse to follow a symlink on Linux; the name was created a moment ago
    /// in a 0700 directory only we (and root) can change.
    fn node_metadata(
        &self,
        parent: &OwnedFd,
        name: &OsStr,
        mode: Option<u32>,
        owner: Option<(u32, u32)>,
        times: Option<&Timestamps>,
    ) -> rustix::io::Result<()> {
        if let Some((u, g)) = owner {
            rfs::chownat(
                parent,
                name,
                Some(uid(u)),
                Some(gid(g)),
                AtFlags::SYMLINK_NOFOLLOW,
            )?;
        }
        if let Some(m) = mode {
            rfs::chmodat(parent, name, Mode::from_raw_mode(m), AtFlags::empty())?;
        }
        if let Some(t) = times {
            rfs::utimensat(parent, name, t, AtFlags::SYMLINK_NOFOLLOW)?;
        }
        Ok(())
    }

    /// A hard link to an earlier member; the link target is resolved inside the staging
    /// directory without following symlinks.
    fn hard_link(&mut self, member: &str, full: &[OsString], link: &[u8]) -> Result<(), Failure> {
        let mut source = self.components(member, link).map_err(|_| {
            self.refuse(
                member,
                format!(
                    "hard link target {:?} is outside the archive (unsafe archive)",
                    String::from_utf8_lossy(link)
                ),
            )
        })?;
        let Some(source_name) = source.pop() else {
            return Err(self
                .refuse(member, "hard link to the archive's root")
                .into());
        };
        let mut dir = self
            .staging
            .try_clone()
            .map_err(|e| self.write_error(full, e))?;
        for c in &source {
            dir = rfs::openat(&dir, c.as_os_str(), DIR_FLAGS, Mode::empty()).map_err(|_| {
                self.refuse(
                    member,
                    format!(
                        "hard link target {:?} is not an earlier member",
                        String::from_utf8_lossy(link)
                    ),
                )
            })?;
        }
        let (parents, name) = full.split_at(full.len() - 1);
        let name = &name[0];
        let parent = self
            .parent(member, parents)?
            .try_clone_to_owned()
            .map_err(|e| Failure::Restore(self.write_error(parents, e)))?;
        self.make_room(member, &parent, name, false, full)?;
        match rfs::linkat(
            &dir,
            source_name.as_os_str(),
            &parent,
            name.as_os_str(),
            AtFlags::empty(),
        ) {
            Ok(()) => Ok(()),
            Err(Errno::NOENT) => Err(self
                .refuse(
                    member,
                    format!(
                        "hard link target {:?} is not an earlier member",
                        String::from_utf8_lossy(link)
                    ),
                )
                .into()),
            Err(e) => Err(self.write_error(full, e).into()),
        }
    }

    fn check_interrupt(&self) -> Result<(), RestoreError> {
        match self.cancel.signal() {
            Some(signal) => Err(RestoreError::Interrupted {
                object: self.object.clone(),
                signal,
            }),
            None => Ok(()),
        }
    }

    /// Writes a whole file `name` (a dump) at the top of the staging directory.
    pub(super) fn file(&mut self, name: &OsStr, data: &mut dyn Read) -> Result<u64, Failure> {
        let full = [name.to_owned()];
        self.check_target_free(&name.to_string_lossy(), name)?;
        let fd = rfs::openat(
            &self.staging,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| self.write_error(&full, e))?;
        let mut file = File::from(fd);
        copy_sparse(data, &mut file, self.cancel).map_err(|e| match e {
            CopyError::Read(e) => Failure::Read(e),
            CopyError::Write(e) => Failure::Restore(self.write_error(&full, e)),
        })
    }

    /// Moves the verified result into the target, applies directory metadata, removes the
    /// staging directory and flushes the file system. Returns the top-level names.
    pub(super) fn commit(mut self) -> Result<Vec<OsString>, RestoreError> {
        self.cache.clear();
        let mut names = Vec::new();
        let mut dir = rfs::Dir::read_from(&self.staging)
            .map_err(|e| self.write_error(&[self.staging_name.clone()], e))?;
        while let Some(entry) = dir.read() {
            let entry = entry.map_err(|e| self.write_error(&[self.staging_name.clone()], e))?;
            let name = OsStr::from_bytes(entry.file_name().to_bytes()).to_owned();
            if name != "." && name != ".." {
                names.push(name);
            }
        }
        names.sort();
        for name in &names {
            let moved = rfs::renameat_with(
                &self.staging,
                name.as_os_str(),
                &self.target,
                name.as_os_str(),
                RenameFlags::NOREPLACE,
            );
            let moved = match moved {
                // A file system without RENAME_NOREPLACE: check, then rename.
                Err(Errno::INVAL) => {
                    match rfs::statat(&self.target, name, AtFlags::SYMLINK_NOFOLLOW) {
                        Err(Errno::NOENT) => rfs::renameat(
                            &self.staging,
                            name.as_os_str(),
                            &self.target,
                            name.as_os_str(),
                        ),
                        Ok(_) => Err(Errno::EXIST),
                        Err(e) => Err(e),
                    }
                }
                other => other,
            };
            if let Err(e) = moved {
                let err = if e == Errno::EXIST {
                    self.refuse(
                        &name.to_string_lossy(),
                        format!(
                            "{} appeared in the target during the restore; not replacing it",
                            self.target_path.join(name).display()
                        ),
                    )
                } else {
                    self.write_error(std::slice::from_ref(name), e)
                };
                self.discard();
                return Err(err);
            }
        }
        // Deepest first, through directories opened without following symlinks.
        let mut dirs = std::mem::take(&mut self.dirs);
        dirs.sort_by(|a, b| b.components.cmp(&a.components));
        for d in &dirs {
            self.apply_dir(d)
                .map_err(|e| self.write_error(&d.components, e))?;
        }
        rfs::unlinkat(
            &self.target,
            self.staging_name.as_os_str(),
            AtFlags::REMOVEDIR,
        )
        .map_err(|e| self.write_error(&[self.staging_name.clone()], e))?;
        rfs::syncfs(&self.target).map_err(|e| self.write_error(&[], e))?;
        Ok(names)
    }

    fn apply_dir(&self, d: &DirMeta) -> rustix::io::Result<()> {
        let mut fd = self
            .target
            .try_clone()
            .map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::IO))?;
        for c in &d.components {
            fd = rfs::openat(&fd, c.as_os_str(), DIR_FLAGS, Mode::empty())?;
        }
        if let Some((u, g)) = d.owner {
            rfs::fchown(&fd, Some(uid(u)), Some(gid(g)))?;
        }
        rfs::fchmod(&fd, Mode::from_raw_mode(d.mode))?;
        if let Some(t) = d.mtime {
            rfs::futimens(&fd, &timestamps(t))?;
        }
        Ok(())
    }

    /// Removes the staging directory and everything in it (the restore failed), and the
    /// target itself if this restore created it (and it is still empty).
    pub(super) fn discard(&mut self) {
        self.cache.clear();
        let path = self.target_path.join(&self.staging_name);
        if let Err(e) = std::fs::remove_dir_all(&path) {
            tracing::warn!(
                "could not remove the staging directory {}: {e}",
                path.display()
            );
        }
        if self.created_target {
            let _ = std::fs::remove_dir(&self.target_path);
        }
    }
}

fn uid(u: u32) -> rfs::Uid {
    rfs::Uid::from_raw(u)
}

fn gid(g: u32) -> rfs::Gid {
    rfs::Gid::from_raw(g)
}

fn timestamps(secs: u64) -> Timestamps {
    let t = Timespec {
        tv_sec: secs as i64,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// Copies `from` into `file`, seeking over all-zero blocks so that sparse files keep their
/// holes; returns the bytes copied.
fn copy_sparse(from: &mut dyn Read, file: &mut File, cancel: Cancel) -> Result<u64, CopyError> {
    const BLOCK: usize = 4096;
    static ZEROS: [u8; BLOCK] = [0; BLOCK];
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    let mut pending_hole = 0u64;
    loop {
        if let Some(signal) = cancel.signal() {
            return Err(CopyError::Write(io::Error::new(
                io::ErrorKind::Interrupted,
                format!("interrupted by signal {signal}"),
            )));
        }
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        for block in buf[..n].chunks(BLOCK) {
            // A slice comparison is a memcmp, fast even in debug builds.
            if block == &ZEROS[..block.len()] {
                pending_hole += block.len() as u64;
                continue;
            }
            if pending_hole > 0 {
                file.seek(SeekFrom::Current(pending_hole as i64))
                    .map_err(CopyError::Write)?;
                pending_hole = 0;
            }
            file.write_all(block).map_err(CopyError::Write)?;
        }
        total += n as u64;
    }
    if pending_hole > 0 {
        file.set_len(total).map_err(CopyError::Write)?;
    }
    // Durability comes from one syncfs in `commit`, not an fsync per file.
    Ok(total)
}
