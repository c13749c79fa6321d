//! The listening socket: handed over by systemd, or made by the helper itself.

use rustix::fs::Mode;
use rustix::process::umask;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

/// The first descriptor systemd passes (`SD_LISTEN_FDS_START`).
const SD_LISTEN_FDS_START: i32 = 3;

/// Why no listening socket could be had.
#[derive(Debug)]
pub enum ListenError {
    /// systemd passed a number of sockets other than one.
    FdCount(String),
    /// Descriptor 3 is not a UNIX stream socket.
    NotUnixSocket(io::Error),
    /// `--socket-path` names something that is not a socket; we never delete it.
    NotASocket(std::path::PathBuf),
    /// Creating the socket failed.
    Bind(std::path::PathBuf, io::Error),
}

impl std::fmt::Display for ListenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenError::FdCount(n) => {
                write!(
                    f,
                    "systemd passed LISTEN_FDS={n}; exactly one socket expected"
                )
            }
            ListenError::NotUnixSocket(e) => {
                write!(f, "descriptor 3 from systemd is not a UNIX socket: {e}")
            }
            ListenError::NotASocket(p) => {
                write!(
                    f,
                    "{}: exists and is not a socket; not replacing it",
                    p.display()
                )
            }
            ListenError::Bind(p, e) => write!(f, "{}: cannot create socket: {e}", p.display()),
        }
    }
}

impl std::error::Error for ListenError {}

/// The socket systemd passed, if this process was socket-activated (`LISTEN_PID` is ours
/// and `LISTEN_FDS` is set). The variables are removed so smartctl does not inherit them.
pub fn from_systemd() -> Result<Option<UnixListener>, ListenError> {
    let pid = std::env::var("LISTEN_PID").ok();
    let fds = std::env::var("LISTEN_FDS").ok();
    for v in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(v);
    }
    let (Some(pid), Some(fds)) = (pid, fds) else {
        return Ok(None);
    };
    if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
        return Ok(None);
    }
    match fds.trim().parse::<u32>() {
        Ok(0) => Ok(None),
        Ok(1) => {
            let inherited = adopt_systemd_fd();
            // Checks that fd 3 really is a UNIX socket (getsockname fails otherwise), and
            // re-opens it close-on-exec (systemd passes it without) so smartctl never
            // inherits the listening socket; dropping `inherited` closes fd 3.
            inherited.local_addr().map_err(ListenError::NotUnixSocket)?;
            inherited
                .try_clone()
                .map(Some)
                .map_err(ListenError::NotUnixSocket)
        }
        _ => Err(ListenError::FdCount(fds)),
    }
}

/// Takes ownership of descriptor 3.
///
/// The one `unsafe` of the helper. Sound because: it is called at most once (from
/// [`from_systemd`], once per process, after checking `LISTEN_PID` is this process and
/// `LISTEN_FDS` is 1, i.e. systemd opened fd 3 for us and nothing else in the process owns
/// it: std opens nothing before `main`, and the helper opens no file before this). If fd 3 is
/// not a UNIX socket, the caller's `local_addr` fails and the listener is dropped (closing it).
#[allow(unsafe_code)]
fn adopt_systemd_fd() -> UnixListener {
    use std::os::fd::FromRawFd;
    // SAFETY: see above: fd 3 is open, owned by no other object, and adopted exactly once.
    unsafe { UnixListener::from_raw_fd(SD_LISTEN_FDS_START) }
}

/// A socket file this process created; [`SocketFile::remove`] deletes it only while it is
/// still the one we bound (another helper may have replaced it since).
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl SocketFile {
    /// Removes the socket file if it is still ours (on a clean exit).
    pub fn remove(&self) {
        match std::fs::symlink_metadata(&self.path) {
            Ok(m) if m.dev() == self.dev && m.ino() == self.ino => {
                let _ = std::fs::remove_file(&self.path);
            }
            _ => {}
        }
    }
}

/// Creates the socket at `path`, mode 0660 (owner root, the exporter's group connects),
/// replacing a stale socket there but never any other kind of file.
///
/// The socket is bound under a temporary name in the same directory and renamed into place,
/// so a stale socket is replaced atomically. Its mode comes from the umask in force at
/// `bind` (0117), never from a later `chmod`: a `chmod` by path follows symlinks, and in a
/// directory another user can write, swapping the temporary name for a symlink would let
/// that user have root chmod any file. The umask is process-wide: this runs before any
/// thread starts.
pub fn bind(path: &Path) -> Result<(UnixListener, SocketFile), ListenError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_socket() => {
            return Err(ListenError::NotASocket(path.to_path_buf()))
        }
        _ => {}
    }
    let err = |e| ListenError::Bind(path.to_path_buf(), e);
    let name = path
        .file_name()
        .ok_or_else(|| err(io::Error::new(io::ErrorKind::InvalidInput, "no file name")))?;
    let tmp = path.with_file_name(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    let previous = umask(Mode::from_bits_truncate(0o117));
    let bound = UnixListener::bind(&tmp);
    umask(previous);
    let listener = bound.map_err(err)?;
    // Taken from the listener's own name before the rename: the identity of what we made.
    let made = std::fs::symlink_metadata(&tmp).and_then(|m| {
        std::fs::rename(&tmp, path)?;
        Ok(m)
    });
    match made {
        Ok(m) => Ok((
            listener,
            SocketFile {
                path: path.to_path_buf(),
                dev: m.dev(),
                ino: m.ino(),
            },
        )),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(err(e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn bind_replaces_stale_socket_and_sets_mode() {
        let dir = std::env::temp_dir().join(format!("custos-helper-bind-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ipc");
        let stale = UnixListener::bind(&path).unwrap();
        drop(stale);
        let (l, file) = bind(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o660);
        assert!(std::os::unix::net::UnixStream::connect(&path).is_ok());
        drop(l);
        file.remove();
        assert!(!path.exists(), "our socket is removed on a clean exit");
        let file = dir.join("file");
        std::fs::write(&file, b"keep me").unwrap();
        assert!(matches!(bind(&file), Err(ListenError::NotASocket(_))));
        assert_eq!(std::fs::read(&file).unwrap(), b"keep me");

        // In a directory another user can write, that user swaps the temporary name for a
        // symlink to a file of theirs choosing, again and again, while root binds: the
        // file's mode must never change (a chmod by path would make it 0660).
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let tmp = dir.join(format!(".ipc.{}.tmp", std::process::id()));
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = std::fs::remove_file(&tmp);
                    let _ = std::os::unix::fs::symlink(&file, &tmp);
                }
            });
            for _ in 0..2000 {
                let _ = std::fs::remove_file(&path);
                drop(bind(&path));
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        });
        assert_eq!(
            std::fs::metadata(&file).unwrap().mode() & 0o777,
            0o600,
            "root changed the mode of a file it was pointed at"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn not_activated_without_our_pid() {
        // LISTEN_PID of another process: not ours, fd 3 is left alone.
        std::env::set_var("LISTEN_PID", "1");
        std::env::set_var("LISTEN_FDS", "1");
        assert!(from_systemd().unwrap().is_none());
        assert!(
            std::env::var("LISTEN_FDS").is_err(),
            "variables are removed"
        );
    }
}
