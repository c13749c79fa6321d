//! `type: mysql`: a `mysqldump` stream.
//!
//! Credentials go to a 0600 temporary option file passed as `--defaults-file` (it must be the
//! first argument), never argv or the environment. `--defaults-file` and not
//! `--defaults-extra-file`: an extra file is read *before* `~/.my.cnf`, so a password there
//! would silently win over the job's. With `defaults` set, that file is used instead, exactly as
//! the original (then `dbuser`/`dbpass` are ignored; `dbhost`/`dbport` still go on the command
//! line). As the original: `--routines`, `--events` unless `noevents`, then `options`, then
//! `--databases NAME...` unless `options` already says `--all-databases`; with no `dbname` at
//! all, `--all-databases`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::process::{describe, secret_file, ChildStream, Keep, Verdict};
use super::{Source, SourceError, SourceStream};
use crate::config::MysqlConfig;

/// A MySQL/MariaDB dump.
#[derive(Debug, Clone)]
pub struct MysqlSource {
    id: String,
    name: String,
    config: MysqlConfig,
    tmpdir: Option<PathBuf>,
    program: OsString,
}

impl MysqlSource {
    /// Builds the source; `tmpdir` is where the credentials file goes (system temp if absent
    /// or missing).
    pub fn new(id: &str, name: &str, config: &MysqlConfig, tmpdir: Option<&Path>) -> Self {
        MysqlSource {
            id: id.to_owned(),
            name: name.to_owned(),
            config: config.clone(),
            tmpdir: tmpdir.map(Path::to_owned),
            program: OsString::from("mysqldump"),
        }
    }

    /// Uses another dump program (tests; `mariadb-dump`).
    pub fn with_program(mut self, program: impl Into<OsString>) -> Self {
        self.program = program.into();
        self
    }

    /// The option file's text (holds the password: write it only to a 0600 file).
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

    /// The arguments after `--defaults-file=...`: what to dump and how.
    pub fn dump_args(&self) -> Vec<String> {
        let c = &self.config;
        let mut args = Vec::new();
        if c.defaults.is_some() {
            if let Some(h) = c.dbhost.as_deref().filter(|h| !h.is_empty()) {
                args.push(format!("--host={h}"));
            }
            if let Some(p) = c.dbport {
                args.push(format!("--port={p}"));
            }
        }
        args.push("--routines".to_owned());
        if !c.noevents {
            args.push("--events".to_owned());
        }
        args.extend(c.options.iter().cloned());
        let all = c
            .options
            .iter()
            .any(|o| o == "--all-databases" || o == "-A");
        if !all {
            if c.dbname.is_empty() {
                args.push("--all-databases".to_owned());
            } else {
                args.push("--databases".to_owned());
                args.extend(c.dbname.iter().cloned());
            }
        }
        args
    }

    /// Writes the credentials file (unless `defaults` is set) and returns the command with
    /// what must stay alive until mysqldump has exited.
    fn command(&self, extra: &[&str]) -> Result<(Command, Vec<Keep>), SourceError> {
        let mut keep: Vec<Keep> = Vec::new();
        let defaults_file = match &self.config.defaults {
            Some(path) => {
                if self.config.dbuser.is_some() || self.config.dbpass.is_some() {
                    tracing::debug!(source = %self.id, "\"defaults\" is set: dbuser/dbpass ignored as in the original");
                }
                path.clone()
            }
            None => {
                let file = secret_file(
                    self.tmpdir.as_deref(),
                    ".custos-my-",
                    ".cnf",
                    &self.option_file(),
                )?;
                let path = file.path().to_owned();
                keep.push(Box::new(file));
                path
            }
        };
        let mut cmd = Command::new(&self.program);
        let mut first = OsString::from("--defaults-file=");
        first.push(&defaults_file);
        cmd.arg(first);
        cmd.args(extra);
        cmd.args(self.dump_args());
        cmd.env_remove("MYSQL_PWD");
        Ok((cmd, keep))
    }
}

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

fn dump_verdict(code: i32) -> Verdict {
    if code == 0 {
        Verdict::Ok
    } else {
        Verdict::Failed
    }
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

    /// Connects and dumps nothing but headers: proves credentials, databases and privileges.
    fn check(&self) -> Result<(), SourceError> {
        let (mut cmd, _keep) = self.command(&[
            "--no-data",
            "--no-create-info",
            "--no-create-db",
            "--skip-triggers",
        ])?;
        let out = cmd.output().map_err(|e| {
            SourceError::Unavailable(format!(
                "cannot run {}: {e}",
                self.program.to_string_lossy()
            ))
        })?;
        if !out.status.success() {
            return Err(SourceError::Unavailable(format!(
                "{} failed ({}): {}",
                self.program.to_string_lossy(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(())
    }

    fn open(&self) -> Result<Box<dyn SourceStream>, SourceError> {
        let (cmd, keep) = self.command(&[])?;
        tracing::debug!(source = %self.id, command = %describe(&cmd), "dumping");
        let what = Path::new(&self.program)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "mysqldump".to_owned());
        Ok(Box::new(ChildStream::spawn(
            &what,
            cmd,
            dump_verdict,
            keep,
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;

    fn config() -> MysqlConfig {
        MysqlConfig {
            dbhost: Some("127.0.0.1".into()),
            dbport: Some(3307),
            dbuser: Some("backups".into()),
            dbpass: Some(Secret::new("s3cr#t \"q\" \\x")),
            dbname: vec!["livecompany".into()],
            defaults: None,
            options: vec![],
            noevents: false,
        }
    }

    #[test]
    fn args_follow_the_original() {
        let s = MysqlSource::new("db", "DB", &config(), None);
        assert_eq!(
            s.dump_args(),
            ["--routines", "--events", "--databases", "livecompany"]
        );

        let mut c = config();
        c.noevents = true;
        c.dbname = vec!["a".into(), "b".into()];
        c.options = vec!["--single-transaction".into(), "--skip-triggers".into()];
        assert_eq!(
            MysqlSource::new("db", "DB", &c, None).dump_args(),
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
            MysqlSource::new("db", "DB", &c, None).dump_args(),
            ["--routines", "--events", "--all-databases"]
        );

        let mut c = config();
        c.dbname.clear();
        assert_eq!(
            MysqlSource::new("db", "DB", &c, None).dump_args(),
            ["--routines", "--events", "--all-databases"]
        );
    }

    #[test]
    fn defaults_file_replaces_credentials_and_keeps_host_on_argv() {
        let mut c = config();
        c.defaults = Some("/etc/mysql/backup.cnf".into());
        let s = MysqlSource::new("db", "DB", &c, None);
        let (cmd, keep) = s.command(&[]).unwrap();
        assert!(keep.is_empty());
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
    fn password_goes_to_a_0600_file_named_first_never_argv_or_env() {
        let dir = tempfile::tempdir().unwrap();
        let s = MysqlSource::new("db", "DB", &config(), Some(dir.path()));
        let (cmd, keep) = s.command(&[]).unwrap();
        assert_eq!(keep.len(), 1);
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let file = args[0].strip_prefix("--defaults-file=").unwrap();
        assert!(file.starts_with(dir.path().to_str().unwrap()), "{file}");
        assert!(!args.iter().any(|a| a.contains("s3cr")), "{args:?}");
        assert!(!cmd
            .get_envs()
            .any(|(_, v)| v.is_some_and(|v| v.to_string_lossy().contains("s3cr"))));
        let mode = std::fs::metadata(file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let text = std::fs::read_to_string(file).unwrap();
        assert_eq!(
            text,
            "[client]\nhost=\"127.0.0.1\"\nport=3307\nuser=\"backups\"\npassword=\"s3cr#t \\\"q\\\" \\\\x\"\n"
        );
        drop(keep);
        assert!(!Path::new(file).exists(), "credentials file left behind");
    }

    #[test]
    fn option_values_are_quoted_and_escaped() {
        assert_eq!(option_value("plain"), "\"plain\"");
        assert_eq!(option_value("a#b"), "\"a#b\"");
        assert_eq!(option_value("tab\there"), "\"tab\\there\"");
        assert_eq!(option_value("end\\"), "\"end\\\\\"");
    }

    /// A stand-in mysqldump that prints its option file and arguments: shows what the real
    /// one receives (the real server test lives in tests/).
    #[test]
    fn streams_the_programs_stdout_and_removes_the_file_after() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("fake-mysqldump");
        std::fs::write(
            &fake,
            "#!/bin/sh\nf=${1#--defaults-file=}\necho \"file=$f\"\ncat \"$f\"\nshift\necho \"args=$*\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let s = MysqlSource::new("db", "DB", &config(), Some(dir.path())).with_program(&fake);
        let mut stream = s.open().unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).unwrap();
        stream.finish().unwrap();
        assert!(out.contains("password=\"s3cr#t"), "{out}");
        assert!(
            out.contains("args=--routines --events --databases livecompany"),
            "{out}"
        );
        let file = out.lines().next().unwrap().strip_prefix("file=").unwrap();
        assert!(!Path::new(file).exists());
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
        let s = MysqlSource::new("db", "DB", &config(), Some(dir.path())).with_program(&fake);
        let mut stream = s.open().unwrap();
        std::io::copy(&mut stream, &mut std::io::sink()).unwrap();
        let e = stream.finish().unwrap_err().to_string();
        assert!(e.contains("exited with status 2"), "{e}");
        assert!(e.contains("Lost connection"), "{e}");
        assert!(!e.contains("s3cr"), "{e}");
    }
}
