//! A required key that is missing: serde says only "missing field `burp_host`", which hides the
//! cause a user has to fix. The cause is usually a typo (`burp_hots`, dropped as an unknown key
//! at the same place) or a key indented into the wrong mapping; name it, and say that a
//! parser's position is that of the mapping, not of the key.

use std::path::Path;

use super::unknown::{join, similar, without_position, Failure, Segment, UnknownKey};
use super::{ConfigError, KeyPrefix};

/// Where a failure's message came from, for what its ` at line L column C` points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    /// yaml_serde: the start of the mapping being read.
    Yaml,
    /// serde_json: the end of the object being read.
    Json,
    /// An in-memory value: no positions.
    Value,
}

/// What the loader knows about the document beyond the failure itself.
pub(super) struct Context<'a> {
    /// The file's text, for the line of a key (only when the document is the whole file).
    pub text: Option<&'a str>,
    /// The document as read from the file, before unknown keys were dropped.
    pub doc: Option<&'a serde_json::Value>,
}

/// The error for a "missing field" failure, naming its likely cause; `None` for other failures.
pub(super) fn explain(
    failure: &Failure,
    file: &Path,
    at: &str,
    rewritten: bool,
    context: &Context<'_>,
    unknown: &[UnknownKey],
) -> Option<ConfigError> {
    let wanted = missing_field(&failure.message)?;
    if let Some(typo) = unknown
        .iter()
        .find(|k| child_name(&failure.path, &k.key).is_some_and(|n| similar(n, wanted)))
    {
        let name = child_name(&failure.path, &typo.key).unwrap_or_default();
        return Some(ConfigError::misspelt(
            file,
            join(at, &typo.key),
            name,
            wanted,
            key_line(context.text, name),
        ));
    }
    let mut message = if rewritten {
        without_position(&failure.message)
    } else {
        name_the_position(&failure.message, failure.format)
    };
    if let Some(elsewhere) = context
        .doc
        .and_then(|doc| misplaced(doc, &failure.segments, wanted))
    {
        let line = key_line(context.text, wanted)
            .map(|l| format!(" (line {l})"))
            .unwrap_or_default();
        message.push_str(&format!(
            "; a `{wanted}` key is at `{}`{line}: check its indentation",
            join(at, &elsewhere),
        ));
    }
    Some(ConfigError::Parse {
        file: file.to_owned(),
        key: KeyPrefix(join(at, &failure.path)),
        message,
    })
}

/// The field of serde's "missing field `x`" message.
pub(super) fn missing_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split_once('`').map(|(name, _)| name)
}

/// The key name of `key` when it is a direct child of `parent` (both key paths).
fn child_name<'a>(parent: &str, key: &'a str) -> Option<&'a str> {
    let rest = key.strip_prefix(parent)?;
    let rest = if parent.is_empty() {
        rest
    } else {
        rest.strip_prefix('.')?
    };
    (!rest.is_empty() && !rest.contains(['.', '['])).then_some(rest)
}

/// A parser's position is that of the mapping the key is missing from: say so.
fn name_the_position(message: &str, format: Format) -> String {
    let short = without_position(message);
    if short.len() == message.len() {
        return short;
    }
    let position = message[short.len()..].trim_start();
    let position = position.strip_prefix("at ").unwrap_or(position);
    match format {
        Format::Yaml => format!("{short} (required in the mapping that starts at {position})"),
        Format::Json => format!("{short} (required in the object that ends at {position})"),
        Format::Value => short,
    }
}

/// The line (1-based) of `text` that holds `name` as a key, when exactly one does.
pub(super) fn key_line(text: Option<&str>, name: &str) -> Option<usize> {
    let mut lines = text?
        .lines()
        .enumerate()
        .filter(|(_, l)| is_key_line(l, name));
    match (lines.next(), lines.next()) {
        (Some((i, _)), None) => Some(i + 1),
        _ => None,
    }
}

/// Whether `line` holds `name` as a YAML or JSON key (`name:`, `- name:`, `"name":`).
fn is_key_line(line: &str, name: &str) -> bool {
    let t = line.trim_start();
    let t = t.strip_prefix("- ").map_or(t, str::trim_start);
    let t = t.strip_prefix(['"', '\'']).unwrap_or(t);
    let Some(rest) = t.strip_prefix(name) else {
        return false;
    };
    let rest = rest.strip_prefix(['"', '\'']).unwrap_or(rest);
    rest.trim_start().starts_with(':')
}

/// The path of a key named `name` that sits where no entry like the one at `missing_at` is (so
/// not the same key of a sibling list entry): a key indented into the wrong mapping.
fn misplaced(doc: &serde_json::Value, missing_at: &[Segment], name: &str) -> Option<String> {
    fn walk(
        v: &serde_json::Value,
        path: &mut Vec<Segment>,
        missing_at: &[Segment],
        name: &str,
        depth: usize,
    ) -> Option<Vec<Segment>> {
        // Config documents are shallow; the bound keeps a hostile one from exhausting the stack.
        if depth > 64 {
            return None;
        }
        match v {
            serde_json::Value::Object(m) => {
                for (k, child) in m {
                    if k == name && !same_place(path, missing_at) {
                        let mut found = path.clone();
                        found.push(Segment::Key(k.clone()));
                        return Some(found);
                    }
                    path.push(Segment::Key(k.clone()));
                    let found = walk(child, path, missing_at, name, depth + 1);
                    path.pop();
                    if found.is_some() {
                        return found;
                    }
                }
                None
            }
            serde_json::Value::Array(a) => {
                for (i, child) in a.iter().enumerate() {
                    path.push(Segment::Index(i));
                    let found = walk(child, path, missing_at, name, depth + 1);
                    path.pop();
                    if found.is_some() {
                        return found;
                    }
                }
                None
            }
            _ => None,
        }
    }
    let found = walk(doc, &mut Vec::new(), missing_at, name, 0)?;
    let mut out = String::new();
    for s in found {
        match s {
            Segment::Index(i) => out.push_str(&format!("[{i}]")),
            Segment::Key(k) if out.is_empty() => out.push_str(&k),
            Segment::Key(k) => {
                out.push('.');
                out.push_str(&k);
            }
        }
    }
    Some(out)
}

/// Whether two paths name the same place up to list indexes (`clients[1]` ~ `clients[0]`).
fn same_place(a: &[Segment], b: &[Segment]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|pair| match pair {
            (Segment::Index(_), Segment::Index(_)) => true,
            (x, y) => x == y,
        })
}

#[cfg(test)]
mod tests {
    use super::super::unknown::{parse_json_lenient, parse_yaml_lenient};
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Client {
        name: String,
        burp_host: String,
        #[serde(default)]
        burp_port: u16,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Root {
        #[serde(default)]
        clients: Vec<Client>,
    }

    fn yaml_error(text: &str) -> String {
        parse_yaml_lenient::<Root>(Path::new("c.yaml"), text)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_typo_of_a_required_key_is_named_with_the_key_it_stands_for() {
        let msg = yaml_error("clients:\n  - name: a\n    burp_hots: h\n");
        assert_eq!(
            msg,
            "c.yaml: clients[0].burp_hots: unknown key `burp_hots` (line 3), did you mean \
             `burp_host`? (`burp_host` is required)"
        );
        let err = parse_json_lenient::<Root>(
            Path::new("c.json"),
            r#"{"clients":[{"name":"a","burp_hots":"h"}]}"#,
        )
        .unwrap_err();
        assert_eq!(err.key(), Some("clients[0].burp_hots"));
        assert!(
            err.to_string().contains("did you mean `burp_host`?"),
            "{err}"
        );
    }

    #[test]
    fn a_key_in_the_wrong_mapping_is_pointed_at() {
        // Valid YAML: the key landed at the root.
        let msg = yaml_error("clients:\n  - name: a\nburp_host: h\n");
        assert!(
            msg.starts_with("c.yaml: clients[0]: missing field `burp_host`"),
            "{msg}"
        );
        assert!(
            msg.contains("a `burp_host` key is at `burp_host` (line 3): check its indentation"),
            "{msg}"
        );
        // The same key of a sibling entry is not "misplaced".
        let msg = yaml_error("clients:\n  - name: a\n    burp_host: h\n  - name: b\n");
        assert!(!msg.contains("indentation"), "{msg}");
    }

    #[test]
    fn a_broken_indent_is_reported_as_the_syntax_error_it_is() {
        // The parser reads clients[0] to its end (missing burp_host) before it reaches line 3.
        let msg = yaml_error("clients:\n  - name: a\n  burp_host: h\n");
        assert!(!msg.contains("missing field"), "{msg}");
        assert!(msg.contains("line 3"), "{msg}");
    }

    #[test]
    fn the_position_of_a_missing_key_is_said_to_be_the_mappings() {
        let msg = yaml_error("clients:\n  - name: a\n");
        assert_eq!(
            msg,
            "c.yaml: clients[0]: missing field `burp_host` (required in the mapping that \
             starts at line 2 column 5)"
        );
        let err = parse_json_lenient::<Root>(Path::new("c.json"), r#"{"clients":[{"name":"a"}]}"#)
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("(required in the object that ends at line 1 column 24)"),
            "{err}"
        );
    }

    #[test]
    fn a_far_off_unknown_key_is_not_taken_for_the_missing_one() {
        let msg = yaml_error("clients:\n  - name: a\n    colour: red\n");
        assert!(
            msg.contains("clients[0]: missing field `burp_host`"),
            "{msg}"
        );
        assert!(!msg.contains("colour"), "{msg}");
    }

    #[test]
    fn key_lines_are_found_in_yaml_and_json_forms() {
        assert!(is_key_line("  - burp_hots: x", "burp_hots"));
        assert!(is_key_line("    \"burp_hots\" : 1,", "burp_hots"));
        assert!(!is_key_line("    burp_hotsy: 1", "burp_hots"));
        assert_eq!(key_line(Some("a: 1\nb: 2\na: 3\n"), "a"), None);
        assert_eq!(key_line(Some("a: 1\nb: 2\n"), "b"), Some(2));
    }
}
