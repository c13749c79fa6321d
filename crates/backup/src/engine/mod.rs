//! The engine: runs a job over the handlers. Depends on the job file ([`crate::job`]), the
//! handler registries (source, destination, notify) and the shared types below them; nothing
//! below imports it (docs/ARCHITECTURE.md, "Layers").
//!
//! - [`runner`]: runs a job: sources independent, destinations independent, the report.
//! - [`parallel`]: up to `max_parallel_sources` sources at once (report in config order),
//!   each destination within the uploads it takes at once, the cores shared out.
//! - [`pipeline`]: compression, OpenPGP encryption, hashing, tee to destinations.
//! - [`fanout`]: one writer thread per destination behind a bounded queue.
//! - [`hooks`]: the job's and each source's `before`/`after`/`on_error` commands.
//! - [`retention`]: which copies to delete (never the newest good one); [`calendar`] holds
//!   the calendar rules (`keep_daily`, ...).
//! - [`report`]: errors of the layers below as typed failures; the summary table.
//! - [`interrupt`]: SIGINT/SIGTERM cancel the run's token, writers abort, exit 130/143.
//! - [`lock`]: one run of a job at a time (`flock` on the job file).

pub(crate) mod calendar;
pub(crate) mod fanout;
pub(crate) mod hooks;
pub(crate) mod interrupt;
pub(crate) mod lock;
pub(crate) mod parallel;
pub(crate) mod pipeline;
pub(crate) mod report;
pub(crate) mod retention;
pub(crate) mod runner;
