//! How the original's loosely typed values are read (`1`, `"1"` and `true` for yes, numbers
//! as strings, names as one space-separated string or a list), and the trailing commas the
//! original's files have.

use serde::de::{self, Deserializer};
use serde::Deserialize;
use serde_json::Value;
use std::fmt;

use super::{Invalid, Secret};

/// Credential files are line-based: a newline in a password cannot be written to them.
pub(crate) fn no_newline(key: &str, p: &Secret) -> Result<(), Invalid> {
    if p.expose().contains(['\n', '\r']) {
        return Err(Invalid::new(
            key,
            "<secret>",
            "must not contain a line break",
        ));
    }
    Ok(())
}

/// Replaces commas that directly precede `}` or `]` (outside strings) with spaces, so that
/// line and column numbers in later errors still match the file. Returns the 1-based lines.
pub fn strip_trailing_commas(text: &str) -> (String, Vec<usize>) {
    let bytes = text.as_bytes();
    let mut out = bytes.to_vec();
    let mut lines = Vec::new();
    let mut in_string = false;
    let mut escaped = false;
    let mut line = 1;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' {
            line += 1;
        }
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b',' => {
                let next = bytes[i + 1..]
                    .iter()
                    .find(|c| !matches!(c, b' ' | b'\t' | b'\r' | b'\n'));
                if matches!(next, Some(b'}') | Some(b']')) {
                    out[i] = b' ';
                    // `[1,],}` on one line has two; name the line once.
                    if lines.last() != Some(&line) {
                        lines.push(line);
                    }
                }
            }
            _ => {}
        }
    }
    // Only ASCII commas were replaced by ASCII spaces, so the text is still UTF-8.
    let out = String::from_utf8(out).unwrap_or_else(|_| text.to_owned());
    (out, lines)
}

pub(crate) fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `compress_only`: the original tests `== 1`, so `1`, `1.0` and `true` mean yes.
pub(crate) fn equals_one<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(b),
        Some(Value::Number(n)) => Ok(n.as_f64() == Some(1.0)),
        Some(other) => Err(de::Error::custom(format!(
            "expected 1, 0, true or false, got {other}"
        ))),
    }
}

/// `noevents`: the original tests truthiness; numbers other than 0 mean yes.
pub(crate) fn truthy<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(b),
        Some(Value::Number(n)) => Ok(n.as_f64() != Some(0.0)),
        Some(other) => Err(de::Error::custom(format!(
            "expected 1, 0, true or false, got {other}"
        ))),
    }
}

/// A non-negative count written as a number or a numeric string (the original calls `int()`).
pub(crate) fn count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| de::Error::custom(format!("expected a whole number >= 0, got {n}"))),
        Some(Value::String(s)) => s
            .trim()
            .parse::<u32>()
            .map(Some)
            .map_err(|_| de::Error::custom(format!("expected a whole number >= 0, got {s:?}"))),
        Some(other) => Err(de::Error::custom(format!(
            "expected a whole number >= 0, got {other}"
        ))),
    }
}

/// A TCP port as a number or a numeric string.
pub(crate) fn port<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    let bad = |v: &dyn fmt::Display| de::Error::custom(format!("expected a port 1-65535, got {v}"));
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p != 0)
            .map(Some)
            .ok_or_else(|| bad(&n)),
        Some(Value::String(s)) => s
            .trim()
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .map(Some)
            .ok_or_else(|| bad(&format!("{s:?}"))),
        Some(other) => Err(bad(&other)),
    }
}

/// Names written as one string (split at whitespace, as the original's `split()`) or a list.
pub(crate) fn names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    words(d)
}

/// Options written as one string split at whitespace (the original's `split()`) or a list
/// (which lets an option contain a space).
pub(crate) fn words<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let bad = || de::Error::custom("expected a string or a list of strings");
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(s.split_whitespace().map(str::to_owned).collect()),
        Some(Value::Array(items)) => items
            .into_iter()
            .filter(|v| v != "")
            .map(|v| match v {
                Value::String(s) => Ok(s),
                _ => Err(bad()),
            })
            .collect(),
        Some(_) => Err(bad()),
    }
}
