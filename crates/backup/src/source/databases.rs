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

use crate::cancel::Cancel;
use crate::naming::Payload;
use serde::{Deserialize, Deserializer};

use super::process::{describe, process_error, ChildStream, Credentials, Verdict};
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
    /// The original's form: the names in one object (`--databases N...`), none for all.
    pub fn one_object(names: &[String]) -> DbName {
        if names.is_empty() {
            DbName::Absent
        } else {
            DbName::One(names.join(" "))
        }
    }

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
        Some(Raw::Each(list)) => {
            let names: Vec<String> = list.into_iter().filter(|n| !n.is_empty()).collect();
            // An empty list names nothing: as absent (mysql: `--all-databases`, as before).
            if names.is_empty() {
                DbName::Absent
            } else {
                DbName::Each(names)
            }
        }
    })
}

/// Starts a dump program (`cmd`, with its credentials as stdin) whose stdout is the stream;
/// any exit status but 0 fails it.
pub fn spawn_dump(
    source_id: &str,
    program: &str,
    cmd: Command,
    credentials: Option<Credentials>,
    cancel: Cancel,
) -> Result<Box<dyn SourceStream>, SourceError> {
    tracing::debug!(source = %source_id, command = %describe(&cmd), "dumping");
    Ok(Box::new(ChildStream::spawn(
        program,
        cmd,
        Verdict::zero_only,
        credentials,
        cancel,
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
    cancel: Cancel,
) -> Result<Vec<String>, SourceError> {
    let out = run_client(program, cmd, credentials, cancel)?;
    parse_hex_lines(&out).ok_or_else(|| SourceError::Unavailable {
        retry: Retry::Permanent,
        message: format!("{program}: the list of databases is not one hex name a line"),
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

/// Where a client started by [`Loader::spawn`] finds the source's credentials: its fd 3, the
/// secret file handed to it (stdin is the payload).
pub const LOADER_CREDENTIALS_PATH: &str = "/dev/fd/3";

/// The server of a database source, for `backup restore --database`: what is there, and
/// loading a dump into it, with the source's own credentials.
pub trait Server {
    /// `None` when `database` does not exist; else whether it holds any table, view or
    /// sequence.
    fn holds_data(&self, database: &str, cancel: Cancel) -> Result<Option<bool>, SourceError>;
    /// Creates an empty `database`.
    fn create(&self, database: &str, cancel: Cancel) -> Result<(), SourceError>;
    /// Starts the client that loads a `payload` (`sql` or `dump`) into `database`; `replace`
    /// lets it replace the objects the dump holds.
    fn load(
        &self,
        database: &str,
        payload: Payload,
        replace: bool,
        cancel: Cancel,
    ) -> Result<Loader, SourceError>;
    /// The database whose dump is the source's one object (no database in its name), when
    /// that dump loads into any database: `pgsql` with one `dbname` (pg_dump writes no
    /// `CREATE DATABASE`; a mysqldump of `--databases` does, so mysql has none).
    fn single_database(&self) -> Option<&str> {
        None
    }
}

/// A client loading a dump: write the payload into it, then [`Loader::finish`].
///
/// Its stdin must carry the payload while the credentials stay a secret file handed over as
/// stdin (the only descriptor custos-process passes on, so no other child inherits it). So
/// the client starts through `sh`, which moves the secret to fd 3
/// ([`LOADER_CREDENTIALS_PATH`]) and the payload pipe, handed over as the child's stdout, to
/// stdin; its output goes to /dev/null and its stderr to the tail. Nothing secret is in any
/// argv or the environment.
pub struct Loader {
    child: custos_process::Child,
    input: Option<std::fs::File>,
}

impl Loader {
    /// Starts `cmd` (its program and arguments; it reads the payload on stdin and the
    /// credentials as [`LOADER_CREDENTIALS_PATH`]).
    pub fn spawn(
        program: &str,
        cmd: &Command,
        credentials: Option<Credentials>,
        cancel: Cancel,
    ) -> Result<Loader, SourceError> {
        let io = |source| SourceError::Io {
            context: format!("making the payload pipe of {program}"),
            source,
        };
        let (read, write) =
            rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| io(e.into()))?;
        let mut sh = Command::new("sh");
        sh.arg("-c")
            .arg(r#"exec "$@" 3<&0 0<&1 1>/dev/null"#)
            .arg("custos-load")
            .arg(cmd.get_program())
            .args(cmd.get_args());
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => sh.env(k, v),
                None => sh.env_remove(k),
            };
        }
        let stdin = credentials.map_or(Stdin::Null, Stdin::Secret);
        let child = Spawn::new(program, sh)
            .stdin(stdin)
            .stdout(std::process::Stdio::from(read))
            .registry(cancel.producers())
            .spawn()
            .map_err(|e| process_error(e, Retry::Permanent))?;
        Ok(Loader {
            child,
            input: Some(std::fs::File::from(write)),
        })
    }

    /// Closes the payload and waits for the client: any exit status but 0 fails, with its
    /// stderr's tail.
    pub fn finish(mut self) -> Result<(), SourceError> {
        self.input = None;
        self.child
            .wait()
            .and_then(custos_process::Exit::require_success)
            .map(drop)
            .map_err(|e| process_error(e, Retry::Permanent))
    }
}

impl std::io::Write for Loader {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.input.as_mut() {
            Some(f) => f.write(buf),
            None => Err(std::io::ErrorKind::BrokenPipe.into()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs a client to its end (creating a database, asking what is there); returns its
/// stdout.
pub fn query(
    program: &str,
    cmd: Command,
    credentials: Option<Credentials>,
    cancel: Cancel,
) -> Result<String, SourceError> {
    let out = run_client(program, cmd, credentials, cancel)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Runs a client to its end within [`LIST_TIMEOUT`], its credentials as stdin; its stdout,
/// or its failure with stderr's tail.
fn run_client(
    program: &str,
    cmd: Command,
    credentials: Option<Credentials>,
    cancel: Cancel,
) -> Result<Vec<u8>, SourceError> {
    let stdin = credentials.map_or(Stdin::Null, Stdin::Secret);
    let spawn = Spawn::new(program, cmd)
        .stdin(stdin)
        .registry(cancel.producers());
    let out = custos_process::run(spawn, LIST_TIMEOUT, LIST_MAX)
        .and_then(|o| o.exit.clone().require_success().map(|_| o))
        .map_err(|e| process_error(e, Retry::Transient))?;
    Ok(out.stdout)
}

/// `(exists, tables)` as `a<TAB>b` or `a|b` (a client's batch output) into
/// [`Server::holds_data`]'s answer.
pub fn parse_holds_data(program: &str, out: &str) -> Result<Option<bool>, SourceError> {
    let mut words = out.split(|c: char| c == '\t' || c == '|' || c.is_whitespace());
    let mut next = || {
        words
            .by_ref()
            .find(|w| !w.is_empty())
            .and_then(|w| w.parse::<u64>().ok())
    };
    match (next(), next()) {
        (Some(0), _) => Ok(None),
        (Some(_), Some(n)) => Ok(Some(n > 0)),
        _ => Err(SourceError::Unavailable {
            retry: Retry::Permanent,
            message: format!(
                "{program}: unexpected answer about the database: {:?}",
                custos_process::one_line(out)
            ),
        }),
    }
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
        assert_eq!(parse(r#"{"dbname": [""]}"#), DbName::Absent);
        assert!(parse(r#"{"dbname": "all"}"#).per_database());
        assert!(!parse(r#"{"dbname": "shop"}"#).per_database());
    }

    /// A stand-in client that records what it got: the credentials as the path it is told
    /// (fd 3), the payload on stdin, its arguments and environment. The payload arrives whole,
    /// the secret only through the file, and a failing client fails `finish` with its stderr.
    #[test]
    fn loader_gets_payload_on_stdin_and_the_secret_only_as_fd_3() {
        use std::io::Write;
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("fake-client");
        let out = dir.path();
        std::fs::write(
            &fake,
            format!(
                "#!/bin/sh\nstat -L -c %a \"$1\" > {o}/mode\ncat \"$1\" > {o}/secret\ncat > {o}/payload\n\
                 echo \"$*\" > {o}/args\nenv > {o}/env\necho 'ERROR 1: told to fail' >&2\nexit \"$2\"\n",
                o = out.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        for status in ["0", "3"] {
            let mut cmd = Command::new(&fake);
            cmd.arg(LOADER_CREDENTIALS_PATH).arg(status);
            let secret = Credentials::new("custos-test", "password=s3cr#t\n").unwrap();
            let mut loader =
                Loader::spawn("fake-client", &cmd, Some(secret), Cancel::new()).unwrap();
            loader.write_all(&payload).unwrap();
            let result = loader.finish();
            let read = |f: &str| std::fs::read(out.join(f)).unwrap();
            assert_eq!(read("payload"), payload);
            assert_eq!(read("secret"), b"password=s3cr#t\n");
            assert_eq!(read("mode"), b"600\n");
            for f in ["args", "env"] {
                assert!(!String::from_utf8_lossy(&read(f)).contains("s3cr"), "{f}");
            }
            match status {
                "0" => result.unwrap(),
                _ => {
                    let e = result.unwrap_err().to_string();
                    assert!(e.contains("status 3") && e.contains("told to fail"), "{e}");
                }
            }
        }
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
        assert_eq!(parse_holds_data("m", "0\t0\n").unwrap(), None);
        assert_eq!(parse_holds_data("m", "1\t0\n").unwrap(), Some(false));
        assert_eq!(parse_holds_data("p", "1|3\n").unwrap(), Some(true));
        assert!(parse_holds_data("p", "ERROR").is_err());
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
