//! The real `prometheus_smart_exporter` at startup with an attribute mapping that has the
//! mistakes people make: exit 2 and one line naming file, key and line.

use std::process::Command;

const EXPORTER: &str = env!("CARGO_BIN_EXE_prometheus_smart_exporter");

/// Starts the exporter with `map` as its attribute mapping; it must refuse to start.
fn refused(map: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("attrmap.json");
    std::fs::write(&path, map).expect("write map");
    let out = Command::new(EXPORTER)
        .arg(dir.path().join("nobody-listens.sock"))
        .arg("--attr-mapping")
        .arg(&path)
        .arg("--listen-port")
        .arg("0")
        .output()
        .expect("run exporter");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&path.display().to_string()), "{stderr}");
    stderr
}

#[test]
fn a_misspelt_required_key_is_named_with_the_key_it_stands_for() {
    let stderr = refused(
        "{\"generic\": [\n  {\"id\": 5, \"name\": \"reallocated_sectors_total\", \"type\": \"counter\"},\n  {\n    \"id\": 9,\n    \"nmae\": \"power_on_hours\",\n    \"type\": \"counter\"\n  }\n]}\n",
    );
    assert!(
        stderr.contains(
            "generic[1].nmae: unknown key `nmae` (line 5), did you mean `name`? (`name` is \
             required)"
        ),
        "{stderr}"
    );
}

#[test]
fn a_missing_key_says_where_its_object_is() {
    let stderr = refused("{\"generic\": [\n  {\"id\": 5, \"type\": \"counter\"}\n]}\n");
    assert!(
        stderr.contains(
            "generic[0]: missing field `name` (required in the object that ends at line 2"
        ),
        "{stderr}"
    );
}
