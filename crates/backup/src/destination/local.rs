//! The `local` destination: objects are files under a directory (`path` in the config).
//!
//! Public API: [`LocalDestination::new`]`(id, path)`, then the [`Destination`] trait.
//!
//! Crash safety: [`Destination::create`] writes to a hidden temporary file in the object's
//! own directory (`.{file}.partial-{pid}-{n}-{host}`); [`ObjectWriter::commit`] fsyncs it,
//! renames it atomically to the final name and fsyncs the directory. A run killed with
//! `kill -9` leaves at worst a hidden `.partial-` file that [`Destination::list`] ignores; it
//! never leaves a file under an object name that is not complete. The next run of that source
//! removes such files ([`Destination::remove_abandoned`]) when their writer is gone: no
//! process with that PID, a zombie, or a process that is not `backup` (the PID was reused).
//! The host name in the file name keeps a run from judging partial files that another
//! machine is writing to the same (network) file system by PIDs that mean nothing here.
//! Files are created mode 0600: backups are as sensitive as what they hold.
//!
//! The root directory must exist already: creating it would silently fill the parent file
//! system when a backup disk is not mounted.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use serde::Deserialize;

use super::{Destination, DestinationError, ObjectInfo, ObjectWriter};
use custos_kit::config::{Invalid, Validate};

/// `type: local`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalConfig {
    /// `path`: objects go to `{path}/{source id}/{timestamp}/{file}`.
    pub path: PathBuf,
}

impl LocalConfig {
    /// The destination this config describes (a local write never stalls for long: the
    /// stall timeout is the pipeline's business only).
    pub fn build(
        &self,
        id: &str,
        _stall: std::time::Duration,
    ) -> Result<Box<dyn Destination>, DestinationError> {
        Ok(Box::new(LocalDestination::new(id, &self.path)))
    }
}

impl Validate for LocalConfig {
    fn validate(&self) -> Result<(), Invalid> {
        if self.path.as_os_str().is_empty() {
            return Err(Invalid::new("path", "", "must not be empty"));
        }
        Ok(())
    }
}

/// Marker in temporary file names; listings skip these files.
const PARTIAL_MARKER: &str = ".partial-";

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A directory on a mounted file system.
#[derive(Debug, Clone)]
pub struct LocalDestination {
    id: String,
    root: PathBuf,
}

impl LocalDestination {
    /// `id` from the config, `root` its `path`.
    pub fn new(id: impl Into<String>, root: impl Into<PathBuf>) -> Self {
        Self {
            id: id.into(),
            root: root.into(),
        }
    }

    /// The configured directory.
    #[cfg(test)]
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn io_err(&self, op: &'static str, path: &Path, source: io::Error) -> DestinationError {
        DestinationError::Io {
            destination: self.id.clone(),
            op,
            object: path.display().to_string(),
            source,
        }
    }

    fn other(&self, message: String) -> DestinationError {
        DestinationError::Other {
            destination: self.id.clone(),
            message,
        }
    }

    /// Maps an object name to a path under the root, refusing anything that could leave it.
    fn object_path(&self, name: &str) -> Result<PathBuf, DestinationError> {
        let ok = !name.is_empty()
            && !name.starts_with('/')
            && name
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains('\0'));
        if !ok {
            return Err(self.other(format!("invalid object name {name:?}")));
        }
        Ok(self.root.join(name))
    }

    fn require_root(&self) -> Result<(), DestinationError> {
        match fs::metadata(&self.root) {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(self.other(format!("{} is not a directory", self.root.display()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(self.other(format!(
                "{} does not exist (not mounted?); create it first",
                self.root.display()
            ))),
            Err(e) => Err(self.io_err("stat", &self.root, e)),
        }
    }
}

fn is_partial(file_name: &str) -> bool {
    file_name.starts_with('.') && file_name.contains(PARTIAL_MARKER)
}

/// Longest file name most file systems take (NAME_MAX).
const NAME_MAX: usize = 255;

/// This machine's name as it goes into partial file names: `[A-Za-z0-9._-]`, at most 32
/// bytes (empty if unknown).
fn host_tag() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
        let raw = fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        raw.trim()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
            .take(32)
            .collect()
    })
}

/// `.{file}.partial-{pid}-{n}-{host}`, with `file` shortened if the whole would exceed
/// [`NAME_MAX`].
fn partial_name(file_name: &str, pid: u32, n: u64, host: &str) -> String {
    let tail = format!("{PARTIAL_MARKER}{pid}-{n}-{host}");
    let keep = custos_kit::text::prefix(file_name, NAME_MAX.saturating_sub(1 + tail.len()));
    format!(".{keep}{tail}")
}

/// Who wrote a partial file: PID and host (None for names without a host).
fn partial_owner(file_name: &str) -> Option<(u32, Option<&str>)> {
    if !is_partial(file_name) {
        return None;
    }
    let start = file_name.rfind(PARTIAL_MARKER)? + PARTIAL_MARKER.len();
    let mut parts = file_name[start..].splitn(3, '-');
    let pid = parts.next()?.parse::<u32>().ok()?;
    parts.next()?.parse::<u64>().ok()?;
    Some((pid, parts.next()))
}

/// The command name and state of `pid` from `/proc/{pid}/stat` (the name may hold spaces
/// and parentheses: it ends at the last `)`).
fn proc_stat(pid: &str) -> Option<(String, char)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_owned();
    let state = stat.get(close + 1..)?.trim_start().chars().next()?;
    Some((comm, state))
}

/// True only when the writer of a partial file certainly no longer exists: another host's
/// files, this process's own, and anything unclear count as alive.
fn owner_is_gone(pid: u32, host: Option<&str>) -> bool {
    if host.is_some_and(|h| h != host_tag()) || pid == std::process::id() {
        return false;
    }
    let Some(raw) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    match rustix::process::test_kill_process(raw) {
        Err(rustix::io::Errno::SRCH) => return true,
        // Exists (EPERM: another user's process): look closer.
        Ok(()) | Err(rustix::io::Errno::PERM) => {}
        Err(_) => return false,
    }
    let Some((comm, state)) = proc_stat(&pid.to_string()) else {
        // Hidden (hidepid) or just exited: not sure, keep it.
        return false;
    };
    if state == 'Z' {
        return true;
    }
    let own = proc_stat("self").map(|(c, _)| c).unwrap_or_default();
    comm != "backup" && comm != own
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir` and its missing parents below `root`, fsyncing each new directory's parent
/// so that the `{id}/` and `{stamp}/` entries survive a crash along with the objects in them.
/// Returns the directories it created, outermost first, so that a writer that fails can take
/// them away again; on error it has already removed them.
fn create_dirs_synced(root: &Path, dir: &Path) -> io::Result<Vec<PathBuf>> {
    let Ok(rel) = dir.strip_prefix(root) else {
        fs::create_dir_all(dir)?;
        return Ok(Vec::new());
    };
    let mut created = Vec::new();
    let mut at = root.to_path_buf();
    for c in rel.components() {
        let parent = at.clone();
        at.push(c);
        let made = match fs::create_dir(&at) {
            Ok(()) => {
                created.push(at.clone());
                sync_dir(&parent)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = made {
            remove_created_dirs(&mut created);
            return Err(e);
        }
    }
    Ok(created)
}

/// Removes the directories a failed writer created (innermost first) while they are empty:
/// a failed or interrupted copy leaves no `{id}/{stamp}/` behind, and a directory something
/// else was put into meanwhile (another object, a sidecar) stays.
fn remove_created_dirs(created: &mut Vec<PathBuf>) {
    while let Some(d) = created.pop() {
        if fs::remove_dir(&d).is_err() {
            created.clear();
        }
    }
}

/// Renames `from` to `to` unless `to` exists: a committed object is never overwritten.
fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::EXIST) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "an object of that name exists already; not overwriting it",
        )),
        // A file system without RENAME_NOREPLACE: a hard link fails on an existing name.
        Err(rustix::io::Errno::INVAL) => {
            fs::hard_link(from, to)?;
            fs::remove_file(from)
        }
        Err(e) => Err(e.into()),
    }
}

impl Destination for LocalDestination {
    fn id(&self) -> &str {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "local"
    }

    /// The directory exists and this process may create files in it (access(2), no write).
    fn check(&self) -> Result<(), DestinationError> {
        self.require_root()?;
        rustix::fs::access(
            &self.root,
            rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
        )
        .map_err(|e| self.io_err("check write access to", &self.root, e.into()))?;
        if let Ok(st) = rustix::fs::statvfs(&self.root) {
            if st.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY) {
                return Err(self.io_err(
                    "check write access to",
                    &self.root,
                    io::Error::from_raw_os_error(rustix::io::Errno::ROFS.raw_os_error()),
                ));
            }
        }
        Ok(())
    }

    fn create(&self, name: &str) -> Result<Box<dyn ObjectWriter>, DestinationError> {
        let final_path = self.object_path(name)?;
        self.require_root()?;
        let dir = final_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.root.clone());
        let mut created = create_dirs_synced(&self.root, &dir)
            .map_err(|e| self.io_err("create directory", &dir, e))?;
        let file_name = final_path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp = dir.join(partial_name(
            &file_name,
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed),
            host_tag(),
        ));
        let file = match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
        {
            Ok(f) => f,
            Err(e) => {
                remove_created_dirs(&mut created);
                return Err(self.io_err("create", &temp, e));
            }
        };
        Ok(Box::new(LocalWriter {
            destination: self.id.clone(),
            file: Some(file),
            temp,
            final_path,
            dir,
            created,
        }))
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, DestinationError> {
        self.require_root()?;
        // Start the walk at the deepest directory the prefix names, if it exists.
        let start_rel = match prefix.rfind('/') {
            Some(i) => &prefix[..i],
            None => "",
        };
        let start = if start_rel.is_empty() {
            self.root.clone()
        } else {
            match self.object_path(start_rel) {
                Ok(p) => p,
                Err(_) => return Ok(Vec::new()),
            }
        };
        let mut out = Vec::new();
        let mut stack = vec![(start, start_rel.to_string())];
        while let Some((dir, rel)) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound && dir != self.root => continue,
                Err(e) => return Err(self.io_err("list", &dir, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| self.io_err("list", &dir, e))?;
                // Names that are not UTF-8 cannot be objects we wrote.
                let Ok(file_name) = entry.file_name().into_string() else {
                    continue;
                };
                let name = if rel.is_empty() {
                    file_name.clone()
                } else {
                    format!("{rel}/{file_name}")
                };
                let ft = entry
                    .file_type()
                    .map_err(|e| self.io_err("list", &entry.path(), e))?;
                if ft.is_dir() {
                    // Only descend where the prefix can still match.
                    let as_dir = format!("{name}/");
                    if as_dir.starts_with(prefix) || prefix.starts_with(&as_dir) {
                        stack.push((entry.path(), name));
                    }
                } else if ft.is_file() && !is_partial(&file_name) && name.starts_with(prefix) {
                    let meta = entry
                        .metadata()
                        .map_err(|e| self.io_err("stat", &entry.path(), e))?;
                    out.push(ObjectInfo {
                        name,
                        size: meta.len(),
                        modified: meta.modified().ok(),
                    });
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn open(&self, name: &str) -> Result<Box<dyn Read + Send>, DestinationError> {
        let path = self.object_path(name)?;
        let file = File::open(&path).map_err(|e| self.io_err("open", &path, e))?;
        Ok(Box::new(file))
    }

    /// Walks the directories under `prefix` like [`Destination::list`]; each partial file whose
    /// writer is gone (see the module docs) is removed, then its directory if that is now
    /// empty (the timestamp directory of the killed run).
    fn remove_abandoned(&self, prefix: &str) -> Result<Vec<String>, DestinationError> {
        self.require_root()?;
        let start_rel = prefix.rfind('/').map_or("", |i| &prefix[..i]);
        let start = if start_rel.is_empty() {
            self.root.clone()
        } else {
            match self.object_path(start_rel) {
                Ok(p) => p,
                Err(_) => return Ok(Vec::new()),
            }
        };
        let mut removed = Vec::new();
        let mut stack = vec![(start.clone(), start_rel.to_string())];
        while let Some((dir, rel)) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(self.io_err("list", &dir, e)),
            };
            let mut emptied = false;
            for entry in entries {
                let entry = entry.map_err(|e| self.io_err("list", &dir, e))?;
                let Ok(file_name) = entry.file_name().into_string() else {
                    continue;
                };
                let name = if rel.is_empty() {
                    file_name.clone()
                } else {
                    format!("{rel}/{file_name}")
                };
                let ft = entry
                    .file_type()
                    .map_err(|e| self.io_err("list", &entry.path(), e))?;
                if ft.is_dir() {
                    let as_dir = format!("{name}/");
                    if as_dir.starts_with(prefix) || prefix.starts_with(&as_dir) {
                        stack.push((entry.path(), name));
                    }
                    continue;
                }
                if !ft.is_file() || !name.starts_with(prefix) {
                    continue;
                }
                let Some((pid, host)) = partial_owner(&file_name) else {
                    continue;
                };
                if !owner_is_gone(pid, host) {
                    continue;
                }
                let path = entry.path();
                let bytes = entry.metadata().map(|m| m.len()).unwrap_or(0);
                match fs::remove_file(&path) {
                    Ok(()) => {
                        tracing::info!(
                            destination = %self.id,
                            file = %path.display(),
                            pid,
                            bytes,
                            "removed a partial object left by a run that no longer exists"
                        );
                        removed.push(name);
                        emptied = true;
                    }
                    // Someone else cleaned it up meanwhile.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(self.io_err("delete", &path, e)),
                }
            }
            if emptied && dir != self.root && dir != start {
                // Fails (and is left) when anything else is in it.
                let _ = fs::remove_dir(&dir);
            }
        }
        removed.sort();
        Ok(removed)
    }

    /// Removes the file, then its directories up to (not including) the root while empty.
    fn delete(&self, name: &str) -> Result<(), DestinationError> {
        let path = self.object_path(name)?;
        fs::remove_file(&path).map_err(|e| self.io_err("delete", &path, e))?;
        let mut dir = path.parent();
        while let Some(d) = dir {
            if d == self.root || !d.starts_with(&self.root) || fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
        Ok(())
    }
}

/// An object being written to its temporary file.
struct LocalWriter {
    destination: String,
    file: Option<File>,
    temp: PathBuf,
    final_path: PathBuf,
    dir: PathBuf,
    /// Directories this writer created (outermost first); removed again, while empty, when
    /// the object is not committed.
    created: Vec<PathBuf>,
}

impl LocalWriter {
    /// Takes away the temporary file and the directories made for it.
    fn discard(&mut self) {
        self.file.take();
        let _ = fs::remove_file(&self.temp);
        remove_created_dirs(&mut self.created);
    }

    fn err(&self, op: &'static str, path: &Path, source: io::Error) -> DestinationError {
        DestinationError::Io {
            destination: self.destination.clone(),
            op,
            object: path.display().to_string(),
            source,
        }
    }
}

impl Write for LocalWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(file) = self.file.as_mut() else {
            return Err(io::Error::other("object already closed"));
        };
        file.write(buf)
            .map_err(|e| io::Error::new(e.kind(), format!("write {}: {e}", self.temp.display())))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ObjectWriter for LocalWriter {
    fn commit(mut self: Box<Self>) -> Result<(), DestinationError> {
        let Some(file) = self.file.take() else {
            return Err(self.err(
                "commit",
                &self.final_path,
                io::Error::other("object already closed"),
            ));
        };
        let synced = file.sync_all();
        drop(file);
        if let Err(e) = synced {
            self.discard();
            return Err(self.err("fsync", &self.temp, e));
        }
        if let Err(e) = rename_no_replace(&self.temp, &self.final_path) {
            self.discard();
            return Err(self.err("rename to", &self.final_path, e));
        }
        // Committed: its directories hold it now.
        self.created.clear();
        sync_dir(&self.dir).map_err(|e| self.err("fsync directory", &self.dir, e))
    }

    fn abort(mut self: Box<Self>) {
        self.discard();
    }
}

impl Drop for LocalWriter {
    /// Neither committed nor aborted (a panic, an early return): leave nothing behind.
    fn drop(&mut self) {
        if self.file.is_some() {
            self.discard();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest() -> (tempfile::TempDir, LocalDestination) {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = LocalDestination::new("disk", dir.path());
        (dir, d)
    }

    fn files_under(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).expect("read_dir") {
                let e = e.expect("entry");
                if e.file_type().expect("type").is_dir() {
                    stack.push(e.path());
                } else {
                    out.push(
                        e.path()
                            .strip_prefix(root)
                            .expect("under")
                            .display()
                            .to_string(),
                    );
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn commit_makes_the_object_visible_and_listable() {
        let (dir, d) = dest();
        let mut w = d
            .create("www/20240101000000/www.tar.zst.gpg")
            .expect("create");
        w.write_all(b"hello").expect("write");
        // Invisible under its final name while written; the temp file is not listed.
        assert!(d.list("").expect("list").is_empty());
        assert_eq!(files_under(dir.path()).len(), 1);
        w.commit().expect("commit");
        let listed = d.list("www/").expect("list");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].name, "www/20240101000000/www.tar.zst.gpg");
        assert_eq!(listed[0].size, 5);
        let mut back = String::new();
        d.open(&listed[0].name)
            .expect("open")
            .read_to_string(&mut back)
            .expect("read");
        assert_eq!(back, "hello");
        assert!(d.list("other/").expect("list").is_empty());
        assert!(d.list("ww").expect("list").len() == 1);
    }

    #[test]
    fn abort_and_drop_leave_nothing() {
        let (dir, d) = dest();
        let mut w = d.create("a/20240101000000/a.sql.gz").expect("create");
        w.write_all(&[7u8; 1000]).expect("write");
        w.abort();
        let w2 = d.create("a/20240101000000/a.sql.gz").expect("create");
        drop(w2);
        assert_eq!(files_under(dir.path()), Vec::<String>::new());
        // Issue 16.6: nor the `{id}/{stamp}/` directories made for the object.
        assert_eq!(fs::read_dir(dir.path()).expect("ls").count(), 0);
    }

    /// Only what the failed writer made goes: an `{id}/` that was there stays, and so does a
    /// stamp directory another object was committed into meanwhile.
    #[test]
    fn a_failed_writer_removes_only_the_empty_directories_it_made() {
        let (dir, d) = dest();
        fs::create_dir(dir.path().join("a")).expect("mkdir");
        let w = d.create("a/20240101000000/a.sql.gz").expect("create");
        w.abort();
        assert!(dir.path().join("a").is_dir());
        assert!(!dir.path().join("a/20240101000000").exists());
        let w = d.create("b/20240101000000/b.tar.gpg").expect("create");
        let mut other = d
            .create("b/20240101000000/b.tar.gpg.sha256")
            .expect("create");
        other.write_all(b"x").expect("write");
        other.commit().expect("commit");
        w.abort();
        assert_eq!(
            files_under(dir.path()),
            ["b/20240101000000/b.tar.gpg.sha256"]
        );
    }

    #[test]
    fn delete_removes_empty_directories_but_not_the_root() {
        let (dir, d) = dest();
        let mut w = d.create("a/20240101000000/a.sql.gz").expect("create");
        w.write_all(b"x").expect("write");
        w.commit().expect("commit");
        d.delete("a/20240101000000/a.sql.gz").expect("delete");
        assert!(dir.path().exists());
        assert!(!dir.path().join("a").exists());
        let err = d.delete("a/20240101000000/a.sql.gz").expect_err("gone");
        assert!(err.to_string().contains("a.sql.gz"), "{err}");
    }

    #[test]
    fn refuses_names_that_escape_the_root() {
        let (_dir, d) = dest();
        for bad in ["../x", "/etc/passwd", "a//b", "a/./b", ""] {
            assert!(d.create(bad).is_err(), "{bad}");
            assert!(d.open(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn check_reports_missing_and_unwritable_directories() {
        let (dir, d) = dest();
        d.check().expect("writable temp dir");
        let missing = LocalDestination::new("gone", dir.path().join("nope"));
        let err = missing.check().expect_err("missing");
        assert!(err.to_string().contains("does not exist"), "{err}");
        assert!(missing.create("a/b/c").is_err());
        // A file is not a directory.
        let file = dir.path().join("f");
        fs::write(&file, b"").expect("write");
        assert!(LocalDestination::new("f", &file).check().is_err());
        if rustix::process::geteuid().is_root() {
            eprintln!("SKIP: permission check (running as root ignores modes)");
            return;
        }
        let ro = dir.path().join("ro");
        fs::create_dir(&ro).expect("mkdir");
        fs::set_permissions(&ro, std::os::unix::fs::PermissionsExt::from_mode(0o555))
            .expect("chmod");
        let err = LocalDestination::new("ro", &ro)
            .check()
            .expect_err("read-only");
        assert!(err.to_string().contains("ro"), "{err}");
    }

    /// A process that has exited and been reaped: its PID names no process (for a while).
    fn dead_pid() -> u32 {
        let mut c = std::process::Command::new("true").spawn().expect("spawn");
        let pid = c.id();
        c.wait().expect("wait");
        pid
    }

    fn partial_in(root: &Path, rel_dir: &str, file: &str, pid: u32, host: &str) -> PathBuf {
        let dir = root.join(rel_dir);
        fs::create_dir_all(&dir).expect("mkdir");
        let p = dir.join(partial_name(file, pid, 7, host));
        fs::write(&p, b"half an object").expect("write");
        p
    }

    #[test]
    fn partial_names_carry_pid_counter_and_host_and_fit_name_max() {
        let n = partial_name("db.sql.zst.gpg", 4242, 3, "web-1.example");
        assert_eq!(n, ".db.sql.zst.gpg.partial-4242-3-web-1.example");
        assert_eq!(partial_owner(&n), Some((4242, Some("web-1.example"))));
        // The layout before host names were added.
        assert_eq!(partial_owner(".db.sql.gz.partial-17-0"), Some((17, None)));
        assert_eq!(partial_owner("db.sql.gz"), None);
        assert_eq!(partial_owner(".x.partial-abc-1"), None);
        let long = "é".repeat(200);
        let n = partial_name(&long, u32::MAX, u64::MAX, "h");
        assert!(n.len() <= NAME_MAX, "{}", n.len());
        assert_eq!(partial_owner(&n), Some((u32::MAX, Some("h"))));
        assert!(host_tag().len() <= 32);
    }

    /// Partial files of gone writers (dead PID, a PID now used by another program) are
    /// removed with their emptied directory; those of this process, of a live `backup`,
    /// of another host, and of other sources are kept, and objects are never touched.
    #[test]
    fn remove_abandoned_takes_only_partials_of_gone_writers() {
        let (dir, d) = dest();
        let root = dir.path();
        let host = host_tag();
        let mut w = d.create("db/20240101000000/db.sql.gz").expect("create");
        w.write_all(b"complete").expect("write");
        w.commit().expect("commit");

        // A live process called `backup` (a copy of sleep), and one that is not.
        let fake = root.join("bin/backup");
        fs::create_dir_all(fake.parent().expect("parent")).expect("mkdir");
        fs::copy("/bin/sleep", &fake).expect("copy sleep");
        let mut live_backup = std::process::Command::new(&fake)
            .arg("30")
            .spawn()
            .expect("spawn");
        let mut other = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn");
        // Wait until both have exec'd (their names are what is judged).
        for _ in 0..500 {
            let named =
                |pid: u32, want: &str| proc_stat(&pid.to_string()).is_some_and(|(c, _)| c == want);
            if named(live_backup.id(), "backup") && named(other.id(), "sleep") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }

        let dead = partial_in(root, "db/20240102000000", "db.sql.gz", dead_pid(), host);
        let reused = partial_in(root, "db/20240103000000", "db.sql.gz", other.id(), host);
        let legacy = root.join("db/20240104000000/.db.sql.gz.partial-1-0");
        let legacy_pid = dead_pid();
        let legacy = legacy.with_file_name(format!(".db.sql.gz.partial-{legacy_pid}-0"));
        fs::create_dir_all(legacy.parent().expect("parent")).expect("mkdir");
        fs::write(&legacy, b"x").expect("write");
        let mine = partial_in(
            root,
            "db/20240105000000",
            "db.sql.gz",
            std::process::id(),
            host,
        );
        let running = partial_in(
            root,
            "db/20240106000000",
            "db.sql.gz",
            live_backup.id(),
            host,
        );
        let elsewhere = partial_in(
            root,
            "db/20240107000000",
            "db.sql.gz",
            dead_pid(),
            "other-host",
        );
        let other_source = partial_in(root, "db2/20240102000000", "db2.sql.gz", dead_pid(), host);
        let live_writer = d.create("db/20240108000000/db.sql.gz").expect("create");

        let removed = d.remove_abandoned("db/").expect("remove");
        let _ = live_backup.kill();
        let _ = live_backup.wait();
        let _ = other.kill();
        let _ = other.wait();

        let rel = |p: &Path| p.strip_prefix(root).expect("under").display().to_string();
        let mut want = vec![rel(&dead), rel(&reused), rel(&legacy)];
        want.sort();
        assert_eq!(removed, want);
        for p in [&dead, &reused, &legacy] {
            assert!(!p.exists(), "{}", p.display());
            assert!(!p.parent().expect("parent").exists(), "emptied dir left");
        }
        for p in [&mine, &running, &elsewhere, &other_source] {
            assert!(p.exists(), "{} was removed", p.display());
        }
        assert_eq!(d.list("db/").expect("list").len(), 1);
        assert!(root.join("db/20240101000000/db.sql.gz").exists());
        // The writer of this process still commits.
        live_writer.commit().expect("commit after cleanup");
        // Once the `backup` writer is gone too, its partial goes on the next call.
        assert_eq!(d.remove_abandoned("db/").expect("again"), [rel(&running)]);
        assert!(d.remove_abandoned("db/").expect("again").is_empty());
        assert!(d
            .remove_abandoned("nothing-here/")
            .expect("none")
            .is_empty());
    }
}
