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
//! Modules form layers that only depend downward (docs/ARCHITECTURE.md, "Layers"; the test
//! `layers::imports_only_point_down` enforces it):
//! - the CLI (`main.rs`) uses only [`commands`], the one public module;
//! - `commands` (a file per command): `run`, `list`, `restore`, `ls`, `verify`, `prune`,
//!   `schedule`, `status`; `restore` (list / restore / verify) and
//!   `coverage` (which copy is on which destination) serve them;
//! - `engine`: runner, pipeline, fanout, retention, report (failures, summary table),
//!   interrupt (signals cancel the token), lock;
//! - `job`: the original's JSON job file, the keys every entry shares, cross-entry checks; it
//!   holds the handler specs, so it sits above the handler registries;
//! - handlers: `source`, `destination`, `notify`, each a registry plus one module per type
//!   (config, checks, `build()`, implementation);
//! - shared below the handlers: `outcome` (the typed run result notifiers read), `cancel`
//!   (the cancellation token), `naming`, `crypto`, `table`;
//! - the kit (`custos_kit`, `custos_process`).
//!
//! `fuzz` (hidden, public for `fuzz/`) holds the bodies of the fuzz targets, shared with their
//! corpus tests; like `main.rs` it may use any layer.

pub(crate) mod cancel;
pub mod commands;
pub(crate) mod coverage;
pub(crate) mod crypto;
pub(crate) mod destination;
pub(crate) mod engine;
#[doc(hidden)]
pub mod fuzz;
pub(crate) mod job;
pub(crate) mod naming;
pub(crate) mod notify;
pub(crate) mod outcome;
pub(crate) mod restore;
pub(crate) mod schedule;
pub(crate) mod source;
pub(crate) mod status;
pub(crate) mod table;

#[cfg(test)]
mod layers;
