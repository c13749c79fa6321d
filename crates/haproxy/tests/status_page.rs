//! The status page of a `prometheus` backend of the real haproxysessionmon against a real
//! HAProxy 2.6, loaded in headless Chromium: every frontend, backend and server HAProxy
//! reports on its runtime socket is a row, with the sessions held open and the states
//! (DOWN, MAINT) HAProxy gives. `CUSTOS_SCREENSHOTS=DIR` keeps the screenshot
//! (scripts/screenshots.sh). Hostile names are a unit test (HAProxy's config allows none).

mod common;

use common::{free_port, wait_for, Haproxy, Monitor};
use custos_testkit::browser::{keep_screenshot, Chromium};
use custos_testkit::http_get;
use std::net::SocketAddr;
use std::time::Duration;

/// `(pxname, svname, status)` of the frontend, backend and server rows of `show stat`.
fn rows(show_stat: &str) -> Vec<(String, String, String)> {
    let mut lines = show_stat.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .trim_start_matches("# ")
        .split(',')
        .collect();
    let col = |n: &str| header.iter().position(|h| *h == n).expect(n);
    let (px, sv, st, ty) = (col("pxname"), col("svname"), col("status"), col("type"));
    lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| f.len() > ty && ["0", "1", "2"].contains(&f[ty]))
        .map(|f| (f[px].to_string(), f[sv].to_string(), f[st].to_string()))
        .collect()
}

#[test]
fn page_in_a_real_browser() {
    let Some(chromium) = Chromium::find() else {
        return;
    };
    let Some(hap) = Haproxy::start() else { return };
    assert_eq!(hap.hold_sessions(3), 3);
    let port = free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let yaml = format!(
        "backends:\n  prom:\n    type: prometheus\n    listen: 127.0.0.1:{port}\n\
         servers:\n  lb:\n    endpoint: unix://{sock}\n    update-interval: 0.5\n\
         \x20   rows: [frontend, backend, server]\n    backends: [prom]\n",
        sock = hap.socket().display(),
    );
    let mut mon = Monitor::start(&yaml);
    // HAProxy marks the server on a closed port DOWN after its checks fail.
    wait_for("app3_down to be DOWN", Duration::from_secs(30), || {
        rows(&hap.show_stat())
            .into_iter()
            .any(|(_, sv, st)| sv == "app3_down" && st == "DOWN")
            .then_some(())
    });
    mon.wait_metrics(addr, "be_tcp at 3 sessions", |m| {
        m.value(
            "haproxy_backend_current_sessions",
            &[("haproxy", "lb"), ("proxy", "be_tcp")],
        )
        .filter(|v| *v == 3.0)
    });
    wait_for(
        "the page to show app3_down DOWN",
        Duration::from_secs(30),
        || {
            let body = http_get(addr, "/", None).ok()?.body;
            body.contains("<td>app3_down</td><td>server</td>")
                .then_some(())
                .filter(|()| body.contains("<td class=\"bad\">DOWN</td>"))
        },
    );
    let url = format!("http://{addr}/");
    let dom = chromium.dump_dom(&url);

    // Every row HAProxy reports, with its state, as text in the table.
    let truth = rows(&hap.show_stat());
    assert!(truth.len() >= 10, "{truth:?}");
    for (px, sv, _) in &truth {
        let cells = format!("<td>{px}</td><td>{sv}</td>");
        assert!(dom.contains(&cells), "{cells} not in the DOM:\n{dom}");
    }
    assert!(
        dom.contains("<td>be_tcp</td><td>BACKEND</td><td>backend</td><td class=\"num\">3</td>"),
        "be_tcp with 3 sessions:\n{dom}"
    );
    assert!(dom.contains("<td class=\"bad\">DOWN</td>"), "{dom}");
    assert!(dom.contains("<td class=\"warn\">MAINT</td>"), "{dom}");
    assert!(dom.contains("<h2>Endpoint lb</h2>") && dom.contains("reachable"));
    assert!(dom.contains("href=\"/metrics\""));

    let head = http_get(addr, "/", None).expect("GET /");
    assert_eq!(
        head.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(head.header("x-content-type-options"), Some("nosniff"));

    let dir = tempfile::tempdir().expect("tempdir");
    let png = chromium.screenshot(&url, &dir.path().join("haproxy.png"));
    assert!(png.len() > 5_000, "a blank screenshot? {} bytes", png.len());
    keep_screenshot("haproxysessionmon", &png);
    mon.assert_alive();
}
