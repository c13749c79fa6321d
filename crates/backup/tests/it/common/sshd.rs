//! A real OpenSSH server per test (scripts/sshd-test-server.sh: 127.0.0.1, a free port, its
//! own host key, key login for the throwaway user `custos-ssh`), stopped and removed when
//! dropped, and what a job needs to reach it.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{listens_or_ends, read_line, repo_root, run_ok, services_required};

/// The `Host` alias the script's ssh_config defines (port, user; key and known_hosts for
/// every host).
pub const ALIAS: &str = "custos-sshd-test";

/// One sshd; its listener is the child (the script execs sshd).
pub struct Sshd {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
    pub user: String,
    pub identity: PathBuf,
    pub known_hosts: PathBuf,
    pub config: PathBuf,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // The listener only: sessions end with their clients.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let end = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Starts sshd through the project's script; `None` (after a loud SKIP) when it is missing.
/// The script picks a free port that sshd binds a moment later; if another program took it
/// in between, sshd exits: start another.
pub fn sshd(test: &str) -> Option<Sshd> {
    for _ in 0..5 {
        let mut s = start(test)?;
        if listens_or_ends(&mut s.child, s.port, "sshd") {
            return Some(s);
        }
    }
    panic!("{test}: sshd ended five times before listening");
}

/// One start of the script, its `key=value` lines read.
fn start(test: &str) -> Option<Sshd> {
    let mut child = Command::new("bash")
        .arg(repo_root().join("scripts/sshd-test-server.sh"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sshd-test-server.sh");
    let mut out = child.stdout.take().expect("stdout");
    let first = read_line(&mut out);
    let Some(port) = first.strip_prefix("port=").and_then(|p| p.parse().ok()) else {
        let status = child.wait().expect("wait");
        let msg = format!("{test}: sshd not available ({status}); apt-get install openssh-server");
        if status.code() == Some(3) && !services_required() {
            eprintln!("SKIP: {msg}");
            return None;
        }
        panic!("{msg}");
    };
    let mut next = |key: &str| {
        let line = read_line(&mut out);
        line.strip_prefix(&format!("{key}="))
            .unwrap_or_else(|| panic!("sshd-test-server.sh: expected {key}=, got {line:?}"))
            .to_owned()
    };
    let dir = PathBuf::from(next("dir"));
    let user = next("user");
    let identity = PathBuf::from(next("identity"));
    let known_hosts = PathBuf::from(next("known_hosts"));
    let config = PathBuf::from(next("config"));
    Some(Sshd {
        child,
        port,
        dir,
        user,
        identity,
        known_hosts,
        config,
    })
}

impl Sshd {
    /// `ssh_command` for a job: ssh with this server's ssh_config (its known_hosts and key).
    pub fn ssh_command(&self) -> Value {
        json!(["ssh", "-F", self.config])
    }

    /// The SSH keys of a source reaching this server by address, port, user and key.
    pub fn keys(&self) -> serde_json::Map<String, Value> {
        let Value::Object(m) = json!({
            "sshhost": "127.0.0.1", "sshuser": self.user, "sshport": self.port,
            "sshidentity": self.identity, "ssh_command": self.ssh_command(),
        }) else {
            unreachable!("an object")
        };
        m
    }

    /// Lets the login user read and write `tree` (owner), and pass through its parents up to
    /// `/tmp` (a tempdir is 0700).
    pub fn hand_over(&self, tree: &Path) {
        run_ok(Command::new("chown").arg("-R").arg(&self.user).arg(tree));
        let mut p = tree.parent();
        while let Some(dir) = p.filter(|d| *d != Path::new("/tmp") && *d != Path::new("/")) {
            let mode = fs::metadata(dir).expect("stat").permissions().mode();
            fs::set_permissions(dir, fs::Permissions::from_mode(mode | 0o711)).expect("chmod");
            p = dir.parent();
        }
    }

    /// Runs `remote` (one shell string) as the login user, for test setup and checks.
    pub fn run(&self, remote: &str) -> std::process::Output {
        run_ok(Command::new("ssh").arg("-F").arg(&self.config).args([
            "-o",
            "BatchMode=yes",
            "--",
            ALIAS,
            remote,
        ]))
    }
}
