//! Mail notifications end to end against a real SMTP server (aiosmtpd): without AUTH, with
//! AUTH, STARTTLS and implicit TLS; headers and bodies of the received messages checked.

use crate::common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::notify::*;
use common::*;
use serde_json::{json, Value};

/// A running aiosmtpd: the port it bound and the directory it stores messages under.
struct Smtpd {
    _child: Server,
    port: u16,
    dir: tempfile::TempDir,
}

impl Smtpd {
    /// An aiosmtpd server on 127.0.0.1, a free port.
    fn start(extra: &[&str]) -> Option<Smtpd> {
        Smtpd::start_on("127.0.0.1", extra)
    }

    /// An aiosmtpd server on `host`, a free port (it binds port 0 and reports the port).
    fn start_on(host: &str, extra: &[&str]) -> Option<Smtpd> {
        let ok = Command::new("/usr/bin/python3")
            .args(["-c", "import aiosmtpd"])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let msg = "SMTP tests need python3-aiosmtpd (Debian)";
            assert!(!services_required(), "CUSTOS_REQUIRE_SERVICES=1 but {msg}");
            eprintln!("SKIP: {msg}");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/smtp_server.py");
        let mut child = Command::new("/usr/bin/python3")
            .arg(script)
            .args([host, "0"])
            .arg(dir.path())
            .args(extra)
            .stdout(Stdio::piped())
            // Its tracebacks (a refused certificate) belong to the test that provokes them.
            .stderr(fs::File::create(dir.path().join("server.log")).unwrap())
            .spawn()
            .unwrap();
        let line = read_line(&mut child.stdout.take().unwrap());
        let port = line
            .strip_prefix("port=")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| {
                let _ = child.kill();
                let log = fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
                panic!("smtp_server.py did not start: {line:?}\n{log}")
            });
        Some(Smtpd {
            _child: Server(child),
            port,
            dir,
        })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Waits until `n` sessions ended at the server (its own readiness probe is one): then
    /// nothing a client sent in them can still be stored, so "no mail" is a fact, not a hope.
    fn wait_sessions_ended(&self, n: u64) {
        let ended = || {
            fs::read_to_string(self.path().join("ended"))
                .ok()
                .and_then(|t| t.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        wait_until(
            Duration::from_secs(30),
            &format!("{n} ended SMTP sessions"),
            || ended() >= n,
        );
    }
}

/// The messages the server stored, in arrival order.
fn mails(dir: &Path, n: usize) -> Vec<Value> {
    let path = |i: usize| dir.join(format!("{i}.json"));
    wait_until(Duration::from_secs(10), "stored mails", || path(n).exists());
    (1..=n)
        .map(|i| serde_json::from_slice(&fs::read(path(i)).unwrap()).unwrap())
        .collect()
}

/// The value of header `name` in a raw message (first occurrence).
fn header<'a>(raw: &'a str, name: &str) -> Option<&'a str> {
    let head = raw.split("\r\n\r\n").next().unwrap_or(raw);
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn smtp_notification(port: u16, extra: Value) -> Value {
    let mut v = json!({"type": "smtp", "host": "127.0.0.1", "port": port, "use_tls": 0, "use_ssl": 0,
                       "success_to": "archive@example.com", "failure_to": "sysadmin@example.com"});
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

#[test]
fn smtp_without_auth_sends_proper_mails_and_never_logs_in() {
    let Some(server) = Smtpd::start(&[]) else {
        return;
    };
    let mut f = Fixture::new(true);
    // The original README's example has `"credentials": {}` (no username): no login.
    f.run(vec![smtp_notification(
        server.port,
        json!({"credentials": {}}),
    )])
    .assert_code(1);
    let m = mails(server.path(), 2);
    let (ok, bad) = (&m[0], &m[1]);
    assert_eq!(ok["authenticated"], false);
    assert_eq!(ok["rcpt_tos"], json!(["archive@example.com"]));
    assert_eq!(bad["rcpt_tos"], json!(["sysadmin@example.com"]));
    let raw = ok["data"].as_str().unwrap();
    assert_eq!(
        header(raw, "Subject"),
        Some("Backup of Web site (folder) on testhost was successful")
    );
    assert_eq!(header(raw, "From"), Some("archive@example.com"));
    assert_eq!(header(raw, "To"), Some("archive@example.com"));
    assert!(
        chrono::DateTime::parse_from_rfc2822(header(raw, "Date").unwrap()).is_ok(),
        "{raw}"
    );
    let id = header(raw, "Message-ID").unwrap();
    assert!(
        id.starts_with('<') && id.ends_with('>') && id.contains('@'),
        "{id}"
    );
    assert_eq!(header(raw, "X-Backup-Id"), Some("www"));
    assert_eq!(header(raw, "X-Backup-Type"), Some("folder"));
    assert_eq!(header(raw, "X-Backup-Hostname"), Some("testhost"));
    assert!(
        raw.contains("Successfully backed up Web site (folder) [size: "),
        "{raw}"
    );
    let raw = bad["data"].as_str().unwrap();
    assert_eq!(
        header(raw, "Subject"),
        Some("ERROR: Backup of Gone (folder) on testhost failed")
    );
    assert!(
        raw.contains("Error encountered while backing up Gone (folder):"),
        "{raw}"
    );
    assert!(raw.contains("source 'gone': "), "{raw}");
}

#[test]
fn smtp_with_auth_logs_in_with_the_configured_credentials() {
    let Some(server) = Smtpd::start(&["--auth", "backups:relaypassword"]) else {
        return;
    };
    let port = server.port;
    let mut f = Fixture::new(false);
    let n = smtp_notification(
        port,
        json!({"credentials": {"username": "backups", "password": "relaypassword"}, "from": "Backups <backups@example.com>"}),
    );
    let run = f.run(vec![n]);
    run.assert_code(0);
    let m = mails(server.path(), 1);
    assert_eq!(m[0]["authenticated"], true);
    // A loopback host: no STARTTLS offered, logging in over plain text is allowed.
    assert_eq!(m[0]["auth_encrypted"], false);
    assert_eq!(m[0]["login"], "backups");
    assert_eq!(m[0]["mail_from"], "backups@example.com");
    assert!(!run.all_text().contains("relaypassword"));
    // A wrong password: the mail is not sent, the notifier fails, the password is not shown.
    let mut g = Fixture::new(false);
    let n = smtp_notification(
        port,
        json!({"credentials": {"username": "backups", "password": "wrongpassword"}}),
    );
    let run = g.run(vec![n]);
    run.assert_code(1);
    let out = run.stdout_text();
    assert!(out.contains("www     disk         ok"), "{out}");
    assert!(
        out.contains(&format!("- -> notify:smtp: SMTP 127.0.0.1:{port}: ")),
        "{out}"
    );
    assert!(!run.all_text().contains("wrongpassword"));
}

/// A CA and a server certificate for 127.0.0.1, written to `dir`: (ca, cert, key).
fn pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    fs::write(&paths.0, ca.pem()).unwrap();
    fs::write(&paths.1, cert.pem()).unwrap();
    fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

#[test]
fn smtp_starttls_and_implicit_tls_encrypt_before_the_mail() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = pki(certs.path());
    let (cert_s, key_s) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let Some(starttls) = Smtpd::start(&["--starttls", cert_s, key_s, "--auth", "u:p"]) else {
        return;
    };
    let Some(implicit) = Smtpd::start(&["--ssl", cert_s, key_s]) else {
        return;
    };
    let mut f = Fixture::new(false);
    f.run(vec![
        smtp_notification(
            starttls.port,
            json!({"use_tls": 1, "ca_file": ca, "credentials": {"username": "u", "password": "p"}}),
        ),
        smtp_notification(implicit.port, json!({"use_ssl": 1, "ca_file": ca})),
    ])
    .assert_code(0);
    let m = mails(starttls.path(), 1);
    assert_eq!(
        (m[0]["tls"].as_bool(), m[0]["authenticated"].as_bool()),
        (Some(true), Some(true))
    );
    let m = mails(implicit.path(), 1);
    assert_eq!(m[0]["tls"], true);
    assert!(header(m[0]["data"].as_str().unwrap(), "Subject")
        .unwrap()
        .contains("was successful"));
    // Without the CA the server's certificate is refused: nothing is sent in the clear.
    let mut g = Fixture::new(false);
    let run = g.run(vec![smtp_notification(
        starttls.port,
        json!({"use_tls": 1}),
    )]);
    run.assert_code(1);
    assert!(
        run.stdout_text()
            .contains(&format!("notify:smtp: SMTP 127.0.0.1:{}: ", starttls.port)),
        "{}",
        run.describe()
    );
    assert!(!starttls.path().join("2.json").exists());
}

/// Issue 16.9: with neither `use_tls` nor `use_ssl`, a server that offers STARTTLS gets the
/// password only after STARTTLS (the original, and custos before, logged in over plain text).
#[test]
fn smtp_uses_offered_starttls_before_sending_the_password() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = pki(certs.path());
    let (cert_s, key_s) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let Some(server) = Smtpd::start(&[
        "--starttls",
        cert_s,
        key_s,
        "--starttls-optional",
        "--auth",
        "u:offeredpass",
    ]) else {
        return;
    };
    let mut f = Fixture::new(false);
    let run = f.run(vec![smtp_notification(
        server.port,
        json!({"ca_file": ca, "credentials": {"username": "u", "password": "offeredpass"}}),
    )]);
    run.assert_code(0);
    let m = mails(server.path(), 1);
    assert_eq!(m[0]["authenticated"], true, "{}", m[0]);
    assert_eq!(m[0]["auth_encrypted"], true, "AUTH went in clear: {}", m[0]);
    assert_eq!(m[0]["tls"], true);
    assert!(!run.all_text().contains("offeredpass"));
}

/// A local relay whose offered STARTTLS cannot be verified (Debian's snakeoil certificate):
/// with no password at stake the mail still goes, as it did before STARTTLS was used.
#[test]
fn smtp_without_a_password_falls_back_when_offered_starttls_fails() {
    let certs = tempfile::tempdir().unwrap();
    let (_ca, cert, key) = pki(certs.path());
    let (cert_s, key_s) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let Some(server) = Smtpd::start(&["--starttls", cert_s, key_s, "--starttls-optional"]) else {
        return;
    };
    let mut f = Fixture::new(false);
    let run = f.run(vec![smtp_notification(server.port, json!({}))]);
    run.assert_code(0);
    let m = mails(server.path(), 1);
    assert_eq!(
        (m[0]["tls"].as_bool(), m[0]["authenticated"].as_bool()),
        (Some(false), Some(false))
    );
}

/// A name for this machine that is not `localhost` but resolves to a loopback IPv4 address
/// (Debian's /etc/hosts maps the host name to 127.0.0.1 or 127.0.1.1): the notifier never
/// looks names up, so for it this host is remote, while the test's traffic stays on loopback.
fn remote_looking_name() -> Option<(String, String)> {
    use std::net::ToSocketAddrs;
    let out = Command::new("hostname").output().ok()?;
    let name = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if name.is_empty() || name == "localhost" || name.ends_with(".localhost") {
        return None;
    }
    let addrs: Vec<_> = (name.as_str(), 25).to_socket_addrs().ok()?.collect();
    let ip = addrs.iter().find(|a| a.is_ipv4())?.ip();
    addrs
        .iter()
        .all(|a| a.ip().is_loopback())
        .then(|| (name, ip.to_string()))
}

/// Issue 16.9: a relay that is not on loopback and offers no STARTTLS never sees the
/// password unless `allow_plaintext_auth` says so; the error names the key.
#[test]
fn smtp_refuses_plaintext_auth_to_a_remote_host_unless_allowed() {
    let Some((addr, ip)) = remote_looking_name() else {
        assert!(
            !services_required(),
            "CUSTOS_REQUIRE_SERVICES=1 but this machine's host name does not resolve to a loopback address"
        );
        eprintln!("SKIP: THE HOST NAME DOES NOT RESOLVE TO LOOPBACK: plaintext AUTH refusal not tested end to end (the unit test covers the decision)");
        return;
    };
    let Some(server) = Smtpd::start_on(&ip, &["--auth", "u:remotepass"]) else {
        return;
    };
    let creds = json!({"username": "u", "password": "remotepass"});
    let mut f = Fixture::new(false);
    let run = f.run(vec![smtp_notification(
        server.port,
        json!({"host": addr, "credentials": creds}),
    )]);
    run.assert_code(1);
    let out = run.stdout_text();
    assert!(
        out.contains(&format!(
            "- -> notify:smtp: SMTP {addr}:{}: refusing",
            server.port
        )) && out.contains("allow_plaintext_auth: true"),
        "{}",
        run.describe()
    );
    assert!(out.contains("www     disk         ok"), "{out}");
    assert!(!run.all_text().contains("remotepass"));
    // The probe's session and the notifier's one.
    server.wait_sessions_ended(2);
    assert!(!server.path().join("1.json").exists(), "a mail was sent");
    // STARTTLS offered but its certificate is not trusted: no fallback to plain text with a
    // password at stake.
    let certs = tempfile::tempdir().unwrap();
    let (_ca, cert, key) = pki(certs.path());
    let (cert_s, key_s) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let Some(untrusted) = Smtpd::start_on(
        &ip,
        &[
            "--starttls",
            cert_s,
            key_s,
            "--starttls-optional",
            "--auth",
            "u:remotepass",
        ],
    ) else {
        return;
    };
    let mut h = Fixture::new(false);
    let run = h.run(vec![smtp_notification(
        untrusted.port,
        json!({"host": addr, "credentials": creds}),
    )]);
    run.assert_code(1);
    assert!(
        run.stdout_text().contains(&format!(
            "- -> notify:smtp: SMTP {addr}:{}: ",
            untrusted.port
        )),
        "{}",
        run.describe()
    );
    untrusted.wait_sessions_ended(2);
    assert!(!untrusted.path().join("1.json").exists(), "a mail was sent");
    // Allowed by the key: it logs in over plain text, as asked.
    let mut g = Fixture::new(false);
    g.run(vec![smtp_notification(
        server.port,
        json!({"host": addr, "credentials": creds, "allow_plaintext_auth": true}),
    )])
    .assert_code(0);
    let m = mails(server.path(), 1);
    assert_eq!(
        (
            m[0]["authenticated"].as_bool(),
            m[0]["auth_encrypted"].as_bool()
        ),
        (Some(true), Some(false))
    );
}

#[test]
fn smtp_mails_a_verify_to_the_recipients_of_its_outcome() {
    let Some(server) = Smtpd::start(&[]) else {
        return;
    };
    let mut f = Fixture::new(false);
    f.run(vec![]).assert_code(0);
    f.job.set(
        "notifications",
        Value::Array(vec![smtp_notification(server.port, json!({}))]),
    );
    let cfg = f.job.write();
    backup(["verify".as_ref(), cfg.as_os_str()]).assert_code(0);
    let m = mails(server.path(), 1);
    assert_eq!(m[0]["rcpt_tos"], json!(["archive@example.com"]));
    // The body is quoted-printable: soft line breaks undone.
    let unwrap = |raw: &str| raw.replace("=\r\n", "").replace("=\n", "");
    let raw = unwrap(m[0]["data"].as_str().unwrap());
    assert_eq!(
        header(&raw, "Subject"),
        Some("Verify of Web site (folder) on testhost was successful")
    );
    assert_eq!(header(&raw, "X-Backup-Id"), Some("www"));
    assert!(
        raw.contains(
            "Verify of 'Web site' (folder) on 'testhost' was successful: 1 copy read at disk."
        ),
        "{raw}"
    );
    let object = only_object(&f.path("store"), "www");
    let stamp = object
        .parent()
        .and_then(|p| p.file_name())
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(raw.contains(&format!("disk {stamp}: ok, ")), "{raw}");

    // A damaged copy: a mail to failure_to naming the copy and why.
    let mut bytes = fs::read(&object).unwrap();
    bytes[0] ^= 1;
    fs::write(&object, bytes).unwrap();
    backup(["verify".as_ref(), cfg.as_os_str()]).assert_code(1);
    let m = mails(server.path(), 2);
    assert_eq!(m[1]["rcpt_tos"], json!(["sysadmin@example.com"]));
    let raw = unwrap(m[1]["data"].as_str().unwrap());
    assert_eq!(
        header(&raw, "Subject"),
        Some("ERROR: Verify of Web site (folder) on testhost failed")
    );
    assert!(raw.contains(&format!("disk {stamp}: FAILED: ")), "{raw}");
}
