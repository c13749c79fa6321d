//! The real `haproxysessionmon --check` against configs with the mistakes people make: each
//! exits 2 with one line naming file, key and what was expected.

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_haproxysessionmon");

const GOOD: &str = "\
backends:
    graylog:
        type: gelf
        host: 127.0.0.1
        port: 12201
servers:
    lb:
        endpoint: http://127.0.0.1:1/stats;csv
        update-interval: 10
        backends: [graylog]
";

fn write(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("haproxysessionmon.yml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// `haproxysessionmon --check -c FILE`: exit code and stderr.
fn check(path: &Path) -> (Option<i32>, String) {
    let out = Command::new(BIN)
        .arg("--check")
        .arg("-c")
        .arg(path)
        .env_remove("HAPROXYSM_CONFIG_FILE")
        .output()
        .expect("run haproxysessionmon");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_good_config_checks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, stderr) = check(&write(dir.path(), GOOD));
    assert_eq!(code, Some(0), "{stderr}");
}

/// A port that is not a number is "expected a port", not "a number of seconds".
#[test]
fn a_bad_number_says_what_its_field_expects() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), &GOOD.replace("port: 12201", "port: twelve"));
    let (code, stderr) = check(&path);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("backends.graylog.port: expected a port 1-65535, got \"twelve\""),
        "{stderr}"
    );
    assert!(!stderr.contains("seconds"), "{stderr}");
    let path = write(
        dir.path(),
        &GOOD.replace("update-interval: 10", "update-interval: often"),
    );
    let (code, stderr) = check(&path);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("expected a number of seconds, got \"often\""),
        "{stderr}"
    );
    // Neither a number nor text: the field's expectation and the value's own line (not the
    // enclosing mapping's, nor the parser's internal type name).
    let path = write(dir.path(), &GOOD.replace("port: 12201", "port: [12201]"));
    let (code, stderr) = check(&path);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "backends.graylog.port: invalid type: sequence, expected a port 1-65535 at line 5"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("NumberOrText"), "{stderr}");
}

/// A misspelt required key is named as the typo, both for a server (serde's required field)
/// and for a backend (required by its type).
#[test]
fn a_misspelt_required_key_is_named_with_the_key_it_stands_for() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), &GOOD.replace("endpoint:", "endpiont:"));
    let (code, stderr) = check(&path);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}: servers.lb.endpiont: unknown key `endpiont` (line 8), did you mean `endpoint`? \
             (`endpoint` is required)",
            path.display()
        )),
        "{stderr}"
    );
    let path = write(dir.path(), &GOOD.replace("host:", "hots:"));
    let (code, stderr) = check(&path);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}: backends.graylog.hots: unknown key `hots`, did you mean `host`? (`host` is \
             required)",
            path.display()
        )),
        "{stderr}"
    );
}
