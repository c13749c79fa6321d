//! Progress of the sources being read: on a terminal one line per running source (bytes,
//! rate, time), so sources running in parallel each keep their own line instead of drawing
//! over each other; otherwise a log line every 30 s per source (`-v` shows them), so cron
//! mails stay empty unless something went wrong.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::outcome::size_description;

/// Interval of progress log lines when there is no terminal.
const LOG_EVERY: Duration = Duration::from_secs(30);

/// The process's one stderr: every source's line is drawn by this one set of bars, which
/// moves the lines of sources that are still running up when one ends.
fn lines() -> &'static indicatif::MultiProgress {
    static LINES: OnceLock<indicatif::MultiProgress> = OnceLock::new();
    LINES.get_or_init(indicatif::MultiProgress::new)
}

/// Progress of one source: a line on a terminal, a log line every 30 s otherwise.
pub(super) struct ProgressReport {
    bar: Option<indicatif::ProgressBar>,
    source: String,
    pub(super) started: Instant,
    last_log: Mutex<Instant>,
    /// Bytes read from the source so far (what a failed source's summary row shows).
    read: AtomicU64,
}

impl ProgressReport {
    pub(super) fn new(source: &str, bar: bool) -> Self {
        let bar = (bar && std::io::stderr().is_terminal()).then(|| {
            let b = lines().add(indicatif::ProgressBar::new_spinner());
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{spinner} {prefix}: {bytes} read, {binary_bytes_per_sec}, {elapsed}",
            ) {
                b.set_style(style);
            }
            b.set_prefix(source.to_owned());
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        ProgressReport {
            bar,
            source: source.to_owned(),
            started: Instant::now(),
            last_log: Mutex::new(Instant::now()),
            read: AtomicU64::new(0),
        }
    }

    pub(super) fn read(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }

    pub(super) fn update(&self, bytes: u64) {
        self.read.store(bytes, Ordering::Relaxed);
        if let Some(b) = &self.bar {
            b.set_position(bytes);
            return;
        }
        let Ok(mut last) = self.last_log.lock() else {
            return;
        };
        if last.elapsed() >= LOG_EVERY {
            *last = Instant::now();
            let secs = self.started.elapsed().as_secs_f64().max(0.001);
            tracing::info!(
                source = %self.source,
                bytes,
                rate = %format!("{}/s", size_description(bytes as f64 / secs)),
                "progress"
            );
        }
    }

    /// Takes the source's line away.
    pub(super) fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
            lines().remove(b);
        }
    }
}
