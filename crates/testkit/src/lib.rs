//! custos-testkit: helpers for the integration tests of every custos binary: they drive the real binaries
//! against real services, so this holds what that needs once.
//!
//! - [`browser`]: headless Chromium loading a status page: its DOM and a screenshot.
//! - [`http`]: a blocking HTTP/1.1 GET, no client crate needed.
//! - [`process`]: free ports, waiting with a deadline, commands with a deadline, and the
//!   missing-service policy (`CUSTOS_REQUIRE_SERVICES=1` turns a SKIP into a failure).
//! - [`metrics`]: a reader for the text exposition (0.0.4 or OpenMetrics).
//! - [`prometheus`]: a real Prometheus scraping a target, and the strict format checkers
//!   (`promtool check metrics`, the Python OpenMetrics parser).

pub mod browser;
pub mod http;
pub mod metrics;
pub mod process;
pub mod prometheus;

pub use http::{http_get, HttpResponse};
pub use metrics::{Metrics, Sample};
pub use process::{
    find_binary, free_port, missing, pipe_to, require, run_with_deadline, services_required,
    strip_ansi, urlencode, wait_for,
};
