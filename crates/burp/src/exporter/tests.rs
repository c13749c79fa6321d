use super::*;
use std::collections::VecDeque;

fn data(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// A captured reply with testclient's backup 1 renumbered 2 (a newer backup).
fn with_backup_2(name: &str) -> String {
    String::from_utf8(data(name))
        .unwrap()
        .replace("\"number\":1", "\"number\":2")
}

/// testclient's entry in a snapshot.
fn testclient(s: &ServerSnapshot) -> &ClientSnapshot {
    s.clients
        .iter()
        .find(|c| c.client.name == "testclient")
        .unwrap()
}

/// Replays captured replies by command; records what was asked.
#[derive(Default)]
struct Replay {
    replies: HashMap<String, Vec<u8>>,
    /// Errors to return instead, first come first served.
    fail: VecDeque<Error>,
    asked: Vec<String>,
    /// A command whose request breaks the connection.
    break_on: Option<&'static str>,
    connected: bool,
    attempts: u64,
}

impl Replay {
    fn idle() -> Replay {
        let mut r = Replay::default();
        r.replies.insert("c:".into(), data("c.json"));
        r.replies
            .insert("c:testclient".into(), data("c_testclient.json"));
        r.replies.insert(
            "c:testclient:b:1:l:backup_stats".into(),
            data("c_testclient_b_1_l_backup_stats.json"),
        );
        r
    }
}

impl Replay {
    /// testclient's backup 2 running.
    fn running() -> Replay {
        let mut r = Replay::idle();
        r.replies.insert("c:".into(), data("running_c.json"));
        r.replies
            .insert("c:testclient".into(), data("running_c_testclient.json"));
        r
    }
}

impl Source for Replay {
    fn request(&mut self, cmd: &str) -> impl Future<Output = Result<Vec<u8>, Error>> + Send {
        self.asked.push(cmd.to_string());
        if self.break_on == Some(cmd) {
            self.connected = false;
            return std::future::ready(Err(eof()));
        }
        let r = match self.fail.pop_front() {
            Some(e) => {
                if e.needs_reconnect() {
                    self.connected = false;
                }
                Err(e)
            }
            None => self
                .replies
                .get(cmd)
                .cloned()
                .ok_or_else(|| Error::Warning(format!("Could not find client: {cmd}"))),
        };
        std::future::ready(r)
    }
    fn ensure_connected(&mut self) -> impl Future<Output = Result<(), Error>> + Send {
        if !self.connected {
            self.attempts += 1;
        }
        self.connected = true;
        std::future::ready(Ok(()))
    }
    fn is_connected(&self) -> bool {
        self.connected
    }
    fn connect_attempts(&self) -> u64 {
        self.attempts
    }
}

fn eof() -> Error {
    Error::Eof {
        addr: "127.0.0.1:4972".into(),
    }
}

#[tokio::test]
async fn first_poll_fetches_details_once() {
    let store = Snapshots::new(["s"]);
    let mut p = Poller::new("s", Duration::from_secs(30));
    let mut src = Replay::idle();
    p.poll(&mut src, &store).await;
    assert_eq!(
        src.asked,
        ["c:", "c:testclient", "c:testclient:b:1:l:backup_stats"]
    );
    let s = store.get("s").unwrap();
    assert!(s.up);
    assert_eq!(s.contact_attempts, 1);
    assert_eq!(s.clients.len(), 2);
    let tc = testclient(&s);
    assert_eq!(tc.history.unwrap().count, 1);
    assert_eq!(tc.current_stats().unwrap().bytes, 308905);
    let mon = s
        .clients
        .iter()
        .find(|c| c.client.name == "monitor")
        .unwrap();
    assert_eq!(mon.history.unwrap().count, 0);

    // Second poll: nothing changed, one request.
    src.asked.clear();
    p.poll(&mut src, &store).await;
    assert_eq!(src.asked, ["c:"]);
    let s = store.get("s").unwrap();
    assert_eq!(s.polls, 2);
    assert_eq!(s.contact_attempts, 1);
    let tc = testclient(&s);
    assert_eq!(tc.current_stats().unwrap().bytes, 308905);
}

#[tokio::test]
async fn identical_reply_keeps_the_list_without_parsing_it() {
    let store = Snapshots::new(["s"]);
    let mut p = Poller::new("s", Duration::from_secs(30));
    let mut src = Replay::idle();
    p.poll(&mut src, &store).await;
    let first = store.get("s").unwrap();
    std::thread::sleep(Duration::from_millis(5));
    p.poll(&mut src, &store).await;
    let second = store.get("s").unwrap();
    assert!(
        Arc::ptr_eq(&first.clients, &second.clients),
        "same bytes, same list: not parsed and rebuilt again"
    );
    assert!(second.data_time > first.data_time, "the data is fresh");
    assert_eq!((second.polls, second.up), (2, true));
    assert_eq!(testclient(&second).current_stats().unwrap().bytes, 308905);

    // One byte more (a new backup's counters, say): parsed again.
    let mut changed = data("c.json");
    changed.push(b' ');
    src.replies.insert("c:".into(), changed);
    p.poll(&mut src, &store).await;
    let third = store.get("s").unwrap();
    assert!(!Arc::ptr_eq(&second.clients, &third.clients));
    assert_eq!(third.clients, second.clients);
}

#[tokio::test]
async fn new_backup_number_fetches_stats_again() {
    let store = Snapshots::new(["s"]);
    let mut p = Poller::new("s", Duration::from_secs(30));
    let mut src = Replay::idle();
    p.poll(&mut src, &store).await;
    // Backup 2 completes: c: shows it as current.
    let c2 = with_backup_2("c.json");
    src.replies.insert("c:".into(), c2.into_bytes());
    src.asked.clear();
    p.poll(&mut src, &store).await;
    assert_eq!(
        src.asked,
        ["c:", "c:testclient", "c:testclient:b:2:l:backup_stats"]
    );
    let s = store.get("s").unwrap();
    let tc = testclient(&s);
    // The stats log for 2 is missing (warning): no stale stats of backup 1 are shown.
    assert!(tc.current_stats().is_none());
    assert!(s.up);
    // And it is not asked again on the next poll.
    src.asked.clear();
    p.poll(&mut src, &store).await;
    assert_eq!(src.asked, ["c:"]);
}

#[tokio::test]
async fn server_down_keeps_data_and_counts_errors() {
    let store = Snapshots::new(["s"]);
    let mut p = Poller::new("s", Duration::from_secs(30));
    let mut src = Replay::idle();
    p.poll(&mut src, &store).await;
    let good = store.get("s").unwrap();
    src.fail.push_back(eof());
    p.poll(&mut src, &store).await;
    let s = store.get("s").unwrap();
    assert!(!s.up);
    assert_eq!(s.errors.get("closed"), 1);
    assert_eq!(s.clients.len(), 2, "last good data kept");
    assert_eq!(s.data_time, good.data_time);
    assert!(s.last_error.as_deref().unwrap().contains("closed"));
    // Back up: reconnects (a second contact attempt) and clears the error.
    p.poll(&mut src, &store).await;
    let s = store.get("s").unwrap();
    assert!(s.up);
    assert_eq!(s.contact_attempts, 2);
    assert!(s.last_error.is_none());
    assert_eq!(s.errors.total(), 1);
}

#[tokio::test]
async fn broken_detail_request_retries_next_poll() {
    let store = Snapshots::new(["s"]);
    let mut p = Poller::new("s", Duration::from_secs(30));
    let mut f = Replay::idle();
    f.break_on = Some("c:testclient");
    p.poll(&mut f, &store).await;
    assert_eq!(f.asked, ["c:", "c:testclient"]);
    let s = store.get("s").unwrap();
    assert!(!s.up, "a broken connection fails the poll");
    assert_eq!(s.errors.get("closed"), 1);
    assert_eq!(s.clients.len(), 2, "the client list of this poll is served");
    // Next poll (connection fine again) fetches the details.
    f.break_on = None;
    f.asked.clear();
    p.poll(&mut f, &store).await;
    assert_eq!(
        f.asked,
        ["c:", "c:testclient", "c:testclient:b:1:l:backup_stats"]
    );
    let s = store.get("s").unwrap();
    assert!(s.up);
    assert_eq!(s.contact_attempts, 2);
}

#[tokio::test]
async fn garbage_reply_is_a_parse_error() {
    let store = Snapshots::new(["s"]);
    let mut p = Poller::new("s", Duration::from_secs(30));
    let mut src = Replay::idle();
    src.replies
        .insert("c:".into(), b"{\"clients\":[{\"name\":1},".to_vec());
    p.poll(&mut src, &store).await;
    let s = store.get("s").unwrap();
    assert!(!s.up);
    assert_eq!(s.parse_errors, 1);
    assert_eq!(s.errors.get("parse"), 1);
    // One bad entry in an otherwise fine list: counted, the rest served.
    src.replies.insert(
        "c:".into(),
        br#"{"clients":[{"name":1},{"name":"ok","run_status":"idle"}]}"#.to_vec(),
    );
    p.poll(&mut src, &store).await;
    let s = store.get("s").unwrap();
    assert!(s.up);
    assert_eq!(s.parse_errors, 2);
    assert_eq!(s.clients.len(), 1);
    // The same reply again (not parsed again): the bad entry is still counted per poll.
    p.poll(&mut src, &store).await;
    let s = store.get("s").unwrap();
    assert_eq!((s.up, s.parse_errors, s.clients.len()), (true, 3, 1));
}

#[tokio::test]
async fn running_backup_then_vanished_client() {
    let store = Snapshots::new(["s"]);
    let mut p = Poller::new("s", Duration::from_secs(30));
    let mut src = Replay::running();
    p.poll(&mut src, &store).await;
    let s = store.get("s").unwrap();
    let tc = testclient(&s);
    assert_eq!(tc.client.children[0].phase, "backup");
    assert_eq!(
        tc.history.unwrap().count,
        1,
        "the working backup is not counted"
    );
    src.replies.insert(
        "c:".into(),
        br#"{"clients":[{"name":"monitor","run_status":"idle","backups":[]}]}"#.to_vec(),
    );
    p.poll(&mut src, &store).await;
    assert_eq!(store.get("s").unwrap().clients.len(), 1);
    assert!(p.details.is_empty(), "cache follows the client list");
}

#[tokio::test]
async fn finished_backup_shows_in_the_poll_that_sees_the_client_idle() {
    let store = Snapshots::new(["s"]);
    let mut p = Poller::new("s", Duration::from_secs(30));
    let mut src = Replay::running();
    p.poll(&mut src, &store).await;
    // Backup 2 finished, but this connection's `c:` still lists backup 1 as current
    // (burp's status child did not reload the list); `c:testclient` rereads it.
    src.replies.insert("c:".into(), data("c.json"));
    let fresh = with_backup_2("c_testclient.json");
    src.replies
        .insert("c:testclient".into(), fresh.into_bytes());
    src.asked.clear();
    p.poll(&mut src, &store).await;
    assert_eq!(
        src.asked,
        [
            "c:",
            "c:testclient",
            "c:testclient",
            "c:testclient:b:2:l:backup_stats"
        ]
    );
    let s = store.get("s").unwrap();
    let tc = testclient(&s);
    assert_eq!(tc.client.run_status, "idle");
    assert_eq!(tc.client.current().unwrap().number, 2);
    assert!(!tc.client.has_in_progress());
    // Idle at the last poll too: no more refreshes. (burp's later `c:` replies use the
    // reread list.)
    let c2 = with_backup_2("c.json");
    src.replies.insert("c:".into(), c2.into_bytes());
    src.asked.clear();
    p.poll(&mut src, &store).await;
    assert_eq!(src.asked, ["c:"]);
}

#[tokio::test]
async fn stale_working_entry_of_an_idle_client_is_reread() {
    let store = Snapshots::new(["s"]);
    let mut p = Poller::new("s", Duration::from_secs(30));
    let mut src = Replay::running();
    p.poll(&mut src, &store).await;
    // The child is gone, but this connection's list still has backup 2 as `working`.
    let stale_doc = br#"{"clients":[{"name":"monitor","run_status":"idle","backups":[]},
        {"name":"testclient","run_status":"idle","backups":[
        {"number":1,"timestamp":1,"flags":["current"],"logs":{"list":["backup"]}},
        {"number":2,"timestamp":2,"flags":["working"]}]}]}"#;
    src.replies.insert("c:".into(), stale_doc.to_vec());
    let fresh = with_backup_2("c_testclient.json");
    src.replies
        .insert("c:testclient".into(), fresh.into_bytes());
    p.poll(&mut src, &store).await;
    let s = store.get("s").unwrap();
    let tc = testclient(&s);
    assert_eq!(tc.client.current().unwrap().number, 2);
    assert!(
        !tc.client.has_in_progress(),
        "the stale working entry is gone"
    );
}

#[tokio::test]
async fn budget_defers_details() {
    let store = Snapshots::new(["s"]);
    let mut p = Poller::new("s", Duration::ZERO);
    let mut src = Replay::idle();
    p.poll(&mut src, &store).await;
    assert_eq!(src.asked, ["c:"]);
    assert!(store.get("s").unwrap().up);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_metrics_and_probe() {
    let store = Arc::new(Snapshots::new(["one", "two"]));
    let mut p = Poller::new("one", Duration::from_secs(30));
    p.poll(&mut Replay::idle(), &store).await;
    let mut p = Poller::new("two", Duration::from_secs(30));
    let mut running = Replay::idle();
    running.replies.insert("c:".into(), data("running_c.json"));
    p.poll(&mut running, &store).await;

    let app = crate::routes::router(Arc::clone(&store), Duration::from_secs(5));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let get = |path: &'static str| {
        tokio::task::spawn_blocking(move || custos_testkit::http_get(addr, path, None).unwrap())
    };
    let all = get("/metrics").await.unwrap();
    assert_eq!(all.status, 200);
    assert!(all.body.contains("burp_up{server=\"one\"} 1"));
    assert!(all.body.contains("burp_up{server=\"two\"} 1"));
    let two = get("/probe?server%5B%5D=two").await.unwrap();
    assert_eq!(two.status, 200);
    assert!(two.body.contains("burp_client_child_phase{server=\"two\""));
    assert!(!two.body.contains("server=\"one\""), "{}", two.body);
    let plain = get("/probe?server=one&server=two").await.unwrap();
    assert!(plain.body.contains("server=\"one\"") && plain.body.contains("server=\"two\""));
    let none = get("/probe?server[]=three").await.unwrap();
    assert_eq!(none.status, 404);
    assert!(none.body.contains("configured: one, two"), "{}", none.body);
    let landing = get("/").await.unwrap();
    assert!(landing.body.contains("/probe?server[]=two"));
    // The status page shows what the pollers published, with its headers.
    assert!(
        landing.body.contains("<h2>Server two</h2>"),
        "{}",
        landing.body
    );
    assert!(
        landing.body.contains("<td>testclient</td>"),
        "{}",
        landing.body
    );
    assert_eq!(
        landing.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(
        landing.header("content-security-policy"),
        Some(custos_kit::html::CSP)
    );
    server.abort();
}

#[test]
fn ticks_keep_their_grid_and_an_overrun_polls_once_at_once() {
    let t0 = std::time::Instant::now();
    let s = Duration::from_secs(1);
    let ms = Duration::from_millis;
    // On time: the next grid point.
    assert_eq!(next_tick(t0, t0 + ms(40), s), t0 + s);
    // A poll of 2.3 intervals: the next poll at once (tick 2, already past), then tick 3;
    // tick 1 is skipped.
    let late = next_tick(t0, t0 + ms(2300), s);
    assert_eq!(late, t0 + 2 * s);
    assert_eq!(next_tick(late, t0 + ms(2340), s), t0 + 3 * s);
    // Exactly on a grid point counts as that tick.
    assert_eq!(next_tick(t0, t0 + 2 * s, s), t0 + 2 * s);
    // A zero interval (not configurable, but no busy loop and no panic).
    assert!(next_tick(t0, t0, Duration::ZERO) > t0);
    // A huge interval does not overflow.
    let year = Duration::from_secs(86_400 * 365);
    assert_eq!(next_tick(t0, t0 + ms(5), year), t0 + year);
}
