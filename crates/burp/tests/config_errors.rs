//! The real `burp_exporter` against configs with the mistakes people make: each exits 2 with
//! one line that names the cause (file, key, line), before any server is contacted.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Writes `text` as the config in `dir`, beside valid certificate files (a self-signed
/// certificate as CA and client certificate, and its key).
fn config(dir: &Path, entry: &str) -> PathBuf {
    let made = rcgen::generate_simple_self_signed(vec!["burp".to_owned()]).expect("rcgen");
    std::fs::write(dir.join("ca.pem"), made.cert.pem()).expect("write ca");
    std::fs::write(dir.join("client.pem"), made.cert.pem()).expect("write cert");
    std::fs::write(dir.join("client.key"), made.signing_key.serialize_pem()).expect("write key");
    let path = dir.join("burp_exporter.yaml");
    std::fs::write(&path, entry).expect("write config");
    path
}

const GOOD: &str = "\
bind_port: 9645
clients:
  - name: main
    burp_host: 127.0.0.1
    burp_port: 9
    cname: monitor
    password: abcdefgh
    tls_ca_cert: ca.pem
    tls_cert: client.pem
    tls_key: client.key
";

/// `burp_exporter --once -c FILE` (a config error stops it before any connection).
fn once(path: &Path) -> (Option<i32>, String, String) {
    let (status, stdout, stderr) = common::run_once(path, Duration::from_secs(20));
    (status.code(), stdout, stderr)
}

#[test]
fn a_misspelt_required_key_is_named_with_the_key_it_stands_for() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = config(dir.path(), &GOOD.replace("burp_host:", "burp_hots:"));
    let (code, _, stderr) = once(&path);
    assert_eq!(code, Some(2), "{stderr}");
    let want = format!(
        "{}: clients[0].burp_hots: unknown key `burp_hots` (line 4), did you mean `burp_host`? \
         (`burp_host` is required)",
        path.display()
    );
    assert!(stderr.contains(&want), "want {want}\n{stderr}");
}

#[test]
fn a_bad_indent_is_reported_where_it_is() {
    let dir = tempfile::tempdir().expect("tempdir");
    // One space short: not YAML at all (the parser met "missing field" first before).
    let path = config(dir.path(), &GOOD.replace("    burp_host:", "  burp_host:"));
    let (code, _, stderr) = once(&path);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(!stderr.contains("missing field"), "{stderr}");
    assert!(stderr.contains("line 4"), "{stderr}");
    // At the root: valid YAML, the key is pointed at.
    let moved = GOOD.replace("    burp_host: 127.0.0.1\n", "") + "burp_host: 127.0.0.1\n";
    let path = config(dir.path(), &moved);
    let (code, _, stderr) = once(&path);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "clients[0]: missing field `burp_host` (required in the mapping that starts at line \
             3 column 5); a `burp_host` key is at `burp_host` (line 10): check its indentation"
        ),
        "{stderr}"
    );
}

#[test]
fn an_unusable_key_file_is_a_config_error_not_an_unreachable_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = config(dir.path(), GOOD);
    let key = dir.path().join("client.key");
    // A path that opens but cannot be read (a directory), then a file with no key in it.
    std::fs::remove_file(&key).expect("rm key");
    std::fs::create_dir(&key).expect("mkdir key");
    for round in ["unreadable", "not a key"] {
        let (code, stdout, stderr) = once(&path);
        assert_eq!(code, Some(2), "{round}: {stdout}\n{stderr}");
        assert!(!stdout.contains("UNREACHABLE"), "{round}: {stdout}");
        assert!(
            stderr.contains(&format!(
                "{}: clients[0].tls_key: invalid value",
                path.display()
            )) && stderr.contains("client.key"),
            "{round}: {stderr}"
        );
        std::fs::remove_dir_all(&key).ok();
        std::fs::write(&key, "x\n").expect("write key");
    }
}
