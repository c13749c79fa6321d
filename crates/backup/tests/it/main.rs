//! The `backup` crate's integration tests: the real binary against real local servers
//! (MariaDB, PostgreSQL, moto, smbd, aiosmtpd, a push gateway, gpg) and fakes of hosted
//! services, a module per area.
//!
//! One test binary rather than one per file: each would link the ~340 crates of the
//! dependency tree and compile `common` again (docs/ARCHITECTURE.md §6). Tests therefore
//! share one process: none may set environment variables, the umask or signal handlers of
//! the process, bind a fixed port or use a fixed temporary path; each uses its own temporary
//! directory, port-0 servers and unique database names.

mod common;

mod aws_sources;
mod azure_disk;
mod btrfs_source;
mod databases;
mod databases_each;
mod faults;
mod folder_roundtrip;
mod gs_destination;
mod hooks;
mod hostile_restore;
mod lvm_ssh;
mod notify_http;
mod notify_metrics;
mod notify_smtp;
mod parallel_sources;
mod partial_restore;
mod remote_destinations;
mod retention_clock;
mod run_control;
mod saas_destinations;
mod samba_destination;
mod schedule;
mod ssh_sources;
mod status;
mod verify_sample;
