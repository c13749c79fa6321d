//! Leveled lines on stderr (systemd puts them in the journal); `-v` raises the level as in the
//! original: none = errors, `-v` warnings, `-vv` info, `-vvv` debug.

use std::sync::atomic::{AtomicU8, Ordering};

static LEVEL: AtomicU8 = AtomicU8::new(0);

/// Sets the verbosity (the number of `-v`).
pub fn set_verbosity(v: u8) {
    LEVEL.store(v, Ordering::Relaxed);
}

/// Whether messages of `level` (0 error .. 3 debug) are printed.
pub fn enabled(level: u8) -> bool {
    level <= LEVEL.load(Ordering::Relaxed)
}

/// Prints one line if `level` is enabled.
pub fn line(level: u8, msg: std::fmt::Arguments<'_>) {
    if enabled(level) {
        let tag = ["error", "warning", "info", "debug"][usize::from(level.min(3))];
        eprintln!("smart_exporter_helper: {tag}: {msg}");
    }
}

macro_rules! error { ($($t:tt)*) => { $crate::log::line(0, format_args!($($t)*)) } }
macro_rules! warning { ($($t:tt)*) => { $crate::log::line(1, format_args!($($t)*)) } }
macro_rules! info { ($($t:tt)*) => { $crate::log::line(2, format_args!($($t)*)) } }
macro_rules! debug { ($($t:tt)*) => { $crate::log::line(3, format_args!($($t)*)) } }
pub(crate) use {debug, error, info, warning};
