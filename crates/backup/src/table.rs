//! Aligned plain-text tables, as the CLI prints them (run summary, `list`, `verify`): one
//! renderer so every table looks the same.

use std::fmt::Write as _;

/// Aligns `rows` (the first is usually the header) into columns two spaces apart; the columns
/// in `right` are right-aligned (numbers), the others left-aligned (words). Trailing spaces are
/// cut; every line ends in `\n`.
/// Rows are arrays or `Vec`s (a column per destination); a short row leaves its last cells
/// empty.
pub fn render<R: AsRef<[String]>>(rows: &[R], right: &[usize]) -> String {
    let mut widths: Vec<usize> = Vec::new();
    for r in rows {
        let r = r.as_ref();
        if widths.len() < r.len() {
            widths.resize(r.len(), 0);
        }
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, (c, &w)) in r.as_ref().iter().zip(&widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            if right.contains(&i) {
                let _ = write!(line, "{c:>w$}");
            } else {
                let _ = write!(line, "{c:<w$}");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: [&str; 3]) -> [String; 3] {
        cells.map(str::to_owned)
    }

    #[test]
    fn columns_align_by_characters_and_trailing_space_is_cut() {
        let t = render(
            &[
                row(["NAME", "SIZE", "NOTE"]),
                row(["é", "1.0 KB", ""]),
                row(["longer", "12.5 MB", "x"]),
            ],
            &[1],
        );
        assert_eq!(
            t,
            "NAME       SIZE  NOTE\n\
             é        1.0 KB\n\
             longer  12.5 MB  x\n"
        );
    }
}
