//! smart_exporter_helper: the root half of the S.M.A.R.T. exporter.
//!
//! Small on purpose (std, the wire crate, serde_json, custos-process and rustix): it finds drives with
//! `smartctl --scan-open`, reads each with `smartctl --json` (killed after a timeout, a few at
//! a time), and writes each device as a frame, as soon as it is read, to whoever connects to
//! its UNIX socket, then the end of the sweep. It
//! reads nothing from clients; what it runs is fixed by its command line.
//!
//! - [`cli`]: options, parsed by hand.
//! - [`listen`]: systemd socket activation or its own 0660 socket.
//! - [`serve`]: the accept loop: a few clients at a time, one deadline per frame.
//! - [`shared`]: one sweep shared by the clients that arrive while it runs or soon after.
//! - [`sweep`]: scan, filter, parallel reads, each device handed on as it is read.
//! - [`smartctl`]: one bounded smartctl run; argument lists.
//! - [`glob`]: `--include`/`--exclude` patterns.

pub mod cli;
pub mod glob;
pub mod listen;
pub mod log;
pub mod serve;
pub mod shared;
pub mod smartctl;
pub mod sweep;
