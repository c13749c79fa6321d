//! `hooks`: commands run around the whole job (root key) and around each source (a key of
//! the source), as borgmatic and resticprofile users expect:
//!
//! ```json
//! "hooks": {
//!   "before":   [{"command": ["systemctl", "stop", "app"], "timeout": 60}],
//!   "after":    [{"command": ["systemctl", "start", "app"]}],
//!   "on_error": [{"shell": "echo \"$CUSTOS_ERROR\" | mail -s backup root"}]
//! }
//! ```
//!
//! An entry is `command` (a list: the program and its arguments, run without a shell, so
//! nothing in it is interpreted) or `shell` (a script for `/bin/sh -c`), and an optional
//! `timeout` in seconds. Everything is checked here, where the file is read, so every error
//! names the file, the key path and the value; the engine (`engine/hooks.rs`) runs them and
//! applies the default timeout.

use std::path::Path;

use custos_kit::config::values::{count, null_as_default};
use custos_kit::config::ConfigError;
use serde::Deserialize;
use serde_json::Value;

/// The longest `timeout` a hook may have, in seconds (a day): every hook has a deadline.
pub const MAX_TIMEOUT: u32 = 86_400;

/// The hooks of the job or of one source, as written (each list in file order).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hooks {
    /// Run before the job's sources (root) or before the source's backup; the first that
    /// fails stops the rest, and the source (root: every source) is not run.
    pub before: Vec<Hook>,
    /// Run after the job or the source, whatever happened.
    pub after: Vec<Hook>,
    /// Run when the job (any source) or the source failed, before `after`.
    pub on_error: Vec<Hook>,
}

impl Hooks {
    /// No hook at all.
    pub fn is_empty(&self) -> bool {
        self.before.is_empty() && self.after.is_empty() && self.on_error.is_empty()
    }

    /// Every hook, `before` first, then `on_error` and `after` (the order they run in).
    pub fn all(&self) -> impl Iterator<Item = &Hook> {
        self.before.iter().chain(&self.on_error).chain(&self.after)
    }
}

/// One hook entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    /// Its key path (`sources[1].hooks.before[0]`): how logs and failures name it.
    pub at: String,
    pub run: HookCommand,
    /// `timeout` in seconds, 1 to [`MAX_TIMEOUT`]; absent: the engine's default.
    pub timeout: Option<u32>,
}

/// What a hook runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookCommand {
    /// `command`: the program (looked up on PATH unless it holds a `/`) and its arguments,
    /// passed as they are, never through a shell. Never empty.
    Argv(Vec<String>),
    /// `shell`: a script run by `/bin/sh -c`.
    Shell(String),
}

impl HookCommand {
    /// The program as logs name it: the argv's first word, or `sh`.
    pub fn program(&self) -> &str {
        match self {
            HookCommand::Argv(argv) => argv.first().map_or("", String::as_str),
            HookCommand::Shell(_) => "sh",
        }
    }
}

/// `hooks` as deserialized, before its checks.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHooks {
    #[serde(default, deserialize_with = "null_as_default")]
    before: Vec<RawHook>,
    #[serde(default, deserialize_with = "null_as_default")]
    after: Vec<RawHook>,
    #[serde(default, deserialize_with = "null_as_default")]
    on_error: Vec<RawHook>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHook {
    /// Kept as JSON so that a string (a command line) gets a message saying what to write.
    #[serde(default)]
    command: Option<Value>,
    #[serde(default)]
    shell: Option<Value>,
    #[serde(default, deserialize_with = "count")]
    timeout: Option<u32>,
}

/// Checks `raw` (found at key path `at`, `hooks` or `sources[2].hooks`) and returns the
/// hooks; an error names `file`, the entry's key and the value.
pub(super) fn resolve(file: &Path, at: &str, raw: RawHooks) -> Result<Hooks, ConfigError> {
    let list = |phase: &str, entries: Vec<RawHook>| {
        entries
            .into_iter()
            .enumerate()
            .map(|(i, h)| hook(file, &format!("{at}.{phase}[{i}]"), h))
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(Hooks {
        before: list("before", raw.before)?,
        after: list("after", raw.after)?,
        on_error: list("on_error", raw.on_error)?,
    })
}

fn hook(file: &Path, at: &str, raw: RawHook) -> Result<Hook, ConfigError> {
    let invalid = |key: &str, value: &dyn std::fmt::Display, reason: &str| {
        ConfigError::invalid(file, format!("{at}.{key}"), value, reason)
    };
    let run = match (raw.command, raw.shell) {
        (None, None) | (Some(Value::Null), None) | (None, Some(Value::Null)) => {
            return Err(ConfigError::invalid(
                file,
                at,
                "{}",
                "set \"command\" (a list: the program and its arguments) or \"shell\" \
                 (a script for /bin/sh -c)",
            ))
        }
        (Some(_), Some(shell)) => {
            return Err(invalid(
                "shell",
                &shown(&shell),
                "set \"command\" or \"shell\", not both",
            ))
        }
        (Some(command), None) => HookCommand::Argv(argv(file, at, command)?),
        (None, Some(Value::String(script))) => {
            if script.trim().is_empty() {
                return Err(invalid("shell", &script, "the script must not be empty"));
            }
            if script.contains('\0') {
                return Err(invalid(
                    "shell",
                    &script,
                    "must not contain a NUL character",
                ));
            }
            HookCommand::Shell(script)
        }
        (None, Some(other)) => {
            return Err(invalid(
                "shell",
                &shown(&other),
                "expected a string: a script for /bin/sh -c (for a program and its \
                 arguments use \"command\")",
            ))
        }
    };
    if let Some(t) = raw.timeout {
        if !(1..=MAX_TIMEOUT).contains(&t) {
            return Err(invalid(
                "timeout",
                &t,
                &format!("expected seconds, 1 to {MAX_TIMEOUT} (a hook always has a deadline)"),
            ));
        }
    }
    Ok(Hook {
        at: at.to_owned(),
        run,
        timeout: raw.timeout,
    })
}

/// `command`: a non-empty list of strings whose first is a program name.
fn argv(file: &Path, at: &str, value: Value) -> Result<Vec<String>, ConfigError> {
    let key = format!("{at}.command");
    let words = match value {
        Value::Array(words) => words,
        Value::String(line) => {
            return Err(ConfigError::invalid(
                file,
                key,
                line,
                "expected a list: the program and each argument, e.g. [\"systemctl\", \
                 \"stop\", \"app\"] (nothing is split or interpreted; for a shell command \
                 line use \"shell\")",
            ))
        }
        other => {
            return Err(ConfigError::invalid(
                file,
                key,
                shown(&other),
                "expected a list: the program and its arguments",
            ))
        }
    };
    if words.is_empty() {
        return Err(ConfigError::invalid(
            file,
            key,
            "[]",
            "needs at least the program",
        ));
    }
    let mut out = Vec::with_capacity(words.len());
    for (i, w) in words.into_iter().enumerate() {
        let at = format!("{key}[{i}]");
        let Value::String(w) = w else {
            return Err(ConfigError::invalid(
                file,
                at,
                shown(&w),
                "expected a string (write numbers in quotes)",
            ));
        };
        if w.contains('\0') {
            return Err(ConfigError::invalid(
                file,
                at,
                &w,
                "must not contain a NUL character",
            ));
        }
        if i == 0 && w.trim().is_empty() {
            return Err(ConfigError::invalid(
                file,
                at,
                &w,
                "the program must not be empty",
            ));
        }
        out.push(w);
    }
    Ok(out)
}

/// A value as an error shows it: a string as it is (the error quotes it), else as JSON.
fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<Hooks, String> {
        let raw: RawHooks = serde_json::from_value(v).map_err(|e| e.to_string())?;
        resolve(Path::new("job.json"), "sources[1].hooks", raw).map_err(|e| e.to_string())
    }

    #[test]
    fn argv_shell_and_timeout_are_read_with_their_key_path() {
        let h = parse(json!({
            "before": [{"command": ["systemctl", "stop", "app"], "timeout": 60}],
            "after": [{"shell": "echo $(id) | gzip > x"}, {"command": ["true"], "timeout": "5"}],
            "on_error": null
        }))
        .expect("valid");
        assert_eq!(
            h.before,
            vec![Hook {
                at: "sources[1].hooks.before[0]".into(),
                run: HookCommand::Argv(vec!["systemctl".into(), "stop".into(), "app".into()]),
                timeout: Some(60),
            }]
        );
        assert_eq!(
            h.after[0].run,
            HookCommand::Shell("echo $(id) | gzip > x".into())
        );
        assert_eq!(h.after[0].timeout, None);
        assert_eq!(h.after[1].at, "sources[1].hooks.after[1]");
        assert_eq!(h.after[1].timeout, Some(5));
        assert!(h.on_error.is_empty());
        assert_eq!(h.after[0].run.program(), "sh");
        let order: Vec<&str> = h.all().map(|h| h.at.as_str()).collect();
        assert_eq!(
            order,
            [
                "sources[1].hooks.before[0]",
                "sources[1].hooks.after[0]",
                "sources[1].hooks.after[1]"
            ]
        );
        assert!(parse(json!({})).expect("empty").is_empty());
    }

    #[test]
    fn every_bad_entry_names_file_key_and_value() {
        let cases = [
            (
                json!({"before": [{}]}),
                "job.json: sources[1].hooks.before[0]: invalid value \"{}\": set \"command\"",
            ),
            (
                json!({"after": [{"command": ["a"], "shell": "b"}]}),
                "sources[1].hooks.after[0].shell: invalid value \"b\": set \"command\" or \"shell\", not both",
            ),
            (
                json!({"after": [{"command": "systemctl stop app"}]}),
                "sources[1].hooks.after[0].command: invalid value \"systemctl stop app\": expected a list",
            ),
            (
                json!({"after": [{"command": []}]}),
                "sources[1].hooks.after[0].command: invalid value \"[]\": needs at least the program",
            ),
            (
                json!({"after": [{"command": ["", "x"]}]}),
                "sources[1].hooks.after[0].command[0]: invalid value \"\": the program must not be empty",
            ),
            (
                json!({"after": [{"command": ["kill", 9]}]}),
                "sources[1].hooks.after[0].command[1]: invalid value \"9\": expected a string",
            ),
            (
                json!({"after": [{"command": ["a\u{0}b"]}]}),
                "sources[1].hooks.after[0].command[0]: invalid value \"a\\0b\": must not contain a NUL",
            ),
            (
                json!({"on_error": [{"shell": "  "}]}),
                "sources[1].hooks.on_error[0].shell: invalid value \"  \": the script must not be empty",
            ),
            (
                json!({"on_error": [{"shell": ["a"]}]}),
                "sources[1].hooks.on_error[0].shell: invalid value \"[\\\"a\\\"]\": expected a string",
            ),
            (
                json!({"before": [{"command": ["a"], "timeout": 0}]}),
                "sources[1].hooks.before[0].timeout: invalid value \"0\": expected seconds, 1 to 86400",
            ),
            (
                json!({"before": [{"command": ["a"], "timeout": 86401}]}),
                "sources[1].hooks.before[0].timeout: invalid value \"86401\"",
            ),
        ];
        for (v, want) in cases {
            let e = parse(v.clone()).expect_err(&v.to_string());
            assert!(e.contains(want), "{v}: got {e}\nwant {want}");
        }
        // Types serde checks: the message names what was expected.
        let e = parse(json!({"before": {"command": ["a"]}})).expect_err("a map");
        assert!(e.contains("expected a sequence"), "{e}");
        let e = parse(json!({"before": [{"command": ["a"], "timeout": -1}]})).expect_err("neg");
        assert!(e.contains("expected a whole number >= 0"), "{e}");
        let e = parse(json!({"befor": []})).expect_err("unknown phase");
        assert!(e.contains("befor"), "{e}");
    }
}
