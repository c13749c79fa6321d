//! Reads smbclient's `ls` output, the only listing smbclient gives.

use std::time::SystemTime;

use chrono::{Local, NaiveDateTime, TimeZone};

/// One entry of smbclient's `ls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub dir: bool,
    pub size: u64,
    pub modified: Option<SystemTime>,
}

/// Width of the date smbclient prints at the end of each `ls` line (`Wed Dec  2 03:58:56 2026`).
const DATE_WIDTH: usize = 24;

/// Parses smbclient's `ls`: each entry is `"  %-30s%7.7s %8.0f  %s"` (name, attributes,
/// size, date), so it is read from the right, where the widths are fixed. Lines that do not
/// fit (the free-space line) are skipped.
pub fn parse_ls(out: &str) -> Vec<Entry> {
    out.lines().filter_map(parse_ls_line).collect()
}

fn parse_ls_line(line: &str) -> Option<Entry> {
    let body = line.strip_prefix("  ")?;
    let cut = body.len().checked_sub(DATE_WIDTH)?;
    if !body.is_char_boundary(cut) {
        return None;
    }
    let (head, date) = body.split_at(cut);
    let head = head.strip_suffix("  ")?;
    let digits = head.len() - head.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let size: u64 = head[head.len() - digits..].parse().ok()?;
    // Attributes (7 wide), one space, the size right-aligned in 8.
    let field = head
        .len()
        .checked_sub(digits + 1 + 7 + 8usize.saturating_sub(digits))?;
    // `get`: a line that does not fit the layout (a name with multi-byte characters where
    // the attributes should be) is skipped, never cut inside a character.
    let attrs = head.get(field..field + 7)?.trim();
    let name = head.get(..field)?.trim_end_matches(' ');
    if name.is_empty() || name == "." || name == ".." {
        return None;
    }
    let modified = NaiveDateTime::parse_from_str(date, "%a %b %e %H:%M:%S %Y")
        .ok()
        .and_then(|t| Local.from_local_datetime(&t).earliest())
        .map(SystemTime::from);
    Some(Entry {
        name: name.to_string(),
        dir: attrs.contains('D'),
        size,
        modified,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_with_a_character_across_the_attribute_column_is_skipped() {
        // The attribute column's end (7 bytes after its start) falls inside `€`.
        let line = "  name      abcdef\u{20ac}      1  Wed Dec  2 04:00:13 2026";
        assert_eq!(parse_ls_line(line), None);
        // Its start inside a character: skipped too.
        let line = "  ab\u{20ac}cdefghi      1  Wed Dec  2 04:00:13 2026";
        assert_eq!(parse_ls_line(line), None);
    }

    #[test]
    fn ls_lines_are_read_from_the_right() {
        let out = [
            "  .                                   D        0  Wed Dec  2 03:58:49 2026",
            "  ..                                  D        0  Wed Dec  2 03:58:49 2026",
            "  a-very-long-source-identifier-name-20240101000000.tar.zst.gpg      A        3  Wed Dec  2 04:00:13 2026",
            "  db-20240101000000.gpg               A 20000000  Wed Dec  2 03:58:56 2026",
            "  big                                 N 123456789012  Wed Dec  2 03:58:56 2026",
            "  sub                                 D        0  Wed Dec  2 04:00:13 2026",
            "  my db-x-20240101000000.sql.zst.gpg.sha256      A        3  Wed Dec  2 04:00:13 2026",
            "",
            "\t\t264212084 blocks of size 1024. 81140572 blocks available",
        ]
        .join("\n");
        let got: Vec<(String, bool, u64)> = parse_ls(&out)
            .into_iter()
            .map(|e| (e.name, e.dir, e.size))
            .collect();
        let want = [
            (
                "a-very-long-source-identifier-name-20240101000000.tar.zst.gpg",
                false,
                3,
            ),
            ("db-20240101000000.gpg", false, 20_000_000),
            ("big", false, 123_456_789_012),
            ("sub", true, 0),
            ("my db-x-20240101000000.sql.zst.gpg.sha256", false, 3),
        ];
        let want: Vec<(String, bool, u64)> = want
            .iter()
            .map(|(n, d, s)| (n.to_string(), *d, *s))
            .collect();
        assert_eq!(got, want);
        let e = parse_ls_line(
            "  x                                   A        1  Wed Dec  2 03:58:49 2026",
        )
        .expect("entry");
        let t = Local
            .from_local_datetime(
                &NaiveDateTime::parse_from_str("2026-12-02 03:58:49", "%Y-%m-%d %H:%M:%S")
                    .expect("date"),
            )
            .earliest()
            .expect("local");
        assert_eq!(e.modified, Some(SystemTime::from(t)));
    }
}
