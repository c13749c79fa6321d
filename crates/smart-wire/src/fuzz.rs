//! The body of the `smart_wire` fuzz target of `fuzz/` (cargo-fuzz, nightly): a stream the
//! exporter reads from the helper's socket, shared with the test that runs its corpus on
//! stable Rust. It must not panic, and a report read from it must survive write -> read.

use crate::{read_report, write_frame, Event, Summary};

/// `smart_wire`: one connection's bytes. A report read from them, written again frame by frame,
/// reads back as the same report.
pub fn stream(data: &[u8]) {
    let mut input = data;
    let Ok(report) = read_report(&mut input) else {
        return;
    };
    let json = serde_json::to_string(&report).expect("a report read serializes");
    let mut wire = Vec::new();
    let summary = Summary {
        helper_version: report.helper_version,
        started: report.started,
        duration_ms: report.duration_ms,
        scan: report.scan,
        devices: u32::try_from(report.devices.len()).expect("device count was a u32"),
    };
    for d in report.devices {
        write_frame(&mut wire, &Event::Device(d)).expect("a device read writes");
    }
    write_frame(&mut wire, &Event::Done(summary)).expect("a summary read writes");
    let again = read_report(&mut wire.as_slice()).expect("a written report reads");
    assert_eq!(
        json,
        serde_json::to_string(&again).expect("serializes"),
        "write -> read changed the report"
    );
}

/// Each target's corpus (`fuzz/corpus/<target>/`) as a test on stable.
#[cfg(test)]
mod tests {
    custos_testkit::corpus_tests! {
        smart_wire => super::stream,
    }
}
