//! How the original's loosely typed values are read (`1`, `"1"` and `true` for yes, numbers
//! as strings, names as one space-separated string or a list), and the trailing commas the
//! original's files have.

use serde::de::{self, Deserializer};
use serde::Deserialize;
use serde_json::Value;
use std::fmt;

use super::{Invalid, Secret};

/// Credential files are line-based: a newline in a password cannot be written to them.
pub fn no_newline(key: &str, p: &Secret) -> Result<(), Invalid> {
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

pub fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `compress_only`: the original tests `== 1`, so `1`, `1.0` and `true` mean yes.
pub fn equals_one<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
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
pub fn truthy<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
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
pub fn count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
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

/// A number, or text that reads as one (the originals' `float()`/`int()`); absent or null is
/// `None`. The visitor says what its field holds (`a port 1-65535`, `a number of seconds`) in
/// every error, and errors point at the value, not at the enclosing mapping. A visitor rather
/// than a detour through `serde_json::Value`, which would turn YAML's `.inf` into null.
struct LenientNumber(&'static str);

impl<'de> de::Visitor<'de> for LenientNumber {
    type Value = Option<f64>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Option<f64>, E> {
        Ok(Some(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Option<f64>, E> {
        Ok(Some(v as f64))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Option<f64>, E> {
        Ok(Some(v as f64))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<f64>, E> {
        v.trim()
            .parse()
            .map(Some)
            .map_err(|_| E::custom(format!("expected {}, got {v:?}", self.0)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Option<f64>, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Option<f64>, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<f64>, D::Error> {
        d.deserialize_any(self)
    }
}

const SECONDS: &str = "a number of seconds";
const PORT: &str = "a port 1-65535";

/// A required number of seconds, fractions allowed; range checks are the caller's `validate()`
/// (non-finite values pass through so that they are reported with the key).
pub fn seconds<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    d.deserialize_any(LenientNumber(SECONDS))?
        .ok_or_else(|| de::Error::custom(format!("expected {SECONDS}, got nothing")))
}

/// An optional number of seconds (see [`seconds`]).
pub fn opt_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    d.deserialize_any(LenientNumber(SECONDS))
}

/// A TCP port as a number or a numeric string.
pub fn port<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    let Some(n) = d.deserialize_any(LenientNumber(PORT))? else {
        return Ok(None);
    };
    if n.fract() == 0.0 && (1.0..=65535.0).contains(&n) {
        Ok(Some(n as u16))
    } else {
        Err(de::Error::custom(format!("expected {PORT}, got {n}")))
    }
}

/// Names written as one string (split at whitespace, as the original's `split()`) or a list.
pub fn names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    words(d)
}

/// Options written as one string split at whitespace (the original's `split()`) or a list
/// (which lets an option contain a space).
pub fn words<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
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

/// A value of any shape, read from any format as JSON, for handler entries that are typed only
/// once their `type` is known ([`super::Entry`]). A non-finite number (YAML's `.inf`, `.nan`)
/// is kept as its text, so that a lenient number deserializer still reads it and the handler's
/// range check reports it with its key; `serde_json::Value`'s own conversion makes it null,
/// which would read as "not set".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AnyValue(pub Value);

impl<'de> Deserialize<'de> for AnyValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<AnyValue, D::Error> {
        d.deserialize_any(AnyVisitor).map(AnyValue)
    }
}

struct AnyVisitor;

impl<'de> de::Visitor<'de> for AnyVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(v.to_string())))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(AnyValue(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some((k, AnyValue(v))) = map.next_entry::<String, AnyValue>()? {
            out.insert(k, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Numbers {
        #[serde(default, deserialize_with = "port")]
        port: Option<u16>,
        #[serde(default, deserialize_with = "opt_seconds")]
        timeout: Option<f64>,
    }

    #[test]
    fn lenient_numbers_say_what_their_field_holds() {
        let n: Numbers = serde_json::from_str(r#"{"port": "12201", "timeout": "2.5"}"#).unwrap();
        assert_eq!((n.port, n.timeout), (Some(12201), Some(2.5)));
        let n: Numbers = serde_json::from_str(r#"{"port": null}"#).unwrap();
        assert_eq!((n.port, n.timeout), (None, None));
        for (text, want) in [
            (
                r#"{"port": "twelve"}"#,
                "expected a port 1-65535, got \"twelve\"",
            ),
            (r#"{"port": 70000}"#, "expected a port 1-65535, got 70000"),
            (r#"{"port": 0}"#, "expected a port 1-65535, got 0"),
            (
                r#"{"timeout": "often"}"#,
                "expected a number of seconds, got \"often\"",
            ),
        ] {
            let e = serde_json::from_str::<Numbers>(text)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    /// `.inf` read through a JSON value stays a number a lenient field reads, not null.
    #[test]
    fn any_value_keeps_non_finite_numbers() {
        let v: AnyValue = yaml_serde::from_str("timeout: .inf\nlist: [1, .nan]\n").unwrap();
        assert_eq!(v.0["timeout"], Value::String("inf".into()));
        assert_eq!(v.0["list"][1], Value::String("NaN".into()));
        let n: Numbers = serde_json::from_value(v.0).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(n.timeout, Some(f64::INFINITY));
    }
}
