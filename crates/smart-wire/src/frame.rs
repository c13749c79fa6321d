//! The frame: a 9-byte header, then the payload.
//!
//! ```text
//! byte 0      version (u8)       1 = the Python original's repr() payload (rejected here)
//!                                2 = one JSON report per connection (custos before streaming)
//!                                3 = JSON payload, a stream of frames (this crate)
//! bytes 1..9  payload length     u64, little endian
//! bytes 9..   payload            `length` bytes: one UTF-8 JSON document
//! ```
//!
//! The original packed the header with Python's `struct.Struct("=BQ")`: native byte order, which
//! is little endian on every machine it ran on; we make that explicit. A reader refuses any
//! version other than [`VERSION`] and any length above [`MAX_PAYLOAD`] before it allocates,
//! so a confused or hostile peer cannot make it reserve gigabytes. A connection carries a
//! stream of frames (see [`crate::report::Event`]): one per device as soon as it is read, then
//! the end of the sweep; the helper then closes.

use serde::{de::DeserializeOwned, Serialize};
use std::fmt;
use std::io::{Read, Write};

/// Size of the header in bytes.
pub const HEADER_LEN: usize = 9;
/// The protocol version this crate writes and the only one it reads: a stream of frames with
/// JSON payloads. (2 was one report per connection: the exporter could show no drive before
/// the slowest was read.)
pub const VERSION: u8 = 3;
/// The largest payload a reader accepts: 64 MiB. A report of 24 drives read with `-x` is about
/// 1 MiB; the helper caps each device's smartctl output at 1 MiB, so this holds ~60 full drives
/// and far more with the default (shorter) reads.
pub const MAX_PAYLOAD: u64 = 64 * 1024 * 1024;

/// Why a frame could not be read or written.
#[derive(Debug)]
pub enum WireError {
    /// Reading or writing the stream failed.
    Io(std::io::Error),
    /// The stream ended inside the header or payload.
    Truncated { expected: u64, got: u64 },
    /// The peer speaks another protocol version (1 is the Python helper's `repr()` format).
    UnknownVersion(u8),
    /// The header announces more than [`MAX_PAYLOAD`] bytes.
    TooLarge { length: u64, max: u64 },
    /// Bytes follow the payload (a frame is the whole message).
    TrailingData { extra: u64 },
    /// The payload is not the JSON document expected.
    Payload(serde_json::Error),
    /// The end of a sweep announced another number of devices than came before it.
    Count { announced: u32, received: usize },
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Io(e) => write!(f, "helper socket I/O: {e}"),
            WireError::Truncated { expected, got } => {
                write!(f, "truncated frame: expected {expected} bytes, got {got}")
            }
            WireError::UnknownVersion(1) => write!(
                f,
                "frame version 1 (the Python helper's repr() format) is not supported; \
                 run custos' smart_exporter_helper (version {VERSION})"
            ),
            WireError::UnknownVersion(v) => {
                write!(f, "unknown frame version {v} (expected {VERSION})")
            }
            WireError::TooLarge { length, max } => {
                write!(f, "frame announces {length} bytes, above the cap of {max}")
            }
            WireError::TrailingData { extra } => {
                write!(f, "{extra} unexpected bytes after the frame")
            }
            WireError::Payload(e) => write!(f, "frame payload is not a valid report: {e}"),
            WireError::Count {
                announced,
                received,
            } => write!(
                f,
                "the sweep's end announces {announced} devices, {received} came before it"
            ),
        }
    }
}

impl std::error::Error for WireError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WireError::Io(e) => Some(e),
            WireError::Payload(e) => Some(e),
            _ => None,
        }
    }
}

/// The header for a payload of `len` bytes.
pub fn header(len: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0] = VERSION;
    h[1..].copy_from_slice(&len.to_le_bytes());
    h
}

/// Checks a header; returns the payload length it announces.
pub fn parse_header(h: &[u8; HEADER_LEN]) -> Result<u64, WireError> {
    if h[0] != VERSION {
        return Err(WireError::UnknownVersion(h[0]));
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&h[1..]);
    let length = u64::from_le_bytes(len);
    if length > MAX_PAYLOAD {
        return Err(WireError::TooLarge {
            length,
            max: MAX_PAYLOAD,
        });
    }
    Ok(length)
}

/// Serializes `value` into one complete frame (header + JSON payload).
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, WireError> {
    let mut out = vec![0u8; HEADER_LEN];
    serde_json::to_writer(&mut out, value).map_err(WireError::Payload)?;
    let len = (out.len() - HEADER_LEN) as u64;
    if len > MAX_PAYLOAD {
        return Err(WireError::TooLarge {
            length: len,
            max: MAX_PAYLOAD,
        });
    }
    out[..HEADER_LEN].copy_from_slice(&header(len));
    Ok(out)
}

/// Writes `value` as one frame and flushes.
pub fn write_frame<T: Serialize, W: Write>(w: &mut W, value: &T) -> Result<(), WireError> {
    let frame = encode(value)?;
    w.write_all(&frame).map_err(WireError::Io)?;
    w.flush().map_err(WireError::Io)
}

/// Decodes one whole message: exactly one frame, nothing after it.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    let Some(h) = bytes.first_chunk::<HEADER_LEN>() else {
        return Err(WireError::Truncated {
            expected: HEADER_LEN as u64,
            got: bytes.len() as u64,
        });
    };
    decode_payload(parse_header(h)?, &bytes[HEADER_LEN..])
}

/// Decodes the payload after a header that announced `len` bytes: `body` is what followed
/// the header (a reader may pass one byte more than `len` to have trailing data noticed).
pub fn decode_payload<T: DeserializeOwned>(len: u64, body: &[u8]) -> Result<T, WireError> {
    let got = body.len() as u64;
    if got < len {
        return Err(WireError::Truncated { expected: len, got });
    }
    if got > len {
        return Err(WireError::TrailingData { extra: got - len });
    }
    serde_json::from_slice(body).map_err(WireError::Payload)
}

/// Reads one frame from `r` (which may hold more data after it) and decodes its payload.
pub fn read_frame<T: DeserializeOwned, R: Read>(r: &mut R) -> Result<T, WireError> {
    let mut h = [0u8; HEADER_LEN];
    let got = read_full(r, &mut h)?;
    if got < HEADER_LEN {
        return Err(WireError::Truncated {
            expected: HEADER_LEN as u64,
            got: got as u64,
        });
    }
    let len = parse_header(&h)?;
    // Grows with what arrives (never more than the checked `len`), so a header that
    // announces the cap and sends nothing costs nothing.
    let mut body = Vec::new();
    r.take(len).read_to_end(&mut body).map_err(WireError::Io)?;
    decode_payload(len, &body)
}

/// Reads a whole stream (device frames, then the end of the sweep) from `r` into a
/// [`Report`](crate::Report); for clients that need no drive before the last.
pub fn read_report<R: Read>(r: &mut R) -> Result<crate::Report, WireError> {
    let mut devices = Vec::new();
    loop {
        match read_frame::<crate::Event, R>(r)? {
            crate::Event::Device(d) => devices.push(d),
            crate::Event::Done(summary) => {
                check_count(&summary, devices.len())?;
                return Ok(crate::Report::new(summary, devices));
            }
        }
    }
}

/// The end of a sweep must count the device frames that came before it.
pub fn check_count(summary: &crate::Summary, received: usize) -> Result<(), WireError> {
    if u64::from(summary.devices) == received as u64 {
        Ok(())
    } else {
        Err(WireError::Count {
            announced: summary.devices,
            received,
        })
    }
}

/// Fills `buf` unless the stream ends first; returns how many bytes were read.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> Result<usize, WireError> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(WireError::Io(e)),
        }
    }
    Ok(n)
}
