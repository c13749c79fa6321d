//! Which bytes of a snapshot hold data. A managed disk is a page blob that Azure exports at
//! its provisioned size, mostly never written: Get Page Ranges (`comp=pagelist`) lists the
//! written pages, so only those are downloaded and the rest of the image is zeros made here
//! (the original downloaded every byte of the provisioned size). The image streamed is the
//! same either way.

/// Bytes of the blob whose page ranges one request lists (a 4 TiB disk takes 1,024).
pub const WINDOW: u64 = 4 << 30;

/// A stretch `[start, end)` of the blob: written pages to download, or zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub start: u64,
    pub end: u64,
    pub data: bool,
}

/// What a Get Page Ranges answer holds: its written ranges `[start, end)` and the marker of
/// the next part of the listing, if any.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PageList {
    pub ranges: Vec<(u64, u64)>,
    pub next_marker: Option<String>,
}

/// The text between `<tag>` and `</tag>` in `s` from `from`: (text, index after the end tag).
fn element<'a>(s: &'a str, tag: &str, from: usize) -> Option<(&'a str, usize)> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = s.get(from..)?.find(&open)? + from + open.len();
    let end = s.get(start..)?.find(&close)? + start;
    Some((&s[start..end], end + close.len()))
}

/// Reads a `<PageList>` answer (`<PageRange><Start>..</Start><End>..</End></PageRange>`,
/// inclusive ends, and `<NextMarker>`); an error names what is malformed.
pub fn parse_page_list(xml: &str) -> Result<PageList, String> {
    if !xml.contains("<PageList") {
        return Err("not a PageList answer".into());
    }
    let mut out = PageList::default();
    let mut at = 0;
    while let Some((range, next)) = element(xml, "PageRange", at) {
        let number = |tag: &str| -> Result<u64, String> {
            let (v, _) =
                element(range, tag, 0).ok_or_else(|| format!("a PageRange without {tag}"))?;
            v.trim()
                .parse()
                .map_err(|_| format!("a PageRange {tag} that is not a number: {v:?}"))
        };
        let (start, last) = (number("Start")?, number("End")?);
        if last < start || last == u64::MAX {
            return Err(format!(
                "a PageRange that ends before it starts ({start}-{last})"
            ));
        }
        out.ranges.push((start, last + 1));
        at = next;
    }
    out.next_marker = element(xml, "NextMarker", 0)
        .map(|(m, _)| m.trim().to_owned())
        .filter(|m| !m.is_empty());
    Ok(out)
}

/// The segments covering `[from, to)`: `ranges` (sorted, not overlapping; clipped to the
/// window) as data, the gaps as zeros, adjacent data ranges merged.
pub fn segments(from: u64, to: u64, ranges: &[(u64, u64)]) -> Result<Vec<Segment>, String> {
    let mut out: Vec<Segment> = Vec::new();
    let mut at = from;
    for &(start, end) in ranges {
        let (start, end) = (start.max(from), end.min(to));
        if start >= end {
            continue;
        }
        if start < at {
            return Err(format!(
                "page ranges out of order or overlapping at byte {start}"
            ));
        }
        if start > at {
            out.push(Segment {
                start: at,
                end: start,
                data: false,
            });
        }
        match out.last_mut() {
            Some(last) if last.data && last.end == start => last.end = end,
            _ => out.push(Segment {
                start,
                end,
                data: true,
            }),
        }
        at = end;
    }
    if at < to {
        out.push(Segment {
            start: at,
            end: to,
            data: false,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_list_is_read_with_inclusive_ends_and_marker() {
        let xml = r#"<?xml version="1.0" encoding="utf-8"?><PageList>
            <PageRange><Start>0</Start><End>511</End></PageRange>
            <ClearRange><Start>512</Start><End>1023</End></ClearRange>
            <PageRange><Start>4096</Start><End>8191</End></PageRange>
            <NextMarker>2!abc</NextMarker></PageList>"#;
        assert_eq!(
            parse_page_list(xml).unwrap(),
            PageList {
                ranges: vec![(0, 512), (4096, 8192)],
                next_marker: Some("2!abc".into())
            }
        );
        let empty = parse_page_list("<PageList><NextMarker /></PageList>").unwrap();
        assert_eq!(empty, PageList::default());
        for bad in [
            "<html>",
            "<PageList><PageRange><Start>9</Start><End>1</End></PageRange></PageList>",
            "<PageList><PageRange><Start>x</Start><End>1</End></PageRange></PageList>",
            "<PageList><PageRange><End>1</End></PageRange></PageList>",
        ] {
            assert!(parse_page_list(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn segments_fill_gaps_with_zeros_clip_and_merge() {
        let seg = |start, end, data| Segment { start, end, data };
        assert_eq!(
            segments(1000, 10_000, &[(0, 1512), (1512, 2000), (4096, 20_000)]).unwrap(),
            [
                seg(1000, 2000, true),
                seg(2000, 4096, false),
                seg(4096, 10_000, true)
            ]
        );
        assert_eq!(segments(0, 100, &[]).unwrap(), [seg(0, 100, false)]);
        assert!(segments(0, 10_000, &[(4096, 8192), (512, 1024)]).is_err());
    }
}
