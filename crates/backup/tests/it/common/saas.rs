//! The fake SaaS APIs (`saas_fake.py`: Backblaze B2, Dropbox, Google Drive and Google's
//! token endpoint behind one HTTPS proxy) and
//! how the binary reaches them without any test hook in it: `HTTPS_PROXY` points its HTTP
//! client at the fake, and `SSL_CERT_FILE` makes a test CA (made here with rcgen) its only
//! trusted root, so the fake's certificate for `api.backblazeb2.com` & co. is accepted.

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::gcs::ServiceAccount;

use super::*;

/// Credentials the fake accepts.
/// They are the original's documented example values, so its examples run unchanged.
pub const B2_KEY_ID: &str = "YOUR_APPLICATION_KEY_ID";
pub const B2_KEY: &str = "YOUR_APPLICATION_KEY";
pub const B2_BUCKET: &str = "my-backup-bucket";
pub const DROPBOX_TOKEN: &str = "YOUR_LONG_LIVED_ACCESS_TOKEN";
pub const GDRIVE_FOLDER: &str = "YOUR_GOOGLE_DRIVE_FOLDER_ID";
pub const GDRIVE_EMAIL: &str = "custos-test@custos-test.iam.gserviceaccount.com";
/// Google's token endpoint, which the fake answers behind the proxy.
const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

/// The hosts the fake's certificate is valid for.
const HOSTS: &[&str] = &[
    "api.backblazeb2.com",
    "*.backblazeb2.com",
    "api.dropboxapi.com",
    "content.dropboxapi.com",
    "www.googleapis.com",
    "oauth2.googleapis.com",
];

/// The running fake, killed when dropped.
pub struct Fake {
    child: Child,
    pub port: u16,
    certs: tempfile::TempDir,
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CA and a certificate for `hosts` signed by it, in `dir`: (ca, cert, key).
pub fn pki(dir: &Path, hosts: &[&str]) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "custos test CA");
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().expect("key");
    let names: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
    let cert = rcgen::CertificateParams::new(names)
        .expect("params")
        .signed_by(&key, &issuer)
        .expect("cert");
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    fs::write(&paths.0, ca.pem()).expect("write");
    fs::write(&paths.1, cert.pem()).expect("write");
    fs::write(&paths.2, key.serialize_pem()).expect("write");
    paths
}

impl Fake {
    /// Starts the fake on a free port and waits until it answers.
    pub fn start() -> Fake {
        let certs = tempfile::tempdir().expect("tempdir");
        let (_, cert, key) = pki(certs.path(), HOSTS);
        // GDRIVE_EMAIL is `{name}@custos-test.iam.gserviceaccount.com` of this name.
        let sa = ServiceAccount::generate(certs.path(), "custos-test", GOOGLE_TOKEN_URI);
        let public = sa.public_pem;
        fs::create_dir(certs.path().join("no-dir")).expect("mkdir");
        let mut args: Vec<OsString> = vec![cert.into(), key.into()];
        args.extend(
            [
                "--b2".to_owned(),
                format!("{B2_KEY_ID}:{B2_KEY}:{B2_BUCKET}"),
                "--dropbox".to_owned(),
                DROPBOX_TOKEN.to_owned(),
                "--gdrive".to_owned(),
                format!("{GDRIVE_EMAIL}:{}:{GDRIVE_FOLDER}", public.display()),
            ]
            .map(OsString::from),
        );
        let (child, port) = start_fake("saas_fake.py", &args, "/_control/requests");
        Fake { child, port, certs }
    }

    /// The service account key the fake's token endpoint accepts.
    pub fn gdrive_creds(&self) -> PathBuf {
        self.certs.path().join("custos-test.json")
    }

    /// Access tokens issued from now on are valid for `seconds`.
    pub fn token_lifetime(&self, seconds: u64) {
        self.control_ok(
            "POST",
            "/_control/gdrive",
            &serde_json::json!({ "expires_in": seconds }),
        );
    }

    /// Environment that sends the binary's HTTPS through the fake and trusts only its CA
    /// (whatever proxy settings the caller's environment has).
    pub fn env(&self) -> Vec<(&'static str, OsString)> {
        proxy_env(self.port, self.certs.path())
    }

    /// `backup ARGS` with [`Fake::env`].
    pub fn backup(&self, args: &[&OsStr]) -> Run {
        let env = self.env();
        let env: Vec<(&str, &OsStr)> = env.iter().map(|(k, v)| (*k, v.as_os_str())).collect();
        backup_with(args, &env, None)
    }

    /// One plain request to the control API; the status and JSON answer.
    fn control(&self, method: &str, path: &str, body: &[u8]) -> Option<(u16, Value)> {
        control(self.port, method, path, body)
    }

    fn control_ok(&self, method: &str, path: &str, body: &Value) -> Value {
        let (status, v) = self
            .control(method, path, body.to_string().as_bytes())
            .unwrap_or_else(|| panic!("control {path} failed"));
        assert_eq!(status, 200, "control {path}: {v}");
        v
    }

    /// Every API request so far, in order.
    pub fn requests(&self) -> Vec<Value> {
        match self.control_ok("GET", "/_control/requests", &Value::Null) {
            Value::Array(a) => a,
            v => panic!("requests: {v}"),
        }
    }

    /// The next `times` requests to `host` whose path contains `path` fail: `status`, or the
    /// connection is closed without an answer when `status` is 0.
    pub fn fault(&self, host: &str, path: &str, status: u16, times: u32) {
        let mut f = serde_json::json!({"host": host, "path": path, "times": times});
        if status == 0 {
            f["drop"] = true.into();
        } else {
            f["status"] = status.into();
        }
        self.control_ok("POST", "/_control/fault", &f);
    }

    /// [`Fake::fault`] for requests of `method` only.
    pub fn fault_method(&self, method: &str, host: &str, path: &str, status: u16, times: u32) {
        let f = serde_json::json!({"method": method, "host": host, "path": path,
                                   "status": status, "times": times});
        self.control_ok("POST", "/_control/fault", &f);
    }

    /// The next `times` Drive upload requests are only partly taken: Drive holds the first
    /// `keep` bytes of each and answers 308 with its `Range`.
    pub fn drive_keeps(&self, keep: u64, times: u32) {
        let f = serde_json::json!({"method": "PUT", "host": "www.googleapis.com",
                                   "path": "/upload/drive/v3/files", "keep": keep, "times": times});
        self.control_ok("POST", "/_control/fault", &f);
    }

    /// From now on `service`'s listings (`dropbox`, `gdrive`) never end: every answer says
    /// there is more, under the cursor (page token) it was asked with.
    pub fn stuck_cursor(&self, service: &str) {
        self.control_ok(
            "POST",
            "/_control/stuck",
            &serde_json::json!({"service": service}),
        );
    }

    /// Stores an object as an earlier run would have (`service`: `b2` or `dropbox`).
    pub fn put(&self, service: &str, name: &str, data: &str) {
        let v = serde_json::json!({"service": service, "name": name, "data": data});
        self.control_ok("POST", "/_control/put", &v);
    }

    /// What the service stores: `{"files": {name: {size, sha1, ...}}, ...}`.
    pub fn files(&self, service: &str) -> Value {
        self.control_ok(
            "GET",
            &format!("/_control/files?service={service}"),
            &Value::Null,
        )
    }
}

/// Starts `python3 common/<script> ARGS` (a fake that prints `port=N` once it listens on
/// 127.0.0.1) and waits until its control API answers `GET probe`: the child and the port.
pub fn start_fake(script: &str, args: &[OsString], probe: &str) -> (Child, u16) {
    let mut child = Command::new("python3")
        .arg(
            repo_root()
                .join("crates/backup/tests/it/common")
                .join(script),
        )
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {script}: {e}"));
    let mut out = child.stdout.take().expect("stdout");
    let line = read_line(&mut out);
    let port = line
        .strip_prefix("port=")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{script} did not start: {line:?}"));
    wait_until(Duration::from_secs(30), "the fake answers", || {
        control(port, "GET", probe, b"").is_some()
    });
    (child, port)
}

/// Environment that sends the binary's HTTPS through the fake on `port` and trusts only the
/// test CA in `certs` (`ca.pem`; `no-dir` an empty folder), whatever proxy settings the
/// caller's environment has.
pub fn proxy_env(port: u16, certs: &Path) -> Vec<(&'static str, OsString)> {
    let proxy: OsString = format!("http://127.0.0.1:{port}").into();
    vec![
        ("HTTPS_PROXY", proxy.clone()),
        ("https_proxy", proxy),
        ("NO_PROXY", OsString::new()),
        ("no_proxy", OsString::new()),
        ("SSL_CERT_FILE", certs.join("ca.pem").into()),
        ("SSL_CERT_DIR", certs.join("no-dir").into()),
    ]
}

/// One plain (not tunnelled) request to a fake's control API on `port`: the status and JSON
/// answer, `None` when it does not answer.
pub fn control(port: u16, method: &str, path: &str, body: &[u8]) -> Option<(u16, Value)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: control\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).ok()?;
    let text = String::from_utf8_lossy(&resp);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, serde_json::from_str(body).ok()?))
}

/// `(method, host, path)` of each request.
pub fn calls(reqs: &[Value]) -> Vec<(String, String, String)> {
    reqs.iter()
        .map(|r| {
            (
                r["method"].as_str().unwrap_or_default().to_owned(),
                r["host"].as_str().unwrap_or_default().to_owned(),
                r["path"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// The requests whose path contains `part`.
pub fn with_path<'a>(reqs: &'a [Value], part: &str) -> Vec<&'a Value> {
    reqs.iter()
        .filter(|r| r["path"].as_str().is_some_and(|p| p.contains(part)))
        .collect()
}
