//! custos-smart-wire: the one codec between `smart_exporter_helper` (root) and
//! `prometheus_smart_exporter` (unprivileged), so both ends agree by construction.
//!
//! - [`frame`]: the 9-byte header (version, little-endian u64 length) and JSON payload, with
//!   the reader's version check and size cap.
//! - [`report`]: the payload: the helper's scan and each device's smartctl JSON.

pub mod frame;
pub mod report;

pub use frame::{
    decode, decode_payload, encode, parse_header, read_frame, write_frame, WireError, HEADER_LEN,
    MAX_PAYLOAD, VERSION,
};
pub use report::{DeviceReport, Outcome, Report, Scan, Source};
