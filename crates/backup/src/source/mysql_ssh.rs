//! `type: mysql-ssh`: `mysqldump` run on another host over the SSH transport
//! ([`super::ssh`]), its output the stream.
//!
//! The original ran `ssh user@host mysqldump --host= --user= --password=PW ...`: the password
//! was in ssh's argv here and in mysqldump's there (any `ps` on either host showed it). custos
//! sends the option file (`[client]` host, port, user, password: the local `mysql` source's,
//! [`MysqlSource::option_file`]) as ssh's stdin from an in-memory file, and the remote
//! mysqldump reads it as `--defaults-file=/dev/stdin`: no argv on either host, no file on
//! either disk. The dump arguments are the local source's ([`MysqlSource::dump_args`]:
//! `--routines`, `--events` unless `noevents`, `options`, `--databases NAME...`).

use crate::cancel::Cancel;
use std::ffi::OsString;

use custos_kit::config::{Invalid, Secret, Validate};

use super::mysql::{MysqlConfig, MysqlSource, CHECK_ARGS};
use super::process::{credentials, Verdict};
use super::ssh::{ssh_source_config, words};
use super::{Source, SourceError, SourceStream};

/// Where the remote mysqldump reads its option file: ssh's stdin, forwarded by sshd.
const REMOTE_DEFAULTS: &str = "--defaults-file=/dev/stdin";

ssh_source_config! {
    /// `type: mysql-ssh`.
    pub struct MysqlSshConfig {
        /// `dbhost`, as the remote host sees it (absent: mysqldump's default, its socket).
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
        /// `dbname`: one name, several separated by spaces, or a list; none = all.
        #[serde(default, deserialize_with = "custos_kit::config::values::names")]
        pub dbname: Vec<String>,
        /// `options`: extra mysqldump options.
        #[serde(default, deserialize_with = "custos_kit::config::values::words")]
        pub options: Vec<String>,
        /// `noevents`: do not pass `--events`.
        #[serde(default, deserialize_with = "custos_kit::config::values::truthy")]
        pub noevents: bool,
    }
}

impl MysqlSshConfig {
    /// The source this config describes.
    pub fn build(&self, id: &str, name: &str) -> Box<dyn Source> {
        Box::new(MysqlSshSource {
            id: id.to_owned(),
            name: name.to_owned(),
            config: self.clone(),
            dump: MysqlSource::new(id, name, &self.as_mysql()),
        })
    }

    /// The local `mysql` config with the same database keys (its option file, arguments and
    /// checks are this type's).
    fn as_mysql(&self) -> MysqlConfig {
        MysqlConfig {
            dbhost: self.dbhost.clone(),
            dbport: self.dbport,
            dbuser: self.dbuser.clone(),
            dbpass: self.dbpass.clone(),
            dbname: crate::source::databases::DbName::one_object(&self.dbname),
            defaults: None,
            options: self.options.clone(),
            noevents: self.noevents,
        }
    }
}

impl Validate for MysqlSshConfig {
    fn validate(&self) -> Result<(), Invalid> {
        self.ssh().validate()?;
        self.as_mysql().validate()
    }
}

/// A MySQL/MariaDB dump made on another host.
#[derive(Debug, Clone)]
pub struct MysqlSshSource {
    id: String,
    name: String,
    config: MysqlSshConfig,
    dump: MysqlSource,
}

impl MysqlSshSource {
    /// The remote command: `mysqldump --defaults-file=/dev/stdin EXTRA... ARGS...`.
    pub fn remote(&self, extra: &[&str]) -> Vec<OsString> {
        let mut argv = words(["mysqldump", REMOTE_DEFAULTS]);
        argv.extend(words(extra.iter().copied()));
        argv.extend(words(self.dump.dump_args()));
        argv
    }
}

impl Source for MysqlSshSource {
    fn id(&self) -> &str {
        &self.id
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "mysql-ssh"
    }

    fn suffix(&self) -> &'static str {
        "sql"
    }

    fn check(&self, cancel: Cancel) -> Result<(), SourceError> {
        let file = credentials("custos-my.cnf", &self.dump.option_file())?;
        self.config
            .ssh()
            .check("mysqldump", &self.remote(&CHECK_ARGS), Some(file), cancel)
    }

    fn open(&self, cancel: Cancel) -> Result<Box<dyn SourceStream>, SourceError> {
        let file = credentials("custos-my.cnf", &self.dump.option_file())?;
        Ok(Box::new(self.config.ssh().stream(
            "mysqldump",
            &self.remote(&[]),
            Verdict::zero_only,
            Some(file),
            cancel,
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::process::describe;

    fn config() -> MysqlSshConfig {
        MysqlSshConfig {
            sshhost: "db1".into(),
            sshuser: Some("backups".into()),
            sshport: Some(2222),
            sshidentity: None,
            ssh_command: vec![],
            dbhost: Some("localhost".into()),
            dbport: None,
            dbuser: Some("dump".into()),
            dbpass: Some(Secret::new("Pw-in-no-argv")),
            dbname: vec!["shop".into(), "crm".into()],
            options: vec!["--single-transaction".into()],
            noevents: true,
        }
    }

    fn source() -> MysqlSshSource {
        let c = config();
        MysqlSshSource {
            id: "db".into(),
            name: "DB".into(),
            dump: MysqlSource::new("db", "DB", &c.as_mysql()),
            config: c,
        }
    }

    #[test]
    fn the_password_is_in_the_option_file_never_in_ssh_or_mysqldump_argv() {
        let s = source();
        let cmd = s.config.ssh().command(&s.remote(&[]));
        let line = describe(&cmd);
        assert!(!line.contains("Pw-in-no-argv"), "{line}");
        assert!(
            line.ends_with(
                " custos-ssh 'mysqldump' '--defaults-file=/dev/stdin' '--routines' \
                 '--single-transaction' '--databases' 'shop' 'crm'"
            ),
            "{line}"
        );
        assert!(s.dump.option_file().contains("password=\"Pw-in-no-argv\""));
    }

    #[test]
    fn validate_uses_the_mysql_checks() {
        config().validate().unwrap();
        let mut c = config();
        c.options.push("--defaults-extra-file=/x".into());
        assert_eq!(c.validate().unwrap_err().key, "options");
        let mut c = config();
        c.dbpass = Some(Secret::new("a\nb"));
        assert_eq!(c.validate().unwrap_err().key, "dbpass");
    }
}
