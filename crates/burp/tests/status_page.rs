//! The status page of the real `burp_exporter` against a real burp 3.1.4 server, loaded in
//! headless Chromium: every client the server reports to burp's own client (`burp -a m`) is
//! on the page as text, including clients named with markup, and a running backup shows its
//! phase and progress. `CUSTOS_SCREENSHOTS=DIR` keeps the screenshot (scripts/screenshots.sh).

mod common;

use common::{free_port, require, BurpServer, Exporter};
use custos_testkit::browser::{keep_screenshot, Chromium};
use custos_testkit::http_get;
use std::time::Duration;

/// Client names burp accepts (a clientconfdir file name) that are markup if not escaped.
const HOSTILE: [&str; 2] = ["<b>bold", "<img src=x onerror=alert(1)>"];

/// How a browser serializes text: `&`, `<`, `>` as entities.
fn as_dom_text(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[test]
fn page_in_a_real_browser() {
    let (Some(_), Some(chromium)) = (require("burp", "burp"), Chromium::find()) else {
        return;
    };
    let server = BurpServer::start("status", &[("NAMED_CLIENTS", &HOSTILE.join("\n"))]);
    // A second server nobody listens for: the page says it is unreachable and why.
    let mut gone = server.client_entry("gone");
    gone.burp_port = free_port();
    let mut ex = Exporter::start(&[server.client_entry("status"), gone]);
    server.slow_backup(8, 30);
    ex.wait_metrics("the running backup", Duration::from_secs(60), |m| {
        m.find(
            "burp_client_child_phase",
            &[("server", "status"), ("name", "testclient")],
        )
        .into_iter()
        .any(|s| s.value == 1.0)
        .then_some(())
    });
    ex.wait_metrics("a failed poll of gone", Duration::from_secs(30), |m| {
        m.value("burp_polls_total", &[("server", "gone")])
            .filter(|n| *n >= 1.0)
    });
    let url = format!("http://{}/", ex.addr);
    let dom = chromium.dump_dom(&url);

    // Every client burp's own client sees, as text in a cell.
    let truth = server.status_json("");
    let names: Vec<&str> = truth["clients"]
        .as_array()
        .expect("clients")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    for h in HOSTILE {
        assert!(names.contains(&h), "burp does not list {h}: {truth}");
    }
    for n in &names {
        let cell = format!("<td>{}</td>", as_dom_text(n));
        assert!(dom.contains(&cell), "{cell} not in the DOM:\n{dom}");
    }
    // Markup in a name stays text: no element came from it.
    for tag in ["<b>", "<b ", "<img"] {
        assert!(!dom.contains(tag), "{tag} in the DOM:\n{dom}");
    }
    assert!(dom.contains("<h2>Server status</h2>"), "{dom}");
    assert!(dom.contains("<span class=\"ok\">reachable</span>"), "{dom}");
    let gone = dom
        .split("<h2>Server gone</h2>")
        .nth(1)
        .unwrap_or_else(|| panic!("no section for the server that is gone:\n{dom}"));
    assert!(
        gone.contains("<span class=\"bad\">unreachable</span>")
            && gone.contains("Last error: <span class=\"bad\">"),
        "{gone}"
    );
    // The running backup: a row with its action and phase.
    assert!(
        dom.contains("<td>testclient</td><td>backup</td>"),
        "no running backup row:\n{dom}"
    );
    assert!(dom.contains("href=\"/metrics\"") && dom.contains("href=\"/probe\""));

    let head = http_get(ex.addr, "/", None).expect("GET /");
    assert_eq!(
        head.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(head.header("x-content-type-options"), Some("nosniff"));
    assert!(head
        .header("content-security-policy")
        .is_some_and(|c| c.starts_with("default-src 'none'")));

    let dir = tempfile::tempdir().expect("tempdir");
    let png = chromium.screenshot(&url, &dir.path().join("burp.png"));
    assert!(png.len() > 5_000, "a blank screenshot? {} bytes", png.len());
    keep_screenshot("burp_exporter", &png);
}
