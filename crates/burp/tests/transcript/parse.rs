// Reads the capture format of tests/data/transcript*.txt: lines `>> b'...'` (client to server)
// and `<< b'...'` (server to client) holding one frame each as a Python bytes literal; every
// other line is a comment. Shared by the frame unit tests and the fake-peer tests through
// `include!` (so no inner attributes or `//!` here).

/// One captured frame.
#[derive(Debug, Clone)]
pub struct Line {
    /// `>>`: sent by the client.
    pub from_client: bool,
    /// The frame's bytes, header included.
    pub bytes: Vec<u8>,
    /// The capture shortened the payload (`...(2289 bytes)...`): header and payload disagree.
    pub abbreviated: bool,
}

/// Parses a transcript; panics on a malformed literal (test data).
pub fn parse(text: &str) -> Vec<Line> {
    let mut lines = Vec::new();
    for raw in text.lines() {
        let (from_client, rest) = if let Some(rest) = raw.strip_prefix(">> ") {
            (true, rest)
        } else if let Some(rest) = raw.strip_prefix("<< ") {
            (false, rest)
        } else {
            continue;
        };
        let bytes = bytes_literal(rest).unwrap_or_else(|| panic!("bad literal: {raw}"));
        let declared = std::str::from_utf8(&bytes[1..5])
            .ok()
            .and_then(|h| usize::from_str_radix(h, 16).ok());
        let abbreviated = declared != Some(bytes.len() - 5);
        lines.push(Line {
            from_client,
            bytes,
            abbreviated,
        });
    }
    lines
}

/// Decodes `b'...'` or `b"..."` with Python's escapes.
#[allow(dead_code)]
pub fn bytes_literal(lit: &str) -> Option<Vec<u8>> {
    let lit = lit.trim_end();
    let body = lit.strip_prefix('b')?;
    let quote = body.chars().next()?;
    if quote != '\'' && quote != '"' {
        return None;
    }
    let body = body.strip_prefix(quote)?.strip_suffix(quote)?;
    let mut out = Vec::new();
    let mut bytes = body.bytes();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match bytes.next()? {
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'\\' => out.push(b'\\'),
            b'\'' => out.push(b'\''),
            b'"' => out.push(b'"'),
            b'x' => {
                let hi = bytes.next()?;
                let lo = bytes.next()?;
                let hex = [hi, lo];
                out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
            }
            _ => return None,
        }
    }
    Some(out)
}
