//! `type: pgsql`: a `pg_dump` stream (plain SQL, as the original).
//!
//! The password goes to an in-memory 0600 pgpass file (a memfd, see [`Credentials`]) given to
//! pg_dump as its stdin; the child gets `PGPASSFILE=/dev/fd/0` (a path, not the secret) and
//! never an inherited `PGPASSWORD`, which would override the file. Nothing is on disk, so a
//! `kill -9` of the run leaves no secret behind. `--no-password` keeps pg_dump from ever waiting at a prompt under cron. With
//! `defaults` (documented by the original, ignored by its code), that pgpass file is used.
//!
//! custos: `format: custom` dumps with `pg_dump -Fc` (payload `dump`, restored with
//! `pg_restore`); `dbname: all` or a list dumps one object per database (see
//! [`super::databases`]). `all` asks the server (`psql`, connected to the `postgres`
//! database) for every database that accepts connections and is not a template: `postgres`
//! itself is kept, since it is where data lands when nobody chose a database (an empty one
//! costs a few hundred bytes). Roles and tablespaces (`pg_dumpall --globals-only`) are not
//! in any per-database dump.

use std::ffi::{OsStr, OsString};
use std::process::Command;

use super::databases::{self, DbName, Loader, Server, LOADER_CREDENTIALS_PATH};
use super::process::{credentials, run_check, Credentials, CREDENTIALS_PATH};
use super::{Source, SourceError, SourceStream};
use crate::cancel::Cancel;
use crate::naming::Payload;
use std::path::PathBuf;

use serde::Deserialize;

use custos_kit::config::values::no_newline;
use custos_kit::config::{Invalid, Secret, Validate};

/// `type: pgsql`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgsqlConfig {
    /// `dbhost` (absent: libpq's default, the local socket).
    #[serde(default)]
    pub dbhost: Option<String>,
    /// custos `dbport`.
    #[serde(default, deserialize_with = "custos_kit::config::values::port")]
    pub dbport: Option<u16>,
    /// `dbuser`.
    #[serde(default)]
    pub dbuser: Option<String>,
    /// `dbpass`.
    #[serde(default)]
    pub dbpass: Option<Secret>,
    /// `dbname`: one database (one object, as the original); `all` or a list: one object
    /// per database. Required, as in the original.
    #[serde(deserialize_with = "databases::dbname")]
    pub dbname: DbName,
    /// custos `format`: `plain` SQL (the original's) or `custom` (`pg_dump -Fc`).
    #[serde(default)]
    pub format: DumpFormat,
    /// `defaults`: an existing pgpass file used instead of the generated one.
    #[serde(default)]
    pub defaults: Option<PathBuf>,
    /// custos `options`: extra pg_dump options, one string split at spaces (or a list).
    #[serde(default, deserialize_with = "custos_kit::config::values::words")]
    pub options: Vec<String>,
}

/// pg_dump's output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DumpFormat {
    /// SQL text (`.sql`), loaded with `psql`.
    #[default]
    Plain,
    /// pg_dump's compressed archive (`.dump`), loaded with `pg_restore`: selective and
    /// parallel restores.
    Custom,
}

impl PgsqlConfig {
    /// The source this config describes.
    pub fn build(&self, id: &str, name: &str) -> Box<dyn Source> {
        Box::new(PgsqlSource::new(id, name, self))
    }
}

impl Validate for PgsqlConfig {
    fn validate(&self) -> Result<(), Invalid> {
        if self.dbname == DbName::Absent {
            return Err(Invalid::new("dbname", "", "must not be empty"));
        }
        if let Some(o) = self
            .options
            .iter()
            .find(|o| o.starts_with("--format") || o.starts_with("-F"))
        {
            return Err(Invalid::new(
                "options",
                o,
                "use the \"format\" key (plain or custom): restore reads it from the object name",
            ));
        }
        if let Some(p) = &self.dbpass {
            no_newline("dbpass", p)?;
        }
        Ok(())
    }
}

/// A PostgreSQL dump.
#[derive(Debug, Clone)]
pub struct PgsqlSource {
    id: String,
    name: String,
    config: PgsqlConfig,
    program: OsString,
}

impl PgsqlSource {
    /// Builds the source.
    pub fn new(id: &str, name: &str, config: &PgsqlConfig) -> Self {
        PgsqlSource {
            id: id.to_owned(),
            name: name.to_owned(),
            config: config.clone(),
            program: OsString::from("pg_dump"),
        }
    }

    /// Uses another pg_dump (tests; a versioned `/usr/lib/postgresql/N/bin/pg_dump`).
    #[cfg(test)]
    pub fn with_program(mut self, program: impl Into<OsString>) -> Self {
        self.program = program.into();
        self
    }

    /// The pgpass line: every field a wildcard but the password, since the file is used by
    /// this one pg_dump only (and wildcards need no host/port matching rules).
    pub fn pgpass(&self) -> Option<String> {
        self.config
            .dbpass
            .as_ref()
            .map(|p| format!("*:*:*:*:{}\n", pgpass_escape(p.expose())))
    }

    /// A client program (`psql`, `pg_restore`) by name, from `PATH`.
    fn tool(&self, name: &str) -> OsString {
        OsString::from(name)
    }

    /// The arguments: connection, `options`, database.
    pub fn args(&self) -> Vec<String> {
        let mut args = self.connection_args();
        if self.config.format == DumpFormat::Custom {
            args.push("--format=custom".to_owned());
        }
        args.extend(self.config.options.iter().cloned());
        match &self.config.dbname {
            DbName::One(name) => args.push(format!("--dbname={name}")),
            // The whole of a per-database source (what --dry-run checks): the maintenance
            // database proves the connection.
            _ => args.push(format!("--dbname={MAINTENANCE_DB}")),
        }
        args
    }

    /// `--no-password`, host, port and user.
    pub fn connection_args(&self) -> Vec<String> {
        let c = &self.config;
        let mut args = vec!["--no-password".to_owned()];
        if let Some(h) = c.dbhost.as_deref().filter(|h| !h.is_empty()) {
            args.push(format!("--host={h}"));
        }
        if let Some(p) = c.dbport {
            args.push(format!("--port={p}"));
        }
        if let Some(u) = c.dbuser.as_deref().filter(|u| !u.is_empty()) {
            args.push(format!("--username={u}"));
        }
        args
    }

    /// The arguments of one database's dump; the name goes in as a quoted connection
    /// string, so a name with `=` or a URI prefix is a name.
    pub fn database_args(&self, database: &str) -> Vec<String> {
        let mut args = self.connection_args();
        if self.config.format == DumpFormat::Custom {
            args.push("--format=custom".to_owned());
        }
        args.extend(self.config.options.iter().cloned());
        args.push(format!("--dbname={}", conninfo_dbname(database)));
        args
    }

    /// The dump command, and (with a password and no `defaults`) the in-memory pgpass file
    /// that must become its stdin.
    fn command(&self, extra: &[&str]) -> Result<(Command, Option<Credentials>), SourceError> {
        let (mut cmd, credentials) = self.connect(&self.program, CREDENTIALS_PATH)?;
        cmd.args(extra).args(self.args());
        Ok((cmd, credentials))
    }

    /// A client (`psql`, `pg_restore`) with the source's password, host, port and user.
    pub fn client(&self, name: &str) -> Result<(Command, Option<Credentials>), SourceError> {
        let (mut cmd, credentials) = self.connect(&self.tool(name), CREDENTIALS_PATH)?;
        cmd.args(self.connection_args());
        Ok((cmd, credentials))
    }

    /// `program` with the password plumbing (no arguments yet): the in-memory pgpass file,
    /// read by the child as `secret_path`.
    fn connect(
        &self,
        program: &OsStr,
        secret_path: &str,
    ) -> Result<(Command, Option<Credentials>), SourceError> {
        let mut credentials = None;
        let mut cmd = Command::new(program);
        cmd.env_remove("PGPASSWORD");
        if let Some(defaults) = &self.config.defaults {
            cmd.env("PGPASSFILE", defaults);
        } else if let Some(line) = self.pgpass() {
            credentials = Some(self::credentials("custos-pgpass", &line)?);
            cmd.env("PGPASSFILE", secret_path);
        }
        Ok((cmd, credentials))
    }
}

/// The database psql connects to for listing databases and creating one.
pub const MAINTENANCE_DB: &str = "postgres";

/// `dbname='...'`: a libpq connection string naming exactly `database`.
pub fn conninfo_dbname(database: &str) -> String {
    let mut s = String::from("dbname='");
    for c in database.chars() {
        if c == '\\' || c == '\'' {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('\'');
    s
}

/// Escapes `\` and `:` as the pgpass format requires.
pub fn pgpass_escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        if c == '\\' || c == ':' {
            s.push('\\');
        }
        s.push(c);
    }
    s
}

impl Source for PgsqlSource {
    fn id(&self) -> &str {
        &self.id
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "pgsql"
    }

    fn suffix(&self) -> &'static str {
        match self.config.format {
            DumpFormat::Plain => "sql",
            DumpFormat::Custom => "dump",
        }
    }

    /// Connects and dumps no schema at all: proves credentials and database access. (A
    /// `--table` that matches nothing is an error to pg_dump; an excluded schema is not.)
    /// A per-database source: lists (`all`) or names its databases, and checks each.
    fn check(&self, cancel: Cancel) -> Result<(), SourceError> {
        let nothing = ["--schema-only", "--exclude-schema=*"];
        let Some(names) = self.databases(cancel)? else {
            let (cmd, credentials) = self.command(&nothing)?;
            return run_check("pg_dump", cmd, credentials, cancel);
        };
        for db in names {
            let (mut cmd, credentials) = self.connect(&self.program, CREDENTIALS_PATH)?;
            cmd.args(nothing).args(self.database_args(&db));
            run_check("pg_dump", cmd, credentials, cancel)?;
        }
        Ok(())
    }

    fn open(&self, cancel: Cancel) -> Result<Box<dyn SourceStream>, SourceError> {
        let (cmd, credentials) = self.command(&[])?;
        databases::spawn_dump(&self.id, "pg_dump", cmd, credentials, cancel)
    }

    fn server(&self) -> Option<&dyn Server> {
        Some(self)
    }

    fn databases(&self, cancel: Cancel) -> Result<Option<Vec<String>>, SourceError> {
        databases::select(&self.config.dbname, &[], || {
            let (mut cmd, credentials) = self.client("psql")?;
            cmd.args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c"])
                .arg(
                    "SELECT encode(convert_to(datname, 'UTF8'), 'hex') FROM pg_database \
                     WHERE datallowconn AND NOT datistemplate ORDER BY datname",
                )
                .arg(format!("--dbname={MAINTENANCE_DB}"));
            databases::list("psql", cmd, credentials, cancel)
        })
    }

    fn open_database(
        &self,
        database: &str,
        cancel: Cancel,
    ) -> Result<Box<dyn SourceStream>, SourceError> {
        let (mut cmd, credentials) = self.connect(&self.program, CREDENTIALS_PATH)?;
        cmd.args(self.database_args(database));
        databases::spawn_dump(&self.id, "pg_dump", cmd, credentials, cancel)
    }
}

/// `"name"`, quotes doubled: an identifier for SQL.
fn identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'`, quotes doubled: a standard string literal for SQL.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

impl PgsqlSource {
    /// psql, quiet and unaligned, stopping at the first error, on `database`.
    fn psql(
        &self,
        database: &str,
        secret_path: &str,
    ) -> Result<(Command, Option<Credentials>), SourceError> {
        let (mut cmd, credentials) = self.connect(&self.tool("psql"), secret_path)?;
        cmd.args(self.connection_args())
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .arg(format!("--dbname={}", conninfo_dbname(database)));
        Ok((cmd, credentials))
    }
}

impl Server for PgsqlSource {
    fn single_database(&self) -> Option<&str> {
        match &self.config.dbname {
            DbName::One(name) => Some(name),
            _ => None,
        }
    }

    fn holds_data(&self, database: &str, cancel: Cancel) -> Result<Option<bool>, SourceError> {
        let (mut cmd, credentials) = self.psql(MAINTENANCE_DB, CREDENTIALS_PATH)?;
        cmd.arg("-c").arg(format!(
            "SELECT count(*), 0 FROM pg_database WHERE datname = {}",
            literal(database)
        ));
        let exists = databases::parse_holds_data(
            "psql",
            &databases::query("psql", cmd, credentials, cancel)?,
        )?;
        if exists.is_none() {
            return Ok(None);
        }
        let (mut cmd, credentials) = self.psql(database, CREDENTIALS_PATH)?;
        cmd.arg("-c").arg(
            "SELECT 1, count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') \
             AND n.nspname NOT LIKE 'pg_toast%' AND c.relkind IN ('r', 'v', 'm', 'S', 'f', 'p')",
        );
        databases::parse_holds_data("psql", &databases::query("psql", cmd, credentials, cancel)?)
    }

    fn create(&self, database: &str, cancel: Cancel) -> Result<(), SourceError> {
        let (mut cmd, credentials) = self.psql(MAINTENANCE_DB, CREDENTIALS_PATH)?;
        cmd.arg("-c")
            .arg(format!("CREATE DATABASE {}", identifier(database)));
        databases::query("psql", cmd, credentials, cancel).map(drop)
    }

    /// Plain SQL through psql (stops at the first error, in one transaction); a custom
    /// archive through pg_restore (stops at the first error; `replace`: `--clean
    /// --if-exists`).
    fn load(
        &self,
        database: &str,
        payload: Payload,
        replace: bool,
        cancel: Cancel,
    ) -> Result<Loader, SourceError> {
        match payload {
            Payload::Dump => {
                let (mut cmd, credentials) =
                    self.connect(&self.tool("pg_restore"), LOADER_CREDENTIALS_PATH)?;
                cmd.args(self.connection_args()).arg("--exit-on-error");
                if replace {
                    cmd.args(["--clean", "--if-exists"]);
                }
                cmd.arg(format!("--dbname={}", conninfo_dbname(database)));
                Loader::spawn("pg_restore", &cmd, credentials, cancel)
            }
            _ => {
                let (mut cmd, credentials) = self.psql(database, LOADER_CREDENTIALS_PATH)?;
                cmd.arg("--single-transaction");
                Loader::spawn("psql", &cmd, credentials, cancel)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::process::describe;
    use custos_kit::config::Secret;
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;

    fn config() -> PgsqlConfig {
        PgsqlConfig {
            dbhost: Some("127.0.0.1".into()),
            dbport: Some(5433),
            dbuser: Some("backups".into()),
            dbpass: Some(Secret::new("pa:ss\\word")),
            dbname: DbName::One("livecompany".into()),
            format: DumpFormat::Plain,
            defaults: None,
            options: vec![],
        }
    }

    #[test]
    fn args_name_host_port_user_database() {
        let s = PgsqlSource::new("pg", "PG", &config());
        assert_eq!(
            s.args(),
            [
                "--no-password",
                "--host=127.0.0.1",
                "--port=5433",
                "--username=backups",
                "--dbname=livecompany"
            ]
        );
    }

    #[test]
    fn pgpass_escapes_colon_and_backslash() {
        let s = PgsqlSource::new("pg", "PG", &config());
        assert_eq!(s.pgpass().unwrap(), "*:*:*:*:pa\\:ss\\\\word\n");
    }

    #[test]
    fn password_is_in_an_in_memory_0600_file_not_argv_or_env() {
        let s = PgsqlSource::new("pg", "PG", &config());
        let (cmd, credentials) = s.command(&[]).unwrap();
        assert!(!describe(&cmd).contains("pa:ss"));
        let envs: Vec<_> = cmd.get_envs().collect();
        let file = envs
            .iter()
            .find(|(k, _)| *k == "PGPASSFILE")
            .and_then(|(_, v)| *v)
            .unwrap();
        assert_eq!(file, "/dev/fd/0");
        assert!(envs.iter().any(|(k, v)| *k == "PGPASSWORD" && v.is_none()));
        let (mode, regular, text) = credentials.unwrap().read_back().unwrap();
        assert_eq!((mode, regular), (0o600, true));
        assert_eq!(text, "*:*:*:*:pa\\:ss\\\\word\n");
    }

    #[test]
    fn no_password_no_credentials() {
        let mut c = config();
        c.dbpass = None;
        let (cmd, credentials) = PgsqlSource::new("pg", "PG", &c).command(&[]).unwrap();
        assert!(credentials.is_none());
        assert!(!cmd
            .get_envs()
            .any(|(k, v)| k == "PGPASSFILE" && v.is_some()));
    }

    #[test]
    fn defaults_file_is_used_as_pgpassfile() {
        let mut c = config();
        c.defaults = Some("/home/backups/.pgpass".into());
        let (cmd, credentials) = PgsqlSource::new("pg", "PG", &c).command(&[]).unwrap();
        assert!(credentials.is_none());
        assert!(cmd
            .get_envs()
            .any(|(k, v)| k == "PGPASSFILE"
                && v == Some(std::ffi::OsStr::new("/home/backups/.pgpass"))));
    }

    #[test]
    fn failing_pg_dump_fails_finish() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("fake-pg_dump");
        std::fs::write(
            &fake,
            "#!/bin/sh\necho \"pass=$(cat \"$PGPASSFILE\")\"\necho 'pg_dump: error: connection to server failed' >&2\nexit 1\n",
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let s = PgsqlSource::new("pg", "PG", &config()).with_program(&fake);
        let mut stream = s.open(Cancel::new()).unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).unwrap();
        assert!(out.contains("pa\\:ss"), "{out}");
        let e = stream.finish().unwrap_err().to_string();
        assert!(e.contains("pg_dump exited with status 1"), "{e}");
        assert!(e.contains("connection to server failed"), "{e}");
    }
}
