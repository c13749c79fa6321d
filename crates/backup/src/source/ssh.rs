//! The SSH transport of `folder-ssh`, `mysql-ssh` and `lvm-ssh`: a program run on another
//! host through the system `ssh` binary, its stdout the source stream.
//!
//! The system `ssh` rather than an SSH library, so that `~/.ssh/config` (aliases, `ProxyJump`,
//! `ControlMaster`), `known_hosts`, the agent and hardware keys work exactly as the user's own
//! `ssh` does. It is spawned by the shared process plumbing ([`super::process`]): its own
//! process group, the run's deadline, a stderr tail, SIGINT/SIGTERM cancellation, secrets as
//! an in-memory stdin.
//!
//! What custos adds, and why:
//! - `-o BatchMode=yes`: never a prompt (a cron job has nobody to answer it); host-key
//!   checking stays on (`StrictHostKeyChecking=no` in `ssh_command` is refused), so a host
//!   whose key changed is refused, naming the host.
//! - `--` before the destination, and every remote word quoted by custos ([`quote`]): ssh
//!   joins its arguments into one string that the remote login shell parses, so a path with
//!   a space, a `;` or `$(...)` is data, never code.
//! - A remote wrapper ([`WRAPPER`]) that dies with the connection: sshd does not signal the
//!   remote command when the client goes away, so a dump blocked on a lock would run on
//!   forever. The wrapper watches its sshd parent once a second and, when it is gone, kills
//!   its whole process group (sshd made it a session leader).
//! - `setpriv --pdeathsig KILL` (util-linux) in front of ssh when it is installed: a `kill -9`
//!   of `backup` then takes ssh with it, which closes the connection, which ends the remote
//!   command. SIGINT/SIGTERM need no help: the process plumbing kills ssh's group.

use crate::cancel::Cancel;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use custos_kit::config::Invalid;

use super::process::{run_check, run_output, ChildStream, Credentials, Verdict};
use super::SourceError;

/// The remote `sh` script every command runs in (`$@` is the command): a watcher polls the
/// sshd session process (`$PPID`) and kills the process group once it is gone; the
/// command's exit status is the wrapper's.
pub const WRAPPER: &str = "p=$PPID; \
(while kill -0 \"$p\" 2>/dev/null || ps -p \"$p\" >/dev/null 2>&1; do sleep 1; done; kill -KILL 0) \
</dev/null >/dev/null 2>&1 & w=$!; \"$@\"; s=$?; kill \"$w\" 2>/dev/null; exit \"$s\"";

/// Declares the config of an SSH source type: the keys every SSH source has (`sshhost`,
/// `sshuser`, custos `sshport`, `sshidentity`, `ssh_command`) and the type's own fields.
/// One declaration instead of the same five keys copied into each type (serde's `flatten`
/// would hide unknown keys from the loader's warnings).
macro_rules! ssh_source_config {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* pub $field:ident: $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            /// `sshhost`: a host name, an address or a `~/.ssh/config` alias.
            pub sshhost: String,
            /// `sshuser` (absent: ssh's choice, `User` in ssh_config or the local user).
            #[serde(default)]
            pub sshuser: Option<String>,
            /// custos `sshport` (absent: ssh's choice, `Port` in ssh_config or 22).
            #[serde(default, deserialize_with = "custos_kit::config::values::port")]
            pub sshport: Option<u16>,
            /// custos `sshidentity`: the private key file (`ssh -i`, only that key offered).
            #[serde(default)]
            pub sshidentity: Option<std::path::PathBuf>,
            /// custos `ssh_command`: the ssh program and options, an argv list (default
            /// `["ssh"]`), e.g. `["ssh", "-F", "/etc/custos/ssh_config"]`.
            #[serde(default, deserialize_with = "custos_kit::config::values::words")]
            pub ssh_command: Vec<String>,
            $($(#[$fmeta])* pub $field: $ty,)*
        }

        impl $name {
            /// Where and how to connect.
            pub fn ssh(&self) -> $crate::source::ssh::SshTarget {
                $crate::source::ssh::SshTarget {
                    host: self.sshhost.clone(),
                    user: self.sshuser.clone(),
                    port: self.sshport,
                    identity: self.sshidentity.clone(),
                    ssh_command: self.ssh_command.clone(),
                }
            }
        }
    };
}
pub(crate) use ssh_source_config;

/// Where and how a source connects: the SSH keys of its config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    pub host: String,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub identity: Option<PathBuf>,
    pub ssh_command: Vec<String>,
}

/// A host or user name ssh would read as an option, or that holds a space or a control
/// character (ssh_config tokens cannot), is a mistake in the config.
fn name_ok(v: &str) -> bool {
    !v.is_empty() && !v.starts_with('-') && !v.chars().any(|c| c.is_whitespace() || c.is_control())
}

impl SshTarget {
    /// The SSH keys' own checks.
    pub fn validate(&self) -> Result<(), Invalid> {
        if !name_ok(&self.host) {
            return Err(Invalid::new(
                "sshhost",
                &self.host,
                "must be a host name, address or ssh_config alias (no spaces, not starting with '-')",
            ));
        }
        if let Some(u) = &self.user {
            if !name_ok(u) || u.contains('@') {
                return Err(Invalid::new(
                    "sshuser",
                    u,
                    "must be a user name (no spaces or '@', not starting with '-')",
                ));
            }
        }
        if let Some(i) = &self.identity {
            if i.as_os_str().is_empty() {
                return Err(Invalid::new("sshidentity", "", "must not be empty"));
            }
        }
        if let Some(first) = self.ssh_command.first() {
            if first.starts_with('-') {
                return Err(Invalid::new(
                    "ssh_command",
                    first,
                    "must start with the ssh program, e.g. [\"ssh\", \"-F\", \"FILE\"]",
                ));
            }
        }
        let joined = self
            .ssh_command
            .join(" ")
            .to_ascii_lowercase()
            .replace('=', " ");
        let words: Vec<&str> = joined.split_whitespace().collect();
        if let Some(w) = words
            .windows(2)
            .find(|w| w[0].ends_with("stricthostkeychecking") && matches!(w[1], "no" | "off"))
        {
            return Err(Invalid::new(
                "ssh_command",
                format!("{} {}", w[0], w[1]),
                "custos keeps host-key checking on; add the host's key to known_hosts instead",
            ));
        }
        Ok(())
    }

    /// `user@host` (or `host`), as ssh's destination argument.
    pub fn destination(&self) -> String {
        match &self.user {
            Some(u) => format!("{u}@{}", self.host),
            None => self.host.clone(),
        }
    }

    /// How messages name the connection: `user@host` and the port when set.
    pub fn display(&self) -> String {
        match self.port {
            Some(p) => format!("{} port {p}", self.destination()),
            None => self.destination(),
        }
    }

    /// The local command running `remote` (program and arguments, each quoted) on the host.
    pub fn command(&self, remote: &[OsString]) -> Command {
        let (program, options) = match self.ssh_command.split_first() {
            Some((p, rest)) => (p.as_str(), rest),
            None => ("ssh", &[][..]),
        };
        let mut cmd = match setpriv() {
            Some(setpriv) => {
                let mut c = Command::new(setpriv);
                c.args(["--pdeathsig", "KILL", "--", program]);
                c
            }
            None => Command::new(program),
        };
        cmd.args(options);
        // -T: no terminal (binary stdout); -a/-x: no agent or X11 forwarding to a host
        // that only has to stream data back.
        cmd.args(["-o", "BatchMode=yes", "-T", "-a", "-x"]);
        if let Some(p) = self.port {
            cmd.arg("-p").arg(p.to_string());
        }
        if let Some(i) = &self.identity {
            cmd.arg("-i").arg(i).args(["-o", "IdentitiesOnly=yes"]);
        }
        cmd.arg("--")
            .arg(self.destination())
            .arg(remote_command(remote));
        cmd
    }

    /// How messages name `what` (`tar`, `mysqldump`) run over this connection.
    fn what(&self, what: &str) -> String {
        format!("{what} over ssh to {}", self.display())
    }

    /// Starts `remote` on the host, its stdout the stream; `credentials` become its stdin.
    pub fn stream(
        &self,
        what: &str,
        remote: &[OsString],
        classify: fn(i32) -> Verdict,
        credentials: Option<Credentials>,
        cancel: Cancel,
    ) -> Result<ChildStream, SourceError> {
        let cmd = self.command(remote);
        tracing::debug!(host = %self.display(), remote = %String::from_utf8_lossy(remote_command(remote).as_bytes()), "starting over ssh");
        // ssh's own failures (no connection, host key or login refused) exit 255, which every
        // verdict the SSH sources use counts as failed.
        ChildStream::spawn(&self.what(what), cmd, classify, credentials, cancel)
    }

    /// Runs `remote` on the host to its end and returns its stdout (at most `max` bytes).
    pub fn output(
        &self,
        what: &str,
        remote: &[OsString],
        max: usize,
        cancel: Cancel,
    ) -> Result<Vec<u8>, SourceError> {
        run_output(&self.what(what), self.command(remote), max, cancel)
    }

    /// Runs `remote` on the host to its end, for a check (`--dry-run`) or a step whose
    /// output nobody reads (`lvcreate`).
    pub fn check(
        &self,
        what: &str,
        remote: &[OsString],
        credentials: Option<Credentials>,
        cancel: Cancel,
    ) -> Result<(), SourceError> {
        run_check(&self.what(what), self.command(remote), credentials, cancel)
    }
}

/// `setpriv` when installed (util-linux, essential on Debian), looked up once.
fn setpriv() -> Option<&'static Path> {
    static FOUND: OnceLock<Option<PathBuf>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            let path = std::env::var_os("PATH")?;
            std::env::split_paths(&path)
                .map(|d| d.join("setpriv"))
                .find(|p| p.is_file())
        })
        .as_deref()
}

/// Quotes one word for a POSIX shell: `'...'`, each `'` written `'\''`. Inside single
/// quotes nothing is special, so the word reaches the program unchanged.
pub fn quote(word: &OsStr) -> OsString {
    let mut out = Vec::with_capacity(word.len() + 2);
    out.push(b'\'');
    for &b in word.as_bytes() {
        if b == b'\'' {
            out.extend_from_slice(b"'\\''");
        } else {
            out.push(b);
        }
    }
    out.push(b'\'');
    OsString::from_vec(out)
}

/// The one string ssh sends: `exec /bin/sh -c '<WRAPPER>' custos-ssh 'word'...`, read by the
/// remote login shell (which must be POSIX-like: sh, bash, dash, zsh, ksh).
pub fn remote_command(words: &[OsString]) -> OsString {
    let mut s = OsString::from("exec /bin/sh -c ");
    s.push(quote(OsStr::new(WRAPPER)));
    s.push(" custos-ssh");
    for w in words {
        s.push(" ");
        s.push(quote(w));
    }
    s
}

/// Words from strings, for remote commands.
pub fn words<I, S>(items: I) -> Vec<OsString>
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    items.into_iter().map(Into::into).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::process::describe;

    fn target() -> SshTarget {
        SshTarget {
            host: "db1.example.org".into(),
            user: Some("backups".into()),
            port: None,
            identity: None,
            ssh_command: vec![],
        }
    }

    /// What `sh -c STRING` makes of the remote string: the argv the remote program gets.
    fn remote_argv(words: &[OsString]) -> Vec<Vec<u8>> {
        let dir = tempfile::tempdir().unwrap();
        // Stand in for the wrapper's "$@": print each argument NUL-terminated.
        let probe = dir.path().join("probe");
        std::fs::write(
            &probe,
            "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\0' \"$a\"; done\n",
        )
        .unwrap();
        std::fs::set_permissions(&probe, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let mut all = vec![probe.into_os_string()];
        all.extend(words.iter().cloned());
        let out = Command::new("sh")
            .arg("-c")
            .arg(remote_command(&all))
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        out.stdout
            .split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .map(<[u8]>::to_vec)
            .collect()
    }

    /// Hostile words reach the remote program byte for byte, and nothing in them runs: the
    /// string the remote login shell parses is run here by a real `sh`.
    #[test]
    fn remote_words_are_data_not_code() {
        let dir = tempfile::tempdir().unwrap();
        let pwned = dir.path().join("pwned");
        let hostile: Vec<OsString> = vec![
            "a path/with  spaces".into(),
            "$(id)".into(),
            format!("a;touch {}", pwned.display()).into(),
            format!("`touch {}`", pwned.display()).into(),
            "it's \"quoted\" \\ back".into(),
            "new\nline".into(),
            "*".into(),
            OsString::from_vec(b"\xff\xfe non-utf8".to_vec()),
            "".into(),
        ];
        let got = remote_argv(&hostile);
        let want: Vec<Vec<u8>> = hostile
            .iter()
            .filter(|w| !w.is_empty())
            .map(|w| w.as_bytes().to_vec())
            .collect();
        assert_eq!(got, want);
        assert!(!pwned.exists(), "a remote word ran as code");
    }

    #[test]
    fn command_is_batch_with_double_dash_before_the_destination() {
        let mut t = target();
        let line = describe(&t.command(&words(["tar", "--version"])));
        let ssh_part = line.split_once("ssh ").map(|(_, r)| r).unwrap_or(&line);
        assert!(
            ssh_part.starts_with(
                "-o BatchMode=yes -T -a -x -- backups@db1.example.org exec /bin/sh -c "
            ),
            "{line}"
        );
        assert!(line.ends_with(" custos-ssh 'tar' '--version'"), "{line}");
        assert!(!line.to_ascii_lowercase().contains("stricthostkeychecking"));

        t.port = Some(2222);
        t.identity = Some("/etc/custos/id_ed25519".into());
        t.ssh_command = vec!["ssh".into(), "-F".into(), "/etc/custos/ssh_config".into()];
        t.user = None;
        let line = describe(&t.command(&words(["true"])));
        assert!(
            line.contains(
                "ssh -F /etc/custos/ssh_config -o BatchMode=yes -T -a -x -p 2222 \
                 -i /etc/custos/id_ed25519 -o IdentitiesOnly=yes -- db1.example.org exec"
            ),
            "{line}"
        );
    }

    #[test]
    fn ssh_dies_with_backup_when_setpriv_is_installed() {
        let line = describe(&target().command(&words(["true"])));
        if setpriv().is_some() {
            assert!(line.contains("setpriv --pdeathsig KILL -- ssh "), "{line}");
        } else {
            eprintln!("SKIP: no setpriv here (util-linux)");
        }
    }

    #[test]
    fn validate_refuses_option_like_names_and_disabled_host_key_checks() {
        target().validate().unwrap();
        for (host, user) in [("-oProxyCommand=x", None), ("a b", None), ("", None)] {
            let mut t = target();
            t.host = host.into();
            t.user = user;
            assert_eq!(t.validate().unwrap_err().key, "sshhost", "{host:?}");
        }
        for user in ["-l", "a@b", "a b"] {
            let mut t = target();
            t.user = Some(user.into());
            assert_eq!(t.validate().unwrap_err().key, "sshuser", "{user:?}");
        }
        for cmd in [
            &["ssh", "-o", "StrictHostKeyChecking=no"][..],
            &["ssh", "-oStrictHostKeyChecking no"],
            &["ssh", "-o", "stricthostkeychecking", "off"],
        ] {
            let mut t = target();
            t.ssh_command = cmd.iter().map(|s| s.to_string()).collect();
            let e = t.validate().unwrap_err();
            assert_eq!(e.key, "ssh_command", "{cmd:?}");
            assert!(e.reason.contains("host-key checking"), "{e:?}");
        }
        let mut t = target();
        t.ssh_command = vec![
            "ssh".into(),
            "-o".into(),
            "StrictHostKeyChecking=yes".into(),
        ];
        t.validate().unwrap();
        t.ssh_command = vec!["-F".into()];
        assert_eq!(t.validate().unwrap_err().key, "ssh_command");
    }
}
