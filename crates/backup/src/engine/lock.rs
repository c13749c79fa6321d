//! One run of a job at a time: an exclusive `flock` on the job file, held for the whole run.
//!
//! Two cron runs of one job that overlap would share object names and race each other's
//! retention. The lock is on the job file itself (no lock file to leave behind or to create
//! in a read-only `/etc`); the kernel drops it when the process ends, however it ends. The
//! holder's pid comes from `/proc/locks`, so the refusal can name it.

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::{flock, FlockOperation};

/// How often a waiting run tries the lock again.
const POLL: Duration = Duration::from_millis(100);

/// Why the job could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another run holds the lock (and did not let go within `--lock-wait`).
    #[error("{}: another run of this job is in progress{}; not starting (--lock-wait SECONDS waits for it)", file.display(), holder(pid))]
    Held { file: PathBuf, pid: Option<u32> },
    #[error("{}: cannot lock the job file: {source}", file.display())]
    Io {
        file: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn holder(pid: &Option<u32>) -> String {
    match pid {
        Some(p) => format!(" (pid {p})"),
        None => String::new(),
    }
}

/// The held lock; dropping it releases it.
#[derive(Debug)]
pub struct JobLock {
    _file: File,
}

/// Locks `job_file`, waiting up to `wait` for a run that holds it (zero: fail at once).
pub fn acquire(job_file: &Path, wait: Duration) -> Result<JobLock, LockError> {
    let io_err = |source: io::Error| LockError::Io {
        file: job_file.to_owned(),
        source,
    };
    let file = File::open(job_file).map_err(io_err)?;
    let deadline = Instant::now() + wait;
    loop {
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(JobLock { _file: file }),
            Err(rustix::io::Errno::WOULDBLOCK) if Instant::now() < deadline => {
                std::thread::sleep(POLL.min(deadline - Instant::now()));
            }
            Err(rustix::io::Errno::WOULDBLOCK) => {
                let meta = file.metadata().map_err(io_err)?;
                return Err(LockError::Held {
                    file: job_file.to_owned(),
                    pid: holder_pid(meta.dev(), meta.ino()),
                });
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(io_err(e.into())),
        }
    }
}

/// The pid holding a `flock` on the file `dev`:`ino`, from `/proc/locks`
/// (`1: FLOCK  ADVISORY  WRITE 1234 fe:00:5914700 0 EOF`, device numbers in hex).
fn holder_pid(dev: u64, ino: u64) -> Option<u32> {
    let text = std::fs::read_to_string("/proc/locks").ok()?;
    parse_locks(&text, dev, ino)
}

fn parse_locks(text: &str, dev: u64, ino: u64) -> Option<u32> {
    let (major, minor) = (rustix::fs::major(dev), rustix::fs::minor(dev));
    text.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // Blocked waiters are listed as `1: -> FLOCK ...`; they do not hold the lock.
        if fields.get(1) != Some(&"FLOCK") {
            return None;
        }
        let pid = fields.get(4)?.parse::<u32>().ok()?;
        let mut id = fields.get(5)?.split(':');
        let maj = u32::from_str_radix(id.next()?, 16).ok()?;
        let min = u32::from_str_radix(id.next()?, 16).ok()?;
        let inode = id.next()?.parse::<u64>().ok()?;
        (maj == major && min == minor && inode == ino).then_some(pid)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_locks_lines_name_the_holder() {
        let dev = rustix::fs::makedev(0xfe, 0);
        let text = "1: FLOCK  ADVISORY  WRITE 19143 fe:00:5914700 0 EOF\n\
                    1: -> FLOCK  ADVISORY  WRITE 222 fe:00:42 0 EOF\n\
                    2: FLOCK  ADVISORY  WRITE 333 fe:00:42 0 EOF\n";
        assert_eq!(parse_locks(text, dev, 5_914_700), Some(19143));
        assert_eq!(parse_locks(text, dev, 42), Some(333));
        assert_eq!(parse_locks(text, dev, 7), None);
    }

    #[test]
    fn second_lock_is_refused_naming_this_pid_then_waits() {
        let dir = tempfile::tempdir().unwrap();
        let job = dir.path().join("job.json");
        std::fs::write(&job, b"{}").unwrap();
        let held = acquire(&job, Duration::ZERO).unwrap();
        // flock locks belong to the open file: a second open in this process conflicts.
        match acquire(&job, Duration::ZERO) {
            Err(LockError::Held { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("{other:?}"),
        }
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(held);
        });
        acquire(&job, Duration::from_secs(30)).expect("waited for the lock");
        releaser.join().unwrap();
    }
}
