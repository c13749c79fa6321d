//! `type: mysql`: a `mysqldump` stream.
//!
//! Credentials go to an in-memory 0600 option file (a memfd, see [`Credentials`]) given to
//! mysqldump as its stdin and named by `--defaults-file=/dev/fd/0` (it must be the first
//! argument); never argv, the environment, or a file on disk that a `kill -9` would leave. `--defaults-file` and not
//! `--defaults-extra-file`: an extra file is read *before* `~/.my.cnf`, so a password there
//! would silently win over the job's. With `defaults` set, that file is used instead, exactly as
//! the original (then `dbuser`/`dbpass` are ignored; `dbhost`/`dbport` still go on the command
//! line). As the original: `--routines`, `--events` unless `noevents`, then `options`, then
//! `--databases NAME...` unless `options` already says `--all-databases`; with no `dbname` at
//! all, `--all-databases`.
//!
//! custos: `dbname: all` or a list dumps one object per database (see [`super::databases`]);
//! `all` lists the server's databases with the `mysql` client and skips `information_schema`,
//! `performance_schema` and `sys` (the server's own, rebuilt by it; `mysql`, which holds
//! users and grants, is kept). Each database is dumped without `--databases`, so its dump
//! has no `CREATE DATABASE`/`USE` and loads into any database (`backup restore --database
//! NAME --as NEW`).

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::databases::{self, DbName, Loader, Server, LOADER_CREDENTIALS_PATH};
use super::process::{credentials, run_check, Credentials, CREDENTIALS_PATH};
use super::{Source, SourceError, SourceStream};
use crate::cancel::Cancel;
use crate::naming::Payload;
use serde::Deserialize;

use custos_kit::config::values::no_newline;
use custos_kit::config::{Invalid, Secret, Validate};

/// mysqldump options for a check that connects and dumps nothing but headers.
pub const CHECK_ARGS: [&str; 4] = [
    "--no-data",
    "--no-create-info",
    "--no-create-db",
    "--skip-triggers",
];

/// `type: mysql`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MysqlConfig {
    /// `dbhost` (absent: mysqldump's default, the local socket).
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
    /// `dbname`: one name or several separated by spaces (one object, as the original);
    /// `all` or a list: one object per database; none = `--all-databases` in one object.
    #[serde(default, deserialize_with = "databases::dbname")]
    pub dbname: DbName,
    /// `defaults`: an existing option file used instead of the generated one (then `dbuser`
    /// and `dbpass` are ignored, as in the original).
    #[serde(default)]
    pub defaults: Option<PathBuf>,
    /// `options`: extra mysqldump options, one string split at spaces (or a list).
    #[serde(default, deserialize_with = "custos_kit::config::values::words")]
    pub options: Vec<String>,
    /// `noevents`: do not pass `--events`.
    #[serde(default, deserialize_with = "custos_kit::config::values::truthy")]
    pub noevents: bool,
}

impl MysqlConfig {
    /// The source this config describes.
    pub fn build(&self, id: &str, name: &str) -> Box<dyn Source> {
        Box::new(MysqlSource::new(id, name, self))
    }
}

impl Validate for MysqlConfig {
    fn validate(&self) -> Result<(), Invalid> {
        if let Some(p) = &self.dbpass {
            no_newline("dbpass", p)?;
        }
        if let Some(o) = self.options.iter().find(|o| o.starts_with("--defaults")) {
            return Err(Invalid::new(
                "options",
                o,
                "use the \"defaults\" key: --defaults* must be mysqldump's first argument",
            ));
        }
        if self.dbname.per_database() {
            let whole = ["--all-databases", "-A", "--databases", "-B"];
            if let Some(o) = self.options.iter().find(|o| whole.contains(&o.as_str())) {
                return Err(Invalid::new(
                    "options",
                    o,
                    "dbname is `all` or a list (one object per database): drop this option",
                ));
            }
        }
        Ok(())
    }
}

/// A MySQL/MariaDB dump.
#[derive(Debug, Clone)]
pub struct MysqlSource {
    id: String,
    name: String,
    config: MysqlConfig,
    program: OsString,
    client: OsString,
}

impl MysqlSource {
    /// Builds the source.
    pub fn new(id: &str, name: &str, config: &MysqlConfig) -> Self {
        MysqlSource {
            id: id.to_owned(),
            name: name.to_owned(),
            config: config.clone(),
            program: OsString::from("mysqldump"),
            client: OsString::from("mysql"),
        }
    }

    /// Uses another dump program (tests; `mariadb-dump`).
    #[cfg(test)]
    pub fn with_program(mut self, program: impl Into<OsString>) -> Self {
        self.program = program.into();
        self
    }

    /// The option file's text (holds the password: only ever goes into [`Credentials`]).
    pub fn option_file(&self) -> String {
        let c = &self.config;
        let mut s = String::from("[client]\n");
        if let Some(h) = c.dbhost.as_deref().filter(|h| !h.is_empty()) {
            s.push_str(&format!("host={}\n", option_value(h)));
        }
        if let Some(p) = c.dbport {
            s.push_str(&format!("port={p}\n"));
        }
        if let Some(u) = c.dbuser.as_deref().filter(|u| !u.is_empty()) {
            s.push_str(&format!("user={}\n", option_value(u)));
        }
        if let Some(p) = &c.dbpass {
            s.push_str(&format!("password={}\n", option_value(p.expose())));
        }
        s
    }

    /// `--routines`, `--events` unless `noevents`, then `options`.
    fn common_args(&self) -> Vec<String> {
        let c = &self.config;
        let mut args = vec!["--routines".to_owned()];
        if !c.noevents {
            args.push("--events".to_owned());
        }
        args.extend(c.options.iter().cloned());
        args
    }

    /// The arguments after the connection: what to dump and how (the whole source; for a
    /// per-database source this is what `--dry-run` checks).
    pub fn dump_args(&self) -> Vec<String> {
        let c = &self.config;
        let mut args = self.common_args();
        let all = c
            .options
            .iter()
            .any(|o| o == "--all-databases" || o == "-A");
        if !all {
            match &c.dbname {
                DbName::Absent | DbName::All => args.push("--all-databases".to_owned()),
                DbName::One(names) => {
                    args.push("--databases".to_owned());
                    args.extend(names.split_whitespace().map(str::to_owned));
                }
                DbName::Each(names) => {
                    args.push("--databases".to_owned());
                    args.extend(names.iter().cloned());
                }
            }
        }
        args
    }

    /// The arguments of one database's dump: no `--databases`, so no `CREATE DATABASE` or
    /// `USE` in it; `--` so a name starting with `-` is a name.
    pub fn database_args(&self, database: &str) -> Vec<String> {
        let mut args = self.common_args();
        args.push("--".to_owned());
        args.push(database.to_owned());
        args
    }

    /// The program's file name, for messages.
    fn program_name(&self) -> String {
        file_name(&self.program, "mysqldump")
    }

    /// The dump command, and (unless `defaults` is set) the in-memory option file that must
    /// become its stdin.
    fn command(&self, extra: &[&str]) -> Result<(Command, Option<Credentials>), SourceError> {
        let (mut cmd, credentials) = self.connect(&self.program, CREDENTIALS_PATH)?;
        cmd.args(extra);
        cmd.args(self.dump_args());
        Ok((cmd, credentials))
    }

    /// `program` (mysqldump or the client) with the connection: `--defaults-file=` first,
    /// then host and port when `defaults` is set; and the in-memory option file that must
    /// be handed to it (unless `defaults` is set), which it reads as `secret_path`.
    pub fn connect(
        &self,
        program: &OsStr,
        secret_path: &str,
    ) -> Result<(Command, Option<Credentials>), SourceError> {
        let (defaults_file, credentials) = match &self.config.defaults {
            Some(path) => {
                if self.config.dbuser.is_some() || self.config.dbpass.is_some() {
                    tracing::debug!(source = %self.id, "\"defaults\" is set: dbuser/dbpass ignored as in the original");
                }
                (path.as_os_str().to_owned(), None)
            }
            None => (
                OsString::from(secret_path),
                Some(credentials("custos-my.cnf", &self.option_file())?),
            ),
        };
        let mut cmd = Command::new(program);
        let mut first = OsString::from("--defaults-file=");
        first.push(&defaults_file);
        cmd.arg(first);
        if self.config.defaults.is_some() {
            let c = &self.config;
            if let Some(h) = c.dbhost.as_deref().filter(|h| !h.is_empty()) {
                cmd.arg(format!("--host={h}"));
            }
            if let Some(p) = c.dbport {
                cmd.arg(format!("--port={p}"));
            }
        }
        cmd.env_remove("MYSQL_PWD");
        Ok((cmd, credentials))
    }

    /// The client, connected, in batch mode without column names (listing, loading).
    pub fn client(&self) -> Result<(Command, Option<Credentials>), SourceError> {
        let (mut cmd, credentials) = self.connect(&self.client, CREDENTIALS_PATH)?;
        cmd.args(["--batch", "--skip-column-names"]);
        Ok((cmd, credentials))
    }

    /// The client's file name, for messages.
    pub fn client_name(&self) -> String {
        file_name(&self.client, "mysql")
    }
}

/// The file name of `program` (messages name programs, not paths).
fn file_name(program: &OsStr, fallback: &str) -> String {
    Path::new(program)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| fallback.to_owned())
}

/// Databases the server keeps for itself: never dumped by `dbname: all`.
pub const SYSTEM_DATABASES: &[&str] = &["information_schema", "performance_schema", "sys"];

/// Quotes an option file value so that `#`, quotes, backslashes, spaces and control
/// characters survive MariaDB's option file parser (`mysys/my_default.c`).
pub fn option_value(v: &str) -> String {
    let mut s = String::with_capacity(v.len() + 2);
    s.push('"');
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

impl Source for MysqlSource {
    fn id(&self) -> &str {
        &self.id
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "mysql"
    }

    fn suffix(&self) -> &'static str {
        "sql"
    }

    /// Connects and dumps nothing but headers: proves credentials, databases and privileges
    /// (for `all`, after listing them).
    fn check(&self, cancel: Cancel) -> Result<(), SourceError> {
        if self.config.dbname == DbName::All {
            self.databases(cancel)?;
        }
        let (cmd, credentials) = self.command(&CHECK_ARGS)?;
        run_check(&self.program_name(), cmd, credentials, cancel)
    }

    fn open(&self, cancel: Cancel) -> Result<Box<dyn SourceStream>, SourceError> {
        let (cmd, credentials) = self.command(&[])?;
        databases::spawn_dump(&self.id, &self.program_name(), cmd, credentials, cancel)
    }

    fn server(&self) -> Option<&dyn Server> {
        Some(self)
    }

    fn databases(&self, cancel: Cancel) -> Result<Option<Vec<String>>, SourceError> {
        databases::select(&self.config.dbname, SYSTEM_DATABASES, || {
            let (mut cmd, credentials) = self.client()?;
            cmd.args([
                "-e",
                "SELECT HEX(SCHEMA_NAME) FROM information_schema.SCHEMATA ORDER BY SCHEMA_NAME",
            ]);
            databases::list(&self.client_name(), cmd, credentials, cancel)
        })
    }

    fn open_database(
        &self,
        database: &str,
        cancel: Cancel,
    ) -> Result<Box<dyn SourceStream>, SourceError> {
        let (mut cmd, credentials) = self.connect(&self.program, CREDENTIALS_PATH)?;
        cmd.args(self.database_args(database));
        databases::spawn_dump(&self.id, &self.program_name(), cmd, credentials, cancel)
    }
}

/// `0x...`: a string literal for SQL that needs no quoting.
fn hex_literal(s: &str) -> String {
    format!("0x{}", hex::encode(s.as_bytes()))
}

/// `` `name` ``, backticks doubled: an identifier for SQL.
fn identifier(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

impl Server for MysqlSource {
    fn holds_data(&self, database: &str, cancel: Cancel) -> Result<Option<bool>, SourceError> {
        let (mut cmd, credentials) = self.client()?;
        let name = hex_literal(database);
        cmd.arg("-e").arg(format!(
            "SELECT (SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = {name}), \
             (SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = {name})"
        ));
        let out = databases::query(&self.client_name(), cmd, credentials, cancel)?;
        databases::parse_holds_data(&self.client_name(), &out)
    }

    fn create(&self, database: &str, cancel: Cancel) -> Result<(), SourceError> {
        let (mut cmd, credentials) = self.client()?;
        cmd.arg("-e")
            .arg(format!("CREATE DATABASE {}", identifier(database)));
        databases::query(&self.client_name(), cmd, credentials, cancel).map(drop)
    }

    /// `mysql --database=NAME` reading the dump (a per-database dump has no `USE`, and its
    /// `DROP TABLE IF EXISTS` replaces tables either way).
    fn load(
        &self,
        database: &str,
        _: Payload,
        _: bool,
        cancel: Cancel,
    ) -> Result<Loader, SourceError> {
        let (mut cmd, credentials) = self.connect(&self.client, LOADER_CREDENTIALS_PATH)?;
        cmd.arg("--batch").arg(format!("--database={database}"));
        Loader::spawn(&self.client_name(), &cmd, credentials, cancel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::process::describe;
    use custos_kit::config::Secret;
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;

    fn config() -> MysqlConfig {
        MysqlConfig {
            dbhost: Some("127.0.0.1".into()),
            dbport: Some(3307),
            dbuser: Some("backups".into()),
            dbpass: Some(Secret::new("s3cr#t \"q\" \\x")),
            dbname: DbName::One("livecompany".into()),
            defaults: None,
            options: vec![],
            noevents: false,
        }
    }

    #[test]
    fn args_follow_the_original() {
        let s = MysqlSource::new("db", "DB", &config());
        assert_eq!(
            s.dump_args(),
            ["--routines", "--events", "--databases", "livecompany"]
        );

        let mut c = config();
        c.noevents = true;
        c.dbname = DbName::One("a b".into());
        c.options = vec!["--single-transaction".into(), "--skip-triggers".into()];
        assert_eq!(
            MysqlSource::new("db", "DB", &c).dump_args(),
            [
                "--routines",
                "--single-transaction",
                "--skip-triggers",
                "--databases",
                "a",
                "b"
            ]
        );

        let mut c = config();
        c.options = vec!["--all-databases".into()];
        assert_eq!(
            MysqlSource::new("db", "DB", &c).dump_args(),
            ["--routines", "--events", "--all-databases"]
        );

        let mut c = config();
        c.dbname = DbName::Absent;
        assert_eq!(
            MysqlSource::new("db", "DB", &c).dump_args(),
            ["--routines", "--events", "--all-databases"]
        );
    }

    #[test]
    fn defaults_file_replaces_credentials_and_keeps_host_on_argv() {
        let mut c = config();
        c.defaults = Some("/etc/mysql/backup.cnf".into());
        let s = MysqlSource::new("db", "DB", &c);
        let (cmd, credentials) = s.command(&[]).unwrap();
        assert!(credentials.is_none());
        let line = describe(&cmd);
        assert!(
            line.starts_with(
                "mysqldump --defaults-file=/etc/mysql/backup.cnf --host=127.0.0.1 --port=3307 --routines"
            ),
            "{line}"
        );
        assert!(!line.contains("s3cr"), "{line}");
    }

    #[test]
    fn password_goes_to_an_in_memory_0600_file_named_first_never_argv_or_env() {
        let s = MysqlSource::new("db", "DB", &config());
        let (cmd, credentials) = s.command(&[]).unwrap();
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(args[0], "--defaults-file=/dev/fd/0");
        assert!(!args.iter().any(|a| a.contains("s3cr")), "{args:?}");
        assert!(!cmd
            .get_envs()
            .any(|(_, v)| v.is_some_and(|v| v.to_string_lossy().contains("s3cr"))));
        let (mode, regular, text) = credentials.unwrap().read_back().unwrap();
        assert_eq!((mode, regular), (0o600, true));
        assert_eq!(
            text,
            "[client]\nhost=\"127.0.0.1\"\nport=3307\nuser=\"backups\"\npassword=\"s3cr#t \\\"q\\\" \\\\x\"\n"
        );
    }

    #[test]
    fn option_values_are_quoted_and_escaped() {
        assert_eq!(option_value("plain"), "\"plain\"");
        assert_eq!(option_value("a#b"), "\"a#b\"");
        assert_eq!(option_value("tab\there"), "\"tab\\there\"");
        assert_eq!(option_value("end\\"), "\"end\\\\\"");
    }

    /// A stand-in mysqldump that prints its option file and arguments: shows what the real
    /// one receives (the real server test lives in tests/). Nothing is written to a file
    /// system: the option file is the child's stdin.
    #[test]
    fn streams_the_programs_stdout_with_the_option_file_as_stdin() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("fake-mysqldump");
        std::fs::write(
            &fake,
            "#!/bin/sh\nf=${1#--defaults-file=}\necho \"file=$f $(stat -L -c %a \"$f\")\"\ncat \"$f\"\nshift\necho \"args=$*\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let s = MysqlSource::new("db", "DB", &config()).with_program(&fake);
        let mut stream = s.open(Cancel::new()).unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).unwrap();
        stream.finish().unwrap();
        assert_eq!(out.lines().next(), Some("file=/dev/fd/0 600"), "{out}");
        assert!(out.contains("password=\"s3cr#t"), "{out}");
        assert!(
            out.contains("args=--routines --events --databases livecompany"),
            "{out}"
        );
        let entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(entries.len(), 1, "only the fake program: {entries:?}");
    }

    #[test]
    fn failing_dump_fails_finish_with_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("fake-mysqldump");
        std::fs::write(
            &fake,
            "#!/bin/sh\necho 'CREATE TABLE t (' \necho 'mysqldump: Error 2013: Lost connection to server during query' >&2\nexit 2\n",
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let s = MysqlSource::new("db", "DB", &config()).with_program(&fake);
        let mut stream = s.open(Cancel::new()).unwrap();
        std::io::copy(&mut stream, &mut std::io::sink()).unwrap();
        let e = stream.finish().unwrap_err().to_string();
        assert!(e.contains("exited with status 2"), "{e}");
        assert!(e.contains("Lost connection"), "{e}");
        assert!(!e.contains("s3cr"), "{e}");
    }
}
