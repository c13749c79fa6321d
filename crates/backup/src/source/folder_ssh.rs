//! `type: folder-ssh`: a tar stream of `path` on another host, made by GNU tar there and
//! read over the SSH transport ([`super::ssh`]).
//!
//! As the original (`ssh user@host tar cC PATH [--exclude X]... .`), members are `./...`
//! relative to `path`, so restores of either tool's archives look the same; unlike it, the
//! path and patterns are quoted (a space or `$(...)` in them is data) and the excludes come
//! before the member (GNU tar >= 1.29 ignores excludes given after it). The tar options are
//! the local `folder`'s ([`super::folder::tar_args`]): GNU format, sparse files, exit 1 (a file
//! changed while read) a warning when there is output. custos `sudo` runs `sudo -n tar` on the
//! remote host, the original's deployment for root-only files.

use crate::cancel::Cancel;
use std::ffi::OsString;
use std::path::PathBuf;

use custos_kit::config::{Invalid, Validate};

use super::folder::{tar_args, tar_verdict, FolderConfig};
use super::ssh::{ssh_source_config, words};
use super::{Source, SourceError, SourceStream};

/// The remote check: `path` exists (unless tar runs under sudo, which may see more than the
/// login user) and the tar program is GNU tar. `$1` is the path or empty, the rest tar's argv.
const CHECK_SCRIPT: &str = "if [ -n \"$1\" ] && [ ! -e \"$1\" ]; then \
printf '%s: no such file or directory\\n' \"$1\" >&2; exit 2; fi; shift; \
\"$@\" --version 2>&1 | grep -q 'GNU tar' || { printf '%s is not GNU tar\\n' \"$*\" >&2; exit 2; }";

ssh_source_config! {
    /// `type: folder-ssh`.
    pub struct FolderSshConfig {
        /// `path`: the folder (or file) on the remote host; members are `./...` below it.
        pub path: PathBuf,
        /// `excludes`: GNU tar `--exclude` patterns.
        #[serde(default, deserialize_with = "custos_kit::config::values::null_as_default")]
        pub excludes: Vec<String>,
        /// custos `sudo`: run `sudo -n tar` on the remote host.
        #[serde(default)]
        pub sudo: bool,
    }
}

impl FolderSshConfig {
    /// The source this config describes.
    pub fn build(&self, id: &str, name: &str) -> Box<dyn Source> {
        Box::new(FolderSshSource {
            id: id.to_owned(),
            name: name.to_owned(),
            config: self.clone(),
        })
    }

    /// The local `folder` config with the same path, excludes and sudo (for its checks).
    fn as_folder(&self) -> FolderConfig {
        FolderConfig {
            path: self.path.clone(),
            excludes: self.excludes.clone(),
            sudo: self.sudo,
        }
    }
}

impl Validate for FolderSshConfig {
    fn validate(&self) -> Result<(), Invalid> {
        self.ssh().validate()?;
        self.as_folder().validate()
    }
}

/// A folder on another host, archived there with GNU tar.
#[derive(Debug, Clone)]
pub struct FolderSshSource {
    id: String,
    name: String,
    config: FolderSshConfig,
}

impl FolderSshSource {
    /// `tar` or `sudo -n -- tar`.
    fn tar(&self) -> Vec<OsString> {
        if self.config.sudo {
            words(["sudo", "-n", "--", "tar"])
        } else {
            words(["tar"])
        }
    }

    /// The remote command: `[sudo -n --] tar --create ... --directory=PATH --exclude=P... .`.
    pub fn remote(&self) -> Vec<OsString> {
        let mut argv = self.tar();
        argv.extend(tar_args(
            self.config.path.as_os_str(),
            &self.config.excludes,
            ".".as_ref(),
        ));
        argv
    }
}

impl Source for FolderSshSource {
    fn id(&self) -> &str {
        &self.id
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "folder-ssh"
    }

    fn suffix(&self) -> &'static str {
        "tar"
    }

    fn check(&self, cancel: Cancel) -> Result<(), SourceError> {
        let mut argv = words(["sh", "-c", CHECK_SCRIPT, "sh"]);
        argv.push(if self.config.sudo {
            OsString::new()
        } else {
            self.config.path.clone().into_os_string()
        });
        argv.extend(self.tar());
        self.config.ssh().check("tar", &argv, None, cancel)
    }

    fn open(&self, cancel: Cancel) -> Result<Box<dyn SourceStream>, SourceError> {
        Ok(Box::new(self.config.ssh().stream(
            "tar",
            &self.remote(),
            tar_verdict,
            None,
            cancel,
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::ssh::remote_command;

    fn config(path: &str) -> FolderSshConfig {
        FolderSshConfig {
            sshhost: "files.example.org".into(),
            sshuser: Some("backups".into()),
            sshport: None,
            sshidentity: None,
            ssh_command: vec![],
            path: path.into(),
            excludes: vec!["*.tmp".into(), "cache dir".into()],
            sudo: false,
        }
    }

    #[test]
    fn remote_tar_is_the_originals_with_excludes_first_and_every_word_quoted() {
        let src = FolderSshSource {
            id: "f".into(),
            name: "F".into(),
            config: config("/srv/my data"),
        };
        let remote = remote_command(&src.remote());
        let text = remote.to_string_lossy();
        assert!(
            text.ends_with(
                " custos-ssh 'tar' '--create' '--file=-' '--format=gnu' '--sparse' \
                 '--directory=/srv/my data' '--exclude=*.tmp' '--exclude=cache dir' '.'"
            ),
            "{text}"
        );
        let mut sudo = src.clone();
        sudo.config.sudo = true;
        let text = remote_command(&sudo.remote())
            .to_string_lossy()
            .into_owned();
        assert!(
            text.contains(" custos-ssh 'sudo' '-n' '--' 'tar' '--create'"),
            "{text}"
        );
    }

    #[test]
    fn validate_checks_the_ssh_keys_and_the_folder_keys() {
        config("/srv").validate().unwrap();
        let mut c = config("");
        assert_eq!(c.validate().unwrap_err().key, "path");
        c = config("/srv");
        c.excludes.push(String::new());
        assert_eq!(c.validate().unwrap_err().key, "excludes[2]");
        c = config("/srv");
        c.sshhost = "-oProxyCommand=sh".into();
        assert_eq!(c.validate().unwrap_err().key, "sshhost");
    }
}
