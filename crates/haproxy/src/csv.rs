//! HAProxy's stats CSV (`;csv` page and `show stat`), read by header name.
//!
//! Columns differ between HAProxy versions (2.6 has 129, 1.5 about 60, and the order after the
//! `-` marker is not fixed), so every value is looked up by its header name: a column this
//! version lacks, or a field it leaves empty, is `None` ("unknown"), never a neighbour's value.
//! A row whose field count differs from the header's (a truncated page, a garbled line) or whose
//! numbers do not parse is skipped and counted; the rest of the page is still used. So is a row
//! that repeats an earlier row's `pxname` and `svname`: the first is kept (two rows for one
//! proxy would be two series with the same labels, and Prometheus rejects such a scrape).

use crate::columns::COLUMNS;
use crate::sample::{Counts, Extra, RowType, Sample};
use std::borrow::Cow;

/// Why a page could not be read at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsvError {
    /// The body does not start with HAProxy's `# pxname,...` header (an HTML page, an error
    /// text, an empty answer).
    #[error("not HAProxy stats CSV (no `# pxname,svname,...` header); starts with {start:?}")]
    NoHeader { start: String },
    /// A column every row needs is missing from the header.
    #[error("stats CSV header lacks the `{column}` column")]
    MissingColumn { column: &'static str },
}

/// The usable rows of one page and what was wrong with the others.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    pub samples: Vec<Sample>,
    /// Rows skipped because they could not be read.
    pub malformed: u64,
    /// Rows skipped because an earlier row had the same `pxname` and `svname`.
    pub duplicates: u64,
    /// The first repeated row, as `pxname/svname`, for the log.
    pub first_duplicate: Option<String>,
    /// Rows beyond the reader's row limit, counted and not read.
    pub over_limit: u64,
    /// Columns of interest this HAProxy does not report (their values are all unknown).
    pub missing_columns: Vec<&'static str>,
}

/// The columns we read, in slot order: `pxname`, `svname`, `type`, `status`, [`NUMERIC`], then
/// (when asked for) [`crate::columns::COLUMNS`].
const SLOTS: usize = EXTRA + COLUMNS.len();
/// Slot of the first extra column.
const EXTRA: usize = 4 + NUMERIC.len();
const PXNAME: usize = 0;
const SVNAME: usize = 1;
const TYPE: usize = 2;
const STATUS: usize = 3;

/// The numeric columns, in the order of [`Counts`]' fields.
const NUMERIC: [&str; 9] = [
    "scur", "rate", "qcur", "smax", "slim", "act", "bck", "hrsp_4xx", "hrsp_5xx",
];

/// Where the columns we read are in a header: for each column position, the slot it fills.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Columns {
    /// Slot of each column position (`None`: a column we do not read).
    slot_of: Vec<Option<u8>>,
    /// Whether the header has a `type` column (old HAProxy versions lack it).
    has_type: bool,
    /// Fields per row.
    count: usize,
    /// Fields a row is split into: up to the last column we read (2.6: 45 of 129, 99 with
    /// the extra columns).
    split: usize,
    /// Whether the extra columns are read.
    extra: bool,
}

impl Columns {
    fn from_header(line: &str, extra: bool) -> Result<(Columns, Vec<&'static str>), CsvError> {
        let names = split_fields(line.trim_start_matches('#').trim_start());
        let find = |n: &str| names.iter().position(|h| h.trim() == n);
        let mut slot_of = vec![None; names.len()];
        let mut missing = Vec::new();
        let wanted = ["pxname", "svname", "type", "status"]
            .into_iter()
            .chain(NUMERIC);
        let extras = COLUMNS
            .iter()
            .map(|c| c.csv)
            .take(if extra { COLUMNS.len() } else { 0 });
        for (slot, name) in wanted.enumerate() {
            match find(name) {
                Some(i) => slot_of[i] = Some(slot as u8),
                None if slot == PXNAME => return Err(CsvError::MissingColumn { column: "pxname" }),
                None if slot == SVNAME => return Err(CsvError::MissingColumn { column: "svname" }),
                None => missing.push(name),
            }
        }
        // An extra column this version lacks is only unknown: not worth a log line.
        for (k, name) in extras.enumerate() {
            if let Some(i) = find(name) {
                slot_of[i] = Some((EXTRA + k) as u8);
            }
        }
        let cols = Columns {
            has_type: find("type").is_some(),
            split: slot_of
                .iter()
                .rposition(Option::is_some)
                .map_or(0, |i| i + 1),
            slot_of,
            count: names.len(),
            extra,
        };
        Ok((cols, missing))
    }

    /// One data row from its fields (a line with quotes, split by [`split_fields`]); `None` if
    /// it is malformed.
    fn row_of_fields(&self, fields: &[Cow<'_, str>]) -> Option<Sample> {
        if fields.len() != self.count {
            return None;
        }
        let mut slots: [&str; SLOTS] = [""; SLOTS];
        for (f, slot) in fields.iter().zip(&self.slot_of) {
            if let Some(slot) = slot {
                slots[usize::from(*slot)] = f;
            }
        }
        self.row(&slots)
    }

    /// One data row from a line without quotes; `None` if it is malformed. One pass over the
    /// bytes finds the fields we read and counts the others: no field is copied or collected,
    /// and no per-field searcher runs (that split was half of a poll's instructions).
    fn row_of_line(&self, line: &str) -> Option<Sample> {
        let mut slots: [&str; SLOTS] = [""; SLOTS];
        let mut field = 0usize;
        let mut start = 0usize;
        let mut keep = |field: usize, start: usize, end: usize| {
            if let Some(Some(slot)) = self.slot_of.get(field) {
                // `,` is ASCII, so both ends are character boundaries.
                slots[usize::from(*slot)] = line.get(start..end).unwrap_or("");
            }
        };
        let bytes = line.as_bytes();
        let mut rest = bytes.len();
        for (i, &b) in bytes.iter().enumerate() {
            if b == b',' {
                keep(field, start, i);
                field += 1;
                start = i + 1;
                if field == self.split {
                    rest = start;
                    break;
                }
            }
        }
        if field < self.split {
            keep(field, start, line.len());
        }
        // The fields after the last one read are only counted (memchr's vectorized count).
        field += memchr::memchr_iter(b',', &bytes[rest.min(bytes.len())..]).count();
        if field + 1 != self.count {
            return None;
        }
        self.row(&slots)
    }

    /// A row from the fields we read, by slot (`""` for an empty or absent field); `None` if
    /// a field does not parse.
    fn row(&self, slots: &[&str; SLOTS]) -> Option<Sample> {
        let field = |slot: usize| Some(slots[slot]).filter(|s| !s.is_empty());
        let proxy = field(PXNAME)?.to_string();
        let svname = field(SVNAME)?.to_string();
        let row_type = if self.has_type {
            RowType::from_code(field(TYPE)?.parse().ok()?)?
        } else {
            RowType::from_svname(&svname)
        };
        let mut v = [None; NUMERIC.len()];
        for (k, value) in v.iter_mut().enumerate() {
            *value = match field(4 + k) {
                None => None,
                Some(s) => Some(s.parse::<u64>().ok()?),
            };
        }
        let [scur, rate, qcur, smax, slim, act, bck, hrsp_4xx, hrsp_5xx] = v;
        // An extra field that is no count (`lastsess` is -1 before the first session) is
        // unknown; it does not make the row malformed for the sinks that never read it.
        let extra = self.extra.then(|| {
            let mut x: Box<Extra> = Box::new([None; COLUMNS.len()]);
            for (k, value) in x.iter_mut().enumerate() {
                *value = field(EXTRA + k).and_then(|s| s.parse().ok());
            }
            x
        });
        Some(Sample {
            proxy,
            svname,
            row_type,
            status: field(STATUS).map(str::to_string),
            counts: Counts {
                scur,
                rate,
                qcur,
                smax,
                slim,
                act,
                bck,
                hrsp_4xx,
                hrsp_5xx,
                extra,
            },
        })
    }
}

/// Parses a whole stats page (no row limit).
pub fn parse(text: &str) -> Result<Page, CsvError> {
    let mut r = Reader::new(usize::MAX);
    r.feed(text.as_bytes());
    r.finish()
}

/// Longest line kept; a longer one is skipped as malformed (HAProxy's are a few hundred bytes).
pub const MAX_LINE: usize = 64 << 10;

/// Reads a stats page line by line as its bytes arrive, keeping at most `max_rows` rows: memory
/// follows the row limit and the longest line, not the size of the page. Rows beyond the limit
/// are only counted.
#[derive(Debug)]
pub struct Reader {
    max_rows: usize,
    /// Whether rows keep the extra columns ([`Reader::with_extra_columns`]).
    extra: bool,
    cols: Option<Columns>,
    /// Set when the first line is no header: the rest is ignored.
    error: Option<CsvError>,
    page: Page,
    /// The start of a line whose end has not arrived yet.
    partial: Vec<u8>,
    /// The current line is longer than [`MAX_LINE`]: skip to its end.
    overlong: bool,
    /// The last header read and its columns: the next page's header is nearly always the same,
    /// and is then not parsed again.
    known: Option<(String, Columns, Vec<&'static str>)>,
}

impl Reader {
    pub fn new(max_rows: usize) -> Reader {
        Reader {
            max_rows,
            extra: false,
            cols: None,
            error: None,
            page: Page::default(),
            partial: Vec::new(),
            overlong: false,
            known: None,
        }
    }

    /// Also keeps the columns of [`crate::columns::COLUMNS`] (for a `prometheus` backend);
    /// without, a row costs only the session columns.
    pub fn with_extra_columns(mut self) -> Reader {
        self.extra = true;
        self
    }

    /// Reads the next bytes of the page (split anywhere, even inside a character).
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while let Some(i) = memchr::memchr(b'\n', bytes) {
            let (head, rest) = (&bytes[..i], &bytes[i + 1..]);
            if self.overlong || self.partial.len() + head.len() > MAX_LINE {
                self.page.malformed += 1;
            } else if self.partial.is_empty() {
                self.line(head);
            } else {
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(head);
                self.line(&line);
            }
            self.partial.clear();
            self.overlong = false;
            bytes = rest;
        }
        if self.overlong || self.partial.len() + bytes.len() > MAX_LINE {
            self.partial.clear();
            self.overlong = true;
        } else {
            self.partial.extend_from_slice(bytes);
        }
    }

    /// The page, once every byte was fed.
    pub fn finish(mut self) -> Result<Page, CsvError> {
        self.take_page()
    }

    /// The page, once every byte was fed; the reader is then ready for the next page (of the
    /// same source: it remembers the header).
    pub fn take_page(&mut self) -> Result<Page, CsvError> {
        if self.overlong {
            self.page.malformed += 1;
        } else if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.line(&line);
        }
        self.partial.clear();
        self.overlong = false;
        let page = std::mem::take(&mut self.page);
        let cols = self.cols.take();
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        if cols.is_none() {
            return Err(CsvError::NoHeader {
                start: String::new(),
            });
        }
        let mut page = page;
        drop_duplicates(&mut page);
        Ok(page)
    }

    fn line(&mut self, bytes: &[u8]) {
        if self.error.is_some() {
            return;
        }
        let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        // `from_utf8` checks ASCII a word at a time; the lossy decoder only runs on bad input.
        let line = match std::str::from_utf8(bytes) {
            Ok(text) => Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(bytes),
        };
        if line.trim().is_empty() {
            return;
        }
        let Some(cols) = &self.cols else {
            if !line.trim_start().starts_with('#') {
                self.error = Some(CsvError::NoHeader {
                    start: line.chars().take(40).collect(),
                });
                return;
            }
            if let Some((text, cols, missing)) = &self.known {
                if *text == *line {
                    self.cols = Some(cols.clone());
                    self.page.missing_columns = missing.clone();
                    return;
                }
            }
            match Columns::from_header(&line, self.extra) {
                Ok((cols, missing)) => {
                    self.known = Some((line.to_string(), cols.clone(), missing.clone()));
                    self.cols = Some(cols);
                    self.page.missing_columns = missing;
                }
                Err(e) => self.error = Some(e),
            }
            return;
        };
        if self.page.samples.len() >= self.max_rows {
            self.page.over_limit += 1;
            return;
        }
        // Nearly every line has no quotes: it is read in one pass without copies.
        // memchr's vectorized search, not `str::contains` (a byte loop, a sixth of a row).
        let row = if memchr::memchr(b'"', line.as_bytes()).is_some() {
            cols.row_of_fields(&split_fields(&line))
        } else {
            cols.row_of_line(&line)
        };
        match row {
            Some(s) => self.page.samples.push(s),
            None => self.page.malformed += 1,
        }
    }
}

/// Keeps the first row of each `pxname`/`svname` pair, counting the others.
fn drop_duplicates(page: &mut Page) {
    let keep: Vec<bool> = {
        let mut seen = std::collections::HashSet::with_capacity(page.samples.len());
        page.samples
            .iter()
            .map(|s| seen.insert((s.proxy.as_str(), s.svname.as_str())))
            .collect()
    };
    if keep.iter().all(|k| *k) {
        return;
    }
    let before = page.samples.len();
    let mut keep = keep.into_iter();
    let mut first = None;
    page.samples.retain(|s| {
        let k = keep.next().unwrap_or(true);
        if !k && first.is_none() {
            first = Some(format!("{}/{}", s.proxy, s.svname));
        }
        k
    });
    page.duplicates = (before - page.samples.len()) as u64;
    page.first_duplicate = first;
}

/// Splits one CSV line. HAProxy quotes a field holding a comma or a quote (`"a,b"`, `""` for a
/// quote inside), e.g. in `check_desc`; a line without quotes (nearly all) is split without
/// copying.
fn split_fields(line: &str) -> Vec<Cow<'_, str>> {
    let line = line.trim_end_matches(['\r', '\n']);
    if !line.contains('"') {
        return line.split(',').map(Cow::Borrowed).collect();
    }
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', false) if cur.is_empty() => quoted = true,
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            ('"', true) => quoted = false,
            (',', false) => out.push(Cow::Owned(std::mem::take(&mut cur))),
            (c, _) => cur.push(c),
        }
    }
    out.push(Cow::Owned(cur));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR")))
            .unwrap()
    }

    fn find<'a>(p: &'a Page, proxy: &str, svname: &str) -> &'a Sample {
        p.samples
            .iter()
            .find(|s| s.proxy == proxy && s.svname == svname)
            .unwrap_or_else(|| panic!("no row {proxy}/{svname}"))
    }

    #[test]
    fn haproxy_2_6_page() {
        let p = parse(&fixture("stats-2.6.csv")).unwrap();
        assert_eq!(p.malformed, 0);
        assert!(p.missing_columns.is_empty());
        let fe = find(&p, "origin1", "FRONTEND");
        assert_eq!(fe.row_type, RowType::Frontend);
        assert_eq!(fe.counts.scur, Some(5));
        assert_eq!(fe.counts.rate, Some(7));
        assert_eq!(
            fe.counts.qcur, None,
            "frontends have no queue: unknown, not 0"
        );
        assert_eq!(fe.status.as_deref(), Some("OPEN"));
        let be = find(&p, "stats", "BACKEND");
        assert_eq!(be.row_type, RowType::Backend);
        assert_eq!(be.counts.slim, Some(200));
        assert_eq!(be.counts.hrsp_4xx, Some(0));
        assert_eq!(be.counts.hrsp_5xx, Some(3));
        let srv = find(&p, "be_app", "app3_down");
        assert_eq!(srv.row_type, RowType::Server);
        assert!(srv.status.as_deref().unwrap().starts_with("DOWN"));
    }

    /// The extra columns are read by name only when asked for; a field that is no count
    /// (`lastsess` -1) is unknown and leaves the row and its session columns intact.
    #[test]
    fn extra_columns_only_when_asked() {
        let text = fixture("stats-2.6.csv");
        let p = parse(&text).unwrap();
        assert!(p.samples.iter().all(|s| s.counts.extra.is_none()));
        let mut r = Reader::new(usize::MAX).with_extra_columns();
        r.feed(text.as_bytes());
        let full = r.finish().unwrap();
        assert_eq!(full.samples.len(), p.samples.len());
        let col = |name| COLUMNS.iter().position(|c| c.csv == name).unwrap();
        let be = find(&full, "stats", "BACKEND");
        let x = be.counts.extra.as_deref().unwrap();
        assert_eq!((x[col("bin")], x[col("bout")]), (Some(353), Some(1120)));
        assert_eq!((x[col("stot")], x[col("lbtot")]), (Some(3), Some(0)));
        assert_eq!(x[col("check_duration")], None, "empty field: unknown");
        let fe = find(&full, "origin1", "FRONTEND");
        let x = fe.counts.extra.as_deref().unwrap();
        assert_eq!(x[col("hrsp_2xx")], Some(17));
        assert_eq!(x[col("req_tot")], Some(17));
        assert_eq!(x[col("qmax")], None);

        let text = "# pxname,svname,type,scur,lastsess,bin,\nbe,BACKEND,1,4,-1,10,\n";
        let mut r = Reader::new(10).with_extra_columns();
        r.feed(text.as_bytes());
        let p = r.finish().unwrap();
        assert_eq!((p.samples.len(), p.malformed), (1, 0));
        let x = p.samples[0].counts.extra.as_deref().unwrap();
        assert_eq!((x[col("lastsess")], x[col("bin")]), (None, Some(10)));
        assert_eq!(p.samples[0].counts.scur, Some(4));
    }

    #[test]
    fn runtime_socket_output_is_the_same_format() {
        let p = parse(&fixture("show-stat-2.6.csv")).unwrap();
        assert_eq!(p.malformed, 0);
        assert!(p.samples.iter().any(|s| s.row_type == RowType::Backend));
    }

    #[test]
    fn columns_are_found_by_name_not_position() {
        let text = "# svname,pxname,status,scur,type,\nBACKEND,be,UP,4,1,\nFRONTEND,fe,OPEN,,0,\n";
        let p = parse(text).unwrap();
        let be = find(&p, "be", "BACKEND");
        assert_eq!(be.counts.scur, Some(4));
        assert_eq!(be.counts.rate, None);
        assert_eq!(find(&p, "fe", "FRONTEND").counts.scur, None);
        assert!(p.missing_columns.contains(&"rate"));
    }

    #[test]
    fn old_haproxy_without_type_column() {
        // HAProxy 1.3-style header: fewer columns, no `type`.
        let text = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,\
                    eresp,wretr,wredis,status,weight,act,bck,\n\
                    web,FRONTEND,,,3,9,2000,100,0,0,0,0,0,,,,,OPEN,,,,\n\
                    web,BACKEND,0,0,2,8,,90,0,0,0,0,,0,0,0,0,UP,2,2,0,\n\
                    web,s1,0,0,2,5,,50,0,0,,0,,0,0,0,0,UP,1,1,0,\n";
        let p = parse(text).unwrap();
        assert_eq!(p.malformed, 0);
        let be = find(&p, "web", "BACKEND");
        assert_eq!(be.row_type, RowType::Backend);
        assert_eq!((be.counts.scur, be.counts.act), (Some(2), Some(2)));
        assert_eq!(be.counts.rate, None);
        assert_eq!(find(&p, "web", "s1").row_type, RowType::Server);
        assert!(p.missing_columns.contains(&"hrsp_5xx"));
    }

    #[test]
    fn malformed_rows_are_skipped_and_counted() {
        let text = "# pxname,svname,scur,type,\nbe,BACKEND,4,1,\nbe,BACKEND,x,1,\nbe,BACK\n\
                    fe,FRONTEND,1,0,\nzz,FRONTEND,1,9,\n";
        let p = parse(text).unwrap();
        assert_eq!(p.samples.len(), 2);
        assert_eq!(p.malformed, 3);
    }

    #[test]
    fn a_repeated_row_keeps_the_first_and_is_counted() {
        let text = "# pxname,svname,scur,type,\nbe_dup,BACKEND,4,1,\nbe_dup,BACKEND,9,1,\n\
                    be_dup,s1,1,2,\nbe_dup,BACKEND,7,1,\nfe,FRONTEND,1,0,\n";
        let p = parse(text).unwrap();
        let rows: Vec<(&str, &str, Option<u64>)> = p
            .samples
            .iter()
            .map(|s| (s.proxy.as_str(), s.svname.as_str(), s.counts.scur))
            .collect();
        assert_eq!(
            rows,
            [
                ("be_dup", "BACKEND", Some(4)),
                ("be_dup", "s1", Some(1)),
                ("fe", "FRONTEND", Some(1))
            ]
        );
        assert_eq!((p.duplicates, p.malformed), (2, 0));
        assert_eq!(p.first_duplicate.as_deref(), Some("be_dup/BACKEND"));
    }

    #[test]
    fn rows_beyond_the_limit_are_counted_not_kept() {
        let mut text = String::from("# pxname,svname,scur,type,\n");
        for i in 0..1000 {
            text.push_str(&format!("be{i},BACKEND,{i},1,\n"));
        }
        let mut r = Reader::new(10);
        r.feed(text.as_bytes());
        let p = r.finish().unwrap();
        assert_eq!(p.samples.len(), 10);
        assert_eq!(p.samples[9].proxy, "be9");
        assert_eq!((p.over_limit, p.malformed), (990, 0));
    }

    #[test]
    fn an_overlong_line_is_malformed_and_the_next_is_read() {
        let long = "x".repeat(MAX_LINE + 1);
        let text =
            format!("# pxname,svname,scur,type,\n{long},BACKEND,1,1,\nbe,BACKEND,2,1,\n{long}");
        for piece in [7, 4096, text.len()] {
            let mut r = Reader::new(100);
            for c in text.as_bytes().chunks(piece) {
                r.feed(c);
            }
            let p = r.finish().unwrap();
            assert_eq!(p.samples.len(), 1);
            assert_eq!(p.samples[0].counts.scur, Some(2));
            assert_eq!(p.malformed, 2, "pieces of {piece}");
        }
    }

    /// A reader kept across polls gives each page as a fresh reader would, whether the header
    /// changes (an upgraded HAProxy) or not.
    #[test]
    fn a_reused_reader_reads_each_page_afresh() {
        let a = "# pxname,svname,scur,type,\nbe,BACKEND,4,1,\nbe,BACKEND,5,1,\n";
        let b = "# svname,pxname,type,scur,rate,\nBACKEND,be,1,7,2,\n";
        let mut r = Reader::new(100);
        for text in [a, a, b, "<html>", a, b, b] {
            r.feed(text.as_bytes());
            assert_eq!(r.take_page(), parse(text), "{text}");
        }
    }

    #[test]
    fn not_csv() {
        assert!(matches!(
            parse("<html>401 Unauthorized</html>"),
            Err(CsvError::NoHeader { .. })
        ));
        assert!(matches!(parse(""), Err(CsvError::NoHeader { .. })));
        assert_eq!(
            parse("# svname,scur,\n"),
            Err(CsvError::MissingColumn { column: "pxname" })
        );
    }

    #[test]
    fn quoted_fields() {
        assert_eq!(
            split_fields(r#"a,"b,c","d""e",,"#),
            ["a", "b,c", "d\"e", "", ""]
        );
        let text = "# pxname,svname,check_desc,scur,\nbe,s1,\"Layer4, refused\",3,\n";
        assert_eq!(find(&parse(text).unwrap(), "be", "s1").counts.scur, Some(3));
    }

    proptest! {
        #[test]
        fn never_panics(s in any::<String>()) {
            let _ = parse(&s);
        }

        #[test]
        fn never_panics_on_a_header_and_any_text(s in any::<String>()) {
            let _ = parse(&format!("# pxname,svname,scur,type,status,\n{s}"));
        }

        /// Bytes arrive in pieces split anywhere (inside a line, inside a character): the
        /// page is the same as from the whole text.
        #[test]
        fn pieces_read_as_the_whole(
            rows in proptest::collection::vec("[a-zé€😀,0-9]{0,12},(BACKEND|s1),[0-9é]{0,3},[0-3],", 0..12),
            cuts in proptest::collection::vec(1usize..64, 1..16),
        ) {
            let text = format!("# pxname,svname,scur,type,\r\n{}", rows.join("\n"));
            let whole = parse(&text);
            let mut r = Reader::new(usize::MAX);
            let mut rest = text.as_bytes();
            for c in cuts.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (a, b) = rest.split_at((*c).min(rest.len()));
                r.feed(a);
                rest = b;
            }
            prop_assert_eq!(r.finish(), whole);
        }

        #[test]
        fn never_panics_on_csv_like_text(
            // Any character (multi-byte ones included) among the CSV punctuation.
            rows in proptest::collection::vec(
                proptest::collection::vec(
                    prop_oneof![Just(','), Just('"'), Just('#'), Just('1'), any::<char>()
                        .prop_filter("one line", |c| !matches!(c, '\n' | '\r'))],
                    0..40,
                ).prop_map(|cs| cs.into_iter().collect::<String>()),
                0..8,
            )
        ) {
            let text = format!("# pxname,svname,scur,type,status,\n{}", rows.join("\n"));
            let p = parse(&text).unwrap();
            prop_assert_eq!(p.samples.len() as u64 + p.malformed + p.duplicates, rows.iter().filter(|r| !r.trim().is_empty()).count() as u64);
        }
    }
}
