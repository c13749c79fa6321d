//! The status page at `/` of a `prometheus` backend: per HAProxy endpoint it serves, the
//! frontends, backends and servers of the last poll with current sessions, limit and state,
//! and when the endpoint was last read and its last error.
//!
//! Rendered from the snapshot store the pollers fill: a page view never fetches a stats
//! page. Proxy and server names come from HAProxy's config and are escaped by the kit's
//! [`html`](custos_kit::html) module.

use crate::sample::Sample;
use crate::snapshot::{ServerSnapshot, Snapshots};
use custos_kit::html::{self, Cell, Page, Table, Tone};
use std::time::{Duration, SystemTime};

/// Rows listed per endpoint at most.
pub const MAX_ROWS: usize = 500;

/// One endpoint the page shows: its configured id and its address without credentials.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub id: String,
    pub display: String,
}

/// The page for `endpoints`, as of `now`; the browser reloads it every `refresh`.
pub fn render(
    store: &Snapshots,
    endpoints: &[Endpoint],
    now: SystemTime,
    refresh: Duration,
) -> String {
    let mut page =
        Page::new(&format!("haproxysessionmon {}", env!("CARGO_PKG_VERSION"))).refresh(refresh);
    page.line(&[Cell::from(format!(
        "Sessions of {} HAProxy endpoint(s) as of the last polls; page made {}.",
        endpoints.len(),
        html::utc_time(Some(now))
    ))]);
    page.links(&[("/metrics".into(), "/metrics".into())]);
    for e in endpoints {
        if let Some(s) = store.get(&e.id) {
            endpoint(&mut page, e, &s, now);
        }
    }
    page.finish()
}

fn endpoint(page: &mut Page, e: &Endpoint, s: &ServerSnapshot, now: SystemTime) {
    page.heading(&format!("Endpoint {}", e.id));
    let details = format!(
        "{} · last good poll {} ({}) · {} poll(s)",
        e.display,
        html::utc_time(s.data_time),
        html::ago(s.data_time, now),
        s.fetches
    );
    let polled = s.fetches > 0 || s.last_error.is_some();
    page.target(polled, s.up, &details, s.last_error.as_deref());
    let Some(batch) = &s.batch else {
        page.line(&[Cell::from("No stats read yet.")]);
        return;
    };
    let mut t = Table::new(
        "rows",
        &[
            "Proxy", "Server", "Type", "Sessions", "Limit", "Use", "State",
        ],
        MAX_ROWS,
    )
    .caption("Frontends, backends and servers");
    for r in &batch.samples {
        t.row(|| row(r));
    }
    page.table(&t);
}

fn row(r: &Sample) -> Vec<Cell> {
    let num = |v: Option<u64>| Cell::new(v.map_or(String::new(), |n| n.to_string()), Tone::Num);
    let usage = match (r.counts.scur, r.counts.slim) {
        (Some(cur), Some(lim)) if lim > 0 => {
            let p = cur as f64 * 100.0 / lim as f64;
            let tone = if p >= 90.0 { Tone::Bad } else { Tone::Num };
            Cell::new(format!("{p:.0} %"), tone)
        }
        _ => Cell::new("", Tone::Num),
    };
    let status = r.status.as_deref().unwrap_or("");
    let tone = match status.split_whitespace().next().unwrap_or("") {
        "UP" | "OPEN" => Tone::Ok,
        "DOWN" | "NOLB" => Tone::Bad,
        "MAINT" | "DRAIN" | "STOP" => Tone::Warn,
        _ => Tone::Plain,
    };
    vec![
        Cell::from(r.proxy.as_str()),
        Cell::from(r.svname.as_str()),
        Cell::from(r.row_type.as_str()),
        num(r.counts.scur),
        num(r.counts.slim),
        usage,
        Cell::new(status, tone),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::{Batch, Counts, RowType};
    use std::sync::Arc;

    fn sample(proxy: &str, svname: &str, t: RowType, status: &str, scur: u64, slim: u64) -> Sample {
        Sample {
            proxy: proxy.into(),
            svname: svname.into(),
            row_type: t,
            status: Some(status.into()),
            counts: Counts {
                scur: Some(scur),
                slim: Some(slim),
                ..Counts::default()
            },
        }
    }

    fn store_with(samples: Vec<Sample>, error: Option<&str>) -> Snapshots {
        let store = Snapshots::new(["lb"]);
        store.publish(ServerSnapshot {
            server: "lb".into(),
            up: error.is_none(),
            fetches: 4,
            data_time: Some(SystemTime::now()),
            last_error: error.map(str::to_owned),
            batch: Some(Arc::new(Batch {
                server: "lb".into(),
                endpoint: "http://127.0.0.1:1/;csv".into(),
                time: SystemTime::now(),
                samples,
            })),
            ..ServerSnapshot::default()
        });
        store
    }

    fn endpoints() -> Vec<Endpoint> {
        vec![Endpoint {
            id: "lb".into(),
            display: "http://127.0.0.1:1/;csv".into(),
        }]
    }

    #[test]
    fn rows_with_sessions_limits_and_state() {
        let store = store_with(
            vec![
                sample("web", "FRONTEND", RowType::Frontend, "OPEN", 3, 100),
                sample("app", "app1", RowType::Server, "UP", 19, 20),
                sample("app", "app2", RowType::Server, "DOWN", 0, 20),
                sample("app", "BACKEND", RowType::Backend, "UP", 19, 40),
            ],
            Some("HTTP 503 from http://127.0.0.1:1/;csv"),
        );
        let html = render(
            &store,
            &endpoints(),
            SystemTime::now(),
            Duration::from_secs(10),
        );
        assert!(html.contains("<h2>Endpoint lb</h2>"));
        assert!(
            html.contains(
                "<td>app</td><td>app1</td><td>server</td><td class=\"num\">19</td>\
             <td class=\"num\">20</td><td class=\"bad\">95 %</td><td class=\"ok\">UP</td>"
            ),
            "{html}"
        );
        assert!(html.contains("<td class=\"bad\">DOWN</td>"));
        assert!(html.contains("<td>web</td><td>FRONTEND</td><td>frontend</td>"));
        assert!(html.contains("<span class=\"bad\">unreachable</span>"));
        assert!(html.contains("HTTP 503 from"));
    }

    #[test]
    fn hostile_names_are_text_and_rows_capped() {
        let mut rows = vec![sample(
            "<script>alert(1)</script>",
            "\"><img src=x onerror=alert(1)>",
            RowType::Server,
            "<b>UP",
            1,
            0,
        )];
        for i in 0..MAX_ROWS + 9 {
            rows.push(sample("p", &format!("s{i}"), RowType::Server, "UP", 0, 0));
        }
        let html = render(
            &store_with(rows, None),
            &endpoints(),
            SystemTime::now(),
            Duration::from_secs(10),
        );
        for bad in ["<script", "<img", "<b>"] {
            assert!(!html.contains(bad), "{bad} in page");
        }
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("10 more rows not shown"));
    }
}
