//! custos-smart-wire: the one codec between `smart_exporter_helper` (root) and
//! `prometheus_smart_exporter` (unprivileged), so both ends agree by construction.
//!
//! - [`frame`]: the 9-byte header (version, little-endian u64 length) and JSON payload, with
//!   the reader's version check and size cap.
//! - [`report`]: the payloads: each device's smartctl JSON as it is read, then the scan.
//! - `fuzz` (hidden): the body of the fuzz target in `fuzz/`, shared with its corpus test.

pub mod frame;
#[doc(hidden)]
pub mod fuzz;
pub mod report;

pub use frame::{
    check_count, decode, decode_payload, encode, parse_header, read_frame, read_report,
    write_frame, WireError, HEADER_LEN, MAX_PAYLOAD, VERSION,
};
pub use report::{DeviceReport, Event, Outcome, Report, Scan, Source, Summary};
