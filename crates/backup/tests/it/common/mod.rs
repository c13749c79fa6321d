//! Shared helpers for the `backup` integration tests: run the real binary with a deadline,
//! write job files, start the real database services through `scripts/`, drive real `gpg`,
//! `tar` and `zstd`, and compare directory trees (content, kinds, modes, owners, symlink
//! targets, hard links, sparse files).
//!
//! Every wait has a deadline; nothing sleeps a fixed time hoping something happened.

#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub mod gcs;
pub mod moto;
pub mod notify;
pub mod receiver;
pub mod saas;
pub mod sshd;
pub mod stall;

/// Default deadline for one `backup` invocation in tests.
pub const RUN_DEADLINE: Duration = Duration::from_secs(120);

/// The passphrase used by most jobs. Distinctive, so leaks are easy to grep for.
pub const PASSPHRASE: &str = "Pp-9zVt4-custos-passphrase";

/// The real binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_backup"))
}

/// The workspace root (for `scripts/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// True when CI demands that every real service be present (a missing one fails the test).
pub fn services_required() -> bool {
    std::env::var("CUSTOS_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// Skips (returns `false` after a loud message) or fails, when a tool is missing.
pub fn require_tools(test: &str, tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| which(t).is_none())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let msg = format!("{test}: missing tool(s) {missing:?} (Debian: gnupg, zstd, tar, mariadb-client, postgresql-client-15)");
    if services_required() {
        panic!("CUSTOS_REQUIRE_SERVICES=1 but {msg}");
    }
    eprintln!("SKIP: {msg}");
    false
}

/// `which`: the first executable named `name` on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

// ------------------------------------------------------------------------------------------
// Running processes with deadlines

/// Output of one `backup` run, with text views for assertions.
#[derive(Debug)]
pub struct Run {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl From<Output> for Run {
    /// The outcome of a `backup` started by hand (to signal it, or under a wrapper).
    fn from(out: Output) -> Run {
        Run {
            status: out.status,
            stdout: out.stdout,
            stderr: out.stderr,
        }
    }
}

impl Run {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
    /// stdout + stderr, for "the message names X" assertions that do not care which stream.
    pub fn all_text(&self) -> String {
        format!("{}{}", self.stdout_text(), self.stderr_text())
    }
    /// A one-screen description for assertion messages.
    pub fn describe(&self) -> String {
        let cut = |s: String| {
            if s.len() > 6000 {
                format!("...{}", &s[s.len() - 6000..])
            } else {
                s
            }
        };
        format!(
            "exit: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status,
            cut(self.stdout_text()),
            cut(self.stderr_text())
        )
    }
    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code(),
            Some(code),
            "expected exit code {code}\n{}",
            self.describe()
        );
        self
    }
}

/// Waits for `child` until `deadline`; kills it (and fails) when the deadline passes.
pub fn wait_with_deadline(mut child: Child, deadline: Duration, what: &str) -> Output {
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(mut s) = stdout {
            let _ = s.read_to_end(&mut v);
        }
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(mut s) = stderr {
            let _ = s.read_to_end(&mut v);
        }
        v
    });
    let end = Instant::now() + deadline;
    let status = loop {
        match child.try_wait().expect("try_wait") {
            Some(st) => break st,
            None if Instant::now() >= end => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{what}: still running after {deadline:?}: killed");
            }
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    };
    Output {
        status,
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
    }
}

/// Runs the `backup` binary with `args`, no stdin, a deadline, and a clean environment for
/// the variables that change its behaviour (no terminal: structured log lines).
pub fn backup<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    backup_with(args, &[], None)
}

/// Like [`backup`], with extra environment variables and optional stdin bytes.
pub fn backup_with<I, S>(args: I, env: &[(&str, &OsStr)], stdin: Option<Vec<u8>>) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let mut cmd = Command::new(bin());
    cmd.args(&args)
        .env_remove("RUST_LOG")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn backup");
    if let Some(bytes) = stdin {
        let mut si = child.stdin.take().expect("stdin");
        std::thread::spawn(move || {
            let _ = si.write_all(&bytes);
        });
    }
    let out = wait_with_deadline(child, RUN_DEADLINE, &format!("backup {args:?}"));
    Run {
        status: out.status,
        stdout: out.stdout,
        stderr: out.stderr,
    }
}

/// `backup CFG`: one scheduled-style run of every source in the job.
pub fn run_job(cfg: &Path) -> Run {
    backup([cfg])
}

/// `backup verify CFG`.
pub fn verify(cfg: &Path) -> Run {
    backup(["verify".as_ref(), cfg.as_os_str()])
}

/// `backup list CFG`.
pub fn list(cfg: &Path) -> Run {
    backup(["list".as_ref(), cfg.as_os_str()])
}

/// `backup restore CFG --source SOURCE --to TARGET` (`TARGET` `-` streams to stdout).
pub fn restore_to(cfg: &Path, source: &str, target: &Path) -> Run {
    restore_with(cfg, source, &[], target)
}

/// `backup restore CFG --source SOURCE EXTRA... --to TARGET`, for `--at`, `--destination`,
/// `--key`.
pub fn restore_with(cfg: &Path, source: &str, extra: &[&OsStr], target: &Path) -> Run {
    restore_with_env(cfg, source, extra, target, &[])
}

/// [`restore_with`] with extra environment variables.
pub fn restore_with_env(
    cfg: &Path,
    source: &str,
    extra: &[&OsStr],
    target: &Path,
    env: &[(&str, &OsStr)],
) -> Run {
    let mut args: Vec<&OsStr> = vec![
        "restore".as_ref(),
        cfg.as_os_str(),
        "--source".as_ref(),
        source.as_ref(),
    ];
    args.extend_from_slice(extra);
    args.extend(["--to".as_ref(), target.as_os_str()]);
    backup_with(args, env, None)
}

/// Runs any command to completion with a deadline; panics with its output if it fails.
#[track_caller]
pub fn run_ok(cmd: &mut Command) -> Output {
    let what = format!("{cmd:?}");
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let out = wait_with_deadline(child, RUN_DEADLINE, &what);
    assert!(
        out.status.success(),
        "{what} failed: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `bash -c SCRIPT` with pipefail and a deadline; panics on failure. For pipelines of real
/// tools.
#[track_caller]
pub fn sh(script: &str) -> Output {
    run_ok(
        Command::new("bash")
            .arg("-c")
            .arg(format!("set -o pipefail; {script}")),
    )
}

/// Polls `cond` until it is true or `deadline` passes (then panics with `what`).
#[track_caller]
pub fn wait_until(deadline: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while !cond() {
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

// ------------------------------------------------------------------------------------------
// Job files

/// A job under construction: sources and destinations as JSON, written to `dir/job.json`.
pub struct Job {
    pub dir: PathBuf,
    pub root: serde_json::Map<String, Value>,
}

impl Job {
    /// A job whose files live in `dir` (config, default tmpdir).
    pub fn new(dir: &Path) -> Self {
        let tmp = dir.join("jobtmp");
        fs::create_dir_all(&tmp).expect("tmpdir");
        let mut root = serde_json::Map::new();
        root.insert("hostname".into(), json!("testhost"));
        root.insert("tmpdir".into(), json!(tmp));
        root.insert("modules".into(), json!([]));
        root.insert("sources".into(), json!([]));
        root.insert("destinations".into(), json!([]));
        root.insert("notifications".into(), json!([]));
        // `verify` records results here for `status` (not in the machine's /var/lib).
        root.insert("state_dir".into(), json!(dir.join("state")));
        Job {
            dir: dir.to_owned(),
            root,
        }
    }

    pub fn tmpdir(&self) -> PathBuf {
        self.dir.join("jobtmp")
    }

    pub fn source(&mut self, v: Value) -> &mut Self {
        self.root["sources"].as_array_mut().expect("array").push(v);
        self
    }

    pub fn destination(&mut self, v: Value) -> &mut Self {
        self.root["destinations"]
            .as_array_mut()
            .expect("array")
            .push(v);
        self
    }

    pub fn set(&mut self, key: &str, v: Value) -> &mut Self {
        self.root.insert(key.into(), v);
        self
    }

    /// Writes the job (mode 0600, as an operator would) and returns its path.
    pub fn write(&self) -> PathBuf {
        self.write_as("job.json")
    }

    pub fn write_as(&self, name: &str) -> PathBuf {
        let p = self.dir.join(name);
        let text = serde_json::to_string_pretty(&Value::Object(self.root.clone())).expect("json");
        write_private(&p, text.as_bytes());
        p
    }
}

/// Writes a file readable only by its owner.
pub fn write_private(p: &Path, bytes: &[u8]) {
    fs::write(p, bytes).expect("write file");
    fs::set_permissions(p, fs::Permissions::from_mode(0o600)).expect("chmod 600");
}

/// A folder source entry with a passphrase.
pub fn folder_source(id: &str, path: &Path) -> Value {
    json!({"id": id, "name": format!("folder {id}"), "type": "folder", "path": path, "passphrase": PASSPHRASE})
}

/// A local destination entry; creates the directory (custos refuses a missing destination
/// root: it may be an unmounted disk).
pub fn local_destination(id: &str, path: &Path) -> Value {
    let _ = fs::create_dir_all(path);
    json!({"id": id, "type": "local", "path": path})
}

// ------------------------------------------------------------------------------------------
// Objects in a local destination

/// Every regular file under `root`, relative, sorted (objects, sidecars, temp files).
pub fn files_under(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(m) = fs::symlink_metadata(&p) else {
                continue;
            };
            if m.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(
                    p.strip_prefix(base)
                        .expect("prefix")
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    walk(root, root, &mut out);
    out.sort();
    out
}

/// The objects (no sidecars, no hidden/partial files) for source `id` under a local
/// destination, oldest first.
pub fn objects(dest: &Path, id: &str) -> Vec<PathBuf> {
    files_under(&dest.join(id))
        .into_iter()
        .filter(|f| {
            let name = f.rsplit('/').next().unwrap_or(f);
            !name.starts_with('.') && !name.ends_with(".sha256")
        })
        .map(|f| dest.join(id).join(f))
        .collect()
}

/// The single object for `id`, asserting there is exactly one.
#[track_caller]
pub fn only_object(dest: &Path, id: &str) -> PathBuf {
    let o = objects(dest, id);
    assert_eq!(
        o.len(),
        1,
        "expected one object for {id} under {}: {:?}\nall files: {:?}",
        dest.display(),
        o,
        files_under(dest)
    );
    o.into_iter().next().expect("one")
}

// ------------------------------------------------------------------------------------------
// gpg

/// A throw-away GNUPGHOME; kills its agent when dropped.
pub struct GnupgHome {
    pub dir: tempfile::TempDir,
}

impl GnupgHome {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("gh")
            .tempdir_in("/tmp")
            .expect("gnupghome");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).expect("chmod");
        GnupgHome { dir }
    }
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    /// A `gpg --batch` command in this home.
    pub fn gpg(&self) -> Command {
        let mut c = Command::new("gpg");
        c.env("GNUPGHOME", self.path())
            .args(["--batch", "--no-tty", "--quiet"]);
        c
    }
    /// Generates a key without passphrase for `uid` (e.g. `Test <t@example.org>`).
    pub fn gen_key(&self, uid: &str) {
        run_ok(self.gpg().args([
            "--passphrase",
            "",
            "--quick-gen-key",
            uid,
            "default",
            "default",
            "never",
        ]));
    }
    /// Exports the public key(s) of `uid` to `file` (binary).
    pub fn export_public(&self, uid: &str, file: &Path) {
        let out = run_ok(self.gpg().args(["--export", uid]));
        assert!(!out.stdout.is_empty(), "gpg --export {uid} gave nothing");
        fs::write(file, out.stdout).expect("write keyring");
    }
    /// Exports the secret key(s) of `uid` to `file`, armored.
    pub fn export_secret(&self, uid: &str, file: &Path) {
        let out = run_ok(self.gpg().args([
            "--armor",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
            "--export-secret-keys",
            uid,
        ]));
        assert!(
            !out.stdout.is_empty(),
            "gpg --export-secret-keys {uid} gave nothing"
        );
        write_private(file, &out.stdout);
    }
}

impl Drop for GnupgHome {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.path())
            .args(["--kill", "gpg-agent"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Decrypts `object` with real gpg and the passphrase on fd 0, returning the plaintext.
pub fn gpg_decrypt_passphrase(home: &GnupgHome, object: &Path, passphrase: &str) -> Vec<u8> {
    let out_file = home.path().join("plain.out");
    let _ = fs::remove_file(&out_file);
    let mut child = home
        .gpg()
        .args([
            "--pinentry-mode",
            "loopback",
            "--passphrase-fd",
            "0",
            "--output",
        ])
        .arg(&out_file)
        .arg("--decrypt")
        .arg(object)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn gpg");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{passphrase}\n").as_bytes())
        .expect("passphrase to gpg");
    let out = wait_with_deadline(child, RUN_DEADLINE, "gpg --decrypt");
    assert!(
        out.status.success(),
        "gpg --decrypt {} failed: {}",
        object.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    fs::read(&out_file).expect("gpg output")
}

// ------------------------------------------------------------------------------------------
// Real database services

/// Connection settings of scripts/backup-test-services.sh, as its `start` reports them (the
/// ports are the free ones it found).
#[derive(Debug, Clone)]
pub struct Services {
    pub host: String,
    pub mysql_port: u16,
    pub pgsql_port: u16,
    pub user: String,
    pub pass: String,
    pub db: String,
    pub db2: String,
}

/// Starts MariaDB and PostgreSQL through the repo's script (once per test binary).
/// `None` (after a loud SKIP) when a service binary is missing and CI did not demand it.
pub fn services(test: &str) -> Option<Services> {
    static STARTED: OnceLock<Result<Services, String>> = OnceLock::new();
    let r = STARTED.get_or_init(|| {
        let script = repo_root().join("scripts/backup-test-services.sh");
        let child = Command::new("bash")
            .arg(&script)
            .arg("start")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        let out = wait_with_deadline(
            child,
            Duration::from_secs(300),
            "backup-test-services.sh start",
        );
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        match out.status.code() {
            Some(0) => {}
            Some(3) => return Err(format!("service binary missing: {}", text.trim())),
            _ => panic!(
                "scripts/backup-test-services.sh start failed ({:?}):\n{text}",
                out.status
            ),
        }
        let vars: BTreeMap<String, String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
            .collect();
        let get = |k: &str| {
            vars.get(k).cloned().unwrap_or_else(|| {
                panic!(
                    "{k} missing from what `{} start` printed:\n{text}",
                    script.display()
                )
            })
        };
        Ok(Services {
            host: get("CUSTOS_DB_HOST"),
            mysql_port: get("CUSTOS_MYSQL_PORT").parse().expect("port"),
            pgsql_port: get("CUSTOS_PGSQL_PORT").parse().expect("port"),
            user: get("CUSTOS_DB_USER"),
            pass: get("CUSTOS_DB_PASS"),
            db: get("CUSTOS_DB_NAME"),
            db2: get("CUSTOS_DB_NAME2"),
        })
    });
    match r {
        Ok(s) => Some(s.clone()),
        Err(msg) if services_required() => panic!("CUSTOS_REQUIRE_SERVICES=1 but {test}: {msg}"),
        Err(msg) => {
            eprintln!("SKIP: {test}: {msg}");
            None
        }
    }
}

impl Services {
    /// A 0600 client option file with the test credentials (never a password in argv).
    fn mysql_defaults(&self) -> PathBuf {
        static FILE: OnceLock<PathBuf> = OnceLock::new();
        FILE.get_or_init(|| {
            let p = std::env::temp_dir().join(format!("custos-test-my-{}.cnf", std::process::id()));
            write_private(
                &p,
                format!(
                    "[client]\nuser={}\npassword={}\nhost={}\nport={}\n",
                    self.user, self.pass, self.host, self.mysql_port
                )
                .as_bytes(),
            );
            p
        })
        .clone()
    }

    /// A 0600 pgpass file with the test credentials.
    fn pgpass(&self) -> PathBuf {
        static FILE: OnceLock<PathBuf> = OnceLock::new();
        FILE.get_or_init(|| {
            let p = std::env::temp_dir().join(format!("custos-test-pgpass-{}", std::process::id()));
            write_private(
                &p,
                format!(
                    "{}:{}:*:{}:{}\n",
                    self.host, self.pgsql_port, self.user, self.pass
                )
                .as_bytes(),
            );
            p
        })
        .clone()
    }

    /// `mysql` client command (batch, raw, no column names) against `db` (may be empty).
    pub fn mysql(&self, db: &str) -> Command {
        let mut c = Command::new("mysql");
        c.arg(format!(
            "--defaults-extra-file={}",
            self.mysql_defaults().display()
        ))
        .args(["--batch", "--raw", "--skip-column-names"]);
        if !db.is_empty() {
            c.arg(db);
        }
        c
    }

    /// Runs SQL on MariaDB, returns stdout.
    #[track_caller]
    pub fn mysql_sql(&self, db: &str, sql: &str) -> String {
        String::from_utf8_lossy(&run_ok(self.mysql(db).arg("-e").arg(sql)).stdout).into_owned()
    }

    /// `psql` command against `db`: quiet, unaligned, tuples only, stop on error.
    pub fn psql(&self, db: &str) -> Command {
        let mut c = Command::new("psql");
        c.env("PGPASSFILE", self.pgpass())
            .env("PGOPTIONS", "-c client_min_messages=warning")
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                &self.host,
                "-p",
            ])
            .arg(self.pgsql_port.to_string())
            .args(["-U", &self.user, "-d", db]);
        c
    }

    #[track_caller]
    pub fn psql_sql(&self, db: &str, sql: &str) -> String {
        String::from_utf8_lossy(&run_ok(self.psql(db).arg("-c").arg(sql)).stdout).into_owned()
    }

    /// A job source entry for MariaDB database(s).
    pub fn mysql_source(&self, id: &str, dbname: Value) -> Value {
        json!({"id": id, "name": format!("mysql {id}"), "type": "mysql", "dbhost": self.host,
               "dbport": self.mysql_port, "dbuser": self.user, "dbpass": self.pass,
               "dbname": dbname, "passphrase": PASSPHRASE})
    }

    /// A job source entry for a PostgreSQL database.
    pub fn pgsql_source(&self, id: &str, dbname: &str) -> Value {
        json!({"id": id, "name": format!("pgsql {id}"), "type": "pgsql", "dbhost": self.host,
               "dbport": self.pgsql_port, "dbuser": self.user, "dbpass": self.pass,
               "dbname": dbname, "passphrase": PASSPHRASE})
    }
}

/// A database name unique to this test process and `tag`.
pub fn unique_db(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "ct_{tag}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

// ------------------------------------------------------------------------------------------
// Trees: build tricky ones, compare two

/// What a tree entry is, as far as a restore must reproduce it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    /// Size and a content digest (FNV over the bytes; sparse-aware for big files).
    File {
        size: u64,
        digest: u64,
    },
    Symlink(OsString),
    Fifo,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Seconds; `None` for symlinks (not every extractor sets them).
    pub mtime: Option<i64>,
    /// For regular files with nlink > 1: the lexicographically first path sharing the inode.
    pub link_group: Option<Vec<u8>>,
}

/// A snapshot of `root` keyed by relative path bytes.
pub fn snapshot(root: &Path) -> BTreeMap<Vec<u8>, Entry> {
    let mut raw: Vec<(Vec<u8>, fs::Metadata)> = Vec::new();
    fn walk(base: &Path, dir: &Path, raw: &mut Vec<(Vec<u8>, fs::Metadata)>) {
        let mut entries: Vec<_> = fs::read_dir(dir).expect("read_dir").flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let m = fs::symlink_metadata(&p).expect("lstat");
            let rel = p
                .strip_prefix(base)
                .expect("prefix")
                .as_os_str()
                .as_bytes()
                .to_vec();
            let is_dir = m.is_dir();
            raw.push((rel, m));
            if is_dir {
                walk(base, &p, raw);
            }
        }
    }
    walk(root, root, &mut raw);
    let mut first_by_inode: BTreeMap<(u64, u64), Vec<u8>> = BTreeMap::new();
    for (rel, m) in &raw {
        if m.is_file() && m.nlink() > 1 {
            first_by_inode
                .entry((m.dev(), m.ino()))
                .or_insert_with(|| rel.clone());
        }
    }
    let mut out = BTreeMap::new();
    for (rel, m) in raw {
        let p = root.join(OsStr::from_bytes(&rel));
        let ft = m.file_type();
        let kind = if ft.is_dir() {
            Kind::Dir
        } else if ft.is_symlink() {
            Kind::Symlink(fs::read_link(&p).expect("readlink").into_os_string())
        } else if ft.is_file() {
            Kind::File {
                size: m.len(),
                digest: digest_file(&p),
            }
        } else if ft.is_fifo() {
            Kind::Fifo
        } else {
            Kind::Other
        };
        let link_group = if ft.is_file() && m.nlink() > 1 {
            first_by_inode.get(&(m.dev(), m.ino())).cloned()
        } else {
            None
        };
        out.insert(
            rel,
            Entry {
                kind,
                mode: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
                mtime: if ft.is_symlink() {
                    None
                } else {
                    Some(m.mtime())
                },
                link_group,
            },
        );
    }
    out
}

/// FNV-1a 64 over the file's bytes, skipping holes (they read as zeros, and zeros are hashed
/// as runs with their length so that a sparse and a dense copy of the same bytes agree).
pub fn digest_file(p: &Path) -> u64 {
    let mut f = fs::File::open(p).expect("open");
    let len = f.metadata().expect("stat").len();
    let mut h: u64 = 0xcbf29ce484222325;
    let mut mix = |bytes: &[u8]| {
        for &b in bytes {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
    };
    let mut zeros_pending: u64 = 0;
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0u64;
    for (start, end) in data_segments(&f, len) {
        zeros_pending += start - pos;
        use std::io::{Seek, SeekFrom};
        f.seek(SeekFrom::Start(start)).expect("seek");
        let mut left = end - start;
        while left > 0 {
            let n = (left.min(buf.len() as u64)) as usize;
            f.read_exact(&mut buf[..n]).expect("read");
            // Runs of zeros inside data are folded the same way as holes.
            let mut i = 0;
            while i < n {
                if buf[i] == 0 {
                    let j = buf[i..n].iter().position(|&b| b != 0).map_or(n, |k| i + k);
                    zeros_pending += (j - i) as u64;
                    i = j;
                } else {
                    if zeros_pending > 0 {
                        mix(&zeros_pending.to_le_bytes());
                        mix(b"Z");
                        zeros_pending = 0;
                    }
                    let j = buf[i..n].iter().position(|&b| b == 0).map_or(n, |k| i + k);
                    mix(&buf[i..j]);
                    i = j;
                }
            }
            left -= n as u64;
        }
        pos = end;
    }
    zeros_pending += len - pos;
    if zeros_pending > 0 {
        mix(&zeros_pending.to_le_bytes());
        mix(b"Z");
    }
    h
}

/// Data ranges of a file (SEEK_DATA/SEEK_HOLE); the whole file if the fs cannot tell.
pub fn data_segments(f: &fs::File, len: u64) -> Vec<(u64, u64)> {
    use rustix::fs::{seek, SeekFrom};
    let mut segs = Vec::new();
    let mut off = 0u64;
    while off < len {
        let start = match seek(f, SeekFrom::Data(off)) {
            Ok(s) => s,
            Err(rustix::io::Errno::NXIO) => break,
            Err(_) => return vec![(0, len)],
        };
        let end = match seek(f, SeekFrom::Hole(start)) {
            Ok(e) => e.min(len),
            Err(_) => len,
        };
        segs.push((start, end));
        off = end;
    }
    segs
}

/// Allocated bytes of a file (st_blocks * 512).
pub fn allocated(p: &Path) -> u64 {
    fs::metadata(p).expect("stat").blocks() * 512
}

/// Describes every difference between two snapshots (empty = identical).
pub fn diff_trees(
    want: &BTreeMap<Vec<u8>, Entry>,
    got: &BTreeMap<Vec<u8>, Entry>,
    check_owner: bool,
) -> Vec<String> {
    let show = |k: &[u8]| format!("{:?}", OsStr::from_bytes(k));
    let mut d = Vec::new();
    for (k, w) in want {
        match got.get(k) {
            None => d.push(format!("missing in restore: {}", show(k))),
            Some(g) => {
                if w.kind != g.kind {
                    d.push(format!(
                        "{}: kind/content {:?} != restored {:?}",
                        show(k),
                        w.kind,
                        g.kind
                    ));
                }
                if w.mode != g.mode {
                    d.push(format!(
                        "{}: mode {:o} != restored {:o}",
                        show(k),
                        w.mode,
                        g.mode
                    ));
                }
                if check_owner && (w.uid, w.gid) != (g.uid, g.gid) {
                    d.push(format!(
                        "{}: owner {}:{} != restored {}:{}",
                        show(k),
                        w.uid,
                        w.gid,
                        g.uid,
                        g.gid
                    ));
                }
                if w.mtime != g.mtime {
                    d.push(format!(
                        "{}: mtime {:?} != restored {:?}",
                        show(k),
                        w.mtime,
                        g.mtime
                    ));
                }
                let wg = w.link_group.as_deref().map(show);
                let gg = g.link_group.as_deref().map(show);
                if wg != gg {
                    d.push(format!(
                        "{}: hard-link group {:?} != restored {:?}",
                        show(k),
                        wg,
                        gg
                    ));
                }
            }
        }
    }
    for k in got.keys() {
        if !want.contains_key(k) {
            d.push(format!("extra in restore: {}", show(k)));
        }
    }
    d
}

/// Deterministic pseudo-random bytes (xorshift; no dependency, same bytes every run).
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Builds the tricky tree under `root/<name>` and returns that folder: names with spaces,
/// newlines, non-UTF-8 bytes, a 200-byte name and a >300-byte path, symlinks (relative,
/// absolute, dangling, to a dir), hard links, empty dirs, odd modes, an empty file,
/// and a few MB of random data. (FIFOs and owners have tests of their own.)
pub fn tricky_tree(root: &Path, name: &str) -> PathBuf {
    use std::os::unix::fs::symlink;
    let top = root.join(name);
    fs::create_dir_all(&top).expect("mkdir");
    let w = |rel: &[u8], bytes: &[u8]| {
        let p = top.join(OsStr::from_bytes(rel));
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(&p, bytes).expect("write");
        p
    };
    w(b"plain.txt", b"hello\n");
    w(b"with spaces and  double  spaces.txt", b"spaces\n");
    w(b"new\nline", b"newline in name\n");
    w(b"tab\tand\\backslash", b"tab\n");
    w(b"non-utf8-\xff\xfe\x80name.bin", &pseudo_random(1000, 1));
    w("ünïcødé ✓ 日本語.txt".as_bytes(), "Grüße\n".as_bytes());
    w(b"-leading-dash", b"dash\n");
    w(b"empty-file", b"");
    w(b"random/big.bin", &pseudo_random(3 << 20, 2));
    w(
        b"random/text.txt",
        "the quick brown fox jumps over the lazy dog\n"
            .repeat(20_000)
            .as_bytes(),
    );
    let long_name = "n".repeat(200);
    w(format!("long/{long_name}").as_bytes(), b"long name\n");
    let mut deep = String::from("deep");
    while deep.len() < 320 {
        deep.push_str("/directory-level-with-a-fairly-long-name");
    }
    w(format!("{deep}/leaf.txt").as_bytes(), b"deep leaf\n");
    fs::create_dir_all(top.join("empty-dir")).expect("mkdir");
    fs::create_dir_all(top.join("nested-empty/a/b/c")).expect("mkdir");
    // Symlinks.
    symlink("plain.txt", top.join("link-relative")).expect("symlink");
    symlink("/etc/hostname", top.join("link-absolute")).expect("symlink");
    symlink("does/not/exist", top.join("link-dangling")).expect("symlink");
    symlink("random", top.join("link-to-dir")).expect("symlink");
    symlink(
        OsStr::from_bytes(b"non-utf8-\xff\xfe\x80name.bin"),
        top.join(OsStr::from_bytes(b"link-\xff")),
    )
    .expect("symlink");
    // Hard links (three names, one inode), one across directories.
    let h = w(b"hard/one", b"hard linked content\n");
    fs::hard_link(&h, top.join("hard/two")).expect("hardlink");
    fs::hard_link(&h, top.join("hard-three")).expect("hardlink");
    // Modes.
    let m = |rel: &str, mode: u32| {
        fs::set_permissions(top.join(rel), fs::Permissions::from_mode(mode)).expect("chmod")
    };
    let x = w(b"script.sh", b"#!/bin/sh\necho hi\n");
    drop(x);
    m("script.sh", 0o755);
    w(b"secret.key", b"private\n");
    m("secret.key", 0o600);
    w(b"setgid-dir/file", b"x\n");
    m("setgid-dir", 0o2750);
    w(b"readonly.txt", b"ro\n");
    m("readonly.txt", 0o444);
    m("empty-dir", 0o700);
    // Fixed mtimes, so a restore that forgets them shows up.
    for (rel, t) in [
        ("plain.txt", 1_000_000_000i64),
        ("random/big.bin", 1_234_567_890),
        ("empty-dir", 1_500_000_000),
    ] {
        set_mtime(&top.join(rel), t);
    }
    top
}

/// Sets a path's mtime (and atime) with `touch -d @T` (no libc needed).
pub fn set_mtime(p: &Path, t: i64) {
    run_ok(
        Command::new("touch")
            .arg("-h")
            .arg("-d")
            .arg(format!("@{t}"))
            .arg(p),
    );
}

/// Asserts that `restored` reproduces `original` exactly; prints every difference.
#[track_caller]
pub fn assert_same_tree(original: &Path, restored: &Path, check_owner: bool) {
    let want = snapshot(original);
    let got = snapshot(restored);
    let d = diff_trees(&want, &got, check_owner);
    assert!(
        d.is_empty(),
        "restored tree {} differs from {} ({} differences):\n  {}",
        restored.display(),
        original.display(),
        d.len(),
        d.join("\n  ")
    );
}

/// Finds the restored copy of folder `name` under a restore target: `DIR/name` (members are
/// `./name/...`), or DIR itself if the restore strips the top folder.
#[track_caller]
pub fn restored_root(target: &Path, name: &str) -> PathBuf {
    let p = target.join(name);
    if p.is_dir() {
        return p;
    }
    panic!(
        "restore into {} did not produce {name}/; it contains: {:?}",
        target.display(),
        fs::read_dir(target)
            .map(|rd| rd.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
            .unwrap_or_default()
    );
}

/// Bytes of a file listing for messages.
pub fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn os(b: &[u8]) -> OsString {
    OsString::from_vec(b.to_vec())
}

/// The `{source}/{stamp}/` folders among object names, sorted and deduplicated.
pub fn stamps(names: &[String], source: &str) -> Vec<String> {
    let mut out: Vec<String> = names
        .iter()
        .filter_map(|k| k.strip_prefix(&format!("{source}/")))
        .filter_map(|k| k.split('/').next())
        .map(str::to_owned)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Retention at a remote destination `dest` (a config entry) of a store the test reads
/// directly: a copy from 2020 (object + sidecar, written with `put`) goes with
/// `retention_days: 30`; then with `retention_copies: 2` three runs leave the newest two
/// and nothing else (`names` lists the store). `run` runs the job file given.
pub fn assert_retention_by_days_and_copies(
    dir: &Path,
    dest: Value,
    put: impl Fn(&str, &[u8]),
    names: impl Fn() -> Vec<String>,
    run: impl Fn(&Path) -> Run,
) {
    let src = dir.join("src/small");
    fs::create_dir_all(&src).expect("mkdir");
    fs::write(src.join("a.txt"), b"retention").expect("write");
    let old = "files/20200101000000/files.tar.zst.gpg";
    put(old, b"old");
    let sidecar = format!("{}  files.tar.zst.gpg\n", "0".repeat(64));
    put(&format!("{old}.sha256"), sidecar.as_bytes());

    let mut dest = dest;
    dest["retention_days"] = json!(30);
    let mut job = Job::new(dir);
    job.source(folder_source("files", &src))
        .destination(dest.clone());
    run(&job.write()).assert_code(0);
    let now = stamps(&names(), "files");
    assert_eq!(now.len(), 1, "the 2020 copy is past 30 days: {now:?}");
    assert_ne!(now[0], "20200101000000");

    dest["retention_copies"] = json!(2);
    let mut job = Job::new(dir);
    job.source(folder_source("files", &src)).destination(dest);
    let cfg = job.write();
    run(&cfg).assert_code(0);
    run(&cfg).assert_code(0);
    let all = names();
    let after = stamps(&all, "files");
    assert_eq!(after.len(), 2, "{after:?}");
    assert!(!after.contains(&now[0]), "the oldest copy went: {after:?}");
    for k in all {
        assert!(
            after.iter().any(|s| k.contains(s.as_str())),
            "left over: {k}"
        );
    }
}

/// `dir/src/big` holding `random.bin`, `len` incompressible bytes (several upload parts).
pub fn random_source(dir: &Path, len: usize, seed: u64) -> PathBuf {
    let src = dir.join("src/big");
    fs::create_dir_all(&src).expect("mkdir");
    fs::write(src.join("random.bin"), pseudo_random(len, seed)).expect("write");
    src
}

/// Starts `backup CFG` with `env`, waits (deadline 60 s) until `started` says the upload
/// has begun as wanted, then kills it with SIGKILL (`kill -9`: no cleanup runs).
pub fn kill_during_upload(cfg: &Path, env: &[(&str, &OsStr)], mut started: impl FnMut() -> bool) {
    let mut cmd = Command::new(bin());
    cmd.arg(cfg)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn backup");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if started() {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("backup ended ({status}) before the upload was under way");
        }
        assert!(Instant::now() < deadline, "the upload never got under way");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().expect("kill -9");
    let _ = child.wait();
}

/// The ports of the IPv4 sockets on 127.0.0.1 that process `pid` listens on (/proc/net/tcp
/// and the process's fds): the port a server bound to port 0 got, when it does not say, or
/// proof that a port is the server's own and not another program's.
pub fn listening_ports(pid: u32) -> Vec<u16> {
    let Ok(tcp) = fs::read_to_string("/proc/net/tcp") else {
        return Vec::new();
    };
    let owned: Vec<OsString> = fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|fd| fs::read_link(fd.path()).ok())
        .map(PathBuf::into_os_string)
        .collect();
    tcp.lines()
        .skip(1)
        .filter_map(|l| {
            // Fields: sl, local address, remote, state (0A: LISTEN), ..., inode (the 10th).
            let f: Vec<&str> = l.split_whitespace().collect();
            let port = f.get(1)?.strip_prefix("0100007F:")?;
            let socket = format!("socket:[{}]", f.get(9)?);
            (f.get(3) == Some(&"0A") && owned.iter().any(|o| o.as_os_str() == socket.as_str()))
                .then(|| u16::from_str_radix(port, 16).ok())
                .flatten()
        })
        .collect()
}

/// Waits until the server `child` listens on `port` (true), or ends first (false: another
/// program took the free port its script chose, before the server bound it: start another).
pub fn listens_or_ends(child: &mut Child, port: u16, what: &str) -> bool {
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        if listening_ports(child.id()).contains(&port) {
            return true;
        }
        if let Ok(Some(status)) = child.try_wait() {
            eprintln!("{what} on port {port} ended ({status}); starting another");
            return false;
        }
        assert!(Instant::now() < end, "{what} does not listen on {port}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Starts `backup ARGS` without waiting (for tests that signal it mid-run), no stdin, output
/// piped (read it with [`wait_with_deadline`]).
pub fn spawn_backup<I, S>(args: I) -> Child
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    spawn_backup_with(args, &[])
}

/// [`spawn_backup`] with extra environment variables (a `PATH` with stand-ins first).
pub fn spawn_backup_with<I, S>(args: I, env: &[(&str, &OsStr)]) -> Child
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn backup")
}

/// Writes `script` as the executable `dir/bin/NAME` (a stand-in for a program the binary
/// runs) and returns a PATH that finds it first.
pub fn stand_in(dir: &Path, name: &str, script: &str) -> OsString {
    let bin_dir = dir.join("bin");
    fs::create_dir_all(&bin_dir).expect("mkdir");
    let file = bin_dir.join(name);
    fs::write(&file, script).expect("write stand-in");
    fs::set_permissions(&file, fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut path = OsString::from(&bin_dir);
    path.push(":");
    path.push(std::env::var_os("PATH").unwrap_or_default());
    path
}

/// Gone, or a zombie nobody reaped yet: either way not running.
pub fn not_running(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// [`listening_ports`] names the owner's listening sockets, not whoever can connect to them.
#[test]
fn listening_ports_are_the_owners_only() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    assert!(listening_ports(std::process::id()).contains(&port));
    let mut other = Command::new("sleep").arg("30").spawn().expect("sleep");
    let theirs = listening_ports(other.id());
    let _ = other.kill();
    let _ = other.wait();
    assert!(
        !theirs.contains(&port),
        "another process counted as the listener"
    );
}

/// One line of a test server script's output (`port=N`), read a byte at a time so that
/// nothing after it is consumed: the rest of the stream stays for whoever drains it.
pub fn read_line(out: &mut impl Read) -> String {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while out.read(&mut b).unwrap_or(0) == 1 && b[0] != b'\n' {
        line.push(b[0]);
    }
    String::from_utf8_lossy(&line).into_owned()
}

/// Direct and indirect children of `pid` (from /proc/*/stat).
pub fn descendants(pid: i32) -> Vec<i32> {
    let mut parent_of = Vec::new();
    for e in fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        let ppid = after
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse::<i32>().ok())
            .unwrap_or(0);
        parent_of.push((p, ppid));
    }
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(x) = frontier.pop() {
        for &(p, pp) in &parent_of {
            if pp == x && !out.contains(&p) {
                out.push(p);
                frontier.push(p);
            }
        }
    }
    out
}
