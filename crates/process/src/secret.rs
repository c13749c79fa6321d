//! A secret handed to a child as an in-memory file on its stdin.

use std::fs::File;
use std::io::{self, Seek, Write};
use std::os::fd::OwnedFd;

/// A secret file (an option file, a pgpass line) held only in memory: a memfd of mode 0600
/// that becomes one child's stdin ([`crate::Stdin::Secret`]), which the child opens again by
/// name as [`SecretFile::PATH`].
///
/// Why stdin and not an inherited descriptor N: the memfd stays close-on-exec here, so no
/// other child spawned meanwhile (by any thread) inherits it; only the child it is given to
/// gets it, as fd 0 (set up between fork and exec by std). Why a memfd: it is a regular file,
/// so libpq's pgpass checks (regular, no group/other bits) and MariaDB's option reader
/// (ignores world-writable files) accept `/dev/fd/0`, which opens it afresh from offset 0;
/// it is never on a file system and vanishes with the last process holding it, so a
/// `kill -9` leaves nothing behind.
pub struct SecretFile {
    pub(crate) fd: OwnedFd,
}

impl std::fmt::Debug for SecretFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretFile(<secret>)")
    }
}

impl SecretFile {
    /// Where the child finds it: its own stdin, opened again by name.
    pub const PATH: &'static str = "/dev/fd/0";

    /// Creates the memfd (`name` only shows in `/proc/*/fd` links), makes it 0600 and writes
    /// `text` into it.
    pub fn new(name: &str, text: &str) -> io::Result<Self> {
        let fd = rustix::fs::memfd_create(name, rustix::fs::MemfdFlags::CLOEXEC)?;
        // memfds start as 0777; MariaDB ignores world-writable option files and libpq
        // refuses a pgpass file with any group/other bit.
        rustix::fs::fchmod(&fd, rustix::fs::Mode::from_raw_mode(0o600))?;
        let mut file = File::from(fd);
        file.write_all(text.as_bytes())?;
        // Back to the start: a child that reads its stdin as a stream (ssh forwarding it to
        // a remote `--defaults-file=/dev/stdin`) reads from the shared offset, not afresh.
        file.rewind()?;
        Ok(SecretFile {
            fd: OwnedFd::from(file),
        })
    }

    /// What the child will see: mode bits, whether it is a regular file, and the text, read
    /// without moving the offset (checks and tests of the callers that build the text).
    pub fn read_back(&self) -> io::Result<(u32, bool, String)> {
        use std::os::unix::fs::{FileExt, PermissionsExt};
        let file = File::from(self.fd.try_clone()?);
        let meta = file.metadata()?;
        let len = usize::try_from(meta.len()).map_err(io::Error::other)?;
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, 0)?;
        Ok((
            meta.permissions().mode() & 0o7777,
            meta.file_type().is_file(),
            String::from_utf8_lossy(&buf).into_owned(),
        ))
    }

    /// Device and inode, to find copies of the descriptor in `/proc/*/fd` (tests).
    pub fn identity(&self) -> io::Result<(u64, u64)> {
        let st = rustix::fs::fstat(&self.fd)?;
        Ok((st.st_dev, st.st_ino))
    }
}
