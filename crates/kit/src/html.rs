//! The status page every exporter serves at `/`: a small server-rendered HTML page built from
//! the state the exporter already holds (never a poll of its own), readable without
//! JavaScript.
//!
//! Names on these pages come from peers (burp client names, HAProxy proxy names, drive
//! models) and are hostile: every piece of text goes through [`escape`], and the page is
//! served with a Content-Security-Policy that allows no script, so even a missed escape
//! could not run one. Output is bounded: a table shows at most its row cap and says how many
//! rows it left out. Hand-written rather than a template crate: one escape function and a
//! few builders are all the pages need (see docs/ARCHITECTURE.md §7).

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What a page may load: nothing but its own inline style (no script, image, frame or form).
pub const CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Characters of one table cell kept at most; a peer's 30 kB name would otherwise be the page.
pub const MAX_CELL: usize = 200;

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.9em}\
th,td{border:1px solid #ccc;padding:.2em .5em;text-align:left;vertical-align:top}\
th{background:#eee}td.num{white-space:nowrap}td:last-child{max-width:32em}td.bad:last-child{min-width:12em}caption{text-align:left;font-weight:bold;padding:.2em 0}td.num{text-align:right}\
.ok{color:#0a6b0a;font-weight:bold}.bad{color:#b00;font-weight:bold}.warn{color:#a60}\
.more{font-style:italic;color:#555}.meta{color:#555}";

/// `s` with `& < > " '` as character references and control characters (terminal escapes,
/// NUL) as `\u{..}`, so text from a peer is only ever text, in an element or an attribute.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// A duration as a person reads it at a glance: `42 s`, `5 min 3 s`, `2 h 10 min`, `3 d 4 h`.
pub fn age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {} s", s / 60, s % 60),
        3600..=86_399 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

/// A byte count in binary units with one decimal: `512 B`, `1.5 KiB`, `3.2 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = UNITS[0];
    for u in &UNITS[1..] {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

/// How long before `now` `then` was (`never` for `None`; a clock stepping back gives `0 s`).
pub fn ago(then: Option<SystemTime>, now: SystemTime) -> String {
    match crate::snapshot::age(then, now) {
        Some(d) => format!("{} ago", age(d)),
        None => "never".into(),
    }
}

/// `YYYY-MM-DD HH:MM:SS` in UTC of a Unix time (any i64, no panic).
pub fn utc(unix: i64) -> String {
    let days = unix.div_euclid(86400);
    let secs = unix.rem_euclid(86400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// [`utc`] of a `SystemTime`, with its zone, or `never`.
pub fn utc_time(t: Option<SystemTime>) -> String {
    match t {
        Some(t) => {
            let unix = match t.duration_since(UNIX_EPOCH) {
                Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
            };
            format!("{} UTC", utc(unix))
        }
        None => "never".into(),
    }
}

/// How a cell is shown: plain, a number (right-aligned), good, bad or a warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Plain,
    Num,
    Ok,
    Bad,
    Warn,
}

impl Tone {
    fn class(self) -> Option<&'static str> {
        match self {
            Tone::Plain => None,
            Tone::Num => Some("num"),
            Tone::Ok => Some("ok"),
            Tone::Bad => Some("bad"),
            Tone::Warn => Some("warn"),
        }
    }
}

/// One table cell: text (escaped and cut to [`MAX_CELL`] characters when rendered) and a tone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    pub text: String,
    pub tone: Tone,
}

impl Cell {
    pub fn new(text: impl Into<String>, tone: Tone) -> Cell {
        Cell {
            text: text.into(),
            tone,
        }
    }
}

impl From<String> for Cell {
    fn from(text: String) -> Cell {
        Cell::new(text, Tone::Plain)
    }
}

impl From<&str> for Cell {
    fn from(text: &str) -> Cell {
        Cell::new(text, Tone::Plain)
    }
}

/// A table with a header row that keeps at most `cap` rows and counts the rest.
#[derive(Debug, Clone)]
pub struct Table {
    caption: Option<String>,
    headers: Vec<&'static str>,
    rows: Vec<Vec<Cell>>,
    cap: usize,
    left_out: usize,
    what: &'static str,
}

impl Table {
    /// A table of `what` (plural, for the "N more" line) keeping at most `cap` rows.
    pub fn new(what: &'static str, headers: &[&'static str], cap: usize) -> Table {
        Table {
            caption: None,
            headers: headers.to_vec(),
            rows: Vec::new(),
            cap,
            left_out: 0,
            what,
        }
    }

    /// A caption shown above the table.
    pub fn caption(mut self, text: &str) -> Table {
        self.caption = Some(text.to_string());
        self
    }

    /// Adds the row `cells` makes, or only counts it when the table is full: a page of a
    /// 2,000-client server formats the rows it shows, not all of them.
    pub fn row(&mut self, cells: impl FnOnce() -> Vec<Cell>) {
        if self.rows.len() < self.cap {
            self.rows.push(cells());
        } else {
            self.left_out += 1;
        }
    }

    /// Rows kept.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty() && self.left_out == 0
    }
}

/// A page under construction: a title, sections of headings, lines and tables.
#[derive(Debug, Clone)]
pub struct Page {
    title: String,
    refresh: Option<Duration>,
    body: String,
}

impl Page {
    /// A page titled `title` (also its first heading).
    pub fn new(title: &str) -> Page {
        Page {
            title: title.to_string(),
            refresh: None,
            body: format!("<h1>{}</h1>\n", escape(title)),
        }
    }

    /// Asks the browser to reload every `every` (at least 1 s): the page follows the polls
    /// without any script.
    pub fn refresh(mut self, every: Duration) -> Page {
        self.refresh = Some(every.max(Duration::from_secs(1)));
        self
    }

    /// A second-level heading.
    pub fn heading(&mut self, text: &str) {
        let _ = writeln!(self.body, "<h2>{}</h2>", escape(text));
    }

    /// A paragraph of `parts`, each escaped and shown in its tone.
    pub fn line(&mut self, parts: &[Cell]) {
        self.body.push_str("<p>");
        for p in parts {
            span(&mut self.body, p);
        }
        self.body.push_str("</p>\n");
    }

    /// The state of a polled target (`not polled yet`, `reachable`, `unreachable`), then
    /// `details`, then its last error on a line of its own.
    pub fn target(&mut self, polled: bool, up: bool, details: &str, last_error: Option<&str>) {
        let state = if !polled {
            Cell::new("not polled yet", Tone::Warn)
        } else if up {
            Cell::new("reachable", Tone::Ok)
        } else {
            Cell::new("unreachable", Tone::Bad)
        };
        self.line(&[state, Cell::from(format!(" · {details}"))]);
        if let Some(e) = last_error {
            self.line(&[Cell::from("Last error: "), Cell::new(e, Tone::Bad)]);
        }
    }

    /// A list of links (`href`, text); both escaped.
    pub fn links(&mut self, links: &[(String, String)]) {
        self.body.push_str("<ul>\n");
        for (href, text) in links {
            let _ = writeln!(
                self.body,
                "<li><a href=\"{}\">{}</a></li>",
                escape(href),
                escape(text)
            );
        }
        self.body.push_str("</ul>\n");
    }

    /// Renders `t`, with a last row saying how many rows it left out.
    pub fn table(&mut self, t: &Table) {
        let b = &mut self.body;
        b.push_str("<table>\n");
        if let Some(c) = &t.caption {
            let _ = writeln!(b, "<caption>{}</caption>", escape(c));
        }
        b.push_str("<tr>");
        for h in &t.headers {
            let _ = write!(b, "<th>{}</th>", escape(h));
        }
        b.push_str("</tr>\n");
        for row in &t.rows {
            b.push_str("<tr>");
            for c in row {
                match c.tone.class() {
                    Some(class) => {
                        let _ = write!(b, "<td class=\"{class}\">");
                    }
                    None => b.push_str("<td>"),
                }
                b.push_str(&escape(cut(&c.text)));
                b.push_str("</td>");
            }
            b.push_str("</tr>\n");
        }
        if t.left_out > 0 {
            let _ = writeln!(
                b,
                "<tr><td class=\"more\" colspan=\"{}\">{} more {} not shown (see /metrics)</td></tr>",
                t.headers.len().max(1),
                t.left_out,
                escape(t.what)
            );
        }
        b.push_str("</table>\n");
    }

    /// The whole document.
    pub fn finish(self) -> String {
        let refresh = self.refresh.map_or(String::new(), |d| {
            format!(
                "<meta http-equiv=\"refresh\" content=\"{}\">\n",
                d.as_secs()
            )
        });
        format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n{refresh}\
             <title>{}</title>\n<style>{STYLE}</style>\n</head><body>\n{}</body></html>\n",
            escape(&self.title),
            self.body
        )
    }
}

fn span(out: &mut String, c: &Cell) {
    let text = escape(cut(&c.text));
    match c.tone.class() {
        Some(class) => {
            let _ = write!(out, "<span class=\"{class}\">{text}</span>");
        }
        None => out.push_str(&text),
    }
}

/// At most [`MAX_CELL`] characters of `s`.
fn cut(s: &str) -> &str {
    match s.char_indices().nth(MAX_CELL) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// `html` as a response: UTF-8 HTML, the [`CSP`], no MIME sniffing, not cached.
pub fn response(html: String) -> Response {
    let mut r = html.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: [&str; 4] = [
        "<script>alert(1)</script>",
        "\"><img src=x onerror=alert(1)>",
        "' onmouseover='alert(1)",
        "<b>bold</b>&amp;",
    ];

    #[test]
    fn hostile_text_stays_text() {
        for h in HOSTILE {
            let mut p = Page::new(h);
            p.heading(h);
            p.line(&[Cell::new(h, Tone::Bad)]);
            p.target(true, false, h, Some(h));
            p.links(&[(format!("/probe?x={h}"), h.to_string())]);
            let mut t = Table::new("rows", &["name"], 10).caption(h);
            t.row(|| vec![Cell::from(h)]);
            p.table(&t);
            let html = p.finish();
            for bad in ["<script", "<img", "<b>", "\"><img", "='alert"] {
                assert!(!html.contains(bad), "{bad} in {html}");
            }
            assert!(html.contains(&escape(h)));
        }
        assert_eq!(
            escape("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert_eq!(escape("a\u{1b}[2J\0b"), "a\\u{1b}[2J\\u{0}b");
    }

    #[test]
    fn tables_cap_rows_and_cells() {
        let mut t = Table::new("clients", &["name", "state"], 3);
        for i in 0..10 {
            t.row(|| vec![Cell::from(format!("c{i}")), Cell::new("idle", Tone::Ok)]);
        }
        assert_eq!(t.len(), 3);
        let mut p = Page::new("t");
        p.table(&t);
        let long = "é".repeat(MAX_CELL + 50);
        let mut t2 = Table::new("x", &["x"], 1);
        t2.row(|| vec![Cell::from(long.as_str())]);
        p.table(&t2);
        let html = p.finish();
        assert!(
            html.contains("<td>c2</td><td class=\"ok\">idle</td>"),
            "{html}"
        );
        assert!(!html.contains("c3"));
        assert!(html.contains("7 more clients not shown"), "{html}");
        assert!(html.contains(&format!("<td>{}</td>", "é".repeat(MAX_CELL))));
        assert!(!html.contains(&"é".repeat(MAX_CELL + 1)));
    }

    #[test]
    fn target_states() {
        let mut p = Page::new("t");
        p.target(false, false, "a", None);
        p.target(true, true, "b", None);
        p.target(true, false, "c", Some("refused"));
        let html = p.finish();
        assert!(html.contains("<p><span class=\"warn\">not polled yet</span> · a</p>"));
        assert!(html.contains("<p><span class=\"ok\">reachable</span> · b</p>"));
        assert!(html.contains("<span class=\"bad\">unreachable</span> · c</p>"));
        assert!(html.contains("<p>Last error: <span class=\"bad\">refused</span></p>"));
    }

    #[test]
    fn refresh_is_optional() {
        assert!(!Page::new("t").finish().contains("http-equiv"));
        let html = Page::new("t").refresh(Duration::from_secs(15)).finish();
        assert!(html.contains("<meta http-equiv=\"refresh\" content=\"15\">"));
        let html = Page::new("t").refresh(Duration::ZERO).finish();
        assert!(html.contains("content=\"1\""));
    }

    #[test]
    fn ages_and_times() {
        let s = Duration::from_secs;
        assert_eq!(age(s(0)), "0 s");
        assert_eq!(age(s(59)), "59 s");
        assert_eq!(age(s(61)), "1 min 1 s");
        assert_eq!(age(s(7260)), "2 h 1 min");
        assert_eq!(age(s(3 * 86_400 + 4 * 3600 + 5)), "3 d 4 h");
        assert!(age(Duration::MAX).ends_with(" h"), "no overflow");
        let now = SystemTime::now();
        assert_eq!(ago(None, now), "never");
        assert_eq!(ago(Some(now - s(90)), now), "1 min 30 s ago");
        assert_eq!(ago(Some(now + s(90)), now), "0 s ago");
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(utc(-1), "1969-12-31 23:59:59");
        assert_eq!(
            utc_time(Some(UNIX_EPOCH + s(1_795_300_217))),
            "2026-11-21 22:30:17 UTC"
        );
        assert_eq!(utc_time(None), "never");
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(5 << 30), "5.0 GiB");
        assert_eq!(bytes(u64::MAX), "16.0 EiB");
        // Any i64: no overflow panic at the ends.
        let _ = utc(i64::MAX);
        let _ = utc(i64::MIN);
    }

    #[test]
    fn response_headers() {
        let r = response(Page::new("t").finish());
        let h = r.headers();
        assert_eq!(h["content-type"], "text/html; charset=utf-8");
        assert_eq!(h["x-content-type-options"], "nosniff");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.starts_with("default-src 'none'") && !csp.contains("script-src"));
    }
}
