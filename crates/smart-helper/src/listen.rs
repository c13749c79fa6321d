//! The listening socket: handed over by systemd, or made by the helper itself.

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::Path;

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

/// Creates the socket at `path`, mode 0660 (owner root, the exporter's group connects),
/// replacing a stale socket there but never any other kind of file.
///
/// The socket is bound under a temporary name in the same directory, given its mode, and
/// then renamed into place, so no client can ever connect while it has the umask's mode.
pub fn bind(path: &Path) -> Result<UnixListener, ListenError> {
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
    let listener = UnixListener::bind(&tmp).map_err(err)?;
    let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o660))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(e));
    }
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn bind_replaces_stale_socket_and_sets_mode() {
        let dir = std::env::temp_dir().join(format!("custos-helper-bind-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ipc");
        let stale = UnixListener::bind(&path).unwrap();
        drop(stale);
        let l = bind(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o660);
        assert!(std::os::unix::net::UnixStream::connect(&path).is_ok());
        drop(l);
        let file = dir.join("file");
        std::fs::write(&file, b"keep me").unwrap();
        assert!(matches!(bind(&file), Err(ListenError::NotASocket(_))));
        assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
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
