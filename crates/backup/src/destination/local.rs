//! The `local` destination: objects are files under a directory (`path` in the config).
//!
//! Public API: [`LocalDestination::new`]`(id, path)`, then the [`Destination`] trait.
//!
//! Crash safety: [`Destination::create`] writes to a hidden temporary file in the object's
//! own directory (`.{file}.partial-{pid}-{n}`); [`ObjectWriter::commit`] fsyncs it, renames it
//! atomically to the final name and fsyncs the directory. A run killed with `kill -9` leaves
//! at worst a hidden `.partial-` file that [`Destination::list`] ignores; it never leaves a
//! file under an object name that is not complete. Files are created mode 0600: backups are
//! as sensitive as what they hold.
//!
//! The root directory must exist already: creating it would silently fill the parent file
//! system when a backup disk is not mounted.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{Destination, DestinationError, ObjectInfo, ObjectWriter};

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

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
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
        fs::create_dir_all(&dir).map_err(|e| self.io_err("create directory", &dir, e))?;
        let file_name = final_path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp = dir.join(format!(
            ".{file_name}{PARTIAL_MARKER}{}-{}",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .map_err(|e| self.io_err("create", &temp, e))?;
        Ok(Box::new(LocalWriter {
            destination: self.id.clone(),
            file: Some(file),
            temp,
            final_path,
            dir,
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
}

impl LocalWriter {
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
            let _ = fs::remove_file(&self.temp);
            return Err(self.err("fsync", &self.temp, e));
        }
        if let Err(e) = fs::rename(&self.temp, &self.final_path) {
            let _ = fs::remove_file(&self.temp);
            return Err(self.err("rename to", &self.final_path, e));
        }
        sync_dir(&self.dir).map_err(|e| self.err("fsync directory", &self.dir, e))
    }

    fn abort(mut self: Box<Self>) {
        self.file.take();
        let _ = fs::remove_file(&self.temp);
    }
}

impl Drop for LocalWriter {
    /// Neither committed nor aborted (a panic, an early return): leave nothing behind.
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.temp);
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
}
