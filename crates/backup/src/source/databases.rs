//! Which databases a `mysql`/`pgsql` source dumps, and how: the original's one object (one
//! name, or several in one string, dumped together), or one object per database
//! (`dbname: all`, or a YAML list), each its own stream, so one database that fails to dump
//! loses only its own object.
//!
//! With `all` the server is asked at run time, through its own client with the source's
//! credentials (the same in-memory file as the dump, never argv), for the names as hex, so
//! any name (spaces, quotes, newlines) comes back intact.

use std::process::Command;
use std::time::Duration;

use custos_process::{Spawn, Stdin};
use serde::{Deserialize, Deserializer};

use super::process::{describe, process_error, ChildStream, Credentials, Verdict, PRODUCERS};
use super::{Retry, SourceError, SourceStream};

/// What `dbname` says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum DbName {
    /// Not given (mysql: `--all-databases` in one object, as the original).
    #[default]
    Absent,
    /// One string, as the original reads it: one object.
    One(String),
    /// `all`: every database the server lists, one object each.
    All,
    /// A list: these databases, one object each.
    Each(Vec<String>),
}

impl DbName {
    /// Whether each database gets its own object.
    pub fn per_database(&self) -> bool {
        matches!(self, DbName::All | DbName::Each(_))
    }
}

/// Deserializes `dbname`: a string (`all` or names), or a list of names (empty entries
/// dropped).
pub fn dbname<'de, D: Deserializer<'de>>(d: D) -> Result<DbName, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        One(String),
        Each(Vec<String>),
    }
    Ok(match Option::<Raw>::deserialize(d)? {
        None => DbName::Absent,
        Some(Raw::One(s)) if s.trim().is_empty() => DbName::Absent,
        Some(Raw::One(s)) if s.trim() == "all" => DbName::All,
        Some(Raw::One(s)) => DbName::One(s),
        Some(Raw::Each(list)) => DbName::Each(list.into_iter().filter(|n| !n.is_empty()).collect()),
    })
}

/// Starts a dump program (`cmd`, with its credentials as stdin) whose stdout is the stream;
/// any exit status but 0 fails it.
pub fn spawn_dump(
    source_id: &str,
    program: &str,
    cmd: Command,
    credentials: Option<Credentials>,
) -> Result<Box<dyn SourceStream>, SourceError> {
    tracing::debug!(source = %source_id, command = %describe(&cmd), "dumping");
    Ok(Box::new(ChildStream::spawn(
        program,
        cmd,
        Verdict::zero_only,
        credentials,
    )?))
}

/// The longest a listing of databases may run.
const LIST_TIMEOUT: Duration = Duration::from_secs(120);

/// The most output a listing may print (hex names, one a line).
const LIST_MAX: usize = 4 << 20;

/// Runs a client that prints one hex-encoded database name per line; returns the names, in
/// the order printed. `program` names it in messages.
pub fn list(
    program: &str,
    cmd: Command,
    credentials: Option<Credentials>,
) -> Result<Vec<String>, SourceError> {
    let stdin = credentials.map_or(Stdin::Null, Stdin::Secret);
    let spawn = Spawn::new(program, cmd).stdin(stdin).registry(&PRODUCERS);
    let out = custos_process::run(spawn, LIST_TIMEOUT, LIST_MAX)
        .and_then(|o| o.exit.clone().require_success().map(|_| o))
        .map_err(|e| process_error(e, Retry::Transient))?;
    parse_hex_lines(&out.stdout).ok_or_else(|| {
        SourceError::Failed(format!(
            "{program}: the list of databases is not one hex name a line"
        ))
    })
}

/// Decodes lines of hex-encoded UTF-8 names; blank lines are skipped.
fn parse_hex_lines(out: &[u8]) -> Option<Vec<String>> {
    let text = std::str::from_utf8(out).ok()?;
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| hex::decode(l).ok().and_then(|b| String::from_utf8(b).ok()))
        .collect()
}

/// The databases of a per-database source: the list as given, or (for `all`) `listed()`
/// without `skip`. An empty result is an error: a run that stores nothing must not pass.
pub fn select(
    name: &DbName,
    skip: &[&str],
    listed: impl FnOnce() -> Result<Vec<String>, SourceError>,
) -> Result<Option<Vec<String>>, SourceError> {
    let names = match name {
        DbName::Absent | DbName::One(_) => return Ok(None),
        DbName::Each(list) => list.clone(),
        DbName::All => listed()?
            .into_iter()
            .filter(|n| !skip.contains(&n.as_str()))
            .collect(),
    };
    if names.is_empty() {
        return Err(SourceError::Unavailable {
            retry: Retry::Permanent,
            message: "dbname: all: the server lists no database to dump".into(),
        });
    }
    Ok(Some(names))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> DbName {
        #[derive(Deserialize)]
        struct C {
            #[serde(default, deserialize_with = "dbname")]
            dbname: DbName,
        }
        serde_json::from_str::<C>(json).unwrap().dbname
    }

    #[test]
    fn a_string_is_the_originals_one_object_a_list_or_all_one_object_each() {
        assert_eq!(parse("{}"), DbName::Absent);
        assert_eq!(parse(r#"{"dbname": null}"#), DbName::Absent);
        assert_eq!(parse(r#"{"dbname": "a b"}"#), DbName::One("a b".into()));
        assert_eq!(parse(r#"{"dbname": "all"}"#), DbName::All);
        assert_eq!(
            parse(r#"{"dbname": ["a", "", "b c"]}"#),
            DbName::Each(vec!["a".into(), "b c".into()])
        );
        assert!(parse(r#"{"dbname": "all"}"#).per_database());
        assert!(!parse(r#"{"dbname": "shop"}"#).per_database());
    }

    #[test]
    fn hex_lines_decode_any_name() {
        assert_eq!(
            parse_hex_lines(b"73686f70\n\n6120620a63\n"),
            Some(vec!["shop".into(), "a b\nc".into()])
        );
        assert_eq!(parse_hex_lines(b"zz\n"), None);
        assert_eq!(parse_hex_lines(b"ff\n"), None);
    }

    #[test]
    fn all_skips_system_databases_and_refuses_an_empty_result() {
        let listed = || Ok(vec!["sys".into(), "shop".into(), "mysql".into()]);
        assert_eq!(
            select(&DbName::All, &["sys"], listed).unwrap(),
            Some(vec!["shop".into(), "mysql".into()])
        );
        let e = select(&DbName::All, &["sys"], || Ok(vec!["sys".into()])).unwrap_err();
        assert!(e.to_string().contains("no database"), "{e}");
        assert_eq!(
            select(&DbName::One("x".into()), &[], || unreachable!()).unwrap(),
            None
        );
    }
}
