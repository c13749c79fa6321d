//! The real `prometheus_smart_exporter` binary against the helper (its library, run in this
//! process on a temporary socket) driving the stand-in smartctl that replays recorded drives
//! (crates/smart-helper/tests/data). The metrics must carry the recorded values; a real
//! Prometheus must accept the exposition.

use custos_smart_helper::{cli::Options, serve};
use custos_testkit::prometheus::{check_exposition, Prometheus};
use custos_testkit::{free_port, http_get, require, wait_for, Metrics};
use serde_json::Value;
use std::net::SocketAddr;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const EXPORTER: &str = env!("CARGO_BIN_EXE_prometheus_smart_exporter");

fn data(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../smart-helper/tests/data")
        .join(file)
}

fn fixture(dev: &str) -> Value {
    serde_json::from_slice(&std::fs::read(data(&format!("{dev}.json"))).unwrap()).unwrap()
}

/// Starts a helper serving `socket` in a thread of this process (it ends with the test).
/// A plain bind: the helper's own (`listen::bind`) sets the process-wide umask, which other
/// tests of this process must not see.
fn helper(socket: &Path, smartctl: &str, device_timeout: Duration) {
    let listener = UnixListener::bind(socket).expect("helper socket");
    let opts = Options {
        smartctl: data(smartctl),
        device_timeout,
        ..Options::default()
    };
    std::thread::spawn(move || serve::serve(listener, &opts, None));
}

struct Exporter {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Exporter {
    fn start(socket: &Path, dir: &Path, extra: &[&str]) -> Exporter {
        let port = free_port();
        let log = dir.join("exporter.log");
        let child = Command::new(EXPORTER)
            .arg(socket)
            .arg("--device-db")
            .arg(data("check_smartdb.json"))
            .args(["-p", &port.to_string(), "-a", "127.0.0.1", "-vv"])
            .args(extra)
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn exporter");
        Exporter {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            log,
        }
    }

    fn metrics(&self) -> Option<Metrics> {
        let r = http_get(self.addr, "/metrics", None).ok()?;
        (r.status == 200).then(|| Metrics::parse(&r.body))
    }

    /// Polls /metrics until `f` accepts it.
    fn wait<T>(&mut self, what: &str, f: impl Fn(&Metrics) -> Option<T>) -> T {
        wait_for(what, Duration::from_secs(30), || {
            if let Ok(Some(s)) = self.child.try_wait() {
                panic!("exporter exited ({s}):\n{}", self.log());
            }
            f(&self.metrics()?)
        })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn port(p: &str) -> [(&str, &str); 1] {
    [("port", p)]
}

#[test]
fn metrics_carry_the_recorded_values() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("ipc");
    helper(&socket, "smartctl", Duration::from_secs(2));
    let mut exp = Exporter::start(&socket, dir.path(), &["--interval", "3"]);
    let m = exp.wait("the first refresh", |m| {
        m.value("smart_access_error", &port("/dev/sdg"))
            .map(|_| m.clone())
    });
    let v = |name: &str, p: &str| {
        m.value(name, &port(p))
            .unwrap_or_else(|| panic!("no {name}{{port=\"{p}\"}}"))
    };
    assert_eq!(m.value("smart_system_error", &[]), Some(0.0));
    assert_eq!(m.value("smart_scan_devices", &[]), Some(10.0));

    // Every drive with data: temperature, power-on time, health, as recorded.
    for (dev, p) in [
        ("sda", "/dev/sda"),
        ("sdb", "/dev/sdb"),
        ("sdc", "/dev/sdc"),
        ("sdd", "/dev/sdd"),
        ("sde", "/dev/sde"),
        ("nvme0", "/dev/nvme0"),
        ("nvme1", "/dev/nvme1"),
    ] {
        let f = fixture(dev);
        assert_eq!(v("smart_access_error", p), 0.0, "{p}");
        assert_eq!(
            v("smart_device_temperature_celsius", p),
            f["temperature"]["current"].as_f64().unwrap(),
            "{p}"
        );
        let minutes = f["power_on_time"]["minutes"].as_u64().unwrap_or(0);
        assert_eq!(
            v("smart_device_power_on_seconds", p),
            (f["power_on_time"]["hours"].as_u64().unwrap() * 3600 + minutes * 60) as f64,
            "{p}"
        );
        let passed = f["smart_status"]["passed"].as_bool().unwrap();
        assert_eq!(
            v("smart_device_health_passed", p),
            f64::from(u8::from(passed))
        );
        assert_eq!(
            v("smart_device_power_mode", p),
            1.0,
            "{p} is active: {}",
            m.lines_starting("smart_device_power_mode")
        );
        assert!(v("smart_device_data_age_seconds", p) < 10.0);
        assert_eq!(v("smart_device_read_timeout", p), 0.0);
    }

    // The original's labels and mapped attributes (ATA), from the recorded attribute table.
    let sda = fixture("sda");
    let attr = |id: u64| {
        sda["ata_smart_attributes"]["table"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"] == id)
            .unwrap()["raw"]
            .clone()
    };
    let labels = [
        ("port", "/dev/sda"),
        ("model", "ST16000NM001G-2KK103"),
        ("family", "Seagate Exos X16"),
        ("serial", "REDACTED"),
    ];
    assert_eq!(
        m.value("smart_reallocated_sectors_total", &labels),
        attr(5)["value"].as_f64()
    );
    let temp194: f64 = attr(194)["string"]
        .as_str()
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(m.value("smart_temperature_celsius", &labels), Some(temp194));
    assert_eq!(
        temp194, 26.0,
        "the first number of the raw string, as smartctl -A prints it"
    );
    // The Exos X16 model is not in the device DB: exported raw, flagged as the original did.
    assert_eq!(v("smart_metric_error", "/dev/sda"), 1.0);
    assert_eq!(v("smart_metric_error", "/dev/sdc"), 0.0);
    assert_eq!(v("smart_metric_error", "/dev/nvme0"), 0.0);
    // Samsung 860 EVO: in the device DB ("Samsung based SSDs" family entry or model).
    assert!(m
        .value("smart_written_lbas_total", &port("/dev/sdc"))
        .is_some());

    // NVMe health log.
    let n = fixture("nvme0");
    let log = &n["nvme_smart_health_information_log"];
    assert_eq!(v("smart_nvme_critical_warning", "/dev/nvme0"), 0.0);
    assert_eq!(
        v("smart_nvme_read_bytes_total", "/dev/nvme0"),
        log["data_units_read"].as_f64().unwrap() * 512_000.0
    );
    assert_eq!(
        v("smart_device_error_log_entries", "/dev/nvme0"),
        log["num_err_log_entries"].as_f64().unwrap()
    );
    assert_eq!(v("smart_nvme_available_spare_percent", "/dev/nvme0"), 100.0);
    // The failing NVMe: health failed, critical warning, exit status 8 (disk failing).
    assert_eq!(v("smart_device_health_passed", "/dev/nvme1"), 0.0);
    assert_eq!(v("smart_nvme_critical_warning", "/dev/nvme1"), 16.0);
    assert_eq!(v("smart_smartctl_exit_status", "/dev/nvme1"), 8.0);
    assert_eq!(
        m.value(
            "smart_smartctl_exit_status_bit",
            &[("port", "/dev/nvme1"), ("bit", "disk_failing")]
        ),
        Some(1.0)
    );

    // SAS: grown defects and error counters.
    let s = fixture("sdd");
    assert_eq!(
        v("smart_scsi_grown_defects", "/dev/sdd"),
        s["scsi_grown_defect_list"].as_f64().unwrap()
    );
    assert_eq!(
        m.value(
            "smart_scsi_errors_corrected_total",
            &[("port", "/dev/sdd"), ("operation", "write")]
        ),
        s["scsi_error_counter_log"]["write"]["total_errors_corrected"].as_f64()
    );

    // Self-test log (ATA, -x and -a recordings).
    assert_eq!(v("smart_device_selftest_passed", "/dev/sdc"), 1.0);
    assert_eq!(
        v("smart_device_selftest_age_seconds", "/dev/sdc"),
        ((14551 - 14417) * 3600) as f64
    );

    // Device info with the WWN as in /dev/disk/by-id.
    let info = m.find("smart_device_info", &[("port", "/dev/sdc")]);
    assert_eq!(info.len(), 1);
    assert!(
        info[0]
            .labels
            .iter()
            .any(|(k, v)| k == "wwn" && v == "0x5002538e40a22954"),
        "{:?}",
        info[0]
    );

    // The open failure and the hung device: access errors, no drive data; the sleeping drive
    // is a state, not an error.
    assert_eq!(v("smart_access_error", "/dev/sdf"), 1.0);
    // Why it has no data is in the log, in smartctl's words (an error: shown without -v).
    let log = exp.log();
    assert!(
        log.lines().any(|l| l.contains("ERROR")
            && l.contains("/dev/sdf")
            && l.contains("Open failed, Error=5")),
        "{log}"
    );
    assert_eq!(v("smart_access_error", "/dev/sdg"), 1.0);
    assert_eq!(v("smart_device_read_timeout", "/dev/sdg"), 1.0);
    assert!(m.find("smart_device_info", &port("/dev/sdg")).is_empty());
    assert_eq!(v("smart_access_error", "/dev/sdh"), 0.0);
    assert_eq!(
        m.value(
            "smart_device_power_mode",
            &[("port", "/dev/sdh"), ("mode", "sleep")]
        ),
        Some(1.0)
    );
    // The hung device cost only itself: the others were read in well under its timeout.
    for p in ["/dev/sda", "/dev/nvme0", "/dev/sdd"] {
        assert!(v("smart_device_read_duration_seconds", p) < 2.0, "{p}");
    }

    // A real Prometheus accepts the exposition; the strict checkers too.
    if let Some(prom_bin) = require("prometheus", "prometheus") {
        let pd = tempfile::tempdir().unwrap();
        let prom = Prometheus::start(&prom_bin, "smart", exp.addr, pd.path());
        prom.wait_target_up(Duration::from_secs(60));
        let t = wait_for("a series in the TSDB", Duration::from_secs(30), || {
            let v = prom.series_with("smart_device_temperature_celsius", &port("/dev/sda"));
            (!v.is_empty()).then_some(v)
        });
        assert_eq!(t, vec![26.0]);
        let type_of = prom.metadata_types("smart_system_error", Duration::from_secs(30));
        assert_eq!(type_of("smart_reallocated_sectors_total"), "counter");
        assert_eq!(type_of("smart_temperature_celsius"), "gauge");
    }
    if let Some(promtool) = require("promtool", "prometheus") {
        check_exposition(&promtool, exp.addr, "/metrics", &[]);
    }

    // The helper goes away: the last good values stay, with growing ages, and the system
    // error says why.
    std::fs::remove_file(&socket).unwrap();
    let m = exp.wait("smart_system_error 1", |m| {
        (m.value("smart_system_error", &[]) == Some(1.0)).then(|| m.clone())
    });
    assert_eq!(
        m.value("smart_device_temperature_celsius", &port("/dev/sda")),
        Some(26.0)
    );
    let age = m
        .value("smart_device_data_age_seconds", &port("/dev/sda"))
        .unwrap();
    assert!(age > 0.5, "{age}");
    assert!(m.value("smart_refresh_errors_total", &[]).unwrap() >= 1.0);
    assert!(!exp.log().contains("panicked"), "{}", exp.log());
}

/// The first scrape after a start does not wait out a hung drive: the others are published
/// as the helper reads them.
#[test]
fn drives_appear_before_a_hung_one_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("ipc");
    helper(&socket, "smartctl", Duration::from_secs(8));
    let t = std::time::Instant::now();
    let mut exp = Exporter::start(&socket, dir.path(), &[]);
    // The helper reads 4 drives at a time and /dev/sdg holds one slot until its timeout, so
    // the drives after it in scan order (nvme0 is the second to last) come later than sda:
    // wait for nvme0 itself, not for the first drive.
    let m = exp.wait("the drives other than the hung one", |m| {
        m.value("smart_access_error", &port("/dev/nvme0"))
            .map(|_| m.clone())
    });
    assert!(t.elapsed() < Duration::from_secs(6), "{:?}", t.elapsed());
    // /dev/sdg hangs until its 8 s timeout: not there yet.
    assert!(m.find("smart_access_error", &port("/dev/sdg")).is_empty());
    assert_eq!(
        m.value("smart_access_error", &port("/dev/nvme0")),
        Some(0.0)
    );
    assert!(m
        .value("smart_device_temperature_celsius", &port("/dev/sda"))
        .is_some());
    // Then the sweep ends (and the stand-in's hung process is gone with the timeout).
    exp.wait("the hung drive's timeout", |m| {
        (m.value("smart_access_error", &port("/dev/sdg")) == Some(1.0)).then_some(())
    });
    assert!(t.elapsed() >= Duration::from_secs(8), "{:?}", t.elapsed());
}

#[test]
fn a_machine_without_disks() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("ipc");
    helper(&socket, "smartctl-nodisks", Duration::from_secs(5));
    let mut exp = Exporter::start(&socket, dir.path(), &[]);
    let m = exp.wait("the first refresh", |m| {
        m.value("smart_scan_devices", &[]).map(|_| m.clone())
    });
    assert_eq!(m.value("smart_scan_devices", &[]), Some(0.0));
    assert_eq!(m.value("smart_scan_error", &[]), Some(0.0));
    assert_eq!(m.value("smart_system_error", &[]), Some(0.0));
    assert!(m.find("smart_access_error", &[]).is_empty());
}

#[test]
fn no_helper_and_bad_config() {
    let dir = tempfile::tempdir().unwrap();
    let mut exp = Exporter::start(&dir.path().join("nobody-listens"), dir.path(), &[]);
    exp.wait("smart_system_error 1", |m| {
        (m.value("smart_system_error", &[]) == Some(1.0)).then_some(())
    });
    // The status page says the helper does not answer, and why.
    let page = http_get(exp.addr, "/", None).unwrap().body;
    assert!(page.contains("href=\"/metrics\""), "{page}");
    assert!(
        page.contains("<span class=\"bad\">unreachable</span>"),
        "{page}"
    );
    assert!(
        page.contains("Last error: <span class=\"bad\">") && page.contains("nobody-listens"),
        "{page}"
    );
    drop(exp);

    let bad_map = dir.path().join("map.json");
    std::fs::write(
        &bad_map,
        r#"{"generic":[{"id":5,"name":"bad name","type":"gauge"}]}"#,
    )
    .unwrap();
    for args in [
        vec!["--attr-mapping".to_string(), bad_map.display().to_string()],
        vec![
            "--device-db".to_string(),
            "/nonexistent/db.json".to_string(),
        ],
        vec!["--interval".to_string(), "0".to_string()],
    ] {
        let out = Command::new(EXPORTER)
            .arg("/nonexistent.sock")
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        // Each error said once, naming the file where there is one.
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        if args[0] == "--device-db" {
            assert!(err.contains("/nonexistent/db.json"), "{err}");
            assert_eq!(err.matches("No such file").count(), 1, "{err}");
        }
    }
}

/// The status page, loaded in headless Chromium: every recorded drive with its model and
/// serial as text, the failing NVMe marked FAILED, the hung drive with its read error.
/// `CUSTOS_SCREENSHOTS=DIR` keeps the screenshot (scripts/screenshots.sh).
#[test]
fn status_page_in_a_real_browser() {
    let Some(chromium) = custos_testkit::browser::Chromium::find() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("ipc");
    helper(&socket, "smartctl", Duration::from_secs(2));
    let mut exp = Exporter::start(&socket, dir.path(), &["--interval", "30"]);
    exp.wait("the first refresh", |m| {
        m.value("smart_access_error", &port("/dev/sdg"))
    });
    let url = format!("http://{}/", exp.addr);
    let dom = chromium.dump_dom(&url);
    for dev in ["sda", "sdb", "sdc", "sdd", "sde", "nvme0", "nvme1"] {
        let f = fixture(dev);
        let model = f["model_name"]
            .as_str()
            .or(f["scsi_model_name"].as_str())
            .unwrap();
        let cells = format!(
            "<td>/dev/{dev}</td><td>{model}</td><td>{}</td>",
            f["serial_number"].as_str().unwrap()
        );
        assert!(dom.contains(&cells), "{cells} not in the DOM:\n{dom}");
        let temp = format!(
            "<td class=\"num\">{} °C</td>",
            f["temperature"]["current"].as_f64().unwrap()
        );
        assert!(dom.contains(&temp), "{dev}: {temp} not in the DOM");
    }
    // The failing NVMe; the SSD's wear attribute (normalized value) from its recorded table.
    assert!(dom.contains("<td class=\"bad\">FAILED</td>"), "{dom}");
    assert!(
        dom.contains("<td class=\"num\">Wear_Leveling_Count 81</td>"),
        "{dom}"
    );
    assert!(dom.contains("<td class=\"num\">0 % used</td>"), "{dom}");
    // The hung drive: no data, and why.
    let hung = dom
        .split("<tr>")
        .find(|r| r.starts_with("<td>/dev/sdg</td>"))
        .unwrap_or_else(|| panic!("no /dev/sdg row:\n{dom}"));
    assert!(
        hung.contains("no data") && hung.contains("class=\"bad\""),
        "{hung}"
    );
    assert!(dom.contains("reachable"), "{dom}");

    let head = http_get(exp.addr, "/", None).expect("GET /");
    assert_eq!(
        head.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(head.header("x-content-type-options"), Some("nosniff"));

    let png = chromium.screenshot(&url, &dir.path().join("smart.png"));
    assert!(png.len() > 5_000, "a blank screenshot? {} bytes", png.len());
    custos_testkit::browser::keep_screenshot("prometheus_smart_exporter", &png);
}
