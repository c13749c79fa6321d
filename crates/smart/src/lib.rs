//! custos-smart: `prometheus_smart_exporter`, the unprivileged half of the S.M.A.R.T.
//! exporter. It asks `smart_exporter_helper` (root) over a UNIX socket for every drive's
//! smartctl JSON, in the background, and serves the result on `/metrics`.
//!
//! - [`devicedb`]: check_smart_attributes' device DB (both formats).
//! - [`attrmap`]: the attribute mapping (`{"generic": [...]}`), with the built-in default.
//! - [`model`]: the smartctl JSON fields read.
//! - [`state`]: per drive the last read and the last good data.
//! - [`metrics`]: state to metric families (the original's names, then the additions).
//! - [`collector`]: the published snapshot and its prometheus-client collector.
//! - [`refresh`]: talking to the helper on an interval.
//! - [`status_page`]: the page at `/`, rendered from the published state.

pub mod attrmap;
pub mod collector;
pub mod devicedb;
pub mod error;
pub mod metrics;
pub mod model;
pub mod refresh;
pub mod state;
pub mod status_page;

pub use error::Error;
