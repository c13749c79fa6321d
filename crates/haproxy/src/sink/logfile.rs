//! `type: logfile`: a tab-separated line per sample, under a header line, reopened on SIGHUP so
//! logrotate can move the file away.

use super::{one_line, Built, Context, Delivered, Sink, SinkConfig, SinkError, ThreadSink};
use crate::sample::{Batch, Sample};
use custos_kit::config::{Invalid, Validate};
use serde::Deserialize;
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The header line. The first nine columns are the original's (its `http5xx` spelled
/// consistently); `sessions` is now `scur`, concurrent sessions, as its README promised.
pub const HEADER: &str = "time\tserver_id\tendpoint\tbackend\tsessions\tqueued_sessions\t\
active_backends\thttp_4xx\thttp_5xx\ttype\tsvname\tsession_rate\tmax_sessions\tsession_limit\t\
backup_servers\tstatus";

/// Bumped by the SIGHUP handler; a sink that sees a new value reopens its file.
pub type Reopen = Arc<AtomicU64>;

/// `type: logfile`. The original documented `path` but read `filename`; both are accepted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogfileBackend {
    #[serde(default)]
    pub path: Option<PathBuf>,
    #[serde(default)]
    pub filename: Option<PathBuf>,
}

impl LogfileBackend {
    /// The file to write (valid after `validate()`).
    pub fn file(&self) -> &Path {
        self.path
            .as_deref()
            .or(self.filename.as_deref())
            .unwrap_or(Path::new(""))
    }
}

impl Validate for LogfileBackend {
    fn validate(&self) -> Result<(), Invalid> {
        match (&self.path, &self.filename) {
            (None, None) => Err(Invalid::new("path", "", "a logfile backend needs `path`")),
            (Some(p), Some(f)) if p != f => Err(Invalid::new(
                "filename",
                f.display(),
                format!("differs from `path` ({})", p.display()),
            )),
            _ => Ok(()),
        }
    }
}

impl SinkConfig for LogfileBackend {
    fn build(&self, ctx: &Context) -> Result<Built, SinkError> {
        let sink = LogfileSink::new(self.file().to_path_buf(), Arc::clone(&ctx.reopen));
        Ok(Built::Sink(Sink::Thread(Box::new(sink))))
    }
}

impl ThreadSink for LogfileSink {
    fn write(&mut self, batch: &Batch) -> Result<Delivered, SinkError> {
        LogfileSink::write(self, batch).map(|()| Delivered::default())
    }
}

#[derive(Debug)]
pub struct LogfileSink {
    path: PathBuf,
    file: Option<File>,
    reopen: Reopen,
    seen: u64,
}

impl LogfileSink {
    /// A sink writing to `path` (opened at the first write, so a missing directory is an error
    /// counted per batch, not a startup failure).
    pub fn new(path: PathBuf, reopen: Reopen) -> LogfileSink {
        let seen = reopen.load(Ordering::Acquire);
        LogfileSink {
            path,
            file: None,
            reopen,
            seen,
        }
    }

    fn open(&mut self) -> Result<&mut File, SinkError> {
        let now = self.reopen.load(Ordering::Acquire);
        if now != self.seen {
            self.seen = now;
            self.file = None;
        }
        if self.file.is_none() {
            let io = |source| SinkError::Io {
                what: format!("opening {}", self.path.display()),
                source,
            };
            let mut f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(io)?;
            // A header per file, not per start: a new (or rotated) file gets one.
            if f.metadata().map_err(io)?.len() == 0 {
                writeln!(f, "{HEADER}").map_err(io)?;
            }
            self.file = Some(f);
        }
        Ok(self.file.as_mut().expect("opened above"))
    }

    /// Appends the batch's lines in one write.
    pub fn write(&mut self, batch: &Batch) -> Result<(), SinkError> {
        let text = lines(batch);
        let path = self.path.display().to_string();
        let f = self.open()?;
        if let Err(source) = f.write_all(text.as_bytes()) {
            self.file = None;
            return Err(SinkError::Io {
                what: format!("writing {path}"),
                source,
            });
        }
        Ok(())
    }
}

/// The lines of a batch; unknown values are empty fields.
pub fn lines(batch: &Batch) -> String {
    let time = chrono::DateTime::<chrono::Utc>::from(batch.time)
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    let mut out = String::with_capacity(batch.samples.len() * 96);
    for s in &batch.samples {
        line(&mut out, &time, batch, s);
    }
    out
}

fn line(out: &mut String, time: &str, batch: &Batch, s: &Sample) {
    let n = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
    let c = &s.counts;
    let _ = writeln!(
        out,
        "{time}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
        one_line(&batch.server),
        one_line(&batch.endpoint),
        one_line(&s.proxy),
        n(c.scur),
        n(c.qcur),
        n(c.act),
        n(c.hrsp_4xx),
        n(c.hrsp_5xx),
        s.row_type.as_str(),
        one_line(&s.svname),
        n(c.rate),
        n(c.smax),
        n(c.slim),
        n(c.bck),
        one_line(s.status.as_deref().unwrap_or("")),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::{Counts, RowType};
    use std::time::{Duration, UNIX_EPOCH};

    pub fn batch() -> Batch {
        Batch {
            server: "lb1".into(),
            endpoint: "http://lb1:8404/stats;csv".into(),
            time: UNIX_EPOCH + Duration::from_millis(1_700_000_000_250),
            samples: vec![Sample {
                proxy: "be_app".into(),
                svname: "BACKEND".into(),
                row_type: RowType::Backend,
                status: Some("UP".into()),
                counts: Counts {
                    scur: Some(3),
                    rate: Some(9),
                    qcur: Some(0),
                    act: Some(2),
                    ..Counts::default()
                },
            }],
        }
    }

    #[test]
    fn header_once_and_reopen_after_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.log");
        let reopen: Reopen = Arc::default();
        let mut s = LogfileSink::new(path.clone(), Arc::clone(&reopen));
        s.write(&batch()).unwrap();
        s.write(&batch()).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], HEADER);
        assert_eq!(
            lines[1],
            "2023-11-14T22:13:20.250Z\tlb1\thttp://lb1:8404/stats;csv\tbe_app\t3\t0\t2\t\t\tbackend\tBACKEND\t9\t\t\t\tUP"
        );
        assert_eq!(
            lines[1].split('\t').count(),
            HEADER.split('\t').count(),
            "a field per header column"
        );
        // logrotate: move the file away, then SIGHUP.
        std::fs::rename(&path, dir.path().join("s.log.1")).unwrap();
        s.write(&batch()).unwrap();
        assert!(
            !path.exists(),
            "without SIGHUP the moved file is still written"
        );
        reopen.fetch_add(1, Ordering::Release);
        s.write(&batch()).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.starts_with(HEADER));
    }

    #[test]
    fn missing_directory_is_an_error_each_time() {
        let mut s = LogfileSink::new(PathBuf::from("/nonexistent/dir/s.log"), Arc::default());
        assert!(matches!(s.write(&batch()), Err(SinkError::Io { .. })));
        assert!(s.write(&batch()).is_err());
    }
}
