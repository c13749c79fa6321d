//! The status page at `/`: per burp server its reachability and last poll error, its clients
//! with state, last backup and its age, and the backups running now with their progress.
//!
//! Rendered from the snapshots the pollers already published: a page view never asks a burp
//! server anything. Client names, phases and errors come from the server and are escaped by
//! the kit's [`html`](custos_kit::html) module.

use crate::model::Child;
use crate::snapshot::{ClientSnapshot, ServerSnapshot, Snapshots};
use custos_kit::html::{self, Cell, Page, Table, Tone};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Clients listed per server at most (a 2,000-client server would be a 1 MB page).
pub const MAX_CLIENTS: usize = 300;
/// Running children listed per server at most.
pub const MAX_RUNNING: usize = 100;

/// The page for every server in `store`, as of `now`; the browser reloads it every `refresh`.
pub fn render(store: &Snapshots, now: SystemTime, refresh: Duration) -> String {
    let mut page =
        Page::new(&format!("burp_exporter {}", env!("CARGO_PKG_VERSION"))).refresh(refresh);
    page.line(&[Cell::from(format!(
        "Status of {} burp server(s) as of the exporter's last polls; page made {}.",
        store.names().len(),
        html::utc_time(Some(now))
    ))]);
    let mut links = vec![
        ("/metrics".to_string(), "/metrics: all servers".to_string()),
        ("/probe".to_string(), "/probe: all servers".to_string()),
    ];
    for n in store.names() {
        links.push((
            format!("/probe?server[]={}", custos_kit::http::query_escape(n)),
            format!("/probe?server[]={n}: this server only"),
        ));
    }
    page.links(&links);
    for snap in store.all() {
        server(&mut page, &snap, now);
    }
    page.finish()
}

fn server(page: &mut Page, s: &ServerSnapshot, now: SystemTime) {
    page.heading(&format!("Server {}", s.server));
    let details = format!(
        "last poll {} ({}) · client list from {} · {} client(s)",
        html::utc_time(s.last_poll),
        html::ago(s.last_poll, now),
        html::ago(s.data_time, now),
        s.clients.len()
    );
    let polled = s.polls > 0 || s.last_error.is_some();
    page.target(polled, s.up, &details, s.last_error.as_deref());
    let mut clients = Table::new(
        "clients",
        &[
            "Client",
            "State",
            "Last backup",
            "Finished (UTC)",
            "Age",
            "Backups",
        ],
        MAX_CLIENTS,
    )
    .caption("Clients");
    let mut running = Table::new(
        "running children",
        &[
            "Client", "Action", "Backup", "Phase", "Files", "Bytes", "Progress",
        ],
        MAX_RUNNING,
    )
    .caption("Running now");
    for c in s.clients.iter() {
        clients.row(|| client_row(c, now));
        for ch in &c.client.children {
            running.row(|| child_row(&c.client.name, ch));
        }
    }
    if clients.is_empty() {
        page.line(&[Cell::from("No clients visible to this monitor client.")]);
    } else {
        page.table(&clients);
    }
    if running.is_empty() {
        page.line(&[Cell::from("Nothing running.")]);
    } else {
        page.table(&running);
    }
}

fn client_row(c: &ClientSnapshot, now: SystemTime) -> Vec<Cell> {
    let cl = &c.client;
    let state = if cl.has_in_progress() {
        Cell::new("running", Tone::Warn)
    } else {
        Cell::from(cl.run_status.as_str())
    };
    let (number, time, age) = match cl.current() {
        Some(b) => {
            let then = u64::try_from(b.timestamp)
                .ok()
                .and_then(|t| UNIX_EPOCH.checked_add(Duration::from_secs(t)));
            (
                Cell::new(b.number.to_string(), Tone::Num),
                Cell::from(html::utc(b.timestamp)),
                Cell::from(html::ago(then, now)),
            )
        }
        None => (
            Cell::new("never", Tone::Bad),
            Cell::from(""),
            Cell::from(""),
        ),
    };
    let count = c.history.map_or(String::new(), |h| h.count.to_string());
    vec![
        Cell::from(cl.name.as_str()),
        state,
        number,
        time,
        age,
        Cell::new(count, Tone::Num),
    ]
}

fn child_row(client: &str, ch: &Child) -> Vec<Cell> {
    let files = ch.counters.files();
    let done_bytes = ch.counters.value("bytes");
    let estimated = ch.counters.value("bytes_estimated");
    let (bytes, progress) = if estimated > 0 {
        (
            format!("{} of {}", html::bytes(done_bytes), html::bytes(estimated)),
            percent(done_bytes, estimated),
        )
    } else if files.scanned > 0 {
        (
            html::bytes(done_bytes),
            percent(files.total(), files.scanned),
        )
    } else {
        (html::bytes(done_bytes), String::new())
    };
    vec![
        Cell::from(client),
        Cell::from(ch.action.as_str()),
        Cell::new(ch.backup.to_string(), Tone::Num),
        Cell::from(ch.phase.as_str()),
        Cell::new(
            format!("{} of {} scanned", files.total(), files.scanned),
            Tone::Num,
        ),
        Cell::new(bytes, Tone::Num),
        Cell::new(progress, Tone::Num),
    ]
}

/// `done` of `total` in percent, at most 100 (estimates are estimates).
fn percent(done: u64, total: u64) -> String {
    let p = (done as f64 * 100.0 / total as f64).min(100.0);
    format!("{p:.0} %")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{parse_clients, History};
    use std::sync::Arc;

    fn data(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    fn snapshot(server: &str, doc: &[u8], up: bool) -> ServerSnapshot {
        let list = parse_clients(doc).unwrap();
        ServerSnapshot {
            server: server.into(),
            up,
            polls: 3,
            last_poll: Some(SystemTime::now()),
            data_time: Some(SystemTime::now()),
            clients: Arc::new(
                list.clients
                    .into_iter()
                    .map(|c| ClientSnapshot {
                        history: Some(History::of(&c)),
                        client: c,
                        stats: None,
                    })
                    .collect(),
            ),
            ..ServerSnapshot::default()
        }
    }

    #[test]
    fn clients_running_backups_and_errors() {
        let store = Snapshots::new(["main", "busy"]);
        store.publish(snapshot("main", &data("c.json"), true));
        let mut busy = snapshot("busy", &data("running_c.json"), false);
        busy.last_error = Some("timeout after 5s waiting for c:".into());
        store.publish(busy);
        let now = UNIX_EPOCH + Duration::from_secs(1_795_300_256 + 3600);
        let html = render(&store, now, Duration::from_secs(30));
        assert!(html.contains("<h2>Server main</h2>"), "{html}");
        assert!(html.contains("<span class=\"ok\">reachable</span>"));
        assert!(html.contains("<span class=\"bad\">unreachable</span>"));
        assert!(html.contains("timeout after 5s waiting for c:"));
        assert!(html.contains("<td>testclient</td><td class=\"warn\">running</td>"));
        // The running child of running_c.json: phase, files done of scanned, bytes.
        assert!(
            html.contains("<td>backup</td><td class=\"num\">1503 of 1504 scanned</td>"),
            "{html}"
        );
        assert!(html.contains("content=\"30\""));
        assert!(html.contains("href=\"/probe?server[]=busy\""));
    }

    #[test]
    fn hostile_client_names_are_text() {
        let names = [
            "<script>alert(1)</script>",
            "\"><img src=x onerror=alert(1)>",
            "<b>bold",
        ];
        let clients: Vec<String> = names
            .iter()
            .map(|n| {
                format!(
                    r#"{{"name":{},"run_status":"running","children":[{{"pid":1,"backup":2,"action":"backup","phase":{},"counters":[]}}],"backups":[]}}"#,
                    serde_json::to_string(n).unwrap(),
                    serde_json::to_string(n).unwrap()
                )
            })
            .collect();
        let doc = format!(r#"{{"clients":[{}]}}"#, clients.join(","));
        let store = Snapshots::new([names[0]]);
        let mut s = snapshot(names[0], doc.as_bytes(), false);
        s.last_error = Some(names[1].into());
        store.publish(s);
        let html = render(&store, SystemTime::now(), Duration::from_secs(5));
        for bad in ["<script", "<img", "<b>"] {
            assert!(!html.contains(bad), "{bad} in {html}");
        }
        assert!(html.contains("&lt;b&gt;bold"));
        assert!(html.contains("&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"));
    }

    #[test]
    fn many_clients_are_capped() {
        let clients: Vec<String> = (0..MAX_CLIENTS + 25)
            .map(|i| format!(r#"{{"name":"c{i:05}","run_status":"idle","backups":[]}}"#))
            .collect();
        let doc = format!(r#"{{"clients":[{}]}}"#, clients.join(","));
        let store = Snapshots::new(["big"]);
        store.publish(snapshot("big", doc.as_bytes(), true));
        let html = render(&store, SystemTime::now(), Duration::from_secs(5));
        assert!(html.contains(&format!("c{:05}", MAX_CLIENTS - 1)));
        assert!(!html.contains(&format!("c{:05}", MAX_CLIENTS)));
        assert!(html.contains("25 more clients not shown"), "{html}");
    }

    #[test]
    fn progress_is_bounded() {
        assert_eq!(percent(50, 200), "25 %");
        assert_eq!(percent(500, 200), "100 %");
        assert_eq!(percent(u64::MAX, 1), "100 %");
    }
}
