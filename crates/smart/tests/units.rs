//! The systemd units in deploy/ pass `systemd-analyze verify` without a single complaint
//! (systemd only warns about unknown keys and bad values, so any output is a failure).

use custos_testkit::require;
use std::path::Path;
use std::process::Command;

#[test]
fn deploy_units_verify_cleanly() {
    let Some(analyze) = require("systemd-analyze", "systemd") else {
        return;
    };
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
    let dir = tempfile::tempdir().unwrap();
    // systemd-analyze checks that ExecStart exists: point both at a binary this build has
    // (what is checked here is the units' syntax, not which program they start).
    let exe = env!("CARGO_BIN_EXE_prometheus_smart_exporter");
    let mut units = Vec::new();
    for name in [
        "prometheus_smart_helper.socket",
        "prometheus_smart_helper.service",
        "prometheus_smart_exporter.service",
    ] {
        let text = std::fs::read_to_string(deploy.join(name)).unwrap();
        let text = text
            .replace("/usr/local/bin/smart_exporter_helper", exe)
            .replace("/usr/local/bin/prometheus_smart_exporter", exe);
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        units.push(path);
    }
    let out = Command::new(analyze)
        .arg("verify")
        .args(&units)
        .env("SYSTEMD_LOG_LEVEL", "warning")
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify: {said}"
    );
}
