//! The `backup` job runner: the engine that every source, destination and notifier plugs into.
//!
//! Data flows one way, streamed end to end in bounded memory (no temporary file):
//! `Source -> byte stream -> compress -> encrypt -> tee(sha256, size) -> each Destination writer`,
//! then retention per destination (only where the upload succeeded), then notifiers.
//!
//! The engine is synchronous std I/O with threads: zstd and OpenPGP are CPU-bound and the
//! sources are child processes or files. Only remote stores with async clients (opendal) run
//! on one shared runtime, behind the synchronous destination trait.
//!
//! Ownership of modules:
//! - [`config`]: the original's JSON job file (trailing commas tolerated), the keys every
//!   entry shares, validation; each type's own keys live in its module.
//! - [`source`]: the [`source::Source`] trait; one module per type (config, checks,
//!   construction, implementation): `folder`, `mysql`, `pgsql`.
//! - [`pipeline`]: compression, OpenPGP encryption, hashing, tee to destinations.
//! - [`crypto`]: OpenPGP (passphrase or recipients) encrypt/decrypt streams.
//! - [`destination`]: the [`destination::Destination`] trait, typed errors, the shared retry
//!   layer; one module per type: `local`, `s3` (also `minio`).
//! - [`fanout`]: one writer thread per destination behind a bounded queue.
//! - [`naming`]: object names `{id}/{YYYYmmddHHMMSS}/{file}` and their parsing.
//! - [`retention`]: which copies to delete (never the newest good one).
//! - [`runner`]: runs a job: sources independent, destinations independent, summary, exit code.
//! - [`restore`]: list / restore / verify.
//! - [`coverage`]: which copy is on which destination (`list`'s side-by-side view).
//! - [`interrupt`]: SIGINT/SIGTERM kill the producers, writers abort, exit 130/143.
//! - [`lock`]: one run of a job at a time (`flock` on the job file).
//! - [`commands`]: the `list`, `restore` and `verify` commands (keys, destinations, output).
//! - [`report`]: the typed run result; the summary table and the exit code are views of it.
//! - [`notify`]: notifiers (one module per type), fed the run result.
//! - [`table`]: aligned text tables (run summary, `list`, `verify`).
//! - `fuzz` (hidden): the bodies of the fuzz targets in `fuzz/`, shared with their corpus tests.

pub mod commands;
pub mod config;
pub mod coverage;
pub mod crypto;
pub mod destination;
pub mod fanout;
#[doc(hidden)]
pub mod fuzz;
pub mod interrupt;
pub mod lock;
pub mod naming;
pub mod notify;
pub mod pipeline;
pub mod report;
pub mod restore;
pub mod retention;
pub mod runner;
pub mod source;
pub mod table;
