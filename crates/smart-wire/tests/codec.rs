//! The codec against every way a frame can be wrong, and a property test on the decoder.

use custos_smart_wire::frame::{header, parse_header};
use custos_smart_wire::*;
use proptest::prelude::*;
use serde_json::value::RawValue;

fn sample() -> Report {
    Report {
        helper_version: "0.1.0".into(),
        started: 1_700_000_000,
        duration_ms: 42,
        scan: Scan {
            ok: true,
            exit_status: Some(0),
            error: None,
            found: 2,
        },
        devices: vec![
            DeviceReport {
                name: "/dev/sda".into(),
                dev_type: Some("sat".into()),
                source: Source::Scan,
                outcome: Outcome::Ok,
                exit_status: Some(0),
                error: None,
                elapsed_ms: 12,
                smartctl: Some(
                    RawValue::from_string(
                        r#"{"model_name":"X","smartctl":{"exit_status":0}}"#.into(),
                    )
                    .unwrap(),
                ),
            },
            DeviceReport {
                name: "/dev/bus/0".into(),
                dev_type: Some("megaraid,1".into()),
                source: Source::Manual,
                outcome: Outcome::Timeout,
                exit_status: None,
                error: Some("killed after 5s".into()),
                elapsed_ms: 5000,
                smartctl: None,
            },
        ],
    }
}

#[test]
fn round_trip_through_bytes_and_stream() {
    let frame = encode(&sample()).unwrap();
    assert_eq!(frame[0], VERSION);
    let len = u64::from_le_bytes(frame[1..9].try_into().unwrap());
    assert_eq!(
        len as usize,
        frame.len() - HEADER_LEN,
        "length is little endian"
    );
    let back: Report = decode(&frame).unwrap();
    assert_eq!(back.devices.len(), 2);
    assert_eq!(back.devices[1].outcome, Outcome::Timeout);
    assert_eq!(back.devices[1].port(), "/dev/bus/0 megaraid,1");
    assert_eq!(back.devices[0].port(), "/dev/sda");
    assert_eq!(
        back.devices[0].smartctl.as_ref().unwrap().get(),
        r#"{"model_name":"X","smartctl":{"exit_status":0}}"#,
        "smartctl's document travels verbatim"
    );
    assert_eq!(back.scan, sample().scan);

    let mut stream = Vec::new();
    write_frame(&mut stream, &sample()).unwrap();
    assert_eq!(stream, frame);
    let mut cursor = std::io::Cursor::new(stream);
    let back: Report = read_frame(&mut cursor).unwrap();
    assert_eq!(back.devices[0].name, "/dev/sda");
}

#[test]
fn truncated_frames_are_rejected() {
    let frame = encode(&sample()).unwrap();
    for cut in [0, 1, 8, 9, 10, frame.len() - 1] {
        let err = decode::<Report>(&frame[..cut]).unwrap_err();
        assert!(
            matches!(err, WireError::Truncated { .. }),
            "cut {cut}: {err}"
        );
        let err = read_frame::<Report, _>(&mut &frame[..cut]).unwrap_err();
        assert!(
            matches!(err, WireError::Truncated { .. }),
            "cut {cut}: {err}"
        );
        assert!(err.to_string().contains("truncated frame"));
    }
}

#[test]
fn wrong_versions_are_rejected_with_a_clear_error() {
    let mut frame = encode(&sample()).unwrap();
    frame[0] = 1;
    let err = decode::<Report>(&frame).unwrap_err();
    assert!(matches!(err, WireError::UnknownVersion(1)));
    assert!(err.to_string().contains("Python helper"), "{err}");
    frame[0] = 2;
    let err = read_frame::<Report, _>(&mut frame.as_slice()).unwrap_err();
    assert_eq!(err.to_string(), "unknown frame version 2 (expected 3)");
}

#[test]
fn oversized_lengths_are_rejected_before_reading() {
    let mut h = header(MAX_PAYLOAD + 1);
    assert!(matches!(
        parse_header(&h),
        Err(WireError::TooLarge { length, max }) if length == MAX_PAYLOAD + 1 && max == MAX_PAYLOAD
    ));
    // A reader facing u64::MAX must fail at once, not try to allocate or wait for the bytes.
    h[1..].copy_from_slice(&u64::MAX.to_le_bytes());
    let err = read_frame::<Report, _>(&mut h.as_slice()).unwrap_err();
    assert!(err.to_string().contains("above the cap"), "{err}");
    assert_eq!(parse_header(&header(MAX_PAYLOAD)).unwrap(), MAX_PAYLOAD);
}

#[test]
fn garbage_and_trailing_bytes_are_rejected() {
    let garbage = b"not json at all";
    let mut frame = header(garbage.len() as u64).to_vec();
    frame.extend_from_slice(garbage);
    assert!(matches!(
        decode::<Report>(&frame),
        Err(WireError::Payload(_))
    ));
    // Valid JSON of the wrong shape.
    let other = br#"{"devices": 3}"#;
    let mut frame = header(other.len() as u64).to_vec();
    frame.extend_from_slice(other);
    assert!(matches!(
        decode::<Report>(&frame),
        Err(WireError::Payload(_))
    ));
    // HTTP or anything else that is not a frame at all.
    assert!(matches!(
        decode::<Report>(b"GET / HTTP/1.1\r\n\r\n"),
        Err(WireError::UnknownVersion(b'G'))
    ));
    let mut frame = encode(&sample()).unwrap();
    frame.extend_from_slice(b"xx");
    assert!(matches!(
        decode::<Report>(&frame),
        Err(WireError::TrailingData { extra: 2 })
    ));
}

proptest! {
    /// Arbitrary bytes never panic the decoder, and anything it accepts re-encodes to a frame
    /// that decodes to the same report.
    #[test]
    fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(r) = decode::<Report>(&bytes) {
            let again: Report = decode(&encode(&r).unwrap()).unwrap();
            prop_assert_eq!(again.devices.len(), r.devices.len());
        }
        let _ = read_frame::<Report, _>(&mut bytes.as_slice());
    }

    /// Valid headers followed by arbitrary bytes: decoded or rejected, never a panic.
    #[test]
    fn valid_header_arbitrary_body(body in proptest::collection::vec(any::<u8>(), 0..256), extra in 0u64..4) {
        let mut frame = header(body.len() as u64 + extra).to_vec();
        frame.extend_from_slice(&body);
        let r = decode::<Report>(&frame);
        if extra > 0 {
            let truncated = matches!(r, Err(WireError::Truncated { .. }));
            prop_assert!(truncated);
        }
    }

    /// Reports with arbitrary strings and numbers survive the round trip.
    #[test]
    fn round_trip_arbitrary(name in ".{0,40}", t in proptest::option::of("[a-z0-9,+]{1,12}"),
                            code in proptest::option::of(0i32..256), ms in any::<u64>(),
                            err in proptest::option::of(".{0,60}")) {
        let mut r = sample();
        r.devices[1].name = name.clone();
        r.devices[1].dev_type = t.clone();
        r.devices[1].exit_status = code;
        r.devices[1].elapsed_ms = ms;
        r.devices[1].error = err.clone();
        let back: Report = decode(&encode(&r).unwrap()).unwrap();
        prop_assert_eq!(&back.devices[1].name, &name);
        prop_assert_eq!(&back.devices[1].dev_type, &t);
        prop_assert_eq!(back.devices[1].exit_status, code);
        prop_assert_eq!(back.devices[1].elapsed_ms, ms);
        prop_assert_eq!(&back.devices[1].error, &err);
    }
}

/// A stream: each device as its own frame, then the end of the sweep counting them.
#[test]
fn a_stream_of_devices_then_the_end() {
    let r = sample();
    let summary = Summary {
        helper_version: r.helper_version.clone(),
        started: r.started,
        duration_ms: r.duration_ms,
        scan: r.scan.clone(),
        devices: r.devices.len() as u32,
    };
    let mut stream = Vec::new();
    let names: Vec<String> = r.devices.iter().map(|d| d.name.clone()).collect();
    for d in r.devices {
        stream.extend(encode(&Event::Device(d)).unwrap());
    }
    let devices_only = stream.len();
    stream.extend(encode(&Event::Done(summary.clone())).unwrap());
    let back = read_report(&mut stream.as_slice()).unwrap();
    let back_names: Vec<String> = back.devices.iter().map(|d| d.name.clone()).collect();
    assert_eq!(back_names, names);
    assert_eq!(back.scan, summary.scan);

    // Cut before the end: truncated, never a report without its scan.
    let err = read_report(&mut &stream[..devices_only]).unwrap_err();
    assert!(matches!(err, WireError::Truncated { got: 0, .. }), "{err}");
    // An end that miscounts: refused.
    let mut wrong = stream[..devices_only].to_vec();
    wrong.extend(
        encode(&Event::Done(Summary {
            devices: 5,
            ..summary
        }))
        .unwrap(),
    );
    let err = read_report(&mut wrong.as_slice()).unwrap_err();
    assert!(
        matches!(
            err,
            WireError::Count {
                announced: 5,
                received: 2
            }
        ),
        "{err}"
    );
}
