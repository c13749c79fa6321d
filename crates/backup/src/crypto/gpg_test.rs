//! A throw-away gpg home for tests that run the real `gpg`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A temporary GNUPGHOME; its agent is stopped on drop.
pub(crate) struct GpgHome {
    dir: tempfile::TempDir,
}

impl GpgHome {
    /// `None` (after a loud SKIP) when gpg is missing, unless CUSTOS_REQUIRE_SERVICES=1.
    pub(crate) fn new() -> Option<Self> {
        let found = Command::new("gpg")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            assert!(
                std::env::var("CUSTOS_REQUIRE_SERVICES").as_deref() != Ok("1"),
                "gpg is required (CUSTOS_REQUIRE_SERVICES=1) but not installed"
            );
            eprintln!("SKIP: gpg not installed");
            return None;
        }
        // Short path: the agent's socket lives in it.
        let dir = tempfile::Builder::new()
            .prefix("gpgh")
            .tempdir_in("/tmp")
            .expect("tempdir");
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .expect("chmod");
        Some(Self { dir })
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs gpg in this home with `stdin` (passphrases go here, never in argv).
    pub(crate) fn run(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut child = Command::new("gpg")
            .env("GNUPGHOME", self.path())
            .args(["--batch", "--no-tty", "--quiet"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn gpg");
        let mut input = child.stdin.take().expect("stdin");
        let data = stdin.to_vec();
        let feeder = std::thread::spawn(move || {
            let _ = input.write_all(&data);
        });
        let out = child.wait_with_output().expect("gpg output");
        let _ = feeder.join();
        out
    }

    /// Like [`GpgHome::run`], asserting success.
    pub(crate) fn ok(&self, args: &[&str], stdin: &[u8]) -> Vec<u8> {
        let out = self.run(args, stdin);
        assert!(
            out.status.success(),
            "gpg {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// `gpg --decrypt FILE` with `passphrase` (loopback pinentry), asserting success.
    pub(crate) fn decrypt_with_passphrase(&self, file: &Path, passphrase: &str) -> Vec<u8> {
        let args = [
            "--pinentry-mode",
            "loopback",
            "--passphrase-fd",
            "0",
            "--decrypt",
        ];
        self.with_passphrase(&args, file, passphrase)
    }

    /// `data` encrypted as the original tool did: `gpg --passphrase-fd 0 -c` (gpg 2.2
    /// defaults: AES256, S2K SHA-1 iterated+salted, ZLIB inside).
    pub(crate) fn encrypt_like_original(&self, data: &[u8], passphrase: &str) -> Vec<u8> {
        let plain = self.file("plain-for-gpg-c", data);
        let args = [
            "--pinentry-mode",
            "loopback",
            "--passphrase-fd",
            "0",
            "-c",
            "-o",
            "-",
        ];
        self.with_passphrase(&args, &plain, passphrase)
    }

    fn with_passphrase(&self, args: &[&str], file: &Path, passphrase: &str) -> Vec<u8> {
        let mut all = args.to_vec();
        all.push(file.to_str().expect("utf8 path"));
        self.ok(&all, format!("{passphrase}\n").as_bytes())
    }

    /// Creates an unprotected key (ed25519 + cv25519, gpg's default) for `uid`.
    pub(crate) fn generate_key(&self, uid: &str) {
        self.ok(
            &[
                "--pinentry-mode",
                "loopback",
                "--passphrase-fd",
                "0",
                "--quick-gen-key",
                uid,
                "default",
                "default",
                "never",
            ],
            b"\n",
        );
    }

    /// Writes `data` to a file in the home and returns its path.
    pub(crate) fn file(&self, name: &str, data: &[u8]) -> PathBuf {
        let p = self.path().join(name);
        std::fs::write(&p, data).expect("write");
        p
    }
}

impl Drop for GpgHome {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.path())
            .args(["--kill", "all"])
            .status();
    }
}
