//! haproxysessionmon: polls HAProxy stats and forwards sessions per proxy to a log file,
//! Graylog (GELF), PRTG and Prometheus; a drop-in for the Python haproxy-session-mon.
//!
//! Data flows one way:
//! `source (HTTP ;csv | runtime socket) -> csv::parse -> Sample -> Batch -> each sink`, and
//! every poll's result goes to the snapshot store that `prometheus` backends serve.
//!
//! - [`config`]: the original's YAML config plus the new keys.
//! - [`source`]: fetching a stats page (basic auth, timeout, TLS options, `show stat`).
//! - [`csv`]: parsing it by header name.
//! - [`info`]: `show info` (process figures) on the runtime socket.
//! - [`columns`]: the extra numeric columns the `prometheus` backend exports, and their names.
//! - [`sample`]: the rows as typed values; unknown is `None`, never 0.
//! - [`monitor`]: a fixed-rate poll task per server, row selection, starting everything.
//! - [`sink`]: the backend types (a module each: config, checks, build, sink) and the
//!   tasks/threads that run them with bounded queues and error counters.
//! - [`snapshot`], [`metrics`]: the latest poll per server and its Prometheus exposition.
//! - [`status_page`]: a `prometheus` backend's page at `/`, rendered from the snapshots.
//! - [`applog`]: the monitor's own log as the `logging` section says.

pub mod applog;
pub mod columns;
pub mod config;
pub mod csv;
pub mod info;
pub mod metrics;
pub mod monitor;
pub mod sample;
pub mod sink;
pub mod snapshot;
pub mod source;
pub mod status_page;
