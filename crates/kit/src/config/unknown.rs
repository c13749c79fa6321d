//! Keys nothing reads: warnings naming file, key path and nearest known key, or errors when
//! strict (see the parent module's docs for the rule and why).

use serde::de::DeserializeOwned;
use std::fmt;
use std::path::Path;

use super::missing::{self, Context, Format};
use super::{ConfigError, KeyPrefix};

/// Whether a key nothing reads stops the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strictness {
    /// A warning naming file, key path and nearest known key; the program runs (as the
    /// originals, which ignore such keys).
    #[default]
    Warn,
    /// An error ([`ConfigError::UnknownKey`]): for `--strict` and for checking files in CI.
    Strict,
}

impl Strictness {
    /// `Strict` when `strict` is set (a binary's `--strict` flag), else `Warn`.
    pub fn from_flag(strict: bool) -> Self {
        if strict {
            Strictness::Strict
        } else {
            Strictness::Warn
        }
    }
}

/// A key in a config file that nothing reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownKey {
    /// Key path such as `sources[0].path`.
    pub key: String,
    /// The known key at the same place whose name is closest (by edit distance), when the
    /// struct there lists its fields (`deny_unknown_fields`).
    pub nearest: Option<String>,
}

impl fmt::Display for UnknownKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: unknown key{}",
            self.key,
            nearest_hint(&self.nearest)
        )
    }
}

pub(super) fn nearest_hint(nearest: &Option<String>) -> String {
    match nearest {
        Some(n) => format!(" (nearest known key: `{n}`)"),
        None => String::new(),
    }
}

/// Logs each unknown key as a warning (`Warn`), or fails on the first one (`Strict`).
pub fn check_unknown(
    file: &Path,
    unknown: &[UnknownKey],
    strictness: Strictness,
) -> Result<(), ConfigError> {
    match (strictness, unknown.first()) {
        (Strictness::Strict, Some(k)) => Err(ConfigError::UnknownKey {
            file: file.to_owned(),
            key: k.key.clone(),
            nearest: k.nearest.clone(),
        }),
        _ => {
            for k in unknown {
                tracing::warn!(
                    "{}: {k}; ignored, as the original does (an error with --strict)",
                    file.display()
                );
            }
            Ok(())
        }
    }
}

/// [`parse_json`] that tolerates unknown keys according to `strictness`.
pub fn parse_json_with<T: DeserializeOwned>(
    file: &Path,
    text: &str,
    strictness: Strictness,
) -> Result<T, ConfigError> {
    let (value, unknown) = parse_json_lenient(file, text)?;
    check_unknown(file, &unknown, strictness)?;
    Ok(value)
}

/// Parses YAML into `T`, returning the keys nothing read instead of failing on them.
pub fn parse_yaml_lenient<T: DeserializeOwned>(
    file: &Path,
    text: &str,
) -> Result<(T, Vec<UnknownKey>), ConfigError> {
    let attempt = |text: &str| {
        let mut ignored = Vec::new();
        let de = yaml_serde::Deserializer::from_str(text);
        let mut note = |p: serde_ignored::Path| ignored.push(ignored_key(&p));
        let r = serde_path_to_error::deserialize(serde_ignored::Deserializer::new(de, &mut note));
        r.map(|v| (v, ignored))
            .map_err(|e| Failure::new(e, Format::Yaml))
    };
    let failure = match attempt(text) {
        Ok(done) => return Ok(done),
        Err(f) => f,
    };
    // Parsed as a whole first: a document broken further down (a bad indent) can fail as
    // "missing field" before the parser reaches the broken line, and the syntax error is the
    // cause to report.
    let mut doc: yaml_serde::Value =
        yaml_serde::from_str(text).map_err(|e| ConfigError::Parse {
            file: file.to_owned(),
            key: KeyPrefix(String::new()),
            message: e.to_string(),
        })?;
    let original = serde_json::to_value(&doc).ok();
    let context = Context {
        text: Some(text),
        doc: original.as_ref(),
    };
    if failure.unknown_field().is_none() {
        return Err(failure.into_error(file, "", false, &context, &[]));
    }
    // Drop the unknown keys from the document one at a time and parse it again. The document
    // is written back as YAML (not deserialized from the value) so that scalars are read as
    // from the file (an unquoted `1234` is still a valid string).
    tolerate(file, "", failure, &context, |segments| {
        if !remove_yaml(&mut doc, segments) {
            return None;
        }
        Some(yaml_serde::to_string(&doc).map_or_else(
            |e| Err(Failure::plain(e.to_string())),
            |text| attempt(&text),
        ))
    })
}

/// Parses JSON into `T`, returning the keys nothing read instead of failing on them.
pub fn parse_json_lenient<T: DeserializeOwned>(
    file: &Path,
    text: &str,
) -> Result<(T, Vec<UnknownKey>), ConfigError> {
    let mut ignored = Vec::new();
    let mut note = |p: serde_ignored::Path| ignored.push(ignored_key(&p));
    let mut de = serde_json::Deserializer::from_str(text);
    let first =
        serde_path_to_error::deserialize(serde_ignored::Deserializer::new(&mut de, &mut note));
    match first {
        Ok(v) => {
            de.end().map_err(|e| ConfigError::Parse {
                file: file.to_owned(),
                key: KeyPrefix(String::new()),
                message: e.to_string(),
            })?;
            Ok((v, ignored))
        }
        Err(e) => {
            let f = Failure::new(e, Format::Json);
            // A syntax error further down is the cause of any earlier "missing field".
            let value: serde_json::Value =
                serde_json::from_str(text).map_err(|e| ConfigError::Parse {
                    file: file.to_owned(),
                    key: KeyPrefix(String::new()),
                    message: e.to_string(),
                })?;
            if f.unknown_field().is_none() {
                let context = Context {
                    text: Some(text),
                    doc: Some(&value),
                };
                return Err(f.into_error(file, "", false, &context, &[]));
            }
            from_json_value_in(file, "", value, Some(text))
        }
    }
}

/// Deserializes part of a JSON document found at key path `at` (empty for the root) into `T`,
/// returning the keys nothing read (their paths prefixed with `at`). For callers that split a
/// document before deserializing its parts.
pub(super) fn from_json_value<T: DeserializeOwned>(
    file: &Path,
    at: &str,
    value: serde_json::Value,
) -> Result<(T, Vec<UnknownKey>), ConfigError> {
    from_json_value_in(file, at, value, None)
}

/// [`from_json_value`] for a value parsed from `text` (for line numbers in errors).
fn from_json_value_in<T: DeserializeOwned>(
    file: &Path,
    at: &str,
    mut value: serde_json::Value,
    text: Option<&str>,
) -> Result<(T, Vec<UnknownKey>), ConfigError> {
    let attempt = |value: &serde_json::Value| {
        let mut ignored = Vec::new();
        let mut note = |p: serde_ignored::Path| ignored.push(ignored_key(&p));
        let r =
            serde_path_to_error::deserialize(serde_ignored::Deserializer::new(value, &mut note));
        r.map(|v| (v, ignored))
            .map_err(|e| Failure::new(e, Format::Value))
    };
    let failure = match attempt(&value) {
        Ok((v, ignored)) => return Ok((v, prefixed(at, ignored))),
        Err(f) => f,
    };
    let original = value.clone();
    let context = Context {
        text,
        doc: Some(&original),
    };
    if failure.unknown_field().is_none() {
        return Err(failure.into_error(file, at, false, &context, &[]));
    }
    tolerate(file, at, failure, &context, |segments| {
        remove_json(&mut value, segments).then(|| attempt(&value))
    })
}

/// Prefixes `at` to each key path.
fn prefixed(at: &str, keys: Vec<UnknownKey>) -> Vec<UnknownKey> {
    keys.into_iter()
        .map(|k| UnknownKey {
            key: join(at, &k.key),
            nearest: k.nearest,
        })
        .collect()
}

pub(super) fn join(at: &str, inner: &str) -> String {
    match (at.is_empty(), inner.is_empty() || inner == ".") {
        (_, true) => at.to_owned(),
        (true, false) => inner.to_owned(),
        (false, false) if inner.starts_with('[') => format!("{at}{inner}"),
        (false, false) => format!("{at}.{inner}"),
    }
}

/// Most unknown keys one document may have before the loader gives up on it.
const MAX_UNKNOWN: usize = 1000;

/// The loop shared by the formats: record the unknown field of `failure`, let `retry` remove
/// it from the document and deserialize again, until it deserializes or fails otherwise.
/// `retry` returns `None` when it cannot remove the key (then the error stands).
#[allow(clippy::type_complexity)]
fn tolerate<T>(
    file: &Path,
    at: &str,
    mut failure: Failure,
    context: &Context<'_>,
    mut retry: impl FnMut(&[Segment]) -> Option<Result<(T, Vec<UnknownKey>), Failure>>,
) -> Result<(T, Vec<UnknownKey>), ConfigError> {
    let mut unknown = Vec::new();
    loop {
        let Some(known) = failure.unknown_field() else {
            return Err(failure.into_error(file, at, true, context, &unknown));
        };
        if unknown.len() >= MAX_UNKNOWN {
            return Err(failure.into_error(file, at, true, context, &unknown));
        }
        let key = UnknownKey {
            key: failure.path.clone(),
            nearest: nearest(failure.segments.last(), &known),
        };
        match retry(&failure.segments) {
            None => return Err(failure.into_error(file, at, true, context, &unknown)),
            Some(Ok((value, ignored))) => {
                unknown.push(key);
                unknown.extend(ignored);
                return Ok((value, prefixed(at, unknown)));
            }
            Some(Err(next)) => {
                unknown.push(key);
                failure = next;
            }
        }
    }
}

/// The known key closest to the unknown one by edit distance.
fn nearest(unknown: Option<&Segment>, known: &[String]) -> Option<String> {
    let Some(Segment::Key(name)) = unknown else {
        return None;
    };
    nearest_known(name, known.iter().map(String::as_str)).map(str::to_owned)
}

/// Of `known`, the name closest to `name` (ignoring case; the first of equals), when it is
/// [`similar`]: a hint that is far off (`path` for `name`) sends the user the wrong way.
/// For callers that know more sibling keys than one struct lists.
pub fn nearest_known<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let name = name.to_lowercase();
    let mut best: Option<(&str, f64)> = None;
    for k in known {
        let score = strsim::normalized_damerau_levenshtein(&name, &k.to_lowercase());
        if score >= SIMILAR && best.is_none_or(|(_, b)| score > b) {
            best = Some((k, score));
        }
    }
    best.map(|(k, _)| k)
}

/// How alike two key names must be (normalized Damerau-Levenshtein, 1.0 = equal) for one to
/// be taken for a typo of the other: `dbusr`/`dbuser` 0.83, `hots`/`host` and `nmae`/`name`
/// 0.75 are; `path`/`name` and `path`/`port` 0.5 are not.
const SIMILAR: f64 = 0.6;

/// Whether `a` looks like a typo of `b` (see [`SIMILAR`]).
pub(super) fn similar(a: &str, b: &str) -> bool {
    strsim::normalized_damerau_levenshtein(&a.to_lowercase(), &b.to_lowercase()) >= SIMILAR
}

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Segment {
    Index(usize),
    Key(String),
}

/// A failed deserialization, with the path as text and as steps.
#[derive(Debug)]
pub(super) struct Failure {
    pub(super) path: String,
    pub(super) segments: Vec<Segment>,
    pub(super) message: String,
    /// Where the message's position (if any) points.
    pub(super) format: Format,
}

impl Failure {
    fn new<E: fmt::Display>(e: serde_path_to_error::Error<E>, format: Format) -> Self {
        use serde_path_to_error::Segment as S;
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let segments = e
            .path()
            .iter()
            .filter_map(|s| match s {
                S::Seq { index } => Some(Segment::Index(*index)),
                S::Map { key } => Some(Segment::Key(key.clone())),
                S::Enum { variant } => Some(Segment::Key(variant.clone())),
                S::Unknown => None,
            })
            .collect();
        let message = e.into_inner().to_string();
        // The YAML parser already prefixes some messages with a path (the failing key's or
        // its parent's); say it once.
        let message = match message.split_once(": ") {
            Some((p, rest)) if !p.is_empty() && path.starts_with(p) => rest.to_owned(),
            _ => message,
        };
        let mut failure = Failure {
            path,
            segments,
            message,
            format,
        };
        // Inside an internally tagged enum or a flattened struct serde reports the unknown
        // field at its parent's path: name the key itself.
        if let Some(name) = failure.unknown_name() {
            if failure.segments.last() != Some(&Segment::Key(name.clone())) {
                failure.path = join(&failure.path, &name);
                failure.segments.push(Segment::Key(name));
            }
        }
        failure
    }

    /// The key serde's "unknown field" error is about.
    fn unknown_name(&self) -> Option<String> {
        let rest = self.message.strip_prefix("unknown field `")?;
        rest.split_once('`').map(|(name, _)| name.to_owned())
    }

    fn plain(message: String) -> Self {
        Failure {
            path: String::new(),
            segments: Vec::new(),
            message,
            format: Format::Value,
        }
    }

    /// The known field names when this is serde's "unknown field" error
    /// (`` unknown field `x`, expected one of `a`, `b` ``).
    fn unknown_field(&self) -> Option<Vec<String>> {
        let rest = self.message.strip_prefix("unknown field `")?;
        let (_, expected) = rest.split_once('`')?;
        let known = expected
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect();
        Some(known)
    }

    /// The error to report. `rewritten`: the document was written again after dropping keys,
    /// so positions in the message would point into that copy and are left out. `unknown`:
    /// the keys dropped so far (a typo of a required key is one of them).
    fn into_error(
        self,
        file: &Path,
        at: &str,
        rewritten: bool,
        context: &Context<'_>,
        unknown: &[UnknownKey],
    ) -> ConfigError {
        if let Some(error) = missing::explain(&self, file, at, rewritten, context, unknown) {
            return error;
        }
        let mut message = if rewritten {
            without_position(&self.message)
        } else {
            self.message.clone()
        };
        // The position of the rewritten copy was dropped: the key's line in the file instead.
        if message.len() != self.message.len() {
            if let Some(Segment::Key(k)) = self.segments.last() {
                if let Some(line) = missing::key_line(context.text, k) {
                    message.push_str(&format!(" (line {line})"));
                }
            }
        }
        ConfigError::Parse {
            file: file.to_owned(),
            key: KeyPrefix(join(at, &self.path)),
            message: plain_types(&message),
        }
    }
}

/// serde names Rust types (`invalid type: string "abc", expected u16`); the reader of a config
/// error needs what to write instead.
pub(super) fn plain_types(message: &str) -> String {
    const TYPES: &[(&str, &str)] = &[
        ("u8", "a whole number 0-255"),
        ("u16", "a whole number 0-65535"),
        ("u32", "a whole number 0-4294967295"),
        ("u64", "a whole number, 0 or more"),
        ("usize", "a whole number, 0 or more"),
        ("i8", "a whole number -128-127"),
        ("i16", "a whole number -32768-32767"),
        ("i32", "a whole number"),
        ("i64", "a whole number"),
        ("f32", "a number"),
        ("f64", "a number"),
    ];
    for (rust, words) in TYPES {
        let pattern = format!("expected {rust}");
        let Some(i) = message.find(&pattern) else {
            continue;
        };
        let rest = &message[i + pattern.len()..];
        if rest.is_empty() || rest.starts_with([' ', ',']) {
            return format!("{}expected {words}{rest}", &message[..i]);
        }
    }
    message.to_owned()
}

/// A parser message without its trailing ` at line L column C`.
pub(super) fn without_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i)
            if message[i + 9..]
                .split(" column ")
                .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) =>
        {
            message[..i].to_owned()
        }
        _ => message.to_owned(),
    }
}

/// The path of a key `serde_ignored` saw skipped, as `a.b[0].c`.
fn ignored_key(path: &serde_ignored::Path) -> UnknownKey {
    fn walk(path: &serde_ignored::Path, out: &mut String) {
        use serde_ignored::Path as P;
        match path {
            P::Root => {}
            P::Seq { parent, index } => {
                walk(parent, out);
                out.push_str(&format!("[{index}]"));
            }
            P::Map { parent, key } => {
                walk(parent, out);
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
                walk(parent, out)
            }
        }
    }
    let mut key = String::new();
    walk(path, &mut key);
    UnknownKey { key, nearest: None }
}

/// Removes the key at `segments` from a JSON document; false when there is none.
fn remove_json(doc: &mut serde_json::Value, segments: &[Segment]) -> bool {
    use serde_json::Value;
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let mut at = doc;
    for s in parents {
        let next = match (s, at) {
            (Segment::Index(i), Value::Array(a)) => a.get_mut(*i),
            (Segment::Key(k), Value::Object(m)) => m.get_mut(k),
            _ => None,
        };
        match next {
            Some(v) => at = v,
            None => return false,
        }
    }
    match (last, at) {
        (Segment::Key(k), Value::Object(m)) => m.remove(k).is_some(),
        _ => false,
    }
}

/// Removes the key at `segments` from a YAML document; false when there is none.
fn remove_yaml(doc: &mut yaml_serde::Value, segments: &[Segment]) -> bool {
    use yaml_serde::Value;
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let mut at = doc;
    for s in parents {
        // A tagged value (`!variant`) stands for the variant step of an enum.
        if let Value::Tagged(t) = at {
            if matches!(s, Segment::Key(k) if t.tag == k.as_str()) {
                at = &mut t.value;
                continue;
            }
            at = &mut t.value;
        }
        let next = match (s, at) {
            (Segment::Index(i), Value::Sequence(a)) => a.get_mut(*i),
            (Segment::Key(k), Value::Mapping(m)) => m.get_mut(k.as_str()),
            _ => None,
        };
        match next {
            Some(v) => at = v,
            None => return false,
        }
    }
    if let Value::Tagged(t) = at {
        at = &mut t.value;
    }
    match (last, at) {
        (Segment::Key(k), Value::Mapping(m)) => m.remove(k.as_str()).is_some(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`parse_yaml_lenient`] with the unknown keys decided by `strictness`, as `load` does.
    fn parse_yaml_with<T: DeserializeOwned>(
        file: &Path,
        text: &str,
        strictness: Strictness,
    ) -> Result<T, ConfigError> {
        let (value, unknown) = parse_yaml_lenient(file, text)?;
        check_unknown(file, &unknown, strictness)?;
        Ok(value)
    }
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Mysql {
        dbname: String,
        dbuser: Option<String>,
        #[serde(default)]
        port: u16,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Job {
        sources: Vec<Mysql>,
        #[serde(default)]
        loose: Loose,
    }

    /// A struct without `deny_unknown_fields`: its skipped keys are still reported.
    #[derive(Debug, Default, Deserialize, PartialEq)]
    struct Loose {
        #[serde(default)]
        level: u8,
    }

    #[test]
    fn yaml_unknown_keys_are_warnings_with_nearest_known_key() {
        let text = "sources:\n  - dbname: a\n    dbusr: root\n    path: /x\n    port: 1\n  - dbname: '7'\nloose:\n  level: 2\n  colour: red\n";
        let (job, unknown) = parse_yaml_lenient::<Job>(Path::new("f.yaml"), text).unwrap();
        assert_eq!(job.sources.len(), 2);
        assert_eq!(job.sources[0].port, 1);
        assert_eq!(job.loose.level, 2);
        let keys: Vec<String> = unknown.iter().map(ToString::to_string).collect();
        assert_eq!(
            keys,
            [
                "sources[0].dbusr: unknown key (nearest known key: `dbuser`)",
                "sources[0].path: unknown key",
                "loose.colour: unknown key",
            ]
        );
    }

    #[test]
    fn yaml_after_dropping_keys_scalars_read_as_from_the_file() {
        // An unquoted number is a valid string in the file; it must stay one after the
        // document was rewritten without the unknown key.
        let text = "sources:\n  - dbname: 1234\n    typo: 1\n";
        let (job, unknown) = parse_yaml_lenient::<Job>(Path::new("f.yaml"), text).unwrap();
        assert_eq!(job.sources[0].dbname, "1234");
        assert_eq!(unknown.len(), 1);
    }

    #[test]
    fn strict_makes_an_unknown_key_an_error() {
        let text = "sources:\n  - dbname: a\n    dbusr: root\n";
        let err =
            parse_yaml_with::<Job>(Path::new("/etc/j.yaml"), text, Strictness::Strict).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/j.yaml: sources[0].dbusr: unknown key (nearest known key: `dbuser`)"
        );
        assert_eq!(err.key(), Some("sources[0].dbusr"));
        let job = parse_yaml_with::<Job>(Path::new("/etc/j.yaml"), text, Strictness::Warn);
        assert_eq!(job.unwrap().sources[0].dbname, "a");
    }

    #[test]
    fn other_errors_still_fail_after_unknown_keys_were_dropped() {
        let text = "sources:\n  - dbname: a\n    extra: 1\n    port: 99999\n";
        let err = parse_yaml_lenient::<Job>(Path::new("f.yaml"), text).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("f.yaml: sources[0].port: "), "{msg}");
        assert!(
            !msg.contains(" at line "),
            "positions of the rewritten copy: {msg}"
        );
        let err = parse_yaml_lenient::<Job>(Path::new("f.yaml"), "sources: [{}]\n").unwrap_err();
        assert!(err.to_string().contains("missing field `dbname`"), "{err}");
    }

    #[test]
    fn json_unknown_keys_are_warnings_and_value_parts_are_prefixed() {
        let text = r#"{"sources":[{"dbname":"a","dbnam":"b"}],"extra":{"x":1}}"#;
        let (job, unknown) = parse_json_lenient::<Job>(Path::new("j.json"), text).unwrap();
        assert_eq!(job.sources[0].dbname, "a");
        let mut keys: Vec<&str> = unknown.iter().map(|k| k.key.as_str()).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["extra", "sources[0].dbnam"]);
        let dbnam = unknown
            .iter()
            .find(|k| k.key == "sources[0].dbnam")
            .unwrap();
        assert_eq!(dbnam.nearest.as_deref(), Some("dbname"));

        let part = serde_json::json!({"dbname": "a", "path": "/x"});
        let (m, unknown) =
            from_json_value::<Mysql>(Path::new("j.json"), "sources[3]", part).unwrap();
        assert_eq!(m.dbname, "a");
        assert_eq!(unknown[0].key, "sources[3].path");
        let err =
            from_json_value::<Mysql>(Path::new("j.json"), "sources[3]", serde_json::json!({}))
                .unwrap_err();
        assert_eq!(err.key(), Some("sources[3]"));
    }

    #[test]
    fn json_without_unknown_keys_keeps_its_positions() {
        let err = parse_json_lenient::<Job>(Path::new("j.json"), r#"{"sources":[{"dbname":1}]}"#)
            .unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
    }

    /// A sink chosen by its `type` key, as exporters' configs have them.
    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
    enum Sink {
        Gelf { host: String },
        Logfile { path: String },
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Monitor {
        sinks: Vec<Sink>,
    }

    #[test]
    fn unknown_keys_inside_internally_tagged_enums_are_named() {
        let text = "sinks:\n  - type: gelf\n    host: h\n    hots: x\n  - type: logfile\n    path: /l\n    filename: /f\n";
        let (m, unknown) = parse_yaml_lenient::<Monitor>(Path::new("m.yaml"), text).unwrap();
        assert_eq!(m.sinks[0], Sink::Gelf { host: "h".into() });
        let found: Vec<String> = unknown.iter().map(ToString::to_string).collect();
        assert_eq!(
            found,
            [
                "sinks[0].hots: unknown key (nearest known key: `host`)",
                "sinks[1].filename: unknown key",
            ]
        );
        let err =
            parse_yaml_with::<Monitor>(Path::new("m.yaml"), text, Strictness::Strict).unwrap_err();
        assert_eq!(err.key(), Some("sinks[0].hots"));
    }

    #[test]
    fn the_nearest_known_key_is_offered_only_when_close() {
        let mysql = ["id", "name", "type", "dbname", "dbuser", "dbhost", "dbport"];
        // The original README's complete example: `path` on a mysql source.
        assert_eq!(nearest_known("path", mysql), None);
        assert_eq!(nearest_known("dbusr", mysql), Some("dbuser"));
        assert_eq!(nearest_known("nmae", mysql), Some("name"));
        assert_eq!(nearest_known("DBHOST", mysql), Some("dbhost"));
        assert_eq!(nearest_known("x", []), None);
    }

    #[test]
    fn wrong_types_are_said_in_words_with_the_line_of_their_key() {
        // Before the unknown key: the parser's own position is kept.
        let err = parse_yaml_lenient::<Job>(
            Path::new("f.yaml"),
            "sources:\n  - dbname: a\n    port: abc\n",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "f.yaml: sources[0].port: invalid type: string \"abc\", expected a whole number \
             0-65535 at line 3 column 11"
        );
        // After an unknown key was dropped: the key's line in the file, not the copy's.
        let text = "sources:\n  - dbname: a\n    colour: red\n    port: 70000\n";
        let err = parse_yaml_lenient::<Job>(Path::new("f.yaml"), text).unwrap_err();
        assert_eq!(
            err.to_string(),
            "f.yaml: sources[0].port: invalid value: integer `70000`, expected a whole number \
             0-65535 (line 4)"
        );
        assert_eq!(plain_types("expected u160"), "expected u160");
        assert_eq!(plain_types("x, expected f64"), "x, expected a number");
    }

    #[test]
    fn check_unknown_warns_or_fails() {
        let keys = [UnknownKey {
            key: "a.b".into(),
            nearest: None,
        }];
        assert!(check_unknown(Path::new("f"), &keys, Strictness::Warn).is_ok());
        assert!(check_unknown(Path::new("f"), &[], Strictness::Strict).is_ok());
        let err = check_unknown(Path::new("f"), &keys, Strictness::Strict).unwrap_err();
        assert_eq!(err.to_string(), "f: a.b: unknown key");
        assert_eq!(Strictness::from_flag(true), Strictness::Strict);
    }
}
