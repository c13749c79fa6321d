//! `--once`: poll every server once and print a summary in the layout of `burp -a S`.

use crate::config::Config;
use crate::exporter::connection;
use crate::model::{self, ClientList};
use std::borrow::Cow;
use std::fmt::Write as _;
use std::future::Future;
use std::time::{SystemTime, UNIX_EPOCH};

/// Polls every server once (client lists only) and renders a `burp -a S`-like summary.
/// Returns the text and whether every server answered.
pub async fn once(cfg: &Config) -> (String, bool) {
    let polls = cfg.clients.iter().map(|s| {
        let mut conn = connection(cfg, s);
        async move {
            let r = match conn.request("c:").await {
                Ok(doc) => model::parse_clients(&doc).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            (s, conn.target().addr(), r)
        }
    });
    let results = join_all(polls).await;
    let now = unix_now();
    let mut out = String::new();
    let mut ok = true;
    for (s, addr, r) in &results {
        match r {
            Ok(list) => out.push_str(&render_summary(&s.name, addr, now, list)),
            Err(e) => {
                ok = false;
                out.push_str(&header(&s.name, addr, now));
                let _ = writeln!(out, "   UNREACHABLE: {}", printable(e));
            }
        }
    }
    (out, ok)
}

/// Runs futures concurrently on this task (few servers; no extra dependency for it).
async fn join_all<F: Future>(futs: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut futs: Vec<_> = futs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in futs.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn header(server: &str, addr: &str, now: i64) -> String {
    let left = format!(" burp status  {server} ({addr})");
    let right = format_time(now);
    let pad = 78usize.saturating_sub(left.len() + right.len()).max(2);
    format!("\n{left}{}{right}\n\n", " ".repeat(pad))
}

/// The summary of one server, in the layout of `burp -a S` (`client_summary` in burp's
/// status_client_ncurses.c), plus one line per running child.
pub fn render_summary(server: &str, addr: &str, now: i64, list: &ClientList) -> String {
    let mut out = header(server, addr, now);
    let width = list
        .clients
        .iter()
        .map(|c| printable(&c.name).chars().count())
        .max()
        .unwrap_or(0)
        .max(18);
    for c in &list.clients {
        let last = match c.current() {
            Some(b) => format!("{:07} {}", b.number, format_time(b.timestamp)),
            None => format!("{:07} never", 0),
        };
        let _ = writeln!(
            out,
            "   {:<width$} {:>9}  last backup: {last}",
            printable(&c.name),
            printable(&c.run_status)
        );
        for ch in &c.children {
            let f = ch.counters.files();
            let _ = writeln!(
                out,
                "   {:<width$}   {} {:07} (pid {}): phase {}, {} files scanned, {} done, {} bytes",
                "",
                printable(&ch.action),
                ch.backup,
                ch.pid,
                printable(&ch.phase),
                f.scanned,
                f.total(),
                ch.counters.value("bytes"),
            );
        }
    }
    out
}

/// `s` with control characters (terminal escape sequences, newlines) and bidirectional
/// overrides written as `\u{..}` escapes: server-supplied text must not drive the operator's
/// terminal or fake lines of the summary.
pub fn printable(s: &str) -> Cow<'_, str> {
    let unsafe_char =
        |c: char| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if !s.chars().any(unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if unsafe_char(c) {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `YYYY-MM-DD HH:MM:SS +0000`: burp's date format, in UTC.
pub fn format_time(unix: i64) -> String {
    format!("{} +0000", custos_kit::html::utc(unix))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    #[test]
    fn summary_like_burp_a_s() {
        let list = model::parse_clients(&data("c.json")).unwrap();
        let text = render_summary("demo", "127.0.0.1:4972", 1_795_300_256, &list);
        let want = String::from_utf8(data("burp-a-S.txt")).unwrap();
        // The client lines are burp's, byte for byte.
        for line in want.lines().filter(|l| l.contains("last backup")) {
            assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
        }
        assert!(text.contains(" burp status  demo (127.0.0.1:4972)"));
        assert!(text.contains("2026-11-21 22:30:56 +0000"), "{text}");
        let running = model::parse_clients(&data("running_c.json")).unwrap();
        let text = render_summary("demo", "x:1", 0, &running);
        assert!(
            text.contains("   testclient           running  last backup: 0000001"),
            "{text}"
        );
        assert!(
            text.contains("backup 0000002 (pid 13962): phase backup, 1504 files scanned, 1503 done, 322798 bytes"),
            "{text}"
        );
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(printable("plain name"), "plain name");
        assert_eq!(
            printable("a\x1b[2Jb\nc\u{202e}d"),
            "a\\u{1b}[2Jb\\u{a}c\\u{202e}d"
        );
        let doc =
            "{\"clients\":[{\"name\":\"x\\u001b]0;owned\\u0007\",\"run_status\":\"idle\\r\"}]}";
        let list = model::parse_clients(doc.as_bytes()).unwrap();
        let text = render_summary("s", "a:1", 0, &list);
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
        assert!(text.contains("x\\u{1b}]0;owned\\u{7}"), "{text}");
    }

    #[test]
    fn time_format() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00 +0000");
        assert_eq!(format_time(1_795_300_217), "2026-11-21 22:30:17 +0000");
        assert_eq!(format_time(951_782_400), "2000-02-29 00:00:00 +0000");
        assert_eq!(format_time(-1), "1969-12-31 23:59:59 +0000");
    }
}
